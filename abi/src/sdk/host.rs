//! The host as the plugin calls it: the SDK's other module with `unsafe`
//! (with `raw`, where the host calls the plugin).
//!
//! The host's API table is validated once and remembered ([`known_api`]);
//! everything the application asks of the host during a request goes
//! through [`RawRequest`], which can only be built from the pointers `call`
//! received and therefore only lives as long as the request. Apart from
//! `ffi`, this module depends on nothing in the SDK, so the safe wrappers
//! ([`Environ`](crate::Environ), [`StartResponse`](crate::StartResponse),
//! the log layer) build on it without depending on `raw`.
//!
//! Pointer invariants are written on the types that carry them.

use std::any::Any;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::ops::ControlFlow;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

use crate::ffi::{
    nwsgi_environ, nwsgi_environ_each_cb, nwsgi_exc_info, nwsgi_header, nwsgi_host_api,
    nwsgi_request, nwsgi_response_head, nwsgi_str, NWSGI_ABI_MAJOR, NWSGI_ENVIRON_SIZE_1_0,
    NWSGI_E_INVALID, NWSGI_HOST_API_SIZE_1_0,
};

// ------------------------------------------------------------------------
// The host API table
// ------------------------------------------------------------------------

/// The host's function table as the SDK uses it, remembered from the first
/// `init` (or `call`): `from` is the address the host passes, `table` that
/// table once validated by [`check_api`] (or its widened copy, for a host of
/// an older minor version). The header makes the table static ("valid while
/// the library is loaded"), hence `'static`.
struct KnownApi {
    from: usize,
    table: &'static nwsgi_host_api,
}

static HOST_API: OnceLock<KnownApi> = OnceLock::new();

pub(crate) fn host_api() -> Option<&'static nwsgi_host_api> {
    HOST_API.get().map(|known| known.table)
}

/// Validate a host API pointer: non-NULL, aligned, same major version, and at
/// least as large as a 1.0 table. Functions of later minor versions are used
/// only when the table has them (`nwsgi_host_api::has_1_2`), with a 1.0
/// fallback otherwise, so a plugin built with this SDK runs on any 1.x host.
///
/// # Safety
/// `api` is NULL or points to a host API table that stays valid while the
/// library is loaded (what the header promises for `args->api`/`env->api`).
unsafe fn check_api(api: *const nwsgi_host_api) -> Result<&'static nwsgi_host_api, String> {
    if !ptr_ok(api) {
        return Err("host API table is NULL or misaligned".into());
    }
    // SAFETY: non-NULL and aligned (checked above), valid for the library's
    // lifetime by this function's contract. Only the 1.0 prefix is known to
    // be there until `struct_size` says more, so fields are read through the
    // raw pointer, not a reference to the whole struct.
    let (major, minor, size) = unsafe { ((*api).abi_major, (*api).abi_minor, (*api).struct_size) };
    if major != NWSGI_ABI_MAJOR {
        return Err(format!(
            "host API is ABI {major}.{minor}, this plugin was built for {NWSGI_ABI_MAJOR}.x"
        ));
    }
    let size = size as usize;
    if size < NWSGI_HOST_API_SIZE_1_0 {
        return Err(format!(
            "host API table is {size} bytes, expected at least {NWSGI_HOST_API_SIZE_1_0}"
        ));
    }
    if size >= size_of::<nwsgi_host_api>() {
        // SAFETY: the whole struct is there; static per the contract.
        return Ok(unsafe { &*api });
    }
    // SAFETY: `size` bytes are readable (the host's table), at least 1.0's.
    Ok(unsafe { widen(api, size) })
}

/// A host table of an older minor version (`size` bytes) copied into one of
/// this SDK's full size, so the rest of the SDK can hold a reference to the
/// whole type. The functions the host lacks are filled with
/// [`absent_start_response_static`] and [`absent_write_last`], which are never
/// called: `struct_size` stays the host's, so `has_1_2` is false. Leaked: it
/// is kept for as long as the library is loaded, like the host's own.
///
/// # Safety
/// `api` points to `size` readable bytes of a host table, with
/// `NWSGI_HOST_API_SIZE_1_0 <= size < size_of::<nwsgi_host_api>()`.
#[cold]
unsafe fn widen(api: *const nwsgi_host_api, size: usize) -> &'static nwsgi_host_api {
    let mut wide = MaybeUninit::<nwsgi_host_api>::uninit();
    let out = wide.as_mut_ptr();
    // SAFETY: `size` bytes are readable at `api` (contract) and writable at
    // `out` (smaller than the struct); the two do not overlap. The copy
    // initialises every field before `start_response_static` (the 1.0
    // prefix, `size` covers it); the two writes initialise the 1.2 fields.
    // The result is then a fully initialised table.
    unsafe {
        ptr::copy_nonoverlapping(api.cast::<u8>(), out.cast::<u8>(), size);
        ptr::addr_of_mut!((*out).start_response_static).write(absent_start_response_static);
        ptr::addr_of_mut!((*out).write_last).write(absent_write_last);
        Box::leak(Box::new(wide.assume_init()))
    }
}

