//! The admin endpoint (`--admin-bind`: /metrics, /healthz, /readyz,
//! /status), `host status --json` and `host top`: exact counts after a known
//! mix of requests, answers while every app thread is busy, during a reload
//! and during the TERM delay, counters that survive a worker's death, and
//! bad input refused.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::artifacts::{self, TempDir};
use integration_tests::client;
use integration_tests::json::{self, Value};
use integration_tests::server::{self, Server};
use integration_tests::TIMEOUT;

const ADMIN_LOG: &str = "admin endpoint on http://";

/// A server of the testapps plugin with an admin endpoint on a free port
/// and a pidfile.
struct Admin {
    server: Server,
    admin: SocketAddr,
    pidfile: std::path::PathBuf,
    _dir: TempDir,
}

fn start(args: &[&str]) -> Admin {
    let dir = TempDir::new("observability");
    let pidfile = dir.join("host.pid");
    let server = server::serve(artifacts::rust_plugin("testapps"))
        .args(["--admin-bind", "127.0.0.1:0", "--log-level", "info"])
        .arg("-p")
        .arg(&pidfile)
        .args(args)
        .start();
    let logs = server.wait_for_log(ADMIN_LOG, TIMEOUT);
    let at = logs.find(ADMIN_LOG).unwrap() + ADMIN_LOG.len();
    let addr = logs[at..].split_whitespace().next().unwrap();
    Admin {
        admin: addr.parse().unwrap(),
        server,
        pidfile,
        _dir: dir,
    }
}

/// An admin answer: status, headers (lowercase names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` whole to the admin endpoint and reads to the end.
fn raw(addr: SocketAddr, request: &str) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connecting to the admin endpoint");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).expect("reading the admin answer");
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n"))
}

/// The samples of a Prometheus text body: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn metrics(addr: SocketAddr) -> BTreeMap<String, f64> {
    let a = get(addr, "/metrics");
    assert_eq!(a.status, 200);
    samples(&a.body)
}

fn status(addr: SocketAddr) -> Value {
    let a = get(addr, "/status");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    json::parse(&a.body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {}", a.body))
}

fn num(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => *n,
        other => panic!("not a number: {other:?}"),
    }
}

/// Waits until `cond` holds, or panics with `what`.
fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `GET /sleep?ms=N` on the server in the background.
fn sleep_request(addr: SocketAddr, ms: u64) -> thread::JoinHandle<client::Response> {
    thread::spawn(move || client::get(addr, &format!("/sleep?ms={ms}")))
}

/// The running requests the status JSON names: (request line, age in ms).
fn running(status: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for w in status
        .get("workers")
        .and_then(Value::as_array)
        .unwrap_or(&[])
    {
        for r in w.get("running").and_then(Value::as_array).unwrap_or(&[]) {
            out.push((
                r.get("request")
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_string(),
                num(r.get("age_ms")),
            ));
        }
    }
    out
}

