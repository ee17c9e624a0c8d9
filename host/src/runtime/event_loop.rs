//! The event loop: every wait on a client happens here, never on an app
//! thread. It accepts connections; reads the PROXY protocol header a
//! `--proxy-allow-ips` peer starts with (`--proxy-protocol`); reads request
//! heads (scanned as they arrive, each byte once) and, before the app sees
//! a request, its body
//! (`intake`); sends what a slow client has not taken of its responses;
//! holds parked requests until their client reads; and enforces the
//! deadlines: a whole head within `--header-timeout`, bodies and responses
//! at a minimum rate after a grace (`rate`), idle keep-alive connections.
//! A client that falls behind is closed and logged; it never holds a
//! thread, and what it costs in memory is bounded.
//!
//! Exactly one thread at a time turns the loop (see `pool`); it never
//! calls plugin code. A connection is lent to an app thread only once a
//! complete request (head and, when buffering, body) is here, and comes
//! back when every buffered request is answered.
use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::http1::forwarded::Scheme;
use crate::http1::head::{check_head, HeadScan, Scan};
use crate::http1::response::{encode_continue, encode_error};
use crate::net::endpoint::Endpoint;
use crate::net::listener::{Acceptor, Listener};
use crate::net::proxy_protocol::{self, Parsed, Source};
use crate::net::transport::{self, Transport};
use crate::runtime::claim::Takeover;
use crate::runtime::config::Shared;
use crate::runtime::conn::{release_buffer, take_buffer, Ahead, Conn, Forwarding, BUFFER_SIZE};
use crate::runtime::intake::{Budget, IntakeError, Progress};
use crate::runtime::rate::{MinRate, Stall};
use crate::runtime::serve::{Desk, Outcome, Work, LOW_WATER};
use crate::runtime::Stop;

const WAKER: Token = Token(usize::MAX);
const SIG_GRACEFUL: Token = Token(usize::MAX - 1);
const SIG_FAST: Token = Token(usize::MAX - 2);
const SIG_REOPEN: Token = Token(usize::MAX - 3);
const SIG_ABANDON: Token = Token(usize::MAX - 4);
/// Listener i has token LISTENER_BASE + i; connections use 0..LISTENER_BASE.
const LISTENER_BASE: usize = usize::MAX / 2;
/// How often deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How long a stopping worker keeps an idle keep-alive connection open for
/// a request that may already be on its way.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How long a closing connection may keep sending before we hang up.
const LINGER: Duration = Duration::from_secs(2);
/// How much a closing connection may send before we hang up anyway.
const LINGER_MAX_BYTES: usize = 1024 * 1024;
/// A head is read until the buffer holds this much past `max_head()`; then
/// the loop stops reading until the requests in it are served (a burst of
/// pipelined requests is taken a piece at a time).
const HEAD_SLACK: usize = 64 * 1024;
/// Request bodies held in memory, all connections together, before new
/// ones go to temporary files.
const BODY_MEMORY: usize = 64 << 20;
/// How much a body read pulls in at once.
const BODY_READ: usize = 64 * 1024;
/// A connection accepted after waiting this long in the listen backlog
/// (no worker was accepting: this one was booting, or stopped), whose
/// client has closed its side since, is answered 503 without running its
/// request; a reset one is dropped. Only a worker that has not emptied the
/// backlog for this long asks (a system call per connection).
const BACKLOG_STALE: Duration = Duration::from_secs(1);
/// What one connection's head may read in one turn.
const HEAD_READ: usize = 64 * 1024;
/// A turn that has read this much (a flood of large heads or bodies)
/// hands the requests it found to the other threads before it goes on, so
/// a client's request never waits for the rest of a long turn.
const TURN_BUDGET: usize = 256 * 1024;

/// A connection (or a parked request) the loop found work for, waiting
/// for a thread.
pub struct Job {
    pub idx: usize,
    pub work: Work,
    /// Its head was parsed while every call was stuck (it is not again).
    pub checked: bool,
}

/// What the loop needs of the threads around it (`pool`).
pub trait Host {
    /// The leader is (about to be) blocked in poll: threads giving a
    /// connection back must wake it.
    fn polling(&self, on: bool);
    /// Connections the app threads gave back since the last look.
    fn take_returns(&self, into: &mut Vec<(usize, Outcome)>);
    /// `-t`: take over stretch `number` of app thread `thread`.
    fn take_over(&self, thread: usize, number: u64) -> Takeover;
    /// A thread was abandoned to a hung plugin call: start another.
    fn replace(&self, thread: usize);
    /// Work found so far in a long turn: hand it to the idle threads now
    /// rather than when the turn ends.
    fn publish(&self, ready: &mut Vec<(Job, Option<usize>)>);
}

/// A connection slot: connections are addressed by their slot index,
/// which is also their poll token.
enum Slot {
    Free,
    /// Waiting for the PROXY protocol header a connection from a
    /// `--proxy-allow-ips` peer must start with (`--proxy-protocol`); then
    /// `Head`. Its bytes count as a head's: the header timeout runs from
    /// the accept, and the buffer toward the head memory.
    Proxy(Box<Conn>),
    /// Waiting for a request head: an idle keep-alive connection, or a head
    /// on its way.
    Head(Box<Conn>),
    /// Reading a request body before the app sees the request, or dropping
    /// what an app left unread of one (`conn.ahead`).
    Body(Box<Conn>),
    /// Lent to an app thread.
    Lent(Lent),
    /// Sending response bytes the client has not taken yet; then `After`.
    Sending(Box<Conn>, After),
    /// A request whose body iterator waits for its client to read.
    Parked(Box<Desk>),
    /// Closing: our side is shut down for writing, and what the client
    /// still sends is read and dropped until it closes too (or LINGER
    /// passes). Closing with unread input would make the kernel send a
    /// reset, which can destroy the response we just sent before the client
    /// reads it — the 400 or 413 it most needs to see. The count is the
    /// bytes dropped so far.
    Lingering(Box<Conn>, usize),
    /// Its request was taken over from a hung app thread (`-t`): the
    /// thread still holds the connection, which is dropped if it ever comes
    /// back.
    Abandoned,
}

/// A connection out on an app thread.
struct Lent {
    /// An event for it came meanwhile (its edge is gone: read when it is
    /// back).
    unread: bool,
    /// Its socket, to answer it if its request is taken over.
    fd: std::os::fd::RawFd,
    /// It is TLS: a takeover cannot answer it (the TLS state is with the
    /// stuck thread), only close it.
    tls: bool,
}

/// What follows once a client has taken its pending response bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Wait for the next request.
    Read,
    /// Close the connection.
    Close,
    /// Read the body of the request at the start of the buffer.
    Body,
}

/// One event: which slot, and what it can do now.
#[derive(Clone, Copy)]
struct Ready {
    token: Token,
    readable: bool,
    writable: bool,
}

