//! Serving a connection on an app thread: every complete request in its
//! buffer, one after another, through parse → environ → plugin call →
//! response; then the connection goes back to the event loop.
//!
//! An app thread runs application code and never waits on a client (but
//! in the two cases the API leaves no other way: the app's own write()
//! past the high-water mark, and an upload read with
//! `--no-request-buffering`; both are the client's time, not the app's, for
//! `-t`). What the socket does not take at once goes back with the
//! connection for the event loop to send. A body iterator whose client
//! stopped reading is parked: the whole `Desk` it works on — connection,
//! environ, exchange, iterator — goes to the event loop, and comes back to
//! this same thread (the header promises call, next and close of a request
//! run on one thread) once the client has read.
//!
//! Nothing here reads a clock or takes a lock per request; the desk, the
//! memo and the buffers are this thread's and reused.
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::Instant;

use abi::ffi::{nwsgi_body, nwsgi_header, nwsgi_str};

use crate::gateway::api::HOST_API;
use crate::gateway::environ::{
    percent_decode, ClientText, EnvironParts, HeaderMap, HostEnviron, PeerText,
};
use crate::gateway::exchange::{self, Client, CurrentRequestId, Exchange, Gone, Pulled, Wait};
use crate::gateway::mount::Router;
use crate::http1::body::{body_end, BodyError, BodyReader, BodySource, Decode};
use crate::http1::error::HttpError;
use crate::http1::forwarded::{self, Scheme};
use crate::http1::head::parse_request;
use crate::http1::memo::HeadMemo;
use crate::http1::parse::{Field, Framing, Version};
use crate::http1::response::{encode_continue, encode_error};
use crate::net::endpoint::Endpoint;
use crate::net::transport::{Ready, Transport};
use crate::runtime::access_log::Entry;
use crate::runtime::claim::Stint;
use crate::runtime::config::Shared;
use crate::runtime::conn::{line_text, release_buffer, Ahead, Conn, Forwarding, Pending};
use crate::runtime::intake::{Intake, DISCARD_MAX};
use crate::runtime::metrics;
use crate::runtime::rate::{Rate, Stall};
use crate::runtime::scoreboard::ThreadSlot;

/// Responses are batched (pipelining) until this much is pending.
const FLUSH_AT: usize = 64 * 1024;
/// Past this much unsent output on one connection, a body iterator is
/// parked and a write() waits.
pub const HIGH_WATER: usize = 64 * 1024;
/// A parked iterator resumes (a waiting write() returns) once its
/// connection's unsent output is down to this.
pub const LOW_WATER: usize = 16 * 1024;
/// Past this much unsent output held for all of a worker's connections,
/// every producer holds back to the low-water mark: what slow clients cost
/// in memory stays bounded whatever the app sends them.
pub const WORKER_HIGH_WATER: usize = 64 << 20;

/// What a thread is given to do.
pub enum Work {
    /// A connection with a complete request head (and body, when the loop
    /// read it ahead).
    Serve(Box<Conn>),
    /// A parked request to take up again: its client read enough, or went
    /// away (`Desk::gone`).
    Resume(Box<Desk>),
}

/// What became of a connection after its turn on an app thread.
pub enum Outcome {
    /// Back to the event loop to wait for the next request (after sending
    /// what is pending, and dropping what is left of a streamed body).
    Idle(Box<Conn>),
    /// The server ends the connection (an error answered, `Connection:
    /// close`, HTTP/1.0): the event loop sends what is pending, then closes
    /// it gracefully.
    Close(Box<Conn>),
    /// The client is gone (reset, or too slow): the event loop drops it.
    Gone(Box<Conn>),
    /// The request at the start of `buf` has a body still on its way: the
    /// event loop reads it (`ahead`), then hands the connection back.
    NeedBody(Box<Conn>),
    /// A body iterator waits for its client to read.
    Parked(Box<Desk>),
    /// The connection was dropped on the thread (a panic in host code).
    Lost,
}

/// Where wsgi.input reads from.
enum Input {
    /// No body.
    Empty,
    /// The whole body, raw, in the connection's buffer after the head.
    Buffered(BodyReader),
    /// The whole body, decoded, in a temporary file.
    Spooled { file: File, len: u64, pos: u64 },
    /// Not read ahead (`--no-request-buffering`): from the socket, as the
    /// app reads. `rate` starts at the first wait.
    Streamed(BodyReader, Option<Rate>),
}

