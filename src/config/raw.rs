//! `RawConfig`: the exact shape of Patroni's YAML, every key optional, read leniently.
//!
//! Nothing here checks cross-field rules; [`super::validate`] turns a `RawConfig` into a
//! [`super::Config`]. Keys praetor knows but does not act on are still parsed so they are not
//! reported as unknown. Free-form values (PostgreSQL parameters, custom tags, method sections) are
//! kept as JSON values.

use super::dcs::{ConsulConfig, EtcdConfig, PluginConfig, ZooKeeperConfig};
use super::de;
use crate::types::Secret;
use serde::Deserialize;
use serde_json::Value as JsonValue;
use std::collections::BTreeMap;

/// The whole file (or directory of files, or environment) before validation.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    /// `name`: this member's name (required).
    #[serde(deserialize_with = "de::opt_string")]
    pub name: Option<String>,
    /// `scope`: the cluster name (required).
    #[serde(deserialize_with = "de::opt_string")]
    pub scope: Option<String>,
    /// `namespace` (default `/service`).
    #[serde(deserialize_with = "de::opt_string")]
    pub namespace: Option<String>,
    /// Patroni 4.1.1 thread pool size; accepted, no effect in praetor.
    #[serde(deserialize_with = "de::opt_int")]
    pub thread_pool_size: Option<i64>,
    /// Patroni 4.1.1 thread stack size; accepted, no effect in praetor.
    #[serde(deserialize_with = "de::opt_int")]
    pub thread_stack_size: Option<i64>,
    /// `log:`.
    pub log: RawLog,
    /// `restapi:`.
    pub restapi: RawRestApi,
    /// `ctl:`.
    pub ctl: RawCtl,
    /// `bootstrap:`.
    pub bootstrap: RawBootstrap,
    /// `postgresql:`.
    pub postgresql: RawPostgresql,
    /// `watchdog:`.
    pub watchdog: RawWatchdog,
    /// `tags:` including custom tags.
    pub tags: BTreeMap<String, JsonValue>,
    /// `citus:` (not supported by praetor).
    pub citus: Option<JsonValue>,
    /// `etcd:` (Patroni's v2 API section; praetor reads it as v3).
    pub etcd: Option<EtcdConfig>,
    /// `etcd3:`.
    pub etcd3: Option<EtcdConfig>,
    /// `consul:`.
    pub consul: Option<ConsulConfig>,
    /// `zookeeper:`.
    pub zookeeper: Option<ZooKeeperConfig>,
    /// `exhibitor:` (not supported by praetor).
    pub exhibitor: Option<JsonValue>,
    /// `kubernetes:` (not supported by praetor).
    pub kubernetes: Option<JsonValue>,
    /// `raft:` (not supported by praetor).
    pub raft: Option<JsonValue>,
    /// praetor's `plugin:` section: a DCS backend in a shared library.
    pub plugin: Option<PluginConfig>,
}

/// `log:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawLog {
    /// `plain` or `json`.
    #[serde(rename = "type", deserialize_with = "de::opt_string")]
    pub kind: Option<String>,
    /// DEBUG, INFO, WARNING, ERROR, CRITICAL.
    #[serde(deserialize_with = "de::opt_string")]
    pub level: Option<String>,
    /// DEBUG or ERROR.
    #[serde(deserialize_with = "de::opt_string")]
    pub traceback_level: Option<String>,
    /// Python logging format (string, or list for json).
    pub format: Option<JsonValue>,
    /// Python date format.
    #[serde(deserialize_with = "de::opt_string")]
    pub dateformat: Option<String>,
    /// Extra fields for json logs.
    pub static_fields: Option<BTreeMap<String, JsonValue>>,
    /// Queue size of the log thread.
    #[serde(deserialize_with = "de::opt_int")]
    pub max_queue_size: Option<i64>,
    /// Directory for log files.
    #[serde(deserialize_with = "de::opt_string")]
    pub dir: Option<String>,
    /// Number of rotated log files.
    #[serde(deserialize_with = "de::opt_int")]
    pub file_num: Option<i64>,
    /// Size of a log file before rotation, bytes.
    #[serde(deserialize_with = "de::opt_int")]
    pub file_size: Option<i64>,
    /// Permissions of log files (octal number).
    #[serde(deserialize_with = "de::opt_int")]
    pub mode: Option<i64>,
    /// Per-module log levels.
    pub loggers: Option<BTreeMap<String, JsonValue>>,
    /// Suppress identical successive heartbeat lines.
    #[serde(deserialize_with = "de::opt_bool")]
    pub deduplicate_heartbeat_logs: Option<bool>,
}

