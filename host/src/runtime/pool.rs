//! The app threads of a worker, and how they share the event loop.
//!
//! Exactly one thread leads at a time: it owns the event loop (`Loop`),
//! turns it until connections are ready, keeps one for itself, queues the
//! rest for the others, hands the loop on and serves its connection
//! inline. So a plugin call never runs while the loop waits on it: a
//! blocked call holds its own thread, and whichever thread is free leads
//! meanwhile. With one thread nothing ever crosses threads: it polls,
//! serves, polls. There is one thread more than calls may run at once
//! (`--threads`), so one is always free to lead.
//!
//! A request parked by its thread (a client that stopped reading) comes
//! back as a job pinned to that thread: call, next and close of a request
//! run on one thread (the header promises it, and the Rust SDK relies on
//! it for its per-thread bodies).
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::runtime::claim::{Claim, Stint, Takeover};
use crate::runtime::config::Shared;
use crate::runtime::event_loop::{Host, Job, Loop};
use crate::runtime::serve::{AppThread, Outcome};
use crate::runtime::Stop;

/// How long the loop may stay unattended while its last leader serves a
/// request: the spare thread takes it over after this. It bounds how long
/// a blocking plugin call can hold up other connections, and costs one
/// wakeup per interval while calls run.
const TAKEOVER: Duration = Duration::from_millis(1);
/// After this long without a plugin call the spare stops watching (no
/// wakeups on an idle server); the next call wakes it instead.
const QUIET: Duration = Duration::from_secs(1);

/// What the threads share.
pub struct Core {
    state: Mutex<CoreState>,
    /// Signalled when a job or the loop becomes free for an idle thread.
    changed: Condvar,
    /// Signalled once `stop` is set (only `run` waits on it, so a
    /// `notify_one` on `changed` always reaches a thread that can serve).
    stopped: Condvar,
    /// The leader is (about to be) blocked in poll and must be woken for
    /// returns. Set before the leader looks at `CoreState::returns`,
    /// checked after a return is pushed (SeqCst both), so no return waits
    /// for a timeout.
    polling: AtomicBool,
    waker: Waker,
    /// `--threads`: how many plugin calls may run at once.
    threads: usize,
    /// Each original thread's claim on the connection it serves (`-t`).
    claims: Vec<Claim>,
}

struct CoreState {
    /// The event loop, when no thread leads.
    lp: Option<Box<Loop>>,
    /// How many times the loop was put down (its leader went to serve): the
    /// spare knows the loop was left unattended for a whole wait when this
    /// did not change meanwhile. A count, not a time, so that the request
    /// path reads no clock.
    lp_downs: u64,
    /// Connections with a complete request, waiting for any thread.
    jobs: VecDeque<Job>,
    /// Parked requests to resume, each on the thread that parked it.
    pinned: Vec<VecDeque<Job>>,
    /// How many jobs `pinned` holds.
    pinned_jobs: usize,
    /// Connections coming back from serving, for the leader to take in.
    /// Under the same lock as the jobs: a thread gives its connection back
    /// and takes its next job in one round.
    returns: Vec<(usize, Outcome)>,
    /// Plugin calls that may start now: `--threads` minus those running.
    permits: usize,
    /// An idle thread watches the loop while calls run (the spare).
    spare: Spare,
    /// Idle threads other than the spare, waiting to be woken.
    idle: usize,
    /// Plugin calls started so far: the spare keeps watching while this
    /// moves, and sleeps once it has stood still for QUIET.
    calls: u64,
    /// Plugin calls ended so far: when this stands still for a whole
    /// TAKEOVER while no call may start, every call is stuck, and the
    /// queued requests are checked (see `Loop::refuse_malformed`).
    ended: u64,
    /// Threads started so far (replacements for abandoned ones number on).
    spawned: usize,
    /// Set once the loop decided to stop: every thread exits.
    stop: Option<Stop>,
}

impl CoreState {
    /// The next job for `thread`, if a call may start: its permit is taken.
    /// Its own parked requests come first.
    fn start_call(&mut self, thread: usize) -> Option<Job> {
        if self.permits == 0 {
            return None;
        }
        let job = match self.pinned.get_mut(thread).and_then(VecDeque::pop_front) {
            Some(job) => {
                self.pinned_jobs -= 1;
                job
            }
            None => self.jobs.pop_front()?,
        };
        self.permits -= 1;
        self.calls += 1;
        Some(job)
    }

