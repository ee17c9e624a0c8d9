//! Run an application in-process, without a host: a [`Client`] plays the
//! host's part (the C ABI's host API, implemented here in Rust) and turns an
//! [`http::Request`] into the [`http::Response`] the app gives, so handlers
//! are unit-testable with `cargo test`.
//!
//! ```
//! use abi::http::{Request, StatusCode};
//! use abi::testing::Client;
//! use abi::{App, Body, Config, Environ, Error, StartResponse};
//!
//! struct Greeter;
//!
//! impl App for Greeter {
//!     fn init(_: &Config) -> Result<Self, String> {
//!         Ok(Greeter)
//!     }
//!
//!     fn call(&self, env: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
//!         if env.uri().path() != "/hello" {
//!             return Err(Error::status(StatusCode::NOT_FOUND));
//!         }
//!         let who = env.headers().get("x-name").and_then(|v| v.to_str().ok());
//!         let text = format!("Hello, {}!", who.unwrap_or("World"));
//!         start.status(StatusCode::OK).header("content-type", "text/plain").start()?;
//!         Ok(Body::from(text))
//!     }
//! }
//!
//! let client = Client::new(Greeter);
//! let request = Request::get("/hello").header("x-name", "Ann").body(()).unwrap();
//! let response = client.call(request);
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.headers()["content-type"], "text/plain");
//! assert_eq!(response.body(), b"Hello, Ann!");
//!
//! let missing = client.call(Request::get("/nope").body(()).unwrap());
//! assert_eq!(missing.status(), StatusCode::NOT_FOUND);
//! ```
//!
//! What the client does as a host would:
//! * the environ follows PEP 3333 and the header: `REQUEST_METHOD`,
//!   `SCRIPT_NAME` (empty), `PATH_INFO` (percent-decoded), `QUERY_STRING`,
//!   `CONTENT_TYPE`/`CONTENT_LENGTH` (when the request has them; the length
//!   of a non-empty body otherwise), `SERVER_NAME`/`SERVER_PORT` (from the
//!   URI's authority, else `Host`, else `localhost:80`), `SERVER_PROTOCOL`,
//!   `REMOTE_ADDR` `127.0.0.1`, `REQUEST_URI`, `REQUEST_ID` (`test-N`),
//!   `wsgi.url_scheme` and one `HTTP_*` per header name (repeats joined
//!   with `, `, cookies with `; `; names with `_` left out, as the host
//!   does by default);
//! * it checks the head like the host: a status outside 200..=599, a bad
//!   header or a hop-by-hop one gives `AbiError::Invalid`;
//! * when the app fails before anything is sent, it answers the host's
//!   `500 Internal Server Error`; when it fails after, the response so far
//!   is returned with an [`Aborted`] extension (the host would cut the
//!   connection);
//! * log lines (tracing events, `wsgi.errors`, the SDK's own) of the
//!   request are returned in a [`Logs`] extension; lines outside a request
//!   go to stderr.
//!
//! The app runs on the calling thread, like a host's worker thread.

use std::ffi::c_void;
use std::fmt;
use std::mem::size_of;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use tracing::Level;

use super::app::App;
use super::config::Config;
use super::export::descriptor;
use crate::ffi::{
    nwsgi_app, nwsgi_body, nwsgi_call_fn, nwsgi_environ, nwsgi_environ_each_cb, nwsgi_exc_info,
    nwsgi_header, nwsgi_host_api, nwsgi_init_args, nwsgi_request, nwsgi_response_head, nwsgi_str,
    NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR, NWSGI_APP_SIZE_1_0, NWSGI_BODY_END, NWSGI_BODY_LAST,
    NWSGI_BODY_MORE, NWSGI_E_HEADERS_SENT, NWSGI_E_INVALID, NWSGI_E_STATE, NWSGI_LOG_DEBUG,
    NWSGI_LOG_ERROR, NWSGI_LOG_INFO, NWSGI_LOG_WARN, NWSGI_MAGIC, NWSGI_OK,
};

