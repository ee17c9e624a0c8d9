//! One request as the plugin sees it: the `Exchange` behind the
//! `nwsgi_request *` it holds (what the host callbacks in `api` act on), and
//! the steps call → next… → close that turn the app's output into response
//! bytes. The runtime drives the steps one at a time, so it can put a
//! request aside between two chunks (a client that stopped reading) and
//! take it up again later.
//!
//! The response head is held (validated and pre-encoded) from start_response
//! until the first non-empty body bytes, so exc_info can still replace it
//! (PEP 3333). Framing is chosen when the head is committed: the app's own
//! Content-Length; else the exact length when the first chunk is also the
//! last (NWSGI_BODY_LAST) or the body is empty; else chunked on HTTP/1.1 and
//! close-delimited on HTTP/1.0.
//!
//! The exchange knows nothing of sockets: what it needs of the connection
//! (sending, the request body, whether the worker is stopping) it asks a
//! `Client`, which the runtime lends it for each entry into plugin code.
use std::cell::Cell;
use std::fmt;
use std::ptr::{self, NonNull};

use abi::ffi::{
    nwsgi_body, nwsgi_header, nwsgi_request, nwsgi_response_head, nwsgi_str, NWSGI_BODY_END,
    NWSGI_BODY_LAST, NWSGI_BODY_MORE, NWSGI_E_BAD_BODY, NWSGI_E_DISCONNECTED, NWSGI_E_HEADERS_SENT,
    NWSGI_E_INVALID, NWSGI_E_STATE, NWSGI_OK,
};

use crate::gateway::environ::HostEnviron;
use crate::gateway::plugin::{Image, Plugin};
use crate::http1::body::BodyError;
use crate::http1::error::HttpError;
use crate::http1::parse::Version;
use crate::http1::response::{
    encode_chunk, encode_error, encode_head, encode_last_chunk, status_forbids_body, BodyFraming,
    ResponseHead,
};
use crate::text::Shown;

/// The client is gone (reset, closed, or too slow to read): stop sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// When handing output to a slow client may hold the app's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Never: an iterator's chunk (a client that stops reading gets the
    /// request parked instead, by the runtime, between two chunks).
    Never,
    /// The app's write(): until what is left is below the connection's
    /// high-water mark (PEP 3333: write blocks).
    Write,
    /// A large last chunk: only while the worker holds more than its total
    /// for slow clients (the bytes are copied; the wait bounds memory).
    Last,
}

/// A last chunk longer than this is handed to the client at once rather
/// than waiting in `out` for the batch.
pub const LAST_SEND_AT: usize = 64 * 1024;

/// What an exchange needs of the connection it answers, lent by the
/// runtime for each entry into plugin code (`call`, `pull`, `close`).
pub trait Client {
    /// Hands `out` to the client: what the socket takes now is sent and
    /// removed from `out`; the rest stays in `out` for the runtime to send.
    /// `wait` says whether a slow client may hold this thread meanwhile;
    /// that wait is the client's time, not the app's.
    fn send(&mut self, out: &mut Vec<u8>, wait: Wait) -> Result<(), Gone>;
    /// wsgi.input: body bytes into `dst` (Ok(0) at its end). `may_continue`:
    /// a `100 Continue` may still be sent (it goes after what is in `out`).
    fn read_body(
        &mut self,
        dst: &mut [u8],
        may_continue: bool,
        out: &mut Vec<u8>,
    ) -> Result<usize, BodyError>;
    /// Whether the connection may stay open after this response: the
    /// worker is not stopping, and what the app has not read of the
    /// request body can be dropped without closing it.
    fn may_keep_alive(&self) -> bool;
    /// The app produced a chunk: it is making progress (for `-t`).
    fn progress(&mut self);
    /// The request line, as received (for log lines about the request).
    fn request_line(&self) -> &[u8];
}

/// Where the response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// start_response not called yet.
    NotStarted,
    /// start_response was given an invalid status or header: the answer
    /// is a 500 whatever the app does next.
    Invalid,
    /// Status and headers held in `head`; nothing of them is sent.
    Started,
    /// The head is committed to `out`; body bytes follow in `framing`.
    Sending(BodyFraming),
    /// The response is complete (or a canned error replaced it).
    Done,
    /// The byte stream to the client is unusable (disconnect, broken
    /// framing, exc_info after the head): stop and close the connection.
    Aborted,
}

