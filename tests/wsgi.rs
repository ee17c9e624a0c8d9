//! The WSGI bridge (`plugins/wsgi`, libwsgi.so) serving the Python apps in
//! `tests/wsgi-apps/` from the real host: PEP 3333's environ, wsgi.input
//! (Content-Length and chunked bodies), wsgi.errors, start_response and
//! write(), close() exactly once, what a PEP 3333 violation or an exception
//! is answered with and logged as, an import error refusing the boot,
//! threads overlapping with the GIL let go, and a Flask app.
//!
//! `corner:app` is wrapped in `wsgiref.validate.validator`, which asserts
//! the server's side of PEP 3333 too (an assertion fails the request with
//! a 500 and a traceback in the log).

use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::artifacts;
use integration_tests::client::{self, Conn, Response};
use integration_tests::server::{self, Serve, Server};

const TIMEOUT: Duration = Duration::from_secs(10);

fn apps_dir() -> PathBuf {
    artifacts::repo_root().join("tests/wsgi-apps")
}

/// `host serve libwsgi.so --app-arg app=SPEC --app-arg path=tests/wsgi-apps`,
/// without a virtualenv from the test's environment.
fn serve(spec: &str) -> Serve {
    server::serve(artifacts::rust_plugin("wsgi"))
        .args(["--app-arg", &format!("app={spec}")])
        .args(["--app-arg", &format!("path={}", apps_dir().display())])
        .env("VIRTUAL_ENV", "")
}

/// At most this many of this file's hosts boot at once: each boot stages
/// the plugin and starts Python, and all of the file's tests at once on a
/// 2-core machine could take longer than a boot may.
const BOOTS: usize = 2;

static BOOTING: Mutex<usize> = Mutex::new(0);
static BOOTED: Condvar = Condvar::new();

/// Runs `f` (a boot) when fewer than BOOTS others are running.
fn booting<T>(f: impl FnOnce() -> T) -> T {
    let mut n = BOOTING.lock().unwrap_or_else(|p| p.into_inner());
    while *n >= BOOTS {
        n = BOOTED.wait(n).unwrap_or_else(|p| p.into_inner());
    }
    *n += 1;
    drop(n);
    // Given back even if `f` panics.
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            *BOOTING.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
            BOOTED.notify_one();
        }
    }
    let _done = Done;
    f()
}

/// `serve.start()`, one of at most BOOTS at a time.
fn start(serve: Serve) -> Server {
    booting(|| serve.start())
}

fn get(server: &Server, target: &str) -> Response {
    client::get(server.addr(), target)
}

fn post(server: &Server, target: &str, body: &str) -> Response {
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client::request(server.addr(), request.as_bytes())
}

/// POST with `Transfer-Encoding: chunked`, one chunk per part.
fn post_chunked(server: &Server, target: &str, parts: &[&str]) -> Response {
    let mut request =
        format!("POST {target} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n");
    for part in parts {
        request.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
    }
    request.push_str("0\r\n\r\n");
    client::request(server.addr(), request.as_bytes())
}

fn assert_ok(resp: &Response, body: &str) {
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, body),
        "{}",
        resp.raw_head
    );
    assert!(resp.complete, "body cut short: {resp:?}");
}

