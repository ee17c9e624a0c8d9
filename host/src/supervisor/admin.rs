//! The admin endpoint (`--admin-bind`): `/metrics`, `/healthz`, `/readyz`
//! and `/status`, answered by the master itself.
//!
//! It runs inside the master's own poll loop, not on a thread of its own:
//! the master forks workers, and a thread that held a lock at the fork
//! (the allocator's, stderr's while logging) would leave it held forever
//! in the child. The master stays single-threaded, so every fork is of a
//! consistent process. Its sockets are nonblocking and each connection is
//! a small state machine (read a head, write the answer, close) with a
//! deadline and a size cap, so a slow or hostile admin client never stalls
//! the master: the loop only ever does what a socket is ready for. The
//! workers never see these sockets (a forked child closes its copies), so
//! the endpoint answers while every app thread is busy, while a reload
//! boots its canary, and while the server drains.
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::net::listener::{bind_all, Bind, BindOptions, Listener, SocketFile};

/// Largest request head read (431 beyond).
const HEAD_MAX: usize = 8 * 1024;
/// Admin connections served at once; more wait in the backlog.
const CONNS_MAX: usize = 32;
/// How long a connection may take, from accept to the last byte out.
const DEADLINE: Duration = Duration::from_secs(5);

/// The listening sockets and the connections being served.
pub struct Admin {
    spec: String,
    listeners: Vec<Listener>,
    _files: Vec<SocketFile>,
    conns: Vec<Conn>,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }
}

/// Where one connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the request head.
    Reading,
    /// Writing the answer (`out` from `sent` on).
    Writing,
    /// Answered and shut down for writing: what the client still sends is
    /// dropped until it closes (closing with unread input would reset the
    /// connection, and could destroy the answer before it is read).
    Draining,
}

struct Conn {
    stream: Stream,
    state: State,
    head: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    deadline: Instant,
}

/// What the master is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics {
        /// OpenMetrics asked for (Accept: application/openmetrics-text).
        open: bool,
    },
    Healthz,
    Readyz,
    Status,
}

/// The master's answer: status code, content type, body.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    pub fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_string(),
        }
    }
}

impl Admin {
    /// Binds `spec` (the forms `-b` takes). The error is one line.
    pub fn bind(spec: &str) -> Result<Admin, String> {
        let binds = Bind::parse(spec).map_err(|e| format!("--admin-bind: {e}"))?;
        let bound = bind_all(
            &binds,
            &BindOptions {
                backlog: 64,
                ..BindOptions::default()
            },
        )
        .map_err(|e| format!("--admin-bind: {e}"))?;
        for l in &bound.listeners {
            let r = match l {
                Listener::Tcp(l) => l.set_nonblocking(true),
                Listener::Unix(l) => l.set_nonblocking(true),
            };
            r.map_err(|e| format!("--admin-bind {spec}: {e}"))?;
        }
        Ok(Admin {
            spec: spec.to_string(),
            listeners: bound.listeners,
            _files: bound.files,
            conns: Vec::new(),
        })
    }

    pub fn describe(&self) -> String {
        let all: Vec<String> = self.listeners.iter().map(Listener::describe).collect();
        if all.is_empty() {
            self.spec.clone()
        } else {
            all.join(", ")
        }
    }

    /// What the master's poll waits for on these sockets.
    pub fn pollfds(&self, fds: &mut Vec<libc::pollfd>) {
        if self.conns.len() < CONNS_MAX {
            for l in &self.listeners {
                let fd = match l {
                    Listener::Tcp(l) => l.as_raw_fd(),
                    Listener::Unix(l) => l.as_raw_fd(),
                };
                fds.push(pollfd(fd, libc::POLLIN));
            }
        }
        for c in &self.conns {
            let events = match c.state {
                State::Reading | State::Draining => libc::POLLIN,
                State::Writing => libc::POLLOUT,
            };
            fds.push(pollfd(c.stream.fd(), events));
        }
    }

    /// Does what every socket is ready for (nothing blocks): accepts, reads
    /// heads, answers them with `answer`, writes, closes; drops connections
    /// past their deadline.
    pub fn serve(&mut self, mut answer: impl FnMut(Route) -> Answer) {
        let now = Instant::now();
        self.accept(now);
        for c in &mut self.conns {
            if c.state == State::Reading {
                c.read_head(&mut answer);
            }
            if c.state == State::Writing {
                c.write();
            }
            if c.state == State::Draining {
                c.drain();
            }
        }
        self.conns.retain(|c| !c.closed() && now < c.deadline);
    }

