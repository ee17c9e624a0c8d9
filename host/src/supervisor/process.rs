//! The server process's surroundings and identity: the working directory
//! (`--chdir`), the file mode creation mask (`--umask`), and the user and
//! group the workers run the plugin as (`--user`, `--group`).
//!
//! The master sets the directory and the umask at start, before anything
//! resolves a path or creates a file, and resolves the user and group
//! then too, so a mistake is a start-up error. It stays who it was
//! started as (root, typically, to bind a port below 1024): it never runs
//! plugin code, and keeps the right to remove the socket files it created
//! and to re-read the plugin file on a reload. Each worker drops to the
//! user and group after the fork, before it loads the plugin (gunicorn's
//! model: its workers switch user, its arbiter does not).
use std::ffi::{CStr, CString};
use std::io;
use std::path::Path;

/// What the master is told about its process.
#[derive(Debug, Default)]
pub struct ProcessOptions<'a> {
    pub chdir: Option<&'a Path>,
    pub umask: Option<u32>,
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
    /// `--allow-root`: the plugin may run as root.
    pub allow_root: bool,
}

/// The user and group the workers become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// The user's name, for its supplementary groups (`initgroups`);
    /// None for a uid without a passwd entry (it then has none).
    name: Option<CString>,
}

/// Sets up the master's process and says who the workers will run as
/// (None: as the master). A plugin that would run as root without
/// `--allow-root` is warned about. An error is one line.
pub fn prepare(opts: &ProcessOptions<'_>) -> Result<Option<Identity>, String> {
    if let Some(dir) = opts.chdir {
        // First: the plugin, the pidfile, the access log and unix socket
        // paths given relative are relative to it, as gunicorn loads its
        // app after --chdir.
        std::env::set_current_dir(dir)
            .map_err(|e| format!("cannot --chdir to {}: {e}", dir.display()))?;
    }
    if let Some(mask) = opts.umask {
        // SAFETY: umask has no memory effects and cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    let identity = Identity::resolve(opts.user, opts.group)?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if let Some(id) = &identity {
        if euid != 0 && (id.uid != euid || id.gid != egid()) {
            return Err(format!(
                "--user/--group: switching to uid {} gid {} needs root (running as uid {euid})",
                id.uid, id.gid
            ));
        }
    }
    let plugin_uid = identity.as_ref().map_or(euid, |id| id.uid);
    if plugin_uid == 0 && !opts.allow_root {
        // Said loudly, not refused: containers commonly run everything as
        // root, and a server that will not start there is worse than one
        // that says what it risks.
        tracing::warn!(
            "the plugin will run as root: give --user USER to drop privileges (sockets are \
             bound before the switch, so ports below 1024 still work), or --allow-root to \
             say root is meant"
        );
    }
    Ok(identity)
}

/// The effective gid.
fn egid() -> u32 {
    // SAFETY: getegid has no preconditions.
    unsafe { libc::getegid() }
}

impl Identity {
    /// `--user NAME|UID` and `--group NAME|GID`; the group defaults to the
    /// user's primary group, the user to the current one. None if neither
    /// is given.
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Identity>, String> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let (uid, primary, name) = match user {
            Some(user) => match user.parse::<u32>() {
                Ok(uid) => match passwd_by_uid(uid) {
                    Some(pw) => (pw.uid, Some(pw.gid), Some(pw.name)),
                    None => (uid, None, None),
                },
                Err(_) => {
                    let pw = passwd_by_name(user)
                        .map_err(|e| format!("--user {user}: {e}"))?
                        .ok_or_else(|| format!("--user {user}: no such user"))?;
                    (pw.uid, Some(pw.gid), Some(pw.name))
                }
            },
            // SAFETY: geteuid has no preconditions.
            None => (unsafe { libc::geteuid() }, None, None),
        };
        let gid = match group {
            Some(group) => match group.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_by_name(group)
                    .map_err(|e| format!("--group {group}: {e}"))?
                    .ok_or_else(|| format!("--group {group}: no such group"))?,
            },
            None => match (user, primary) {
                (_, Some(gid)) => gid,
                (Some(user), None) => {
                    return Err(format!(
                        "--user {user}: no passwd entry to take a group from; give --group"
                    ))
                }
                (None, None) => egid(),
            },
        };
        Ok(Some(Identity { uid, gid, name }))
    }

    /// Becomes this user and group, for good: supplementary groups first
    /// (the user's, or none), then the gid, then the uid (after which no
    /// other change is allowed). Then checks that every id took and that
    /// root cannot be had back. An error is one line.
    pub fn become_it(&self) -> Result<(), String> {
        let os = |what: &str| format!("{what}: {}", io::Error::last_os_error());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let rc = match &self.name {
                // SAFETY: `name` is a valid NUL-terminated string.
                Some(name) => unsafe { libc::initgroups(name.as_ptr(), self.gid) },
                // SAFETY: one gid, read from a valid pointer for the call.
                None => unsafe { libc::setgroups(1, &self.gid) },
            };
            if rc != 0 {
                return Err(os("cannot set the supplementary groups"));
            }
        }
        // SAFETY: setgid and setuid take plain integers; the real,
        // effective and saved ids all change (we are privileged, or
        // already these ids).
        if unsafe { libc::setgid(self.gid) } != 0 {
            return Err(os(&format!("cannot switch to group {}", self.gid)));
        }
        // SAFETY: as above.
        if unsafe { libc::setuid(self.uid) } != 0 {
            return Err(os(&format!("cannot switch to user {}", self.uid)));
        }
        let (mut r, mut e, mut s) = (0, 0, 0);
        // SAFETY: the pointers are valid for the call.
        unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
        let uids_ok = [r, e, s].iter().all(|id| *id == self.uid);
        // SAFETY: the pointers are valid for the call.
        unsafe { libc::getresgid(&mut r, &mut e, &mut s) };
        let gids_ok = [r, e, s].iter().all(|id| *id == self.gid);
        if !uids_ok || !gids_ok {
            return Err(format!(
                "switched to user {} group {}, but an id did not change",
                self.uid, self.gid
            ));
        }
        // SAFETY: setuid(0) only fails (EPERM) or succeeds; it succeeding
        // is the failure checked for.
        if self.uid != 0 && unsafe { libc::setuid(0) } == 0 {
            return Err("dropped privileges could be regained (setuid(0) worked)".into());
        }
        // The id change left the process non-dumpable, and so it stays:
        // other processes of the user cannot ptrace it or read its memory
        // (and it dumps no core with root's data in it). It can still open
        // its own /proc/self/fd/N, where the staged plugin build is: the
        // kernel lets a process into its own fd directory.
        Ok(())
    }
}

