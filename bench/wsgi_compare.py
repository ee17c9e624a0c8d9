#!/usr/bin/env python3
"""CPU time per request of Python WSGI apps: the host with the WSGI bridge
(target/release/libwsgi.so) against granian, side by side.

    cargo build --release -p host -p wsgi
    /usr/bin/python3 -m venv .venv && .venv/bin/pip install granian flask
    bench/wsgi_compare.py [--rounds 3] [--duration 8]

Apps: tests/wsgi-apps/hello.py (bare WSGI) and tests/wsgi-apps/flask_app.py.
Each server runs pinned to CPU 0 with one worker and one app thread; wrk
-t1 -c64 (keep-alive, GET /) runs pinned to CPU 1, after a 2 s warm-up.
CPU time is utime+stime of every process in the server's process group
over the measured run, divided by the requests wrk counted. Rounds are
interleaved (granian, bridge, granian, ...) so machine noise hits both;
the last lines are the medians. Figures from this script: docs/wsgi.md.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS_DIR = os.path.join(ROOT, "tests", "wsgi-apps")
SERVER_CPU, LOAD_CPU = "0", "1"
APPS = {"hello": "hello:app", "flask": "flask_app:app"}


def group_ticks(pgid):
    """utime+stime (clock ticks) of the live processes in process group pgid."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): pgrp 5, utime 14, stime 15
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total


def wrk(port, seconds):
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c64", f"-d{seconds}s",
         f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"^\s*(\d+) requests in", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"{errors.group(1)} non-2xx responses on port {port}:\n{out}")
    return requests


def wait_listening(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server on port {port} exited ({proc.returncode})")
        probe = subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"])
        if probe.returncode == 0:
            return
        time.sleep(0.2)
    sys.exit(f"server on port {port} did not answer within {timeout} s")


def measure(argv, port, seconds, env):
    """(CPU µs per request, requests per second) of the server `argv`."""
    proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + argv, cwd=APPS_DIR, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_listening(port, proc)
        wrk(port, 2)
        before = group_ticks(proc.pid)
        requests = wrk(port, seconds)
        used = group_ticks(proc.pid) - before
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    return used / os.sysconf("SC_CLK_TCK") * 1e6 / requests, requests / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="seconds of each measured run")
    ap.add_argument("--venv", default=os.path.join(ROOT, ".venv"),
                    help="virtualenv with granian and flask (default: .venv)")
    ap.add_argument("--apps", default="hello,flask", help="comma-separated: hello, flask")
    args = ap.parse_args()

    for tool in ("wrk", "taskset", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing")
    host = os.path.join(ROOT, "target", "release", "host")
    bridge = os.path.join(ROOT, "target", "release", "libwsgi.so")
    for built in (host, bridge):
        if not os.path.isfile(built):
            sys.exit(f"{built} is missing: cargo build --release -p host -p wsgi")
    granian = os.path.join(args.venv, "bin", "granian")
    servers = {"bridge": lambda app: [host, "serve", bridge, "-b", "127.0.0.1:18401",
                                      "--log-level", "warning", "--app-arg", f"app={app}"]
               + (["--allow-root"] if os.geteuid() == 0 else [])}
    ports = {"bridge": 18401, "granian": 18402}
    if os.path.exists(granian):
        servers["granian"] = lambda app: [
            granian, "--interface", "wsgi", "--workers", "1", "--runtime-threads", "1",
            "--blocking-threads", "1", "--host", "127.0.0.1", "--port", "18402",
            "--no-access-log", "--log-level", "warning", app]
    else:
        print(f"(no granian in {args.venv}: the bridge alone)")
    env = dict(os.environ, VIRTUAL_ENV=args.venv)

    results = {}
    for r in range(args.rounds):
        for name in args.apps.split(","):
            for server, argv in servers.items():
                cpu, rps = measure(argv(APPS[name]), ports[server], args.duration, env)
                results.setdefault((name, server), []).append(cpu)
                print(f"round {r + 1} {name:6} {server:8} {cpu:8.2f} CPU µs/req {rps:9.0f} req/s",
                      flush=True)
    print("medians:")
    for (name, server), cpus in results.items():
        print(f"  {name:6} {server:8} {statistics.median(cpus):8.2f} CPU µs/req")


if __name__ == "__main__":
    main()
