//! Running the application for one request and delivering what it returns
//! (PEP 3333 "Specification Details": any iterable of bytes; close() called
//! once, whatever happens).
//!
//! The whole request takes the GIL once when the body is known by the time
//! the application returns:
//! * a list or tuple of bytes (`[b"Hello"]`): joined and handed to the host
//!   with `write_last`, which frames it with Content-Length;
//! * any other iterable whose first non-empty chunk completes the
//!   application's own Content-Length (a Flask or Django response: PEP 3333
//!   lets the server stop iterating once Content-Length bytes were sent):
//!   `write_last` with that chunk, then close().
//!
//! * any other iterable whose iterator has a length hint (a list's or a
//!   tuple's iterator: Django's HttpResponse): it holds its body already,
//!   which is gathered and sent with one `write_last`.
//!
//! Otherwise the iterable is streamed: the host's body iterator (`next`,
//! `close`) takes one chunk per call, each call taking the GIL for itself,
//! so a slow client never holds a thread or the GIL.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi::ffi::{
    nwsgi_body, nwsgi_environ, nwsgi_request, nwsgi_str, NWSGI_BODY_END, NWSGI_BODY_LAST,
    NWSGI_BODY_MORE, NWSGI_ERROR, NWSGI_OK,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::gil;
use crate::input::Input;
use crate::interp::{self, State};
use crate::start::{StartResponse, NO_LENGTH};
use crate::traceback::{log_exception, log_violation, type_name};

/// Past this many chunks announced by an iterator's length hint, its
/// response is streamed rather than gathered into one write.
const MAX_DRAINED_CHUNKS: ffi::Py_ssize_t = 64;

/// The Python objects tied to one request's handle.
struct Handles<'py> {
    start: Bound<'py, StartResponse>,
    input: Option<Bound<'py, Input>>,
}

impl Handles<'_> {
    /// The request ended: its objects refuse further use.
    fn end(&self) {
        self.start.get().end();
        if let Some(input) = &self.input {
            // A borrow fails only while the application is inside one of
            // the input's methods, which it is not once the request ends.
            if let Ok(input) = input.try_borrow() {
                input.end();
            }
        }
    }
}

/// `call`: the application, then its response.
pub fn call(
    state: &State,
    env: &nwsgi_environ,
    req: *mut nwsgi_request,
    body: &mut nwsgi_body,
) -> i32 {
    gil::with_gil(|py| {
        let handles = match make_handles(py, env, req) {
            Ok(h) => h,
            Err(err) => {
                log_exception(
                    py,
                    req,
                    "the wsgi bridge could not set up the request",
                    &err,
                );
                return NWSGI_ERROR;
            }
        };
        let rc = run(py, state, env, req, body, &handles);
        if body.close.is_none() {
            handles.end();
        }
        rc
    })
}

fn make_handles<'py>(
    py: Python<'py>,
    env: &nwsgi_environ,
    req: *mut nwsgi_request,
) -> PyResult<Handles<'py>> {
    Ok(Handles {
        start: Bound::new(py, StartResponse::new(req))?,
        input: if env.has_body != 0 {
            Some(Bound::new(py, Input::new(req))?)
        } else {
            None
        },
    })
}

fn run<'py>(
    py: Python<'py>,
    state: &State,
    env: &nwsgi_environ,
    req: *mut nwsgi_request,
    body: &mut nwsgi_body,
    handles: &Handles<'py>,
) -> i32 {
    let input = match &handles.input {
        Some(input) => input.as_any().clone(),
        None => state.empty_input.bind(py).as_any().clone(),
    };
    let environ = match crate::environ::build(py, state, env, &input) {
        Ok(environ) => environ,
        Err(err) => {
            log_exception(py, req, "the wsgi bridge could not build the environ", &err);
            return NWSGI_ERROR;
        }
    };
    let args = [environ.as_ptr(), handles.start.as_ptr()];
    // SAFETY: the application is a live callable and `args` two live
    // objects, borrowed for the call; the result is a new reference or
    // null with an exception set.
    let result = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyObject_Vectorcall(state.app.as_ptr(), args.as_ptr(), 2, std::ptr::null_mut()),
        )
    };
    drop(environ);
    let result = match result {
        Ok(result) => result,
        Err(err) => {
            log_exception(py, req, "the application raised an exception", &err);
            return NWSGI_ERROR;
        }
    };
    deliver(py, req, body, result, handles)
}

/// `write_last`: the whole rest of the body.
fn write_last(req: *mut nwsgi_request, bytes: &[u8]) -> i32 {
    // SAFETY: `req` is the live request on this thread; the bytes are
    // borrowed for the call (the host copies or sends them).
    unsafe { (interp::host_api().write_last)(req, bytes.as_ptr(), bytes.len()) }
}

