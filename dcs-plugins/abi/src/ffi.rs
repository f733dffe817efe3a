//! The `#[repr(C)]` types of the ABI and the plugin-side shims behind [`export_dcs_plugin!`]. All
//! `unsafe` of the plugin side lives here.
//!
//! [`export_dcs_plugin!`]: crate::export_dcs_plugin

#![allow(unsafe_code)]

use crate::{ErrorCode, Method, PluginError, RawDcsPlugin, STATUS_OK};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Bytes allocated by one side of the boundary and released by the same side: the receiver copies
/// `ptr[..len]` and then calls `release(ptr, len, cap)` (when `release` is not null). An empty buffer
/// has a null `ptr` and no `release`.
///
/// C layout: `struct { uint8_t *ptr; size_t len; size_t cap; void (*release)(uint8_t*, size_t, size_t); }`.
#[repr(C)]
#[derive(Debug)]
pub struct Buf {
    /// Start of the bytes (null when empty).
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Allocation size, for `release` only.
    pub cap: usize,
    /// Frees the allocation; supplied by the side that allocated it.
    pub release: Option<unsafe extern "C" fn(ptr: *mut u8, len: usize, cap: usize)>,
}

impl Buf {
    /// An empty buffer (what the host passes as an out-parameter).
    pub const fn empty() -> Buf {
        Buf { ptr: std::ptr::null_mut(), len: 0, cap: 0, release: None }
    }

    /// Hand over a vector; it is freed by this library's allocator through `release`.
    pub fn from_vec(v: Vec<u8>) -> Buf {
        let mut v = std::mem::ManuallyDrop::new(v);
        Buf { ptr: v.as_mut_ptr(), len: v.len(), cap: v.capacity(), release: Some(release_vec) }
    }

    /// Copy the bytes out and release the buffer through its own `release`; it is empty afterwards.
    ///
    /// # Safety
    /// The buffer must be empty or have been filled according to the ABI (valid `ptr[..len]`, a
    /// `release` able to free it) and not have been released yet.
    pub unsafe fn take(&mut self) -> Vec<u8> {
        let out = if self.ptr.is_null() || self.len == 0 {
            Vec::new()
        } else {
            // SAFETY: per this function's contract `ptr[..len]` is readable.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec()
        };
        if let (false, Some(release)) = (self.ptr.is_null(), self.release) {
            // SAFETY: `release` came with the buffer and frees exactly this allocation, once.
            unsafe { release(self.ptr, self.len, self.cap) };
        }
        *self = Buf::empty();
        out
    }
}

impl Default for Buf {
    fn default() -> Buf {
        Buf::empty()
    }
}

unsafe extern "C" fn release_vec(ptr: *mut u8, len: usize, cap: usize) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: (ptr, len, cap) were produced by `Buf::from_vec` from a Vec of this library's allocator.
    drop(unsafe { Vec::from_raw_parts(ptr, len, cap) });
}

/// `int32_t praetor_dcs_plugin_init(uint32_t host_abi_version, DcsPluginTable *out_table, Buf *out_error)`.
pub type EntryFn =
    unsafe extern "C" fn(host_abi_version: u32, out_table: *mut DcsPluginTable, out_error: *mut Buf) -> i32;

/// `create(request, request_len, out_handle, out_response, out_error)`: open a client.
pub type CreateFn = unsafe extern "C" fn(
    request: *const u8,
    request_len: usize,
    out_handle: *mut *mut c_void,
    out_response: *mut Buf,
    out_error: *mut Buf,
) -> i32;

/// `method(handle, request, request_len, out_response, out_error)`: one DCS operation.
pub type CallFn = unsafe extern "C" fn(
    handle: *mut c_void,
    request: *const u8,
    request_len: usize,
    out_response: *mut Buf,
    out_error: *mut Buf,
) -> i32;

/// `destroy(handle)`: free a client. Called once, after every call on it returned.
pub type DestroyFn = unsafe extern "C" fn(handle: *mut c_void);

