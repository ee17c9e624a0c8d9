//! The boundary: the SDK's only module with `unsafe`.
//!
//! Everything the host calls (`init`, `call`, `shutdown`, the body's `next`
//! and `close`) is an `extern "C"` trampoline here, and each one runs its
//! body through [`entry`], the single gate that checks the pointers it was
//! given and catches panics, so a Rust panic never unwinds into the host.
//! Everything the application calls on the host goes through
//! [`RawRequest`], which can only be built from the pointers `call` received
//! and therefore only lives as long as the request.
//!
//! Pointer invariants are written on the types that carry them.

use std::any::Any;
use std::cell::Cell;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::ops::ControlFlow;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::{Once, OnceLock};

use super::app::App;
use super::body::{BodyState, Handoff, StaticBody, Step};
use super::config::Config;
use super::environ::Environ;
use super::error::Error;
use super::response::StartResponse;
use crate::ffi::{
    nwsgi_body, nwsgi_environ, nwsgi_environ_each_cb, nwsgi_exc_info, nwsgi_header, nwsgi_host_api,
    nwsgi_init_args, nwsgi_request, nwsgi_response_head, nwsgi_str, NWSGI_ABI_MAJOR,
    NWSGI_BODY_END, NWSGI_BODY_LAST, NWSGI_BODY_MORE, NWSGI_ERROR, NWSGI_E_INVALID,
    NWSGI_HOST_API_SIZE_1_0, NWSGI_LOG_ERROR, NWSGI_OK,
};

/// Log target of the messages the SDK itself writes (faults, failed calls).
const SDK_TARGET: &str = "nwsgi_sdk";

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

fn host_api() -> Option<&'static nwsgi_host_api> {
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
unsafe fn known_api(api: *const nwsgi_host_api) -> Result<&'static nwsgi_host_api, String> {
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

/// Why an environ is refused: another major version, or smaller than ours.
#[cold]
#[inline(never)]
fn environ_mismatch(env: &nwsgi_environ) -> String {
    if env.abi_major != NWSGI_ABI_MAJOR {
        format!(
            "environ is ABI {}.{}, this plugin was built for {}.x",
            env.abi_major, env.abi_minor, NWSGI_ABI_MAJOR
        )
    } else {
        format!("environ is {} bytes", env.struct_size)
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
unsafe fn log_with(
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

// ------------------------------------------------------------------------
// The gate
// ------------------------------------------------------------------------

/// Non-NULL and aligned for `T`.
fn ptr_ok<T>(p: *const T) -> bool {
    !p.is_null() && p.is_aligned()
}

/// How many static single-chunk bodies one thread can have open at once
/// without a heap box. Our host runs call → next → close of one request
/// before the next on a thread, so it uses one; a host interleaving requests
/// on a thread gets boxes once all are taken.
const STATIC_BODIES: usize = 4;

thread_local! {
    /// This thread's side of the gate. One `thread_local`, without a
    /// destructor, so an entry point pays for one TLS lookup: in a cdylib
    /// each lookup is a `__tls_get_addr` call.
    static GATE: Gate = const { Gate::new() };
}

/// The per-thread state of the entry points.
struct Gate {
    /// While an entry point runs on this thread: where the panic hook records
    /// the location of a panic, a local of the innermost [`entry`] frame.
    /// `entry` puts the previous value back before that local goes away, so
    /// a non-null pointer here always points to a live `Option<String>` on
    /// this thread's stack. Null outside entry points, where the hook defers
    /// to the previous hook.
    panic_at: Cell<*mut Option<String>>,
    /// Homes of the static single-chunk bodies handed out on this thread
    /// (`None`: free). The address of one is that body's `nwsgi_body.state`,
    /// valid until its `close` empties it: the header runs call, next and
    /// close of a request on the same thread, and `next`/`close` accept only
    /// a home of the thread they run on.
    statics: [Cell<Option<StaticBody>>; STATIC_BODIES],
}

impl Gate {
    const fn new() -> Gate {
        Gate {
            panic_at: Cell::new(ptr::null_mut()),
            statics: [const { Cell::new(None) }; STATIC_BODIES],
        }
    }

    /// Put `body` in a free home; its address, or `None` if all are taken.
    fn lend(&self, body: StaticBody) -> Option<*mut c_void> {
        let home = self.statics.iter().find(|home| home.get().is_none())?;
        home.set(Some(body));
        Some(ptr::from_ref(home).cast_mut().cast())
    }

    /// The home `state` points to, if it is one of this thread's and holds a
    /// body (not closed yet). Found by address: nothing is dereferenced.
    fn home(&self, state: *mut c_void) -> Option<&Cell<Option<StaticBody>>> {
        self.statics
            .iter()
            .find(|home| ptr::eq(ptr::from_ref(*home).cast(), state) && home.get().is_some())
    }
}

/// Installs (once) a panic hook in this library's own copy of std: inside an
/// entry point it only records where the panic happened, for the log line
/// [`entry`] writes; anywhere else it defers to the previous hook. A cdylib
/// has its own std, so this never touches the host's hook.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let slot = GATE.with(|gate| gate.panic_at.get());
            if slot.is_null() {
                previous(info);
                return;
            }
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            // SAFETY: non-null, so an `entry` frame on this thread (the one
            // panicking) is running its closure and `slot` points to that
            // frame's live local, which nothing else touches meanwhile (see
            // `Gate::panic_at`).
            unsafe { *slot = at };
        }));
    });
}

