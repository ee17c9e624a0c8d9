//! Request metrics, counted where they happen and summed by the master.
//!
//! Each app thread counts its own requests in its scoreboard slot
//! (`ThreadCounters`): it is the only writer, so a count is a plain load
//! and store, never a locked add, and nothing is shared between threads on
//! the request path. The event-loop thread of each worker counts what only
//! it sees (`LoopCounters`: connections, slow clients, requests refused
//! before any app code ran). The master sums every slot when it is asked
//! (`/metrics`, the status), and folds a dead worker's counts into its own
//! `Totals` before the slot is reused, so counters never go backwards.
//!
//! A request's duration needs two clock reads. On x86-64 with the kernel's
//! clocksource on the TSC (constant rate, synchronised across cores: the
//! kernel checked), the clock is the `rdtsc` instruction itself: a few
//! cycles, no vDSO call. Elsewhere it is `clock_gettime(CLOCK_MONOTONIC)`
//! in nanoseconds. The choice and the tick rate are settled once in the
//! master before the first fork (`init_clock`), so every worker counts in
//! the same ticks; the master turns ticks into seconds.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Methods counted by name; any other is `other`.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
/// Status classes.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const CELLS: usize = METHODS.len() * CLASSES.len();
/// Upper bounds of the duration histogram's buckets, in seconds
/// (Prometheus' usual spread, from half a millisecond); one more bucket,
/// `+Inf`, follows.
pub const BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];
pub const BUCKETS: usize = BOUNDS.len() + 1;
/// The refusals counted: a request the server answered itself, for a
/// limit or a malformed head, before any app code ran.
pub const REFUSED: [u16; 5] = [400, 408, 413, 414, 431];

// --- the clock ---------------------------------------------------------------

/// The TSC is the clock (else `CLOCK_MONOTONIC`).
static USE_TSC: AtomicBool = AtomicBool::new(false);
/// Ticks per second of the clock in use.
static TICK_RATE: AtomicU64 = AtomicU64::new(1_000_000_000);
/// `BOUNDS` in ticks (nanoseconds until `init_clock` says otherwise).
static TICK_BOUNDS: [AtomicU64; BOUNDS.len()] = {
    let mut b = [const { AtomicU64::new(0) }; BOUNDS.len()];
    let mut i = 0;
    while i < BOUNDS.len() {
        b[i] = AtomicU64::new((BOUNDS[i] * 1e9) as u64);
        i += 1;
    }
    b
};

/// Picks the clock and measures its rate (about 2 ms, once, in the master
/// before it forks).
pub fn init_clock() {
    if !tsc_usable() {
        return;
    }
    // The TSC's rate against CLOCK_MONOTONIC over 2 ms of spinning: the two
    // reads of each pair are a few nanoseconds apart, so the rate is good
    // to about 1e-5.
    let (t0, n0) = (tsc(), monotonic_ns());
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2) {
        std::hint::spin_loop();
    }
    let (t1, n1) = (tsc(), monotonic_ns());
    let (dt, dn) = (t1.wrapping_sub(t0), n1.saturating_sub(n0));
    if dn == 0 || dt == 0 {
        return;
    }
    let rate = (dt as u128 * 1_000_000_000 / dn as u128) as u64;
    TICK_RATE.store(rate, Ordering::Relaxed);
    for (b, s) in TICK_BOUNDS.iter().zip(BOUNDS) {
        b.store((s * rate as f64) as u64, Ordering::Relaxed);
    }
    USE_TSC.store(true, Ordering::Relaxed);
}

/// x86-64, and the kernel keeps time with the TSC: it found it invariant
/// and in step across cores.
fn tsc_usable() -> bool {
    cfg!(target_arch = "x86_64")
        && std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .is_ok_and(|s| s.trim() == "tsc")
}

#[inline]
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no memory effects and exists on every x86-64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        monotonic_ns()
    }
}

/// The clock when it is not the TSC: out of line, so that the common
/// path around `ticks` keeps its registers.
#[cold]
#[inline(never)]
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Now, in ticks of the clock in use.
#[inline]
pub fn ticks() -> u64 {
    if USE_TSC.load(Ordering::Relaxed) {
        tsc()
    } else {
        monotonic_ns()
    }
}

/// Ticks in seconds.
pub fn seconds(ticks: u64) -> f64 {
    ticks as f64 / TICK_RATE.load(Ordering::Relaxed) as f64
}

/// Ticks as a duration (an access log's `%(D)s`).
pub fn duration(ticks: u64) -> Duration {
    let rate = u128::from(TICK_RATE.load(Ordering::Relaxed).max(1));
    Duration::from_nanos((u128::from(ticks) * 1_000_000_000 / rate) as u64)
}

// --- the counters ------------------------------------------------------------

