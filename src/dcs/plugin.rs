//! DCS backends in shared libraries (`--dcs plugin:PATH`, or `plugin: {path, config}` in the YAML),
//! spoken to over the C ABI of the `praetor-dcs-abi` crate (see `dcs-plugins/README.md`).
//!
//! Owns: loading a plugin, checking its ABI version, and [`PluginDcs`], which implements [`Dcs`] by
//! calling the plugin's function table. Also [`Exported`], which turns one of praetor's own backends
//! into a plugin (used by `dcs-plugins/etcd`).
//!
//! # What it guarantees
//! - **Clear load errors** ([`PluginError`]): a missing file, a library that cannot be opened, a
//!   missing entry symbol, another ABI version ([`PluginError::AbiMismatch`]), a table with a null
//!   function, a plugin that refuses its configuration.
//! - **Calls never run on the async runtime.** Each call runs on its own detached thread and is
//!   abandoned after its deadline (`retry_timeout` + 1 s; for `watch` also its timeout): the caller
//!   gets [`DcsError::Unavailable`] in time, and a plugin that never returns cannot keep the agent
//!   from shutting down. At most [`MAX_RUNNING_CALLS`] calls of one library run at once; beyond that
//!   calls fail fast instead of piling up threads behind a hung plugin.
//! - **A panicking or garbage-answering plugin is an error, not a crash**: the plugin side catches
//!   panics (the export macro), and every response is parsed as untrusted JSON. The error is logged
//!   and returned; the next call is made as usual.
//! - **Libraries are never unloaded**: a loaded library is leaked for the life of the process (its
//!   code may still run in an abandoned call, and its threads may outlive any handle). Loading the
//!   same path twice reuses it.
//!
//! All `unsafe` code of the host side lives in this file.

#![allow(unsafe_code)]

use super::model::{Cluster, Leader, RawEntry, Version};
use super::{Dcs, DcsError, DcsParams};
use crate::config::dcs::PluginConfig;
use async_trait::async_trait;
use praetor_dcs_abi::messages::*;
use praetor_dcs_abi::{
    ABI_VERSION, Buf, DcsPluginTable, ENTRY_SYMBOL, EntryFn, ErrorCode, Method, STATUS_OK,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How many calls into one plugin library may run at once (including abandoned ones still running).
pub const MAX_RUNNING_CALLS: usize = 64;

/// Added to every call's deadline, so a plugin that gives up after `retry_timeout` itself can still
/// report its own error.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// Why a plugin could not be loaded or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No file at the path.
    #[error("DCS plugin {} does not exist", path.display())]
    NotFound {
        /// The path as configured.
        path: PathBuf,
    },
    /// The dynamic loader refused the file.
    #[error("cannot load DCS plugin {}: {source}", path.display())]
    Open {
        /// The library.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: libloading::Error,
    },
    /// The library does not export the entry symbol.
    #[error("{} is not a praetor DCS plugin: it does not export the symbol `{symbol}` ({detail})", path.display())]
    MissingSymbol {
        /// The library.
        path: PathBuf,
        /// The symbol looked up.
        symbol: &'static str,
        /// The loader's message.
        detail: String,
    },
    /// The plugin was built for another ABI version.
    #[error(
        "DCS plugin {} implements plugin ABI version {found}, but this praetor speaks version {expected}; \
         rebuild the plugin against praetor-dcs-abi with ABI_VERSION {expected}",
        path.display()
    )]
    AbiMismatch {
        /// The plugin's version.
        found: u32,
        /// Ours ([`ABI_VERSION`]).
        expected: u32,
        /// The library.
        path: PathBuf,
    },
    /// A function of the table is null.
    #[error("DCS plugin {} does not implement `{function}` (null in its function table)", path.display())]
    MissingFunction {
        /// The library.
        path: PathBuf,
        /// The table field.
        function: &'static str,
    },
    /// The entry symbol failed for another reason.
    #[error("DCS plugin {} failed to initialise: {message}", path.display())]
    Init {
        /// The library.
        path: PathBuf,
        /// The plugin's message.
        message: String,
    },
    /// The `config` of the `plugin:` section cannot be expressed as JSON.
    #[error("plugin.config cannot be passed to the plugin as JSON: {0}")]
    Config(String),
    /// The plugin panicked inside a call (caught on its side).
    #[error("DCS plugin {} panicked in {method}: {message}", path.display())]
    Panicked {
        /// The library.
        path: PathBuf,
        /// The call.
        method: &'static str,
        /// The panic message.
        message: String,
    },
    /// The plugin answered something that is not the expected JSON.
    #[error("DCS plugin {} returned an unreadable {method} response: {error}", path.display())]
    Garbage {
        /// The library.
        path: PathBuf,
        /// The call.
        method: &'static str,
        /// Why it did not parse.
        error: String,
    },
    /// The plugin did not return within the deadline; the call was abandoned.
    #[error("DCS plugin {} did not answer {method} within {after:?}", path.display())]
    Timeout {
        /// The library.
        path: PathBuf,
        /// The call.
        method: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// Too many calls into the library are still running (a hung plugin).
    #[error("DCS plugin {} still has {running} calls running; refusing {method}", path.display())]
    Busy {
        /// The library.
        path: PathBuf,
        /// The refused call.
        method: &'static str,
        /// Calls in flight.
        running: usize,
    },
    /// The plugin reported an error.
    #[error("DCS plugin {} failed in {method} ({code}): {message}", path.display())]
    Failed {
        /// The library.
        path: PathBuf,
        /// The call.
        method: &'static str,
        /// The status code (see `praetor_dcs_abi::ErrorCode`).
        code: i32,
        /// The plugin's message.
        message: String,
    },
}

