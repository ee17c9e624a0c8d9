//! The environ dict of one request (PEP 3333 "environ Variables").
//!
//! It starts as a copy of a template made in `init` that holds the
//! constant entries (wsgi.version, wsgi.errors, wsgi.file_wrapper, ...)
//! and a placeholder under each key every request sets: the copy is one
//! allocation of the right size, and setting a key already present neither
//! grows nor rehashes it. The CGI variables come from the host's environ
//! struct; the `HTTP_*` ones (repeated headers already joined with ", ",
//! as the host spells them) and the host's extensions (REQUEST_ID, HTTPS,
//! SSL_*) from `environ_each`.

use std::ffi::c_void;

use abi::ffi::{nwsgi_environ, nwsgi_environ_each_cb, nwsgi_str, NWSGI_OK};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::interp::State;
use crate::keys::{Caches, Keys, Var};

/// The template: every constant entry, and `None` under the keys that
/// every request sets.
pub fn template<'py>(
    py: Python<'py>,
    keys: &Keys,
    errors: &Bound<'py, PyAny>,
    file_wrapper: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(&keys.version, PyTuple::new(py, [1, 0])?)?;
    d.set_item(&keys.errors, errors)?;
    d.set_item(&keys.file_wrapper, file_wrapper)?;
    // The host's wsgi.input ends exactly at the end of the body, chunked
    // or not: reading to EOF is always safe.
    d.set_item(&keys.input_terminated, true)?;
    for key in [
        &keys.request_method,
        &keys.script_name,
        &keys.path_info,
        &keys.query_string,
        &keys.server_name,
        &keys.server_port,
        &keys.server_protocol,
        &keys.remote_addr,
        &keys.request_uri,
        &keys.request_id,
        &keys.url_scheme,
        &keys.input,
        &keys.multithread,
        &keys.multiprocess,
        &keys.run_once,
    ] {
        d.set_item(key, py.None())?;
    }
    Ok(d)
}