/// Everything one connection's current request keeps in place while it
/// runs: the plugin holds pointers into it (the environ, its strings, the
/// request handle) from `call` until `close` returns. A desk is boxed and
/// reused by its thread for request after request; when a request is
/// parked, its desk goes with it and the thread takes another.
pub struct Desk {
    /// The connection being served.
    conn: Option<Box<Conn>>,
    /// The request handle the plugin holds, and the response.
    ex: Exchange,
    env: HostEnviron,
    /// The header list the environ points to.
    headers: Vec<nwsgi_header>,
    /// A percent-decoded PATH_INFO, when the path needs it.
    path: Vec<u8>,
    /// The app serving the current request (its index in `Shared::apps`):
    /// always 0 for a lone app, set by routing otherwise (`UNMOUNTED`:
    /// none, the host answers 404).
    app: usize,
    /// The peer's address as text (re-formatted only when it changes).
    peer: PeerText,
    /// The client a trusted proxy named for the current request, as text.
    client: ClientText,
    input: Input,
    /// The app's body iterator, while one is open.
    iter: Option<nwsgi_body>,
    /// Where the current request's head starts in the connection's buffer,
    /// and its length; where its request line lies (for the scoreboard).
    start: usize,
    head_len: usize,
    line: (usize, usize),
    /// Raw body bytes after the head in the buffer (Buffered).
    body_len: usize,
    version: Version,
    /// Since when the client has left response bytes unread; None while
    /// it keeps up.
    pub stall: Option<Stall>,
    /// The thread that parked the request, and must resume it.
    pub thread: usize,
    /// The client went away (or was too slow) while the request was
    /// parked: close the iterator and drop the connection.
    pub gone: bool,
    /// When the request's head was parsed (`metrics` ticks): the start of
    /// its duration, for the metrics and the access log.
    began: u64,
}

// SAFETY: a desk moves between threads only whole, and only the parts
// that are plain data are used off its own app thread: the event loop
// sends `ex.out` and reads the connection. The raw pointers inside (the
// environ's, into this same desk and its connection's buffer, both owned
// by the desk; the app's iterator state; the exchange's client, None
// between plugin calls) are used only on the thread that parked the
// request, which is the only one it is resumed on (see `pool`).
unsafe impl Send for Desk {}

impl Desk {
    /// A thread's first desk, and one more for each parked request: kept
    /// out of the request path.
    #[cold]
    #[inline(never)]
    fn new(thread: usize) -> Box<Desk> {
        let mut desk = Box::new(Desk {
            conn: None,
            ex: Exchange::default(),
            env: HostEnviron::new(&HOST_API),
            headers: Vec::with_capacity(32),
            path: Vec::new(),
            app: 0,
            peer: PeerText::default(),
            client: ClientText::default(),
            input: Input::Empty,
            iter: None,
            start: 0,
            head_len: 0,
            line: (0, 0),
            body_len: 0,
            version: Version::Http11,
            stall: None,
            thread,
            gone: false,
            began: 0,
        });
        let env: *const HostEnviron = &desk.env;
        // SAFETY: the environ is in the same box as the exchange, which
        // never moves out of it (a desk travels as its box).
        unsafe { desk.ex.attach(env) };
        desk
    }

    /// The parked connection.
    pub fn conn(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a parked desk holds its connection")
    }

    /// The parked connection, and the stall its client is in.
    pub fn conn_and_stall(&mut self) -> (&Conn, Option<&mut Stall>) {
        (
            self.conn
                .as_deref()
                .expect("a parked desk holds its connection"),
            self.stall.as_mut(),
        )
    }

    /// Response bytes not sent yet.
    pub fn unsent(&self) -> usize {
        self.ex.out.len()
    }

    /// The event loop sends what the client takes now; Err: it is gone.
    pub fn send_unsent(&mut self) -> io::Result<usize> {
        let conn = self
            .conn
            .as_ref()
            .expect("a parked desk holds its connection");
        let n = conn.io.send_from(&mut self.ex.out)?;
        if let Some(stall) = &mut self.stall {
            stall.wrote(n);
        }
        if self.ex.out.is_empty() {
            self.stall = None;
        }
        Ok(n)
    }

    /// The request line, for the log.
    pub fn line_text(&self) -> String {
        let (at, len) = self.line;
        line_text(&self.conn().buf[at..at + len])
    }

    /// The parked request's id, for a log line about it (no plugin code
    /// runs for it meanwhile, so this thread alone reads the environ).
    pub fn request_id(&self) -> crate::text::Shown<'_> {
        crate::text::Shown(self.env.request_id())
    }

    /// A readable edge came for the connection while it was away.
    pub fn mark_unread(&mut self) {
        if let Some(conn) = &mut self.conn {
            conn.unread = true;
        }
    }
}

/// An app thread's own state, kept across the connections it serves.
pub struct AppThread<'a> {
    pub index: usize,
    shared: &'a Shared,
    /// Its stretches of app code, for `-t`.
    pub stint: Stint<'a>,
    /// Small heads parsed lately, so that one sent again is not parsed
    /// again (see `memo.rs`).
    memo: Box<HeadMemo>,
    /// Desks to take the next connection on. Boxed: a desk goes out
    /// whole with a parked request, and the plugin holds pointers into it.
    #[allow(clippy::vec_box)]
    desks: Vec<Box<Desk>>,
    slot: Option<&'static ThreadSlot>,
    /// The slot again when requests are counted for the metrics
    /// (`Config::metrics`); None: not counted.
    metrics: Option<&'static ThreadSlot>,
}

/// Desks kept per thread beyond the one in use (more are made when
/// requests are parked, and dropped when they come back).
const SPARE_DESKS: usize = 2;

