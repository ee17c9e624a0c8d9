//! The request as the application sees it: PEP 3333's `environ`, with
//! `wsgi.input` ([`Input`]) and `wsgi.errors` ([`ErrorStream`]).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;
use std::io;
use std::ops::ControlFlow;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use tracing::Level;

use super::error::AbiError;
use super::host::{Field, Headers, RawRequest};
use crate::ffi;

/// The environ of one request. Every byte string is borrowed from the host
/// until the request ends, i.e. for all of [`App::call`](crate::App::call);
/// copy what a body iterator needs to keep.
///
/// Bytes are returned as-is: HTTP does not promise UTF-8. The `http`
/// crate's types are there too: [`method`](Self::method), [`uri`](Self::uri)
/// and [`headers`](Self::headers), built when first asked for.
pub struct Environ<'r> {
    raw: RawRequest<'r>,
    /// [`uri`](Self::uri) and [`headers`](Self::headers), built at the first
    /// ask. Boxed: a request that never asks pays for one null pointer (set
    /// and checked), not for moving and dropping two large empty cells.
    parsed: OnceCell<Box<Parsed>>,
}

/// The `http` views of the request, each built when first asked for.
#[derive(Default)]
struct Parsed {
    uri: OnceCell<Uri>,
    headers: OnceCell<HeaderMap>,
}

impl<'r> Environ<'r> {
    pub(crate) fn new(raw: RawRequest<'r>) -> Self {
        Environ {
            raw,
            parsed: OnceCell::new(),
        }
    }

    /// `REQUEST_METHOD` as an [`http::Method`]. The standard methods cost
    /// no allocation. The host only passes methods that are HTTP tokens;
    /// anything else (from a host that does not check) reads as the
    /// extension method `NONSTANDARD`, so it matches no route.
    pub fn method(&self) -> Method {
        Method::from_bytes(self.method_bytes()).unwrap_or_else(|_| nonstandard_method())
    }

