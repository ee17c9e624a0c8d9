/*
 * helpers-c — a C application written with nwsgi_util.h, served by the real
 * host in tests/c_helpers.rs.
 *
 * Build (from the repository root):
 *   cc -std=c11 -shared -fPIC -O2 -o libhelpers_c.so plugins/helpers-c/helpers.c -Iabi/include
 * Run:
 *   host serve ./libhelpers_c.so:app --app-arg greeting=Hi
 *
 * Routes (GET or HEAD; any other method -> 405):
 *   /                 "<greeting>, World!\n": the greeting comes from
 *                     `--app-arg greeting=...` (default "Hello"), read once
 *                     in init into the app state (state rebuilt in init: a
 *                     reload or a new worker reads it again)
 *   /inspect?QUERY    text/plain, one line per query pair,
 *                     "query KEY=VALUE" decoded (a pair that does not fit
 *                     the 32-byte buffer: "query! KEY=VALUE" with what fit),
 *                     then the X-Multi request header three ways:
 *                     "first: V" (nwsgi_header_get), "each: V1|V2|..."
 *                     (nwsgi_header_next), "joined: V1, V2"
 *                     (nwsgi_header_joined, through the host's environ),
 *                     then "type: V": Content-Type by nwsgi_header_joined
 *                     (the host's CONTENT_TYPE)
 *   /raw/...          "raw: P\ndecoded: D\n": P is PATH_INFO as sent
 *                     (nwsgi_raw_path_info), D the host's decoded PATH_INFO
 *   /status?code=N    status nwsgi_status_line(N), body the same line + "\n";
 *                     no or a bad code -> 400 "code must be a number\n"
 *   anything else     404 "404 Not Found\n"
 */
#include "nwsgi_util.h"

#include <stdlib.h>
#include <string.h>

typedef struct helpers_state {
    char greeting[64];
    size_t greeting_len;
} helpers_state;

static int32_t helpers_init(const nwsgi_init_args *args, void **app_state) {
    helpers_state *state = malloc(sizeof *state);
    size_t i;
    if (!state) {
        args->fail(args->fail_ctx, nwsgi_str_from_c("out of memory"));
        return NWSGI_ERROR;
    }
    memcpy(state->greeting, "Hello", 5);
    state->greeting_len = 5;
    for (i = 0; i < args->n_config; i++) {
        const nwsgi_header *kv = &args->config[i];
        if (nwsgi_str_eq(kv->name, "greeting")) {
            if (kv->value.len > sizeof state->greeting) {
                args->fail(args->fail_ctx, nwsgi_str_from_c("greeting: at most 64 bytes"));
                free(state);
                return NWSGI_ERROR;
            }
            memcpy(state->greeting, kv->value.ptr, kv->value.len);
            state->greeting_len = kv->value.len;
        }
    }
    *app_state = state;
    return NWSGI_OK;
}

static void helpers_shutdown(void *app_state) {
    free(app_state);
}

/* A fixed-size text buffer for a response body; what does not fit is cut
 * (the routes below stay far under its size). */
typedef struct text {
    char bytes[2048];
    size_t len;
} text;

static void add(text *t, const void *data, size_t len) {
    size_t room = sizeof t->bytes - t->len;
    size_t n = len < room ? len : room;
    memcpy(t->bytes + t->len, data, n);
    t->len += n;
}

static void add_c(text *t, const char *cstr) {
    add(t, cstr, strlen(cstr));
}

static void add_str(text *t, nwsgi_str s) {
    add(t, s.ptr, s.len);
}

