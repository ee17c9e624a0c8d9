//! The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`), versions 1
//! (a text line) and 2 (binary): the header a layer-4 proxy sends first
//! on a connection to say which client it relays, so that the client's
//! address survives the proxy without touching the HTTP bytes.
//!
//! `parse` is handed the connection's buffer as it grows (the event loop
//! reads a `--proxy-allow-ips` peer's first bytes into the same buffer
//! its HTTP head then arrives in) and answers "not yet", the header and
//! its length (what follows it is HTTP, left where it is), or a refusal.
//! It refuses as soon as the bytes cannot become a valid header (a plain
//! HTTP request is refused on its first byte), never reads past the
//! header's end, and waits for a header that comes in pieces: the
//! specification tells senders to send it at once, but TCP does not
//! promise it arrives so (the event loop's header timeout bounds the
//! wait).
//!
//! Kept: the relayed client and the address it connected to (TCP over
//! IPv4 or IPv6), and whether it came over TLS (version 2's PP2_TYPE_SSL
//! with PP2_CLIENT_SSL, as HAProxy's `send-proxy-v2-ssl` sends it). A
//! header that relays nothing we can use (v1 `UNKNOWN`; v2 `LOCAL`, a proxy
//! checking its server's health; v2 `AF_UNSPEC` or `AF_UNIX`) is valid,
//! and the connection's own endpoints stand, as the specification asks.
//! Other TLVs are skipped; one that overruns the header refuses it.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 1's longest line, CRLF included (the specification's worst case:
/// `PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const V1_MAX: usize = 107;
/// The most version 2 may say after its 16 fixed bytes. The format allows
/// 64 KiB; every real sender says far less (HAProxy with every SSL field,
/// a unique id and the authority, a few hundred bytes), and a connection
/// still waiting for its header should not hold 64 KiB of them.
pub const V2_MAX_BODY: usize = 4096;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What a whole header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub source: Source,
    /// The client's connection to the proxy was TLS (v2 only).
    pub tls: bool,
}

/// Whose connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The proxy relays `client`, which connected to `server` (the proxy's
    /// own listening address, for SERVER_NAME/SERVER_PORT).
    Relayed {
        client: SocketAddr,
        server: SocketAddr,
    },
    /// The header names no relayed connection (v1 UNKNOWN, v2 LOCAL,
    /// AF_UNSPEC or AF_UNIX): the connection's own endpoints stand.
    Own,
}

/// What the buffer holds so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A valid start of a header: read more.
    Partial,
    /// A whole header, `len` bytes long; the HTTP bytes start after it.
    Done { header: Header, len: usize },
}

/// Why a connection that had to start with a PROXY header is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Reads a header from the start of `buf`; see the module's comment.
pub fn parse(buf: &[u8]) -> Result<Parsed, Refused> {
    let sig = V2_SIGNATURE.len().min(buf.len());
    if buf[..sig] == V2_SIGNATURE[..sig] && !buf.is_empty() {
        return v2(buf);
    }
    let pre = V1_PREFIX.len().min(buf.len());
    if buf[..pre] == V1_PREFIX[..pre] {
        return if buf.is_empty() {
            Ok(Parsed::Partial)
        } else {
            v1(buf)
        };
    }
    Err(Refused("the connection does not start with a PROXY header"))
}

// --- version 1 ------------------------------------------------------------