/// A loaded library and its function table. Lives for the rest of the process.
struct Loaded {
    path: PathBuf,
    table: DcsPluginTable,
    running: AtomicUsize,
}

/// Libraries loaded so far, by canonical path.
fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Loaded>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Loaded>>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// Load the plugin library at `path` (once per process), check its ABI version and its table.
fn load(path: &Path) -> Result<Arc<Loaded>, PluginError> {
    let canonical =
        std::fs::canonicalize(path).map_err(|_| PluginError::NotFound { path: path.to_path_buf() })?;
    let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(l) = reg.get(&canonical) {
        return Ok(l.clone());
    }
    // SAFETY: loading a library runs its initialisers. A plugin is trusted code the operator chose
    // to run, exactly like the agent binary itself; the path is absolute (canonicalized), so the
    // loader does not search other directories.
    let library = unsafe { libloading::Library::new(&canonical) }
        .map_err(|source| PluginError::Open { path: canonical.clone(), source })?;
    // Never unloaded: abandoned calls and plugin-owned threads may still run its code.
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol is declared by the ABI with exactly the `EntryFn` signature.
    let entry: EntryFn = *unsafe { library.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()) }.map_err(|e| {
        PluginError::MissingSymbol { path: canonical.clone(), symbol: ENTRY_SYMBOL, detail: e.to_string() }
    })?;
    let mut table = DcsPluginTable::default();
    let mut err = Buf::empty();
    // SAFETY: `entry` has the ABI's signature; `table` and `err` are valid for writes during the call
    // and have this ABI version's layout. A plugin of another version writes only `abi_version`
    // (offset 0 in every version).
    let status = unsafe { entry(ABI_VERSION, &mut table, &mut err) };
    // SAFETY: `err` is empty or was filled by the plugin per the ABI; taken once.
    let message = String::from_utf8_lossy(&unsafe { err.take() }).into_owned();
    if table.abi_version != ABI_VERSION || status == ErrorCode::AbiMismatch.status() {
        return Err(PluginError::AbiMismatch {
            found: table.abi_version,
            expected: ABI_VERSION,
            path: canonical,
        });
    }
    if status != STATUS_OK {
        return Err(PluginError::Init { path: canonical, message });
    }
    let missing = |function| PluginError::MissingFunction { path: canonical.clone(), function };
    if table.create.is_none() {
        return Err(missing("create"));
    }
    if table.destroy.is_none() {
        return Err(missing("destroy"));
    }
    if let Some(m) = Method::ALL.iter().find(|m| table.slot(**m).is_none()) {
        return Err(missing(m.name()));
    }
    tracing::info!(plugin = %canonical.display(), abi = ABI_VERSION, "loaded DCS plugin");
    let loaded = Arc::new(Loaded { path: canonical.clone(), table, running: AtomicUsize::new(0) });
    reg.insert(canonical, loaded.clone());
    Ok(loaded)
}

/// Where praetor looks for a plugin serving a DCS whose Cargo `feature` is not compiled in, in order:
/// `dcs-plugins/libdcs_<feature>.so` next to the running binary, then under the working directory.
pub fn plugin_search_paths(feature: &str) -> Vec<PathBuf> {
    let file = Path::new("dcs-plugins").join(format!("libdcs_{feature}.so"));
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        out.push(dir.join(&file));
    }
    out.push(file);
    out
}

