//! The pure HA policy: [`decide`] maps one [`Snapshot`] and the [`Memory`] of earlier cycles to a
//! [`Decision`], following Patroni 4.1.5's `Ha._run_cycle` step by step (PATRONI-COMPAT §6.2–§6.8).
//!
//! Owns: what the node does next and why. Must not do I/O, read a clock or use the runtime: every
//! observation, time and I/O result arrives in the snapshot; every effect leaves as an
//! [`Action`] or a [`Step`].
//!
//! # How the loop calls it
//! ```text
//! let mut steps = StepResults::default();
//! let decision = loop {
//!     let d = decide(&snapshot_with(&steps), &memory);
//!     match d.step { Some(step) => perform(step, &mut steps) /* fills one field */, None => break d }
//! };
//! execute(decision.actions); memory = decision.next; log(decision.log_line());
//! ```
//! Each [`Step`] kind is requested at most once per cycle.

use super::action::{Action, Decision, DemoteMode, FollowTarget, PeerTarget, Reason, Step};
use super::failover::{
    KnownMember, NoLeaderVerdict, RaceView, Schedule, check_schedule, failover_action_name,
    manual_failover_no_leader, quorum_commit_mode_is_active, sync_matches, sync_mode_is_active, title,
};
use super::snapshot::{
    ControlState, DataDir, Finished, HostPort, LongActionKind, MonoTime, PeerStatus, PgRun, RewindCheck,
    Snapshot, SyncMode, WatchdogState, WriteOutcome,
};
use crate::dcs::model::{Cluster, Leader, Version, value_is_true};
use crate::types::{Lsn, Role};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

/// The `pg_rewind` state machine (Patroni `REWIND_STATUS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RewindState {
    /// Nothing known.
    #[default]
    Initial,
    /// A check against the leader is due.
    Check,
    /// Diverged: rewind or reinitialize before following.
    Need,
    /// Checked: no rewind needed.
    NotNeed,
    /// `pg_rewind` succeeded.
    Success,
    /// `pg_rewind` failed.
    Failed,
}

impl RewindState {
    /// Patroni `Rewind.is_needed`.
    pub fn is_needed(self) -> bool {
        matches!(self, RewindState::Check | RewindState::Need)
    }

    /// Patroni `Rewind.executed`.
    pub fn executed(self) -> bool {
        matches!(self, RewindState::Success | RewindState::Failed)
    }
}

/// The cluster as of the last DCS read that showed a leader (Patroni `old_cluster`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OldCluster {
    /// The leader then.
    pub leader: Option<String>,
    /// The members then.
    pub members: Vec<KnownMember>,
}

/// State carried from one cycle to the next; `decide` returns the next value in
/// [`Decision::next`]. Starts as `Memory::default()` when the agent starts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    /// `old_cluster`: the leader and members as of the last read that had a leader (or the first
    /// read). The leader race asks these members too.
    pub old_cluster: Option<OldCluster>,
    /// Last `/failsafe` value read (Patroni `dcs.failsafe`), used while the DCS is down.
    pub last_failsafe: Option<BTreeMap<String, String>>,
    /// This node holds the leader key until then (last successful acquire/renewal + ttl); `None`
    /// when it does not (Patroni `is_leader`).
    pub leader_until: Option<MonoTime>,
    /// The previous cycle was paused.
    pub was_paused: bool,
    /// Won the `/initialize` race; bootstrap not finished.
    pub bootstrapping: bool,
    /// Result reported by the last bootstrap/post_bootstrap/promote (Patroni's critical-task response):
    /// `Some(false)` = failed (or `pre_promote` refused).
    pub task_result: Option<bool>,
    /// PostgreSQL was started after a failure; check next cycle that it came up.
    pub recovering: bool,
    /// Single-user crash recovery started then.
    pub crash_recovery_started: Option<MonoTime>,
    /// First cycle that saw PostgreSQL `starting`.
    pub starting_since: Option<MonoTime>,
    /// Start timeout overriding `primary_start_timeout` (restart with a `timeout`).
    pub start_timeout: Option<Duration>,
    /// The leader key was released because `pre_promote` failed: skip races for `ttl`.
    pub released_leader_key_at: Option<MonoTime>,
    /// `pg_rewind` state.
    pub rewind: RewindState,
    /// The agent has seen PostgreSQL healthy once (Patroni `cb_called`); the loop fires `on_start`
    /// when this flips to true.
    pub cb_called: bool,
    /// This node handed its key to a synchronous standby then (praetor's strict-sync handover):
    /// skip leader races for `ttl`, so that the standby, not this node, takes the key.
    pub handed_over_at: Option<MonoTime>,
}

impl Memory {
    /// This node believes it holds the leader key at `now`.
    pub fn is_leader(&self, now: MonoTime) -> bool {
        self.leader_until.is_some_and(|t| t > now)
    }
}

/// Patroni `sysid_valid`: at least 10 digits, digits only.
pub fn sysid_valid(sysid: Option<&str>) -> bool {
    sysid.is_some_and(|s| s.len() >= 10 && s.bytes().all(|b| b.is_ascii_digit()))
}

/// A step is needed before the cycle can be decided.
struct NeedStep(Step);

type R<T> = Result<T, NeedStep>;

/// Decide what this node does in this cycle.
///
/// # Invariants
/// - A primary whose DCS read fails demotes (`offline`) unless `failsafe_mode` keeps it or the
///   cluster is paused: `primary_demotes_when_dcs_unreachable_past_retry_timeout`.
/// - A primary never keeps running after its lock renewal is refused, unless paused:
///   `primary_demotes_at_once_when_lock_renewal_is_refused`.
pub fn decide(s: &Snapshot<'_>, mem: &Memory) -> Decision {
    let mut cx = Cx {
        s,
        next: mem.clone(),
        actions: Vec::new(),
        notes: Vec::new(),
        wake_after: None,
        has_lock: false,
    };
    cx.absorb_finished();
    match cx.run_cycle() {
        Ok(reason) => Decision {
            step: None,
            actions: cx.actions,
            reason,
            paused: s.policy.pause,
            next: cx.next,
            notes: cx.notes,
            wake_after: cx.wake_after,
        },
        Err(NeedStep(step)) => Decision {
            step: Some(step),
            actions: Vec::new(),
            reason: Reason::AwaitingStep,
            paused: s.policy.pause,
            next: mem.clone(),
            notes: Vec::new(),
            wake_after: None,
        },
    }
}

struct Cx<'s, 'a> {
    s: &'s Snapshot<'a>,
    next: Memory,
    actions: Vec<Action>,
    notes: Vec<String>,
    wake_after: Option<Duration>,
    has_lock: bool,
}

impl<'s, 'a> Cx<'s, 'a> {
    fn me(&self) -> &str {
        &self.s.me.name
    }

    fn paused(&self) -> bool {
        self.s.policy.pause
    }

    fn push(&mut self, a: Action) {
        self.actions.push(a);
    }

    fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    fn absorb_finished(&mut self) {
        for f in self.s.finished {
            match f {
                Finished::Bootstrap { ok: false } => self.next.task_result = Some(false),
                Finished::Bootstrap { ok: true } => {}
                Finished::PostBootstrap { ok } => self.next.task_result = Some(*ok),
                Finished::Promote { pre_promote_ok } => {
                    self.next.task_result = if *pre_promote_ok { Some(true) } else { Some(false) }
                }
                Finished::Rewind { ok } => {
                    self.next.rewind = if *ok { RewindState::Success } else { RewindState::Failed }
                }
                Finished::Other(_) => {}
            }
        }
    }

