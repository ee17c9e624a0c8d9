//! Behind a proxy: who the app sees as the client, and which scheme.
//!
//! - Forwarding headers (`X-Forwarded-For`, `X-Forwarded-Proto`/`-Ssl`,
//!   `Forwarded`) from a trusted peer (`--forwarded-allow-ips`, default
//!   127.0.0.1 and ::1, which is where these tests connect from) set
//!   REMOTE_ADDR, REMOTE_PORT and wsgi.url_scheme; from any other peer
//!   they change nothing.
//! - The PROXY protocol (`--proxy-protocol`), v1 and v2, as raw bytes.
//! - Real proxies in front: nginx as an HTTP proxy with upstream
//!   keep-alive (plain and TLS), nginx's stream module sending PROXY v1,
//!   HAProxy sending PROXY v2 with its SSL TLV. They need nginx,
//!   libnginx-mod-stream, haproxy, openssl and curl (`.ci/run` installs
//!   them); a test that cannot find one fails and says which.
//!
//! Any 127.0.0.0/8 address is this machine's, so a client can connect
//! from 127.0.0.2 and be told apart from a proxy on 127.0.0.1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use integration_tests::artifacts::{self, TempDir};
use integration_tests::client::Conn;
use integration_tests::proxy::{certificate, program, Proxy};
use integration_tests::server::{self, Serve, Server};
use integration_tests::TIMEOUT;

fn echo() -> Serve {
    server::serve(artifacts::rust_plugin("echo"))
}

/// The environ the echo plugin saw for `request`, as `KEY=VALUE` pairs.
fn environ_for(conn: &mut Conn, request: &[u8]) -> HashMap<String, String> {
    conn.send(request);
    read_environ(conn)
}

fn read_environ(conn: &mut Conn) -> HashMap<String, String> {
    let resp = conn.read_response();
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    parse_environ(&resp.text())
}

fn parse_environ(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `GET /__environ` with `fields` (each a `Name: value` line).
fn get(fields: &[&str]) -> Vec<u8> {
    let mut req = String::from("GET /__environ HTTP/1.1\r\nHost: x\r\n");
    for f in fields {
        req.push_str(f);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Checks the variables: `Some(v)` must be `v`, `None` absent.
fn assert_vars(env: &HashMap<String, String>, expected: &[(&str, Option<&str>)]) {
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(k, v)| env.get(*k).map(String::as_str) != *v)
        .map(|(k, v)| format!("{k}: want {v:?}, got {:?}", env.get(*k)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{}\nwhole environ: {env:#?}",
        wrong.join("\n")
    );
}

/// A connection to `to` from the local address `from`.
fn connect_from(from: &str, to: SocketAddr) -> Conn {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("an address");
    socket
        .bind(&local.into())
        .unwrap_or_else(|e| panic!("binding {local}: {e}"));
    socket
        .connect_timeout(&to.into(), TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting to {to} from {from}: {e}"));
    Conn::from_stream(socket.into())
}

/// An access log line for `client` (the combined format starts with it).
fn wait_for_access(server: &Server, client: &str) {
    server.stdout.wait_for(&format!("{client} - - ["), TIMEOUT);
}

/// The access log, with a newline in front so each line starts with one.
fn access_log(server: &Server) -> String {
    format!("\n{}", server.stdout.text())
}

// ---------------------------------------------------------------------------
// Forwarding headers

#[test]
fn a_trusted_peer_names_the_client_and_scheme() {
    let server = echo().args(["--access-logfile", "-"]).start();
    let mut conn = server.connect();
    let env = environ_for(
        &mut conn,
        &get(&[
            "X-Forwarded-For: 6.6.6.6, 203.0.113.7",
            "X-Forwarded-Proto: https",
        ]),
    );
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("203.0.113.7")),
            // X-Forwarded-For gives no port; the proxy's would mislead.
            ("REMOTE_PORT", None),
            ("wsgi.url_scheme", Some("https")),
            // The headers reach the app as they were sent.
            ("HTTP_X_FORWARDED_FOR", Some("6.6.6.6, 203.0.113.7")),
            ("HTTP_X_FORWARDED_PROTO", Some("https")),
        ],
    );
    wait_for_access(&server, "203.0.113.7");
    assert!(!access_log(&server).contains("\n127.0.0.1 "));
}

/// nginx's upstream keep-alive sends many clients' requests on one
/// connection: each request is judged on its own headers.
#[test]
fn each_request_on_a_connection_names_its_own_client() {
    let server = echo().start();
    let mut conn = server.connect();
    let own_port = conn.local_port().to_string();
    let env = environ_for(&mut conn, &get(&["X-Forwarded-For: 203.0.113.7"]));
    assert_vars(
        &env,
        &[("REMOTE_ADDR", Some("203.0.113.7")), ("REMOTE_PORT", None)],
    );
    let env = environ_for(&mut conn, &get(&[]));
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("127.0.0.1")),
            ("REMOTE_PORT", Some(&own_port)),
            ("wsgi.url_scheme", Some("http")),
        ],
    );
    let env = environ_for(
        &mut conn,
        &get(&[r#"Forwarded: for="[2001:db8::1]:4711";proto=https"#]),
    );
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("2001:db8::1")),
            ("REMOTE_PORT", Some("4711")),
            ("wsgi.url_scheme", Some("https")),
        ],
    );
    // A scheme header alone leaves the address alone.
    let env = environ_for(&mut conn, &get(&["X-Forwarded-Ssl: on"]));
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("127.0.0.1")),
            ("REMOTE_PORT", Some(&own_port)),
            ("wsgi.url_scheme", Some("https")),
        ],
    );
    // Pipelined: two clients in one write.
    let two = [
        get(&["X-Forwarded-For: 198.51.100.1"]),
        get(&["X-Forwarded-For: 198.51.100.2"]),
    ]
    .concat();
    conn.send(&two);
    assert_vars(
        &read_environ(&mut conn),
        &[("REMOTE_ADDR", Some("198.51.100.1"))],
    );
    assert_vars(
        &read_environ(&mut conn),
        &[("REMOTE_ADDR", Some("198.51.100.2"))],
    );
}