/// The first existing file of [`plugin_search_paths`].
pub fn find_plugin(feature: &str) -> Option<PathBuf> {
    plugin_search_paths(feature).into_iter().find(|p| p.is_file())
}

/// Check that `path` is a loadable plugin of our ABI version, without opening a client.
pub fn probe(path: &Path) -> Result<(), PluginError> {
    load(path).map(|_| ())
}

/// Run `f` on a new detached thread; give up waiting after `deadline`.
async fn off_runtime<T: Send + 'static>(
    lib: &Arc<Loaded>,
    method: &'static str,
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PluginError> {
    let running = lib.running.fetch_add(1, Ordering::SeqCst);
    struct Running(Arc<Loaded>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.running.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let guard = Running(lib.clone());
    if running >= MAX_RUNNING_CALLS {
        return Err(PluginError::Busy { path: lib.path.clone(), method, running });
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("dcs-plugin-{method}"))
        .spawn(move || {
            let _guard = guard;
            let _ = tx.send(f());
        })
        .map_err(|e| PluginError::Failed {
            path: lib.path.clone(),
            method,
            code: ErrorCode::Backend.status(),
            message: format!("cannot start a thread for the call: {e}"),
        })?;
    match tokio::time::timeout(deadline, rx).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(PluginError::Failed {
            path: lib.path.clone(),
            method,
            code: ErrorCode::Panic.status(),
            message: "the call's thread ended without an answer".into(),
        }),
        Err(_) => Err(PluginError::Timeout { path: lib.path.clone(), method, after: deadline }),
    }
}

/// A status and the two buffers of one call, copied out of the plugin's memory.
struct RawAnswer {
    status: i32,
    response: Vec<u8>,
    error: String,
}

/// One open client inside the plugin. Destroyed when the last call using it has returned.
struct Handle {
    lib: Arc<Loaded>,
    ptr: *mut c_void,
}

// SAFETY: the ABI requires a handle to be usable from any thread, concurrently (the plugin type is
// `Send + Sync` on the Rust side); the pointer itself is only passed back to the plugin.
unsafe impl Send for Handle {}
// SAFETY: see `Send`.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(destroy) = self.lib.table.destroy {
            // SAFETY: `ptr` came from this library's `create`; this is the last reference to it (every
            // call holds an `Arc<Handle>`), so no call is running on it and it is destroyed once.
            unsafe { destroy(self.ptr) };
        }
    }
}

impl Handle {
    fn call(&self, method: Method, request: &[u8]) -> RawAnswer {
        let f = self.lib.table.slot(method).expect("load() checked every method is present");
        let mut response = Buf::empty();
        let mut error = Buf::empty();
        // SAFETY: `f` has the ABI's `CallFn` signature; the handle is live (we hold it); the request
        // slice outlives the call; both out-buffers are empty and writable.
        let status = unsafe { f(self.ptr, request.as_ptr(), request.len(), &mut response, &mut error) };
        // SAFETY: both buffers are empty or were filled by the plugin per the ABI; each taken once.
        let (response, error) = unsafe { (response.take(), error.take()) };
        RawAnswer { status, response, error: String::from_utf8_lossy(&error).into_owned() }
    }
}

/// A [`Dcs`] served by a plugin library.
pub struct PluginDcs {
    handle: Arc<Handle>,
    backend: String,
    plugin_backend: String,
    retry_timeout: Mutex<Duration>,
}

