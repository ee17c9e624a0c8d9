//! HTTP/1.1 as the host speaks it, through the `hello` and `echo` plugins:
//! response framing, keep-alive and pipelining, request bodies, the environ,
//! `Expect: 100-continue`, malformed requests and the idle timeout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use integration_tests::artifacts;
use integration_tests::client::{is_imf_fixdate, Chunk, Conn, Response};
use integration_tests::json;
use integration_tests::server::{self, Server};

const GET_HELLO: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

fn hello() -> Server {
    server::serve(artifacts::rust_plugin("hello")).start()
}

fn echo() -> Server {
    server::serve(artifacts::rust_plugin("echo")).start()
}

// ---------------------------------------------------------------------------
// hello: the response head

#[test]
fn hello_get() {
    let server = hello();
    let mut conn = server.connect();
    conn.send(GET_HELLO);
    let resp = conn.read_response();
    assert_eq!(resp.version, "HTTP/1.1", "{}", resp.raw_head);
    assert_eq!(
        (resp.status, resp.reason.as_str()),
        (200, "OK"),
        "{}",
        resp.raw_head
    );
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain"),
        "{}",
        resp.raw_head
    );
    assert_eq!(
        resp.header("content-length"),
        Some("13"),
        "{}",
        resp.raw_head
    );
    assert!(!resp.chunked, "{}", resp.raw_head);
    let date = resp.header("date").unwrap_or_default();
    assert!(is_imf_fixdate(date), "Date {date:?} is not an IMF-fixdate");
    assert!(
        resp.header("server").is_some_and(|s| !s.is_empty()),
        "{}",
        resp.raw_head
    );
    assert_eq!(resp.body, b"Hello, World!");
    // Exactly one of each framing and identity header.
    for name in ["content-length", "date", "server", "content-type"] {
        assert_eq!(
            resp.header_all(name).len(),
            1,
            "{name} in {}",
            resp.raw_head
        );
    }
}

#[test]
fn hello_post_is_405() {
    let server = hello();
    let mut conn = server.connect();
    conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    let resp = conn.read_response();
    assert_eq!(resp.status, 405, "{}", resp.raw_head);
    assert_eq!(resp.header("allow"), Some("GET, HEAD"), "{}", resp.raw_head);
    // The unread body was skipped: the connection still works.
    conn.send(GET_HELLO);
    assert_eq!(conn.read_response().body, b"Hello, World!");
}

#[test]
fn hello_head_has_the_get_head_and_no_body() {
    let server = hello();
    let mut conn = server.connect();
    conn.send(GET_HELLO);
    let get = conn.read_response();
    conn.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = conn.read_head_response();
    assert_eq!(head.status, 200, "{}", head.raw_head);
    assert_eq!(
        head.header("content-length"),
        Some("13"),
        "{}",
        head.raw_head
    );
    assert_eq!(head.header("content-type"), Some("text/plain"));
    // Had the server sent body bytes after the HEAD head, they would be read
    // as the start of the next response.
    conn.send(GET_HELLO);
    let after = conn.read_response();
    assert_eq!(
        (after.status, after.body.as_slice()),
        (200, &b"Hello, World!"[..]),
        "{after:?}"
    );
    let names = |r: &Response| r.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&head), names(&get));
}

// ---------------------------------------------------------------------------
// Connection management

#[test]
fn http11_keeps_the_connection_alive() {
    let server = hello();
    let mut conn = server.connect();
    for i in 0..3 {
        conn.send(GET_HELLO);
        let resp = conn.read_response();
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (200, &b"Hello, World!"[..]),
            "request {i}"
        );
        assert!(
            !resp.connection_has("close"),
            "request {i}: {}",
            resp.raw_head
        );
    }
}

#[test]
fn connection_close_is_honoured() {
    let server = hello();
    let mut conn = server.connect();
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let resp = conn.read_response();
    assert_eq!(resp.status, 200);
    assert!(resp.connection_has("close"), "{}", resp.raw_head);
    conn.expect_closed(Duration::from_secs(3));
}

