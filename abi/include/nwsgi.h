/*
 * nwsgi.h — the Native Web Server Gateway Interface, ABI 1.2.
 *
 * What WSGI (PEP 3333) is to Python, this header is to native code: a server
 * (the `host` binary) owns sockets, HTTP/1.1 and worker processes; an
 * application is a shared library exporting one `nwsgi_app` descriptor.
 * Any conforming application runs on any conforming server unchanged.
 *
 * A stranger can implement an application from this file alone:
 *
 *   #include "nwsgi.h"
 *   static int32_t call(void *state, const nwsgi_environ *env,
 *                       nwsgi_request *req, nwsgi_body *body) {
 *       static const nwsgi_header h[] = {{NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")}};
 *       const nwsgi_host_api *api = env->api;
 *       int32_t rc = api->start_response(req, NWSGI_STR_LIT("200 OK"), h, 1, NULL);
 *       (void)state; // no init, so no app state
 *       (void)body;  // left zeroed: no body iterator
 *       if (rc != NWSGI_OK) return rc;
 *       if (NWSGI_API_HAS(api, write_last)) // ABI 1.2: the whole body in one call
 *           return api->write_last(req, (const uint8_t *)"Hello", 5);
 *       return api->write(req, (const uint8_t *)"Hello", 5);
 *   }
 *   NWSGI_EXPORT const nwsgi_app app =
 *       NWSGI_APP_INIT_NAMED(NWSGI_APP_THREAD_SAFE, NULL, call, NULL, "myapp");
 *
 *   cc -shared -fPIC -o libmyapp.so myapp.c -I<repo>/abi/include
 *   host serve ./libmyapp.so:app
 *
 * The same code is C++ (C++11 or later) too, built with `c++` instead of
 * `cc`: NWSGI_EXPORT then also makes `app` extern "C".
 *
 * Conventions
 *  - Every name starts with `nwsgi_` / `NWSGI_`.
 *  - Strings are `nwsgi_str`: pointer + length, NOT NUL-terminated, bytes not
 *    guaranteed to be UTF-8 (HTTP allows obs-text in field values).
 *  - Ownership: whoever allocates, frees. Nothing allocated by the host is
 *    freed by the application, and the other way round. Each pointer below says
 *    how long it lives ("borrowed until ...").
 *  - Functions return `int32_t` status codes from `nwsgi_status` (0 = OK,
 *    negative = error) unless stated otherwise.
 *  - What the application hands the host is checked, not trusted: a NULL
 *    pointer with a non-zero length (a status, a header name or value, a
 *    body chunk, a log message, exc_info's message, a read buffer) makes
 *    the call return NWSGI_E_INVALID, the host logs the mistake with the
 *    request it belongs to, and the request is answered 500 (or, if its
 *    response had begun, its connection is closed). Other requests, and
 *    the worker process, are not affected.
 *  - Structs only ever grow at the end (within a major version). Each struct
 *    that crosses the boundary carries its own size so either side can tell
 *    which fields the other knows about. Never reorder, never remove.
 *
 * Threads, lifetimes and state (the rules below, in one place)
 *  - Threads. `init` and `shutdown` run once per worker process on its main
 *    thread. `call`, and the body iterator's `next` and `close`, run on the
 *    host's worker threads: one request's `call`, `next` and `close` on the
 *    same thread, other requests on other threads at the same time when the
 *    descriptor has NWSGI_APP_THREAD_SAFE (else the host runs one at a time).
 *    The functions taking an `nwsgi_request *` (start_response, write, read,
 *    write_last, ...) may be called only from the thread running that
 *    request's call/next/close, and only while it runs; never keep a request
 *    handle for later or hand it to a thread of your own. `api->log` with a
 *    NULL request may be called from any thread, at any time while the
 *    library is loaded.
 *  - Lifetimes. Every nwsgi_str in the environ (method, path, query,
 *    headers, and what environ_get / environ_each or nwsgi_util.h's helpers
 *    return from it) is borrowed until the request ends: until body.close returns,
 *    or, with no body iterator, until `call` returns. Copy what you keep
 *    longer. Whatever you hand the host (status, headers, body bytes) is
 *    copied before the call returns, except a nwsgi_response_head given to
 *    start_response_static (static storage, unchanged while loaded) and a
 *    body iterator's chunk (valid until the next call of next or close).
 *    The `api` table and the `nwsgi_app` descriptor live while the library
 *    is loaded.
 *  - State. Each worker process loads its own copy of the library and runs
 *    its own `init`: globals and the app_state pointer are per worker
 *    process (with `--workers 4`, four independent copies), and shared
 *    between that process's threads (guard them when THREAD_SAFE). A reload
 *    (`host reload`, HUP, `--reload`) or a worker's restart (--max-requests,
 *    a crash, a timeout) starts fresh: new processes load the new build and
 *    run `init` again; nothing in memory survives (a build rolled back
 *    after a failed reload starts fresh too). `shutdown` runs when a worker
 *    retires in order, not after a crash or a timeout, so it is no place
 *    to save what matters. State that must outlive
 *    a worker or be shared between workers goes in an external store (a
 *    database, a file, Redis, ...); state derived from configuration is
 *    rebuilt in `init` from `--app-arg` values.
 *
 * Versioning
 *  - NWSGI_ABI_MAJOR changes only on an incompatible change; the host refuses
 *    a plugin built for another major version.
 *  - NWSGI_ABI_MINOR grows when fields are appended. A plugin built against
 *    an older minor keeps loading in a newer host. A plugin that wants a field
 *    added in a later minor must check `environ->struct_size` /
 *    `api->struct_size` (or the host's `abi_minor`) before reading it.
 *
 * History
 *  - 1.0: initial version.
 *  - 1.1: `nwsgi_app.name` (display name shown by `host check` and logs).
 *  - 1.2: `api->start_response_static` with `nwsgi_response_head` (a head
 *         the application declares once: the host validates and encodes it
 *         once, not per request) and `api->write_last` (the whole rest of
 *         the body in one call, with no body iterator). Both are faster ways
 *         to say what 1.0 can already say. Before using them, check that
 *         the host has them: NWSGI_API_HAS(env->api, write_last).
 *  - 1.3: `nwsgi_environ.raw_path_info`, PATH_INFO as the client sent it
 *         (not percent-decoded), for routers that must tell `%2F` from
 *         `/`. Check NWSGI_ENVIRON_HAS(env, raw_path_info) before reading
 *         it; nwsgi_util.h's nwsgi_raw_path_info() does, and works out the
 *         same bytes from `request_uri` on an older host.
 */
