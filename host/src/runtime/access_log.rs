//! The access log: one line per request in gunicorn's default format
//! (Apache combined), to a file or stdout (`--access-logfile -`). A
//! response the client did not get whole (the app failed after its head
//! went out, it broke its own framing, or the client went away) has
//! ` aborted` after the combined fields. The byte count is the body bytes
//! handed to the connection.
//!
//! Written directly rather than through `tracing` so the line format is
//! exactly the one log tools expect, whatever the log level.
use std::fs::{File, OpenOptions};
use std::io::{self, LineWriter, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http1::date::format_imf;
use crate::http1::parse::Version;

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
    pub remote: &'a [u8],
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub version: Version,
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    /// The client did not get the whole response.
    pub aborted: bool,
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

    pub fn record(&self, e: &Entry<'_>) {
        let mut line = Vec::with_capacity(160);
        // A unix socket's client has no address: `-`, as for any absent
        // field of the common log format.
        line.extend_from_slice(if e.remote.is_empty() { b"-" } else { e.remote });
        line.extend_from_slice(b" - - [");
        line.extend_from_slice(&clf_time(now_secs()));
        line.extend_from_slice(b"] \"");
        line.extend_from_slice(e.method);
        line.push(b' ');
        escape_into(&mut line, e.target);
        line.push(b' ');
        line.extend_from_slice(e.version.as_str().as_bytes());
        let _ = write!(line, "\" {} {} \"", e.status, e.bytes);
        escape_into(&mut line, e.referer.unwrap_or(b"-"));
        line.extend_from_slice(b"\" \"");
        escape_into(&mut line, e.user_agent.unwrap_or(b"-"));
        line.push(b'"');
        if e.aborted {
            line.extend_from_slice(b" aborted");
        }
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A full disk must not fail requests; the error log says why, once
        // in a while.
        match out.w.write_all(&line) {
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `06/Nov/1994:08:49:37 +0000`, cut from the IMF-fixdate
/// `Sun, 06 Nov 1994 08:49:37 GMT` so there is one calendar routine.
fn clf_time(secs: u64) -> [u8; 26] {
    let imf = format_imf(secs);
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
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
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
