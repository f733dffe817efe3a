//! A [`Dcs`] wrapper that records the latency and errors of every request per operation in
//! [`AgentMetrics`] (`praetor_dcs_request_duration_seconds`). `watch` is a long poll, not a request:
//! it is passed through unmeasured.

use super::model::{Cluster, Leader, Version};
use super::{Dcs, DcsError};
use crate::metrics::AgentMetrics;
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Measures the calls of the wrapped store.
pub struct TimedDcs {
    inner: Arc<dyn Dcs>,
    metrics: Arc<AgentMetrics>,
}

impl TimedDcs {
    /// Wrap `inner`.
    pub fn wrap(inner: Arc<dyn Dcs>, metrics: Arc<AgentMetrics>) -> Arc<dyn Dcs> {
        Arc::new(TimedDcs { inner, metrics })
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = Result<T, DcsError>>,
    ) -> Result<T, DcsError> {
        let t = Instant::now();
        let r = f.await;
        self.metrics.record_dcs(op, t.elapsed(), r.is_ok());
        r
    }
}

#[async_trait]
impl Dcs for TimedDcs {
    fn backend(&self) -> String {
        self.inner.backend()
    }
    async fn load_cluster(&self) -> Result<Cluster, DcsError> {
        self.timed("load_cluster", self.inner.load_cluster()).await
    }
    async fn attempt_to_acquire_leader(&self) -> Result<bool, DcsError> {
        self.timed("attempt_to_acquire_leader", self.inner.attempt_to_acquire_leader()).await
    }
    async fn update_leader(&self, leader: Option<&Leader>) -> Result<bool, DcsError> {
        self.timed("update_leader", self.inner.update_leader(leader)).await
    }
    async fn take_leader(&self) -> Result<bool, DcsError> {
        self.timed("take_leader", self.inner.take_leader()).await
    }
    async fn delete_leader(&self, leader: Option<&Leader>) -> Result<bool, DcsError> {
        self.timed("delete_leader", self.inner.delete_leader(leader)).await
    }
    async fn touch_member(&self, data: &str) -> Result<bool, DcsError> {
        self.timed("touch_member", self.inner.touch_member(data)).await
    }
    async fn set_config_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        self.timed("set_config_value", self.inner.set_config_value(value, version)).await
    }
    async fn set_failover_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        self.timed("set_failover_value", self.inner.set_failover_value(value, version)).await
    }
    async fn set_history_value(&self, value: &str) -> Result<bool, DcsError> {
        self.timed("set_history_value", self.inner.set_history_value(value)).await
    }
    async fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<Version>,
    ) -> Result<Option<Version>, DcsError> {
        self.timed("set_sync_state_value", self.inner.set_sync_state_value(value, version)).await
    }
    async fn delete_sync_state(&self, version: Option<Version>) -> Result<bool, DcsError> {
        self.timed("delete_sync_state", self.inner.delete_sync_state(version)).await
    }
    async fn write_status(&self, value: &str) -> Result<bool, DcsError> {
        self.timed("write_status", self.inner.write_status(value)).await
    }
    async fn write_failsafe(&self, value: &str) -> Result<bool, DcsError> {
        self.timed("write_failsafe", self.inner.write_failsafe(value)).await
    }
    async fn initialize(&self, create_new: bool, sysid: &str) -> Result<bool, DcsError> {
        self.timed("initialize", self.inner.initialize(create_new, sysid)).await
    }
    async fn cancel_initialization(&self) -> Result<bool, DcsError> {
        self.timed("cancel_initialization", self.inner.cancel_initialization()).await
    }
    async fn delete_cluster(&self) -> Result<bool, DcsError> {
        self.timed("delete_cluster", self.inner.delete_cluster()).await
    }
    async fn watch(&self, leader_version: Option<Version>, timeout: Duration) -> Result<bool, DcsError> {
        self.inner.watch(leader_version, timeout).await
    }
    async fn set_timing(
        &self,
        ttl: Duration,
        loop_wait: Duration,
        retry_timeout: Duration,
    ) -> Result<(), DcsError> {
        self.timed("set_timing", self.inner.set_timing(ttl, loop_wait, retry_timeout)).await
    }
    async fn close(&self) -> Result<(), DcsError> {
        self.timed("close", self.inner.close()).await
    }
}