/// An application loaded in-process, answering [`http::Request`]s.
///
/// Dropping the client shuts the application down (`App::shutdown`, then
/// the app is dropped), as a retiring worker does.
pub struct Client {
    call: nwsgi_call_fn,
    shutdown: Option<unsafe extern "C" fn(*mut c_void)>,
    /// The app's state, as its `init` (or [`Client::new`]) made it; owned
    /// by this client until `shutdown` gives it back.
    state: *mut c_void,
}

impl Client {
    /// A client for an app value built by the test (e.g. with a fake
    /// database), skipping [`App::init`]. The SDK's log bridge and panic
    /// hook are installed as `init` would.
    pub fn new<A: App>(app: A) -> Client {
        super::log::install_subscriber();
        super::raw::install_panic_hook();
        Client {
            call: super::raw::call::<A>,
            shutdown: Some(super::raw::shutdown::<A>),
            state: Box::into_raw(Box::new(app)).cast(),
        }
    }

    /// A client for `A` started as the host starts it: through `init` with
    /// `config` (the `--app-arg` pairs). `Err` is the message `init` failed
    /// with.
    pub fn init<A: App>(config: &Config) -> Result<Client, String> {
        Client::from_descriptor(&descriptor::<A>(ptr::null()), config)
    }

    /// A client for any exported descriptor (what `export_app!` and other
    /// exporters define: `Client::from_descriptor(&app, ...)` on the
    /// plugin's own `static app`), started through its `init`.
    pub fn from_descriptor(app: &nwsgi_app, config: &Config) -> Result<Client, String> {
        if app.magic != NWSGI_MAGIC || app.abi_major != NWSGI_ABI_MAJOR {
            return Err("not an NWSGI 1.x descriptor".into());
        }
        if (app.struct_size as usize) < NWSGI_APP_SIZE_1_0 {
            return Err(format!("descriptor is {} bytes", app.struct_size));
        }
        let (Some(init), Some(call)) = (app.init, app.call) else {
            return Err("descriptor without init or call".into());
        };
        let pairs: Vec<nwsgi_header> = config
            .iter()
            .map(|(k, v)| nwsgi_header {
                name: nwsgi_str::from_bytes(k.as_bytes()),
                value: nwsgi_str::from_bytes(v.as_bytes()),
            })
            .collect();
        let mut failure: Option<String> = None;
        let args = nwsgi_init_args {
            struct_size: size_of::<nwsgi_init_args>() as u32,
            abi_major: NWSGI_ABI_MAJOR,
            abi_minor: NWSGI_ABI_MINOR,
            api: &TEST_API,
            config: pairs.as_ptr(),
            n_config: pairs.len(),
            fail: init_failed,
            fail_ctx: ptr::from_mut(&mut failure).cast(),
        };
        let mut state = ptr::null_mut();
        // SAFETY: `args`, its config and `failure` outlive the call; `state`
        // is writable; `init` is the descriptor's, called as the header says.
        let rc = unsafe { init(&args, &mut state) };
        if rc != NWSGI_OK {
            return Err(failure.unwrap_or_else(|| format!("init returned {rc}")));
        }
        Ok(Client {
            call,
            shutdown: app.shutdown,
            state,
        })
    }

