/*
 * testapps-c — the C twin of the Rust `testapps` plugin. The integration
 * tests send the same requests to both and expect the same answers, so the
 * route table below must stay in step with the Rust one.
 *
 * Build (from the repository root, C compiler only):
 *   cc -std=c11 -shared -fPIC -O2 -o libtestapps_c.so plugins/testapps-c/testapps.c -Iabi/include
 *
 * Routes (PATH_INFO; parameters from QUERY_STRING, not percent-decoded):
 *   GET  /iter?n=N     N chunks "chunk i\n" (i = 0..N-1) from the iterator,
 *                      each NWSGI_BODY_MORE, then NWSGI_BODY_END (chunked)
 *   GET  /write?n=N    the same bytes through api->write, no iterator
 *   GET  /last         one chunk "last\n" tagged NWSGI_BODY_LAST
 *   GET  /empty        200, no iterator, no write
 *   GET  /error        NWSGI_ERROR before start_response (host: 500)
 *   GET  /error-next   200, then the iterator's first next fails (host: 500)
 *   GET  /twice        second start_response without exc_info -> E_STATE;
 *                      body "second=<rc>"
 *   GET  /exc-before   start_response 200, then 500 with exc_info "boom";
 *                      body "replaced"
 *   GET  /exc-after    write "partial", then start_response with exc_info
 *                      "late boom" -> E_HEADERS_SENT; returns NWSGI_ERROR
 *   GET  /endless      "tick\n" forever (MORE), 10 ms apart
 *   GET  /counters     "opened=A closed=B": iterators created by /iter,
 *                      /endless, /error-next, and close calls received
 *   GET  /sleep?ms=N   sleeps N ms; body "slept N"
 *   POST /input        reads the body in 7-byte reads; "len=<n>\n" + bytes
 *   GET  /environ      "KEY=VALUE\n" for every variable (api->environ_each)
 *   GET  /get?key=K    api->environ_get: 200 + value, or 404 "absent"
 *   GET  /log          logs "testapps-log-marker from c" at ERROR; "logged"
 *   GET  /bad-status   start_response("20 OK") -> E_INVALID; OK, no body
 *   GET  /bad-header   header value with CR LF -> E_INVALID; OK, no body
 *   GET  /config       "key=value\n" per --app-arg, in order
 *   GET  /threads      "multithread=M multiprocess=P"
 *   anything else      404 "not found"
 * init refuses to start when the config holds `fail=1`.
 *
 * Every answer is Content-Type: text/plain. Bodies not listed as written
 * another way are built in a malloc'd buffer and handed back as a single
 * NWSGI_BODY_LAST chunk (so the host frames them with Content-Length); the
 * buffer is freed in close.
 *
 * If a host call does not return what the route expects (e.g. /bad-status is
 * accepted), the route answers a body "unexpected rc=<rc>" instead, so the
 * test sees the difference.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nwsgi.h"

/* ------------------------------------------------------------------------ */
/* Global state                                                              */
/* ------------------------------------------------------------------------ */

/* Iterators created by /iter, /endless, /error-next, and close calls
 * received for them. */
static atomic_ulong opened = 0;
static atomic_ulong closed = 0;

/* A copy of the init config, owned by this plugin (freed in shutdown). Each
 * key and value is one malloc'd block. */
typedef struct config_pair {
    uint8_t *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
} config_pair;

/* The host's API table, kept from init (static while the library is loaded)
 * so shutdown can log. */
static const nwsgi_host_api *host_api = NULL;

typedef struct app_config {
    config_pair *pairs;
    size_t n_pairs;
} app_config;