#ifndef NWSGI_H
#define NWSGI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "NWSG" read as a little-endian u32. */
#define NWSGI_MAGIC 0x4753574Eu
#define NWSGI_ABI_MAJOR 1
#define NWSGI_ABI_MINOR 3

/* Put in front of the exported descriptor's definition:
 *   NWSGI_EXPORT const nwsgi_app app = NWSGI_APP_INIT(...);
 * It keeps the symbol visible under -fvisibility=hidden. In C++ it also
 * declares it extern "C": a namespace-scope `const` otherwise has internal
 * linkage (nothing would be exported) and its name would be mangled. */
#if defined(__GNUC__) || defined(__clang__)
#define NWSGI_VISIBLE_ __attribute__((visibility("default")))
#else
#define NWSGI_VISIBLE_
#endif
#ifdef __cplusplus
#define NWSGI_EXPORT extern "C" NWSGI_VISIBLE_
#else
#define NWSGI_EXPORT NWSGI_VISIBLE_
#endif

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

typedef enum nwsgi_status {
    NWSGI_OK = 0,
    /* Generic application failure: the host answers 500 if it still can. */
    NWSGI_ERROR = -1,
    /* An argument was invalid (bad status line, bad header name/value,
     * NULL where a pointer is required, more body than the application's
     * own Content-Length). The response becomes a 500, or, when it had
     * begun, its connection is closed after what was valid of it. */
    NWSGI_E_INVALID = -2,
    /* start_response was called a second time without exc_info, or
     * write() was called before start_response. */
    NWSGI_E_STATE = -3,
    /* start_response was called with exc_info after the headers were
     * already sent: the host aborts the connection (PEP 3333 "re-raise").
     * The application should clean up and return. */
    NWSGI_E_HEADERS_SENT = -4,
    /* The client went away or the socket failed; stop producing output. */
    NWSGI_E_DISCONNECTED = -5,
    /* The request body was malformed (bad chunked encoding) or the client
     * was too slow sending it. */
    NWSGI_E_BAD_BODY = -6,
} nwsgi_status;

