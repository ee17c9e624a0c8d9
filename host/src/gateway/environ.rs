//! Building the environ from a parsed request head, and the host callbacks
//! that look variables up (`environ_get`) and enumerate them (`environ_each`).
//!
//! Nothing here copies the request: every string points into the
//! connection's receive buffer, except a percent-decoded PATH_INFO (only
//! when the path contains '%'), the peer address text and a client a
//! trusted proxy named (formatted into small fixed buffers) and values of
//! repeated headers joined on demand.
use std::cell::RefCell;
use std::ffi::c_void;
use std::io::Write as _;
use std::sync::Arc;

use abi::ffi::{
    nwsgi_environ, nwsgi_environ_each_cb, nwsgi_header, nwsgi_host_api, nwsgi_str, NWSGI_ABI_MAJOR,
    NWSGI_ABI_MINOR, NWSGI_OK,
};

use crate::gateway::ffi_guard;
use crate::gateway::request_id::RequestId;
use crate::http1::forwarded::Scheme;
use crate::http1::parse::RequestHead;
use crate::net::endpoint::Endpoint;
use crate::net::tls_stream::TlsPeer;

/// Where the connection came from and arrived, as text in fixed buffers
/// that outlive the environ. An app thread keeps one and re-formats only
/// the parts that differ from the last connection it served: the local
/// address never does, and clients often share an address (a proxy, a
/// NAT), so usually only the remote port is new. This runs once per turn
/// of a connection, which under keep-alive is once per request.
///
/// A unix socket has no addresses (as in gunicorn): its client's
/// REMOTE_ADDR and REMOTE_PORT are empty, and our end reads as
/// SERVER_NAME `localhost` (when the request has no Host, which names the
/// server otherwise, as for TCP) and SERVER_PORT `80`, the port of the
/// `http://` URL a client of the socket uses (PEP 3333 wants neither
/// empty; an app building URLs should prefer HTTP_HOST, as PEP 3333's
/// URL reconstruction does).
pub struct PeerText {
    /// The endpoints the text below is for (see `Key`); `Key::NONE`
    /// before the first `set`.
    peer: Key,
    local: Key,
    remote_addr: AddrText,
    remote_port: PortText,
    local_addr: AddrText,
    local_port: PortText,
}

impl Default for PeerText {
    fn default() -> PeerText {
        PeerText {
            peer: Key::NONE,
            local: Key::NONE,
            remote_addr: AddrText::default(),
            remote_port: PortText::default(),
            local_addr: AddrText::default(),
            local_port: PortText::default(),
        }
    }
}

/// An endpoint as two integers, cheap to compare (this runs per request
/// under keep-alive): the address's bits, and the port with the kind above
/// it (a v4 address and the v6 one with the same bits differ; a unix
/// socket has neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    addr: u128,
    port: u32,
}

impl Key {
    const V6: u32 = 1 << 16;
    const UNIX: u32 = 1 << 17;
    /// No endpoint: what a fresh `PeerText` is for (no kind has this bit).
    const NONE: Key = Key {
        addr: 0,
        port: 1 << 18,
    };

    #[inline(always)]
    fn of(e: Endpoint) -> Key {
        match e {
            Endpoint::Ip(std::net::SocketAddr::V4(a)) => Key {
                addr: u128::from(a.ip().to_bits()),
                port: u32::from(a.port()),
            },
            Endpoint::Ip(std::net::SocketAddr::V6(a)) => Key {
                addr: a.ip().to_bits(),
                port: u32::from(a.port()) | Key::V6,
            },
            Endpoint::Unix => Key {
                addr: 0,
                port: Key::UNIX,
            },
        }
    }

    /// The same address (and kind), whatever the port.
    #[inline(always)]
    fn same_addr(self, other: Key) -> bool {
        self.addr == other.addr && self.port >> 16 == other.port >> 16
    }
}

impl PeerText {
    /// Makes the text describe `peer` and `local`.
    ///
    /// Inline, with the rare parts out of line: under keep-alive an app
    /// thread serves a different connection nearly every turn, usually from
    /// the same address to the same socket, so what runs per request is two
    /// comparisons and the remote port's digits.
    ///
    /// `port` is the connection's own memo of its port's text, so that the
    /// digits are worked out for its first request only.
    #[inline(always)]
    pub fn set(&mut self, peer: Endpoint, local: Endpoint, port: &mut PortMemo) {
        let local_key = Key::of(local);
        if self.local != local_key {
            self.set_local(local, local_key);
        }
        let key = Key::of(peer);
        if self.peer == key {
            return;
        }
        match peer {
            Endpoint::Ip(a) if self.peer.same_addr(key) => self.remote_port = port.text(a.port()),
            _ => self.set_remote(peer, port),
        }
        self.peer = key;
    }