/// The one gate every host-called entry point goes through.
///
/// Checks `checks` (name, pointer was valid) before running `f`, and runs `f`
/// under `catch_unwind`, with this thread's [`Gate`]. A bad pointer or a
/// panic is logged to the host at ERROR level (with `req` attached if all
/// pointers were valid) and comes back as `Err(message)`; the caller turns it
/// into its failure value.
fn entry<R>(
    site: &Site<'_>,
    req: *mut nwsgi_request,
    checks: &[(&str, bool)],
    f: impl FnOnce(&Gate) -> R,
) -> Result<R, String> {
    if let Some((name, _)) = checks.iter().find(|(_, ok)| !ok) {
        return Err(refuse(site, name, "is NULL or misaligned"));
    }
    GATE.with(|gate| {
        // Where the hook writes if `f` panics: a fresh local per entry, so a
        // location is never stale (a panic the application caught itself
        // only leaves its location here, dropped with the frame).
        let mut at: Option<String> = None;
        let outer = gate.panic_at.replace(ptr::addr_of_mut!(at));
        // AssertUnwindSafe: after a panic nothing `f` touched is used again
        // except a body state, which the caller poisons.
        let result = catch_unwind(AssertUnwindSafe(|| f(gate)));
        gate.panic_at.set(outer);
        result.map_err(|payload| report_panic(site, req, at, payload.as_ref()))
    })
}

/// Log and describe a refused pointer (no request attached: it may be the
/// bad one).
#[cold]
#[inline(never)]
fn refuse(site: &Site<'_>, name: &str, problem: &str) -> String {
    let message = format!("{site}: `{name}` {problem}; refusing the call");
    log(NWSGI_LOG_ERROR, SDK_TARGET, &message);
    message
}

/// Log and describe a panic `entry` caught.
#[cold]
#[inline(never)]
fn report_panic(
    site: &Site<'_>,
    req: *mut nwsgi_request,
    at: Option<String>,
    payload: &(dyn Any + Send),
) -> String {
    let message = match at {
        Some(at) => format!("{site} panicked at {at}: {}", panic_message(payload)),
        None => format!("{site} panicked: {}", panic_message(payload)),
    };
    if let Some(api) = host_api() {
        // SAFETY: `entry` checked every pointer before running; `req` is the
        // request the host is running on this thread (or NULL).
        unsafe { log_with(api, req, NWSGI_LOG_ERROR, SDK_TARGET, &message) };
    }
    message
}

