//! The per-request path without the event loop: parse → environ → plugin
//! call → response bytes → one write, for a hello app linked into this
//! benchmark (the SDK's own, so the boundary is the real ABI), over a real
//! loopback connection. `cargo bench -p host --bench request_path`.
//!
//! The client is on 127.0.0.1, which `--forwarded-allow-ips` trusts by
//! default, as it is for wrk in `bench/run`: every request pays the look
//! for forwarding headers. `proxied_request` is one that has them, as
//! nginx in front sends it.
use std::hint::black_box;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use abi::{App, Body, Config as AppConfig, Environ, Error, StartResponse};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use host::gateway::plugin::Plugin;
use host::http1::parse::{parse_head, Limits, EMPTY_FIELD};
use host::net::transport::Transport;
use host::runtime::conn::{Conn, Forwarding};
use host::runtime::serve::{AppThread, Outcome, Work};
use host::runtime::{Claim, Stint};
use host::runtime::{Config, Shared};

struct Hello;

impl App for Hello {
    const NAME: &'static str = "bench-hello";

    fn init(_config: &AppConfig) -> Result<Self, String> {
        Ok(Hello)
    }

    fn call(&self, _env: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        start.start("200 OK", &[("Content-Type", "text/plain")])?;
        Ok(Body::from_static(b"Hello, World!"))
    }
}

abi::export_app!(Hello);

const REQUEST: &[u8] =
    b"GET / HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";
/// What nginx sends upstream for that request (`proxy_set_header` of the
/// README's example).
const PROXIED: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost:8000\r\n\
    X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n\
    User-Agent: wrk\r\nAccept: */*\r\n\r\n";

/// A served connection and the client end that drains its responses.
struct Bench {
    me: AppThread<'static>,
    conn: Option<Box<Conn>>,
    client: TcpStream,
    sink: Vec<u8>,
}

impl Bench {
    fn new() -> Bench {
        let mut plugin = Plugin::from_static(&app, "bench-hello").expect("a valid descriptor");
        plugin
            .init(&[], &host::gateway::api::HOST_API)
            .expect("init");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        client.set_nonblocking(true).unwrap();
        let local = server.local_addr().unwrap();
        let io = Transport::from_std(server).unwrap();
        let mut conn = Conn::new(io, peer.into(), local.into(), Instant::now());
        // The app thread borrows what a worker shares for as long as it
        // lives: leaked here, for the benchmark's life.
        let shared: &'static Shared =
            Box::leak(Box::new(Shared::new(plugin, Config::default(), None, None)));
        // As the event loop decides it at accept.
        conn.forwarding = Forwarding::of(&shared.config.forwarded_allow, peer.into());
        let claim: &'static Claim = Box::leak(Box::default());
        Bench {
            me: AppThread::new(0, shared, Stint::new(claim, None), None),
            conn: Some(conn),
            client,
            sink: vec![0; 1 << 20],
        }
    }

    /// Serves `requests` copies of `request` already "received", then
    /// drains the answers.
    fn round(&mut self, request: &[u8], requests: usize) {
        let mut conn = self.conn.take().expect("a connection");
        for _ in 0..requests {
            conn.buf.extend_from_slice(request);
        }
        match self.me.work(Work::Serve(conn)) {
            Outcome::Idle(c) => self.conn = Some(c),
            _ => panic!("the connection closed"),
        }
        loop {
            match self.client.read(&mut self.sink) {
                Ok(0) => panic!("server closed"),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        black_box(&self.sink);
    }
}

fn request_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_path");
    group.throughput(Throughput::Elements(1));
    let mut bench = Bench::new();
    group.bench_function("parse_head", |b| {
        let limits = Limits::default();
        b.iter(|| {
            let mut slots = [EMPTY_FIELD; 16];
            black_box(
                parse_head(black_box(REQUEST), &mut slots, &limits)
                    .unwrap()
                    .unwrap()
                    .len,
            )
        })
    });
    group.bench_function("keep_alive_request", |b| b.iter(|| bench.round(REQUEST, 1)));
    group.bench_function("proxied_request", |b| b.iter(|| bench.round(PROXIED, 1)));
    group.throughput(Throughput::Elements(16));
    group.bench_function("16_pipelined_requests", |b| {
        b.iter(|| bench.round(REQUEST, 16))
    });
    group.finish();
    // Keep the client end open until the benches are done.
    let _ = bench.client.write(b"");
}

criterion_group!(benches, request_path);
criterion_main!(benches);
