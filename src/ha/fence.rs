//! praetor's partition rules (issue 13), pure: fence a primary that is cut off from both the DCS
//! and every replica, and hand a strict-synchronous leader's key to its synchronous standby when it
//! has been cut from its replicas only.
//!
//! Owns: the [`ConfirmTracker`] that turns samples of `pg_stat_replication` into "how long has no
//! replica confirmed the WAL this primary wrote", and the two rules that read it. Must not do I/O or
//! read a clock: the sampler in the runner gives every instant.
//!
//! # Why replica confirmation
//! A primary cannot tell "the DCS is down" from "I am cut off". Its replicas tell it: a replica that
//! keeps confirming new WAL (its `write_lsn`/`flush_lsn` in `pg_stat_replication` moves, or it has
//! everything) reaches the primary. The walsender row of a standby behind a dropped link stays
//! `streaming` until `wal_sender_timeout`; its positions stop moving. So the tracker watches
//! positions, not row states, and counts silence only while there is WAL nobody confirmed: an idle
//! primary is never "silent".

use super::snapshot::{DynamicPolicy, MonoTime, SyncMode};
use crate::dcs::model::Cluster;
use crate::types::Role;
use std::collections::BTreeMap;
use std::time::Duration;

/// Default of `praetor.fence_replica_silence_ms`.
pub const DEFAULT_REPLICA_SILENCE: Duration = Duration::from_millis(300);
/// How often the runner samples `pg_stat_replication` on a leader.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(150);
/// Once the sampler's own DCS probe has concluded that the DCS is lost ([`dcs_lost`]), every DCS
/// call of the HA loop gets this long before it counts as failed, instead of `retry_timeout`: none,
/// because the probe has already waited `replica_silence` for an answer.
pub const LOST_DCS_CALL_BUDGET: Duration = Duration::ZERO;
/// Bound on one probe of the DCS by the sampler.
pub const DCS_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// praetor's own partition policy: the `praetor` section of the dynamic configuration (Patroni
/// ignores top-level `/config` keys it does not know, so the section is safe in a mixed cluster).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionPolicy {
    /// `praetor.fence_isolated_primary`: a primary whose DCS call fails while no replica has
    /// confirmed its WAL for `replica_silence` stops accepting writes at once.
    pub fence_isolated_primary: bool,
    /// `praetor.fence_replica_silence_ms`.
    pub replica_silence: Duration,
    /// `praetor.strict_sync_failover`: in `synchronous_mode_strict`, a leader without a confirming
    /// synchronous standby for longer than `ttl` hands its key to a healthy `/sync` member.
    pub strict_sync_failover: bool,
}

impl Default for PartitionPolicy {
    fn default() -> Self {
        PartitionPolicy {
            fence_isolated_primary: true,
            replica_silence: DEFAULT_REPLICA_SILENCE,
            strict_sync_failover: false,
        }
    }
}

/// One `pg_stat_replication` row as the tracker reads it. The runner keeps only rows whose
/// `application_name` is another member of the cluster (a `pg_basebackup` or `pg_receivewal` on
/// the primary's own host says nothing about the network).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmRow {
    /// `application_name` (member name).
    pub name: String,
    /// The furthest position the standby reported (`write_lsn`, `flush_lsn`, `replay_lsn`).
    pub lsn: u64,
    /// `sync_state` is `sync` or `quorum`.
    pub sync: bool,
}

/// The tracker's conclusion, given to the policy in the snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalConfirmation {
    /// How long WAL written on this primary has gone unconfirmed by every replica (zero when a
    /// replica confirmed at the last sample, or nothing was written since the last confirmation).
    pub replicas_silent_for: Duration,
    /// The same, counting only synchronous standbys.
    pub sync_silent_for: Duration,
}

