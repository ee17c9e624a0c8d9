//! Reading a request body on the event loop, before the app sees the
//! request (nginx's request buffering): the app thread then reads
//! wsgi.input from memory or a file and never waits on the client, and a
//! client that drips its body holds a few bytes of memory, not a thread.
//!
//! A body stays in the connection's buffer, raw, right after its head,
//! while it fits `--body-buffer-size` and the worker's budget for bodies in
//! memory; past that, it is decoded into an unlinked temporary file (see
//! `spool`) and its raw bytes leave the buffer as they arrive. The same
//! walk drops what an app left unread of a streamed body
//! (`--no-request-buffering`), so the next request can be read.
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::Instant;

use crate::http1::body::Decode;
use crate::http1::error::HttpError;
use crate::runtime::rate::Rate;
use crate::runtime::spool;

/// Most bytes of an unread body dropped to keep a connection (beyond it
/// the connection closes; the response said so, see `body_left_ok`).
pub const DISCARD_MAX: u64 = 64 * 1024;

/// A body on its way in.
pub struct Intake {
    /// Where the body starts in the connection's buffer (its head, if
    /// still there, is before it).
    pub start: usize,
    decode: Decode,
    /// Raw body bytes kept in the buffer after `start`.
    kept: usize,
    /// Body bytes (decoded) so far, for the limit.
    total: u64,
    /// Where the body goes once it is too large for memory.
    spool: Option<File>,
    /// Decoded bytes written to `spool`.
    spooled: u64,
    /// The bytes are dropped, not kept (what an app left unread).
    discard: bool,
    /// Since the event loop began waiting for the body, and what arrived.
    pub rate: Rate,
    /// The client sent `Expect: 100-continue`: it waits for a go-ahead
    /// before it sends the body.
    pub expect_continue: bool,
}

/// What reading a body led to.
#[derive(Debug)]
pub enum Progress {
    /// The body is not whole yet.
    More,
    /// It is whole: in the buffer at `start..start + len` (raw), or in the
    /// spool file. The buffer's bytes after it are the next request's.
    Done,
}

/// Why a body cannot be read.
#[derive(Debug)]
pub enum IntakeError {
    /// Malformed framing (400) or over `--limit-request-body` (413).
    Refused(HttpError),
    /// The temporary file could not be made or written.
    Spool(io::Error),
    /// An unread body longer than `DISCARD_MAX`: close instead.
    TooLongToDrop,
}

/// Limits the loop reads a body under.
pub struct Budget<'a> {
    /// `--limit-request-body` (0: none).
    pub limit: u64,
    /// `--body-buffer-size`: larger bodies go to a file.
    pub in_memory: usize,
    /// The worker's bodies in memory are over their total: spool this one.
    pub memory_full: bool,
    /// `--body-temp-dir`.
    pub temp_dir: &'a Path,
}

impl Intake {
    /// A body to read ahead, starting at `start` of the buffer.
    pub fn new(start: usize, decode: Decode, now: Instant) -> Intake {
        Intake {
            start,
            decode,
            kept: 0,
            total: 0,
            spool: None,
            spooled: 0,
            discard: false,
            rate: Rate::new(now),
            expect_continue: false,
        }
    }

    /// The unread rest of a body, to drop from `start` of the buffer on.
    pub fn discard(start: usize, decode: Decode, now: Instant) -> Intake {
        Intake {
            discard: true,
            ..Intake::new(start, decode, now)
        }
    }

    /// Raw body bytes the buffer holds for this body.
    pub fn kept(&self) -> usize {
        self.kept
    }

    /// The file the body went to, and its decoded length, once done.
    pub fn into_spooled(self) -> Option<(File, u64)> {
        self.spool.map(|f| (f, self.spooled))
    }

