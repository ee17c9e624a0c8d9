//! The way in: the SDK's module with `unsafe` for everything the host calls
//! (its other one, [`host`](super::host), is the way out).
//!
//! Everything the host calls (`init`, `call`, `shutdown`, the body's `next`
//! and `close`) is an `extern "C"` trampoline here, and each one runs its
//! body through [`entry`], the single gate that checks the pointers it was
//! given and catches panics, so a Rust panic never unwinds into the host.
//! What the application calls on the host goes through
//! [`RawRequest`], built here from the pointers `call` received.
//!
//! Pointer invariants are written on the types that carry them.

use std::any::Any;
use std::cell::Cell;
use std::ffi::c_void;
use std::mem::{size_of, MaybeUninit};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::Once;

use super::app::App;
use super::body::{BodyState, Handoff, StaticBody, Step};
use super::config::Config;
use super::environ::Environ;
use super::error::Error;
use super::host::{environ_ref, host_api, known_api, log, log_with, ptr_ok, RawRequest};
use super::response::StartResponse;
use crate::ffi::{
    nwsgi_body, nwsgi_environ, nwsgi_host_api, nwsgi_init_args, nwsgi_request, nwsgi_str,
    NWSGI_BODY_END, NWSGI_BODY_LAST, NWSGI_BODY_MORE, NWSGI_ERROR, NWSGI_E_INVALID,
    NWSGI_LOG_ERROR, NWSGI_OK,
};

/// Log target of the messages the SDK itself writes (faults, failed calls).
const SDK_TARGET: &str = "nwsgi_sdk";

// ------------------------------------------------------------------------
// The gate
// ------------------------------------------------------------------------

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
    /// While an entry point runs on this thread for a request: its handle
    /// (else null). The log bridge passes it to `api->log`, so `tracing`
    /// events of the request carry its id and request line; the header
    /// allows exactly that (the request running on this thread). Restored
    /// by `entry` like `panic_at`. With it, the table of the host that
    /// passed it, once `call` knows it (`None` in the body's `next`/`close`:
    /// then the remembered table, see `host::host_api`).
    current_req: Cell<(*mut nwsgi_request, Option<&'static nwsgi_host_api>)>,
}

impl Gate {
    const fn new() -> Gate {
        Gate {
            panic_at: Cell::new(ptr::null_mut()),
            statics: [const { Cell::new(None) }; STATIC_BODIES],
            current_req: Cell::new((ptr::null_mut(), None)),
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

/// The request an entry point runs for on this thread right now, or null
/// (outside entry points, in `init`/`shutdown`). Valid to pass to the
/// host's `log` while that entry point runs.
pub(crate) fn current_request() -> (*mut nwsgi_request, Option<&'static nwsgi_host_api>) {
    GATE.with(|gate| gate.current_req.get())
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
        let outer_req = gate.current_req.replace((req, None));
        // AssertUnwindSafe: after a panic nothing `f` touched is used again
        // except a body state, which the caller poisons.
        let result = catch_unwind(AssertUnwindSafe(|| f(gate)));
        gate.panic_at.set(outer);
        // Reported to the request's own host when `call` knew it.
        let api = gate.current_req.replace(outer_req).1;
        result.map_err(|payload| report_panic(site, req, api, at, payload.as_ref()))
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
    api: Option<&'static nwsgi_host_api>,
    at: Option<String>,
    payload: &(dyn Any + Send),
) -> String {
    let message = match at {
        Some(at) => format!("{site} panicked at {at}: {}", panic_message(payload)),
        None => format!("{site} panicked: {}", panic_message(payload)),
    };
    if let Some(api) = api.or_else(host_api) {
        // SAFETY: `entry` checked every pointer before running; `req` is the
        // request the host is running on this thread (or NULL), `api` its
        // host's table.
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
        let req = NonNull::new(req).expect("checked by entry");
        let mut wide = MaybeUninit::uninit();
        // SAFETY: checked non-NULL and aligned; the host's environ for this
        // request, valid until it ends, which is after `call` returns.
        let fields = unsafe { environ_ref(env, &mut wide) };
        // SAFETY: `env` and `req` are this request's, `fields` is its view,
        // and `raw` (with every Environ/StartResponse built on it) cannot
        // leave this closure: `call` returns a `'static` Body.
        let raw = match fields.and_then(|fields| unsafe { RawRequest::new(fields, env, req) }) {
            Ok(raw) => raw,
            Err(message) => {
                log(NWSGI_LOG_ERROR, SDK_TARGET, &format!("{site}: {message}"));
                return NWSGI_E_INVALID;
            }
        };
        gate.current_req.set((req.as_ptr(), Some(raw.api())));
        let mut environ = Environ::new(raw);
        let mut start_response = StartResponse::new(raw);
        let out = match app.call(&mut environ, &mut start_response) {
            Ok(out) => out,
            Err(e) => match failed(app, &site, raw, &e, &mut start_response) {
                Some(out) => out,
                None => return NWSGI_ERROR,
            },
        };
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
    })
    .unwrap_or(NWSGI_ERROR)
}

/// `call` returned `Err(e)`: log it and answer what the app renders for it
/// (`None`: nothing, answer `NWSGI_ERROR`). Out of line: the path every
/// request takes stays as short as before errors could be rendered.
#[cold]
#[inline(never)]
fn failed<A: App>(
    app: &A,
    site: &Site<'_>,
    raw: RawRequest<'_>,
    e: &Error,
    start_response: &mut StartResponse<'_>,
) -> Option<super::body::Body> {
    let log = |level, what: &str| {
        let code = super::log::level_code(level);
        raw.log(code, SDK_TARGET, &format!("{site} {what}"));
    };
    super::app::answer_error(app, e, start_response, log)
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

#[cfg(test)]
#[path = "raw_tests.rs"]
mod tests;