fn v1(buf: &[u8]) -> Result<Parsed, Refused> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        // Not whole yet. What is here must still be able to become a line:
        // a CR only as the last byte, and room left for the CRLF.
        if window.len() >= V1_MAX {
            return Err(Refused("PROXY v1 line longer than 107 bytes"));
        }
        if window[..window.len() - 1].contains(&b'\r') {
            return Err(Refused("PROXY v1 line has a CR without LF"));
        }
        return Ok(Parsed::Partial);
    };
    let line = match window[..lf].strip_suffix(b"\r") {
        Some(line) if !line.contains(&b'\r') => line,
        _ => return Err(Refused("PROXY v1 line does not end in CRLF")),
    };
    let len = lf + 1;
    let rest = &line[V1_PREFIX.len()..];
    let mut parts = rest.split(|&b| b == b' ');
    let family = parts.next().unwrap_or_default();
    let want_v4 = match family {
        b"TCP4" => true,
        b"TCP6" => false,
        // "the receiver must ignore anything presented before the CRLF".
        b"UNKNOWN" => {
            return Ok(Parsed::Done {
                header: Header {
                    source: Source::Own,
                    tls: false,
                },
                len,
            })
        }
        _ => return Err(Refused("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Refused(
            "PROXY v1 line does not have four fields after the protocol",
        ));
    };
    let ip = |text: &[u8]| -> Result<IpAddr, Refused> {
        let ip: IpAddr = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(Refused("PROXY v1 address is not an IP address"))?;
        if ip.is_ipv4() != want_v4 {
            return Err(Refused("PROXY v1 address is not of the line's family"));
        }
        Ok(ip)
    };
    let client = SocketAddr::new(ip(src)?, v1_port(sport)?);
    let server = SocketAddr::new(ip(dst)?, v1_port(dport)?);
    Ok(Parsed::Done {
        header: Header {
            source: Source::Relayed { client, server },
            tls: false,
        },
        len,
    })
}

/// A decimal port, 0 to 65535, without leading zeros (the specification
/// forbids them: they could be read as octal).
fn v1_port(text: &[u8]) -> Result<u16, Refused> {
    let ok = !text.is_empty()
        && text.len() <= 5
        && text.iter().all(u8::is_ascii_digit)
        && (text[0] != b'0' || text.len() == 1);
    ok.then(|| std::str::from_utf8(text).ok()?.parse().ok())
        .flatten()
        .ok_or(Refused("PROXY v1 port is not a number from 0 to 65535"))
}

// --- version 2 ------------------------------------------------------------

const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;
const AF_UNSPEC: u8 = 0x0;
const AF_INET: u8 = 0x1;
const AF_INET6: u8 = 0x2;
const AF_UNIX: u8 = 0x3;
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_CLIENT_SSL: u8 = 0x01;

fn v2(buf: &[u8]) -> Result<Parsed, Refused> {
    // Each fixed byte is judged as soon as it is here.
    if let Some(&ver_cmd) = buf.get(12) {
        if ver_cmd >> 4 != 2 {
            return Err(Refused("PROXY v2 header has a version other than 2"));
        }
        if !matches!(ver_cmd & 0x0f, CMD_LOCAL | CMD_PROXY) {
            return Err(Refused("PROXY v2 header has an unknown command"));
        }
    }
    if let Some(&fam) = buf.get(13) {
        if (fam >> 4) > AF_UNIX || (fam & 0x0f) > 2 {
            return Err(Refused(
                "PROXY v2 header has an unknown family or transport",
            ));
        }
    }
    let Some(len_bytes) = buf.get(14..16) else {
        return Ok(Parsed::Partial);
    };
    let body_len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    if body_len > V2_MAX_BODY {
        return Err(Refused("PROXY v2 header longer than 4 KiB"));
    }
    let len = 16 + body_len;
    let Some(body) = buf.get(16..len) else {
        return Ok(Parsed::Partial);
    };
    let (command, fam) = (buf[12] & 0x0f, buf[13] >> 4);
    let own = Header {
        source: Source::Own,
        tls: false,
    };
    if command == CMD_LOCAL {
        // A health check by the proxy itself: address block and TLVs are
        // to be ignored.
        return Ok(Parsed::Done { header: own, len });
    }
    let (source, addr_len) = match fam {
        AF_INET => {
            let a = body
                .get(..12)
                .ok_or(Refused("PROXY v2 IPv4 address block is short"))?;
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]));
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            let source = Source::Relayed {
                client: SocketAddr::new(ip(0), port(8)),
                server: SocketAddr::new(ip(4), port(10)),
            };
            (source, 12)
        }
        AF_INET6 => {
            let a = body
                .get(..36)
                .ok_or(Refused("PROXY v2 IPv6 address block is short"))?;
            let ip = |at: usize| {
                let octets: [u8; 16] = a[at..at + 16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            let source = Source::Relayed {
                client: SocketAddr::new(ip(0), port(32)),
                server: SocketAddr::new(ip(16), port(34)),
            };
            (source, 36)
        }
        // Endpoints we cannot represent, or none: the connection's own
        // stand. A unix address block has a known size, so TLVs can still
        // be found after it; an unspecified one has none.
        AF_UNIX if body.len() >= 216 => (Source::Own, 216),
        AF_UNIX => return Err(Refused("PROXY v2 unix address block is short")),
        AF_UNSPEC => return Ok(Parsed::Done { header: own, len }),
        _ => unreachable!("families above AF_UNIX were refused"),
    };
    let tls = tls_from_tlvs(&body[addr_len..])?;
    Ok(Parsed::Done {
        header: Header { source, tls },
        len,
    })
}

