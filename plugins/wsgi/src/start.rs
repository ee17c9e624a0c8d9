//! start_response(status, response_headers, exc_info=None) and the write()
//! callable it returns (PEP 3333 "The start_response() Callable").
//!
//! The arguments are checked against PEP 3333 (status a `str` "NNN
//! Reason", headers a list of `(str, str)` tuples, all Latin-1) and handed
//! straight to the host's start_response, which keeps them until the first
//! body bytes, exactly PEP 3333's rule: the host's own answers
//! (NWSGI_E_STATE for a second call without exc_info,
//! NWSGI_E_HEADERS_SENT for exc_info once the headers went out) become the
//! PEP's errors. The strings are passed without a copy when they are ASCII
//! (a compact ASCII `str` holds its bytes as they are); other Latin-1
//! text is encoded first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use abi::ffi::{
    nwsgi_exc_info, nwsgi_header, nwsgi_str, NWSGI_E_DISCONNECTED, NWSGI_E_HEADERS_SENT,
    NWSGI_E_INVALID, NWSGI_E_STATE, NWSGI_OK,
};
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::handle::ReqHandle;
use crate::interp;
use crate::traceback::type_name;

/// No Content-Length header was given.
pub const NO_LENGTH: u64 = u64::MAX;

/// Headers passed without a heap allocation; more go to a Vec.
const INLINE_HEADERS: usize = 16;

#[pyclass(module = "wsgi", name = "StartResponse", frozen)]
pub struct StartResponse {
    req: ReqHandle,
    started: AtomicBool,
    /// The application's Content-Length, or NO_LENGTH.
    content_length: AtomicU64,
    /// Body bytes the application pushed with write().
    written: AtomicU64,
}

