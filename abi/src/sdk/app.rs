//! The [`App`] trait: what a plugin author implements.

use super::body::Body;
use super::config::Config;
use super::environ::Environ;
use super::error::Error;
use super::response::StartResponse;

/// An NWSGI application: PEP 3333's `app(environ, start_response)`.
///
/// Export it with [`export_app!`](crate::export_app). Panics in any method
/// (and in the body iterator) are caught at the boundary, logged to the host
/// and turned into `NWSGI_ERROR`.
pub trait App: Sized + Send + Sync + 'static {
    /// Display name (`nwsgi_app.name`), shown by `host check` and in logs.
    /// Empty means none. Must not contain NUL (checked at compile time).
    const NAME: &'static str = "";

    /// `NWSGI_APP_THREAD_SAFE`: `call`/`next`/`close` may run on several
    /// threads at once. When false the host serialises calls.
    const THREAD_SAFE: bool = true;

    /// Runs once per worker process before any request, on the main thread.
    /// An `Err` is reported to the host (`args->fail`), which then refuses to
    /// serve. Installed before this runs: a `tracing` subscriber forwarding
    /// events to the host's log.
    fn init(config: &Config) -> Result<Self, String>;

    /// One request. Call `start_response.start` (before returning a body or
    /// writing), then either write the body through `start_response.write`
    /// and return [`Body::empty`], or return the body.
    ///
    /// An `Err` is logged and becomes `NWSGI_ERROR`: the host answers 500 if
    /// nothing was sent yet, else aborts the connection.
    fn call(
        &self,
        environ: &mut Environ<'_>,
        start_response: &mut StartResponse<'_>,
    ) -> Result<Body, Error>;

    /// Runs once when the worker retires, after the last request; the app is
    /// dropped right after.
    fn shutdown(&self) {}
}