/// Polls `target` until its body contains `needle` (or the timeout).
fn poll_for(server: &Server, target: &str, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let body = get(server, target).text();
        if body.contains(needle) || Instant::now() > deadline {
            return body;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// The fast path and the environ

#[test]
fn hello_is_one_response_with_content_length() {
    let server = start(serve("hello:app"));
    let resp = get(&server, "/");
    assert_ok(&resp, "Hello, World!");
    assert!(!resp.chunked, "{}", resp.raw_head);
    assert_eq!(resp.header("content-length"), Some("13"));
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    // Keep-alive: the same connection serves the next request.
    let mut conn = Conn::connect(server.addr());
    for _ in 0..3 {
        conn.send(b"GET /again HTTP/1.1\r\nHost: test\r\n\r\n");
        assert_ok(&conn.read_response(), "Hello, World!");
    }
}

/// `host wsgi MODULE:CALLABLE`, what a gunicorn user types: the bridge
/// beside the binary, every `host serve` option after the app.
#[test]
fn host_wsgi_serves_the_app_with_the_bridge_beside_it() {
    let server = start(
        server::wsgi("hello:app")
            .args(["--app-arg", &format!("path={}", apps_dir().display())])
            .args(["--threads", "2"])
            .env("VIRTUAL_ENV", ""),
    );
    assert_ok(&get(&server, "/"), "Hello, World!");
}

#[test]
fn host_wsgi_refuses_a_bad_option_and_a_missing_bridge() {
    let bad = server::run(["wsgi", "hello:app", "--no-such-option"]);
    assert_eq!(bad.status.code(), Some(2), "{}", bad.stderr);
    assert!(
        bad.error_line().contains("--no-such-option"),
        "{}",
        bad.stderr
    );
    // A host binary with no libwsgi.so beside it.
    let dir = artifacts::TempDir::new("wsgi-no-bridge");
    let lonely = dir.path.join("host");
    std::fs::copy(artifacts::host(), &lonely).expect("copying the host binary");
    let out = std::process::Command::new(&lonely)
        .args(["wsgi", "hello:app"])
        .output()
        .expect("running the copy");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no WSGI bridge") && stderr.contains("libwsgi.so"),
        "{stderr}"
    );
}

#[test]
fn environ_has_the_cgi_and_wsgi_variables() {
    let server = start(serve("corner:app"));
    let request = "GET /environ?x=1&y=%20 HTTP/1.1\r\nHost: example.test:8080\r\n\
                   User-Agent: t/1\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n";
    let resp = client::request(server.addr(), request.as_bytes());
    assert_eq!(resp.status, 200, "{resp:?}");
    let text = resp.text();
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "REQUEST_METHOD='GET'",
        "SCRIPT_NAME=''",
        "PATH_INFO='/environ'",
        "QUERY_STRING='x=1&y=%20'",
        "REQUEST_URI='/environ?x=1&y=%20'",
        "SERVER_NAME='example.test'",
        "SERVER_PROTOCOL='HTTP/1.1'",
        "REMOTE_ADDR='127.0.0.1'",
        "HTTP_HOST='example.test:8080'",
        "HTTP_USER_AGENT='t/1'",
        "HTTP_X_MULTI='a, b'",
        "wsgi.version=(1, 0)",
        "wsgi.url_scheme='http'",
        "wsgi.multithread=False",
        "wsgi.multiprocess=False",
        "wsgi.run_once=False",
        "wsgi.input_terminated=True",
        // The validator wraps both streams after checking their methods.
        "wsgi.input:InputWrapper",
        "wsgi.errors:ErrorWrapper",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
    }
    let port = format!("SERVER_PORT='{}'", server.port());
    assert!(lines.contains(&port.as_str()), "{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("REMOTE_PORT='")),
        "{text}"
    );
    let id = lines
        .iter()
        .find_map(|l| l.strip_prefix("REQUEST_ID="))
        .expect("REQUEST_ID");
    assert!(
        lines.contains(&format!("HTTP_X_REQUEST_ID={id}").as_str()),
        "{text}"
    );
    // No body: neither CONTENT_* variable.
    assert!(!text.contains("CONTENT_LENGTH"), "{text}");
    assert!(!text.contains("CONTENT_TYPE"), "{text}");

    // Repeated names in any case are joined (Cookie with "; "); the
    // X-Request-Id of a trusted peer (loopback, by default) is the
    // request's id, under both names; a name with '_' is not exposed (it
    // would pass for its '-' twin).
    let request = "GET /environ HTTP/1.1\r\nHost: test\r\nX-Multi: a\r\nx-multi: b\r\n\
                   X-MULTI: c\r\nCookie: a=1\r\ncookie: b=2\r\nX-Request-Id: mine\r\n\
                   X_Multi: spoofed\r\nX_Only: spoofed\r\n\r\n";
    let text = client::request(server.addr(), request.as_bytes()).text();
    let lines: Vec<&str> = text.lines().collect();
    for want in ["HTTP_X_MULTI='a, b, c'", "HTTP_COOKIE='a=1; b=2'"] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
    }
    for want in ["REQUEST_ID='mine'", "HTTP_X_REQUEST_ID='mine'"] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("spoofed"), "{text}");
    assert!(!text.contains("HTTP_X_ONLY"), "{text}");

    // A second request on a new connection: values remembered from the
    // first (the server name, the Host header) must not leak into it.
    let request = "GET /environ HTTP/1.1\r\nHost: other.test\r\nX-Multi: c\r\n\r\n";
    let text = client::request(server.addr(), request.as_bytes()).text();
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "SERVER_NAME='other.test'",
        "HTTP_HOST='other.test'",
        "HTTP_X_MULTI='c'",
        "QUERY_STRING=''",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("HTTP_USER_AGENT"), "{text}");
}

