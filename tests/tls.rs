//! HTTPS served by the host itself (`--certfile`): real clients (curl,
//! Python's ssl module, openssl s_client) against certificates made with
//! openssl for each test (a CA, an ECDSA P-256 server certificate and a
//! client certificate).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::artifacts::{self, TempDir};
use integration_tests::client::Conn;
use integration_tests::server::{self, Server};
use integration_tests::TIMEOUT;

/// A CA and the certificates it signed, in a temporary directory.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new(label: &str) -> Pki {
        let pki = Pki {
            dir: TempDir::new(label),
        };
        pki.openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ca.key",
        ]);
        pki.openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=Test CA",
            "-days",
            "2",
            "-out",
            "ca.pem",
        ]);
        pki.issue(
            "server",
            "/CN=localhost",
            0x1001,
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        );
        pki.issue(
            "client",
            "/C=DE/O=Example, Inc/CN=client one",
            7,
            "extendedKeyUsage=clientAuth",
        );
        pki
    }

    /// `name.key` and `name.pem` (signed by the CA, with serial `serial`).
    fn issue(&self, name: &str, subject: &str, serial: u32, ext: &str) {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let ext_file = format!("{name}.ext");
        std::fs::write(self.path(&ext_file), format!("{ext}\n")).unwrap();
        self.openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &key,
        ]);
        self.openssl(&["req", "-new", "-key", &key, "-subj", subject, "-out", &csr]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial.to_string(),
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.join(""))
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().expect("a UTF-8 path").to_owned()
    }

    /// `host serve testapps --certfile server.pem --keyfile server.key`
    /// plus `extra`.
    fn serve(&self, extra: &[&str]) -> Server {
        server::serve(artifacts::rust_plugin("testapps"))
            .args(["--certfile", &self.arg("server.pem")])
            .args(["--keyfile", &self.arg("server.key")])
            .args(extra)
            .start()
    }
}

/// Runs tests/fixtures/tls_client.py: (exit code, stdout).
fn python(args: &[&str]) -> (i32, String) {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Traceback"),
        "python failed:\n{stdout}\n{stderr}"
    );
    (out.status.code().unwrap_or(-1), stdout)
}

fn script() -> PathBuf {
    artifacts::repo_root().join("tests/fixtures/tls_client.py")
}

fn port(server: &Server) -> String {
    server.port().to_string()
}

