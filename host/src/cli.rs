//! The command line, gunicorn's flags where they exist.
use clap::{Args, Parser, Subcommand, ValueEnum};

use host::http1::parse::{
    DEFAULT_LIMIT_REQUEST_FIELDS, DEFAULT_LIMIT_REQUEST_FIELD_SIZE, DEFAULT_LIMIT_REQUEST_LINE,
};
use host::net::allow::{AllowIps, LOCALHOST};
use host::net::tls::CertReqs;
use host::runtime::log_format::{AccessFormat, Style, DEFAULT_ACCESS_FORMAT};

#[derive(Parser, Debug)]
#[command(
    name = "host",
    version,
    about = "Serve native web applications (NWSGI plugins) over HTTP/1.1"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load a plugin and serve it.
    Serve(Box<ServeArgs>),
    /// Load and validate a plugin, print its ABI version and flags, warn of a panic=abort build; serve nothing. With -c, validate the config file first (and check its plugin if none is named).
    Check(CheckArgs),
    /// Print the effective settings of `host serve` with these arguments (a config file, HOST_ARGS, $PORT, flags), each with where its value came from.
    Config(Box<ServeArgs>),
    /// Swap in the plugin file's current build (SIGHUP to the master) and wait for the outcome.
    Reload(ReloadArgs),
    /// Stop the server gracefully (SIGTERM to the master) and wait until it exits.
    Stop(ControlArgs),
    /// Upgrade the host binary without closing the port (SIGUSR2 to the master): start the binary now at the path the server was started from, with the same command line and the listening sockets; once its workers are up the old master drains and exits. Waits for the outcome; exits non-zero, the old master still serving, if the new one cannot serve.
    Upgrade(ControlArgs),
    /// Show the master's workers and the plugin build each one runs.
    Status(StatusArgs),
    /// A live view of a running server, refreshed every second: requests/s, latency percentiles, each worker and the requests its threads run, recent exits and reloads. Plain lines when stdout is not a terminal.
    Top(TopArgs),
    /// Create a plugin project in ./NAME that builds with one command, serves as it is and has a test.
    New(NewArgs),
    /// Serve a Python WSGI application (PEP 3333) through the WSGI bridge beside this binary: `host wsgi MODULE:CALLABLE [OPTIONS]` is `host serve DIR/libwsgi.so --app-arg app=MODULE:CALLABLE [OPTIONS]`, DIR being this binary's directory; every `host serve` option applies.
    Wsgi(WsgiArgs),
}

#[derive(Args, Debug)]
pub struct WsgiArgs {
    /// The application: MODULE:CALLABLE (MODULE alone means MODULE:application), imported from the current directory unless `--app-arg path=DIR` says otherwise.
    #[arg(value_name = "MODULE:CALLABLE")]
    pub app: String,

    /// `host serve` options.
    #[arg(
        value_name = "OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub options: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The project's name: its directory (./NAME, which must not exist or be empty), package and library.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// The language of the project.
    #[arg(long, value_enum, default_value_t = NewLang::Rust)]
    pub lang: NewLang,

    /// The SDK crate a Rust project depends on (the `abi/` directory of the host's sources); by default the one of the source tree this host was built from.
    #[arg(long, value_name = "DIR")]
    pub abi_path: Option<std::path::PathBuf>,
}

/// `host new --lang`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewLang {
    /// A Cargo project with the Rust SDK (`cargo build --release`, `cargo test`).
    Rust,
    /// A C file, the headers, a Makefile and a test script (`make`, `make test`).
    C,
    /// A Rust project serving an axum router through the SDK's tower support.
    Axum,
}

impl NewLang {
    pub fn name(self) -> &'static str {
        match self {
            NewLang::Rust => "Rust",
            NewLang::C => "C",
            NewLang::Axum => "axum",
        }
    }
}

#[derive(Args, Debug)]
pub struct TopArgs {
    /// The pidfile the server was started with (`host serve -p FILE`).
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pidfile: std::path::PathBuf,

    /// Stop after this many refreshes (0: until interrupted).
    #[arg(
        short = 'n',
        long = "iterations",
        value_name = "N",
        default_value_t = 0
    )]
    pub iterations: u64,
}

#[derive(Args, Debug)]
pub struct ControlArgs {
    /// The pidfile the server was started with (`host serve -p FILE`).
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pidfile: std::path::PathBuf,

    /// Seconds to wait for the outcome.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub control: ControlArgs,

    /// Re-stage only the app mounted at this prefix; the other mounts keep their builds even if their files changed.
    #[arg(long = "mount", value_name = "PREFIX")]
    pub mount: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The pidfile the server was started with (`host serve -p FILE`).
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pidfile: std::path::PathBuf,

