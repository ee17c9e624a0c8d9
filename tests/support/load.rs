//! Client threads that keep a server busy while a test does something to
//! it (an upgrade, a reload), and count every request that failed.
//!
//! Two kinds of client: keep-alive clients send request after request on
//! one connection, and open a new one when the server said
//! `Connection: close` or closed the idle connection before the next
//! request was sent (neither counts as a failure: a client may always
//! retry those); new-connection clients open a connection per request. A
//! request that got no whole `200` response is a failure: clients never
//! retry one.
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::client::Conn;

/// What the clients saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Whole `200` responses.
    pub ok: usize,
    /// Each request that got no whole `200` response, described.
    pub failures: Vec<String>,
    /// The distinct bodies' `pid N` values (the swap plugin names the
    /// worker that answered): which processes served.
    pub pids: BTreeSet<u32>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.failures.extend(other.failures);
        self.pids.extend(other.pids);
    }
}

/// Client threads sending `GET target` to `addr` until [`Load::finish`]
/// (or until dropped, when a test fails).
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Load {
    /// `keep_alive` clients that reuse their connection, and `fresh`
    /// clients that open one per request.
    pub fn start(addr: SocketAddr, target: &str, keep_alive: usize, fresh: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..keep_alive + fresh)
            .map(|i| {
                let stop = Arc::clone(&stop);
                let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n");
                let reuse = i < keep_alive;
                thread::spawn(move || client(addr, &request, reuse, &stop))
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the clients and adds up what they saw.
    pub fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        for thread in self.threads.drain(..) {
            total.merge(thread.join().expect("a load client panicked"));
        }
        total
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn client(addr: SocketAddr, request: &str, reuse: bool, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<Conn> = None;
    let mut sent = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if conn.as_ref().is_some_and(Conn::peer_closed) {
            conn = None;
        }
        sent += 1;
        let c = match conn {
            Some(ref mut c) => c,
            None => match Conn::try_connect(addr) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tally
                        .failures
                        .push(format!("request {sent}: connecting: {e}"));
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        let outcome = match c.try_send(request.as_bytes()) {
            Ok(()) => c.try_read_response(),
            Err(e) => Err(format!("sending: {e}")),
        };
        match outcome {
            Ok(resp) if resp.status == 200 => {
                tally.ok += 1;
                if let Some(pid) = pid_of(&resp.text()) {
                    tally.pids.insert(pid);
                }
                if !reuse || resp.connection_has("close") {
                    conn = None;
                }
            }
            Ok(resp) => {
                tally
                    .failures
                    .push(format!("request {sent}: got {:?}", resp.raw_head));
                conn = None;
            }
            Err(e) => {
                tally.failures.push(format!("request {sent}: {e}"));
                conn = None;
            }
        }
    }
    tally
}

/// `N` in a body `build vN pid N`.
fn pid_of(text: &str) -> Option<u32> {
    let rest = &text[text.find("pid ")? + 4..];
    rest.split_whitespace().next()?.parse().ok()
}
