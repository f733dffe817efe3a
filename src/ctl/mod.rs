//! `praetorctl`: the operator's CLI, a drop-in for `patronictl` (PATRONI-COMPAT §4).
//!
//! Owns: command-line parsing, finding the cluster (`config`), and rendering what patronictl prints
//! byte for byte (`list`, `output`, `table`, `pyyaml`, `pyjson`). Reads the DCS through the [`Dcs`]
//! trait only; never touches PGDATA. The renderers are pure functions of a [`Cluster`] so they are
//! tested against output captured from real patronictl (tests/fixtures/ctl).
//!
//! DCS commands (`list`, `topology`, `history`, `show-config`, `dsn`, `edit-config`, `remove`) read
//! and write the store directly; `switchover`, `failover`, `restart`, `reload`, `reinit`, `flush`,
//! `pause`/`resume`, `version`, `demote-cluster`/`promote-cluster` go through the members' REST API
//! (`actions`, `rest`); `query` connects to PostgreSQL. praetor-only: `completion`, `why`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod actions;
pub mod config;
pub mod dsn;
pub mod edit;
pub mod history;
pub mod list;
pub mod output;
pub mod prompt;
pub mod pyjson;
pub mod pyyaml;
pub mod query;
pub mod rest;
pub mod table;
pub mod why;

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
    #[arg(short = 'c', long = "config-file", env = "PATRONICTL_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// The DCS connect url: DCS://HOST:PORT/NAMESPACE (DCS: etcd, etcd3, consul, zookeeper).
    #[arg(short = 'd', long = "dcs-url", visible_alias = "dcs", env = "DCS_URL")]
    pub dcs_url: Option<String>,
    /// Allow connections to SSL sites without certs.
    #[arg(short = 'k', long = "insecure")]
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
    /// Switchover to a replica.
    Switchover(SwitchoverArgs),
    /// Failover to a replica.
    Failover(FailoverArgs),
    /// Restart cluster members.
    Restart(RestartArgs),
    /// Reload cluster member configuration.
    Reload(MembersArgs),
    /// Reinitialize cluster members.
    Reinit(ReinitArgs),
    /// Discard scheduled events: `flush CLUSTER [MEMBER…] restart|switchover`.
    Flush(FlushArgs),
    /// Disable auto failover.
    Pause(PauseArgs),
    /// Resume auto failover.
    Resume(PauseArgs),
    /// Edit cluster configuration.
    EditConfig(EditConfigArgs),
    /// Query a member's PostgreSQL.
    Query(QueryArgs),
    /// Output the version of praetorctl, or of the members of a cluster.
    Version(VersionArgs),
    /// Remove a cluster from the DCS.
    Remove(RemoveArgs),
    /// Demote the cluster to a standby cluster.
    DemoteCluster(DemoteArgs),
    /// Promote the cluster, make it run standalone.
    PromoteCluster(ForceClusterArg),
    /// Print each member's last HA decision and its reason (praetor only).
    Why(WhyArgs),
    /// Print a shell completion script: `praetorctl completion bash|zsh|fish`.
    Completion(CompletionArgs),
}

/// `switchover` options.
#[derive(Debug, Args)]
pub struct SwitchoverArgs {
    /// Cluster name (default: `scope` from the configuration).
    pub cluster_name: Option<String>,
    /// The name of the current leader.
    #[arg(long = "leader", visible_alias = "primary")]
    pub leader: Option<String>,
    /// The name of the candidate.
    #[arg(long)]
    pub candidate: Option<String>,
    /// Timestamp of a scheduled switchover in unambiguous format (e.g. ISO 8601), or `now`.
    #[arg(long)]
    pub scheduled: Option<String>,
    /// Do not ask for confirmation at any point.
    #[arg(long)]
    pub force: bool,
}

/// `failover` options.
#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// Cluster name (default: `scope` from the configuration).
    pub cluster_name: Option<String>,
    /// The name of the candidate.
    #[arg(long)]
    pub candidate: Option<String>,
    /// Do not ask for confirmation at any point.
    #[arg(long)]
    pub force: bool,
}

/// `CLUSTER [MEMBER…] [-r ROLE] [--force]` (reload).
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Cluster name.
    pub cluster_name: String,
    /// Members (default: all with the role).
    pub member_names: Vec<String>,
    /// Only members with this role.
    #[arg(short = 'r', long = "role", value_enum)]
    pub role: Option<CtlRole>,
    /// Do not ask for confirmation at any point.
    #[arg(long)]
    pub force: bool,
}