static const nwsgi_header TEXT_PLAIN[] = {
    {NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
};
#define N_TEXT_PLAIN (sizeof TEXT_PLAIN / sizeof TEXT_PLAIN[0])

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static nwsgi_str str_of(const char *s) {
    nwsgi_str out = {(const uint8_t *)s, strlen(s)};
    return out;
}

static int str_eq(nwsgi_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && (n == 0 || memcmp(s.ptr, lit, n) == 0);
}

/* Finds `name` in an application/x-www-form-urlencoded query string, raw
 * (no percent-decoding). Returns 1 and sets *value, or 0 if absent. */
static int query_get(nwsgi_str query, const char *name, nwsgi_str *value) {
    size_t name_len = strlen(name);
    size_t i = 0;
    while (i <= query.len) {
        size_t start = i;
        while (i < query.len && query.ptr[i] != '&') {
            i++;
        }
        /* pair is query[start .. i) */
        size_t pair_len = i - start;
        if (pair_len >= name_len && (name_len == 0 || memcmp(query.ptr + start, name, name_len) == 0)) {
            if (pair_len == name_len) {
                value->ptr = query.ptr + start + pair_len;
                value->len = 0;
                return 1;
            }
            if (query.ptr[start + name_len] == '=') {
                value->ptr = query.ptr + start + name_len + 1;
                value->len = pair_len - name_len - 1;
                return 1;
            }
        }
        i++; /* skip '&' (or step past the end) */
    }
    return 0;
}

/* Decimal query parameter; absent, empty, non-numeric or overflowing -> 0
 * (parsing stops at the first non-digit). */
static unsigned long query_ulong(nwsgi_str query, const char *name) {
    nwsgi_str v;
    unsigned long n = 0;
    if (!query_get(query, name, &v)) {
        return 0;
    }
    for (size_t i = 0; i < v.len; i++) {
        uint8_t c = v.ptr[i];
        if (c < '0' || c > '9') {
            break;
        }
        if (n > (unsigned long)-1 / 10 - 1) {
            return 0;
        }
        n = n * 10 + (unsigned long)(c - '0');
    }
    return n;
}

static void sleep_ms(unsigned long ms) {
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
        /* EINTR: sleep the rest */
    }
}

/* ------------------------------------------------------------------------ */
/* A growable byte buffer                                                    */
/* ------------------------------------------------------------------------ */

typedef struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    int failed; /* an allocation failed: contents are incomplete */
} buf;

static buf *buf_new(void) {
    buf *b = calloc(1, sizeof *b);
    return b;
}

static void buf_free(buf *b) {
    if (b != NULL) {
        free(b->data);
        free(b);
    }
}

