//! The outputs of one HA decision: [`Step`]s whose result the policy needs before it can finish the
//! cycle, [`Action`]s the loop executes in order, and the [`Reason`] logged once per cycle in
//! Patroni's wording.
//!
//! Owns: the vocabulary between policy and executor. Must not do I/O; executing an action is the
//! loop's job (see each variant for what it requires).

use crate::types::{Lsn, Role};
use std::fmt;

/// A member the loop must call over HTTP (`GET /patroni`, `POST /failsafe`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerTarget {
    /// Member name.
    pub name: String,
    /// Its `api_url` (`http(s)://host:port/patroni`).
    pub api_url: String,
}

/// The node to stream from (or clone from): a member of the cluster, or the leader injected from a
/// failsafe ping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowTarget {
    /// Member name (used as `application_name`-independent identity and in logs).
    pub name: String,
    /// Its `conn_url`, when known; the executor builds `primary_conninfo` from it plus the local
    /// replication credentials.
    pub conn_url: Option<String>,
}

/// How a primary steps down (Patroni `demote(mode)`, PATRONI-COMPAT §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoteMode {
    /// DCS lost: fast stop, keep the key, restart read-only without upstream.
    Offline,
    /// Switchover: CHECKPOINT, fast stop; as soon as a replica has the shutdown checkpoint
    /// (`is_failover_possible` with that LSN), set the role to `demoted` and release the key with the
    /// previous checkpoint LSN in `/status`; then follow the new leader. Run as a long action (the
    /// policy keeps renewing the lock meanwhile, as Patroni does).
    Graceful,
    /// Immediate stop, release the key, start as replica.
    Immediate,
    /// Lock already lost: immediate stop, start as replica.
    ImmediateNolock,
    /// praetor: an isolated primary (DCS unreachable, no replica confirming its WAL) stops
    /// accepting writes at once: immediate stop (no checkpoint, no wait for walsenders whose standby
    /// is unreachable), keep the key, restart read-only without upstream.
    Fence,
    /// praetor: a strict-sync leader hands its key to its synchronous standby: immediate stop, which
    /// must succeed (an error stops the cycle's remaining actions, so the key never moves while
    /// PostgreSQL may still run), then restart read-only without upstream. Does not release the
    /// key: the `WriteFailoverKey` and `ReleaseLock` actions that follow do.
    Handover,
}

impl DemoteMode {
    /// Patroni's mode name.
    pub fn as_str(self) -> &'static str {
        match self {
            DemoteMode::Offline => "offline",
            DemoteMode::Graceful => "graceful",
            DemoteMode::Immediate => "immediate",
            DemoteMode::ImmediateNolock => "immediate-nolock",
            DemoteMode::Fence => "fence",
            DemoteMode::Handover => "handover",
        }
    }
}

/// Something the policy needs to know before it can finish the cycle. When a [`Decision`] carries a
/// step, its `actions` are empty: the loop performs the step, stores the result in
/// [`StepResults`](super::snapshot::StepResults) and calls `decide` again with the same snapshot
/// otherwise. Each step is asked for at most once per cycle, so a cycle calls `decide` at most
/// `1 + number of Step variants` times. Writes (`AcquireLock`, `UpdateLock`, `RaceInitialize`,
/// `WriteSyncPrePromote`) are real DCS writes: performed once, their outcome decides the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `GET /patroni` on every listed member in parallel (2 s timeout, no retries). Result:
    /// `StepResults::peers` (an unanswered member may be left out or set unreachable).
    FetchPeers(Vec<PeerTarget>),
    /// `POST /failsafe` to every listed member (2 s timeout, 1 retry) with this node's name,
    /// conn_url, api_url and slots. Result: `failsafe_accepted` = all answered 200 `Accepted`.
    PostFailsafe(Vec<PeerTarget>),
    /// Compare this node's timeline/LSN with the leader (`IDENTIFY_SYSTEM`, `TIMELINE_HISTORY`, see
    /// PATRONI-COMPAT §6.10). Result: `rewind_check`.
    CheckRewind(FollowTarget),
    /// Renew the leader key (`update_leader`); when `update_status`, also write `/status` (optime,
    /// slots) and `/failsafe` as Patroni does. On success the executor keeps the watchdog alive.
    /// Result: `lock_update`.
    UpdateLock {
        /// Write `/status` and `/failsafe` too.
        update_status: bool,
    },
    /// Create the leader key if absent (`attempt_to_acquire_leader`). Result: `lock_acquire`.
    AcquireLock,
    /// Create `/initialize` with an empty value if absent (bootstrap race). Result:
    /// `initialize_race`.
    RaceInitialize,
    /// Write `/sync` = `{"leader": me, "sync_standby": null, "quorum": 0}` with CAS on `version`
    /// before promoting in synchronous mode. Result: `sync_prepromote`.
    WriteSyncPrePromote {
        /// Version of the `/sync` key read this cycle (`None` = create).
        version: Option<i64>,
    },
}

