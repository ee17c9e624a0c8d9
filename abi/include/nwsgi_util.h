/*
 * nwsgi_util.h — header-only helpers for C and C++ NWSGI applications.
 *
 * Everything here is `static inline`, uses nothing but nwsgi.h and the host
 * API it describes, allocates nothing, keeps no global state and is safe to
 * call from any thread at once. It compiles as C11 or later and C++11 or
 * later with -Wall -Wextra -Werror -pedantic (and, in C++,
 * -Wold-style-cast). Include it instead of nwsgi.h:
 *
 *   #include "nwsgi_util.h"
 *   static int32_t call(void *state, const nwsgi_environ *env,
 *                       nwsgi_request *req, nwsgi_body *body) {
 *       uint8_t buf[256];
 *       nwsgi_str name;
 *       (void)state; (void)body;
 *       if (nwsgi_query_get(env->query_string, "name", buf, sizeof buf, &name) != 1)
 *           name = nwsgi_str_from_c("world");
 *       return nwsgi_respond(env, req, 200, "text/plain", name.ptr, name.len);
 *   }
 *   NWSGI_EXPORT const nwsgi_app app =
 *       NWSGI_APP_INIT_NAMED(NWSGI_APP_THREAD_SAFE, NULL, call, NULL, "greeter");
 *
 * What is here
 *  - Strings: nwsgi_str_from / nwsgi_str_from_c (an nwsgi_str from C
 *    bytes), nwsgi_str_eq / nwsgi_str_ieq (exact / ASCII case-insensitive
 *    comparison with a C string).
 *  - Request headers, by name, case-insensitively: nwsgi_header_get (the
 *    first one as received), nwsgi_header_next (each one, repeated headers
 *    apart), nwsgi_header_joined (the host's HTTP_* variable: repeated
 *    headers joined with ", ").
 *  - Paths: nwsgi_raw_path_info (PATH_INFO not percent-decoded, also from
 *    a host older than 1.3).
 *  - Query strings (application/x-www-form-urlencoded): nwsgi_query_iter
 *    with nwsgi_query_init / nwsgi_query_next (every key and value, decoded
 *    into a buffer the caller gives), nwsgi_query_get (one key's value),
 *    nwsgi_percent_decode (one string).
 *  - Status lines: nwsgi_status_line(404) is "404 Not Found";
 *    nwsgi_reason(404) is "Not Found".
 *  - Responses: nwsgi_start_response_simple (a status code and a
 *    Content-Type) and nwsgi_respond (that and the whole body, in one call).
 *
 * Threads, lifetimes and state: see the section of that name at the top of
 * nwsgi.h. Every helper here is as thread-safe as the arguments it is given:
 * the ones taking an environ or a request obey the request's rules.
 */
#ifndef NWSGI_UTIL_H
#define NWSGI_UTIL_H

#include "nwsgi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Casts and NULL spelled so C++'s -Wold-style-cast and
 * -Wzero-as-null-pointer-constant stay quiet. */
#ifdef __cplusplus
#define NWSGI_UTIL_BYTES_(p) reinterpret_cast<const uint8_t *>(p)
#define NWSGI_UTIL_CHARS_(p) reinterpret_cast<const char *>(p)
#define NWSGI_UTIL_U8_(x) static_cast<uint8_t>(x)
#define NWSGI_UTIL_SIZE_(x) static_cast<size_t>(x)
#define NWSGI_UTIL_NULL_ nullptr
#else
#define NWSGI_UTIL_BYTES_(p) ((const uint8_t *)(p))
#define NWSGI_UTIL_CHARS_(p) ((const char *)(p))
#define NWSGI_UTIL_U8_(x) ((uint8_t)(x))
#define NWSGI_UTIL_SIZE_(x) ((size_t)(x))
#define NWSGI_UTIL_NULL_ NULL
#endif

/* ------------------------------------------------------------------------ */
/* Strings                                                                   */
/* ------------------------------------------------------------------------ */

