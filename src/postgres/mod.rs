//! PostgreSQL controller: every operation the HA loop performs on the local server, each callable
//! and tested on its own — observe, start, stop (smart/fast/immediate), restart, reload, promote,
//! bootstrap, replica creation, configuration files, rewind, replication slots.
//!
//! Owns: PGDATA, the postmaster, SQL to the local server, PostgreSQL subprocesses.
//! May use: `types`. Must not use: `dcs`, `ha`, `api`, `config` (its input is the plain
//! [`PgSettings`], which the config module maps the Patroni YAML into).
//!
//! The postmaster runs detached (own session, not killed with the agent) and is found again from
//! `postmaster.pid`; every other subprocess goes through [`process::run`]. When the agent runs as
//! root, PostgreSQL binaries and scripts run as [`PgSettings::os_user`].

pub mod bin_dir;
pub mod bootstrap;
pub mod conf;
pub mod observe;
pub mod postmaster;
pub mod process;
pub mod replica;
pub mod rewind;
pub mod session;
pub mod settings;
pub mod slots;
pub mod syncrep;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

pub use conf::{ConfRole, Upstream};
pub use observe::{ControlData, PgObservation, ProcessState, SqlFacts, SqlState};
pub use postmaster::{PidFile, PostmasterState, StopMode};
pub use process::{CmdSpec, ProcError, RunAs};
pub use session::{Session, SessionError};
pub use settings::{BootstrapSettings, Credentials, PgSettings};

use conf::ParamCatalog;
use observe::LocalConn;

/// Errors of controller operations.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// A subprocess failed.
    #[error(transparent)]
    Proc(#[from] ProcError),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (verb phrase).
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// A SQL operation failed.
    #[error("{op}: {msg}")]
    Sql {
        /// What was being done.
        op: &'static str,
        /// Error text.
        msg: String,
    },
    /// No PostgreSQL binaries were found.
    #[error("no PostgreSQL binaries found: set postgresql.bin_dir")]
    NoBinDir,
    /// The configured OS user is missing while running as root.
    #[error("resolve the postgresql OS user: {0}")]
    OsUser(#[source] std::io::Error),
    /// The postmaster did not come up.
    #[error("postgres did not start: {reason}")]
    StartFailed {
        /// Why.
        reason: String,
    },
    /// The postmaster did not stop within `pg_ctl_timeout`.
    #[error("postgres (pid {pid}) did not stop within {after:?}")]
    StopTimeout {
        /// Postmaster PID.
        pid: i32,
        /// The timeout.
        after: Duration,
    },
    /// The operation needs a running server.
    #[error("postgres is not running")]
    NotRunning,
    /// Invalid input (names the setting).
    #[error("invalid {field}: {msg}")]
    Invalid {
        /// Setting.
        field: String,
        /// Problem.
        msg: String,
    },
    /// A replica could not be created by any method.
    #[error("no replica creation method succeeded: {0}")]
    ReplicaFailed(String),
}

impl PgError {
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PgError + use<> {
        let path = path.to_path_buf();
        move |source| PgError::Io { op, path, source }
    }
    pub(crate) fn sql(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PgError {
        move |e| PgError::Sql { op, msg: format!("{e}") }
    }
}

/// Result alias.
pub type Result<T, E = PgError> = std::result::Result<T, E>;

/// Outcome of [`Postgres::start`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// A new postmaster was started and accepts connections.
    Started {
        /// PID.
        pid: i32,
    },
    /// A postmaster of this data directory was already running; nothing was started.
    AlreadyRunning {
        /// PID.
        pid: i32,
    },
    /// A new postmaster runs but did not accept connections within `pg_ctl_timeout` (e.g. a
    /// replica still replaying WAL to consistency). Patroni treats this as "starting", not failed.
    StillStarting {
        /// PID.
        pid: i32,
    },
}

/// Outcome of [`Postgres::stop`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// The postmaster exited.
    Stopped,
    /// Nothing ran.
    NotRunning,
    /// `postmaster.pid` named a dead process: it had crashed.
    WasCrashed,
}

