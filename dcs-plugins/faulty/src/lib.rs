//! A DCS plugin for testing hosts: praetor's in-memory store served through the plugin ABI, with
//! faults injected per method from `plugin.config`:
//!
//! ```json
//! {"store": "s1", "block_ms": 30000,
//!  "faults": {"touch_member": "panic_once", "watch": "block", "load_cluster": "garbage"}}
//! ```
//!
//! - `store`: clients created with the same name (in one process) share one in-memory store.
//! - `faults`: method name (or `create`) → `panic` (every call panics), `panic_once` (the first call
//!   panics, later ones work), `block` (sleep `block_ms`, default 30 s, then answer normally),
//!   `garbage` (answer bytes that are not JSON), `wrong_shape` (answer JSON of the wrong shape),
//!   `unavailable` (report the store as unreachable).

use praetor::dcs::memory::MemoryStore;
use praetor::dcs::plugin::{ExportBackend, Exported};
use praetor::dcs::{Dcs, DcsError, DcsParams};
use praetor_dcs_abi::messages::CreateRequest;
use praetor_dcs_abi::{Method, PluginError, RawDcsPlugin, Typed, parse};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// What to do instead of (or before) answering.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Panic on every call.
    Panic,
    /// Panic on the first call only.
    PanicOnce,
    /// Sleep `block_ms`, then answer.
    Block,
    /// Answer bytes that are not JSON.
    Garbage,
    /// Answer JSON that is not the method's response.
    WrongShape,
    /// Report `Unavailable`.
    Unavailable,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FaultyConfig {
    store: Option<String>,
    block_ms: Option<u64>,
    faults: HashMap<String, Fault>,
}

static STORES: LazyLock<Mutex<HashMap<String, MemoryStore>>> = LazyLock::new(Default::default);

/// praetor's memory backend; `store` names the shared store.
pub struct Memory;

impl ExportBackend for Memory {
    async fn connect(params: DcsParams, config: serde_json::Value) -> Result<Arc<dyn Dcs>, DcsError> {
        let cfg: FaultyConfig = serde_json::from_value(config).unwrap_or_default();
        let name = cfg.store.unwrap_or_else(|| "default".into());
        let store = STORES.lock().unwrap_or_else(|p| p.into_inner()).entry(name).or_default().clone();
        Ok(Arc::new(store.client(params)))
    }
}

type Inner = Typed<Exported<Memory>>;

/// The memory store with injected faults.
pub struct Faulty {
    inner: Inner,
    faults: HashMap<String, Fault>,
    block: Duration,
    panicked: Mutex<HashSet<&'static str>>,
}

impl RawDcsPlugin for Faulty {
    fn create(request: &[u8]) -> Result<(Self, Vec<u8>), PluginError> {
        let req: CreateRequest = parse("create", request)?;
        let cfg: FaultyConfig = if req.config.is_null() {
            FaultyConfig::default()
        } else {
            serde_json::from_value(req.config)
                .map_err(|e| PluginError::config(format!("faulty plugin config: {e}")))?
        };
        match cfg.faults.get("create") {
            Some(Fault::Panic | Fault::PanicOnce) => panic!("injected panic in create"),
            Some(Fault::Unavailable) => return Err(PluginError::unavailable("injected outage in create")),
            _ => {}
        }
        let (inner, response) = Inner::create(request)?;
        let faulty = Faulty {
            inner,
            faults: cfg.faults,
            block: Duration::from_millis(cfg.block_ms.unwrap_or(30_000)),
            panicked: Mutex::new(HashSet::new()),
        };
        Ok((faulty, response))
    }

    fn call(&self, method: Method, request: &[u8]) -> Result<Vec<u8>, PluginError> {
        match self.faults.get(method.name()) {
            Some(Fault::Panic) => panic!("injected panic in {method}"),
            Some(Fault::PanicOnce) => {
                let first = self.panicked.lock().unwrap_or_else(|p| p.into_inner()).insert(method.name());
                if first {
                    panic!("injected panic in {method}");
                }
            }
            Some(Fault::Block) => std::thread::sleep(self.block),
            Some(Fault::Garbage) => return Ok(b"\xff\x00 this is not JSON {".to_vec()),
            Some(Fault::WrongShape) => return Ok(br#"{"surprise": [1, 2, 3]}"#.to_vec()),
            Some(Fault::Unavailable) => {
                return Err(PluginError::unavailable(format!("injected outage in {method}")));
            }
            None => {}
        }
        self.inner.call(method, request)
    }
}

praetor_dcs_abi::export_dcs_plugin!(raw Faulty);