    /// Seconds to wait for a master that has not published its status yet (one still starting).
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub timeout: u64,

    /// Print the full status as JSON (what the admin endpoint's /status answers).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The plugin: PATH[:SYMBOL] (the symbol defaults to `app`); with -c, the file's `plugin` if omitted.
    pub plugin: Option<String>,

    /// Check the plugin mounted at PREFIX too (repeatable), as `host serve --mount` takes it.
    #[arg(long = "mount", value_name = "PREFIX=PLUGIN", value_parser = parse_mount)]
    pub mount: Vec<(String, String)>,

    /// A config file to validate, as `host serve -c FILE` would read it.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The plugin: PATH[:SYMBOL] (the symbol defaults to `app`); or `plugin` in the config file.
    pub plugin: Option<String>,

    /// A TOML file of settings, one key per flag (`workers = 4`); flags and HOST_ARGS override it, and HUP re-reads it.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,

    /// Address to listen on: HOST:PORT, unix:PATH, or fd://N (an inherited listening socket); repeatable. Default: the sockets systemd passed (LISTEN_FDS), else 127.0.0.1:8000.
    #[arg(short = 'b', long = "bind", value_name = "ADDRESS")]
    pub bind: Vec<String>,

    /// SO_REUSEPORT on TCP binds: other servers may listen on the same port, and the kernel spreads connections among them.
    #[arg(long = "reuse-port")]
    pub reuse_port: bool,

    /// Permission bits of unix socket files (-b unix:PATH), in octal, e.g. 660 (default: what --umask leaves).
    #[arg(long = "bind-mode", value_name = "MODE", value_parser = parse_octal)]
    pub bind_mode: Option<u32>,

    /// File mode creation mask of the server's processes, in octal, e.g. 007: applies to unix socket files and to files the app creates (default: inherited).
    #[arg(short = 'm', long = "umask", value_name = "MODE", value_parser = parse_octal)]
    pub umask: Option<u32>,

    /// Run the workers (the plugin) as this user, a name or uid; the master binds first, as whoever started it.
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,

    /// Run the workers as this group, a name or gid (default: the --user's primary group).
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    pub group: Option<String>,

    /// Change to this directory first: the plugin path and other relative paths are relative to it.
    #[arg(long = "chdir", value_name = "DIR")]
    pub chdir: Option<std::path::PathBuf>,

    /// Let the plugin run as root (without it, running as root needs --user).
    #[arg(long = "allow-root")]
    pub allow_root: bool,

    /// Worker processes.
    #[arg(short = 'w', long = "workers", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=128))]
    pub workers: u32,

    /// Seconds a request may run before it is abandoned (503) and its worker replaced (0: never).
    #[arg(
        short = 't',
        long = "timeout",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub timeout: u64,

    /// Recycle a worker after this many requests (0: never).
    #[arg(long = "max-requests", default_value_t = 0)]
    pub max_requests: u64,

    /// Add up to this many to --max-requests, per worker, so they do not all recycle at once.
    #[arg(long = "max-requests-jitter", default_value_t = 0)]
    pub max_requests_jitter: u64,

    /// Watch the plugin file and swap in each new build whose content changed (development).
    #[arg(long)]
    pub reload: bool,

    /// Seconds a reloaded build is watched: if its workers crash repeatedly meanwhile while the previous build did not, the previous build comes back (0: no rollback).
    #[arg(long = "settle-period", value_name = "SECONDS", default_value_t = 3)]
    pub settle_period: u64,

    /// Write the master's pid to FILE and lock it (for `host reload`/`stop`/`status -p FILE`).
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pidfile: Option<std::path::PathBuf>,

    /// Most connections waiting in the kernel to be accepted (listen backlog).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(i32).range(1..=65535))]
    pub backlog: i32,

    /// App threads: how many requests run in the plugin at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub threads: u32,

    /// Seconds an idle keep-alive connection is kept open (0 disables keep-alive).
    #[arg(long = "keep-alive", value_name = "SECONDS", default_value_t = 2)]
    pub keep_alive: u64,

    /// Seconds a stopping worker may take to finish its in-flight requests.
    #[arg(
        long = "graceful-timeout",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub graceful_timeout: u64,

    /// Seconds the server keeps serving after TERM before it stops accepting and drains (time for load balancers to stop sending it clients).
    #[arg(long = "term-delay", value_name = "SECONDS", default_value_t = 0)]
    pub term_delay: u64,

    /// Seconds a client may take to send a whole request head (slowloris).
    #[arg(long = "header-timeout", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,

    /// Seconds a request body may take before it must keep up --body-min-rate (then 408 and close).
    #[arg(long = "body-timeout", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,

    /// Bytes per second a request body must average once --body-timeout has passed (0: the whole body within --body-timeout).
    #[arg(long = "body-min-rate", value_name = "BYTES", default_value_t = 1024)]
    pub body_min_rate: u64,

