//! Loading and validating an application plugin, and calling into it.
//!
//! This is the one place where the host touches the plugin's code and data
//! through raw pointers: every `unsafe` block that crosses into the plugin is
//! here, with the descriptor checked (magic, major version, struct size)
//! before any plugin function runs.
use std::ffi::{c_void, CStr};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use abi::ffi::{
    nwsgi_app, nwsgi_body, nwsgi_environ, nwsgi_header, nwsgi_host_api, nwsgi_init_args,
    nwsgi_request, nwsgi_str, NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR, NWSGI_APP_SIZE_1_0,
    NWSGI_APP_THREAD_SAFE, NWSGI_MAGIC, NWSGI_OK,
};
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

/// `PATH[:SYMBOL]` as typed on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    pub path: PathBuf,
    pub symbol: String,
}

pub const DEFAULT_SYMBOL: &str = "app";

/// The descriptor flags this host knows; a plugin setting any other bit is
/// refused rather than served without what it asked for.
const KNOWN_FLAGS: u32 = NWSGI_APP_THREAD_SAFE;

impl PluginSpec {
    /// Splits at the last ':' when what follows is a C identifier, so paths
    /// that merely contain a colon still work.
    pub fn parse(s: &str) -> PluginSpec {
        let (path, symbol) = PluginSpec::split(s);
        PluginSpec {
            path: PathBuf::from(path),
            symbol: symbol.to_string(),
        }
    }

    /// `parse` without the copies: the path and the symbol.
    pub fn split(s: &str) -> (&str, &str) {
        if let Some((path, sym)) = s.rsplit_once(':') {
            let is_ident = !sym.is_empty()
                && !sym.starts_with(|c: char| c.is_ascii_digit())
                && sym.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if is_ident && !path.is_empty() {
                return (path, sym);
            }
        }
        (s, DEFAULT_SYMBOL)
    }
}

/// Why a plugin was refused. Each message names the file, the symbol and,
/// where versions are involved, both versions.
#[derive(Debug)]
pub enum LoadError {
    NotFound {
        path: PathBuf,
    },
    NotLibrary {
        path: PathBuf,
        detail: String,
    },
    NoSymbol {
        path: PathBuf,
        symbol: String,
    },
    BadMagic {
        path: PathBuf,
        symbol: String,
        found: u32,
    },
    WrongMajor {
        path: PathBuf,
        symbol: String,
        major: u16,
        minor: u16,
    },
    TooSmall {
        path: PathBuf,
        symbol: String,
        major: u16,
        minor: u16,
        size: u32,
        need: usize,
    },
    NoCall {
        path: PathBuf,
        symbol: String,
    },
    UnknownFlags {
        path: PathBuf,
        symbol: String,
        major: u16,
        minor: u16,
        flags: u32,
    },
    InitFailed {
        path: PathBuf,
        symbol: String,
        code: i32,
        message: String,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = format!("{NWSGI_ABI_MAJOR}.{NWSGI_ABI_MINOR}");
        match self {
            LoadError::NotFound { path } => {
                write!(f, "cannot load plugin {}: no such file", path.display())
            }
            LoadError::NotLibrary { path, detail } => write!(
                f,
                "cannot load plugin {}: not a loadable shared library ({detail})",
                path.display()
            ),
            LoadError::NoSymbol { path, symbol } => write!(
                f,
                "plugin {} has no symbol '{symbol}' (name another with {}:SYMBOL)",
                path.display(),
                path.display()
            ),
            LoadError::BadMagic {
                path,
                symbol,
                found,
            } => write!(
                f,
                "plugin {}: symbol '{symbol}' is not an NWSGI app descriptor \
                 (magic 0x{found:08x}, expected 0x{NWSGI_MAGIC:08x}); host ABI {host}",
                path.display()
            ),
            LoadError::WrongMajor {
                path,
                symbol,
                major,
                minor,
            } => write!(
                f,
                "plugin {}: symbol '{symbol}' was built for NWSGI ABI {major}.{minor}, \
                 but this host speaks ABI {host} (major versions must match)",
                path.display()
            ),
            LoadError::TooSmall {
                path,
                symbol,
                major,
                minor,
                size,
                need,
            } => write!(
                f,
                "plugin {}: symbol '{symbol}' descriptor is too small: {size} bytes, \
                 ABI {major}.{minor} needs at least {need} (host ABI {host})",
                path.display()
            ),
            LoadError::NoCall { path, symbol } => write!(
                f,
                "plugin {}: symbol '{symbol}' has no call function (it is required)",
                path.display()
            ),
            LoadError::UnknownFlags {
                path,
                symbol,
                major,
                minor,
                flags,
            } => write!(
                f,
                "plugin {}: symbol '{symbol}' (ABI {major}.{minor}) sets flag bits 0x{:x} \
                 that this host (ABI {host}) does not know; it may rely on behaviour \
                 this host does not have (known: 0x{KNOWN_FLAGS:x} NWSGI_APP_THREAD_SAFE)",
                path.display(),
                flags & !KNOWN_FLAGS
            ),
            LoadError::InitFailed {
                path,
                symbol,
                code,
                message,
            } => write!(
                f,
                "plugin {}: symbol '{symbol}' init failed (code {code}): {}",
                path.display(),
                crate::text::shown(message)
            ),
        }
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    /// The same error naming `shown` instead of the file actually loaded
    /// (a worker loads a private copy; the user knows the original).
    pub fn shown_as(mut self, shown: &Path) -> LoadError {
        match &mut self {
            LoadError::NotFound { path }
            | LoadError::NotLibrary { path, .. }
            | LoadError::NoSymbol { path, .. }
            | LoadError::BadMagic { path, .. }
            | LoadError::WrongMajor { path, .. }
            | LoadError::TooSmall { path, .. }
            | LoadError::NoCall { path, .. }
            | LoadError::UnknownFlags { path, .. }
            | LoadError::InitFailed { path, .. } => *path = shown.to_path_buf(),
        }
        self
    }
}

/// The span of addresses a loaded object's segments occupy: its static
/// storage, which stays where it is while the object is loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Image {
    start: usize,
    end: usize,
}

