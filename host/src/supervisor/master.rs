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
//! workers that stopped turning their event loop, judges a reloaded build
//! on probation, and tops the pool up.
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
//! next: none is reset. For `--settle-period` after that, the new build is
//! on probation (`health`): if its workers crash repeatedly while the build
//! it replaced had served without crashing, the master rolls back to that
//! build, still staged in memory, and `host reload` fails with the reason.
//!
//! Binary upgrade (USR2, `host upgrade`; see `upgrade`): the master starts
//! the host binary again with the listening sockets, as its child, and
//! keeps serving while the new master boots. Once every worker of the new
//! master is up, the old one hands over the pidfile and drains as at TERM;
//! if the new master exits, or is not ready in time, nothing changed.
//!
//! Crashes (`health`): each slot of the pool backs off on its own when its
//! workers keep dying young, but while the current build boots fine at
//! least one worker is always up, so a request that crashes workers costs
//! those workers, never the service.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use signal_hook::consts::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2,
};

use crate::gateway::mount::MountSpec;
use crate::net::listener::{Bound, Listener, SocketFile};
use crate::runtime::metrics::{self, Totals};
use crate::runtime::scoreboard::{now_ms, Scoreboard, WorkerState, MAX_WORKERS};
use crate::runtime::Config;
use crate::supervisor::admin::{Admin, Answer, Route};
use crate::supervisor::control::{Control, Pidfile};
use crate::supervisor::health::{Probation, Slot, Verdict, MIN_UPTIME};
use crate::supervisor::notify::Notifier;
use crate::supervisor::process::Identity;
use crate::supervisor::report::{Events, MountView, Snapshot, WorkerView};
use crate::supervisor::staging::{stage_set, Build, Source};
use crate::supervisor::upgrade::{Handover, News, Origin, Successor};
use crate::supervisor::worker::{self, WorkerSpec, EXIT_LOAD_ERROR};

/// How often the loop turns when nothing wakes it.
const TICK: Duration = Duration::from_millis(100);
/// How often `--reload` looks at the plugin file.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Least time between two workers started despite a backoff because none
/// was serving: a build that crashes on every request then costs at most
/// this many forks a second, however fast the requests come.
const FLOOR_EVERY: Duration = Duration::from_millis(100);
/// Least time the new master of an upgrade is given to get all its
/// workers up, before the old one stops it: each worker has `-t` to boot,
/// so `-t` and `UPGRADE_MARGIN` if that is more. Less than `host
/// upgrade`'s default wait (60 s with the default `-t` of 30 s), so the
/// command hears the reason.
const UPGRADE_WAIT: Duration = Duration::from_secs(30);
const UPGRADE_MARGIN: Duration = Duration::from_secs(15);
/// How long the new master of an upgrade waits for the old one to let go
/// of the pidfile once told it is ready (the old master's loop turns
/// every `TICK`).
const PIDFILE_WAIT: Duration = Duration::from_secs(10);
/// How often the status JSON (`host status --json`, `host top`) is
/// refreshed, and the new master of an upgrade tries the admin address
/// the old one still holds.
const JSON_EVERY: Duration = Duration::from_secs(1);
const ADMIN_RETRY: Duration = Duration::from_secs(1);

/// Everything the master is told at start.
pub struct MasterConfig {
    /// The apps: each plugin file as the user named it, with its mount
    /// prefix ("/" for a lone plugin) and its own init pairs.
    pub apps: Vec<MountSpec>,
    pub workers: usize,
    /// `-t`: longest a request may run before its worker is told to
    /// abandon it and retire (and longest a worker may take to boot, or
    /// leave its event loop unturned, before it is killed); zero disables.
    pub timeout: Duration,
    pub graceful_timeout: Duration,
    /// `--term-delay`: how long the server keeps serving after TERM
    /// before it stops accepting (load balancers take the time to stop
    /// sending it clients); zero stops at once.
    pub term_delay: Duration,
    /// `--user`/`--group`: who the workers become before they load the
    /// plugin (None: they stay who the master is).
    pub identity: Option<Identity>,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// `--reload`: swap when the plugin file changes.
    pub watch: bool,
    /// `--settle-period`: how long a reload's new build is on probation
    /// (rolled back if it crashes repeatedly meanwhile); zero disables.
    pub settle: Duration,
    /// `-p`, already locked: a second master on the same file was refused
    /// before it bound anything.
    pub pidfile: Option<Pidfile>,
    pub app_args: Vec<(String, String)>,
    pub access_log: Option<String>,
    pub server: Config,
    /// HUP re-reads the settings with it (a config file, `-c`), before the
    /// rolling reload that applies them; an Err is one line naming the
    /// file, line and key, and then nothing changes.
    pub reread: Option<Box<dyn FnMut() -> Result<Reread, String>>>,
    /// How this process was started, for USR2 to start it again (None:
    /// USR2 says it cannot).
    pub origin: Option<Origin>,
    /// This master is the new one of an upgrade: it tells the old one once
    /// all its workers are up, then takes the pidfile (`-p`, this path)
    /// over from it.
    pub handover: Option<(Handover, Option<PathBuf>)>,
    /// `--admin-bind`, bound.
    pub admin: Option<Admin>,
    /// `--admin-bind` not bound yet: the new master of an upgrade binds it
    /// once the old master lets go of it (at the handover).
    pub admin_pending: Option<String>,
}

/// Settings a HUP read again (`MasterConfig::reread`).
pub struct Reread {
    /// What to serve with from now on: its plugin, worker count, timeouts,
    /// limits, app args and server `Config` are taken; the rest (the
    /// pidfile, `--reload`) stays as at start.
    pub config: MasterConfig,
    /// The settings that changed and take effect through this reload.
    pub live: Vec<String>,
    /// The settings that changed but cannot while the server runs
    /// (binds, the pidfile...): named in the log and in `host reload`'s
    /// answer, applied at the next start.
    pub fixed: Vec<String>,
}

