//! Listening sockets: bound by the master before any worker exists, and
//! shared with every worker it forks. Each process holds one copy and
//! closes it when it stops accepting (the master at TERM/INT/QUIT, a
//! worker once it took its backlog), so a stopping server refuses new
//! clients instead of queueing connections nobody will accept.
//!
//! Three kinds of `-b` (gunicorn's syntax): `HOST:PORT` (TCP),
//! `unix:PATH` (a unix stream socket, whose file the master removes when
//! it stops), and `fd://N` (a listening socket the parent process opened
//! and left to us; systemd's socket activation is the same thing, found
//! through the environment: `systemd`). A binary upgrade passes them on
//! to the new master by number (`supervisor::upgrade`).
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use mio::event::Source;
use mio::{Interest, Registry, Token};

use crate::net::endpoint::Endpoint;
use crate::net::transport::Transport;

/// One `-b` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Tcp(SocketAddr),
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `fd://N`: already open, already listening.
    Fd(RawFd),
}

impl Bind {
    /// Parses one `-b` value: `HOST:PORT`, `[V6]:PORT`, `HOST` alone
    /// (port 8000, as gunicorn), `unix:PATH` or `fd://N`. A host name may
    /// resolve to several addresses: each is bound.
    pub fn parse(spec: &str) -> Result<Vec<Bind>, String> {
        if let Some(path) = spec.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!(
                    "invalid bind address '{spec}': no path after unix:"
                ));
            }
            return Ok(vec![Bind::Unix(PathBuf::from(path))]);
        }
        if let Some(n) = spec.strip_prefix("fd://") {
            let fd = n
                .parse::<RawFd>()
                .ok()
                .filter(|fd| *fd >= 0)
                .ok_or_else(|| {
                    format!("invalid bind address '{spec}': '{n}' is not a file descriptor number")
                })?;
            return Ok(vec![Bind::Fd(fd)]);
        }
        resolve_tcp(spec).map(|addrs| addrs.into_iter().map(Bind::Tcp).collect())
    }
}

/// `HOST:PORT`, `[V6]:PORT`, or `HOST` alone (port 8000).
fn resolve_tcp(spec: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (host, port) = match spec.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, p),
        _ => (spec, "8000"),
    };
    let port: u16 = port.parse().map_err(|_| {
        format!("invalid bind address '{spec}': port '{port}' is not a number from 0 to 65535")
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!(
            "invalid bind address '{spec}': no host (use 0.0.0.0:{port} for all interfaces)"
        ));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("invalid bind address '{spec}': cannot resolve '{host}': {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "invalid bind address '{spec}': '{host}' has no address"
        ));
    }
    Ok(addrs)
}

/// How sockets are bound (`--backlog`, `--reuse-port`, `--bind-mode`, and
/// the owner a unix socket file is given with `--user`/`--group`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BindOptions {
    pub backlog: i32,
    /// SO_REUSEPORT on TCP sockets: several servers (an old and a new one
    /// during a blue-green switch) may listen on the same port, and the
    /// kernel spreads connections among them.
    pub reuse_port: bool,
    /// Permission bits for a unix socket file (else what the umask leaves).
    pub mode: Option<u32>,
    /// uid and gid for a unix socket file (-1 leaves one as it is).
    pub owner: Option<(u32, u32)>,
}

/// A listening socket of either kind, as the master holds it and a
/// worker inherits it.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// The path a unix socket is bound to (None for TCP, or an unnamed
    /// or abstract unix socket).
    pub fn unix_path(&self) -> Option<PathBuf> {
        match self {
            Listener::Tcp(_) => None,
            Listener::Unix(l) => l.local_addr().ok()?.as_pathname().map(Path::to_path_buf),
        }
    }

    /// Where clients connect, for the log: `http://127.0.0.1:8000`,
    /// `unix:/run/app.sock`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("http://{a}"),
                Err(_) => "http://?".into(),
            },
            Listener::Unix(l) => match l.local_addr().ok().as_ref().and_then(|a| a.as_pathname()) {
                Some(p) => format!("unix:{}", p.display()),
                None => "unix:(unnamed)".into(),
            },
        }
    }

    /// The nonblocking listener a worker's event loop accepts from.
    pub fn into_acceptor(self) -> io::Result<Acceptor> {
        Ok(match self {
            Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                Acceptor::Tcp(mio::net::TcpListener::from_std(l))
            }
            Listener::Unix(l) => {
                l.set_nonblocking(true)?;
                Acceptor::Unix(mio::net::UnixListener::from_std(l))
            }
        })
    }
}

