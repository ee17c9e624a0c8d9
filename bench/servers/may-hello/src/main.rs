//! may_minihttp "Hello, World!" for the benchmark suite, configured like its
//! TechEmpower plaintext entry (small coroutine stacks, a coroutine pool)
//! but with one may worker thread. Usage: `may-hello ADDR`.

use std::io;

use may_minihttp::{HttpServer, HttpService, Request, Response};

#[derive(Clone)]
struct Hello;

impl HttpService for Hello {
    fn call(&mut self, _req: Request, rsp: &mut Response) -> io::Result<()> {
        rsp.header("Content-Type: text/plain").body("Hello, World!");
        Ok(())
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    may::config()
        .set_workers(1)
        .set_pool_capacity(1000)
        .set_stack_size(0x1000);
    let server = HttpServer(Hello).start(&addr).expect("bind");
    server.join().expect("server");
}
