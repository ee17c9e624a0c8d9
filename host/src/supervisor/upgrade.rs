//! Binary upgrade (USR2, `host upgrade -p`): the master re-executes the
//! host binary it was started from (the file now at that path: the point
//! of an upgrade is to run a binary that replaced it) with the same
//! command line, and hands it the listening sockets; the port is never
//! closed, so no client is refused.
//!
//! The old master is the new one's parent: it sees it exit (waitpid) if
//! it cannot start. The two also share a pipe, whose write end the new
//! master inherits: it writes `ready` once all its workers have booted, or
//! `error REASON` when it cannot serve. Only on `ready` does the old
//! master hand over: it releases the pidfile's lock (without removing the
//! file), leaves its unix socket files in place, closes its copies of the
//! listening sockets and drains its workers as TERM does. The new master,
//! having said `ready`, waits for the pidfile's lock and writes its pid.
//!
//! What the new master is told, in its environment: `HOST_UPGRADE_FDS`,
//! the listening sockets, in order (`N`, or `N:unlink` for a unix socket
//! whose file the master created and removes when it stops), and
//! `HOST_UPGRADE_PIPE`, the pipe's write end. The variables are removed
//! as they are read, so a program the plugin runs never sees them.
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Instant;

use crate::net::listener::{self, Bound, Listener, SocketFile};

/// The listening sockets a new master inherits.
const FDS_VAR: &str = "HOST_UPGRADE_FDS";
/// The write end of the pipe the new master reports on.
const PIPE_VAR: &str = "HOST_UPGRADE_PIPE";

/// How this process was started: what an upgrade runs again. Read at the
/// very start, before `--chdir`, and before anything could replace the
/// binary (after which `/proc/self/exe` names a deleted file).
#[derive(Debug, Clone)]
pub struct Origin {
    /// The binary's path, resolved (`/proc/self/exe` at start).
    exe: PathBuf,
    /// The whole command line, the program name included.
    args: Vec<OsString>,
    /// The working directory the command line was given in: a relative
    /// `-c FILE` means the same file again.
    cwd: PathBuf,
}

impl Origin {
    /// None if the binary's path or the working directory cannot be read
    /// (then USR2 says so and does nothing).
    pub fn capture() -> Option<Origin> {
        Some(Origin {
            exe: std::env::current_exe().ok()?,
            args: std::env::args_os().collect(),
            cwd: std::env::current_dir().ok()?,
        })
    }
}

/// The old master's view of the new one, until it is ready or has failed.
pub struct Successor {
    pub pid: i32,
    /// When it was started: it is stopped if it is not ready in time.
    pub started: Instant,
    /// The read end of the report pipe (non-blocking).
    pipe: File,
    /// Bytes read so far, up to a newline.
    said: Vec<u8>,
}

/// What the new master reported.
#[derive(Debug, PartialEq, Eq)]
pub enum News {
    Nothing,
    Ready,
    Failed(String),
}

