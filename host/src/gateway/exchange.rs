//! One plugin call: the request behind the `nwsgi_request` the app holds
//! (what the host callbacks in `api` act on), and the walk call → next… →
//! close that turns the app's output into response bytes.
//!
//! The response head is held (validated and pre-encoded) from start_response
//! until the first non-empty body bytes, so exc_info can still replace it
//! (PEP 3333). Framing is chosen when the head is committed: the app's own
//! Content-Length; else the exact length when the first chunk is also the
//! last (NWSGI_BODY_LAST) or the body is empty; else chunked on HTTP/1.1 and
//! close-delimited on HTTP/1.0.
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use abi::ffi::{
    nwsgi_body, nwsgi_header, nwsgi_request, nwsgi_str, NWSGI_BODY_END, NWSGI_BODY_LAST,
    NWSGI_BODY_MORE, NWSGI_E_BAD_BODY, NWSGI_E_DISCONNECTED, NWSGI_E_HEADERS_SENT, NWSGI_E_INVALID,
    NWSGI_E_STATE, NWSGI_OK,
};
use mio::net::TcpStream;

use crate::gateway::environ::HostEnviron;
use crate::gateway::plugin::Plugin;
use crate::http1::body::{BodyError, BodyReader, BodySource};
use crate::http1::error::HttpError;
use crate::http1::parse::Version;
use crate::http1::response::{
    encode_chunk, encode_continue, encode_error, encode_head, encode_last_chunk,
    status_forbids_body, BodyFraming, ResponseHead,
};

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

/// The request behind the app's `nwsgi_request *`: everything the host
/// callbacks need, alive from `call` until `close` returns.
pub struct Exchange<'a> {
    stream: &'a mut TcpStream,
    /// Response bytes not yet flushed to the socket. Earlier pipelined
    /// responses may still be in here.
    out: &'a mut Vec<u8>,
    head: &'a mut ResponseHead,
    pub body: BodyReader<'a>,
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
    write_timeout: Duration,
    /// The worker is stopping: the response must close the connection.
    stopping: &'a AtomicBool,
    /// For the access log.
    pub status: u16,
    pub body_bytes: u64,
}

