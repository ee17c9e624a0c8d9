//! One connection's request loop without sockets: what `server.rs`'s event
//! loop and `conn.rs`'s `serve` do with the bytes a client sends.
//!
//! Input: five configuration bytes, then the byte stream.
//! - byte 0: seeds the piece sizes; its top two bits pick the largest piece
//!   (1, 13, 500 or 20 000 bytes, the last over `BodyReader`'s read size);
//! - byte 1: bits 0-3 the app's read size minus one, bit 4 small limits;
//! - bytes 2-4: the small limits (`host_fuzz::small_limits`).
//!
//! The loop: the event loop reads pieces into the buffer until the head is
//! complete or refused (it stops reading at `max_head() + 64 KiB`); then the
//! head is parsed, a `BodyReader` reads the body (from the buffered bytes,
//! then from the remaining pieces) to its end in small reads, and the buffer
//! is compacted: consumed bytes drained, the reader's leftover appended.
//! Repeat until the input runs out, the client asked to close, or an error
//! (the server answers once and closes).
//!
//! Asserted: no panic; no infinite loop (every request consumes at least
//! one byte); the buffer never exceeds `max_head() + largest piece + 64 KiB`
//! and is never at its cap without a head or an error (a stalled
//! connection); after each request the buffer is exactly the next unread
//! bytes of the stream (heads + body framing + buffer = bytes fed); a
//! Content-Length body is exactly those bytes, a chunked body decodes the
//! same from its wire bytes in one go.
#![no_main]

use host::http1::body::BodyReader;
use host::http1::chunked::ChunkedDecoder;
use host::http1::parse::{parse_head, Framing, Limits, EMPTY_FIELD};
use host_fuzz::{small_limits, Sizes, Wire};
use libfuzzer_sys::fuzz_target;

/// What `server.rs` reads a head up to before it stops reading.
const HEAD_SLACK: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let [seed, flags, line, fields, body, stream @ ..] = data else {
        return;
    };
    let largest = [1, 13, 500, 20_000][usize::from(seed >> 6)];
    let read_size = usize::from(flags & 0x0f) + 1;
    let limits = if flags & 0x10 != 0 {
        small_limits(*line, *fields, *body)
    } else {
        Limits::default()
    };
    run(stream, Sizes::new(*seed, largest), read_size, &limits);
});

/// How one request on the connection ended.
enum Served {
    /// The body was read to its end: drain `consumed` bytes of the buffer
    /// and append `leftover`; `stream_end` is where the next request starts.
    Next {
        consumed: usize,
        leftover: Vec<u8>,
        stream_end: usize,
        keep_alive: bool,
    },
    /// Refused, or the body failed: the connection closes.
    Closed,
}

fn run(stream: &[u8], sizes: Sizes, read_size: usize, limits: &Limits) {
    let mut wire = Wire::new(stream, sizes);
    let cap = limits.max_head().saturating_add(HEAD_SLACK);
    let bound = cap.saturating_add(wire.largest_piece());
    let mut buf: Vec<u8> = Vec::new();
    // Offset in `stream` of `buf[0]`.
    let mut start = 0;
    let mut turns = 0;
    loop {
        turns += 1;
        assert!(turns <= 2 * stream.len() + 2, "the loop does not progress");
        // The receive buffer is always the next unread bytes of the stream.
        assert_eq!(start + buf.len(), wire.fed, "bytes lost or duplicated");
        assert_eq!(buf, &stream[start..wire.fed]);
        assert!(buf.len() <= bound, "buffer of {} bytes", buf.len());

        // The event loop's `head_complete`.
        let mut storage = vec![EMPTY_FIELD; limits.fields];
        match parse_head(&buf, &mut storage, limits) {
            Ok(Some(_)) => {}
            // The server answers once and closes.
            Err(_) => return,
            Ok(None) => {
                if wire.is_exhausted() {
                    return;
                }
                assert!(
                    buf.len() < cap,
                    "{} bytes buffered without a head or an error: stalled",
                    buf.len()
                );
                buf.extend_from_slice(wire.piece(usize::MAX));
                continue;
            }
        }

        match serve(&buf, start, stream, &mut wire, read_size, limits) {
            Served::Closed => return,
            Served::Next {
                consumed,
                leftover,
                stream_end,
                keep_alive,
            } => {
                assert!(consumed >= 1, "a request consumed nothing");
                buf.drain(..consumed);
                buf.extend_from_slice(&leftover);
                assert!(stream_end > start);
                start = stream_end;
                if !keep_alive {
                    return;
                }
            }
        }
    }
}

