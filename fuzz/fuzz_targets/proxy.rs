//! What a proxy in front says about the client: the PROXY protocol header
//! (`net::proxy_protocol::parse`) and the forwarding headers
//! (`http1::forwarded::reported`).
//!
//! Input: byte 0 picks the part (even: PROXY, odd: headers) and seeds the
//! trust rule; the rest is the buffer, or the header lines.
//!
//! PROXY (the rest, at most 600 bytes, as it would arrive): no panic; a
//! whole header lies inside the buffer (v1: at most 107 bytes, ending in
//! CRLF); every prefix shorter than it is "not yet", every longer buffer
//! gives the same header and length (what follows is never read); a
//! refusal comes at one prefix and every longer one is refused too (it
//! never waits for bytes that cannot help); a buffer that is neither is
//! "not yet" at every prefix.
//!
//! Headers (the rest, at most 400 bytes, split into `name:value` lines at
//! LF; names that are not tokens left out, as the parser never gives one):
//! no panic; a client is named only with an address written in one of the
//! values (and a port only with its digits there), quoted-pair escapes
//! undone, and only when a forwarding header is there at all; the answer
//! does not depend on fields that are none of the headers.
#![no_main]

use std::net::IpAddr;

use host::http1::forwarded::reported;
use host::http1::parse::Field;
use host::net::proxy_protocol::{parse, Parsed, V1_MAX, V2_MAX_BODY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    if mode % 2 == 0 {
        proxy_header(&rest[..rest.len().min(600)]);
    } else {
        forwarding_headers(*mode, &rest[..rest.len().min(400)]);
    }
});

fn proxy_header(buf: &[u8]) {
    let whole = parse(buf);
    match whole {
        Ok(Parsed::Done { header, len }) => {
            assert!(len <= buf.len());
            if buf.starts_with(b"PROXY") {
                assert!(len <= V1_MAX && buf[..len].ends_with(b"\r\n"));
            } else {
                assert!(len <= 16 + V2_MAX_BODY);
            }
            for end in 0..len {
                assert_eq!(parse(&buf[..end]), Ok(Parsed::Partial), "prefix of {end}");
            }
            for end in len..=buf.len() {
                assert_eq!(parse(&buf[..end]), Ok(Parsed::Done { header, len }));
            }
        }
        Err(_) => {
            let at = (0..=buf.len())
                .find(|&end| parse(&buf[..end]).is_err())
                .expect("the whole buffer is refused");
            for end in 0..at {
                assert_eq!(parse(&buf[..end]), Ok(Parsed::Partial), "prefix of {end}");
            }
            for end in at..=buf.len() {
                assert!(parse(&buf[..end]).is_err(), "refused at {at}, not at {end}");
            }
        }
        Ok(Parsed::Partial) => {
            for end in 0..buf.len() {
                assert_eq!(parse(&buf[..end]), Ok(Parsed::Partial), "prefix of {end}");
            }
        }
    }
}

fn forwarding_headers(mode: u8, rest: &[u8]) {
    let fields: Vec<Field<'_>> = rest
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = &line[..colon];
            let token = !name.is_empty()
                && name
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            token.then(|| Field {
                name,
                value: &line[colon + 1..],
            })
        })
        .collect();
    // Trusted: addresses whose last byte has the bit `mode` picks.
    let bit = 1u8 << (mode >> 5);
    let trusted = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.octets()[3] & bit != 0,
        IpAddr::V6(v6) => v6.octets()[15] & bit != 0,
    };
    let said = reported(&fields, trusted);
    let names = [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-ssl",
        "x-forwarded-protocol",
    ];
    let is_one = |f: &Field<'_>| names.iter().any(|n| f.name.eq_ignore_ascii_case(n.as_bytes()));
    assert_eq!(said.is_some(), fields.iter().any(is_one));
    let only: Vec<Field<'_>> = fields.iter().copied().filter(is_one).collect();
    assert_eq!(reported(&only, trusted), said, "fields that are none of them changed it");
    let Some((ip, port)) = said.and_then(|s| s.client) else {
        return;
    };
    // Each value as written, and with quoted-pair escapes undone.
    let values: Vec<Vec<u8>> = only
        .iter()
        .flat_map(|f| [f.value.to_vec(), unescaped(f.value)])
        .collect();
    let written = values.iter().any(|v| {
        (0..v.len()).any(|i| {
            (i..=v.len()).any(|j| {
                std::str::from_utf8(&v[i..j])
                    .ok()
                    .and_then(|t| t.parse::<IpAddr>().ok())
                    .is_some_and(|parsed| parsed.to_canonical() == ip)
            })
        })
    });
    assert!(written, "{ip} is in no value");
    if let Some(port) = port {
        let digits = port.to_string();
        assert!(
            values
                .iter()
                .any(|v| v.windows(digits.len()).any(|w| w == digits.as_bytes())),
            "port {port} is in no value"
        );
    }
}

/// `value` with each backslash dropped and the byte after it kept.
fn unescaped(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut escaped = false;
    for &b in value {
        if b == b'\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(b);
    }
    out
}
