//! Booting the embedded CPython and importing the application (init), and
//! letting go of it (shutdown).

use std::ffi::{c_void, CStr};
use std::path::Path;
use std::sync::OnceLock;

use abi::ffi::nwsgi_host_api;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::config::Config;
use crate::errors::Errors;
use crate::file_wrapper::FileWrapper;
use crate::input::Input;
use crate::keys::{Caches, GilCell, Keys};
use crate::traceback::{log_exception, type_name};

/// The host's table, for code that is not handed it (log lines, the
/// Python objects' methods).
static API: OnceLock<&'static nwsgi_host_api> = OnceLock::new();

pub fn api() -> Option<&'static nwsgi_host_api> {
    API.get().copied()
}

/// The host's table, once `init` has run (every Python object of the
/// bridge is made after that).
pub fn host_api() -> &'static nwsgi_host_api {
    api().expect("the host API is set in init, before any request")
}

/// Everything a request needs, made once per worker process.
pub struct State {
    pub app: Py<PyAny>,
    pub keys: Keys,
    pub template: Py<PyDict>,
    pub empty_input: Py<Input>,
    pub caches: GilCell<Caches>,
}

/// Starts Python and imports the application: the one-line reason on
/// failure (for the host to print and refuse to boot).
pub fn boot(api: &'static nwsgi_host_api, config: &Config) -> Result<State, String> {
    let _ = API.set(api);
    promote_libpython()?;
    // Py_InitializeEx(0): Python installs no signal handlers, so SIGTERM,
    // SIGINT and SIGHUP stay the host's (its graceful stop and reload).
    Python::initialize();
    Python::attach(|py| {
        let loaded = (|| -> PyResult<Result<State, String>> {
            if let Err(message) = set_paths(py, config)? {
                return Ok(Err(message));
            }
            let module = py.import(config.module.as_str())?;
            let mut target = module.into_any();
            for part in config.callable.split('.') {
                target = target.getattr(part)?;
            }
            if !target.is_callable() {
                return Ok(Err(format!(
                    "{}:{} is a {}, not a WSGI callable",
                    config.module,
                    config.callable,
                    type_name(&target)
                )));
            }
            // What the import made lives as long as the process: moved out
            // of the collector's generations, the full collections that
            // requests trigger no longer walk it (gunicorn's advice for
            // preloaded apps, here per worker).
            py.import("gc")?.call_method0("freeze")?;
            let keys = Keys::new(py);
            let errors = Bound::new(py, Errors::new())?;
            let file_wrapper = py.get_type::<FileWrapper>();
            let empty_input = Bound::new(py, Input::empty())?;
            let template = crate::environ::template(
                py,
                &keys,
                errors.as_any(),
                file_wrapper.as_any(),
                empty_input.as_any(),
            )?;
            Ok(Ok(State {
                app: target.unbind(),
                keys,
                template: template.unbind(),
                empty_input: empty_input.unbind(),
                caches: GilCell::new(Caches::default()),
            }))
        })();
        match loaded {
            Ok(result) => result,
            Err(err) => {
                log_exception(
                    py,
                    std::ptr::null_mut(),
                    &format!(
                        "could not load the WSGI application {}:{}",
                        config.module, config.callable
                    ),
                    &err,
                );
                Err(last_line(py, &err))
            }
        }
    })
}

/// The last line of an exception's report (`ModuleNotFoundError: No
/// module named 'x'`), the one that says what went wrong.
fn last_line(py: Python<'_>, err: &PyErr) -> String {
    let text = (|| -> PyResult<String> {
        let traceback = py.import("traceback")?;
        let lines =
            traceback.call_method1("format_exception_only", (err.get_type(py), err.value(py)))?;
        let lines: Vec<String> = lines.extract()?;
        Ok(lines
            .last()
            .map(|l| l.trim().to_owned())
            .unwrap_or_default())
    })();
    text.unwrap_or_else(|_| err.to_string())
}