impl std::fmt::Debug for PluginDcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginDcs")
            .field("backend", &self.backend)
            .field("plugin", &self.plugin_backend)
            .finish()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl PluginDcs {
    /// Load the library of a `plugin:` section and open a client with its `config`.
    pub async fn from_config(config: &PluginConfig, params: DcsParams) -> Result<PluginDcs, DcsError> {
        let path = config.path.as_deref().ok_or_else(|| {
            DcsError::Config("plugin.path is required (the plugin's shared library)".into())
        })?;
        let json = match &config.config {
            None => serde_json::Value::Null,
            Some(v) => serde_json::to_value(v)
                .map_err(|e| DcsError::Config(PluginError::Config(e.to_string()).to_string()))?,
        };
        PluginDcs::connect(path, json, params).await.map_err(|e| match e {
            PluginError::Failed { code, message, .. } if code == ErrorCode::Config.status() => {
                DcsError::Config(format!("plugin {}: {message}", path.display()))
            }
            PluginError::Failed { code, .. } if code == ErrorCode::Unavailable.status() => {
                DcsError::Unavailable(e.to_string())
            }
            PluginError::Timeout { .. } | PluginError::Busy { .. } => DcsError::Unavailable(e.to_string()),
            e => DcsError::Config(e.to_string()),
        })
    }

    /// Load the library at `path` and open a client: `config` is handed to the plugin as is.
    pub async fn connect(
        path: &Path,
        config: serde_json::Value,
        params: DcsParams,
    ) -> Result<PluginDcs, PluginError> {
        let lib = {
            let owned = path.to_path_buf();
            tokio::task::spawn_blocking(move || load(&owned)).await.map_err(|e| PluginError::Init {
                path: path.to_path_buf(),
                message: format!("loading failed: {e}"),
            })??
        };
        let request = CreateRequest {
            abi_version: ABI_VERSION,
            params: Params {
                namespace: params.namespace.clone(),
                scope: params.scope.clone(),
                name: params.name.clone(),
                ttl_ms: ms(params.ttl),
                loop_wait_ms: ms(params.loop_wait),
                retry_timeout_ms: ms(params.retry_timeout),
            },
            config,
        };
        let bytes = serde_json::to_vec(&request).expect("a CreateRequest always serializes");
        let deadline = params.retry_timeout + DEADLINE_GRACE;
        let l = lib.clone();
        let (status, ptr, response, error) = off_runtime(&lib, "create", deadline, move || {
            let create = l.table.create.expect("load() checked create is present");
            let mut handle: *mut c_void = std::ptr::null_mut();
            let mut response = Buf::empty();
            let mut error = Buf::empty();
            // SAFETY: `create` has the ABI's `CreateFn` signature; the request outlives the call; the
            // out-slots are valid and empty.
            let status =
                unsafe { create(bytes.as_ptr(), bytes.len(), &mut handle, &mut response, &mut error) };
            // SAFETY: both buffers are empty or were filled by the plugin per the ABI; each taken once.
            let (response, error) = unsafe { (response.take(), error.take()) };
            // A raw pointer is not `Send`; carry the address across the channel.
            (status, handle as usize, response, String::from_utf8_lossy(&error).into_owned())
        })
        .await?;
        let path = lib.path.clone();
        if status != STATUS_OK {
            return Err(call_error(&path, "create", status, error));
        }
        if ptr == 0 {
            return Err(PluginError::Garbage {
                path,
                method: "create",
                error: "the plugin returned a null handle".into(),
            });
        }
        let handle = Arc::new(Handle { lib, ptr: ptr as *mut c_void });
        let created: CreateResponse = serde_json::from_slice(&response).map_err(|e| {
            PluginError::Garbage { path: path.clone(), method: "create", error: e.to_string() }
        })?;
        tracing::info!(plugin = %path.display(), backend = %created.backend, "opened DCS plugin client");
        Ok(PluginDcs {
            handle,
            backend: format!("plugin:{}", path.display()),
            plugin_backend: created.backend,
            retry_timeout: Mutex::new(params.retry_timeout),
        })
    }

    /// The store's own name as the plugin reported it (`etcd3`, …).
    pub fn plugin_backend(&self) -> &str {
        &self.plugin_backend
    }

    fn retry_timeout(&self) -> Duration {
        *self.retry_timeout.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `method` with `request`; the deadline is `retry_timeout` + `extra` + a grace second.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Method,
        request: &Req,
        extra: Duration,
    ) -> Result<Resp, DcsError> {
        let bytes = serde_json::to_vec(request).expect("requests always serialize");
        let deadline = self.retry_timeout() + extra + DEADLINE_GRACE;
        let handle = self.handle.clone();
        let lib = &self.handle.lib;
        let path = &lib.path;
        let answer = off_runtime(lib, method.name(), deadline, move || handle.call(method, &bytes)).await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(plugin = %path.display(), method = method.name(), "{e}");
                return Err(match e {
                    PluginError::Timeout { .. } | PluginError::Busy { .. } => {
                        DcsError::Unavailable(e.to_string())
                    }
                    e => DcsError::backend(method.name(), e),
                });
            }
        };
        if answer.status != STATUS_OK {
            let message = format!("plugin {}: {}", path.display(), answer.error);
            return Err(match ErrorCode::from_status(answer.status) {
                Some(ErrorCode::Unavailable) => DcsError::Unavailable(message),
                Some(ErrorCode::SessionExpired) => DcsError::SessionExpired,
                Some(ErrorCode::Config) => DcsError::Config(message),
                _ => {
                    let e = call_error(path, method.name(), answer.status, answer.error);
                    tracing::error!(plugin = %path.display(), method = method.name(), "{e}");
                    DcsError::backend(method.name(), e)
                }
            });
        }
        serde_json::from_slice(&answer.response).map_err(|e| {
            let e = PluginError::Garbage { path: path.clone(), method: method.name(), error: e.to_string() };
            tracing::error!(plugin = %path.display(), method = method.name(), "{e}");
            DcsError::backend(method.name(), e)
        })
    }

    async fn ok<Req: Serialize>(&self, method: Method, request: &Req) -> Result<bool, DcsError> {
        Ok(self.call::<Req, Outcome>(method, request, Duration::ZERO).await?.ok)
    }
}

