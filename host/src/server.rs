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
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::access_log::AccessLog;
use crate::conn::{head_complete, serve, Conn, Outcome, Scratch};
use crate::parse::Limits;
use crate::plugin::Plugin;
use crate::response::encode_error;
use crate::scoreboard::Monitor;

/// Everything the serving core needs to know, fixed at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// App threads (`--threads`).
    pub threads: usize,
    /// How long an idle keep-alive connection is kept (`--keep-alive`);
    /// zero disables keep-alive.
    pub keep_alive: Duration,
    /// How long a client may take to send a complete request head,
    /// counted from the first moment we waited for it (slowloris).
    pub header_timeout: Duration,
    /// How long the app may wait for the next piece of a request body
    /// (`--body-timeout`; a gap between reads, not the whole body).
    pub body_timeout: Duration,
    /// How long a response write may wait for the client to read.
    pub write_timeout: Duration,
    /// How long TERM waits for in-flight requests (`--graceful-timeout`).
    pub graceful_timeout: Duration,
    pub limits: Limits,
}

impl Config {
    pub fn keep_alive_enabled(&self) -> bool {
        !self.keep_alive.is_zero()
    }
}

/// State shared by the event loop and the app threads.
pub struct Shared {
    pub plugin: Plugin,
    pub config: Config,
    pub access_log: Option<AccessLog>,
    /// Set on TERM: responses say `Connection: close` from now on.
    pub stopping: AtomicBool,
    /// Where this worker reports to its master (heartbeat, running
    /// requests, request count); None when serving without a master.
    pub monitor: Option<Monitor>,
}

const WAKER: Token = Token(usize::MAX);
const SIG_GRACEFUL: Token = Token(usize::MAX - 1);
const SIG_FAST: Token = Token(usize::MAX - 2);
const SIG_REOPEN: Token = Token(usize::MAX - 3);
/// Listener i has token LISTENER_BASE + i; connections use 0..LISTENER_BASE.
const LISTENER_BASE: usize = usize::MAX / 2;
/// How often idle connections are checked against their timeouts.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// A connection slot: connections are addressed by their slot index,
/// which is also their poll token.
enum Slot {
    Free,
    /// Owned by the event loop, waiting for a complete request head.
    Waiting(Conn),
    /// Lent to an app thread.
    Busy,
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

/// Connections handed to app threads, and the way back.
struct Pool {
    queue: Mutex<PoolQueue>,
    ready: Condvar,
}

struct PoolQueue {
    jobs: VecDeque<(usize, Conn)>,
    closed: bool,
}

impl Pool {
    fn push(&self, job: (usize, Conn)) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.jobs.push_back(job);
        drop(q);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<(usize, Conn)> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if q.closed {
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_all();
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
/// requests are done (TERM) and the plugin's shutdown has run, or at once
/// (INT/QUIT).
pub fn run(listeners: Vec<StdListener>, shared: Arc<Shared>) -> io::Result<Stop> {
    let poll = Poll::new()?;
    let mut listeners = listeners
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
    let mut graceful_pipe = signal_pipe(&poll, SIG_GRACEFUL, &[signal_hook::consts::SIGTERM])?;
    let mut fast_pipe = signal_pipe(
        &poll,
        SIG_FAST,
        &[signal_hook::consts::SIGINT, signal_hook::consts::SIGQUIT],
    )?;
    let mut reopen_pipe = signal_pipe(&poll, SIG_REOPEN, &[signal_hook::consts::SIGUSR1])?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let pool = Arc::new(Pool {
        queue: Mutex::new(PoolQueue {
            jobs: VecDeque::new(),
            closed: false,
        }),
        ready: Condvar::new(),
    });
    let (returns_tx, returns) = channel();
    let threads = spawn_app_threads(&shared, &pool, &returns_tx, &waker)?;

    let mut lp = Loop {
        poll,
        slots: Vec::new(),
        free: Vec::new(),
        busy: 0,
        stopped_at: None,
        pool: Arc::clone(&pool),
        shared: Arc::clone(&shared),
    };
    let mut events = Events::with_capacity(1024);
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    let mut stop_deadline: Option<Instant> = None;
    let stop = 'serve: loop {
        let timeout = next_sweep.saturating_duration_since(Instant::now());
        if let Err(e) = lp.poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                SIG_GRACEFUL => {
                    drain_pipe(&mut graceful_pipe);
                    if stop_deadline.is_none() {
                        tracing::info!("TERM: finishing in-flight requests, then exiting");
                        // Take what is already queued in the backlog:
                        // those clients were promised an answer.
                        for l in &mut listeners {
                            lp.accept_all(l);
                        }
                        for mut l in listeners.drain(..) {
                            let _ = lp.poll.registry().deregister(&mut l);
                        }
                        shared.stopping.store(true, Ordering::SeqCst);
                        lp.stopped_at = Some(Instant::now());
                        // Serve what already arrived. Idle keep-alive
                        // connections stay until their next request (answered
                        // with `Connection: close`) or their keep-alive
                        // timeout: closing them now could cross a request
                        // already on its way.
                        lp.read_all_waiting();
                        stop_deadline = Some(Instant::now() + shared.config.graceful_timeout);
                    }
                }
                SIG_REOPEN => {
                    drain_pipe(&mut reopen_pipe);
                    if let Some(log) = &shared.access_log {
                        log.reopen();
                    }
                }
                SIG_FAST => {
                    drain_pipe(&mut fast_pipe);
                    tracing::info!("INT/QUIT: exiting now");
                    break 'serve Stop::Fast;
                }
                Token(t) if t >= LISTENER_BASE => {
                    if let Some(l) = listeners.get_mut(t - LISTENER_BASE) {
                        lp.accept_all(l);
                    }
                }
                Token(idx) => lp.on_readable(idx),
            }
        }
        if let Some(m) = &shared.monitor {
            m.slot().heartbeat();
        }
        // Connections coming back from app threads.
        while let Ok((idx, outcome)) = returns.try_recv() {
            lp.on_returned(idx, outcome);
        }
        let now = Instant::now();
        if now >= next_sweep {
            lp.sweep(now);
            // Retry accepting in case an earlier accept hit EMFILE.
            for l in &mut listeners {
                lp.accept_all(l);
            }
            next_sweep = now + SWEEP_EVERY;
        }
        if let Some(deadline) = stop_deadline {
            if lp.busy == 0 && lp.waiting() == 0 {
                break Stop::Graceful { drained: true };
            }
            if now >= deadline {
                tracing::warn!(
                    in_flight = lp.busy,
                    "graceful timeout reached with requests still running; exiting"
                );
                break Stop::Graceful { drained: false };
            }
        }
    };
    pool.close();
    if stop == (Stop::Graceful { drained: true }) {
        for t in threads {
            let _ = t.join();
        }
    }
    Ok(stop)
}

