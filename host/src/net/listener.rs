//! Listening sockets: bound by the master before any worker exists, and
//! shared with every worker it forks. Each process holds one copy and
//! closes it when it stops accepting (the master at TERM/INT/QUIT, a
//! worker once it took its backlog), so a stopping server refuses new
//! clients instead of queueing connections nobody will accept.
use std::net::{SocketAddr, TcpListener};

/// A listening socket with gunicorn's options: SO_REUSEADDR (a restart
/// does not wait out TIME_WAIT), the `--backlog`, and IPV6_V6ONLY on IPv6
/// addresses so `-b [::]:8000 -b 0.0.0.0:8000` both bind, as in nginx.
pub fn listen(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}
