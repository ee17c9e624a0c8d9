//! `parse_head` on arbitrary bytes.
//!
//! Input: three configuration bytes for a set of small limits
//! (`host_fuzz::small_limits`), then the bytes a client sent. The bytes are
//! parsed with the default limits and with the small ones, and each time:
//!
//! - nothing panics;
//! - a complete head lies inside the buffer, ends with CRLF CRLF, holds no
//!   bare CR or LF, stays within the limits, and its framing agrees with
//!   its headers (Chunked only with Transfer-Encoding and without
//!   Content-Length, Length only with Content-Length and without
//!   Transfer-Encoding, Empty with neither);
//! - parsing is incremental: every prefix of the buffer shorter than the
//!   head is "incomplete", every longer one (trailing bytes appended) gives
//!   the same head, a prefix of an incomplete buffer is incomplete, and a
//!   prefix of a refused buffer is incomplete or refused with the same
//!   status (see `early_refusal` for the one tolerated difference: which
//!   refusal comes first). Whatever the TCP segmentation, a request is
//!   refused or accepted alike;
//! - a small head shown twice to the memo (`host::http1::memo`) is recalled, from the
//!   same bytes with anything after them, as exactly what the parser gives,
//!   and no prefix shorter than the head is recalled.
#![no_main]

use host::http1::error::HttpError;
use host::http1::forwarded::is_forwarding_name;
use host::http1::memo::{memo_slots, HeadMemo, MEMO_BYTES, MEMO_FIELDS};
use host::http1::parse::{parse_head, Framing, Limits, RequestHead, Version, EMPTY_FIELD};
use host_fuzz::{is_within, only_crlf_line_ends, small_limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, c, buf @ ..] = data else {
        return;
    };
    check(buf, &Limits::default());
    check(buf, &small_limits(*a, *b, *c));
});

/// What one parse led to, owned, so parses of different prefixes compare.
#[derive(Debug, PartialEq)]
enum Outcome {
    Incomplete,
    Head(Summary),
    /// The status the server would answer with (the "error class").
    Refused(u16, HttpError),
}

#[derive(Debug, PartialEq)]
struct Summary {
    line: Vec<u8>,
    method: Vec<u8>,
    target: Vec<u8>,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    len: usize,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    host: Option<Vec<u8>>,
    content_type: Option<Vec<u8>>,
    content_length: Option<Vec<u8>>,
}

impl Outcome {
    fn same_class(&self, other: &Outcome) -> bool {
        match (self, other) {
            (Outcome::Refused(a, _), Outcome::Refused(b, _)) => a == b,
            _ => self == other,
        }
    }
}

/// The checks that refuse a head before it is complete (a limit already
/// broken, a method that cannot be one, a bare LF or an over-long line
/// among the lines already complete) run before the ones that need the
/// whole head (httparse's own, the framing rules), so with more bytes another refusal can come first, e.g. 431
/// for a long line while incomplete, 400 for the space before its colon
/// once complete. That the status depends on how the bytes were split is
/// tolerated (both close the connection); that a refusal turns back into
/// "incomplete" or a head is not.
fn early_refusal(part: &Outcome, full: &Outcome) -> bool {
    let early = matches!(
        part,
        Outcome::Refused(
            _,
            HttpError::UriTooLong
                | HttpError::HeaderFieldsTooLarge
                | HttpError::BadRequest("invalid method")
                | HttpError::BadRequest("bare LF in header section")
        )
    );
    early && matches!(full, Outcome::Refused(..))
}

fn check(buf: &[u8], limits: &Limits) {
    let full = parse(buf, limits, true);
    for k in prefixes(buf, &full) {
        let part = parse(&buf[..k], limits, true);
        let consistent = match &full {
            Outcome::Head(h) if k < h.len => part == Outcome::Incomplete,
            Outcome::Head(_) | Outcome::Incomplete => part == full,
            Outcome::Refused(..) => part == Outcome::Incomplete || part.same_class(&full),
        };
        let consistent = consistent || early_refusal(&part, &full);
        assert!(
            consistent,
            "prefix of {k} bytes gives {part:?}, the whole {} bytes {full:?}",
            buf.len()
        );
    }
    // The same head with other bytes after it (a pipelined request, a body).
    if let Outcome::Head(h) = &full {
        let memo = remembered(buf, limits);
        for tail in [&b"GET / HTTP/1.1\r\n\r\n"[..], b"\r\n", b"\n", b"\0"] {
            let mut longer = buf[..h.len].to_vec();
            longer.extend_from_slice(tail);
            assert_eq!(parse(&longer, limits, false), full, "with {tail:?} after");
            match memo.recall(&longer, &mut memo_slots()) {
                Some(recalled) => assert_eq!(Outcome::Head(summary(&recalled)), full, "recalled"),
                None => assert!(
                    h.len > MEMO_BYTES || h.headers.len() > MEMO_FIELDS,
                    "a small head was not remembered"
                ),
            }
        }
        for k in 0..h.len {
            assert!(memo.recall(&buf[..k], &mut memo_slots()).is_none());
        }
    }
}

/// A memo that was shown the head `buf` starts with, twice in a row (what
/// it takes to be remembered).
fn remembered(buf: &[u8], limits: &Limits) -> HeadMemo {
    let mut memo = HeadMemo::default();
    let mut storage = vec![EMPTY_FIELD; limits.fields];
    if let Ok(Some(head)) = parse_head(buf, &mut storage, limits) {
        memo.remember(buf, &head);
        memo.remember(buf, &head);
    }
    memo
}