/* `len` bytes at `ptr` (borrowed: lives as long as they do). */
static inline nwsgi_str nwsgi_str_from(const void *ptr, size_t len) {
    nwsgi_str s;
    s.ptr = len ? NWSGI_UTIL_BYTES_(ptr) : NWSGI_UTIL_BYTES_(ptr ? ptr : "");
    s.len = len;
    return s;
}

/* A NUL-terminated C string, without its NUL; NULL gives the empty string. */
static inline nwsgi_str nwsgi_str_from_c(const char *cstr) {
    size_t len = 0;
    if (!cstr) {
        return nwsgi_str_from("", 0);
    }
    while (cstr[len]) {
        len++;
    }
    return nwsgi_str_from(cstr, len);
}

static inline uint8_t nwsgi_ascii_lower_(uint8_t c) {
    return (c >= 'A' && c <= 'Z') ? NWSGI_UTIL_U8_(c + ('a' - 'A')) : c;
}

/* 1 if `s` is exactly the bytes of `cstr`, else 0. */
static inline int nwsgi_str_eq(nwsgi_str s, const char *cstr) {
    const uint8_t *c = NWSGI_UTIL_BYTES_(cstr);
    size_t i;
    for (i = 0; i < s.len; i++) {
        if (c[i] == 0 || c[i] != s.ptr[i]) {
            return 0;
        }
    }
    return c[s.len] == 0;
}

/* 1 if `s` equals `cstr` ignoring ASCII case (A-Z = a-z; other bytes must
 * match exactly), else 0. */
static inline int nwsgi_str_ieq(nwsgi_str s, const char *cstr) {
    const uint8_t *c = NWSGI_UTIL_BYTES_(cstr);
    size_t i;
    for (i = 0; i < s.len; i++) {
        if (c[i] == 0 || nwsgi_ascii_lower_(c[i]) != nwsgi_ascii_lower_(s.ptr[i])) {
            return 0;
        }
    }
    return c[s.len] == 0;
}

/* ------------------------------------------------------------------------ */
/* Request headers                                                           */
/* ------------------------------------------------------------------------ */

/* The next request header named `name` (ASCII case-insensitive) at or after
 * position *cursor of env->headers, in the order received: returns 1, sets
 * *value and moves *cursor past it; returns 0 when there is no more. Start
 * with *cursor = 0 to visit every header of that name, repeated ones apart:
 *   size_t at = 0; nwsgi_str v;
 *   while (nwsgi_header_next(env, "accept", &at, &v)) { ... }
 * The value is borrowed until the request ends. */
static inline int nwsgi_header_next(const nwsgi_environ *env, const char *name,
                                    size_t *cursor, nwsgi_str *value) {
    size_t i;
    for (i = *cursor; i < env->n_headers; i++) {
        if (nwsgi_str_ieq(env->headers[i].name, name)) {
            *value = env->headers[i].value;
            *cursor = i + 1;
            return 1;
        }
    }
    *cursor = env->n_headers;
    return 0;
}

/* The first request header named `name` (ASCII case-insensitive), as
 * received: 1 and *value set (borrowed until the request ends), or 0. */
static inline int nwsgi_header_get(const nwsgi_environ *env, const char *name,
                                   nwsgi_str *value) {
    size_t cursor = 0;
    return nwsgi_header_next(env, name, &cursor, value);
}

/* The longest header name nwsgi_header_joined looks up. */
#define NWSGI_UTIL_MAX_HEADER_NAME 250

/* The header `name` as the host's environ has it (api->environ_get of
 * HTTP_<NAME>, upper-cased, '-' as '_'; CONTENT_TYPE and CONTENT_LENGTH,
 * which CGI names without HTTP_, for Content-Type and Content-Length):
 * repeated headers joined with ", ", and the host's rules applied
 * (X-Request-Id is the request's id; with --header-map drop, names with '_'
 * are absent). Returns 1 and sets *value (borrowed until the request ends),
 * 0 if absent, -1 if `name` is longer than NWSGI_UTIL_MAX_HEADER_NAME (use
 * nwsgi_header_next for those). */
