//! Request head parsing: request line, header section and body framing
//! (RFC 9112 §2-§6).
//!
//! The request line is parsed here, strictly, because its failure modes need
//! distinct statuses (414, 505) that httparse cannot tell apart. The header
//! section is httparse's to judge (`httparse::parse_headers` with its
//! default, strict configuration: no whitespace before the colon, no
//! obs-fold, no invalid bytes), and its errors are converted in exactly one
//! place, `from_httparse`. On top of that we refuse what httparse lets
//! through: bare LF line endings, and every framing ambiguity a proxy in
//! front of us might resolve differently (request smuggling, RFC 9112 §11.2).
//!
//! Both lines and fields have a one-pass fast path for the shape nearly
//! every request has (`common_request_line`, `common_header_section`): it
//! accepts only input the general path accepts, reads it the same way, and
//! leaves everything else — every error included — to the general path, so
//! which answer a request gets is decided in one place.
//!
//! Partial input is never an error: `Ok(None)` means "read more". The only
//! exceptions are the size limits, which must fire before the buffer holds
//! the whole oversized head, or a client could make us buffer without bound.

use crate::http1::error::HttpError;
use crate::http1::forwarded::is_forwarding_name;

/// gunicorn's `limit_request_line`: longest request line, CRLF excluded.
pub const DEFAULT_LIMIT_REQUEST_LINE: usize = 4094;
/// gunicorn's `limit_request_fields`: most header fields in one request.
pub const DEFAULT_LIMIT_REQUEST_FIELDS: usize = 100;
/// gunicorn's `limit_request_field_size`: longest header line, CRLF excluded.
pub const DEFAULT_LIMIT_REQUEST_FIELD_SIZE: usize = 8190;

const CRLF: &[u8] = b"\r\n";

/// Size limits on one request, from the server configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest request line in bytes, CRLF excluded (over it: 414).
    pub request_line: usize,
    /// Most header fields (over it: 431); also the `storage` length callers
    /// pass to `parse_head`.
    pub fields: usize,
    /// Longest header field line in bytes, CRLF excluded (over it: 431).
    pub field_size: usize,
    /// Largest request body in bytes; 0 means unlimited (over it: 413).
    pub body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: DEFAULT_LIMIT_REQUEST_LINE,
            fields: DEFAULT_LIMIT_REQUEST_FIELDS,
            field_size: DEFAULT_LIMIT_REQUEST_FIELD_SIZE,
            body: 0,
        }
    }
}

impl Limits {
    /// The cap on a buffered head: request line, every field at its maximum,
    /// and the CRLFs (two per line, two for the request line, two at the end).
    /// Saturating so an absurd configuration means "no cap", not a panic.
    pub fn max_head(&self) -> usize {
        self.fields
            .saturating_mul(self.field_size.saturating_add(2))
            .saturating_add(self.request_line)
            .saturating_add(4)
    }
}

/// The protocol version of a request. A 1.x minor version above 1 is read as
/// 1.1 (RFC 9110 §2.5), so these two are all the engine needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No Content-Length and no Transfer-Encoding: no body (§6.3 item 7).
    Empty,
    /// Content-Length: exactly this many bytes follow the head.
    Length(u64),
    /// Transfer-Encoding: chunked, decoded by `chunked::ChunkedDecoder`.
    Chunked,
}

/// One header field line as received: the name as sent (case kept), the
/// value without the whitespace around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'b> {
    pub name: &'b [u8],
    pub value: &'b [u8],
}

/// An unused slot for `parse_head`'s `storage`.
pub const EMPTY_FIELD: Field<'static> = Field {
    name: b"",
    value: b"",
};

/// A parsed and validated request head, borrowing the read buffer.
#[derive(Debug)]
pub struct RequestHead<'b, 'h> {
    /// The request line as received, without its CRLF: method, target and
    /// version with one SP between them.
    pub line: &'b [u8],
    /// A token (RFC 9110 §9.1), so ASCII.
    pub method: &'b [u8],
    /// The raw request-target, in one of the forms `check_target` accepts
    /// (ASCII: see `is_uri_text`).
    pub target: &'b [u8],
    /// The target's path: origin-form up to its query, absolute-form's
    /// path after the authority ("/" when empty), "*" for asterisk-form.
    /// Still percent-encoded.
    pub path: &'b [u8],
    /// The target's query, without the "?"; empty when there is none.
    pub query: &'b [u8],
    pub version: Version,
    /// Every header field, in order, as received.
    pub headers: &'h [Field<'b>],
    /// Bytes of the head including leading empty lines and the final CRLF;
    /// the body (or the next pipelined request) starts at `buf[len..]`.
    pub len: usize,
    pub framing: Framing,
    /// Whether the client allows the connection to persist (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// The client waits for "100 Continue" before sending the body.
    pub expect_continue: bool,
    pub host: Option<&'b [u8]>,
    /// The host the request is for, without a port (RFC 9112 §3.2.2,
    /// §3.3): an absolute-form target's, otherwise the Host field's (empty
    /// if that is); None when there is neither.
    pub host_name: Option<&'b [u8]>,
    pub content_type: Option<&'b [u8]>,
    /// The raw value of the first Content-Length field, if any.
    pub content_length: Option<&'b [u8]>,
    /// Some field name holds '_' (what `--header-map` is about). Noted
    /// while the fields are read anyway, so a request without one (nearly
    /// every request) is not searched again per name.
    pub underscored: bool,
    /// Some field is one of the forwarding headers `forwarded` reads: a
    /// trusted proxy's request without one skips that pass.
    pub forwarding: bool,
}

/// Parses one request head from the start of `buf`.
///
/// `Ok(None)` = incomplete, read more. `storage.len()` is the header-count
/// limit (callers pass `limits.fields` slots). Incomplete input becomes an
/// error only once it is already longer than the limits allow: no CRLF within
/// `limits.request_line + 2` bytes of the request line's start is 414, a
/// header line or the whole head over its limit is 431.
pub fn parse_head<'b, 'h>(
    buf: &'b [u8],
    storage: &'h mut [Field<'b>],
    limits: &Limits,
) -> Result<Option<RequestHead<'b, 'h>>, HttpError> {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before
    // the request-line (old clients send a CRLF after a POST body). Bounded,
    // so a stream of CRLFs cannot grow the buffer forever.
    let mut start = 0;
    while buf[start..].starts_with(CRLF) {
        start += CRLF.len();
    }
    if start > limits.request_line {
        return Err(HttpError::BadRequest("too many empty lines before request"));
    }
    let rest = &buf[start..];
    let Some((method, target, version, lf)) = request_line(rest, limits.request_line)? else {
        return Ok(None);
    };
    let parts = check_target(method, target)?;

    let headers_start = start + lf + 1;
    let block = &buf[headers_start..];
    let section = match common_header_section(block, storage, limits.field_size) {
        Some(done) => done,
        None => match header_section(block, storage, buf.len() - start, limits)? {
            Some(done) => done,
            None => return Ok(None),
        },
    };
    let (block_len, count) = section;
    let headers = &storage[..count];
    let len = headers_start + block_len;

    let fields = Fields::collect(headers);
    let host = fields.host(version)?;
    // §3.2.2: with an absolute-form target, the Host field is ignored for
    // everything but its validity.
    let host_name = parts.host.or(host.map(|(_, name)| name));
    let framing = fields.framing(version, limits)?;
    Ok(Some(RequestHead {
        // `request_line` checked the CR before the LF.
        line: &rest[..lf - 1],
        method,
        target,
        path: parts.path,
        query: parts.query,
        version,
        headers,
        len,
        framing,
        keep_alive: fields.keep_alive(version),
        expect_continue: fields.expect_continue(version)?,
        host: host.map(|(value, _)| value),
        host_name,
        content_type: fields.content_type,
        content_length: fields.content_length,
        underscored: fields.underscored,
        forwarding: fields.forwarding,
    }))
}

/// The header section of nearly every request, in one pass: field lines
/// `token ":" OWS value CRLF` whose values are printable ASCII, SP and HTAB,
/// each line at most `field_size` bytes without its CRLF, as many as
/// `storage` holds, then CRLF. Stores the fields as httparse would read
/// them (the value without leading and trailing SP/HTAB) and returns the
/// section's length with its final CRLF, and the field count. Anything
/// else — a section not complete yet, obs-text or a control in a value, a
/// bare LF, obs-fold, a long line, too many fields, every error — is None,
/// for `header_section` to decide.
#[inline(always)]
fn common_header_section<'b>(
    block: &'b [u8],
    storage: &mut [Field<'b>],
    field_size: usize,
) -> Option<(usize, usize)> {
    let mut i = 0;
    let mut count = 0;
    loop {
        if block.get(i) == Some(&b'\r') {
            return (block.get(i + 1) == Some(&b'\n')).then_some((i + 2, count));
        }
        let line_start = i;
        let name_len = block[i..].iter().position(|&b| !is_tchar(b))?;
        if name_len == 0 || block[i + name_len] != b':' {
            return None;
        }
        let name = &block[i..i + name_len];
        i += name_len + 1;
        while let Some(b' ' | b'\t') = block.get(i) {
            i += 1;
        }
        let value_start = i;
        i += value_run_len(&block[i..]);
        if block.get(i..i + 2) != Some(CRLF) || i - line_start > field_size {
            return None;
        }
        let mut value = &block[value_start..i];
        while let [rest @ .., b' ' | b'\t'] = value {
            value = rest;
        }
        *storage.get_mut(count)? = Field { name, value };
        count += 1;
        i += CRLF.len();
    }
}

