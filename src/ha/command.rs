//! Operator commands from the REST API (PATRONI-COMPAT §3.4) and the task that serves them.
//!
//! Owns: the command channel ([`HaHandle`] → [`CommandServer`]), the scheduled restart (kept in
//! memory and in a small JSON file next to the data directory, so it survives an agent restart),
//! and the DCS writes the management endpoints make (`/config`, `/failover`).
//!
//! DCS-only commands (config, switchover, failover) are served at once by the command server, each
//! in its own task, never behind an HA cycle. Commands that touch PostgreSQL (restart,
//! reinitialize) go on to the HA loop, which runs them as long actions and answers when they are
//! started (reinitialize) or done (restart). The rules that accept or refuse a command are pure and
//! live in [`super::manual`].

use super::action::{Action, FollowTarget, PeerTarget};
use super::exec::fetch_peer_statuses;
use super::manual::{
    self, ClusterMode, FailoverRequest, Refusal, RestartFacts, RestartRequest, scheduled_restart_from_json,
    scheduled_restart_json,
};
use super::runner::{Ha, HaShared};
use super::snapshot::ScheduledRestart;
use crate::api::status::NodeStatus;
use crate::dcs::Dcs;
use crate::dcs::model::Cluster;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{info, warn};

/// A management request.
#[derive(Clone, Debug, PartialEq)]
pub enum HaCommand {
    /// `PATCH /config`: merge-patch `/config` (CAS on its version).
    PatchConfig(Map<String, Value>),
    /// `PUT /config`: replace `/config`.
    PutConfig(Map<String, Value>),
    /// `POST /reload`: re-read the local configuration (as SIGHUP).
    Reload,
    /// `POST /restart`: now (`schedule` is `None`) or scheduled.
    Restart(RestartRequest),
    /// `DELETE /restart`.
    DeleteRestart,
    /// `POST /reinitialize`.
    Reinitialize {
        /// Cancel a long action in progress.
        force: bool,
        /// Clone from the leader rather than a `clonefrom` member.
        from_leader: bool,
    },
    /// `POST /switchover` (`action = "switchover"`) or `POST /failover` (`"failover"`) with the
    /// request body.
    Failover {
        /// `switchover` or `failover`.
        action: String,
        /// The JSON body.
        body: Map<String, Value>,
    },
    /// `DELETE /switchover`.
    DeleteSwitchover,
}

impl HaCommand {
    /// How long the REST handler waits for the answer.
    fn wait_limit(&self) -> Duration {
        match self {
            // Patroni waits for the restart to finish (bounded below the API's 300 s request
            // deadline).
            HaCommand::Restart(r) if r.schedule.is_none() => Duration::from_secs(290),
            // At most max(10, loop_wait)×2 polls plus the peer checks.
            HaCommand::Failover { .. } => Duration::from_secs(290),
            _ => Duration::from_secs(60),
        }
    }
}

/// The body of a reply.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyBody {
    /// Plain text (Patroni writes it as `text/html`).
    Text(String),
    /// JSON (`application/json`).
    Json(Value),
}

/// The answer to a command: HTTP status and body.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub code: u16,
    /// Body.
    pub body: ReplyBody,
}

impl Reply {
    /// A text reply.
    pub fn text(code: u16, s: impl Into<String>) -> Reply {
        Reply { code, body: ReplyBody::Text(s.into()) }
    }
}

impl From<Refusal> for Reply {
    fn from(r: Refusal) -> Reply {
        Reply::text(r.code, r.message)
    }
}

type Envelope = (HaCommand, oneshot::Sender<Reply>);

/// The REST API's end of the command channel.
#[derive(Clone, Debug)]
pub struct HaHandle {
    tx: mpsc::Sender<Envelope>,
}

/// The command server's end.
pub struct CommandInbox {
    rx: mpsc::Receiver<Envelope>,
}

impl CommandInbox {
    /// The next command and where to answer it (`None` when every handle is dropped).
    pub async fn recv(&mut self) -> Option<(HaCommand, oneshot::Sender<Reply>)> {
        self.rx.recv().await
    }
}

