//! What the serving core is told at start (`Config`), and what the event
//! loop and the app threads of a worker share (`Shared`).
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use crate::gateway::environ::HeaderMap;
use crate::gateway::mount::Router;
use crate::gateway::plugin::Plugin;
use crate::http1::parse::Limits;
use crate::net::allow::AllowIps;
use crate::net::endpoint::Endpoint;
use crate::runtime::access_log::AccessLog;
use crate::runtime::log_format::AccessStyle;
use crate::runtime::rate::MinRate;
use crate::runtime::scoreboard::Monitor;

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
    /// How long a request body may take before it must keep up
    /// `body_min_rate` (`--body-timeout`).
    pub body_timeout: Duration,
    /// Bytes per second a request body must average once `body_timeout`
    /// has passed; 0: the whole body within `body_timeout`.
    pub body_min_rate: u64,
    /// How long a client may leave response bytes unread before it must
    /// keep up `send_min_rate` (`--send-timeout`).
    pub send_timeout: Duration,
    /// Bytes per second a client must take a waiting response at once
    /// `send_timeout` has passed; 0: all of it within `send_timeout`.
    pub send_min_rate: u64,
    /// Request bodies up to this many bytes are held in memory, larger
    /// ones in a temporary file (`--body-buffer-size`).
    pub body_buffer: usize,
    /// Where those temporary files go (`--body-temp-dir`).
    pub body_temp_dir: PathBuf,
    /// The event loop reads a request body whole before the app sees the
    /// request (off with `--no-request-buffering`).
    pub request_buffering: bool,
    /// Most bytes of unfinished request heads a worker holds
    /// (`--limit-head-memory`).
    pub head_memory: usize,
    /// How long TERM waits for in-flight requests (`--graceful-timeout`).
    pub graceful_timeout: Duration,
    pub limits: Limits,
    /// What becomes of request headers with `_` in their name
    /// (`--header-map`).
    pub header_map: HeaderMap,
    /// More than one worker process serves the app (wsgi.multiprocess).
    pub multiprocess: bool,
    /// Peers whose forwarding headers (X-Forwarded-For and the scheme
    /// headers, or Forwarded) say who the client is and which scheme it
    /// used (`--forwarded-allow-ips`); also how far an X-Forwarded-For
    /// chain is walked (see `http1::forwarded`).
    pub forwarded_allow: AllowIps,
    /// Which connections start with a PROXY protocol header
    /// (`--proxy-protocol`, `--proxy-allow-ips`).
    pub proxy_protocol: ProxyProtocol,
    /// How access-log lines are written (`--access-log-format`,
    /// `--log-format`), and whether requests need a start time for them.
    pub access_style: AccessStyle,
    /// TCP connections are TLS with this (`--certfile`); None: plain.
    /// Built by the master, so a worker never reads the files.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// App threads count their requests for the metrics: only when
    /// something can read them (`--admin-bind`, or a pidfile for `host
    /// status`/`host top`); without either, the request path skips them.
    pub metrics: bool,
}

/// Whether connections start with a PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// None does: every connection is plain HTTP.
    Off,
    /// Those from these peers must (and are closed if they do not); those
    /// from anyone else are plain HTTP, where a PROXY line is just a bad
    /// request (400). So a health check or an admin on the host itself
    /// can still reach the server directly, and no client can choose its
    /// address.
    From(AllowIps),
}

impl ProxyProtocol {
    /// Whether a connection from `peer` must start with a PROXY header
    /// (one from a unix socket if the list has `unix:`).
    #[inline]
    pub fn expected_from(&self, peer: Endpoint) -> bool {
        match (self, peer) {
            (ProxyProtocol::Off, _) => false,
            (ProxyProtocol::From(allow), Endpoint::Ip(a)) => allow.contains(a.ip()),
            (ProxyProtocol::From(allow), Endpoint::Unix) => allow.trusts_unix(),
        }
    }
}

impl Config {
    pub fn keep_alive_enabled(&self) -> bool {
        !self.keep_alive.is_zero()
    }