impl Image {
    /// Whether `len` bytes at `addr` lie inside the image.
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.start && addr.checked_add(len).is_some_and(|e| e <= self.end)
    }

    /// The image of the loaded object (library or program) that holds
    /// `addr`; empty if none does.
    pub fn holding(addr: usize) -> Image {
        struct Search {
            addr: usize,
            found: Image,
        }
        unsafe extern "C" fn each(
            info: *mut libc::dl_phdr_info,
            _size: libc::size_t,
            data: *mut c_void,
        ) -> libc::c_int {
            // SAFETY: dl_iterate_phdr hands a valid info for the duration of
            // the call, whose dlpi_phdr has dlpi_phnum entries; `data` is the
            // `Search` passed below, alive for the whole iteration.
            let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
            let phdrs = if info.dlpi_phdr.is_null() {
                &[][..]
            } else {
                // SAFETY: as above.
                unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
            };
            let base = info.dlpi_addr as usize;
            let mut image = Image {
                start: usize::MAX,
                end: 0,
            };
            for ph in phdrs.iter().filter(|ph| ph.p_type == libc::PT_LOAD) {
                let start = base.wrapping_add(ph.p_vaddr as usize);
                image.start = image.start.min(start);
                image.end = image.end.max(start.wrapping_add(ph.p_memsz as usize));
            }
            if image.contains(search.addr, 1) {
                search.found = image;
                return 1;
            }
            0
        }
        let mut search = Search {
            addr,
            found: Image::default(),
        };
        // SAFETY: `each` only reads what the loader hands it and writes
        // `search`, which outlives the call.
        unsafe { libc::dl_iterate_phdr(Some(each), (&mut search as *mut Search).cast()) };
        search.found
    }
}

/// A loaded, validated plugin. The library stays loaded for the life of the
/// process (`lib` is never dropped while `desc` or `state` are in use: they
/// are fields of the same struct and the struct owns the library).
pub struct Plugin {
    /// Keeps the code and the descriptor mapped (None for an app linked
    /// into this program, see `from_static`). What matters is that nothing
    /// copies `desc` out of `self`.
    _lib: Option<Library>,
    /// Points into `_lib`'s static data (or to a `'static` descriptor);
    /// valid while `_lib` is loaded. Checked by `validate` before anything
    /// else reads it.
    desc: *const nwsgi_app,
    pub spec: PluginSpec,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub flags: u32,
    pub name: Option<String>,
    /// The library's image (where its static heads live).
    pub image: Image,
    /// The app's own pointer from init (null when it has none or no init).
    state: *mut c_void,
    /// Serialises calls into apps that are not thread-safe.
    serial: Option<Mutex<()>>,
    shut_down: bool,
}

