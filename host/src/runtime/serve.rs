//! A client connection, and serving it on an app thread: every complete
//! request already in the receive buffer is parsed, turned into an environ,
//! run through the plugin and answered; the responses share one write when
//! the app allows it (NWSGI_BODY_LAST), then the connection goes back to the
//! event loop to wait for more bytes.
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use abi::ffi::{nwsgi_header, nwsgi_str};
use mio::net::TcpStream;

use crate::gateway::environ::{percent_decode, EnvironParts, HostEnviron, PeerText};
use crate::gateway::exchange::{flush, run, Exchange};
use crate::http1::body::BodyReader;
use crate::http1::memo::{memo_slots, HeadMemo};
use crate::http1::parse::{parse_head, with_slots, Field, RequestHead, EMPTY_FIELD};
use crate::http1::response::{encode_error, ResponseHead};
use crate::runtime::access_log::Entry;
use crate::runtime::scoreboard::ThreadSlot;
use crate::runtime::Shared;

/// Responses are batched (pipelining) until this much is pending.
const FLUSH_AT: usize = 64 * 1024;
/// An unread request body this small is read and dropped to keep the
/// connection; a larger one closes it instead.
const DRAIN_MAX: u64 = 64 * 1024;

/// One client connection. While idle it holds no buffer at all: `buf` is
/// released when empty, so an idle keep-alive connection costs this struct.
pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Received bytes not yet consumed: a partial head, or requests
    /// pipelined behind the one being served.
    pub buf: Vec<u8>,
    /// When the connection started waiting for its next request; the
    /// event loop's idle and header timeouts count from here.
    pub waiting_since: Instant,
    /// At least one request was answered (the idle timeout is then the
    /// keep-alive timeout, not the header timeout).
    pub served: bool,
}

/// What became of a connection after its turn on an app thread.
pub enum Outcome {
    /// Back to the event loop to wait for the next request.
    Idle(Conn),
    /// The server ends the connection (an error answered, `Connection:
    /// close`, HTTP/1.0): everything is flushed; the event loop closes it
    /// gracefully (see `server::Loop::linger`).
    Close(Conn),
    /// The client is gone (reset, or too slow to read): just drop it.
    Gone,
}

/// Per-app-thread state, reused across requests and connections so that
/// no connection owns it while idle.
#[derive(Default)]
pub struct Scratch {
    /// The peer's address text, apart from the rest so that requests can
    /// borrow it while they use the buffers.
    peer: PeerText,
    /// Small heads parsed lately, so that one sent again is not parsed
    /// again (see `memo.rs`).
    memo: Box<HeadMemo>,
    bufs: Buffers,
}

struct Buffers {
    out: Vec<u8>,
    head: ResponseHead,
    headers: Vec<nwsgi_header>,
    path: Vec<u8>,
    /// Where this app thread publishes its running request for the
    /// master's timeout check.
    slot: Option<&'static ThreadSlot>,
}

impl Default for Buffers {
    fn default() -> Buffers {
        Buffers {
            out: Vec::with_capacity(16 * 1024),
            head: ResponseHead::new(),
            headers: Vec::with_capacity(32),
            path: Vec::new(),
            slot: None,
        }
    }
}

impl Scratch {
    pub fn reporting_to(mut self, slot: Option<&'static ThreadSlot>) -> Scratch {
        self.bufs.slot = slot;
        self
    }
}

/// What parsing the buffer's next request led to.
enum Step {
    /// Answered; the request took `consumed` bytes of the buffer.
    Served { consumed: usize, done: Handled },
    /// No complete head yet: wait for more bytes.
    Incomplete,
    /// Refused before the app saw it: answer and close.
    Refused(crate::http1::error::HttpError),
}

