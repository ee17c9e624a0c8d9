//! The Python objects every request uses, made once in `init`, and the
//! caches that spare a request most of its string allocations.
//!
//! Environ keys are interned `str` objects made once: a dict insert with
//! one of them costs a hash already computed and, when the key is there, a
//! pointer comparison. Environ values are `str` objects too, and most of
//! them repeat from one request to the next (the method, the protocol, the
//! server name and port, the client's address, the Host and User-Agent
//! headers, often the path): each one has a slot that remembers the bytes
//! and the `str` of its last value, and hands that `str` out again (one
//! reference count) when the bytes are the same. `str` objects are
//! immutable, so sharing one between requests changes nothing an
//! application can see.

use std::cell::UnsafeCell;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// The host's TLS variables, asked for on https requests.
pub const SECURE_VARS: [&str; 5] = [
    "HTTPS",
    "SSL_PROTOCOL",
    "SSL_CLIENT_VERIFY",
    "SSL_CLIENT_S_DN",
    "SSL_CLIENT_I_DN",
];

/// Values longer than this are made afresh each time, not remembered: a
/// cache for the short ones, not a copy of every long cookie.
const MAX_CACHED_VALUE: usize = 256;

/// How many distinct header names remember their key object and last
/// value: enough for the headers of real clients; past it (a client
/// sending hundreds of made-up names) keys are made per request, so the
/// cache cannot be grown without bound.
const MAX_HEADER_SLOTS: usize = 48;

/// State that is only touched with the GIL held.
///
/// The bridge runs on interpreters with a GIL (CPython 3.11; a
/// free-threaded build would need a lock here), so the GIL is this cell's
/// lock: [`GilCell::with`] takes the `Python` token as proof.
pub struct GilCell<T>(UnsafeCell<T>);

// SAFETY: every access goes through `with`, which needs the GIL held
// (its `Python` token), so two threads never touch the value at once; the
// value itself may move between threads (`T: Send`).
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub const fn new(value: T) -> GilCell<T> {
        GilCell(UnsafeCell::new(value))
    }

    /// Runs `f` on the value. `f` must not run Python code (which could
    /// let the GIL go, or re-enter here): it only copies bytes, makes
    /// `str` objects and changes reference counts of `str` objects, whose
    /// deallocation runs no Python code.
    pub fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: the GIL is held (the token), so no other thread is in
        // here, and `f` cannot re-enter (see above): this is the only
        // reference to the value while `f` runs.
        f(unsafe { &mut *self.0.get() })
    }
}

/// A `str` made from bytes read as Latin-1 (PEP 3333's "native strings":
/// each byte one code point).
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `bytes` is a valid slice; a null result is turned into the
    // pending exception by `from_owned_ptr_or_err`.
    unsafe {
        let obj = ffi::PyUnicode_DecodeLatin1(
            bytes.as_ptr() as *const std::ffi::c_char,
            bytes.len() as ffi::Py_ssize_t,
            std::ptr::null(),
        );
        Bound::from_owned_ptr_or_err(py, obj)
    }
}

/// One environ value's memory of its last value.
#[derive(Default)]
pub struct Slot {
    bytes: Vec<u8>,
    value: Option<Py<PyAny>>,
}

impl Slot {
    /// The `str` for `bytes`: the remembered one when the bytes are the
    /// same, else a new one (remembered when short).
    pub fn get<'py>(&mut self, py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        if let Some(value) = &self.value {
            if self.bytes == bytes {
                return Ok(value.bind(py).clone());
            }
        }
        let value = latin1(py, bytes)?;
        if bytes.len() <= MAX_CACHED_VALUE {
            self.bytes.clear();
            self.bytes.extend_from_slice(bytes);
            self.value = Some(value.clone().unbind());
        }
        Ok(value)
    }
}

/// The fixed environ variables with a value slot, by index.
#[derive(Clone, Copy)]
pub enum Var {
    RequestMethod,
    ScriptName,
    PathInfo,
    QueryString,
    ContentType,
    ContentLength,
    ServerName,
    ServerPort,
    ServerProtocol,
    RemoteAddr,
    RemotePort,
    RequestUri,
    UrlScheme,
}

const VARS: usize = Var::UrlScheme as usize + 1;

/// What a request header name becomes in the environ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// `HTTP_<NAME>`.
    Plain,
    /// Not an `HTTP_*` variable: Content-Type and Content-Length (CGI's
    /// own variables), X-Request-Id (HTTP_X_REQUEST_ID is the request's
    /// effective id, whatever the client sent).
    Skip,
    /// A name with '_', whose variable would collide with its '-' twin:
    /// exposed only as the host decides (`environ_get`).
    AskHost,
}

/// A header name as received, seen before: its `HTTP_*` key object, what
/// it becomes, and the slot of its last value.
struct HeaderSlot {
    raw: Box<[u8]>,
    key: Py<PyAny>,
    kind: HeaderKind,
    value: Slot,
}

/// Every value cache (one per process, behind the GIL).
#[derive(Default)]
pub struct Caches {
    vars: [Slot; VARS],
    /// For the variables every request has: the bytes of the value the
    /// environ template holds (None: a placeholder). See `environ::build`.
    in_template: [Option<Vec<u8>>; VARS],
    /// The wsgi.multithread/multiprocess/run_once the template holds.
    pub flags_in_template: Option<[u8; 3]>,
    headers: Vec<HeaderSlot>,
}

