//! wsgi.errors: a text stream into the host's log (`api->log`), one log
//! line per line written.
//!
//! One object serves every request: a line written while a request runs
//! is logged with a null request handle, which the host still ties to the
//! request running on that thread (its id), so nothing is made per
//! request. Text is held until its newline (`print()` writes the text and
//! the newline in two calls) or `flush()`.

use std::sync::Mutex;

use abi::ffi::NWSGI_LOG_ERROR;
use pyo3::prelude::*;
use pyo3::types::PyString;

#[pyclass(module = "wsgi", name = "Errors", frozen)]
pub struct Errors {
    /// The start of a line not yet ended. Locked only when the
    /// application writes, never by the bridge's request path.
    partial: Mutex<String>,
}

impl Errors {
    pub fn new() -> Errors {
        Errors {
            partial: Mutex::new(String::new()),
        }
    }

    fn add(&self, text: &str) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        let mut rest = text;
        while let Some(i) = rest.find('\n') {
            partial.push_str(&rest[..i]);
            crate::log_line(std::ptr::null_mut(), NWSGI_LOG_ERROR, &partial);
            partial.clear();
            rest = &rest[i + 1..];
        }
        partial.push_str(rest);
    }
}

#[pymethods]
impl Errors {
    fn write(&self, text: &Bound<'_, PyString>) -> PyResult<usize> {
        let text = text.to_cow()?;
        self.add(&text);
        Ok(text.chars().count())
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            let line = line?;
            self.add(&line.cast::<PyString>()?.to_cow()?);
        }
        Ok(())
    }

    fn flush(&self) {
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        if !partial.is_empty() {
            crate::log_line(std::ptr::null_mut(), NWSGI_LOG_ERROR, &partial);
            partial.clear();
        }
    }
}
