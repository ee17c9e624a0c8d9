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

/// One staged build of one app's plugin.
#[derive(Debug, Clone)]
pub struct AppBuild {
    /// The mount prefix it serves ("/" for a lone plugin).
    pub prefix: String,
    /// The plugin file as the user named it, and the symbol to load.
    pub original: PathBuf,
    pub symbol: String,
    /// Hex SHA-256 of the library file.
    pub hash: String,
    /// Where a process that holds the copy open loads it from.
    pub path: PathBuf,
    /// The generation that staged it: a reload that found the file
    /// unchanged keeps the build, and with it this number.
    pub generation: u32,
    /// The sealed copy; closed when the last clone of this build is gone.
    _copy: Arc<File>,
}

impl AppBuild {
    pub fn short(&self) -> &str {
        &self.hash[..12]
    }
}

/// One staged build of the server: a build of each mounted app. Workers
/// boot on a whole set; a reload stages a new set in which each app
/// whose file is unchanged (or that the reload leaves alone, `host reload
/// --mount`) keeps its build, so canary, promotion and rollback act on
/// sets while each app keeps its own identity.
#[derive(Debug, Clone)]
pub struct Build {
    /// Hex SHA-256 of the library file for a lone app at "/" (as it has
    /// always been); of the prefixes and their builds' hashes otherwise.
    pub hash: String,
    /// Counts the builds this master staged: 1 for the first.
    pub generation: u32,
    /// In mount order.
    pub apps: Vec<AppBuild>,
}

impl Build {
    /// The short form used in logs and `host check`.
    pub fn short(&self) -> &str {
        &self.hash[..12]
    }

    /// One app at "/" (a plugin named alone): its build is the set's.
    pub fn lone(&self) -> bool {
        self.apps.len() == 1 && self.apps[0].prefix == "/"
    }

    /// The app build serving `prefix`, if any.
    pub fn app(&self, prefix: &str) -> Option<&AppBuild> {
        self.apps.iter().find(|a| a.prefix == prefix)
    }
}

/// The hex SHA-256 of `bytes`.
pub fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What to stage for one mount.
pub struct Source<'a> {
    pub prefix: &'a str,
    /// The plugin file as the user named it.
    pub file: &'a Path,
    pub symbol: &'a str,
    /// Leave this mount's build as it is in `previous` (when there is one
    /// for its prefix): `host reload --mount` of another mount.
    pub keep: bool,
}

/// Stages a set as generation `generation`: each file is read, and a
/// content already staged in `previous` reuses that build (its copy and
/// its generation). The error is one line naming the file (and the mount,
/// when there are mounts).
pub fn stage_set(
    sources: &[Source<'_>],
    generation: u32,
    previous: Option<&Build>,
) -> Result<Build, String> {
    let mounted = sources.len() != 1 || sources[0].prefix != "/";
    let mut apps = Vec::with_capacity(sources.len());
    for src in sources {
        let kept = previous
            .filter(|_| src.keep)
            .and_then(|p| p.app(src.prefix))
            .cloned();
        let app = match kept {
            Some(app) => app,
            None => {
                let bytes = read(src.file).map_err(|why| match mounted {
                    true => format!("mount {}: {why}", src.prefix),
                    false => why,
                })?;
                let digest = hash(&bytes);
                // Reused only at its own prefix: two mounts of one file
                // each get a copy of their own, so each loads separately
                // (the loader would hand the second the first's image).
                let same = previous
                    .and_then(|p| p.app(src.prefix))
                    .filter(|a| a.hash == digest && a.symbol == src.symbol);
                match same {
                    Some(a) => a.clone(),
                    None => {
                        staged(src, &bytes, digest, generation).map_err(|why| match mounted {
                            true => format!("mount {}: {why}", src.prefix),
                            false => why,
                        })?
                    }
                }
            }
        };
        apps.push(app);
    }
    let hash = if mounted {
        let mut joined = Vec::new();
        for a in &apps {
            joined.extend_from_slice(a.prefix.as_bytes());
            joined.push(0);
            joined.extend_from_slice(a.hash.as_bytes());
            joined.push(b'\n');
        }
        hash(&joined)
    } else {
        apps[0].hash.clone()
    };
    Ok(Build {
        hash,
        generation,
        apps,
    })
}

/// Copies `original` into a sealed memfd and describes the build, as the
/// lone app at "/". The error is a one-line reason naming `original`.
pub fn stage(original: &Path, generation: u32) -> Result<Build, String> {
    let src = Source {
        prefix: "/",
        file: original,
        symbol: crate::gateway::plugin::DEFAULT_SYMBOL,
        keep: false,
    };
    stage_set(&[src], generation, None)
}

fn read(original: &Path) -> Result<Vec<u8>, String> {
    fs::read(original).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            format!("cannot load plugin {}: no such file", original.display())
        }
        _ => format!("cannot read plugin {}: {e}", original.display()),
    })
}