/* ------------------------------------------------------------------------ */
/* Plain data                                                                */
/* ------------------------------------------------------------------------ */

/* A byte string: `len` bytes at `ptr`. Not NUL-terminated. `ptr` may be
 * NULL only when `len` is 0. Lifetime: stated wherever one is used. */
typedef struct nwsgi_str {
    const uint8_t *ptr;
    size_t len;
} nwsgi_str;

/* Build an nwsgi_str from a string literal (length excludes the NUL).
 * NWSGI_STR is an initializer (for static tables); NWSGI_STR_LIT is the
 * same as an expression, e.g. as a call argument: a C99 compound literal in
 * C, a temporary (`nwsgi_str{...}`, C++11) in C++, which lives until the end
 * of the full expression, so in C++ do not keep its address. */
#define NWSGI_STR(lit) { (const uint8_t *)(lit), sizeof(lit) - 1 }
#ifdef __cplusplus
#define NWSGI_STR_LIT(lit) (nwsgi_str NWSGI_STR(lit))
#else
#define NWSGI_STR_LIT(lit) ((nwsgi_str)NWSGI_STR(lit))
#endif

/* One header field: name and value exactly as on the wire (value without
 * surrounding whitespace). */
typedef struct nwsgi_header {
    nwsgi_str name;
    nwsgi_str value;
} nwsgi_header;

/* PEP 3333's exc_info, reduced to what crosses a C boundary: a description
 * of the error that made the application change its mind. Passing a non-NULL
 * exc_info to start_response means "replace the pending status and headers";
 * if the headers were already sent, the host aborts the connection instead. */
typedef struct nwsgi_exc_info {
    nwsgi_str message; /* borrowed for the duration of the call; logged */
} nwsgi_exc_info;

/* Log levels for api->log (the environ's error stream, wsgi.errors). A
 * level below NWSGI_LOG_ERROR is logged as ERROR, one above
 * NWSGI_LOG_TRACE as TRACE. */
typedef enum nwsgi_log_level {
    NWSGI_LOG_ERROR = 1,
    NWSGI_LOG_WARN = 2,
    NWSGI_LOG_INFO = 3,
    NWSGI_LOG_DEBUG = 4,
    NWSGI_LOG_TRACE = 5,
} nwsgi_log_level;

/* Opaque handle for one request, owned by the host. Valid from the moment
 * `call` is entered until body.close returns (or, when the app returned an
 * error or produced no body iterator, until `call` returns). */
typedef struct nwsgi_request nwsgi_request;

struct nwsgi_environ;

/* 1.2. A response head for api->start_response_static: what start_response
 * takes, as one object the application keeps. The head, its header array and
 * every byte they point to must stay valid and unchanged for as long as the
 * library stays loaded: declare it `static const`. The host may remember
 * what it derived from a head (the validation result, the encoded bytes) by
 * the head's address, so a head changed in place may go out as it was. */
typedef struct nwsgi_response_head {
    nwsgi_str status;             /* "200 OK" */
    const nwsgi_header *headers;  /* may be NULL when n_headers is 0 */
    size_t n_headers;
} nwsgi_response_head;

/* ------------------------------------------------------------------------ */
/* Host API: functions the host provides to the application                  */
/* ------------------------------------------------------------------------ */

/* Callback for api->environ_each. `key` and `value` are borrowed for the
 * duration of this callback only. Return 0 to continue, non-zero to stop. */
typedef int32_t (*nwsgi_environ_each_fn)(void *user, nwsgi_str key, nwsgi_str value);

/* A static table owned by the host: valid for as long as the library stays
 * loaded. Every function pointer is REQUIRED (never NULL) unless marked
 * otherwise. Functions taking `nwsgi_request *` may be called only from the
 * thread currently running `call`/`next`/`close` for that request. */
