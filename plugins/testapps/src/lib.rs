//! `testapps`: the route table the integration tests drive, twin of
//! `plugins/testapps-c/testapps.c` (keep the two in step).
//!
//! Routes (PATH_INFO; parameters from QUERY_STRING, not percent-decoded):
//!   GET  /iter?n=N     N chunks "chunk i\n" from an iterator (chunked)
//!   GET  /write?n=N    the same bytes through write(), no iterator
//!   GET  /last         one chunk "last\n" (Content-Length)
//!   GET  /empty        200, no iterator, no write
//!   GET  /error        Err before start_response (host: 500)
//!   GET  /panic        panic before start_response (host: 500)
//!   GET  /error-next   200, then the iterator's first item is an Err
//!   GET  /panic-next   200, then the iterator's first next panics
//!   GET  /panic-close  "ok\n" from an iterator whose Drop panics
//!   GET  /twice        second start without exc_info -> "second=<code>"
//!   GET  /exc-before   200 replaced by 500 with exc_info "boom"; "replaced"
//!   GET  /exc-after    write "partial", exc_info "late boom" -> HeadersSent;
//!                      returns Err (host aborts the connection)
//!   GET  /endless      "tick\n" forever, 10 ms apart
//!   GET  /counters     "opened=A closed=B" (iterators of /iter, /endless,
//!                      /error-next, /panic-next, /panic-close, /big, /flood,
//!                      and their closes)
//!   GET  /sleep?ms=N   sleeps N ms; "slept N"
//!   POST /input        reads the body 7 bytes at a time; "len=<n>\n" + bytes
//!   GET  /big?mb=N     N MiB of 'x' with the app's own Content-Length, from an
//!                      iterator of 64 KiB chunks (MORE each, then END);
//!                      N over 1048576 (1 TiB) -> 400 "mb too large"
//!   GET  /big-write?mb=N  the same bytes through write() in 64 KiB pieces,
//!                      Content-Length set, no iterator
//!   GET  /flood        'x' forever from an iterator of 16 KiB chunks, no
//!                      sleep, no Content-Length (chunked)
//!   POST /count        reads the body 64 KiB at a time; "len=<n>\n" only
//!                      (a read error as /input)
//!   GET  /environ      "KEY=VALUE\n" per environ variable (environ_each)
//!   GET  /get?key=K    environ_get: 200 + value, or 404 "absent"
//!   GET  /log          tracing error + wsgi.errors line; "logged"
//!   GET  /bad-status   start("20 OK") -> Invalid; no body (host: 500)
//!   GET  /bad-header   header value with CR LF -> Invalid; no body
//!   GET  /config       "key=value\n" per --app-arg, in order
//!   GET  /threads      "multithread=M multiprocess=P"
//!   anything else      404 "not found"
//! init refuses to start when the config holds `fail=1`, and sleeps N ms
//! first for `init_ms=N` (a slow boot, for the tests).
//!
//! Every answer is `Content-Type: text/plain`. If a host call does not return
//! what the route expects, the body says "unexpected rc=<rc>" instead.
#![forbid(unsafe_code)]

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::Duration;

use abi::tracing::Level;
use abi::{AbiError, App, Body, Config, Environ, Error, StartResponse};

const TEXT_PLAIN: &[(&str, &str)] = &[("Content-Type", "text/plain")];

/// The byte /big, /big-write and /flood repeat.
const PATTERN: u8 = b'x';
/// /big and /big-write: bytes per chunk or write; a MiB is 16 of them.
const BIG_CHUNK: usize = 64 * 1024;
/// /big and /big-write: the largest `mb` served (1 TiB).
const BIG_MAX_MB: u64 = 1 << 20;
/// /flood: bytes per chunk.
const FLOOD_CHUNK: usize = 16 * 1024;
/// /count: bytes per read.
const COUNT_READ: usize = 64 * 1024;

static BIG_BYTES: [u8; BIG_CHUNK] = [PATTERN; BIG_CHUNK];
static FLOOD_BYTES: [u8; FLOOD_CHUNK] = [PATTERN; FLOOD_CHUNK];

