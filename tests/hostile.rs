//! Hostile clients at default settings (one worker, one app thread): each
//! way one TCP connection could take the whole server down, run end to end
//! against the real binary. While an attack runs, a test checks that
//! - innocent clients are served: every request succeeds, each within
//!   [`INNOCENT_BOUND`] (unless the test says why it cannot be);
//! - the attacker is cut off: `408` where a response is still possible,
//!   else its connection ends (EOF or reset), within the grace it was given;
//! - the cut is logged at info with `too slow` and the attacker's
//!   `peer=127.0.0.1:PORT` (and `request="..."` once its request line is
//!   known);
//! - where the attack is about memory, the worker's RSS (from /proc) stays
//!   within a bound over its idle RSS.
//!
//! Only the flags a test is about are changed: the short graces
//! (`--body-timeout 1`, ...), and `--limit-head-memory`,
//! `--no-request-buffering` and `-t` where those are what is tested; never
//! the worker or thread count.
//! Nothing sleeps its way to green: the tests wait for log lines and socket
//! events with deadlines. The only sleeps are an attacker's pauses between
//! the pieces it drips, the innocents' pace, and the pace of polling /proc
//! and the log.
//!
//! A failing test lists every problem it saw (innocents, attacker, log,
//! memory) at once, then the server's log, so one run says everything that
//! is wrong.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use integration_tests::artifacts;
use integration_tests::client::Conn;
use integration_tests::server::{self, Server};
use integration_tests::TIMEOUT;
use socket2::{Domain, Protocol, Socket, Type};

/// The longest an innocent request may take while an attack runs.
const INNOCENT_BOUND: Duration = Duration::from_millis(500);
/// An innocent request still unanswered after this is recorded as failed,
/// so that a blocked server fails the test in bounded time.
const INNOCENT_GIVE_UP: Duration = Duration::from_secs(3);
/// The pause between two innocent requests.
const INNOCENT_PACE: Duration = Duration::from_millis(50);
/// The fewest innocent requests an attack must see (at least one blocked
/// request is recorded however slow the server is; this guards against a
/// loop that never ran).
const MIN_INNOCENTS: usize = 3;
/// How long after the attacker was cut off its log line may appear.
const LOG_GRACE: Duration = Duration::from_secs(2);
/// The grace every test gives through its timeout flag (`--body-timeout 1`
/// and the like).
const GRACE: Duration = Duration::from_secs(1);
/// How late after [`GRACE`] the server may cut the attacker off: its
/// timers need not be exact.
const CUT_MARGIN: Duration = Duration::from_millis(1500);
/// How much the worker's RSS may grow while a client does not read a
/// 64 MiB response: half of it, so that a server keeping the whole
/// response (less the few MiB the kernel's socket buffers take, which are
/// not in the RSS) is noticed.
const RESPONSE_RSS_GROWTH: u64 = 32 << 20;
/// How much the worker's RSS may grow while a thousand clients send
/// 100 KB heads (100 MB in all) under `--limit-head-memory` 16 MiB.
const HEADS_RSS_GROWTH: u64 = 64 << 20;
/// `--limit-head-memory` for the thousand heads.
const HEAD_MEMORY: u64 = 16 << 20;

// ---------------------------------------------------------------------------
// Problems: every check of a test, reported together

/// What went wrong in a test, reported all at once at the end.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, problem: String) {
        self.0.push(problem);
    }

    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.add(problem());
        }
    }

    /// Panics with every problem and the server's log, if there was any.
    fn assert_none(self, server: &Server) {
        assert!(
            self.0.is_empty(),
            "{} problem(s):\n- {}\nserver log:\n{}",
            self.0.len(),
            self.0.join("\n- "),
            server.logs()
        );
    }
}

// ---------------------------------------------------------------------------
// Innocent clients

/// One innocent request.
struct Attempt {
    /// When it started, since the innocents started.
    at: Duration,
    took: Duration,
    /// The response status, or what happened instead.
    outcome: Result<u16, String>,
}

/// A background client sending `GET target`, each on a new connection,
/// [`INNOCENT_PACE`] apart, until [`Innocents::finish`] (or until dropped,
/// when a test fails).
struct Innocents {
    target: &'static str,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Attempt>>>,
}