impl HaHandle {
    /// A connected pair.
    pub fn channel() -> (HaHandle, CommandInbox) {
        let (tx, rx) = mpsc::channel(64);
        (HaHandle { tx }, CommandInbox { rx })
    }

    /// A handle nobody serves: every request gets 503 (tests, and the API before wiring).
    pub fn disconnected() -> HaHandle {
        HaHandle::channel().0
    }

    /// Send `cmd` and wait (bounded) for the answer; 503 when nobody serves commands.
    pub async fn request(&self, cmd: HaCommand) -> Reply {
        let limit = cmd.wait_limit();
        let (tx, rx) = oneshot::channel();
        if self.tx.send((cmd, tx)).await.is_err() {
            return Reply::text(503, "the HA loop is not running");
        }
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Reply::text(503, "the HA loop dropped the request"),
            Err(_) => Reply::text(503, "timed out waiting for the HA loop"),
        }
    }
}

/// The scheduled restart: in memory and persisted as JSON in `path` (written atomically).
#[derive(Clone, Debug)]
pub struct ScheduleStore {
    inner: Arc<Mutex<Option<ScheduledRestart>>>,
    path: Option<PathBuf>,
}

impl ScheduleStore {
    /// The file for a data directory: `<data_dir>.praetor-scheduled-restart.json` beside it.
    pub fn path_for(data_dir: &Path) -> PathBuf {
        let name =
            data_dir.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| "pgdata".into());
        data_dir.with_file_name(format!("{name}.praetor-scheduled-restart.json"))
    }

    /// Load from `path` (a missing file: nothing scheduled; a malformed one is logged and ignored).
    pub fn open(path: PathBuf) -> ScheduleStore {
        let loaded = match std::fs::read_to_string(&path) {
            Ok(text) => {
                match serde_json::from_str::<Value>(&text).ok().as_ref().and_then(scheduled_restart_from_json)
                {
                    Some(sr) => {
                        info!("Restored the scheduled restart at {} from {}", sr.schedule, path.display());
                        Some(sr)
                    }
                    None => {
                        warn!("ignoring the malformed scheduled restart file {}", path.display());
                        None
                    }
                }
            }
            Err(_) => None,
        };
        ScheduleStore { inner: Arc::new(Mutex::new(loaded)), path: Some(path) }
    }

    /// Memory only (tests).
    pub fn in_memory() -> ScheduleStore {
        ScheduleStore { inner: Arc::new(Mutex::new(None)), path: None }
    }

    /// The scheduled restart, if any.
    pub fn get(&self) -> Option<ScheduledRestart> {
        self.inner.lock().ok().and_then(|g| g.clone())
    }

    /// Keep `sr` unless one is scheduled already (then `false`).
    pub fn schedule(&self, sr: ScheduledRestart) -> bool {
        let Ok(mut g) = self.inner.lock() else { return false };
        if g.is_some() {
            return false;
        }
        self.persist(Some(&sr));
        *g = Some(sr);
        true
    }

    /// Forget the scheduled restart; `false` when there was none.
    pub fn delete(&self) -> bool {
        let Ok(mut g) = self.inner.lock() else { return false };
        let had = g.take().is_some();
        if had {
            self.persist(None);
        }
        had
    }

    fn persist(&self, sr: Option<&ScheduledRestart>) {
        let Some(path) = &self.path else { return };
        let r = match sr {
            None => match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Some(sr) => {
                let tmp = path.with_extension("json.tmp");
                let text = scheduled_restart_json(sr, true).to_string();
                std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path))
            }
        };
        if let Err(e) = r {
            warn!("failed to persist the scheduled restart in {}: {e}", path.display());
        }
    }
}

/// A command the HA loop runs itself (it touches PostgreSQL).
pub(super) enum PgCommand {
    Restart(RestartRequest),
    Reinitialize { force: bool, from: FollowTarget },
}

/// What the HA loop receives.
pub(super) type PgEnvelope = (PgCommand, oneshot::Sender<Reply>);

