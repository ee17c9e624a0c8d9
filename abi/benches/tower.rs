//! What the tower adapter (`export_service!`) costs per request, in
//! process: the same hello answered by the raw SDK (`plugins/hello`: a
//! static head, a static body) and by a bare `tower::Service`
//! (`plugins/hello-tower`), both driven through the real ABI entry points
//! by `abi::testing::Client`. The client's own work (building the environ
//! from an `http::Request`, collecting the response) is the same for
//! both, so the difference between the two is the adapter's.
//! `cargo bench -p abi --features tower --bench tower`.
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::task::{Context, Poll};

use abi::http::{header, Method, Request, Response, StatusCode};
use abi::testing::Client;
use abi::{App, Body, Config, Environ, Error, Head, Header, StartResponse};
use criterion::{criterion_group, criterion_main, Criterion};
use tower_service::Service;

/// `plugins/hello`.
struct RawHello;

static OK: Head = Head::new("200 OK", &[Header::new("Content-Type", "text/plain")]);
static NOT_ALLOWED: Head = Head::new(
    "405 Method Not Allowed",
    &[
        Header::new("Content-Type", "text/plain"),
        Header::new("Allow", "GET, HEAD"),
    ],
);

impl App for RawHello {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(RawHello)
    }

    fn call(&self, env: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        match env.method_bytes() {
            b"GET" | b"HEAD" => {
                start.start_static(&OK)?;
                Ok(Body::from_static(b"Hello, World!"))
            }
            _ => {
                start.start_static(&NOT_ALLOWED)?;
                Ok(Body::from_static(b"Method Not Allowed"))
            }
        }
    }
}

/// `plugins/hello-tower`.
#[derive(Clone)]
struct TowerHello;

impl Service<Request<abi::RequestBody>> for TowerHello {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<abi::RequestBody>) -> Self::Future {
        let (status, body) = match *request.method() {
            Method::GET | Method::HEAD => (StatusCode::OK, "Hello, World!"),
            _ => (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
        };
        let mut response = Response::new(body.to_owned());
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain"),
        );
        ready(Ok(response))
    }
}

fn build(_config: &Config) -> Result<TowerHello, String> {
    Ok(TowerHello)
}

/// What wrk sends (as `host/benches/request_path.rs` does).
fn request() -> Request<()> {
    Request::get("/")
        .header("host", "localhost:8000")
        .header("user-agent", "wrk")
        .header("accept", "*/*")
        .body(())
        .expect("a valid request")
}

fn hello(c: &mut Criterion) {
    let raw = Client::new(RawHello);
    let tower = Client::service(build, &Config::default()).expect("build succeeds");
    for client in [&raw, &tower] {
        let response = client.call(request());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), b"Hello, World!");
    }
    let mut group = c.benchmark_group("hello");
    group.bench_function("raw_sdk", |b| b.iter(|| black_box(raw.call(request()))));
    group.bench_function("tower", |b| b.iter(|| black_box(tower.call(request()))));
    group.finish();
}

criterion_group! {
    name = benches;
    // Short: the machine is shared; callgrind counts decide, this shows
    // the order of magnitude.
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = hello
}
criterion_main!(benches);