static int buf_reserve(buf *b, size_t extra) {
    if (b->failed) {
        return -1;
    }
    if (b->cap - b->len >= extra) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    uint8_t *data = realloc(b->data, cap);
    if (data == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static void buf_append(buf *b, const uint8_t *p, size_t n) {
    if (n == 0 || buf_reserve(b, n) != 0) {
        return;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_append_str(buf *b, nwsgi_str s) {
    buf_append(b, s.ptr, s.len);
}

static void buf_printf(buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        buf_append(b, (const uint8_t *)small, (size_t)n);
        return;
    }
    if (buf_reserve(b, (size_t)n + 1) != 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ------------------------------------------------------------------------ */
/* Body iterators                                                            */
/* ------------------------------------------------------------------------ */

/* Whole body known: one chunk tagged LAST; the buffer is freed in close.
 * Not counted in opened/closed. */
static int32_t buf_body_next(void *state, nwsgi_request *req, nwsgi_str *chunk) {
    (void)req;
    buf *b = state;
    chunk->ptr = b->data;
    chunk->len = b->len;
    return NWSGI_BODY_LAST;
}

static void buf_body_close(void *state, nwsgi_request *req) {
    (void)req;
    buf_free(state);
}

/* Hands `b` to the host as the body (takes ownership of it). */
static int32_t give_buf_body(buf *b, nwsgi_body *body) {
    if (b->failed) {
        buf_free(b);
        return NWSGI_ERROR;
    }
    body->state = b;
    body->next = buf_body_next;
    body->close = buf_body_close;
    return NWSGI_OK;
}

/* start_response(status, text/plain) and a body of the bytes printed. */
static int32_t respond(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body,
                       const char *status, const char *fmt, ...) {
    buf *b = buf_new();
    if (b == NULL) {
        return NWSGI_ERROR;
    }
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof small) {
        /* every caller's body is short */
        buf_free(b);
        return NWSGI_ERROR;
    }
    buf_append(b, (const uint8_t *)small, (size_t)n);
    if (b->failed) {
        buf_free(b);
        return NWSGI_ERROR;
    }
    int32_t rc = env->api->start_response(req, str_of(status), TEXT_PLAIN, N_TEXT_PLAIN, NULL);
    if (rc != NWSGI_OK) {
        buf_free(b);
        return rc;
    }
    return give_buf_body(b, body);
}

/* start_response(status, text/plain) and a body of the buffer's bytes
 * (takes ownership of `b` in every case). */
static int32_t respond_buf(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body,
                           const char *status, buf *b) {
    if (b->failed) {
        buf_free(b);
        return NWSGI_ERROR;
    }
    int32_t rc = env->api->start_response(req, str_of(status), TEXT_PLAIN, N_TEXT_PLAIN, NULL);
    if (rc != NWSGI_OK) {
        buf_free(b);
        return rc;
    }
    return give_buf_body(b, body);
}

/* /iter: N chunks "chunk i\n" tagged MORE, then END. */
typedef struct iter_state {
    unsigned long i;
    unsigned long n;
    char chunk[48]; /* borrowed by the host until the next next/close */
} iter_state;

static int32_t iter_next(void *state, nwsgi_request *req, nwsgi_str *chunk) {
    (void)req;
    iter_state *s = state;
    if (s->i >= s->n) {
        return NWSGI_BODY_END;
    }
    int len = snprintf(s->chunk, sizeof s->chunk, "chunk %lu\n", s->i);
    if (len < 0 || (size_t)len >= sizeof s->chunk) {
        return NWSGI_ERROR;
    }
    s->i++;
    chunk->ptr = (const uint8_t *)s->chunk;
    chunk->len = (size_t)len;
    return NWSGI_BODY_MORE;
}

/* Shared by the counted iterators: every state is one malloc'd block. */
static void counted_close(void *state, nwsgi_request *req) {
    (void)req;
    free(state);
    atomic_fetch_add(&closed, 1);
}

/* /endless: "tick\n" forever, 10 ms before each chunk after the first. */
typedef struct endless_state {
    unsigned long sent;
} endless_state;

static int32_t endless_next(void *state, nwsgi_request *req, nwsgi_str *chunk) {
    (void)req;
    endless_state *s = state;
    static const nwsgi_str tick = NWSGI_STR("tick\n");
    if (s->sent > 0) {
        sleep_ms(10);
    }
    s->sent++;
    *chunk = tick;
    return NWSGI_BODY_MORE;
}

/* /error-next: the first next fails. The state is a dummy block so close
 * has something to free, like the other counted iterators. */
static int32_t error_next(void *state, nwsgi_request *req, nwsgi_str *chunk) {
    (void)state;
    (void)req;
    (void)chunk;
    return NWSGI_ERROR;
}

/* ------------------------------------------------------------------------ */
/* Routes                                                                    */
/* ------------------------------------------------------------------------ */

/* Starts a 200 text/plain response whose body is a counted iterator over
 * `state` (malloc'd by the caller; owned by the body from here on, freed by
 * counted_close, or here if the response cannot start). */
static int32_t start_counted_body(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body,
                                  void *state,
                                  int32_t (*next)(void *, nwsgi_request *, nwsgi_str *)) {
    int32_t rc = env->api->start_response(req, str_of("200 OK"), TEXT_PLAIN, N_TEXT_PLAIN, NULL);
    if (rc != NWSGI_OK) {
        free(state);
        return rc;
    }
    body->state = state;
    body->next = next;
    body->close = counted_close;
    atomic_fetch_add(&opened, 1);
    return NWSGI_OK;
}

static int32_t route_iter(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    iter_state *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NWSGI_ERROR;
    }
    s->n = query_ulong(env->query_string, "n");
    return start_counted_body(env, req, body, s, iter_next);
}

static int32_t route_write(const nwsgi_environ *env, nwsgi_request *req) {
    unsigned long n = query_ulong(env->query_string, "n");
    int32_t rc = env->api->start_response(req, str_of("200 OK"), TEXT_PLAIN, N_TEXT_PLAIN, NULL);
    if (rc != NWSGI_OK) {
        return rc;
    }
    for (unsigned long i = 0; i < n; i++) {
        char chunk[48];
        int len = snprintf(chunk, sizeof chunk, "chunk %lu\n", i);
        if (len < 0 || (size_t)len >= sizeof chunk) {
            return NWSGI_ERROR;
        }
        rc = env->api->write(req, (const uint8_t *)chunk, (size_t)len);
        if (rc != NWSGI_OK) {
            return rc;
        }
    }
    return NWSGI_OK;
}

static int32_t route_error_next(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    void *s = malloc(1);
    if (s == NULL) {
        return NWSGI_ERROR;
    }
    return start_counted_body(env, req, body, s, error_next);
}

static int32_t route_endless(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    endless_state *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NWSGI_ERROR;
    }
    return start_counted_body(env, req, body, s, endless_next);
}

static int32_t route_twice(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    int32_t rc = env->api->start_response(req, str_of("200 OK"), TEXT_PLAIN, N_TEXT_PLAIN, NULL);
    if (rc != NWSGI_OK) {
        return rc;
    }
    int32_t second = env->api->start_response(req, str_of("201 Created"), NULL, 0, NULL);
    buf *b = buf_new();
    if (b == NULL) {
        return NWSGI_ERROR;
    }
    buf_printf(b, "second=%d", (int)second);
    return give_buf_body(b, body);
}

static int32_t route_exc_before(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    const nwsgi_host_api *api = env->api;
    int32_t rc = api->start_response(req, str_of("200 OK"), TEXT_PLAIN, N_TEXT_PLAIN, NULL);
    if (rc != NWSGI_OK) {
        return rc;
    }
    nwsgi_exc_info exc = {NWSGI_STR("boom")};
    rc = api->start_response(req, str_of("500 Internal Server Error"), TEXT_PLAIN, N_TEXT_PLAIN,
                             &exc);
    buf *b = buf_new();
    if (b == NULL) {
        return NWSGI_ERROR;
    }
    if (rc == NWSGI_OK) {
        buf_printf(b, "replaced");
    } else {
        buf_printf(b, "unexpected rc=%d", (int)rc);
    }
    return give_buf_body(b, body);
}

static int32_t route_exc_after(const nwsgi_environ *env, nwsgi_request *req) {
    const nwsgi_host_api *api = env->api;
    int32_t rc = api->start_response(req, str_of("200 OK"), TEXT_PLAIN, N_TEXT_PLAIN, NULL);
    if (rc != NWSGI_OK) {
        return rc;
    }
    rc = api->write(req, (const uint8_t *)"partial", 7);
    if (rc != NWSGI_OK) {
        return rc;
    }
    nwsgi_exc_info exc = {NWSGI_STR("late boom")};
    rc = api->start_response(req, str_of("500 Internal Server Error"), TEXT_PLAIN, N_TEXT_PLAIN,
                             &exc);
    if (rc != NWSGI_E_HEADERS_SENT) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "unexpected rc=%d", (int)rc);
        if (len > 0 && (size_t)len < sizeof msg) {
            api->write(req, (const uint8_t *)msg, (size_t)len);
        }
    }
    /* The headers went out: clean up and give up (PEP 3333 "re-raise"). */
    return NWSGI_ERROR;
}

