//! Finding the cluster like patronictl does (`ctl.py load_config`, `parse_dcs`): the configuration
//! file (`-c`, `PATRONICTL_CONFIG_FILE`, or the default paths), overridden by `-d DCS://HOST:PORT/NAMESPACE`.
//!
//! TEMPORARY: this reads only the keys praetorctl needs (`scope`, `namespace`, the DCS sections, `ctl`)
//! straight from the YAML. Replace it with `crate::config` once that module offers a loader for
//! ctl-sized files (no `name`/`postgresql` required).

use crate::config::dcs::{ConsulConfig, DcsSection, EtcdConfig, ZooKeeperConfig};
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What praetorctl needs from the configuration.
#[derive(Clone, Debug, Default)]
pub struct CtlConfig {
    /// Default cluster name (`scope`).
    pub scope: Option<String>,
    /// Key namespace (`/service` by default).
    pub namespace: String,
    /// The store, if configured.
    pub dcs: Option<DcsSection>,
    /// `ctl.insecure` or `-k`: do not verify TLS certificates of the REST API.
    pub insecure: bool,
}

/// A configuration problem; the message is what the user sees after `Error: `.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The default configuration files, in the order they are tried: praetor's own, then patronictl's
/// (`$XDG_CONFIG_HOME`, else `$HOME/.config`, as click's `get_app_dir` on Linux).
pub fn default_paths(env: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let base = env
        .get("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".config")));
    match base {
        Some(b) => vec![b.join("praetor").join("praetorctl.yaml"), b.join("patroni").join("patronictl.yaml")],
        None => Vec::new(),
    }
}

/// Load the configuration. `explicit` is `-c`/`PATRONICTL_CONFIG_FILE`: it must exist. Without it
/// the first existing default path is read, or none. `dcs_url` replaces every DCS section.
pub fn load(
    explicit: Option<&Path>,
    dcs_url: Option<&str>,
    insecure: bool,
    env: &BTreeMap<String, String>,
) -> Result<CtlConfig, ConfigError> {
    let path = match explicit {
        Some(p) => {
            if std::fs::File::open(p).is_err() {
                return Err(ConfigError(format!(
                    "Provided config file {} not existing or no read rights. Check the -c/--config-file parameter",
                    p.display()
                )));
            }
            Some(p.to_path_buf())
        }
        None => default_paths(env).into_iter().find(|p| p.is_file()),
    };
    let mut doc = match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?;
            if text.trim().is_empty() {
                Value::Mapping(Default::default())
            } else {
                serde_yaml_ng::from_str::<Value>(&text)
                    .map_err(|e| ConfigError(format!("{} is not valid YAML: {e}", p.display())))?
            }
        }
        None => Value::Mapping(Default::default()),
    };
    if !doc.is_mapping() {
        doc = Value::Mapping(Default::default());
    }
    apply_env(&mut doc, env);
    let mut cfg = from_yaml(&doc)?;
    if let Some(url) = dcs_url {
        let (section, namespace) = parse_dcs_url(url)?;
        cfg.dcs = Some(section);
        if let Some(ns) = namespace {
            cfg.namespace = ns;
        }
    }
    cfg.insecure |= insecure;
    Ok(cfg)
}

/// The few `PATRONI_*` variables that locate a cluster (`config.py _build_environment_configuration`).
fn apply_env(doc: &mut Value, env: &BTreeMap<String, String>) {
    let Some(map) = doc.as_mapping_mut() else { return };
    for (var, key) in [("PATRONI_SCOPE", "scope"), ("PATRONI_NAMESPACE", "namespace")] {
        if let Some(v) = env.get(var) {
            map.insert(Value::from(key), Value::from(v.as_str()));
        }
    }
    for (section, keys) in [
        ("etcd3", &["host", "hosts", "url", "protocol", "username", "password", "cacert", "cert", "key"][..]),
        ("etcd", &["host", "hosts", "url", "protocol", "username", "password", "cacert", "cert", "key"][..]),
        ("consul", &["host", "url", "port", "scheme", "token", "cacert", "cert", "key", "dc"][..]),
        ("zookeeper", &["hosts"][..]),
    ] {
        for key in keys {
            let var = format!("PATRONI_{}_{}", section.to_uppercase(), key.to_uppercase());
            if let Some(v) = env.get(&var) {
                let entry =
                    map.entry(Value::from(section)).or_insert_with(|| Value::Mapping(Default::default()));
                if let Some(m) = entry.as_mapping_mut() {
                    m.insert(Value::from(*key), Value::from(v.as_str()));
                }
            }
        }
    }
}

fn section<T: DeserializeOwned>(doc: &Value, name: &str) -> Result<Option<T>, ConfigError> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_yaml_ng::from_value(v.clone())
            .map(Some)
            .map_err(|e| ConfigError(format!("invalid `{name}` section: {e}"))),
    }
}

fn from_yaml(doc: &Value) -> Result<CtlConfig, ConfigError> {
    let text = |k: &str| match doc.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let dcs = if let Some(c) = section::<EtcdConfig>(doc, "etcd3")? {
        Some(DcsSection::Etcd3 { config: c, from_v2_section: false })
    } else if let Some(c) = section::<EtcdConfig>(doc, "etcd")? {
        Some(DcsSection::Etcd3 { config: c, from_v2_section: true })
    } else if let Some(c) = section::<ConsulConfig>(doc, "consul")? {
        Some(DcsSection::Consul(c))
    } else {
        section::<ZooKeeperConfig>(doc, "zookeeper")?.map(DcsSection::ZooKeeper)
    };
    let insecure = doc.get("ctl").and_then(|c| c.get("insecure")).is_some_and(|v| {
        matches!(v, Value::Bool(true)) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
    });
    Ok(CtlConfig {
        scope: text("scope"),
        namespace: text("namespace").unwrap_or_else(|| "/service".into()),
        dcs,
        insecure,
    })
}

