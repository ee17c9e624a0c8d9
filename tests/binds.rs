//! Where the server listens: `-b unix:PATH` (its environ, its file's
//! life, stale and live paths), `-b fd://N` (a listening socket inherited
//! from the parent, and the reasons one that is not is refused), systemd
//! socket activation (with Debian's `systemd-socket-activate`, which does
//! exactly what systemd does for a `.socket` unit), `--reuse-port`, and
//! the notifications systemd reads from the master (`NOTIFY_SOCKET`).
//!
//! The unix socket client is std's `UnixStream`, speaking the raw bytes
//! the TCP client helpers speak. Every wait has a deadline.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::artifacts::{self, TempDir};
use integration_tests::client;
use integration_tests::server::{self, Server};
use integration_tests::TIMEOUT;

fn testapps() -> String {
    artifacts::rust_plugin("testapps")
        .to_str()
        .expect("a UTF-8 path")
        .to_string()
}

/// One request over the unix socket at `path` (`Connection: close`); the
/// whole response as text.
fn unix_request(path: &Path, request: &str) -> String {
    let mut s = UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", path.display()));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("reading the response");
    String::from_utf8_lossy(&out).into_owned()
}

fn unix_get(path: &Path, target: &str, headers: &str) -> String {
    unix_request(
        path,
        &format!(
            "GET {target} HTTP/1.1\r\nHost: app.example:8443\r\n{headers}Connection: close\r\n\r\n"
        ),
    )
}

/// The `KEY=VALUE` line of testapps' `/environ` answer for `key`.
fn environ_value<'a>(response: &'a str, key: &str) -> Option<&'a str> {
    let body = response.split_once("\r\n\r\n")?.1;
    body.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Waits for the master's `listening on unix:PATH` line.
fn wait_listening_unix(server: &Server, path: &Path) {
    server.wait_for_log(&format!("listening on unix:{}", path.display()), TIMEOUT);
}

fn stop(mut server: Server) -> String {
    server.terminate();
    let status = server.wait_exit(TIMEOUT);
    assert!(status.success(), "host exited {status}: {}", server.logs());
    server.logs()
}

#[test]
fn unix_socket_serves_and_its_file_goes_with_the_master() {
    let dir = TempDir::new("binds-unix");
    let path = dir.join("app.sock");
    let server = server::serve(testapps())
        .bind(&format!("unix:{}", path.display()))
        .args([
            "--umask",
            "077",
            "--bind-mode",
            "660",
            "--access-logfile",
            "-",
        ])
        .spawn();
    wait_listening_unix(&server, &path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "--bind-mode sets the socket file's mode");

    let r = unix_get(&path, "/environ", "");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // A unix socket's client has no address (as in gunicorn); the server
    // is named by the Host header, and has the port of an http:// URL.
    assert_eq!(environ_value(&r, "REMOTE_ADDR"), Some(""), "{r}");
    // An empty variable is left out of the enumeration.
    assert!(
        environ_value(&r, "REMOTE_PORT").unwrap_or("").is_empty(),
        "{r}"
    );
    assert_eq!(environ_value(&r, "SERVER_NAME"), Some("app.example"), "{r}");
    assert_eq!(environ_value(&r, "SERVER_PORT"), Some("80"), "{r}");

    // A unix socket peer is a trusted proxy by default (the default list
    // has `unix:`), as gunicorn trusts it.
    let r = unix_get(
        &path,
        "/environ",
        "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n",
    );
    assert_eq!(environ_value(&r, "REMOTE_ADDR"), Some("203.0.113.9"), "{r}");
    assert_eq!(environ_value(&r, "wsgi.url_scheme"), Some("https"), "{r}");

    // The access log's host field for an addressless client is `-`.
    server.stdout.wait_for("- - - [", TIMEOUT);

    let logs = stop(server);
    assert!(
        !path.exists(),
        "the master removes its socket file when it stops; log:\n{logs}"
    );
}

