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
 *                      /endless, /error-next, /big, /flood, and close calls
 *                      received
 *   GET  /sleep?ms=N   sleeps N ms; body "slept N"
 *   POST /input        reads the body in 7-byte reads; "len=<n>\n" + bytes
 *   GET  /big?mb=N     N MiB of 'x' with the app's own Content-Length, from
 *                      the iterator in 64 KiB chunks (MORE each, then END);
 *                      N over 1048576 (1 TiB) -> 400 "mb too large"
 *   GET  /big-write?mb=N  the same bytes through api->write in 64 KiB
 *                      pieces, Content-Length set, no iterator
 *   GET  /flood        'x' forever from the iterator in 16 KiB chunks (MORE),
 *                      no sleep, no Content-Length (chunked)
 *   POST /count        reads the body in 64 KiB reads; "len=<n>\n" only (a
 *                      read error as /input)
 *   GET  /environ      "KEY=VALUE\n" for every variable (api->environ_each)
 *   GET  /get?key=K    api->environ_get: 200 + value, or 404 "absent"
 *   GET  /log          logs "testapps-log-marker from c" at ERROR; "logged"
 *   GET  /bad-status   start_response("20 OK") -> E_INVALID; OK, no body
 *   GET  /bad-header   header value with CR LF -> E_INVALID; OK, no body
 *   GET  /config       "key=value\n" per --app-arg, in order
 *   GET  /threads      "multithread=M multiprocess=P"
 *   anything else      404 "not found"
 * init refuses to start when the config holds `fail=1`, and sleeps N ms
 * first for `init_ms=N` (a slow boot, for the tests).
 *
 * C only, no Rust twin: the ABI 1.2 calls start_response_static and
 * write_last, under /v12/ (GET and HEAD; tests/abi_1_2.rs). Each head is a
 * `static const nwsgi_response_head`; "+ last X" means the body X is given
 * whole with write_last and no iterator. Without NWSGI_API_HAS(api,
 * start_response_static / write_last) every /v12/ route answers 501.
 *   /v12/static        200, X-Head: static + last "static body\n"
 *   /v12/static-empty  the same head + last of 0 bytes (data NULL)
 *   /v12/head-a        200, text/plain, X-Head: a + last "head a\n"
 *   /v12/head-b        201, application/json, X-Head: b, Cache-Control:
 *                      no-store + last "{"head":"b"}\n"
 *   /v12/head-dynamic  202, text/html, X-Head: dynamic by 1.0 start_response
 *                      (headers in stack memory) + last "dynamic head\n"
 *   /v12/bad-value     a static head with a CR LF in a header value
 *   /v12/bad-hop       a static head with a Connection header
 *                      (both: start_response_static, then write_last ->
 *                      E_INVALID each time; no body, host: 500)
 *   /v12/last-before-start  write_last first -> E_STATE; no start_response
 *                      (host: 500)
 *   /v12/late-start    write_last first -> E_STATE (no effect), then a static
 *                      head + last "started after all\n"
 *   /v12/last-twice    last "first\n"; then write_last, write and an empty
 *                      write_last -> E_STATE each
 *   /v12/write-then-last  write "written, ", last "then last\n"; a write
 *                      after it -> E_STATE
 *   /v12/short-length  head with Content-Length: 10 + last "short" (5)
 *   /v12/long-length   head with Content-Length: 3 + last "too long" (8);
 *                      write_last -> E_INVALID (the app's error)
 *   /v12/last-with-iterator  last "from write_last\n" and an iterator
 *                      whose next fails (must never be called) and whose
 *                      close must run once
 *   /v12/counters      "next=N close=M": that iterator's next/close calls
 *   /v12/exc-before    static head, replaced (exc_info "static boom") by a
 *                      static 500 head + last "replaced"
 *   /v12/exc-after     static head, write "partial", then
 *                      start_response_static with exc_info "late static
 *                      boom" -> E_HEADERS_SENT; returns NWSGI_ERROR
 *   /v12/<other>       404 "not found"
 *
 * Every answer outside /v12/ is Content-Type: text/plain. Bodies not listed as written
 * another way are built in a malloc'd buffer and handed back as a single
 * NWSGI_BODY_LAST chunk (so the host frames them with Content-Length); the
 * buffer is freed in close.
 *
 * If a host call does not return what the route expects (e.g. /bad-status is
 * accepted), the route answers a body "unexpected rc=<rc>" instead, so the
 * test sees the difference. Where the body is already complete (after
 * write_last) it logs "v12-unexpected: <call> rc=<rc>" at ERROR instead and
 * returns NWSGI_ERROR.
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

/* /big, /big-write and /flood repeat one byte; /big and /big-write send it
 * in 64 KiB chunks or writes (16 to a MiB), /flood in 16 KiB chunks; /count
 * reads 64 KiB at a time. */
#define PATTERN 'x'
#define BIG_CHUNK (64 * 1024)
#define BIG_MAX_MB (1UL << 20) /* the largest /big?mb= served: 1 TiB */
#define FLOOD_CHUNK (16 * 1024)
#define COUNT_READ (64 * 1024)

/* BIG_CHUNK bytes of PATTERN, the chunks of /big, /big-write and /flood:
 * filled by init before any request, read-only after. */
static uint8_t pattern_bytes[BIG_CHUNK];

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

/* /big: `left` more BIG_CHUNK chunks, then END. */
typedef struct big_state {
    unsigned long left;
} big_state;

static int32_t big_next(void *state, nwsgi_request *req, nwsgi_str *chunk) {
    (void)req;
    big_state *s = state;
    if (s->left == 0) {
        return NWSGI_BODY_END;
    }
    s->left--;
    chunk->ptr = pattern_bytes;
    chunk->len = BIG_CHUNK;
    return NWSGI_BODY_MORE;
}

/* /flood: FLOOD_CHUNK bytes forever. The state is a dummy block, as for
 * /error-next. */
static int32_t flood_next(void *state, nwsgi_request *req, nwsgi_str *chunk) {
    (void)state;
    (void)req;
    chunk->ptr = pattern_bytes;
    chunk->len = FLOOD_CHUNK;
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

/* Starts a 200 response with `headers` whose body is a counted iterator over
 * `state` (malloc'd by the caller; owned by the body from here on, freed by
 * counted_close, or here if the response cannot start). */
static int32_t start_counted_body_with(const nwsgi_environ *env, nwsgi_request *req,
                                       nwsgi_body *body, void *state,
                                       int32_t (*next)(void *, nwsgi_request *, nwsgi_str *),
                                       const nwsgi_header *headers, size_t n_headers) {
    int32_t rc = env->api->start_response(req, str_of("200 OK"), headers, n_headers, NULL);
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

/* start_counted_body_with, text/plain. */
static int32_t start_counted_body(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body,
                                  void *state,
                                  int32_t (*next)(void *, nwsgi_request *, nwsgi_str *)) {
    return start_counted_body_with(env, req, body, state, next, TEXT_PLAIN, N_TEXT_PLAIN);
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

/* /big and /big-write: the ?mb= parameter, or 0 when it is over BIG_MAX_MB
 * (after answering 400 "mb too large"; *rc holds what to return). */
static int big_mb(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body,
                  unsigned long *mb, int32_t *rc) {
    *mb = query_ulong(env->query_string, "mb");
    if (*mb > BIG_MAX_MB) {
        *rc = respond(env, req, body, "400 Bad Request", "mb too large");
        return 0;
    }
    return 1;
}

/* text/plain and Content-Length: `mb` MiB; `len_text` (>= 24 bytes) holds
 * the digits, borrowed by headers[1]. */
static void big_headers(unsigned long mb, char *len_text, size_t cap, nwsgi_header headers[2]) {
    int len = snprintf(len_text, cap, "%lu", mb * 1048576UL);
    headers[0] = TEXT_PLAIN[0];
    headers[1].name = str_of("Content-Length");
    headers[1].value.ptr = (const uint8_t *)len_text;
    headers[1].value.len = len > 0 ? (size_t)len : 0;
}

static int32_t route_big(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    unsigned long mb;
    int32_t rc;
    if (!big_mb(env, req, body, &mb, &rc)) {
        return rc;
    }
    big_state *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return NWSGI_ERROR;
    }
    s->left = mb * (1048576UL / BIG_CHUNK);
    char len_text[24];
    nwsgi_header headers[2];
    big_headers(mb, len_text, sizeof len_text, headers);
    return start_counted_body_with(env, req, body, s, big_next, headers, 2);
}

static int32_t route_big_write(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    unsigned long mb;
    int32_t rc;
    if (!big_mb(env, req, body, &mb, &rc)) {
        return rc;
    }
    char len_text[24];
    nwsgi_header headers[2];
    big_headers(mb, len_text, sizeof len_text, headers);
    rc = env->api->start_response(req, str_of("200 OK"), headers, 2, NULL);
    if (rc != NWSGI_OK) {
        return rc;
    }
    unsigned long writes = mb * (1048576UL / BIG_CHUNK);
    for (unsigned long i = 0; i < writes; i++) {
        rc = env->api->write(req, pattern_bytes, BIG_CHUNK);
        if (rc != NWSGI_OK) {
            return rc;
        }
    }
    return NWSGI_OK;
}

static int32_t route_flood(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    void *s = malloc(1);
    if (s == NULL) {
        return NWSGI_ERROR;
    }
    return start_counted_body(env, req, body, s, flood_next);
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

/* /count: the body's length, read COUNT_READ bytes at a time and not kept. */
static int32_t route_count(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    uint8_t *chunk = malloc(COUNT_READ);
    if (chunk == NULL) {
        return NWSGI_ERROR;
    }
    unsigned long long total = 0;
    for (;;) {
        int64_t n = env->api->read(req, chunk, COUNT_READ);
        if (n == 0) {
            break;
        }
        if (n < 0 || n > COUNT_READ) {
            free(chunk);
            return n < 0 ? (int32_t)n : NWSGI_ERROR;
        }
        total += (unsigned long long)n;
    }
    free(chunk);
    return respond(env, req, body, "200 OK", "len=%llu\n", total);
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
/* ABI 1.2: start_response_static and write_last (C only, see the header)    */
/* ------------------------------------------------------------------------ */

/* Calls to the /v12/last-with-iterator body's next (never expected) and
 * close (once per request expected). */
static atomic_ulong v12_next_calls = 0;
static atomic_ulong v12_close_calls = 0;

static const nwsgi_response_head V12_TEXT = {NWSGI_STR("200 OK"), TEXT_PLAIN, N_TEXT_PLAIN};

static const nwsgi_header V12_STATIC_HEADERS[] = {
    {NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
    {NWSGI_STR("X-Head"), NWSGI_STR("static")},
};
static const nwsgi_response_head V12_STATIC = {
    NWSGI_STR("200 OK"), V12_STATIC_HEADERS,
    sizeof V12_STATIC_HEADERS / sizeof V12_STATIC_HEADERS[0]};

static const nwsgi_header V12_A_HEADERS[] = {
    {NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
    {NWSGI_STR("X-Head"), NWSGI_STR("a")},
};
static const nwsgi_response_head V12_A = {
    NWSGI_STR("200 OK"), V12_A_HEADERS, sizeof V12_A_HEADERS / sizeof V12_A_HEADERS[0]};

static const nwsgi_header V12_B_HEADERS[] = {
    {NWSGI_STR("Content-Type"), NWSGI_STR("application/json")},
    {NWSGI_STR("X-Head"), NWSGI_STR("b")},
    {NWSGI_STR("Cache-Control"), NWSGI_STR("no-store")},
};
static const nwsgi_response_head V12_B = {
    NWSGI_STR("201 Created"), V12_B_HEADERS, sizeof V12_B_HEADERS / sizeof V12_B_HEADERS[0]};

/* Refused: a header value with CR LF (header injection). */
static const nwsgi_header V12_BAD_VALUE_HEADERS[] = {
    {NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
    {NWSGI_STR("X-Bad"), NWSGI_STR("a\r\nInjected: yes")},
};
static const nwsgi_response_head V12_BAD_VALUE = {
    NWSGI_STR("200 OK"), V12_BAD_VALUE_HEADERS,
    sizeof V12_BAD_VALUE_HEADERS / sizeof V12_BAD_VALUE_HEADERS[0]};

/* Refused: a hop-by-hop header. */
static const nwsgi_header V12_BAD_HOP_HEADERS[] = {
    {NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
    {NWSGI_STR("Connection"), NWSGI_STR("close")},
};
static const nwsgi_response_head V12_BAD_HOP = {
    NWSGI_STR("200 OK"), V12_BAD_HOP_HEADERS,
    sizeof V12_BAD_HOP_HEADERS / sizeof V12_BAD_HOP_HEADERS[0]};

/* The app's own Content-Length, 10: more than /v12/short-length gives. */
static const nwsgi_header V12_LEN10_HEADERS[] = {
    {NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
    {NWSGI_STR("Content-Length"), NWSGI_STR("10")},
};
static const nwsgi_response_head V12_LEN10 = {
    NWSGI_STR("200 OK"), V12_LEN10_HEADERS,
    sizeof V12_LEN10_HEADERS / sizeof V12_LEN10_HEADERS[0]};

/* The app's own Content-Length, 3: less than /v12/long-length gives. */
static const nwsgi_header V12_LEN3_HEADERS[] = {
    {NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
    {NWSGI_STR("Content-Length"), NWSGI_STR("3")},
};
static const nwsgi_response_head V12_LEN3 = {
    NWSGI_STR("200 OK"), V12_LEN3_HEADERS, sizeof V12_LEN3_HEADERS / sizeof V12_LEN3_HEADERS[0]};

static const nwsgi_response_head V12_500 = {
    NWSGI_STR("500 Internal Server Error"), TEXT_PLAIN, N_TEXT_PLAIN};

static int has_v12(const nwsgi_host_api *api) {
    return NWSGI_API_HAS(api, start_response_static) && NWSGI_API_HAS(api, write_last);
}

/* A call returned `rc` where the route expected otherwise, once the body
 * can no longer tell: logs "v12-unexpected: <what> rc=<rc>" at ERROR (the
 * tests look for that marker) and returns NWSGI_ERROR, so the host also
 * aborts the connection if the response already began. */
static int32_t v12_unexpected(const nwsgi_environ *env, nwsgi_request *req, const char *what,
                              int32_t rc) {
    char line[128];
    int n = snprintf(line, sizeof line, "v12-unexpected: %s rc=%d", what, (int)rc);
    nwsgi_str msg = {(const uint8_t *)line,
                     n < 0 ? 0 : ((size_t)n < sizeof line ? (size_t)n : sizeof line - 1)};
    env->api->log(req, NWSGI_LOG_ERROR, str_of("testapps"), msg);
    return NWSGI_ERROR;
}

/* start_response_static(head) failed with `rc` before anything was sent:
 * answers 200 "unexpected start_response_static rc=<rc>" the 1.0 way (if
 * the host still lets us). */
static int32_t v12_start_failed(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body,
                                int32_t rc) {
    return respond(env, req, body, "200 OK", "unexpected start_response_static rc=%d", (int)rc);
}

/* The whole response: static `head`, then `text` through write_last. */
static int32_t v12_whole(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body,
                         const nwsgi_response_head *head, const char *text) {
    const nwsgi_host_api *api = env->api;
    int32_t rc = api->start_response_static(req, head, NULL);
    if (rc != NWSGI_OK) {
        return v12_start_failed(env, req, body, rc);
    }
    rc = api->write_last(req, (const uint8_t *)text, strlen(text));
    if (rc != NWSGI_OK) {
        return v12_unexpected(env, req, "write_last", rc);
    }
    return NWSGI_OK;
}

/* /v12/head-dynamic: the 1.0 start_response (a head built per request, in
 * stack memory), then write_last. */
static int32_t route_v12_head_dynamic(const nwsgi_environ *env, nwsgi_request *req,
                                      nwsgi_body *body) {
    const nwsgi_host_api *api = env->api;
    char value[16];
    int n = snprintf(value, sizeof value, "dyn%s", "amic");
    if (n < 0 || (size_t)n >= sizeof value) {
        return NWSGI_ERROR;
    }
    nwsgi_header headers[2] = {
        {NWSGI_STR("Content-Type"), NWSGI_STR("text/html")},
        {NWSGI_STR("X-Head"), {(const uint8_t *)value, (size_t)n}},
    };
    int32_t rc = api->start_response(req, str_of("202 Accepted"), headers, 2, NULL);
    if (rc != NWSGI_OK) {
        return respond(env, req, body, "200 OK", "unexpected start_response rc=%d", (int)rc);
    }
    static const char text[] = "dynamic head\n";
    rc = api->write_last(req, (const uint8_t *)text, sizeof text - 1);
    if (rc != NWSGI_OK) {
        return v12_unexpected(env, req, "write_last", rc);
    }
    return NWSGI_OK;
}

/* /v12/bad-value, /v12/bad-hop: an invalid static head is refused each time
 * it is used, and so is write_last after it; no body, so the host answers
 * 500. */
static int32_t route_v12_bad(const nwsgi_environ *env, nwsgi_request *req,
                             const nwsgi_response_head *head) {
    const nwsgi_host_api *api = env->api;
    int32_t rc = api->start_response_static(req, head, NULL);
    if (rc != NWSGI_E_INVALID) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "unexpected rc=%d", (int)rc);
        if (rc == NWSGI_OK && len > 0 && (size_t)len < sizeof msg) {
            api->write_last(req, (const uint8_t *)msg, (size_t)len);
        }
        return NWSGI_OK;
    }
    rc = api->write_last(req, (const uint8_t *)"never sent", 10);
    if (rc != NWSGI_E_INVALID) {
        return v12_unexpected(env, req, "write_last after an invalid head", rc);
    }
    return NWSGI_OK; /* no body: the host answers 500 */
}

/* /v12/last-before-start: write_last before start_response -> E_STATE;
 * then no start_response at all, so the host answers 500. */
static int32_t route_v12_last_before_start(const nwsgi_environ *env, nwsgi_request *req,
                                           nwsgi_body *body) {
    int32_t rc = env->api->write_last(req, (const uint8_t *)"too early", 9);
    if (rc == NWSGI_E_STATE) {
        return NWSGI_OK;
    }
    /* Logged too: the host may take the body as complete already, and then
     * never ask for the one below. */
    v12_unexpected(env, req, "write_last before start_response", rc);
    return respond(env, req, body, "200 OK", "unexpected rc=%d", (int)rc);
}

/* /v12/late-start: a write_last refused before start_response has no
 * effect: the app can still start and give its body. */
static int32_t route_v12_late_start(const nwsgi_environ *env, nwsgi_request *req,
                                    nwsgi_body *body) {
    int32_t rc = env->api->write_last(req, (const uint8_t *)"too early", 9);
    if (rc != NWSGI_E_STATE) {
        v12_unexpected(env, req, "write_last before start_response", rc);
        return respond(env, req, body, "200 OK", "unexpected rc=%d", (int)rc);
    }
    return v12_whole(env, req, body, &V12_TEXT, "started after all\n");
}

/* /v12/last-twice: after write_last the body is complete; a second
 * write_last and a write both return E_STATE and send nothing. */
static int32_t route_v12_last_twice(const nwsgi_environ *env, nwsgi_request *req,
                                    nwsgi_body *body) {
    const nwsgi_host_api *api = env->api;
    int32_t rc = api->start_response_static(req, &V12_TEXT, NULL);
    if (rc != NWSGI_OK) {
        return v12_start_failed(env, req, body, rc);
    }
    rc = api->write_last(req, (const uint8_t *)"first\n", 6);
    if (rc != NWSGI_OK) {
        return v12_unexpected(env, req, "first write_last", rc);
    }
    rc = api->write_last(req, (const uint8_t *)"second\n", 7);
    if (rc != NWSGI_E_STATE) {
        return v12_unexpected(env, req, "second write_last", rc);
    }
    rc = api->write(req, (const uint8_t *)"third\n", 6);
    if (rc != NWSGI_E_STATE) {
        return v12_unexpected(env, req, "write after write_last", rc);
    }
    rc = api->write_last(req, NULL, 0);
    if (rc != NWSGI_E_STATE) {
        return v12_unexpected(env, req, "empty write_last after write_last", rc);
    }
    return NWSGI_OK;
}

/* /v12/write-then-last: part of the body through write (so the host must
 * stream it), the rest through write_last; a write after it is E_STATE. */
static int32_t route_v12_write_then_last(const nwsgi_environ *env, nwsgi_request *req,
                                         nwsgi_body *body) {
    const nwsgi_host_api *api = env->api;
    int32_t rc = api->start_response_static(req, &V12_TEXT, NULL);
    if (rc != NWSGI_OK) {
        return v12_start_failed(env, req, body, rc);
    }
    rc = api->write(req, (const uint8_t *)"written, ", 9);
    if (rc != NWSGI_OK) {
        return v12_unexpected(env, req, "write", rc);
    }
    rc = api->write_last(req, (const uint8_t *)"then last\n", 10);
    if (rc != NWSGI_OK) {
        return v12_unexpected(env, req, "write_last after write", rc);
    }
    rc = api->write(req, (const uint8_t *)"late\n", 5);
    if (rc != NWSGI_E_STATE) {
        return v12_unexpected(env, req, "write after write_last", rc);
    }
    return NWSGI_OK;
}

/* /v12/long-length: Content-Length 3, write_last of 8 bytes. The host sends
 * 3 and closes; write_last may say so (E_DISCONNECTED) or not (OK). */
static int32_t route_v12_long_length(const nwsgi_environ *env, nwsgi_request *req,
                                     nwsgi_body *body) {
    const nwsgi_host_api *api = env->api;
    int32_t rc = api->start_response_static(req, &V12_LEN3, NULL);
    if (rc != NWSGI_OK) {
        return v12_start_failed(env, req, body, rc);
    }
    rc = api->write_last(req, (const uint8_t *)"too long", 8);
    if (rc != NWSGI_E_INVALID) {
        return v12_unexpected(env, req, "write_last over Content-Length", rc);
    }
    return NWSGI_OK;
}

/* /v12/last-with-iterator: the body goes through write_last, and call also
 * hands back an iterator. The host must never call its next (which would
 * fail the response) and call its close exactly once. */
static int32_t v12_iter_next(void *state, nwsgi_request *req, nwsgi_str *chunk) {
    (void)state;
    (void)req;
    static const nwsgi_str marker = NWSGI_STR("NEXT CALLED AFTER write_last\n");
    atomic_fetch_add(&v12_next_calls, 1);
    *chunk = marker;
    return NWSGI_ERROR;
}

static void v12_iter_close(void *state, nwsgi_request *req) {
    (void)req;
    free(state);
    atomic_fetch_add(&v12_close_calls, 1);
}

static int32_t route_v12_last_with_iterator(const nwsgi_environ *env, nwsgi_request *req,
                                            nwsgi_body *body) {
    const nwsgi_host_api *api = env->api;
    void *state = malloc(1);
    if (state == NULL) {
        return NWSGI_ERROR;
    }
    int32_t rc = api->start_response_static(req, &V12_TEXT, NULL);
    if (rc != NWSGI_OK) {
        free(state);
        return v12_start_failed(env, req, body, rc);
    }
    rc = api->write_last(req, (const uint8_t *)"from write_last\n", 16);
    if (rc != NWSGI_OK) {
        free(state);
        return v12_unexpected(env, req, "write_last", rc);
    }
    body->state = state;
    body->next = v12_iter_next;
    body->close = v12_iter_close;
    return NWSGI_OK;
}

/* /v12/exc-before: a static head replaced, before anything was sent, by
 * another static head with exc_info. */
static int32_t route_v12_exc_before(const nwsgi_environ *env, nwsgi_request *req,
                                    nwsgi_body *body) {
    const nwsgi_host_api *api = env->api;
    int32_t rc = api->start_response_static(req, &V12_TEXT, NULL);
    if (rc != NWSGI_OK) {
        return v12_start_failed(env, req, body, rc);
    }
    nwsgi_exc_info exc = {NWSGI_STR("static boom")};
    rc = api->start_response_static(req, &V12_500, &exc);
    const char *text = "replaced";
    char msg[64];
    if (rc != NWSGI_OK) {
        int len = snprintf(msg, sizeof msg, "unexpected rc=%d", (int)rc);
        text = len > 0 && (size_t)len < sizeof msg ? msg : "unexpected rc";
    }
    rc = api->write_last(req, (const uint8_t *)text, strlen(text));
    if (rc != NWSGI_OK) {
        return v12_unexpected(env, req, "write_last", rc);
    }
    return NWSGI_OK;
}

/* /v12/exc-after: static head, write "partial" (the head goes out), then
 * start_response_static with exc_info -> E_HEADERS_SENT; returns
 * NWSGI_ERROR like /exc-after. */
static int32_t route_v12_exc_after(const nwsgi_environ *env, nwsgi_request *req,
                                   nwsgi_body *body) {
    const nwsgi_host_api *api = env->api;
    int32_t rc = api->start_response_static(req, &V12_TEXT, NULL);
    if (rc != NWSGI_OK) {
        return v12_start_failed(env, req, body, rc);
    }
    rc = api->write(req, (const uint8_t *)"partial", 7);
    if (rc != NWSGI_OK) {
        return rc;
    }
    nwsgi_exc_info exc = {NWSGI_STR("late static boom")};
    rc = api->start_response_static(req, &V12_500, &exc);
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

/* GET and HEAD /v12/...: `path` without the "/v12" prefix. */
static int32_t route_v12(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body,
                         nwsgi_str path) {
    if (!has_v12(env->api)) {
        return respond(env, req, body, "501 Not Implemented",
                       "the host lacks ABI 1.2 start_response_static/write_last");
    }
    if (str_eq(path, "/static")) {
        return v12_whole(env, req, body, &V12_STATIC, "static body\n");
    }
    if (str_eq(path, "/static-empty")) {
        int32_t rc = env->api->start_response_static(req, &V12_STATIC, NULL);
        if (rc != NWSGI_OK) {
            return v12_start_failed(env, req, body, rc);
        }
        rc = env->api->write_last(req, NULL, 0);
        return rc == NWSGI_OK ? NWSGI_OK : v12_unexpected(env, req, "empty write_last", rc);
    }
    if (str_eq(path, "/head-a")) {
        return v12_whole(env, req, body, &V12_A, "head a\n");
    }
    if (str_eq(path, "/head-b")) {
        return v12_whole(env, req, body, &V12_B, "{\"head\":\"b\"}\n");
    }
    if (str_eq(path, "/head-dynamic")) {
        return route_v12_head_dynamic(env, req, body);
    }
    if (str_eq(path, "/bad-value")) {
        return route_v12_bad(env, req, &V12_BAD_VALUE);
    }
    if (str_eq(path, "/bad-hop")) {
        return route_v12_bad(env, req, &V12_BAD_HOP);
    }
    if (str_eq(path, "/late-start")) {
        return route_v12_late_start(env, req, body);
    }
    if (str_eq(path, "/last-before-start")) {
        return route_v12_last_before_start(env, req, body);
    }
    if (str_eq(path, "/last-twice")) {
        return route_v12_last_twice(env, req, body);
    }
    if (str_eq(path, "/write-then-last")) {
        return route_v12_write_then_last(env, req, body);
    }
    if (str_eq(path, "/short-length")) {
        return v12_whole(env, req, body, &V12_LEN10, "short");
    }
    if (str_eq(path, "/long-length")) {
        return route_v12_long_length(env, req, body);
    }
    if (str_eq(path, "/last-with-iterator")) {
        return route_v12_last_with_iterator(env, req, body);
    }
    if (str_eq(path, "/counters")) {
        return respond(env, req, body, "200 OK", "next=%lu close=%lu",
                       atomic_load(&v12_next_calls), atomic_load(&v12_close_calls));
    }
    if (str_eq(path, "/exc-before")) {
        return route_v12_exc_before(env, req, body);
    }
    if (str_eq(path, "/exc-after")) {
        return route_v12_exc_after(env, req, body);
    }
    return respond(env, req, body, "404 Not Found", "not found");
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
    memset(pattern_bytes, PATTERN, sizeof pattern_bytes);
    for (size_t i = 0; i < args->n_config; i++) {
        if (str_eq(args->config[i].name, "init_ms")) {
            unsigned long ms = 0;
            nwsgi_str v = args->config[i].value;
            for (size_t j = 0; j < v.len && v.ptr[j] >= '0' && v.ptr[j] <= '9'; j++) {
                ms = ms * 10 + (unsigned long)(v.ptr[j] - '0');
            }
            sleep_ms(ms);
        }
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
    int head = str_eq(env->request_method, "HEAD");
    static const char V12_PREFIX[] = "/v12/";

    if ((get || head) && path.len >= sizeof V12_PREFIX - 1 &&
        memcmp(path.ptr, V12_PREFIX, sizeof V12_PREFIX - 1) == 0) {
        nwsgi_str rest = {path.ptr + 4, path.len - 4}; /* keeps the '/' */
        return route_v12(env, req, body, rest);
    }

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
        if (str_eq(path, "/big")) {
            return route_big(env, req, body);
        }
        if (str_eq(path, "/big-write")) {
            return route_big_write(env, req, body);
        }
        if (str_eq(path, "/flood")) {
            return route_flood(env, req, body);
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
        if (str_eq(path, "/count")) {
            return route_count(env, req, body);
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
