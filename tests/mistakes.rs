//! A plugin's mistakes cost only its own request. `plugins/mistakes-c`
//! makes each on purpose; for each, the client gets a clear answer, the
//! host's log says what the app did wrong (escaped, one line, naming the
//! request), and the worker that ran it goes on serving.

use std::time::Duration;

use integration_tests::artifacts;
use integration_tests::client::{self, Response};
use integration_tests::server::{self, plugin_spec, Server};

fn start(args: &[&str]) -> Server {
    server::serve(plugin_spec(&artifacts::mistakes_c(), "app"))
        .args(args)
        .start()
}

fn get(server: &Server, target: &str) -> Response {
    client::get(server.addr(), target)
}

/// The worker's pid (GET /pid).
fn worker(server: &Server) -> String {
    let r = get(server, "/pid");
    assert_eq!(r.status, 200, "{}", r.raw_head);
    r.text()
}

/// Waits for a log line holding every one of `needles`; returns it.
fn log_line(server: &Server, needles: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let logs = server.logs();
        if let Some(line) = logs.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        if std::time::Instant::now() > deadline {
            panic!("no log line with all of {needles:?}; log:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Each NULL-with-a-length the app hands over: NWSGI_E_INVALID (-2) to
/// the app, a 500 to the client, a log line naming the call and the
/// request, and the same worker afterwards.
#[test]
fn null_pointers_with_lengths_are_refused_with_a_500() {
    let server = start(&[]);
    let pid = worker(&server);
    for (route, call, what) in [
        ("/null-status", "start_response", "status"),
        ("/null-header-name", "start_response", "header 1's name"),
        ("/null-header-value", "start_response", "header 1's value"),
        ("/null-headers", "start_response", "header list"),
        ("/null-exc", "start_response", "exc_info's message"),
        ("/null-write", "write", "data"),
        ("/null-write-last", "write_last", "data"),
        ("/null-read", "read", "buf"),
    ] {
        let r = get(&server, route);
        assert_eq!(r.status, 500, "{route}: {}", r.raw_head);
        assert!(r.complete, "{route}: {r:?}");
        log_line(&server, &[&format!("mistake {route} rc=-2")]);
        let line = log_line(&server, &[&format!("app error in {call}"), what, route]);
        assert!(line.contains("NULL"), "{route}: {line}");
        assert_eq!(worker(&server), pid, "{route} replaced the worker");
    }
}

#[test]
fn a_null_chunk_fails_the_response_not_the_worker() {
    let server = start(&[]);
    let pid = worker(&server);
    let r = get(&server, "/null-chunk");
    assert_eq!(r.status, 500, "{}", r.raw_head);
    log_line(&server, &["app error in next", "NULL", "/null-chunk "]);

    // After the head went out, the connection is cut: the client must not
    // take what it got for a whole body.
    let mut conn = server.connect();
    conn.send(b"GET /null-chunk-late HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = conn.read_response();
    assert_eq!(r.status, 200, "{}", r.raw_head);
    assert!(!r.complete, "a cut body must not read as complete: {r:?}");
    log_line(
        &server,
        &[
            "app error in next",
            "closing the connection",
            "/null-chunk-late",
        ],
    );
    assert_eq!(worker(&server), pid);
}

#[test]
fn null_log_message_and_environ_arguments() {
    let server = start(&[]);
    let pid = worker(&server);
    let r = get(&server, "/null-log");
    assert_eq!(r.status, 500, "{}", r.raw_head);
    log_line(&server, &["app error in log", "/null-log"]);

    let r = get(&server, "/null-each");
    assert_eq!((r.status, r.text().as_str()), (200, "rc=-2"));
    log_line(&server, &["environ_each with a NULL callback"]);
    let r = get(&server, "/null-get");
    assert_eq!((r.status, r.text().as_str()), (200, "rc=0"));
    log_line(&server, &["environ_get with a NULL key"]);
    assert_eq!(worker(&server), pid);
}

/// What the app logs is its text on one line of the host's log, control
/// bytes escaped, with the app's name, its target and the request.
#[test]
fn app_log_lines_cannot_forge_host_lines() {
    let server = start(&[]);
    let r = get(&server, "/log-inject");
    assert_eq!((r.status, r.text().as_str()), (200, "logged"));
    let line = log_line(&server, &["a\\nERROR forged\\x1b[31m\\xff\\x00"]);
    assert!(line.contains("app=mistakes"), "{line}");
    assert!(line.contains("source=mistakes\\r\\n"), "{line}");
    assert!(line.contains("GET /log-inject HTTP/1.1"), "{line}");
    assert!(line.contains("request_id="), "{line}");
    let logs = server.logs();
    assert!(
        !logs.lines().any(|l| l.starts_with("ERROR forged")) && !logs.contains('\u{1b}'),
        "raw control bytes reached the log:\n{logs}"
    );

    // Levels outside 1..=5: below is ERROR, above is TRACE (not shown at
    // the default level).
    let r = get(&server, "/log-levels");
    assert_eq!(r.status, 200);
    let line = log_line(&server, &["level-zero"]);
    assert!(line.contains("ERROR"), "{line}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!server.logs().contains("level-99"), "{}", server.logs());
}

#[test]
fn invalid_statuses_are_a_500_and_logged_escaped() {
    let server = start(&[]);
    let pid = worker(&server);
    let r = get(&server, "/status-crlf");
    assert_eq!(r.status, 500, "{}", r.raw_head);
    assert!(r.header("x-injected").is_none(), "{}", r.raw_head);
    log_line(&server, &["mistake /status-crlf rc=-2"]);
    let line = log_line(
        &server,
        &["invalid response from app", "200 OK\\r\\nX-Injected: 1"],
    );
    assert!(line.contains("/status-crlf"), "{line}");
    for route in ["/status-600", "/status-999", "/status-103"] {
        let r = get(&server, route);
        assert_eq!(r.status, 500, "{route}: {}", r.raw_head);
        log_line(&server, &[&format!("mistake {route} rc=-2")]);
    }
    assert_eq!(worker(&server), pid);
}

#[test]
fn exc_info_on_the_first_start_response_is_accepted_and_logged() {
    let server = start(&[]);
    let r = get(&server, "/exc-first");
    assert_eq!((r.status, r.text().as_str()), (200, "accepted"));
    log_line(&server, &["mistake /exc-first rc=0"]);
    log_line(
        &server,
        &["exc_info to its first start_response", "first boom"],
    );
}

/// More body than the app's own Content-Length: its error (NWSGI_E_INVALID),
/// the declared bytes go out, then the connection closes.
#[test]
fn more_body_than_content_length_is_the_apps_error() {
    let server = start(&[]);
    let pid = worker(&server);
    for route in ["/over-length", "/over-length-last"] {
        let mut conn = server.connect();
        conn.send(format!("GET {route} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = conn.read_response();
        assert_eq!((r.status, r.text().as_str()), (200, "too"), "{route}");
        conn.expect_closed(Duration::from_secs(5));
        log_line(&server, &[&format!("mistake {route} rc=-2")]);
        log_line(&server, &["more body than its Content-Length", route]);
    }
    assert_eq!(worker(&server), pid);
}

#[test]
fn a_positive_return_from_call_is_a_500() {
    let server = start(&[]);
    let r = get(&server, "/positive");
    assert_eq!(r.status, 500, "{}", r.raw_head);
    log_line(&server, &["app call returned 7", "/positive"]);
}

/// A head on the stack reaches start_response_static at the same address
/// with other contents: each request gets its own headers.
#[test]
fn a_head_on_the_stack_is_not_remembered_by_address() {
    let server = start(&["--threads", "1"]);
    let mut conn = server.connect();
    for v in ["first", "second", "third", "second"] {
        conn.send(format!("GET /stack-head?{v} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = conn.read_response();
        assert_eq!(r.status, 200, "{}", r.raw_head);
        assert_eq!(r.header("x-echo"), Some(v), "{}", r.raw_head);
        assert_eq!(r.text(), v);
    }
}

/// The access log says what went on the wire: the body of the host's own
/// 500, the bytes of a cut response, and that it was cut.
#[test]
fn the_access_log_counts_what_was_sent_and_marks_aborts() {
    let dir = std::env::temp_dir().join(format!("mistakes-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let server = start(&["--access-logfile", log.to_str().unwrap()]);
    let r = get(&server, "/null-status");
    assert_eq!(r.status, 500);
    let mut conn = server.connect();
    conn.send(b"GET /over-length HTTP/1.1\r\nHost: x\r\n\r\n");
    let _ = conn.read_response();
    let r = get(&server, "/pid");
    assert_eq!(r.status, 200);
    let pid_len = r.body.len();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 3 || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{text}"))
    };
    // "500 Internal Server Error\n" is 26 bytes.
    assert!(line("/null-status").contains("\" 500 26 \""), "{text}");
    assert!(!line("/null-status").ends_with(" aborted"), "{text}");
    assert!(line("/over-length").contains("\" 200 3 \""), "{text}");
    assert!(line("/over-length").ends_with(" aborted"), "{text}");
    assert!(
        line("GET /pid").contains(&format!("\" 200 {pid_len} \"")),
        "{text}"
    );
    assert!(!line("GET /pid").ends_with(" aborted"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--log-level critical` shows what costs service (a worker that crashed)
/// and nothing else: not info lines, not an app's mistake that cost only
/// its request.
#[test]
fn log_level_critical_shows_only_what_costs_service() {
    // Nothing says "listening" at this level: the port is chosen up front.
    let addr: std::net::SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let server = server::serve(plugin_spec(&artifacts::mistakes_c(), "app"))
        .bind(&addr.to_string())
        .args(["--log-level", "critical"])
        .spawn();
    let status = |target: &str| {
        client::Conn::try_connect(addr).ok().and_then(|mut c| {
            c.try_send(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .ok()?;
            c.try_read_response().ok().map(|r| r.status)
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status("/pid") != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "never served:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status("/null-status"), Some(500));
    let _ = status("/crash");
    let logs = server.wait_for_log("SIGSEGV", Duration::from_secs(10));
    while status("/pid") != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "not serving again:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = format!("{logs}{}", server.logs());
    assert!(
        !logs.contains("app error"),
        "a request's mistake at critical:\n{logs}"
    );
    assert!(
        !logs.contains(" INFO ") && !logs.contains(" WARN "),
        "{logs}"
    );
}
