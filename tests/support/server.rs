//! Running the `host` binary: `host serve` as a [`Server`] the test talks
//! to, and one-shot commands (`host check`, failing starts) as [`Finished`].

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::artifacts;
use crate::client::Conn;
use crate::TIMEOUT;

/// What the host logs once a listener is up, followed by `://` (`s://`
/// with `--certfile`) and its address.
const LISTENING: &str = "listening on http";

/// `path:symbol`, the way the host's command line names a plugin.
pub fn plugin_spec(path: &Path, symbol: &str) -> String {
    format!("{}:{symbol}", path.to_str().expect("a UTF-8 path"))
}

/// Whether the tests run as root (then `host serve` needs `--allow-root`).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A `host` command with an environment that cannot change what it logs.
fn host_command() -> Command {
    command(artifacts::host())
}

/// `program` with an environment that cannot change what the host logs.
fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_remove("RUST_LOG")
        .env_remove("HOST_ARGS")
        .env_remove("PORT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Text a child process writes to one of its pipes, collected by a
/// background thread and observable while it grows.
pub struct Output {
    state: Mutex<OutputState>,
    changed: Condvar,
}

#[derive(Default)]
struct OutputState {
    text: String,
    /// The pipe reached end of file: every process holding it is gone.
    closed: bool,
}

impl Output {
    fn collect(pipe: impl Read + Send + 'static) -> Arc<Output> {
        let output = Arc::new(Output {
            state: Mutex::new(OutputState::default()),
            changed: Condvar::new(),
        });
        let sink = Arc::clone(&output);
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line).unwrap_or(0);
                let mut state = sink.state.lock().unwrap();
                if n == 0 {
                    state.closed = true;
                    sink.changed.notify_all();
                    return;
                }
                state
                    .text
                    .push_str(&strip_ansi(&String::from_utf8_lossy(&line)));
                sink.changed.notify_all();
            }
        });
        output
    }

    /// Everything collected so far.
    pub fn text(&self) -> String {
        self.state.lock().unwrap().text.clone()
    }

    /// Waits until `done(text, closed)` holds; returns the text then, or
    /// `Err(text)` at the deadline.
    fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&str, bool) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        loop {
            if done(&state.text, state.closed) {
                return Ok(state.text.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(state.text.clone());
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// Waits until the text contains `needle`; panics with the text at the
    /// deadline or if the pipe closes first.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        match self.wait_until(timeout, |text, closed| text.contains(needle) || closed) {
            Ok(text) if text.contains(needle) => text,
            Ok(text) => panic!("output closed without {needle:?}; it was:\n{text}"),
            Err(text) => panic!("no {needle:?} within {timeout:?}; output so far:\n{text}"),
        }
    }

    /// Waits until `needle` occurs at least `count` times in the text;
    /// panics with the text at the deadline or if the pipe closes first.
    pub fn wait_for_count(&self, needle: &str, count: usize, timeout: Duration) -> String {
        let enough = |text: &str| text.matches(needle).count() >= count;
        match self.wait_until(timeout, |text, closed| enough(text) || closed) {
            Ok(text) if enough(&text) => text,
            Ok(text) => panic!("output closed with fewer than {count} {needle:?}; it was:\n{text}"),
            Err(text) => {
                panic!("fewer than {count} {needle:?} within {timeout:?}; output so far:\n{text}")
            }
        }
    }

    /// Waits for end of file; returns everything.
    pub fn wait_closed(&self, timeout: Duration) -> String {
        self.wait_until(timeout, |_, closed| closed)
            .unwrap_or_else(|text| panic!("output still open after {timeout:?}:\n{text}"))
    }
}

/// Removes terminal colour sequences (`ESC [ ... letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts `host serve <plugin>`; see [`Serve`].
pub fn serve(plugin: impl AsRef<OsStr>) -> Serve {
    Serve {
        command: "serve",
        plugin: Some(plugin.as_ref().to_owned()),
        binds: Vec::new(),
        args: Vec::new(),
        envs: Vec::new(),
        launcher: None,
        setup: None,
        default_bind: true,
        allow_root: true,
    }
}

/// Starts `host serve -c FILE`: the plugin and binds come from the file
/// (a bind of port 0 there is logged with the port it got).
pub fn serve_config(config: &Path) -> Serve {
    Serve {
        command: "serve",
        plugin: None,
        binds: Vec::new(),
        args: vec!["-c".into(), config.as_os_str().to_owned()],
        envs: Vec::new(),
        launcher: None,
        setup: None,
        default_bind: false,
        allow_root: true,
    }
}