/// The function table a plugin fills in. `abi_version` stays the first field in every ABI version,
/// so a host can read it from a plugin of any version. Function pointers are nullable; the host
/// refuses a table with a null entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DcsPluginTable {
    /// The ABI version the plugin implements.
    pub abi_version: u32,
    /// Open a client.
    pub create: Option<CreateFn>,
    /// Free a client.
    pub destroy: Option<DestroyFn>,
    /// See [`crate::messages::LoadClusterRequest`].
    pub load_cluster: Option<CallFn>,
    /// See [`crate::messages::AttemptToAcquireLeaderRequest`].
    pub attempt_to_acquire_leader: Option<CallFn>,
    /// See [`crate::messages::UpdateLeaderRequest`].
    pub update_leader: Option<CallFn>,
    /// See [`crate::messages::TakeLeaderRequest`].
    pub take_leader: Option<CallFn>,
    /// See [`crate::messages::DeleteLeaderRequest`].
    pub delete_leader: Option<CallFn>,
    /// See [`crate::messages::TouchMemberRequest`].
    pub touch_member: Option<CallFn>,
    /// See [`crate::messages::SetConfigValueRequest`].
    pub set_config_value: Option<CallFn>,
    /// See [`crate::messages::SetFailoverValueRequest`].
    pub set_failover_value: Option<CallFn>,
    /// See [`crate::messages::SetHistoryValueRequest`].
    pub set_history_value: Option<CallFn>,
    /// See [`crate::messages::SetSyncStateValueRequest`].
    pub set_sync_state_value: Option<CallFn>,
    /// See [`crate::messages::DeleteSyncStateRequest`].
    pub delete_sync_state: Option<CallFn>,
    /// See [`crate::messages::WriteStatusRequest`].
    pub write_status: Option<CallFn>,
    /// See [`crate::messages::WriteFailsafeRequest`].
    pub write_failsafe: Option<CallFn>,
    /// See [`crate::messages::InitializeRequest`].
    pub initialize: Option<CallFn>,
    /// See [`crate::messages::CancelInitializationRequest`].
    pub cancel_initialization: Option<CallFn>,
    /// See [`crate::messages::DeleteClusterRequest`].
    pub delete_cluster: Option<CallFn>,
    /// See [`crate::messages::WatchRequest`].
    pub watch: Option<CallFn>,
    /// See [`crate::messages::SetTimingRequest`].
    pub set_timing: Option<CallFn>,
    /// See [`crate::messages::CloseRequest`].
    pub close: Option<CallFn>,
}

/// Run `f`, turning an error or a panic into a status and an error message in `out_error`.
fn guard(what: &str, out_error: *mut Buf, f: impl FnOnce() -> Result<(), PluginError>) -> i32 {
    let (code, message) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return STATUS_OK,
        Ok(Err(e)) => (e.code, e.message),
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".to_string());
            // Dropping a payload may itself panic; never let that unwind out of here.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            (ErrorCode::Panic, format!("plugin panicked in {what}: {text}"))
        }
    };
    if !out_error.is_null() {
        // SAFETY: the host passes a valid, empty `Buf` to write the error into (null checked above).
        unsafe { out_error.write(Buf::from_vec(message.into_bytes())) };
    }
    code.status()
}

