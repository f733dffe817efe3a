//! The HA task: the loop that runs one `observe → decide → act` cycle every `loop_wait`
//! (PATRONI-COMPAT §6.1), following the contract documented in [`crate::ha`].
//!
//! Owns: the [`Memory`], the role this node publishes, the long action in flight, and the last
//! DCS view. Publishes a [`NodeStatus`] after every cycle for the REST API (watch channel) and
//! receives `POST /failsafe` pings through [`HaShared`]. Also maps the configuration into the
//! policy's plain inputs ([`timing`], [`policy`], [`identity`], [`pg_settings`]) and a PostgreSQL
//! observation into a [`PgState`] ([`pg_state`]).

use super::action::Decision;
use super::decide::{Memory, ShutdownPlan, decide, shutdown_plan};
use super::snapshot::{
    ControlState, DataDir, DcsUnavailable, DynamicPolicy, FailsafePing, Finished, HostPort, LocalIdentity,
    LocalTags, LongAction, LongActionKind, MonoTime, PgRun, PgState, ReplicationRow, Snapshot, StepResults,
    SyncMode, Timing,
};
use crate::api::status::{NodeStatus, Xlog};
use crate::callbacks::{CallbackAction, Callbacks};
use crate::config::DynamicConfig;
use crate::config::dynamic::SynchronousMode;
use crate::config::validate::{BootstrapMethod, Config};
use crate::dcs::Dcs;
use crate::dcs::model::{Cluster, MemberData, Version};
use crate::postgres::observe::PgObservation;
use crate::postgres::{Postgres, ProcessState, SqlState};
use crate::types::Role;
use crate::watchdog::Watchdog;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// How soon the loop looks again at a replica whose WAL receiver does not stream yet.
const NOT_STREAMING_RECHECK: Duration = Duration::from_millis(500);
/// While a replica does not stream yet ([`Ha::replica_not_streaming_yet`]), the loop sends the
/// postmaster a SIGHUP at most this often. After a failed attempt to stream (the primary was
/// unreachable, or did not have this member's slot yet) PostgreSQL's startup process sleeps
/// `wal_retrieve_retry_interval` (5 s by default) before it tries again; a SIGHUP ends that sleep.
const NOT_STREAMING_NUDGE: Duration = Duration::from_secs(1);
/// How long after a long action or a change of upstream the loop does so.
const RECHECK_WINDOW: Duration = Duration::from_secs(30);

/// State shared between the HA task and the REST API (tiny sections, no await inside).
#[derive(Debug)]
pub struct HaShared {
    /// Origin of [`MonoTime`].
    pub origin: Instant,
    /// The last `POST /failsafe` received.
    pub failsafe_ping: Mutex<Option<FailsafePing>>,
    /// `failsafe_mode` of the effective dynamic configuration.
    pub failsafe_mode: AtomicBool,
    /// `ttl` in seconds.
    pub ttl_secs: AtomicU64,
    /// When the last cycle finished.
    pub last_cycle: Mutex<Instant>,
    /// Wake the loop early (REST actions).
    pub wake: Notify,
    /// The last DCS view the loop read (REST `GET /cluster`, `/history`, `/config`, `/failsafe`).
    pub dcs_view: Mutex<Option<Arc<DcsView>>>,
    /// praetor's own measurements (`GET /metrics`).
    pub metrics: Arc<crate::metrics::AgentMetrics>,
    /// The WAL-confirmation sampler's last conclusion and when it was drawn (`None` while it does
    /// not sample: this node is not a primary holding the key).
    pub wal_confirmation: Mutex<Option<(MonoTime, super::fence::WalConfirmation)>>,
    /// Raised (with the instant) while the sampler holds the DCS for lost ([`super::fence::dcs_lost`]):
    /// DCS calls then get [`super::fence::LOST_DCS_CALL_BUDGET`] (see
    /// [`crate::dcs::timed::TimedDcs::wrap_with_deadline`]).
    pub at_risk: watch::Sender<Option<Instant>>,
}

/// One successful DCS read, as the HA loop saw it.
#[derive(Debug)]
pub struct DcsView {
    /// The cluster.
    pub cluster: Cluster,
    /// When it was read.
    pub read_at: chrono::DateTime<chrono::Utc>,
}

impl HaShared {
    /// Fresh shared state.
    pub fn new() -> HaShared {
        HaShared {
            origin: Instant::now(),
            failsafe_ping: Mutex::new(None),
            failsafe_mode: AtomicBool::new(false),
            ttl_secs: AtomicU64::new(30),
            last_cycle: Mutex::new(Instant::now()),
            wake: Notify::new(),
            dcs_view: Mutex::new(None),
            metrics: Arc::new(crate::metrics::AgentMetrics::default()),
            wal_confirmation: Mutex::new(None),
            at_risk: watch::channel(None).0,
        }
    }

    /// The last DCS view (None before the first successful read).
    pub fn dcs_view(&self) -> Option<Arc<DcsView>> {
        self.dcs_view.lock().ok().and_then(|g| g.clone())
    }

    /// Monotonic now relative to the origin.
    pub fn now(&self) -> MonoTime {
        MonoTime(self.origin.elapsed())
    }
}

impl Default for HaShared {
    fn default() -> Self {
        HaShared::new()
    }
}

/// The HTTP client for peers' REST APIs (leader race, `POST /failsafe`), set up as Patroni's
/// `PatroniRequest(config, insecure=True)`: Basic auth from `ctl.authentication` or
/// `restapi.authentication`, a client certificate from `ctl.certfile`/`keyfile`, server certificates
/// not verified. An unusable client certificate is logged and left out.
pub fn peer_client(cfg: &Config) -> reqwest::Client {
    let id = peer_identity(cfg).unwrap_or_else(|e| {
        warn!("{e}");
        None
    });
    build_peer_client(cfg, id)
}

/// The client certificate for requests to peers: `ctl.certfile` plus `ctl.keyfile` (or the key in
/// `certfile`), read now; `None` without `ctl.certfile`.
pub fn peer_identity(cfg: &Config) -> Result<Option<reqwest::Identity>, String> {
    let Some(cert) = &cfg.ctl.certfile else {
        return Ok(None);
    };
    let key = cfg.ctl.keyfile.as_ref().unwrap_or(cert);
    let pem = std::fs::read(cert).and_then(|mut c| {
        if key != cert {
            c.push(b'\n');
            c.extend(std::fs::read(key)?);
        }
        Ok(c)
    });
    pem.map_err(|e| e.to_string())
        .and_then(|p| reqwest::Identity::from_pem(&p).map_err(|e| e.to_string()))
        .map(Some)
        .map_err(|e| {
            format!(
                "ctl.certfile/keyfile ({}) not usable for requests to peers (an encrypted key is not supported here): {e}",
                cert.display()
            )
        })
}

/// [`peer_client`] with the client certificate `id`.
pub fn build_peer_client(cfg: &Config, id: Option<reqwest::Identity>) -> reqwest::Client {
    use base64::Engine;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(a) = cfg.ctl.authentication.as_ref().or(cfg.restapi.authentication.as_ref()) {
        let key = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            a.username,
            a.password.expose()
        ));
        if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&format!("Basic {key}")) {
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
    }
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .default_headers(headers)
        .use_rustls_tls()
        .danger_accept_invalid_certs(true);
    if let Some(id) = id {
        b = b.identity(id);
    }
    b.build().unwrap_or_else(|e| {
        warn!("peer HTTP client: {e}; using defaults");
        reqwest::Client::new()
    })
}

