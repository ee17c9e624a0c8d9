//! `host`: the command line around the serving core in `lib.rs`.
mod cli;

use std::io::IsTerminal;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use abi::ffi::{NWSGI_ABI_MAJOR, NWSGI_ABI_MINOR};
use clap::Parser;
use tracing::level_filters::LevelFilter;

use host::plugin::{Plugin, PluginSpec};
use host::server::{self, Config, Shared, Stop};
use host::{access_log, parse};

use crate::cli::{CheckArgs, Cli, Command, LogLevel, ServeArgs};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check(args) => check(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
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
            eprintln!("error: {first} (see 'host --help')");
            ExitCode::from(2)
        }
    }
}

fn check(args: CheckArgs) -> Result<(), String> {
    let spec = PluginSpec::parse(&args.plugin);
    let plugin = Plugin::load(&spec).map_err(|e| e.to_string())?;
    println!("plugin: {}", spec.path.display());
    println!("symbol: {}", spec.symbol);
    println!(
        "abi: {}.{} (host {NWSGI_ABI_MAJOR}.{NWSGI_ABI_MINOR})",
        plugin.abi_major, plugin.abi_minor
    );
    println!("name: {}", plugin.name.as_deref().unwrap_or("-"));
    println!("flags: {}", plugin.flags_text());
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), String> {
    init_logging(args.log_level);
    match host::io::raise_fd_limit() {
        Ok(n) => tracing::debug!("open files limit: {n}"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    let mut addrs = Vec::new();
    for b in &args.bind {
        addrs.extend(cli::resolve_bind(b)?);
    }
    let access_log = match &args.access_logfile {
        Some(path) => Some(
            access_log::AccessLog::open(path)
                .map_err(|e| format!("cannot open access log {path}: {e}"))?,
        ),
        None => None,
    };
    let spec = PluginSpec::parse(&args.plugin);
    let mut plugin = Plugin::load(&spec).map_err(|e| e.to_string())?;
    let listeners = addrs
        .iter()
        .map(|addr| listen(*addr, args.backlog).map_err(|e| format!("cannot bind {addr}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    plugin.init(&args.app_arg).map_err(|e| e.to_string())?;
    tracing::info!(
        plugin = %spec.path.display(),
        symbol = %spec.symbol,
        abi = %format_args!("{}.{}", plugin.abi_major, plugin.abi_minor),
        name = plugin.name.as_deref().unwrap_or("-"),
        flags = %plugin.flags_text(),
        threads = args.threads,
        "loaded plugin"
    );
    for l in &listeners {
        if let Ok(addr) = l.local_addr() {
            tracing::info!("listening on http://{addr}");
        }
    }
    let config = Config {
        threads: args.threads as usize,
        keep_alive: Duration::from_secs(args.keep_alive),
        header_timeout: Duration::from_secs(args.header_timeout),
        body_timeout: Duration::from_secs(args.body_timeout),
        write_timeout: Duration::from_secs(30),
        graceful_timeout: Duration::from_secs(args.graceful_timeout),
        limits: parse::Limits {
            request_line: args.limit_request_line as usize,
            fields: args.limit_request_fields as usize,
            field_size: args.limit_request_field_size as usize,
            body: args.limit_request_body,
        },
    };
    let shared = Arc::new(Shared {
        plugin,
        config,
        access_log,
        stopping: AtomicBool::new(false),
    });
    let stop =
        server::run(listeners, Arc::clone(&shared)).map_err(|e| format!("server failed: {e}"))?;
    match stop {
        Stop::Graceful { drained: true } => {
            // All app threads have exited: ours is the last reference.
            if let Ok(mut shared) = Arc::try_unwrap(shared) {
                shared.plugin.shutdown();
            }
            tracing::info!("stopped");
        }
        // Requests may still be running in the plugin: its shutdown must
        // not run under them.
        Stop::Graceful { drained: false } | Stop::Fast => tracing::info!("stopped"),
    }
    Ok(())
}

/// A listening socket with gunicorn's options: SO_REUSEADDR (a restart
/// does not wait out TIME_WAIT), the `--backlog`, and IPV6_V6ONLY on IPv6
/// addresses so `-b [::]:8000 -b 0.0.0.0:8000` both bind, as in nginx.
fn listen(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

fn init_logging(level: LogLevel) {
    let filter = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warning => LevelFilter::WARN,
        LogLevel::Error | LogLevel::Critical => LevelFilter::ERROR,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(filter)
        .with_target(false)
        .init();
}
