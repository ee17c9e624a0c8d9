//! The subject and issuer of a client certificate as text, the way
//! Apache (`SSL_CLIENT_S_DN`) and nginx (`$ssl_client_s_dn`) give them:
//! RFC 4514 (RFC 2253), the last RDN first, `CN=client,O=Example,C=DE`.
//!
//! Only those two names are read from the certificate (a few dozen lines
//! of DER walking), once per connection after its handshake; the
//! certificate was verified by rustls (webpki) before this sees it, and
//! anything here that does not parse gives None rather than a guess.

/// (subject, issuer) of a DER certificate.
pub fn subject_and_issuer(cert: &[u8]) -> Option<(String, String)> {
    let (tag, certificate, _) = tlv(cert)?;
    expect(tag, SEQUENCE)?;
    let (tag, tbs, _) = tlv(certificate)?;
    expect(tag, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, optional
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    let (_, _, rest) = tlv(rest)?; // serialNumber
    let (_, _, rest) = tlv(rest)?; // signature AlgorithmIdentifier
    let (tag, issuer, rest) = tlv(rest)?;
    expect(tag, SEQUENCE)?;
    let (_, _, rest) = tlv(rest)?; // validity
    let (tag, subject, _) = tlv(rest)?;
    expect(tag, SEQUENCE)?;
    Some((name(subject)?, name(issuer)?))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

fn expect(tag: u8, want: u8) -> Option<()> {
    (tag == want).then_some(())
}

/// One DER element: (tag, contents, what follows). Single-byte tags and
/// definite lengths only (DER has nothing else in a name).
fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, d) = d.split_first()?;
    let (&first, d) = d.split_first()?;
    let (len, d) = if first < 0x80 {
        (first as usize, d)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || d.len() < n {
            return None;
        }
        let len = d[..n].iter().fold(0usize, |a, &b| a << 8 | b as usize);
        (len, &d[n..])
    };
    if d.len() < len {
        return None;
    }
    Some((tag, &d[..len], &d[len..]))
}

/// A Name's RDNs (SEQUENCE OF SET OF AttributeTypeAndValue), last first.
fn name(mut rdns: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (tag, set, rest) = tlv(rdns)?;
        expect(tag, SET)?;
        rdns = rest;
        let mut values = Vec::new();
        let mut set = set;
        while !set.is_empty() {
            let (tag, atv, rest) = tlv(set)?;
            expect(tag, SEQUENCE)?;
            set = rest;
            let (tag, oid, rest) = tlv(atv)?;
            expect(tag, OID)?;
            let (vtag, value, after) = tlv(rest)?;
            let der = &rest[..rest.len() - after.len()];
            let mut text = attribute_name(oid);
            text.push('=');
            match string_value(vtag, value) {
                Some(s) => escape_into(&s, &mut text),
                None => {
                    // RFC 4514 §2.4: not a string: '#' and the DER in hex.
                    text.push('#');
                    for b in der {
                        text.push_str(&format!("{b:02x}"));
                    }
                }
            }
            values.push(text);
        }
        parts.push(values.join("+"));
    }
    parts.reverse();
    Some(parts.join(","))
}

/// The short name of an attribute type (RFC 4514's, and OpenSSL's
/// `emailAddress`), else its dotted OID.
fn attribute_name(oid: &[u8]) -> String {
    let known: &[(&[u8], &str)] = &[
        (&[0x55, 0x04, 0x03], "CN"),
        (&[0x55, 0x04, 0x05], "serialNumber"),
        (&[0x55, 0x04, 0x06], "C"),
        (&[0x55, 0x04, 0x07], "L"),
        (&[0x55, 0x04, 0x08], "ST"),
        (&[0x55, 0x04, 0x09], "STREET"),
        (&[0x55, 0x04, 0x0a], "O"),
        (&[0x55, 0x04, 0x0b], "OU"),
        (
            &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
            "DC",
        ),
        (
            &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
            "UID",
        ),
        (
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
            "emailAddress",
        ),
    ];
    if let Some((_, short)) = known.iter().find(|(k, _)| *k == oid) {
        return short.to_string();
    }
    dotted(oid)
}

fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The text of a directory string; None for other types.
fn string_value(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, TeletexString (taken as
        // Latin-1-ish bytes, as OpenSSL shows them), NumericString.
        0x0c | 0x13 | 0x16 | 0x12 => Some(String::from_utf8_lossy(value).into_owned()),
        0x14 => Some(value.iter().map(|&b| b as char).collect()),
        // BMPString: UCS-2, big-endian.
        0x1e => {
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

/// RFC 4514 §2.4 escaping.
fn escape_into(s: &str, out: &mut String) {
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_print_dotted() {
        assert_eq!(dotted(&[0x55, 0x04, 0x2a]), "2.5.4.42");
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }

    #[test]
    fn values_are_escaped() {
        let mut out = String::new();
        escape_into(" a,b+c#", &mut out);
        assert_eq!(out, "\\ a\\,b\\+c#");
    }

    #[test]
    fn a_name_prints_last_rdn_first() {
        // SEQUENCE { SET { CN=a }, SET { O=b,c } }: "O=b\,c,CN=a"
        let cn = [
            0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, b'a',
        ];
        let o = [
            0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x13, 0x03, b'b', b',', b'c',
        ];
        let mut rdns = Vec::new();
        rdns.extend_from_slice(&cn);
        rdns.extend_from_slice(&o);
        assert_eq!(name(&rdns).unwrap(), "O=b\\,c,CN=a");
        assert!(name(&[0x31, 0x05, 0x30]).is_none());
    }
}
