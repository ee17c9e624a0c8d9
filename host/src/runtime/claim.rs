//! `-t` costs only the hung request: when the master finds a request
//! running in application code too long, the event loop answers its client
//! (503, or a closed connection if its response had begun) while the app
//! thread is still stuck in the plugin. The loop and that thread must never
//! both write to the socket, and the loop must never take over a request
//! that has moved on. A `Claim` per app thread settles it with one word.
//!
//! The word holds the thread's current stretch number (the same numbers
//! the scoreboard publishes, see `scoreboard.rs`) and a state. The thread
//! changes it with plain stores while no app code runs (the loop only takes
//! over a running stretch), and with an atomic exchange where the loop may
//! race it: around a socket write made from app code, on progress, and
//! when app code stops. The loop takes a stretch over by one compare-
//! exchange on exactly the number it was told about; from then on every
//! one of the thread's exchanges fails, and the thread drops the request
//! without touching the socket again. Per request that is a store when app
//! code starts and one swap when it stops; nothing on the plain path of a
//! response sent after the app returned.
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crate::runtime::scoreboard::ThreadSlot;

/// No app code runs for the thread (between requests, or its request
/// waits for its client).
const IDLE: u64 = 0;
/// App code runs; nothing of its response reached the socket, and no
/// earlier response was held back with it: a 503 is still a clean answer.
const CLEAN: u64 = 1;
/// App code runs; some of its response (or an earlier one) went out.
const DIRTY: u64 = 2;
/// App code is writing to the socket right now.
const WRITING: u64 = 3;
/// The event loop took the request over.
const ABANDONED: u64 = 4;
const STATE: u64 = 0b111;

/// One app thread's claim on the connection it serves.
#[derive(Debug, Default)]
pub struct Claim {
    /// number << 3 | state.
    word: AtomicU64,
    /// The socket of the connection the thread serves.
    fd: AtomicI32,
}

/// What the event loop got when it tried to take a stretch over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// Taken: answer on `fd`; `clean` when nothing was sent yet.
    Taken { fd: RawFd, clean: bool },
    /// The thread is writing this instant: try again on the next turn.
    Busy,
    /// That stretch is over (the request ended or made progress).
    Gone,
}

impl Claim {
    /// The event loop: take over the stretch `number`, if it still runs.
    pub fn take_over(&self, number: u64) -> Takeover {
        let word = self.word.load(Ordering::Acquire);
        if word >> 3 != number {
            return Takeover::Gone;
        }
        let state = word & STATE;
        match state {
            CLEAN | DIRTY => {
                let taken = number << 3 | ABANDONED;
                match self
                    .word
                    .compare_exchange(word, taken, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => Takeover::Taken {
                        fd: self.fd.load(Ordering::Relaxed),
                        clean: state == CLEAN,
                    },
                    // It moved this instant: look again next turn.
                    Err(_) => Takeover::Busy,
                }
            }
            WRITING => Takeover::Busy,
            _ => Takeover::Gone,
        }
    }
}

/// The app thread's side: its stretches of app code, published to the
/// scoreboard (for the master's `-t`) and to its claim (for the loop).
pub struct Stint<'a> {
    claim: &'a Claim,
    slot: Option<&'static ThreadSlot>,
    /// The current stretch's number; numbers only grow.
    number: u64,
    /// What this thread last stored in `claim.word`.
    word: u64,
    /// The event loop took the current request over: drop it, write
    /// nothing more to its socket.
    pub abandoned: bool,
}