    /// Parked requests wait for a thread other than `thread`.
    fn pinned_elsewhere(&self, thread: usize) -> bool {
        self.pinned_jobs > self.pinned.get(thread).map_or(0, VecDeque::len)
    }
}

/// The one idle thread that keeps the loop attended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spare {
    /// No thread is idle: every one leads or serves.
    None,
    /// Waiting with a TAKEOVER timeout: it picks up a loop left unattended
    /// by a leader that went to serve, within TAKEOVER.
    Watching,
    /// Waiting without a timeout (nothing was running): a leader putting
    /// the loop down must wake it.
    Sleeping,
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, CoreState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a served connection back to the loop (`st` is the state
    /// lock's guard), waking the leader if it waits in poll.
    fn give_back(&self, st: &mut CoreState, idx: usize, outcome: Outcome) {
        st.returns.push((idx, outcome));
        if self.polling.load(Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }
}

/// The loop's view of the threads around it (see `event_loop::Host`).
struct Around<'a> {
    core: &'a Arc<Core>,
    shared: &'a Arc<Shared>,
}

impl Host for Around<'_> {
    fn polling(&self, on: bool) {
        self.core.polling.store(on, Ordering::SeqCst);
    }

    fn take_returns(&self, into: &mut Vec<(usize, Outcome)>) {
        std::mem::swap(into, &mut self.core.lock().returns);
    }

    fn take_over(&self, thread: usize, number: u64) -> Takeover {
        match self.core.claims.get(thread) {
            Some(claim) => claim.take_over(number),
            None => Takeover::Gone,
        }
    }

    fn replace(&self, thread: usize) {
        // The abandoned thread keeps its permit until it comes back, if
        // ever: give one back now, and a thread to use it, so the requests
        // still queued on this worker are served while it retires.
        let index = {
            let mut st = self.core.lock();
            st.permits += 1;
            st.spawned += 1;
            st.spawned - 1
        };
        tracing::info!("app thread {thread} abandoned; thread {index} takes its place");
        if let Err(e) = spawn(index, self.shared, self.core) {
            tracing::error!("cannot start a replacement app thread: {e}");
        }
        self.core.changed.notify_all();
    }

    fn publish(&self, ready: &mut Vec<(Job, Option<usize>)>) {
        let mut st = self.core.lock();
        queue(&mut st, ready.drain(..), usize::MAX);
        // Whoever is idle takes them; the leader goes on with its turn.
        self.core.changed.notify_all();
    }
}

/// Queues work the loop found; true if some is pinned to a thread other
/// than `me`.
fn queue(st: &mut CoreState, ready: impl Iterator<Item = (Job, Option<usize>)>, me: usize) -> bool {
    let mut others = false;
    for (job, pinned) in ready {
        match pinned {
            None => st.jobs.push_back(job),
            Some(thread) => {
                if st.pinned.len() <= thread {
                    st.pinned.resize_with(thread + 1, VecDeque::new);
                }
                st.pinned[thread].push_back(job);
                st.pinned_jobs += 1;
                others |= thread != me;
            }
        }
    }
    others
}