#[test]
fn an_untrusted_peer_changes_nothing() {
    let server = echo()
        .args(["--forwarded-allow-ips", "10.0.0.1", "--access-logfile", "-"])
        .start();
    let mut conn = server.connect();
    let own_port = conn.local_port().to_string();
    let env = environ_for(
        &mut conn,
        &get(&[
            "X-Forwarded-For: 203.0.113.7",
            "X-Forwarded-Proto: https",
            "Forwarded: for=203.0.113.8;proto=https",
        ]),
    );
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("127.0.0.1")),
            ("REMOTE_PORT", Some(&own_port)),
            ("wsgi.url_scheme", Some("http")),
            ("HTTP_X_FORWARDED_FOR", Some("203.0.113.7")),
            ("HTTP_X_FORWARDED_PROTO", Some("https")),
            ("HTTP_FORWARDED", Some("for=203.0.113.8;proto=https")),
        ],
    );
    wait_for_access(&server, "127.0.0.1");
    assert!(!access_log(&server).contains("203.0.113"));
}

/// gunicorn reads FORWARDED_ALLOW_IPS; the flag overrides it.
#[test]
fn the_environment_variable_is_the_default() {
    let header = get(&["X-Forwarded-For: 203.0.113.7"]);
    let server = echo().env("FORWARDED_ALLOW_IPS", "10.0.0.1").start();
    let env = environ_for(&mut server.connect(), &header);
    assert_vars(&env, &[("REMOTE_ADDR", Some("127.0.0.1"))]);
    let server = echo()
        .env("FORWARDED_ALLOW_IPS", "10.0.0.1")
        .args(["--forwarded-allow-ips", "127.0.0.0/8"])
        .start();
    let env = environ_for(&mut server.connect(), &header);
    assert_vars(&env, &[("REMOTE_ADDR", Some("203.0.113.7"))]);
}