static inline int nwsgi_header_joined(const nwsgi_environ *env, const char *name,
                                      nwsgi_str *value) {
    uint8_t key[5 + NWSGI_UTIL_MAX_HEADER_NAME];
    size_t len = 5;
    size_t i;
    key[0] = 'H';
    key[1] = 'T';
    key[2] = 'T';
    key[3] = 'P';
    key[4] = '_';
    for (i = 0; name[i]; i++) {
        uint8_t c = NWSGI_UTIL_U8_(name[i]);
        if (i == NWSGI_UTIL_MAX_HEADER_NAME) {
            return -1;
        }
        if (c >= 'a' && c <= 'z') {
            c = NWSGI_UTIL_U8_(c - ('a' - 'A'));
        } else if (c == '-') {
            c = '_';
        }
        key[len++] = c;
    }
    /* CGI's two headers without the HTTP_ prefix: the host has no
     * HTTP_CONTENT_TYPE / HTTP_CONTENT_LENGTH. */
    {
        nwsgi_str upper = nwsgi_str_from(key + 5, len - 5);
        size_t skip = nwsgi_str_eq(upper, "CONTENT_TYPE") || nwsgi_str_eq(upper, "CONTENT_LENGTH")
                          ? 5
                          : 0;
        return env->api->environ_get(env, nwsgi_str_from(key + skip, len - skip), value) == 1;
    }
}

/* ------------------------------------------------------------------------ */
/* Paths                                                                     */
/* ------------------------------------------------------------------------ */

/* PATH_INFO as the client sent it, not percent-decoded (borrowed until the
 * request ends): "/files/a%2Fb" where env->path_info is "/files/a/b". The
 * environ's raw_path_info on a 1.3 host; on an older one (which mounts
 * apps only at the root) the path of env->request_uri, read as HTTP/1.1
 * does: origin-form up to '?', absolute-form's path after the authority
 * ("/" when empty), "*" for asterisk-form. */
static inline nwsgi_str nwsgi_raw_path_info(const nwsgi_environ *env) {
    const uint8_t *p;
    size_t len = 0;
    size_t i;
    if (NWSGI_ENVIRON_HAS(env, raw_path_info)) {
        return env->raw_path_info;
    }
    p = env->request_uri.ptr;
    while (len < env->request_uri.len && p[len] != '?' && p[len] != '#') {
        len++;
    }
    if (len == 0 || p[0] == '/' || (len == 1 && p[0] == '*')) {
        return nwsgi_str_from(p, len);
    }
    /* absolute-form: scheme "://" authority [path] */
    for (i = 0; i + 3 <= len; i++) {
        if (p[i] == ':' && p[i + 1] == '/' && p[i + 2] == '/') {
            size_t j = i + 3;
            while (j < len && p[j] != '/') {
                j++;
            }
            return j < len ? nwsgi_str_from(p + j, len - j) : nwsgi_str_from_c("/");
        }
    }
    return nwsgi_str_from(p, len);
}

/* ------------------------------------------------------------------------ */
/* Percent-decoding and query strings                                        */
/* ------------------------------------------------------------------------ */