typedef struct nwsgi_host_api {
    /* sizeof(nwsgi_host_api) as the host built it. */
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;

    /* PEP 3333 start_response. `status` is "NNN Reason", a final status
     * (200-599: interim 1xx responses are the host's business, and RFC 9110
     * makes 600-999 invalid); `headers` is an
     * array of `n_headers` fields. Everything is copied before it returns:
     * the arguments are borrowed for the duration of the call only.
     * Headers are not sent yet: they go out with the first non-empty body
     * chunk or write(), or when the response ends.
     * exc_info on the first call is accepted (there is nothing to replace)
     * and its message logged.
     * Returns NWSGI_OK; NWSGI_E_STATE if called again without exc_info;
     * NWSGI_E_HEADERS_SENT if exc_info is given after the headers went out
     * (the connection is then aborted); NWSGI_E_INVALID for a malformed
     * status or header, or an exc_info whose message is NULL with a length
     * (the response becomes a 500, logged, never sent; later
     * start_response/write calls for this request return NWSGI_E_INVALID
     * too).
     * Content-Length given by the app is honoured; otherwise the host picks
     * Content-Length (whole body known) or chunked encoding. Hop-by-hop
     * headers (Connection, Transfer-Encoding, ...) are refused as invalid. */
    int32_t (*start_response)(nwsgi_request *req, nwsgi_str status,
                              const nwsgi_header *headers, size_t n_headers,
                              const nwsgi_exc_info *exc_info);

    /* PEP 3333 write(): push-style output, handed to the client before it
     * returns. Valid only after start_response. `data` is borrowed for the
     * call (copied or sent before it returns); `len` 0 does nothing. What the
     * client does not take at once is queued by the host; past a high-water
     * mark (per connection, and for the worker as a whole) the call waits
     * until the client has caught up, holding this thread (never other
     * connections). That wait is the client's time, not the application's
     * (it does not count toward the host's timeout), and a client too slow to
     * keep up is cut off: the call then returns NWSGI_E_DISCONNECTED. A body
     * iterator never makes a thread wait for a client (see nwsgi_body).
     * More bytes than the application's own Content-Length allows are its
     * error: what fits is sent, the rest dropped, the connection closed
     * after it, and the call returns NWSGI_E_INVALID.
     * Returns NWSGI_OK, NWSGI_E_STATE, NWSGI_E_INVALID, or
     * NWSGI_E_DISCONNECTED. */
    int32_t (*write)(nwsgi_request *req, const uint8_t *data, size_t len);

    /* wsgi.input: read up to `cap` (> 0) bytes of the request body into `buf`
     * (`cap` 0 returns 0 and reads nothing).
     * Returns the number of bytes read (> 0), 0 at the end of the body, or a
     * negative nwsgi_status. The body is de-chunked and ends exactly at its
     * end; reading never consumes the next request.
     * By default the host reads the whole body before it calls the
     * application (from memory, or a temporary file for a large one), so read
     * never waits for the client, and a malformed body, one over the size
     * limit, or a client too slow to send it is answered by the host
     * (400/413/408) without calling the application at all. If the client
     * sent `Expect: 100-continue`, the host answers `100 Continue` when it
     * starts reading the body.
     * When the host streams bodies instead (`--no-request-buffering`), read
     * waits for the client (the client's time, not the application's), and
     * the first read sends `100 Continue` if the client asked for it. After
     * NWSGI_E_BAD_BODY (malformed chunked framing, body over the size limit,
     * client too slow) the host answers the matching 4xx itself (400/413/408)
     * if the app then fails before sending anything, and closes the
     * connection. A body the application does not read to its end is read
     * and dropped by the host after the response (it closes the connection
     * instead when that is not worth it, and the response then says
     * `Connection: close`). */
    int64_t (*read)(nwsgi_request *req, uint8_t *buf, size_t cap);

    /* wsgi.errors: a log line into the host's logs at `level`.
     * `req` may be NULL (e.g. from init, or a thread of the application's
     * own); given, the line names that request (its request line and its
     * request id, REQUEST_ID below, shared by every line about it). A NULL
     * `req` on the thread the host called the application on, while it
     * serves a request, still names that request's id. `target` names the source
     * (may be empty); both strings are borrowed for the call. The host
     * writes control bytes and invalid UTF-8 as escapes, so a message is
     * always one line of the log. Thread-safe. */
    void (*log)(nwsgi_request *req, int32_t level, nwsgi_str target, nwsgi_str message);

    /* Look up one environ variable by its CGI/WSGI name: the fixed names
     * (REQUEST_METHOD, PATH_INFO, ...) and HTTP_<NAME> for each request header
     * (upper-cased, '-' as '_'; repeated headers joined with ", ").
     * A 1.3 host also has RAW_PATH_INFO (the environ's raw_path_info).
     * REQUEST_ID is the request's id (host extension): the X-Request-Id a
     * trusted proxy sent (a peer in --forwarded-allow-ips; 1 to 200 bytes
     * of visible ASCII), else one the host made, unique across workers and
     * restarts; HTTP_X_REQUEST_ID reads the same id, whatever the client
     * sent (the raw header list keeps the header as received). The host's
     * log lines and access log name the request by it.
     * Returns 1 and sets *value (borrowed until the request ends) or 0 if
     * absent (also for a key that is NULL with a length, which is logged). */
    int32_t (*environ_get)(const struct nwsgi_environ *env, nwsgi_str key, nwsgi_str *value);

    /* Enumerate every environ variable (fixed names, REQUEST_ID and
     * HTTP_X_REQUEST_ID, then one HTTP_* per distinct header name) through
     * `fn`. Returns NWSGI_OK, the first
     * non-zero value `fn` returned, or NWSGI_E_INVALID for a NULL `fn`. */
    int32_t (*environ_each)(const struct nwsgi_environ *env, nwsgi_environ_each_fn fn, void *user);

    /* -- 1.2: present when NWSGI_API_HAS(api, <name>) -- */

    /* start_response with a head declared once (see nwsgi_response_head):
     * the same rules, arguments and return codes as
     *   start_response(req, head->status, head->headers, head->n_headers, exc_info)
     * but a head the host has seen before on this thread costs it one
     * pointer comparison instead of a validation. Only a head that lies in
     * the library's own static storage is remembered by its address; one
     * on the stack or the heap is read and checked on every call (correct,
     * just not faster). An invalid head is refused with NWSGI_E_INVALID
     * every time it is used, as start_response would. */
    int32_t (*start_response_static)(nwsgi_request *req, const nwsgi_response_head *head,
                                     const nwsgi_exc_info *exc_info);

    /* The rest of the body, whole: as if the body iterator's `next` had
     * returned these bytes with NWSGI_BODY_LAST. Valid only after
     * start_response. `data` is borrowed for the call (copied or sent before
     * it returns); `len` may be 0. If nothing of the body was sent yet, the
     * host frames the response with Content-Length; it may hold the bytes
     * briefly to batch them with the responses of pipelined requests.
     * After it the body is complete: later write/write_last calls return
     * NWSGI_E_STATE and the host never calls the body iterator's `next`
     * (it still calls `close`, if set). Return codes as for write:
     * NWSGI_OK, NWSGI_E_STATE (no start_response yet: then the call had no
     * effect; or the body is already complete), NWSGI_E_INVALID (the head was invalid: the answer
     * is a 500), or NWSGI_E_DISCONNECTED.
     * The smallest whole response is thus
     *   api->start_response_static(req, &HEAD, NULL);
     *   return api->write_last(req, bytes, len);   with *body left zeroed. */
    int32_t (*write_last)(nwsgi_request *req, const uint8_t *data, size_t len);

    /* -- fields added in later minor versions go here, at the end -- */
} nwsgi_host_api;

