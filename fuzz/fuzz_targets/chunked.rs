//! `ChunkedDecoder`, differentially: the same input decoded in one call, a
//! byte at a time, with a one-byte output buffer, and in uneven pieces into
//! a small buffer must give the same body, the same consumed count and the
//! same outcome (done, needs more, or the same error). Also: the body is
//! never longer than the input, a finished body is recognised from exactly
//! the bytes it consumed, and whatever `encode_chunk`/`encode_last_chunk`
//! write decodes back to the original bytes.
//!
//! Input: the bytes after a request head, as they arrive.
#![no_main]

use host::http1::chunked::{ChunkedDecoder, ChunkedError};
use host::http1::response::{encode_chunk, encode_last_chunk};
use host_fuzz::Sizes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = decode(data, &mut std::iter::repeat(data.len()), data.len());
    check_whole(data, &whole);
    let by_byte = decode(data, &mut std::iter::repeat(1), data.len());
    assert_eq!(whole, by_byte, "one call vs byte by byte");
    let tiny_out = decode(data, &mut std::iter::repeat(data.len()), 1);
    assert_eq!(whole, tiny_out, "one call vs a one-byte output buffer");
    let seed = data.first().copied().unwrap_or(0);
    let mut sizes = Sizes::new(seed, 7);
    let uneven = decode(data, &mut std::iter::from_fn(|| Some(sizes.next_size())), 3);
    assert_eq!(whole, uneven, "one call vs uneven pieces into 3 bytes");

    round_trip(data);
});

#[derive(Debug, PartialEq)]
enum End {
    Done,
    /// The input ran out before the body did.
    NeedMore,
    Failed(ChunkedError),
}

/// What decoding produced: the body, the bytes consumed (up to the error,
/// for a failure) and how it ended.
#[derive(Debug, PartialEq)]
struct Decoded {
    body: Vec<u8>,
    consumed: usize,
    end: End,
}

/// Feeds `data` to a decoder in pieces of the sizes `pieces` yields (more
/// than what is left means all of it), with an output buffer of `out_len`.
fn decode(data: &[u8], pieces: &mut dyn Iterator<Item = usize>, out_len: usize) -> Decoded {
    let mut dec = ChunkedDecoder::new();
    let mut out = vec![0u8; out_len.max(1)];
    let mut body = Vec::new();
    let mut pos = 0;
    while pos < data.len() && !dec.is_done() {
        let end = pos + pieces.next().unwrap().clamp(1, data.len() - pos);
        // A piece is offered until the decoder takes all of it (it stops
        // early only for a full output buffer) or the body ends.
        while pos < end && !dec.is_done() {
            match dec.decode(&data[pos..end], &mut out) {
                Ok((read, written)) => {
                    assert!(read > 0, "no progress at {pos} with {} bytes", end - pos);
                    assert!(written <= read && written <= out.len());
                    body.extend_from_slice(&out[..written]);
                    pos += read;
                }
                Err(e) => {
                    // How much the failing call consumed is not reported;
                    // `pos` is where the failing piece started.
                    return Decoded {
                        body: Vec::new(),
                        consumed: 0,
                        end: End::Failed(e),
                    };
                }
            }
        }
    }
    let end = if dec.is_done() {
        End::Done
    } else {
        End::NeedMore
    };
    Decoded {
        body,
        consumed: pos,
        end,
    }
}

fn check_whole(data: &[u8], d: &Decoded) {
    assert!(d.consumed <= data.len());
    assert!(d.body.len() <= d.consumed, "more body than input");
    match d.end {
        End::Done => {
            // The smallest body is "0\r\n\r\n".
            assert!(d.consumed >= d.body.len() + 5);
            assert!(data[..d.consumed].ends_with(b"\r\n"));
            // The end is found from the body's own bytes, not what follows.
            let alone = decode(&data[..d.consumed], &mut std::iter::repeat(d.consumed), 1);
            assert_eq!(&alone, d, "the body alone decodes differently");
        }
        End::NeedMore => assert_eq!(d.consumed, data.len(), "stopped early without an end"),
        End::Failed(_) => {}
    }
}

/// The response encoder's chunks, read back by the request decoder.
fn round_trip(data: &[u8]) {
    let mut wire = Vec::new();
    let mut sizes = Sizes::new(data.len() as u8, 300);
    let mut rest = data;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(sizes.next_size().min(rest.len()));
        encode_chunk(&mut wire, chunk);
        // An empty chunk writes nothing: it would end the body.
        encode_chunk(&mut wire, b"");
        rest = tail;
    }
    encode_last_chunk(&mut wire);
    let d = decode(&wire, &mut std::iter::repeat(wire.len()), wire.len());
    assert_eq!(d.end, End::Done);
    assert_eq!(d.consumed, wire.len());
    assert_eq!(d.body, data);
}
