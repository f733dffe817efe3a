//! The executor: performs the [`Step`]s the policy asks for (peer calls, DCS writes, the rewind
//! check) and the [`Action`]s it decides, starting long actions as tracked tasks.
//!
//! Owns: the mapping from the policy's vocabulary to DCS, PostgreSQL, watchdog and callback calls.

use super::action::{Action, DemoteMode, FollowTarget, PeerTarget, Step};
use super::failover::failover_action_name;
use super::runner::{Ha, Running, TaskDone, long_kind};
use super::snapshot::{
    Finished, HostPort, LongAction, LongActionKind, PeerStatus, PgState, RewindCheck, StepResults,
    WriteOutcome,
};
use crate::callbacks::{CallbackAction, Callbacks, run_script};
use crate::dcs::model::{Cluster, Failover, History, HistoryLine, Status, SyncState, Version};
use crate::postgres::replica::CloneSource;
use crate::postgres::rewind::RewindOutcome;
use crate::postgres::{ConfRole, Postgres, StopMode, Upstream};
use crate::types::Role;
use anyhow::{Context, anyhow};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// `GET /patroni` of each target in parallel (the client carries the timeout); a member that does
/// not answer with JSON is unreachable.
pub(super) async fn fetch_peer_statuses(
    http: &reqwest::Client,
    targets: &[PeerTarget],
) -> BTreeMap<String, PeerStatus> {
    let calls = targets.iter().map(|t| {
        let http = http.clone();
        let t = t.clone();
        async move {
            let st = match http.get(&t.api_url).send().await {
                Ok(r) => match r.json::<serde_json::Value>().await {
                    Ok(v) => PeerStatus::from_patroni_json(&v),
                    Err(_) => PeerStatus::unreachable(),
                },
                Err(e) => {
                    info!("Request failed to {}: GET {} ({e})", t.name, t.api_url);
                    PeerStatus::unreachable()
                }
            };
            (t.name, st)
        }
    });
    futures::future::join_all(calls).await.into_iter().collect()
}

fn outcome(r: Result<Result<bool, crate::dcs::DcsError>, tokio::time::error::Elapsed>) -> WriteOutcome {
    match r {
        Ok(Ok(true)) => WriteOutcome::Done,
        Ok(Ok(false)) => WriteOutcome::Refused,
        Ok(Err(e)) => {
            warn!("DCS write failed: {e}");
            WriteOutcome::DcsError
        }
        Err(_) => {
            warn!("DCS write timed out");
            WriteOutcome::DcsError
        }
    }
}

/// Everything a task needs, cloned out of the loop.
#[derive(Clone)]
struct TaskCx {
    pg: Arc<Postgres>,
    rs: Arc<Mutex<super::runner::RoleState>>,
    callbacks: Callbacks,
    watchdog: Arc<Mutex<crate::watchdog::Watchdog>>,
    pre_promote: Option<String>,
    paused: bool,
    /// The agent has seen PostgreSQL run (Patroni `cb_called`, [`super::decide::Memory`]).
    cb_called: bool,
    status_tx: tokio::sync::watch::Sender<Arc<crate::api::status::NodeStatus>>,
}

impl TaskCx {
    /// Publish at once that PostgreSQL is stopped, so that peers asking `GET /patroni` during a
    /// leader race no longer see a running primary here (Patroni's status has no `xlog` then).
    fn mark_stopped(&self) {
        mark_stopped(&self.status_tx);
    }

    fn set_label(&self, label: Option<&str>) {
        self.rs.lock().expect("role lock").label = label.map(str::to_string);
    }

    /// Set the role; `true` when it changed.
    fn set_role(&self, role: Role) -> bool {
        let mut g = self.rs.lock().expect("role lock");
        let changed = g.role != role;
        g.role = role;
        changed
    }

    /// Take `role` as PostgreSQL's start begins, as Patroni's `Postgresql.start` does before it
    /// launches the postmaster; returns the role before. A cycle running while the postmaster
    /// comes up then judges the node by the role it is starting in: a former primary started as a
    /// replica must not look like a primary that lost its lock (`handle_long_action_in_progress`
    /// would demote it and cancel the start).
    fn begin_start(&self, role: &Role) -> Role {
        let mut g = self.rs.lock().expect("role lock");
        std::mem::replace(&mut g.role, role.clone())
    }

    /// Start PostgreSQL for `conf` as `role`, firing `on_role_change` when the role changed and the
    /// agent had seen PostgreSQL run, else `on_start` (Patroni `follow`: `change_role` needs
    /// `cb_called`, so a new agent starting a former primary as a replica fires `on_start`).
    async fn start(&self, conf: &ConfRole, role: Role) -> anyhow::Result<()> {
        let before = self.begin_start(&role);
        self.finish_start(conf, role, before).await
    }