/// Whether field name `name` holds '_': a word (or half one) at a time,
/// where a call to `memchr` per name costs more than the name is long.
/// Each test is exact: it marks a byte only if some byte is '_'.
#[inline(always)]
fn has_underscore(name: &[u8]) -> bool {
    let marked = |w: u64| {
        let x = w ^ splat(b'_');
        x.wrapping_sub(splat(0x01)) & !x & splat(0x80) != 0
    };
    let n = name.len();
    if n < 4 {
        // The bytes in one word; the zero bytes above them are no '_'.
        let w = name.iter().rev().fold(0u64, |w, &b| w << 8 | u64::from(b));
        return marked(w);
    }
    if n < 8 {
        let half = |at: usize| {
            u64::from(u32::from_le_bytes(
                name[at..at + 4].try_into().expect("four bytes"),
            ))
        };
        // The first four bytes and the last four, which overlap when the
        // name is shorter than eight bytes.
        return marked(half(0) | half(n - 4) << 32);
    }
    let word = |at: usize| u64::from_le_bytes(name[at..at + 8].try_into().expect("eight bytes"));
    let mut at = 0;
    while at + 8 < n {
        if marked(word(at)) {
            return true;
        }
        at += 8;
    }
    // The last eight bytes, overlapping the word before when the length
    // is not a multiple of eight.
    marked(word(n - 8))
}

/// Bytes with every byte `b`.
const fn splat(b: u8) -> u64 {
    u64::from_le_bytes([b; 8])
}

/// The length of the run of field-value text (the VALUE class: VCHAR, SP,
/// HTAB) at the start of `bytes`. Eight bytes at a time: a word of
/// printable ASCII, which nearly every value is, is told apart with a few
/// arithmetic operations instead of eight table loads.
#[inline(always)]
fn value_run_len(bytes: &[u8]) -> usize {
    let mut i = 0;
    while let Some(word) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        // The high bit of every byte below SP, equal to DEL, or not ASCII.
        // A subtraction's borrow can also mark a byte after a marked one,
        // never before, so the first mark is exact.
        let below_space = w.wrapping_sub(splat(0x20)) & !w;
        let del = w ^ splat(0x7f);
        let is_del = del.wrapping_sub(splat(0x01)) & !del;
        let marks = (below_space | is_del | w) & splat(0x80);
        if marks == 0 {
            i += 8;
            continue;
        }
        i += (marks.trailing_zeros() / 8) as usize;
        if bytes[i] != b'\t' {
            return i;
        }
        i += 1;
    }
    i + bytes[i..]
        .iter()
        .position(|&b| !has_class(b, VALUE))
        .unwrap_or(bytes.len() - i)
}

/// The header section in general: httparse parses it, then we refuse
/// what it lets through (see `check_parsed_lines`). Returns what
/// `common_header_section` does, or `Ok(None)` for an incomplete section,
/// refused early when it already breaks a limit (`check_partial_headers`;
/// `head_so_far` counts from the request line's start).
#[inline(never)]
fn header_section<'b>(
    block: &'b [u8],
    storage: &mut [Field<'b>],
    head_so_far: usize,
    limits: &Limits,
) -> Result<Option<(usize, usize)>, HttpError> {
    with_slots(
        storage.len(),
        httparse::EMPTY_HEADER,
        |slots| match httparse::parse_headers(block, slots) {
            Ok(httparse::Status::Complete((len, headers))) => {
                check_parsed_lines(&block[..len], headers, limits.field_size)?;
                for (field, h) in storage.iter_mut().zip(headers) {
                    *field = Field {
                        name: h.name.as_bytes(),
                        value: h.value,
                    };
                }
                Ok(Some((len, headers.len())))
            }
            Ok(httparse::Status::Partial) => {
                check_partial_headers(head_so_far, block, limits)?;
                Ok(None)
            }
            Err(e) => Err(from_httparse(e)),
        },
    )
}

/// Header slots on the stack when there are at most this many (the default
/// --limit-request-fields); more use the heap.
const STACK_SLOTS: usize = 100;

/// Runs `f` with `n` header slots, each `empty` to start with: ours
/// (`Field`) or httparse's.
pub(crate) fn with_slots<T: Copy, R>(n: usize, empty: T, f: impl FnOnce(&mut [T]) -> R) -> R {
    if n <= STACK_SLOTS {
        let mut stack = [empty; STACK_SLOTS];
        f(&mut stack[..n])
    } else {
        f(&mut vec![empty; n])
    }
}

/// The one place httparse's errors become ours. Only the header-section
/// kinds can occur, since the request line is parsed here.
fn from_httparse(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::HeaderFieldsTooLarge,
        httparse::Error::HeaderName => {
            HttpError::BadRequest("invalid header name (empty, space before colon, or obs-fold)")
        }
        httparse::Error::HeaderValue => HttpError::BadRequest("invalid byte in header value"),
        httparse::Error::NewLine => HttpError::BadRequest("invalid line ending in header section"),
        httparse::Error::Token | httparse::Error::Version | httparse::Error::Status => {
            HttpError::BadRequest("malformed header section")
        }
    }
}

/// A request line's method, target and version `V`, and the index of the
/// LF that ends it.
type Line<'b, V> = (&'b [u8], &'b [u8], V, usize);

/// The request line at the start of `rest` and the index of its LF, or
/// `Ok(None)` while it is incomplete. It must end within `limit` plus CRLF.
fn request_line(rest: &[u8], limit: usize) -> Result<Option<Line<'_, Version>>, HttpError> {
    let window_len = limit.saturating_add(2);
    if let Some((method, target, version, lf)) = common_request_line(rest) {
        // `lf` is the first LF in `rest`: the search below finds it too,
        // unless it lies past the window, and then `rest` is too long.
        if lf >= window_len {
            return Err(HttpError::UriTooLong);
        }
        return Ok(Some((method, target, parse_version(version)?, lf)));
    }
    // The request line must end within its limit plus CRLF.
    let window = &rest[..rest.len().min(window_len)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if rest.len() >= window_len {
            return Err(HttpError::UriTooLong);
        }
        check_partial_request_line(rest)?;
        return Ok(None);
    };
    let line = match lf.checked_sub(1) {
        Some(cr) if rest[cr] == b'\r' => &rest[..cr],
        _ => return Err(HttpError::BadRequest("bare LF in request line")),
    };
    let (method, target, version) = parse_request_line(line)?;
    Ok(Some((method, target, version, lf)))
}

/// The request line of nearly every request, in one pass: a method of
/// tchars, SP, a target that `is_uri_text` accepts, SP, "HTTP/" DIGIT "."
/// DIGIT, CRLF. Returns the method, target, version and the index of the
/// LF, which is then the first LF in `rest` (no byte before it can be one).
/// Any other shape, every error included, is `None`: `request_line` leaves
/// it to `parse_request_line`, so which error wins is decided in one place.
fn common_request_line(rest: &[u8]) -> Option<Line<'_, &[u8]>> {
    // Most requests are GETs: no scan for them.
    let method_len = if rest.starts_with(b"GET ") {
        3
    } else {
        rest.iter().position(|&b| !is_tchar(b))?
    };
    if method_len == 0 || rest[method_len] != b' ' {
        return None;
    }
    let target_start = method_len + 1;
    // As `is_uri_text`, but the "%" check may look past the target's end:
    // a hex digit there would not have ended it, so the answer is the same.
    let i = target_start + pct_run_len(&rest[target_start..], URI);
    if i == target_start || rest.get(i) != Some(&b' ') {
        return None;
    }
    let version = rest.get(i + 1..i + 9)?;
    let version_ok = matches!(
        *version,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit()
    );
    if !version_ok || rest.get(i + 9..i + 11) != Some(CRLF) {
        return None;
    }
    Some((&rest[..method_len], &rest[target_start..i], version, i + 10))
}

/// Whether `bytes[i]` exists and is a HEXDIG.
fn is_hex_at(bytes: &[u8], i: usize) -> bool {
    bytes.get(i).is_some_and(u8::is_ascii_hexdigit)
}

/// Refuses an incomplete request line early when its start already cannot
/// be a request (a TLS handshake, binary noise), instead of waiting for the
/// limit or the timeout.
fn check_partial_request_line(rest: &[u8]) -> Result<(), HttpError> {
    // A lone trailing CR may be the start of a CRLF (even an empty line's).
    let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
    let method_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    if !rest[..method_end].iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequest("invalid method"));
    }
    Ok(())
}

/// request-line = method SP request-target SP HTTP-version (RFC 9112 §3),
/// with exactly one SP between the parts.
fn parse_request_line(line: &[u8]) -> Result<(&[u8], &[u8], Version), HttpError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest("malformed request line"));
    };
    // The version first: "PRI * HTTP/2.0" is a 505, not a bad target.
    let version = parse_version(version)?;
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequest("invalid method"));
    }
    // A SP inside the target ends up here as part of the version.
    if target.is_empty() || !is_uri_text(target) {
        return Err(HttpError::BadRequest("invalid request-target"));
    }
    Ok((method, target, version))
}

/// HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive (RFC 9112 §2.3).
fn parse_version(v: &[u8]) -> Result<Version, HttpError> {
    match *v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0') => Ok(Version::Http10),
                // RFC 9110 §2.5: a higher minor version of a major we
                // implement is processed as our highest minor.
                (b'1', _) => Ok(Version::Http11),
                _ => Err(HttpError::VersionNotSupported),
            }
        }
        _ => Err(HttpError::BadRequest("malformed HTTP version")),
    }
}