#[test]
fn http10_closes_by_default() {
    let server = hello();
    let mut conn = server.connect();
    conn.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    let resp = conn.read_response();
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"Hello, World!"[..])
    );
    assert!(!resp.connection_has("keep-alive"), "{}", resp.raw_head);
    conn.expect_closed(Duration::from_secs(3));
}

#[test]
fn http10_keep_alive_persists() {
    let server = hello();
    let mut conn = server.connect();
    for i in 0..2 {
        conn.send(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
        let resp = conn.read_response();
        assert_eq!(resp.status, 200, "request {i}");
        assert!(
            resp.connection_has("keep-alive"),
            "request {i}: {}",
            resp.raw_head
        );
        // A 1.0 client cannot read chunked: the body must be length-framed.
        assert!(
            !resp.chunked && resp.header("content-length").is_some(),
            "{}",
            resp.raw_head
        );
    }
}

#[test]
fn idle_keep_alive_connections_time_out() {
    let server = server::serve(artifacts::rust_plugin("hello"))
        .args(["--keep-alive", "1"])
        .start();
    let mut conn = server.connect();
    conn.send(GET_HELLO);
    assert_eq!(conn.read_response().status, 200);
    let waited = conn.expect_closed(Duration::from_secs(3));
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}, before the 1 s keep-alive elapsed"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = echo();
    let mut conn = server.connect();
    conn.send(
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
          GET /three HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let uris: Vec<String> = (0..3)
        .map(|_| {
            let resp = conn.read_response();
            assert_eq!(resp.status, 200, "{}", resp.raw_head);
            Echoed::parse(&resp).uri
        })
        .collect();
    assert_eq!(uris, ["/one", "/two", "/three"]);
}

/// Each chunk of a slow body goes out as soon as it is produced: the first
/// arrives long before the last is made.
fn assert_streamed(route: &str) {
    let server = server::serve(artifacts::rust_plugin("stream")).start();
    let mut conn = server.connect();
    let started = Instant::now();
    conn.send(format!("GET /{route}?n=3&delay_ms=400 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{}", head.raw_head);
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "{}",
        head.raw_head
    );
    assert_eq!(conn.read_chunk(), Chunk::Data(b"chunk 0\n".to_vec()));
    let first = started.elapsed();
    assert!(
        first < Duration::from_millis(300),
        "first chunk after {first:?}: held back"
    );
    assert_eq!(conn.read_chunk(), Chunk::Data(b"chunk 1\n".to_vec()));
    assert_eq!(conn.read_chunk(), Chunk::Data(b"chunk 2\n".to_vec()));
    assert_eq!(conn.read_chunk(), Chunk::End);
    let all = started.elapsed();
    assert!(
        all >= Duration::from_millis(750),
        "the whole body took only {all:?}"
    );
}

#[test]
fn iterator_chunks_are_sent_as_produced() {
    assert_streamed("iter");
}

#[test]
fn written_chunks_are_sent_as_produced() {
    assert_streamed("write");
}

// ---------------------------------------------------------------------------
// echo: what the application sees

/// The echo plugin's answer, base64 decoded.
#[derive(Debug)]
struct Echoed {
    method: String,
    version: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Echoed {
    fn parse(resp: &Response) -> Echoed {
        let text = resp.text();
        let doc = json::parse(&text).unwrap_or_else(|e| panic!("echo sent bad JSON ({e}): {text}"));
        let bytes = |v: &json::Value| {
            let s = v
                .as_str()
                .unwrap_or_else(|| panic!("not a string: {v:?} in {text}"));
            BASE64
                .decode(s)
                .unwrap_or_else(|e| panic!("bad base64 {s:?} ({e}) in {text}"))
        };
        let string = |v: &json::Value| String::from_utf8(bytes(v)).expect("UTF-8");
        let member = |key: &str| {
            doc.get(key)
                .unwrap_or_else(|| panic!("no {key:?} in {text}"))
        };
        let headers = member("headers")
            .as_array()
            .unwrap_or_else(|| panic!("headers is not an array in {text}"))
            .iter()
            .map(|pair| match pair.as_array() {
                Some([name, value]) => (string(name), string(value)),
                _ => panic!("header is not a [name, value] pair: {pair:?}"),
            })
            .collect();
        Echoed {
            method: string(member("method")),
            version: string(member("version")),
            uri: string(member("uri")),
            headers,
            body: bytes(member("body")),
        }
    }
}

fn echo_request(server: &Server, request: &[u8]) -> Echoed {
    let mut conn = server.connect();
    conn.send(request);
    let resp = conn.read_response();
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    Echoed::parse(&resp)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn echo_sees_method_version_raw_uri_and_headers_in_order() {
    let server = echo();
    let seen = echo_request(
        &server,
        b"GET /a%20b?x=1&y HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: Value\r\nx-lower: v2\r\n\
          X-Dup: 1\r\nX-Dup: 2\r\nX-Spaces:   padded \t\r\n\r\n",
    );
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.uri, "/a%20b?x=1&y");
    assert_eq!(
        seen.headers,
        pairs(&[
            ("Host", "x"),
            ("X-Mixed-Case", "Value"),
            ("x-lower", "v2"),
            ("X-Dup", "1"),
            ("X-Dup", "2"),
            ("X-Spaces", "padded"),
        ])
    );
    assert!(seen.body.is_empty());
}

#[test]
fn echo_sees_a_content_length_body() {
    let server = echo();
    let body: Vec<u8> = (0..=255u8).collect();
    let mut request = format!(
        "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let seen = echo_request(&server, &request);
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.body, body);
}

#[test]
fn echo_sees_a_dechunked_body_without_the_trailer() {
    let server = echo();
    let mut conn = server.connect();
    conn.send(
        b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          4;name=value\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n\
          0\r\nX-Trailer: secret\r\n\r\n",
    );
    let seen = Echoed::parse(&conn.read_response());
    assert_eq!(seen.body, b"Wikipedia in\r\n\r\nchunks.");
    assert!(
        !seen
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("x-trailer")),
        "the trailer leaked into the headers: {:?}",
        seen.headers
    );
    // The trailer was consumed with the body: the next request parses.
    conn.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(Echoed::parse(&conn.read_response()).uri, "/next");
}

#[test]
fn echo_sees_a_body_sent_in_two_writes() {
    let server = echo();
    let mut conn = server.connect();
    conn.send(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello");
    // The pause is the stimulus: the server must wait for the rest.
    std::thread::sleep(Duration::from_millis(300));
    conn.send(b"world");
    let seen = Echoed::parse(&conn.read_response());
    assert_eq!(seen.body, b"helloworld");
}

/// `GET /__environ...` answers `KEY=VALUE` lines.
fn environ(conn: &mut Conn, request: &str) -> HashMap<String, String> {
    conn.send(request.as_bytes());
    let resp = conn.read_response();
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    resp.text()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn assert_vars(env: &HashMap<String, String>, expected: &[(&str, &str)]) {
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(k, v)| env.get(*k).map(String::as_str) != Some(*v))
        .map(|(k, v)| format!("{k}: want {v:?}, got {:?}", env.get(*k)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{}\nwhole environ: {env:#?}",
        wrong.join("\n")
    );
}

#[test]
fn echo_environ_for_a_get() {
    let server = echo();
    let mut conn = server.connect();
    let port = server.port().to_string();
    let local_port = conn.local_port().to_string();
    let host = format!("localhost:{port}");
    let env = environ(
        &mut conn,
        &format!("GET /__environ/x%20y?q=1 HTTP/1.1\r\nHost: {host}\r\nX-Custom-Header: v\r\n\r\n"),
    );
    assert_vars(
        &env,
        &[
            ("REQUEST_METHOD", "GET"),
            ("SCRIPT_NAME", ""),
            ("PATH_INFO", "/__environ/x y"),
            ("QUERY_STRING", "q=1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_NAME", "localhost"),
            ("SERVER_PORT", &port),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_PORT", &local_port),
            ("HTTP_HOST", &host),
            ("HTTP_X_CUSTOM_HEADER", "v"),
            ("wsgi.url_scheme", "http"),
        ],
    );
}

/// RFC 9112 §3.2.2: with an absolute-form target the server uses the
/// target's host and ignores Host, so SERVER_NAME is the target's. The same
/// head twice on one connection: the second is the one an app thread
/// remembers (host/src/memo.rs), and must read the same.
#[test]
fn absolute_form_target_names_the_server() {
    let server = echo();
    let mut conn = server.connect();
    for _ in 0..2 {
        let env = environ(
            &mut conn,
            "GET http://target.example:8080/__environ/a%2Fb?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
        );
        assert_vars(
            &env,
            &[
                ("SERVER_NAME", "target.example"),
                ("PATH_INFO", "/__environ/a/b"),
                ("QUERY_STRING", "x=1"),
                (
                    "REQUEST_URI",
                    "http://target.example:8080/__environ/a%2Fb?x=1",
                ),
                ("HTTP_HOST", "other.example"),
            ],
        );
    }
}

#[test]
fn echo_environ_for_a_post() {
    let server = echo();
    let mut conn = server.connect();
    let env = environ(
        &mut conn,
        "POST /__environ HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 5\r\n\r\nhello",
    );
    assert_vars(
        &env,
        &[
            ("REQUEST_METHOD", "POST"),
            ("PATH_INFO", "/__environ"),
            ("QUERY_STRING", ""),
            ("CONTENT_TYPE", "text/plain; charset=utf-8"),
            ("CONTENT_LENGTH", "5"),
            ("SERVER_NAME", "x"),
        ],
    );
    // The body was consumed (read or skipped) and the connection goes on.
    conn.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(Echoed::parse(&conn.read_response()).uri, "/after");
}

#[test]
fn expect_100_continue_then_body() {
    let server = echo();
    let mut conn = server.connect();
    conn.send(
        b"POST /expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n",
    );
    let interim = conn.read_response();
    assert_eq!(
        (
            interim.version.as_str(),
            interim.status,
            interim.reason.as_str()
        ),
        ("HTTP/1.1", 100, "Continue"),
        "{}",
        interim.raw_head
    );
    conn.send(b"payload");
    let resp = conn.read_response();
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(Echoed::parse(&resp).body, b"payload");
}

// ---------------------------------------------------------------------------
// Malformed requests: a 4xx/5xx, then the server closes the connection.

fn assert_rejected(request: &[u8], status: u16) {
    let server = echo();
    let mut conn = server.connect();
    // The server may stop reading (and even close) before all of a long
    // request is written; the response is what matters.
    let _ = conn.try_send(request);
    let resp = conn.read_response();
    assert_eq!(
        resp.status,
        status,
        "for {:?}: got {}",
        String::from_utf8_lossy(&request[..request.len().min(120)]),
        resp.raw_head
    );
    conn.expect_closed(Duration::from_secs(3));
    // The server itself is unharmed.
    let mut again = server.connect();
    again.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(again.read_response().status, 200);
}

#[test]
fn missing_host_on_http11_is_400() {
    assert_rejected(b"GET / HTTP/1.1\r\n\r\n", 400);
}

#[test]
fn non_numeric_content_length_is_400() {
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        400,
    );
}

#[test]
fn chunked_with_content_length_is_400() {
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn bad_chunk_size_is_400() {
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
    );
}

#[test]
fn unknown_transfer_coding_is_501() {
    // RFC 9110 §6.1: SHOULD 501 for a coding the server does not implement,
    // when the framing itself (chunked last) is sound.
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    );
}

#[test]
fn chunked_not_final_is_400() {
    // RFC 9112 §6.3 item 4: MUST 400 and close.
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxxxx",
        400,
    );
}

#[test]
fn header_line_over_8190_bytes_is_431() {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_rejected(request.as_bytes(), 431);
}

#[test]
fn request_line_over_4094_bytes_is_414() {
    let request = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(5000));
    assert_rejected(request.as_bytes(), 414);
}

