//! `tracing` events into the host's log.
//!
//! A cdylib carries its own copy of `tracing` (and of its global
//! dispatcher), so the plugin installs its own subscriber during `init`:
//! a [`HostLayer`] on a `Registry`, which formats each event into one line
//! and hands it to `api->log`, with the request attached when the event
//! happens while the app serves one on this thread (`call`, or the body's
//! `next`/`close`): the host then prints the request's id and request line
//! (`request_id=... request="GET /path HTTP/1.1"`) and the app's name
//! (`app=`). No span is needed for that, so a request pays nothing for it.
//! Every level is forwarded; the host filters. (Panics are the gate's business: see
//! `raw::install_panic_hook`.)

use std::fmt::{self, Write as _};
use std::sync::Once;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

use crate::ffi;

/// The `nwsgi_log_level` for a `tracing` level.
pub(crate) fn level_code(level: Level) -> i32 {
    match level {
        Level::ERROR => ffi::NWSGI_LOG_ERROR,
        Level::WARN => ffi::NWSGI_LOG_WARN,
        Level::INFO => ffi::NWSGI_LOG_INFO,
        Level::DEBUG => ffi::NWSGI_LOG_DEBUG,
        Level::TRACE => ffi::NWSGI_LOG_TRACE,
    }
}

/// Install the host-forwarding subscriber as this library's global default,
/// once. If the application already installed one, that one stays.
pub(crate) fn install_subscriber() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(HostLayer);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// A layer that sends every event to the host's log as one line:
/// `span:span: message key=value ...`.
pub struct HostLayer;

impl<S> Layer<S> for HostLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = String::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                line.push_str(span.name());
                line.push_str(": ");
            }
        }
        line.push_str(&format_event(event));
        let meta = event.metadata();
        let (level, target) = (level_code(*meta.level()), meta.target());
        let (req, api) = super::raw::current_request();
        match api.or_else(super::host::host_api) {
            // SAFETY: `req` is the request whose call/next/close runs on this
            // thread right now (`current_request`), which `log` accepts; the
            // table is the validated one of its host.
            Some(api) if !req.is_null() => unsafe {
                super::host::log_with(api, req, level, target, &line)
            },
            _ => super::host::log(level, target, &line),
        }
    }
}

/// The event's message followed by its other fields as `key=value`.
pub(crate) fn format_event(event: &Event<'_>) -> String {
    let mut visitor = LineVisitor::default();
    event.record(&mut visitor);
    let mut line = visitor.message;
    if !visitor.fields.is_empty() {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&visitor.fields);
    }
    line
}

#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl LineVisitor {
    fn sep(&mut self) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
    }
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.sep();
            let _ = write!(self.fields, "{}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.sep();
            let _ = write!(self.fields, "{}={:?}", field.name(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Captures formatted lines instead of calling a host.
    struct Capture(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            self.0.lock().unwrap().push(format_event(event));
        }
    }

    #[test]
    fn formats_message_and_fields() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("hello {}", 42);
            tracing::warn!(user = "ann", n = 3, "who");
            tracing::error!(only = true);
        });
        let lines = lines.lock().unwrap();
        assert_eq!(*lines, ["hello 42", "who user=ann n=3", "only=true"]);
    }

    #[test]
    fn levels_map() {
        assert_eq!(level_code(Level::ERROR), 1);
        assert_eq!(level_code(Level::TRACE), 5);
    }
}
