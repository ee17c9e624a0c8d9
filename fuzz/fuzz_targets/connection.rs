//! One connection as the server handles it, without sockets or a plugin,
//! driving the real pieces in the order the server uses them: the event
//! loop's `HeadScan` as bytes arrive (`event_loop.rs`: `read_head`,
//! `scan_buffered`); the app thread's parse and body input (`serve.rs`:
//! `start_request`, `end_request`, `end_turn`); and in between, the body
//! read ahead by `Intake` (`start_body`, `read_body`, `advance_body`) or,
//! with `--no-request-buffering`, read by `BodyReader` from the buffer and
//! then the socket, its unread rest dropped by `Intake::discard`. Only the
//! glue between those pieces (offsets into the buffer, what is drained
//! when) is written again here, step for step after those functions.
//!
//! Input: six configuration bytes, then the byte stream.
//! - byte 0: seeds the piece sizes; its top two bits pick the largest piece
//!   (1, 13, 500 or 20 000 bytes, the last over `BodyReader`'s read size);
//! - byte 1: bits 0-3 the app's read size minus one, bit 4 small limits,
//!   bit 5 `--no-request-buffering` (streamed; else buffered), bit 6 the
//!   app stops reading a streamed body early;
//! - bytes 2-4: the small limits (`host_fuzz::small_limits`);
//! - byte 5: buffered, `--body-buffer-size` in units of 8 bytes (so bodies
//!   over 0..2040 bytes are spooled to an unlinked file in
//!   `std::env::temp_dir()`); streamed with bit 6, the reads the app makes
//!   before it stops.
//!
//! (Until the event loop took over body reading, the layout had five
//! bytes: byte 5 and bits 5-6 of byte 1 are new.)
//!
//! The loop: the event loop reads pieces into the buffer, scanning after
//! each, until the scan finds a head or refuses one (it stops reading at
//! `max_head() + 64 KiB`). The app thread then serves every complete request
//! in the buffer. Buffered: a body `body_end` finds whole is read from the
//! buffer; otherwise the head moves to the buffer's front and the event loop
//! feeds pieces through `Intake::advance` until the body is whole (raw in the
//! buffer, or decoded into a spool file past the in-memory size), and the
//! app thread takes the request up again. Streamed: a `BodyReader` reads
//! the buffer, then the remaining pieces; what the app left goes through
//! `Intake::discard` before the next head. Repeat until the input runs out,
//! the client asked to close, or an error (the server answers once and
//! closes).
//!
//! Asserted: no panic; no infinite loop; heads: a scan refusal is a refusal
//! of `check_head` on that buffer too (same error), a head the scan calls
//! complete parses to a head or an error (never "incomplete"), the scan's
//! outcome does not depend on how the bytes were split (compared with one
//! scan over the whole buffer: complete for both or neither, a refusal is
//! the same refusal; only its timing may differ, and a head refused at once
//! that the pieces let through for now ends refused), and the buffer never
//! sits at its cap without a head or an error; bodies: what the app reads (from the buffer, the spool
//! file or the socket) is exactly an independent decode of the framed
//! bytes on the wire (Content-Length: those bytes; chunked: one
//! `ChunkedDecoder` call), `body_end` on a body the intake finished says
//! whole, at the length the intake kept, while a body is on its way the
//! buffer holds only the head and the raw bytes kept in memory (at most the
//! in-memory size), a spool file has no name, a 413 comes only for a body
//! that decodes to more than the limit and a body over it never reaches the
//! app, a framing error is the same error the independent decode finds; and
//! after each request the buffer is exactly the next unread bytes of the
//! stream (heads + body framing + buffer = bytes fed), also after a
//! dropped rest, which starts where the app stopped reading; and the loop
//! never waits for a client that sent everything while a request it has
//! not answered is buffered behind such a rest.
#![no_main]

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::Instant;

use host::http1::body::{body_end, BodyError, BodyReader, Continue, Decode};
use host::http1::error::HttpError;
use host::http1::head::{check_head, parse_request, HeadScan, Scan};
use host::http1::memo::HeadMemo;
use host::http1::parse::{parse_head, Framing, Limits, EMPTY_FIELD};
use host::runtime::intake::{Budget, Intake, IntakeError, Progress, DISCARD_MAX};
use host_fuzz::{decoded_before_error, on_wire, small_limits, OnWire, Sizes, Whole, Wire};
use libfuzzer_sys::fuzz_target;