/// What `each_var` needs: the dict being filled and where to put an error.
struct Filler<'a, 'py> {
    py: Python<'py>,
    dict: &'a Bound<'py, PyDict>,
    caches: &'a mut Caches,
    /// The value last decoded from the host's callback, by address: the
    /// host hands REQUEST_ID and HTTP_X_REQUEST_ID the same bytes, which
    /// then make one `str`.
    last: Option<(nwsgi_str, Bound<'py, PyAny>)>,
    error: Option<PyErr>,
}

/// Builds the environ of the request `env`, with `input` as wsgi.input.
pub fn build<'py>(
    py: Python<'py>,
    state: &State,
    env: &nwsgi_environ,
    input: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let k = &state.keys;
    // SAFETY: the template is a dict; PyDict_Copy returns a new reference
    // or null with an exception set.
    let dict = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyDict_Copy(state.template.as_ptr()))?
            .cast_into_unchecked::<PyDict>()
    };
    let set = |key: &Py<PyString>, value: &Bound<'py, PyAny>| -> PyResult<()> {
        // SAFETY: `dict` is a dict, key and value live objects; SetItem
        // takes its own references.
        let rc = unsafe { ffi::PyDict_SetItem(dict.as_ptr(), key.as_ptr(), value.as_ptr()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(PyErr::fetch(py))
        }
    };
    let flag = |on: u8| {
        if on != 0 {
            pyo3::types::PyBool::new(py, true).to_owned().into_any()
        } else {
            pyo3::types::PyBool::new(py, false).to_owned().into_any()
        }
    };
    state.caches.with(py, |caches| -> PyResult<()> {
        let mut var = |key: &Py<PyString>, v: Var, s: nwsgi_str| -> PyResult<()> {
            // SAFETY: the environ's strings are borrowed until the request
            // ends, and this runs inside its `call`.
            let bytes = unsafe { s.as_bytes() };
            let value = caches.var(py, v, bytes)?;
            set(key, &value)
        };
        var(&k.request_method, Var::RequestMethod, env.request_method)?;
        var(&k.script_name, Var::ScriptName, env.script_name)?;
        var(&k.path_info, Var::PathInfo, env.path_info)?;
        var(&k.query_string, Var::QueryString, env.query_string)?;
        if env.content_type.len > 0 {
            var(&k.content_type, Var::ContentType, env.content_type)?;
        }
        if env.content_length.len > 0 {
            var(&k.content_length, Var::ContentLength, env.content_length)?;
        }
        var(&k.server_name, Var::ServerName, env.server_name)?;
        var(&k.server_port, Var::ServerPort, env.server_port)?;
        var(&k.server_protocol, Var::ServerProtocol, env.server_protocol)?;
        var(&k.remote_addr, Var::RemoteAddr, env.remote_addr)?;
        if env.remote_port.len > 0 {
            var(&k.remote_port, Var::RemotePort, env.remote_port)?;
        }
        var(&k.request_uri, Var::RequestUri, env.request_uri)?;
        var(&k.url_scheme, Var::UrlScheme, env.url_scheme)?;
        Ok(())
    })?;
    set(&k.input, input)?;
    set(&k.multithread, &flag(env.multithread))?;
    set(&k.multiprocess, &flag(env.multiprocess))?;
    set(&k.run_once, &flag(env.run_once))?;

    state.caches.with(py, |caches| -> PyResult<()> {
        let mut filler = Filler {
            py,
            dict: &dict,
            caches,
            last: None,
            error: None,
        };
        // SAFETY: `api` is the host's static table; `env` is this request's
        // environ; the callback gets `filler` back as `user` and runs
        // before environ_each returns, while `filler` lives.
        let rc = unsafe {
            ((*env.api).environ_each)(
                env,
                nwsgi_environ_each_cb {
                    func: Some(each_var),
                },
                &mut filler as *mut Filler as *mut c_void,
            )
        };
        match filler.error.take() {
            Some(e) => Err(e),
            None if rc != NWSGI_OK => Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                "the host's environ_each failed ({rc})"
            ))),
            None => Ok(()),
        }
    })?;
    Ok(dict)
}

/// The fixed variables, which `build` has set from the environ struct.
fn is_fixed(key: &[u8]) -> bool {
    matches!(
        key,
        b"REQUEST_METHOD"
            | b"SCRIPT_NAME"
            | b"PATH_INFO"
            | b"QUERY_STRING"
            | b"CONTENT_TYPE"
            | b"CONTENT_LENGTH"
            | b"SERVER_NAME"
            | b"SERVER_PORT"
            | b"SERVER_PROTOCOL"
            | b"REMOTE_ADDR"
            | b"REMOTE_PORT"
            | b"REQUEST_URI"
            | b"wsgi.url_scheme"
    )
}

/// `environ_each`'s callback: one variable into the dict.
unsafe extern "C" fn each_var(user: *mut c_void, key: nwsgi_str, value: nwsgi_str) -> i32 {
    // SAFETY: `user` is the `Filler` that `build` passed, alive and not
    // otherwise borrowed while environ_each runs.
    let filler = unsafe { &mut *(user as *mut Filler) };
    // SAFETY: both strings are borrowed for this callback.
    let (name, bytes) = unsafe { (key.as_bytes(), value.as_bytes()) };
    if !name.starts_with(b"HTTP_") && is_fixed(name) {
        return 0;
    }
    let py = filler.py;
    let result = (|| -> PyResult<()> {
        let reuse = match &filler.last {
            Some((s, obj)) if s.ptr == value.ptr && s.len == value.len => Some(obj.clone()),
            _ => None,
        };
        let (k, v) = match reuse {
            Some(v) => (filler.caches.header_key(py, name)?, v),
            None => filler.caches.header(py, name, bytes)?,
        };
        filler.dict.set_item(k, &v)?;
        filler.last = Some((value, v));
        Ok(())
    })();
    match result {
        Ok(()) => 0,
        Err(e) => {
            filler.error = Some(e);
            1
        }
    }
}
