//! The inputs of one HA decision, as plain values: what the loop observed (DCS, PostgreSQL, peers),
//! the effective configuration, the time, the long action in flight, and the results of the
//! [`Step`](super::action::Step)s already performed in this cycle.
//!
//! Owns: the shape of the policy's input. Must not do I/O or read a clock: every instant is given.
//! Nothing here depends on `crate::postgres` or `crate::config`; the loop converts their types.

use crate::dcs::model::Cluster;
use crate::types::{Lsn, Role};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A monotonic instant, measured from an arbitrary origin fixed by the loop (for example the agent's
/// start). Only differences between two `MonoTime`s mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonoTime(pub Duration);

impl MonoTime {
    /// An instant `secs` seconds after the origin.
    pub fn from_secs(secs: u64) -> MonoTime {
        MonoTime(Duration::from_secs(secs))
    }

    /// Time elapsed since `earlier`; zero if `earlier` is in the future.
    pub fn since(self, earlier: MonoTime) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// This instant moved `d` forward.
    pub fn plus(self, d: Duration) -> MonoTime {
        MonoTime(self.0 + d)
    }
}

/// Whether the postmaster runs, as the PostgreSQL controller last saw it (Patroni `PostgresqlState`
/// reduced to what the policy needs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PgRun {
    /// Accepting connections.
    Running,
    /// Started and not yet accepting connections.
    Starting,
    /// Stopped by the agent (or never started).
    #[default]
    Stopped,
    /// It was running and is gone without the agent stopping it.
    Crashed,
    /// Could not be determined.
    Unknown,
}

/// The data directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DataDir {
    /// Missing or empty: this node needs a bootstrap or a clone.
    #[default]
    Empty,
    /// Holds a PostgreSQL cluster.
    Initialized,
    /// Could not be read; the text says why.
    Inaccessible(String),
}

/// `Database cluster state` from `pg_controldata`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlState {
    /// `in production`: was a primary and did not shut down cleanly (or still runs).
    InProduction,
    /// `in crash recovery`.
    InCrashRecovery,
    /// `shutting down`.
    ShuttingDown,
    /// `shut down`: a primary shut down cleanly.
    ShutDown,
    /// `shut down in recovery`: a replica shut down cleanly.
    ShutDownInRecovery,
    /// `in archive recovery`: a replica that did not shut down cleanly (or still runs).
    InArchiveRecovery,
    /// Anything else, verbatim.
    Other(String),
}

impl ControlState {
    /// Parse the `pg_controldata` text.
    pub fn parse(s: &str) -> ControlState {
        match s.trim() {
            "in production" => ControlState::InProduction,
            "in crash recovery" => ControlState::InCrashRecovery,
            "shutting down" => ControlState::ShuttingDown,
            "shut down" => ControlState::ShutDown,
            "shut down in recovery" => ControlState::ShutDownInRecovery,
            "in archive recovery" => ControlState::InArchiveRecovery,
            other => ControlState::Other(other.to_string()),
        }
    }
}

/// One row of `pg_stat_replication` on this node (when it is a primary).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicationRow {
    /// `application_name` (= the member name of the standby).
    pub application_name: String,
    /// `state` (`streaming`, `catchup`, …).
    pub state: String,
    /// `sync_state` (`sync`, `quorum`, `potential`, or not synchronous).
    pub sync_state: String,
    /// `flush_lsn`.
    pub flush_lsn: Option<Lsn>,
    /// `replay_lsn`.
    pub replay_lsn: Option<Lsn>,
}

/// A PostgreSQL server address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or address as written in the connection string.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl HostPort {
    /// Host and port of a `postgres://host:port/db` URL (port 5432 when absent).
    pub fn from_conn_url(url: &str) -> Option<HostPort> {
        let u = url::Url::parse(url).ok()?;
        Some(HostPort { host: u.host_str()?.to_string(), port: u.port().unwrap_or(5432) })
    }
}

