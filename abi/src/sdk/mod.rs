//! The safe Rust SDK: everything a plugin author needs, with no `unsafe`.
//! The only `unsafe` lives in [`raw`], the boundary module.

mod app;
mod body;
mod config;
mod environ;
mod error;
mod log;
mod raw;
mod response;

pub use app::App;
pub use body::Body;
pub use config::Config;
pub use environ::{Environ, ErrorStream, Input};
pub use error::{AbiError, Error};
pub use log::HostLayer;
pub use raw::Headers;
pub use response::{Head, Header, StartResponse, Writer};

/// What `export_app!` expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use super::app::{c_name, descriptor};
}
