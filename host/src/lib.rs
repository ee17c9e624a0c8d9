//! The NWSGI server's serving core, as a library a worker process runs
//! (`server::run`) and the fuzzer and benchmarks reach into.
//!
//! The request path, one module a step: accept and wait for a head
//! (`server`) → parse it (`parse`, `chunked`, `body`; `memo` for a head
//! seen just before) → build the environ
//! (`environ`) → call the plugin (`plugin`, `call`) → encode the response
//! (`response`, `date`) — with `conn` walking one connection through it.
pub mod access_log;
pub mod body;
pub mod call;
pub mod chunked;
pub mod conn;
pub mod date;
pub mod environ;
pub mod error;
pub mod io;
pub mod master;
pub mod memo;
pub mod parse;
pub mod plugin;
pub mod response;
pub mod scoreboard;
pub mod server;
pub mod staging;
pub mod worker;
