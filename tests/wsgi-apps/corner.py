"""PEP 3333 corner cases, one route each. `app` is wrapped in
wsgiref.validate.validator (which checks the server's side too: environ
types, wsgi.input/wsgi.errors methods, start_response's write);
`raw` is not, for the routes that break the PEP on purpose."""

import threading
import time
from wsgiref.validate import validator

# close() calls, by route tag: the tests read them from /closed.
CLOSED = {}
LOCK = threading.Lock()


def record_close(tag):
    with LOCK:
        CLOSED[tag] = CLOSED.get(tag, 0) + 1


class Closing:
    """An iterable with close(): yields `chunks` with a pause between."""

    def __init__(self, tag, chunks, pause=0.0):
        self.tag, self.chunks, self.pause = tag, chunks, pause

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i and self.pause:
                time.sleep(self.pause)
            yield chunk

    def close(self):
        record_close(self.tag)


def text(start_response, body, status="200 OK", extra=()):
    body = body.encode() if isinstance(body, str) else body
    start_response(status, [("Content-Type", "text/plain"), *extra])
    return [body]


def environ_lines(environ):
    """One `KEY=repr(value)` line per plain value, sorted; the streams by
    the names of their types."""
    lines = []
    for k, v in sorted(environ.items()):
        if isinstance(v, (str, bool, int, tuple)):
            lines.append(f"{k}={v!r}")
        elif k in ("wsgi.input", "wsgi.errors"):
            lines.append(f"{k}:{type(v).__name__}")
    return "\n".join(lines) + "\n"


def routes(environ, start_response):
    path = environ["PATH_INFO"]
    inp = environ["wsgi.input"]
    if path == "/environ":
        return text(start_response, environ_lines(environ))
    if path == "/read-sized":  # read(n) in pieces of 5
        parts = []
        while True:
            part = inp.read(5)
            if not part:
                break
            parts.append(part)
        return text(start_response, b"|".join(parts))
    if path == "/lines":  # readline, readlines, iteration
        first = inp.readline()
        second = inp.readline(3)
        rest = inp.readlines()
        return text(start_response, repr([first, second, rest]))
    if path == "/iter-lines":
        return text(start_response, repr(list(inp)))
    if path == "/errors":
        errors = environ["wsgi.errors"]
        errors.write("a line to wsgi.errors\n")
        errors.writelines(["two ", "parts\n"])
        errors.flush()
        return text(start_response, "logged")
    if path == "/write":  # the write() callable, then an empty body
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"twice\n")
        return []
    if path == "/generator":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (f"part {i}\n".encode() for i in range(3))
    if path == "/closing":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing("closing", [b"one ", b"two ", b"three"])
    if path == "/closing-cl":  # Content-Length reached: the server stops iterating
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return Closing("closing-cl", [b"exact", b"never sent"])
    if path == "/slow-stream":  # for the disconnect test
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing("slow-stream", [b"x" * 1024] * 100, pause=0.05)
    if path == "/exc-info":  # replace the pending headers after an error
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("changed my mind")
        except KeyError:
            import sys
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced"]
    if path == "/file":
        import io
        wrapper = environ["wsgi.file_wrapper"](io.BytesIO(b"0123456789" * 3), 7)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return wrapper
    if path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or "0.2"))
        return text(start_response, "slept")
    if path == "/closed":
        with LOCK:
            return text(start_response, " ".join(f"{k}={v}" for k, v in sorted(CLOSED.items())))
    return text(start_response, "not found", "404 Not Found")


app = validator(routes)


def raw(environ, start_response):
    """Routes that break PEP 3333 or raise: not validated."""
    path = environ["PATH_INFO"]
    if path == "/read":  # read() all (the validator wants read(n))
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{len(data)} {data[:32]!r}".encode()]
    if path == "/sys":  # the interpreter a subprocess would run
        import sys
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{sys.executable} {sys.version_info[0]}.{sys.version_info[1]}".encode()]
    if path == "/str-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["a str, not bytes"]
    if path == "/str-chunk":  # a generator: streamed, the str comes late
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (chunk for chunk in [b"ok", "then a str"])
    if path == "/str-in-list-iter":  # a list's iterator: gathered first
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"ok", "then a str"])
    if path == "/list-backed":  # like Django's HttpResponse (not validated: the
        # validator's wrapper hides the list iterator's length hint)
        start_response("200 OK", [("Content-Type", "text/plain")])

        class ListBacked(Closing):
            def __iter__(self):
                return iter(self.chunks)
        return ListBacked("list-backed", [b"held ", b"in ", b"a list"])
    if path == "/bad-status":
        start_response(200, [("Content-Type", "text/plain")])
        return [b"never"]
    if path == "/bad-status-text":
        start_response("OK", [("Content-Type", "text/plain")])
        return [b"never"]
    if path == "/bad-headers-dict":
        start_response("200 OK", {"Content-Type": "text/plain"})
        return [b"never"]
    if path == "/bad-header-bytes":
        start_response("200 OK", [(b"Content-Type", b"text/plain")])
        return [b"never"]
    if path == "/bad-header-text":
        start_response("200 OK", [("X-Price", "10 \u20ac")])
        return [b"never"]
    if path == "/no-start":
        return [b"no start_response"]
    if path == "/twice":
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"never"]
    if path == "/raise":
        raise ZeroDivisionError("raised on purpose")
    if path == "/raise-in-iter":
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"first "
            raise RuntimeError("raised mid-body")
        return gen()
    if path == "/not-iterable":
        start_response("200 OK", [])
        return 42
    if path == "/raise-closing":  # the iterable raises: close() still runs once
        start_response("200 OK", [("Content-Type", "text/plain")])

        class Bad(Closing):
            def __iter__(self):
                raise OSError("broken iterable")
        return Bad("raise-closing", [])
    return app(environ, start_response)
