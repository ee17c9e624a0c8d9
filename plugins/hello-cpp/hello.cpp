/*
 * hello-cpp — an NWSGI application in C++, written against the C header
 * alone: the header's macros work unchanged from C++ (NWSGI_EXPORT also
 * makes the descriptor extern "C"), and no C++ exception ever reaches the
 * host, which is C at the boundary and cannot unwind through it.
 *
 * Build (from the repository root; C++17 for std::string_view, the header
 * itself needs C++11):
 *   c++ -std=c++17 -Wall -Wextra -Werror -pedantic -fvisibility=hidden \
 *       -shared -fPIC -O2 -o libhello_cpp.so plugins/hello-cpp/hello.cpp -Iabi/include
 * Run:
 *   host serve ./libhello_cpp.so
 *
 * Routes (PATH_INFO; any method):
 *   /count?n=N     "1\n" .. "N\n", one chunk each, from a body iterator whose
 *                  state is a C++ object (Counter); N from 0 to 1000. A
 *                  missing or bad N -> 400 "n must be a number from 0 to
 *                  1000" (the parser's exception, caught where it is
 *                  expected). With &throw_at=K the iterator throws on line K:
 *                  the guard logs it and the host gets NWSGI_ERROR, and as
 *                  the body has begun it cuts the connection.
 *   /throw         `call` throws std::runtime_error("/throw threw"): the
 *                  guard logs it and returns NWSGI_ERROR; the host answers 500.
 *   anything else  200, Content-Type: text/plain, "Hello, World!": on an
 *                  ABI 1.2 host a head declared once, given to
 *                  start_response_static, and the body in one write_last;
 *                  on an older host the same through the 1.0 calls.
 *
 * Every function the host calls runs its body through `guarded`, which
 * turns an exception into a log line and NWSGI_ERROR. Thread-safe: no
 * mutable state outside a request's own Counter.
 */
#include "nwsgi.h"

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

constexpr unsigned long MAX_LINES = 1000;

const nwsgi_header TEXT_HEADERS[] = {
    {NWSGI_STR("Content-Type"), NWSGI_STR("text/plain")},
};

/* Declared once, for as long as the library is loaded: the host knows a head
 * by its address (start_response_static). */
const nwsgi_response_head OK_HEAD = {NWSGI_STR("200 OK"), TEXT_HEADERS, 1};
const nwsgi_response_head BAD_REQUEST_HEAD = {NWSGI_STR("400 Bad Request"), TEXT_HEADERS, 1};

std::string_view view(nwsgi_str s) {
    return {reinterpret_cast<const char *>(s.ptr), s.len};
}

/* Borrows `s`: valid while the string it views is. */
nwsgi_str str(std::string_view s) {
    return {reinterpret_cast<const uint8_t *>(s.data()), s.size()};
}

void log_error(const nwsgi_host_api *api, nwsgi_request *req, const char *message) noexcept {
    api->log(req, NWSGI_LOG_ERROR, NWSGI_STR_LIT("hello-cpp"), str(message));
}

/* Runs `work`, the body of a function the host calls: an exception it throws
 * is logged and becomes NWSGI_ERROR, so none crosses into the host. */
template <typename Work>
int32_t guarded(const nwsgi_host_api *api, nwsgi_request *req, Work &&work) noexcept {
    try {
        return work();
    } catch (const std::exception &e) {
        log_error(api, req, e.what());
    } catch (...) {
        log_error(api, req, "an exception that is not a std::exception");
    }
    return NWSGI_ERROR;
}

/* The value of `name` in a query string ("n=3&throw_at=2"), raw; "" if absent. */
std::string_view query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        std::size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (pair.size() > name.size() && pair.compare(0, name.size(), name) == 0 &&
            pair[name.size()] == '=') {
            return pair.substr(name.size() + 1);
        }
    }
    return {};
}

/* A decimal number from 0 to MAX_LINES. Throws std::invalid_argument for
 * anything but digits, std::out_of_range for a larger number. */
unsigned long line_count(std::string_view text) {
    if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos) {
        throw std::invalid_argument("not a decimal number");
    }
    unsigned long n = std::stoul(std::string(text)); /* out_of_range past ULONG_MAX */
    if (n > MAX_LINES) {
        throw std::out_of_range("more lines than MAX_LINES");
    }
    return n;
}