impl StartResponse {
    pub fn new(req: *mut abi::ffi::nwsgi_request) -> StartResponse {
        StartResponse {
            req: ReqHandle::new(req),
            started: AtomicBool::new(false),
            content_length: AtomicU64::new(NO_LENGTH),
            written: AtomicU64::new(0),
        }
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    pub fn content_length(&self) -> u64 {
        self.content_length.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub fn end(&self) {
        self.req.end();
    }
}

/// The bytes of a `str` as Latin-1: borrowed from an ASCII `str`, else
/// encoded into a `bytes` kept in `keep` until the host has copied them.
fn latin1_bytes<'py>(
    s: &Bound<'py, PyString>,
    keep: &mut Vec<Bound<'py, PyAny>>,
    what: &dyn Fn() -> String,
) -> PyResult<nwsgi_str> {
    // SAFETY: `s` is a str. For a compact ASCII str, AsUTF8AndSize returns
    // its own bytes (no encoding, nothing allocated), valid while `s`
    // lives, which is until the host call that uses them returns.
    unsafe {
        let p = s.as_ptr();
        if ffi::PyUnicode_IS_ASCII(p) != 0 {
            let mut len: ffi::Py_ssize_t = 0;
            let data = ffi::PyUnicode_AsUTF8AndSize(p, &mut len);
            if !data.is_null() {
                return Ok(nwsgi_str {
                    ptr: data as *const u8,
                    len: len as usize,
                });
            }
            return Err(PyErr::fetch(s.py()));
        }
    }
    let encoded = s
        .call_method1(pyo3::intern!(s.py(), "encode"), ("latin-1",))
        .map_err(|_| {
            PyValueError::new_err(format!(
                "PEP 3333 violation: start_response: {} is not Latin-1 text",
                what()
            ))
        })?;
    let bytes = encoded.cast::<PyBytes>()?.as_bytes();
    let out = nwsgi_str::from_bytes(bytes);
    // The bytes object owns `out`'s memory: it is kept until the call.
    keep.push(encoded);
    Ok(out)
}

fn violation(message: String) -> PyErr {
    PyTypeError::new_err(format!("PEP 3333 violation: {message}"))
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, response_headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        response_headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let req = this.req.get("start_response")?;
        let mut keep: Vec<Bound<'py, PyAny>> = Vec::new();

        let status = status.cast::<PyString>().map_err(|_| {
            violation(format!(
                "start_response: status must be str, got {}",
                type_name(status)
            ))
        })?;
        let status_bytes = latin1_bytes(status, &mut keep, &|| "the status".to_owned())?;
        // SAFETY: borrowed from `status` (or `keep`), alive here.
        let sb = unsafe { status_bytes.as_bytes() };
        if sb.len() < 5 || !sb[..3].iter().all(u8::is_ascii_digit) || sb[3] != b' ' {
            return Err(PyValueError::new_err(format!(
                "PEP 3333 violation: start_response: status {:?} is not \"NNN Reason\"",
                String::from_utf8_lossy(sb)
            )));
        }

        let list = response_headers.cast::<PyList>().map_err(|_| {
            violation(format!(
                "start_response: headers must be a list of (name, value) tuples, got {}",
                type_name(response_headers)
            ))
        })?;
        let mut inline = [nwsgi_header {
            name: nwsgi_str::EMPTY,
            value: nwsgi_str::EMPTY,
        }; INLINE_HEADERS];
        let mut spill: Vec<nwsgi_header> = Vec::new();
        let n = list.len();
        let mut content_length = NO_LENGTH;
        for i in 0..n {
            let item = list.get_item(i)?;
            let pair = item
                .cast::<PyTuple>()
                .ok()
                .filter(|t| t.len() == 2)
                .ok_or_else(|| {
                    violation(format!(
                        "start_response: header {i} must be a (name, value) tuple, got {}",
                        type_name(&item)
                    ))
                })?;
            // SAFETY: index 0 and 1 of a tuple of length 2; borrowed while
            // `pair` (kept alive by `item`) lives.
            let (name, value) = unsafe {
                (
                    pair.get_borrowed_item_unchecked(0),
                    pair.get_borrowed_item_unchecked(1),
                )
            };
            let name = name.cast::<PyString>().map_err(|_| {
                violation(format!(
                    "start_response: header {i}'s name must be str, got {}",
                    type_name(&name)
                ))
            })?;
            let value = value.cast::<PyString>().map_err(|_| {
                violation(format!(
                    "start_response: header {i}'s value must be str, got {}",
                    type_name(&value)
                ))
            })?;
            let header = nwsgi_header {
                name: latin1_bytes(&name, &mut keep, &|| format!("header {i}'s name"))?,
                value: latin1_bytes(&value, &mut keep, &|| format!("header {i}'s value"))?,
            };
            // SAFETY: borrowed from the tuple's strings (or `keep`).
            let hname = unsafe { header.name.as_bytes() };
            if hname.eq_ignore_ascii_case(b"content-length") {
                // SAFETY: as above.
                let v = unsafe { header.value.as_bytes() };
                content_length = std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(NO_LENGTH);
            }
            if i < INLINE_HEADERS {
                inline[i] = header;
            } else {
                if spill.is_empty() {
                    spill.extend_from_slice(&inline);
                }
                spill.push(header);
            }
        }
        let headers: &[nwsgi_header] = if n <= INLINE_HEADERS {
            &inline[..n]
        } else {
            &spill
        };

        let exc = match exc_info.filter(|e| !e.is_none()) {
            None => None,
            Some(e) => {
                let t = e
                    .cast::<PyTuple>()
                    .ok()
                    .filter(|t| t.len() == 3)
                    .ok_or_else(|| {
                        violation(format!(
                        "start_response: exc_info must be a (type, value, traceback) tuple, got {}",
                        type_name(e)
                    ))
                    })?;
                let value = t.get_item(1)?;
                let message = format!("{}: {}", type_name(&value), value.str()?);
                Some((value, message))
            }
        };
        let exc_struct = exc.as_ref().map(|(_, m)| nwsgi_exc_info {
            message: nwsgi_str::from_bytes(m.as_bytes()),
        });
        let api = interp::host_api();
        // SAFETY: `req` is this thread's live request (checked by `get`);
        // every string points into an object alive until this returns.
        let rc = unsafe {
            (api.start_response)(
                req,
                status_bytes,
                headers.as_ptr(),
                headers.len(),
                exc_struct
                    .as_ref()
                    .map_or(std::ptr::null(), |e| e as *const nwsgi_exc_info),
            )
        };
        drop(keep);
        match rc {
            NWSGI_OK => {}
            NWSGI_E_HEADERS_SENT => {
                // PEP 3333: re-raise the application's exception.
                let (value, _) = exc.expect("the host reports HEADERS_SENT only with exc_info");
                return Err(PyErr::from_value(value));
            }
            NWSGI_E_STATE => {
                return Err(PyRuntimeError::new_err(
                    "PEP 3333 violation: start_response called a second time without exc_info",
                ))
            }
            NWSGI_E_INVALID => {
                return Err(PyValueError::new_err(
                    "start_response: the server refused the status or a header (see its log line)",
                ))
            }
            rc => {
                return Err(PyRuntimeError::new_err(format!(
                    "start_response failed ({rc})"
                )))
            }
        }
        this.content_length.store(content_length, Ordering::Relaxed);
        this.started.store(true, Ordering::Relaxed);
        slf.getattr(pyo3::intern!(py, "write"))
    }

    /// PEP 3333's write(): the bytes go to the client before it returns.
    /// The GIL is let go meanwhile (a slow client makes it wait).
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data
            .cast::<PyBytes>()
            .map_err(|_| violation(format!("write() takes bytes, got {}", type_name(data))))?;
        let req = self.req.get("write()")?;
        if !self.started() {
            return Err(PyRuntimeError::new_err(
                "PEP 3333 violation: write() called before start_response",
            ));
        }
        let bytes = data.as_bytes();
        if bytes.is_empty() {
            return Ok(());
        }
        let api = interp::host_api();
        let carry = Carry((req, bytes.as_ptr(), bytes.len()));
        let rc = py.detach(move || {
            let carry = carry;
            let (req, ptr, len) = carry.0;
            // SAFETY: `req` is this thread's live request; the bytes belong
            // to `data`, which lives (and cannot change: bytes are
            // immutable) until this returns.
            unsafe { (api.write)(req, ptr, len) }
        });
        self.written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        match rc {
            NWSGI_OK => Ok(()),
            NWSGI_E_DISCONNECTED => Err(PyConnectionError::new_err("the client went away")),
            NWSGI_E_INVALID => Err(PyValueError::new_err(
                "write(): more bytes than the response's Content-Length",
            )),
            rc => Err(PyRuntimeError::new_err(format!("write() failed ({rc})"))),
        }
    }
}

/// Raw pointers carried into `Python::detach`'s closure.
struct Carry<T>(T);
// SAFETY: the closure runs synchronously on this thread inside `detach`,
// while the pointed-to request and bytes stay valid (see `write`).
unsafe impl<T> Send for Carry<T> {}