// SAFETY: the descriptor and library handle are immutable after load; the
// app state is only handed back to the plugin, which promised (through
// NWSGI_APP_THREAD_SAFE) to accept concurrent calls or gets them serialised
// through `serial`.
unsafe impl Send for Plugin {}
// SAFETY: as above: shared access only ever calls through the descriptor.
unsafe impl Sync for Plugin {}

impl Plugin {
    /// dlopen the file and validate the descriptor. Runs no plugin code
    /// except the library's own constructors (which dlopen always runs).
    pub fn load(spec: &PluginSpec) -> Result<Plugin, LoadError> {
        let path = &spec.path;
        if !path.exists() {
            return Err(LoadError::NotFound { path: path.clone() });
        }
        // dlopen searches the library path for names without a slash; a user
        // who typed `libx.so` means the file in this directory.
        let open_path: PathBuf = if path.components().count() == 1 && !path.is_absolute() {
            Path::new(".").join(path)
        } else {
            path.clone()
        };
        // SAFETY: loading a library runs its initialisers; that is the
        // contract of a plugin. RTLD_NOW makes missing symbols fail here
        // rather than at the first request.
        let lib =
            unsafe { Library::open(Some(&open_path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
                LoadError::NotLibrary {
                    path: path.clone(),
                    detail: dl_detail(&e),
                }
            })?;
        let mut sym_name = spec.symbol.clone().into_bytes();
        sym_name.push(0);
        // SAFETY: we only take the symbol's address here, typed as a
        // pointer to bytes; nothing is read until validate() checks it.
        let addr: *const u8 = match unsafe { lib.get::<*const u8>(&sym_name) } {
            Ok(sym) => sym.into_raw() as *const u8,
            Err(_) => {
                return Err(LoadError::NoSymbol {
                    path: path.clone(),
                    symbol: spec.symbol.clone(),
                })
            }
        };
        if addr.is_null() {
            return Err(LoadError::NoSymbol {
                path: path.clone(),
                symbol: spec.symbol.clone(),
            });
        }
        let desc = addr as *const nwsgi_app;
        // SAFETY: `desc` is the address of an exported symbol in a library
        // that stays loaded (we own `lib`); validate reads only the header
        // fields first and the rest only if struct_size covers them.
        let checked = unsafe { validate(desc, spec)? };
        Ok(Plugin::validated(Some(lib), desc, spec, checked))
    }

    /// An app linked into this program (benchmarks, embedding), checked
    /// exactly as a loaded one; `label` names it in messages.
    pub fn from_static(desc: &'static nwsgi_app, label: &str) -> Result<Plugin, LoadError> {
        let spec = PluginSpec {
            path: PathBuf::from(label),
            symbol: DEFAULT_SYMBOL.to_string(),
        };
        let desc: *const nwsgi_app = desc;
        // SAFETY: a 'static reference to a whole descriptor is readable
        // for as long as validate (or anything after it) reads it.
        let checked = unsafe { validate(desc, &spec)? };
        Ok(Plugin::validated(None, desc, &spec, checked))
    }

    fn validated(
        lib: Option<Library>,
        desc: *const nwsgi_app,
        spec: &PluginSpec,
        checked: Checked,
    ) -> Plugin {
        Plugin {
            _lib: lib,
            desc,
            spec: spec.clone(),
            abi_major: checked.major,
            abi_minor: checked.minor,
            flags: checked.flags,
            name: checked.name,
            image: Image::holding(desc as usize),
            state: std::ptr::null_mut(),
            serial: if checked.flags & NWSGI_APP_THREAD_SAFE == 0 {
                Some(Mutex::new(()))
            } else {
                None
            },
            shut_down: false,
        }
    }

    /// What logs call the app: its descriptor's name, else the name of the
    /// file it was loaded as (`shown`), without `lib` and extension.
    pub fn display_name(&self, shown: &Path) -> String {
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            return name.to_string();
        }
        let stem = shown
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default();
        let stem = stem.strip_prefix("lib").unwrap_or(&stem);
        if stem.is_empty() {
            "app".into()
        } else {
            stem.to_string()
        }
    }

