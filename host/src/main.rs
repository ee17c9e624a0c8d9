//! `host`: the command line around the serving core in `lib.rs`.
mod cli;
mod hints;
mod scaffold;
mod settings;
mod top;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use abi::ffi::{NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR};
use clap::Parser;

use host::gateway::build::{self, PanicStrategy};
use host::gateway::environ::HeaderMap;
use host::gateway::mount;
use host::gateway::plugin::{Plugin, PluginSpec};
use host::http1::parse;
use host::net::listener::{self, BindOptions};
use host::net::tls;
use host::runtime::log_format::{AccessStyle, Style};
use host::runtime::{access_log, error_log, Config, ProxyProtocol};
use host::supervisor::control::{self, Pidfile, Remote};
use host::supervisor::master::{Master, MasterConfig, Reread};
use host::supervisor::process::{self, ProcessOptions};
use host::supervisor::staging;
use host::supervisor::upgrade::{Handover, Origin};

use crate::cli::{
    CheckArgs, Cli, Command, ControlArgs, LogLevel, ReloadArgs, ServeArgs, StatusArgs, WsgiArgs,
};
use crate::settings::Settings;

fn main() -> ExitCode {
    // First, before `--chdir` or a deploy can change what they name: an
    // upgrade (USR2) runs this command line again.
    let origin = Origin::capture();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // `host serve` and `host config` read their settings from every source
    // (settings.rs), starting from the arguments after the subcommand (the
    // first argument: `host` takes no options of its own).
    let after_subcommand: Vec<OsString> = std::env::args_os().skip(2).collect();
    let result = match cli.command {
        Command::Serve(_) => match load_settings(&after_subcommand) {
            Ok(settings) => match settings.apps() {
                Ok(_) => serve(settings, after_subcommand, origin),
                Err(e) => return settings_error(e),
            },
            Err(code) => return code,
        },
        Command::Config(_) => match load_settings(&after_subcommand) {
            Ok(settings) => {
                print!("{}", settings.render());
                Ok(())
            }
            Err(code) => return code,
        },
        Command::Check(args) => return check(args),
        Command::Reload(args) => reload(args),
        Command::Stop(args) => stop(args),
        Command::Upgrade(args) => upgrade(args),
        Command::Status(args) => status(args),
        Command::Top(args) => top::run(args),
        Command::New(args) => return scaffold::run(args),
        Command::Wsgi(args) => {
            let serve_args = match wsgi_args(args) {
                Ok(serve_args) => serve_args,
                Err(message) => {
                    eprintln!("error: {message}");
                    return ExitCode::FAILURE;
                }
            };
            // The options are `host serve`'s: checked as they would be.
            let argv = [OsString::from("host"), OsString::from("serve")];
            if let Err(e) = Cli::try_parse_from(argv.into_iter().chain(serve_args.clone())) {
                return usage_error(e);
            }
            match load_settings(&serve_args) {
                Ok(settings) => match settings.apps() {
                    Ok(_) => serve(settings, serve_args, origin),
                    Err(e) => return settings_error(e),
                },
                Err(code) => return code,
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `host wsgi MODULE:CALLABLE OPTIONS` as `host serve` arguments: the
/// bridge beside this binary, the app, then the options.
fn wsgi_args(args: WsgiArgs) -> Result<Vec<OsString>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let bridge = exe.with_file_name("libwsgi.so");
    if !bridge.is_file() {
        return Err(format!(
            "no WSGI bridge beside this host ({} is missing; build it with `cargo build --release -p wsgi`)",
            bridge.display()
        ));
    }
    let mut out = vec![
        bridge.into_os_string(),
        OsString::from("--app-arg"),
        OsString::from(format!("app={}", args.app)),
    ];
    out.extend(args.options);
    Ok(out)
}

/// Help and version print as clap writes them; a usage mistake becomes one
/// line (clap's first) and exit status 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            // A gunicorn flag typed from habit: say what host does instead.
            let hint = match (e.kind(), e.get(clap::error::ContextKind::InvalidArg)) {
                (ErrorKind::UnknownArgument, Some(clap::error::ContextValue::String(arg))) => {
                    hints::for_flag(arg)
                }
                _ => None,
            };
            match hint {
                Some(hint) => eprintln!("error: {first}: a gunicorn flag; {hint}"),
                None => eprintln!("error: {first} (see 'host --help')"),
            }
            ExitCode::from(2)
        }
    }
}