    /// The cluster as the policy sees it: with failsafe mode on and no leader key, the leader that
    /// recently pinged us through `POST /failsafe` counts as the leader.
    fn effective_cluster(&self, raw: &'a Cluster) -> Cow<'a, Cluster> {
        let s = self.s;
        if raw.is_unlocked()
            && s.policy.failsafe_mode
            && let Some(ping) = s.failsafe_ping
            && s.now.since(ping.received_at) < s.timing.ttl
            && !ping.name.is_empty()
        {
            let mut c = raw.clone();
            c.leader = Some(Leader { name: ping.name.clone(), version: Version(0), owner: None });
            return Cow::Owned(c);
        }
        Cow::Borrowed(raw)
    }

    fn run_cycle(&mut self) -> R<Reason> {
        let raw = match &self.s.cluster {
            Ok(c) => *c,
            Err(_) => return self.handle_dcs_error(),
        };
        // Patroni keeps the cluster state of the last time it was healthy (had a leader).
        if !raw.is_unlocked() || self.next.old_cluster.is_none() {
            self.next.old_cluster = Some(OldCluster {
                leader: raw.leader.as_ref().map(|l| l.name.clone()),
                members: raw.members.iter().map(KnownMember::from_member).collect(),
            });
        }
        self.next.last_failsafe = raw.failsafe.clone();
        let cluster = self.effective_cluster(raw);
        let cluster: &Cluster = &cluster;
        self.has_lock = cluster.leader.as_ref().is_some_and(|l| l.name == self.s.me.name);
        if !self.has_lock {
            self.next.leader_until = None;
        }

        if self.paused() {
            if !self.next.was_paused {
                self.push(Action::DisableWatchdog);
            }
            self.next.was_paused = true;
        } else {
            if self.next.was_paused {
                // During pause PostgreSQL may have been changed by hand: check rewind again.
                self.next.rewind = RewindState::Initial;
            }
            self.next.was_paused = false;
        }

        if self.has_lock
            && !sysid_valid(cluster.initialize.as_deref())
            && let Some(sysid) = self.s.pg.sysid.clone().filter(|s| sysid_valid(Some(s)))
        {
            self.push(Action::WriteInitialize { create_new: cluster.initialize.is_none(), sysid });
        }
        if self.has_lock && cluster.config.as_ref().is_none_or(|c| c.data.is_empty()) {
            self.push(Action::WriteConfig);
        }

        if self.s.in_flight.is_some() {
            return self.handle_long_action_in_progress(cluster);
        }
        if let Some(r) = self.handle_starting_instance(cluster)? {
            return Ok(r);
        }
        if self.next.bootstrapping {
            return Ok(self.post_bootstrap(cluster));
        }
        if self.next.recovering {
            self.next.recovering = false;
            if !self.next.rewind.is_needed()
                && let Some(r) = self.post_recover()
            {
                return Ok(r);
            }
            self.next.crash_recovery_started = None;
            if self.next.rewind == RewindState::Success {
                self.next.rewind = RewindState::Initial;
            }
        }

        let pg = self.s.pg;
        match &pg.data_dir {
            DataDir::Empty | DataDir::Inaccessible(_) => {
                let accessible = matches!(pg.data_dir, DataDir::Empty);
                self.set_role(Role::Uninitialized);
                if pg.is_running() {
                    self.push(Action::StopImmediate);
                }
                if self.has_lock {
                    self.push(Action::DisableWatchdog);
                    self.release_lock(None);
                    return Ok(Reason::ReleasedKeyDataDir { accessible });
                }
                if let DataDir::Inaccessible(error) = &pg.data_dir {
                    return Ok(Reason::DataDirNotAccessible { error: error.clone() });
                }
                if self.paused() {
                    return Ok(Reason::RunningWithEmptyDataDir);
                }
                return self.bootstrap(cluster);
            }
            DataDir::Initialized => {
                let data_sysid = pg.sysid.clone().unwrap_or_default();
                if !sysid_valid(Some(&data_sysid)) {
                    return Ok(Reason::InvalidSysid);
                }
                if sysid_valid(cluster.initialize.as_deref()) {
                    let init = cluster.initialize.clone().unwrap_or_default();
                    if init != data_sysid {
                        if self.paused() {
                            self.note(format!(
                                "system ID has changed while in paused mode. Patroni will exit when resuming unless \
                                 system ID is reset: {init} != {data_sysid}"
                            ));
                            if self.has_lock {
                                self.release_lock(None);
                                return Ok(Reason::ReleasedKeySysidMismatch);
                            }
                        } else {
                            let r = Reason::SysidMismatch {
                                me: self.me().to_string(),
                                cluster: init,
                                data: data_sysid,
                            };
                            self.push(Action::Exit(r.to_string()));
                            return Ok(r);
                        }
                    }
                } else if cluster.is_unlocked() && !self.paused() && !self.next.cb_called {
                    // Data directory present but no /initialize: adopt a running primary's sysid.
                    if pg.is_running() && !pg.is_primary() {
                        self.note("Please first start Patroni on the node running as primary");
                        let r = Reason::NoInitializeKeyRunningAsReplica;
                        self.push(Action::Exit(r.to_string()));
                        return Ok(r);
                    }
                    self.push(Action::WriteInitialize {
                        create_new: cluster.initialize.is_none(),
                        sysid: data_sysid,
                    });
                }
            }
        }

        if !pg.is_running() {
            if self.paused() {
                if self.has_lock {
                    self.release_lock(None);
                    return Ok(Reason::RemovedLockPgNotRunning);
                }
                let rw = self.next.rewind;
                let may_rewind = rw.is_needed() && self.s.policy.can_rewind_or_reinitialize();
                if rw == RewindState::Failed || !(rw.executed() || may_rewind) {
                    return Ok(Reason::PgNotRunning);
                }
            }
            return self.recover(cluster);
        }

        let reason = if cluster.is_unlocked() {
            self.process_unhealthy_cluster(cluster)?
        } else {
            let msg = self.process_healthy_cluster(cluster)?;
            self.evaluate_scheduled_restart().unwrap_or(msg)
        };

        if !self.next.cb_called && pg.run == PgRun::Running {
            if !pg.is_primary() && !self.actions.contains(&Action::Promote) {
                self.trigger_rewind_check();
            }
            self.next.cb_called = true;
        }
        Ok(reason)
    }

    // ----- helpers -----------------------------------------------------------------------------

    fn set_role(&mut self, role: Role) {
        if self.s.pg.role != role {
            self.push(Action::SetRole(role));
        }
    }

    fn release_lock(&mut self, last_lsn: Option<Lsn>) {
        self.next.leader_until = None;
        self.push(Action::ReleaseLock { last_lsn });
        self.has_lock = false;
    }

    fn demote(&mut self, mode: DemoteMode) {
        self.trigger_rewind_check();
        if matches!(
            mode,
            DemoteMode::Immediate
                | DemoteMode::ImmediateNolock
                | DemoteMode::Offline
                | DemoteMode::Fence
                | DemoteMode::Handover
        ) {
            self.next.leader_until = None;
        }
        self.push(Action::Demote(mode));
    }

    fn trigger_rewind_check(&mut self) {
        if self.s.policy.can_rewind_or_reinitialize() && self.next.rewind != RewindState::Need {
            self.next.rewind = RewindState::Check;
        }
    }

    fn target(&self, cluster: &Cluster, name: &str) -> FollowTarget {
        let conn_url = cluster
            .member(name)
            .map(|m| m.data.conn_url.clone())
            .filter(|u| !u.is_empty())
            .or_else(|| self.s.failsafe_ping.filter(|p| p.name == name).and_then(|p| p.conn_url.clone()));
        FollowTarget { name: name.to_string(), conn_url }
    }

    fn leader_target(&self, cluster: &Cluster) -> Option<FollowTarget> {
        cluster.leader.as_ref().map(|l| self.target(cluster, &l.name))
    }

    /// Patroni `_get_node_to_follow`.
    fn node_to_follow(&self, cluster: &Cluster) -> Option<FollowTarget> {
        let tags = &self.s.me.tags;
        if tags.nostream {
            return None;
        }
        let name = match tags.replicatefrom.as_deref() {
            Some(rf) if rf != self.me() => {
                if cluster.member(rf).is_some() {
                    Some(rf.to_string())
                } else {
                    cluster.leader.as_ref().map(|l| l.name.clone())
                }
            }
            _ => cluster.leader.as_ref().map(|l| l.name.clone()),
        }?;
        (name != self.me()).then(|| self.target(cluster, &name))
    }

    /// Everybody the race may need to ask: members now, members when a leader last existed, and
    /// the `/failsafe` topology, minus this node.
    fn peer_targets(&self, cluster: &Cluster) -> Vec<PeerTarget> {
        let mut by_name: BTreeMap<String, String> = BTreeMap::new();
        if let Some(old) = &self.next.old_cluster {
            for m in &old.members {
                by_name.insert(m.name.clone(), m.api_url.clone());
            }
        }
        if let Some(fs) = &self.next.last_failsafe {
            for (n, u) in fs {
                by_name.insert(n.clone(), u.clone());
            }
        }
        for m in &cluster.members {
            by_name.insert(m.name.clone(), m.data.api_url.clone());
        }
        by_name
            .into_iter()
            .filter(|(n, u)| n != self.me() && !u.is_empty())
            .map(|(name, api_url)| PeerTarget { name, api_url })
            .collect()
    }

    fn peers(&self, cluster: &Cluster) -> R<&'a BTreeMap<String, PeerStatus>> {
        match &self.s.steps.peers {
            Some(p) => Ok(p),
            None => Err(NeedStep(Step::FetchPeers(self.peer_targets(cluster)))),
        }
    }

