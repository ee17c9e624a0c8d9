//! The master (gunicorn's arbiter): owns the listening sockets, forks the
//! workers, and supervises them. It never loads the plugin: a worker that
//! cannot load a build reports why through the scoreboard and exits, and the
//! master keeps whatever was serving.
//!
//! One loop, read top to bottom: signal handlers only set a flag and wake
//! the loop; each turn handles the signals that arrived (one `handle_*`
//! each), then always reaps exited workers, notices booted ones, retires
//! workers whose request ran past `--timeout` (the worker abandons that
//! request alone: SIGUSR2 and an abort order on the scoreboard), kills
//! workers that stopped turning their event loop, and tops the pool up.
//!
//! Stopping (TERM, INT, QUIT), the master closes its listening sockets at
//! once, and each worker closes the copies it inherited as soon as it has
//! taken its backlog: from then on the port refuses new clients instead of
//! the kernel queueing connections nobody will accept, and a new master
//! can bind it.
//!
//! Hot swap (HUP, `host reload`, `--reload`, `--max-requests`): a new
//! build is staged (`staging`), one canary worker boots on it; only once it
//! has loaded the library, passed the ABI check and run init does the new
//! build become current. New workers then boot one by one, and each one
//! ready retires an old one (SIGTERM: it stops accepting, answers its
//! keep-alive clients with `Connection: close`, finishes what is in flight,
//! runs the plugin's shutdown). The listening sockets are shared, so
//! connections queued in the backlog wait for whichever worker accepts
//! next: none is reset.
use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1};

use crate::runtime::scoreboard::{now_ms, Scoreboard, WorkerState, MAX_WORKERS};
use crate::runtime::Config;
use crate::supervisor::staging::{stage, Build};
use crate::supervisor::worker::{self, WorkerSpec, EXIT_LOAD_ERROR};

/// How often the loop turns when nothing wakes it.
const TICK: Duration = Duration::from_millis(100);
/// A worker that dies sooner than this after booting counts as a crash in
/// a row (backoff); one that ran longer resets the count.
const MIN_UPTIME: Duration = Duration::from_secs(5);
/// Longest wait before restarting a worker that keeps crashing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often `--reload` looks at the plugin file.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Everything the master is told at start.
pub struct MasterConfig {
    /// The plugin file as the user named it.
    pub original: PathBuf,
    pub symbol: String,
    pub workers: usize,
    /// `-t`: longest a request may run before its worker is told to
    /// abandon it and retire (and longest a worker may take to boot, or
    /// leave its event loop unturned, before it is killed); zero disables.
    pub timeout: Duration,
    pub graceful_timeout: Duration,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// `--reload`: swap when the plugin file changes.
    pub watch: bool,
    pub pidfile: Option<PathBuf>,
    pub app_args: Vec<(String, String)>,
    pub access_log: Option<String>,
    pub server: Config,
}

/// A worker as the master sees it.
struct Worker {
    index: usize,
    build: Build,
    phase: Phase,
    started: Instant,
    /// Reached `--max-requests`: replaced like an old build.
    recycle: bool,
    /// Ran a request past `--timeout` (retired with an abort order), or
    /// stopped turning its event loop (killed).
    timed_out: bool,
    /// Per app thread, the running request the master last saw: its
    /// number and when (`now_ms`) the master first saw it. A request is
    /// timed from there: the request path reads no clock for it.
    seen: Vec<Option<(u64, u64)>>,
}

/// A request the master saw running past `--timeout`.
struct Hung {
    thread: usize,
    /// Its number on that thread (`ThreadSlot::running`): the abort order
    /// names it, so the worker abandons this request and not a later one.
    number: u64,
    line: String,
    age_ms: u64,
}