/* Does this host's table have `field` (one added in a later minor version)?
 * E.g. NWSGI_API_HAS(env->api, write_last). A plugin that calls a 1.2
 * function without this check fails on a 1.0 or 1.1 host. */
#define NWSGI_API_HAS(api, field) \
    ((api)->struct_size >= offsetof(nwsgi_host_api, field) + sizeof((api)->field))

/* ------------------------------------------------------------------------ */
/* The environ                                                               */
/* ------------------------------------------------------------------------ */

/* What the host parsed, as CGI/WSGI names it. Owned by the host; every
 * nwsgi_str inside is borrowed until the request ends (body.close returns or,
 * without a body iterator, `call` returns) and mostly points straight into the
 * host's receive buffer. Copy what you keep. */
typedef struct nwsgi_environ {
    /* sizeof(nwsgi_environ) as the host built it. */
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;

    nwsgi_str request_method;  /* "GET" */
    nwsgi_str script_name;     /* "" when mounted at the root */
    nwsgi_str path_info;       /* percent-decoded path, e.g. "/a b" */
    nwsgi_str query_string;    /* raw, without '?'; "" if none */
    nwsgi_str content_type;    /* "" if absent */
    nwsgi_str content_length;  /* "" if absent (also for chunked bodies) */
    nwsgi_str server_name;     /* from Host (without port), else bind address */
    nwsgi_str server_port;     /* "8000" */
    nwsgi_str server_protocol; /* "HTTP/1.1" or "HTTP/1.0" */
    nwsgi_str remote_addr;     /* "127.0.0.1": the client; behind a proxy
                                  the host trusts, the one it names */
    nwsgi_str remote_port;     /* "53211"; "" when a trusted proxy named the
                                  client without a port (environ_get then
                                  reports REMOTE_PORT absent) */
    nwsgi_str url_scheme;      /* wsgi.url_scheme: "http", or "https" when a
                                  trusted proxy says the client used TLS */
    nwsgi_str request_uri;     /* raw request-target as received */

    /* The raw header list, in order, repeated names kept apart. */
    const nwsgi_header *headers;
    size_t n_headers;

    /* wsgi.multithread / wsgi.multiprocess / wsgi.run_once (0 or 1). */
    uint8_t multithread;
    uint8_t multiprocess;
    uint8_t run_once;
    /* 1 when a request body follows (Content-Length > 0 or chunked). */
    uint8_t has_body;

    /* The host's function table (same pointer as given to init). */
    const nwsgi_host_api *api;

    /* -- 1.3: present when NWSGI_ENVIRON_HAS(env, <name>) -- */

    /* PATH_INFO before percent-decoding: the request-target's path as the
     * client sent it, without the SCRIPT_NAME part and without the query
     * ("/a%20b" where path_info is "/a b"; "/files/a%2Fb" where path_info
     * cannot tell that %2F from a '/'). For an absolute-form target
     * ("http://host/p?q") the path part ("/p"); for "OPTIONS *", "*".
     * environ_get names it RAW_PATH_INFO. */
    nwsgi_str raw_path_info;

    /* -- fields added in later minor versions go here, at the end -- */
} nwsgi_environ;

