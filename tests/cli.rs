//! The command line: `host check`, `host serve` options, start-up errors
//! (one `error: ` line, non-zero exit, no panic), and shutdown on SIGTERM.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::artifacts::{self, TempFile};
use integration_tests::client::{self, Conn};
use integration_tests::server::{self, plugin_spec, Finished};
use integration_tests::TIMEOUT;

/// How long a process that fails to start may take to exit.
/// The ABI version this tree's header and SDK declare (plugins built here
/// report it; the host names it when it refuses one).
const HOST_ABI: &str = "1.3";

const QUICK_EXIT: Duration = Duration::from_secs(5);

fn hello() -> String {
    path_str(&artifacts::rust_plugin("hello"))
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// `host check <spec>`, which must exit 0 quickly; returns its stdout.
fn check(spec: &str) -> String {
    let run = server::run(["check", spec]);
    assert!(run.status.success(), "host check failed: {run:#?}");
    assert!(
        run.elapsed < QUICK_EXIT,
        "host check took {:?}",
        run.elapsed
    );
    run.stdout
}

/// The value of the `key: value` line of `check` output: its first word (a
/// remark in parentheses may follow).
fn field<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no `{key}: ` line in:\n{stdout}"))
        .split_whitespace()
        .next()
        .unwrap_or_default()
}

#[test]
fn check_reports_a_rust_plugin() {
    use abi::ffi::{NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR};
    assert_eq!(HOST_ABI, format!("{NWSGI_ABI_MAJOR}.{NWSGI_ABI_MINOR}"));
    let out = check(&hello());
    assert_eq!(field(&out, "abi"), HOST_ABI, "{out}");
    let flags = field(&out, "flags");
    assert!(
        flags == "thread-safe" || flags == "none",
        "flags: {flags:?}\n{out}"
    );
    assert!(!field(&out, "name").is_empty(), "{out}");
}

#[test]
fn check_reports_a_c_plugin() {
    let out = check(&plugin_spec(&artifacts::hello_c(), "app"));
    assert_eq!(field(&out, "abi"), HOST_ABI, "{out}");
    assert_eq!(field(&out, "flags"), "thread-safe", "{out}");
    assert_eq!(field(&out, "name"), "hello-c", "{out}");
}

#[test]
fn check_reports_a_cpp_plugin() {
    // Built with -fvisibility=hidden: NWSGI_EXPORT must still export `app`.
    let out = check(&plugin_spec(&artifacts::hello_cpp(), "app"));
    assert_eq!(field(&out, "abi"), HOST_ABI, "{out}");
    assert_eq!(field(&out, "flags"), "thread-safe", "{out}");
    assert_eq!(field(&out, "name"), "hello-cpp", "{out}");
}

#[test]
fn check_reports_an_abi_1_0_plugin() {
    let out = check(&plugin_spec(&artifacts::app10(), "app"));
    assert_eq!(field(&out, "abi"), "1.0", "{out}");
    assert_eq!(field(&out, "flags"), "none", "{out}");
    assert_eq!(field(&out, "name"), "-", "{out}");
}

/// Runs `host check <spec>` and `host serve <spec>`; both must fail quickly
/// with one `error: ` line containing every string in `expected`.
fn assert_load_error(spec: &str, expected: &[&str]) {
    for run in check_and_serve(spec) {
        assert_error(&run, expected);
    }
}

/// `host check <spec>` and `host serve <spec>`, each run to its end.
fn check_and_serve(spec: &str) -> [Finished; 2] {
    [
        server::run(["check", spec]),
        server::run(["serve", spec, "-b", "127.0.0.1:0"]),
    ]
}

fn assert_error(run: &Finished, expected: &[&str]) {
    let line = run.error_line();
    for want in expected {
        assert!(
            line.contains(want),
            "error line {line:?} should mention {want:?}; whole run: {run:#?}"
        );
    }
    assert!(run.elapsed < QUICK_EXIT, "took {:?} to fail", run.elapsed);
}

#[test]
fn missing_file_is_an_error() {
    let path = path_str(&artifacts::target_dir().join("no-such-plugin.so"));
    assert_load_error(&path, &[&path]);
}

#[test]
fn a_file_that_is_not_a_library_is_an_error() {
    let path = path_str(&artifacts::not_a_library());
    assert_load_error(&path, &[&path]);
}

#[test]
fn missing_symbol_is_an_error() {
    hello(); // "run `cargo build --workspace` first" if it is not there
    let dir = artifacts::target_dir();
    for run in [
        server::run_in(dir, ["check", "./libhello.so:nope"]),
        server::run_in(dir, ["serve", "./libhello.so:nope", "-b", "127.0.0.1:0"]),
    ] {
        assert_error(&run, &["./libhello.so", "nope"]);
    }
}

