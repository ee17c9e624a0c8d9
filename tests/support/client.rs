//! A raw HTTP/1.1 client: the test writes exact request bytes and sees the
//! exact framing of each response (Content-Length or chunked, each chunk,
//! whether the body ended properly or the connection closed first).
//!
//! A [`Conn`] buffers what it reads, so pipelined responses that arrive in
//! one segment are split correctly. Every read has a timeout
//! ([`crate::TIMEOUT`]); running into it panics with what arrived so far.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::TIMEOUT;

/// A parsed response, or the head of one when the body is read piecewise.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// `HTTP/1.1`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// In order, names as sent, values without surrounding whitespace.
    pub headers: Vec<(String, String)>,
    /// The de-chunked body.
    pub body: Vec<u8>,
    /// The body used chunked transfer coding.
    pub chunked: bool,
    /// Each chunk's data, as framed on the wire.
    pub chunks: Vec<Vec<u8>>,
    pub trailers: Vec<(String, String)>,
    /// The framing ended as announced (all Content-Length bytes, the
    /// zero-size chunk, or end of file for a close-delimited body); false when
    /// the connection closed first.
    pub complete: bool,
    /// The status line and header lines, up to and including the empty line.
    pub raw_head: String,
    /// Every byte this response occupied on the wire.
    pub raw: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `Connection` header lists `token` (case-insensitive).
    pub fn connection_has(&self, token: &str) -> bool {
        self.header_all("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// One step of reading a chunked body.
#[derive(PartialEq, Eq)]
pub enum Chunk {
    Data(Vec<u8>),
    /// The zero-size chunk and the trailer section arrived.
    End,
    /// The connection closed before the body ended.
    Eof,
}

impl std::fmt::Debug for Chunk {
    /// Data as (lossy) text, which is what the tests send and compare.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Chunk::Data(data) => f
                .debug_tuple("Data")
                .field(&String::from_utf8_lossy(data))
                .finish(),
            Chunk::End => f.write_str("End"),
            Chunk::Eof => f.write_str("Eof"),
        }
    }
}

/// A client connection with its receive buffer.
pub struct Conn {
    stream: TcpStream,
    /// Received but not yet consumed.
    buf: Vec<u8>,
    /// What the response being read consumed so far.
    raw: Vec<u8>,
    /// The peer reset the connection (treated as end of file).
    pub reset: bool,
}