/// `username`/`password` pair (`restapi.authentication`, `ctl.authentication`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawUserPass {
    /// User name.
    #[serde(deserialize_with = "de::opt_string")]
    pub username: Option<String>,
    /// Password.
    #[serde(deserialize_with = "de::opt_secret")]
    pub password: Option<Secret<String>>,
}

/// `restapi:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRestApi {
    /// `host:port` to listen on (required).
    #[serde(deserialize_with = "de::opt_string")]
    pub listen: Option<String>,
    /// `host:port` other members and clients use (required).
    #[serde(deserialize_with = "de::opt_string")]
    pub connect_address: Option<String>,
    /// Basic auth for mutating endpoints.
    pub authentication: Option<RawUserPass>,
    /// Pre-1.0 form `username:password` of `authentication`.
    #[serde(deserialize_with = "de::opt_string")]
    pub auth: Option<String>,
    /// TLS certificate.
    #[serde(deserialize_with = "de::opt_string")]
    pub certfile: Option<String>,
    /// TLS key.
    #[serde(deserialize_with = "de::opt_string")]
    pub keyfile: Option<String>,
    /// Password of the TLS key.
    #[serde(deserialize_with = "de::opt_secret")]
    pub keyfile_password: Option<Secret<String>>,
    /// CA for client certificates.
    #[serde(deserialize_with = "de::opt_string")]
    pub cafile: Option<String>,
    /// Allowed TLS ciphers.
    #[serde(deserialize_with = "de::opt_string")]
    pub ciphers: Option<String>,
    /// `none`, `optional`, `required`.
    #[serde(deserialize_with = "de::opt_string")]
    pub verify_client: Option<String>,
    /// Hosts/networks allowed to call mutating endpoints.
    #[serde(deserialize_with = "de::opt_string_list")]
    pub allowlist: Option<Vec<String>>,
    /// Also allow the cluster members' addresses.
    #[serde(deserialize_with = "de::opt_bool")]
    pub allowlist_include_members: Option<bool>,
    /// Extra response headers for HTTP.
    #[serde(deserialize_with = "de::string_map")]
    pub http_extra_headers: BTreeMap<String, String>,
    /// Extra response headers for HTTPS.
    #[serde(deserialize_with = "de::string_map")]
    pub https_extra_headers: BTreeMap<String, String>,
    /// Listen backlog (0..4096).
    #[serde(deserialize_with = "de::opt_int")]
    pub request_queue_size: Option<i64>,
    /// `minimal`, `productonly`, `original`.
    #[serde(deserialize_with = "de::opt_string")]
    pub server_tokens: Option<String>,
    /// Patroni 4.1.1 REST thread pool; accepted, no effect in praetor.
    #[serde(deserialize_with = "de::opt_int")]
    pub thread_pool_size: Option<i64>,
}

/// `ctl:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawCtl {
    /// Basic auth used by the CLI.
    pub authentication: Option<RawUserPass>,
    /// Pre-1.0 form `username:password`.
    #[serde(deserialize_with = "de::opt_string")]
    pub auth: Option<String>,
    /// Skip TLS verification.
    #[serde(deserialize_with = "de::opt_bool")]
    pub insecure: Option<bool>,
    /// CA certificate.
    #[serde(deserialize_with = "de::opt_string")]
    pub cacert: Option<String>,
    /// Client certificate.
    #[serde(deserialize_with = "de::opt_string")]
    pub certfile: Option<String>,
    /// Client key.
    #[serde(deserialize_with = "de::opt_string")]
    pub keyfile: Option<String>,
    /// Password of the client key.
    #[serde(deserialize_with = "de::opt_secret")]
    pub keyfile_password: Option<Secret<String>>,
}

/// `bootstrap:`. Custom method sections (`bootstrap.<method>`) are not fields: the loader reads
/// them from the YAML by the name given in `method`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawBootstrap {
    /// Written once to the DCS `/config` key; parsed by [`super::dynamic::DynamicConfig`].
    pub dcs: Option<JsonValue>,
    /// `initdb` or the name of a custom section.
    #[serde(deserialize_with = "de::opt_string")]
    pub method: Option<String>,
    /// initdb options: list of `name` / `{name: value}`, or a mapping.
    pub initdb: Option<JsonValue>,
    /// Script run after bootstrap with a superuser connection URL.
    #[serde(deserialize_with = "de::opt_string")]
    pub post_bootstrap: Option<String>,
    /// Older name of `post_bootstrap`.
    #[serde(deserialize_with = "de::opt_string")]
    pub post_init: Option<String>,
    /// Removed in Patroni 4.0.0 (roles to create). Accepted and ignored, with a warning.
    pub users: Option<JsonValue>,
    /// Legacy: lines appended to the initdb-generated `pg_hba.conf` (unless `postgresql.pg_hba`).
    #[serde(deserialize_with = "de::opt_string_list")]
    pub pg_hba: Option<Vec<String>>,
}