/// Where a fault happened, for the log line: `app: function`.
#[derive(Clone, Copy)]
struct Site<'a> {
    app: &'a str,
    func: &'static str,
}

impl std::fmt::Display for Site<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.app.is_empty() {
            f.write_str(self.func)
        } else {
            write!(f, "{}: {}", self.app, self.func)
        }
    }
}

/// The text of a panic payload (`panic!` produces `&str` or `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

// ------------------------------------------------------------------------
// The descriptor's functions
// ------------------------------------------------------------------------

/// `nwsgi_app.init` for `A`.
///
/// # Safety
/// Called by the host as the header describes: `args` points to a valid
/// `nwsgi_init_args` (its config borrowed for the call) and `app_state` to
/// writable storage for one pointer. NULL/misaligned pointers are refused.
pub unsafe extern "C" fn init<A: App>(
    args: *const nwsgi_init_args,
    app_state: *mut *mut c_void,
) -> i32 {
    let site = Site {
        app: A::NAME,
        func: "init",
    };
    let checks = [
        ("args", ptr_ok(args)),
        ("app_state", ptr_ok(app_state.cast_const())),
    ];
    let outcome = entry(&site, ptr::null_mut(), &checks, |_| {
        // SAFETY: checked non-NULL and aligned by `entry`; the host keeps it
        // valid for the duration of init.
        let args = unsafe { &*args };
        if (args.struct_size as usize) < size_of::<nwsgi_init_args>() {
            return Err(format!("init args are {} bytes", args.struct_size));
        }
        // Validated and remembered here, before anything logs through it.
        // SAFETY: `args.api` is the static host table (header: "static:
        // valid while the library is loaded").
        unsafe { known_api(args.api) }?;
        super::log::install_subscriber();
        install_panic_hook();
        // SAFETY: `args` came from the host, config borrowed during init.
        let config = unsafe { copy_config(args) }?;
        let app = A::init(&config)?;
        // SAFETY: `app_state` checked non-NULL and aligned; the host gave it
        // for us to write. Ownership of the box passes to the host until
        // `shutdown` gives it back.
        unsafe { *app_state = Box::into_raw(Box::new(app)).cast() };
        Ok(())
    });
    let message = match outcome {
        Ok(Ok(())) => return NWSGI_OK,
        Ok(Err(message)) | Err(message) => message,
    };
    if ptr_ok(args) {
        // SAFETY: `args` is valid during init (see above), and `fail` exists
        // only if the struct is as large as ours.
        unsafe {
            if (*args).struct_size as usize >= size_of::<nwsgi_init_args>() {
                ((*args).fail)((*args).fail_ctx, nwsgi_str::from_bytes(message.as_bytes()));
            }
        }
    }
    NWSGI_ERROR
}

/// Copy the `--app-arg` pairs out of the host's memory.
///
/// # Safety
/// `args` was handed to `init` by the host and init is still running.
unsafe fn copy_config(args: &nwsgi_init_args) -> Result<Config, String> {
    if args.n_config == 0 {
        return Ok(Config::default());
    }
    if !ptr_ok(args.config) {
        return Err(format!("config has {} entries but no array", args.n_config));
    }
    // SAFETY: the host gives `n_config` headers at `config`, borrowed for
    // the duration of init (this function runs inside init).
    let pairs = unsafe { std::slice::from_raw_parts(args.config, args.n_config) };
    Ok(Config::from_pairs(pairs.iter().map(|h| {
        // SAFETY: each string is borrowed for init, like the array.
        let (k, v) = unsafe { (h.name.as_bytes(), h.value.as_bytes()) };
        (
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        )
    })))
}