/// The controller of one local PostgreSQL. Cheap to re-create: all state lives in PGDATA, except
/// the persistent connection ([`Session`]), which a re-created controller takes over with
/// [`Postgres::with_session_of`].
#[derive(Debug)]
pub struct Postgres {
    settings: PgSettings,
    run_as: Option<RunAs>,
    bin_dir: PathBuf,
    major: OnceCell<u32>,
    catalog: OnceCell<Arc<ParamCatalog>>,
    session: Arc<Session>,
}

impl Postgres {
    /// A controller for `settings`: resolves the bin dir and, when the agent runs as root, the OS
    /// user PostgreSQL runs as.
    pub fn new(settings: PgSettings) -> Result<Postgres> {
        let run_as = RunAs::for_agent(&settings.os_user).map_err(PgError::OsUser)?;
        let bin_dir = match &settings.bin_dir {
            Some(d) => d.clone(),
            None => bin_dir::detect(None).ok_or(PgError::NoBinDir)?,
        };
        Ok(Postgres {
            settings,
            run_as,
            bin_dir,
            major: OnceCell::new(),
            catalog: OnceCell::new(),
            session: Arc::new(Session::new()),
        })
    }

    /// This controller, using `other`'s persistent connection (kept while the connection
    /// parameters stay the same; otherwise the next query reconnects).
    pub fn with_session_of(mut self, other: &Postgres) -> Postgres {
        self.session = other.session.clone();
        self
    }

    /// The persistent connection.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The settings.
    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    /// Replace the settings (after a configuration reload); file changes happen on the next
    /// [`Self::write_config`] / [`Self::reload`].
    pub fn set_settings(&mut self, s: PgSettings) {
        self.settings = s;
    }

    /// PGDATA.
    pub fn data_dir(&self) -> &Path {
        &self.settings.data_dir
    }

    /// The identity subprocesses run under (`None` = the agent's).
    pub fn run_as(&self) -> Option<RunAs> {
        self.run_as
    }

    /// Path of a PostgreSQL binary, honouring `bin_name`.
    pub fn binary(&self, tool: &str) -> PathBuf {
        let name = self.settings.bin_name.get(tool).map(String::as_str).unwrap_or(tool);
        self.bin_dir.join(name)
    }

    /// A command spec for a PostgreSQL tool: runs as the PostgreSQL user, `pg_ctl_timeout`.
    pub fn tool(&self, tool: &str) -> CmdSpec {
        CmdSpec::new(tool, self.binary(tool)).run_as(self.run_as).timeout(self.settings.pg_ctl_timeout)
    }

    /// Major version of the installed server (`postgres --version`), cached.
    pub async fn major_version(&self) -> Result<u32> {
        self.major
            .get_or_try_init(|| async {
                let out = process::run(
                    self.tool("postgres").arg("--version").capture_stdout(),
                    &CancellationToken::new(),
                )
                .await?;
                bin_dir::parse_major(&out.stdout).ok_or_else(|| PgError::Invalid {
                    field: "postgresql.bin_dir".into(),
                    msg: format!("cannot read the version from {:?}", out.stdout.trim()),
                })
            })
            .await
            .copied()
    }

    /// The parameters the installed server knows (`postgres --describe-config`), cached per binary.
    pub async fn param_catalog(&self) -> Result<Arc<ParamCatalog>> {
        self.catalog
            .get_or_try_init(|| async {
                let bin = self.binary("postgres");
                if let Some(c) = conf::catalog_cache().lock().expect("catalog cache lock").get(&bin) {
                    return Ok(c.clone());
                }
                let out = process::run(
                    self.tool("postgres").arg("--describe-config").capture_stdout(),
                    &CancellationToken::new(),
                )
                .await?;
                let c = Arc::new(ParamCatalog::parse(&out.stdout));
                conf::catalog_cache().lock().expect("catalog cache lock").insert(bin, c.clone());
                Ok(c)
            })
            .await
            .cloned()
    }