static int32_t route_input(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    buf *in = buf_new();
    if (in == NULL) {
        return NWSGI_ERROR;
    }
    for (;;) {
        if (buf_reserve(in, 7) != 0) {
            buf_free(in);
            return NWSGI_ERROR;
        }
        int64_t n = env->api->read(req, in->data + in->len, 7);
        if (n == 0) {
            break;
        }
        if (n < 0 || n > 7) {
            buf_free(in);
            return n < 0 ? (int32_t)n : NWSGI_ERROR;
        }
        in->len += (size_t)n;
    }
    buf *out = buf_new();
    if (out == NULL) {
        buf_free(in);
        return NWSGI_ERROR;
    }
    buf_printf(out, "len=%zu\n", in->len);
    buf_append(out, in->data, in->len);
    buf_free(in);
    return respond_buf(env, req, body, "200 OK", out);
}

static int32_t environ_line(void *user, nwsgi_str key, nwsgi_str value) {
    buf *b = user;
    buf_append_str(b, key);
    buf_append(b, (const uint8_t *)"=", 1);
    buf_append_str(b, value);
    buf_append(b, (const uint8_t *)"\n", 1);
    return b->failed ? 1 : 0;
}

static int32_t route_environ(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    buf *b = buf_new();
    if (b == NULL) {
        return NWSGI_ERROR;
    }
    int32_t rc = env->api->environ_each(env, environ_line, b);
    if (rc != NWSGI_OK) {
        buf_free(b);
        return NWSGI_ERROR;
    }
    return respond_buf(env, req, body, "200 OK", b);
}