/// `nwsgi_app.call` for `A`.
///
/// # Safety
/// Called by the host as the header describes: `app_state` is what `init::<A>`
/// stored, `env` and `req` are valid until the request ends, `body` points to
/// a zeroed `nwsgi_body`. NULL/misaligned pointers are refused.
pub unsafe extern "C" fn call<A: App>(
    app_state: *mut c_void,
    env: *const nwsgi_environ,
    req: *mut nwsgi_request,
    body: *mut nwsgi_body,
) -> i32 {
    let site = Site {
        app: A::NAME,
        func: "call",
    };
    let checks = [
        ("app_state", ptr_ok(app_state.cast_const().cast::<A>())),
        ("env", ptr_ok(env)),
        ("req", !req.is_null()),
        ("body", ptr_ok(body)),
    ];
    entry(&site, req, &checks, |gate| {
        // SAFETY: `app_state` is the `Box<A>` init leaked (checked non-NULL);
        // the host never runs call after shutdown, and `A: Sync` allows
        // concurrent shared use.
        let app = unsafe { &*app_state.cast_const().cast::<A>() };
        // SAFETY: checked non-NULL and aligned; valid until the request ends,
        // which is after `call` returns.
        let env = unsafe { &*env };
        let req = NonNull::new(req).expect("checked by entry");
        // SAFETY: `env` and `req` are this request's, and `raw` (with every
        // Environ/StartResponse built on it) cannot leave this closure: `call`
        // returns a `'static` Body.
        let raw = match unsafe { RawRequest::new(env, req) } {
            Ok(raw) => raw,
            Err(message) => {
                log(NWSGI_LOG_ERROR, SDK_TARGET, &format!("{site}: {message}"));
                return NWSGI_E_INVALID;
            }
        };
        let mut environ = Environ::new(raw);
        let mut start_response = StartResponse::new(raw);
        match app.call(&mut environ, &mut start_response) {
            Ok(out) => {
                // A whole body goes to the host in one call (ABI 1.2), with
                // no iterator to hand out, box or close. Not before a
                // successful start: then the iterator's first chunk is where
                // the host notices and says what went wrong. The host keeps
                // the outcome (a disconnect, say) and acts on it when `call`
                // returns, just as for a chunk from `next`.
                if start_response.is_started() {
                    if let Some(bytes) = out.as_single() {
                        if raw.write_last(bytes).is_some() {
                            return NWSGI_OK;
                        }
                    }
                }
                let filled = match out.into_handoff() {
                    Handoff::None => return NWSGI_OK,
                    Handoff::Static(single) => match gate.lend(single) {
                        Some(home) => nwsgi_body {
                            state: home,
                            next: Some(static_next),
                            close: Some(static_close),
                        },
                        None => boxed_body(single.into_state()),
                    },
                    Handoff::State(state) => boxed_body(state),
                };
                // SAFETY: `body` checked non-NULL and aligned, ours to fill;
                // its state is the host's to pass back until `close`.
                unsafe { *body = filled };
                NWSGI_OK
            }
            Err(e) => {
                raw.log(NWSGI_LOG_ERROR, SDK_TARGET, &format!("{site} failed: {e}"));
                NWSGI_ERROR
            }
        }
    })
    .unwrap_or(NWSGI_ERROR)
}

/// `nwsgi_app.shutdown` for `A`: runs [`App::shutdown`] and drops the app.
///
/// # Safety
/// `app_state` is what `init::<A>` stored, and no call is running or will
/// run again. NULL/misaligned pointers are refused.
pub unsafe extern "C" fn shutdown<A: App>(app_state: *mut c_void) {
    let site = Site {
        app: A::NAME,
        func: "shutdown",
    };
    let checks = [("app_state", ptr_ok(app_state.cast_const().cast::<A>()))];
    let _ = entry(&site, ptr::null_mut(), &checks, |_| {
        // SAFETY: the box `init` leaked; the host calls shutdown once, after
        // the last request, so we own it again.
        let app = unsafe { Box::from_raw(app_state.cast::<A>()) };
        app.shutdown();
        drop(app);
    });
}

