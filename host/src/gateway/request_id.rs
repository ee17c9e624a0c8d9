//! The request id: the `X-Request-Id` a trusted proxy sent (a peer in
//! `--forwarded-allow-ips`), else one made here. Nothing is decided or
//! formatted until something asks (the environ's `REQUEST_ID` or
//! `HTTP_X_REQUEST_ID`, a log line about the request, the access log): a
//! request nobody asks about costs one store (`reset`).
//!
//! A made id is this process's random prefix and a number counted per
//! process in the order ids are asked for: `5f0c9e1a3b7d2468-1f`. Workers
//! draw their prefix when they boot (`reseed`), so ids are unique across
//! workers and restarts.
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest id taken from a proxy; a longer one is replaced.
pub const MAX_GIVEN: usize = 200;

/// This process's prefix (0: not drawn yet).
static PREFIX: AtomicU64 = AtomicU64::new(0);
/// Ids made by this process so far.
static MADE: AtomicU64 = AtomicU64::new(0);

/// Draws a new prefix: a worker calls it at boot (a fork copies the
/// master's), so no two processes make the same ids.
pub fn reseed() {
    PREFIX.store(random_u64(), Ordering::Relaxed);
    MADE.store(0, Ordering::Relaxed);
}

fn prefix() -> u64 {
    match PREFIX.load(Ordering::Relaxed) {
        0 => {
            // Serving without a worker boot (tests, benches): drawn once.
            let p = random_u64();
            match PREFIX.compare_exchange(0, p, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => p,
                Err(other) => other,
            }
        }
        p => p,
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: `bytes` is a writable buffer of the length given.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let mut v = u64::from_ne_bytes(bytes);
    if n != 8 {
        // No entropy source: time and pid still differ between workers.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        v = t ^ (u64::from(std::process::id()) << 32);
    }
    // 0 means "not drawn".
    v | 1
}

/// Whether a proxy's id is taken as is: visible ASCII, 1 to 200 bytes (so
/// it stays one token in a log line and one header value).
pub fn valid(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_GIVEN && id.iter().all(|&b| (0x21..=0x7e).contains(&b))
}

/// Longest made id: 16 hex digits, `-`, up to 16 more.
const MADE_LEN: usize = 33;

/// Where one request's id stands.
#[derive(Clone, Copy)]
enum State {
    /// Not asked for yet; the peer is not a trusted proxy.
    Untrusted,
    /// Not asked for yet; the peer is a trusted proxy, whose header counts.
    Trusted,
    /// Decided: these bytes (the proxy's, in the request's buffer, or
    /// `made`), valid until the next `reset`.
    Known(*const u8, usize),
}

/// One request's id, kept with its environ (the environ is reused request
/// after request: `reset` starts each).
pub struct RequestId {
    state: Cell<State>,
    /// A made id's text; written only while the state is not `Known`, so
    /// no reference to it is alive then.
    made: UnsafeCell<[u8; MADE_LEN]>,
}

impl Default for RequestId {
    fn default() -> RequestId {
        RequestId {
            state: Cell::new(State::Untrusted),
            made: UnsafeCell::new([0; MADE_LEN]),
        }
    }
}

impl RequestId {
    /// A new request, from a peer that is not a trusted proxy (`&mut`: the
    /// last request's id is no longer lent out).
    #[inline]
    pub fn reset(&mut self) {
        *self.state.get_mut() = State::Untrusted;
    }

    /// The peer is a trusted proxy: its `X-Request-Id` counts (`&mut`: no
    /// decided id is lent out).
    #[inline]
    pub fn trust(&mut self) {
        *self.state.get_mut() = State::Trusted;
    }

    /// The id, decided now if not yet. `header` finds the request's
    /// `X-Request-Id`, whose bytes must stay in place until the next
    /// `reset` (as every string of the environ does).
    pub fn get<'a>(&'a self, header: impl FnOnce() -> Option<&'a [u8]>) -> &'a [u8] {
        let (ptr, len) = match self.state.get() {
            State::Known(ptr, len) => (ptr, len),
            State::Trusted => match header().filter(|id| valid(id)) {
                Some(id) => (id.as_ptr(), id.len()),
                None => self.make(),
            },
            State::Untrusted => self.make(),
        };
        self.state.set(State::Known(ptr, len));
        // SAFETY: `ptr`/`len` are a live slice: the proxy's bytes (which
        // outlive 'a by the caller's contract) or `made`, which is not
        // written again until the state leaves `Known` (`reset` or
        // `trust`, which take `&mut self`: no id is borrowed then).
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }

    fn make(&self) -> (*const u8, usize) {
        let n = MADE.fetch_add(1, Ordering::Relaxed) + 1;
        // SAFETY: the state is not `Known`, so no slice of `made` is lent
        // out (see the field).
        let buf = unsafe { &mut *self.made.get() };
        let len = format_made(buf, prefix(), n);
        (buf.as_ptr(), len)
    }
}

fn format_made(buf: &mut [u8; MADE_LEN], prefix: u64, n: u64) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf[..16].iter_mut().enumerate() {
        *b = HEX[(prefix >> (60 - 4 * i) & 0xf) as usize];
    }
    buf[16] = b'-';
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        buf[17 + i] = HEX[(n >> (4 * (digits - 1 - i)) & 0xf) as usize];
    }
    17 + digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_prefix_and_count() {
        let mut buf = [0; MADE_LEN];
        let len = format_made(&mut buf, 0x5f0c_9e1a_3b7d_2468, 0x1f);
        assert_eq!(&buf[..len], b"5f0c9e1a3b7d2468-1f");
        let len = format_made(&mut buf, u64::MAX, u64::MAX);
        assert_eq!(len, MADE_LEN);
    }

    #[test]
    fn a_trusted_valid_header_is_taken_and_others_replaced() {
        let mut id = RequestId::default();
        id.trust();
        assert_eq!(id.get(|| Some(b"abc-123")), b"abc-123");
        id.reset();
        let made = id.get(|| Some(b"abc-123")).to_vec();
        assert_ne!(made, b"abc-123");
        id.trust();
        assert_ne!(id.get(|| Some(b"has space")), b"has space");
        id.reset();
        id.trust();
        let long = [b'a'; 201];
        assert_ne!(id.get(|| Some(&long)).len(), 201);
        id.reset();
        id.trust();
        let longest = [b'a'; 200];
        assert_eq!(id.get(|| Some(&longest)).len(), 200);
        id.reset();
        let other = id.get(|| None).to_vec();
        assert_ne!(made, other, "made ids differ");
        // Asked again: the same id.
        assert_eq!(id.get(|| None), &other[..]);
    }
}