    fn view<'x>(&'x self, cluster: &'x Cluster, peers: &'x BTreeMap<String, PeerStatus>) -> RaceView<'x> {
        RaceView { me: self.s.me, pg: self.s.pg, cluster, policy: self.s.policy, peers }
    }

    fn is_failover_possible(
        &mut self,
        cluster: &Cluster,
        cluster_lsn: u64,
        exclude_candidate: bool,
    ) -> R<bool> {
        // Nobody to ask: decide without calling anybody (Patroni fetches nothing either).
        let no_peers = BTreeMap::new();
        let peers = if self.view(cluster, &no_peers).failover_candidates(exclude_candidate).is_empty() {
            &no_peers
        } else {
            self.peers(cluster)?
        };
        let mut notes = Vec::new();
        let ok = self.view(cluster, peers).is_failover_possible(cluster_lsn, exclude_candidate, &mut notes);
        self.notes.extend(notes);
        Ok(ok)
    }

    fn update_lock(&mut self, update_status: bool) -> R<WriteOutcome> {
        match self.s.steps.lock_update {
            Some(o) => {
                match o {
                    WriteOutcome::Done => self.next.leader_until = Some(self.s.now.plus(self.s.timing.ttl)),
                    _ => self.next.leader_until = None,
                }
                Ok(o)
            }
            None => Err(NeedStep(Step::UpdateLock { update_status })),
        }
    }

    // ----- §6.6 DCS unreachable -----------------------------------------------------------------

    /// Patroni `_handle_dcs_error`.
    fn handle_dcs_error(&mut self) -> R<Reason> {
        let pg = self.s.pg;
        if !self.paused() && pg.is_running() && pg.is_primary() {
            if let Some(silent) = super::fence::isolated_primary_fence(
                &self.s.policy.partition,
                self.s.wal_confirmation.as_ref(),
                self.others_known(),
            ) {
                let silent_ms = silent.as_millis() as u64;
                self.note(format!(
                    "fencing: the DCS is not accessible and no replica confirmed WAL for {silent_ms} ms: \
                     stopping writes at once (praetor.fence_isolated_primary)"
                ));
                self.demote(DemoteMode::Fence);
                return Ok(Reason::FencedIsolatedPrimary { silent_ms });
            }
            if self.s.policy.failsafe_mode && self.check_failsafe_topology()? {
                self.next.leader_until = Some(self.s.now.plus(self.s.timing.ttl));
                self.push(Action::KeepaliveWatchdog);
                return Ok(Reason::ContinueAsLeaderFailsafe);
            }
            self.note("demoting self because DCS is not accessible and I was a leader");
            self.demote(DemoteMode::Offline);
            return Ok(Reason::DemotedDcsNotAccessible);
        }
        Ok(Reason::DcsNotAccessible)
    }

    /// Other members are known (from the last cluster read with a leader, or `/failsafe`): someone
    /// could be promoted once this leader's key expires.
    fn others_known(&self) -> bool {
        let me = self.me();
        self.next.old_cluster.as_ref().is_some_and(|o| o.members.iter().any(|m| m.name != me))
            || self.next.last_failsafe.as_ref().is_some_and(|f| f.keys().any(|n| n != me))
    }

    /// praetor's strict-sync handover (see [`super::fence::strict_sync_handover`]): stop PostgreSQL,
    /// name the synchronous standby in `/failover`, release the key, and stay out of the race for
    /// `ttl`. `None` when the rule does not apply.
    fn strict_sync_handover(&mut self, cluster: &Cluster) -> Option<Reason> {
        let s = self.s;
        if !s.pg.is_primary() {
            return None;
        }
        let to = super::fence::strict_sync_handover(
            self.me(),
            s.pg.timeline,
            s.policy,
            s.timing.ttl,
            cluster,
            s.wal_confirmation.as_ref(),
        )?;
        let silent_secs = s.wal_confirmation.map(|c| c.sync_silent_for.as_secs()).unwrap_or(0);
        self.note(format!(
            "strict synchronous mode: no synchronous standby confirmed WAL for {silent_secs} s (ttl {} s) while {to} \
             is healthy in the DCS: handing the leader key over (praetor.strict_sync_failover)",
            s.timing.ttl.as_secs()
        ));
        self.demote(DemoteMode::Handover);
        self.push(Action::WriteFailoverKey { leader: self.me().to_string(), member: to.clone() });
        self.release_lock(None);
        self.next.handed_over_at = Some(s.now);
        Some(Reason::HandedOverToSyncStandby { to, silent_secs })
    }

    /// Patroni `check_failsafe_topology`.
    fn check_failsafe_topology(&mut self) -> R<bool> {
        let Some(fs) = self.next.last_failsafe.clone() else {
            return Ok(false);
        };
        if !fs.contains_key(self.me()) {
            return Ok(false);
        }
        let targets: Vec<PeerTarget> = fs
            .iter()
            .filter(|(n, _)| n.as_str() != self.me())
            .map(|(n, u)| PeerTarget { name: n.clone(), api_url: u.clone() })
            .collect();
        if targets.is_empty() {
            return Ok(true);
        }
        match self.s.steps.failsafe_accepted {
            Some(ok) => Ok(ok),
            None => Err(NeedStep(Step::PostFailsafe(targets))),
        }
    }

    // ----- §6.2 step 4: long actions ------------------------------------------------------------

    /// Patroni `handle_long_action_in_progress`.
    fn handle_long_action_in_progress(&mut self, cluster: &Cluster) -> R<Reason> {
        let kind = self.s.in_flight.map(|a| a.kind.clone()).expect("called with a long action in flight");
        let action = kind.to_string();
        if self.has_lock {
            match self.update_lock(false)? {
                WriteOutcome::Done => {
                    if kind == LongActionKind::CrashRecovery {
                        let started = self.next.crash_recovery_started.unwrap_or(self.s.now);
                        let elapsed = self.s.now.since(started);
                        if elapsed >= self.s.timing.primary_start_timeout
                            && self.is_failover_possible(cluster, 0, false)?
                        {
                            self.note("Demoting self because crash recovery is taking too long");
                            self.push(Action::CancelLongAction);
                            self.demote(DemoteMode::Immediate);
                            return Ok(Reason::TerminatedCrashRecoveryStartupTimeout);
                        }
                    }
                    return Ok(Reason::UpdatedLockDuring { action });
                }
                WriteOutcome::DcsError => return self.handle_dcs_error(),
                WriteOutcome::Refused => self.has_lock = false,
            }
        }
        if !self.next.bootstrapping && !self.paused() {
            if kind == LongActionKind::Promote {
                self.push(Action::CancelLongAction);
                return Ok(Reason::LostLeaderBeforePromote);
            }
            if self.s.pg.role == Role::Primary {
                self.note(format!("Demoting primary during {action}"));
                if matches!(kind, LongActionKind::Restart | LongActionKind::StartingPrimaryAfterFailure) {
                    self.push(Action::CancelLongAction);
                }
                self.demote(DemoteMode::ImmediateNolock);
                return Ok(Reason::LostLockDuring { action });
            }
        }
        if cluster.is_unlocked() {
            self.note("not healthy enough for leader race");
        }
        Ok(Reason::InProgress { action })
    }

    // ----- §6.7 starting instance / crash recovery ----------------------------------------------

    /// Patroni `handle_starting_instance`.
    fn handle_starting_instance(&mut self, cluster: &Cluster) -> R<Option<Reason>> {
        if self.s.pg.run != PgRun::Starting || self.paused() {
            self.next.start_timeout = None;
            self.next.starting_since = None;
            return Ok(None);
        }
        let since = *self.next.starting_since.get_or_insert(self.s.now);
        if !self.has_lock {
            self.note("Still starting up as a standby.");
            return Ok(None);
        }
        match self.update_lock(false)? {
            WriteOutcome::Done => {}
            WriteOutcome::Refused => {
                self.note("Lost lock while starting up. Demoting self.");
                self.demote(DemoteMode::ImmediateNolock);
                return Ok(Some(Reason::StoppedWhileStartingLockLost));
            }
            WriteOutcome::DcsError => return self.handle_dcs_error().map(Some),
        }
        let timeout = self.next.start_timeout.unwrap_or(self.s.timing.primary_start_timeout);
        let elapsed = self.s.now.since(since);
        if elapsed >= timeout {
            if self.is_failover_possible(cluster, 0, false)? {
                self.note("Demoting self because primary startup is taking too long");
                self.demote(DemoteMode::Immediate);
                return Ok(Some(Reason::StoppedStartupTimeout));
            }
            return Ok(Some(Reason::StartTimedOutNoFailoverPossible));
        }
        if let Some(r) = self.process_manual_failover_from_leader(cluster)? {
            return Ok(Some(r));
        }
        let left = timeout - elapsed;
        Ok(Some(Reason::StillStarting { secs_left: (left.as_secs_f64()).round() as u64 }))
    }

    /// Patroni `post_recover`.
    fn post_recover(&mut self) -> Option<Reason> {
        if self.s.pg.is_running() {
            return None;
        }
        self.push(Action::DisableWatchdog);
        if self.has_lock {
            if matches!(self.s.pg.role, Role::Primary | Role::StandbyLeader) {
                self.push(Action::SetRole(Role::Demoted));
            }
            self.release_lock(None);
            return Some(Reason::RemovedKeyFailedToStart);
        }
        Some(Reason::FailedToStart)
    }

    /// Patroni `_handle_crash_recovery`.
    fn handle_crash_recovery(&mut self, cluster: &Cluster) -> Option<Reason> {
        if self.next.crash_recovery_started.is_none() && (cluster.is_unlocked() || self.s.policy.can_rewind) {
            self.next.crash_recovery_started = Some(self.s.now);
            self.push(Action::CrashRecovery);
            return Some(Reason::CrashRecovery);
        }
        None
    }

    /// Patroni `_handle_rewind_or_reinitialize`.
    fn handle_rewind_or_reinitialize(&mut self, cluster: &Cluster) -> R<Option<Reason>> {
        let Some(leader) = self.leader_target(cluster) else {
            return Ok(None);
        };
        if !self.rewind_needed_and_possible(&leader)? {
            return Ok(None);
        }
        if self.s.policy.can_rewind {
            if !self.s.pg.is_running()
                && self.s.pg.control_state == Some(ControlState::InArchiveRecovery)
                && let Some(r) = self.handle_crash_recovery(cluster)
            {
                return Ok(Some(r));
            }
            let from = leader.name.clone();
            self.push(Action::Rewind { from: leader });
            return Ok(Some(Reason::RunningRewind { from }));
        }
        if self.s.policy.remove_data_directory_on_diverged_timelines {
            self.push(Action::Reinitialize { from: leader });
            return Ok(Some(Reason::ReinitializingDivergedTimelines));
        }
        Ok(None)
    }

    /// The timeline check against the leader was due but the leader could not be asked (not
    /// reachable, or shutting down): keep PostgreSQL stopped and try again next cycle,
    /// rather than start streaming from a leader whose history may have forked from ours (such a
    /// walsender also holds up that leader's fast shutdown until its lease expires).
    fn timeline_check_pending(&self, cluster: &Cluster) -> Option<Reason> {
        if self.next.rewind != RewindState::Check
            || self.s.steps.rewind_check != Some(RewindCheck::LeaderUnavailable)
        {
            return None;
        }
        let leader = self.leader_target(cluster)?;
        Some(Reason::WaitingForTimelineCheck { leader: leader.name })
    }

    /// Patroni `Rewind.rewind_or_reinitialize_needed_and_possible`.
    fn rewind_needed_and_possible(&mut self, leader: &FollowTarget) -> R<bool> {
        if leader.name != self.me() && leader.conn_url.is_some() && self.next.rewind == RewindState::Check {
            match self.s.steps.rewind_check {
                None => return Err(NeedStep(Step::CheckRewind(leader.clone()))),
                Some(RewindCheck::Needed) => self.next.rewind = RewindState::Need,
                Some(RewindCheck::NotNeeded) => self.next.rewind = RewindState::NotNeed,
                Some(RewindCheck::Unknown | RewindCheck::LeaderUnavailable) => {}
            }
        }
        Ok(leader.conn_url.is_some() && self.next.rewind == RewindState::Need)
    }

    /// praetor, before Patroni's `_handle_crash_recovery` for a crashed former primary that follows
    /// a leader: check the rewind first, on the end of its WAL. When its WAL does not go past the
    /// leader's fork point, PostgreSQL started as a standby replays that WAL and follows the new
    /// timeline by itself, so single-user crash recovery (a full sync of the data directory and a
    /// checkpoint *after* the fork point, which then needs pg_rewind) is skipped. `false` (run
    /// crash recovery as Patroni does) when the check says a rewind is needed, cannot tell, or does
    /// not apply (holding the lock, no leader, rewind not configured, recovery already started).
    fn wal_ends_before_fork(&mut self, cluster: &Cluster) -> R<bool> {
        if self.has_lock || !self.s.policy.can_rewind || self.next.crash_recovery_started.is_some() {
            return Ok(false);
        }
        let Some(leader) = self.leader_target(cluster) else {
            return Ok(false);
        };
        if !self.next.rewind.executed() {
            self.trigger_rewind_check();
        }
        self.rewind_needed_and_possible(&leader)?;
        Ok(self.next.rewind == RewindState::NotNeed)
    }

    /// Patroni `recover`: PostgreSQL is not running.
    fn recover(&mut self, cluster: &Cluster) -> R<Reason> {
        let mut timeout = None;
        if self.has_lock {
            match self.update_lock(false)? {
                WriteOutcome::Done => {
                    let t = self.s.timing.primary_start_timeout;
                    if t.is_zero() && self.is_failover_possible(cluster, 0, false)? {
                        self.push(Action::DisableWatchdog);
                        self.note("Primary crashed. Failing over.");
                        self.demote(DemoteMode::Immediate);
                        return Ok(Reason::StoppedToFailOverAfterCrash);
                    }
                    timeout = Some(t);
                }
                WriteOutcome::Refused => self.has_lock = false,
                WriteOutcome::DcsError => return self.handle_dcs_error(),
            }
        }
        let pg = self.s.pg;
        let control = pg.control_state.clone();
        if let Some(t) = timeout.filter(|t| !t.is_zero())
            && matches!(
                control,
                Some(
                    ControlState::InProduction
                        | ControlState::InCrashRecovery
                        | ControlState::ShuttingDown
                        | ControlState::ShutDown
                )
            )
            && pg.run == PgRun::Crashed
            && pg.role == Role::Primary
            && !pg.recovery_conf_exists
        {
            self.push(Action::StartAsPrimary { timeout_secs: t.as_secs() });
            self.next.recovering = true;
            return Ok(Reason::StartingPrimaryAfterFailure);
        }
        self.push(Action::DisableWatchdog);
        if matches!(
            control,
            Some(ControlState::InProduction | ControlState::ShuttingDown | ControlState::InCrashRecovery)
        ) && !self.wal_ends_before_fork(cluster)?
            && let Some(r) = self.handle_crash_recovery(cluster)
        {
            return Ok(r);
        }
        let (reason, upstream) = if self.has_lock {
            self.next.rewind = RewindState::Initial;
            (Reason::StartingReadonlyHadLock, None)
        } else {
            if !self.next.rewind.executed() {
                self.trigger_rewind_check();
            }
            if let Some(r) = self.handle_rewind_or_reinitialize(cluster)? {
                return Ok(r);
            }
            if let Some(r) = self.timeline_check_pending(cluster) {
                return Ok(r);
            }
            (Reason::StartingAsSecondary, self.node_to_follow(cluster))
        };
        self.push(Action::StartAsReplica { upstream, timeout_secs: timeout.map(|t| t.as_secs()) });
        self.next.recovering = true;
        Ok(reason)
    }

    // ----- §6.2 step 7: bootstrap ---------------------------------------------------------------

    /// Patroni `Cluster.get_clone_member`: a running `clonefrom` member other than me and the leader
    /// (Patroni picks randomly; we pick by a hash of our name so replicas spread deterministically),
    /// else the leader.
    fn clone_member(&self, cluster: &Cluster) -> Option<FollowTarget> {
        let leader = cluster.leader.as_ref().map(|l| l.name.as_str());
        let candidates: Vec<&str> = cluster
            .members
            .iter()
            .filter(|m| {
                m.data.tags.as_ref().and_then(|t| t.get("clonefrom")).is_some_and(value_is_true)
                    && !m.data.conn_url.is_empty()
                    && m.data.state == "running"
                    && m.name != self.me()
                    && Some(m.name.as_str()) != leader
            })
            .map(|m| m.name.as_str())
            .collect();
        if candidates.is_empty() {
            return self.leader_target(cluster);
        }
        let h = self
            .me()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let pick = candidates[(h % candidates.len() as u64) as usize];
        Some(self.target(cluster, pick))
    }

    /// Patroni `bootstrap`.
    fn bootstrap(&mut self, cluster: &Cluster) -> R<Reason> {
        let me = self.s.me;
        if cluster.is_unlocked()
            && cluster.initialize.is_none()
            && !me.tags.nofailover
            && me.has_bootstrap_section
        {
            return match self.s.steps.initialize_race {
                None => Err(NeedStep(Step::RaceInitialize)),
                Some(WriteOutcome::Done) => {
                    self.next.bootstrapping = true;
                    self.next.task_result = None;
                    self.push(Action::Bootstrap);
                    Ok(Reason::BootstrappingNewCluster)
                }
                Some(WriteOutcome::Refused) => Ok(Reason::FailedToAcquireInitializeLock),
                Some(WriteOutcome::DcsError) => self.handle_dcs_error(),
            };
        }
        if !cluster.is_unlocked()
            && let Some(from) = self.clone_member(cluster)
        {
            let from_leader = cluster.leader.as_ref().is_some_and(|l| l.name == from.name);
            let name = from.name.clone();
            self.next.rewind = RewindState::Initial;
            self.push(Action::CreateReplica { from: Some(from) });
            return Ok(Reason::BootstrappingFrom { from: name, from_leader });
        }
        let concurrent_bootstrap = cluster.initialize.as_deref() == Some("");
        if me.can_create_replica_without_leader && !concurrent_bootstrap {
            self.next.rewind = RewindState::Initial;
            self.push(Action::CreateReplica { from: None });
            return Ok(Reason::BootstrappingWithoutLeader);
        }
        Ok(Reason::WaitingForLeaderToBootstrap)
    }

    /// Patroni `post_bootstrap`.
    fn post_bootstrap(&mut self, cluster: &Cluster) -> Reason {
        let pg = self.s.pg;
        if !pg.is_running() || self.next.task_result == Some(false) {
            return self.cancel_initialization();
        }
        if self.next.task_result.is_none() {
            if !pg.is_primary() {
                return Reason::WaitingForEndOfRecoveryAfterBootstrap;
            }
            self.set_role(Role::Primary);
            self.push(Action::PostBootstrap);
            return Reason::RunningPostBootstrap;
        }
        self.next.bootstrapping = false;
        if !self.paused() && self.s.me.watchdog == WatchdogState::Unusable {
            self.note("Cancelling bootstrap because watchdog activation failed");
            return self.cancel_initialization();
        }
        if let Some(sysid) = pg.sysid.clone() {
            self.push(Action::WriteInitialize { create_new: cluster.initialize.is_none(), sysid });
        }
        self.push(Action::WriteConfig);
        self.push(Action::TakeLock);
        self.next.leader_until = Some(self.s.now.plus(self.s.timing.ttl));
        if self.s.policy.synchronous_mode != SyncMode::Off {
            self.push(Action::ProcessSyncReplication);
        }
        Reason::InitializedNewCluster
    }

    fn cancel_initialization(&mut self) -> Reason {
        self.next.bootstrapping = false;
        self.push(Action::CancelInitialize);
        self.push(Action::Exit("Failed to bootstrap cluster".into()));
        Reason::FailedToBootstrap
    }

    // ----- §6.4 leader race ---------------------------------------------------------------------

    /// Patroni `is_healthiest_node`.
    fn is_healthiest_node(&mut self, cluster: &Cluster) -> R<bool> {
        let s = self.s;
        if let Some(at) = self.next.released_leader_key_at
            && s.now.since(at) < s.timing.ttl
        {
            self.note("backoff: skip leader race after pre_promote script failure and releasing the lock voluntarily");
            return Ok(false);
        }
        if let Some(at) = self.next.handed_over_at {
            if s.now.since(at) < s.timing.ttl {
                self.note(
                    "backoff: skip leader race after handing the leader key to the synchronous standby",
                );
                return Ok(false);
            }
            self.next.handed_over_at = None;
        }
        let failover = cluster.failover.as_ref();
        let candidate_is_me = failover.and_then(|f| f.member.as_deref()) == Some(self.me());
        if self.paused() && !s.me.tags.nofailover && failover.is_some_and(|f| f.scheduled_at.is_none()) {
            if candidate_is_me {
                return Ok(true);
            }
            let peers = self.peers(cluster)?;
            let mut notes = Vec::new();
            let verdict = manual_failover_no_leader(&self.view(cluster, peers), true, &mut notes);
            self.notes.extend(notes);
            match verdict {
                NoLeaderVerdict::Take => return Ok(true),
                NoLeaderVerdict::Leave => return Ok(false),
                NoLeaderVerdict::ClearStaleKey => {
                    let version = failover.and_then(|f| f.version).map(|v| v.0);
                    self.push(Action::ClearFailoverKey { version });
                }
            }
        }
        if s.pg.is_primary() {
            if self.paused() {
                // In pause the running primary may grab a free lock unless it belongs to another cluster.
                return Ok(
                    !cluster.is_initialized() || s.pg.sysid.as_deref() == cluster.initialize.as_deref()
                );
            }
            // A primary whose timeline is behind the cluster's was replaced meanwhile: never re-take.
            let my_tl = s.pg.timeline.unwrap_or(0);
            if my_tl < cluster.timeline() {
                self.note(format!(
                    "My timeline {my_tl} is behind last known cluster timeline {}",
                    cluster.timeline()
                ));
                return Ok(false);
            }
            return Ok(true);
        }
        if self.paused() || s.me.tags.nofailover {
            return Ok(false);
        }
        if let Some(f) = failover {
            if f.leader.is_some()
                && sync_mode_is_active(s.policy, cluster)
                && !sync_matches(&cluster.sync, self.me(), true)
            {
                return Ok(false);
            }
            if candidate_is_me {
                return Ok(true);
            }
            let peers = self.peers(cluster)?;
            let mut notes = Vec::new();
            let verdict = manual_failover_no_leader(&self.view(cluster, peers), false, &mut notes);
            self.notes.extend(notes);
            return Ok(verdict == NoLeaderVerdict::Take);
        }
        if s.me.watchdog == WatchdogState::Unusable {
            self.note("Watchdog device is not usable");
            return Ok(false);
        }
        let OldCluster { leader: old_leader, members: old_members } =
            self.next.old_cluster.clone().unwrap_or_default();
        let mut all: Vec<KnownMember> = old_members;
        if s.policy.failsafe_mode
            && let Some(fs) = &self.next.last_failsafe
        {
            if !fs.is_empty() && !fs.contains_key(self.me()) {
                return Ok(false);
            }
            all.extend(fs.iter().map(|(n, u)| KnownMember {
                name: n.clone(),
                api_url: u.clone(),
                nofailover: false,
            }));
        }
        all.extend(cluster.members.iter().map(KnownMember::from_member));
        if sync_mode_is_active(s.policy, cluster) {
            // Only /sync members (and the leader that wrote it) may win outside quorum mode.
            if s.policy.synchronous_mode != SyncMode::Quorum && !sync_matches(&cluster.sync, self.me(), true)
            {
                return Ok(false);
            }
            all.retain(|m| sync_matches(&cluster.sync, &m.name, true));
        }
        let mut by_name: BTreeMap<String, KnownMember> = BTreeMap::new();
        for m in all {
            by_name.insert(m.name.clone(), m);
        }
        let members: Vec<KnownMember> = by_name.into_values().collect();
        // Check our own lag and timeline before asking anybody.
        let mut notes = Vec::new();
        let no_peers = BTreeMap::new();
        let eligible = self.view(cluster, &no_peers).own_eligibility(true, &mut notes);
        self.notes.extend(notes);
        if !eligible {
            return Ok(false);
        }
        let peers = self.peers(cluster)?;
        let mut notes = Vec::new();
        let ok = self.view(cluster, peers).peers_allow(&members, old_leader.as_deref(), &mut notes);
        self.notes.extend(notes);
        Ok(ok)
    }

    /// Patroni `process_unhealthy_cluster`: nobody holds the leader key.
    fn process_unhealthy_cluster(&mut self, cluster: &Cluster) -> R<Reason> {
        if self.is_healthiest_node(cluster)? {
            return match self.s.steps.lock_acquire {
                None => Err(NeedStep(Step::AcquireLock)),
                Some(WriteOutcome::Done) => {
                    self.has_lock = true;
                    self.next.leader_until = Some(self.s.now.plus(self.s.timing.ttl));
                    if let Some(f) = &cluster.failover {
                        let version = f.version.map(|v| v.0);
                        match (&f.leader, &f.member) {
                            (Some(_), Some(candidate)) if self.paused() => {
                                self.note("Updating failover key after acquiring leader lock...");
                                self.push(Action::KeepFailoverCandidate {
                                    candidate: candidate.clone(),
                                    scheduled_at: f.scheduled_at.clone(),
                                    version,
                                });
                            }
                            _ => {
                                self.note("Cleaning up failover key after acquiring leader lock...");
                                self.push(Action::ClearFailoverKey { version: None });
                            }
                        }
                    }
                    self.enforce_primary_role(
                        cluster,
                        Reason::AcquiredLockAsLeader,
                        Reason::PromotedByAcquiringLock,
                    )
                }
                Some(WriteOutcome::Refused) => self.follow(
                    cluster,
                    Reason::DemotedAfterFailingToObtainLock,
                    Reason::FollowingNewLeaderAfterFailingToObtainLock,
                ),
                Some(WriteOutcome::DcsError) => self.handle_dcs_error(),
            };
        }
        if cluster.failover.is_some() || self.s.me.tags.nofailover {
            self.trigger_rewind_check();
        }
        if self.s.me.tags.nofailover {
            return self.follow(
                cluster,
                Reason::DemotingNotAllowedToBePrimary,
                Reason::FollowingNotAllowedToPromote,
            );
        }
        self.follow(cluster, Reason::DemotingNotHealthiest, Reason::FollowingNotHealthiest)
    }

    /// Patroni `process_healthy_cluster`: the leader key is held.
    fn process_healthy_cluster(&mut self, cluster: &Cluster) -> R<Reason> {
        let pg = self.s.pg;
        if self.has_lock {
            if self.paused() && !pg.is_primary() {
                if cluster.failover.as_ref().and_then(|f| f.member.as_deref()) == Some(self.me()) {
                    return Ok(Reason::WaitingToBecomePrimaryAfterPromote);
                }
                self.release_lock(None);
                return Ok(Reason::RemovedLockNotRunningAsPrimary);
            }
            return match self.update_lock(true)? {
                WriteOutcome::Done => {
                    if let Some(r) = self.process_manual_failover_from_leader(cluster)? {
                        return Ok(r);
                    }
                    if let Some(r) = self.strict_sync_handover(cluster) {
                        return Ok(r);
                    }
                    let me = self.me().to_string();
                    self.enforce_primary_role(
                        cluster,
                        Reason::LeaderWithLock { me },
                        Reason::PromotedBecauseHadLock,
                    )
                }
                WriteOutcome::Refused => {
                    self.note("failed to update leader lock");
                    if pg.is_primary() {
                        if self.paused() {
                            return Ok(Reason::ContinueAsPrimaryAfterFailingToUpdateLock);
                        }
                        self.demote(DemoteMode::ImmediateNolock);
                        return Ok(Reason::DemotedFailedToUpdateLock);
                    }
                    Ok(Reason::NotPromotingFailedToUpdateLock)
                }
                WriteOutcome::DcsError => self.handle_dcs_error(),
            };
        }
        let leader = cluster.leader.as_ref().map(|l| l.name.clone()).unwrap_or_default();
        let me = self.me().to_string();
        self.follow(cluster, Reason::DemotingNoLockWasLeader, Reason::FollowingLeader { me, leader })
    }

    /// Patroni `follow`: make sure this node replicates from the right upstream.
    fn follow(&mut self, cluster: &Cluster, demote_reason: Reason, follow_reason: Reason) -> R<Reason> {
        let pg = self.s.pg;
        let is_primary = pg.is_primary();
        let node = self.node_to_follow(cluster);
        if self.paused() {
            let rw = self.next.rewind;
            if !(rw.is_needed() && self.s.policy.can_rewind_or_reinitialize()) || cluster.is_unlocked() {
                if is_primary {
                    self.set_role(Role::Primary);
                    return Ok(Reason::ContinueAsPrimaryWithoutLock);
                } else if pg.role != Role::StandbyLeader {
                    self.set_role(Role::Replica);
                }
                if node.is_none() {
                    return Ok(Reason::NoAction { me: self.me().to_string() });
                }
            }
        } else if is_primary {
            self.demote(DemoteMode::ImmediateNolock);
            return Ok(demote_reason);
        }
        if pg.run != PgRun::Starting
            && let Some(r) = self.handle_rewind_or_reinitialize(cluster)?
        {
            return Ok(r);
        }
        let wanted = node.as_ref().and_then(|n| n.conn_url.as_deref()).and_then(HostPort::from_conn_url);
        if pg.upstream != wanted {
            self.push(Action::Follow { upstream: node });
            self.trigger_rewind_check();
        } else {
            let my_tl = pg.timeline.unwrap_or(0);
            let leader_tl = cluster.leader_member().and_then(|m| m.data.timeline).unwrap_or(0);
            if my_tl > 0 && leader_tl > 0 && my_tl < leader_tl {
                self.trigger_rewind_check();
                if pg.run != PgRun::Starting
                    && let Some(r) = self.handle_rewind_or_reinitialize(cluster)?
                {
                    return Ok(r);
                }
            }
        }
        Ok(follow_reason)
    }

    /// Patroni `process_manual_failover_from_leader`: `None` when nothing to do.
    fn process_manual_failover_from_leader(&mut self, cluster: &Cluster) -> R<Option<Reason>> {
        let Some(failover) = cluster.failover.as_ref() else {
            return Ok(None);
        };
        if self.paused() && !self.s.pg.is_primary() {
            return Ok(None);
        }
        let action = failover_action_name(Some(failover));
        let bare = action.trim_start_matches("manual ");
        let version = failover.version.map(|v| v.0);
        if let Some(at) = failover.scheduled_at.as_deref() {
            if self.paused() {
                return Ok(None);
            }
            match check_schedule(at, self.s.wall, self.s.timing.loop_wait) {
                Schedule::Later { secs } => {
                    self.note(format!("Awaiting {bare} at {at} (in {secs} seconds)"));
                    return Ok(None);
                }
                Schedule::Soon { wait } => {
                    self.wake_after = Some(wait);
                    return Ok(None);
                }
                Schedule::Stale => {
                    self.note(format!("Found a stale {bare} value, cleaning up: {at}"));
                    self.push(Action::ClearFailoverKey { version });
                    return Ok(None);
                }
                Schedule::Invalid => {
                    self.note(format!("Incorrect value of scheduled_at: {at}"));
                    self.push(Action::ClearFailoverKey { version });
                    return Ok(None);
                }
                Schedule::Now => self.note(format!("Manual scheduled {bare} at {at}")),
            }
        }
        let me = self.me().to_string();
        if failover.leader.as_deref().is_none_or(|l| l == me) {
            if failover.member.as_deref() != Some(me.as_str()) {
                if failover.member.is_none() && self.paused() {
                    self.note(format!(
                        "{} is possible only to a specific candidate in a paused state",
                        title(action)
                    ));
                } else if self.is_failover_possible(cluster, 0, false)? {
                    self.push(Action::Demote(DemoteMode::Graceful));
                    self.trigger_rewind_check();
                    return Ok(Some(Reason::ManualFailoverDemoting { action }));
                } else {
                    self.note(format!("{action}: no healthy members found, {bare} is not possible"));
                }
            } else {
                self.note(format!("{action}: I am already the leader, no need to {bare}"));
            }
        } else {
            self.note(format!(
                "{action}: leader name does not match: {} != {me}",
                failover.leader.as_deref().unwrap_or("")
            ));
        }
        self.note("Cleaning up failover key");
        self.push(Action::ClearFailoverKey { version });
        Ok(None)
    }

    /// Patroni `evaluate_scheduled_restart`: `Some` when a restart starts now.
    fn evaluate_scheduled_restart(&mut self) -> Option<Reason> {
        if self.actions.iter().any(starts_long_action) {
            return None;
        }
        let sr = self.s.scheduled_restart?;
        let pg = self.s.pg;
        if let (Some(recent), Some(requested)) = (&pg.postmaster_start_time, &sr.postmaster_start_time)
            && recent != requested
        {
            self.note(format!(
                "Cancelling scheduled restart: postgres restart has already happened at {recent}"
            ));
            self.push(Action::DeleteScheduledRestart);
            return None;
        }
        if self.paused() {
            return None;
        }
        let at = sr.schedule.as_str();
        match check_schedule(at, self.s.wall, self.s.timing.loop_wait) {
            Schedule::Later { secs } => {
                self.note(format!("Awaiting restart at {at} (in {secs} seconds)"));
                return None;
            }
            Schedule::Soon { wait } => {
                self.wake_after = Some(self.wake_after.map_or(wait, |w| w.min(wait)));
                return None;
            }
            Schedule::Stale => {
                self.note(format!("Found a stale restart value, cleaning up: {at}"));
                self.push(Action::DeleteScheduledRestart);
                return None;
            }
            Schedule::Invalid => {
                self.note(format!("Incorrect value of scheduled_at: {at}"));
                self.push(Action::DeleteScheduledRestart);
                return None;
            }
            Schedule::Now => self.note(format!("Manual scheduled restart at {at}")),
        }
        // Patroni `restart_matches`: the last failing filter names the reason.
        let mut cancel = None;
        if sr.role.as_ref().is_some_and(|r| *r != pg.role) {
            cancel = Some("host role mismatch");
        }
        let wanted_version = sr.postgres_version.as_deref().and_then(postgres_version_to_int);
        if let (Some(want), Some(have)) = (wanted_version, pg.server_version)
            && want <= have
        {
            cancel = Some("postgres version mismatch");
        }
        if sr.restart_pending && !pg.pending_restart {
            cancel = Some("pending restart flag is not set");
        }
        if let Some(why) = cancel {
            self.note(format!("not proceeding with the restart: {why}"));
            self.note("Scheduled restart: restart conditions are not satisfied");
            self.push(Action::DeleteScheduledRestart);
            return None;
        }
        let timeout = sr.timeout.unwrap_or(self.s.timing.primary_start_timeout);
        self.next.recovering = true;
        self.next.start_timeout = Some(timeout);
        self.push(Action::Restart { timeout_secs: timeout.as_secs() });
        self.push(Action::DeleteScheduledRestart);
        Some(Reason::RestartInitiated)
    }

    /// `/history` needs a refresh (Patroni `update_cluster_history` preconditions).
    fn history_needs_update(&self, cluster: &Cluster) -> bool {
        let Some(tl) = self.s.pg.timeline else { return false };
        let lines = cluster.history.as_ref().map(|h| h.lines.as_slice()).unwrap_or(&[]);
        if tl == 1 {
            return !lines.is_empty();
        }
        match lines.last() {
            None => true,
            Some(last) => last.timeline + 1 != tl || last.timestamp.is_none() || last.new_leader.is_none(),
        }
    }

    fn process_sync_replication(&mut self, cluster: &Cluster) {
        if self.s.policy.synchronous_mode != SyncMode::Off {
            self.push(Action::ProcessSyncReplication);
        } else if !cluster.sync.is_empty() {
            self.push(Action::DisableSyncReplication { version: cluster.sync.version.map(|v| v.0) });
        }
    }

    /// Patroni `enforce_primary_role`: the lock is ours; make PostgreSQL the primary.
    fn enforce_primary_role(
        &mut self,
        cluster: &Cluster,
        message: Reason,
        promote_message: Reason,
    ) -> R<Reason> {
        let pg = self.s.pg;
        if !self.paused() {
            if self.s.me.watchdog == WatchdogState::Unusable {
                if pg.is_primary() {
                    self.demote(DemoteMode::Immediate);
                    return Ok(Reason::DemotingWatchdogNotActivated);
                }
                self.release_lock(None);
                return Ok(Reason::NotPromotingWatchdogNotActivated);
            }
            if self.next.task_result == Some(false) {
                self.note("Releasing the leader key voluntarily because the pre-promote script failed");
                self.next.released_leader_key_at = Some(self.s.now);
                self.release_lock(None);
                self.next.task_result = None;
                return Ok(Reason::PrePromoteFailed);
            }
        }
        if pg.is_primary() {
            self.set_role(Role::Primary);
            self.process_sync_replication(cluster);
            if self.history_needs_update(cluster) {
                self.push(Action::WriteHistory);
            }
            return Ok(message);
        }
        if matches!(pg.role, Role::Primary | Role::Promoted) {
            self.process_sync_replication(cluster);
            return Ok(message);
        }
        // Before promoting in synchronous mode, claim /sync for ourselves with no standby, so that no
        // other node can believe it is a valid synchronous candidate.
        match self.s.policy.synchronous_mode {
            SyncMode::Off => {
                if !cluster.sync.is_empty() {
                    self.push(Action::DisableSyncReplication { version: cluster.sync.version.map(|v| v.0) });
                }
            }
            SyncMode::Quorum if quorum_commit_mode_is_active(self.s.policy, cluster) => {
                // Quorum commit: the voters keep their guarantee; the executor of Promote sets
                // synchronous_standby_names from /sync (ha.py process_sync_replication_prepromote).
            }
            SyncMode::On | SyncMode::Quorum => match self.s.steps.sync_prepromote {
                None => {
                    return Err(NeedStep(Step::WriteSyncPrePromote {
                        version: cluster.sync.version.map(|v| v.0),
                    }));
                }
                Some(WriteOutcome::Done) => {}
                Some(WriteOutcome::Refused) => return Ok(Reason::PostponingPromotionSyncChanged),
                Some(WriteOutcome::DcsError) => return self.handle_dcs_error(),
            },
        }
        self.next.rewind = RewindState::Initial;
        self.next.task_result = None;
        self.push(Action::Promote);
        Ok(promote_message)
    }
}