/// `restart` options.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Cluster name.
    pub cluster_name: String,
    /// Members (default: all with the role).
    pub member_names: Vec<String>,
    /// Restart only members with this role.
    #[arg(short = 'r', long = "role", value_enum)]
    pub role: Option<CtlRole>,
    /// Restart a single member only.
    #[arg(long = "any")]
    pub any: bool,
    /// Timestamp of a scheduled restart in unambiguous format (e.g. ISO 8601), or `now`.
    #[arg(long)]
    pub scheduled: Option<String>,
    /// Restart if the PostgreSQL version is less than provided (e.g. 9.5.2).
    #[arg(long = "pg-version")]
    pub pg_version: Option<String>,
    /// Restart if pending.
    #[arg(long)]
    pub pending: bool,
    /// Return error and fail over if necessary when restarting takes longer than this.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Do not ask for confirmation at any point.
    #[arg(long)]
    pub force: bool,
}

/// `reinit` options.
#[derive(Debug, Args)]
pub struct ReinitArgs {
    /// Cluster name.
    pub cluster_name: String,
    /// Members to reinitialize.
    pub member_names: Vec<String>,
    /// Do not ask for confirmation at any point.
    #[arg(long)]
    pub force: bool,
    /// Get basebackup from leader.
    #[arg(long = "from-leader")]
    pub from_leader: bool,
    /// Wait until reinitialization completes.
    #[arg(long)]
    pub wait: bool,
}

/// `flush` options.
#[derive(Debug, Args)]
pub struct FlushArgs {
    /// Cluster name.
    pub cluster_name: String,
    /// Members, then the target: `restart` or `switchover`.
    #[arg(value_name = "MEMBER… restart|switchover", required = true)]
    pub rest: Vec<String>,
    /// Flush only members with this role.
    #[arg(short = 'r', long = "role", value_enum)]
    pub role: Option<CtlRole>,
    /// Do not ask for confirmation at any point.
    #[arg(long)]
    pub force: bool,
}

/// `pause`/`resume` options.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Cluster name (default: `scope` from the configuration).
    pub cluster_name: Option<String>,
    /// Wait until the change is recognized by all members.
    #[arg(long)]
    pub wait: bool,
}

/// `edit-config` options.
#[derive(Debug, Args)]
pub struct EditConfigArgs {
    /// Cluster name (default: `scope` from the configuration).
    pub cluster_name: Option<String>,
    /// Do not show changes.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set specific configuration value (dotted path; `null` removes). Can be repeated.
    #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Set specific PostgreSQL parameter value (shorthand for -s postgresql.parameters.KEY=VALUE).
    #[arg(short = 'p', long = "pg", value_name = "KEY=VALUE")]
    pub pg: Vec<String>,
    /// Apply configuration from file. Use - for stdin.
    #[arg(long = "apply", value_name = "FILE")]
    pub apply: Option<String>,
    /// Apply configuration from file, replacing existing configuration. Use - for stdin.
    #[arg(long = "replace", value_name = "FILE")]
    pub replace: Option<String>,
    /// Do not ask for confirmation at any point.
    #[arg(long)]
    pub force: bool,
}

/// `query` options.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Cluster name (default: `scope` from the configuration).
    pub cluster_name: Option<String>,
    /// Output format.
    #[arg(long = "format", value_enum, default_value = "tsv")]
    pub format: Format,
    /// Execute the SQL commands from this file.
    #[arg(short = 'f', long = "file", conflicts_with = "command")]
    pub file: Option<PathBuf>,
    /// Force password prompt.
    #[arg(long)]
    pub password: bool,
    /// Database user name.
    #[arg(short = 'U', long = "username")]
    pub username: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub watch: WatchArgs,
    /// The role of the query.
    #[arg(short = 'r', long = "role", value_enum, conflicts_with = "member")]
    pub role: Option<CtlRole>,
    /// Query a specific member.
    #[arg(short = 'm', long = "member")]
    pub member: Option<String>,
    /// The column delimiter.
    #[arg(long, default_value = "\t")]
    pub delimiter: String,
    /// The SQL commands to execute.
    #[arg(short = 'c', long = "command")]
    pub command: Option<String>,
    /// Database name to connect to.
    #[arg(short = 'd', long = "dbname")]
    pub dbname: Option<String>,
}