static int32_t route_get(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    nwsgi_str key = {NULL, 0};
    nwsgi_str value = {NULL, 0};
    if (!query_get(env->query_string, "key", &key) ||
        !env->api->environ_get(env, key, &value)) {
        return respond(env, req, body, "404 Not Found", "absent");
    }
    buf *b = buf_new();
    if (b == NULL) {
        return NWSGI_ERROR;
    }
    buf_append_str(b, value);
    return respond_buf(env, req, body, "200 OK", b);
}

static int32_t route_bad_status(const nwsgi_environ *env, nwsgi_request *req) {
    int32_t rc = env->api->start_response(req, str_of("20 OK"), TEXT_PLAIN, N_TEXT_PLAIN, NULL);
    if (rc == NWSGI_E_INVALID) {
        return NWSGI_OK; /* no body: the host answers 500 */
    }
    char msg[64];
    int len = snprintf(msg, sizeof msg, "unexpected rc=%d", (int)rc);
    if (rc == NWSGI_OK && len > 0 && (size_t)len < sizeof msg) {
        env->api->write(req, (const uint8_t *)msg, (size_t)len);
    }
    return NWSGI_OK;
}

static int32_t route_bad_header(const nwsgi_environ *env, nwsgi_request *req) {
    static const nwsgi_header headers[] = {
        {NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
        {NWSGI_STR("X-Bad"), NWSGI_STR("a\r\nInjected: yes")},
    };
    int32_t rc = env->api->start_response(req, str_of("200 OK"), headers,
                                          sizeof headers / sizeof headers[0], NULL);
    if (rc == NWSGI_E_INVALID) {
        return NWSGI_OK; /* no body: the host answers 500 */
    }
    char msg[64];
    int len = snprintf(msg, sizeof msg, "unexpected rc=%d", (int)rc);
    if (rc == NWSGI_OK && len > 0 && (size_t)len < sizeof msg) {
        env->api->write(req, (const uint8_t *)msg, (size_t)len);
    }
    return NWSGI_OK;
}

static int32_t route_config(const app_config *cfg, const nwsgi_environ *env, nwsgi_request *req,
                            nwsgi_body *body) {
    buf *b = buf_new();
    if (b == NULL) {
        return NWSGI_ERROR;
    }
    if (cfg != NULL) {
        for (size_t i = 0; i < cfg->n_pairs; i++) {
            const config_pair *p = &cfg->pairs[i];
            buf_append(b, p->key, p->key_len);
            buf_append(b, (const uint8_t *)"=", 1);
            buf_append(b, p->value, p->value_len);
            buf_append(b, (const uint8_t *)"\n", 1);
        }
    }
    return respond_buf(env, req, body, "200 OK", b);
}

/* ------------------------------------------------------------------------ */
/* The descriptor's functions                                                */
/* ------------------------------------------------------------------------ */

static void config_free(app_config *cfg) {
    if (cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < cfg->n_pairs; i++) {
        free(cfg->pairs[i].key);
        free(cfg->pairs[i].value);
    }
    free(cfg->pairs);
    free(cfg);
}

/* malloc(len) copy of `s` (at least one byte, so NULL means failure). */
static uint8_t *copy_bytes(nwsgi_str s) {
    uint8_t *p = malloc(s.len ? s.len : 1);
    if (p != NULL && s.len > 0) {
        memcpy(p, s.ptr, s.len);
    }
    return p;
}

static int32_t testapps_init(const nwsgi_init_args *args, void **app_state) {
    host_api = args->api;
    for (size_t i = 0; i < args->n_config; i++) {
        if (str_eq(args->config[i].name, "fail") && str_eq(args->config[i].value, "1")) {
            args->fail(args->fail_ctx, str_of("init refused: fail=1"));
            return NWSGI_ERROR;
        }
    }
    app_config *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        args->fail(args->fail_ctx, str_of("out of memory"));
        return NWSGI_ERROR;
    }
    if (args->n_config > 0) {
        cfg->pairs = calloc(args->n_config, sizeof *cfg->pairs);
        if (cfg->pairs == NULL) {
            free(cfg);
            args->fail(args->fail_ctx, str_of("out of memory"));
            return NWSGI_ERROR;
        }
    }
    for (size_t i = 0; i < args->n_config; i++) {
        config_pair *p = &cfg->pairs[i];
        p->key = copy_bytes(args->config[i].name);
        p->key_len = args->config[i].name.len;
        p->value = copy_bytes(args->config[i].value);
        p->value_len = args->config[i].value.len;
        cfg->n_pairs = i + 1;
        if (p->key == NULL || p->value == NULL) {
            config_free(cfg);
            args->fail(args->fail_ctx, str_of("out of memory"));
            return NWSGI_ERROR;
        }
    }
    *app_state = cfg;
    return NWSGI_OK;
}