/// A worker as the master sees it.
struct Worker {
    index: usize,
    build: Build,
    phase: Phase,
    started: Instant,
    /// The pool slot it holds (`health::Slot`, whose backoff its crashes
    /// count toward): a worker of the current build that serves and is not
    /// being replaced. None for the others (old builds, a canary, recycled,
    /// retiring).
    slot: Option<usize>,
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
const SIGNALS: [i32; 9] = [
    SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2,
];

pub struct Master {
    cfg: MasterConfig,
    listeners: Vec<Listener>,
    /// The unix socket files bound (`-b unix:`): removed when the master
    /// is dropped, after its last worker exited (never by a worker, which
    /// does not drop its copy of the master), unless handed over to the
    /// new master of an upgrade.
    socket_files: Vec<SocketFile>,
    board: &'static Scoreboard,
    workers: BTreeMap<i32, Worker>,
    /// The build new workers get.
    current: Build,
    /// Builds staged so far: the last one's generation.
    generations: u32,
    /// A reload's canary: booting on a build not yet current.
    canary: Option<i32>,
    /// Workers wanted (`-w`, changed by TTIN/TTOU).
    target: usize,
    /// The pool's slots, `target` of them, each with its crash backoff.
    slots: Vec<Slot>,
    /// Workers of the current build that failed to boot, in a row: zero
    /// while the build is healthy (its workers boot; if they crash, it is
    /// while serving).
    boot_failures: u32,
    /// When a worker last crashed, and when one of the current build did.
    last_crash: Option<Instant>,
    /// When a worker was last started despite a backoff (`keep_one_up`).
    floor_at: Option<Instant>,
    current_crashed_at: Option<Instant>,
    /// The build the last reload promoted, during its settle period.
    probation: Option<Probation>,
    /// The hash of the last build rolled back: `--reload` does not try it
    /// again (an explicit `host reload` does).
    rolled_back: Option<String>,
    stopping: Option<Stopping>,
    /// TERM arrived during `--term-delay`: the graceful stop begins at
    /// this time; until then the server serves as before.
    stop_at: Option<Instant>,
    /// What `--reload` last loaded of each app's file (in mount order),
    /// and a change seen once (loaded when the next look finds it
    /// unchanged).
    watched: Vec<Option<FileStamp>>,
    changed: Option<Vec<Option<FileStamp>>>,
    next_watch: Instant,
    /// A reload was asked for while a canary was booting.
    reload_queued: bool,
    /// The mount the next staging re-reads alone (`host reload --mount`).
    reload_only: Option<String>,
    /// Said with the next reload outcome: settings a HUP read that wait
    /// for a restart.
    reload_note: Option<String>,
    /// The pidfile, the control board and files (`control`), with `-p`.
    control: Option<Control>,
    /// What the status says now.
    last_status: String,
    /// The service manager (systemd's `NOTIFY_SOCKET`), if one listens.
    notify: Option<Notifier>,
    /// The new master of an upgrade (USR2) while it boots: our child.
    successor: Option<Successor>,
    flags: Vec<Arc<AtomicBool>>,
    signal_ids: Vec<signal_hook::SigId>,
    wake: std::os::unix::net::UnixStream,
    rng: u64,
    /// The admin endpoint (`--admin-bind`), and its address while it waits
    /// to be bound (an upgrade's new master), with when to try again.
    admin: Option<Admin>,
    admin_pending: Option<(String, Instant)>,
    /// The counts of the workers that exited (folded in as each is
    /// reaped, before its scoreboard slot is reused): with the live
    /// workers' own, counters that never go backwards.
    folded: Totals,
    /// Exits, reloads and rollbacks.
    events: Events,
    started_at: Instant,
    /// When the status JSON is refreshed next.
    next_json: Instant,
}

impl Master {
    /// Stages the first build, installs the signal handlers and boots the
    /// first worker. An Err is the one-line reason the plugin cannot be
    /// served (the caller exits non-zero with it).
    pub fn start(mut cfg: MasterConfig, bound: Bound) -> Result<Master, String> {
        // A file size limit (`ulimit -f`) makes a control file's write fail
        // (EFBIG), as a full disk does, instead of killing the master. The
        // workers put the default back.
        // SAFETY: setting a signal's disposition to SIG_IGN has no memory
        // effects; no handler runs for it.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let current = stage_set(&sources(&cfg.apps, None), 1, None)?;
        // Before the first fork: the workers inherit the board's
        // descriptor, which is harmless (they never write it).
        let control = cfg.pidfile.take().map(Control::new);
        // A worker runs one thread more than --threads (see server.rs).
        let threads = cfg.server.threads + 1;
        // The request-duration clock, settled before any fork so every
        // worker counts in the same ticks.
        metrics::init_clock();
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
        let watched = stamps(&cfg.apps);
        let target = cfg.workers.clamp(1, MAX_WORKERS / 2);
        let seed = std::process::id() as u64 ^ now_ms().rotate_left(17);
        let now = Instant::now();
        let admin = cfg.admin.take();
        let admin_pending = cfg.admin_pending.take().map(|spec| (spec, now));
        let mut master = Master {
            cfg,
            listeners: bound.listeners,
            socket_files: bound.files,
            board,
            workers: BTreeMap::new(),
            current,
            generations: 1,
            canary: None,
            target,
            slots: vec![Slot::new(now); target],
            boot_failures: 0,
            last_crash: None,
            floor_at: None,
            current_crashed_at: None,
            probation: None,
            rolled_back: None,
            stopping: None,
            stop_at: None,
            watched,
            changed: None,
            next_watch: now + WATCH_EVERY,
            reload_queued: false,
            reload_only: None,
            reload_note: None,
            control,
            last_status: String::new(),
            // Before the first fork: the workers must not inherit it.
            notify: Notifier::from_env(),
            successor: None,
            flags,
            signal_ids,
            wake,
            rng: seed | 1,
            admin,
            admin_pending,
            folded: Totals::new(),
            events: Events::default(),
            started_at: now,
            next_json: now,
        };
        master.boot_first()?;
        Ok(master)
    }

    /// Boots one worker and waits for it: the plugin is proven loadable
    /// before the server says it is listening.
    fn boot_first(&mut self) -> Result<(), String> {
        let build = self.current.clone();
        let pid = self
            .spawn(&build, Some(0))
            .ok_or("cannot start a worker process")?;
        loop {
            self.wait_for_wake();
            self.feed_watchdog();
            self.serve_admin();
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
            if let Some(outcome) = self.reap_first(pid) {
                return outcome;
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
                let _ = self.reap_first(pid);
                return Err(format!(
                    "plugin {}: the worker did not finish loading it within {}s (-t)",
                    plugin_text(&self.cfg.apps),
                    self.cfg.timeout.as_secs()
                ));
            }
        }
    }

    /// Writes the pidfile and serves until stopped.
    pub fn run(mut self) -> Result<(), String> {
        if let Some(control) = &mut self.control {
            // The control commands find the master by the pidfile's lock,
            // held already: a pid that cannot be written (a full disk) is
            // no reason not to serve.
            if let Err(e) = control.publish_pid() {
                tracing::error!(
                    "{e}; `host reload/stop/status -p` find this master by its lock on the file"
                );
            }
        }
        // `host status` has something to say from the first moment.
        self.write_status();
        tracing::info!(
            plugin = %plugin_text(&self.cfg.apps),
            build = self.current.short(),
            workers = self.target,
            threads = self.cfg.server.threads,
            "master {} serving",
            std::process::id()
        );
        for l in &self.listeners {
            let at = l.describe();
            // `--certfile`: TCP binds serve TLS.
            match at.strip_prefix("http://") {
                Some(addr) if self.cfg.server.tls.is_some() => {
                    tracing::info!("listening on https://{addr}")
                }
                _ => tracing::info!("listening on {at}"),
            }
        }
        if let Some(admin) = &self.admin {
            tracing::info!("admin endpoint on {}", admin.describe());
        }
        if self.cfg.handover.is_some() {
            tracing::info!(
                "upgrade: the old master hands over once all {} workers are up",
                self.target
            );
        }
        loop {
            self.wait_for_wake();
            self.feed_watchdog();
            self.handle_signals();
            self.reap();
            self.watch_successor();
            self.check_boots();
            self.murder_workers();
            self.observe_threads();
            self.serve_admin();
            self.publish_json();
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
            self.stop_when_delay_ends();
            if self.stopping.is_some() {
                continue;
            }
            self.judge_new_build();
            self.watch_plugin();
            self.manage_workers();
            self.take_over();
            self.write_status();
            self.notify_status();
        }
        // The status and reload files, then the pidfile (still locked).
        self.control = None;
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
        if self.flagged(SIGUSR2) {
            self.handle_usr2();
        }
    }

