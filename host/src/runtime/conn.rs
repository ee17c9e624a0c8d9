//! A client connection as the event loop and the app threads pass it
//! between them, and what it carries from one state to the next: the bytes
//! it sent that are not consumed yet, the response bytes it has not taken
//! yet, and a request body read ahead of the app.
//!
//! An idle keep-alive connection holds no buffer at all (`buf` is released
//! when empty, and the boxes are None): it costs this struct.
use std::fs::File;
use std::time::Instant;

use crate::gateway::environ::PortMemo;
use crate::http1::forwarded::Scheme;
use crate::http1::head::HeadScan;
use crate::net::allow::AllowIps;
use crate::net::endpoint::Endpoint;
use crate::net::transport::Transport;
use crate::runtime::intake::Intake;
use crate::runtime::rate::Stall;

/// One client connection.
pub struct Conn {
    pub io: Transport,
    /// The client: the TCP peer, a unix socket's (unnamed) one, or the one
    /// its PROXY header relays.
    pub peer: Endpoint,
    /// Where it connected to: our socket, or the proxy's (PROXY header).
    pub local: Endpoint,
    /// Whether its forwarding headers are believed: decided once, from
    /// `peer`, when the connection starts (and again after a PROXY
    /// header), so a request from any other peer pays one comparison.
    pub forwarding: Forwarding,
    /// The scheme of the client's own connection: https only when its
    /// PROXY v2 header said it came over TLS. A trusted proxy's headers
    /// may say otherwise per request.
    pub scheme: Scheme,
    /// Received bytes not yet consumed: a partial head, a body read ahead,
    /// or requests pipelined behind the one being served.
    pub buf: Vec<u8>,
    /// How far `buf` was searched for the end of a head.
    pub scan: HeadScan,
    /// Since when the connection waits for a request (its idle and header
    /// timeouts count from here).
    pub since: Instant,
    /// At least one request was answered (the idle timeout is then the
    /// keep-alive timeout, not the header timeout).
    pub served: bool,
    /// The socket may hold bytes not read yet: reading stopped at a cap, or
    /// a readable edge went by while the connection was elsewhere. The event
    /// loop reads as soon as the connection waits for bytes again
    /// (edge-triggered: no new edge would come for those bytes).
    pub unread: bool,
    /// Bytes of `buf`'s capacity counted toward the worker's head memory.
    pub head_bytes: usize,
    /// Response bytes the client has not taken yet, for the event loop to
    /// send as it reads them.
    pub pending: Option<Box<Pending>>,
    /// The request body, read ahead of the app or being dropped.
    pub ahead: Option<Box<Ahead>>,
    /// The peer's port as text for the environ, written for the first
    /// request only (see `PortMemo`; its eight bytes fit in the box's
    /// allocation as it was).
    pub port_text: PortMemo,
}

/// Whether a connection's forwarding headers count (`--forwarded-allow-ips`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// Its peer is not a trusted proxy: the headers reach the app as sent
    /// and change nothing.
    Ignored,
    /// Its peer is a trusted proxy: they may name the client and scheme.
    Believed,
}

impl Forwarding {
    /// Whether `peer`'s headers count under `allow` (a unix socket's
    /// peer: if the list has `unix:`, as the default does).
    #[inline]
    pub fn of(allow: &AllowIps, peer: Endpoint) -> Forwarding {
        let trusted = match peer {
            Endpoint::Ip(a) => allow.contains(a.ip()),
            Endpoint::Unix => allow.trusts_unix(),
        };
        if trusted {
            Forwarding::Believed
        } else {
            Forwarding::Ignored
        }
    }
}

/// Response bytes waiting for a client that is slower than the app.
pub struct Pending {
    pub bytes: Vec<u8>,
    /// Since the client fell behind, and what it took since.
    pub stall: Stall,
    /// The request line the response answers (for the log, if the client
    /// turns out too slow).
    pub line: String,
}

/// A request body as the event loop holds it.
pub enum Ahead {
    /// Being read, before the app sees the request.
    Reading(Intake),
    /// Read whole, too large for memory: in an unlinked temporary file,
    /// decoded (`len` bytes), its raw bytes gone from `buf`.
    Spooled { file: File, len: u64 },
    /// What the app left unread of a streamed body (`--no-request-
    /// buffering`), read and dropped before the next request.
    Discarding(Intake),
}

impl Conn {
    /// Boxed: a connection moves between the event loop and the app
    /// threads several times per request, and a pointer moves for free.
    /// Its forwarding headers are ignored until the caller decides
    /// otherwise.
    pub fn new(io: Transport, peer: Endpoint, local: Endpoint, now: Instant) -> Box<Conn> {
        Box::new(Conn {
            io,
            peer,
            local,
            forwarding: Forwarding::Ignored,
            scheme: Scheme::Http,
            buf: Vec::new(),
            scan: HeadScan::default(),
            since: now,
            served: false,
            unread: false,
            head_bytes: 0,
            pending: None,
            ahead: None,
            port_text: PortMemo::default(),
        })
    }

    /// Response bytes waiting for the client.
    pub fn pending_len(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.bytes.len())
    }

    /// The request line at the start of `buf`, for the log (lossy, cut).
    pub fn first_line(&self) -> String {
        line_text(&self.buf)
    }
}

/// The first line of `bytes` as text for a log line (at most 120 bytes).
/// Log it with `?` (Debug): quoted, with control bytes escaped, so a
/// client cannot forge log lines or send escapes to a terminal.
pub fn line_text(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len())
        .min(120);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Receive buffers, recycled per thread: an idle connection holds none,
/// and a connection that becomes readable takes one from here instead of
/// the allocator.
pub const BUFFER_SIZE: usize = 4096;
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
        // A big head or pipelined burst grew it; do not keep that much.
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

    #[test]
    fn log_text_stops_at_the_line_end_and_logs_escaped() {
        assert_eq!(line_text(b"GET / HTTP/1.1\r\nHost: x"), "GET / HTTP/1.1");
        let text = line_text(b"GET /\x1b[31m HTTP/1.1");
        assert_eq!(format!("{text:?}"), "\"GET /\\u{1b}[31m HTTP/1.1\"");
        assert_eq!(line_text(&[b'a'; 300]).len(), 120);
    }
}