    /// `set`'s remote text for a new address (or a unix socket).
    #[inline(never)]
    fn set_remote(&mut self, peer: Endpoint, port: &mut PortMemo) {
        match peer {
            Endpoint::Ip(a) => {
                self.remote_addr.set(a.ip());
                self.remote_port = port.text(a.port());
            }
            Endpoint::Unix => {
                self.remote_addr = AddrText::default();
                self.remote_port = PortText::default();
            }
        }
    }

    /// `set`'s local text, for a socket other than the last one's.
    #[inline(never)]
    fn set_local(&mut self, local: Endpoint, key: Key) {
        match local {
            Endpoint::Ip(a) => {
                self.local_addr.set(a.ip());
                self.local_port.set(a.port());
            }
            Endpoint::Unix => {
                self.local_addr.set_text(UNIX_SERVER_NAME);
                self.local_port.set(UNIX_SERVER_PORT);
            }
        }
        self.local = key;
    }

    pub fn remote_addr(&self) -> &[u8] {
        self.remote_addr.as_bytes()
    }
}

/// SERVER_NAME and SERVER_PORT on a unix socket (see `PeerText`).
const UNIX_SERVER_NAME: &[u8] = b"localhost";
const UNIX_SERVER_PORT: u16 = 80;

/// The client a trusted proxy named for the current request (see
/// `http1::forwarded`), as text; written only for a request that has one,
/// and kept in place until the next.
#[derive(Default)]
pub struct ClientText {
    addr: AddrText,
    /// Empty when the proxy gave no port (X-Forwarded-For never does).
    port: PortText,
}

impl ClientText {
    pub fn set(&mut self, ip: std::net::IpAddr, port: Option<u16>) {
        self.addr.set(ip);
        match port {
            Some(port) => self.port.set(port),
            None => self.port = PortText::default(),
        }
    }
}

/// A connection's port as text, kept with the connection (eight bytes:
/// its box has room for them). Under keep-alive an app thread serves a
/// different connection nearly every turn, and writing the port's digits
/// was the most of what `PeerText::set` cost per request; with the memo
/// they are written once per connection. Keyed by the port itself, so a
/// connection whose peer changes (a PROXY header) gets the right text.
#[derive(Clone, Copy, Default)]
pub struct PortMemo {
    port: u16,
    /// Empty until the first `text`.
    text: PortText,
}

impl PortMemo {
    /// `port` as text.
    #[inline(always)]
    fn text(&mut self, port: u16) -> PortText {
        if self.port != port || self.text.start == PortText::EMPTY {
            self.text.set(port);
            self.port = port;
        }
        self.text
    }
}

/// A port in decimal, written right-aligned so that no copy is needed.
/// (The formatting machinery of `fmt` costs more than the rest of building
/// an environ.)
#[derive(Clone, Copy)]
struct PortText {
    digits: [u8; 5],
    start: u8,
}

impl Default for PortText {
    /// Empty until set.
    fn default() -> PortText {
        PortText {
            digits: [0; 5],
            start: PortText::EMPTY,
        }
    }
}

impl PortText {
    /// `start` of an empty text (a port has at least one digit).
    const EMPTY: u8 = 5;

    #[inline(always)]
    fn set(&mut self, port: u16) {
        // Two digits a step: a port has up to five.
        const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
            2021222324252627282930313233343536373839\
            4041424344454647484950515253545556575859\
            6061626364656667686970717273747576777879\
            8081828384858687888990919293949596979899";
        let mut i = self.digits.len();
        let mut n = usize::from(port);
        while n >= 100 {
            let pair = n % 100 * 2;
            n /= 100;
            i -= 2;
            self.digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
        if n >= 10 {
            i -= 2;
            self.digits[i..i + 2].copy_from_slice(&PAIRS[n * 2..n * 2 + 2]);
        } else {
            i -= 1;
            self.digits[i] = b'0' + n as u8;
        }
        self.start = i as u8;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[usize::from(self.start)..]
    }
}

/// An IP address as text; 45 characters hold the longest IPv6 form.
struct AddrText {
    bytes: [u8; 46],
    len: u8,
}

impl Default for AddrText {
    fn default() -> AddrText {
        AddrText {
            bytes: [0; 46],
            len: 0,
        }
    }
}

impl AddrText {
    fn set(&mut self, ip: std::net::IpAddr) {
        self.len = ip_into(&mut self.bytes, ip) as u8;
    }