/// Body iterators created (through [`Counted::new`]) and dropped (closed).
static OPENED: AtomicU64 = AtomicU64::new(0);
static CLOSED: AtomicU64 = AtomicU64::new(0);

/// Wraps a body iterator so that its creation and its close are counted.
struct Counted<I>(I);

impl<I> Counted<I> {
    fn new(inner: I) -> Self {
        OPENED.fetch_add(1, Ordering::SeqCst);
        Counted(inner)
    }
}

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        self.0.next()
    }
}

impl<I> Drop for Counted<I> {
    fn drop(&mut self) {
        // Runs before the inner iterator is dropped, so /panic-close counts.
        CLOSED.fetch_add(1, Ordering::SeqCst);
    }
}

/// An iterator whose `Drop` panics (for /panic-close).
struct PanicOnDrop(std::option::IntoIter<&'static str>);

impl Iterator for PanicOnDrop {
    type Item = &'static str;

    fn next(&mut self) -> Option<&'static str> {
        self.0.next()
    }
}

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("testapps: panic in close");
    }
}

/// The first `name` pair of a raw query string: `name=value` gives `value`,
/// a bare `name` gives "" (like the C twin's `query_get`).
fn query_get<'q>(query: &'q [u8], name: &str) -> Option<&'q [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let rest = pair.strip_prefix(name.as_bytes())?;
        if rest.is_empty() {
            Some(rest)
        } else {
            rest.strip_prefix(b"=")
        }
    })
}

/// A decimal parameter like the C twin's `query_ulong`: absent -> 0, parsing
/// stops at the first non-digit, overflow -> 0.
fn query_u64(query: &[u8], name: &str) -> u64 {
    let Some(value) = query_get(query, name) else {
        return 0;
    };
    let mut n: u64 = 0;
    for &c in value.iter().take_while(|c| c.is_ascii_digit()) {
        match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
        {
            Some(next) => n = next,
            None => return 0,
        }
    }
    n
}

fn code(result: Result<(), AbiError>) -> i32 {
    result.map_or_else(AbiError::code, |()| 0)
}

struct TestApps {
    config: Config,
}

impl App for TestApps {
    const NAME: &'static str = "testapps";

    fn init(config: &Config) -> Result<Self, String> {
        for (_, v) in config.iter().filter(|(k, _)| *k == "init_ms") {
            sleep(Duration::from_millis(v.parse().unwrap_or(0)));
        }
        if config.iter().any(|(k, v)| k == "fail" && v == "1") {
            return Err("init refused: fail=1".into());
        }
        Ok(TestApps {
            config: config.clone(),
        })
    }

    fn call(
        &self,
        environ: &mut Environ<'_>,
        start: &mut StartResponse<'_>,
    ) -> Result<Body, Error> {
        let query = environ.query_string();
        match (environ.method_bytes(), environ.path_info()) {
            (b"GET", path) => self.get(path, query, environ, start),
            (b"POST", b"/input") => input(environ, start),
            (b"POST", b"/count") => count(environ, start),
            _ => respond(start, "404 Not Found", "not found"),
        }
    }

    fn shutdown(&self) {
        abi::tracing::info!(
            "testapps-shutdown-marker from rust ({} args)",
            self.config.len()
        );
    }
}

/// start("status", text/plain) and a single-chunk body.
fn respond(
    start: &mut StartResponse<'_>,
    status: &str,
    body: impl Into<Body>,
) -> Result<Body, Error> {
    start.start(status, TEXT_PLAIN)?;
    Ok(body.into())
}