/// Silence of one set of standbys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Silence {
    /// Last sample at which the set confirmed, or nothing unconfirmed was pending.
    last_ok: Option<MonoTime>,
    /// The primary's LSN at the last confirmation: WAL beyond it is unconfirmed.
    confirmed_upto: u64,
}

impl Silence {
    fn observe(&mut self, at: MonoTime, primary_lsn: u64, confirmed: bool) -> Duration {
        match self.last_ok {
            None => {
                self.last_ok = Some(at);
                self.confirmed_upto = primary_lsn;
            }
            Some(_) if confirmed => {
                self.last_ok = Some(at);
                self.confirmed_upto = primary_lsn;
            }
            // Nothing written since the last confirmation: nothing to lose, no silence.
            Some(_) if primary_lsn <= self.confirmed_upto => self.last_ok = Some(at),
            Some(_) => {}
        }
        at.since(self.last_ok.unwrap_or(at))
    }
}

/// Turns samples of the primary's flush LSN and `pg_stat_replication` into a [`WalConfirmation`].
/// A replica confirms at a sample when its position moved since the previous sample (or its row
/// is new), or when it has everything the primary flushed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfirmTracker {
    prev: BTreeMap<String, u64>,
    any: Silence,
    sync: Silence,
    last: WalConfirmation,
}

impl ConfirmTracker {
    /// Record one sample taken at `at`.
    pub fn observe(&mut self, at: MonoTime, primary_lsn: u64, rows: &[ConfirmRow]) -> WalConfirmation {
        let confirms = |r: &ConfirmRow| {
            r.lsn >= primary_lsn || self.prev.get(&r.name.to_lowercase()).is_none_or(|p| r.lsn > *p)
        };
        let any = rows.iter().any(confirms);
        let sync = rows.iter().filter(|r| r.sync).any(confirms);
        self.prev = rows.iter().map(|r| (r.name.to_lowercase(), r.lsn)).collect();
        self.last = WalConfirmation {
            replicas_silent_for: self.any.observe(at, primary_lsn, any),
            sync_silent_for: self.sync.observe(at, primary_lsn, sync),
        };
        self.last
    }

    /// The conclusion of the last sample.
    pub fn last(&self) -> WalConfirmation {
        self.last
    }
}

/// The primary is at risk: fencing is on, other members exist and no replica confirmed its WAL
/// for `replica_silence`. Together with an unanswered DCS probe this makes [`dcs_lost`].
pub fn at_risk(p: &PartitionPolicy, c: &WalConfirmation, others_known: bool) -> bool {
    p.fence_isolated_primary && others_known && c.replicas_silent_for >= p.replica_silence
}

/// The sampler starts probing the DCS itself (a read, bounded by [`DCS_PROBE_TIMEOUT`], repeated
/// while this holds) once no replica has confirmed this primary's WAL for half of
/// `replica_silence`. Probing early means that by the time the replicas have been silent for the
/// whole `replica_silence`, the DCS has had as long to answer: the fence needs no further wait.
pub fn dcs_probe_due(p: &PartitionPolicy, c: &WalConfirmation, others_known: bool) -> bool {
    p.fence_isolated_primary && others_known && c.replicas_silent_for * 2 >= p.replica_silence
}

/// The DCS counts as lost for the fence: the primary is [`at_risk`] and the sampler's probes have
/// gone unanswered (no successful answer since the oldest unanswered one was sent) for
/// `replica_silence` as well. The runner then makes every DCS call of the HA loop fail at once
/// ([`LOST_DCS_CALL_BUDGET`]) and wakes the loop, which fences the primary
/// ([`isolated_primary_fence`]) without waiting for `retry_timeout`.
pub fn dcs_lost(
    p: &PartitionPolicy,
    c: &WalConfirmation,
    others_known: bool,
    dcs_unanswered_for: Option<Duration>,
) -> bool {
    at_risk(p, c, others_known) && dcs_unanswered_for.is_some_and(|d| d >= p.replica_silence)
}

