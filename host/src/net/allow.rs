//! Which peers are believed about who the client is: the address lists of
//! `--forwarded-allow-ips` and `--proxy-allow-ips` (gunicorn's names and
//! syntax: comma-separated addresses and CIDR blocks, or `*` for anyone),
//! plus `unix:` for clients on a unix socket (`-b unix:PATH`).
//!
//! gunicorn believes a unix socket's peer unconditionally (it has no
//! address to check). Here it is an item of the list, in the default as
//! `127.0.0.1` and `::1` are, since a unix socket, like the loopback
//! interface, is reachable from this machine only: the default behaves as
//! gunicorn does, and a list given explicitly says all it trusts (`''`
//! trusts nobody, a unix peer included; `*` everyone).
//!
//! A list is checked once per connection (the peer does not change within
//! one), and once per hop while a trusted proxy's `X-Forwarded-For` is
//! walked; either is a few integer comparisons, no allocation.
use std::fmt;
use std::net::IpAddr;

/// The peers a setting trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowIps {
    /// `*`: every peer (for a server only a proxy can reach).
    Any,
    /// These blocks only, and unix socket peers if `unix`; empty and
    /// false trusts nobody.
    Blocks { cidrs: Vec<Cidr>, unix: bool },
}

/// The item of a list that stands for unix socket peers.
pub const UNIX: &str = "unix:";

/// One address block: an address and how many of its leading bits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// gunicorn's default for both settings: the local machine only (its
/// loopback addresses and its unix sockets).
pub const LOCALHOST: &str = "127.0.0.1,::1,unix:";

impl AllowIps {
    /// Parses `127.0.0.1,::1,unix:`, `10.0.0.0/8, 2001:db8::/32`, `*`, or
    /// the empty string (nobody). Blanks around items are ignored.
    pub fn parse(text: &str) -> Result<AllowIps, String> {
        let items: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.contains(&"*") {
            if items.len() > 1 {
                return Err(format!("'{text}': '*' trusts every address; give it alone"));
            }
            return Ok(AllowIps::Any);
        }
        let unix = items.contains(&UNIX);
        let cidrs = items
            .into_iter()
            .filter(|item| *item != UNIX)
            .map(Cidr::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowIps::Blocks { cidrs, unix })
    }

    /// gunicorn's default: 127.0.0.1, ::1 and unix sockets.
    pub fn localhost() -> AllowIps {
        AllowIps::parse(LOCALHOST).expect("the default list parses")
    }

    /// Whether `ip` is trusted. An IPv4 address a dual-stack socket shows
    /// as `::ffff:a.b.c.d` is the IPv4 address it maps.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            AllowIps::Any => true,
            AllowIps::Blocks { cidrs, .. } => {
                let ip = ip.to_canonical();
                cidrs.iter().any(|b| b.contains(ip))
            }
        }
    }

    /// Whether a peer on a unix socket is trusted (`unix:` or `*`).
    #[inline]
    pub fn trusts_unix(&self) -> bool {
        match self {
            AllowIps::Any => true,
            AllowIps::Blocks { unix, .. } => *unix,
        }
    }
}

impl Default for AllowIps {
    fn default() -> AllowIps {
        AllowIps::localhost()
    }
}

impl fmt::Display for AllowIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowIps::Any => f.write_str("*"),
            AllowIps::Blocks { cidrs, unix: false } if cidrs.is_empty() => f.write_str("nobody"),
            AllowIps::Blocks { cidrs, unix } => {
                for (i, b) in cidrs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{b}")?;
                }
                if *unix {
                    let comma = if cidrs.is_empty() { "" } else { "," };
                    write!(f, "{comma}{UNIX}")?;
                }
                Ok(())
            }
        }
    }
}