/// Serves every complete request in `conn.buf`.
pub fn serve(conn: Conn, shared: &Shared, scratch: &mut Scratch) -> Outcome {
    // The peer's address as text, once for every request of this turn.
    let Scratch { peer, memo, bufs } = scratch;
    peer.set(conn.peer, conn.local);
    let mut answered = 0;
    let outcome = serve_all(conn, shared, bufs, peer, memo, &mut answered);
    // Counted once per turn, not per request, in this thread's own counter;
    // toward --max-requests (a counter the worker's threads share, so a
    // locked add) only when that is set.
    if answered > 0 {
        if let Some(slot) = bufs.slot {
            slot.count(answered);
        }
        if let Some(m) = &shared.monitor {
            if m.slot().count_requests(answered, m.max_requests) {
                tracing::info!(
                    requests = m.max_requests,
                    "worker reached --max-requests; the master will replace it"
                );
            }
        }
    }
    outcome
}

fn serve_all(
    mut conn: Conn,
    shared: &Shared,
    scratch: &mut Buffers,
    peer_text: &PeerText,
    memo: &mut HeadMemo,
    answered: &mut u64,
) -> Outcome {
    let limits = &shared.config.limits;
    let timeout = shared.config.send_timeout;
    // Requests are consumed by moving `start`; the buffer is compacted
    // once, when this turn ends, not after every pipelined request.
    let mut start = 0;
    loop {
        let Conn { stream, buf, .. } = &mut conn;
        let pending = &buf[start..];
        if pending.is_empty() {
            // Every request answered: nothing to parse (and no header
            // slots to set up for nothing).
            break;
        }
        let step = parse_request(pending, limits, Some(memo), |parsed| match parsed {
            Ok(Some(head)) => Step::Served {
                consumed: head.len,
                done: handle(&head, stream, pending, peer_text, shared, scratch, answered),
            },
            Ok(None) => Step::Incomplete,
            Err(e) => Step::Refused(e),
        });
        match step {
            Step::Incomplete => break,
            Step::Refused(e) => {
                tracing::info!(peer = %conn.peer, "bad request: {e}");
                encode_error(&mut scratch.out, e.status(), e.reason(), false);
                return close(conn, scratch, timeout);
            }
            Step::Served { consumed, done } => {
                start += consumed + done.body_consumed;
                if !done.leftover.is_empty() {
                    // Read past the body: the next request's start, which
                    // goes after what the buffer still holds.
                    conn.buf.drain(..start);
                    start = 0;
                    conn.buf.extend_from_slice(&done.leftover);
                }
                conn.served = true;
                if !done.keep_alive {
                    return close(conn, scratch, timeout);
                }
                if scratch.out.len() >= FLUSH_AT
                    && flush(&mut conn.stream, &mut scratch.out, timeout).is_err()
                {
                    return Outcome::Gone;
                }
            }
        }
    }
    conn.buf.drain(..start);
    if conn.buf.is_empty() {
        // Idle until the next request: the connection keeps no buffer.
        release_buffer(&mut conn.buf);
    }
    if flush(&mut conn.stream, &mut scratch.out, timeout).is_err() {
        return Outcome::Gone;
    }
    // (`waiting_since` is set by the event loop when it takes the
    // connection back.)
    Outcome::Idle(conn)
}

/// Sends what is pending and hands the connection back for closing.
fn close(mut conn: Conn, scratch: &mut Buffers, timeout: std::time::Duration) -> Outcome {
    match flush(&mut conn.stream, &mut scratch.out, timeout) {
        Ok(()) => Outcome::Close(conn),
        Err(_) => Outcome::Gone,
    }
}

/// Header slots tried first: enough for nearly every request, and cheap to
/// set up. Slots are written before parsing, and a hundred of them would
/// be 3 KiB of stores per request.
const FEW_FIELDS: usize = 24;