    /// Seconds a client may leave response bytes unread before it must keep up --send-min-rate (then it is closed).
    #[arg(long = "send-timeout", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub send_timeout: u64,

    /// Bytes per second a client must read a waiting response at once --send-timeout has passed (0: all of it within --send-timeout).
    #[arg(long = "send-min-rate", value_name = "BYTES", default_value_t = 1024)]
    pub send_min_rate: u64,

    /// Request bodies up to this size are held in memory; larger ones go to a temporary file.
    #[arg(long = "body-buffer-size", value_name = "BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
    pub body_buffer_size: u64,

    /// Directory for the temporary files of large request bodies (default: $TMPDIR, else /tmp).
    #[arg(
        long = "body-temp-dir",
        value_name = "DIR",
        conflicts_with = "no_request_buffering"
    )]
    pub body_temp_dir: Option<std::path::PathBuf>,

    /// Hand request bodies to the app as they arrive instead of reading them whole first (the app thread then waits on the client).
    #[arg(long = "no-request-buffering")]
    pub no_request_buffering: bool,

    /// Most bytes of unfinished request heads a worker holds; beyond it the largest are refused (431).
    #[arg(long = "limit-head-memory", value_name = "BYTES", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub limit_head_memory: u64,

    /// Access log file, `-` for stdout. No access log without it.
    #[arg(long = "access-logfile", value_name = "FILE")]
    pub access_logfile: Option<String>,

    /// Error log verbosity.
    #[arg(long = "log-level", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Access log line format: gunicorn's atoms (%(h)s %(t)s %(r)s %(s)s %(D)s %({header}i)s ...; see the README).
    #[arg(long = "access-log-format", alias = "access-logformat", value_name = "FORMAT",
          default_value = DEFAULT_ACCESS_FORMAT, value_parser = parse_access_format)]
    pub access_log_format: AccessFormat,

    /// Error log file, `-` for stderr (the default); reopened on USR1.
    #[arg(long = "error-logfile", alias = "log-file", value_name = "FILE")]
    pub error_logfile: Option<String>,

    /// Error and access log lines as text or as one JSON object per line.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,

    /// A KEY=VALUE pair handed to the plugin's init (repeatable, in order).
    #[arg(long = "app-arg", value_name = "KEY=VALUE", value_parser = parse_app_arg)]
    pub app_arg: Vec<(String, String)>,

    /// Serve the plugin at this path prefix (repeatable: several apps in one server; longest prefix wins). The positional plugin, if any, is mounted at "/".
    #[arg(long = "mount", value_name = "PREFIX=PLUGIN", value_parser = parse_mount)]
    pub mount: Vec<(String, String)>,

    /// A KEY=VALUE pair handed to the init of the app mounted at PREFIX only, after the --app-arg pairs (repeatable).
    #[arg(long = "mount-arg", value_name = "PREFIX:KEY=VALUE")]
    pub mount_arg: Vec<String>,

    /// Longest request line, in bytes (414 beyond); 0 for the most allowed, 1 MiB.
    #[arg(long = "limit-request-line", default_value_t = DEFAULT_LIMIT_REQUEST_LINE as u64,
          value_parser = limit(16, MAX_LIMIT_REQUEST_LINE))]
    pub limit_request_line: u64,

    /// Most header fields in a request (431 beyond); 0 for the most allowed, 32768.
    #[arg(long = "limit-request-fields", default_value_t = DEFAULT_LIMIT_REQUEST_FIELDS as u64,
          value_parser = limit(1, MAX_LIMIT_REQUEST_FIELDS))]
    pub limit_request_fields: u64,

    /// Longest header field line, in bytes (431 beyond); 0 for the most allowed, 1 MiB.
    #[arg(long = "limit-request-field_size", alias = "limit-request-field-size",
          default_value_t = DEFAULT_LIMIT_REQUEST_FIELD_SIZE as u64,
          value_parser = limit(16, MAX_LIMIT_REQUEST_FIELD_SIZE))]
    pub limit_request_field_size: u64,

    /// Request headers with '_' in their name: drop them, refuse the request (400), or pass them on as if '_' were '-' (dangerous: X_Forwarded_For then reads as X-Forwarded-For).
    #[arg(long = "header-map", value_enum, default_value_t = HeaderMapArg::Drop)]
    pub header_map: HeaderMapArg,

    /// Largest request body, in bytes; 0 for no limit (413 beyond).
    #[arg(long = "limit-request-body", default_value_t = 0)]
    pub limit_request_body: u64,

    /// Proxies whose X-Forwarded-For/-Proto/-Ssl or Forwarded headers set REMOTE_ADDR, REMOTE_PORT and wsgi.url_scheme: addresses and CIDR blocks, comma-separated, or '*' for any ('' for none).
    #[arg(long = "forwarded-allow-ips", value_name = "IPS", env = "FORWARDED_ALLOW_IPS",
          default_value = LOCALHOST, value_parser = parse_allow_ips)]
    pub forwarded_allow_ips: AllowIps,

    /// Connections from --proxy-allow-ips peers must start with a PROXY protocol header (v1 or v2), which names the client; others are plain HTTP.
    #[arg(long = "proxy-protocol")]
    pub proxy_protocol: bool,

    /// Peers that send a PROXY protocol header (--proxy-protocol): addresses and CIDR blocks, comma-separated, or '*'.
    #[arg(long = "proxy-allow-ips", alias = "proxy-allow-from", value_name = "IPS",
          default_value = LOCALHOST, value_parser = parse_allow_ips)]
    pub proxy_allow_ips: AllowIps,

    /// Serve /metrics (Prometheus, OpenMetrics), /healthz, /readyz and /status from the master on this address: HOST:PORT or unix:PATH (as -b). Off by default; changing it takes a restart.
    #[arg(
        long = "admin-bind",
        value_name = "ADDRESS",
        help_heading = "Observability"
    )]
    pub admin_bind: Option<String>,
    /// Serve HTTPS on every TCP bind with this certificate chain (PEM, leaf first); unix sockets stay plain HTTP. HUP re-reads it.
    #[arg(long = "certfile", value_name = "FILE", help_heading = "TLS")]
    pub certfile: Option<std::path::PathBuf>,

    /// The certificate's private key (PEM; default: read from --certfile).
    #[arg(long = "keyfile", value_name = "FILE", help_heading = "TLS")]
    pub keyfile: Option<std::path::PathBuf>,

    /// CA certificates (PEM) that client certificates must chain to (with --cert-reqs).
    #[arg(long = "ca-certs", value_name = "FILE", help_heading = "TLS")]
    pub ca_certs: Option<std::path::PathBuf>,

    /// Whether clients must show a certificate: 0/none, 1/optional, 2/required (gunicorn's values).
    #[arg(long = "cert-reqs", value_name = "REQS", help_heading = "TLS",
          default_value = "none", value_parser = CertReqs::parse)]
    pub cert_reqs: CertReqs,
}

