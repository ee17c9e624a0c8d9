//! The access log: one line per request, to a file or stdout
//! (`--access-logfile -`), in the `--access-log-format` (gunicorn's atoms,
//! compiled in `log_format.rs`; by default gunicorn's, Apache combined) or,
//! with `--log-format json`, as one JSON object. A response the client did
//! not get whole (the app failed after its head went out, it broke its own
//! framing, or the client went away) has ` aborted` after a text line's
//! fields (`"aborted":true` in JSON). The byte count is the body bytes
//! handed to the connection.
//!
//! Written directly rather than through `tracing` so the line format is
//! exactly the one log tools expect, whatever the log level.
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, LineWriter, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::gateway::environ::HostEnviron;
use crate::gateway::exchange::Exchange;
use crate::http1::date;
use crate::http1::parse::Version;
use crate::runtime::log_format::{
    self, basic_user, decimal_into, json_str_into, AccessStyle, Piece, Style,
};

pub struct AccessLog {
    spec: String,
    out: Mutex<Output>,
}

/// The writer, and what its failures were last said to be.
struct Output {
    w: Box<dyn Write + Send>,
    /// When a failed write was last logged, and the failures since.
    warned: Option<Instant>,
    failed: u64,
}

/// A full disk fails every line: one warning per this long, not per request.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What one line says about a request.
pub struct Entry<'a> {
    /// The request as the app saw it (REMOTE_ADDR is the client a trusted
    /// proxy named).
    pub env: &'a HostEnviron,
    /// The response: status, body bytes, the app's headers.
    pub ex: &'a Exchange,
    pub version: Version,
    /// How long the request took, if the style asked for it (`clock`).
    pub took: Option<Duration>,
}

thread_local! {
    /// The line being written, kept for the next one: a line per request
    /// allocates nothing once the buffer has grown.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

impl AccessLog {
    /// `-` is stdout (as in gunicorn); anything else a file opened for
    /// appending (each line one write, so workers can share the file).
    pub fn open(spec: &str) -> io::Result<AccessLog> {
        Ok(AccessLog {
            spec: spec.to_string(),
            out: Mutex::new(Output {
                w: writer(spec)?,
                warned: None,
                failed: 0,
            }),
        })
    }

    /// USR1: opens the file again (after logrotate moved it).
    pub fn reopen(&self) {
        match writer(&self.spec) {
            Ok(w) => self.out.lock().unwrap_or_else(|p| p.into_inner()).w = w,
            Err(e) => tracing::warn!("cannot reopen the access log {}: {e}", self.spec),
        }
    }

    pub fn record(&self, style: &AccessStyle, e: &Entry<'_>) {
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            match style.style {
                Style::Text => text_line(&mut line, &style.format.pieces, style.scan, e),
                Style::Json => json_line(&mut line, e),
            }
            line.push(b'\n');
            self.write(&line);
        });
    }

    fn write(&self, line: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A full disk must not fail requests; the error log says why, once
        // in a while.
        match out.w.write_all(line) {
            Ok(()) if out.failed > 0 => {
                tracing::warn!(
                    "the access log is written again ({} lines were lost)",
                    out.failed
                );
                out.failed = 0;
                out.warned = None;
            }
            Ok(()) => {}
            Err(err) => {
                out.failed += 1;
                let now = Instant::now();
                if out
                    .warned
                    .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
                {
                    tracing::warn!(
                        "cannot write the access log {}: {err} ({} lines lost so far; \
                         next warning in {}s at the earliest)",
                        self.spec,
                        out.failed,
                        WARN_EVERY.as_secs()
                    );
                    out.warned = Some(now);
                }
            }
        }
    }
}

fn writer(spec: &str) -> io::Result<Box<dyn Write + Send>> {
    Ok(if spec == "-" {
        Box::new(io::stdout())
    } else {
        let file: File = OpenOptions::new().create(true).append(true).open(spec)?;
        Box::new(LineWriter::new(file))
    })
}

