//! The node status the HA task publishes and the REST API serves (`GET /patroni` and the body of every
//! health check, PATRONI-COMPAT §3.2). Handlers never run SQL or DCS calls: they read the last
//! published [`NodeStatus`].

use crate::types::Role;
use serde::Serialize;
use serde_json::{Map, Value};

/// `xlog` of the status JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Xlog {
    /// On a primary: `pg_current_wal_flush_lsn()` in bytes.
    Primary {
        /// Flush LSN.
        location: u64,
    },
    /// On a replica.
    Replica {
        /// Received (written) LSN.
        received_location: u64,
        /// Replayed LSN.
        replayed_location: u64,
        /// `pg_last_xact_replay_timestamp()`.
        replayed_timestamp: Option<String>,
        /// `pg_is_wal_replay_paused()`.
        paused: bool,
    },
}

/// One row of `replication` (from `pg_stat_replication`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplicationRow {
    /// Role name of the walsender's user.
    pub usename: Option<String>,
    /// `application_name` = the standby's member name.
    pub application_name: String,
    /// Client address.
    pub client_addr: Option<String>,
    /// `streaming`, `catchup`, …
    pub state: String,
    /// `async`, `sync`, `quorum`, `potential`.
    pub sync_state: String,
    /// Priority in `synchronous_standby_names`.
    pub sync_priority: i32,
}

/// `patroni` of the status JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PatroniInfo {
    /// The Patroni version implemented (peers compare it against feature thresholds).
    pub version: String,
    /// Cluster name.
    pub scope: String,
    /// Member name.
    pub name: String,
    /// praetor's own version (extra field; Patroni readers ignore it).
    pub praetor_version: String,
}

/// The last HA decision of a node (`praetor_ha` in the status JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HaDecisionInfo {
    /// The cycle's log line, as Patroni would log it (`no action. I am (pg0), the leader with the lock`).
    pub decision: String,
    /// Actions taken in that cycle (`Follow(pg0)`, `TakeLock`, …), empty when none.
    pub actions: Vec<String>,
    /// When the cycle ended (RFC 3339, UTC).
    pub at: String,
}

/// Everything a REST handler needs, published by the HA task after every cycle.
///
/// The serialized form is Patroni's status JSON; the `#[serde(skip)]` fields feed the health checks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeStatus {
    /// PostgreSQL state (`running`, `stopped`, `starting`, …; `unknown` when it did not answer).
    pub state: String,
    /// `pg_postmaster_start_time()`, ISO 8601.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postmaster_start_time: Option<String>,
    /// `primary`, `replica` or `standby_leader`.
    pub role: Role,
    /// e.g. 150020.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<u32>,
    /// WAL positions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xlog: Option<Xlog>,
    /// Listed in `sync` in synchronous (non-quorum) mode.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_standby: bool,
    /// Listed in `sync` in quorum mode.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quorum_standby: bool,
    /// Current timeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u64>,
    /// `streaming` or `in archive recovery`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    /// `pg_stat_replication` rows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replication: Vec<ReplicationRow>,
    /// Maintenance mode.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    /// Nobody holds the leader key (or the DCS view is unknown).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cluster_unlocked: bool,
    /// The leader keeps running on failsafe (DCS unreachable).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub failsafe_mode_is_active: bool,
    /// Epoch seconds of the last successful DCS read.
    pub dcs_last_seen: u64,
    /// Effective tags.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub tags: Map<String, Value>,
    /// System identifier from `pg_controldata`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_system_identifier: Option<String>,
    /// A parameter change needs a restart.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
    /// `{param: {old_value, new_value}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_restart_reason: Option<Value>,
    /// Versions and identity.
    pub patroni: PatroniInfo,
    /// `{schedule, …}` of a scheduled restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<Value>,
    /// The watchdog device is unhealthy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub watchdog_failed: bool,
    /// praetor only (Patroni clients ignore unknown fields): the last HA cycle's decision, shown
    /// by `praetorctl why`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub praetor_ha: Option<HaDecisionInfo>,
    /// praetor only: this primary's commits wait for a synchronous standby that is not there.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub writes_blocked: bool,
    /// praetor only: why `writes_blocked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_blocked_reason: Option<String>,

    /// This node holds the leader key.
    #[serde(skip)]
    pub is_leader: bool,
    /// The cluster is a standby cluster.
    #[serde(skip)]
    pub standby_cluster: bool,
    /// The `noloadbalance` tag is set.
    #[serde(skip)]
    pub noloadbalance: bool,
    /// A DCS view of the cluster is cached (Patroni: `cluster` is not None).
    #[serde(skip)]
    pub cluster_known: bool,
    /// `status.optime` from the DCS.
    #[serde(skip)]
    pub leader_optime: u64,
    /// `latest_end_lsn` of the WAL receiver.
    #[serde(skip)]
    pub latest_end_lsn: u64,
    /// `maximum_lag_on_failover`, the default lag for `/readiness`.
    #[serde(skip)]
    pub maximum_lag_on_failover: u64,
}

impl NodeStatus {
    /// The status of a node that knows nothing yet.
    pub fn initial(scope: &str, name: &str) -> NodeStatus {
        NodeStatus {
            state: "stopped".into(),
            postmaster_start_time: None,
            role: Role::Uninitialized,
            server_version: None,
            xlog: None,
            sync_standby: false,
            quorum_standby: false,
            timeline: None,
            replication_state: None,
            replication: Vec::new(),
            pause: false,
            cluster_unlocked: true,
            failsafe_mode_is_active: false,
            dcs_last_seen: 0,
            tags: Map::new(),
            database_system_identifier: None,
            pending_restart: false,
            pending_restart_reason: None,
            patroni: PatroniInfo {
                version: crate::types::PATRONI_COMPAT_VERSION.into(),
                scope: scope.into(),
                name: name.into(),
                praetor_version: crate::types::PRAETOR_VERSION.into(),
            },
            scheduled_restart: None,
            watchdog_failed: false,
            praetor_ha: None,
            writes_blocked: false,
            writes_blocked_reason: None,
            is_leader: false,
            standby_cluster: false,
            noloadbalance: false,
            cluster_known: false,
            leader_optime: 0,
            latest_end_lsn: 0,
            maximum_lag_on_failover: 1_048_576,
        }
    }

    /// Replayed LSN on a replica, 0 otherwise.
    pub fn replayed_location(&self) -> u64 {
        match &self.xlog {
            Some(Xlog::Replica { replayed_location, .. }) => *replayed_location,
            _ => 0,
        }
    }

    /// Received LSN on a replica, 0 otherwise.
    pub fn received_location(&self) -> u64 {
        match &self.xlog {
            Some(Xlog::Replica { received_location, .. }) => *received_location,
            _ => 0,
        }
    }
}
