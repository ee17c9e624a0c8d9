//! Any `tower::Service` over `http` types as a plugin (cargo feature
//! `tower`): [`export_service!`](crate::export_service) turns
//! `fn build(&Config) -> Result<S, String>` into an [`App`](crate::App)
//! whose `call` runs `S` on this app thread's tokio runtime.
//!
//! * One current-thread runtime per app thread (time and I/O drivers on),
//!   built the first time the thread serves a request. Futures run only
//!   while the SDK is inside `block_on` for a call or a body `next`, which
//!   the ABI runs on the same thread for one request.
//! * Each app thread owns a clone of the service (tower services are
//!   `&mut self` and `Clone`, not `Sync`), cloned once from the one `build`
//!   made.
//! * The request body ([`RequestBody`]) reads `wsgi.input` when the service
//!   asks for it: its `poll_frame` raises a flag and the driver loop, which
//!   holds the environ, does the blocking read between two `block_on`s.
//!   That keeps the body `'static + Send` (as axum wants) without it
//!   borrowing the request.
//! * The response head goes to `start_response`; a head the thread has
//!   seen before goes as a static head (`head_cache`), which the host
//!   validates and encodes once.
//! * A body of known size up to 64 KiB (`String`, `Full`, an axum body
//!   made from one) is read whole within `call`, where it lies, and handed
//!   over in one piece, framed with Content-Length. Any other body is
//!   polled frame by frame: in `call` for the first data frame (a body that
//!   ends with it is handed over whole), then one frame per `next`, so
//!   streams and SSE go out chunk by chunk.
//! * Futures are polled once inside the runtime's context before any
//!   `block_on`: most handlers finish without waiting.
//! * Per request the adapter allocates what the `http` types need and no
//!   more: the request's `HeaderMap`; its target and header values come
//!   from the thread's last requests when the bytes repeat
//!   (`request_cache`).

use std::any::Any;
use std::cell::{OnceCell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future};
use std::io::Read;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use http::header::{self, HeaderName};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::runtime::Runtime;
use tower_service::Service;

use super::body::Body;
use super::config::Config;
use super::environ::{Environ, Input};
use super::error::Error;
use super::head_cache::{self, Heads};
use super::request_cache::RequestCache;
use super::response::StartResponse;

/// The error type services may return and bodies may yield.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The largest read from `wsgi.input` in one go.
const READ_CHUNK: usize = 64 * 1024;

/// What [`export_service!`](crate::export_service) keeps from `build`: the
/// service every app thread clones its own from. Behind a mutex because a
/// service is `Send` but not necessarily `Sync`; locked once per thread.
pub struct Prototype {
    service: Mutex<Box<dyn Any + Send>>,
}

/// What an app thread keeps between requests: one thread-local, so a
/// request looks it up once (in a plugin, each thread-local access is a
/// call into the dynamic loader).
struct ThreadState {
    /// This thread's runtime (built on first use).
    runtime: OnceCell<Runtime>,
    /// This thread's clones of the exported services, by the address of
    /// their [`Prototype`] (one entry per service a library exports).
    clones: RefCell<Vec<(usize, Box<dyn Any>)>>,
    /// What the thread remembers of its last requests' targets and
    /// header fields.
    requests: RefCell<RequestCache>,
    /// The response heads this thread made static.
    heads: RefCell<Heads>,
}

thread_local! {
    static THREAD: ThreadState = const {
        ThreadState {
            runtime: OnceCell::new(),
            clones: RefCell::new(Vec::new()),
            requests: RefCell::new(RequestCache::new()),
            heads: RefCell::new(Heads::new()),
        }
    };
}

/// A body whose size is known and at most this is read whole inside the
/// call, pinned where it is, and handed to the host in one piece; others
/// are boxed and streamed frame by frame.
const WHOLE_BODY_MAX: u64 = 64 * 1024;

/// `App::init` of an exported service: run `build` and keep its service.
pub fn init<S>(
    config: &Config,
    build: fn(&Config) -> Result<S, String>,
) -> Result<Prototype, String>
where
    S: Clone + Send + 'static,
{
    let service = build(config)?;
    Ok(Prototype {
        service: Mutex::new(Box::new(service)),
    })
}