static void testapps_shutdown(void *app_state) {
    app_config *cfg = app_state;
    if (host_api != NULL) {
        char line[64];
        int n = snprintf(line, sizeof line, "testapps-shutdown-marker from c (%zu args)",
                         cfg != NULL ? cfg->n_pairs : (size_t)0);
        nwsgi_str msg = {(const uint8_t *)line, n > 0 ? (size_t)n : 0};
        host_api->log(NULL, NWSGI_LOG_INFO, str_of("testapps"), msg);
    }
    config_free(cfg);
}

static int32_t testapps_call(void *app_state, const nwsgi_environ *env, nwsgi_request *req,
                             nwsgi_body *body) {
    const app_config *cfg = app_state;
    nwsgi_str path = env->path_info;
    int get = str_eq(env->request_method, "GET");
    int post = str_eq(env->request_method, "POST");

    if (get) {
        if (str_eq(path, "/iter")) {
            return route_iter(env, req, body);
        }
        if (str_eq(path, "/write")) {
            return route_write(env, req);
        }
        if (str_eq(path, "/last")) {
            return respond(env, req, body, "200 OK", "last\n");
        }
        if (str_eq(path, "/empty")) {
            return env->api->start_response(req, str_of("200 OK"), TEXT_PLAIN, N_TEXT_PLAIN, NULL);
        }
        if (str_eq(path, "/error")) {
            return NWSGI_ERROR;
        }
        if (str_eq(path, "/error-next")) {
            return route_error_next(env, req, body);
        }
        if (str_eq(path, "/twice")) {
            return route_twice(env, req, body);
        }
        if (str_eq(path, "/exc-before")) {
            return route_exc_before(env, req, body);
        }
        if (str_eq(path, "/exc-after")) {
            return route_exc_after(env, req);
        }
        if (str_eq(path, "/endless")) {
            return route_endless(env, req, body);
        }
        if (str_eq(path, "/counters")) {
            return respond(env, req, body, "200 OK", "opened=%lu closed=%lu",
                           atomic_load(&opened), atomic_load(&closed));
        }
        if (str_eq(path, "/sleep")) {
            unsigned long ms = query_ulong(env->query_string, "ms");
            sleep_ms(ms);
            return respond(env, req, body, "200 OK", "slept %lu", ms);
        }
        if (str_eq(path, "/environ")) {
            return route_environ(env, req, body);
        }
        if (str_eq(path, "/get")) {
            return route_get(env, req, body);
        }
        if (str_eq(path, "/log")) {
            env->api->log(req, NWSGI_LOG_ERROR, str_of("testapps"),
                          str_of("testapps-log-marker from c"));
            return respond(env, req, body, "200 OK", "logged");
        }
        if (str_eq(path, "/bad-status")) {
            return route_bad_status(env, req);
        }
        if (str_eq(path, "/bad-header")) {
            return route_bad_header(env, req);
        }
        if (str_eq(path, "/config")) {
            return route_config(cfg, env, req, body);
        }
        if (str_eq(path, "/threads")) {
            return respond(env, req, body, "200 OK", "multithread=%d multiprocess=%d",
                           (int)env->multithread, (int)env->multiprocess);
        }
    } else if (post) {
        if (str_eq(path, "/input")) {
            return route_input(env, req, body);
        }
    }
    return respond(env, req, body, "404 Not Found", "not found");
}

NWSGI_EXPORT const nwsgi_app app = {
    .magic = NWSGI_MAGIC,
    .abi_major = NWSGI_ABI_MAJOR,
    .abi_minor = NWSGI_ABI_MINOR,
    .struct_size = (uint32_t)sizeof(nwsgi_app),
    .flags = NWSGI_APP_THREAD_SAFE,
    .init = testapps_init,
    .call = testapps_call,
    .shutdown = testapps_shutdown,
    .name = "testapps-c",
};