/// What `check_target` reads from a request-target.
struct TargetParts<'b> {
    path: &'b [u8],
    query: &'b [u8],
    /// An absolute-form target's host, without the port.
    host: Option<&'b [u8]>,
}

/// RFC 9112 §3.2: origin-form and absolute-form for any method,
/// authority-form only (and always) for CONNECT, asterisk-form only for
/// OPTIONS. Splits the accepted target into its parts.
fn check_target<'b>(method: &[u8], target: &'b [u8]) -> Result<TargetParts<'b>, HttpError> {
    if method == b"CONNECT" {
        // RFC 9110 §9.3.6: CONNECT has no default port.
        return if authority_host(target, true).is_some() {
            // A well-formed tunnel request, but this server tunnels
            // nowhere: an app's 2xx would claim a tunnel the connection
            // then is not (its body read as tunnel data, RFC 9112 §6.3).
            Err(HttpError::NotImplemented(
                "CONNECT: this server is not a proxy",
            ))
        } else {
            Err(HttpError::BadRequest(
                "CONNECT needs an authority-form target",
            ))
        };
    }
    if target == b"*" {
        return if method == b"OPTIONS" {
            Ok(TargetParts {
                path: target,
                query: b"",
                host: None,
            })
        } else {
            Err(HttpError::BadRequest(
                "asterisk-form target outside OPTIONS",
            ))
        };
    }
    // The target holds no "#" (`is_uri_text`), so the query runs to its end.
    let (before_query, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &target[target.len()..]),
    };
    if target.starts_with(b"/") {
        return Ok(TargetParts {
            path: before_query,
            query,
            host: None,
        });
    }
    match absolute_form(before_query) {
        Some((host, path)) => Ok(TargetParts {
            path: if path.is_empty() { b"/" } else { path },
            query,
            host: Some(host),
        }),
        None => Err(HttpError::BadRequest("invalid request-target form")),
    }
}

/// absolute-form, restricted to hierarchical URIs with a non-empty authority
/// (`scheme "://" authority ...`): the only kind an HTTP server can serve
/// (RFC 9110 §4.2.1 requires a host for http and https). Userinfo is refused
/// (RFC 9110 §4.2.4: "treat its presence as an error"). Takes the target
/// without its query; returns the authority's host and the path after it.
fn absolute_form(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = target.iter().position(|&b| b == b':')?;
    let scheme = &target[..colon];
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let after = target[colon..].strip_prefix(b"://")?;
    let authority_end = after.iter().position(|&b| b == b'/').unwrap_or(after.len());
    let (authority, path) = after.split_at(authority_end);
    if !scheme_ok || authority.is_empty() {
        return None;
    }
    Some((authority_host(authority, false)?, path))
}

/// uri-host [ ":" port ] (RFC 3986 §3.2.2-3.2.3), as in Host and
/// authority-form: the host part (an IP-literal with its brackets) when
/// `value` is one. `need_port` requires a non-empty port. An empty host is
/// allowed only for the Host field (RFC 9112 §3.2), so callers that need a
/// host check for emptiness themselves, except here for `need_port`.
fn authority_host(value: &[u8], need_port: bool) -> Option<&[u8]> {
    let (host, port) = if value.starts_with(b"[") {
        // IP-literal: "[" ( IPv6address / IPvFuture ) "]"
        let close = value.iter().position(|&b| b == b']')?;
        let inner = &value[1..close];
        if inner.is_empty() || !inner.iter().all(|&b| has_class(b, IP_LITERAL)) {
            return None;
        }
        match &value[close + 1..] {
            [] => (&value[..=close], None),
            [b':', port @ ..] => (&value[..=close], Some(port)),
            _ => return None,
        }
    } else {
        // A reg-name holds no ":", so the first byte it cannot hold must
        // be the port's ":" or the end.
        let host_len = pct_run_len(value, REG_NAME);
        match &value[host_len..] {
            [] => (value, None),
            [b':', port @ ..] => (&value[..host_len], Some(port)),
            _ => return None,
        }
    };
    let port_ok = match port {
        Some(port) => valid_port(port) && !(need_port && port.is_empty()),
        None => !need_port,
    };
    (port_ok && (!need_port || !host.is_empty())).then_some(host)
}

/// port = *DIGIT (RFC 3986 §3.2.3), and a TCP port: at most 65535 (leading
/// zeros allowed). An empty port is syntax the callers judge.
fn valid_port(port: &[u8]) -> bool {
    let digits = port
        .iter()
        .position(|&b| b != b'0')
        .map_or(&[][..], |i| &port[i..]);
    port.iter().all(u8::is_ascii_digit)
        && digits.len() <= 5
        && digits
            .iter()
            .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
            <= 65535
}

/// The length of the longest run at the start of `bytes` made of bytes in
/// `class` and pct-encoded octets ("%" HEXDIG HEXDIG, RFC 3986 §2.1): with
/// REG_NAME, the reg-name `bytes` starts with (*( unreserved / pct-encoded /
/// sub-delims ), §3.2.2); with URI, the request-target text `is_uri_text`
/// accepts. Inlined: it is on the request line's common path.
#[inline(always)]
fn pct_run_len(bytes: &[u8], class: u8) -> usize {
    let mut i = 0;
    loop {
        i += bytes[i..]
            .iter()
            .position(|&b| !has_class(b, class))
            .unwrap_or(bytes.len() - i);
        if bytes.get(i) == Some(&b'%') && is_hex_at(bytes, i + 1) && is_hex_at(bytes, i + 2) {
            i += 3;
        } else {
            return i;
        }
    }
}

/// Once httparse reports an incomplete header section, decides whether
/// what is buffered already breaks a limit. `head_so_far` counts from the
/// request line's start.
fn check_partial_headers(
    head_so_far: usize,
    block: &[u8],
    limits: &Limits,
) -> Result<(), HttpError> {
    // The lines already complete first, with the same checks as in a whole
    // head: an error in earlier bytes wins, so the answer never depends on
    // how the bytes were split.
    if let Some(lf) = block.iter().rposition(|&b| b == b'\n') {
        check_header_lines(&block[..=lf], limits.field_size)?;
    }
    if head_so_far > limits.max_head() {
        return Err(HttpError::HeaderFieldsTooLarge);
    }
    // The line being received: longer than a field may be (plus a CR that
    // waits for its LF) means 431 now, not after max_head more bytes.
    let budget = limits.field_size.saturating_add(1);
    let tail_has_lf = block.iter().rev().take(budget + 1).any(|&b| b == b'\n');
    if !tail_has_lf && block.len() > budget {
        return Err(HttpError::HeaderFieldsTooLarge);
    }
    Ok(())
}

/// What httparse accepts but we must not: a bare LF as line ending (RFC 9112
/// §2.2 allows it, but a proxy that disagrees would split the head
/// differently), and field lines over `field_size`. `block` is the complete
/// header section including its final CRLF. httparse has already refused a
/// CR not followed by LF.
fn check_header_lines(block: &[u8], field_size: usize) -> Result<(), HttpError> {
    let mut line_start = 0;
    for (i, &b) in block.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        match i.checked_sub(1) {
            Some(cr) if block[cr] == b'\r' => {
                if cr - line_start > field_size {
                    return Err(HttpError::HeaderFieldsTooLarge);
                }
            }
            _ => return Err(HttpError::BadRequest("bare LF in header section")),
        }
        line_start = i + 1;
    }
    Ok(())
}

