//! `PATRONI_*` environment variables, read the way Patroni's
//! `P:config.py _build_environment_configuration` reads them.
//!
//! The environment is an explicit input (a map), so tests never touch the process environment.
//! The result is a YAML mapping that the loader patches over the file configuration.

use super::{Problem, ProblemKind};
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;

/// Environment variable holding a whole YAML configuration.
pub const CONFIGURATION_VAR: &str = "PATRONI_CONFIGURATION";
const PREFIX: &str = "PATRONI_";

const AUTH_PARAMS: &[&str] = &[
    "username",
    "password",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "gssencmode",
    "channel_binding",
    "sslnegotiation",
];

const DCS_SUFFIXES: &[&str] = &[
    "HOST",
    "HOSTS",
    "PORT",
    "USE_PROXIES",
    "PROTOCOL",
    "SRV",
    "SRV_SUFFIX",
    "URL",
    "PROXY",
    "CACERT",
    "CERT",
    "KEY",
    "VERIFY",
    "TOKEN",
    "CHECKS",
    "DC",
    "CONSISTENCY",
    "REGISTER_SERVICE",
    "SERVICE_CHECK_INTERVAL",
    "SERVICE_CHECK_TLS_SERVER_NAME",
    "SERVICE_TAGS",
    "NAMESPACE",
    "CONTEXT",
    "USE_ENDPOINTS",
    "SCOPE_LABEL",
    "ROLE_LABEL",
    "POD_IP",
    "PORTS",
    "LABELS",
    "BYPASS_API_SERVICE",
    "RETRIABLE_HTTP_CODES",
    "KEY_PASSWORD",
    "USE_SSL",
    "SET_ACLS",
    "GROUP",
    "DATABASE",
    "LEADER_LABEL_VALUE",
    "FOLLOWER_LABEL_VALUE",
    "STANDBY_LEADER_LABEL_VALUE",
    "TMP_ROLE_LABEL",
    "AUTH_DATA",
    "BOOTSTRAP_LABELS",
];

struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Take `PATRONI_<NAME>` (upper-cased) out of the environment; empty values count as unset.
    fn pop(&mut self, name: &str) -> Option<String> {
        self.vars.remove(&format!("{PREFIX}{}", name.to_ascii_uppercase())).filter(|v| !v.is_empty())
    }
}

fn section<'a>(root: &'a mut Mapping, name: &str) -> &'a mut Mapping {
    let key = Value::String(name.to_string());
    if !matches!(root.get(&key), Some(Value::Mapping(_))) {
        root.insert(key.clone(), Value::Mapping(Mapping::new()));
    }
    match root.get_mut(&key) {
        Some(Value::Mapping(m)) => m,
        _ => unreachable!("inserted a mapping above"),
    }
}

fn set(m: &mut Mapping, key: &str, v: Value) {
    m.insert(Value::String(key.to_string()), v);
}

/// Patroni's `_parse_list`: a YAML list, or a comma-separated list without brackets.
fn parse_list(value: &str) -> Option<Value> {
    let text = if value.trim().starts_with('-') || value.contains('[') {
        value.to_string()
    } else {
        format!("[{value}]")
    };
    serde_yaml_ng::from_str::<Value>(&text).ok().filter(Value::is_sequence)
}