    /// A name instead of an address (at most 46 bytes).
    fn set_text(&mut self, text: &[u8]) {
        self.bytes[..text.len()].copy_from_slice(text);
        self.len = text.len() as u8;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// An address as text: dotted quad by hand for IPv4 (the common case);
/// `fmt` for IPv6, whose compressed form is not worth re-deriving.
fn ip_into(buf: &mut [u8; 46], ip: std::net::IpAddr) -> usize {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            len
        }
        std::net::IpAddr::V6(_) => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // An IPv6 address is at most 45 characters: it always fits.
            let _ = write!(cursor, "{ip}");
            cursor.position() as usize
        }
    }
}

/// The environ handed to the plugin, followed by what the host needs to
/// answer `environ_get`/`environ_each` for it. `raw` must stay the first
/// field: the callbacks receive `&raw` and cast back to `HostEnviron`.
///
/// Every string in `raw`, and its header list, points into memory the
/// runtime owns and keeps in place for the request: the connection's
/// receive buffer, the header array, the decoded path and the peer text.
/// One environ serves request after request (`fill` starts each).
#[repr(C)]
pub struct HostEnviron {
    pub raw: nwsgi_environ,
    /// Values of repeated headers joined for `environ_get`; each box is
    /// pushed once and never moved, so handed-out pointers stay valid until
    /// the request ends (the next `fill`).
    joined: RefCell<Vec<Box<[u8]>>>,
    /// See `EnvironParts::underscores`.
    underscores: bool,
    /// The request id (`REQUEST_ID`; `HTTP_X_REQUEST_ID` reads it too).
    rid: RequestId,
    /// The TLS side of the connection (`set_tls`), for HTTPS-only
    /// variables; None for plain HTTP.
    tls: Option<Arc<TlsPeer>>,
    /// The index of the app (mount) serving the request: 0 unless
    /// `set_mount` routed it elsewhere.
    app: usize,
}

/// What becomes of a request header whose name holds `_` (gunicorn's
/// `--header-map`). Mapped to CGI names, `X_Forwarded_For` and
/// `X-Forwarded-For` are the same HTTP_X_FORWARDED_FOR: a client could
/// pass one for the other past a proxy that sets only the `-` one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMap {
    /// Left out of the request the app sees, raw list included (default).
    Drop,
    /// The request is answered 400.
    Refuse,
    /// Kept, and mapped to HTTP_* like a `-` name (a twin's values join).
    Dangerous,
}

pub struct EnvironParts<'a> {
    /// The host API table the environ carries.
    pub api: &'static nwsgi_host_api,
    pub headers: &'a [nwsgi_header],
    pub path_info: &'a [u8],
    pub peer: &'a PeerText,
    pub multithread: bool,
    pub multiprocess: bool,
    /// Underscore names in `headers` get HTTP_* variables
    /// (`HeaderMap::Dangerous`).
    pub underscores: bool,
}

impl HostEnviron {
    /// An environ describing no request yet.
    pub fn new(api: &'static nwsgi_host_api) -> HostEnviron {
        let e = nwsgi_str::EMPTY;
        HostEnviron {
            raw: nwsgi_environ {
                struct_size: std::mem::size_of::<nwsgi_environ>() as u32,
                abi_major: NWSGI_ABI_MAJOR,
                abi_minor: NWSGI_ABI_MINOR,
                request_method: e,
                script_name: e,
                path_info: e,
                query_string: e,
                content_type: e,
                content_length: e,
                server_name: e,
                server_port: e,
                server_protocol: e,
                remote_addr: e,
                remote_port: e,
                url_scheme: e,
                request_uri: e,
                headers: std::ptr::null(),
                n_headers: 0,
                multithread: 0,
                multiprocess: 0,
                run_once: 0,
                has_body: 0,
                api,
                raw_path_info: e,
            },
            joined: RefCell::new(Vec::new()),
            underscores: false,
            rid: RequestId::default(),
            tls: None,
            app: 0,
        }
    }