/// `check_header_lines` for a section httparse has parsed whole, mostly
/// without scanning it again: see `lines_end_in_crlf`. Any other section
/// (a bare LF, a line too long) is scanned, so the scan alone decides which
/// error it is.
#[inline]
fn check_parsed_lines(
    block: &[u8],
    headers: &[httparse::Header<'_>],
    field_size: usize,
) -> Result<(), HttpError> {
    if lines_end_in_crlf(block, headers, field_size) {
        return Ok(());
    }
    check_header_lines(block, field_size)
}

/// Whether every line of a section httparse has parsed whole ends in CRLF
/// and is at most `field_size` bytes long without it, found from where
/// the names start. With its default configuration httparse accepts only
/// `name ":" value (CRLF / LF)` field lines, each name at the start of its
/// line and no LF anywhere else, then the empty line that ends the section.
/// So each line runs from its name to the next name (the last one to the
/// empty line), and a line's LF is the byte before where the next begins.
fn lines_end_in_crlf(block: &[u8], headers: &[httparse::Header<'_>], field_size: usize) -> bool {
    let offset =
        |h: &httparse::Header<'_>| (h.name.as_ptr() as usize).wrapping_sub(block.as_ptr() as usize);
    let Some((first, rest)) = headers.split_first() else {
        return block == CRLF;
    };
    if offset(first) != 0 || !block.ends_with(CRLF) {
        return false;
    }
    // Whether the line `block[line_start..next_start]` ends in CRLF and is
    // short enough.
    let line_ok = |line_start: usize, next_start: usize| match next_start.checked_sub(CRLF.len()) {
        Some(cr) => {
            cr.checked_sub(line_start)
                .is_some_and(|len| len <= field_size)
                && block.get(cr..next_start) == Some(CRLF)
        }
        None => false,
    };
    let mut line_start = 0;
    for next_start in rest.iter().map(offset) {
        if !line_ok(line_start, next_start) {
            return false;
        }
        line_start = next_start;
    }
    // The empty line, if it is a CRLF, starts 2 bytes before the end.
    line_ok(line_start, block.len() - CRLF.len())
}

/// A Host field's value, and its host part (without the port).
type HostField<'b> = (&'b [u8], &'b [u8]);

/// The header fields that matter to the engine, gathered in one pass.
/// List-valued fields that are rare (Content-Length, Transfer-Encoding,
/// Expect) are only noted here and re-read from `headers` when present, so
/// the common request allocates nothing.
///
/// `parse_head` is the only caller. What every request runs is
/// `#[inline(always)]` into it, so the fields stay in registers instead of
/// a struct copied in and out of calls; the re-reads are `#[inline(never)]`,
/// so they do not bloat that path (each measured with callgrind).
struct Fields<'b, 'h> {
    headers: &'h [Field<'b>],
    hosts: usize,
    host: Option<&'b [u8]>,
    content_type: Option<&'b [u8]>,
    /// The first Content-Length value, raw.
    content_length: Option<&'b [u8]>,
    has_transfer_encoding: bool,
    has_expect: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    underscored: bool,
    forwarding: bool,
}

impl<'b, 'h> Fields<'b, 'h> {
    #[inline(always)]
    fn collect(headers: &'h [Field<'b>]) -> Self {
        let mut f = Fields {
            headers,
            hosts: 0,
            host: None,
            content_type: None,
            content_length: None,
            has_transfer_encoding: false,
            has_expect: false,
            connection_close: false,
            connection_keep_alive: false,
            underscored: false,
            forwarding: false,
        };
        for h in headers {
            let name = h.name;
            f.underscored |= has_underscore(name);
            // Names of different lengths never match: one comparison at most.
            match name.len() {
                4 if is_field_name(name, b"host") => {
                    f.hosts += 1;
                    f.host.get_or_insert(h.value);
                }
                14 if is_field_name(name, b"content-length") => {
                    f.content_length.get_or_insert(h.value);
                }
                17 if is_field_name(name, b"transfer-encoding") => {
                    f.has_transfer_encoding = true;
                }
                12 if is_field_name(name, b"content-type") => {
                    f.content_type.get_or_insert(h.value);
                }
                10 if is_field_name(name, b"connection") => f.connection(h.value),
                6 if is_field_name(name, b"expect") => f.has_expect = true,
                _ => f.forwarding |= is_forwarding_name(name),
            }
        }
        f
    }

    /// Notes the Connection options that decide persistence (RFC 9112 §9.3).
    fn connection(&mut self, value: &[u8]) {
        for option in list_elements(value) {
            self.connection_close |= option.eq_ignore_ascii_case(b"close");
            self.connection_keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
        }
    }

    /// The values of every field called `name`, in order.
    fn values(&self, name: &'static str) -> impl Iterator<Item = &'b [u8]> + 'h {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value)
    }

    /// RFC 9112 §3.2: exactly one valid Host in HTTP/1.1, at most one in
    /// 1.0. Its value, and its host part (without the port).
    #[inline(always)]
    fn host(&self, version: Version) -> Result<Option<HostField<'b>>, HttpError> {
        match (self.hosts, self.host) {
            (0, _) if version == Version::Http11 => Err(HttpError::BadRequest("missing Host")),
            (0, _) => Ok(None),
            (1, value) => match value.and_then(|v| Some((v, authority_host(v, false)?))) {
                Some(found) => Ok(Some(found)),
                None => Err(HttpError::BadRequest("invalid Host")),
            },
            _ => Err(HttpError::BadRequest("more than one Host")),
        }
    }

    /// RFC 9112 §6.1-6.3: decides the body framing, refusing every ambiguity.
    #[inline(always)]
    fn framing(&self, version: Version, limits: &Limits) -> Result<Framing, HttpError> {
        if self.has_transfer_encoding {
            // §6.1: MAY reject CL together with TE; we do, since the pair is
            // the classic smuggling shape (CL.TE / TE.CL).
            if self.content_length.is_some() {
                return Err(HttpError::BadRequest(
                    "both Transfer-Encoding and Content-Length",
                ));
            }
            // §6.1: TE in HTTP/1.0 means faulty framing.
            if version == Version::Http10 {
                return Err(HttpError::BadRequest("Transfer-Encoding in HTTP/1.0"));
            }
            return self.transfer_coding().map(|()| Framing::Chunked);
        }
        if self.content_length.is_none() {
            // §6.3 item 7: neither field, no body.
            return Ok(Framing::Empty);
        }
        match self.content_length()? {
            None => Ok(Framing::Empty),
            Some(n) if limits.body > 0 && n > limits.body => Err(HttpError::PayloadTooLarge),
            Some(n) => Ok(Framing::Length(n)),
        }
    }

    /// Checks the combined Transfer-Encoding list; Ok means exactly
    /// "chunked". Precedence: malformed, "chunked" twice, or chunked not
    /// the final coding is 400 (§6.3 item 4 MUST); otherwise any other
    /// coding, e.g. "gzip, chunked", is 501 (§6.1 SHOULD).
    #[inline(never)]
    fn transfer_coding(&self) -> Result<(), HttpError> {
        let mut chunked = 0usize;
        let mut unknown = false;
        let mut last_is_chunked = false;
        for coding in self.values("transfer-encoding").flat_map(list_elements) {
            let (name, params) = match coding.iter().position(|&b| b == b';') {
                Some(semi) => (trim_ows(&coding[..semi]), Some(&coding[semi..])),
                None => (coding, None),
            };
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(HttpError::BadRequest("malformed transfer-coding"));
            }
            last_is_chunked = name.eq_ignore_ascii_case(b"chunked");
            if last_is_chunked {
                if params.is_some() {
                    return Err(HttpError::BadRequest("parameters on chunked"));
                }
                chunked += 1;
            } else {
                unknown = true;
            }
        }
        if chunked > 1 {
            return Err(HttpError::BadRequest("chunked applied more than once"));
        }
        if !last_is_chunked {
            // §6.3 item 4: the length cannot be determined; MUST 400 and
            // close. Also covers "gzip" alone and an empty list.
            return Err(HttpError::BadRequest(
                "chunked is not the final transfer-coding",
            ));
        }
        if unknown {
            // §6.1: SHOULD 501 for a coding we do not understand
            // ("gzip, chunked": the framing is sound, the content is not
            // something we can decode).
            return Err(HttpError::NotImplemented(
                "transfer-coding other than chunked",
            ));
        }
        Ok(())
    }

    /// RFC 9110 §8.6: Content-Length = 1*DIGIT. Several fields, or a list
    /// like "5, 5", are accepted only when every value is the same.
    #[inline(never)]
    fn content_length(&self) -> Result<Option<u64>, HttpError> {
        let mut found: Option<u64> = None;
        for value in self.values("content-length") {
            // Split by hand (not `list_elements`) so that an empty element,
            // as in "5,,5" or an empty field, is an error, not skipped.
            for element in value.split(|&b| b == b',') {
                let n = parse_decimal(trim_ows(element))
                    .ok_or(HttpError::BadRequest("invalid Content-Length"))?;
                if found.is_some_and(|prev| prev != n) {
                    return Err(HttpError::BadRequest("conflicting Content-Length values"));
                }
                found = Some(n);
            }
        }
        Ok(found)
    }

    /// RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive".
    fn keep_alive(&self, version: Version) -> bool {
        match version {
            Version::Http11 => !self.connection_close,
            Version::Http10 => self.connection_keep_alive && !self.connection_close,
        }
    }

    /// RFC 9110 §10.1.1: "100-continue" is the only expectation; any other
    /// is 417. In HTTP/1.0 a 100-continue MUST be ignored.
    #[inline(always)]
    fn expect_continue(&self, version: Version) -> Result<bool, HttpError> {
        if !self.has_expect {
            return Ok(false);
        }
        Ok(self.expects_continue()? && version == Version::Http11)
    }

    /// Whether the Expect fields hold any expectation, all "100-continue".
    #[inline(never)]
    fn expects_continue(&self) -> Result<bool, HttpError> {
        let mut wants = false;
        for expectation in self.values("expect").flat_map(list_elements) {
            if !expectation.eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::ExpectationFailed);
            }
            wants = true;
        }
        Ok(wants)
    }
}

/// `name.eq_ignore_ascii_case(lower)` for a `lower` of lowercase letters
/// and "-", without a branch per byte: a letter matches itself with its
/// case bit (0x20) set or not, anything else only itself.
fn is_field_name<const N: usize>(name: &[u8], lower: &[u8; N]) -> bool {
    let Ok(name) = <&[u8; N]>::try_from(name) else {
        return false;
    };
    let mut diff = 0;
    for (&b, &l) in name.iter().zip(lower) {
        let case = if l.is_ascii_lowercase() { 0x20 } else { 0 };
        diff |= (b | case) ^ l;
    }
    diff == 0
}

/// The non-empty elements of a comma-separated list, OWS trimmed
/// (RFC 9110 §5.6.1: a recipient ignores empty elements). Values come from
/// httparse, so they hold no CR, LF or other CTL besides HTAB.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// 1*DIGIT as u64 with overflow checked: no sign, no "0x", no spaces.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let digit = u64::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        acc.checked_mul(10)?.checked_add(digit)
    })
}

/// The characters a request-target may hold (RFC 9112 §3.2 with RFC 3986
/// §2-3): unreserved, sub-delims, ":", "@", "/", "?", and "%" only as the
/// start of a pct-encoded octet. Everything else — "#" (fragments are
/// never sent), '"', "<", ">", "\\", "^", "`", "{", "|", "}", raw non-ASCII,
/// controls — is refused with 400, as §3.2 recommends, so apps never see a
/// target that other parsers on the path would read differently. One
/// leniency: "[" and "]" (IPv6 literals, and query conventions such as
/// `a[]=1` that clients send unencoded).
fn is_uri_text(target: &[u8]) -> bool {
    pct_run_len(target, URI) == target.len()
}

