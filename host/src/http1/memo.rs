//! A small request head an app thread keeps parsing, kept as its bytes and
//! the offsets of its parts, so that the same head sent again is known by
//! one comparison instead of a parse.
//!
//! Clients repeat themselves: a pipelining or keep-alive client polling one
//! URL, a load balancer's health check, a benchmark. Their heads are short
//! and identical byte for byte, and parsing one is most of the work a
//! server does for it (the request line, every field, the Host check).
//!
//! The answer is exact, not a guess: `parse_head`'s answer for a complete
//! head depends on the head's bytes alone (and on the limits, fixed for the
//! server's life). It never looks past the empty line that ends the head,
//! and leading empty lines are part of the head. So a buffer that starts
//! with a remembered head's bytes parses to that head, with every part at
//! the same offset. `tests::recall_gives_what_parse_gives` and the
//! `request_head` fuzz target check this against the parser.
//!
//! A head is remembered once it was parsed twice in a row (no other new
//! head between): the first time only its bytes are copied aside, which is
//! cheap, and the offsets of its parts are worked out the second time. So
//! traffic whose heads all differ (different paths, cookies) pays one copy
//! and two early-ending comparisons per request, and an occasional other
//! head (a health check among an API's traffic) does not push out the one
//! that keeps coming. Only heads up to MEMO_BYTES with at most MEMO_FIELDS
//! fields are kept: a browser's head (cookies, a dozen fields) is rarely
//! sent twice. A head too big to keep leaves the memo as it was.

use crate::http1::parse::{Field, Framing, RequestHead, Version, EMPTY_FIELD};

/// The longest head remembered, leading empty lines and final CRLF included.
pub const MEMO_BYTES: usize = 256;
/// The most fields a remembered head has.
pub const MEMO_FIELDS: usize = 8;

/// Header slots for `HeadMemo::recall`.
pub type MemoSlots<'b> = [Field<'b>; MEMO_FIELDS];

/// Slots to pass to `HeadMemo::recall`.
pub const fn memo_slots<'b>() -> MemoSlots<'b> {
    [EMPTY_FIELD; MEMO_FIELDS]
}

/// Where a part of the head lies: `bytes[start..start + len]`.
#[derive(Clone, Copy, Default)]
struct Span {
    start: u16,
    len: u16,
}

/// One app thread's memo; see the module comment.
pub struct HeadMemo {
    /// A head parsed once and not remembered yet: its length (0 while
    /// none) and bytes.
    seen_len: usize,
    seen: [u8; MEMO_BYTES],
    /// The remembered head's length; 0 while none is.
    len: usize,
    bytes: [u8; MEMO_BYTES],
    line: Span,
    method: Span,
    target: Span,
    /// None: "/" not from the head (an absolute-form target without a
    /// path, `parse_head`'s static "/").
    path: Option<Span>,
    query: Span,
    version: Version,
    fields: [(Span, Span); MEMO_FIELDS],
    n_fields: usize,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    host: Option<Span>,
    host_name: Option<Span>,
    content_type: Option<Span>,
    content_length: Option<Span>,
    underscored: bool,
    forwarding: bool,
}

impl Default for HeadMemo {
    fn default() -> HeadMemo {
        HeadMemo {
            seen_len: 0,
            seen: [0; MEMO_BYTES],
            len: 0,
            bytes: [0; MEMO_BYTES],
            line: Span::default(),
            method: Span::default(),
            target: Span::default(),
            path: None,
            query: Span::default(),
            version: Version::Http11,
            fields: [(Span::default(), Span::default()); MEMO_FIELDS],
            n_fields: 0,
            framing: Framing::Empty,
            keep_alive: false,
            expect_continue: false,
            host: None,
            host_name: None,
            content_type: None,
            content_length: None,
            underscored: false,
            forwarding: false,
        }
    }
}

impl HeadMemo {
    /// The head at the start of `buf`, if it is the remembered one: what
    /// `parse_head` would answer, its fields in `slots`.
    #[inline]
    pub fn recall<'b, 'h>(
        &self,
        buf: &'b [u8],
        slots: &'h mut MemoSlots<'b>,
    ) -> Option<RequestHead<'b, 'h>> {
        let len = self.len;
        let head = buf.get(..len)?;
        if len == 0 || !same_bytes(head, &self.bytes[..len]) {
            return None;
        }
        let n = self.n_fields;
        for (slot, &(name, value)) in slots.iter_mut().zip(&self.fields[..n]) {
            *slot = Field {
                name: part(head, name),
                value: part(head, value),
            };
        }
        Some(RequestHead {
            line: part(head, self.line),
            method: part(head, self.method),
            target: part(head, self.target),
            path: self.path.map_or(b"/", |s| part(head, s)),
            query: part(head, self.query),
            version: self.version,
            headers: &slots[..n],
            len,
            framing: self.framing,
            keep_alive: self.keep_alive,
            expect_continue: self.expect_continue,
            host: self.host.map(|s| part(head, s)),
            host_name: self.host_name.map(|s| part(head, s)),
            content_type: self.content_type.map(|s| part(head, s)),
            content_length: self.content_length.map(|s| part(head, s)),
            underscored: self.underscored,
            forwarding: self.forwarding,
        })
    }