/// Stands in for a function an older host lacks; never called (see [`widen`]).
unsafe extern "C" fn absent_start_response_static(
    _req: *mut nwsgi_request,
    _head: *const nwsgi_response_head,
    _exc_info: *const nwsgi_exc_info,
) -> i32 {
    NWSGI_E_INVALID
}

/// Stands in for a function an older host lacks; never called (see [`widen`]).
unsafe extern "C" fn absent_write_last(
    _req: *mut nwsgi_request,
    _data: *const u8,
    _len: usize,
) -> i32 {
    NWSGI_E_INVALID
}

/// The validated table for the `api` pointer a host passed: the one already
/// known (every request carries the same pointer, so that is one comparison)
/// or, the first time, [`check_api`]'s, remembered.
///
/// # Safety
/// As [`check_api`].
#[inline]
pub(crate) unsafe fn known_api(
    api: *const nwsgi_host_api,
) -> Result<&'static nwsgi_host_api, String> {
    match HOST_API.get() {
        Some(known) if known.from == api as usize => Ok(known.table),
        // SAFETY: this function's contract.
        _ => unsafe { first_sight(api) },
    }
}

/// # Safety
/// As [`check_api`].
#[cold]
#[inline(never)]
unsafe fn first_sight(api: *const nwsgi_host_api) -> Result<&'static nwsgi_host_api, String> {
    // SAFETY: this function's contract.
    let table = unsafe { check_api(api) }?;
    // The first table wins; a host hands every init/call the same one.
    let known = HOST_API.get_or_init(|| KnownApi {
        from: api as usize,
        table,
    });
    Ok(if known.from == api as usize {
        known.table
    } else {
        table
    })
}

/// The host's environ as a reference to this SDK's whole `nwsgi_environ`:
/// the host's own when it is that large; for a host of an older minor
/// version, its fields copied into `wide`, the later ones empty
/// (`struct_size` stays the host's, so `has_1_3` is false). Host calls
/// that take the environ must still get the host's pointer
/// ([`RawRequest::new`] keeps it).
///
/// # Safety
/// `env` is non-NULL, aligned, and points to the host's environ for the
/// running `call` (at least the 1.0 fields, as `struct_size` says).
#[inline]
pub(crate) unsafe fn environ_ref(
    env: *const nwsgi_environ,
    wide: &mut MaybeUninit<nwsgi_environ>,
) -> Result<&nwsgi_environ, String> {
    // SAFETY: the header fields are in every version's environ (contract);
    // read through the raw pointer, as the rest may be missing.
    let (major, minor, size) = unsafe { ((*env).abi_major, (*env).abi_minor, (*env).struct_size) };
    let size = size as usize;
    if major == NWSGI_ABI_MAJOR && size >= size_of::<nwsgi_environ>() {
        // SAFETY: the whole struct is there, valid until the request ends.
        return Ok(unsafe { &*env });
    }
    if major != NWSGI_ABI_MAJOR {
        return Err(format!(
            "environ is ABI {major}.{minor}, this plugin was built for {NWSGI_ABI_MAJOR}.x"
        ));
    }
    if size < NWSGI_ENVIRON_SIZE_1_0 {
        return Err(format!(
            "environ is {size} bytes, expected at least {NWSGI_ENVIRON_SIZE_1_0}"
        ));
    }
    let out = wide.as_mut_ptr();
    // SAFETY: `size` bytes are readable at `env` (the host's struct_size)
    // and writable at `out` (smaller than the struct); they do not overlap.
    // The copy initialises every 1.0 field (`size` covers them), the write
    // the 1.3 one: the struct is then fully initialised.
    unsafe {
        ptr::copy_nonoverlapping(env.cast::<u8>(), out.cast::<u8>(), size);
        ptr::addr_of_mut!((*out).raw_path_info).write(nwsgi_str::EMPTY);
        Ok(wide.assume_init_ref())
    }
}