/// Calls the response's close(), if it has one; an exception it raises is
/// logged (the response is already decided).
fn close_result(py: Python<'_>, req: *mut nwsgi_request, result: &Bound<'_, PyAny>) {
    let close = pyo3::intern!(py, "close");
    match result.getattr_opt(close) {
        Ok(Some(f)) => {
            if let Err(err) = f.call0() {
                log_exception(py, req, "the response's close() raised an exception", &err);
            }
        }
        Ok(None) => {}
        Err(err) => log_exception(py, req, "the response's close attribute", &err),
    }
}

fn deliver<'py>(
    py: Python<'py>,
    req: *mut nwsgi_request,
    body: &mut nwsgi_body,
    result: Bound<'py, PyAny>,
    handles: &Handles<'py>,
) -> i32 {
    let start = handles.start.get();
    // Lists and tuples (exact types: a subclass may have a close()).
    if let Ok(list) = result.cast_exact::<PyList>() {
        return deliver_sequence(req, start, list.iter());
    }
    if let Ok(tuple) = result.cast_exact::<PyTuple>() {
        return deliver_sequence(req, start, tuple.iter());
    }
    let iter = match result.try_iter() {
        Ok(iter) => iter,
        Err(err) if !err.is_instance_of::<pyo3::exceptions::PyTypeError>(py) => {
            log_exception(py, req, "iterating the response raised an exception", &err);
            close_result(py, req, &result);
            return NWSGI_ERROR;
        }
        Err(_) => {
            log_violation(
                req,
                &format!(
                    "the application returned {}, which is not iterable",
                    type_name(&result)
                ),
            );
            close_result(py, req, &result);
            return NWSGI_ERROR;
        }
    };
    // The first non-empty chunk (start_response may be called from inside
    // the iteration, before it).
    let first = loop {
        match next_bytes(req, &iter) {
            Ok(Some(chunk)) if chunk.as_bytes().is_empty() => continue,
            Ok(Some(chunk)) => break Some(chunk),
            Ok(None) => break None,
            Err(rc) => {
                close_result(py, req, &result);
                return rc;
            }
        }
    };
    if !start.started() {
        log_violation(
            req,
            if first.is_some() {
                "the response iterable yielded body bytes before start_response was called"
            } else {
                "the application returned without calling start_response"
            },
        );
        close_result(py, req, &result);
        return NWSGI_ERROR;
    }
    let Some(first) = first else {
        let rc = write_last(req, b"");
        close_result(py, req, &result);
        return rc;
    };
    let length = start.content_length();
    let sent = start.written() + first.as_bytes().len() as u64;
    if length != NO_LENGTH && sent >= length {
        let rc = write_last(req, first.as_bytes());
        close_result(py, req, &result);
        return rc;
    }
    // An iterator that knows how much it has left (a list's or a tuple's:
    // Django's HttpResponse iterates its list of chunks) holds its body
    // already: taking the rest now waits for nothing, and the whole body
    // goes out in one write_last, framed with Content-Length.
    // SAFETY: `iter` is a live object; LengthHint returns the default (-1)
    // when it has no hint, or -1 with an exception set on error.
    let hint = unsafe { ffi::PyObject_LengthHint(iter.as_ptr(), -1) };
    if hint < 0 {
        // No hint (a generator), or asking failed: stream it.
        PyErr::take(py);
    } else if hint <= MAX_DRAINED_CHUNKS {
        let mut body = first.as_bytes().to_vec();
        loop {
            match next_bytes(req, &iter) {
                Ok(Some(chunk)) => body.extend_from_slice(chunk.as_bytes()),
                Ok(None) => break,
                Err(rc) => {
                    close_result(py, req, &result);
                    return rc;
                }
            }
        }
        let rc = write_last(req, &body);
        close_result(py, req, &result);
        return rc;
    }
    let stream = Box::new(Stream {
        result: result.unbind(),
        iter: iter.into_any().unbind(),
        pending: Some(first.unbind()),
        current: None,
        sent: start.written(),
        length,
        start: handles.start.clone().unbind(),
        input: handles.input.clone().map(Bound::unbind),
    });
    body.state = Box::into_raw(stream) as *mut c_void;
    body.next = Some(stream_next);
    body.close = Some(stream_close);
    NWSGI_OK
}

