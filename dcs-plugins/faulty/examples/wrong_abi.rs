//! A plugin that claims an ABI version this praetor does not speak; the host must refuse it.

use praetor_dcs_abi::{Method, PluginError, RawDcsPlugin};

/// Never created: the version check fails first.
pub struct WrongAbi;

impl RawDcsPlugin for WrongAbi {
    fn create(_: &[u8]) -> Result<(Self, Vec<u8>), PluginError> {
        Err(PluginError::backend("a plugin of another ABI version must never be created"))
    }

    fn call(&self, method: Method, _: &[u8]) -> Result<Vec<u8>, PluginError> {
        Err(PluginError::backend(format!("{method} must never be called")))
    }
}

praetor_dcs_abi::export_dcs_plugin!(raw WrongAbi, abi_version = praetor_dcs_abi::ABI_VERSION + 1);
