//! ABI 1.2 through the C test plugin, seen from the client: the
//! `/v12/` routes of `plugins/testapps-c` use `start_response_static`
//! (heads declared `static const`, which the host may remember by address)
//! and `write_last` (the whole rest of the body in one call).
//!
//! Each route checks the return codes it gets. Where it can still answer,
//! a wrong one becomes a body "unexpected rc=<rc>"; once the body is
//! complete it logs "v12-unexpected: ..." and fails the request instead, so
//! every test ends with [`assert_no_unexpected`].

use std::time::{Duration, Instant};

use integration_tests::artifacts;
use integration_tests::client::{self, Chunk, Conn, Response};
use integration_tests::server::{self, plugin_spec, Serve, Server};

fn serve() -> Serve {
    server::serve(plugin_spec(&artifacts::testapps_c(), "app"))
}

fn start() -> Server {
    serve().start()
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

fn head(target: &str) -> Vec<u8> {
    format!("HEAD {target} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// Reads a response that must arrive whole; if the connection closes
/// first, fails with the host's log (where the plugin says which call
/// returned what).
fn read_whole(server: &Server, conn: &mut Conn) -> Response {
    conn.try_read_response()
        .unwrap_or_else(|e| panic!("{e}; host log:\n{}", server.logs()))
}

/// Sends `GET target` on `conn` and reads the whole response.
fn get_on(server: &Server, conn: &mut Conn, target: &str) -> Response {
    conn.send(&get(target));
    read_whole(server, conn)
}

/// The raw response with the Date value blanked out.
fn without_date(resp: &Response) -> String {
    let raw = String::from_utf8_lossy(&resp.raw).into_owned();
    match resp.header("date") {
        Some(date) => raw.replacen(date, "<date>", 1),
        None => raw,
    }
}

/// The headers without Date, which may differ between two responses.
fn headers_but_date(resp: &Response) -> Vec<(String, String)> {
    resp.headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("date"))
        .cloned()
        .collect()
}

/// Nothing more arrives on `conn` for a while, and it stays open: no stray
/// body bytes after the last response.
fn assert_quiet(conn: &mut Conn) {
    match conn.await_data(Duration::from_millis(300)) {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!(
            "expected silence on an open connection, got {other:?}; unread: {:?}",
            String::from_utf8_lossy(conn.unread())
        ),
    }
}

/// The host logged nothing of the plugin's "v12-unexpected" kind. A `/log`
/// request is the barrier: its marker is logged after everything the
/// earlier requests logged, so once it is in, so is all the rest.
fn assert_no_unexpected(server: &Server) {
    const MARKER: &str = "testapps-log-marker from c";
    let before = server.logs().matches(MARKER).count();
    let resp = client::get(server.addr(), "/log");
    assert_eq!((resp.status, resp.text().as_str()), (200, "logged"));
    let logs = server.wait_for_log_count(MARKER, before + 1, Duration::from_secs(5));
    assert!(
        !logs.contains("v12-unexpected"),
        "a host call returned what the plugin did not expect; log:\n{logs}"
    );
    assert!(
        !logs.contains("panicked"),
        "the host panicked; log:\n{logs}"
    );
}

/// The 500 the host answers itself, on an open connection.
fn assert_host_500(server: &Server, resp: &Response) {
    let context = || format!("{resp:?}\nhost log:\n{}", server.logs());
    assert_eq!(resp.status, 500, "{}", context());
    assert_eq!(resp.text(), "500 Internal Server Error\n", "{}", context());
    assert!(resp.complete, "{}", context());
    assert!(!resp.connection_has("close"), "{}", context());
}

// ---------------------------------------------------------------------------
// A static head and write_last: the whole response

#[test]
fn static_head_and_write_last_are_framed_with_content_length() {
    let server = start();
    let mut conn = server.connect();

    let resp = get_on(&server, &mut conn, "/v12/static");
    assert_eq!(
        without_date(&resp),
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/plain\r\n\
         X-Head: static\r\n\
         Date: <date>\r\n\
         Server: nwsgi-host\r\n\
         Content-Length: 12\r\n\
         \r\n\
         static body\n"
    );
    assert!(resp.complete && !resp.chunked, "{resp:?}");

    // HEAD: the same head, Content-Length as for GET, no body byte (the next
    // response on the connection would not parse otherwise).
    conn.send(&head("/v12/static"));
    let head_resp = conn.read_head_response();
    assert_eq!(
        without_date(&head_resp),
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/plain\r\n\
         X-Head: static\r\n\
         Date: <date>\r\n\
         Server: nwsgi-host\r\n\
         Content-Length: 12\r\n\
         \r\n"
    );

    // write_last of nothing (data NULL): Content-Length 0.
    let empty = get_on(&server, &mut conn, "/v12/static-empty");
    assert_eq!(
        (empty.status, empty.header("content-length"), empty.text()),
        (200, Some("0"), String::new()),
        "{}",
        empty.raw_head
    );
    assert_eq!(empty.header("x-head"), Some("static"));
    assert!(empty.complete && !empty.chunked, "{empty:?}");
    assert_eq!(empty.header("transfer-encoding"), None);

    conn.send(&head("/v12/static-empty"));
    let empty_head = conn.read_head_response();
    assert_eq!(headers_but_date(&empty_head), headers_but_date(&empty));

    // And GET again after the HEADs, on the same connection.
    let again = get_on(&server, &mut conn, "/v12/static");
    assert_eq!(without_date(&again), without_date(&resp));
    assert_quiet(&mut conn);
    assert_no_unexpected(&server);
}

#[test]
fn static_head_and_write_last_answer_pipelined_requests_in_order() {
    let server = start();
    let mut conn = server.connect();
    let mut batch = Vec::new();
    for target in ["/v12/static", "/v12/static-empty", "/v12/static"] {
        batch.extend_from_slice(&get(target));
    }
    batch.extend_from_slice(&head("/v12/static"));
    conn.send(&batch);
    let bodies: Vec<String> = (0..3)
        .map(|_| read_whole(&server, &mut conn).text())
        .collect();
    assert_eq!(bodies, ["static body\n", "", "static body\n"]);
    let head_resp = conn.read_head_response();
    assert_eq!(head_resp.header("content-length"), Some("12"));
    assert_quiet(&mut conn);
    assert_no_unexpected(&server);
}

// ---------------------------------------------------------------------------
// Heads the host may remember by address

/// What one of the /v12/head-* routes answers.
struct Expected {
    target: &'static str,
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    x_head: &'static str,
    cache_control: Option<&'static str>,
    body: &'static str,
}

const HEAD_A: Expected = Expected {
    target: "/v12/head-a",
    status: 200,
    reason: "OK",
    content_type: "text/plain",
    x_head: "a",
    cache_control: None,
    body: "head a\n",
};

const HEAD_B: Expected = Expected {
    target: "/v12/head-b",
    status: 201,
    reason: "Created",
    content_type: "application/json",
    x_head: "b",
    cache_control: Some("no-store"),
    body: "{\"head\":\"b\"}\n",
};

/// The 1.0 start_response, in between: a head not known by address.
const HEAD_DYNAMIC: Expected = Expected {
    target: "/v12/head-dynamic",
    status: 202,
    reason: "Accepted",
    content_type: "text/html",
    x_head: "dynamic",
    cache_control: None,
    body: "dynamic head\n",
};

fn assert_answer(resp: &Response, want: &Expected, step: usize) {
    let context = format!("step {step}, {}:\n{}", want.target, resp.raw_head);
    assert_eq!(
        (resp.status, resp.reason.as_str()),
        (want.status, want.reason),
        "{context}"
    );
    assert_eq!(
        resp.header_all("content-type"),
        [want.content_type],
        "{context}"
    );
    assert_eq!(resp.header_all("x-head"), [want.x_head], "{context}");
    assert_eq!(
        resp.header("cache-control"),
        want.cache_control,
        "{context}"
    );
    assert_eq!(resp.text(), want.body, "{context}");
    let len = want.body.len().to_string();
    assert_eq!(
        resp.header_all("content-length"),
        [len.as_str()],
        "{context}"
    );
    assert!(resp.complete && !resp.chunked, "{context}");
    assert!(!resp.connection_has("close"), "{context}");
}

const SEQUENCE: [&Expected; 10] = [
    &HEAD_A,
    &HEAD_B,
    &HEAD_A,
    &HEAD_DYNAMIC,
    &HEAD_A,
    &HEAD_B,
    &HEAD_DYNAMIC,
    &HEAD_B,
    &HEAD_B,
    &HEAD_A,
];

#[test]
fn alternating_static_heads_each_keep_their_own_head() {
    let server = start();
    let mut conn = server.connect();
    for (step, want) in SEQUENCE.iter().enumerate() {
        let resp = get_on(&server, &mut conn, want.target);
        assert_answer(&resp, want, step);
    }
    // HEAD requests in between, on the same connection.
    for (step, want) in [&HEAD_B, &HEAD_A, &HEAD_DYNAMIC, &HEAD_A]
        .into_iter()
        .enumerate()
    {
        conn.send(&head(want.target));
        let resp = conn.read_head_response();
        assert_eq!(
            resp.status, want.status,
            "HEAD step {step}: {}",
            resp.raw_head
        );
        assert_eq!(
            resp.header("x-head"),
            Some(want.x_head),
            "{}",
            resp.raw_head
        );
        let len = want.body.len().to_string();
        assert_eq!(resp.header("content-length"), Some(len.as_str()));
    }
    assert_quiet(&mut conn);
    assert_no_unexpected(&server);
}

#[test]
fn alternating_static_heads_pipelined_each_keep_their_own_head() {
    let server = start();
    let mut conn = server.connect();
    let batch: Vec<u8> = SEQUENCE.iter().flat_map(|want| get(want.target)).collect();
    conn.send(&batch);
    for (step, want) in SEQUENCE.iter().enumerate() {
        let resp = read_whole(&server, &mut conn);
        assert_answer(&resp, want, step);
    }
    assert_quiet(&mut conn);
    assert_no_unexpected(&server);
}

#[test]
fn invalid_static_head_is_refused_every_time() {
    let server = start();
    let mut conn = server.connect();
    // Refused twice in a row, again after a valid static head, and a
    // hop-by-hop one the same: E_INVALID each time (the route answers
    // 200 "unexpected rc=..." otherwise), so the host answers 500.
    let steps = [
        "/v12/bad-value",
        "/v12/bad-value",
        "/v12/static",
        "/v12/bad-value",
        "/v12/bad-hop",
        "/v12/bad-hop",
        "/v12/static",
        "/v12/bad-hop",
        "/v12/static",
        // An invalid 1.0 head between uses of the same static head.
        "/bad-header",
        "/v12/static",
        "/v12/bad-value",
    ];
    let mut refused = 0;
    for (step, target) in steps.into_iter().enumerate() {
        let resp = get_on(&server, &mut conn, target);
        if target == "/v12/static" {
            assert_eq!(
                (resp.status, resp.text().as_str()),
                (200, "static body\n"),
                "step {step}: {}",
                resp.raw_head
            );
            continue;
        }
        refused += 1;
        assert_host_500(&server, &resp);
        let raw = String::from_utf8_lossy(&resp.raw);
        for leak in ["Injected", "X-Bad", "never sent", "unexpected"] {
            assert!(
                !raw.contains(leak),
                "step {step} {target}: {leak} in {raw:?}"
            );
        }
        assert!(
            resp.header_all("connection").is_empty(),
            "step {step} {target}: the app's Connection header went out: {raw:?}"
        );
    }
    assert_quiet(&mut conn);
    let logs =
        server.wait_for_log_count("invalid response from app", refused, Duration::from_secs(5));
    assert_eq!(
        logs.matches("invalid response from app").count(),
        refused,
        "one log line per refused head; log:\n{logs}"
    );
    assert_no_unexpected(&server);
}

// ---------------------------------------------------------------------------
// write_last's state rules

#[test]
fn write_last_before_start_response_is_refused() {
    let server = start();
    let mut conn = server.connect();
    for _ in 0..2 {
        // E_STATE (the route answers 200 "unexpected rc=..." otherwise),
        // then no start_response at all: the host answers 500.
        let resp = get_on(&server, &mut conn, "/v12/last-before-start");
        assert_host_500(&server, &resp);
        assert!(!String::from_utf8_lossy(&resp.raw).contains("too early"));
        server.wait_for_log(
            "app returned without calling start_response",
            Duration::from_secs(5),
        );
        // The connection goes on.
        assert_eq!(
            get_on(&server, &mut conn, "/v12/static").text(),
            "static body\n"
        );
    }
    assert_quiet(&mut conn);
    assert_no_unexpected(&server);
}

#[test]
fn write_last_refused_before_start_response_has_no_effect() {
    let server = start();
    let mut conn = server.connect();
    for _ in 0..2 {
        let resp = get_on(&server, &mut conn, "/v12/late-start");
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.text(), "started after all\n");
    }
    assert_quiet(&mut conn);
    assert_no_unexpected(&server);
}

#[test]
fn write_last_completes_the_body() {
    let server = start();
    let mut conn = server.connect();
    for _ in 0..2 {
        // A second write_last, a write and an empty write_last after it
        // are refused with E_STATE; only the first write_last's bytes go out.
        let resp = get_on(&server, &mut conn, "/v12/last-twice");
        assert_eq!(
            without_date(&resp),
            "HTTP/1.1 200 OK\r\n\
             Content-Type: text/plain\r\n\
             Date: <date>\r\n\
             Server: nwsgi-host\r\n\
             Content-Length: 6\r\n\
             \r\n\
             first\n"
        );
    }
    // Nothing else follows, and the connection still serves.
    assert_quiet(&mut conn);
    assert_eq!(
        get_on(&server, &mut conn, "/v12/static").text(),
        "static body\n"
    );
    assert_no_unexpected(&server);
}

#[test]
fn write_then_write_last_streams_chunked_on_http_1_1() {
    let server = start();
    let mut conn = server.connect();
    for _ in 0..2 {
        let resp = get_on(&server, &mut conn, "/v12/write-then-last");
        assert_eq!(resp.status, 200, "{}", resp.raw_head);
        assert!(resp.chunked && resp.complete, "{resp:?}");
        assert_eq!(resp.header("content-length"), None, "{}", resp.raw_head);
        assert_eq!(
            resp.chunks,
            [b"written, ".to_vec(), b"then last\n".to_vec()],
            "{resp:?}"
        );
        assert_eq!(resp.text(), "written, then last\n");
        // The late write is refused: no third chunk (the route would log).
        assert!(!String::from_utf8_lossy(&resp.raw).contains("late"));
    }
    // HEAD: streamed the same way, but no body byte and no chunk framing.
    conn.send(&head("/v12/write-then-last"));
    let head_resp = conn.read_head_response();
    assert_eq!(head_resp.status, 200, "{}", head_resp.raw_head);
    assert_eq!(head_resp.header("content-length"), None);
    assert_eq!(
        get_on(&server, &mut conn, "/v12/static").text(),
        "static body\n"
    );
    assert_quiet(&mut conn);
    assert_no_unexpected(&server);
}

#[test]
fn write_then_write_last_is_close_delimited_on_http_1_0() {
    let server = start();
    let mut conn = server.connect();
    conn.send(b"GET /v12/write-then-last HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
    let resp = read_whole(&server, &mut conn);
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(resp.header("content-length"), None, "{}", resp.raw_head);
    assert_eq!(resp.header("transfer-encoding"), None, "{}", resp.raw_head);
    assert!(!resp.connection_has("keep-alive"), "{}", resp.raw_head);
    // read_response read to end of file: the whole body, then the close.
    assert_eq!(resp.text(), "written, then last\n");

    // Whereas a write_last body alone is known whole: Content-Length, and
    // the HTTP/1.0 connection may stay open.
    let mut conn = server.connect();
    conn.send(b"GET /v12/static HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
    let resp = read_whole(&server, &mut conn);
    assert_eq!(
        resp.header("content-length"),
        Some("12"),
        "{}",
        resp.raw_head
    );
    assert_eq!(resp.text(), "static body\n");
    assert!(resp.connection_has("keep-alive"), "{}", resp.raw_head);
    conn.send(b"GET /v12/static HTTP/1.0\r\nHost: x\r\n\r\n");
    assert_eq!(read_whole(&server, &mut conn).text(), "static body\n");
    assert_no_unexpected(&server);
}

// ---------------------------------------------------------------------------
// The app's own Content-Length

#[test]
fn write_last_shorter_than_content_length_closes_the_connection() {
    // A long keep-alive timeout: a host that kept the connection open would
    // leave the client waiting for the missing bytes.
    let server = serve().args(["--keep-alive", "30"]).start();
    let mut conn = server.connect();
    conn.send(&get("/v12/short-length"));
    let started = Instant::now();
    let resp = conn.read_response();
    let took = started.elapsed();
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(
        resp.header_all("content-length"),
        ["10"],
        "{}",
        resp.raw_head
    );
    assert_eq!(resp.text(), "short");
    assert!(
        !resp.complete,
        "the client must see the body is cut: {resp:?}"
    );
    assert!(took < Duration::from_secs(3), "the close took {took:?}");
    server.wait_for_log(
        "app body shorter than its Content-Length",
        Duration::from_secs(5),
    );
    assert_no_unexpected(&server);
}

#[test]
fn write_last_longer_than_content_length_is_cut_and_closes() {
    let server = serve().args(["--keep-alive", "30"]).start();
    let mut conn = server.connect();
    conn.send(&get("/v12/long-length"));
    let resp = read_whole(&server, &mut conn);
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(
        resp.header_all("content-length"),
        ["3"],
        "{}",
        resp.raw_head
    );
    assert_eq!(resp.text(), "too");
    // Not one byte more, and the connection closes.
    conn.expect_closed(Duration::from_secs(3));
    server.wait_for_log("more body than its Content-Length", Duration::from_secs(5));
    assert_no_unexpected(&server);
}

// ---------------------------------------------------------------------------
// write_last and a body iterator

/// `(next, close)` from /v12/counters.
fn iterator_counters(server: &Server) -> (u64, u64) {
    let text = client::get(server.addr(), "/v12/counters").text();
    let value = |key: &str| -> u64 {
        text.split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key}=N in /v12/counters: {text:?}"))
    };
    (value("next"), value("close"))
}

#[test]
fn write_last_with_an_iterator_closes_it_once_and_never_calls_next() {
    let server = start();
    assert_eq!(iterator_counters(&server), (0, 0));
    // A cut response says what the iterator saw.
    let read = |conn: &mut Conn| -> Response {
        conn.try_read_response().unwrap_or_else(|e| {
            panic!(
                "{e}; (next, close) = {:?}; host log:\n{}",
                iterator_counters(&server),
                server.logs()
            )
        })
    };
    let mut conn = server.connect();
    let mut requests = 0;
    for _ in 0..3 {
        conn.send(&get("/v12/last-with-iterator"));
        let resp = read(&mut conn);
        requests += 1;
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "from write_last\n"),
            "{}",
            resp.raw_head
        );
        assert_eq!(
            resp.header("content-length"),
            Some("16"),
            "{}",
            resp.raw_head
        );
        assert!(resp.complete && !resp.connection_has("close"), "{resp:?}");
    }
    // Pipelined, and HEAD.
    let mut batch = get("/v12/last-with-iterator");
    batch.extend_from_slice(&head("/v12/last-with-iterator"));
    batch.extend_from_slice(&get("/v12/last-with-iterator"));
    conn.send(&batch);
    assert_eq!(read(&mut conn).text(), "from write_last\n");
    let head_resp = conn.read_head_response();
    assert_eq!(head_resp.header("content-length"), Some("16"));
    assert_eq!(read(&mut conn).text(), "from write_last\n");
    requests += 3;
    assert_quiet(&mut conn);

    // close runs before the response is flushed, but poll anyway.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (next, close) = loop {
        let counts = iterator_counters(&server);
        if counts.1 >= requests || Instant::now() >= deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        (next, close),
        (0, requests),
        "next must never run after write_last, close once per request; log:\n{}",
        server.logs()
    );
    assert_no_unexpected(&server);
}