/// Starts the app threads around `lp`; returns once the loop decided to
/// stop (after joining the threads when everything drained).
pub fn run(lp: Box<Loop>, shared: Arc<Shared>) -> std::io::Result<Stop> {
    let threads = shared.config.threads.max(1);
    let waker = lp.waker()?;
    let core = Arc::new(Core {
        state: Mutex::new(CoreState {
            lp: Some(lp),
            lp_downs: 0,
            jobs: VecDeque::new(),
            pinned: Vec::new(),
            pinned_jobs: 0,
            returns: Vec::new(),
            permits: threads,
            spare: Spare::None,
            idle: 0,
            calls: 0,
            ended: 0,
            spawned: threads + 1,
            stop: None,
        }),
        changed: Condvar::new(),
        stopped: Condvar::new(),
        polling: AtomicBool::new(false),
        waker,
        threads,
        claims: (0..=threads).map(|_| Claim::default()).collect(),
    });
    // One thread more than calls may run, so one is always free to lead
    // the loop, whatever the plugin's calls are doing.
    let handles = (0..=threads)
        .map(|i| spawn(i, &shared, &core))
        .collect::<std::io::Result<Vec<_>>>()?;
    let stop = {
        let mut st = core.lock();
        loop {
            if let Some(stop) = st.stop {
                break stop;
            }
            st = core.stopped.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    };
    if stop == (Stop::Graceful { drained: true }) {
        for t in handles {
            let _ = t.join();
        }
    }
    Ok(stop)
}

fn spawn(
    index: usize,
    shared: &Arc<Shared>,
    core: &Arc<Core>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (shared, core) = (Arc::clone(shared), Arc::clone(core));
    std::thread::Builder::new()
        .name(format!("app-{index}"))
        .spawn(move || app_thread(index, &shared, &core))
}

/// What a thread does next.
enum Turn {
    Serve(Job),
    Lead(Box<Loop>),
}

fn app_thread(index: usize, shared: &Arc<Shared>, core: &Arc<Core>) {
    // A replacement for an abandoned thread has no scoreboard slot (the
    // worker is retiring) and a claim of its own that nothing takes over.
    let own_claim;
    let (claim, slot) = match core.claims.get(index) {
        Some(claim) => (claim, shared.monitor.and_then(|m| m.thread(index))),
        None => {
            own_claim = Claim::default();
            (&own_claim, None)
        }
    };
    let mut me = AppThread::new(index, shared, Stint::new(claim, slot), slot);
    // Set when this thread put the loop down because no call could start:
    // it then comes back for the loop only as the spare (below).
    let mut yielded = false;
    // This thread's last call ended: its connection and its permit are
    // given back at the next lock.
    let mut finished: Option<(usize, Outcome)> = None;
    let mut memory = SpareMemory {
        calls: 0,
        busy_at: Instant::now(),
    };
    loop {
        let turn = {
            let mut st = core.lock();
            if let Some((idx, outcome)) = finished.take() {
                core.give_back(&mut st, idx, outcome);
                if me.stint.abandoned {
                    // Its permit went to the replacement (`Around::replace`).
                    return;
                }
                st.permits += 1;
                st.ended += 1;
                if st.pinned_elsewhere(index) {
                    // A parked request waits for its own thread and a
                    // permit: it has the permit now.
                    core.changed.notify_all();
                }
            }
            // Whether this thread comes as the spare: it takes over only a
            // loop left down for TAKEOVER (a leader stuck in a long call),
            // not one put down for a call of a few microseconds.
            let mut woke = if std::mem::take(&mut yielded) {
                Woke::AsSpare { watched: None }
            } else {
                Woke::Plain
            };
            loop {
                if st.stop.is_some() {
                    return;
                }
                if let Some(job) = st.start_call(index) {
                    hand_on_spare(core, &st);
                    break Turn::Serve(job);
                }
                let (may_lead, stuck) = match woke {
                    Woke::Plain => (true, false),
                    Woke::AsSpare { watched: None } => (false, false),
                    Woke::AsSpare { watched: Some(w) } => (
                        w.downs == st.lp_downs,
                        w.ended == st.ended && st.permits == 0,
                    ),
                };
                if st.lp.is_some() && may_lead {
                    let mut lp = st.lp.take().expect("checked");
                    if stuck {
                        lp.refuse_malformed(&mut st.jobs);
                    }
                    hand_on_spare(core, &st);
                    break Turn::Lead(lp);
                }
                (st, woke) = idle_wait(core, st, &mut memory);
            }
        };
        let job = match turn {
            Turn::Serve(job) => job,
            Turn::Lead(mut lp) => {
                // Turn the loop until it has work (or decides to stop).
                let around = Around { core, shared };
                while !lp.has_ready() && lp.stop().is_none() {
                    lp.turn(&around);
                }
                let mut st = core.lock();
                if let Some(stop) = lp.stop() {
                    st.stop = Some(stop);
                    core.changed.notify_all();
                    core.stopped.notify_all();
                    return;
                }
                let others = queue(&mut st, lp.take_ready(), index);
                st.lp = Some(lp);
                st.lp_downs += 1;
                if others {
                    // Parked requests to resume on other threads: wake them
                    // all (this is the slow path of slow clients).
                    core.changed.notify_all();
                }
                // Serve one here if a call may start. Otherwise every
                // permit is in use: leave the jobs to the threads finishing
                // their calls and wait (as the spare, this thread comes
                // back for the loop after TAKEOVER) rather than poll beside
                // them and wake for each connection they give back.
                let Some(mine) = st.start_call(index) else {
                    yielded = true;
                    continue;
                };
                // Idle threads are woken only for what this one cannot do:
                // more jobs with permits for them, or a loop no spare
                // watches. The common case — one request, a spare
                // watching, or no other thread at all — wakes nobody.
                let helpers = st.jobs.len().min(st.permits);
                for _ in 0..helpers {
                    core.changed.notify_one();
                }
                if helpers == 0 && st.spare == Spare::Sleeping {
                    core.changed.notify_one();
                }
                hand_on_spare(core, &st);
                mine
            }
        };
        let idx = job.idx;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| me.work(job.work)))
            .unwrap_or_else(|_| {
                tracing::error!("internal error while serving a connection; it was closed");
                me = AppThread::new(index, shared, Stint::new(claim, slot), slot);
                Outcome::Lost
            });
        // Given back under the lock the next turn takes anyway.
        finished = Some((idx, outcome));
    }
}

