//! The JSON messages exchanged through the function table: one request and one response type per
//! DCS method, mirroring praetor's `Dcs` trait.
//!
//! Rules that hold for every message:
//! - Messages are UTF-8 JSON objects. Unknown fields are ignored, so a host may add optional fields
//!   without changing [`ABI_VERSION`](crate::ABI_VERSION).
//! - Durations are whole milliseconds in fields ending in `_ms`.
//! - Versions (`version`, `leader_version`) are the store's compare-and-set token as a signed 64-bit
//!   integer: etcd `mod_revision`, Consul `ModifyIndex`, ZooKeeper `stat.version`, or anything the
//!   plugin likes, as long as it changes on every write of the key.
//! - Values (`value`, `data`, `sysid`) are stored and returned byte for byte.

use serde::{Deserialize, Serialize};

/// Who this client is and the timing it must follow; part of [`CreateRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    /// Key namespace, e.g. `/service`.
    pub namespace: String,
    /// Cluster name; keys live under `<namespace>/<scope>/`.
    pub scope: String,
    /// This member's name.
    pub name: String,
    /// Leader lease/session lifetime.
    pub ttl_ms: u64,
    /// The HA loop period.
    pub loop_wait_ms: u64,
    /// How long one operation may retry before it must fail. The host abandons a call that takes
    /// longer than this (plus the watch timeout for `watch`).
    pub retry_timeout_ms: u64,
}

/// Argument of `create`: open one client of the store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateRequest {
    /// The host's ABI version (same as the one passed to the entry symbol).
    pub abi_version: u32,
    /// Identity and timing.
    pub params: Params,
    /// The `config` value of the host's `plugin:` section, converted from YAML to JSON (`null` when
    /// absent). Its shape is the plugin's business.
    pub config: serde_json::Value,
}

/// Answer of `create`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateResponse {
    /// A short name of the store for logs (`etcd3`, `redis`, …).
    pub backend: String,
}

/// A request without arguments: `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoArgs {}

/// A response without data: `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}

/// A yes/no outcome: `{"ok": true}`. `false` is an expected outcome (a lost race, a stale
/// compare-and-set), never an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Whether the operation took effect.
    pub ok: bool,
}

impl Outcome {
    /// `{"ok": ok}`.
    pub fn from(ok: bool) -> Outcome {
        Outcome { ok }
    }
}

/// One raw key under the cluster prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entry {
    /// Key relative to `<namespace>/<scope>/`, without a leading slash: `leader`, `config`,
    /// `members/pg0`, …
    pub key: String,
    /// The stored value.
    pub value: String,
    /// Compare-and-set version of the key.
    pub version: i64,
    /// Identifier of the lease/session/ephemeral owner keeping the key alive, if any.
    pub owner: Option<String>,
}

/// The leader key as the host last read it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaderRef {
    /// The member named in the key.
    pub name: String,
    /// Its version.
    pub version: i64,
    /// Its lease/session owner.
    pub owner: Option<String>,
}

/// `load_cluster`: one consistent read of every key under `<namespace>/<scope>/`.
pub type LoadClusterRequest = NoArgs;
/// Every key under the cluster prefix. The host parses values leniently; return them unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadClusterResponse {
    /// The keys, in any order.
    pub entries: Vec<Entry>,
}

/// `attempt_to_acquire_leader`: create `leader` = my name, bound to my lease/session, only if absent.
pub type AttemptToAcquireLeaderRequest = NoArgs;
/// `ok: false`: someone else holds it.
pub type AttemptToAcquireLeaderResponse = Outcome;

/// `update_leader`: keep the leader key I hold alive, re-binding it to my current lease/session if needed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateLeaderRequest {
    /// The leader key as last read (`null`: not read / absent).
    pub leader: Option<LeaderRef>,
}
/// `ok: false`: the key is gone or names someone else.
pub type UpdateLeaderResponse = Outcome;

/// `take_leader`: write `leader` = my name unconditionally, bound to my lease/session.
pub type TakeLeaderRequest = NoArgs;
/// Always `ok: true` unless the store failed.
pub type TakeLeaderResponse = Outcome;

