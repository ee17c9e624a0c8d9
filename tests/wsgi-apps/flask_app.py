"""A Flask app (imports markupsafe's C speedups: libpython's symbols must
be global for them to load)."""

import markupsafe._speedups  # noqa: F401  (fails to import without them)
from flask import Flask, request

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello, World!"


@app.route("/echo", methods=["POST"])
def echo():
    return request.get_data()


@app.route("/json")
def json():
    return {"path": request.path, "args": request.args}
