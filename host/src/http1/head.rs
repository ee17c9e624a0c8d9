//! A request head from the wire: finding where it ends while its bytes
//! arrive (`HeadScan`, on the event loop), then parsing it once it is whole
//! (`parse_request`, on an app thread, through the memo).
//!
//! The scan looks at each byte once, however slowly a client sends its
//! head: a partial head is never searched again from its start. It decides
//! nothing about validity itself; at a few points (the first bytes, the end
//! of the request line, a line or the whole head growing past a limit) it
//! asks the parser, whose answer on a partial head is final for every
//! refusal it gives (see `parse_head`). So a head is refused early exactly
//! when the parser would refuse it, and the number of parser calls on one
//! head is bounded, not one per arrival.
use crate::http1::error::HttpError;
use crate::http1::memo::{memo_slots, HeadMemo};
use crate::http1::parse::{parse_head, with_slots, Field, Limits, RequestHead, EMPTY_FIELD};

/// Where the search for the end of a head stands in a buffer that only
/// grows at its end (reset it whenever bytes are taken from the front).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeadScan {
    /// Bytes of the buffer searched so far.
    scanned: u32,
    /// Where the line being received starts.
    line_start: u32,
    /// Non-empty lines complete so far (the request line first).
    lines: u32,
    /// The parser has seen the first bytes (so garbage is refused at once).
    checked_start: bool,
}

/// What the buffer holds, as far as the scan can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A whole head: the empty line that ends it was found.
    Complete,
    /// Not yet: read more.
    Partial,
}

impl HeadScan {
    /// Searches what `buf` gained since the last call.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Scan, HttpError> {
        // Nearly always a head arrives whole and ends the buffer: a first
        // line that is not empty, and an empty line at the end, make it
        // complete without a look at the bytes between.
        if self.scanned == 0
            && buf.ends_with(b"\r\n\r\n")
            && !matches!(buf.first(), Some(b'\r' | b'\n'))
        {
            self.scanned = buf.len() as u32;
            return Ok(Scan::Complete);
        }
        // Asking the parser is for a head that is not whole: one that is
        // (nearly every head, arriving in one piece) goes to the app thread
        // unparsed, and is parsed once, there. On first sight and once the
        // request line is whole, only that line is shown to it (garbage and
        // a bad request line are refused at once; the header lines are
        // judged when the head is whole, or past a limit).
        let mut check_line = !self.checked_start && !buf.is_empty();
        let mut ask_parser = false;
        self.checked_start = true;
        let mut at = self.scanned as usize;
        while let Some(offset) = buf[at..].iter().position(|&b| b == b'\n') {
            let lf = at + offset;
            let line = &buf[self.line_start as usize..lf];
            let empty = line.is_empty() || line == b"\r";
            at = lf + 1;
            self.line_start = at as u32;
            self.scanned = at as u32;
            if empty {
                if self.lines > 0 {
                    return Ok(Scan::Complete);
                }
                // Empty lines before the request line are skipped (RFC 9112
                // §2.2), but not without end: the parser bounds them.
                ask_parser |= lf > limits.request_line;
                continue;
            }
            self.lines += 1;
            // The request line is whole: the parser checks it now (method,
            // target, version), not when the head ends; and a head with
            // more lines than fields allowed is refused now.
            check_line |= self.lines == 1;
            ask_parser |= self.lines as usize > limits.fields.saturating_add(1);
        }
        self.scanned = buf.len() as u32;
        // The line still arriving, or the whole head, is longer than any
        // head the limits allow: the parser says which status.
        let partial = buf.len() - self.line_start as usize;
        let budget = if self.lines == 0 {
            limits.request_line
        } else {
            limits.field_size
        };
        ask_parser |= partial > budget.saturating_add(2) || buf.len() > limits.max_head();
        if ask_parser {
            check_partial(buf, limits)?;
        } else if check_line {
            check_partial(first_line(buf, limits), limits)?;
        }
        Ok(Scan::Partial)
    }
}

/// The start of `buf` up to the end of its request line (leading empty
/// lines included), or all of it if that line is not whole yet: what the
/// parser needs to judge the request line, and no more.
fn first_line<'b>(buf: &'b [u8], limits: &Limits) -> &'b [u8] {
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") && start <= limits.request_line {
        start += 2;
    }
    match buf[start..].iter().position(|&b| b == b'\n') {
        Some(lf) => &buf[..start + lf + 1],
        None => buf,
    }
}