/// A thread is about to serve or lead: if that leaves idle threads but no
/// spare (this one was it, or the spare was just woken for a job), wake one
/// to take the role. Otherwise a loop put down later would have nobody to
/// pick it up while every busy thread sits in a long call.
fn hand_on_spare(core: &Core, st: &CoreState) {
    if st.spare == Spare::None && st.idle > 0 {
        core.changed.notify_one();
    }
}

/// How an idle thread came back from waiting.
#[derive(Clone, Copy)]
enum Woke {
    /// Woken (or never waited): it may take a loop that is down.
    Plain,
    /// As the spare, or right after putting the loop down itself: it takes
    /// the loop only if it was left unattended for a whole TAKEOVER wait,
    /// not a loop put down for a call of a few microseconds.
    AsSpare { watched: Option<Watch> },
}

/// The counts a spare saw when it began a TAKEOVER wait that ran out.
/// `lp_downs` unchanged since: the loop was unattended all along. `ended`
/// unchanged too, with no permit free: no call ended, so every call is
/// stuck, and requests queued behind them would wait without end.
#[derive(Clone, Copy)]
struct Watch {
    downs: u64,
    ended: u64,
}

/// What the spare remembers across its waits, so that it can tell a busy
/// server from a quiet one without the request path reading the clock.
struct SpareMemory {
    /// `CoreState::calls` at its last look.
    calls: u64,
    /// When it last saw calls running or `calls` moving.
    busy_at: Instant,
}

/// An idle thread waits for a job or the loop. The first idle thread is
/// the spare: while calls run (or ran within QUIET) it wakes every
/// TAKEOVER to pick up a loop left unattended; the others, and a spare of
/// a quiet server, sleep until woken.
fn idle_wait<'a>(
    core: &'a Core,
    st: MutexGuard<'a, CoreState>,
    memory: &mut SpareMemory,
) -> (MutexGuard<'a, CoreState>, Woke) {
    if st.spare != Spare::None {
        let mut st = st;
        st.idle += 1;
        let mut st = core.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        st.idle -= 1;
        return (st, Woke::Plain);
    }
    // One clock read per wait of the spare (at most one per TAKEOVER while
    // the server is busy), none per request.
    let now = Instant::now();
    if st.permits < core.threads || st.calls != memory.calls {
        memory.calls = st.calls;
        memory.busy_at = now;
    }
    let mut st = st;
    if now.duration_since(memory.busy_at) < QUIET {
        st.spare = Spare::Watching;
        let seen = Watch {
            downs: st.lp_downs,
            ended: st.ended,
        };
        let (mut st, waited) = core
            .changed
            .wait_timeout(st, TAKEOVER)
            .unwrap_or_else(|p| p.into_inner());
        st.spare = Spare::None;
        // Only a wait that ran its whole TAKEOVER vouches for anything.
        let watched = waited.timed_out().then_some(seen);
        (st, Woke::AsSpare { watched })
    } else {
        st.spare = Spare::Sleeping;
        let mut st = core.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        st.spare = Spare::None;
        (st, Woke::Plain)
    }
}
