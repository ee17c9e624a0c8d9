//! Who the client is, and which scheme it used, as a trusted proxy reports
//! it in the request's headers: `X-Forwarded-For` with gunicorn's scheme
//! headers (`X-Forwarded-Proto: https`, `X-Forwarded-Ssl: on`,
//! `X-Forwarded-Protocol: ssl`), or `Forwarded` (RFC 7239).
//!
//! Only asked for a connection whose peer is trusted (the runtime checks
//! that once per connection); whether a hop further along is trusted is
//! the caller's predicate, so this file knows no address lists.
//!
//! The rules, and why:
//! - **The right-most untrusted hop is the client.** Each proxy appends the
//!   address it saw, so the list reads client, proxy, proxy; only the
//!   entries appended by trusted proxies can be believed, and the first
//!   one (from the right) naming a host that is not a trusted proxy is the
//!   client. Whatever lies to its left came from that client and is never
//!   looked at (a spoofed first hop changes nothing). If every hop is
//!   trusted, the left-most is the client.
//! - **A hop that names no address ends the walk there**: `unknown`, an
//!   obfuscated identifier (`_hidden`), an element without `for=`, or a
//!   value that does not parse. The client is then the nearest host whose
//!   address is known: the trusted proxy that reported that hop (the
//!   connection's own peer if it was the right-most). REMOTE_ADDR is
//!   always an IP address an app can parse; the header itself still
//!   reaches the app unchanged.
//! - **The two families are not mixed.** If any `X-Forwarded-*` header
//!   above is present, `Forwarded` is ignored; otherwise `Forwarded` gives
//!   both the client (`for=`) and the scheme (`proto=` of the same
//!   element). The common proxies (nginx's `$proxy_add_x_forwarded_for`,
//!   HAProxy's `option forwardfor`, cloud load balancers) set
//!   `X-Forwarded-For` and pass a client's own `Forwarded` through
//!   untouched: preferring `Forwarded` would let any client behind them
//!   choose its address.
//! - **Malformed values are ignored, never refused**: a scheme header with
//!   a value other than the ones above (or two that disagree) leaves the
//!   scheme as the connection has it; a hop that does not parse ends the
//!   walk as above. The caller logs the reason at debug. A 400 would punish
//!   a client for what its proxy wrote, and a malformed hop to the left of
//!   the client is never even parsed.
//!
//! Repeated lines of one field count as one list, in order (RFC 9110
//! §5.3). Nothing here allocates: values are read where they lie in the
//! receive buffer, and a quoted-string is unescaped into a small stack
//! buffer.
use std::net::{IpAddr, Ipv4Addr};

use crate::http1::parse::Field;

/// The scheme of the client's connection (`wsgi.url_scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Scheme::Http => b"http",
            Scheme::Https => b"https",
        }
    }
}

/// An address a header names, and its port when it gave one.
pub type Client = (IpAddr, Option<u16>);

/// What a trusted peer's forwarding headers say about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reported {
    /// The client, when the headers name one other than the peer.
    pub client: Option<Client>,
    /// The client's scheme, when the headers say it.
    pub scheme: Option<Scheme>,
    /// Why a header, or part of one, was not believed (for the debug log).
    pub ignored: Option<&'static str>,
}

/// The headers this file reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Forwarded,
    For,
    Proto,
    Ssl,
    Protocol,
}

/// Which of the headers a field is.
fn kind(name: &[u8]) -> Option<Kind> {
    let (want, kind): (&[u8], Kind) = match name.len() {
        9 => (b"forwarded", Kind::Forwarded),
        15 if (name[12] | 0x20) == b'f' => (b"x-forwarded-for", Kind::For),
        15 => (b"x-forwarded-ssl", Kind::Ssl),
        17 => (b"x-forwarded-proto", Kind::Proto),
        20 => (b"x-forwarded-protocol", Kind::Protocol),
        _ => return None,
    };
    is_name(name, want).then_some(kind)
}

/// Whether field name `name` is `lower` (lowercase letters and '-'),
/// whatever the case of its letters, compared eight bytes at a time (the
/// names are 9 to 20 bytes, the last word overlapping the one before).
/// With 0x20 set in every byte, a letter reads as its lowercase and '-'
/// stays '-'; of the bytes a name may hold (tchar), none other becomes a
/// letter or '-' so.
#[inline]
fn is_name(name: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower.len() >= 8 && lower.iter().all(|&b| b == b'-' || b.is_ascii_lowercase()));
    if name.len() != lower.len() {
        return false;
    }
    let word = |b: &[u8], at: usize| {
        u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes")) | 0x2020_2020_2020_2020
    };
    let mut at = 0;
    loop {
        if word(name, at) != word(lower, at) {
            return false;
        }
        if at + 8 == name.len() {
            return true;
        }
        at = (at + 8).min(name.len() - 8);
    }
}