#[test]
fn unix_peers_are_trusted_only_when_listed() {
    let dir = TempDir::new("binds-unix-trust");
    let path = dir.join("app.sock");
    let server = server::serve(testapps())
        .bind(&format!("unix:{}", path.display()))
        .args(["--forwarded-allow-ips", "127.0.0.1"])
        .spawn();
    wait_listening_unix(&server, &path);
    let r = unix_get(&path, "/environ", "X-Forwarded-For: 203.0.113.9\r\n");
    assert_eq!(environ_value(&r, "REMOTE_ADDR"), Some(""), "{r}");
    stop(server);
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_refused() {
    let dir = TempDir::new("binds-stale");
    let path = dir.join("app.sock");
    // A server that died without removing its socket: the file is there,
    // nobody accepts on it.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = server::serve(testapps())
        .bind(&format!("unix:{}", path.display()))
        .spawn();
    wait_listening_unix(&server, &path);
    assert!(server.logs().contains("removing stale socket file"));
    assert!(unix_get(&path, "/last", "").starts_with("HTTP/1.1 200"));

    // A second server on the same path is refused, and leaves the first
    // one's file alone.
    let second = server::run([
        "serve",
        &testapps(),
        "-b",
        &format!("unix:{}", path.display()),
    ]);
    let line = second.error_line();
    assert!(line.contains("another server is listening on it"), "{line}");
    assert!(unix_get(&path, "/last", "").starts_with("HTTP/1.1 200"));

    // A path that is not a socket is not ours to delete.
    let file = dir.join("not-a-socket");
    std::fs::write(&file, "data").unwrap();
    let third = server::run([
        "serve",
        &testapps(),
        "-b",
        &format!("unix:{}", file.display()),
    ]);
    assert!(third.error_line().contains("not a socket"), "{third:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
    stop(server);
}

/// A `host serve` whose `-b fd://N` is `fd`, inherited: close-on-exec is
/// cleared for it in the child only, between fork and exec.
fn serve_fd(fd: i32) -> server::Serve {
    server::serve(testapps())
        .bind(&format!("fd://{fd}"))
        .setup(move |cmd| {
            // SAFETY: fcntl is async-signal-safe, and touches only the
            // child's descriptor table.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
}

#[test]
fn an_inherited_listening_socket_is_served() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serve_fd(listener.as_raw_fd()).start();
    assert_eq!(
        server.addr(),
        addr,
        "it logs the inherited socket's address"
    );
    // Ours is a copy of the same socket: closing it changes nothing.
    drop(listener);
    let r = client::get(addr, "/last");
    assert_eq!(r.status, 200, "{}", r.text());
    stop(server);
}

/// Runs `host serve -b fd://N` with `fd` inherited; its one error line.
fn refused_fd(fd: i32) -> String {
    let mut server = serve_fd(fd).spawn();
    let status = server.wait_exit(TIMEOUT);
    assert!(!status.success(), "{}", server.logs());
    let logs = server.stderr.wait_closed(TIMEOUT);
    logs.lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{logs}"))
        .to_string()
}

#[test]
fn an_inherited_descriptor_that_cannot_accept_is_refused_with_why() {
    let unbound = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let line = refused_fd(unbound.as_raw_fd());
    assert!(line.contains("not listening"), "{line}");

    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let line = refused_fd(udp.as_raw_fd());
    assert!(line.contains("not a stream socket"), "{line}");

    let file = std::fs::File::open("/dev/null").unwrap();
    let line = refused_fd(file.as_raw_fd());
    assert!(line.contains("not a socket"), "{line}");

    // Never opened in the child (nothing passes it).
    let finished = server::run(["serve", &testapps(), "-b", "fd://999"]);
    assert!(
        finished
            .error_line()
            .contains("not an open file descriptor"),
        "{finished:?}"
    );
}

/// Whether `systemd-socket-activate` is installed (Debian's `systemd`;
/// `.ci/run` installs it).
fn socket_activate() -> &'static str {
    let path = "/usr/bin/systemd-socket-activate";
    assert!(
        Path::new(path).exists(),
        "{path} is missing: apt-get install systemd (as .ci/run does)"
    );
    path
}

#[test]
fn systemd_socket_activation() {
    let dir = TempDir::new("binds-activate");
    let path = dir.join("web.sock");
    // systemd-socket-activate binds the socket, waits for a first client,
    // then runs the host with it as fd 3 and LISTEN_PID, LISTEN_FDS and
    // LISTEN_FDNAMES set, as systemd does for a .socket unit.
    let launcher = [
        socket_activate().to_string(),
        "-l".into(),
        path.display().to_string(),
        "--fdname=web".into(),
    ];
    let server = server::serve(testapps())
        .launcher(launcher)
        .no_bind()
        .spawn();
    let deadline = Instant::now() + TIMEOUT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "no socket: {}", server.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The first client waits in the backlog while the host starts.
    let r = unix_get(&path, "/environ", "");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}\n{}", server.logs());
    let logs = server.wait_for_log("socket activation: serving web", TIMEOUT);
    assert!(!logs.contains("127.0.0.1:8000"), "{logs}");
    assert!(unix_get(&path, "/last", "").starts_with("HTTP/1.1 200"));
    stop(server);
    assert!(
        path.exists(),
        "the socket is systemd's: the host does not remove its file"
    );
}

#[test]
fn reuse_port_lets_two_servers_share_a_port() {
    let first = server::serve(testapps()).arg("--reuse-port").start();
    let port = first.port();
    let bind = format!("127.0.0.1:{port}");
    let second = server::serve(testapps())
        .bind(&bind)
        .arg("--reuse-port")
        .start();
    assert_eq!(second.port(), port);
    assert_eq!(client::get(second.addr(), "/last").status, 200);
    // Without the option the port is taken.
    let third = server::run(["serve", &testapps(), "-b", &bind]);
    assert!(third.error_line().contains("in use"), "{third:?}");
    stop(second);
    stop(first);
}

/// The service manager's end of `NOTIFY_SOCKET`: the datagrams the
/// master sends, `WATCHDOG=1` pings counted apart.
struct Manager {
    socket: UnixDatagram,
    pings: usize,
}

impl Manager {
    fn new(socket: UnixDatagram) -> Manager {
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        Manager { socket, pings: 0 }
    }

    /// The next message that is not a watchdog ping (or a bare STATUS=,
    /// with `skip_status`).
    fn next(&mut self, skip_status: bool, server: &Server) -> String {
        let mut buf = [0u8; 4096];
        loop {
            let len = self.socket.recv(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "no sd_notify message within {TIMEOUT:?} ({e}); log:\n{}",
                    server.logs()
                )
            });
            let m = String::from_utf8_lossy(&buf[..len]).into_owned();
            if m == "WATCHDOG=1" {
                self.pings += 1;
            } else if !(skip_status && m.starts_with("STATUS=")) {
                return m;
            }
        }
    }
}