/// One thing the loop must do. Executed in order; an executor error stops the remaining actions of
/// the cycle and is logged (the next cycle re-observes). Long actions (marked) are started as tasks
/// the loop tracks and reports back through `in_flight`/`finished`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Delete the leader key if we own it (CAS on value), writing `last_lsn` into `/status` first
    /// when given. Sets "I am not the leader" for the REST API.
    ReleaseLock {
        /// Optime to publish.
        last_lsn: Option<Lsn>,
    },
    /// Write the leader key unconditionally with our lease (`take_leader`, after bootstrap).
    TakeLock,
    /// Write `/initialize` = `sysid` (create if `create_new`, else overwrite).
    WriteInitialize {
        /// The key is absent.
        create_new: bool,
        /// System identifier.
        sysid: String,
    },
    /// Delete `/initialize` after a failed bootstrap, stop PostgreSQL immediately and move the data
    /// directory aside.
    CancelInitialize,
    /// Write `/config` from the local `bootstrap.dcs` (unconditional).
    WriteConfig,
    /// Clear `/failover` by writing `{}` (CAS on `version` when given).
    ClearFailoverKey {
        /// Version read this cycle.
        version: Option<i64>,
    },
    /// Rewrite `/failover` as `{"member": candidate, "scheduled_at": …}` (paused switchover after the
    /// former leader stepped down).
    KeepFailoverCandidate {
        /// Candidate.
        candidate: String,
        /// Kept `scheduled_at`.
        scheduled_at: Option<String>,
        /// Version read this cycle.
        version: Option<i64>,
    },
    /// Write `/failover` = `{"leader": leader, "member": member}` unconditionally (praetor's strict-sync
    /// handover: the named synchronous standby takes the key as in a switchover).
    WriteFailoverKey {
        /// The leader handing over (this node).
        leader: String,
        /// The synchronous standby that takes over.
        member: String,
    },
    /// Refresh `/history` from the primary's timeline history files (Patroni `update_cluster_history`).
    WriteHistory,
    /// Run the leader's synchronous-replication state machine (PATRONI-COMPAT §6.9) for this cycle.
    ProcessSyncReplication,
    /// Synchronous mode is off but `/sync` exists: delete it (CAS on `version`) and restore the
    /// user's `synchronous_standby_names`.
    DisableSyncReplication {
        /// Version of `/sync`.
        version: Option<i64>,
    },
    /// Promote PostgreSQL (long action `promote`): reset rewind state, run `pre_promote`, then
    /// `pg_ctl promote`; report `Finished::Promote`. Activates the watchdog first unless paused. In
    /// synchronous mode it first sets `synchronous_standby_names` as Patroni's
    /// `process_sync_replication_prepromote` does (quorum: `ANY n (voters of /sync)`; on: empty, or
    /// `*` when strict); the `/sync` write itself was the `WriteSyncPrePromote` step.
    Promote,
    /// Demote (see [`DemoteMode`]); `Graceful` runs as a long action whose `in_flight` kind is
    /// `LongActionKind::Demote(failover_action_name(/failover))` (`switchover: demote`).
    Demote(DemoteMode),
    /// Start PostgreSQL as a primary after a crash (long action `starting primary after failure`),
    /// waiting at most `timeout` seconds.
    StartAsPrimary {
        /// `primary_start_timeout`.
        timeout_secs: u64,
    },
    /// Start PostgreSQL in recovery (long action `restarting after failure`), streaming from
    /// `upstream` (`None` = read-only without upstream). `timeout_secs` is set when we hold the lock.
    StartAsReplica {
        /// Node to stream from.
        upstream: Option<FollowTarget>,
        /// Start timeout when holding the lock.
        timeout_secs: Option<u64>,
    },
    /// Point `primary_conninfo` at `upstream` (`None` = no upstream), reloading when PostgreSQL
    /// allows it, else restarting (long action `changing primary_conninfo and restarting`). Sets the
    /// role to replica.
    Follow {
        /// Node to stream from.
        upstream: Option<FollowTarget>,
    },
    /// Run `pg_rewind` from the leader (long action), report `Finished::Rewind`.
    Rewind {
        /// Source.
        from: FollowTarget,
    },
    /// Stop PostgreSQL, remove the data directory and clone again (long action `reinitialize`).
    Reinitialize {
        /// Clone source.
        from: FollowTarget,
    },
    /// Clone from a member with `pg_basebackup` or the configured `create_replica_methods`, then
    /// start following the leader (long action `bootstrap from …`); `None` = `no_leader` methods.
    CreateReplica {
        /// Source, `None` for methods that need no running member.
        from: Option<FollowTarget>,
    },
    /// initdb (or custom bootstrap) and first start (long action `bootstrap`); report
    /// `Finished::Bootstrap`.
    Bootstrap,
    /// Run `post_bootstrap` (long action), report `Finished::PostBootstrap`.
    PostBootstrap,
    /// Single-user crash recovery (long action), then leave PostgreSQL stopped.
    CrashRecovery,
    /// Stop PostgreSQL immediately (data directory vanished).
    StopImmediate,
    /// Restart PostgreSQL (long action `restart`); a replica in synchronous mode first asks the
    /// primary to release it from `/sync` (Patroni `while_not_sync_standby`).
    Restart {
        /// Start timeout in seconds.
        timeout_secs: u64,
    },
    /// Forget the scheduled restart (and publish the member key without it).
    DeleteScheduledRestart,
    /// Cancel the running long action (a promote whose lock was lost, a crash recovery past its
    /// timeout). Comes before the action that replaces it.
    CancelLongAction,
    /// Record a new role for the member key and fire `on_role_change` if it changed.
    SetRole(Role),
    /// Disable the watchdog (pause, PostgreSQL down).
    DisableWatchdog,
    /// Keep the watchdog alive without a lock renewal (failsafe mode kept us primary).
    KeepaliveWatchdog,
    /// Stop the agent with an error (exit code 1) without touching PostgreSQL.
    Exit(String),
}