/// Parses the head at the start of `buf` and hands the outcome to `f`.
///
/// With a `memo`, a head it remembers is not parsed again, and every head
/// that parses is shown to it (see `memo.rs`).
///
/// Tries FEW_FIELDS slots first; a head with more fields than that (or
/// any other 431) is parsed again with the full `--limit-request-fields`,
/// which decides. The outcome is the same as one parse with the full
/// limit: with fewer slots the parse either succeeds identically or stops
/// at "too many headers".
fn parse_request<'b, R>(
    buf: &'b [u8],
    limits: &crate::http1::parse::Limits,
    mut memo: Option<&mut HeadMemo>,
    f: impl for<'h> FnOnce(Result<Option<RequestHead<'b, 'h>>, crate::http1::error::HttpError>) -> R,
) -> R {
    if let Some(memo) = memo.as_deref() {
        let mut slots = memo_slots();
        if let Some(head) = memo.recall(buf, &mut slots) {
            return f(Ok(Some(head)));
        }
    }
    if limits.fields > FEW_FIELDS {
        let mut few = [EMPTY_FIELD; FEW_FIELDS];
        match parse_remembering(buf, &mut few, limits, memo.as_deref_mut()) {
            Err(crate::http1::error::HttpError::HeaderFieldsTooLarge) => {}
            parsed => return f(parsed),
        }
    }
    with_slots(limits.fields, EMPTY_FIELD, |slots| {
        f(parse_remembering(buf, slots, limits, memo))
    })
}

/// `parse_head`, and a head that parses is shown to `memo`.
fn parse_remembering<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut [Field<'b>],
    limits: &crate::http1::parse::Limits,
    memo: Option<&mut HeadMemo>,
) -> Result<Option<RequestHead<'b, 'h>>, crate::http1::error::HttpError> {
    let parsed = parse_head(buf, slots, limits);
    if let (Some(memo), Ok(Some(head))) = (memo, &parsed) {
        memo.remember(buf, head);
    }
    parsed
}

struct Handled {
    keep_alive: bool,
    /// Body bytes taken from the receive buffer after the head.
    body_consumed: usize,
    /// Bytes read from the socket past the body: the next request's start.
    leftover: Vec<u8>,
}

/// One request: environ → plugin call → response, then the body's rest.
/// Counts it in `answered`.
#[allow(clippy::too_many_arguments)]
fn handle(
    head: &RequestHead<'_, '_>,
    stream: &mut TcpStream,
    buf: &[u8],
    peer_text: &PeerText,
    shared: &Shared,
    scratch: &mut Buffers,
    answered: &mut u64,
) -> Handled {
    let config = &shared.config;
    let Buffers {
        out,
        head: response_head,
        headers,
        path,
        slot,
    } = scratch;

    headers.clear();
    headers.extend(head.headers.iter().map(|h| nwsgi_header {
        name: nwsgi_str::from_bytes(h.name),
        value: nwsgi_str::from_bytes(h.value),
    }));
    let path_info: &[u8] = if percent_decode(head.path, path) {
        path
    } else {
        head.path
    };
    let env = HostEnviron::new(
        head,
        EnvironParts {
            api: &crate::gateway::api::HOST_API,
            headers,
            path_info,
            peer: peer_text,
            multithread: config.threads > 1,
            multiprocess: false,
        },
    );
    let keep_alive =
        head.keep_alive && config.keep_alive_enabled() && !shared.stopping.load(Ordering::Relaxed);
    let body = BodyReader::new(
        head.framing,
        &buf[head.len..],
        head.expect_continue,
        config.limits.body,
        config.body_timeout,
    );
    let mut ex = Exchange::new(
        stream,
        out,
        response_head,
        body,
        head.version,
        head.method == b"HEAD",
        keep_alive,
        config.send_timeout,
        &shared.stopping,
    );
    if let Some(slot) = slot {
        slot.begin(head.line);
    }
    run(&shared.plugin, &env, &mut ex);
    if let Some(slot) = slot {
        slot.end();
    }
    *answered += 1;

    let mut keep_alive = ex.keep_alive;
    if keep_alive && !ex.body.is_done() {
        keep_alive = ex.drain_body(DRAIN_MAX);
    }
    let (status, body_bytes) = (ex.status, ex.body_bytes);
    if let Some(log) = &shared.access_log {
        log.record(&Entry {
            remote: peer_text.remote_addr(),
            method: head.method,
            target: head.target,
            version: head.version,
            status,
            bytes: body_bytes,
            referer: header(head, "referer"),
            user_agent: header(head, "user-agent"),
        });
    }
    let (body_consumed, leftover) = ex.body.into_leftover();
    Handled {
        keep_alive,
        body_consumed,
        leftover,
    }
}

