//! `wsgi`: a bridge that serves a Python WSGI (PEP 3333) application —
//! Flask, Pyramid, Django, a bare callable — from a CPython embedded in the
//! worker process.
//!
//! ```text
//! cd myproject && host serve libwsgi.so --app-arg app=myapp:app
//! ```
//!
//! Written against the raw ABI (`abi::ffi`), not the SDK: the SDK's `Body`
//! and `StartResponse` would sit between the Python objects and the host
//! and cost a copy and a box per request, while here a Python `bytes`
//! object is handed to the host as it is (`write_last` for a one-chunk
//! body, a borrowed chunk for a streamed one).
//!
//! One job per module:
//! * [`config`]: the `--app-arg` pairs;
//! * [`interp`]: booting CPython and importing the application (init);
//! * [`gil`]: entering Python from a host thread, once per request;
//! * [`keys`]: the interned environ keys and the per-slot value caches;
//! * [`environ`]: the environ dict of one request;
//! * [`input`], [`errors`], [`file_wrapper`]: wsgi.input, wsgi.errors,
//!   wsgi.file_wrapper;
//! * [`start`]: start_response and write();
//! * [`response`]: running the application and delivering what it returns;
//! * [`traceback`]: logging a Python exception through the host's log.

mod config;
mod environ;
mod errors;
mod file_wrapper;
mod gil;
mod handle;
mod input;
mod interp;
mod keys;
mod response;
mod start;
mod traceback;

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi::ffi::{
    nwsgi_app, nwsgi_body, nwsgi_environ, nwsgi_init_args, nwsgi_request, nwsgi_str,
    NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR, NWSGI_APP_THREAD_SAFE, NWSGI_ERROR, NWSGI_LOG_ERROR,
    NWSGI_MAGIC,
};

/// The exported descriptor: `host serve libwsgi.so` finds it as `app`.
#[no_mangle]
pub static app: nwsgi_app = nwsgi_app {
    magic: NWSGI_MAGIC,
    abi_major: NWSGI_ABI_MAJOR,
    abi_minor: NWSGI_ABI_MINOR,
    struct_size: std::mem::size_of::<nwsgi_app>() as u32,
    // Python code runs one thread at a time under the GIL, but the GIL is
    // let go while a request waits for the host (reading a streamed body,
    // writing to a slow client) and while the application itself waits
    // (time.sleep, a database): `--threads N` then overlaps N requests.
    flags: NWSGI_APP_THREAD_SAFE,
    init: Some(init),
    call: Some(call),
    shutdown: Some(shutdown),
    name: c"wsgi".as_ptr() as *const c_char,
};

/// Log target of the bridge's own lines.
pub(crate) const TARGET: &str = "wsgi";

unsafe extern "C" fn init(args: *const nwsgi_init_args, app_state: *mut *mut c_void) -> i32 {
    let caught = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes valid init args, borrowed for this call.
        let args = unsafe { &*args };
        // SAFETY: `api` is the host's static table, valid while loaded.
        let api = unsafe { &*args.api };
        let fail = |message: &str| {
            // SAFETY: `fail` and `fail_ctx` come from the host together and
            // the message is borrowed for the call, as the header says.
            unsafe { (args.fail)(args.fail_ctx, nwsgi_str::from_bytes(message.as_bytes())) };
            NWSGI_ERROR
        };
        if !api.has_1_2() {
            return fail("the wsgi bridge needs a host with ABI 1.2 (write_last)");
        }
        let pairs: &[abi::ffi::nwsgi_header] = if args.n_config == 0 {
            &[]
        } else {
            // SAFETY: `config` points to `n_config` pairs borrowed for init.
            unsafe { std::slice::from_raw_parts(args.config, args.n_config) }
        };
        // SAFETY: the pairs' strings are borrowed for init, like the array.
        let config = match unsafe { config::Config::from_pairs(pairs) } {
            Ok(config) => config,
            Err(message) => return fail(&message),
        };
        match interp::boot(api, &config) {
            Ok(state) => {
                // SAFETY: the host hands `app_state` for us to fill.
                unsafe { *app_state = Box::into_raw(Box::new(state)) as *mut c_void };
                abi::ffi::NWSGI_OK
            }
            Err(message) => fail(&message),
        }
    }));
    caught.unwrap_or(NWSGI_ERROR)
}

unsafe extern "C" fn call(
    app_state: *mut c_void,
    env: *const nwsgi_environ,
    req: *mut nwsgi_request,
    body: *mut nwsgi_body,
) -> i32 {
    let caught = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `init` set app_state to a leaked `interp::State`, which
        // lives until `shutdown`, after the last call.
        let state = unsafe { &*(app_state as *const interp::State) };
        // SAFETY: the host passes a valid environ, request and body slot,
        // all borrowed until the request ends.
        let (env, body) = unsafe { (&*env, &mut *body) };
        response::call(state, env, req, body)
    }));
    caught.unwrap_or_else(|_| {
        log_line(
            std::ptr::null_mut(),
            NWSGI_LOG_ERROR,
            "the wsgi bridge panicked",
        );
        NWSGI_ERROR
    })
}

unsafe extern "C" fn shutdown(app_state: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if app_state.is_null() {
            return;
        }
        // SAFETY: `init` made app_state from a Box; shutdown runs once,
        // after the last request.
        let state = unsafe { Box::from_raw(app_state as *mut interp::State) };
        interp::shutdown(*state);
    }));
}

/// One line into the host's log, from anywhere (`req` may be null).
pub(crate) fn log_line(req: *mut nwsgi_request, level: i32, message: &str) {
    if let Some(api) = interp::api() {
        // SAFETY: `api` is the host's static table; a null request is
        // allowed from any thread, a non-null one is only passed by the
        // code serving it on this thread; both strings are borrowed for the
        // call.
        unsafe {
            (api.log)(
                req,
                level,
                nwsgi_str::from_bytes(TARGET.as_bytes()),
                nwsgi_str::from_bytes(message.as_bytes()),
            )
        };
    }
}