    /// One request, answered as the host would (see the module docs). The
    /// body is anything that converts to bytes (`()`, `&str`, `String`,
    /// `Vec<u8>`, ...).
    pub fn call<B: IntoBytes>(&self, request: Request<B>) -> Response<Vec<u8>> {
        let (parts, body) = request.into_parts();
        let is_head = parts.method == http::Method::HEAD;
        let env = TestEnv::new(&parts, body.into_bytes());
        let mut exchange = Exchange {
            input: env.input.clone(),
            ..Exchange::default()
        };
        let req = ptr::from_mut(&mut exchange).cast::<nwsgi_request>();
        let mut body = nwsgi_body::EMPTY;
        // SAFETY: the environ (and every string it points to) and the
        // exchange outlive the call and the body's next/close below; `state`
        // is what init made; `body` is a zeroed descriptor for the app to
        // fill. `exchange` is only reached through `req` until the body is
        // closed.
        let rc = unsafe { (self.call)(self.state, &env.env, req, &mut body) };
        if rc == NWSGI_OK {
            // SAFETY: the body `call` handed out, drained then closed once.
            unsafe { drain(&body, req) };
        } else {
            // SAFETY: as above: the exchange, through `req` only.
            unsafe { (*req.cast::<Exchange>()).failed = true };
        }
        exchange.into_response(is_head)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown {
            // SAFETY: the state `init` made; no call runs (`&mut self`) or
            // will run again.
            unsafe { shutdown(self.state) };
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// A request body for [`Client::call`].
pub trait IntoBytes {
    fn into_bytes(self) -> Vec<u8>;
}

impl IntoBytes for () {
    fn into_bytes(self) -> Vec<u8> {
        Vec::new()
    }
}

impl IntoBytes for Vec<u8> {
    fn into_bytes(self) -> Vec<u8> {
        self
    }
}

impl IntoBytes for String {
    fn into_bytes(self) -> Vec<u8> {
        String::into_bytes(self)
    }
}

impl IntoBytes for &str {
    fn into_bytes(self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl IntoBytes for &[u8] {
    fn into_bytes(self) -> Vec<u8> {
        self.to_vec()
    }
}

impl<const N: usize> IntoBytes for &[u8; N] {
    fn into_bytes(self) -> Vec<u8> {
        self.to_vec()
    }
}

/// Response extension: the app failed after its head was sent; the host
/// would have cut the connection, so the body is truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aborted;

/// Response extension: the lines logged during the request, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Logs(pub Vec<LogLine>);

impl Logs {
    /// Whether a line's message contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.0.iter().any(|l| l.message.contains(needle))
    }
}

/// One log line of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    /// `wsgi.errors`, the `tracing` target, or `nwsgi_sdk` for the SDK's own.
    pub target: String,
    pub message: String,
}

// ------------------------------------------------------------------------
// The request, as this host keeps it
// ------------------------------------------------------------------------

/// The environ and everything its strings point into. `env` comes first
/// (`repr(C)`), so the `*const nwsgi_environ` the app passes back to
/// `environ_get`/`environ_each` is also a `*const TestEnv`. The byte
/// buffers are heap-allocated and never changed after `new`, so the
/// pointers stay valid when the struct moves.
#[repr(C)]
struct TestEnv {
    env: nwsgi_environ,
    /// The environ variables `environ_get`/`environ_each` serve, in order.
    vars: OwnedPairs,
    /// Kept for the pointers in `env`: the raw header list
    /// (`env.headers`) and the names and values it points into.
    _headers: (Vec<nwsgi_header>, OwnedPairs),
    input: Vec<u8>,
}

/// Owned `(name, value)` byte strings.
type OwnedPairs = Vec<(Vec<u8>, Vec<u8>)>;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

impl TestEnv {
    fn new(parts: &http::request::Parts, input: Vec<u8>) -> Box<TestEnv> {
        let uri = &parts.uri;
        let header = |name: HeaderName| parts.headers.get(name).map(|v| v.as_bytes().to_vec());
        let host = uri
            .authority()
            .map(|a| a.as_str().as_bytes().to_vec())
            .or_else(|| header(http::header::HOST));
        let scheme = uri.scheme_str().unwrap_or("http");
        let default_port = if scheme == "https" { "443" } else { "80" };
        let (server_name, server_port) = match host {
            Some(host) => split_host(&host, default_port),
            None => (b"localhost".to_vec(), default_port.as_bytes().to_vec()),
        };
        let target = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes()
            .to_vec();
        let content_length = header(http::header::CONTENT_LENGTH)
            .or_else(|| (!input.is_empty()).then(|| input.len().to_string().into_bytes()));
        let protocol: &[u8] = if parts.version == Version::HTTP_10 {
            b"HTTP/1.0"
        } else {
            b"HTTP/1.1"
        };
        let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
        let mut vars: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"REQUEST_METHOD".to_vec(), parts.method.as_str().into()),
            (b"SCRIPT_NAME".to_vec(), Vec::new()),
            (b"PATH_INFO".to_vec(), percent_decode(uri.path().as_bytes())),
            (
                b"QUERY_STRING".to_vec(),
                uri.query().unwrap_or("").as_bytes().to_vec(),
            ),
        ];
        if let Some(ct) = header(http::header::CONTENT_TYPE) {
            vars.push((b"CONTENT_TYPE".to_vec(), ct));
        }
        if let Some(cl) = &content_length {
            vars.push((b"CONTENT_LENGTH".to_vec(), cl.clone()));
        }
        vars.extend([
            (b"SERVER_NAME".to_vec(), server_name),
            (b"SERVER_PORT".to_vec(), server_port),
            (b"SERVER_PROTOCOL".to_vec(), protocol.to_vec()),
            (b"REMOTE_ADDR".to_vec(), b"127.0.0.1".to_vec()),
            (b"REQUEST_URI".to_vec(), target),
            (b"RAW_PATH_INFO".to_vec(), uri.path().as_bytes().to_vec()),
            (b"wsgi.url_scheme".to_vec(), scheme.as_bytes().to_vec()),
            (b"REQUEST_ID".to_vec(), format!("test-{id}").into_bytes()),
        ]);
        for name in parts.headers.keys() {
            let lower = name.as_str();
            if lower.contains('_') || lower == "content-type" || lower == "content-length" {
                continue;
            }
            let sep: &[u8] = if name == http::header::COOKIE {
                b"; "
            } else {
                b", "
            };
            let value = parts
                .headers
                .get_all(name)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect::<Vec<_>>()
                .join(sep);
            let key = format!("HTTP_{}", lower.to_ascii_uppercase().replace('-', "_"));
            vars.push((key.into_bytes(), value));
        }
        let header_bytes: Vec<(Vec<u8>, Vec<u8>)> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let headers: Vec<nwsgi_header> = header_bytes
            .iter()
            .map(|(n, v)| nwsgi_header {
                name: nwsgi_str::from_bytes(n),
                value: nwsgi_str::from_bytes(v),
            })
            .collect();
        let var = |key: &[u8]| {
            vars.iter()
                .find(|(k, _)| k == key)
                .map_or(nwsgi_str::EMPTY, |(_, v)| nwsgi_str::from_bytes(v))
        };
        let env = nwsgi_environ {
            struct_size: size_of::<nwsgi_environ>() as u32,
            abi_major: NWSGI_ABI_MAJOR,
            abi_minor: NWSGI_ABI_MINOR,
            request_method: var(b"REQUEST_METHOD"),
            script_name: var(b"SCRIPT_NAME"),
            path_info: var(b"PATH_INFO"),
            query_string: var(b"QUERY_STRING"),
            content_type: var(b"CONTENT_TYPE"),
            content_length: var(b"CONTENT_LENGTH"),
            server_name: var(b"SERVER_NAME"),
            server_port: var(b"SERVER_PORT"),
            server_protocol: var(b"SERVER_PROTOCOL"),
            remote_addr: var(b"REMOTE_ADDR"),
            remote_port: nwsgi_str::EMPTY,
            url_scheme: var(b"wsgi.url_scheme"),
            request_uri: var(b"REQUEST_URI"),
            headers: headers.as_ptr(),
            n_headers: headers.len(),
            multithread: 1,
            multiprocess: 0,
            run_once: 0,
            has_body: u8::from(!input.is_empty()),
            api: &TEST_API,
            raw_path_info: var(b"RAW_PATH_INFO"),
        };
        Box::new(TestEnv {
            env,
            vars,
            _headers: (headers, header_bytes),
            input,
        })
    }
}

/// `host[:port]` (or `[v6]:port`) as SERVER_NAME and SERVER_PORT.
fn split_host(host: &[u8], default_port: &str) -> (Vec<u8>, Vec<u8>) {
    let port_at = match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host[i..].contains(&b']') => Some(i),
        _ => None,
    };
    match port_at {
        Some(i) => (host[..i].to_vec(), host[i + 1..].to_vec()),
        None => (host.to_vec(), default_port.as_bytes().to_vec()),
    }
}

