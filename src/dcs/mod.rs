//! The distributed configuration store: the [`Dcs`] trait every backend implements, the cluster
//! model (`model`), the key layout (`keys`) and the compiled-in backends.
//!
//! Owns: the DCS protocol and Patroni's key layout. Must not use `postgres`, `ha` or `api`.
//!
//! # Failure contract
//! Every method returns `Err(DcsError)` only when the store could not be asked or could not answer
//! (unreachable, timed out after `retry_timeout`, session lost). An expected outcome — a lost race, a
//! compare-and-set on a stale version, a key that is absent — is `Ok(false)`/`Ok(None)`.

pub mod factory;
pub mod keys;
pub mod memory;
pub mod model;
pub mod timed;

#[cfg(feature = "etcd")]
pub mod etcd;

#[cfg(feature = "consul")]
pub mod consul;

#[cfg(feature = "zookeeper")]
pub mod zookeeper;

#[cfg(feature = "plugins")]
pub mod plugin;

use async_trait::async_trait;
use model::{Cluster, Leader, Version};
use std::time::Duration;

pub use keys::ClusterKeys;

/// Identity and timing every backend needs.
#[derive(Clone, Debug, PartialEq)]
pub struct DcsParams {
    /// `namespace` (default `/service`).
    pub namespace: String,
    /// `scope`: the cluster name.
    pub scope: String,
    /// `name`: this member.
    pub name: String,
    /// Leader lease/session TTL.
    pub ttl: Duration,
    /// HA loop period.
    pub loop_wait: Duration,
    /// How long one DCS operation may retry before it fails.
    pub retry_timeout: Duration,
}

impl DcsParams {
    /// The key layout of this cluster.
    pub fn keys(&self) -> ClusterKeys {
        ClusterKeys::new(&self.namespace, &self.scope)
    }
}

/// Why a DCS call failed (not a lost race: see the module docs).
#[derive(Debug, thiserror::Error)]
pub enum DcsError {
    /// The store could not be reached or did not answer in time.
    #[error("DCS is not reachable: {0}")]
    Unavailable(String),
    /// Our lease/session is gone; keys it carried are gone too.
    #[error("DCS session or lease expired")]
    SessionExpired,
    /// The backend reported an error.
    #[error("{op}")]
    Backend {
        /// What we were doing (a verb phrase: "put leader key").
        op: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend's configuration is unusable.
    #[error("invalid DCS configuration: {0}")]
    Config(String),
}

impl DcsError {
    /// Wrap a backend error with a verb phrase saying what failed.
    pub fn backend(op: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> DcsError {
        DcsError::Backend { op, source: Box::new(e) }
    }

    /// Worth retrying within `retry_timeout`.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DcsError::Unavailable(_) | DcsError::Backend { .. })
    }
}

/// The store, spoken in Patroni's verbs (`AbstractDCS`). Dyn-compatible: held as `Arc<dyn Dcs>`.
///
/// Values are passed as the exact strings Patroni writes (see `model` for builders), so every
/// backend and the plugin ABI store them byte for byte.
#[async_trait]
pub trait Dcs: Send + Sync + 'static {
    /// Backend name for logs and errors (`etcd3`, `consul`, `zookeeper`, `memory`, `plugin:<path>`).
    fn backend(&self) -> String;

    /// One consistent read of every key under the cluster prefix. Values that do not parse read as
    /// empty (logged), never as an error.
    async fn load_cluster(&self) -> Result<Cluster, DcsError>;

    /// Create the leader key with my name, bound to my lease/session, only if it does not exist.
    /// `Ok(false)`: someone else holds it.
    async fn attempt_to_acquire_leader(&self) -> Result<bool, DcsError>;

    /// Keep the leader key I hold alive (lease keep-alive / session renew / ephemeral owner check),
    /// re-binding it to my current lease/session if needed. `leader` is the key as last read.
    /// `Ok(false)`: the key is gone or names someone else — I am no longer the leader.
    async fn update_leader(&self, leader: Option<&Leader>) -> Result<bool, DcsError>;

    /// Write the leader key with my name unconditionally (after bootstrap).
    async fn take_leader(&self) -> Result<bool, DcsError>;

    /// Voluntarily release the leader key if (and only if) it still names me.
    /// `Ok(false)`: it was not mine (or already gone).
    async fn delete_leader(&self, leader: Option<&Leader>) -> Result<bool, DcsError>;

    /// Publish `members/<name>` (bound to my lease/session) with this JSON value.
    async fn touch_member(&self, data: &str) -> Result<bool, DcsError>;

    /// Write `config`; with `version`, only if the stored version matches.
    async fn set_config_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError>;

    /// Write `failover`; with `version`, only if the stored version matches. `{}` clears it.
    async fn set_failover_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError>;

    /// Write `history` unconditionally.
    async fn set_history_value(&self, value: &str) -> Result<bool, DcsError>;

    /// Write `sync`; with `version`, only if the stored version matches. Returns the new version, or
    /// `None` if the compare failed.
    async fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<Version>,
    ) -> Result<Option<Version>, DcsError>;

    /// Remove `sync` (ZooKeeper writes `{}`); with `version`, only if it matches.
    async fn delete_sync_state(&self, version: Option<Version>) -> Result<bool, DcsError>;

    /// Write `status` unconditionally.
    async fn write_status(&self, value: &str) -> Result<bool, DcsError>;

    /// Write `failsafe` unconditionally.
    async fn write_failsafe(&self, value: &str) -> Result<bool, DcsError>;

    /// `create_new`: create `initialize` with `sysid` only if absent (the bootstrap race);
    /// otherwise overwrite it. `Ok(false)`: lost the race.
    async fn initialize(&self, create_new: bool, sysid: &str) -> Result<bool, DcsError>;

    /// Delete `initialize` after a failed bootstrap.
    async fn cancel_initialization(&self) -> Result<bool, DcsError>;

    /// Delete every key of the cluster (`patronictl remove`).
    async fn delete_cluster(&self) -> Result<bool, DcsError>;

    /// Sleep up to `timeout`, waking early when the cluster changes in a way the HA loop must react to.
    ///
    /// `leader_version` is the version of the leader key as this node last read it while *another*
    /// member held it; the call returns `Ok(true)` as soon as the key differs from it (changed, deleted,
    /// re-created). `None` (this node holds the lock, or the cluster is unlocked) means: do not wait on
    /// the leader key relative to an old read — only changes made after the call began count. A change
    /// of `config` by another client also wakes it. `Ok(false)`: the timeout passed.
    /// Spurious wake-ups are allowed; callers re-read the cluster.
    async fn watch(&self, leader_version: Option<Version>, timeout: Duration) -> Result<bool, DcsError>;

    /// Apply a new `ttl` (and `loop_wait`/`retry_timeout`) from the dynamic configuration.
    async fn set_timing(
        &self,
        ttl: Duration,
        loop_wait: Duration,
        retry_timeout: Duration,
    ) -> Result<(), DcsError>;

    /// Release sessions/leases and connections. Keys bound to them vanish. No network in `Drop`.
    async fn close(&self) -> Result<(), DcsError>;
}
