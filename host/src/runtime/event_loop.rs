//! The serving core a worker runs: one event-loop thread that accepts
//! connections and waits for their requests, and `--threads` app threads
//! that run the plugin.
//!
//! The event loop never calls plugin code, so an app that blocks (sleeps,
//! waits on a database) stalls only the app thread it runs on, never the
//! accepting of new clients or the idle keep-alive connections. A
//! connection is lent to an app thread only once a complete request head is
//! buffered, and comes back when every buffered request is answered; while
//! it waits, it holds no buffer (see `conn::Conn`).
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpListener as StdListener;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::http1::response::encode_error;
use crate::net::transport::recv_append;
use crate::runtime::config::Shared;
use crate::runtime::serve::{
    check_head, head_ready, release_buffer, serve, take_buffer, Conn, Outcome, Scratch,
};

const WAKER: Token = Token(usize::MAX);
const SIG_GRACEFUL: Token = Token(usize::MAX - 1);
const SIG_FAST: Token = Token(usize::MAX - 2);
const SIG_REOPEN: Token = Token(usize::MAX - 3);
/// Listener i has token LISTENER_BASE + i; connections use 0..LISTENER_BASE.
const LISTENER_BASE: usize = usize::MAX / 2;
/// How often idle connections are checked against their timeouts.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How long the loop may stay unattended while its last leader serves a
/// request: the spare thread takes it over after this. It bounds how long
/// a blocking plugin call can hold up other connections, and costs one
/// wakeup per interval while calls run.
const TAKEOVER: Duration = Duration::from_millis(1);
/// After this long without a plugin call the spare stops watching (no
/// wakeups on an idle server); the next call wakes it instead.
const QUIET: Duration = Duration::from_secs(1);

/// A connection slot: connections are addressed by their slot index,
/// which is also their poll token.
enum Slot {
    Free,
    /// Owned by the event loop, waiting for a complete request head.
    Waiting(Conn),
    /// Lent out to be served; `missed` when an event for it was taken
    /// meanwhile (its edge is gone: read it when it comes back).
    Busy {
        missed: bool,
    },
    /// Closing: our side is shut down for writing, and what the client
    /// still sends is read and dropped until it closes too (or LINGER
    /// passes). Closing with unread input would make the kernel send a
    /// reset, which can destroy the response we just sent before the client
    /// reads it — the 400 or 413 it most needs to see.
    /// The count is the bytes dropped so far.
    Lingering(Conn, usize),
}

/// How long a stopping worker keeps an idle keep-alive connection open for
/// a request that may already be on its way.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long a closing connection may keep sending before we hang up.
const LINGER: Duration = Duration::from_secs(2);
/// How much a closing connection may send before we hang up anyway.
const LINGER_MAX_BYTES: usize = 1024 * 1024;

/// What the threads share. Exactly one of them leads at a time: it owns
/// the event loop (`Loop`), turns it until connections are ready, keeps one
/// for itself, queues the rest for the others, hands the loop on and serves
/// its connection inline. So a plugin call never runs while the loop waits
/// on it: a blocked call holds its own thread, and whichever thread is free
/// leads meanwhile. With one thread nothing ever crosses threads: it polls,
/// serves, polls.
struct Core {
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
}

struct CoreState {
    /// The event loop, when no thread leads.
    lp: Option<Box<Loop>>,
    /// How many times the loop was put down (its leader went to serve): the
    /// spare knows the loop was left unattended for a whole wait when this
    /// did not change meanwhile. A count, not a time, so that the request
    /// path reads no clock.
    lp_downs: u64,
    /// Connections with a complete request, waiting for a thread.
    jobs: VecDeque<Job>,
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
    /// Set once the loop decided to stop: every thread exits.
    stop: Option<Stop>,
}