fn call_error(path: &Path, method: &'static str, status: i32, message: String) -> PluginError {
    let path = path.to_path_buf();
    if status == ErrorCode::Panic.status() {
        PluginError::Panicked { path, method, message }
    } else {
        PluginError::Failed { path, method, code: status, message }
    }
}

fn leader_ref(leader: Option<&Leader>) -> Option<LeaderRef> {
    leader.map(|l| LeaderRef { name: l.name.clone(), version: l.version.0, owner: l.owner.clone() })
}

#[async_trait]
impl Dcs for PluginDcs {
    fn backend(&self) -> String {
        self.backend.clone()
    }

    async fn load_cluster(&self) -> Result<Cluster, DcsError> {
        let r: LoadClusterResponse = self.call(Method::LoadCluster, &NoArgs {}, Duration::ZERO).await?;
        let entries = r.entries.into_iter().map(|e| RawEntry {
            key: e.key,
            value: e.value,
            version: Version(e.version),
            owner: e.owner,
        });
        let (cluster, warnings) = Cluster::from_entries(entries);
        for w in warnings {
            tracing::warn!(key = %w.key, "ignoring malformed DCS value: {}", w.problem);
        }
        Ok(cluster)
    }

    async fn attempt_to_acquire_leader(&self) -> Result<bool, DcsError> {
        self.ok(Method::AttemptToAcquireLeader, &NoArgs {}).await
    }

    async fn update_leader(&self, leader: Option<&Leader>) -> Result<bool, DcsError> {
        self.ok(Method::UpdateLeader, &UpdateLeaderRequest { leader: leader_ref(leader) }).await
    }

    async fn take_leader(&self) -> Result<bool, DcsError> {
        self.ok(Method::TakeLeader, &NoArgs {}).await
    }

    async fn delete_leader(&self, leader: Option<&Leader>) -> Result<bool, DcsError> {
        self.ok(Method::DeleteLeader, &DeleteLeaderRequest { leader: leader_ref(leader) }).await
    }

    async fn touch_member(&self, data: &str) -> Result<bool, DcsError> {
        self.ok(Method::TouchMember, &TouchMemberRequest { data: data.to_string() }).await
    }

