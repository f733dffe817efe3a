//! Leader-race and manual-failover rules, pure (PATRONI-COMPAT §6.4, §6.5): candidate health,
//! `is_healthiest_node`, `is_failover_possible`, the `/failover` key rules on both sides, and the
//! `scheduled_at` window.
//!
//! Owns: who may become leader. Must not do I/O: peer answers arrive as [`PeerStatus`] values
//! fetched by the loop; supporting log lines are pushed to a `notes` vector in Patroni's words.

use super::snapshot::{DynamicPolicy, LocalIdentity, PeerStatus, PgState, SyncMode};
use crate::dcs::model::{Cluster, Failover, Member, SyncState, value_is_true};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Patroni `parse_int` on a tag value: integers, integral floats and numeric strings.
fn parse_int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// Effective `nofailover` of a tag map (`tags.py _bool_tag`): an explicit `nofailover` wins, else
/// `failover_priority <= 0`.
pub fn tags_nofailover(tags: &Map<String, Value>) -> bool {
    match tags.get("nofailover") {
        Some(v) if !v.is_null() => value_is_true(v),
        _ => parse_int(tags.get("failover_priority")).is_some_and(|p| p <= 0),
    }
}

/// Effective `failover_priority` of a tag map (`tags.py _priority_tag`): 0 when `nofailover` is
/// true, else the tag, default 1.
pub fn tags_failover_priority(tags: &Map<String, Value>) -> i64 {
    if tags.get("nofailover").is_some_and(value_is_true) {
        return 0;
    }
    parse_int(tags.get("failover_priority")).unwrap_or(1)
}

/// Effective `nofailover` of a member key.
pub fn member_nofailover(m: &Member) -> bool {
    m.data.tags.as_ref().is_some_and(tags_nofailover)
}

/// `/sync` lists `name` as a standby, or (with `check_leader`) as its leader; case-insensitive
/// (Patroni `SyncState.matches`).
pub fn sync_matches(sync: &SyncState, name: &str, check_leader: bool) -> bool {
    sync.members().iter().any(|m| m.eq_ignore_ascii_case(name))
        || check_leader && sync.leader.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(name))
}

/// Synchronous mode requested and the primary already wrote `/sync` (Patroni `sync_mode_is_active`).
pub fn sync_mode_is_active(policy: &DynamicPolicy, cluster: &Cluster) -> bool {
    policy.synchronous_mode != SyncMode::Off && !cluster.sync.is_empty()
}

/// Quorum commit requested and `/sync` written (Patroni `quorum_commit_mode_is_active`; PostgreSQL
/// ≥ 10 is assumed, which supports `ANY n (…)`).
pub fn quorum_commit_mode_is_active(policy: &DynamicPolicy, cluster: &Cluster) -> bool {
    policy.synchronous_mode == SyncMode::Quorum && !cluster.sync.is_empty()
}

/// `"switchover"` when `/failover` names the leader to leave, `"manual failover"` when it does not,
/// `"failover"` without a key (Patroni `_get_failover_action_name`).
pub fn failover_action_name(failover: Option<&Failover>) -> &'static str {
    match failover {
        None => "failover",
        Some(f) if f.leader.is_some() => "switchover",
        Some(_) => "manual failover",
    }
}

/// Where `scheduled_at` stands relative to now (Patroni `should_run_scheduled_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// More than `loop_wait` ahead: wait.
    Later {
        /// Seconds until the scheduled time.
        secs: i64,
    },
    /// Due within `loop_wait`: run the next cycle after `wait` and act then (Patroni sleeps inside
    /// the cycle instead).
    Soon {
        /// Time left.
        wait: Duration,
    },
    /// Due (at most `1.5*loop_wait` late): act now.
    Now,
    /// More than `1.5*loop_wait` behind (Patroni truncates to whole seconds): drop it.
    Stale,
    /// Not a parseable ISO-8601 time with zone: drop it.
    Invalid,
}

