//! Response head validation and encoding (RFC 9112 §4-§7, RFC 9110 §6.4).
//! No I/O: everything appends to a caller's `Vec<u8>`, so the connection can
//! encode the responses of several pipelined requests into one buffer and
//! flush once.
//!
//! The application's status and headers are validated once, when it calls
//! start_response: a CR or LF in a value would let it (or whoever controls
//! the data it echoes) split the response, and hop-by-hop headers belong to
//! the server, which alone knows how the connection and body are framed.

use std::fmt;

use crate::http1::date::DATE_LEN;
use crate::http1::parse::{is_tchar, parse_decimal, Version};

/// The `Server` header value, unless the application sends its own.
pub const SERVER: &[u8] = b"nwsgi-host";

/// Header names that describe this connection or the message framing
/// (RFC 9110 §7.6.1, RFC 9112 §6-§7). The server owns them.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
    "trailer",
];

/// Why the application's status or headers were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidResponse {
    /// The status is not "NNN reason" with NNN in 200..=599.
    Status,
    /// A header name is empty or not a token.
    HeaderName,
    /// A header value contains CR, LF, NUL or another control character.
    HeaderValue,
    /// A hop-by-hop header, which only the server may send; holds the name.
    HopByHop(String),
    /// Content-Length is not 1*DIGIT, overflows, or repeats with another value.
    ContentLength,
}

impl fmt::Display for InvalidResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidResponse::Status => {
                f.write_str("status is not a final 3-digit code (200-599), a space and a reason")
            }
            InvalidResponse::HeaderName => f.write_str("header name is empty or not a token"),
            InvalidResponse::HeaderValue => {
                f.write_str("header value contains CR, LF, NUL or another control character")
            }
            InvalidResponse::HopByHop(name) => {
                write!(
                    f,
                    "hop-by-hop header {name:?} is set by the server, not the application"
                )
            }
            InvalidResponse::ContentLength => {
                f.write_str("Content-Length is not a number, overflows, or has differing values")
            }
        }
    }
}

impl std::error::Error for InvalidResponse {}

/// The application's status and headers, validated and pre-encoded at
/// start_response time (the app's memory is only borrowed during that call).
/// Reused across requests on a connection: `set()` clears it first, keeping
/// the allocations.
#[derive(Clone, Default)]
pub struct ResponseHead {
    /// The numeric status, for framing decisions (1xx/204/304, HEAD).
    status: u16,
    /// "NNN reason" as the application gave it, without "HTTP/1.1 " or CRLF.
    status_line: Vec<u8>,
    /// The application's headers as "Name: value\r\n" lines, Content-Length
    /// excepted: that one is emitted by `encode_head`, which knows whether
    /// the status or method allows it.
    lines: Vec<u8>,
    /// The application's Content-Length, if it gave one.
    content_length: Option<u64>,
    /// The application gave a Date, which replaces ours.
    has_date: bool,
    /// The application gave a Server, which replaces ours.
    has_server: bool,
    /// The input this head was built from (see `set`).
    last_key: Vec<u8>,
    /// The address of the application's static head (ABI 1.2
    /// `start_response_static`) this head was last built from, 0 if none:
    /// such a head never changes while its library is loaded, and a
    /// library stays loaded for the life of the process.
    static_key: usize,
    /// The bytes `encode_head` last wrote from this head, and everything
    /// besides the head they depended on: an app that answers alike gets
    /// them again with one copy, rebuilt when the second (the Date) or the
    /// framing changes.
    encoded: Vec<u8>,
    encoded_for: Option<Encoding>,
}

/// What an encoded head depends on besides the `ResponseHead` itself.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Encoding {
    date_secs: u64,
    version: Version,
    framing: BodyFraming,
    keep_alive: bool,
    is_head_request: bool,
}

/// What the head says, without the cache behind `set` (two heads that
/// would encode the same bytes print the same).
impl fmt::Debug for ResponseHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseHead")
            .field("status", &self.status)
            .field("status_line", &self.status_line)
            .field("lines", &self.lines)
            .field("content_length", &self.content_length)
            .field("has_date", &self.has_date)
            .field("has_server", &self.has_server)
            .finish()
    }
}

