//! The boundary driven by a fake host written in Rust: the trampolines are
//! called exactly as a C host would call them. (Part of the `raw` module, so
//! the test's own `unsafe` stays in the FFI module too.)

use std::cell::RefCell;
use std::ffi::{c_void, CStr};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::ffi::*;
use crate::sdk::host::INLINE_HEADERS;
use crate::{AbiError, App, Body, Config, Environ, Error, StartResponse};

// ---------------------------------------------------------------- fake host

/// Everything the fake host records about one request.
#[derive(Default)]
struct FakeReq {
    status: Option<String>,
    headers: Vec<(String, String)>,
    sent: bool,
    written: Vec<u8>,
    input: Vec<u8>,
    input_pos: usize,
    /// Make reads fail with this status after the input is drained.
    input_error: Option<i64>,
    /// start_response_static calls (ABI 1.2 host only).
    static_heads: usize,
    /// write_last was called (ABI 1.2 host only).
    wrote_last: bool,
}

/// The environ with the variables environ_get/each serve (env first, so an
/// `*const nwsgi_environ` is also an `*const FakeEnv`).
#[repr(C)]
struct FakeEnv {
    env: nwsgi_environ,
    vars: Vec<(Vec<u8>, Vec<u8>)>,
}

static LOGS: Mutex<Vec<(i32, String, String, bool)>> = Mutex::new(Vec::new());

fn logs_containing(needle: &str) -> Vec<(i32, String, String, bool)> {
    LOGS.lock()
        .unwrap()
        .iter()
        .filter(|l| l.2.contains(needle))
        .cloned()
        .collect()
}

fn s(x: nwsgi_str) -> String {
    // SAFETY: the SDK passes strings valid for the call.
    String::from_utf8_lossy(unsafe { x.as_bytes() }).into_owned()
}

unsafe extern "C" fn fake_start_response(
    req: *mut nwsgi_request,
    status: nwsgi_str,
    headers: *const nwsgi_header,
    n: usize,
    exc: *const nwsgi_exc_info,
) -> i32 {
    // SAFETY: the tests pass a `FakeReq` as the request.
    let r = unsafe { &mut *req.cast::<FakeReq>() };
    if r.status.is_some() && exc.is_null() {
        return NWSGI_E_STATE;
    }
    if !exc.is_null() && r.sent {
        return NWSGI_E_HEADERS_SENT;
    }
    let status = s(status);
    if status.len() < 4 || !status.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
        return NWSGI_E_INVALID;
    }
    let list = if n == 0 {
        &[][..]
    } else {
        // SAFETY: the SDK passes `n` headers.
        unsafe { std::slice::from_raw_parts(headers, n) }
    };
    let list: Vec<_> = list.iter().map(|h| (s(h.name), s(h.value))).collect();
    if list
        .iter()
        .any(|(_, v)| v.contains('\r') || v.contains('\n'))
    {
        return NWSGI_E_INVALID;
    }
    r.status = Some(status);
    r.headers = list;
    NWSGI_OK
}

unsafe extern "C" fn fake_write(req: *mut nwsgi_request, data: *const u8, len: usize) -> i32 {
    // SAFETY: as above.
    let r = unsafe { &mut *req.cast::<FakeReq>() };
    if r.status.is_none() {
        return NWSGI_E_STATE;
    }
    r.sent = true;
    // SAFETY: the SDK passes `len` bytes.
    r.written
        .extend_from_slice(unsafe { nwsgi_str { ptr: data, len }.as_bytes() });
    NWSGI_OK
}

unsafe extern "C" fn fake_read(req: *mut nwsgi_request, buf: *mut u8, cap: usize) -> i64 {
    // SAFETY: as above.
    let r = unsafe { &mut *req.cast::<FakeReq>() };
    let rest = &r.input[r.input_pos..];
    if rest.is_empty() {
        return r.input_error.unwrap_or(0);
    }
    let n = rest.len().min(cap).min(3); // short reads on purpose
                                        // SAFETY: `buf` has `cap >= n` writable bytes.
    unsafe { ptr::copy_nonoverlapping(rest.as_ptr(), buf, n) };
    r.input_pos += n;
    n as i64
}

unsafe extern "C" fn fake_log(
    req: *mut nwsgi_request,
    level: i32,
    target: nwsgi_str,
    message: nwsgi_str,
) {
    LOGS.lock()
        .unwrap()
        .push((level, s(target), s(message), !req.is_null()));
}

unsafe extern "C" fn fake_environ_get(
    env: *const nwsgi_environ,
    key: nwsgi_str,
    value: *mut nwsgi_str,
) -> i32 {
    // SAFETY: the tests pass a `FakeEnv`.
    let env = unsafe { &*env.cast::<FakeEnv>() };
    // SAFETY: borrowed for the call.
    let key = unsafe { key.as_bytes() };
    match env.vars.iter().find(|(k, _)| k == key) {
        Some((_, v)) => {
            // SAFETY: `value` is writable.
            unsafe { *value = nwsgi_str::from_bytes(v) };
            1
        }
        None => 0,
    }
}

