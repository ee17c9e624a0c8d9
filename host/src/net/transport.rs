//! A client connection's byte stream, the one type the engine reads from
//! and writes to (hyper's `Conn<I>` seam): a nonblocking TCP or unix
//! stream socket, or TLS over TCP (`tls_stream`), so nothing above this
//! file names `mio::net::TcpStream` or rustls.
//!
//! Reads, writes and waits of plain sockets go through the file
//! descriptor with libc calls that are the same for both kinds: the kind
//! matters only where the socket is made, shut down or registered. A TLS
//! stream has its own reads and writes, behind one comparison at the top
//! of each call, so a plain request pays that comparison for TLS being
//! possible.
//!
//! The socket stays nonblocking for its whole life (the event loop needs
//! that). Every read and write here returns at once; the one way to wait is
//! `wait`, with a deadline, used only where an app thread may wait on its
//! client (a `write()` past the high-water mark, an upload read with
//! `--no-request-buffering`).
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::event::Source;

use crate::net::endpoint::Endpoint;
use crate::net::tls_stream::{TlsPeer, TlsStream};
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

/// One client connection's socket.
#[derive(Debug)]
pub struct Transport {
    stream: Stream,
}

/// What kind of socket it is.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Boxed: rustls's state is a few hundred bytes a plain connection
    /// should not carry.
    Tls(Box<TlsStream>),
}

/// What TCP knows of a connection's client (`TCP_INFO`), asked of one
/// just accepted that may have waited long in the listen backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The client closed its side (a FIN came): it sent all it will send.
    pub peer_closed: bool,
    /// The client reset the connection: it is gone.
    pub reset: bool,
    /// How long ago its last bytes arrived.
    pub idle: Duration,
}

/// Linux TCP states (`include/net/tcp_states.h`).
const TCP_CLOSE: u8 = 7;
const TCP_CLOSE_WAIT: u8 = 8;

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    Readable,
    Writable,
}

impl Transport {
    /// Wraps an accepted TCP connection (already nonblocking, as mio's
    /// accept makes it). Nagle is turned off: a response goes out whole in
    /// one write, and waiting for an ACK before its tail would add a round
    /// trip.
    pub fn tcp(stream: TcpStream) -> Transport {
        let _ = stream.set_nodelay(true);
        Transport {
            stream: Stream::Tcp(stream),
        }
    }

    /// Wraps an accepted unix stream connection (nonblocking, as mio's
    /// accept makes it). No Nagle there to turn off.
    pub fn unix(stream: UnixStream) -> Transport {
        Transport {
            stream: Stream::Unix(stream),
        }
    }

    /// The TLS server side of an accepted TCP connection (`--certfile`);
    /// a unix socket stays plain (it serves a proxy on the same host).
    pub fn secure(self, config: &std::sync::Arc<rustls::ServerConfig>) -> io::Result<Transport> {
        match self.stream {
            Stream::Tcp(s) => Ok(Transport {
                stream: Stream::Tls(Box::new(TlsStream::new(s, config)?)),
            }),
            other => Ok(Transport { stream: other }),
        }
    }

    /// Whether this is a TLS connection.
    #[inline]
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// A TLS connection whose handshake is not done yet.
    pub fn handshaking(&self) -> bool {
        match &self.stream {
            Stream::Tls(t) => t.handshaking(),
            _ => false,
        }
    }

    /// The socket has room again: a TLS connection sends what it holds
    /// (its handshake flight, when a client's window was full). False if
    /// the connection failed. Plain sockets hold nothing here.
    pub fn flush_pending(&self) -> bool {
        match &self.stream {
            Stream::Tls(t) => t.flush_pending(),
            _ => true,
        }
    }

    /// What the environ says of a TLS connection (None for a plain one, or
    /// before the handshake is done).
    pub fn tls_peer(&self) -> Option<std::sync::Arc<TlsPeer>> {
        match &self.stream {
            Stream::Tls(t) => t.peer(),
            _ => None,
        }
    }

