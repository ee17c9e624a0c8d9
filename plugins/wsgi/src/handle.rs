//! A request handle kept by a Python object (start_response, write,
//! wsgi.input), which the application may keep longer than the request.
//!
//! The host's handle is valid only until the request ends and only on the
//! thread serving it. So the Python objects hold it through a
//! [`ReqHandle`]: `end` clears it when the request ends, and `get` hands it
//! out only on the thread that serves the request and before it ended, and
//! otherwise raises, instead of passing the host a dangling handle.

use std::sync::atomic::{AtomicPtr, Ordering};

use abi::ffi::nwsgi_request;
use pyo3::exceptions::PyRuntimeError;
use pyo3::PyResult;

pub struct ReqHandle {
    req: AtomicPtr<nwsgi_request>,
    thread: libc::pthread_t,
}

impl ReqHandle {
    /// Made on the thread serving `req`.
    pub fn new(req: *mut nwsgi_request) -> ReqHandle {
        ReqHandle {
            req: AtomicPtr::new(req),
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
        }
    }

    /// The handle, if the request is still running and this is its thread.
    pub fn get(&self, what: &str) -> PyResult<*mut nwsgi_request> {
        // Relaxed: only the serving thread stores (in `end`), and only it
        // may use the handle, which the thread check below ensures.
        let req = self.req.load(Ordering::Relaxed);
        if req.is_null() {
            return Err(PyRuntimeError::new_err(format!(
                "{what} used after its request ended"
            )));
        }
        // SAFETY: pthread_self has no preconditions.
        if unsafe { libc::pthread_equal(self.thread, libc::pthread_self()) } == 0 {
            return Err(PyRuntimeError::new_err(format!(
                "{what} used from a thread other than the one serving its request"
            )));
        }
        Ok(req)
    }

    /// The request ended: the handle is never handed out again.
    pub fn end(&self) {
        self.req.store(std::ptr::null_mut(), Ordering::Relaxed);
    }
}