impl<'a> AppThread<'a> {
    pub fn new(
        index: usize,
        shared: &'a Shared,
        stint: Stint<'a>,
        slot: Option<&'static ThreadSlot>,
    ) -> AppThread<'a> {
        AppThread {
            index,
            shared,
            stint,
            memo: Box::default(),
            desks: vec![Desk::new(index)],
            slot,
            metrics: slot.filter(|_| shared.config.metrics),
        }
    }

    fn take_desk(&mut self) -> Box<Desk> {
        self.desks.pop().unwrap_or_else(|| Desk::new(self.index))
    }

    /// Keeps a desk for the next connection. Nothing of the last one may
    /// stay on it: above all not unsent bytes of its response, which would
    /// go out to the next client.
    fn put_desk(&mut self, mut desk: Box<Desk>) {
        if self.desks.len() < SPARE_DESKS {
            desk.ex.out.clear();
            desk.input = Input::Empty;
            desk.iter = None;
            desk.start = 0;
            desk.stall = None;
            desk.gone = false;
            self.desks.push(desk);
        }
    }

    /// Serves `work`; the outcome goes back to the event loop.
    pub fn work(&mut self, work: Work) -> Outcome {
        let (mut desk, mut answered) = match work {
            Work::Serve(mut conn) => {
                let mut desk = self.take_desk();
                debug_assert!(desk.ex.out.is_empty() && desk.iter.is_none());
                desk.peer.set(conn.peer, conn.local, &mut conn.port_text);
                desk.conn = Some(conn);
                desk.start = 0;
                (desk, 0)
            }
            Work::Resume(desk) => {
                let (at, len) = desk.line;
                let conn = desk.conn();
                // App code runs again for the parked request (it may only
                // close it, if the client is gone).
                self.stint
                    .begin(&conn.buf[at..at + len], conn.io.fd(), false);
                (desk, 0)
            }
        };
        let flow = drive(self, &mut desk, &mut answered);
        self.count(answered);
        match flow {
            Flow::Park => Outcome::Parked(desk),
            Flow::Done(how) => {
                let conn = desk
                    .conn
                    .take()
                    .expect("a desk at work holds its connection");
                self.put_desk(desk);
                match how {
                    Done::Idle => Outcome::Idle(conn),
                    Done::Close => Outcome::Close(conn),
                    Done::Gone => Outcome::Gone(conn),
                    Done::NeedBody => Outcome::NeedBody(conn),
                }
            }
        }
    }

    /// Counted once per turn, not per request, in this thread's own
    /// counter; toward --max-requests (a counter the worker's threads
    /// share, so a locked add) only when that is set.
    fn count(&self, answered: u64) {
        if answered == 0 {
            return;
        }
        if let Some(slot) = self.slot {
            slot.count(answered);
        }
        if let Some(m) = &self.shared.monitor {
            if m.slot().count_requests(answered, m.max_requests) {
                tracing::info!(
                    requests = m.max_requests,
                    "worker reached --max-requests; the master will replace it"
                );
            }
        }
    }
}

/// How a desk's turn ended.
enum Flow {
    Done(Done),
    Park,
}

enum Done {
    Idle,
    Close,
    Gone,
    NeedBody,
}

/// Serves requests from the desk's connection until none is complete, the
/// connection must close, or the request is parked.
fn drive(t: &mut AppThread<'_>, d: &mut Desk, answered: &mut u64) -> Flow {
    loop {
        if d.iter.is_some() {
            if let Iterated::Park = iterate(t, d) {
                return Flow::Park;
            }
            *answered += 1;
            if let Some(done) = end_request(t, d) {
                return Flow::Done(done);
            }
            continue;
        }
        match start_request(t, d) {
            Started::Answered => {
                *answered += 1;
                if let Some(done) = end_request(t, d) {
                    return Flow::Done(done);
                }
            }
            Started::Iterating => {}
            Started::Stop(done) => return Flow::Done(done),
        }
    }
}

/// What starting the buffer's next request led to.
enum Started {
    /// The app answered; the request is over.
    Answered,
    /// The app returned a body iterator to drain.
    Iterating,
    /// This turn ends.
    Stop(Done),
}

/// What parsing found, decided inside the parse (which borrows the buffer).
enum Parsed {
    Started(Started),
    Incomplete,
    Refused(HttpError),
    NeedBody {
        head_len: usize,
        framing: Framing,
        expect: bool,
    },
}

