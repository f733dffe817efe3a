//! `RawConfig` → [`Config`]: required keys, value ranges, cross-field rules, the DCS choice, and
//! what praetor does with keys Patroni removed. Every problem is collected, never just the first.
//!
//! # Removed and legacy Patroni keys
//! - `bootstrap.users` (removed in Patroni 4.0.0; also produced by `PATRONI_<USER>_PASSWORD`):
//!   accepted and **ignored**, exactly like Patroni 4 (which logs an error and creates no role).
//!   Create roles in a `bootstrap.post_bootstrap` script. A warning says so.
//! - `bootstrap.pg_hba` (undocumented since Patroni 2, still honoured by Patroni 4.1.5): the lines
//!   are appended to the `pg_hba.conf` written by initdb after bootstrap, only when
//!   `postgresql.pg_hba` is not set — the same rule as Patroni (`append_pg_hba`). A warning
//!   recommends `postgresql.pg_hba`.
//! - `master_start_timeout` / `master_stop_timeout`: read as `primary_*` when those are absent.
//! - `restapi.auth` / `ctl.auth` (`user:password`) and the pre-1.0 `postgresql.replication`,
//!   `postgresql.superuser`, `postgresql.pg_rewind`, `postgresql.name`: converted to the current
//!   keys, as Patroni does, with a warning.
//! - `no_master` in a replica method section: no longer special since Patroni 4.0; like Patroni 4
//!   it is passed to the command as `--no_master=…`; use `no_leader`.
//!
//! # Environment checks
//! [`check_environment`] looks at this host (`bin_dir` and its programs, free listen ports, DCS
//! host names, `data_dir`). Its findings are always *warnings* labelled `environment:`, so a
//! configuration written for another machine (the guides' `/usr/lib/postgresql/16/bin`) still
//! validates; problems in the file itself are errors.

use super::dcs::{DcsSection, EtcdConfig, PluginConfig};
use super::dynamic::{DynamicConfig, effective_parameters};
use super::raw::{RawConfig, RawConnAuth, RawUserPass};
use super::{DcsChoice, LoadOptions, Problem, ProblemKind, dynamic_bool, yaml_to_json};
use crate::types::Secret;
use serde_json::Value as JsonValue;
use serde_yaml_ng::Value as YamlValue;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The validated, immutable configuration of one agent. Built only by [`super::load`].
#[derive(Clone, Debug)]
pub struct Config {
    /// This member's name.
    pub name: String,
    /// The cluster name.
    pub scope: String,
    /// DCS namespace (default `/service`).
    pub namespace: String,
    /// Logging.
    pub log: LogConfig,
    /// REST API.
    pub restapi: RestApiConfig,
    /// praetorctl settings.
    pub ctl: CtlConfig,
    /// Cluster initialisation.
    pub bootstrap: BootstrapConfig,
    /// The local PostgreSQL.
    pub postgresql: PostgresqlConfig,
    /// Watchdog.
    pub watchdog: WatchdogConfig,
    /// Member tags.
    pub tags: Tags,
    dcs: DcsSection,
}

/// `log:`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `json` logs instead of plain text.
    pub json: bool,
    /// DEBUG, INFO, WARNING, ERROR or CRITICAL (INFO).
    pub level: String,
    /// Directory for log files (`None`: stderr).
    pub dir: Option<PathBuf>,
    /// Rotated files kept (4).
    pub file_num: u32,
    /// Bytes before rotation (25000000).
    pub file_size: u64,
    /// Permissions of log files.
    pub mode: Option<u32>,
    /// Per-module levels.
    pub loggers: BTreeMap<String, String>,
    /// Suppress identical successive heartbeat lines.
    pub deduplicate_heartbeat_logs: bool,
}

/// A user name and password.
#[derive(Clone, Debug, PartialEq)]
pub struct Credentials {
    /// User.
    pub username: String,
    /// Password.
    pub password: Secret<String>,
}

/// `restapi.verify_client`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifyClient {
    /// No client certificates.
    #[default]
    None,
    /// Verified when given.
    Optional,
    /// Required.
    Required,
}

/// `restapi:`.
#[derive(Clone, Debug, PartialEq)]
pub struct RestApiConfig {
    /// `host:port` to listen on.
    pub listen: String,
    /// `host:port` published as `api_url`.
    pub connect_address: String,
    /// Basic auth for mutating endpoints.
    pub authentication: Option<Credentials>,
    /// TLS certificate (enables HTTPS).
    pub certfile: Option<PathBuf>,
    /// TLS key.
    pub keyfile: Option<PathBuf>,
    /// Password of the key.
    pub keyfile_password: Option<Secret<String>>,
    /// CA for client certificates.
    pub cafile: Option<PathBuf>,
    /// Allowed ciphers.
    pub ciphers: Option<String>,
    /// Client certificate policy.
    pub verify_client: VerifyClient,
    /// Hosts/networks allowed to call mutating endpoints (empty: all).
    pub allowlist: Vec<String>,
    /// Also allow members' addresses.
    pub allowlist_include_members: bool,
    /// Extra headers on HTTP responses.
    pub http_extra_headers: BTreeMap<String, String>,
    /// Extra headers on HTTPS responses.
    pub https_extra_headers: BTreeMap<String, String>,
    /// Listen backlog (5).
    pub request_queue_size: u32,
    /// `minimal`, `productonly` or `original` (original).
    pub server_tokens: String,
}

/// `ctl:`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CtlConfig {
    /// Basic auth.
    pub authentication: Option<Credentials>,
    /// Skip TLS verification.
    pub insecure: bool,
    /// CA certificate.
    pub cacert: Option<PathBuf>,
    /// Client certificate.
    pub certfile: Option<PathBuf>,
    /// Client key.
    pub keyfile: Option<PathBuf>,
    /// Password of the client key.
    pub keyfile_password: Option<Secret<String>>,
}

/// An option of initdb or pg_basebackup: `--name` or `--name=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserOption {
    /// Long option name without dashes.
    pub name: String,
    /// Value, if any.
    pub value: Option<String>,
}

impl UserOption {
    /// The command-line argument.
    pub fn to_arg(&self) -> String {
        match &self.value {
            Some(v) => format!("--{}={v}", self.name),
            None => format!("--{}", self.name),
        }
    }
}

/// A custom bootstrap method (`bootstrap.<method>`).
#[derive(Clone, Debug, PartialEq)]
pub struct CustomBootstrap {
    /// The method (section) name.
    pub name: String,
    /// Command to run.
    pub command: String,
    /// Keep recovery settings the command wrote.
    pub keep_existing_recovery_conf: bool,
    /// Do not pass `--scope` and `--datadir`.
    pub no_params: bool,
    /// Recovery settings to write after the command.
    pub recovery_conf: Option<serde_json::Map<String, JsonValue>>,
    /// Other keys, passed as `--key=value`.
    pub params: BTreeMap<String, String>,
}

/// How a new cluster is initialised.
#[derive(Clone, Debug, PartialEq)]
pub enum BootstrapMethod {
    /// initdb with [`BootstrapConfig::initdb`] options.
    Initdb,
    /// A custom command.
    Custom(CustomBootstrap),
}