/* The body iterator's state: lines "1\n" .. "n\n", one per `next`. Created by
 * `call`, owned by the request until `close` deletes it. */
class Counter {
  public:
    Counter(const nwsgi_host_api *api, unsigned long n, unsigned long throw_at)
        : api_(api), n_(n), throw_at_(throw_at) {}

    const nwsgi_host_api *api() const { return api_; }

    /* The next line into *chunk, borrowed until the next call (it points
     * into line_): NWSGI_BODY_MORE, or NWSGI_BODY_END after the last. */
    int32_t next(nwsgi_str *chunk) {
        if (i_ == n_) {
            return NWSGI_BODY_END;
        }
        ++i_;
        if (i_ == throw_at_) {
            throw std::runtime_error("counter threw at line " + std::to_string(i_));
        }
        line_ = std::to_string(i_) + "\n";
        *chunk = str(line_);
        return NWSGI_BODY_MORE;
    }

  private:
    const nwsgi_host_api *api_; /* static: lives as long as the library */
    unsigned long n_;
    unsigned long throw_at_; /* 0: never */
    unsigned long i_ = 0;    /* lines produced so far */
    std::string line_;
};

int32_t counter_next(void *state, nwsgi_request *req, nwsgi_str *chunk) noexcept {
    Counter *counter = static_cast<Counter *>(state);
    return guarded(counter->api(), req, [&] { return counter->next(chunk); });
}

void counter_close(void *state, nwsgi_request *) noexcept {
    delete static_cast<Counter *>(state);
}

/* The whole response at once: on a 1.2 host (NWSGI_API_HAS) the head
 * declared once and the body in one write_last call; on an older host
 * start_response with the head's parts, then write. */
int32_t respond(const nwsgi_host_api *api, nwsgi_request *req, const nwsgi_response_head &head,
                std::string_view text) {
    const uint8_t *bytes = reinterpret_cast<const uint8_t *>(text.data());
    if (NWSGI_API_HAS(api, write_last)) {
        int32_t rc = api->start_response_static(req, &head, nullptr);
        if (rc != NWSGI_OK) {
            return rc;
        }
        return api->write_last(req, bytes, text.size());
    }
    int32_t rc = api->start_response(req, head.status, head.headers, head.n_headers, nullptr);
    if (rc != NWSGI_OK) {
        return rc;
    }
    return api->write(req, bytes, text.size());
}

int32_t count(const nwsgi_environ *env, nwsgi_request *req, nwsgi_body *body) {
    const nwsgi_host_api *api = env->api;
    std::string_view query = view(env->query_string);
    unsigned long n = 0;
    unsigned long throw_at = 0;
    try {
        n = line_count(query_param(query, "n"));
        std::string_view at = query_param(query, "throw_at");
        throw_at = at.empty() ? 0 : line_count(at);
    } catch (const std::logic_error &) { /* invalid_argument, out_of_range */
        return respond(api, req, BAD_REQUEST_HEAD, "n must be a number from 0 to 1000\n");
    }
    /* Freed here if anything below fails, by close once the host has it. */
    std::unique_ptr<Counter> counter(new Counter(api, n, throw_at));
    int32_t rc = api->start_response(req, NWSGI_STR_LIT("200 OK"), TEXT_HEADERS, 1, nullptr);
    if (rc != NWSGI_OK) {
        return rc;
    }
    body->state = counter.release();
    body->next = counter_next;
    body->close = counter_close;
    return NWSGI_OK;
}

int32_t hello_call(void *, const nwsgi_environ *env, nwsgi_request *req,
                   nwsgi_body *body) noexcept {
    return guarded(env->api, req, [&]() -> int32_t {
        std::string_view path = view(env->path_info);
        if (path == "/throw") {
            throw std::runtime_error("/throw threw");
        }
        if (path == "/count") {
            return count(env, req, body);
        }
        return respond(env->api, req, OK_HEAD, "Hello, World!");
    });
}

} // namespace

NWSGI_EXPORT const nwsgi_app app =
    NWSGI_APP_INIT_NAMED(NWSGI_APP_THREAD_SAFE, nullptr, hello_call, nullptr, "hello-cpp");
