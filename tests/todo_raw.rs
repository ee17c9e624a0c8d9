//! `plugins/todo-raw` served by the real host: the API of `todo-axum`
//! (tests/tower.rs) written with the raw SDK, held to the same answers:
//! CRUD with exact JSON, filters, validation (422/400/415), the 64 KiB
//! limit (413, also chunked), 404/405 with `Allow`, and server-sent events
//! read event by event by `curl -N`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::artifacts;
use integration_tests::client;
use integration_tests::server::{self, Server};
use integration_tests::todo_api::{self, assert_json, send};

fn serve() -> Server {
    server::serve(artifacts::rust_plugin("todo_raw")).start()
}

#[test]
fn crud_flow_with_exact_json() {
    todo_api::crud_flow(&serve());
}

#[test]
fn validation_errors_are_422_400_and_415() {
    let server = serve();
    let s = &server;
    todo_api::validation_errors(s);
    let bad_filter = send(s, "GET", "/todos?done=maybe", None);
    assert_json(&bad_filter, 400, r#"{"error":"bad done=\"maybe\""}"#);
    let text = b"POST /todos HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(client::request(s.addr(), text).status, 415);
}

#[test]
fn bodies_over_64_kib_are_413() {
    todo_api::body_limits(&serve());
}

#[test]
fn unknown_routes_are_404_and_wrong_methods_405() {
    let server = serve();
    let resp = send(&server, "GET", "/nope", None);
    assert_eq!(
        (resp.status, resp.body.len()),
        (404, 0),
        "{}",
        resp.raw_head
    );
    let resp = send(&server, "PUT", "/todos", None);
    assert_eq!(resp.status, 405, "{}", resp.raw_head);
    assert_eq!(resp.header("allow"), Some("GET,HEAD,POST"));
    let resp = send(&server, "POST", "/todos/3", None);
    assert_eq!(resp.header("allow"), Some("GET,HEAD,PATCH,DELETE"));
    // Routed on the raw path: an encoded slash stays inside its segment,
    // and the segment is decoded before it is parsed.
    assert_eq!(send(&server, "GET", "/todos/1%2F2", None).status, 400);
    let resp = send(&server, "GET", "/todos/%31", None);
    assert_json(&resp, 404, r#"{"error":"no todo 1"}"#);
    let resp = send(&server, "GET", "/todos/not-a-number", None);
    assert_eq!(resp.status, 400, "{}", resp.raw_head);
}

/// `curl -N` (no output buffering) reads the events one line at a time,
/// as a browser's `EventSource` would; each arrives when it is produced.
#[test]
fn server_sent_events_reach_curl_one_by_one() {
    let server = serve();
    send(&server, "POST", "/todos", Some(r#"{"title":"one"}"#));
    let url = format!("http://{}/events?n=4", server.addr());
    let mut curl = Command::new("curl")
        .args(["-sS", "-N", "-i", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl is installed");
    let mut lines = BufReader::new(curl.stdout.take().expect("piped"));
    let mut head = String::new();
    loop {
        let mut line = String::new();
        lines.read_line(&mut line).expect("curl's output");
        if line.trim_end().is_empty() {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let mut data = Vec::new();
    let mut arrivals = Vec::new();
    for line in lines.lines() {
        let line = line.expect("curl's output");
        if let Some(payload) = line.strip_prefix("data: ") {
            arrivals.push(Instant::now());
            data.push(payload.to_owned());
        }
    }
    assert!(curl.wait().expect("curl exits").success());
    let want: Vec<String> = (0..4)
        .map(|i| format!(r#"{{"tick":{i},"todos":1}}"#))
        .collect();
    assert_eq!(data, want);
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(30),
            "events arrived together ({gap:?})"
        );
    }
}
