//! The logs: `--access-log-format` with gunicorn's atoms, `--log-format
//! json` for the access and error logs, `--error-logfile` and its reopen
//! on USR1, and the request id from the client's `X-Request-Id` (trusted
//! proxies only) through the environ, the plugin's log lines and the
//! access log.
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::artifacts::{self, TempFile};
use integration_tests::client;
use integration_tests::json::{self, Value};
use integration_tests::server::{self, Server};
use integration_tests::TIMEOUT;

/// gunicorn's default `access_log_format`.
const GUNICORN_DEFAULT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

fn testapps() -> server::Serve {
    server::serve(artifacts::rust_plugin("testapps"))
}

/// Polls `read` until a line contains `needle`; returns that line.
fn wait_for_line(read: impl Fn() -> String, needle: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let text = read();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?} within {TIMEOUT:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get(addr: SocketAddr, path: &str, headers: &str) -> client::Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    client::request(addr, req.as_bytes())
}

/// `[06/Nov/1994:08:49:37 +0000]`
fn is_clf_time(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 28
        && b[0] == b'['
        && b[27] == b']'
        && t[1..3].bytes().all(|c| c.is_ascii_digit())
        && &t[21..27] == " +0000"
}

#[test]
fn gunicorn_default_format_is_the_default_line() {
    let given = TempFile::new("access-gunicorn.log");
    let default = TempFile::new("access-default.log");
    let with_format = testapps()
        .args(["--access-logfile", given.path.to_str().unwrap()])
        .args(["--access-log-format", GUNICORN_DEFAULT])
        .start();
    let without = testapps()
        .args(["--access-logfile", default.path.to_str().unwrap()])
        .start();
    let headers = "User-Agent: curl/8.0\r\nReferer: http://r.test/\r\n";
    for (server, log) in [(&with_format, &given), (&without, &default)] {
        assert_eq!(get(server.addr(), "/last?q=1", headers).status, 200);
        let line = wait_for_line(|| log.read(), "\"GET /last?q=1 HTTP/1.1\"");
        let (head, rest) = line.split_at(line.find(" [").unwrap());
        assert_eq!(head, "127.0.0.1 - -", "{line}");
        let time = &rest[1..29];
        assert!(is_clf_time(time), "{line}");
        assert_eq!(
            &rest[29..],
            " \"GET /last?q=1 HTTP/1.1\" 200 5 \"http://r.test/\" \"curl/8.0\"",
            "{line}"
        );
    }
}

#[test]
fn a_rich_gunicorn_format_fills_every_atom() {
    let log = TempFile::new("access-rich.log");
    let format = "%(h)s|%(l)s|%(u)s|%(r)s|%(s)s|%(b)s|%(B)s|%(m)s|%(U)s|%(q)s|%(H)s|%(D)s|%(M)s|%(T)s|%(L)s|\
                  %({x-foo}i)s|%({X-Missing}i)s|%({content-type}o)s|%({content-length}o)s|%(p)s|\
                  %({server_protocol}e)s|%({x-request-id}i)s|100%%";
    let server = testapps()
        .args(["--access-logfile", log.path.to_str().unwrap()])
        .args(["--access-log-format", format])
        .start();
    // "alice:secret"
    let resp = get(
        server.addr(),
        "/last?x=1",
        "X-Foo: bar\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\nX-Request-Id: rid-43\r\n",
    );
    assert_eq!(resp.status, 200);
    let line = wait_for_line(|| log.read(), "GET /last?x=1 ");
    let f: Vec<&str> = line.split('|').collect();
    assert_eq!(f.len(), 23, "{line}");
    assert_eq!(
        &f[..11],
        &[
            "127.0.0.1",
            "-",
            "alice",
            "GET /last?x=1 HTTP/1.1",
            "200",
            "5",
            "5",
            "GET",
            "/last",
            "x=1",
            "HTTP/1.1",
        ],
        "{line}"
    );
    let micros: u64 = f[11].parse().unwrap();
    let millis: u64 = f[12].parse().unwrap();
    let secs: u64 = f[13].parse().unwrap();
    assert!(
        micros > 0 && micros < 10_000_000 && millis == micros / 1000 && secs == micros / 1_000_000,
        "{line}"
    );
    let (l_secs, l_micros) = f[14].split_once('.').unwrap();
    assert_eq!(l_secs.parse::<u64>().unwrap(), secs, "{line}");
    assert_eq!(l_micros.len(), 6, "{line}");
    assert_eq!(&f[15..19], &["bar", "-", "text/plain", "-"], "{line}");
    // The worker's pid, not the master's.
    let pid = f[19].trim_start_matches('<').trim_end_matches('>');
    assert!(f[19].starts_with('<') && f[19].ends_with('>'), "{line}");
    assert_ne!(pid, server.pid().to_string());
    assert!(
        server.logs().contains(&format!("worker {pid} booted")),
        "{line}\n{}",
        server.logs()
    );
    assert_eq!(&f[20..], &["HTTP/1.1", "rid-43", "100%"], "{line}");
}

