"""Hello-world WSGI app: the bare app of bench/run --wsgi, and the optional
gunicorn reference of the HTTP scenarios (bench/run --with-gunicorn)."""

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
