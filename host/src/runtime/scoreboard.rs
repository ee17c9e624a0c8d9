//! The scoreboard: memory shared by the master and its workers (an
//! anonymous shared mapping made before the first fork), through which
//! workers report their state, heartbeat and running requests, and the
//! master reads them. Heartbeats go through memory, not files: no syscall
//! on a worker's hot path, nothing on disk.
//!
//! Everything in it is an atomic, so both sides may touch it at any time.
//! A request line is published seqlock-style under a per-thread request
//! number: the number is stored with its "running" bit clear, the bytes
//! written, then the bit set; a reader that sees the same running number
//! before and after copying the bytes has a consistent line.
//!
//! A running request carries no start time: the request path reads no
//! clock for it. The master times a request from the first time it sees
//! its number (it looks every 100 ms), so a request's age is known to
//! within a look, and never overstated. A number stands for one stretch
//! of application code without progress (`-t` is app time): a chunk the
//! app produces renumbers the request, and time the thread spends waiting
//! for its client is no number at all.
use std::io;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::runtime::metrics::{LoopCounters, ThreadCounters, Totals};

/// Most workers a master runs at once (`-w` plus TTIN, plus a reload's
/// new generation booting beside the old one).
pub const MAX_WORKERS: usize = 256;
/// Bytes of a request line kept for the timeout log (a multiple of 8: the
/// line is stored a word at a time).
const LINE_MAX: usize = 120;
const LINE_WORDS: usize = LINE_MAX / 8;
/// Bytes of a boot failure reason.
const MESSAGE_MAX: usize = 480;

/// What a worker is doing, as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum WorkerState {
    Free = 0,
    /// Forked; loading the plugin and running its init.
    Booting = 1,
    /// Serving.
    Ready = 2,
}

/// One worker's public state.
#[repr(C)]
pub struct WorkerSlot {
    state: AtomicU32,
    /// Monotonic milliseconds (`now_ms`) of the event loop's last turn.
    heartbeat_ms: AtomicU64,
    /// Requests counted toward `--max-requests` (only when it is set: the
    /// threads share this counter, so each count is a locked add).
    requests: AtomicU64,
    /// Set once the worker reached `--max-requests`: replace me.
    recycle: AtomicU32,
    message_len: AtomicU32,
    message: [AtomicU8; MESSAGE_MAX],
    /// The master's order to abandon one request that ran past `-t`: the
    /// request's number (as `ThreadSlot::running` gives it), then its app
    /// thread plus one (0: no order). The thread word is written last and
    /// taken first, so a worker that sees it sees the number too. The
    /// master gives at most one order per worker (it retires the worker
    /// with it), so the pair is never overwritten under the worker.
    abort_number: AtomicU64,
    abort_thread: AtomicU64,
    /// What the worker's event-loop thread counts (`metrics`).
    pub counters: LoopCounters,
}

/// One app thread's running request. Aligned to a cache line: each
/// thread writes its own slot for every request, and must not share a
/// line with its neighbour's.
#[repr(C, align(64))]
pub struct ThreadSlot {
    /// The number of this thread's latest stretch of app code times two,
    /// plus one while it runs: 0 or even = no app code running.
    request: AtomicU64,
    /// Requests this thread answered. Its thread is the only writer, so
    /// counting is a plain load and store, not a locked add.
    requests: AtomicU64,
    line_len: AtomicU32,
    /// The line's bytes, eight to a word (little-endian order), so that
    /// publishing it costs a few stores rather than one per byte.
    line: [AtomicU64; LINE_WORDS],
    /// This thread's request metrics (`metrics`).
    pub counters: ThreadCounters,
}

/// The shared mapping: MAX_WORKERS worker slots, then `threads` thread
/// slots per worker. Never unmapped: it lives as long as the process.
pub struct Scoreboard {
    workers: &'static [WorkerSlot],
    threads: &'static [ThreadSlot],
    per_worker: usize,
}

