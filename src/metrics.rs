//! praetor's own measurements, shared by the HA task, the DCS wrapper and the callback runner, and
//! rendered by `GET /metrics` next to Patroni's metrics. Lock-free counters and fixed-bucket
//! histograms (atomics); the few labelled values sit behind a short `std::sync::Mutex`.
//!
//! Owns: numbers only. Uses nothing else in the crate.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the histogram buckets.
pub const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A Prometheus histogram of durations with [`BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative count per bucket; the last slot is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum in microseconds.
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS.iter().position(|b| s <= *b).unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Append the exposition lines of this histogram (`name_bucket`, `_sum`, `_count`) with `labels`
    /// (already formatted, without braces, e.g. `scope="a",name="b"`).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write;
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cum}");
        }
        cum += self.buckets[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cum}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cum}");
    }
}

/// The DCS operations measured (the `Dcs` trait's verbs except the `watch` long poll).
pub const DCS_OPS: [&str; 18] = [
    "load_cluster",
    "attempt_to_acquire_leader",
    "update_leader",
    "take_leader",
    "delete_leader",
    "touch_member",
    "set_config_value",
    "set_failover_value",
    "set_history_value",
    "set_sync_state_value",
    "delete_sync_state",
    "write_status",
    "write_failsafe",
    "initialize",
    "cancel_initialization",
    "delete_cluster",
    "set_timing",
    "close",
];

/// Latency and errors of one DCS operation.
#[derive(Debug, Default)]
pub struct DcsOp {
    /// Latency of every call (also failed ones).
    pub latency: Histogram,
    /// Calls that returned an error.
    pub errors: AtomicU64,
}

/// Everything praetor measures about itself.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    /// Duration of one HA cycle (DCS read to status published).
    pub cycle: Histogram,
    /// Per [`DCS_OPS`] entry, same order.
    pub dcs: [DcsOp; DCS_OPS.len()],
    /// Leader races this node won (acquired the key).
    pub races_won: AtomicU64,
    /// Leader races lost (someone else got the key first).
    pub races_lost: AtomicU64,
    /// Callbacks that failed to start or exited non-zero.
    pub callback_failures: AtomicU64,
    /// HA cycles run.
    pub cycles: AtomicU64,
    /// The last cycle's decision, in Patroni's words.
    pub last_decision: Mutex<String>,
    /// Seconds left on this node's leader lease (`None`: not the leader), as of the last cycle.
    pub lease_left: Mutex<Option<f64>>,
}

impl AgentMetrics {
    /// The entry for DCS operation `op` (one of [`DCS_OPS`]).
    pub fn dcs_op(&self, op: &str) -> Option<&DcsOp> {
        DCS_OPS.iter().position(|o| *o == op).map(|i| &self.dcs[i])
    }

    /// Record one DCS call.
    pub fn record_dcs(&self, op: &str, took: Duration, ok: bool) {
        if let Some(o) = self.dcs_op(op) {
            o.latency.observe(took);
            if !ok {
                o.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Record the end of one HA cycle.
    pub fn record_cycle(&self, took: Duration, decision: &str, lease_left: Option<Duration>) {
        self.cycle.observe(took);
        self.cycles.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut d) = self.last_decision.lock() {
            decision.clone_into(&mut d);
        }
        if let Ok(mut l) = self.lease_left.lock() {
            *l = lease_left.map(|d| d.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_the_exposition() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"1\"");
        assert!(out.contains("x_bucket{a=\"1\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"1\",le=\"0.05\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"1\",le=\"30\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"1\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"1\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{a=\"1\"} 60.033\n"), "{out}");
    }

    #[test]
    fn dcs_calls_are_recorded_per_operation() {
        let m = AgentMetrics::default();
        m.record_dcs("touch_member", Duration::from_millis(2), true);
        m.record_dcs("touch_member", Duration::from_millis(2), false);
        m.record_dcs("no_such_op", Duration::from_millis(2), false);
        let o = m.dcs_op("touch_member").expect("op");
        assert_eq!(o.latency.count(), 2);
        assert_eq!(o.errors.load(Ordering::Relaxed), 1);
        assert_eq!(m.dcs_op("load_cluster").map(|o| o.latency.count()), Some(0));
    }
}