/// What pulling one chunk from the app's body iterator led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// A chunk was handed to the client; more may follow.
    More,
    /// The body ended (last chunk, end, error, or the client is gone):
    /// close the iterator.
    Ended,
}

/// The request behind the app's `nwsgi_request *`: everything the host
/// callbacks need. It lives at a fixed address from `call` until `close`
/// returns (the runtime keeps it boxed), because the app may keep the
/// handle in its iterator and use it from `next`.
pub struct Exchange {
    /// Response bytes not handed to the socket yet. Earlier pipelined
    /// responses may still be in here: they share one write.
    pub out: Vec<u8>,
    /// The response head being built; also remembers the static heads seen
    /// (ABI 1.2), so it is kept from one request to the next.
    head: ResponseHead,
    version: Version,
    is_head: bool,
    /// Cleared when the connection must close after this response.
    pub keep_alive: bool,
    phase: Phase,
    /// The app gave the rest of the body with write_last: the body
    /// iterator is not asked for more.
    body_complete: bool,
    /// Bytes of body the app's Content-Length still allows (Length only).
    remaining: u64,
    /// A malformed or timed-out body: answered with its own status.
    body_error: Option<HttpError>,
    /// For the access log: the status sent, and the body bytes handed to
    /// the connection (not what the app produced: what the framing let
    /// through, less what a client that went away never took).
    pub status: u16,
    pub body_bytes: u64,
    /// The environ of the request, for its id in log lines (null: none;
    /// see `attach`).
    env: *const HostEnviron,
    /// Where the plugin's image lies: a static head inside it is
    /// remembered by address (set for each call).
    image: Image,
    /// The connection, while plugin code runs for this request (set by
    /// `enter`, cleared by `leave`). A raw pointer: it borrows the
    /// runtime's stack frame for exactly that long.
    client: Option<NonNull<dyn Client>>,
}

impl Default for Exchange {
    fn default() -> Exchange {
        Exchange {
            out: Vec::with_capacity(16 * 1024),
            head: ResponseHead::new(),
            version: Version::Http11,
            is_head: false,
            keep_alive: false,
            phase: Phase::Done,
            body_complete: false,
            remaining: 0,
            body_error: None,
            status: 0,
            body_bytes: 0,
            env: ptr::null(),
            image: Image::default(),
            client: None,
        }
    }
}

impl Exchange {
    /// Readies the exchange for a new request (`out` keeps what earlier
    /// pipelined responses left in it).
    pub fn begin(&mut self, version: Version, is_head: bool, keep_alive: bool) {
        self.version = version;
        self.is_head = is_head;
        self.keep_alive = keep_alive;
        self.phase = Phase::NotStarted;
        self.body_complete = false;
        self.remaining = 0;
        self.body_error = None;
        self.status = 0;
        self.body_bytes = 0;
    }

    /// A header of the response the app gave (for the access log), when
    /// the response sent is the app's: its text, or the app's
    /// Content-Length (kept as a number). The status is set only by a
    /// successful start_response (from `head`) or by the host's own answer
    /// (`answer_error`, which empties `head`), and is 0 for neither: a head
    /// left from an earlier request never matches.
    pub fn response_header(&self, name: &[u8]) -> Option<Result<&[u8], u64>> {
        if self.status == 0 || self.head.status() != self.status {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            return self.head.content_length().map(Err);
        }
        self.head.header(name).map(Ok)
    }

    /// Names the environ this exchange's requests are described by (for
    /// the request id in log lines).
    ///
    /// # Safety
    /// `env` stays at its address, alive, for as long as this exchange is
    /// used (the runtime keeps both in the same boxed desk).
    pub unsafe fn attach(&mut self, env: *const HostEnviron) {
        self.env = env;
    }

    pub fn aborted(&self) -> bool {
        self.phase == Phase::Aborted
    }

