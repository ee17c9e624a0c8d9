//! `plugins/sqlite-api` served by the real host: a JSON API on a SQLite
//! file opened in `init` from `--app-arg db=PATH`. Create, list, get, 404,
//! two worker processes writing to one file, and the data still there
//! after the host is stopped and started again.

use std::time::Duration;

use integration_tests::artifacts::{self, TempDir};
use integration_tests::client::{self, Response};
use integration_tests::server::{self, Server};

fn serve(db: &str, workers: &str) -> Server {
    server::serve(artifacts::rust_plugin("sqlite_api"))
        .args(["--app-arg", &format!("db={db}"), "-w", workers])
        .start()
}

fn send(server: &Server, method: &str, target: &str, body: Option<&str>) -> Response {
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
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
fn crud_on_a_file_that_outlives_the_host() {
    let dir = TempDir::new("sqlite-api");
    let db = dir.join("items.db");
    let db = db.to_str().expect("a UTF-8 path");
    let mut server = serve(db, "2");
    let s = &server;
    assert_json(&send(s, "GET", "/items", None), 200, "[]");
    let created = send(s, "POST", "/items", Some(r#"{"name":"apples","qty":3}"#));
    assert_json(&created, 201, r#"{"id":1,"name":"apples","qty":3}"#);
    assert_eq!(created.header("location"), Some("/items/1"));
    // Each request on a new connection: with two workers, both processes
    // write through their own SQLite connection to the same file.
    for i in 2..=6 {
        let body = format!(r#"{{"name":"item {i}"}}"#);
        let resp = send(s, "POST", "/items", Some(&body));
        assert_json(
            &resp,
            201,
            &format!(r#"{{"id":{i},"name":"item {i}","qty":0}}"#),
        );
    }
    assert_json(
        &send(s, "GET", "/items/1", None),
        200,
        r#"{"id":1,"name":"apples","qty":3}"#,
    );
    assert_json(
        &send(s, "GET", "/items/99", None),
        404,
        r#"{"error":"no such item"}"#,
    );
    assert_json(
        &send(s, "GET", "/nothing", None),
        404,
        r#"{"error":"not found"}"#,
    );
    assert_eq!(send(s, "DELETE", "/items/2", None).status, 204);
    assert_json(
        &send(s, "DELETE", "/items/2", None),
        404,
        r#"{"error":"no such item"}"#,
    );
    let bad = send(s, "POST", "/items", Some(r#"{"qty":1}"#));
    assert_eq!(bad.status, 400, "{}", bad.raw_head);
    let empty = send(s, "POST", "/items", Some(r#"{"name":"  "}"#));
    assert_json(&empty, 422, r#"{"error":"name is empty"}"#);
    assert_eq!(send(s, "GET", "/items/x", None).status, 400);
    let wrong = send(s, "PUT", "/items", None);
    assert_eq!(
        (wrong.status, wrong.header("allow")),
        (405, Some("GET,HEAD,POST"))
    );
    let before = send(s, "GET", "/items", None).text();
    assert!(
        before.starts_with(r#"[{"id":1,"name":"apples","qty":3},{"id":3,"#),
        "{before}"
    );

    // guide:start restart
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let server = serve(db, "1");
    assert_json(&send(&server, "GET", "/items", None), 200, &before);
    let next = send(&server, "POST", "/items", Some(r#"{"name":"pears"}"#));
    assert_json(&next, 201, r#"{"id":7,"name":"pears","qty":0}"#);
    // guide:end restart
}

/// `plugins/sqlite-api/host.toml`, the guide's settings file: its
/// `[app-arg]` table reaches `init` (the database is made where it says,
/// relative to the host's working directory).
#[test]
fn the_example_settings_file_configures_the_app() {
    let dir = TempDir::new("sqlite-api-config");
    let cwd = dir.path.clone();
    let file = artifacts::repo_root().join("plugins/sqlite-api/host.toml");
    let server = server::serve_config(&file)
        // The debug build under test, instead of the file's release path.
        .arg(artifacts::rust_plugin("sqlite_api"))
        .bind("127.0.0.1:0")
        .setup(move |cmd| {
            cmd.current_dir(cwd);
        })
        .start();
    let created = send(
        &server,
        "POST",
        "/items",
        Some(r#"{"name":"from the file"}"#),
    );
    assert_json(&created, 201, r#"{"id":1,"name":"from the file","qty":0}"#);
    assert!(
        dir.join("items.db").is_file(),
        "no items.db where the file says"
    );
    assert!(server.logs().contains("workers=2"), "{}", server.logs());
}

#[test]
fn no_database_argument_stops_the_host_with_a_message() {
    let plugin = artifacts::rust_plugin("sqlite_api");
    let run = server::run(["serve", plugin.to_str().unwrap(), "-b", "127.0.0.1:0"]);
    let line = run.error_line();
    assert!(line.contains("pass --app-arg db=PATH"), "{line:?}");
    assert_eq!(run.status.code(), Some(1));
}
