//! The boundary types, one for one with `include/nwsgi.h`.
//!
//! Everything here is plain `#[repr(C)]` because a C plugin cannot produce
//! abi_stable's load-time metadata. `#[derive(StableAbi)]` is used only as a
//! compile-time FFI-safety check of every field, and its layout info is
//! compared against the C compiler's `sizeof`/`offsetof` in
//! `abi/tests/layout.rs`. Field order and types must never change within a
//! major version; new fields go at the end of a struct.
#![allow(non_camel_case_types)]

use abi_stable::StableAbi;
use std::ffi::{c_char, c_void};

/// "NWSG" read as a little-endian u32.
pub const NWSGI_MAGIC: u32 = 0x4753_574E;
pub const NWSGI_ABI_MAJOR: u16 = 1;
pub const NWSGI_ABI_MINOR: u16 = 3;

pub const NWSGI_OK: i32 = 0;
pub const NWSGI_ERROR: i32 = -1;
pub const NWSGI_E_INVALID: i32 = -2;
pub const NWSGI_E_STATE: i32 = -3;
pub const NWSGI_E_HEADERS_SENT: i32 = -4;
pub const NWSGI_E_DISCONNECTED: i32 = -5;
pub const NWSGI_E_BAD_BODY: i32 = -6;

pub const NWSGI_LOG_ERROR: i32 = 1;
pub const NWSGI_LOG_WARN: i32 = 2;
pub const NWSGI_LOG_INFO: i32 = 3;
pub const NWSGI_LOG_DEBUG: i32 = 4;
pub const NWSGI_LOG_TRACE: i32 = 5;

pub const NWSGI_BODY_END: i32 = 0;
pub const NWSGI_BODY_MORE: i32 = 1;
pub const NWSGI_BODY_LAST: i32 = 2;

/// `call`/`next`/`close` may run on several threads at once.
pub const NWSGI_APP_THREAD_SAFE: u32 = 0x1;

/// Bytes borrowed from the other side; not NUL-terminated. The lifetime is
/// stated wherever one is used (see the header).
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct nwsgi_str {
    pub ptr: *const u8,
    pub len: usize,
}

