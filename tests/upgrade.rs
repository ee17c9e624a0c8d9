//! Binary upgrade (`host upgrade -p`, USR2): the master starts the host
//! binary again with its listening sockets; the new master's workers boot
//! while the old ones serve; only then does the old master hand over the
//! pidfile and drain. Under load, no request fails, and a new master that
//! cannot serve leaves the old one serving.
//!
//! Every test serves the `swap` plugin (`tests/fixtures/swap/app.c`) from a
//! scratch directory of its own: its answer to `GET /` names the build and
//! the worker's pid, so a test sees which master's workers answered.

use std::fs;
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::artifacts::{self, TempDir};
use integration_tests::client::Conn;
use integration_tests::load::{Load, Tally};
use integration_tests::server::{self, Finished, Server};
use integration_tests::TIMEOUT;

/// A scratch directory with the plugin file and the pidfile.
struct Site {
    dir: TempDir,
    plugin: PathBuf,
    pidfile: PathBuf,
}

impl Site {
    fn new(label: &str) -> Site {
        let dir = TempDir::new(label);
        let site = Site {
            plugin: dir.join("libapp.so"),
            pidfile: dir.join("host.pid"),
            dir,
        };
        artifacts::swap_plugin("v1", &[], &site.plugin);
        site
    }

    fn pidfile_str(&self) -> &str {
        self.pidfile.to_str().expect("a UTF-8 path")
    }

    /// `host upgrade -p <pidfile>`.
    fn upgrade(&self) -> Finished {
        server::run(["upgrade", "-p", self.pidfile_str()])
    }

