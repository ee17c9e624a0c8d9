//! Slowloris (the header-timeout requirement of RFC 9112 §9.5 in practice):
//! a thousand clients trickling one header byte every couple of seconds
//! must not delay a normal client, and are cut off with 408 once the header
//! timeout passes.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use integration_tests::artifacts;
use integration_tests::client;
use integration_tests::server;

const SLOW_CLIENTS: usize = 1000;
const TRICKLE: &[u8] = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: ";
const HEADER_TIMEOUT_SECS: u64 = 3;

#[test]
fn trickling_clients_do_not_delay_a_normal_client() {
    let server = server::serve(artifacts::rust_plugin("hello"))
        .args(["--header-timeout", &HEADER_TIMEOUT_SECS.to_string()])
        .start();
    let mut slow: Vec<TcpStream> = (0..SLOW_CLIENTS)
        .map(|i| {
            let s = TcpStream::connect(server.addr())
                .unwrap_or_else(|e| panic!("slow client {i}: {e}"));
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();

    let started = Instant::now();
    let mut sent = 0;
    let mut worst = Duration::ZERO;
    // Trickle for longer than the header timeout: one byte per client per
    // round, a round every 1.5 s, a normal request in between rounds.
    while started.elapsed() < Duration::from_secs(HEADER_TIMEOUT_SECS + 2) {
        if sent < TRICKLE.len() {
            for s in &mut slow {
                // A client the server already cut off may refuse the byte.
                let _ = s.write_all(&TRICKLE[sent..sent + 1]);
            }
            sent += 1;
        }
        for _ in 0..5 {
            let t = Instant::now();
            let resp = client::get(server.addr(), "/");
            let took = t.elapsed();
            assert_eq!(resp.status, 200, "a normal client was refused");
            worst = worst.max(took);
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    assert!(
        worst < Duration::from_millis(250),
        "a normal request took {worst:?} while {SLOW_CLIENTS} clients trickled"
    );

    // Every trickling client was answered 408 and closed by now.
    let mut timed_out = 0;
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(n) if buf[..n].starts_with(b"HTTP/1.1 408 ") => timed_out += 1,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => {}
        }
    }
    assert_eq!(
        timed_out, SLOW_CLIENTS,
        "slow clients answered 408 after the {HEADER_TIMEOUT_SECS} s header timeout"
    );
}
