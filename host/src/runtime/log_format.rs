//! What log lines look like: the access log's `--access-log-format` (the
//! atoms of gunicorn's `access_log_format`, compiled once at start into a
//! list of pieces), `--log-format text|json`, and the bits both logs share
//! (timestamps, the process id).
//!
//! gunicorn's atoms, as its `glogging.py` fills them:
//! `h` remote address, `l` `-`, `u` Basic-auth user, `t` `[time]`, `r`
//! request line, `s` status, `m` method, `U` path (PATH_INFO), `q` query,
//! `H` protocol, `b` body bytes (CLF), `B` body bytes, `f` referer, `a`
//! user agent, `T` seconds, `D` microseconds, `M` milliseconds, `L`
//! seconds with microseconds, `p` `<pid>`, `{name}i` request header,
//! `{name}o` response header, `{name}e` environ variable. Absent values are
//! `-`. `%({x-request-id}i)s` is the request's effective id (gunicorn has
//! no atom for it).
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::http1::date::civil_from_days;

/// gunicorn's default `access_log_format` (Apache combined).
pub const DEFAULT_ACCESS_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// `--log-format`: how both logs write a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// One piece of a compiled access-log format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(Box<[u8]>),
    /// `h`
    Remote,
    /// `l`: always `-` (identd).
    Dash,
    /// `u`
    User,
    /// `t`
    Time,
    /// `r`
    RequestLine,
    /// `s`
    Status,
    /// `m`
    Method,
    /// `U`
    Path,
    /// `q`
    Query,
    /// `H`
    Protocol,
    /// `b`: gunicorn says `-` only when it knows no count; here the count
    /// is always known, so it is `B`.
    BytesClf,
    /// `B`
    Bytes,
    /// `f`
    Referer,
    /// `a`
    UserAgent,
    /// `T`
    Secs,
    /// `D`
    Micros,
    /// `M`
    Millis,
    /// `L`
    SecsFrac,
    /// `p`
    Pid,
    /// `{x-request-id}i`
    RequestId,
    /// `{name}i`, lowercase name.
    RequestHeader(Box<[u8]>),
    /// `{name}o`, lowercase name.
    ResponseHeader(Box<[u8]>),
    /// `{name}e`, upper-case variable name (`{remote_addr}e`: REMOTE_ADDR;
    /// `wsgi.` names keep their case).
    Environ(Box<[u8]>),
}

/// A compiled `--access-log-format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessFormat {
    pub pieces: Vec<Piece>,
}

impl Default for AccessFormat {
    fn default() -> AccessFormat {
        AccessFormat::parse(DEFAULT_ACCESS_FORMAT).expect("the default format parses")
    }
}

impl AccessFormat {
    /// Compiles a gunicorn format string: `%(atom)s` (or `%(atom)d` for a
    /// number), `%%` for `%`, anything else as is. An unknown atom, or a
    /// `%` that starts neither, is an error naming it.
    pub fn parse(format: &str) -> Result<AccessFormat, String> {
        let bytes = format.as_bytes();
        let mut pieces = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'%' {
                lit.push(bytes[i]);
                i += 1;
                continue;
            }
            match bytes.get(i + 1) {
                Some(b'%') => {
                    lit.push(b'%');
                    i += 2;
                    continue;
                }
                Some(b'(') => {}
                _ => return Err(format!("at byte {i}: '%' must start %(atom)s or %%")),
            }
            let name_at = i + 2;
            // A `{name}` may hold `)`: the atom ends at the `)` after `}`.
            let search_from = if bytes.get(name_at) == Some(&b'{') {
                bytes[name_at..]
                    .iter()
                    .position(|&b| b == b'}')
                    .map_or(name_at, |p| name_at + p)
            } else {
                name_at
            };
            let Some(close) = bytes[search_from..].iter().position(|&b| b == b')') else {
                return Err(format!("at byte {i}: '%(' without ')'"));
            };
            let close = search_from + close;
            let name = &format[name_at..close];
            let piece = atom(name)
                .ok_or_else(|| format!("unknown atom %({name})s (see the README's atom table)"))?;
            match bytes.get(close + 1) {
                Some(b's') => {}
                Some(b'd') if numeric(&piece) => {}
                _ => return Err(format!("%({name}) must be followed by 's'")),
            }
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut lit).into()));
            }
            pieces.push(piece);
            i = close + 2;
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit.into()));
        }
        Ok(AccessFormat { pieces })
    }

    /// Whether a line needs the request's start time.
    pub fn needs_clock(&self) -> bool {
        self.pieces.iter().any(|p| {
            matches!(
                p,
                Piece::Secs | Piece::Micros | Piece::Millis | Piece::SecsFrac
            )
        })
    }

    /// Whether a line needs these request headers (one scan finds them).
    pub fn needs_common_headers(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::User | Piece::Referer | Piece::UserAgent))
    }
}