impl Hung {
    /// `request "GET / HTTP/1.1" running for 30.1s on thread 3`.
    fn describe(&self) -> String {
        format!(
            "request \"{}\" running for {:.1}s on thread {}",
            self.line,
            self.age_ms as f64 / 1000.0,
            self.thread
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Booting,
    Ready,
    /// Sent SIGTERM (or, timed out, SIGUSR2) at this time: it stops
    /// accepting, finishes its requests and exits by itself; killed if it
    /// still runs `--graceful-timeout` + 5 s later.
    Retiring(Instant),
}

/// How the master is stopping, once it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    /// TERM: workers finish in-flight requests; killed at the deadline.
    Graceful(Instant),
    /// INT/QUIT: workers exit at once; killed at the deadline.
    Fast(Instant),
}

/// Signals the handlers flagged, in the order the loop handles them.
const SIGNALS: [i32; 8] = [
    SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1,
];

pub struct Master {
    cfg: MasterConfig,
    listeners: Vec<TcpListener>,
    board: &'static Scoreboard,
    workers: BTreeMap<i32, Worker>,
    /// The build new workers get.
    current: Build,
    /// A reload's canary: booting on a build not yet current.
    canary: Option<i32>,
    /// Workers wanted (`-w`, changed by TTIN/TTOU).
    target: usize,
    stopping: Option<Stopping>,
    /// Unexpected worker deaths in a row, and when a respawn may happen.
    crashes: u32,
    respawn_at: Instant,
    /// What `--reload` last loaded, and a change seen once (loaded when
    /// the next look finds it unchanged).
    watched: Option<FileStamp>,
    changed: Option<FileStamp>,
    next_watch: Instant,
    /// A reload was asked for while a canary was booting.
    reload_queued: bool,
    /// Outcomes of reloads, numbered for `host reload`.
    reload_seq: u64,
    /// What the status file says now.
    last_status: String,
    flags: Vec<Arc<AtomicBool>>,
    signal_ids: Vec<signal_hook::SigId>,
    wake: std::os::unix::net::UnixStream,
    rng: u64,
}

impl Master {
    /// Stages the first build, installs the signal handlers and boots the
    /// first worker. An Err is the one-line reason the plugin cannot be
    /// served (the caller exits non-zero with it).
    pub fn start(cfg: MasterConfig, listeners: Vec<TcpListener>) -> Result<Master, String> {
        let current = stage(&cfg.original, 1)?;
        // A worker runs one thread more than --threads (see server.rs).
        let threads = cfg.server.threads + 1;
        let board: &'static Scoreboard = Box::leak(Box::new(
            Scoreboard::new(threads).map_err(|e| format!("cannot map the scoreboard: {e}"))?,
        ));
        let (wake, wake_tx) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| format!("cannot create a pipe: {e}"))?;
        wake.set_nonblocking(true).map_err(|e| e.to_string())?;
        wake_tx.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut flags = Vec::new();
        let mut signal_ids = Vec::new();
        for sig in SIGNALS {
            let flag = Arc::new(AtomicBool::new(false));
            let mut register = || -> std::io::Result<()> {
                signal_ids.push(signal_hook::flag::register(sig, Arc::clone(&flag))?);
                signal_ids.push(signal_hook::low_level::pipe::register(
                    sig,
                    wake_tx.try_clone()?,
                )?);
                Ok(())
            };
            register().map_err(|e| format!("cannot install signal handlers: {e}"))?;
            flags.push(flag);
        }
        let watched = cfg.watch.then(|| FileStamp::of(&cfg.original)).flatten();
        let target = cfg.workers.clamp(1, MAX_WORKERS / 2);
        let seed = std::process::id() as u64 ^ now_ms().rotate_left(17);
        let mut master = Master {
            cfg,
            listeners,
            board,
            workers: BTreeMap::new(),
            current,
            canary: None,
            target,
            stopping: None,
            crashes: 0,
            respawn_at: Instant::now(),
            watched,
            changed: None,
            next_watch: Instant::now() + WATCH_EVERY,
            reload_queued: false,
            reload_seq: 0,
            last_status: String::new(),
            flags,
            signal_ids,
            wake,
            rng: seed | 1,
        };
        master.boot_first()?;
        Ok(master)
    }

    /// Boots one worker and waits for it: the plugin is proven loadable
    /// before the server says it is listening.
    fn boot_first(&mut self) -> Result<(), String> {
        let build = self.current.clone();
        let pid = self.spawn(&build).ok_or("cannot start a worker process")?;
        loop {
            self.wait_for_wake();
            // TERM stays pending: once the worker is up, the main loop stops
            // it gracefully (it may already be answering queued clients; a
            // worker still booting cannot take TERM yet). The master's own
            // listeners close now: nothing else will be spawned to use
            // them. INT/QUIT mean now.
            if self.pending(SIGTERM) {
                self.close_listeners();
            }
            if self.pending(SIGINT) || self.pending(SIGQUIT) {
                self.kill_all(libc::SIGKILL);
                return Err("interrupted while the first worker was booting".into());
            }
            if let Some(failure) = self.reap_boot_failure(pid) {
                return Err(failure);
            }
            self.check_boots();
            if self
                .workers
                .get(&pid)
                .is_some_and(|w| w.phase == Phase::Ready)
            {
                return Ok(());
            }
            if !self.cfg.timeout.is_zero()
                && self.workers[&pid].started.elapsed() > self.cfg.timeout
            {
                self.kill(pid, libc::SIGKILL);
                let _ = self.reap_boot_failure(pid);
                return Err(format!(
                    "plugin {}: the worker did not finish loading it within {}s (-t)",
                    self.cfg.original.display(),
                    self.cfg.timeout.as_secs()
                ));
            }
        }
    }

    /// Writes the pidfile and serves until stopped.
    pub fn run(mut self) -> Result<(), String> {
        if let Some(p) = &self.cfg.pidfile {
            fs::write(p, format!("{}\n", std::process::id()))
                .map_err(|e| format!("cannot write pidfile {}: {e}", p.display()))?;
        }
        tracing::info!(
            plugin = %self.cfg.original.display(),
            build = self.current.short(),
            workers = self.target,
            threads = self.cfg.server.threads,
            "master {} serving",
            std::process::id()
        );
        for l in &self.listeners {
            if let Ok(addr) = l.local_addr() {
                tracing::info!("listening on http://{addr}");
            }
        }
        loop {
            self.wait_for_wake();
            self.handle_signals();
            self.reap();
            self.check_boots();
            self.murder_workers();
            if let Some(stopping) = self.stopping {
                if self.workers.is_empty() {
                    break;
                }
                let deadline = match stopping {
                    Stopping::Graceful(d) | Stopping::Fast(d) => d,
                };
                if Instant::now() >= deadline {
                    tracing::warn!(
                        left = self.workers.len(),
                        "workers still running at the deadline; killing them"
                    );
                    self.kill_all(libc::SIGKILL);
                }
                continue;
            }
            self.watch_plugin();
            self.manage_workers();
            self.write_status();
        }
        if let Some(p) = &self.cfg.pidfile {
            let _ = fs::remove_file(p);
            let _ = fs::remove_file(status_path(p));
            let _ = fs::remove_file(reload_status_path(p));
        }
        tracing::info!("master {} stopped", std::process::id());
        Ok(())
    }

    // --- signals --------------------------------------------------------

    fn flag(&self, sig: i32) -> &AtomicBool {
        let i = SIGNALS
            .iter()
            .position(|&s| s == sig)
            .expect("a handled signal");
        &self.flags[i]
    }

    /// Takes a signal's flag: true if it arrived since the last look.
    fn flagged(&self, sig: i32) -> bool {
        self.flag(sig).swap(false, Ordering::SeqCst)
    }

    /// Looks at a signal's flag without taking it.
    fn pending(&self, sig: i32) -> bool {
        self.flag(sig).load(Ordering::SeqCst)
    }

    fn handle_signals(&mut self) {
        let _ = self.flagged(SIGCHLD); // only wakes the loop to reap
        if self.flagged(SIGTERM) {
            self.handle_term();
        }
        if self.flagged(SIGINT) || self.flagged(SIGQUIT) {
            self.handle_quit();
        }
        if self.flagged(SIGHUP) {
            self.handle_hup();
        }
        if self.flagged(SIGTTIN) {
            self.handle_ttin();
        }
        if self.flagged(SIGTTOU) {
            self.handle_ttou();
        }
        if self.flagged(SIGUSR1) {
            self.handle_usr1();
        }
    }

    /// TERM: every worker stops accepting, drains, exits; then we do.
    fn handle_term(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        tracing::info!("TERM: stopping gracefully (workers finish in-flight requests)");
        // An optional delay before closing (so that load balancers, e.g.
        // Kubernetes endpoints, stop sending clients first) would go
        // here: keep serving for it, then close and signal the workers.
        self.close_listeners();
        // Margin over the workers' own graceful timeout, so they get to
        // finish it themselves.
        let deadline = Instant::now() + self.cfg.graceful_timeout + Duration::from_secs(5);
        self.stopping = Some(Stopping::Graceful(deadline));
        self.kill_all(libc::SIGTERM);
        self.report_reload(false, "the server is stopping");
    }

    /// INT/QUIT: workers exit at once.
    fn handle_quit(&mut self) {
        if matches!(self.stopping, Some(Stopping::Fast(_))) {
            return;
        }
        tracing::info!("INT/QUIT: stopping now");
        self.close_listeners();
        self.stopping = Some(Stopping::Fast(Instant::now() + Duration::from_secs(2)));
        self.kill_all(libc::SIGQUIT);
    }

    fn handle_hup(&mut self) {
        if self.stopping.is_some() {
            tracing::info!("HUP ignored: the server is stopping");
            return;
        }
        tracing::info!("HUP: reloading {}", self.cfg.original.display());
        self.reload();
    }

    fn handle_ttin(&mut self) {
        if self.target < MAX_WORKERS / 2 {
            self.target += 1;
        }
        tracing::info!(workers = self.target, "TTIN: one more worker");
    }

    fn handle_ttou(&mut self) {
        if self.target > 1 {
            self.target -= 1;
        }
        tracing::info!(workers = self.target, "TTOU: one fewer worker");
    }

    /// USR1: workers reopen their log files.
    fn handle_usr1(&mut self) {
        tracing::info!("USR1: reopening log files");
        self.kill_all(libc::SIGUSR1);
    }

    /// Closes the master's copies of the listening sockets. The workers
    /// close theirs once they have taken their backlog; from then on
    /// connect() is refused rather than accepted by the kernel into a
    /// queue nobody reads (and reset when the last copy closes).
    fn close_listeners(&mut self) {
        if !self.listeners.is_empty() {
            self.listeners.clear();
            tracing::debug!("closed the listening sockets");
        }
    }

    // --- reload ---------------------------------------------------------

    fn reload(&mut self) {
        if let Some(pid) = self.canary {
            // The file may have changed again since that canary's build was
            // staged: stage it again once this one is decided.
            tracing::info!("a reload is in progress (canary worker {pid}); another follows it");
            self.reload_queued = true;
            return;
        }
        let generation = self.current.generation + 1;
        let build = match stage(&self.cfg.original, generation) {
            Ok(b) => b,
            Err(why) => return self.reload_failed(&why),
        };
        tracing::info!(
            "reload: booting build {} (generation {generation})",
            build.short()
        );
        match self.spawn(&build) {
            Some(pid) => self.canary = Some(pid),
            None => self.reload_failed("cannot start a worker process"),
        }
    }

    fn reload_failed(&mut self, why: &str) {
        tracing::error!(
            "reload failed: {why}; build {} keeps serving",
            self.current.short()
        );
        if !self.reload_again() {
            self.report_reload(false, why);
        }
    }

    /// Starts the reload that was asked for while another was running.
    /// Only the last outcome is reported: `host reload` answers for the
    /// file as it is now, never for a build already superseded.
    fn reload_again(&mut self) -> bool {
        if !std::mem::take(&mut self.reload_queued) || self.stopping.is_some() {
            return false;
        }
        self.reload();
        true
    }

    /// The canary is up: its build is current from now on.
    fn promote(&mut self, pid: i32) {
        self.canary = None;
        let Some(w) = self.workers.get(&pid) else {
            return;
        };
        let old = std::mem::replace(&mut self.current, w.build.clone());
        tracing::info!(
            "reload: build {} (generation {}) is serving; retiring generation {} (build {}) as new workers come up",
            self.current.short(),
            self.current.generation,
            old.generation,
            old.short()
        );
        if !self.reload_again() {
            let text = format!("build {}", self.current.short());
            self.report_reload(true, &text);
        }
    }

    /// Tells a waiting `host reload` how the last reload went.
    fn report_reload(&mut self, ok: bool, text: &str) {
        let Some(pidfile) = &self.cfg.pidfile else {
            return;
        };
        self.reload_seq += 1;
        let path = reload_status_path(pidfile);
        let tmp = path.with_extension("tmp");
        let line = format!(
            "{} {} {}\n",
            self.reload_seq,
            if ok { "ok" } else { "error" },
            text.replace('\n', " ")
        );
        if fs::write(&tmp, line)
            .and_then(|()| fs::rename(&tmp, &path))
            .is_err()
        {
            tracing::warn!("cannot write {}", path.display());
        }
    }

    /// `--reload`: swap when the plugin file changed and looked the same
    /// at two looks in a row (a copy in progress is not loaded half-written).
    fn watch_plugin(&mut self) {
        if !self.cfg.watch || Instant::now() < self.next_watch {
            return;
        }
        self.next_watch = Instant::now() + WATCH_EVERY;
        let now = FileStamp::of(&self.cfg.original);
        if now.is_none() || now == self.watched {
            self.changed = None;
            return;
        }
        if now == self.changed {
            tracing::info!("{} changed; reloading", self.cfg.original.display());
            self.watched = now;
            self.changed = None;
            self.reload();
        } else {
            self.changed = now;
        }
    }

    // --- the pool -------------------------------------------------------

    /// Forks a worker on `build`; None if no slot or fork failed, or if
    /// the server is stopping (its listeners are closed: a new worker
    /// would have nothing to serve).
    fn spawn(&mut self, build: &Build) -> Option<i32> {
        if self.stopping.is_some() || self.listeners.is_empty() {
            return None;
        }
        let Some(index) = self.board.claim() else {
            tracing::error!("no free worker slot (at most {MAX_WORKERS} workers)");
            return None;
        };
        let max_requests = if self.cfg.max_requests > 0 {
            self.cfg.max_requests + self.jitter()
        } else {
            0
        };
        // The stop signals wait (blocked) across the fork: the child must not
        // take one with the master's handlers, which it is about to drop;
        // it unblocks them once its own are in place (worker::run).
        let previous = worker::block_stop_signals();
        // SAFETY: the master is single-threaded (it never starts a thread),
        // so the child is a consistent copy and may go on running Rust code.
        let pid = unsafe { libc::fork() };
        if pid != 0 {
            worker::restore_signal_mask(&previous);
        }
        match pid {
            -1 => {
                tracing::error!("fork failed: {}", std::io::Error::last_os_error());
                self.board.reset(index);
                None
            }
            0 => {
                // The child's copy of the master is never dropped (the
                // worker exits from inside `worker::run`), so sockets left
                // in it would stay open for the worker's whole life: the
                // worker takes them and owns the only copy here.
                let listeners = std::mem::take(&mut self.listeners);
                worker::run(
                    WorkerSpec {
                        build,
                        symbol: &self.cfg.symbol,
                        original: &self.cfg.original,
                        app_args: &self.cfg.app_args,
                        config: &self.cfg.server,
                        access_log: self.cfg.access_log.as_deref(),
                        board: self.board,
                        index,
                        max_requests,
                        master_signals: &self.signal_ids,
                        // SAFETY: getppid has no preconditions.
                        master_pid: unsafe { libc::getppid() },
                    },
                    listeners,
                )
            }
            pid => {
                self.workers.insert(
                    pid,
                    Worker {
                        index,
                        build: build.clone(),
                        phase: Phase::Booting,
                        started: Instant::now(),
                        recycle: false,
                        timed_out: false,
                        seen: vec![None; self.board.threads_per_worker()],
                    },
                );
                Some(pid)
            }
        }
    }

    /// Starts workers of the current build up to the target, and retires
    /// workers beyond it — old builds and recycled ones first — but only
    /// while enough others are ready, so capacity never dips during a swap.
    fn manage_workers(&mut self) {
        for (pid, w) in &mut self.workers {
            if w.phase == Phase::Ready && !w.recycle && self.board.worker(w.index).wants_recycle() {
                w.recycle = true;
                tracing::info!(
                    "worker {pid} reached --max-requests ({} served); replacing it",
                    self.board.requests(w.index)
                );
            }
        }
        // Generations, not hashes: a reload of unchanged bytes still
        // replaces every worker (a rolling restart).
        let current = self.current.generation;
        // A retiring worker is not serving, whether retired for a new build
        // or for a request past -t (it only finishes what it has): its
        // replacement boots at once, and being ready it retires no one.
        let serving = |w: &Worker| matches!(w.phase, Phase::Booting | Phase::Ready);
        let live_current = self
            .workers
            .iter()
            .filter(|(pid, w)| {
                serving(w)
                    && w.build.generation == current
                    && !w.recycle
                    && Some(**pid) != self.canary
            })
            .count();
        if self.canary.is_none() && live_current < self.target && Instant::now() >= self.respawn_at
        {
            let build = self.current.clone();
            for _ in live_current..self.target {
                if self.spawn(&build).is_none() {
                    break;
                }
            }
        }
        loop {
            let ready = self
                .workers
                .values()
                .filter(|w| w.phase == Phase::Ready)
                .count();
            if ready <= self.target {
                break;
            }
            // The least wanted ready worker: recycled or an old build
            // first, then the oldest.
            let victim = self
                .workers
                .iter()
                .filter(|(_, w)| w.phase == Phase::Ready)
                .min_by_key(|(_, w)| (!(w.recycle || w.build.generation != current), w.started))
                .map(|(pid, _)| *pid);
            match victim {
                Some(pid) => self.retire(pid),
                None => break,
            }
        }
    }

    fn retire(&mut self, pid: i32) {
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        w.phase = Phase::Retiring(Instant::now());
        tracing::info!("retiring worker {pid} (build {})", w.build.short());
        self.kill(pid, libc::SIGTERM);
    }

    /// Notices workers that finished booting.
    fn check_boots(&mut self) {
        let booted: Vec<i32> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                w.phase == Phase::Booting
                    && self.board.worker(w.index).state() == WorkerState::Ready
            })
            .map(|(pid, _)| *pid)
            .collect();
        for pid in booted {
            if let Some(w) = self.workers.get_mut(&pid) {
                w.phase = Phase::Ready;
            }
            if self.canary == Some(pid) {
                self.promote(pid);
            }
        }
    }

    /// Reaps every exited worker and says why it exited.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid out-pointer; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(w) = self.workers.remove(&pid) else {
                continue;
            };
            let slot = self.board.worker(w.index);
            let message = slot.message();
            self.board.reset(w.index);
            let cause = describe_exit(status);
            match w.phase {
                // Not a crash: the worker left as told, after abandoning
                // the request that ran past -t (its replacement is up).
                Phase::Retiring(_) if w.timed_out => {
                    tracing::warn!("worker {pid} exited: {cause} (timed out, retired)")
                }
                Phase::Retiring(_) => tracing::info!("worker {pid} exited: {cause} (retired)"),
                _ if self.stopping.is_some() => tracing::info!("worker {pid} exited: {cause}"),
                Phase::Booting => {
                    let why = boot_failure(&self.cfg.original, message, status, &cause);
                    if self.canary == Some(pid) {
                        tracing::info!("worker {pid} exited while booting: {cause}");
                        self.canary = None;
                        self.reload_failed(&why);
                    } else {
                        tracing::error!("worker {pid} could not boot: {why}");
                        self.crashed(w.started);
                    }
                }
                Phase::Ready if w.timed_out => {
                    tracing::warn!("worker {pid} exited: {cause} (timed out); replacing it")
                }
                Phase::Ready => {
                    tracing::error!(
                        "worker {pid} exited: {cause} (build {}); replacing it",
                        w.build.short()
                    );
                    self.crashed(w.started);
                }
            }
        }
    }

    /// The startup canary's fate: Some(reason) if it exited.
    fn reap_boot_failure(&mut self, pid: i32) -> Option<String> {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r != pid {
            return None;
        }
        let w = self.workers.remove(&pid)?;
        let message = self.board.worker(w.index).message();
        self.board.reset(w.index);
        Some(boot_failure(
            &self.cfg.original,
            message,
            status,
            &describe_exit(status),
        ))
    }

    /// Backoff for workers that keep dying.
    fn crashed(&mut self, started: Instant) {
        if started.elapsed() >= MIN_UPTIME {
            self.crashes = 0;
        }
        self.crashes += 1;
        if self.crashes >= 2 {
            let delay = Duration::from_secs(1 << (self.crashes - 2).min(5)).min(MAX_BACKOFF);
            self.respawn_at = Instant::now() + delay;
            tracing::warn!(
                "workers crashed {} times in a row; next restart in {}s",
                self.crashes,
                delay.as_secs()
            );
        }
    }

    /// Retires workers whose request ran past `--timeout` (naming the
    /// request first): the worker is ordered to abandon that request (its
    /// client gets a 503, or a closed connection if its response had
    /// begun), stops accepting, finishes its other requests and exits, so
    /// the timeout costs only the hung request; a replacement boots at once
    /// (`manage_workers` does not count a retiring worker). Kills workers
    /// that stopped turning their event loop (they could not act on the
    /// order), that take too long to boot, or that take too long to retire.
    fn murder_workers(&mut self) {
        let now = now_ms();
        let timeout = self.cfg.timeout;
        let mut doomed = Vec::new();
        let mut aborts = Vec::new();
        for (pid, w) in &mut self.workers {
            match w.phase {
                Phase::Retiring(since) => {
                    if since.elapsed() > self.cfg.graceful_timeout + Duration::from_secs(5) {
                        tracing::warn!(
                            "worker {pid} still retiring after --graceful-timeout; killing it"
                        );
                        doomed.push(*pid);
                        continue;
                    }
                }
                Phase::Booting => {
                    if !timeout.is_zero() && w.started.elapsed() > timeout {
                        tracing::error!(
                            "worker {pid} did not boot within {}s (-t); killing it",
                            timeout.as_secs()
                        );
                        doomed.push(*pid);
                    }
                    continue;
                }
                Phase::Ready => {}
            }
            if timeout.is_zero() || w.timed_out {
                continue;
            }
            let limit = timeout.as_millis() as u64;
            // The request that has run longest past the limit, if any.
            let mut hung: Option<Hung> = None;
            for (t, seen) in w.seen.iter_mut().enumerate() {
                let Some((number, line)) = self.board.thread(w.index, t).running() else {
                    *seen = None;
                    continue;
                };
                let since = match *seen {
                    Some((n, since)) if n == number => since,
                    _ => {
                        *seen = Some((number, now));
                        now
                    }
                };
                let age = now.saturating_sub(since);
                if age > limit && hung.as_ref().is_none_or(|h| age > h.age_ms) {
                    hung = Some(Hung {
                        thread: t,
                        number,
                        line,
                        age_ms: age,
                    });
                }
            }
            let beat = self.board.worker(w.index).last_heartbeat_ms();
            let stalled = beat != 0 && now.saturating_sub(beat) > limit;
            if stalled {
                // A loop that does not turn cannot take an abort order.
                tracing::error!(
                    "worker {pid} unresponsive: its event loop has not turned for {:.1}s{}; killing it",
                    now.saturating_sub(beat) as f64 / 1000.0,
                    hung.map(|h| format!(" ({})", h.describe()))
                        .unwrap_or_default()
                );
                doomed.push(*pid);
            } else if let Some(h) = hung {
                tracing::error!(
                    "worker {pid} timed out: {} (-t {}s); retiring it",
                    h.describe(),
                    timeout.as_secs()
                );
                aborts.push((*pid, h.thread, h.number));
            }
        }
        for (pid, thread, number) in aborts {
            let Some(w) = self.workers.get_mut(&pid) else {
                continue;
            };
            w.timed_out = true;
            // A worker already retiring keeps its deadline.
            if !matches!(w.phase, Phase::Retiring(_)) {
                w.phase = Phase::Retiring(Instant::now());
            }
            // The order first: the worker reads it when SIGUSR2 arrives.
            self.board.worker(w.index).order_abort(thread, number);
            self.kill(pid, libc::SIGUSR2);
        }
        for pid in doomed {
            if let Some(w) = self.workers.get_mut(&pid) {
                // A worker killed while retiring was not serving: its exit
                // stays a retirement.
                if !matches!(w.phase, Phase::Retiring(_)) {
                    w.timed_out = true;
                }
            }
            self.kill(pid, libc::SIGKILL);
        }
    }

    /// Rewrites the status file next to the pidfile when what it would
    /// say changed: the master's build, then one line per worker.
    fn write_status(&mut self) {
        let Some(pidfile) = &self.cfg.pidfile else {
            return;
        };
        let mut text = format!(
            "master {} build {} generation {} workers {}\n",
            std::process::id(),
            self.current.short(),
            self.current.generation,
            self.target
        );
        for (pid, w) in &self.workers {
            let state = match w.phase {
                Phase::Booting => "booting",
                Phase::Ready => "ready",
                Phase::Retiring(_) => "retiring",
            };
            text.push_str(&format!(
                "worker {pid} build {} generation {} {state}\n",
                w.build.short(),
                w.build.generation
            ));
        }
        if text == self.last_status {
            return;
        }
        let path = status_path(pidfile);
        let tmp = path.with_extension("status-tmp");
        if fs::write(&tmp, &text)
            .and_then(|()| fs::rename(&tmp, &path))
            .is_ok()
        {
            self.last_status = text;
        }
    }

    // --- helpers --------------------------------------------------------

    fn kill(&self, pid: i32, sig: i32) {
        // SAFETY: signalling our own child; kill has no memory effects.
        unsafe { libc::kill(pid, sig) };
    }

    fn kill_all(&self, sig: i32) {
        for pid in self.workers.keys() {
            self.kill(*pid, sig);
        }
    }

    /// Sleeps until a signal arrives or a tick passes.
    fn wait_for_wake(&mut self) {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd on our stack, count 1.
        unsafe { libc::poll(&mut pfd, 1, TICK.as_millis() as i32) };
        let mut buf = [0u8; 64];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
    }

    /// xorshift64: `--max-requests-jitter` needs no better randomness.
    fn jitter(&mut self) -> u64 {
        let j = self.cfg.max_requests_jitter;
        if j == 0 {
            return 0;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % (j + 1)
    }
}