/// Request headers the common formats read, found in one scan.
#[derive(Default)]
struct Common<'a> {
    authorization: Option<&'a [u8]>,
    referer: Option<&'a [u8]>,
    user_agent: Option<&'a [u8]>,
}

fn common<'a>(env: &'a HostEnviron) -> Common<'a> {
    let mut c = Common::default();
    for (name, value) in env.header_pairs() {
        let slot = match name.len() {
            7 if name.eq_ignore_ascii_case(b"referer") => &mut c.referer,
            10 if name.eq_ignore_ascii_case(b"user-agent") => &mut c.user_agent,
            13 if name.eq_ignore_ascii_case(b"authorization") => &mut c.authorization,
            _ => continue,
        };
        slot.get_or_insert(value);
    }
    c
}

fn text_line(line: &mut Vec<u8>, pieces: &[Piece], scan: bool, e: &Entry<'_>) {
    let env = e.env;
    let c = if scan { common(env) } else { Common::default() };
    let took = e.took.unwrap_or(Duration::ZERO);
    let value = |line: &mut Vec<u8>, v: Option<&[u8]>| match v {
        Some(v) if !v.is_empty() => escape_into(line, v),
        _ => line.push(b'-'),
    };
    for piece in pieces {
        match piece {
            Piece::Literal(bytes) => line.extend_from_slice(bytes),
            // A unix socket's client has no address: `-`, as for any
            // absent field of the common log format.
            Piece::Remote => value(line, Some(env.remote_addr())),
            Piece::Dash => line.push(b'-'),
            Piece::User => {
                let user = c.authorization.and_then(basic_user);
                value(line, user.as_deref());
            }
            Piece::Time => {
                line.push(b'[');
                line.extend_from_slice(&clf_time(date::now_secs()));
                line.push(b']');
            }
            Piece::RequestLine => {
                line.extend_from_slice(env.method());
                line.push(b' ');
                escape_into(line, env.target());
                line.push(b' ');
                line.extend_from_slice(e.version.as_str().as_bytes());
            }
            Piece::Status => decimal_into(line, u64::from(e.ex.status)),
            Piece::Method => value(line, Some(env.method())),
            // The whole path: a mounted app's SCRIPT_NAME, then PATH_INFO.
            Piece::Path if env.script_name().is_empty() => value(line, Some(env.path_info())),
            Piece::Path => {
                let mut path = env.script_name().to_vec();
                path.extend_from_slice(env.path_info());
                value(line, Some(&path))
            }
            Piece::Query => value(line, Some(env.query_string())),
            Piece::Protocol => line.extend_from_slice(e.version.as_str().as_bytes()),
            Piece::BytesClf | Piece::Bytes => decimal_into(line, e.ex.body_bytes),
            Piece::Referer => value(line, c.referer),
            Piece::UserAgent => value(line, c.user_agent),
            Piece::Secs => decimal_into(line, took.as_secs()),
            Piece::Micros => decimal_into(line, took.as_micros() as u64),
            Piece::Millis => decimal_into(line, took.as_millis() as u64),
            Piece::SecsFrac => {
                decimal_into(line, took.as_secs());
                let _ = write!(line, ".{:06}", took.subsec_micros());
            }
            Piece::Pid => {
                line.push(b'<');
                decimal_into(line, u64::from(log_format::pid()));
                line.push(b'>');
            }
            Piece::RequestId => escape_into(line, env.request_id()),
            Piece::RequestHeader(name) => value(line, env.header(name)),
            Piece::ResponseHeader(name) => match e.ex.response_header(name) {
                Some(Ok(v)) => value(line, Some(v)),
                Some(Err(n)) => decimal_into(line, n),
                None => line.push(b'-'),
            },
            Piece::Environ(key) => value(line, env.var(key)),
        }
    }
    if e.ex.aborted() {
        line.extend_from_slice(b" aborted");
    }
}