    /// The request's id and request line, for a log line about it. Only
    /// log paths ask: kept out of line, so the hot callers stay lean.
    #[cold]
    #[inline(never)]
    /// The index of the app serving this request (its mount).
    pub(crate) fn app(&self) -> usize {
        if self.env.is_null() {
            return 0;
        }
        // SAFETY: as in `identity`.
        unsafe { &*self.env }.app()
    }

    pub(crate) fn identity(&mut self) -> (&[u8], &[u8]) {
        let id: &[u8] = if self.env.is_null() {
            b"-"
        } else {
            // SAFETY: set by `attach`, whose contract keeps the environ
            // alive and in place while this exchange is used.
            unsafe { &*self.env }.request_id()
        };
        let line = match self.client {
            // SAFETY: as in `client_and_out`: the client is lent for the
            // current entry into plugin code, on this thread, and outlives
            // this borrow of the exchange.
            Some(c) => unsafe { &*c.as_ptr() }.request_line(),
            None => &[],
        };
        (id, line)
    }

    /// The app handed over something the header forbids (a NULL pointer
    /// with a length, ...): logged with the request, and the answer is a
    /// 500, or the connection is cut if the response had begun. Returns
    /// NWSGI_E_INVALID for the app.
    #[cold]
    #[inline(never)]
    pub(crate) fn misuse(&mut self, call: &str, why: impl fmt::Display) -> i32 {
        let phase = self.phase;
        let (id, line) = self.identity();
        let request = Shown(line);
        match phase {
            Phase::NotStarted | Phase::Started | Phase::Invalid => {
                tracing::error!(request_id = %Shown(id), request = %request, "app error in {call}: {why}; answering 500");
                self.phase = Phase::Invalid;
            }
            Phase::Sending(_) => {
                tracing::error!(
                    request_id = %Shown(id), request = %request,
                    "app error in {call}: {why}; the response had begun, closing the connection"
                );
                self.abort();
            }
            Phase::Done | Phase::Aborted => {
                tracing::error!(request_id = %Shown(id), request = %request, "app error in {call}: {why}");
            }
        }
        NWSGI_E_INVALID
    }

    /// The key `start_response_static` remembers `head` by: its address
    /// when it lies in the plugin's image (static storage, unchanged while
    /// loaded, as the header demands), else 0: a head on the stack or the
    /// heap may hold another request's headers at the same address later.
    pub(crate) fn static_key(&self, head: &nwsgi_response_head) -> usize {
        let addr = ptr::from_ref(head) as usize;
        if self
            .image
            .contains(addr, std::mem::size_of::<nwsgi_response_head>())
        {
            addr
        } else {
            0
        }
    }

    /// Whether the head known by `key` was validated before (and may be
    /// used without reading it again).
    pub(crate) fn knows_static(&self, key: usize) -> bool {
        self.head.knows_static(key)
    }

    /// Whether any byte of this request's response was produced.
    pub fn started_sending(&self) -> bool {
        matches!(self.phase, Phase::Sending(_) | Phase::Aborted)
    }

    /// The client lent for the current entry into plugin code.
    fn client(&mut self) -> Option<&mut dyn Client> {
        self.client_and_out().0
    }

    /// The client, and `out` beside it.
    fn client_and_out(&mut self) -> (Option<&mut dyn Client>, &mut Vec<u8>) {
        // SAFETY: set by `enter` from a `&mut dyn Client` that outlives the
        // entry, cleared by `leave` before that borrow ends; between the
        // two only this exchange uses it, on this thread.
        let client = self.client.map(|mut c| unsafe { c.as_mut() });
        (client, &mut self.out)
    }

