//! The environ dict of one request (PEP 3333 "environ Variables").
//!
//! It starts as a copy of a template made in `init` that holds the
//! constant entries (wsgi.version, wsgi.errors, wsgi.file_wrapper, ...)
//! and, under each key every request has, the value the last request had:
//! the copy is one allocation of the right size, a value that repeats
//! costs a comparison, and setting a key already present neither grows
//! nor rehashes the table. The CGI variables come from the host's environ
//! struct, the `HTTP_*` ones from its raw header list: each header name as
//! received has a cached key object and value slot, so a request's
//! headers cost a comparison each, not a name built, upper-cased and
//! interned. What the host decides rather than the list says is asked of it
//! (`environ_get`): the request id (REQUEST_ID and HTTP_X_REQUEST_ID,
//! whatever the client sent), the TLS variables of an https request
//! (HTTPS, SSL_*), the joined value of a repeated header (", ", "; " for
//! Cookie), and names with '_' (exposed only if the host allows them).

use abi::ffi::{nwsgi_environ, nwsgi_str};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::interp::State;
use crate::keys::{latin1, HeaderKind, Keys, Var, SECURE_VARS};

/// Entries the template's table is grown past (CPython's dict of 32 slots
/// holds 21, the next size 42 or more).
const MIN_TABLE: usize = 24;