/// Parses the next request at `d.start` and calls the app for it.
fn start_request(t: &mut AppThread<'_>, d: &mut Desk) -> Started {
    let shared = t.shared;
    let config = &shared.config;
    let Desk {
        conn,
        ex,
        env,
        headers,
        path,
        app,
        peer,
        client,
        input,
        iter,
        start,
        head_len,
        line,
        body_len,
        version,
        stall,
        gone,
        began,
        ..
    } = d;
    let counted = t.metrics.is_some();
    let conn = conn.as_mut().expect("a desk at work holds its connection");
    let pending = &conn.buf[*start..];
    if pending.is_empty() {
        // Every request answered: nothing to parse (and no header slots to
        // set up for nothing).
        return Started::Stop(end_turn(t, d, Done::Idle));
    }
    let limits = &config.limits;
    let spooled = matches!(conn.ahead.as_deref(), Some(Ahead::Spooled { .. }));
    let parsed = parse_request(pending, limits, Some(&mut t.memo), |parsed| {
        let head = match parsed {
            Ok(Some(head)) => head,
            Ok(None) => return Parsed::Incomplete,
            Err(e) => return Parsed::Refused(e),
        };
        let after = &pending[head.len..];
        // Where the body is: read ahead (in a file, or checked whole in the
        // buffer), or still to come.
        *body_len = 0;
        *input = if spooled {
            match conn.ahead.take().map(|a| *a) {
                Some(Ahead::Spooled { file, len }) => Input::Spooled { file, len, pos: 0 },
                _ => unreachable!("checked above"),
            }
        } else if head.framing == Framing::Empty {
            Input::Empty
        } else if config.request_buffering {
            match body_end(head.framing, after, limits.body) {
                Ok(Some(len)) => {
                    *body_len = len;
                    Input::Buffered(BodyReader::new(head.framing, after, false, 0))
                }
                Ok(None) => {
                    return Parsed::NeedBody {
                        head_len: head.len,
                        framing: head.framing,
                        expect: head.expect_continue,
                    }
                }
                Err(e) => return Parsed::Refused(e),
            }
        } else {
            Input::Streamed(
                BodyReader::new(head.framing, after, head.expect_continue, limits.body),
                None,
            )
        };
        *head_len = head.len;
        *version = head.version;
        // The request's start, for its metrics and an access log's
        // duration: one clock read serves both.
        if counted || config.access_style.clock {
            *began = metrics::ticks();
        }
        let base = conn.buf.as_ptr() as usize;
        *line = (head.line.as_ptr() as usize - base, head.line.len());

        headers.clear();
        let entry = |h: &Field<'_>| nwsgi_header {
            name: nwsgi_str::from_bytes(h.name),
            value: nwsgi_str::from_bytes(h.value),
        };
        // Names with '_' are rare: the parser noted whether there is one,
        // and the list is then built as it comes.
        let underscored = |h: &Field<'_>| h.name.contains(&b'_');
        match config.header_map {
            HeaderMap::Drop if head.underscored => {
                headers.extend(head.headers.iter().filter(|h| !underscored(h)).map(entry));
            }
            HeaderMap::Refuse if head.underscored => {
                return Parsed::Refused(HttpError::BadRequest(
                    "a header name with '_' (--header-map refuse)",
                ));
            }
            _ => headers.extend(head.headers.iter().map(entry)),
        }
        let path_info: &[u8] = if percent_decode(head.path, path) {
            // A decoded NUL would cut the path short for an app that
            // keeps it as a C string: the path it checked is not the one
            // it uses.
            if path.contains(&0) {
                return Parsed::Refused(HttpError::BadRequest("%00 in the path"));
            }
            path
        } else {
            head.path
        };
        // SAFETY: the environ points into the connection's buffer (not
        // touched until the request ends: reads ahead and leftovers are
        // appended only after `end_request`), the header list and the
        // decoded path (refilled only for the next request) and the peer
        // text (set only between connections); all are in this desk or its
        // connection, which stay put until the request ends.
        unsafe {
            env.fill(
                head,
                EnvironParts {
                    api: &HOST_API,
                    headers,
                    path_info,
                    peer,
                    multithread: config.threads > 1,
                    multiprocess: config.multiprocess,
                    underscores: config.header_map == HeaderMap::Dangerous,
                },
            );
        }
        // Several apps: the longest mount prefix of the decoded path, out
        // of line (a lone app at "/" has no router: this is one test).
        if let Some(router) = &shared.router {
            // SAFETY: `path_info` stays in place as `fill` requires.
            *app = unsafe { mount_request(router, env, path_info) }.unwrap_or(UNMOUNTED);
        }
        // A trusted proxy's word on who the client is and how it came:
        // one comparison for any other peer, and one for a proxy's request
        // that carries no forwarding header (the parser noted whether any
        // field is one).
        let mut scheme = conn.scheme;
        if conn.forwarding == Forwarding::Believed {
            // A trusted proxy's X-Request-Id is taken (looked up only if
            // something asks for the id).
            env.trust_request_id();
        }
        if conn.forwarding == Forwarding::Believed && head.forwarding {
            let trusted = |ip| config.forwarded_allow.contains(ip);
            if let Some(said) = forwarded::reported(head.headers, trusted) {
                if let Some(why) = said.ignored {
                    tracing::debug!(peer = %conn.peer, "forwarding header not believed: {why}");
                }
                if let Some((ip, port)) = said.client {
                    client.set(ip, port);
                    // SAFETY: the client text is in this desk, refilled
                    // only for the next request.
                    unsafe { env.set_client(client) };
                }
                scheme = said.scheme.unwrap_or(scheme);
            }
        }
        if scheme != Scheme::Http {
            env.set_scheme(scheme);
        }
        if conn.scheme == Scheme::Https {
            if let Some(peer) = conn.io.tls_peer() {
                env.set_tls(peer);
            }
        }
        let keep_alive = head.keep_alive
            && config.keep_alive_enabled()
            && !shared.stopping.load(Ordering::Relaxed);
        ex.begin(head.version, head.method == b"HEAD", keep_alive);
        // A 503 is still a clean answer if -t fires: nothing of this
        // response, nor of an earlier one, waits unsent.
        t.stint.begin(head.line, conn.io.fd(), ex.out.is_empty());
        let mut wire = Wire {
            io: &conn.io,
            buffered: after,
            line: head.line,
            peer: &conn.peer,
            input,
            stint: &mut t.stint,
            shared,
            stall,
            gone,
        };
        let ex: *mut Exchange = ex;
        // The bounds check indexing would do anyway tells an unmounted
        // path (`UNMOUNTED`) apart: nothing more for a lone app.
        let Some(mounted) = shared.apps.get(*app) else {
            // SAFETY: as for `exchange::call` below; no plugin code runs.
            unsafe { not_mounted(ex, &wire) };
            return Parsed::Started(Started::Answered);
        };
        let plugin = &mounted.plugin;
        // SAFETY: the exchange is boxed in this desk and stays there until
        // the request ends (`close`); the environ likewise; this thread
        // runs every step of the request; nothing else borrows the exchange
        // until then (the wire borrows other fields).
        let body = unsafe { exchange::call(ex, plugin, env, &mut wire) };
        match body {
            Some(body) => {
                *iter = Some(body);
                Parsed::Started(Started::Iterating)
            }
            None => Parsed::Started(Started::Answered),
        }
    });
    match parsed {
        Parsed::Started(s) => s,
        Parsed::Incomplete => Started::Stop(end_turn(t, d, Done::Idle)),
        Parsed::Refused(e) => {
            let conn = d
                .conn
                .as_ref()
                .expect("a desk at work holds its connection");
            tracing::info!(peer = %conn.peer, "bad request: {e}");
            if let Some(slot) = t.metrics {
                slot.counters.refused(e.status());
            }
            encode_error(&mut d.ex.out, e.status(), e.reason(), false);
            Started::Stop(end_turn(t, d, Done::Close))
        }
        Parsed::NeedBody {
            head_len,
            framing,
            expect,
        } => {
            // The head goes to the front of the buffer and the event loop
            // reads the body after it; the responses before it go first.
            let conn = d
                .conn
                .as_mut()
                .expect("a desk at work holds its connection");
            conn.buf.drain(..d.start);
            d.start = 0;
            let mut intake = Intake::new(head_len, Decode::new(framing), Instant::now());
            intake.expect_continue = expect;
            conn.ahead = Some(Box::new(Ahead::Reading(intake)));
            Started::Stop(end_turn(t, d, Done::NeedBody))
        }
    }
}

