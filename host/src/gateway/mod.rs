//! The plugin boundary: loading a plugin (`plugin`), routing between
//! several (`mount`), what its file says
//! about its build (`build`), the environ it reads (`environ`), the host API
//! it calls back into (`api`), and the exchange those callbacks act on
//! (`exchange`). Every `unsafe` dealing with plugin pointers lives here.
pub mod api;
pub mod build;
pub mod environ;
pub mod exchange;
pub mod mount;
pub mod plugin;
pub mod request_id;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `default`: no host panic ever unwinds
/// into plugin code.
pub fn ffi_guard<T>(default: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        tracing::error!("internal error: a host callback panicked; the request is failed");
        default
    })
}
