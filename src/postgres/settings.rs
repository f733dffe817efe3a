//! Plain input of the PostgreSQL controller. The `config` module maps the validated Patroni YAML
//! (and the dynamic `/config` key) into these structs; nothing here parses YAML.
//!
//! | field | Patroni key |
//! |---|---|
//! | [`PgSettings::name`] | `name` (also `application_name` in `primary_conninfo`) |
//! | [`PgSettings::scope`] | `scope` (→ `cluster_name`) |
//! | [`PgSettings::data_dir`] | `postgresql.data_dir` |
//! | [`PgSettings::config_dir`] | `postgresql.config_dir` |
//! | [`PgSettings::bin_dir`] | `postgresql.bin_dir` |
//! | [`PgSettings::bin_name`] | `postgresql.bin_name.{postgres,pg_ctl,initdb,pg_controldata,pg_basebackup,pg_rewind,...}` |
//! | [`PgSettings::listen`] | `postgresql.listen` (`h1,h2:port`) |
//! | [`PgSettings::connect_address`] | `postgresql.connect_address` |
//! | [`PgSettings::superuser`], [`PgSettings::replication`], [`PgSettings::rewind`] | `postgresql.authentication.{superuser,replication,rewind}` |
//! | [`PgSettings::parameters`] | `postgresql.parameters` (local YAML) |
//! | [`PgSettings::dynamic_parameters`] | `postgresql.parameters` of the dynamic `/config` key |
//! | [`PgSettings::pg_hba`], [`PgSettings::pg_ident`] | `postgresql.pg_hba`, `postgresql.pg_ident` (local wins over dynamic) |
//! | [`PgSettings::pgpass`] | `postgresql.pgpass` |
//! | [`PgSettings::pg_ctl_timeout`] | `postgresql.pg_ctl_timeout` (60) |
//! | [`PgSettings::use_unix_socket`], [`PgSettings::use_unix_socket_repl`] | `postgresql.use_unix_socket`, `postgresql.use_unix_socket_repl` |
//! | [`PgSettings::basebackup`] | `postgresql.basebackup` (map or list) |
//! | [`PgSettings::create_replica_methods`] | `postgresql.create_replica_methods` |
//! | [`PgSettings::replica_methods`] | `postgresql.<method>` sections (`command`, `keep_data`, `no_params`, `no_leader`/`no_master`, extra keys) |
//! | [`PgSettings::custom_conf`] | `postgresql.custom_conf` |
//! | [`PgSettings::recovery_conf`] | `postgresql.recovery_conf` (local or dynamic) |
//! | [`PgSettings::use_pg_rewind`] | `postgresql.use_pg_rewind` |
//! | [`PgSettings::remove_data_directory_on_rewind_failure`] | `postgresql.remove_data_directory_on_rewind_failure` |
//! | [`PgSettings::remove_data_directory_on_diverged_timelines`] | `postgresql.remove_data_directory_on_diverged_timelines` |
//! | [`PgSettings::use_slots`] | `postgresql.use_slots` (dynamic only) |
//! | [`PgSettings::os_user`] | none: praetor's; the OS user PostgreSQL runs as when the agent is root |
//! | [`PgSettings::observe_timeout`] | none: praetor's; bound of one observation |
//! | [`PgSettings::postmaster_log`] | none: praetor's; where the postmaster's stdout/stderr go |
//! | [`BootstrapSettings`] | `bootstrap.{method, initdb, <method section>, post_bootstrap/post_init, users, pg_hba}` |
//!
//! Callbacks (`postgresql.callbacks`) are not here: they belong to the callbacks runner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::types::Secret;

/// One set of connection credentials (`postgresql.authentication.<who>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: Option<Secret<String>>,
    /// Extra libpq keywords (`sslmode`, `sslkey`, `sslcert`, `sslrootcert`, `sslcrl`, `gssencmode`,
    /// `channel_binding`, ...), passed through to connection strings.
    pub ssl: BTreeMap<String, String>,
}

impl Credentials {
    /// Credentials with a user and password.
    pub fn new(username: &str, password: Option<&str>) -> Credentials {
        Credentials {
            username: username.to_string(),
            password: password.map(|p| Secret(p.to_string())),
            ssl: BTreeMap::new(),
        }
    }
}

/// A `postgresql.<method>` section of a custom replica creation method.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicaMethod {
    /// `command`: shell-split; defaults to the method name.
    pub command: Option<String>,
    /// `keep_data`: don't empty the data directory before running.
    pub keep_data: bool,
    /// `no_params`: don't pass `--scope --role --datadir --connstring`.
    pub no_params: bool,
    /// `no_leader` (legacy `no_master`): works without a running member to clone from.
    pub no_leader: bool,
    /// Any other key, passed as `--key=value`.
    pub extra: BTreeMap<String, Value>,
}