impl ResponseHead {
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates and stores the application's status and headers.
    ///
    /// status must be "NNN" SP reason (3 digits, 200..=599, reason = HTAB /
    /// SP / VCHAR / obs-text); names must be tokens; values must not contain
    /// CR, LF, NUL or other CTLs except HTAB; hop-by-hop headers are refused;
    /// Content-Length must be 1*DIGIT without overflow (repeated identical
    /// values allowed, and sent once). On error the head is left empty.
    pub fn set<'a, I>(&mut self, status: &[u8], headers: I) -> Result<(), InvalidResponse>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
    {
        // An app answers most requests with the same status and headers:
        // when this head is the last one again, the validated and encoded
        // form is still here. The last input is kept as its parts, each
        // length-prefixed, so two different inputs never match (it is
        // compared before any validation, so it must not rely on what
        // validation refuses), and compared in place: nothing is copied
        // unless it differs.
        if self.status != 0 && self.is_last_input(status, headers.clone()) {
            return Ok(());
        }
        self.static_key = 0;
        self.clear();
        let result = self.fill(status, headers.clone());
        self.last_key.clear();
        if result.is_err() {
            self.clear();
        } else {
            let key = &mut self.last_key;
            let mut part = |bytes: &[u8]| {
                key.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                key.extend_from_slice(bytes);
            };
            part(status);
            for (name, value) in headers {
                part(name);
                part(value);
            }
        }
        result
    }

    /// `set` for a head the application declared static (ABI 1.2), known by
    /// its address `key`: the same head again costs one comparison, where
    /// `set` compares every byte (an ordinary head's bytes may have changed
    /// in place since, a static one's may not).
    pub fn set_static<'a, I>(
        &mut self,
        key: usize,
        status: &[u8],
        headers: I,
    ) -> Result<(), InvalidResponse>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
    {
        if self.knows_static(key) {
            return Ok(());
        }
        self.set(status, headers)?;
        self.static_key = key;
        Ok(())
    }

    /// Empties the head (the response sent is not the app's); the next
    /// `set` builds it anew.
    pub fn forget(&mut self) {
        self.static_key = 0;
        self.clear();
    }

    /// Whether the static head known by `key` is the one held, validated.
    pub fn knows_static(&self, key: usize) -> bool {
        key != 0 && key == self.static_key && self.status != 0
    }

    /// Whether `status` and `headers` are the input `last_key` holds.
    fn is_last_input<'a>(
        &self,
        status: &[u8],
        headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> bool {
        let mut rest = &self.last_key[..];
        let mut same = |bytes: &[u8]| {
            let Some((len, after)) = rest.split_first_chunk::<8>() else {
                return false;
            };
            let Some((kept, after)) = after.split_at_checked(bytes.len()) else {
                return false;
            };
            rest = after;
            u64::from_le_bytes(*len) == bytes.len() as u64 && kept == bytes
        };
        same(status)
            && headers
                .into_iter()
                .all(|(name, value)| same(name) && same(value))
            && rest.is_empty()
    }

    fn clear(&mut self) {
        self.encoded_for = None;
        self.status = 0;
        self.status_line.clear();
        self.lines.clear();
        self.content_length = None;
        self.has_date = false;
        self.has_server = false;
    }

    fn fill<'a>(
        &mut self,
        status: &[u8],
        headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<(), InvalidResponse> {
        self.status = parse_status(status)?;
        self.status_line.extend_from_slice(status);
        for (name, value) in headers {
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(InvalidResponse::HeaderName);
            }
            // RFC 9110 §5.5: field-value = *( VCHAR / obs-text / SP / HTAB ).
            if !value
                .iter()
                .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
            {
                return Err(InvalidResponse::HeaderValue);
            }
            if HOP_BY_HOP
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
            {
                return Err(InvalidResponse::HopByHop(
                    String::from_utf8_lossy(name).into_owned(),
                ));
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                let n = parse_decimal(value).ok_or(InvalidResponse::ContentLength)?;
                if self.content_length.is_some_and(|prev| prev != n) {
                    return Err(InvalidResponse::ContentLength);
                }
                self.content_length = Some(n);
                continue;
            }
            self.has_date |= name.eq_ignore_ascii_case(b"date");
            self.has_server |= name.eq_ignore_ascii_case(b"server");
            push_line(&mut self.lines, name, value);
        }
        Ok(())
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The value of the app's first header called `name` (any case), for
    /// the access log; Content-Length is not among them (see
    /// `content_length`). A scan of the encoded lines: only a log format
    /// that names a response header asks.
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.lines.split(|&b| b == b'\n').find_map(|line| {
            let line = line.strip_suffix(b"\r")?;
            let colon = line.iter().position(|&b| b == b':')?;
            let (n, rest) = line.split_at(colon);
            n.eq_ignore_ascii_case(name)
                .then(|| rest[1..].trim_ascii_start())
        })
    }
}