    /// `REQUEST_METHOD` as bytes, e.g. `GET`.
    pub fn method_bytes(&self) -> &'r [u8] {
        self.raw.field(Field::RequestMethod)
    }

    /// The request-target (`REQUEST_URI`) as an [`http::Uri`], usually
    /// origin-form (`/path?query`, not percent-decoded; see
    /// [`path_info`](Self::path_info) for the decoded path), relative to
    /// where the app is mounted: the part [`script_name`](Self::script_name)
    /// stands for is left out (an app mounted at `/api` asked for
    /// `/api/todos` sees `/todos`; asked for `/api`, `/`). Built at the
    /// first call and kept for the request. Bytes `http` refuses in a URI
    /// (a host may pass some, e.g. `{`) are percent-encoded first.
    pub fn uri(&self) -> &Uri {
        self.parsed()
            .uri
            .get_or_init(|| parse_uri(&mounted_target(self.request_uri(), self.script_name())))
    }

    /// The request headers as an [`http::HeaderMap`] (names lower-cased,
    /// repeated names kept in order). Built at the first call and kept for
    /// the request; [`raw_headers`](Self::raw_headers) reads the host's
    /// list without copying. A field `http` refuses (the host's parser
    /// lets none through) is left out.
    pub fn headers(&self) -> &HeaderMap {
        self.parsed()
            .headers
            .get_or_init(|| header_map(self.raw_headers()))
    }

    fn parsed(&self) -> &Parsed {
        self.parsed.get_or_init(Box::default)
    }

    /// `SCRIPT_NAME`: empty when mounted at the root.
    pub fn script_name(&self) -> &'r [u8] {
        self.raw.field(Field::ScriptName)
    }

    /// `PATH_INFO`: the percent-decoded path, e.g. `/a b`.
    pub fn path_info(&self) -> &'r [u8] {
        self.raw.field(Field::PathInfo)
    }

    /// `RAW_PATH_INFO`: [`path_info`](Self::path_info) as the client sent
    /// it, not percent-decoded (`/a%20b`; `/files/a%2Fb`, where PATH_INFO
    /// cannot tell that `%2F` from a `/`), without SCRIPT_NAME's part and
    /// the query. From a host older than ABI 1.3 (which has no such field
    /// and mounts apps only at the root) it is the path of
    /// [`request_uri`](Self::request_uri).
    pub fn raw_path_info(&self) -> &'r [u8] {
        match self.raw.raw_path_info() {
            Some(path) => path,
            None => target_path(self.request_uri()),
        }
    }

    /// `QUERY_STRING`: raw, without `?`; empty if none.
    pub fn query_string(&self) -> &'r [u8] {
        self.raw.field(Field::QueryString)
    }

    /// `CONTENT_TYPE`; empty if absent.
    pub fn content_type(&self) -> &'r [u8] {
        self.raw.field(Field::ContentType)
    }

    /// `CONTENT_LENGTH`; empty if absent (also for chunked bodies).
    pub fn content_length(&self) -> &'r [u8] {
        self.raw.field(Field::ContentLength)
    }

    /// `SERVER_NAME`: from Host (without port), else the bind address.
    pub fn server_name(&self) -> &'r [u8] {
        self.raw.field(Field::ServerName)
    }

    /// `SERVER_PORT`, e.g. `8000`.
    pub fn server_port(&self) -> &'r [u8] {
        self.raw.field(Field::ServerPort)
    }

    /// `SERVER_PROTOCOL`: `HTTP/1.1` or `HTTP/1.0`.
    pub fn protocol(&self) -> &'r [u8] {
        self.raw.field(Field::ServerProtocol)
    }

    /// `REMOTE_ADDR`, e.g. `127.0.0.1`: the client, or behind a proxy
    /// the host trusts, the client it names.
    pub fn remote_addr(&self) -> &'r [u8] {
        self.raw.field(Field::RemoteAddr)
    }

    /// `REMOTE_PORT`; empty when a trusted proxy named the client without
    /// a port.
    pub fn remote_port(&self) -> &'r [u8] {
        self.raw.field(Field::RemotePort)
    }

    /// `wsgi.url_scheme`: `http`, or `https` when a trusted proxy says the
    /// client used TLS.
    pub fn url_scheme(&self) -> &'r [u8] {
        self.raw.field(Field::UrlScheme)
    }

    /// The raw request-target as received (`REQUEST_URI`).
    pub fn request_uri(&self) -> &'r [u8] {
        self.raw.field(Field::RequestUri)
    }

    /// `wsgi.multithread`.
    pub fn multithread(&self) -> bool {
        self.raw.env().multithread != 0
    }

    /// `wsgi.multiprocess`.
    pub fn multiprocess(&self) -> bool {
        self.raw.env().multiprocess != 0
    }

    /// `wsgi.run_once`.
    pub fn run_once(&self) -> bool {
        self.raw.env().run_once != 0
    }

    /// A request body follows (Content-Length > 0 or chunked).
    pub fn has_body(&self) -> bool {
        self.raw.env().has_body != 0
    }

    /// The ABI minor version the host was built with (for fields added later).
    pub fn host_abi_minor(&self) -> u16 {
        self.raw.env().abi_minor
    }

    /// The raw header list, in order, repeated names kept apart, exactly
    /// as received (no copy).
    pub fn raw_headers(&self) -> Headers<'r> {
        self.raw.headers()
    }

    /// One environ variable by its CGI/WSGI name (`REQUEST_METHOD`,
    /// `HTTP_USER_AGENT`, ...), through the host's `environ_get`.
    /// The key is usually a `&str`; raw bytes are accepted too.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&'r [u8]> {
        self.raw.get(key.as_ref())
    }

    /// The request's id (`REQUEST_ID`): the `X-Request-Id` a trusted proxy
    /// sent, else one the host made (unique across its workers and
    /// restarts). Log lines about the request carry it. `None` from a host
    /// that does not make request ids.
    pub fn request_id(&self) -> Option<&'r [u8]> {
        self.get("REQUEST_ID")
    }

    /// Every environ variable (the fixed names, then one `HTTP_*` per distinct
    /// header name), in the host's order. The arguments are borrowed for the
    /// call of `f` only. A panic in `f` propagates out of `for_each`.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        self.try_for_each(|k, v| {
            f(k, v);
            ControlFlow::Continue(())
        });
    }

    /// Like [`for_each`](Self::for_each), stopping when `f` breaks. Returns
    /// whether the enumeration ran to the end.
    pub fn try_for_each(&self, mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>) -> bool {
        self.raw.for_each(&mut f) == ffi::NWSGI_OK
    }

    /// `wsgi.input`: the request body, de-chunked, ending exactly at its
    /// end. If the client sent `Expect: 100-continue`, the first read sends
    /// `100 Continue`.
    pub fn input(&mut self) -> Input<'_> {
        Input { raw: self.raw }
    }

    /// One line into the host's log for this request (`wsgi.errors`).
    pub fn log(&self, level: Level, message: &str) {
        self.raw
            .log(super::log::level_code(level), "wsgi.errors", message);
    }

    /// `wsgi.errors` as a stream: text is logged at ERROR level line by line
    /// (the rest when the stream is flushed or dropped).
    pub fn errors(&self) -> ErrorStream<'r> {
        ErrorStream {
            raw: self.raw,
            pending: Vec::new(),
        }
    }
}