/// The event loop: the listeners, every connection not out on an app
/// thread, the signal pipes, and the timers. Owned by the leading thread.
pub struct Loop {
    poll: Poll,
    events: Events,
    /// The last poll's events (a buffer kept across turns).
    ready_events: Vec<Ready>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Connections out on app threads (not counting abandoned ones).
    lent: usize,
    /// Work found by this turn, and the thread it is pinned to.
    ready: Vec<(Job, Option<usize>)>,
    /// Returned connections being taken in (a buffer kept across turns).
    returned: Vec<(usize, Outcome)>,
    listeners: Vec<Acceptor>,
    graceful_pipe: UnixStream,
    fast_pipe: UnixStream,
    reopen_pipe: UnixStream,
    abandon_pipe: UnixStream,
    next_sweep: Instant,
    /// Bytes of unfinished heads held, all connections together.
    head_bytes: usize,
    /// The most `head_bytes` was since memory was last given back.
    head_peak: usize,
    /// Request bodies in memory, all connections (as of the last sweep).
    body_bytes: usize,
    /// `-t` takeovers to try again (the thread was writing).
    takeovers: Vec<(usize, u64)>,
    /// Bytes read since the turn began or last handed work on.
    turn_read: usize,
    /// Connections with bytes left to read that a turn put off (it had
    /// read its budget): read in the next turns, in order.
    revisit: VecDeque<usize>,
    /// A request was taken over: this worker retires, and exits without
    /// waiting for the thread stuck in the plugin.
    abandoned: bool,
    /// Per listener, when accepting last found its backlog empty (None:
    /// never yet).
    drained_at: Vec<Option<Instant>>,
    /// When TERM arrived, and when the graceful timeout ends.
    stopped_at: Option<Instant>,
    stop_deadline: Option<Instant>,
    /// Set when the loop decides to stop.
    stop: Option<Stop>,
    /// The first turn has looked at the signals that came while booting.
    started: bool,
    shared: Arc<Shared>,
}

impl Loop {
    /// A loop serving `listeners`, with the worker's signal handlers
    /// installed (TERM graceful, INT/QUIT fast, USR1 reopen logs, USR2 the
    /// master's `-t` order).
    pub fn new(listeners: Vec<Listener>, shared: Arc<Shared>) -> io::Result<Box<Loop>> {
        let poll = Poll::new()?;
        let listeners = listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let mut l = l.into_acceptor()?;
                poll.registry()
                    .register(&mut l, Token(LISTENER_BASE + i), Interest::READABLE)?;
                Ok(l)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let drained_at = vec![None; listeners.len()];
        use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
        let graceful_pipe = signal_pipe(&poll, SIG_GRACEFUL, &[SIGTERM])?;
        let fast_pipe = signal_pipe(&poll, SIG_FAST, &[SIGINT, SIGQUIT])?;
        let reopen_pipe = signal_pipe(&poll, SIG_REOPEN, &[SIGUSR1])?;
        let abandon_pipe = signal_pipe(&poll, SIG_ABANDON, &[SIGUSR2])?;
        Ok(Box::new(Loop {
            poll,
            events: Events::with_capacity(1024),
            ready_events: Vec::with_capacity(1024),
            slots: Vec::new(),
            free: Vec::new(),
            lent: 0,
            ready: Vec::new(),
            returned: Vec::new(),
            listeners,
            graceful_pipe,
            fast_pipe,
            reopen_pipe,
            abandon_pipe,
            next_sweep: Instant::now() + SWEEP_EVERY,
            head_bytes: 0,
            head_peak: 0,
            body_bytes: 0,
            takeovers: Vec::new(),
            turn_read: 0,
            revisit: VecDeque::new(),
            abandoned: false,
            drained_at,
            stopped_at: None,
            stop_deadline: None,
            stop: None,
            started: false,
            shared,
        }))
    }

    /// What wakes the loop out of its poll.
    pub fn waker(&self) -> io::Result<Waker> {
        Waker::new(self.poll.registry(), WAKER)
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Work found by the last turns, with the thread each is pinned to.
    pub fn take_ready(&mut self) -> std::vec::Drain<'_, (Job, Option<usize>)> {
        self.ready.drain(..)
    }

    pub fn stop(&self) -> Option<Stop> {
        self.stop
    }