impl Innocents {
    fn start(addr: SocketAddr, target: &'static str) -> Innocents {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let started = Instant::now();
            let mut attempts = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let at = started.elapsed();
                let outcome = innocent_get(addr, target);
                attempts.push(Attempt {
                    at,
                    took: started.elapsed() - at,
                    outcome,
                });
                thread::sleep(INNOCENT_PACE);
            }
            attempts
        });
        Innocents {
            target,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the client and checks that it made at least [`MIN_INNOCENTS`]
    /// requests, each answered 200 within `bound`.
    fn finish(self, bound: Duration, problems: &mut Problems) {
        self.finish_with(bound, MIN_INNOCENTS, problems);
    }

    /// `finish`, with at least `min` requests.
    fn finish_with(mut self, bound: Duration, min: usize, problems: &mut Problems) {
        self.stop.store(true, Ordering::Relaxed);
        let attempts = self
            .thread
            .take()
            .expect("finished once")
            .join()
            .expect("the innocent client panicked");
        let target = self.target;
        problems.check(attempts.len() >= min, || {
            format!(
                "only {} innocent GET {target} during the attack",
                attempts.len()
            )
        });
        let worst = attempts.iter().map(|a| a.took).max().unwrap_or_default();
        let mut bad = Vec::new();
        for (i, a) in attempts.iter().enumerate() {
            let what = format!(
                "innocent GET {target} #{} (started at {:.2} s)",
                i + 1,
                a.at.as_secs_f64()
            );
            match &a.outcome {
                Ok(200) if a.took <= bound => {}
                Ok(200) => bad.push(format!(
                    "{what} took {:.2} s (bound {bound:?})",
                    a.took.as_secs_f64()
                )),
                Ok(status) => bad.push(format!("{what} was answered {status}")),
                Err(e) => bad.push(format!(
                    "{what} failed after {:.2} s: {e}",
                    a.took.as_secs_f64()
                )),
            }
        }
        // The first few say what happened; the rest only how often.
        const SHOWN: usize = 5;
        if bad.len() > SHOWN {
            let more = bad.len() - SHOWN;
            bad.truncate(SHOWN);
            bad.push(format!(
                "... and {more} more of {} innocent requests",
                attempts.len()
            ));
        }
        bad.into_iter().for_each(|b| problems.add(b));
        if problems.0.is_empty() {
            eprintln!(
                "{} innocent GET {target}, slowest {worst:?}",
                attempts.len()
            );
        }
    }
}