    pub fn thread_safe(&self) -> bool {
        self.flags & NWSGI_APP_THREAD_SAFE != 0
    }

    pub fn flags_text(&self) -> String {
        if self.thread_safe() {
            "thread-safe".into()
        } else {
            "none".into()
        }
    }

    /// Runs the plugin's init with the `--app-arg` pairs.
    pub fn init(
        &mut self,
        config: &[(String, String)],
        api: &'static nwsgi_host_api,
    ) -> Result<(), LoadError> {
        // SAFETY: validated in load(); the descriptor lives as long as `self`.
        let init = unsafe { (*self.desc).init };
        let Some(init) = init else { return Ok(()) };
        let pairs: Vec<nwsgi_header> = config
            .iter()
            .map(|(k, v)| nwsgi_header {
                name: nwsgi_str::from_bytes(k.as_bytes()),
                value: nwsgi_str::from_bytes(v.as_bytes()),
            })
            .collect();
        let mut failure: Option<String> = None;
        let args = nwsgi_init_args {
            struct_size: std::mem::size_of::<nwsgi_init_args>() as u32,
            abi_major: NWSGI_ABI_MAJOR,
            abi_minor: NWSGI_ABI_MINOR,
            api,
            config: pairs.as_ptr(),
            n_config: pairs.len(),
            fail: record_init_failure,
            fail_ctx: &mut failure as *mut Option<String> as *mut c_void,
        };
        let mut state: *mut c_void = std::ptr::null_mut();
        // SAFETY: `args`, the config strings and `failure` outlive the call,
        // as the header promises (borrowed for the duration of init).
        let code = unsafe { init(&args, &mut state) };
        if code != NWSGI_OK {
            return Err(LoadError::InitFailed {
                path: self.spec.path.clone(),
                symbol: self.spec.symbol.clone(),
                code,
                message: failure.unwrap_or_else(|| "no reason given".into()),
            });
        }
        self.state = state;
        Ok(())
    }

    /// The per-request call; `body` starts zeroed.
    ///
    /// # Safety
    /// `env` must point to a live environ and `req` be the host's handle for
    /// this request; both must stay valid until the body is closed (the
    /// header's lifetime rules), and the calling thread must be the one that
    /// will run next/close for this request.
    pub unsafe fn call(
        &self,
        env: *const nwsgi_environ,
        req: *mut nwsgi_request,
        body: &mut nwsgi_body,
    ) -> i32 {
        let _serial = self.serial.as_ref().map(lock);
        // SAFETY: validate() guaranteed `call` is non-null; the environ and
        // request handle are valid per this function's contract.
        unsafe {
            let call = (*self.desc).call.unwrap_unchecked();
            call(self.state, env, req, body)
        }
    }

    /// Pulls the next chunk from a body the app returned.
    ///
    /// # Safety
    /// `body` must come from this plugin's `call` (which returned OK), not be
    /// closed yet, and not have ended; `req` as for `call`.
    pub unsafe fn next(
        &self,
        body: &nwsgi_body,
        req: *mut nwsgi_request,
        chunk: &mut nwsgi_str,
    ) -> i32 {
        let Some(next) = body.next else {
            return abi::ffi::NWSGI_BODY_END;
        };
        let _serial = self.serial.as_ref().map(lock);
        // SAFETY: per this function's contract.
        unsafe { next(body.state, req, chunk) }
    }

    /// Closes a body.
    ///
    /// # Safety
    /// As for `next`, and at most once per body: its state is never used
    /// again afterwards.
    pub unsafe fn close(&self, body: &nwsgi_body, req: *mut nwsgi_request) {
        if let Some(close) = body.close {
            let _serial = self.serial.as_ref().map(lock);
            // SAFETY: per this function's contract.
            unsafe { close(body.state, req) }
        }
    }

    /// Runs the plugin's shutdown once, after the last request.
    pub fn shutdown(&mut self) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        // SAFETY: validated descriptor; no request is running any more (the
        // caller joined the app threads).
        if let Some(shutdown) = unsafe { (*self.desc).shutdown } {
            // SAFETY: `state` is what init gave us, handed back unchanged.
            unsafe { shutdown(self.state) }
        }
    }
}