/// `bootstrap:`.
#[derive(Clone, Debug, PartialEq)]
pub struct BootstrapConfig {
    /// `bootstrap.dcs`, parsed, with adjusted timeouts.
    pub dcs: DynamicConfig,
    /// The method.
    pub method: BootstrapMethod,
    /// initdb options.
    pub initdb: Vec<UserOption>,
    /// Script run after bootstrap (`post_bootstrap`, or the older `post_init`).
    pub post_bootstrap: Option<String>,
    /// Legacy `bootstrap.pg_hba` lines (see the module docs).
    pub pg_hba: Vec<String>,
}

/// Connection settings of one of the roles praetor uses.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnAuth {
    /// Role name.
    pub username: String,
    /// Password.
    pub password: Option<Secret<String>>,
    /// `sslpassword` (kept apart from `options` so it never appears in logs).
    pub sslpassword: Option<Secret<String>>,
    /// Other libpq parameters (sslmode, sslcert, …).
    pub options: BTreeMap<String, String>,
}

impl ConnAuth {
    /// All libpq parameters except user and password: [`ConnAuth::options`] plus `sslpassword`.
    pub fn libpq_params(&self) -> BTreeMap<String, String> {
        let mut out = self.options.clone();
        if let Some(p) = &self.sslpassword {
            out.insert("sslpassword".into(), p.expose().clone());
        }
        out
    }
}

/// `postgresql.authentication`.
#[derive(Clone, Debug, PartialEq)]
pub struct Authentication {
    /// Superuser.
    pub superuser: ConnAuth,
    /// Replication user.
    pub replication: ConnAuth,
    /// pg_rewind user (`None`: the superuser).
    pub rewind: Option<ConnAuth>,
}

/// `postgresql.bin_name`: program names (defaults are the standard names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinNames {
    /// pg_ctl.
    pub pg_ctl: String,
    /// initdb.
    pub initdb: String,
    /// pg_controldata.
    pub pg_controldata: String,
    /// pg_basebackup.
    pub pg_basebackup: String,
    /// postgres.
    pub postgres: String,
    /// pg_isready.
    pub pg_isready: String,
    /// pg_rewind.
    pub pg_rewind: String,
}

impl BinNames {
    /// `(standard name, configured name)` pairs.
    pub fn all(&self) -> [(&'static str, &str); 7] {
        [
            ("pg_ctl", &self.pg_ctl),
            ("initdb", &self.initdb),
            ("pg_controldata", &self.pg_controldata),
            ("pg_basebackup", &self.pg_basebackup),
            ("postgres", &self.postgres),
            ("pg_isready", &self.pg_isready),
            ("pg_rewind", &self.pg_rewind),
        ]
    }
}

/// `postgresql.callbacks`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Callbacks {
    /// After reload.
    pub on_reload: Option<String>,
    /// After restart.
    pub on_restart: Option<String>,
    /// After a role change.
    pub on_role_change: Option<String>,
    /// After start.
    pub on_start: Option<String>,
    /// After stop.
    pub on_stop: Option<String>,
}

/// A replica creation method section (`postgresql.<method>`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicaMethod {
    /// Command (default: the method name).
    pub command: Option<String>,
    /// Keep the data directory before running.
    pub keep_data: bool,
    /// Do not pass `--scope`, `--role`, `--datadir`, `--connstring`.
    pub no_params: bool,
    /// Works without a running leader.
    pub no_leader: bool,
    /// Other keys, passed as `--key=value`.
    pub params: BTreeMap<String, String>,
}

/// `postgresql:` (local settings).
#[derive(Clone, Debug, PartialEq)]
pub struct PostgresqlConfig {
    /// `host[,host…]:port`.
    pub listen: String,
    /// `host:port` others connect to.
    pub connect_address: String,
    /// Pooler address published as `proxy_url`.
    pub proxy_address: Option<String>,
    /// PGDATA.
    pub data_dir: PathBuf,
    /// Configuration directory (default: `data_dir`).
    pub config_dir: PathBuf,
    /// Directory of the programs (`None`: `$PATH`).
    pub bin_dir: Option<PathBuf>,
    /// Program names.
    pub bin_name: BinNames,
    /// pgpass file praetor writes (default `/tmp/pgpass` like Patroni's sample).
    pub pgpass: Option<PathBuf>,
    /// Roles.
    pub authentication: Authentication,
    /// Callback scripts.
    pub callbacks: Callbacks,
    /// Replica creation methods in order (`["basebackup"]` when not set).
    pub create_replica_methods: Vec<String>,
    /// Method sections by name.
    pub replica_methods: BTreeMap<String, ReplicaMethod>,
    /// pg_basebackup options.
    pub basebackup: Vec<UserOption>,
    /// Recovery settings.
    pub recovery_conf: Option<BTreeMap<String, JsonValue>>,
    /// Extra configuration file.
    pub custom_conf: Option<PathBuf>,
    /// Local parameters (merge with [`Config::effective_parameters`]).
    pub parameters: BTreeMap<String, JsonValue>,
    /// pg_hba.conf lines (local; wins over the dynamic value).
    pub pg_hba: Option<Vec<String>>,
    /// pg_ident.conf lines (local; wins over the dynamic value).
    pub pg_ident: Option<Vec<String>>,
    /// pg_ctl timeout (60 s).
    pub pg_ctl_timeout: Duration,
    /// Local override of `use_pg_rewind`.
    pub use_pg_rewind: Option<bool>,
    /// Connect through the unix socket.
    pub use_unix_socket: bool,
    /// Replication through the unix socket.
    pub use_unix_socket_repl: bool,
    /// Remove PGDATA when pg_rewind fails.
    pub remove_data_directory_on_rewind_failure: bool,
    /// Remove PGDATA on diverged timelines.
    pub remove_data_directory_on_diverged_timelines: bool,
    /// Fencing script before promote.
    pub pre_promote: Option<String>,
    /// Script before stop.
    pub before_stop: Option<String>,
    /// Patroni 4.2 pg_rewind options, passed through.
    pub rewind: Option<JsonValue>,
}

/// `watchdog.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatchdogMode {
    /// No watchdog.
    Off,
    /// Use it if available.
    #[default]
    Automatic,
    /// Refuse to be leader without it.
    Required,
}

/// `watchdog:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// Mode.
    pub mode: WatchdogMode,
    /// Device.
    pub device: PathBuf,
    /// Seconds (5); -1 means timeout = ttl/2.
    pub safety_margin: i64,
}

/// `tags:`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tags {
    /// Never promote this node.
    pub nofailover: bool,
    /// Failover priority (1; 0 = never).
    pub failover_priority: i64,
    /// Never synchronous.
    pub nosync: bool,
    /// Synchronous priority (1).
    pub sync_priority: i64,
    /// Exclude from load balancing.
    pub noloadbalance: bool,
    /// Prefer as a basebackup source.
    pub clonefrom: bool,
    /// Member to replicate from (cascading).
    pub replicatefrom: Option<String>,
    /// Archive recovery instead of streaming.
    pub nostream: bool,
    /// All tags as given, including custom ones.
    pub raw: BTreeMap<String, JsonValue>,
}