/// The local PostgreSQL as observed this cycle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PgState {
    /// Postmaster state.
    pub run: PgRun,
    /// The role the agent last set for this node (what it publishes in its member key):
    /// `primary`, `replica`, `demoted`, `promoted`, `uninitialized`, …
    pub role: Role,
    /// `pg_is_in_recovery()`, when PostgreSQL answered.
    pub is_in_recovery: Option<bool>,
    /// Current timeline (primary: from `pg_control_checkpoint`/`IDENTIFY_SYSTEM`; replica: received
    /// timeline), when known.
    pub timeline: Option<u64>,
    /// Primary: `pg_current_wal_lsn()`.
    pub write_lsn: Option<Lsn>,
    /// Primary: `pg_current_wal_flush_lsn()`.
    pub flush_lsn: Option<Lsn>,
    /// Replica: `pg_last_wal_receive_lsn()`.
    pub receive_lsn: Option<Lsn>,
    /// Replica: `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<Lsn>,
    /// System identifier of the data directory (from `pg_controldata`), when readable.
    pub sysid: Option<String>,
    /// Data directory state.
    pub data_dir: DataDir,
    /// `Database cluster state` from `pg_controldata`, when readable.
    pub control_state: Option<ControlState>,
    /// A recovery configuration (`standby.signal`) exists.
    pub recovery_conf_exists: bool,
    /// Host and port of `primary_conninfo`; `None` when there is no upstream (a primary, or a
    /// replica without `primary_conninfo`). Compared with the wanted upstream's `conn_url`.
    pub upstream: Option<HostPort>,
    /// Some parameter change needs a restart.
    pub pending_restart: bool,
    /// Postmaster start time as PostgreSQL reports it.
    pub postmaster_start_time: Option<String>,
    /// `pg_stat_replication` rows (primary only).
    pub replication: Vec<ReplicationRow>,
    /// `server_version_num` (e.g. 150004), when known.
    pub server_version: Option<u32>,
}

impl PgState {
    /// Running and answering as a primary (Patroni `is_primary`).
    pub fn is_primary(&self) -> bool {
        self.run == PgRun::Running && self.is_in_recovery == Some(false)
    }

    /// The postmaster runs (running or starting): Patroni `is_healthy`/`is_running`.
    pub fn is_running(&self) -> bool {
        matches!(self.run, PgRun::Running | PgRun::Starting)
    }

    /// Patroni `last_operation`: a primary's flush (else write) LSN, a replica's furthest of
    /// received and replayed LSN. Zero when unknown.
    pub fn wal_position(&self) -> u64 {
        if self.is_in_recovery == Some(false) {
            self.flush_lsn.or(self.write_lsn).map(|l| l.0).unwrap_or(0)
        } else {
            self.receive_lsn.max(self.replay_lsn).map(|l| l.0).unwrap_or(0)
        }
    }
}

/// The timing parameters of the dynamic configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Leader lease TTL.
    pub ttl: Duration,
    /// HA loop period.
    pub loop_wait: Duration,
    /// How long one DCS call may retry before it fails.
    pub retry_timeout: Duration,
    /// How long a crashed primary may take to start before failing over (0 = fail over at once).
    pub primary_start_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(10),
            primary_start_timeout: Duration::from_secs(300),
        }
    }
}

impl Timing {
    /// `loop_wait + 2*retry_timeout <= ttl`: a primary that cannot renew its lock (one sleep, then a
    /// slow read and a slow write, each failing after `retry_timeout`) has demoted before its lease
    /// can expire and another member promotes (PATRONI-COMPAT §6.3).
    pub fn demotes_before_lease_expiry(&self) -> bool {
        self.loop_wait + self.retry_timeout * 2 <= self.ttl
    }
}

/// `synchronous_mode` of the dynamic configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Asynchronous replication.
    #[default]
    Off,
    /// `synchronous_mode: on`.
    On,
    /// `synchronous_mode: quorum`.
    Quorum,
}

/// The fields of the effective dynamic configuration (`/config`, else the local `bootstrap.dcs`)
/// that the policy reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicPolicy {
    /// `maximum_lag_on_failover` in bytes.
    pub maximum_lag_on_failover: u64,
    /// `check_timeline`.
    pub check_timeline: bool,
    /// `synchronous_mode`.
    pub synchronous_mode: SyncMode,
    /// `synchronous_mode_strict`.
    pub synchronous_mode_strict: bool,
    /// `failsafe_mode`.
    pub failsafe_mode: bool,
    /// `pause`.
    pub pause: bool,
    /// `postgresql.use_pg_rewind` and a usable `pg_rewind` (binary present, `wal_log_hints` or
    /// checksums): Patroni `can_rewind`.
    pub can_rewind: bool,
    /// `postgresql.remove_data_directory_on_diverged_timelines`.
    pub remove_data_directory_on_diverged_timelines: bool,
    /// `postgresql.remove_data_directory_on_rewind_failure`.
    pub remove_data_directory_on_rewind_failure: bool,
    /// praetor's partition rules (the `praetor` section).
    pub partition: super::fence::PartitionPolicy,
}