/// Patroni's `_parse_dict`: a YAML flow mapping, braces optional.
fn parse_dict(value: &str) -> Option<Value> {
    let text = if value.trim().starts_with('{') { value.to_string() } else { format!("{{{value}}}") };
    serde_yaml_ng::from_str::<Value>(&text).ok().filter(Value::is_mapping)
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Build the configuration given by `PATRONI_*` variables (everything except
/// `PATRONI_CONFIGURATION`). Unparsable list/dict values are dropped with a warning, as Patroni
/// does.
pub fn environment_configuration(env: &BTreeMap<String, String>) -> (Value, Vec<Problem>) {
    let mut env = Env {
        vars: env
            .iter()
            .filter(|(k, _)| k.starts_with(PREFIX) && k.as_str() != CONFIGURATION_VAR)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let mut problems = Vec::new();
    let mut root = Mapping::new();

    for param in ["name", "namespace", "scope"] {
        if let Some(v) = env.pop(param) {
            set(&mut root, param, Value::String(v));
        }
    }
    for param in ["thread_pool_size", "thread_stack_size"] {
        if let Some(v) = env.pop(param) {
            set(&mut root, param, Value::String(v));
        }
    }
    // Old log variable names (P:config.py _fix_log_env); the new name wins.
    for (new, old) in
        [("LOG_LEVEL", "LOGLEVEL"), ("LOG_FORMAT", "LOGFORMAT"), ("LOG_DATEFORMAT", "LOG_DATEFMT")]
    {
        if let Some(v) = env.pop(old) {
            env.vars.entry(format!("{PREFIX}{new}")).or_insert(v);
        }
    }

    let sections: &[(&str, &[&str])] = &[
        (
            "restapi",
            &[
                "listen",
                "connect_address",
                "certfile",
                "keyfile",
                "keyfile_password",
                "cafile",
                "ciphers",
                "verify_client",
                "http_extra_headers",
                "https_extra_headers",
                "allowlist",
                "allowlist_include_members",
                "request_queue_size",
                "server_tokens",
                "thread_pool_size",
            ],
        ),
        ("ctl", &["insecure", "cacert", "certfile", "keyfile", "keyfile_password"]),
        (
            "postgresql",
            &["listen", "connect_address", "proxy_address", "config_dir", "data_dir", "pgpass", "bin_dir"],
        ),
        (
            "log",
            &[
                "type",
                "level",
                "traceback_level",
                "format",
                "dateformat",
                "static_fields",
                "max_queue_size",
                "dir",
                "mode",
                "file_size",
                "file_num",
                "loggers",
                "deduplicate_heartbeat_logs",
            ],
        ),
        ("raft", &["data_dir", "self_addr", "partner_addrs", "password", "bind_addr"]),
    ];
    for (name, params) in sections {
        for param in *params {
            if let Some(v) = env.pop(&format!("{name}_{param}")) {
                let var = format!("{PREFIX}{}_{}", name.to_ascii_uppercase(), param.to_ascii_uppercase());
                let value = match (*name, *param) {
                    ("raft", "partner_addrs") | ("restapi", "allowlist") => parse_list(&v),
                    ("restapi", "http_extra_headers")
                    | ("restapi", "https_extra_headers")
                    | ("log", "loggers")
                    | ("log", "static_fields") => parse_dict(&v),
                    _ => Some(Value::String(v.clone())),
                };
                match value {
                    Some(value) => set(section(&mut root, name), param, value),
                    None => problems.push(Problem::warning(
                        ProblemKind::Invalid,
                        var,
                        format!("could not parse {v:?}; the variable is ignored"),
                    )),
                }
            }
        }
    }
    for binary in
        ["pg_ctl", "initdb", "pg_controldata", "pg_basebackup", "postgres", "pg_isready", "pg_rewind"]
    {
        if let Some(v) = env.pop(&format!("POSTGRESQL_BIN_{binary}")) {
            let pg = section(&mut root, "postgresql");
            set(section(pg, "bin_name"), binary, Value::String(v));
        }
    }
    for name in ["ctl", "restapi"] {
        let mut auth = Mapping::new();
        for param in &AUTH_PARAMS[..2] {
            if let Some(v) = env.pop(&format!("{name}_{param}")) {
                set(&mut auth, param, Value::String(v));
            }
        }
        if !auth.is_empty() {
            set(section(&mut root, name), "authentication", Value::Mapping(auth));
        }
    }
    let mut authentication = Mapping::new();
    for user in ["replication", "superuser", "rewind"] {
        let mut entry = Mapping::new();
        for param in AUTH_PARAMS {
            if let Some(v) = env.pop(&format!("{user}_{param}")) {
                set(&mut entry, param, Value::String(v));
            }
        }
        if !entry.is_empty() {
            set(&mut authentication, user, Value::Mapping(entry));
        }
    }
    if !authentication.is_empty() {
        set(section(&mut root, "postgresql"), "authentication", Value::Mapping(authentication));
    }

    // PATRONI_<DCS>_<SUFFIX>
    let names: Vec<String> = env.vars.keys().cloned().collect();
    for var in names {
        let rest = &var[PREFIX.len()..];
        let Some((name, suffix)) = rest.split_once('_') else { continue };
        if name.is_empty() || !DCS_SUFFIXES.contains(&suffix) {
            continue;
        }
        let Some(raw) = env.vars.remove(&var) else { continue };
        let value = if name == "CITUS" {
            match suffix {
                "GROUP" => super::de::parse_int_str(&raw, None).map(|n| Value::Number(n.into())),
                "DATABASE" => Some(Value::String(raw.clone())),
                _ => continue,
            }
        } else {
            match suffix {
                "PORT" => super::de::parse_int_str(&raw, None).map(|n| Value::Number(n.into())),
                "HOSTS" | "PORTS" | "CHECKS" | "SERVICE_TAGS" | "RETRIABLE_HTTP_CODES" => parse_list(&raw),
                "LABELS" | "SET_ACLS" | "AUTH_DATA" | "BOOTSTRAP_LABELS" => parse_dict(&raw),
                "USE_PROXIES" | "REGISTER_SERVICE" | "USE_ENDPOINTS" | "BYPASS_API_SERVICE" | "VERIFY"
                | "USE_SSL" => parse_bool(&raw).map(Value::Bool),
                _ => Some(Value::String(raw.clone())),
            }
        };
        match value {
            Some(v) => set(section(&mut root, &name.to_ascii_lowercase()), &suffix.to_ascii_lowercase(), v),
            None => problems.push(Problem::warning(
                ProblemKind::Invalid,
                var.clone(),
                format!("could not parse {raw:?}; the variable is ignored"),
            )),
        }
    }
    for dcs in ["etcd", "etcd3"] {
        if root.contains_key(dcs) {
            for param in &AUTH_PARAMS[..2] {
                if let Some(v) = env.pop(&format!("{dcs}_{param}")) {
                    set(section(&mut root, dcs), param, Value::String(v));
                }
            }
        }
    }
    // PATRONI_<user>_PASSWORD / _OPTIONS: Patroni < 4 created these roles (bootstrap.users).
    let mut users = Mapping::new();
    let names: Vec<String> = env.vars.keys().cloned().collect();
    for var in names {
        let rest = &var[PREFIX.len()..];
        let Some((user, suffix)) = rest.rsplit_once('_') else { continue };
        if user.is_empty() || suffix != "PASSWORD" {
            continue;
        }
        let Some(password) = env.vars.remove(&var).filter(|p| !p.is_empty()) else { continue };
        let mut entry = Mapping::new();
        set(&mut entry, "password", Value::String(password));
        if let Some(options) =
            env.vars.remove(&format!("{PREFIX}{user}_OPTIONS")).and_then(|o| parse_list(&o))
        {
            set(&mut entry, "options", options);
        }
        set(&mut users, user, Value::Mapping(entry));
    }
    if !users.is_empty() {
        set(section(&mut root, "bootstrap"), "users", Value::Mapping(users));
    }
    (Value::Mapping(root), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
        path.split('.').try_fold(v, |v, k| v.get(k))
    }

    #[test]
    fn section_variables_map_to_keys() {
        let (v, p) = environment_configuration(&env(&[
            ("PATRONI_NAME", "n1"),
            ("PATRONI_SCOPE", "demo"),
            ("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008"),
            ("PATRONI_RESTAPI_USERNAME", "admin"),
            ("PATRONI_RESTAPI_PASSWORD", "secret"),
            ("PATRONI_RESTAPI_ALLOWLIST", "10.0.0.1, 10.0.0.2"),
            ("PATRONI_POSTGRESQL_DATA_DIR", "/data"),
            ("PATRONI_POSTGRESQL_BIN_PG_CTL", "pg_ctl.real"),
            ("PATRONI_SUPERUSER_USERNAME", "postgres"),
            ("PATRONI_REPLICATION_SSLMODE", "require"),
            ("PATRONI_LOGLEVEL", "DEBUG"),
            ("HOME", "/root"),
        ]));
        assert!(p.is_empty());
        assert_eq!(get(&v, "name").and_then(Value::as_str), Some("n1"));
        assert_eq!(get(&v, "restapi.listen").and_then(Value::as_str), Some("0.0.0.0:8008"));
        assert_eq!(get(&v, "restapi.authentication.password").and_then(Value::as_str), Some("secret"));
        assert_eq!(get(&v, "restapi.allowlist").and_then(Value::as_sequence).map(Vec::len), Some(2));
        assert_eq!(get(&v, "postgresql.bin_name.pg_ctl").and_then(Value::as_str), Some("pg_ctl.real"));
        assert_eq!(
            get(&v, "postgresql.authentication.superuser.username").and_then(Value::as_str),
            Some("postgres")
        );
        assert_eq!(
            get(&v, "postgresql.authentication.replication.sslmode").and_then(Value::as_str),
            Some("require")
        );
        assert_eq!(get(&v, "log.level").and_then(Value::as_str), Some("DEBUG"));
        assert!(get(&v, "bootstrap").is_none(), "RESTAPI_PASSWORD must not become a user");
    }

    #[test]
    fn generic_dcs_variables_and_users() {
        let (v, _) = environment_configuration(&env(&[
            ("PATRONI_ETCD3_HOSTS", "'a:2379','b:2379'"),
            ("PATRONI_ETCD3_PASSWORD", "pw"),
            ("PATRONI_CONSUL_PORT", "8501"),
            ("PATRONI_CONSUL_REGISTER_SERVICE", "on"),
            ("PATRONI_CITUS_GROUP", "1"),
            ("PATRONI_ZOOKEEPER_SET_ACLS", "CN=x: [ALL]"),
            ("PATRONI_ADMIN_PASSWORD", "adm"),
            ("PATRONI_ADMIN_OPTIONS", "createdb,createrole"),
        ]));
        assert_eq!(get(&v, "etcd3.hosts").and_then(Value::as_sequence).map(Vec::len), Some(2));
        assert_eq!(get(&v, "etcd3.password").and_then(Value::as_str), Some("pw"));
        assert_eq!(get(&v, "consul.port").and_then(Value::as_i64), Some(8501));
        assert_eq!(get(&v, "consul.register_service").and_then(Value::as_bool), Some(true));
        assert_eq!(get(&v, "citus.group").and_then(Value::as_i64), Some(1));
        assert!(get(&v, "zookeeper.set_acls").is_some_and(Value::is_mapping));
        assert_eq!(get(&v, "bootstrap.users.ADMIN.password").and_then(Value::as_str), Some("adm"));
        assert_eq!(
            get(&v, "bootstrap.users.ADMIN.options").and_then(Value::as_sequence).map(Vec::len),
            Some(2)
        );
    }
}