/// `Desk::app` of a request no mount takes: no app has this index.
const UNMOUNTED: usize = usize::MAX;

/// Routes a request among several apps and splits its environ's path
/// (SCRIPT_NAME, PATH_INFO) at the mount; None: no app is mounted there.
///
/// # Safety
/// As for `HostEnviron::fill`: `path_info` stays in place and unchanged
/// until the request ends.
#[cold]
#[inline(never)]
unsafe fn mount_request(router: &Router, env: &mut HostEnviron, path_info: &[u8]) -> Option<usize> {
    let route = router.route(path_info)?;
    let (script_name, rest) = path_info.split_at(route.split);
    // SAFETY: both are parts of `path_info` (the caller's contract).
    unsafe { env.set_mount(route.app, script_name, rest) };
    Some(route.app)
}

/// No mount takes the request's path: the host answers 404 itself, as a
/// request an app answered (logged, its body skipped, the connection kept
/// when it may be).
///
/// # Safety
/// `ex` points to this request's exchange, begun, and nothing else
/// borrows it.
#[cold]
#[inline(never)]
unsafe fn not_mounted(ex: *mut Exchange, wire: &Wire<'_, '_>) {
    let may = wire.may_keep_alive();
    // SAFETY: per the contract.
    unsafe { (*ex).answer_status(404, "Not Found", may) };
}

/// Pulls chunks from the app's body iterator until it ends (then closes
/// it) or its client falls behind (then the request is parked).
enum Iterated {
    Ended,
    Park,
}

