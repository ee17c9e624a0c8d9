//! Plugin builds: private, content-addressed copies of the plugin file.
//!
//! Workers never load the path the user gave: the master copies the file
//! into its own directory under the name of its SHA-256, and workers load
//! that copy. A deploy that overwrites the original later — even in place,
//! which would corrupt a library mapped by running processes — touches
//! nothing that is running, and each worker generation can say exactly which
//! build it runs.
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One staged build of the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// Hex SHA-256 of the library file.
    pub hash: String,
    /// The private copy workers load.
    pub path: PathBuf,
    /// Counts the builds this master staged: 1 for the first.
    pub generation: u32,
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

/// Copies `original` into `dir` as `<sha256>.so` (once per content) and
/// describes the build. The error is a one-line reason naming `original`.
pub fn stage(original: &Path, dir: &Path, generation: u32) -> Result<Build, String> {
    let bytes = fs::read(original).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            format!("cannot load plugin {}: no such file", original.display())
        }
        _ => format!("cannot read plugin {}: {e}", original.display()),
    })?;
    let hash = hash(&bytes);
    let path = dir.join(format!("{hash}.so"));
    if !path.exists() {
        // Written under a temporary name and renamed, so a worker never
        // maps a half-written copy.
        let tmp = dir.join(format!(".{hash}.{}.tmp", std::process::id()));
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.set_permissions(fs::Permissions::from_mode(0o500))?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!(
                "cannot stage plugin {} in {}: {e}",
                original.display(),
                dir.display()
            )
        })?;
    }
    Ok(Build {
        hash,
        path,
        generation,
    })
}

/// The master's private directory for staged builds, removed when it
/// exits (see `Drop`).
pub struct StageDir {
    pub path: PathBuf,
}

impl StageDir {
    pub fn create() -> io::Result<StageDir> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let path = base.join(format!("nwsgi-host-{}", std::process::id()));
        fs::create_dir_all(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
        Ok(StageDir { path })
    }
}

impl Drop for StageDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_by_content() {
        let dir = StageDir::create().unwrap();
        let src = dir.path.join("lib.so");
        fs::write(&src, b"v1").unwrap();
        let a = stage(&src, &dir.path, 1).unwrap();
        assert_eq!(a.hash, hash(b"v1"));
        assert_eq!(fs::read(&a.path).unwrap(), b"v1");
        // Overwriting the original in place leaves the copy alone.
        fs::write(&src, b"v2").unwrap();
        let b = stage(&src, &dir.path, 2).unwrap();
        assert_ne!(a.path, b.path);
        assert_eq!(fs::read(&a.path).unwrap(), b"v1");
        assert_eq!(b.short().len(), 12);
        let missing = stage(&dir.path.join("nope.so"), &dir.path, 3).unwrap_err();
        assert!(missing.contains("no such file"), "{missing}");
    }
}