#[test]
fn sd_notify_says_ready_reloading_and_stopping_in_order() {
    // An abstract socket (`@name`), as systemd may hand out.
    let name = format!("host-binds-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let mut manager = Manager::new(UnixDatagram::bind_addr(&addr).unwrap());
    let server = server::serve(testapps())
        .args(["-w", "2"])
        .env("NOTIFY_SOCKET", format!("@{name}"))
        // A ping every 150 ms.
        .env("WATCHDOG_USEC", "300000")
        .start();

    // Pings and progress (`STATUS=... 1/2 workers ready`) until both
    // workers booted, then READY=1.
    let m = manager.next(true, &server);
    assert!(m.starts_with("READY=1\nSTATUS=serving build "), "{m}");
    assert!(m.contains("generation 1), 2/2 workers ready"), "{m}");

    server.send_signal("HUP");
    let m = manager.next(true, &server);
    let usec = m
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{m}"));
    assert!(usec.parse::<u64>().unwrap() > 0, "{m}");
    // READY=1 again once the reload is decided.
    let m = manager.next(true, &server);
    assert!(m.starts_with("READY=1\nSTATUS=serving build "), "{m}");
    server.wait_for_log("reload", TIMEOUT);

    server.send_signal("TERM");
    let m = manager.next(true, &server);
    assert_eq!(m, "STOPPING=1\nSTATUS=stopping gracefully");
    let logs = stop(server);
    assert!(
        manager.pings >= 2,
        "{} watchdog pings; log:\n{logs}",
        manager.pings
    );
}

#[test]
fn no_watchdog_pings_for_another_pid() {
    let dir = TempDir::new("binds-watchdog");
    let path = dir.join("notify.sock");
    let mut manager = Manager::new(UnixDatagram::bind(&path).unwrap());
    let server = server::serve(testapps())
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "20000")
        .env("WATCHDOG_PID", "1")
        .start();
    let m = manager.next(false, &server);
    assert!(m.starts_with("READY=1"), "{m}");
    // At one ping per 10 ms, half a second would bring dozens.
    std::thread::sleep(Duration::from_millis(500));
    server.send_signal("TERM");
    assert!(manager.next(true, &server).starts_with("STOPPING=1"));
    assert_eq!(manager.pings, 0, "the watchdog is another process's");
    stop(server);
}