/// One app thread's counts (in its scoreboard slot). Only that thread
/// writes them, once per request: what is cheaper to count per event-loop
/// turn (bytes received) is in `LoopCounters`.
#[repr(C)]
pub struct ThreadCounters {
    /// Requests ended, by method and status class (method-major).
    requests: [AtomicU64; CELLS],
    /// Durations, one count per bucket (not cumulative).
    buckets: [AtomicU64; BUCKETS],
    /// The durations' sum, in ticks.
    ticks: AtomicU64,
    /// Response body bytes sent.
    bytes_out: AtomicU64,
    /// Heads refused on this thread, by `REFUSED` code.
    refused: [AtomicU64; REFUSED.len()],
}

/// One worker's counts kept by its event-loop thread (the only writer).
#[repr(C)]
pub struct LoopCounters {
    /// Connections open and, of those, idle between requests: gauges,
    /// rewritten every sweep (a quarter second).
    open: AtomicU64,
    idle: AtomicU64,
    /// Requests parked with their body iterator (a gauge, as above).
    parked: AtomicU64,
    /// Bytes received from clients (counted per turn of the loop).
    received: AtomicU64,
    /// Clients closed for being too slow (head, body, or reading).
    slow: AtomicU64,
    /// Requests refused before app code, by `REFUSED` code.
    refused: [AtomicU64; REFUSED.len()],
}

/// Adds `n` to a counter only one thread writes: a load and a store.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// A method's index in `METHODS`. The common methods are matched as one
/// number each (the bytes loaded at once), not byte by byte.
#[inline]
pub fn method_index(method: &[u8]) -> u8 {
    const GET: u32 = key(b"GET") as u32;
    const PUT: u32 = key(b"PUT") as u32;
    const HEAD: u32 = key(b"HEAD") as u32;
    const POST: u32 = key(b"POST") as u32;
    match *method {
        [a, b, c] => match u32::from_le_bytes([a, b, c, 0]) {
            GET => 0,
            PUT => 3,
            _ => 7,
        },
        [a, b, c, d] => match u32::from_le_bytes([a, b, c, d]) {
            HEAD => 1,
            POST => 2,
            _ => 7,
        },
        _ => method_index_slow(method),
    }
}

/// The other methods, compared byte by byte (inline, not a call: the
/// counting function stays a leaf, with no registers to save).
#[inline(always)]
fn method_index_slow(method: &[u8]) -> u8 {
    match method {
        b"GET" => 0,
        b"HEAD" => 1,
        b"POST" => 2,
        b"PUT" => 3,
        b"DELETE" => 4,
        b"PATCH" => 5,
        b"OPTIONS" => 6,
        _ => 7,
    }
}

/// A method's first bytes as a little-endian number (the match key of
/// `method_code`).
const fn key(m: &[u8]) -> u64 {
    let mut k = 0;
    let mut i = 0;
    while i < m.len() {
        k |= (m[i] as u64) << (8 * i);
        i += 1;
    }
    k
}

fn refused_index(status: u16) -> Option<usize> {
    REFUSED.iter().position(|&s| s == status)
}

impl ThreadCounters {
    /// A request of method `method` (its `method_index`) ended with
    /// `status` after `elapsed` ticks.
    #[inline]
    pub fn end(&self, elapsed: u64, method: u8, status: u16, bytes_out: u64) {
        // 1xx..5xx; anything else (a status the app made up) counts as 5xx.
        let class = match status {
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            100..=199 => 0,
            _ => 4,
        };
        let cell = (method as usize).min(METHODS.len() - 1) * CLASSES.len() + class;
        bump(&self.requests[cell], 1);
        // Most requests end in the first buckets: the scan stops early.
        let mut b = 0;
        while b < BOUNDS.len() && elapsed > TICK_BOUNDS[b].load(Ordering::Relaxed) {
            b += 1;
        }
        bump(&self.buckets[b], 1);
        bump(&self.ticks, elapsed);
        bump(&self.bytes_out, bytes_out);
    }

    /// A head refused on this thread (before app code).
    pub fn refused(&self, status: u16) {
        if let Some(i) = refused_index(status) {
            bump(&self.refused[i], 1);
        }
    }

    pub fn reset(&self) {
        let all = self
            .requests
            .iter()
            .chain(&self.buckets)
            .chain([&self.ticks, &self.bytes_out])
            .chain(&self.refused);
        for c in all {
            c.store(0, Ordering::Relaxed);
        }
    }
}

impl LoopCounters {
    pub fn connections(&self, open: usize, idle: usize, parked: usize) {
        self.open.store(open as u64, Ordering::Relaxed);
        self.idle.store(idle as u64, Ordering::Relaxed);
        self.parked.store(parked as u64, Ordering::Relaxed);
    }

    /// Bytes read from clients in one turn of the loop.
    #[inline]
    pub fn received(&self, n: usize) {
        bump(&self.received, n as u64);
    }

    pub fn slow(&self, n: usize) {
        if n > 0 {
            bump(&self.slow, n as u64);
        }
    }

    pub fn refused(&self, status: u16) {
        if let Some(i) = refused_index(status) {
            bump(&self.refused[i], 1);
        }
    }