impl Tags {
    /// The tags published in the member key: Patroni omits the boolean tags
    /// (`clonefrom`, `nofailover`, `noloadbalance`, `nosync`, `nostream`) when they are false
    /// (`P:tags.py _filter_tags`).
    pub fn member_tags(&self) -> serde_json::Map<String, JsonValue> {
        self.raw
            .iter()
            .filter(|(k, v)| {
                !["clonefrom", "nofailover", "noloadbalance", "nosync", "nostream"].contains(&k.as_str())
                    || super::dynamic_bool(v).unwrap_or(false)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Config {
    /// The DCS this node uses (after `--dcs`).
    pub fn dcs(&self) -> &DcsSection {
        &self.dcs
    }

    /// Parameters for the DCS backend, with timeouts from `bootstrap.dcs` (the values in force
    /// until the `/config` key is read; see [`Config::dcs_params_with`]).
    pub fn dcs_params(&self) -> crate::dcs::DcsParams {
        self.dcs_params_with(&self.bootstrap.dcs)
    }

    /// Parameters for the DCS backend with the timeouts of `dynamic`.
    pub fn dcs_params_with(&self, dynamic: &DynamicConfig) -> crate::dcs::DcsParams {
        crate::dcs::DcsParams {
            namespace: self.namespace.clone(),
            scope: self.scope.clone(),
            name: self.name.clone(),
            ttl: dynamic.ttl_duration(),
            loop_wait: dynamic.loop_wait_duration(),
            retry_timeout: dynamic.retry_timeout_duration(),
        }
    }

    /// PostgreSQL parameters in effect with `dynamic` (see [`effective_parameters`]).
    pub fn effective_parameters(
        &self,
        dynamic: &DynamicConfig,
    ) -> (BTreeMap<String, JsonValue>, Vec<Problem>) {
        effective_parameters(
            &dynamic.postgresql.parameters,
            &self.postgresql.parameters,
            &self.postgresql.listen,
            &self.scope,
        )
    }

    /// `use_pg_rewind` in effect: local value, else dynamic.
    pub fn effective_use_pg_rewind(&self, dynamic: &DynamicConfig) -> bool {
        self.postgresql.use_pg_rewind.unwrap_or(dynamic.postgresql.use_pg_rewind)
    }

    /// pg_hba lines in effect: local, else dynamic (`None`: leave pg_hba.conf alone).
    pub fn effective_pg_hba<'a>(&'a self, dynamic: &'a DynamicConfig) -> Option<&'a [String]> {
        self.postgresql.pg_hba.as_deref().or(dynamic.postgresql.pg_hba.as_deref())
    }

    /// pg_ident lines in effect: local, else dynamic.
    pub fn effective_pg_ident<'a>(&'a self, dynamic: &'a DynamicConfig) -> Option<&'a [String]> {
        self.postgresql.pg_ident.as_deref().or(dynamic.postgresql.pg_ident.as_deref())
    }
}

struct V<'a> {
    p: &'a mut Vec<Problem>,
}

impl V<'_> {
    fn err(&mut self, kind: ProblemKind, path: &str, msg: impl Into<String>) {
        self.p.push(Problem::error(kind, path, msg));
    }
    fn warn(&mut self, kind: ProblemKind, path: &str, msg: impl Into<String>) {
        self.p.push(Problem::warning(kind, path, msg));
    }
    fn required(&mut self, v: &Option<String>, path: &str) -> String {
        match v.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => {
                self.err(ProblemKind::Missing, path, "is required");
                String::new()
            }
        }
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.trim().rsplit_once(':')?;
    let port: u16 = port.trim().parse().ok()?;
    Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

fn check_address(v: &mut V<'_>, path: &str, value: &str, connect: bool) {
    if value.is_empty() {
        return;
    }
    match split_host_port(value) {
        None => v.err(ProblemKind::Invalid, path, format!("{value:?} is not host:port")),
        Some((host, _)) if connect && ["127.0.0.1", "0.0.0.0", "*", "::1", "localhost", "::"].contains(&host.as_str()) => v.warn(
            ProblemKind::Invalid,
            path,
            format!("{value:?} is a loopback or wildcard address: other members and clients cannot reach this node through it (Patroni's --validate-config rejects it)"),
        ),
        Some(_) => {}
    }
}

fn conn_auth(v: &mut V<'_>, raw: Option<&RawConnAuth>, path: &str, required: bool) -> Option<ConnAuth> {
    let Some(raw) = raw else {
        if required {
            v.err(ProblemKind::Missing, &format!("{path}.username"), "is required");
        }
        return None;
    };
    let username = match raw.username.as_deref() {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => {
            v.err(ProblemKind::Missing, &format!("{path}.username"), "is required");
            String::new()
        }
    };
    let mut options = BTreeMap::new();
    for (k, val) in [
        ("sslmode", &raw.sslmode),
        ("sslkey", &raw.sslkey),
        ("sslcert", &raw.sslcert),
        ("sslrootcert", &raw.sslrootcert),
        ("sslcrl", &raw.sslcrl),
        ("sslcrldir", &raw.sslcrldir),
        ("gssencmode", &raw.gssencmode),
        ("channel_binding", &raw.channel_binding),
        ("sslnegotiation", &raw.sslnegotiation),
    ] {
        if let Some(val) = val {
            options.insert(k.to_string(), val.clone());
        }
    }
    Some(ConnAuth { username, password: raw.password.clone(), sslpassword: raw.sslpassword.clone(), options })
}

fn user_pass(
    v: &mut V<'_>,
    auth: &Option<RawUserPass>,
    legacy: &Option<String>,
    path: &str,
) -> Option<Credentials> {
    if let Some(a) = auth {
        let username = a.username.clone().unwrap_or_default();
        if username.is_empty() {
            v.err(
                ProblemKind::Missing,
                &format!("{path}.authentication.username"),
                "is required when authentication is set",
            );
        }
        let password = match &a.password {
            Some(p) => p.clone(),
            None => {
                v.err(
                    ProblemKind::Missing,
                    &format!("{path}.authentication.password"),
                    "is required when authentication is set",
                );
                Secret(String::new())
            }
        };
        return Some(Credentials { username, password });
    }
    if let Some(l) = legacy {
        v.warn(ProblemKind::Deprecated, &format!("{path}.auth"), format!("the `username:password` form is old; use `{path}.authentication: {{username, password}}` (praetor reads it)"));
        let (u, p) = l.split_once(':').unwrap_or((l.as_str(), ""));
        return Some(Credentials { username: u.to_string(), password: Secret(p.to_string()) });
    }
    None
}

/// Read a list-or-map of options like Patroni's `process_user_options`. `not_allowed` options
/// are reported with `disallowed` severity.
fn user_options(
    v: &mut V<'_>,
    value: Option<&JsonValue>,
    path: &str,
    not_allowed: &[&str],
    fatal: bool,
) -> Vec<UserOption> {
    let mut out = Vec::new();
    let bad = |v: &mut V<'_>, p: &str, msg: String| {
        if fatal {
            v.err(ProblemKind::Invalid, p, msg)
        } else {
            v.warn(ProblemKind::Invalid, p, format!("{msg}; the option is skipped"))
        }
    };
    let mut push = |v: &mut V<'_>, p: &str, name: &str, value: Option<String>| {
        if not_allowed.contains(&name) {
            bad(v, p, format!("the option `{name}` is not allowed here (praetor sets it itself)"));
        } else {
            out.push(UserOption { name: name.to_string(), value });
        }
    };
    match value {
        None | Some(JsonValue::Null) => {}
        Some(JsonValue::Object(m)) => {
            for (k, val) in m {
                if let Some(s) = super::dynamic_string(val) {
                    push(v, &format!("{path}.{k}"), k, Some(s));
                }
            }
        }
        Some(JsonValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match item {
                    JsonValue::String(s) => push(v, &p, s, None),
                    JsonValue::Object(m) if m.len() == 1 => {
                        let (k, val) = m.iter().next().expect("one entry");
                        match super::dynamic_string(val) {
                            Some(s) => push(v, &p, k, Some(s)),
                            None => v.err(
                                ProblemKind::Invalid,
                                &p,
                                format!("the value of `{k}` must be a string"),
                            ),
                        }
                    }
                    other => v.err(
                        ProblemKind::Invalid,
                        &p,
                        format!("expected an option name or a single `name: value` pair, got {other}"),
                    ),
                }
            }
        }
        Some(other) => {
            v.err(ProblemKind::Invalid, path, format!("expected a list or a mapping of options, got {other}"))
        }
    }
    out
}