#[test]
fn term_delay_keeps_serving_then_drains() {
    let dir = TempDir::new("binds-term-delay");
    let path = dir.join("notify.sock");
    let mut manager = Manager::new(UnixDatagram::bind(&path).unwrap());
    let mut server = server::serve(testapps())
        .args(["--term-delay", "2"])
        .env("NOTIFY_SOCKET", &path)
        .start();
    assert!(manager.next(true, &server).starts_with("READY=1"));
    let addr = server.addr();
    server.send_signal("TERM");
    let termed = Instant::now();
    // The service manager learns at once that the server is going.
    assert_eq!(
        manager.next(true, &server),
        "STOPPING=1\nSTATUS=stopping in 2s (--term-delay), still serving"
    );
    // New clients keep being served, on new connections, for the delay.
    let mut last_served = Duration::ZERO;
    while !server.logs().contains("TERM: stopping gracefully") {
        if let Ok(mut conn) = client::Conn::try_connect(addr) {
            conn.send(b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            if conn.try_read_response().is_ok_and(|r| r.status == 200) {
                last_served = termed.elapsed();
            }
        }
        assert!(termed.elapsed() < TIMEOUT, "{}", server.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = termed.elapsed();
    assert!(
        stopped >= Duration::from_millis(1900),
        "stopped after {stopped:?}"
    );
    assert!(
        last_served >= Duration::from_millis(1500),
        "last served {last_served:?} after TERM"
    );
    assert_eq!(
        manager.next(true, &server),
        "STOPPING=1\nSTATUS=stopping gracefully"
    );
    let status = server.wait_exit(TIMEOUT);
    assert!(status.success(), "{}", server.logs());
}

/// The `Uid:`, `Gid:` and `Groups:` lines of `/proc/PID/status`.
fn ids_of(pid: u32) -> (String, String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    (line("Uid:"), line("Gid:"), line("Groups:"))
}

fn id_of(args: &[&str]) -> String {
    let out = std::process::Command::new("id")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Root without --user is said loudly but served: containers commonly run
/// everything as root. `--allow-root` says it is meant, and silences it.
#[test]
fn running_the_plugin_as_root_is_warned_about_unless_allowed() {
    if !server::running_as_root() {
        // Switching user needs root; saying so is all a non-root run can
        // check.
        let finished = server::run(["serve", &testapps(), "--user", "root"]);
        assert!(finished.error_line().contains("needs root"), "{finished:?}");
        return;
    }
    let warning = "the plugin will run as root: give --user USER";
    let server = server::serve(testapps()).refuse_root().start();
    assert_eq!(client::get(server.addr(), "/last").status, 200);
    assert!(server.logs().contains(warning), "{}", server.logs());
    // `--user root` is root all the same.
    let server = server::serve(testapps())
        .args(["--user", "root"])
        .refuse_root()
        .start();
    assert!(server.logs().contains(warning), "{}", server.logs());
    // Told: no warning.
    let server = server::serve(testapps()).start();
    assert!(!server.logs().contains(warning), "{}", server.logs());
}

#[test]
fn workers_drop_to_user_after_the_master_binds() {
    if !server::running_as_root() {
        eprintln!("not root: the privilege drop needs root (see the_plugin_is_not_run_as_root_unless_allowed)");
        return;
    }
    let dir = TempDir::new("binds-user");
    // World-searchable, so the socket is reachable whoever we are.
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (uid, gid) = (id_of(&["-u", "nobody"]), id_of(&["-g", "nobody"]));
    let server = server::serve(testapps())
        .bind("unix:app.sock")
        .arg("--chdir")
        .arg(&dir.path)
        .args(["--user", "nobody", "--bind-mode", "600"])
        .refuse_root()
        .spawn();
    // --chdir came first: the relative socket path is in the directory.
    let path = dir.join("app.sock");
    server.wait_for_log("listening on unix:app.sock", TIMEOUT);
    assert!(unix_get(&path, "/last", "").starts_with("HTTP/1.1 200"));

    let logs = server.logs();
    let worker: u32 = logs
        .split("worker ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no worker pid in:\n{logs}"));
    let (uids, gids, groups) = ids_of(worker);
    // Real, effective, saved and filesystem ids, all of them.
    assert_eq!(uids, [uid.as_str(); 4].join(" "), "worker {worker}");
    assert_eq!(gids, [gid.as_str(); 4].join(" "), "worker {worker}");
    assert!(
        groups.split(' ').all(|g| g == gid),
        "only nobody's groups: {groups}"
    );
    // The master stays root: it removes the socket file at the end.
    assert!(ids_of(server.pid()).0.starts_with("0 "));
    // The socket file belongs to the workers' user (as in gunicorn).
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.uid().to_string(), uid);
    stop(server);
    assert!(!path.exists());
}