    pub fn reset(&self) {
        let all = [
            &self.open,
            &self.idle,
            &self.parked,
            &self.received,
            &self.slow,
        ]
        .into_iter()
        .chain(&self.refused);
        for c in all {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Counts summed over threads and workers, on the master's side: what a
/// scrape reports, and what the master keeps of the workers that exited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// By method then class (`METHODS` × `CLASSES`).
    pub requests: Vec<u64>,
    pub buckets: [u64; BUCKETS],
    pub ticks: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub refused: [u64; REFUSED.len()],
    pub slow: u64,
    /// Gauges (live workers only; never folded).
    pub open: u64,
    pub idle: u64,
    pub parked: u64,
}

impl Totals {
    pub fn new() -> Totals {
        Totals {
            requests: vec![0; CELLS],
            ..Totals::default()
        }
    }

    pub fn add_thread(&mut self, t: &ThreadCounters) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (sum, c) in self.requests.iter_mut().zip(&t.requests) {
            *sum += load(c);
        }
        for (sum, c) in self.buckets.iter_mut().zip(&t.buckets) {
            *sum += load(c);
        }
        self.ticks += load(&t.ticks);
        self.bytes_out += load(&t.bytes_out);
        for (sum, c) in self.refused.iter_mut().zip(&t.refused) {
            *sum += load(c);
        }
    }

    pub fn add_loop(&mut self, l: &LoopCounters, gauges: bool) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.slow += load(&l.slow);
        self.bytes_in += load(&l.received);
        for (sum, c) in self.refused.iter_mut().zip(&l.refused) {
            *sum += load(c);
        }
        if gauges {
            self.open += load(&l.open);
            self.idle += load(&l.idle);
            self.parked += load(&l.parked);
        }
    }

    /// Adds another sum (the counters; the gauges too).
    pub fn add(&mut self, o: &Totals) {
        if self.requests.len() < CELLS {
            self.requests.resize(CELLS, 0);
        }
        for (sum, c) in self.requests.iter_mut().zip(&o.requests) {
            *sum += c;
        }
        for (sum, c) in self.buckets.iter_mut().zip(&o.buckets) {
            *sum += c;
        }
        self.ticks += o.ticks;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        for (sum, c) in self.refused.iter_mut().zip(&o.refused) {
            *sum += c;
        }
        self.slow += o.slow;
        self.open += o.open;
        self.idle += o.idle;
        self.parked += o.parked;
    }

    /// Requests ended.
    pub fn ended(&self) -> u64 {
        self.requests.iter().sum()
    }

    /// Requests of method `m` and class `c` (indices).
    pub fn cell(&self, m: usize, c: usize) -> u64 {
        self.requests
            .get(m * CLASSES.len() + c)
            .copied()
            .unwrap_or(0)
    }

    pub fn seconds(&self) -> f64 {
        seconds(self.ticks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters() -> &'static ThreadCounters {
        // SAFETY: all-zero bytes are valid atomics.
        Box::leak(Box::new(unsafe { std::mem::zeroed::<ThreadCounters>() }))
    }

    #[test]
    fn requests_land_in_their_cells_and_buckets() {
        init_clock();
        let t = counters();
        t.end(1, method_index(b"GET"), 200, 20);
        t.end(0, method_index(b"BREW"), 418, 2);
        // 2 s: the 2.5 s bucket.
        let rate = TICK_RATE.load(Ordering::Relaxed);
        t.end(2 * rate, method_index(b"POST"), 999, 0);
        t.refused(431);
        t.refused(503);
        let mut sum = Totals::new();
        sum.add_thread(t);
        assert_eq!(sum.ended(), 3);
        assert_eq!(sum.cell(0, 1), 1, "GET 2xx");
        assert_eq!(sum.cell(7, 3), 1, "other 4xx");
        assert_eq!(sum.cell(2, 4), 1, "a made-up status counts as 5xx");
        assert_eq!(sum.buckets.iter().sum::<u64>(), 3);
        assert_eq!(sum.buckets[10], 1, "2 s is in the le=2.5 bucket");
        assert!(
            sum.seconds() >= 2.0 && sum.seconds() < 2.5,
            "{}",
            sum.seconds()
        );
        assert_eq!(sum.bytes_out, 22);
        assert_eq!(sum.refused, [0, 0, 0, 0, 1], "503 is not a refusal");
        for (i, m) in METHODS.iter().enumerate().take(7) {
            assert_eq!(method_index(m.as_bytes()), i as u8, "{m}");
        }
        for m in [
            &b"GETS"[..],
            b"GE",
            b"",
            b"OPTIONSX",
            b"get",
            b"PUTS",
            b"HEA",
            b"POSTS",
        ] {
            assert_eq!(method_index(m), 7, "{m:?}");
        }
        t.reset();
        let mut zero = Totals::new();
        zero.add_thread(t);
        assert_eq!(zero, Totals::new());
        let mut folded = Totals::new();
        folded.add(&sum);
        folded.add(&sum);
        assert_eq!(folded.ended(), 6);
    }
}