/// Whether `value` is the word `lower` (lowercase letters only), whatever
/// the case of its letters: for a letter, setting 0x20 in a byte gives it
/// exactly when the byte is that letter in either case.
#[inline]
fn is_word(value: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower.iter().all(u8::is_ascii_lowercase));
    value.len() == lower.len() && value.iter().zip(lower).all(|(&b, &l)| b | 0x20 == l)
}

/// Whether a field name has the length of one of the headers (9, 15, 17
/// or 20 bytes): a shift and a test, where nearly every field of a request
/// is told it is none of them.
#[inline]
fn may_be_one(name: &[u8]) -> bool {
    const LENGTHS: u32 = (1 << 9) | (1 << 15) | (1 << 17) | (1 << 20);
    name.len() < 32 && (LENGTHS >> name.len()) & 1 != 0
}

/// Whether a field name is one of the headers this file reads (the
/// parser notes it per request: `RequestHead::forwarding`).
#[inline]
pub fn is_forwarding_name(name: &[u8]) -> bool {
    may_be_one(name) && kind(name).is_some()
}

/// What the forwarding headers among `fields` say, or None when there are
/// none (the common case: one pass over the name lengths). `trusted`
/// tells whether a hop's address is a trusted proxy.
#[inline]
pub fn reported(fields: &[Field<'_>], trusted: impl Fn(IpAddr) -> bool) -> Option<Reported> {
    if !fields.iter().any(|f| may_be_one(f.name)) {
        return None;
    }
    found(fields, &trusted)
}

/// `reported`, out of line, for a request with a field that may be one of
/// the headers: one pass over the fields reads the `X-Forwarded-*` family
/// as it comes; `Forwarded` is read after, and only without them.
#[inline(never)]
fn found(fields: &[Field<'_>], trusted: &dyn Fn(IpAddr) -> bool) -> Option<Reported> {
    let mut x_family = false;
    let mut x_for = Walk::<()>::default();
    let mut vote = Vote::Silent;
    let mut forwarded = false;
    for f in fields {
        match kind(f.name) {
            None => {}
            Some(Kind::Forwarded) => forwarded = true,
            Some(Kind::For) => {
                x_family = true;
                for item in f.value.split(|&b| b == b',') {
                    let item = trim(item);
                    if item.is_empty() {
                        // `a, , b`: an empty list element is no hop.
                        continue;
                    }
                    x_for.push(Hop::new(x_forwarded_node(item), ()), trusted);
                }
            }
            Some(k @ (Kind::Proto | Kind::Ssl | Kind::Protocol)) => {
                x_family = true;
                vote.count(x_scheme(k, trim(f.value)));
            }
        }
    }
    if x_family {
        let (client, (), why) = x_for.end();
        let (scheme, void) = match vote {
            Vote::Silent => (None, None),
            Vote::Said(scheme) => (Some(scheme), None),
            Vote::Void(why) => (None, Some(why)),
        };
        return Some(Reported {
            client,
            scheme,
            ignored: why.or(void),
        });
    }
    if !forwarded {
        return None;
    }
    let mut walk = Walk::<Proto>::default();
    for f in fields
        .iter()
        .filter(|f| kind(f.name) == Some(Kind::Forwarded))
    {
        let mut lexer = Lexer { rest: f.value };
        loop {
            match lexer.element() {
                Ok(Some(e)) => walk.push(Hop::new(e.node(), e.proto), trusted),
                Ok(None) => break,
                Err(why) => {
                    // Nothing after a syntax error can be split reliably:
                    // the rest of the line is one hop that names no one.
                    walk.push(Hop::new(Node::Malformed(why), Proto::Absent), trusted);
                    break;
                }
            }
        }
    }
    let (client, proto, why) = walk.end();
    let mut out = Reported {
        client,
        scheme: None,
        ignored: why,
    };
    match proto {
        Proto::Absent => {}
        Proto::Http => out.scheme = Some(Scheme::Http),
        Proto::Https => out.scheme = Some(Scheme::Https),
        Proto::Other => {
            out.ignored = out
                .ignored
                .or(Some("Forwarded proto= is neither http nor https"))
        }
    }
    Some(out)
}

/// One hop as read from a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Addr(IpAddr, Option<u16>),
    /// `unknown`, an obfuscated identifier, or no `for=` at all.
    Hidden,
    /// Not a node; why, for the log.
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct Hop<P> {
    node: Node,
    /// What else the hop says (`Forwarded`'s proto=).
    extra: P,
}

impl<P> Hop<P> {
    fn new(node: Node, extra: P) -> Hop<P> {
        Hop { node, extra }
    }
}

/// The walk from the right, done in one pass from the left: the client
/// is the right-most hop that ends the walk (see the module's rules), so
/// it is enough to remember the last such hop and the one after it.
struct Walk<P> {
    /// The right-most hop not trusted (or naming no address), and the
    /// trusted hop right after it, if any: who reported it.
    stop: Option<(Hop<P>, Option<Hop<P>>)>,
    /// The left-most hop: the client if every hop is trusted.
    first: Option<Hop<P>>,
}

impl<P> Default for Walk<P> {
    fn default() -> Walk<P> {
        Walk {
            stop: None,
            first: None,
        }
    }
}

impl<P: Copy + Default> Walk<P> {
    fn push(&mut self, hop: Hop<P>, trusted: &dyn Fn(IpAddr) -> bool) {
        let stops = match hop.node {
            Node::Addr(ip, _) => !trusted(ip),
            Node::Hidden | Node::Malformed(_) => true,
        };
        if stops {
            self.stop = Some((hop, None));
        } else if let Some((_, reporter @ None)) = &mut self.stop {
            *reporter = Some(hop);
        }
        if self.first.is_none() {
            self.first = Some(hop);
        }
    }

    /// The client's address (None: the peer's own), what its hop says,
    /// and why a hop was not read.
    fn end(self) -> (Option<Client>, P, Option<&'static str>) {
        let addr = |hop: &Hop<P>| match hop.node {
            Node::Addr(ip, port) => Some((ip, port)),
            _ => None,
        };
        match self.stop {
            Some((hop, reporter)) => {
                let why = match hop.node {
                    Node::Malformed(why) => Some(why),
                    _ => None,
                };
                let client = addr(&hop).or_else(|| reporter.as_ref().and_then(addr));
                (client, hop.extra, why)
            }
            None => match self.first {
                Some(hop) => (addr(&hop), hop.extra, None),
                None => (None, P::default(), None),
            },
        }
    }
}

/// Optional whitespace around list items (RFC 9110 §5.6.1).
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// An `X-Forwarded-For` item: `a.b.c.d`, an IPv6 address, either with a
/// port (`a.b.c.d:p`, `[v6]:p`, as some load balancers write them), or
/// `unknown` / `_obfuscated` as in `Forwarded`.
fn x_forwarded_node(item: &[u8]) -> Node {
    if is_word(item, b"unknown") || item.first() == Some(&b'_') {
        return Node::Hidden;
    }
    // A bare IPv6 address has colons but is no address and port.
    if let Some(ip) = parse_ip(item) {
        return Node::Addr(ip, None);
    }
    node_with_port(item).unwrap_or(Node::Malformed("an X-Forwarded-For item is not an address"))
}

/// `a.b.c.d:p` or `[v6]` or `[v6]:p`; a port may be obfuscated (`_x`),
/// leaving the address known and the port not.
fn node_with_port(item: &[u8]) -> Option<Node> {
    let (host, port) = match item.strip_prefix(b"[") {
        Some(rest) => {
            let close = rest.iter().position(|&b| b == b']')?;
            let (host, after) = (&rest[..close], &rest[close + 1..]);
            let ip = parse_ip(host).filter(IpAddr::is_ipv6)?;
            match after {
                [] => return Some(Node::Addr(ip, None)),
                [b':', port @ ..] => (ip, port),
                _ => return None,
            }
        }
        None => {
            let colon = item.iter().position(|&b| b == b':')?;
            let ip = parse_ip(&item[..colon]).filter(IpAddr::is_ipv4)?;
            (ip, &item[colon + 1..])
        }
    };
    match port {
        [b'_', rest @ ..] if !rest.is_empty() && rest.iter().all(|&b| is_obf(b)) => {
            Some(Node::Addr(host, None))
        }
        _ => Some(Node::Addr(host, Some(parse_port(port)?))),
    }
}

fn is_obf(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// 1*5DIGIT, at most 65535.
fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// An IP address in its usual text form; an IPv4-mapped IPv6 address is
/// the IPv4 address it maps.
fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = parse_ipv4(text) {
        return Some(IpAddr::V4(v4));
    }
    // The longest IPv6 text form is 45 bytes.
    if text.len() > 45 || !text.contains(&b':') {
        return None;
    }
    let ip: IpAddr = std::str::from_utf8(text).ok()?.parse().ok()?;
    Some(ip.to_canonical())
}

/// A dotted quad as std reads one (four decimal octets, 0 to 255, without
/// leading zeros), by hand: the address nearly every proxy writes, for a
/// fraction of what std's parser costs after a UTF-8 check.
fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut done = 0;
    // The octet being read, and its digits so far.
    let (mut n, mut digits) = (0u16, 0);
    for &b in text {
        match b {
            b'0'..=b'9' => {
                // A leading zero, or a fourth digit.
                if (digits == 1 && n == 0) || digits == 3 {
                    return None;
                }
                n = n * 10 + u16::from(b - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && done < 3 => {
                octets[done] = u8::try_from(n).ok()?;
                done += 1;
                (n, digits) = (0, 0);
            }
            _ => return None,
        }
    }
    if digits == 0 || done != 3 {
        return None;
    }
    octets[3] = u8::try_from(n).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// `proto=` of one `Forwarded` element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Proto {
    #[default]
    Absent,
    Http,
    Https,
    Other,
}

/// What the `X-Forwarded-*` scheme headers said so far. Every line of
/// each counts; one that is not a recognised value, or two that differ,
/// void them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vote {
    Silent,
    Said(Scheme),
    Void(&'static str),
}

impl Vote {
    fn count(&mut self, line: Result<Scheme, &'static str>) {
        *self = match (*self, line) {
            (Vote::Void(why), _) | (_, Err(why)) => Vote::Void(why),
            (Vote::Said(was), Ok(now)) if was != now => {
                Vote::Void("the X-Forwarded scheme headers disagree")
            }
            (_, Ok(now)) => Vote::Said(now),
        };
    }
}

/// The scheme one scheme header's line says (gunicorn's values, and the
/// opposite ones).
fn x_scheme(kind: Kind, value: &[u8]) -> Result<Scheme, &'static str> {
    let is = |v: &[u8]| is_word(value, v);
    match kind {
        Kind::Proto if is(b"https") => Ok(Scheme::Https),
        Kind::Proto if is(b"http") => Ok(Scheme::Http),
        Kind::Ssl if is(b"on") => Ok(Scheme::Https),
        Kind::Ssl if is(b"off") => Ok(Scheme::Http),
        Kind::Protocol if is(b"ssl") || is(b"https") => Ok(Scheme::Https),
        Kind::Protocol if is(b"http") => Ok(Scheme::Http),
        _ => Err("an X-Forwarded scheme header has a value it cannot have"),
    }
}

// --- Forwarded (RFC 7239) -----------------------------------------------

/// One `forwarded-element`: the parameters this file reads.
struct Element<'b> {
    /// `for=`, as it was written (token, or the inside of a quoted-string).
    node: Option<Value<'b>>,
    proto: Proto,
    /// A parameter given twice (RFC 7239 §4: MUST NOT).
    repeated: bool,
}

#[derive(Clone, Copy)]
struct Value<'b> {
    raw: &'b [u8],
    quoted: bool,
}

