//! The NWSGI server's serving core, as a library a worker process runs
//! (`runtime::run`) and the fuzzer and benchmarks reach into.
//!
//! The request path, one layer a directory: `net` (listening sockets and
//! the client's byte stream) → `runtime` (the event loop that accepts and
//! waits on clients, the app threads that serve them) → `http1` (parse the
//! head and body, encode the response) → `gateway` (the environ, the plugin
//! call and the host callbacks). `supervisor` is the process model around
//! it: the master and its workers. `text` shows outside bytes in logs.
/// An error that costs service: a worker that crashed, hung or could not
/// boot, a deploy that failed or was rolled back, a loop that failed. Logged
/// at ERROR, and the only lines `--log-level critical` shows (gunicorn's
/// critical level: worker timeouts and the like).
#[macro_export]
macro_rules! critical {
    ($($arg:tt)*) => { ::tracing::error!(target: "host::critical", $($arg)*) };
}

pub mod gateway;
pub mod http1;
pub mod net;
pub mod runtime;
pub mod supervisor;
pub mod text;