fn string_params(m: &serde_json::Map<String, JsonValue>, skip: &[&str]) -> BTreeMap<String, String> {
    m.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .filter_map(|(k, v)| super::dynamic_string(v).map(|s| (k.clone(), s)))
        .collect()
}

fn yaml_get<'a>(v: &'a YamlValue, path: &[&str]) -> Option<&'a YamlValue> {
    path.iter().try_fold(v, |cur, k| cur.get(*k))
}

/// Build the [`Config`] from the merged local YAML. Problems are appended to `problems`;
/// `None` when the YAML is not a mapping at all.
pub(crate) fn build(local: YamlValue, opts: &LoadOptions, problems: &mut Vec<Problem>) -> Option<Config> {
    if !local.is_mapping() {
        problems.push(Problem::error(
            ProblemKind::Source,
            "<config>",
            "the configuration is empty or not a mapping",
        ));
        return None;
    }
    let (raw, ignored): (RawConfig, Vec<String>) = super::deserialize_collecting(local.clone(), "", problems);
    let mut v = V { p: problems };

    // Method sections that serde does not know: bootstrap.<method>, postgresql.<method>.
    let boot_method = raw.bootstrap.method.clone().filter(|m| m != "initdb");
    let mut replica_method_names: Vec<String> =
        raw.postgresql.create_replica_methods.clone().unwrap_or_default();
    if let Some(JsonValue::Object(dcs)) = &raw.bootstrap.dcs
        && let Some(JsonValue::Object(sc)) = dcs.get("standby_cluster")
        && let Some(JsonValue::Array(m)) = sc.get("create_replica_methods")
    {
        replica_method_names.extend(m.iter().filter_map(|x| x.as_str().map(String::from)));
    }
    let mut replica_methods = BTreeMap::new();
    let mut custom_bootstrap_section = None;
    let mut reported = std::collections::BTreeSet::new();
    for path in &ignored {
        let segs: Vec<&str> = path.split('.').collect();
        if segs.len() >= 2 && segs[0] == "bootstrap" && boot_method.as_deref() == Some(segs[1]) {
            continue;
        }
        if segs.len() >= 2 && segs[0] == "postgresql" {
            let section = yaml_get(&local, &["postgresql", segs[1]]);
            let listed = replica_method_names.iter().any(|m| m == segs[1]);
            let looks_like_method = section.and_then(|s| s.get("command")).is_some();
            if listed || looks_like_method {
                if !listed && reported.insert(format!("postgresql.{}", segs[1])) {
                    v.warn(
                        ProblemKind::Misplaced,
                        &format!("postgresql.{}", segs[1]),
                        format!("looks like a replica creation method section, but `{}` is not listed in postgresql.create_replica_methods; it is not used", segs[1]),
                    );
                }
                continue;
            }
        }
        // Report the ignored key itself; nested keys of an unknown key are listed with it.
        let key = segs.last().copied().unwrap_or("");
        let parent = &segs[..segs.len().saturating_sub(1)].join(".");
        let known = super::known_keys(parent).unwrap_or(&[]);
        let mut problem = super::unknown_key_problem(path, key, known);
        if let Some(YamlValue::Mapping(m)) = yaml_get(&local, &segs) {
            let inner: Vec<String> = m
                .keys()
                .filter_map(super::de::scalar_string)
                .take(5)
                .map(|k| format!("{path}.{k}"))
                .collect();
            if !inner.is_empty() {
                problem.message = format!(
                    "{} (everything under it is ignored: {}{})",
                    problem.message,
                    inner.join(", "),
                    if m.len() > 5 { ", …" } else { "" }
                );
            }
        }
        v.p.push(problem);
    }
    for name in &replica_method_names {
        if name == "basebackup" {
            continue;
        }
        if let Some(section) = yaml_get(&local, &["postgresql", name.as_str()]) {
            let path = format!("postgresql.{name}");
            match yaml_to_json(section) {
                JsonValue::Object(m) => {
                    if m.contains_key("no_master") {
                        v.warn(
                            ProblemKind::Deprecated,
                            &format!("{path}.no_master"),
                            "not special since Patroni 4.0 (use `no_leader`); like Patroni 4, praetor passes it to the command as --no_master=…",
                        );
                    }
                    let flag = |k: &str| m.get(k).and_then(dynamic_bool).unwrap_or(false);
                    replica_methods.insert(
                        name.clone(),
                        ReplicaMethod {
                            command: m.get("command").and_then(super::dynamic_string),
                            keep_data: flag("keep_data"),
                            no_params: flag("no_params"),
                            no_leader: flag("no_leader"),
                            params: string_params(&m, &["command", "keep_data", "no_params", "no_leader"]),
                        },
                    );
                }
                JsonValue::Null => {}
                other => v.err(
                    ProblemKind::Invalid,
                    &path,
                    format!("expected a mapping (the method settings), got {other}"),
                ),
            }
        }
    }
    if let Some(m) = &boot_method {
        custom_bootstrap_section = yaml_get(&local, &["bootstrap", m.as_str()]).map(yaml_to_json);
    }

    // Global.
    let legacy_name = raw.postgresql.name.clone();
    if legacy_name.is_some() {
        v.warn(
            ProblemKind::Deprecated,
            "postgresql.name",
            "the member name belongs at the top level (`name:`); praetor uses it when `name` is absent",
        );
    }
    let name = v.required(&raw.name.clone().or(legacy_name), "name");
    let scope = v.required(&raw.scope, "scope");
    let namespace = raw.namespace.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "/service".into());
    if raw.thread_pool_size.is_some_and(|n| n < 5) {
        v.err(ProblemKind::Invalid, "thread_pool_size", "must be at least 5");
    }

    // log
    let rl = &raw.log;
    let json = match rl.kind.as_deref() {
        None | Some("plain") => false,
        Some("json") => true,
        Some(other) => {
            v.err(ProblemKind::Invalid, "log.type", format!("{other:?} is not one of plain, json"));
            false
        }
    };
    let level = rl.level.clone().unwrap_or_else(|| "INFO".into());
    if !["DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"].contains(&level.as_str()) {
        v.err(
            ProblemKind::Invalid,
            "log.level",
            format!("{level:?} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        );
    }
    if let Some(t) = &rl.traceback_level
        && !["DEBUG", "ERROR"].contains(&t.to_ascii_uppercase().as_str())
    {
        v.err(ProblemKind::Invalid, "log.traceback_level", format!("{t:?} is not one of DEBUG, ERROR"));
    }
    if rl.mode.is_some_and(|m| !(0..=511).contains(&m)) {
        v.err(ProblemKind::Invalid, "log.mode", "must be a file mode between 0 and 0777");
    }
    let log = LogConfig {
        json,
        level,
        dir: rl.dir.clone().map(PathBuf::from),
        file_num: rl.file_num.map_or(4, |n| n.max(0) as u32),
        file_size: rl.file_size.map_or(25_000_000, |n| n.max(0) as u64),
        mode: rl.mode.map(|m| m as u32),
        loggers: rl
            .loggers
            .iter()
            .flatten()
            .filter_map(|(k, val)| super::dynamic_string(val).map(|s| (k.clone(), s)))
            .collect(),
        deduplicate_heartbeat_logs: rl.deduplicate_heartbeat_logs.unwrap_or(false),
    };

    // restapi
    let ra = &raw.restapi;
    let listen = v.required(&ra.listen, "restapi.listen");
    check_address(&mut v, "restapi.listen", &listen, false);
    let connect_address = v.required(&ra.connect_address, "restapi.connect_address");
    check_address(&mut v, "restapi.connect_address", &connect_address, true);
    let verify_client = match ra.verify_client.as_deref() {
        None | Some("none") => VerifyClient::None,
        Some("optional") => VerifyClient::Optional,
        Some("required") => VerifyClient::Required,
        Some(other) => {
            v.err(
                ProblemKind::Invalid,
                "restapi.verify_client",
                format!("{other:?} is not one of none, optional, required"),
            );
            VerifyClient::None
        }
    };
    let server_tokens = ra.server_tokens.clone().unwrap_or_else(|| "original".into());
    if !["minimal", "productonly", "original"].contains(&server_tokens.to_ascii_lowercase().as_str()) {
        v.err(
            ProblemKind::Invalid,
            "restapi.server_tokens",
            format!("{server_tokens:?} is not one of minimal, productonly, original"),
        );
    }
    if ra.request_queue_size.is_some_and(|n| !(0..=4096).contains(&n)) {
        v.err(ProblemKind::Invalid, "restapi.request_queue_size", "must be between 0 and 4096");
    }
    let restapi = RestApiConfig {
        listen,
        connect_address,
        authentication: user_pass(&mut v, &ra.authentication, &ra.auth, "restapi"),
        certfile: ra.certfile.clone().map(PathBuf::from),
        keyfile: ra.keyfile.clone().map(PathBuf::from),
        keyfile_password: ra.keyfile_password.clone(),
        cafile: ra.cafile.clone().map(PathBuf::from),
        ciphers: ra.ciphers.clone(),
        verify_client,
        allowlist: ra.allowlist.clone().unwrap_or_default(),
        allowlist_include_members: ra.allowlist_include_members.unwrap_or(false),
        http_extra_headers: ra.http_extra_headers.clone(),
        https_extra_headers: ra.https_extra_headers.clone(),
        request_queue_size: ra.request_queue_size.map_or(5, |n| n.clamp(0, 4096) as u32),
        server_tokens: server_tokens.to_ascii_lowercase(),
    };

    // ctl
    let rc = &raw.ctl;
    let ctl = CtlConfig {
        authentication: user_pass(&mut v, &rc.authentication, &rc.auth, "ctl"),
        insecure: rc.insecure.unwrap_or(false),
        cacert: rc.cacert.clone().map(PathBuf::from),
        certfile: rc.certfile.clone().map(PathBuf::from),
        keyfile: rc.keyfile.clone().map(PathBuf::from),
        keyfile_password: rc.keyfile_password.clone(),
    };

    // bootstrap
    let rb = &raw.bootstrap;
    let (dcs_dynamic, dyn_problems) =
        DynamicConfig::parse(rb.dcs.as_ref().unwrap_or(&JsonValue::Null), "bootstrap.dcs", true);
    for mut p in dyn_problems {
        if p.kind == ProblemKind::Invalid {
            p.severity = super::Severity::Error;
        }
        v.p.push(p);
    }
    if let Some(JsonValue::Object(d)) = &rb.dcs {
        for old in ["master_start_timeout", "master_stop_timeout"] {
            if d.contains_key(old) {
                let new = old.replace("master", "primary");
                v.warn(
                    ProblemKind::Deprecated,
                    &format!("bootstrap.dcs.{old}"),
                    format!("renamed `{new}`; praetor reads it when `{new}` is absent"),
                );
            }
        }
    }
    if rb.users.is_some() {
        v.warn(
            ProblemKind::Deprecated,
            "bootstrap.users",
            "removed in Patroni 4.0.0: praetor, like Patroni 4, creates no roles from it; create them in a bootstrap.post_bootstrap script",
        );
    }
    let bootstrap_pg_hba = rb.pg_hba.clone().unwrap_or_default();
    if rb.pg_hba.is_some() {
        let msg = if raw.postgresql.pg_hba.is_some() {
            "legacy key: ignored because postgresql.pg_hba is set (Patroni 4 does the same); remove it"
        } else {
            "legacy key (undocumented since Patroni 2): like Patroni 4, praetor appends these lines to the pg_hba.conf written by initdb; prefer postgresql.pg_hba or bootstrap.dcs.postgresql.pg_hba"
        };
        v.warn(ProblemKind::Deprecated, "bootstrap.pg_hba", msg);
    }
    let method = match &boot_method {
        None => BootstrapMethod::Initdb,
        Some(m) => match &custom_bootstrap_section {
            Some(JsonValue::Object(sec)) => match sec.get("command").and_then(super::dynamic_string) {
                Some(command) => BootstrapMethod::Custom(CustomBootstrap {
                    name: m.clone(),
                    command,
                    keep_existing_recovery_conf: sec
                        .get("keep_existing_recovery_conf")
                        .and_then(dynamic_bool)
                        .unwrap_or(false),
                    no_params: sec.get("no_params").and_then(dynamic_bool).unwrap_or(false),
                    recovery_conf: match sec.get("recovery_conf") {
                        Some(JsonValue::Object(rc)) => Some(rc.clone()),
                        _ => None,
                    },
                    params: string_params(
                        sec,
                        &[
                            "command",
                            "keep_existing_recovery_conf",
                            "no_params",
                            "recovery_conf",
                            "scope",
                            "datadir",
                        ],
                    ),
                }),
                None => {
                    v.err(
                        ProblemKind::Missing,
                        &format!("bootstrap.{m}.command"),
                        format!("bootstrap.method is `{m}`, so bootstrap.{m}.command is required"),
                    );
                    BootstrapMethod::Initdb
                }
            },
            _ => {
                v.err(
                    ProblemKind::Missing,
                    &format!("bootstrap.{m}"),
                    format!("bootstrap.method is `{m}` but there is no bootstrap.{m} section with a command"),
                );
                BootstrapMethod::Initdb
            }
        },
    };
    let initdb = user_options(
        &mut v,
        rb.initdb.as_ref(),
        "bootstrap.initdb",
        &["pgdata", "nosync", "pwfile", "sync-only", "version"],
        true,
    );
    let bootstrap = BootstrapConfig {
        dcs: dcs_dynamic,
        method,
        initdb,
        post_bootstrap: rb.post_bootstrap.clone().or(rb.post_init.clone()),
        pg_hba: bootstrap_pg_hba,
    };

    // postgresql
    let rp = &raw.postgresql;
    let pg_listen = v.required(&rp.listen, "postgresql.listen");
    if !pg_listen.is_empty() && split_host_port(&pg_listen).is_none() {
        v.err(ProblemKind::Invalid, "postgresql.listen", format!("{pg_listen:?} is not host[,host…]:port"));
    }
    let pg_connect = v.required(&rp.connect_address, "postgresql.connect_address");
    check_address(&mut v, "postgresql.connect_address", &pg_connect, true);
    if let Some(pa) = &rp.proxy_address {
        check_address(&mut v, "postgresql.proxy_address", pa, true);
    }
    let data_dir = PathBuf::from(v.required(&rp.data_dir, "postgresql.data_dir"));
    let mut auth = rp.authentication.clone().unwrap_or_default();
    for (legacy, name) in
        [(&rp.superuser, "superuser"), (&rp.replication, "replication"), (&rp.pg_rewind, "pg_rewind")]
    {
        if legacy.is_some() {
            v.warn(
                ProblemKind::Deprecated,
                &format!("postgresql.{name}"),
                "pre-1.0 layout; use postgresql.authentication (praetor converts it)",
            );
        }
    }
    if rp.authentication.is_none() {
        auth.superuser = rp.superuser.clone().or(rp.pg_rewind.clone());
        auth.replication = rp.replication.clone();
    }
    if auth.rewind.is_none() && rp.pg_rewind.is_some() && rp.authentication.is_some() {
        auth.rewind = rp.pg_rewind.clone();
    }
    let superuser = conn_auth(&mut v, auth.superuser.as_ref(), "postgresql.authentication.superuser", true);
    let replication =
        conn_auth(&mut v, auth.replication.as_ref(), "postgresql.authentication.replication", true);
    let rewind = conn_auth(&mut v, auth.rewind.as_ref(), "postgresql.authentication.rewind", false);
    let empty =
        || ConnAuth { username: String::new(), password: None, sslpassword: None, options: BTreeMap::new() };
    if rp.use_slots.is_some() {
        v.warn(ProblemKind::Misplaced, "postgresql.use_slots", "ignored locally: replication slots are enabled or disabled for the whole cluster in bootstrap.dcs.postgresql.use_slots");
    }
    let bn = &rp.bin_name;
    let bin_name = BinNames {
        pg_ctl: bn.pg_ctl.clone().unwrap_or_else(|| "pg_ctl".into()),
        initdb: bn.initdb.clone().unwrap_or_else(|| "initdb".into()),
        pg_controldata: bn.pg_controldata.clone().unwrap_or_else(|| "pg_controldata".into()),
        pg_basebackup: bn.pg_basebackup.clone().unwrap_or_else(|| "pg_basebackup".into()),
        postgres: bn.postgres.clone().unwrap_or_else(|| "postgres".into()),
        pg_isready: bn.pg_isready.clone().unwrap_or_else(|| "pg_isready".into()),
        pg_rewind: bn.pg_rewind.clone().unwrap_or_else(|| "pg_rewind".into()),
    };
    for (std_name, configured) in bin_name.all() {
        if configured.is_empty() {
            v.err(ProblemKind::Invalid, &format!("postgresql.bin_name.{std_name}"), "is an empty string");
        }
    }
    if rp.pg_ctl_timeout.is_some_and(|t| t < 0) {
        v.err(ProblemKind::Invalid, "postgresql.pg_ctl_timeout", "must not be negative");
    }
    let basebackup = user_options(
        &mut v,
        rp.basebackup.as_ref(),
        "postgresql.basebackup",
        &[
            "pgdata",
            "format",
            "wal-method",
            "xlog-method",
            "gzip",
            "version",
            "dbname",
            "host",
            "port",
            "username",
            "password",
        ],
        false,
    );
    let postgresql = PostgresqlConfig {
        listen: pg_listen,
        connect_address: pg_connect,
        proxy_address: rp.proxy_address.clone(),
        config_dir: rp
            .config_dir
            .clone()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.clone()),
        data_dir,
        bin_dir: rp.bin_dir.clone().filter(|s| !s.is_empty()).map(PathBuf::from),
        bin_name,
        pgpass: rp.pgpass.clone().map(PathBuf::from),
        authentication: Authentication {
            superuser: superuser.unwrap_or_else(empty),
            replication: replication.unwrap_or_else(empty),
            rewind,
        },
        callbacks: Callbacks {
            on_reload: rp.callbacks.on_reload.clone(),
            on_restart: rp.callbacks.on_restart.clone(),
            on_role_change: rp.callbacks.on_role_change.clone(),
            on_start: rp.callbacks.on_start.clone(),
            on_stop: rp.callbacks.on_stop.clone(),
        },
        create_replica_methods: rp
            .create_replica_methods
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| vec!["basebackup".into()]),
        replica_methods,
        basebackup,
        recovery_conf: rp.recovery_conf.clone(),
        custom_conf: rp.custom_conf.clone().map(PathBuf::from),
        parameters: rp.parameters.clone().unwrap_or_default(),
        pg_hba: rp.pg_hba.clone(),
        pg_ident: rp.pg_ident.clone(),
        pg_ctl_timeout: Duration::from_secs(rp.pg_ctl_timeout.unwrap_or(60).max(0) as u64),
        use_pg_rewind: rp.use_pg_rewind,
        use_unix_socket: rp.use_unix_socket.unwrap_or(false),
        use_unix_socket_repl: rp.use_unix_socket_repl.unwrap_or(false),
        remove_data_directory_on_rewind_failure: rp.remove_data_directory_on_rewind_failure.unwrap_or(false),
        remove_data_directory_on_diverged_timelines: rp
            .remove_data_directory_on_diverged_timelines
            .unwrap_or(false),
        pre_promote: rp.pre_promote.clone(),
        before_stop: rp.before_stop.clone(),
        rewind: rp.rewind.clone(),
    };
    if let Some(uds) = postgresql.parameters.get("unix_socket_directories")
        && !matches!(uds, JsonValue::String(s) if !s.is_empty())
    {
        v.err(
            ProblemKind::Invalid,
            "postgresql.parameters.unix_socket_directories",
            format!("expected a non-empty string, got {uds}"),
        );
    }
    // Local command-line options are dynamic-only: say so now rather than at every start.
    let (_, param_problems) =
        effective_parameters(&BTreeMap::new(), &postgresql.parameters, &postgresql.listen, &scope);
    v.p.extend(param_problems);

    // watchdog
    let rw = &raw.watchdog;
    let mode = match &rw.mode {
        None | Some(JsonValue::Null) => WatchdogMode::Automatic,
        Some(JsonValue::Bool(false)) => WatchdogMode::Off,
        Some(JsonValue::String(s)) => match s.to_ascii_lowercase().as_str() {
            "off" | "false" | "no" => WatchdogMode::Off,
            "automatic" => WatchdogMode::Automatic,
            "required" => WatchdogMode::Required,
            other => {
                v.err(
                    ProblemKind::Invalid,
                    "watchdog.mode",
                    format!("{other:?} is not one of off, automatic, required"),
                );
                WatchdogMode::Automatic
            }
        },
        Some(other) => {
            v.err(
                ProblemKind::Invalid,
                "watchdog.mode",
                format!("{other} is not one of off, automatic, required"),
            );
            WatchdogMode::Automatic
        }
    };
    if rw.safety_margin.is_some_and(|m| m < -1) {
        v.err(ProblemKind::Invalid, "watchdog.safety_margin", "must be -1 or more");
    }
    let watchdog = WatchdogConfig {
        mode,
        device: PathBuf::from(rw.device.clone().unwrap_or_else(|| "/dev/watchdog".into())),
        safety_margin: rw.safety_margin.unwrap_or(5),
    };

    let tags = build_tags(&mut v, &raw.tags);

    // Not supported by praetor.
    for (present, key, what) in [
        (raw.kubernetes.is_some(), "kubernetes", "the Kubernetes DCS"),
        (raw.exhibitor.is_some(), "exhibitor", "the Exhibitor DCS"),
        (raw.raft.is_some(), "raft", "the built-in Raft DCS (deprecated in Patroni)"),
        (raw.citus.is_some(), "citus", "Citus clusters"),
    ] {
        if present {
            v.warn(
                ProblemKind::Unsupported,
                key,
                format!("praetor does not implement {what}; the section is ignored"),
            );
        }
    }
    if raw.thread_stack_size.is_some()
        || raw.thread_pool_size.is_some()
        || raw.restapi.thread_pool_size.is_some()
    {
        // Accepted silently: Python runtime tuning with no meaning for praetor.
    }

    let dcs = choose_dcs(&mut v, &raw, opts.dcs.as_ref());
    let dcs = dcs?;
    Some(Config { name, scope, namespace, log, restapi, ctl, bootstrap, postgresql, watchdog, tags, dcs })
}