/// `delete_leader`: delete `leader` if and only if it names me.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeleteLeaderRequest {
    /// The leader key as last read.
    pub leader: Option<LeaderRef>,
}
/// `ok: false`: it was not mine or already gone.
pub type DeleteLeaderResponse = Outcome;

/// `touch_member`: write `members/<my name>` = `data`, bound to my lease/session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TouchMemberRequest {
    /// The member JSON, stored byte for byte.
    pub data: String,
}
/// Whether it was written.
pub type TouchMemberResponse = Outcome;

/// A value with an optional compare-and-set version (`config`, `failover`, `sync`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CasValue {
    /// The value to store.
    pub value: String,
    /// Write only if the stored version equals this; `null`: unconditionally.
    pub version: Option<i64>,
}

/// A value written unconditionally (`history`, `status`, `failsafe`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlainValue {
    /// The value to store.
    pub value: String,
}

/// `set_config_value`: write `config`.
pub type SetConfigValueRequest = CasValue;
/// `ok: false`: the version did not match.
pub type SetConfigValueResponse = Outcome;

/// `set_failover_value`: write `failover` (`{}` clears it).
pub type SetFailoverValueRequest = CasValue;
/// `ok: false`: the version did not match.
pub type SetFailoverValueResponse = Outcome;

/// `set_history_value`: write `history`.
pub type SetHistoryValueRequest = PlainValue;
/// Whether it was written.
pub type SetHistoryValueResponse = Outcome;

/// `set_sync_state_value`: write `sync`.
pub type SetSyncStateValueRequest = CasValue;
/// The new version of `sync`, or `null` if the compare failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetSyncStateValueResponse {
    /// New version; `null` when the version did not match.
    pub version: Option<i64>,
}

/// `delete_sync_state`: remove `sync` (writing `{}` is acceptable too).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeleteSyncStateRequest {
    /// Delete only if the stored version equals this; `null`: unconditionally.
    pub version: Option<i64>,
}
/// `ok: false`: absent or the version did not match.
pub type DeleteSyncStateResponse = Outcome;

/// `write_status`: write `status`.
pub type WriteStatusRequest = PlainValue;
/// Whether it was written.
pub type WriteStatusResponse = Outcome;

/// `write_failsafe`: write `failsafe`.
pub type WriteFailsafeRequest = PlainValue;
/// Whether it was written.
pub type WriteFailsafeResponse = Outcome;

/// `initialize`: the bootstrap race on `initialize`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InitializeRequest {
    /// `true`: create only if absent; `false`: overwrite.
    pub create_new: bool,
    /// The value (a PostgreSQL system identifier, or empty while bootstrapping).
    pub sysid: String,
}
/// `ok: false`: lost the race.
pub type InitializeResponse = Outcome;

/// `cancel_initialization`: delete `initialize`.
pub type CancelInitializationRequest = NoArgs;
/// Whether a key was deleted.
pub type CancelInitializationResponse = Outcome;

/// `delete_cluster`: delete every key under the cluster prefix.
pub type DeleteClusterRequest = NoArgs;
/// Whether it was done.
pub type DeleteClusterResponse = Outcome;

/// `watch`: block until the leader key's version differs from `leader_version` (changed, deleted,
/// or created when `null`), or `timeout_ms` passes. Waking early without a change is allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WatchRequest {
    /// The leader key's version as last read; `null` when it was absent.
    pub leader_version: Option<i64>,
    /// How long to wait at most.
    pub timeout_ms: u64,
}
/// `ok: true`: woken by a change.
pub type WatchResponse = Outcome;

/// `set_timing`: apply new timing from the cluster's dynamic configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetTimingRequest {
    /// Leader lease/session lifetime.
    pub ttl_ms: u64,
    /// HA loop period.
    pub loop_wait_ms: u64,
    /// Per-operation retry budget.
    pub retry_timeout_ms: u64,
}
/// `{}`.
pub type SetTimingResponse = Done;

/// `close`: release the lease/session and connections (keys bound to them vanish).
pub type CloseRequest = NoArgs;
/// `{}`.
pub type CloseResponse = Done;