/// The parser's verdict on an incomplete head: Err if it refuses it now.
/// (A head the scan thinks partial may parse whole here when it ends in a
/// bare LF line; that is for the app thread's parse to judge.)
fn check_partial(buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
    parse_request(buf, limits, None, |parsed| parsed.map(|_| ()))
}

/// Header slots tried first: enough for nearly every request, and cheap to
/// set up. Slots are written before parsing, and a hundred of them would
/// be 3 KiB of stores per request.
const FEW_FIELDS: usize = 24;

/// Parses the head at the start of `buf` and hands the outcome to `f`.
///
/// With a `memo`, a head it remembers is not parsed again, and every head
/// that parses is shown to it (see `memo.rs`).
///
/// Tries FEW_FIELDS slots first; a head with more fields than that (or
/// any other 431) is parsed again with the full `--limit-request-fields`,
/// which decides. The outcome is the same as one parse with the full
/// limit: with fewer slots the parse either succeeds identically or stops
/// at "too many headers".
///
/// `f` gets the head by reference: the head is some 200 bytes, and a
/// closure taking it by value copies all of them into its own frame for
/// every request, fields it never reads included.
pub fn parse_request<'b, R>(
    buf: &'b [u8],
    limits: &Limits,
    mut memo: Option<&mut HeadMemo>,
    f: impl for<'h, 'r> FnOnce(Result<Option<&'r RequestHead<'b, 'h>>, HttpError>) -> R,
) -> R {
    if let Some(memo) = memo.as_deref() {
        let mut slots = memo_slots();
        if let Some(head) = &memo.recall(buf, &mut slots) {
            return f(Ok(Some(head)));
        }
    }
    if limits.fields > FEW_FIELDS {
        let mut few = [EMPTY_FIELD; FEW_FIELDS];
        match &parse_remembering(buf, &mut few, limits, memo.as_deref_mut()) {
            Err(HttpError::HeaderFieldsTooLarge) => {}
            parsed => return f(by_ref(parsed)),
        }
    }
    with_slots(limits.fields, EMPTY_FIELD, |slots| {
        f(by_ref(&parse_remembering(buf, slots, limits, memo)))
    })
}

/// A parse's outcome with the head borrowed (see `parse_request`).
#[inline(always)]
fn by_ref<'r, 'b, 'h>(
    parsed: &'r Result<Option<RequestHead<'b, 'h>>, HttpError>,
) -> Result<Option<&'r RequestHead<'b, 'h>>, HttpError> {
    match parsed {
        Ok(head) => Ok(head.as_ref()),
        Err(e) => Err(*e),
    }
}

/// `parse_head`, and a head that parses is shown to `memo`.
fn parse_remembering<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut [Field<'b>],
    limits: &Limits,
    memo: Option<&mut HeadMemo>,
) -> Result<Option<RequestHead<'b, 'h>>, HttpError> {
    let parsed = parse_head(buf, slots, limits);
    if let (Some(memo), Ok(Some(head))) = (memo, &parsed) {
        memo.remember(buf, head);
    }
    parsed
}

