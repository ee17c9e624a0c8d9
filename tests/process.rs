//! The process model: a master that never loads the plugin and forks worker
//! processes; hot swap (SIGHUP, `host reload`, `--reload`) without a dropped
//! request; bad builds refused while the old one keeps serving; crashed and
//! hung workers replaced; graceful stop; worker count signals; recycling.
//!
//! Every test serves the `swap` plugin (`tests/fixtures/swap/app.c`) from a
//! scratch directory of its own, built as `v0`, `v1`, ...: its answer to
//! `GET /` names the build and the worker's pid, and its shutdown logs
//! `swap shutdown build <id>`. Deploys are what an operator does: build
//! elsewhere and rename over the served file (or overwrite it in place), then
//! signal the master.
//!
//! The load clients count a request that got no whole response as a failure
//! (they never retry), but reconnect without counting anything when the
//! server said `Connection: close`, or closed an idle keep-alive connection
//! before the next request was sent.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use integration_tests::artifacts::{self, TempDir};
use integration_tests::client::{Conn, Response};
use integration_tests::server::{self, Finished, Server};
use integration_tests::TIMEOUT;

/// A scratch directory holding the plugin file a server is started on.
struct Site {
    /// Removed with everything in it when the test ends.
    _dir: TempDir,
    /// The path given to `host serve`: what a deploy replaces.
    plugin: PathBuf,
    /// Where a build is compiled before it is renamed over `plugin`.
    stage: PathBuf,
    pidfile: PathBuf,
}

impl Site {
    /// `<tmp>/live/libapp.so`, built as `build`.
    fn new(label: &str, build: &str) -> Site {
        let dir = TempDir::new(label);
        for sub in ["live", "stage", "run"] {
            fs::create_dir_all(dir.join(sub)).expect("creating a scratch directory");
        }
        let site = Site {
            plugin: dir.join("live/libapp.so"),
            stage: dir.join("stage/libapp.so"),
            pidfile: dir.join("host.pid"),
            _dir: dir,
        };
        site.deploy(build, &[]);
        site
    }

    /// Compiles `build` (with `extra` defines) and renames it over the
    /// served file.
    fn deploy(&self, build: &str, extra: &[&str]) {
        artifacts::swap_plugin(build, extra, &self.stage);
        self.rename_stage();
    }

    /// Renames whatever is in the stage over the served file.
    fn rename_stage(&self) {
        fs::rename(&self.stage, &self.plugin).expect("renaming the new build into place");
    }

    fn plugin_str(&self) -> &str {
        self.plugin.to_str().expect("a UTF-8 path")
    }

    fn pidfile_str(&self) -> &str {
        self.pidfile.to_str().expect("a UTF-8 path")
    }

    /// `host serve <plugin> -p <pidfile> <args>`, once it listens.
    fn serve(&self, args: &[&str]) -> Server {
        server::serve(&self.plugin)
            .args(["-p", self.pidfile_str()])
            .args(args)
            .start()
    }

    /// `host reload -p <pidfile>`.
    fn reload(&self) -> Finished {
        server::run(["reload", "-p", self.pidfile_str()])
    }

    /// `host reload -p <pidfile>`, which must succeed with a `reloaded:`
    /// line; returns that line.
    fn reload_ok(&self) -> String {
        let run = self.reload();
        assert!(run.status.success(), "`host reload` failed: {run:#?}");
        output_lines(&run)
            .into_iter()
            .find(|l| l.trim_start().starts_with("reloaded:"))
            .unwrap_or_else(|| panic!("`host reload` printed no `reloaded:` line: {run:#?}"))
    }
}

/// Every line a finished command printed, stdout first.
fn output_lines(run: &Finished) -> Vec<String> {
    run.stdout
        .lines()
        .chain(run.stderr.lines())
        .map(str::to_owned)
        .collect()
}