impl Conn {
    /// Connects with read and write timeouts of [`TIMEOUT`].
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        Conn::from_stream(stream)
    }

    /// A connection opened some other way (from a chosen local address,
    /// say), with the same timeouts and options as [`Conn::connect`].
    pub fn from_stream(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            raw: Vec::new(),
            reset: false,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }

    /// Writes all of `bytes` (one write call where the kernel allows).
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .unwrap_or_else(|e| panic!("sending {:?}: {e}", String::from_utf8_lossy(bytes)));
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads more into the buffer; 0 at end of file (or reset).
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    self.reset = true;
                    return 0;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "no data within {TIMEOUT:?}; this response so far: {:?}, unread: {:?}",
                        String::from_utf8_lossy(&self.raw),
                        String::from_utf8_lossy(&self.buf)
                    )
                }
                Err(e) => panic!("reading: {e}"),
            }
        }
    }

    /// Removes `n` buffered bytes, recording them as part of the response.
    fn consume(&mut self, n: usize) -> Vec<u8> {
        let taken: Vec<u8> = self.buf.drain(..n).collect();
        self.raw.extend_from_slice(&taken);
        taken
    }

    /// The next line without its CRLF; `None` at end of file.
    fn read_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let mut line = self.consume(at + 2);
                line.truncate(at);
                return Some(line);
            }
            if self.fill() == 0 {
                return None;
            }
        }
    }

    /// Up to `n` bytes; fewer only at end of file.
    fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if self.fill() == 0 {
                break;
            }
        }
        let n = n.min(self.buf.len());
        self.consume(n)
    }

    /// Reads a status line and headers, leaving the body unread. Panics if
    /// the connection closes before a whole head arrived.
    pub fn read_head(&mut self) -> Response {
        self.raw.clear();
        let end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                self.buf.len() < 1024 * 1024,
                "response head over 1 MiB: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            if self.fill() == 0 {
                panic!(
                    "connection closed{} before a complete response head; received: {:?}",
                    if self.reset { " (reset)" } else { "" },
                    String::from_utf8_lossy(&self.buf)
                );
            }
        };
        let head = self.consume(end);
        let raw_head = String::from_utf8(head)
            .unwrap_or_else(|e| panic!("response head is not UTF-8: {:?}", e.as_bytes()));
        parse_head(&raw_head)
    }

    /// Reads one whole response. The body is framed as the head says:
    /// none for 1xx/204/304, chunked, Content-Length, or until end of file.
    pub fn read_response(&mut self) -> Response {
        let mut resp = self.read_head();
        let no_body = resp.status < 200 || resp.status == 204 || resp.status == 304;
        if no_body {
            resp.complete = true;
        } else if is_chunked(&resp) {
            resp.chunked = true;
            loop {
                match self.read_chunk() {
                    Chunk::Data(data) => {
                        resp.body.extend_from_slice(&data);
                        resp.chunks.push(data);
                    }
                    Chunk::End => {
                        resp.complete = true;
                        break;
                    }
                    Chunk::Eof => break,
                }
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length in {:?}", resp.raw_head));
            resp.body = self.read_bytes(len);
            resp.complete = resp.body.len() == len;
        } else {
            resp.body = self.read_to_end();
            resp.complete = true;
        }
        self.finish(resp)
    }

    /// Reads the response to a HEAD request: a head and no body whatever
    /// the headers announce.
    pub fn read_head_response(&mut self) -> Response {
        let mut resp = self.read_head();
        resp.complete = true;
        self.finish(resp)
    }

    fn finish(&mut self, mut resp: Response) -> Response {
        resp.raw = std::mem::take(&mut self.raw);
        resp
    }

    /// Reads the next chunk of a chunked body whose head was read with
    /// [`Conn::read_head`].
    pub fn read_chunk(&mut self) -> Chunk {
        let Some(line) = self.read_line() else {
            return Chunk::Eof;
        };
        let line = String::from_utf8_lossy(&line).into_owned();
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .unwrap_or_else(|_| panic!("bad chunk-size line {line:?}"));
        if size == 0 {
            // The trailer section, up to the empty line.
            loop {
                match self.read_line() {
                    Some(l) if l.is_empty() => return Chunk::End,
                    Some(_) => {}
                    None => return Chunk::Eof,
                }
            }
        }
        let data = self.read_bytes(size);
        if data.len() < size {
            return Chunk::Eof;
        }
        match self.read_line() {
            Some(l) if l.is_empty() => Chunk::Data(data),
            Some(l) => panic!(
                "chunk of {size} bytes not followed by CRLF but {:?}",
                String::from_utf8_lossy(&l)
            ),
            None => Chunk::Eof,
        }
    }

    /// Everything until the server closes the connection.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() > 0 {}
        let n = self.buf.len();
        self.consume(n)
    }

    /// Waits (up to `timeout`) for the server to close the connection;
    /// panics if it sends anything or stays open. Returns the wait.
    pub fn expect_closed(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut byte = [0u8; 1];
        let result = self.stream.read(&mut byte);
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        match result {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => self.reset = true,
            Ok(_) => panic!(
                "expected the server to close, got data: {:?}",
                byte[0] as char
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server left the connection open for {timeout:?}")
            }
            Err(e) => panic!("reading: {e}"),
        }
        started.elapsed()
    }
}

/// Byte-at-a-time sending and non-panicking waits, for the conformance
/// corpus (`tests/corpus.rs`), which must report every case's outcome
/// instead of stopping at the first surprise.
impl Conn {
    /// Writes `bytes` with one write call per byte (TCP_NODELAY is on, so
    /// each byte tends to travel in a segment of its own), sleeping `pause`
    /// after every `every` bytes so the server also sees them arrive apart.
    /// Stops at the first error, e.g. when the server already answered and
    /// closed (EPIPE, ECONNRESET).
    pub fn send_bytewise(&mut self, bytes: &[u8], every: usize, pause: Duration) -> io::Result<()> {
        for (i, byte) in bytes.iter().enumerate() {
            self.try_send(std::slice::from_ref(byte))?;
            if every > 0 && i % every == every - 1 {
                std::thread::sleep(pause);
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for the next response to begin. `Ok(true)` once
    /// a byte of it is buffered, `Ok(false)` when the server closed (or reset)
    /// the connection with nothing left to read, an error of kind
    /// `TimedOut` when neither happened in time.
    pub fn await_data(&mut self, timeout: Duration) -> io::Result<bool> {
        if !self.buf.is_empty() {
            return Ok(true);
        }
        self.stream.set_read_timeout(Some(timeout))?;
        let mut chunk = [0u8; 16 * 1024];
        let result = loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    break Ok(n > 0);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    self.reset = true;
                    break Ok(false);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break Err(io::Error::new(
                        ErrorKind::TimedOut,
                        format!("nothing received within {timeout:?}"),
                    ));
                }
                Err(e) => break Err(e),
            }
        };
        self.stream.set_read_timeout(Some(TIMEOUT))?;
        result
    }

    /// Bytes received but not consumed by any response read so far.
    pub fn unread(&self) -> &[u8] {
        &self.buf
    }
}

