/*
 * mistakes-c — a C plugin that makes, on purpose, the mistakes a plugin
 * author makes by accident: NULL pointers with lengths, control bytes in
 * what it logs, a response head on the stack, more body than its own
 * Content-Length, return codes outside the ABI. The host must answer each
 * with a clear status, a log line, and nothing worse: the worker that ran
 * the request goes on serving (GET /pid says which process answered).
 *
 * Build (from the repository root, C compiler only):
 *   cc -std=c11 -shared -fPIC -O2 -o libmistakes_c.so plugins/mistakes-c/mistakes.c -Iabi/include
 *
 * After each host call whose return code matters, the route logs
 * "mistake <route> rc=<rc>" at ERROR with a NULL request (so that line
 * itself is never refused), and the tests read it from the host's log.
 *
 * Routes (GET; PATH_INFO):
 *   /pid                 200 "<pid>"
 *   /null-status         start_response with status {NULL, 6}
 *   /null-header-name    a header whose name is {NULL, 4}
 *   /null-header-value   a header whose value is {NULL, 4}
 *   /null-headers        headers NULL with n_headers 2
 *   /null-exc            start_response(200), then again with an exc_info
 *                        whose message is {NULL, 3}
 *   /null-write          start_response(200), write(NULL, 5)
 *   /null-write-last     start_response(200), write_last(NULL, 5)
 *   /null-chunk          start_response(200), an iterator whose next gives
 *                        MORE with chunk {NULL, 5}
 *   /null-chunk-late     the same, after write("partial ") sent the head
 *   /null-log            log(req, ERROR, "mistakes", {NULL, 5}), then 200
 *   /null-read           read(req, NULL, 16) on a GET
 *   /null-each           environ_each with a NULL callback; 200 "rc=<rc>"
 *   /null-get            environ_get with key {NULL, 4}; 200 "rc=<rc>"
 *   /log-inject          logs "a\nERROR forged\x1b[31m" + bytes 0xff 0x00;
 *                        200 "logged"
 *   /log-levels          logs "level-zero" at level 0 and "level-99" at 99
 *   /status-crlf         status "200 OK\r\nX-Injected: 1"
 *   /status-600, /status-999, /status-103   those statuses
 *   /exc-first           exc_info "first boom" on the first start_response;
 *                        200 "accepted"
 *   /over-length         Content-Length: 3, then write("toolong")
 *   /over-length-last    Content-Length: 3, then write_last("toolong")
 *   /positive            call returns 7
 *   /stack-head?v=X      start_response_static with a head built on the
 *                        stack holding X-Echo: X; write_last "X"
 *   /crash               writes through a NULL pointer: the worker dies of
 *                        SIGSEGV (the one mistake the host cannot contain)
 *   anything else        404
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nwsgi.h"

static const nwsgi_header TEXT[] = {{NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")}};

static nwsgi_str str_of(const char *s) {
    nwsgi_str r = {(const uint8_t *)s, strlen(s)};
    return r;
}

static int path_is(const nwsgi_environ *env, const char *p) {
    return env->path_info.len == strlen(p) && memcmp(env->path_info.ptr, p, env->path_info.len) == 0;
}

/* "mistake <route> rc=<rc>" at ERROR, with no request attached. */
static void note(const nwsgi_environ *env, int64_t rc) {
    char line[160];
    int n = snprintf(line, sizeof line, "mistake %.*s rc=%lld", (int)env->path_info.len,
                     (const char *)env->path_info.ptr, (long long)rc);
    nwsgi_str msg = {(const uint8_t *)line, n > 0 ? (size_t)n : 0};
    env->api->log(NULL, NWSGI_LOG_ERROR, str_of("mistakes"), msg);
}

static int32_t ok_text(const nwsgi_environ *env, nwsgi_request *req, const char *body) {
    int32_t rc = env->api->start_response(req, str_of("200 OK"), TEXT, 1, NULL);
    if (rc != NWSGI_OK) {
        return rc;
    }
    return env->api->write(req, (const uint8_t *)body, strlen(body));
}

static int32_t start_200(const nwsgi_environ *env, nwsgi_request *req) {
    return env->api->start_response(req, str_of("200 OK"), TEXT, 1, NULL);
}

/* An iterator that hands over a NULL chunk with a length. */
static int32_t null_next(void *state, nwsgi_request *req, nwsgi_str *chunk) {
    (void)state;
    (void)req;
    chunk->ptr = NULL;
    chunk->len = 5;
    return NWSGI_BODY_MORE;
}

/* The head lives in this function's frame: the next request on the thread
 * builds its own at the same address, with other bytes in it. */
