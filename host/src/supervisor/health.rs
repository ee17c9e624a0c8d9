//! How the master judges what crashes: the backoff of each place in the
//! pool, and a new build's probation after a reload. Pure bookkeeping (the
//! master's loop acts on the answers), so the rules are tested here.
//!
//! **Backoff per slot.** The pool has `-w` slots; a worker of the current
//! build holds one. A slot whose workers keep dying young waits longer and
//! longer before its next start (1 s … 30 s): a crash loop costs a bounded
//! number of forks. It is per slot, so an attacker who crashes workers with
//! one request delays the restart of those workers only, and the master
//! keeps at least one worker up while the build boots fine (`master`).
//! Once no worker has crashed for `MIN_UPTIME`, every slot is forgiven.
//!
//! **Probation.** A build that loads and runs init is promoted, but may
//! still crash on every request. For `--settle-period` after the reload
//! its crashes are counted; if it crashes `ROLLBACK_CRASHES` times while
//! the build it replaced had served without a crash for `CLEAN_WINDOW`,
//! the master rolls back to that build (still staged in memory).
use std::time::{Duration, Instant};

use crate::supervisor::staging::Build;

/// A worker that dies sooner than this after it started counts as a crash
/// in a row for its slot; one that ran longer starts the count afresh. No
/// crash anywhere for this long forgives every slot.
pub const MIN_UPTIME: Duration = Duration::from_secs(5);
/// Longest wait before a slot starts a worker again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Crashes of a new build within its settle period that roll it back.
pub const ROLLBACK_CRASHES: u32 = 2;
/// The replaced build must have run this long without a crash to be rolled
/// back to: otherwise both builds crash, and the newer one stays.
pub const CLEAN_WINDOW: Duration = Duration::from_secs(60);

/// One place in the pool, and its record of crashes in a row.
#[derive(Debug, Clone)]
pub struct Slot {
    crashes: u32,
    /// A worker may start in this slot from then on.
    start_at: Instant,
}

impl Slot {
    pub fn new(now: Instant) -> Slot {
        Slot {
            crashes: 0,
            start_at: now,
        }
    }

    /// The worker in this slot died unexpectedly `uptime` after it started:
    /// the wait before the next one (zero the first time in a row, then
    /// 1 s, 2 s, 4 s … up to `MAX_BACKOFF`).
    pub fn crashed(&mut self, uptime: Duration, now: Instant) -> Duration {
        if uptime >= MIN_UPTIME {
            self.crashes = 0;
        }
        self.crashes += 1;
        let delay = match self.crashes {
            1 => Duration::ZERO,
            n => Duration::from_secs(1 << (n - 2).min(5)).min(MAX_BACKOFF),
        };
        self.start_at = now + delay;
        delay
    }

    /// Crashes in a row so far.
    pub fn crashes(&self) -> u32 {
        self.crashes
    }

    pub fn start_at(&self) -> Instant {
        self.start_at
    }

    /// May a worker start in this slot now?
    pub fn may_start(&self, now: Instant) -> bool {
        now >= self.start_at
    }

    /// Forgets the crashes (the pool has been quiet, or a rollback removed
    /// the build that crashed).
    pub fn forgive(&mut self, now: Instant) {
        self.crashes = 0;
        self.start_at = now;
    }
}

/// A build just promoted by a reload, watched for its settle period.
#[derive(Debug)]
pub struct Probation {
    /// The promoted build's generation.
    pub generation: u32,
    /// The end of the settle period.
    pub until: Instant,
    /// How long the settle period is (for messages).
    pub settle: Duration,
    /// The build it replaced: what a rollback brings back.
    pub fallback: Build,
    /// When a worker of the fallback build last crashed.
    pub fallback_crashed_at: Option<Instant>,
    crashes: u32,
    /// The first crash, described, for the report.
    first: Option<String>,
}

/// What to do with a build on probation.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still watching it.
    Watching,
    /// It served its settle period; `crashes` times it crashed all the
    /// same (the fallback was no better).
    Settled { crashes: u32 },
    /// Roll back; why, as "crashed N times within Ss of taking over (…)".
    RollBack(String),
}

impl Probation {
    pub fn new(
        generation: u32,
        settle: Duration,
        fallback: Build,
        fallback_crashed_at: Option<Instant>,
        now: Instant,
    ) -> Probation {
        Probation {
            generation,
            until: now + settle,
            settle,
            fallback,
            fallback_crashed_at,
            crashes: 0,
            first: None,
        }
    }