#[test]
fn a_chain_of_trusted_proxies_is_walked() {
    let server = echo()
        .args(["--forwarded-allow-ips", "127.0.0.1, 10.0.0.0/8"])
        .start();
    let mut conn = server.connect();
    let env = environ_for(
        &mut conn,
        &get(&["X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.1.2.3, 10.0.0.9"]),
    );
    assert_vars(&env, &[("REMOTE_ADDR", Some("203.0.113.7"))]);
    // A hop that names no address: the proxy that reported it.
    let env = environ_for(&mut conn, &get(&["X-Forwarded-For: unknown, 10.1.2.3"]));
    assert_vars(&env, &[("REMOTE_ADDR", Some("10.1.2.3"))]);
    // Every hop trusted: the left-most.
    let env = environ_for(&mut conn, &get(&["X-Forwarded-For: 10.9.9.9, 10.1.2.3"]));
    assert_vars(&env, &[("REMOTE_ADDR", Some("10.9.9.9"))]);
}

/// What a trusted proxy writes wrong is not believed, and costs the
/// request nothing: never a 400, and the reason at debug.
#[test]
fn malformed_values_are_ignored() {
    let server = echo().args(["--log-level", "debug"]).start();
    let mut conn = server.connect();
    let own_port = conn.local_port().to_string();
    for fields in [
        &["X-Forwarded-For: 203.0.113.7, not-an-address"][..],
        &["Forwarded: for=\"203.0.113.7"],
        &["Forwarded: for=203.0.113.7;for=203.0.113.8"],
    ] {
        let env = environ_for(&mut conn, &get(fields));
        assert_vars(
            &env,
            &[
                ("REMOTE_ADDR", Some("127.0.0.1")),
                ("REMOTE_PORT", Some(&own_port)),
            ],
        );
    }
    let env = environ_for(
        &mut conn,
        &get(&["X-Forwarded-Proto: https", "X-Forwarded-Ssl: off"]),
    );
    assert_vars(&env, &[("wsgi.url_scheme", Some("http"))]);
    server.wait_for_log("forwarding header not believed", TIMEOUT);
}

#[test]
fn bad_address_lists_are_usage_errors() {
    let plugin = server::plugin_spec(&artifacts::rust_plugin("echo"), "app");
    for (flag, value, says) in [
        (
            "--forwarded-allow-ips",
            "10.0.0.1/8",
            "did you mean 10.0.0.0/8",
        ),
        ("--forwarded-allow-ips", "localhost", "not an IP address"),
        ("--proxy-allow-ips", "::/200", "from 0 to 128"),
    ] {
        let run = server::run(["serve", plugin.as_str(), "-b", "127.0.0.1:0", flag, value]);
        assert_eq!(run.status.code(), Some(2), "{run:#?}");
        let line = run.error_line();
        assert!(line.contains(says), "{line}");
    }
}

// ---------------------------------------------------------------------------
// The PROXY protocol, as raw bytes

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY v2 header: version/command byte, family byte, then `body`.
fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[ver_cmd, fam]);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// TCP over IPv6, 2001:db8::7 port 4711 to 2001:db8::1 port 8443, with
/// an SSL TLV saying the client came over TLS.
fn v2_tcp6_tls() -> Vec<u8> {
    let mut body = Vec::new();
    for ip in ["2001:db8::7", "2001:db8::1"] {
        body.extend_from_slice(&ip.parse::<std::net::Ipv6Addr>().unwrap().octets());
    }
    body.extend_from_slice(&4711u16.to_be_bytes());
    body.extend_from_slice(&8443u16.to_be_bytes());
    // PP2_TYPE_SSL: client PP2_CLIENT_SSL, verify 0, a version sub-TLV.
    let ssl = [&[0x01u8, 0, 0, 0, 0][..], &[0x21, 0, 7], b"TLSv1.3"].concat();
    body.push(0x20);
    body.extend_from_slice(&(ssl.len() as u16).to_be_bytes());
    body.extend_from_slice(&ssl);
    v2(0x21, 0x21, &body)
}

fn proxied() -> Serve {
    echo().arg("--proxy-protocol")
}

#[test]
fn proxy_v1_names_the_client_for_the_whole_connection() {
    let server = proxied().args(["--access-logfile", "-"]).start();
    let mut conn = server.connect();
    let head = b"PROXY TCP4 198.51.100.9 192.0.2.1 4444 443\r\n";
    let env = environ_for(
        &mut conn,
        &[head.as_slice(), &get(&["X-Forwarded-For: 203.0.113.7"])].concat(),
    );
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("198.51.100.9")),
            ("REMOTE_PORT", Some("4444")),
            // Where the client connected to: the proxy's port.
            ("SERVER_PORT", Some("443")),
            ("wsgi.url_scheme", Some("http")),
            // The relayed client is no trusted proxy: its headers count
            // for nothing.
            ("HTTP_X_FORWARDED_FOR", Some("203.0.113.7")),
        ],
    );
    // The header comes once; later requests are the same client's.
    let env = environ_for(&mut conn, &get(&[]));
    assert_vars(&env, &[("REMOTE_ADDR", Some("198.51.100.9"))]);
    wait_for_access(&server, "198.51.100.9");
}