/// Borrow the request bytes.
///
/// # Safety
/// `ptr[..len]` must be readable for the duration of the call, or `ptr` null.
unsafe fn request<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// The body of the entry symbol generated by [`export_dcs_plugin!`](crate::export_dcs_plugin).
///
/// # Safety
/// `out_table` must be null or point to a writable [`DcsPluginTable`]; `out_error` null or to an
/// empty [`Buf`].
pub unsafe fn entry<R: RawDcsPlugin>(
    plugin_abi: u32,
    host_abi: u32,
    out_table: *mut DcsPluginTable,
    out_error: *mut Buf,
) -> i32 {
    guard("init", out_error, || {
        if out_table.is_null() {
            return Err(PluginError::bad_request("the function table pointer is null"));
        }
        // SAFETY: `abi_version` is the first field in every ABI version, so writing it is in bounds
        // whatever table layout the host has.
        unsafe { std::ptr::addr_of_mut!((*out_table).abi_version).write(plugin_abi) };
        if host_abi != plugin_abi {
            return Err(PluginError::new(
                ErrorCode::AbiMismatch,
                format!(
                    "the plugin implements DCS plugin ABI version {plugin_abi}, the host speaks version {host_abi}"
                ),
            ));
        }
        // SAFETY: same version, so the host's table has exactly this layout; the pointer is valid.
        unsafe { out_table.write(DcsPluginTable::for_plugin::<R>(plugin_abi)) };
        Ok(())
    })
}

/// `create` for plugin type `R`.
pub(crate) unsafe extern "C" fn create_shim<R: RawDcsPlugin>(
    request_ptr: *const u8,
    request_len: usize,
    out_handle: *mut *mut c_void,
    out_response: *mut Buf,
    out_error: *mut Buf,
) -> i32 {
    guard("create", out_error, || {
        if out_handle.is_null() || out_response.is_null() {
            return Err(PluginError::bad_request("create: an out-pointer is null"));
        }
        // SAFETY: the host lends the request bytes for the duration of this call.
        let req = unsafe { request(request_ptr, request_len) };
        let (plugin, response) = R::create(req)?;
        let handle = Box::into_raw(Box::new(plugin)).cast::<c_void>();
        // SAFETY: both out-pointers are non-null and point to host-owned slots for this call.
        unsafe {
            out_handle.write(handle);
            out_response.write(Buf::from_vec(response));
        }
        Ok(())
    })
}

/// Method number `M` for plugin type `R`.
pub(crate) unsafe extern "C" fn call_shim<R: RawDcsPlugin, const M: u32>(
    handle: *mut c_void,
    request_ptr: *const u8,
    request_len: usize,
    out_response: *mut Buf,
    out_error: *mut Buf,
) -> i32 {
    let method = Method::from_index(M).expect("the table only holds shims of existing methods");
    guard(method.name(), out_error, || {
        if handle.is_null() || out_response.is_null() {
            return Err(PluginError::bad_request(format!(
                "{method}: the handle or the response pointer is null"
            )));
        }
        // SAFETY: a non-null handle was created by `create_shim::<R>` and is not destroyed while
        // calls run (host contract); `R: Sync`, so a shared reference may be used from any thread.
        let plugin = unsafe { &*handle.cast::<R>() };
        // SAFETY: the host lends the request bytes for the duration of this call.
        let req = unsafe { request(request_ptr, request_len) };
        let response = plugin.call(method, req)?;
        // SAFETY: non-null, host-owned slot for this call.
        unsafe { out_response.write(Buf::from_vec(response)) };
        Ok(())
    })
}

/// `destroy` for plugin type `R`.
pub(crate) unsafe extern "C" fn destroy_shim<R: RawDcsPlugin>(handle: *mut c_void) {
    if handle.is_null() {
        return;
    }
    let _ = guard("destroy", std::ptr::null_mut(), || {
        // SAFETY: the handle came from `create_shim::<R>` and the host destroys it exactly once,
        // after every call on it returned.
        drop(unsafe { Box::from_raw(handle.cast::<R>()) });
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_round_trips_through_its_own_release() {
        let mut b = Buf::from_vec(b"hello".to_vec());
        // SAFETY: built by `from_vec` just above, not released.
        let bytes = unsafe { b.take() };
        assert_eq!(bytes, b"hello");
        assert!(b.ptr.is_null() && b.release.is_none());
        // SAFETY: empty now; taking again is a no-op.
        assert!(unsafe { b.take() }.is_empty());
    }
}