/// "NNN" SP reason-phrase, NNN in 200..=599 (RFC 9112 §4; RFC 9110 §15:
/// valid codes are 100 to 599, and a client treats any other as a 5xx, so
/// 600-999 would reach it as an unexplained server error). An app gives
/// the final response, so 1xx is refused: an interim status as the only
/// answer would leave the client waiting for one that never comes, and
/// 101 would claim a protocol switch the host never makes.
fn parse_status(status: &[u8]) -> Result<u16, InvalidResponse> {
    let [h, t, o, b' ', reason @ ..] = status else {
        return Err(InvalidResponse::Status);
    };
    if ![h, t, o].iter().all(|d| d.is_ascii_digit()) || !(b'2'..=b'5').contains(h) {
        return Err(InvalidResponse::Status);
    }
    // reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ); we also allow it
    // empty, since the status line keeps its SP either way.
    if !reason
        .iter()
        .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
    {
        return Err(InvalidResponse::Status);
    }
    let digit = |d: &u8| u16::from(d - b'0');
    Ok(digit(h) * 100 + digit(t) * 10 + digit(o))
}

/// How the body after this head is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Exactly this many bytes: "Content-Length: N".
    Length(u64),
    /// "Transfer-Encoding: chunked", only for HTTP/1.1 clients.
    Chunked,
    /// Until the connection closes (length unknown, HTTP/1.0 client).
    CloseDelimited,
}

/// Appends the response head.
///
/// The status line always says HTTP/1.1, also to a 1.0 client (RFC 9110
/// §6.2: a server sends its own highest version whose major it shares with
/// the request). Then the app's header lines; Date and Server unless the app
/// gave them; the framing header; and `Connection: close` when
/// `!keep_alive`, or `Connection: keep-alive` for a persistent 1.0 client.
///
/// `framing` is authoritative (the caller derives it from
/// `head.content_length()` and the client's version): Length(n) sends
/// `Content-Length: n`, Chunked sends `Transfer-Encoding: chunked`,
/// CloseDelimited sends neither. Exceptions (RFC 9110 §8.6, RFC 9112 §6.1):
/// for 1xx, 204 and 304 neither header is ever sent; for a HEAD request
/// Content-Length is sent only if known (app-given or Length), never
/// Transfer-Encoding.
pub fn encode_head(
    out: &mut Vec<u8>,
    version: Version,
    head: &mut ResponseHead,
    framing: BodyFraming,
    keep_alive: bool,
    is_head_request: bool,
) {
    let encoding = Encoding {
        date_secs: crate::http1::date::now_secs(),
        version,
        framing,
        keep_alive,
        is_head_request,
    };
    if head.encoded_for != Some(encoding) {
        let date = crate::http1::date::imf(encoding.date_secs);
        let mut bytes = std::mem::take(&mut head.encoded);
        bytes.clear();
        write_head(&mut bytes, &date, head, encoding);
        head.encoded = bytes;
        head.encoded_for = Some(encoding);
    }
    out.extend_from_slice(&head.encoded);
}

/// `encode_head` without the cache.
fn write_head(out: &mut Vec<u8>, date: &[u8; DATE_LEN], head: &ResponseHead, e: Encoding) {
    let Encoding {
        version,
        framing,
        keep_alive,
        is_head_request,
        ..
    } = e;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&head.status_line);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&head.lines);
    if !head.has_date {
        push_line(out, b"Date", date);
    }
    if !head.has_server {
        push_line(out, b"Server", SERVER);
    }
    if !status_forbids_body(head.status) {
        match (is_head_request, framing) {
            (_, BodyFraming::Length(n)) => push_content_length(out, n),
            (true, _) => {
                if let Some(n) = head.content_length {
                    push_content_length(out, n);
                }
            }
            (false, BodyFraming::Chunked) => push_line(out, b"Transfer-Encoding", b"chunked"),
            (false, BodyFraming::CloseDelimited) => {}
        }
    }
    push_connection(out, version, keep_alive);
    out.extend_from_slice(b"\r\n");
}