    /// `static_key` is the address of the app's static head (ABI 1.2
    /// `start_response_static`) the arguments come from, or 0.
    pub(crate) fn start_response(
        &mut self,
        static_key: usize,
        status: &[u8],
        headers: &[nwsgi_header],
        exc_info: Option<&[u8]>,
    ) -> i32 {
        match (self.phase, exc_info) {
            (Phase::NotStarted, None) => {}
            (Phase::NotStarted, Some(msg)) => {
                // Nothing to replace: accepted (PEP 3333 allows it), and
                // the error the app reports is not lost.
                let (id, line) = self.identity();
                tracing::warn!(
                    request_id = %Shown(id), request = %Shown(line), exc_info = %Shown(msg),
                    "app passed exc_info to its first start_response"
                );
            }
            (Phase::Invalid, _) => return NWSGI_E_INVALID,
            (Phase::Started, None) => return NWSGI_E_STATE,
            (Phase::Started, Some(msg)) => {
                let (id, line) = self.identity();
                tracing::warn!(
                    request_id = %Shown(id), request = %Shown(line), exc_info = %Shown(msg),
                    "app replaced its response head (start_response with exc_info)"
                );
            }
            (Phase::Sending(_) | Phase::Done | Phase::Aborted, None) => return NWSGI_E_STATE,
            (Phase::Sending(_) | Phase::Done | Phase::Aborted, Some(msg)) => {
                let (id, line) = self.identity();
                tracing::error!(
                    request_id = %Shown(id), request = %Shown(line), exc_info = %Shown(msg),
                    "app error after the response head was sent; aborting the connection"
                );
                self.abort();
                return NWSGI_E_HEADERS_SENT;
            }
        }
        let pairs = headers.iter().map(|h| {
            // SAFETY: the app's header strings are borrowed for this call.
            unsafe { (h.name.as_bytes(), h.value.as_bytes()) }
        });
        match self.head.set_static(static_key, status, pairs) {
            Ok(()) => {
                self.phase = Phase::Started;
                self.status = self.head.status();
                NWSGI_OK
            }
            Err(e) => {
                let (id, line) = self.identity();
                tracing::error!(
                    request_id = %Shown(id), request = %Shown(line), status = %Shown(status),
                    "invalid response from app: {e}; answering 500 instead"
                );
                self.phase = Phase::Invalid;
                NWSGI_E_INVALID
            }
        }
    }

    /// `start_response` for a static head `knows_static(key)` says is held
    /// (validated and encoded), without exc_info: its strings are not read.
    pub(crate) fn start_response_known(&mut self, key: usize) -> i32 {
        debug_assert!(self.knows_static(key));
        self.start_response(key, &[], &[], None)
    }

    /// Puts the held head into `out`, fixing the body framing.
    /// `known_len` is the whole body's length when it is already known.
    fn commit(&mut self, known_len: Option<u64>) {
        // Persistence is decided as late as possible: a worker told to stop
        // while this request ran says `Connection: close` now, and so does
        // a response the host will close after because the app left a
        // request body it cannot drop (RFC 9112 §9.6: say so in advance).
        if self.keep_alive && self.client().is_some_and(|c| !c.may_keep_alive()) {
            self.keep_alive = false;
        }
        let framing = if let Some(cl) = self.head.content_length() {
            BodyFraming::Length(cl)
        } else if let Some(n) = known_len {
            BodyFraming::Length(n)
        } else if self.version == Version::Http11 {
            BodyFraming::Chunked
        } else {
            self.keep_alive = false;
            BodyFraming::CloseDelimited
        };
        encode_head(
            &mut self.out,
            self.version,
            &mut self.head,
            framing,
            self.keep_alive,
            self.is_head,
        );
        self.remaining = match framing {
            BodyFraming::Length(n) => n,
            _ => 0,
        };
        self.phase = Phase::Sending(framing);
    }

    /// No body bytes go on the wire for HEAD and for 1xx/204/304.
    fn body_suppressed(&self) -> bool {
        self.is_head || status_forbids_body(self.status)
    }

    /// Appends body bytes in the committed framing. Err: the app gave more
    /// than its own Content-Length; what fits went in, the rest is dropped
    /// and the connection closes after it (its error, logged).
    fn append_body(&mut self, data: &[u8]) -> Result<(), ()> {
        let Phase::Sending(framing) = self.phase else {
            return Ok(());
        };
        if self.body_suppressed() {
            return Ok(());
        }
        match framing {
            BodyFraming::Length(_) => {
                if data.len() as u64 > self.remaining {
                    self.overflow(data);
                    return Err(());
                }
                self.remaining -= data.len() as u64;
                self.out.extend_from_slice(data);
            }
            BodyFraming::Chunked => encode_chunk(&mut self.out, data),
            BodyFraming::CloseDelimited => self.out.extend_from_slice(data),
        }
        self.body_bytes += data.len() as u64;
        Ok(())
    }