unsafe extern "C" fn fake_environ_each(
    env: *const nwsgi_environ,
    f: nwsgi_environ_each_cb,
    user: *mut c_void,
) -> i32 {
    // SAFETY: as above.
    let env = unsafe { &*env.cast::<FakeEnv>() };
    for (k, v) in &env.vars {
        let func = f.func.expect("the SDK passes a callback");
        // SAFETY: the SDK's callback with its own `user`.
        let rc = unsafe { func(user, nwsgi_str::from_bytes(k), nwsgi_str::from_bytes(v)) };
        if rc != 0 {
            return rc;
        }
    }
    NWSGI_OK
}

unsafe extern "C" fn fake_start_response_static(
    req: *mut nwsgi_request,
    head: *const nwsgi_response_head,
    exc: *const nwsgi_exc_info,
) -> i32 {
    // SAFETY: the SDK passes a static head and the test's `FakeReq`.
    let (head, r) = unsafe { (&*head, &mut *req.cast::<FakeReq>()) };
    r.static_heads += 1;
    // SAFETY: as above.
    unsafe { fake_start_response(req, head.status, head.headers, head.n_headers, exc) }
}

unsafe extern "C" fn fake_write_last(req: *mut nwsgi_request, data: *const u8, len: usize) -> i32 {
    // SAFETY: as above.
    let rc = unsafe { fake_write(req, data, len) };
    // SAFETY: as above.
    let r = unsafe { &mut *req.cast::<FakeReq>() };
    if rc == NWSGI_OK {
        assert!(!r.wrote_last, "write_last twice");
        r.wrote_last = true;
    }
    rc
}

/// Stands for an ABI 1.2 function on the 1.1 host; calling it is a bug.
unsafe extern "C" fn not_on_1_1_static(
    _: *mut nwsgi_request,
    _: *const nwsgi_response_head,
    _: *const nwsgi_exc_info,
) -> i32 {
    panic!("start_response_static called on a 1.1 host")
}

/// Stands for an ABI 1.2 function on the 1.1 host; calling it is a bug.
unsafe extern "C" fn not_on_1_1_write_last(_: *mut nwsgi_request, _: *const u8, _: usize) -> i32 {
    panic!("write_last called on a 1.1 host")
}

/// A host of ABI 1.1: its table ends before the 1.2 functions (whose slots
/// exist here only because the Rust type has them; the SDK must not call
/// them). Most tests run on this one, through the 1.0 paths.
static API: nwsgi_host_api = nwsgi_host_api {
    struct_size: NWSGI_HOST_API_SIZE_1_0 as u32,
    abi_major: NWSGI_ABI_MAJOR,
    abi_minor: 1,
    start_response: fake_start_response,
    write: fake_write,
    read: fake_read,
    log: fake_log,
    environ_get: fake_environ_get,
    environ_each: fake_environ_each,
    start_response_static: not_on_1_1_static,
    write_last: not_on_1_1_write_last,
};

/// A host of ABI 1.2.
static API_1_2: nwsgi_host_api = nwsgi_host_api {
    struct_size: size_of::<nwsgi_host_api>() as u32,
    abi_major: NWSGI_ABI_MAJOR,
    abi_minor: 2,
    start_response: fake_start_response,
    write: fake_write,
    read: fake_read,
    log: fake_log,
    environ_get: fake_environ_get,
    environ_each: fake_environ_each,
    start_response_static: fake_start_response_static,
    write_last: fake_write_last,
};

/// A host of ABI 1.3: the 1.2 table, and an environ with `raw_path_info`.
static API_1_3: nwsgi_host_api = nwsgi_host_api {
    abi_minor: 3,
    ..API_1_2
};

const HEADERS: [nwsgi_header; 2] = [
    nwsgi_header {
        name: nwsgi_str::from_bytes(b"Host"),
        value: nwsgi_str::from_bytes(b"example"),
    },
    nwsgi_header {
        name: nwsgi_str::from_bytes(b"X-A"),
        value: nwsgi_str::from_bytes(b"1"),
    },
];

fn fake_env(method: &'static str, path: &'static str) -> FakeEnv {
    fake_env_on(&API, method, path)
}

fn fake_env_on(api: &'static nwsgi_host_api, method: &'static str, path: &'static str) -> FakeEnv {
    let st = |x: &'static str| nwsgi_str::from_bytes(x.as_bytes());
    // A host before 1.3 has a smaller environ: the SDK must read nothing
    // past its end (the bytes there say so if it does).
    let (struct_size, raw_path_info) = if api.abi_minor >= 3 {
        (size_of::<nwsgi_environ>(), st("/raw%2Fpath"))
    } else {
        (NWSGI_ENVIRON_SIZE_1_0, st("/past-the-end"))
    };
    FakeEnv {
        env: nwsgi_environ {
            struct_size: struct_size as u32,
            abi_major: NWSGI_ABI_MAJOR,
            abi_minor: api.abi_minor,
            request_method: st(method),
            script_name: nwsgi_str::EMPTY,
            path_info: st(path),
            query_string: st("a=1"),
            content_type: nwsgi_str::EMPTY,
            content_length: st("5"),
            server_name: st("example"),
            server_port: st("8000"),
            server_protocol: st("HTTP/1.1"),
            remote_addr: st("127.0.0.1"),
            remote_port: st("5555"),
            url_scheme: st("http"),
            request_uri: st("/raw?a=1"),
            headers: HEADERS.as_ptr(),
            n_headers: HEADERS.len(),
            multithread: 1,
            multiprocess: 0,
            run_once: 0,
            has_body: 1,
            api,
            raw_path_info,
        },
        vars: vec![
            (b"REQUEST_METHOD".to_vec(), method.as_bytes().to_vec()),
            (b"PATH_INFO".to_vec(), path.as_bytes().to_vec()),
            (b"HTTP_HOST".to_vec(), b"example".to_vec()),
        ],
    }
}