    /// Shows the memo `parsed`, which `parse_head` read from the start of
    /// `buf`: remembered if it is small and was the last new head shown
    /// too, otherwise set aside as seen once (see the module comment).
    pub fn remember(&mut self, buf: &[u8], parsed: &RequestHead<'_, '_>) {
        let len = parsed.len;
        if len > MEMO_BYTES || parsed.headers.len() > MEMO_FIELDS {
            return;
        }
        let Some(head) = buf.get(..len) else {
            return;
        };
        if self.seen_len == len && same_bytes(head, &self.seen[..len]) {
            self.seen_len = 0;
            self.keep(head, parsed);
        } else {
            self.seen[..len].copy_from_slice(head);
            self.seen_len = len;
        }
    }

    /// Remembers `parsed`, read from `head`, its exact bytes.
    #[inline(never)]
    fn keep(&mut self, head: &[u8], parsed: &RequestHead<'_, '_>) {
        let len = head.len();
        // Each part's place in the head. Every part borrows from it, so
        // this always succeeds; a part found elsewhere (an empty one may
        // point anywhere) is refused rather than trusted, unless empty.
        let span_of = |s: &[u8]| span(head, s);
        let (Some(line), Some(method), Some(target), Some(query)) = (
            span_of(parsed.line),
            span_of(parsed.method),
            span_of(parsed.target),
            span_of(parsed.query),
        ) else {
            return;
        };
        let path = match span_of(parsed.path) {
            Some(span) => Some(span),
            None if parsed.path == b"/" => None,
            None => return,
        };
        let mut fields = [(Span::default(), Span::default()); MEMO_FIELDS];
        for (slot, field) in fields.iter_mut().zip(parsed.headers) {
            let (Some(name), Some(value)) = (span_of(field.name), span_of(field.value)) else {
                return;
            };
            *slot = (name, value);
        }
        let optional = |s: Option<&[u8]>| match s {
            None => Some(None),
            Some(s) => span_of(s).map(Some),
        };
        let (Some(host), Some(host_name), Some(content_type), Some(content_length)) = (
            optional(parsed.host),
            optional(parsed.host_name),
            optional(parsed.content_type),
            optional(parsed.content_length),
        ) else {
            return;
        };
        self.bytes[..len].copy_from_slice(head);
        self.len = len;
        self.line = line;
        self.method = method;
        self.target = target;
        self.path = path;
        self.query = query;
        self.version = parsed.version;
        self.fields = fields;
        self.n_fields = parsed.headers.len();
        self.framing = parsed.framing;
        self.keep_alive = parsed.keep_alive;
        self.expect_continue = parsed.expect_continue;
        self.host = host;
        self.host_name = host_name;
        self.content_type = content_type;
        self.content_length = content_length;
        self.underscored = parsed.underscored;
        self.forwarding = parsed.forwarding;
    }
}

/// `a == b` for slices of the same length, eight bytes at a time and
/// inline: a head is a few dozen bytes, and a call to `memcmp` for each
/// request costs more than comparing them.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let word = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("eight bytes"));
    let n = a.len();
    if n < 8 || b.len() != n {
        return a == b;
    }
    let mut wa = a.chunks_exact(8);
    for (x, y) in (&mut wa).zip(b.chunks_exact(8)) {
        if word(x) != word(y) {
            return false;
        }
    }
    // The last eight bytes, which overlap the words above when the length
    // is not a multiple of eight.
    wa.remainder().is_empty() || word(&a[n - 8..]) == word(&b[n - 8..])
}

/// The part of `head` at `span`. Spans are made by `span` from the same
/// bytes, so they always lie inside.
#[inline(always)]
fn part(head: &[u8], span: Span) -> &[u8] {
    let start = usize::from(span.start);
    &head[start..start + usize::from(span.len)]
}