/// Serves [`HaCommand`]s: DCS commands itself, PostgreSQL commands through the HA loop.
pub struct CommandServer {
    dcs: Arc<dyn Dcs>,
    shared: Arc<HaShared>,
    status: watch::Receiver<Arc<NodeStatus>>,
    store: ScheduleStore,
    reload: Arc<Notify>,
    to_ha: mpsc::Sender<PgEnvelope>,
    me: String,
    http: reqwest::Client,
}

/// The HA loop's end of the PostgreSQL command channel.
pub struct PgInbox {
    pub(super) rx: mpsc::Receiver<PgEnvelope>,
    pub(super) store: ScheduleStore,
}

impl CommandServer {
    /// A server for member `me`, and the inbox to give the HA task ([`Ha::with_commands`]).
    /// `reload` is notified on `POST /reload` (the agent re-reads its configuration as on SIGHUP).
    pub fn new(
        me: &str,
        dcs: Arc<dyn Dcs>,
        shared: Arc<HaShared>,
        status: watch::Receiver<Arc<NodeStatus>>,
        store: ScheduleStore,
        reload: Arc<Notify>,
    ) -> (CommandServer, PgInbox) {
        let (to_ha, rx) = mpsc::channel(16);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        let server =
            CommandServer { dcs, shared, status, store: store.clone(), reload, to_ha, me: me.into(), http };
        (server, PgInbox { rx, store })
    }

    /// Serve until every [`HaHandle`] is dropped.
    pub async fn run(self, mut inbox: CommandInbox) {
        let me = Arc::new(self);
        while let Some((cmd, reply)) = inbox.rx.recv().await {
            let me = me.clone();
            tokio::spawn(async move {
                let r = me.serve(cmd).await;
                let _ = reply.send(r);
            });
        }
    }

    async fn load_cluster(&self) -> Result<Cluster, Reply> {
        match tokio::time::timeout(Duration::from_secs(10), self.dcs.load_cluster()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(Reply::text(503, format!("DCS is not accessible: {e}"))),
            Err(_) => Err(Reply::text(503, "DCS is not accessible: timed out")),
        }
    }

    async fn serve(&self, cmd: HaCommand) -> Reply {
        match self.serve_inner(cmd).await {
            Ok(r) | Err(r) => r,
        }
    }