#[test]
fn http2_request_line_is_505() {
    assert_rejected(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
}

#[test]
fn unknown_expectation_is_417() {
    assert_rejected(
        b"GET / HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n",
        417,
    );
}

/// RFC 9112 §9.6: a server that closes while the client may still be
/// sending closes in stages: it half-closes (the client reads its 413, then
/// a clean EOF, not a reset) and keeps reading and dropping what is in
/// flight for a while, so the client's unfinished upload is not reset — a
/// reset can destroy the response before the client reads it.
#[test]
fn a_rejected_upload_is_closed_in_stages() {
    use std::io::{Read, Write};
    let server = server::serve(artifacts::rust_plugin("echo"))
        .args(["--limit-request-body", "1000"])
        .start();
    let mut s = std::net::TcpStream::connect(server.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    s.write_all(&[b'x'; 2000]).unwrap();
    let mut response = Vec::new();
    let eof = loop {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413 "), "got {text:?}");
    assert!(text.contains("Connection: close\r\n"), "got {text:?}");
    assert!(
        eof.is_ok(),
        "expected a clean EOF after the 413, got {eof:?}"
    );
    // The rest of the upload is still accepted (and dropped) for a moment.
    for _ in 0..10 {
        s.write_all(&[b'x'; 4096])
            .expect("the server reset the connection instead of draining it");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// What the app is not shown

/// `X_Forwarded_For` would read as `X-Forwarded-For` once mapped to CGI
/// names: by default such headers are dropped everywhere, the raw list
/// included, so no app (nor a WSGI bridge mapping the raw list) sees them.
#[test]
fn header_names_with_underscores_are_dropped_by_default() {
    let server = echo();
    let seen = echo_request(
        &server,
        b"GET /u HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\
          X_Forwarded_For: 6.6.6.6\r\nX_Only: y\r\n\r\n",
    );
    assert_eq!(
        seen.headers,
        pairs(&[("Host", "x"), ("X-Forwarded-For", "10.0.0.1")])
    );
    let mut conn = server.connect();
    let env = environ(
        &mut conn,
        "GET /__environ HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\
         X_Forwarded_For: 6.6.6.6\r\n\r\n",
    );
    assert_vars(&env, &[("HTTP_X_FORWARDED_FOR", "10.0.0.1")]);
}

#[test]
fn header_map_refuse_answers_400() {
    let server = server::serve(artifacts::rust_plugin("echo"))
        .args(["--header-map", "refuse"])
        .start();
    let mut conn = server.connect();
    conn.send(b"GET /u HTTP/1.1\r\nHost: x\r\nX_Only: y\r\n\r\n");
    assert_eq!(conn.read_response().status, 400);
    let seen = echo_request(&server, b"GET /u HTTP/1.1\r\nHost: x\r\nX-Ok: y\r\n\r\n");
    assert_eq!(seen.headers, pairs(&[("Host", "x"), ("X-Ok", "y")]));
}

/// gunicorn's `dangerous`: kept, and mapped like their `-` twins.
#[test]
fn header_map_dangerous_passes_them_on() {
    let server = server::serve(artifacts::rust_plugin("echo"))
        .args(["--header-map", "dangerous"])
        .start();
    let seen = echo_request(&server, b"GET /u HTTP/1.1\r\nHost: x\r\nX_Only: y\r\n\r\n");
    assert_eq!(seen.headers, pairs(&[("Host", "x"), ("X_Only", "y")]));
    let mut conn = server.connect();
    let env = environ(
        &mut conn,
        "GET /__environ HTTP/1.1\r\nHost: x\r\nX-Twin: a\r\nX_Twin: b\r\n\r\n",
    );
    assert_vars(&env, &[("HTTP_X_TWIN", "a, b")]);
}

/// A decoded NUL would end the path early for an app using C strings.
#[test]
fn percent_encoded_nul_in_the_path_is_400() {
    assert_rejected(b"GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    assert_rejected(b"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn host_port_out_of_range_is_400() {
    for host in ["a:99999", "a:65536", "[::1]:70000"] {
        assert_rejected(
            format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
            400,
        );
    }
    assert_rejected(b"GET http://a:65536/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

/// gunicorn reads a limit of 0 as "no limit": here, the most allowed.
#[test]
fn a_request_line_limit_of_zero_allows_the_most() {
    let server = server::serve(artifacts::rust_plugin("echo"))
        .args([
            "--limit-request-line",
            "0",
            "--limit-request-field_size",
            "0",
        ])
        .start();
    let long = "a".repeat(20_000);
    let seen = echo_request(
        &server,
        format!("GET /{long} HTTP/1.1\r\nHost: x\r\nX-Long: {long}\r\n\r\n").as_bytes(),
    );
    assert_eq!(seen.uri.len(), long.len() + 1);
}