impl CoreState {
    /// The next queued job, if a call may start: its permit is taken.
    fn start_call(&mut self) -> Option<Job> {
        if self.permits == 0 {
            return None;
        }
        let job = self.jobs.pop_front()?;
        self.permits -= 1;
        self.calls += 1;
        Some(job)
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

/// How the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// TERM: in-flight requests finished (or the graceful timeout passed).
    Graceful { drained: bool },
    /// INT/QUIT: stopped at once.
    Fast,
}

/// Serves on `listeners` until TERM, INT or QUIT. Returns after in-flight
/// requests are done (TERM), or at once (INT/QUIT, or TERM's graceful
/// timeout: then requests may still be running in the plugin).
pub fn run(listeners: Vec<StdListener>, shared: Arc<Shared>) -> io::Result<Stop> {
    let poll = Poll::new()?;
    let listeners = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            l.set_nonblocking(true)?;
            let mut l = TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
            Ok(l)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let graceful_pipe = signal_pipe(&poll, SIG_GRACEFUL, &[signal_hook::consts::SIGTERM])?;
    let fast_pipe = signal_pipe(
        &poll,
        SIG_FAST,
        &[signal_hook::consts::SIGINT, signal_hook::consts::SIGQUIT],
    )?;
    let reopen_pipe = signal_pipe(&poll, SIG_REOPEN, &[signal_hook::consts::SIGUSR1])?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let lp = Box::new(Loop {
        poll,
        events: Events::with_capacity(1024),
        tokens: Vec::with_capacity(1024),
        slots: Vec::new(),
        free: Vec::new(),
        busy: 0,
        ready: Vec::new(),
        returned: Vec::new(),
        listeners,
        graceful_pipe,
        fast_pipe,
        reopen_pipe,
        next_sweep: Instant::now() + SWEEP_EVERY,
        stopped_at: None,
        stop_deadline: None,
        stop: None,
        shared: Arc::clone(&shared),
    });
    let core = Arc::new(Core {
        state: Mutex::new(CoreState {
            lp: Some(lp),
            lp_downs: 0,
            jobs: VecDeque::new(),
            returns: Vec::new(),
            permits: shared.config.threads.max(1),
            spare: Spare::None,
            idle: 0,
            calls: 0,
            ended: 0,
            stop: None,
        }),
        changed: Condvar::new(),
        stopped: Condvar::new(),
        polling: AtomicBool::new(false),
        waker,
        threads: shared.config.threads.max(1),
    });
    // One thread more than calls may run, so one is always free to lead
    // the loop, whatever the plugin's calls are doing.
    let threads = (0..=shared.config.threads.max(1))
        .map(|i| {
            let (shared, core) = (Arc::clone(&shared), Arc::clone(&core));
            std::thread::Builder::new()
                .name(format!("app-{i}"))
                .spawn(move || app_thread(i, &shared, &core))
        })
        .collect::<io::Result<Vec<_>>>()?;
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
        for t in threads {
            let _ = t.join();
        }
    }
    Ok(stop)
}

/// What a thread does next.
enum Turn {
    Serve(usize, Conn),
    Lead(Box<Loop>),
}

fn app_thread(index: usize, shared: &Shared, core: &Core) {
    let slot = shared.monitor.and_then(|m| m.thread(index));
    let mut scratch = Scratch::default().reporting_to(slot);
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
                st.permits += 1;
                st.ended += 1;
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
                if let Some(job) = st.start_call() {
                    hand_on_spare(core, &st);
                    break Turn::Serve(job.idx, job.conn);
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
        let (idx, conn) = match turn {
            Turn::Serve(idx, conn) => (idx, conn),
            Turn::Lead(mut lp) => {
                // Turn the loop until it has work (or decides to stop).
                while lp.ready.is_empty() && lp.stop.is_none() {
                    lp.turn(core);
                }
                let mut st = core.lock();
                if let Some(stop) = lp.stop {
                    st.stop = Some(stop);
                    core.changed.notify_all();
                    core.stopped.notify_all();
                    return;
                }
                st.jobs.extend(lp.ready.drain(..).map(|(idx, conn)| Job {
                    idx,
                    conn,
                    checked: false,
                }));
                st.lp = Some(lp);
                st.lp_downs += 1;
                // Serve one here if a call may start. Otherwise every
                // permit is in use: leave the jobs to the threads finishing
                // their calls and wait (as the spare, this thread comes
                // back for the loop after TAKEOVER) rather than poll beside
                // them and wake for each connection they give back.
                let Some(mine) = st.start_call() else {
                    yielded = true;
                    continue;
                };
                let mine = (mine.idx, mine.conn);
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
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            serve(conn, shared, &mut scratch)
        }))
        .unwrap_or_else(|_| {
            tracing::error!("internal error while serving a connection; it was closed");
            scratch = Scratch::default().reporting_to(slot);
            Outcome::Gone
        });
        // Given back under the lock the next turn takes anyway.
        finished = Some((idx, outcome));
    }
}

