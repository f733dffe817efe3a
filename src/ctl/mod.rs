//! `praetorctl`: the operator's CLI, a drop-in for `patronictl` (PATRONI-COMPAT §4).
//!
//! Owns: command-line parsing, finding the cluster (`config`), and rendering what patronictl prints
//! byte for byte (`list`, `output`, `table`, `pyyaml`, `pyjson`). Reads the DCS through the [`Dcs`]
//! trait only; never touches PGDATA. The renderers are pure functions of a [`Cluster`] so they are
//! tested against output captured from real patronictl (tests/fixtures/ctl).
//!
//! Commands so far are the DCS-only ones: `list`, `topology`, `history`, `show-config`, `dsn`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod config;
pub mod dsn;
pub mod history;
pub mod list;
pub mod output;
pub mod pyjson;
pub mod pyyaml;
pub mod table;

use crate::dcs::model::Cluster;
use crate::dcs::{Dcs, DcsParams, factory};
use clap::{Args, Parser, Subcommand};
use dsn::CtlRole;
use list::ListOptions;
use output::Format;
use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// praetorctl's command line (patronictl's global options and commands).
#[derive(Debug, Parser)]
#[command(
    name = "praetorctl",
    version,
    about = "Command-line interface for interacting with praetor and Patroni clusters"
)]
pub struct Cli {
    /// Configuration file (a Patroni/praetor YAML). Default: ~/.config/praetor/praetorctl.yaml, then
    /// ~/.config/patroni/patronictl.yaml.
    #[arg(short = 'c', long = "config-file", env = "PATRONICTL_CONFIG_FILE", global = true)]
    pub config_file: Option<PathBuf>,
    /// The DCS connect url: DCS://HOST:PORT/NAMESPACE (DCS: etcd, etcd3, consul, zookeeper).
    #[arg(short = 'd', long = "dcs-url", visible_alias = "dcs", env = "DCS_URL", global = true)]
    pub dcs_url: Option<String>,
    /// Allow connections to SSL sites without certs.
    #[arg(short = 'k', long = "insecure", global = true)]
    pub insecure: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// A praetorctl command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the members of the given clusters.
    List(ListArgs),
    /// Print the members as a replication tree.
    Topology(TopologyArgs),
    /// Show the history of failovers/switchovers.
    History(HistoryArgs),
    /// Show the cluster configuration stored in the DCS.
    ShowConfig(ClusterArg),
    /// Print a connection string for the leader, a member with a role, or a named member.
    Dsn(DsnArgs),
}

/// `-W` / `-w SECS`.
#[derive(Debug, Args, Clone, Copy)]
pub struct WatchArgs {
    /// Auto update the screen every 2 seconds.
    #[arg(short = 'W')]
    pub w: bool,
    /// Auto update the screen every SECS seconds.
    #[arg(short = 'w', long = "watch", value_name = "SECS")]
    pub watch: Option<f64>,
}

impl WatchArgs {
    /// The refresh period, if watching (`-W` alone means 2 seconds).
    pub fn interval(&self) -> Option<Duration> {
        let secs = match (self.w, self.watch) {
            (_, Some(s)) if s > 0.0 => Some(s),
            (true, _) => Some(2.0),
            _ => None,
        };
        secs.map(|s| Duration::from_secs_f64(s.min(86_400.0)))
    }
}

/// `list` options.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Cluster names (default: `scope` from the configuration).
    pub cluster_names: Vec<String>,
    /// Show pending restarts, scheduled restarts and tags.
    #[arg(short = 'e', long = "extended")]
    pub extended: bool,
    /// Print a timestamp before the table.
    #[arg(short = 't', long = "timestamp")]
    pub timestamp: bool,
    /// Output format.
    #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
    pub format: Format,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub watch: WatchArgs,
}

/// `topology` options.
#[derive(Debug, Args)]
pub struct TopologyArgs {
    /// Cluster names (default: `scope` from the configuration).
    pub cluster_names: Vec<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub watch: WatchArgs,
}

/// `history` options.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Cluster name (default: `scope` from the configuration).
    pub cluster_name: Option<String>,
    /// Output format.
    #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
    pub format: Format,
}

/// A single optional cluster name.
#[derive(Debug, Args)]
pub struct ClusterArg {
    /// Cluster name (default: `scope` from the configuration).
    pub cluster_name: Option<String>,
}

/// `dsn` options.
#[derive(Debug, Args)]
pub struct DsnArgs {
    /// Cluster name (default: `scope` from the configuration).
    pub cluster_name: Option<String>,
    /// Give a dsn of any member with this role.
    #[arg(short = 'r', long = "role", value_enum)]
    pub role: Option<CtlRole>,
    /// Generate a dsn for this member.
    #[arg(short = 'm', long = "member")]
    pub member: Option<String>,
}

/// Why a command failed, and with which exit code.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Wrong use of the command line (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The command could not be carried out (exit code 1).
    #[error("{0}")]
    Failed(String),
}

impl CtlError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 2,
            CtlError::Failed(_) => 1,
        }
    }
}

impl From<dsn::DsnError> for CtlError {
    fn from(e: dsn::DsnError) -> Self {
        // patronictl reports both as a plain failure (exit code 1)
        CtlError::Failed(e.to_string())
    }
}