static inline int nwsgi_hex_value_(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte that input[*i] decodes to (a %XX escape, '+' as a space when
 * `plus_as_space`, else the byte itself); advances *i past what it used.
 * A '%' not followed by two hex digits is kept as a plain '%'. */
static inline uint8_t nwsgi_decode_byte_(nwsgi_str in, size_t *i, int plus_as_space) {
    uint8_t c = in.ptr[*i];
    if (c == '%' && *i + 2 < in.len) {
        int hi = nwsgi_hex_value_(in.ptr[*i + 1]);
        int lo = hi < 0 ? -1 : nwsgi_hex_value_(in.ptr[*i + 2]);
        if (lo >= 0) {
            *i += 3;
            return NWSGI_UTIL_U8_(hi * 16 + lo);
        }
    }
    *i += 1;
    return (c == '+' && plus_as_space) ? NWSGI_UTIL_U8_(' ') : c;
}

/* Percent-decodes `in` into buf[0..cap): %XX (either case) becomes its
 * byte; a '%' without two hex digits after it stays as it is ("%zz", a
 * trailing "%" or "%4"); with `plus_as_space`, '+' becomes ' ' (form
 * encoding; %2B is a '+'). Decoded bytes are never longer than the input,
 * so a buffer of in.len bytes always suffices. Sets *out to the decoded
 * bytes (in buf) and returns 1, or, when they do not fit, to the part that
 * fits and returns 0. */
static inline int nwsgi_percent_decode(nwsgi_str in, int plus_as_space, uint8_t *buf,
                                       size_t cap, nwsgi_str *out) {
    size_t i = 0;
    size_t n = 0;
    while (i < in.len) {
        uint8_t c = nwsgi_decode_byte_(in, &i, plus_as_space);
        if (n == cap) {
            *out = nwsgi_str_from(buf, n);
            return 0;
        }
        buf[n++] = c;
    }
    *out = nwsgi_str_from(buf, n);
    return 1;
}

/* 1 if `raw` form-decodes to exactly the bytes of `cstr`, else 0. */
static inline int nwsgi_form_eq_(nwsgi_str raw, const char *cstr) {
    const uint8_t *c = NWSGI_UTIL_BYTES_(cstr);
    size_t i = 0;
    size_t n = 0;
    while (i < raw.len) {
        uint8_t b = nwsgi_decode_byte_(raw, &i, 1);
        if (c[n] == 0 || c[n] != b) {
            return 0;
        }
        n++;
    }
    return c[n] == 0;
}

/* What nwsgi_query_next returns. */
#define NWSGI_QUERY_END 0        /* no more pairs */
#define NWSGI_QUERY_PAIR 1       /* *key and *value are the next pair */
#define NWSGI_QUERY_TRUNCATED -1 /* the next pair did not fit the buffer */

/* Walks a query string (env->query_string, or a form body) pair by pair:
 * pairs are separated by '&' (empty ones, as in "a=1&&b=2", are skipped),
 * key from value by the first '=' ("a=b=c" is key "a", value "b=c"; "a" is
 * key "a", value ""; "=x" is key "", value "x"). Keys and values are
 * form-decoded (nwsgi_percent_decode with '+' as space) into the caller's
 * buffer. Fields are private except raw_key / raw_value: the current pair
 * undecoded, pointing into the query string. */
typedef struct nwsgi_query_iter {
    const uint8_t *at;
    const uint8_t *end;
    uint8_t *buf;
    size_t cap;
    nwsgi_str raw_key;
    nwsgi_str raw_value;
} nwsgi_query_iter;

static inline void nwsgi_query_init(nwsgi_query_iter *it, nwsgi_str query, uint8_t *buf,
                                    size_t cap) {
    it->at = query.ptr;
    it->end = query.ptr ? query.ptr + query.len : query.ptr;
    it->buf = buf;
    it->cap = cap;
    it->raw_key = nwsgi_str_from("", 0);
    it->raw_value = nwsgi_str_from("", 0);
}

/* The next pair: NWSGI_QUERY_PAIR with *key and *value decoded into the
 * buffer (valid until the next call, or until the buffer is reused), or
 * NWSGI_QUERY_END. A pair whose decoded key and value together do not fit
 * the buffer gives NWSGI_QUERY_TRUNCATED with *key and *value set to what
 * fits (it->raw_key / raw_value hold it whole, undecoded); the next call
 * goes on with the pair after it. A buffer as long as the query string
 * always suffices. The usual loop stops at such a pair:
 *   while (nwsgi_query_next(&it, &k, &v) == NWSGI_QUERY_PAIR) { ... }  */
static inline int nwsgi_query_next(nwsgi_query_iter *it, nwsgi_str *key, nwsgi_str *value) {
    const uint8_t *start;
    const uint8_t *eq;
    const uint8_t *stop;
    int fits;
    /* Skip empty pairs ("&&", a leading or trailing '&'). */
    while (it->at != it->end && *it->at == '&') {
        it->at++;
    }
    if (it->at == it->end) {
        return NWSGI_QUERY_END;
    }
    start = it->at;
    eq = NWSGI_UTIL_NULL_;
    stop = start;
    while (stop != it->end && *stop != '&') {
        if (*stop == '=' && !eq) {
            eq = stop;
        }
        stop++;
    }
    it->at = stop;
    if (eq) {
        it->raw_key = nwsgi_str_from(start, NWSGI_UTIL_SIZE_(eq - start));
        it->raw_value = nwsgi_str_from(eq + 1, NWSGI_UTIL_SIZE_(stop - (eq + 1)));
    } else {
        it->raw_key = nwsgi_str_from(start, NWSGI_UTIL_SIZE_(stop - start));
        it->raw_value = nwsgi_str_from("", 0);
    }
    fits = nwsgi_percent_decode(it->raw_key, 1, it->buf, it->cap, key);
    if (fits) {
        /* (A NULL buffer has cap 0: no pointer arithmetic on it.) */
        fits = nwsgi_percent_decode(it->raw_value, 1, it->buf ? it->buf + key->len : it->buf,
                                    it->cap - key->len, value);
    } else {
        *value = nwsgi_str_from("", 0);
    }
    return fits ? NWSGI_QUERY_PAIR : NWSGI_QUERY_TRUNCATED;
}

/* The value of the first pair in `query` whose decoded key is `name`,
 * decoded into buf[0..cap): 1 with *value set; 0 if no such key; -1 if its
 * value does not fit (then *value is the part that fits). */
static inline int nwsgi_query_get(nwsgi_str query, const char *name, uint8_t *buf,
                                  size_t cap, nwsgi_str *value) {
    nwsgi_query_iter it;
    nwsgi_str key;
    nwsgi_str val;
    /* Keys are compared raw-decoded on the fly, so only the value needs
     * room: walk with an empty buffer and decode the match afterwards. */
    nwsgi_query_init(&it, query, buf, 0);
    while (nwsgi_query_next(&it, &key, &val) != NWSGI_QUERY_END) {
        if (nwsgi_form_eq_(it.raw_key, name)) {
            return nwsgi_percent_decode(it.raw_value, 1, buf, cap, value) ? 1 : -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Status lines                                                              */
/* ------------------------------------------------------------------------ */

#define NWSGI_UTIL_LINE_(code, reason) \
    case code: return nwsgi_str_from(#code " " reason, sizeof(#code " " reason) - 1);

/* The status line of an IANA-registered code (permanent registrations; the
 * "(Unused)" 306 and 418 are not), or an empty string. */
static inline nwsgi_str nwsgi_registered_status_(int code) {
    switch (code) {
        NWSGI_UTIL_LINE_(100, "Continue")
        NWSGI_UTIL_LINE_(101, "Switching Protocols")
        NWSGI_UTIL_LINE_(102, "Processing")
        NWSGI_UTIL_LINE_(103, "Early Hints")
        NWSGI_UTIL_LINE_(200, "OK")
        NWSGI_UTIL_LINE_(201, "Created")
        NWSGI_UTIL_LINE_(202, "Accepted")
        NWSGI_UTIL_LINE_(203, "Non-Authoritative Information")
        NWSGI_UTIL_LINE_(204, "No Content")
        NWSGI_UTIL_LINE_(205, "Reset Content")
        NWSGI_UTIL_LINE_(206, "Partial Content")
        NWSGI_UTIL_LINE_(207, "Multi-Status")
        NWSGI_UTIL_LINE_(208, "Already Reported")
        NWSGI_UTIL_LINE_(226, "IM Used")
        NWSGI_UTIL_LINE_(300, "Multiple Choices")
        NWSGI_UTIL_LINE_(301, "Moved Permanently")
        NWSGI_UTIL_LINE_(302, "Found")
        NWSGI_UTIL_LINE_(303, "See Other")
        NWSGI_UTIL_LINE_(304, "Not Modified")
        NWSGI_UTIL_LINE_(305, "Use Proxy")
        NWSGI_UTIL_LINE_(307, "Temporary Redirect")
        NWSGI_UTIL_LINE_(308, "Permanent Redirect")
        NWSGI_UTIL_LINE_(400, "Bad Request")
        NWSGI_UTIL_LINE_(401, "Unauthorized")
        NWSGI_UTIL_LINE_(402, "Payment Required")
        NWSGI_UTIL_LINE_(403, "Forbidden")
        NWSGI_UTIL_LINE_(404, "Not Found")
        NWSGI_UTIL_LINE_(405, "Method Not Allowed")
        NWSGI_UTIL_LINE_(406, "Not Acceptable")
        NWSGI_UTIL_LINE_(407, "Proxy Authentication Required")
        NWSGI_UTIL_LINE_(408, "Request Timeout")
        NWSGI_UTIL_LINE_(409, "Conflict")
        NWSGI_UTIL_LINE_(410, "Gone")
        NWSGI_UTIL_LINE_(411, "Length Required")
        NWSGI_UTIL_LINE_(412, "Precondition Failed")
        NWSGI_UTIL_LINE_(413, "Content Too Large")
        NWSGI_UTIL_LINE_(414, "URI Too Long")
        NWSGI_UTIL_LINE_(415, "Unsupported Media Type")
        NWSGI_UTIL_LINE_(416, "Range Not Satisfiable")
        NWSGI_UTIL_LINE_(417, "Expectation Failed")
        NWSGI_UTIL_LINE_(421, "Misdirected Request")
        NWSGI_UTIL_LINE_(422, "Unprocessable Content")
        NWSGI_UTIL_LINE_(423, "Locked")
        NWSGI_UTIL_LINE_(424, "Failed Dependency")
        NWSGI_UTIL_LINE_(425, "Too Early")
        NWSGI_UTIL_LINE_(426, "Upgrade Required")
        NWSGI_UTIL_LINE_(428, "Precondition Required")
        NWSGI_UTIL_LINE_(429, "Too Many Requests")
        NWSGI_UTIL_LINE_(431, "Request Header Fields Too Large")
        NWSGI_UTIL_LINE_(451, "Unavailable For Legal Reasons")
        NWSGI_UTIL_LINE_(500, "Internal Server Error")
        NWSGI_UTIL_LINE_(501, "Not Implemented")
        NWSGI_UTIL_LINE_(502, "Bad Gateway")
        NWSGI_UTIL_LINE_(503, "Service Unavailable")
        NWSGI_UTIL_LINE_(504, "Gateway Timeout")
        NWSGI_UTIL_LINE_(505, "HTTP Version Not Supported")
        NWSGI_UTIL_LINE_(506, "Variant Also Negotiates")
        NWSGI_UTIL_LINE_(507, "Insufficient Storage")
        NWSGI_UTIL_LINE_(508, "Loop Detected")
        NWSGI_UTIL_LINE_(510, "Not Extended")
        NWSGI_UTIL_LINE_(511, "Network Authentication Required")
        default: return nwsgi_str_from("", 0);
    }
}

/* Every code from h00 to h99 with the class's reason, as static lines (the
 * digits are pasted and stringified by the preprocessor, so no buffer is
 * needed at run time). */
#define NWSGI_UTIL_CLASS1_(h, t, u, reason) \
    case h##t##u: return nwsgi_str_from(#h #t #u " " reason, sizeof(#h #t #u " " reason) - 1);
#define NWSGI_UTIL_CLASS10_(h, t, reason)                                         \
    NWSGI_UTIL_CLASS1_(h, t, 0, reason) NWSGI_UTIL_CLASS1_(h, t, 1, reason)       \
    NWSGI_UTIL_CLASS1_(h, t, 2, reason) NWSGI_UTIL_CLASS1_(h, t, 3, reason)       \
    NWSGI_UTIL_CLASS1_(h, t, 4, reason) NWSGI_UTIL_CLASS1_(h, t, 5, reason)       \
    NWSGI_UTIL_CLASS1_(h, t, 6, reason) NWSGI_UTIL_CLASS1_(h, t, 7, reason)       \
    NWSGI_UTIL_CLASS1_(h, t, 8, reason) NWSGI_UTIL_CLASS1_(h, t, 9, reason)
#define NWSGI_UTIL_CLASS100_(h, reason)                                           \
    NWSGI_UTIL_CLASS10_(h, 0, reason) NWSGI_UTIL_CLASS10_(h, 1, reason)           \
    NWSGI_UTIL_CLASS10_(h, 2, reason) NWSGI_UTIL_CLASS10_(h, 3, reason)           \
    NWSGI_UTIL_CLASS10_(h, 4, reason) NWSGI_UTIL_CLASS10_(h, 5, reason)           \
    NWSGI_UTIL_CLASS10_(h, 6, reason) NWSGI_UTIL_CLASS10_(h, 7, reason)           \
    NWSGI_UTIL_CLASS10_(h, 8, reason) NWSGI_UTIL_CLASS10_(h, 9, reason)

static inline nwsgi_str nwsgi_generic_status_(int code) {
    switch (code) {
        NWSGI_UTIL_CLASS100_(1, "Informational")
        NWSGI_UTIL_CLASS100_(2, "Success")
        NWSGI_UTIL_CLASS100_(3, "Redirection")
        NWSGI_UTIL_CLASS100_(4, "Client Error")
        NWSGI_UTIL_CLASS100_(5, "Server Error")
        default: return nwsgi_str_from("", 0);
    }
}

/* The status line for `code`, e.g. "404 Not Found", ready for
 * start_response: the registered reason for IANA-registered codes (RFC 9110
 * names: 413 "Content Too Large", 422 "Unprocessable Content"), else the
 * class's ("299 Success", "499 Client Error", "306 Redirection"). Static,
 * and NUL-terminated after its `len` bytes, so `(const char *)line.ptr` is a
 * C string too. A code outside 100-599 gives an empty string (ptr to "",
 * len 0), which start_response refuses as NWSGI_E_INVALID. */
static inline nwsgi_str nwsgi_status_line(int code) {
    nwsgi_str line = nwsgi_registered_status_(code);
    return line.len ? line : nwsgi_generic_status_(code);
}

/* The reason phrase alone ("Not Found"), a static C string; NULL for a
 * code outside 100-599. */
static inline const char *nwsgi_reason(int code) {
    nwsgi_str line = nwsgi_status_line(code);
    return line.len ? NWSGI_UTIL_CHARS_(line.ptr + 4) : NWSGI_UTIL_NULL_;
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                 */
/* ------------------------------------------------------------------------ */

/* start_response with nwsgi_status_line(code) and, unless `content_type` is
 * NULL, one Content-Type header. Returns what start_response returns
 * (NWSGI_E_INVALID for a code outside 200-599, as the host refuses it). */
static inline int32_t nwsgi_start_response_simple(const nwsgi_environ *env, nwsgi_request *req,
                                                  int code, const char *content_type) {
    nwsgi_header header;
    header.name = nwsgi_str_from("Content-Type", 12);
    header.value = nwsgi_str_from_c(content_type);
    return env->api->start_response(req, nwsgi_status_line(code), &header,
                                    content_type ? 1 : 0, NWSGI_UTIL_NULL_);
}

/* The whole response in one call: nwsgi_start_response_simple, then the
 * body (`len` bytes at `data`, copied before it returns) with write_last
 * when the host has it (ABI 1.2: framed with Content-Length) or write.
 * Leave *body zeroed and return what this returns from `call`. */
static inline int32_t nwsgi_respond(const nwsgi_environ *env, nwsgi_request *req, int code,
                                    const char *content_type, const void *data, size_t len) {
    const nwsgi_host_api *api = env->api;
    const uint8_t *bytes = NWSGI_UTIL_BYTES_(data);
    int32_t rc = nwsgi_start_response_simple(env, req, code, content_type);
    if (rc != NWSGI_OK) {
        return rc;
    }
    if (api->struct_size >= offsetof(nwsgi_host_api, write_last) + sizeof api->write_last) {
        return api->write_last(req, bytes, len);
    }
    return api->write(req, bytes, len);
}

#ifdef __cplusplus
}
#endif

#endif /* NWSGI_UTIL_H */
