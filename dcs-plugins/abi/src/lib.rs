//! The C ABI between praetor and a DCS plugin: a shared library that gives praetor a distributed
//! configuration store it was not compiled with.
//!
//! # The contract in one page
//! - The library exports one C symbol, [`ENTRY_SYMBOL`] (`praetor_dcs_plugin_init`), of type
//!   [`EntryFn`]. The host calls it once with its [`ABI_VERSION`] and a zeroed [`DcsPluginTable`].
//!   The plugin always writes its own ABI version into `table.abi_version` (offset 0 in every ABI
//!   version); when the versions differ it fills nothing else and returns
//!   [`ErrorCode::AbiMismatch`]. Otherwise it fills every function pointer and returns [`STATUS_OK`].
//! - `create` opens one client (a handle) from a JSON [`messages::CreateRequest`]; every DCS method
//!   is a function pointer taking the handle and a JSON request and producing a JSON response;
//!   `destroy` frees the handle. See [`messages`] for the request/response of each method.
//! - Memory is freed by the side that allocated it. Requests are borrowed (`ptr`, `len`) for the
//!   duration of the call. Responses and error messages are [`Buf`]s the plugin allocates; the host
//!   copies them and hands them back through the `release` function stored in the `Buf`.
//! - Every function returns a status: [`STATUS_OK`] or an [`ErrorCode`], with a UTF-8 message in the
//!   error `Buf`.
//! - The plugin owns its threads and async runtime. The host calls from its own threads, possibly
//!   several at once on one handle, and may abandon a call that passes its deadline (the call keeps
//!   its thread until it returns; the handle stays alive until then).
//! - A panic must never cross the boundary: [`export_dcs_plugin!`] catches every panic and reports it
//!   as [`ErrorCode::Panic`]. Do not build plugins with `panic = "abort"`.
//!
//! # Writing a plugin in Rust
//! ```ignore
//! use praetor_dcs_abi::{DcsPlugin, PluginError, messages::*};
//! struct MyStore { /* a client, a runtime … */ }
//! impl DcsPlugin for MyStore {
//!     fn create(req: CreateRequest) -> Result<Self, PluginError> { /* connect */ }
//!     fn backend(&self) -> String { "mystore".into() }
//!     // … one method per DCS operation …
//! }
//! praetor_dcs_abi::export_dcs_plugin!(MyStore);
//! ```
//! Build it as a `cdylib`. `export_dcs_plugin!(raw T)` exports a [`RawDcsPlugin`] that handles the
//! JSON itself.

pub mod messages;

#[doc(hidden)]
pub mod ffi;

pub use ffi::{Buf, CallFn, CreateFn, DcsPluginTable, DestroyFn, EntryFn};

use messages::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The ABI version this crate implements. Bumped on any incompatible change to the table, the
/// buffer rules or the message shapes.
pub const ABI_VERSION: u32 = 1;

/// Name of the entry symbol every plugin exports.
pub const ENTRY_SYMBOL: &str = "praetor_dcs_plugin_init";

/// Status of a successful call.
pub const STATUS_OK: i32 = 0;

/// Why a call failed; the non-zero status values of the ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorCode {
    /// The store could not be reached or did not answer in time (the host retries).
    Unavailable = 1,
    /// The lease/session is gone, and with it every key bound to it.
    SessionExpired = 2,
    /// Any other failure of the store.
    Backend = 3,
    /// The plugin's configuration is unusable (from `create`).
    Config = 4,
    /// The request could not be parsed, or a pointer argument was null.
    BadRequest = 5,
    /// The plugin panicked; the message carries the panic text.
    Panic = 6,
    /// The host's and the plugin's ABI versions differ (from the entry symbol).
    AbiMismatch = 7,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::Unavailable,
        ErrorCode::SessionExpired,
        ErrorCode::Backend,
        ErrorCode::Config,
        ErrorCode::BadRequest,
        ErrorCode::Panic,
        ErrorCode::AbiMismatch,
    ];

    /// The code for a status value; `None` for [`STATUS_OK`] and unknown values.
    pub fn from_status(status: i32) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| *c as i32 == status)
    }

    /// The status value.
    pub fn status(self) -> i32 {
        self as i32
    }
}

/// An error a plugin returns: a code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What happened, for the operator.
    pub message: String,
}