/// Send one line to the host's log with no request attached (`req` NULL).
/// Dropped if no host table is known yet.
pub(crate) fn log(level: i32, target: &str, message: &str) {
    if let Some(api) = host_api() {
        // SAFETY: `api` is a validated host table; `log` accepts a NULL
        // request, is thread-safe, and borrows both strings for the call.
        unsafe { log_with(api, ptr::null_mut(), level, target, message) };
    }
}

/// # Safety
/// `req` is NULL or the request whose `call`/`next`/`close` runs on this
/// thread right now.
pub(crate) unsafe fn log_with(
    api: &nwsgi_host_api,
    req: *mut nwsgi_request,
    level: i32,
    target: &str,
    message: &str,
) {
    // SAFETY: `log` is required (non-NULL) by the header; `req` is valid or
    // NULL by this function's contract; the strings outlive the call.
    unsafe {
        (api.log)(
            req,
            level,
            nwsgi_str::from_bytes(target.as_bytes()),
            nwsgi_str::from_bytes(message.as_bytes()),
        )
    }
}

/// Non-NULL and aligned for `T`.
pub(crate) fn ptr_ok<T>(p: *const T) -> bool {
    !p.is_null() && p.is_aligned()
}

// ------------------------------------------------------------------------
// One request, as the application sees the host
// ------------------------------------------------------------------------

/// The environ's byte-string fields.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Field {
    RequestMethod,
    ScriptName,
    PathInfo,
    QueryString,
    ContentType,
    ContentLength,
    ServerName,
    ServerPort,
    ServerProtocol,
    RemoteAddr,
    RemotePort,
    UrlScheme,
    RequestUri,
}

/// Response headers `start_response` converts on the stack; more take one
/// allocation.
pub(crate) const INLINE_HEADERS: usize = 16;

/// The host's view of one request: its environ, its handle and the API table.
///
/// Invariants (established by [`RawRequest::new`], the only constructor):
/// `env` is the host's environ for this request and every string in it is
/// valid for `'r`; `req` is the matching handle; `api` is a validated table.
/// `'r` never outlives the `call` that built it, and the type is neither
/// `Send` nor `Sync` because the host API may only be used from the thread
/// running `call`.
#[derive(Clone, Copy)]
pub(crate) struct RawRequest<'r> {
    /// The environ's fields (the host's struct, or its widened copy).
    env: &'r nwsgi_environ,
    /// The host's own environ, for the host calls that take it.
    host_env: *const nwsgi_environ,
    req: NonNull<nwsgi_request>,
    api: &'static nwsgi_host_api,
    _not_send: PhantomData<*mut ()>,
}

impl<'r> RawRequest<'r> {
    /// # Safety
    /// `host_env` and `req` are what the host passed to the running `call`,
    /// `env` is [`environ_ref`]'s view of `host_env`, and `'r` ends no later
    /// than that `call` returns.
    #[inline]
    pub(crate) unsafe fn new(
        env: &'r nwsgi_environ,
        host_env: *const nwsgi_environ,
        req: NonNull<nwsgi_request>,
    ) -> Result<Self, String> {
        // SAFETY: the environ's api is the same static table init received
        // (header), valid while the library is loaded.
        let api = unsafe { known_api(env.api) }?;
        Ok(RawRequest {
            env,
            host_env,
            req,
            api,
            _not_send: PhantomData,
        })
    }