/// Classify a `scheduled_at` string against `wall` now.
pub fn check_schedule(
    scheduled_at: &str,
    wall: chrono::DateTime<chrono::Utc>,
    loop_wait: Duration,
) -> Schedule {
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(scheduled_at.trim()) else {
        return Schedule::Invalid;
    };
    let delta_ms = (at.with_timezone(&chrono::Utc) - wall).num_milliseconds();
    let loop_wait_ms = loop_wait.as_millis() as i64;
    // Patroni: `delta < -int(loop_wait * 1.5)` (whole seconds).
    let stale_ms = ((loop_wait.as_secs_f64() * 1.5) as i64) * 1000;
    if delta_ms > loop_wait_ms {
        Schedule::Later { secs: (delta_ms as f64 / 1000.0).round() as i64 }
    } else if delta_ms > 0 {
        Schedule::Soon { wait: Duration::from_millis(delta_ms as u64) }
    } else if delta_ms < -stale_ms {
        Schedule::Stale
    } else {
        Schedule::Now
    }
}

/// A member taking part in the leader race as far as the DCS knows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KnownMember {
    /// Name.
    pub name: String,
    /// `api_url` (empty when unknown).
    pub api_url: String,
    /// Effective `nofailover` from its member key.
    pub nofailover: bool,
}

impl KnownMember {
    /// From a member key.
    pub fn from_member(m: &Member) -> KnownMember {
        KnownMember {
            name: m.name.clone(),
            api_url: m.data.api_url.clone(),
            nofailover: member_nofailover(m),
        }
    }
}

/// What the race rules look at.
pub struct RaceView<'a> {
    /// This node.
    pub me: &'a LocalIdentity,
    /// Local PostgreSQL.
    pub pg: &'a PgState,
    /// The cluster read this cycle.
    pub cluster: &'a Cluster,
    /// Dynamic configuration.
    pub policy: &'a DynamicPolicy,
    /// `GET /patroni` answers; a missing member is unreachable.
    pub peers: &'a BTreeMap<String, PeerStatus>,
}