/// The prefix lengths worth checking: all of them for short inputs;
/// otherwise both ends, every line ending (where a parser changes state) and
/// a stride through the rest, to keep one run linear-ish.
fn prefixes(buf: &[u8], full: &Outcome) -> Vec<usize> {
    let n = buf.len();
    if n <= 512 {
        return (0..=n).collect();
    }
    let mut ks: Vec<usize> = (0..64).chain(n - 64..=n).collect();
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\r' || b == b'\n' {
            ks.extend([i, i + 1, i + 2]);
        }
    }
    ks.extend((0..n).step_by(n / 128));
    if let Outcome::Head(h) = full {
        ks.extend([h.len - 1, h.len, h.len + 1]);
    }
    ks.retain(|&k| k <= n);
    ks.sort_unstable();
    ks.dedup();
    // A buffer full of line endings must not make this quadratic.
    if ks.len() > 1024 {
        let step = ks.len() / 1024 + 1;
        ks = ks.into_iter().step_by(step).chain([n]).collect();
    }
    ks
}

fn parse(buf: &[u8], limits: &Limits, check_invariants: bool) -> Outcome {
    let mut storage = vec![EMPTY_FIELD; limits.fields];
    match parse_head(buf, &mut storage, limits) {
        Ok(None) => Outcome::Incomplete,
        Err(e) => Outcome::Refused(e.status(), e),
        Ok(Some(head)) => {
            if check_invariants {
                check_head(buf, &head, limits);
            }
            Outcome::Head(summary(&head))
        }
    }
}

fn check_head(buf: &[u8], head: &RequestHead<'_, '_>, limits: &Limits) {
    assert!(head.len > 0 && head.len <= buf.len(), "len {}", head.len);
    let bytes = &buf[..head.len];
    assert!(
        bytes.ends_with(b"\r\n\r\n"),
        "head does not end with CRLF CRLF"
    );
    assert!(only_crlf_line_ends(bytes), "bare CR or LF inside the head");
    // What the parser notes about the names, against the names themselves.
    assert_eq!(
        head.underscored,
        head.headers.iter().any(|h| h.name.contains(&b'_')),
        "underscored"
    );
    assert_eq!(
        head.forwarding,
        head.headers.iter().any(|h| is_forwarding_name(h.name)),
        "forwarding"
    );

    assert!(is_within(bytes, head.method), "method outside the head");
    assert!(is_within(bytes, head.target), "target outside the head");
    // The request line: method, target and an 8-byte version, one SP apart.
    assert!(is_within(bytes, head.line), "line outside the head");
    let mut start = head.method.to_vec();
    start.push(b' ');
    start.extend_from_slice(head.target);
    start.push(b' ');
    assert!(
        head.line.starts_with(&start) && head.line.len() == start.len() + "HTTP/1.1".len(),
        "request line {:?}",
        head.line
    );
    for h in head.headers {
        assert!(is_within(bytes, h.name), "name {:?} outside", h.name);
        assert!(is_within(bytes, h.value), "value of {:?} outside", h.name);
    }
    for v in [head.host, head.content_type, head.content_length]
        .into_iter()
        .flatten()
    {
        assert!(is_within(bytes, v), "field value outside the head");
    }

    // Within the limits: leading empty lines (at most `request_line`
    // bytes of them) aside, the head fits in `max_head`.
    assert!(head.headers.len() <= limits.fields);
    let leading = bytes.chunks(2).take_while(|c| *c == b"\r\n").count() * 2;

    // The fields are httparse's reading of the section, whichever path
    // (the fast one or httparse itself) parsed them.
    let lf = leading
        + bytes[leading..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("a request line");
    let mut reference = vec![httparse::EMPTY_HEADER; limits.fields];
    match httparse::parse_headers(&bytes[lf + 1..], &mut reference) {
        Ok(httparse::Status::Complete((n, fields))) => {
            assert_eq!(lf + 1 + n, head.len, "section length");
            let fields: Vec<_> = fields
                .iter()
                .map(|h| (h.name.as_bytes(), h.value))
                .collect();
            let ours: Vec<_> = head.headers.iter().map(|h| (h.name, h.value)).collect();
            assert_eq!(ours, fields, "fields differ from httparse's");
        }
        other => panic!("httparse reads the section as {other:?}"),
    }
    assert!(leading <= limits.request_line);
    assert!(
        head.len - leading <= limits.max_head(),
        "head over max_head"
    );

    let has = |name: &str| {
        head.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
    };
    let (te, cl) = (has("transfer-encoding"), has("content-length"));
    match head.framing {
        Framing::Chunked => {
            assert!(te && !cl, "Chunked with te={te} cl={cl}");
            assert_eq!(head.version, Version::Http11, "Chunked in HTTP/1.0");
        }
        Framing::Length(n) => {
            assert!(cl && !te, "Length with te={te} cl={cl}");
            assert!(
                limits.body == 0 || n <= limits.body,
                "Length over the body limit"
            );
        }
        Framing::Empty => assert!(!te && !cl, "Empty with te={te} cl={cl}"),
    }
    assert_eq!(head.content_length.is_some(), cl);
    if head.version == Version::Http11 {
        assert!(head.host.is_some(), "HTTP/1.1 without Host");
    }
}

fn summary(head: &RequestHead<'_, '_>) -> Summary {
    Summary {
        line: head.line.to_vec(),
        method: head.method.to_vec(),
        target: head.target.to_vec(),
        version: head.version,
        headers: head
            .headers
            .iter()
            .map(|h| {
                (
                    String::from_utf8_lossy(h.name).into_owned(),
                    h.value.to_vec(),
                )
            })
            .collect(),
        len: head.len,
        framing: head.framing,
        keep_alive: head.keep_alive,
        expect_continue: head.expect_continue,
        host: head.host.map(<[u8]>::to_vec),
        content_type: head.content_type.map(<[u8]>::to_vec),
        content_length: head.content_length.map(<[u8]>::to_vec),
    }
}