/* Does this host's environ have `field` (one added in a later minor
 * version)? E.g. NWSGI_ENVIRON_HAS(env, raw_path_info). */
#define NWSGI_ENVIRON_HAS(env, field) \
    ((env)->struct_size >= offsetof(nwsgi_environ, field) + sizeof((env)->field))

/* ------------------------------------------------------------------------ */
/* The response body iterator (returned by the app)                          */
/* ------------------------------------------------------------------------ */

/* The PEP 3333 iterable. Filled in by `call`; owned by the application.
 *
 * next:  OPTIONAL; NULL means "no (more) data": everything was sent with
 *        write(). Produces the next chunk into *chunk and returns
 *          NWSGI_BODY_MORE (1): a chunk (possibly empty); more may follow. The
 *                   host hands it to the client before calling next again,
 *                   so a slow producer never holds back what it already
 *                   produced. If the client is slow to read it, the host
 *                   puts the request aside without holding a thread (other
 *                   requests may run on that thread meanwhile) and calls next
 *                   again, on the same thread, once the client has read; a
 *                   client that stops reading is cut off, and close is
 *                   called;
 *          NWSGI_BODY_LAST (2): the final chunk (possibly empty). The host may
 *                   hold it briefly to batch it with the following responses
 *                   of pipelined requests, and, if no header or byte was sent
 *                   yet, frames the response with Content-Length;
 *          NWSGI_BODY_END (0): no chunk, the body has ended;
 *          a negative nwsgi_status on error: the host answers 500 if nothing
 *                   was sent yet, else aborts the connection.
 *        The chunk's bytes are borrowed until the next call to next or close.
 *        After LAST, END or an error, next is not called again.
 *        For a HEAD request (and 204/304 responses) the host iterates as
 *        usual but sends no body bytes; the framing headers stay as a GET
 *        would have them (Content-Length when known).
 *        The request handle stays valid until close returns; with close NULL,
 *        until the iteration ends (or, with next NULL too, until call returns).
 * close: OPTIONAL. If non-NULL, called exactly once after `call` returned
 *        NWSGI_OK: after the last chunk, on error, or when the client
 *        disconnected. After close, `state` is never used again.
 * state: the application's own pointer, passed back to next and close. */
#define NWSGI_BODY_END 0
#define NWSGI_BODY_MORE 1
#define NWSGI_BODY_LAST 2

