//! The `testapps` route table, served from the Rust plugin and from its C
//! twin: every test taking an [`App`] runs once for each (modules `rust` and
//! `c` at the bottom). The Rust-only ones exercise panics, which C has not.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::artifacts;
use integration_tests::client::{self, Chunk, Conn, Response};
use integration_tests::server::{self, plugin_spec, Serve, Server};

#[derive(Clone, Copy, Debug)]
enum App {
    Rust,
    C,
}

impl App {
    fn spec(self) -> String {
        match self {
            App::Rust => artifacts::rust_plugin("testapps")
                .to_str()
                .expect("a UTF-8 path")
                .to_owned(),
            App::C => plugin_spec(&artifacts::testapps_c(), "app"),
        }
    }

    fn serve(self) -> Serve {
        server::serve(self.spec())
    }

    fn start(self) -> Server {
        self.serve().start()
    }
}

fn get(server: &Server, target: &str) -> Response {
    client::get(server.addr(), target)
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

/// The server still answers, on a new connection.
fn assert_alive(server: &Server) {
    assert_ok(&get(server, "/last"), "last\n");
}

// ---------------------------------------------------------------------------
// Body framing

fn iter_is_chunked(app: App) {
    let resp = get(&app.start(), "/iter?n=3");
    assert_ok(&resp, "chunk 0\nchunk 1\nchunk 2\n");
    assert!(resp.chunked, "{}", resp.raw_head);
    assert_eq!(resp.header("content-length"), None, "{}", resp.raw_head);
}

fn write_is_chunked(app: App) {
    let resp = get(&app.start(), "/write?n=3");
    assert_ok(&resp, "chunk 0\nchunk 1\nchunk 2\n");
    assert!(resp.chunked, "{}", resp.raw_head);
    assert_eq!(resp.header("content-length"), None, "{}", resp.raw_head);
}

fn last_chunk_gets_content_length(app: App) {
    let resp = get(&app.start(), "/last");
    assert_ok(&resp, "last\n");
    assert!(!resp.chunked, "{}", resp.raw_head);
    assert_eq!(
        resp.header("content-length"),
        Some("5"),
        "{}",
        resp.raw_head
    );
    assert_eq!(resp.header("content-type"), Some("text/plain"));
}

fn empty_body_gets_content_length_0(app: App) {
    let resp = get(&app.start(), "/empty");
    assert_ok(&resp, "");
    assert_eq!(
        resp.header("content-length"),
        Some("0"),
        "{}",
        resp.raw_head
    );
    assert!(!resp.chunked, "{}", resp.raw_head);
}

// ---------------------------------------------------------------------------
// Application errors

fn error_is_500_and_the_server_lives_on(app: App) {
    let server = app.start();
    let resp = get(&server, "/error");
    assert_eq!(resp.status, 500, "{}", resp.raw_head);
    assert!(resp.complete, "{resp:?}");
    assert_alive(&server);
}

fn error_in_next_is_500(app: App) {
    let server = app.start();
    assert_eq!(get(&server, "/error-next").status, 500);
    assert_alive(&server);
}

fn second_start_response_is_refused(app: App) {
    // E_STATE is -3.
    assert_ok(&get(&app.start(), "/twice"), "second=-3");
}

fn exc_info_before_sending_replaces_the_response(app: App) {
    let resp = get(&app.start(), "/exc-before");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (500, "replaced"),
        "{}",
        resp.raw_head
    );
}

fn exc_info_after_sending_aborts_the_connection(app: App) {
    let server = app.start();
    let mut conn = server.connect();
    conn.send(b"GET /exc-after HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{}", head.raw_head);
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "{}",
        head.raw_head
    );
    assert_eq!(conn.read_chunk(), Chunk::Data(b"partial".to_vec()));
    // No terminating zero-size chunk: the client must see the body is cut.
    assert_eq!(
        conn.read_chunk(),
        Chunk::Eof,
        "the aborted body was terminated"
    );
    assert_alive(&server);
}

fn invalid_status_is_500_and_never_sent(app: App) {
    let resp = get(&app.start(), "/bad-status");
    assert_eq!(resp.status, 500, "{}", resp.raw_head);
    assert!(!resp.raw_head.contains("20 OK"), "{}", resp.raw_head);
}

