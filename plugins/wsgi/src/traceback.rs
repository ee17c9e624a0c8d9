//! Python exceptions and PEP 3333 violations into the host's log.

use abi::ffi::{nwsgi_request, NWSGI_LOG_ERROR};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::log_line;

/// Logs `err` with its traceback, one log line per line of it, naming the
/// request `req` (null outside a request).
pub fn log_exception(py: Python<'_>, req: *mut nwsgi_request, context: &str, err: &PyErr) {
    log_line(req, NWSGI_LOG_ERROR, context);
    let formatted = (|| -> PyResult<String> {
        let traceback = py.import(pyo3::intern!(py, "traceback"))?;
        let lines = traceback.call_method1(
            pyo3::intern!(py, "format_exception"),
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        let text = PyString::new(py, "").call_method1(pyo3::intern!(py, "join"), (lines,))?;
        text.extract::<String>()
    })();
    match formatted {
        Ok(text) => {
            for line in text.lines() {
                log_line(req, NWSGI_LOG_ERROR, line);
            }
        }
        Err(_) => log_line(req, NWSGI_LOG_ERROR, &err.to_string()),
    }
}

/// Logs a PEP 3333 violation by the application.
pub fn log_violation(req: *mut nwsgi_request, what: &str) {
    log_line(req, NWSGI_LOG_ERROR, &format!("PEP 3333 violation: {what}"));
}

/// The name of an object's type, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}