/// `parse_dcs`: `DCS://HOST:PORT/NAMESPACE` → the DCS section and the namespace, if given. Scheme
/// omitted: guessed from the port (2379 etcd, 8500 consul, 2181 zookeeper), else etcd.
pub fn parse_dcs_url(url: &str) -> Result<(DcsSection, Option<String>), ConfigError> {
    const DEFAULTS: [(&str, u16); 4] =
        [("zookeeper", 2181), ("consul", 8500), ("etcd", 2379), ("etcd3", 2379)];
    let url = if url.contains("//") { url.to_string() } else { format!("//{url}") };
    let (scheme, rest) = url.split_once("//").expect("`//` was ensured above");
    let scheme = scheme.strip_suffix(':').unwrap_or(scheme).to_lowercase();
    let (netloc, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], rest[i..].split(['?', '#']).next().unwrap_or("")),
        None => (rest, ""),
    };
    let hostport = netloc.rsplit_once('@').map(|(_, h)| h).unwrap_or(netloc);
    let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
        match r.split_once(']') {
            Some((h, p)) => (format!("[{h}]"), p.strip_prefix(':')),
            None => (r.to_string(), None),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h.to_lowercase(), Some(p)),
            None => (hostport.to_lowercase(), None),
        }
    };
    let port = match port.filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| ConfigError(format!("Port could not be cast to integer value as {p:?}")))?,
        ),
    };
    let scheme = if scheme.is_empty() {
        DEFAULTS.iter().find(|(_, dp)| Some(*dp) == port).map(|(s, _)| *s).unwrap_or("etcd").to_string()
    } else if scheme == "exhibitor" {
        return Err(ConfigError(
            "Unsupported dcs scheme: exhibitor (praetor speaks etcd3, consul and zookeeper)".into(),
        ));
    } else if DEFAULTS.iter().any(|(s, _)| *s == scheme) {
        scheme
    } else {
        return Err(ConfigError(format!("Unknown dcs scheme: {scheme}")));
    };
    let default_port = DEFAULTS.iter().find(|(s, _)| *s == scheme).map(|(_, p)| *p).unwrap_or(2379);
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    let hostport = format!("{host}:{}", port.unwrap_or(default_port));
    let section = match scheme.as_str() {
        "zookeeper" => DcsSection::ZooKeeper(ZooKeeperConfig { hosts: vec![hostport], ..Default::default() }),
        "consul" => DcsSection::Consul(ConsulConfig { host: Some(hostport), ..Default::default() }),
        s => DcsSection::Etcd3 {
            config: EtcdConfig { host: Some(hostport), ..Default::default() },
            from_v2_section: s == "etcd",
        },
    };
    let path = path.trim();
    let namespace = (!path.is_empty() && path != "/").then(|| path.to_string());
    Ok((section, namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd_host(s: &DcsSection) -> Option<String> {
        match s {
            DcsSection::Etcd3 { config, .. } => config.host.clone(),
            _ => None,
        }
    }

    // ctl.py parse_dcs doctests
    #[test]
    fn dcs_urls_parse_like_patronictl() {
        let (s, ns) = parse_dcs_url("etcd3://random.com:2399/customnamespace").unwrap();
        assert_eq!(etcd_host(&s).as_deref(), Some("random.com:2399"));
        assert_eq!(ns.as_deref(), Some("/customnamespace"));
        let (s, ns) = parse_dcs_url("etcd://:2399").unwrap();
        assert_eq!(etcd_host(&s).as_deref(), Some("localhost:2399"));
        assert_eq!(ns, None);
        assert!(matches!(
            parse_dcs_url("etcd://test").unwrap().0,
            DcsSection::Etcd3 { from_v2_section: true, .. }
        ));
        let (s, _) = parse_dcs_url("127.0.0.1:8500").unwrap();
        assert!(
            matches!(s, DcsSection::Consul(ConsulConfig { host: Some(ref h), .. }) if h == "127.0.0.1:8500")
        );
        let (s, _) = parse_dcs_url("zookeeper://zk").unwrap();
        assert!(matches!(s, DcsSection::ZooKeeper(ref z) if z.hosts == ["zk:2181"]));
        assert_eq!(parse_dcs_url("foo://x").unwrap_err().0, "Unknown dcs scheme: foo");
    }

    #[test]
    fn explicit_missing_config_file_is_an_error() {
        let e = load(Some(Path::new("/nonexistent/x.yaml")), None, false, &BTreeMap::new()).unwrap_err();
        assert!(e.0.contains("not existing or no read rights"), "{e}");
    }

    #[test]
    fn patroni_yaml_gives_scope_namespace_and_dcs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yml");
        std::fs::write(&p, "scope: demo\nnamespace: /ns\netcd3:\n  hosts: 10.0.0.1:2379,10.0.0.2:2379\nctl:\n  insecure: true\n")
            .unwrap();
        let env = BTreeMap::from([("PATRONI_SCOPE".to_string(), "fromenv".to_string())]);
        let c = load(Some(&p), None, false, &env).unwrap();
        assert_eq!(c.scope.as_deref(), Some("fromenv"));
        assert_eq!(c.namespace, "/ns");
        assert!(c.insecure);
        assert!(matches!(c.dcs, Some(DcsSection::Etcd3 { ref config, .. }) if config.hosts.len() == 2));
        let c = load(Some(&p), Some("consul://c:1/other"), false, &BTreeMap::new()).unwrap();
        assert!(matches!(c.dcs, Some(DcsSection::Consul(_))));
        assert_eq!(c.namespace, "/other");
    }
}