    /// More body than the app's own Content-Length: what fits goes out,
    /// the rest is dropped, and the connection closes after it.
    #[cold]
    #[inline(never)]
    fn overflow(&mut self, data: &[u8]) {
        let (fits, status) = (self.remaining as usize, self.status);
        let (id, line) = self.identity();
        tracing::error!(
            request_id = %Shown(id), request = %Shown(line), status,
            over = data.len() - fits,
            "app error: more body than its Content-Length; the rest is dropped \
             and the connection closes"
        );
        self.out.extend_from_slice(&data[..fits]);
        self.body_bytes += fits as u64;
        self.remaining = 0;
        self.abort();
    }

    /// The app's write(): transmitted before it returns.
    pub(crate) fn write(&mut self, data: &[u8]) -> i32 {
        if self.body_complete {
            return NWSGI_E_STATE;
        }
        match self.phase {
            Phase::NotStarted | Phase::Done => return NWSGI_E_STATE,
            Phase::Invalid => return NWSGI_E_INVALID,
            Phase::Aborted => return NWSGI_E_DISCONNECTED,
            Phase::Started => {
                if data.is_empty() {
                    return NWSGI_OK;
                }
                self.commit(None);
            }
            Phase::Sending(_) => {}
        }
        let fitted = self.append_body(data);
        if let Some(client) = self.client() {
            client.progress();
        }
        let sent = self.send_now(Wait::Write);
        if fitted.is_err() {
            return NWSGI_E_INVALID;
        }
        sent
    }

    /// The app's write_last (ABI 1.2): the rest of the body, as if the
    /// iterator had returned it with NWSGI_BODY_LAST.
    pub(crate) fn write_last(&mut self, data: &[u8]) -> i32 {
        // Refused before start_response, with no effect: the app may still
        // start and answer through its iterator.
        if self.body_complete || self.phase == Phase::NotStarted {
            return NWSGI_E_STATE;
        }
        // Whatever the outcome, the app has said its body ends here.
        self.body_complete = true;
        self.chunk(data, true)
    }

    /// A chunk from the body iterator.
    fn chunk(&mut self, data: &[u8], last: bool) -> i32 {
        match self.phase {
            Phase::NotStarted => {
                // Body before start_response: PEP 3333 forbids it.
                self.fail("app produced a body before calling start_response");
                return NWSGI_E_STATE;
            }
            // Already logged; the 500 goes out when the body ends.
            Phase::Invalid => return NWSGI_E_INVALID,
            Phase::Started if last => self.commit(Some(data.len() as u64)),
            Phase::Started if data.is_empty() => return NWSGI_OK,
            Phase::Started => self.commit(None),
            Phase::Sending(_) => {}
            Phase::Done | Phase::Aborted => return NWSGI_E_DISCONNECTED,
        }
        if self.append_body(data).is_err() {
            self.send_now(Wait::Never);
            return NWSGI_E_INVALID;
        }
        if last {
            // May wait in `out` to share a write with later pipelined
            // responses, unless it is large.
            if self.out.len() > LAST_SEND_AT {
                return self.send_now(Wait::Last);
            }
            return NWSGI_OK;
        }
        // Handed to the socket, or queued for the event loop to send: an
        // iterator's chunk never waits for the client on this thread.
        self.send_now(Wait::Never)
    }

    /// The client went away while the response was parked: what is left
    /// of it will not be sent (and it is not the app's doing).
    pub fn client_gone(&mut self) {
        // What is still in `out` never reaches the client: of the body,
        // the log counts only what went before it.
        let unsent = self.out.len() as u64;
        self.body_bytes = self.body_bytes.saturating_sub(unsent);
        self.abort();
    }

