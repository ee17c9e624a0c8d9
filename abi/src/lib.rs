//! The NWSGI ABI: the C boundary between the `host` server and application
//! plugins (see `include/nwsgi.h`, the normative definition), and a safe Rust
//! SDK so plugin authors write no `unsafe`.
//!
//! * [`ffi`]: the `#[repr(C)]` mirror of the header, one for one.
//! * The SDK (re-exported here): implement [`App`], export it with
//!   [`export_app!`], build the crate as a `cdylib`. It speaks the [`http`]
//!   crate's types ([`Environ::method`], [`Environ::uri`],
//!   [`Environ::headers`], [`StartResponse::status`]); an [`Error`] may
//!   carry the response it should be answered with, and
//!   [`App::render_error`] shapes them all.
//! * [`testing`]: run an app in-process and call it with an
//!   [`http::Request`], for unit tests without a host.
//!
//! # Example
//!
//! ```
//! use abi::{App, Body, Config, Environ, Error, StartResponse};
//! use std::io::Read;
//!
//! struct Greeter {
//!     greeting: String,
//! }
//!
//! impl App for Greeter {
//!     const NAME: &'static str = "greeter";
//!
//!     fn init(config: &Config) -> Result<Self, String> {
//!         let greeting = config.get("greeting").unwrap_or("Hello").to_owned();
//!         abi::tracing::info!(%greeting, "greeter ready"); // goes to the host's log
//!         Ok(Greeter { greeting })
//!     }
//!
//!     fn call(&self, environ: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
//!         match environ.path_info() {
//!             b"/stream" => {
//!                 start.start("200 OK", &[("Content-Type", "text/plain")])?;
//!                 // Streamed (chunked): dropped when the host closes the body.
//!                 Ok(Body::from_iter((0..3).map(|i| format!("part {i}\n"))))
//!             }
//!             b"/upload" => {
//!                 let mut data = Vec::new();
//!                 environ.input().read_to_end(&mut data)?; // wsgi.input
//!                 start.start("200 OK", &[("Content-Type", "text/plain")])?;
//!                 Ok(Body::from(format!("{} bytes\n", data.len())))
//!             }
//!             _ => {
//!                 start.start("200 OK", &[("Content-Type", "text/plain")])?;
//!                 // One chunk: the host frames it with Content-Length.
//!                 Ok(Body::from(format!("{}, World!", self.greeting)))
//!             }
//!         }
//!     }
//! }
//!
//! abi::export_app!(Greeter); // `#[no_mangle] static app: nwsgi_app`
//! ```
//!
//! Panics in `init`, `call`, the body iterator (and its `Drop`) or
//! `shutdown` never cross into the host: they are caught, logged with their
//! message, and turned into `NWSGI_ERROR` (a 500 if nothing was sent yet).
//! That needs the plugin built with `panic = "unwind"` (Cargo's default):
//! under `panic = "abort"`, [`export_app!`] does not compile.
pub mod ffi;
mod sdk;

/// The `http` crate whose types the SDK speaks ([`http::Method`],
/// [`http::Uri`], [`http::HeaderMap`], [`http::StatusCode`]), so plugins
/// need no dependency of their own to name them.
pub use http;
pub use sdk::*;
/// The `tracing` this SDK forwards to the host's log: plugins can use
/// `abi::tracing::info!(..)` without a dependency of their own.
pub use tracing;
