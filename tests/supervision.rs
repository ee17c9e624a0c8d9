//! The master and its workers, seen from a client's side of the socket:
//! a stopping server refuses new clients instead of accepting connections
//! nobody will serve, a dead master leaves the port free at once, a
//! request past `-t` costs only itself, a client crashing workers in a loop
//! does not take the service down, and requests whose clients left while
//! they waited in the backlog are not run.
//!
//! Most tests serve the `testapps` plugin (`GET /sleep?ms=N` answers
//! `slept N` after N ms); the crash tests serve the process tests' `swap`
//! plugin (`GET /segv` crashes the worker, `GET /` answers `build v1 pid
//! N`). They wait on log lines or on the kernel's view of the port, each
//! with a deadline: none sleeps its way to green.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::artifacts::{self, TempDir};
use integration_tests::client::{self, Conn};
use integration_tests::server::{self, Server};
use integration_tests::TIMEOUT;

/// What a worker's event loop logs when TERM reaches it, just before it
/// takes its backlog and closes its listening sockets.
const WORKER_STOPPING: &str = "TERM: finishing in-flight requests";

/// `GET target` with keep-alive, as raw bytes.
fn get_request(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// Whether a socket in this network namespace listens on TCP `port` (any
/// address): the kernel's own table, so no connection is made to find out.
fn listening(port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        let text = fs::read_to_string(table).unwrap_or_default();
        // "sl local_address rem_address st ...": the state 0A is LISTEN.
        text.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&wanted) && fields[3] == "0A"
        })
    })
}

/// Polls `done` until it holds; panics with `what` and the server's log at
/// `timeout`.
fn wait_until(server: &Server, timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} (waited {timeout:?}); log:\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Kills a process group when dropped: the workers a test orphaned by
/// killing their master, which the server's own cleanup (a kill of the
/// group while the master is unreaped) might not reach.
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

/// A listening socket on `addr` with SO_REUSEADDR, as any server binds
/// (std's `TcpListener::bind` does not set it, and without it Linux refuses
/// an address that connections still established or in TIME_WAIT use).
fn bind_again(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(16)?;
    Ok(socket)
}

/// Sends `GET target` on keep-alive connections, one request at a time,
/// until `stop` is set; each must answer 200 `expected`. A connection the
/// server closed (after `Connection: close`, or idle) is replaced without
/// counting. Ok(answered), or the first failure.
fn back_to_back(
    addr: SocketAddr,
    target: &str,
    expected: &str,
    stop: &AtomicBool,
) -> Result<usize, String> {
    let mut answered = 0;
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.as_ref().is_some_and(Conn::peer_closed) {
            conn = None;
        }
        let c = match conn {
            Some(ref mut c) => c,
            None => conn.insert(Conn::try_connect(addr).map_err(|e| format!("connecting: {e}"))?),
        };
        c.try_send(&get_request(target))
            .map_err(|e| format!("request {}: sending: {e}", answered + 1))?;
        let resp = c
            .try_read_response()
            .map_err(|e| format!("request {}: {e}", answered + 1))?;
        if (resp.status, resp.text().as_str()) != (200, expected) {
            return Err(format!("request {}: got {:?}", answered + 1, resp.raw));
        }
        answered += 1;
        if resp.connection_has("close") {
            conn = None;
        }
    }
    Ok(answered)
}

#[test]
fn term_refuses_new_clients_during_the_drain() {
    let mut server = server::serve(artifacts::rust_plugin("testapps"))
        .args(["--graceful-timeout", "10"])
        .start();
    let addr = server.addr();
    server.wait_for_log(" booted", TIMEOUT);
    assert!(
        listening(addr.port()),
        "no listener on {addr} in /proc/net/tcp"
    );
    let mut slow = server.connect();
    slow.send(&get_request("/sleep?ms=1500"));
    let sent = Instant::now();

    server.terminate();
    server.wait_for_log(WORKER_STOPPING, TIMEOUT);
    // The worker logs that line before it takes its backlog and closes its
    // listeners: a connect right after the line could still reach the
    // backlog. Wait for the kernel to drop the listening socket, which it
    // does only once no process holds a copy (the master's included). It
    // must happen well before the request in flight ends (1.5 s), when the
    // worker exits and would close it anyway.
    wait_until(
        &server,
        Duration::from_secs(1),
        "the port was still listening after the worker began its stop",
        || !listening(addr.port()),
    );
    assert!(
        sent.elapsed() < Duration::from_millis(1500),
        "too slow to look at the port during the drain ({:?}); log:\n{}",
        sent.elapsed(),
        server.logs()
    );
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        Err(e) => panic!("connecting during the drain failed, but not as refused: {e}"),
        Ok(_) => panic!(
            "a client connected during the drain: the kernel accepted a connection \
             nobody will serve; log:\n{}",
            server.logs()
        ),
    }

    let resp = slow.try_read_response().unwrap_or_else(|e| {
        panic!(
            "the request in flight at TERM got no response: {e}; log:\n{}",
            server.logs()
        )
    });
    assert!(!slow.reset, "the in-flight connection was reset: {resp:?}");
    assert_eq!((resp.status, resp.text().as_str()), (200, "slept 1500"));
    let status = server.wait_exit(TIMEOUT);
    assert!(status.success(), "TERM should exit 0, got {status}");
}