impl<'a> Stint<'a> {
    pub fn new(claim: &'a Claim, slot: Option<&'static ThreadSlot>) -> Stint<'a> {
        Stint {
            claim,
            slot,
            number: 0,
            word: IDLE,
            abandoned: false,
        }
    }

    fn running(&self) -> bool {
        self.word & STATE != IDLE
    }

    /// App code starts (or resumes) for a request whose line is `line`, on
    /// the connection `fd`; `clean` when nothing of it or before it waits
    /// unsent.
    pub fn begin(&mut self, line: &[u8], fd: RawFd, clean: bool) {
        self.number += 1;
        if let Some(slot) = self.slot {
            slot.begin(self.number, line);
        }
        self.claim.fd.store(fd, Ordering::Relaxed);
        self.word = self.number << 3 | if clean { CLEAN } else { DIRTY };
        // Nothing can race this store: the loop only takes over a stretch
        // that is running, and none is.
        self.claim.word.store(self.word, Ordering::Release);
    }

    /// The app produced a chunk: a new stretch, timed afresh. False if the
    /// request was taken over.
    pub fn progress(&mut self) -> bool {
        if !self.running() {
            return !self.abandoned;
        }
        let word = (self.number + 1) << 3 | (self.word & STATE);
        if !self.exchange(word) {
            return false;
        }
        self.number += 1;
        if let Some(slot) = self.slot {
            slot.progress(self.number);
        }
        true
    }

    /// App code stops for a while (the request waits for its client). False
    /// if the request was taken over.
    pub fn pause(&mut self) -> bool {
        if !self.running() {
            return !self.abandoned;
        }
        if let Some(slot) = self.slot {
            slot.end(self.number);
        }
        self.exchange(self.number << 3 | IDLE)
    }

    /// The request's app code is over. False if it was taken over.
    pub fn end(&mut self) -> bool {
        if !self.running() {
            return !self.abandoned;
        }
        if let Some(slot) = self.slot {
            slot.end(self.number);
        }
        self.word = self.number << 3 | IDLE;
        let was = self.claim.word.swap(self.word, Ordering::AcqRel);
        if was & STATE == ABANDONED {
            self.abandoned = true;
        }
        !self.abandoned
    }

    /// Runs `write` (a socket write; it returns whether bytes went out)
    /// unless the request was taken over: None then, and nothing written.
    pub fn write<R>(&mut self, write: impl FnOnce() -> (R, bool)) -> Option<R> {
        if self.abandoned {
            return None;
        }
        if !self.running() {
            // No app code runs: the loop takes nothing over now.
            return Some(write().0);
        }
        let state = self.word & STATE;
        if !self.exchange(self.number << 3 | WRITING) {
            return None;
        }
        let (r, sent) = write();
        let after = if sent { DIRTY } else { state };
        self.word = self.number << 3 | after;
        // Only this thread moves the word out of WRITING.
        self.claim.word.store(self.word, Ordering::Release);
        Some(r)
    }

    /// Moves the claim from what this thread last stored to `word`; fails
    /// (and marks the request abandoned) if the loop took it over.
    fn exchange(&mut self, word: u64) -> bool {
        match self
            .claim
            .word
            .compare_exchange(self.word, word, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.word = word;
                true
            }
            Err(_) => {
                self.abandoned = true;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_takes_over_only_the_stretch_it_was_told_about() {
        let claim = Claim::default();
        let mut stint = Stint::new(&claim, None);
        assert_eq!(claim.take_over(1), Takeover::Gone, "nothing runs yet");
        stint.begin(b"GET / HTTP/1.1", 7, true);
        // Progress renumbers: an order for the old number comes too late.
        assert!(stint.progress());
        assert_eq!(claim.take_over(1), Takeover::Gone);
        assert_eq!(claim.take_over(2), Takeover::Taken { fd: 7, clean: true });
        // The thread finds out at its next step, and writes nothing.
        assert_eq!(
            stint.write(|| panic!("written after the takeover")),
            None::<((), bool)>.map(|_| ())
        );
        assert!(stint.abandoned);
        assert!(!stint.end());
    }

    #[test]
    fn a_write_makes_the_request_dirty_and_an_ended_one_cannot_be_taken() {
        let claim = Claim::default();
        let mut stint = Stint::new(&claim, None);
        stint.begin(b"GET / HTTP/1.1", 3, true);
        assert_eq!(stint.write(|| ((), false)), Some(()));
        assert_eq!(claim.take_over(1), Takeover::Taken { fd: 3, clean: true });
        let claim = Claim::default();
        let mut stint = Stint::new(&claim, None);
        stint.begin(b"GET / HTTP/1.1", 3, true);
        assert_eq!(stint.write(|| ((), true)), Some(()));
        assert!(stint.pause(), "waiting for the client");
        assert_eq!(
            claim.take_over(1),
            Takeover::Gone,
            "client time is not app time"
        );
        stint.begin(b"GET / HTTP/1.1", 3, false);
        assert_eq!(
            claim.take_over(2),
            Takeover::Taken {
                fd: 3,
                clean: false
            }
        );
        let claim = Claim::default();
        let mut stint = Stint::new(&claim, None);
        stint.begin(b"GET / HTTP/1.1", 3, true);
        assert!(stint.end());
        assert_eq!(claim.take_over(1), Takeover::Gone);
        // Outside app code writes need no claim.
        assert_eq!(stint.write(|| (5, true)), Some(5));
    }
}