impl<'a> Exchange<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stream: &'a mut TcpStream,
        out: &'a mut Vec<u8>,
        head: &'a mut ResponseHead,
        body: BodyReader<'a>,
        version: Version,
        is_head: bool,
        keep_alive: bool,
        write_timeout: Duration,
        stopping: &'a AtomicBool,
    ) -> Exchange<'a> {
        Exchange {
            stream,
            out,
            head,
            body,
            version,
            is_head,
            keep_alive,
            phase: Phase::NotStarted,
            body_complete: false,
            remaining: 0,
            body_error: None,
            write_timeout,
            stopping,
            status: 0,
            body_bytes: 0,
        }
    }

    pub fn aborted(&self) -> bool {
        self.phase == Phase::Aborted
    }

    /// Reads and drops what the app left of the request body (bounded);
    /// false if the connection cannot be reused.
    pub fn drain_body(&mut self, max: u64) -> bool {
        let mut wire = Wire {
            stream: self.stream,
            out: self.out,
            timeout: self.write_timeout,
            may_continue: false,
        };
        self.body.drain(&mut wire, max)
    }

    /// Sends everything pending in `out`.
    pub fn flush(&mut self) -> io::Result<()> {
        flush(self.stream, self.out, self.write_timeout)
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
            (Phase::NotStarted, _) => {}
            (Phase::Invalid, _) => return NWSGI_E_INVALID,
            (Phase::Started, None) => return NWSGI_E_STATE,
            (Phase::Started, Some(msg)) => {
                tracing::warn!(
                    exc_info = %String::from_utf8_lossy(msg),
                    "app replaced its response head (start_response with exc_info)"
                );
            }
            (Phase::Sending(_) | Phase::Done | Phase::Aborted, None) => return NWSGI_E_STATE,
            (Phase::Sending(_) | Phase::Done | Phase::Aborted, Some(msg)) => {
                tracing::error!(
                    exc_info = %String::from_utf8_lossy(msg),
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
                tracing::error!(
                    status = %String::from_utf8_lossy(status),
                    "invalid response from app: {e}; answering 500 instead"
                );
                self.phase = Phase::Invalid;
                NWSGI_E_INVALID
            }
        }
    }

    /// Puts the held head into `out`, fixing the body framing.
    /// `known_len` is the whole body's length when it is already known.
    fn commit(&mut self, known_len: Option<u64>) {
        // Persistence is decided as late as possible: a worker told to stop
        // while this request ran says `Connection: close` now.
        if self.stopping.load(Ordering::Relaxed) {
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
            self.out,
            self.version,
            &mut *self.head,
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

    /// Appends body bytes in the committed framing.
    fn append_body(&mut self, mut data: &[u8]) {
        let Phase::Sending(framing) = self.phase else {
            return;
        };
        if self.body_suppressed() {
            return;
        }
        // Bytes the client gets (Apache's %b), not what the app produced.
        self.body_bytes += data.len() as u64;
        match framing {
            BodyFraming::Length(_) => {
                if data.len() as u64 > self.remaining {
                    tracing::error!(
                        status = self.status,
                        "app produced more body than its Content-Length; truncating and closing"
                    );
                    data = &data[..self.remaining as usize];
                    self.out.extend_from_slice(data);
                    self.remaining = 0;
                    self.keep_alive = false;
                    self.phase = Phase::Aborted;
                    return;
                }
                self.remaining -= data.len() as u64;
                self.out.extend_from_slice(data);
            }
            BodyFraming::Chunked => encode_chunk(self.out, data),
            BodyFraming::CloseDelimited => self.out.extend_from_slice(data),
        }
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
        self.append_body(data);
        self.send_now()
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
        self.append_body(data);
        if last {
            // May wait in `out` to share a write with later pipelined
            // responses.
            return NWSGI_OK;
        }
        self.send_now()
    }

    fn send_now(&mut self) -> i32 {
        if self.phase == Phase::Aborted {
            // Still try to deliver what was framed correctly.
            let _ = self.flush();
            return NWSGI_E_DISCONNECTED;
        }
        match self.flush() {
            Ok(()) => NWSGI_OK,
            Err(e) => {
                tracing::debug!("client went away while the app was sending: {e}");
                self.abort();
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
        let mut wire = Wire {
            stream: self.stream,
            out: self.out,
            timeout: self.write_timeout,
            may_continue,
        };
        match self.body.read(&mut wire, buf) {
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
        match self.phase {
            Phase::NotStarted | Phase::Invalid | Phase::Started => {
                let (status, reason) = match self.body_error {
                    Some(e) => (e.status(), e.reason()),
                    None => (500, "Internal Server Error"),
                };
                if status == 500 {
                    tracing::error!("{why}; answering 500");
                }
                self.keep_alive &=
                    self.body_error.is_none() && !self.stopping.load(Ordering::Relaxed);
                encode_error(self.out, status, reason, self.keep_alive);
                self.status = status;
                self.phase = Phase::Done;
            }
            Phase::Sending(_) => {
                tracing::error!("{why} after the response head was sent; aborting the connection");
                self.abort();
            }
            Phase::Done | Phase::Aborted => {}
        }
    }

    fn abort(&mut self) {
        self.keep_alive = false;
        self.phase = Phase::Aborted;
    }

    /// The body iterator ended (and was closed): complete the framing.
    fn finish(&mut self) {
        match self.phase {
            Phase::NotStarted => self.fail("app returned without calling start_response"),
            Phase::Invalid => self.fail("app response head was invalid"),
            Phase::Started => {
                self.commit(Some(0));
                self.finish();
            }
            Phase::Sending(BodyFraming::Chunked) => {
                if !self.body_suppressed() {
                    encode_last_chunk(self.out);
                }
                self.phase = Phase::Done;
            }
            Phase::Sending(BodyFraming::Length(_)) => {
                if self.remaining > 0 && !self.body_suppressed() {
                    tracing::error!(
                        status = self.status,
                        missing = self.remaining,
                        "app body shorter than its Content-Length; closing the connection"
                    );
                    self.abort();
                } else {
                    self.phase = Phase::Done;
                }
            }
            Phase::Sending(BodyFraming::CloseDelimited) => self.phase = Phase::Done,
            Phase::Done | Phase::Aborted => {}
        }
        if self.body.failed() && self.phase == Phase::Done {
            self.keep_alive = false;
        }
    }
}

/// The client's socket as the request body's source.
struct Wire<'w> {
    stream: &'w mut TcpStream,
    /// Pending responses go out before a `100 Continue`, keeping order.
    out: &'w mut Vec<u8>,
    timeout: Duration,
    may_continue: bool,
}

impl BodySource for Wire<'_> {
    fn read_more(&mut self, buf: &mut Vec<u8>, max: usize, deadline: Instant) -> io::Result<usize> {
        crate::net::transport::read_some(self.stream, buf, max, deadline)
    }

    fn send_continue(&mut self) -> io::Result<()> {
        if self.may_continue {
            encode_continue(self.out);
            flush(self.stream, self.out, self.timeout)?;
        }
        Ok(())
    }
}

/// Writes out `out` and empties it.
pub fn flush(stream: &mut TcpStream, out: &mut Vec<u8>, timeout: Duration) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let r = crate::net::transport::write_all(stream, out, timeout);
    out.clear();
    r
}

/// Runs one request through the plugin: call, iterate, close exactly once,
/// finish the framing. Response bytes end up in the exchange's `out`
/// (partly flushed already when the app streamed).
pub fn run(plugin: &Plugin, env: &HostEnviron<'_>, ex: &mut Exchange<'_>) {
    // From here the exchange is reached only through `req` (by the host
    // callbacks while the plugin runs, and by us between plugin calls), so
    // no `&mut` to it is live while the plugin holds the pointer.
    //
    // SAFETY (every block below): `req` comes from the `&mut` we were given
    // and `env` from a live reference, both outliving this function, so the
    // handle and environ stay valid until close returns; everything runs on
    // this thread; we dereference `req` only while the plugin is not running;
    // next is never called after the body ended, and close exactly once.
    let req: *mut Exchange<'_> = ex;
    let handle = req as *mut nwsgi_request;
    let mut body = nwsgi_body::EMPTY;
    let rc = unsafe { plugin.call(&env.raw, handle, &mut body) };
    if rc != NWSGI_OK {
        unsafe { (*req).fail(&format!("app call failed (status {rc})")) };
        return;
    }
    loop {
        if unsafe { (*req).aborted() || (*req).phase == Phase::Done || (*req).body_complete } {
            break;
        }
        let mut chunk = nwsgi_str::EMPTY;
        let r = unsafe { plugin.next(&body, handle, &mut chunk) };
        // The chunk is borrowed until the next call to next/close; it is
        // copied into `out` before either happens.
        let data = unsafe { chunk.as_bytes() };
        match r {
            NWSGI_BODY_MORE => {
                unsafe { (*req).chunk(data, false) };
            }
            NWSGI_BODY_LAST => {
                unsafe { (*req).chunk(data, true) };
                break;
            }
            NWSGI_BODY_END => break,
            e => {
                let why = if e < 0 {
                    format!("app body iterator failed (status {e})")
                } else {
                    format!("app body iterator returned {e}, not a valid NWSGI_BODY_* code")
                };
                unsafe { (*req).fail(&why) };
                break;
            }
        }
    }
    unsafe { plugin.close(&body, handle) };
    unsafe { (*req).finish() };
}