#[test]
fn sigkill_of_the_master_frees_the_port_within_a_second() {
    let server = server::serve(artifacts::rust_plugin("testapps")).start();
    // Declared after the server, so dropped before it: the orphaned worker
    // goes even when an assertion fails.
    let _orphans = KillGroup(server.pid());
    let addr = server.addr();
    server.wait_for_log(" booted", TIMEOUT);

    let mut idle = server.connect();
    idle.send(&get_request("/sleep?ms=1"));
    let resp = idle.read_response();
    assert_eq!(resp.status, 200);
    assert!(!resp.connection_has("close"), "{:?}", resp.raw_head);
    let mut busy = server.connect();
    busy.send(&get_request("/sleep?ms=3000"));

    // The master only: its worker learns of it from the kernel (TERM).
    server.send_signal("KILL");
    let killed = Instant::now();
    let rebound = loop {
        match bind_again(addr) {
            Ok(socket) => break socket,
            Err(e) => assert!(
                killed.elapsed() < Duration::from_secs(1),
                "{addr} still cannot be bound 1 s after the master was killed: {e}; log:\n{}",
                server.logs()
            ),
        }
        thread::sleep(Duration::from_millis(10));
    };
    drop(rebound);

    // The orphaned worker still finishes what it was running.
    let resp = busy.try_read_response().unwrap_or_else(|e| {
        panic!(
            "the request in flight when the master died got no response: {e}; log:\n{}",
            server.logs()
        )
    });
    assert_eq!((resp.status, resp.text().as_str()), (200, "slept 3000"));
}

#[test]
fn timed_out_request_costs_only_itself() {
    let server = server::serve(artifacts::rust_plugin("testapps"))
        .args(["--threads", "4", "-t", "2", "--graceful-timeout", "5"])
        .start();
    server.wait_for_log_count(" booted", 1, TIMEOUT);

    // Beside the hung request: one shorter than -t, and a client sending
    // requests shorter than -t back to back, so one of them is in flight
    // on the worker when the master gives up on the hung one.
    let mut hung = server.connect();
    hung.send(&get_request("/sleep?ms=5000"));
    let mut short = server.connect();
    short.send(&get_request("/sleep?ms=1500"));
    let stop = Arc::new(AtomicBool::new(false));
    let steady = {
        let (addr, stop) = (server.addr(), Arc::clone(&stop));
        thread::spawn(move || back_to_back(addr, "/sleep?ms=400", "slept 400", &stop))
    };

    let resp = hung.try_read_response().unwrap_or_else(|e| {
        panic!(
            "the request past -t should get a 503, got no response: {e}; log:\n{}",
            server.logs()
        )
    });
    stop.store(true, Ordering::Relaxed);
    assert!(
        resp.raw_head.starts_with("HTTP/1.1 503"),
        "the request past -t should get a 503: {:?}; log:\n{}",
        resp.raw_head,
        server.logs()
    );
    let resp = short.try_read_response().unwrap_or_else(|e| {
        panic!(
            "the short request beside the hung one failed: {e}; log:\n{}",
            server.logs()
        )
    });
    assert_eq!((resp.status, resp.text().as_str()), (200, "slept 1500"));
    match steady.join().expect("the steady client panicked") {
        Ok(answered) => assert!(answered >= 3, "only {answered} steady requests"),
        Err(e) => panic!(
            "a request beside the hung one failed: {e}; log:\n{}",
            server.logs()
        ),
    }

    let log = server.wait_for_log(
        "timed out: request \"GET /sleep?ms=5000 HTTP/1.1\"",
        TIMEOUT,
    );
    assert!(
        log.lines()
            .any(|l| l.contains("timed out: request") && l.contains("retiring it")),
        "the timed-out worker should be retired, not killed:\n{log}"
    );
    let log = server.wait_for_log("(timed out, retired)", TIMEOUT);
    let exited = log
        .find("(timed out, retired)")
        .expect("the line just waited for");
    let second_boot = log
        .match_indices(" booted")
        .nth(1)
        .map(|(at, _)| at)
        .unwrap_or_else(|| panic!("no replacement booted:\n{log}"));
    assert!(
        second_boot < exited,
        "the replacement should boot at once, not after the timed-out worker left:\n{log}"
    );
    assert!(
        !log.contains("killed by signal") && !log.contains("times in a row"),
        "the timed-out worker was killed, or counted as a crash:\n{log}"
    );
    let resp = client::get(server.addr(), "/sleep?ms=1");
    assert_eq!((resp.status, resp.text().as_str()), (200, "slept 1"));
}