    /// [`TaskCx::start`] once [`TaskCx::begin_start`] took the role (`before`: the role it
    /// replaced, which picks the callback).
    async fn finish_start(&self, conf: &ConfRole, role: Role, before: Role) -> anyhow::Result<()> {
        self.set_label(Some("starting"));
        let r = self.pg.start(conf).await;
        self.set_label(None);
        r.context("start postgres")?;
        self.rs.lock().expect("role lock").started_by_us = true;
        let changed = self.cb_called && before != role && before != Role::Uninitialized;
        self.callbacks.fire(
            if changed { CallbackAction::OnRoleChange } else { CallbackAction::OnStart },
            role.as_str(),
        );
        Ok(())
    }
}

impl Ha {
    fn task_cx(&self) -> TaskCx {
        TaskCx {
            pg: self.pg.clone(),
            rs: self.rs.clone(),
            callbacks: self.callbacks.clone(),
            watchdog: self.watchdog.clone(),
            pre_promote: self.cfg.postgresql.pre_promote.clone(),
            paused: self.dynamic.is_paused(),
            cb_called: self.mem.cb_called,
            status_tx: self.status_tx.clone(),
        }
    }

    fn spawn<F, Fut>(&mut self, kind: LongActionKind, f: F)
    where
        F: FnOnce(TaskCx, CancellationToken) -> Fut,
        Fut: std::future::Future<Output = Finished> + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let fut = f(self.task_cx(), cancel.clone());
        let tx = self.done_tx.clone();
        let handle = tokio::spawn(async move {
            let finished = fut.await;
            let _ = tx.send(TaskDone { finished });
        });
        self.task =
            Some(Running { action: LongAction { kind, started_at: self.shared.now() }, cancel, handle });
    }

    /// Cancel the task in flight (if any) and wait for it (bounded).
    pub(super) async fn cancel_task(&mut self) {
        if let Some(t) = self.task.take() {
            info!("cancelling {}", t.action.kind);
            t.cancel.cancel();
            let mut h = t.handle;
            if tokio::time::timeout(Duration::from_secs(10), &mut h).await.is_err() {
                h.abort();
            }
            while self.done_rx.try_recv().is_ok() {}
        }
    }

    /// Start the long action `restart`; `reply` (a `POST /restart` waiting) gets Patroni's answer
    /// when it is done.
    pub(super) fn spawn_restart(
        &mut self,
        reply: Option<tokio::sync::oneshot::Sender<super::command::Reply>>,
    ) {
        let conf = self.conf_role_current();
        let releasing = self.sync_rt.releasing.clone();
        self.spawn(LongActionKind::Restart, |cx, _| async move {
            cx.set_label(Some("restarting"));
            let r = cx.pg.restart(StopMode::Fast, &conf).await;
            releasing.store(false, std::sync::atomic::Ordering::Relaxed);
            cx.set_label(None);
            let answer = match &r {
                Ok(crate::postgres::StartOutcome::StillStarting { .. }) => {
                    (503, "postgres is still starting")
                }
                Ok(_) => (200, "restarted successfully"),
                Err(_) => (503, "restart failed"),
            };
            match r {
                Ok(_) => {
                    let role = cx.rs.lock().expect("role lock").role.clone();
                    cx.callbacks.fire(CallbackAction::OnRestart, role.as_str());
                }
                Err(e) => warn!("restart failed: {e}"),
            }
            if let Some(tx) = reply {
                let _ = tx.send(super::command::Reply::text(answer.0, answer.1));
            }
            Finished::Other(LongActionKind::Restart)
        });
    }

    fn slot_for(&self, target: &FollowTarget, cluster: Option<&Cluster>) -> Option<String> {
        let leader = cluster.and_then(|c| c.leader.as_ref()).map(|l| l.name.as_str());
        (self.dynamic.postgresql.use_slots && leader == Some(target.name.as_str()))
            .then(|| crate::types::slot_name_from_member_name(&self.cfg.name))
    }

    fn replica_conf(&self, upstream: Option<&FollowTarget>, cluster: Option<&Cluster>) -> ConfRole {
        let up = upstream.and_then(|t| {
            let hp = HostPort::from_conn_url(t.conn_url.as_deref()?)?;
            Some(Upstream { host: hp.host, port: hp.port, slot: self.slot_for(t, cluster) })
        });
        ConfRole::Replica { upstream: up }
    }

    /// The configuration role of the running server: primary, or replica of the current upstream.
    pub(super) fn conf_role_current(&self) -> ConfRole {
        if self.last_pg.is_in_recovery == Some(false) {
            return ConfRole::Primary;
        }
        let cluster = self.last_cluster.as_ref();
        let target = cluster.and_then(|c| c.leader.as_ref()).filter(|l| l.name != self.cfg.name).map(|l| {
            FollowTarget {
                name: l.name.clone(),
                conn_url: cluster.and_then(|c| c.member(&l.name)).map(|m| m.data.conn_url.clone()),
            }
        });
        self.replica_conf(target.as_ref(), cluster)
    }

    fn leader_follow_target(&self, cluster: Option<&Cluster>) -> Option<FollowTarget> {
        let c = cluster?;
        let l = c.leader.as_ref().filter(|l| l.name != self.cfg.name)?;
        Some(FollowTarget {
            name: l.name.clone(),
            conn_url: c.member(&l.name).map(|m| m.data.conn_url.clone()),
        })
    }

    /// Perform one step and store its result.
    pub(super) async fn perform_step(
        &mut self,
        step: Step,
        cluster: Option<&Cluster>,
        pg: &PgState,
        steps: &mut StepResults,
    ) {
        let rt = self.dynamic.retry_timeout_duration();
        match step {
            Step::FetchPeers(targets) => steps.peers = Some(self.fetch_peers(&targets).await),
            Step::PostFailsafe(targets) => steps.failsafe_accepted = Some(self.post_failsafe(&targets).await),
            Step::CheckRewind(target) => {
                let r = match target.conn_url.as_deref().and_then(CloneSource::from_conn_url) {
                    None => RewindCheck::Unknown,
                    Some(src) => match self.pg.rewind_needed(&src).await {
                        Ok(Some(true)) => RewindCheck::Needed,
                        Ok(Some(false)) => RewindCheck::NotNeeded,
                        Ok(None) => RewindCheck::Unknown,
                        Err(e) => {
                            warn!("rewind check against {} failed: {e}", target.name);
                            RewindCheck::LeaderUnavailable
                        }
                    },
                };
                steps.rewind_check = Some(r);
            }
            Step::UpdateLock { update_status } => {
                let leader = cluster.and_then(|c| c.leader.clone());
                let o = outcome(tokio::time::timeout(rt, self.dcs.update_leader(leader.as_ref())).await);
                if o == WriteOutcome::Done {
                    self.watchdog.lock().expect("watchdog lock").keepalive();
                    if update_status {
                        self.write_status(cluster, pg).await;
                        self.write_failsafe(cluster).await;
                    }
                }
                steps.lock_update = Some(o);
            }
            Step::AcquireLock => {
                let o = outcome(tokio::time::timeout(rt, self.dcs.attempt_to_acquire_leader()).await);
                let m = &self.shared.metrics;
                match o {
                    WriteOutcome::Done => {
                        info!("acquired the leader lock");
                        m.races_won.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    WriteOutcome::Refused => {
                        m.races_lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => {}
                }
                steps.lock_acquire = Some(o);
            }
            Step::RaceInitialize => {
                steps.initialize_race =
                    Some(outcome(tokio::time::timeout(rt, self.dcs.initialize(true, "")).await));
            }
            Step::WriteSyncPrePromote { version } => {
                let v = SyncState::to_json(&self.cfg.name, &[], 0);
                let r =
                    tokio::time::timeout(rt, self.dcs.set_sync_state_value(&v, version.map(Version))).await;
                steps.sync_prepromote = Some(match r {
                    Ok(Ok(Some(_))) => WriteOutcome::Done,
                    Ok(Ok(None)) => WriteOutcome::Refused,
                    _ => WriteOutcome::DcsError,
                });
            }
        }
    }

    async fn fetch_peers(&self, targets: &[PeerTarget]) -> BTreeMap<String, PeerStatus> {
        fetch_peer_statuses(&self.http, targets).await
    }

    async fn post_failsafe(&self, targets: &[PeerTarget]) -> bool {
        let body = serde_json::json!({
            "name": self.cfg.name,
            "conn_url": format!("postgres://{}/postgres", self.cfg.postgresql.connect_address),
            "api_url": format!(
                "{}://{}/patroni",
                if self.cfg.restapi.certfile.is_some() { "https" } else { "http" },
                self.cfg.restapi.connect_address
            ),
            "slots": serde_json::Map::new(),
        });
        let calls = targets.iter().map(|t| {
            let http = self.http.clone();
            let url = t.api_url.trim_end_matches("/patroni").to_string() + "/failsafe";
            let body = body.clone();
            async move {
                for _ in 0..2 {
                    match http.post(&url).json(&body).send().await {
                        Ok(r) if r.status().as_u16() == 200 => return true,
                        Ok(r) => {
                            info!("POST {url} answered {}", r.status());
                            return false;
                        }
                        Err(e) => info!("Request failed: POST {url} ({e})"),
                    }
                }
                false
            }
        });
        futures::future::join_all(calls).await.into_iter().all(|ok| ok)
    }

    fn member_slots_ttl(&self) -> Duration {
        Duration::from_secs(self.dynamic.member_slots_ttl.max(0) as u64)
    }

    async fn write_status(&mut self, cluster: Option<&Cluster>, pg: &PgState) {
        let optime = pg.wal_position();
        let mut st = Status { optime: Some(optime), slots: None, retain_slots: None };
        let mut absent = Vec::new();
        if self.dynamic.postgresql.use_slots
            && let Some(c) = cluster
        {
            let mut names: Vec<String> =
                c.members.iter().map(|m| crate::types::slot_name_from_member_name(&m.name)).collect();
            let me = crate::types::slot_name_from_member_name(&self.cfg.name);
            if !names.contains(&me) {
                names.push(me);
            }
            names.sort();
            st.slots = Some(names.iter().map(|n| (n.clone(), optime)).collect());
            let dcs_retain = c.status.retain_slots.clone().unwrap_or_default();
            // Patroni retains the slots of members that stream (not `nostream`), and its own.
            let me_name = self.cfg.name.as_str();
            let streaming: Vec<String> = c
                .members
                .iter()
                .filter(|m| m.name == me_name || !m.data.tag_bool("nostream"))
                .map(|m| m.name.clone())
                .chain(std::iter::once(me_name.to_string()))
                .collect();
            let r = self.slot_retention.observe(
                std::time::Instant::now(),
                &streaming,
                &dcs_retain,
                self.member_slots_ttl(),
            );
            for n in &r.expired {
                info!(
                    "Replication slot '{n}' for absent cluster member is expired after {} sec.",
                    self.member_slots_ttl().as_secs()
                );
            }
            absent = r.absent;
            // Patroni writes null, not [], when nothing is retained.
            st.retain_slots = (!r.retain_slots.is_empty()).then_some(r.retain_slots);
        }
        let v = st.to_json();
        if self.last_status_written.as_deref() != Some(v.as_str()) {
            match self.dcs.write_status(&v).await {
                Ok(_) => self.last_status_written = Some(v),
                Err(e) => warn!("failed to write /status: {e}"),
            }
        }
        // Keep the member slots on the primary.
        if pg.is_primary()
            && let Some(c) = cluster
        {
            let inputs = crate::postgres::slots::SlotInputs {
                me: self.cfg.name.clone(),
                use_slots: self.dynamic.postgresql.use_slots,
                present_members: c.members.iter().map(|m| m.name.clone()).collect(),
                absent_members: absent,
                member_slots_ttl: self.member_slots_ttl(),
                permanent: Vec::new(),
                ignore: Vec::new(),
                existing: Vec::new(),
            };
            if let Err(e) = sync_member_slots(&self.pg, inputs).await {
                warn!("failed to sync replication slots: {e}");
            }
        }
    }

    async fn write_failsafe(&mut self, cluster: Option<&Cluster>) {
        if !self.dynamic.failsafe_mode {
            return;
        }
        let Some(c) = cluster else { return };
        let mut m = serde_json::Map::new();
        for mem in &c.members {
            if !mem.data.api_url.is_empty() {
                m.insert(mem.name.clone(), mem.data.api_url.clone().into());
            }
        }
        m.insert(
            self.cfg.name.clone(),
            format!("http://{}/patroni", self.cfg.restapi.connect_address).into(),
        );
        let v = serde_json::Value::Object(m).to_string();
        if self.last_failsafe_written.as_deref() != Some(v.as_str()) {
            match self.dcs.write_failsafe(&v).await {
                Ok(_) => self.last_failsafe_written = Some(v),
                Err(e) => warn!("failed to write /failsafe: {e}"),
            }
        }
    }

    async fn write_history(&mut self, cluster: Option<&Cluster>, pg: &PgState) -> anyhow::Result<()> {
        let tl = pg.timeline.unwrap_or(1);
        let lines = if tl <= 1 {
            Vec::new()
        } else {
            let path = self.pg.data_dir().join(format!("pg_wal/{tl:08X}.history"));
            let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
            let mtime = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map(chrono::DateTime::<chrono::Utc>::from)
                .unwrap_or_else(|_| chrono::Utc::now());
            let old: BTreeMap<u64, HistoryLine> = cluster
                .and_then(|c| c.history.as_ref())
                .map(|h| h.lines.iter().map(|l| (l.timeline, l.clone())).collect())
                .unwrap_or_default();
            let entries = crate::postgres::rewind::parse_history(&text);
            let n = entries.len();
            let mut out: Vec<HistoryLine> = entries
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    let t = u64::from(e.parent_timeline);
                    match old.get(&t) {
                        Some(o) if i + 1 < n => {
                            HistoryLine { lsn: e.switchpoint.0, reason: e.reason, ..o.clone() }
                        }
                        _ => HistoryLine {
                            timeline: t,
                            lsn: e.switchpoint.0,
                            reason: e.reason,
                            timestamp: (i + 1 == n)
                                .then(|| mtime.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)),
                            new_leader: (i + 1 == n).then(|| self.cfg.name.clone()),
                        },
                    }
                })
                .collect();
            let max = self.dynamic.max_timelines_history;
            if max > 0 && out.len() > max as usize {
                out.drain(..out.len() - max as usize);
            }
            out
        };
        self.dcs.set_history_value(&History::to_json(&lines)).await.context("write /history")?;
        Ok(())
    }

    /// Execute one action.
    pub(super) async fn execute(
        &mut self,
        a: Action,
        cluster: Option<&Cluster>,
        pg: &PgState,
    ) -> anyhow::Result<()> {
        let failover_action = failover_action_name(cluster.and_then(|c| c.failover.as_ref())).to_string();
        let kind = long_kind(&a, &failover_action);
        if kind.is_some() && self.task.is_some() {
            return Err(anyhow!("another long action is in progress"));
        }
        match a {
            Action::ReleaseLock { last_lsn } => {
                if let Some(l) = last_lsn {
                    let st = Status { optime: Some(l.0), ..Default::default() };
                    self.dcs.write_status(&st.to_json()).await.context("write /status")?;
                }
                let leader = cluster.and_then(|c| c.leader.clone());
                self.dcs.delete_leader(leader.as_ref()).await.context("delete the leader key")?;
                info!("Leader key released");
            }
            Action::TakeLock => {
                let wd = self.watchdog.lock().expect("watchdog lock").activate();
                if let Err(e) = wd {
                    return Err(anyhow!(e));
                }
                self.dcs.take_leader().await.context("take the leader key")?;
            }
            Action::WriteInitialize { create_new, sysid } => {
                self.dcs.initialize(create_new, &sysid).await.context("write /initialize")?;
            }
            Action::CancelInitialize => {
                let _ = self.dcs.cancel_initialization().await;
                let _ = self.pg.stop(StopMode::Immediate).await;
                self.pg.remove_data_directory().context("remove the data directory")?;
            }
            Action::WriteConfig => {
                self.dcs
                    .set_config_value(&self.cfg.bootstrap.dcs.to_json(), None)
                    .await
                    .context("write /config")?;
            }
            Action::ClearFailoverKey { version } => {
                self.dcs.set_failover_value("{}", version.map(Version)).await.context("clear /failover")?;
            }
            Action::WriteFailoverKey { leader, member } => {
                let f = Failover {
                    leader: Some(leader),
                    member: Some(member),
                    scheduled_at: None,
                    version: None,
                };
                self.dcs.set_failover_value(&f.to_json(), None).await.context("write /failover")?;
            }
            Action::KeepFailoverCandidate { candidate, scheduled_at, version } => {
                let f = Failover { leader: None, member: Some(candidate), scheduled_at, version: None };
                self.dcs
                    .set_failover_value(&f.to_json(), version.map(Version))
                    .await
                    .context("write /failover")?;
            }
            Action::WriteHistory => self.write_history(cluster, pg).await?,
            Action::ProcessSyncReplication => self.process_sync_replication(cluster).await?,
            Action::DisableSyncReplication { version } => self.disable_sync_replication(version).await?,
            Action::Promote => {
                self.prepromote_sync(cluster, pg.server_version.unwrap_or(0)).await?;
                self.rs.lock().expect("role lock").role = Role::Promoted;
                self.spawn(LongActionKind::Promote, |cx, _cancel| async move {
                    if !cx.paused
                        && let Err(e) = cx.watchdog.lock().expect("watchdog lock").activate()
                    {
                        warn!("{e}");
                        cx.set_role(Role::Replica);
                        return Finished::Promote { pre_promote_ok: false };
                    }
                    if !run_script("pre_promote", cx.pre_promote.as_deref(), Duration::from_secs(300)).await {
                        cx.set_role(Role::Replica);
                        return Finished::Promote { pre_promote_ok: false };
                    }
                    match cx.pg.promote().await {
                        Ok(()) => {
                            cx.set_role(Role::Primary);
                            cx.callbacks.fire(CallbackAction::OnRoleChange, "primary");
                            if let Err(e) = cx.pg.checkpoint().await {
                                warn!("post-promote checkpoint failed: {e}");
                            }
                        }
                        Err(e) => warn!("promote failed: {e}"),
                    }
                    Finished::Promote { pre_promote_ok: true }
                });
            }
            Action::Demote(mode) => self.demote(mode, cluster, kind).await?,
            Action::StartAsPrimary { .. } => {
                self.prestart_primary_sync();
                let kind = kind.expect("StartAsPrimary is long");
                // The role is taken now, not when the task first runs: the next cycle may come first.
                let before = self.task_cx().begin_start(&Role::Primary);
                self.spawn(kind.clone(), |cx, _| async move {
                    if let Err(e) = cx.finish_start(&ConfRole::Primary, Role::Primary, before).await {
                        warn!("{e:#}");
                    }
                    Finished::Other(kind)
                });
            }
            Action::StartAsReplica { upstream, .. } => {
                let conf = self.replica_conf(upstream.as_ref(), cluster);
                let kind = kind.expect("StartAsReplica is long");
                let before = self.task_cx().begin_start(&Role::Replica);
                self.spawn(kind.clone(), |cx, _| async move {
                    if let Err(e) = cx.finish_start(&conf, Role::Replica, before).await {
                        warn!("{e:#}");
                    }
                    Finished::Other(kind)
                });
            }
            Action::Follow { upstream } => {
                let conf = self.replica_conf(upstream.as_ref(), cluster);
                let in_recovery = self.pg.data_dir().join("standby.signal").exists();
                if self.pg.is_running() && in_recovery && pg.is_in_recovery != Some(false) {
                    self.pg.reload(&conf).await.context("reload with the new primary_conninfo")?;
                    let changed = self.task_cx().set_role(Role::Replica);
                    if changed {
                        self.callbacks.fire(CallbackAction::OnRoleChange, "replica");
                    }
                } else {
                    let kind = LongActionKind::ChangePrimaryConninfo;
                    self.spawn(kind.clone(), |cx, _| async move {
                        if let Err(e) = cx.pg.stop(StopMode::Fast).await {
                            warn!("stop before follow failed: {e}");
                        }
                        if let Err(e) = cx.start(&conf, Role::Replica).await {
                            warn!("{e:#}");
                        }
                        Finished::Other(kind)
                    });
                }
            }
            Action::Rewind { from } => {
                let src = from.conn_url.as_deref().and_then(CloneSource::from_conn_url);
                let conf = self.replica_conf(Some(&from), cluster);
                let kind = kind.expect("Rewind is long");
                self.spawn(kind, |cx, cancel| async move {
                    let Some(src) = src else {
                        return Finished::Rewind { ok: false };
                    };
                    match cx.pg.rewind(&src, &cancel).await {
                        Ok(RewindOutcome::Rewound) => {
                            // Start at once following the leader (Patroni starts after rewind).
                            if let Err(e) = cx.start(&conf, Role::Replica).await {
                                warn!("{e:#}");
                            }
                            Finished::Rewind { ok: true }
                        }
                        Ok(RewindOutcome::WaitingForCheckpoint(why)) => {
                            info!("{why}");
                            Finished::Other(LongActionKind::Rewind(src.host))
                        }
                        Ok(RewindOutcome::DataDirectoryRemoved) | Ok(RewindOutcome::Failed(_)) => {
                            Finished::Rewind { ok: false }
                        }
                        Err(e) => {
                            warn!("pg_rewind failed: {e}");
                            Finished::Rewind { ok: false }
                        }
                    }
                });
            }
            Action::Reinitialize { from } => {
                let src = from.conn_url.as_deref().and_then(CloneSource::from_conn_url);
                let conf = self.replica_conf(Some(&from), cluster);
                self.spawn(LongActionKind::Reinitialize, |cx, cancel| async move {
                    let _ = cx.pg.stop(StopMode::Immediate).await;
                    cx.set_label(Some("creating replica"));
                    let r = match cx.pg.remove_data_directory() {
                        Ok(()) => cx.pg.create_replica(src.as_ref(), &cancel).await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    cx.set_label(None);
                    match r {
                        Ok(()) => {
                            if let Err(e) = cx.start(&conf, Role::Replica).await {
                                warn!("{e:#}");
                            }
                        }
                        Err(e) => warn!("reinitialize failed: {e}"),
                    }
                    Finished::Other(LongActionKind::Reinitialize)
                });
            }
            Action::CreateReplica { from } => {
                let src =
                    from.as_ref().and_then(|f| f.conn_url.as_deref()).and_then(CloneSource::from_conn_url);
                let leader = self.leader_follow_target(cluster);
                let conf = self.replica_conf(leader.as_ref().or(from.as_ref()), cluster);
                let from_leader = match (&from, cluster.and_then(|c| c.leader.as_ref())) {
                    (Some(f), Some(l)) => f.name == l.name,
                    _ => false,
                };
                let kind = match &from {
                    Some(f) => LongActionKind::Clone { from: f.name.clone(), from_leader },
                    None => LongActionKind::CloneWithoutLeader,
                };
                self.spawn(kind.clone(), |cx, cancel| async move {
                    cx.set_label(Some("creating replica"));
                    let r = cx.pg.create_replica(src.as_ref(), &cancel).await;
                    cx.set_label(None);
                    match r {
                        Ok(_) => {
                            if let Err(e) = cx.start(&conf, Role::Replica).await {
                                warn!("{e:#}");
                            }
                        }
                        Err(e) => warn!("failed to create a replica: {e}"),
                    }
                    Finished::Other(kind)
                });
            }
            Action::Bootstrap => {
                self.spawn(LongActionKind::Bootstrap, |cx, cancel| async move {
                    cx.set_label(Some("initializing new cluster"));
                    let r = cx.pg.bootstrap(&cancel).await;
                    cx.set_label(None);
                    match r {
                        Ok(_) => {
                            cx.set_role(Role::Primary);
                            cx.rs.lock().expect("role lock").started_by_us = true;
                            cx.callbacks.fire(CallbackAction::OnStart, "primary");
                            Finished::Bootstrap { ok: true }
                        }
                        Err(e) => {
                            warn!("bootstrap failed: {e}");
                            Finished::Bootstrap { ok: false }
                        }
                    }
                });
            }
            Action::PostBootstrap => {
                // `Postgres::bootstrap` already ran post_bootstrap (roles, script) before reporting.
                self.spawn(LongActionKind::PostBootstrap, |_, _| async move {
                    Finished::PostBootstrap { ok: true }
                });
            }
            Action::CrashRecovery => {
                // A crashed primary without the leader key is no primary any more: recovering it
                // must not look like "a primary that lost its lock" to the next cycles.
                if !self.mem.is_leader(self.shared.now()) && self.role() == Role::Primary {
                    self.rs.lock().expect("role lock").role = Role::Replica;
                }
                self.spawn(LongActionKind::CrashRecovery, |cx, cancel| async move {
                    if let Err(e) = cx.pg.ensure_clean_shutdown(&cancel).await {
                        warn!("crash recovery failed: {e}");
                    }
                    Finished::Other(LongActionKind::CrashRecovery)
                });
            }
            Action::StopImmediate => {
                self.pg.stop(StopMode::Immediate).await.context("stop postgres")?;
            }
            Action::Restart { .. } => {
                self.release_sync_standby().await;
                self.spawn_restart(None)
            }
            Action::DeleteScheduledRestart => self.delete_scheduled_restart(),
            Action::CancelLongAction => self.cancel_task().await,
            Action::SetRole(r) => {
                let changed = self.task_cx().set_role(r.clone());
                if changed
                    && matches!(r, Role::Primary | Role::Replica | Role::StandbyLeader)
                    && self.pg.is_running()
                {
                    self.callbacks.fire(CallbackAction::OnRoleChange, r.as_str());
                }
            }
            Action::DisableWatchdog => self.watchdog.lock().expect("watchdog lock").disable(),
            Action::KeepaliveWatchdog => self.watchdog.lock().expect("watchdog lock").keepalive(),
            Action::Exit(why) => self.exit = Some(why),
        }
        Ok(())
    }

    async fn demote(
        &mut self,
        mode: DemoteMode,
        cluster: Option<&Cluster>,
        kind: Option<LongActionKind>,
    ) -> anyhow::Result<()> {
        info!("Demoting self ({})", mode.as_str());
        self.cancel_task().await;
        let leader = cluster.and_then(|c| c.leader.clone());
        match mode {
            DemoteMode::Graceful => {
                let kind = kind.expect("graceful demote is long");
                let dcs = self.dcs.clone();
                let before_stop = self.cfg.postgresql.before_stop.clone();
                self.spawn(kind.clone(), |cx, _| async move {
                    if let Err(e) = cx.pg.checkpoint().await {
                        warn!("checkpoint before demotion failed: {e}");
                    }
                    run_script("before_stop", before_stop.as_deref(), Duration::from_secs(60)).await;
                    cx.set_label(Some("stopping"));
                    let stopped = cx.pg.stop(StopMode::Fast).await;
                    cx.set_label(None);
                    if let Err(e) = stopped {
                        warn!("stop for demotion failed: {e}");
                        let _ = cx.pg.stop(StopMode::Immediate).await;
                    }
                    cx.mark_stopped();
                    cx.watchdog.lock().expect("watchdog lock").disable();
                    cx.set_role(Role::Demoted);
                    cx.callbacks.fire(CallbackAction::OnStop, "demoted");
                    let lsn = cx.pg.controldata().await.ok().and_then(|c| c.checkpoint_lsn());
                    if let Some(l) = lsn {
                        let st = Status { optime: Some(l.0), ..Default::default() };
                        let _ = dcs.write_status(&st.to_json()).await;
                    }
                    match dcs.delete_leader(leader.as_ref()).await {
                        Ok(_) => info!("Leader key released"),
                        Err(e) => warn!("failed to release the leader key: {e}"),
                    }
                    // Start read-only; the next cycles follow the new leader.
                    if let Err(e) = cx.start(&ConfRole::Replica { upstream: None }, Role::Replica).await {
                        warn!("{e:#}");
                    }
                    Finished::Other(kind)
                });
                return Ok(());
            }
            DemoteMode::Offline => {
                let _ = self.pg.stop(StopMode::Fast).await;
            }
            DemoteMode::Immediate | DemoteMode::ImmediateNolock => {
                let _ = self.pg.stop(StopMode::Immediate).await;
            }
            DemoteMode::Fence => {
                if let Err(e) = self.pg.stop(StopMode::Immediate).await {
                    warn!("immediate stop for fencing failed: {e}");
                }
            }
            DemoteMode::Handover => {
                // The key must not move while this server may still accept writes.
                self.pg.stop(StopMode::Immediate).await.context("stop PostgreSQL before the handover")?;
                if self.pg.is_running() {
                    return Err(anyhow!(
                        "PostgreSQL still runs after the immediate stop; keeping the leader key"
                    ));
                }
            }
        }
        mark_stopped(&self.status_tx);
        self.watchdog.lock().expect("watchdog lock").disable();
        self.task_cx().set_role(Role::Demoted);
        if mode == DemoteMode::Immediate {
            let _ = self.dcs.delete_leader(leader.as_ref()).await;
            info!("Leader key released");
        }
        let upstream = if matches!(mode, DemoteMode::Offline | DemoteMode::Fence | DemoteMode::Handover) {
            None
        } else {
            self.leader_follow_target(cluster)
        };
        let conf = self.replica_conf(upstream.as_ref(), cluster);
        self.spawn(LongActionKind::StartingAfterDemotion, |cx, _| async move {
            if let Err(e) = cx.start(&conf, Role::Replica).await {
                warn!("{e:#}");
            }
            Finished::Other(LongActionKind::StartingAfterDemotion)
        });
        Ok(())
    }

    /// Stop PostgreSQL for an agent stop: `before_stop`, fast stop (escalating to immediate), the
    /// `on_stop` callback.
    pub(super) async fn stop_postgres_for_shutdown(&mut self) {
        if !self.pg.is_running() {
            return;
        }
        self.release_sync_standby().await;
        run_script("before_stop", self.cfg.postgresql.before_stop.as_deref(), Duration::from_secs(60)).await;
        match self.pg.stop(StopMode::Fast).await {
            Ok(_) => {}
            Err(e) => {
                warn!("fast stop failed ({e}); stopping immediately");
                let _ = self.pg.stop(StopMode::Immediate).await;
            }
        }
        mark_stopped(&self.status_tx);
        self.end_sync_release();
        self.watchdog.lock().expect("watchdog lock").disable();
        self.callbacks.fire(CallbackAction::OnStop, self.role().as_str());
    }
}