impl PluginError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> PluginError {
        PluginError { code, message: message.into() }
    }

    /// [`ErrorCode::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorCode::Unavailable, message)
    }

    /// [`ErrorCode::Backend`].
    pub fn backend(message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorCode::Backend, message)
    }

    /// [`ErrorCode::Config`].
    pub fn config(message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorCode::Config, message)
    }

    /// [`ErrorCode::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> PluginError {
        PluginError::new(ErrorCode::BadRequest, message)
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for PluginError {}

macro_rules! methods {
    ($( $variant:ident = $idx:literal => $name:ident ($req:ty) -> $resp:ty; )*) => {
        /// The DCS operations, in table order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Method {
            $(
                #[doc = concat!("`", stringify!($name), "`: [`", stringify!($req), "`] → [`", stringify!($resp), "`].")]
                $variant = $idx,
            )*
        }

        impl Method {
            /// Every method, in table order.
            pub const ALL: &'static [Method] = &[$(Method::$variant),*];

            /// The method's name, as in the table and the `Dcs` trait.
            pub fn name(self) -> &'static str {
                match self { $(Method::$variant => stringify!($name)),* }
            }

            /// The method with this table index.
            pub fn from_index(index: u32) -> Option<Method> {
                Method::ALL.get(index as usize).copied()
            }
        }

        impl DcsPluginTable {
            /// The function pointer of a method (`None` when the plugin left it null).
            pub fn slot(&self, method: Method) -> Option<CallFn> {
                match method { $(Method::$variant => self.$name),* }
            }

            /// A table whose methods all call into `R`.
            fn for_plugin<R: RawDcsPlugin>(abi_version: u32) -> DcsPluginTable {
                DcsPluginTable {
                    abi_version,
                    create: Some(ffi::create_shim::<R>),
                    destroy: Some(ffi::destroy_shim::<R>),
                    $($name: Some(ffi::call_shim::<R, $idx>),)*
                }
            }
        }

        /// A DCS plugin with typed requests: one method per DCS operation. Export it with
        /// [`export_dcs_plugin!`]. Every method may block; it runs on a host thread and should finish
        /// within the `retry_timeout` it was given (the host gives up after that).
        ///
        /// The type must be `Send + Sync`: the host may call several methods at once.
        pub trait DcsPlugin: Send + Sync + Sized + 'static {
            /// Open a client. Errors here reach the operator at start-up.
            fn create(request: CreateRequest) -> Result<Self, PluginError>;

            /// A short name of the store for logs.
            fn backend(&self) -> String;

            $(
                #[doc = concat!("The `", stringify!($name), "` operation: see [`", stringify!($req), "`].")]
                fn $name(&self, request: $req) -> Result<$resp, PluginError>;
            )*
        }

        impl<P: DcsPlugin> RawDcsPlugin for Typed<P> {
            fn create(request: &[u8]) -> Result<(Self, Vec<u8>), PluginError> {
                let req: CreateRequest = parse("create", request)?;
                let plugin = P::create(req)?;
                let resp = encode(&CreateResponse { backend: plugin.backend() })?;
                Ok((Typed(plugin), resp))
            }

            fn call(&self, method: Method, request: &[u8]) -> Result<Vec<u8>, PluginError> {
                match method {
                    $(Method::$variant => encode(&self.0.$name(parse::<$req>(method, request)?)?),)*
                }
            }
        }
    };
}