/// A client the PROXY header names may itself be a trusted proxy (a CDN
/// behind a layer-4 balancer): then its headers count.
#[test]
fn the_relayed_client_may_be_a_trusted_proxy() {
    let server = proxied()
        .args(["--forwarded-allow-ips", "198.51.100.0/24"])
        .start();
    let mut conn = server.connect();
    let env = environ_for(
        &mut conn,
        &[
            b"PROXY TCP4 198.51.100.9 192.0.2.1 4444 443\r\n".as_slice(),
            &get(&["X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https"]),
        ]
        .concat(),
    );
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("203.0.113.7")),
            ("wsgi.url_scheme", Some("https")),
        ],
    );
}

#[test]
fn proxy_v2_addresses_and_tls() {
    let server = proxied().start();
    let mut conn = server.connect();
    let env = environ_for(&mut conn, &[v2_tcp6_tls(), get(&[])].concat());
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("2001:db8::7")),
            ("REMOTE_PORT", Some("4711")),
            ("SERVER_PORT", Some("8443")),
            ("wsgi.url_scheme", Some("https")),
        ],
    );
    // LOCAL (a proxy's health check), v2 AF_UNSPEC and v1 UNKNOWN: the
    // connection's own endpoints.
    for header in [
        v2(0x20, 0x00, &[]),
        v2(0x21, 0x00, &[]),
        b"PROXY UNKNOWN\r\n".to_vec(),
    ] {
        let mut conn = server.connect();
        let own_port = conn.local_port().to_string();
        let env = environ_for(&mut conn, &[header, get(&[])].concat());
        assert_vars(
            &env,
            &[
                ("REMOTE_ADDR", Some("127.0.0.1")),
                ("REMOTE_PORT", Some(&own_port)),
                ("SERVER_PORT", Some(&server.port().to_string())),
                ("wsgi.url_scheme", Some("http")),
            ],
        );
    }
}

/// A header in pieces, however small, under the header timeout; the
/// request behind it (and the one behind that) is read from where the
/// header ends.
#[test]
fn a_header_in_pieces_and_the_requests_behind_it() {
    let server = proxied().start();
    for header in [
        b"PROXY TCP4 198.51.100.9 192.0.2.1 4444 443\r\n".to_vec(),
        v2_tcp6_tls(),
    ] {
        let mut conn = server.connect();
        let first = get(&["X-N: 1"]);
        let bytes = [header.as_slice(), &first[..10]].concat();
        conn.send_bytewise(&bytes, 1, Duration::from_millis(2))
            .expect("sending");
        conn.send(&[&first[10..], &get(&["X-N: 2"])].concat());
        for n in ["1", "2"] {
            let env = read_environ(&mut conn);
            assert_eq!(env.get("HTTP_X_N").map(String::as_str), Some(n));
            assert!(
                matches!(
                    env.get("REMOTE_ADDR").map(String::as_str),
                    Some("198.51.100.9" | "2001:db8::7")
                ),
                "{env:#?}"
            );
        }
    }
}

/// An allowed peer must start with a PROXY header: anything else is
/// closed unanswered (it cannot be told from a client's own bytes).
#[test]
fn an_allowed_peer_without_a_header_is_closed() {
    let server = proxied().start();
    for bytes in [
        get(&[]),
        b"PROXY TCP4 198.51.100.9 192.0.2.1 99999 443\r\n".to_vec(),
        v2(0x11, 0x11, &[0; 12]),
    ] {
        let mut conn = server.connect();
        conn.send(&bytes);
        conn.expect_closed(TIMEOUT);
    }
    server.wait_for_log("does not start with a PROXY header", TIMEOUT);
    server.wait_for_log("PROXY v1 port is not a number", TIMEOUT);
}

