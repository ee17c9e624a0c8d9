//! The serving core a worker process runs: the event loop (`event_loop`),
//! which owns every wait on a client, and the app threads (`pool`), which
//! run application code (`serve`).
pub mod access_log;
mod claim;
pub mod config;
pub mod conn;
pub mod error_log;
mod event_loop;
pub mod intake;
pub mod log_format;
pub mod metrics;
mod pool;
pub mod rate;
pub mod scoreboard;
pub mod serve;
pub mod spool;

use std::sync::Arc;

pub use claim::{Claim, Stint};
pub use config::{Config, ProxyProtocol, Shared};

/// How the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// TERM (or a `-t` takeover): in-flight requests finished, or the
    /// graceful timeout passed, or a thread is stuck in the plugin
    /// (`drained` false: do not wait for the app threads).
    Graceful { drained: bool },
    /// INT/QUIT: stopped at once.
    Fast,
}

/// Serves on `listeners` until TERM, INT or QUIT. Returns after in-flight
/// requests are done (TERM), or at once (INT/QUIT, or TERM's graceful
/// timeout: then requests may still be running in the plugin).
pub fn run(
    listeners: Vec<crate::net::listener::Listener>,
    shared: Arc<Shared>,
) -> std::io::Result<Stop> {
    // Large buffers (a big head, a pipelined burst) come from mmap and go
    // back to the system when freed: glibc's default threshold adapts
    // upward after the first such free, and from then on keeps that memory
    // after a thousand clients that each sent most of a maximal head are
    // gone.
    // SAFETY: mallopt only changes allocator tuning.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    let lp = event_loop::Loop::new(listeners, Arc::clone(&shared))?;
    pool::run(lp, shared)
}
