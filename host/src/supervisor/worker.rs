//! A worker process: forked by the master, it loads one staged plugin
//! build, runs the plugin's init, reports Ready on the scoreboard and
//! serves until told to stop. Everything that touches the plugin happens
//! here, after the fork, so the master never runs plugin code.
use std::sync::Arc;

use crate::gateway::mount::{MountSpec, Prefix, Router};
use crate::gateway::plugin::{LoadError, Plugin, PluginSpec};
use crate::net::listener::Listener;
use crate::runtime::access_log::AccessLog;
use crate::runtime::config::App;
use crate::runtime::config::EarlySignals;
use crate::runtime::scoreboard::{Monitor, Scoreboard, WorkerState};
use crate::runtime::{self, Config, Shared, Stop};
use crate::supervisor::process::Identity;
use crate::supervisor::staging::{AppBuild, Build};

/// Exit status of a worker that could not start for reasons of its own
/// (no memory, no event loop): the master retries it with backoff.
pub const EXIT_BOOT_ERROR: i32 = 3;
/// Exit status of a worker whose plugin could not be loaded or whose init
/// failed: the master does not retry the same build in a loop; the reason
/// is in the worker's scoreboard slot.
pub const EXIT_LOAD_ERROR: i32 = 4;

/// What the master hands a worker.
pub struct WorkerSpec<'a> {
    /// A build of each app, each naming the path the user gave, for
    /// messages (the worker loads the copy).
    pub build: &'a Build,
    /// Every app's init pairs (`--app-arg`).
    pub app_args: &'a [(String, String)],
    /// The mounts as configured now: each app's own pairs (`--mount-arg`),
    /// found by prefix.
    pub mounts: &'a [MountSpec],
    pub config: &'a Config,
    pub access_log: Option<&'a str>,
    /// Who to become before loading the plugin (`--user`, `--group`).
    pub identity: Option<&'a Identity>,
    pub board: &'static Scoreboard,
    pub index: usize,
    /// `--max-requests` plus this worker's jitter; 0 = unlimited.
    pub max_requests: u64,
    /// The master's signal handlers, inherited through fork, to remove.
    pub master_signals: &'a [signal_hook::SigId],
    pub master_pid: i32,
}

/// Runs a worker in the freshly forked child. Never returns.
///
/// `listeners` are the listening sockets this process inherited through
/// the fork, taken out of the child's copy of the master: the worker owns
/// the only copy in this process, so once it stops accepting and drops
/// them, this process no longer holds the port open (a copy left behind
/// would keep the kernel accepting clients nobody serves, then resetting
/// them, and keep a restarted master from binding).
pub fn run(spec: WorkerSpec<'_>, listeners: Vec<Listener>) -> ! {
    crate::runtime::error_log::worker_started();
    let slot = spec.board.worker(spec.index);
    // A panic must not unwind into the master's frames copied into this
    // process (their destructors would act on the master's resources).
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match boot_and_serve(&spec, listeners) {
            Ok(()) => 0,
            Err((code, message)) => {
                slot.set_message(&message);
                code
            }
        }
    }))
    .unwrap_or(EXIT_BOOT_ERROR);
    std::process::exit(code)
}

fn boot_and_serve(spec: &WorkerSpec<'_>, listeners: Vec<Listener>) -> Result<(), (i32, String)> {
    let boot_error = |what: &str, e: std::io::Error| (EXIT_BOOT_ERROR, format!("{what}: {e}"));
    // Ours first, then the master's go: no stop signal falls in between.
    let early_signals =
        EarlySignals::register().map_err(|e| boot_error("cannot install signal handlers", e))?;
    for id in spec.master_signals {
        signal_hook::low_level::unregister(*id);
    }
    // A stop signal sent since the fork was held back (see
    // `block_stop_signals`): it reaches our handlers now.
    unblock_stop_signals();
    die_with_master(spec.master_pid);
    // The master ignores SIGXFSZ (see `Master::start`); the plugin gets the
    // process as it would be anywhere.
    // SAFETY: resetting a signal's disposition has no memory effects.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_DFL) };

    // Opened before the switch below: a log file only root may write
    // (in /var/log, say) is still ours. Reopened (USR1) as the user.
    let access_log = match spec.access_log {
        Some(path) => Some(
            AccessLog::open(path)
                .map_err(|e| boot_error(&format!("cannot open access log {path}"), e))?,
        ),
        None => None,
    };
    // Before any plugin code: its library's constructors run at load.
    if let Some(identity) = spec.identity {
        identity
            .become_it()
            .map_err(|e| (EXIT_LOAD_ERROR, format!("--user/--group: {e}")))?;
        // Large bodies are spooled as the user now: a directory it cannot
        // write is a start-up error, not a 500 on the first upload.
        crate::runtime::spool::check_dir(&spec.config.body_temp_dir).map_err(|e| {
            let dir = spec.config.body_temp_dir.display();
            (
                EXIT_LOAD_ERROR,
                format!("cannot use --body-temp-dir {dir} as --user: {e}"),
            )
        })?;
    }

    let apps = load_apps(spec)?;
    let monitor = Monitor {
        board: spec.board,
        worker: spec.index,
        max_requests: spec.max_requests,
    };
    monitor.slot().heartbeat();
    monitor.slot().set_state(WorkerState::Ready);
    let described: Vec<String> = apps
        .iter()
        .zip(&spec.build.apps)
        .map(|(app, build)| {
            let p = &app.plugin;
            let name = crate::text::shown(&p.display_name(&build.original)).to_string();
            match spec.build.lone() {
                true => format!("{name} ABI {}.{}", p.abi_major, p.abi_minor),
                false => format!(
                    "{} {name} build {} ABI {}.{}",
                    build.prefix,
                    build.short(),
                    p.abi_major,
                    p.abi_minor
                ),
            }
        })
        .collect();
    tracing::info!(
        "worker {} booted (build {}, generation {}, {})",
        std::process::id(),
        spec.build.short(),
        spec.build.generation,
        described.join("; "),
    );

    let prefixes: Vec<Prefix> = spec
        .build
        .apps
        .iter()
        .map(|a| Prefix::parse(&a.prefix).expect("staged from a checked prefix"))
        .collect();
    let router = Router::new(&prefixes);
    let mut shared = Shared::mounted(apps, router, spec.config.clone(), access_log, Some(monitor));
    shared.early_signals = early_signals;
    let shared = Arc::new(shared);
    // The event loop drops the listeners when it stops accepting (after
    // taking what the backlog holds), which closes this process's copies.
    let stop = runtime::run(listeners, Arc::clone(&shared))
        .map_err(|e| boot_error("the event loop failed", e))?;
    if stop == (Stop::Graceful { drained: true }) {
        // Every app thread has exited: ours is the last reference.
        if let Ok(shared) = Arc::try_unwrap(shared) {
            // Last mounted first, as a stack unwinds.
            let apps = Vec::from(shared.apps).into_iter().enumerate().rev();
            for (index, mut app) in apps {
                crate::gateway::api::set_lifecycle_app(Some(index));
                app.plugin.shutdown();
            }
        }
    }
    Ok(())
}