    /// The validated host table this request came with.
    pub(crate) fn api(&self) -> &'static nwsgi_host_api {
        self.api
    }

    /// A byte-string field, borrowed until the request ends.
    pub(crate) fn field(&self, field: Field) -> &'r [u8] {
        let e = self.env;
        let s = match field {
            Field::RequestMethod => e.request_method,
            Field::ScriptName => e.script_name,
            Field::PathInfo => e.path_info,
            Field::QueryString => e.query_string,
            Field::ContentType => e.content_type,
            Field::ContentLength => e.content_length,
            Field::ServerName => e.server_name,
            Field::ServerPort => e.server_port,
            Field::ServerProtocol => e.server_protocol,
            Field::RemoteAddr => e.remote_addr,
            Field::RemotePort => e.remote_port,
            Field::UrlScheme => e.url_scheme,
            Field::RequestUri => e.request_uri,
        };
        // SAFETY: environ strings are borrowed until the request ends (type
        // invariant: that is at least `'r`).
        unsafe { s.as_bytes() }
    }

    /// The plain (non-pointer) environ fields.
    pub(crate) fn env(&self) -> &'r nwsgi_environ {
        self.env
    }

    /// `raw_path_info`, if the host has it (ABI 1.3).
    pub(crate) fn raw_path_info(&self) -> Option<&'r [u8]> {
        // SAFETY: environ strings are borrowed until the request ends (type
        // invariant: that is at least `'r`).
        self.env
            .has_1_3()
            .then(|| unsafe { self.env.raw_path_info.as_bytes() })
    }

    /// The raw header list.
    pub(crate) fn headers(&self) -> Headers<'r> {
        let list: &'r [nwsgi_header] = if self.env.n_headers == 0 || self.env.headers.is_null() {
            &[]
        } else {
            // SAFETY: the host gives `n_headers` fields at `headers`, valid
            // until the request ends (at least `'r`).
            unsafe { std::slice::from_raw_parts(self.env.headers, self.env.n_headers) }
        };
        Headers { list }
    }

    /// `api->environ_get`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&'r [u8]> {
        let mut value = nwsgi_str::EMPTY;
        // SAFETY: valid environ; `key` borrowed for the call; `value` is a
        // local the host writes.
        let found = unsafe {
            (self.api.environ_get)(self.host_env, nwsgi_str::from_bytes(key), &mut value)
        };
        // SAFETY: the header: the value is "borrowed until the request ends".
        (found == 1).then(|| unsafe { value.as_bytes() })
    }

    /// `api->environ_each`. A panic in `f` stops the enumeration and is
    /// re-raised here, after the host's frames are gone.
    pub(crate) fn for_each(&self, f: &mut EachFn<'_>) -> i32 {
        let mut ctx = EachCtx { f, panic: None };
        // SAFETY: valid environ; `ctx` outlives the call and `each_cb` is the
        // matching callback for it.
        let rc = unsafe {
            (self.api.environ_each)(
                self.host_env,
                nwsgi_environ_each_cb {
                    func: Some(each_cb),
                },
                ptr::from_mut(&mut ctx).cast(),
            )
        };
        if let Some(payload) = ctx.panic {
            resume_unwind(payload);
        }
        rc
    }

    /// `api->read` into `buf`.
    pub(crate) fn read(&self, buf: &mut [u8]) -> i64 {
        // SAFETY: valid request on this thread; `buf` is writable for its
        // length, borrowed for the call.
        unsafe { (self.api.read)(self.req.as_ptr(), buf.as_mut_ptr(), buf.len()) }
    }

    /// `api->start_response`; everything is borrowed for the call only.
    /// Names and values are `&str` or bytes (`http`'s header values need not
    /// be UTF-8).
    pub(crate) fn start_response<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        status: &[u8],
        headers: &[(N, V)],
        exc_message: Option<&str>,
    ) -> i32 {
        let header = |(name, value): &(N, V)| nwsgi_header {
            name: nwsgi_str::from_bytes(name.as_ref()),
            value: nwsgi_str::from_bytes(value.as_ref()),
        };
        // The C view of `headers`: on the stack unless there are many (and
        // not zeroed first: only the part written is read).
        let mut inline = [const { MaybeUninit::<nwsgi_header>::uninit() }; INLINE_HEADERS];
        let spilled: Vec<nwsgi_header>;
        let list: &[nwsgi_header] = if headers.len() <= INLINE_HEADERS {
            for (slot, h) in inline.iter_mut().zip(headers) {
                slot.write(header(h));
            }
            // SAFETY: the loop initialised the first `headers.len()`
            // elements (`zip` stops at the shorter side, which is `headers`);
            // `MaybeUninit<T>` has `T`'s layout.
            unsafe { std::slice::from_raw_parts(inline.as_ptr().cast(), headers.len()) }
        } else {
            spilled = headers.iter().map(header).collect();
            &spilled
        };
        let exc = exc_message.map(|m| nwsgi_exc_info {
            message: nwsgi_str::from_bytes(m.as_bytes()),
        });
        let exc_ptr = exc.as_ref().map_or(ptr::null(), ptr::from_ref);
        // SAFETY: valid request on this thread; `status`, `list` (and the
        // strings it points to) and `exc` outlive the call.
        unsafe {
            (self.api.start_response)(
                self.req.as_ptr(),
                nwsgi_str::from_bytes(status),
                list.as_ptr(),
                list.len(),
                exc_ptr,
            )
        }
    }

    /// `api->start_response_static` for a head the application keeps in a
    /// `static`; `api->start_response` with its parts on a host older than
    /// ABI 1.2.
    pub(crate) fn start_response_static(
        &self,
        head: &'static nwsgi_response_head,
        exc_message: Option<&str>,
    ) -> i32 {
        let exc = exc_message.map(|m| nwsgi_exc_info {
            message: nwsgi_str::from_bytes(m.as_bytes()),
        });
        let exc_ptr = exc.as_ref().map_or(ptr::null(), ptr::from_ref);
        if self.api.has_1_2() {
            // SAFETY: valid request on this thread; `head` is 'static and
            // immutable (built only from 'static data, see `Head`), as the
            // header requires; `exc` outlives the call.
            unsafe { (self.api.start_response_static)(self.req.as_ptr(), head, exc_ptr) }
        } else {
            // SAFETY: as above, and `head`'s strings and header array are
            // 'static.
            unsafe {
                (self.api.start_response)(
                    self.req.as_ptr(),
                    head.status,
                    head.headers,
                    head.n_headers,
                    exc_ptr,
                )
            }
        }
    }

    /// `api->write_last`, or `None` on a host older than ABI 1.2.
    pub(crate) fn write_last(&self, data: &[u8]) -> Option<i32> {
        // SAFETY: valid request on this thread; `data` borrowed for the call.
        self.api
            .has_1_2()
            .then(|| unsafe { (self.api.write_last)(self.req.as_ptr(), data.as_ptr(), data.len()) })
    }

    /// `api->write`.
    pub(crate) fn write(&self, data: &[u8]) -> i32 {
        // SAFETY: valid request on this thread; `data` borrowed for the call.
        unsafe { (self.api.write)(self.req.as_ptr(), data.as_ptr(), data.len()) }
    }

    /// `api->log` with this request attached (wsgi.errors).
    pub(crate) fn log(&self, level: i32, target: &str, message: &str) {
        // SAFETY: valid request, and we are on the thread running its call.
        unsafe { log_with(self.api, self.req.as_ptr(), level, target, message) }
    }
}