/// The fields of a passwd entry that matter here.
struct Passwd {
    uid: u32,
    gid: u32,
    name: CString,
}

/// A buffer for the reentrant lookups (grown on ERANGE).
const LOOKUP_BUF: usize = 16 * 1024;
const LOOKUP_BUF_MAX: usize = 1 << 20;

fn passwd_by_name(name: &str) -> io::Result<Option<Passwd>> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name"))?;
    passwd_lookup(&|pw, buf, len, out| {
        // SAFETY: every pointer is valid for the call; `buf` has `len` bytes.
        unsafe { libc::getpwnam_r(cname.as_ptr(), pw, buf, len, out) }
    })
}

fn passwd_by_uid(uid: u32) -> Option<Passwd> {
    passwd_lookup(&|pw, buf, len, out| {
        // SAFETY: every pointer is valid for the call; `buf` has `len` bytes.
        unsafe { libc::getpwuid_r(uid, pw, buf, len, out) }
    })
    .ok()
    .flatten()
}

type PwLookup<'a> = dyn Fn(*mut libc::passwd, *mut libc::c_char, libc::size_t, *mut *mut libc::passwd) -> libc::c_int
    + 'a;

fn passwd_lookup(lookup: &PwLookup<'_>) -> io::Result<Option<Passwd>> {
    let mut len = LOOKUP_BUF;
    loop {
        let mut buf = vec![0 as libc::c_char; len];
        // SAFETY: passwd is plain data, for which all-zero is valid.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = lookup(&mut pw, buf.as_mut_ptr(), len, &mut out);
        if rc == libc::ERANGE && len < LOOKUP_BUF_MAX {
            len *= 2;
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if out.is_null() {
            return Ok(None);
        }
        // SAFETY: on success pw_name points to a NUL-terminated string in
        // `buf`, alive here.
        let name = unsafe { CStr::from_ptr(pw.pw_name) }.to_owned();
        return Ok(Some(Passwd {
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            name,
        }));
    }
}

fn group_by_name(name: &str) -> io::Result<Option<u32>> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name"))?;
    let mut len = LOOKUP_BUF;
    loop {
        let mut buf = vec![0 as libc::c_char; len];
        // SAFETY: group is plain data, for which all-zero is valid.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` has `len` bytes.
        let rc =
            unsafe { libc::getgrnam_r(cname.as_ptr(), &mut gr, buf.as_mut_ptr(), len, &mut out) };
        if rc == libc::ERANGE && len < LOOKUP_BUF_MAX {
            len *= 2;
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        return Ok((!out.is_null()).then_some(gr.gr_gid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_numbers() {
        assert_eq!(Identity::resolve(None, None).unwrap(), None);
        let root = Identity::resolve(Some("root"), None).unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let by_number = Identity::resolve(Some("0"), Some("0")).unwrap().unwrap();
        assert_eq!((by_number.uid, by_number.gid), (0, 0));
        let e = Identity::resolve(Some("no-such-user-here"), None).unwrap_err();
        assert!(e.contains("no such user"), "{e}");
        let e = Identity::resolve(None, Some("no-such-group-here")).unwrap_err();
        assert!(e.contains("no such group"), "{e}");
        let e = Identity::resolve(Some("4000000000"), None).unwrap_err();
        assert!(e.contains("give --group"), "{e}");
    }
}
