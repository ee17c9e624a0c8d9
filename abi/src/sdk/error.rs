//! The two error types: [`AbiError`] (what a host function returned) and
//! [`Error`] (what an application returns from `call` or a body iterator).

use std::fmt;

use http::{HeaderValue, Response, StatusCode};

use crate::ffi;

/// A negative `nwsgi_status` returned by a host function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbiError {
    /// `NWSGI_E_INVALID`: a malformed status line or header, or a NULL
    /// argument. The response becomes a 500.
    Invalid,
    /// `NWSGI_E_STATE`: `start_response` called twice without exc_info, or
    /// `write` before `start_response`.
    State,
    /// `NWSGI_E_HEADERS_SENT`: exc_info given after the headers went out; the
    /// host aborts the connection. Clean up and return.
    HeadersSent,
    /// `NWSGI_E_DISCONNECTED`: the client went away; stop producing output.
    Disconnected,
    /// `NWSGI_E_BAD_BODY`: the request body was malformed or too slow.
    BadBody,
    /// `NWSGI_ERROR` or a code this SDK does not know (a newer host).
    Other(i32),
}

impl AbiError {
    /// `Ok(())` for `NWSGI_OK` (and, defensively, any non-negative code),
    /// else the matching error.
    pub fn check(code: i32) -> Result<(), AbiError> {
        if code >= 0 {
            Ok(())
        } else {
            Err(AbiError::from_code(code))
        }
    }

    /// The error for a negative status code.
    pub fn from_code(code: i32) -> AbiError {
        match code {
            ffi::NWSGI_E_INVALID => AbiError::Invalid,
            ffi::NWSGI_E_STATE => AbiError::State,
            ffi::NWSGI_E_HEADERS_SENT => AbiError::HeadersSent,
            ffi::NWSGI_E_DISCONNECTED => AbiError::Disconnected,
            ffi::NWSGI_E_BAD_BODY => AbiError::BadBody,
            other => AbiError::Other(other),
        }
    }

    /// The `nwsgi_status` value, e.g. `-3` for [`AbiError::State`].
    pub fn code(self) -> i32 {
        match self {
            AbiError::Invalid => ffi::NWSGI_E_INVALID,
            AbiError::State => ffi::NWSGI_E_STATE,
            AbiError::HeadersSent => ffi::NWSGI_E_HEADERS_SENT,
            AbiError::Disconnected => ffi::NWSGI_E_DISCONNECTED,
            AbiError::BadBody => ffi::NWSGI_E_BAD_BODY,
            AbiError::Other(code) => code,
        }
    }

    /// The closest `std::io::ErrorKind`, for the `Read`/`Write` adaptors.
    pub fn io_kind(self) -> std::io::ErrorKind {
        use std::io::ErrorKind;
        match self {
            AbiError::Invalid => ErrorKind::InvalidInput,
            AbiError::BadBody => ErrorKind::InvalidData,
            AbiError::Disconnected => ErrorKind::ConnectionAborted,
            AbiError::State | AbiError::HeadersSent | AbiError::Other(_) => ErrorKind::Other,
        }
    }
}

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            AbiError::Invalid => "invalid argument (NWSGI_E_INVALID)",
            AbiError::State => "call out of order (NWSGI_E_STATE)",
            AbiError::HeadersSent => "headers already sent (NWSGI_E_HEADERS_SENT)",
            AbiError::Disconnected => "client disconnected (NWSGI_E_DISCONNECTED)",
            AbiError::BadBody => "malformed request body (NWSGI_E_BAD_BODY)",
            AbiError::Other(code) => return write!(f, "host error {code}"),
        };
        f.write_str(what)
    }
}

impl std::error::Error for AbiError {}

impl From<AbiError> for std::io::Error {
    fn from(e: AbiError) -> Self {
        std::io::Error::new(e.io_kind(), e)
    }
}

/// An application failure: returned from [`App::call`](crate::App::call) or
/// yielded by a fallible body iterator.
///
/// By default the SDK logs it to the host and returns `NWSGI_ERROR`, so the
/// client gets the host's 500 if nothing was sent yet. An error can also say
/// how to answer: a status ([`Error::status`], [`with_status`](Self::with_status))
/// and a body ([`with_body`](Self::with_body), or `with_json` with the `json`
/// feature); the app's [`App::render_error`](crate::App::render_error) then
/// turns it into the response (see [`to_response`](Self::to_response)), and
/// can shape every error its own way.
///
/// `?` converts these errors: [`AbiError`], `std::io::Error`,
/// `std::fmt::Error`, the `std::str`/`std::string` UTF-8 errors, the
/// `std::num` parse errors, `Box<dyn std::error::Error + Send + Sync>`,
/// `String`/`&str`, `http`'s errors, `serde_json::Error` (feature `json`;
/// a 400 when it failed on the request's data, see its `From` impl) and
/// `anyhow::Error` (feature `anyhow`). Anything else that implements
/// `Display`: `.map_err(Error::new)?`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(Box<Inner>);

/// Boxed, so that `Result<Body, Error>` stays two words and the `Ok` path
/// of every request moves no more than that.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Inner {
    message: String,
    status: Option<StatusCode>,
    body: Option<ErrorBody>,
}

/// The body an [`Error`] asks to be answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ErrorBody {
    content_type: HeaderValue,
    bytes: Vec<u8>,
}

impl Error {
    /// An error with this message (logged; not shown to the client).
    pub fn new(message: impl fmt::Display) -> Error {
        Error(Box::new(Inner {
            message: message.to_string(),
            status: None,
            body: None,
        }))
    }

