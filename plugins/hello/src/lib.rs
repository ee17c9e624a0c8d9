//! `hello`: the smallest NWSGI application, byte-for-byte twin of
//! `plugins/hello-c`. GET/HEAD -> "Hello, World!"; anything else -> 405.
#![forbid(unsafe_code)]

use abi::{App, Body, Config, Environ, Error, StartResponse};

struct Hello;

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
        match environ.method() {
            b"GET" | b"HEAD" => {
                start.start("200 OK", &[("Content-Type", "text/plain")])?;
                Ok(Body::from_static(b"Hello, World!"))
            }
            _ => {
                start.start(
                    "405 Method Not Allowed",
                    &[("Content-Type", "text/plain"), ("Allow", "GET, HEAD")],
                )?;
                Ok(Body::from_static(b"Method Not Allowed"))
            }
        }
    }
}

abi::export_app!(Hello);