impl Element<'_> {
    fn node(&self) -> Node {
        if self.repeated {
            return Node::Malformed("a Forwarded element repeats a parameter");
        }
        let Some(value) = self.node else {
            return Node::Hidden;
        };
        let mut buf = [0u8; 64];
        let Some(text) = value.text(&mut buf) else {
            return Node::Malformed("a Forwarded for= value is too long");
        };
        forwarded_node(text)
    }
}

impl<'b> Value<'b> {
    /// The value with quoted-pairs undone, in `buf` when it had any.
    fn text<'a>(&self, buf: &'a mut [u8; 64]) -> Option<&'a [u8]>
    where
        'b: 'a,
    {
        if !self.quoted || !self.raw.contains(&b'\\') {
            return Some(self.raw);
        }
        let mut n = 0;
        let mut escaped = false;
        for &b in self.raw {
            if b == b'\\' && !escaped {
                escaped = true;
                continue;
            }
            escaped = false;
            *buf.get_mut(n)? = b;
            n += 1;
        }
        Some(&buf[..n])
    }
}

/// RFC 7239 §6: `node = nodename [ ":" node-port ]`, a nodename being an
/// IPv4 address, a bracketed IPv6 address, `unknown` or an obfuscated
/// `_identifier`. A bare IPv6 address is read too (some proxies write
/// one), as an address without a port.
fn forwarded_node(text: &[u8]) -> Node {
    // `unknown:1234` and `_hidden:_port` name no address either.
    let host = text.split(|&b| b == b':').next().unwrap_or_default();
    if is_word(host, b"unknown") || host.first() == Some(&b'_') {
        return Node::Hidden;
    }
    match parse_ip(text) {
        Some(ip) => Node::Addr(ip, None),
        None => {
            node_with_port(text).unwrap_or(Node::Malformed("a Forwarded for= value is not a node"))
        }
    }
}