#[test]
fn bad_magic_is_an_error() {
    let path = artifacts::bad_plugin("bad_magic");
    assert_load_error(
        &plugin_spec(&path, "app"),
        &[&path_str(&path), "app", "magic"],
    );
}

#[test]
fn another_major_version_is_an_error() {
    let path = artifacts::bad_plugin("major2");
    assert_load_error(
        &plugin_spec(&path, "app"),
        &[&path_str(&path), "app", "2.0", HOST_ABI],
    );
}

#[test]
fn a_too_small_descriptor_is_an_error() {
    let path = artifacts::bad_plugin("too_small");
    for run in check_and_serve(&plugin_spec(&path, "app")) {
        assert_error(&run, &[&path_str(&path), "app"]);
        let line = run.error_line();
        // The fixture claims 8 bytes; a 1.0 descriptor is 40, a 1.1 one 48.
        let sizes = line.contains('8') && (line.contains("40") || line.contains("48"));
        assert!(
            line.contains("too small") || sizes,
            "{line:?} should say the descriptor is too small, or give the sizes"
        );
    }
}

#[test]
fn a_descriptor_without_call_is_an_error() {
    let path = artifacts::bad_plugin("no_call");
    assert_load_error(&plugin_spec(&path, "app"), &[&path_str(&path)]);
}

#[test]
fn unknown_descriptor_flags_are_an_error() {
    let path = artifacts::bad_plugin("unknown_flags");
    assert_load_error(
        &plugin_spec(&path, "app"),
        &[&path_str(&path), "app", "0x100", HOST_ABI],
    );
}

/// A plugin's name is its author's to choose, bytes and all: what the
/// host prints of it is escaped, one line, no terminal control.
#[test]
fn a_plugin_name_with_control_bytes_is_shown_escaped() {
    let path = artifacts::bad_plugin("evil_name");
    let run = server::run(["check", &plugin_spec(&path, "app")]);
    assert!(run.status.success(), "{run:#?}");
    let name = run
        .stdout
        .lines()
        .find(|l| l.starts_with("name: "))
        .unwrap_or_else(|| panic!("no name line: {run:#?}"));
    assert_eq!(
        name, "name: evil\\nERROR forged line \\x1b[31mred\\u{202e}",
        "{run:#?}"
    );
    assert!(!run.stdout.contains("\x1b") && !run.stdout.lines().any(|l| l.starts_with("ERROR")));
}

#[test]
fn init_failure_stops_serve_with_the_plugins_reason() {
    let path = artifacts::bad_plugin("init_fails");
    let run = server::run(["serve", &plugin_spec(&path, "app"), "-b", "127.0.0.1:0"]);
    assert_error(&run, &["database unreachable"]);
}

#[test]
fn address_in_use_is_an_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let run = server::run(["serve", &hello(), "-b", &addr]);
    assert_error(&run, &[&addr, "in use"]);
    drop(taken);
}

#[test]
fn malformed_address_is_an_error() {
    let run = server::run(["serve", &hello(), "-b", "nonsense:abc"]);
    assert_error(&run, &["nonsense"]);
}