impl fmt::Debug for Environ<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        f.debug_struct("Environ")
            .field("method", &s(self.method_bytes()))
            .field("request_uri", &s(self.request_uri()))
            .field("protocol", &s(self.protocol()))
            .field("headers", &self.raw_headers())
            .finish_non_exhaustive()
    }
}

/// What [`Environ::method`] reads a non-token method as.
#[cold]
fn nonstandard_method() -> Method {
    Method::from_bytes(b"NONSTANDARD").expect("a token")
}

/// The request-target as a [`Uri`]: as given when `http` accepts it, else
/// with every byte outside RFC 3986's characters percent-encoded; `/` if even
/// that fails (an empty target, which no host sends).
/// `target` (a request-target) without the leading part of its path that
/// percent-decodes to `script_name` (the app's mount): what an app that
/// routes on the URI must see. The path stays absolute (`/api` -> `/`).
/// Borrowed when there is nothing to take away.
pub(crate) fn mounted_target<'t>(target: &'t [u8], script_name: &[u8]) -> Cow<'t, [u8]> {
    if script_name.is_empty() {
        return Cow::Borrowed(target);
    }
    // Origin-form, or absolute-form (`http://host/path`): where the path
    // starts; no other form has a path to take from.
    let start = if target.starts_with(b"/") {
        0
    } else {
        let Some(after) = find(target, b"://").map(|i| i + 3) else {
            return Cow::Borrowed(target);
        };
        match target[after..].iter().position(|&b| b == b'/') {
            Some(i) => after + i,
            None => return Cow::Borrowed(target),
        }
    };
    let path = &target[start..];
    let path = &path[..path.iter().position(|&b| b == b'?').unwrap_or(path.len())];
    // The raw bytes that decode to SCRIPT_NAME's length (a valid `%XX` is
    // one byte, as the host decodes).
    let (mut i, mut n) = (0, 0);
    while n < script_name.len() && i < path.len() {
        let escape = path[i] == b'%'
            && i + 2 < path.len()
            && path[i + 1].is_ascii_hexdigit()
            && path[i + 2].is_ascii_hexdigit();
        i += if escape { 3 } else { 1 };
        n += 1;
    }
    let rest = &target[start + i..];
    let mut out = Vec::with_capacity(target.len() - i + 1);
    out.extend_from_slice(&target[..start]);
    if !rest.starts_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(rest);
    Cow::Owned(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(crate) fn parse_uri(target: &[u8]) -> Uri {
    if let Ok(uri) = Uri::try_from(target) {
        return uri;
    }
    let mut encoded = Vec::with_capacity(target.len() * 3);
    for &b in target {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%#[]".contains(&b) {
            encoded.push(b);
        } else {
            encoded.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    Uri::try_from(encoded).unwrap_or_else(|_| Uri::from_static("/"))
}

/// The path of a request-target (RFC 9112 section 3.2), as HTTP/1.1
/// hosts read it: origin-form up to its query, absolute-form's path after
/// the authority (`/` when empty), `*` for asterisk-form.
pub(crate) fn target_path(target: &[u8]) -> &[u8] {
    let end = target.iter().position(|&b| b == b'?' || b == b'#');
    let target = &target[..end.unwrap_or(target.len())];
    if target.first() == Some(&b'/') || target == b"*" {
        return target;
    }
    let Some(scheme_end) = target.windows(3).position(|w| w == b"://") else {
        return target;
    };
    let after = &target[scheme_end + 3..];
    match after.iter().position(|&b| b == b'/') {
        Some(slash) => &after[slash..],
        None => b"/",
    }
}

/// A [`HeaderMap`] of raw `(name, value)` pairs; pairs `http` refuses are
/// skipped.
pub(crate) fn header_map<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(pairs.size_hint().0);
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    map
}

/// `wsgi.input`: reads the request body through the host. Host errors come
/// back as `io::Error`s wrapping an [`AbiError`] (`BadBody` ->
/// `InvalidData`, `Disconnected` -> `ConnectionAborted`).
pub struct Input<'a> {
    raw: RawRequest<'a>,
}

