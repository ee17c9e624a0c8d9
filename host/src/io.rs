//! Blocking-with-deadline I/O on a nonblocking socket, for app threads.
//!
//! Sockets stay nonblocking for their whole life (the event loop needs
//! that); an app thread that must wait for a slow client polls this one
//! descriptor with a deadline instead of switching modes per request.
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::net::TcpStream;

/// Appends whatever is readable now (waiting until `deadline` for at least
/// one byte) to `buf`, reading at most `max` bytes. Ok(0) means the peer
/// closed its side.
pub fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + max, 0);
    let result = loop {
        match stream.read(&mut buf[start..]) {
            Ok(n) => break Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = wait(stream, libc::POLLIN, deadline) {
                    break Err(e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    buf.truncate(start + *result.as_ref().unwrap_or(&0));
    result
}

/// Writes all of `data`, waiting for the socket to drain until `deadline`.
pub fn write_all(stream: &mut TcpStream, mut data: &[u8], deadline: Instant) -> io::Result<()> {
    while !data.is_empty() {
        match stream.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait(stream, libc::POLLOUT, deadline)?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until the socket is ready for `events` or the deadline passes
/// (then TimedOut).
fn wait(stream: &TcpStream, events: libc::c_short, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut pfd = libc::pollfd {
            fd: stream.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: `pfd` is one valid pollfd on our stack for the duration of
        // the call, and the count passed is 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        match rc {
            0 => continue,
            n if n > 0 => return Ok(()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Raises the soft limit on open files to the hard limit, so that the
/// number of clients is bounded by what the administrator allows, not by
/// the 1024 most shells start with. Returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit, raising only the soft limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}