/// `%XX` decoded (a `%` not followed by two hex digits is kept), as the
/// host decodes PATH_INFO.
fn percent_decode(path: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(h), Some(l)) = (hex(path[i + 1]), hex(path[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(path[i]);
        i += 1;
    }
    out
}

/// What the host records of one request while the app runs.
#[derive(Default)]
struct Exchange {
    input: Vec<u8>,
    read: usize,
    status: Option<StatusCode>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The head went out (a non-empty write or chunk after start).
    sent: bool,
    body: Vec<u8>,
    /// The app returned or yielded an error.
    failed: bool,
    logs: Vec<LogLine>,
}

impl Exchange {
    /// Record a body chunk; `false` (and failed) if no head was started.
    fn send(&mut self, bytes: &[u8]) -> bool {
        if self.status.is_none() {
            self.failed = true;
            return false;
        }
        self.sent |= !bytes.is_empty();
        self.body.extend_from_slice(bytes);
        true
    }

    fn into_response(self, is_head: bool) -> Response<Vec<u8>> {
        let mut response = match (self.status, self.failed) {
            (Some(status), failed) if !failed || self.sent => {
                let mut response = Response::new(if is_head { Vec::new() } else { self.body });
                *response.status_mut() = status;
                for (name, value) in self.headers {
                    response.headers_mut().append(name, value);
                }
                if failed {
                    response.extensions_mut().insert(Aborted);
                }
                response
            }
            // The host's own answer: nothing (valid) was sent.
            _ => {
                let body = if is_head {
                    Vec::new()
                } else {
                    b"500 Internal Server Error\n".to_vec()
                };
                let mut response = Response::new(body);
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain"),
                );
                response
            }
        };
        response.extensions_mut().insert(Logs(self.logs));
        response
    }
}

