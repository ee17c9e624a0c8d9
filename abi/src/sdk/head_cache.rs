//! Response heads that repeat, made static for the tower adapter: a
//! service builds its head (`StatusCode` + `HeaderMap`) anew for every
//! request, but most services answer with a handful of distinct heads. The
//! second time a thread sees the same head, it becomes a [`Head`] in a
//! `static` slot of this library, and from then on goes to the host through
//! `start_response_static`: the host validates and encodes it once (it
//! remembers heads by address, and only addresses in the plugin's image),
//! instead of comparing every byte per request.
//!
//! * Bounded: at most [`SLOTS`] heads per process, each at most
//!   [`MAX_HEAD_BYTES`]; their text is leaked on purpose (a static head must
//!   stay valid while the library is loaded). Heads that vary per request
//!   (an ETag, a cookie) are seen once each and never admitted.
//! * Per request: a look through this thread's list ([`Heads`]), no lock
//!   and no allocation; a hash only when the head is not there. The process-wide registry behind a
//!   mutex is only touched when a head is admitted (once per thread and
//!   head), so threads share the slots.

use std::sync::{Mutex, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::response::{Head, Header};

/// Distinct heads made static per process.
const SLOTS: usize = 64;
/// A head with more text than this (status line, names, values) is left to
/// the per-request path.
const MAX_HEAD_BYTES: usize = 1024;
/// Hashes of recent heads that were not (yet) static, per thread: a head
/// seen again while still among them is admitted.
const CANDIDATES: usize = 8;

/// The static heads: in this library's data, where the host recognises
/// them. Each slot is set once and never changed.
static HEADS: [OnceLock<Head>; SLOTS] = [const { OnceLock::new() }; SLOTS];

/// Which slots hold which head (admission only).
static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// One static head and what it was made from.
#[derive(Clone)]
struct Entry {
    hash: u64,
    status: StatusCode,
    headers: Box<[(HeaderName, HeaderValue)]>,
    head: &'static Head,
}

impl Entry {
    fn matches(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        self.status == status
            && self.headers.len() == headers.len()
            && self
                .headers
                .iter()
                .zip(headers)
                .all(|((n, v), (name, value))| n == name && v == value)
    }
}

/// One thread's view: the static heads it has used, and recent misses.
pub(crate) struct Heads {
    known: Vec<Entry>,
    seen: [u64; CANDIDATES],
    next_seen: usize,
}

impl Heads {
    pub(crate) const fn new() -> Heads {
        Heads {
            known: Vec::new(),
            seen: [0; CANDIDATES],
            next_seen: 0,
        }
    }

    /// The static head for `status` and `headers` (hop-by-hop headers,
    /// which `keep` refuses, left out), if it is one already or was seen
    /// recently enough to become one now; `None`: send it the per-request
    /// way.
    pub(crate) fn find(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
        keep: fn(&HeaderName) -> bool,
    ) -> Option<&'static Head> {
        // A service has few heads: comparing with each costs less than
        // hashing first.
        if let Some(entry) = self.known.iter().find(|e| e.matches(status, headers)) {
            return Some(entry.head);
        }
        let hash = hash(status, headers);
        if !self.seen.contains(&hash) {
            self.seen[self.next_seen] = hash;
            self.next_seen = (self.next_seen + 1) % CANDIDATES;
            return None;
        }
        // Every static head this thread uses is in `known`: past SLOTS
        // there are no more to admit.
        if self.known.len() >= SLOTS {
            return None;
        }
        let entry = admit(hash, status, headers, keep)?;
        let head = entry.head;
        self.known.push(entry);
        Some(head)
    }
}

/// The registry's entry for this head, made (a slot taken) if it has
/// none; `None` when the head cannot be static or the slots are gone.
#[cold]
fn admit(
    hash: u64,
    status: StatusCode,
    headers: &HeaderMap,
    keep: fn(&HeaderName) -> bool,
) -> Option<Entry> {
    let mut registry = REGISTRY.lock().ok()?;
    if let Some(entry) = registry
        .iter()
        .find(|e| e.hash == hash && e.matches(status, headers))
    {
        return Some(entry.clone());
    }
    let slot = HEADS.get(registry.len())?;
    let head = make_head(status, headers, keep)?;
    slot.set(head).ok()?;
    let entry = Entry {
        hash,
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect(),
        head: slot.get()?,
    };
    registry.push(entry.clone());
    Some(entry)
}

/// `status` and `headers` as a [`Head`] whose text is leaked (it must
/// outlive every request of the library); `None` if a value is not
/// visible ASCII (the per-request path sends those lossily) or the head is
/// too big.
fn make_head(
    status: StatusCode,
    headers: &HeaderMap,
    keep: fn(&HeaderName) -> bool,
) -> Option<Head> {
    let line = status_line(status);
    let mut text = String::with_capacity(MAX_HEAD_BYTES);
    text.push_str(&line);
    let mut spans = Vec::with_capacity(headers.len());
    for (name, value) in headers.iter().filter(|(n, _)| keep(n)) {
        let value = value.to_str().ok()?;
        let at = text.len();
        text.push_str(name.as_str());
        text.push_str(value);
        spans.push((at, name.as_str().len(), value.len()));
    }
    if text.len() > MAX_HEAD_BYTES {
        return None;
    }
    let text: &'static str = Box::leak(text.into_boxed_str());
    let list: Vec<Header> = spans
        .into_iter()
        .map(|(at, n, v)| Header::new(&text[at..at + n], &text[at + n..at + n + v]))
        .collect();
    let list: &'static [Header] = Box::leak(list.into_boxed_slice());
    Some(Head::new(&text[..line.len()], list))
}