    /// Describes a new request.
    ///
    /// # Safety
    /// Every byte `head` and `parts` point to must stay in place and
    /// unchanged until the next `fill` (the environ keeps pointers to them,
    /// and so may the app, until its request ends).
    pub unsafe fn fill(&mut self, head: &RequestHead<'_, '_>, parts: EnvironParts<'_>) {
        let server_name = head
            .host_name
            .filter(|h| !h.is_empty())
            .unwrap_or(parts.peer.local_addr.as_bytes());
        let s = nwsgi_str::from_bytes;
        let r = &mut self.raw;
        r.request_method = s(head.method);
        r.path_info = s(parts.path_info);
        r.query_string = s(head.query);
        r.content_type = s(head.content_type.unwrap_or_default());
        r.content_length = s(head.content_length.unwrap_or_default());
        r.server_name = s(server_name);
        r.server_port = s(parts.peer.local_port.as_bytes());
        r.server_protocol = s(head.version.as_str().as_bytes());
        r.remote_addr = s(parts.peer.remote_addr());
        r.remote_port = s(parts.peer.remote_port.as_bytes());
        r.url_scheme = s(Scheme::Http.as_bytes());
        r.request_uri = s(head.target);
        r.raw_path_info = s(head.path);
        r.headers = parts.headers.as_ptr();
        r.n_headers = parts.headers.len();
        r.multithread = parts.multithread as u8;
        r.multiprocess = parts.multiprocess as u8;
        r.has_body = !matches!(head.framing, crate::http1::parse::Framing::Empty) as u8;
        r.api = parts.api;
        self.underscores = parts.underscores;
        self.rid.reset();
        if self.tls.is_some() {
            self.tls = None;
        }
        let joined = self.joined.get_mut();
        if !joined.is_empty() {
            joined.clear();
        }
    }

    /// After `fill`, for a server with mounts: the request goes to app
    /// `app`, with this SCRIPT_NAME and PATH_INFO, and RAW_PATH_INFO split
    /// to match (a lone app at "/" never calls this: SCRIPT_NAME stays ""
    /// and PATH_INFO the whole path).
    ///
    /// # Safety
    /// As for `fill`: both stay in place and unchanged until the next
    /// `fill` (or `set_mount`).
    pub unsafe fn set_mount(&mut self, app: usize, script_name: &[u8], path_info: &[u8]) {
        self.app = app;
        self.raw.script_name = nwsgi_str::from_bytes(script_name);
        self.raw.path_info = nwsgi_str::from_bytes(path_info);
        // RAW_PATH_INFO loses the raw bytes whose decoding is SCRIPT_NAME
        // (`/%61pi/a%2Fb` at `/api`: `/a%2Fb`). A tail of what `fill` set.
        let raw = self.text(self.raw.raw_path_info);
        let cut = crate::gateway::mount::raw_split(raw, script_name.len());
        self.raw.raw_path_info = nwsgi_str::from_bytes(&raw[cut..]);
    }

    /// The index of the app serving the request (see `set_mount`).
    pub fn app(&self) -> usize {
        self.app
    }

    /// After `fill`: the client is the one a trusted proxy named, not the
    /// peer (kept apart from `fill`, so a request without a proxy's word
    /// pays nothing for it).
    ///
    /// # Safety
    /// As for `fill`: `client` stays in place and unchanged until the next
    /// `fill`.
    pub unsafe fn set_client(&mut self, client: &ClientText) {
        self.raw.remote_addr = nwsgi_str::from_bytes(client.addr.as_bytes());
        self.raw.remote_port = nwsgi_str::from_bytes(client.port.as_bytes());
    }

    /// After `fill`: the peer is a trusted proxy, whose `X-Request-Id`
    /// (when valid) is the request's id.
    pub fn trust_request_id(&mut self) {
        self.rid.trust();
    }

    /// The request's id (see `request_id.rs`), decided at the first ask.
    pub fn request_id(&self) -> &[u8] {
        self.rid.get(|| self.header(b"x-request-id"))
    }

    /// After `fill`: the client's scheme, when it is not http.
    pub fn set_scheme(&mut self, scheme: Scheme) {
        self.raw.url_scheme = nwsgi_str::from_bytes(scheme.as_bytes());
    }

