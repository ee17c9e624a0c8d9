//! How slow a client may be. Two rules, both from one grace period:
//! - a transfer must average a minimum rate once the grace has passed
//!   (Apache's mod_reqtimeout `MinRate`): a gap limit alone would let a
//!   client keep a connection forever by moving one byte just inside every
//!   gap;
//! - and no transfer may stand still for longer than the grace (nginx's
//!   `client_body_timeout` and `send_timeout`): a rate alone would let a
//!   client that moved a lot early (a reader whose kernel took megabytes
//!   into a large receive window) stop for as long as that bought it.
//!
//! A slow but steady client (a phone on a poor network) passes both.
use std::time::{Duration, Instant};

/// The rule: after `grace`, at least `min_rate` bytes per second on
/// average, and never `grace` without a byte; with `min_rate` 0,
/// everything within `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub grace: Duration,
    pub min_rate: u64,
}

/// One transfer measured against a `MinRate`: since when, how many bytes
/// moved since, and when the last of them moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    since: Instant,
    bytes: u64,
    last: Instant,
}

impl Rate {
    pub fn new(since: Instant) -> Rate {
        Rate {
            since,
            bytes: 0,
            last: since,
        }
    }

    /// `n` more bytes moved at `now`.
    pub fn add(&mut self, n: usize, now: Instant) {
        if n > 0 {
            self.bytes = self.bytes.saturating_add(n as u64);
            self.last = now;
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// When the transfer falls behind `rule` if no further byte moves.
    pub fn deadline(&self, rule: MinRate) -> Instant {
        let earned = match rule.min_rate {
            0 => Duration::ZERO,
            r => Duration::from_secs_f64(self.bytes as f64 / r as f64),
        };
        // Far in the future rather than an overflow panic.
        let far = || self.since + Duration::from_secs(86_400 * 365);
        let by_rate = self
            .since
            .checked_add(rule.grace.saturating_add(earned))
            .unwrap_or_else(far);
        let by_gap = self.last.checked_add(rule.grace).unwrap_or_else(far);
        by_rate.min(by_gap)
    }

    /// Whether the transfer has fallen behind `rule` at `now`.
    pub fn too_slow(&self, now: Instant, rule: MinRate) -> bool {
        now > self.deadline(rule)
    }
}

/// A client slow to take a response. What counts as taken is what the
/// client's TCP acknowledged, not what our kernel accepted: a client that
/// does not read still lets the kernel buffer megabytes (the send buffer
/// grows on its own), and those must not buy it time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Bytes written to the socket since the stall began.
    written: u64,
    /// Bytes the kernel held unacknowledged when it began.
    unacked_at_start: u64,
    /// The delivered bytes as last seen, against the rule.
    rate: Rate,
}

impl Stall {
    /// A stall beginning at `now`, with `unacked` bytes in the kernel.
    pub fn new(now: Instant, unacked: usize) -> Stall {
        Stall {
            written: 0,
            unacked_at_start: unacked as u64,
            rate: Rate::new(now),
        }
    }

    pub fn wrote(&mut self, n: usize) {
        self.written = self.written.saturating_add(n as u64);
    }

    /// Takes note of what the client has acknowledged by `now`, given what
    /// the kernel holds unacknowledged.
    pub fn observe(&mut self, unacked: usize, now: Instant) {
        let delivered = (self.written + self.unacked_at_start).saturating_sub(unacked as u64);
        let new = delivered.saturating_sub(self.rate.bytes);
        self.rate.add(new as usize, now);
    }

    /// Bytes the client has acknowledged (as last observed).
    pub fn delivered(&self) -> u64 {
        self.rate.bytes
    }

    pub fn deadline(&self, rule: MinRate) -> Instant {
        self.rate.deadline(rule)
    }

    pub fn too_slow(&self, now: Instant, rule: MinRate) -> bool {
        self.rate.too_slow(now, rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: MinRate = MinRate {
        grace: Duration::from_secs(10),
        min_rate: 1024,
    };

    #[test]
    fn a_drip_falls_behind_after_the_grace_and_a_steady_client_never_does() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        // One byte every 5 s: behind as soon as the grace is over.
        let mut drip = Rate::new(t0);
        drip.add(1, at(5.0));
        drip.add(1, at(10.0));
        assert!(!drip.too_slow(at(9.9), RULE));
        assert!(drip.too_slow(at(10.1), RULE));
        // 2 KiB/s, twice the minimum: never behind.
        let mut steady = Rate::new(t0);
        for s in 1..=600 {
            steady.add(2048, at(s as f64));
            assert!(!steady.too_slow(at(s as f64 + 0.5), RULE), "at {s} s");
        }
        // With no rate, the grace is the whole allowance.
        let rule = MinRate {
            min_rate: 0,
            ..RULE
        };
        let mut all = Rate::new(t0);
        all.add(1 << 30, at(1.0));
        assert!(all.too_slow(at(10.1), rule));
    }

    #[test]
    fn a_client_that_moved_a_lot_early_may_still_not_stand_still() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut burst = Rate::new(t0);
        burst.add(50 << 20, at(1));
        // 50 MiB at 1 KiB/s would buy 14 hours; the gap rule says 10 s.
        assert!(!burst.too_slow(at(10), RULE));
        assert!(burst.too_slow(at(12), RULE));
    }

    #[test]
    fn bytes_the_kernel_buffers_for_a_client_that_does_not_read_buy_no_time() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut stall = Stall::new(t0, 1000);
        // 4 MB written, all of it still unacknowledged: nothing delivered.
        stall.wrote(4 << 20);
        stall.observe(1000 + (4 << 20), at(5));
        assert_eq!(stall.delivered(), 0);
        assert!(stall.too_slow(at(11), RULE));
        // The client reads it all: 4 MB delivered, and it moved at 8 s.
        let mut stall = Stall::new(t0, 1000);
        stall.wrote(4 << 20);
        stall.observe(0, at(8));
        assert!(!stall.too_slow(at(17), RULE));
        assert!(stall.too_slow(at(19), RULE));
    }
}