/// sys.path: the `path=` directories first, in order, then the
/// virtualenv's site-packages, then what Python put there itself.
fn set_paths(py: Python<'_>, config: &Config) -> PyResult<Result<(), String>> {
    let sys = py.import("sys")?;
    let sys_path = sys.getattr("path")?.cast_into::<PyList>()?;
    let version = sys.getattr("version_info")?;
    let (major, minor): (u32, u32) = (
        version.get_item(0)?.extract()?,
        version.get_item(1)?.extract()?,
    );
    let mut first = Vec::new();
    for dir in &config.paths {
        match std::fs::canonicalize(dir) {
            Ok(abs) if abs.is_dir() => first.push(abs.to_string_lossy().into_owned()),
            _ => {
                return Ok(Err(format!(
                    "--app-arg path={}: no such directory",
                    dir.display()
                )))
            }
        }
    }
    if let Some(venv) = &config.venv {
        let site = venv.join(format!("lib/python{major}.{minor}/site-packages"));
        if !site.is_dir() {
            return Ok(Err(format!(
                "virtualenv {}: no {} in it (a virtualenv of another Python? this is Python {major}.{minor})",
                venv.display(),
                Path::new("lib")
                    .join(format!("python{major}.{minor}/site-packages"))
                    .display()
            )));
        }
        // site.addsitedir also runs the .pth files (editable installs);
        // what it appends is then moved in front of the system's paths.
        let before = sys_path.len();
        py.import("site")?
            .call_method1("addsitedir", (site.to_string_lossy().into_owned(),))?;
        let added: Vec<String> = sys_path.get_slice(before, sys_path.len()).extract()?;
        sys_path.del_slice(before, sys_path.len())?;
        first.extend(added);
    }
    for (i, dir) in first.into_iter().enumerate() {
        sys_path.insert(i, dir)?;
    }
    // Embedded, Python guesses sys.executable from PATH (whatever
    // `python3` comes first there). Code that starts Python processes
    // (multiprocessing, subprocess.run([sys.executable, ...])) needs the
    // interpreter that matches this one: the virtualenv's, else the
    // installation's own.
    let base: String = sys.getattr("base_prefix")?.extract()?;
    let installed = Path::new(&base).join(format!("bin/python{major}.{minor}"));
    let in_venv = config.venv.as_ref().map(|v| v.join("bin/python"));
    if let Some(exe) = in_venv
        .into_iter()
        .chain(Some(installed.clone()))
        .find(|p| p.exists())
    {
        sys.setattr("executable", exe.to_string_lossy().into_owned())?;
    }
    if installed.exists() {
        sys.setattr("_base_executable", installed.to_string_lossy().into_owned())?;
    }
    Ok(Ok(()))
}

/// The host loads plugins with RTLD_LOCAL, so libpython (loaded with this
/// library) keeps its symbols to itself, and the extension modules Python
/// imports later (markupsafe's speedups, ...), which expect to find them
/// globally, would fail to load. Loading it again with RTLD_GLOBAL (and
/// RTLD_NOLOAD: it is the copy already there) publishes them.
fn promote_libpython() -> Result<(), String> {
    // SAFETY: Dl_info is plain data (pointers and integers): all-zero is
    // a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr reads the loader's tables for an address of a
    // function of libpython; `info` is a valid place for its answer.
    let found = unsafe { libc::dladdr(pyo3::ffi::Py_IsInitialized as *const c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Ok(());
    }
    // SAFETY: dladdr sets dli_fname to a NUL-terminated path it owns.
    let file = unsafe { CStr::from_ptr(info.dli_fname) };
    if !file.to_bytes().contains_str(b"libpython") {
        // Python linked into this library itself: nothing to publish.
        return Ok(());
    }
    // SAFETY: dlopen with a valid path; RTLD_NOLOAD only promotes the
    // library already loaded. The handle is kept (never dlclosed), so
    // libpython stays for the life of the process.
    let handle = unsafe {
        libc::dlopen(
            file.as_ptr(),
            libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_NOLOAD,
        )
    };
    if handle.is_null() {
        return Err(format!(
            "could not make {}'s symbols global for extension modules",
            file.to_string_lossy()
        ));
    }
    Ok(())
}

trait ContainsStr {
    fn contains_str(&self, needle: &[u8]) -> bool;
}

impl ContainsStr for [u8] {
    fn contains_str(&self, needle: &[u8]) -> bool {
        self.windows(needle.len()).any(|w| w == needle)
    }
}

/// The worker retires: the application's atexit functions run and
/// Python's buffered output is flushed. The interpreter itself is not
/// finalized: the application's own threads may still run, and the
/// process exits next.
pub fn shutdown(state: State) {
    Python::attach(|py| {
        drop(state);
        if let Ok(atexit) = py.import("atexit") {
            if let Err(err) = atexit.call_method0("_run_exitfuncs") {
                log_exception(py, std::ptr::null_mut(), "an atexit function failed", &err);
            }
        }
        if let Ok(sys) = py.import("sys") {
            for stream in ["stdout", "stderr"] {
                if let Ok(s) = sys.getattr(stream) {
                    let _ = s.call_method0("flush");
                }
            }
        }
    });
}