    /// Hands `out` to the client, waiting as `wait` allows.
    fn send_now(&mut self, wait: Wait) -> i32 {
        let aborted = self.phase == Phase::Aborted;
        let (Some(client), out) = self.client_and_out() else {
            return NWSGI_E_DISCONNECTED;
        };
        // Even after an abort, what was framed correctly is delivered.
        let sent = client.send(out, if aborted { Wait::Never } else { wait });
        if aborted {
            return NWSGI_E_DISCONNECTED;
        }
        match sent {
            Ok(()) => NWSGI_OK,
            Err(Gone) => {
                tracing::debug!("client went away while the app was sending");
                self.client_gone();
                NWSGI_E_DISCONNECTED
            }
        }
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> i64 {
        // `100 Continue` only while the final response has not begun
        // (RFC 9110 §10.1.1).
        let may_continue = matches!(
            self.phase,
            Phase::NotStarted | Phase::Invalid | Phase::Started
        );
        let (Some(client), out) = self.client_and_out() else {
            return NWSGI_E_DISCONNECTED as i64;
        };
        match client.read_body(buf, may_continue, out) {
            Ok(n) => n as i64,
            Err(BodyError::Malformed(e)) => {
                tracing::info!("bad request body: {e}");
                self.body_error = Some(e);
                self.keep_alive = false;
                NWSGI_E_BAD_BODY as i64
            }
            Err(BodyError::TimedOut) => {
                tracing::info!("client too slow sending the request body");
                self.body_error = Some(HttpError::RequestTimeout);
                self.keep_alive = false;
                NWSGI_E_BAD_BODY as i64
            }
            Err(BodyError::Closed) => {
                self.abort();
                NWSGI_E_DISCONNECTED as i64
            }
            Err(BodyError::Io(e)) => {
                tracing::debug!("reading the request body failed: {e}");
                self.abort();
                NWSGI_E_DISCONNECTED as i64
            }
        }
    }

    /// The app failed. Answer 500 (or the body's own 4xx) if nothing was
    /// sent, otherwise cut the connection: the client must not take a
    /// truncated body for a whole one.
    fn fail(&mut self, why: &str) {
        let (phase, body_error) = (self.phase, self.body_error.is_some());
        let (id, line) = self.identity();
        let request = Shown(line);
        match phase {
            Phase::NotStarted | Phase::Started if !body_error => {
                tracing::error!(request_id = %Shown(id), request = %request, "{why}; answering 500");
            }
            Phase::Sending(_) => {
                tracing::error!(
                    request_id = %Shown(id), request = %request,
                    "{why} after the response head was sent; aborting the connection"
                );
            }
            // Invalid: logged when it became so; a body error: the client's.
            _ => {}
        }
        self.answer_error();
    }

    /// Replaces the response with the host's own error answer (500, or the
    /// request body's 4xx) if nothing was sent, else cuts the connection.
    /// The host answers instead of an app (404: no app is mounted at the
    /// path), with a canned response; the connection stays open if
    /// `may_keep_alive` (the request's body can be skipped) and the
    /// request asked for it.
    pub fn answer_status(&mut self, status: u16, reason: &'static str, may_keep_alive: bool) {
        self.keep_alive &= may_keep_alive;
        let body = encode_error(&mut self.out, status, reason, self.keep_alive);
        if self.is_head {
            // RFC 9110 §9.3.2: the head a GET would have, no body.
            self.out.truncate(self.out.len() - body);
        } else {
            self.body_bytes = body as u64;
        }
        self.status = status;
        self.phase = Phase::Done;
    }

    fn answer_error(&mut self) {
        match self.phase {
            Phase::NotStarted | Phase::Invalid | Phase::Started => {
                let (status, reason) = match self.body_error {
                    Some(e) => (e.status(), e.reason()),
                    None => (500, "Internal Server Error"),
                };
                let may = self.client().is_none_or(|c| c.may_keep_alive());
                self.keep_alive &= self.body_error.is_none() && may;
                let body = encode_error(&mut self.out, status, reason, self.keep_alive);
                if self.is_head {
                    // RFC 9110 §9.3.2: the head a GET would have, no body.
                    self.out.truncate(self.out.len() - body);
                } else {
                    self.body_bytes = body as u64;
                }
                self.status = status;
                self.phase = Phase::Done;
                // The app's head is not what was sent (the access log's
                // response headers must not read it).
                self.head.forget();
            }
            Phase::Sending(_) => self.abort(),
            Phase::Done | Phase::Aborted => {}
        }
    }

    fn abort(&mut self) {
        self.keep_alive = false;
        self.phase = Phase::Aborted;
    }

    /// The body ended short of the app's own Content-Length: the client
    /// must not wait for the rest, nor take what came for all of it.
    #[cold]
    #[inline(never)]
    fn short_body(&mut self) {
        let (status, missing) = (self.status, self.remaining);
        let (id, line) = self.identity();
        tracing::error!(
            request_id = %Shown(id), request = %Shown(line), status, missing,
            "app body shorter than its Content-Length; closing the connection"
        );
        self.abort();
    }

    /// The body iterator ended (and was closed): complete the framing.
    fn finish(&mut self) {
        match self.phase {
            Phase::NotStarted => self.fail("app returned without calling start_response"),
            // Logged when it became invalid.
            Phase::Invalid => self.answer_error(),
            Phase::Started => {
                self.commit(Some(0));
                self.finish();
            }
            Phase::Sending(BodyFraming::Chunked) => {
                if !self.body_suppressed() {
                    encode_last_chunk(&mut self.out);
                }
                self.phase = Phase::Done;
            }
            Phase::Sending(BodyFraming::Length(_)) => {
                if self.remaining > 0 && !self.body_suppressed() {
                    self.short_body();
                } else {
                    self.phase = Phase::Done;
                }
            }
            Phase::Sending(BodyFraming::CloseDelimited) => self.phase = Phase::Done,
            Phase::Done | Phase::Aborted => {}
        }
    }
}

thread_local! {
    /// The environ of the request whose plugin code runs on this thread
    /// (null between entries): a log line the app writes without naming
    /// its request, or one the host writes while serving it, still names
    /// it.
    static CURRENT_ENV: Cell<*const HostEnviron> = const { Cell::new(ptr::null()) };
}

/// The index of the app whose request runs on this thread, if one does.
pub fn current_app() -> Option<usize> {
    let env = CURRENT_ENV.get();
    // SAFETY: as in `CurrentRequestId::fmt`.
    (!env.is_null()).then(|| unsafe { &*env }.app())
}

/// The id of the request whose plugin code runs on this thread, for a log
/// line (`-` if none).
pub struct CurrentRequestId;

impl CurrentRequestId {
    /// Whether a request's plugin code runs on this thread.
    pub fn present() -> bool {
        !CURRENT_ENV.get().is_null()
    }
}

impl fmt::Display for CurrentRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env = CURRENT_ENV.get();
        if env.is_null() {
            return f.write_str("-");
        }
        // SAFETY: set by `enter` from an attached environ, which stays
        // alive and in place while its exchange is used (`attach`); cleared
        // by `leave` before the entry ends.
        let id = unsafe { &*env }.request_id();
        Shown(id).fmt(f)
    }
}