impl Successor {
    /// Starts `origin` again with the listening sockets and, if the old
    /// master had one, the service manager's socket (`notify_env`: the
    /// variables the old master's notifier was started with).
    pub fn spawn(
        origin: &Origin,
        listeners: &[Listener],
        files: &[SocketFile],
        notify_env: &[(&'static str, OsString)],
    ) -> Result<Successor, String> {
        let mut fds: Vec<RawFd> = Vec::new();
        let mut described = Vec::new();
        for l in listeners {
            let fd = l.as_raw_fd();
            fds.push(fd);
            let owned = l
                .unix_path()
                .is_some_and(|path| files.iter().any(|f| f.path() == path));
            described.push(if owned {
                format!("{fd}:unlink")
            } else {
                fd.to_string()
            });
        }
        let (read, write) = pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
        let write_fd = write.as_raw_fd();
        fds.push(write_fd);
        let mut cmd = std::process::Command::new(&origin.exe);
        cmd.arg0(origin.args.first().cloned().unwrap_or_default())
            .args(origin.args.iter().skip(1))
            .current_dir(&origin.cwd)
            .env(FDS_VAR, described.join(","))
            .env(PIPE_VAR, write_fd.to_string())
            .envs(notify_env.iter().map(|(k, v)| (k, v)));
        // SAFETY: the hook runs in the forked child before exec and only
        // calls fcntl, which is async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                // Our descriptors are close-on-exec: these alone survive
                // the exec, at the same numbers.
                for &fd in &fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            })
        };
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", origin.exe.display()))?;
        // Ours closes: the pipe reaches end of file once the new master
        // (and its workers, which inherit it) are gone.
        drop(write);
        let pipe = File::from(read);
        set_nonblocking(&pipe).map_err(|e| format!("cannot set up the pipe: {e}"))?;
        Ok(Successor {
            pid: child.id() as i32,
            started: Instant::now(),
            pipe,
            said: Vec::new(),
        })
    }

    /// Reads what the new master said since the last look.
    pub fn poll(&mut self) -> News {
        let mut buf = [0u8; 1024];
        loop {
            match self.pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // A reason is one line; more than a page is not one.
                    if self.said.len() < 4096 {
                        self.said.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        parse(&self.said)
    }
}

/// The first complete line of a report.
fn parse(said: &[u8]) -> News {
    let Some(end) = said.iter().position(|&b| b == b'\n') else {
        return News::Nothing;
    };
    let line = String::from_utf8_lossy(&said[..end]);
    match line.split_once(' ') {
        _ if line == "ready" => News::Ready,
        Some(("error", why)) => News::Failed(why.to_string()),
        _ => News::Failed(format!("the new master said {line:?}")),
    }
}

/// The new master's side: the sockets and the pipe it was handed.
pub struct Handover {
    fds: Vec<(RawFd, bool)>,
    pipe: File,
}

impl Handover {
    /// What an upgrading master passed us, if this process is the new
    /// master of an upgrade. The variables are removed either way.
    pub fn from_env() -> Result<Option<Handover>, String> {
        let fds = std::env::var(FDS_VAR).ok();
        let pipe = std::env::var(PIPE_VAR).ok();
        for var in [FDS_VAR, PIPE_VAR] {
            // The master has not started a thread yet: nothing reads the
            // environment concurrently.
            std::env::remove_var(var);
        }
        let (Some(fds), Some(pipe)) = (fds, pipe) else {
            return Ok(None);
        };
        let number = |text: &str| {
            text.parse::<RawFd>()
                .ok()
                .filter(|fd| *fd > 2)
                .ok_or_else(|| format!("{FDS_VAR}/{PIPE_VAR}: {text:?} is not a descriptor"))
        };
        let fds = fds
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|item| match item.split_once(':') {
                Some((fd, "unlink")) => Ok((number(fd)?, true)),
                None => Ok((number(item)?, false)),
                Some(_) => Err(format!("{FDS_VAR}: {item:?} is not understood")),
            })
            .collect::<Result<Vec<_>, String>>()?;
        let pipe = number(&pipe)?;
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if unsafe { libc::fcntl(pipe, libc::F_GETFD) } < 0 {
            return Err(format!("{PIPE_VAR}={pipe}: not an open descriptor"));
        }
        // SAFETY: the descriptor is open (checked above) and was handed to
        // us for this alone; nothing else in this process owns it.
        let pipe = unsafe { File::from_raw_fd(pipe) };
        // Close-on-exec again, as every descriptor of ours.
        // SAFETY: F_SETFD only changes the descriptor's flags.
        unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        Ok(Some(Handover { fds, pipe }))
    }

    /// Takes over the listening sockets; the unix socket files the old
    /// master created become ours to remove when we stop.
    pub fn listeners(&self) -> Result<Bound, String> {
        let mut bound = Bound::default();
        for &(fd, unlink) in &self.fds {
            let l = listener::inherit(fd)
                .map_err(|e| format!("upgrade: inherited socket {fd}: {e}"))?;
            if unlink {
                if let Some(path) = l.unix_path() {
                    bound.files.extend(SocketFile::adopt(&path));
                }
            }
            bound.listeners.push(l);
        }
        Ok(bound)
    }

    /// A second handle on the pipe, to report a failure with once the
    /// `Handover` itself has gone to the master.
    pub fn reporter(&self) -> Option<Reporter> {
        self.pipe.try_clone().ok().map(|pipe| Reporter { pipe })
    }

    /// All workers are up: the old master may hand over.
    pub fn ready(mut self) {
        if let Err(e) = self.pipe.write_all(b"ready\n") {
            tracing::warn!("upgrade: cannot tell the old master we are ready: {e}");
        }
    }
}

/// Reports why the new master cannot serve.
pub struct Reporter {
    pipe: File,
}

impl Reporter {
    pub fn failed(mut self, why: &str) {
        let line = format!("error {}\n", why.replace('\n', " "));
        let _ = self.pipe.write_all(line.as_bytes());
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array, valid for the
    // call.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL only read and change the descriptor's flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports() {
        assert_eq!(parse(b""), News::Nothing);
        assert_eq!(parse(b"read"), News::Nothing, "a line not finished yet");
        assert_eq!(parse(b"ready\n"), News::Ready);
        assert_eq!(
            parse(b"error plugin x: init failed\n"),
            News::Failed("plugin x: init failed".into())
        );
        assert!(matches!(parse(b"what\n"), News::Failed(w) if w.contains("what")));
    }
}