impl RaceView<'_> {
    fn peer(&self, name: &str) -> PeerStatus {
        self.peers.get(name).cloned().unwrap_or_else(PeerStatus::unreachable)
    }

    /// Patroni `is_lagging`: `/status.optime - wal_position > maximum_lag_on_failover`.
    pub fn is_lagging(&self, wal_position: u64) -> bool {
        let last = self.cluster.status.optime.unwrap_or(0);
        last.saturating_sub(wal_position) > self.policy.maximum_lag_on_failover
    }

    /// Patroni `_is_healthiest_node`: may this node become leader, compared with `members`?
    /// `former_leader` is the leader seen last time one existed (its higher `failover_priority` is
    /// ignored). Several nodes may all consider themselves healthiest; the atomic lock decides.
    pub fn is_healthiest(
        &self,
        members: &[KnownMember],
        check_replication_lag: bool,
        former_leader: Option<&str>,
        notes: &mut Vec<String>,
    ) -> bool {
        self.own_eligibility(check_replication_lag, notes) && self.peers_allow(members, former_leader, notes)
    }

    /// The first half of `_is_healthiest_node`, needing no peer answers: this node is not lagging
    /// more than `maximum_lag_on_failover` behind `/status.optime` and, with `check_timeline`, not
    /// behind the cluster timeline.
    pub fn own_eligibility(&self, check_replication_lag: bool, notes: &mut Vec<String>) -> bool {
        let cluster_timeline = self.cluster.timeline();
        let my_timeline = self.pg.timeline;
        if check_replication_lag && self.is_lagging(self.pg.wal_position()) {
            notes.push("My wal position exceeds maximum replication lag".into());
            return false;
        }
        if self.policy.check_timeline {
            match my_timeline {
                None => {
                    notes.push("Can not figure out my timeline".into());
                    return false;
                }
                Some(tl) if tl < cluster_timeline => {
                    notes.push(format!(
                        "My timeline {tl} is behind last known cluster timeline {cluster_timeline}"
                    ));
                    return false;
                }
                Some(_) => {}
            }
        }
        true
    }

    /// The second half of `_is_healthiest_node`: no reachable eligible member is a running primary,
    /// ahead of us, or equally advanced with a higher `failover_priority`; in quorum mode enough
    /// `/sync` voters agree.
    pub fn peers_allow(
        &self,
        members: &[KnownMember],
        former_leader: Option<&str>,
        notes: &mut Vec<String>,
    ) -> bool {
        let my_wal = self.pg.wal_position();
        let sync = &self.cluster.sync;
        let quorum_active = quorum_commit_mode_is_active(self.policy, self.cluster);
        let sync_active = sync_mode_is_active(self.policy, self.cluster);
        let (quorum, voting): (i64, Vec<String>) =
            if quorum_active { (i64::from(sync.quorum), sync.members()) } else { (0, Vec::new()) };
        let in_voting = |n: &str| voting.iter().any(|v| v.eq_ignore_ascii_case(n));
        let me = self.me.name.as_str();
        let mut quorum_votes: i64 = if in_voting(me) { 0 } else { -1 };
        let mut nodes_ahead = 0;
        let leader_name = if sync_active { sync.leader.as_deref() } else { former_leader };

        for m in members {
            if m.name == me || m.api_url.is_empty() || (m.nofailover && !in_voting(&m.name)) {
                continue;
            }
            let st = self.peer(&m.name);
            if st.failover_limitation().is_some() {
                continue;
            }
            if st.in_recovery == Some(false) {
                notes.push(format!("Primary ({}) is still alive", m.name));
                return false;
            }
            if my_wal < st.wal_position {
                nodes_ahead += 1;
                notes.push(format!("Wal position of {} is ahead of my wal position", m.name));
                // In synchronous mode the former leader may still be reachable and ahead of us.
                let former_sync_leader =
                    sync.leader.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(&m.name));
                if !sync_active || !former_sync_leader {
                    return false;
                }
                notes.push("Ignoring the former leader being ahead of us".into());
            } else if st.wal_position > 0 {
                let quorum_vote = in_voting(&m.name);
                let mut low_priority =
                    my_wal == st.wal_position && self.me.tags.failover_priority < st.failover_priority;
                if low_priority && leader_name.is_some_and(|l| l == m.name) {
                    notes.push(format!(
                        "Ignoring former leader {} having priority {} higher than this nodes {} priority",
                        m.name, st.failover_priority, self.me.tags.failover_priority
                    ));
                    low_priority = false;
                }
                if low_priority && (!sync_active || quorum_vote) {
                    notes.push(format!(
                        "{} has equally tolerable WAL position and priority {}, while this node has priority {}",
                        m.name, st.failover_priority, self.me.tags.failover_priority
                    ));
                    return false;
                }
                if quorum_vote {
                    notes.push(format!("Got quorum vote from {}", m.name));
                    quorum_votes += 1;
                }
            }
        }
        !quorum_active
            || quorum_votes >= quorum
            || nodes_ahead == 0 && sync.leader.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(me))
    }

    /// Patroni `get_failover_candidates`: members (not me) that may promote and have an `api_url`;
    /// in synchronous mode only `/sync` standbys, except for a failover without a leader; with a
    /// candidate in `/failover` and `exclude_candidate == false`, only that candidate.
    pub fn failover_candidates(&self, exclude_candidate: bool) -> Vec<&Member> {
        let failover = self.cluster.failover.as_ref();
        let candidate = failover.and_then(|f| f.member.as_deref());
        let sync_active = sync_mode_is_active(self.policy, self.cluster);
        self.cluster
            .members
            .iter()
            .filter(|m| {
                if sync_active
                    && !sync_matches(&self.cluster.sync, &m.name, false)
                    && failover.is_none_or(|f| f.leader.is_some())
                {
                    return false;
                }
                let is_candidate = candidate == Some(m.name.as_str());
                let excluded = m.name == self.me.name || (exclude_candidate && is_candidate);
                let eligible = !member_nofailover(m) && !m.data.api_url.is_empty();
                let wanted = exclude_candidate || candidate.is_none() || is_candidate;
                !excluded && eligible && wanted
            })
            .collect()
    }

    /// Patroni `is_failover_possible`: some candidate is reachable, allowed to promote, not lagging
    /// (behind `cluster_lsn` when given, else vs `maximum_lag_on_failover`), on the cluster timeline
    /// when `check_timeline`, and in quorum mode enough of them to satisfy `/sync.quorum`.
    pub fn is_failover_possible(
        &self,
        cluster_lsn: u64,
        exclude_candidate: bool,
        notes: &mut Vec<String>,
    ) -> bool {
        let candidates = self.failover_candidates(exclude_candidate);
        let failover = self.cluster.failover.as_ref();
        let action = failover_action_name(failover);
        if candidates.is_empty() {
            match failover.and_then(|f| f.member.as_deref()) {
                Some(c) if self.policy.synchronous_mode != SyncMode::Off => notes.push(format!(
                    "{} candidate={c} does not match with sync_standbys={}",
                    title(action),
                    self.cluster.sync.sync_standby.as_deref().unwrap_or("None")
                )),
                _ => notes.push(format!("{action}: candidates list is empty")),
            }
        }
        let cluster_timeline = self.cluster.timeline();
        let mut votes: i64 = -1;
        for m in candidates {
            let st = self.peer(&m.name);
            if let Some(why) = st.failover_limitation() {
                notes.push(format!("Member {} is {why}", m.name));
            } else if (cluster_lsn > 0 && st.wal_position < cluster_lsn)
                || (cluster_lsn == 0 && self.is_lagging(st.wal_position))
            {
                notes.push(format!("Member {} exceeds maximum replication lag", m.name));
            } else if self.policy.check_timeline && (st.timeline == 0 || st.timeline < cluster_timeline) {
                notes.push(format!(
                    "Timeline {} of member {} is behind the cluster timeline {cluster_timeline}",
                    st.timeline, m.name
                ));
            } else {
                votes += 1;
            }
        }
        // A named candidate overrides the quorum requirement (unless it is being excluded).
        let candidate_overrides = failover.is_some_and(|f| f.member.is_some()) && !exclude_candidate;
        let check_quorum = quorum_commit_mode_is_active(self.policy, self.cluster) && !candidate_overrides;
        if check_quorum && votes < i64::from(self.cluster.sync.quorum) {
            notes.push(format!("Quorum requirement {} can not be reached", self.cluster.sync.quorum));
            return false;
        }
        votes >= 0
    }
}