/// What `event_loop.rs` reads a head up to before it stops reading.
const HEAD_SLACK: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let [seed, flags, line, fields, body, extra, stream @ ..] = data else {
        return;
    };
    let largest = [1, 13, 500, 20_000][usize::from(seed >> 6)];
    let limits = if flags & 0x10 != 0 {
        small_limits(*line, *fields, *body)
    } else {
        Limits::default()
    };
    let mode = if flags & 0x20 != 0 {
        Mode::Streamed {
            stop_after: (flags & 0x40 != 0).then_some(usize::from(*extra)),
        }
    } else {
        Mode::Buffered {
            in_memory: usize::from(*extra) * 8,
        }
    };
    let config = Config {
        limits,
        read_size: usize::from(flags & 0x0f) + 1,
        mode,
        temp_dir: std::env::temp_dir(),
    };
    Connection {
        stream,
        wire: Wire::new(stream, Sizes::new(*seed, largest)),
        config: &config,
        buf: Vec::new(),
        scan: HeadScan::default(),
        memo: Box::default(),
        consumed: 0,
    }
    .run();
});

struct Config {
    limits: Limits,
    /// The app's wsgi.input reads, in bytes.
    read_size: usize,
    mode: Mode,
    /// `--body-temp-dir`.
    temp_dir: PathBuf,
}

#[derive(Clone, Copy)]
enum Mode {
    /// The event loop reads a body ahead of the app; `--body-buffer-size`.
    Buffered { in_memory: usize },
    /// `--no-request-buffering`; the app stops after that many reads.
    Streamed { stop_after: Option<usize> },
}

/// What the parse told about a head, owned (the parse borrows the buffer).
#[derive(Debug, Clone, Copy)]
struct Head {
    len: usize,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// What comes next for the connection: `event_loop.rs`'s slot states.
enum Step {
    /// `Slot::Head`: wait for a whole head.
    Head,
    /// Lent to an app thread (`Work::Serve`), with the body read ahead.
    Serve(Ahead),
    /// `Slot::Body` reading the body of the request at the buffer's front.
    Body(Head),
    /// `Slot::Body` dropping what the app left of a streamed body.
    Discard(Rest),
}

/// `conn.ahead` when a connection is lent.
enum Ahead {
    None,
    /// The body is whole in the buffer after the head: this many raw bytes.
    Read {
        kept: usize,
    },
    /// The body is whole in a spool file, decoded.
    Spooled {
        file: File,
        len: u64,
    },
}

/// Where wsgi.input reads from (`serve.rs`'s `Input`).
enum Input {
    Empty,
    /// With the raw length `body_end` gave.
    Buffered(BodyReader, usize),
    Spooled {
        file: File,
        len: u64,
        pos: u64,
    },
    Streamed(BodyReader),
}

/// A streamed body's unread rest, to drop.
struct Rest {
    intake: Intake,
    /// The framing state the rest was handed over with (the intake's own
    /// is private): valid until its first `advance`.
    decode: Decode,
    framing: Framing,
    /// Offset in the stream where the body starts, and where its unread
    /// rest does.
    body_start: usize,
    at: usize,
}

struct Connection<'a> {
    stream: &'a [u8],
    /// The client: the rest of `stream`, a piece at a time.
    wire: Wire<'a>,
    config: &'a Config,
    /// `conn.buf`.
    buf: Vec<u8>,
    /// `conn.scan`.
    scan: HeadScan,
    /// The app thread's memo of recent heads.
    memo: Box<HeadMemo>,
    /// Offset in `stream` of the first byte no request has consumed yet,
    /// counted from the heads' lengths and the bodies' framing as decoded
    /// independently (`host_fuzz::on_wire`), not from the engine's offsets.
    consumed: usize,
}