/// A custom `bootstrap.<method>` section.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CustomBootstrap {
    /// `command` (shell-split).
    pub command: String,
    /// `no_params`: don't pass `--scope` and `--datadir`.
    pub no_params: bool,
    /// `keep_existing_recovery_conf`: keep `standby.signal`/`recovery.signal` the script left.
    pub keep_existing_recovery_conf: bool,
    /// `recovery_conf`: recovery settings written after the script.
    pub recovery_conf: Option<BTreeMap<String, Value>>,
    /// Other keys, passed as `--key=value`.
    pub extra: BTreeMap<String, Value>,
}

/// An entry of the deprecated `bootstrap.users` map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootstrapUser {
    /// Password.
    pub password: Option<Secret<String>>,
    /// Role options (`createrole`, `createdb`, ...).
    pub options: Vec<String>,
}

/// The `bootstrap` section, as far as PostgreSQL is concerned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BootstrapSettings {
    /// `bootstrap.method`: `initdb` (default) or the name of a key of [`Self::custom`].
    pub method: Option<String>,
    /// `bootstrap.initdb`: list of `"flag"` / `{key: value}` items, or a map.
    pub initdb: Value,
    /// Custom method sections by name.
    pub custom: BTreeMap<String, CustomBootstrap>,
    /// `bootstrap.post_bootstrap` or `bootstrap.post_init`.
    pub post_bootstrap: Option<String>,
    /// `bootstrap.users` (removed in Patroni 4.0; still honoured with a deprecation warning).
    pub users: BTreeMap<String, BootstrapUser>,
    /// `bootstrap.pg_hba` (legacy): lines appended to `pg_hba.conf` after initdb when
    /// `postgresql.pg_hba` is empty.
    pub pg_hba: Vec<String>,
}

/// Everything the controller needs to know. See the module docs for the Patroni key of each field.
#[derive(Clone, Debug)]
pub struct PgSettings {
    /// Member name.
    pub name: String,
    /// Cluster name.
    pub scope: String,
    /// PGDATA.
    pub data_dir: PathBuf,
    /// Where postgresql.conf, pg_hba.conf and pg_ident.conf live (default: `data_dir`).
    pub config_dir: Option<PathBuf>,
    /// Directory of the PostgreSQL binaries; `None` = [`crate::postgres::bin_dir::detect`].
    pub bin_dir: Option<PathBuf>,
    /// Renamed binaries (`postgres` → `postgres.real`).
    pub bin_name: BTreeMap<String, String>,
    /// `host1,host2:port`.
    pub listen: String,
    /// `host:port` other members use to reach this server.
    pub connect_address: String,
    /// Superuser credentials.
    pub superuser: Credentials,
    /// Replication credentials.
    pub replication: Credentials,
    /// Rewind credentials (`None` = superuser).
    pub rewind: Option<Credentials>,
    /// Local `postgresql.parameters`.
    pub parameters: BTreeMap<String, Value>,
    /// Dynamic `postgresql.parameters` (from `/config`).
    pub dynamic_parameters: BTreeMap<String, Value>,
    /// `pg_hba.conf` lines; empty = leave the file alone.
    pub pg_hba: Vec<String>,
    /// `pg_ident.conf` lines; empty = leave the file alone.
    pub pg_ident: Vec<String>,
    /// Password file written for PostgreSQL tools and `primary_conninfo`.
    pub pgpass: PathBuf,
    /// Bound of start/stop/promote waits.
    pub pg_ctl_timeout: Duration,
    /// Connect locally over the unix socket.
    pub use_unix_socket: bool,
    /// Replicas of the same host connect over the unix socket (stored; not used for remote members).
    pub use_unix_socket_repl: bool,
    /// pg_basebackup options, map or list form.
    pub basebackup: Value,
    /// Replica creation methods in order; empty = `["basebackup"]`.
    pub create_replica_methods: Vec<String>,
    /// Sections of custom replica methods.
    pub replica_methods: BTreeMap<String, ReplicaMethod>,
    /// Use this file as the base configuration instead of `postgresql.base.conf`.
    pub custom_conf: Option<PathBuf>,
    /// Extra recovery parameters (`restore_command`, `recovery_min_apply_delay`, ...).
    pub recovery_conf: BTreeMap<String, Value>,
    /// Rewind a diverged data directory instead of failing.
    pub use_pg_rewind: bool,
    /// Remove the data directory when pg_rewind fails.
    pub remove_data_directory_on_rewind_failure: bool,
    /// Remove the data directory on diverged timelines when rewind is impossible.
    pub remove_data_directory_on_diverged_timelines: bool,
    /// Create physical slots for members on the primary.
    pub use_slots: bool,
    /// `synchronous_standby_names` managed by the HA loop in synchronous mode (overrides the
    /// configured value); `None` leaves the user's own value.
    pub synchronous_standby_names: Option<String>,
    /// OS user that owns PGDATA; used when the agent runs as root.
    pub os_user: String,
    /// Bound of one observation.
    pub observe_timeout: Duration,
    /// File receiving the postmaster's stdout/stderr; `None` = `/dev/null`.
    pub postmaster_log: Option<PathBuf>,
    /// Bootstrap section.
    pub bootstrap: BootstrapSettings,
}

