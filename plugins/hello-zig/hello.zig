//! hello-zig: an NWSGI plugin in Zig. Zig translates the C headers itself
//! (`zig translate-c`: Zig 0.17, tested here, has no @cImport), so the ABI's
//! types, constants and nwsgi_util.h's inline helpers are used as they
//! are, with no bindings written by hand.
//!
//! Build (from the repository root; `pip install ziglang` provides zig):
//!   python3 -m ziglang translate-c -lc -I abi/include \
//!       abi/include/nwsgi_util.h > nwsgi.zig
//!   python3 -m ziglang build-lib -dynamic -O ReleaseSmall -lc \
//!       --dep nwsgi -Mroot=plugins/hello-zig/hello.zig -Mnwsgi=nwsgi.zig \
//!       -femit-bin=libhello_zig.so
//! Run:
//!   host serve ./libhello_zig.so
//!
//! GET /?name=Ann -> 200 "Hello, Ann!" (the name percent-decoded by
//! nwsgi_query_get); no name -> "Hello, World!"; a name that does not fit
//! the 64-byte buffer -> 400; any other method -> 405.
const std = @import("std");
// The translated headers, given on the command line as module `nwsgi`.
const c = @import("nwsgi");

fn call(
    app_state: ?*anyopaque,
    env: [*c]const c.nwsgi_environ,
    req: ?*c.nwsgi_request,
    body: [*c]c.nwsgi_body,
) callconv(.c) i32 {
    _ = app_state;
    _ = body; // left zeroed: the whole response goes through nwsgi_respond
    const method = env.*.request_method;
    const m = method.ptr[0..method.len];
    if (!std.mem.eql(u8, m, "GET") and !std.mem.eql(u8, m, "HEAD")) {
        const text = "Method Not Allowed\n";
        return c.nwsgi_respond(env, req, 405, "text/plain", text, text.len);
    }
    // Everything lives on this thread's stack: no allocation, no state
    // shared between requests, so the app is THREAD_SAFE.
    var name_buf: [64]u8 = undefined;
    var name: c.nwsgi_str = undefined;
    const found = c.nwsgi_query_get(env.*.query_string, "name", &name_buf, name_buf.len, &name);
    if (found < 0) {
        const text = "name too long\n";
        return c.nwsgi_respond(env, req, 400, "text/plain", text, text.len);
    }
    const who: []const u8 = if (found == 1) name.ptr[0..name.len] else "World";
    // 64 bytes of name at most, so the greeting always fits.
    var out: [128]u8 = undefined;
    const text = std.fmt.bufPrint(&out, "Hello, {s}!\n", .{who}) catch unreachable;
    return c.nwsgi_respond(env, req, 200, "text/plain; charset=utf-8", text.ptr, text.len);
}

/// The descriptor the host looks for: `export` gives it C linkage and a
/// visible symbol named `app`.
export const app: c.nwsgi_app = .{
    .magic = c.NWSGI_MAGIC,
    .abi_major = c.NWSGI_ABI_MAJOR,
    .abi_minor = c.NWSGI_ABI_MINOR,
    .struct_size = @sizeOf(c.nwsgi_app),
    .flags = c.NWSGI_APP_THREAD_SAFE,
    .init = null,
    .call = call,
    .shutdown = null,
    .name = "hello-zig",
};