/// `version` options.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Cluster name: also ask its members.
    pub cluster_name: Option<String>,
    /// Only these members.
    pub member_names: Vec<String>,
}

/// `remove` options.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Cluster name.
    pub cluster_name: String,
    /// Output format of the member table shown first.
    #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
    pub format: Format,
}

/// `demote-cluster` options.
#[derive(Debug, Args)]
pub struct DemoteArgs {
    /// Cluster name (default: `scope` from the configuration).
    pub cluster_name: Option<String>,
    /// Do not ask for confirmation at any point.
    #[arg(long)]
    pub force: bool,
    /// Address of the remote node.
    #[arg(long)]
    pub host: Option<String>,
    /// Port of the remote node.
    #[arg(long)]
    pub port: Option<u16>,
    /// Command to restore WAL records from the remote primary.
    #[arg(long = "restore-command")]
    pub restore_command: Option<String>,
    /// Name of the slot on the remote node to use for replication.
    #[arg(long = "primary-slot-name")]
    pub primary_slot_name: Option<String>,
}

/// A cluster name and `--force`.
#[derive(Debug, Args)]
pub struct ForceClusterArg {
    /// Cluster name (default: `scope` from the configuration).
    pub cluster_name: Option<String>,
    /// Do not ask for confirmation at any point.
    #[arg(long)]
    pub force: bool,
}

/// `why` options.
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// Members to show (default: all).
    pub member_names: Vec<String>,
    /// Cluster name (default: `scope` from the configuration).
    #[arg(long = "cluster")]
    pub cluster_name: Option<String>,
}

/// `completion` options.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
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
        _ => return Err(CtlError::Usage("this command does not render a cluster".into())),
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

/// An error with its sources, `: `-separated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
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

/// `click.echo`: a line on stdout.
pub fn echo(line: &str) -> Result<(), CtlError> {
    write_out(&format!("{line}\n"))
}

/// Read the cluster through `dcs`.
pub async fn load(dcs: &Arc<dyn Dcs>, scope: &str) -> Result<Cluster, CtlError> {
    dcs.load_cluster().await.map_err(|e| {
        CtlError::Failed(format!("cannot read cluster {scope} from the DCS: {}", error_chain(&e)))
    })
}

fn cluster_or_scope(given: &Option<String>, scope: &Option<String>) -> Result<String, CtlError> {
    given.clone().or_else(|| scope.clone()).ok_or_else(|| {
        CtlError::Usage("no cluster name given and no `scope` in the configuration file".into())
    })
}