    /// A worker of build `generation` crashed (`what`: how).
    pub fn crashed(&mut self, generation: u32, what: &str, now: Instant) {
        if generation == self.generation {
            self.crashes += 1;
            self.first.get_or_insert_with(|| what.to_string());
        } else if generation == self.fallback.generation {
            self.fallback_crashed_at = Some(now);
        }
    }

    /// Did the fallback run without a crash for `CLEAN_WINDOW` up to now?
    fn fallback_clean(&self, now: Instant) -> bool {
        self.fallback_crashed_at
            .is_none_or(|at| now.duration_since(at) >= CLEAN_WINDOW)
    }

    pub fn verdict(&self, now: Instant) -> Verdict {
        if self.crashes >= ROLLBACK_CRASHES && self.fallback_clean(now) {
            return Verdict::RollBack(format!(
                "crashed {} times within {}s of taking over (first: {})",
                self.crashes,
                self.settle.as_secs(),
                self.first.as_deref().unwrap_or("?")
            ));
        }
        if now >= self.until {
            return Verdict::Settled {
                crashes: self.crashes,
            };
        }
        Verdict::Watching
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::staging::stage;

    fn build(generation: u32) -> Build {
        let dir = std::env::temp_dir().join(format!("health-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("lib{generation}.so"));
        std::fs::write(&path, format!("build {generation}")).unwrap();
        stage(&path, generation).unwrap()
    }

    #[test]
    fn a_slot_backs_off_and_starts_afresh_after_a_long_run() {
        let t0 = Instant::now();
        let mut slot = Slot::new(t0);
        assert!(slot.may_start(t0));
        let quick = Duration::from_millis(100);
        assert_eq!(slot.crashed(quick, t0), Duration::ZERO, "first crash");
        assert!(slot.may_start(t0));
        let delays: Vec<u64> = (0..8).map(|_| slot.crashed(quick, t0).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert!(!slot.may_start(t0 + Duration::from_secs(29)));
        assert!(slot.may_start(t0 + MAX_BACKOFF));
        // A worker that ran MIN_UPTIME: its crash is the first in a row.
        assert_eq!(slot.crashed(MIN_UPTIME, t0), Duration::ZERO);
        assert_eq!(slot.crashes(), 1);
        slot.crashed(quick, t0);
        slot.forgive(t0);
        assert_eq!(slot.crashes(), 0);
        assert!(slot.may_start(t0));
    }

    #[test]
    fn a_build_that_crashes_repeatedly_is_rolled_back() {
        let t0 = Instant::now();
        let settle = Duration::from_secs(3);
        let mut p = Probation::new(2, settle, build(1), None, t0);
        assert_eq!(p.verdict(t0), Verdict::Watching);
        p.crashed(2, "worker 7 exited: killed by signal 11 (SIGSEGV)", t0);
        assert_eq!(
            p.verdict(t0),
            Verdict::Watching,
            "one crash is not a pattern"
        );
        p.crashed(2, "worker 8 exited: killed by signal 11 (SIGSEGV)", t0);
        match p.verdict(t0) {
            Verdict::RollBack(why) => {
                assert!(why.starts_with("crashed 2 times within 3s"), "{why}");
                assert!(why.contains("worker 7"), "the first crash: {why}");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn no_rollback_to_a_build_that_crashed_too() {
        let t0 = Instant::now();
        let settle = Duration::from_secs(3);
        // The fallback crashed 10 s before the reload.
        let mut p = Probation::new(2, settle, build(1), Some(t0), t0 + Duration::from_secs(10));
        let t1 = t0 + Duration::from_secs(11);
        p.crashed(2, "a", t1);
        p.crashed(2, "b", t1);
        p.crashed(3, "another build", t1);
        assert_eq!(p.verdict(t1), Verdict::Watching);
        assert_eq!(
            p.verdict(t0 + Duration::from_secs(13)),
            Verdict::Settled { crashes: 2 }
        );
        // Crashes of the fallback's own workers during the settle period
        // count against it too.
        let mut q = Probation::new(2, settle, build(1), None, t0);
        q.crashed(1, "old worker", t0);
        q.crashed(2, "a", t0);
        q.crashed(2, "b", t0);
        assert_eq!(q.verdict(t0), Verdict::Watching);
    }

    #[test]
    fn a_quiet_build_settles() {
        let t0 = Instant::now();
        let p = Probation::new(2, Duration::from_secs(3), build(1), None, t0);
        assert_eq!(
            p.verdict(t0 + Duration::from_millis(2999)),
            Verdict::Watching
        );
        assert_eq!(
            p.verdict(t0 + Duration::from_secs(3)),
            Verdict::Settled { crashes: 0 }
        );
    }
}