/// Run the body to its end (or error), then close it.
///
/// # Safety
/// `body` is what `call` returned for the request `req` (an [`Exchange`]),
/// not yet closed.
unsafe fn drain(body: &nwsgi_body, req: *mut nwsgi_request) {
    let Some(next) = body.next else {
        return;
    };
    loop {
        let mut chunk = nwsgi_str::EMPTY;
        // SAFETY: the body is open (contract); `chunk` is writable.
        let code = unsafe { next(body.state, req, &mut chunk) };
        // SAFETY: the exchange, reached through `req` only.
        let exchange = unsafe { &mut *req.cast::<Exchange>() };
        if code < 0 {
            exchange.failed = true;
            break;
        }
        // SAFETY: the chunk is borrowed until the next next/close.
        let bytes = unsafe { chunk.try_as_bytes() }.unwrap_or(&[]);
        if !exchange.send(bytes) || code == NWSGI_BODY_LAST || code == NWSGI_BODY_END {
            break;
        }
        if code != NWSGI_BODY_MORE {
            exchange.failed = true;
            break;
        }
    }
    if let Some(close) = body.close {
        // SAFETY: exactly once, after the last next.
        unsafe { close(body.state, req) };
    }
}

// ------------------------------------------------------------------------
// The host API
// ------------------------------------------------------------------------

/// This host's function table (ABI 1.2, all functions).
static TEST_API: nwsgi_host_api = nwsgi_host_api {
    struct_size: size_of::<nwsgi_host_api>() as u32,
    abi_major: NWSGI_ABI_MAJOR,
    abi_minor: NWSGI_ABI_MINOR,
    start_response: test_start_response,
    write: test_write,
    read: test_read,
    log: test_log,
    environ_get: test_environ_get,
    environ_each: test_environ_each,
    start_response_static: test_start_response_static,
    write_last: test_write,
};

/// `args->fail`: keep the message.
unsafe extern "C" fn init_failed(ctx: *mut c_void, message: nwsgi_str) {
    // SAFETY: `from_descriptor` passes its `Option<String>` as the context,
    // alive during init; the message is borrowed for the call.
    let (slot, text) = unsafe { (&mut *ctx.cast::<Option<String>>(), message.try_as_bytes()) };
    *slot = Some(String::from_utf8_lossy(text.unwrap_or(b"")).into_owned());
}