impl TestApps {
    fn get(
        &self,
        path: &[u8],
        query: &[u8],
        environ: &mut Environ<'_>,
        start: &mut StartResponse<'_>,
    ) -> Result<Body, Error> {
        match path {
            b"/iter" => {
                let n = query_u64(query, "n");
                start.start("200 OK", TEXT_PLAIN)?;
                Ok(Body::from_iter(Counted::new(
                    (0..n).map(|i| format!("chunk {i}\n")),
                )))
            }
            b"/write" => {
                let n = query_u64(query, "n");
                start.start("200 OK", TEXT_PLAIN)?;
                for i in 0..n {
                    start.write(format!("chunk {i}\n").as_bytes())?;
                }
                Ok(Body::empty())
            }
            b"/last" => respond(start, "200 OK", "last\n"),
            b"/empty" => {
                start.start("200 OK", TEXT_PLAIN)?;
                Ok(Body::empty())
            }
            b"/error" => Err("testapps: /error".into()),
            b"/panic" => panic!("testapps: /panic"),
            b"/error-next" => {
                start.start("200 OK", TEXT_PLAIN)?;
                let items = std::iter::once(Err::<Vec<u8>, _>("testapps: /error-next"));
                Ok(Body::from_fallible_iter(Counted::new(items)))
            }
            b"/panic-next" => {
                start.start("200 OK", TEXT_PLAIN)?;
                let items =
                    std::iter::from_fn(|| -> Option<Vec<u8>> { panic!("testapps: panic in next") });
                Ok(Body::from_iter(Counted::new(items)))
            }
            b"/panic-close" => {
                start.start("200 OK", TEXT_PLAIN)?;
                let items = PanicOnDrop(Some("ok\n").into_iter());
                Ok(Body::from_iter(Counted::new(items)))
            }
            b"/twice" => {
                start.start("200 OK", TEXT_PLAIN)?;
                let second = code(start.start("201 Created", &[]));
                Ok(Body::from(format!("second={second}")))
            }
            b"/exc-before" => {
                start.start("200 OK", TEXT_PLAIN)?;
                let rc = code(start.start_with_exc_info(
                    "500 Internal Server Error",
                    TEXT_PLAIN,
                    "boom",
                ));
                Ok(if rc == 0 {
                    Body::from("replaced")
                } else {
                    Body::from(format!("unexpected rc={rc}"))
                })
            }
            b"/exc-after" => {
                start.start("200 OK", TEXT_PLAIN)?;
                start.write(b"partial")?;
                let rc = code(start.start_with_exc_info(
                    "500 Internal Server Error",
                    TEXT_PLAIN,
                    "late boom",
                ));
                if rc != AbiError::HeadersSent.code() {
                    let _ = start.write(format!("unexpected rc={rc}").as_bytes());
                }
                // The headers went out: give up (PEP 3333 "re-raise").
                Err("testapps: /exc-after".into())
            }
            b"/endless" => {
                start.start("200 OK", TEXT_PLAIN)?;
                let ticks = (0u64..).map(|i| {
                    if i > 0 {
                        sleep(Duration::from_millis(10));
                    }
                    "tick\n"
                });
                Ok(Body::from_iter(Counted::new(ticks)))
            }
            b"/big" => {
                let Some(len) = big_len(query) else {
                    return respond(start, "400 Bad Request", "mb too large");
                };
                start_big(start, len)?;
                let chunks = len / BIG_CHUNK as u64;
                let items = (0..chunks).map(|_| &BIG_BYTES[..]);
                Ok(Body::from_iter(Counted::new(items)))
            }
            b"/big-write" => {
                let Some(len) = big_len(query) else {
                    return respond(start, "400 Bad Request", "mb too large");
                };
                start_big(start, len)?;
                for _ in 0..len / BIG_CHUNK as u64 {
                    start.write(&BIG_BYTES)?;
                }
                Ok(Body::empty())
            }
            b"/flood" => {
                start.start("200 OK", TEXT_PLAIN)?;
                let items = std::iter::repeat(&FLOOD_BYTES[..]);
                Ok(Body::from_iter(Counted::new(items)))
            }
            b"/counters" => {
                let body = format!(
                    "opened={} closed={}",
                    OPENED.load(Ordering::SeqCst),
                    CLOSED.load(Ordering::SeqCst)
                );
                respond(start, "200 OK", body)
            }
            b"/sleep" => {
                let ms = query_u64(query, "ms");
                sleep(Duration::from_millis(ms));
                respond(start, "200 OK", format!("slept {ms}"))
            }
            b"/environ" => {
                let mut out = Vec::new();
                environ.for_each(|key, value| {
                    out.extend_from_slice(key);
                    out.push(b'=');
                    out.extend_from_slice(value);
                    out.push(b'\n');
                });
                respond(start, "200 OK", out)
            }
            b"/get" => match query_get(query, "key").and_then(|key| environ.get(key)) {
                Some(value) => respond(start, "200 OK", value.to_vec()),
                None => respond(start, "404 Not Found", "absent"),
            },
            b"/log" => {
                abi::tracing::error!("testapps-log-marker from rust");
                environ.log(Level::ERROR, "testapps-errors-marker");
                respond(start, "200 OK", "logged")
            }
            b"/bad-status" => {
                let rc = code(start.start("20 OK", TEXT_PLAIN));
                expect_invalid(start, rc)
            }
            b"/bad-header" => {
                let headers = [
                    ("Content-Type", "text/plain"),
                    ("X-Bad", "a\r\nInjected: yes"),
                ];
                let rc = code(start.start("200 OK", &headers));
                expect_invalid(start, rc)
            }
            b"/config" => {
                let mut out = String::new();
                for (key, value) in self.config.iter() {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(value);
                    out.push('\n');
                }
                respond(start, "200 OK", out)
            }
            b"/threads" => {
                let body = format!(
                    "multithread={} multiprocess={}",
                    u8::from(environ.multithread()),
                    u8::from(environ.multiprocess())
                );
                respond(start, "200 OK", body)
            }
            _ => respond(start, "404 Not Found", "not found"),
        }
    }
}