// ---------------------------------------------------------------------------
// exc_info with a static head

#[test]
fn static_exc_info_before_sending_replaces_the_head() {
    let server = start();
    let mut conn = server.connect();
    for _ in 0..2 {
        let resp = get_on(&server, &mut conn, "/v12/exc-before");
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (500, "replaced"),
            "{}",
            resp.raw_head
        );
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        assert_eq!(
            resp.header("content-length"),
            Some("8"),
            "{}",
            resp.raw_head
        );
        assert!(resp.complete && !resp.connection_has("close"), "{resp:?}");
        // The replaced head is gone for the next request.
        let next = get_on(&server, &mut conn, "/v12/last-twice");
        assert_eq!((next.status, next.text().as_str()), (200, "first\n"));
    }
    server.wait_for_log("static boom", Duration::from_secs(5));
    assert_no_unexpected(&server);
}

#[test]
fn static_exc_info_after_sending_aborts_the_connection() {
    let server = start();
    let mut conn = server.connect();
    conn.send(&get("/v12/exc-after"));
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{}", head.raw_head);
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "{}",
        head.raw_head
    );
    // E_HEADERS_SENT, or the route writes "unexpected rc=..." here.
    assert_eq!(conn.read_chunk(), Chunk::Data(b"partial".to_vec()));
    // No terminating zero-size chunk: the client must see the body is cut.
    assert_eq!(
        conn.read_chunk(),
        Chunk::Eof,
        "the aborted body was terminated"
    );
    server.wait_for_log("late static boom", Duration::from_secs(5));
    // The server lives on.
    assert_eq!(
        client::get(server.addr(), "/v12/static").text(),
        "static body\n"
    );
    assert_no_unexpected(&server);
}