/// A connection with a complete request head, waiting for a thread.
struct Job {
    idx: usize,
    conn: Conn,
    /// Its head was parsed while every call was stuck (it is not again).
    checked: bool,
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

/// The event loop: the listeners, every connection waiting for a
/// request, the signal pipes, and the timers. Owned by the leading thread.
struct Loop {
    poll: Poll,
    events: Events,
    /// The tokens of the last poll's events (a buffer kept across turns).
    tokens: Vec<Token>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Connections lent out to be served.
    busy: usize,
    /// Connections with a complete request found by this turn.
    ready: Vec<(usize, Conn)>,
    /// Returned connections being taken in (a buffer kept across turns).
    returned: Vec<(usize, Outcome)>,
    listeners: Vec<TcpListener>,
    graceful_pipe: UnixStream,
    fast_pipe: UnixStream,
    reopen_pipe: UnixStream,
    next_sweep: Instant,
    /// When TERM arrived, and when the graceful timeout ends.
    stopped_at: Option<Instant>,
    stop_deadline: Option<Instant>,
    /// Set when the loop decides to stop.
    stop: Option<Stop>,
    shared: Arc<Shared>,
}

impl Loop {
    /// One turn: take connections back, wait for events (at most until
    /// the next sweep), handle them, sweep timeouts, check for the end.
    fn turn(&mut self, core: &Core) {
        let shared = Arc::clone(&self.shared);
        core.polling.store(true, Ordering::SeqCst);
        // The clock is read twice per turn (here and after the poll) and
        // never per request: a returned connection's idle time counts from
        // the turn that takes it back.
        let now = Instant::now();
        self.take_returns(core, now);
        let timeout = if self.ready.is_empty() {
            self.next_sweep.saturating_duration_since(now)
        } else {
            Duration::ZERO
        };
        let polled = self.poll.poll(&mut self.events, Some(timeout));
        core.polling.store(false, Ordering::SeqCst);
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!("the event loop failed: {e}");
                self.stop = Some(Stop::Fast);
                return;
            }
        }
        // Copied out (into a buffer kept across turns) so the handlers below
        // may borrow the loop mutably.
        let mut tokens = std::mem::take(&mut self.tokens);
        tokens.clear();
        tokens.extend(self.events.iter().map(|e| e.token()));
        for &token in &tokens {
            match token {
                WAKER => {}
                SIG_GRACEFUL => {
                    drain_pipe(&mut self.graceful_pipe);
                    self.begin_graceful_stop();
                }
                SIG_REOPEN => {
                    drain_pipe(&mut self.reopen_pipe);
                    if let Some(log) = &shared.access_log {
                        log.reopen();
                    }
                }
                SIG_FAST => {
                    drain_pipe(&mut self.fast_pipe);
                    tracing::info!("INT/QUIT: exiting now");
                    self.stop = Some(Stop::Fast);
                    self.tokens = tokens;
                    return;
                }
                Token(t) if t >= LISTENER_BASE => self.accept_from(t - LISTENER_BASE),
                Token(idx) => self.on_readable(idx),
            }
        }
        self.tokens = tokens;
        if let Some(m) = &shared.monitor {
            m.slot().heartbeat();
        }
        let now = Instant::now();
        self.take_returns(core, now);
        if now >= self.next_sweep {
            self.sweep(now);
            // Retry accepting in case an earlier accept hit EMFILE.
            for i in 0..self.listeners.len() {
                self.accept_from(i);
            }
            self.next_sweep = now + SWEEP_EVERY;
        }
        if let Some(deadline) = self.stop_deadline {
            if self.busy == 0 && self.waiting() == 0 && self.ready.is_empty() {
                self.stop = Some(Stop::Graceful { drained: true });
            } else if now >= deadline {
                tracing::warn!(
                    in_flight = self.busy,
                    "graceful timeout reached with requests still running; exiting"
                );
                self.stop = Some(Stop::Graceful { drained: false });
            }
        }
    }

    fn take_returns(&mut self, core: &Core, now: Instant) {
        let mut returned = std::mem::take(&mut self.returned);
        std::mem::swap(&mut returned, &mut core.lock().returns);
        for (idx, outcome) in returned.drain(..) {
            self.on_returned(idx, outcome, now);
        }
        self.returned = returned;
    }

    /// TERM: take what the backlog holds, stop accepting, serve what
    /// already arrived, and stop once nothing is left.
    fn begin_graceful_stop(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        tracing::info!("TERM: finishing in-flight requests, then exiting");
        // What is queued in the backlog was promised an answer.
        for i in 0..self.listeners.len() {
            self.accept_from(i);
        }
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.stopped_at = Some(Instant::now());
        // Idle keep-alive connections get a short grace (see `sweep`) for
        // a request already on its way, answered with `Connection: close`.
        self.read_all_waiting();
        self.stop_deadline = Some(Instant::now() + self.shared.config.graceful_timeout);
    }

    fn accept_from(&mut self, i: usize) {
        // Taken out for the call: accept_all borrows the loop mutably.
        let mut listeners = std::mem::take(&mut self.listeners);
        if let Some(l) = listeners.get_mut(i) {
            self.accept_all(l);
        }
        self.listeners = listeners;
    }

    fn accept_all(&mut self, listener: &mut TcpListener) {
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let local = match stream.local_addr() {
                        Ok(a) => a,
                        Err(_) => continue,
                    };
                    let idx = self.free.pop().unwrap_or_else(|| {
                        self.slots.push(Slot::Free);
                        self.slots.len() - 1
                    });
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, Token(idx), Interest::READABLE)
                    {
                        tracing::warn!("cannot watch a new connection: {e}");
                        self.free.push(idx);
                        continue;
                    }
                    self.slots[idx] = Slot::Waiting(Conn {
                        stream,
                        peer,
                        local,
                        buf: Vec::new(),
                        waiting_since: Instant::now(),
                        served: false,
                    });
                    // Edge-triggered: bytes that arrived with the
                    // connection produce their event on registration.
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: the sweep retries shortly.
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Reads what arrived (edge-triggered: until WouldBlock) and lends the
    /// connection to an app thread once a whole head is there.
    fn on_readable(&mut self, idx: usize) {
        let limits = &self.shared.config.limits;
        let cap = limits.max_head() + 64 * 1024;
        let conn = match self.slots.get_mut(idx) {
            Some(Slot::Waiting(conn)) => conn,
            Some(Slot::Lingering(conn, dropped)) => {
                if !discard_input(conn, dropped) {
                    self.close(idx);
                }
                return;
            }
            Some(Slot::Busy { missed }) => {
                *missed = true;
                return;
            }
            _ => return,
        };
        let mut eof = false;
        loop {
            if conn.buf.len() >= cap {
                break;
            }
            if conn.buf.capacity() == 0 {
                conn.buf = take_buffer();
            } else if conn.buf.capacity() - conn.buf.len() < 1024 {
                conn.buf.reserve(4096);
            }
            let spare = conn.buf.capacity() - conn.buf.len();
            match recv_append(&conn.stream, &mut conn.buf, spare) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    if n < spare {
                        // A short read drained the socket; edge-triggered
                        // epoll reports whatever arrives next, so the read
                        // that would only say WouldBlock is skipped.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if conn.buf.is_empty() {
            // Idle: give the buffer back so a held connection costs little.
            release_buffer(&mut conn.buf);
            if eof {
                self.close(idx);
            }
            return;
        }
        match head_ready(&conn.buf, limits) {
            Ok(true) => {
                let busy = Slot::Busy { missed: false };
                let Slot::Waiting(conn) = std::mem::replace(&mut self.slots[idx], busy) else {
                    unreachable!("checked above");
                };
                self.busy += 1;
                self.ready.push((idx, conn));
            }
            Ok(false) => {
                if eof {
                    self.close(idx);
                }
            }
            Err(e) => {
                tracing::info!(peer = %conn.peer, "bad request: {e}");
                self.answer_and_close(idx, e.status(), e.reason());
            }
        }
    }

    /// Every call is stuck (see `Watch`): the requests queued behind them
    /// were lent out on finding the end of their head, unparsed (the app
    /// thread parses once). Parse them now, and answer the malformed ones
    /// from here, as the loop does for a head it refuses early, instead of
    /// leaving them to wait for a call that may never end.
    fn refuse_malformed(&mut self, jobs: &mut VecDeque<Job>) {
        let shared = Arc::clone(&self.shared);
        let limits = &shared.config.limits;
        let mut kept = VecDeque::with_capacity(jobs.len());
        for mut job in jobs.drain(..) {
            if !job.checked {
                job.checked = true;
                if let Err(e) = check_head(&job.conn.buf, limits) {
                    tracing::info!(peer = %job.conn.peer, "bad request: {e}");
                    self.busy -= 1;
                    self.slots[job.idx] = Slot::Waiting(job.conn);
                    self.answer_and_close(job.idx, e.status(), e.reason());
                    continue;
                }
            }
            kept.push_back(job);
        }
        *jobs = kept;
    }

    fn on_returned(&mut self, idx: usize, outcome: Outcome, now: Instant) {
        self.busy -= 1;
        let missed = matches!(self.slots[idx], Slot::Busy { missed: true });
        match outcome {
            Outcome::Idle(mut conn) => {
                conn.waiting_since = now;
                self.slots[idx] = Slot::Waiting(conn);
                // Bytes that arrived while it was lent out produced an event
                // this loop already took: read them now. Otherwise their
                // event is still to come from poll.
                if missed {
                    self.on_readable(idx);
                }
            }
            Outcome::Close(conn) => self.linger(idx, conn),
            Outcome::Gone => {
                self.slots[idx] = Slot::Free;
                self.free.push(idx);
            }
        }
    }

    /// Answers a waiting connection with a canned error and closes it.
    fn answer_and_close(&mut self, idx: usize, status: u16, reason: &str) {
        let Slot::Waiting(mut conn) = std::mem::replace(&mut self.slots[idx], Slot::Free) else {
            return;
        };
        let mut out = Vec::new();
        encode_error(&mut out, status, reason, false);
        // Best effort, without blocking the loop: a connection that has
        // sent at most a head has an empty send buffer, which takes a small
        // error response whole.
        let _ = conn.stream.write(&out);
        self.linger(idx, conn);
    }

    /// Closes gracefully: FIN first, then drop whatever the client still
    /// sends until it closes its side (see `Slot::Lingering`).
    fn linger(&mut self, idx: usize, mut conn: Conn) {
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        release_buffer(&mut conn.buf);
        conn.waiting_since = Instant::now();
        self.slots[idx] = Slot::Lingering(conn, 0);
        // Input may already be waiting (its edge went by while the
        // connection was lent out).
        self.on_readable(idx);
    }

    fn close(&mut self, idx: usize) {
        // Dropping the stream closes the socket, which also removes it from
        // the epoll set.
        self.slots[idx] = Slot::Free;
        self.free.push(idx);
    }

    /// Closes connections past their idle (keep-alive) or header timeout.
    fn sweep(&mut self, now: Instant) {
        let cfg = &self.shared.config;
        let mut expired = Vec::new();
        let mut timed_out = Vec::new();
        for (idx, slot) in self.slots.iter().enumerate() {
            match slot {
                Slot::Waiting(conn) => {
                    // While stopping, an idle connection gets a short grace
                    // from the stop for a request already on its way (it is
                    // answered with `Connection: close`), then is closed.
                    let (since, limit) = match self.stopped_at {
                        Some(at) if conn.buf.is_empty() => {
                            (conn.waiting_since.max(at), cfg.keep_alive.min(STOP_GRACE))
                        }
                        _ if conn.buf.is_empty() && conn.served => {
                            (conn.waiting_since, cfg.keep_alive)
                        }
                        _ => (conn.waiting_since, cfg.header_timeout),
                    };
                    if now.duration_since(since) >= limit {
                        if conn.buf.is_empty() {
                            expired.push(idx);
                        } else {
                            // A head begun and never finished (slowloris).
                            timed_out.push(idx);
                        }
                    }
                }
                Slot::Lingering(conn, _) if now.duration_since(conn.waiting_since) >= LINGER => {
                    expired.push(idx)
                }
                _ => {}
            }
        }
        for idx in expired {
            self.close(idx);
        }
        for idx in timed_out {
            self.answer_and_close(idx, 408, "Request Timeout");
        }
    }

    fn read_all_waiting(&mut self) {
        let waiting: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Slot::Waiting(_)))
            .map(|(i, _)| i)
            .collect();
        for idx in waiting {
            self.on_readable(idx);
        }
    }

    fn waiting(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Waiting(_)))
            .count()
    }
}

/// Reads and drops what a closing connection sends, counting it in
/// `dropped`; false once it is done (EOF, error, or LINGER_MAX_BYTES).
fn discard_input(conn: &mut Conn, dropped: &mut usize) -> bool {
    let mut scratch = [0u8; 4096];
    loop {
        match conn.stream.read(&mut scratch) {
            Ok(0) => return false,
            Ok(n) => {
                *dropped += n;
                if *dropped > LINGER_MAX_BYTES {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// A self-pipe: the signal handler (signal-hook's, async-signal-safe)
/// writes a byte, the event loop wakes on the read end.
fn signal_pipe(poll: &Poll, token: Token, signals: &[i32]) -> io::Result<UnixStream> {
    let (read, write) = StdUnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    for &sig in signals {
        signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
    }
    let mut read = UnixStream::from_std(read);
    poll.registry()
        .register(&mut read, token, Interest::READABLE)?;
    Ok(read)
}

fn drain_pipe(pipe: &mut UnixStream) {
    let mut buf = [0u8; 64];
    while matches!(pipe.read(&mut buf), Ok(n) if n > 0) {}
}
