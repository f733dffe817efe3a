//! The I/O side of praetor's partition rules ([`super::fence`]): a task that, while this node is a
//! primary holding the leader key, samples the primary's flush LSN and `pg_stat_replication` every
//! [`SAMPLE_INTERVAL`] on its own connection, feeds the pure [`ConfirmTracker`], publishes the
//! result for the HA loop's snapshot. While no replica confirms the primary's WAL it also probes
//! the DCS itself ([`super::fence::dcs_probe_due`]); when both stay silent
//! ([`super::fence::dcs_lost`]) it raises [`HaShared::at_risk`], which makes the loop's DCS calls
//! fail at once, and wakes the loop, which then fences the primary.

use super::fence::{
    ConfirmRow, ConfirmTracker, DCS_PROBE_TIMEOUT, PartitionPolicy, SAMPLE_INTERVAL, WalConfirmation,
    dcs_lost, dcs_probe_due,
};
use super::runner::{Ha, HaShared};
use super::snapshot::PgState;
use crate::dcs::Dcs;
use crate::postgres::Postgres;
use crate::types::Lsn;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// A sample older than this is not given to the policy (the sampler is stuck).
const FRESH: Duration = Duration::from_secs(2);
/// Bound on connecting and on one sample query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// What the HA loop tells the sampler after each cycle.
#[derive(Clone, Default)]
pub(super) struct SamplerInput {
    /// Sample now: this node runs a primary and holds the key.
    active: bool,
    /// The local server.
    pg: Option<Arc<Postgres>>,
    /// Names of the other members (lower case): only their walsender rows count.
    members: Vec<String>,
    /// The rules' settings.
    policy: PartitionPolicy,
    /// The store to probe, without the loop's deadline (see [`Ha::with_dcs_probe`]); no probe
    /// (and no fence before the loop's own DCS call fails) without it.
    probe: Option<Arc<dyn Dcs>>,
}

/// The sampler's probes of the DCS: when the oldest probe with no successful answer after it was
/// sent, and the probe in flight.
#[derive(Default)]
struct DcsProbe {
    unanswered_since: Option<Instant>,
    in_flight: Option<tokio::task::JoinHandle<bool>>,
}

impl DcsProbe {
    /// Collect a finished probe; start one when `due` and none is in flight; forget everything
    /// when not `due`. Returns how long the DCS has left a probe unanswered.
    async fn step(&mut self, due: bool, dcs: Option<&Arc<dyn Dcs>>) -> Option<Duration> {
        if !due {
            if let Some(t) = self.in_flight.take() {
                t.abort();
            }
            self.unanswered_since = None;
            return None;
        }
        if let Some(t) = self.in_flight.take_if(|t| t.is_finished())
            && t.await.unwrap_or(false)
        {
            self.unanswered_since = None;
        }
        if self.in_flight.is_none()
            && let Some(dcs) = dcs
        {
            let dcs = dcs.clone();
            self.unanswered_since.get_or_insert_with(Instant::now);
            self.in_flight = Some(tokio::spawn(async move {
                matches!(tokio::time::timeout(DCS_PROBE_TIMEOUT, dcs.load_cluster()).await, Ok(Ok(_)))
            }));
        }
        self.unanswered_since.map(|t| t.elapsed())
    }
}

