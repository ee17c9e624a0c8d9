//! wsgi.input: the request body as a Python file-like object over
//! `api->read` (PEP 3333 "Input and Error Streams": read(size), read(),
//! readline(size), readlines(hint), iteration).
//!
//! The GIL is let go around each `api->read`: with `--no-request-buffering`
//! it waits for the client, and other requests' Python code runs meanwhile.
//! A request without a body gets one shared, always-empty object instead
//! of a new one (no allocation for a GET).

use abi::ffi::nwsgi_request;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::handle::ReqHandle;
use crate::interp;

/// What one `api->read` asks for when the caller wants "everything" or a
/// line: big enough that a body of a few MB takes few calls.
const CHUNK: usize = 64 * 1024;

#[pyclass(module = "wsgi", name = "Input")]
pub struct Input {
    /// None for the shared empty input.
    req: Option<ReqHandle>,
    /// Read ahead by readline, not yet handed out: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

/// A raw pointer carried into `Python::detach`'s closure.
struct Carry<T>(T);
// SAFETY: the closure runs on the same thread, synchronously, inside
// `detach`; the pointers it carries stay valid for the whole call (see
// `host_read`).
unsafe impl<T> Send for Carry<T> {}

impl Input {
    pub fn new(req: *mut nwsgi_request) -> Input {
        Input {
            req: Some(ReqHandle::new(req)),
            buf: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    /// The input of a request without a body.
    pub fn empty() -> Input {
        Input {
            req: None,
            buf: Vec::new(),
            pos: 0,
            eof: true,
        }
    }

    /// The request ended: later reads raise.
    pub fn end(&self) {
        if let Some(h) = &self.req {
            h.end();
        }
    }

    /// Appends up to `max` bytes from the host to `out`; false at the end
    /// of the body.
    fn host_read(&mut self, py: Python<'_>, out: &mut Vec<u8>, max: usize) -> PyResult<bool> {
        if self.eof {
            return Ok(false);
        }
        let Some(handle) = &self.req else {
            self.eof = true;
            return Ok(false);
        };
        let req = handle.get("wsgi.input")?;
        let api = interp::host_api();
        out.reserve(max);
        let spare = out.spare_capacity_mut();
        let carry = Carry((req, spare.as_mut_ptr() as *mut u8, spare.len().min(max)));
        let n = py.detach(move || {
            let carry = carry;
            let (req, buf, cap) = carry.0;
            // SAFETY: `req` is the live request on this thread (checked by
            // `get`); `buf` is `cap` writable bytes of `out`'s spare
            // capacity, which nothing else touches until this returns.
            unsafe { (api.read)(req, buf, cap) }
        });
        match n {
            0 => {
                self.eof = true;
                Ok(false)
            }
            n if n > 0 => {
                // SAFETY: the host wrote `n` (<= cap) bytes into the spare
                // capacity just after `out`'s length.
                unsafe { out.set_len(out.len() + n as usize) };
                Ok(true)
            }
            n => {
                self.eof = true;
                Err(PyOSError::new_err(match n as i32 {
                    abi::ffi::NWSGI_E_DISCONNECTED => {
                        "reading the request body: the client went away"
                    }
                    abi::ffi::NWSGI_E_BAD_BODY => {
                        "reading the request body: malformed, too large, or too slow"
                    }
                    _ => "reading the request body failed",
                }))
            }
        }
    }

    /// Takes up to `max` bytes of what readline read ahead into `out`.
    fn take_buffered(&mut self, out: &mut Vec<u8>, max: usize) {
        let avail = &self.buf[self.pos..];
        let n = avail.len().min(max);
        out.extend_from_slice(&avail[..n]);
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// One line (with its b"\n"), at most `limit` bytes; empty at the end.
    fn line(&mut self, py: Python<'_>, limit: usize) -> PyResult<Vec<u8>> {
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.pos..];
            let window = &avail[..avail.len().min(limit)];
            if let Some(i) = window[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i + 1;
                let line = avail[..end].to_vec();
                self.pos += end;
                return Ok(line);
            }
            if window.len() == limit || self.eof {
                let line = window.to_vec();
                self.pos += line.len();
                return Ok(line);
            }
            scanned = window.len();
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let mut buf = std::mem::take(&mut self.buf);
            let more = self.host_read(py, &mut buf, CHUNK);
            self.buf = buf;
            more?;
        }
    }
}

#[pymethods]
impl Input {
    /// read(size=-1): `size` bytes, fewer only at the end of the body; all
    /// that is left for a negative or absent size.
    #[pyo3(signature = (size=None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let want = match size {
            Some(n) if n >= 0 => n as usize,
            _ => usize::MAX,
        };
        let mut out = Vec::new();
        self.take_buffered(&mut out, want);
        while out.len() < want {
            let ask = (want - out.len()).min(CHUNK);
            if !self.host_read(py, &mut out, ask)? {
                break;
            }
        }
        Ok(PyBytes::new(py, &out))
    }

    /// readline(size=-1): one line, with its newline; b"" at the end.
    #[pyo3(signature = (size=None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let limit = match size {
            Some(n) if n >= 0 => n as usize,
            _ => usize::MAX,
        };
        let line = self.line(py, limit)?;
        Ok(PyBytes::new(py, &line))
    }

    /// readlines(hint=-1): the lines left, or lines until `hint` bytes.
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let hint = match hint {
            Some(n) if n > 0 => n as usize,
            _ => usize::MAX,
        };
        let mut lines = Vec::new();
        let mut total = 0;
        while total < hint {
            let line = self.line(py, usize::MAX)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            lines.push(PyBytes::new(py, &line));
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.line(py, usize::MAX)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}