    /// An error answered with `status`, e.g.
    /// `Err(Error::status(StatusCode::NOT_FOUND))`. Its message is the
    /// status line (`404 Not Found`); its body, unless one is set, the
    /// reason phrase as text.
    pub fn status(status: StatusCode) -> Error {
        Error::new(format_args!(
            "{} {}",
            status.as_str(),
            status.canonical_reason().unwrap_or("")
        ))
        .with_status(status)
    }

    /// Answer with `status` instead of the host's 500.
    pub fn with_status(mut self, status: StatusCode) -> Error {
        self.0.status = Some(status);
        self
    }

    /// Replace the logged message.
    pub fn with_message(mut self, message: impl fmt::Display) -> Error {
        self.0.message = message.to_string();
        self
    }

    /// Answer with this body and `Content-Type` (status 500 unless one is
    /// set). A content type that is not a valid header value becomes
    /// `application/octet-stream`.
    pub fn with_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Error {
        let content_type = HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        self.0.body = Some(ErrorBody {
            content_type,
            bytes: body.into(),
        });
        self
    }

    /// Answer with `value` as JSON (`application/json`). A value that cannot
    /// be serialised (a map with non-string keys, a failing `Serialize`)
    /// leaves the body as it was, and the message says why.
    #[cfg(feature = "json")]
    pub fn with_json<T: serde::Serialize + ?Sized>(self, value: &T) -> Error {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.with_body("application/json", bytes),
            Err(e) => {
                let message = format!("{} (and its JSON body failed: {e})", self.0.message);
                self.with_message(message)
            }
        }
    }

    /// The message that will be logged.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The status this error asks for, if any.
    pub fn status_code(&self) -> Option<StatusCode> {
        self.0.status
    }

    /// The body this error asks for, if any: `(content type, bytes)`.
    pub fn body(&self) -> Option<(&HeaderValue, &[u8])> {
        self.0
            .body
            .as_ref()
            .map(|b| (&b.content_type, b.bytes.as_slice()))
    }

    /// The response this error asks for, or `None` when it sets neither a
    /// status nor a body (then the host answers its own 500). The status
    /// defaults to 500; without a body, the reason phrase is sent as
    /// `text/plain`. What [`App::render_error`](crate::App::render_error)
    /// does unless the app overrides it.
    pub fn to_response(&self) -> Option<Response<Vec<u8>>> {
        if self.0.status.is_none() && self.0.body.is_none() {
            return None;
        }
        let status = self.0.status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (content_type, bytes) = match &self.0.body {
            Some(body) => (body.content_type.clone(), body.bytes.clone()),
            None => (
                HeaderValue::from_static("text/plain"),
                format!("{}\n", status.canonical_reason().unwrap_or("Error")).into_bytes(),
            ),
        };
        let mut response = Response::new(bytes);
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type);
        Some(response)
    }

    /// Whether the SDK logs this error at ERROR level: a failure (no status,
    /// or a 5xx). A 4xx is an answer, logged at DEBUG.
    pub(crate) fn is_failure(&self) -> bool {
        self.0.status.is_none_or(|s| s.is_server_error())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::new(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

impl From<StatusCode> for Error {
    /// [`Error::status`].
    fn from(status: StatusCode) -> Self {
        Error::status(status)
    }
}

// A blanket `impl<E: std::error::Error> From<E>` would overlap with
// `From<String>` (coherence: std may one day implement Error for String),
// so the common error types are listed one by one.
macro_rules! error_from_display {
    ($($ty:ty),* $(,)?) => {
        $(impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::new(e)
            }
        })*
    };
}

error_from_display!(
    AbiError,
    std::io::Error,
    std::fmt::Error,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    std::num::ParseIntError,
    std::num::ParseFloatError,
    Box<dyn std::error::Error + Send + Sync>,
    http::Error,
    http::header::InvalidHeaderName,
    http::header::InvalidHeaderValue,
    http::header::ToStrError,
    http::method::InvalidMethod,
    http::status::InvalidStatusCode,
    http::uri::InvalidUri,
);

/// A JSON error. Parsing input (`from_slice`, `from_reader`, ...) that is
/// not valid JSON or not the expected shape is the request's fault: a 400.
/// Anything else is a failure with no status (the host's 500, or the app's
/// rendering): an I/O error, or an error without a position in the input,
/// which is how serde_json reports serialising (`to_vec` of a map with
/// non-string keys, ...) and `from_value`.
#[cfg(feature = "json")]
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        let error = Error::new(format_args!("JSON: {e}"));
        if e.is_io() || e.line() == 0 {
            error
        } else {
            error.with_status(StatusCode::BAD_REQUEST)
        }
    }
}

/// An `anyhow::Error`, its whole chain of causes in the message.
#[cfg(feature = "anyhow")]
impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::new(format_args!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in -8..=0 {
            match AbiError::check(code) {
                Ok(()) => assert_eq!(code, 0),
                Err(e) => assert_eq!(e.code(), code),
            }
        }
        assert_eq!(AbiError::from_code(-3), AbiError::State);
        assert_eq!(AbiError::from_code(-4), AbiError::HeadersSent);
        assert_eq!(AbiError::from_code(-1), AbiError::Other(-1));
    }

    #[test]
    fn errors_convert() {
        fn fails() -> Result<(), Error> {
            let n: u32 = "x".parse()?;
            let _ = n;
            Ok(())
        }
        assert!(fails().is_err());
        let io: std::io::Error = AbiError::Disconnected.into();
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionAborted);
        assert_eq!(
            Error::from(io).message(),
            AbiError::Disconnected.to_string()
        );
    }
}