    /// TERM: every worker stops accepting, drains, exits; then we do.
    /// With `--term-delay`, the server first keeps serving for that long
    /// (having told the service manager it is stopping), so that load
    /// balancers (Kubernetes endpoints, say) stop sending it clients
    /// before it refuses them; a second TERM cuts the delay short.
    fn handle_term(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        let delay = self.cfg.term_delay;
        if !delay.is_zero() && self.stop_at.is_none() {
            tracing::info!(
                "TERM: serving on for {}s (--term-delay), then stopping gracefully",
                delay.as_secs_f64()
            );
            if let Some(n) = &mut self.notify {
                n.stopping(&format!(
                    "stopping in {}s (--term-delay), still serving",
                    delay.as_secs_f64()
                ));
            }
            self.stop_at = Some(Instant::now() + delay);
            return;
        }
        self.stop_gracefully();
    }

    /// The end of `--term-delay`: the graceful stop begins.
    fn stop_when_delay_ends(&mut self) {
        if self.stop_at.is_some_and(|at| Instant::now() >= at) {
            self.stop_gracefully();
        }
    }

    fn stop_gracefully(&mut self) {
        self.stop_at = None;
        tracing::info!("TERM: stopping gracefully (workers finish in-flight requests)");
        if let Some(n) = &mut self.notify {
            n.stopping("stopping gracefully");
        }
        self.abandon_upgrade("the server is stopping");
        self.drain();
        self.report_reload(false, "the server is stopping");
    }

    /// Stops accepting and lets every worker finish what it has (TERM).
    fn drain(&mut self) {
        self.close_listeners();
        // Margin over the workers' own graceful timeout, so they get to
        // finish it themselves.
        let deadline = Instant::now() + self.cfg.graceful_timeout + Duration::from_secs(5);
        self.stopping = Some(Stopping::Graceful(deadline));
        self.kill_all(libc::SIGTERM);
    }

    /// INT/QUIT: workers exit at once.
    fn handle_quit(&mut self) {
        if matches!(self.stopping, Some(Stopping::Fast(_))) {
            return;
        }
        tracing::info!("INT/QUIT: stopping now");
        self.stop_at = None;
        if let Some(n) = &mut self.notify {
            n.stopping("stopping now");
        }
        self.abandon_upgrade("the server is stopping");
        self.close_listeners();
        self.stopping = Some(Stopping::Fast(Instant::now() + Duration::from_secs(2)));
        self.kill_all(libc::SIGQUIT);
    }

    fn handle_hup(&mut self) {
        if self.stopping.is_some() || self.stop_at.is_some() {
            tracing::info!("HUP ignored: the server is stopping");
            return;
        }
        if let Some(reread) = self.cfg.reread.as_mut() {
            match reread() {
                Ok(update) => self.apply_settings(update),
                Err(why) => {
                    self.events.reload(1, format!("failed: {why}"));
                    crate::critical!(
                        "HUP: {why}; the settings in force stay, and build {} keeps serving",
                        self.current.short()
                    );
                    self.report_reload(false, &why);
                    return;
                }
            }
        }
        // `host reload --mount PREFIX` left which mount it asks for next
        // to the pidfile before the HUP.
        let only = self.control.as_ref().and_then(Control::take_reload_mount);
        match &only {
            Some(prefix) => tracing::info!("HUP: reloading the app mounted at {prefix}"),
            None => tracing::info!("HUP: reloading {}", plugin_text(&self.cfg.apps)),
        }
        // A reload already waiting for the canary covers this one too: for
        // the same mount it stays that mount's, else it reads every file.
        self.reload_only = match (self.reload_queued, self.reload_only.take(), only) {
            (true, Some(queued), Some(asked)) if queued == asked => Some(asked),
            (true, _, _) => None,
            (false, _, asked) => asked,
        };
        self.reload();
    }

    /// Takes what can change live from settings a HUP read again; the
    /// rolling reload that follows gives every new worker the new `Config`
    /// and app args, and the worker count changes as with TTIN/TTOU.
    fn apply_settings(&mut self, update: Reread) {
        let Reread {
            config: new,
            mut live,
            mut fixed,
        } = update;
        // The scoreboard was sized for --threads at start.
        let most = self.board.threads_per_worker() - 1;
        let mut server = new.server;
        if server.threads > most {
            live.retain(|k| k != "threads");
            fixed.push(format!(
                "threads (above the {most} the server started with)"
            ));
            server.threads = self.cfg.server.threads;
        }
        let cfg = &mut self.cfg;
        cfg.apps = new.apps;
        cfg.workers = new.workers;
        cfg.timeout = new.timeout;
        cfg.graceful_timeout = new.graceful_timeout;
        cfg.max_requests = new.max_requests;
        cfg.max_requests_jitter = new.max_requests_jitter;
        cfg.settle = new.settle;
        cfg.app_args = new.app_args;
        cfg.access_log = new.access_log;
        cfg.server = server;
        self.target = self.cfg.workers.clamp(1, MAX_WORKERS / 2);
        if live.is_empty() {
            tracing::info!("HUP: no setting that applies live changed");
        } else {
            tracing::info!("HUP: settings changed: {}", live.join(", "));
        }
        self.reload_note = None;
        if !fixed.is_empty() {
            let list = fixed.join(", ");
            tracing::warn!(
                "HUP: {list} changed but cannot while the server runs; the running value stays until a restart"
            );
            self.reload_note = Some(format!("not applied until a restart: {list}"));
        }
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
        crate::runtime::error_log::reopen();
        tracing::info!("USR1: reopening log files");
        self.kill_all(libc::SIGUSR1);
    }

    // --- binary upgrade -------------------------------------------------

    /// USR2: start the host binary again with our sockets; keep serving
    /// until its workers are up (`watch_successor`).
    fn handle_usr2(&mut self) {
        let refuse = if self.stopping.is_some() || self.stop_at.is_some() {
            Some("the server is stopping")
        } else if self.successor.is_some() {
            Some("an upgrade is already under way")
        } else if self.canary.is_some() {
            Some("a reload is under way; upgrade once it is decided")
        } else if self.cfg.origin.is_none() {
            Some("the path of the host binary could not be read at start")
        } else {
            None
        };
        if let Some(why) = refuse {
            tracing::warn!("USR2 ignored: {why}");
            self.report_reload(false, &format!("upgrade refused: {why}"));
            return;
        }
        let origin = self.cfg.origin.as_ref().expect("checked above");
        let env = self.notify.as_ref().map_or(&[][..], |n| n.env());
        match Successor::spawn(origin, &self.listeners, &self.socket_files, env) {
            Ok(s) => {
                tracing::info!(
                    "USR2: upgrading: started master {}; serving on until its workers are up",
                    s.pid
                );
                self.successor = Some(s);
            }
            Err(why) => {
                crate::critical!("USR2: {why}; this master keeps serving");
                self.report_reload(false, &format!("upgrade failed: {why}"));
            }
        }
    }

    /// Hears from the new master of an upgrade: hands over once it is
    /// ready; stops it if it takes too long.
    fn watch_successor(&mut self) {
        let Some(s) = &mut self.successor else {
            return;
        };
        let pid = s.pid;
        match s.poll() {
            News::Ready => self.hand_over(pid),
            News::Failed(why) => {
                // It exits by itself; reaped as any child.
                self.successor = None;
                self.upgrade_failed(pid, &why);
            }
            News::Nothing => {
                let wait = UPGRADE_WAIT.max(self.cfg.timeout + UPGRADE_MARGIN);
                if s.started.elapsed() > wait {
                    self.abandon_upgrade(&format!(
                        "its workers were not all up within {}s",
                        wait.as_secs()
                    ));
                }
            }
        }
    }

