//! The DCS sections of the YAML: `etcd3`/`etcd`, `consul`, `zookeeper`, and praetor's `plugin`.
//! Raw shapes, parsed leniently; backends take them as they are.

use super::de;
use crate::types::Secret;
use serde::Deserialize;
use std::path::PathBuf;

/// `etcd3:` (or `etcd:`, read as v3). Hosts are `host:port` strings.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct EtcdConfig {
    /// One `host:port`.
    #[serde(deserialize_with = "de::opt_string")]
    pub host: Option<String>,
    /// Several `host:port`, as a list or a comma-separated string.
    #[serde(deserialize_with = "de::string_list")]
    pub hosts: Vec<String>,
    /// `http(s)://host:port` (or several, comma-separated).
    #[serde(deserialize_with = "de::opt_string")]
    pub url: Option<String>,
    /// A proxy URL (accepted, used as an endpoint).
    #[serde(deserialize_with = "de::opt_string")]
    pub proxy: Option<String>,
    /// DNS SRV name (not supported by praetor; warned).
    #[serde(deserialize_with = "de::opt_string")]
    pub srv: Option<String>,
    /// SRV suffix.
    #[serde(deserialize_with = "de::opt_string")]
    pub srv_suffix: Option<String>,
    /// Patroni option; praetor always load-balances over the given endpoints.
    #[serde(deserialize_with = "de::opt_bool")]
    pub use_proxies: Option<bool>,
    /// `http` or `https`.
    #[serde(deserialize_with = "de::opt_string")]
    pub protocol: Option<String>,
    /// User for etcd authentication.
    #[serde(deserialize_with = "de::opt_string")]
    pub username: Option<String>,
    /// Password for etcd authentication.
    #[serde(deserialize_with = "de::opt_secret")]
    pub password: Option<Secret<String>>,
    /// CA certificate file.
    pub cacert: Option<PathBuf>,
    /// Client certificate file.
    pub cert: Option<PathBuf>,
    /// Client key file.
    pub key: Option<PathBuf>,
}

impl EtcdConfig {
    /// The endpoints as `scheme://host:port`, from `url`, `proxy`, `hosts` and `host` (in that order).
    pub fn endpoints(&self) -> Vec<String> {
        let tls = self.protocol.as_deref() == Some("https") || self.cacert.is_some() || self.cert.is_some();
        let scheme = if tls { "https" } else { "http" };
        let mut out = Vec::new();
        for u in self.url.iter().chain(self.proxy.iter()) {
            out.extend(u.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from));
        }
        if out.is_empty() {
            let hosts: Vec<&String> =
                if self.hosts.is_empty() { self.host.iter().collect() } else { self.hosts.iter().collect() };
            for h in hosts {
                if h.contains("://") {
                    out.push(h.clone());
                } else if h.contains(':') {
                    out.push(format!("{scheme}://{h}"));
                } else {
                    out.push(format!("{scheme}://{h}:2379"));
                }
            }
        }
        out
    }
}

/// `consul:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ConsulConfig {
    /// `host[:port]` (default `127.0.0.1:8500`).
    #[serde(deserialize_with = "de::opt_string")]
    pub host: Option<String>,
    /// `http(s)://host:port`.
    #[serde(deserialize_with = "de::opt_string")]
    pub url: Option<String>,
    /// Port when `host` has none.
    #[serde(deserialize_with = "de::opt_string")]
    pub port: Option<String>,
    /// `http` or `https`.
    #[serde(deserialize_with = "de::opt_string")]
    pub scheme: Option<String>,
    /// ACL token.
    #[serde(deserialize_with = "de::opt_secret")]
    pub token: Option<Secret<String>>,
    /// Verify the server certificate.
    #[serde(deserialize_with = "de::opt_bool")]
    pub verify: Option<bool>,
    /// CA certificate file.
    pub cacert: Option<PathBuf>,
    /// Client certificate file.
    pub cert: Option<PathBuf>,
    /// Client key file.
    pub key: Option<PathBuf>,
    /// Datacenter.
    #[serde(deserialize_with = "de::opt_string")]
    pub dc: Option<String>,
    /// `default`, `consistent` or `stale`.
    #[serde(deserialize_with = "de::opt_string")]
    pub consistency: Option<String>,
    /// Session health checks (default `[]`).
    #[serde(deserialize_with = "de::string_list")]
    pub checks: Vec<String>,
    /// Register a service for this node.
    #[serde(deserialize_with = "de::opt_bool")]
    pub register_service: Option<bool>,
    /// Extra service tags.
    #[serde(deserialize_with = "de::string_list")]
    pub service_tags: Vec<String>,
    /// Check interval (`5s`).
    #[serde(deserialize_with = "de::opt_string")]
    pub service_check_interval: Option<String>,
    /// TLS server name for the service check.
    #[serde(deserialize_with = "de::opt_string")]
    pub service_check_tls_server_name: Option<String>,
}

/// `zookeeper:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ZooKeeperConfig {
    /// `host:port` list.
    #[serde(deserialize_with = "de::string_list")]
    pub hosts: Vec<String>,
    /// Connect with TLS.
    #[serde(deserialize_with = "de::opt_bool")]
    pub use_ssl: Option<bool>,
    /// CA certificate file.
    pub cacert: Option<PathBuf>,
    /// Client certificate file.
    pub cert: Option<PathBuf>,
    /// Client key file.
    pub key: Option<PathBuf>,
    /// Password of the client key.
    #[serde(deserialize_with = "de::opt_secret")]
    pub key_password: Option<Secret<String>>,
    /// Verify the server certificate.
    #[serde(deserialize_with = "de::opt_bool")]
    pub verify: Option<bool>,
    /// ACLs to set on created znodes: principal → permissions.
    pub set_acls: Option<serde_yaml_ng::Value>,
    /// Authentication data: scheme → credential.
    pub auth_data: Option<serde_yaml_ng::Value>,
}

/// praetor's `plugin:` section: a DCS backend loaded from a shared library.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PluginConfig {
    /// Path of the shared library.
    pub path: Option<PathBuf>,
    /// Passed to the plugin as JSON.
    pub config: Option<serde_yaml_ng::Value>,
}

/// Which store this node uses, resolved from the YAML sections (or `--dcs`).
#[derive(Clone, Debug, PartialEq)]
pub enum DcsSection {
    /// etcd v3. `from_v2_section` is true when it came from Patroni's `etcd:` (v2) section.
    Etcd3 {
        /// The section.
        config: EtcdConfig,
        /// Read from `etcd:` rather than `etcd3:`.
        from_v2_section: bool,
    },
    /// Consul.
    Consul(ConsulConfig),
    /// ZooKeeper.
    ZooKeeper(ZooKeeperConfig),
    /// A backend loaded from a shared library.
    Plugin(PluginConfig),
}

impl DcsSection {
    /// The name used by `--dcs` and in messages.
    pub fn kind(&self) -> &'static str {
        match self {
            DcsSection::Etcd3 { .. } => "etcd3",
            DcsSection::Consul(_) => "consul",
            DcsSection::ZooKeeper(_) => "zookeeper",
            DcsSection::Plugin(_) => "plugin",
        }
    }
}