    async fn set_config_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        let req = CasValue { value: value.to_string(), version: version.map(|v| v.0) };
        self.ok(Method::SetConfigValue, &req).await
    }

    async fn set_failover_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        let req = CasValue { value: value.to_string(), version: version.map(|v| v.0) };
        self.ok(Method::SetFailoverValue, &req).await
    }

    async fn set_history_value(&self, value: &str) -> Result<bool, DcsError> {
        self.ok(Method::SetHistoryValue, &PlainValue { value: value.to_string() }).await
    }

    async fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<Version>,
    ) -> Result<Option<Version>, DcsError> {
        let req = CasValue { value: value.to_string(), version: version.map(|v| v.0) };
        let r: SetSyncStateValueResponse = self.call(Method::SetSyncStateValue, &req, Duration::ZERO).await?;
        Ok(r.version.map(Version))
    }

    async fn delete_sync_state(&self, version: Option<Version>) -> Result<bool, DcsError> {
        self.ok(Method::DeleteSyncState, &DeleteSyncStateRequest { version: version.map(|v| v.0) }).await
    }

    async fn write_status(&self, value: &str) -> Result<bool, DcsError> {
        self.ok(Method::WriteStatus, &PlainValue { value: value.to_string() }).await
    }

    async fn write_failsafe(&self, value: &str) -> Result<bool, DcsError> {
        self.ok(Method::WriteFailsafe, &PlainValue { value: value.to_string() }).await
    }

    async fn initialize(&self, create_new: bool, sysid: &str) -> Result<bool, DcsError> {
        self.ok(Method::Initialize, &InitializeRequest { create_new, sysid: sysid.to_string() }).await
    }

    async fn cancel_initialization(&self) -> Result<bool, DcsError> {
        self.ok(Method::CancelInitialization, &NoArgs {}).await
    }

    async fn delete_cluster(&self) -> Result<bool, DcsError> {
        self.ok(Method::DeleteCluster, &NoArgs {}).await
    }

    async fn watch(&self, leader_version: Option<Version>, timeout: Duration) -> Result<bool, DcsError> {
        let req = WatchRequest { leader_version: leader_version.map(|v| v.0), timeout_ms: ms(timeout) };
        let r: Outcome = self.call(Method::Watch, &req, timeout).await?;
        Ok(r.ok)
    }

    async fn set_timing(
        &self,
        ttl: Duration,
        loop_wait: Duration,
        retry_timeout: Duration,
    ) -> Result<(), DcsError> {
        let req = SetTimingRequest {
            ttl_ms: ms(ttl),
            loop_wait_ms: ms(loop_wait),
            retry_timeout_ms: ms(retry_timeout),
        };
        let _: Done = self.call(Method::SetTiming, &req, Duration::ZERO).await?;
        *self.retry_timeout.lock().unwrap_or_else(|p| p.into_inner()) = retry_timeout;
        Ok(())
    }

    async fn close(&self) -> Result<(), DcsError> {
        let _: Done = self.call(Method::Close, &NoArgs {}, Duration::ZERO).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin side: one of praetor's own backends, exported through the ABI.
// ---------------------------------------------------------------------------------------------

/// A praetor backend that a plugin crate exports with
/// `praetor_dcs_abi::export_dcs_plugin!(praetor::dcs::plugin::Exported<MyBackend>)`.
pub trait ExportBackend: 'static {
    /// Open a client from the `plugin.config` JSON. Runs on the plugin's own tokio runtime.
    fn connect(
        params: DcsParams,
        config: serde_json::Value,
    ) -> impl std::future::Future<Output = Result<Arc<dyn Dcs>, DcsError>>;
}

/// A [`Dcs`] backend living inside a plugin library, with the plugin's own tokio runtime: host
/// calls arrive on host threads and are driven to completion with `block_on` on that runtime.
pub struct Exported<B> {
    runtime: Option<tokio::runtime::Runtime>,
    dcs: Option<Arc<dyn Dcs>>,
    _backend: std::marker::PhantomData<fn() -> B>,
}

impl<B> Drop for Exported<B> {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            {
                let _enter = rt.enter();
                self.dcs.take();
            }
            // Never block the host's thread on the plugin's tasks.
            rt.shutdown_background();
        }
    }
}

fn to_abi(e: DcsError) -> praetor_dcs_abi::PluginError {
    use praetor_dcs_abi::PluginError as P;
    match e {
        DcsError::Unavailable(m) => P::unavailable(m),
        DcsError::SessionExpired => P::new(ErrorCode::SessionExpired, "DCS session or lease expired"),
        DcsError::Config(m) => P::config(m),
        e @ DcsError::Backend { .. } => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            P::backend(message)
        }
    }
}

fn from_ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