/// The template: every constant entry, wsgi.input of a request without a
/// body, and `None` under the keys that every request has (until a
/// request gives them the value the next one is likely to have too).
pub fn template<'py>(
    py: Python<'py>,
    keys: &Keys,
    errors: &Bound<'py, PyAny>,
    file_wrapper: &Bound<'py, PyAny>,
    empty_input: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(&keys.input, empty_input)?;
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
        &keys.http_x_request_id,
        &keys.url_scheme,
        &keys.multithread,
        &keys.multiprocess,
        &keys.run_once,
    ] {
        d.set_item(key, py.None())?;
    }
    // Grow the template's table now, once: a request adds REMOTE_PORT and
    // the HTTP_* variables to its copy, which would otherwise outgrow the
    // table it was copied with and resize it on every request. Keys put in
    // and taken out again leave the table grown (a copy keeps its size).
    let pads: Vec<String> = (d.len()..MIN_TABLE).map(|i| format!(" pad {i}")).collect();
    for pad in &pads {
        d.set_item(pad, py.None())?;
    }
    for pad in &pads {
        d.del_item(pad)?;
    }
    Ok(d)
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
    let set_any = |key: &Bound<'py, PyAny>, value: &Bound<'py, PyAny>| -> PyResult<()> {
        // SAFETY: `dict` is a dict, key and value live objects; SetItem
        // takes its own references.
        let rc = unsafe { ffi::PyDict_SetItem(dict.as_ptr(), key.as_ptr(), value.as_ptr()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(PyErr::fetch(py))
        }
    };
    let set = |key: &Py<PyString>, value: &Bound<'py, PyAny>| set_any(key.bind(py).as_any(), value);
    let flag = |on: u8| {
        if on != 0 {
            pyo3::types::PyBool::new(py, true).to_owned().into_any()
        } else {
            pyo3::types::PyBool::new(py, false).to_owned().into_any()
        }
    };
    let template = state.template.bind(py);
    state.caches.with(py, |caches| -> PyResult<()> {
        // The variables every request has: the template holds the last
        // value each one had, so a value that repeats (the method, the
        // server name and port, the protocol, the client's address, often
        // the path) costs one comparison and no dict write. A new value is
        // written to this request's dict and to the template.
        let mut held = |key: &Py<PyString>, v: Var, s: nwsgi_str| -> PyResult<()> {
            // SAFETY: the environ's strings are borrowed until the request
            // ends, and this runs inside its `call`.
            let bytes = unsafe { s.as_bytes() };
            if caches.in_template(v, bytes) {
                return Ok(());
            }
            let value = latin1(py, bytes)?;
            set(key, &value)?;
            template.set_item(key, &value)?;
            caches.set_in_template(v, bytes);
            Ok(())
        };
        held(&k.request_method, Var::RequestMethod, env.request_method)?;
        held(&k.script_name, Var::ScriptName, env.script_name)?;
        held(&k.path_info, Var::PathInfo, env.path_info)?;
        held(&k.query_string, Var::QueryString, env.query_string)?;
        held(&k.server_name, Var::ServerName, env.server_name)?;
        held(&k.server_port, Var::ServerPort, env.server_port)?;
        held(&k.server_protocol, Var::ServerProtocol, env.server_protocol)?;
        held(&k.remote_addr, Var::RemoteAddr, env.remote_addr)?;
        held(&k.request_uri, Var::RequestUri, env.request_uri)?;
        held(&k.url_scheme, Var::UrlScheme, env.url_scheme)?;
        // The ones a request may lack: set when present.
        let mut var = |key: &Py<PyString>, v: Var, s: nwsgi_str| -> PyResult<()> {
            // SAFETY: as above.
            let bytes = unsafe { s.as_bytes() };
            let value = caches.var(py, v, bytes)?;
            set(key, &value)
        };
        if env.content_type.len > 0 {
            var(&k.content_type, Var::ContentType, env.content_type)?;
        }
        if env.content_length.len > 0 {
            var(&k.content_length, Var::ContentLength, env.content_length)?;
        }
        if env.remote_port.len > 0 {
            var(&k.remote_port, Var::RemotePort, env.remote_port)?;
        }
        let flags = [env.multithread, env.multiprocess, env.run_once];
        if caches.flags_in_template != Some(flags) {
            for (key, on) in [&k.multithread, &k.multiprocess, &k.run_once]
                .into_iter()
                .zip(flags)
            {
                let value = flag(on);
                set(key, &value)?;
                template.set_item(key, &value)?;
            }
            caches.flags_in_template = Some(flags);
        }
        Ok(())
    })?;
    // The template holds the shared empty input of a request without a
    // body.
    if !input.is(state.empty_input.bind(py)) {
        set(&k.input, input)?;
    }
    // The id the host gave the request, under both of its names.
    let request_id = host_var(env, b"REQUEST_ID")
        .map(|id| latin1(py, id))
        .transpose()?
        .unwrap_or_else(|| PyString::new(py, "").into_any());
    set(&k.request_id, &request_id)?;
    set(&k.http_x_request_id, &request_id)?;
    if env.url_scheme.len == 5 {
        // https: the host's TLS variables (rare enough to ask for each).
        for name in SECURE_VARS {
            if let Some(value) = host_var(env, name.as_bytes()) {
                dict.set_item(PyString::intern(py, name), latin1(py, value)?)?;
            }
        }
    }

    let headers = if env.n_headers == 0 {
        &[][..]
    } else {
        // SAFETY: the raw header list is `n_headers` entries borrowed
        // until the request ends.
        unsafe { std::slice::from_raw_parts(env.headers, env.n_headers) }
    };
    state.caches.with(py, |caches| -> PyResult<()> {
        for header in headers {
            // SAFETY: as the list, its strings are borrowed until the
            // request ends.
            let (raw, bytes) = unsafe { (header.name.as_bytes(), header.value.as_bytes()) };
            let entry = caches.header(py, raw)?;
            // SAFETY: a live dict and key; a borrowed reference (or null)
            // comes back, only compared with null.
            let repeated = entry.kind != HeaderKind::Skip
                && !unsafe { ffi::PyDict_GetItem(dict.as_ptr(), entry.key.as_ptr()) }.is_null();
            let value = match entry.kind {
                HeaderKind::Skip => continue,
                // A repeated name (or a '_' twin): the host joins the values
                // (", ", or "; " for Cookie) and decides what is exposed.
                HeaderKind::AskHost => None,
                HeaderKind::Plain if repeated => None,
                HeaderKind::Plain => Some(match entry.slot {
                    Some(slot) => slot.get(py, bytes)?,
                    None => latin1(py, bytes)?,
                }),
            };
            let value = match value {
                Some(value) => value,
                None => {
                    let name = entry.key.cast::<PyString>()?.to_cow()?;
                    match host_var(env, name.as_bytes()) {
                        Some(joined) => latin1(py, joined)?,
                        None => continue,
                    }
                }
            };
            set_any(&entry.key, &value)?;
        }
        Ok(())
    })?;
    Ok(dict)
}

/// The host's value of the environ variable `name` (`environ_get`).
fn host_var<'a>(env: &'a nwsgi_environ, name: &[u8]) -> Option<&'a [u8]> {
    let mut value = nwsgi_str::EMPTY;
    // SAFETY: `api` is the host's static table and `env` this request's
    // environ; the key is borrowed for the call; the value it sets is
    // borrowed until the request ends, which outlives `'a`'s use here.
    let found =
        unsafe { ((*env.api).environ_get)(env, nwsgi_str::from_bytes(name), &mut value) == 1 };
    // SAFETY: as above.
    found.then(|| unsafe { value.as_bytes() })
}