/// An `environ_each` visitor: `(key, value)`, borrowed for the call only.
pub(crate) type EachFn<'f> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'f;

/// The context `environ_each` passes back to [`each_cb`].
struct EachCtx<'f> {
    f: &'f mut EachFn<'f>,
    panic: Option<Box<dyn Any + Send>>,
}

/// The `environ_each` callback. Not an entry point of its own: it runs inside
/// `call` (whose gate, `raw::entry`, reports panics), so instead of reporting
/// a panic it parks the payload and stops the enumeration;
/// `RawRequest::for_each` re-raises it once the host's frames are off the
/// stack.
///
/// # Safety
/// `user` is the `EachCtx` that `RawRequest::for_each` passed; `key` and
/// `value` are valid for this call.
unsafe extern "C" fn each_cb(user: *mut c_void, key: nwsgi_str, value: nwsgi_str) -> i32 {
    let ctx = user.cast::<EachCtx<'_>>();
    if !ptr_ok(ctx.cast_const()) {
        return 1;
    }
    // SAFETY: the context `for_each` passed, alive for the whole enumeration.
    let ctx = unsafe { &mut *ctx };
    if ctx.panic.is_some() {
        return 1;
    }
    // SAFETY: borrowed for the duration of this callback; `f` takes them
    // for a higher-ranked lifetime, so they cannot escape.
    let (key, value) = unsafe { (key.as_bytes(), value.as_bytes()) };
    match catch_unwind(AssertUnwindSafe(|| (ctx.f)(key, value))) {
        Ok(ControlFlow::Continue(())) => 0,
        Ok(ControlFlow::Break(())) => 1,
        Err(payload) => {
            ctx.panic = Some(payload);
            1
        }
    }
}

/// The request's raw header list, in order, repeated names kept apart:
/// `(name, value)` exactly as on the wire, borrowed until the request ends.
#[derive(Clone)]
pub struct Headers<'r> {
    /// Invariant: the host's header array, every string valid for `'r`.
    list: &'r [nwsgi_header],
}

impl<'r> Iterator for Headers<'r> {
    type Item = (&'r [u8], &'r [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (first, rest) = self.list.split_first()?;
        self.list = rest;
        // SAFETY: type invariant: the strings are valid for `'r`.
        Some(unsafe { (first.name.as_bytes(), first.value.as_bytes()) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.list.len(), Some(self.list.len()))
    }
}

impl ExactSizeIterator for Headers<'_> {}

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.clone().map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            }))
            .finish()
    }
}