/// Peers not in --proxy-allow-ips speak plain HTTP, where a PROXY line is
/// only a bad request line: no client chooses its address.
#[test]
fn other_peers_speak_plain_http() {
    let server = proxied().args(["--proxy-allow-from", "10.0.0.1"]).start();
    let mut conn = server.connect();
    let env = environ_for(&mut conn, &get(&[]));
    assert_vars(&env, &[("REMOTE_ADDR", Some("127.0.0.1"))]);
    let mut conn = server.connect();
    conn.send(
        &[
            b"PROXY TCP4 198.51.100.9 192.0.2.1 4444 443\r\n".as_slice(),
            &get(&[]),
        ]
        .concat(),
    );
    assert_eq!(conn.read_response().status, 400);
}

#[test]
fn a_header_that_never_ends_times_out() {
    let server = proxied().args(["--header-timeout", "1"]).start();
    let mut conn = server.connect();
    conn.send(b"PROXY TCP4 198.51");
    let waited = conn.expect_closed(TIMEOUT);
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    server.wait_for_log("no whole PROXY header within --header-timeout", TIMEOUT);
}

// ---------------------------------------------------------------------------
// Real proxies in front

/// `GET /__environ` over TLS with curl, from the local address `from`.
fn curl_environ(from: &str, url: &str) -> HashMap<String, String> {
    let out = Command::new(program("curl", "curl"))
        .args(["-sS", "-k", "--max-time", "10", "--interface", from, url])
        .output()
        .expect("running curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_environ(&String::from_utf8_lossy(&out.stdout))
}

/// Connections in ESTABLISHED state whose local port is `port` (the
/// server's side of each connection to it), from /proc/net/tcp.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("reading /proc/net/tcp");
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&port) && f[3] == "01"
        })
        .count()
}

/// nginx's command line for a config written into `dir`, its own paths
/// for everything it writes; `modules` are `load_module` lines (they must
/// come first).
fn nginx(dir: &TempDir, modules: &str, conf: &str) -> Command {
    let path = dir.join("nginx.conf");
    let prelude = format!(
        "{modules}daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
         error_log {dir}/error.log info;\nevents {{ worker_connections 64; }}\n",
        dir = dir.path.display()
    );
    std::fs::write(&path, format!("{prelude}{conf}")).expect("writing nginx.conf");
    let mut cmd = Command::new(program("nginx", "nginx"));
    cmd.arg("-p")
        .arg(&dir.path)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("error.log"));
    cmd
}

/// nginx as the HTTP proxy in front, as the README's example has it:
/// X-Forwarded-For appended to, X-Forwarded-Proto set, HTTP/1.1 to the
/// upstream with kept connections. Clients from several addresses, one
/// after another, some lying in their own headers: each request, on the
/// one kept upstream connection, names its own client; over TLS, https.
#[test]
fn nginx_in_front_with_upstream_keepalive() {
    let server = echo()
        .args(["--keep-alive", "60", "--access-logfile", "-"])
        .start();
    let upstream = server.port();
    let nginx = Proxy::start("nginx-http", 2, "error.log", |dir, ports| {
        certificate(dir);
        let location = "location / {
                proxy_pass http://app;
                proxy_http_version 1.1;
                proxy_set_header Connection \"\";
                proxy_set_header Host $host;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                proxy_set_header X-Forwarded-Proto $scheme;
            }";
        nginx(
            dir,
            "",
            &format!(
                "http {{
                    access_log off;
                    client_body_temp_path {d}/body;
                    proxy_temp_path {d}/proxy;
                    fastcgi_temp_path {d}/fastcgi;
                    uwsgi_temp_path {d}/uwsgi;
                    scgi_temp_path {d}/scgi;
                    upstream app {{
                        server 127.0.0.1:{upstream};
                        keepalive 4;
                    }}
                    server {{
                        listen 127.0.0.1:{plain};
                        {location}
                    }}
                    server {{
                        listen 127.0.0.1:{tls} ssl;
                        ssl_certificate {d}/cert.pem;
                        ssl_certificate_key {d}/key.pem;
                        {location}
                    }}
                }}\n",
                d = dir.path.display(),
                plain = ports[0],
                tls = ports[1],
            ),
        )
    });
    for (from, lie) in [
        ("127.0.0.2", "X-Forwarded-For: 6.6.6.6"),
        ("127.0.0.3", "X-Forwarded-Proto: https"),
        ("127.0.0.4", "Forwarded: for=6.6.6.6;proto=https"),
    ] {
        let mut conn = connect_from(from, nginx.addr(0));
        let env = environ_for(&mut conn, &get(&[lie]));
        assert_vars(
            &env,
            &[
                ("REMOTE_ADDR", Some(from)),
                ("REMOTE_PORT", None),
                ("wsgi.url_scheme", Some("http")),
            ],
        );
        wait_for_access(&server, from);
    }
    let env = curl_environ(
        "127.0.0.5",
        &format!("https://127.0.0.1:{}/__environ", nginx.ports[1]),
    );
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("127.0.0.5")),
            ("wsgi.url_scheme", Some("https")),
        ],
    );
    // All four went over one kept connection.
    assert_eq!(
        established_to(upstream),
        1,
        "nginx did not keep its upstream connection; its log:\n{}",
        nginx.logs()
    );
    assert!(!access_log(&server).contains("6.6.6.6"));
}

