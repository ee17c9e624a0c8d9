//! `ResponseHead::set` and `encode_head` with an application's arbitrary
//! status and headers.
//!
//! Input: one byte for the Content-Length of `BodyFraming::Length`, then
//! length-prefixed fields (a length byte, then that many bytes): the status,
//! then header names and values in turn. A truncated field ends the list.
//!
//! Asserted: `set` accepts exactly what an independent reading of its rules
//! accepts (status "NNN reason" with NNN 200-599, token names, values
//! without CTLs, no hop-by-hop names, one Content-Length number), and
//! refuses anything with CR, LF or NUL where it would reach the wire. A
//! reused head gives the same result as a fresh one, and so does
//! `set_static` (a refused static head stays refused; a known one stays
//! what it was set with, also after a dynamic head). For an accepted head,
//! every combination of version, keep-alive, HEAD and framing encodes to
//! exactly one complete head that httparse reads back with exactly the
//! app's headers followed by the server's own (Date, Server, the framing
//! header, Connection): nothing injected, nothing lost.
#![no_main]

use host::http1::parse::Version;
use host::http1::response::{encode_head, status_forbids_body, BodyFraming, ResponseHead, SERVER};
use host_fuzz::only_crlf_line_ends;
use libfuzzer_sys::fuzz_target;

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
    "trailer",
];

fuzz_target!(|data: &[u8]| {
    let Some((&length, rest)) = data.split_first() else {
        return;
    };
    let mut fields = Fields(rest);
    let Some(status) = fields.next() else {
        return;
    };
    let mut headers = Vec::new();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        headers.push((name, value));
    }

    let mut head = ResponseHead::new();
    let accepted = head.set(status, headers.iter().copied()).is_ok();
    assert_eq!(
        accepted,
        valid(status, &headers),
        "set() and the rules disagree on {:?} {headers:?}",
        String::from_utf8_lossy(status)
    );
    // A head reused from an earlier response holds nothing of it.
    let mut reused = ResponseHead::new();
    reused
        .set(
            b"201 Created",
            [(&b"X-Old"[..], &b"1"[..]), (b"Date", b"x")],
        )
        .unwrap();
    assert_eq!(
        reused.set(status, headers.iter().copied()).is_ok(),
        accepted
    );
    assert_eq!(format!("{reused:?}"), format!("{head:?}"));
    // The same through `set_static` (ABI 1.2's heads, known by their
    // address): the first sight judges like `set`, a refused head is
    // refused every time (it is never taken as known), and a known head is
    // the one it was set with, also after a dynamic head came between.
    let mut fixed = ResponseHead::new();
    fixed
        .set_static(2, b"201 Created", [(&b"X-Old"[..], &b"1"[..])])
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            fixed.set_static(1, status, headers.iter().copied()).is_ok(),
            accepted
        );
    }
    if !accepted {
        return;
    }
    assert_eq!(format!("{fixed:?}"), format!("{head:?}"));
    fixed
        .set(b"202 Accepted", [(&b"X-Between"[..], &b"1"[..])])
        .unwrap();
    fixed
        .set_static(1, status, headers.iter().copied())
        .unwrap();
    assert_eq!(format!("{fixed:?}"), format!("{head:?}"));
    for version in [Version::Http10, Version::Http11] {
        for keep_alive in [false, true] {
            for is_head in [false, true] {
                for framing in [
                    BodyFraming::Length(head.content_length().unwrap_or(u64::from(length))),
                    BodyFraming::Chunked,
                    BodyFraming::CloseDelimited,
                ] {
                    let case = Case {
                        version,
                        keep_alive,
                        is_head,
                        framing,
                    };
                    // Both heads keep their last encoding: every case
                    // here changes what it depended on, so a stale copy
                    // would show.
                    check_encoding(&mut head, status, &headers, &case);
                    check_encoding(&mut reused, status, &headers, &case);
                    check_encoding(&mut fixed, status, &headers, &case);
                }
            }
        }
    }
});

/// Length-prefixed byte strings.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, rest) = self.0.split_first()?;
        let len = usize::from(len);
        if rest.len() < len {
            return None;
        }
        let (field, rest) = rest.split_at(len);
        self.0 = rest;
        Some(field)
    }
}

