//! `hello-tower`: `plugins/hello` as a bare `tower::Service` (no framework),
//! to measure what `export_service!` itself costs per request. GET/HEAD ->
//! "Hello, World!"; anything else -> 405.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use http::{header, Method, Request, Response, StatusCode};
use tower_service::Service;

#[derive(Clone)]
struct Hello;

impl Service<Request<abi::RequestBody>> for Hello {
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

fn build(_config: &abi::Config) -> Result<Hello, String> {
    Ok(Hello)
}

abi::export_service!(build);
