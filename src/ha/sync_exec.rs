//! The I/O side of synchronous replication (PATRONI-COMPAT §6.9): observes the primary, asks the
//! pure policy in [`super::sync`] for the next change, performs it (`/sync` CAS write or a new
//! `synchronous_standby_names` + reload), observes again, until the policy says done or the cycle's
//! time budget is spent. Also the pre-promote ssn, turning sync mode off, releasing this standby
//! before a restart, and the `writes_blocked` status.

use super::runner::Ha;
use super::sync::{
    CurrentSync, Names, PgCaps, QuorumResolver, SyncMember, SyncSettings, SyncStep, SyncTracker, SyncView,
    Transition, Walsender, multisync_step, prepromote_ssn, render_ssn, tags_sync,
};
use crate::config::dynamic::SynchronousMode;
use crate::dcs::model::{Cluster, SyncState, Version};
use crate::postgres::syncrep;
use anyhow::Context;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// What the leader keeps between cycles about synchronous replication.
#[derive(Debug, Default)]
pub(super) struct SyncRuntime {
    /// ssn bookkeeping (last value seen, flush LSN at the change, confirmed walsenders).
    tracker: SyncTracker,
    /// The ssn this agent manages; `None` until it first sets one (or after sync mode was turned
    /// off), in which case [`Ha::ssn_override`] derives the start value.
    managed: Option<String>,
    /// When this node last promoted (quorum changes wait `loop_wait` after it).
    promoted_at: Option<Instant>,
    /// Why commits wait for a synchronous standby now (primary only), for the status.
    pub(super) writes_blocked: Option<String>,
    /// This standby asks the primary to release it (published as `nosync` in its member key).
    pub(super) releasing: Arc<AtomicBool>,
}

/// Member view for the policy.
fn sync_members(c: &Cluster) -> Vec<SyncMember> {
    c.members
        .iter()
        .map(|m| {
            let tags = m.data.tags.clone().unwrap_or_default();
            let (nosync, sync_priority) = tags_sync(&tags);
            SyncMember {
                name: m.name.clone(),
                running: m.data.state == "running",
                nosync,
                sync_priority,
                nofailover: super::failover::tags_nofailover(&tags),
                replicatefrom: tags.get("replicatefrom").and_then(|v| v.as_str()).map(str::to_string),
            }
        })
        .collect()
}

fn walsenders(f: &syncrep::SyncFacts) -> Vec<Walsender> {
    f.walsenders
        .iter()
        .filter(|w| w.state == "streaming")
        .map(|w| Walsender {
            pid: w.pid,
            name: w.application_name.clone(),
            sync_state: w.sync_state.clone(),
            write_lsn: w.write_lsn.map(|l| l.0),
            flush_lsn: w.flush_lsn.map(|l| l.0),
            replay_lsn: w.replay_lsn.map(|l| l.0),
        })
        .collect()
}

fn key_after(leader: &str, standbys: &Names, quorum: u32, version: Version) -> SyncState {
    let list = standbys.to_vec();
    SyncState {
        leader: Some(leader.to_string()),
        quorum,
        sync_standby: (!list.is_empty()).then(|| list.join(",")),
        version: Some(version),
    }
}

impl Ha {
    /// The `synchronous_standby_names` the configuration files carry: the managed value; empty in
    /// synchronous mode before the leader set one (bootstrap must be able to commit); the user's
    /// own value when synchronous mode is off.
    pub(super) fn ssn_override(&self) -> Option<String> {
        match (&self.sync_rt.managed, self.dynamic.synchronous_mode) {
            (Some(v), _) => Some(v.clone()),
            (None, SynchronousMode::Off) => None,
            (None, _) => Some(String::new()),
        }
    }

    /// Before starting a crashed primary again: in strict mode it starts with `*` unless this
    /// agent already manages a value, so that it never acknowledges a commit no standby has.
    pub(super) fn prestart_primary_sync(&mut self) {
        if self.dynamic.synchronous_mode != SynchronousMode::Off
            && self.dynamic.synchronous_mode_strict
            && self.sync_rt.managed.is_none()
        {
            self.sync_rt.managed = Some(super::sync::STAR.into());
            self.rebuild_pg();
        }
    }

