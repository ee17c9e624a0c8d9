//! The two error types: [`AbiError`] (what a host function returned) and
//! [`Error`] (what an application returns from `call` or a body iterator).

use std::fmt;

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
/// yielded by a fallible body iterator. The SDK logs it to the host and
/// returns `NWSGI_ERROR`, so the client gets a 500 if nothing was sent yet.
///
/// Any error converts with `?` through one of the `From` impls, or wrap one
/// with [`Error::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Error {
        Error {
            message: message.to_string(),
        }
    }

    /// The message that will be logged.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error { message }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
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
);

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