static int32_t inspect(const nwsgi_environ *env, nwsgi_request *req) {
    text out;
    uint8_t buf[32];
    nwsgi_query_iter it;
    nwsgi_str key;
    nwsgi_str value;
    size_t at = 0;
    int rc;
    int n = 0;
    out.len = 0;
    nwsgi_query_init(&it, env->query_string, buf, sizeof buf);
    while ((rc = nwsgi_query_next(&it, &key, &value)) != NWSGI_QUERY_END) {
        add_c(&out, rc == NWSGI_QUERY_TRUNCATED ? "query! " : "query ");
        add_str(&out, key);
        add_c(&out, "=");
        add_str(&out, value);
        add_c(&out, "\n");
    }
    if (nwsgi_header_get(env, "x-multi", &value)) {
        add_c(&out, "first: ");
        add_str(&out, value);
        add_c(&out, "\n");
    }
    add_c(&out, "each: ");
    while (nwsgi_header_next(env, "X-MULTI", &at, &value)) {
        add_c(&out, n++ ? "|" : "");
        add_str(&out, value);
    }
    add_c(&out, "\n");
    if (nwsgi_header_joined(env, "X-Multi", &value) == 1) {
        add_c(&out, "joined: ");
        add_str(&out, value);
        add_c(&out, "\n");
    }
    if (nwsgi_header_joined(env, "content-type", &value) == 1) {
        add_c(&out, "type: ");
        add_str(&out, value);
        add_c(&out, "\n");
    }
    return nwsgi_respond(env, req, 200, "text/plain", out.bytes, out.len);
}

static int32_t status(const nwsgi_environ *env, nwsgi_request *req) {
    uint8_t buf[16];
    nwsgi_str code_text;
    nwsgi_str line;
    text out;
    int code = 0;
    size_t i;
    if (nwsgi_query_get(env->query_string, "code", buf, sizeof buf, &code_text) != 1 ||
        code_text.len == 0 || code_text.len > 4) {
        return nwsgi_respond(env, req, 400, "text/plain", "code must be a number\n", 22);
    }
    for (i = 0; i < code_text.len; i++) {
        if (code_text.ptr[i] < '0' || code_text.ptr[i] > '9') {
            return nwsgi_respond(env, req, 400, "text/plain", "code must be a number\n", 22);
        }
        code = code * 10 + (code_text.ptr[i] - '0');
    }
    line = nwsgi_status_line(code);
    out.len = 0;
    add_str(&out, line);
    add_c(&out, "\n");
    return nwsgi_respond(env, req, code, "text/plain", out.bytes, out.len);
}

static int32_t helpers_call(void *app_state, const nwsgi_environ *env, nwsgi_request *req,
                            nwsgi_body *body) {
    const helpers_state *state = app_state;
    (void)body; /* left zeroed: nwsgi_respond sends the whole body */
    if (!nwsgi_str_eq(env->request_method, "GET") && !nwsgi_str_eq(env->request_method, "HEAD")) {
        return nwsgi_respond(env, req, 405, "text/plain", "405 Method Not Allowed\n", 23);
    }
    if (nwsgi_str_eq(env->path_info, "/")) {
        text out;
        out.len = 0;
        add(&out, state->greeting, state->greeting_len);
        add_c(&out, ", World!\n");
        return nwsgi_respond(env, req, 200, "text/plain", out.bytes, out.len);
    }
    if (nwsgi_str_eq(env->path_info, "/inspect")) {
        return inspect(env, req);
    }
    if (env->path_info.len >= 5 && memcmp(env->path_info.ptr, "/raw/", 5) == 0) {
        text out;
        out.len = 0;
        add_c(&out, "raw: ");
        add_str(&out, nwsgi_raw_path_info(env));
        add_c(&out, "\ndecoded: ");
        add_str(&out, env->path_info);
        add_c(&out, "\n");
        return nwsgi_respond(env, req, 200, "text/plain", out.bytes, out.len);
    }
    if (nwsgi_str_eq(env->path_info, "/status")) {
        return status(env, req);
    }
    return nwsgi_respond(env, req, 404, "text/plain", "404 Not Found\n", 14);
}

NWSGI_EXPORT const nwsgi_app app = NWSGI_APP_INIT_NAMED(
    NWSGI_APP_THREAD_SAFE, helpers_init, helpers_call, helpers_shutdown, "helpers-c");