impl io::Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.raw.read(buf);
        if n < 0 {
            let code = i32::try_from(n).unwrap_or(ffi::NWSGI_ERROR);
            return Err(AbiError::from_code(code).into());
        }
        match usize::try_from(n) {
            Ok(n) if n <= buf.len() => Ok(n),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("host read returned {n} for a {}-byte buffer", buf.len()),
            )),
        }
    }
}

/// `wsgi.errors`: a line-buffered writer into the host's log (ERROR level,
/// request attached). Implements both `io::Write` and `fmt::Write`.
pub struct ErrorStream<'r> {
    raw: RawRequest<'r>,
    pending: Vec<u8>,
}

impl ErrorStream<'_> {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        self.raw.log(ffi::NWSGI_LOG_ERROR, "wsgi.errors", &line);
    }

    fn flush_lines(&mut self) {
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let rest = self.pending.split_off(pos + 1);
            let line = std::mem::replace(&mut self.pending, rest);
            self.emit(&line[..pos]);
        }
    }
}

impl io::Write for ErrorStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        self.flush_lines();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
        Ok(())
    }
}

impl fmt::Write for ErrorStream<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        io::Write::write_all(self, s.as_bytes()).map_err(|_| fmt::Error)
    }
}

impl Drop for ErrorStream<'_> {
    fn drop(&mut self) {
        let _ = io::Write::flush(self);
    }
}

#[cfg(test)]
mod mount_tests {
    use super::mounted_target;

    #[test]
    fn the_mount_part_of_the_target_is_left_out() {
        let m = |t: &str, s: &str| {
            String::from_utf8(mounted_target(t.as_bytes(), s.as_bytes()).into_owned()).unwrap()
        };
        assert_eq!(m("/api/todos?x=1", "/api"), "/todos?x=1");
        assert_eq!(m("/api", "/api"), "/");
        assert_eq!(m("/api?q", "/api"), "/?q");
        assert_eq!(m("/%61pi/a%2Fb", "/api"), "/a%2Fb");
        assert_eq!(m("http://h/api/x", "/api"), "http://h/x");
        assert_eq!(m("/x", ""), "/x");
        assert_eq!(m("*", "/api"), "*");
    }
}

#[cfg(test)]
mod tests {
    use super::target_path;

    #[test]
    fn target_path_reads_each_target_form() {
        let cases: [(&str, &str); 8] = [
            ("/a%20b?x=1", "/a%20b"),
            ("/files/a%2Fb", "/files/a%2Fb"),
            ("/", "/"),
            ("/p?", "/p"),
            ("*", "*"),
            ("http://example.com/a%2Fb?q", "/a%2Fb"),
            ("http://example.com", "/"),
            ("http://example.com?q", "/"),
        ];
        for (target, path) in cases {
            assert_eq!(target_path(target.as_bytes()), path.as_bytes(), "{target}");
        }
    }
}