fn iterate(t: &mut AppThread<'_>, d: &mut Desk) -> Iterated {
    let shared = t.shared;
    let Desk {
        conn,
        ex,
        env: _,
        app,
        input,
        iter,
        start,
        head_len,
        line,
        stall,
        gone,
        ..
    } = d;
    let conn = conn.as_mut().expect("a desk at work holds its connection");
    let body = iter.take().expect("iterating");
    let (at, len) = *line;
    let buf = &conn.buf;
    let mut wire = Wire {
        io: &conn.io,
        buffered: &buf[*start + *head_len..],
        line: &buf[at..at + len],
        peer: &conn.peer,
        input,
        stint: &mut t.stint,
        shared,
        stall,
        gone,
    };
    let ex: *mut Exchange = ex;
    let plugin = &shared.apps[*app].plugin;
    if !*wire.gone {
        loop {
            // SAFETY: as in `start_request`: the exchange and environ stay
            // in this desk until `close`; `body` came from this request's
            // call and is not closed yet.
            let pulled = unsafe { exchange::pull(ex, plugin, &body, &mut wire) };
            if pulled == Pulled::Ended || *wire.gone || wire.stint.abandoned {
                break;
            }
            // SAFETY: between plugin calls the exchange is ours to read.
            let unsent = unsafe { (*ex).out.len() };
            if over_high_water(unsent, shared) {
                // The client is behind: the request waits for it without a
                // thread. App code stops here (client time, not app time).
                if !wire.stint.pause() {
                    break;
                }
                let io = wire.io;
                wire.stall
                    .get_or_insert_with(|| Stall::new(Instant::now(), io.unacked()));
                // A parked request may wait long: it keeps what it has to
                // send, not the room a burst grew its buffer to.
                // SAFETY: between plugin calls the exchange is ours to change.
                let out = unsafe { &mut (*ex).out };
                if out.capacity() > 2 * out.len() + 16 * 1024 {
                    out.shrink_to(out.len());
                }
                *iter = Some(body);
                return Iterated::Park;
            }
        }
    }
    if *wire.gone {
        // SAFETY: between plugin calls the exchange is ours to change.
        unsafe { (*ex).client_gone() };
    }
    // SAFETY: as above; closed exactly once (`iter` was taken).
    unsafe { exchange::close(ex, plugin, &body, &mut wire) };
    Iterated::Ended
}

/// Whether a producer with `unsent` bytes on its connection holds back.
fn over_high_water(unsent: usize, shared: &Shared) -> bool {
    unsent > HIGH_WATER
        || (unsent > LOW_WATER && shared.queued.load(Ordering::Relaxed) > WORKER_HIGH_WATER)
}

/// The request is over: log it, step past it in the buffer, and decide
/// whether the turn goes on. None: serve the next request in the buffer.
fn end_request(t: &mut AppThread<'_>, d: &mut Desk) -> Option<Done> {
    // App code for this request is over; if the event loop took it over
    // meanwhile (-t), its client was answered (503): drop everything.
    let kept = t.stint.end();
    let shared = t.shared;
    let timed = shared.config.access_style.clock;
    let now = if t.metrics.is_some() || timed {
        metrics::ticks()
    } else {
        0
    };
    if let Some(slot) = t.metrics {
        count_end(slot, d, kept, now);
    }
    if !kept {
        return Some(Done::Gone);
    }
    if let Some(log) = &shared.access_log {
        let entry = Entry {
            env: &d.env,
            ex: &d.ex,
            version: d.version,
            took: timed.then(|| metrics::duration(now.wrapping_sub(d.began))),
        };
        log.record(&shared.config.access_style, &entry);
    }
    let conn = d
        .conn
        .as_mut()
        .expect("a desk at work holds its connection");
    conn.served = true;
    // Past the head and the body (the environ's pointers into the buffer
    // are dead from here). Only a streamed body's reader is moved out: the
    // others stay where they are until the next request replaces them.
    d.start += d.head_len;
    match &d.input {
        Input::Empty => {}
        Input::Buffered(_) => d.start += d.body_len,
        Input::Spooled { .. } => d.input = Input::Empty,
        Input::Streamed(..) => {
            let Input::Streamed(reader, _) = std::mem::replace(&mut d.input, Input::Empty) else {
                unreachable!("matched above");
            };
            let (used, leftover, decode) = reader.into_rest();
            // What follows the body's consumed part goes to the front of
            // the buffer, then what was read past the buffer: the rest of
            // the body, or the next request.
            conn.buf.drain(..d.start + used);
            d.start = 0;
            conn.buf.extend_from_slice(&leftover);
            if !decode.is_done() && d.ex.keep_alive {
                // The app left some of the body: the event loop drops it,
                // from the front of the buffer on (the response said
                // keep-alive only if that is short).
                conn.ahead = Some(Box::new(Ahead::Discarding(Intake::discard(
                    0,
                    decode,
                    Instant::now(),
                ))));
                return Some(end_turn(t, d, Done::Idle));
            }
        }
    }
    if d.gone {
        return Some(Done::Gone);
    }
    if !d.ex.keep_alive {
        return Some(end_turn(t, d, Done::Close));
    }
    if d.ex.out.len() >= FLUSH_AT {
        let conn = d
            .conn
            .as_ref()
            .expect("a desk at work holds its connection");
        if conn.io.send_from(&mut d.ex.out).is_err() {
            return Some(Done::Gone);
        }
        if !d.ex.out.is_empty() {
            // The client is behind: let the event loop send the rest
            // before more of its requests are served.
            return Some(end_turn(t, d, Done::Idle));
        }
    }
    None
}