impl Default for DynamicPolicy {
    fn default() -> Self {
        DynamicPolicy {
            maximum_lag_on_failover: 1_048_576,
            check_timeline: false,
            synchronous_mode: SyncMode::Off,
            synchronous_mode_strict: false,
            failsafe_mode: false,
            pause: false,
            can_rewind: false,
            remove_data_directory_on_diverged_timelines: false,
            remove_data_directory_on_rewind_failure: false,
            partition: super::fence::PartitionPolicy::default(),
        }
    }
}

impl DynamicPolicy {
    /// Patroni `can_rewind_or_reinitialize_allowed`.
    pub fn can_rewind_or_reinitialize(&self) -> bool {
        self.can_rewind || self.remove_data_directory_on_diverged_timelines
    }
}

/// The local node's tags as the policy reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalTags {
    /// Effective `nofailover` (explicit tag, else `failover_priority <= 0`).
    pub nofailover: bool,
    /// Effective `failover_priority` (0 when `nofailover`, default 1).
    pub failover_priority: i64,
    /// `nosync`.
    pub nosync: bool,
    /// `clonefrom`.
    pub clonefrom: bool,
    /// `replicatefrom`.
    pub replicatefrom: Option<String>,
    /// `nostream`: never stream WAL from another node.
    pub nostream: bool,
}

impl Default for LocalTags {
    fn default() -> Self {
        LocalTags {
            nofailover: false,
            failover_priority: 1,
            nosync: false,
            clonefrom: false,
            replicatefrom: None,
            nostream: false,
        }
    }
}

/// Watchdog readiness as the loop knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatchdogState {
    /// `mode: off`, or `automatic` without a device: never blocks anything.
    #[default]
    NotRequired,
    /// Usable (or already running).
    Ready,
    /// `mode: required` and the device is missing or failed: this node must not lead.
    Unusable,
}

/// Who this node is and what its local configuration allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalIdentity {
    /// Member name.
    pub name: String,
    /// Tags.
    pub tags: LocalTags,
    /// The local configuration has a `bootstrap` section (Patroni `'bootstrap' in config`).
    pub has_bootstrap_section: bool,
    /// A `create_replica_methods` entry works without a running leader (`no_leader`/backup tools).
    pub can_create_replica_without_leader: bool,
    /// The watchdog.
    pub watchdog: WatchdogState,
}

/// What another member answered to `GET /patroni` (Patroni `_MemberStatus`). A member the loop
/// could not reach (2 s timeout, no retries) is [`PeerStatus::unreachable`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Answered with valid JSON.
    pub reachable: bool,
    /// `false` when the member runs as a primary.
    pub in_recovery: Option<bool>,
    /// A replica's furthest of received/replayed LSN (0 for a primary or unknown).
    pub wal_position: u64,
    /// `timeline` from the answer (0 when absent).
    pub timeline: u64,
    /// Effective `nofailover` from the answer's tags.
    pub nofailover: bool,
    /// Effective `failover_priority` from the answer's tags.
    pub failover_priority: i64,
    /// `watchdog_failed` from the answer.
    pub watchdog_failed: bool,
}

impl PeerStatus {
    /// A member that did not answer.
    pub fn unreachable() -> PeerStatus {
        PeerStatus {
            reachable: false,
            in_recovery: None,
            wal_position: 0,
            timeline: 0,
            nofailover: false,
            failover_priority: 1,
            watchdog_failed: false,
        }
    }

    /// Distil a `GET /patroni` JSON answer as Patroni's `_MemberStatus.from_api_response` does: a
    /// member is in recovery unless its `xlog`/`wal` has `location` or its role is primary/master;
    /// a replica's position is the furthest of `received_location`/`replayed_location`. An answer
    /// without `xlog`/`wal` counts as unreachable.
    pub fn from_patroni_json(v: &Value) -> PeerStatus {
        let Some(wal) =
            v.get("wal").filter(|w| w.is_object()).or_else(|| v.get("xlog").filter(|w| w.is_object()))
        else {
            return PeerStatus::unreachable();
        };
        let num =
            |x: Option<&Value>| x.and_then(|n| n.as_u64().or_else(|| n.as_str()?.parse().ok())).unwrap_or(0);
        let role = v.get("role").and_then(Value::as_str).unwrap_or("");
        let has_location = num(wal.get("location")) > 0;
        let in_recovery = !(has_location || role == "primary" || role == "master");
        let wal_position = if in_recovery {
            num(wal.get("received_location")).max(num(wal.get("replayed_location")))
        } else {
            0
        };
        let tags = v.get("tags").and_then(Value::as_object).cloned().unwrap_or_default();
        PeerStatus {
            reachable: true,
            in_recovery: Some(in_recovery),
            wal_position,
            timeline: num(v.get("timeline")),
            nofailover: super::failover::tags_nofailover(&tags),
            failover_priority: super::failover::tags_failover_priority(&tags),
            watchdog_failed: v.get("watchdog_failed").and_then(Value::as_bool).unwrap_or(false),
        }
    }

