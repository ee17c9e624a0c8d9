//! The host API a plugin calls back into (`nwsgi_host_api`): one static
//! table, and an `extern "C"` function per entry that checks the plugin's
//! pointers and hands the call to the request's `Exchange`.
use std::cell::Cell;
use std::ffi::c_void;
use std::fmt;
use std::sync::OnceLock;

use abi::ffi::{
    nwsgi_environ_each_cb, nwsgi_exc_info, nwsgi_header, nwsgi_host_api, nwsgi_request,
    nwsgi_response_head, nwsgi_str, NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR, NWSGI_ERROR, NWSGI_E_INVALID,
};

use crate::gateway::exchange::{current_app, CurrentRequestId, Exchange};
use crate::gateway::ffi_guard;
use crate::text::Shown;

/// The table every plugin gets; static, so valid while any library is loaded.
pub static HOST_API: nwsgi_host_api = nwsgi_host_api {
    struct_size: std::mem::size_of::<nwsgi_host_api>() as u32,
    abi_major: NWSGI_ABI_MAJOR,
    abi_minor: NWSGI_ABI_MINOR,
    start_response: host_start_response,
    write: host_write,
    read: host_read,
    log: host_log,
    environ_get: crate::gateway::environ::environ_get,
    environ_each: environ_each_trampoline,
    start_response_static: host_start_response_static,
    write_last: host_write_last,
};

// `environ_each` takes its callback wrapped for abi_stable's derive; the
// wrapper is repr(transparent), so the function itself lives in environ.rs.
unsafe extern "C" fn environ_each_trampoline(
    env: *const abi::ffi::nwsgi_environ,
    f: nwsgi_environ_each_cb,
    user: *mut c_void,
) -> i32 {
    // SAFETY: forwarding the app's own arguments unchanged.
    unsafe { crate::gateway::environ::environ_each(env, f, user) }
}

// --- the host callbacks -----------------------------------------------------

/// # Safety
/// `req` must be null or the handle `exchange::call` passed to the plugin,
/// still live.
unsafe fn exchange<'r>(req: *mut nwsgi_request) -> Option<&'r mut Exchange> {
    // SAFETY: per the function's contract; the plugin calls back only from
    // the thread running the request and only while it is running.
    unsafe { req.cast::<Exchange>().as_mut() }
}

/// The app's `n` headers at `list`: empty for 0, `None` for a NULL list of
/// more (or more than any array can hold).
///
/// # Safety
/// Unless NULL, `list` points to `n` headers, borrowed for `'a`.
unsafe fn header_list<'a>(list: *const nwsgi_header, n: usize) -> Option<&'a [nwsgi_header]> {
    match (list.is_null(), n) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        _ if n > isize::MAX as usize / std::mem::size_of::<nwsgi_header>() => None,
        // SAFETY: non-null and `n` long, per the contract.
        (false, _) => Some(unsafe { std::slice::from_raw_parts(list, n) }),
    }
}

/// The app's `len` bytes at `data`, `None` for NULL with `len` > 0.
///
/// # Safety
/// Unless NULL, `data` points to `len` readable bytes, borrowed for `'a`.
unsafe fn app_bytes<'a>(data: *const u8, len: usize) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    unsafe { nwsgi_str { ptr: data, len }.try_as_bytes() }
}

/// Something the app handed over that the host cannot read: a NULL with a
/// length (or a count). Formatted only when it happens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unreadable {
    Status(usize),
    HeaderList(usize),
    HeaderName(usize, usize),
    HeaderValue(usize, usize),
    ExcMessage(usize),
    Head,
    Data(usize),
    Buf(usize),
    LogText,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Unreadable::Status(n) => write!(f, "the status is a NULL pointer with length {n}"),
            Unreadable::HeaderList(n) => write!(f, "the header list is NULL with {n} headers"),
            Unreadable::HeaderName(i, n) => {
                write!(f, "header {i}'s name is a NULL pointer with length {n}")
            }
            Unreadable::HeaderValue(i, n) => {
                write!(f, "header {i}'s value is a NULL pointer with length {n}")
            }
            Unreadable::ExcMessage(n) => {
                write!(f, "exc_info's message is a NULL pointer with length {n}")
            }
            Unreadable::Head => f.write_str("the head is NULL"),
            Unreadable::Data(n) => write!(f, "data is a NULL pointer with length {n}"),
            Unreadable::Buf(n) => write!(f, "buf is a NULL pointer with cap {n}"),
            Unreadable::LogText => {
                f.write_str("the target or the message is a NULL pointer with a length")
            }
        }
    }
}