// ---------------------------------------------------------------- test app

static CLOSED: AtomicUsize = AtomicUsize::new(0);

struct DropCounter;
impl Drop for DropCounter {
    fn drop(&mut self) {
        CLOSED.fetch_add(1, Ordering::SeqCst);
    }
}

struct PanicOnDrop;
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("drop-panic-marker");
    }
}

struct TestApp {
    prefix: String,
}

static STATIC_HEAD: crate::Head = crate::Head::new(
    "201 Created",
    &[
        crate::Header::new("Content-Type", "text/plain"),
        crate::Header::new("X-Static", "yes"),
    ],
);
static BAD_STATIC_HEAD: crate::Head =
    crate::Head::new("200 OK", &[crate::Header::new("X-Bad", "a\r\nb")]);

thread_local! {
    static SEEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

impl App for TestApp {
    const NAME: &'static str = "sdk-test";
    const THREAD_SAFE: bool = false;

    fn init(config: &Config) -> Result<Self, String> {
        match config.get("mode") {
            Some("fail") => Err("refused-marker".into()),
            Some("panic") => panic!("init-panic-marker"),
            _ => Ok(TestApp {
                prefix: config.get("prefix").unwrap_or("").to_owned(),
            }),
        }
    }

    fn call(&self, env: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        let text = [("Content-Type", "text/plain")];
        match env.path_info() {
            b"/static" => {
                start.start("200 OK", &text)?;
                Ok(Body::from_static(b"static-body"))
            }
            b"/static-head" => {
                start.start_static(&STATIC_HEAD)?;
                Ok(Body::from_static(b"static-head-body"))
            }
            b"/bad-static-head" => {
                start.start_static(&BAD_STATIC_HEAD)?;
                Ok(Body::from_static(b"never sent"))
            }
            b"/no-start" => Ok(Body::from_static(b"no start")),
            b"/raw-path" => {
                start.start("200 OK", &text)?;
                // environ_get and environ_each reach the host with its own
                // environ (the fake host reads its vars through it).
                assert_eq!(env.get("HTTP_HOST"), Some(&b"example"[..]));
                Ok(Body::from(env.raw_path_info().to_vec()))
            }
            p if p.starts_with(b"/headers/") => {
                let n: usize = std::str::from_utf8(&p[9..])?.parse()?;
                let names: Vec<String> = (0..n).map(|i| format!("X-H{i}")).collect();
                let list: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
                start.start("200 OK", &list)?;
                Ok(Body::empty())
            }
            b"/catch-own" => {
                let caught = std::panic::catch_unwind(|| panic!("caught-marker"));
                assert!(caught.is_err());
                Ok(Body::empty())
            }
            b"/resume" => std::panic::resume_unwind(Box::new("resume-marker")),
            b"/single" => {
                start.start("200 OK", &text)?;
                Ok(Body::from(format!("{}single", self.prefix)))
            }
            b"/iter" => {
                start.start("200 OK", &text)?;
                let guard = DropCounter;
                Ok(Body::from_iter((0..3).map(move |i| {
                    let _ = &guard;
                    format!("c{i}")
                })))
            }
            b"/environ" => {
                let mut seen = Vec::new();
                env.for_each(|k, v| {
                    seen.push(format!(
                        "{}={}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    ))
                });
                let headers: Vec<_> = env.raw_headers().collect();
                assert_eq!(headers, [(&b"Host"[..], &b"example"[..]), (b"X-A", b"1")]);
                assert_eq!(env.method_bytes(), b"GET");
                assert_eq!(env.method(), http::Method::GET);
                assert_eq!(env.request_uri(), b"/raw?a=1");
                assert_eq!(env.uri().path(), "/raw");
                assert_eq!(env.uri().query(), Some("a=1"));
                assert_eq!(env.headers()["host"], "example");
                assert_eq!(env.headers()["x-a"], "1");
                assert_eq!(env.headers().len(), 2);
                assert_eq!(env.query_string(), b"a=1");
                assert_eq!(env.protocol(), b"HTTP/1.1");
                assert!(env.multithread() && !env.multiprocess() && env.has_body());
                assert_eq!(env.get("HTTP_HOST"), Some(&b"example"[..]));
                assert_eq!(env.get("HTTP_NOPE"), None);
                let mut body = Vec::new();
                env.input().read_to_end(&mut body)?;
                seen.push(format!("body={}", String::from_utf8_lossy(&body)));
                env.log(tracing::Level::WARN, "errors-marker");
                tracing::info!(n = 1, "tracing-marker");
                start.start("200 OK", &text)?;
                Ok(Body::from(seen.join("\n")))
            }
            b"/foreach-panic" => {
                env.for_each(|_, _| panic!("foreach-panic-marker"));
                unreachable!()
            }
            b"/bad-input" => {
                let mut body = Vec::new();
                let e = env.input().read_to_end(&mut body).unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                start.start("400 Bad Request", &text)?;
                Ok(Body::from("bad"))
            }
            b"/twice" => {
                start.start("200 OK", &text)?;
                let second = start.start("201 Created", &[]);
                let bad = start.start_with_exc_info("2 x", &[], "m");
                start.start_with_exc_info("500 Oops", &text, "boom")?;
                start.write(b"w1")?;
                let late = start.start_with_exc_info("500 Oops", &text, "late");
                Ok(Body::from(format!("{second:?} {bad:?} {late:?}")))
            }
            b"/write-first" => Err(start.write(b"x").unwrap_err().into()),
            b"/error" => Err("call-error-marker".into()),
            b"/panic" => panic!("call-panic-marker"),
            b"/panic-next" => {
                start.start("200 OK", &text)?;
                let guard = DropCounter;
                Ok(Body::from_iter(std::iter::from_fn(
                    move || -> Option<Vec<u8>> {
                        let _ = &guard;
                        panic!("next-panic-marker")
                    },
                )))
            }
            b"/fail-next" => {
                start.start("200 OK", &text)?;
                Ok(Body::from_fallible_iter([Err::<Vec<u8>, _>(
                    "next-error-marker",
                )]))
            }
            b"/panic-close" => {
                start.start("200 OK", &text)?;
                let guard = PanicOnDrop;
                Ok(Body::from_iter(std::iter::once("x").inspect(move |_| {
                    let _ = &guard;
                })))
            }
            _ => Ok(Body::empty()),
        }
    }

    fn shutdown(&self) {
        SEEN.with(|s| s.borrow_mut().push("shutdown".into()));
    }
}

crate::export_app!(TestApp, sdk_test_app);

// ---------------------------------------------------------------- driver

struct FailSink(RefCell<Option<String>>);

unsafe extern "C" fn fake_fail(ctx: *mut c_void, message: nwsgi_str) {
    // SAFETY: the tests pass a `FailSink`.
    let sink = unsafe { &*ctx.cast::<FailSink>() };
    *sink.0.borrow_mut() = Some(s(message));
}

/// Run `init` with `config`; the app state or the fail message.
fn init_app(config: &[(&'static str, &'static str)]) -> Result<*mut c_void, (i32, Option<String>)> {
    let pairs: Vec<nwsgi_header> = config
        .iter()
        .map(|(k, v)| nwsgi_header {
            name: nwsgi_str::from_bytes(k.as_bytes()),
            value: nwsgi_str::from_bytes(v.as_bytes()),
        })
        .collect();
    let sink = FailSink(RefCell::new(None));
    let args = nwsgi_init_args {
        struct_size: size_of::<nwsgi_init_args>() as u32,
        abi_major: NWSGI_ABI_MAJOR,
        abi_minor: NWSGI_ABI_MINOR,
        api: &API,
        config: pairs.as_ptr(),
        n_config: pairs.len(),
        fail: fake_fail,
        fail_ctx: ptr::from_ref(&sink).cast_mut().cast(),
    };
    let mut state = ptr::null_mut();
    // SAFETY: valid args and out-pointer, as a host passes them.
    let rc = unsafe { (sdk_test_app.init.unwrap())(&args, &mut state) };
    if rc == NWSGI_OK {
        Ok(state)
    } else {
        Err((rc, sink.0.into_inner()))
    }
}

struct Outcome {
    rc: i32,
    req: FakeReq,
    chunks: Vec<(i32, Vec<u8>)>,
}

/// One request through call/next/close like a host would.
fn request(
    state: *mut c_void,
    path: &'static str,
    input: &[u8],
    input_error: Option<i64>,
) -> Outcome {
    request_on(&API, state, path, input, input_error)
}

fn request_on(
    api: &'static nwsgi_host_api,
    state: *mut c_void,
    path: &'static str,
    input: &[u8],
    input_error: Option<i64>,
) -> Outcome {
    let env = fake_env_on(api, "GET", path);
    let mut req = FakeReq {
        input: input.to_vec(),
        input_error,
        ..FakeReq::default()
    };
    let req_ptr = ptr::from_mut(&mut req).cast::<nwsgi_request>();
    let mut body = nwsgi_body::EMPTY;
    // SAFETY: pointers valid as the header requires.
    let rc = unsafe { (sdk_test_app.call.unwrap())(state, &env.env, req_ptr, &mut body) };
    let mut chunks = Vec::new();
    if rc == NWSGI_OK {
        if let Some(next) = body.next {
            loop {
                let mut chunk = nwsgi_str::EMPTY;
                // SAFETY: the body the app returned, not yet closed.
                let code = unsafe { next(body.state, req_ptr, &mut chunk) };
                // SAFETY: borrowed until the next next/close.
                let bytes = unsafe { chunk.as_bytes() }.to_vec();
                chunks.push((code, bytes));
                if code != NWSGI_BODY_MORE {
                    break;
                }
            }
        }
        if let Some(close) = body.close {
            // SAFETY: exactly once, after the last next.
            unsafe { close(body.state, req_ptr) };
        }
    }
    Outcome { rc, req, chunks }
}

/// Only `call`, as a host would make it: the rc and the body handed out
/// (next/close are the caller's business).
fn call_only(state: *mut c_void, path: &'static str, req: &mut FakeReq) -> (i32, nwsgi_body) {
    let env = fake_env("GET", path);
    let mut body = nwsgi_body::EMPTY;
    // SAFETY: pointers valid as the header requires; the environ is not kept
    // past `call` by a body that borrows nothing from it.
    let rc = unsafe {
        (sdk_test_app.call.unwrap())(state, &env.env, ptr::from_mut(req).cast(), &mut body)
    };
    (rc, body)
}

/// One `next` on `body`: the code and the chunk's bytes.
fn next_of(body: &nwsgi_body) -> (i32, Vec<u8>) {
    let mut chunk = nwsgi_str::EMPTY;
    // SAFETY: the body `call` returned, not closed yet (or deliberately
    // closed, which the SDK must refuse).
    let code = unsafe { (body.next.unwrap())(body.state, ptr::null_mut(), &mut chunk) };
    // SAFETY: borrowed until the next next/close.
    (code, unsafe { chunk.as_bytes() }.to_vec())
}

fn close_of(body: &nwsgi_body) {
    // SAFETY: as in `next_of`.
    unsafe { (body.close.unwrap())(body.state, ptr::null_mut()) };
}

/// Whether `state` is one of this thread's open static-body homes.
fn is_home(state: *mut c_void) -> bool {
    GATE.with(|gate| gate.home(state).is_some())
}

fn app() -> *mut c_void {
    init_app(&[("prefix", "p-")]).expect("init succeeds")
}

// ---------------------------------------------------------------- tests

#[test]
fn descriptor_fields() {
    let d = &sdk_test_app;
    assert_eq!(d.magic, NWSGI_MAGIC);
    assert_eq!(
        (d.abi_major, d.abi_minor),
        (NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR)
    );
    assert_eq!(d.struct_size as usize, size_of::<nwsgi_app>());
    assert_eq!(d.flags, 0, "THREAD_SAFE = false");
    // SAFETY: the macro's static NUL-terminated name.
    let name = unsafe { CStr::from_ptr(d.name) };
    assert_eq!(name.to_str().unwrap(), "sdk-test");
    assert!(d.init.is_some() && d.call.is_some() && d.shutdown.is_some());
}

#[test]
fn init_failures_reach_args_fail() {
    let (rc, msg) = init_app(&[("mode", "fail")]).unwrap_err();
    assert_eq!(rc, NWSGI_ERROR);
    assert_eq!(msg.as_deref(), Some("refused-marker"));
    let (rc, msg) = init_app(&[("mode", "panic")]).unwrap_err();
    assert_eq!(rc, NWSGI_ERROR);
    assert!(msg.unwrap().contains("init-panic-marker"));
    assert!(!logs_containing("init-panic-marker").is_empty());
}

#[test]
fn single_chunk_is_last_and_shutdown_runs() {
    let state = app();
    let out = request(state, "/single", b"", None);
    assert_eq!(out.rc, NWSGI_OK);
    assert_eq!(out.req.status.as_deref(), Some("200 OK"));
    assert_eq!(
        out.req.headers,
        [("Content-Type".into(), "text/plain".into())]
    );
    assert_eq!(out.chunks, [(NWSGI_BODY_LAST, b"p-single".to_vec())]);
    // SAFETY: the state from init; no call runs any more.
    unsafe { (sdk_test_app.shutdown.unwrap())(state) };
    SEEN.with(|s| assert_eq!(*s.borrow(), ["shutdown"]));
}

#[test]
fn iterator_more_end_and_close_drops() {
    let state = app();
    let before = CLOSED.load(Ordering::SeqCst);
    let out = request(state, "/iter", b"", None);
    assert_eq!(
        out.chunks,
        [
            (NWSGI_BODY_MORE, b"c0".to_vec()),
            (NWSGI_BODY_MORE, b"c1".to_vec()),
            (NWSGI_BODY_MORE, b"c2".to_vec()),
            (NWSGI_BODY_END, vec![]),
        ]
    );
    assert!(CLOSED.load(Ordering::SeqCst) > before);
}

#[test]
fn environ_input_and_logs() {
    let out = request(app(), "/environ", b"hello", None);
    assert_eq!(out.rc, NWSGI_OK);
    let body = String::from_utf8(out.chunks[0].1.clone()).unwrap();
    assert_eq!(
        body,
        "REQUEST_METHOD=GET\nPATH_INFO=/environ\nHTTP_HOST=example\nbody=hello"
    );
    let errors = logs_containing("errors-marker");
    assert_eq!(errors[0].0, NWSGI_LOG_WARN);
    assert_eq!(errors[0].1, "wsgi.errors");
    assert!(errors[0].3, "wsgi.errors lines carry the request");
    let traced = logs_containing("tracing-marker");
    assert_eq!(traced[0].0, NWSGI_LOG_INFO);
    assert_eq!(traced[0].2, "tracing-marker n=1");
    assert!(traced[0].3, "tracing events in a request carry it");
}

#[test]
fn bad_input_is_an_io_error() {
    let out = request(
        app(),
        "/bad-input",
        b"ab",
        Some(i64::from(NWSGI_E_BAD_BODY)),
    );
    assert_eq!(out.req.status.as_deref(), Some("400 Bad Request"));
}

#[test]
fn start_response_codes() {
    let out = request(app(), "/twice", b"", None);
    assert_eq!(out.rc, NWSGI_OK);
    assert_eq!(out.req.status.as_deref(), Some("500 Oops"));
    assert_eq!(out.req.written, b"w1");
    assert_eq!(
        out.chunks[0].1,
        format!(
            "{:?} {:?} {:?}",
            Err::<(), _>(AbiError::State),
            Err::<(), _>(AbiError::Invalid),
            Err::<(), _>(AbiError::HeadersSent)
        )
        .as_bytes()
    );
    let out = request(app(), "/write-first", b"", None);
    assert_eq!(out.rc, NWSGI_ERROR);
}

#[test]
fn errors_and_panics_become_nwsgi_error() {
    let out = request(app(), "/error", b"", None);
    assert_eq!(out.rc, NWSGI_ERROR);
    assert!(logs_containing("call-error-marker")[0].3);

    let out = request(app(), "/panic", b"", None);
    assert_eq!(out.rc, NWSGI_ERROR);
    let logged = logs_containing("call-panic-marker");
    assert_eq!(logged.len(), 1, "one line per panic");
    assert_eq!(logged[0].0, NWSGI_LOG_ERROR);
    assert!(logged[0].3, "with the request attached");
    assert!(
        logged[0].2.starts_with("sdk-test: call panicked at ")
            && logged[0].2.contains("raw_tests.rs:"),
        "with its location: {logged:?}"
    );

    let out = request(app(), "/foreach-panic", b"", None);
    assert_eq!(out.rc, NWSGI_ERROR);
    assert_eq!(
        logs_containing("foreach-panic-marker").len(),
        1,
        "reported once"
    );
}

#[test]
fn body_faults_are_contained() {
    let before = CLOSED.load(Ordering::SeqCst);
    let out = request(app(), "/panic-next", b"", None);
    assert_eq!(out.rc, NWSGI_OK);
    assert_eq!(out.chunks, [(NWSGI_ERROR, vec![])]);
    let logged = logs_containing("next-panic-marker");
    assert!(
        logged[0].2.starts_with("body next panicked at ") && logged[0].2.contains("raw_tests.rs:"),
        "{logged:?}"
    );
    assert!(
        CLOSED.load(Ordering::SeqCst) > before,
        "closed after a panic"
    );

    let out = request(app(), "/fail-next", b"", None);
    assert_eq!(out.chunks, [(NWSGI_ERROR, vec![])]);
    assert!(!logs_containing("next-error-marker").is_empty());

    let out = request(app(), "/panic-close", b"", None);
    assert_eq!(out.chunks[0], (NWSGI_BODY_MORE, b"x".to_vec()));
    assert!(!logs_containing("drop-panic-marker").is_empty());
}

#[test]
fn empty_body_leaves_the_descriptor_zeroed() {
    let env = fake_env("GET", "/nothing");
    let mut req = FakeReq::default();
    let mut body = nwsgi_body::EMPTY;
    // SAFETY: as a host would call it.
    let rc = unsafe {
        (sdk_test_app.call.unwrap())(app(), &env.env, ptr::from_mut(&mut req).cast(), &mut body)
    };
    assert_eq!(rc, NWSGI_OK);
    assert!(body.state.is_null() && body.next.is_none() && body.close.is_none());
}

#[test]
fn null_pointers_are_refused() {
    let env = fake_env("GET", "/single");
    let mut body = nwsgi_body::EMPTY;
    // SAFETY: deliberately NULL request: the gate must refuse it.
    let rc = unsafe { (sdk_test_app.call.unwrap())(app(), &env.env, ptr::null_mut(), &mut body) };
    assert_eq!(rc, NWSGI_ERROR);
    // SAFETY: NULL args: refused before anything is read.
    let rc = unsafe { (sdk_test_app.init.unwrap())(ptr::null(), ptr::null_mut()) };
    assert_eq!(rc, NWSGI_ERROR);
    let mut chunk = nwsgi_str::EMPTY;
    // SAFETY: NULL state: refused.
    let rc = unsafe { body_next(ptr::null_mut(), ptr::null_mut(), &mut chunk) };
    assert_eq!(rc, NWSGI_ERROR);
}

#[test]
fn a_caught_panic_leaves_no_stale_location() {
    let state = app();
    // The app catches its own panic: the hook records it, nobody reports it.
    let out = request(state, "/catch-own", b"", None);
    assert_eq!(out.rc, NWSGI_OK);
    assert!(logs_containing("caught-marker").is_empty());
    // A panic that skips the hook (resume_unwind) must not be reported at
    // the earlier panic's location.
    let out = request(state, "/resume", b"", None);
    assert_eq!(out.rc, NWSGI_ERROR);
    let logged = logs_containing("resume-marker");
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].2, "sdk-test: call panicked: resume-marker");
}

#[test]
fn static_body_lives_in_a_home_of_this_thread() {
    let state = app();
    let out = request(state, "/static", b"", None);
    assert_eq!(out.rc, NWSGI_OK);
    assert_eq!(out.chunks, [(NWSGI_BODY_LAST, b"static-body".to_vec())]);

    let mut req = FakeReq::default();
    let (rc, body) = call_only(state, "/static", &mut req);
    assert_eq!(rc, NWSGI_OK);
    assert_eq!(req.status.as_deref(), Some("200 OK"));
    assert!(is_home(body.state), "no heap box for a static chunk");
    assert_eq!(next_of(&body), (NWSGI_BODY_LAST, b"static-body".to_vec()));
    assert_eq!(next_of(&body), (NWSGI_BODY_END, vec![]));
    assert_eq!(next_of(&body), (NWSGI_BODY_END, vec![]));
    close_of(&body);
    assert!(!is_home(body.state), "close frees the home");

    // A closed (or foreign) state is refused, not read.
    assert_eq!(next_of(&body).0, NWSGI_ERROR);
    close_of(&body);
    let refused = logs_containing("is not an open static body of this thread");
    assert!(refused
        .iter()
        .any(|l| l.2.starts_with("body next: `state`")));
    assert!(refused
        .iter()
        .any(|l| l.2.starts_with("body close: `state`")));
    let mut chunk = nwsgi_str::EMPTY;
    // SAFETY: deliberately bogus pointers: refused before any use.
    let rc = unsafe { static_next(ptr::null_mut(), ptr::null_mut(), &mut chunk) };
    assert_eq!(rc, NWSGI_ERROR);
    // SAFETY: as above.
    let rc = unsafe { static_next(body.state, ptr::null_mut(), ptr::null_mut()) };
    assert_eq!(rc, NWSGI_ERROR);
}

#[test]
fn static_bodies_beyond_the_homes_are_boxed() {
    let state = app();
    let mut reqs: Vec<FakeReq> = (0..STATIC_BODIES + 2).map(|_| FakeReq::default()).collect();
    let bodies: Vec<nwsgi_body> = reqs
        .iter_mut()
        .map(|req| call_only(state, "/static", req))
        .map(|(rc, body)| {
            assert_eq!(rc, NWSGI_OK);
            body
        })
        .collect();
    let homes = bodies.iter().filter(|b| is_home(b.state)).count();
    assert_eq!(homes, STATIC_BODIES, "every home used, then boxes");
    // Interleaved, as a host juggling requests on one thread might.
    for body in bodies.iter().rev() {
        assert_eq!(next_of(body), (NWSGI_BODY_LAST, b"static-body".to_vec()));
    }
    for body in &bodies {
        assert_eq!(next_of(body), (NWSGI_BODY_END, vec![]));
        close_of(body);
    }
    assert!(bodies.iter().all(|b| !is_home(b.state)));
    // The homes are free again.
    let mut req = FakeReq::default();
    let (_, body) = call_only(state, "/static", &mut req);
    assert!(is_home(body.state));
    close_of(&body);
}

#[test]
fn static_body_is_refused_on_another_thread() {
    let state = app();
    let mut req = FakeReq::default();
    let (_, body) = call_only(state, "/static", &mut req);
    let (addr, next, close) = (body.state as usize, body.next.unwrap(), body.close.unwrap());
    std::thread::spawn(move || {
        let mut chunk = nwsgi_str::EMPTY;
        // SAFETY: a state of another thread: the SDK must refuse it.
        let rc = unsafe { next(addr as *mut c_void, ptr::null_mut(), &mut chunk) };
        assert_eq!(rc, NWSGI_ERROR);
        // SAFETY: as above.
        unsafe { close(addr as *mut c_void, ptr::null_mut()) };
    })
    .join()
    .unwrap();
    // Untouched on its own thread.
    assert_eq!(next_of(&body), (NWSGI_BODY_LAST, b"static-body".to_vec()));
    close_of(&body);
    assert!(!is_home(body.state));
}

#[test]
fn static_bodies_on_many_threads() {
    let state = app() as usize;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for i in 0..50 {
                    let (path, want) = if i % 2 == 0 {
                        ("/static", &b"static-body"[..])
                    } else {
                        ("/single", &b"p-single"[..])
                    };
                    let out = request(state as *mut c_void, path, b"", None);
                    assert_eq!(out.chunks, [(NWSGI_BODY_LAST, want.to_vec())]);
                }
                GATE.with(|gate| gate.statics.iter().all(|h| h.get().is_none()))
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap(), "every home closed");
    }
}