/// `--forwarded-allow-ips`, `--proxy-allow-ips`.
fn parse_allow_ips(s: &str) -> Result<AllowIps, String> {
    AllowIps::parse(s)
}

/// The largest request line and field line a limit may allow (what 0 asks
/// for, as in gunicorn: "no limit" up to what the server can hold).
pub const MAX_LIMIT_REQUEST_LINE: u64 = 1 << 20;
pub const MAX_LIMIT_REQUEST_FIELD_SIZE: u64 = 1 << 20;
pub const MAX_LIMIT_REQUEST_FIELDS: u64 = 32768;

/// A limit from `min` to `max`, where 0 means `max` (gunicorn reads 0 as
/// unlimited).
fn limit(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> + Clone {
    move |s: &str| {
        let n: u64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
        match n {
            0 => Ok(max),
            n if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("{n} is not 0 or a number from {min} to {max}")),
        }
    }
}

/// `--header-map` (gunicorn's values).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderMapArg {
    Drop,
    Refuse,
    Dangerous,
}

/// `--log-format`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormatArg {
    Text,
    Json,
}

impl LogFormatArg {
    pub fn style(self) -> Style {
        match self {
            LogFormatArg::Text => Style::Text,
            LogFormatArg::Json => Style::Json,
        }
    }
}

fn parse_access_format(s: &str) -> Result<AccessFormat, String> {
    AccessFormat::parse(s)
}

/// gunicorn's level names.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

/// `--mount`: the prefix checked (and trimmed) here, the plugin as typed.
fn parse_mount(s: &str) -> Result<(String, String), String> {
    host::gateway::mount::parse_mount(s)
        .map(|(prefix, plugin)| (prefix.as_str().to_string(), plugin))
}

fn parse_app_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

/// `--umask`, `--bind-mode`: octal, with or without a leading `0o` or `0`.
fn parse_octal(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("'{s}' is not an octal file mode (e.g. 007, 660)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_modes() {
        assert_eq!(parse_octal("007").unwrap(), 0o7);
        assert_eq!(parse_octal("660").unwrap(), 0o660);
        assert_eq!(parse_octal("0o22").unwrap(), 0o22);
        assert!(parse_octal("8").is_err());
        assert!(parse_octal("17777").is_err());
    }

    #[test]
    fn app_args() {
        assert_eq!(parse_app_arg("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_app_arg("=x").is_err());
        assert!(parse_app_arg("novalue").is_err());
    }
}