// ------------------------------------------------------------------------
// The body iterator
// ------------------------------------------------------------------------

/// A heap-boxed body: the host holds the box (as `nwsgi_body.state`) until
/// [`body_close`] drops it.
fn boxed_body(state: BodyState) -> nwsgi_body {
    nwsgi_body {
        state: Box::into_raw(Box::new(state)).cast(),
        next: Some(body_next),
        close: Some(body_close),
    }
}

const NEXT: Site<'static> = Site {
    app: "",
    func: "body next",
};
const CLOSE: Site<'static> = Site {
    app: "",
    func: "body close",
};

/// Hand `step` to the host: its code, with the bytes written to `chunk`.
/// A failure is logged (with `req`) and becomes `NWSGI_ERROR`.
///
/// # Safety
/// `chunk` is writable; `req` is NULL or the request this `next` runs for;
/// the bytes of `step` stay put until the next `next` or `close`.
#[inline]
unsafe fn hand_over(step: Step<'_>, req: *mut nwsgi_request, chunk: *mut nwsgi_str) -> i32 {
    let (code, bytes) = match step {
        Step::More(bytes) => (NWSGI_BODY_MORE, bytes),
        Step::Last(bytes) => (NWSGI_BODY_LAST, bytes),
        Step::End => (NWSGI_BODY_END, &[][..]),
        Step::Failed(e) => {
            // SAFETY: `req` is the request this next runs for.
            unsafe { log_failure(req, &e) };
            return NWSGI_ERROR;
        }
    };
    // SAFETY: `chunk` is writable and the bytes stay put until the next
    // `next` or `close`, as the header requires (this function's contract).
    unsafe { *chunk = nwsgi_str::from_bytes(bytes) };
    code
}

/// Log a body iterator's error.
///
/// # Safety
/// `req` is NULL or the request this `next` runs for.
#[cold]
#[inline(never)]
unsafe fn log_failure(req: *mut nwsgi_request, e: &Error) {
    if let Some(api) = host_api() {
        let message = format!("body iterator failed: {e}");
        // SAFETY: this function's contract.
        unsafe { log_with(api, req, NWSGI_LOG_ERROR, SDK_TARGET, &message) };
    }
}

/// `nwsgi_body.next` for a boxed [`BodyState`].
///
/// # Safety
/// `state` is a `BodyState` box that `call` handed out and that was not
/// closed yet; `chunk` is writable; `req` is NULL or the current request.
unsafe extern "C" fn body_next(
    state: *mut c_void,
    req: *mut nwsgi_request,
    chunk: *mut nwsgi_str,
) -> i32 {
    let state = state.cast::<BodyState>();
    let checks = [
        ("state", ptr_ok(state.cast_const())),
        ("chunk", ptr_ok(chunk)),
    ];
    let outcome = entry(&NEXT, req, &checks, |_| {
        // SAFETY: a live box from `call` (not closed: the host never uses the
        // state after close), used by one thread at a time.
        let body = unsafe { &mut *state };
        // SAFETY: `chunk` checked writable; the bytes live in the state box
        // (or are static) and stay put until the next `next` or `close`.
        unsafe { hand_over(body.next(), req, chunk) }
    });
    outcome.unwrap_or_else(|_| {
        if ptr_ok(state.cast_const()) {
            // SAFETY: as above; the panic ended the earlier borrow.
            unsafe { (*state).poison() };
        }
        NWSGI_ERROR
    })
}