#[test]
fn headers_on_the_stack_and_beyond() {
    for n in [0, INLINE_HEADERS, INLINE_HEADERS + 1, 40] {
        let path: &'static str = Box::leak(format!("/headers/{n}").into_boxed_str());
        let out = request(app(), path, b"", None);
        assert_eq!(out.rc, NWSGI_OK);
        let want: Vec<(String, String)> = (0..n).map(|i| (format!("X-H{i}"), "v".into())).collect();
        assert_eq!(out.req.headers, want, "{n} headers");
    }
}

// ---------------------------------------------------------------- ABI 1.2

#[test]
fn on_a_1_2_host_a_whole_body_goes_by_write_last() {
    let state = app();
    for (path, body) in [("/static", "static-body"), ("/single", "p-single")] {
        let out = request_on(&API_1_2, state, path, b"", None);
        assert_eq!(out.rc, NWSGI_OK, "{path}");
        assert!(out.req.wrote_last, "{path}: write_last used");
        assert_eq!(out.req.written, body.as_bytes(), "{path}");
        assert!(out.chunks.is_empty(), "{path}: no iterator handed out");
        assert_eq!(out.req.status.as_deref(), Some("200 OK"));
    }
    // A streamed body still goes through the iterator.
    let out = request_on(&API_1_2, state, "/iter", b"", None);
    assert!(!out.req.wrote_last);
    assert_eq!(out.chunks.len(), 4);
}