#[derive(Debug)]
struct Case {
    version: Version,
    keep_alive: bool,
    is_head: bool,
    framing: BodyFraming,
}

/// `set`'s rules, read independently from its documentation.
fn valid(status: &[u8], headers: &[(&[u8], &[u8])]) -> bool {
    let text_ok = |s: &[u8]| s.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    let status_ok = status.len() >= 4
        && status[..3].iter().all(u8::is_ascii_digit)
        && (b'2'..=b'5').contains(&status[0])
        && status[3] == b' '
        && text_ok(&status[4..]);
    let token = |s: &[u8]| {
        !s.is_empty()
            && s.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let mut length: Option<u64> = None;
    for &(name, value) in headers {
        if !token(name) || !text_ok(value) {
            return false;
        }
        if HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
        {
            return false;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = match std::str::from_utf8(value) {
                Ok(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
                _ => None,
            };
            match (n, length) {
                (None, _) => return false,
                (Some(n), Some(prev)) if n != prev => return false,
                (n, _) => length = n,
            }
        }
    }
    status_ok
}

fn check_encoding(head: &mut ResponseHead, status: &[u8], app: &[(&[u8], &[u8])], case: &Case) {
    let mut out = Vec::new();
    encode_head(
        &mut out,
        case.version,
        head,
        case.framing,
        case.keep_alive,
        case.is_head,
    );
    // One head: CRLF line ends only, and the first empty line is the end.
    assert!(only_crlf_line_ends(&out), "bare CR or LF in {case:?}");
    let end = out.windows(4).position(|w| w == b"\r\n\r\n");
    assert_eq!(end, Some(out.len() - 4), "the head ends early in {case:?}");
    let mut line = b"HTTP/1.1 ".to_vec();
    line.extend_from_slice(status);
    line.extend_from_slice(b"\r\n");
    assert!(out.starts_with(&line), "status line in {case:?}");

    let mut storage = vec![httparse::EMPTY_HEADER; app.len() + 8];
    let mut parsed = httparse::Response::new(&mut storage);
    match parsed.parse(&out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "{case:?}"),
        other => panic!(
            "httparse: {other:?} for {case:?}: {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
    assert_eq!(parsed.code, Some(head.status()));
    let got: Vec<(Vec<u8>, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
        .collect();
    let want = expected_headers(head, app, case, &got);
    assert_eq!(got, want, "headers of {case:?}");
}

/// The app's headers (Content-Length aside, which the framing decides),
/// then Date and Server unless the app gave them, the framing header and
/// Connection, as `encode_head` documents. Date's value is taken from
/// `got` (it is the clock's) once its shape is checked.
fn expected_headers(
    head: &ResponseHead,
    app: &[(&[u8], &[u8])],
    case: &Case,
    got: &[(Vec<u8>, Vec<u8>)],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let line = |n: &[u8], v: &[u8]| (n.to_vec(), v.to_vec());
    let has = |name: &str| {
        app.iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
    };
    let mut want: Vec<_> = app
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(b"content-length"))
        // httparse drops the OWS around a value.
        .map(|&(n, v)| line(n, trim_ows(v)))
        .collect();
    if !has("date") {
        let date = got.get(want.len()).map_or(&[][..], |(_, v)| v.as_slice());
        assert!(date.len() == 29 && date.ends_with(b" GMT"), "Date {date:?}");
        want.push(line(b"Date", date));
    }
    if !has("server") {
        want.push(line(b"Server", SERVER));
    }
    if !status_forbids_body(head.status()) {
        let length = match (case.is_head, case.framing) {
            (_, BodyFraming::Length(n)) => Some(n),
            (true, _) => head.content_length(),
            (false, BodyFraming::Chunked) => {
                want.push(line(b"Transfer-Encoding", b"chunked"));
                None
            }
            (false, BodyFraming::CloseDelimited) => None,
        };
        if let Some(n) = length {
            want.push(line(b"Content-Length", n.to_string().as_bytes()));
        }
    }
    match (case.keep_alive, case.version) {
        (false, _) => want.push(line(b"Connection", b"close")),
        (true, Version::Http10) => want.push(line(b"Connection", b"keep-alive")),
        (true, Version::Http11) => {}
    }
    want
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