/// One sample: the primary's flush LSN and the member rows of `pg_stat_replication`.
async fn sample(
    client: &tokio_postgres::Client,
    members: &[String],
) -> Result<(u64, Vec<ConfirmRow>), String> {
    let rows = client
        .query(
            "SELECT pg_current_wal_flush_lsn()::text, r.application_name, r.sync_state, \
             greatest(r.write_lsn, r.flush_lsn, r.replay_lsn)::text \
             FROM (SELECT 1) AS one LEFT JOIN pg_stat_replication AS r ON true",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let lsn = |s: Option<String>| s.and_then(|s| s.parse::<Lsn>().ok()).map(|l| l.0);
    let mut primary = 0;
    let mut out = Vec::new();
    for r in rows {
        primary = lsn(r.try_get(0).ok()).unwrap_or(primary);
        let name: Option<String> = r.try_get(1).ok().flatten();
        let Some(name) = name.filter(|n| members.contains(&n.to_lowercase())) else { continue };
        let sync_state: Option<String> = r.try_get(2).ok().flatten();
        out.push(ConfirmRow {
            name,
            lsn: lsn(r.try_get(3).ok().flatten()).unwrap_or(0),
            sync: matches!(sync_state.as_deref(), Some("sync" | "quorum")),
        });
    }
    Ok((primary, out))
}

/// The sampler task; ends when the HA task (the sender) is gone.
async fn run(mut input: watch::Receiver<SamplerInput>, shared: Arc<HaShared>) {
    let mut tracker = ConfirmTracker::default();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut probe = DcsProbe::default();
    let mut risky = false;
    loop {
        let inp = input.borrow_and_update().clone();
        let Some(pg) = inp.pg.clone().filter(|_| inp.active) else {
            tracker = ConfirmTracker::default();
            client = None;
            probe.step(false, None).await;
            if let Ok(mut g) = shared.wal_confirmation.lock() {
                *g = None;
            }
            if risky {
                shared.at_risk.send_replace(None);
                risky = false;
            }
            if input.changed().await.is_err() {
                return;
            }
            continue;
        };
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = tokio::time::timeout(QUERY_TIMEOUT, pg.connect()).await.ok().and_then(Result::ok);
        }
        if let Some(c) = &client {
            match tokio::time::timeout(QUERY_TIMEOUT, sample(c, &inp.members)).await {
                Ok(Ok((primary_lsn, rows))) => {
                    let now = shared.now();
                    let conf = tracker.observe(now, primary_lsn, &rows);
                    if let Ok(mut g) = shared.wal_confirmation.lock() {
                        *g = Some((now, conf));
                    }
                    let others = !inp.members.is_empty();
                    let due = dcs_probe_due(&inp.policy, &conf, others);
                    let unanswered = probe.step(due, inp.probe.as_ref()).await;
                    let risk = dcs_lost(&inp.policy, &conf, others, unanswered);
                    if risk && !risky {
                        warn!(
                            "no replica confirmed WAL for {} ms and the DCS left a probe unanswered for {} ms: \
                             the primary looks isolated; DCS calls fail at once now",
                            conf.replicas_silent_for.as_millis(),
                            unanswered.unwrap_or_default().as_millis()
                        );
                        shared.at_risk.send_replace(Some(Instant::now()));
                        shared.wake.notify_one();
                    } else if !risk && risky {
                        info!("a replica confirms WAL or the DCS answers again");
                        shared.at_risk.send_replace(None);
                    }
                    risky = risk;
                }
                Ok(Err(e)) => {
                    debug!("WAL confirmation sample failed: {e}");
                    client = None;
                }
                Err(_) => {
                    debug!("WAL confirmation sample timed out");
                    client = None;
                }
            }
        }
        if client.is_none() {
            // No sample, no verdict: without fresh replica confirmations the fence has no grounds
            // (the loop's rule also wants a fresh sample), and a raised signal would keep failing
            // every DCS call of the loop with nothing here to lower it when the DCS answers.
            probe.step(false, None).await;
            if risky {
                info!("no WAL confirmation sample: DCS calls get their usual time again");
                shared.at_risk.send_replace(None);
                risky = false;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(SAMPLE_INTERVAL) => {}
            r = input.changed() => if r.is_err() { return },
        }
    }
}

impl Ha {
    /// Start the sampler (once; needs the runtime).
    pub(super) fn start_sampler(&mut self) {
        if self.sampler.is_some() {
            return;
        }
        let (tx, rx) = watch::channel(SamplerInput::default());
        tokio::spawn(run(rx, self.shared.clone()));
        self.sampler = Some(tx);
    }

    /// After a cycle: tell the sampler whether to sample and what counts.
    pub(super) fn update_sampler(&self, pg: &PgState, policy: PartitionPolicy) {
        let Some(tx) = &self.sampler else { return };
        let active = self.mem.is_leader(self.shared.now())
            && pg.is_primary()
            && (policy.fence_isolated_primary || policy.strict_sync_failover);
        let me = self.cfg.name.to_lowercase();
        let members = self
            .last_cluster
            .as_ref()
            .map(|c| c.members.iter().map(|m| m.name.to_lowercase()).filter(|n| *n != me).collect())
            .unwrap_or_default();
        let next = SamplerInput {
            active,
            pg: Some(self.pg.clone()),
            members,
            policy,
            probe: self.dcs_probe.clone(),
        };
        tx.send_if_modified(|cur| {
            let same = cur.active == next.active
                && cur.members == next.members
                && cur.policy == next.policy
                && cur.pg.as_ref().is_some_and(|p| Arc::ptr_eq(p, &self.pg));
            if !same {
                *cur = next;
            }
            !same
        });
    }

    /// The sampler's conclusion for this cycle's snapshot: only for a running primary, and only
    /// when the last sample is fresh.
    pub(super) fn wal_confirmation(&self, pg: &PgState) -> Option<WalConfirmation> {
        if !pg.is_primary() {
            return None;
        }
        let (at, c) = (*self.shared.wal_confirmation.lock().ok()?)?;
        (self.shared.now().since(at) <= FRESH).then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::DcsParams;
    use crate::dcs::memory::MemoryStore;

    fn client(store: &MemoryStore) -> Arc<dyn Dcs> {
        Arc::new(store.client(DcsParams {
            namespace: "/service".into(),
            scope: "c".into(),
            name: "pg0".into(),
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(10),
        }))
    }

    /// Let the probe task finish.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// The DCS probe counts from the first unanswered probe and forgets it once the DCS answers
    /// or the replicas confirm again (not due).
    #[tokio::test]
    async fn dcs_probe_counts_unanswered_time_until_the_store_answers() {
        let store = MemoryStore::new();
        let dcs = client(&store);
        let mut p = DcsProbe::default();
        assert_eq!(p.step(false, Some(&dcs)).await, None, "not due: no probe");
        store.set_offline(true);
        let first = p.step(true, Some(&dcs)).await.expect("a probe is out");
        settle().await;
        let later = p.step(true, Some(&dcs)).await.expect("still unanswered");
        assert!(later > first, "{later:?} > {first:?}: a failed probe keeps counting from the first");
        store.set_offline(false);
        settle().await;
        // The failed probe is collected (still unanswered), a new one goes out and succeeds.
        assert!(p.step(true, Some(&dcs)).await.is_some());
        settle().await;
        let answered = p.step(true, Some(&dcs)).await.expect("the next probe is out");
        assert!(answered < Duration::from_millis(20), "counting restarted after the answer: {answered:?}");
        store.set_offline(true);
        p.step(true, Some(&dcs)).await;
        assert_eq!(p.step(false, Some(&dcs)).await, None, "replicas confirm again: forgotten");
        assert_eq!(p.step(true, None).await, None, "no store to probe: no verdict");
    }
}