/// Where `part` lies inside `head`, found by address; an empty part
/// anywhere is the empty span.
fn span(head: &[u8], part: &[u8]) -> Option<Span> {
    if part.is_empty() {
        return Some(Span::default());
    }
    let start = (part.as_ptr() as usize).checked_sub(head.as_ptr() as usize)?;
    if start.checked_add(part.len())? > head.len() {
        return None;
    }
    Some(Span {
        start: u16::try_from(start).ok()?,
        len: u16::try_from(part.len()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse::{parse_head, Limits};

    /// An owned view of a parse, so that two parses compare.
    fn owned(head: &RequestHead<'_, '_>) -> String {
        format!("{head:?}")
    }

    fn parse_owned(buf: &[u8]) -> Option<String> {
        let mut slots = [EMPTY_FIELD; 100];
        match parse_head(buf, &mut slots, &Limits::default()) {
            Ok(Some(head)) => Some(owned(&head)),
            _ => None,
        }
    }

    /// Parses `buf` (it must hold a head) and shows the memo the result,
    /// as `conn.rs` does after a parse.
    fn show(memo: &mut HeadMemo, buf: &[u8]) {
        let mut slots = [EMPTY_FIELD; 100];
        let parsed = parse_head(buf, &mut slots, &Limits::default())
            .expect("valid")
            .expect("complete");
        memo.remember(buf, &parsed);
    }

    fn recalls(memo: &HeadMemo, buf: &[u8]) -> bool {
        memo.recall(buf, &mut memo_slots()).is_some()
    }

    const HEADS: [&[u8]; 9] = [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
        b"\r\n\r\nGET /a?b=%41 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n",
        b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nEmpty:\r\nX: \t v \t\r\nConnection: close\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET http://h:1/p HTTP/1.1\r\nHost: h:1\r\nX: obs-text \xff\r\n\r\n",
        b"GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: [::1]:80\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\n\r\n",
    ];

    #[test]
    fn recall_gives_what_parse_gives() {
        for head in HEADS {
            let mut memo = HeadMemo::default();
            show(&mut memo, head);
            show(&mut memo, head);
            // The same head, in a new buffer with the next request behind it.
            let mut buf = head.to_vec();
            buf.extend_from_slice(b"GET /next HTTP/1.1\r\n");
            let mut recall_slots = memo_slots();
            let recalled = memo.recall(&buf, &mut recall_slots).expect("remembered");
            assert_eq!(Some(owned(&recalled)), parse_owned(&buf), "{head:?}");
            // Every part borrows from the new buffer.
            let range = buf.as_ptr_range();
            assert!(range.contains(&recalled.target.as_ptr()));
            assert!(recalled
                .headers
                .iter()
                .all(|f| range.contains(&f.name.as_ptr())));
        }
    }

    #[test]
    fn a_head_is_remembered_when_parsed_twice_in_a_row() {
        let [a, b, c, ..] = HEADS;
        let mut memo = HeadMemo::default();
        // Nothing remembered yet: nothing recalled, not even an empty head.
        assert!(!recalls(&memo, a));
        show(&mut memo, a);
        assert!(!recalls(&memo, a), "seen once: only set aside");
        show(&mut memo, b);
        show(&mut memo, a);
        assert!(!recalls(&memo, a), "another head came between");
        show(&mut memo, a);
        assert!(recalls(&memo, a));
        // A head seen once does not push out the remembered one...
        show(&mut memo, b);
        assert!(recalls(&memo, a) && !recalls(&memo, b));
        show(&mut memo, c);
        assert!(recalls(&memo, a));
        // ...one seen twice in a row replaces it.
        show(&mut memo, c);
        assert!(recalls(&memo, c) && !recalls(&memo, a));
    }

    #[test]
    fn a_different_or_partial_head_is_not_recalled() {
        let head: &[u8] = HEADS[0];
        let mut memo = HeadMemo::default();
        show(&mut memo, head);
        show(&mut memo, head);
        // Cut short: the head is incomplete, whatever was remembered.
        assert!(!recalls(&memo, &head[..head.len() - 1]));
        // One byte different anywhere.
        for i in 0..head.len() {
            let mut other = head.to_vec();
            other[i] ^= 0x01;
            assert!(!recalls(&memo, &other), "byte {i}");
        }
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let a: Vec<u8> = (0..40u8).collect();
        for n in 0..=a.len() {
            assert!(same_bytes(&a[..n], &a[..n]));
            for i in 0..n {
                let mut b = a[..n].to_vec();
                b[i] ^= 0x80;
                assert!(!same_bytes(&a[..n], &b), "length {n}, byte {i}");
            }
        }
        assert!(!same_bytes(&a[..9], &a[..10]));
    }

    #[test]
    fn big_heads_leave_the_memo_as_it_was() {
        let small: &[u8] = HEADS[0];
        let mut memo = HeadMemo::default();
        show(&mut memo, small);
        show(&mut memo, small);

        let long_value = "v".repeat(MEMO_BYTES);
        let long = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {long_value}\r\n\r\n");
        let many_fields: String = (0..=MEMO_FIELDS).map(|i| format!("F{i}: x\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many_fields}\r\n");
        for big in [long.as_bytes(), many.as_bytes()] {
            show(&mut memo, big);
            show(&mut memo, big);
            assert!(!recalls(&memo, big));
            assert!(recalls(&memo, small));
        }
    }
}