/// Starts `host wsgi MODULE:CALLABLE`: `host serve` of the WSGI bridge
/// beside the host binary, with that app; the rest as for [`serve`].
pub fn wsgi(app: &str) -> Serve {
    Serve {
        command: "wsgi",
        ..serve(app)
    }
}

/// A change to the command before it spawns.
type Setup = Box<dyn FnOnce(&mut Command)>;

/// The command line of a `host serve` about to start.
pub struct Serve {
    /// The subcommand: `serve`, or `wsgi` (then `plugin` is the app).
    command: &'static str,
    /// None: the config file names it, and the binds too.
    plugin: Option<OsString>,
    binds: Vec<String>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    /// A program that runs the host (`systemd-socket-activate -l PATH`):
    /// its arguments come first, then the host's command line.
    launcher: Option<Vec<OsString>>,
    /// Called on the command before it spawns (file descriptors to pass
    /// with `pre_exec`, say).
    setup: Option<Setup>,
    /// Without `-b`, bind `127.0.0.1:0` (unless `no_bind`).
    default_bind: bool,
    /// Add `--allow-root` when the tests run as root (unless
    /// `refuse_root`): CI containers run them as root, and the host
    /// refuses to run a plugin as root without it.
    allow_root: bool,
}

impl Serve {
    /// Adds `-b addr`. Without any, the server binds `127.0.0.1:0`.
    pub fn bind(mut self, addr: &str) -> Serve {
        self.binds.push(addr.to_owned());
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Serve {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Serve {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Runs the host through `launcher` (a program and its arguments,
    /// which executes the host's command line that follows them).
    pub fn launcher<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, launcher: I) -> Serve {
        self.launcher = Some(
            launcher
                .into_iter()
                .map(|a| a.as_ref().to_owned())
                .collect(),
        );
        self
    }

    /// No `-b` at all, not even the default `127.0.0.1:0` (the sockets
    /// come from elsewhere: socket activation).
    pub fn no_bind(mut self) -> Serve {
        self.default_bind = false;
        self
    }

    /// No `--allow-root`, even as root (to see the refusal).
    pub fn refuse_root(mut self) -> Serve {
        self.allow_root = false;
        self
    }

    /// Lets the test change the command before it spawns.
    pub fn setup(mut self, f: impl FnOnce(&mut Command) + 'static) -> Serve {
        self.setup = Some(Box::new(f));
        self
    }

    /// Sets an environment variable of the host process.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Serve {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Starts the server and waits until each bound address is logged as
    /// listening.
    pub fn start(self) -> Server {
        let listeners = self.binds.len().max(1);
        let mut server = self.spawn();
        let wanted = |text: &str, _: bool| text.matches(LISTENING).count() >= listeners;
        let text = match server.stderr.wait_until(TIMEOUT, wanted) {
            Ok(text) if wanted(&text, true) => text,
            Ok(text) => {
                let status = server.wait_exit(TIMEOUT);
                panic!("host exited ({status}) before listening; stderr:\n{text}")
            }
            Err(text) => panic!("host did not log {LISTENING:?} within {TIMEOUT:?}:\n{text}"),
        };
        server.addrs = text
            .match_indices(LISTENING)
            .map(|(at, _)| {
                let rest = &text[at + LISTENING.len()..];
                let rest = rest.strip_prefix('s').unwrap_or(rest);
                let rest = rest.strip_prefix("://").unwrap_or(rest);
                let addr = rest
                    .split(|c: char| c.is_whitespace() || c == '/' || c == ',' || c == '"')
                    .next()
                    .unwrap_or_default();
                addr.parse()
                    .unwrap_or_else(|e| panic!("bad listening address {addr:?} ({e}) in:\n{text}"))
            })
            .collect();
        server
    }

    /// Starts the process without waiting for anything.
    pub fn spawn(self) -> Server {
        let mut cmd = match &self.launcher {
            None => host_command(),
            Some(launcher) => {
                let mut cmd = command(&launcher[0]);
                cmd.args(&launcher[1..]).arg(artifacts::host());
                cmd
            }
        };
        cmd.arg(self.command);
        if let Some(plugin) = &self.plugin {
            cmd.arg(plugin);
            if self.binds.is_empty() && self.default_bind {
                cmd.args(["-b", "127.0.0.1:0"]);
            }
        }
        for bind in &self.binds {
            cmd.args(["-b", bind]);
        }
        cmd.args(&self.args);
        if self.allow_root && running_as_root() {
            cmd.arg("--allow-root");
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(setup) = self.setup {
            setup(&mut cmd);
        }
        // Its own process group, so dropping the server also ends any
        // worker processes it forked.
        cmd.process_group(0);
        let mut child = cmd.spawn().expect("spawning the host");
        let stdout = Output::collect(child.stdout.take().expect("piped stdout"));
        let stderr = Output::collect(child.stderr.take().expect("piped stderr"));
        Server {
            child,
            addrs: Vec::new(),
            stdout,
            stderr,
        }
    }
}

/// A running `host serve`; killed (with its process group) when dropped.
pub struct Server {
    child: Child,
    /// Every address it logged as listening, in order.
    pub addrs: Vec<SocketAddr>,
    pub stdout: Arc<Output>,
    pub stderr: Arc<Output>,
}

impl Server {
    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        *self
            .addrs
            .first()
            .expect("the server was started with start()")
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// A new connection to the first listening address.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr())
    }

    /// Everything the host logged so far.
    pub fn logs(&self) -> String {
        self.stderr.text()
    }

    /// Waits until the host's log contains `needle`; returns the whole log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.stderr.wait_for(needle, timeout)
    }

    /// Waits until the host's log contains `needle` at least `count` times;
    /// returns the whole log.
    pub fn wait_for_log_count(&self, needle: &str, count: usize, timeout: Duration) -> String {
        self.stderr.wait_for_count(needle, count, timeout)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `sig` (a name: `HUP`, `TTIN`, ...) to the host process
    /// only, not to its workers.
    pub fn send_signal(&self, sig: &str) {
        signal(&self.pid().to_string(), sig);
    }

    /// Sends SIGTERM to the host process (not to its workers).
    pub fn terminate(&self) {
        signal(&self.pid().to_string(), "TERM");
    }

    /// Waits up to `timeout` for the host to exit; `None` if it still runs.
    pub fn try_wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_with_deadline(&mut self.child, timeout)
    }

    /// Waits for the host to exit; panics with its log after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_with_deadline(&mut self.child, timeout).unwrap_or_else(|| {
            panic!(
                "host still running after {timeout:?}; stderr:\n{}",
                self.logs()
            )
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The whole group, workers included (the group id is the host's
        // pid), but only while the host is unreaped, so the id is still ours.
        if let Ok(None) = self.child.try_wait() {
            signal(&format!("-{}", self.child.id()), "KILL");
            let _ = self.child.wait();
        }
    }
}

/// `kill -SIG -- target` (a pid, or `-pgid` for a process group).
fn signal(target: &str, sig: &str) {
    // Failure means the target is already gone, which is what we want.
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), "--", target])
        .stderr(Stdio::null())
        .status();
}

