//! Selects the backend for a [`DcsSection`]: one `#[cfg(feature)]` arm per compiled-in backend
//! (STYLE.md §3.12). A backend that is not compiled in is a clear configuration error naming both
//! fixes.
//!
//! Adding a backend: replace its `not_compiled` arm below with a pair of arms,
//! `#[cfg(feature = "x")] DcsSection::X(c) => …connect…` and
//! `#[cfg(not(feature = "x"))] DcsSection::X(_) => Err(not_compiled("x", "x"))`, as etcd does.

use super::{Dcs, DcsError, DcsParams};
use crate::config::dcs::DcsSection;
use std::sync::Arc;

/// The error for a DCS kind whose Cargo feature is off and for which no plugin library was found.
pub fn not_compiled(kind: &str, feature: &str) -> DcsError {
    let plugin = format!("libdcs_{feature}.so");
    DcsError::Config(if cfg!(feature = "plugins") {
        format!(
            "DCS `{kind}` is not compiled in; rebuild with `--features {feature}` or put {plugin} in dcs-plugins/"
        )
    } else {
        format!(
            "DCS `{kind}` is not compiled in; rebuild with `--features {feature}`, or with `--features plugins` \
             and put {plugin} in dcs-plugins/"
        )
    })
}

/// A backend that is not compiled in: load `dcs-plugins/libdcs_<feature>.so` (next to the binary,
/// then in the working directory) if there is one, else the [`not_compiled`] error.
#[cfg_attr(all(feature = "etcd", feature = "consul", feature = "zookeeper"), allow(dead_code))]
async fn plugin_or_not_compiled(
    kind: &str,
    feature: &str,
    params: DcsParams,
) -> Result<Arc<dyn Dcs>, DcsError> {
    #[cfg(feature = "plugins")]
    if let Some(path) = super::plugin::find_plugin(feature) {
        tracing::info!(plugin = %path.display(), "DCS `{kind}` is not compiled in; using the plugin found for it");
        let config = crate::config::dcs::PluginConfig { path: Some(path), config: None };
        return Ok(Arc::new(super::plugin::PluginDcs::from_config(&config, params).await?));
    }
    let _ = params;
    Err(not_compiled(kind, feature))
}

/// Connect to the store `section` describes, as member `params.name` of `params.scope`.
///
/// `Err(Config)` when the backend is not compiled in or its section is unusable;
/// `Err(Unavailable)` when it cannot be reached within `retry_timeout` (backends that connect lazily
/// return `Ok` and report the outage on the first call).
pub async fn connect(section: &DcsSection, params: DcsParams) -> Result<Arc<dyn Dcs>, DcsError> {
    match section {
        #[cfg(feature = "etcd")]
        DcsSection::Etcd3 { config, from_v2_section } => {
            if *from_v2_section {
                tracing::warn!(
                    "the `etcd:` section means etcd's v2 API to Patroni; praetor speaks v3 only and reads it as \
                     `etcd3:`. In a cluster mixed with Patroni nodes use `etcd3:` everywhere: v2 and v3 keys \
                     live apart"
                );
            }
            Ok(Arc::new(super::etcd::EtcdDcs::connect(config, params).await?))
        }
        #[cfg(not(feature = "etcd"))]
        DcsSection::Etcd3 { .. } => plugin_or_not_compiled("etcd3", "etcd", params).await,
        #[cfg(feature = "consul")]
        DcsSection::Consul(config) => Ok(Arc::new(super::consul::ConsulDcs::connect(config, params).await?)),
        #[cfg(not(feature = "consul"))]
        DcsSection::Consul(_) => plugin_or_not_compiled("consul", "consul", params).await,
        #[cfg(feature = "zookeeper")]
        DcsSection::ZooKeeper(config) => Ok(Arc::new(super::zookeeper::ZooKeeperDcs::new(params, config)?)),
        #[cfg(not(feature = "zookeeper"))]
        DcsSection::ZooKeeper(_) => plugin_or_not_compiled("zookeeper", "zookeeper", params).await,
        #[cfg(feature = "plugins")]
        DcsSection::Plugin(config) => {
            Ok(Arc::new(super::plugin::PluginDcs::from_config(config, params).await?))
        }
        #[cfg(not(feature = "plugins"))]
        DcsSection::Plugin(_) => Err(DcsError::Config(
            "the `plugin` DCS needs plugin support; rebuild with `--features plugins`".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::config::dcs::{ConsulConfig, EtcdConfig};
    use std::time::Duration;

    fn params() -> DcsParams {
        DcsParams {
            namespace: "/service".into(),
            scope: "f".into(),
            name: "m".into(),
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_not_compiled_error_names_both_fixes_whatever_the_features() {
        let msg = not_compiled("zookeeper", "zookeeper").to_string();
        assert!(msg.contains("rebuild with `--features zookeeper`"), "{msg}");
        assert!(msg.contains("libdcs_zookeeper.so in dcs-plugins/"), "{msg}");
    }

    #[cfg(feature = "plugins")]
    #[test]
    fn the_not_compiled_error_names_both_fixes() {
        assert_eq!(
            not_compiled("consul", "consul").to_string(),
            "invalid DCS configuration: DCS `consul` is not compiled in; rebuild with `--features consul` or put \
             libdcs_consul.so in dcs-plugins/"
        );
    }

    #[cfg(not(feature = "consul"))]
    #[tokio::test]
    async fn a_backend_that_is_not_compiled_in_is_a_config_error() {
        let Err(e) = connect(&DcsSection::Consul(ConsulConfig::default()), params()).await else {
            panic!("consul is not compiled in");
        };
        assert!(e.to_string().contains("--features consul"), "{e}");
    }

    #[cfg(feature = "etcd")]
    #[tokio::test]
    async fn etcd_section_without_endpoints_is_a_config_error() {
        let section = DcsSection::Etcd3 { config: EtcdConfig::default(), from_v2_section: false };
        let Err(e) = connect(&section, params()).await else { panic!("no endpoints must fail") };
        assert!(matches!(e, DcsError::Config(ref m) if m.contains("hosts")), "{e}");
    }

    #[cfg(feature = "etcd")]
    #[tokio::test]
    async fn etcd_connects_lazily_so_an_unreachable_endpoint_is_reported_by_the_first_call() {
        // Port 9 on loopback: nothing listens there.
        let config = EtcdConfig { hosts: vec!["127.0.0.1:9".into()], ..Default::default() };
        let section = DcsSection::Etcd3 { config, from_v2_section: true };
        let mut p = params();
        p.retry_timeout = Duration::from_secs(1);
        let dcs = connect(&section, p).await.expect("lazy connect");
        assert_eq!(dcs.backend(), "etcd3");
        let t = std::time::Instant::now();
        let err = dcs.load_cluster().await.expect_err("nothing listens on port 9");
        assert!(matches!(err, DcsError::Unavailable(_)), "{err}");
        assert!(t.elapsed() < Duration::from_secs(3), "gave up after {:?}", t.elapsed());
    }
}