/// Splits one `Forwarded` field line into elements, left to right.
struct Lexer<'b> {
    rest: &'b [u8],
}

impl<'b> Lexer<'b> {
    /// The next element, None at the end of the line, or why the line
    /// does not follow the grammar.
    fn element(&mut self) -> Result<Option<Element<'b>>, &'static str> {
        // `1#element`: empty elements and the whitespace around commas
        // are allowed (RFC 9110 §5.6.1).
        loop {
            self.skip_ows();
            match self.rest.first() {
                None => return Ok(None),
                Some(b',') => self.rest = &self.rest[1..],
                Some(_) => break,
            }
        }
        let mut e = Element {
            node: None,
            proto: Proto::Absent,
            repeated: false,
        };
        let mut seen_proto = false;
        loop {
            self.skip_ows();
            match self.rest.first() {
                None => return Ok(Some(e)),
                Some(b',') => {
                    self.rest = &self.rest[1..];
                    return Ok(Some(e));
                }
                Some(b';') => {
                    self.rest = &self.rest[1..];
                    continue;
                }
                Some(_) => {}
            }
            let name = self.token().ok_or("a Forwarded parameter has no name")?;
            if self.rest.first() != Some(&b'=') {
                return Err("a Forwarded parameter has no '='");
            }
            self.rest = &self.rest[1..];
            let value = match self.rest.first() {
                Some(b'"') => self.quoted()?,
                _ => Value {
                    raw: self.token().ok_or("a Forwarded parameter has no value")?,
                    quoted: false,
                },
            };
            if is_word(name, b"for") {
                e.repeated |= e.node.is_some();
                e.node = Some(value);
            } else if is_word(name, b"proto") {
                e.repeated |= seen_proto;
                seen_proto = true;
                let is = |v: &[u8]| is_word(value.raw, v);
                e.proto = if is(b"https") {
                    Proto::Https
                } else if is(b"http") {
                    Proto::Http
                } else {
                    Proto::Other
                };
            }
            // by=, host= and extensions: not needed here.
            self.skip_ows();
            match self.rest.first() {
                None | Some(b',' | b';') => {}
                Some(_) => return Err("a Forwarded parameter is followed by junk"),
            }
        }
    }

