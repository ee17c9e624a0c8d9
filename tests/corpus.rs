//! The HTTP/1.1 conformance and request-smuggling corpus: every case in
//! `tests/corpus/*.txt` (format: `tests/corpus/README.md`) is run against one
//! `host serve` of the echo plugin, twice: the request bytes sent whole, in
//! one write, and sent one byte per write. A parser that is right only when
//! a whole request arrives at once (or only when it trickles in) fails one of
//! the two.
//!
//! Each case runs on a fresh connection. The responses must arrive in order
//! with the expected statuses (and echo fields), and then the connection must
//! close (`then: close`, with nothing more sent: a response after a rejected
//! request would mean the server read on past bytes it could not frame) or
//! stay usable for one more request (`then: open`). Every response must
//! also be complete, say `HTTP/1.1` (RFC 9110 §6.2) and, for 2xx-4xx, carry a
//! Date (RFC 9110 §6.6.1). Every failing case is collected and reported in
//! one message.

use std::cell::Cell;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use integration_tests::artifacts;
use integration_tests::cases::{self, show, Case, Expected, Step, Then};
use integration_tests::client::{Conn, Response};
use integration_tests::json::{self, Value};
use integration_tests::server::{self, Server};

/// How long the next response may take to begin. Every case is answered at
/// once by a correct server; a wait shorter than the client's usual one
/// keeps a run with several hanging cases short.
const RESPONSE_WAIT: Duration = Duration::from_secs(4);

/// How long the server may take to close after the last response.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// The server's idle keep-alive timeout, well over [`CLOSE_WAIT`], so a
/// connection the server meant to keep open cannot pass for one it closed
/// because of the case.
const KEEP_ALIVE_SECS: &str = "30";

/// Bytewise mode pauses this long after every [`PAUSE_EVERY`] bytes, so
/// the server sees the request arrive in many reads.
const PAUSE: Duration = Duration::from_micros(200);
const PAUSE_EVERY: usize = 16;

/// The request that checks a `then: open` connection is still usable.
const PROBE: &[u8] = b"GET /corpus-probe HTTP/1.1\r\nHost: probe\r\n\r\n";
const PROBE_URI: &[u8] = b"/corpus-probe";

/// How the request bytes of a case are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Whole,
    Bytewise,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Whole => "whole",
            Mode::Bytewise => "bytewise",
        }
    }
}

fn echo_server() -> Server {
    server::serve(artifacts::rust_plugin("echo"))
        .args(["--keep-alive", KEEP_ALIVE_SECS])
        .start()
}

fn corpus() -> Vec<Case> {
    let dir: PathBuf = artifacts::repo_root().join("tests/corpus");
    cases::load_dir(&dir).unwrap_or_else(|e| panic!("the corpus does not parse: {e}"))
}

#[test]
fn corpus_has_at_least_150_cases() {
    let cases = corpus();
    assert!(
        cases.len() >= 150,
        "only {} cases in tests/corpus/",
        cases.len()
    );
}

#[test]
fn corpus_sent_whole() {
    run_corpus(Mode::Whole);
}

#[test]
fn corpus_sent_byte_by_byte() {
    run_corpus(Mode::Bytewise);
}

/// Runs every case in `mode` against one server; fails once, listing every
/// case that failed.
fn run_corpus(mode: Mode) {
    let cases = corpus();
    let server = echo_server();
    let started = Instant::now();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            run_case(&server, case, mode).err().map(|why| {
                format!(
                    "{} [{}] ({}; {}):\n    {}",
                    case.name,
                    case.location,
                    mode.name(),
                    case.refs.join("; "),
                    why.replace('\n', "\n    ")
                )
            })
        })
        .collect();
    eprintln!(
        "corpus ({}): {} cases in {:.1?}",
        mode.name(),
        cases.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed ({} mode):\n\n{}\n",
        failures.len(),
        cases.len(),
        mode.name(),
        failures.join("\n\n")
    );
}