fn staged(
    src: &Source<'_>,
    bytes: &[u8],
    hash: String,
    generation: u32,
) -> Result<AppBuild, String> {
    let copy = sealed_copy(&hash, bytes)
        .map_err(|e| format!("cannot stage plugin {}: {e}", src.file.display()))?;
    Ok(AppBuild {
        prefix: src.prefix.to_string(),
        original: src.file.to_path_buf(),
        symbol: src.symbol.to_string(),
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
        assert_eq!(fs::read(&a.apps[0].path).unwrap(), b"v1");
        // Overwriting the original in place leaves the copy alone ...
        fs::write(&src, b"v2").unwrap();
        let b = stage(&src, 2).unwrap();
        assert_ne!(a.apps[0].path, b.apps[0].path);
        assert_eq!(fs::read(&a.apps[0].path).unwrap(), b"v1");
        assert_eq!(fs::read(&b.apps[0].path).unwrap(), b"v2");
        // ... and the copy cannot be changed at all.
        assert!(fs::OpenOptions::new()
            .write(true)
            .open(&a.apps[0].path)
            .and_then(|mut f| f.write_all(b"x"))
            .is_err());
        assert_eq!(b.short().len(), 12);
        let missing = stage(&dir.join("nope.so"), 3).unwrap_err();
        assert!(missing.contains("no such file"), "{missing}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_set_keeps_the_builds_of_unchanged_or_kept_mounts() {
        let dir = std::env::temp_dir().join(format!("staging-set-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (api, web) = (dir.join("api.so"), dir.join("web.so"));
        fs::write(&api, b"api1").unwrap();
        fs::write(&web, b"web1").unwrap();
        let src = |keep_api: bool| {
            [
                Source {
                    prefix: "/api",
                    file: &api,
                    symbol: "app",
                    keep: keep_api,
                },
                Source {
                    prefix: "/",
                    file: &web,
                    symbol: "app",
                    keep: false,
                },
            ]
        };
        let one = stage_set(&src(false), 1, None).unwrap();
        assert_ne!(one.hash, one.apps[0].hash);
        // Only web changes: api keeps its copy and generation.
        fs::write(&web, b"web2").unwrap();
        let two = stage_set(&src(false), 2, Some(&one)).unwrap();
        assert_eq!(two.apps[0].path, one.apps[0].path);
        assert_eq!(two.apps[0].generation, 1);
        assert_eq!(two.apps[1].generation, 2);
        assert_ne!(two.hash, one.hash);
        // api changed on disk, but the reload is for "/" only.
        fs::write(&api, b"api2").unwrap();
        let three = stage_set(&src(true), 3, Some(&two)).unwrap();
        assert_eq!(three.hash, two.hash);
        let e = stage_set(
            &[Source {
                prefix: "/x",
                file: &dir.join("none.so"),
                symbol: "app",
                keep: false,
            }],
            4,
            None,
        )
        .unwrap_err();
        assert!(e.starts_with("mount /x: cannot load plugin"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
