//! What an app thread of the tower adapter remembers of the requests it
//! built, to build the next `http::Request` cheaply: clients ask for the
//! same paths with the same headers over and over (a keep-alive connection
//! repeats its Host, User-Agent, Accept..., in the same order), and a clone
//! of a parsed `Uri` or `HeaderValue` is a reference count, where a new one
//! is an allocation, a copy, a validation and later a free.
//!
//! * The request-target: the last origin-form one parsed.
//! * Header fields: by position in the request (the first [`POSITIONS`]),
//!   the last field seen there twice in a row (by a hash of its bytes), so
//!   a value that changes with every request (a request id, a length) is
//!   never kept and costs no more than without the cache.
//!
//! A hit is decided by comparing the bytes, never by the hash alone.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Uri};

use super::head_cache::mix;
use super::host::Headers;

/// Header fields remembered per thread, by position in the request.
const POSITIONS: usize = 32;

/// One thread's memory of its last requests.
pub(crate) struct RequestCache {
    last_uri: Option<Uri>,
    fields: Vec<Slot>,
}

/// A position in the request's header list.
#[derive(Default)]
struct Slot {
    /// The field last seen here twice in a row, and its name as the
    /// client spelled it (compared byte for byte, which costs less than
    /// ignoring case).
    field: Option<(Box<[u8]>, HeaderName, HeaderValue)>,
    /// The hash of the field last seen here that is not `field`.
    candidate: u64,
}

impl RequestCache {
    pub(crate) const fn new() -> RequestCache {
        RequestCache {
            last_uri: None,
            fields: Vec::new(),
        }
    }

    /// The request-target as a `Uri`, from the last one when it is the
    /// same bytes.
    pub(crate) fn uri(&mut self, raw: &[u8]) -> Result<Uri, String> {
        if let Some(uri) = &self.last_uri {
            // Only an origin-form target's bytes are all in its path and
            // query (an authority-form one's empty path reads as "/"), and
            // the same bytes parse to the same `Uri`.
            if uri.scheme().is_none()
                && uri.authority().is_none()
                && uri
                    .path_and_query()
                    .is_some_and(|pq| pq.as_str().as_bytes() == raw)
            {
                return Ok(uri.clone());
            }
        }
        let uri = parse_target(raw)?;
        self.last_uri = Some(uri.clone());
        Ok(uri)
    }

    /// The request headers, repeats kept apart.
    pub(crate) fn headers(&mut self, list: Headers<'_>) -> Result<HeaderMap, String> {
        let mut map = HeaderMap::with_capacity(list.len());
        for (at, (name, value)) in list.enumerate() {
            let (name, value) = self.field(at, name, value)?;
            map.append(name, value);
        }
        Ok(map)
    }

    /// The field at position `at`, from the slot when it holds these bytes.
    fn field(
        &mut self,
        at: usize,
        name: &[u8],
        value: &[u8],
    ) -> Result<(HeaderName, HeaderValue), String> {
        if let Some(Slot {
            field: Some((spelled, n, v)),
            ..
        }) = self.fields.get(at)
        {
            if v.as_bytes() == value && **spelled == *name {
                return Ok((n.clone(), v.clone()));
            }
        }
        let n = HeaderName::from_bytes(name)
            .map_err(|_| format!("header name {:?}", String::from_utf8_lossy(name)))?;
        let v = HeaderValue::from_bytes(value).map_err(|_| format!("header value of {n}"))?;
        if at < POSITIONS {
            if self.fields.len() <= at {
                self.fields.resize_with(at + 1, Slot::default);
            }
            let slot = &mut self.fields[at];
            let hash = mix(mix(0, name), value);
            if slot.candidate == hash {
                // Seen here twice in a row: keep it. The clone turns the
                // value's bytes into shared ones (one allocation, once).
                slot.field = Some((name.into(), n.clone(), v.clone()));
                slot.candidate = 0;
            } else {
                slot.candidate = hash;
            }
        }
        Ok((n, v))
    }
}

fn parse_target(raw: &[u8]) -> Result<Uri, String> {
    if raw == b"/" {
        // No copy: `http` shares one static "/".
        return Ok(Uri::from_static("/"));
    }
    Uri::from_maybe_shared(Bytes::copy_from_slice(raw)).map_err(|e| format!("request target: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_target_gives_the_same_uri() {
        let mut cache = RequestCache::new();
        let a = cache.uri(b"/a?x=1").unwrap();
        let b = cache.uri(b"/a?x=1").unwrap();
        assert_eq!(a, b);
        assert_eq!(cache.uri(b"/b").unwrap(), "/b");
        assert_eq!(cache.uri(b"/").unwrap(), "/");
        assert!(cache.uri(b"/a b").is_err());
    }

    #[test]
    fn an_authority_form_target_is_not_taken_for_a_slash() {
        let mut cache = RequestCache::new();
        let connect = cache.uri(b"example.com:443").unwrap();
        assert_eq!(
            connect.authority().map(|a| a.as_str()),
            Some("example.com:443")
        );
        let slash = cache.uri(b"/").unwrap();
        assert!(slash.authority().is_none());
        assert_eq!(slash.path(), "/");
    }

    #[test]
    fn a_field_is_kept_the_second_time_and_matched_by_its_bytes() {
        let mut cache = RequestCache::new();
        for _ in 0..3 {
            let (n, v) = cache.field(0, b"Host", b"example.com").unwrap();
            assert_eq!(n, "host");
            assert_eq!(v, "example.com");
        }
        assert!(cache.fields[0].field.is_some(), "kept after two sightings");
        // Another value at the same position is not the kept one.
        let (_, v) = cache.field(0, b"Host", b"example.org").unwrap();
        assert_eq!(v, "example.org");
        let (n, _) = cache.field(0, b"Hostx", b"example.com").unwrap();
        assert_eq!(n, "hostx");
        // The same name spelled otherwise is the same name.
        let (n, v) = cache.field(0, b"HOST", b"example.com").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("host", "example.com"));
    }

    #[test]
    fn a_value_that_changes_every_time_is_never_kept() {
        let mut cache = RequestCache::new();
        for i in 0..10 {
            let value = format!("id-{i}");
            let (_, v) = cache.field(1, b"x-request-id", value.as_bytes()).unwrap();
            assert_eq!(v, value.as_str());
        }
        assert!(cache.fields[1].field.is_none());
    }

    #[test]
    fn bad_fields_are_refused() {
        let mut cache = RequestCache::new();
        assert!(cache.field(0, b"bad name", b"x").is_err());
        assert!(cache.field(0, b"x", b"bad\nvalue").is_err());
    }
}
