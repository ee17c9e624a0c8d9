//! The error log: where it goes (`--error-logfile`, reopened on USR1) and
//! what its lines look like (`--log-format text|json`, with the writing
//! process's pid on each).
//!
//! The file is opened and put in place of stderr (fd 2) with dup2: every
//! line the host writes, and whatever the plugin prints to stderr, goes to
//! it, in the master and in workers (which inherit fd 2). Reopening after
//! logrotate moved the file is the same open and dup2 again, in each
//! process (the master on USR1, each worker on the USR1 the master sends
//! on).
use std::fmt::{self, Write as _};
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::gateway::request_id;
use crate::runtime::log_format::{self, json_str_into, rfc3339_now, Style};

/// `--error-logfile`, when it names a file (not `-`).
static PATH: OnceLock<String> = OnceLock::new();

/// `--error-logfile`: `-` (or none) leaves stderr as it is; a path is
/// opened for appending and becomes fd 2. Called once, at start.
pub fn open(spec: &str) -> io::Result<()> {
    if spec == "-" {
        return Ok(());
    }
    redirect(spec)?;
    let _ = PATH.set(spec.to_string());
    Ok(())
}

/// USR1: the file again, by its name (a no-op without `--error-logfile`).
/// A failure leaves the old file in place, and says so in it.
pub fn reopen() {
    if let Some(path) = PATH.get() {
        if let Err(e) = redirect(path) {
            tracing::warn!("cannot reopen the error log {path}: {e}");
        }
    }
}

fn redirect(path: &str) -> io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    // SAFETY: both are open descriptors; dup2 replaces fd 2 atomically
    // (a write to stderr meanwhile goes to the old file or the new one).
    if unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A worker is starting (forked from the master): its own pid on its
/// lines, its own request-id prefix.
pub fn worker_started() {
    log_format::after_fork();
    request_id::reseed();
}

/// The style lines are written in now (HUP may change it).
static STYLE: AtomicU8 = AtomicU8::new(0);

pub fn set_style(style: Style) {
    STYLE.store(style as u8, Ordering::Relaxed);
}

fn style() -> Style {
    if STYLE.load(Ordering::Relaxed) == Style::Json as u8 {
        Style::Json
    } else {
        Style::Text
    }
}

/// The error log's line format, for `tracing_subscriber::fmt`:
///
/// text: `2026-12-03T16:31:45.123Z  INFO [4242] message key=value ...`
///
/// json: `{"time":..,"level":"info","pid":4242,"target":..,"message":..,
/// "request_id":..,"fields":{..}}` (`request_id` when the line is about a
/// request).
pub struct Lines;

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let time = rfc3339_now();
        let time = std::str::from_utf8(&time).unwrap_or("-");
        let pid = log_format::pid();
        match style() {
            Style::Text => {
                write!(w, "{time} {:>5} [{pid}] {}", meta.level(), fields.message)?;
                for (name, value) in &fields.rest {
                    match value {
                        Value::Str(s) => write!(w, " {name}={s:?}")?,
                        Value::Shown(s) | Value::Raw(s) => write!(w, " {name}={s}")?,
                    }
                }
                writeln!(w)
            }
            Style::Json => {
                let mut out = Vec::with_capacity(256);
                out.extend_from_slice(b"{\"time\":\"");
                out.extend_from_slice(time.as_bytes());
                out.extend_from_slice(b"\",\"level\":\"");
                out.extend_from_slice(level_name(*meta.level()).as_bytes());
                out.extend_from_slice(b"\",\"pid\":");
                log_format::decimal_into(&mut out, u64::from(pid));
                out.extend_from_slice(b",\"target\":\"");
                json_str_into(&mut out, meta.target().as_bytes());
                out.extend_from_slice(b"\",\"message\":\"");
                json_str_into(&mut out, fields.message.as_bytes());
                out.push(b'"');
                let mut rest = Vec::new();
                for (name, value) in &fields.rest {
                    let target = if *name == "request_id" {
                        &mut out
                    } else {
                        &mut rest
                    };
                    target.extend_from_slice(b",\"");
                    json_str_into(target, name.as_bytes());
                    target.extend_from_slice(b"\":");
                    match value {
                        Value::Raw(s) => target.extend_from_slice(s.as_bytes()),
                        Value::Str(s) | Value::Shown(s) => {
                            target.push(b'"');
                            json_str_into(target, s.as_bytes());
                            target.push(b'"');
                        }
                    }
                }
                out.extend_from_slice(b",\"fields\":{");
                if !rest.is_empty() {
                    // Past the leading comma.
                    out.extend_from_slice(&rest[1..]);
                }
                out.extend_from_slice(b"}}\n");
                // Only text went in (the JSON escapes keep it UTF-8).
                w.write_str(&String::from_utf8_lossy(&out))
            }
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// A field's value as the line shows it.
enum Value {
    /// A string field (quoted in text lines, as tracing does).
    Str(String),
    /// A `%`/`?` field, already made text by its Display/Debug.
    Shown(String),
    /// A number or bool (bare in JSON).
    Raw(String),
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.rest
                .push((field.name(), Value::Str(value.to_string())));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest
            .push((field.name(), Value::Raw(value.to_string())));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest
            .push((field.name(), Value::Raw(value.to_string())));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest
            .push((field.name(), Value::Raw(value.to_string())));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.rest
                .push((field.name(), Value::Shown(format!("{value:?}"))));
        }
    }
}
