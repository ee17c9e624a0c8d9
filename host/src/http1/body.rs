//! The request body as the app's input stream (wsgi.input): de-chunked,
//! ending exactly at the body's end, never consuming the next request.
//!
//! Bytes come first from what the event loop already buffered after the
//! head (borrowed, like the environ), then from the socket into a buffer of
//! this reader's own. The receive buffer is never grown while the environ
//! borrows it; whatever this reader read past the body (the start of a
//! pipelined request) is handed back by `into_leftover`.
use std::io;
use std::time::{Duration, Instant};

use crate::http1::chunked::ChunkedDecoder;
use crate::http1::error::HttpError;
use crate::http1::parse::Framing;

/// How much one socket read may pull in for a body.
const READ_CHUNK: usize = 16 * 1024;

/// Where body bytes come from once the buffered ones run out: the client's
/// socket in the server (`call::Wire`), a byte slice in tests and the fuzzer.
pub trait BodySource {
    /// Appends at least one and at most `max` bytes to `buf`, waiting until
    /// `deadline` (then `TimedOut`); Ok(0) means the peer closed its side.
    fn read_more(&mut self, buf: &mut Vec<u8>, max: usize, deadline: Instant) -> io::Result<usize>;
    /// Tells a client that sent `Expect: 100-continue` to go ahead.
    fn send_continue(&mut self) -> io::Result<()>;
}

/// What a body read can fail with; the status mapping lives in
/// `HttpError`, the rest means the connection is gone.
#[derive(Debug)]
pub enum BodyError {
    Malformed(HttpError),
    TimedOut,
    Closed,
    Io(io::Error),
}

enum Decode {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

/// Whether the client waits for `100 Continue` before sending the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continue {
    NotExpected,
    /// The client asked; we have not answered yet.
    Expected,
    Sent,
}

pub struct BodyReader<'a> {
    decode: Decode,
    /// The bytes after the head that were already in the receive buffer.
    buffered: &'a [u8],
    buffered_pos: usize,
    /// Bytes read from the socket once `buffered` ran out.
    extra: Vec<u8>,
    extra_pos: usize,
    done: bool,
    total: u64,
    limit: u64,
    pub expect: Continue,
    timeout: Duration,
    /// A failure sticks: the stream is desynchronised after it.
    failed: bool,
}

impl<'a> BodyReader<'a> {
    pub fn new(
        framing: Framing,
        buffered: &'a [u8],
        expect_continue: bool,
        limit: u64,
        timeout: Duration,
    ) -> BodyReader<'a> {
        let (decode, done) = match framing {
            Framing::Empty => (Decode::Length { remaining: 0 }, true),
            Framing::Length(n) => (Decode::Length { remaining: n }, n == 0),
            Framing::Chunked => (Decode::Chunked(ChunkedDecoder::new()), false),
        };
        let expect = if expect_continue && !done && buffered.is_empty() {
            Continue::Expected
        } else {
            Continue::NotExpected
        };
        BodyReader {
            decode,
            buffered,
            buffered_pos: 0,
            extra: Vec::new(),
            extra_pos: 0,
            done,
            total: 0,
            limit,
            expect,
            timeout,
            failed: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Reads body bytes into `dst`; Ok(0) at the end of the body. The
    /// source is asked for `100 Continue` (once) before its first read if
    /// the client is waiting for it.
    pub fn read(
        &mut self,
        source: &mut impl BodySource,
        dst: &mut [u8],
    ) -> Result<usize, BodyError> {
        if self.failed {
            return Err(BodyError::Closed);
        }
        let r = self.read_inner(source, dst);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn read_inner(
        &mut self,
        source: &mut impl BodySource,
        dst: &mut [u8],
    ) -> Result<usize, BodyError> {
        if dst.is_empty() {
            return Ok(0);
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            if self.done {
                return Ok(0);
            }
            if self.available().is_empty() {
                if self.expect == Continue::Expected {
                    source.send_continue().map_err(BodyError::Io)?;
                    self.expect = Continue::Sent;
                }
                self.extra.clear();
                self.extra_pos = 0;
                match source.read_more(&mut self.extra, READ_CHUNK, deadline) {
                    Ok(0) => return Err(BodyError::Closed),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        return Err(BodyError::TimedOut)
                    }
                    Err(e) => return Err(BodyError::Io(e)),
                }
            }
            // Borrowed field by field (not through available()) so the
            // decoder can be borrowed mutably beside it.
            let input: &[u8] = if self.buffered_pos < self.buffered.len() {
                &self.buffered[self.buffered_pos..]
            } else {
                &self.extra[self.extra_pos..]
            };
            let (consumed, written) = match &mut self.decode {
                Decode::Length { remaining } => {
                    let n = input
                        .len()
                        .min(dst.len())
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    dst[..n].copy_from_slice(&input[..n]);
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.done = true;
                    }
                    (n, n)
                }
                Decode::Chunked(dec) => {
                    let (c, w) = dec
                        .decode(input, dst)
                        .map_err(|e| BodyError::Malformed(e.into()))?;
                    if dec.is_done() {
                        self.done = true;
                    }
                    (c, w)
                }
            };
            self.consume(consumed);
            self.total = self.total.saturating_add(written as u64);
            if self.limit > 0 && self.total > self.limit {
                return Err(BodyError::Malformed(HttpError::PayloadTooLarge));
            }
            if written > 0 || self.done {
                return Ok(written);
            }
        }
    }