/// One of `postgresql.authentication.{superuser,replication,rewind}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConnAuth {
    /// Role name.
    #[serde(deserialize_with = "de::opt_string")]
    pub username: Option<String>,
    /// Password.
    #[serde(deserialize_with = "de::opt_secret")]
    pub password: Option<Secret<String>>,
    /// libpq `sslmode`.
    #[serde(deserialize_with = "de::opt_string")]
    pub sslmode: Option<String>,
    /// libpq `sslkey`.
    #[serde(deserialize_with = "de::opt_string")]
    pub sslkey: Option<String>,
    /// libpq `sslpassword`.
    #[serde(deserialize_with = "de::opt_secret")]
    pub sslpassword: Option<Secret<String>>,
    /// libpq `sslcert`.
    #[serde(deserialize_with = "de::opt_string")]
    pub sslcert: Option<String>,
    /// libpq `sslrootcert`.
    #[serde(deserialize_with = "de::opt_string")]
    pub sslrootcert: Option<String>,
    /// libpq `sslcrl`.
    #[serde(deserialize_with = "de::opt_string")]
    pub sslcrl: Option<String>,
    /// libpq `sslcrldir`.
    #[serde(deserialize_with = "de::opt_string")]
    pub sslcrldir: Option<String>,
    /// libpq `gssencmode`.
    #[serde(deserialize_with = "de::opt_string")]
    pub gssencmode: Option<String>,
    /// libpq `channel_binding`.
    #[serde(deserialize_with = "de::opt_string")]
    pub channel_binding: Option<String>,
    /// libpq `sslnegotiation`.
    #[serde(deserialize_with = "de::opt_string")]
    pub sslnegotiation: Option<String>,
}

/// `postgresql.authentication`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawAuthentication {
    /// Superuser.
    pub superuser: Option<RawConnAuth>,
    /// Replication user.
    pub replication: Option<RawConnAuth>,
    /// pg_rewind user (defaults to the superuser).
    pub rewind: Option<RawConnAuth>,
}

/// `postgresql.bin_name`: alternative names of the PostgreSQL programs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawBinName {
    /// `pg_ctl`.
    #[serde(deserialize_with = "de::opt_string")]
    pub pg_ctl: Option<String>,
    /// `initdb`.
    #[serde(deserialize_with = "de::opt_string")]
    pub initdb: Option<String>,
    /// `pg_controldata`.
    #[serde(deserialize_with = "de::opt_string")]
    pub pg_controldata: Option<String>,
    /// `pg_basebackup`.
    #[serde(deserialize_with = "de::opt_string")]
    pub pg_basebackup: Option<String>,
    /// `postgres`.
    #[serde(deserialize_with = "de::opt_string")]
    pub postgres: Option<String>,
    /// `pg_isready`.
    #[serde(deserialize_with = "de::opt_string")]
    pub pg_isready: Option<String>,
    /// `pg_rewind`.
    #[serde(deserialize_with = "de::opt_string")]
    pub pg_rewind: Option<String>,
}

/// `postgresql.callbacks`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawCallbacks {
    /// Run after a configuration reload.
    #[serde(deserialize_with = "de::opt_string")]
    pub on_reload: Option<String>,
    /// Run after a restart.
    #[serde(deserialize_with = "de::opt_string")]
    pub on_restart: Option<String>,
    /// Run after promote/demote.
    #[serde(deserialize_with = "de::opt_string")]
    pub on_role_change: Option<String>,
    /// Run after start.
    #[serde(deserialize_with = "de::opt_string")]
    pub on_start: Option<String>,
    /// Run after stop.
    #[serde(deserialize_with = "de::opt_string")]
    pub on_stop: Option<String>,
}