/// The request's exchange.
///
/// # Safety
/// `req` is the `Exchange` pointer [`Client::call`] passed to the app, and
/// the app calls on the thread running it (the header's rule).
unsafe fn exchange<'a>(req: *mut nwsgi_request) -> Option<&'a mut Exchange> {
    // SAFETY: this function's contract (NULL is refused).
    unsafe { req.cast::<Exchange>().as_mut() }
}

/// The bytes of a string the app passed, if readable.
///
/// # Safety
/// `s` is borrowed for the call, as the header says of every argument.
unsafe fn bytes<'a>(s: nwsgi_str) -> Option<&'a [u8]> {
    // SAFETY: this function's contract.
    unsafe { s.try_as_bytes() }
}

/// The head as the host checks it: "NNN reason" with NNN in 200..=599,
/// valid header names and values, no hop-by-hop header.
fn check_head(
    status: &[u8],
    headers: &[(&[u8], &[u8])],
) -> Option<(StatusCode, Vec<(HeaderName, HeaderValue)>)> {
    let [_, _, _, b' ', reason @ ..] = status else {
        return None;
    };
    if reason.iter().any(|&b| b < b' ' && b != b'\t' || b == 0x7f) {
        return None;
    }
    let code = StatusCode::from_bytes(&status[..3]).ok()?;
    if !(200..=599).contains(&code.as_u16()) {
        return None;
    }
    const HOP_BY_HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    let mut list = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name).ok()?;
        let value = HeaderValue::from_bytes(value).ok()?;
        if HOP_BY_HOP.contains(&name.as_str()) {
            return None;
        }
        list.push((name, value));
    }
    Some((code, list))
}

unsafe extern "C" fn test_start_response(
    req: *mut nwsgi_request,
    status: nwsgi_str,
    headers: *const nwsgi_header,
    n_headers: usize,
    exc_info: *const nwsgi_exc_info,
) -> i32 {
    // SAFETY: the app passes its request and arguments borrowed for the call.
    let Some(ex) = (unsafe { exchange(req) }) else {
        return NWSGI_E_INVALID;
    };
    let list: &[nwsgi_header] = if n_headers == 0 {
        &[]
    } else if headers.is_null() {
        return NWSGI_E_INVALID;
    } else {
        // SAFETY: `n_headers` headers at `headers`, borrowed for the call.
        unsafe { std::slice::from_raw_parts(headers, n_headers) }
    };
    let mut pairs = Vec::with_capacity(list.len());
    for h in list {
        // SAFETY: borrowed for the call.
        match unsafe { (bytes(h.name), bytes(h.value)) } {
            (Some(n), Some(v)) => pairs.push((n, v)),
            _ => return NWSGI_E_INVALID,
        }
    }
    if exc_info.is_null() {
        if ex.status.is_some() {
            return NWSGI_E_STATE;
        }
    } else {
        if ex.sent {
            ex.failed = true;
            return NWSGI_E_HEADERS_SENT;
        }
        // SAFETY: non-NULL exc_info, borrowed for the call.
        let message = unsafe { bytes((*exc_info).message) }.unwrap_or(b"");
        ex.logs.push(LogLine {
            level: Level::ERROR,
            target: "host".into(),
            message: format!(
                "app replaced its response (exc_info): {}",
                String::from_utf8_lossy(message)
            ),
        });
    }
    // SAFETY: borrowed for the call.
    let status = unsafe { bytes(status) }.unwrap_or(b"");
    match check_head(status, &pairs) {
        Some((code, headers)) => {
            ex.status = Some(code);
            ex.headers = headers;
            NWSGI_OK
        }
        None => {
            // The host's answer to an invalid head is a 500.
            ex.status = None;
            ex.failed = true;
            NWSGI_E_INVALID
        }
    }
}

unsafe extern "C" fn test_start_response_static(
    req: *mut nwsgi_request,
    head: *const nwsgi_response_head,
    exc_info: *const nwsgi_exc_info,
) -> i32 {
    if head.is_null() {
        return NWSGI_E_INVALID;
    }
    // SAFETY: a static head (header), its parts valid for the call.
    let head = unsafe { &*head };
    // SAFETY: the same arguments, unpacked.
    unsafe { test_start_response(req, head.status, head.headers, head.n_headers, exc_info) }
}