    /// Patroni `failover_limitation`: why this member cannot promote, or `None`.
    pub fn failover_limitation(&self) -> Option<&'static str> {
        if !self.reachable {
            Some("not reachable")
        } else if self.nofailover {
            Some("not allowed to promote")
        } else if self.watchdog_failed {
            Some("not watchdog capable")
        } else {
            None
        }
    }
}

/// A `POST /failsafe` from the leader, received by this node's REST API while the DCS was
/// unreachable for the leader (PATRONI-COMPAT §6.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailsafePing {
    /// The leader's member name.
    pub name: String,
    /// Its `conn_url`.
    pub conn_url: Option<String>,
    /// Its `api_url`.
    pub api_url: Option<String>,
    /// When it arrived; valid for `ttl`.
    pub received_at: MonoTime,
}

/// The DCS could not be read this cycle (the call failed after `retry_timeout`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DcsUnavailable(pub String);

impl fmt::Display for DcsUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The kind of a long action the loop runs as a task (Patroni's `AsyncExecutor.scheduled_action`).
/// `Display` is Patroni's action name, used in reasons such as `"restart in progress"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LongActionKind {
    /// initdb/custom bootstrap and first start.
    Bootstrap,
    /// `post_bootstrap` (users, `post_init` script).
    PostBootstrap,
    /// Clone from a member: `bootstrap from leader 'pg0'` / `bootstrap from replica 'pg2'`.
    Clone {
        /// Source member.
        from: String,
        /// The source holds the leader key.
        from_leader: bool,
    },
    /// `bootstrap (without leader)`.
    CloneWithoutLeader,
    /// Promotion (runs `pre_promote`, then `pg_ctl promote`).
    Promote,
    /// A demotion run as a task (`switchover: demote`, `manual failover: demote`).
    Demote(String),
    /// A PostgreSQL restart.
    Restart,
    /// Start after a failure, as replica or read-only.
    RestartingAfterFailure,
    /// Start a crashed primary as primary (`starting primary after failure`).
    StartingPrimaryAfterFailure,
    /// Single-user crash recovery.
    CrashRecovery,
    /// `pg_rewind` from a member.
    Rewind(String),
    /// Data directory removed, cloning again.
    Reinitialize,
    /// New `primary_conninfo` needing a restart.
    ChangePrimaryConninfo,
    /// Start as replica after a demotion.
    StartingAfterDemotion,
}

impl fmt::Display for LongActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LongActionKind::Bootstrap => f.write_str("bootstrap"),
            LongActionKind::PostBootstrap => f.write_str("post_bootstrap"),
            LongActionKind::Clone { from, from_leader } => {
                write!(f, "bootstrap from {} '{from}'", if *from_leader { "leader" } else { "replica" })
            }
            LongActionKind::CloneWithoutLeader => f.write_str("bootstrap (without leader)"),
            LongActionKind::Promote => f.write_str("promote"),
            LongActionKind::Demote(action) => write!(f, "{action}: demote"),
            LongActionKind::Restart => f.write_str("restart"),
            LongActionKind::RestartingAfterFailure => f.write_str("restarting after failure"),
            LongActionKind::StartingPrimaryAfterFailure => f.write_str("starting primary after failure"),
            LongActionKind::CrashRecovery => f.write_str("doing crash recovery in a single user mode"),
            LongActionKind::Rewind(from) => write!(f, "running pg_rewind from {from}"),
            LongActionKind::Reinitialize => f.write_str("reinitialize"),
            LongActionKind::ChangePrimaryConninfo => f.write_str("changing primary_conninfo and restarting"),
            LongActionKind::StartingAfterDemotion => f.write_str("starting after demotion"),
        }
    }
}

/// The long action running now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongAction {
    /// What runs.
    pub kind: LongActionKind,
    /// When it started.
    pub started_at: MonoTime,
}

