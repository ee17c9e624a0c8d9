//! The suite's ceiling: what one thread can do when it does nothing but move
//! bytes. A plain libc epoll loop (level-triggered), nonblocking accept; on
//! each readable connection it reads once, counts the complete requests in
//! what was read (occurrences of "\r\n\r\n", including a terminator split
//! across reads) and answers them with that many copies of one canned
//! response in ONE write. No parsing, no bodies, no Date formatting: any
//! real server should land below it. Usage: `ceiling ADDR` (IPv4 HOST:PORT).

use std::io;
use std::net::{SocketAddrV4, TcpListener};
use std::os::fd::{IntoRawFd, RawFd};

/// About the size of the other servers' answers (they carry these headers).
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: text/plain\r\n\
Date: Sat, 21 Nov 2026 10:03:27 GMT\r\n\
Server: ceiling\r\n\
Content-Length: 13\r\n\
\r\n\
Hello, World!";

const READ_BUF: usize = 64 * 1024;

#[derive(Default)]
struct Conn {
    open: bool,
    /// How much of "\r\n\r\n" the bytes read so far end with (0..=3).
    matched: u8,
    /// Responses the socket did not take yet (a partial write).
    pending: Vec<u8>,
}

/// Counts complete "\r\n\r\n" terminators in `data`, continuing a match
/// carried over from the previous read in `matched`.
fn count_terminators(data: &[u8], matched: &mut u8) -> usize {
    let mut m = *matched;
    let mut n = 0;
    for &b in data {
        m = match (m, b) {
            (0, b'\r') | (2, b'\r') => m + 1,
            (1, b'\n') => 2,
            (3, b'\n') => {
                n += 1;
                0
            }
            (_, b'\r') => 1,
            _ => 0,
        };
    }
    *matched = m;
    n
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn epoll_set(ep: RawFd, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: ep and fd are open descriptors; ev lives across the call.
    check(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) })?;
    Ok(())
}

fn close_conn(conns: &mut [Conn], fd: RawFd) {
    conns[fd as usize] = Conn::default();
    // SAFETY: fd is a connection this loop accepted and still owns.
    unsafe { libc::close(fd) };
}

/// Writes as much of `out` as the socket takes; returns the rest.
fn write_some(fd: RawFd, mut out: &[u8]) -> io::Result<&[u8]> {
    while !out.is_empty() {
        // SAFETY: out is a valid buffer of out.len() bytes.
        let n = unsafe { libc::write(fd, out.as_ptr().cast(), out.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => break,
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        out = &out[n as usize..];
    }
    Ok(out)
}

fn main() -> io::Result<()> {
    let addr: SocketAddrV4 = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .expect("ADDR must be IPv4 HOST:PORT");
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let lfd = listener.into_raw_fd();

    // SAFETY: plain syscall.
    let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    epoll_set(ep, libc::EPOLL_CTL_ADD, lfd, libc::EPOLLIN as u32)?;

    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut out: Vec<u8> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let one: libc::c_int = 1;

    loop {
        // SAFETY: events has events.len() slots.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as RawFd;
            let flags = ev.events;
            if fd == lfd {
                loop {
                    // SAFETY: accept4 with no address out-parameters.
                    let c = unsafe {
                        libc::accept4(
                            lfd,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        )
                    };
                    if c < 0 {
                        break; // EAGAIN (or a transient error): back to epoll
                    }
                    // SAFETY: c is a fresh socket; `one` outlives the call.
                    unsafe {
                        libc::setsockopt(
                            c,
                            libc::IPPROTO_TCP,
                            libc::TCP_NODELAY,
                            (&one as *const libc::c_int).cast(),
                            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                        )
                    };
                    if conns.len() <= c as usize {
                        conns.resize_with(c as usize + 1, Conn::default);
                    }
                    conns[c as usize].open = true;
                    if epoll_set(ep, libc::EPOLL_CTL_ADD, c, libc::EPOLLIN as u32).is_err() {
                        close_conn(&mut conns, c);
                    }
                }
                continue;
            }
            if !conns.get(fd as usize).is_some_and(|c| c.open) {
                continue;
            }

            // Writable again: flush what a partial write left, then read again.
            if flags & libc::EPOLLOUT as u32 != 0 {
                let pending = std::mem::take(&mut conns[fd as usize].pending);
                match write_some(fd, &pending) {
                    Ok([]) => {
                        if epoll_set(ep, libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32).is_err() {
                            close_conn(&mut conns, fd);
                        }
                    }
                    Ok(rest) => conns[fd as usize].pending = rest.to_vec(),
                    Err(_) => close_conn(&mut conns, fd),
                }
                continue;
            }

            // SAFETY: buf has buf.len() writable bytes.
            let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r == 0 {
                close_conn(&mut conns, fd);
                continue;
            }
            if r < 0 {
                let e = io::Error::last_os_error();
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    close_conn(&mut conns, fd);
                }
                continue;
            }
            let requests = count_terminators(&buf[..r as usize], &mut conns[fd as usize].matched);
            if requests == 0 {
                continue;
            }
            out.clear();
            for _ in 0..requests {
                out.extend_from_slice(RESPONSE);
            }
            match write_some(fd, &out) {
                Ok([]) => {}
                Ok(rest) => {
                    // Stop reading until the socket takes the rest.
                    conns[fd as usize].pending = rest.to_vec();
                    if epoll_set(ep, libc::EPOLL_CTL_MOD, fd, libc::EPOLLOUT as u32).is_err() {
                        close_conn(&mut conns, fd);
                    }
                }
                Err(_) => close_conn(&mut conns, fd),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::count_terminators;

    #[test]
    fn counts_whole_and_split_terminators() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut m = 0;
        assert_eq!(count_terminators(req, &mut m), 1);
        assert_eq!(m, 0);
        let two = [&req[..], &req[..]].concat();
        for cut in 0..=two.len() {
            let mut m = 0;
            let a = count_terminators(&two[..cut], &mut m);
            let b = count_terminators(&two[cut..], &mut m);
            assert_eq!(a + b, 2, "cut at {cut}");
        }
        let mut m = 0;
        assert_eq!(count_terminators(b"\r\n\r\r\n\r\n", &mut m), 1);
    }
}