impl Scoreboard {
    /// Maps the scoreboard for workers with `threads` app threads each.
    pub fn new(threads: usize) -> io::Result<Scoreboard> {
        let per_worker = threads.max(1);
        let workers_len = MAX_WORKERS * std::mem::size_of::<WorkerSlot>();
        let threads_len = MAX_WORKERS * per_worker * std::mem::size_of::<ThreadSlot>();
        let len = workers_len + threads_len;
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the mapping is `len` bytes, page-aligned, zero-filled, and
        // never unmapped, so 'static; all-zero bytes are valid atomics (and
        // the Free state); MAX_WORKERS WorkerSlots (a multiple of 8 bytes
        // each) are a multiple of the ThreadSlot alignment (64), so the
        // second array is aligned.
        unsafe {
            let workers = std::slice::from_raw_parts(base as *const WorkerSlot, MAX_WORKERS);
            let threads = std::slice::from_raw_parts(
                (base as *const u8).add(workers_len) as *const ThreadSlot,
                MAX_WORKERS * per_worker,
            );
            Ok(Scoreboard {
                workers,
                threads,
                per_worker,
            })
        }
    }

    pub fn worker(&self, index: usize) -> &'static WorkerSlot {
        &self.workers[index]
    }

    pub fn thread(&self, worker: usize, thread: usize) -> &'static ThreadSlot {
        &self.threads[worker * self.per_worker + thread]
    }

    pub fn threads_per_worker(&self) -> usize {
        self.per_worker
    }

    /// A free worker slot, cleared for a new worker.
    pub fn claim(&self) -> Option<usize> {
        let index = self
            .workers
            .iter()
            .position(|w| w.state() == WorkerState::Free)?;
        self.reset(index);
        // Marked booting by the master before the fork, so the slot is
        // not handed out twice.
        self.workers[index].set_state(WorkerState::Booting);
        Some(index)
    }

    /// Clears a slot for reuse (after its worker exited).
    pub fn reset(&self, index: usize) {
        let w = &self.workers[index];
        w.state.store(WorkerState::Free as u32, Ordering::Relaxed);
        w.heartbeat_ms.store(0, Ordering::Relaxed);
        w.requests.store(0, Ordering::Relaxed);
        w.recycle.store(0, Ordering::Relaxed);
        w.message_len.store(0, Ordering::Relaxed);
        w.abort_number.store(0, Ordering::Relaxed);
        w.abort_thread.store(0, Ordering::Relaxed);
        w.counters.reset();
        for t in 0..self.per_worker {
            let t = self.thread(index, t);
            t.request.store(0, Ordering::Relaxed);
            t.requests.store(0, Ordering::Relaxed);
            t.counters.reset();
        }
    }

    /// A worker's metrics: its threads' and its event loop's counts (the
    /// connection gauges with them if `gauges`).
    pub fn totals(&self, worker: usize, gauges: bool) -> Totals {
        let mut sum = Totals::new();
        for t in 0..self.per_worker {
            sum.add_thread(&self.thread(worker, t).counters);
        }
        sum.add_loop(&self.workers[worker].counters, gauges);
        sum
    }

    /// The requests a worker answered: the sum over its threads.
    pub fn requests(&self, worker: usize) -> u64 {
        (0..self.per_worker)
            .map(|t| self.thread(worker, t).requests.load(Ordering::Relaxed))
            .sum()
    }
}

impl WorkerSlot {
    pub fn state(&self) -> WorkerState {
        match self.state.load(Ordering::Acquire) {
            1 => WorkerState::Booting,
            2 => WorkerState::Ready,
            _ => WorkerState::Free,
        }
    }

    pub fn set_state(&self, s: WorkerState) {
        self.state.store(s as u32, Ordering::Release);
    }

    pub fn heartbeat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn last_heartbeat_ms(&self) -> u64 {
        self.heartbeat_ms.load(Ordering::Relaxed)
    }

    /// Counts `n` requests toward `--max-requests`; true the first time
    /// `max` is reached. With `max` 0 (no limit) nothing is counted, and
    /// the locked add is saved.
    pub fn count_requests(&self, n: u64, max: u64) -> bool {
        if max == 0 {
            return false;
        }
        let n = self.requests.fetch_add(n, Ordering::Relaxed) + n;
        n >= max && self.recycle.swap(1, Ordering::Relaxed) == 0
    }

    pub fn wants_recycle(&self) -> bool {
        self.recycle.load(Ordering::Relaxed) != 0
    }

    /// Leaves a reason for the master (a boot failure).
    pub fn set_message(&self, text: &str) {
        let bytes = text.as_bytes();
        let n = bytes.len().min(MESSAGE_MAX);
        for (slot, &b) in self.message.iter().zip(&bytes[..n]) {
            slot.store(b, Ordering::Relaxed);
        }
        self.message_len.store(n as u32, Ordering::Release);
    }

