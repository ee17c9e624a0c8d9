//! The service manager's notification protocol (`sd_notify(3)`), spoken
//! by the master when systemd (or anything that sets `NOTIFY_SOCKET`)
//! started it: one datagram per state change on a unix datagram socket,
//! newline-separated `KEY=VALUE` lines. Written here in a few lines of std
//! rather than linking libsystemd.
//!
//! What the master says, and when (a unit with `Type=notify-reload`, or
//! `Type=notify` and `ExecReload=kill -HUP $MAINPID`, gets all of it
//! right):
//! - `READY=1` once the first generation of workers has booted: systemd
//!   then starts units ordered after this one, and not before the plugin
//!   is proven loadable;
//! - `RELOADING=1` with `MONOTONIC_USEC=` when a reload starts, and
//!   `READY=1` again once it is decided (swapped, refused or rolled back);
//! - `STOPPING=1` at TERM, INT or QUIT;
//! - `MAINPID=` the new master's pid when a binary upgrade (USR2) hands
//!   over to it: sent by the old master, the main pid until then;
//! - `STATUS=` with what is serving, whenever that changes;
//! - `WATCHDOG=1` every half `WATCHDOG_USEC` (when it is set, for this
//!   pid): the master's loop turns at least every 100 ms, so a master
//!   that stops turning it is restarted by systemd.
//!
//! The variables are removed from the environment, as
//! `sd_notify(unset_environment=1)` does: the workers, and programs the
//! plugin runs, are not the service, and must not speak for it.
//! The new master of an upgrade is the service from the handover on:
//! it alone is given them again (`Notifier::env`).
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// A connection to the service manager.
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `WATCHDOG_USEC / 2`, if the watchdog is on for this process.
    watchdog_every: Option<Duration>,
    next_ping: Instant,
    /// A reload started (`RELOADING=1` sent) and is not decided yet.
    reloading: bool,
    /// `READY=1` was sent once: the service is up.
    ready: bool,
    /// The last `STATUS=` sent, so an unchanged one is not sent again.
    status: String,
    /// `NOTIFY_SOCKET` and `WATCHDOG_USEC` as given: passed on to the new
    /// master of an upgrade, which is the service from then on.
    env: Vec<(&'static str, std::ffi::OsString)>,
}

impl Notifier {
    /// The manager named by `NOTIFY_SOCKET` (a path, or `@name` in the
    /// abstract namespace), if any. The variables are removed either way.
    pub fn from_env() -> Option<Notifier> {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            // The master has not started a thread: nothing reads the
            // environment concurrently.
            std::env::remove_var(var);
        }
        let socket = socket?;
        let mut env = vec![("NOTIFY_SOCKET", socket.clone())];
        // WATCHDOG_PID is not passed on: the new master's pid is not known
        // before it starts, and without the variable the watchdog is its.
        if let (Some(usec), true) = (
            &usec,
            pid.as_ref()
                .is_none_or(|p| p.trim().parse::<u32>().ok() == Some(std::process::id())),
        ) {
            env.push(("WATCHDOG_USEC", usec.into()));
        }
        let addr = match parse_addr(socket.as_encoded_bytes()) {
            Ok(addr) => addr,
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={socket:?} is not usable: {e}; not notifying");
                return None;
            }
        };
        let ours = pid.is_none_or(|p| p.trim().parse::<u32>().ok() == Some(std::process::id()));
        let watchdog_every = usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && ours)
            .map(|u| Duration::from_micros(u) / 2);
        let socket = match UnixDatagram::unbound() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot create a socket for NOTIFY_SOCKET: {e}; not notifying");
                return None;
            }
        };
        // A manager that stops reading must not block the master's loop.
        let _ = socket.set_nonblocking(true);
        Some(Notifier {
            socket,
            addr,
            watchdog_every,
            next_ping: Instant::now(),
            reloading: false,
            ready: false,
            status: String::new(),
            env,
        })
    }

    /// The variables a new master of an upgrade is started with.
    pub fn env(&self) -> &[(&'static str, std::ffi::OsString)] {
        &self.env
    }

    /// An upgrade's new master, `pid`, is the service from now on:
    /// systemd takes notifications from it (and watches it) instead. Sent
    /// by the old master, the main pid until then, which any
    /// `NotifyAccess=` accepts.
    pub fn main_pid(&self, pid: i32) {
        self.send(&format!(
            "MAINPID={pid}\nSTATUS=upgraded: master {pid} serving"
        ));
    }

    /// Sends one message (lines joined by `\n`). A manager that is gone
    /// or full loses it: notification never stops the server.
    fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            tracing::debug!("sd_notify {message:?} not sent: {e}");
        }
    }

    /// The first generation is up (sent once; `status` with it).
    pub fn ready(&mut self, status: &str) {
        if !self.ready {
            self.ready = true;
            self.status = status.to_string();
            self.send(&format!("READY=1\nSTATUS={status}"));
        }
    }

    /// A reload starts.
    pub fn reloading(&mut self) {
        if !self.reloading {
            self.reloading = true;
            self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
        }
    }

    /// The reload is decided: serving again, as `status` says.
    pub fn reloaded(&mut self, status: &str) {
        if std::mem::take(&mut self.reloading) {
            self.status = status.to_string();
            self.send(&format!("READY=1\nSTATUS={status}"));
        }
    }

    /// The server stops (`status`: how).
    pub fn stopping(&mut self, status: &str) {
        self.status = status.to_string();
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }

    /// What is serving, if it changed since last said.
    pub fn status(&mut self, status: &str) {
        if self.status != status {
            self.status = status.to_string();
            self.send(&format!("STATUS={status}"));
        }
    }

    /// `WATCHDOG=1` if half the watchdog period passed since the last.
    pub fn feed_watchdog(&mut self, now: Instant) {
        if let Some(every) = self.watchdog_every {
            if now >= self.next_ping {
                self.send("WATCHDOG=1");
                self.next_ping = now + every;
            }
        }
    }
}

/// `/run/systemd/notify`, or `@name` for the abstract namespace.
fn parse_addr(text: &[u8]) -> io::Result<SocketAddr> {
    match text {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        [b'/', ..] => {
            let path = std::ffi::OsStr::from_bytes(text);
            SocketAddr::from_pathname(path)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an @abstract name",
        )),
    }
}

/// CLOCK_MONOTONIC in microseconds, as `RELOADING=1` wants it beside.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, valid
    // for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = parse_addr(b"@host-test").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"host-test"[..]));
        let p = parse_addr(b"/run/systemd/notify").unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(parse_addr(b"relative").is_err());
        assert!(parse_addr(b"").is_err());
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("host-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&addr).unwrap();
        manager
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut n = Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            addr,
            watchdog_every: None,
            next_ping: Instant::now(),
            reloading: false,
            ready: false,
            status: String::new(),
            env: Vec::new(),
        };
        let mut buf = [0u8; 256];
        let mut recv = || {
            let len = manager.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..len]).into_owned()
        };
        n.ready("up");
        assert_eq!(recv(), "READY=1\nSTATUS=up");
        n.ready("again");
        n.reloaded("not reloading");
        n.status("up");
        n.status("changed");
        assert_eq!(recv(), "STATUS=changed", "nothing sent in between");
        n.reloading();
        assert!(recv().starts_with("RELOADING=1\nMONOTONIC_USEC="));
        n.reloaded("new");
        assert_eq!(recv(), "READY=1\nSTATUS=new");
        n.main_pid(4242);
        assert_eq!(recv(), "MAINPID=4242\nSTATUS=upgraded: master 4242 serving");
    }
}