/// The request's metrics, in this thread's slot: its method, status (the
/// 503 the event loop answered if it took the request over), duration and
/// response body bytes; `now` in `metrics` ticks. Out of line, and a leaf
/// (the clock is read by the caller): inlined into `end_request` it costs
/// more than the call, in registers the rest of the function then lacks.
#[inline(never)]
fn count_end(slot: &ThreadSlot, d: &Desk, kept: bool, now: u64) {
    let status = if kept { d.ex.status } else { 503 };
    let method = metrics::method_index(d.env.method());
    slot.counters
        .end(now.wrapping_sub(d.began), method, status, d.ex.body_bytes);
}

/// Ends the turn: the consumed bytes leave the buffer, and what the
/// socket does not take of the responses stays with the connection for the
/// event loop to send.
fn end_turn(t: &mut AppThread<'_>, d: &mut Desk, how: Done) -> Done {
    let _ = t;
    let conn = d
        .conn
        .as_mut()
        .expect("a desk at work holds its connection");
    if matches!(how, Done::Gone) {
        return how;
    }
    if d.start > 0 {
        conn.buf.drain(..d.start);
        d.start = 0;
    }
    conn.scan = Default::default();
    if conn.buf.is_empty() {
        // Idle until the next request: the connection keeps no buffer.
        release_buffer(&mut conn.buf);
    }
    if !d.ex.out.is_empty() {
        if conn.io.send_from(&mut d.ex.out).is_err() {
            return Done::Gone;
        }
        if !d.ex.out.is_empty() {
            let bytes = if d.ex.out.len() < 4096 {
                let copy = d.ex.out.clone();
                d.ex.out.clear();
                copy
            } else {
                std::mem::replace(&mut d.ex.out, Vec::with_capacity(16 * 1024))
            };
            let (at, len) = d.line;
            let line = conn
                .buf
                .get(at..at + len)
                .map(line_text)
                .unwrap_or_default();
            let stall = d
                .stall
                .take()
                .unwrap_or_else(|| Stall::new(Instant::now(), conn.io.unacked()));
            conn.pending = Some(Box::new(Pending { bytes, stall, line }));
        }
    }
    d.stall = None;
    how
}

/// The connection, as the exchange sees it during one entry into app code.
struct Wire<'w, 's> {
    io: &'w Transport,
    /// The bytes after the head in the connection's buffer.
    buffered: &'w [u8],
    /// The request line, for the scoreboard and the log.
    line: &'w [u8],
    peer: &'w Endpoint,
    input: &'w mut Input,
    stint: &'w mut Stint<'s>,
    shared: &'w Shared,
    stall: &'w mut Option<Stall>,
    gone: &'w mut bool,
}

impl Wire<'_, '_> {
    /// Waits until the socket can take more of `out`, sending what it
    /// takes, until `done(out)`; the client's time, not the app's. Err when
    /// the client is gone or too slow.
    fn wait_to_send(
        &mut self,
        out: &mut Vec<u8>,
        done: impl Fn(&Vec<u8>, &Shared) -> bool,
    ) -> Result<(), Gone> {
        if !self.stint.pause() {
            return Err(Gone);
        }
        let rule = self.shared.config.send_rule();
        let io = self.io;
        let stall = self
            .stall
            .get_or_insert_with(|| Stall::new(Instant::now(), io.unacked()));
        let result = loop {
            if done(out, self.shared) {
                break Ok(());
            }
            stall.observe(io.unacked(), Instant::now());
            match self.io.wait(Ready::Writable, stall.deadline(rule)) {
                Ok(()) => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::TimedOut {
                        tracing::info!(
                            peer = %self.peer,
                            request = ?line_text(self.line),
                            request_id = %CurrentRequestId,
                            unsent = out.len(),
                            "client too slow reading the response; closed"
                        );
                    }
                    break Err(Gone);
                }
            }
            match self.io.send_from(out) {
                Ok(n) => stall.wrote(n),
                Err(_) => break Err(Gone),
            }
        };
        if out.is_empty() {
            *self.stall = None;
        }
        if result.is_err() {
            *self.gone = true;
        }
        // App code again, under a new number.
        self.stint.begin(self.line, self.io.fd(), false);
        result
    }
}