#[test]
fn threads_flag_sets_multithread() {
    let server = start(serve("corner:app").args(["--threads", "2"]));
    let text = get(&server, "/environ").text();
    assert!(text.lines().any(|l| l == "wsgi.multithread=True"), "{text}");
}

// ---------------------------------------------------------------------------
// wsgi.input and wsgi.errors

#[test]
fn input_reads_a_content_length_body() {
    let server = start(serve("corner:app"));
    assert_ok(
        &post(&server, "/read-sized", "abcdefghijkl"),
        "abcde|fghij|kl",
    );
    assert_ok(
        &post(&server, "/lines", "line1\nline2\nline3\nlast"),
        r"[b'line1\n', b'lin', [b'e2\n', b'line3\n', b'last']]",
    );
    assert_ok(
        &post(&server, "/iter-lines", "a\nb\nc"),
        r"[b'a\n', b'b\n', b'c']",
    );
    let text = post(&server, "/environ", "xyz").text();
    assert!(text.lines().any(|l| l == "CONTENT_LENGTH='3'"), "{text}");
}

#[test]
fn input_reads_a_chunked_body_to_its_end() {
    let server = start(serve("corner:raw"));
    assert_ok(
        &post_chunked(&server, "/read", &["chunked ", "upload"]),
        "14 b'chunked upload'",
    );
    // A body larger than one read of the bridge.
    let big = "x".repeat(200_000);
    let resp = post_chunked(&server, "/read", &[&big[..100_000], &big[100_000..]]);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.text().starts_with("200000 b'xxxx"), "{}", resp.text());
    // Chunked: no CONTENT_LENGTH, and the input says it ends by itself.
    let text = post_chunked(&server, "/environ", &["abc"]).text();
    assert!(!text.contains("CONTENT_LENGTH"), "{text}");
    assert!(
        text.lines().any(|l| l == "wsgi.input_terminated=True"),
        "{text}"
    );
    assert_ok(
        &post_chunked(&server, "/read-sized", &["abcdefg", "hijkl"]),
        "abcde|fghij|kl",
    );
}

/// With `--no-request-buffering` a read of wsgi.input waits for the
/// client: the GIL is let go meanwhile, so another request's Python runs.
#[test]
fn a_read_waiting_for_the_client_lets_other_requests_run() {
    let server = start(serve("corner:raw").args(["--threads", "2", "--no-request-buffering"]));
    let mut slow = Conn::connect(server.addr());
    slow.send(
        b"POST /read HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
    );
    // The slow request's thread is now inside read(), waiting: this one
    // needs the GIL (if the reader held it, this would never answer).
    assert_ok(&get(&server, "/closing"), "one two three");
    slow.send(b"7\r\n second\r\n0\r\n\r\n");
    assert_ok(&slow.read_response(), "12 b'first second'");
}

#[test]
fn errors_stream_writes_log_lines() {
    let server = start(serve("corner:app"));
    assert_ok(&get(&server, "/errors"), "logged");
    server.wait_for_log("a line to wsgi.errors", TIMEOUT);
    // writelines(["two ", "parts\n"]) is one line.
    let logs = server.wait_for_log("two parts", TIMEOUT);
    let line = logs.lines().find(|l| l.contains("two parts")).unwrap();
    assert!(line.contains("request_id="), "{line}");
}

// ---------------------------------------------------------------------------
// start_response, write() and the response iterable

#[test]
fn write_callable_streams_before_the_iterable() {
    let server = start(serve("corner:app"));
    let resp = get(&server, "/write");
    assert_ok(&resp, "written twice\n");
    assert!(resp.chunked, "{}", resp.raw_head);
}

#[test]
fn generators_and_file_wrapper_stream() {
    let server = start(serve("corner:app"));
    assert_ok(&get(&server, "/generator"), "part 0\npart 1\npart 2\n");
    let resp = get(&server, "/file");
    assert_ok(&resp, &"0123456789".repeat(3));
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );
}