    /// Takes what `buf` gained past `start + kept` into the body, up to its
    /// end. Bytes past the end stay in `buf`.
    pub fn advance(
        &mut self,
        buf: &mut Vec<u8>,
        budget: &Budget<'_>,
    ) -> Result<Progress, IntakeError> {
        let from = self.start + self.kept;
        if from < buf.len() && !self.decode.is_done() {
            if self.spool.is_some() {
                self.spool_from(buf, from)?;
            } else {
                let (consumed, data) = self
                    .decode
                    .skip(&buf[from..])
                    .map_err(IntakeError::Refused)?;
                self.total = self.total.saturating_add(data);
                if self.discard {
                    buf.drain(from..from + consumed);
                } else {
                    self.kept += consumed;
                }
            }
        }
        if self.discard {
            if self.total > DISCARD_MAX {
                return Err(IntakeError::TooLongToDrop);
            }
        } else if budget.limit > 0 && self.total > budget.limit {
            return Err(IntakeError::Refused(HttpError::PayloadTooLarge));
        }
        if self.decode.is_done() {
            return Ok(Progress::Done);
        }
        if !self.discard
            && self.spool.is_none()
            && (self.kept > budget.in_memory || (budget.memory_full && self.kept > 0))
        {
            self.start_spooling(buf, budget.temp_dir)?;
        }
        Ok(Progress::More)
    }

    /// Moves the body so far from the buffer into a new temporary file,
    /// decoded; from now on its bytes go there as they arrive.
    fn start_spooling(&mut self, buf: &mut Vec<u8>, dir: &Path) -> Result<(), IntakeError> {
        let mut file = spool::temp_file(dir).map_err(IntakeError::Spool)?;
        let raw = &buf[self.start..self.start + self.kept];
        // The bytes kept so far were only checked; decoding them again from
        // the body's start leaves a decoder in the same state as this one.
        let mut decode = match &self.decode {
            Decode::Length { remaining } => Decode::Length {
                remaining: remaining + raw.len() as u64,
            },
            Decode::Chunked(_) => Decode::Chunked(Default::default()),
        };
        let (_, written) = decode_into(&mut decode, raw, &mut file)?;
        buf.drain(self.start..self.start + self.kept);
        self.kept = 0;
        self.decode = decode;
        self.spooled = written;
        self.spool = Some(file);
        Ok(())
    }

    /// Decodes `buf[from..]` (up to the body's end) into the spool file and
    /// takes those raw bytes out of the buffer.
    fn spool_from(&mut self, buf: &mut Vec<u8>, from: usize) -> Result<(), IntakeError> {
        let file = self.spool.as_mut().expect("spooling");
        let (consumed, written) = decode_into(&mut self.decode, &buf[from..], file)?;
        buf.drain(from..from + consumed);
        self.spooled += written;
        self.total = self.total.saturating_add(written);
        Ok(())
    }
}