fn spawn_app_threads(
    shared: &Arc<Shared>,
    pool: &Arc<Pool>,
    returns: &Sender<(usize, Outcome)>,
    waker: &Arc<Waker>,
) -> io::Result<Vec<JoinHandle<()>>> {
    (0..shared.config.threads.max(1))
        .map(|i| {
            let (shared, pool, returns, waker) = (
                Arc::clone(shared),
                Arc::clone(pool),
                returns.clone(),
                Arc::clone(waker),
            );
            std::thread::Builder::new()
                .name(format!("app-{i}"))
                .spawn(move || app_thread(i, &shared, &pool, &returns, &waker))
        })
        .collect()
}

fn app_thread(
    index: usize,
    shared: &Shared,
    pool: &Pool,
    returns: &Sender<(usize, Outcome)>,
    waker: &Waker,
) {
    let slot = shared.monitor.and_then(|m| m.thread(index));
    let mut scratch = Scratch::default().reporting_to(slot);
    while let Some((idx, conn)) = pool.pop() {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            serve(conn, shared, &mut scratch)
        }))
        .unwrap_or_else(|_| {
            tracing::error!("internal error while serving a connection; it was closed");
            scratch = Scratch::default().reporting_to(slot);
            Outcome::Gone
        });
        if returns.send((idx, outcome)).is_err() {
            return;
        }
        let _ = waker.wake();
    }
}

/// The event loop's state: connection slots and the pool to lend them to.
struct Loop {
    poll: Poll,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Connections currently lent to app threads.
    busy: usize,
    /// When TERM arrived, if it did.
    stopped_at: Option<Instant>,
    pool: Arc<Pool>,
    shared: Arc<Shared>,
}

impl Loop {
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
            _ => return,
        };
        let mut eof = false;
        loop {
            if conn.buf.len() >= cap {
                break;
            }
            if conn.buf.capacity() - conn.buf.len() < 1024 {
                conn.buf.reserve(4096);
            }
            let len = conn.buf.len();
            let spare = conn.buf.capacity() - len;
            conn.buf.resize(len + spare, 0);
            match conn.stream.read(&mut conn.buf[len..]) {
                Ok(0) => {
                    conn.buf.truncate(len);
                    eof = true;
                    break;
                }
                Ok(n) => conn.buf.truncate(len + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.buf.truncate(len);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => conn.buf.truncate(len),
                Err(_) => {
                    conn.buf.truncate(len);
                    eof = true;
                    break;
                }
            }
        }
        if conn.buf.is_empty() {
            // Idle: give the buffer back so a held connection costs little.
            conn.buf = Vec::new();
            if eof {
                self.close(idx);
            }
            return;
        }
        match head_complete(&conn.buf, limits) {
            Ok(true) => {
                let Slot::Waiting(conn) = std::mem::replace(&mut self.slots[idx], Slot::Busy)
                else {
                    unreachable!("checked above");
                };
                self.busy += 1;
                self.pool.push((idx, conn));
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

    fn on_returned(&mut self, idx: usize, outcome: Outcome) {
        self.busy -= 1;
        match outcome {
            Outcome::Idle(conn) => {
                self.slots[idx] = Slot::Waiting(conn);
                // Bytes may have arrived while it was lent out (their edge
                // went by unseen).
                self.on_readable(idx);
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
        let Slot::Waiting(mut conn) = std::mem::replace(&mut self.slots[idx], Slot::Busy) else {
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
        conn.buf = Vec::new();
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