/// `postgresql:` (the local part). Per-method sections (`postgresql.<method>` for every name in
/// `create_replica_methods`) are read by the loader, not by serde.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawPostgresql {
    /// `host[,host…]:port` to listen on (required).
    #[serde(deserialize_with = "de::opt_string")]
    pub listen: Option<String>,
    /// `host:port` others connect to (required).
    #[serde(deserialize_with = "de::opt_string")]
    pub connect_address: Option<String>,
    /// `host:port` of a connection pooler in front of this node.
    #[serde(deserialize_with = "de::opt_string")]
    pub proxy_address: Option<String>,
    /// PGDATA (required).
    #[serde(deserialize_with = "de::opt_string")]
    pub data_dir: Option<String>,
    /// Where postgresql.conf lives (default: data_dir).
    #[serde(deserialize_with = "de::opt_string")]
    pub config_dir: Option<String>,
    /// Directory of the PostgreSQL programs (default: `$PATH`).
    #[serde(deserialize_with = "de::opt_string")]
    pub bin_dir: Option<String>,
    /// Alternative program names.
    pub bin_name: RawBinName,
    /// The pgpass file praetor writes.
    #[serde(deserialize_with = "de::opt_string")]
    pub pgpass: Option<String>,
    /// Roles praetor connects as.
    pub authentication: Option<RawAuthentication>,
    /// Callback scripts.
    pub callbacks: RawCallbacks,
    /// Replica creation methods in order of preference (`basebackup` is built in).
    #[serde(deserialize_with = "de::opt_string_list")]
    pub create_replica_methods: Option<Vec<String>>,
    /// pg_basebackup options: a mapping, or a list of `name` / `{name: value}`.
    pub basebackup: Option<JsonValue>,
    /// Recovery settings for replicas.
    pub recovery_conf: Option<BTreeMap<String, JsonValue>>,
    /// An extra configuration file included by postgresql.conf.
    #[serde(deserialize_with = "de::opt_string")]
    pub custom_conf: Option<String>,
    /// PostgreSQL parameters, passed through.
    pub parameters: Option<BTreeMap<String, JsonValue>>,
    /// pg_hba.conf lines.
    #[serde(deserialize_with = "de::opt_string_list")]
    pub pg_hba: Option<Vec<String>>,
    /// pg_ident.conf lines.
    #[serde(deserialize_with = "de::opt_string_list")]
    pub pg_ident: Option<Vec<String>>,
    /// pg_ctl timeout, seconds (default 60).
    #[serde(deserialize_with = "de::opt_secs")]
    pub pg_ctl_timeout: Option<i64>,
    /// Use pg_rewind (local override of the dynamic value).
    #[serde(deserialize_with = "de::opt_bool")]
    pub use_pg_rewind: Option<bool>,
    /// Dynamic-only: a local value is ignored (Patroni enables/disables slots globally).
    #[serde(deserialize_with = "de::opt_bool")]
    pub use_slots: Option<bool>,
    /// Connect through the unix socket.
    #[serde(deserialize_with = "de::opt_bool")]
    pub use_unix_socket: Option<bool>,
    /// Replication connections through the unix socket.
    #[serde(deserialize_with = "de::opt_bool")]
    pub use_unix_socket_repl: Option<bool>,
    /// Remove PGDATA when pg_rewind fails.
    #[serde(deserialize_with = "de::opt_bool")]
    pub remove_data_directory_on_rewind_failure: Option<bool>,
    /// Remove PGDATA when timelines diverged and rewind is impossible.
    #[serde(deserialize_with = "de::opt_bool")]
    pub remove_data_directory_on_diverged_timelines: Option<bool>,
    /// Fencing script run before promote; non-zero exit cancels the promote.
    #[serde(deserialize_with = "de::opt_string")]
    pub pre_promote: Option<String>,
    /// Script run before stopping PostgreSQL.
    #[serde(deserialize_with = "de::opt_string")]
    pub before_stop: Option<String>,
    /// Patroni 4.2: extra pg_rewind options.
    pub rewind: Option<JsonValue>,
    /// Pre-1.0 form of `authentication.replication`.
    pub replication: Option<RawConnAuth>,
    /// Pre-1.0 form of `authentication.superuser`.
    pub superuser: Option<RawConnAuth>,
    /// Pre-1.0 form of `authentication.rewind` (and `use_pg_rewind: true`).
    pub pg_rewind: Option<RawConnAuth>,
    /// Pre-1.0 location of the member `name`.
    #[serde(deserialize_with = "de::opt_string")]
    pub name: Option<String>,
}

/// `watchdog:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawWatchdog {
    /// `off`, `automatic`, `required` (a YAML `false`/`off` means off).
    pub mode: Option<JsonValue>,
    /// Device path (default `/dev/watchdog`).
    #[serde(deserialize_with = "de::opt_string")]
    pub device: Option<String>,
    /// Seconds between the watchdog firing and the leader key expiring (default 5; -1 = ttl/2).
    #[serde(deserialize_with = "de::opt_int")]
    pub safety_margin: Option<i64>,
}