/// The settings, or the exit status of why not (2, as any usage error, after
/// one line naming the file, line and key, or `$HOST_ARGS`).
fn load_settings(cli: &[OsString]) -> Result<Settings, ExitCode> {
    let settings = Settings::load(cli).map_err(settings_error)?;
    Ok(settings)
}

fn settings_error(e: settings::Error) -> ExitCode {
    match e {
        settings::Error::Usage(e) => usage_error(e),
        settings::Error::Invalid(why) => {
            eprintln!("error: {why}");
            ExitCode::from(2)
        }
    }
}

/// `host check [-c FILE] [PLUGIN]`: the whole config file first, as `host
/// serve -c FILE` would take it (exit 2 if it cannot), then the plugin
/// named, else the file's.
fn check(args: CheckArgs) -> ExitCode {
    let apps = match &args.config {
        Some(path) => {
            let cli = [OsString::from("-c"), path.clone().into_os_string()];
            let settings = match load_settings(&cli) {
                Ok(settings) => settings,
                Err(code) => return code,
            };
            println!("config: {} (valid)", path.display());
            // Named on the command line: those instead of the file's.
            let named = args.plugin.is_some() || !args.mount.is_empty();
            let apps = match named {
                true => mount::plan(args.plugin.as_deref(), &args.mount, &[])
                    .map_err(settings::Error::Invalid),
                false => settings.apps(),
            };
            match apps {
                Ok(apps) => apps,
                Err(e) => return settings_error(e),
            }
        }
        None => match mount::plan(args.plugin.as_deref(), &args.mount, &[]) {
            Ok(apps) => apps,
            Err(why) => return settings_error(settings::Error::Invalid(why)),
        },
    };
    if apps.is_empty() {
        eprintln!("error: name a plugin (host check PATH[:SYMBOL], or --mount PREFIX=PLUGIN) or a config file that names one (-c FILE)");
        return ExitCode::from(2);
    }
    // Every app is checked, and each failure said, before the verdict.
    let lone = apps.len() == 1 && apps[0].prefix.is_root();
    let mut failed = false;
    for app in &apps {
        if !lone {
            println!("mount: {}", app.prefix);
        }
        if let Err(message) = check_plugin(&app.plugin) {
            match lone {
                true => eprintln!("error: {message}"),
                false => eprintln!("error: mount {}: {message}", app.prefix),
            }
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check_plugin(plugin: &str) -> Result<(), String> {
    let spec = PluginSpec::parse(plugin);
    let plugin = Plugin::load(&spec).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&spec.path)
        .map_err(|e| format!("cannot read plugin {}: {e}", spec.path.display()))?;
    println!("plugin: {}", spec.path.display());
    println!("symbol: {}", spec.symbol);
    println!(
        "abi: {}.{} (host {NWSGI_ABI_MAJOR}.{NWSGI_ABI_MINOR})",
        plugin.abi_major, plugin.abi_minor
    );
    // The name is the plugin's to choose: shown escaped, never raw.
    let name = plugin.name.as_deref().map(host::text::shown);
    println!("name: {}", name.map_or("-".to_string(), |n| n.to_string()));
    println!("flags: {}", plugin.flags_text());
    println!("build: {}", &staging::hash(&bytes)[..12]);
    if build::rust_panic_strategy(&bytes) == Some(PanicStrategy::Abort) {
        println!(
            "warning: a Rust library built with panic = \"abort\": a panic in it kills the \
             worker process, with the requests it serves, and its message may be lost; \
             build it with panic = \"unwind\" (Cargo's default)"
        );
    }
    Ok(())
}

/// `host serve`: binds, starts the master and serves until stopped. With a
/// config file, HUP re-reads it (`reread_settings`). Started by an
/// upgrading master (USR2), it takes that master's sockets instead of
/// binding, and tells it why if it cannot serve.
fn serve(settings: Settings, cli: Vec<OsString>, origin: Option<Origin>) -> Result<(), String> {
    init_logging(settings.args.log_level, settings.args.log_format.style());
    let handover = Handover::from_env()?;
    let reporter = handover.as_ref().and_then(Handover::reporter);
    let result = serve_with(settings, cli, origin, handover);
    if let (Err(why), Some(reporter)) = (&result, reporter) {
        reporter.failed(why);
    }
    result
}

fn serve_with(
    settings: Settings,
    cli: Vec<OsString>,
    origin: Option<Origin>,
    handover: Option<Handover>,
) -> Result<(), String> {
    let args = &settings.args;
    match host::net::raise_fd_limit() {
        Ok(n) => tracing::debug!("open files limit: {n}"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    // First: --chdir changes what every relative path below means.
    let identity = process::prepare(&ProcessOptions {
        chdir: args.chdir.as_deref(),
        umask: args.umask,
        user: args.user.as_deref(),
        group: args.group.as_deref(),
        allow_root: args.allow_root,
    })?;
    // After --chdir (a relative path is relative to it, as for the other
    // files); from here on every line, the workers' included, goes there.
    if let Some(path) = &args.error_logfile {
        error_log::open(path).map_err(|e| format!("cannot open --error-logfile {path}: {e}"))?;
    }
    let mut config = plan(&settings)?;
    let bound = match handover {
        // The old master holds the pidfile until our workers are up.
        Some(handover) => {
            let bound = handover.listeners()?;
            config.handover = Some((handover, args.pidfile.clone()));
            bound
        }
        None => {
            // Before binding: a second master given the same pidfile is
            // refused before it takes an address or starts a worker.
            config.pidfile = args.pidfile.as_deref().map(Pidfile::lock).transpose()?;
            listener::open(
                &args.bind,
                &BindOptions {
                    backlog: args.backlog,
                    reuse_port: args.reuse_port,
                    mode: args.bind_mode,
                    // As gunicorn: the workers' user may use the socket it
                    // serves.
                    owner: identity.as_ref().map(|id| (id.uid, id.gid)),
                },
            )?
        }
    };
    if let Some(spec) = &args.admin_bind {
        if config.handover.is_some() {
            // The old master holds it until the handover.
            config.admin_pending = Some(spec.clone());
        } else {
            config.admin = Some(host::supervisor::admin::Admin::bind(spec)?);
        }
    }
    config.origin = origin;
    config.identity = identity;
    tracing::debug!(
        "forwarding headers believed from: {}",
        config.server.forwarded_allow
    );
    if let ProxyProtocol::From(peers) = &config.server.proxy_protocol {
        tracing::info!("a PROXY protocol header is expected from: {peers}");
    }
    if let Some(path) = &settings.file {
        tracing::info!("settings from {} (HUP re-reads it)", path.display());
        config.reread = Some(reread_settings(settings.entries, cli));
    } else if args.certfile.is_some() {
        // No file to re-read, but the certificate files are: HUP reads the
        // settings again (the same ones) to load them.
        config.reread = Some(reread_settings(settings.entries, cli));
    }
    let master = Master::start(config, bound)?;
    master.run()
}

/// What HUP does with a config file: reads the settings again from every
/// source (the file anew; the command line and the environment as at
/// start), checks them as a start would, and tells the master what changed.
/// The master runs no plugin code, and none runs here.
fn reread_settings(
    mut before: Vec<settings::Entry>,
    cli: Vec<OsString>,
) -> Box<dyn FnMut() -> Result<Reread, String>> {
    Box::new(move || {
        let settings = Settings::load(&cli).map_err(|e| e.to_string())?;
        let config = plan(&settings)?;
        let (live, fixed) = settings::changes(&before, &settings.entries);
        if let Some(set_level) = LOG_LEVEL.get() {
            set_level(settings.args.log_level);
        }
        error_log::set_style(settings.args.log_format.style());
        // What runs: a setting that waits for a restart keeps its running
        // value, so the next HUP names it again.
        before = settings
            .entries
            .into_iter()
            .map(|e| match before.iter().find(|b| b.key == e.key) {
                Some(running) if fixed.contains(&e.key) => running.clone(),
                _ => e,
            })
            .collect();
        Ok(Reread {
            config,
            live,
            fixed,
        })
    })
}

/// What the master and its workers are told, from the settings: checked as
/// far as can be without binding or loading the plugin. No pidfile yet.
fn plan(settings: &Settings) -> Result<MasterConfig, String> {
    let args: &ServeArgs = &settings.args;
    let apps = settings.apps().map_err(|e| e.to_string())?;
    if let Some(path) = &args.access_logfile {
        // Workers open it; opening it here first makes a bad path a
        // start-up error rather than a worker that cannot boot.
        access_log::AccessLog::open(path)
            .map_err(|e| format!("cannot open access log {path}: {e}"))?;
    }
    let body_temp_dir = args
        .body_temp_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    // Workers spool large bodies there; trying it now makes a bad directory
    // a start-up error rather than a 500 on the first large upload.
    host::runtime::spool::check_dir(&body_temp_dir).map_err(|e| {
        format!(
            "cannot use --body-temp-dir {}: {e}",
            body_temp_dir.display()
        )
    })?;
    let tls = match &args.certfile {
        Some(certfile) => {
            if args.proxy_protocol {
                return Err(
                    "--proxy-protocol cannot be combined with --certfile (the PROXY header would come before the TLS handshake)"
                        .into(),
                );
            }
            let config = tls::load(&tls::TlsFiles {
                certfile: certfile.clone(),
                keyfile: args.keyfile.clone(),
                ca_certs: args.ca_certs.clone(),
                cert_reqs: args.cert_reqs,
            })?;
            tracing::info!("TLS: serving HTTPS with {}", certfile.display());
            Some(config)
        }
        None => {
            // Said here rather than by clap, whose one-line form would
            // not name the flag.
            let orphan = [
                ("--keyfile", args.keyfile.is_some()),
                ("--ca-certs", args.ca_certs.is_some()),
                ("--cert-reqs", args.cert_reqs != tls::CertReqs::None),
            ];
            if let Some((flag, _)) = orphan.iter().find(|(_, given)| *given) {
                return Err(format!("{flag} needs --certfile"));
            }
            None
        }
    };
    let server = Config {
        threads: args.threads as usize,
        keep_alive: Duration::from_secs(args.keep_alive),
        header_timeout: Duration::from_secs(args.header_timeout),
        body_timeout: Duration::from_secs(args.body_timeout),
        body_min_rate: args.body_min_rate,
        send_timeout: Duration::from_secs(args.send_timeout),
        send_min_rate: args.send_min_rate,
        body_buffer: args.body_buffer_size as usize,
        body_temp_dir,
        request_buffering: !args.no_request_buffering,
        head_memory: args.limit_head_memory as usize,
        graceful_timeout: Duration::from_secs(args.graceful_timeout),
        limits: parse::Limits {
            request_line: args.limit_request_line as usize,
            fields: args.limit_request_fields as usize,
            field_size: args.limit_request_field_size as usize,
            body: args.limit_request_body,
        },
        header_map: match args.header_map {
            cli::HeaderMapArg::Drop => HeaderMap::Drop,
            cli::HeaderMapArg::Refuse => HeaderMap::Refuse,
            cli::HeaderMapArg::Dangerous => HeaderMap::Dangerous,
        },
        multiprocess: args.workers > 1,
        forwarded_allow: args.forwarded_allow_ips.clone(),
        metrics: args.admin_bind.is_some() || args.pidfile.is_some(),
        access_style: AccessStyle::new(
            args.access_log_format.clone(),
            args.log_format.style(),
            args.access_logfile.is_some(),
        ),
        proxy_protocol: if args.proxy_protocol {
            ProxyProtocol::From(args.proxy_allow_ips.clone())
        } else {
            ProxyProtocol::Off
        },
        tls,
    };
    Ok(MasterConfig {
        apps,
        workers: args.workers as usize,
        timeout: Duration::from_secs(args.timeout),
        graceful_timeout: Duration::from_secs(args.graceful_timeout),
        term_delay: Duration::from_secs(args.term_delay),
        identity: None,
        max_requests: args.max_requests,
        max_requests_jitter: args.max_requests_jitter,
        watch: args.reload,
        settle: Duration::from_secs(args.settle_period),
        pidfile: None,
        app_args: args.app_arg.clone(),
        access_log: args.access_logfile.clone(),
        server,
        reread: None,
        origin: None,
        handover: None,
        admin: None,
        admin_pending: None,
    })
}

/// `host reload -p FILE`: HUP the master, then wait for the outcome it
/// reports (read from its memory through /proc, else from the file next to
/// the pidfile, and only if it is this run's).
fn reload(args: ReloadArgs) -> Result<(), String> {
    let ReloadArgs {
        control: args,
        mount,
    } = args;
    let master = Remote::find(&args.pidfile)?;
    let before = master.reload_outcome().map_or(0, |o| o.seq);
    if let Some(text) = &mount {
        // Spelled as the server spells it ("/api/" is "/api"); whether it
        // is mounted there is the master's to say.
        let prefix =
            mount::Prefix::parse(text).map_err(|why| format!("--mount '{text}': {why}"))?;
        master.ask_reload_mount(prefix.as_str())?;
    }
    master.signal(libc::SIGHUP)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while Instant::now() < deadline {
        if let Some(outcome) = master.reload_outcome().filter(|o| o.seq > before) {
            if outcome.ok {
                println!("reloaded: {}", outcome.detail);
                return Ok(());
            }
            return Err(format!("reload failed: {}", outcome.detail));
        }
        if !control::running(master.pid) {
            return Err(format!(
                "master {} exited before the reload was decided",
                master.pid
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "no reload outcome from master {} within {}s",
        master.pid, args.timeout
    ))
}

/// `host stop -p FILE`: TERM the master and wait until it is gone.
fn stop(args: ControlArgs) -> Result<(), String> {
    let master = Remote::find(&args.pidfile)?;
    master.signal(libc::SIGTERM)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while Instant::now() < deadline {
        if !control::running(master.pid) {
            println!("stopped: master {}", master.pid);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "master {} still running after {}s",
        master.pid, args.timeout
    ))
}

/// `host upgrade -p FILE`: USR2 the master, then wait for the outcome it
/// reports: the new master serving (it holds the pidfile, with its pid
/// written) and the old one draining, or why the new one could not serve
/// (the old one serves on). A master that hands over and drains quickly
/// may be gone before its outcome is read: then the pidfile says.
fn upgrade(args: ControlArgs) -> Result<(), String> {
    let master = Remote::find(&args.pidfile)?;
    let before = master.reload_outcome().map_or(0, |o| o.seq);
    master.signal(libc::SIGUSR2)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut handed_over = false;
    let mut gone_at = None;
    while Instant::now() < deadline {
        if !handed_over {
            match master.reload_outcome().filter(|o| o.seq > before) {
                Some(outcome) if !outcome.ok => return Err(outcome.detail),
                Some(_) => handed_over = true,
                None => {}
            }
        }
        // The new master holds the pidfile and wrote its pid there.
        if let Ok(new) = Remote::find(&args.pidfile) {
            let written = std::fs::read_to_string(&args.pidfile)
                .is_ok_and(|t| t.trim() == new.pid.to_string());
            if new.pid != master.pid
                && written
                && control::lock_holder(&args.pidfile) == Some(new.pid)
            {
                println!(
                    "upgraded: master {} serving; master {} draining",
                    new.pid, master.pid
                );
                return Ok(());
            }
        }
        // Gone without a word read: give the new master, if any, a moment
        // to show up in the pidfile before calling it a failure.
        if !handed_over && !control::running(master.pid) {
            match gone_at {
                None => gone_at = Some(Instant::now()),
                Some(at) if at.elapsed() > Duration::from_secs(2) => {
                    return Err(format!(
                        "master {} exited before the upgrade was decided",
                        master.pid
                    ))
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "no upgrade outcome from master {} within {}s",
        master.pid, args.timeout
    ))
}

/// `host status -p FILE`: the workers as the master last published them;
/// a master still starting is given `--timeout` to publish.
fn status(args: StatusArgs) -> Result<(), String> {
    let master = Remote::find(&args.pidfile)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let said = if args.json {
            master.status_json().map(|t| t + "\n")
        } else {
            master.status()
        };
        match said {
            Ok(text) => {
                print!("{text}");
                return Ok(());
            }
            Err(e) if Instant::now() >= deadline || !control::running(master.pid) => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Changes the log level of the running process (HUP with a new
/// `log-level`); workers forked after it inherit the new level.
type SetLevel = Box<dyn Fn(LogLevel) + Send + Sync>;
static LOG_LEVEL: OnceLock<SetLevel> = OnceLock::new();

fn init_logging(level: LogLevel, style: Style) {
    error_log::set_style(style);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .event_format(error_log::Lines)
        .with_env_filter(log_filter(level))
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    let _ = LOG_LEVEL.set(Box::new(move |level| {
        if let Err(e) = handle.reload(log_filter(level)) {
            tracing::warn!("cannot change the log level: {e}");
        }
    }));
}

fn log_filter(level: LogLevel) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::new(match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error => "error",
        // Only what costs service (`host::critical!`); startup errors are
        // printed whatever the level.
        LogLevel::Critical => "off,host::critical=error",
    })
}