#[test]
fn curl_gets_https_with_alpn_http11_and_the_environ_says_https() {
    let pki = Pki::new("tls-curl");
    let server = pki.serve(&[]);
    let out = Command::new("curl")
        .args(["-sS", "-v", "--cacert", &pki.arg("ca.pem")])
        .arg(format!("https://localhost:{}/environ", server.port()))
        .output()
        .expect("curl runs");
    let body = String::from_utf8_lossy(&out.stdout);
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{verbose}\n{}", server.logs());
    assert!(
        verbose.contains("ALPN: server accepted http/1.1")
            || verbose.contains("ALPN, server accepted to use http/1.1"),
        "{verbose}"
    );
    assert!(verbose.contains("TLSv1.3"), "{verbose}");
    for line in [
        "wsgi.url_scheme=https",
        "HTTPS=on",
        "SSL_PROTOCOL=TLSv1.3",
        "SSL_CLIENT_VERIFY=NONE",
    ] {
        assert!(body.lines().any(|l| l == line), "no {line} in:\n{body}");
    }
    assert!(!body.contains("SSL_CLIENT_S_DN"), "{body}");
    server.wait_for_log("listening on https://", TIMEOUT);
    // environ_get finds them too.
    for (key, value) in [
        ("HTTPS", "on"),
        ("SSL_PROTOCOL", "TLSv1.3"),
        ("SSL_CLIENT_S_DN", "absent"),
    ] {
        let out = Command::new("curl")
            .args(["-sS", "--cacert", &pki.arg("ca.pem")])
            .arg(format!("https://localhost:{}/get?key={key}", server.port()))
            .output()
            .expect("curl runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), value, "{key}");
    }
}

#[test]
fn python_ssl_keeps_alive_and_pipelines_over_tls() {
    let pki = Pki::new("tls-python");
    let server = pki.serve(&[]);
    let (code, out) = python(&["environ", &port(&server), &pki.arg("ca.pem")]);
    assert_eq!(code, 0, "{out}\n{}", server.logs());
    assert!(out.contains("ALPN=http/1.1\n"), "{out}");
    assert!(out.contains("VERSION=TLSv1.3\n"), "{out}");
    assert!(out.contains("SERIAL=1001\n"), "{out}");
    assert!(out.contains("wsgi.url_scheme=https\n"), "{out}");
    let (code, out) = python(&["pipeline", &port(&server), &pki.arg("ca.pem")]);
    assert_eq!(code, 0, "{out}\n{}", server.logs());
    assert!(out.starts_with("ok pipelined=3"), "{out}");
}

#[test]
fn tls_1_1_is_refused_and_1_2_is_served() {
    let pki = Pki::new("tls-versions");
    let server = pki.serve(&[]);
    let s_client = |version: &str| {
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", server.port()),
            ])
            .args([
                version,
                "-ign_eof",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-CAfile",
                &pki.arg("ca.pem"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = s_client("-tls1_1");
    assert!(!ok, "TLS 1.1 was served:\n{text}");
    assert!(text.contains("alert"), "not refused by the server:\n{text}");
    let (ok, text) = s_client("-tls1_2");
    assert!(ok && text.contains("HTTP/1.1 200 OK"), "TLS 1.2:\n{text}");
    assert!(
        text.contains("Protocol  : TLSv1.2") || text.contains("TLSv1.2"),
        "{text}"
    );
}

#[test]
fn a_trusted_proxys_x_forwarded_proto_still_applies_over_tls() {
    let pki = Pki::new("tls-forwarded");
    // 127.0.0.1 is a trusted proxy by default.
    let server = pki.serve(&[]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            &pki.arg("ca.pem"),
            "-H",
            "X-Forwarded-Proto: http",
        ])
        .arg(format!("https://localhost:{}/environ", server.port()))
        .output()
        .expect("curl runs");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("wsgi.url_scheme=http\n"), "{body}");
    assert!(!body.contains("HTTPS=on"), "{body}");
    // Still a TLS connection.
    assert!(body.contains("SSL_PROTOCOL=TLSv1.3\n"), "{body}");
}

#[test]
fn a_required_client_certificate_is_checked_and_its_subject_reaches_the_environ() {
    let pki = Pki::new("tls-client-required");
    let server = pki.serve(&["--ca-certs", &pki.arg("ca.pem"), "--cert-reqs", "2"]);
    let (code, out) = python(&["environ", &port(&server), &pki.arg("ca.pem")]);
    assert_eq!(code, 3, "served without a client certificate:\n{out}");
    assert!(out.starts_with("REFUSED"), "{out}");

    let (code, out) = python(&[
        "environ",
        &port(&server),
        &pki.arg("ca.pem"),
        &pki.arg("client.pem"),
        &pki.arg("client.key"),
    ]);
    assert_eq!(code, 0, "{out}\n{}", server.logs());
    assert!(out.contains("SSL_CLIENT_VERIFY=SUCCESS\n"), "{out}");
    assert!(
        out.contains("SSL_CLIENT_S_DN=CN=client one,O=Example\\, Inc,C=DE\n"),
        "{out}"
    );
    assert!(out.contains("SSL_CLIENT_I_DN=CN=Test CA\n"), "{out}");

    // A certificate from another CA is refused too.
    let other = Pki::new("tls-client-other-ca");
    let (code, out) = python(&[
        "environ",
        &port(&server),
        &pki.arg("ca.pem"),
        &other.arg("client.pem"),
        &other.arg("client.key"),
    ]);
    assert_eq!(code, 3, "served with another CA's certificate:\n{out}");
}

#[test]
fn an_optional_client_certificate_may_be_left_out() {
    let pki = Pki::new("tls-client-optional");
    let server = pki.serve(&["--ca-certs", &pki.arg("ca.pem"), "--cert-reqs", "optional"]);
    let (code, out) = python(&["environ", &port(&server), &pki.arg("ca.pem")]);
    assert_eq!(code, 0, "{out}\n{}", server.logs());
    assert!(out.contains("SSL_CLIENT_VERIFY=NONE\n"), "{out}");
    assert!(!out.contains("SSL_CLIENT_S_DN"), "{out}");
    let (code, out) = python(&[
        "environ",
        &port(&server),
        &pki.arg("ca.pem"),
        &pki.arg("client.pem"),
        &pki.arg("client.key"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SSL_CLIENT_VERIFY=SUCCESS\n"), "{out}");
    assert!(out.contains("SSL_CLIENT_S_DN=CN=client one,"), "{out}");
}

/// A keep-alive connection held by Python across the HUP.
struct Session {
    child: std::process::Child,
    lines: BufReader<std::process::ChildStdout>,
}

impl Session {
    fn open(server: &Server, ca: &str) -> Session {
        let mut child = Command::new("python3")
            .arg(script())
            .args(["session", &port(server), ca])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let lines = BufReader::new(child.stdout.take().unwrap());
        Session { child, lines }
    }

    fn say(&mut self, what: &str) -> String {
        if !what.is_empty() {
            let stdin = self.child.stdin.as_mut().unwrap();
            writeln!(stdin, "{what}").unwrap();
            stdin.flush().unwrap();
        }
        let mut line = String::new();
        self.lines.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces server.pem/server.key with a new pair (serial `serial`).
fn rotate(pki: &Pki, serial: u32) {
    pki.issue(
        "next",
        "/CN=localhost",
        serial,
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    );
    // Key first: a worker booting in between would fail, not serve a
    // mismatched pair (the master checks both before it forks one).
    std::fs::rename(pki.path("next.key"), pki.path("server.key")).unwrap();
    std::fs::rename(pki.path("next.pem"), pki.path("server.pem")).unwrap();
}

#[test]
fn hup_rotates_the_certificate_and_open_connections_keep_going() {
    let pki = Pki::new("tls-rotate");
    let server = pki.serve(&["--keep-alive", "30"]);
    let mut session = Session::open(&server, &pki.arg("ca.pem"));
    assert_eq!(session.say(""), "serial 1001 status 200");
    // A request in flight across the reload.
    let mut sleeper = Command::new("python3")
        .arg(script())
        .args(["sleep", &port(&server), &pki.arg("ca.pem"), "2000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut sleeper_out = BufReader::new(sleeper.stdout.take().unwrap());
    let mut line = String::new();
    sleeper_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected");

    rotate(&pki, 0x2002);
    server.send_signal("HUP");
    server.wait_for_log("is serving", TIMEOUT);
    // The connection made before the HUP still works (its worker finishes
    // what it holds), with the certificate it began with.
    assert_eq!(session.say("get"), "old serial 1001 status 200");
    // A new connection gets the new certificate (from the new workers).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let answer = session.say("new");
        if answer == "new serial 2002 status 200" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {answer}\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The request that was running finished on its old worker.
    line.clear();
    sleeper_out.read_line(&mut line).unwrap();
    let _ = sleeper.wait();
    assert_eq!(line.trim(), "slept serial 1001 status 200 slept 2000");
}

#[test]
fn a_bad_certificate_on_hup_keeps_the_old_one_serving() {
    let pki = Pki::new("tls-bad-hup");
    let server = pki.serve(&[]);
    // A key that is not the certificate's.
    pki.issue(
        "other",
        "/CN=localhost",
        0x3003,
        "subjectAltName=DNS:localhost",
    );
    std::fs::copy(pki.path("other.key"), pki.path("server.key")).unwrap();
    server.send_signal("HUP");
    let logs = server.wait_for_log("does not go with --certfile", TIMEOUT);
    let line = logs
        .lines()
        .find(|l| l.contains("does not go with"))
        .unwrap();
    assert!(
        line.contains("HUP: --keyfile") && line.contains("the settings in force stay"),
        "{line}"
    );
    let (code, out) = python(&["environ", &port(&server), &pki.arg("ca.pem")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SERIAL=1001\n"), "{out}");
    // An unreadable certificate file: the same.
    std::fs::remove_file(pki.path("server.pem")).unwrap();
    server.send_signal("HUP");
    server.wait_for_log("cannot read --certfile", TIMEOUT);
    let (code, out) = python(&["environ", &port(&server), &pki.arg("ca.pem")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SERIAL=1001\n"), "{out}");
}

#[test]
fn bad_tls_files_are_one_line_errors_at_start() {
    let pki = Pki::new("tls-bad-start");
    pki.issue(
        "other",
        "/CN=localhost",
        0x3003,
        "subjectAltName=DNS:localhost",
    );
    let plugin = artifacts::rust_plugin("testapps");
    let plugin = plugin.to_str().unwrap();
    let start = |args: &[&str]| {
        let mut all = vec!["serve", plugin, "-b", "127.0.0.1:0"];
        all.extend_from_slice(args);
        server::run(all)
    };
    let (cert, key, other_key) = (
        pki.arg("server.pem"),
        pki.arg("server.key"),
        pki.arg("other.key"),
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["--certfile", &cert, "--keyfile", &other_key],
            "does not go with --certfile",
        ),
        (
            &["--certfile", &cert],
            "has no private key in it and no --keyfile was given",
        ),
        (
            &["--certfile", "/nonexistent.pem", "--keyfile", &key],
            "cannot read --certfile /nonexistent.pem",
        ),
        (&["--certfile", &cert, "--keyfile", &cert], "no private key"),
        (&["--certfile", &key, "--keyfile", &key], "no certificate"),
        (
            &["--certfile", &cert, "--keyfile", &key, "--cert-reqs", "2"],
            "--cert-reqs required needs --ca-certs",
        ),
        (
            &[
                "--certfile",
                &cert,
                "--keyfile",
                &key,
                "--cert-reqs",
                "maybe",
            ],
            "'maybe' is not 0/none, 1/optional or 2/required",
        ),
        (&["--keyfile", &key], "--keyfile needs --certfile"),
        (&["--ca-certs", &cert], "--ca-certs needs --certfile"),
    ];
    for (args, wanted) in cases {
        let run = start(args);
        let line = run.error_line();
        assert!(line.contains(wanted), "{args:?}: {line}");
    }
    // A key and certificate in one file, as Python's ssl takes them.
    let both = pki.path("both.pem");
    let mut text = std::fs::read(pki.path("server.pem")).unwrap();
    text.extend(std::fs::read(pki.path("server.key")).unwrap());
    std::fs::write(&both, text).unwrap();
    let server = server::serve(artifacts::rust_plugin("testapps"))
        .args(["--certfile", both.to_str().unwrap()])
        .start();
    let (code, out) = python(&["environ", &port(&server), &pki.arg("ca.pem")]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_stalled_handshake_is_closed_at_the_header_timeout() {
    let pki = Pki::new("tls-slow-handshake");
    let server = pki.serve(&["--header-timeout", "1"]);
    // The start of a ClientHello (a handshake record of 512 bytes, of
    // which 9 come), then nothing.
    let stream = TcpStream::connect(server.addr()).unwrap();
    let mut conn = Conn::from_stream(stream);
    conn.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]);
    let took = conn.expect_closed(Duration::from_secs(5));
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    server.wait_for_log(
        "TLS handshake not finished within --header-timeout; closed",
        TIMEOUT,
    );
    // A client that sends nothing at all is closed at the same deadline.
    let mut idle = Conn::from_stream(TcpStream::connect(server.addr()).unwrap());
    let took = idle.expect_closed(Duration::from_secs(5));
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    // Others are served meanwhile.
    let (code, _) = python(&["environ", &port(&server), &pki.arg("ca.pem")]);
    assert_eq!(code, 0);
}

#[test]
fn a_client_that_stops_reading_over_tls_is_closed_at_the_send_deadline() {
    let pki = Pki::new("tls-slow-reader");
    let server = pki.serve(&["--send-timeout", "1", "--send-min-rate", "0"]);
    // Asks for 64 MiB and reads none of it: what the server encrypted and
    // could not send is held (owed) and timed like plain bytes.
    let script = r#"
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
raw = socket.socket()
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
raw.connect(("127.0.0.1", int(sys.argv[1])))
s = ctx.wrap_socket(raw, server_hostname="localhost")
s.sendall(b"GET /big?mb=64 HTTP/1.1\r\nHost: x\r\n\r\n")
time.sleep(float(sys.argv[3]))
got = 0
try:
    while True:
        data = s.recv(1 << 20)
        if not data:
            break
        got += len(data)
except (ssl.SSLError, OSError):
    pass
print("got", got)
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port(&server), &pki.arg("ca.pem"), "4"])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got: usize = stdout
        .trim()
        .strip_prefix("got ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout} {}", String::from_utf8_lossy(&out.stderr)));
    assert!(got < 64 << 20, "the whole body arrived: {got}");
    server.wait_for_log("client too slow reading the response; closed", TIMEOUT);
}

#[test]
fn a_unix_socket_stays_plain_http_beside_tls_binds() {
    let pki = Pki::new("tls-unix");
    let sock = pki.path("app.sock");
    let server = server::serve(artifacts::rust_plugin("testapps"))
        .args([
            "--certfile",
            &pki.arg("server.pem"),
            "--keyfile",
            &pki.arg("server.key"),
        ])
        .bind("127.0.0.1:0")
        .bind(&format!("unix:{}", sock.display()))
        .spawn();
    server.wait_for_log(&format!("listening on unix:{}", sock.display()), TIMEOUT);
    let logs = server.wait_for_log("listening on https://127.0.0.1:", TIMEOUT);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--unix-socket",
            sock.to_str().unwrap(),
            "http://localhost/environ",
        ])
        .output()
        .expect("curl runs");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("wsgi.url_scheme=http\n"), "{body}\n{logs}");
    assert!(!body.contains("HTTPS=") && !body.contains("SSL_"), "{body}");
}

#[test]
fn plain_http_on_the_tls_port_is_answered_400() {
    let pki = Pki::new("tls-plain-http");
    let server = pki.serve(&[]);
    let mut conn = server.connect();
    conn.send(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n");
    let resp = conn.read_response();
    assert_eq!(resp.status, 400, "{:?}", resp.raw);
    assert!(resp.text().contains("https://"), "{}", resp.text());
    conn.expect_closed(TIMEOUT);
}