#[test]
fn exc_info_replaces_pending_headers() {
    let server = start(serve("corner:app"));
    let resp = get(&server, "/exc-info");
    assert_eq!((resp.status, resp.text().as_str()), (503, "replaced"));
}

#[test]
fn close_is_called_exactly_once() {
    let server = start(serve("corner:raw"));
    assert_ok(&get(&server, "/closing"), "one two three");
    // Content-Length reached by the first chunk: the rest is never asked
    // for, and close() still runs.
    let resp = get(&server, "/closing-cl");
    assert_ok(&resp, "exact");
    assert_eq!(resp.header("content-length"), Some("5"));
    // An iterable over a list (Django's HttpResponse): gathered, framed
    // with Content-Length, closed.
    let resp = get(&server, "/list-backed");
    assert_ok(&resp, "held in a list");
    assert!(!resp.chunked, "{}", resp.raw_head);
    assert_eq!(resp.header("content-length"), Some("14"));
    // An iterable whose __iter__ raises: a 500, and close() all the same.
    assert_eq!(get(&server, "/raise-closing").status, 500);
    assert_eq!(
        get(&server, "/closed").text(),
        "closing=1 closing-cl=1 list-backed=1 raise-closing=1"
    );
}

#[test]
fn close_is_called_when_the_client_goes_away() {
    let server = start(serve("corner:raw"));
    let mut conn = Conn::connect(server.addr());
    conn.send(b"GET /slow-stream HTTP/1.1\r\nHost: test\r\n\r\n");
    let head = conn.read_head();
    assert_eq!(head.status, 200);
    drop(conn);
    // 100 chunks 50 ms apart would take 5 s; the host notices the closed
    // connection at the next chunk and calls close() once.
    let closed = poll_for(&server, "/closed", "slow-stream=1");
    assert_eq!(closed, "slow-stream=1");
}

// ---------------------------------------------------------------------------
// Violations and exceptions