/// Runs one case on a fresh connection; the error says what differed.
fn run_case(server: &Server, case: &Case, mode: Mode) -> Result<(), String> {
    let mut conn = quietly(|| server.connect())?;
    // What arrived so far, for the messages.
    let mut got: Vec<String> = Vec::new();
    // Set once a write failed: the server answered and closed before taking
    // the whole request, which is allowed (early rejection); later sends are
    // skipped and the responses are read as usual.
    let mut write_error: Option<io::Error> = None;
    // A response read for an optional `100?` that turned out to be the next
    // one.
    let mut pending: Option<Response> = None;
    for step in &case.steps {
        match step {
            Step::Send(bytes) => {
                if write_error.is_none() {
                    write_error = send(&mut conn, bytes, mode).err();
                }
            }
            Step::Expect(expected) => {
                let context = |what: String| {
                    let write = match &write_error {
                        Some(e) => format!(" (a write failed: {e})"),
                        None => String::new(),
                    };
                    let before = match got.is_empty() {
                        true => String::new(),
                        false => format!(" after [{}]", got.join(", ")),
                    };
                    format!(
                        "line {}: expected `< {expected}`{before}{write}, got {what}",
                        expected.line
                    )
                };
                let resp = match pending.take() {
                    Some(resp) => resp,
                    None => next_response(&mut conn, expected).map_err(context)?,
                };
                if expected.optional && !expected.statuses.contains(&resp.status) {
                    pending = Some(resp);
                    continue;
                }
                check(expected, &resp).map_err(context)?;
                got.push(resp.status.to_string());
            }
        }
    }
    if let Some(resp) = pending {
        return Err(format!(
            "an extra response after [{}]: {}",
            got.join(", "),
            resp.raw_head.trim_end()
        ));
    }
    match case.then {
        Then::Close => expect_close(&mut conn).map_err(|e| {
            format!(
                "after [{}] the connection should close: {e}",
                got.join(", ")
            )
        }),
        Then::Open => probe(&mut conn).map_err(|e| {
            format!(
                "after [{}] the connection should stay usable: {e}",
                got.join(", ")
            )
        }),
    }
}

fn send(conn: &mut Conn, bytes: &[u8], mode: Mode) -> io::Result<()> {
    match mode {
        Mode::Whole => conn.try_send(bytes),
        Mode::Bytewise => conn.send_bytewise(bytes, PAUSE_EVERY, PAUSE),
    }
}

/// Reads the next response (a head only for `head`); an error describes
/// end of file, a timeout or a malformed response.
fn next_response(conn: &mut Conn, expected: &Expected) -> Result<Response, String> {
    match conn.await_data(RESPONSE_WAIT) {
        Ok(true) => {}
        Ok(false) => {
            let how = if conn.reset { "reset" } else { "end of file" };
            return Err(format!("{how} (no response)"));
        }
        Err(e) => return Err(format!("no response ({e})")),
    }
    quietly(|| {
        if expected.head {
            conn.read_head_response()
        } else {
            conn.read_response()
        }
    })
}

/// Compares one response with its expectation.
fn check(expected: &Expected, resp: &Response) -> Result<(), String> {
    let summary = || format!("{}\n{}", resp.raw_head.trim_end(), show(&resp.body, 300));
    if !expected.statuses.contains(&resp.status) {
        return Err(format!("{}:\n{}", resp.status, summary()));
    }
    if !resp.complete {
        return Err(format!("a truncated body:\n{}", summary()));
    }
    // RFC 9110 §6.2: the server's own version, whatever the request's.
    if resp.version != "HTTP/1.1" {
        return Err(format!("a status line of {}:\n{}", resp.version, summary()));
    }
    // RFC 9110 §6.6.1: an origin server with a clock MUST send Date in
    // 2xx, 3xx and 4xx responses.
    if (200..500).contains(&resp.status) && resp.header("date").is_none() {
        return Err(format!("no Date header:\n{}", summary()));
    }
    for want in &expected.connection {
        if resp.connection_has(&want.token) != want.present {
            return Err(format!(
                "the Connection header {} {:?}:\n{}",
                if want.present { "lacks" } else { "has" },
                want.token,
                summary()
            ));
        }
    }
    if expected.echo.is_checked() {
        check_echo(expected, resp)?;
    }
    Ok(())
}