/// Whether the host can read a head the app handed over: a NULL header
/// list with a count, or a NULL string with a length, it cannot. (What the
/// head says is checked by `ResponseHead`.)
///
/// # Safety
/// The strings and the list are borrowed for the call (see the header).
unsafe fn check_head(
    status: nwsgi_str,
    headers: *const nwsgi_header,
    n: usize,
) -> Result<(), Unreadable> {
    // SAFETY: per the contract.
    if unsafe { status.try_as_bytes() }.is_none() {
        return Err(Unreadable::Status(status.len));
    }
    // SAFETY: per the contract.
    let Some(list) = (unsafe { header_list(headers, n) }) else {
        return Err(Unreadable::HeaderList(n));
    };
    for (i, h) in list.iter().enumerate() {
        // SAFETY: per the contract.
        if unsafe { h.name.try_as_bytes() }.is_none() {
            return Err(Unreadable::HeaderName(i, h.name.len));
        }
        // SAFETY: per the contract.
        if unsafe { h.value.try_as_bytes() }.is_none() {
            return Err(Unreadable::HeaderValue(i, h.value.len));
        }
    }
    Ok(())
}

/// exc_info's message, if any exc_info.
///
/// # Safety
/// `exc_info` is NULL or borrowed for the call.
unsafe fn exc_message<'a>(exc_info: *const nwsgi_exc_info) -> Result<Option<&'a [u8]>, Unreadable> {
    // SAFETY: per the contract.
    match unsafe { exc_info.as_ref() } {
        None => Ok(None),
        // SAFETY: per the contract.
        Some(e) => match unsafe { e.message.try_as_bytes() } {
            Some(m) => Ok(Some(m)),
            None => Err(Unreadable::ExcMessage(e.message.len)),
        },
    }
}

/// A NULL request handle: there is no request to fail, only a line to log.
fn no_request(call: &str) -> i32 {
    tracing::error!("app called {call} with a NULL request handle; refused");
    NWSGI_E_INVALID
}

unsafe extern "C" fn host_start_response(
    req: *mut nwsgi_request,
    status: nwsgi_str,
    headers: *const nwsgi_header,
    n_headers: usize,
    exc_info: *const nwsgi_exc_info,
) -> i32 {
    ffi_guard(NWSGI_ERROR, || {
        // SAFETY: the header says req is the handle given to call; status,
        // headers and exc_info are borrowed for this call.
        let Some(ex) = (unsafe { exchange(req) }) else {
            return no_request("start_response");
        };
        // SAFETY: as above.
        if let Err(why) = unsafe { check_head(status, headers, n_headers) } {
            return ex.misuse("start_response", why);
        }
        // SAFETY: as above.
        let exc = match unsafe { exc_message(exc_info) } {
            Ok(exc) => exc,
            Err(why) => return ex.misuse("start_response", why),
        };
        // SAFETY: checked readable above, borrowed for this call.
        let (status, headers) = unsafe {
            (
                status.as_bytes(),
                header_list(headers, n_headers).unwrap_or(&[]),
            )
        };
        ex.start_response(0, status, headers, exc)
    })
}

unsafe extern "C" fn host_start_response_static(
    req: *mut nwsgi_request,
    head: *const nwsgi_response_head,
    exc_info: *const nwsgi_exc_info,
) -> i32 {
    ffi_guard(NWSGI_ERROR, || {
        // SAFETY: see host_start_response.
        let Some(ex) = (unsafe { exchange(req) }) else {
            return no_request("start_response_static");
        };
        // SAFETY: `head` is null or, per the header, a head that stays
        // valid while the library is loaded, and so is what it points to.
        let Some(head) = (unsafe { head.as_ref() }) else {
            return ex.misuse("start_response_static", Unreadable::Head);
        };
        // Remembered by address only when it lies in the plugin's own
        // image: a head on the stack or the heap is checked every time.
        let key = ex.static_key(head);
        if exc_info.is_null() && ex.knows_static(key) {
            // The usual call: a head validated before, nothing to read.
            return ex.start_response_known(key);
        }
        if !ex.knows_static(key) {
            // SAFETY: as above.
            if let Err(why) = unsafe { check_head(head.status, head.headers, head.n_headers) } {
                return ex.misuse("start_response_static", why);
            }
        }
        // SAFETY: as above.
        let exc = match unsafe { exc_message(exc_info) } {
            Ok(exc) => exc,
            Err(why) => return ex.misuse("start_response_static", why),
        };
        // SAFETY: checked readable (now or when the key was first seen).
        let (status, headers) = unsafe {
            (
                head.status.as_bytes(),
                header_list(head.headers, head.n_headers).unwrap_or(&[]),
            )
        };
        ex.start_response(key, status, headers, exc)
    })
}

unsafe extern "C" fn host_write(req: *mut nwsgi_request, data: *const u8, len: usize) -> i32 {
    ffi_guard(NWSGI_ERROR, || {
        // SAFETY: see host_start_response; `len` bytes borrowed for the call.
        let Some(ex) = (unsafe { exchange(req) }) else {
            return no_request("write");
        };
        // SAFETY: as above.
        match unsafe { app_bytes(data, len) } {
            Some(data) => ex.write(data),
            None => ex.misuse("write", Unreadable::Data(len)),
        }
    })
}