impl Drop for Innocents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One `GET target` on a new connection: its status, or what went wrong
/// (nothing within [`INNOCENT_GIVE_UP`] included).
fn innocent_get(addr: SocketAddr, target: &str) -> Result<u16, String> {
    let mut conn = Conn::try_connect(addr).map_err(|e| format!("connecting: {e}"))?;
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    conn.try_send(request.as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    match conn.await_data(INNOCENT_GIVE_UP) {
        Ok(true) => {}
        Ok(false) => return Err("closed without a response".to_owned()),
        Err(e) => return Err(format!("{e}")),
    }
    conn.try_read_response().map(|resp| resp.status)
}

/// A few innocent requests before the attack, so the worker's idle RSS is
/// measured with its code paged in and its buffers grown.
fn warm_up(server: &Server, target: &str) {
    for _ in 0..5 {
        match innocent_get(server.addr(), target) {
            Ok(200) => {}
            other => panic!(
                "GET {target} before any attack: {other:?}; log:\n{}",
                server.logs()
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Attackers

/// A thread writing `data` to an attacker's connection, `piece` bytes at a
/// time with `pause` after each, until all is sent, the server refuses a
/// write (it closed) or [`Drip::stop`].
struct Drip {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Drip {
    fn start(conn: &Conn, data: Vec<u8>, piece: usize, pause: Duration) -> Drip {
        let mut stream = conn
            .stream()
            .try_clone()
            .expect("cloning the attacker's socket");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut sent = 0;
            for chunk in data.chunks(piece) {
                if flag.load(Ordering::Relaxed) || stream.write_all(chunk).is_err() {
                    break;
                }
                sent += chunk.len();
                thread::sleep(pause);
            }
            sent
        });
        Drip {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops dripping; returns how many bytes were sent.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("stopped once")
            .join()
            .expect("the drip thread panicked")
    }
}

impl Drop for Drip {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How an attacker's connection ended, read with raw reads.
struct Ending {
    /// The first bytes received (at most 4 KiB).
    head: Vec<u8>,
    /// All bytes received.
    total: usize,
    /// When the server closed (EOF) or reset the connection, since the
    /// attack began; `None` if it was still open at the deadline.
    closed_after: Option<Duration>,
}

impl Ending {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }
}

/// Reads (and drops) everything the server sends on `stream` until it
/// closes the connection or `deadline` passes.
fn read_until_closed(stream: &TcpStream, since: Instant, deadline: Instant) -> Ending {
    let mut stream = stream;
    let mut ending = Ending {
        head: Vec::new(),
        total: 0,
        closed_after: None,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream
            .set_read_timeout(Some(left))
            .expect("setting a read timeout");
        match stream.read(&mut buf) {
            Ok(0) => {
                ending.closed_after = Some(since.elapsed());
                break;
            }
            Ok(n) => {
                let keep = n.min(4096usize.saturating_sub(ending.head.len()));
                ending.head.extend_from_slice(&buf[..keep]);
                ending.total += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // Reset or aborted: the server is done with it too.
            Err(_) => {
                ending.closed_after = Some(since.elapsed());
                break;
            }
        }
    }
    ending
}

/// The attacker was answered `408` (with `Connection: close`) and its
/// connection ended within `bound` of the attack's start.
fn check_408(problems: &mut Problems, ending: &Ending, bound: Duration) {
    let text = ending.text();
    problems.check(text.starts_with("HTTP/1.1 408 "), || {
        format!("the attacker was not answered 408 but {text:?}")
    });
    problems.check(
        !text.starts_with("HTTP/1.1 408 ")
            || text
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
        || format!("the 408 does not say `Connection: close`: {text:?}"),
    );
    match ending.closed_after {
        Some(after) => problems.check(after <= bound, || {
            format!(
                "the attacker's connection ended only after {:.2} s (bound {bound:?})",
                after.as_secs_f64()
            )
        }),
        None => problems.add(format!(
            "the attacker's connection was still open after the deadline (bound {bound:?}); \
             it received {text:?}"
        )),
    }
}

// ---------------------------------------------------------------------------
// The log

/// `line` names the client on local port `port` (and not one whose port
/// merely starts with the same digits).
fn names_peer(line: &str, port: u16) -> bool {
    let needle = format!("peer=127.0.0.1:{port}");
    line.match_indices(&needle)
        .any(|(at, _)| !line[at + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Polls the log until a line satisfies `want`; `None` after `timeout`.
fn wait_for_line(
    server: &Server,
    timeout: Duration,
    want: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(line) = server.logs().lines().find(|l| want(l)) {
            return Some(line.to_owned());
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `timeout` for the `too slow` line of the attacker on local
/// port `port`, which must say `phrase` and, when given, the request line
/// `request`. Returns when the line was seen.
fn check_slow_log(
    problems: &mut Problems,
    server: &Server,
    port: u16,
    phrase: &str,
    request: Option<&str>,
    timeout: Duration,
) -> Option<Instant> {
    let line = wait_for_line(server, timeout, |l| {
        l.contains("too slow") && names_peer(l, port)
    });
    let seen = Instant::now();
    let Some(line) = line else {
        let naming: Vec<String> = server
            .logs()
            .lines()
            .filter(|l| names_peer(l, port))
            .map(str::to_owned)
            .collect();
        problems.add(format!(
            "no `too slow` log line with peer=127.0.0.1:{port} within {timeout:?} \
             (wanted {phrase:?}); lines naming the peer: {naming:?}"
        ));
        return None;
    };
    problems.check(line.contains(phrase), || {
        format!("the `too slow` line does not say {phrase:?}: {line:?}")
    });
    if let Some(request) = request {
        let field = format!("request=\"{request}\"");
        problems.check(line.contains(&field), || {
            format!("the `too slow` line does not name the request ({field}): {line:?}")
        });
    }
    Some(seen)
}

// ---------------------------------------------------------------------------
// The worker's memory

/// The pid of the server's one worker: the only child of the host process.
fn worker_pid(server: &Server) -> u32 {
    server.wait_for_log(" booted", TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let children = children(server.pid());
        if let [pid] = children[..] {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the host (pid {}) should have one worker process, it has {children:?}; log:\n{}",
            server.pid(),
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The child processes of `pid` (`/proc/PID/task/*/children`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut found: Vec<u32> = tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// The resident set size of `pid` in bytes (`VmRSS`), `None` once it is
/// gone.
fn rss(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A thread sampling a process's RSS every 10 ms, keeping the largest.
struct RssWatch {
    pid: u32,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (flag, max) = (Arc::clone(&stop), Arc::clone(&peak));
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if let Some(now) = rss(pid) {
                    max.fetch_max(now, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        RssWatch {
            pid,
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The largest RSS seen so far.
    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Stops sampling; checks that the peak stayed within `growth` of
    /// `idle`.
    fn finish(mut self, idle: u64, growth: u64, problems: &mut Problems) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the RSS sampler panicked");
        }
        if let Some(now) = rss(self.pid) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        let peak = self.peak();
        problems.check(peak <= idle + growth, || {
            format!(
                "the worker's RSS reached {} MiB, {} MiB over its idle {} MiB (bound {} MiB)",
                peak >> 20,
                peak.saturating_sub(idle) >> 20,
                idle >> 20,
                growth >> 20
            )
        });
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The worker's RSS once it served a few requests.
fn idle_rss(server: &Server, pid: u32, target: &str) -> u64 {
    warm_up(server, target);
    rss(pid).unwrap_or_else(|| panic!("no RSS for worker {pid}; log:\n{}", server.logs()))
}

// ---------------------------------------------------------------------------
// Request bodies

/// A `Content-Length` head for `POST target`.
fn post_head(target: &str, len: usize) -> String {
    format!("POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n")
}

/// A client sends a head announcing a body, then the body too slowly: it is
/// answered 408 and closed within the body timeout and a margin, and logged,
/// while innocents are served.
fn body_too_slow(
    plugin: &str,
    target: &str,
    innocent: &'static str,
    len: usize,
    drip: (usize, Duration),
) {
    let server = server::serve(artifacts::rust_plugin(plugin))
        .args(["--body-timeout", "1", "--body-min-rate", "1024"])
        .start();
    warm_up(&server, innocent);
    let mut problems = Problems::default();

    let mut attacker = server.connect();
    let port = attacker.local_port();
    attacker.send(post_head(target, len).as_bytes());
    let sent = Instant::now();
    let drip = Drip::start(&attacker, vec![b'x'; len], drip.0, drip.1);
    let innocents = Innocents::start(server.addr(), innocent);

    let bound = GRACE + CUT_MARGIN;
    let ending = read_until_closed(
        attacker.stream(),
        sent,
        sent + bound + Duration::from_secs(1),
    );
    drip.stop();
    innocents.finish(INNOCENT_BOUND, &mut problems);
    check_408(&mut problems, &ending, bound);
    check_slow_log(
        &mut problems,
        &server,
        port,
        "client too slow sending the request body",
        Some(&format!("POST {target} HTTP/1.1")),
        LOG_GRACE,
    );
    problems.assert_none(&server);
}

#[test]
fn body_drip_to_an_app_that_ignores_the_body() {
    // hello answers POST with 405 without reading the body.
    body_too_slow("hello", "/", "/", 60_000, (1, Duration::from_millis(300)));
}

#[test]
fn body_trickle_to_an_app_that_reads_the_body() {
    // 100 bytes/s against a minimum of 1024.
    body_too_slow(
        "testapps",
        "/count",
        "/last",
        8192,
        (20, Duration::from_millis(200)),
    );
}

#[test]
fn body_trickle_above_the_minimum_rate_completes() {
    let server = server::serve(artifacts::rust_plugin("testapps"))
        .args(["--body-timeout", "1", "--body-min-rate", "1024"])
        .start();
    warm_up(&server, "/last");
    let mut problems = Problems::default();

    // 2 KiB every 500 ms: 4 KiB/s, four times the minimum, over 1.5 s.
    let mut uploader = server.connect();
    uploader.send(post_head("/count", 8192).as_bytes());
    let sent = Instant::now();
    let drip = Drip::start(
        &uploader,
        vec![b'x'; 8192],
        2048,
        Duration::from_millis(500),
    );
    let innocents = Innocents::start(server.addr(), "/last");

    let answer = match uploader.await_data(Duration::from_secs(5)) {
        Ok(true) => uploader.try_read_response(),
        Ok(false) => Err("the server closed the upload without an answer".to_owned()),
        Err(e) => Err(format!("the upload was not answered: {e}")),
    };
    let took = sent.elapsed();
    let sent_bytes = drip.stop();
    innocents.finish(INNOCENT_BOUND, &mut problems);
    match answer {
        Ok(resp) => problems.check(resp.status == 200 && resp.text() == "len=8192\n", || {
            format!(
                "the upload (sent {sent_bytes} bytes) was answered {:?} {:?} after {took:?}",
                resp.raw_head,
                resp.text()
            )
        }),
        Err(e) => problems.add(format!("{e} (sent {sent_bytes} bytes, after {took:?})")),
    }
    let log = server.logs();
    problems.check(!log.contains("too slow"), || {
        "an upload above the minimum rate was logged as too slow".to_owned()
    });
    problems.assert_none(&server);
}

/// `--no-request-buffering`: the app streams the upload and its thread
/// waits on the client, which is client time, not app time: `-t 1` does not
/// kill a 4 s upload that keeps up the minimum rate. (No innocents: the one
/// app thread is the upload's by design while it streams.)
#[test]
fn no_request_buffering_with_a_slow_upload() {
    let server = server::serve(artifacts::rust_plugin("testapps"))
        .args(["--no-request-buffering", "-t", "1", "--body-timeout", "1"])
        .start();
    warm_up(&server, "/last");
    let mut problems = Problems::default();

    // 1 KiB every 250 ms: 4 KiB/s over 4 s.
    let mut uploader = server.connect();
    uploader.send(post_head("/count", 16384).as_bytes());
    let sent = Instant::now();
    let drip = Drip::start(
        &uploader,
        vec![b'x'; 16384],
        1024,
        Duration::from_millis(250),
    );
    let answer = match uploader.await_data(Duration::from_secs(8)) {
        Ok(true) => uploader.try_read_response(),
        Ok(false) => Err(format!(
            "the server closed the upload without an answer{}",
            if uploader.reset { " (reset)" } else { "" }
        )),
        Err(e) => Err(format!("the upload was not answered: {e}")),
    };
    let took = sent.elapsed();
    let sent_bytes = drip.stop();
    match answer {
        Ok(resp) => problems.check(resp.status == 200 && resp.text() == "len=16384\n", || {
            format!(
                "the upload (sent {sent_bytes} bytes) was answered {:?} {:?} after {took:?}",
                resp.raw_head,
                resp.text()
            )
        }),
        Err(e) => problems.add(format!("{e} (sent {sent_bytes} bytes, after {took:?})")),
    }
    let log = server.logs();
    problems.check(!log.contains("timed out"), || {
        "the worker was timed out (-t 1) while the app waited on the client".to_owned()
    });
    problems.check(!log.contains("too slow"), || {
        "an upload above the minimum rate was logged as too slow".to_owned()
    });
    problems.assert_none(&server);
}

// ---------------------------------------------------------------------------
// Responses a client does not read

/// The `/counters` answer of testapps: body iterators (opened, closed).
fn counters(server: &Server) -> (u64, u64) {
    let resp = integration_tests::client::get(server.addr(), "/counters");
    let text = resp.text();
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in the /counters answer {text:?}"))
    };
    (field("opened"), field("closed"))
}

/// A connection whose receive buffer is as small as the kernel allows, set
/// before connecting so that the window it offers stays small: a client
/// that does not read takes a few KiB of a response, not megabytes.
fn tiny_window_connect(addr: SocketAddr) -> TcpStream {
    let socket =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("creating a socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("setting SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    socket.into()
}

/// A client asks for an endless or huge response and never reads it: it is
/// closed within the send timeout and a margin and logged, the worker's
/// memory stays bounded, and innocents are served within `innocent_bound`.
/// With `iterator`, the response's body iterator must have been closed once
/// the attacker is gone.
fn slow_reader(target: &str, innocent_bound: Duration, min_innocents: usize, iterator: bool) {
    let server = server::serve(artifacts::rust_plugin("testapps"))
        .args(["--send-timeout", "1", "--send-min-rate", "1024"])
        .start();
    let pid = worker_pid(&server);
    let idle = idle_rss(&server, pid, "/last");
    let before = counters(&server);
    let mut problems = Problems::default();

    let watch = RssWatch::start(pid);
    let mut attacker = tiny_window_connect(server.addr());
    let port = attacker.local_addr().expect("a local address").port();
    // Asks and never reads: what the kernel's buffers take is all it gets.
    attacker
        .write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("sending the request");
    let sent = Instant::now();
    let innocents = Innocents::start(server.addr(), "/last");

    let bound = GRACE + CUT_MARGIN;
    let seen = check_slow_log(
        &mut problems,
        &server,
        port,
        "client too slow reading the response",
        Some(&format!("GET {target} HTTP/1.1")),
        bound + LOG_GRACE,
    );
    if let Some(seen) = seen {
        let after = seen.duration_since(sent);
        // The line is logged as the attacker is cut off.
        problems.check(after <= bound, || {
            format!("the attacker was cut off (logged) only after {after:?} (bound {bound:?})")
        });
    }
    innocents.finish_with(innocent_bound, min_innocents, &mut problems);
    watch.finish(idle, RESPONSE_RSS_GROWTH, &mut problems);

    // The connection was cut: reading now drains what the kernel buffered,
    // then ends, long before a whole 64 MiB (or endless) body.
    let drained = Instant::now();
    let ending = read_until_closed(&attacker, drained, drained + Duration::from_secs(3));
    problems.check(ending.closed_after.is_some(), || {
        format!(
            "the attacker's connection was still open {:?} after the request \
             ({} bytes read while draining it)",
            sent.elapsed(),
            ending.total
        )
    });
    problems.check(ending.total < 64 << 20, || {
        format!(
            "the attacker could still read {} bytes: it was not cut off",
            ending.total
        )
    });
    drop(attacker);

    if iterator {
        // Its body iterator was closed: as many closed as opened, one more
        // of each than before.
        let deadline = Instant::now() + Duration::from_secs(3);
        let after = loop {
            let now = counters(&server);
            if now.1 > before.1 || Instant::now() >= deadline {
                break now;
            }
            thread::sleep(Duration::from_millis(20));
        };
        problems.check(after == (before.0 + 1, before.1 + 1), || {
            format!(
                "/counters went from opened={} closed={} to opened={} closed={}: \
                 the attacker's body iterator was not closed",
                before.0, before.1, after.0, after.1
            )
        });
    }
    problems.assert_none(&server);
}

#[test]
fn slow_reader_of_a_buffered_response() {
    slow_reader("/big?mb=64", INNOCENT_BOUND, MIN_INNOCENTS, false);
}

#[test]
fn slow_reader_of_a_streamed_response() {
    slow_reader("/flood", INNOCENT_BOUND, MIN_INNOCENTS, true);
}

/// The write() path: the app thread itself waits in write() past the
/// high-water mark (client time, not app time), so with one app thread the
/// innocents wait until the attacker is cut off, and no longer: the first
/// is served once it is (the attack lasts about the grace, so one or two
/// get through meanwhile).
#[test]
fn slow_reader_of_a_written_response() {
    slow_reader("/big-write?mb=64", GRACE + CUT_MARGIN, 1, false);
}

// ---------------------------------------------------------------------------
// Request heads

#[test]
fn head_drip_is_answered_408_and_logged() {
    let server = server::serve(artifacts::rust_plugin("hello"))
        .args(["--header-timeout", "1"])
        .start();
    warm_up(&server, "/");
    let mut problems = Problems::default();

    let attacker = server.connect();
    let port = attacker.local_port();
    let started = Instant::now();
    let head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Drip: {}", "a".repeat(100));
    let drip = Drip::start(&attacker, head.into_bytes(), 1, Duration::from_millis(200));
    let innocents = Innocents::start(server.addr(), "/");

    let bound = GRACE + Duration::from_millis(500);
    let ending = read_until_closed(
        attacker.stream(),
        started,
        started + bound + Duration::from_secs(1),
    );
    drip.stop();
    innocents.finish(INNOCENT_BOUND, &mut problems);
    check_408(&mut problems, &ending, bound);
    // After a second of dripping the request line is not complete yet.
    check_slow_log(
        &mut problems,
        &server,
        port,
        "client too slow sending the request head",
        None,
        LOG_GRACE,
    );
    problems.assert_none(&server);
}

/// Pipelined requests and the body each answer must have.
#[derive(Default)]
struct Burst {
    bytes: Vec<u8>,
    bodies: Vec<String>,
}

impl Burst {
    /// Adds about `size` bytes of `GET /last`, every thousandth request a
    /// `GET /get?key=QUERY_STRING&i=N`, which answers its own query string,
    /// so that the order of the answers shows.
    fn pipeline(&mut self, size: usize) {
        let end = self.bytes.len() + size;
        while self.bytes.len() < end {
            let i = self.bodies.len();
            if i.is_multiple_of(1000) {
                let query = format!("key=QUERY_STRING&i={i}");
                self.push(&format!("/get?{query}"), &query);
            } else {
                self.push("/last", "last\n");
            }
        }
    }

    fn push(&mut self, target: &str, body: &str) {
        self.bytes
            .extend_from_slice(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        self.bodies.push(body.to_owned());
    }

    /// Writes the whole burst at once on `conn` while a thread reads the
    /// answers; `Err` says how it went wrong (the answers stopped for 3 s,
    /// one was wrong, the write failed). Gives the connection back.
    fn send(self, conn: Conn) -> (Conn, Result<(), String>) {
        let mut writer = conn.stream().try_clone().expect("cloning the socket");
        writer
            .set_write_timeout(Some(Duration::from_secs(5)))
            .expect("setting a write timeout");
        let count = self.bodies.len();
        let reader = thread::spawn(move || {
            let mut conn = conn;
            let outcome = read_answers(&mut conn, &self.bodies);
            (conn, outcome)
        });
        let written = writer.write_all(&self.bytes);
        let (conn, outcome) = reader.join().expect("the reader panicked");
        let outcome = outcome.and_then(|()| {
            written.map_err(|e| format!("writing the burst failed though all was answered: {e}"))
        });
        let outcome = outcome.map_err(|e| {
            format!(
                "{count} pipelined requests ({} bytes): {e}",
                self.bytes.len()
            )
        });
        (conn, outcome)
    }
}

/// Reads one answer per entry of `bodies`, each 200 with that body.
fn read_answers(conn: &mut Conn, bodies: &[String]) -> Result<(), String> {
    for (i, want) in bodies.iter().enumerate() {
        match conn.await_data(Duration::from_secs(3)) {
            Ok(true) => {}
            Ok(false) => return Err(format!("the connection closed after {i} answers")),
            Err(e) => return Err(format!("the answers stopped after {i}: {e}")),
        }
        let resp = conn
            .try_read_response()
            .map_err(|e| format!("answer {i}: {e}"))?;
        if resp.status != 200 || resp.text() != *want {
            return Err(format!(
                "answer {i} is {:?} {:?}, expected 200 {want:?}",
                resp.raw_head,
                resp.text()
            ));
        }
    }
    match conn.unread().len() {
        0 => Ok(()),
        n => Err(format!("{n} bytes after the last answer")),
    }
}

/// Two megabytes of pipelined requests written at once on one connection
/// while a thread reads the answers, a few times over: first as the
/// connection's first bytes, then behind a request that keeps the one app
/// thread busy, so that much of the burst waits in the socket (whose buffer
/// grew during the first) before the server reads it. Today's server reads
/// at most its head cap (~890 KiB) per readiness event and stalls when the
/// rest is already in the socket; whether the rest is there is a race,
/// which the later rounds make likely.
#[test]
fn pipelined_burst_of_two_megabytes() {
    const SIZE: usize = 2_000_000;
    const ROUNDS: usize = 3;
    let server = server::serve(artifacts::rust_plugin("testapps")).start();
    let mut problems = Problems::default();

    let started = Instant::now();
    let mut conn = server.connect();
    for round in 1..=ROUNDS {
        let mut burst = Burst::default();
        if round > 1 {
            burst.push("/sleep?ms=300", "slept 300");
        }
        burst.pipeline(SIZE);
        let outcome;
        (conn, outcome) = burst.send(conn);
        if let Err(e) = outcome {
            problems.add(format!("burst {round} of {ROUNDS}: {e}"));
            break;
        }
    }
    eprintln!("{ROUNDS} bursts: {:?}", started.elapsed());
    problems.assert_none(&server);
}

/// A thousand connections each send ~100 KB of valid header lines and never
/// the blank line: 100 MB of partial heads against a 16 MiB budget. The
/// worker's memory stays bounded, the largest heads are refused with 431,
/// and innocents are served meanwhile.
#[test]
fn a_thousand_unfinished_heads_stay_bounded() {
    const ATTACKERS: usize = 1000;
    let server = server::serve(artifacts::rust_plugin("hello"))
        .args(["--limit-head-memory", &HEAD_MEMORY.to_string()])
        .start();
    let pid = worker_pid(&server);
    let idle = idle_rss(&server, pid, "/");
    let mut problems = Problems::default();

    // 99 fields of 1000 bytes after Host: within the field count (100) and
    // field size (8190) limits, so each head is valid so far.
    let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..99 {
        head.push_str(&format!("X-Pad-{i:02}: {}\r\n", "a".repeat(988)));
    }
    let head = head.into_bytes();

    let watch = RssWatch::start(pid);
    let innocents = Innocents::start(server.addr(), "/");
    let mut attackers: Vec<(TcpStream, usize, Vec<u8>)> = (0..ATTACKERS)
        .map(|i| {
            let s =
                TcpStream::connect(server.addr()).unwrap_or_else(|e| panic!("attacker {i}: {e}"));
            s.set_nonblocking(true).expect("non-blocking");
            (s, 0, Vec::new())
        })
        .collect();

    // Write every head as fast as the server takes it (non-blocking rounds
    // over all connections), reading what the server answers meanwhile.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(6);
    let mut buf = [0u8; 256];
    let refused = |answers: &[(TcpStream, usize, Vec<u8>)]| {
        answers
            .iter()
            .filter(|(_, _, got)| got.starts_with(b"HTTP/1.1 431 "))
            .count()
    };
    loop {
        let mut writing = 0;
        for (s, sent, got) in &mut attackers {
            if *sent < head.len() {
                match s.write(&head[*sent..]) {
                    Ok(n) => *sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // Refused and closed: it writes no more.
                    Err(_) => *sent = head.len(),
                }
                if *sent < head.len() {
                    writing += 1;
                }
            }
            if got.len() < buf.len() {
                if let Ok(n) = s.read(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
        let done = writing == 0 && refused(&attackers) > 0;
        if done || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let written: usize = attackers.iter().map(|(_, sent, _)| *sent).sum();
    // The heads can all be written in a fraction of a second (the kernel
    // takes them); the attack goes on while they are held, so innocents
    // keep asking for a while with every connection still open.
    thread::sleep((started + Duration::from_secs(2)).saturating_duration_since(Instant::now()));
    let peak_during = watch.peak();
    innocents.finish(INNOCENT_BOUND, &mut problems);
    watch.finish(idle, HEADS_RSS_GROWTH, &mut problems);
    let refused = refused(&attackers);
    let other: Vec<String> = attackers
        .iter()
        .filter(|(_, _, got)| !got.is_empty() && !got.starts_with(b"HTTP/1.1 431 "))
        .take(3)
        .map(|(_, _, got)| String::from_utf8_lossy(got).into_owned())
        .collect();
    problems.check(refused > 0, || {
        format!(
            "no attacker was refused with 431 after {:.2} s ({} MB written, peak RSS {} MiB \
             over idle); other answers: {other:?}",
            started.elapsed().as_secs_f64(),
            written / 1_000_000,
            peak_during.saturating_sub(idle) >> 20
        )
    });
    eprintln!(
        "{refused} of {ATTACKERS} heads refused with 431, {} MB written in {:.2} s, \
         peak RSS {} MiB over idle",
        written / 1_000_000,
        started.elapsed().as_secs_f64(),
        peak_during.saturating_sub(idle) >> 20
    );

    problems.assert_none(&server);
}
