//! The serving core a worker process runs: the event loop and the app
//! threads, and what they share.
pub mod access_log;
pub mod config;
mod event_loop;
pub mod scoreboard;
pub mod serve;
pub mod spool;

pub use config::{Config, Shared};
pub use event_loop::{run, Stop};