// --- the steps the runtime drives -------------------------------------------
//
// Each takes the exchange as a raw pointer: from the moment the plugin
// holds the handle, the exchange is reached only through it (by the host
// callbacks while plugin code runs, and by these functions between plugin
// calls), so no `&mut Exchange` is alive while the plugin could use the
// handle.

/// Lends `client` to the exchange for one entry into plugin code.
///
/// # Safety
/// `ex` is valid and not otherwise borrowed; `leave` is called before the
/// borrow of `client` ends.
unsafe fn enter(ex: *mut Exchange, client: &mut dyn Client) {
    let client = NonNull::from(client);
    // SAFETY: the lifetime is erased for storage only: `leave` clears the
    // pointer before the borrow it came from ends (the caller's contract).
    let client: NonNull<dyn Client + 'static> = unsafe { std::mem::transmute(client) };
    // SAFETY: `ex` valid, per the contract.
    unsafe {
        (*ex).client = Some(client);
        CURRENT_ENV.set((*ex).env);
    }
}

/// # Safety
/// `ex` is valid and not otherwise borrowed.
unsafe fn leave(ex: *mut Exchange) {
    // SAFETY: per the contract.
    unsafe { (*ex).client = None };
    CURRENT_ENV.set(ptr::null());
}

/// PEP 3333's `app(environ, start_response)`: calls the plugin. Returns the
/// body iterator to drain, or None when the response is already decided
/// (the call failed, or returned no iterator: then the response is
/// complete). Then `pull` until `Ended`, and `close` exactly once.
///
/// # Safety
/// `ex` points to an exchange that stays at its address, with `begin`
/// called for this request, until `close` returns; `env` is this request's
/// environ, valid as long; nothing else borrows `ex` meanwhile; this thread
/// runs every step of the request.
pub unsafe fn call(
    ex: *mut Exchange,
    plugin: &Plugin,
    env: &HostEnviron,
    client: &mut dyn Client,
) -> Option<nwsgi_body> {
    let mut body = nwsgi_body::EMPTY;
    // SAFETY: (this block) per this function's contract; `client` outlives
    // the plugin call, and `leave` runs before it returns.
    unsafe {
        enter(ex, client);
        (*ex).image = plugin.image;
        let rc = plugin.call(&env.raw, ex.cast::<nwsgi_request>(), &mut body);
        let drain = if rc < 0 {
            (*ex).fail(&format!("app call failed (status {rc})"));
            false
        } else if rc != NWSGI_OK {
            let why = format!("app call returned {rc}, which is neither NWSGI_OK nor an error");
            (*ex).fail(&why);
            false
        } else if body.next.is_none() && body.close.is_none() {
            // No iterator: the response is complete now (the common
            // single-chunk answer, in the same entry).
            (*ex).finish();
            false
        } else {
            true
        };
        leave(ex);
        drain.then_some(body)
    }
}

