//! A TLS connection's byte stream: rustls over the nonblocking TCP
//! socket, with the same calls as a plain one (`Transport` hands the TLS
//! kind here), so the event loop, its deadlines and the app threads do
//! not know which kind they hold.
//!
//! The contracts `Transport` keeps for plain sockets hold here too:
//! - `recv_append` returns fewer bytes than asked only once the socket is
//!   drained (edge-triggered epoll gives no new edge for bytes already
//!   read): decrypted bytes rustls holds are handed out first, and more
//!   ciphertext is read only when they are gone. A caller that got all it
//!   asked for marks the connection unread, as it does for a full socket,
//!   and `wait` for reading returns at once while decrypted bytes wait.
//! - `send_from` removes from `out` only what is on the socket. rustls
//!   encrypts a chunk whole; if the socket does not take all of its
//!   records, the chunk stays in `out` (`owed`: the caller passes the same
//!   bytes again, as with a plain socket, and they are not encrypted
//!   twice) until its last record is out. So an empty `out` still means
//!   "all sent", and a slow client is held and timed as for plain HTTP.
//!
//! The handshake runs inside the first reads: it is finished by the time
//! a request's bytes come out, and a client that drips it is a head that
//! drips (`--header-timeout` counts from the accept).
//!
//! Interior mutability: `Transport` takes `&self` for reads and writes
//! (app threads hold the connection by shared reference in places), and a
//! connection belongs to one thread at a time (the event loop, or the app
//! thread it is lent to), so the `RefCell` is never contended; it is there
//! to keep that a checked fact rather than an `unsafe` promise.
use std::cell::RefCell;
use std::io::{self, BufRead, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use crate::net::x509_name;

/// The largest plaintext encrypted at once: four records. Bigger chunks
/// would only leave more owed when the socket is full.
const CHUNK: usize = 64 * 1024;

/// A TLS connection over an accepted TCP socket.
pub struct TlsStream {
    pub(crate) tcp: TcpStream,
    state: RefCell<State>,
}

struct State {
    conn: ServerConnection,
    /// Bytes at the front of the caller's `out` that rustls has encrypted
    /// but whose records are not all on the socket yet.
    owed: usize,
    /// What the environ says of the TLS side, once the handshake is done.
    peer: Option<Arc<TlsPeer>>,
    /// The first bytes the client sent (`first_len` of them), kept to
    /// tell a plain HTTP request from a broken handshake.
    first: [u8; 4],
    first_len: u8,
}

/// The answer to a plain HTTP request on a TLS port (nginx answers one
/// too): better than a connection closed without a word.
const PLAIN_HTTP: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 46\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use an https:// URL.\r\n";

/// The TLS side of a connection as the environ shows it (Apache's and
/// nginx's names): fixed after the handshake.
#[derive(Debug)]
pub struct TlsPeer {
    /// SSL_PROTOCOL: `TLSv1.3` or `TLSv1.2`.
    pub protocol: &'static str,
    /// SSL_CLIENT_VERIFY: `SUCCESS` (a certificate that verified against
    /// `--ca-certs`) or `NONE` (none was shown, or none asked for).
    pub verify: &'static str,
    /// SSL_CLIENT_S_DN and SSL_CLIENT_I_DN (RFC 4514), with a certificate.
    pub subject: Option<Box<str>>,
    pub issuer: Option<Box<str>>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").field("tcp", &self.tcp).finish()
    }
}

impl TlsStream {
    pub fn new(tcp: TcpStream, config: &Arc<ServerConfig>) -> io::Result<TlsStream> {
        let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        Ok(TlsStream {
            tcp,
            state: RefCell::new(State {
                conn,
                owed: 0,
                peer: None,
                first: [0; 4],
                first_len: 0,
            }),
        })
    }

    fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    /// Decrypted bytes into `buf`'s spare capacity (at most `max`), reading
    /// and decrypting more as needed; see the module notes for when it
    /// returns short. Ok(0): the client closed.
    pub fn recv_append(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let fd = self.fd();
        let st = &mut *self.state.borrow_mut();
        if st.conn.wants_write() {
            // What an earlier read could not send (a full socket).
            flush(&mut st.conn, fd)?;
        }
        let want = (buf.capacity() - buf.len()).min(max);
        let mut got = 0;
        loop {
            // What is decrypted already goes first.
            while got < want {
                let mut reader = st.conn.reader();
                let chunk = match reader.fill_buf() {
                    Ok(c) if !c.is_empty() => c,
                    // Ok(empty): close_notify came; UnexpectedEof: the
                    // socket closed without one. Either way, no more.
                    Ok(_) => return Ok(got),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(got),
                    Err(_) => break,
                };
                let n = chunk.len().min(want - got);
                let spare = buf.spare_capacity_mut();
                // SAFETY: `n` <= the spare capacity (`want` is at most it,
                // less what was appended already); `chunk` is rustls's
                // buffer, which does not overlap `buf`'s.
                unsafe {
                    std::ptr::copy_nonoverlapping(chunk.as_ptr(), spare.as_mut_ptr().cast(), n);
                    buf.set_len(buf.len() + n);
                }
                reader.consume(n);
                got += n;
            }
            if got == want {
                return Ok(got);
            }
            let read = if st.first_len < 4 {
                let mut recording = Recording {
                    fd,
                    first: &mut st.first,
                    len: &mut st.first_len,
                };
                st.conn.read_tls(&mut recording)
            } else {
                st.conn.read_tls(&mut Fd(fd))
            };
            match read {
                // EOF from the socket: what rustls makes of it is asked on
                // the next round (the reader says closed).
                Ok(0) => {
                    if let Err(e) = st.conn.process_new_packets() {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    if st.conn.is_handshaking() {
                        return Ok(got);
                    }
                }
                Ok(_) => {
                    let result = st.conn.process_new_packets();
                    if let Err(e) = result {
                        // A record starts with its type (22 for a
                        // handshake), never a letter; a request line does.
                        if st.conn.is_handshaking() && st.first[0].is_ascii_uppercase() {
                            tracing::debug!("TLS: a plain HTTP request; answered 400");
                            let _ = Fd(fd).write(PLAIN_HTTP);
                        } else {
                            tracing::debug!("TLS: {e}; closed");
                            let _ = flush(&mut st.conn, fd);
                        }
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    // Handshake messages, alerts, tickets: out now. What a
                    // full socket does not take goes with the next read or
                    // send, or when the socket has room (`flush_pending`,
                    // on the writable edge of a connection waiting for a
                    // head).
                    let _ = flush(&mut st.conn, fd);
                    if st.peer.is_none() && !st.conn.is_handshaking() {
                        st.peer = Some(Arc::new(describe(&st.conn)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if got > 0 { Ok(got) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends what the socket takes of `out` (see the module notes on
    /// `owed`) and removes it from `out`.
    pub fn send_from(&self, out: &mut Vec<u8>) -> io::Result<usize> {
        let fd = self.fd();
        let st = &mut *self.state.borrow_mut();
        if st.conn.is_handshaking() {
            // Nothing is sent before the handshake is done (a canned error
            // for a client that has not finished it is not sent at all).
            return Ok(0);
        }
        flush(&mut st.conn, fd)?;
        if st.conn.wants_write() {
            return Ok(0);
        }
        // The owed chunk is out whole now.
        let mut sent = std::mem::take(&mut st.owed).min(out.len());
        while sent < out.len() {
            let end = out.len().min(sent + CHUNK);
            let n = st.conn.writer().write(&out[sent..end])?;
            flush(&mut st.conn, fd)?;
            if st.conn.wants_write() {
                st.owed = n;
                break;
            }
            if n == 0 {
                break;
            }
            sent += n;
        }
        if sent == out.len() {
            out.clear();
        } else if sent > 0 {
            out.drain(..sent);
        }
        Ok(sent)
    }

    /// Sends what rustls holds encrypted (handshake messages a full socket
    /// did not take); false if the connection failed.
    pub fn flush_pending(&self) -> bool {
        let st = &mut *self.state.borrow_mut();
        flush(&mut st.conn, self.fd()).is_ok()
    }

    /// Decrypted bytes are waiting (a read that would not touch the socket).
    pub fn has_plaintext(&self) -> bool {
        let st = &mut *self.state.borrow_mut();
        matches!(st.conn.reader().fill_buf(), Ok(c) if !c.is_empty())
    }

    /// The handshake is not done yet.
    pub fn handshaking(&self) -> bool {
        self.state.borrow().conn.is_handshaking()
    }

    /// What the environ says of the TLS side (None until the handshake is
    /// done).
    pub fn peer(&self) -> Option<Arc<TlsPeer>> {
        self.state.borrow().peer.clone()
    }

    /// close_notify, then FIN.
    pub fn shutdown_write(&self) {
        let st = &mut *self.state.borrow_mut();
        if !st.conn.is_handshaking() {
            st.conn.send_close_notify();
            let _ = flush(&mut st.conn, self.fd());
        }
        let _ = self.tcp.shutdown(std::net::Shutdown::Write);
    }
}

/// Writes what rustls has encrypted until the socket takes no more.
fn flush(conn: &mut ServerConnection, fd: RawFd) -> io::Result<()> {
    while conn.wants_write() {
        match conn.write_tls(&mut Fd(fd)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn describe(conn: &ServerConnection) -> TlsPeer {
    let protocol = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "",
    };
    let names = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| x509_name::subject_and_issuer(leaf));
    let verify = if conn.peer_certificates().is_some() {
        // rustls has verified it against --ca-certs, or the handshake
        // would have failed.
        "SUCCESS"
    } else {
        "NONE"
    };
    let (subject, issuer) = match names {
        Some((s, i)) => (Some(s.into()), Some(i.into())),
        None => (None, None),
    };
    TlsPeer {
        protocol,
        verify,
        subject,
        issuer,
    }
}

/// The socket as rustls reads and writes it: libc calls on the fd, as
/// `Transport` makes them for plain sockets (no SIGPIPE).
struct Fd(RawFd);

impl Read for Fd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length for the call; the
        // fd is the stream's, open while it is borrowed.
        let n = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// `Fd`, keeping the first bytes read (see `State::first`).
struct Recording<'a> {
    fd: RawFd,
    first: &'a mut [u8; 4],
    len: &'a mut u8,
}

impl Read for Recording<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = Fd(self.fd).read(buf)?;
        let at = *self.len as usize;
        let take = n.min(self.first.len() - at);
        self.first[at..at + take].copy_from_slice(&buf[..take]);
        *self.len += take as u8;
        Ok(n)
    }
}

impl Write for Fd {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(data)])
    }

    /// All of rustls's queued records in one `sendmsg`.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: msghdr is plain data, for which all-zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec on unix (std documents it).
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
        // SAFETY: `msg` points at `bufs`, valid for reads for the call; the
        // fd is the stream's, open while it is borrowed.
        let n = unsafe { libc::sendmsg(self.0, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