fn numeric(p: &Piece) -> bool {
    matches!(
        p,
        Piece::Status | Piece::Bytes | Piece::Secs | Piece::Micros | Piece::Millis
    )
}

fn atom(name: &str) -> Option<Piece> {
    if let Some(inner) = name.strip_prefix('{') {
        let (key, kind) = inner.rsplit_once('}')?;
        if key.is_empty() {
            return None;
        }
        let lower: Box<[u8]> = key.to_ascii_lowercase().into_bytes().into();
        return match kind {
            "i" if &*lower == b"x-request-id" => Some(Piece::RequestId),
            "i" => Some(Piece::RequestHeader(lower)),
            "o" => Some(Piece::ResponseHeader(lower)),
            "e" => Some(Piece::Environ(environ_key(key))),
            _ => None,
        };
    }
    Some(match name {
        "h" => Piece::Remote,
        "l" => Piece::Dash,
        "u" => Piece::User,
        "t" => Piece::Time,
        "r" => Piece::RequestLine,
        "s" => Piece::Status,
        "m" => Piece::Method,
        "U" => Piece::Path,
        "q" => Piece::Query,
        "H" => Piece::Protocol,
        "b" => Piece::BytesClf,
        "B" => Piece::Bytes,
        "f" => Piece::Referer,
        "a" => Piece::UserAgent,
        "T" => Piece::Secs,
        "D" => Piece::Micros,
        "M" => Piece::Millis,
        "L" => Piece::SecsFrac,
        "p" => Piece::Pid,
        _ => return None,
    })
}

/// gunicorn matches `{name}e` against the environ's keys lowercased;
/// CGI variables are upper case, `wsgi.*` lower.
fn environ_key(key: &str) -> Box<[u8]> {
    if key.to_ascii_lowercase().starts_with("wsgi.") {
        key.to_ascii_lowercase().into_bytes().into()
    } else {
        key.to_ascii_uppercase().into_bytes().into()
    }
}

/// How the access log writes lines, decided at start (or HUP) from the
/// settings; workers get it with their `Config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessStyle {
    pub format: AccessFormat,
    pub style: Style,
    /// The format reads Authorization, Referer or User-Agent: one scan of
    /// the request headers finds all three.
    pub scan: bool,
    /// Read a clock when a request starts (durations, or JSON lines), and
    /// only then: without an access log that asks, the request path does
    /// not.
    pub clock: bool,
}

impl AccessStyle {
    /// `logging`: whether there is an access log at all.
    pub fn new(format: AccessFormat, style: Style, logging: bool) -> AccessStyle {
        let clock = logging && (style == Style::Json || format.needs_clock());
        AccessStyle {
            scan: format.needs_common_headers(),
            format,
            style,
            clock,
        }
    }
}

impl Default for AccessStyle {
    fn default() -> AccessStyle {
        AccessStyle::new(AccessFormat::default(), Style::Text, false)
    }
}

/// This process's id, read once per process (`after_fork` in a worker).
static PID: AtomicU32 = AtomicU32::new(0);

pub fn pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id();
            PID.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// A forked child: its own pid from now on.
pub fn after_fork() {
    PID.store(std::process::id(), Ordering::Relaxed);
}

thread_local! {
    /// The second this thread formatted last, and its text (the calendar
    /// work is done once a second; the milliseconds every line).
    static LAST_SECOND: Cell<(u64, [u8; 24])> = const { Cell::new((u64::MAX, [0; 24])) };
}

/// `2026-12-03T16:31:45.123Z` (UTC, milliseconds) of the realtime clock.
pub fn rfc3339_now() -> [u8; 24] {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, millis) = (d.as_secs(), d.subsec_millis());
    let mut text = LAST_SECOND.with(|last| {
        let (at, text) = last.get();
        if at == secs {
            text
        } else {
            let text = rfc3339(secs, 0);
            last.set((secs, text));
            text
        }
    });
    text[20] = b'0' + (millis / 100) as u8;
    text[21] = b'0' + (millis / 10 % 10) as u8;
    text[22] = b'0' + (millis % 10) as u8;
    text
}