/// `nwsgi_body.close` for a boxed [`BodyState`]: drops the state (and so the
/// application's iterator).
///
/// # Safety
/// `state` is a `BodyState` box that `call` handed out; the host calls close
/// exactly once and never uses `state` again.
unsafe extern "C" fn body_close(state: *mut c_void, req: *mut nwsgi_request) {
    let state = state.cast::<BodyState>();
    let checks = [("state", ptr_ok(state.cast_const()))];
    let _ = entry(&CLOSE, req, &checks, |_| {
        // SAFETY: the box `call` leaked, given back exactly once.
        drop(unsafe { Box::from_raw(state) });
    });
}

/// Why [`static_next`]/[`static_close`] refuse a `state`.
const NOT_A_HOME: &str = "is not an open static body of this thread";

/// `nwsgi_body.next` for a [`StaticBody`] in one of this thread's homes
/// (anything else is refused as a bad `state`).
///
/// # Safety
/// `chunk` is writable; `req` is NULL or the current request.
unsafe extern "C" fn static_next(
    state: *mut c_void,
    req: *mut nwsgi_request,
    chunk: *mut nwsgi_str,
) -> i32 {
    let checks = [("chunk", ptr_ok(chunk))];
    entry(&NEXT, req, &checks, |gate| {
        let Some(home) = gate.home(state) else {
            refuse(&NEXT, "state", NOT_A_HOME);
            return NWSGI_ERROR;
        };
        let mut body = home.get().expect("`home` returns full homes only");
        let step = body.next();
        home.set(Some(body));
        // SAFETY: `chunk` checked writable; the bytes are static.
        unsafe { hand_over(step, req, chunk) }
    })
    .unwrap_or(NWSGI_ERROR)
}

/// `nwsgi_body.close` for a [`StaticBody`]: frees its home (there is nothing
/// to drop). A `state` that is not a full home of this thread is refused.
extern "C" fn static_close(state: *mut c_void, req: *mut nwsgi_request) {
    let _ = entry(&CLOSE, req, &[], |gate| match gate.home(state) {
        Some(home) => home.set(None),
        None => {
            refuse(&CLOSE, "state", NOT_A_HOME);
        }
    });
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
const INLINE_HEADERS: usize = 16;

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
    env: &'r nwsgi_environ,
    req: NonNull<nwsgi_request>,
    api: &'static nwsgi_host_api,
    _not_send: PhantomData<*mut ()>,
}

impl<'r> RawRequest<'r> {
    /// # Safety
    /// `env` and `req` are what the host passed to the running `call`, and
    /// `'r` ends no later than that `call` returns.
    #[inline]
    unsafe fn new(env: &'r nwsgi_environ, req: NonNull<nwsgi_request>) -> Result<Self, String> {
        if env.abi_major != NWSGI_ABI_MAJOR
            || (env.struct_size as usize) < size_of::<nwsgi_environ>()
        {
            return Err(environ_mismatch(env));
        }
        // SAFETY: the environ's api is the same static table init received
        // (header), valid while the library is loaded.
        let api = unsafe { known_api(env.api) }?;
        Ok(RawRequest {
            env,
            req,
            api,
            _not_send: PhantomData,
        })
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
        let found =
            unsafe { (self.api.environ_get)(self.env, nwsgi_str::from_bytes(key), &mut value) };
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
                self.env,
                nwsgi_environ_each_cb { func: each_cb },
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
    pub(crate) fn start_response(
        &self,
        status: &str,
        headers: &[(&str, &str)],
        exc_message: Option<&str>,
    ) -> i32 {
        let header = |(name, value): &(&str, &str)| nwsgi_header {
            name: nwsgi_str::from_bytes(name.as_bytes()),
            value: nwsgi_str::from_bytes(value.as_bytes()),
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
                nwsgi_str::from_bytes(status.as_bytes()),
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
/// `call` (whose [`entry`] reports panics), so instead of reporting a panic it
/// parks the payload and stops the enumeration; `RawRequest::for_each`
/// re-raises it once the host's frames are off the stack.
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

#[cfg(test)]
#[path = "raw_tests.rs"]
mod tests;