/// A listener in a worker's event loop.
pub enum Acceptor {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

impl Acceptor {
    /// One connection from the backlog, with its client.
    #[inline]
    pub fn accept(&self) -> io::Result<(Transport, Endpoint)> {
        match self {
            Acceptor::Tcp(l) => l
                .accept()
                .map(|(s, peer)| (Transport::tcp(s), Endpoint::Ip(peer))),
            // A unix client's address is unnamed: nothing to keep.
            Acceptor::Unix(l) => l
                .accept()
                .map(|(s, _)| (Transport::unix(s), Endpoint::Unix)),
        }
    }
}

impl Source for Acceptor {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Acceptor::Tcp(l) => l.register(r, t, i),
            Acceptor::Unix(l) => l.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Acceptor::Tcp(l) => l.reregister(r, t, i),
            Acceptor::Unix(l) => l.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Acceptor::Tcp(l) => l.deregister(r),
            Acceptor::Unix(l) => l.deregister(r),
        }
    }
}

/// A unix socket file this process created, removed when the value is
/// dropped: the master holds these until it exits (gunicorn unlinks its
/// sockets when the arbiter stops). Only the process that bound it removes
/// it: a forked worker never drops the master's copy (it exits from inside
/// `worker::run`), and the pid check makes sure of it. A file replaced
/// since (another server bound the path after ours was removed by hand)
/// is not ours to remove: the device and inode must still match.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    pid: u32,
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file of a socket an upgrading master handed over (it created
    /// the file, and left it in place for us): ours to remove from now on.
    pub fn adopt(path: &Path) -> Option<SocketFile> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(SocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            pid: std::process::id(),
        })
    }

    /// Leaves the file in place: a new master (an upgrade) serves the
    /// socket now, and removes the file when it stops.
    pub fn hand_over(mut self) {
        self.pid = 0;
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            return;
        }
        let same = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if same {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The listening sockets of a server, and the socket files to remove when
/// it stops.
#[derive(Debug, Default)]
pub struct Bound {
    pub listeners: Vec<Listener>,
    pub files: Vec<SocketFile>,
}

/// Where the server listens when told nowhere (gunicorn's default).
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";

/// The server's listening sockets: the `-b` values if any; else the ones
/// systemd passed (socket activation); else `DEFAULT_BIND`. The
/// activation variables are removed from the environment in every case.
pub fn open(specs: &[String], opts: &BindOptions) -> Result<Bound, String> {
    let activation = crate::net::systemd::Activation::from_env()?;
    if specs.is_empty() {
        if let Some(activation) = activation {
            let mut bound = Bound::default();
            for (name, l) in activation.listeners()? {
                tracing::info!("socket activation: serving {name}");
                bound.listeners.push(l);
            }
            return Ok(bound);
        }
    } else if activation.is_some() {
        tracing::warn!("sockets passed by systemd (LISTEN_FDS) are ignored: -b was given");
    }
    let default = [DEFAULT_BIND.to_string()];
    let specs = if specs.is_empty() {
        &default[..]
    } else {
        specs
    };
    let mut binds = Vec::new();
    for spec in specs {
        binds.extend(Bind::parse(spec)?);
    }
    bind_all(&binds, opts)
}

/// Binds or takes over every `binds` item; the error names the one that
/// failed and why. On an error, socket files already created are removed
/// (dropped with the partial result).
pub fn bind_all(binds: &[Bind], opts: &BindOptions) -> Result<Bound, String> {
    let mut bound = Bound::default();
    for bind in binds {
        match bind {
            Bind::Tcp(addr) => {
                let l = listen(*addr, opts).map_err(|e| format!("cannot bind {addr}: {e}"))?;
                bound.listeners.push(Listener::Tcp(l));
            }
            Bind::Unix(path) => {
                let (l, file) = listen_unix(path, opts)
                    .map_err(|e| format!("cannot bind unix:{}: {e}", path.display()))?;
                bound.listeners.push(Listener::Unix(l));
                bound.files.push(file);
            }
            Bind::Fd(fd) => {
                // One owner per descriptor: a second would close it twice.
                if binds.iter().filter(|b| **b == Bind::Fd(*fd)).count() > 1 {
                    return Err(format!("fd://{fd} is given more than once"));
                }
                let l = inherit(*fd).map_err(|e| format!("cannot serve fd://{fd}: {e}"))?;
                bound.listeners.push(l);
            }
        }
    }
    Ok(bound)
}

/// A TCP listening socket with gunicorn's options: SO_REUSEADDR (a
/// restart does not wait out TIME_WAIT), the `--backlog`, IPV6_V6ONLY on
/// IPv6 addresses so `-b [::]:8000 -b 0.0.0.0:8000` both bind, as in
/// nginx, and SO_REUSEPORT with `--reuse-port`.
pub fn listen(addr: SocketAddr, opts: &BindOptions) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(opts.backlog)?;
    Ok(socket.into())
}

