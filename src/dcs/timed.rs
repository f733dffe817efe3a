//! A [`Dcs`] wrapper that records the latency and errors of every request per operation in
//! [`AgentMetrics`] (`praetor_dcs_request_duration_seconds`). `watch` is a long poll, not a request:
//! it is passed through unmeasured.
//!
//! With [`TimedDcs::wrap_with_deadline`] it also cuts requests short while a signal is raised: the
//! HA runner raises it when the primary is at risk of being isolated (no replica confirms its WAL),
//! so that a DCS that stopped answering shows as an error within that budget, not after
//! `retry_timeout` (praetor's fencing, `ha::fence`).

use super::model::{Cluster, Leader, Version};
use super::{Dcs, DcsError};
use crate::metrics::AgentMetrics;
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Measures the calls of the wrapped store.
pub struct TimedDcs {
    inner: Arc<dyn Dcs>,
    metrics: Arc<AgentMetrics>,
    deadline: Option<(watch::Receiver<Option<Instant>>, Duration)>,
}

impl TimedDcs {
    /// Wrap `inner`.
    pub fn wrap(inner: Arc<dyn Dcs>, metrics: Arc<AgentMetrics>) -> Arc<dyn Dcs> {
        Arc::new(TimedDcs { inner, metrics, deadline: None })
    }

    /// Wrap `inner`; while `raised` holds `Some(since)`, a request fails with
    /// [`DcsError::Unavailable`] once it has waited `budget` counted from `since` (or from its own
    /// start, if later).
    pub fn wrap_with_deadline(
        inner: Arc<dyn Dcs>,
        metrics: Arc<AgentMetrics>,
        raised: watch::Receiver<Option<Instant>>,
        budget: Duration,
    ) -> Arc<dyn Dcs> {
        Arc::new(TimedDcs { inner, metrics, deadline: Some((raised, budget)) })
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = Result<T, DcsError>>,
    ) -> Result<T, DcsError> {
        let t = Instant::now();
        let r = match &self.deadline {
            None => f.await,
            Some((raised, budget)) => {
                // The deadline first: with the signal raised and the budget spent (a budget of 0),
                // the request is not even sent, so it cannot take effect and be reported failed.
                tokio::select! {
                    biased;
                    () = cut_short(raised.clone(), t, *budget) => Err(DcsError::Unavailable(format!(
                        "{op}: no answer within {} ms while the primary is at risk of isolation",
                        budget.as_millis()
                    ))),
                    r = f => r,
                }
            }
        };
        self.metrics.record_dcs(op, t.elapsed(), r.is_ok());
        r
    }
}

/// Resolves `budget` after the later of `start` and the moment `raised` went up; never while it
/// stays down (lowering it again lifts the deadline).
async fn cut_short(mut raised: watch::Receiver<Option<Instant>>, start: Instant, budget: Duration) {
    loop {
        let since = *raised.borrow_and_update();
        match since {
            Some(since) => {
                let at = tokio::time::Instant::from_std(since.max(start) + budget);
                tokio::select! {
                    () = tokio::time::sleep_until(at) => return,
                    r = raised.changed() => if r.is_err() {
                        tokio::time::sleep_until(at).await;
                        return;
                    },
                }
            }
            None => {
                if raised.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The deadline applies only while the signal is raised, counted from the later of the raise
    /// and the request's start, and lowering the signal lifts it.
    #[tokio::test]
    async fn requests_are_cut_short_only_while_the_signal_is_raised() {
        let (tx, rx) = watch::channel(None);
        let budget = Duration::from_millis(100);
        let down =
            tokio::time::timeout(Duration::from_millis(600), cut_short(rx.clone(), Instant::now(), budget));
        assert!(down.await.is_err(), "never cut while the signal is down");

        tx.send_replace(Some(Instant::now()));
        let t = Instant::now();
        let up = tokio::time::timeout(Duration::from_secs(5), cut_short(rx.clone(), Instant::now(), budget));
        assert!(up.await.is_ok(), "cut while raised");
        assert!(t.elapsed() >= budget, "{:?}", t.elapsed());

        // Raised, then lowered before the budget is spent: not cut.
        let (tx, rx) = watch::channel(Some(Instant::now()));
        let lower = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send_replace(None);
        };
        let (r, ()) = tokio::join!(
            tokio::time::timeout(Duration::from_millis(600), cut_short(rx, Instant::now(), budget)),
            lower
        );
        assert!(r.is_err(), "the deadline was lifted");
    }
}
