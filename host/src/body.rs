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

use mio::net::TcpStream;

use crate::chunked::ChunkedDecoder;
use crate::error::HttpError;
use crate::io::read_some;
use crate::parse::Framing;

/// How much one socket read may pull in for a body.
const READ_CHUNK: usize = 16 * 1024;

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

    /// Reads body bytes into `dst`; Ok(0) at the end of the body.
    /// `send_continue` is called (once) before the first socket read if
    /// the client is waiting for `100 Continue`.
    pub fn read(
        &mut self,
        stream: &mut TcpStream,
        dst: &mut [u8],
        send_continue: &mut dyn FnMut(&mut TcpStream) -> io::Result<()>,
    ) -> Result<usize, BodyError> {
        if self.failed {
            return Err(BodyError::Closed);
        }
        let r = self.read_inner(stream, dst, send_continue);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn read_inner(
        &mut self,
        stream: &mut TcpStream,
        dst: &mut [u8],
        send_continue: &mut dyn FnMut(&mut TcpStream) -> io::Result<()>,
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
                    send_continue(stream).map_err(BodyError::Io)?;
                    self.expect = Continue::Sent;
                }
                self.extra.clear();
                self.extra_pos = 0;
                match read_some(stream, &mut self.extra, READ_CHUNK, deadline) {
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
    pub fn drain(&mut self, stream: &mut TcpStream, max: u64) -> bool {
        if self.expect == Continue::Expected {
            // The client is still waiting for permission to send: never
            // sent, never to be read. Closing is the only safe answer.
            return self.done;
        }
        let mut scratch = [0u8; 4096];
        let mut drained = 0u64;
        while !self.done {
            match self.read(stream, &mut scratch, &mut |_| Ok(())) {
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
