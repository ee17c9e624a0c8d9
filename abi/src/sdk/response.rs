//! PEP 3333's `start_response` and its `write` callable.

use std::io;

use http::{HeaderMap, StatusCode};

use super::error::AbiError;
use super::host::{RawRequest, INLINE_HEADERS};
use crate::ffi::{nwsgi_header, nwsgi_response_head, nwsgi_str};

/// `start_response` for one request, and the `write()` callable it returns
/// in PEP 3333.
///
/// Status and headers are copied by the host before `start` returns; they go
/// out with the first non-empty chunk or write, or when the response ends.
/// The host validates them: a malformed status or header, or a hop-by-hop
/// header (Connection, Transfer-Encoding, ...), gives [`AbiError::Invalid`]
/// and the response becomes a 500.
pub struct StartResponse<'r> {
    raw: RawRequest<'r>,
    started: bool,
}

impl<'r> StartResponse<'r> {
    pub(crate) fn new(raw: RawRequest<'r>) -> Self {
        StartResponse {
            raw,
            started: false,
        }
    }

    /// Set the status (`"200 OK"`) and headers. A second call returns
    /// [`AbiError::State`]; use [`start_with_exc_info`](Self::start_with_exc_info)
    /// to replace them.
    pub fn start(&mut self, status: &str, headers: &[(&str, &str)]) -> Result<(), AbiError> {
        let result = AbiError::check(self.raw.start_response(status.as_bytes(), headers, None));
        self.started |= result.is_ok();
        result
    }

    /// Begin a response with an [`http::StatusCode`]; the reason phrase is
    /// the code's canonical one (empty for a code without one). Add headers
    /// to the returned [`HeadBuilder`], then [`start`](HeadBuilder::start):
    ///
    /// ```
    /// use abi::http::StatusCode;
    /// use abi::{AbiError, StartResponse};
    ///
    /// fn created(start_response: &mut StartResponse<'_>, id: u64) -> Result<(), AbiError> {
    ///     let location = format!("/items/{id}");
    ///     start_response
    ///         .status(StatusCode::CREATED) // "201 Created"
    ///         .header("content-type", "application/json")
    ///         .header("location", &location)
    ///         .start()
    /// }
    /// ```
    ///
    /// Up to 16 headers are gathered on the stack (more take one
    /// allocation).
    pub fn status(&mut self, status: StatusCode) -> HeadBuilder<'_, 'r, 'static> {
        HeadBuilder {
            start: self,
            status,
            headers: Pairs::new(),
        }
    }

    /// [`start`](Self::start) with an [`http::StatusCode`] and an
    /// [`http::HeaderMap`] (values need not be UTF-8).
    pub fn start_with(&mut self, status: StatusCode, headers: &HeaderMap) -> Result<(), AbiError> {
        self.status(status).headers(headers).start()
    }

    /// Start (or, if already started, replace with exc_info `message`) the
    /// head of `response`: how an error the app rendered is answered.
    pub(crate) fn start_parts(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
        message: &str,
    ) -> Result<(), AbiError> {
        let head = self.status(status).headers(headers);
        if head.start.started {
            head.start_with_exc_info(message)
        } else {
            head.start()
        }
    }

    /// [`start`](Self::start) with a head declared once in a `static`
    /// (see [`Head`]): the cheap way to answer many requests alike.
    pub fn start_static(&mut self, head: &'static Head) -> Result<(), AbiError> {
        let result = AbiError::check(self.raw.start_response_static(&head.raw, None));
        self.started |= result.is_ok();
        result
    }

    /// `start_response` with `exc_info`: replace the pending status and
    /// headers because of an error described by `message` (logged by the
    /// host). If the headers were already sent this returns
    /// [`AbiError::HeadersSent`] and the host aborts the connection: clean
    /// up and return (an `Err` from `call` is fine).
    pub fn start_with_exc_info(
        &mut self,
        status: &str,
        headers: &[(&str, &str)],
        message: &str,
    ) -> Result<(), AbiError> {
        let result = AbiError::check(self.raw.start_response(
            status.as_bytes(),
            headers,
            Some(message),
        ));
        self.started |= result.is_ok();
        result
    }

    /// PEP 3333 `write()`: send `data` now (blocks this thread until it is
    /// handed to the socket). Only valid after `start`
    /// ([`AbiError::State`] otherwise); [`AbiError::Disconnected`] means
    /// stop producing output.
    pub fn write(&mut self, data: &[u8]) -> Result<(), AbiError> {
        AbiError::check(self.raw.write(data))
    }

    /// An `io::Write` adaptor over [`write`](Self::write) (e.g. for
    /// `write!`). Each `write` call is one host write: wrap it in a
    /// `BufWriter` to batch small pieces.
    pub fn writer(&mut self) -> Writer<'_, 'r> {
        Writer { inner: self }
    }

    /// Whether a `start` (or `start_with_exc_info`) call succeeded.
    pub fn is_started(&self) -> bool {
        self.started
    }
}

/// A response head being built: [`StartResponse::status`], then
/// [`header`](Self::header)s, then [`start`](Self::start). Names and values
/// are borrowed (`'h`) until then, not copied.
#[must_use = "nothing is sent until `start` is called"]
pub struct HeadBuilder<'s, 'r, 'h> {
    start: &'s mut StartResponse<'r>,
    status: StatusCode,
    headers: Pairs<'h>,
}