/// `"manual failover"` → `"Manual Failover"` (Python `str.title`).
pub(super) fn title(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Verdict of [`manual_failover_no_leader`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoLeaderVerdict {
    /// This node should take the lock.
    Take,
    /// Another node should.
    Leave,
    /// Paused, the candidate is gone and this node is the primary: clear the key and continue with
    /// the usual rules.
    ClearStaleKey,
}

/// Patroni `manual_failover_process_no_leader`: `/failover` is set and nobody holds the lock.
/// The named candidate takes it; others step in only when the candidate is unhealthy (without the
/// lag check); the former leader re-takes the lock when nobody else is healthy.
pub fn manual_failover_no_leader(
    view: &RaceView<'_>,
    paused: bool,
    notes: &mut Vec<String>,
) -> NoLeaderVerdict {
    let Some(failover) = view.cluster.failover.as_ref() else {
        return NoLeaderVerdict::Leave;
    };
    let me = view.me.name.as_str();
    let action = failover_action_name(Some(failover));
    if let Some(candidate) = failover.member.as_deref() {
        if candidate == me {
            return NoLeaderVerdict::Take;
        }
        if paused {
            if view.cluster.member(candidate).is_none() && view.pg.is_primary() {
                notes.push(format!(
                    "{action}: removing failover key because failover candidate is not running"
                ));
                return NoLeaderVerdict::ClearStaleKey;
            }
            return NoLeaderVerdict::Leave;
        }
        // In synchronous (not quorum) mode a node outside /sync never acts, even for a sick candidate.
        if view.policy.synchronous_mode == SyncMode::On && !sync_matches(&view.cluster.sync, me, true) {
            return NoLeaderVerdict::Leave;
        }
        if view.cluster.member(candidate).is_some() {
            let st = view.peer(candidate);
            match st.failover_limitation() {
                None => {
                    notes.push(format!("{action}: to {candidate}, i am {me}"));
                    return NoLeaderVerdict::Leave;
                }
                Some(why) => notes.push(format!("{action}: member {candidate} is {why}")),
            }
        }
    } else if paused {
        return NoLeaderVerdict::Leave;
    }

    if let Some(former) = failover.leader.as_deref()
        && former == me
    {
        return if view.is_failover_possible(0, failover.member.is_some(), notes) {
            NoLeaderVerdict::Leave
        } else {
            NoLeaderVerdict::Take
        };
    }
    let members: Vec<KnownMember> = view
        .cluster
        .members
        .iter()
        .filter(|m| failover.leader.as_deref() != Some(m.name.as_str()))
        .map(KnownMember::from_member)
        .collect();
    if view.is_healthiest(&members, false, None, notes) {
        NoLeaderVerdict::Take
    } else {
        NoLeaderVerdict::Leave
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn tags(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn failover_priority_zero_means_nofailover_unless_nofailover_says_otherwise() {
        // tags.py: _bool_tag / _priority_tag
        assert!(!tags_nofailover(&tags(json!({}))));
        assert_eq!(tags_failover_priority(&tags(json!({}))), 1);
        assert!(tags_nofailover(&tags(json!({"failover_priority": 0}))));
        assert!(tags_nofailover(&tags(json!({"failover_priority": "-1"}))));
        assert!(!tags_nofailover(&tags(json!({"failover_priority": 0, "nofailover": false}))));
        assert!(tags_nofailover(&tags(json!({"nofailover": true, "failover_priority": 5}))));
        assert_eq!(tags_failover_priority(&tags(json!({"nofailover": true, "failover_priority": 5}))), 0);
        assert_eq!(tags_failover_priority(&tags(json!({"failover_priority": "3"}))), 3);
    }

    #[test]
    fn scheduled_at_window_is_loop_wait_ahead_and_one_and_a_half_loop_wait_behind() {
        // ha.py: should_run_scheduled_action
        let now = chrono::Utc.with_ymd_and_hms(2026, 9, 1, 10, 0, 0).unwrap();
        let lw = Duration::from_secs(10);
        assert_eq!(check_schedule("2026-09-01T10:00:30+00:00", now, lw), Schedule::Later { secs: 30 });
        assert_eq!(check_schedule("2026-09-01T10:00:10+00:00", now, lw), Schedule::Soon { wait: lw });
        assert_eq!(
            check_schedule("2026-09-01T12:00:05+02:00", now, lw),
            Schedule::Soon { wait: Duration::from_secs(5) }
        );
        assert_eq!(check_schedule("2026-09-01T10:00:00+00:00", now, lw), Schedule::Now);
        assert_eq!(check_schedule("2026-09-01T09:59:45+00:00", now, lw), Schedule::Now);
        assert_eq!(check_schedule("2026-09-01T09:59:44+00:00", now, lw), Schedule::Stale);
        assert_eq!(check_schedule("tomorrow", now, lw), Schedule::Invalid);
    }

    #[test]
    fn sync_matches_checks_the_leader_only_when_asked() {
        let s = SyncState {
            leader: Some("pg0".into()),
            quorum: 0,
            sync_standby: Some("pg1,PG2".into()),
            version: None,
        };
        assert!(sync_matches(&s, "pg2", false));
        assert!(!sync_matches(&s, "pg0", false));
        assert!(sync_matches(&s, "PG0", true));
        assert!(!sync_matches(&s, "pg3", true));
    }

    #[test]
    fn peer_status_is_distilled_from_the_patroni_json() {
        // ha.py: _MemberStatus.from_api_response
        let replica = json!({"state":"running","role":"replica","timeline":3,
            "xlog":{"received_location":500,"replayed_location":400},"tags":{"failover_priority":2}});
        let st = PeerStatus::from_patroni_json(&replica);
        assert_eq!((st.reachable, st.in_recovery, st.wal_position, st.timeline), (true, Some(true), 500, 3));
        assert_eq!(st.failover_priority, 2);
        let primary = json!({"role":"primary","xlog":{"location":900}});
        let st = PeerStatus::from_patroni_json(&primary);
        assert_eq!((st.in_recovery, st.wal_position), (Some(false), 0));
        let old_master = json!({"role":"master","wal":{"location":0}});
        assert_eq!(PeerStatus::from_patroni_json(&old_master).in_recovery, Some(false));
        assert!(!PeerStatus::from_patroni_json(&json!({"role":"replica"})).reachable);
        let nofail = json!({"role":"replica","xlog":{},"tags":{"nofailover":true},"watchdog_failed":true});
        let st = PeerStatus::from_patroni_json(&nofail);
        assert_eq!(st.failover_limitation(), Some("not allowed to promote"));
    }
}