/// TERM reaches a worker that is still booting (here: a reload's canary,
/// in a slow init): the worker must not lose it and go on to serve, and
/// listen, after the master closed its sockets; the whole server stops
/// well within the graceful timeout, and nobody listens on the port.
#[test]
fn term_while_a_worker_boots_is_not_lost() {
    let mut server = server::serve(artifacts::rust_plugin("testapps"))
        .args(["--graceful-timeout", "30", "--app-arg", "init_ms=1500"])
        .start();
    let port = server.port();
    server.send_signal("HUP");
    server.wait_for_log("reload: booting build", TIMEOUT);
    // The canary is in its init: TERM now.
    server.terminate();
    let stopped = Instant::now();
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}; log:\n{}", server.logs());
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "the server took {:?} to stop (a worker missed its TERM?); log:\n{}",
        stopped.elapsed(),
        server.logs()
    );
    assert!(
        !listening(port),
        "port {port} still listened on after the stop"
    );
}

/// The `swap` plugin built as `v1`, in a scratch directory (kept as long as
/// the returned guard).
fn swap_plugin() -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("swap");
    let path = dir.join("libapp.so");
    artifacts::swap_plugin("v1", &[], &path);
    (dir, path)
}

/// `GET /` on a fresh connection: `Ok(pid of the worker that answered)`.
fn answering_pid(addr: SocketAddr) -> Result<u32, String> {
    let mut conn = Conn::try_connect(addr).map_err(|e| format!("connecting: {e}"))?;
    conn.try_send(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("sending: {e}"))?;
    let resp = conn.try_read_response()?;
    let text = resp.text();
    match text.strip_prefix("build v1 pid ") {
        Some(pid) if resp.status == 200 => pid.trim().parse().map_err(|_| text.clone()),
        _ => Err(format!("unexpected answer {:?}", resp.raw)),
    }
}