    /// After `fill`: the request came over TLS, whose side the SSL_*
    /// variables describe (Apache's and nginx's names).
    pub fn set_tls(&mut self, peer: Arc<TlsPeer>) {
        self.tls = Some(peer);
    }

    /// HTTPS (`on` when wsgi.url_scheme is https, by TLS or by a trusted
    /// proxy's word) and the SSL_* variables of a TLS connection: SSL_PROTOCOL
    /// and SSL_CLIENT_VERIFY always, SSL_CLIENT_S_DN and SSL_CLIENT_I_DN
    /// with a client certificate.
    fn secure(&self) -> [(&'static [u8], nwsgi_str, bool); 5] {
        let s = nwsgi_str::from_bytes;
        let https = self.text(self.raw.url_scheme) == Scheme::Https.as_bytes();
        let e = nwsgi_str::EMPTY;
        let Some(t) = &self.tls else {
            return [
                (b"HTTPS", s(b"on"), https),
                (b"SSL_PROTOCOL", e, false),
                (b"SSL_CLIENT_VERIFY", e, false),
                (b"SSL_CLIENT_S_DN", e, false),
                (b"SSL_CLIENT_I_DN", e, false),
            ];
        };
        let dn = |d: &Option<Box<str>>| d.as_deref().map_or(e, |d| s(d.as_bytes()));
        [
            (b"HTTPS", s(b"on"), https),
            (b"SSL_PROTOCOL", s(t.protocol.as_bytes()), true),
            (b"SSL_CLIENT_VERIFY", s(t.verify.as_bytes()), true),
            (b"SSL_CLIENT_S_DN", dn(&t.subject), t.subject.is_some()),
            (b"SSL_CLIENT_I_DN", dn(&t.issuer), t.issuer.is_some()),
        ]
    }

    /// The raw header list.
    fn headers(&self) -> &[nwsgi_header] {
        if self.raw.n_headers == 0 {
            return &[];
        }
        // SAFETY: `fill` set the pointer and length from a live slice that
        // stays in place until the next `fill` (its contract).
        unsafe { std::slice::from_raw_parts(self.raw.headers, self.raw.n_headers) }
    }

    /// A string of this request (one of `raw`'s).
    fn text(&self, s: nwsgi_str) -> &[u8] {
        // SAFETY: every string in `raw` was set by `fill` (or is empty) and
        // stays valid until the next `fill`.
        unsafe { s.as_bytes() }
    }

    pub fn method(&self) -> &[u8] {
        self.text(self.raw.request_method)
    }

    /// The request-target as received.
    pub fn target(&self) -> &[u8] {
        self.text(self.raw.request_uri)
    }

    pub fn remote_addr(&self) -> &[u8] {
        self.text(self.raw.remote_addr)
    }

    pub fn path_info(&self) -> &[u8] {
        self.text(self.raw.path_info)
    }

    /// SCRIPT_NAME: the mount prefix ("" for the root, and a lone app).
    pub fn script_name(&self) -> &[u8] {
        self.text(self.raw.script_name)
    }

    pub fn query_string(&self) -> &[u8] {
        self.text(self.raw.query_string)
    }

    /// The request's headers as (name, value), in order.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers()
            .iter()
            .map(|h| (self.text(h.name), self.text(h.value)))
    }

    /// A variable's value as `get` has it (for the access log's atoms).
    pub fn var(&self, key: &[u8]) -> Option<&[u8]> {
        self.get(key).map(|v| self.text(v))
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers()
            .iter()
            .find(|h| self.text(h.name).eq_ignore_ascii_case(name))
            .map(|h| self.text(h.value))
    }

