//! praetor's etcd v3 backend (`praetor::dcs::etcd`) as a DCS plugin: `libdcs_etcd.so`.
//!
//! `plugin.config` is an `etcd3:` section in JSON form (`{"hosts": ["127.0.0.1:2379"]}`, `url`,
//! `protocol`, `username`/`password`, `cacert`/`cert`/`key`, …). The plugin runs its own tokio
//! runtime; the host only calls the function table.

use praetor::config::dcs::EtcdConfig;
use praetor::dcs::etcd::EtcdDcs;
use praetor::dcs::plugin::{ExportBackend, Exported};
use praetor::dcs::{Dcs, DcsError, DcsParams};
use std::sync::Arc;

/// The etcd v3 backend, exported.
pub struct Etcd;

impl ExportBackend for Etcd {
    async fn connect(params: DcsParams, config: serde_json::Value) -> Result<Arc<dyn Dcs>, DcsError> {
        let cfg: EtcdConfig = if config.is_null() {
            EtcdConfig::default()
        } else {
            serde_json::from_value(config)
                .map_err(|e| DcsError::Config(format!("plugin.config (an etcd3 section): {e}")))?
        };
        Ok(Arc::new(EtcdDcs::connect(&cfg, params).await?))
    }
}

praetor_dcs_abi::export_dcs_plugin!(Exported<Etcd>);
