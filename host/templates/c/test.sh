#!/bin/sh
# Serves the library (first argument) on a free port with the host
# ($NWSGI_HOST, else `host`) and checks what it answers. Run by `make test`.
set -eu
lib=${1:-./lib{{NAME}}.so}
host=${NWSGI_HOST:-host}
log=$(mktemp)
# The host refuses to run an application as root unless told to (a test in
# a container often runs as root).
as_root=
if [ "$(id -u)" = 0 ]; then as_root=--allow-root; fi
"$host" serve "$lib" -b 127.0.0.1:0 $as_root 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT
port=
tries=0
while [ -z "$port" ]; do
    port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$log" | head -n 1)
    if [ -n "$port" ]; then break; fi
    if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -ge 100 ]; then
        cat "$log" >&2
        echo "FAIL: the host did not start" >&2
        exit 1
    fi
    tries=$((tries + 1))
    sleep 0.1
done

failed=0
check() { # METHOD PATH EXPECTED-STATUS EXPECTED-BODY
    got=$(curl -sS -X "$1" -w '%{http_code}' "http://127.0.0.1:$port$2")
    want=$(printf '%s\n%s' "$4" "$3")
    if [ "$got" = "$want" ]; then
        echo "ok   $1 $2 -> $3"
    else
        echo "FAIL $1 $2: got '$got', expected '$want'" >&2
        failed=1
    fi
}
check GET / 200 "Hello, World!"
check GET "/?name=C+plugin%21" 200 "Hello, C plugin!!"
check GET /elsewhere 404 "Not Found"
check DELETE / 405 "Method Not Allowed"
exit "$failed"