impl<'s, 'r, 'h> HeadBuilder<'s, 'r, 'h> {
    /// Add a header (`&str`, `String`, `HeaderName`/`HeaderValue`, bytes).
    /// Names and values are checked by the host when the head starts (a bad
    /// one gives [`AbiError::Invalid`]).
    pub fn header<'n, N, V>(self, name: &'n N, value: &'n V) -> HeadBuilder<'s, 'r, 'n>
    where
        'h: 'n,
        N: AsRef<[u8]> + ?Sized,
        V: AsRef<[u8]> + ?Sized,
    {
        let mut next = self.shorten();
        next.headers.push(name.as_ref(), value.as_ref());
        next
    }

    /// Add every header of `map`, in its order.
    pub fn headers<'n>(self, map: &'n HeaderMap) -> HeadBuilder<'s, 'r, 'n>
    where
        'h: 'n,
    {
        let mut next = self.shorten();
        for (name, value) in map {
            next.headers
                .push(name.as_str().as_bytes(), value.as_bytes());
        }
        next
    }

    /// [`StartResponse::start`] with this head.
    pub fn start(self) -> Result<(), AbiError> {
        let line = StatusLine::new(self.status);
        let rc = self
            .start
            .raw
            .start_response(line.as_bytes(), self.headers.as_slice(), None);
        let result = AbiError::check(rc);
        self.start.started |= result.is_ok();
        result
    }

    /// [`StartResponse::start_with_exc_info`] with this head.
    pub fn start_with_exc_info(self, message: &str) -> Result<(), AbiError> {
        let line = StatusLine::new(self.status);
        let rc =
            self.start
                .raw
                .start_response(line.as_bytes(), self.headers.as_slice(), Some(message));
        let result = AbiError::check(rc);
        self.start.started |= result.is_ok();
        result
    }

    /// The same builder, its borrows narrowed to `'n`.
    fn shorten<'n>(self) -> HeadBuilder<'s, 'r, 'n>
    where
        'h: 'n,
    {
        HeadBuilder {
            start: self.start,
            status: self.status,
            headers: self.headers.shorten(),
        }
    }
}

/// `NNN Reason` for a status code, on the stack (the longest canonical
/// reason is 31 bytes).
pub(crate) struct StatusLine {
    buf: [u8; 48],
    len: usize,
}

impl StatusLine {
    pub(crate) fn new(status: StatusCode) -> StatusLine {
        let reason = status.canonical_reason().unwrap_or("").as_bytes();
        // A reason too long for the buffer (none is) is left out: the
        // status line stays valid with an empty one.
        let reason = if reason.len() <= 44 { reason } else { b"" };
        let mut buf = [0u8; 48];
        buf[..3].copy_from_slice(status.as_str().as_bytes());
        buf[3] = b' ';
        buf[4..4 + reason.len()].copy_from_slice(reason);
        StatusLine {
            buf,
            len: 4 + reason.len(),
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Borrowed header pairs: on the stack up to [`INLINE_HEADERS`], then in a
/// `Vec`.
struct Pairs<'h> {
    inline: [(&'h [u8], &'h [u8]); INLINE_HEADERS],
    len: usize,
    spilled: Vec<(&'h [u8], &'h [u8])>,
}

impl<'h> Pairs<'h> {
    fn new() -> Pairs<'h> {
        Pairs {
            inline: [(&[], &[]); INLINE_HEADERS],
            len: 0,
            spilled: Vec::new(),
        }
    }

    fn push(&mut self, name: &'h [u8], value: &'h [u8]) {
        if self.spilled.is_empty() && self.len < INLINE_HEADERS {
            self.inline[self.len] = (name, value);
            self.len += 1;
            return;
        }
        if self.spilled.is_empty() {
            self.spilled.extend_from_slice(&self.inline[..self.len]);
        }
        self.spilled.push((name, value));
    }

    fn as_slice(&self) -> &[(&'h [u8], &'h [u8])] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }

    /// Narrow the borrows (`'h` outlives `'n`): the arrays are covariant.
    fn shorten<'n>(self) -> Pairs<'n>
    where
        'h: 'n,
    {
        self
    }
}

/// `io::Write` over [`StartResponse::write`].
pub struct Writer<'a, 'r> {
    inner: &'a mut StartResponse<'r>,
}

impl io::Write for Writer<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A response head declared once, in a `static`, for
/// [`StartResponse::start_static`]:
///
/// ```
/// use abi::{Head, Header};
/// static OK: Head = Head::new("200 OK", &[Header::new("Content-Type", "text/plain")]);
/// ```
///
/// The host validates and encodes a static head the first time a thread
/// sees it and afterwards knows it by its address (ABI 1.2
/// `start_response_static`), where [`StartResponse::start`] has it compare
/// every byte. Everything in it is `'static` and immutable, which is what
/// the ABI asks of such a head.
pub struct Head {
    raw: nwsgi_response_head,
}

impl Head {
    /// A head with `status` ("200 OK") and `headers`.
    pub const fn new(status: &'static str, headers: &'static [Header]) -> Head {
        Head {
            raw: nwsgi_response_head {
                status: nwsgi_str::from_bytes(status.as_bytes()),
                // `Header` is a transparent wrapper of `nwsgi_header`.
                headers: headers.as_ptr().cast::<nwsgi_header>(),
                n_headers: headers.len(),
            },
        }
    }
}

#[cfg(all(test, feature = "tower"))]
impl Head {
    /// How many headers the head has (the head cache's tests).
    pub(crate) fn header_count(&self) -> usize {
        self.raw.n_headers
    }
}

/// One header of a [`Head`].
#[repr(transparent)]
pub struct Header(nwsgi_header);

impl Header {
    pub const fn new(name: &'static str, value: &'static str) -> Header {
        Header(nwsgi_header {
            name: nwsgi_str::from_bytes(name.as_bytes()),
            value: nwsgi_str::from_bytes(value.as_bytes()),
        })
    }
}
