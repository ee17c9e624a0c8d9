//! The server process's surroundings, set by the master before it binds
//! or forks: the file mode creation mask (`--umask`).

/// Sets the process's umask (inherited by the workers), so it applies to
/// the unix socket files the master binds and to files the app creates.
pub fn set_umask(mask: u32) {
    // SAFETY: umask has no memory effects and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}