    /// One turn: take connections back, wait for events (at most until
    /// the next sweep), handle them, sweep deadlines, check for the end.
    pub fn turn(&mut self, host: &dyn Host) {
        let shared = Arc::clone(&self.shared);
        if !self.started {
            // A stop signal that came while the worker booted.
            self.started = true;
            let early = &shared.early_signals;
            if early.quit.load(Ordering::SeqCst) {
                tracing::info!("INT/QUIT while booting: exiting now");
                self.stop = Some(Stop::Fast);
                return;
            }
            if early.term.load(Ordering::SeqCst) {
                self.begin_graceful_stop();
            }
        }
        host.polling(true);
        // The clock is read twice per turn (here and after the poll) and
        // never per request: a returned connection's idle time counts from
        // the turn that takes it back.
        let now = Instant::now();
        self.take_returns(host, now);
        let timeout = if self.ready.is_empty() && self.revisit.is_empty() {
            self.next_sweep.saturating_duration_since(now)
        } else {
            Duration::ZERO
        };
        let polled = self.poll.poll(&mut self.events, Some(timeout));
        host.polling(false);
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                crate::critical!("the event loop failed: {e}");
                self.stop = Some(Stop::Fast);
                return;
            }
        }
        // Copied out (into a buffer kept across turns) so the handlers below
        // may borrow the loop mutably.
        let mut events = std::mem::take(&mut self.ready_events);
        events.clear();
        events.extend(self.events.iter().map(|e| Ready {
            token: e.token(),
            readable: e.is_readable() || e.is_read_closed() || e.is_error(),
            writable: e.is_writable() || e.is_write_closed() || e.is_error(),
        }));
        let now = Instant::now();
        self.turn_read = 0;
        let mut published = false;
        for &(mut ev) in &events {
            if self.turn_read > TURN_BUDGET && !published {
                // A long turn: what it found is served now, by the other
                // threads, and the reading left waits for the next turns
                // (after new clients have been accepted and read).
                if !self.ready.is_empty() {
                    host.publish(&mut self.ready);
                }
                published = true;
            }
            let Token(idx) = ev.token;
            if published && idx < LISTENER_BASE && ev.readable {
                self.mark_unread(idx);
                self.revisit.push_back(idx);
                if !ev.writable {
                    continue;
                }
                ev.readable = false;
            }
            match ev.token {
                WAKER => {}
                SIG_GRACEFUL => {
                    drain_pipe(&mut self.graceful_pipe);
                    self.begin_graceful_stop();
                }
                SIG_REOPEN => {
                    drain_pipe(&mut self.reopen_pipe);
                    crate::runtime::error_log::reopen();
                    if let Some(log) = &shared.access_log {
                        log.reopen();
                    }
                }
                SIG_ABANDON => {
                    drain_pipe(&mut self.abandon_pipe);
                    if let Some(order) = shared.monitor.and_then(|m| m.slot().take_abort_order()) {
                        self.takeovers.push(order);
                    }
                }
                SIG_FAST => {
                    drain_pipe(&mut self.fast_pipe);
                    tracing::info!("INT/QUIT: exiting now");
                    self.stop = Some(Stop::Fast);
                    self.ready_events = events;
                    return;
                }
                Token(t) if t >= LISTENER_BASE => self.accept_from(t - LISTENER_BASE, now),
                Token(idx) => self.on_event(idx, ev, now),
            }
        }
        self.ready_events = events;
        self.read_put_off(now);
        if let Some(m) = &shared.monitor {
            m.slot().heartbeat();
            m.slot().counters.received(self.turn_read);
        }
        self.take_returns(host, now);
        if !self.takeovers.is_empty() {
            self.take_over(host);
        }
        if now >= self.next_sweep {
            self.sweep(now);
            // Retry accepting in case an earlier accept hit EMFILE.
            for i in 0..self.listeners.len() {
                self.accept_from(i, now);
            }
            self.next_sweep = now + SWEEP_EVERY;
        }
        if let Some(deadline) = self.stop_deadline {
            let live = self.live();
            if live == 0 && self.ready.is_empty() {
                // With a thread stuck in the plugin, the worker does not
                // wait for it (nor run the plugin's shutdown).
                self.stop = Some(Stop::Graceful {
                    drained: !self.abandoned,
                });
            } else if now >= deadline {
                tracing::warn!(
                    in_flight = live,
                    "graceful timeout reached with requests still running; exiting"
                );
                self.stop = Some(Stop::Graceful { drained: false });
            }
        }
    }

    fn take_returns(&mut self, host: &dyn Host, now: Instant) {
        let mut returned = std::mem::take(&mut self.returned);
        host.take_returns(&mut returned);
        for (idx, outcome) in returned.drain(..) {
            self.on_returned(idx, outcome, now);
        }
        self.returned = returned;
    }

    /// Connections still being served or waited on (not idle-closed,
    /// lingering or abandoned ones).
    fn live(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| !matches!(s, Slot::Free | Slot::Lingering(..) | Slot::Abandoned))
            .count()
    }

    // --- stop ---------------------------------------------------------------

    /// TERM (or a `-t` takeover): take what the backlog holds, close the
    /// listening sockets, serve what already arrived, and stop once
    /// nothing is left.
    fn begin_graceful_stop(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        tracing::info!("TERM: finishing in-flight requests, then exiting");
        let now = Instant::now();
        // What is queued in the backlog was promised an answer.
        for i in 0..self.listeners.len() {
            self.accept_from(i, now);
        }
        // Closed, not just unwatched: with every copy closed, new clients
        // are refused (and a proxy retries elsewhere) rather than accepted
        // by the kernel into a backlog nobody takes.
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.stopped_at = Some(now);
        // Idle keep-alive connections get a short grace (see `sweep`) for
        // a request already on its way, answered with `Connection: close`.
        let heads: Vec<usize> = (0..self.slots.len())
            .filter(|&i| matches!(self.slots[i], Slot::Head(_) | Slot::Proxy(_)))
            .collect();
        for idx in heads {
            self.read_head(idx, now);
        }
        self.stop_deadline = Some(now + self.shared.config.graceful_timeout);
    }

    /// The master's `-t` order: the request it names has run too long in
    /// the plugin. Its client is answered from here (503 if nothing was
    /// sent, else its connection is closed), its thread is abandoned to the
    /// plugin and replaced, and the worker retires: its other requests
    /// finish, and it exits without waiting for the hung thread.
    fn take_over(&mut self, host: &dyn Host) {
        let orders = std::mem::take(&mut self.takeovers);
        for (thread, number) in orders {
            match host.take_over(thread, number) {
                Takeover::Busy => self.takeovers.push((thread, number)),
                Takeover::Gone => {
                    tracing::info!(
                        "the request timed out on thread {thread} has moved on; retiring anyway"
                    );
                }
                Takeover::Taken { fd, clean } => {
                    let idx = self
                        .slots
                        .iter()
                        .position(|s| matches!(s, Slot::Lent(l) if l.fd == fd));
                    let tls = idx.is_some_and(|i| matches!(&self.slots[i], Slot::Lent(l) if l.tls));
                    let peer = transport::peer_of(fd);
                    if clean && !tls {
                        let mut out = Vec::new();
                        encode_error(&mut out, 503, "Service Unavailable", false);
                        transport::answer_abandoned(fd, &out);
                    } else {
                        transport::answer_abandoned(fd, &[]);
                    }
                    tracing::warn!(
                        peer = %peer.map(|p| p.to_string()).unwrap_or_default(),
                        thread,
                        "request timed out (-t): {}",
                        if clean {
                            "answered 503 and closed"
                        } else {
                            "its response had begun; connection closed"
                        }
                    );
                    if let Some(idx) = idx {
                        self.slots[idx] = Slot::Abandoned;
                        self.lent -= 1;
                    }
                    self.abandoned = true;
                    host.replace(thread);
                }
            }
        }
        self.begin_graceful_stop();
    }

    // --- accepting ------------------------------------------------------------

    fn accept_from(&mut self, i: usize, now: Instant) {
        // Taken out for the call: accept_all borrows the loop mutably.
        let mut listeners = std::mem::take(&mut self.listeners);
        if let Some(l) = listeners.get_mut(i) {
            self.accept_all(l, i, now);
        }
        self.listeners = listeners;
    }

    fn accept_all(&mut self, listener: &mut Acceptor, i: usize, now: Instant) {
        loop {
            match listener.accept() {
                Ok((io, peer)) => {
                    // A connection can have waited long in the backlog only
                    // if this loop has not emptied it for a while (it just
                    // started: a worker replacing one that crashed, say; or
                    // it was stopped). Judged per connection on a fresh
                    // clock: a worker stopped (SIGSTOP, a debugger) in the
                    // middle of this loop resumes it with the turn's clock,
                    // older than the connections that came meanwhile.
                    let may_be_stale = self.drained_at[i].is_none_or(|at| {
                        Instant::now().saturating_duration_since(at) >= BACKLOG_STALE
                    });
                    let arrival = if may_be_stale { io.arrival() } else { None };
                    if arrival.is_some_and(|a| a.reset) {
                        // Gone before we got to it: nobody would read an
                        // answer, and its request is not run.
                        tracing::debug!(%peer, "client reset its connection in the listen backlog; dropped");
                        continue;
                    }
                    let Ok(local) = io.local() else {
                        continue;
                    };
                    let config = &self.shared.config;
                    // `--certfile`: TCP connections are TLS; the handshake
                    // runs in the head's reads, under its deadline.
                    let io = match &config.tls {
                        Some(tls) => match io.secure(tls) {
                            Ok(io) => io,
                            Err(e) => {
                                tracing::warn!("cannot start TLS on a new connection: {e}");
                                continue;
                            }
                        },
                        None => io,
                    };
                    let tls = io.is_tls();
                    let mut conn = Conn::new(io, peer, local, now);
                    if tls {
                        conn.scheme = Scheme::Https;
                    }
                    conn.forwarding = Forwarding::of(&config.forwarded_allow, peer);
                    let proxied = config.proxy_protocol.expected_from(peer);
                    let idx = self.free.pop().unwrap_or_else(|| {
                        self.slots.push(Slot::Free);
                        self.slots.len() - 1
                    });
                    // Both directions, edge-triggered: readable for heads
                    // and bodies, writable for a client that fell behind.
                    // A client that keeps up never fills its send buffer,
                    // so it never raises a writable edge.
                    if let Err(e) = self.poll.registry().register(
                        &mut conn.io,
                        Token(idx),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!("cannot watch a new connection: {e}");
                        self.free.push(idx);
                        continue;
                    }
                    self.slots[idx] = if proxied {
                        Slot::Proxy(conn)
                    } else {
                        Slot::Head(conn)
                    };
                    if let Some(a) = arrival.filter(|a| a.peer_closed && a.idle >= BACKLOG_STALE) {
                        self.refuse_left(idx, a.idle);
                        continue;
                    }
                    // Its request usually came with it: read it now, ahead
                    // of whatever else this turn has to do (in a long turn,
                    // see TURN_BUDGET, a new client is served at once), as
                    // long as the turn has read less than its budget.
                    // Bytes that come later produce their own event.
                    if self.turn_read <= TURN_BUDGET {
                        self.read_head(idx, now);
                    } else {
                        // First in line next turn: a new client's request is
                        // small, the reading put off is a flood's.
                        self.mark_unread(idx);
                        self.revisit.push_front(idx);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained_at[i] = Some(now);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: the sweep retries shortly.
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// A client sent its request and closed its side while its connection
    /// waited `waited` in the backlog, with no worker accepting: it most
    /// likely gave up (a client that timed out), and running its request
    /// now could only cost, or crash, a worker that has just started (an
    /// attacker's crashing request, left behind). It is answered 503
    /// without being run: a client that half-closed and still reads learns
    /// why and may retry. One that sent nothing is closed.
    fn refuse_left(&mut self, idx: usize, waited: Duration) {
        let Some(Slot::Head(conn) | Slot::Proxy(conn)) = self.slots.get_mut(idx) else {
            return;
        };
        let mut first = Vec::with_capacity(256);
        let _ = conn.io.recv_append(&mut first, 256);
        if first.is_empty() {
            self.close(idx);
            return;
        }
        tracing::info!(
            peer = %conn.peer,
            request = ?crate::runtime::conn::line_text(&first),
            "client closed its side while its connection waited {:.1}s in the listen backlog (no worker was accepting); answered 503 without running the request",
            waited.as_secs_f64()
        );
        self.answer_and_close(idx, 503, "Service Unavailable");
    }

    // --- events ---------------------------------------------------------------

    fn on_event(&mut self, idx: usize, ev: Ready, now: Instant) {
        match self.slots.get_mut(idx) {
            Some(Slot::Head(_) | Slot::Proxy(_)) if ev.readable => self.read_head(idx, now),
            // A TLS handshake flight the socket did not take whole.
            Some(Slot::Head(conn))
                if ev.writable && conn.io.is_tls() && !conn.io.flush_pending() =>
            {
                self.close(idx)
            }
            Some(Slot::Body(_)) if ev.readable => self.read_body(idx, now),
            Some(Slot::Lent(lent)) => lent.unread |= ev.readable,
            Some(Slot::Sending(conn, _)) => {
                conn.unread |= ev.readable;
                if ev.writable {
                    self.send_pending(idx, now);
                }
            }
            Some(Slot::Parked(desk)) => {
                if ev.readable {
                    desk.mark_unread();
                }
                if ev.writable {
                    self.send_parked(idx);
                }
            }
            Some(Slot::Lingering(..)) if ev.readable => self.drop_input(idx),
            _ => {}
        }
    }

    /// Reads and drops what a closing connection sends (counted in the
    /// turn's reading); closes it once it is done.
    fn drop_input(&mut self, idx: usize) {
        let Some(Slot::Lingering(conn, dropped)) = self.slots.get_mut(idx) else {
            return;
        };
        let before = *dropped;
        let open = discard_input(conn, dropped);
        self.turn_read += *dropped - before;
        if !open {
            self.close(idx);
        }
    }

    /// Reads what earlier turns put off, within this turn's budget.
    fn read_put_off(&mut self, now: Instant) {
        let mut left = self.revisit.len();
        while left > 0 && self.turn_read <= TURN_BUDGET {
            left -= 1;
            let Some(idx) = self.revisit.pop_front() else {
                break;
            };
            match self.slots.get_mut(idx) {
                Some(Slot::Head(c) | Slot::Proxy(c)) if c.unread => self.read_head(idx, now),
                Some(Slot::Body(c)) if c.unread => self.read_body(idx, now),
                Some(Slot::Lingering(..)) => self.drop_input(idx),
                _ => {}
            }
        }
    }

    // --- heads --------------------------------------------------------------

    /// Reads what arrived (edge-triggered: until WouldBlock) and lends the
    /// connection to an app thread once a whole head is there (and its
    /// body, see `start_body`). A connection that must start with a PROXY
    /// header reads into the same buffer: what follows the header is the
    /// head.
    fn read_head(&mut self, idx: usize, now: Instant) {
        let limits = &self.shared.config.limits;
        let cap = limits.max_head() + HEAD_SLACK;
        let (conn, proxy) = match self.slots.get_mut(idx) {
            Some(Slot::Head(conn)) => (conn, false),
            Some(Slot::Proxy(conn)) => (conn, true),
            _ => return,
        };
        conn.unread = false;
        let mut eof = false;
        let mut reset = false;
        let mut read = 0;
        loop {
            if conn.buf.len() >= cap {
                // Requests enough to serve; the rest waits in the socket,
                // read as soon as these are answered.
                conn.unread = true;
                break;
            }
            if read >= HEAD_READ {
                // Its share of this turn: the rest is read in a later one.
                conn.unread = true;
                self.revisit.push_back(idx);
                break;
            }
            if conn.buf.capacity() == 0 {
                conn.buf = take_buffer();
            } else if conn.buf.capacity() - conn.buf.len() < 1024 {
                conn.buf.reserve(BUFFER_SIZE);
            }
            let spare = conn.buf.capacity() - conn.buf.len();
            match conn.io.recv_append(&mut conn.buf, spare) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                // A short read drained the socket; edge-triggered epoll
                // reports whatever arrives next, so the read that would
                // only say WouldBlock is skipped.
                Ok(n) if n < spare => {
                    self.turn_read += n;
                    break;
                }
                Ok(n) => {
                    self.turn_read += n;
                    read += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    reset = true;
                    break;
                }
            }
        }
        if reset {
            // The client is gone (a reset, a failed connection): nobody
            // would read an answer, so its requests are not run.
            self.close(idx);
            return;
        }
        if conn.buf.is_empty() {
            // Idle: give the buffer back so a held connection costs little.
            release_buffer(&mut conn.buf);
            if eof {
                self.close(idx);
            }
            return;
        }
        if proxy {
            self.proxy_header(idx, eof, now);
        } else {
            self.scan_head(idx, eof, now);
        }
    }

    /// Looks for the end of the head in what the buffer holds; `eof`: the
    /// client sent all it will.
    fn scan_head(&mut self, idx: usize, eof: bool, now: Instant) {
        let limits = &self.shared.config.limits;
        let Some(Slot::Head(conn)) = self.slots.get_mut(idx) else {
            return;
        };
        let scanned = conn.scan.scan(&conn.buf, limits);
        match scanned {
            Ok(Scan::Complete) => self.head_done(idx, now),
            Ok(Scan::Partial) if eof => self.close(idx),
            Ok(Scan::Partial) => {
                self.count_head(idx);
                if self.head_bytes > self.shared.config.head_memory {
                    self.shed_heads();
                }
            }
            Err(e) => {
                tracing::info!(peer = %conn.peer, "bad request: {e}");
                self.answer_and_close(idx, e.status(), e.reason());
            }
        }
    }

    /// Looks for the PROXY header at the start of the buffer. Once it is
    /// whole, the connection is the client's it names, the header leaves
    /// the buffer, and what follows it is scanned as the request head. A
    /// connection that does not start with one is closed without an
    /// answer: its peer is a proxy that should have sent one, and HTTP
    /// bytes from it cannot be told from a client's.
    fn proxy_header(&mut self, idx: usize, eof: bool, now: Instant) {
        let config = &self.shared.config;
        let Some(Slot::Proxy(conn)) = self.slots.get_mut(idx) else {
            return;
        };
        match proxy_protocol::parse(&conn.buf) {
            Ok(Parsed::Done { header, len }) => {
                conn.buf.drain(..len);
                if let Source::Relayed { client, server } = header.source {
                    conn.peer = Endpoint::Ip(client);
                    conn.local = Endpoint::Ip(server);
                }
                // Forwarding headers are believed from the client the
                // header names, not from the proxy that sent it.
                conn.forwarding = Forwarding::of(&config.forwarded_allow, conn.peer);
                if header.tls {
                    conn.scheme = Scheme::Https;
                }
                let Slot::Proxy(mut conn) = std::mem::replace(&mut self.slots[idx], Slot::Free)
                else {
                    unreachable!("matched above");
                };
                if conn.buf.is_empty() {
                    // The request is still to come: idle until then.
                    self.uncount_head(&mut conn);
                    release_buffer(&mut conn.buf);
                    self.slots[idx] = Slot::Head(conn);
                    if eof {
                        self.close(idx);
                    }
                    return;
                }
                self.slots[idx] = Slot::Head(conn);
                self.scan_head(idx, eof, now);
            }
            Ok(Parsed::Partial) if eof => {
                tracing::info!(peer = %conn.peer, "the proxy closed before its PROXY header was whole");
                self.close(idx);
            }
            Ok(Parsed::Partial) => {
                self.count_head(idx);
                if self.head_bytes > self.shared.config.head_memory {
                    self.shed_heads();
                }
            }
            Err(e) => {
                tracing::info!(peer = %conn.peer, "{e} (--proxy-protocol); closed");
                self.close(idx);
            }
        }
    }

    /// A whole head is buffered: its body is read next if the app thread
    /// says it must be (see `Outcome::NeedBody`), else it is served.
    fn head_done(&mut self, idx: usize, now: Instant) {
        let Slot::Head(mut conn) = std::mem::replace(&mut self.slots[idx], Slot::Free) else {
            return;
        };
        self.uncount_head(&mut conn);
        let _ = now;
        self.lend(idx, conn);
    }

    /// Counts the head `idx` holds toward the worker's head memory.
    fn count_head(&mut self, idx: usize) {
        if let Slot::Head(conn) | Slot::Proxy(conn) = &mut self.slots[idx] {
            let now_bytes = if conn.buf.is_empty() {
                0
            } else {
                conn.buf.capacity()
            };
            self.head_bytes = self.head_bytes + now_bytes - conn.head_bytes;
            conn.head_bytes = now_bytes;
            self.head_peak = self.head_peak.max(self.head_bytes);
        }
    }

    /// A connection's buffer no longer holds an unfinished head.
    fn uncount_head(&mut self, conn: &mut Conn) {
        self.head_bytes -= conn.head_bytes;
        conn.head_bytes = 0;
    }

    /// Unfinished heads hold more than `--limit-head-memory`: the largest
    /// are refused (431) until the rest fits. A thousand clients each
    /// sending most of a maximal head cost at most the limit, not a
    /// gigabyte.
    fn shed_heads(&mut self) {
        let limit = self.shared.config.head_memory;
        while self.head_bytes > limit {
            let largest = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s {
                    Slot::Head(c) | Slot::Proxy(c) if c.head_bytes > 0 => Some((c.head_bytes, i)),
                    _ => None,
                })
                .max();
            let Some((bytes, idx)) = largest else {
                break;
            };
            if let Slot::Head(conn) | Slot::Proxy(conn) = &self.slots[idx] {
                tracing::info!(
                    peer = %conn.peer,
                    bytes,
                    "refused a partial head: the worker's unfinished heads are over --limit-head-memory"
                );
            }
            self.answer_and_close(idx, 431, "Request Header Fields Too Large");
        }
    }

    // --- lending ------------------------------------------------------------

    /// Lends a connection with a complete request to an app thread.
    fn lend(&mut self, idx: usize, conn: Box<Conn>) {
        self.slots[idx] = Slot::Lent(Lent {
            unread: false,
            fd: conn.io.fd(),
            tls: conn.io.is_tls(),
        });
        self.lent += 1;
        self.ready.push((
            Job {
                idx,
                work: Work::Serve(conn),
                checked: false,
            },
            None,
        ));
    }

    /// Every call is stuck (see `pool::Watch`): the requests queued behind
    /// them were lent out on finding the end of their head, unparsed (the
    /// app thread parses once). Parse them now, and answer the malformed
    /// ones from here, as the loop does for a head it refuses early,
    /// instead of leaving them to wait for a call that may never end.
    pub fn refuse_malformed(&mut self, jobs: &mut VecDeque<Job>) {
        let shared = Arc::clone(&self.shared);
        let limits = &shared.config.limits;
        let mut kept = VecDeque::with_capacity(jobs.len());
        for mut job in jobs.drain(..) {
            if !job.checked {
                job.checked = true;
                if let Work::Serve(conn) = &job.work {
                    if let Err(e) = check_head(&conn.buf, limits) {
                        tracing::info!(peer = %conn.peer, "bad request: {e}");
                        let Work::Serve(conn) = job.work else {
                            unreachable!("matched above")
                        };
                        self.lent -= 1;
                        self.slots[job.idx] = Slot::Head(conn);
                        self.answer_and_close(job.idx, e.status(), e.reason());
                        continue;
                    }
                }
            }
            kept.push_back(job);
        }
        *jobs = kept;
    }

    fn on_returned(&mut self, idx: usize, outcome: Outcome, now: Instant) {
        let unread = match std::mem::replace(&mut self.slots[idx], Slot::Free) {
            Slot::Lent(lent) => {
                self.lent -= 1;
                lent.unread
            }
            Slot::Abandoned => {
                // Its client was answered when the request was taken over:
                // whatever comes back is dropped.
                self.free.push(idx);
                return;
            }
            other => {
                debug_assert!(false, "a connection came back to a slot not lent");
                self.slots[idx] = other;
                return;
            }
        };
        match outcome {
            Outcome::Idle(mut conn) => {
                conn.unread |= unread;
                self.after(idx, conn, After::Read, now);
            }
            Outcome::Close(conn) => self.after(idx, conn, After::Close, now),
            Outcome::NeedBody(mut conn) => {
                conn.unread |= unread;
                self.after(idx, conn, After::Body, now);
            }
            Outcome::Gone(conn) => {
                drop(conn);
                self.free.push(idx);
            }
            Outcome::Lost => self.free.push(idx),
            Outcome::Parked(mut desk) => {
                if unread {
                    desk.mark_unread();
                }
                self.slots[idx] = Slot::Parked(desk);
                // Room may have come since the thread found none: its edge
                // went by while the desk was on its way here.
                self.send_parked(idx);
            }
        }
    }

    /// Sends what the connection has pending first, then goes on to `then`.
    #[inline]
    fn after(&mut self, idx: usize, conn: Box<Conn>, then: After, now: Instant) {
        if conn.pending.is_some() {
            self.slots[idx] = Slot::Sending(conn, then);
            self.send_pending(idx, now);
            return;
        }
        match then {
            After::Read => self.await_request(idx, conn, now),
            After::Close => self.linger(idx, conn),
            After::Body => self.start_body(idx, conn, now),
        }
    }

    /// Back to waiting for the next request (or dropping what the app left
    /// of a streamed body first).
    fn await_request(&mut self, idx: usize, mut conn: Box<Conn>, now: Instant) {
        conn.since = now;
        conn.scan = HeadScan::default();
        if matches!(conn.ahead.as_deref(), Some(Ahead::Discarding(_))) {
            // What the buffer holds of the rest goes first (all of it may
            // be there already, and the next request behind it), then what
            // the socket holds.
            self.slots[idx] = Slot::Body(conn);
            if self.advance_body(idx, now) {
                self.read_body(idx, now);
            }
            return;
        }
        let unread = conn.unread;
        let buffered = !conn.buf.is_empty();
        self.slots[idx] = Slot::Head(conn);
        if unread {
            // Bytes that arrived while it was out produced an event this
            // loop already took, or reading stopped at the cap: read now.
            self.read_head(idx, now);
        } else if buffered {
            // A partial next request came with the last one.
            self.scan_buffered(idx, now);
        }
    }

    /// Looks for a head in what a connection already holds.
    fn scan_buffered(&mut self, idx: usize, now: Instant) {
        let limits = &self.shared.config.limits;
        let Some(Slot::Head(conn)) = self.slots.get_mut(idx) else {
            return;
        };
        match conn.scan.scan(&conn.buf, limits) {
            Ok(Scan::Complete) => self.head_done(idx, now),
            Ok(Scan::Partial) => self.count_head(idx),
            Err(e) => {
                tracing::info!(peer = %conn.peer, "bad request: {e}");
                self.answer_and_close(idx, e.status(), e.reason());
            }
        }
    }

    // --- bodies ---------------------------------------------------------------

    /// The request at the start of the buffer has a body still on its way:
    /// read it here, before the app sees the request.
    fn start_body(&mut self, idx: usize, mut conn: Box<Conn>, now: Instant) {
        if let Some(Ahead::Reading(intake)) = conn.ahead.as_deref_mut() {
            intake.rate = crate::runtime::rate::Rate::new(now);
            // The client waits for permission before it sends the body
            // (RFC 9110 §10.1.1): the loop is about to read, so it has it.
            if intake.expect_continue && intake.kept() == 0 && conn.buf.len() == intake.start {
                let mut out = Vec::with_capacity(32);
                encode_continue(&mut out);
                // A connection that has sent only a head has room for 25
                // bytes in its send buffer.
                let _ = conn.io.send_from(&mut out);
            }
        }
        self.slots[idx] = Slot::Body(conn);
        self.advance_body(idx, now);
        if let Some(Slot::Body(conn)) = self.slots.get(idx) {
            if conn.unread {
                self.read_body(idx, now);
            }
        }
    }

    /// Reads body bytes as they come, taking each into the body.
    fn read_body(&mut self, idx: usize, now: Instant) {
        let per_turn = 4 * BODY_READ + self.shared.config.body_buffer;
        loop {
            let Some(Slot::Body(conn)) = self.slots.get_mut(idx) else {
                return;
            };
            conn.unread = false;
            if conn.buf.capacity() - conn.buf.len() < BODY_READ / 4 {
                conn.buf.reserve(BODY_READ);
            }
            let spare = conn.buf.capacity() - conn.buf.len();
            let n = match conn.io.recv_append(&mut conn.buf, spare) {
                Ok(0) => {
                    // The client gave up on its own request.
                    self.close(idx);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(idx);
                    return;
                }
            };
            self.turn_read += n;
            if let Some(Ahead::Reading(i) | Ahead::Discarding(i)) = conn.ahead.as_deref_mut() {
                i.rate.add(n, now);
            }
            if !self.advance_body(idx, now) {
                // Dispatched or refused: whatever else is in the socket
                // is read when the connection waits for bytes again.
                self.mark_unread(idx);
                return;
            }
            let Some(Slot::Body(conn)) = self.slots.get_mut(idx) else {
                return;
            };
            if n < spare {
                return;
            }
            // Keep the loop's other connections moving: one body's burst
            // is taken a bounded piece at a time per turn.
            if conn.buf.len() > per_turn {
                conn.unread = true;
                return;
            }
        }
    }

    /// The socket may hold bytes the loop has not read.
    fn mark_unread(&mut self, idx: usize) {
        match self.slots.get_mut(idx) {
            Some(
                Slot::Head(conn) | Slot::Proxy(conn) | Slot::Body(conn) | Slot::Sending(conn, _),
            ) => conn.unread = true,
            Some(Slot::Lent(lent)) => lent.unread = true,
            Some(Slot::Parked(desk)) => desk.mark_unread(),
            _ => {}
        }
    }

    /// Takes what the buffer gained into the body; true while the body
    /// still reads (false once it was dispatched or refused).
    fn advance_body(&mut self, idx: usize, now: Instant) -> bool {
        let config = &self.shared.config;
        let Some(Slot::Body(conn)) = self.slots.get_mut(idx) else {
            return false;
        };
        let budget = Budget {
            limit: config.limits.body,
            in_memory: config.body_buffer,
            memory_full: self.body_bytes > BODY_MEMORY,
            temp_dir: &config.body_temp_dir,
        };
        let progress = match conn.ahead.as_deref_mut() {
            Some(Ahead::Reading(i) | Ahead::Discarding(i)) => i.advance(&mut conn.buf, &budget),
            _ => Ok(Progress::Done),
        };
        match progress {
            Ok(Progress::More) => true,
            Ok(Progress::Done) => {
                let Slot::Body(mut conn) = std::mem::replace(&mut self.slots[idx], Slot::Free)
                else {
                    unreachable!("matched above");
                };
                match conn.ahead.take().map(|a| *a) {
                    Some(Ahead::Reading(intake)) => {
                        if let Some((file, len)) = intake.into_spooled() {
                            conn.ahead = Some(Box::new(Ahead::Spooled { file, len }));
                        }
                        self.lend(idx, conn);
                    }
                    // What the app left is dropped: on to the next request.
                    _ => self.await_request(idx, conn, now),
                }
                false
            }
            Err(e) => {
                let line = conn.first_line();
                match e {
                    IntakeError::Refused(e) => {
                        tracing::info!(peer = %conn.peer, request = ?line, "bad request body: {e}");
                        self.answer_and_close(idx, e.status(), e.reason());
                    }
                    IntakeError::Spool(e) => {
                        tracing::error!(
                            peer = %conn.peer,
                            request = ?line,
                            dir = %config.body_temp_dir.display(),
                            "cannot keep a request body in a temporary file: {e}; answering 500"
                        );
                        self.answer_and_close(idx, 500, "Internal Server Error");
                    }
                    IntakeError::TooLongToDrop => {
                        let Slot::Body(conn) = std::mem::replace(&mut self.slots[idx], Slot::Free)
                        else {
                            unreachable!("matched above");
                        };
                        self.linger(idx, conn);
                    }
                }
                false
            }
        }
    }

    // --- slow clients ---------------------------------------------------------

    /// Sends what a connection has pending as far as the client takes it;
    /// once all is taken, goes on to what follows.
    fn send_pending(&mut self, idx: usize, now: Instant) {
        let Some(Slot::Sending(conn, _)) = self.slots.get_mut(idx) else {
            return;
        };
        let pending = conn.pending.as_mut().expect("sending has pending bytes");
        match conn.io.send_from(&mut pending.bytes) {
            Ok(n) => pending.stall.wrote(n),
            Err(_) => {
                // Gone: nothing more to send it, nothing to read from it.
                self.close(idx);
                return;
            }
        }
        if !pending.bytes.is_empty() {
            return;
        }
        conn.pending = None;
        let Slot::Sending(conn, then) = std::mem::replace(&mut self.slots[idx], Slot::Free) else {
            unreachable!("matched above");
        };
        self.after(idx, conn, then, now);
    }

    /// Sends what a parked request has unsent; once its client has taken
    /// enough (or is gone), the request goes back to its thread.
    fn send_parked(&mut self, idx: usize) {
        let Some(Slot::Parked(desk)) = self.slots.get_mut(idx) else {
            return;
        };
        if desk.send_unsent().is_err() {
            desk.gone = true;
        } else if desk.unsent() > LOW_WATER {
            return;
        }
        self.resume(idx);
    }

    /// A parked request goes back to the thread that parked it.
    fn resume(&mut self, idx: usize) {
        let Slot::Parked(desk) = std::mem::replace(&mut self.slots[idx], Slot::Free) else {
            return;
        };
        let conn = desk.conn();
        self.slots[idx] = Slot::Lent(Lent {
            unread: false,
            fd: conn.io.fd(),
            tls: conn.io.is_tls(),
        });
        self.lent += 1;
        let thread = desk.thread;
        self.ready.push((
            Job {
                idx,
                work: Work::Resume(desk),
                checked: true,
            },
            Some(thread),
        ));
    }

    // --- closing --------------------------------------------------------------

    /// Answers a connection waiting for a request (or reading its body)
    /// with a canned error and closes it.
    fn answer_and_close(&mut self, idx: usize, status: u16, reason: &str) {
        let mut conn = match std::mem::replace(&mut self.slots[idx], Slot::Free) {
            Slot::Head(conn) | Slot::Body(conn) => conn,
            // Not speaking HTTP yet: closed without an answer.
            proxy @ Slot::Proxy(_) => {
                self.slots[idx] = proxy;
                self.close(idx);
                return;
            }
            other => {
                self.slots[idx] = other;
                return;
            }
        };
        self.uncount_head(&mut conn);
        if let Some(m) = &self.shared.monitor {
            m.slot().counters.refused(status);
        }
        let mut out = Vec::new();
        encode_error(&mut out, status, reason, false);
        // Best effort, without blocking the loop: a connection that has
        // sent at most a request has an empty send buffer, which takes a
        // small error response whole.
        let _ = conn.io.send_from(&mut out);
        self.linger(idx, conn);
    }

    /// Closes gracefully: FIN first, then drop whatever the client still
    /// sends until it closes its side (see `Slot::Lingering`).
    fn linger(&mut self, idx: usize, mut conn: Box<Conn>) {
        self.uncount_head(&mut conn);
        conn.io.shutdown_write();
        release_buffer(&mut conn.buf);
        conn.buf = Vec::new();
        conn.pending = None;
        conn.ahead = None;
        conn.since = Instant::now();
        // Input may already be waiting (its edge went by while the
        // connection was elsewhere): dropped now, or in a later turn if
        // this one has read its share.
        self.slots[idx] = Slot::Lingering(conn, 0);
        if self.turn_read > TURN_BUDGET {
            self.revisit.push_back(idx);
        } else {
            self.drop_input(idx);
        }
    }

    fn close(&mut self, idx: usize) {
        // Dropping the socket closes it, which also removes it from the
        // epoll set.
        match std::mem::replace(&mut self.slots[idx], Slot::Free) {
            Slot::Head(mut conn) | Slot::Proxy(mut conn) => self.uncount_head(&mut conn),
            Slot::Parked(mut desk) => {
                // Its iterator must still be closed on its thread: it goes
                // back there, marked gone.
                desk.gone = true;
                self.slots[idx] = Slot::Parked(desk);
                self.resume(idx);
                return;
            }
            _ => {}
        }
        self.free.push(idx);
    }

    // --- deadlines ------------------------------------------------------------

    /// The connection gauges for the master's metrics (every sweep): open
    /// sockets, idle keep-alive ones among them, and parked requests.
    fn count_connections(&self) {
        if let Some(m) = &self.shared.monitor {
            let open = self
                .slots
                .iter()
                .filter(|s| !matches!(s, Slot::Free | Slot::Abandoned));
            let idle = self
                .slots
                .iter()
                .filter(|s| matches!(s, Slot::Head(c) if c.buf.is_empty()));
            let parked = self.slots.iter().filter(|s| matches!(s, Slot::Parked(_)));
            m.slot()
                .counters
                .connections(open.count(), idle.count(), parked.count());
        }
    }

    /// Closes connections past their deadlines, and refreshes what the
    /// app threads read about the worker's held output.
    fn sweep(&mut self, now: Instant) {
        let cfg = &self.shared.config;
        let (body_rule, send_rule) = (cfg.body_rule(), cfg.send_rule());
        let mut expired = Vec::new();
        let mut slow_heads = Vec::new();
        let mut slow_handshakes = Vec::new();
        let mut slow_proxies = Vec::new();
        let mut slow_bodies = Vec::new();
        let mut slow_readers = Vec::new();
        let (mut queued, mut bodies) = (0, 0);
        self.count_connections();
        for (idx, slot) in self.slots.iter_mut().enumerate() {
            match slot {
                Slot::Head(conn) => {
                    // While stopping, an idle connection gets a short grace
                    // from the stop for a request already on its way (it is
                    // answered with `Connection: close`), then is closed.
                    let (since, limit) = match self.stopped_at {
                        Some(at) if conn.buf.is_empty() => {
                            (conn.since.max(at), cfg.keep_alive.min(STOP_GRACE))
                        }
                        _ if conn.buf.is_empty() && conn.served => (conn.since, cfg.keep_alive),
                        _ => (conn.since, cfg.header_timeout),
                    };
                    if now.duration_since(since) >= limit {
                        if conn.io.handshaking() {
                            slow_handshakes.push(idx);
                        } else if conn.buf.is_empty() {
                            expired.push(idx);
                        } else {
                            slow_heads.push(idx);
                        }
                    }
                }
                Slot::Proxy(conn) => {
                    // As a head (a PROXY header is the start of one), and
                    // while stopping as an idle connection if nothing came.
                    let (since, limit) = match self.stopped_at {
                        Some(at) if conn.buf.is_empty() => {
                            (conn.since.max(at), cfg.keep_alive.min(STOP_GRACE))
                        }
                        _ => (conn.since, cfg.header_timeout),
                    };
                    if now.duration_since(since) >= limit {
                        // One that sent nothing goes quietly, as an idle
                        // connection does.
                        if conn.buf.is_empty() {
                            expired.push(idx);
                        } else {
                            slow_proxies.push(idx);
                        }
                    }
                }
                Slot::Body(conn) => {
                    if let Some(Ahead::Reading(i) | Ahead::Discarding(i)) = conn.ahead.as_deref() {
                        bodies += i.kept();
                        if i.rate.too_slow(now, body_rule) {
                            slow_bodies.push(idx);
                        }
                    }
                }
                Slot::Sending(conn, _) => {
                    queued += conn.pending_len();
                    let io = &conn.io;
                    if let Some(p) = conn.pending.as_deref_mut() {
                        if late(&mut p.stall, io, now, send_rule) {
                            slow_readers.push(idx);
                        }
                    }
                }
                Slot::Parked(desk) => {
                    queued += desk.unsent();
                    let (conn, stall) = desk.conn_and_stall();
                    if let Some(stall) = stall {
                        if late(stall, &conn.io, now, send_rule) {
                            slow_readers.push(idx);
                        }
                    }
                }
                Slot::Lingering(conn, _) if now.duration_since(conn.since) >= LINGER => {
                    expired.push(idx)
                }
                _ => {}
            }
        }
        self.shared.queued.store(queued, Ordering::Relaxed);
        self.body_bytes = bodies;
        for idx in expired {
            self.close(idx);
        }
        if let Some(m) = &self.shared.monitor {
            let slow = slow_heads.len() + slow_proxies.len() + slow_bodies.len();
            m.slot().counters.slow(slow + slow_readers.len());
        }
        for idx in slow_heads {
            if let Some(Slot::Head(conn)) = self.slots.get(idx) {
                tracing::info!(
                    peer = %conn.peer,
                    received = conn.buf.len(),
                    "client too slow sending the request head; answered 408 and closed"
                );
            }
            self.answer_and_close(idx, 408, "Request Timeout");
        }
        for idx in slow_handshakes {
            // A TLS handshake is the start of a head: it has the head's
            // deadline, and a client that drips it is closed like one that
            // drips a head (without a 408, which it could not read).
            if let Some(Slot::Head(conn)) = self.slots.get(idx) {
                tracing::info!(
                    peer = %conn.peer,
                    "TLS handshake not finished within --header-timeout; closed"
                );
            }
            self.close(idx);
        }
        for idx in slow_proxies {
            if let Some(Slot::Proxy(conn)) = self.slots.get(idx) {
                tracing::info!(
                    peer = %conn.peer,
                    received = conn.buf.len(),
                    "no whole PROXY header within --header-timeout; closed"
                );
            }
            self.close(idx);
        }
        for idx in slow_bodies {
            if let Some(Slot::Body(conn)) = self.slots.get(idx) {
                let (received, discarding) = match conn.ahead.as_deref() {
                    Some(Ahead::Reading(i)) => (i.rate.bytes(), false),
                    Some(Ahead::Discarding(i)) => (i.rate.bytes(), true),
                    _ => (0, false),
                };
                if discarding {
                    tracing::info!(peer = %conn.peer, received, "client too slow sending the rest of a request body; closed");
                    let Slot::Body(conn) = std::mem::replace(&mut self.slots[idx], Slot::Free)
                    else {
                        unreachable!("matched above");
                    };
                    self.linger(idx, conn);
                    continue;
                }
                tracing::info!(
                    peer = %conn.peer,
                    request = ?conn.first_line(),
                    received,
                    "client too slow sending the request body; answered 408 and closed"
                );
            }
            self.answer_and_close(idx, 408, "Request Timeout");
        }
        for idx in slow_readers {
            match self.slots.get(idx) {
                Some(Slot::Sending(conn, _)) => {
                    let pending = conn.pending.as_ref();
                    tracing::info!(
                        peer = %conn.peer,
                        request = ?pending.map(|p| p.line.as_str()).unwrap_or_default(),
                        unsent = conn.pending_len(),
                        "client too slow reading the response; closed"
                    );
                }
                Some(Slot::Parked(desk)) => {
                    tracing::info!(
                        peer = %desk.conn().peer,
                        request = ?desk.line_text(),
                        request_id = %desk.request_id(),
                        unsent = desk.unsent(),
                        "client too slow reading the response; closed"
                    );
                }
                _ => continue,
            }
            self.close(idx);
        }
        // Memory a burst of large heads took goes back to the system once
        // they are gone (glibc keeps freed memory for reuse otherwise).
        if self.head_peak > 8 << 20 && self.head_bytes < self.head_peak / 4 {
            self.head_peak = self.head_bytes;
            // SAFETY: malloc_trim only returns free memory to the system.
            unsafe { libc::malloc_trim(0) };
        }
    }
}

/// Whether a slow reader has fallen behind. What it acknowledged is looked
/// up (a system call) only when the last look says it is late: a new look
/// can only find more delivered, so thousands of parked readers cost the
/// sweep a few comparisons each, not a call each.
fn late(stall: &mut Stall, io: &Transport, now: Instant, rule: MinRate) -> bool {
    if !stall.too_slow(now, rule) {
        return false;
    }
    stall.observe(io.unacked(), now);
    stall.too_slow(now, rule)
}

/// Reads and drops what a closing connection sends, counting it in
/// `dropped`; false once it is done (EOF, error, or LINGER_MAX_BYTES).
fn discard_input(conn: &mut Conn, dropped: &mut usize) -> bool {
    let mut scratch = [0u8; 4096];
    let fd = conn.io.fd();
    loop {
        // SAFETY: `scratch` is writable for its length for the call; the fd
        // is the connection's, open while it is borrowed.
        let n = unsafe { libc::recv(fd, scratch.as_mut_ptr().cast(), scratch.len(), 0) };
        match n {
            0 => return false,
            n if n > 0 => {
                *dropped += n as usize;
                if *dropped > LINGER_MAX_BYTES {
                    return false;
                }
            }
            _ => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return true,
                    io::ErrorKind::Interrupted => {}
                    _ => return false,
                }
            }
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