    /// A connected std socket, made nonblocking (benchmarks, tests).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<Transport> {
        stream.set_nonblocking(true)?;
        Ok(Transport::tcp(TcpStream::from_std(stream)))
    }

    /// Our end of a TCP connection; `Endpoint::Unix` for a unix one,
    /// without a system call.
    pub fn local(&self) -> io::Result<Endpoint> {
        match &self.stream {
            Stream::Tcp(s) => s.local_addr().map(Endpoint::Ip),
            Stream::Unix(_) => Ok(Endpoint::Unix),
            Stream::Tls(t) => t.tcp.local_addr().map(Endpoint::Ip),
        }
    }

    #[inline]
    pub fn fd(&self) -> RawFd {
        match &self.stream {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tls(t) => t.tcp.as_raw_fd(),
        }
    }

    /// One `recv` of at most `max` bytes into `buf`'s spare capacity (at
    /// most what is spare), appended to its contents. The bytes are not
    /// zeroed first, as `Read::read` into a resized Vec would: a 4 KiB
    /// memset per read is measurable on the request path. Ok(0): the peer
    /// closed its side.
    pub fn recv_append(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        if let Stream::Tls(t) = &self.stream {
            return t.recv_append(buf, max);
        }
        let spare = buf.spare_capacity_mut();
        let len = spare.len().min(max);
        // SAFETY: the pointer and length describe `len` bytes of `buf`'s
        // spare capacity, which recv may write (uninitialised memory is fine
        // for it to overwrite); the fd is the stream's, open while borrowed.
        let n = unsafe { libc::recv(self.fd(), spare.as_mut_ptr().cast(), len, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: recv initialised the first `n` (<= len) spare bytes.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    /// One nonblocking `send` of as much of `data` as the socket takes;
    /// WouldBlock when it takes nothing. MSG_NOSIGNAL: a client that
    /// closed is an EPIPE error here, never a SIGPIPE for the process.
    /// Plain sockets only (`send_from` is the call for any kind).
    fn send(&self, data: &[u8]) -> io::Result<usize> {
        // SAFETY: `data` is valid for reads of its length for the call; the
        // fd is the stream's, open while borrowed.
        let n = unsafe {
            libc::send(
                self.fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Sends as much of `out` as the socket takes now and removes it from
    /// the front of `out`; returns the bytes sent. An error means the
    /// client is gone (`out` is then left as it was).
    pub fn send_from(&self, out: &mut Vec<u8>) -> io::Result<usize> {
        if let Stream::Tls(t) = &self.stream {
            return t.send_from(out);
        }
        let mut sent = 0;
        while sent < out.len() {
            match self.send(&out[sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if sent == out.len() {
            out.clear();
        } else if sent > 0 {
            out.drain(..sent);
        }
        Ok(sent)
    }

    /// Waits until the socket is ready for `ready` or `deadline` passes
    /// (then TimedOut). Readable also reports a peer that closed or reset,
    /// and Writable a dead connection: the next read or write says which.
    pub fn wait(&self, ready: Ready, deadline: Instant) -> io::Result<()> {
        if let (Stream::Tls(t), Ready::Readable) = (&self.stream, ready) {
            // Decrypted bytes already here: the socket may have none.
            if t.has_plaintext() {
                return Ok(());
            }
        }
        let events = match ready {
            Ready::Readable => libc::POLLIN,
            Ready::Writable => libc::POLLOUT,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let mut pfd = libc::pollfd {
                fd: self.fd(),
                events,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: `pfd` is one valid pollfd on our stack for the duration
            // of the call, and the count passed is 1.
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

    /// Bytes written to the socket that the peer has not acknowledged yet
    /// (still in our send queue or in flight).
    pub fn unacked(&self) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer,
        // which is valid for the call; the fd is open while borrowed.
        let rc = unsafe { libc::ioctl(self.fd(), libc::TIOCOUTQ, &mut n) };
        if rc < 0 {
            0
        } else {
            n.max(0) as usize
        }
    }

    /// What TCP says of the client now; None if the kernel would not say.
    /// A system call: for connections that may have waited in the backlog,
    /// not for every one. None for a unix socket, which has no TCP state.
    pub fn arrival(&self) -> Option<Arrival> {
        if let Stream::Unix(_) = self.stream {
            return None;
        }
        // SAFETY: tcp_info is plain data, for which all-zero is valid.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `info`, which
        // is valid for them for the call; the fd is open while borrowed.
        let rc = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return None;
        }
        Some(Arrival {
            peer_closed: info.tcpi_state == TCP_CLOSE_WAIT,
            reset: info.tcpi_state == TCP_CLOSE,
            idle: Duration::from_millis(u64::from(info.tcpi_last_data_recv)),
        })
    }

    /// Our side is done sending: FIN after whatever is queued.
    pub fn shutdown_write(&self) {
        let _ = match &self.stream {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tls(t) => {
                t.shutdown_write();
                Ok(())
            }
        };
    }
}

/// Answers the client on `fd` with `bytes` (if the socket takes them at
/// once; plain connections only: a TLS one gets no bytes) and shuts our
/// side down, for a request taken over from an app
/// thread stuck in the plugin (`-t`). The thread still owns the socket, so
/// it is not closed here: it is dropped when the thread gives it back, or
/// when the worker exits.
pub fn answer_abandoned(fd: RawFd, bytes: &[u8]) {
    if !bytes.is_empty() {
        // SAFETY: `bytes` is valid for reads of its length; the fd is open
        // (its owner is stuck, and gives it back to the event loop, which
        // calls this first, before dropping it).
        unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
    }
    // SAFETY: shutdown on an open fd has no memory effects.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// The peer of the connection on `fd` (for the log of a request taken
/// over, whose connection an app thread still owns).
pub fn peer_of(fd: RawFd) -> Option<Endpoint> {
    // SAFETY: the fd is open for the duration of this call (the same
    // contract as `answer_abandoned`); it is only borrowed.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let addr = socket2::SockRef::from(&fd).peer_addr().ok()?;
    match addr.as_socket() {
        Some(a) => Some(Endpoint::Ip(a)),
        None if addr.is_unix() => Some(Endpoint::Unix),
        None => None,
    }
}

impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match &mut self.stream {
            Stream::Tcp(s) => s.register(registry, token, interests),
            Stream::Unix(s) => s.register(registry, token, interests),
            Stream::Tls(t) => t.tcp.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match &mut self.stream {
            Stream::Tcp(s) => s.reregister(registry, token, interests),
            Stream::Unix(s) => s.reregister(registry, token, interests),
            Stream::Tls(t) => t.tcp.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match &mut self.stream {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
            Stream::Tls(t) => t.tcp.deregister(registry),
        }
    }
}