/// tchar (RFC 9110 §5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
    has_class(b, TCHAR)
}

// Character classes, one bit each in `CLASS`, so that classifying a byte
// is one table load rather than a search through a list of characters.

/// tchar: ALPHA / DIGIT / "!#$%&'*+-.^_`|~" (RFC 9110 §5.6.2).
const TCHAR: u8 = 1 << 0;
/// What a reg-name holds besides pct-encoded octets (RFC 3986 §3.2.2):
/// unreserved = ALPHA / DIGIT / "-._~" (§2.3) and sub-delims = "!$&'()*+,;="
/// (§2.2).
const REG_NAME: u8 = 1 << 1;
/// What an IP-literal may hold between its brackets: unreserved,
/// sub-delims and ":" (RFC 3986 §3.2.2, loosely).
const IP_LITERAL: u8 = 1 << 2;
/// What `is_uri_text` accepts besides pct-encoded octets: unreserved,
/// sub-delims, ":", "@", "/", "?", "[" and "]".
const URI: u8 = 1 << 3;
/// What `common_header_section` takes in a field value: VCHAR, SP and HTAB
/// (RFC 9110 §5.5 without obs-text, which goes the general way).
const VALUE: u8 = 1 << 4;

/// The class bits of every byte; `tests::class_table_matches_definitions`
/// checks it against the grammar, byte by byte.
static CLASS: [u8; 256] = class_table();

const fn class_table() -> [u8; 256] {
    const fn one_of(set: &[u8], b: u8) -> bool {
        let mut i = 0;
        while i < set.len() {
            if set[i] == b {
                return true;
            }
            i += 1;
        }
        false
    }
    let mut table = [0; 256];
    let mut i = 0;
    while i < table.len() {
        let b = i as u8;
        let alnum = b.is_ascii_alphanumeric();
        let reg_name = alnum || one_of(b"-._~", b) || one_of(b"!$&'()*+,;=", b);
        let mut bits = 0;
        if alnum || one_of(b"!#$%&'*+-.^_`|~", b) {
            bits |= TCHAR;
        }
        if reg_name {
            bits |= REG_NAME;
        }
        if reg_name || b == b':' {
            bits |= IP_LITERAL;
        }
        if reg_name || one_of(b":@/?[]", b) {
            bits |= URI;
        }
        if b.is_ascii_graphic() || b == b' ' || b == b'\t' {
            bits |= VALUE;
        }
        table[i] = bits;
        i += 1;
    }
    table
}