/// Loads each app of the build, then runs each one's init, in mount
/// order (every name is known before any init logs). A failure names the
/// plugin and, when there are mounts, the mount.
fn load_apps(spec: &WorkerSpec<'_>) -> Result<Vec<App>, (i32, String)> {
    let mounted = !spec.build.lone();
    let failed = |build: &AppBuild, e: LoadError| {
        let why = e.shown_as(&build.original).to_string();
        let why = match mounted {
            true => format!("mount {}: {why}", build.prefix),
            false => why,
        };
        (EXIT_LOAD_ERROR, why)
    };
    let mut plugins = Vec::with_capacity(spec.build.apps.len());
    for build in &spec.build.apps {
        let plugin_spec = PluginSpec {
            path: build.path.clone(),
            symbol: build.symbol.clone(),
        };
        plugins.push(Plugin::load(&plugin_spec).map_err(|e| failed(build, e))?);
    }
    let names: Vec<String> = plugins
        .iter()
        .zip(&spec.build.apps)
        .map(|(p, build)| p.display_name(&build.original))
        .collect();
    crate::gateway::api::set_app_names(&names);
    let mut apps = Vec::with_capacity(plugins.len());
    for (index, (mut plugin, build)) in plugins.into_iter().zip(&spec.build.apps).enumerate() {
        let own = spec
            .mounts
            .iter()
            .find(|m| m.prefix.as_str() == build.prefix)
            .map_or(&[][..], |m| &m.args[..]);
        let args: Vec<(String, String)> = spec.app_args.iter().chain(own).cloned().collect();
        crate::gateway::api::set_lifecycle_app(Some(index));
        let init = plugin.init(&args, &crate::gateway::api::HOST_API);
        crate::gateway::api::set_lifecycle_app(None);
        init.map_err(|e| failed(build, e))?;
        let prefix = Prefix::parse(&build.prefix).expect("staged from a checked prefix");
        apps.push(App {
            plugin,
            script_name: prefix.script_name().as_bytes().into(),
        });
    }
    Ok(apps)
}

/// Asks the kernel for TERM when the master dies, so orphaned workers
/// finish their requests and exit instead of serving on unsupervised. On
/// TERM a worker takes its backlog and closes its listeners at once: with
/// the master's copies gone with the master, the port is free for a new
/// one while the orphans finish.
fn die_with_master(master_pid: i32) {
    // SAFETY: prctl with PR_SET_PDEATHSIG and a valid signal number has no
    // memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    // The master may have died between fork and prctl.
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != master_pid {
        std::process::exit(0);
    }
}

/// The signals that stop a worker.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is a valid buffer for sigemptyset, which
    // initialises it; sigaddset takes valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks the stop signals (for a fork); returns the mask to restore.
pub fn block_stop_signals() -> libc::sigset_t {
    let set = stop_signals();
    // SAFETY: a zeroed sigset_t is a valid buffer for the old mask, which
    // pthread_sigmask fills; `set` was initialised above.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        old
    }
}

/// Puts back the mask `block_stop_signals` returned.
pub fn restore_signal_mask(old: &libc::sigset_t) {
    // SAFETY: `old` is a mask pthread_sigmask filled in.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// Lets the stop signals through again (a pending one is delivered now).
fn unblock_stop_signals() {
    let set = stop_signals();
    // SAFETY: `set` is an initialised signal set.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
}