#[test]
fn violations_answer_500_with_a_log_line_naming_them() {
    let server = start(serve("corner:raw"));
    for (target, logged) in [
        (
            "/str-body",
            "PEP 3333 violation: the response iterable yielded str, not bytes",
        ),
        ("/bad-status", "start_response: status must be str, got int"),
        ("/bad-status-text", r#"status "OK" is not "NNN Reason""#),
        (
            "/bad-headers-dict",
            "headers must be a list of (name, value) tuples, got dict",
        ),
        (
            "/bad-header-bytes",
            "header 0's name must be str, got bytes",
        ),
        (
            "/bad-header-text",
            "PEP 3333 violation: start_response: header 0's value is not Latin-1 text",
        ),
        (
            "/no-start",
            "PEP 3333 violation: the application returned a body without calling start_response",
        ),
        (
            "/twice",
            "PEP 3333 violation: start_response called a second time without exc_info",
        ),
        (
            "/not-iterable",
            "PEP 3333 violation: the application returned int, which is not iterable",
        ),
    ] {
        let resp = get(&server, target);
        assert_eq!(resp.status, 500, "{target}: {resp:?}");
        let logs = server.wait_for_log(logged, TIMEOUT);
        let line = logs.lines().find(|l| l.contains(logged)).unwrap();
        assert!(line.contains(&format!("GET {target} ")), "{line}");
    }
    // A list's iterator is gathered before anything is sent: a 500.
    assert_eq!(get(&server, "/str-in-list-iter").status, 500);
    // A str after the first chunk went out: the connection is cut.
    let resp = get(&server, "/str-chunk");
    assert!(!resp.complete, "{resp:?}");
    server.wait_for_log("the response iterable yielded str, not bytes", TIMEOUT);
    // The worker lives on.
    assert_ok(&get(&server, "/closing"), "one two three");
}

#[test]
fn exceptions_answer_500_with_the_traceback_logged() {
    let server = start(serve("corner:raw"));
    assert_eq!(get(&server, "/raise").status, 500);
    let logs = server.wait_for_log("ZeroDivisionError: raised on purpose", TIMEOUT);
    assert!(
        logs.contains("Traceback (most recent call last):"),
        "{logs}"
    );
    assert!(logs.contains("corner.py\", line"), "{logs}");
    // Raised mid-body: the head went out, the connection is cut.
    let resp = get(&server, "/raise-in-iter");
    assert_eq!(resp.status, 200);
    assert!(!resp.complete, "{resp:?}");
    server.wait_for_log("RuntimeError: raised mid-body", TIMEOUT);
    assert_ok(&get(&server, "/closing"), "one two three");
}

// ---------------------------------------------------------------------------
// init

fn refuse(args: &[&str]) -> String {
    let plugin = artifacts::rust_plugin("wsgi");
    let mut all = vec![
        "serve".to_owned(),
        plugin.display().to_string(),
        "-b".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let done = booting(|| server::run_env(&apps_dir(), &[("VIRTUAL_ENV", "")], &all));
    assert_eq!(done.status.code(), Some(1), "{done:#?}");
    done.error_line().to_owned()
}

#[test]
fn an_import_error_refuses_to_boot() {
    let line = refuse(&["--app-arg", "app=broken_import:app"]);
    assert!(
        line.ends_with("ValueError: this module is broken on purpose"),
        "{line}"
    );
    let line = refuse(&["--app-arg", "app=no_such_module:app"]);
    assert!(
        line.ends_with("ModuleNotFoundError: No module named 'no_such_module'"),
        "{line}"
    );
}

#[test]
fn a_missing_callable_refuses_to_boot() {
    let line = refuse(&["--app-arg", "app=hello:nope"]);
    assert!(
        line.ends_with("AttributeError: module 'hello' has no attribute 'nope'"),
        "{line}"
    );
    let line = refuse(&["--app-arg", "app=hello:BODY"]);
    assert!(
        line.ends_with("hello:BODY is a bytes, not a WSGI callable"),
        "{line}"
    );
}

#[test]
fn bad_app_args_refuse_to_boot() {
    let line = refuse(&[]);
    assert!(
        line.contains("missing --app-arg app=MODULE:CALLABLE"),
        "{line}"
    );
    let line = refuse(&["--app-arg", "app=hello:"]);
    assert!(line.contains("expected MODULE:CALLABLE"), "{line}");
    // Without a callable, `application` (gunicorn's default).
    let line = refuse(&["--app-arg", "app=hello"]);
    assert!(
        line.ends_with("AttributeError: module 'hello' has no attribute 'application'"),
        "{line}"
    );
    let line = refuse(&[
        "--app-arg",
        "app=hello:app",
        "--app-arg",
        "path=/no/such/dir",
    ]);
    assert!(
        line.contains("path=/no/such/dir: no such directory"),
        "{line}"
    );
    let line = refuse(&[
        "--app-arg",
        "app=hello:app",
        "--app-arg",
        "venv=/no/such/venv",
    ]);
    assert!(line.contains("virtualenv /no/such/venv"), "{line}");
    let line = refuse(&["--app-arg", "app=hello:app", "--app-arg", "colour=blue"]);
    assert!(line.contains("unknown --app-arg \"colour\""), "{line}");
}

/// Without `path=`, the app is imported from the current directory.
#[test]
fn the_current_directory_is_the_default_import_path() {
    let server = start(
        server::serve(artifacts::rust_plugin("wsgi"))
            .args(["--app-arg", "app=hello:app"])
            .env("VIRTUAL_ENV", "")
            .setup(|cmd| {
                cmd.current_dir(apps_dir());
            }),
    );
    assert_ok(&get(&server, "/"), "Hello, World!");
}

/// sys.executable is the Python the bridge embeds (embedded, Python would
/// take the first `python3` on PATH).
#[test]
fn sys_executable_is_the_embedded_python() {
    let server = start(serve("corner:raw"));
    let text = get(&server, "/sys").text();
    let (exe, version) = text.split_once(' ').expect("EXE X.Y");
    assert!(exe.ends_with(&format!("/python{version}")), "{text}");
    assert!(std::path::Path::new(exe).is_file(), "{text}");
}

// ---------------------------------------------------------------------------
// Threads and the GIL

#[test]
fn threads_overlap_requests_that_sleep() {
    let server = start(serve("corner:app").args(["--threads", "4"]));
    let addr = server.addr();
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| thread::spawn(move || client::get(addr, "/sleep?0.6")))
        .collect();
    for c in clients {
        assert_ok(&c.join().unwrap(), "slept");
    }
    // One at a time would take 2.4 s: time.sleep lets the GIL go.
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1800), "took {took:?}");
}