/// Non-panicking use, for load generators (`tests/process.rs`) that count
/// failed requests instead of stopping at the first one.
impl Conn {
    /// [`Conn::connect`], returning the error instead of panicking.
    pub fn try_connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            raw: Vec::new(),
            reset: false,
        })
    }

    /// [`Conn::read_response`] for a response that must arrive whole:
    /// `Err` says what happened instead (closed or reset before or in the
    /// middle of the response, nothing within [`TIMEOUT`], a malformed
    /// head). After an `Err` the connection is not usable any more.
    pub fn try_read_response(&mut self) -> Result<Response, String> {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.read_response()));
        match outcome {
            Ok(resp) if resp.complete => Ok(resp),
            Ok(resp) => Err(format!(
                "the connection was {} in the middle of the response: {:?}",
                if self.reset { "reset" } else { "closed" },
                String::from_utf8_lossy(&resp.raw)
            )),
            Err(payload) => Err(payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "reading the response panicked".to_owned())),
        }
    }

    /// Whether the server already closed (or reset) the connection, without
    /// waiting: for a client about to reuse an idle keep-alive connection.
    /// Unread data counts as open.
    pub fn peer_closed(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let peeked = self.stream.peek(&mut [0u8; 1]);
        let restored = self.stream.set_nonblocking(false);
        match peeked {
            _ if restored.is_err() => true,
            Ok(n) => n == 0,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn is_chunked(resp: &Response) -> bool {
    resp.header_all("transfer-encoding")
        .iter()
        .flat_map(|v| v.split(','))
        .next_back()
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

fn parse_head(raw_head: &str) -> Response {
    let mut lines = raw_head.trim_end_matches("\r\n").split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let (version, rest) = status_line.split_once(' ').unwrap_or_default();
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let status: u16 = match code.parse() {
        Ok(status) if code.len() == 3 && version.starts_with("HTTP/") => status,
        _ => panic!("malformed status line {status_line:?} in {raw_head:?}"),
    };
    let headers = lines
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("malformed header line {line:?} in {raw_head:?}"));
            (name.to_owned(), value.trim_matches([' ', '\t']).to_owned())
        })
        .collect();
    Response {
        version: version.to_owned(),
        status,
        reason: reason.to_owned(),
        headers,
        raw_head: raw_head.to_owned(),
        ..Response::default()
    }
}

/// Sends `request` on a new connection and reads one response.
pub fn request(addr: SocketAddr, request: &[u8]) -> Response {
    let mut conn = Conn::connect(addr);
    conn.send(request);
    conn.read_response()
}

/// `GET target` on a new connection.
pub fn get(addr: SocketAddr, target: &str) -> Response {
    request(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

/// `value` is an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn is_imf_fixdate(value: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    value.is_ascii()
        && b.len() == 29
        && DAYS.contains(&&value[0..3])
        && &value[3..5] == ", "
        && digits(5..7)
        && b[7] == b' '
        && MONTHS.contains(&&value[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && &value[25..] == " GMT"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A connection to a peer that sends `bytes` and closes.
    fn peer_sending(bytes: &'static [u8]) -> Conn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            socket.write_all(bytes).unwrap();
        });
        Conn::connect(addr)
    }

    #[test]
    fn splits_pipelined_responses() {
        let mut conn = peer_sending(
            b"HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
              HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nde\r\n1\r\nf\r\n0\r\nT: 1\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n\
              HTTP/1.0 404 \r\n\r\nuntil eof",
        );
        let interim = conn.read_response();
        assert_eq!((interim.status, interim.reason.as_str()), (100, "Continue"));
        let sized = conn.read_response();
        assert_eq!((sized.body.as_slice(), sized.complete), (&b"abc"[..], true));
        assert_eq!(
            sized.raw,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        );
        let chunked = conn.read_response();
        assert!(chunked.chunked && chunked.complete);
        assert_eq!(chunked.chunks, [b"de".to_vec(), b"f".to_vec()]);
        assert_eq!(chunked.body, b"def");
        let head = conn.read_head_response();
        assert_eq!(head.header("CONTENT-LENGTH"), Some("13"));
        assert!(head.body.is_empty());
        let eof = conn.read_response();
        assert_eq!((eof.status, eof.reason.as_str()), (404, ""));
        assert_eq!(eof.body, b"until eof");
    }

    #[test]
    fn reports_a_cut_chunked_body() {
        let mut conn =
            peer_sending(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n");
        let resp = conn.read_response();
        assert_eq!(resp.chunks, [b"partial".to_vec()]);
        assert!(!resp.complete);
    }

    #[test]
    fn sees_the_peer_close() {
        let mut conn = peer_sending(b"");
        conn.expect_closed(Duration::from_secs(3));
    }

    #[test]
    fn recognises_imf_fixdates() {
        assert!(is_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(!is_imf_fixdate("Sunday, 06-Nov-94 08:49:37 GMT"));
        assert!(!is_imf_fixdate("Sun, 06 Nov 1994 08:49:37 UTC"));
        assert!(!is_imf_fixdate("Sun,  6 Nov 1994 08:49:37 GMT"));
    }
}