    pub fn message(&self) -> Option<String> {
        let n = self.message_len.load(Ordering::Acquire) as usize;
        (n > 0).then(|| {
            let bytes: Vec<u8> = self.message[..n.min(MESSAGE_MAX)]
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }

    /// The master: "abandon request `number` running on app thread
    /// `thread`" (it ran past `-t`). The worker is sent SIGUSR2 next, and
    /// takes the order with [`WorkerSlot::take_abort_order`].
    pub fn order_abort(&self, thread: usize, number: u64) {
        self.abort_number.store(number, Ordering::Relaxed);
        // Publishes the number with it.
        self.abort_thread
            .store(thread as u64 + 1, Ordering::Release);
    }

    /// The worker: the master's abort order (thread, request number), once;
    /// None afterwards, or if there is none.
    pub fn take_abort_order(&self) -> Option<(usize, u64)> {
        let thread = self.abort_thread.swap(0, Ordering::Acquire);
        (thread != 0).then(|| {
            (
                (thread - 1) as usize,
                self.abort_number.load(Ordering::Relaxed),
            )
        })
    }
}

impl ThreadSlot {
    /// App code starts running for request `number` (numbers only grow,
    /// and are this thread's): publish its line (cut at LINE_MAX bytes).
    /// Only this slot's thread may call it.
    pub fn begin(&self, number: u64, line: &[u8]) {
        // Not running yet while the line is written.
        self.request.store(number << 1, Ordering::Relaxed);
        // The line's stores stay after that one (a seqlock's write side).
        fence(Ordering::Release);
        // Stored straight from the receive buffer, a word at a time: this
        // runs for every request.
        let line = &line[..line.len().min(LINE_MAX)];
        let n = line.len();
        let mut words = line.chunks_exact(8);
        for (word, bytes) in self.line.iter().zip(&mut words) {
            let bytes: [u8; 8] = bytes.try_into().expect("chunks of 8");
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            // The last, partial word: the eight bytes that end the line,
            // shifted into place. (Copying the rest into a zeroed word and
            // loading that stalls on every request: a load cannot take its
            // value from several smaller stores still in flight.)
            let word = match line.len().checked_sub(8) {
                Some(start) => {
                    let tail: [u8; 8] = line[start..].try_into().expect("eight bytes");
                    u64::from_le_bytes(tail) >> (8 * (8 - rest.len()))
                }
                None => rest.iter().rev().fold(0, |w, &b| w << 8 | u64::from(b)),
            };
            self.line[n / 8].store(word, Ordering::Relaxed);
        }
        self.line_len.store(n as u32, Ordering::Relaxed);
        self.request.store(number << 1 | 1, Ordering::Release);
    }

    /// The running request made progress (produced a chunk): it goes on
    /// under a new `number`, so the master times it afresh. The line stays.
    pub fn progress(&self, number: u64) {
        self.request.store(number << 1 | 1, Ordering::Release);
    }

    /// No app code runs on this thread any more (the request ended, or it
    /// waits for its client). Only this slot's thread may call it.
    pub fn end(&self, number: u64) {
        self.request.store(number << 1, Ordering::Release);
    }

    /// Counts `n` more requests answered by this thread; only this
    /// thread may call it.
    pub fn count(&self, n: u64) {
        let total = self.requests.load(Ordering::Relaxed) + n;
        self.requests.store(total, Ordering::Relaxed);
    }

    /// The number of the stretch of app code running, if any (the
    /// master times it; see `running`).
    pub fn running_number(&self) -> Option<u64> {
        let number = self.request.load(Ordering::Acquire);
        (number & 1 == 1).then_some(number >> 1)
    }

    /// The running request: (its number, its line), if any and read
    /// consistently. The number tells one request from the next.
    pub fn running(&self) -> Option<(u64, String)> {
        let number = self.request.load(Ordering::Acquire);
        if number & 1 == 0 {
            return None;
        }
        let n = (self.line_len.load(Ordering::Relaxed) as usize).min(LINE_MAX);
        let mut bytes: Vec<u8> = self
            .line
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        bytes.truncate(n);
        // The line's loads stay before the check (a seqlock's read side).
        fence(Ordering::Acquire);
        if self.request.load(Ordering::Relaxed) != number {
            return None;
        }
        Some((number >> 1, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// Milliseconds on the system-wide monotonic clock (the same in every
/// process, unlike `Instant`, which cannot be shared). The coarse clock:
/// a worker reads it once per event-loop turn (the heartbeat), it costs a
/// quarter of the precise one, and its few milliseconds of granularity are
/// nothing next to the timeouts (seconds) it serves.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// What a worker needs to report through the scoreboard.
#[derive(Clone, Copy)]
pub struct Monitor {
    pub board: &'static Scoreboard,
    pub worker: usize,
    /// `--max-requests` plus this worker's jitter; 0 = unlimited.
    pub max_requests: u64,
}

impl Monitor {
    pub fn slot(&self) -> &'static WorkerSlot {
        self.board.worker(self.worker)
    }

    pub fn thread(&self, t: usize) -> Option<&'static ThreadSlot> {
        (t < self.board.threads_per_worker()).then(|| self.board.thread(self.worker, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip() {
        let board = Box::leak(Box::new(Scoreboard::new(2).unwrap()));
        let i = board.claim().unwrap();
        assert_eq!(board.worker(i).state(), WorkerState::Booting);
        assert_ne!(
            board.claim().unwrap(),
            i,
            "a claimed slot is not handed out twice"
        );
        let w = board.worker(i);
        w.set_message("init failed: no database");
        assert_eq!(w.message().as_deref(), Some("init failed: no database"));
        assert!(!w.count_requests(1, 3));
        assert!(!w.count_requests(1, 3));
        assert!(w.count_requests(1, 3), "third request reaches the limit");
        assert!(!w.count_requests(1, 3), "reported once");
        assert!(!w.count_requests(5, 3), "still reported once");
        assert!(w.wants_recycle());
        let t = board.thread(i, 1);
        assert_eq!(t.running(), None);
        t.begin(1, b"GET /hang HTTP/1.1");
        let (number, line) = t.running().unwrap();
        assert_eq!(number, 1, "the thread's first request");
        assert_eq!(line, "GET /hang HTTP/1.1");
        t.progress(2);
        assert_eq!(
            t.running(),
            Some((2, "GET /hang HTTP/1.1".to_string())),
            "progress renumbers and keeps the line"
        );
        t.end(2);
        assert_eq!(t.running(), None);
        t.begin(3, b"GET /next HTTP/1.1");
        assert_eq!(t.running().map(|(n, _)| n), Some(3), "a new number");
        t.end(3);
        t.count(3);
        board.thread(i, 0).count(2);
        t.count(1);
        assert_eq!(board.requests(i), 6, "the sum over the worker's threads");
        board.reset(i);
        assert_eq!(t.running(), None, "reset clears the running request");
        assert_eq!(board.worker(i).state(), WorkerState::Free);
        assert_eq!(board.requests(i), 0);
    }

    #[test]
    fn abort_orders_are_taken_once() {
        let board = Box::leak(Box::new(Scoreboard::new(4).unwrap()));
        let i = board.claim().unwrap();
        let w = board.worker(i);
        assert_eq!(w.take_abort_order(), None, "no order yet");
        w.order_abort(0, 7);
        assert_eq!(w.take_abort_order(), Some((0, 7)), "thread 0 is an order");
        assert_eq!(w.take_abort_order(), None, "taken once");
        w.order_abort(3, u64::MAX >> 1);
        board.reset(i);
        assert_eq!(w.take_abort_order(), None, "a reset slot has no order");
    }

    #[test]
    fn abort_orders_cross_the_fork() {
        let board = Box::leak(Box::new(Scoreboard::new(4).unwrap()));
        let i = board.claim().unwrap();
        let w = board.worker(i);
        w.order_abort(3, 42);
        // SAFETY: the child only touches the shared mapping's atomics and
        // calls _exit, which is all that is safe after forking a
        // multithreaded process (the test harness).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = w.take_abort_order() == Some((3, 42)) && w.take_abort_order().is_none();
            // SAFETY: _exit ends the child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid out-pointer.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child did not see the order (status {status})"
        );
        assert_eq!(
            w.take_abort_order(),
            None,
            "the child took the order for both processes"
        );
    }

    #[test]
    fn request_lines_of_every_length_round_trip() {
        let board = Box::leak(Box::new(Scoreboard::new(1).unwrap()));
        let t = board.thread(0, 0);
        let long: Vec<u8> = (0..200u8).map(|i| b'a' + i % 26).collect();
        let other: Vec<u8> = (0..200u8).map(|i| b'A' + i % 26).collect();
        for len in 0..=200 {
            // A longer, different line first, so stale bytes would show.
            t.begin(2 * len as u64 + 1, &long);
            t.begin(2 * len as u64 + 2, &other[..len]);
            let (_, line) = t.running().unwrap();
            assert_eq!(line.as_bytes(), &other[..len.min(LINE_MAX)], "length {len}");
        }
    }
}
