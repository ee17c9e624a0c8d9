//! The [`App`] trait and the [`export_app!`](crate::export_app) descriptor.

use std::ffi::c_char;
use std::mem::size_of;

use super::body::Body;
use super::config::Config;
use super::environ::Environ;
use super::error::Error;
use super::raw;
use super::response::StartResponse;
use crate::ffi::{nwsgi_app, NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR, NWSGI_APP_THREAD_SAFE, NWSGI_MAGIC};

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

/// The descriptor for `A` (used by `export_app!`).
#[doc(hidden)]
pub const fn descriptor<A: App>(name: *const c_char) -> nwsgi_app {
    nwsgi_app {
        magic: NWSGI_MAGIC,
        abi_major: NWSGI_ABI_MAJOR,
        abi_minor: NWSGI_ABI_MINOR,
        struct_size: size_of::<nwsgi_app>() as u32,
        flags: if A::THREAD_SAFE {
            NWSGI_APP_THREAD_SAFE
        } else {
            0
        },
        init: Some(raw::init::<A>),
        call: Some(raw::call::<A>),
        shutdown: Some(raw::shutdown::<A>),
        name,
    }
}

/// `name` plus a NUL, as an array of exactly `N` bytes (used by
/// `export_app!`); fails to compile if `name` contains a NUL.
#[doc(hidden)]
pub const fn c_name<const N: usize>(name: &str) -> [u8; N] {
    let bytes = name.as_bytes();
    assert!(bytes.len() + 1 == N, "c_name: N must be name.len() + 1");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i] != 0, "App::NAME must not contain a NUL byte");
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Export an [`App`] as the plugin's `nwsgi_app` descriptor.
///
/// `export_app!(MyApp)` exports the symbol `app` (what `host serve
/// ./libmy.so` looks for by default); `export_app!(MyApp, other)` exports
/// `other` (served as `./libmy.so:other`). One library may export several.
///
/// ```ignore
/// abi::export_app!(Hello);          // symbol `app`
/// abi::export_app!(Admin, admin);   // symbol `admin`
/// ```
#[macro_export]
macro_rules! export_app {
    ($app:ty) => {
        $crate::export_app!($app, app);
    };
    ($app:ty, $symbol:ident) => {
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static $symbol: $crate::ffi::nwsgi_app = {
            const NAME: &str = <$app as $crate::App>::NAME;
            static NAME_C: [u8; NAME.len() + 1] =
                $crate::__private::c_name::<{ NAME.len() + 1 }>(NAME);
            $crate::__private::descriptor::<$app>(if NAME.is_empty() {
                ::core::ptr::null()
            } else {
                NAME_C.as_ptr().cast()
            })
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_name_appends_nul() {
        const N: [u8; 4] = c_name::<4>("abc");
        assert_eq!(&N, b"abc\0");
        assert_eq!(c_name::<1>(""), [0]);
    }
}