methods! {
    LoadCluster = 0 => load_cluster(LoadClusterRequest) -> LoadClusterResponse;
    AttemptToAcquireLeader = 1 => attempt_to_acquire_leader(AttemptToAcquireLeaderRequest) -> AttemptToAcquireLeaderResponse;
    UpdateLeader = 2 => update_leader(UpdateLeaderRequest) -> UpdateLeaderResponse;
    TakeLeader = 3 => take_leader(TakeLeaderRequest) -> TakeLeaderResponse;
    DeleteLeader = 4 => delete_leader(DeleteLeaderRequest) -> DeleteLeaderResponse;
    TouchMember = 5 => touch_member(TouchMemberRequest) -> TouchMemberResponse;
    SetConfigValue = 6 => set_config_value(SetConfigValueRequest) -> SetConfigValueResponse;
    SetFailoverValue = 7 => set_failover_value(SetFailoverValueRequest) -> SetFailoverValueResponse;
    SetHistoryValue = 8 => set_history_value(SetHistoryValueRequest) -> SetHistoryValueResponse;
    SetSyncStateValue = 9 => set_sync_state_value(SetSyncStateValueRequest) -> SetSyncStateValueResponse;
    DeleteSyncState = 10 => delete_sync_state(DeleteSyncStateRequest) -> DeleteSyncStateResponse;
    WriteStatus = 11 => write_status(WriteStatusRequest) -> WriteStatusResponse;
    WriteFailsafe = 12 => write_failsafe(WriteFailsafeRequest) -> WriteFailsafeResponse;
    Initialize = 13 => initialize(InitializeRequest) -> InitializeResponse;
    CancelInitialization = 14 => cancel_initialization(CancelInitializationRequest) -> CancelInitializationResponse;
    DeleteCluster = 15 => delete_cluster(DeleteClusterRequest) -> DeleteClusterResponse;
    Watch = 16 => watch(WatchRequest) -> WatchResponse;
    SetTiming = 17 => set_timing(SetTimingRequest) -> SetTimingResponse;
    Close = 18 => close(CloseRequest) -> CloseResponse;
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A DCS plugin that handles the JSON itself: `create` gets the raw [`CreateRequest`] bytes and
/// returns the handle plus the [`CreateResponse`] bytes; `call` gets a method's request bytes and
/// returns its response bytes. Export it with `export_dcs_plugin!(raw T)`.
pub trait RawDcsPlugin: Send + Sync + Sized + 'static {
    /// Open a client from the JSON [`CreateRequest`]; return it and the JSON [`CreateResponse`].
    fn create(request: &[u8]) -> Result<(Self, Vec<u8>), PluginError>;

    /// Run one method on its JSON request; return its JSON response.
    fn call(&self, method: Method, request: &[u8]) -> Result<Vec<u8>, PluginError>;
}

/// Adapts a typed [`DcsPlugin`] to the raw JSON interface.
pub struct Typed<P>(pub P);

impl<P> Typed<P> {
    /// The typed plugin.
    pub fn inner(&self) -> &P {
        &self.0
    }
}

/// Parse a request, as [`ErrorCode::BadRequest`] when it does not fit the method's type.
pub fn parse<T: DeserializeOwned>(method: impl std::fmt::Display, bytes: &[u8]) -> Result<T, PluginError> {
    serde_json::from_slice(bytes)
        .map_err(|e| PluginError::bad_request(format!("invalid {method} request: {e}")))
}

/// Serialize a response.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PluginError> {
    serde_json::to_vec(value).map_err(|e| PluginError::backend(format!("cannot encode response: {e}")))
}

/// Export a plugin type from a `cdylib`: generates the [`ENTRY_SYMBOL`] function, which checks the
/// host's ABI version and fills the function table. Every call is wrapped in `catch_unwind`.
///
/// - `export_dcs_plugin!(T)` with `T: DcsPlugin` (typed requests);
/// - `export_dcs_plugin!(raw T)` with `T: RawDcsPlugin` (JSON bytes);
/// - `…, abi_version = N` pretends to implement ABI version `N`. Only for testing a host's version
///   check; never use it in a real plugin.
#[macro_export]
macro_rules! export_dcs_plugin {
    (@entry $raw:ty, $version:expr) => {
        /// praetor's DCS plugin entry point (see the `praetor_dcs_abi` crate).
        ///
        /// # Safety
        /// Called by the host only, with a pointer to a writable table and a pointer to an empty
        /// error buffer (either may be null; that is reported as an error).
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn praetor_dcs_plugin_init(
            host_abi_version: u32,
            out_table: *mut $crate::DcsPluginTable,
            out_error: *mut $crate::Buf,
        ) -> i32 {
            // SAFETY: the pointers come from the host, which follows the ABI (the callee checks null).
            unsafe { $crate::ffi::entry::<$raw>($version, host_abi_version, out_table, out_error) }
        }
    };
    (raw $plugin:ty, abi_version = $version:expr) => {
        $crate::export_dcs_plugin!(@entry $plugin, $version);
    };
    (raw $plugin:ty) => {
        $crate::export_dcs_plugin!(@entry $plugin, $crate::ABI_VERSION);
    };
    ($plugin:ty, abi_version = $version:expr) => {
        $crate::export_dcs_plugin!(@entry $crate::Typed<$plugin>, $version);
    };
    ($plugin:ty) => {
        $crate::export_dcs_plugin!(@entry $crate::Typed<$plugin>, $crate::ABI_VERSION);
    };
}
