//! The request body as the app's input stream (wsgi.input): de-chunked,
//! ending exactly at the body's end, never consuming the next request.
//!
//! Bytes come first from what is already buffered after the head (handed
//! to each read, since the buffer belongs to the connection), then, when
//! the body was not read ahead, from a `BodySource` into a buffer of this
//! reader's own. The connection's buffer is never grown while the environ
//! borrows it; whatever this reader read past the body (the start of a
//! pipelined request) is handed back by `into_leftover`.
//!
//! `body_end` tells whether a whole body is already buffered, without
//! copying it: the event loop reads bodies ahead before the app runs, and
//! an app thread checks a body that came with its head.
use std::io;

use crate::http1::chunked::ChunkedDecoder;
use crate::http1::error::HttpError;
use crate::http1::parse::Framing;

/// How much one socket read may pull in for a body.
const READ_CHUNK: usize = 16 * 1024;

/// Where body bytes come from once the buffered ones run out: the client's
/// socket (`--no-request-buffering`), a byte slice in tests and the fuzzer.
pub trait BodySource {
    /// Appends at least one and at most `max` bytes to `buf`; Ok(0) means
    /// the peer closed its side. The source decides how long it may wait
    /// (then `TimedOut`).
    fn read_more(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize>;
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

/// Where a body's framing stands: the bytes a Content-Length still owes,
/// or the chunked decoder's state. Fed raw bytes from the wire.
#[derive(Debug, Clone)]
pub enum Decode {
    Length { remaining: u64 },
    Chunked(ChunkedDecoder),
}

impl Decode {
    pub fn new(framing: Framing) -> Decode {
        match framing {
            Framing::Empty => Decode::Length { remaining: 0 },
            Framing::Length(n) => Decode::Length { remaining: n },
            Framing::Chunked => Decode::Chunked(ChunkedDecoder::new()),
        }
    }

    /// The body has ended: nothing more of it is on the wire.
    pub fn is_done(&self) -> bool {
        match self {
            Decode::Length { remaining } => *remaining == 0,
            Decode::Chunked(dec) => dec.is_done(),
        }
    }

    /// Takes body bytes from the front of `input` without copying them:
    /// (raw bytes consumed, body bytes among them). Stops at the body's
    /// end: the rest of `input` is the next request's.
    pub fn skip(&mut self, input: &[u8]) -> Result<(usize, u64), HttpError> {
        match self {
            Decode::Length { remaining } => {
                let n = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                *remaining -= n as u64;
                Ok((n, n as u64))
            }
            Decode::Chunked(dec) => Ok(dec.skip(input)?),
        }
    }

    /// Decodes body bytes from the front of `input` into `out`: (raw bytes
    /// consumed, body bytes written). Stops at the body's end or when `out`
    /// is full.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), HttpError> {
        match self {
            Decode::Length { remaining } => {
                let n = input
                    .len()
                    .min(out.len())
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                out[..n].copy_from_slice(&input[..n]);
                *remaining -= n as u64;
                Ok((n, n))
            }
            Decode::Chunked(dec) => Ok(dec.decode(input, out)?),
        }
    }
}

/// Whether the client waits for `100 Continue` before sending the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continue {
    NotExpected,
    /// The client asked; we have not answered yet.
    Expected,
    Sent,
}

/// Where the body of a request with `framing` ends in `buffered` (the bytes
/// after its head): Some(raw length, framing included) once the whole body
/// is there, None while it is not. A chunked body is checked as it goes, so
/// malformed framing or a body over `limit` (0: none) is an error now.
pub fn body_end(framing: Framing, buffered: &[u8], limit: u64) -> Result<Option<usize>, HttpError> {
    let mut decode = Decode::new(framing);
    let (consumed, data) = decode.skip(buffered)?;
    if limit > 0 && data > limit {
        return Err(HttpError::PayloadTooLarge);
    }
    Ok(decode.is_done().then_some(consumed))
}

#[derive(Debug)]
pub struct BodyReader {
    decode: Decode,
    /// Bytes of the buffered input (handed to each read) already used.
    buffered_pos: usize,
    /// Bytes read from the source once the buffered ones ran out.
    extra: Vec<u8>,
    extra_pos: usize,
    done: bool,
    total: u64,
    limit: u64,
    pub expect: Continue,
    /// A failure sticks: the stream is desynchronised after it.
    failed: bool,
}