#[test]
fn raw_path_info_is_the_1_3_field_or_the_request_uri_path_before() {
    let state = app();
    let on_1_3 = request_on(&API_1_3, state, "/raw-path", b"", None);
    assert_eq!(on_1_3.rc, NWSGI_OK);
    assert_eq!(on_1_3.req.written, b"/raw%2Fpath");
    // Older hosts: a 1.0-sized environ, read without going past its end;
    // the path comes from REQUEST_URI ("/raw?a=1").
    for api in [&API, &API_1_2] {
        let out = request_on(api, state, "/raw-path", b"", None);
        assert_eq!(out.rc, NWSGI_OK, "minor {}", api.abi_minor);
        let body: Vec<u8> = out.chunks.iter().flat_map(|(_, b)| b.clone()).collect();
        let body = [out.req.written.clone(), body].concat();
        assert_eq!(body, b"/raw", "minor {}", api.abi_minor);
    }
}

#[test]
fn on_a_1_1_host_a_whole_body_goes_through_the_iterator() {
    let state = app();
    let out = request(state, "/single", b"", None);
    assert!(!out.req.wrote_last);
    assert_eq!(out.chunks, vec![(NWSGI_BODY_LAST, b"p-single".to_vec())]);
}

#[test]
fn without_start_the_body_goes_through_the_iterator() {
    // Where the host notices the missing start_response, as before 1.2.
    let state = app();
    let mut req = FakeReq::default();
    let env = fake_env_on(&API_1_2, "GET", "/no-start");
    let mut body = nwsgi_body::EMPTY;
    // SAFETY: pointers valid as the header requires.
    let rc = unsafe {
        (sdk_test_app.call.unwrap())(state, &env.env, ptr::from_mut(&mut req).cast(), &mut body)
    };
    assert_eq!(rc, NWSGI_OK);
    assert!(!req.wrote_last);
    assert_eq!(next_of(&body), (NWSGI_BODY_LAST, b"no start".to_vec()));
    close_of(&body);
}

