//! Plugin builds: private, content-addressed copies of the plugin file.
//!
//! Workers never load the path the user gave. The master copies the file's
//! bytes into a sealed memory file (memfd) named by their SHA-256, and
//! workers, which inherit it through fork, load that. A deploy that
//! overwrites the original later — even in place, which would corrupt a
//! library mapped by running processes — touches nothing that is running;
//! the seals make the copy itself immutable; each worker generation can say
//! exactly which build it runs; and nothing is left on disk, whatever way
//! the master ends: the copy lives as long as a process holds it.
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// One staged build of the plugin.
#[derive(Debug, Clone)]
pub struct Build {
    /// Hex SHA-256 of the library file.
    pub hash: String,
    /// Where a process that holds the copy open loads it from.
    pub path: PathBuf,
    /// Counts the builds this master staged: 1 for the first.
    pub generation: u32,
    /// The sealed copy; closed when the last clone of this build is gone.
    _copy: Arc<File>,
}

impl Build {
    /// The short form used in logs and `host check`.
    pub fn short(&self) -> &str {
        &self.hash[..12]
    }
}

/// The hex SHA-256 of `bytes`.
pub fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Copies `original` into a sealed memfd and describes the build. The
/// error is a one-line reason naming `original`.
pub fn stage(original: &Path, generation: u32) -> Result<Build, String> {
    let bytes = fs::read(original).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            format!("cannot load plugin {}: no such file", original.display())
        }
        _ => format!("cannot read plugin {}: {e}", original.display()),
    })?;
    let hash = hash(&bytes);
    let copy = sealed_copy(&hash, &bytes)
        .map_err(|e| format!("cannot stage plugin {}: {e}", original.display()))?;
    Ok(Build {
        path: PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd())),
        hash,
        generation,
        _copy: Arc::new(copy),
    })
}

/// A memfd holding `bytes`, sealed against any change.
fn sealed_copy(hash: &str, bytes: &[u8]) -> io::Result<File> {
    let name = CString::new(format!("nwsgi-{}", &hash[..12])).expect("hex has no NUL");
    // SAFETY: a valid NUL-terminated name and flags; the new descriptor is
    // owned by the File below and nowhere else.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on our own descriptor with an integer argument.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_by_content_and_the_copy_is_immutable() {
        let dir = std::env::temp_dir().join(format!("staging-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let src = dir.join("lib.so");
        fs::write(&src, b"v1").unwrap();
        let a = stage(&src, 1).unwrap();
        assert_eq!(a.hash, hash(b"v1"));
        assert_eq!(fs::read(&a.path).unwrap(), b"v1");
        // Overwriting the original in place leaves the copy alone ...
        fs::write(&src, b"v2").unwrap();
        let b = stage(&src, 2).unwrap();
        assert_ne!(a.path, b.path);
        assert_eq!(fs::read(&a.path).unwrap(), b"v1");
        assert_eq!(fs::read(&b.path).unwrap(), b"v2");
        // ... and the copy cannot be changed at all.
        assert!(fs::OpenOptions::new()
            .write(true)
            .open(&a.path)
            .and_then(|mut f| f.write_all(b"x"))
            .is_err());
        assert_eq!(b.short().len(), 12);
        let missing = stage(&dir.join("nope.so"), 3).unwrap_err();
        assert!(missing.contains("no such file"), "{missing}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