/// The one line logged per cycle, worded exactly as Patroni's `_run_cycle` return values so that
/// log-based alerts keep working. `Display` is the line (without the `PAUSE: ` prefix, which
/// [`Decision`] adds).
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is documented by its Display text
pub enum Reason {
    /// The policy is waiting for a [`Step`]; not a cycle result.
    AwaitingStep,
    LeaderWithLock {
        me: String,
    },
    PromotedBecauseHadLock,
    AcquiredLockAsLeader,
    PromotedByAcquiringLock,
    DemotedAfterFailingToObtainLock,
    FollowingNewLeaderAfterFailingToObtainLock,
    DemotingNotAllowedToBePrimary,
    FollowingNotAllowedToPromote,
    DemotingNotHealthiest,
    FollowingNotHealthiest,
    WaitingToBecomePrimaryAfterPromote,
    RemovedLockNotRunningAsPrimary,
    ContinueAsPrimaryAfterFailingToUpdateLock,
    DemotedFailedToUpdateLock,
    NotPromotingFailedToUpdateLock,
    DemotingNoLockWasLeader,
    FollowingLeader {
        me: String,
        leader: String,
    },
    ContinueAsPrimaryWithoutLock,
    NoAction {
        me: String,
    },
    ManualFailoverDemoting {
        action: &'static str,
    },
    DemotingWatchdogNotActivated,
    NotPromotingWatchdogNotActivated,
    PrePromoteFailed,
    PostponingPromotionSyncChanged,
    StoppedToFailOverAfterCrash,
    StartingPrimaryAfterFailure,
    CrashRecovery,
    StartingReadonlyHadLock,
    StartingAsSecondary,
    RunningRewind {
        from: String,
    },
    WaitingForTimelineCheck {
        leader: String,
    },
    ReinitializingDivergedTimelines,
    BootstrappingNewCluster,
    FailedToAcquireInitializeLock,
    BootstrappingFrom {
        from: String,
        from_leader: bool,
    },
    BootstrappingWithoutLeader,
    WaitingForLeaderToBootstrap,
    UpdatedLockDuring {
        action: String,
    },
    TerminatedCrashRecoveryStartupTimeout,
    LostLeaderBeforePromote,
    LostLockDuring {
        action: String,
    },
    InProgress {
        action: String,
    },
    RemovedKeyFailedToStart,
    FailedToStart,
    WaitingForEndOfRecoveryAfterBootstrap,
    RunningPostBootstrap,
    InitializedNewCluster,
    FailedToBootstrap,
    StoppedWhileStartingLockLost,
    StoppedStartupTimeout,
    StartTimedOutNoFailoverPossible,
    StillStarting {
        secs_left: u64,
    },
    ReleasedKeyDataDir {
        accessible: bool,
    },
    DataDirNotAccessible {
        error: String,
    },
    RunningWithEmptyDataDir,
    InvalidSysid,
    ReleasedKeySysidMismatch,
    SysidMismatch {
        me: String,
        cluster: String,
        data: String,
    },
    NoInitializeKeyRunningAsReplica,
    RemovedLockPgNotRunning,
    PgNotRunning,
    ContinueAsLeaderFailsafe,
    DemotedDcsNotAccessible,
    DcsNotAccessible,
    RestartInitiated,
    /// praetor: fenced an isolated primary.
    FencedIsolatedPrimary {
        silent_ms: u64,
    },
    /// praetor: strict-sync handover.
    HandedOverToSyncStandby {
        to: String,
        silent_secs: u64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reason::*;
        match self {
            AwaitingStep => f.write_str("waiting for a step result"),
            LeaderWithLock { me } => write!(f, "no action. I am ({me}), the leader with the lock"),
            PromotedBecauseHadLock => f.write_str("promoted self to leader because I had the session lock"),
            AcquiredLockAsLeader => f.write_str("acquired session lock as a leader"),
            PromotedByAcquiringLock => f.write_str("promoted self to leader by acquiring session lock"),
            DemotedAfterFailingToObtainLock => f.write_str("demoted self after trying and failing to obtain lock"),
            FollowingNewLeaderAfterFailingToObtainLock => {
                f.write_str("following new leader after trying and failing to obtain lock")
            }
            DemotingNotAllowedToBePrimary => f.write_str("demoting self because I am not allowed to become primary"),
            FollowingNotAllowedToPromote => {
                f.write_str("following a different leader because I am not allowed to promote")
            }
            DemotingNotHealthiest => f.write_str("demoting self because i am not the healthiest node"),
            FollowingNotHealthiest => f.write_str("following a different leader because i am not the healthiest node"),
            WaitingToBecomePrimaryAfterPromote => f.write_str("waiting to become primary after promote..."),
            RemovedLockNotRunningAsPrimary => {
                f.write_str("removed leader lock because postgres is not running as primary")
            }
            ContinueAsPrimaryAfterFailingToUpdateLock => {
                f.write_str("continue to run as primary after failing to update leader lock in DCS")
            }
            DemotedFailedToUpdateLock => f.write_str("demoted self because failed to update leader lock in DCS"),
            NotPromotingFailedToUpdateLock => f.write_str("not promoting because failed to update leader lock in DCS"),
            DemotingNoLockWasLeader => f.write_str("demoting self because I do not have the lock and I was a leader"),
            FollowingLeader { me, leader } => {
                write!(f, "no action. I am ({me}), a secondary, and following a leader ({leader})")
            }
            ContinueAsPrimaryWithoutLock => f.write_str("continue to run as primary without lock"),
            NoAction { me } => write!(f, "no action. I am ({me})"),
            ManualFailoverDemoting { action } => write!(f, "{action}: demoting myself"),
            DemotingWatchdogNotActivated => f.write_str("Demoting self because watchdog could not be activated"),
            NotPromotingWatchdogNotActivated => f.write_str("Not promoting self because watchdog could not be activated"),
            PrePromoteFailed => f.write_str("Promotion cancelled because the pre-promote script failed"),
            PostponingPromotionSyncChanged => {
                f.write_str("Postponing promotion because synchronous replication state was updated by somebody else")
            }
            StoppedToFailOverAfterCrash => f.write_str("stopped PostgreSQL to fail over after a crash"),
            StartingPrimaryAfterFailure => f.write_str("starting primary after failure"),
            CrashRecovery => f.write_str("doing crash recovery in a single user mode"),
            StartingReadonlyHadLock => f.write_str("starting as readonly because i had the session lock"),
            StartingAsSecondary => f.write_str("starting as a secondary"),
            RunningRewind { from } => write!(f, "running pg_rewind from {from}"),
            WaitingForTimelineCheck { leader } => {
                write!(f, "waiting for the timeline check against the leader {leader} before following it")
            }
            ReinitializingDivergedTimelines => f.write_str("reinitializing due to diverged timelines"),
            BootstrappingNewCluster => f.write_str("trying to bootstrap a new cluster"),
            FailedToAcquireInitializeLock => f.write_str("failed to acquire initialize lock"),
            BootstrappingFrom { from, from_leader } => {
                write!(f, "trying to bootstrap from {} '{from}'", if *from_leader { "leader" } else { "replica" })
            }
            BootstrappingWithoutLeader => f.write_str("trying to bootstrap (without leader)"),
            WaitingForLeaderToBootstrap => f.write_str("waiting for leader to bootstrap"),
            UpdatedLockDuring { action } => write!(f, "updated leader lock during {action}"),
            TerminatedCrashRecoveryStartupTimeout => {
                f.write_str("terminated crash recovery because of startup timeout")
            }
            LostLeaderBeforePromote => f.write_str("lost leader before promote"),
            LostLockDuring { action } => write!(f, "lost leader lock during {action}"),
            InProgress { action } => write!(f, "{action} in progress"),
            RemovedKeyFailedToStart => f.write_str("removed leader key after trying and failing to start postgres"),
            FailedToStart => f.write_str("failed to start postgres"),
            WaitingForEndOfRecoveryAfterBootstrap => f.write_str("waiting for end of recovery after bootstrap"),
            RunningPostBootstrap => f.write_str("running post_bootstrap"),
            InitializedNewCluster => f.write_str("initialized a new cluster"),
            FailedToBootstrap => f.write_str("removing initialize key after failed attempt to bootstrap the cluster"),
            StoppedWhileStartingLockLost => {
                f.write_str("stopped PostgreSQL while starting up because leader key was lost")
            }
            StoppedStartupTimeout => f.write_str("stopped PostgreSQL because of startup timeout"),
            StartTimedOutNoFailoverPossible => {
                f.write_str("primary start has timed out, but continuing to wait because failover is not possible")
            }
            StillStarting { secs_left } => {
                write!(f, "PostgreSQL is still starting up, {secs_left} seconds until timeout")
            }
            ReleasedKeyDataDir { accessible } => write!(
                f,
                "released leader key voluntarily as data dir {} and currently leader",
                if *accessible { "empty" } else { "not accessible" }
            ),
            DataDirNotAccessible { error } => write!(f, "data directory is not accessible: {error}"),
            RunningWithEmptyDataDir => f.write_str("running with empty data directory"),
            InvalidSysid => f.write_str(
                "data dir for the cluster is not empty, but system ID is invalid; consider doing reinitialize",
            ),
            ReleasedKeySysidMismatch => f.write_str("released leader key voluntarily due to the system ID mismatch"),
            SysidMismatch { me, cluster, data } => {
                write!(f, "system ID mismatch, node {me} belongs to a different cluster: {cluster} != {data}")
            }
            NoInitializeKeyRunningAsReplica => {
                f.write_str("No initialize key in DCS and PostgreSQL is running as replica, aborting start")
            }
            RemovedLockPgNotRunning => f.write_str("removed leader lock because postgres is not running"),
            PgNotRunning => f.write_str("postgres is not running"),
            ContinueAsLeaderFailsafe => f.write_str(
                "continue to run as a leader because failsafe mode is enabled and all members are accessible",
            ),
            DemotedDcsNotAccessible => f.write_str("demoted self because DCS is not accessible and I was a leader"),
            DcsNotAccessible => f.write_str("DCS is not accessible"),
            RestartInitiated => f.write_str("restart initiated"),
            FencedIsolatedPrimary { silent_ms } => write!(
                f,
                "fenced: demoted self because DCS is not accessible and no replica confirmed WAL for {silent_ms} ms"
            ),
            HandedOverToSyncStandby { to, silent_secs } => write!(
                f,
                "demoted self and handed the leader key to the synchronous standby {to}: no synchronous standby confirmed WAL for {silent_secs} s"
            ),
        }
    }
}