impl nwsgi_str {
    pub const EMPTY: nwsgi_str = nwsgi_str {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrow `bytes` for the boundary. The caller keeps `bytes` alive for
    /// as long as the lifetime documented at the use site.
    pub const fn from_bytes(bytes: &[u8]) -> nwsgi_str {
        nwsgi_str {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// View the bytes, or None when they cannot be viewed: a NULL pointer
    /// with a length (the header allows NULL only with 0), or a length no
    /// object can have. What the host does with what an app hands over.
    ///
    /// # Safety
    /// Unless NULL, `ptr` must point to `len` readable bytes that stay valid
    /// and unchanged for `'a`.
    pub unsafe fn try_as_bytes<'a>(self) -> Option<&'a [u8]> {
        if self.len == 0 {
            return Some(&[]);
        }
        if self.ptr.is_null() || self.len > isize::MAX as usize {
            return None;
        }
        // SAFETY: non-null and in range; the rest is the caller's promise.
        Some(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
    }

    /// View the bytes.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid and unchanged
    /// for `'a` (or `len` must be 0).
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        debug_assert!(!self.ptr.is_null());
        // SAFETY: guaranteed by the caller (see `# Safety`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

// SAFETY: an nwsgi_str is a borrowed view; the lifetime rules in the header,
// not the type, say who may use it when. It carries no thread affinity.
unsafe impl Send for nwsgi_str {}
// SAFETY: as above; the bytes it points to are never written through it.
unsafe impl Sync for nwsgi_str {}

#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct nwsgi_header {
    pub name: nwsgi_str,
    pub value: nwsgi_str,
}

#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct nwsgi_exc_info {
    pub message: nwsgi_str,
}

/// 1.2: a response head the application declares once (`static`) for
/// `start_response_static`; it and everything it points to stay unchanged
/// while the library is loaded.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct nwsgi_response_head {
    pub status: nwsgi_str,
    pub headers: *const nwsgi_header,
    pub n_headers: usize,
}

// SAFETY: the header makes a response head immutable for as long as the
// library is loaded; it is meant to be a `static` shared by every thread.
unsafe impl Sync for nwsgi_response_head {}
// SAFETY: as above: nothing in it is tied to the thread that made it (the
// tower adapter makes heads at run time, then keeps them in a `static`).
unsafe impl Send for nwsgi_response_head {}

/// Opaque per-request handle owned by the host.
#[repr(C)]
#[derive(StableAbi)]
pub struct nwsgi_request {
    _private: [u8; 0],
}

pub type nwsgi_environ_each_fn =
    unsafe extern "C" fn(user: *mut c_void, key: nwsgi_str, value: nwsgi_str) -> i32;

/// `nwsgi_environ_each_fn` as a parameter: abi_stable's derive cannot check
/// a fn pointer nested in a fn pointer, so it is wrapped; `repr(transparent)`
/// keeps it ABI-identical to the bare pointer the header declares.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct nwsgi_environ_each_cb {
    /// None is a NULL callback from a C caller (refused by the host).
    pub func:
        Option<unsafe extern "C" fn(user: *mut c_void, key: nwsgi_str, value: nwsgi_str) -> i32>,
}

#[repr(C)]
#[derive(StableAbi)]
pub struct nwsgi_host_api {
    pub struct_size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub start_response: unsafe extern "C" fn(
        req: *mut nwsgi_request,
        status: nwsgi_str,
        headers: *const nwsgi_header,
        n_headers: usize,
        exc_info: *const nwsgi_exc_info,
    ) -> i32,
    pub write: unsafe extern "C" fn(req: *mut nwsgi_request, data: *const u8, len: usize) -> i32,
    pub read: unsafe extern "C" fn(req: *mut nwsgi_request, buf: *mut u8, cap: usize) -> i64,
    pub log: unsafe extern "C" fn(
        req: *mut nwsgi_request,
        level: i32,
        target: nwsgi_str,
        message: nwsgi_str,
    ),
    pub environ_get: unsafe extern "C" fn(
        env: *const nwsgi_environ,
        key: nwsgi_str,
        value: *mut nwsgi_str,
    ) -> i32,
    pub environ_each: unsafe extern "C" fn(
        env: *const nwsgi_environ,
        f: nwsgi_environ_each_cb,
        user: *mut c_void,
    ) -> i32,
    // -- 1.2 --
    pub start_response_static: unsafe extern "C" fn(
        req: *mut nwsgi_request,
        head: *const nwsgi_response_head,
        exc_info: *const nwsgi_exc_info,
    ) -> i32,
    pub write_last:
        unsafe extern "C" fn(req: *mut nwsgi_request, data: *const u8, len: usize) -> i32,
}

/// Size of the ABI 1.0 (and 1.1) host table: everything before
/// `start_response_static`. A table at least this large has every 1.0
/// function; later ones are there only if `struct_size` covers them.
pub const NWSGI_HOST_API_SIZE_1_0: usize =
    std::mem::offset_of!(nwsgi_host_api, start_response_static);

impl nwsgi_host_api {
    /// Whether this table has the 1.2 functions (`start_response_static`,
    /// `write_last`): the `NWSGI_API_HAS` test of the header.
    pub fn has_1_2(&self) -> bool {
        self.struct_size as usize >= std::mem::size_of::<nwsgi_host_api>()
    }
}

#[repr(C)]
#[derive(StableAbi)]
pub struct nwsgi_environ {
    pub struct_size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub request_method: nwsgi_str,
    pub script_name: nwsgi_str,
    pub path_info: nwsgi_str,
    pub query_string: nwsgi_str,
    pub content_type: nwsgi_str,
    pub content_length: nwsgi_str,
    pub server_name: nwsgi_str,
    pub server_port: nwsgi_str,
    pub server_protocol: nwsgi_str,
    pub remote_addr: nwsgi_str,
    pub remote_port: nwsgi_str,
    pub url_scheme: nwsgi_str,
    pub request_uri: nwsgi_str,
    pub headers: *const nwsgi_header,
    pub n_headers: usize,
    pub multithread: u8,
    pub multiprocess: u8,
    pub run_once: u8,
    pub has_body: u8,
    pub api: *const nwsgi_host_api,
    // -- 1.3 --
    /// PATH_INFO as received, not percent-decoded (`RAW_PATH_INFO`).
    pub raw_path_info: nwsgi_str,
}

/// Size of the ABI 1.0 to 1.2 environ: everything before `raw_path_info`.
/// An environ at least this large has every 1.0 field; later ones are there
/// only if `struct_size` covers them.
pub const NWSGI_ENVIRON_SIZE_1_0: usize = std::mem::offset_of!(nwsgi_environ, raw_path_info);

impl nwsgi_environ {
    /// Whether this environ has the 1.3 field `raw_path_info`: the
    /// `NWSGI_ENVIRON_HAS` test of the header.
    pub fn has_1_3(&self) -> bool {
        self.struct_size as usize >= std::mem::size_of::<nwsgi_environ>()
    }
}

#[repr(C)]
#[derive(StableAbi)]
pub struct nwsgi_body {
    pub state: *mut c_void,
    pub next: Option<
        unsafe extern "C" fn(
            state: *mut c_void,
            req: *mut nwsgi_request,
            chunk: *mut nwsgi_str,
        ) -> i32,
    >,
    pub close: Option<unsafe extern "C" fn(state: *mut c_void, req: *mut nwsgi_request)>,
}

impl nwsgi_body {
    pub const EMPTY: nwsgi_body = nwsgi_body {
        state: std::ptr::null_mut(),
        next: None,
        close: None,
    };
}

#[repr(C)]
#[derive(StableAbi)]
pub struct nwsgi_init_args {
    pub struct_size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub api: *const nwsgi_host_api,
    pub config: *const nwsgi_header,
    pub n_config: usize,
    pub fail: unsafe extern "C" fn(fail_ctx: *mut c_void, message: nwsgi_str),
    pub fail_ctx: *mut c_void,
}

pub type nwsgi_init_fn =
    unsafe extern "C" fn(args: *const nwsgi_init_args, app_state: *mut *mut c_void) -> i32;
pub type nwsgi_call_fn = unsafe extern "C" fn(
    app_state: *mut c_void,
    env: *const nwsgi_environ,
    req: *mut nwsgi_request,
    body: *mut nwsgi_body,
) -> i32;
pub type nwsgi_shutdown_fn = unsafe extern "C" fn(app_state: *mut c_void);

// The derive needs fn-pointer types written inline, so the fields below
// spell them out; the aliases above are for the code on either side.

/// The exported descriptor. Fields up to `shutdown` are ABI 1.0; `name` is
/// 1.1. The host reads a field only if `struct_size` covers it.
#[repr(C)]
#[derive(StableAbi)]
pub struct nwsgi_app {
    pub magic: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub struct_size: u32,
    pub flags: u32,
    pub init: Option<
        unsafe extern "C" fn(args: *const nwsgi_init_args, app_state: *mut *mut c_void) -> i32,
    >,
    pub call: Option<
        unsafe extern "C" fn(
            app_state: *mut c_void,
            env: *const nwsgi_environ,
            req: *mut nwsgi_request,
            body: *mut nwsgi_body,
        ) -> i32,
    >,
    pub shutdown: Option<unsafe extern "C" fn(app_state: *mut c_void)>,
    // -- 1.1 --
    pub name: *const c_char,
}

// SAFETY: the descriptor is immutable static data (function pointers and a
// pointer to a static string); sharing it between threads is what it is for.
unsafe impl Sync for nwsgi_app {}
// SAFETY: the host API table is immutable static data, like the descriptor.
unsafe impl Sync for nwsgi_host_api {}

/// Size of the ABI 1.0 descriptor: everything before `name`.
pub const NWSGI_APP_SIZE_1_0: usize = std::mem::offset_of!(nwsgi_app, name);
