//! Sockets: the listening sockets (`listener`, and systemd's in
//! `systemd`), a client connection's byte stream (`transport`; TLS in
//! `tls_stream`, its settings in `tls`) and its ends (`endpoint`).
pub mod allow;
pub mod endpoint;
pub mod listener;
pub mod proxy_protocol;
pub mod systemd;
pub mod tls;
pub mod tls_stream;
pub mod transport;
pub mod x509_name;

use std::io;

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