/// `Timing` from the effective dynamic configuration.
pub fn timing(d: &DynamicConfig) -> Timing {
    Timing {
        ttl: d.ttl_duration(),
        loop_wait: d.loop_wait_duration(),
        retry_timeout: d.retry_timeout_duration(),
        primary_start_timeout: Duration::from_secs(d.primary_start_timeout.max(0) as u64),
    }
}

fn truthy(v: &Value) -> bool {
    crate::dcs::model::value_is_true(v)
}

/// `DynamicPolicy` from the effective dynamic configuration and the local configuration.
pub fn policy(cfg: &Config, d: &DynamicConfig) -> DynamicPolicy {
    let (params, _) = cfg.effective_parameters(d);
    let hints = params.get("wal_log_hints").map(truthy).unwrap_or(true);
    DynamicPolicy {
        maximum_lag_on_failover: d.maximum_lag_on_failover.max(0) as u64,
        check_timeline: d.check_timeline,
        synchronous_mode: match d.synchronous_mode {
            SynchronousMode::Off => SyncMode::Off,
            SynchronousMode::On => SyncMode::On,
            SynchronousMode::Quorum => SyncMode::Quorum,
        },
        synchronous_mode_strict: d.synchronous_mode_strict,
        failsafe_mode: d.failsafe_mode,
        pause: d.is_paused(),
        can_rewind: cfg.effective_use_pg_rewind(d) && hints,
        remove_data_directory_on_diverged_timelines: cfg
            .postgresql
            .remove_data_directory_on_diverged_timelines,
        remove_data_directory_on_rewind_failure: cfg.postgresql.remove_data_directory_on_rewind_failure,
        partition: super::fence::PartitionPolicy {
            fence_isolated_primary: d.praetor.fence_isolated_primary,
            replica_silence: Duration::from_millis(d.praetor.fence_replica_silence_ms),
            strict_sync_failover: d.praetor.strict_sync_failover,
        },
    }
}

/// The dynamic configuration to start with (Patroni `Config._load_cache`): the one last read from
/// the DCS, cached in `<data_dir>/patroni.dynamic.json`, else `bootstrap.dcs`. `true` when it came
/// from the cache.
pub fn initial_dynamic(cfg: &Config) -> (DynamicConfig, bool) {
    match DynamicConfig::load_cache(&cfg.postgresql.data_dir) {
        Some((d, problems)) => {
            for p in problems {
                warn!("{p}");
            }
            info!(
                "using the dynamic configuration cached in {}",
                cfg.postgresql.data_dir.join(crate::config::dynamic::CACHE_FILE).display()
            );
            (d, true)
        }
        None => (cfg.bootstrap.dcs.clone(), false),
    }
}

/// `LocalIdentity` from the local configuration.
pub fn identity(cfg: &Config, watchdog: &Watchdog) -> LocalIdentity {
    let t = &cfg.tags;
    let nofailover = t.nofailover || t.failover_priority <= 0;
    LocalIdentity {
        name: cfg.name.clone(),
        tags: LocalTags {
            nofailover,
            failover_priority: if nofailover { 0 } else { t.failover_priority },
            nosync: t.nosync,
            clonefrom: t.clonefrom,
            replicatefrom: t.replicatefrom.clone(),
            nostream: t.nostream,
        },
        has_bootstrap_section: true,
        can_create_replica_without_leader: cfg
            .postgresql
            .create_replica_methods
            .iter()
            .any(|m| cfg.postgresql.replica_methods.get(m).is_some_and(|r| r.no_leader)),
        watchdog: watchdog.state(),
    }
}

fn creds(c: &crate::config::validate::ConnAuth) -> crate::postgres::Credentials {
    crate::postgres::Credentials {
        username: c.username.clone(),
        password: c.password.clone(),
        ssl: c.options.clone(),
    }
}

/// The PostgreSQL controller's settings from the local configuration and the effective dynamic
/// configuration.
pub fn pg_settings(cfg: &Config, d: &DynamicConfig) -> crate::postgres::PgSettings {
    use crate::postgres::settings::{BootstrapSettings, CustomBootstrap, ReplicaMethod};
    let p = &cfg.postgresql;
    let mut s = crate::postgres::PgSettings::new(&cfg.name, &cfg.scope, p.data_dir.clone(), &p.listen);
    s.config_dir = (p.config_dir != p.data_dir).then(|| p.config_dir.clone());
    s.bin_dir = p.bin_dir.clone();
    s.bin_name = p
        .bin_name
        .all()
        .iter()
        .filter(|(k, v)| k != v)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.connect_address = p.connect_address.clone();
    s.superuser = creds(&p.authentication.superuser);
    s.replication = creds(&p.authentication.replication);
    s.rewind = p.authentication.rewind.as_ref().map(creds);
    s.parameters = p.parameters.clone();
    s.dynamic_parameters = d.postgresql.parameters.clone();
    s.pg_hba = cfg.effective_pg_hba(d).map(<[String]>::to_vec).unwrap_or_default();
    s.pg_ident = cfg.effective_pg_ident(d).map(<[String]>::to_vec).unwrap_or_default();
    s.pgpass = p.pgpass.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("pgpass-{}", crate::types::slot_name_from_member_name(&cfg.name)))
    });
    s.pg_ctl_timeout = p.pg_ctl_timeout;
    s.use_unix_socket = p.use_unix_socket;
    s.use_unix_socket_repl = p.use_unix_socket_repl;
    s.basebackup = Value::Array(
        p.basebackup
            .iter()
            .map(|o| match &o.value {
                Some(v) => json!({ o.name.clone(): v }),
                None => Value::String(o.name.clone()),
            })
            .collect(),
    );
    s.create_replica_methods = p.create_replica_methods.clone();
    s.replica_methods = p
        .replica_methods
        .iter()
        .map(|(k, m)| {
            (
                k.clone(),
                ReplicaMethod {
                    command: m.command.clone(),
                    keep_data: m.keep_data,
                    no_params: m.no_params,
                    no_leader: m.no_leader,
                    extra: m.params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect(),
                },
            )
        })
        .collect();
    s.custom_conf = p.custom_conf.clone();
    s.recovery_conf = p
        .recovery_conf
        .clone()
        .or_else(|| d.postgresql.recovery_conf.clone().map(|m| m.into_iter().collect()))
        .unwrap_or_default();
    s.use_pg_rewind = cfg.effective_use_pg_rewind(d);
    s.remove_data_directory_on_rewind_failure = p.remove_data_directory_on_rewind_failure;
    s.remove_data_directory_on_diverged_timelines = p.remove_data_directory_on_diverged_timelines;
    s.use_slots = d.postgresql.use_slots;
    s.postmaster_log = Some(p.data_dir.with_file_name(format!(
        "{}.postmaster.log",
        p.data_dir.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| "pgdata".into())
    )));
    let b = &cfg.bootstrap;
    let mut bs = BootstrapSettings {
        method: None,
        initdb: Value::Array(
            b.initdb
                .iter()
                .map(|o| match &o.value {
                    Some(v) => json!({ o.name.clone(): v }),
                    None => Value::String(o.name.clone()),
                })
                .collect(),
        ),
        custom: BTreeMap::new(),
        post_bootstrap: b.post_bootstrap.clone(),
        users: BTreeMap::new(),
        pg_hba: b.pg_hba.clone(),
    };
    if let BootstrapMethod::Custom(c) = &b.method {
        bs.method = Some(c.name.clone());
        bs.custom.insert(
            c.name.clone(),
            CustomBootstrap {
                command: c.command.clone(),
                no_params: c.no_params,
                keep_existing_recovery_conf: c.keep_existing_recovery_conf,
                recovery_conf: c.recovery_conf.clone().map(|m| m.into_iter().collect()),
                extra: c.params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect(),
            },
        );
    }
    s.bootstrap = bs;
    s
}