pub fn rfc3339(secs: u64, millis: u32) -> [u8; 24] {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let sod = secs % 86_400;
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for k in (0..width).rev() {
            out[at + k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.min(9999));
    put(5, 2, u64::from(month));
    put(8, 2, u64::from(day));
    put(11, 2, sod / 3600);
    put(14, 2, sod / 60 % 60);
    put(17, 2, sod % 60);
    put(20, 3, u64::from(millis));
    out
}

/// Appends `bytes` as the inside of a JSON string: valid UTF-8 as is
/// (quotes, backslashes and controls escaped), invalid bytes as U+FFFD.
/// Runs of plain ASCII are copied whole.
pub fn json_str_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
    let mut rest = bytes;
    while !rest.is_empty() {
        let run = rest.iter().position(|&b| !plain(b)).unwrap_or(rest.len());
        out.extend_from_slice(&rest[..run]);
        rest = &rest[run..];
        let Some(&b) = rest.first() else {
            break;
        };
        if b < 0x80 {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
            }
            rest = &rest[1..];
            continue;
        }
        // Non-ASCII: the valid characters up to the next ASCII byte, or
        // one U+FFFD for an invalid sequence.
        let chunk = rest.utf8_chunks().next().expect("rest is not empty");
        let valid = chunk.valid().as_bytes();
        if valid.is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
            rest = &rest[chunk.invalid().len()..];
        } else {
            let wide = valid.iter().position(|&b| b < 0x80).unwrap_or(valid.len());
            out.extend_from_slice(&valid[..wide]);
            rest = &rest[wide..];
        }
    }
}

/// Appends `n` in decimal.
pub fn decimal_into(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// The user of a `Basic` Authorization value, as gunicorn reads it (the
/// part of the decoded credentials before the first `:`); None when it is
/// not Basic or does not decode.
pub fn basic_user(authorization: &[u8]) -> Option<Vec<u8>> {
    let (scheme, rest) = match authorization.iter().position(|&b| b == b' ') {
        Some(at) => (&authorization[..at], &authorization[at + 1..]),
        None => return None,
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64_decode(rest.trim_ascii())?;
    std::str::from_utf8(&decoded).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[..colon].to_vec())
}

fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text {
        acc = acc << 6 | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_format_compiles_to_combined_pieces() {
        let f = AccessFormat::default();
        assert_eq!(f.pieces[0], Piece::Remote);
        assert_eq!(f.pieces.len(), 18);
        assert!(!f.needs_clock());
    }

    #[test]
    fn atoms_and_errors() {
        let f = AccessFormat::parse(
            "%(D)d %({X-Foo}i)s %({Content-Type}o)s %({x-request-id}i)s 100%% %({remote_addr}e)s",
        )
        .unwrap();
        assert_eq!(
            f.pieces,
            vec![
                Piece::Micros,
                Piece::Literal((*b" ").into()),
                Piece::RequestHeader((*b"x-foo").into()),
                Piece::Literal((*b" ").into()),
                Piece::ResponseHeader((*b"content-type").into()),
                Piece::Literal((*b" ").into()),
                Piece::RequestId,
                Piece::Literal((*b" 100% ").into()),
                Piece::Environ((*b"REMOTE_ADDR").into()),
            ]
        );
        assert!(f.needs_clock());
        for bad in [
            "%(z)s", "%(h)x", "%(h", "50%", "%(a)d", "%({}i)s", "%({x}z)s",
        ] {
            assert!(AccessFormat::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn basic_auth_user() {
        // "alice:secret"
        assert_eq!(basic_user(b"Basic YWxpY2U6c2VjcmV0").unwrap(), b"alice");
        assert_eq!(basic_user(b"basic YWxpY2U6c2VjcmV0").unwrap(), b"alice");
        assert!(basic_user(b"Bearer YWxpY2U6c2VjcmV0").is_none());
        assert!(basic_user(b"Basic !!!").is_none());
        // "nocolon"
        assert!(basic_user(b"Basic bm9jb2xvbg==").is_none());
    }

    #[test]
    fn timestamps() {
        assert_eq!(&rfc3339(784111777, 5), b"1994-11-06T08:49:37.005Z");
    }

    #[test]
    fn json_strings() {
        let mut out = Vec::new();
        json_str_into(&mut out, b"a\"\\\n\x01\xff\xc3\xa9");
        assert_eq!(out, "a\\\"\\\\\\n\\u0001\u{fffd}é".as_bytes());
    }
}