#[test]
fn metrics_count_a_known_mix_of_requests() {
    let a = start(&["-w", "1"]);
    let addr = a.server.addr();
    let mut sent = 0;
    let mut send = |req: &[u8]| {
        sent += req.len();
        client::request(addr, req)
    };
    for _ in 0..3 {
        assert_eq!(
            send(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status,
            200
        );
    }
    for _ in 0..2 {
        let r = send(
            b"POST /input HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        );
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        send(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status,
        404
    );
    assert_eq!(
        send(b"DELETE /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status,
        404
    );
    assert_eq!(
        send(b"GET /error HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status,
        500
    );
    // Refused before any app code: not a request of the app, a refusal.
    assert_eq!(
        send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n").status,
        400
    );

    // Bytes received are counted per loop turn: wait for the last turn.
    wait("the bytes received", || {
        metrics(a.admin)["host_request_bytes_total"] as usize >= sent
    });
    let m = metrics(a.admin);
    let req = |method: &str, class: &str| {
        m[&format!("host_requests_total{{method=\"{method}\",status=\"{class}\"}}")]
    };
    assert_eq!(req("GET", "2xx"), 3.0);
    assert_eq!(req("POST", "2xx"), 2.0);
    assert_eq!(req("GET", "4xx"), 1.0);
    assert_eq!(req("DELETE", "4xx"), 1.0);
    assert_eq!(req("GET", "5xx"), 1.0);
    let total: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("host_requests_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 8.0, "{m:#?}");
    assert_eq!(m["host_request_duration_seconds_count"], 8.0);
    assert_eq!(m["host_request_duration_seconds_bucket{le=\"+Inf\"}"], 8.0);
    assert!(m["host_request_duration_seconds_sum"] > 0.0);
    assert_eq!(
        m["host_request_bytes_total"] as usize, sent,
        "every byte sent, once"
    );
    // "last\n" three times, "len=3\nabc" twice, "not found" once, at least.
    assert!(
        m["host_response_body_bytes_total"] >= (3 * 5 + 2 * 9 + 9) as f64,
        "{m:#?}"
    );
    assert_eq!(m["host_requests_refused_total{status=\"400\"}"], 1.0);
    assert_eq!(m["host_workers{state=\"ready\"}"], 1.0);
    assert_eq!(m["host_requests_in_flight"], 0.0);
    assert_eq!(m["host_ready"], 1.0);
    let info: Vec<&String> = m
        .keys()
        .filter(|k| k.starts_with("host_build_info{"))
        .collect();
    assert_eq!(info.len(), 1);
    assert!(info[0].contains("generation=\"1\""), "{info:?}");

    // Prometheus text by default; OpenMetrics when asked.
    let prom = get(a.admin, "/metrics");
    assert!(prom
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert!(prom.body.contains("# TYPE host_requests_total counter\n"));
    assert!(!prom.body.contains("# EOF"));
    let om = raw(
        a.admin,
        "GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
    );
    assert_eq!(om.status, 200);
    assert!(om
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(om.body.contains("# TYPE host_requests counter\n"));
    assert!(om.body.contains("# TYPE host_build info\n"));
    assert!(om
        .body
        .contains("host_requests_total{method=\"GET\",status=\"2xx\"} 3\n"));
    assert_eq!(
        samples(om.body.trim_end_matches("# EOF\n"))["host_request_duration_seconds_count"],
        8.0
    );
}

#[test]
fn the_endpoint_answers_while_the_only_app_thread_sleeps() {
    let a = start(&["-w", "1", "--threads", "1"]);
    let sleeper = sleep_request(a.server.addr(), 3000);
    wait("the sleep running", || {
        !running(&status(a.admin)).is_empty()
    });
    let t = Instant::now();
    let h = get(a.admin, "/healthz");
    let took = t.elapsed();
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    assert!(took < Duration::from_millis(100), "/healthz took {took:?}");
    assert_eq!(get(a.admin, "/readyz").status, 200);
    let m = metrics(a.admin);
    assert_eq!(m["host_app_threads{state=\"busy\"}"], 1.0);
    assert_eq!(m["host_app_threads{state=\"idle\"}"], 0.0);
    assert_eq!(m["host_requests_in_flight"], 1.0);
    thread::sleep(Duration::from_millis(600));
    let s = status(a.admin);
    let r = running(&s);
    assert_eq!(r.len(), 1, "{s:?}");
    assert_eq!(r[0].0, "GET /sleep?ms=3000 HTTP/1.1");
    assert!(r[0].1 >= 400.0 && r[0].1 < 3000.0, "age {}", r[0].1);

    // `host status --json` says the same, from the master's memory.
    let mut named = None;
    wait("host status --json naming the request", || {
        let out = server::run(["status", "-p", a.pidfile.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{out:?}");
        let v =
            json::parse(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout));
        named = running(&v).into_iter().next();
        named.is_some()
    });
    assert_eq!(named.unwrap().0, "GET /sleep?ms=3000 HTTP/1.1");
    assert_eq!(sleeper.join().unwrap().status, 200);
}

#[test]
fn readyz_fails_during_the_term_delay_and_the_master_stays_healthy() {
    let mut a = start(&["-w", "1", "--term-delay", "3"]);
    assert_eq!(get(a.admin, "/readyz").status, 200);
    a.server.terminate();
    wait("/readyz 503", || get(a.admin, "/readyz").status == 503);
    let r = get(a.admin, "/readyz");
    assert!(r.body.contains("term-delay"), "{}", r.body);
    assert_eq!(get(a.admin, "/healthz").status, 200);
    assert_eq!(metrics(a.admin)["host_ready"], 0.0);
    // Still serving meanwhile.
    assert_eq!(client::get(a.server.addr(), "/last").status, 200);
    assert!(a.server.wait_exit(TIMEOUT).success());
}

#[test]
fn the_endpoint_answers_during_a_reload() {
    // Each worker takes a second to boot: the canary of a reload too.
    let a = start(&[
        "-w",
        "1",
        "--app-arg",
        "init_ms=1500",
        "--settle-period",
        "0",
    ]);
    a.server.send_signal("HUP");
    wait("a booting canary", || {
        let s = status(a.admin);
        s.get("workers")
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .any(|w| w.get("state").and_then(Value::as_str) == Some("booting"))
    });
    let t = Instant::now();
    let m = metrics(a.admin);
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(m["host_workers{state=\"booting\"}"], 1.0);
    assert_eq!(
        get(a.admin, "/readyz").status,
        200,
        "the old generation serves"
    );
    wait("the reload counted", || {
        metrics(a.admin)["host_reloads_total{outcome=\"ok\"}"] == 1.0
    });
    let m = metrics(a.admin);
    assert!(m
        .keys()
        .any(|k| k.starts_with("host_build_info{") && k.contains("generation=\"2\"")));
}

#[test]
fn counters_survive_workers_that_exit() {
    let a = start(&["-w", "1", "--max-requests", "4"]);
    let addr = a.server.addr();
    for _ in 0..6 {
        assert_eq!(client::get(addr, "/last").status, 200);
    }
    wait("the recycled worker's exit", || {
        metrics(a.admin)["host_worker_exits_total{cause=\"recycle\"}"] >= 1.0
    });
    let before = metrics(a.admin);
    assert_eq!(
        before["host_requests_total{method=\"GET\",status=\"2xx\"}"],
        6.0
    );

    // A worker killed by a signal: its requests stay counted.
    let s = status(a.admin);
    let pid = num(s
        .get("workers")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .find(|w| w.get("state").and_then(Value::as_str) == Some("ready"))
        .unwrap()
        .get("pid")) as i32;
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    wait("the killed worker's exit", || {
        metrics(a.admin)["host_worker_exits_total{cause=\"signal\"}"] == 1.0
    });
    let after = metrics(a.admin);
    for (k, v) in &before {
        if k.starts_with("host_requests_total")
            || k.starts_with("host_request_duration_seconds")
            || k.ends_with("bytes_total")
        {
            assert!(after[k] >= *v, "{k} went back from {v} to {}", after[k]);
        }
    }
    assert_eq!(
        after["host_requests_total{method=\"GET\",status=\"2xx\"}"],
        6.0
    );
    let recent = status(a.admin);
    let text = format!("{:?}", recent.get("recent"));
    assert!(
        text.contains("(signal)") && text.contains("(recycle)"),
        "{text}"
    );
}

#[test]
fn unknown_paths_methods_and_bad_heads() {
    let a = start(&[]);
    assert_eq!(get(a.admin, "/nope").status, 404);
    let post = raw(
        a.admin,
        "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let head = raw(a.admin, "HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(head.header("content-length"), Some("3"));
    assert_eq!(raw(a.admin, "GET /metrics\r\n\r\n").status, 400);
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert_eq!(raw(a.admin, &huge).status, 431);
    // A client that sends nothing holds no one up.
    let _idle = TcpStream::connect(a.admin).unwrap();
    assert_eq!(get(a.admin, "/healthz").status, 200);
}

#[test]
fn the_endpoint_on_a_unix_socket() {
    let dir = TempDir::new("admin-unix");
    let path = dir.join("admin.sock");
    let server = server::serve(artifacts::rust_plugin("testapps"))
        .arg("--admin-bind")
        .arg(format!("unix:{}", path.display()))
        .start();
    server.wait_for_log("admin endpoint on unix:", TIMEOUT);
    let out = Command::new("curl")
        .args([
            "-s",
            "--unix-socket",
            path.to_str().unwrap(),
            "http://admin/healthz",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
}

#[test]
fn bad_admin_addresses_are_one_line_errors() {
    let plugin = artifacts::rust_plugin("testapps");
    let out = server::run([
        "serve".as_ref(),
        plugin.as_os_str(),
        "-b".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--admin-bind".as_ref(),
        "127.0.0.1:notaport".as_ref(),
    ]);
    assert!(out.error_line().contains("--admin-bind"), "{out:?}");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = server::run([
        "serve".as_ref(),
        plugin.as_os_str(),
        "-b".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--admin-bind".as_ref(),
        port.as_ref(),
    ]);
    let line = out.error_line();
    assert!(
        line.contains("--admin-bind") && line.contains(&port),
        "{line}"
    );
}

#[test]
fn host_top_draws_a_screen_on_a_terminal_and_lines_otherwise() {
    let a = start(&["-w", "2"]);
    let pid = a.pidfile.to_str().unwrap().to_string();
    wait("two ready workers", || {
        metrics(a.admin)["host_workers{state=\"ready\"}"] == 2.0
    });
    let workers: Vec<i64> = status(a.admin)
        .get("workers")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|w| num(w.get("pid")) as i64)
        .collect();
    // Piped: plain lines, one per second.
    let out = Command::new(artifacts::host())
        .args(["top", "-p", &pid, "-n", "2"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("master ") && l.contains("requests/s") && !l.contains('\x1b')),
        "{text}"
    );
    // In a pseudo-terminal: the screen, with a line per worker.
    let script = "import os, pty, sys\n\
                  pid, fd = pty.fork()\n\
                  if pid == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n\
                  out = b''\n\
                  while True:\n    try:\n        chunk = os.read(fd, 65536)\n    except OSError:\n        break\n    if not chunk:\n        break\n    out += chunk\n\
                  os.waitpid(pid, 0)\n\
                  sys.stdout.write(out.decode('utf-8', 'replace'))\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(artifacts::host())
        .args(["top", "-p", &pid, "-n", "2"])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("\x1b[H\x1b[2J"),
        "no screen drawn: {screen:?}"
    );
    assert!(
        screen.contains("WORKER") && screen.contains("requests/s"),
        "{screen}"
    );
    for w in workers {
        assert!(
            screen.contains(&format!("{w:>8}")),
            "worker {w} missing: {screen}"
        );
    }
}