/// A gunicorn flag host does not take gets one line saying what to do
/// instead, and the usage exit status.
#[test]
fn a_gunicorn_flag_gets_a_hint() {
    let hello = hello();
    for (flag, hint) in [
        ("--worker-class=gevent", "--threads"),
        ("--daemon", "foreground"),
        ("--tmp-upload-dir", "--body-temp-dir"),
    ] {
        let run = server::run(["serve", &hello, flag]);
        assert_eq!(run.status.code(), Some(2), "{flag}: {run:#?}");
        let line = run.error_line();
        assert!(
            line.contains("gunicorn") && line.contains(hint),
            "{flag}: {line:?}"
        );
        assert_eq!(run.stderr.lines().count(), 1, "{flag}: {run:#?}");
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let hello = hello();
    for args in [
        vec!["serve", &hello, "--frobnicate"],
        vec!["check", &hello, "--frobnicate"],
        vec!["serve", &hello, "--log-level", "loud"],
        vec!["serve", &hello, "--threads", "many"],
        vec!["serve", &hello, "--app-arg", "no-equals-sign"],
        vec!["frobnicate"],
    ] {
        let run = server::run(&args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {run:#?}");
        assert!(!run.stderr.contains("panicked"), "{args:?}: {run:#?}");
        assert!(run.elapsed < QUICK_EXIT, "{args:?} took {:?}", run.elapsed);
    }
}

#[test]
fn every_bind_address_answers() {
    let server = server::serve(hello())
        .bind("127.0.0.1:0")
        .bind("127.0.0.1:0")
        .start();
    assert_eq!(server.addrs.len(), 2, "{}", server.logs());
    assert_ne!(server.addrs[0], server.addrs[1]);
    for addr in &server.addrs {
        let resp = client::get(*addr, "/");
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "Hello, World!"),
            "via {addr}"
        );
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = server::serve(hello()).start();
    assert_eq!(client::get(server.addr(), "/").status, 200);
    // An idle keep-alive connection must not hold shutdown up for long.
    let mut idle = server.connect();
    idle.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(idle.read_response().status, 200);

    server.terminate();
    let status = server.wait_exit(QUICK_EXIT);
    assert!(
        status.success(),
        "exit after SIGTERM: {status}; log:\n{}",
        server.logs()
    );
    // The listener is gone with it.
    assert!(
        std::net::TcpStream::connect_timeout(&server.addr(), TIMEOUT).is_err(),
        "still accepting after exit"
    );
}

#[test]
fn access_log_file_gets_a_combined_log_line() {
    let log = TempFile::new("access.log");
    let server = server::serve(artifacts::rust_plugin("testapps"))
        .arg("--access-logfile")
        .arg(&log.path)
        .start();
    let resp = client::request(
        server.addr(),
        b"GET /last HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8.0\r\nReferer: http://r.test/\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    let line = wait_for_line(|| log.read(), "\"GET /last HTTP/1.1\" 200 5");
    assert_combined_format(&line, "http://r.test/", "curl/8.0");
}

#[test]
fn access_log_dash_goes_to_a_standard_stream() {
    let server = server::serve(artifacts::rust_plugin("testapps"))
        .args(["--access-logfile", "-"])
        .start();
    let resp = client::request(server.addr(), b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(resp.status, 200);
    // gunicorn writes `-` to stdout; stderr, beside the error log, is
    // accepted too.
    let both = || format!("{}\n{}", server.stdout.text(), server.logs());
    let line = wait_for_line(both, "\"GET /last HTTP/1.1\" 200 5");
    assert_combined_format(&line, "-", "-");
}

/// Polls `read` until some line contains `needle` (the log is written after
/// the response, with no event to wait on); returns that line.
fn wait_for_line(read: impl Fn() -> String, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = read();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no access log line with {needle:?} within 5 s; log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `127.0.0.1 - - [21/Nov/2026:10:00:00 +0000] "GET /last HTTP/1.1" 200 5 "referer" "agent"`.
fn assert_combined_format(line: &str, referer: &str, agent: &str) {
    let rest = line
        .strip_prefix("127.0.0.1 - - [")
        .unwrap_or_else(|| panic!("{line:?} should start with `127.0.0.1 - - [`"));
    let (time, rest) = rest
        .split_once("] ")
        .unwrap_or_else(|| panic!("no `] ` in {line:?}"));
    // dd/Mon/yyyy:hh:mm:ss +zzzz
    let t = time.as_bytes();
    let shape_ok = t.len() == 26
        && t[2] == b'/'
        && t[6] == b'/'
        && t[11] == b':'
        && t[14] == b':'
        && t[17] == b':'
        && t[20] == b' '
        && (t[21] == b'+' || t[21] == b'-');
    assert!(
        shape_ok,
        "timestamp {time:?} is not dd/Mon/yyyy:hh:mm:ss +zzzz"
    );
    assert_eq!(
        rest,
        format!("\"GET /last HTTP/1.1\" 200 5 \"{referer}\" \"{agent}\""),
        "in {line:?}"
    );
}

#[test]
fn log_level_debug_still_logs_startup() {
    let server = server::serve(hello())
        .args(["--log-level", "debug"])
        .start();
    assert_eq!(client::get(server.addr(), "/").status, 200);
}

#[test]
fn log_level_error_hides_info_lines() {
    // The "listening" line is info, so the port has to be known up front.
    let addr: SocketAddr = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut server = server::serve(hello())
        .bind(&addr.to_string())
        .args(["--log-level", "error"])
        .spawn();
    let deadline = Instant::now() + TIMEOUT;
    let mut conn = loop {
        // Nothing to wait on but the port itself.
        if std::net::TcpStream::connect_timeout(&addr, TIMEOUT).is_ok() {
            break Conn::connect(addr);
        }
        assert!(
            Instant::now() < deadline,
            "never listened; log:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(conn.read_response().status, 200);
    server.terminate();
    assert!(server.wait_exit(QUICK_EXIT).success());
    let logs = server.stderr.wait_closed(TIMEOUT);
    assert!(
        !logs.contains("listening on"),
        "info line logged at --log-level error:\n{logs}"
    );
}
