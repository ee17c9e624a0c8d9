"""Flask hello world: the WSGI bench's framework app (bench/run --wsgi)."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello, World!"