/// Every line of `text` as a JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| json::parse(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn num(v: &Value, key: &str) -> f64 {
    match v.get(key) {
        Some(Value::Number(n)) => *n,
        other => panic!("{key}: {other:?} in {v:?}"),
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{key} in {v:?}"))
}

#[test]
fn json_access_and_error_lines_parse_back() {
    let log = TempFile::new("access.json");
    let server = testapps()
        .args([
            "--log-format",
            "json",
            "--access-logfile",
            log.path.to_str().unwrap(),
        ])
        .start();
    let resp = get(
        server.addr(),
        "/log?a=%22",
        "User-Agent: agent \"7\"\r\nX-Request-Id: json-rid-1\r\n",
    );
    assert_eq!(resp.status, 200);
    wait_for_line(|| log.read(), "json-rid-1");
    let access = json_lines(&log.read());
    assert_eq!(access.len(), 1, "{access:?}");
    let a = &access[0];
    assert_eq!(text(a, "remote_addr"), "127.0.0.1");
    assert_eq!(text(a, "method"), "GET");
    assert_eq!(text(a, "path"), "/log");
    assert_eq!(text(a, "query"), "a=%22");
    assert_eq!(text(a, "protocol"), "HTTP/1.1");
    assert_eq!(num(a, "status"), 200.0);
    assert_eq!(num(a, "bytes"), 6.0);
    assert_eq!(a.get("referer"), Some(&Value::Null));
    assert_eq!(text(a, "user_agent"), "agent \"7\"");
    assert!(num(a, "duration_ms") >= 0.0);
    assert_eq!(text(a, "request_id"), "json-rid-1");
    assert_eq!(a.get("aborted"), Some(&Value::Bool(false)));
    let worker_pid = num(a, "pid");
    assert!(
        text(a, "time").ends_with('Z') && text(a, "time").len() == 24,
        "{a:?}"
    );

    let logs = server.wait_for_log("testapps-errors-marker", TIMEOUT);
    let errors = json_lines(&logs);
    let marker = errors
        .iter()
        .find(|l| text(l, "message") == "testapps-errors-marker")
        .unwrap();
    assert_eq!(text(marker, "level"), "error");
    assert_eq!(text(marker, "target"), "app");
    assert_eq!(text(marker, "request_id"), "json-rid-1");
    assert_eq!(num(marker, "pid"), worker_pid);
    assert_eq!(
        marker
            .get("fields")
            .and_then(|f| f.get("source"))
            .and_then(Value::as_str),
        Some("wsgi.errors")
    );
    // The master's own lines carry its pid.
    let listening = errors
        .iter()
        .find(|l| text(l, "message").starts_with("listening on"))
        .unwrap();
    assert_eq!(num(listening, "pid"), f64::from(server.pid()));
}