    /// How the agent reaches its own server as `creds`: the unix socket directory when
    /// `use_unix_socket` (first of `unix_socket_directories`, else the one in `postmaster.pid`,
    /// else `/var/run/postgresql`), otherwise the first listen address (`*`/`0.0.0.0` → 127.0.0.1).
    pub fn local_conn(&self, creds: &Credentials) -> LocalConn {
        let (hosts, port) = self.settings.listen_hosts_port();
        let host = if self.settings.use_unix_socket {
            self.settings
                .parameter("unix_socket_directories")
                .and_then(|d| d.split(',').map(|x| x.trim().to_string()).find(|x| !x.is_empty()))
                .or_else(|| PidFile::read(self.data_dir()).ok().flatten().and_then(|p| p.socket_dir))
                .unwrap_or_else(|| "/var/run/postgresql".into())
        } else {
            match hosts.first().map(String::as_str) {
                None | Some("*") | Some("0.0.0.0") | Some("") => "127.0.0.1".into(),
                Some("::") => "::1".into(),
                Some(h) => h.to_string(),
            }
        };
        LocalConn {
            host,
            port,
            user: creds.username.clone(),
            password: creds.password.as_ref().map(|p| p.expose().clone()),
            dbname: "postgres".into(),
        }
    }

    /// Run `work` on the persistent superuser connection (opened or re-opened as needed), the
    /// whole bounded by `observe_timeout`; `op` names the work in the error.
    pub async fn with_client<T, F, Fut>(&self, op: &'static str, work: F) -> Result<T>
    where
        F: Fn(Arc<tokio_postgres::Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let timeout = self.settings.observe_timeout;
        let conn = self.local_conn(&self.settings.superuser);
        self.session.run(&conn, timeout, work).await.map_err(|e| match e {
            SessionError::TimedOut => PgError::Sql { op, msg: format!("timed out after {timeout:?}") },
            SessionError::Connect(msg) => PgError::Sql { op: "connect", msg },
            SessionError::Work(e) => e,
        })
    }

    /// Open a new superuser connection to the local server (bounded by `observe_timeout`), for
    /// work that should not share the persistent one ([`Self::with_client`]).
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        observe::connect(&self.local_conn(&self.settings.superuser), self.settings.observe_timeout)
            .await
            .map_err(|msg| PgError::Sql { op: "connect", msg })
    }

    /// What `postmaster.pid` says.
    pub fn postmaster_state(&self) -> Result<PostmasterState> {
        postmaster::state(self.data_dir()).map_err(PgError::io("read postmaster.pid", self.data_dir()))
    }

    /// `true` when a postmaster of this data directory runs.
    pub fn is_running(&self) -> bool {
        matches!(self.postmaster_state(), Ok(PostmasterState::Running(_)))
    }

    /// Observe the server. Never takes longer than about `observe_timeout`; a stuck server gives
    /// [`SqlState::Timeout`].
    #[instrument(skip_all)]
    pub async fn observe(&self) -> PgObservation {
        let process = match self.postmaster_state() {
            Ok(PostmasterState::Stopped) | Err(_) => ProcessState::Stopped,
            Ok(PostmasterState::Running(p)) => ProcessState::Running(p),
            Ok(PostmasterState::Crashed(p)) => ProcessState::Crashed(p),
        };
        let sql = match process {
            ProcessState::Running(_) => {
                let conn = self.local_conn(&self.settings.superuser);
                let facts = self
                    .session
                    .run(&conn, self.settings.observe_timeout, async |c| observe::query_facts(&c).await)
                    .await;
                match facts {
                    Ok(f) => SqlState::Ok(Box::new(f)),
                    Err(SessionError::TimedOut) => SqlState::Timeout,
                    Err(SessionError::Connect(e)) => SqlState::Error(e),
                    Err(SessionError::Work(e)) => SqlState::Error(format!("query: {e}")),
                }
            }
            _ => {
                self.session.close();
                SqlState::NotRunning
            }
        };
        PgObservation { process, sql }
    }