/// Create and drop member slots on the primary. Temporary slots (`pg_basebackup_<pid>` of a running
/// clone) are never considered: `slots::existing` reads `pg_replication_slots WHERE NOT temporary`.
async fn sync_member_slots(
    pg: &Postgres,
    mut inputs: crate::postgres::slots::SlotInputs,
) -> Result<(), crate::postgres::PgError> {
    use crate::postgres::PgError;
    use crate::postgres::slots::{apply, existing, plan};
    inputs.existing = pg
        .with_client("list slots", async |c| {
            existing(&c).await.map_err(|e| PgError::Sql { op: "list slots", msg: e.to_string() })
        })
        .await?;
    let p = plan(&inputs);
    if p.create.is_empty() && p.drop.is_empty() {
        return Ok(());
    }
    pg.with_client("sync slots", async |c| {
        apply(&c, &p).await.map_err(|e| PgError::Sql { op: "sync slots", msg: e.to_string() })
    })
    .await
}

fn mark_stopped(tx: &tokio::sync::watch::Sender<Arc<crate::api::status::NodeStatus>>) {
    tx.send_modify(|s| {
        let mut n = (**s).clone();
        n.state = "stopped".into();
        n.xlog = None;
        n.replication.clear();
        n.replication_state = None;
        n.timeline = None;
        n.postmaster_start_time = None;
        n.is_leader = false;
        *s = Arc::new(n);
    });
}