typedef struct nwsgi_body {
    void *state;
    int32_t (*next)(void *state, nwsgi_request *req, nwsgi_str *chunk);
    void (*close)(void *state, nwsgi_request *req);
} nwsgi_body;

/* ------------------------------------------------------------------------ */
/* The application descriptor (exported by the plugin)                       */
/* ------------------------------------------------------------------------ */

/* Configuration handed to init: `--app-arg key=value` pairs in order. The
 * array and its strings are borrowed for the duration of init. */
typedef struct nwsgi_init_args {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    const nwsgi_host_api *api; /* static: valid while the library is loaded */
    const nwsgi_header *config; /* name = key, value = value */
    size_t n_config;
    /* Where init may describe why it failed (copied by the host). */
    void (*fail)(void *fail_ctx, nwsgi_str message);
    void *fail_ctx;
} nwsgi_init_args;

/* OPTIONAL. Runs once per worker process before any request, on the main
 * thread. On success returns NWSGI_OK and may set *app_state (passed to every
 * call and to shutdown; the application owns it). On failure returns a
 * negative value after calling args->fail with a reason; the host then
 * refuses to serve this build. */
typedef int32_t (*nwsgi_init_fn)(const nwsgi_init_args *args, void **app_state);

/* REQUIRED. The per-request call: PEP 3333's app(environ, start_response).
 * `env` and `req` are borrowed as described above. Must either fill *body
 * (which starts zeroed: leaving it so means "no iterator") and return
 * NWSGI_OK, or return a negative status (then *body is ignored and close is
 * not called; the host answers 500 if nothing was sent yet). A positive
 * return is an error too: logged, and handled as a negative one.
 * call, next and close of one request run on the same thread, though other
 * requests may run on that thread between two calls of next (while the host
 * waits for a slow client). Calls for different requests run concurrently
 * on several threads only if the descriptor has NWSGI_APP_THREAD_SAFE;
 * otherwise the host serialises every call, next and close. The `api` in the
 * environ is the same static table init received (also when the app has no
 * init).
 * A host may bound how long application code runs for one request without
 * producing a chunk (the server's timeout; waiting for the client does not
 * count). Past it the host answers that request's client itself (503, or it
 * closes the connection if the response had begun) and gives up on the
 * thread, which stays inside the application; the worker process then
 * retires: its other requests finish, shutdown is not run, and the process
 * exits without waiting for that thread. */
typedef int32_t (*nwsgi_call_fn)(void *app_state, const nwsgi_environ *env,
                                 nwsgi_request *req, nwsgi_body *body);

/* OPTIONAL. Runs once when the worker retires, after the last request. */
typedef void (*nwsgi_shutdown_fn)(void *app_state);

/* Flags. A host refuses to load a descriptor with a flag bit it does not
 * know (naming the bits), rather than serve it without what it asked for. */
#define NWSGI_APP_THREAD_SAFE 0x1u /* call/next/close may run on several threads at once */

/* The exported descriptor. The host checks magic, major version and
 * struct_size before calling anything in it. Read-only, static storage. */
typedef struct nwsgi_app {
    uint32_t magic;       /* NWSGI_MAGIC */
    uint16_t abi_major;   /* NWSGI_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;   /* NWSGI_ABI_MINOR the plugin was built with */
    uint32_t struct_size; /* sizeof(nwsgi_app) as the plugin built it */
    uint32_t flags;       /* NWSGI_APP_* */
    nwsgi_init_fn init;          /* optional */
    nwsgi_call_fn call;          /* required */
    nwsgi_shutdown_fn shutdown;  /* optional */
    /* -- 1.1 -- */
    const char *name; /* optional NUL-terminated display name, static (shown
                         escaped: control bytes never reach a log raw) */
    /* -- fields added in later minor versions go here, at the end -- */
} nwsgi_app;

/* Fill a descriptor for the ABI this header describes. */
#define NWSGI_APP_INIT_NAMED(flags_, init_, call_, shutdown_, name_)             \
    { NWSGI_MAGIC, NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR, (uint32_t)sizeof(nwsgi_app), \
      (flags_), (init_), (call_), (shutdown_), (name_) }
#define NWSGI_APP_INIT(flags_, init_, call_, shutdown_) \
    NWSGI_APP_INIT_NAMED(flags_, init_, call_, shutdown_, NULL)

#ifdef __cplusplus
}
#endif

#endif /* NWSGI_H */