/// `write` (and `write_last`: the same here, the body is collected).
unsafe extern "C" fn test_write(req: *mut nwsgi_request, data: *const u8, len: usize) -> i32 {
    // SAFETY: the app's request; `len` bytes borrowed for the call.
    let (ex, data) = unsafe { (exchange(req), bytes(nwsgi_str { ptr: data, len })) };
    let (Some(ex), Some(data)) = (ex, data) else {
        return NWSGI_E_INVALID;
    };
    if ex.send(data) {
        NWSGI_OK
    } else {
        NWSGI_E_STATE
    }
}

unsafe extern "C" fn test_read(req: *mut nwsgi_request, buf: *mut u8, cap: usize) -> i64 {
    // SAFETY: the app's request.
    let Some(ex) = (unsafe { exchange(req) }) else {
        return i64::from(NWSGI_E_INVALID);
    };
    if cap == 0 {
        return 0;
    }
    if buf.is_null() {
        return i64::from(NWSGI_E_INVALID);
    }
    let rest = &ex.input[ex.read..];
    let n = rest.len().min(cap);
    // SAFETY: `buf` has `cap >= n` writable bytes, not overlapping ours.
    unsafe { ptr::copy_nonoverlapping(rest.as_ptr(), buf, n) };
    ex.read += n;
    n as i64
}

unsafe extern "C" fn test_log(
    req: *mut nwsgi_request,
    level: i32,
    target: nwsgi_str,
    message: nwsgi_str,
) {
    // SAFETY: borrowed for the call.
    let (target, message) = unsafe { (bytes(target), bytes(message)) };
    let line = LogLine {
        level: match level {
            i32::MIN..=NWSGI_LOG_ERROR => Level::ERROR,
            NWSGI_LOG_WARN => Level::WARN,
            NWSGI_LOG_INFO => Level::INFO,
            NWSGI_LOG_DEBUG => Level::DEBUG,
            _ => Level::TRACE,
        },
        target: String::from_utf8_lossy(target.unwrap_or(b"")).into_owned(),
        message: String::from_utf8_lossy(message.unwrap_or(b"")).into_owned(),
    };
    // SAFETY: NULL, or the app's request on this thread.
    match unsafe { exchange(req) } {
        Some(ex) => ex.logs.push(line),
        None => eprintln!("[{}] {}: {}", line.level, line.target, line.message),
    }
}

unsafe extern "C" fn test_environ_get(
    env: *const nwsgi_environ,
    key: nwsgi_str,
    value: *mut nwsgi_str,
) -> i32 {
    if env.is_null() || value.is_null() {
        return 0;
    }
    // SAFETY: the environ `Client::call` built (a `TestEnv`, env first);
    // the key is borrowed for the call.
    let (env, key) = unsafe { (&*env.cast::<TestEnv>(), bytes(key)) };
    let Some(key) = key else { return 0 };
    match env.vars.iter().find(|(k, _)| k == key) {
        Some((_, v)) => {
            // SAFETY: `value` is writable; the bytes live until the request
            // ends.
            unsafe { *value = nwsgi_str::from_bytes(v) };
            1
        }
        None => 0,
    }
}

unsafe extern "C" fn test_environ_each(
    env: *const nwsgi_environ,
    f: nwsgi_environ_each_cb,
    user: *mut c_void,
) -> i32 {
    let Some(func) = f.func else {
        return NWSGI_E_INVALID;
    };
    if env.is_null() {
        return NWSGI_E_INVALID;
    }
    // SAFETY: as in `test_environ_get`.
    let env = unsafe { &*env.cast::<TestEnv>() };
    for (k, v) in &env.vars {
        // SAFETY: the app's callback with its own `user`; the strings live
        // for the call.
        let rc = unsafe { func(user, nwsgi_str::from_bytes(k), nwsgi_str::from_bytes(v)) };
        if rc != 0 {
            return rc;
        }
    }
    NWSGI_OK
}

#[cfg(test)]
#[path = "testing_tests.rs"]
mod tests;