/// Host and port of `primary_conninfo` in the managed `postgresql.conf` (`None` when absent).
pub fn configured_upstream(config_dir: &Path) -> Option<HostPort> {
    let text = std::fs::read_to_string(config_dir.join("postgresql.conf")).ok()?;
    let line = text.lines().find(|l| l.trim_start().starts_with("primary_conninfo"))?;
    let value = line.split_once('=')?.1.trim();
    let value = value.trim_matches('\'').replace("\\'", "'");
    let mut host = None;
    let mut port = 5432;
    for part in value.split_whitespace() {
        if let Some((k, v)) = part.split_once('=') {
            let v = v.trim_matches('\'');
            match k {
                "host" => host = Some(v.to_string()),
                "port" => port = v.parse().unwrap_or(5432),
                _ => {}
            }
        }
    }
    Some(HostPort { host: host?, port })
}

/// The role a data directory implies when the agent starts (Patroni
/// `get_postgres_role_from_data_directory`).
pub fn initial_role(pg: &Postgres, obs: &PgObservation) -> Role {
    if let Some(f) = obs.facts() {
        return if f.in_recovery { Role::Replica } else { Role::Primary };
    }
    if pg.data_directory_empty() || !pg.is_initialized() {
        Role::Uninitialized
    } else if pg.data_dir().join("standby.signal").exists() || pg.data_dir().join("recovery.signal").exists()
    {
        Role::Replica
    } else {
        Role::Primary
    }
}

/// `PgState` from one observation (plus `pg_controldata` when the server is not running).
pub async fn pg_state(pg: &Postgres, obs: &PgObservation, role: &Role) -> PgState {
    let mut st = PgState { role: role.clone(), ..Default::default() };
    st.run = match (&obs.process, &obs.sql) {
        (ProcessState::Running(_), SqlState::Ok(_)) => PgRun::Running,
        (ProcessState::Running(_), _) => PgRun::Starting,
        (ProcessState::Crashed(_), _) => PgRun::Crashed,
        (ProcessState::Stopped, _) => PgRun::Stopped,
    };
    st.data_dir = match std::fs::read_dir(pg.data_dir()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DataDir::Empty,
        Err(e) => DataDir::Inaccessible(e.to_string()),
        Ok(mut it) => {
            if it.next().is_none() {
                DataDir::Empty
            } else {
                DataDir::Initialized
            }
        }
    };
    st.recovery_conf_exists =
        pg.data_dir().join("standby.signal").exists() || pg.data_dir().join("recovery.signal").exists();
    st.upstream = configured_upstream(pg.settings().config_dir());
    if let Some(f) = obs.facts() {
        st.is_in_recovery = Some(f.in_recovery);
        st.timeline = f.timeline.map(u64::from);
        st.write_lsn = f.write_lsn;
        st.flush_lsn = f.flush_lsn;
        st.receive_lsn = f.receive_lsn;
        st.replay_lsn = f.replay_lsn;
        st.sysid = Some(f.system_identifier.clone());
        st.pending_restart = !f.pending_restart.is_empty();
        st.postmaster_start_time = Some(f.postmaster_start_time.to_rfc3339());
        st.server_version = Some(f.server_version);
        st.replication = f
            .replication
            .iter()
            .map(|r| ReplicationRow {
                application_name: r.application_name.clone(),
                state: r.state.clone().unwrap_or_default(),
                sync_state: r.sync_state.clone().unwrap_or_default(),
                flush_lsn: r.flush_lsn,
                replay_lsn: r.replay_lsn,
            })
            .collect();
    } else if st.data_dir == DataDir::Initialized
        && pg.is_initialized()
        && let Ok(cd) = pg.controldata().await
    {
        st.sysid = cd.system_identifier().map(str::to_string);
        st.control_state = cd.cluster_state().map(ControlState::parse);
        st.timeline = cd.checkpoint_timeline().map(u64::from);
    }
    st
}

/// A long action running as a task.
pub(super) struct Running {
    pub(super) action: LongAction,
    pub(super) cancel: CancellationToken,
    pub(super) handle: tokio::task::JoinHandle<()>,
}

/// What a finished task reports.
pub(super) struct TaskDone {
    pub(super) finished: Finished,
}

/// The role and PostgreSQL state label published in the member key; written by the loop and by
/// tasks (a promote sets `primary`, a clone `creating replica`).
#[derive(Clone, Debug)]
pub(super) struct RoleState {
    pub(super) role: Role,
    pub(super) label: Option<String>,
    /// This agent started PostgreSQL itself (and fired `on_start` then).
    pub(super) started_by_us: bool,
}

/// The HA task.
pub struct Ha {
    pub(super) cfg: Arc<Config>,
    pub(super) dynamic: DynamicConfig,
    pub(super) config_version: Option<Version>,
    pub(super) dcs: Arc<dyn Dcs>,
    pub(super) pg: Arc<Postgres>,
    pub(super) shared: Arc<HaShared>,
    pub(super) status_tx: watch::Sender<Arc<NodeStatus>>,
    pub(super) mem: Memory,
    pub(super) rs: Arc<Mutex<RoleState>>,
    pub(super) task: Option<Running>,
    pub(super) done_tx: mpsc::UnboundedSender<TaskDone>,
    pub(super) done_rx: mpsc::UnboundedReceiver<TaskDone>,
    pub(super) finished: Vec<Finished>,
    pub(super) watchdog: Arc<Mutex<Watchdog>>,
    pub(super) callbacks: Callbacks,
    pub(super) last_cluster: Option<Cluster>,
    pub(super) exit: Option<String>,
    pub(super) dcs_last_seen: u64,
    pub(super) http: reqwest::Client,
    pub(super) last_status_written: Option<String>,
    pub(super) last_failsafe_written: Option<String>,
    pub(super) last_pg: PgState,
    pub(super) last_obs: Option<PgObservation>,
    pub(super) reload_rx: Option<mpsc::UnboundedReceiver<Config>>,
    /// `/config` changed since `patroni.dynamic.json` was last written.
    pub(super) cache_needs_saving: bool,
    pub(super) sync_rt: super::sync_exec::SyncRuntime,
    /// Operator commands that touch PostgreSQL, and the scheduled restart ([`super::command`]).
    pub(super) commands: Option<super::command::PgInbox>,
    /// Input of the WAL-confirmation sampler ([`super::fence_exec`]), once started.
    pub(super) sampler: Option<watch::Sender<super::fence_exec::SamplerInput>>,
    /// The store the sampler probes, without the deadline of [`HaShared::at_risk`].
    pub(super) dcs_probe: Option<Arc<dyn Dcs>>,
    /// Until then a replica that does not stream yet is looked at every [`NOT_STREAMING_RECHECK`].
    pub(super) recheck_until: Option<Instant>,
    /// The leader's memory of member slots (`retain_slots`, `member_slots_ttl`).
    pub(super) slot_retention: crate::postgres::slots::SlotRetention,
    /// When the loop last woke the startup process of a replica that does not stream yet.
    pub(super) last_nudge: Option<Instant>,
    /// The last cycle could not read the DCS.
    pub(super) dcs_failing: bool,
}