unsafe extern "C" fn host_write_last(req: *mut nwsgi_request, data: *const u8, len: usize) -> i32 {
    ffi_guard(NWSGI_ERROR, || {
        // SAFETY: as in host_write.
        let Some(ex) = (unsafe { exchange(req) }) else {
            return no_request("write_last");
        };
        // SAFETY: as above.
        match unsafe { app_bytes(data, len) } {
            Some(data) => ex.write_last(data),
            None => ex.misuse("write_last", Unreadable::Data(len)),
        }
    })
}

unsafe extern "C" fn host_read(req: *mut nwsgi_request, buf: *mut u8, cap: usize) -> i64 {
    ffi_guard(NWSGI_ERROR as i64, || {
        // SAFETY: see host_start_response.
        let Some(ex) = (unsafe { exchange(req) }) else {
            return no_request("read") as i64;
        };
        if cap == 0 {
            return 0;
        }
        if buf.is_null() || cap > isize::MAX as usize {
            return ex.misuse("read", Unreadable::Buf(cap)) as i64;
        }
        // SAFETY: the app provides `cap` writable bytes for the call.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf, cap) };
        ex.read(buf)
    })
}

/// The apps' names in log lines (each descriptor's name, else its
/// file's), in mount order, set once by the worker that loaded them.
static APP_NAMES: OnceLock<Box<[Box<str>]>> = OnceLock::new();

thread_local! {
    /// The app whose init or shutdown runs on this thread (a worker runs
    /// them app by app), for the lines it logs outside any request.
    static LIFECYCLE_APP: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Names the apps in the lines they log, in mount order (first call wins:
/// a worker serves one set).
pub fn set_app_names(names: &[String]) {
    let _ = APP_NAMES.set(names.iter().map(|n| n.as_str().into()).collect());
}

/// Says which app's init or shutdown runs on this thread now (None: none).
pub fn set_lifecycle_app(app: Option<usize>) {
    LIFECYCLE_APP.set(app);
}

/// Calls `f` with the name of the app a line comes from: the app of the
/// request it is about (or that runs on this thread), or whose init or
/// shutdown runs, else the only app; several apps and nothing to tell
/// them apart (a thread of the app's own): their names joined with '|'.
fn with_app_name<T>(app: Option<usize>, f: impl FnOnce(&str) -> T) -> T {
    let Some(names) = APP_NAMES.get() else {
        return f("app");
    };
    if names.len() == 1 {
        return f(&names[0]);
    }
    match app
        .or_else(|| LIFECYCLE_APP.get())
        .and_then(|i| names.get(i))
    {
        Some(name) => f(name),
        None => f(&names.join("|")),
    }
}

unsafe extern "C" fn host_log(
    req: *mut nwsgi_request,
    level: i32,
    target: nwsgi_str,
    message: nwsgi_str,
) {
    ffi_guard((), || {
        // SAFETY: `req` is NULL or the handle of the request running on
        // this thread (the header's rule for every request function).
        let ex = unsafe { exchange(req) };
        let index = match &ex {
            Some(ex) => Some(ex.app()),
            None => current_app(),
        };
        with_app_name(index, |app| log_line(ex, app, level, target, message))
    })
}

/// `host_log` for the app named `app`.
fn log_line(
    ex: Option<&mut Exchange>,
    app: &str,
    level: i32,
    target: nwsgi_str,
    message: nwsgi_str,
) {
    {
        // SAFETY: both strings are borrowed for the call.
        let (target, message) = unsafe { (target.try_as_bytes(), message.try_as_bytes()) };
        let (Some(target), Some(message)) = (target, message) else {
            let why = Unreadable::LogText;
            match ex {
                Some(ex) => {
                    ex.misuse("log", why);
                }
                None => {
                    tracing::error!(target: "app", app = %app, "app error in log: {why}; nothing logged")
                }
            }
            return;
        };
        let message = message.strip_suffix(b"\n").unwrap_or(message);
        let (source, message) = (Shown(target), Shown(message));
        // The request the line is about, when the app said which.
        let (id, line) = match ex {
            Some(ex) => {
                let (id, line) = ex.identity();
                (Some(Ok(Shown(id))), Some(Shown(line)))
            }
            // Not named, but written while the app serves a request on
            // this thread (a logging bridge without the handle): that one.
            None if CurrentRequestId::present() => (Some(Err(CurrentRequestId)), None),
            None => (None, None),
        };
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(
                    target: "app", app = %app, source = %source, request_id = id.as_ref().map(|id| tracing::field::display(Either(id))), request = line.map(tracing::field::display),
                    "{message}"
                )
            };
        }
        // Levels below ERROR are errors, above TRACE traces (see the header).
        match level {
            i32::MIN..=1 => emit!(error),
            2 => emit!(warn),
            3 => emit!(info),
            4 => emit!(debug),
            _ => emit!(trace),
        }
    }
}

/// A request id shown either from the handle's exchange or from the
/// thread's current request.
struct Either<'a, 'b>(&'a Result<Shown<'b>, CurrentRequestId>);

impl fmt::Display for Either<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(shown) => shown.fmt(f),
            Err(current) => current.fmt(f),
        }
    }
}
