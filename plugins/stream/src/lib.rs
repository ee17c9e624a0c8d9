//! `stream`: slow bodies, for watching framing and flushing.
//!
//! * `/iter?n=N&delay_ms=M` (defaults 5 and 100): a body iterator yielding
//!   "chunk 0\n" .. "chunk N-1\n", sleeping M ms before each chunk after the
//!   first (chunked encoding).
//! * `/write?n=N&delay_ms=M`: the same bytes through `write()`.
//! * anything else: 404 "not found".
#![forbid(unsafe_code)]

use std::thread::sleep;
use std::time::Duration;

use abi::{AbiError, App, Body, Config, Environ, Error, StartResponse};

const TEXT_PLAIN: &[(&str, &str)] = &[("Content-Type", "text/plain")];

struct Stream;

/// A decimal query parameter, or `default` when absent or not a number.
fn param(query: &[u8], name: &str, default: u64) -> u64 {
    query
        .split(|&b| b == b'&')
        .filter_map(|pair| pair.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
        .find_map(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(default)
}

impl App for Stream {
    const NAME: &'static str = "stream";

    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Stream)
    }

    fn call(
        &self,
        environ: &mut Environ<'_>,
        start: &mut StartResponse<'_>,
    ) -> Result<Body, Error> {
        let query = environ.query_string();
        let n = param(query, "n", 5);
        let delay = Duration::from_millis(param(query, "delay_ms", 100));
        match environ.path_info() {
            b"/iter" => {
                start.start("200 OK", TEXT_PLAIN)?;
                Ok(Body::from_iter((0..n).map(move |i| {
                    if i > 0 {
                        sleep(delay);
                    }
                    format!("chunk {i}\n")
                })))
            }
            b"/write" => {
                start.start("200 OK", TEXT_PLAIN)?;
                for i in 0..n {
                    if i > 0 {
                        sleep(delay);
                    }
                    match start.write(format!("chunk {i}\n").as_bytes()) {
                        Ok(()) => {}
                        // The client left: stop quietly.
                        Err(AbiError::Disconnected) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(Body::empty())
            }
            _ => {
                start.start("404 Not Found", TEXT_PLAIN)?;
                Ok(Body::from_static(b"not found"))
            }
        }
    }
}

abi::export_app!(Stream);

#[cfg(test)]
mod tests {
    use super::param;

    #[test]
    fn params() {
        assert_eq!(param(b"n=3&delay_ms=0", "n", 5), 3);
        assert_eq!(param(b"n=3&delay_ms=0", "delay_ms", 100), 0);
        assert_eq!(param(b"", "n", 5), 5);
        assert_eq!(param(b"nn=2&n=x", "n", 5), 5);
    }
}
