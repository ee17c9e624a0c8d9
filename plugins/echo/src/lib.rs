//! `echo`: answers with what it received.
//!
//! * `/__environ...` (or any path with the query `__environ`, for an app
//!   mounted where its PATH_INFO may be empty): `text/plain`, every environ
//!   variable as `KEY=VALUE` lines (host order), then the `wsgi.*` flags.
//! * anything else: the HTTP Garden echo format, `application/json`:
//!   `{"method":..,"version":..,"uri":..,"headers":[[name,value],..],"body":..}`
//!   with every string standard base64 (padded). A body that cannot be read
//!   (malformed chunking, over the size limit, too slow) fails the call, so
//!   the host answers with the status that fits (400, 413, 408).
#![forbid(unsafe_code)]

use std::io::Read;

use abi::{App, Body, Config, Environ, Error, StartResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

struct Echo;

impl App for Echo {
    const NAME: &'static str = "echo";

    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Echo)
    }

    fn call(
        &self,
        environ: &mut Environ<'_>,
        start: &mut StartResponse<'_>,
    ) -> Result<Body, Error> {
        if environ.path_info().starts_with(b"/__environ") || environ.query_string() == b"__environ"
        {
            start.start("200 OK", &[("Content-Type", "text/plain")])?;
            return Ok(Body::from(environ_listing(environ)));
        }
        let mut body = Vec::new();
        environ.input().read_to_end(&mut body)?;
        start.start("200 OK", &[("Content-Type", "application/json")])?;
        Ok(Body::from(garden_json(environ, &body)))
    }
}

fn environ_listing(environ: &Environ<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    environ.for_each(|key, value| {
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    });
    let flag = |b: bool| if b { "1" } else { "0" };
    out.extend_from_slice(
        format!(
            "wsgi.multithread={}\nwsgi.multiprocess={}\nwsgi.run_once={}\n",
            flag(environ.multithread()),
            flag(environ.multiprocess()),
            flag(environ.run_once()),
        )
        .as_bytes(),
    );
    // wsgi.url_scheme is among the host's variables already.
    out
}

/// base64 output never needs JSON escaping, so the document is assembled
/// directly.
fn garden_json(environ: &Environ<'_>, body: &[u8]) -> String {
    let b64 = |bytes: &[u8]| STANDARD.encode(bytes);
    let headers: Vec<String> = environ
        .raw_headers()
        .map(|(name, value)| format!("[\"{}\",\"{}\"]", b64(name), b64(value)))
        .collect();
    format!(
        "{{\"method\":\"{}\",\"version\":\"{}\",\"uri\":\"{}\",\"headers\":[{}],\"body\":\"{}\"}}",
        b64(environ.method_bytes()),
        b64(environ.protocol()),
        b64(environ.request_uri()),
        headers.join(","),
        b64(body),
    )
}

abi::export_app!(Echo);