/// The file next to the pidfile that lists the workers (`host status`).
pub fn status_path(pidfile: &Path) -> PathBuf {
    let mut name = pidfile.as_os_str().to_os_string();
    name.push(".status");
    PathBuf::from(name)
}

/// The file next to the pidfile where reload outcomes are written.
pub fn reload_status_path(pidfile: &Path) -> PathBuf {
    let mut name = pidfile.as_os_str().to_os_string();
    name.push(".reload");
    PathBuf::from(name)
}

/// Why a worker that was booting exited.
fn boot_failure(original: &Path, message: Option<String>, status: i32, cause: &str) -> String {
    match message {
        Some(m) => m,
        None if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == EXIT_LOAD_ERROR => {
            format!("plugin {}: could not be loaded", original.display())
        }
        None => format!(
            "plugin {}: the worker crashed while loading it ({cause})",
            original.display()
        ),
    }
}

/// "exited with code 3", "killed by signal 11 (SIGSEGV)".
pub fn describe_exit(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        format!("killed by signal {sig} ({})", signal_name(sig))
    } else {
        format!("stopped with status {status}")
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGSYS => "SIGSYS",
        _ => "?",
    }
}

/// What `--reload` compares: a change of any of these is a new file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            ino: meta.ino(),
        })
    }
}
