/*
 * {{NAME}}: an NWSGI application in C.
 *   GET or HEAD /       -> "Hello, World!"
 *   GET /?name=NAME     -> "Hello, NAME!" (the query decoded: ?name=C+plugin)
 *   any other path      -> 404; any other method -> 405
 * Build with `make`, serve with `make serve` (or `host serve ./lib{{NAME}}.so`),
 * test with `make test`.
 *
 * include/nwsgi.h is the ABI; include/nwsgi_util.h the helpers used here
 * (its top comment says which calls may run on which threads, how long
 * the strings the host gives live, and where state lives: per worker
 * process, and a reload starts fresh).
 */
#include "nwsgi_util.h"

#include <string.h>

static int32_t call(void *app_state, const nwsgi_environ *env, nwsgi_request *req,
                    nwsgi_body *body) {
    char out[128];
    uint8_t buf[64];
    nwsgi_str name = nwsgi_str_from_c("World");
    size_t len = 0;
    (void)app_state; /* no init: no state */
    (void)body;      /* left zeroed: nwsgi_respond sends the whole body */
    if (!nwsgi_str_eq(env->request_method, "GET") && !nwsgi_str_eq(env->request_method, "HEAD")) {
        return nwsgi_respond(env, req, 405, "text/plain", "Method Not Allowed\n", 19);
    }
    if (!nwsgi_str_eq(env->path_info, "/")) {
        return nwsgi_respond(env, req, 404, "text/plain", "Not Found\n", 10);
    }
    if (nwsgi_query_get(env->query_string, "name", buf, sizeof buf, &name) != 1 || !name.len) {
        name = nwsgi_str_from_c("World");
    }
    memcpy(out, "Hello, ", 7);
    len = 7;
    memcpy(out + len, name.ptr, name.len); /* at most 64 bytes: buf's size */
    len += name.len;
    memcpy(out + len, "!\n", 2);
    len += 2;
    return nwsgi_respond(env, req, 200, "text/plain", out, len);
}

NWSGI_EXPORT const nwsgi_app app =
    NWSGI_APP_INIT_NAMED(NWSGI_APP_THREAD_SAFE, NULL, call, NULL, "{{NAME}}");