/// Decodes `raw` into `file` up to the body's end; returns (raw bytes
/// consumed, body bytes written).
fn decode_into(
    decode: &mut Decode,
    raw: &[u8],
    file: &mut File,
) -> Result<(usize, u64), IntakeError> {
    let mut out = [0u8; 16 * 1024];
    let (mut consumed, mut written) = (0, 0u64);
    while consumed < raw.len() && !decode.is_done() {
        let (c, n) = decode
            .decode(&raw[consumed..], &mut out)
            .map_err(IntakeError::Refused)?;
        file.write_all(&out[..n]).map_err(IntakeError::Spool)?;
        consumed += c;
        written += n as u64;
        if c == 0 && n == 0 {
            break;
        }
    }
    Ok((consumed, written))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse::Framing;
    use std::io::{Read, Seek};

    fn budget(dir: &Path, in_memory: usize) -> Budget<'_> {
        Budget {
            limit: 0,
            in_memory,
            memory_full: false,
            temp_dir: dir,
        }
    }

    /// Feeds `wire` (head bytes `head` first) a piece at a time; returns
    /// the final buffer and the intake.
    fn feed(
        head: &[u8],
        wire: &[u8],
        piece: usize,
        framing: Framing,
        b: &Budget<'_>,
    ) -> (Vec<u8>, Intake) {
        let mut buf = head.to_vec();
        let mut intake = Intake::new(head.len(), Decode::new(framing), Instant::now());
        for chunk in wire.chunks(piece) {
            buf.extend_from_slice(chunk);
            if let Progress::Done = intake.advance(&mut buf, b).unwrap() {
                return (buf, intake);
            }
        }
        panic!("body never completed");
    }

    fn spooled(intake: Intake) -> Vec<u8> {
        let (mut file, len) = intake.into_spooled().expect("spooled");
        let mut body = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut body).unwrap();
        assert_eq!(body.len() as u64, len);
        body
    }

    #[test]
    fn a_small_body_stays_raw_in_the_buffer() {
        let dir = std::env::temp_dir();
        let wire = b"5\r\nhello\r\n0\r\n\r\nGET /next";
        let (buf, intake) = feed(b"HEAD", wire, 3, Framing::Chunked, &budget(&dir, 1024));
        assert!(intake.spool.is_none());
        // Everything fed is still there: head, raw body, then whatever of
        // the next request was fed before the body ended.
        assert!(buf.starts_with(b"HEAD5\r\nhello\r\n0\r\n\r\n"));
        assert_eq!(intake.kept(), wire.len() - b"GET /next".len());
    }

    #[test]
    fn a_large_body_goes_to_a_file_decoded_and_leaves_the_next_request() {
        let dir = std::env::temp_dir();
        let mut wire = Vec::new();
        let mut body = Vec::new();
        for i in 0..200u32 {
            let chunk = format!("chunk {i} ").repeat(7);
            wire.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(chunk.as_bytes());
        }
        wire.extend_from_slice(b"0\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
        // A body that arrives whole is in memory already: it stays there.
        let (_, intake) = feed(
            b"HEAD",
            &wire,
            wire.len(),
            Framing::Chunked,
            &budget(&dir, 512),
        );
        assert!(intake.spool.is_none());
        for piece in [1, 7, 100, 5000] {
            let (buf, intake) = feed(b"HEAD", &wire, piece, Framing::Chunked, &budget(&dir, 512));
            assert_eq!(spooled(intake), body, "piece {piece}");
            // The buffer: the head, then what came after the body.
            assert!(buf.starts_with(b"HEAD"));
            assert!(
                b"GET /next HTTP/1.1\r\n\r\n".starts_with(&buf[4..]),
                "piece {piece}"
            );
        }
        let plain = vec![b'x'; 3000];
        let (buf, intake) = feed(b"H", &plain, 64, Framing::Length(3000), &budget(&dir, 1000));
        assert_eq!(spooled(intake), plain);
        assert_eq!(buf, b"H");
    }

    #[test]
    fn limits_and_discarding() {
        let dir = std::env::temp_dir();
        let mut b = budget(&dir, 1 << 20);
        b.limit = 10;
        let mut buf = b"0123456789ab".to_vec();
        let mut intake = Intake::new(0, Decode::new(Framing::Chunked), Instant::now());
        buf.splice(0..0, b"c\r\n".iter().copied());
        assert!(matches!(
            intake.advance(&mut buf, &b),
            Err(IntakeError::Refused(HttpError::PayloadTooLarge))
        ));
        // Dropping an unread rest: the buffer keeps only the next request.
        let mut buf = b"HEADxyzGET /".to_vec();
        let mut intake = Intake::discard(4, Decode::Length { remaining: 3 }, Instant::now());
        assert!(matches!(intake.advance(&mut buf, &b), Ok(Progress::Done)));
        assert_eq!(buf, b"HEADGET /");
        let mut buf = vec![0u8; 100_000];
        let mut intake = Intake::discard(0, Decode::Length { remaining: 200_000 }, Instant::now());
        assert!(matches!(
            intake.advance(&mut buf, &b),
            Err(IntakeError::TooLongToDrop)
        ));
    }
}
