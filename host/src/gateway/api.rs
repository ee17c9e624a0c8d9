//! The host API a plugin calls back into (`nwsgi_host_api`): one static
//! table, and an `extern "C"` function per entry that checks the plugin's
//! pointers and hands the call to the request's `Exchange`.
use std::ffi::c_void;
use std::ptr;

use abi::ffi::{
    nwsgi_environ_each_cb, nwsgi_exc_info, nwsgi_header, nwsgi_host_api, nwsgi_request,
    nwsgi_response_head, nwsgi_str, NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR, NWSGI_ERROR, NWSGI_E_INVALID,
};

use crate::gateway::exchange::Exchange;
use crate::gateway::ffi_guard;

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
/// more.
///
/// # Safety
/// Unless NULL, `list` points to `n` headers, borrowed for `'a`.
unsafe fn header_list<'a>(list: *const nwsgi_header, n: usize) -> Option<&'a [nwsgi_header]> {
    match (list.is_null(), n) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        // SAFETY: non-null and `n` long, per the contract.
        (false, _) => Some(unsafe { std::slice::from_raw_parts(list, n) }),
    }
}

/// The app's `len` bytes at `data`, `None` for NULL with `len` > 0.
///
/// # Safety
/// Unless NULL, `data` points to `len` readable bytes, borrowed for `'a`.
unsafe fn app_bytes<'a>(data: *const u8, len: usize) -> Option<&'a [u8]> {
    // SAFETY: per the contract (`as_bytes` returns nothing for len 0).
    (!data.is_null() || len == 0).then(|| unsafe { nwsgi_str { ptr: data, len }.as_bytes() })
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
        let (Some(ex), Some(headers)) = (unsafe { exchange(req) }, unsafe {
            header_list(headers, n_headers)
        }) else {
            return NWSGI_E_INVALID;
        };
        // SAFETY: as above.
        let exc = unsafe { exc_info.as_ref().map(|e| e.message.as_bytes()) };
        // SAFETY: as above.
        let status = unsafe { status.as_bytes() };
        ex.start_response(0, status, headers, exc)
    })
}

unsafe extern "C" fn host_start_response_static(
    req: *mut nwsgi_request,
    head: *const nwsgi_response_head,
    exc_info: *const nwsgi_exc_info,
) -> i32 {
    ffi_guard(NWSGI_ERROR, || {
        // SAFETY: see host_start_response; `head` is null or, per the
        // header, a head that stays valid and unchanged while the library
        // is loaded, and so is everything it points to.
        let Some(head) = (unsafe { head.as_ref() }) else {
            return NWSGI_E_INVALID;
        };
        // SAFETY: as above.
        let (Some(ex), Some(headers)) = (unsafe { exchange(req) }, unsafe {
            header_list(head.headers, head.n_headers)
        }) else {
            return NWSGI_E_INVALID;
        };
        // SAFETY: as above.
        let exc = unsafe { exc_info.as_ref().map(|e| e.message.as_bytes()) };
        // SAFETY: as above.
        let status = unsafe { head.status.as_bytes() };
        ex.start_response(ptr::from_ref(head) as usize, status, headers, exc)
    })
}

unsafe extern "C" fn host_write(req: *mut nwsgi_request, data: *const u8, len: usize) -> i32 {
    ffi_guard(NWSGI_ERROR, || {
        // SAFETY: see host_start_response; `len` bytes borrowed for the call.
        match unsafe { (exchange(req), app_bytes(data, len)) } {
            (Some(ex), Some(data)) => ex.write(data),
            _ => NWSGI_E_INVALID,
        }
    })
}

unsafe extern "C" fn host_write_last(req: *mut nwsgi_request, data: *const u8, len: usize) -> i32 {
    ffi_guard(NWSGI_ERROR, || {
        // SAFETY: as in host_write.
        match unsafe { (exchange(req), app_bytes(data, len)) } {
            (Some(ex), Some(data)) => ex.write_last(data),
            _ => NWSGI_E_INVALID,
        }
    })
}

unsafe extern "C" fn host_read(req: *mut nwsgi_request, buf: *mut u8, cap: usize) -> i64 {
    ffi_guard(NWSGI_ERROR as i64, || {
        // SAFETY: see host_start_response.
        let Some(ex) = (unsafe { exchange(req) }) else {
            return NWSGI_E_INVALID as i64;
        };
        if cap == 0 {
            return 0;
        }
        if buf.is_null() {
            return NWSGI_E_INVALID as i64;
        }
        // SAFETY: the app provides `cap` writable bytes for the call.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf, cap) };
        ex.read(buf)
    })
}

unsafe extern "C" fn host_log(
    _req: *mut nwsgi_request,
    level: i32,
    target: nwsgi_str,
    message: nwsgi_str,
) {
    ffi_guard((), || {
        // SAFETY: both strings are borrowed for the call.
        let (target, message) = unsafe { (target.as_bytes(), message.as_bytes()) };
        let target = String::from_utf8_lossy(target);
        let message = String::from_utf8_lossy(message);
        let message = message.trim_end_matches('\n');
        match level {
            i32::MIN..=1 => tracing::error!(target: "app", app = %target, "{message}"),
            2 => tracing::warn!(target: "app", app = %target, "{message}"),
            3 => tracing::info!(target: "app", app = %target, "{message}"),
            4 => tracing::debug!(target: "app", app = %target, "{message}"),
            _ => tracing::trace!(target: "app", app = %target, "{message}"),
        }
    })
}
