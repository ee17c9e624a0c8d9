//! The safe Rust SDK: everything a plugin author needs, with no `unsafe`.
//! The only `unsafe` lives in the two boundary modules: [`raw`], where the
//! host calls the plugin, and [`host`], where the plugin calls the host.

mod app;
mod body;
mod config;
mod environ;
mod error;
mod export;
#[cfg(feature = "tower")]
mod head_cache;
mod host;
mod log;
pub mod query;
mod raw;
#[cfg(feature = "tower")]
mod request_cache;
mod response;
pub mod route;
#[cfg(feature = "tower")]
mod service;
pub mod testing;

pub use app::App;
pub use body::Body;
pub use config::Config;
pub use environ::{Environ, ErrorStream, Input};
pub use error::{AbiError, Error};
pub use host::Headers;
pub use log::HostLayer;
pub use response::{Head, HeadBuilder, Header, StartResponse, Writer};
#[cfg(feature = "tower")]
pub use service::{RequestBody, RequestBodyError};

/// What `export_app!` expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use super::export::{c_name, descriptor};
    #[cfg(feature = "tower")]
    pub mod service {
        pub use super::super::service::{call, init, Prototype};
    }
}
