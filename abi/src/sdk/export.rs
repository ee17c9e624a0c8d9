//! [`export_app!`](crate::export_app): an [`App`] as the plugin's
//! `nwsgi_app` descriptor, whose functions are [`raw`]'s trampolines for it.
//!
//! Its own module so that the dependencies run one way: `export` uses both
//! [`App`] and [`raw`], `raw` uses [`App`], and `app` uses neither.

use std::ffi::c_char;
use std::mem::size_of;

use super::app::App;
use super::raw;
use crate::ffi::{nwsgi_app, NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR, NWSGI_APP_THREAD_SAFE, NWSGI_MAGIC};

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
///
/// The plugin must be built with `panic = "unwind"` (Cargo's default): the
/// SDK turns a panic into a logged 500 by catching it at the boundary, which
/// `panic = "abort"` makes impossible (the panic would kill the host's
/// worker process, its message unlogged). Under any other strategy the
/// expansion is a compile error. The `cfg` is in the expansion, so it is the
/// plugin crate's panic strategy that counts (the one a `cdylib` is linked
/// with), not this crate's: a host built with `panic = "abort"` may still
/// depend on this crate.
#[macro_export]
macro_rules! export_app {
    ($app:ty) => {
        $crate::export_app!($app, app);
    };
    ($app:ty, $symbol:ident) => {
        // `not(unwind)` rather than `abort`: any strategy that cannot be
        // caught (abort, or one added later) is refused.
        #[cfg(not(panic = "unwind"))]
        ::core::compile_error!(
            "abi::export_app!: a plugin must be built with panic = \"unwind\" (Cargo's \
             default), not \"abort\": under abort a panic in the plugin kills the host's \
             worker process and its message is lost. Remove `panic = \"abort\"` from the \
             Cargo profile (or `-C panic=abort` from RUSTFLAGS)"
        );
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