#[test]
fn start_static_uses_the_1_2_call_and_falls_back_on_1_1() {
    let state = app();
    let expect_headers = vec![
        ("Content-Type".to_owned(), "text/plain".to_owned()),
        ("X-Static".to_owned(), "yes".to_owned()),
    ];
    let on_1_2 = request_on(&API_1_2, state, "/static-head", b"", None);
    assert_eq!(on_1_2.req.static_heads, 1);
    assert_eq!(on_1_2.req.status.as_deref(), Some("201 Created"));
    assert_eq!(on_1_2.req.headers, expect_headers);
    assert_eq!(on_1_2.req.written, b"static-head-body");

    let on_1_1 = request(state, "/static-head", b"", None);
    assert_eq!(on_1_1.req.static_heads, 0);
    assert_eq!(on_1_1.req.status.as_deref(), Some("201 Created"));
    assert_eq!(on_1_1.req.headers, expect_headers);
    assert_eq!(
        on_1_1.chunks,
        vec![(NWSGI_BODY_LAST, b"static-head-body".to_vec())]
    );

    // A refused static head is the app's error, on either host.
    for api in [&API_1_2, &API] {
        let out = request_on(api, state, "/bad-static-head", b"", None);
        assert_eq!(out.rc, NWSGI_ERROR);
        assert!(out.req.written.is_empty());
    }
}

#[test]
fn a_table_smaller_than_1_0_is_refused() {
    let mut small = FakeReq::default();
    // Never remembered, so it cannot disturb the other tests' tables.
    static SMALL: nwsgi_host_api = nwsgi_host_api {
        struct_size: NWSGI_HOST_API_SIZE_1_0 as u32 - 8,
        ..API
    };
    let env = fake_env_on(&SMALL, "GET", "/static");
    let mut body = nwsgi_body::EMPTY;
    let state = app();
    // SAFETY: pointers valid as the header requires.
    let rc = unsafe {
        (sdk_test_app.call.unwrap())(state, &env.env, ptr::from_mut(&mut small).cast(), &mut body)
    };
    assert_eq!(rc, NWSGI_E_INVALID);
    assert!(small.status.is_none());
    assert!(!logs_containing("expected at least").is_empty());
}