// ---------------------------------------------------------------------------
// Flask

/// A virtualenv with `package`: $WSGI_TEST_VENV, else the repository's
/// `.venv` (`.ci/run` makes it, with Flask, Pyramid and Django). None when
/// it lacks the package, which fails under CI (CI=true) and skips
/// elsewhere.
fn venv_with(package: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("WSGI_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| artifacts::repo_root().join(".venv"));
    let has = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("site-packages").join(package).is_dir());
    if has {
        return Some(venv);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no virtualenv with {package} at {} (.ci/run makes it)",
        venv.display()
    );
    eprintln!(
        "skipped: no virtualenv with {package} at {}",
        venv.display()
    );
    None
}

fn flask_venv() -> Option<PathBuf> {
    venv_with("flask")
}

#[test]
fn flask_app_with_its_c_speedups() {
    let Some(venv) = flask_venv() else { return };
    let server =
        start(serve("flask_app:app").args(["--app-arg", &format!("venv={}", venv.display())]));
    let resp = get(&server, "/");
    assert_ok(&resp, "Hello, World!");
    assert_eq!(resp.header("content-length"), Some("13"));
    assert_ok(&post(&server, "/echo", "a posted body"), "a posted body");
    assert_ok(
        &post_chunked(&server, "/echo", &["chunked ", "body"]),
        "chunked body",
    );
    let resp = get(&server, "/json?a=1");
    assert_ok(&resp, "{\"args\":{\"a\":\"1\"},\"path\":\"/json\"}\n");
    assert_eq!(get(&server, "/missing").status, 404);
}

/// VIRTUAL_ENV is honoured like venv=.
#[test]
fn flask_app_from_virtual_env() {
    let Some(venv) = flask_venv() else { return };
    let server = start(
        server::serve(artifacts::rust_plugin("wsgi"))
            .args(["--app-arg", "app=flask_app:app"])
            .args(["--app-arg", &format!("path={}", apps_dir().display())])
            .env("VIRTUAL_ENV", &venv),
    );
    assert_ok(&get(&server, "/"), "Hello, World!");
}

// ---------------------------------------------------------------------------
// The seeds: the apps of "Let's Build A Web Server" part 2 and gunicorn's
// example, as they are there (tests/wsgi-apps/seeds/), run from their
// directory as their readers run them.

/// `host wsgi MODULE:CALLABLE` from the seeds' directory, with `venv`.
fn seed(app: &str, venv: &std::path::Path) -> Server {
    let dir = apps_dir().join("seeds");
    start(
        server::wsgi(app)
            .args(["--app-arg", &format!("venv={}", venv.display())])
            .args(["--threads", "4"])
            .setup(move |cmd| {
                cmd.current_dir(dir);
            }),
    )
}

#[test]
fn the_seeds_pyramid_flask_and_django_apps_say_hello() {
    for (app, package, body) in [
        ("pyramidapp:app", "pyramid", "Hello world from Pyramid!\n"),
        ("flaskapp:app", "flask", "Hello world from Flask!\n"),
        ("djangoapp:app", "django", "Hello world from Django!\n"),
    ] {
        let Some(venv) = venv_with(package) else {
            continue;
        };
        let server = seed(app, &venv);
        let resp = get(&server, "/hello");
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, body),
            "{app}: {}",
            server.logs()
        );
        assert!(
            resp.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{app}: {}",
            resp.raw_head
        );
        assert_eq!(get(&server, "/missing").status, 404, "{app}");
    }
}

/// gunicorn's README example, `gunicorn myapp:app`, and its default
/// callable name (`myapp` alone means `myapp:application`).
#[test]
fn gunicorns_myapp_runs_as_gunicorn_runs_it() {
    let dir = apps_dir().join("seeds");
    for app in ["myapp:app", "myapp"] {
        let dir = dir.clone();
        let server = start(server::wsgi(app).env("VIRTUAL_ENV", "").setup(move |cmd| {
            cmd.current_dir(dir);
        }));
        assert_ok(&get(&server, "/"), "Hello, World!\n");
    }
}