    fn skip_ows(&mut self) {
        while let [b' ' | b'\t', rest @ ..] = self.rest {
            self.rest = rest;
        }
    }

    /// `1*tchar`, or None if there is none here.
    fn token(&mut self) -> Option<&'b [u8]> {
        let n = self.rest.iter().take_while(|&&b| is_tchar(b)).count();
        if n == 0 {
            return None;
        }
        let (token, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(token)
    }

    /// A quoted-string at the start of `rest`; its inside, escapes kept.
    fn quoted(&mut self) -> Result<Value<'b>, &'static str> {
        let body = &self.rest[1..];
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                b'"' => {
                    self.rest = &body[i + 1..];
                    return Ok(Value {
                        raw: &body[..i],
                        quoted: true,
                    });
                }
                b'\\' => match body.get(i + 1) {
                    Some(&b) if b == b'\t' || (b >= 0x20 && b != 0x7f) => i += 2,
                    _ => return Err("a Forwarded quoted-string has a bad escape"),
                },
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
                _ => return Err("a Forwarded quoted-string has a byte it cannot have"),
            }
        }
        Err("a Forwarded quoted-string does not end")
    }
}

/// RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.0/8 and fd00::/8 are the proxies.
    fn proxies(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 10,
            IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
        }
    }

    fn fields<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<Field<'a>> {
        pairs
            .iter()
            .map(|(n, v)| Field {
                name: n.as_bytes(),
                value: v.as_bytes(),
            })
            .collect()
    }

    fn report(pairs: &[(&str, &str)]) -> Option<Reported> {
        reported(&fields(pairs), proxies)
    }

    /// The client's address and port as text, and the scheme.
    fn seen(pairs: &[(&str, &str)]) -> (Option<String>, Option<u16>, Option<Scheme>) {
        let r = report(pairs).expect("a forwarding header");
        (
            r.client.map(|(ip, _)| ip.to_string()),
            r.client.and_then(|(_, p)| p),
            r.scheme,
        )
    }

    fn client(pairs: &[(&str, &str)]) -> Option<String> {
        seen(pairs).0
    }

    #[test]
    fn no_forwarding_header_is_none() {
        assert_eq!(report(&[]), None);
        assert_eq!(
            report(&[
                ("Host", "x"),
                ("X-Forwarded-Host", "y"),
                ("Forwarded-For", "1.2.3.4")
            ]),
            None
        );
        // Underscore twins are not the headers (see --header-map).
        assert_eq!(report(&[("X_Forwarded_For", "1.2.3.4")]), None);
    }

    #[test]
    fn names_are_case_insensitive() {
        for name in ["x-forwarded-for", "X-FORWARDED-FOR", "X-Forwarded-For"] {
            assert_eq!(client(&[(name, "1.2.3.4")]).as_deref(), Some("1.2.3.4"));
        }
        assert_eq!(
            client(&[("FORWARDED", "For=1.2.3.4")]).as_deref(),
            Some("1.2.3.4")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        // A client spoofing a first hop: the hop the proxy appended wins.
        assert_eq!(
            client(&[("X-Forwarded-For", "6.6.6.6, 203.0.113.7")]).as_deref(),
            Some("203.0.113.7")
        );
        // Through a chain of trusted proxies.
        assert_eq!(
            client(&[(
                "X-Forwarded-For",
                "6.6.6.6, 203.0.113.7, 10.0.0.2, 10.0.0.3"
            )])
            .as_deref(),
            Some("203.0.113.7")
        );
        // Every hop trusted: the left-most.
        assert_eq!(
            client(&[("X-Forwarded-For", "10.1.1.1, 10.0.0.2")]).as_deref(),
            Some("10.1.1.1")
        );
        // Repeated lines are one list, in order.
        assert_eq!(
            client(&[
                ("X-Forwarded-For", "6.6.6.6"),
                ("Host", "x"),
                ("X-Forwarded-For", "203.0.113.7, 10.0.0.2"),
            ])
            .as_deref(),
            Some("203.0.113.7")
        );
        // Garbage the client sent, left of the client, is never parsed.
        let r = report(&[("X-Forwarded-For", "<script>, 203.0.113.7")]).unwrap();
        assert_eq!(r.client, Some(("203.0.113.7".parse().unwrap(), None)));
        assert_eq!(r.ignored, None);
    }

    #[test]
    fn ipv6_and_ports() {
        assert_eq!(
            seen(&[("X-Forwarded-For", "2001:db8::1")]),
            (Some("2001:db8::1".into()), None, None)
        );
        assert_eq!(
            seen(&[("X-Forwarded-For", "[2001:db8::1]:4711, fd00::2")]),
            (Some("2001:db8::1".into()), Some(4711), None)
        );
        assert_eq!(
            seen(&[("X-Forwarded-For", "203.0.113.7:65535")]),
            (Some("203.0.113.7".into()), Some(65535), None)
        );
        assert_eq!(
            seen(&[("X-Forwarded-For", "::ffff:203.0.113.7")]),
            (Some("203.0.113.7".into()), None, None)
        );
        assert_eq!(
            seen(&[("Forwarded", r#"for="[2001:db8:cafe::17]:4711""#)]),
            (Some("2001:db8:cafe::17".into()), Some(4711), None)
        );
        assert_eq!(
            seen(&[("Forwarded", r#"for="192.0.2.60:_hidden""#)]),
            (Some("192.0.2.60".into()), None, None)
        );
        assert_eq!(
            seen(&[("Forwarded", r#"for="192.0.2.60:80""#)]),
            (Some("192.0.2.60".into()), Some(80), None)
        );
        assert_eq!(
            seen(&[("Forwarded", r#"for="2001:db8::9""#)]),
            (Some("2001:db8::9".into()), None, None)
        );
    }

    #[test]
    fn a_hop_without_an_address_ends_the_walk_at_its_reporter() {
        // The right-most hop: the client is the peer itself.
        for xff in [
            "unknown",
            "_hidden",
            "not-an-address",
            "1.2.3.4:99999",
            "[1.2.3.4]",
        ] {
            let r = report(&[("X-Forwarded-For", &format!("203.0.113.7, {xff}"))]).unwrap();
            assert_eq!(r.client, None, "{xff}");
        }
        // Further in: the trusted proxy that reported it.
        assert_eq!(
            client(&[(
                "X-Forwarded-For",
                "203.0.113.7, unknown, 10.0.0.2, 10.0.0.3"
            )])
            .as_deref(),
            Some("10.0.0.2")
        );
        assert_eq!(
            client(&[("Forwarded", "for=_abc, for=10.0.0.2")]).as_deref(),
            Some("10.0.0.2")
        );
        assert_eq!(client(&[("Forwarded", "for=unknown")]), None);
        assert_eq!(client(&[("Forwarded", "for=\"unknown:1234\"")]), None);
        // An element without for= names no one, but its proto= counts.
        assert_eq!(
            seen(&[("Forwarded", "proto=https")]),
            (None, None, Some(Scheme::Https))
        );
        // What does not parse is said at debug.
        let r = report(&[("X-Forwarded-For", "bogus")]).unwrap();
        assert!(r.ignored.is_some());
    }

    #[test]
    fn empty_items_are_no_hops() {
        // nginx's $proxy_add_x_forwarded_for after an empty X-Forwarded-For.
        assert_eq!(
            client(&[("X-Forwarded-For", ", 203.0.113.7")]).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(client(&[("X-Forwarded-For", "")]), None);
        assert_eq!(
            client(&[("Forwarded", ", ,for=203.0.113.7,")]).as_deref(),
            Some("203.0.113.7")
        );
    }

    #[test]
    fn scheme_headers() {
        let scheme = |pairs: &[(&str, &str)]| report(pairs).unwrap().scheme;
        assert_eq!(
            scheme(&[("X-Forwarded-Proto", "https")]),
            Some(Scheme::Https)
        );
        assert_eq!(
            scheme(&[("X-Forwarded-Proto", " HTTPS ")]),
            Some(Scheme::Https)
        );
        assert_eq!(scheme(&[("X-Forwarded-Proto", "http")]), Some(Scheme::Http));
        assert_eq!(scheme(&[("X-Forwarded-Ssl", "on")]), Some(Scheme::Https));
        assert_eq!(scheme(&[("X-Forwarded-Ssl", "off")]), Some(Scheme::Http));
        assert_eq!(
            scheme(&[("X-Forwarded-Protocol", "ssl")]),
            Some(Scheme::Https)
        );
        assert_eq!(
            scheme(&[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "on")]),
            Some(Scheme::Https)
        );
        // Disagreeing or unknown values: all ignored, and said why.
        for pairs in [
            &[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")][..],
            &[
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Proto", "http"),
            ],
            &[("X-Forwarded-Proto", "https, http")],
            &[("X-Forwarded-Proto", "wss")],
            &[("X-Forwarded-Ssl", "1")],
        ] {
            let r = report(pairs).unwrap();
            assert_eq!((r.scheme, r.ignored.is_some()), (None, true), "{pairs:?}");
        }
        // The scheme alone leaves the address alone.
        assert_eq!(
            report(&[("X-Forwarded-Proto", "https")]).unwrap().client,
            None
        );
    }

    #[test]
    fn forwarded_pairs_its_scheme_with_its_client() {
        assert_eq!(
            seen(&[("Forwarded", "for=203.0.113.7;proto=https;by=10.0.0.1")]),
            (Some("203.0.113.7".into()), None, Some(Scheme::Https))
        );
        // The client's element says https; a spoofed one to its left and
        // the proxies' own to its right do not count.
        assert_eq!(
            seen(&[(
                "Forwarded",
                "for=6.6.6.6;proto=http, for=203.0.113.7;proto=https, for=10.0.0.2;proto=http"
            )]),
            (Some("203.0.113.7".into()), None, Some(Scheme::Https))
        );
        // Whitespace around ';' as some proxies write it, quoted values,
        // case-insensitive names and values, extensions ignored.
        assert_eq!(
            seen(&[(
                "Forwarded",
                r#"For="203.0.113.7" ; Proto=HTTPS ; ext="a,b;c""#
            )]),
            (Some("203.0.113.7".into()), None, Some(Scheme::Https))
        );
        assert_eq!(
            seen(&[("Forwarded", r#"for="\[2001:db8::1\]:8\0""#)]),
            (Some("2001:db8::1".into()), Some(80), None)
        );
        let r = report(&[("Forwarded", "for=203.0.113.7;proto=gopher")]).unwrap();
        assert_eq!((r.scheme, r.ignored.is_some()), (None, true));
    }

    #[test]
    fn x_forwarded_wins_over_forwarded() {
        // nginx sets X-Forwarded-For and passes the client's Forwarded on.
        assert_eq!(
            seen(&[
                ("Forwarded", "for=6.6.6.6;proto=https"),
                ("X-Forwarded-For", "203.0.113.7"),
            ]),
            (Some("203.0.113.7".into()), None, None)
        );
        // Even the scheme header alone keeps Forwarded out.
        assert_eq!(
            seen(&[
                ("Forwarded", "for=6.6.6.6;proto=https"),
                ("X-Forwarded-Proto", "http")
            ]),
            (None, None, Some(Scheme::Http))
        );
    }

    #[test]
    fn malformed_forwarded_lines() {
        for line in [
            r#"for="203.0.113.7"#,
            "for=203.0.113.7 junk",
            "for",
            "for=",
            "=1.2.3.4",
            "for=[2001:db8::1]",
            "for=\"\x01\"",
            "for=\"a\\\"",
            "for=1.2.3.4;for=5.6.7.8",
        ] {
            let r = report(&[("Forwarded", line)]).unwrap();
            assert_eq!(r.client, None, "{line:?}");
            assert!(r.ignored.is_some(), "{line:?}");
        }
        // A good line after a bad one is read; a bad last line ends the
        // walk at the peer.
        assert_eq!(
            client(&[("Forwarded", "for=\"x"), ("Forwarded", "for=203.0.113.7")]).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            client(&[("Forwarded", "for=203.0.113.7"), ("Forwarded", "for=\"x")]),
            None
        );
        // A value too long to be a node.
        let long = format!("for=\"{}\\a\"", "1".repeat(70));
        assert!(report(&[("Forwarded", &long)]).unwrap().ignored.is_some());
    }

    #[test]
    fn dotted_quads_read_as_std_reads_them() {
        let std_v4 = |t: &[u8]| std::str::from_utf8(t).ok()?.parse::<Ipv4Addr>().ok();
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "203.0.113.7",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            "1.2.3.a",
            "1000.1.1.1",
            "",
            "...",
            "0.0.0.00",
        ] {
            assert_eq!(
                parse_ipv4(text.as_bytes()),
                std_v4(text.as_bytes()),
                "{text:?}"
            );
        }
        let mut state = 0x1234_5678_9abc_def1u64;
        for _ in 0..50_000 {
            let len = (state % 16) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    b"0123456789...25"[(state % 15) as usize]
                })
                .collect();
            assert_eq!(
                parse_ipv4(&text),
                std_v4(&text),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }

    #[test]
    fn names_and_words_compare_as_eq_ignore_ascii_case() {
        for name in [
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-ssl",
            "x-forwarded-proto",
            "x-forwarded-protocol",
        ] {
            let upper = name.to_ascii_uppercase();
            assert!(is_name(name.as_bytes(), name.as_bytes()));
            assert!(is_name(upper.as_bytes(), name.as_bytes()));
            // Any one byte changed to another token byte: not the name.
            for at in 0..name.len() {
                for b in (0x21u8..0x7f).filter(|b| !b"\"(),/:;<=>?@[\\]{}".contains(b)) {
                    let mut other = name.as_bytes().to_vec();
                    other[at] = b;
                    let same = other.eq_ignore_ascii_case(name.as_bytes());
                    assert_eq!(
                        is_name(&other, name.as_bytes()),
                        same,
                        "{:?}",
                        String::from_utf8_lossy(&other)
                    );
                }
            }
        }
        for word in [
            "https", "http", "on", "off", "ssl", "unknown", "for", "proto",
        ] {
            for b in 0..=255u8 {
                for at in 0..word.len() {
                    let mut other = word.as_bytes().to_vec();
                    other[at] = b;
                    assert_eq!(
                        is_word(&other, word.as_bytes()),
                        other.eq_ignore_ascii_case(word.as_bytes())
                    );
                }
            }
        }
    }

    /// Every byte string, whatever it holds: no panic, and a client is
    /// named only from an address (and port) written in the header.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let alphabet: &[u8] = b"for=_unknown[]:;,\" \\\t1.2.3::fd0a0HTTPSproto\x00\xff";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let len = (state % 40) as usize;
            let mut value = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                value.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            for name in ["Forwarded", "X-Forwarded-For", "X-Forwarded-Proto"] {
                let f = [Field {
                    name: name.as_bytes(),
                    value: &value,
                }];
                let r = reported(&f, proxies).expect("a forwarding header");
                let Some((ip, port)) = r.client else {
                    continue;
                };
                let written = (0..value.len())
                    .any(|i| (i..=value.len()).any(|j| parse_ip(&value[i..j]) == Some(ip)));
                assert!(written, "{ip} is not in {value:?}");
                if let Some(port) = port {
                    let digits = port.to_string();
                    assert!(
                        value.windows(digits.len()).any(|w| w == digits.as_bytes()),
                        "port {port} is not in {value:?}"
                    );
                }
            }
        }
    }
}