/// `App::call` of an exported service. `_build` only names `S`.
pub fn call<S, RB>(
    prototype: &Prototype,
    environ: &mut Environ<'_>,
    start: &mut StartResponse<'_>,
    _build: fn(&Config) -> Result<S, String>,
) -> Result<Body, Error>
where
    S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    RB: HttpBody + Send + 'static,
    RB::Error: Into<BoxError>,
{
    THREAD.with(|thread| call_on::<S, RB>(thread, prototype, environ, start))
}

/// [`call`], with this thread's state.
fn call_on<S, RB>(
    thread: &ThreadState,
    prototype: &Prototype,
    environ: &mut Environ<'_>,
    start: &mut StartResponse<'_>,
) -> Result<Body, Error>
where
    S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    RB: HttpBody + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let mut service = thread.take_clone::<S>(prototype)?;
    let request = match build_request(environ, &thread.requests) {
        Ok(request) => request,
        Err(problem) => {
            thread.put_clone(prototype, service);
            environ.log(tracing::Level::WARN, &problem);
            start.start("400 Bad Request", &[("Content-Type", "text/plain")])?;
            return Ok(Body::from_static(b"Bad Request"));
        }
    };
    let feed = request.body().feed.clone();
    let mut input = environ.input();
    let outcome = thread.runtime().map(|rt| {
        let mut driver = Driver {
            rt,
            input: &mut input,
            feed: feed.as_deref(),
        };
        // One `block_on` for the call, the head and the first data frame
        // (read while the request body can still be read).
        driver.run(pin!(async {
            let service_error = |e: S::Error| Error::from(e.into());
            poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(service_error)?;
            let response = service.call(request).await.map_err(service_error)?;
            let (parts, body) = response.into_parts();
            send_head(start, &thread.heads, parts.status, &parts.headers)?;
            reply(body).await
        }))
    });
    // A panic above unwinds past this: the clone is dropped with it, and
    // the thread's next request starts from a fresh one.
    thread.put_clone(prototype, service);
    if let Some(feed) = feed {
        feed.close();
    }
    Ok(match outcome?? {
        Reply::Whole(bytes) if bytes.is_empty() => Body::from_static(b""),
        Reply::Whole(bytes) => Body::from(Vec::from(bytes)),
        Reply::Stream(body, first) => Body::from_fallible_iter(ResponseFrames {
            body,
            first: Some(first),
        }),
    })
}

/// What the call hands the host besides the head.
enum Reply<B> {
    /// All of the body (one `write_last`).
    Whole(Bytes),
    /// Its first data frame, and the body to poll for the rest.
    Stream(Pin<Box<B>>, Bytes),
}

/// The response body, read whole when it is small and of known size (a
/// `String`, `Full`, an axum body made from either: the usual case, with
/// no allocation for it), else boxed after its first data frame.
async fn reply<B>(body: B) -> Result<Reply<B>, Error>
where
    B: HttpBody,
    B::Error: Into<BoxError>,
{
    if body
        .size_hint()
        .exact()
        .is_some_and(|n| n <= WHOLE_BODY_MAX)
    {
        let mut body = pin!(body);
        let mut whole = Bytes::new();
        let mut joined: Vec<u8> = Vec::new();
        while let Some(chunk) = next_data(body.as_mut()).await? {
            if whole.is_empty() && joined.is_empty() {
                whole = chunk;
            } else {
                // More than one frame (rare): join them.
                if joined.is_empty() {
                    joined.extend_from_slice(&whole);
                }
                joined.extend_from_slice(&chunk);
            }
            if body.is_end_stream() {
                break;
            }
        }
        return Ok(Reply::Whole(if joined.is_empty() {
            whole
        } else {
            Bytes::from(joined)
        }));
    }
    let mut body = Box::pin(body);
    Ok(match next_data(body.as_mut()).await? {
        None => Reply::Whole(Bytes::new()),
        Some(chunk) if body.is_end_stream() => Reply::Whole(chunk),
        Some(chunk) => Reply::Stream(body, chunk),
    })
}