    async fn serve_inner(&self, cmd: HaCommand) -> Result<Reply, Reply> {
        match cmd {
            HaCommand::PatchConfig(patch) => {
                let cluster = self.load_cluster().await?;
                let Some(cfg) = cluster.config else {
                    return Ok(Reply::text(503, "Service Unavailable: the /config key does not exist"));
                };
                let mut data = cfg.data.clone();
                if manual::patch_config(&mut data, &patch) {
                    let value = Value::Object(data.clone()).to_string();
                    match self.dcs.set_config_value(&value, Some(cfg.version)).await {
                        Ok(true) => {}
                        Ok(false) => {
                            return Ok(Reply::text(409, "Conflict: /config was changed concurrently"));
                        }
                        Err(e) => return Ok(Reply::text(503, format!("failed to write /config: {e}"))),
                    }
                }
                self.shared.wake.notify_one();
                Ok(Reply { code: 200, body: ReplyBody::Json(Value::Object(data)) })
            }
            HaCommand::PutConfig(new) => {
                let cluster = self.load_cluster().await?;
                if cluster.config.as_ref().is_none_or(|c| c.data != new) {
                    let value = Value::Object(new.clone()).to_string();
                    match self.dcs.set_config_value(&value, None).await {
                        Ok(true) => {}
                        Ok(false) => return Ok(Reply::text(502, "Bad Gateway: /config was not written")),
                        Err(e) => return Ok(Reply::text(502, format!("failed to write /config: {e}"))),
                    }
                    self.shared.wake.notify_one();
                }
                Ok(Reply { code: 200, body: ReplyBody::Json(Value::Object(new)) })
            }
            HaCommand::Reload => {
                self.reload.notify_one();
                Ok(Reply::text(202, "reload scheduled"))
            }
            HaCommand::Restart(req) if req.schedule.is_some() => {
                let start = self.status.borrow().postmaster_start_time.clone();
                let Some(sr) = req.to_scheduled(start) else {
                    return Ok(Reply::text(400, "schedule is missing"));
                };
                if self.store.schedule(sr) {
                    self.shared.wake.notify_one();
                    Ok(Reply::text(202, "Restart scheduled"))
                } else {
                    Ok(Reply::text(409, "Another restart is already scheduled"))
                }
            }
            HaCommand::Restart(req) => Ok(self.forward(PgCommand::Restart(req)).await),
            HaCommand::DeleteRestart => {
                if self.store.delete() {
                    self.shared.wake.notify_one();
                    Ok(Reply::text(200, "scheduled restart deleted"))
                } else {
                    Ok(Reply::text(404, "no restarts are scheduled"))
                }
            }
            HaCommand::Reinitialize { force, from_leader } => {
                let cluster = self.load_cluster().await?;
                let i_lead = self.status.borrow().is_leader;
                if let Some(why) = manual::reinitialize_refusal(&cluster, &self.me, i_lead) {
                    return Ok(Reply::text(503, why));
                }
                let from = if from_leader {
                    cluster.leader.as_ref().map(|l| l.name.clone())
                } else {
                    manual::clone_member_name(&cluster, &self.me)
                };
                let Some(from) = from else {
                    return Ok(Reply::text(503, "Cluster has no leader, can not reinitialize"));
                };
                let conn_url =
                    cluster.member(&from).map(|m| m.data.conn_url.clone()).filter(|u| !u.is_empty());
                let target = FollowTarget { name: from, conn_url };
                Ok(self.forward(PgCommand::Reinitialize { force, from: target }).await)
            }
            HaCommand::Failover { action, body } => self.failover(&action, &body).await,
            HaCommand::DeleteSwitchover => {
                let cluster = self.load_cluster().await?;
                match cluster.failover {
                    Some(f) if f.scheduled_at.is_some() => {
                        match self.dcs.set_failover_value("{}", f.version).await {
                            Ok(true) => {
                                self.shared.wake.notify_one();
                                Ok(Reply::text(200, "scheduled switchover deleted"))
                            }
                            Ok(false) | Err(_) => {
                                Ok(Reply::text(409, "Conflict: /failover was changed concurrently"))
                            }
                        }
                    }
                    _ => Ok(Reply::text(404, "no switchover is scheduled")),
                }
            }
        }
    }

    async fn forward(&self, cmd: PgCommand) -> Reply {
        let (tx, rx) = oneshot::channel();
        if self.to_ha.send((cmd, tx)).await.is_err() {
            return Reply::text(503, "the HA loop is not running");
        }
        self.shared.wake.notify_one();
        rx.await.unwrap_or_else(|_| Reply::text(503, "the HA loop dropped the request"))
    }

    /// Patroni `do_POST_failover`.
    async fn failover(&self, action: &str, body: &Map<String, Value>) -> Result<Reply, Reply> {
        let cluster = self.load_cluster().await?;
        let mode = ClusterMode::from_cluster(&cluster);
        let req: FailoverRequest = manual::check_failover_request(action, body, mode, chrono::Utc::now())?;
        info!(
            "received {action} request with leader={} candidate={} scheduled_at={}",
            req.leader.as_deref().unwrap_or("None"),
            req.candidate.as_deref().unwrap_or("None"),
            req.scheduled_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "None".into())
        );
        if req.scheduled_at.is_none() {
            let members = manual::failover_candidates(&cluster, &req, mode)?;
            let targets: Vec<PeerTarget> = members
                .iter()
                .map(|m| PeerTarget { name: m.name.clone(), api_url: m.data.api_url.clone() })
                .collect();
            let statuses: Vec<_> = fetch_peer_statuses(&self.http, &targets).await.into_values().collect();
            manual::peers_allow_failover(&req.action, &statuses)?;
        }
        match self.dcs.set_failover_value(&req.key_value(), None).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Ok(Reply::text(503, "failed to write failover key into DCS")),
        }
        self.shared.wake.notify_one();
        if req.scheduled_at.is_some() {
            return Ok(Reply::text(202, format!("{} scheduled", super::failover::title(&req.action))));
        }
        let old_leader = cluster.leader.as_ref().map(|l| l.name.clone());
        let loop_wait = cluster
            .config
            .as_ref()
            .and_then(|c| c.data.get("loop_wait"))
            .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .unwrap_or(10);
        for _ in 0..manual::poll_budget(Duration::from_secs(loop_wait)) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(5), self.dcs.load_cluster()).await
                && let Some(v) =
                    manual::poll_verdict(&c, old_leader.as_deref(), req.candidate.as_deref(), &req.action)
            {
                return Ok(v.into());
            }
        }
        Ok(manual::poll_timed_out(&req.action).into())
    }
}

