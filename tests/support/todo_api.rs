//! The JSON TODO API both `plugins/todo-axum` (axum through
//! `export_service!`) and `plugins/todo-raw` (the raw SDK) serve: the
//! requests and the exact answers they must both give.

use crate::client::{self, Response};
use crate::server::Server;

/// `method target` with a JSON body (none if `body` is `None`).
pub fn send(server: &Server, method: &str, target: &str, body: Option<&str>) -> Response {
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n");
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    client::request(server.addr(), request.as_bytes())
}

/// `resp` is `status` with exactly `body`, as JSON when it has one.
pub fn assert_json(resp: &Response, status: u16, body: &str) {
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (status, body),
        "{}",
        resp.raw_head
    );
    if !body.is_empty() {
        assert_eq!(resp.header("content-type"), Some("application/json"));
    }
}

/// Create, read, filter, patch and delete, with the exact JSON of each
/// answer, on a fresh server.
pub fn crud_flow(s: &Server) {
    assert_json(&send(s, "GET", "/todos", None), 200, "[]");
    let created = send(s, "POST", "/todos", Some(r#"{"title":"  buy milk "}"#));
    assert_json(&created, 201, r#"{"id":1,"title":"buy milk","done":false}"#);
    assert_eq!(
        created.header("content-length"),
        Some("40"),
        "one chunk: framed with Content-Length"
    );
    let second = send(s, "POST", "/todos", Some(r#"{"title":"write tests"}"#));
    assert_json(
        &second,
        201,
        r#"{"id":2,"title":"write tests","done":false}"#,
    );
    assert_json(
        &send(s, "PATCH", "/todos/1", Some(r#"{"done":true}"#)),
        200,
        r#"{"id":1,"title":"buy milk","done":true}"#,
    );
    assert_json(
        &send(s, "GET", "/todos/2", None),
        200,
        r#"{"id":2,"title":"write tests","done":false}"#,
    );
    // Filters from the query string.
    assert_json(
        &send(s, "GET", "/todos?done=true", None),
        200,
        r#"[{"id":1,"title":"buy milk","done":true}]"#,
    );
    assert_json(
        &send(s, "GET", "/todos?q=tests&limit=5", None),
        200,
        r#"[{"id":2,"title":"write tests","done":false}]"#,
    );
    assert_json(
        &send(s, "GET", "/todos?limit=1", None),
        200,
        r#"[{"id":1,"title":"buy milk","done":true}]"#,
    );
    let deleted = send(s, "DELETE", "/todos/1", None);
    assert_eq!(deleted.status, 204, "{}", deleted.raw_head);
    assert_json(
        &send(s, "GET", "/todos/1", None),
        404,
        r#"{"error":"no todo 1"}"#,
    );
    assert_json(
        &send(s, "DELETE", "/todos/1", None),
        404,
        r#"{"error":"no todo 1"}"#,
    );
    assert_json(
        &send(s, "GET", "/todos", None),
        200,
        r#"[{"id":2,"title":"write tests","done":false}]"#,
    );
    let health = send(s, "GET", "/health", None);
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
}

/// Invalid todos: a blank title, a missing field, JSON that does not
/// parse, a title too long in a 60 KiB body (read whole); none is created.
pub fn validation_errors(s: &Server) {
    assert_json(
        &send(s, "POST", "/todos", Some(r#"{"title":"   "}"#)),
        422,
        r#"{"error":"title must be 1 to 200 characters"}"#,
    );
    let missing = send(s, "POST", "/todos", Some(r#"{"name":"x"}"#));
    assert_eq!(missing.status, 422, "{}", missing.raw_head);
    assert!(
        missing.text().contains("missing field `title`"),
        "{}",
        missing.text()
    );
    let syntax = send(s, "POST", "/todos", Some(r#"{"title":"#));
    assert_eq!(syntax.status, 400, "{}", syntax.raw_head);
    let long = format!(r#"{{"title":"{}"}}"#, "a".repeat(60 * 1024));
    assert_json(
        &send(s, "POST", "/todos", Some(&long)),
        422,
        r#"{"error":"title must be 1 to 200 characters"}"#,
    );
    assert_json(&send(s, "GET", "/todos", None), 200, "[]");
}

/// The 64 KiB body limit, with a Content-Length and chunked (refused once
/// 64 KiB are read); a chunked body under it is read to its end.
pub fn body_limits(s: &Server) {
    let big = format!(r#"{{"title":"{}"}}"#, "a".repeat(70 * 1024));
    let resp = send(s, "POST", "/todos", Some(&big));
    assert_eq!(resp.status, 413, "{}", resp.raw_head);
    let resp = client::request(s.addr(), &chunked(big.as_bytes(), 10_000));
    assert_eq!(resp.status, 413, "{}", resp.raw_head);
    let resp = client::request(s.addr(), &chunked(br#"{"title":"chunked"}"#, 5));
    assert_json(&resp, 201, r#"{"id":1,"title":"chunked","done":false}"#);
}

/// `POST /todos` with `body` sent chunked, `piece` bytes a chunk.
fn chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut request = b"POST /todos HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                        Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for piece in body.chunks(piece) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}