/// Waits until `path` has a line with `needle`.
fn wait_in_file(path: &Path, needle: &str) -> String {
    wait_for_line(|| std::fs::read_to_string(path).unwrap_or_default(), needle)
}

#[test]
fn error_logfile_takes_master_and_worker_lines_and_reopens_on_usr1() {
    let log = TempFile::new("error.log");
    let moved = TempFile::new("error.log.1");
    let mut server: Server = testapps()
        .args(["--error-logfile", log.path.to_str().unwrap()])
        .spawn();
    let line = wait_in_file(&log.path, "listening on http://");
    let master = server.pid();
    assert!(line.contains(&format!("[{master}] listening on")), "{line}");
    let booted = wait_in_file(&log.path, "booted");
    let worker: u32 = booted
        .split("worker ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{booted}"));
    assert!(
        booted.contains(&format!("[{worker}] worker {worker} booted")),
        "{booted}"
    );
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(server.logs().is_empty(), "stderr: {}", server.logs());

    std::fs::rename(&log.path, &moved.path).unwrap();
    server.send_signal("USR1");
    wait_in_file(&log.path, "USR1: reopening log files");
    // The worker reopens when the master's USR1 reaches it: its lines
    // (the plugin's stderr included) go to the new file from then on.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert_eq!(get(addr, "/log", "").status, 200);
        let new = std::fs::read_to_string(&log.path).unwrap_or_default();
        if new.contains(&format!("[{worker}]")) && new.contains("testapps-errors-marker") {
            break;
        }
        assert!(Instant::now() < deadline, "new file:\n{new}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let old = std::fs::read_to_string(&moved.path).unwrap();
    assert!(old.contains("booted") && !old.contains("USR1"), "{old}");
    server.terminate();
    server.wait_exit(TIMEOUT);
}

#[test]
fn an_unopenable_error_logfile_is_one_line_at_start() {
    let run = server::run([
        "serve",
        artifacts::rust_plugin("testapps").to_str().unwrap(),
        "-b",
        "127.0.0.1:0",
        "--error-logfile",
        "/nonexistent-dir/error.log",
    ]);
    let line = run.error_line();
    assert!(
        line.contains("--error-logfile /nonexistent-dir/error.log"),
        "{line}"
    );
}

#[test]
fn a_trusted_peers_request_id_reaches_environ_plugin_lines_and_access_log() {
    let log = TempFile::new("access-rid.log");
    let server = testapps()
        .args(["--access-logfile", log.path.to_str().unwrap()])
        .args(["--access-log-format", "%(r)s id=%({x-request-id}i)s"])
        .start();
    let rid = "X-Request-Id: trusted-7f3a\r\n";
    let env = |key: &str| get(server.addr(), &format!("/get?key={key}"), rid).text();
    assert_eq!(env("REQUEST_ID"), "trusted-7f3a");
    assert_eq!(env("HTTP_X_REQUEST_ID"), "trusted-7f3a");
    assert_eq!(get(server.addr(), "/log", rid).status, 200);
    let logs = server.wait_for_log("testapps-errors-marker", TIMEOUT);
    // Both the line logged with the request's handle and the one the
    // Rust SDK's tracing bridge logs without it.
    for marker in ["testapps-errors-marker", "testapps-log-marker"] {
        let line = logs.lines().find(|l| l.contains(marker)).unwrap();
        assert!(line.contains("request_id=trusted-7f3a"), "{line}");
    }
    let line = wait_for_line(|| log.read(), "GET /log ");
    assert_eq!(line, "GET /log HTTP/1.1 id=trusted-7f3a");

    // A value that is not one token of visible ASCII is replaced.
    let bad = "X-Request-Id: has space\r\n";
    let made = get(server.addr(), "/get?key=REQUEST_ID", bad).text();
    assert!(!made.contains(' ') && !made.is_empty(), "{made}");
    let long = format!("X-Request-Id: {}\r\n", "a".repeat(201));
    assert_ne!(
        get(server.addr(), "/get?key=REQUEST_ID", &long)
            .text()
            .len(),
        201
    );
    let longest = format!("X-Request-Id: {}\r\n", "a".repeat(200));
    assert_eq!(
        get(server.addr(), "/get?key=REQUEST_ID", &longest)
            .text()
            .len(),
        200
    );
}