/// A long action that finished since the previous cycle, with its result. The loop reports each
/// one exactly once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Bootstrap (initdb + first start) ended.
    Bootstrap {
        /// It succeeded.
        ok: bool,
    },
    /// `post_bootstrap` ended.
    PostBootstrap {
        /// It succeeded.
        ok: bool,
    },
    /// Promotion ended; `pre_promote_ok == false` means the `pre_promote` script refused and
    /// PostgreSQL was not promoted.
    Promote {
        /// `pre_promote` exited 0 (or is not configured).
        pre_promote_ok: bool,
    },
    /// `pg_rewind` ended.
    Rewind {
        /// It succeeded.
        ok: bool,
    },
    /// Any other long action ended (its effect is visible in the observed state).
    Other(LongActionKind),
}

/// Result of a DCS write the policy asked for with a [`Step`](super::action::Step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written (race won, lock renewed, CAS succeeded).
    Done,
    /// Refused by the store (race lost, key owned by someone else, CAS on a stale version).
    Refused,
    /// The store could not be reached (failed after `retry_timeout`).
    DcsError,
}

/// Result of the rewind check against the leader (PATRONI-COMPAT §6.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewindCheck {
    /// This node's history diverged from the leader's: rewind (or reinitialize) before following.
    Needed,
    /// Same history: just follow.
    NotNeeded,
    /// Could not tell (local position unknown, leader still in recovery): check again next cycle.
    Unknown,
    /// The leader could not be asked (connection or query failed, e.g. it is shutting down): check
    /// again next cycle, and do not start following it meanwhile.
    LeaderUnavailable,
}

/// Results of the [`Step`](super::action::Step)s the loop performed in this cycle. `None` means
/// "not performed yet"; the policy asks for each step at most once per cycle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepResults {
    /// `GET /patroni` answers by member name; a requested member missing from the map counts as
    /// unreachable.
    pub peers: Option<BTreeMap<String, PeerStatus>>,
    /// Every member listed in `/failsafe` answered `POST /failsafe` with 200 `Accepted`.
    pub failsafe_accepted: Option<bool>,
    /// The rewind check against the leader.
    pub rewind_check: Option<RewindCheck>,
    /// `update_leader` result.
    pub lock_update: Option<WriteOutcome>,
    /// `attempt_to_acquire_leader` result.
    pub lock_acquire: Option<WriteOutcome>,
    /// `initialize(create_new=True)` race result.
    pub initialize_race: Option<WriteOutcome>,
    /// Pre-promote `/sync` write (`{"leader": me, "sync_standby": null}`) result.
    pub sync_prepromote: Option<WriteOutcome>,
}

/// A restart scheduled through `POST /restart` with `schedule` (kept by the agent and published as
/// `scheduled_restart` in its member key).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduledRestart {
    /// ISO-8601 time with zone.
    pub schedule: String,
    /// Postmaster start time when the restart was requested; a different current start time means
    /// the restart already happened.
    pub postmaster_start_time: Option<String>,
    /// Only restart when this node has this role.
    pub role: Option<Role>,
    /// Only restart when the running server is older than this version (`15.4`).
    pub postgres_version: Option<String>,
    /// Only restart when PostgreSQL reports `pending_restart`.
    pub restart_pending: bool,
    /// Start timeout; default `primary_start_timeout`.
    pub timeout: Option<Duration>,
}

/// Everything the policy reads in one cycle.
#[derive(Clone, Debug)]
pub struct Snapshot<'a> {
    /// Monotonic now.
    pub now: MonoTime,
    /// Wall-clock now, for `scheduled_at` comparisons.
    pub wall: chrono::DateTime<chrono::Utc>,
    /// Who this node is.
    pub me: &'a LocalIdentity,
    /// The DCS read of this cycle.
    pub cluster: Result<&'a Cluster, DcsUnavailable>,
    /// Local PostgreSQL.
    pub pg: &'a PgState,
    /// Effective dynamic configuration (from the last successful read of `/config`).
    pub policy: &'a DynamicPolicy,
    /// Timing parameters.
    pub timing: Timing,
    /// The long action running now, if any.
    pub in_flight: Option<&'a LongAction>,
    /// Long actions that finished since the previous cycle.
    pub finished: &'a [Finished],
    /// The last `POST /failsafe` received from a leader, if any.
    pub failsafe_ping: Option<&'a FailsafePing>,
    /// A scheduled restart, if any.
    pub scheduled_restart: Option<&'a ScheduledRestart>,
    /// Results of steps already performed in this cycle.
    pub steps: &'a StepResults,
    /// How long replicas have not confirmed this primary's WAL, as the sampler last saw it; `None`
    /// when not measured (not a running primary holding the key, or the sampler has no sample yet).
    pub wal_confirmation: Option<super::fence::WalConfirmation>,
}