    /// The fixed (non-HTTP_*) variables, in the order environ_each lists
    /// them. CONTENT_TYPE and CONTENT_LENGTH are absent when the request
    /// has no such header, as CGI has it; REMOTE_PORT when a proxy named
    /// the client without a port (rather than the proxy's own port, or an
    /// empty string an app would fail to read as a number).
    fn fixed(&self) -> [(&'static [u8], nwsgi_str, bool); 14] {
        let r = &self.raw;
        [
            (b"REQUEST_METHOD", r.request_method, true),
            (b"SCRIPT_NAME", r.script_name, true),
            (b"PATH_INFO", r.path_info, true),
            (b"QUERY_STRING", r.query_string, true),
            (
                b"CONTENT_TYPE",
                r.content_type,
                self.has_header(b"content-type"),
            ),
            (
                b"CONTENT_LENGTH",
                r.content_length,
                self.has_header(b"content-length"),
            ),
            (b"SERVER_NAME", r.server_name, true),
            (b"SERVER_PORT", r.server_port, true),
            (b"SERVER_PROTOCOL", r.server_protocol, true),
            (b"REMOTE_ADDR", r.remote_addr, true),
            (b"REMOTE_PORT", r.remote_port, r.remote_port.len > 0),
            (b"REQUEST_URI", r.request_uri, true),
            (b"RAW_PATH_INFO", r.raw_path_info, true),
            (b"wsgi.url_scheme", r.url_scheme, true),
        ]
    }

    fn has_header(&self, lower: &[u8]) -> bool {
        self.header(lower).is_some()
    }

    /// The value of one variable; see `nwsgi_host_api.environ_get`.
    pub fn get(&self, key: &[u8]) -> Option<nwsgi_str> {
        if let Some(suffix) = key.strip_prefix(b"HTTP_") {
            if suffix == b"X_REQUEST_ID" {
                return Some(nwsgi_str::from_bytes(self.request_id()));
            }
            return self.http_var(suffix);
        }
        if key == b"REQUEST_ID" {
            return Some(nwsgi_str::from_bytes(self.request_id()));
        }
        if key.starts_with(b"SSL_") || key == b"HTTPS" {
            return self
                .secure()
                .into_iter()
                .find(|(k, _, present)| *present && *k == key)
                .map(|(_, v, _)| v);
        }
        self.fixed()
            .into_iter()
            .find(|(k, _, present)| *present && *k == key)
            .map(|(_, v, _)| v)
    }

    fn http_var(&self, suffix: &[u8]) -> Option<nwsgi_str> {
        let mut matches = self
            .headers()
            .iter()
            .filter(|h| cgi_name_matches(self.text(h.name), suffix, self.underscores));
        let first = matches.next()?;
        let Some(second) = matches.next() else {
            return Some(first.value);
        };
        let sep: &[u8] = if suffix == b"COOKIE" { b"; " } else { b", " };
        let mut joined = Vec::new();
        for (i, h) in [first, second].into_iter().chain(matches).enumerate() {
            if i > 0 {
                joined.extend_from_slice(sep);
            }
            joined.extend_from_slice(self.text(h.value));
        }
        let boxed = joined.into_boxed_slice();
        let out = nwsgi_str::from_bytes(&boxed);
        // Moving the Box into the Vec does not move its heap bytes.
        self.joined.borrow_mut().push(boxed);
        Some(out)
    }

    /// Calls `f` for every variable; stops at the first non-zero return.
    pub fn each(&self, mut f: impl FnMut(&[u8], nwsgi_str) -> i32) -> i32 {
        for (k, v, present) in self.fixed().into_iter().chain(self.secure()) {
            if present {
                let rc = f(k, v);
                if rc != 0 {
                    return rc;
                }
            }
        }
        // The effective id, whatever the client sent (its header, if any,
        // is left out below).
        let rid = nwsgi_str::from_bytes(self.request_id());
        for k in [&b"REQUEST_ID"[..], b"HTTP_X_REQUEST_ID"] {
            let rc = f(k, rid);
            if rc != 0 {
                return rc;
            }
        }
        let mut key = Vec::with_capacity(64);
        let headers = self.headers();
        for (i, h) in headers.iter().enumerate() {
            let name = self.text(h.name);
            if !exposed_as_http_var(name, self.underscores) {
                continue;
            }
            key.clear();
            key.extend_from_slice(b"HTTP_");
            key.extend(name.iter().map(|&c| match c {
                b'-' => b'_',
                c => c.to_ascii_uppercase(),
            }));
            // One entry per distinct variable: skip names seen earlier
            // (or, with underscores mapped, their twins).
            let seen = headers[..i]
                .iter()
                .any(|e| cgi_name_matches(self.text(e.name), &key[5..], self.underscores));
            if seen || &key[5..] == b"X_REQUEST_ID" {
                continue;
            }
            let Some(value) = self.http_var(&key[5..]) else {
                continue;
            };
            let rc = f(&key, value);
            if rc != 0 {
                return rc;
            }
        }
        NWSGI_OK
    }
}

/// CONTENT_TYPE/CONTENT_LENGTH have their own variables (CGI), and a name
/// with '_' would collide with a '-' twin once mapped (see `HeaderMap`):
/// it gets none unless `underscores` (such names are normally not in the
/// list at all; this keeps the environ safe whatever built the list).
fn exposed_as_http_var(name: &[u8], underscores: bool) -> bool {
    (underscores || !name.contains(&b'_'))
        && !name.eq_ignore_ascii_case(b"content-type")
        && !name.eq_ignore_ascii_case(b"content-length")
}

/// Does header `name` map to `HTTP_<suffix>`?
fn cgi_name_matches(name: &[u8], suffix: &[u8], underscores: bool) -> bool {
    name.len() == suffix.len()
        && exposed_as_http_var(name, underscores)
        && name.iter().zip(suffix).all(|(&n, &s)| match n {
            b'-' | b'_' => s == b'_',
            n => n.to_ascii_uppercase() == s,
        })
}

/// Percent-decodes `path` into `out` if it needs it; returns whether it
/// did. Invalid escapes are kept literally.
#[inline]
pub fn percent_decode(path: &[u8], out: &mut Vec<u8>) -> bool {
    // Paths nearly always are plain: checked inline, decoded out of line.
    if !path.contains(&b'%') {
        return false;
    }
    decode_into(path, out);
    true
}

#[inline(never)]
fn decode_into(path: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(h), Some(l)) = (hex(path[i + 1]), hex(path[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(path[i]);
        i += 1;
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `nwsgi_host_api.environ_get`.
///
/// # Safety
/// Called by plugins through the host API, with the header's contract:
/// `env` is the environ of the request running on this thread.
pub(crate) unsafe extern "C" fn environ_get(
    env: *const nwsgi_environ,
    key: nwsgi_str,
    value: *mut nwsgi_str,
) -> i32 {
    ffi_guard(0, || {
        if env.is_null() || value.is_null() {
            return 0;
        }
        // SAFETY: the only environs the host hands out are the `raw` field
        // (first, repr(C)) of a live HostEnviron; the app may call this only
        // while the request runs. `key` is borrowed for the call.
        let (host_env, key) = unsafe { (&*env.cast::<HostEnviron>(), key.try_as_bytes()) };
        let Some(key) = key else {
            tracing::error!(
                "app error: environ_get with a NULL key of non-zero length; answered 0"
            );
            return 0;
        };
        match host_env.get(key) {
            Some(v) => {
                // SAFETY: checked non-null; the app provides the slot.
                unsafe { value.write(v) };
                1
            }
            None => 0,
        }
    })
}

/// `nwsgi_host_api.environ_each`.
///
/// # Safety
/// As for `environ_get`; `f` is called with strings borrowed for the call.
pub(crate) unsafe extern "C" fn environ_each(
    env: *const nwsgi_environ,
    f: nwsgi_environ_each_cb,
    user: *mut c_void,
) -> i32 {
    ffi_guard(abi::ffi::NWSGI_ERROR, || {
        let Some(func) = f.func else {
            tracing::error!("app error: environ_each with a NULL callback; refused");
            return abi::ffi::NWSGI_E_INVALID;
        };
        if env.is_null() {
            return abi::ffi::NWSGI_E_INVALID;
        }
        // SAFETY: as in environ_get.
        let host_env = unsafe { &*env.cast::<HostEnviron>() };
        host_env.each(|k, v| {
            // SAFETY: calling the app's callback with strings borrowed for
            // the duration of the call, as the header promises.
            unsafe { func(user, nwsgi_str::from_bytes(k), v) }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn peer_text_matches_std_formatting() {
        for (peer, local) in [
            ("127.0.0.1:53211", "10.0.0.254:8000"),
            ("0.0.0.0:0", "255.255.255.255:65535"),
            ("[::1]:9", "[2001:db8::1]:443"),
        ] {
            let (peer, local): (SocketAddr, SocketAddr) =
                (peer.parse().unwrap(), local.parse().unwrap());
            let mut t = PeerText::default();
            t.set(peer.into(), local.into(), &mut PortMemo::default());
            check(&t, peer, local);
        }
    }

    #[test]
    fn ipv4_text_for_every_octet() {
        for o in 0..=255u8 {
            let ip = std::net::IpAddr::from([o, 255 - o, o / 2, o % 10]);
            let mut t = AddrText::default();
            t.set(ip);
            assert_eq!(t.as_bytes(), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn client_text_has_a_port_only_when_given_one() {
        let mut c = ClientText::default();
        c.set("2001:db8::7".parse().unwrap(), Some(4711));
        assert_eq!(
            (c.addr.as_bytes(), c.port.as_bytes()),
            (&b"2001:db8::7"[..], &b"4711"[..])
        );
        c.set("203.0.113.7".parse().unwrap(), None);
        assert_eq!(
            (c.addr.as_bytes(), c.port.as_bytes()),
            (&b"203.0.113.7"[..], &b""[..])
        );
    }

    /// A kept PeerText re-formatted for each connection in turn reads as
    /// a fresh one, whichever parts changed.
    #[test]
    fn peer_text_reused_across_connections() {
        let addrs = [
            "127.0.0.1:53211",
            "127.0.0.1:53212",
            "10.1.2.3:53212",
            "[::1]:53212",
            "[::1]:9",
            "127.0.0.1:9",
            "127.0.0.1:0",
            "127.0.0.1:65535",
        ];
        let mut t = PeerText::default();
        // One connection's memo through every change of peer (as a PROXY
        // header makes), and fresh ones (a new connection each time).
        let mut kept = PortMemo::default();
        for peer in addrs {
            for local in addrs {
                let (peer, local): (SocketAddr, SocketAddr) =
                    (peer.parse().unwrap(), local.parse().unwrap());
                t.set(peer.into(), local.into(), &mut kept);
                check(&t, peer, local);
                t.set(peer.into(), local.into(), &mut PortMemo::default());
                check(&t, peer, local);
            }
        }
    }

    /// A unix socket between TCP connections: no address, a name and port
    /// for the server, and the TCP text back afterwards.
    #[test]
    fn peer_text_of_a_unix_socket() {
        let tcp: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut t = PeerText::default();
        let mut memo = PortMemo::default();
        t.set(tcp.into(), tcp.into(), &mut memo);
        t.set(Endpoint::Unix, Endpoint::Unix, &mut PortMemo::default());
        assert_eq!(t.remote_addr(), b"");
        assert_eq!(t.remote_port.as_bytes(), b"");
        assert_eq!(t.local_addr.as_bytes(), b"localhost");
        assert_eq!(t.local_port.as_bytes(), b"80");
        t.set(tcp.into(), tcp.into(), &mut memo);
        check(&t, tcp, tcp);
    }

    fn check(t: &PeerText, peer: SocketAddr, local: SocketAddr) {
        assert_eq!(t.remote_addr(), peer.ip().to_string().as_bytes());
        assert_eq!(t.remote_port.as_bytes(), peer.port().to_string().as_bytes());
        assert_eq!(t.local_addr.as_bytes(), local.ip().to_string().as_bytes());
        assert_eq!(t.local_port.as_bytes(), local.port().to_string().as_bytes());
    }

    /// Every port, written two digits at a time, reads as std writes it.
    #[test]
    fn every_port_is_formatted_as_std_does() {
        let mut t = PortText::default();
        for port in 0..=u16::MAX {
            t.set(port);
            assert_eq!(t.as_bytes(), port.to_string().as_bytes(), "{port}");
        }
    }

    #[test]
    fn decodes_percent_escapes_and_keeps_invalid_ones() {
        let mut out = Vec::new();
        assert!(!percent_decode(b"/plain", &mut out));
        assert!(percent_decode(b"/a%20b%2Fc%zz%4", &mut out));
        assert_eq!(out, b"/a b/c%zz%4");
        assert!(percent_decode(b"%41", &mut out));
        assert_eq!(out, b"A");
    }

    #[test]
    fn cgi_names() {
        assert!(cgi_name_matches(
            b"X-Custom-Header",
            b"X_CUSTOM_HEADER",
            false
        ));
        assert!(!cgi_name_matches(b"X_Custom", b"X_CUSTOM", false));
        assert!(!cgi_name_matches(b"Content-Type", b"CONTENT_TYPE", false));
        // --header-map dangerous: an underscore name maps like its twin.
        assert!(cgi_name_matches(b"X_Custom", b"X_CUSTOM", true));
        assert!(cgi_name_matches(b"X-Custom", b"X_CUSTOM", true));
    }
}