/// Parses the head at the start of `buf` in full: Err if it is refused.
pub fn check_head(buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
    parse_request(buf, limits, None, |parsed| parsed.map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line end followed by an empty line (CRLF or a bare LF) after at
    /// least one non-empty line: what the scan must call complete.
    fn ends_a_head(buf: &[u8]) -> bool {
        let mut seen_line = false;
        let mut line_start = 0;
        for (i, &b) in buf.iter().enumerate() {
            if b == b'\n' {
                let line = &buf[line_start..i];
                if line.is_empty() || line == b"\r" {
                    if seen_line {
                        return true;
                    }
                } else {
                    seen_line = true;
                }
                line_start = i + 1;
            }
        }
        false
    }

    fn scan_all(buf: &[u8], limits: &Limits) -> Result<Scan, HttpError> {
        HeadScan::default().scan(buf, limits)
    }

    /// Byte by byte, as a slowloris client sends it: the first verdict that
    /// is not Partial, and where.
    fn scan_bytewise(buf: &[u8], limits: &Limits) -> (usize, Result<Scan, HttpError>) {
        let mut scan = HeadScan::default();
        for end in 1..=buf.len() {
            match scan.scan(&buf[..end], limits) {
                Ok(Scan::Partial) => {}
                other => return (end, other),
            }
        }
        (buf.len(), Ok(Scan::Partial))
    }

    #[test]
    fn finds_every_complete_head_whatever_the_split() {
        let limits = Limits::default();
        let heads: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: y\r\n\r\n",
            b"\r\n\r\nGET / HTTP/1.0\r\n\r\n",
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
            // Bare LF: found, and the app thread's parse refuses it.
            b"GET / HTTP/1.1\nHost: x\n\n",
        ];
        // Complete, even without a Host: the scan leaves a whole head to
        // the app thread's parse (and its 400).
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\r\n\r\n", &limits),
            Ok(Scan::Complete)
        );
        for head in heads {
            assert_eq!(scan_all(head, &limits), Ok(Scan::Complete), "{head:?}");
            let (at, verdict) = scan_bytewise(head, &limits);
            match verdict {
                Ok(Scan::Complete) => {
                    assert!(ends_a_head(&head[..at]) && !ends_a_head(&head[..at - 1]))
                }
                // Refused early (a bare LF ends the request line): exactly
                // as the parser refuses that prefix.
                Err(e) => assert_eq!(check_head(&head[..at], &limits), Err(e)),
                Ok(Scan::Partial) => panic!("{head:?} never complete"),
            }
            // Every prefix short of the end is partial and not refused,
            // unless the parser itself refuses that prefix.
            for end in 0..at {
                let prefix = &head[..end];
                match scan_all(prefix, &limits) {
                    Ok(Scan::Partial) => {}
                    Ok(Scan::Complete) => panic!("{prefix:?} is not complete"),
                    Err(e) => assert_eq!(check_head(prefix, &limits), Err(e)),
                }
            }
        }
    }

    #[test]
    fn refuses_garbage_at_once_and_heads_over_the_limits_early() {
        let limits = Limits {
            request_line: 64,
            fields: 4,
            field_size: 32,
            body: 0,
        };
        // A TLS handshake on the HTTP port: refused on its first bytes.
        assert!(scan_all(b"\x16\x03\x01\x02\x00\x01\x00", &limits).is_err());
        let (at, verdict) = scan_bytewise(b"\x16\x03\x01\x02\x00", &limits);
        assert_eq!((at, verdict.is_err()), (1, true));
        // A request line that never ends: 414 once past the limit, long
        // before a whole max_head is buffered.
        let long = [b"GET /".as_slice(), &[b'a'; 200]].concat();
        let (at, verdict) = scan_bytewise(&long, &limits);
        assert_eq!(verdict, Err(HttpError::UriTooLong));
        assert!(at <= limits.request_line + 3, "refused after {at} bytes");
        // A header line that never ends: 431.
        let field = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'v'; 200]].concat();
        let (at, verdict) = scan_bytewise(&field, &limits);
        assert_eq!(verdict, Err(HttpError::HeaderFieldsTooLarge));
        assert!(at <= 16 + limits.field_size + 3, "refused after {at} bytes");
        // Too many fields: 431 before the head ends.
        let many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\n";
        assert_eq!(
            scan_bytewise(many, &limits).1,
            Err(HttpError::HeaderFieldsTooLarge)
        );
        // A bad request line is refused when it ends, not at the timeout.
        let (at, verdict) = scan_bytewise(b"GET / HTTP/2.0\r\nHost: x\r\n", &limits);
        assert!(verdict.is_err());
        assert_eq!(at, 16);
    }

    #[test]
    fn each_byte_is_looked_at_once() {
        // A head growing a byte at a time: the scan starts where it left
        // off (`scanned` only grows), whatever the arrival pattern.
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n";
        let limits = Limits::default();
        let mut scan = HeadScan::default();
        let mut last = 0;
        for end in 1..head.len() {
            assert_eq!(scan.scan(&head[..end], &limits), Ok(Scan::Partial));
            assert!(scan.scanned as usize >= last);
            assert_eq!(scan.scanned as usize, end);
            last = end;
        }
        assert_eq!(scan.scan(head, &limits), Ok(Scan::Complete));
    }
}
