//! Helpers shared by the fuzz targets: turning the first input bytes into
//! configuration, bytes arriving in pieces as a socket delivers them, and
//! a body's framing decoded independently of the engine's readers.

use std::io;

use host::http1::body::BodySource;
use host::http1::chunked::ChunkedDecoder;
use host::http1::error::HttpError;
use host::http1::parse::{Framing, Limits};

/// Small limits from three configuration bytes, so the fuzzer reaches the
/// 414/431/413 edges with short inputs (the defaults need ~800 KiB heads).
/// Zero is a legal value of every field and worth exploring too.
pub fn small_limits(request_line: u8, fields_and_size: u8, body: u8) -> Limits {
    Limits {
        request_line: usize::from(request_line),
        fields: usize::from(fields_and_size & 0x07),
        field_size: usize::from(fields_and_size >> 3) * 4,
        // 0 = unlimited, as in the server's configuration.
        body: u64::from(body),
    }
}

/// A deterministic generator for piece and read sizes (xorshift32), seeded
/// from the input so a crash reproduces from its file alone.
#[derive(Clone, Debug)]
pub struct Sizes {
    state: u32,
    max: usize,
}

impl Sizes {
    /// Sizes in `1..=max`; `max` is at least 1.
    pub fn new(seed: u8, max: usize) -> Sizes {
        Sizes {
            state: 0x9e37_79b9 ^ u32::from(seed),
            max: max.max(1),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn next_size(&mut self) -> usize {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        1 + x as usize % self.max
    }
}

/// The client's side of a connection: `data` arriving in pieces whose sizes
/// come from `sizes`. Both the event loop (reading a head) and a
/// `BodyReader` (as its `BodySource`) take bytes from it, in order.
pub struct Wire<'a> {
    data: &'a [u8],
    /// Bytes handed over so far, to whichever reader.
    pub fed: usize,
    sizes: Sizes,
    /// `100 Continue` responses the body reader asked for.
    pub continues: usize,
}

impl<'a> Wire<'a> {
    pub fn new(data: &'a [u8], sizes: Sizes) -> Wire<'a> {
        Wire {
            data,
            fed: 0,
            sizes,
            continues: 0,
        }
    }

    /// The next piece, at most `max` bytes; empty once the client is done.
    pub fn piece(&mut self, max: usize) -> &'a [u8] {
        let n = self
            .sizes
            .next_size()
            .min(max)
            .min(self.data.len() - self.fed);
        let piece = &self.data[self.fed..self.fed + n];
        self.fed += n;
        piece
    }

    pub fn largest_piece(&self) -> usize {
        self.sizes.max()
    }

    pub fn is_exhausted(&self) -> bool {
        self.fed == self.data.len()
    }
}

impl BodySource for Wire<'_> {
    fn read_more(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        // The contract: at least one byte is asked for.
        assert!(max >= 1, "BodyReader asked for a read of 0 bytes");
        let piece = self.piece(max);
        buf.extend_from_slice(piece);
        Ok(piece.len())
    }

    fn send_continue(&mut self) -> io::Result<()> {
        self.continues += 1;
        Ok(())
    }
}

/// The source of a body already whole in the buffer (`serve.rs`'s `Whole`,
/// which answers "closed"): being asked at all means `body_end` and the
/// reader disagree about where the body ends.
pub struct Whole;

impl BodySource for Whole {
    fn read_more(&mut self, _: &mut Vec<u8>, _: usize) -> io::Result<usize> {
        panic!("a body buffered whole asked the socket for more");
    }

    fn send_continue(&mut self) -> io::Result<()> {
        panic!("a body buffered whole asked for 100 Continue");
    }
}

/// A body as its framing delimits it on the wire, found without the
/// engine's `Decode`, `body_end`, `Intake` or `BodyReader`.
#[derive(Debug)]
pub struct OnWire {
    /// Raw bytes of the body, framing included (up to its end if `done`).
    pub raw: usize,
    /// The body's bytes, de-chunked.
    pub body: Vec<u8>,
    /// The whole body is in the bytes given.
    pub done: bool,
}

/// Decodes the body at the start of `bytes`: Content-Length is exactly that
/// many bytes, chunked goes through one `ChunkedDecoder` call over all of
/// `bytes` (the `chunked` target checks that this equals any other split).
pub fn on_wire(framing: Framing, bytes: &[u8]) -> Result<OnWire, HttpError> {
    match framing {
        Framing::Empty => Ok(OnWire {
            raw: 0,
            body: Vec::new(),
            done: true,
        }),
        Framing::Length(n) => {
            let raw = usize::try_from(n).map_or(bytes.len(), |n| n.min(bytes.len()));
            Ok(OnWire {
                raw,
                body: bytes[..raw].to_vec(),
                done: raw as u64 == n,
            })
        }
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut out = vec![0u8; bytes.len()];
            let (raw, written) = dec.decode(bytes, &mut out)?;
            out.truncate(written);
            Ok(OnWire {
                raw,
                body: out,
                done: dec.is_done(),
            })
        }
    }
}

/// Body bytes that `bytes` decodes to before its framing fails or the body
/// ends: the most any reader could have counted toward the body limit.
/// Only for the rare 413 paths: it feeds the decoder a byte at a time.
pub fn decoded_before_error(framing: Framing, bytes: &[u8]) -> u64 {
    match framing {
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut out = [0u8; 1];
            let mut total = 0;
            for i in 0..bytes.len() {
                match dec.decode(&bytes[i..i + 1], &mut out) {
                    Ok((_, n)) => total += n as u64,
                    Err(_) => break,
                }
                if dec.is_done() {
                    break;
                }
            }
            total
        }
        other => on_wire(other, bytes).map_or(0, |w| w.body.len() as u64),
    }
}

/// True if `inner` lies entirely inside `outer` (same allocation).
pub fn is_within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr_range();
    let i = inner.as_ptr_range();
    o.start <= i.start && i.end <= o.end
}

/// Every LF is preceded by CR and every CR followed by LF.
pub fn only_crlf_line_ends(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        _ => true,
    })
}