/// /bad-status and /bad-header: the host must refuse with Invalid; then no
/// body, and the host answers 500.
fn expect_invalid(start: &mut StartResponse<'_>, rc: i32) -> Result<Body, Error> {
    if rc != AbiError::Invalid.code() && rc == 0 {
        let _ = start.write(format!("unexpected rc={rc}").as_bytes());
    }
    Ok(Body::empty())
}

/// /big and /big-write: the body's length for `mb`, or None above
/// [`BIG_MAX_MB`].
fn big_len(query: &[u8]) -> Option<u64> {
    let mb = query_u64(query, "mb");
    (mb <= BIG_MAX_MB).then_some(mb << 20)
}

/// start("200 OK") with text/plain and the app's own Content-Length.
fn start_big(start: &mut StartResponse<'_>, len: u64) -> Result<(), AbiError> {
    let len = len.to_string();
    start.start(
        "200 OK",
        &[("Content-Type", "text/plain"), ("Content-Length", &len)],
    )
}

/// POST /count: 64 KiB reads, counted, not kept.
fn count(environ: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
    let mut input = environ.input();
    let mut buf = vec![0u8; COUNT_READ];
    let mut total: u64 = 0;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    respond(start, "200 OK", format!("len={total}\n"))
}

/// POST /input: 7-byte reads to exercise the host's partial reads.
fn input(environ: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
    let mut data = Vec::new();
    let mut input = environ.input();
    let mut buf = [0u8; 7];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let mut out = format!("len={}\n", data.len()).into_bytes();
    out.extend_from_slice(&data);
    respond(start, "200 OK", out)
}

abi::export_app!(TestApps);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_matches_the_c_twin() {
        assert_eq!(query_get(b"key=HTTP_HOST", "key"), Some(&b"HTTP_HOST"[..]));
        assert_eq!(query_get(b"a=1&key", "key"), Some(&b""[..]));
        assert_eq!(query_get(b"keyx=1", "key"), None);
        assert_eq!(query_u64(b"n=12abc", "n"), 12);
        assert_eq!(query_u64(b"n=", "n"), 0);
        assert_eq!(query_u64(b"m=3", "n"), 0);
        assert_eq!(query_u64(b"n=99999999999999999999999", "n"), 0);
    }

    #[test]
    fn init_refuses_fail() {
        assert!(TestApps::init(&Config::from_pairs([("fail", "1")])).is_err());
        assert!(TestApps::init(&Config::from_pairs([("fail", "0")])).is_ok());
    }
}