/// Pulls the next chunk from the app's body iterator and hands it to the
/// client (nothing is pulled once the response is complete or aborted).
///
/// # Safety
/// As for `call`; `body` is what `call` returned, not closed yet.
pub unsafe fn pull(
    ex: *mut Exchange,
    plugin: &Plugin,
    body: &nwsgi_body,
    client: &mut dyn Client,
) -> Pulled {
    // SAFETY: per the contract; no reference to the exchange is held
    // across the plugin call.
    let finished = unsafe { (*ex).aborted() || (*ex).phase == Phase::Done || (*ex).body_complete };
    if finished {
        return Pulled::Ended;
    }
    let mut chunk = nwsgi_str::EMPTY;
    // SAFETY: (this block) per this function's contract. The chunk is
    // borrowed until the next call to next or close; it is copied into
    // `out` (or sent) before either happens.
    unsafe {
        enter(ex, client);
        let r = plugin.next(body, ex.cast::<nwsgi_request>(), &mut chunk);
        let data = match chunk.try_as_bytes() {
            Some(data) => data,
            None if matches!(r, NWSGI_BODY_MORE | NWSGI_BODY_LAST) => {
                let why = format!("the chunk is a NULL pointer with length {}", chunk.len);
                (*ex).misuse("next", why);
                // Nothing of it can be sent: the response ends here.
                (*ex).answer_error();
                leave(ex);
                return Pulled::Ended;
            }
            None => &[],
        };
        let pulled = match r {
            NWSGI_BODY_MORE => {
                (*ex).chunk(data, false);
                if let Some(client) = (*ex).client() {
                    client.progress();
                }
                if (*ex).aborted() {
                    Pulled::Ended
                } else {
                    Pulled::More
                }
            }
            NWSGI_BODY_LAST => {
                (*ex).chunk(data, true);
                Pulled::Ended
            }
            NWSGI_BODY_END => Pulled::Ended,
            e => {
                let why = if e < 0 {
                    format!("app body iterator failed (status {e})")
                } else {
                    format!("app body iterator returned {e}, not a valid NWSGI_BODY_* code")
                };
                (*ex).fail(&why);
                Pulled::Ended
            }
        };
        leave(ex);
        pulled
    }
}

/// Closes the app's body iterator (PEP 3333's `close()`, exactly once, also
/// when the client went away) and completes the response's framing.
///
/// # Safety
/// As for `pull`; `body` is never used again.
pub unsafe fn close(
    ex: *mut Exchange,
    plugin: &Plugin,
    body: &nwsgi_body,
    client: &mut dyn Client,
) {
    // SAFETY: per this function's contract.
    unsafe {
        enter(ex, client);
        plugin.close(body, ex.cast::<nwsgi_request>());
        (*ex).finish();
        leave(ex);
    }
}