    /// Parsed `pg_controldata` of the data directory.
    pub async fn controldata(&self) -> Result<ControlData> {
        let out = process::run(
            self.tool("pg_controldata")
                .arg(self.data_dir())
                .env("LANG", "C")
                .env("LC_ALL", "C")
                .capture_stdout(),
            &CancellationToken::new(),
        )
        .await?;
        Ok(ControlData::parse(&out.stdout))
    }

    /// `true` when the data directory is missing or empty.
    pub fn data_directory_empty(&self) -> bool {
        match std::fs::read_dir(self.data_dir()) {
            Ok(mut it) => it.next().is_none(),
            Err(_) => true,
        }
    }

    /// `true` when the data directory holds an initialized cluster.
    pub fn is_initialized(&self) -> bool {
        self.data_dir().join("PG_VERSION").is_file() && self.data_dir().join("global/pg_control").is_file()
    }

    /// Create PGDATA (mode 0700, owned by the PostgreSQL user) if missing.
    pub fn ensure_data_dir(&self) -> Result<()> {
        let d = self.data_dir();
        if !d.exists() {
            std::fs::create_dir_all(d).map_err(PgError::io("create data directory", d))?;
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
            .map_err(PgError::io("set mode of data directory", d))?;
        if let Some(r) = self.run_as {
            r.chown(d).map_err(PgError::io("chown data directory", d))?;
        }
        Ok(())
    }

    /// Remove everything inside PGDATA (the directory itself stays, with its owner and mode); a
    /// symlinked `pg_wal` is emptied too. Refuses while a postmaster runs.
    pub fn remove_data_directory(&self) -> Result<()> {
        if let Ok(PostmasterState::Running(p)) = self.postmaster_state() {
            return Err(PgError::Invalid {
                field: "data_dir".into(),
                msg: format!("refusing to remove it while postmaster {} runs", p.pid),
            });
        }
        let d = self.data_dir();
        info!(data_dir = %d.display(), "removing data directory contents");
        let entries = match std::fs::read_dir(d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.ensure_data_dir(),
            Err(e) => return Err(PgError::io("list data directory", d)(e)),
        };
        for e in entries {
            let e = e.map_err(PgError::io("list data directory", d))?;
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).map_err(PgError::io("stat", &p))?;
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(&p)
                    && e.file_name() == "pg_wal"
                    && target.is_dir()
                {
                    for w in std::fs::read_dir(&target).map_err(PgError::io("list", &target))?.flatten() {
                        let wp = w.path();
                        let _ = if wp.is_dir() {
                            std::fs::remove_dir_all(&wp)
                        } else {
                            std::fs::remove_file(&wp)
                        };
                    }
                }
                std::fs::remove_file(&p).map_err(PgError::io("remove", &p))?;
            } else if meta.is_dir() {
                std::fs::remove_dir_all(&p).map_err(PgError::io("remove", &p))?;
            } else {
                std::fs::remove_file(&p).map_err(PgError::io("remove", &p))?;
            }
        }
        self.ensure_data_dir()
    }

    /// Write the configuration files for `role`: `postgresql.conf` (original kept as
    /// `postgresql.base.conf`), `pg_hba.conf`/`pg_ident.conf` when configured, `standby.signal`
    /// for a replica (removed for a primary), and the pgpass file (0600). Files are only rewritten
    /// when their content changes. Returns the postmaster command-line options.
    #[instrument(skip_all, fields(role = ?role))]
    pub async fn write_config(&self, role: &ConfRole) -> Result<Vec<(String, String)>> {
        let s = &self.settings;
        let major = self.major_version().await?;
        let catalog = self.param_catalog().await?;
        let dir = s.config_dir().to_path_buf();
        let include =
            conf::prepare_base_conf(s).map_err(PgError::io("keep postgresql.conf as base", &dir))?;
        let (mut params, warnings) = conf::effective_parameters(s, major);
        for w in warnings {
            warn!("{w}");
        }
        catalog.filter(&mut params);
        let mut recovery = conf::recovery_parameters(s, role);
        catalog.filter(&mut recovery);
        let text = conf::render_postgresql_conf(&include, &params, &recovery);
        let path = dir.join("postgresql.conf");
        if conf::write_if_changed(&path, &text, 0o600, self.run_as).map_err(PgError::io("write", &path))? {
            info!(path = %path.display(), "wrote postgresql.conf");
        }
        for (lines, file) in [(&s.pg_hba, "pg_hba.conf"), (&s.pg_ident, "pg_ident.conf")] {
            if !lines.is_empty() {
                let p = dir.join(file);
                conf::write_if_changed(&p, &conf::render_lines(lines), 0o600, self.run_as)
                    .map_err(PgError::io("write", &p))?;
            }
        }
        let (keep, drop) = match role {
            ConfRole::Replica { .. } => (Some("standby.signal"), "recovery.signal"),
            ConfRole::Recovery { .. } => (Some("recovery.signal"), "standby.signal"),
            ConfRole::Primary => (None, "standby.signal"),
        };
        if let Some(f) = keep {
            let p = self.data_dir().join(f);
            conf::write_if_changed(&p, "", 0o600, self.run_as).map_err(PgError::io("write", &p))?;
        }
        for f in
            [Some(drop), if keep.is_none() { Some("recovery.signal") } else { None }].into_iter().flatten()
        {
            let p = self.data_dir().join(f);
            if p.exists() {
                std::fs::remove_file(&p).map_err(PgError::io("remove", &p))?;
            }
        }
        self.write_pgpass()?;
        Ok(conf::cmdline_options(&params, major))
    }

    /// Write the pgpass file (mode 0600, owned by the PostgreSQL user).
    pub fn write_pgpass(&self) -> Result<()> {
        let p = &self.settings.pgpass;
        conf::write_if_changed(p, &conf::render_pgpass(&self.settings), 0o600, self.run_as)
            .map_err(PgError::io("write pgpass", p))?;
        Ok(())
    }

    /// Start the postmaster for `role` (configuration written first) unless one already runs for
    /// this data directory, then wait until it accepts connections, bounded by `pg_ctl_timeout`.
    #[instrument(skip_all, fields(data_dir = %self.data_dir().display()))]
    pub async fn start(&self, role: &ConfRole) -> Result<StartOutcome> {
        match self.postmaster_state()? {
            PostmasterState::Running(p) => {
                info!(pid = p.pid, "postmaster already running");
                return Ok(StartOutcome::AlreadyRunning { pid: p.pid });
            }
            PostmasterState::Crashed(p) => {
                warn!(pid = p.pid, "postmaster.pid names a dead process; starting anew");
            }
            PostmasterState::Stopped => {}
        }
        let options = self.write_config(role).await?;
        let spec = postmaster::StartSpec {
            program: self.binary("postgres"),
            data_dir: self.data_dir().to_path_buf(),
            config_file: self.settings.config_dir().join("postgresql.conf"),
            options,
            run_as: self.run_as,
            log_file: self.settings.postmaster_log.clone(),
        };
        let pid = postmaster::spawn_detached(&spec)
            .map_err(|e| PgError::StartFailed { reason: format!("spawn {}: {e}", spec.program.display()) })?;
        if self.wait_ready(pid, self.settings.pg_ctl_timeout).await? {
            info!(pid, "postmaster started");
            Ok(StartOutcome::Started { pid })
        } else {
            warn!(pid, timeout = ?self.settings.pg_ctl_timeout, "postmaster runs but does not accept connections yet");
            Ok(StartOutcome::StillStarting { pid })
        }
    }

    /// Wait until postmaster `pid` reports `ready`/`standby` in `postmaster.pid` and answers SQL:
    /// `Ok(true)`. `Ok(false)` when `timeout` passed while it still runs; an error when it died.
    pub async fn wait_ready(&self, pid: i32, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let conn = self.local_conn(&self.settings.superuser);
        let mut last_err = String::from("no postmaster.pid yet");
        loop {
            if !postmaster::pid_alive(pid) {
                return Err(PgError::StartFailed {
                    reason: format!("postmaster {pid} exited during startup ({last_err}){}", self.log_tail()),
                });
            }
            if let Ok(Some(pf)) = PidFile::read(self.data_dir())
                && pf.pid == pid
                && matches!(pf.status.as_deref(), Some("ready" | "standby"))
            {
                match observe::connect(&conn, Duration::from_secs(2)).await {
                    Ok(c) => match c.simple_query("SELECT 1").await {
                        Ok(_) => return Ok(true),
                        Err(e) => last_err = e.to_string(),
                    },
                    Err(e) => last_err = e,
                }
            }
            if Instant::now() >= deadline {
                info!(pid, "not accepting connections after {timeout:?}: {last_err}");
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let Some(p) = &self.settings.postmaster_log else {
            return String::new();
        };
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("; log: {}", lines[lines.len().saturating_sub(5)..].join(" | "))
    }

    /// Stop with `mode` and wait (bounded by `pg_ctl_timeout`) until the postmaster is gone.
    #[instrument(skip_all, fields(mode = ?mode))]
    pub async fn stop(&self, mode: StopMode) -> Result<StopOutcome> {
        self.stop_with_timeout(mode, self.settings.pg_ctl_timeout).await
    }

    /// [`Self::stop`] with an explicit timeout; on timeout the postmaster keeps running (escalate
    /// with [`StopMode::Immediate`] or SIGKILL via [`Self::kill`]).
    pub async fn stop_with_timeout(&self, mode: StopMode, timeout: Duration) -> Result<StopOutcome> {
        let pid = match self.postmaster_state()? {
            PostmasterState::Stopped => return Ok(StopOutcome::NotRunning),
            PostmasterState::Crashed(_) => return Ok(StopOutcome::WasCrashed),
            PostmasterState::Running(p) => p.pid,
        };
        info!(pid, ?mode, "stopping postgres");
        // A smart shutdown waits for every client, the agent's own connection included.
        self.session.close();
        if !postmaster::signal(pid, mode.signal())
            .map_err(PgError::io("signal postmaster", self.data_dir()))?
        {
            return Ok(StopOutcome::Stopped);
        }
        if postmaster::wait_gone(pid, timeout).await {
            Ok(StopOutcome::Stopped)
        } else {
            Err(PgError::StopTimeout { pid, after: timeout })
        }
    }

    /// SIGKILL the postmaster (its children exit when they notice); used after a stop timeout.
    pub fn kill(&self) -> Result<()> {
        if let PostmasterState::Running(p) = self.postmaster_state()? {
            warn!(pid = p.pid, "killing postmaster");
            postmaster::signal(p.pid, nix::sys::signal::Signal::SIGKILL)
                .map_err(PgError::io("kill postmaster", self.data_dir()))?;
        }
        Ok(())
    }

    /// Stop with `mode`, then start for `role`.
    pub async fn restart(&self, mode: StopMode, role: &ConfRole) -> Result<StartOutcome> {
        self.stop(mode).await?;
        self.start(role).await
    }

    /// Rewrite the configuration for `role` and send SIGHUP.
    pub async fn reload(&self, role: &ConfRole) -> Result<()> {
        self.write_config(role).await?;
        self.signal_reload()
    }

    /// Send the running postmaster a SIGHUP without rewriting the configuration (the startup
    /// process of a replica also ends its `wal_retrieve_retry_interval` sleep on it).
    pub fn signal_reload(&self) -> Result<()> {
        match self.postmaster_state()? {
            PostmasterState::Running(p) => {
                postmaster::signal(p.pid, nix::sys::signal::Signal::SIGHUP)
                    .map_err(PgError::io("signal postmaster", self.data_dir()))?;
                Ok(())
            }
            _ => Err(PgError::NotRunning),
        }
    }

    /// Step down: stop with `mode` and start again as a replica of `upstream` (`None`: no upstream
    /// known yet, recovery from the archive only). Whether a rewind is needed first is the caller's
    /// decision ([`Self::rewind_needed`]).
    pub async fn demote(&self, mode: StopMode, upstream: Option<Upstream>) -> Result<StartOutcome> {
        self.stop(mode).await?;
        self.start(&ConfRole::Replica { upstream }).await
    }

    /// Point a running replica at `upstream` (PostgreSQL 13+ reloads `primary_conninfo` and
    /// `primary_slot_name` on SIGHUP); a stopped server is started as a replica. A running primary
    /// is not touched: use [`Self::demote`].
    pub async fn follow(&self, upstream: Option<Upstream>) -> Result<StartOutcome> {
        let role = ConfRole::Replica { upstream };
        match self.postmaster_state()? {
            PostmasterState::Running(p) => {
                if self.observe().await.is_primary() {
                    return Err(PgError::Invalid {
                        field: "role".into(),
                        msg: "the server is a primary; demote it instead of following".into(),
                    });
                }
                self.reload(&role).await?;
                Ok(StartOutcome::AlreadyRunning { pid: p.pid })
            }
            _ => self.start(&role).await,
        }
    }

    /// Promote a replica (`pg_ctl promote -w`) and rewrite the configuration as primary.
    #[instrument(skip_all)]
    pub async fn promote(&self) -> Result<()> {
        if !self.is_running() {
            return Err(PgError::NotRunning);
        }
        let secs = self.settings.pg_ctl_timeout.as_secs().max(1).to_string();
        process::run(
            self.tool("pg_ctl")
                .args(["promote", "-w", "-t", secs.as_str(), "-D"])
                .arg(self.data_dir())
                .timeout(self.settings.pg_ctl_timeout + Duration::from_secs(5)),
            &CancellationToken::new(),
        )
        .await?;
        self.write_config(&ConfRole::Primary).await?;
        info!("promoted");
        Ok(())
    }

    /// Run `CHECKPOINT` on the local server (after a promotion, so that pg_control shows the new
    /// timeline to pg_rewind on other members).
    /// Own connection: a checkpoint may take longer than `observe_timeout`; bounded by
    /// `pg_ctl_timeout`.
    pub async fn checkpoint(&self) -> Result<()> {
        let run = async {
            let c = self.connect().await?;
            c.simple_query("CHECKPOINT").await.map_err(PgError::sql("checkpoint"))
        };
        match tokio::time::timeout(self.settings.pg_ctl_timeout, run).await {
            Ok(r) => r.map(drop),
            Err(_) => Err(PgError::Sql {
                op: "checkpoint",
                msg: format!("timed out after {:?}", self.settings.pg_ctl_timeout),
            }),
        }
    }

    /// Create and drop replication slots on this (primary) server as [`slots::plan`] says.
    pub async fn sync_slots(&self, inputs: &slots::SlotInputs) -> Result<slots::SlotPlan> {
        let mut inp = inputs.clone();
        inp.existing = self
            .with_client("list slots", async |c| {
                slots::existing(&c).await.map_err(PgError::sql("list slots"))
            })
            .await?;
        let plan = slots::plan(&inp);
        let (logical, physical): (Vec<_>, Vec<_>) =
            plan.create.iter().cloned().partition(|s| s.slot_type == slots::SlotType::Logical);
        let physical = slots::SlotPlan { create: physical, drop: plan.drop.clone() };
        self.with_client("sync slots", async |c| {
            slots::apply(&c, &physical).await.map_err(PgError::sql("sync slots"))
        })
        .await?;
        for s in logical {
            let mut conn = self.local_conn(&self.settings.superuser);
            conn.dbname = s.database.clone().unwrap_or_else(|| "postgres".into());
            let c = observe::connect(&conn, self.settings.observe_timeout)
                .await
                .map_err(|msg| PgError::Sql { op: "connect", msg })?;
            slots::apply(&c, &slots::SlotPlan { create: vec![s], drop: vec![] })
                .await
                .map_err(PgError::sql("create logical slot"))?;
        }
        Ok(plan)
    }
}