/// Rule "fence an isolated primary" (praetor, issue 13 item 3): the DCS call of this cycle failed,
/// other members exist (`others_known`), and no replica confirmed this primary's WAL for
/// `replica_silence`: it is very likely cut off, and another member may be promoted once the
/// leader key expires. `Some(silence)` when the primary must stop accepting writes now. A primary
/// that still streams to a replica keeps Patroni's behaviour (demote after `retry_timeout`, or
/// failsafe mode).
pub fn isolated_primary_fence(
    p: &PartitionPolicy,
    c: Option<&WalConfirmation>,
    others_known: bool,
) -> Option<Duration> {
    let c = c?;
    at_risk(p, c, others_known).then_some(c.replicas_silent_for)
}

/// Rule "strict-sync leader cut from its replicas" (praetor, issue 13 item 4): `Some(candidate)`
/// when this leader (`me`, still reaching the DCS) must hand its key to a synchronous standby:
/// - `praetor.strict_sync_failover`, `synchronous_mode: on` with `synchronous_mode_strict`, not
///   paused, no `/failover` key pending, and `/sync` written by this leader;
/// - no synchronous standby confirmed this primary's WAL for longer than `ttl` (commits have been
///   waiting that long);
/// - the candidate is named in `/sync` (in strict mode no commit was acknowledged without it, so
///   it has every acknowledged commit) and is healthy in the DCS: its member key exists (it is
///   renewed within `ttl`), it runs as a replica, may be promoted (`nofailover`, `failover_priority`)
///   and streams (`nostream` unset), on this primary's timeline when both are known.
///
/// Among several candidates the one with the highest published WAL position wins, then the name.
/// Quorum mode is not covered: `/sync` there names voters, not a single complete standby.
pub fn strict_sync_handover(
    me: &str,
    my_timeline: Option<u64>,
    policy: &DynamicPolicy,
    ttl: Duration,
    cluster: &Cluster,
    c: Option<&WalConfirmation>,
) -> Option<String> {
    let c = c?;
    if !policy.partition.strict_sync_failover
        || policy.synchronous_mode != SyncMode::On
        || !policy.synchronous_mode_strict
        || policy.pause
        || cluster.failover.is_some()
        || !cluster.sync.leader.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(me))
        || c.sync_silent_for <= ttl
    {
        return None;
    }
    cluster
        .sync
        .members()
        .iter()
        .filter(|n| !n.eq_ignore_ascii_case(me))
        .filter_map(|n| cluster.members.iter().find(|m| m.name.eq_ignore_ascii_case(n)))
        .filter(|m| {
            let tags = m.data.tags.clone().unwrap_or_default();
            m.data.state == "running"
                && m.data.role == Role::Replica
                && !super::failover::tags_nofailover(&tags)
                && !m.data.tag_bool("nostream")
                && match (m.data.timeline, my_timeline) {
                    (Some(theirs), Some(mine)) => theirs == mine,
                    _ => true,
                }
        })
        .max_by(|a, b| {
            (a.data.xlog_location.unwrap_or(0), std::cmp::Reverse(&a.name))
                .cmp(&(b.data.xlog_location.unwrap_or(0), std::cmp::Reverse(&b.name)))
        })
        .map(|m| m.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::model::{Failover, Member, MemberData, SyncState, Version};
    use serde_json::json;

    fn t(ms: u64) -> MonoTime {
        MonoTime(Duration::from_millis(ms))
    }

    fn row(name: &str, lsn: u64, sync: bool) -> ConfirmRow {
        ConfirmRow { name: name.into(), lsn, sync }
    }

    #[test]
    fn replica_that_keeps_confirming_new_wal_is_never_silent() {
        let mut tr = ConfirmTracker::default();
        for i in 0..20u64 {
            // The primary is always a little ahead (the last write is in flight), the replica moves.
            let c = tr.observe(t(i * 150), 1000 + i * 100, &[row("pg1", 990 + i * 100, false)]);
            assert_eq!(c.replicas_silent_for, Duration::ZERO, "sample {i}");
        }
    }

    #[test]
    fn idle_primary_is_not_silent_even_without_replicas() {
        let mut tr = ConfirmTracker::default();
        for i in 0..20u64 {
            let c = tr.observe(t(i * 150), 5000, &[]);
            assert_eq!(c.replicas_silent_for, Duration::ZERO);
        }
    }

    #[test]
    fn silence_counts_from_the_last_confirmation_once_new_wal_is_unconfirmed() {
        let mut tr = ConfirmTracker::default();
        tr.observe(t(0), 1000, &[row("pg1", 1000, false)]);
        tr.observe(t(150), 1000, &[row("pg1", 1000, false)]);
        // Cut: the row stays with its old position, the primary keeps writing.
        let c = tr.observe(t(300), 1200, &[row("pg1", 1000, false)]);
        assert_eq!(c.replicas_silent_for, Duration::from_millis(150));
        let c = tr.observe(t(450), 1400, &[row("pg1", 1000, false)]);
        assert_eq!(c.replicas_silent_for, Duration::from_millis(300));
        // The link comes back: the replica catches up.
        let c = tr.observe(t(600), 1400, &[row("pg1", 1400, false)]);
        assert_eq!(c.replicas_silent_for, Duration::ZERO);
    }

    #[test]
    fn a_stuck_replica_behind_an_idle_primary_is_not_silent_until_new_wal_arrives() {
        let mut tr = ConfirmTracker::default();
        tr.observe(t(0), 1000, &[row("pg1", 900, false)]);
        tr.observe(t(150), 1000, &[row("pg1", 950, false)]);
        let c = tr.observe(t(300), 1000, &[row("pg1", 950, false)]);
        assert_eq!(c.replicas_silent_for, Duration::ZERO, "nothing new since the last confirmation");
        let c = tr.observe(t(450), 1100, &[row("pg1", 950, false)]);
        assert_eq!(c.replicas_silent_for, Duration::from_millis(150));
    }

    #[test]
    fn only_synchronous_rows_count_for_sync_silence() {
        let mut tr = ConfirmTracker::default();
        tr.observe(t(0), 1000, &[row("pg1", 1000, true), row("pg2", 1000, false)]);
        let c = tr.observe(t(1000), 2000, &[row("pg1", 1000, true), row("pg2", 2000, false)]);
        assert_eq!(c.replicas_silent_for, Duration::ZERO);
        assert_eq!(c.sync_silent_for, Duration::from_secs(1));
    }

    #[test]
    fn a_reconnecting_replica_counts_as_confirming() {
        let mut tr = ConfirmTracker::default();
        tr.observe(t(0), 1000, &[]);
        let c = tr.observe(t(500), 1100, &[]);
        assert_eq!(c.replicas_silent_for, Duration::from_millis(500));
        let c = tr.observe(t(650), 1100, &[row("PG1", 1050, false)]);
        assert_eq!(c.replicas_silent_for, Duration::ZERO);
        assert_eq!(tr.last(), c);
    }

    fn silent(ms: u64) -> WalConfirmation {
        WalConfirmation {
            replicas_silent_for: Duration::from_millis(ms),
            sync_silent_for: Duration::from_millis(ms),
        }
    }

    #[test]
    fn isolated_primary_is_fenced_only_when_replicas_are_silent_and_others_exist() {
        let p = PartitionPolicy::default();
        assert_eq!(isolated_primary_fence(&p, Some(&silent(300)), true), Some(Duration::from_millis(300)));
        assert_eq!(isolated_primary_fence(&p, Some(&silent(299)), true), None, "a replica still confirms");
        assert_eq!(isolated_primary_fence(&p, Some(&silent(5000)), false), None, "nobody could take over");
        assert_eq!(isolated_primary_fence(&p, None, true), None, "not measured");
        let off = PartitionPolicy { fence_isolated_primary: false, ..p };
        assert_eq!(isolated_primary_fence(&off, Some(&silent(5000)), true), None, "switched off");
        let slow = PartitionPolicy { replica_silence: Duration::from_secs(2), ..p };
        assert_eq!(isolated_primary_fence(&slow, Some(&silent(1000)), true), None);
        assert!(at_risk(&p, &silent(300), true));
        assert!(!at_risk(&p, &silent(300), false));
    }

    /// The sampler probes the DCS from half of `replica_silence` on, so that the DCS has had the
    /// whole `replica_silence` to answer by the time the replicas have been silent that long.
    #[test]
    fn dcs_probe_starts_at_half_the_replica_silence() {
        let p = PartitionPolicy::default();
        assert!(!dcs_probe_due(&p, &silent(0), true), "replicas confirm");
        assert!(!dcs_probe_due(&p, &silent(149), true));
        assert!(dcs_probe_due(&p, &silent(150), true));
        assert!(!dcs_probe_due(&p, &silent(5000), false), "nobody could take over");
        let off = PartitionPolicy { fence_isolated_primary: false, ..p };
        assert!(!dcs_probe_due(&off, &silent(5000), true), "switched off");
    }

    /// The fence's DCS evidence: replicas silent for `replica_silence` and the DCS probe
    /// unanswered as long; either alone keeps Patroni's behaviour.
    #[test]
    fn dcs_is_lost_only_when_replicas_and_the_probe_are_both_silent_long_enough() {
        let p = PartitionPolicy::default();
        let ms = |m| Some(Duration::from_millis(m));
        assert!(dcs_lost(&p, &silent(300), true, ms(300)));
        assert!(!dcs_lost(&p, &silent(300), true, ms(299)), "the DCS may still answer");
        assert!(!dcs_lost(&p, &silent(300), true, None), "the DCS answered the last probe");
        assert!(
            !dcs_lost(&p, &silent(299), true, ms(5000)),
            "a replica still confirms: cut from the DCS only"
        );
        assert!(!dcs_lost(&p, &silent(5000), false, ms(5000)), "nobody could take over");
        let off = PartitionPolicy { fence_isolated_primary: false, ..p };
        assert!(!dcs_lost(&off, &silent(5000), true, ms(5000)), "switched off");
    }

    fn member(name: &str, data: serde_json::Value) -> Member {
        let mut d = MemberData {
            conn_url: format!("postgres://{name}:5432/postgres"),
            api_url: format!("http://{name}:8008/patroni"),
            state: "running".into(),
            role: Role::Replica,
            timeline: Some(2),
            xlog_location: Some(100),
            ..Default::default()
        };
        if let Some(tags) = data.get("tags").and_then(|t| t.as_object()) {
            d.tags = Some(tags.clone());
        }
        if let Some(s) = data.get("state").and_then(|s| s.as_str()) {
            d.state = s.into();
        }
        if let Some(r) = data.get("role").and_then(|s| s.as_str()) {
            d.role = Role::parse(r);
        }
        if let Some(tl) = data.get("timeline").and_then(|s| s.as_u64()) {
            d.timeline = Some(tl);
        }
        if let Some(l) = data.get("lsn").and_then(|s| s.as_u64()) {
            d.xlog_location = Some(l);
        }
        Member { name: name.into(), data: d, version: Version(1), owner: None }
    }

    fn strict_cluster(sync: &str, members: Vec<Member>) -> Cluster {
        Cluster {
            sync: SyncState {
                leader: Some("pg0".into()),
                sync_standby: Some(sync.into()),
                quorum: 0,
                version: Some(Version(3)),
            },
            members,
            ..Default::default()
        }
    }

    fn strict_policy() -> DynamicPolicy {
        let mut p = DynamicPolicy {
            synchronous_mode: SyncMode::On,
            synchronous_mode_strict: true,
            ..DynamicPolicy::default()
        };
        p.partition.strict_sync_failover = true;
        p
    }

    const TTL: Duration = Duration::from_secs(30);

    fn handover(policy: &DynamicPolicy, cluster: &Cluster, silent_secs: u64) -> Option<String> {
        strict_sync_handover("pg0", Some(2), policy, TTL, cluster, Some(&silent(silent_secs * 1000)))
    }

    #[test]
    fn strict_sync_leader_without_confirming_standby_past_ttl_hands_over_to_the_sync_standby() {
        let c =
            strict_cluster("pg1", vec![member("pg0", json!({"role": "primary"})), member("pg1", json!({}))]);
        assert_eq!(handover(&strict_policy(), &c, 31), Some("pg1".into()));
        assert_eq!(handover(&strict_policy(), &c, 30), None, "not longer than ttl yet");
    }

    #[test]
    fn strict_sync_handover_needs_strict_mode_on_and_the_setting() {
        let c = strict_cluster("pg1", vec![member("pg1", json!({}))]);
        let not_strict = DynamicPolicy { synchronous_mode_strict: false, ..strict_policy() };
        assert_eq!(handover(&not_strict, &c, 60), None, "non-strict mode does not block writes");
        let quorum = DynamicPolicy { synchronous_mode: SyncMode::Quorum, ..strict_policy() };
        assert_eq!(handover(&quorum, &c, 60), None, "quorum mode is not covered");
        let paused = DynamicPolicy { pause: true, ..strict_policy() };
        assert_eq!(handover(&paused, &c, 60), None);
        let mut off = strict_policy();
        off.partition.strict_sync_failover = false;
        assert_eq!(handover(&off, &c, 60), None);
        assert_eq!(strict_sync_handover("pg0", Some(2), &strict_policy(), TTL, &c, None), None);
    }

    #[test]
    fn strict_sync_handover_only_to_a_healthy_member_named_in_sync() {
        let p = strict_policy();
        let absent = strict_cluster("pg1", vec![member("pg2", json!({}))]);
        assert_eq!(handover(&p, &absent, 60), None, "member key expired: not healthy");
        let not_listed =
            strict_cluster("pg1", vec![member("pg1", json!({})), member("pg2", json!({"lsn": 999}))]);
        assert_eq!(handover(&p, &not_listed, 60), Some("pg1".into()), "pg2 is not in /sync");
        for bad in [
            json!({"state": "stopped"}),
            json!({"state": "starting"}),
            json!({"role": "primary"}),
            json!({"tags": {"nofailover": true}}),
            json!({"tags": {"failover_priority": 0}}),
            json!({"tags": {"nostream": true}}),
            json!({"timeline": 3}),
        ] {
            let c = strict_cluster("pg1", vec![member("pg1", bad.clone())]);
            assert_eq!(handover(&p, &c, 60), None, "{bad}");
        }
        let mut other_leader = strict_cluster("pg1", vec![member("pg1", json!({}))]);
        other_leader.sync.leader = Some("pg9".into());
        assert_eq!(handover(&p, &other_leader, 60), None, "/sync was not written by this leader");
        let mut pending = strict_cluster("pg1", vec![member("pg1", json!({}))]);
        pending.failover =
            Some(Failover { leader: Some("pg0".into()), member: Some("pg1".into()), ..Default::default() });
        assert_eq!(handover(&p, &pending, 60), None, "a switchover is already pending");
    }

    #[test]
    fn strict_sync_handover_prefers_the_most_advanced_sync_standby() {
        let c = strict_cluster(
            "pg1,pg2,pg3",
            vec![
                member("pg1", json!({"lsn": 10})),
                member("pg2", json!({"lsn": 30})),
                member("pg3", json!({"lsn": 30})),
            ],
        );
        assert_eq!(handover(&strict_policy(), &c, 60), Some("pg2".into()));
    }
}