impl ThreadState {
    /// This thread's clone of the service, taken out of the thread's list
    /// for the duration of the call (a call that panics leaves it out).
    fn take_clone<S: Clone + 'static>(&self, prototype: &Prototype) -> Result<Box<S>, Error> {
        let key = std::ptr::from_ref(prototype) as usize;
        let kept = {
            let mut clones = self.clones.borrow_mut();
            clones
                .iter()
                .position(|(k, _)| *k == key)
                .map(|i| clones.swap_remove(i).1)
        };
        if let Some(Ok(service)) = kept.map(|b| b.downcast::<S>()) {
            return Ok(service);
        }
        let proto = prototype
            .service
            .lock()
            .map_err(|_| Error::from("the service prototype's lock is poisoned"))?;
        let service = proto
            .downcast_ref::<S>()
            .ok_or_else(|| Error::from("export_service!: service type mismatch"))?;
        Ok(Box::new(service.clone()))
    }

    fn put_clone<S: 'static>(&self, prototype: &Prototype, service: Box<S>) {
        let key = std::ptr::from_ref(prototype) as usize;
        self.clones.borrow_mut().push((key, service));
    }

    /// This thread's runtime, built on first use.
    fn runtime(&self) -> Result<&Runtime, Error> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::new(format_args!("building the tokio runtime: {e}")))?;
        Ok(self.runtime.get_or_init(|| rt))
    }
}