/// The result of one `decide` call.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// A step to perform before the cycle can be decided; when set, `actions` is empty and `next`
    /// equals the memory given (call `decide` again with the step's result).
    pub step: Option<Step>,
    /// Actions to execute in order.
    pub actions: Vec<Action>,
    /// Why, in Patroni's words.
    pub reason: Reason,
    /// The cluster is paused (the log line gets Patroni's `PAUSE: ` prefix).
    pub paused: bool,
    /// Memory for the next cycle.
    pub next: super::decide::Memory,
    /// Supporting log lines in Patroni's words (`Primary (pg0) is still alive`), to be logged at INFO
    /// before the reason. Empty when `step` is set.
    pub notes: Vec<String>,
    /// Run the next cycle after at most this long (a scheduled switchover due before `loop_wait`).
    pub wake_after: Option<std::time::Duration>,
}

impl Decision {
    /// The cycle's log line exactly as Patroni prints it (`PAUSE: ` prefix when paused).
    pub fn log_line(&self) -> String {
        if self.paused { format!("PAUSE: {}", self.reason) } else { self.reason.to_string() }
    }
}

fn upstream(t: &Option<FollowTarget>) -> &str {
    t.as_ref().map(|t| t.name.as_str()).unwrap_or("none")
}

fn version(v: &Option<i64>) -> String {
    v.map(|v| format!("@{v}")).unwrap_or_default()
}