impl Connection<'_> {
    fn run(mut self) {
        let mut step = Step::Head;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(
                steps <= 4 * self.stream.len() + 8,
                "the connection does not progress"
            );
            step = match step {
                Step::Head => {
                    if !self.read_head() {
                        return;
                    }
                    Step::Serve(Ahead::None)
                }
                Step::Serve(ahead) => match self.serve(ahead) {
                    Some(next) => next,
                    None => return,
                },
                Step::Body(head) => match self.read_body(head) {
                    Some(ahead) => Step::Serve(ahead),
                    None => return,
                },
                Step::Discard(rest) => {
                    if !self.discard(rest) {
                        return;
                    }
                    Step::Head
                }
            };
        }
    }

    /// `buf[from..]` is the next unread bytes of the stream.
    fn assert_unread(&self, from: usize) {
        assert_eq!(
            self.consumed + (self.buf.len() - from),
            self.wire.fed,
            "bytes lost or duplicated"
        );
        assert_eq!(
            &self.buf[from..],
            &self.stream[self.consumed..self.wire.fed],
            "the buffer is not the next unread bytes"
        );
    }

    // --- the event loop: heads -------------------------------------------------

    /// `read_head` and `scan_buffered`: scans what is buffered, then reads
    /// a piece at a time, scanning after each, until a head is whole (true)
    /// or refused, or the client is done (false: closed).
    fn read_head(&mut self) -> bool {
        let config = self.config;
        let limits = &config.limits;
        let cap = limits.max_head().saturating_add(HEAD_SLACK);
        let bound = cap.saturating_add(self.wire.largest_piece());
        // A refusal one scan over the whole buffer gave before this scan
        // did: the head must end refused, however it goes on.
        let mut doomed = None;
        loop {
            self.assert_unread(0);
            assert!(
                self.buf.len() <= bound,
                "buffer of {} bytes",
                self.buf.len()
            );
            if !self.buf.is_empty() {
                let scanned = self.scan.scan(&self.buf, limits);
                let at_once = HeadScan::default().scan(&self.buf, limits);
                // The split decides only when a refusal comes: the scan
                // asks the parser on first sight, at the end of the request
                // line and past a limit, not on every arrival (`head.rs`),
                // so one scan over more bytes may refuse sooner.
                match (&scanned, &at_once) {
                    (Ok(Scan::Partial), Err(e)) => {
                        doomed.get_or_insert(*e);
                    }
                    _ => assert_eq!(
                        scanned,
                        at_once,
                        "the scan depends on how {} bytes were split",
                        self.buf.len()
                    ),
                }
                match scanned {
                    Ok(Scan::Complete) => {
                        let mut storage = vec![EMPTY_FIELD; limits.fields];
                        let parsed = parse_head(&self.buf, &mut storage, limits);
                        assert!(
                            !matches!(parsed, Ok(None)),
                            "the scan found a whole head the parser calls incomplete"
                        );
                        if let Some(e) = doomed {
                            assert!(
                                parsed.is_err(),
                                "a head refused ({e:?}) when its bytes came at once is accepted"
                            );
                        }
                        return true;
                    }
                    Err(e) => {
                        assert_eq!(
                            check_head(&self.buf, limits),
                            Err(e),
                            "the scan refused a head the parser does not"
                        );
                        // Answered and closed.
                        return false;
                    }
                    Ok(Scan::Partial) => {}
                }
            }
            // About to wait for the client: at the cap it would never read
            // again, and nothing would end the wait but the timeout.
            assert!(
                self.buf.len() < cap,
                "{} bytes buffered without a head or an error: stalled",
                self.buf.len()
            );
            let piece = self.wire.piece(usize::MAX);
            if piece.is_empty() {
                return false;
            }
            self.buf.extend_from_slice(piece);
        }
    }

    // --- the app thread -----------------------------------------------------

    /// `drive` over a lent connection: every complete request in the buffer,
    /// from its front. The next step, or None if the connection closes.
    fn serve(&mut self, mut ahead: Ahead) -> Option<Step> {
        let config = self.config;
        let limits = &config.limits;
        // `d.start`: where the next request starts in the buffer.
        let mut d_start = 0;
        let mut first = true;
        loop {
            if !matches!(ahead, Ahead::Spooled { .. }) {
                // (A spooled body is out of the buffer: `read_body` checked
                // the head and what follows.)
                self.assert_unread(d_start);
            }
            if self.buf.len() == d_start {
                self.end_turn(d_start);
                return Some(Step::Head);
            }
            let memo = &mut *self.memo;
            let parsed = parse_request(&self.buf[d_start..], limits, Some(memo), |parsed| {
                parsed.map(|head| {
                    head.map(|h| Head {
                        len: h.len,
                        framing: h.framing,
                        keep_alive: h.keep_alive,
                        expect_continue: h.expect_continue,
                    })
                })
            });
            let head = match parsed {
                Ok(Some(head)) => head,
                Ok(None) => {
                    assert!(
                        !first,
                        "lent with a whole head that the app thread finds incomplete"
                    );
                    self.end_turn(d_start);
                    return Some(Step::Head);
                }
                // Answered and closed.
                Err(_) => return None,
            };
            first = false;
            assert!(head.len >= 1 && d_start + head.len <= self.buf.len());
            let body_start = self.consumed + head.len;
            let after_at = d_start + head.len;
            let input = match std::mem::replace(&mut ahead, Ahead::None) {
                Ahead::Spooled { file, len } => Input::Spooled { file, len, pos: 0 },
                _ if head.framing == Framing::Empty => Input::Empty,
                read_ahead => match self.config.mode {
                    Mode::Buffered { .. } => {
                        let after = &self.buf[after_at..];
                        match body_end(head.framing, after, limits.body) {
                            Ok(Some(len)) => {
                                if let Ahead::Read { kept } = read_ahead {
                                    assert_eq!(len, kept, "body_end and the intake disagree");
                                }
                                Input::Buffered(BodyReader::new(head.framing, after, false, 0), len)
                            }
                            Ok(None) => {
                                assert!(
                                    !matches!(read_ahead, Ahead::Read { .. }),
                                    "the intake finished a body body_end calls partial"
                                );
                                // `Parsed::NeedBody`: the head goes to the
                                // front, the event loop reads the body.
                                self.buf.drain(..d_start);
                                self.end_turn(0);
                                return Some(Step::Body(head));
                            }
                            Err(e) => {
                                assert!(
                                    !matches!(read_ahead, Ahead::Read { .. }),
                                    "the intake finished a body body_end refuses: {e:?}"
                                );
                                self.assert_refusal(e, head.framing, body_start);
                                return None;
                            }
                        }
                    }
                    Mode::Streamed { .. } => Input::Streamed(BodyReader::new(
                        head.framing,
                        &self.buf[after_at..],
                        head.expect_continue,
                        limits.body,
                    )),
                },
            };
            let continues_before = self.wire.continues;
            let mut dst = vec![0u8; self.config.read_size];
            let mut body = Vec::new();
            // `end_request`: past the head, then past the body.
            d_start += head.len;
            let mut keep_alive = head.keep_alive;
            match input {
                Input::Empty => {
                    self.assert_body(head.framing, body_start, &body);
                }
                Input::Buffered(mut reader, len) => {
                    let after = &self.buf[after_at..];
                    loop {
                        match reader.read(after, &mut Whole, &mut dst) {
                            Ok(0) => break,
                            Ok(n) => body.extend_from_slice(&dst[..n]),
                            Err(e) => panic!("a body body_end found whole failed: {e:?}"),
                        }
                    }
                    assert!(reader.is_done(), "Ok(0) before the end of the body");
                    let (used, leftover) = reader.into_leftover();
                    assert_eq!((used, leftover.len()), (len, 0), "read past body_end");
                    let w = self.assert_body(head.framing, body_start, &body);
                    assert_eq!(len, w.raw, "body_end is not where the body ends");
                    d_start += len;
                }
                Input::Spooled { file, len, mut pos } => {
                    // `Wire::read_body` for `Input::Spooled`.
                    loop {
                        let want = dst
                            .len()
                            .min(usize::try_from(len - pos).unwrap_or(usize::MAX));
                        if want == 0 {
                            break;
                        }
                        let n = file.read_at(&mut dst[..want], pos).expect("spool read");
                        assert!(n > 0, "the spool file is shorter than its length");
                        body.extend_from_slice(&dst[..n]);
                        pos += n as u64;
                    }
                    self.assert_body(head.framing, body_start, &body);
                }
                Input::Streamed(reader) => {
                    match self.read_streamed(reader, head, after_at, body_start, d_start) {
                        Streamed::Closed => return None,
                        Streamed::Next {
                            d_start: next,
                            keep_alive: may,
                        } => {
                            d_start = next;
                            keep_alive &= may;
                        }
                        Streamed::Drop(rest, d_start) => {
                            // The event loop drops the rest, then waits for
                            // the next head (`end_turn`, `Done::Idle`).
                            self.end_turn(d_start);
                            return Some(Step::Discard(*rest));
                        }
                    }
                }
            }
            assert!(
                self.wire.continues - continues_before <= 1,
                "100 Continue twice"
            );
            if !keep_alive {
                return None;
            }
        }
    }

    /// `end_turn`: the consumed bytes leave the buffer; the scan starts
    /// over.
    fn end_turn(&mut self, d_start: usize) {
        self.buf.drain(..d_start);
        self.scan = HeadScan::default();
    }

    /// The app reads a streamed body (`--no-request-buffering`) until its
    /// end or until it stops; then `end_request`'s `Input::Streamed` arm.
    fn read_streamed(
        &mut self,
        mut reader: BodyReader,
        head: Head,
        after_at: usize,
        body_start: usize,
        mut d_start: usize,
    ) -> Streamed {
        let config = self.config;
        let limits = &config.limits;
        let stop_after = match self.config.mode {
            Mode::Streamed { stop_after } => stop_after,
            Mode::Buffered { .. } => unreachable!("streamed"),
        };
        let fed_before = self.wire.fed;
        let mut dst = vec![0u8; self.config.read_size];
        let mut body = Vec::new();
        let mut reads = 0;
        loop {
            if stop_after.is_some_and(|n| reads >= n) {
                break;
            }
            let after = &self.buf[after_at..];
            match reader.read(after, &mut self.wire, &mut dst) {
                Ok(0) => break,
                Ok(n) => {
                    assert!(n <= dst.len());
                    body.extend_from_slice(&dst[..n]);
                    reads += 1;
                }
                Err(e) => {
                    assert!(reader.failed());
                    let from_wire = self.wire.fed - fed_before;
                    assert!(body.len() <= after.len() + from_wire);
                    match e {
                        BodyError::Malformed(e) => self.assert_refusal(e, head.framing, body_start),
                        BodyError::Closed => {
                            assert!(self.wire.is_exhausted(), "closed before the client was");
                            let w = on_wire(head.framing, &self.stream[body_start..])
                                .expect("a body that failed only at EOF decodes");
                            assert!(!w.done, "the whole body was sent, the reader saw EOF");
                        }
                        other => panic!("the wire cannot fail so: {other:?}"),
                    }
                    // The exchange answers 400/413, or the client is gone:
                    // closed either way.
                    return Streamed::Closed;
                }
            }
        }
        // `Wire::may_keep_alive`.
        let may_keep_alive = reader.is_done()
            || (reader.expect != Continue::Expected
                && reader.remaining().is_some_and(|n| n <= DISCARD_MAX));
        let done = reader.is_done();
        let (used, leftover, decode) = reader.into_rest();
        let after_len = self.buf.len() - after_at;
        let from_wire = self.wire.fed - fed_before;
        assert!(used <= after_len, "used {used} of {after_len} buffered");
        assert!(
            leftover.len() <= from_wire,
            "leftover not read from the wire"
        );
        if from_wire > 0 {
            assert_eq!(used, after_len, "read the socket before the buffer ran out");
        }
        // Where the reader stopped on the wire.
        let at = if from_wire > 0 {
            self.wire.fed - leftover.len()
        } else {
            assert!(leftover.is_empty(), "leftover without reading the wire");
            body_start + used
        };
        if from_wire > 0 {
            assert_eq!(
                leftover,
                &self.stream[at..self.wire.fed],
                "leftover is not the next bytes"
            );
        }
        if done {
            let w = self.assert_body(head.framing, body_start, &body);
            assert_eq!(
                at,
                body_start + w.raw,
                "the body ends elsewhere on the wire"
            );
        } else {
            assert!(stop_after.is_some(), "Ok(0) before the end of the body");
            if limits.body > 0 {
                assert!(body.len() as u64 <= limits.body, "body over the limit");
            }
        }
        // `end_request`'s `Input::Streamed` arm, on the buffer: what
        // follows the consumed part goes to the front, then the leftover.
        self.buf.drain(..d_start + used);
        d_start = 0;
        self.buf.extend_from_slice(&leftover);
        assert_eq!(
            &self.buf[d_start..],
            &self.stream[at..self.wire.fed],
            "after a streamed body the buffer is not the next unread bytes"
        );
        if !decode.is_done() && head.keep_alive && may_keep_alive {
            let rest = Rest {
                intake: Intake::discard(0, decode.clone(), Instant::now()),
                decode,
                framing: head.framing,
                body_start,
                at,
            };
            return Streamed::Drop(Box::new(rest), d_start);
        }
        if !decode.is_done() {
            // `Connection: close` said so in the response.
            return Streamed::Closed;
        }
        Streamed::Next {
            d_start,
            keep_alive: may_keep_alive,
        }
    }

    // --- the event loop: bodies ----------------------------------------------

    /// `start_body`, `read_body`, `advance_body`: the body of the request
    /// whose head is at the buffer's front, read ahead through an `Intake`
    /// until whole. None if refused or the client gave up (closed).
    fn read_body(&mut self, head: Head) -> Option<Ahead> {
        let config = self.config;
        let limits = &config.limits;
        let in_memory = match self.config.mode {
            Mode::Buffered { in_memory } => in_memory,
            Mode::Streamed { .. } => unreachable!("buffered"),
        };
        let budget = Budget {
            limit: limits.body,
            in_memory,
            memory_full: false,
            temp_dir: &self.config.temp_dir,
        };
        self.assert_unread(0);
        let body_start = self.consumed + head.len;
        let mut intake = Intake::new(head.len, Decode::new(head.framing), Instant::now());
        intake.expect_continue = head.expect_continue;
        let continues_before = self.wire.continues;
        if intake.expect_continue && intake.kept() == 0 && self.buf.len() == intake.start {
            self.wire.continues += 1;
        }
        let mut progress = intake.advance(&mut self.buf, &budget);
        loop {
            match progress {
                Ok(Progress::More) => {}
                Ok(Progress::Done) => break,
                Err(IntakeError::Refused(e)) => {
                    self.assert_refusal(e, head.framing, body_start);
                    return None;
                }
                Err(IntakeError::Spool(e)) => panic!("cannot spool a body: {e}"),
                Err(IntakeError::TooLongToDrop) => panic!("a body read ahead is not dropped"),
            }
            // Waiting for the client: the buffer holds the head, then the
            // body's raw bytes kept in memory (all of them so far, or none
            // once spooling), and nothing else.
            let kept = intake.kept();
            let fed = self.wire.fed;
            assert!(kept <= in_memory, "{kept} bytes kept, over {in_memory}");
            assert!(kept == 0 || kept == fed - body_start, "raw bytes lost");
            assert_eq!(self.buf.len(), head.len + kept, "the buffer holds more");
            assert_eq!(
                &self.buf[..head.len],
                &self.stream[self.consumed..body_start]
            );
            assert_eq!(&self.buf[head.len..], &self.stream[fed - kept..fed]);
            let w = on_wire(head.framing, &self.stream[body_start..fed])
                .expect("the intake took bytes that do not decode");
            assert!(!w.done, "the intake waits for a body already whole");
            if limits.body > 0 {
                assert!(
                    w.body.len() as u64 <= limits.body,
                    "over the limit, not refused"
                );
            }
            let piece = self.wire.piece(usize::MAX);
            if piece.is_empty() {
                // The client gave up on its own request.
                return None;
            }
            self.buf.extend_from_slice(piece);
            progress = intake.advance(&mut self.buf, &budget);
        }
        assert!(self.wire.continues - continues_before <= 1);
        let fed = self.wire.fed;
        let w = on_wire(head.framing, &self.stream[body_start..fed])
            .expect("the intake finished a body that does not decode");
        assert!(w.done, "the intake finished a body not whole on the wire");
        let body_end = body_start + w.raw;
        let kept = intake.kept();
        // The buffer: the head, the body's raw bytes if kept, then what
        // followed the body.
        assert_eq!(
            &self.buf[..head.len],
            &self.stream[self.consumed..body_start]
        );
        assert_eq!(
            &self.buf[head.len + kept..],
            &self.stream[body_end..fed],
            "the bytes after the body are not the next ones"
        );
        match intake.into_spooled() {
            Some((file, len)) => {
                assert_eq!(kept, 0, "spooled and kept");
                let meta = file.metadata().expect("spool metadata");
                assert_eq!(meta.nlink(), 0, "a spool file has a name");
                assert_eq!(meta.len(), len, "spool file length");
                assert_eq!(len, w.body.len() as u64);
                Some(Ahead::Spooled { file, len })
            }
            None => {
                assert_eq!(kept, w.raw, "the intake kept another length");
                Some(Ahead::Read { kept })
            }
        }
    }

    /// `await_request` → `read_body` for `Ahead::Discarding`: the rest of a
    /// streamed body is read and dropped; then the next head. False if the
    /// connection closes.
    fn discard(&mut self, rest: Rest) -> bool {
        let Rest {
            mut intake,
            decode,
            framing,
            body_start,
            at,
        } = rest;
        let budget = Budget {
            limit: self.config.limits.body,
            in_memory: 0,
            memory_full: false,
            temp_dir: &self.config.temp_dir,
        };
        // `end_turn` drained what the app thread consumed: the buffer is
        // the unread rest of the body and what follows it, and the intake
        // starts where that rest does.
        assert_eq!(&self.buf[..], &self.stream[at..self.wire.fed]);
        assert!(
            intake.start <= self.buf.len()
                && self.buf[intake.start..] == self.stream[at..self.wire.fed],
            "the rest is dropped from offset {} of a buffer of {} bytes that holds it from 0",
            intake.start,
            self.buf.len()
        );
        // `await_request`: what the buffer holds of the rest is taken
        // first (all of it may be there, and the next request behind it),
        // then pieces as they come.
        loop {
            match intake.advance(&mut self.buf, &budget) {
                Ok(Progress::More) => {
                    assert_eq!(self.buf.len(), intake.start, "bytes of the rest kept");
                }
                Ok(Progress::Done) => break,
                Err(IntakeError::TooLongToDrop) => {
                    let dropped = decoded_before_error(framing, &self.stream[at..self.wire.fed]);
                    assert!(
                        dropped > DISCARD_MAX,
                        "dropped {dropped}, refused to drop more"
                    );
                    return false;
                }
                Err(IntakeError::Refused(e)) => {
                    assert!(
                        on_wire(framing, &self.stream[body_start..self.wire.fed]).is_err(),
                        "refused to drop a well-framed rest: {e:?}"
                    );
                    return false;
                }
                Err(IntakeError::Spool(e)) => panic!("a rest to drop was spooled: {e}"),
            }
            // About to wait for the client: only while the rest is not all
            // buffered (a client that sent everything sends nothing more).
            let mut shadow = decode.clone();
            let whole = shadow
                .skip(&self.buf[intake.start..])
                .is_ok_and(|_| shadow.is_done());
            assert!(!whole, "the loop waits for a rest it has whole");
            let piece = self.wire.piece(usize::MAX);
            if piece.is_empty() {
                return false;
            }
            self.buf.extend_from_slice(piece);
        }
        let w = on_wire(framing, &self.stream[body_start..self.wire.fed])
            .expect("dropped a rest that does not decode");
        assert!(w.done, "dropped a rest not whole on the wire");
        self.consumed = body_start + w.raw;
        // `await_request`: the scan starts over.
        self.scan = HeadScan::default();
        self.assert_unread(0);
        true
    }

    // --- checks --------------------------------------------------------------

    /// The app read `body`, whole: exactly what the wire's framing holds,
    /// within the limit. The request is consumed up to the body's end.
    fn assert_body(&mut self, framing: Framing, body_start: usize, body: &[u8]) -> OnWire {
        let w = on_wire(framing, &self.stream[body_start..self.wire.fed])
            .expect("the app read a body that does not decode");
        assert!(w.done, "the app read a body not whole on the wire");
        if let Framing::Length(n) = framing {
            assert_eq!(body.len() as u64, n);
        }
        assert_eq!(body, &w.body[..], "the app read another body");
        let limit = self.config.limits.body;
        if limit > 0 {
            assert!(body.len() as u64 <= limit, "body over the limit");
        }
        self.consumed = body_start + w.raw;
        w
    }

    /// A body refused with `e`: a 413 only for a body that decodes to more
    /// than the limit, any other refusal is what the framing on the wire
    /// gives.
    fn assert_refusal(&self, e: HttpError, framing: Framing, body_start: usize) {
        let bytes = &self.stream[body_start..self.wire.fed];
        if e == HttpError::PayloadTooLarge {
            let limit = self.config.limits.body;
            let decoded = decoded_before_error(framing, bytes);
            assert!(
                limit > 0 && decoded > limit,
                "413 for a body of {decoded} bytes, limit {limit}"
            );
        } else {
            assert_eq!(
                on_wire(framing, bytes).err(),
                Some(e),
                "refused a body the wire's framing does not"
            );
        }
    }
}

/// How the app thread's read of a streamed body ended.
enum Streamed {
    /// Read to its end (or done): the next request starts at `d_start`.
    Next { d_start: usize, keep_alive: bool },
    /// The app left a rest the event loop drops; the app thread's turn
    /// ends with `d.start` there.
    Drop(Box<Rest>, usize),
    /// Refused, or the client gone, or a rest too long to drop.
    Closed,
}