/// `conn.rs`'s `serve` for the request at the start of `buf` (which holds
/// `stream[start..]`): parse, read the body, hand back the leftover.
fn serve(
    buf: &[u8],
    start: usize,
    stream: &[u8],
    wire: &mut Wire<'_>,
    read_size: usize,
    limits: &Limits,
) -> Served {
    let mut storage = vec![EMPTY_FIELD; limits.fields];
    let head = match parse_head(buf, &mut storage, limits) {
        Ok(Some(head)) => head,
        other => panic!("head_complete said complete, serve parsed {other:?}"),
    };
    assert!(head.len >= 1 && head.len <= buf.len());
    let after = &buf[head.len..];
    let fed_before = wire.fed;
    let continues_before = wire.continues;
    let mut reader = BodyReader::new(head.framing, after, head.expect_continue, limits.body);
    let mut body = Vec::new();
    let mut dst = vec![0u8; read_size];
    loop {
        match reader.read(after, wire, &mut dst) {
            Ok(0) => break,
            Ok(n) => {
                assert!(n <= read_size);
                body.extend_from_slice(&dst[..n]);
            }
            Err(_) => {
                assert!(reader.failed());
                assert!(body.len() <= after.len() + (wire.fed - fed_before));
                return Served::Closed;
            }
        }
    }
    assert!(reader.is_done(), "Ok(0) before the end of the body");
    assert!(wire.continues - continues_before <= 1, "100 Continue twice");
    let (used, leftover) = reader.into_leftover();
    let from_wire = wire.fed - fed_before;
    assert!(
        used <= after.len(),
        "used {used} of {} buffered",
        after.len()
    );
    assert!(
        leftover.len() <= from_wire,
        "leftover not read from the wire"
    );
    if from_wire > 0 {
        assert_eq!(
            used,
            after.len(),
            "read the socket before the buffer ran out"
        );
    }
    // The body's bytes on the wire, and what follows them.
    let body_start = start + head.len;
    let stream_end = if from_wire > 0 {
        wire.fed - leftover.len()
    } else {
        body_start + used
    };
    if from_wire > 0 {
        assert_eq!(
            leftover,
            &stream[stream_end..wire.fed],
            "leftover is not the next bytes"
        );
    } else {
        assert!(leftover.is_empty(), "leftover without reading the wire");
    }
    let framed = &stream[body_start..stream_end];
    match head.framing {
        Framing::Empty => assert!(framed.is_empty() && body.is_empty()),
        Framing::Length(n) => {
            assert_eq!(body.len() as u64, n);
            assert_eq!(body, framed);
        }
        Framing::Chunked => {
            let mut dec = ChunkedDecoder::new();
            let mut out = vec![0u8; framed.len()];
            let (read, written) = dec.decode(framed, &mut out).expect("decoded before");
            assert!(dec.is_done() && read == framed.len(), "chunked end moved");
            assert_eq!(body, &out[..written]);
        }
    }
    if limits.body > 0 {
        assert!(body.len() as u64 <= limits.body, "body over the limit");
    }
    Served::Next {
        consumed: head.len + used,
        leftover,
        stream_end,
        keep_alive: head.keep_alive,
    }
}
