//! `hello`: the smallest NWSGI application, byte-for-byte twin of
//! `plugins/hello-c`. GET/HEAD -> "Hello, World!"; anything else -> 405.
#![forbid(unsafe_code)]

use abi::{App, Body, Config, Environ, Error, Head, Header, StartResponse};

struct Hello;

// Declared once: the host validates each head the first time a thread uses
// it, not on every request.
static OK: Head = Head::new("200 OK", &[Header::new("Content-Type", "text/plain")]);
static NOT_ALLOWED: Head = Head::new(
    "405 Method Not Allowed",
    &[
        Header::new("Content-Type", "text/plain"),
        Header::new("Allow", "GET, HEAD"),
    ],
);

impl App for Hello {
    const NAME: &'static str = "hello";

    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Hello)
    }

    fn call(
        &self,
        environ: &mut Environ<'_>,
        start: &mut StartResponse<'_>,
    ) -> Result<Body, Error> {
        match environ.method_bytes() {
            b"GET" | b"HEAD" => {
                start.start_static(&OK)?;
                Ok(Body::from_static(b"Hello, World!"))
            }
            _ => {
                start.start_static(&NOT_ALLOWED)?;
                Ok(Body::from_static(b"Method Not Allowed"))
            }
        }
    }
}

abi::export_app!(Hello);
