//! systemd socket activation (`sd_listen_fds(3)`, gunicorn's
//! `systemd.py`): systemd binds the sockets of a `.socket` unit and starts
//! the service with them open from fd 3 on, saying so in `LISTEN_PID` (the
//! pid they are meant for), `LISTEN_FDS` (how many) and `LISTEN_FDNAMES`
//! (their `FileDescriptorName=`s, colon-separated). The server then serves
//! those instead of binding anything itself, and the port stays bound
//! across restarts of the service: clients queue in the backlog meanwhile.
use std::os::fd::RawFd;

use crate::net::listener::{self, Listener};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Sockets passed to this process.
#[derive(Debug, PartialEq, Eq)]
pub struct Activation {
    /// How many, from fd 3 on.
    count: RawFd,
    /// Their names, where given.
    names: Vec<String>,
}

impl Activation {
    /// Reads and removes the variables, as `sd_listen_fds(1)` does, so a
    /// program the plugin runs does not take the sockets for its own.
    /// None if no sockets were passed to this pid.
    pub fn from_env() -> Result<Option<Activation>, String> {
        let pid = std::env::var("LISTEN_PID").ok();
        let fds = std::env::var("LISTEN_FDS").ok();
        let names = std::env::var("LISTEN_FDNAMES").ok();
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            // The master has not started a thread yet: nothing reads the
            // environment concurrently.
            std::env::remove_var(var);
        }
        let (Some(pid), Some(fds)) = (pid, fds) else {
            return Ok(None);
        };
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            // Meant for another process (a parent that did not clear them).
            return Ok(None);
        }
        let count: RawFd = fds
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("LISTEN_FDS={fds:?} is not a number"))?;
        if count == 0 {
            return Ok(None);
        }
        let names = names.map_or(Vec::new(), |s| s.split(':').map(String::from).collect());
        Ok(Some(Activation { count, names }))
    }

    /// Takes the passed sockets over, each with its name (or `fd://N`
    /// when unnamed). One that is not a listening stream socket is an
    /// error naming it.
    pub fn listeners(&self) -> Result<Vec<(String, Listener)>, String> {
        (0..self.count)
            .map(|i| {
                let fd = LISTEN_FDS_START + i;
                let name = self
                    .names
                    .get(i as usize)
                    .filter(|n| !n.is_empty() && *n != "unknown")
                    .map_or_else(|| format!("fd://{fd}"), |n| n.clone());
                let l = listener::inherit(fd)
                    .map_err(|e| format!("socket activation: fd {fd} ({name}): {e}"))?;
                Ok((name, l))
            })
            .collect()
    }
}