/// Polls `child` until it exits or `timeout` passes.
fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the host") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A `host` run that ended by itself.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Finished {
    /// Panics unless the run failed with exactly one `error: ` line on
    /// stderr, no panic and no backtrace; returns that line.
    pub fn error_line(&self) -> &str {
        assert!(
            !self.status.success(),
            "expected failure, got {}: {self:#?}",
            self.status
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("stack backtrace"),
            "the host panicked instead of reporting an error: {self:#?}"
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.contains("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "expected one `error: ` line: {self:#?}");
        let line = errors[0];
        assert!(
            line.trim_start().starts_with("error: "),
            "the error line should start with `error: `: {line:?}"
        );
        line
    }
}

/// Runs `host <args>` to completion; panics if it does not exit within
/// [`TIMEOUT`].
pub fn run<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> Finished {
    run_in(Path::new("."), args)
}

/// [`run`] with `dir` as the working directory.
pub fn run_in<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(dir: &Path, args: I) -> Finished {
    run_env(dir, &[], args)
}

/// [`run_in`] with these environment variables set.
pub fn run_env<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(
    dir: &Path,
    envs: &[(&str, &str)],
    args: I,
) -> Finished {
    let mut cmd = host_command();
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    cmd.args(&args)
        .envs(envs.iter().copied())
        .current_dir(dir)
        .process_group(0);
    // As `Serve::spawn`: a root test run allows what it runs to be root.
    if args.first().is_some_and(|a| a == "serve") && running_as_root() {
        cmd.arg("--allow-root");
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawning the host");
    let stdout = Output::collect(child.stdout.take().expect("piped stdout"));
    let stderr = Output::collect(child.stderr.take().expect("piped stderr"));
    let Some(status) = wait_with_deadline(&mut child, TIMEOUT) else {
        signal(&format!("-{}", child.id()), "KILL");
        let _ = child.wait();
        panic!(
            "`host {:?}` did not exit within {TIMEOUT:?}; stdout:\n{}\nstderr:\n{}",
            cmd.get_args().collect::<Vec<_>>(),
            stdout.text(),
            stderr.text()
        );
    };
    let elapsed = started.elapsed();
    Finished {
        status,
        stdout: stdout.wait_closed(TIMEOUT),
        stderr: stderr.wait_closed(TIMEOUT),
        elapsed,
    }
}