impl Client for Wire<'_, '_> {
    fn send(&mut self, out: &mut Vec<u8>, wait: Wait) -> Result<(), Gone> {
        if out.is_empty() {
            return Ok(());
        }
        let io = self.io;
        let sent = self
            .stint
            .write(|| {
                let r = io.send_from(out);
                let any = matches!(r, Ok(n) if n > 0);
                (r, any)
            })
            .ok_or(Gone)?;
        let n = match sent {
            Ok(n) => n,
            Err(_) => {
                *self.gone = true;
                return Err(Gone);
            }
        };
        if out.is_empty() {
            *self.stall = None;
            return Ok(());
        }
        // The client is behind: from now on its rate is measured (the only
        // clock read, and only for a lagging client).
        match self.stall {
            Some(stall) => stall.wrote(n),
            // What the kernel holds now includes these `n` bytes.
            None => *self.stall = Some(Stall::new(Instant::now(), self.io.unacked())),
        }
        if wait == Wait::Write && over_high_water(out.len(), self.shared) {
            // The app's write(): it returns once the client has caught up.
            return self.wait_to_send(out, |out, shared| {
                !over_high_water(out.len(), shared) && out.len() <= LOW_WATER || out.is_empty()
            });
        }
        if wait == Wait::Last && self.shared.queued.load(Ordering::Relaxed) > WORKER_HIGH_WATER {
            // A large last chunk while the worker holds too much for slow
            // clients: it waits its turn rather than grow that further.
            return self.wait_to_send(out, |out, shared| {
                out.len() <= LOW_WATER || shared.queued.load(Ordering::Relaxed) <= WORKER_HIGH_WATER
            });
        }
        Ok(())
    }

    fn read_body(
        &mut self,
        dst: &mut [u8],
        may_continue: bool,
        out: &mut Vec<u8>,
    ) -> Result<usize, BodyError> {
        match self.input {
            Input::Empty => Ok(0),
            Input::Buffered(reader) => reader.read(self.buffered, &mut Whole, dst),
            Input::Spooled { file, len, pos } => {
                let want = dst
                    .len()
                    .min(usize::try_from(*len - *pos).unwrap_or(usize::MAX));
                if want == 0 {
                    return Ok(0);
                }
                let n = file
                    .read_at(&mut dst[..want], *pos)
                    .map_err(BodyError::Io)?;
                if n == 0 {
                    return Err(BodyError::Closed);
                }
                *pos += n as u64;
                Ok(n)
            }
            Input::Streamed(reader, rate) => {
                let mut source = Upload {
                    io: self.io,
                    line: self.line,
                    peer: self.peer,
                    stint: self.stint,
                    rule: self.shared.config.body_rule(),
                    rate,
                    out,
                    may_continue,
                };
                let r = reader.read(self.buffered, &mut source, dst);
                if matches!(r, Err(BodyError::Closed | BodyError::Io(_))) {
                    *self.gone = true;
                }
                r
            }
        }
    }

    fn may_keep_alive(&self) -> bool {
        let body_ok = match &self.input {
            Input::Streamed(reader, _) => {
                reader.is_done()
                    || (reader.expect != crate::http1::body::Continue::Expected
                        && reader.remaining().is_some_and(|n| n <= DISCARD_MAX))
            }
            _ => true,
        };
        body_ok && !self.shared.stopping.load(Ordering::Relaxed)
    }

    fn request_line(&self) -> &[u8] {
        self.line
    }

    fn progress(&mut self) {
        if !self.stint.progress() {
            *self.gone = true;
        }
    }
}

/// The source of a body already whole in the buffer: never asked.
struct Whole;

impl BodySource for Whole {
    fn read_more(&mut self, _: &mut Vec<u8>, _: usize) -> io::Result<usize> {
        Ok(0)
    }

    fn send_continue(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The client's socket as an upload's source (`--no-request-buffering`):
/// the app thread waits for the client, at its minimum rate, and that wait
/// is not app time.
struct Upload<'u, 's> {
    io: &'u Transport,
    line: &'u [u8],
    peer: &'u Endpoint,
    stint: &'u mut Stint<'s>,
    rule: crate::runtime::rate::MinRate,
    rate: &'u mut Option<Rate>,
    /// Pending responses go out before a `100 Continue`, keeping order.
    out: &'u mut Vec<u8>,
    may_continue: bool,
}

impl BodySource for Upload<'_, '_> {
    fn read_more(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        buf.reserve(max);
        loop {
            match self.io.recv_append(buf, max) {
                Ok(n) => {
                    // Timed only once the client made us wait (no clock
                    // read for an upload that keeps up).
                    if let Some(rate) = self.rate.as_mut() {
                        rate.add(n, Instant::now());
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if !self.stint.pause() {
                return Err(io::ErrorKind::ConnectionAborted.into());
            }
            let rate = self.rate.get_or_insert_with(|| Rate::new(Instant::now()));
            let waited = self.io.wait(Ready::Readable, rate.deadline(self.rule));
            self.stint.begin(self.line, self.io.fd(), false);
            if let Err(e) = waited {
                if e.kind() == io::ErrorKind::TimedOut {
                    tracing::info!(
                        peer = %self.peer,
                        request = ?line_text(self.line),
                        request_id = %CurrentRequestId,
                        received = rate.bytes(),
                        "client too slow sending the request body"
                    );
                }
                return Err(e);
            }
        }
    }

    fn send_continue(&mut self) -> io::Result<()> {
        if !self.may_continue {
            return Ok(());
        }
        encode_continue(self.out);
        let deadline = Instant::now() + self.rule.grace;
        while !self.out.is_empty() {
            self.io.send_from(self.out)?;
            if !self.out.is_empty() {
                self.io.wait(Ready::Writable, deadline)?;
            }
        }
        Ok(())
    }
}
