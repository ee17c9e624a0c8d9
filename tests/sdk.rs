//! The Rust SDK's `http`-typed API, served by the real host from
//! `plugins/notes`: `Environ::method/uri/headers`, `StartResponse::status`,
//! `?` on a serde_json error (a 400), the app's own JSON for every error
//! (`App::render_error`), and tracing lines that carry their request.

use std::time::Duration;

use integration_tests::artifacts;
use integration_tests::client::{self, Response};
use integration_tests::server::{self, Server};

const TIMEOUT: Duration = Duration::from_secs(10);

fn notes() -> Server {
    server::serve(artifacts::rust_plugin("notes")).start()
}

fn post(server: &Server, target: &str, body: &str) -> Response {
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client::request(server.addr(), request.as_bytes())
}

fn get(server: &Server, target: &str, extra: &str) -> Response {
    let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
    client::request(server.addr(), request.as_bytes())
}

fn assert_json(resp: &Response, status: u16, body: &str) {
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (status, body),
        "{}",
        resp.raw_head
    );
    assert_eq!(resp.header("content-type"), Some("application/json"));
}

#[test]
fn status_headers_and_http_types() {
    let server = notes();
    let created = post(&server, "/notes", r#"{"text":"buy milk"}"#);
    assert_json(&created, 201, r#"{"id":0,"text":"buy milk"}"#);
    // The canonical reason phrase comes from the StatusCode.
    assert_eq!(created.reason, "Created");
    assert_eq!(created.header("location"), Some("/notes/0"));
    assert_json(
        &get(&server, "/notes/0", ""),
        200,
        r#"{"id":0,"text":"buy milk"}"#,
    );
    let who = get(&server, "/whoami?x=1", "User-Agent: probe/2\r\n");
    assert_json(
        &who,
        200,
        r#"{"agent":"probe/2","method":"GET","path":"/whoami","query":"x=1"}"#,
    );
}

#[test]
fn every_error_is_the_apps_json() {
    let server = notes();
    // `?` on serde_json's error: the request's fault, a 400.
    let bad = post(&server, "/notes", "{not json");
    assert_eq!(bad.status, 400, "{}", bad.raw_head);
    assert!(
        bad.text()
            .starts_with(r#"{"error":"JSON: key must be a string"#),
        "{}",
        bad.text()
    );
    assert_json(
        &get(&server, "/notes/7", ""),
        404,
        r#"{"error":"404 Not Found","status":404}"#,
    );
    // An error without a status: the app's 500, not the host's text one.
    let boom = get(&server, "/boom", "X-Request-Id: sdk-boom-1\r\n");
    assert_json(&boom, 500, r#"{"error":"internal error","status":500}"#);
    let logs = server.wait_for_log("notes-boom", TIMEOUT);
    let line = logs.lines().find(|l| l.contains("notes-boom")).unwrap();
    assert!(line.contains("notes: call failed"), "{line}");
    // The server is fine afterwards.
    assert_eq!(get(&server, "/notes/0", "").status, 404);
}

#[test]
fn tracing_lines_carry_the_request() {
    // A loopback client's X-Request-Id is trusted by default.
    let server = notes();
    let resp = get(
        &server,
        "/whoami?y=2",
        "User-Agent: tracer\r\nX-Request-Id: sdk-trace-7\r\n",
    );
    assert_eq!(resp.status, 200);
    let logs = server.wait_for_log("notes-whoami", TIMEOUT);
    let line = logs.lines().find(|l| l.contains("notes-whoami")).unwrap();
    for part in [
        "app=notes",
        "request_id=sdk-trace-7",
        "GET /whoami?y=2 HTTP/1.1",
        "agent=tracer",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
}
