//! The serving core a worker process runs: the event loop and the app
//! threads, and what they share.
pub mod access_log;
mod event_loop;
pub mod scoreboard;
pub mod serve;

pub use event_loop::{run, Config, Shared, Stop};