/// Compact form used in logs, scenario files and the transition table (`Demote(offline)`,
/// `Follow(pg0)`, `ReleaseLock`).
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::ReleaseLock { last_lsn: None } => f.write_str("ReleaseLock"),
            Action::ReleaseLock { last_lsn: Some(l) } => write!(f, "ReleaseLock(last_lsn={l})"),
            Action::TakeLock => f.write_str("TakeLock"),
            Action::WriteInitialize { create_new, sysid } => {
                write!(f, "WriteInitialize({}{sysid})", if *create_new { "create " } else { "" })
            }
            Action::CancelInitialize => f.write_str("CancelInitialize"),
            Action::WriteConfig => f.write_str("WriteConfig"),
            Action::ClearFailoverKey { version: v } => write!(f, "ClearFailoverKey{}", version(v)),
            Action::KeepFailoverCandidate { candidate, version: v, .. } => {
                write!(f, "KeepFailoverCandidate({candidate}){}", version(v))
            }
            Action::WriteFailoverKey { leader, member } => write!(f, "WriteFailoverKey({leader}>{member})"),
            Action::WriteHistory => f.write_str("WriteHistory"),
            Action::ProcessSyncReplication => f.write_str("ProcessSyncReplication"),
            Action::DisableSyncReplication { version: v } => {
                write!(f, "DisableSyncReplication{}", version(v))
            }
            Action::Promote => f.write_str("Promote"),
            Action::Demote(m) => write!(f, "Demote({})", m.as_str()),
            Action::StartAsPrimary { timeout_secs } => write!(f, "StartAsPrimary(timeout={timeout_secs}s)"),
            Action::StartAsReplica { upstream: u, timeout_secs: None } => {
                write!(f, "StartAsReplica({})", upstream(u))
            }
            Action::StartAsReplica { upstream: u, timeout_secs: Some(t) } => {
                write!(f, "StartAsReplica({}, timeout={t}s)", upstream(u))
            }
            Action::Follow { upstream: u } => write!(f, "Follow({})", upstream(u)),
            Action::Rewind { from } => write!(f, "Rewind({})", from.name),
            Action::Reinitialize { from } => write!(f, "Reinitialize({})", from.name),
            Action::CreateReplica { from } => write!(f, "CreateReplica({})", upstream(from)),
            Action::Bootstrap => f.write_str("Bootstrap"),
            Action::PostBootstrap => f.write_str("PostBootstrap"),
            Action::CrashRecovery => f.write_str("CrashRecovery"),
            Action::StopImmediate => f.write_str("StopImmediate"),
            Action::Restart { timeout_secs } => write!(f, "Restart(timeout={timeout_secs}s)"),
            Action::DeleteScheduledRestart => f.write_str("DeleteScheduledRestart"),
            Action::CancelLongAction => f.write_str("CancelLongAction"),
            Action::SetRole(r) => write!(f, "SetRole({r})"),
            Action::DisableWatchdog => f.write_str("DisableWatchdog"),
            Action::KeepaliveWatchdog => f.write_str("KeepaliveWatchdog"),
            Action::Exit(why) => write!(f, "Exit({why})"),
        }
    }
}

/// Compact form (`FetchPeers(pg1,pg2)`, `UpdateLock(status)`).
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |v: &[PeerTarget]| v.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(",");
        match self {
            Step::FetchPeers(v) => write!(f, "FetchPeers({})", names(v)),
            Step::PostFailsafe(v) => write!(f, "PostFailsafe({})", names(v)),
            Step::CheckRewind(t) => write!(f, "CheckRewind({})", t.name),
            Step::UpdateLock { update_status: true } => f.write_str("UpdateLock(status)"),
            Step::UpdateLock { update_status: false } => f.write_str("UpdateLock"),
            Step::AcquireLock => f.write_str("AcquireLock"),
            Step::RaceInitialize => f.write_str("RaceInitialize"),
            Step::WriteSyncPrePromote { version: v } => write!(f, "WriteSyncPrePromote{}", version(v)),
        }
    }
}