/// Whether `b` is in the set `class`, one of the bits above.
fn has_class(b: u8, class: u8) -> bool {
    CLASS[usize::from(b)] & class != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(
        req: &[u8],
        limits: &Limits,
    ) -> Result<Option<(Framing, bool, bool, usize)>, HttpError> {
        let mut storage = vec![EMPTY_FIELD; limits.fields];
        parse_head(req, &mut storage, limits)
            .map(|h| h.map(|h| (h.framing, h.keep_alive, h.expect_continue, h.len)))
    }

    fn parse(req: &[u8]) -> Result<Option<(Framing, bool, bool, usize)>, HttpError> {
        parse_with(req, &Limits::default())
    }

    /// What the parser notes about a head's names: (underscored, forwarding).
    fn names_noted(fields: &str) -> (bool, bool) {
        let req = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        let mut storage = [EMPTY_FIELD; 100];
        let head = parse_head(req.as_bytes(), &mut storage, &Limits::default())
            .unwrap()
            .unwrap();
        (head.underscored, head.forwarding)
    }

    #[test]
    fn notes_underscored_names_and_forwarding_headers() {
        for (fields, noted) in [
            ("", (false, false)),
            ("Accept-Encoding: x\r\nUser-Agent: y\r\n", (false, false)),
            ("X_Y: 1\r\n", (true, false)),
            (
                "Accept: x\r\nsome_long_field_name_here: 1\r\n",
                (true, false),
            ),
            ("x-forwarded-for: 192.0.2.1\r\n", (false, true)),
            ("FORWARDED: for=192.0.2.1\r\n", (false, true)),
            ("X-Forwarded-Proto: https\r\n", (false, true)),
            ("X-Forwarded-Ssl: on\r\n", (false, true)),
            ("X-Forwarded-Protocol: ssl\r\n", (false, true)),
            // A name of a forwarding header's length that is not one.
            (
                "Accept-Language: en\r\nX-Forwarded-Prot: x\r\n",
                (false, false),
            ),
            // With '_' for '-', it is no forwarding header (as `forwarded`
            // reads names), but it is underscored.
            ("X_Forwarded_For: 192.0.2.1\r\n", (true, false)),
            ("X-Forwarded-For: 192.0.2.1\r\nA_B: c\r\n", (true, true)),
        ] {
            assert_eq!(names_noted(fields), noted, "{fields:?}");
        }
    }

    /// Every length and every place of the '_', and names of the bytes
    /// next to it ('^', '`'), which must not read as one.
    #[test]
    fn has_underscore_at_every_place() {
        for len in 1..=40 {
            for filler in [b'a', b'^', b'`', b'-', b'~'] {
                let mut name = vec![filler; len];
                assert!(!has_underscore(&name), "{len} {filler}");
                for at in 0..len {
                    name[at] = b'_';
                    assert!(has_underscore(&name), "{len} {filler} {at}");
                    name[at] = filler;
                }
            }
        }
    }

    fn ok(req: &[u8]) -> (Framing, bool, bool, usize) {
        match parse(req) {
            Ok(Some(h)) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(req)),
        }
    }

    fn err(req: &[u8]) -> HttpError {
        match parse(req) {
            Err(e) => e,
            other => panic!("{:?} should fail: {other:?}", String::from_utf8_lossy(req)),
        }
    }

    fn status(req: &[u8]) -> u16 {
        err(req).status()
    }

    /// A 1.1 request with Host and the given extra header lines.
    fn with_headers(lines: &str) -> Vec<u8> {
        format!("POST /x HTTP/1.1\r\nHost: example.com\r\n{lines}\r\n").into_bytes()
    }

    #[test]
    fn simple_get() {
        let req = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\nAccept: */*\r\n\r\nNEXT";
        let mut storage = [EMPTY_FIELD; 8];
        let head = parse_head(req, &mut storage, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(head.method, b"GET");
        assert_eq!(head.target, b"/index.html?q=1");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.headers.len(), 3);
        assert_eq!(head.headers[2].name, b"Accept");
        assert_eq!(&req[head.len..], b"NEXT");
        assert_eq!(head.framing, Framing::Empty);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert_eq!(head.host, Some(&b"example.com"[..]));
        assert_eq!(head.content_type, Some(&b"text/plain"[..]));
        assert_eq!(head.content_length, None);
    }

    /// Partial input is "read more" at every split point (RFC 9112 §2.1).
    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let req = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        for end in 0..req.len() {
            assert_eq!(parse(&req[..end]), Ok(None), "prefix {end}");
        }
        assert_eq!(ok(req).0, Framing::Length(3));
    }

    /// RFC 9112 §2.2: at least one empty line before the request is ignored.
    #[test]
    fn leading_empty_lines_are_skipped_but_bounded() {
        let (_, _, _, len) = ok(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(len, 4 + 16 + 9 + 2);
        let flood = b"\r\n".repeat(DEFAULT_LIMIT_REQUEST_LINE);
        assert_eq!(status(&flood), 400);
        // A lone CR may still become an empty line.
        assert_eq!(parse(b"\r"), Ok(None));
        assert_eq!(parse(b"\r\n\r"), Ok(None));
        // A bare LF is not an empty line.
        assert_eq!(status(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    /// RFC 9112 §3: method = token, single SP separators.
    #[test]
    fn request_line_shape() {
        assert_eq!(status(b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\rX\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET\r\n\r\n"), 400);
        // Extension methods are tokens too.
        ok(b"PURGE-ALL /caf%C3%A9 HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    /// RFC 9112 §3.2 (SHOULD 400 for an invalid request-target) with the
    /// RFC 3986 character set; "[" and "]" are the one leniency.
    #[test]
    fn target_characters() {
        ok(b"GET /a-b._~!$&'()*+,;=:@/?q=%2F&x[]=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        for bad in [
            &b"/caf\xc3\xa9"[..],
            b"/a#frag",
            b"/a\"b",
            b"/a<b>",
            b"/a\\b",
            b"/a^b",
            b"/a`b",
            b"/a{b}",
            b"/a|b",
            b"/a%zz",
            b"/a%4",
            b"/a%",
        ] {
            let mut req = b"GET ".to_vec();
            req.extend_from_slice(bad);
            req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(status(&req), 400, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// A complete over-long field line is refused as soon as its CRLF is
    /// in, not only while it is still arriving (found by the fuzzer).
    #[test]
    fn a_complete_long_line_is_refused_before_the_head_ends() {
        let limits = Limits {
            field_size: 10,
            ..Limits::default()
        };
        let mut storage = [EMPTY_FIELD; 8];
        for partial in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 123456\r"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 123456\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 123456\r\nX-B: 1",
        ] {
            assert_eq!(
                parse_head(partial, &mut storage, &limits).map(|h| h.is_some()),
                Err(HttpError::HeaderFieldsTooLarge),
                "{:?}",
                String::from_utf8_lossy(partial)
            );
        }
    }

    #[test]
    fn garbage_is_refused_before_a_full_line_arrives() {
        assert_eq!(status(b"\x16\x03\x01\x02\x00\x01"), 400);
        assert_eq!(parse(b"GET /partial-with-\x01"), Ok(None));
    }

    /// RFC 9112 §2.3 and RFC 9110 §2.5, §15.6.6.
    #[test]
    fn versions() {
        let (_, ka, _, _) = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!ka, "1.0 defaults to close");
        // A higher 1.x minor is treated as 1.1.
        let mut storage = [EMPTY_FIELD; 4];
        let head = parse_head(
            b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            &mut storage,
            &Limits::default(),
        );
        assert_eq!(head.unwrap().unwrap().version, Version::Http11);
        assert_eq!(
            err(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
            HttpError::VersionNotSupported
        );
        assert_eq!(
            err(b"GET / HTTP/3.0\r\n\r\n"),
            HttpError::VersionNotSupported
        );
        assert_eq!(
            err(b"GET / HTTP/0.9\r\n\r\n"),
            HttpError::VersionNotSupported
        );
        assert_eq!(
            err(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            HttpError::VersionNotSupported
        );
        for bad in [
            "HTTP/1",
            "HTTP/1.1.1",
            "http/1.1",
            "HTTP/11",
            "HTTP/1.x",
            "HTTPS/1.1",
            "",
        ] {
            let req = format!("GET / {bad}\r\nHost: a\r\n\r\n");
            assert_eq!(status(req.as_bytes()), 400, "{bad:?}");
        }
    }

    /// RFC 9112 §3.2.1-3.2.4: which target form goes with which method.
    #[test]
    fn request_target_forms() {
        ok(b"GET /a/b?c HTTP/1.1\r\nHost: a\r\n\r\n");
        ok(b"GET //double HTTP/1.1\r\nHost: a\r\n\r\n");
        ok(b"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\n");
        ok(b"GET https://example.com:8443 HTTP/1.1\r\nHost: x\r\n\r\n");
        // A well-formed CONNECT is understood, and refused: no tunnels here.
        for connect in [
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
        ] {
            assert_eq!(status(connect.as_bytes()), 501, "{connect:?}");
        }
        ok(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        ok(b"OPTIONS /x HTTP/1.1\r\nHost: a\r\n\r\n");
        for bad in [
            "GET * HTTP/1.1",
            "GET example.com:443 HTTP/1.1",
            "GET example.com HTTP/1.1",
            "GET ?q HTTP/1.1",
            "GET http:/x HTTP/1.1",
            "GET http:// HTTP/1.1",
            "GET http://user@example.com/ HTTP/1.1",
            "GET 1http://a/ HTTP/1.1",
            "CONNECT / HTTP/1.1",
            "CONNECT * HTTP/1.1",
            "CONNECT example.com HTTP/1.1",
            "CONNECT example.com: HTTP/1.1",
            "CONNECT http://example.com:443 HTTP/1.1",
            "CONNECT :443 HTTP/1.1",
            "OPTIONS ** HTTP/1.1",
        ] {
            let req = format!("{bad}\r\nHost: a\r\n\r\n");
            assert_eq!(status(req.as_bytes()), 400, "{bad:?}");
        }
    }

    /// The path, query and host name read from each target form (RFC 9112
    /// §3.2-3.3): an absolute-form target's authority wins over Host.
    #[test]
    fn target_parts_and_host_name() {
        let cases: [(&str, &str, &str, Option<&str>); 11] = [
            (
                "GET /a/b?x=1 HTTP/1.1\r\nHost: h:80",
                "/a/b",
                "x=1",
                Some("h"),
            ),
            ("GET /a?b?c HTTP/1.1\r\nHost: h", "/a", "b?c", Some("h")),
            ("GET /? HTTP/1.1\r\nHost: h", "/", "", Some("h")),
            (
                "GET /%41 HTTP/1.1\r\nHost: [::1]:8080",
                "/%41",
                "",
                Some("[::1]"),
            ),
            ("GET /p HTTP/1.1\r\nHost:", "/p", "", Some("")),
            ("GET /p HTTP/1.0", "/p", "", None),
            (
                "GET http://a.example:81/p?q HTTP/1.1\r\nHost: b",
                "/p",
                "q",
                Some("a.example"),
            ),
            (
                "GET http://a.example HTTP/1.1\r\nHost: b",
                "/",
                "",
                Some("a.example"),
            ),
            (
                "GET http://a.example?q HTTP/1.1\r\nHost: b",
                "/",
                "q",
                Some("a.example"),
            ),
            ("GET http://[::1]/x HTTP/1.0", "/x", "", Some("[::1]")),
            ("OPTIONS * HTTP/1.1\r\nHost: h", "*", "", Some("h")),
        ];
        for (head, path, query, host_name) in cases {
            let req = format!("{head}\r\n\r\n");
            let mut storage = [EMPTY_FIELD; 8];
            let parsed = parse_head(req.as_bytes(), &mut storage, &Limits::default())
                .unwrap_or_else(|e| panic!("{head:?}: {e}"))
                .expect("complete");
            assert_eq!(parsed.path, path.as_bytes(), "{head:?}");
            assert_eq!(parsed.query, query.as_bytes(), "{head:?}");
            assert_eq!(parsed.host_name, host_name.map(str::as_bytes), "{head:?}");
        }
    }

    /// RFC 9112 §3.2: a 1.1 request has exactly one valid Host.
    #[test]
    fn host_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nhOsT: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        ok(b"GET / HTTP/1.0\r\n\r\n");
        // §3.2: an empty Host is what a client sends when there is no authority.
        ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n");
        for good in [
            "example.com",
            "example.com:8080",
            "a-b.c_d~e",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:80",
            "%41b",
            "host:",
            "a:65535",
            "a:00080",
        ] {
            let req = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
            ok(req.as_bytes());
        }
        for bad in [
            "exa mple.com",
            "a/b",
            "user@example.com",
            "a:b:c",
            "a:8x",
            "a:99999",
            "a:65536",
            "[::1]:70000",
            "a:0000065536",
            "[::1",
            "[::1]x",
            "[]",
            "%4",
            "%zz",
            "a\"b",
            "a<b>",
            "a\\b",
        ] {
            let req = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert_eq!(status(req.as_bytes()), 400, "{bad:?}");
        }
    }

    /// RFC 9112 §5.1, §5.2 and §2.2: strict field lines.
    #[test]
    fn header_syntax() {
        // Whitespace between name and colon: MUST be rejected (§5.1).
        assert_eq!(status(&with_headers("Content-Length : 5\r\n")), 400);
        assert_eq!(status(&with_headers("X-A\t: 5\r\n")), 400);
        // obs-fold (§5.2).
        assert_eq!(status(&with_headers("X-A: b\r\n c\r\n")), 400);
        assert_eq!(status(&with_headers("X-A: b\r\n\tc\r\n")), 400);
        // Whitespace before the first field would be obs-fold on the request line.
        assert_eq!(status(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
        // Empty names, invalid name bytes.
        assert_eq!(status(&with_headers(": v\r\n")), 400);
        assert_eq!(status(&with_headers("X(A): v\r\n")), 400);
        // NUL, bare CR, other CTLs in values (RFC 9110 §5.5).
        assert_eq!(status(&with_headers("X-A: a\0b\r\n")), 400);
        assert_eq!(status(&with_headers("X-A: a\rb\r\n")), 400);
        assert_eq!(status(&with_headers("X-A: a\x01b\r\n")), 400);
        assert_eq!(status(&with_headers("X-A: a\x7fb\r\n")), 400);
        // HTAB and obs-text are allowed in values; OWS is trimmed.
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \t a\tb\xff \t\r\n\r\n";
        let mut storage = [EMPTY_FIELD; 4];
        let head = parse_head(req, &mut storage, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(head.headers[1].value, b"a\tb\xff");
    }

    /// RFC 9112 §2.2: we refuse bare LF as a line terminator everywhere.
    #[test]
    fn bare_lf_is_refused() {
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\nX: b\n\n"), 400);
    }

    /// RFC 9112 §6.3 item 5, RFC 9110 §8.6.
    #[test]
    fn content_length_values() {
        assert_eq!(
            ok(&with_headers("Content-Length: 5\r\n")).0,
            Framing::Length(5)
        );
        assert_eq!(
            ok(&with_headers("Content-Length: 0\r\n")).0,
            Framing::Length(0)
        );
        assert_eq!(
            ok(&with_headers("Content-Length: 007\r\n")).0,
            Framing::Length(7)
        );
        assert_eq!(
            ok(&with_headers("Content-Length: 18446744073709551615\r\n")).0,
            Framing::Length(u64::MAX)
        );
        // Identical repeats, as separate fields or as a list, are accepted.
        assert_eq!(
            ok(&with_headers("Content-Length: 5\r\nContent-Length: 5\r\n")).0,
            Framing::Length(5)
        );
        assert_eq!(
            ok(&with_headers("Content-Length: 5, 5\r\n")).0,
            Framing::Length(5)
        );
        assert_eq!(
            ok(&with_headers("Content-Length: 5,5 ,\t5\r\n")).0,
            Framing::Length(5)
        );
        for bad in [
            "Content-Length: +5",
            "Content-Length: -5",
            "Content-Length: 0x5",
            "Content-Length: 5.0",
            "Content-Length: 5 5",
            "Content-Length: 1_000",
            "Content-Length:",
            "Content-Length: ",
            "Content-Length: 5,",
            "Content-Length: 5,,5",
            "Content-Length: ,5",
            "Content-Length: 5, 6",
            "Content-Length: 5\r\nContent-Length: 6",
            "Content-Length: 5\r\nContent-Length: ",
            "Content-Length: 18446744073709551616",
            "Content-Length: \u{663}",
        ] {
            assert_eq!(status(&with_headers(&format!("{bad}\r\n"))), 400, "{bad:?}");
        }
    }

    #[test]
    fn raw_content_length_is_exposed() {
        let req = with_headers("Content-Length: 05\r\n");
        let mut storage = [EMPTY_FIELD; 4];
        let head = parse_head(&req, &mut storage, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(head.content_length, Some(&b"05"[..]));
    }

    #[test]
    fn body_limit_is_413() {
        let limits = Limits {
            body: 10,
            ..Limits::default()
        };
        let req = with_headers("Content-Length: 10\r\n");
        assert_eq!(
            parse_with(&req, &limits).unwrap().unwrap().0,
            Framing::Length(10)
        );
        let req = with_headers("Content-Length: 11\r\n");
        assert_eq!(parse_with(&req, &limits), Err(HttpError::PayloadTooLarge));
        // A malformed value is still a 400, not a 413.
        let req = with_headers("Content-Length: 99999999999999999999\r\n");
        assert_eq!(parse_with(&req, &limits).unwrap_err().status(), 400);
        // Chunked bodies are limited while decoding, not here.
        let req = with_headers("Transfer-Encoding: chunked\r\n");
        assert_eq!(
            parse_with(&req, &limits).unwrap().unwrap().0,
            Framing::Chunked
        );
    }

    /// RFC 9112 §6.1, §6.3 items 3-4, §7.
    #[test]
    fn transfer_encoding() {
        for good in [
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: CHUNKED",
            "Transfer-Encoding: Chunked",
            "Transfer-Encoding:  \t chunked \t ",
            "Transfer-Encoding:chunked",
            "Transfer-Encoding: , chunked ,",
            "Transfer-Encoding: \r\nTransfer-Encoding: chunked",
        ] {
            assert_eq!(
                ok(&with_headers(&format!("{good}\r\n"))).0,
                Framing::Chunked,
                "{good:?}"
            );
        }
        let cases: [(&str, u16); 16] = [
            // §6.3 item 4: chunked not final is a MUST 400 ...
            ("Transfer-Encoding: gzip", 400),
            // ... chunked final with an unknown coding before it is 501 (§6.1).
            ("Transfer-Encoding: gzip, chunked", 501),
            (
                "Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked",
                501,
            ),
            // identity was removed from the registry; here it is just unknown.
            ("Transfer-Encoding: identity", 400),
            ("Transfer-Encoding: chunked, identity", 400),
            ("Transfer-Encoding: chunked, gzip", 400),
            ("Transfer-Encoding: chunked, chunked", 400),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                400,
            ),
            ("Transfer-Encoding: chunked;q=1", 400),
            ("Transfer-Encoding:", 400),
            ("Transfer-Encoding: ,", 400),
            ("Transfer-Encoding: chunked\x0b", 400),
            ("Transfer-Encoding: chun ked", 400),
            ("Transfer-Encoding: \"chunked\"", 400),
            ("Transfer-Encoding : chunked", 400),
            ("Transfer-Encoding: chunked\r\n chunked", 400),
        ];
        for (te, want) in cases {
            assert_eq!(status(&with_headers(&format!("{te}\r\n"))), want, "{te:?}");
        }
    }

    /// RFC 9112 §6.1 and §11.2: the request smuggling shapes.
    #[test]
    fn smuggling_shapes_are_refused() {
        // CL.TE and TE.CL: both framings present, in either order.
        assert_eq!(
            status(&with_headers(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n"
            )),
            400
        );
        assert_eq!(
            status(&with_headers(
                "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n"
            )),
            400
        );
        // TE with an odd spelling a proxy might not recognise, plus CL.
        assert_eq!(
            status(&with_headers(
                "Content-Length: 6\r\nTransfer-Encoding:  chunked\r\n"
            )),
            400
        );
        assert_eq!(
            status(&with_headers(
                "Content-Length: 6\r\nTransfer-Encoding: xchunked\r\n"
            )),
            400
        );
        // TE in HTTP/1.0 is faulty framing, even without CL.
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        // A header name with trailing space must not be read as TE.
        assert_eq!(
            status(&with_headers(
                "Transfer-Encoding : chunked\r\nContent-Length: 3\r\n"
            )),
            400
        );
        // Bare LF could hide a TE header from a CRLF-only proxy.
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nX: y\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    /// RFC 9112 §9.3: persistence defaults and the Connection token list.
    #[test]
    fn keep_alive_rules() {
        assert!(ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").1);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").1);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n").1);
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nconnection: close\r\n\r\n").1);
        assert!(ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n").1);
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").1);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").1);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: te, keep-alive\r\n\r\n").1);
        assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").1);
    }

    /// RFC 9110 §10.1.1.
    #[test]
    fn expect_rules() {
        assert!(
            ok(&with_headers(
                "Expect: 100-continue\r\nContent-Length: 1\r\n"
            ))
            .2
        );
        assert!(ok(&with_headers("Expect: 100-Continue\r\n")).2);
        assert_eq!(
            err(&with_headers("Expect: 200-ok\r\n")),
            HttpError::ExpectationFailed
        );
        assert_eq!(
            err(&with_headers("Expect: 100-continue, x\r\n")),
            HttpError::ExpectationFailed
        );
        // HTTP/1.0: a 100-continue expectation MUST be ignored.
        assert!(!ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").2);
    }

    /// gunicorn's limits: 414 for the request line, 431 for fields.
    #[test]
    fn request_line_limit() {
        let limits = Limits {
            request_line: 20,
            ..Limits::default()
        };
        // "GET /" + pad + " HTTP/1.1" = exactly 20 bytes.
        let at = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(6));
        assert!(parse_with(at.as_bytes(), &limits).unwrap().is_some());
        let over = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(7));
        assert_eq!(
            parse_with(over.as_bytes(), &limits),
            Err(HttpError::UriTooLong)
        );
        // Incomplete: 22 bytes without a CRLF can no longer fit.
        let partial = format!("GET /{}", "a".repeat(17));
        assert_eq!(parse_with(&partial.as_bytes()[..21], &limits), Ok(None));
        assert_eq!(
            parse_with(partial.as_bytes(), &limits),
            Err(HttpError::UriTooLong)
        );
    }

    #[test]
    fn field_count_limit() {
        let limits = Limits {
            fields: 3,
            ..Limits::default()
        };
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(parse_with(req, &limits).unwrap().is_some());
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            parse_with(req, &limits),
            Err(HttpError::HeaderFieldsTooLarge)
        );
    }

    #[test]
    fn field_size_limit() {
        let limits = Limits {
            field_size: 10,
            ..Limits::default()
        };
        // "X-A: " + 5 bytes = exactly 10.
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 12345\r\n\r\n";
        assert!(parse_with(req, &limits).unwrap().is_some());
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 123456\r\n\r\n";
        assert_eq!(
            parse_with(req, &limits),
            Err(HttpError::HeaderFieldsTooLarge)
        );
        // An incomplete line already over the limit is refused right away.
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 12345\r";
        assert_eq!(parse_with(req, &limits), Ok(None));
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 123456\r";
        assert_eq!(
            parse_with(req, &limits),
            Err(HttpError::HeaderFieldsTooLarge)
        );
    }

    #[test]
    fn whole_head_limit() {
        let limits = Limits {
            request_line: 20,
            fields: 2,
            field_size: 10,
            body: 0,
        };
        assert_eq!(limits.max_head(), 20 + 2 * 12 + 4);
        // Short lines, but more bytes than the head may have, still incomplete.
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        while req.len() <= limits.max_head() {
            req.extend_from_slice(b"A: b\r\n");
        }
        let mut storage = vec![EMPTY_FIELD; 100];
        assert_eq!(
            parse_head(&req, &mut storage, &limits).map(|h| h.is_some()),
            Err(HttpError::HeaderFieldsTooLarge)
        );
        assert_eq!(Limits::default().max_head(), 4094 + 100 * 8192 + 4);
    }

    /// A small deterministic generator for the property tests below.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, choices: &[&'a [u8]]) -> &'a [u8] {
            choices[self.below(choices.len())]
        }

        /// `good` three times in four, else one of `bad`.
        fn often<'a>(&mut self, good: &'a [u8], bad: &[&'a [u8]]) -> &'a [u8] {
            if self.below(4) == 0 {
                self.pick(bad)
            } else {
                good
            }
        }
    }

    /// `CLASS` against the grammar's own definitions, for all 256 bytes.
    #[test]
    fn class_table_matches_definitions() {
        for b in 0..=u8::MAX {
            let alnum = b.is_ascii_alphanumeric();
            let tchar = alnum || b"!#$%&'*+-.^_`|~".contains(&b);
            let unreserved = alnum || matches!(b, b'-' | b'.' | b'_' | b'~');
            let sub_delim = b"!$&'()*+,;=".contains(&b);
            let uri = unreserved || sub_delim || b":@/?[]".contains(&b);
            assert_eq!(is_tchar(b), tchar, "tchar {b:#04x}");
            assert_eq!(
                has_class(b, REG_NAME),
                unreserved || sub_delim,
                "reg-name {b:#04x}"
            );
            assert_eq!(
                has_class(b, IP_LITERAL),
                unreserved || sub_delim || b == b':',
                "IP-literal {b:#04x}"
            );
            assert_eq!(has_class(b, URI), uri, "URI {b:#04x}");
            let value = b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b);
            assert_eq!(has_class(b, VALUE), value, "field value {b:#04x}");
        }
    }

    /// `is_field_name` against `eq_ignore_ascii_case`: every byte value at
    /// every position of every name it is used with, and other lengths.
    #[test]
    fn field_names_match_eq_ignore_ascii_case() {
        fn check<const N: usize>(lower: &[u8; N]) {
            let upper = lower.to_ascii_uppercase();
            assert!(is_field_name(lower, lower) && is_field_name(&upper, lower));
            assert!(!is_field_name(&lower[1..], lower));
            assert!(!is_field_name(&[lower.as_slice(), b"x"].concat(), lower));
            for i in 0..N {
                for b in 0..=u8::MAX {
                    let mut name = *lower;
                    name[i] = b;
                    assert_eq!(
                        is_field_name(&name, lower),
                        name.eq_ignore_ascii_case(lower),
                        "{:?}",
                        String::from_utf8_lossy(&name)
                    );
                }
            }
        }
        check(b"host");
        check(b"content-length");
        check(b"transfer-encoding");
        check(b"content-type");
        check(b"connection");
        check(b"expect");
    }

    /// `check_parsed_lines` finds what the scan finds, for header sections
    /// httparse accepts: line endings mixed, lines around the size limit.
    #[test]
    fn parsed_lines_match_the_scan() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let mut block = Vec::new();
            for _ in 0..rng.below(5) {
                block.extend_from_slice(rng.pick(&[b"Host", b"X-A", b"b", b"Content-Length"]));
                block.extend_from_slice(rng.pick(&[b":", b": ", b":\t "]));
                block.extend_from_slice(&b"v \t".repeat(rng.below(4)));
                block.extend_from_slice(rng.pick(&[b"", b" ", b"\t"]));
                block.extend_from_slice(rng.pick(&[b"\r\n", b"\r\n", b"\n"]));
            }
            block.extend_from_slice(rng.pick(&[b"\r\n", b"\r\n", b"\n"]));
            block.extend_from_slice(rng.pick(&[b"", b"GET", b"\r\n"]));
            let field_size = rng.below(20);
            let mut storage = [httparse::EMPTY_HEADER; 8];
            let Ok(httparse::Status::Complete((len, headers))) =
                httparse::parse_headers(&block, &mut storage)
            else {
                continue;
            };
            let block = &block[..len];
            assert_eq!(
                check_parsed_lines(block, headers, field_size),
                check_header_lines(block, field_size),
                "{:?} field_size {field_size}",
                String::from_utf8_lossy(block)
            );
        }
    }

    /// Whatever `common_request_line` accepts, the general path reads the
    /// same way; and it does accept the common shapes.
    #[test]
    fn common_request_line_agrees_with_the_general_path() {
        for line in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /a%2Fb?c=d&e[]=1 HTTP/1.0\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"GET http://a:1/b HTTP/2.0\r\n",
        ] {
            assert!(common_request_line(line).is_some(), "{line:?}");
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for _ in 0..50_000 {
            // method SP target SP version CRLF, each part sometimes a bad one.
            let mut rest = Vec::new();
            let method = rng.pick(&[b"GET", b"POST", b"M-1"]);
            rest.extend_from_slice(rng.often(method, &[b"G@T", b"", b"\r\nGET"]));
            rest.extend_from_slice(rng.often(b" ", &[b"  ", b"\t", b""]));
            for _ in 0..rng.below(4) {
                let part = rng.pick(&[b"/", b"/a", b"?q=1", b"%41", b":@", b"[]", b"*"]);
                let bad: &[&[u8]] = &[b"%4", b"%", b"%zz", b"#", b"\xc3\xa9", b"\x7f", b"\n"];
                rest.extend_from_slice(rng.often(part, bad));
            }
            rest.extend_from_slice(rng.often(b" ", &[b"  ", b""]));
            let version = rng.pick(&[b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]);
            rest.extend_from_slice(rng.often(version, &[b"HTTP/1", b"http/1.1", b"HTTP/1.x"]));
            rest.extend_from_slice(rng.often(b"\r\n", &[b"\n", b"\r", b"", b" \r\n"]));
            rest.extend_from_slice(rng.pick(&[b"", b"Host: a\r\n", b"\n"]));
            let Some((method, target, version, lf)) = common_request_line(&rest) else {
                continue;
            };
            accepted += 1;
            let first_lf = rest.iter().position(|&b| b == b'\n');
            assert_eq!(first_lf, Some(lf), "{:?}", String::from_utf8_lossy(&rest));
            assert_eq!(rest[lf - 1], b'\r');
            assert_eq!(
                parse_request_line(&rest[..lf - 1]),
                parse_version(version).map(|v| (method, target, v)),
                "{:?}",
                String::from_utf8_lossy(&rest)
            );
        }
        assert!(accepted > 2_000, "only {accepted} lines took the fast path");
    }

    /// Whatever `common_header_section` accepts, the general path
    /// (httparse and our checks on top) reads the same way, field by field;
    /// and it does accept the common shapes. Every byte value is tried in a
    /// name and in a value.
    #[test]
    fn common_header_section_agrees_with_the_general_path() {
        for block in [
            &b"\r\n"[..],
            b"Host: a\r\n\r\n",
            b"Host:a\r\nX-Y: 1 \t2\t \r\nE:\r\n\r\nbody",
        ] {
            let mut fast = [EMPTY_FIELD; 8];
            assert!(
                common_header_section(block, &mut fast, 100).is_some(),
                "{block:?}"
            );
        }
        let agree = |block: &[u8], fields: usize, field_size: usize| -> bool {
            let mut fast = vec![EMPTY_FIELD; fields];
            let Some((len, count)) = common_header_section(block, &mut fast, field_size) else {
                return false;
            };
            let limits = Limits {
                fields,
                field_size,
                ..Limits::default()
            };
            let mut general = vec![EMPTY_FIELD; fields];
            let shown = String::from_utf8_lossy(block);
            assert_eq!(
                header_section(block, &mut general, block.len(), &limits),
                Ok(Some((len, count))),
                "{shown:?} fields {fields} field_size {field_size}"
            );
            assert_eq!(fast[..count], general[..count], "{shown:?}");
            true
        };
        for b in 0..=u8::MAX {
            agree(&[b"X", &[b][..], b"Y: v\r\n\r\n"].concat(), 4, 100);
            agree(&[b"X: v", &[b][..], b"w\r\n\r\n"].concat(), 4, 100);
            agree(&[b"X: ", &[b][..], b"\r\n\r\n"].concat(), 4, 100);
        }
        let mut rng = Rng(0x5851_f42d_4c95_7f2d);
        let mut accepted = 0;
        for _ in 0..100_000 {
            let mut block = Vec::new();
            for _ in 0..rng.below(6) {
                let name = rng.pick(&[b"Host", b"X-A", b"b", b"Content-Length"]);
                let bad_names: &[&[u8]] = &[b"", b"X Y", b"\xc3\xa9", b" X", b"\tX", b"X\x00"];
                block.extend_from_slice(rng.often(name, bad_names));
                block.extend_from_slice(rng.often(b":", &[b" :", b"", b"::"]));
                block.extend_from_slice(rng.pick(&[b"", b" ", b"\t", b"  \t"]));
                for _ in 0..rng.below(4) {
                    let part = rng.pick(&[b"v", b"a b", b"\t", b" ", b"1,2", b"\"q\""]);
                    let bad: &[&[u8]] = &[b"\x7f", b"\xff", b"\x00", b"\r", b"\n", b"\x01"];
                    block.extend_from_slice(rng.often(part, bad));
                }
                block.extend_from_slice(rng.pick(&[b"", b" ", b"\t "]));
                block.extend_from_slice(rng.often(b"\r\n", &[b"\n", b"\r", b"", b"\r\n "]));
            }
            block.extend_from_slice(rng.often(b"\r\n", &[b"\n", b"", b"\r", b" \r\n"]));
            block.extend_from_slice(rng.pick(&[b"", b"GET", b"\r\n"]));
            if agree(&block, 1 + rng.below(6), rng.below(30)) {
                accepted += 1;
            }
        }
        assert!(
            accepted > 5_000,
            "only {accepted} sections took the fast path"
        );
    }

    /// `value_run_len` against the VALUE class byte by byte: every byte
    /// value at every offset of a word, behind runs of every length, and
    /// random bytes.
    #[test]
    fn value_run_len_matches_the_class() {
        let bytewise = |bytes: &[u8], class: u8| {
            bytes
                .iter()
                .position(|&b| !has_class(b, class))
                .unwrap_or(bytes.len())
        };
        let check = |bytes: &[u8]| {
            assert_eq!(value_run_len(bytes), bytewise(bytes, VALUE), "{bytes:?}");
        };
        for b in 0..=u8::MAX {
            for run in 0..20 {
                for after in [&b""[..], b"a", b"\r\n", b"\x00\x7f\xff"] {
                    check(&[&b"a\tb ~!".repeat(4)[..run], &[b][..], after].concat());
                }
            }
        }
        let mut rng = Rng(0x2127_599b_f432_5c37);
        for _ in 0..50_000 {
            let bytes: Vec<u8> = (0..rng.below(40))
                .map(|_| match rng.below(8) {
                    0 => rng.below(256) as u8,
                    1 => b'\t',
                    _ => b' ' + rng.below(95) as u8,
                })
                .collect();
            check(&bytes);
        }
    }
}