    /// Reads and discards the rest of the body, up to `max` bytes; false
    /// if the body was longer, malformed or the client too slow (the
    /// connection must then close).
    pub fn drain(&mut self, source: &mut impl BodySource, max: u64) -> bool {
        if self.expect == Continue::Expected {
            // The client is still waiting for permission to send: never
            // sent, never to be read. Closing is the only safe answer.
            return self.done;
        }
        let mut scratch = [0u8; 4096];
        let mut drained = 0u64;
        while !self.done {
            match self.read(source, &mut scratch) {
                Ok(n) => drained += n as u64,
                Err(_) => return false,
            }
            if drained > max {
                return false;
            }
        }
        true
    }

    fn available(&self) -> &[u8] {
        if self.buffered_pos < self.buffered.len() {
            &self.buffered[self.buffered_pos..]
        } else {
            &self.extra[self.extra_pos..]
        }
    }

    fn consume(&mut self, n: usize) {
        if self.buffered_pos < self.buffered.len() {
            self.buffered_pos += n;
        } else {
            self.extra_pos += n;
        }
    }

    /// How many bytes of the borrowed buffer the body used, and the bytes
    /// read from the socket beyond the body (the next request's start).
    pub fn into_leftover(self) -> (usize, Vec<u8>) {
        let mut extra = self.extra;
        extra.drain(..self.extra_pos);
        (self.buffered_pos, extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes arriving in pieces, as a socket would deliver them.
    struct Pieces {
        pieces: Vec<Vec<u8>>,
        continues: usize,
    }

    impl Pieces {
        fn new(pieces: &[&[u8]]) -> Pieces {
            Pieces {
                pieces: pieces.iter().rev().map(|p| p.to_vec()).collect(),
                continues: 0,
            }
        }
    }

    impl BodySource for Pieces {
        fn read_more(&mut self, buf: &mut Vec<u8>, max: usize, _: Instant) -> io::Result<usize> {
            match self.pieces.pop() {
                None => Ok(0),
                Some(mut p) => {
                    if p.len() > max {
                        self.pieces.push(p.split_off(max));
                    }
                    buf.extend_from_slice(&p);
                    Ok(p.len())
                }
            }
        }

        fn send_continue(&mut self) -> io::Result<()> {
            self.continues += 1;
            Ok(())
        }
    }

    fn reader(framing: Framing, buffered: &[u8]) -> BodyReader<'_> {
        BodyReader::new(framing, buffered, false, 0, Duration::from_secs(1))
    }

    fn read_all(
        r: &mut BodyReader<'_>,
        src: &mut Pieces,
        step: usize,
    ) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        let mut buf = vec![0; step];
        loop {
            match r.read(src, &mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// RFC 9112 §6.2: the body is exactly Content-Length bytes; what follows
    /// is the next request, handed back untouched.
    #[test]
    fn content_length_spans_buffer_and_socket_and_stops_exactly() {
        let mut src = Pieces::new(&[b"lo wo", b"rldGET /next"]);
        let mut r = reader(Framing::Length(11), b"hel");
        assert_eq!(read_all(&mut r, &mut src, 4).unwrap(), b"hello world");
        assert!(r.is_done());
        let (used, leftover) = r.into_leftover();
        assert_eq!((used, leftover.as_slice()), (3, &b"GET /next"[..]));
    }

    /// RFC 9112 §7.1: de-chunked across arbitrary splits; the next request
    /// after the last chunk is left over.
    #[test]
    fn chunked_across_pieces_leaves_the_next_request() {
        let wire = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1";
        for split in 0..wire.len() {
            let (a, b) = wire.split_at(split);
            let mut src = Pieces::new(&[b]);
            let mut r = reader(Framing::Chunked, a);
            assert_eq!(
                read_all(&mut r, &mut src, 3).unwrap(),
                b"hello world",
                "split {split}"
            );
            let (used, mut leftover) = r.into_leftover();
            // Unconsumed buffer + what was read past the body + what is still
            // unread in the socket = exactly the next request.
            let mut rest = a[used..].to_vec();
            rest.append(&mut leftover);
            rest.extend(src.pieces.iter().rev().flatten());
            assert_eq!(rest, b"GET / HTTP/1.1", "split {split}");
        }
    }

    #[test]
    fn malformed_chunk_is_an_error_and_sticks() {
        let mut src = Pieces::new(&[]);
        let mut r = reader(Framing::Chunked, b"zz\r\n");
        assert!(matches!(
            read_all(&mut r, &mut src, 8),
            Err(BodyError::Malformed(_))
        ));
        assert!(r.failed());
        assert!(matches!(
            r.read(&mut src, &mut [0; 4]),
            Err(BodyError::Closed)
        ));
    }

    #[test]
    fn a_short_body_is_a_closed_connection() {
        let mut src = Pieces::new(&[b"abc"]);
        let mut r = reader(Framing::Length(10), b"");
        assert!(matches!(
            read_all(&mut r, &mut src, 8),
            Err(BodyError::Closed)
        ));
    }

    #[test]
    fn the_limit_gives_413() {
        let mut src = Pieces::new(&[b"0123456789"]);
        let mut r = BodyReader::new(Framing::Chunked, b"a\r\n", false, 5, Duration::from_secs(1));
        assert!(matches!(
            read_all(&mut r, &mut src, 64),
            Err(BodyError::Malformed(HttpError::PayloadTooLarge))
        ));
    }

    /// RFC 9110 §10.1.1: 100 Continue once, and only if the client is
    /// still waiting (nothing of the body arrived with the head).
    #[test]
    fn continue_is_sent_once_and_only_when_waited_for() {
        let mut src = Pieces::new(&[b"ab", b"cd"]);
        let mut r = BodyReader::new(Framing::Length(4), b"", true, 0, Duration::from_secs(1));
        assert_eq!(read_all(&mut r, &mut src, 1).unwrap(), b"abcd");
        assert_eq!(src.continues, 1);

        let mut src = Pieces::new(&[b"cd"]);
        let mut r = BodyReader::new(Framing::Length(4), b"ab", true, 0, Duration::from_secs(1));
        assert_eq!(read_all(&mut r, &mut src, 8).unwrap(), b"abcd");
        assert_eq!(src.continues, 0);
    }

    /// An unanswered `Expect: 100-continue` cannot be drained: the client
    /// never sends the body, so the connection must close instead.
    #[test]
    fn drain_refuses_a_body_never_asked_for() {
        let mut src = Pieces::new(&[]);
        let mut r = BodyReader::new(Framing::Length(4), b"", true, 0, Duration::from_secs(1));
        assert!(!r.drain(&mut src, 1024));
        let mut src = Pieces::new(&[b"xyz"]);
        let mut r = reader(Framing::Length(4), b"w");
        assert!(r.drain(&mut src, 1024));
        let mut src = Pieces::new(&[&[0; 100]]);
        let mut r = reader(Framing::Length(100), b"");
        assert!(!r.drain(&mut src, 10), "longer than the drain limit");
    }
}
