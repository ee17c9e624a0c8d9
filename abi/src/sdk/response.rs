//! PEP 3333's `start_response` and its `write` callable.

use std::io;

use super::error::AbiError;
use super::host::RawRequest;
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
        let result = AbiError::check(self.raw.start_response(status, headers, None));
        self.started |= result.is_ok();
        result
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
        let result = AbiError::check(self.raw.start_response(status, headers, Some(message)));
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