/// "NNN Reason" (the canonical reason, "Unknown" for a code without one).
pub(crate) fn status_line(status: StatusCode) -> StatusLine {
    let mut line = StatusLine {
        bytes: [0; 64],
        len: 0,
    };
    let reason = status.canonical_reason().unwrap_or("Unknown");
    let len = 4 + reason.len().min(line.bytes.len() - 4);
    line.bytes[..3].copy_from_slice(status.as_str().as_bytes());
    line.bytes[3] = b' ';
    line.bytes[4..len].copy_from_slice(&reason.as_bytes()[..len - 4]);
    line.len = len;
    line
}

/// A status line on the stack.
pub(crate) struct StatusLine {
    bytes: [u8; 64],
    len: usize,
}

impl std::ops::Deref for StatusLine {
    type Target = str;

    fn deref(&self) -> &str {
        // Three digits, a space and a canonical reason: ASCII.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("500 Internal Server Error")
    }
}

/// A hash of the head (not for security: a collision is caught by the
/// full comparison in [`Entry::matches`]), word at a time.
fn hash(status: StatusCode, headers: &HeaderMap) -> u64 {
    let mut h = u64::from(status.as_u16());
    for (name, value) in headers {
        h = mix(h, name.as_str().as_bytes());
        h = mix(h, value.as_bytes());
    }
    h
}

/// `h` with `bytes` mixed in (also the request cache's hash).
pub(crate) fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = words.remainder();
    let mut w = [0u8; 8];
    w[..rest.len()].copy_from_slice(rest);
    // The length keeps "ab" + "c" apart from "a" + "bc".
    let w = u64::from_le_bytes(w) ^ ((bytes.len() as u64) << 56);
    (h.rotate_left(5) ^ w).wrapping_mul(K)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn keep_all(_: &HeaderName) -> bool {
        true
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn a_head_becomes_static_the_second_time_and_stays() {
        let mut heads = Heads::new();
        let headers = map(&[("content-type", "text/x-head-cache-test")]);
        assert!(
            heads.find(StatusCode::OK, &headers, keep_all).is_none(),
            "first sight"
        );
        let head = heads
            .find(StatusCode::OK, &headers, keep_all)
            .expect("second sight");
        let again = heads
            .find(StatusCode::OK, &headers, keep_all)
            .expect("known");
        assert!(std::ptr::eq(head, again), "the same slot");
        // Another status, or another value, is another head.
        assert!(heads
            .find(StatusCode::CREATED, &headers, keep_all)
            .is_none());
        let other = map(&[("content-type", "text/x-head-cache-other")]);
        assert!(heads.find(StatusCode::OK, &other, keep_all).is_none());
    }

    #[test]
    fn hop_by_hop_headers_stay_out_of_the_static_head() {
        let mut heads = Heads::new();
        let headers = map(&[
            ("content-type", "text/x-head-cache-hop"),
            ("connection", "close"),
        ]);
        let keep = |n: &HeaderName| n != header::CONNECTION;
        assert!(heads.find(StatusCode::OK, &headers, keep).is_none());
        let head = heads
            .find(StatusCode::OK, &headers, keep)
            .expect("second sight");
        assert_eq!(head.header_count(), 1);
    }

    #[test]
    fn threads_share_a_slot() {
        let headers = map(&[("content-type", "text/x-head-cache-shared")]);
        let first = {
            let headers = headers.clone();
            std::thread::spawn(move || {
                let mut heads = Heads::new();
                heads.find(StatusCode::OK, &headers, keep_all);
                heads
                    .find(StatusCode::OK, &headers, keep_all)
                    .map(|h| h as *const Head as usize)
            })
            .join()
            .unwrap()
        };
        let mut heads = Heads::new();
        heads.find(StatusCode::OK, &headers, keep_all);
        let second = heads
            .find(StatusCode::OK, &headers, keep_all)
            .map(|h| h as *const Head as usize);
        assert!(first.is_some());
        assert_eq!(first, second);
    }

    #[test]
    fn heads_that_cannot_be_static_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        assert!(
            make_head(StatusCode::OK, &headers, keep_all).is_none(),
            "obs-text"
        );
        let big = HeaderValue::from_str(&"x".repeat(MAX_HEAD_BYTES)).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, big);
        assert!(
            make_head(StatusCode::OK, &headers, keep_all).is_none(),
            "too big"
        );
    }

    #[test]
    fn status_lines_have_the_canonical_reason() {
        assert_eq!(&*status_line(StatusCode::OK), "200 OK");
        assert_eq!(&*status_line(StatusCode::NOT_FOUND), "404 Not Found");
        assert_eq!(
            &*status_line(StatusCode::from_u16(599).unwrap()),
            "599 Unknown"
        );
    }

    #[test]
    fn the_hash_separates_names_from_values() {
        let a = map(&[("ab", "c")]);
        let b = map(&[("a", "bc")]);
        assert_ne!(hash(StatusCode::OK, &a), hash(StatusCode::OK, &b));
    }
}