    /// The new master died before it was ready (found by `reap`).
    fn successor_exited(&mut self, status: i32) {
        if let Some(mut s) = self.successor.take() {
            // A report written just before it exited.
            let why = match s.poll() {
                News::Failed(why) => why,
                _ => format!("it {}", describe_exit(status)),
            };
            self.upgrade_failed(s.pid, &why);
        }
    }

    /// Stops the new master of an upgrade not yet ready (INT/QUIT: it
    /// kills its workers and exits).
    fn abandon_upgrade(&mut self, why: &str) {
        if let Some(s) = self.successor.take() {
            self.kill(s.pid, libc::SIGQUIT);
            self.upgrade_failed(s.pid, why);
        }
    }

    fn upgrade_failed(&mut self, pid: i32, why: &str) {
        crate::critical!(
            "upgrade failed: new master {pid}: {why}; master {} keeps serving build {}",
            std::process::id(),
            self.current.short()
        );
        self.report_reload(false, &format!("upgrade failed: new master {pid}: {why}"));
    }

    /// The new master's workers are all up: it serves from now on. We let
    /// go of the pidfile and the socket files, and drain as at TERM, but
    /// without telling systemd we stop: the service goes on, as `pid`.
    fn hand_over(&mut self, pid: i32) {
        self.successor = None;
        tracing::info!(
            "upgrade: master {pid} is serving; master {} drains and exits",
            std::process::id()
        );
        if let Some(n) = self.notify.take() {
            n.main_pid(pid);
        }
        self.report_reload(
            true,
            &format!(
                "master {pid} serving; master {} draining",
                std::process::id()
            ),
        );
        if let Some(control) = &mut self.control {
            control.hand_over();
        }
        for file in self.socket_files.drain(..) {
            file.hand_over();
        }
        // The new master binds the admin address once we let go of it.
        self.admin = None;
        self.drain();
    }

    /// The new master of an upgrade, once all its workers are up: tells
    /// the old master, then takes the pidfile over from it.
    fn take_over(&mut self) {
        if self.cfg.handover.is_none() || self.ready_workers() < self.target {
            return;
        }
        let Some((handover, pidfile)) = self.cfg.handover.take() else {
            return;
        };
        handover.ready();
        let Some(path) = pidfile else {
            return;
        };
        match Pidfile::lock_when_free(&path, PIDFILE_WAIT) {
            Ok(pidfile) => {
                let mut control = Control::new(pidfile);
                if let Err(e) = control.publish_pid() {
                    tracing::error!("{e}");
                }
                self.control = Some(control);
                tracing::info!("upgrade: took over pidfile {}", path.display());
            }
            Err(e) => crate::critical!(
                "upgrade: {e}; serving without it (`host reload/stop/status -p` cannot find this master)"
            ),
        }
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
        if let Some(n) = &mut self.notify {
            n.reloading();
        }
        if let Some(pid) = self.canary {
            // The file may have changed again since that canary's build was
            // staged: stage it again once this one is decided.
            tracing::info!("a reload is in progress (canary worker {pid}); another follows it");
            self.reload_queued = true;
            return;
        }
        match self.stage_file() {
            Ok(build) => self.start_canary(build),
            Err(why) => self.reload_failed(&why, None),
        }
    }