fn build_tags(v: &mut V<'_>, raw: &BTreeMap<String, JsonValue>) -> Tags {
    let b = |v: &mut V<'_>, k: &str| -> bool {
        match raw.get(k) {
            None | Some(JsonValue::Null) => false,
            Some(val) => dynamic_bool(val).unwrap_or_else(|| {
                v.err(ProblemKind::Invalid, &format!("tags.{k}"), format!("expected a boolean, got {val}"));
                false
            }),
        }
    };
    let i = |v: &mut V<'_>, k: &str, min: i64| -> Option<i64> {
        match raw.get(k) {
            None | Some(JsonValue::Null) => None,
            Some(val) => match super::dynamic_int(val) {
                Some(n) if n >= min => Some(n),
                _ => {
                    v.err(
                        ProblemKind::Invalid,
                        &format!("tags.{k}"),
                        format!("expected an integer of at least {min}, got {val}"),
                    );
                    None
                }
            },
        }
    };
    let nofailover = b(v, "nofailover");
    let failover_priority = i(v, "failover_priority", 0);
    if raw.contains_key("nofailover") && failover_priority.is_some() {
        v.warn(
            ProblemKind::Invalid,
            "tags.failover_priority",
            "both nofailover and failover_priority are set; nofailover takes precedence",
        );
    }
    let nosync = b(v, "nosync");
    let sync_priority = i(v, "sync_priority", 0);
    if raw.contains_key("nosync") && sync_priority.is_some() {
        v.warn(
            ProblemKind::Invalid,
            "tags.sync_priority",
            "both nosync and sync_priority are set; nosync takes precedence",
        );
    }
    Tags {
        nofailover,
        failover_priority: if nofailover { 0 } else { failover_priority.unwrap_or(1) },
        nosync,
        sync_priority: if nosync { 0 } else { sync_priority.unwrap_or(1) },
        noloadbalance: b(v, "noloadbalance"),
        clonefrom: b(v, "clonefrom"),
        replicatefrom: raw.get("replicatefrom").and_then(super::dynamic_string),
        nostream: b(v, "nostream"),
        raw: raw.clone(),
    }
}