/// A client hitting a crashing route every 0.2 s for several seconds, with
/// `-w 2`: the server answers others throughout (at least one worker is
/// always up), and once the attack stops it serves at once and is back to
/// both workers within seconds — not after a backoff that grew with the
/// attack. No crash is taken for a worker that could not boot.
#[test]
fn a_crash_loop_attack_does_not_outlast_the_attack() {
    let (_dir, plugin) = swap_plugin();
    let server = server::serve(&plugin).args(["-w", "2"]).start();
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                // Sends, waits a little for an answer, and gives up: what is
                // not taken in time is left in the backlog.
                if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    let _ = s.write_all(b"GET /segv HTTP/1.1\r\nHost: test\r\n\r\n");
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = s.read(&mut [0u8; 64]);
                    sent += 1;
                }
                thread::sleep(Duration::from_millis(200));
            }
            sent
        })
    };
    let attack = Instant::now();
    let (mut answered, mut failed) = (0, 0);
    while attack.elapsed() < Duration::from_secs(6) {
        match answering_pid(addr) {
            Ok(_) => answered += 1,
            Err(_) => failed += 1,
        }
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = attacker.join().expect("the attacker panicked");
    let stopped = Instant::now();
    assert!(
        answered > failed,
        "during the attack ({sent} crashing requests) {answered} requests were answered \
         and {failed} failed; log:\n{}",
        server.logs()
    );
    // Served at once after the attack...
    let first = loop {
        if answering_pid(addr).is_ok() {
            break stopped.elapsed();
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "still not serving 3 s after the attack stopped; log:\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    };
    for i in 0..20 {
        if let Err(e) = answering_pid(addr) {
            panic!(
                "request {i} after the attack failed: {e}; log:\n{}",
                server.logs()
            );
        }
    }
    // ... and both workers back within seconds: the slots are forgiven
    // once nothing has crashed for 5 s.
    let deadline = stopped + Duration::from_secs(10);
    let mut pids = std::collections::BTreeSet::new();
    while pids.len() < 2 {
        if let Ok(pid) = answering_pid(addr) {
            pids.insert(pid);
        }
        assert!(
            Instant::now() < deadline,
            "one worker only, 10 s after the attack stopped; log:\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let log = server.logs();
    assert!(
        log.matches("killed by signal 11 (SIGSEGV)").count() >= 5,
        "the attack crashed too few workers to test anything:\n{log}"
    );
    assert!(
        !log.contains("could not boot") && !log.contains("crashed while loading"),
        "a worker that crashed on a request was logged as one that could not boot:\n{log}"
    );
    assert!(
        first < Duration::from_secs(3),
        "first answer {first:?} after the attack"
    );
}

/// Clients that sent a crashing request and left while it waited in the
/// listen backlog (the only worker was not accepting: stopped here, as a
/// worker that is booting or was replaced after a crash) — one closed its
/// connection, one reset it — do not get their requests run: the worker
/// does not crash. A client that half-closed after its request and waited
/// as long gets a 503, not a reset, and the request is named in the log.
/// Two addresses, each with a client that left: each listener's backlog is
/// looked at, not only the first one emptied.
#[test]
fn requests_left_in_the_backlog_by_clients_who_left_are_not_run() {
    let (_dir, plugin) = swap_plugin();
    let server = server::serve(&plugin)
        .bind("127.0.0.1:0")
        .bind("127.0.0.1:0")
        .args(["-w", "1"])
        .start();
    let log = server.wait_for_log(" booted", TIMEOUT);
    let pid = answering_pid(server.addr()).expect("the worker answers");
    assert!(log.contains(&format!("worker {pid} booted")), "{log}");
    let kill = |sig: &str| {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid}");
    };
    kill("STOP");
    let (addr, other) = (server.addrs[0], server.addrs[1]);
    let segv = b"GET /segv HTTP/1.1\r\nHost: test\r\n\r\n";
    // Closed: a FIN after the request.
    let mut closed = TcpStream::connect(addr).unwrap();
    closed.write_all(segv).unwrap();
    drop(closed);
    // Reset: SO_LINGER 0 turns the close into a RST.
    let reset = TcpStream::connect(other).unwrap();
    (&reset).write_all(segv).unwrap();
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reset);
    // Half-closed, still reading.
    let mut half = TcpStream::connect(other).unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    half.shutdown(Shutdown::Write).unwrap();
    half.set_read_timeout(Some(TIMEOUT)).unwrap();
    thread::sleep(Duration::from_millis(1500));
    kill("CONT");

    let mut answer = Vec::new();
    let _ = half.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 "),
        "the half-closed client that waited should get a 503: {answer:?}; log:\n{}",
        server.logs()
    );
    for _ in 0..5 {
        assert_eq!(
            answering_pid(addr),
            Ok(pid),
            "the same worker should still serve; log:\n{}",
            server.logs()
        );
    }
    let log = server.logs();
    assert!(
        !log.contains("killed by signal"),
        "a request whose client had left was run:\n{log}"
    );
    assert!(
        log.contains("GET /segv HTTP/1.1") && log.contains("answered 503 without running"),
        "the dropped request should be named in the log:\n{log}"
    );
}

/// A client that half-closes its connection right after its request (the
/// request is all it sends) is served as any other: the backlog rule is for
/// requests that waited, not for half-closing.
#[test]
fn half_closing_clients_are_served() {
    let (_dir, plugin) = swap_plugin();
    let server = server::serve(&plugin).start();
    server.wait_for_log(" booted", TIMEOUT);
    for close in [false, true] {
        let mut conn = TcpStream::connect(server.addr()).unwrap();
        let header = if close { "Connection: close\r\n" } else { "" };
        conn.write_all(format!("GET / HTTP/1.1\r\nHost: test\r\n{header}\r\n").as_bytes())
            .unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200 ") && answer.contains("build v1 pid "),
            "a half-closing client (Connection: close {close}) got {answer:?}"
        );
    }
}