/// Walks the TLVs after the address block; true if PP2_TYPE_SSL says the
/// client connected over TLS.
fn tls_from_tlvs(mut tlvs: &[u8]) -> Result<bool, Refused> {
    let mut tls = false;
    while !tlvs.is_empty() {
        let [kind, hi, lo, rest @ ..] = tlvs else {
            return Err(Refused("PROXY v2 TLV is cut short"));
        };
        let n = usize::from(u16::from_be_bytes([*hi, *lo]));
        let value = rest
            .get(..n)
            .ok_or(Refused("PROXY v2 TLV runs past the header"))?;
        if *kind == PP2_TYPE_SSL {
            // struct pp2_tlv_ssl { uint8_t client; uint32_t verify; ... }
            let client = *value.first().ok_or(Refused("PROXY v2 SSL TLV is empty"))?;
            tls |= (client & PP2_CLIENT_SSL) != 0;
        }
        tlvs = &rest[n..];
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn relayed(client: &str, server: &str) -> Source {
        Source::Relayed {
            client: sa(client),
            server: sa(server),
        }
    }

    fn done(buf: &[u8]) -> (Header, usize) {
        match parse(buf) {
            Ok(Parsed::Done { header, len }) => (header, len),
            other => panic!("{buf:?}: {other:?}"),
        }
    }

    /// A v2 header: `ver_cmd`, `fam`, then `body`.
    fn v2_bytes(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(fam);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn inet4_body() -> Vec<u8> {
        let mut b = vec![203, 0, 113, 7, 192, 0, 2, 1];
        b.extend_from_slice(&51234u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    fn inet6_body() -> Vec<u8> {
        let mut b = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        b.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&4711u16.to_be_bytes());
        b.extend_from_slice(&8443u16.to_be_bytes());
        b
    }

    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    /// Every header, whole: what it says and how long it is.
    fn valid() -> Vec<(Vec<u8>, Header)> {
        let own = Header {
            source: Source::Own,
            tls: false,
        };
        let tcp = |client: &str, server: &str, tls: bool| Header {
            source: relayed(client, server),
            tls,
        };
        let ssl = [
            tlv(0x04, b"pad"),
            tlv(
                PP2_TYPE_SSL,
                &[
                    [PP2_CLIENT_SSL, 0, 0, 0, 0].as_slice(),
                    &tlv(0x21, b"TLSv1.3"),
                ]
                .concat(),
            ),
        ]
        .concat();
        vec![
            (
                b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n".to_vec(),
                tcp("203.0.113.7:51234", "192.0.2.1:443", false),
            ),
            (
                b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 0\r\n".to_vec(),
                tcp("[2001:db8::7]:4711", "[2001:db8::1]:0", false),
            ),
            (
                b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n".to_vec(),
                tcp("255.255.255.255:65535", "255.255.255.255:65535", false),
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), own),
            (
                b"PROXY UNKNOWN ffff:f...f:ffff anything at all\r\n".to_vec(),
                own,
            ),
            (
                v2_bytes(0x21, 0x11, &inet4_body()),
                tcp("203.0.113.7:51234", "192.0.2.1:443", false),
            ),
            (
                v2_bytes(0x21, 0x21, &inet6_body()),
                tcp("[2001:db8::7]:4711", "[2001:db8::1]:8443", false),
            ),
            (
                v2_bytes(0x21, 0x11, &[inet4_body(), ssl.clone()].concat()),
                tcp("203.0.113.7:51234", "192.0.2.1:443", true),
            ),
            (
                v2_bytes(
                    0x21,
                    0x21,
                    &[inet6_body(), tlv(PP2_TYPE_SSL, &[0, 0, 0, 0, 0])].concat(),
                ),
                tcp("[2001:db8::7]:4711", "[2001:db8::1]:8443", false),
            ),
            // LOCAL: whatever the family and address block say.
            (v2_bytes(0x20, 0x00, &[]), own),
            (v2_bytes(0x20, 0x11, &inet4_body()), own),
            (v2_bytes(0x20, 0x11, b"junk"), own),
            // PROXY for an unspecified or unix connection.
            (v2_bytes(0x21, 0x00, &[]), own),
            (v2_bytes(0x21, 0x00, b"anything"), own),
            (v2_bytes(0x21, 0x31, &[0u8; 216]), own),
            // The client's TLS counts whatever its address.
            (
                v2_bytes(0x21, 0x32, &[[0u8; 216].as_slice(), &ssl].concat()),
                Header {
                    source: Source::Own,
                    tls: true,
                },
            ),
            // UDP over IPv4: addresses are still addresses.
            (
                v2_bytes(0x21, 0x12, &inet4_body()),
                tcp("203.0.113.7:51234", "192.0.2.1:443", false),
            ),
        ]
    }

    #[test]
    fn whole_headers() {
        for (bytes, header) in valid() {
            assert_eq!(done(&bytes), (header, bytes.len()), "{bytes:?}");
        }
    }

    /// What follows the header is never part of it, whatever it is: the
    /// header's length is the same with HTTP bytes (or another header)
    /// behind it.
    #[test]
    fn stops_at_the_end_of_the_header() {
        for (bytes, header) in valid() {
            for tail in [
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".as_slice(),
                b"\r\n",
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n",
                V2_SIGNATURE,
            ] {
                let buf = [bytes.as_slice(), tail].concat();
                assert_eq!(done(&buf), (header, bytes.len()), "{buf:?}");
            }
        }
    }

    /// A header arriving a byte at a time, or in any two pieces, is
    /// partial until its last byte, then the same header.
    #[test]
    fn every_split_is_partial_until_whole() {
        for (bytes, header) in valid() {
            let with_http = [bytes.as_slice(), b"GET / HTTP/1.1\r\n\r\n"].concat();
            for end in 0..bytes.len() {
                assert_eq!(
                    parse(&with_http[..end]),
                    Ok(Parsed::Partial),
                    "{:?}",
                    &bytes[..end]
                );
            }
            for end in bytes.len()..=with_http.len() {
                assert_eq!(done(&with_http[..end]), (header, bytes.len()));
            }
        }
    }

    /// Refused bytes are refused at the first byte that makes them so, and
    /// every longer buffer stays refused.
    fn refused_from(bytes: &[u8], at: usize) {
        for end in 0..at {
            assert_eq!(
                parse(&bytes[..end]),
                Ok(Parsed::Partial),
                "{:?}",
                &bytes[..end]
            );
        }
        for end in at..=bytes.len() {
            assert!(parse(&bytes[..end]).is_err(), "{:?}", &bytes[..end]);
        }
    }

    #[test]
    fn plain_http_is_refused_on_its_first_byte() {
        refused_from(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1);
        refused_from(b"PROXX", 5);
        refused_from(b"proxy TCP4", 1);
        // A TLS handshake.
        refused_from(b"\x16\x03\x01\x02\x00", 1);
        // HTTP that starts with an empty line, as RFC 9112 lets it: the v2
        // signature's first bytes, then not.
        refused_from(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 5);
    }

    #[test]
    fn malformed_v1_lines() {
        for line in [
            "PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\n",
            "PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\r\n",
            "PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\n",
            "PROXY TCP4 203.0.113.7 192.0.2.1 51234 443 1\r\n",
            "PROXY TCP4  203.0.113.7 192.0.2.1 51234 443\r\n",
            "PROXY TCP4 2001:db8::7 192.0.2.1 51234 443\r\n",
            "PROXY TCP6 203.0.113.7 2001:db8::1 51234 443\r\n",
            "PROXY TCP4 203.0.113.07 192.0.2.1 51234 443\r\n",
            "PROXY TCP4 203.0.113.7 192.0.2.1 051234 443\r\n",
            "PROXY TCP4 203.0.113.7 192.0.2.1 65536 443\r\n",
            "PROXY TCP4 203.0.113.7 192.0.2.1 -1 443\r\n",
            "PROXY TCP4 203.0.113.7 192.0.2.1 1 +443\r\n",
            "PROXY UDP4 203.0.113.7 192.0.2.1 51234 443\r\n",
            "PROXY tcp4 203.0.113.7 192.0.2.1 51234 443\r\n",
            "PROXY \r\n",
            "PROXY UNKNOWN\r\n",
        ] {
            let r = parse(line.as_bytes());
            if line == "PROXY UNKNOWN\r\n" {
                assert!(r.is_ok());
                continue;
            }
            assert!(r.is_err(), "{line:?}: {r:?}");
        }
        // No CRLF within 107 bytes: refused at the 107th.
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat();
        refused_from(&long, V1_MAX);
        // A lone CR is refused once a byte follows it.
        refused_from(b"PROXY TCP4 1.2.3.4\rX 5.6.7.8 1 2\r\n", 20);
    }

    #[test]
    fn malformed_v2_headers() {
        // Version 1 in the v2 format, an unknown command, family, transport:
        // each refused as soon as its byte is here.
        for (ver_cmd, fam) in [
            (0x11, 0x11),
            (0x22, 0x11),
            (0x2f, 0x11),
            (0x21, 0x41),
            (0x21, 0x13),
        ] {
            let bytes = v2_bytes(ver_cmd, fam, &inet4_body());
            let at = if ver_cmd == 0x21 { 14 } else { 13 };
            refused_from(&bytes, at);
        }
        // An address block shorter than its family's.
        assert!(parse(&v2_bytes(0x21, 0x11, &inet4_body()[..11])).is_err());
        assert!(parse(&v2_bytes(0x21, 0x21, &inet6_body()[..35])).is_err());
        assert!(parse(&v2_bytes(0x21, 0x31, &[0; 100])).is_err());
        // TLVs that overrun, are cut, or an empty SSL TLV.
        for tail in [
            vec![0x04, 0x00, 0x05, 1, 2],
            vec![0x04, 0x00],
            vec![0x04],
            tlv(PP2_TYPE_SSL, &[]),
        ] {
            let bytes = v2_bytes(0x21, 0x11, &[inet4_body(), tail].concat());
            assert!(parse(&bytes).is_err(), "{bytes:?}");
        }
        // Longer than the cap: refused on the length, before the body.
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11]);
        big.extend_from_slice(&((V2_MAX_BODY + 1) as u16).to_be_bytes());
        refused_from(&big, 16);
        // At the cap: waits for it all.
        let most = v2_bytes(
            0x21,
            0x11,
            &[inet4_body(), tlv(0x04, &vec![0; V2_MAX_BODY - 15])].concat(),
        );
        assert_eq!(done(&most).1, 16 + V2_MAX_BODY);
    }

    /// Random bytes behind each valid prefix: no panic, and a header is
    /// never longer than the buffer nor its format's limit.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let starts: Vec<Vec<u8>> = [
            b"PROXY ".to_vec(),
            b"PROXY TCP4 ".to_vec(),
            V2_SIGNATURE.to_vec(),
        ]
        .into_iter()
        .chain(valid().into_iter().map(|(b, _)| b[..b.len() / 2].to_vec()))
        .collect();
        for _ in 0..20_000 {
            let start = &starts[(next() % starts.len() as u64) as usize];
            let mut buf = start.clone();
            let n = (next() % 300) as usize;
            for _ in 0..n {
                let r = next();
                // Mostly bytes a header is made of, so parsing gets far.
                buf.push(match r % 4 {
                    0 => (r >> 8) as u8,
                    1 => b"0123456789. :"[(r >> 8) as usize % 13],
                    2 => b"\r\n"[(r >> 8) as usize % 2],
                    _ => [0x00, 0x11, 0x20, 0x21, 0x0c][(r >> 8) as usize % 5],
                });
            }
            if let Ok(Parsed::Done { len, .. }) = parse(&buf) {
                assert!(len <= buf.len());
                if buf.starts_with(b"PROXY") {
                    assert!(len <= V1_MAX && buf[..len].ends_with(b"\r\n"), "{buf:?}");
                } else {
                    assert!(len <= 16 + V2_MAX_BODY);
                }
            }
        }
    }
}