impl<B: ExportBackend> Exported<B> {
    fn run<T>(
        &self,
        f: impl FnOnce(
            Arc<dyn Dcs>,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, DcsError>> + Send>>,
    ) -> Result<T, praetor_dcs_abi::PluginError> {
        let rt = self.runtime.as_ref().expect("the runtime lives until drop");
        let dcs = self.dcs.clone().expect("the backend lives until drop");
        rt.block_on(f(dcs)).map_err(to_abi)
    }
}

/// The raw keys of a cluster snapshot, as they would be stored (values re-encoded from the parsed
/// snapshot: a value the backend could not parse comes out empty, as the host would read it).
pub fn cluster_entries(c: &Cluster) -> Vec<praetor_dcs_abi::messages::Entry> {
    use praetor_dcs_abi::messages::Entry;
    let mut out = Vec::new();
    let mut push = |key: String, value: String, version: i64, owner: Option<String>| {
        out.push(Entry { key, value, version, owner })
    };
    if let Some(i) = &c.initialize {
        push("initialize".into(), i.clone(), 0, None);
    }
    if let Some(cfg) = &c.config {
        push("config".into(), serde_json::Value::Object(cfg.data.clone()).to_string(), cfg.version.0, None);
    }
    if let Some(l) = &c.leader {
        push("leader".into(), l.name.clone(), l.version.0, l.owner.clone());
    }
    if c.status != super::model::Status::default() {
        push("status".into(), c.status.to_json(), 0, None);
    }
    for m in &c.members {
        push(format!("members/{}", m.name), m.data.to_json(), m.version.0, m.owner.clone());
    }
    if let Some(f) = &c.failover {
        push("failover".into(), f.to_json(), f.version.map_or(0, |v| v.0), None);
    }
    if let Some(v) = c.sync.version {
        let value = serde_json::to_string(&c.sync).expect("SyncState always serializes");
        push("sync".into(), value, v.0, None);
    }
    if let Some(h) = &c.history {
        push("history".into(), super::model::History::to_json(&h.lines), h.version.0, None);
    }
    if let Some(f) = &c.failsafe {
        push("failsafe".into(), serde_json::to_string(f).expect("a string map always serializes"), 0, None);
    }
    out
}

/// Inside a plugin library, praetor's `tracing` is a copy of its own that the host's subscriber
/// does not see: log to stderr (which the agent shares), filtered by `PRAETOR_PLUGIN_LOG`
/// (default `warn`). A no-op when a subscriber is already installed (the backend runs in-process).
fn init_plugin_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PRAETOR_PLUGIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn leader_from(r: Option<LeaderRef>) -> Option<Leader> {
    r.map(|l| Leader { name: l.name, version: Version(l.version), owner: l.owner })
}

impl<B: ExportBackend> praetor_dcs_abi::DcsPlugin for Exported<B> {
    fn create(request: CreateRequest) -> Result<Self, praetor_dcs_abi::PluginError> {
        let p = request.params;
        let params = DcsParams {
            namespace: p.namespace,
            scope: p.scope,
            name: p.name,
            ttl: from_ms(p.ttl_ms),
            loop_wait: from_ms(p.loop_wait_ms),
            retry_timeout: from_ms(p.retry_timeout_ms),
        };
        init_plugin_logging();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dcs-plugin-rt")
            .enable_all()
            .build()
            .map_err(|e| {
                praetor_dcs_abi::PluginError::backend(format!("cannot start the plugin's runtime: {e}"))
            })?;
        let dcs = match runtime.block_on(B::connect(params, request.config)) {
            Ok(d) => d,
            Err(e) => {
                runtime.shutdown_background();
                return Err(to_abi(e));
            }
        };
        Ok(Exported { runtime: Some(runtime), dcs: Some(dcs), _backend: std::marker::PhantomData })
    }

    fn backend(&self) -> String {
        self.dcs.as_ref().map(|d| d.backend()).unwrap_or_default()
    }

    fn load_cluster(&self, _: NoArgs) -> Result<LoadClusterResponse, praetor_dcs_abi::PluginError> {
        let c = self.run(|d| Box::pin(async move { d.load_cluster().await }))?;
        Ok(LoadClusterResponse { entries: cluster_entries(&c) })
    }

