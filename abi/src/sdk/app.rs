//! The [`App`] trait: what a plugin author implements.

use super::body::Body;
use super::config::Config;
use super::environ::Environ;
use super::error::{AbiError, Error};
use super::response::StartResponse;
use tracing::Level;

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
    /// An `Err` is logged (at ERROR, or DEBUG for a 4xx) and answered with
    /// what [`render_error`](Self::render_error) makes of it; when that is
    /// `None`, or the headers already went out, it becomes `NWSGI_ERROR`:
    /// the host answers 500 if nothing was sent yet, else aborts the
    /// connection.
    fn call(
        &self,
        environ: &mut Environ<'_>,
        start_response: &mut StartResponse<'_>,
    ) -> Result<Body, Error>;

    /// The response for an `Err` from [`call`](Self::call), or `None` for
    /// the host's own 500. The default, [`Error::to_response`], answers the
    /// status and body the error carries ([`Error::status`],
    /// [`Error::with_body`]) and leaves the rest to the host. Override it to
    /// give every error the app's shape, e.g. a JSON document:
    ///
    /// ```
    /// use abi::http::{Response, StatusCode};
    /// use abi::{App, Body, Config, Environ, Error, StartResponse};
    ///
    /// struct Api;
    ///
    /// impl App for Api {
    ///     fn init(_: &Config) -> Result<Self, String> {
    ///         Ok(Api)
    ///     }
    ///
    ///     fn call(&self, _: &mut Environ<'_>, _: &mut StartResponse<'_>) -> Result<Body, Error> {
    ///         Err(Error::status(StatusCode::NOT_FOUND))
    ///     }
    ///
    ///     fn render_error(&self, error: &Error) -> Option<Response<Vec<u8>>> {
    ///         let status = error.status_code().unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    ///         let body = format!(r#"{{"status":{}}}"#, status.as_u16());
    ///         Response::builder()
    ///             .status(status)
    ///             .header("content-type", "application/json")
    ///             .body(body.into_bytes())
    ///             .ok()
    ///     }
    /// }
    ///
    /// let client = abi::testing::Client::new(Api);
    /// let response = client.call(abi::http::Request::get("/x").body(()).unwrap());
    /// assert_eq!(response.status(), StatusCode::NOT_FOUND);
    /// assert_eq!(response.body(), br#"{"status":404}"#);
    /// ```
    ///
    /// If the app had started a response already, the rendered head
    /// replaces it (`start_response` with exc_info); if the headers were
    /// sent, the connection is aborted instead. A panic here is caught like
    /// one in `call`.
    fn render_error(&self, error: &Error) -> Option<http::Response<Vec<u8>>> {
        error.to_response()
    }

    /// Runs once when the worker retires, after the last request; the app is
    /// dropped right after.
    fn shutdown(&self) {}
}

/// Answer an `Err` from `call`: log it, then build the response the app
/// renders for it. `None`: answer `NWSGI_ERROR` (nothing rendered, or the
/// head could not be (re)started).
pub(crate) fn answer_error<A: App>(
    app: &A,
    error: &Error,
    start_response: &mut StartResponse<'_>,
    log: impl Fn(Level, &str),
) -> Option<Body> {
    if error.is_failure() {
        log(Level::ERROR, &format!("failed: {error}"));
    } else {
        log(Level::DEBUG, &format!("answered: {error}"));
    }
    let (parts, body) = app.render_error(error)?.into_parts();
    match start_response.start_parts(parts.status, &parts.headers, error.message()) {
        Ok(()) => Some(Body::from(body)),
        Err(e) => {
            let why = match e {
                AbiError::HeadersSent => "the headers were sent already",
                _ => "the host refused its head",
            };
            log(
                Level::ERROR,
                &format!("error response not sent: {why} ({e})"),
            );
            None
        }
    }
}