/// The `http::Request` for this environ.
fn build_request(
    environ: &Environ<'_>,
    cache: &RefCell<RequestCache>,
) -> Result<Request<RequestBody>, String> {
    // In use only if a call ran inside another on this thread, which no
    // host does: then build without the thread's memory.
    let (mut borrowed, mut fresh);
    let cache: &mut RequestCache = match cache.try_borrow_mut() {
        Ok(cache) => {
            borrowed = cache;
            &mut borrowed
        }
        Err(_) => {
            fresh = RequestCache::new();
            &mut fresh
        }
    };
    let uri = match environ.request_uri() {
        b"" => {
            let mut target = environ.path_info().to_vec();
            if !environ.query_string().is_empty() {
                target.push(b'?');
                target.extend_from_slice(environ.query_string());
            }
            Uri::from_maybe_shared(Bytes::from(target))
                .map_err(|e| format!("request target: {e}"))?
        }
        // Relative to the app's mount (SCRIPT_NAME's part left out; the
        // bytes as they are, borrowed, for an app at the root).
        raw => cache.uri(&super::environ::mounted_target(raw, environ.script_name()))?,
    };
    let version = match environ.protocol() {
        b"HTTP/1.0" => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let body = if environ.has_body() {
        RequestBody::streaming(content_length(environ.content_length()))
    } else {
        RequestBody::empty()
    };
    let mut request = Request::new(body);
    *request.method_mut() = environ.method();
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = cache.headers(environ.raw_headers())?;
    Ok(request)
}

fn content_length(raw: &[u8]) -> Option<u64> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// Response headers the host frames itself and refuses from an application
/// (hop-by-hop, RFC 9110 7.6.1): dropped, as an HTTP server library would.
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::TRAILER
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Headers kept on the stack when there are no more than this many.
const INLINE_HEADERS: usize = 16;

/// `start_response` with the response's status and headers: a head this
/// thread saw before goes as a static head (see `head_cache`), one
/// `start_response_static` the host knows by address; others are handed
/// over field by field.
fn send_head(
    start: &mut StartResponse<'_>,
    heads: &RefCell<Heads>,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<(), Error> {
    let known = heads
        .try_borrow_mut()
        .ok()
        .and_then(|mut heads| heads.find(status, headers, |n| !hop_by_hop(n)));
    if let Some(head) = known {
        start.start_static(head)?;
        return Ok(());
    }
    let line = head_cache::status_line(status);
    // Values that are not visible ASCII (obs-text) go through lossily:
    // `start_response` takes text.
    let lossy: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter(|(_, (_, v))| v.to_str().is_err())
        .map(|(i, (_, v))| (i, String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let pairs = headers
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| !hop_by_hop(n))
        .map(|(i, (n, v))| {
            let value = match v.to_str() {
                Ok(v) => v,
                Err(_) => lossy
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map_or("", |(_, s)| s.as_str()),
            };
            (n.as_str(), value)
        });
    let mut inline = [("", ""); INLINE_HEADERS];
    let spilled: Vec<(&str, &str)>;
    let list: &[(&str, &str)] = if headers.len() <= INLINE_HEADERS {
        let mut n = 0;
        for (slot, pair) in inline.iter_mut().zip(pairs) {
            *slot = pair;
            n += 1;
        }
        &inline[..n]
    } else {
        spilled = pairs.collect();
        &spilled
    };
    start.start(&line, list)?;
    Ok(())
}

/// The next data frame of `body` (trailers skipped, empty frames too), or
/// `None` at its end.
async fn next_data<B>(mut body: Pin<&mut B>) -> Result<Option<Bytes>, Error>
where
    B: HttpBody + ?Sized,
    B::Error: Into<BoxError>,
{
    loop {
        match poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            None => return Ok(None),
            Some(Err(e)) => return Err(Error::from(e.into())),
            Some(Ok(frame)) => {
                if let Ok(mut data) = frame.into_data() {
                    if data.has_remaining() {
                        return Ok(Some(data.copy_to_bytes(data.remaining())));
                    }
                }
            }
        }
    }
}

/// The response body after its first frame, as the SDK's body iterator:
/// each `next` polls it on this thread's runtime until a data frame or the
/// end. Dropping it (the host's `close`) drops the body.
struct ResponseFrames<B> {
    body: Pin<Box<B>>,
    first: Option<Bytes>,
}

impl<B> Iterator for ResponseFrames<B>
where
    B: HttpBody,
    B::Error: Into<BoxError>,
{
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            return Some(Ok(Vec::from(first)));
        }
        let body = self.body.as_mut();
        let next = THREAD.with(|thread| {
            thread.runtime().map(|rt| {
                let mut fut = pin!(next_data(body));
                match poll_once(rt, fut.as_mut()) {
                    Poll::Ready(out) => out,
                    Poll::Pending => rt.block_on(fut),
                }
            })
        });
        match next {
            Ok(Ok(Some(chunk))) => Some(Ok(Vec::from(chunk))),
            Ok(Ok(None)) => None,
            Ok(Err(e)) | Err(e) => Some(Err(e)),
        }
    }
}

/// Polls `fut` once inside `rt`'s context (so it can spawn, and create
/// timers and I/O), with a waker that does nothing: most handlers finish
/// without waiting, and entering the runtime's context costs far less than
/// a `block_on`. A future that returns `Pending` here is polled again by
/// `block_on` (with the real waker) straight after, which is all the
/// `Future` contract asks: only the waker of the latest poll counts.
fn poll_once<F: Future + ?Sized>(rt: &Runtime, fut: Pin<&mut F>) -> Poll<F::Output> {
    let _context = rt.enter();
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// Runs futures on the runtime, doing the request body's reads in between.
struct Driver<'a, 'r> {
    rt: &'a Runtime,
    input: &'a mut Input<'r>,
    feed: Option<&'a Feed>,
}

impl Driver<'_, '_> {
    /// `block_on(fut)`, except that whenever the request body wants bytes
    /// the runtime is left, `wsgi.input` read (blocking, on this thread, as
    /// the ABI requires), and the future resumed. The future comes pinned
    /// where it was made: moving a large future costs a copy.
    fn run<F: Future>(&mut self, mut fut: Pin<&mut F>) -> F::Output {
        if let Poll::Ready(out) = poll_once(self.rt, fut.as_mut()) {
            return out;
        }
        loop {
            let feed = self.feed;
            let step = self.rt.block_on(poll_fn(|cx| {
                if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                    return Poll::Ready(Some(out));
                }
                match feed {
                    Some(feed) if feed.wants_read(cx.waker()) => Poll::Ready(None),
                    _ => Poll::Pending,
                }
            }));
            match step {
                Some(out) => return out,
                // Only a feed asks for a read.
                None => {
                    if let Some(feed) = self.feed {
                        feed.fill(self.input);
                    }
                }
            }
        }
    }
}