fn json_line(line: &mut Vec<u8>, e: &Entry<'_>) {
    let env = e.env;
    let c = common(env);
    let string = |line: &mut Vec<u8>, key: &str, v: Option<&[u8]>| {
        line.extend_from_slice(b",\"");
        line.extend_from_slice(key.as_bytes());
        match v {
            Some(v) => {
                line.extend_from_slice(b"\":\"");
                json_str_into(line, v);
                line.push(b'"');
            }
            None => line.extend_from_slice(b"\":null"),
        }
    };
    let number = |line: &mut Vec<u8>, key: &str, n: u64| {
        line.extend_from_slice(b",\"");
        line.extend_from_slice(key.as_bytes());
        line.extend_from_slice(b"\":");
        decimal_into(line, n);
    };
    line.extend_from_slice(b"{\"time\":\"");
    line.extend_from_slice(&log_format::rfc3339_now());
    line.push(b'"');
    let remote = env.remote_addr();
    string(line, "remote_addr", (!remote.is_empty()).then_some(remote));
    string(line, "method", Some(env.method()));
    // The whole path, and which mount served it (with mounts).
    let script_name = env.script_name();
    line.extend_from_slice(b",\"path\":\"");
    json_str_into(line, script_name);
    json_str_into(line, env.path_info());
    line.push(b'"');
    if !script_name.is_empty() {
        string(line, "script_name", Some(script_name));
    }
    string(line, "query", Some(env.query_string()));
    string(line, "protocol", Some(e.version.as_str().as_bytes()));
    number(line, "status", u64::from(e.ex.status));
    number(line, "bytes", e.ex.body_bytes);
    string(line, "referer", c.referer);
    string(line, "user_agent", c.user_agent);
    if let Some(user) = c.authorization.and_then(basic_user) {
        string(line, "user", Some(&user));
    }
    if let Some(t) = e.took {
        // Milliseconds with three decimals, without float formatting.
        let micros = t.as_micros() as u64;
        number(line, "duration_ms", micros / 1000);
        let frac = micros % 1000;
        line.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
    string(line, "request_id", Some(env.request_id()));
    number(line, "pid", u64::from(log_format::pid()));
    line.extend_from_slice(if e.ex.aborted() {
        b",\"aborted\":true}"
    } else {
        b",\"aborted\":false}"
    });
}

/// `06/Nov/1994:08:49:37 +0000`, cut from the IMF-fixdate
/// `Sun, 06 Nov 1994 08:49:37 GMT` so there is one calendar routine.
fn clf_time(secs: u64) -> [u8; 26] {
    let imf = date::imf(secs);
    let mut out = *b"01/Jan/1970:00:00:00 +0000";
    out[0..2].copy_from_slice(&imf[5..7]);
    out[3..6].copy_from_slice(&imf[8..11]);
    out[7..11].copy_from_slice(&imf[12..16]);
    out[12..20].copy_from_slice(&imf[17..25]);
    out
}

/// Client-controlled bytes cannot forge log lines: quotes, backslashes,
/// control and non-ASCII bytes are written as escapes.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = bytes;
    // Runs of plain bytes are copied whole.
    while !rest.is_empty() {
        let run = rest
            .iter()
            .position(|&b| !(0x20..=0x7e).contains(&b) || b == b'"' || b == b'\\')
            .unwrap_or(rest.len());
        out.extend_from_slice(&rest[..run]);
        let Some((&b, after)) = rest[run..].split_first() else {
            break;
        };
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            _ => out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
        }
        rest = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_time_matches_apache_format() {
        assert_eq!(&clf_time(784111777), b"06/Nov/1994:08:49:37 +0000");
    }

    #[test]
    fn escapes_forgery_attempts() {
        let mut out = Vec::new();
        escape_into(&mut out, b"a\"b\n\\");
        assert_eq!(out, b"a\\\"b\\x0a\\\\");
    }
}