/// A header's environ entry: its key, what it is, and its value's slot
/// (None past the cache's bound: the value is then made afresh).
pub struct HeaderEntry<'a, 'py> {
    pub key: Bound<'py, PyAny>,
    pub kind: HeaderKind,
    pub slot: Option<&'a mut Slot>,
}

impl Caches {
    pub fn var<'py>(
        &mut self,
        py: Python<'py>,
        var: Var,
        bytes: &[u8],
    ) -> PyResult<Bound<'py, PyAny>> {
        self.vars[var as usize].get(py, bytes)
    }

    /// Whether the template holds `var` with the value `bytes`.
    pub fn in_template(&self, var: Var, bytes: &[u8]) -> bool {
        self.in_template[var as usize].as_deref() == Some(bytes)
    }

    /// The template now holds `var` with the value `bytes`.
    pub fn set_in_template(&mut self, var: Var, bytes: &[u8]) {
        let held = self.in_template[var as usize].get_or_insert_with(Vec::new);
        held.clear();
        held.extend_from_slice(bytes);
    }

    /// The environ entry of the request header named `raw` (as received).
    pub fn header<'a, 'py>(
        &'a mut self,
        py: Python<'py>,
        raw: &[u8],
    ) -> PyResult<HeaderEntry<'a, 'py>> {
        if let Some(i) = self.headers.iter().position(|s| &*s.raw == raw) {
            let slot = &mut self.headers[i];
            return Ok(HeaderEntry {
                key: slot.key.bind(py).clone(),
                kind: slot.kind,
                slot: Some(&mut slot.value),
            });
        }
        let kind = if raw.eq_ignore_ascii_case(b"content-type")
            || raw.eq_ignore_ascii_case(b"content-length")
            || raw.eq_ignore_ascii_case(b"x-request-id")
        {
            HeaderKind::Skip
        } else if raw.contains(&b'_') {
            HeaderKind::AskHost
        } else {
            HeaderKind::Plain
        };
        let mut name = Vec::with_capacity(5 + raw.len());
        name.extend_from_slice(b"HTTP_");
        name.extend(raw.iter().map(|&c| match c {
            b'-' => b'_',
            c => c.to_ascii_uppercase(),
        }));
        let key = intern_latin1(py, &name)?;
        if self.headers.len() >= MAX_HEADER_SLOTS {
            return Ok(HeaderEntry {
                key,
                kind,
                slot: None,
            });
        }
        self.headers.push(HeaderSlot {
            raw: raw.into(),
            key: key.clone().unbind(),
            kind,
            value: Slot::default(),
        });
        let slot = self.headers.last_mut().expect("just pushed");
        Ok(HeaderEntry {
            key,
            kind,
            slot: Some(&mut slot.value),
        })
    }
}

/// An interned `str` from Latin-1 bytes.
fn intern_latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let key = latin1(py, bytes)?;
    let mut ptr = key.into_ptr();
    // SAFETY: `ptr` is an owned reference to an exact str; InternInPlace
    // replaces it with the interned one, keeping one owned reference.
    unsafe {
        ffi::PyUnicode_InternInPlace(&mut ptr);
        Ok(Bound::from_owned_ptr(py, ptr))
    }
}

/// The interned environ keys.
pub struct Keys {
    pub request_method: Py<PyString>,
    pub script_name: Py<PyString>,
    pub path_info: Py<PyString>,
    pub query_string: Py<PyString>,
    pub content_type: Py<PyString>,
    pub content_length: Py<PyString>,
    pub server_name: Py<PyString>,
    pub server_port: Py<PyString>,
    pub server_protocol: Py<PyString>,
    pub remote_addr: Py<PyString>,
    pub remote_port: Py<PyString>,
    pub request_uri: Py<PyString>,
    pub request_id: Py<PyString>,
    pub http_x_request_id: Py<PyString>,
    pub url_scheme: Py<PyString>,
    pub input: Py<PyString>,
    pub multithread: Py<PyString>,
    pub multiprocess: Py<PyString>,
    pub run_once: Py<PyString>,
    pub errors: Py<PyString>,
    pub version: Py<PyString>,
    pub input_terminated: Py<PyString>,
    pub file_wrapper: Py<PyString>,
}

impl Keys {
    pub fn new(py: Python<'_>) -> Keys {
        let k = |s: &str| PyString::intern(py, s).unbind();
        Keys {
            request_method: k("REQUEST_METHOD"),
            script_name: k("SCRIPT_NAME"),
            path_info: k("PATH_INFO"),
            query_string: k("QUERY_STRING"),
            content_type: k("CONTENT_TYPE"),
            content_length: k("CONTENT_LENGTH"),
            server_name: k("SERVER_NAME"),
            server_port: k("SERVER_PORT"),
            server_protocol: k("SERVER_PROTOCOL"),
            remote_addr: k("REMOTE_ADDR"),
            remote_port: k("REMOTE_PORT"),
            request_uri: k("REQUEST_URI"),
            request_id: k("REQUEST_ID"),
            http_x_request_id: k("HTTP_X_REQUEST_ID"),
            url_scheme: k("wsgi.url_scheme"),
            input: k("wsgi.input"),
            multithread: k("wsgi.multithread"),
            multiprocess: k("wsgi.multiprocess"),
            run_once: k("wsgi.run_once"),
            errors: k("wsgi.errors"),
            version: k("wsgi.version"),
            input_terminated: k("wsgi.input_terminated"),
            file_wrapper: k("wsgi.file_wrapper"),
        }
    }
}