/// The state a [`RequestBody`] shares with the [`Driver`] of its request.
struct Feed {
    state: Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    /// Content-Length minus what was read; `None` for chunked bodies.
    remaining: Option<u64>,
    /// The body is waiting for a read.
    want: bool,
    /// The read that is waiting to be taken.
    ready: Option<Result<Bytes, RequestBodyError>>,
    end: End,
    /// Whom to wake when the body wants a read (the driver's future).
    driver: Option<Waker>,
    /// Whom to wake when a read arrived (the task polling the body).
    reader: Option<Waker>,
}

/// How far the request body got.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum End {
    #[default]
    Open,
    /// `wsgi.input` said end (or failed, which `ready` carries).
    Finished,
    /// The call returned: the request is gone, no more reads.
    Closed,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, FeedState> {
        // Nothing panics while holding the lock; recover the state anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the body is waiting for a read; if not, `driver` is who to
    /// wake when it is.
    fn wants_read(&self, driver: &Waker) -> bool {
        let mut state = self.lock();
        if state.want {
            return true;
        }
        match &state.driver {
            Some(w) if w.will_wake(driver) => {}
            _ => state.driver = Some(driver.clone()),
        }
        false
    }

    /// One blocking read from `wsgi.input` for the waiting body.
    fn fill(&self, input: &mut Input<'_>) {
        let cap = self.lock().remaining.map_or(READ_CHUNK, |n| {
            usize::try_from(n)
                .unwrap_or(READ_CHUNK)
                .clamp(1, READ_CHUNK)
        });
        let mut buf = vec![0u8; cap];
        let read = input.read(&mut buf);
        let mut state = self.lock();
        state.want = false;
        match read {
            Ok(0) => state.end = End::Finished,
            Ok(n) => {
                buf.truncate(n);
                if let Some(left) = &mut state.remaining {
                    *left = left.saturating_sub(n as u64);
                }
                state.ready = Some(Ok(Bytes::from(buf)));
            }
            Err(e) => {
                state.ready = Some(Err(RequestBodyError(e.to_string())));
                state.end = End::Finished;
            }
        }
        if let Some(reader) = state.reader.take() {
            reader.wake();
        }
    }

    /// The call is over: a body polled from now on reports an error.
    fn close(&self) {
        let mut state = self.lock();
        if state.end == End::Open {
            state.end = End::Closed;
        }
        if let Some(reader) = state.reader.take() {
            reader.wake();
        }
    }
}

/// The request body handed to the service: `wsgi.input`, read in chunks of
/// up to 64 KiB as the service polls it, on the app thread. It can only be
/// read while the service's call is running (until the response head is
/// returned and the first frame of the response body polled); polled later
/// it yields a [`RequestBodyError`].
pub struct RequestBody {
    feed: Option<Arc<Feed>>,
}

impl RequestBody {
    /// A body with nothing in it.
    pub fn empty() -> RequestBody {
        RequestBody { feed: None }
    }

