//! One end of a client connection: an IP address and port (TCP), or a
//! unix socket, which has neither. The client (`peer`) and where it
//! connected (`local`) are both endpoints.
use std::fmt;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP address: ours, a client's, or one a PROXY header relays.
    Ip(SocketAddr),
    /// A unix socket. A client's end of one is unnamed (it connects from
    /// no path), and ours has a path, not an address: neither has
    /// anything to put in REMOTE_ADDR or SERVER_PORT (see `environ`).
    Unix,
}

impl Endpoint {
    /// The IP address, for a TCP endpoint.
    #[inline]
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Endpoint::Ip(a) => Some(a.ip()),
            Endpoint::Unix => None,
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint::Ip(addr)
    }
}

/// As logs show it: `10.0.0.1:5555`, or `unix`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ip(a) => a.fmt(f),
            Endpoint::Unix => f.write_str("unix"),
        }
    }
}