    /// How slow a request body may arrive.
    pub fn body_rule(&self) -> MinRate {
        MinRate {
            grace: self.body_timeout,
            min_rate: self.body_min_rate,
        }
    }

    /// How slowly a client may take a response.
    pub fn send_rule(&self) -> MinRate {
        MinRate {
            grace: self.send_timeout,
            min_rate: self.send_min_rate,
        }
    }
}

impl Default for Config {
    /// The command line's defaults (for tests, benchmarks and embedding).
    fn default() -> Config {
        Config {
            threads: 1,
            keep_alive: Duration::from_secs(2),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            body_min_rate: 1024,
            send_timeout: Duration::from_secs(10),
            send_min_rate: 1024,
            body_buffer: 64 * 1024,
            body_temp_dir: std::env::temp_dir(),
            request_buffering: true,
            head_memory: 64 << 20,
            graceful_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            header_map: HeaderMap::Drop,
            multiprocess: false,
            forwarded_allow: AllowIps::localhost(),
            proxy_protocol: ProxyProtocol::Off,
            access_style: AccessStyle::default(),
            tls: None,
            metrics: false,
        }
    }
}

/// One app a worker serves: its plugin and where it is mounted.
pub struct App {
    pub plugin: Plugin,
    /// SCRIPT_NAME of its requests ("" at "/").
    pub script_name: Box<[u8]>,
}

/// State shared by the event loop and the app threads.
pub struct Shared {
    /// The apps, in mount order (one for a lone plugin).
    pub apps: Box<[App]>,
    /// Which app serves a path; None with a lone app at "/" (no routing
    /// work per request).
    pub router: Option<Router>,
    pub config: Config,
    pub access_log: Option<AccessLog>,
    /// Set on TERM: responses say `Connection: close` from now on.
    pub stopping: AtomicBool,
    /// Where this worker reports to its master (heartbeat, running
    /// requests, request count); None when serving without a master.
    pub monitor: Option<Monitor>,
    /// Response bytes the event loop holds for slow clients, all
    /// connections together (published by the loop once per turn; app
    /// threads hold back past `serve::WORKER_HIGH_WATER`).
    pub queued: AtomicUsize,
    /// Stop signals that came before the event loop listened for them.
    pub early_signals: EarlySignals,
}

/// TERM and INT/QUIT as they arrive while a worker boots (loading the
/// plugin, running its init), before the event loop installs its own
/// handlers: without these, a TERM in that window (the master stopping,
/// or dying) would be lost, and the worker would go on to serve, and
/// listen, after everyone else stopped.
#[derive(Debug, Default, Clone)]
pub struct EarlySignals {
    pub term: Arc<AtomicBool>,
    pub quit: Arc<AtomicBool>,
}

impl EarlySignals {
    /// Starts noting TERM, INT and QUIT (and keeps noting them: the loop
    /// looks once, when it starts).
    pub fn register() -> std::io::Result<EarlySignals> {
        use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM};
        let early = EarlySignals::default();
        signal_hook::flag::register(SIGTERM, Arc::clone(&early.term))?;
        signal_hook::flag::register(SIGINT, Arc::clone(&early.quit))?;
        signal_hook::flag::register(SIGQUIT, Arc::clone(&early.quit))?;
        Ok(early)
    }
}

impl Shared {
    /// A lone app at "/".
    pub fn new(
        plugin: Plugin,
        config: Config,
        access_log: Option<AccessLog>,
        monitor: Option<Monitor>,
    ) -> Shared {
        let app = App {
            plugin,
            script_name: Box::default(),
        };
        Shared::mounted(vec![app], None, config, access_log, monitor)
    }

    /// Several apps (or one not at "/"), with the router between them.
    pub fn mounted(
        apps: Vec<App>,
        router: Option<Router>,
        config: Config,
        access_log: Option<AccessLog>,
        monitor: Option<Monitor>,
    ) -> Shared {
        Shared {
            apps: apps.into(),
            router,
            config,
            access_log,
            stopping: AtomicBool::new(false),
            monitor,
            queued: AtomicUsize::new(0),
            early_signals: EarlySignals::default(),
        }
    }
}
