//! Query strings (and `application/x-www-form-urlencoded` bodies), decoded
//! pair by pair: `+` is a space, `%XX` a byte, and bytes that are not UTF-8
//! become U+FFFD. Nothing is allocated for a pair that needs no decoding.
//!
//! ```
//! let qs = b"done=true&q=buy+milk%21&q=2";
//! let pairs: Vec<_> = abi::query::pairs(qs).collect();
//! assert_eq!(pairs[1], ("q".into(), "buy milk!".into()));
//! assert_eq!(abi::query::get(qs, "q").as_deref(), Some("buy milk!"));
//! assert_eq!(abi::query::get(qs, "limit"), None);
//! ```

use std::borrow::Cow;

/// Every `name=value` pair, in order (a pair without `=` has an empty
/// value; empty pairs, as in `a=1&&b=2`, are skipped).
pub fn pairs(query: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (decode(name), decode(value))
        })
}

/// The first value of `name`.
pub fn get<'q>(query: &'q [u8], name: &str) -> Option<Cow<'q, str>> {
    pairs(query).find(|(n, _)| n == name).map(|(_, v)| v)
}

/// One name or value, percent-decoded, `+` as a space.
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    decode_with(bytes, true)
}

/// A path segment, percent-decoded (`+` stays a `+`, as in a path).
pub fn decode_path(bytes: &[u8]) -> Cow<'_, str> {
    decode_with(bytes, false)
}

fn decode_with(bytes: &[u8], plus_as_space: bool) -> Cow<'_, str> {
    let special = |b: u8| b == b'%' || (plus_as_space && b == b'+');
    if !bytes.iter().any(|&b| special(b)) {
        return String::from_utf8_lossy(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_as_space => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                // A `%` not followed by two hex digits stays as it is
                // (what browsers and Python's urllib do).
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_bad_escapes() {
        assert_eq!(decode(b"a+b%20c%2fd"), "a b c/d");
        assert_eq!(decode(b"100%"), "100%");
        assert_eq!(decode(b"%zz%4"), "%zz%4");
        assert_eq!(decode(b"%ff"), "\u{fffd}");
        assert!(matches!(decode(b"plain"), Cow::Borrowed("plain")));
        assert_eq!(decode_path(b"a+b%2Fc"), "a+b/c");
        assert!(matches!(decode_path(b"a+b"), Cow::Borrowed("a+b")));
    }

    #[test]
    fn pairs_in_order_with_empty_values() {
        let all: Vec<_> = pairs(b"a=1&&b&c=&a=2").collect();
        let want = [("a", "1"), ("b", ""), ("c", ""), ("a", "2")];
        assert_eq!(all.len(), want.len());
        for ((n, v), (wn, wv)) in all.iter().zip(want) {
            assert_eq!((n.as_ref(), v.as_ref()), (wn, wv));
        }
        assert_eq!(get(b"a=1&a=2", "a").as_deref(), Some("1"));
    }
}