/// Print the completion script for `shell` (`praetorctl completion bash|zsh|fish`).
pub fn completion(shell: clap_complete::Shell) -> String {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "praetorctl", &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

async fn execute(cli: Cli) -> Result<(), CtlError> {
    if let Command::Completion(a) = &cli.command {
        return write_out(&completion(a.shell));
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let cfg = config::load(cli.config_file.as_deref(), cli.dcs_url.as_deref(), cli.insecure, &env)
        .map_err(|e| CtlError::Failed(e.0))?;
    let scope = cfg.scope.clone();
    let mut conns = Connections { cfg, open: HashMap::new() };
    let result = dispatch(&cli.command, scope, &mut conns).await;
    conns.close().await;
    result
}

async fn dispatch(command: &Command, scope: Option<String>, conns: &mut Connections) -> Result<(), CtlError> {
    let rest = || rest::RestClient::new(&conns.cfg);
    match command {
        Command::List(ListArgs { cluster_names, watch, .. })
        | Command::Topology(TopologyArgs { cluster_names, watch }) => {
            let names =
                if cluster_names.is_empty() { scope.into_iter().collect() } else { cluster_names.clone() };
            if names.is_empty() {
                tracing::warn!("Listing members: No cluster names were provided");
                Ok(())
            } else {
                watch_loop(command, &names, watch.interval(), conns).await
            }
        }
        Command::History(HistoryArgs { cluster_name, .. })
        | Command::ShowConfig(ClusterArg { cluster_name })
        | Command::Dsn(DsnArgs { cluster_name, .. }) => {
            let name = cluster_or_scope(cluster_name, &scope)?;
            let cluster = conns.cluster(&name).await?;
            render(command, &name, &cluster, &timestamp_now()).and_then(|s| write_out(&s))
        }
        Command::Switchover(a) => {
            let name = cluster_or_scope(&a.cluster_name, &scope)?;
            let rest = rest()?;
            let dcs = conns.get(&name).await?;
            let o = actions::SwitchoverOptions {
                leader: a.leader.clone(),
                candidate: a.candidate.clone(),
                scheduled: a.scheduled.clone(),
                force: a.force,
            };
            actions::failover_or_switchover("switchover", &name, &dcs, &rest, o).await
        }
        Command::Failover(a) => {
            let name = cluster_or_scope(&a.cluster_name, &scope)?;
            let rest = rest()?;
            let dcs = conns.get(&name).await?;
            let o = actions::SwitchoverOptions {
                candidate: a.candidate.clone(),
                force: a.force,
                ..Default::default()
            };
            actions::failover_or_switchover("failover", &name, &dcs, &rest, o).await
        }
        Command::Restart(a) => {
            let rest = rest()?;
            let dcs = conns.get(&a.cluster_name).await?;
            let o = actions::RestartOptions {
                role: a.role,
                any: a.any,
                scheduled: a.scheduled.clone(),
                pg_version: a.pg_version.clone(),
                pending: a.pending,
                timeout: a.timeout.clone(),
                force: a.force,
            };
            actions::restart(&a.cluster_name, &a.member_names, &dcs, &rest, o).await
        }
        Command::Reload(a) => {
            let rest = rest()?;
            let dcs = conns.get(&a.cluster_name).await?;
            actions::reload(&a.cluster_name, &a.member_names, a.role, a.force, &dcs, &rest).await
        }
        Command::Reinit(a) => {
            let rest = rest()?;
            let dcs = conns.get(&a.cluster_name).await?;
            actions::reinit(&a.cluster_name, &a.member_names, a.force, a.from_leader, a.wait, &dcs, &rest)
                .await
        }
        Command::Flush(a) => {
            let (target, members) =
                a.rest.split_last().ok_or_else(|| CtlError::Usage("missing TARGET".into()))?;
            if target != "restart" && target != "switchover" {
                return Err(CtlError::Usage(format!(
                    "Invalid value for 'TARGET': '{target}' is not one of 'restart', 'switchover'."
                )));
            }
            let rest = rest()?;
            let dcs = conns.get(&a.cluster_name).await?;
            actions::flush(&a.cluster_name, members, target, a.role, a.force, &dcs, &rest).await
        }
        Command::Pause(a) | Command::Resume(a) => {
            let name = cluster_or_scope(&a.cluster_name, &scope)?;
            let rest = rest()?;
            let dcs = conns.get(&name).await?;
            actions::toggle_pause(&name, matches!(command, Command::Pause(_)), a.wait, &dcs, &rest).await
        }
        Command::EditConfig(a) => {
            let name = cluster_or_scope(&a.cluster_name, &scope)?;
            let dcs = conns.get(&name).await?;
            let o = edit::EditOptions {
                quiet: a.quiet,
                set: a.set.clone(),
                pg: a.pg.clone(),
                apply: a.apply.clone(),
                replace: a.replace.clone(),
                force: a.force,
            };
            edit::edit_config(&name, &dcs, o).await
        }
        Command::Query(a) => run_query(a, &scope, conns).await,
        Command::Version(a) => {
            if a.cluster_name.is_none() {
                return actions::version(None, &[], None, None).await;
            }
            let name = cluster_or_scope(&a.cluster_name, &scope)?;
            let rest = rest()?;
            let dcs = conns.get(&name).await?;
            actions::version(Some(&name), &a.member_names, Some(&dcs), Some(&rest)).await
        }
        Command::Remove(a) => {
            let dcs = conns.get(&a.cluster_name).await?;
            actions::remove(&a.cluster_name, a.format, &dcs).await
        }
        Command::DemoteCluster(a) => {
            if a.host.is_none() && a.port.is_none() && a.restore_command.is_none() {
                return Err(CtlError::Failed(
                    "At least --host, --port or --restore-command should be specified".into(),
                ));
            }
            let mut data = serde_json::Map::new();
            for (k, v) in [
                ("host", a.host.clone().map(serde_json::Value::from)),
                ("port", a.port.map(serde_json::Value::from)),
                ("primary_slot_name", a.primary_slot_name.clone().map(serde_json::Value::from)),
                ("restore_command", a.restore_command.clone().map(serde_json::Value::from)),
            ] {
                if let Some(v) = v {
                    data.insert(k.into(), v);
                }
            }
            let name = cluster_or_scope(&a.cluster_name, &scope)?;
            let rest = rest()?;
            let dcs = conns.get(&name).await?;
            actions::change_cluster_role(&name, a.force, Some(serde_json::Value::Object(data)), &dcs, &rest)
                .await
        }
        Command::PromoteCluster(a) => {
            let name = cluster_or_scope(&a.cluster_name, &scope)?;
            let rest = rest()?;
            let dcs = conns.get(&name).await?;
            actions::change_cluster_role(&name, a.force, None, &dcs, &rest).await
        }
        Command::Why(a) => {
            let name = cluster_or_scope(&a.cluster_name, &scope)?;
            let rest = rest()?;
            let cluster = conns.cluster(&name).await?;
            write_out(&why::why(&cluster, &name, &a.member_names, &rest).await)
        }
        Command::Completion(a) => write_out(&completion(a.shell)),
    }
}

async fn run_query(a: &QueryArgs, scope: &Option<String>, conns: &mut Connections) -> Result<(), CtlError> {
    let sql = match (&a.file, &a.command) {
        (Some(f), _) => std::fs::read_to_string(f)
            .map_err(|e| CtlError::Failed(format!("cannot read {}: {e}", f.display())))?,
        (None, Some(c)) => c.clone(),
        (None, None) => {
            return Err(CtlError::Failed("You need to specify either --command or --file".into()));
        }
    };
    let params = query::ConnectParams {
        user: a.username.clone(),
        password: if a.password { Some(prompt::password("Password")?) } else { None },
        dbname: a.dbname.clone(),
    };
    let name = cluster_or_scope(&a.cluster_name, scope)?;
    let delimiter = a.delimiter.replace("\\t", "\t");
    let mut cluster: Option<Cluster> = None;
    let mut interrupted = Interrupt::install(a.watch.interval().is_some())?;
    loop {
        let started = Instant::now();
        if cluster.is_none() {
            cluster = Some(conns.cluster(&name).await?);
        }
        let c = cluster.as_ref().ok_or_else(|| CtlError::Failed("no cluster".into()))?;
        let (cols, rows) = query::query_member(c, a.role, a.member.as_deref(), &sql, &params).await;
        write_out(&query::render(cols, rows, a.format, &delimiter))?;
        let Some(every) = a.watch.interval() else { return Ok(()) };
        tokio::select! {
            _ = tokio::time::sleep(every.saturating_sub(started.elapsed())) => {}
            _ = interrupted.recv() => return Ok(()),
        }
    }
}

/// Ctrl-C while watching: installed once before the first refresh, so that an interrupt that
/// arrives while the DCS is being read is not lost.
/// Not installed (`None`) when not watching: then Ctrl-C ends the process as usual.
struct Interrupt(Option<tokio::signal::unix::Signal>);

impl Interrupt {
    fn install(watching: bool) -> Result<Interrupt, CtlError> {
        if !watching {
            return Ok(Interrupt(None));
        }
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map(|s| Interrupt(Some(s)))
            .map_err(|e| CtlError::Failed(format!("cannot handle SIGINT: {e}")))
    }

    async fn recv(&mut self) {
        match &mut self.0 {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Redraw in place: cursor home, every line cleared to its end, the rest of the screen cleared
/// (no blank flash between refreshes as with a full clear).
pub fn redraw_in_place(text: &str) -> String {
    let mut out = String::from("\x1b[H");
    for line in text.split_inclusive('\n') {
        match line.strip_suffix('\n') {
            Some(l) => {
                out.push_str(l);
                out.push_str("\x1b[K\n");
            }
            None => out.push_str(line),
        }
    }
    out.push_str("\x1b[J");
    out
}

/// `watching()`: print once, or every `interval` until Ctrl-C, redrawn in place on a terminal.
async fn watch_loop(
    command: &Command,
    names: &[String],
    interval: Option<Duration>,
    conns: &mut Connections,
) -> Result<(), CtlError> {
    let clear = interval.is_some() && std::io::stdout().is_terminal();
    let mut interrupted = Interrupt::install(interval.is_some())?;
    loop {
        let started = Instant::now();
        let mut screen = String::new();
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
        if clear {
            screen = redraw_in_place(&screen);
        }
        write_out(&screen)?;
        let Some(every) = interval else { return Ok(()) };
        tokio::select! {
            _ = tokio::time::sleep(every.saturating_sub(started.elapsed())) => {}
            _ = interrupted.recv() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("praetorctl").chain(args.iter().copied()))
    }

    #[test]
    fn patronictl_invocations_parse() {
        let c = parse(&["-c", "/etc/p.yml", "switchover", "--force"]).unwrap();
        assert_eq!(c.config_file.as_deref(), Some(std::path::Path::new("/etc/p.yml")));
        assert!(
            matches!(c.command, Command::Switchover(SwitchoverArgs { force: true, ref cluster_name, .. }) if cluster_name.is_none())
        );
        let c =
            parse(&["switchover", "demo", "--primary", "pg0", "--candidate", "pg1", "--scheduled", "now"])
                .unwrap();
        assert!(matches!(c.command, Command::Switchover(ref a)
            if a.leader.as_deref() == Some("pg0") && a.candidate.as_deref() == Some("pg1") && a.cluster_name.as_deref() == Some("demo")));
        assert!(matches!(
            parse(&["failover", "--candidate", "pg2", "--force"]).unwrap().command,
            Command::Failover(FailoverArgs { force: true, .. })
        ));
        let c = parse(&[
            "restart",
            "demo",
            "pg1",
            "pg2",
            "-r",
            "replica",
            "--pg-version",
            "15.4",
            "--pending",
            "--timeout",
            "30",
            "--force",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Restart(ref a)
            if a.member_names == ["pg1", "pg2"] && a.role == Some(CtlRole::Replica) && a.pending && a.timeout.as_deref() == Some("30")));
        assert!(matches!(parse(&["flush", "demo", "pg1", "restart"]).unwrap().command,
            Command::Flush(ref a) if a.rest == ["pg1", "restart"]));
        assert!(matches!(
            parse(&["reinit", "demo", "pg1", "--from-leader", "--wait", "--force"]).unwrap().command,
            Command::Reinit(ReinitArgs { from_leader: true, wait: true, force: true, .. })
        ));
        assert!(matches!(
            parse(&["pause", "--wait"]).unwrap().command,
            Command::Pause(PauseArgs { wait: true, .. })
        ));
        let c = parse(&[
            "edit-config",
            "demo",
            "-s",
            "ttl=20",
            "-s",
            "loop_wait=5",
            "-p",
            "max_connections=200",
            "--force",
            "-q",
        ])
        .unwrap();
        assert!(
            matches!(c.command, Command::EditConfig(ref a) if a.set.len() == 2 && a.pg.len() == 1 && a.quiet && a.force)
        );
        // query's own -c/-d (the global ones go before the command, as with patronictl)
        let c = parse(&[
            "-d",
            "etcd3://h:2379",
            "query",
            "demo",
            "-c",
            "select 1",
            "-d",
            "app",
            "-U",
            "u",
            "-r",
            "replica",
        ])
        .unwrap();
        assert_eq!(c.dcs_url.as_deref(), Some("etcd3://h:2379"));
        assert!(matches!(c.command, Command::Query(ref a)
            if a.command.as_deref() == Some("select 1") && a.dbname.as_deref() == Some("app") && a.format == Format::Tsv));
        assert!(matches!(
            parse(&["demote-cluster", "--host", "h", "--port", "5433", "--force"]).unwrap().command,
            Command::DemoteCluster(DemoteArgs { port: Some(5433), .. })
        ));
        assert!(matches!(parse(&["why", "pg1", "--cluster", "demo"]).unwrap().command, Command::Why(_)));
        assert!(
            matches!(parse(&["list", "-W"]).unwrap().command, Command::List(ref a) if a.watch.interval() == Some(Duration::from_secs(2)))
        );
    }

    #[test]
    fn usage_errors_are_exit_code_2() {
        for bad in [
            &["switchover", "--bogus"][..],
            &["restart"],
            &["list", "-f", "xml"],
            &["query", "-r", "replica", "-m", "pg1", "-c", "x"],
            &["failover", "--scheduled", "now"],
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.use_stderr(), "{bad:?} must be a usage error");
        }
    }

    #[test]
    fn completion_scripts_name_the_commands() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let s = completion(shell);
            assert!(
                s.contains("praetorctl") && s.contains("switchover") && s.contains("edit-config"),
                "{shell}"
            );
        }
    }

    #[test]
    fn redraw_clears_each_line_and_the_rest_of_the_screen() {
        assert_eq!(redraw_in_place("a\nbb\n"), "\x1b[Ha\x1b[K\nbb\x1b[K\n\x1b[J");
    }
}