/// Patroni picks the first DCS section in its module order (alphabetical: consul, etcd, etcd3,
/// exhibitor, kubernetes, raft, zookeeper). praetor does the same among the stores it supports,
/// reads `etcd:` as etcd v3 (preferring `etcd3:` when both exist), and takes `plugin:` last.
fn choose_dcs(v: &mut V<'_>, raw: &RawConfig, choice: Option<&DcsChoice>) -> Option<DcsSection> {
    let present: Vec<&str> = [
        ("consul", raw.consul.is_some()),
        ("etcd", raw.etcd.is_some()),
        ("etcd3", raw.etcd3.is_some()),
        ("exhibitor", raw.exhibitor.is_some()),
        ("kubernetes", raw.kubernetes.is_some()),
        ("raft", raw.raft.is_some()),
        ("zookeeper", raw.zookeeper.is_some()),
        ("plugin", raw.plugin.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, p)| p.then_some(n))
    .collect();
    let etcd_section = |v: &mut V<'_>| -> Option<DcsSection> {
        match (&raw.etcd3, &raw.etcd) {
            (Some(c), _) => Some(DcsSection::Etcd3 { config: c.clone(), from_v2_section: false }),
            (None, Some(c)) => {
                v.warn(
                    ProblemKind::Misplaced,
                    "etcd",
                    "Patroni's `etcd:` section means the etcd v2 API; praetor speaks v3 only and reads it as `etcd3:`. A cluster that mixes praetor and Patroni nodes must use `etcd3:` on every node (v2 and v3 keys live apart)",
                );
                Some(DcsSection::Etcd3 { config: c.clone(), from_v2_section: true })
            }
            (None, None) => None,
        }
    };
    let section = match choice {
        Some(DcsChoice::Etcd | DcsChoice::Etcd3) => Some(etcd_section(v).unwrap_or_else(|| {
            v.warn(
                ProblemKind::Missing,
                "etcd3",
                "--dcs etcd3 given but the configuration has no etcd3/etcd section; using 127.0.0.1:2379",
            );
            DcsSection::Etcd3 {
                config: EtcdConfig { host: Some("127.0.0.1:2379".into()), ..Default::default() },
                from_v2_section: false,
            }
        })),
        Some(DcsChoice::Consul) => Some(DcsSection::Consul(raw.consul.clone().unwrap_or_else(|| {
            v.warn(
                ProblemKind::Missing,
                "consul",
                "--dcs consul given but the configuration has no consul section; using 127.0.0.1:8500",
            );
            super::dcs::ConsulConfig { host: Some("127.0.0.1:8500".into()), ..Default::default() }
        }))),
        Some(DcsChoice::ZooKeeper) => match &raw.zookeeper {
            Some(z) => Some(DcsSection::ZooKeeper(z.clone())),
            None => {
                v.err(
                    ProblemKind::Missing,
                    "zookeeper.hosts",
                    "--dcs zookeeper given but the configuration has no zookeeper section",
                );
                None
            }
        },
        Some(DcsChoice::Plugin(path)) => {
            let mut p = raw.plugin.clone().unwrap_or_default();
            p.path = Some(path.clone());
            Some(DcsSection::Plugin(p))
        }
        None => {
            let supported: Vec<&str> = present
                .iter()
                .copied()
                .filter(|n| ["consul", "etcd", "etcd3", "zookeeper", "plugin"].contains(n))
                .collect();
            let chosen = match supported.first().copied() {
                Some("consul") => raw.consul.clone().map(DcsSection::Consul),
                Some("etcd" | "etcd3") => etcd_section(v),
                Some("zookeeper") => raw.zookeeper.clone().map(DcsSection::ZooKeeper),
                Some("plugin") => raw.plugin.clone().map(DcsSection::Plugin),
                _ => None,
            };
            let distinct: Vec<&str> =
                present.iter().copied().filter(|n| !(*n == "etcd" && raw.etcd3.is_some())).collect();
            if let Some(c) = &chosen
                && distinct.len() > 1
            {
                v.warn(
                    ProblemKind::Misplaced,
                    c.kind(),
                    format!("several DCS sections ({}); praetor uses `{}` (Patroni uses the first in alphabetical order: `{}`)", present.join(", "), c.kind(), present[0]),
                );
            }
            if chosen.is_none() {
                let msg = if present.is_empty() {
                    "no DCS section: add one of etcd3, etcd, consul, zookeeper or plugin".to_string()
                } else {
                    format!(
                        "no DCS section praetor supports (found {}); use etcd3, etcd, consul, zookeeper or plugin",
                        present.join(", ")
                    )
                };
                v.err(ProblemKind::Missing, "etcd3", msg);
            }
            chosen
        }
    };
    // Check the chosen section has somewhere to connect to.
    match &section {
        Some(DcsSection::Etcd3 { config, from_v2_section }) => {
            let key = if *from_v2_section { "etcd" } else { "etcd3" };
            if config.srv.is_some() || config.srv_suffix.is_some() {
                v.warn(
                    ProblemKind::Unsupported,
                    &format!("{key}.srv"),
                    "DNS SRV discovery is not implemented; list the endpoints in hosts/host/url",
                );
            }
            if config.endpoints().is_empty() {
                v.err(
                    ProblemKind::Missing,
                    &format!("{key}.hosts"),
                    "one of host, hosts, url or proxy is required",
                );
            }
            if config.username.is_some() != config.password.is_some() {
                v.err(
                    ProblemKind::Missing,
                    &format!("{key}.password"),
                    "username and password must be given together",
                );
            }
        }
        Some(DcsSection::Consul(c)) => {
            if c.host.is_none() && c.url.is_none() {
                v.err(ProblemKind::Missing, "consul.host", "one of host or url is required");
            }
            if let Some(cons) = &c.consistency
                && !["default", "consistent", "stale"].contains(&cons.as_str())
            {
                v.err(
                    ProblemKind::Invalid,
                    "consul.consistency",
                    format!("{cons:?} is not one of default, consistent, stale"),
                );
            }
            if let Some(port) = &c.port
                && port.parse::<u16>().is_err()
            {
                v.err(ProblemKind::Invalid, "consul.port", format!("{port:?} is not a port number"));
            }
        }
        Some(DcsSection::ZooKeeper(z)) if z.hosts.is_empty() => {
            v.err(ProblemKind::Missing, "zookeeper.hosts", "is required");
        }
        Some(DcsSection::Plugin(PluginConfig { path: None, .. })) => {
            v.err(
                ProblemKind::Missing,
                "plugin.path",
                "is required (the shared library implementing the DCS)",
            );
        }
        _ => {}
    }
    section
}