impl Ha {
    /// Serve PostgreSQL commands from the command server (see [`CommandServer::new`]); the
    /// scheduled restart comes from the inbox's store.
    pub fn with_commands(mut self, inbox: PgInbox) -> Ha {
        self.commands = Some(inbox);
        self
    }

    /// The scheduled restart, if any.
    pub(super) fn scheduled_restart(&self) -> Option<ScheduledRestart> {
        self.commands.as_ref().and_then(|c| c.store.get())
    }

    /// Forget the scheduled restart (the policy's `DeleteScheduledRestart`).
    pub(super) fn delete_scheduled_restart(&self) {
        if let Some(c) = &self.commands {
            c.store.delete();
        }
    }

    /// Run the PostgreSQL commands waiting in the inbox.
    pub(super) async fn serve_commands(&mut self) {
        loop {
            let Some(next) = self.commands.as_mut().and_then(|c| c.rx.try_recv().ok()) else { return };
            self.serve_command(next).await;
        }
    }

    /// Run one PostgreSQL command (Patroni `Ha.restart`, `Ha.reinitialize`).
    pub(super) async fn serve_command(&mut self, (cmd, reply): PgEnvelope) {
        match cmd {
            PgCommand::Restart(req) => {
                let facts = RestartFacts {
                    role: self.role(),
                    server_version: self.last_pg.server_version.unwrap_or(0),
                    pending_restart: self.last_pg.pending_restart,
                };
                if let Some(why) = manual::restart_mismatch(&req, &facts) {
                    info!("not proceeding with the restart: {why}");
                    let _ = reply.send(Reply::text(503, "restart conditions are not satisfied"));
                    return;
                }
                if let Some(t) = &self.task {
                    let _ = reply.send(Reply::text(503, format!("{} already in progress", t.action.kind)));
                    return;
                }
                let timeout =
                    req.timeout.map(Duration::from_secs).unwrap_or(self.timing().primary_start_timeout);
                // A synchronous standby first asks the primary to release it, as the HA loop's
                // restart does (Patroni `restart` wraps it in `while_not_sync_standby`).
                self.release_sync_standby().await;
                self.mem.recovering = true;
                self.mem.start_timeout = Some(timeout);
                self.spawn_restart(Some(reply));
            }
            PgCommand::Reinitialize { force, from } => {
                if force {
                    self.cancel_task().await;
                }
                if let Some(t) = &self.task {
                    let _ = reply.send(Reply::text(503, format!("{} already in progress", t.action.kind)));
                    return;
                }
                let cluster = self.last_cluster.clone();
                let pg = self.last_pg.clone();
                info!("reinitialize requested: cloning from {}", from.name);
                match self.execute(Action::Reinitialize { from }, cluster.as_ref(), &pg).await {
                    Ok(()) => {
                        let _ = reply.send(Reply::text(200, "reinitialize started"));
                    }
                    Err(e) => {
                        let _ = reply.send(Reply::text(503, format!("failed to reinitialize: {e:#}")));
                    }
                }
            }
        }
    }

    /// The `scheduled_restart` member value and status value.
    pub(super) fn scheduled_restart_values(&self) -> (Option<Value>, Option<Value>) {
        match self.scheduled_restart() {
            Some(sr) => (Some(scheduled_restart_json(&sr, true)), Some(scheduled_restart_json(&sr, false))),
            None => (None, None),
        }
    }
}