fn stream_module() -> String {
    let module = PathBuf::from("/usr/lib/nginx/modules/ngx_stream_module.so");
    if module.is_file() {
        format!("load_module {};\n", module.display())
    } else {
        // Built in, or missing: nginx then says "unknown directive stream"
        // and the test fails with its log.
        String::new()
    }
}

/// nginx's stream module relays TCP and sends PROXY v1 first: the client
/// is named, port included, and so is the port it connected to.
#[test]
fn nginx_stream_sends_proxy_v1() {
    let server = proxied().start();
    let upstream = server.port();
    let nginx = Proxy::start("nginx-stream", 1, "error.log", |dir, ports| {
        nginx(
            dir,
            &stream_module(),
            &format!(
                "stream {{
                    server {{
                        listen 127.0.0.1:{port};
                        proxy_pass 127.0.0.1:{upstream};
                        proxy_protocol on;
                    }}
                }}\n",
                port = ports[0]
            ),
        )
    });
    let mut conn = connect_from("127.0.0.6", nginx.addr(0));
    let client_port = conn.local_port().to_string();
    let env = environ_for(&mut conn, &get(&[]));
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("127.0.0.6")),
            ("REMOTE_PORT", Some(&client_port)),
            ("SERVER_PORT", Some(&nginx.ports[0].to_string())),
        ],
    );
    let env = environ_for(&mut conn, &get(&[]));
    assert_vars(&env, &[("REMOTE_ADDR", Some("127.0.0.6"))]);
}

/// HAProxy relays TCP (plain, and TLS it terminates) and sends PROXY v2
/// with its SSL TLV and a CRC32C TLV: the client is named, and over TLS
/// the scheme is https.
#[test]
fn haproxy_sends_proxy_v2() {
    let server = proxied().start();
    let upstream = server.port();
    let haproxy = Proxy::start("haproxy", 2, "stderr", |dir, ports| {
        certificate(dir);
        let conf = format!(
            "global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend plain
    bind 127.0.0.1:{plain}
    default_backend app
frontend tls
    bind 127.0.0.1:{tls} ssl crt {d}/both.pem
    default_backend app
backend app
    server host 127.0.0.1:{upstream} send-proxy-v2-ssl proxy-v2-options crc32c
",
            d = dir.path.display(),
            plain = ports[0],
            tls = ports[1],
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let mut cmd = Command::new(program("haproxy", "haproxy"));
        cmd.arg("-db").arg("-f").arg(path);
        cmd
    });
    let mut conn = connect_from("127.0.0.7", haproxy.addr(0));
    let client_port = conn.local_port().to_string();
    let env = environ_for(&mut conn, &get(&[]));
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("127.0.0.7")),
            ("REMOTE_PORT", Some(&client_port)),
            ("wsgi.url_scheme", Some("http")),
        ],
    );
    let env = curl_environ(
        "127.0.0.8",
        &format!("https://127.0.0.1:{}/__environ", haproxy.ports[1]),
    );
    assert_vars(
        &env,
        &[
            ("REMOTE_ADDR", Some("127.0.0.8")),
            ("wsgi.url_scheme", Some("https")),
        ],
    );
}