/// Check this host against the configuration, as Patroni's `--validate-config` does: `bin_dir`
/// holds the programs, listen ports are free (unless `ignore_listen_port`), DCS host names
/// resolve, and `data_dir` (or its parent) is usable.
///
/// Every finding is a *warning* of kind [`ProblemKind::Environment`]: these describe the machine
/// the check runs on, not the file, and a configuration is often validated on another host than
/// the one that will run it.
pub fn check_environment(cfg: &Config, ignore_listen_port: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut warn = |path: &str, msg: String| out.push(Problem::warning(ProblemKind::Environment, path, msg));
    let pg = &cfg.postgresql;

    // Programs.
    match &pg.bin_dir {
        Some(dir) if !dir.is_dir() => {
            warn("postgresql.bin_dir", format!("directory {} does not exist on this host", dir.display()))
        }
        _ => {
            for (std_name, name) in pg.bin_name.all() {
                if !find_executable(name, pg.bin_dir.as_deref()) {
                    let where_ = pg.bin_dir.as_ref().map_or("$PATH".to_string(), |d| d.display().to_string());
                    let path = if name == std_name {
                        "postgresql.bin_dir".to_string()
                    } else {
                        format!("postgresql.bin_name.{std_name}")
                    };
                    warn(&path, format!("{where_} does not contain an executable {name:?}"));
                }
            }
        }
    }

    // Listen ports.
    if !ignore_listen_port {
        for (path, listen) in [("restapi.listen", &cfg.restapi.listen), ("postgresql.listen", &pg.listen)] {
            let Some((hosts, port)) = split_host_port(listen) else { continue };
            for host in hosts.split(',').map(str::trim) {
                let host = if host.is_empty() || host == "*" { "0.0.0.0" } else { host };
                match std::net::TcpListener::bind((host, port)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                        warn(path, format!("port {port} is already in use on {host}"))
                    }
                    Err(e) => warn(path, format!("cannot listen on {host}:{port} on this host: {e}")),
                }
            }
        }
    }

    // DCS hosts.
    let mut endpoints: Vec<(String, String)> = Vec::new();
    match cfg.dcs() {
        DcsSection::Etcd3 { config, from_v2_section } => {
            let key = if *from_v2_section { "etcd" } else { "etcd3" };
            for e in config.endpoints() {
                let hostport = e.split("://").nth(1).unwrap_or(&e).trim_end_matches('/').to_string();
                endpoints.push((format!("{key}.hosts"), hostport));
            }
        }
        DcsSection::Consul(c) => {
            if let Some(h) = c.url.as_deref().and_then(|u| u.split("://").nth(1)).or(c.host.as_deref()) {
                let h = h.trim_end_matches('/');
                let hp = if h.contains(':') {
                    h.to_string()
                } else {
                    format!("{h}:{}", c.port.as_deref().unwrap_or("8500"))
                };
                endpoints.push(("consul.host".into(), hp));
            }
        }
        DcsSection::ZooKeeper(z) => {
            for h in &z.hosts {
                let hp = if h.contains(':') { h.clone() } else { format!("{h}:2181") };
                endpoints.push(("zookeeper.hosts".into(), hp));
            }
        }
        DcsSection::Plugin(p) => {
            if let Some(path) = &p.path
                && !path.is_file()
            {
                warn("plugin.path", format!("{} does not exist on this host", path.display()));
            }
        }
    }
    for (path, hp) in endpoints {
        use std::net::ToSocketAddrs;
        if let Err(e) = hp.to_socket_addrs() {
            warn(&path, format!("{hp} does not resolve: {e}"));
        }
    }

    // data_dir.
    let dd = &pg.data_dir;
    if dd.exists() {
        if !dd.is_dir() {
            warn("postgresql.data_dir", format!("{} exists and is not a directory", dd.display()));
        } else if std::fs::read_dir(dd).map(|mut r| r.next().is_some()).unwrap_or(false)
            && !dd.join("PG_VERSION").is_file()
        {
            warn(
                "postgresql.data_dir",
                format!(
                    "{} is not empty and does not look like a PostgreSQL data directory (no PG_VERSION)",
                    dd.display()
                ),
            );
        }
    } else {
        match dd.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) if !parent.is_dir() => warn(
                "postgresql.data_dir",
                format!("parent directory {} does not exist on this host", parent.display()),
            ),
            Some(parent) if nix::unistd::access(parent, nix::unistd::AccessFlags::W_OK).is_err() => warn(
                "postgresql.data_dir",
                format!("parent directory {} is not writable by this user", parent.display()),
            ),
            _ => {}
        }
    }
    out
}

fn find_executable(name: &str, dir: Option<&Path>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let is_exec =
        |p: &Path| p.is_file() && p.metadata().map(|m| m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    if name.contains('/') {
        return is_exec(Path::new(name));
    }
    match dir {
        Some(d) => is_exec(&d.join(name)),
        None => std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| is_exec(&d.join(name)))),
    }
}