/// Why the HA task ended.
#[derive(Debug)]
pub enum HaExit {
    /// Asked to stop (SIGTERM/SIGINT); the shutdown plan ran.
    Stopped,
    /// The policy asked the agent to exit with an error.
    Fatal(String),
}

impl Ha {
    /// Build the task. `pg` is the controller for `pg_settings(cfg, bootstrap.dcs)`.
    pub fn new(
        cfg: Arc<Config>,
        dcs: Arc<dyn Dcs>,
        pg: Postgres,
        shared: Arc<HaShared>,
        status_tx: watch::Sender<Arc<NodeStatus>>,
    ) -> Ha {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let http = peer_client(&cfg);
        let (dynamic, from_cache) = initial_dynamic(&cfg);
        let watchdog = Watchdog::from_config(&cfg.watchdog);
        let callbacks =
            Callbacks::new(cfg.postgresql.callbacks.clone(), &cfg.scope).with_metrics(shared.metrics.clone());
        shared.ttl_secs.store(dynamic.ttl, Ordering::Relaxed);
        shared.failsafe_mode.store(dynamic.failsafe_mode, Ordering::Relaxed);
        Ha {
            cfg,
            dynamic,
            config_version: None,
            dcs,
            pg: Arc::new(pg),
            shared,
            status_tx,
            mem: Memory::default(),
            rs: Arc::new(Mutex::new(RoleState {
                role: Role::Uninitialized,
                label: None,
                started_by_us: false,
            })),
            task: None,
            done_tx,
            done_rx,
            finished: Vec::new(),
            watchdog: Arc::new(Mutex::new(watchdog)),
            callbacks,
            last_cluster: None,
            exit: None,
            dcs_last_seen: 0,
            http,
            last_status_written: None,
            last_failsafe_written: None,
            last_pg: PgState::default(),
            last_obs: None,
            reload_rx: None,
            cache_needs_saving: false,
            sync_rt: Default::default(),
            commands: None,
            sampler: None,
            dcs_probe: None,
            recheck_until: None,
            last_nudge: None,
            dcs_failing: false,
            slot_retention: Default::default(),
        }
        .with_cached_dynamic(from_cache)
    }

    /// The cached dynamic configuration differs from `bootstrap.dcs`, which `pg` was built for.
    fn with_cached_dynamic(mut self, from_cache: bool) -> Ha {
        if from_cache {
            self.rebuild_pg();
        }
        self
    }

    /// Patroni `Config.save_cache`: after a cycle that applied a new `/config`, write it to
    /// `<data_dir>/patroni.dynamic.json` (once PostgreSQL has a data directory).
    fn save_dynamic_cache(&mut self) {
        let data_dir = &self.cfg.postgresql.data_dir;
        if !self.cache_needs_saving || self.role() == Role::Uninitialized || !data_dir.is_dir() {
            return;
        }
        match self.dynamic.save_cache(data_dir) {
            Ok(()) => self.cache_needs_saving = false,
            Err(e) => {
                warn!("failed to write {}: {e}", data_dir.join(crate::config::dynamic::CACHE_FILE).display())
            }
        }
    }

    /// Let the WAL-confirmation sampler probe `dcs` (the store as connected, not wrapped with the
    /// deadline of [`HaShared::at_risk`]: the probe is what raises it) while the replicas are
    /// silent ([`super::fence::dcs_probe_due`]).
    pub fn with_dcs_probe(mut self, dcs: Arc<dyn Dcs>) -> Ha {
        self.dcs_probe = Some(dcs);
        self
    }

    /// Receive reloaded local configurations (SIGHUP) through `rx`; applied between cycles.
    pub fn with_reload(mut self, rx: mpsc::UnboundedReceiver<Config>) -> Ha {
        self.reload_rx = Some(rx);
        self
    }

    pub(super) fn role(&self) -> Role {
        self.rs.lock().expect("role lock").role.clone()
    }

    pub(super) fn timing(&self) -> Timing {
        timing(&self.dynamic)
    }

    /// Replace the local configuration (SIGHUP): callbacks, tags, PostgreSQL settings, the peer
    /// client (credentials, client certificate).
    pub fn reload_config(&mut self, cfg: Config) {
        self.callbacks.set_config(cfg.postgresql.callbacks.clone());
        // Patroni re-creates its request wrapper on reload: credentials and the client
        // certificate (re-read from disk) apply to the next requests to peers.
        match peer_identity(&cfg) {
            Ok(id) => self.http = build_peer_client(&cfg, id),
            Err(e) => error!("{e}; requests to peers keep the previous client certificate"),
        }
        self.cfg = Arc::new(cfg);
        self.rebuild_pg();
        info!("Reloading configuration");
    }

    pub(super) fn rebuild_pg(&mut self) {
        let mut settings = pg_settings(&self.cfg, &self.dynamic);
        settings.synchronous_standby_names = self.ssn_override();
        match Postgres::new(settings) {
            Ok(p) => self.pg = Arc::new(p.with_session_of(&self.pg)),
            Err(e) => error!("failed to apply the new PostgreSQL settings: {e}"),
        }
    }

    /// Apply `/config` when its version changed.
    async fn apply_dynamic(&mut self, cluster: &Cluster) {
        let Some(c) = &cluster.config else {
            return;
        };
        if c.data.is_empty() || self.config_version == Some(c.version) {
            return;
        }
        let (d, problems) = DynamicConfig::from_json(&Value::Object(c.data.clone()));
        for p in problems {
            warn!("{p}");
        }
        let params_changed = d.postgresql.parameters != self.dynamic.postgresql.parameters
            || d.postgresql.use_slots != self.dynamic.postgresql.use_slots;
        let timing_changed = d.ttl != self.dynamic.ttl
            || d.loop_wait != self.dynamic.loop_wait
            || d.retry_timeout != self.dynamic.retry_timeout;
        let first = self.config_version.is_none();
        let sync_mode_changed = d.synchronous_mode != self.dynamic.synchronous_mode
            || d.synchronous_mode_strict != self.dynamic.synchronous_mode_strict;
        self.config_version = Some(c.version);
        self.cache_needs_saving = true;
        self.dynamic = d;
        self.shared.ttl_secs.store(self.dynamic.ttl, Ordering::Relaxed);
        self.shared.failsafe_mode.store(self.dynamic.failsafe_mode, Ordering::Relaxed);
        if (timing_changed || first)
            && let Err(e) = self
                .dcs
                .set_timing(
                    self.dynamic.ttl_duration(),
                    self.dynamic.loop_wait_duration(),
                    self.dynamic.retry_timeout_duration(),
                )
                .await
        {
            warn!("failed to apply the new ttl to the DCS: {e}");
        }
        if sync_mode_changed && !first && self.task.is_none() {
            // Turning synchronous mode off with /sync still present waits for
            // DisableSyncReplication (delete /sync first, then restore the user's value).
            let off = self.dynamic.synchronous_mode == SynchronousMode::Off;
            if off && cluster.sync.is_empty() {
                if let Err(e) = self.restore_user_ssn().await {
                    warn!("failed to restore synchronous_standby_names: {e:#}");
                }
            } else if !params_changed {
                self.rebuild_pg();
                if self.pg.is_running() {
                    let role = self.conf_role_current();
                    if let Err(e) = self.pg.reload(&role).await {
                        warn!("failed to reload PostgreSQL: {e}");
                    }
                }
            }
        }
        if params_changed || first {
            self.rebuild_pg();
            if !first && self.pg.is_running() && self.task.is_none() {
                let role = self.conf_role_current();
                match self.pg.reload(&role).await {
                    Ok(()) => {
                        info!("Reloading PostgreSQL configuration.");
                        self.callbacks.fire(CallbackAction::OnReload, self.role().as_str());
                    }
                    Err(e) => warn!("failed to reload PostgreSQL: {e}"),
                }
            }
        }
    }

