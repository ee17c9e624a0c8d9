/*
 * hello-c — the "Hello, World!" NWSGI application in plain C, the twin of the
 * Rust `hello` plugin (same bytes on the wire).
 *
 * Build (from the repository root, C compiler only):
 *   cc -shared -fPIC -O2 -o libhello_c.so plugins/hello-c/hello.c -Iabi/include
 * Run:
 *   host serve ./libhello_c.so:app
 *
 * GET or HEAD, any path -> 200, Content-Type: text/plain, "Hello, World!".
 * Any other method     -> 405, Content-Type: text/plain, Allow: GET, HEAD,
 *                         "Method Not Allowed".
 * On a host with ABI 1.2 (NWSGI_API_HAS), the heads are declared once as
 * `static const nwsgi_response_head` (the host validates and encodes each
 * once, then knows it by its address) and the whole body goes in one
 * write_last call, with no body iterator. The host knows the whole body and
 * frames it with Content-Length. For HEAD the body is given too: the host
 * drops it on the wire but still sends Content-Length: 13, as for GET.
 *
 * On an older host the same response goes the 1.0 way: start_response with
 * the head's parts, and the body handed back as one chunk tagged
 * NWSGI_BODY_LAST. nwsgi_body.state points at the static nwsgi_str to send,
 * and `next` always answers that string with NWSGI_BODY_LAST. No
 * per-request position is needed because LAST is, per nwsgi.h, "the final
 * chunk": the host never calls next again after it.
 *
 * Stateless and allocation-free either way; nothing to free, so no `close`.
 */
#include "nwsgi.h"

static const nwsgi_str HELLO_BODY = NWSGI_STR("Hello, World!");
static const nwsgi_str NOT_ALLOWED_BODY = NWSGI_STR("Method Not Allowed");

static const nwsgi_header OK_HEADERS[] = {
    {NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
};

static const nwsgi_header NOT_ALLOWED_HEADERS[] = {
    {NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
    {NWSGI_STR("Allow"), NWSGI_STR("GET, HEAD")},
};

static const nwsgi_response_head OK_HEAD = {
    NWSGI_STR("200 OK"), OK_HEADERS, sizeof OK_HEADERS / sizeof OK_HEADERS[0]};
static const nwsgi_response_head NOT_ALLOWED_HEAD = {
    NWSGI_STR("405 Method Not Allowed"), NOT_ALLOWED_HEADERS,
    sizeof NOT_ALLOWED_HEADERS / sizeof NOT_ALLOWED_HEADERS[0]};

static int str_is(nwsgi_str s, const char *lit, size_t lit_len) {
    if (s.len != lit_len) {
        return 0;
    }
    for (size_t i = 0; i < lit_len; i++) {
        if (s.ptr[i] != (uint8_t)lit[i]) {
            return 0;
        }
    }
    return 1;
}

/* `state` is one of the two static bodies above (const only in spirit: it is
 * never written through). */
static int32_t hello_next(void *state, nwsgi_request *req, nwsgi_str *chunk) {
    (void)req;
    *chunk = *(const nwsgi_str *)state;
    return NWSGI_BODY_LAST;
}

static int32_t hello_call(void *app_state, const nwsgi_environ *env, nwsgi_request *req,
                          nwsgi_body *body) {
    (void)app_state;
    const nwsgi_host_api *api = env->api;
    nwsgi_str method = env->request_method;
    int allowed = str_is(method, "GET", 3) || str_is(method, "HEAD", 4);
    const nwsgi_response_head *head = allowed ? &OK_HEAD : &NOT_ALLOWED_HEAD;
    const nwsgi_str *text = allowed ? &HELLO_BODY : &NOT_ALLOWED_BODY;
    int32_t rc;

    if (NWSGI_API_HAS(api, write_last)) {
        rc = api->start_response_static(req, head, NULL);
        if (rc != NWSGI_OK) {
            return rc;
        }
        return api->write_last(req, text->ptr, text->len);
    }
    rc = api->start_response(req, head->status, head->headers, head->n_headers, NULL);
    if (rc != NWSGI_OK) {
        return rc;
    }
    body->state = (void *)text;
    body->next = hello_next;
    body->close = NULL;
    return NWSGI_OK;
}

/* Written out field by field (rather than NWSGI_APP_INIT) so the 1.1 `name`
 * field is set; the values are exactly what NWSGI_APP_INIT would produce. */
NWSGI_EXPORT const nwsgi_app app = {
    .magic = NWSGI_MAGIC,
    .abi_major = NWSGI_ABI_MAJOR,
    .abi_minor = NWSGI_ABI_MINOR,
    .struct_size = (uint32_t)sizeof(nwsgi_app),
    .flags = NWSGI_APP_THREAD_SAFE,
    .init = NULL,
    .call = hello_call,
    .shutdown = NULL,
    .name = "hello-c",
};
