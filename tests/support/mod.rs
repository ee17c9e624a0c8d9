//! Shared helpers for the integration tests.
//!
//! Every test starts its own `host` process on its own port (tests run in
//! parallel) and talks raw HTTP/1.1 to it, so the tests see the exact bytes
//! the server frames. Nothing here sleeps to synchronise: every wait is a
//! read, or a poll with a deadline, and every socket read has a timeout so a
//! hang fails the test instead of blocking CI.
//!
//! - [`artifacts`]: where the built binaries are; compiling the C plugins
//!   and fixtures with the system C compiler.
//! - [`server`]: running `host serve` / `host check` and capturing its logs.
//! - [`client`]: a raw HTTP/1.1 client and response parser.
//! - [`load`]: client threads that keep a server busy and count failed
//!   requests.
//! - [`json`]: just enough JSON to read the echo plugin's output.
//! - [`proxy`]: real nginx and HAProxy processes in front of a server.
//! - [`todo_api`]: the TODO API's requests and answers, shared by the
//!   axum and raw-SDK versions of it.
//! - [`cases`]: the case-file format of the HTTP/1.1 conformance corpus
//!   (`tests/corpus/`).

pub mod artifacts;
pub mod cases;
pub mod client;
pub mod json;
pub mod load;
pub mod proxy;
pub mod server;
pub mod todo_api;

use std::time::Duration;

/// How long any single wait (a socket read, a log line, a process exit) may
/// take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);