    fn collect_finished(&mut self) {
        while let Ok(d) = self.done_rx.try_recv() {
            self.task = None;
            self.finished.push(d.finished);
        }
        if let Some(t) = &self.task
            && t.handle.is_finished()
        {
            // The task ended without reporting (panicked or was aborted).
            let kind = t.action.kind.clone();
            self.task = None;
            self.finished.push(Finished::Other(kind));
        }
    }

    /// One cycle. Returns the decision (for logging and tests).
    pub async fn run_cycle(&mut self) -> Decision {
        let cycle_started = Instant::now();
        self.start_sampler();
        self.collect_finished();
        self.serve_commands().await;
        let t = self.timing();
        let read =
            tokio::time::timeout(t.retry_timeout + Duration::from_secs(1), self.dcs.load_cluster()).await;
        let cluster: Result<Cluster, DcsUnavailable> = match read {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(DcsUnavailable(e.to_string())),
            Err(_) => Err(DcsUnavailable("timed out reading the cluster".into())),
        };
        if let Err(e) = &cluster {
            error!("Error communicating with DCS: {e}");
            debug!(
                failsafe_mode = self.dynamic.failsafe_mode,
                last_failsafe = ?self.mem.last_failsafe,
                "DCS unavailable"
            );
        }
        if cluster.is_ok() && self.dcs_failing {
            // Back from a DCS outage (a partition that healed): a replica may have to reconnect to
            // its primary; look again soon, as after a change of upstream.
            self.recheck_until = Some(Instant::now() + RECHECK_WINDOW);
        }
        self.dcs_failing = cluster.is_err();
        if let Ok(c) = &cluster {
            self.dcs_last_seen = chrono::Utc::now().timestamp().max(0) as u64;
            if let Ok(mut v) = self.shared.dcs_view.lock() {
                *v = Some(Arc::new(DcsView { cluster: c.clone(), read_at: chrono::Utc::now() }));
            }
            self.apply_dynamic(c).await;
        }
        let obs = self.pg.observe().await;
        if self.role() == Role::Uninitialized && self.last_obs.is_none() {
            let r = initial_role(&self.pg, &obs);
            self.rs.lock().expect("role lock").role = r;
        }
        let pg = pg_state(&self.pg, &obs, &self.role()).await;
        let policy = policy(&self.cfg, &self.dynamic);
        let timing = self.timing();
        let me = {
            let mut wd = self.watchdog.lock().expect("watchdog lock");
            wd.set_timing(timing.ttl, timing.loop_wait);
            identity(&self.cfg, &wd)
        };
        let now = self.shared.now();
        let wall = chrono::Utc::now();
        let ping = self.shared.failsafe_ping.lock().expect("failsafe lock").clone();
        let finished = std::mem::take(&mut self.finished);
        let in_flight = self.task.as_ref().map(|t| t.action.clone());
        let scheduled_restart = self.scheduled_restart();
        let wal_confirmation = self.wal_confirmation(&pg);
        let mut steps = StepResults::default();
        let mut guard = 0;
        let decision = loop {
            let snap = Snapshot {
                now,
                wall,
                me: &me,
                cluster: cluster.as_ref().map_err(Clone::clone),
                pg: &pg,
                policy: &policy,
                timing,
                in_flight: in_flight.as_ref(),
                finished: &finished,
                failsafe_ping: ping.as_ref(),
                scheduled_restart: scheduled_restart.as_ref(),
                steps: &steps,
                wal_confirmation,
            };
            let d = decide(&snap, &self.mem);
            match d.step.clone() {
                Some(step) if guard < 10 => {
                    guard += 1;
                    if cluster.is_err() {
                        info!("step {step} while the DCS is not accessible");
                    }
                    debug!("step {step}");
                    self.perform_step(step, cluster.as_ref().ok(), &pg, &mut steps).await;
                }
                _ => break d,
            }
        };
        let cb_before = self.mem.cb_called;
        if !finished.is_empty()
            || decision
                .actions
                .iter()
                .any(|a| long_kind(a, "").is_some() || matches!(a, super::action::Action::Follow { .. }))
        {
            self.recheck_until = Some(Instant::now() + RECHECK_WINDOW);
        }
        self.mem = decision.next.clone();
        if !self.mem.is_leader(self.shared.now()) {
            self.slot_retention.reset();
        }
        for n in &decision.notes {
            info!("{n}");
        }
        info!("{}", decision.log_line());
        if !decision.actions.is_empty() {
            debug!(
                "actions: {}",
                decision.actions.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        for a in decision.actions.clone() {
            if let Err(e) = self.execute(a.clone(), cluster.as_ref().ok(), &pg).await {
                error!("failed to {a}: {e:#}");
                break;
            }
        }
        if !cb_before && self.mem.cb_called && !self.rs.lock().expect("role lock").started_by_us {
            // PostgreSQL was already running when the agent started (Patroni `cb_called`).
            self.callbacks.fire(CallbackAction::OnStart, self.role().as_str());
        }
        if let Ok(c) = &cluster {
            self.touch_member(&pg, &policy).await;
            self.last_cluster = Some(c.clone());
        }
        let stopped_now = decision
            .actions
            .iter()
            .any(|a| matches!(a, super::action::Action::Demote(_) | super::action::Action::StopImmediate));
        if stopped_now {
            self.update_sampler(&PgState::default(), policy.partition);
        } else {
            self.update_sampler(&pg, policy.partition);
        }
        self.last_pg = pg;
        // After a stop in this cycle the observation is stale: publish no WAL position, so that
        // peers in a leader race do not take this node for a running primary.
        let stopped = decision
            .actions
            .iter()
            .any(|a| matches!(a, super::action::Action::Demote(_) | super::action::Action::StopImmediate));
        self.last_obs = if stopped { None } else { Some(obs) };
        self.publish_status(&policy, &decision);
        self.save_dynamic_cache();
        *self.shared.last_cycle.lock().expect("cycle lock") = Instant::now();
        let now = self.shared.now();
        let lease_left = self.mem.leader_until.filter(|t| *t > now).map(|t| t.0 - now.0);
        self.shared.metrics.record_cycle(cycle_started.elapsed(), &decision.log_line(), lease_left);
        decision
    }

    /// The member value of PATRONI-COMPAT §2.3 for this node.
    pub(super) fn member_data(&self, pg: &PgState, policy: &DynamicPolicy) -> MemberData {
        let rs = self.rs.lock().expect("role lock").clone();
        let cfg = &self.cfg;
        let mut tags = cfg.tags.member_tags();
        self.sync_release_tags(&mut tags);
        let state = rs.label.clone().unwrap_or_else(|| state_label(pg).to_string());
        let mut m = MemberData {
            conn_url: format!("postgres://{}/postgres", cfg.postgresql.connect_address),
            api_url: format!(
                "{}://{}/patroni",
                if cfg.restapi.certfile.is_some() { "https" } else { "http" },
                cfg.restapi.connect_address
            ),
            state,
            role: rs.role.clone(),
            version: crate::types::PATRONI_COMPAT_VERSION.to_string(),
            proxy_url: cfg.postgresql.proxy_address.as_ref().map(|p| format!("postgres://{p}/postgres")),
            tags: (!tags.is_empty()).then_some(tags),
            pause: policy.pause.then_some(true),
            scheduled_restart: self.scheduled_restart_values().0,
            ..Default::default()
        };
        if pg.run == PgRun::Running {
            if pg.is_in_recovery == Some(false) {
                m.xlog_location = Some(pg.wal_position());
            } else {
                m.xlog_location = Some(pg.wal_position());
                m.replay_lsn = pg.replay_lsn.map(|l| l.0);
                m.receive_lsn = pg.receive_lsn.map(|l| l.0);
                m.replication_state = Some(self.replication_state().to_string());
            }
            m.timeline = pg.timeline;
            if pg.pending_restart {
                m.pending_restart = Some(true);
            }
        }
        m
    }

    fn replication_state(&self) -> &'static str {
        let streaming = self
            .last_obs
            .as_ref()
            .and_then(|o| o.facts())
            .and_then(|f| f.wal_receiver.as_ref())
            .is_some_and(|w| w.status == "streaming");
        if streaming { "streaming" } else { "in archive recovery" }
    }

    async fn touch_member(&mut self, pg: &PgState, policy: &DynamicPolicy) {
        let data = self.member_data(pg, policy).to_json();
        let t = self.timing();
        match tokio::time::timeout(t.retry_timeout, self.dcs.touch_member(&data)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!("failed to update member key: {e}"),
            Err(_) => warn!("failed to update member key: timed out"),
        }
    }

    fn publish_status(&self, policy: &DynamicPolicy, decision: &super::action::Decision) {
        let pg = &self.last_pg;
        let rs = self.rs.lock().expect("role lock").clone();
        let mut s = NodeStatus::initial(&self.cfg.scope, &self.cfg.name);
        s.state = rs.label.clone().unwrap_or_else(|| state_label(pg).to_string());
        s.role = match rs.role {
            Role::Primary | Role::Promoted => Role::Primary,
            Role::StandbyLeader => Role::StandbyLeader,
            Role::Uninitialized => Role::Uninitialized,
            _ => Role::Replica,
        };
        s.pause = policy.pause;
        s.scheduled_restart = self.scheduled_restart_values().1;
        s.dcs_last_seen = self.dcs_last_seen;
        s.tags = self.cfg.tags.member_tags();
        s.noloadbalance = self.cfg.tags.noloadbalance;
        s.is_leader = self.mem.is_leader(self.shared.now());
        s.cluster_known = self.last_cluster.is_some();
        s.maximum_lag_on_failover = policy.maximum_lag_on_failover;
        s.watchdog_failed = self.watchdog.lock().expect("watchdog lock").failed();
        self.sync_release_tags(&mut s.tags);
        if policy.synchronous_mode != SyncMode::Off && pg.is_in_recovery == Some(false) {
            s.writes_blocked_reason = self.sync_rt.writes_blocked.clone();
            s.writes_blocked = s.writes_blocked_reason.is_some();
        }
        if let Some(c) = &self.last_cluster {
            s.cluster_unlocked = c.is_unlocked();
            s.leader_optime = c.status.optime.unwrap_or(0);
            // Only a replica that the current leader's `/sync` names (Patroni `is_sync_standby`).
            let kind = super::sync::standby_kind(
                policy.synchronous_mode != SyncMode::Off,
                policy.synchronous_mode == SyncMode::Quorum,
                pg.is_in_recovery == Some(true),
                c.leader.as_ref().map(|l| l.name.as_str()),
                &c.sync,
                &self.cfg.name,
            );
            s.sync_standby = kind == super::sync::StandbyKind::Sync;
            s.quorum_standby = kind == super::sync::StandbyKind::Quorum;
        }
        s.failsafe_mode_is_active = policy.failsafe_mode && s.is_leader && self.dcs_last_seen > 0 && {
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            now.saturating_sub(self.dcs_last_seen) > self.dynamic.retry_timeout
        };
        if let Some(f) = self.last_obs.as_ref().and_then(|o| o.facts()) {
            s.postmaster_start_time = Some(f.postmaster_start_time.to_rfc3339());
            s.server_version = Some(f.server_version);
            s.timeline = f.timeline.map(u64::from);
            s.database_system_identifier = Some(f.system_identifier.clone());
            s.pending_restart = !f.pending_restart.is_empty();
            if f.in_recovery {
                s.xlog = Some(Xlog::Replica {
                    received_location: f.receive_lsn.map(|l| l.0).unwrap_or(0),
                    replayed_location: f.replay_lsn.map(|l| l.0).unwrap_or(0),
                    replayed_timestamp: f.replay_timestamp.map(|t| t.to_rfc3339()),
                    paused: f.replay_paused,
                });
                s.replication_state = Some(self.replication_state().into());
                s.latest_end_lsn =
                    f.wal_receiver.as_ref().and_then(|w| w.flushed_lsn).map(|l| l.0).unwrap_or(0);
            } else {
                s.xlog =
                    Some(Xlog::Primary { location: f.flush_lsn.or(f.write_lsn).map(|l| l.0).unwrap_or(0) });
            }
            s.replication = f
                .replication
                .iter()
                .map(|r| crate::api::status::ReplicationRow {
                    usename: r.usename.clone(),
                    application_name: r.application_name.clone(),
                    client_addr: r.client_addr.clone(),
                    state: r.state.clone().unwrap_or_default(),
                    sync_state: r.sync_state.clone().unwrap_or_default(),
                    sync_priority: r.sync_priority.unwrap_or(0),
                })
                .collect();
        } else if pg.sysid.is_some() {
            s.database_system_identifier = pg.sysid.clone();
        }
        s.praetor_ha = Some(crate::api::status::HaDecisionInfo {
            decision: decision.log_line(),
            actions: decision.actions.iter().map(|a| a.to_string()).collect(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        self.status_tx.send_replace(Arc::new(s));
    }

    /// Within [`RECHECK_WINDOW`] of a long action or a change of upstream, PostgreSQL runs (or
    /// starts) as a replica whose WAL receiver does not stream yet, and no long action is in
    /// flight: after a start, a clone or a rewind the loop looks again soon, so
    /// that `GET /patroni` and the member key say `streaming` when it is, not up to `loop_wait`
    /// later (Patroni's REST handler asks PostgreSQL on every request instead).
    fn replica_not_streaming_yet(&self) -> bool {
        let pg = &self.last_pg;
        self.recheck_until.is_some_and(|t| Instant::now() < t)
            && self.task.is_none()
            && matches!(pg.run, PgRun::Running | PgRun::Starting)
            && pg.is_in_recovery != Some(false)
            && self.replication_state() != "streaming"
    }

    /// A replica that does not stream yet: end PostgreSQL's `wal_retrieve_retry_interval` sleep
    /// with a SIGHUP (at most every [`NOT_STREAMING_NUDGE`]), so that it tries its primary again
    /// now that the loop sees it reachable, not up to 5 s later.
    fn nudge_replica_not_streaming(&mut self) {
        if self.dcs_failing
            || !self.replica_not_streaming_yet()
            || self.last_nudge.is_some_and(|t| t.elapsed() < NOT_STREAMING_NUDGE)
            || configured_upstream(self.pg.settings().config_dir()).is_none()
        {
            return;
        }
        self.last_nudge = Some(Instant::now());
        match self.pg.signal_reload() {
            Ok(()) => debug!("the replica does not stream yet: SIGHUP to retry streaming now"),
            Err(e) => debug!("SIGHUP to a replica that does not stream yet failed: {e}"),
        }
    }

    /// Sleep until the next cycle: `loop_wait` (or `wake_after`), waking early when the leader key
    /// changes (non-leaders), a task finishes, or `stop` fires.
    async fn sleep(&mut self, decision: &Decision, started: Instant, stop: &CancellationToken) {
        let t = self.timing();
        let mut wait = t.loop_wait;
        if let Some(w) = decision.wake_after {
            wait = wait.min(w);
        }
        if self.replica_not_streaming_yet() {
            wait = wait.min(NOT_STREAMING_RECHECK);
        }
        let elapsed = started.elapsed();
        if elapsed >= wait {
            info!("Loop time exceeded, rescheduling immediately.");
            return;
        }
        let left = wait - elapsed;
        let is_leader = self.mem.is_leader(self.shared.now());
        let leader_version = self.last_cluster.as_ref().and_then(|c| c.leader.as_ref().map(|l| l.version));
        let dcs = self.dcs.clone();
        let watch = async move {
            if is_leader {
                tokio::time::sleep(left).await;
            } else {
                let deadline = tokio::time::Instant::now() + left;
                match dcs.watch(leader_version, left).await {
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep_until(deadline).await,
                }
            }
        };
        let floor = tokio::time::sleep(Duration::from_millis(100));
        tokio::select! {
            _ = watch => { floor.await; }
            _ = self.shared.wake.notified() => {}
            Some(d) = self.done_rx.recv() => {
                self.task = None;
                self.finished.push(d.finished);
            }
            Some(c) = async { match self.commands.as_mut() { Some(c) => c.rx.recv().await, None => None } } => {
                self.serve_command(c).await;
            }
            _ = stop.cancelled() => {}
        }
    }

    /// Run until `stop` fires (then the shutdown plan) or the policy asks to exit.
    pub async fn run(mut self, stop: CancellationToken) -> HaExit {
        loop {
            let started = Instant::now();
            let mut reloaded = Vec::new();
            if let Some(rx) = &mut self.reload_rx {
                while let Ok(c) = rx.try_recv() {
                    reloaded.push(c);
                }
            }
            for c in reloaded {
                self.reload_config(c);
            }
            let d = self.run_cycle().await;
            self.nudge_replica_not_streaming();
            if let Some(why) = self.exit.take() {
                error!("{why}");
                self.cancel_task().await;
                let _ = self.dcs.close().await;
                return HaExit::Fatal(why);
            }
            if stop.is_cancelled() {
                break;
            }
            self.sleep(&d, started, &stop).await;
            if stop.is_cancelled() {
                break;
            }
        }
        self.shutdown().await;
        HaExit::Stopped
    }

    /// Patroni `Ha.shutdown`: a leader stops PostgreSQL and releases the key with the shutdown
    /// checkpoint LSN in `/status`; paused, PostgreSQL is left running.
    pub async fn shutdown(&mut self) {
        let policy = policy(&self.cfg, &self.dynamic);
        let plan = shutdown_plan(&policy, &self.mem, self.shared.now());
        self.cancel_task().await;
        match plan {
            ShutdownPlan::LeaveRunning => {
                info!("Leader key is not deleted and Postgresql is not stopped due paused state");
                self.watchdog.lock().expect("watchdog lock").disable();
            }
            ShutdownPlan::Stop { release_lock } => {
                let released_early = if release_lock {
                    self.stop_releasing_early().await
                } else {
                    self.stop_postgres_for_shutdown().await;
                    false
                };
                if release_lock && !released_early {
                    let lsn = self.pg.controldata().await.ok().and_then(|c| c.checkpoint_lsn());
                    if let Some(l) = lsn {
                        let st = crate::dcs::model::Status { optime: Some(l.0), ..Default::default() };
                        let _ = self.dcs.write_status(&st.to_json()).await;
                    }
                    let leader = self.last_cluster.as_ref().and_then(|c| c.leader.clone());
                    match self.dcs.delete_leader(leader.as_ref()).await {
                        Ok(true) => info!("Leader key released"),
                        Ok(false) => info!("Leader key was not ours any more"),
                        Err(e) => warn!("failed to release the leader key: {e}"),
                    }
                }
            }
        }
        self.callbacks.wait_idle(Duration::from_secs(5)).await;
        if let Err(e) = self.dcs.close().await {
            warn!("failed to close the DCS connection: {e}");
        }
    }
}

impl Ha {
    /// Stop PostgreSQL for shutdown as a leader, with Patroni's `on_shutdown` (`Ha.shutdown`): once
    /// pg_control reads "shut down" (the shutdown checkpoint is written) while the postmaster still
    /// waits, e.g. for a walsender whose standby never confirms, and a member that could take over
    /// has received that checkpoint, the key is released at once (the checkpoint LSN in `/status`)
    /// instead of when the postmaster exits. `true` when the key was released that way.
    async fn stop_releasing_early(&mut self) -> bool {
        let (pg, dcs, http) = (self.pg.clone(), self.dcs.clone(), self.http.clone());
        let me = self.cfg.name.clone();
        let cluster = self.last_cluster.clone();
        let early = async move {
            let cluster = cluster?;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Ok(cd) = pg.controldata().await else { continue };
                let Some(lsn) = cd.checkpoint_lsn().filter(|_| cd.cluster_state() == Some("shut down"))
                else {
                    continue;
                };
                // Give the replicas a moment to receive the checkpoint (Patroni sleeps 1 s too).
                tokio::time::sleep(Duration::from_secs(1)).await;
                if !has_member_with(&http, &cluster, &me, lsn.0).await {
                    continue;
                }
                let st = crate::dcs::model::Status { optime: Some(lsn.0), ..Default::default() };
                let _ = dcs.write_status(&st.to_json()).await;
                match dcs.delete_leader(cluster.leader.as_ref()).await {
                    Ok(true) => info!("Leader key released"),
                    Ok(false) => info!("Leader key was not ours any more"),
                    Err(e) => {
                        warn!("failed to release the leader key: {e}");
                        continue;
                    }
                }
                return Some(());
            }
        };
        let stop = self.stop_postgres_for_shutdown();
        tokio::pin!(stop);
        tokio::select! {
            () = &mut stop => false,
            r = early => {
                stop.await;
                r.is_some()
            }
        }
    }
}

/// Patroni `is_failover_possible(cluster_lsn=…)` at shutdown: another member answers
/// `GET /patroni` as a replica that may promote and has received WAL up to `lsn`.
async fn has_member_with(http: &reqwest::Client, cluster: &Cluster, me: &str, lsn: u64) -> bool {
    let calls = cluster.members.iter().filter(|m| m.name != me && !m.data.api_url.is_empty()).map(|m| {
        let http = http.clone();
        let url = m.data.api_url.clone();
        async move {
            let Ok(r) = http.get(&url).send().await else { return false };
            let Ok(v) = r.json::<Value>().await else { return false };
            let st = super::snapshot::PeerStatus::from_patroni_json(&v);
            st.in_recovery == Some(true) && st.failover_limitation().is_none() && st.wal_position >= lsn
        }
    });
    futures::future::join_all(calls).await.into_iter().any(|ok| ok)
}

/// Patroni's PostgreSQL state label for the member key when no operation sets one.
pub fn state_label(pg: &PgState) -> &'static str {
    match pg.run {
        PgRun::Running => "running",
        PgRun::Starting => "starting",
        PgRun::Stopped => "stopped",
        PgRun::Crashed => "crashed",
        PgRun::Unknown => "unknown",
    }
}

/// The long action kind for an action, if it runs as a task.
pub(super) fn long_kind(a: &super::action::Action, failover_action: &str) -> Option<LongActionKind> {
    use super::action::{Action, DemoteMode};
    Some(match a {
        Action::Promote => LongActionKind::Promote,
        Action::Demote(DemoteMode::Graceful) => LongActionKind::Demote(failover_action.to_string()),
        Action::StartAsPrimary { .. } => LongActionKind::StartingPrimaryAfterFailure,
        Action::StartAsReplica { .. } => LongActionKind::RestartingAfterFailure,
        Action::Rewind { from } => LongActionKind::Rewind(from.name.clone()),
        Action::Reinitialize { .. } => LongActionKind::Reinitialize,
        Action::CreateReplica { from: Some(f) } => {
            LongActionKind::Clone { from: f.name.clone(), from_leader: false }
        }
        Action::CreateReplica { from: None } => LongActionKind::CloneWithoutLeader,
        Action::Bootstrap => LongActionKind::Bootstrap,
        Action::PostBootstrap => LongActionKind::PostBootstrap,
        Action::CrashRecovery => LongActionKind::CrashRecovery,
        Action::Restart { .. } => LongActionKind::Restart,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_is_read_from_primary_conninfo() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            d.path().join("postgresql.conf"),
            "port = '5433'\nprimary_conninfo = 'user=replicator passfile=/tmp/p host=127.0.0.1 port=6001 application_name=pg1'\n",
        )
        .expect("write");
        assert_eq!(configured_upstream(d.path()), Some(HostPort { host: "127.0.0.1".into(), port: 6001 }));
        std::fs::write(d.path().join("postgresql.conf"), "port = '5433'\n").expect("write");
        assert_eq!(configured_upstream(d.path()), None);
    }

    fn load(yaml: &str) -> Config {
        let opts = crate::config::LoadOptions::default();
        match crate::config::load_str(yaml, &opts) {
            Ok(l) => l.config,
            Err(e) => panic!("config: {:?}", e.0),
        }
    }

    const YAML: &str = "scope: demo\nname: pg1\nrestapi: {listen: 127.0.0.1:8009, connect_address: 127.0.0.1:8009}\n\
        etcd3: {hosts: ['127.0.0.1:2379']}\n\
        bootstrap: {dcs: {ttl: 30, loop_wait: 10, retry_timeout: 10, postgresql: {use_pg_rewind: true, parameters: {max_connections: 50}}}}\n\
        postgresql: {listen: '127.0.0.1:5433', connect_address: '127.0.0.1:5433', data_dir: /tmp/x/pg1, pgpass: /tmp/x/pgpass,\n\
          authentication: {superuser: {username: postgres, password: a}, replication: {username: rep, password: b}},\n\
          parameters: {work_mem: 8MB}}\n\
        tags: {failover_priority: 0, clonefrom: true, replicatefrom: pg0}\n";

    /// Patroni `Config._load_cache`: the dynamic configuration last read from the DCS, saved in
    /// `<data_dir>/patroni.dynamic.json`, is used at start instead of `bootstrap.dcs`.
    #[test]
    fn dynamic_config_cache_is_used_at_start_before_the_dcs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("pg1");
        let yaml = YAML.replace("/tmp/x/pg1", &data.display().to_string());
        let cfg = load(&yaml);
        let (d, cached) = initial_dynamic(&cfg);
        assert!(!cached, "no data directory yet: bootstrap.dcs");
        assert_eq!(d, cfg.bootstrap.dcs);

        std::fs::create_dir(&data).expect("mkdir");
        let (from_dcs, problems) = DynamicConfig::from_json_str(
            r#"{"ttl": 40, "loop_wait": 5, "retry_timeout": 10, "postgresql": {"parameters": {"max_connections": 77}}}"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        from_dcs.save_cache(&data).expect("save");
        let (d, cached) = initial_dynamic(&cfg);
        assert!(cached);
        assert_eq!(d.ttl, 40);
        assert_eq!(d.loop_wait, 5);
        assert_eq!(pg_settings(&cfg, &d).dynamic_parameters.get("max_connections"), Some(&json!(77)));
    }

    #[test]
    fn config_maps_to_controller_settings_and_identity() {
        let cfg = load(YAML);
        let d = cfg.bootstrap.dcs.clone();
        let s = pg_settings(&cfg, &d);
        assert_eq!(s.name, "pg1");
        assert_eq!(s.listen, "127.0.0.1:5433");
        assert_eq!(s.replication.username, "rep");
        assert_eq!(s.dynamic_parameters.get("max_connections"), Some(&json!(50)));
        assert_eq!(s.parameters.get("work_mem"), Some(&json!("8MB")));
        assert!(s.use_pg_rewind);
        let wd = Watchdog::from_config(&crate::config::validate::WatchdogConfig {
            mode: crate::config::validate::WatchdogMode::Off,
            device: "/nonexistent".into(),
            safety_margin: 5,
        });
        let me = identity(&cfg, &wd);
        // failover_priority 0 means nofailover (Patroni 4).
        assert!(me.tags.nofailover);
        assert_eq!(me.tags.failover_priority, 0);
        assert!(me.tags.clonefrom);
        assert_eq!(me.tags.replicatefrom.as_deref(), Some("pg0"));
        let p = policy(&cfg, &d);
        assert!(p.can_rewind, "use_pg_rewind with the default wal_log_hints=on");
        assert_eq!(timing(&d).ttl, Duration::from_secs(30));
    }

    /// Patroni re-creates its request wrapper on reload: the client certificate for peers is
    /// read from `ctl.certfile`/`keyfile` each time, and an unusable one is an error naming them
    /// (the reload then keeps the previous client).
    #[test]
    fn peer_client_certificate_is_read_at_each_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = load(YAML);
        assert!(peer_identity(&cfg).expect("no ctl.certfile").is_none());
        let (cert, key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
        cfg.ctl.certfile = Some(cert.clone());
        cfg.ctl.keyfile = Some(key.clone());
        let e = peer_identity(&cfg).expect_err("missing files");
        assert!(e.starts_with("ctl.certfile/keyfile") && e.contains("client.crt"), "{e}");
        let k = rcgen::KeyPair::generate().expect("key");
        let c = rcgen::CertificateParams::new(vec!["praetor".into()])
            .expect("params")
            .self_signed(&k)
            .expect("cert");
        std::fs::write(&cert, c.pem()).expect("write");
        std::fs::write(&key, k.serialize_pem()).expect("write");
        assert!(peer_identity(&cfg).expect("rotated in").is_some());
        std::fs::write(&key, "not a key\n").expect("write");
        assert!(peer_identity(&cfg).is_err(), "a broken key is refused");
    }

    #[test]
    fn timing_rule_holds_for_the_defaults() {
        assert!(timing(&DynamicConfig::default()).demotes_before_lease_expiry());
    }
}