    /// The pid the pidfile names (0 while it holds none).
    fn pid_in_file(&self) -> u32 {
        fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The parent of process `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X') | None
        )
    })
}

/// Polls `done` every 20 ms; panics with `what` and the log at `timeout`.
fn wait_until(server: &Server, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} within {TIMEOUT:?}; log:\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /` on a new connection: the body (`build vN pid N`).
fn get(server: &Server) -> String {
    let mut conn = Conn::connect(server.addr());
    conn.send(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let resp = conn.read_response();
    assert_eq!(resp.status, 200, "{resp:?}; log:\n{}", server.logs());
    resp.text()
}

/// The worker pid in a `build vN pid N` body.
fn worker_pid(body: &str) -> u32 {
    body.rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"))
}

fn assert_no_failures(tally: &Tally, server: &Server) {
    assert!(tally.ok > 0, "nothing was answered: {tally:?}");
    assert!(
        tally.failures.is_empty(),
        "{} of {} requests failed:\n{}\nlog:\n{}",
        tally.failures.len(),
        tally.ok + tally.failures.len(),
        tally.failures.join("\n"),
        server.logs()
    );
}

/// Stops the master the pidfile names (the new one, which the test
/// harness did not start) and waits until it is gone.
fn stop_by_pidfile(site: &Site, server: &Server) {
    let run = server::run(["stop", "-p", site.pidfile_str()]);
    assert!(
        run.status.success(),
        "`host stop` failed: {run:#?}; log:\n{}",
        server.logs()
    );
}

#[test]
fn upgrade_under_load_fails_no_request() {
    let site = Site::new("upgrade-load");
    let mut server = server::serve(&site.plugin)
        .args(["-p", site.pidfile_str(), "-w", "2", "--threads", "2"])
        .start();
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    let old = server.pid();
    assert_eq!(site.pid_in_file(), old);
    let load = Load::start(server.addr(), "/", 3, 2);
    thread::sleep(Duration::from_millis(300));

    let run = site.upgrade();
    assert!(
        run.status.success(),
        "`host upgrade` failed: {run:#?}; log:\n{}",
        server.logs()
    );
    let new = site.pid_in_file();
    assert!(new != old && new != 0, "the pidfile still names {new}");
    assert!(
        run.stdout.contains(&format!(
            "upgraded: master {new} serving; master {old} draining"
        )),
        "{run:#?}"
    );
    let status = server.wait_exit(TIMEOUT);
    assert!(status.success(), "the old master exited {status}");
    // Clients go on being served by the new master alone.
    thread::sleep(Duration::from_millis(300));
    let tally = load.finish();
    assert_no_failures(&tally, &server);
    let worker = worker_pid(&get(&server));
    assert_eq!(
        parent_of(worker),
        Some(new),
        "a worker of the new master answers"
    );
    assert!(alive(new));

    stop_by_pidfile(&site, &server);
    assert!(!alive(new), "`host stop` stopped the new master");
    assert!(!site.pidfile.exists(), "the new master removes the pidfile");
}

#[test]
fn upgrade_whose_workers_cannot_boot_fails_and_the_old_master_serves_on() {
    let site = Site::new("upgrade-broken");
    let mut server = server::serve(&site.plugin)
        .args(["-p", site.pidfile_str(), "-w", "2"])
        .start();
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    let old = server.pid();
    // A broken build deployed over the file: the old master serves its own
    // staged copy, but a new master would load this one.
    let stage = site.dir.join("stage.so");
    artifacts::swap_plugin("v2", &["INIT_FAIL"], &stage);
    fs::rename(&stage, &site.plugin).unwrap();
    let load = Load::start(server.addr(), "/", 2, 2);
    thread::sleep(Duration::from_millis(200));

    let run = site.upgrade();
    let error = run.error_line().to_owned();
    assert!(
        error.contains("upgrade failed: new master") && error.contains("swap init refused"),
        "the reason should be the new build's init failure: {error:?}; log:\n{}",
        server.logs()
    );
    let tally = load.finish();
    assert_no_failures(&tally, &server);
    assert_eq!(
        site.pid_in_file(),
        old,
        "the pidfile still names the old master"
    );
    assert!(
        server.try_wait_exit(Duration::ZERO).is_none(),
        "the old master runs"
    );
    let body = get(&server);
    assert!(body.starts_with("build v1 "), "{body}");
    assert_eq!(parent_of(worker_pid(&body)), Some(old));
    // And it still answers the control commands.
    let status = server::run(["status", "-p", site.pidfile_str()]);
    assert!(status.status.success(), "{status:#?}");
    server.terminate();
    assert!(server.wait_exit(TIMEOUT).success());
}

#[test]
fn usr2_upgrades_as_host_upgrade_does() {
    let site = Site::new("upgrade-usr2");
    let mut server = server::serve(&site.plugin)
        .args(["-p", site.pidfile_str(), "-w", "2"])
        .start();
    server.wait_for_log_count(" booted", 2, TIMEOUT);
    let old = server.pid();
    let load = Load::start(server.addr(), "/", 2, 1);
    thread::sleep(Duration::from_millis(200));

    server.send_signal("USR2");
    let status = server.wait_exit(TIMEOUT);
    assert!(status.success(), "USR2 killed the master: {status}");
    let mut new = 0;
    wait_until(&server, "a new master wrote the pidfile", || {
        new = site.pid_in_file();
        new != old && new != 0
    });
    server.wait_for_log(&format!("upgrade: master {new} is serving"), TIMEOUT);
    let tally = load.finish();
    assert_no_failures(&tally, &server);
    assert_eq!(parent_of(worker_pid(&get(&server))), Some(new));
    stop_by_pidfile(&site, &server);
}

/// One `GET /` over the unix socket at `path`: the whole response.
fn unix_get(path: &Path) -> String {
    let mut s = UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", path.display()));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("reading the response");
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_unix_socket_survives_an_upgrade() {
    let site = Site::new("upgrade-unix");
    let sock = site.dir.join("app.sock");
    let mut server = server::serve(&site.plugin)
        .bind(&format!("unix:{}", sock.display()))
        .args(["-p", site.pidfile_str()])
        .spawn();
    server.wait_for_log(&format!("listening on unix:{}", sock.display()), TIMEOUT);
    let old = server.pid();
    assert!(unix_get(&sock).starts_with("HTTP/1.1 200"));

    let run = site.upgrade();
    assert!(run.status.success(), "{run:#?}; log:\n{}", server.logs());
    server.wait_exit(TIMEOUT);
    let new = site.pid_in_file();
    assert!(new != old && new != 0);
    assert!(
        sock.exists(),
        "the old master removed the socket file it handed over"
    );
    let r = unix_get(&sock);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let body = r.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert_eq!(parent_of(worker_pid(body)), Some(new));

    stop_by_pidfile(&site, &server);
    assert!(
        !sock.exists(),
        "the new master removes the socket file when it stops"
    );
}

/// The datagrams sent to a service manager's socket, STATUS-only and
/// WATCHDOG ones left out.
fn next_notice(manager: &UnixDatagram, server: &Server) -> String {
    let mut buf = [0u8; 4096];
    loop {
        let n = manager
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification: {e}; log:\n{}", server.logs()));
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !m.starts_with("STATUS=") && m != "WATCHDOG=1" {
            return m;
        }
    }
}

#[test]
fn systemd_is_told_the_new_main_pid() {
    let site = Site::new("upgrade-notify");
    let name = format!("host-upgrade-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let manager = UnixDatagram::bind_addr(&addr).unwrap();
    manager.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut server = server::serve(&site.plugin)
        .args(["-p", site.pidfile_str()])
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .start();
    let m = next_notice(&manager, &server);
    assert!(m.starts_with("READY=1\n"), "{m}");

    let run = site.upgrade();
    assert!(run.status.success(), "{run:#?}; log:\n{}", server.logs());
    server.wait_exit(TIMEOUT);
    let new = site.pid_in_file();
    // The old master, main pid until then, names the new one; the new
    // master was given the socket (it says READY=1 in its turn) and the old
    // one says nothing more: in particular no STOPPING=1.
    let mut notices = vec![next_notice(&manager, &server)];
    notices.push(next_notice(&manager, &server));
    notices.sort();
    assert!(
        notices[0].starts_with(&format!("MAINPID={new}\n")),
        "{notices:?}"
    );
    assert!(notices[1].starts_with("READY=1\n"), "{notices:?}");
    stop_by_pidfile(&site, &server);
    let m = next_notice(&manager, &server);
    assert!(
        m.starts_with("STOPPING=1"),
        "the new master stops as the service: {m}"
    );
}

#[test]
fn the_binary_now_at_the_path_is_what_runs() {
    let site = Site::new("upgrade-exe");
    let copy = site.dir.join("host");
    fs::copy(artifacts::host(), &copy).unwrap();
    // Started as the copy (the launcher drops the path the harness adds).
    let launcher = format!("shift; exec '{}' \"$@\"", copy.display());
    let mut server = server::serve(&site.plugin)
        .launcher(["sh", "-c", launcher.as_str(), "sh"])
        .args(["-p", site.pidfile_str()])
        .start();
    let old = server.pid();
    // A deploy renames another program over the path: a script that leaves
    // a mark, then runs the real binary.
    let marker = site.dir.join("new-binary-ran");
    let script = site.dir.join("host.new");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch '{}'\nexec '{}' \"$@\"\n",
            marker.display(),
            artifacts::host().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&script, &copy).unwrap();

    let run = site.upgrade();
    assert!(run.status.success(), "{run:#?}; log:\n{}", server.logs());
    assert!(
        marker.exists(),
        "the upgrade ran the binary it was started as, not the file now at its path"
    );
    server.wait_exit(TIMEOUT);
    assert_ne!(site.pid_in_file(), old);
    get(&server);
    stop_by_pidfile(&site, &server);
}