static int32_t stack_head(const nwsgi_environ *env, nwsgi_request *req) {
    nwsgi_header headers[2] = {{NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
                               {NWSGI_STR("X-Echo"), {env->query_string.ptr, env->query_string.len}}};
    nwsgi_response_head head = {NWSGI_STR("200 OK"), headers, 2};
    int32_t rc = env->api->start_response_static(req, &head, NULL);
    if (rc != NWSGI_OK) {
        return rc;
    }
    return env->api->write_last(req, env->query_string.ptr, env->query_string.len);
}

static int32_t call(void *state, const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    (void)state;
    const nwsgi_host_api *api = env->api;
    char text[64];
    int32_t rc;

    if (path_is(env, "/pid")) {
        snprintf(text, sizeof text, "%ld", (long)getpid());
        return ok_text(env, req, text);
    }
    if (path_is(env, "/null-status")) {
        nwsgi_str status = {NULL, 6};
        note(env, api->start_response(req, status, TEXT, 1, NULL));
        return NWSGI_OK;
    }
    if (path_is(env, "/null-header-name") || path_is(env, "/null-header-value")) {
        nwsgi_header h[2] = {{NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
                             {NWSGI_STR("X-Ok"), NWSGI_STR("fine")}};
        if (path_is(env, "/null-header-name")) {
            h[1].name.ptr = NULL;
        } else {
            h[1].value.ptr = NULL;
        }
        note(env, api->start_response(req, str_of("200 OK"), h, 2, NULL));
        return NWSGI_OK;
    }
    if (path_is(env, "/null-headers")) {
        note(env, api->start_response(req, str_of("200 OK"), NULL, 2, NULL));
        return NWSGI_OK;
    }
    if (path_is(env, "/null-exc")) {
        start_200(env, req);
        nwsgi_exc_info exc = {{NULL, 3}};
        note(env, api->start_response(req, str_of("500 Internal Server Error"), TEXT, 1, &exc));
        return NWSGI_OK;
    }
    if (path_is(env, "/null-write")) {
        start_200(env, req);
        note(env, api->write(req, NULL, 5));
        return NWSGI_OK;
    }
    if (path_is(env, "/null-write-last")) {
        start_200(env, req);
        if (!NWSGI_API_HAS(api, write_last)) {
            return NWSGI_ERROR;
        }
        note(env, api->write_last(req, NULL, 5));
        return NWSGI_OK;
    }
    if (path_is(env, "/null-chunk") || path_is(env, "/null-chunk-late")) {
        start_200(env, req);
        if (path_is(env, "/null-chunk-late")) {
            api->write(req, (const uint8_t *)"partial ", 8);
        }
        body->next = null_next;
        return NWSGI_OK;
    }
    if (path_is(env, "/null-log")) {
        nwsgi_str msg = {NULL, 5};
        api->log(req, NWSGI_LOG_ERROR, str_of("mistakes"), msg);
        return ok_text(env, req, "logged");
    }
    if (path_is(env, "/null-read")) {
        note(env, api->read(req, NULL, 16));
        return NWSGI_OK;
    }
    if (path_is(env, "/null-each")) {
        nwsgi_environ_each_fn fn = NULL;
        rc = api->environ_each(env, fn, NULL);
        snprintf(text, sizeof text, "rc=%d", (int)rc);
        return ok_text(env, req, text);
    }
    if (path_is(env, "/null-get")) {
        nwsgi_str key = {NULL, 4};
        nwsgi_str value = {NULL, 0};
        rc = api->environ_get(env, key, &value);
        snprintf(text, sizeof text, "rc=%d", (int)rc);
        return ok_text(env, req, text);
    }
    if (path_is(env, "/log-inject")) {
        static const uint8_t msg[] = "a\nERROR forged\x1b[31m\xff";
        nwsgi_str m = {msg, sizeof msg}; /* the terminating NUL included */
        api->log(req, NWSGI_LOG_ERROR, str_of("mistakes\r\n"), m);
        return ok_text(env, req, "logged");
    }
    if (path_is(env, "/log-levels")) {
        api->log(req, 0, str_of("mistakes"), str_of("level-zero"));
        api->log(req, 99, str_of("mistakes"), str_of("level-99"));
        return ok_text(env, req, "logged");
    }
    if (path_is(env, "/status-crlf")) {
        note(env, api->start_response(req, str_of("200 OK\r\nX-Injected: 1"), TEXT, 1, NULL));
        return NWSGI_OK;
    }
    if (path_is(env, "/status-600") || path_is(env, "/status-999") || path_is(env, "/status-103")) {
        char status[16];
        snprintf(status, sizeof status, "%.3s Odd", (const char *)env->path_info.ptr + 8);
        note(env, api->start_response(req, str_of(status), TEXT, 1, NULL));
        return NWSGI_OK;
    }
    if (path_is(env, "/exc-first")) {
        nwsgi_exc_info exc = {NWSGI_STR("first boom")};
        note(env, api->start_response(req, str_of("200 OK"), TEXT, 1, &exc));
        return api->write(req, (const uint8_t *)"accepted", 8);
    }
    if (path_is(env, "/over-length") || path_is(env, "/over-length-last")) {
        static const nwsgi_header h[] = {{NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
                                         {NWSGI_STR("Content-Length"), NWSGI_STR("3")}};
        api->start_response(req, str_of("200 OK"), h, 2, NULL);
        if (path_is(env, "/over-length")) {
            note(env, api->write(req, (const uint8_t *)"toolong", 7));
        } else if (NWSGI_API_HAS(api, write_last)) {
            note(env, api->write_last(req, (const uint8_t *)"toolong", 7));
        }
        return NWSGI_OK;
    }
    if (path_is(env, "/positive")) {
        return 7;
    }
    if (path_is(env, "/crash")) {
        volatile int *nowhere = NULL;
        *nowhere = 1;
        return NWSGI_ERROR;
    }
    if (path_is(env, "/stack-head")) {
        if (!NWSGI_API_HAS(api, start_response_static)) {
            return NWSGI_ERROR;
        }
        return stack_head(env, req);
    }
    rc = api->start_response(req, str_of("404 Not Found"), TEXT, 1, NULL);
    return rc != NWSGI_OK ? rc : api->write(req, (const uint8_t *)"not found", 9);
}

NWSGI_EXPORT const nwsgi_app app =
    NWSGI_APP_INIT_NAMED(NWSGI_APP_THREAD_SAFE, NULL, call, NULL, "mistakes");
