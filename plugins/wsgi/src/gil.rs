//! Entering Python from one of the host's threads.
//!
//! `Python::attach` on a thread without a Python thread state makes one
//! (`PyGILState_Ensure`) and, when it lets go, destroys it again
//! (`PyGILState_Release` with its counter back at 0): a thread state made
//! and torn down per request, with its allocations and a trip through the
//! interpreter's thread list each time. So the first time a host thread
//! enters, it keeps one `PyGILState_Ensure` open for good and lets the GIL
//! go: every later `attach` on it finds its thread state and only takes the
//! GIL (`PyEval_RestoreThread`) and gives it back.

use std::cell::Cell;

use pyo3::{ffi, Python};

thread_local! {
    /// Whether this thread keeps a Python thread state (see the module).
    static PINNED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` holding the GIL: the one acquisition of a request (or of one
/// step of its body).
#[inline]
pub fn with_gil<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
    if !PINNED.get() {
        pin();
    }
    Python::attach(f)
}

#[cold]
fn pin() {
    // SAFETY: the interpreter was initialized by `init` before any request
    // reaches a host thread; this thread holds no GIL here (it is not inside
    // `attach`: `with_gil` is entered only from the host's entry points).
    // The Ensure is never released (the thread keeps its state); the
    // SaveThread gives the GIL back right away.
    unsafe {
        ffi::PyGILState_Ensure();
        ffi::PyEval_SaveThread();
    }
    PINNED.set(true);
}