impl BodyReader {
    /// A reader for a body with `framing`; `buffered` is what arrived with
    /// the head (only looked at to know whether the client still waits for
    /// `100 Continue`).
    pub fn new(framing: Framing, buffered: &[u8], expect_continue: bool, limit: u64) -> BodyReader {
        let decode = Decode::new(framing);
        let done = decode.is_done();
        let expect = if expect_continue && !done && buffered.is_empty() {
            Continue::Expected
        } else {
            Continue::NotExpected
        };
        BodyReader {
            decode,
            buffered_pos: 0,
            extra: Vec::new(),
            extra_pos: 0,
            done,
            total: 0,
            limit,
            expect,
            failed: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Body bytes still to come on the wire, when the framing says
    /// (Content-Length); None for chunked.
    pub fn remaining(&self) -> Option<u64> {
        match self.decode {
            Decode::Length { remaining } => Some(remaining),
            Decode::Chunked(_) => None,
        }
    }

    /// Reads body bytes into `dst`; Ok(0) at the end of the body. `buffered`
    /// is the same bytes after the head at every call. The source is asked
    /// for `100 Continue` (once) before its first read if the client is
    /// waiting for it.
    pub fn read(
        &mut self,
        buffered: &[u8],
        source: &mut impl BodySource,
        dst: &mut [u8],
    ) -> Result<usize, BodyError> {
        if self.failed {
            return Err(BodyError::Closed);
        }
        let r = self.read_inner(buffered, source, dst);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn read_inner(
        &mut self,
        buffered: &[u8],
        source: &mut impl BodySource,
        dst: &mut [u8],
    ) -> Result<usize, BodyError> {
        if dst.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            let from_buffer = self.buffered_pos < buffered.len();
            if !from_buffer && self.extra_pos == self.extra.len() {
                if self.expect == Continue::Expected {
                    source.send_continue().map_err(BodyError::Io)?;
                    self.expect = Continue::Sent;
                }
                self.extra.clear();
                self.extra_pos = 0;
                match source.read_more(&mut self.extra, READ_CHUNK) {
                    Ok(0) => return Err(BodyError::Closed),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        return Err(BodyError::TimedOut)
                    }
                    Err(e) => return Err(BodyError::Io(e)),
                }
            }
            let input: &[u8] = if from_buffer {
                &buffered[self.buffered_pos..]
            } else {
                &self.extra[self.extra_pos..]
            };
            let (consumed, written) = self
                .decode
                .decode(input, dst)
                .map_err(BodyError::Malformed)?;
            self.done = self.decode.is_done();
            if from_buffer {
                self.buffered_pos += consumed;
            } else {
                self.extra_pos += consumed;
            }
            self.total = self.total.saturating_add(written as u64);
            if self.limit > 0 && self.total > self.limit {
                return Err(BodyError::Malformed(HttpError::PayloadTooLarge));
            }
            if written > 0 || self.done {
                return Ok(written);
            }
        }
    }

    /// How many bytes of the buffered input the body used, and the bytes
    /// read from the source that it did not use: past the body's end (the
    /// next request's start), or the body's own rest when the app stopped
    /// reading early.
    pub fn into_leftover(self) -> (usize, Vec<u8>) {
        let (used, extra, _) = self.into_rest();
        (used, extra)
    }

    /// `into_leftover`, and the framing state of the body's unread rest
    /// (done when it was read to its end), for dropping it after the
    /// response.
    pub fn into_rest(self) -> (usize, Vec<u8>, Decode) {
        let mut extra = self.extra;
        extra.drain(..self.extra_pos);
        (self.buffered_pos, extra, self.decode)
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
        fn read_more(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
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

    /// A reader and the buffered bytes it reads first.
    struct Reader<'a>(BodyReader, &'a [u8]);

    fn reader(framing: Framing, buffered: &[u8]) -> Reader<'_> {
        Reader(BodyReader::new(framing, buffered, false, 0), buffered)
    }

    fn read_all(r: &mut Reader<'_>, src: &mut Pieces, step: usize) -> Result<Vec<u8>, BodyError> {
        let mut out = Vec::new();
        let mut buf = vec![0; step];
        loop {
            match r.0.read(r.1, src, &mut buf)? {
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
        assert!(r.0.is_done());
        let (used, leftover) = r.0.into_leftover();
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
            let (used, mut leftover) = r.0.into_leftover();
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
        assert!(r.0.failed());
        assert!(matches!(
            r.0.read(r.1, &mut src, &mut [0; 4]),
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
        let mut r = Reader(
            BodyReader::new(Framing::Chunked, b"a\r\n", false, 5),
            b"a\r\n",
        );
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
        let mut r = Reader(BodyReader::new(Framing::Length(4), b"", true, 0), b"");
        assert_eq!(read_all(&mut r, &mut src, 1).unwrap(), b"abcd");
        assert_eq!(src.continues, 1);

        let mut src = Pieces::new(&[b"cd"]);
        let mut r = Reader(BodyReader::new(Framing::Length(4), b"ab", true, 0), b"ab");
        assert_eq!(read_all(&mut r, &mut src, 8).unwrap(), b"abcd");
        assert_eq!(src.continues, 0);
    }

    /// `body_end` finds a whole body in what is buffered, and nothing in
    /// less; the bytes after it are the next request's.
    #[test]
    fn body_end_finds_the_whole_body_only() {
        let wire = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\nGET /";
        let end = wire.len() - b"GET /".len();
        for cut in 0..wire.len() {
            let want = (cut >= end).then_some(end);
            assert_eq!(
                body_end(Framing::Chunked, &wire[..cut], 0),
                Ok(want),
                "cut {cut}"
            );
        }
        assert_eq!(
            body_end(Framing::Chunked, wire, 5),
            Err(HttpError::PayloadTooLarge)
        );
        assert!(body_end(Framing::Chunked, b"zz\r\n", 0).is_err());
        assert_eq!(body_end(Framing::Length(3), b"ab", 0), Ok(None));
        assert_eq!(body_end(Framing::Length(3), b"abcGET", 0), Ok(Some(3)));
        assert_eq!(body_end(Framing::Empty, b"GET", 0), Ok(Some(0)));
    }
}