    fn streaming(content_length: Option<u64>) -> RequestBody {
        RequestBody {
            feed: Some(Arc::new(Feed {
                state: Mutex::new(FeedState {
                    remaining: content_length,
                    ..FeedState::default()
                }),
            })),
        }
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody").finish_non_exhaustive()
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let Some(feed) = &self.feed else {
            return Poll::Ready(None);
        };
        let mut state = feed.lock();
        if let Some(read) = state.ready.take() {
            return Poll::Ready(Some(read.map(Frame::data)));
        }
        match state.end {
            End::Finished => return Poll::Ready(None),
            End::Closed => {
                return Poll::Ready(Some(Err(RequestBodyError(
                    "the request body was read after its call returned".to_owned(),
                ))))
            }
            End::Open => {}
        }
        state.want = true;
        state.reader = Some(cx.waker().clone());
        if let Some(driver) = &state.driver {
            driver.wake_by_ref();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        match &self.feed {
            None => true,
            Some(feed) => {
                let state = feed.lock();
                state.ready.is_none() && (state.end == End::Finished || state.remaining == Some(0))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.feed {
            None => SizeHint::with_exact(0),
            Some(feed) => {
                let state = feed.lock();
                let pending = state
                    .ready
                    .as_ref()
                    .map_or(0, |r| r.as_ref().map_or(0, |b| b.len() as u64));
                match state.remaining {
                    Some(n) => SizeHint::with_exact(n + pending),
                    None => SizeHint::default(),
                }
            }
        }
    }
}

/// Reading the request body failed: the client sent a malformed body or
/// went away, or the body was polled after its call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBodyError(String);

impl fmt::Display for RequestBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reading the request body: {}", self.0)
    }
}

impl std::error::Error for RequestBodyError {}

/// Export a `tower::Service` over `http` types as the plugin's
/// `nwsgi_app` descriptor (cargo feature `tower` of `abi`).
///
/// `build` is `fn(&abi::Config) -> Result<S, String>`, run once per worker
/// process (the `--app-arg`s are the config; an `Err` makes `host serve`
/// refuse to start, naming the message). `S` is any
/// `Service<http::Request<abi::RequestBody>, Response = http::Response<B>>`
/// that is `Clone + Send + 'static`, `B` any `http_body::Body`; an axum
/// `Router` is one:
///
/// ```ignore
/// fn build(_config: &abi::Config) -> Result<axum::Router, String> {
///     Ok(axum::Router::new().route("/", axum::routing::get(|| async { "hi" })))
/// }
/// abi::export_service!(build);            // symbol `app`
/// abi::export_service!(build_admin, admin); // symbol `admin`
/// ```
///
/// Handlers run on a tokio current-thread runtime of the app thread that
/// serves the request (timers and I/O work). A panic in the service or its
/// response body is caught, logged with its location, and answered 500.
///
/// A response body of known size up to 64 KiB (`size_hint` exact: a
/// `String`, `Full`, an axum body made from one) is read to its end within
/// the call and sent with Content-Length; other bodies stream,
/// one data frame per host `next`. Heads that repeat become static heads
/// (at most 64 distinct ones per process, each up to 1 KiB; their text
/// stays allocated while the plugin is loaded).
#[macro_export]
macro_rules! export_service {
    ($build:path) => {
        $crate::export_service!($build, app);
    };
    ($build:path, $symbol:ident) => {
        const _: () = {
            struct ServiceApp($crate::__private::service::Prototype);

            impl $crate::App for ServiceApp {
                const NAME: &'static str = match ::core::option_env!("CARGO_PKG_NAME") {
                    ::core::option::Option::Some(name) => name,
                    ::core::option::Option::None => "",
                };

                fn init(
                    config: &$crate::Config,
                ) -> ::core::result::Result<Self, ::std::string::String> {
                    $crate::__private::service::init(config, $build).map(ServiceApp)
                }

                fn call(
                    &self,
                    environ: &mut $crate::Environ<'_>,
                    start: &mut $crate::StartResponse<'_>,
                ) -> ::core::result::Result<$crate::Body, $crate::Error> {
                    $crate::__private::service::call(&self.0, environ, start, $build)
                }
            }

            $crate::export_app!(ServiceApp, $symbol);
        };
    };
}