/// The local time as `list -t` prints it (`2026-11-22 03:04:05`).
pub fn timestamp_now() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// What a DCS-only command prints for one cluster, given the cluster as read from the DCS.
/// `now` is the `-t` timestamp. Pure: the golden tests call it with clusters built from fixtures.
pub fn render(command: &Command, name: &str, cluster: &Cluster, now: &str) -> Result<String, CtlError> {
    Ok(match command {
        Command::List(a) => {
            let mut out = if a.timestamp { format!("{now}\n") } else { String::new() };
            out.push_str(&list::output_members(
                cluster,
                name,
                ListOptions { extended: a.extended, format: a.format },
            ));
            out
        }
        Command::Topology(_) => {
            list::output_members(cluster, name, ListOptions { extended: false, format: Format::Topology })
        }
        Command::History(a) => history::history(cluster, a.format),
        Command::ShowConfig(_) => history::show_config(cluster),
        Command::Dsn(a) => dsn::dsn(cluster, a.role, a.member.as_deref())?,
    })
}

/// Entry point of the `praetorctl` binary: parse, run, map errors to exit codes (0 ok, 1 failed,
/// 2 usage).
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// patronictl's log level variables (`LOGLEVEL`, `PATRONI_LOGLEVEL`, `PATRONI_LOG_LEVEL`), WARNING by default.
fn init_logging() {
    let mut level = "warn".to_string();
    for var in ["LOGLEVEL", "PATRONI_LOGLEVEL", "PATRONI_LOG_LEVEL"] {
        if let Ok(v) = std::env::var(var) {
            level = match v.to_ascii_uppercase().as_str() {
                "CRITICAL" | "ERROR" => "error",
                "WARNING" | "WARN" => "warn",
                "INFO" => "info",
                "DEBUG" => "debug",
                _ => "warn",
            }
            .to_string();
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .try_init();
}

/// Connections to the DCS, one per cluster name.
struct Connections {
    cfg: config::CtlConfig,
    open: HashMap<String, Arc<dyn Dcs>>,
}

impl Connections {
    async fn get(&mut self, scope: &str) -> Result<Arc<dyn Dcs>, CtlError> {
        if let Some(d) = self.open.get(scope) {
            return Ok(d.clone());
        }
        let section = self.cfg.dcs.as_ref().ok_or_else(|| {
            CtlError::Failed(
                "Can not find suitable configuration of distributed configuration store (give -d DCS://HOST:PORT \
                 or a config file with an etcd3, consul or zookeeper section)"
                    .into(),
            )
        })?;
        let params = DcsParams {
            namespace: self.cfg.namespace.clone(),
            scope: scope.to_string(),
            name: scope.to_string(),
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(10),
        };
        let dcs = factory::connect(section, params)
            .await
            .map_err(|e| CtlError::Failed(format!("cannot connect to the DCS: {}", error_chain(&e))))?;
        self.open.insert(scope.to_string(), dcs.clone());
        Ok(dcs)
    }

    async fn cluster(&mut self, scope: &str) -> Result<Cluster, CtlError> {
        let dcs = self.get(scope).await?;
        dcs.load_cluster().await.map_err(|e| {
            CtlError::Failed(format!("cannot read cluster {scope} from the DCS: {}", error_chain(&e)))
        })
    }

    async fn close(self) {
        for d in self.open.into_values() {
            let _ = d.close().await;
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn write_out(text: &str) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        // `praetorctl list | head` is not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CtlError::Failed(format!("cannot write to stdout: {e}"))),
    }
}

async fn execute(cli: Cli) -> Result<(), CtlError> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let cfg = config::load(cli.config_file.as_deref(), cli.dcs_url.as_deref(), cli.insecure, &env)
        .map_err(|e| CtlError::Failed(e.0))?;
    let scope = cfg.scope.clone();
    let mut conns = Connections { cfg, open: HashMap::new() };
    let result = match &cli.command {
        Command::List(ListArgs { cluster_names, watch, .. })
        | Command::Topology(TopologyArgs { cluster_names, watch }) => {
            let names =
                if cluster_names.is_empty() { scope.into_iter().collect() } else { cluster_names.clone() };
            if names.is_empty() {
                tracing::warn!("Listing members: No cluster names were provided");
                Ok(())
            } else {
                watch_loop(&cli.command, &names, watch.interval(), &mut conns).await
            }
        }
        Command::History(HistoryArgs { cluster_name, .. })
        | Command::ShowConfig(ClusterArg { cluster_name })
        | Command::Dsn(DsnArgs { cluster_name, .. }) => match cluster_name.clone().or(scope) {
            None => {
                Err(CtlError::Usage("no cluster name given and no `scope` in the configuration file".into()))
            }
            Some(name) => {
                let cluster = conns.cluster(&name).await?;
                render(&cli.command, &name, &cluster, &timestamp_now()).and_then(|s| write_out(&s))
            }
        },
    };
    conns.close().await;
    result
}

/// `watching()`: print once, or every `interval` until Ctrl-C, clearing the screen on a terminal.
async fn watch_loop(
    command: &Command,
    names: &[String],
    interval: Option<Duration>,
    conns: &mut Connections,
) -> Result<(), CtlError> {
    let clear = interval.is_some() && std::io::stdout().is_terminal();
    loop {
        let started = Instant::now();
        let mut screen = String::new();
        if clear {
            screen.push_str("\x1b[2J\x1b[1;1H");
        }
        let now = timestamp_now();
        for (i, name) in names.iter().enumerate() {
            let cluster = conns.cluster(name).await?;
            let mut text = render(command, name, &cluster, &now)?;
            if i > 0 {
                // the timestamp is printed once per refresh, before all clusters
                if let Some(rest) = text.strip_prefix(&format!("{now}\n")) {
                    text = rest.to_string();
                }
            }
            screen.push_str(&text);
        }
        write_out(&screen)?;
        let Some(every) = interval else { return Ok(()) };
        tokio::select! {
            _ = tokio::time::sleep(every.saturating_sub(started.elapsed())) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