fn check_echo(expected: &Expected, resp: &Response) -> Result<(), String> {
    let seen = Echoed::decode(resp)?;
    let want = &expected.echo;
    let mut wrong = Vec::new();
    let mut field = |name: &str, want: &Option<Vec<u8>>, got: &[u8]| {
        if let Some(want) = want {
            if want != got {
                wrong.push(format!(
                    "echo.{name}: want {:?}, got {:?}",
                    show(want, 200),
                    show(got, 200)
                ));
            }
        }
    };
    field("method", &want.method, &seen.method);
    field("version", &want.version, &seen.version);
    field("uri", &want.uri, &seen.uri);
    field("body", &want.body, &seen.body);
    let list = |headers: &[(Vec<u8>, Vec<u8>)]| {
        headers
            .iter()
            .map(|(n, v)| format!("{}: {}", show(n, 100), show(v, 100)))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    if let Some(headers) = &want.headers {
        if *headers != seen.headers {
            wrong.push(format!(
                "echo headers: want [{}], got [{}]",
                list(headers),
                list(&seen.headers)
            ));
        }
    }
    for name in &want.absent {
        if seen
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            wrong.push(format!(
                "echo headers must not hold {:?}: [{}]",
                show(name, 100),
                list(&seen.headers)
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("200 with a different echo:\n{}", wrong.join("\n")))
    }
}

/// The server must close, sending nothing more.
fn expect_close(conn: &mut Conn) -> Result<(), String> {
    if !conn.unread().is_empty() {
        return Err(format!("it sent more: {}", show(conn.unread(), 300)));
    }
    match conn.await_data(CLOSE_WAIT) {
        Ok(false) => Ok(()),
        Ok(true) => Err(format!("it sent more: {}", show(conn.unread(), 300))),
        Err(e) => Err(format!("still open ({e})")),
    }
}

/// One more request on the connection must be answered normally.
fn probe(conn: &mut Conn) -> Result<(), String> {
    if !conn.unread().is_empty() {
        return Err(format!(
            "unexpected bytes before the probe: {}",
            show(conn.unread(), 300)
        ));
    }
    conn.try_send(PROBE)
        .map_err(|e| format!("sending the probe: {e}"))?;
    let expected = Expected {
        statuses: vec![200],
        ..Expected::default()
    };
    let resp = next_response(conn, &expected).map_err(|e| format!("probe: {e}"))?;
    check(&expected, &resp).map_err(|e| format!("probe: {e}"))?;
    let seen = Echoed::decode(&resp)?;
    if seen.uri != PROBE_URI {
        return Err(format!(
            "the probe was answered by a response for {:?}",
            show(&seen.uri, 200)
        ));
    }
    Ok(())
}

thread_local! {
    /// Set while [`quietly`] runs: its panics are expected and reported as
    /// case failures, so the panic hook does not print them.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, which may panic (the client's reads panic on malformed
/// responses and timeouts), turning a panic into an error message.
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

/// One request as the echo app saw it, from the HTTP Garden echo format
/// (`{"method","version","uri","headers":[[name,value],...],"body"}`, every
/// string base64). Bytes throughout: header values may hold obs-text.
struct Echoed {
    method: Vec<u8>,
    version: Vec<u8>,
    uri: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

impl Echoed {
    fn decode(resp: &Response) -> Result<Echoed, String> {
        let text = std::str::from_utf8(&resp.body)
            .map_err(|_| format!("the echo body is not UTF-8: {}", show(&resp.body, 300)))?;
        let doc = json::parse(text).map_err(|e| format!("echo sent bad JSON ({e}): {text}"))?;
        let bytes = |v: &Value| -> Result<Vec<u8>, String> {
            let s = v
                .as_str()
                .ok_or_else(|| format!("not a string: {v:?} in {text}"))?;
            BASE64
                .decode(s)
                .map_err(|e| format!("bad base64 {s:?} ({e}) in {text}"))
        };
        let member = |key: &str| doc.get(key).ok_or_else(|| format!("no {key:?} in {text}"));
        let headers = member("headers")?
            .as_array()
            .ok_or_else(|| format!("headers is not an array in {text}"))?
            .iter()
            .map(|pair| match pair.as_array() {
                Some([name, value]) => Ok((bytes(name)?, bytes(value)?)),
                _ => Err(format!("a header is not a [name, value] pair: {pair:?}")),
            })
            .collect::<Result<_, String>>()?;
        Ok(Echoed {
            method: bytes(member("method")?)?,
            version: bytes(member("version")?)?,
            uri: bytes(member("uri")?)?,
            headers,
            body: bytes(member("body")?)?,
        })
    }
}

#[test]
fn the_runner_notices_wrong_expectations() {
    // Cases that must fail, so a runner that compared less than it claims
    // is caught: a status, an echo field, a Connection token, and the
    // connection state both ways.
    let wrong = cases::parse(
        "self-check",
        "case: wrong-status\nref: self\n> GET / HTTP/1.1\n>\n< 200\nthen: close\n\
         case: wrong-echo\nref: self\n> GET /a HTTP/1.1\n> Host: x\n>\n\
         < 200\n  echo.uri: /b\nthen: open\n\
         case: wrong-connection\nref: self\n> GET / HTTP/1.1\n> Host: x\n>\n\
         < 200 conn=close\nthen: open\n\
         case: wrongly-open\nref: self\n> GET / HTTP/1.1\n> Host: x\n> Connection: close\n>\n\
         < 200\nthen: open\n\
         case: wrongly-closed\nref: self\n> GET / HTTP/1.1\n> Host: x\n>\n< 200\nthen: close\n\
         case: one-response-short\nref: self\n> GET / HTTP/1.1\n> Host: x\n>\n\
         > GET / HTTP/1.1\n> Host: x\n>\n< 200\nthen: close\n",
    )
    .unwrap();
    let server = echo_server();
    for case in &wrong {
        for mode in [Mode::Whole, Mode::Bytewise] {
            let result = run_case(&server, case, mode);
            assert!(result.is_err(), "{} passed in {mode:?}", case.name);
        }
    }
}
