//! `export_service!`: the axum example `plugins/todo-axum` served by the
//! real host. CRUD with exact JSON, axum's own rejections (422/400/413/
//! 404/405), server-sent events streamed event by event, tokio timers in
//! handlers, panics, concurrency across app threads, and a failing `build`.

use std::thread;
use std::time::{Duration, Instant};

use integration_tests::artifacts;
use integration_tests::client::{self, Chunk};
use integration_tests::server::{self, Serve};
use integration_tests::todo_api::{self, assert_json, send};

fn todo_axum() -> String {
    artifacts::rust_plugin("todo_axum")
        .to_str()
        .expect("a UTF-8 path")
        .to_owned()
}

/// The example with its debug routes (`/debug/sleep`, `/debug/panic`).
fn serve() -> Serve {
    server::serve(todo_axum()).args(["--app-arg", "debug=1"])
}

#[test]
fn crud_flow_with_exact_json() {
    todo_api::crud_flow(&serve().start());
}

#[test]
fn validation_errors_are_422_and_400() {
    // axum's own rejections for a missing field and JSON that does not
    // parse, the app's for the rest.
    todo_api::validation_errors(&serve().start());
}

#[test]
fn bodies_over_64_kib_are_413() {
    todo_api::body_limits(&serve().start());
}

#[test]
fn unknown_routes_are_404_and_wrong_methods_405() {
    let server = serve().start();
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
    let resp = send(&server, "GET", "/todos/not-a-number", None);
    assert_eq!(resp.status, 400, "{}", resp.raw_head);
}

#[test]
fn server_sent_events_stream_one_by_one() {
    let server = serve().start();
    let mut conn = server.connect();
    conn.send(b"GET /events?n=4 HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{}", head.raw_head);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    let mut events = Vec::new();
    let mut arrivals = Vec::new();
    loop {
        match conn.read_chunk() {
            Chunk::Data(data) => {
                arrivals.push(Instant::now());
                events.push(String::from_utf8(data).expect("UTF-8 events"));
            }
            Chunk::End => break,
            Chunk::Eof => panic!("the stream ended without its last chunk: {events:?}"),
        }
    }
    let want: Vec<String> = (0..4)
        .map(|i| format!("event: tick\nid: {i}\ndata: {{\"tick\":{i},\"todos\":0}}\n\n"))
        .collect();
    assert_eq!(events, want, "one chunk per event");
    // 50 ms apart on the server: each left when it was produced.
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(30),
            "events arrived together ({gap:?})"
        );
    }
}

#[test]
fn handlers_can_use_tokio_timers() {
    let server = serve().start();
    let started = Instant::now();
    let resp = send(&server, "GET", "/debug/sleep?ms=150", None);
    assert_eq!((resp.status, resp.text().as_str()), (200, "slept 150 ms\n"));
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[test]
fn a_panic_is_a_500_with_its_location_and_the_thread_goes_on() {
    // One app thread: the requests after the panic run where it happened.
    let server = serve().args(["--threads", "1"]).start();
    let resp = send(&server, "GET", "/debug/panic", None);
    assert_eq!(resp.status, 500, "{}", resp.raw_head);
    let line = server.wait_for_log("asked to panic", Duration::from_secs(5));
    assert!(
        line.contains("panicked at plugins/todo-axum/src/lib.rs:"),
        "no location: {line}"
    );
    let resp = send(&server, "GET", "/debug/sleep?ms=10", None);
    assert_eq!((resp.status, resp.text().as_str()), (200, "slept 10 ms\n"));
    assert_json(&send(&server, "GET", "/todos", None), 200, "[]");
}

#[test]
fn app_threads_serve_concurrently_and_share_state() {
    let server = serve().args(["--threads", "4", "-w", "1"]).start();
    let addr = server.addr();
    // Four 400 ms sleeps at once: well under the 1.6 s they take in turn.
    let started = Instant::now();
    let sleepers: Vec<_> = (0..4)
        .map(|_| thread::spawn(move || client::get(addr, "/debug/sleep?ms=400")))
        .collect();
    for sleeper in sleepers {
        let resp = sleeper.join().expect("a client thread");
        assert_eq!(resp.status, 200, "{}", resp.raw_head);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1200),
        "not concurrent: {took:?}"
    );
    // Creations from four threads: one store, every id once.
    let creators: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..10 {
                    let body = format!(r#"{{"title":"t{t}-{i}"}}"#);
                    let request = format!(
                        "POST /todos HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let resp = client::request(addr, request.as_bytes());
                    assert_eq!(resp.status, 201, "{}", resp.raw_head);
                }
            })
        })
        .collect();
    for creator in creators {
        creator.join().expect("a client thread");
    }
    let list = send(&server, "GET", "/todos", None).text();
    let ids: Vec<u64> = list
        .split("\"id\":")
        .skip(1)
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=40).collect::<Vec<u64>>());
}

#[test]
fn a_failing_build_stops_the_host_with_its_message() {
    let run = server::run([
        "serve",
        &todo_axum(),
        "-b",
        "127.0.0.1:0",
        "--app-arg",
        "max_todos=lots",
    ]);
    let line = run.error_line();
    assert!(
        line.contains("init failed") && line.contains("max_todos=\"lots\": invalid digit"),
        "{line:?}"
    );
    assert_eq!(run.status.code(), Some(1));
}
