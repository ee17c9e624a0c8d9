//! The NWSGI ABI: the C boundary between the `host` server and application
//! plugins (see `include/nwsgi.h`, the normative definition), and a safe Rust
//! SDK so plugin authors write no `unsafe`.
pub mod ffi;
