//! Plugins written in C against the header alone: `hello-c` answers exactly
//! what the Rust `hello` answers, and a plugin built against the frozen ABI
//! 1.0 header still loads and serves.

use integration_tests::artifacts;
use integration_tests::client::{self, Response};
use integration_tests::server::{self, plugin_spec, Server};

/// The raw bytes of a response with the Date value blanked out (it is the
/// only thing allowed to differ between two servers).
fn without_date(resp: &Response) -> String {
    let raw = String::from_utf8_lossy(&resp.raw).into_owned();
    match resp.header("date") {
        Some(date) => raw.replacen(date, "<date>", 1),
        None => raw,
    }
}

/// Sends `request` to each server on a new connection; `head` for HEAD.
fn exchange(server: &Server, request: &[u8], head: bool) -> Response {
    let mut conn = server.connect();
    conn.send(request);
    if head {
        conn.read_head_response()
    } else {
        conn.read_response()
    }
}

#[test]
fn hello_c_answers_byte_for_byte_like_hello() {
    let rust = server::serve(artifacts::rust_plugin("hello")).start();
    let c = server::serve(plugin_spec(&artifacts::hello_c(), "app")).start();
    let requests: [(&[u8], bool); 4] = [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false),
        (b"GET /any/path?q HTTP/1.1\r\nHost: x\r\n\r\n", false),
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", true),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
            false,
        ),
    ];
    for (request, head) in requests {
        let from_rust = exchange(&rust, request, head);
        let from_c = exchange(&c, request, head);
        assert_eq!(
            without_date(&from_rust),
            without_date(&from_c),
            "for {:?} (left: Rust hello, right: hello-c)",
            String::from_utf8_lossy(request)
        );
    }
    // And the shared answer is the one specified.
    let resp = exchange(&c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false);
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"Hello, World!"[..])
    );
}

fn app10() -> server::Serve {
    server::serve(plugin_spec(&artifacts::app10(), "app"))
}

#[test]
fn abi_1_0_plugin_serves() {
    let server = app10().start();
    let resp = client::get(server.addr(), "/");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "hello from abi 1.0"),
        "{}",
        resp.raw_head
    );
    assert_eq!(resp.header("content-type"), Some("text/plain"));
}

#[test]
fn abi_1_0_plugin_gets_its_app_args() {
    let server = app10().args(["--app-arg", "greeting=hi"]).start();
    assert_eq!(client::get(server.addr(), "/").text(), "hi");
}

#[test]
fn abi_1_0_plugin_sees_the_hosts_struct_sizes() {
    let server = app10().start();
    let resp = client::get(server.addr(), "/environ-size");
    assert_eq!(resp.status, 200);
    let text = resp.text();
    let size = |key: &str| -> u64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key}=N in {text:?}"))
    };
    // The host hands its own (1.1) structs to a 1.0 plugin.
    assert_eq!(
        size("environ_size"),
        std::mem::size_of::<abi::ffi::nwsgi_environ>() as u64,
        "{text}"
    );
    assert_eq!(
        size("api_size"),
        std::mem::size_of::<abi::ffi::nwsgi_host_api>() as u64,
        "{text}"
    );
}

#[test]
fn abi_1_0_plugin_answers_concurrent_requests() {
    // Not thread-safe (flags 0): with several app threads the host must
    // still serialise its calls, and every request is answered.
    let server = app10().args(["--threads", "4"]).start();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let addr = server.addr();
            std::thread::spawn(move || client::get(addr, "/").text())
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), "hello from abi 1.0");
    }
}