    fn attempt_to_acquire_leader(&self, _: NoArgs) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.attempt_to_acquire_leader().await })).map(Outcome::from)
    }

    fn update_leader(&self, r: UpdateLeaderRequest) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        let l = leader_from(r.leader);
        self.run(|d| Box::pin(async move { d.update_leader(l.as_ref()).await })).map(Outcome::from)
    }

    fn take_leader(&self, _: NoArgs) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.take_leader().await })).map(Outcome::from)
    }

    fn delete_leader(&self, r: DeleteLeaderRequest) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        let l = leader_from(r.leader);
        self.run(|d| Box::pin(async move { d.delete_leader(l.as_ref()).await })).map(Outcome::from)
    }

    fn touch_member(&self, r: TouchMemberRequest) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.touch_member(&r.data).await })).map(Outcome::from)
    }

    fn set_config_value(&self, r: CasValue) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.set_config_value(&r.value, r.version.map(Version)).await }))
            .map(Outcome::from)
    }

    fn set_failover_value(&self, r: CasValue) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.set_failover_value(&r.value, r.version.map(Version)).await }))
            .map(Outcome::from)
    }

    fn set_history_value(&self, r: PlainValue) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.set_history_value(&r.value).await })).map(Outcome::from)
    }

    fn set_sync_state_value(
        &self,
        r: CasValue,
    ) -> Result<SetSyncStateValueResponse, praetor_dcs_abi::PluginError> {
        let v = self.run(|d| {
            Box::pin(async move { d.set_sync_state_value(&r.value, r.version.map(Version)).await })
        })?;
        Ok(SetSyncStateValueResponse { version: v.map(|v| v.0) })
    }

    fn delete_sync_state(&self, r: DeleteSyncStateRequest) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.delete_sync_state(r.version.map(Version)).await }))
            .map(Outcome::from)
    }

    fn write_status(&self, r: PlainValue) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.write_status(&r.value).await })).map(Outcome::from)
    }

    fn write_failsafe(&self, r: PlainValue) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.write_failsafe(&r.value).await })).map(Outcome::from)
    }

    fn initialize(&self, r: InitializeRequest) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.initialize(r.create_new, &r.sysid).await })).map(Outcome::from)
    }

    fn cancel_initialization(&self, _: NoArgs) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.cancel_initialization().await })).map(Outcome::from)
    }

    fn delete_cluster(&self, _: NoArgs) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.delete_cluster().await })).map(Outcome::from)
    }

    fn watch(&self, r: WatchRequest) -> Result<Outcome, praetor_dcs_abi::PluginError> {
        self.run(|d| {
            Box::pin(async move { d.watch(r.leader_version.map(Version), from_ms(r.timeout_ms)).await })
        })
        .map(Outcome::from)
    }

    fn set_timing(&self, r: SetTimingRequest) -> Result<Done, praetor_dcs_abi::PluginError> {
        self.run(|d| {
            Box::pin(async move {
                d.set_timing(from_ms(r.ttl_ms), from_ms(r.loop_wait_ms), from_ms(r.retry_timeout_ms)).await
            })
        })
        .map(|()| Done {})
    }

    fn close(&self, _: NoArgs) -> Result<Done, praetor_dcs_abi::PluginError> {
        self.run(|d| Box::pin(async move { d.close().await })).map(|()| Done {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::model::{History, HistoryLine, MemberData, SyncState};

    #[test]
    fn cluster_entries_read_back_as_the_same_cluster() {
        let raw = |key: &str, value: &str, version: i64, owner: Option<&str>| RawEntry {
            key: key.into(),
            value: value.into(),
            version: Version(version),
            owner: owner.map(String::from),
        };
        let member = MemberData {
            conn_url: "postgres://127.0.0.1:5432/postgres".into(),
            api_url: "http://127.0.0.1:8008/patroni".into(),
            state: "running".into(),
            xlog_location: Some(42),
            ..Default::default()
        };
        let (original, warnings) = Cluster::from_entries(vec![
            raw("initialize", "7123456789", 3, None),
            raw(
                "config",
                r#"{"ttl":30,"loop_wait":10,"postgresql":{"parameters":{"max_connections":100}}}"#,
                4,
                None,
            ),
            raw("leader", "pg0", 5, Some("777")),
            raw("status", r#"{"optime":1234,"slots":{"pg1":99}}"#, 6, None),
            raw("members/pg0", &member.to_json(), 7, Some("777")),
            raw("members/pg1", "postgres://10.0.0.2:5432/postgres", 8, Some("778")),
            raw("failover", r#"{"leader":"pg0","member":"pg1"}"#, 9, None),
            raw("sync", &SyncState::to_json("pg0", &["pg1".into()], 0), 10, None),
            raw(
                "history",
                &History::to_json(&[HistoryLine {
                    timeline: 1,
                    lsn: 100,
                    reason: "no recovery target specified".into(),
                    timestamp: None,
                    new_leader: None,
                }]),
                11,
                None,
            ),
            raw("failsafe", r#"{"pg0":"http://127.0.0.1:8008/patroni"}"#, 12, None),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        let entries = cluster_entries(&original).into_iter().map(|e| RawEntry {
            key: e.key,
            value: e.value,
            version: Version(e.version),
            owner: e.owner,
        });
        let (copy, warnings) = Cluster::from_entries(entries);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(copy, original);
    }

    #[test]
    fn an_empty_cluster_has_no_entries() {
        assert!(cluster_entries(&Cluster::default()).is_empty());
    }

    #[tokio::test]
    async fn a_missing_library_is_reported_with_its_path() {
        let err = probe(Path::new("/nonexistent/libdcs_nothing.so")).expect_err("no such file");
        assert!(matches!(err, PluginError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/libdcs_nothing.so"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_library_cannot_be_loaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("libdcs_text.so");
        std::fs::write(&path, "not an ELF file").expect("write");
        let err = probe(&path).expect_err("not a library");
        assert!(matches!(err, PluginError::Open { .. }), "{err}");
    }
}