    fn accept(&mut self, now: Instant) {
        for l in &self.listeners {
            while self.conns.len() < CONNS_MAX {
                let stream = match l {
                    Listener::Tcp(l) => l.accept().map(|(s, _)| {
                        let _ = s.set_nodelay(true);
                        s.set_nonblocking(true).map(|()| Stream::Tcp(s))
                    }),
                    Listener::Unix(l) => l
                        .accept()
                        .map(|(s, _)| s.set_nonblocking(true).map(|()| Stream::Unix(s))),
                };
                match stream {
                    Ok(Ok(stream)) => self.conns.push(Conn {
                        stream,
                        state: State::Reading,
                        head: Vec::new(),
                        out: Vec::new(),
                        sent: 0,
                        deadline: now + DEADLINE,
                    }),
                    Ok(Err(e)) => tracing::debug!("admin: {e}"),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // EMFILE and the like: tried again next turn.
                        tracing::warn!("admin: accept failed: {e}");
                        break;
                    }
                }
            }
        }
    }
}

/// A `pollfd` for `fd`.
fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// A closed connection: its state machine is done with it.
const CLOSED: usize = usize::MAX;

impl Conn {
    fn closed(&self) -> bool {
        self.sent == CLOSED
    }

    fn close(&mut self) {
        self.sent = CLOSED;
    }

    fn read_head(&mut self, answer: &mut impl FnMut(Route) -> Answer) {
        let mut buf = [0u8; 2048];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return self.close(),
                Ok(n) => {
                    self.head.extend_from_slice(&buf[..n]);
                    let too_large = (Answer::text(431, "request head too large\n"), false);
                    match find(&self.head, b"\r\n\r\n") {
                        Some(end) if end + 4 <= HEAD_MAX => {
                            let reply = respond(&self.head[..end + 2], answer);
                            return self.reply(reply);
                        }
                        Some(_) => return self.reply(too_large),
                        None if self.head.len() > HEAD_MAX => return self.reply(too_large),
                        None => {}
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(),
            }
        }
    }

    fn reply(&mut self, (answer, head_only): (Answer, bool)) {
        self.out = encode(&answer, head_only);
        self.sent = 0;
        self.state = State::Writing;
        self.head = Vec::new();
    }

    fn write(&mut self) {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(),
            }
        }
        self.stream.shutdown_write();
        self.out = Vec::new();
        self.state = State::Draining;
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 2048];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return self.close(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The answer to one request head (`head`: up to and including the last
/// header line's CRLF), and whether it is to a HEAD request.
fn respond(head: &[u8], answer: &mut impl FnMut(Route) -> Answer) -> (Answer, bool) {
    let bad = |why: &str| (Answer::text(400, &format!("bad request: {why}\n")), false);
    let Ok(text) = std::str::from_utf8(head) else {
        return bad("not text");
    };
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad("malformed request line");
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return bad("not HTTP/1.x");
    }
    let mut accept = String::new();
    for field in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = field.split_once(':') else {
            return bad("malformed header field");
        };
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
            return bad("malformed header name");
        }
        if name.eq_ignore_ascii_case("accept") {
            accept.push_str(value);
            accept.push(',');
        }
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        m if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) => {
            return bad("malformed method")
        }
        _ => {
            return (
                Answer::text(405, "method not allowed: GET or HEAD\n"),
                false,
            )
        }
    };
    let path = target.split('?').next().unwrap_or("");
    let route = match path {
        "/metrics" => Route::Metrics {
            open: accept.contains("application/openmetrics-text"),
        },
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/status" => Route::Status,
        _ => {
            return (
                Answer::text(404, "not found: /metrics, /healthz, /readyz or /status\n"),
                head_only,
            )
        }
    };
    (answer(route), head_only)
}

fn encode(a: &Answer, head_only: bool) -> Vec<u8> {
    let reason = match a.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    };
    // A 405 names the methods there are (RFC 9110 §15.5.6).
    let allow = if a.status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        a.status,
        a.content_type,
        a.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(a.body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(head: &str) -> (u16, bool, Option<Route>) {
        let mut asked = None;
        let (a, head_only) = respond(head.as_bytes(), &mut |r| {
            asked = Some(r);
            Answer::text(200, "ok")
        });
        (a.status, head_only, asked)
    }

    #[test]
    fn routes_methods_and_bad_heads() {
        assert_eq!(
            ask("GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            (200, false, Some(Route::Metrics { open: false }))
        );
        assert_eq!(
            ask("GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n"),
            (200, false, Some(Route::Metrics { open: true }))
        );
        assert_eq!(
            ask("HEAD /healthz?x=1 HTTP/1.0\r\n"),
            (200, true, Some(Route::Healthz))
        );
        assert_eq!(ask("GET /nope HTTP/1.1\r\n").0, 404);
        assert_eq!(ask("POST /metrics HTTP/1.1\r\n").0, 405);
        assert_eq!(ask("GET /metrics\r\n").0, 400);
        assert_eq!(ask("GET /metrics HTTP/2\r\n").0, 400);
        assert_eq!(ask("GET /metrics HTTP/1.1\r\nno colon\r\n").0, 400);
        assert_eq!(ask("get /metrics HTTP/1.1\r\n").0, 400);
        let head = encode(&Answer::text(200, "body"), true);
        assert!(String::from_utf8(head).unwrap().ends_with(
            "Content-Length: 4\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
    }
}