fn header_injection_is_500_and_never_sent(app: App) {
    let resp = get(&app.start(), "/bad-header");
    assert_eq!(resp.status, 500, "{}", resp.raw_head);
    let raw = String::from_utf8_lossy(&resp.raw);
    assert!(!raw.contains("Injected"), "{raw}");
}

// ---------------------------------------------------------------------------
// Iterator life cycle

/// `(opened, closed)` from /counters.
fn counters(addr: SocketAddr) -> (u64, u64) {
    let text = client::get(addr, "/counters").text();
    let value = |key: &str| -> u64 {
        text.split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key}=N in /counters: {text:?}"))
    };
    (value("opened"), value("closed"))
}

/// Polls /counters until every iterator opened has been closed.
fn wait_all_closed(server: &Server, within: Duration) -> (u64, u64) {
    let deadline = Instant::now() + within;
    loop {
        let (opened, closed) = counters(server.addr());
        if opened == closed {
            return (opened, closed);
        }
        assert!(
            Instant::now() < deadline,
            "opened={opened} closed={closed} after {within:?}; log:\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn finished_iterators_are_closed(app: App) {
    let server = app.start();
    assert_ok(&get(&server, "/iter?n=3"), "chunk 0\nchunk 1\nchunk 2\n");
    let (opened, _) = wait_all_closed(&server, Duration::from_secs(5));
    assert_eq!(opened, 1);
}

fn disconnect_closes_an_endless_body(app: App) {
    let server = app.start();
    let mut conn = server.connect();
    conn.send(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{}", head.raw_head);
    for _ in 0..3 {
        assert_eq!(conn.read_chunk(), Chunk::Data(b"tick\n".to_vec()));
    }
    drop(conn);
    let (opened, _) = wait_all_closed(&server, Duration::from_secs(5));
    assert_eq!(opened, 1);
}

// ---------------------------------------------------------------------------
// Request data

fn input_reads_a_content_length_body(app: App) {
    let server = app.start();
    let body = "0123456789abcdefghij-the-body";
    let request = format!(
        "POST /input HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = client::request(server.addr(), request.as_bytes());
    assert_ok(&resp, &format!("len={}\n{body}", body.len()));
}

fn input_reads_a_chunked_body(app: App) {
    let server = app.start();
    let mut conn = server.connect();
    conn.send(
        b"POST /input HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n1\r\n!\r\n0\r\nT: t\r\n\r\n",
    );
    assert_ok(&conn.read_response(), "len=20\nabc0123456789abcdef!");
    // Exactly the body was consumed.
    conn.send(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_ok(&conn.read_response(), "last\n");
}

/// With request buffering (the default) the event loop reads the body
/// before the app runs: it says `100 Continue` as it starts (as nginx
/// does), and the final answer follows the body.
fn expect_continue_is_answered_when_the_body_is_read_ahead(app: App) {
    let server = app.start();
    let mut conn = server.connect();
    conn.send(
        b"GET /last HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    let interim = conn.read_head();
    assert_eq!(interim.status, 100, "{}", interim.raw_head);
    conn.send(b"abcd");
    assert_ok(&conn.read_response(), "last\n");
}

/// With `--no-request-buffering` the app decides: /last never reads the
/// body, so no `100` is sent, and since the body that was never sent
/// cannot be skipped, the answer closes the connection (and says so).
fn expect_continue_is_not_sent_when_the_app_does_not_read(app: App) {
    let server = app.serve().arg("--no-request-buffering").start();
    let mut conn = server.connect();
    conn.send(
        b"GET /last HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    let resp = conn.read_response();
    assert_ok(&resp, "last\n");
    assert!(resp.connection_has("close"), "{}", resp.raw_head);
    conn.expect_closed(Duration::from_secs(5));
}

/// With `--no-request-buffering`, a body the app did not read is dropped
/// before the next request, never read as one: here the body of a POST is
/// itself a request (`GET /empty`), which must not run, and the request
/// after it gets its own answer on the same connection.
fn unread_streamed_body_is_dropped_not_served(app: App) {
    let server = app.serve().arg("--no-request-buffering").start();
    let mut conn = server.connect();
    let smuggled = b"GET /empty HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut requests = format!(
        "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    requests.extend_from_slice(smuggled);
    requests.extend_from_slice(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n");
    conn.send(&requests);
    // The 404 route answers without reading the body.
    let first = conn.read_response();
    assert_eq!((first.status, first.text().as_str()), (404, "not found"));
    assert_ok(&conn.read_response(), "last\n");
    // Nothing else: the smuggled /empty (an empty 200) never ran.
    assert!(
        !conn.await_data(Duration::from_millis(300)).unwrap_or(false),
        "a third answer came: {:?}",
        String::from_utf8_lossy(conn.unread())
    );
}

fn environ_get_finds_headers(app: App) {
    let server = app.start();
    let resp = client::request(
        server.addr(),
        b"GET /get?key=HTTP_X_FOO HTTP/1.1\r\nHost: x\r\nX-Foo: bar\r\n\r\n",
    );
    assert_ok(&resp, "bar");
    let missing = get(&server, "/get?key=HTTP_X_FOO");
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (404, "absent"),
        "{}",
        missing.raw_head
    );
}

fn environ_get_joins_repeated_headers(app: App) {
    let server = app.start();
    let resp = client::request(
        server.addr(),
        b"GET /get?key=HTTP_X_FOO HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\nx-foo: b\r\n\r\n",
    );
    assert_ok(&resp, "a, b");
}

// ---------------------------------------------------------------------------
// Logging, configuration, threads

fn app_log_lines_reach_the_host_log(app: App) {
    let server = app.start();
    assert_ok(&get(&server, "/log"), "logged");
    server.wait_for_log("testapps-log-marker", Duration::from_secs(5));
}

fn app_args_reach_init_in_order(app: App) {
    let server = app
        .serve()
        .args(["--app-arg", "a=1", "--app-arg", "b=two"])
        .start();
    assert_ok(&get(&server, "/config"), "a=1\nb=two\n");
}

fn init_failure_is_reported(app: App) {
    let run = server::run([
        "serve",
        &app.spec(),
        "-b",
        "127.0.0.1:0",
        "--app-arg",
        "fail=1",
    ]);
    let line = run.error_line();
    assert!(line.contains("init refused: fail=1"), "{line:?}");
}

/// wsgi.multithread and wsgi.multiprocess say what the server does: more
/// than one app thread, more than one worker process.
fn threads_route_reports_multithread(app: App) {
    for (args, want) in [
        (
            ["--threads", "4", "-w", "1"],
            "multithread=1 multiprocess=0",
        ),
        (
            ["--threads", "1", "-w", "2"],
            "multithread=0 multiprocess=1",
        ),
        (
            ["--threads", "1", "-w", "1"],
            "multithread=0 multiprocess=0",
        ),
    ] {
        let resp = get(&app.serve().args(args).start(), "/threads");
        assert_eq!((resp.status, resp.text().as_str()), (200, want), "{args:?}");
    }
}

/// Sends `GET target` on a new connection without waiting for the answer.
fn send_get(server: &Server, target: &str) -> Conn {
    let mut conn = server.connect();
    conn.send(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    conn
}

fn sleeping_requests_do_not_stall_others(app: App) {
    let server = app.serve().args(["--threads", "4"]).start();
    let mut sleepers: Vec<Conn> = (0..3)
        .map(|_| send_get(&server, "/sleep?ms=1500"))
        .collect();
    let started = Instant::now();
    let resp = get(&server, "/last");
    let took = started.elapsed();
    assert_ok(&resp, "last\n");
    assert!(
        took < Duration::from_millis(500),
        "/last took {took:?} while 3 of 4 app threads slept"
    );
    for conn in &mut sleepers {
        assert_ok(&conn.read_response(), "slept 1500");
    }
}

fn busy_app_does_not_stall_the_server(app: App) {
    // One app thread, busy with an endless body (its first tick proves it
    // runs): requests the server answers by itself must still be answered
    // at once.
    let server = app.start();
    let mut endless = send_get(&server, "/endless");
    assert_eq!(endless.read_head().status, 200);
    assert_eq!(endless.read_chunk(), Chunk::Data(b"tick\n".to_vec()));
    let started = Instant::now();
    let resp = client::request(server.addr(), b"GET / HTTP/2.0\r\nHost: x\r\n\r\n");
    let took = started.elapsed();
    assert_eq!(resp.status, 505, "{}", resp.raw_head);
    assert!(
        took < Duration::from_millis(500),
        "a malformed request waited {took:?} while the app thread was busy"
    );
    assert_eq!(endless.read_chunk(), Chunk::Data(b"tick\n".to_vec()));
}

fn app_threads_bound_concurrency(app: App) {
    let server = app.serve().args(["--threads", "2"]).start();
    let started = Instant::now();
    let mut conns: Vec<Conn> = (0..4).map(|_| send_get(&server, "/sleep?ms=500")).collect();
    for conn in &mut conns {
        assert_ok(&conn.read_response(), "slept 500");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1600),
        "4 x 500 ms on 2 threads took {took:?}, expected two rounds"
    );
}

// ---------------------------------------------------------------------------
// Rust only: panics are caught at the boundary

mod rust_only {
    use super::*;

    #[test]
    fn panic_is_500_and_logged() {
        let server = App::Rust.start();
        let resp = get(&server, "/panic");
        assert_eq!(resp.status, 500, "{}", resp.raw_head);
        server.wait_for_log("testapps: /panic", Duration::from_secs(5));
        assert_alive(&server);
    }

    #[test]
    fn panic_in_next_is_500() {
        let server = App::Rust.start();
        assert_eq!(get(&server, "/panic-next").status, 500);
        assert_alive(&server);
    }

    #[test]
    fn panic_in_close_does_not_hurt_the_response() {
        let server = App::Rust.start();
        assert_ok(&get(&server, "/panic-close"), "ok\n");
        assert_alive(&server);
    }

    #[test]
    fn log_reaches_wsgi_errors_too() {
        let server = App::Rust.start();
        assert_ok(&get(&server, "/log"), "logged");
        server.wait_for_log("testapps-errors-marker", Duration::from_secs(5));
    }
}

/// TERM lets the last request finish, then runs the plugin's shutdown
/// (once), which still reaches the host's log, and the host exits 0.
fn term_runs_shutdown_after_the_last_request(app: App) {
    let mut server = app.serve().args(["--app-arg", "k=v"]).start();
    let addr = server.addr();
    let slow = thread::spawn(move || client::get(addr, "/sleep?ms=400"));
    // Let the request reach the app before TERM.
    thread::sleep(Duration::from_millis(150));
    server.terminate();
    assert_ok(&slow.join().expect("client thread"), "slept 400");
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit {status}; log:\n{}", server.logs());
    let logs = server.logs();
    assert_eq!(
        logs.matches("testapps-shutdown-marker").count(),
        1,
        "shutdown must run exactly once; log:\n{logs}"
    );
    assert!(
        logs.contains("(1 args)"),
        "shutdown saw init's state; log:\n{logs}"
    );
}

/// Runs each listed test for the Rust plugin and for the C plugin.
macro_rules! for_both_plugins {
    ($($name:ident),* $(,)?) => {
        mod rust {
            $(#[test] fn $name() { super::$name(super::App::Rust) })*
        }
        mod c {
            $(#[test] fn $name() { super::$name(super::App::C) })*
        }
    };
}

for_both_plugins!(
    iter_is_chunked,
    write_is_chunked,
    last_chunk_gets_content_length,
    empty_body_gets_content_length_0,
    error_is_500_and_the_server_lives_on,
    error_in_next_is_500,
    second_start_response_is_refused,
    exc_info_before_sending_replaces_the_response,
    exc_info_after_sending_aborts_the_connection,
    invalid_status_is_500_and_never_sent,
    header_injection_is_500_and_never_sent,
    finished_iterators_are_closed,
    disconnect_closes_an_endless_body,
    input_reads_a_content_length_body,
    input_reads_a_chunked_body,
    expect_continue_is_answered_when_the_body_is_read_ahead,
    expect_continue_is_not_sent_when_the_app_does_not_read,
    unread_streamed_body_is_dropped_not_served,
    environ_get_finds_headers,
    environ_get_joins_repeated_headers,
    app_log_lines_reach_the_host_log,
    app_args_reach_init_in_order,
    init_failure_is_reported,
    threads_route_reports_multithread,
    sleeping_requests_do_not_stall_others,
    busy_app_does_not_stall_the_server,
    app_threads_bound_concurrency,
    term_runs_shutdown_after_the_last_request,
);