#[test]
fn an_untrusted_peers_request_id_is_replaced_and_made_ids_are_unique() {
    let server = testapps()
        .args(["-w", "2", "--forwarded-allow-ips", "10.0.0.1"])
        .start();
    let mut seen = HashSet::new();
    for i in 0..40 {
        let resp = get(
            server.addr(),
            "/get?key=REQUEST_ID",
            &format!("X-Request-Id: client-{i}\r\nConnection: close\r\n"),
        );
        let id = resp.text();
        assert!(!id.starts_with("client-"), "{id}");
        assert!(id.len() > 17 && id.as_bytes()[16] == b'-', "{id}");
        assert!(seen.insert(id.clone()), "{id} twice");
        let header = get(
            server.addr(),
            "/get?key=HTTP_X_REQUEST_ID",
            &format!("X-Request-Id: client-{i}\r\n"),
        )
        .text();
        assert!(
            !header.starts_with("client-") && seen.insert(header.clone()),
            "{header}"
        );
    }
}

#[test]
fn a_bad_atom_is_one_line_and_exit_2() {
    for format in ["%(h)s %(zz)s", "%(h)x", "50% off"] {
        let run = server::run([
            "serve",
            artifacts::rust_plugin("testapps").to_str().unwrap(),
            "--access-log-format",
            format,
        ]);
        let line = run.error_line();
        assert_eq!(run.status.code(), Some(2), "{run:#?}");
        assert!(line.contains("--access-log-format"), "{line}");
    }
}

#[test]
fn a_bad_log_format_is_a_usage_error() {
    let run = server::run([
        "serve",
        artifacts::rust_plugin("testapps").to_str().unwrap(),
        "--log-format",
        "xml",
    ]);
    let line = run.error_line();
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    assert!(
        line.contains("xml") && line.contains("--log-format"),
        "{line}"
    );
}

#[test]
fn hup_keeps_the_running_format_on_a_bad_atom_and_applies_a_good_one() {
    let dir = artifacts::TempDir::new("logs-hup");
    let config = dir.path.join("host.toml");
    let log = dir.path.join("access.log");
    let plugin = artifacts::rust_plugin("testapps");
    let write = |format: &str| {
        std::fs::write(
            &config,
            format!(
                "plugin = {:?}\nbind = \"127.0.0.1:0\"\naccess-logfile = {:?}\naccess-log-format = {:?}\n",
                plugin.to_str().unwrap(),
                log.to_str().unwrap(),
                format
            ),
        )
        .unwrap();
    };
    write("first %(s)s %(U)s");
    let server = server::serve_config(&config).start();
    assert_eq!(get(server.addr(), "/last", "").status, 200);
    wait_in_file(&log, "first 200 /last");
    write("second %(nope)s");
    server.send_signal("HUP");
    let logs = server.wait_for_log("the settings in force stay", TIMEOUT);
    let line = logs
        .lines()
        .find(|l| l.contains("the settings in force stay"))
        .unwrap();
    assert!(line.contains("%(nope)s"), "{line}");
    assert_eq!(get(server.addr(), "/empty", "").status, 200);
    wait_in_file(&log, "first 200 /empty");

    // A good one applies live: the reload's new workers write it.
    write("third %(s)s %(U)s");
    server.send_signal("HUP");
    server.wait_for_log("HUP: settings changed: access-log-format", TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("third 200 /last")
    {
        assert!(Instant::now() < deadline, "{}", server.logs());
        assert_eq!(get(server.addr(), "/last", "").status, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
}
