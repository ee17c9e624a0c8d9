/*
 * helpers-cpp — a C++ plugin written with nwsgi_util.h: state as a C++
 * object built in init, request data read with the helpers, the answer
 * built in a std::string, and no exception ever crossing into the host.
 * Served by the real host in tests/plugins_cpp.rs.
 *
 * Build (from the repository root):
 *   c++ -std=c++17 -Wall -Wextra -Werror -pedantic -fvisibility=hidden \
 *       -shared -fPIC -O2 -o libgreet.so plugins/helpers-cpp/greet.cpp -Iabi/include
 * Run:
 *   host serve ./libgreet.so --app-arg greeting=Hi
 *
 * GET /?name=Ann      "Hi, Ann!\n" (`name` percent-decoded; default "World");
 *                     with `Accept: application/json`, {"greeting":"Hi, Ann!"}
 * GET /status?code=N  status nwsgi_status_line(N), body the same line
 * anything else       404; a method other than GET or HEAD, 405
 */
#include "nwsgi_util.h"

#include <cstdlib>
#include <new>
#include <string>

namespace {

// The app state: one per worker process, built in init from the
// --app-args, read-only afterwards (so any number of threads may read it).
struct Greeter {
    std::string greeting = "Hello";

    std::string greet(nwsgi_str name) const {
        std::string who = name.len ? std::string(reinterpret_cast<const char *>(name.ptr), name.len)
                                   : std::string("World");
        return greeting + ", " + who + "!";
    }
};

int32_t respond(const nwsgi_environ *env, nwsgi_request *req, int code, const char *type,
                const std::string &text) {
    return nwsgi_respond(env, req, code, type, text.data(), text.size());
}

int32_t handle(const Greeter &app, const nwsgi_environ *env, nwsgi_request *req) {
    if (!nwsgi_str_eq(env->request_method, "GET") && !nwsgi_str_eq(env->request_method, "HEAD"))
        return respond(env, req, 405, "text/plain", "GET or HEAD\n");
    uint8_t buf[64];
    nwsgi_str value;
    if (nwsgi_str_eq(env->path_info, "/")) {
        int found = nwsgi_query_get(env->query_string, "name", buf, sizeof buf, &value);
        if (found < 0)
            return respond(env, req, 400, "text/plain", "name too long\n");
        std::string text = app.greet(found == 1 ? value : nwsgi_str_from("", 0));
        nwsgi_str accept;
        if (nwsgi_header_get(env, "accept", &accept) && nwsgi_str_ieq(accept, "application/json"))
            return respond(env, req, 200, "application/json", "{\"greeting\":\"" + text + "\"}");
        return respond(env, req, 200, "text/plain", text + "\n");
    }
    if (nwsgi_str_eq(env->path_info, "/status")) {
        if (nwsgi_query_get(env->query_string, "code", buf, sizeof buf - 1, &value) != 1)
            return respond(env, req, 400, "text/plain", "code must be a number\n");
        buf[value.len] = 0; // value points into buf: make it a C string
        int code = std::atoi(reinterpret_cast<const char *>(buf));
        nwsgi_str line = nwsgi_status_line(code);
        std::string text(reinterpret_cast<const char *>(line.ptr), line.len);
        return respond(env, req, code, "text/plain", text + "\n");
    }
    return respond(env, req, 404, "text/plain", "not found\n");
}

int32_t greet_init(const nwsgi_init_args *args, void **app_state) {
    try {
        auto *app = new Greeter;
        for (size_t i = 0; i < args->n_config; i++) {
            if (nwsgi_str_eq(args->config[i].name, "greeting"))
                app->greeting.assign(reinterpret_cast<const char *>(args->config[i].value.ptr),
                                     args->config[i].value.len);
        }
        *app_state = app;
        return NWSGI_OK;
    } catch (...) { // std::bad_alloc: report it, do not let it cross into C
        return NWSGI_ERROR;
    }
}

int32_t greet_call(void *app_state, const nwsgi_environ *env, nwsgi_request *req,
                   nwsgi_body *body) {
    (void)body; // left zeroed: nwsgi_respond sends the whole response
    try {
        return handle(*static_cast<const Greeter *>(app_state), env, req);
    } catch (...) {
        return NWSGI_ERROR; // the host answers 500
    }
}

void greet_shutdown(void *app_state) { delete static_cast<Greeter *>(app_state); }

} // namespace

NWSGI_EXPORT const nwsgi_app app =
    NWSGI_APP_INIT_NAMED(NWSGI_APP_THREAD_SAFE, greet_init, greet_call, greet_shutdown, "greet");