    fn sync_settings(&self, server_version: u32) -> SyncSettings {
        let d = &self.dynamic;
        SyncSettings {
            quorum: d.synchronous_mode == SynchronousMode::Quorum,
            strict: d.synchronous_mode_strict,
            node_count: d.synchronous_node_count.clamp(1, u64::from(u32::MAX)) as u32,
            maximum_lag_on_syncnode: d.maximum_lag_on_syncnode,
            caps: PgCaps::of(server_version),
            hold_silent_standby: d.synchronous_mode_strict && d.praetor.strict_sync_failover,
        }
    }

    /// Rewrite the configuration with the current override and reload a running server, then wait
    /// (bounded) until it runs with `expect`.
    async fn apply_ssn(&mut self, expect: Option<&str>) -> anyhow::Result<()> {
        self.rebuild_pg();
        if !self.pg.is_running() {
            return Ok(());
        }
        let role = self.conf_role_current();
        self.pg.reload(&role).await.context("reload with the new synchronous_standby_names")?;
        let Some(expect) = expect else { return Ok(()) };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = self.pg.with_client("show ssn", async |c| syncrep::show_ssn(&c).await).await?;
            if now == expect {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("PostgreSQL still runs with synchronous_standby_names '{now}', not '{expect}'");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn set_ssn(&mut self, value: String) -> anyhow::Result<()> {
        self.sync_rt.managed = Some(value.clone());
        self.apply_ssn(Some(&value)).await
    }

    /// Write `/sync` with CAS; the new key on success, `None` when someone else changed it.
    async fn write_sync_key(
        &self,
        key: &SyncState,
        leader: &str,
        standbys: &Names,
        quorum: u32,
    ) -> anyhow::Result<Option<SyncState>> {
        let v = SyncState::to_json(leader, &standbys.to_vec(), quorum);
        let rt = self.dynamic.retry_timeout_duration();
        match tokio::time::timeout(rt, self.dcs.set_sync_state_value(&v, key.version)).await {
            Ok(Ok(Some(ver))) => Ok(Some(key_after(leader, standbys, quorum, ver))),
            Ok(Ok(None)) => {
                info!("Synchronous replication key updated by someone else.");
                Ok(None)
            }
            Ok(Err(e)) => Err(anyhow::anyhow!(e)).context("write /sync"),
            Err(_) => anyhow::bail!("write /sync: timed out"),
        }
    }

    /// Action `ProcessSyncReplication` (Patroni `process_sync_replication`).
    pub(super) async fn process_sync_replication(&mut self, cluster: Option<&Cluster>) -> anyhow::Result<()> {
        let Some(cluster) = cluster else { return Ok(()) };
        if !self.pg.is_running() {
            return Ok(());
        }
        let quorum = self.dynamic.synchronous_mode == SynchronousMode::Quorum;
        let loop_wait = self.dynamic.loop_wait_duration();
        if quorum && self.sync_rt.promoted_at.is_some_and(|t| t.elapsed() < loop_wait) {
            // Give the standbys a loop to reconnect after the promotion.
            return Ok(());
        }
        let me = self.cfg.name.clone();
        let members = sync_members(cluster);
        let mut key = cluster.sync.clone();
        let deadline = Instant::now() + loop_wait.max(Duration::from_secs(2));
        let mut waited_for_confirmation = false;
        for _ in 0..16 {
            let f = self.pg.with_client("read sync state", async |c| syncrep::facts(&c).await).await?;
            if f.in_recovery {
                return Ok(());
            }
            let (changed, err) = self.sync_rt.tracker.observe_ssn(&f.synchronous_standby_names, f.flush_lsn);
            if let Some(e) = err {
                warn!("{e}");
            }
            if changed
                && let Err(e) = self.pg.with_client("nudge wal", async |c| syncrep::nudge_wal(&c).await).await
            {
                warn!("{e}");
            }
            let settings = self.sync_settings(f.server_version);
            let ws = walsenders(&f);
            let view = SyncView {
                me: &me,
                members: &members,
                walsenders: &ws,
                synchronous_commit: &f.synchronous_commit,
                primary_lsn: f.flush_lsn,
                sync_key: &key,
                settings,
            };
            let cur = self.sync_rt.tracker.current_state(&view);
            let rows: Vec<(String, String)> =
                f.walsenders.iter().map(|w| (w.state.clone(), w.sync_state.clone())).collect();
            self.sync_rt.writes_blocked = super::sync::writes_blocked(&f.synchronous_standby_names, &rows);
            let more = if quorum {
                self.quorum_round(&mut key, &cur, settings).await?
            } else {
                match multisync_step(&me, &key, &cur, &f.synchronous_standby_names, settings) {
                    SyncStep::Done => {
                        // ssn just named new standbys: give them a moment to confirm (Patroni
                        // waits 2 s) so /sync can name them in this cycle.
                        let unconfirmed = !cur.active.minus(&cur.sync_confirmed).is_empty()
                            && changed
                            && !waited_for_confirmation;
                        if unconfirmed {
                            waited_for_confirmation = true;
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        unconfirmed
                    }
                    SyncStep::SetSsn { value, why } => {
                        if value.is_empty() || value == super::sync::STAR {
                            warn!("{why}");
                        } else {
                            info!("{why}");
                        }
                        self.set_ssn(value).await?;
                        true
                    }
                    SyncStep::WriteSync { leader, standbys, quorum, why } => {
                        info!("{why}");
                        match self.write_sync_key(&key, &leader, &standbys, quorum).await? {
                            Some(k) => {
                                key = k;
                                true
                            }
                            None => false,
                        }
                    }
                }
            };
            if !more || Instant::now() > deadline {
                break;
            }
        }
        Ok(())
    }

    /// One pass of the quorum resolver (Patroni `_process_quorum_replication`); `true` to observe
    /// and resolve again.
    async fn quorum_round(
        &mut self,
        key: &mut SyncState,
        cur: &CurrentSync,
        s: SyncSettings,
    ) -> anyhow::Result<bool> {
        let me = self.cfg.name.clone();
        if key.is_empty() {
            info!("Enabled synchronous replication");
            return Ok(match self.write_sync_key(key, &me, &Names::new(), 0).await? {
                Some(k) => {
                    *key = k;
                    true
                }
                None => false,
            });
        }
        let Some(leader) = key.leader.clone() else { return Ok(false) };
        let resolver = QuorumResolver::new(
            &leader,
            key.quorum,
            key.members().iter().collect(),
            cur.numsync,
            cur.sync.clone(),
            cur.sync_confirmed.len() as u32,
            cur.active.clone(),
            s.node_count(),
            &me,
        );
        let transitions = match resolver.transitions() {
            Ok(t) => t,
            Err(e) => {
                warn!("{e}");
                return Ok(false);
            }
        };
        for t in transitions {
            match t {
                Transition::Quorum { leader, num, names } => {
                    info!("Setting leader to {leader}, quorum to {num} of {} ({names})", names.len());
                    match self.write_sync_key(key, &leader, &names, num).await? {
                        Some(k) => *key = k,
                        None => return Ok(false),
                    }
                }
                Transition::Sync { num, names } => {
                    info!("Setting synchronous replication to {num} of {} ({names})", names.len());
                    let num = if num < s.min_sync() {
                        warn!(
                            "Replication factor {} requested, but {num} synchronous standbys available. Commits will be delayed.",
                            s.min_sync() + 1
                        );
                        s.min_sync()
                    } else {
                        num
                    };
                    let value = if num == 0 {
                        render_ssn(&Names::new(), Some(s.min_sync()), true, s.caps)
                    } else {
                        render_ssn(&names, Some(num), true, s.caps)
                    };
                    self.set_ssn(value).await?;
                }
                Transition::Restart => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Before `Promote` in synchronous mode: set the ssn Patroni's
    /// `process_sync_replication_prepromote` sets (strict: `*`), so the new primary never acknowledges
    /// a commit that no synchronous standby has.
    pub(super) async fn prepromote_sync(
        &mut self,
        cluster: Option<&Cluster>,
        server_version: u32,
    ) -> anyhow::Result<()> {
        if self.dynamic.synchronous_mode == SynchronousMode::Off {
            return Ok(());
        }
        let empty = SyncState::default();
        let key = cluster.map(|c| &c.sync).unwrap_or(&empty);
        let value = prepromote_ssn(&self.cfg.name, key, self.sync_settings(server_version));
        self.sync_rt.promoted_at = Some(Instant::now());
        self.sync_rt.tracker = SyncTracker::default();
        info!("Setting synchronous_standby_names to '{value}' before promoting");
        self.set_ssn(value).await
    }

    /// Action `DisableSyncReplication`: delete `/sync` (CAS), then restore the user's own ssn.
    pub(super) async fn disable_sync_replication(&mut self, version: Option<i64>) -> anyhow::Result<()> {
        if self.dcs.delete_sync_state(version.map(Version)).await.context("delete /sync")? {
            info!("Disabled synchronous replication");
        }
        self.restore_user_ssn().await
    }

    /// Forget the managed ssn and reload with the user's own value.
    pub(super) async fn restore_user_ssn(&mut self) -> anyhow::Result<()> {
        self.sync_rt.managed = None;
        self.sync_rt.tracker = SyncTracker::default();
        self.sync_rt.writes_blocked = None;
        self.apply_ssn(None).await
    }

    /// Patroni `while_not_sync_standby`: in synchronous mode a standby first publishes `nosync`,
    /// then waits (up to `2*loop_wait`) until a freshly read cluster no longer shows it as the
    /// current leader's synchronous standby, and returns; the caller restarts or stops PostgreSQL
    /// and then clears [`SyncRuntime::releasing`]. Publishing before looking closes the window in
    /// which the primary could name this node after a check of an older view.
    pub(super) async fn release_sync_standby(&mut self) {
        if self.dynamic.synchronous_mode == SynchronousMode::Off || self.mem.is_leader(self.shared.now()) {
            return;
        }
        let me = self.cfg.name.clone();
        self.sync_rt.releasing.store(true, Ordering::Relaxed);
        let pg = self.last_pg.clone();
        let policy = super::runner::policy(&self.cfg, &self.dynamic);
        let data = self.member_data(&pg, &policy).to_json();
        let rt = self.dynamic.retry_timeout_duration();
        match tokio::time::timeout(rt, self.dcs.touch_member(&data)).await {
            Ok(Ok(_)) => {}
            _ => {
                warn!("failed to publish nosync before the restart; continuing");
                return;
            }
        }
        let deadline = Instant::now() + self.dynamic.loop_wait_duration() * 2;
        let mut asked = false;
        loop {
            match tokio::time::timeout(rt, self.dcs.load_cluster()).await {
                Ok(Ok(c)) => {
                    let leader = c.leader.as_ref().map(|l| l.name.as_str());
                    if !super::sync::is_sync_standby(leader, &c.sync, &me) {
                        if asked {
                            info!("Released from synchronous standby duty");
                        }
                        return;
                    }
                }
                Ok(Err(e)) => {
                    warn!("failed to read the cluster while waiting for release: {e}");
                    return;
                }
                Err(_) => {
                    warn!("failed to read the cluster while waiting for release: timed out");
                    return;
                }
            }
            if !asked {
                info!("Asking the primary to release this node from synchronous standby duty");
                asked = true;
            }
            if Instant::now() >= deadline {
                warn!("the primary did not release this node from /sync in time; continuing");
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stop publishing `nosync` (after the restart or stop it was for).
    pub(super) fn end_sync_release(&self) {
        self.sync_rt.releasing.store(false, Ordering::Relaxed);
    }

    /// Publish `nosync` + `sync_priority: 0` while releasing (Patroni injects these tags).
    pub(super) fn sync_release_tags(&self, tags: &mut serde_json::Map<String, serde_json::Value>) {
        if self.sync_rt.releasing.load(Ordering::Relaxed) {
            tags.insert("nosync".into(), true.into());
            tags.insert("sync_priority".into(), 0.into());
        }
    }
}