impl crate::testing::Client {
    /// A client for a tower service served as `export_service!(build)`
    /// serves it (the same request building, runtime, body streaming and
    /// panic handling), started through `build` with `config`: an
    /// exported service's handlers tested in-process. `Err` is the message
    /// `build` failed with.
    ///
    /// ```
    /// use abi::http::{Request, Response, StatusCode};
    /// use abi::testing::Client;
    /// use std::convert::Infallible;
    /// use std::future::{ready, Ready};
    /// use std::task::{Context, Poll};
    ///
    /// #[derive(Clone)]
    /// struct Hello;
    ///
    /// impl tower_service::Service<Request<abi::RequestBody>> for Hello {
    ///     type Response = Response<String>;
    ///     type Error = Infallible;
    ///     type Future = Ready<Result<Response<String>, Infallible>>;
    ///     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
    ///         Poll::Ready(Ok(()))
    ///     }
    ///     fn call(&mut self, request: Request<abi::RequestBody>) -> Self::Future {
    ///         ready(Ok(Response::new(format!("Hello from {}", request.uri().path()))))
    ///     }
    /// }
    ///
    /// fn build(_: &abi::Config) -> Result<Hello, String> {
    ///     Ok(Hello)
    /// }
    ///
    /// let client = Client::service(build, &abi::Config::default()).unwrap();
    /// let response = client.call(Request::get("/there").body(()).unwrap());
    /// assert_eq!(response.status(), StatusCode::OK);
    /// assert_eq!(response.body(), b"Hello from /there");
    /// ```
    pub fn service<S, RB>(
        build: fn(&Config) -> Result<S, String>,
        config: &Config,
    ) -> Result<crate::testing::Client, String>
    where
        S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        RB: HttpBody + Send + 'static,
        RB::Error: Into<BoxError>,
    {
        /// The app `export_service!` would define, made from a value.
        struct Served<S, RB> {
            prototype: Prototype,
            build: fn(&Config) -> Result<S, String>,
            body: std::marker::PhantomData<fn() -> RB>,
        }

        impl<S, RB> crate::App for Served<S, RB>
        where
            S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
            S::Error: Into<BoxError>,
            RB: HttpBody + Send + 'static,
            RB::Error: Into<BoxError>,
        {
            fn init(_config: &Config) -> Result<Self, String> {
                Err("made by Client::service, not by init".into())
            }

            fn call(
                &self,
                environ: &mut Environ<'_>,
                start: &mut StartResponse<'_>,
            ) -> Result<Body, Error> {
                call(&self.prototype, environ, start, self.build)
            }
        }

        let prototype = init(config, build)?;
        Ok(crate::testing::Client::new(Served {
            prototype,
            build,
            body: std::marker::PhantomData,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Client;
    use std::future::{ready, Ready};

    /// A tower service made from a function.
    struct FnService<B>(fn(Request<RequestBody>) -> Response<B>);

    impl<B> Clone for FnService<B> {
        fn clone(&self) -> Self {
            FnService(self.0)
        }
    }

    impl<B> Service<Request<RequestBody>> for FnService<B> {
        type Response = Response<B>;
        type Error = std::convert::Infallible;
        type Future = Ready<Result<Response<B>, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
            ready(Ok((self.0)(request)))
        }
    }

    fn client<B>(f: fn(Request<RequestBody>) -> Response<B>) -> Client
    where
        B: HttpBody + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // `Client::service` takes a `build` fn, which cannot capture `f`:
        // the prototype is made here and served as `export_service!` would.
        let prototype = Prototype {
            service: Mutex::new(Box::new(FnService(f))),
        };
        struct Served<B>(Prototype, std::marker::PhantomData<fn() -> B>);
        impl<B> crate::App for Served<B>
        where
            B: HttpBody + Send + 'static,
            B::Error: Into<BoxError>,
        {
            fn init(_: &Config) -> Result<Self, String> {
                Err("made by the test".into())
            }
            fn call(
                &self,
                environ: &mut Environ<'_>,
                start: &mut StartResponse<'_>,
            ) -> Result<Body, Error> {
                call::<FnService<B>, B>(&self.0, environ, start, |_| Err(String::new()))
            }
        }
        Client::new(Served::<B>(prototype, std::marker::PhantomData))
    }

    #[test]
    fn a_repeated_head_goes_out_whole_every_time_without_hop_by_hop_fields() {
        let client = client(|_| {
            Response::builder()
                .status(StatusCode::CREATED)
                .header("content-type", "text/x-repeated")
                .header("x-a", "1")
                .header("connection", "close")
                .body(String::from("made"))
                .unwrap()
        });
        for _ in 0..4 {
            let response = client.call(Request::get("/").body(()).unwrap());
            assert_eq!(response.status(), StatusCode::CREATED);
            assert_eq!(response.headers()["content-type"], "text/x-repeated");
            assert_eq!(response.headers()["x-a"], "1");
            assert!(response.headers().get("connection").is_none());
            assert_eq!(response.body(), b"made");
        }
    }

    #[test]
    fn request_targets_and_fields_that_change_are_seen_as_they_are() {
        let client = client(|request| {
            let seen = format!(
                "{} {} {:?}",
                request.uri(),
                request.headers().len(),
                request.headers().get_all("x-v").iter().collect::<Vec<_>>()
            );
            Response::new(seen)
        });
        let cases = [
            ("/a", "1"),
            ("/a", "1"),
            ("/a", "1"),
            ("/a?q", "2"),
            ("/a", "1"),
            ("/b", "1"),
            ("/b", "3"),
        ];
        for (target, value) in cases {
            let request = Request::get(target).header("X-V", value).body(()).unwrap();
            let response = client.call(request);
            let want = format!("{target} 1 [\"{value}\"]");
            assert_eq!(String::from_utf8_lossy(response.body()), want);
        }
    }

    /// A body of known size sent in two frames.
    struct TwoFrames(Vec<&'static [u8]>);

    impl HttpBody for TwoFrames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0.is_empty() {
                return Poll::Ready(None);
            }
            let next = self.0.remove(0);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(next)))))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.0.iter().map(|c| c.len() as u64).sum())
        }
    }

    #[test]
    fn a_small_body_of_known_size_in_frames_is_joined() {
        let frames = client(|_| Response::new(TwoFrames(vec![b"hello, ", b"frames"])));
        let response = frames.call(Request::get("/").body(()).unwrap());
        assert_eq!(response.body(), b"hello, frames");
        let empty = client(|_| Response::new(TwoFrames(Vec::new())));
        let response = empty.call(Request::get("/").body(()).unwrap());
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.body().is_empty());
    }

    fn poll(body: &mut RequestBody) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn hop_by_hop_headers_are_recognised() {
        for name in [
            "connection",
            "transfer-encoding",
            "keep-alive",
            "upgrade",
            "te",
        ] {
            assert!(hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["content-type", "content-length", "set-cookie"] {
            assert!(!hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn content_length_parses_or_is_none() {
        assert_eq!(content_length(b"12"), Some(12));
        assert_eq!(content_length(b""), None);
        assert_eq!(content_length(b"x"), None);
    }

    #[test]
    fn empty_body_ends_at_once() {
        let mut body = RequestBody::empty();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
    }

    #[test]
    fn streaming_body_asks_for_a_read_then_sees_it() {
        let mut body = RequestBody::streaming(Some(5));
        let feed = body.feed.clone().expect("a feed");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!feed.wants_read(Waker::noop()), "nothing asked yet");
        assert!(poll(&mut body).is_pending());
        assert!(feed.wants_read(Waker::noop()), "the poll asked for a read");
        // What `fill` does with a read of 5 bytes.
        {
            let mut state = feed.lock();
            state.want = false;
            state.remaining = Some(0);
            state.ready = Some(Ok(Bytes::from_static(b"hello")));
        }
        match poll(&mut body) {
            Poll::Ready(Some(Ok(frame))) => {
                assert_eq!(frame.into_data().ok(), Some(Bytes::from_static(b"hello")))
            }
            _ => panic!("the read should come out as a data frame"),
        }
        assert!(body.is_end_stream(), "all of Content-Length was read");
    }

    #[test]
    fn a_body_polled_after_its_call_fails() {
        let mut body = RequestBody::streaming(None);
        let feed = body.feed.clone().expect("a feed");
        feed.close();
        match poll(&mut body) {
            Poll::Ready(Some(Err(e))) => {
                assert!(e.to_string().contains("after its call returned"), "{e}")
            }
            _ => panic!("a closed feed is an error"),
        }
    }
}