/// The action starts a task the loop tracks (Patroni's executor would be busy).
fn starts_long_action(a: &Action) -> bool {
    matches!(
        a,
        Action::Promote
            | Action::Demote(DemoteMode::Graceful)
            | Action::StartAsPrimary { .. }
            | Action::StartAsReplica { .. }
            | Action::Follow { .. }
            | Action::Rewind { .. }
            | Action::Reinitialize { .. }
            | Action::CreateReplica { .. }
            | Action::Bootstrap
            | Action::PostBootstrap
            | Action::CrashRecovery
            | Action::Restart { .. }
    )
}

/// Patroni `postgres_version_to_int`: `15.4` → 150004, `9.6.3` → 90603; `None` when malformed.
pub fn postgres_version_to_int(v: &str) -> Option<u32> {
    let mut parts: Vec<u32> = v.trim().split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if parts.len() < 2 || parts.len() > 3 || (parts.len() == 2 && parts[0] < 10) {
        return None;
    }
    if parts.len() == 2 {
        parts.insert(1, 0);
    }
    Some(parts[0] * 10_000 + parts[1] * 100 + parts[2])
}

/// What a clean agent stop (SIGTERM/SIGINT) does with PostgreSQL and the leader key (Patroni
/// `Ha.shutdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownPlan {
    /// Paused: leave PostgreSQL running and the leader key in place; only disable the watchdog.
    LeaveRunning,
    /// Stop PostgreSQL (fast, no CHECKPOINT first). When `release_lock`, once `pg_control` says
    /// "shut down" release the key with the previous checkpoint LSN in `/status` as soon as a
    /// replica has the shutdown checkpoint (`is_failover_possible(cluster_lsn=checkpoint)`), else
    /// write that LSN as optime and release the key after the stop. A synchronous standby first asks
    /// the primary to release it from `/sync` (up to `2*loop_wait`).
    Stop {
        /// This node holds the leader key.
        release_lock: bool,
    },
}

/// The shutdown plan for this node at `now`.
pub fn shutdown_plan(policy: &super::snapshot::DynamicPolicy, mem: &Memory, now: MonoTime) -> ShutdownPlan {
    if policy.pause {
        ShutdownPlan::LeaveRunning
    } else {
        ShutdownPlan::Stop { release_lock: mem.is_leader(now) }
    }
}
