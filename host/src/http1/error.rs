//! Typed HTTP errors and the one place they become status codes.
//!
//! Every layer of the engine (head parsing, body decoding, limits) reports a
//! `HttpError`; only `status()` and `reason()` decide what goes on the wire,
//! in the spirit of hyper's `Server::on_error`. A response for any of these
//! errors closes the connection, because after a framing or limit error we
//! can no longer tell where the next request starts (RFC 9112 §9.6).

use std::fmt;

/// A request the server refuses, with enough detail to pick a status code.
///
/// The `&'static str` payloads are for the log only; they are never sent to
/// the client, so a probe learns nothing beyond the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// 400: the message is malformed or its framing is ambiguous.
    BadRequest(&'static str),
    /// 408: the client did not finish sending the request in time.
    RequestTimeout,
    /// 413: the declared or decoded body exceeds the configured limit.
    PayloadTooLarge,
    /// 414: the request line exceeds `limit_request_line`.
    UriTooLong,
    /// 417: an `Expect` value other than `100-continue`.
    ExpectationFailed,
    /// 431: too many header fields, one too long, or the whole head too long.
    HeaderFieldsTooLarge,
    /// 501: a feature the server does not implement, e.g. a transfer-coding.
    NotImplemented(&'static str),
    /// 505: an HTTP major version other than 1.
    VersionNotSupported,
}

impl HttpError {
    /// The status code sent for this error (RFC 9110 §15).
    pub fn status(self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::RequestTimeout => 408,
            HttpError::PayloadTooLarge => 413,
            HttpError::UriTooLong => 414,
            HttpError::ExpectationFailed => 417,
            HttpError::HeaderFieldsTooLarge => 431,
            HttpError::NotImplemented(_) => 501,
            HttpError::VersionNotSupported => 505,
        }
    }

    /// The canonical reason phrase for `status()` (RFC 9110 §15; 431 is from
    /// RFC 6585 §5).
    pub fn reason(self) -> &'static str {
        match self {
            HttpError::BadRequest(_) => "Bad Request",
            HttpError::RequestTimeout => "Request Timeout",
            HttpError::PayloadTooLarge => "Content Too Large",
            HttpError::UriTooLong => "URI Too Long",
            HttpError::ExpectationFailed => "Expectation Failed",
            HttpError::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            HttpError::NotImplemented(_) => "Not Implemented",
            HttpError::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    /// The detail for the log, if the variant carries one.
    fn detail(self) -> Option<&'static str> {
        match self {
            HttpError::BadRequest(why) | HttpError::NotImplemented(why) => Some(why),
            _ => None,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())?;
        match self.detail() {
            Some(why) => write!(f, ": {why}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [HttpError; 8] = [
        HttpError::BadRequest("x"),
        HttpError::RequestTimeout,
        HttpError::PayloadTooLarge,
        HttpError::UriTooLong,
        HttpError::ExpectationFailed,
        HttpError::HeaderFieldsTooLarge,
        HttpError::NotImplemented("y"),
        HttpError::VersionNotSupported,
    ];

    /// RFC 9110 §15.5 (4xx), §15.6 (5xx), RFC 6585 §5 (431).
    #[test]
    fn statuses_and_reasons_match_the_registry() {
        let expected = [
            (400, "Bad Request"),
            (408, "Request Timeout"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (417, "Expectation Failed"),
            (431, "Request Header Fields Too Large"),
            (501, "Not Implemented"),
            (505, "HTTP Version Not Supported"),
        ];
        for (err, (status, reason)) in ALL.iter().zip(expected) {
            assert_eq!(err.status(), status);
            assert_eq!(err.reason(), reason);
        }
    }

    #[test]
    fn display_includes_the_detail_for_the_log() {
        assert_eq!(
            HttpError::BadRequest("obs-fold in header").to_string(),
            "400 Bad Request: obs-fold in header"
        );
        assert_eq!(
            HttpError::NotImplemented("transfer-coding gzip").to_string(),
            "501 Not Implemented: transfer-coding gzip"
        );
        assert_eq!(HttpError::UriTooLong.to_string(), "414 URI Too Long");
    }

    #[test]
    fn is_a_std_error() {
        let boxed: Box<dyn std::error::Error> = Box::new(HttpError::RequestTimeout);
        assert_eq!(boxed.to_string(), "408 Request Timeout");
    }
}
