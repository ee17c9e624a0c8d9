//! Blocking-with-deadline I/O on a nonblocking socket, for app threads.
//!
//! Sockets stay nonblocking for their whole life (the event loop needs
//! that); an app thread that must wait for a slow client polls this one
//! descriptor with a deadline instead of switching modes per request.
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

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
    buf.reserve(max);
    loop {
        match recv_append(stream, buf, max) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait(stream, libc::POLLIN, deadline)?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// One `recv` of at most `max` bytes into `buf`'s spare capacity (at most
/// what is spare), appended to its contents. The bytes are not zeroed
/// first, as `Read::read` into a resized Vec would: a 4 KiB memset per
/// read is measurable on the request path.
pub fn recv_append(stream: &TcpStream, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    // SAFETY: the pointer and length describe `len` bytes of `buf`'s
    // spare capacity, which recv may write (uninitialised memory is fine
    // for it to overwrite); the fd is the stream's, open while borrowed.
    let n = unsafe { libc::recv(stream.as_raw_fd(), spare.as_mut_ptr().cast(), len, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: recv initialised the first `n` (<= len) spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Writes all of `data`, waiting for the socket to drain for at most
/// `timeout` in all. The clock is read only once a write would block: the
/// common write goes out whole at once and needs no deadline.
pub fn write_all(stream: &mut TcpStream, mut data: &[u8], timeout: Duration) -> io::Result<()> {
    let mut deadline = None;
    while !data.is_empty() {
        match stream.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
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