impl Cidr {
    /// `a.b.c.d`, `a.b.c.d/n`, an IPv6 address, or one with `/n`. Bits set
    /// past the prefix are refused rather than cleared: `10.0.0.1/8` is a
    /// typing mistake for one address or for `10.0.0.0/8`, and guessing
    /// which would trust the wrong peers.
    pub fn parse(item: &str) -> Result<Cidr, String> {
        let (addr_text, prefix_text) = match item.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (item, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("'{item}' is not an IP address or a block like 10.0.0.0/8"))?;
        let addr = addr.to_canonical();
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= width && !p.starts_with('+'))
                .ok_or_else(|| {
                    format!("'{item}': the prefix must be a number from 0 to {width}")
                })?,
        };
        let block = Cidr { addr, prefix };
        if block.network() != addr {
            return Err(format!(
                "'{item}' has bits set past /{prefix}; did you mean {}/{prefix}?",
                block.network()
            ));
        }
        Ok(block)
    }

    /// The block's first address.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(self.prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(self.prefix)).into()),
        }
    }

    #[inline]
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                (u32::from(ip) ^ u32::from(net)) & mask32(self.prefix) == 0
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                (u128::from(ip) ^ u128::from(net)) & mask128(self.prefix) == 0
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == width {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// The leading `prefix` bits set (checked shifts: a /0 shifts by 32).
#[inline]
fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

#[inline]
fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_is_the_local_machine() {
        let allow = AllowIps::default();
        assert!(allow.contains(ip("127.0.0.1")));
        assert!(allow.contains(ip("::1")));
        // A dual-stack socket's view of an IPv4 peer.
        assert!(allow.contains(ip("::ffff:127.0.0.1")));
        assert!(!allow.contains(ip("127.0.0.2")));
        assert!(!allow.contains(ip("10.0.0.1")));
        assert!(!allow.contains(ip("::2")));
        assert!(allow.trusts_unix());
        assert_eq!(allow.to_string(), "127.0.0.1,::1,unix:");
    }

    #[test]
    fn blocks_match_by_prefix() {
        let allow =
            AllowIps::parse(" 10.0.0.0/8 , 192.168.1.0/24,2001:db8::/32,0.0.0.0/0").unwrap();
        assert!(allow.contains(ip("10.255.1.2")));
        assert!(
            allow.contains(ip("1.2.3.4")),
            "0.0.0.0/0 is every IPv4 address"
        );
        assert!(allow.contains(ip("2001:db8:ffff::1")));
        assert!(!allow.contains(ip("2001:db9::1")));
        assert!(!allow.contains(ip("::1")));
        let v6 = AllowIps::parse("::/0").unwrap();
        assert!(v6.contains(ip("fe80::1")));
        assert!(
            !v6.contains(ip("10.0.0.1")),
            "an IPv6 block holds no IPv4 peer"
        );
        let narrow = AllowIps::parse("192.168.1.128/25").unwrap();
        assert!(narrow.contains(ip("192.168.1.200")));
        assert!(!narrow.contains(ip("192.168.1.127")));
    }

    #[test]
    fn star_and_nobody() {
        assert_eq!(AllowIps::parse("*").unwrap(), AllowIps::Any);
        assert!(AllowIps::Any.contains(ip("203.0.113.9")));
        let nobody = AllowIps::parse("").unwrap();
        assert_eq!(
            nobody,
            AllowIps::Blocks {
                cidrs: Vec::new(),
                unix: false
            }
        );
        assert!(!nobody.contains(ip("127.0.0.1")));
        assert!(!nobody.trusts_unix());
        assert!(AllowIps::Any.trusts_unix());
        assert_eq!(nobody.to_string(), "nobody");
    }

    #[test]
    fn unix_peers_only_when_listed() {
        let only = AllowIps::parse("unix:").unwrap();
        assert!(only.trusts_unix());
        assert!(!only.contains(ip("127.0.0.1")));
        assert_eq!(only.to_string(), "unix:");
        let ips = AllowIps::parse("10.0.0.0/8").unwrap();
        assert!(!ips.trusts_unix());
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        for (text, says) in [
            ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("::/129", "from 0 to 128"),
            ("10.0.0.0/+8", "from 0 to 32"),
            ("localhost", "not an IP address"),
            ("10.0.0.0/", "from 0 to 32"),
            ("*,10.0.0.1", "alone"),
        ] {
            let e = AllowIps::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