/// A list or tuple: every item bytes, joined, in one `write_last`.
fn deliver_sequence<'py>(
    req: *mut nwsgi_request,
    start: &StartResponse,
    items: impl ExactSizeIterator<Item = Bound<'py, PyAny>>,
) -> i32 {
    let n = items.len();
    let mut chunks: Vec<Bound<'py, PyBytes>> = Vec::new();
    let mut one = None;
    for item in items {
        let bytes = match item.cast_into::<PyBytes>() {
            Ok(bytes) => bytes,
            Err(e) => {
                log_violation(
                    req,
                    &format!(
                        "the response iterable yielded {}, not bytes",
                        type_name(e.into_inner().as_any())
                    ),
                );
                return NWSGI_ERROR;
            }
        };
        if n == 1 {
            one = Some(bytes);
        } else {
            chunks.push(bytes);
        }
    }
    let total: usize = one
        .iter()
        .chain(chunks.iter())
        .map(|b| b.as_bytes().len())
        .sum();
    if !start.started() {
        log_violation(
            req,
            if total > 0 {
                "the application returned a body without calling start_response"
            } else {
                "the application returned without calling start_response"
            },
        );
        return NWSGI_ERROR;
    }
    match one {
        Some(bytes) => write_last(req, bytes.as_bytes()),
        None => {
            let mut joined = Vec::with_capacity(total);
            for chunk in &chunks {
                joined.extend_from_slice(chunk.as_bytes());
            }
            write_last(req, &joined)
        }
    }
}

/// The next item of the response iterable, checked to be bytes; Err with
/// the status to return when it raised (logged) or was not bytes (logged).
fn next_bytes<'py>(
    req: *mut nwsgi_request,
    iter: &Bound<'py, pyo3::types::PyIterator>,
) -> Result<Option<Bound<'py, PyBytes>>, i32> {
    let py = iter.py();
    // SAFETY: `iter` is an iterator; PyIter_Next returns a new reference,
    // or null at the end (no exception) or on error (exception set).
    let item = unsafe { ffi::PyIter_Next(iter.as_ptr()) };
    if item.is_null() {
        return match PyErr::take(py) {
            None => Ok(None),
            Some(err) => {
                log_exception(py, req, "the response iterable raised an exception", &err);
                Err(NWSGI_ERROR)
            }
        };
    }
    // SAFETY: a new reference, owned from here.
    let item = unsafe { Bound::from_owned_ptr(py, item) };
    match item.cast_into::<PyBytes>() {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) => {
            log_violation(
                req,
                &format!(
                    "the response iterable yielded {}, not bytes",
                    type_name(e.into_inner().as_any())
                ),
            );
            Err(NWSGI_ERROR)
        }
    }
}

/// A response streamed through the host's body iterator.
struct Stream {
    result: Py<PyAny>,
    iter: Py<PyAny>,
    /// The chunk read by `call`, handed out by the first `next`.
    pending: Option<Py<PyBytes>>,
    /// The chunk the host holds (borrowed until the next `next`/`close`).
    current: Option<Py<PyBytes>>,
    /// Body bytes handed out so far (write() included).
    sent: u64,
    length: u64,
    start: Py<StartResponse>,
    input: Option<Py<Input>>,
}

impl Stream {
    fn next(&mut self, py: Python<'_>, req: *mut nwsgi_request, chunk: &mut nwsgi_str) -> i32 {
        self.current = None;
        let bytes = match self.pending.take() {
            Some(bytes) => bytes.into_bound(py),
            None => {
                // SAFETY: made from `try_iter`, so an iterator.
                let iter = unsafe {
                    self.iter
                        .bind(py)
                        .cast_unchecked::<pyo3::types::PyIterator>()
                };
                match next_bytes(req, iter) {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => return NWSGI_BODY_END,
                    Err(rc) => return rc,
                }
            }
        };
        let data = bytes.as_bytes();
        self.sent += data.len() as u64;
        *chunk = nwsgi_str::from_bytes(data);
        // The bytes object stays alive (and bytes never change) until the
        // next call, as the host's borrow of `chunk` requires.
        self.current = Some(bytes.unbind());
        if self.length != NO_LENGTH && self.sent >= self.length {
            NWSGI_BODY_LAST
        } else {
            NWSGI_BODY_MORE
        }
    }

    fn close(self, py: Python<'_>, req: *mut nwsgi_request) {
        close_result(py, req, self.result.bind(py));
        self.start.get().end();
        if let Some(input) = &self.input {
            if let Ok(input) = input.bind(py).try_borrow() {
                input.end();
            }
        }
    }
}

unsafe extern "C" fn stream_next(
    state: *mut c_void,
    req: *mut nwsgi_request,
    chunk: *mut nwsgi_str,
) -> i32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `state` is the Stream `deliver` boxed, alive until
        // `close`; the host calls next and close of a request on one
        // thread, one at a time. `chunk` is the host's slot.
        let (stream, chunk) = unsafe { (&mut *(state as *mut Stream), &mut *chunk) };
        gil::with_gil(|py| stream.next(py, req, chunk))
    }))
    .unwrap_or(NWSGI_ERROR)
}

unsafe extern "C" fn stream_close(state: *mut c_void, req: *mut nwsgi_request) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the Stream `deliver` boxed; close is called exactly
        // once, after which the host never uses `state` again.
        let stream = unsafe { Box::from_raw(state as *mut Stream) };
        // Its Python objects are released inside, with the GIL held.
        gil::with_gil(|py| (*stream).close(py, req));
    }));
}