/// A unix stream socket at `path`. A file already there is replaced only
/// if it is a socket nobody accepts on (a server that died without
/// removing it: connect is refused); a live one belongs to a running
/// server, and anything else is not ours to delete.
fn listen_unix(path: &Path, opts: &BindOptions) -> io::Result<(UnixListener, SocketFile)> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another server is listening on it",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!("removing stale socket file {}", path.display());
                std::fs::remove_file(path)?;
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("it exists: {e}"))),
        }
    }
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    let meta = std::fs::symlink_metadata(path)?;
    let file = SocketFile {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
        pid: std::process::id(),
    };
    // From here on, an error drops `file`, which removes the path again.
    if let Some(mode) = opts.mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    if let Some((uid, gid)) = opts.owner {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    socket.listen(opts.backlog)?;
    Ok((UnixListener::from(OwnedFd::from(socket)), file))
}

/// Takes over `fd`, a socket the parent process opened: it must be a
/// stream socket (TCP or unix) that is already listening. It is made
/// close-on-exec, as our own sockets are, so a program the plugin runs
/// does not inherit it.
pub fn inherit(fd: RawFd) -> io::Result<Listener> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    // SAFETY: F_GETFD only reads the descriptor's flags; an fd that is not
    // open is EBADF, nothing else.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(invalid(format!(
            "not an open file descriptor ({})",
            io::Error::last_os_error()
        )));
    }
    let int_opt = |level, name| -> io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`, valid for
        // the call; the fd is open (checked above).
        let rc = unsafe {
            libc::getsockopt(
                fd,
                level,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(v)
    };
    let sock_type = int_opt(libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOTSOCK) {
            invalid("not a socket".into())
        } else {
            e
        }
    })?;
    if sock_type != libc::SOCK_STREAM {
        return Err(invalid(format!(
            "not a stream socket (SO_TYPE {sock_type}; a datagram socket cannot accept)"
        )));
    }
    if int_opt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? == 0 {
        return Err(invalid(
            "the socket is not listening (listen() was not called on it)".into(),
        ));
    }
    let domain = int_opt(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if !matches!(domain, libc::AF_INET | libc::AF_INET6 | libc::AF_UNIX) {
        return Err(invalid(format!(
            "a socket of address family {domain}, neither IP nor unix"
        )));
    }
    // SAFETY: F_SETFD with FD_CLOEXEC only changes the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the fd is open, and ours from here on: the parent handed it
    // over (`fd://N`, LISTEN_FDS) for us to serve, and nothing else in
    // this process owns it (each `-b fd://N` and each activated socket is
    // taken once).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(if domain == libc::AF_UNIX {
        Listener::Unix(UnixListener::from(owned))
    } else {
        Listener::Tcp(TcpListener::from(owned))
    })
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l) => l.as_raw_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds() {
        let tcp = |s: &str| Bind::Tcp(s.parse().unwrap());
        assert_eq!(
            Bind::parse("127.0.0.1:80").unwrap(),
            vec![tcp("127.0.0.1:80")]
        );
        assert_eq!(Bind::parse("[::1]:81").unwrap(), vec![tcp("[::1]:81")]);
        assert_eq!(
            Bind::parse("127.0.0.1").unwrap(),
            vec![tcp("127.0.0.1:8000")]
        );
        assert_eq!(
            Bind::parse("unix:/run/a.sock").unwrap(),
            vec![Bind::Unix("/run/a.sock".into())]
        );
        assert_eq!(Bind::parse("fd://3").unwrap(), vec![Bind::Fd(3)]);
        assert!(Bind::parse("nonsense:abc")
            .unwrap_err()
            .contains("nonsense:abc"));
        assert!(Bind::parse(":80").is_err());
        assert!(Bind::parse("unix:").unwrap_err().contains("no path"));
        assert!(Bind::parse("fd://x")
            .unwrap_err()
            .contains("not a file descriptor"));
        assert!(Bind::parse("fd://-1").is_err());
    }

    #[test]
    fn inherit_checks_what_it_is_given() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = l.as_raw_fd();
        std::mem::forget(l);
        assert!(matches!(inherit(fd), Ok(Listener::Tcp(_))));

        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let e = inherit(s.as_raw_fd()).unwrap_err().to_string();
        assert!(e.contains("not listening"), "{e}");

        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = inherit(u.as_raw_fd()).unwrap_err().to_string();
        assert!(e.contains("not a stream socket"), "{e}");

        let f = std::fs::File::open("/dev/null").unwrap();
        let e = inherit(f.as_raw_fd()).unwrap_err().to_string();
        assert!(e.contains("not a socket"), "{e}");
    }
}