    /// Stages the plugin files as the next generation: each app whose
    /// file holds the build it runs keeps that build, and after `host
    /// reload --mount PREFIX` only that app is read again.
    fn stage_file(&mut self) -> Result<Build, String> {
        self.generations += 1;
        let only = self.reload_only.take();
        if let Some(prefix) = &only {
            if !self.cfg.apps.iter().any(|a| a.prefix.as_str() == prefix) {
                return Err(format!(
                    "no app is mounted at '{prefix}' (mounted: {})",
                    self.cfg
                        .apps
                        .iter()
                        .map(|a| a.prefix.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if self.cfg.watch && only.is_none() {
            // What `--reload` compares with from now on: these files are
            // staged, whoever asked (else a `host reload` of a new build
            // would be followed by the watcher swapping it in again). Taken
            // before the read: a change during it is seen next time.
            self.watched = stamps(&self.cfg.apps);
            self.changed = None;
        }
        stage_set(
            &sources(&self.cfg.apps, only.as_deref()),
            self.generations,
            Some(&self.current),
        )
    }

    fn start_canary(&mut self, build: Build) {
        tracing::info!(
            "reload: booting build {} (generation {}{})",
            build.short(),
            build.generation,
            changed_mounts(&build, &self.current),
        );
        match self.spawn(&build, None) {
            Some(pid) => self.canary = Some(pid),
            None => self.reload_failed("cannot start a worker process", Some(&build.hash)),
        }
    }

    /// A reload's build cannot serve (`failed`: its hash, once staged).
    fn reload_failed(&mut self, why: &str, failed: Option<&str>) {
        self.events.reload(1, format!("failed: {why}"));
        crate::critical!(
            "reload failed: {why}; build {} keeps serving",
            self.current.short()
        );
        if !self.reload_again(failed) {
            self.report_reload(false, why);
        }
    }

    /// Starts the reload that was asked for while a canary booted, unless
    /// the file still holds the build just decided (`decided`, its hash):
    /// that outcome then answers the later request too. Only the last
    /// outcome is reported: `host reload` answers for the file as it is
    /// now, never for a build already superseded. True if the outcome is
    /// left to what was started (or already reported).
    fn reload_again(&mut self, decided: Option<&str>) -> bool {
        if !std::mem::take(&mut self.reload_queued) || self.stopping.is_some() {
            return false;
        }
        match self.stage_file() {
            Ok(build) if Some(build.hash.as_str()) == decided => {
                tracing::info!(
                    "reload: the file still holds build {}; nothing more to swap",
                    build.short()
                );
                false
            }
            Ok(build) => {
                self.start_canary(build);
                true
            }
            Err(why) => {
                self.reload_failed(&why, None);
                true
            }
        }
    }

    /// The canary is up: its build is current from now on, on probation
    /// for `--settle-period`.
    fn promote(&mut self, pid: i32) {
        self.canary = None;
        let Some(w) = self.workers.get(&pid) else {
            return;
        };
        let old = std::mem::replace(&mut self.current, w.build.clone());
        self.boot_failures = 0;
        // What a rollback would bring back: the build this one replaces,
        // unless that one was itself still on probation (then the one it
        // would have fallen back to).
        let (fallback, fallback_crashed_at) = match self.probation.take() {
            Some(p) => (p.fallback, p.fallback_crashed_at),
            None => (old.clone(), self.current_crashed_at),
        };
        self.current_crashed_at = None;
        tracing::info!(
            "reload: build {} (generation {}) is serving; retiring generation {} (build {}) as new workers come up",
            self.current.short(),
            self.current.generation,
            old.generation,
            old.short()
        );
        let settle = self.cfg.settle;
        if !settle.is_zero() {
            self.probation = Some(Probation::new(
                self.current.generation,
                settle,
                fallback,
                fallback_crashed_at,
                Instant::now(),
            ));
        }
        let hash = self.current.hash.clone();
        if self.reload_again(Some(&hash)) {
            return;
        }
        if settle.is_zero() {
            let text = format!("build {}", self.current.short());
            self.events.reload(0, format!("ok: {text}"));
            self.report_reload(true, &text);
        } else {
            tracing::info!(
                "reload: watching build {} for {}s (--settle-period) before it stays",
                self.current.short(),
                settle.as_secs()
            );
        }
    }

    /// The build on probation stays once its settle period has passed, or
    /// is rolled back as soon as it has crashed repeatedly where the build
    /// it replaced did not.
    fn judge_new_build(&mut self) {
        let Some(p) = &self.probation else {
            return;
        };
        match p.verdict(Instant::now()) {
            Verdict::Watching => {}
            Verdict::Settled { crashes } => {
                let p = self.probation.take().expect("matched above");
                let text = if crashes == 0 {
                    tracing::info!(
                        "reload: build {} served {}s without crashing; it stays",
                        self.current.short(),
                        p.settle.as_secs()
                    );
                    format!("build {}", self.current.short())
                } else {
                    tracing::warn!(
                        "reload: build {} crashed {crashes} times in its first {}s, but build {} it replaced had crashed too; it stays",
                        self.current.short(),
                        p.settle.as_secs(),
                        p.fallback.short()
                    );
                    format!(
                        "build {} (it crashed {crashes} times in its first {}s; so had build {})",
                        self.current.short(),
                        p.settle.as_secs(),
                        p.fallback.short()
                    )
                };
                self.events.reload(0, format!("ok: {text}"));
                // A reload started since answers for itself.
                if self.canary.is_none() {
                    self.report_reload(true, &text);
                }
            }
            Verdict::RollBack(why) => {
                let p = self.probation.take().expect("matched above");
                self.roll_back(p, &why);
            }
        }
    }

    /// Brings back the build a reload replaced (still staged in memory):
    /// the new one's workers go at once, the old build's boot in their
    /// slots, and `host reload` fails with `why`.
    fn roll_back(&mut self, p: Probation, why: &str) {
        let bad = std::mem::replace(&mut self.current, p.fallback);
        self.current_crashed_at = p.fallback_crashed_at;
        self.boot_failures = 0;
        self.rolled_back = Some(bad.hash.clone());
        // The crashes were the bad build's: the slots start again at once.
        let now = Instant::now();
        for slot in &mut self.slots {
            slot.forgive(now);
        }
        self.events.reload(
            2,
            format!(
                "rolled back: build {} {why}; build {} serves again",
                bad.short(),
                self.current.short()
            ),
        );
        crate::critical!(
            "reload rolled back: build {} (generation {}{}) {why}; build {} (generation {}) serves again",
            bad.short(),
            bad.generation,
            changed_mounts(&bad, &self.current),
            self.current.short(),
            self.current.generation
        );
        // Each request a worker of the bad build takes may be one more
        // crash: they stop accepting now, and the backlog waits for the
        // old build's workers (booting next, in their slots).
        let doomed: Vec<i32> = self
            .workers
            .iter()
            .filter(|(pid, w)| {
                w.build.generation == bad.generation
                    && matches!(w.phase, Phase::Booting | Phase::Ready)
                    && Some(**pid) != self.canary
            })
            .map(|(pid, _)| *pid)
            .collect();
        for pid in doomed {
            self.retire(pid);
        }
        if self.canary.is_none() {
            let text = format!(
                "plugin {}: build {} {why}, where build {} had served without crashing; rolled back to build {}",
                plugin_text(&self.cfg.apps),
                bad.short(),
                self.current.short(),
                self.current.short()
            );
            self.report_reload(false, &text);
        }
    }

    /// Tells a waiting `host reload` how the last reload went.
    fn report_reload(&mut self, ok: bool, text: &str) {
        let text = match self.reload_note.take() {
            Some(note) => format!("{text}; {note}"),
            None => text.to_string(),
        };
        if let Some(control) = &mut self.control {
            control.report_reload(ok, &text);
        }
        if self.stopping.is_none() {
            let status = self.summary();
            if let Some(n) = &mut self.notify {
                n.reloaded(&status);
            }
        }
    }

    /// `--reload`: swap when the plugin file changed and looked the same
    /// at two looks in a row (a copy in progress is not loaded half-written)
    /// and its content is not the build already serving (a new timestamp
    /// alone is no reason to lose the workers' state).
    fn watch_plugin(&mut self) {
        if !self.cfg.watch || Instant::now() < self.next_watch {
            return;
        }
        self.next_watch = Instant::now() + WATCH_EVERY;
        let now = stamps(&self.cfg.apps);
        // A file missing for now (a deploy between unlink and rename) is
        // no change yet.
        if now.iter().any(Option::is_none) || now == self.watched {
            self.changed = None;
            return;
        }
        if Some(&now) != self.changed.as_ref() {
            self.changed = Some(now);
            return;
        }
        let file = self
            .cfg
            .apps
            .iter()
            .zip(&self.watched)
            .zip(&now)
            .filter(|((_, before), after)| before != after)
            .map(|((app, _), _)| app.spec().path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if self.canary.is_some() {
            tracing::info!("{file} changed; reloading after the reload in progress");
            self.watched = now;
            self.changed = None;
            self.reload_queued = true;
            return;
        }
        let build = match self.stage_file() {
            Ok(build) => build,
            Err(why) => return self.reload_failed(&why, None),
        };
        if build.hash == self.current.hash {
            tracing::info!(
                "{file} changed on disk but holds build {} still; not reloading",
                build.short()
            );
        } else if self.rolled_back.as_deref() == Some(build.hash.as_str()) {
            tracing::warn!(
                "{file} holds build {}, which was rolled back; not trying it again (`host reload` would)",
                build.short()
            );
        } else {
            tracing::info!("{file} changed; reloading");
            self.start_canary(build);
        }
    }

    // --- the pool -------------------------------------------------------

    /// Forks a worker on `build` in pool slot `slot` (None: a canary);
    /// None if no slot or fork failed, or if the server is stopping (its
    /// listeners are closed: a new worker would have nothing to serve).
    fn spawn(&mut self, build: &Build, slot: Option<usize>) -> Option<i32> {
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
                crate::critical!("fork failed: {}", std::io::Error::last_os_error());
                self.board.reset(index);
                None
            }
            0 => {
                // The child's copy of the master is never dropped (the
                // worker exits from inside `worker::run`), so sockets left
                // in it would stay open for the worker's whole life: the
                // worker takes them and owns the only copy here.
                let listeners = std::mem::take(&mut self.listeners);
                // Nor the admin sockets: closed here (a socket file stays,
                // removed only by the master that bound it).
                drop(self.admin.take());
                worker::run(
                    WorkerSpec {
                        build,
                        app_args: &self.cfg.app_args,
                        mounts: &self.cfg.apps,
                        config: &self.cfg.server,
                        access_log: self.cfg.access_log.as_deref(),
                        identity: self.cfg.identity.as_ref(),
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
                        slot,
                        recycle: false,
                        timed_out: false,
                        seen: vec![None; self.board.threads_per_worker()],
                    },
                );
                Some(pid)
            }
        }
    }

    /// Starts workers of the current build in the free slots whose backoff
    /// has passed, keeps at least one worker up while the build is healthy,
    /// and retires workers beyond the target — old builds, recycled and
    /// slotless ones first — but only while enough others are ready, so
    /// capacity never dips during a swap.
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
        self.sync_slots();
        let now = Instant::now();
        self.forgive_when_quiet(now);
        // Generations, not hashes: a reload of unchanged bytes still
        // replaces every worker (a rolling restart). While a canary boots,
        // the current build starts no one (it may be replaced in a moment)
        // unless the pool is empty (below).
        if self.canary.is_none() {
            let build = self.current.clone();
            for slot in self.free_slots() {
                if self.slots[slot].may_start(now) && self.spawn(&build, Some(slot)).is_none() {
                    break;
                }
            }
        }
        self.keep_one_up();
        loop {
            let ready = self
                .workers
                .values()
                .filter(|w| w.phase == Phase::Ready)
                .count();
            if ready <= self.target {
                break;
            }
            // The least wanted ready worker: one without a slot (an old
            // build, recycled, or beyond a lowered target) first, then the
            // oldest.
            let victim = self
                .workers
                .iter()
                .filter(|(_, w)| w.phase == Phase::Ready)
                .min_by_key(|(_, w)| (w.slot.is_some(), w.started))
                .map(|(pid, _)| *pid);
            match victim {
                Some(pid) => self.retire(pid),
                None => break,
            }
        }
    }

    /// Gives each worker that may hold a slot one (the canary just
    /// promoted, old workers current again after a rollback, one left
    /// beyond a lowered target), and takes it from those that may not.
    fn sync_slots(&mut self) {
        let now = Instant::now();
        self.slots.resize_with(self.target, || Slot::new(now));
        let (current, canary, target) = (self.current.generation, self.canary, self.target);
        let mut taken = vec![false; target];
        let mut slotless = Vec::new();
        for (pid, w) in &mut self.workers {
            let eligible = w.build.generation == current
                && !w.recycle
                && !w.timed_out
                && matches!(w.phase, Phase::Booting | Phase::Ready)
                && Some(*pid) != canary;
            match w.slot {
                Some(s) if eligible && s < target && !taken[s] => taken[s] = true,
                _ if eligible => {
                    w.slot = None;
                    slotless.push((w.started, *pid));
                }
                _ => w.slot = None,
            }
        }
        // Longest serving first.
        slotless.sort();
        for (_, pid) in slotless {
            let Some(free) = taken.iter().position(|t| !t) else {
                break;
            };
            taken[free] = true;
            if let Some(w) = self.workers.get_mut(&pid) {
                w.slot = Some(free);
            }
        }
    }

    /// Slots no worker holds, in order.
    fn free_slots(&self) -> Vec<usize> {
        (0..self.target)
            .filter(|&s| !self.workers.values().any(|w| w.slot == Some(s)))
            .collect()
    }

    /// Does any worker serve, or boot to serve the current pool (a canary
    /// does not count: its build may yet be refused)?
    fn any_serving(&self) -> bool {
        self.workers.iter().any(|(pid, w)| {
            Some(*pid) != self.canary && matches!(w.phase, Phase::Booting | Phase::Ready)
        })
    }

    /// Never below one worker while the current build is healthy (its
    /// workers boot; they crash while serving, on some request): a backoff
    /// protects the machine from a build that cannot start, but a client
    /// that crashes every worker it reaches must not take the service down
    /// for the length of a backoff. The slot whose wait ends first starts
    /// one now.
    fn keep_one_up(&mut self) {
        if self.boot_failures > 0 || self.any_serving() || self.stopping.is_some() {
            return;
        }
        let now = Instant::now();
        if self.floor_at.is_some_and(|at| now < at + FLOOR_EVERY) {
            return;
        }
        let Some(slot) = self
            .free_slots()
            .into_iter()
            .min_by_key(|&s| self.slots[s].start_at())
        else {
            return;
        };
        tracing::debug!("no worker is serving: starting one in slot {slot} despite its backoff");
        self.floor_at = Some(now);
        let build = self.current.clone();
        self.spawn(&build, Some(slot));
    }

    /// Once no worker has crashed for `MIN_UPTIME` while the build is
    /// healthy, the crashes were an episode (an attack, a bad request), not
    /// the build: every slot still waiting out a backoff starts again.
    fn forgive_when_quiet(&mut self, now: Instant) {
        let Some(at) = self.last_crash else {
            return;
        };
        if self.boot_failures > 0 || now.duration_since(at) < MIN_UPTIME {
            return;
        }
        self.last_crash = None;
        let waiting = self
            .free_slots()
            .into_iter()
            .filter(|&s| !self.slots[s].may_start(now))
            .count();
        for slot in &mut self.slots {
            slot.forgive(now);
        }
        if waiting > 0 {
            tracing::info!(
                "no worker crashed for {}s: the {waiting} slot(s) in backoff start again",
                MIN_UPTIME.as_secs()
            );
        }
    }

    fn retire(&mut self, pid: i32) {
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        w.phase = Phase::Retiring(Instant::now());
        w.slot = None;
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
                if w.build.generation == self.current.generation {
                    self.boot_failures = 0;
                }
            }
            if self.canary == Some(pid) {
                self.promote(pid);
            }
        }
    }

    /// Reaps every exited worker.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid out-pointer; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if let Some(w) = self.workers.remove(&pid) {
                self.exited(pid, w, status);
            } else if self.successor.as_ref().is_some_and(|s| s.pid == pid) {
                self.successor_exited(status);
            }
        }
    }

    /// Says why a worker exited, and counts it if it crashed.
    fn exited(&mut self, pid: i32, w: Worker, status: i32) {
        let record = self.board.worker(w.index);
        // Booted, even if this loop had not seen it yet: a worker can boot
        // and die on its first request between two looks.
        let booted = w.phase != Phase::Booting || record.state() == WorkerState::Ready;
        let serving: Vec<String> = (0..self.board.threads_per_worker())
            .filter_map(|t| {
                self.board
                    .thread(w.index, t)
                    .running()
                    .map(|(_, line)| line)
            })
            .collect();
        let message = record.message();
        self.count_exit(pid, &w, booted, status);
        self.board.reset(w.index);
        let cause = describe_exit(status);
        // `killed by signal 11 (SIGSEGV), crashed while serving "GET /segv HTTP/1.1"`
        let what = match serving_text(&serving) {
            Some(serving) => format!("{cause}, crashed {serving}"),
            None => cause.clone(),
        };
        match w.phase {
            // Not a crash: the worker left as told, after abandoning
            // the request that ran past -t (its replacement is up).
            Phase::Retiring(_) if w.timed_out => {
                tracing::warn!("worker {pid} exited: {cause} (timed out, retired)")
            }
            Phase::Retiring(_) => tracing::info!("worker {pid} exited: {cause} (retired)"),
            _ if self.stopping.is_some() => tracing::info!("worker {pid} exited: {cause}"),
            _ if self.canary == Some(pid) => {
                self.canary = None;
                let why = if booted {
                    crate::critical!(
                        "worker {pid} exited: {what} (build {}, before it took over)",
                        w.build.short()
                    );
                    // It was taking requests already: going back to the
                    // old build alone is a rollback of that much.
                    format!(
                        "plugin {}: build {} crashed {}({cause}) before it took over; rolled back to build {}",
                        plugin_text(&self.cfg.apps),
                        w.build.short(),
                        serving_text(&serving).map(|s| s + " ").unwrap_or_default(),
                        self.current.short()
                    )
                } else {
                    tracing::info!("worker {pid} exited while booting: {cause}");
                    boot_failure(&plugin_text(&self.cfg.apps), message, status, &cause)
                };
                self.reload_failed(&why, Some(&w.build.hash));
            }
            _ if !booted => {
                let why = boot_failure(&plugin_text(&self.cfg.apps), message, status, &cause);
                crate::critical!("worker {pid} could not boot: {why}");
                self.crashed(&w, false, &format!("worker {pid} could not boot: {why}"));
            }
            _ if w.timed_out => {
                tracing::warn!("worker {pid} exited: {cause} (timed out); replacing it")
            }
            _ => {
                crate::critical!(
                    "worker {pid} exited: {what} (build {}); replacing it",
                    w.build.short()
                );
                self.crashed(&w, true, &format!("worker {pid} exited: {what}"));
            }
        }
    }

    /// The first worker's fate, if it exited: Err(why) if it could not
    /// boot; Ok if it booted and then died (a request in the backlog
    /// crashed it: the build loads, and the loop replaces it as any crash).
    fn reap_first(&mut self, pid: i32) -> Option<Result<(), String>> {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r != pid {
            return None;
        }
        let w = self.workers.remove(&pid)?;
        let record = self.board.worker(w.index);
        if record.state() == WorkerState::Ready {
            self.exited(pid, w, status);
            return Some(Ok(()));
        }
        let message = record.message();
        self.count_exit(pid, &w, false, status);
        self.board.reset(w.index);
        Some(Err(boot_failure(
            &plugin_text(&self.cfg.apps),
            message,
            status,
            &describe_exit(status),
        )))
    }

    /// A worker died unasked (`what`: how): the crash counts toward its
    /// slot's backoff, its build's health (a boot failure) and a build on
    /// probation.
    fn crashed(&mut self, w: &Worker, booted: bool, what: &str) {
        let now = Instant::now();
        self.last_crash = Some(now);
        if w.build.generation == self.current.generation {
            self.current_crashed_at = Some(now);
            if !booted {
                self.boot_failures += 1;
            }
        }
        if let Some(p) = &mut self.probation {
            p.crashed(w.build.generation, what, now);
        }
        let Some(s) = w.slot.filter(|&s| s < self.slots.len()) else {
            return;
        };
        let delay = self.slots[s].crashed(w.started.elapsed(), now);
        let crashes = self.slots[s].crashes();
        // Each exit has its line already; the backoff's at 2, 4, 8 … crashes.
        if delay.is_zero() || !crashes.is_power_of_two() {
            return;
        }
        if self.boot_failures == 0 && !self.any_serving() {
            tracing::warn!(
                "workers in slot {s} crashed {crashes} times in a row; restarting one at once all the same: no other worker is serving, and build {} boots fine",
                self.current.short()
            );
        } else {
            tracing::warn!(
                "workers in slot {s} crashed {crashes} times in a row; next restart in {}s",
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
                        crate::critical!(
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
                crate::critical!(
                    "worker {pid} unresponsive: its event loop has not turned for {:.1}s{}; killing it",
                    now.saturating_sub(beat) as f64 / 1000.0,
                    hung.map(|h| format!(" ({})", h.describe()))
                        .unwrap_or_default()
                );
                doomed.push(*pid);
            } else if let Some(h) = hung {
                crate::critical!(
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
        let Some(control) = &mut self.control else {
            return;
        };
        // A file that could not be written is tried again (at most once a
        // second), whether or not its text changed since.
        control.retry();
        let mut text = format!(
            "master {} build {} generation {} workers {}\n",
            std::process::id(),
            self.current.short(),
            self.current.generation,
            self.target
        );
        if !self.current.lone() {
            // Each app's own build: a reload keeps those it did not change.
            for a in &self.current.apps {
                text.push_str(&format!(
                    "mount {} build {} generation {} plugin {}\n",
                    a.prefix,
                    a.short(),
                    a.generation,
                    a.original.display()
                ));
            }
        }
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
        if text != self.last_status {
            control.set_status(&text);
            self.last_status = text;
        }
    }

    // --- observability ----------------------------------------------------

    /// Counts a worker's exit by cause, and folds its counts into the
    /// master's (before its slot is reset for the next worker).
    fn count_exit(&mut self, pid: i32, w: &Worker, booted: bool, status: i32) {
        self.folded.add(&self.board.totals(w.index, false));
        let cause = if w.timed_out {
            2 // timeout
        } else if w.recycle {
            1 // recycle
        } else if matches!(w.phase, Phase::Retiring(_)) || self.stopping.is_some() {
            0 // retired
        } else if !booted {
            5 // boot
        } else if libc::WIFSIGNALED(status) {
            3 // signal
        } else {
            4 // exit
        };
        let name = crate::supervisor::report::EXIT_CAUSES[cause];
        self.events.exit(
            cause,
            format!("worker {pid} ({name}): {}", describe_exit(status)),
        );
    }

    /// Times the requests running on every worker's threads from the first
    /// time the master sees each (the request path reads no clock for
    /// it): the status gives their age. `murder_workers` reads the same
    /// record for `-t`.
    fn observe_threads(&mut self) {
        let now = now_ms();
        for w in self.workers.values_mut() {
            for (t, seen) in w.seen.iter_mut().enumerate() {
                match self.board.thread(w.index, t).running_number() {
                    None => *seen = None,
                    Some(n) if seen.is_some_and(|(m, _)| m == n) => {}
                    Some(n) => *seen = Some((n, now)),
                }
            }
        }
    }

    /// Answers the admin endpoint's clients (nothing blocks), and binds
    /// its address if it waits for the old master of an upgrade to let go.
    fn serve_admin(&mut self) {
        if let Some((spec, at)) = &mut self.admin_pending {
            if Instant::now() >= *at {
                match Admin::bind(spec) {
                    Ok(admin) => {
                        tracing::info!("admin endpoint on {}", admin.describe());
                        self.admin = Some(admin);
                        self.admin_pending = None;
                    }
                    Err(e) => {
                        tracing::debug!("{e}; trying again (the old master may hold it)");
                        *at = Instant::now() + ADMIN_RETRY;
                    }
                }
            }
        }
        let Some(mut admin) = self.admin.take() else {
            return;
        };
        admin.serve(|route| self.answer(route));
        self.admin = Some(admin);
    }

    fn answer(&self, route: Route) -> Answer {
        match route {
            Route::Healthz => Answer::text(200, "ok\n"),
            Route::Readyz => {
                let s = self.readiness();
                if s.0 {
                    Answer::text(200, "ready\n")
                } else {
                    Answer::text(503, &format!("not ready: {}\n", s.1))
                }
            }
            Route::Metrics { open } => Answer {
                status: 200,
                content_type: if open {
                    "application/openmetrics-text; version=1.0.0; charset=utf-8"
                } else {
                    "text/plain; version=0.0.4; charset=utf-8"
                },
                body: self.snapshot().metrics(open),
            },
            Route::Status => Answer {
                status: 200,
                content_type: "application/json",
                body: format!("{}\n", self.snapshot().json()),
            },
        }
    }

    /// Whether the server takes traffic (`/readyz`), and why not.
    fn readiness(&self) -> (bool, &'static str) {
        if self.stopping.is_some() {
            (false, "stopping")
        } else if self.stop_at.is_some() {
            (false, "TERM received, serving on for --term-delay")
        } else if self.ready_workers() == 0 {
            (false, "no worker is serving yet")
        } else {
            (true, "")
        }
    }

    /// The status JSON for `host status --json` and `host top`, about
    /// once a second: a JSON encoding of a few kilobytes, cheap next to
    /// the master's 100 ms tick.
    fn publish_json(&mut self) {
        if self.control.is_none() || Instant::now() < self.next_json {
            return;
        }
        self.next_json = Instant::now() + JSON_EVERY;
        let mut snapshot = self.snapshot();
        let mut text = snapshot.json().to_string();
        if text.len() > crate::supervisor::control::JSON_MAX {
            // Hundreds of busy workers: their running requests go.
            for w in &mut snapshot.workers {
                w.running.clear();
            }
            text = snapshot.json().to_string();
        }
        if let Some(control) = &mut self.control {
            control.set_status_json(&text);
        }
    }

    /// The master's figures now: the live workers' counts summed with
    /// those of the exited ones.
    fn snapshot(&self) -> Snapshot {
        let now = now_ms();
        let mut totals = self.folded.clone();
        let (mut in_flight, mut busy, mut idle) = (0, 0, 0);
        let per_worker = self.cfg.server.threads as u64;
        let mut workers = Vec::with_capacity(self.workers.len());
        for (pid, w) in &self.workers {
            let sum = self.board.totals(w.index, true);
            let running: Vec<(usize, String, u64)> = (0..self.board.threads_per_worker())
                .filter_map(|t| {
                    let (number, line) = self.board.thread(w.index, t).running()?;
                    let age = match w.seen.get(t).copied().flatten() {
                        Some((n, since)) if n == number => now.saturating_sub(since),
                        _ => 0,
                    };
                    Some((t, line, age))
                })
                .collect();
            // In flight: running app code, or parked with a body iterator
            // that waits for its client.
            let flying = running.len() as u64 + sum.parked;
            if w.phase != Phase::Booting {
                in_flight += flying;
                busy += running.len() as u64;
                idle += per_worker.saturating_sub(running.len() as u64);
            }
            workers.push(WorkerView {
                pid: *pid,
                slot: w.index,
                build: w.build.short().to_string(),
                generation: w.build.generation,
                state: match w.phase {
                    Phase::Booting => "booting",
                    Phase::Ready => "ready",
                    Phase::Retiring(_) => "retiring",
                },
                age_s: w.started.elapsed().as_secs_f64(),
                requests: sum.ended(),
                in_flight: flying,
                open: sum.open,
                idle: sum.idle,
                threads: self.cfg.server.threads,
                running,
            });
            totals.add(&sum);
        }
        let state = if self.stopping.is_some() {
            "stopping"
        } else if self.stop_at.is_some() {
            "term-delay"
        } else {
            "serving"
        };
        Snapshot {
            pid: std::process::id(),
            build: self.current.short().to_string(),
            generation: self.current.generation,
            mounts: self
                .current
                .apps
                .iter()
                .map(|a| MountView {
                    prefix: a.prefix.clone(),
                    plugin: a.original.display().to_string(),
                    build: a.short().to_string(),
                    generation: a.generation,
                })
                .collect(),
            uptime_s: self.started_at.elapsed().as_secs_f64(),
            state,
            ready: self.readiness().0,
            target: self.target,
            threads: self.cfg.server.threads,
            totals,
            in_flight,
            busy,
            idle_threads: idle,
            workers,
            events: self.events.clone(),
        }
    }

    // --- the service manager ---------------------------------------------

    /// `WATCHDOG=1` when due: the loop is turning.
    fn feed_watchdog(&mut self) {
        if let Some(n) = &mut self.notify {
            n.feed_watchdog(Instant::now());
        }
    }

    /// `READY=1` once the first generation is up (every slot of the pool
    /// has a worker that booted), and `STATUS=` as what serves changes.
    fn notify_status(&mut self) {
        // During --term-delay the status says the server is stopping.
        if self.notify.is_none() || self.stop_at.is_some() {
            return;
        }
        let ready = self.ready_workers();
        let status = self.summary();
        let Some(n) = &mut self.notify else {
            return;
        };
        if ready >= self.target {
            n.ready(&status);
        }
        n.status(&status);
    }

    fn ready_workers(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.phase == Phase::Ready)
            .count()
    }

    /// `serving build 2aa95168a30f (generation 1), 4/4 workers ready`.
    fn summary(&self) -> String {
        format!(
            "serving build {} (generation {}), {}/{} workers ready",
            self.current.short(),
            self.current.generation,
            self.ready_workers(),
            self.target
        )
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
        let mut fds = vec![libc::pollfd {
            fd: self.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(admin) = &self.admin {
            admin.pollfds(&mut fds);
        }
        // SAFETY: `fds` is a valid array of pollfds of that length.
        unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                TICK.as_millis() as i32,
            )
        };
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

/// Why a worker that was booting exited.
fn boot_failure(original: &str, message: Option<String>, status: i32, cause: &str) -> String {
    match message {
        Some(m) => m,
        None if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == EXIT_LOAD_ERROR => {
            format!("plugin {original}: could not be loaded")
        }
        None => format!("plugin {original}: the worker crashed while loading it ({cause})"),
    }
}

/// `; new: /api build 2aa95168a30f; the other mounts keep theirs`: the
/// mounts of `build` whose build `than` does not have (empty for a lone
/// app).
fn changed_mounts(build: &Build, than: &Build) -> String {
    if build.lone() {
        return String::new();
    }
    let changed: Vec<String> = build
        .apps
        .iter()
        .filter(|a| than.app(&a.prefix).is_none_or(|c| c.hash != a.hash))
        .map(|a| format!("{} build {}", a.prefix, a.short()))
        .collect();
    match (changed.len(), build.apps.len()) {
        (0, _) => "; every mount keeps its build".into(),
        (n, all) if n == all => format!("; new: {}", changed.join(", ")),
        _ => format!(
            "; new: {}; the other mounts keep theirs",
            changed.join(", ")
        ),
    }
}

/// The plugin files, for messages: the path of a lone app at "/",
/// `PREFIX=PATH` for each mount otherwise.
fn plugin_text(apps: &[MountSpec]) -> String {
    match apps {
        [lone] if lone.prefix.is_root() => lone.spec().path.display().to_string(),
        _ => apps
            .iter()
            .map(|a| format!("{}={}", a.prefix, a.spec().path.display()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// What to stage for each app; `only`: the one mount a reload re-reads
/// (the others keep the build they run).
fn sources<'a>(apps: &'a [MountSpec], only: Option<&str>) -> Vec<Source<'a>> {
    apps.iter()
        .map(|a| Source {
            prefix: a.prefix.as_str(),
            file: Path::new(a.plugin_path()),
            symbol: a.symbol(),
            keep: only.is_some_and(|p| p != a.prefix.as_str()),
        })
        .collect()
}

/// Each app's file as `--reload` sees it.
fn stamps(apps: &[MountSpec]) -> Vec<Option<FileStamp>> {
    apps.iter()
        .map(|a| FileStamp::of(Path::new(a.plugin_path())))
        .collect()
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

/// What a worker that died was doing: `while serving "GET /segv
/// HTTP/1.1"` (the requests its app threads were running, as the
/// scoreboard shows them); None if it ran none.
fn serving_text(serving: &[String]) -> Option<String> {
    match serving {
        [] => None,
        [one] => Some(format!("while serving {one:?}")),
        [first, rest @ ..] => Some(format!(
            "while serving {first:?} (and {} other request{})",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        )),
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