fn lock(m: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    // A panic while holding this lock happened in host code between plugin
    // calls; the guard protects no data, so poisoning means nothing here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `nwsgi_init_args.fail`: copies the app's reason for failing.
unsafe extern "C" fn record_init_failure(ctx: *mut c_void, message: nwsgi_str) {
    let _ = std::panic::catch_unwind(|| {
        if ctx.is_null() {
            return;
        }
        // SAFETY: ctx is the `&mut Option<String>` Plugin::init passed in
        // fail_ctx, alive for the duration of init; message is borrowed
        // for this call per the header.
        let (slot, text) = unsafe { (&mut *(ctx as *mut Option<String>), message.as_bytes()) };
        *slot = Some(String::from_utf8_lossy(text).into_owned());
    });
}

struct Checked {
    major: u16,
    minor: u16,
    flags: u32,
    name: Option<String>,
}

/// Checks the descriptor in the order that makes each read safe: the
/// 12-byte prefix (magic, versions, size) first, then only fields that
/// `struct_size` covers.
///
/// # Safety
/// `desc` must point to at least 12 readable bytes inside a loaded library
/// (an exported data symbol).
unsafe fn validate(desc: *const nwsgi_app, spec: &PluginSpec) -> Result<Checked, LoadError> {
    let path = spec.path.clone();
    let symbol = spec.symbol.clone();
    // SAFETY: the caller guarantees the prefix is readable; unaligned reads
    // because a symbol that is not a descriptor may have any alignment.
    let (magic, major, minor, size) = unsafe {
        (
            std::ptr::addr_of!((*desc).magic).read_unaligned(),
            std::ptr::addr_of!((*desc).abi_major).read_unaligned(),
            std::ptr::addr_of!((*desc).abi_minor).read_unaligned(),
            std::ptr::addr_of!((*desc).struct_size).read_unaligned(),
        )
    };
    if magic != NWSGI_MAGIC {
        return Err(LoadError::BadMagic {
            path,
            symbol,
            found: magic,
        });
    }
    if major != NWSGI_ABI_MAJOR {
        return Err(LoadError::WrongMajor {
            path,
            symbol,
            major,
            minor,
        });
    }
    // Every 1.x descriptor has at least the 1.0 fields.
    if (size as usize) < NWSGI_APP_SIZE_1_0 {
        return Err(LoadError::TooSmall {
            path,
            symbol,
            major,
            minor,
            size,
            need: NWSGI_APP_SIZE_1_0,
        });
    }
    // SAFETY: struct_size covers the 1.0 fields, so they are readable.
    let (flags, call) = unsafe { ((*desc).flags, (*desc).call) };
    if call.is_none() {
        return Err(LoadError::NoCall { path, symbol });
    }
    if flags & !KNOWN_FLAGS != 0 {
        return Err(LoadError::UnknownFlags {
            path,
            symbol,
            major,
            minor,
            flags,
        });
    }
    let name_end = std::mem::offset_of!(nwsgi_app, name) + std::mem::size_of::<*const u8>();
    let name = if size as usize >= name_end {
        // SAFETY: the plugin declared a struct that includes `name`, a
        // pointer to a static NUL-terminated string or null.
        unsafe {
            let p = (*desc).name;
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        }
    } else {
        None
    };
    Ok(Checked {
        major,
        minor,
        flags,
        name,
    })
}

/// dlerror text without the repeated path prefix.
fn dl_detail(e: &libloading::Error) -> String {
    let text = match e {
        libloading::Error::DlOpen { desc } => format!("{desc:?}"),
        other => other.to_string(),
    };
    let text = text.trim_matches('"').to_string();
    // "path: invalid ELF header" -> "invalid ELF header"
    match text.rsplit_once(": ") {
        Some((_, tail)) if !tail.is_empty() => tail.to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_splits_symbol_only_when_it_is_an_identifier() {
        assert_eq!(
            PluginSpec::parse("./libx.so:other"),
            PluginSpec {
                path: "./libx.so".into(),
                symbol: "other".into()
            }
        );
        assert_eq!(PluginSpec::parse("./libx.so").symbol, "app");
        assert_eq!(
            PluginSpec::parse("/a:b/libx.so").path,
            Path::new("/a:b/libx.so")
        );
        assert_eq!(PluginSpec::parse("./x.so:9").symbol, "app");
    }
}