fn header<'b>(head: &RequestHead<'b, '_>, name: &str) -> Option<&'b [u8]> {
    head.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value)
}

/// Is a request head in `buf`, for the event loop to lend the connection
/// out? The end of a head (an empty line) is enough: the app thread then
/// parses it, once, and serves it or refuses it. Without an end, the start
/// is parsed here, so that garbage and heads over the limits are refused at
/// once rather than at the header timeout. (A malformed head queued behind
/// calls that are all stuck is found by `check_head`.)
pub fn head_ready(
    buf: &[u8],
    limits: &crate::http1::parse::Limits,
) -> Result<bool, crate::http1::error::HttpError> {
    if has_blank_line(buf) {
        return Ok(true);
    }
    parse_request(buf, limits, None, |parsed| parsed.map(|h| h.is_some()))
}

/// Parses the head at the start of `buf` in full: Err if it is refused.
pub fn check_head(
    buf: &[u8],
    limits: &crate::http1::parse::Limits,
) -> Result<(), crate::http1::error::HttpError> {
    parse_request(buf, limits, None, |parsed| parsed.map(|_| ()))
}

/// A line end followed by an empty line: CRLF or a bare LF (which the
/// parser refuses, but only once it sees it). Every complete head has one.
fn has_blank_line(buf: &[u8]) -> bool {
    // Nearly always the head just arrived whole and ends the buffer.
    if buf.ends_with(b"\r\n\r\n") {
        return true;
    }
    buf.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && matches!(&buf[i + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
}

/// Receive buffers, recycled per thread: an idle connection holds none,
/// and a connection that becomes readable takes one from here instead of
/// the allocator.
const BUFFER_SIZE: usize = 4096;
const POOLED_BUFFERS: usize = 64;

thread_local! {
    static BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer for a connection that has none.
pub fn take_buffer() -> Vec<u8> {
    BUFFERS
        .with(|b| b.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE))
}

/// Takes an idle connection's (empty) buffer back.
pub fn release_buffer(buf: &mut Vec<u8>) {
    if buf.capacity() == 0 {
        return;
    }
    let mut spare = std::mem::take(buf);
    if spare.capacity() > 4 * BUFFER_SIZE {
        // A big pipelined burst grew it; do not keep that much around.
        return;
    }
    spare.clear();
    BUFFERS.with(|b| {
        let mut pool = b.borrow_mut();
        if pool.len() < POOLED_BUFFERS {
            pool.push(spare);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse::Limits;

    #[test]
    fn head_ready_finds_every_complete_head_and_refuses_garbage_early() {
        let limits = Limits::default();
        let heads: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"\r\n\r\nGET / HTTP/1.0\r\n\r\n",
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
            // Bare LF: lent out, and the app thread's parse refuses it.
            b"GET / HTTP/1.1\nHost: x\n\n",
        ];
        for head in heads {
            assert_eq!(head_ready(head, &limits), Ok(true), "{head:?}");
            // Every shorter prefix that the parser calls complete is found
            // too, and none is refused unless the parser refuses it.
            for end in 0..head.len() {
                let prefix = &head[..end];
                let mut slots = [EMPTY_FIELD; 100];
                match parse_head(prefix, &mut slots, &limits) {
                    Ok(Some(_)) => assert_eq!(head_ready(prefix, &limits), Ok(true)),
                    Ok(None) => assert!(head_ready(prefix, &limits).is_ok()),
                    Err(e) => assert!(
                        matches!(head_ready(prefix, &limits), Err(x) if x == e)
                            || has_blank_line(prefix)
                    ),
                }
            }
        }
        assert_eq!(
            head_ready(b"GET / HTTP/1.1\r\nHost: x\r\n", &limits),
            Ok(false)
        );
        assert!(head_ready(b"\x16\x03\x01\x02\x00\x01\x00", &limits).is_err());
        assert!(check_head(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", &limits).is_err());
        assert_eq!(
            check_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &limits),
            Ok(())
        );
    }
}
