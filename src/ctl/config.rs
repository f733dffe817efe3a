//! Finding the cluster like patronictl does (`ctl.py load_config`, `parse_dcs`): the configuration
//! file (`-c`, `PATRONICTL_CONFIG_FILE`, or the default paths) read by [`crate::config::load_raw`]
//! (files or a directory, `PATRONI_*` variables patched over it, no validation: a ctl file needs no
//! `name`/`postgresql`), overridden by `-d DCS://HOST:PORT/NAMESPACE`.

use crate::config::dcs::{ConsulConfig, DcsSection, EtcdConfig, ZooKeeperConfig};
use crate::config::raw::{RawConfig, RawUserPass};
use crate::config::{LoadOptions, load_raw};
use crate::types::Secret;
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
    /// Basic auth for the REST API: `ctl.authentication`, else `restapi.authentication`.
    pub auth: Option<(String, Secret<String>)>,
    /// CA bundle for the REST API: `ctl.cacert`, else `restapi.cafile`.
    pub cacert: Option<PathBuf>,
    /// Client certificate (`ctl.certfile`).
    pub certfile: Option<PathBuf>,
    /// Client key (`ctl.keyfile`; defaults to the certificate file).
    pub keyfile: Option<PathBuf>,
    /// `ctl.keyfile_password` (encrypted keys are not supported; given only to say so).
    pub keyfile_password: bool,
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
/// the first existing default path is read, or none (then the `PATRONI_*` environment alone).
/// `dcs_url` replaces every DCS section.
pub fn load(
    explicit: Option<&Path>,
    dcs_url: Option<&str>,
    insecure: bool,
    env: &BTreeMap<String, String>,
) -> Result<CtlConfig, ConfigError> {
    let path = match explicit {
        Some(p) => {
            if !(p.is_dir() || std::fs::File::open(p).is_ok()) {
                return Err(ConfigError(format!(
                    "Provided config file {} not existing or no read rights. Check the -c/--config-file parameter",
                    p.display()
                )));
            }
            Some(p.to_path_buf())
        }
        None => default_paths(env).into_iter().find(|p| p.is_file()),
    };
    let opts = LoadOptions { path, env: env.clone(), dcs: None, strict: false };
    let (raw, warnings) = load_raw(&opts)
        .map_err(|e| ConfigError(e.0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")))?;
    for w in warnings {
        tracing::debug!("configuration: {w}");
    }
    let mut cfg = from_raw(&raw);
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

/// `authentication: {username, password}` or the old `auth: user:password`.
fn user_pass(a: &Option<RawUserPass>, old: &Option<String>) -> Option<(String, Secret<String>)> {
    if let Some(a) = a {
        let user = a.username.clone()?;
        return Some((user, Secret(a.password.as_ref().map(|p| p.expose().clone()).unwrap_or_default())));
    }
    let (u, p) = old.as_deref()?.split_once(':')?;
    Some((u.to_string(), Secret(p.to_string())))
}

fn from_raw(raw: &RawConfig) -> CtlConfig {
    let dcs = if let Some(c) = &raw.etcd3 {
        Some(DcsSection::Etcd3 { config: c.clone(), from_v2_section: false })
    } else if let Some(c) = &raw.etcd {
        Some(DcsSection::Etcd3 { config: c.clone(), from_v2_section: true })
    } else if let Some(c) = &raw.consul {
        Some(DcsSection::Consul(c.clone()))
    } else {
        raw.zookeeper.clone().map(DcsSection::ZooKeeper)
    };
    let ctl = &raw.ctl;
    let certfile = ctl.certfile.clone().map(PathBuf::from);
    CtlConfig {
        scope: raw.scope.clone(),
        namespace: raw.namespace.clone().unwrap_or_else(|| "/service".into()),
        dcs,
        insecure: ctl.insecure.unwrap_or(false),
        auth: user_pass(&ctl.authentication, &ctl.auth)
            .or_else(|| user_pass(&raw.restapi.authentication, &raw.restapi.auth)),
        cacert: ctl.cacert.clone().or_else(|| raw.restapi.cafile.clone()).map(PathBuf::from),
        keyfile: certfile.as_ref().and(ctl.keyfile.clone().map(PathBuf::from)),
        certfile,
        keyfile_password: ctl.keyfile_password.is_some(),
    }
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
    fn ctl_auth_falls_back_to_restapi_and_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yml");
        std::fs::write(
            &p,
            "scope: s\nrestapi:\n  authentication: {username: r, password: rp}\n  cafile: /ca.pem\n",
        )
        .unwrap();
        let c = load(Some(&p), None, true, &BTreeMap::new()).unwrap();
        assert_eq!(c.auth.as_ref().map(|(u, p)| (u.as_str(), p.expose().as_str())), Some(("r", "rp")));
        assert_eq!(c.cacert.as_deref(), Some(Path::new("/ca.pem")));
        assert!(c.insecure);
        let env = BTreeMap::from([
            ("PATRONI_CTL_USERNAME".to_string(), "c".to_string()),
            ("PATRONI_CTL_PASSWORD".to_string(), "cp".to_string()),
            ("PATRONI_ETCD3_HOSTS".to_string(), "h1:2379,h2:2379".to_string()),
        ]);
        let c = load(Some(&p), None, false, &env).unwrap();
        assert_eq!(c.auth.as_ref().map(|(u, p)| (u.as_str(), p.expose().as_str())), Some(("c", "cp")));
        assert!(matches!(c.dcs, Some(DcsSection::Etcd3 { ref config, .. }) if config.hosts.len() == 2));
        assert!(!c.insecure);
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
