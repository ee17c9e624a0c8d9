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