impl PgSettings {
    /// Settings with Patroni's defaults for everything but the required keys.
    pub fn new(name: &str, scope: &str, data_dir: impl Into<PathBuf>, listen: &str) -> PgSettings {
        PgSettings {
            name: name.to_string(),
            scope: scope.to_string(),
            data_dir: data_dir.into(),
            config_dir: None,
            bin_dir: None,
            bin_name: BTreeMap::new(),
            listen: listen.to_string(),
            connect_address: listen.to_string(),
            superuser: Credentials::new("postgres", None),
            replication: Credentials::new("replicator", None),
            rewind: None,
            parameters: BTreeMap::new(),
            dynamic_parameters: BTreeMap::new(),
            pg_hba: Vec::new(),
            pg_ident: Vec::new(),
            pgpass: PathBuf::from("/tmp/pgpass0"),
            pg_ctl_timeout: Duration::from_secs(60),
            use_unix_socket: false,
            use_unix_socket_repl: false,
            basebackup: Value::Null,
            create_replica_methods: Vec::new(),
            replica_methods: BTreeMap::new(),
            custom_conf: None,
            recovery_conf: BTreeMap::new(),
            use_pg_rewind: false,
            remove_data_directory_on_rewind_failure: false,
            remove_data_directory_on_diverged_timelines: false,
            use_slots: true,
            synchronous_standby_names: None,
            os_user: "postgres".to_string(),
            observe_timeout: Duration::from_secs(5),
            postmaster_log: None,
            bootstrap: BootstrapSettings::default(),
        }
    }

    /// Directory of the managed configuration files.
    pub fn config_dir(&self) -> &Path {
        self.config_dir.as_deref().unwrap_or(&self.data_dir)
    }

    /// Hosts and port of `listen`. The port defaults to 5432.
    pub fn listen_hosts_port(&self) -> (Vec<String>, u16) {
        split_hosts_port(&self.listen)
    }

    /// Host and port of `connect_address`.
    pub fn connect_host_port(&self) -> (String, u16) {
        let (hosts, port) = split_hosts_port(&self.connect_address);
        (hosts.into_iter().next().unwrap_or_else(|| "127.0.0.1".into()), port)
    }

    /// Credentials used by pg_rewind (the superuser when no rewind user is configured).
    pub fn rewind_credentials(&self) -> &Credentials {
        self.rewind.as_ref().unwrap_or(&self.superuser)
    }

    /// Value of a parameter in the effective set (local over dynamic), as a string.
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.parameters
            .get(name)
            .or_else(|| self.dynamic_parameters.get(name))
            .and_then(crate::postgres::conf::value_to_string)
    }
}

/// Split `h1,h2:port` into hosts and port. Brackets of IPv6 literals are removed.
pub fn split_hosts_port(s: &str) -> (Vec<String>, u16) {
    let s = s.trim();
    let (hosts, port) = match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => {
            (h, p.parse().unwrap_or(5432))
        }
        _ => (s, 5432),
    };
    let hosts = hosts
        .split(',')
        .map(|h| h.trim().trim_start_matches('[').trim_end_matches(']').to_string())
        .filter(|h| !h.is_empty())
        .collect();
    (hosts, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_splits_hosts_and_port() {
        assert_eq!(
            split_hosts_port("10.0.0.1,127.0.0.1:5433"),
            (vec!["10.0.0.1".to_string(), "127.0.0.1".to_string()], 5433)
        );
        assert_eq!(split_hosts_port("*"), (vec!["*".to_string()], 5432));
        assert_eq!(split_hosts_port("[::1]:6000"), (vec!["::1".to_string()], 6000));
    }
}