/// 1xx, 204 and 304 responses never have a body (RFC 9110 §15.2, §15.3.5,
/// §15.4.5; RFC 9112 §6.3 item 1).
pub fn status_forbids_body(status: u16) -> bool {
    matches!(status, 100..=199 | 204 | 304)
}

/// Appends one chunk: hex size, CRLF, data, CRLF (RFC 9112 §7.1). Empty data
/// appends nothing, since a zero-size chunk would end the body.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut buf = [0u8; 16];
    out.extend_from_slice(format_hex(data.len() as u64, &mut buf));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and an empty trailer section.
pub fn encode_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Appends a complete canned error response: status line, Date, Server,
/// `Content-Type: text/plain`, Content-Length, `Connection: close` unless
/// `keep_alive`, and the body "<code> <reason>\n". The engine's reasons are
/// static ASCII phrases (`HttpError::reason`).
/// Returns the length of its body (the last bytes appended), which a
/// response to HEAD leaves out.
pub fn encode_error(out: &mut Vec<u8>, status: u16, reason: &str, keep_alive: bool) -> usize {
    debug_assert!((100..=999).contains(&status));
    debug_assert!(reason.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
    let mut buf = [0u8; 20];
    let code = format_decimal(u64::from(status), &mut buf);
    // "<code> <reason>\n"
    let body_len = code.len() + 1 + reason.len() + 1;

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(code);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    push_date(out);
    push_line(out, b"Server", SERVER);
    push_line(out, b"Content-Type", b"text/plain");
    push_content_length(out, body_len as u64);
    if !keep_alive {
        push_line(out, b"Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(code);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
    body_len
}

/// Appends the interim response a client waiting on `Expect: 100-continue`
/// needs before it sends the body (RFC 9110 §10.1.1, §15.2.1).
pub fn encode_continue(out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
}

fn push_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_date(out: &mut Vec<u8>) {
    push_line(out, b"Date", &crate::http1::date::now().1);
}

fn push_content_length(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    push_line(out, b"Content-Length", format_decimal(n, &mut buf));
}

/// RFC 9112 §9.3-9.6: "close" whenever we will close; 1.0 clients only
/// persist when told so explicitly.
fn push_connection(out: &mut Vec<u8>, version: Version, keep_alive: bool) {
    match (keep_alive, version) {
        (false, _) => push_line(out, b"Connection", b"close"),
        (true, Version::Http10) => push_line(out, b"Connection", b"keep-alive"),
        (true, Version::Http11) => {}
    }
}

/// Formats `n` in decimal into the end of `buf`, returning the digits
/// (20 bytes hold u64::MAX). No allocation.
fn format_decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Formats `n` in lowercase hex into the end of `buf` (16 bytes hold u64::MAX).
fn format_hex(mut n: u64, buf: &mut [u8; 16]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: &str, headers: &[(&str, &str)]) -> Result<ResponseHead, InvalidResponse> {
        let mut h = ResponseHead::new();
        h.set(
            status.as_bytes(),
            headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        )?;
        Ok(h)
    }

    fn encode(
        h: &ResponseHead,
        version: Version,
        framing: BodyFraming,
        keep_alive: bool,
        is_head: bool,
    ) -> String {
        let mut out = Vec::new();
        encode_head(
            &mut out,
            version,
            &mut h.clone(),
            framing,
            keep_alive,
            is_head,
        );
        String::from_utf8(out).unwrap()
    }

    /// Replaces the Date value, which changes every second, with a marker.
    fn without_date(s: &str) -> String {
        s.lines()
            .map(|l| {
                if l.starts_with("Date: ") {
                    "Date: *"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    /// A head keeps its last encoding; whatever changes in between (the
    /// head itself, the framing, persistence, version, HEAD), the bytes are
    /// those a fresh head encodes.
    #[test]
    fn a_kept_encoding_matches_a_fresh_one() {
        let text = [("Content-Type", "text/plain")];
        let heads: [(&str, &[(&str, &str)]); 4] = [
            ("200 OK", &text),
            ("404 Not Found", &[]),
            ("200 OK", &text),
            ("200 OK", &[("Content-Length", "7")]),
        ];
        let mut kept = ResponseHead::new();
        for (status, headers) in heads {
            kept.set(
                status.as_bytes(),
                headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            )
            .unwrap();
            let fresh = head(status, headers).unwrap();
            for version in [Version::Http10, Version::Http11] {
                for framing in [
                    BodyFraming::Length(5),
                    BodyFraming::Length(6),
                    BodyFraming::Chunked,
                    BodyFraming::CloseDelimited,
                ] {
                    for keep_alive in [true, false] {
                        for is_head in [false, true] {
                            let mut out = Vec::new();
                            encode_head(&mut out, version, &mut kept, framing, keep_alive, is_head);
                            let out = String::from_utf8(out).unwrap();
                            let want = encode(&fresh, version, framing, keep_alive, is_head);
                            assert_eq!(without_date(&out), without_date(&want));
                        }
                    }
                }
            }
        }
    }

    /// RFC 9112 §4 and §6: status line, app headers, Date, Server, framing.
    #[test]
    fn encodes_a_typical_head() {
        let h = head("200 OK", &[("Content-Type", "text/html"), ("X-A", "b")]).unwrap();
        let s = encode(&h, Version::Http11, BodyFraming::Length(5), true, false);
        assert_eq!(
            without_date(&s),
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-A: b\r\nDate: *\r\n\
             Server: nwsgi-host\r\nContent-Length: 5\r\n"
        );
        assert!(s.ends_with("\r\n\r\n"));
        let date = s.lines().find(|l| l.starts_with("Date: ")).unwrap();
        assert_eq!(date.len(), "Date: ".len() + crate::http1::date::DATE_LEN);
    }

    /// RFC 9112 §9.3: close and 1.0 keep-alive signalling; RFC 9110 §6.2:
    /// the status line says HTTP/1.1 even to a 1.0 client.
    #[test]
    fn connection_headers() {
        let h = head("200 OK", &[]).unwrap();
        let s = encode(&h, Version::Http11, BodyFraming::Chunked, true, false);
        assert!(s.contains("Transfer-Encoding: chunked\r\n") && !s.contains("Connection"));
        let s = encode(&h, Version::Http11, BodyFraming::Length(0), false, false);
        assert!(s.contains("Connection: close\r\n"));
        let s = encode(&h, Version::Http10, BodyFraming::Length(0), true, false);
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Connection: keep-alive\r\n"));
        let s = encode(
            &h,
            Version::Http10,
            BodyFraming::CloseDelimited,
            false,
            false,
        );
        assert!(s.contains("Connection: close\r\n"));
        assert!(!s.contains("Content-Length") && !s.contains("Transfer-Encoding"));
    }

    /// RFC 9110 §8.6, §15.3.5, §15.4.5: no framing headers for 1xx/204/304.
    #[test]
    fn bodyless_statuses_send_no_framing() {
        for status in ["204 No Content", "304 Not Modified"] {
            let h = head(status, &[("Content-Length", "0")]).unwrap();
            for framing in [BodyFraming::Length(0), BodyFraming::Chunked] {
                let s = encode(&h, Version::Http11, framing, true, false);
                assert!(!s.contains("Content-Length"), "{status}: {s}");
                assert!(!s.contains("Transfer-Encoding"), "{status}: {s}");
            }
        }
        assert!(status_forbids_body(100) && status_forbids_body(199));
        assert!(status_forbids_body(204) && status_forbids_body(304));
        assert!(
            !status_forbids_body(200) && !status_forbids_body(205) && !status_forbids_body(404)
        );
    }

    /// RFC 9110 §9.3.2 and §8.6: HEAD gets Content-Length only if known.
    #[test]
    fn head_requests() {
        let h = head("200 OK", &[("Content-Length", "42")]).unwrap();
        let s = encode(&h, Version::Http11, BodyFraming::Chunked, true, true);
        assert!(s.contains("Content-Length: 42\r\n") && !s.contains("Transfer-Encoding"));
        let h = head("200 OK", &[]).unwrap();
        let s = encode(&h, Version::Http11, BodyFraming::Chunked, true, true);
        assert!(!s.contains("Content-Length") && !s.contains("Transfer-Encoding"));
        let s = encode(&h, Version::Http11, BodyFraming::Length(7), true, true);
        assert!(s.contains("Content-Length: 7\r\n"));
    }

    #[test]
    fn app_content_length_is_sent_once() {
        let h = head(
            "200 OK",
            &[("Content-Length", "5"), ("content-length", "5")],
        )
        .unwrap();
        assert_eq!(h.content_length(), Some(5));
        let s = encode(&h, Version::Http11, BodyFraming::Length(5), true, false);
        assert_eq!(s.matches("Content-Length").count(), 1);
        assert_eq!(
            head(
                "200 OK",
                &[("Content-Length", "5"), ("Content-Length", "6")]
            )
            .unwrap_err(),
            InvalidResponse::ContentLength
        );
        for bad in [
            "",
            "+5",
            "-5",
            "0x5",
            " 5",
            "5 ",
            "5, 5",
            "18446744073709551616",
        ] {
            assert_eq!(
                head("200 OK", &[("Content-Length", bad)]).unwrap_err(),
                InvalidResponse::ContentLength,
                "{bad:?}"
            );
        }
        assert_eq!(
            head("200 OK", &[("Content-Length", "18446744073709551615")])
                .unwrap()
                .content_length(),
            Some(u64::MAX)
        );
    }

    #[test]
    fn app_date_and_server_replace_ours() {
        let h = head(
            "200 OK",
            &[
                ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("SERVER", "app/1"),
            ],
        )
        .unwrap();
        let s = encode(&h, Version::Http11, BodyFraming::Length(0), true, false);
        assert_eq!(s.matches("ate: ").count(), 1);
        assert!(s.contains("date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"));
        assert_eq!(s.to_ascii_lowercase().matches("server: ").count(), 1);
        assert!(!s.contains("nwsgi-host"));
    }

    /// The cache of the last head never accepts what validation refuses,
    /// even input built to look like the cached one.
    #[test]
    fn repeated_heads_are_reused_and_lookalikes_are_not() {
        let mut h = ResponseHead::new();
        let ok: [(&[u8], &[u8]); 1] = [(b"A", b"b")];
        h.set(b"200 OK", ok).unwrap();
        h.set(b"200 OK", ok).unwrap();
        assert_eq!(h.status(), 200);
        let none: [(&[u8], &[u8]); 0] = [];
        assert_eq!(
            h.set(b"200 OK\0\0\0\0\0\0\0\x01A", none),
            Err(InvalidResponse::Status)
        );
        let split: [(&[u8], &[u8]); 1] = [(b"A", b"b\r\nX: y")];
        assert_eq!(h.set(b"200 OK", split), Err(InvalidResponse::HeaderValue));
        h.set(b"404 Not Found", ok).unwrap();
        assert_eq!(h.status(), 404);
        // Fewer or more headers than the kept input, which it begins with
        // or which begins it, are a new head.
        let two: [(&[u8], &[u8]); 2] = [(b"A", b"b"), (b"C", b"d")];
        for (input, fresh) in [
            (&ok[..], &two[..]),
            (&two[..], &ok[..]),
            (&ok[..], &none[..]),
        ] {
            h.set(b"200 OK", input.iter().copied()).unwrap();
            h.set(b"200 OK", fresh.iter().copied()).unwrap();
            let mut want = ResponseHead::new();
            want.set(b"200 OK", fresh.iter().copied()).unwrap();
            assert_eq!(
                format!("{h:?}"),
                format!("{want:?}"),
                "{input:?} then {fresh:?}"
            );
        }
    }

    /// RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason ].
    #[test]
    fn status_validation() {
        for (good, code) in [
            ("200 OK", 200),
            ("404 Not Found", 404),
            ("599 x", 599),
            ("200 ", 200),
            ("200 caf\u{e9}\tok", 200),
        ] {
            assert_eq!(head(good, &[]).unwrap().status(), code, "{good:?}");
        }
        for bad in [
            "200",
            "200OK",
            "20 OK",
            "2000 OK",
            "099 X",
            "000 X",
            "100 Continue",
            "101 Switching Protocols",
            "199 X",
            "600 X",
            "999 X",
            "abc OK",
            " 200 OK",
            "200 O\r\nX: y",
            "200 O\nK",
            "200 \0",
            "200 \x7f",
            "",
        ] {
            assert_eq!(
                head(bad, &[]).unwrap_err(),
                InvalidResponse::Status,
                "{bad:?}"
            );
        }
    }

    /// RFC 9110 §5.1 (names are tokens) and §5.5 (values: no CR/LF/NUL/CTL).
    #[test]
    fn header_validation() {
        for bad in ["", "X A", "X:A", "X\r\nY", "Ä", "X\0"] {
            assert_eq!(
                head("200 OK", &[(bad, "v")]).unwrap_err(),
                InvalidResponse::HeaderName,
                "{bad:?}"
            );
        }
        for bad in [
            "a\r\nSet-Cookie: x",
            "a\nb",
            "a\rb",
            "a\0b",
            "a\x01b",
            "a\x7fb",
            "\x1b[31m",
        ] {
            assert_eq!(
                head("200 OK", &[("X", bad)]).unwrap_err(),
                InvalidResponse::HeaderValue,
                "{bad:?}"
            );
        }
        // HTAB, SP and obs-text are allowed; empty values too.
        head("200 OK", &[("X", "a\tb c\u{e9}"), ("Y", "")]).unwrap();
    }

    /// RFC 9110 §7.6.1: connection-specific fields belong to the server.
    #[test]
    fn hop_by_hop_headers_are_refused() {
        for name in [
            "Connection",
            "keep-alive",
            "Transfer-Encoding",
            "TE",
            "Upgrade",
            "Proxy-Connection",
            "TRAILER",
        ] {
            assert_eq!(
                head("200 OK", &[(name, "x")]).unwrap_err(),
                InvalidResponse::HopByHop(name.to_owned())
            );
        }
        // Names that merely start like a hop-by-hop one are fine.
        head("200 OK", &[("Connection-Id", "1"), ("Tea", "earl grey")]).unwrap();
    }

    #[test]
    fn set_clears_previous_state_and_failures_leave_it_empty() {
        let mut h = ResponseHead::new();
        h.set(
            b"201 Created",
            [(&b"Content-Length"[..], &b"3"[..]), (b"Date", b"x")],
        )
        .unwrap();
        h.set(b"200 OK", [(&b"X"[..], &b"y"[..])]).unwrap();
        assert_eq!(h.content_length(), None);
        let s = encode(&h, Version::Http11, BodyFraming::Length(0), true, false);
        assert_eq!(s.matches("Date: ").count(), 1);
        assert!(!s.contains("201"));
        assert!(h.set(b"200 OK", [(&b"X"[..], &b"a\nb"[..])]).is_err());
        assert_eq!(h.status(), 0);
        assert_eq!(h.content_length(), None);
    }

    /// RFC 9112 §7.1: chunk = chunk-size CRLF chunk-data CRLF; last-chunk.
    #[test]
    fn chunks() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello");
        encode_chunk(&mut out, b"");
        encode_chunk(&mut out, &[b'x'; 26]);
        encode_last_chunk(&mut out);
        let mut want = b"5\r\nhello\r\n1a\r\n".to_vec();
        want.extend_from_slice(&[b'x'; 26]);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, want);
    }

    #[test]
    fn canned_error() {
        let mut out = Vec::new();
        encode_error(&mut out, 431, "Request Header Fields Too Large", false);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            without_date(&s),
            "HTTP/1.1 431 Request Header Fields Too Large\r\nDate: *\r\nServer: nwsgi-host\r\n\
             Content-Type: text/plain\r\nContent-Length: 36\r\nConnection: close\r\n\r\n\
             431 Request Header Fields Too Large"
        );
        assert!(s.ends_with("\r\n\r\n431 Request Header Fields Too Large\n"));
        let mut out = Vec::new();
        encode_error(&mut out, 404, "Not Found", true);
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("Connection"));
        assert!(s.ends_with("Content-Length: 14\r\n\r\n404 Not Found\n"));
    }

    /// RFC 9110 §15.2.1.
    #[test]
    fn continue_response() {
        let mut out = Vec::new();
        encode_continue(&mut out);
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn number_formatting() {
        let mut d = [0u8; 20];
        assert_eq!(format_decimal(0, &mut d), b"0");
        assert_eq!(format_decimal(1234567890, &mut d), b"1234567890");
        assert_eq!(format_decimal(u64::MAX, &mut d), b"18446744073709551615");
        let mut h = [0u8; 16];
        assert_eq!(format_hex(0, &mut h), b"0");
        assert_eq!(format_hex(255, &mut h), b"ff");
        assert_eq!(format_hex(u64::MAX, &mut h), b"ffffffffffffffff");
    }

    #[test]
    fn display_is_one_phrase() {
        assert_eq!(
            InvalidResponse::HeaderValue.to_string(),
            "header value contains CR, LF, NUL or another control character"
        );
        assert!(InvalidResponse::HopByHop("Connection".into())
            .to_string()
            .contains("\"Connection\""));
    }
}