/// `host check <plugin>`'s `build: <12 hex>` value.
fn build_hash(site: &Site) -> String {
    let run = server::run(["check", site.plugin_str()]);
    assert!(run.status.success(), "`host check` failed: {run:#?}");
    let hash = output_lines(&run)
        .iter()
        .find_map(|l| {
            let rest = &l[l.find("build: ")? + "build: ".len()..];
            Some(
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .unwrap_or_else(|| panic!("`host check` printed no `build: ` line: {run:#?}"));
    assert!(
        hash.len() == 12 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "the build should be 12 hex digits, got {hash:?}"
    );
    hash
}

/// `GET target` on a fresh connection (closed after the response); `Err`
/// unless a whole response arrived.
fn try_get(addr: SocketAddr, target: &str) -> Result<Response, String> {
    let mut conn = Conn::try_connect(addr).map_err(|e| format!("connecting: {e}"))?;
    let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    conn.try_send(request.as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    conn.try_read_response()
}

/// `GET target` on a fresh connection, which must answer 200.
fn get_ok(server: &Server, target: &str) -> Response {
    match try_get(server.addr(), target) {
        Ok(resp) if resp.status == 200 => resp,
        Ok(resp) => panic!(
            "GET {target}: expected 200, got {:?}; log:\n{}",
            resp.raw_head,
            server.logs()
        ),
        Err(e) => panic!("GET {target} failed: {e}; log:\n{}", server.logs()),
    }
}

/// The build and worker pid in an answer of `/`: `build v3 pid 1234`.
fn build_and_pid(resp: &Response) -> Option<(String, u32)> {
    let text = resp.text();
    let mut words = text.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("build"), Some(build), Some("pid"), Some(pid)) => {
            Some((build.to_owned(), pid.parse().ok()?))
        }
        _ => None,
    }
}

/// The build that answers `GET /` on a fresh connection.
fn current_build(server: &Server) -> String {
    let resp = get_ok(server, "/");
    build_and_pid(&resp)
        .unwrap_or_else(|| panic!("unexpected answer to GET /: {:?}", resp.text()))
        .0
}

/// Polls fresh `GET /` until `build` answers; panics at `timeout`.
fn wait_for_build(server: &Server, build: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = current_build(server);
        if seen == build {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still answering {seen} instead of {build} after {timeout:?}; log:\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The pid in a log line `... worker PID ...`.
fn worker_pid(line: &str) -> Option<u32> {
    let rest = &line[line.find("worker ")? + "worker ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The pids of the `worker PID booted` lines, in order.
fn booted_pids(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|l| l.contains(" booted"))
        .filter_map(worker_pid)
        .collect()
}

/// The log lines containing `needle`.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

/// The processes of process group `pgid` (the server and its workers: the
/// test harness starts each server in a group of its own), with their
/// states (`Z` for an exited process nobody reaped yet).
fn group_members(pgid: u32) -> Vec<(u32, char)> {
    let mut members = Vec::new();
    for entry in fs::read_dir("/proc").expect("reading /proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold anything, so
        // split after its closing parenthesis.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            let state = fields[0].chars().next().unwrap_or('?');
            members.push((pid, state));
        }
    }
    members
}

/// Waits until the server's process group has exactly `count` processes
/// (the master and its workers); panics with them and the log at `timeout`.
fn wait_for_group_size(server: &Server, pgid: u32, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let members = group_members(pgid);
        if members.len() == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} processes in the server's group after {timeout:?}, \
             found {members:?}; log:\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// What the load clients saw.
#[derive(Debug, Default)]
struct Tally {
    /// Whole 200 responses.
    ok: usize,
    /// Each request that got no whole 200 response, described.
    failures: Vec<String>,
    /// Connections opened.
    connections: usize,
    /// Responses with `Connection: close`.
    closes: usize,
    /// Idle keep-alive connections the server closed before the next
    /// request was sent (seen before sending; not a failure).
    closed_idle: usize,
    builds: BTreeSet<String>,
    pids: BTreeSet<u32>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.failures.extend(other.failures);
        self.connections += other.connections;
        self.closes += other.closes;
        self.closed_idle += other.closed_idle;
        self.builds.extend(other.builds);
        self.pids.extend(other.pids);
    }
}

/// Sends `GET target` on one keep-alive connection at a time, `pause`
/// apart, until `stop` is set or `limit` requests were sent. `phase` says
/// what the test is doing (e.g. the build being swapped in), for failure
/// messages.
fn client_loop(
    addr: SocketAddr,
    target: &str,
    stop: &AtomicBool,
    limit: Option<usize>,
    pause: Duration,
    phase: &AtomicUsize,
) -> Tally {
    let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n");
    let mut tally = Tally::default();
    let mut conn: Option<Conn> = None;
    // Requests answered on the current connection.
    let mut served_on_conn = 0;
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) && limit.is_none_or(|n| sent < n) {
        if sent > 0 && !pause.is_zero() {
            thread::sleep(pause);
        }
        if conn.as_ref().is_some_and(Conn::peer_closed) {
            tally.closed_idle += 1;
            conn = None;
        }
        let c = match conn {
            Some(ref mut c) => c,
            None => match Conn::try_connect(addr) {
                Ok(c) => {
                    tally.connections += 1;
                    served_on_conn = 0;
                    conn.insert(c)
                }
                Err(e) => {
                    sent += 1;
                    let phase = phase.load(Ordering::Relaxed);
                    tally
                        .failures
                        .push(format!("request {sent} (phase {phase}): connecting: {e}"));
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        sent += 1;
        let outcome = match c.try_send(request.as_bytes()) {
            Ok(()) => c.try_read_response(),
            Err(e) => Err(format!("sending: {e}")),
        };
        let described = |what: String| {
            let phase = phase.load(Ordering::Relaxed);
            format!(
                "request {sent} (phase {phase}), #{} on its connection: {what}",
                served_on_conn + 1
            )
        };
        match outcome {
            Ok(resp) => {
                let close = resp.connection_has("close");
                if resp.status == 200 {
                    tally.ok += 1;
                    if let Some((build, pid)) = build_and_pid(&resp).or_else(|| {
                        // `slept N build vN`
                        let text = resp.text();
                        let build = text.rsplit(' ').next()?.to_owned();
                        Some((build, 0)).filter(|_| text.starts_with("slept "))
                    }) {
                        tally.builds.insert(build);
                        tally.pids.insert(pid);
                    }
                } else {
                    tally
                        .failures
                        .push(described(format!("got {:?}", resp.raw_head)));
                }
                served_on_conn += 1;
                if close {
                    tally.closes += 1;
                    conn = None;
                }
            }
            Err(e) => {
                tally.failures.push(described(e));
                conn = None;
            }
        }
    }
    tally
}

/// Client threads running [`client_loop`] until [`Load::finish`] (or until
/// dropped, when a test fails).
struct Load {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Load {
    /// `clients` threads sending `GET target` back to back.
    fn start(addr: SocketAddr, clients: usize, target: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, phase) = (Arc::clone(&stop), Arc::clone(&phase));
                thread::spawn(move || {
                    client_loop(addr, target, &stop, None, Duration::ZERO, &phase)
                })
            })
            .collect();
        Load {
            stop,
            phase,
            threads,
        }
    }

    /// Tags later failures with `phase`.
    fn set_phase(&self, phase: usize) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for thread in self.threads.drain(..) {
            total.merge(thread.join().expect("a load client panicked"));
        }
        total
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Panics with the failures and the log unless every request succeeded.
fn assert_no_failures(tally: &Tally, server: &Server) {
    assert!(
        tally.failures.is_empty(),
        "{} of {} requests failed:\n{}\n{tally:?}\nlog:\n{}",
        tally.failures.len(),
        tally.ok + tally.failures.len(),
        tally.failures.join("\n"),
        server.logs()
    );
}

#[test]
fn swap_ten_times_under_keep_alive_load() {
    let site = Site::new("swap-ten", "v0");
    let mut server = site.serve(&["-w", "2", "--threads", "4"]);
    let load = Load::start(server.addr(), 4, "/");
    for n in 1..=10 {
        let build = format!("v{n}");
        site.deploy(&build, &[]);
        load.set_phase(n);
        if n % 3 == 0 {
            let line = site.reload_ok();
            let hash = build_hash(&site);
            assert!(
                line.contains(&hash),
                "the `reloaded:` line should name build {hash}: {line:?}"
            );
        } else {
            server.send_signal("HUP");
        }
        wait_for_build(&server, &build, TIMEOUT);
    }
    // A moment of load on v10 alone, then stop the clients.
    load.set_phase(11);
    thread::sleep(Duration::from_millis(200));
    let tally = load.finish();
    assert_no_failures(&tally, &server);
    assert!(
        tally.ok >= 100,
        "only {} requests in ten swaps: {tally:?}",
        tally.ok
    );

    // Both v9 workers are gone once they shut down; from then on v10 alone
    // answers.
    server.wait_for_log_count("swap shutdown build v9", 2, TIMEOUT);
    for i in 0..20 {
        let build = current_build(&server);
        assert_eq!(build, "v10", "fresh request {i} after the last swap");
    }
    let log = server.logs();
    let hash = build_hash(&site);
    assert!(
        log.contains(&format!("booted (build {hash}")),
        "no worker logged booting build {hash} (v10):\n{log}"
    );
    for old in ["v0", "v1", "v5"] {
        assert!(
            log.contains(&format!("swap shutdown build {old}")),
            "the {old} workers did not run the plugin's shutdown:\n{log}"
        );
    }
    assert!(
        log.contains("retiring"),
        "no worker was logged as retiring:\n{log}"
    );
    assert!(
        !log.contains("killed by signal") && !log.contains("panicked"),
        "a worker died during the swaps:\n{log}"
    );
    // No old worker lingers: the master and two workers.
    wait_for_group_size(&server, server.pid(), 3, TIMEOUT);
    server.terminate();
    let status = server.wait_exit(TIMEOUT);
    assert!(status.success(), "TERM after the swaps: {status}");
}

#[test]
fn overwrite_in_place_does_not_crash() {
    let site = Site::new("overwrite", "v1");
    let server = site.serve(&["-w", "2", "--threads", "2"]);
    let load = Load::start(server.addr(), 2, "/");
    thread::sleep(Duration::from_millis(200));

    // Overwrite the served file itself: same inode, truncated, rewritten.
    artifacts::swap_plugin("v2", &[], &site.stage);
    let bytes = fs::read(&site.stage).expect("reading the v2 build");
    load.set_phase(1);
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&site.plugin)
        .expect("opening the served plugin for writing");
    file.write_all(&bytes).expect("overwriting the plugin");
    file.sync_all().expect("syncing the plugin");
    drop(file);
    // Running workers must not notice (they run on the master's copy).
    thread::sleep(Duration::from_millis(500));
    load.set_phase(2);
    server.send_signal("HUP");
    wait_for_build(&server, "v2", TIMEOUT);
    thread::sleep(Duration::from_millis(200));
    let tally = load.finish();

    assert_no_failures(&tally, &server);
    assert!(
        tally.builds.contains("v2"),
        "the load never saw v2: {tally:?}"
    );
    let log = server.logs();
    assert!(
        !log.contains("killed by signal"),
        "overwriting the plugin file crashed a worker:\n{log}"
    );
}

/// A reload of a broken build: `host reload` fails naming the plugin file
/// and the cause (one of `causes`), the log says the old build keeps
/// serving, it does, and a good build can still be swapped in afterwards.
/// Returns the server's log.
fn bad_reload(label: &str, break_it: impl FnOnce(&Site), causes: &[&str]) -> String {
    let site = Site::new(label, "v1");
    let server = site.serve(&["-w", "1"]);
    server.wait_for_log_count(" booted", 1, TIMEOUT);
    break_it(&site);

    let run = site.reload();
    assert_eq!(
        run.status.code(),
        Some(1),
        "`host reload` of a broken build should exit 1: {run:#?}\nserver log:\n{}",
        server.logs()
    );
    let lines = output_lines(&run);
    let error = lines
        .iter()
        .find(|l| l.contains("error: reload failed: "))
        .unwrap_or_else(|| panic!("no `error: reload failed: ` line: {run:#?}"));
    assert!(
        error.contains(site.plugin_str()),
        "the reason should name the plugin file {}: {error:?}",
        site.plugin_str()
    );
    assert!(
        causes.iter().any(|c| error.contains(c)),
        "the reason should say {causes:?}: {error:?}"
    );

    let log = server.wait_for_log("keeps serving", TIMEOUT);
    let failed = lines_with(&log, "reload failed");
    assert!(
        failed.iter().any(|l| causes.iter().any(|c| l.contains(c))),
        "no `reload failed` log line saying {causes:?}:\n{log}"
    );
    for _ in 0..5 {
        assert_eq!(current_build(&server), "v1", "after the failed reload");
    }

    // The master is not stuck: a good build still goes in.
    site.deploy("v2", &[]);
    site.reload_ok();
    wait_for_build(&server, "v2", TIMEOUT);
    server.logs()
}

#[test]
fn bad_reload_missing_file() {
    bad_reload(
        "bad-missing",
        |site| fs::remove_file(&site.plugin).expect("removing the plugin"),
        &["no such file"],
    );
}

#[test]
fn bad_reload_not_a_library() {
    bad_reload(
        "bad-text",
        |site| {
            fs::write(&site.stage, "this is not a shared library\n").expect("writing text");
            site.rename_stage();
        },
        &["not a loadable shared library"],
    );
}

#[test]
fn bad_reload_abi_2() {
    bad_reload(
        "bad-major2",
        |site| {
            artifacts::compile_c_into("tests/fixtures/bad/major2.c", &[], &site.stage);
            site.rename_stage();
        },
        &["ABI 2.0"],
    );
}

#[test]
fn bad_reload_init_fails() {
    bad_reload(
        "bad-init",
        |site| site.deploy("v2", &["INIT_FAIL"]),
        &["swap init refused"],
    );
}

#[test]
fn bad_reload_crash_while_loading() {
    let log = bad_reload(
        "bad-crash",
        |site| site.deploy("v2", &["INIT_CRASH"]),
        &["crashed while loading", "killed by signal 11"],
    );
    // A build that crashes while loading is refused, not respawned forever.
    let crashes = lines_with(&log, "killed by signal 11");
    assert!(
        crashes.len() <= 2,
        "the crashing build was started {} times:\n{log}",
        crashes.len()
    );
}

#[test]
fn segfault_and_abort_on_one_path() {
    let site = Site::new("crash", "v1");
    let server = site.serve(&["-w", "2", "--threads", "2"]);
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    for (round, (path, cause)) in [
        ("/segv", "killed by signal 11 (SIGSEGV)"),
        ("/abort", "killed by signal 6 (SIGABRT)"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut conn = server.connect();
        conn.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        // The worker dies with the request: no response, the connection ends.
        if let Ok(resp) = conn.try_read_response() {
            assert_ne!(resp.status, 200, "GET {path} answered: {:?}", resp.raw);
        }
        // The other worker (or the replacement) answers at once.
        for _ in 0..10 {
            assert_eq!(current_build(&server), "v1", "right after GET {path}");
        }
        let log = server.wait_for_log(cause, TIMEOUT);
        let exits = lines_with(&log, cause);
        assert!(
            exits
                .iter()
                .all(|l| worker_pid(l).is_some_and(|pid| booted_pids(&log).contains(&pid))),
            "the exit line should name a worker that booted: {exits:?}\n{log}"
        );
        server.wait_for_log_count(" booted", 3 + round, TIMEOUT);
    }
    for _ in 0..10 {
        assert_eq!(current_build(&server), "v1", "after the replacements");
    }
}

/// Workers that keep dying young are restarted with growing delays, per
/// slot of the pool, and the master says so instead of spinning; but the
/// service is never down: a worker answers right after each crash, every
/// crash names the request that caused it, and once the crashes stop every
/// slot serves again within seconds.
#[test]
fn crash_loops_back_off_per_slot() {
    let site = Site::new("backoff", "v1");
    let server = site.serve(&["-w", "2"]);
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    for crash in 1..=6 {
        let mut conn = server.connect();
        conn.send(b"GET /segv HTTP/1.1\r\nHost: test\r\n\r\n");
        let _ = conn.try_read_response();
        server.wait_for_log_count("killed by signal 11 (SIGSEGV)", crash, TIMEOUT);
        let asked = Instant::now();
        assert_eq!(current_build(&server), "v1", "right after crash {crash}");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "after crash {crash} the service was down for {:?}; log:\n{}",
            asked.elapsed(),
            server.logs()
        );
    }
    let log = server.logs();
    assert!(
        log.contains("times in a row"),
        "no backoff announced after six quick crashes:\n{log}"
    );
    let crashes = lines_with(&log, "killed by signal 11 (SIGSEGV)");
    assert!(
        crashes
            .iter()
            .all(|l| l.contains("crashed while serving \"GET /segv HTTP/1.1\"")),
        "each crash should name its request: {crashes:#?}"
    );
    assert!(
        !log.contains("could not boot") && !log.contains("while loading"),
        "a worker that crashed while serving was taken for one that could not boot:\n{log}"
    );
    // Quiet again: both slots serve within MIN_UPTIME (5 s) and a bit.
    wait_for_ready(&site, 2, Duration::from_secs(10));
}

/// `host status -p`, which must succeed; its output.
fn status_of(site: &Site) -> String {
    let run = server::run(["status", "-p", site.pidfile_str()]);
    assert!(run.status.success(), "`host status` failed: {run:#?}");
    run.stdout
}

/// Polls `host status -p` until it lists `ready` ready workers (the master
/// notices a boot within a tick); returns that output.
fn wait_for_ready(site: &Site, ready: usize, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let status = status_of(site);
        if status.matches(" ready").count() == ready {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "not {ready} ready workers after {timeout:?}:\n{status}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The `error: ` line of a `host reload` that must fail with exit status 1.
fn reload_error(run: &Finished, server: &Server) -> String {
    assert_eq!(
        run.status.code(),
        Some(1),
        "`host reload` should exit 1: {run:#?}\nserver log:\n{}",
        server.logs()
    );
    run.error_line().to_owned()
}

/// A build that loads and inits but crashes on every request, reloaded
/// while clients are being served: it is refused (its first worker dies
/// before it takes over) or rolled back (within its settle period),
/// `host reload` says so and exits 1, and the old build goes on serving
/// without a single failed request.
#[test]
fn crash_on_every_request_build_is_rolled_back_under_load() {
    let site = Site::new("rollback-load", "v1");
    let server = site.serve(&["-w", "2", "--threads", "2"]);
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    let v1 = build_hash(&site);
    let load = Load::start(server.addr(), 3, "/");
    thread::sleep(Duration::from_millis(300));
    site.deploy("v2", &["CRASH_ALWAYS"]);
    let v2 = build_hash(&site);
    load.set_phase(1);
    let run = site.reload();
    let error = reload_error(&run, &server);
    assert!(
        error.contains(site.plugin_str())
            && error.contains(&format!("build {v2} crashed"))
            && error.contains(&format!("rolled back to build {v1}")),
        "the reason should name the plugin file, build {v2}'s crash and build {v1}: {error:?}"
    );
    let during = load.finish();
    assert!(
        during.ok > 0,
        "nothing answered around the reload: {during:?}"
    );

    // The service continues on v1, every request answered.
    wait_for_build(&server, "v1", TIMEOUT);
    let after = client_loop(
        server.addr(),
        "/",
        &AtomicBool::new(false),
        Some(100),
        Duration::ZERO,
        &AtomicUsize::new(0),
    );
    assert_no_failures(&after, &server);
    assert_eq!(after.builds, BTreeSet::from(["v1".to_owned()]));
    let log = server.logs();
    assert!(
        log.contains("reload rolled back") || log.contains("before it took over"),
        "the log should say the crashing build was refused or rolled back:\n{log}"
    );
    let status = status_of(&site);
    assert!(
        status.lines().next().is_some_and(|l| l.contains(&v1)),
        "`host status` should show build {v1} serving again:\n{status}"
    );
}

/// The crashing build passes its canary (no request reaches it before it
/// takes over); its workers then crash on the first requests, and the
/// master rolls back to the build it replaced, which is still staged:
/// `host reload` exits 1 naming both builds.
#[test]
fn a_build_that_crashes_after_taking_over_is_rolled_back() {
    let site = Site::new("rollback", "v1");
    let server = site.serve(&["-w", "1", "--settle-period", "5"]);
    server.wait_for_log_count(" booted", 1, TIMEOUT);
    let v1 = build_hash(&site);
    site.deploy("v2", &["CRASH_ALWAYS"]);
    let v2 = build_hash(&site);
    let pidfile = site.pidfile_str().to_owned();
    let reload = thread::spawn(move || server::run(["reload", "-p", &pidfile]));
    server.wait_for_log("is serving", TIMEOUT);
    // The v1 worker is retired once v2 takes over (-w 1): once it has shut
    // down, requests go to v2, and crash it, until v1 is back.
    server.wait_for_log("swap shutdown build v1", TIMEOUT);
    let deadline = Instant::now() + TIMEOUT;
    let mut lost = 0;
    loop {
        match try_get(server.addr(), "/") {
            Ok(resp) if resp.status == 200 && resp.text().starts_with("build v1 ") => break,
            Ok(resp) => panic!("unexpected answer: {:?}", resp.raw),
            Err(_) => lost += 1,
        }
        assert!(
            Instant::now() < deadline,
            "v1 never came back; log:\n{}",
            server.logs()
        );
    }
    assert!(lost >= 2, "the crashing build crashed only {lost} times");
    let run = reload.join().expect("`host reload` ran");
    let error = reload_error(&run, &server);
    assert!(
        error.contains(&format!("build {v2} crashed 2 times"))
            && error.contains(&format!("rolled back to build {v1}")),
        "the reason should name the crashing build and the one rolled back to: {error:?}"
    );
    let log = server.logs();
    assert!(
        log.contains(&format!(
            "reload rolled back: build {v2} (generation 2) crashed 2 times"
        )),
        "no rollback logged:\n{log}"
    );
    for _ in 0..10 {
        assert_eq!(current_build(&server), "v1", "after the rollback");
    }
    // A good build still goes in afterwards.
    site.deploy("v3", &[]);
    site.reload_ok();
    wait_for_build(&server, "v3", TIMEOUT);
}

/// `host reload` of a good build answers once its settle period has passed
/// without a crash, and the log says it stays.
#[test]
fn a_good_build_settles() {
    let site = Site::new("settle", "v1");
    let server = site.serve(&["-w", "1", "--settle-period", "2"]);
    server.wait_for_log_count(" booted", 1, TIMEOUT);
    site.deploy("v2", &[]);
    let started = Instant::now();
    let line = site.reload_ok();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "`host reload` answered before the settle period ended: {line:?}"
    );
    assert!(line.contains(&build_hash(&site)), "{line:?}");
    server.wait_for_log("served 2s without crashing; it stays", TIMEOUT);
    assert_eq!(current_build(&server), "v2");
}

/// `--reload` swaps for a new build, not for a new timestamp: the same
/// bytes copied over the plugin file (a new inode and modification time)
/// keep the workers, and their state.
#[test]
fn reload_flag_ignores_the_same_build_with_a_new_timestamp() {
    let site = Site::new("watch-touch", "v1");
    let server = site.serve(&["--reload"]);
    let before = build_and_pid(&get_ok(&server, "/")).expect("an answer naming its pid");
    fs::copy(&site.plugin, &site.stage).expect("copying the served build");
    let file = OpenOptions::new()
        .write(true)
        .open(&site.stage)
        .expect("opening the copy");
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(60))
        .expect("setting the copy's modification time");
    drop(file);
    site.rename_stage();
    server.wait_for_log("changed on disk but holds build", Duration::from_secs(8));
    let after = build_and_pid(&get_ok(&server, "/")).expect("an answer naming its pid");
    assert_eq!(after, before, "the same build was swapped in again");
    assert!(
        !server.logs().contains("reload: booting build"),
        "{}",
        server.logs()
    );
}

/// Under `--reload`, `host reload` of a new build swaps it in once: the
/// watcher does not swap the same file in a second time.
#[test]
fn host_reload_under_the_reload_flag_swaps_once() {
    let site = Site::new("watch-hup", "v1");
    let server = site.serve(&["--reload", "--settle-period", "1"]);
    server.wait_for_log_count(" booted", 1, TIMEOUT);
    site.deploy("v2", &[]);
    site.reload_ok();
    // The watcher looks every second and wants two looks alike.
    thread::sleep(Duration::from_millis(3500));
    let log = server.logs();
    assert_eq!(
        log.matches("reload: booting build").count(),
        1,
        "the new build was swapped in more than once:\n{log}"
    );
    assert_eq!(current_build(&server), "v2");
}

// --- control files ------------------------------------------------------

/// A second `host serve` given the pidfile of a running master is refused
/// before it binds, naming the master; the first one keeps its pidfile.
#[test]
fn a_second_master_on_the_same_pidfile_is_refused() {
    let site = Site::new("pid-lock", "v1");
    let server = site.serve(&[]);
    let run = server::run([
        "serve",
        site.plugin_str(),
        "-b",
        "127.0.0.1:0",
        "-p",
        site.pidfile_str(),
    ]);
    let line = run.error_line();
    assert!(
        line.contains(site.pidfile_str()) && line.contains(&format!("master {}", server.pid())),
        "the error should name the pidfile and the master holding it: {line:?}"
    );
    assert!(
        !run.stderr.contains("booted"),
        "the refused master started a worker: {run:#?}"
    );
    assert_eq!(
        fs::read_to_string(&site.pidfile).unwrap().trim(),
        server.pid().to_string()
    );
    assert!(status_of(&site).starts_with(&format!("master {} ", server.pid())));
}

/// A master killed with -9 leaves its pidfile and control files behind:
/// the control commands say no host runs, and a new master on the same
/// pidfile is controlled normally (its first reload outcome is not
/// mistaken for, or hidden behind, the dead master's).
#[test]
fn stale_control_files_of_a_dead_master() {
    let site = Site::new("stale", "v1");
    {
        let server = site.serve(&["--settle-period", "0"]);
        let _orphans = KillGroup(server.pid());
        for build in ["v2", "v3", "v4"] {
            site.deploy(build, &[]);
            site.reload_ok();
        }
        // Dropping the server kills it and its workers (SIGKILL).
    }
    assert!(site.pidfile.exists(), "a killed master leaves its pidfile");
    let reload_file = format!("{}.reload", site.pidfile_str());
    assert!(
        fs::read_to_string(&reload_file).is_ok_and(|t| t.contains("3 ok")),
        "the dead master's reload file should be left with outcome 3"
    );
    for cmd in ["status", "reload", "stop"] {
        let run = server::run([cmd, "-p", site.pidfile_str()]);
        assert!(
            run.error_line().contains("no running host"),
            "`host {cmd}` on a dead master's pidfile: {run:#?}"
        );
        assert!(
            run.elapsed < Duration::from_secs(3),
            "`host {cmd}` took {:?}",
            run.elapsed
        );
    }

    let server = site.serve(&["--settle-period", "0"]);
    assert!(
        fs::read_to_string(&reload_file).is_err(),
        "the new master should remove the dead one's reload file"
    );
    site.deploy("v5", &[]);
    let started = Instant::now();
    let line = site.reload_ok();
    assert!(line.contains(&build_hash(&site)), "{line:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "`host reload` took {:?}",
        started.elapsed()
    );
    assert!(status_of(&site).starts_with(&format!("master {} ", server.pid())));
}

/// Control files overwritten by someone else — a bogus pid in the pidfile,
/// foreign status and reload files — do not fool the control commands: the
/// pidfile's lock names the master, and its own memory says the rest.
#[test]
fn clobbered_control_files_are_not_believed() {
    let site = Site::new("clobbered", "v1");
    let server = site.serve(&["-w", "2", "--settle-period", "0"]);
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    // A decoy: if the commands trusted the pidfile, they would signal it.
    let mut decoy = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("starting sleep");
    fs::write(&site.pidfile, format!("{}\n", decoy.id())).unwrap();
    fs::write(
        format!("{}.status", site.pidfile_str()),
        "run 1.2.3\nmaster 1 build fake generation 9 workers 9\n",
    )
    .unwrap();
    fs::write(
        format!("{}.reload", site.pidfile_str()),
        "run 1.2.3\n99 ok build fake\n",
    )
    .unwrap();

    let status = wait_for_ready(&site, 2, TIMEOUT);
    assert!(
        status.starts_with(&format!("master {} ", server.pid())) && !status.contains("fake"),
        "{status}"
    );
    site.deploy("v2", &[]);
    let line = site.reload_ok();
    assert!(line.contains(&build_hash(&site)), "{line:?}");
    wait_for_build(&server, "v2", TIMEOUT);
    site.deploy("v3", &["INIT_FAIL"]);
    let error = reload_error(&site.reload(), &server);
    assert!(error.contains("swap init refused"), "{error:?}");

    let run = server::run(["stop", "-p", site.pidfile_str()]);
    assert!(run.status.success(), "`host stop` failed: {run:#?}");
    assert!(
        run.stdout
            .contains(&format!("stopped: master {}", server.pid())),
        "{run:#?}"
    );
    assert_eq!(
        decoy.try_wait().expect("polling sleep"),
        None,
        "the process named in the clobbered pidfile was signalled"
    );
    let _ = decoy.kill();
    let _ = decoy.wait();
}

/// The status and reload files cannot be written (here: directories stand
/// where they go, as a full disk would refuse them): `host status` and
/// `host reload` still answer, at once and correctly, from the master's
/// memory; no temporary file is left behind.
#[test]
fn control_commands_work_when_the_files_cannot_be_written() {
    let site = Site::new("unwritable", "v1");
    for suffix in [".status", ".reload"] {
        fs::create_dir(format!("{}{suffix}", site.pidfile_str())).unwrap();
    }
    let server = site.serve(&["-w", "2", "--settle-period", "0"]);
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    server.wait_for_log("cannot write", TIMEOUT);
    let status = status_of(&site);
    assert!(
        status.starts_with(&format!("master {} ", server.pid())),
        "{status}"
    );
    site.deploy("v2", &[]);
    let started = Instant::now();
    let line = site.reload_ok();
    assert!(line.contains(&build_hash(&site)), "{line:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "`host reload` took {:?}",
        started.elapsed()
    );
    site.deploy("v3", &["INIT_FAIL"]);
    let error = reload_error(&site.reload(), &server);
    assert!(error.contains("swap init refused"), "{error:?}");
    wait_for_build(&server, "v2", TIMEOUT);
    let status = status_of(&site);
    assert!(
        status
            .lines()
            .next()
            .is_some_and(|l| l.contains("generation 2 ")),
        "`host status` should show the build swapped in:\n{status}"
    );
    let leftovers: Vec<_> = fs::read_dir(site.pidfile.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// A pidfile nobody holds whose pid now belongs to another process (a
/// master that died, its pid reused): the control commands refuse it and
/// signal nobody.
#[test]
fn a_stale_pidfile_naming_another_process_signals_nobody() {
    let site = Site::new("reused-pid", "v1");
    let mut decoy = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("starting sleep");
    fs::write(&site.pidfile, format!("{}\n", decoy.id())).unwrap();
    for cmd in ["stop", "reload", "status"] {
        let run = server::run([cmd, "-p", site.pidfile_str()]);
        assert!(
            run.error_line().contains("stale"),
            "`host {cmd}` should call the pidfile stale: {run:#?}"
        );
    }
    assert_eq!(
        decoy.try_wait().expect("polling sleep"),
        None,
        "the process named in the stale pidfile was signalled"
    );
    let _ = decoy.kill();
    let _ = decoy.wait();
    // A master started on it takes it over.
    let server = site.serve(&[]);
    assert_eq!(
        fs::read_to_string(&site.pidfile).unwrap().trim(),
        server.pid().to_string()
    );
}

/// Kills a process group when dropped: the workers of a master a test
/// killed, which the server's own cleanup might not reach.
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// USR1: workers reopen the access log, so a rotated file is let go and
/// new lines land in a fresh one.
#[test]
fn usr1_reopens_the_access_log() {
    let site = Site::new("usr1", "v1");
    let log_path = site.pidfile.with_file_name("access.log");
    let rotated = site.pidfile.with_file_name("access.log.1");
    let server = site.serve(&["-w", "2", "--access-logfile", log_path.to_str().unwrap()]);
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    assert_eq!(current_build(&server), "v1");
    fs::rename(&log_path, &rotated).expect("rotating the access log");
    server.send_signal("USR1");
    server.wait_for_log("USR1", TIMEOUT);
    // Every worker has reopened once the new file exists and fills up.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        for _ in 0..4 {
            assert_eq!(current_build(&server), "v1");
        }
        let fresh = fs::read_to_string(&log_path).unwrap_or_default();
        if fresh.matches("\"GET / HTTP/1.1\" 200").count() >= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "requests after USR1 did not reach the new access log"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let old = fs::read_to_string(&rotated).expect("reading the rotated log");
    assert!(
        old.contains("\"GET / HTTP/1.1\" 200"),
        "the rotated log kept its lines"
    );
}

/// `-t` costs only the hung request: the master names it and retires its
/// worker (an abort order, then SIGUSR2), a replacement boots at once, and
/// the retired worker's exit is not a crash. The hung client's 503 and the
/// other requests finishing are `tests/supervision.rs`'s.
#[test]
fn hung_request_is_retired_and_named() {
    let site = Site::new("hang", "v1");
    let server = site.serve(&[
        "-t",
        "2",
        "-w",
        "1",
        "--threads",
        "2",
        "--graceful-timeout",
        "5",
    ]);
    let log = server.wait_for_log_count(" booted", 1, TIMEOUT);
    let pid = booted_pids(&log)[0];

    let mut hung = server.connect();
    hung.send(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n");
    let sent = Instant::now();
    // The worker's other thread still answers meanwhile.
    assert_eq!(current_build(&server), "v1");

    let log = server.wait_for_log("timed out", Duration::from_secs(8));
    let waited = sent.elapsed();
    let line = lines_with(&log, "timed out")[0];
    assert!(
        line.contains("GET /hang") && worker_pid(line) == Some(pid),
        "the timeout line should name worker {pid} and the request: {line:?}"
    );
    assert!(
        line.contains("retiring it") && !line.contains("killing it"),
        "a request past -t retires its worker, it does not kill it: {line:?}"
    );
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_secs(6),
        "-t 2 gave up on the hung request after {waited:?}"
    );
    if let Ok(resp) = hung.try_read_response() {
        assert_eq!(resp.status, 503, "the hung request's answer: {resp:?}");
    }
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    let exited = format!("worker {pid} exited");
    let log = server.wait_for_log(&exited, TIMEOUT);
    let line = lines_with(&log, &exited)[0];
    assert!(
        line.contains("(timed out, retired)") && !line.contains("replacing it"),
        "the retired worker's exit should say so, and not count as a crash: {line:?}"
    );
    assert!(
        !log.contains("times in a row"),
        "a timed-out worker counted as a crash:\n{log}"
    );
    for _ in 0..5 {
        assert_eq!(current_build(&server), "v1", "after the replacement");
    }
}

#[test]
fn term_drains_in_flight_and_queued() {
    let site = Site::new("term", "v1");
    let mut server = site.serve(&["-w", "1", "--threads", "1"]);
    let mut slow = server.connect();
    slow.send(b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: test\r\n\r\n");
    thread::sleep(Duration::from_millis(200));
    let mut queued: Vec<Conn> = (0..5)
        .map(|_| {
            let mut conn = server.connect();
            conn.send(b"GET /sleep?ms=100 HTTP/1.1\r\nHost: test\r\n\r\n");
            conn
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    server.send_signal("TERM");
    let termed = Instant::now();

    for (conn, expected) in std::iter::once((&mut slow, "slept 1500 build v1"))
        .chain(queued.iter_mut().map(|c| (c, "slept 100 build v1")))
    {
        let resp = conn.try_read_response().unwrap_or_else(|e| {
            panic!(
                "a request queued before TERM got no response: {e}; log:\n{}",
                server.logs()
            )
        });
        assert!(!conn.reset, "a connection was reset: {resp:?}");
        assert_eq!((resp.status, resp.text().as_str()), (200, expected));
    }
    let status = server.wait_exit(TIMEOUT);
    assert!(
        status.success(),
        "TERM should exit 0, got {status}; log:\n{}",
        server.logs()
    );
    assert!(
        termed.elapsed() < Duration::from_secs(6),
        "draining 2 s of work took {:?}",
        termed.elapsed()
    );
    wait_for_group_size(&server, server.pid(), 0, TIMEOUT);
}

#[test]
fn reload_flag_picks_up_a_rebuilt_plugin() {
    let site = Site::new("watch", "v1");
    let server = site.serve(&["--reload"]);
    assert_eq!(current_build(&server), "v1");
    artifacts::swap_plugin("v2", &[], &site.stage);
    site.rename_stage();
    wait_for_build(&server, "v2", Duration::from_secs(10));
    server.wait_for_log("swap shutdown build v1", TIMEOUT);
}

#[test]
fn ttin_ttou_change_the_worker_count() {
    let site = Site::new("ttin", "v1");
    let server = site.serve(&["-w", "1"]);
    server.wait_for_log_count(" booted", 1, TIMEOUT);
    server.send_signal("TTIN");
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    for _ in 0..5 {
        assert_eq!(current_build(&server), "v1", "with two workers");
    }
    server.send_signal("TTOU");
    server.wait_for_log("retiring", TIMEOUT);
    for _ in 0..5 {
        assert_eq!(current_build(&server), "v1", "after TTOU");
    }
    let log = server.wait_for_log("swap shutdown build v1", TIMEOUT);
    assert_eq!(
        booted_pids(&log).len(),
        2,
        "TTOU should not boot a replacement:\n{log}"
    );
    wait_for_group_size(&server, server.pid(), 2, TIMEOUT);
}

#[test]
fn max_requests_recycles_without_drops() {
    let site = Site::new("recycle", "v1");
    let server = site.serve(&[
        "-w",
        "1",
        "--threads",
        "2",
        "--max-requests",
        "20",
        "--max-requests-jitter",
        "5",
    ]);
    // Paced (150 requests in 1.5 s and more), so the master, which replaces a
    // worker that reached its limit on its next tick, has time to recycle.
    let tally = client_loop(
        server.addr(),
        "/",
        &AtomicBool::new(false),
        Some(150),
        Duration::from_millis(10),
        &AtomicUsize::new(0),
    );
    assert_no_failures(&tally, &server);
    assert_eq!(tally.ok, 150);
    let log = server.logs();
    let booted = booted_pids(&log).len();
    assert!(
        booted >= 4,
        "150 requests at --max-requests 20 (jitter 5) booted {booted} workers:\n{log}"
    );
    assert!(
        tally.pids.len() >= 3,
        "the answers came from {} worker pids only: {tally:?}",
        tally.pids.len()
    );
}

#[test]
fn stop_via_pidfile() {
    let site = Site::new("stop", "v1");
    let mut server = site.serve(&["-w", "2"]);
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    let pid = fs::read_to_string(&site.pidfile).expect("reading the pidfile");
    assert_eq!(pid.trim(), server.pid().to_string(), "the pidfile's pid");

    // The master never loads the plugin; its workers load the master's
    // private copy of the build (a sealed memfd named by the build hash),
    // never the served file, which a deploy may overwrite.
    let hash = build_hash(&site);
    let copy = format!("memfd:nwsgi-{hash}");
    let worker = booted_pids(&server.logs())
        .into_iter()
        .next()
        .expect("a booted worker");
    let worker_maps =
        fs::read_to_string(format!("/proc/{worker}/maps")).expect("reading a worker's memory map");
    assert!(
        worker_maps.contains(&copy) && !worker_maps.contains("libapp"),
        "worker {worker} should map {copy}, not the served file:\n{worker_maps}"
    );
    let maps = fs::read_to_string(format!("/proc/{}/maps", server.pid()))
        .expect("reading the master's memory map");
    assert!(
        !maps.contains("libapp") && !maps.contains(&hash),
        "the master has the plugin (build {hash}) mapped:\n{maps}"
    );

    // `host stop` waits for the master to exit while this process, its
    // parent, reaps it (as a shell or a service manager would).
    let pidfile = site.pidfile_str().to_owned();
    let stop = thread::spawn(move || server::run(["stop", "-p", &pidfile]));
    let status = server.wait_exit(TIMEOUT);
    assert!(status.success(), "the master exited with {status}");
    let run = stop.join().expect("`host stop` ran");
    assert!(run.status.success(), "`host stop` failed: {run:#?}");
    let log = server.stderr.wait_closed(TIMEOUT);
    assert_eq!(
        log.matches("swap shutdown build v1").count(),
        2,
        "both workers should run the plugin's shutdown:\n{log}"
    );
    assert!(
        !site.pidfile.exists(),
        "the pidfile is left behind after a stop"
    );
    // With every process gone, so is the copy: nothing is left on disk.
    wait_for_group_size(&server, server.pid(), 0, TIMEOUT);
}

#[test]
fn stop_returns_once_the_master_exited_even_unreaped() {
    let site = Site::new("stop-zombie", "v1");
    let mut server = site.serve(&[]);
    // Nobody reaps the master until `host stop` returned: an exited but
    // unreaped process (a zombie) still answers kill(pid, 0).
    let run = server::run(["stop", "-p", site.pidfile_str()]);
    assert!(run.status.success(), "`host stop` failed: {run:#?}");
    assert!(
        run.elapsed < Duration::from_secs(5),
        "`host stop` took {:?}",
        run.elapsed
    );
    assert!(server.wait_exit(TIMEOUT).success());
}

#[test]
fn swap_finishes_in_flight_requests() {
    let site = Site::new("in-flight", "v1");
    let server = site.serve(&["-w", "1", "--threads", "2"]);
    let mut slow = server.connect();
    slow.send(b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: test\r\n\r\n");
    let sent = Instant::now();
    thread::sleep(Duration::from_millis(200));
    site.deploy("v2", &[]);
    server.send_signal("HUP");
    wait_for_build(&server, "v2", TIMEOUT);
    server.wait_for_log("retiring", TIMEOUT);
    // The old worker may not shut its plugin down under a running request.
    let log = server.logs();
    assert!(
        sent.elapsed() >= Duration::from_millis(1500) || !log.contains("swap shutdown build v1"),
        "v1 shut down while its request was running:\n{log}"
    );
    let resp = slow.try_read_response().unwrap_or_else(|e| {
        panic!(
            "the request in flight during the swap failed: {e}; log:\n{}",
            server.logs()
        )
    });
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "slept 1500 build v1")
    );
    assert!(
        resp.connection_has("close"),
        "a retiring worker should end keep-alive with Connection: close: {:?}",
        resp.raw_head
    );
    slow.expect_closed(TIMEOUT);
    server.wait_for_log("swap shutdown build v1", TIMEOUT);
}

#[test]
fn two_reloads_in_a_row_end_on_the_last_build() {
    let site = Site::new("double", "v1");
    let server = site.serve(&["-w", "2"]);
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    site.deploy("v2", &[]);
    server.send_signal("HUP");
    site.deploy("v3", &[]);
    server.send_signal("HUP");
    wait_for_build(&server, "v3", TIMEOUT);
    server.wait_for_log_count("swap shutdown build v1", 2, TIMEOUT);
    // Only v3 answers once the swaps settled, from exactly two workers.
    let deadline = Instant::now() + TIMEOUT;
    let mut streak = 0;
    while streak < 20 {
        if current_build(&server) == "v3" {
            streak += 1;
        } else {
            streak = 0;
        }
        assert!(
            Instant::now() < deadline,
            "not only v3 answering after {TIMEOUT:?}; log:\n{}",
            server.logs()
        );
    }
    wait_for_group_size(&server, server.pid(), 3, TIMEOUT);
}

#[test]
fn reload_flag_survives_a_slow_in_place_write() {
    let site = Site::new("watch-slow", "v1");
    let server = site.serve(&["--reload"]);
    assert_eq!(current_build(&server), "v1");
    artifacts::swap_plugin("v2", &[], &site.stage);
    let bytes = fs::read(&site.stage).expect("reading the v2 build");
    // Half the file, a pause long enough for the watcher to see it, the
    // rest: the watcher must not swap in (or crash on) the torn file.
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&site.plugin)
        .expect("opening the served plugin for writing");
    file.write_all(&bytes[..bytes.len() / 2])
        .expect("writing the first half");
    file.sync_all().expect("syncing");
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(current_build(&server), "v1", "while the file is torn");
    file.write_all(&bytes[bytes.len() / 2..])
        .expect("writing the second half");
    file.sync_all().expect("syncing");
    drop(file);
    wait_for_build(&server, "v2", Duration::from_secs(10));
    // Trying the torn build may crash the worker loading it (a refused
    // reload: its canary exits while booting), never one that serves.
    let log = server.logs();
    let crashes: Vec<&str> = lines_with(&log, "killed by signal")
        .into_iter()
        .filter(|l| !l.contains("reload failed") && !l.contains("while booting"))
        .collect();
    assert!(
        crashes.is_empty(),
        "a torn plugin file crashed a serving worker: {crashes:?}\n{log}"
    );
}

#[test]
fn int_and_quit_exit_at_once() {
    for sig in ["INT", "QUIT"] {
        let site = Site::new("int", "v1");
        let mut server = site.serve(&["-w", "2", "--threads", "2"]);
        server.wait_for_log_count(" booted", 2, TIMEOUT);
        let mut hung = server.connect();
        hung.send(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n");
        // The request is running (or queued) in a worker.
        assert_eq!(current_build(&server), "v1");
        server.send_signal(sig);
        let signalled = Instant::now();
        server.wait_exit(Duration::from_secs(5));
        assert!(
            signalled.elapsed() < Duration::from_secs(3),
            "SIG{sig} took {:?} with a request hanging",
            signalled.elapsed()
        );
        // The workers go with the master.
        wait_for_group_size(&server, server.pid(), 0, Duration::from_secs(5));
    }
}

#[test]
fn swap_serves_connections_queued_in_a_busy_worker() {
    // One app thread and four clients: the old worker has accepted
    // connections waiting for its thread when it is told to retire.
    let site = Site::new("queued", "v1");
    let server = site.serve(&["-w", "1", "--threads", "1"]);
    let load = Load::start(server.addr(), 4, "/sleep?ms=20");
    thread::sleep(Duration::from_millis(200));
    for n in 2..=4 {
        let build = format!("v{n}");
        site.deploy(&build, &[]);
        load.set_phase(n);
        server.send_signal("HUP");
        wait_for_build(&server, &build, TIMEOUT);
        thread::sleep(Duration::from_millis(100));
    }
    // The load's clients stay on the v3 worker until it retires and closes
    // their connections, which can take longer than the pause above on a
    // busy machine: wait until it is gone (the master and one worker
    // left), then give each client time for a request on v4 (four clients
    // share one 20 ms thread).
    wait_for_group_size(&server, server.pid(), 2, TIMEOUT);
    thread::sleep(Duration::from_millis(300));
    let tally = load.finish();
    assert_no_failures(&tally, &server);
    assert!(
        tally.builds.contains("v1") && tally.builds.contains("v4"),
        "the load should have seen the first and the last build: {tally:?}"
    );
}

#[test]
fn term_does_not_wait_for_idle_keep_alive_connections() {
    let site = Site::new("term-idle", "v1");
    let mut server = site.serve(&["-w", "1", "--keep-alive", "20"]);
    let mut idle = server.connect();
    idle.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    let resp = idle.read_response();
    assert_eq!(resp.status, 200);
    assert!(!resp.connection_has("close"), "{:?}", resp.raw_head);
    // The connection is idle (nothing in flight) when TERM comes.
    server.send_signal("TERM");
    let status = server
        .try_wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "still running 5 s after TERM: an idle keep-alive connection holds \
                 the worker (--keep-alive 20); log:\n{}",
                server.logs()
            )
        });
    assert!(status.success(), "TERM should exit 0, got {status}");
    idle.expect_closed(TIMEOUT);
}
