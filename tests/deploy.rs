//! `deploy/`: the files a user deploys `host` with, checked by the tools
//! that read them, and the rolling procedure of the README's "Deploying",
//! run for real.
//!
//! - `host.service`, `host.socket`: `systemd-analyze verify` (Debian's
//!   `systemd` package), and the settings the README promises.
//! - `nginx.conf`, `haproxy.cfg`: `nginx -t`, `haproxy -c`.
//! - `kubernetes.yaml`: no `kubectl` here; read with python3's `yaml`
//!   module, and its fields checked against each other and the host's
//!   flags (`host config` parses the container's command line).
//! - `Containerfile`: no container runtime here; its stages, paths and
//!   command line checked against the workspace and the host's flags.
//! - Two instances behind nginx and HAProxy, both configured from the
//!   files above, under POST load with the proxies' retries off: a
//!   rolling `host reload` of each, then a TERM and start of each, drained
//!   from the balancers first. Not one request may fail, and the app must
//!   see the client's own address and scheme, whatever the client claims.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::artifacts::{self, TempDir};
use integration_tests::json::{self, Value};
use integration_tests::proxy::{program, Proxy};
use integration_tests::server::{self, Server};
use integration_tests::TIMEOUT;

fn deploy_file(name: &str) -> String {
    let path = artifacts::repo_root().join("deploy").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with `from` replaced by `to`, which must occur exactly once (a
/// file that no longer has the line would make the test check nothing).
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected {from:?} exactly once in:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// `KEY=VALUE` settings of an INI-style unit file, by section.
fn unit_settings(text: &str) -> HashMap<(String, String), Vec<String>> {
    let mut section = String::new();
    let mut out: HashMap<(String, String), Vec<String>> = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=VALUE in [{section}]: {line:?}"));
        out.entry((section.clone(), key.trim().to_owned()))
            .or_default()
            .push(value.trim().to_owned());
    }
    out
}

fn one<'a>(units: &'a HashMap<(String, String), Vec<String>>, section: &str, key: &str) -> &'a str {
    match units.get(&(section.to_owned(), key.to_owned())) {
        Some(values) if values.len() == 1 => &values[0],
        other => panic!("[{section}] {key}: expected one value, found {other:?}"),
    }
}

/// The integer value of `key = N` in `deploy/host.toml`.
fn toml_int(key: &str) -> u64 {
    let text = deploy_file("host.toml");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} =")))
        .unwrap_or_else(|| panic!("deploy/host.toml sets no {key}"));
    line.split('=').nth(1).unwrap().trim().parse().unwrap()
}

fn toml_str(key: &str) -> String {
    let text = deploy_file("host.toml");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} =")))
        .unwrap_or_else(|| panic!("deploy/host.toml sets no {key}"));
    line.split('=')
        .nth(1)
        .unwrap()
        .trim()
        .trim_matches('"')
        .to_owned()
}

/// `host config ARGS` must accept the arguments (each flag known, each
/// value valid); returns what it printed.
fn host_config_accepts(args: &[&str]) -> String {
    let run = server::run(std::iter::once("config").chain(args.iter().copied()));
    assert!(
        run.status.success(),
        "host config {args:?} refused them: {}",
        run.stderr
    );
    run.stdout
}

/// The value `host config` reports for `key` (`key = value  # source`).
fn config_value(printed: &str, key: &str) -> String {
    printed
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{printed}"))
        .split('#')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .trim()
        .trim_matches('"')
        .to_owned()
}

// ---------------------------------------------------------------------------
// The files, checked

#[test]
fn host_toml_is_a_valid_config_file() {
    let path = artifacts::repo_root().join("deploy/host.toml");
    let printed = host_config_accepts(&["-c", path.to_str().unwrap()]);
    // Under systemd the sockets come from host.socket: a bind in the
    // file would make the host ignore them.
    assert!(printed.contains("# bind (unset)"), "{printed}");
    assert_eq!(config_value(&printed, "pid"), "/run/host/host.pid");
    // Above every idle timeout of the proxies' upstream connections.
    assert!(toml_int("keep-alive") > 60, "keep-alive vs nginx's 60 s");
}

#[test]
fn systemd_units_verify() {
    let analyze = program("systemd-analyze", "systemd");
    let dir = TempDir::new("deploy-units");
    let host = artifacts::host();
    // verify checks that the programs exist: point them at the built host.
    let service =
        deploy_file("host.service").replace("/usr/local/bin/host", host.to_str().unwrap());
    std::fs::write(dir.join("host.service"), &service).unwrap();
    std::fs::write(dir.join("host.socket"), deploy_file("host.socket")).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(dir.join("host.socket"))
        .arg(dir.join("host.service"))
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .expect("running systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );

    let units = unit_settings(&deploy_file("host.service"));
    assert_eq!(one(&units, "Service", "Type"), "notify");
    // The master sends sd_notify; it is the process ExecStart runs.
    assert_eq!(one(&units, "Service", "NotifyAccess"), "main");
    assert_eq!(one(&units, "Service", "KillMode"), "mixed");
    assert_eq!(one(&units, "Service", "KillSignal"), "SIGTERM");
    assert_eq!(
        one(&units, "Service", "ExecStart"),
        "/usr/local/bin/host serve -c /etc/host/host.toml"
    );
    let pid = toml_str("pid");
    assert_eq!(
        one(&units, "Service", "ExecReload"),
        format!("/usr/local/bin/host reload -p {pid}")
    );
    let runtime = one(&units, "Service", "RuntimeDirectory");
    assert!(pid.starts_with(&format!("/run/{runtime}/")), "{pid}");
    let stop: u64 = one(&units, "Service", "TimeoutStopSec").parse().unwrap();
    assert!(
        stop > toml_int("graceful-timeout"),
        "TimeoutStopSec {stop} must exceed --graceful-timeout"
    );
    assert_eq!(one(&units, "Unit", "Requires"), "host.socket");
    let socket = unit_settings(&deploy_file("host.socket"));
    assert_eq!(one(&socket, "Socket", "FileDescriptorName"), "web");
}

/// `deploy/nginx.conf` inside a whole nginx.conf of the test's own, its
/// paths in `dir`; `upstreams` replace the two example servers (`extra`
/// after each: ` down`), `port` the listen port. Retries are turned off.
fn nginx_conf(dir: &TempDir, port: u16, upstreams: [(u16, &str); 2]) -> PathBuf {
    let mut site = deploy_file("nginx.conf");
    for (example, (port, extra)) in ["127.0.0.1:8001", "127.0.0.1:8002"].iter().zip(upstreams) {
        site = replace_once(
            &site,
            &format!("server {example};"),
            &format!("server 127.0.0.1:{port}{extra};"),
        );
    }
    site = replace_once(&site, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    site = replace_once(
        &site,
        "proxy_next_upstream error timeout;",
        "proxy_next_upstream off;",
    );
    let d = dir.path.display();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 512; }}\n\
         http {{
            access_log off;
            client_body_temp_path {d}/body;
            proxy_temp_path {d}/proxy;
            fastcgi_temp_path {d}/fastcgi;
            uwsgi_temp_path {d}/uwsgi;
            scgi_temp_path {d}/scgi;
            {site}
         }}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

fn nginx_command(dir: &TempDir) -> Command {
    let mut cmd = Command::new(program("nginx", "nginx"));
    cmd.arg("-p")
        .arg(&dir.path)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"));
    cmd
}

#[test]
fn nginx_conf_passes_nginx_t() {
    let dir = TempDir::new("deploy-nginx-t");
    nginx_conf(&dir, 8080, [(8001, ""), (8002, "")]);
    let out = nginx_command(&dir).arg("-t").output().expect("nginx -t");
    assert!(
        out.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `deploy/haproxy.cfg` with the test's ports and runtime socket, retries
/// off.
fn haproxy_cfg(dir: &TempDir, port: u16, upstreams: [u16; 2]) -> PathBuf {
    let mut cfg = deploy_file("haproxy.cfg");
    cfg = replace_once(
        &cfg,
        "stats socket /run/haproxy/admin.sock",
        &format!("stats socket {}", dir.join("admin.sock").display()),
    );
    cfg = replace_once(&cfg, "bind :80", &format!("bind 127.0.0.1:{port}"));
    cfg = replace_once(&cfg, "retries 3", "retries 0");
    assert!(!cfg.contains("redispatch"), "retries must be off:\n{cfg}");
    for (example, port) in ["127.0.0.1:8001", "127.0.0.1:8002"].iter().zip(upstreams) {
        cfg = replace_once(&cfg, example, &format!("127.0.0.1:{port}"));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    path
}

#[test]
fn haproxy_cfg_passes_haproxy_c() {
    let dir = TempDir::new("deploy-haproxy-c");
    let path = haproxy_cfg(&dir, 8080, [8001, 8002]);
    let out = Command::new(program("haproxy", "haproxy"))
        .arg("-c")
        .arg("-f")
        .arg(path)
        .output()
        .expect("haproxy -c");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "haproxy -c: {text}");
    assert!(!text.contains("[WARNING]"), "haproxy -c warns: {text}");
}

/// `deploy/kubernetes.yaml` as JSON values, one per document (python3's
/// yaml module reads it: there is no kubectl here).
fn kubernetes_documents() -> Vec<Value> {
    let path = artifacts::repo_root().join("deploy/kubernetes.yaml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(&path)
        .output()
        .expect("python3 is needed to read YAML (apt-get install python3-yaml)");
    assert!(
        out.status.success(),
        "reading {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let all = json::parse(&String::from_utf8_lossy(&out.stdout)).expect("JSON from python3");
    all.as_array().expect("a list of documents").to_vec()
}

fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| {
        v.get(key)
            .unwrap_or_else(|| panic!("no {key} (path {path:?}) in {v:?}"))
    })
}

fn number(value: &Value) -> u64 {
    match value {
        Value::Number(n) => *n as u64,
        other => panic!("not a number: {other:?}"),
    }
}

/// The value after `flag` in `args`.
fn flag_value<'a>(args: &[&'a str], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|a| *a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args[at + 1]
}

/// The Containerfile's instructions: (keyword, rest), continuation lines
/// joined.
fn containerfile() -> Vec<(String, String)> {
    let text = deploy_file("Containerfile").replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, rest) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

/// An exec-form instruction's words (`["a", "b"]`).
fn exec_form(rest: &str) -> Vec<String> {
    match json::parse(rest) {
        Ok(Value::Array(words)) => words
            .iter()
            .map(|w| w.as_str().expect("a string").to_owned())
            .collect(),
        other => panic!("not an exec-form list: {rest} ({other:?})"),
    }
}

#[test]
fn containerfile_builds_what_it_runs() {
    let steps = containerfile();
    let of = |k: &str| -> Vec<&str> {
        steps
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    let from = of("FROM");
    assert_eq!(from.len(), 2, "a build stage and a runtime stage: {from:?}");
    assert!(from[0].starts_with("docker.io/library/rust:") && from[0].ends_with(" AS build"));
    assert!(
        from[1].contains("debian") && from[1].contains("slim"),
        "{from:?}"
    );
    let run = of("RUN").join("\n");
    assert!(
        run.contains("cargo build --release --locked -p host"),
        "{run}"
    );
    // The plugin stand-in is a cdylib of this workspace.
    let plugin = of("ARG")[0].strip_prefix("PLUGIN=").expect("ARG PLUGIN=");
    let manifest = std::fs::read_to_string(
        artifacts::repo_root()
            .join("plugins")
            .join(plugin)
            .join("Cargo.toml"),
    )
    .expect("the plugin crate");
    assert!(manifest.contains("\"cdylib\""), "{manifest}");
    let copies: HashMap<&str, &str> = of("COPY")
        .iter()
        .filter_map(|c| c.strip_prefix("--from=build "))
        .map(|c| c.split_once(' ').expect("COPY SRC DEST"))
        .collect();
    // The binary the workspace builds is named host.
    assert_eq!(
        copies.get("/src/target/release/host"),
        Some(&"/usr/local/bin/host")
    );
    let entry = exec_form(of("ENTRYPOINT")[0]);
    assert_eq!(entry, ["/usr/local/bin/host"]);
    let cmd = exec_form(of("CMD")[0]);
    assert_eq!(cmd[0], "serve");
    assert_eq!(copies.get("/libapp.so"), Some(&cmd[1].as_str()));
    let args: Vec<&str> = cmd[1..].iter().map(String::as_str).collect();
    let printed = host_config_accepts(&args);
    let bind = config_value(&printed, "bind");
    assert_eq!(
        bind, "[\"0.0.0.0:8000\"]",
        "the container must listen on all addresses"
    );
    assert_eq!(of("EXPOSE"), ["8000"]);
    let user = of("USER");
    assert!(
        user.len() == 1 && !user[0].starts_with('0'),
        "not root: {user:?}"
    );
}

#[test]
fn kubernetes_deployment_fits_the_server() {
    let docs = kubernetes_documents();
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| at(d, &["kind"]).as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Deployment", "Service"]);
    let deployment = &docs[0];
    let pod = at(deployment, &["spec", "template", "spec"]);
    let containers = at(pod, &["containers"]).as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let args: Vec<&str> = at(c, &["args"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().expect("args are strings"))
        .collect();
    // The image's entrypoint is host (the Containerfile), and the plugin
    // is where the Containerfile puts it.
    assert_eq!(args[0], "serve");
    let steps = containerfile();
    let cmd = exec_form(&steps.iter().find(|(k, _)| k == "CMD").unwrap().1);
    assert_eq!(args[1], cmd[1]);
    let printed = host_config_accepts(&args[1..]);
    let port: u64 = flag_value(&args, "-b")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ports = at(c, &["ports"]).as_array().unwrap();
    assert_eq!(number(at(&ports[0], &["containerPort"])), port);
    let port_name = at(&ports[0], &["name"]).as_str().unwrap();
    for probe in ["readinessProbe", "livenessProbe"] {
        let target = at(c, &[probe, "tcpSocket", "port"]);
        assert!(
            target.as_str() == Some(port_name)
                || matches!(target, Value::Number(n) if *n as u64 == port),
            "{probe} checks {target:?}, not the container's port"
        );
    }
    let graceful: u64 = config_value(&printed, "graceful-timeout").parse().unwrap();
    let delay: u64 = config_value(&printed, "term-delay").parse().unwrap();
    let grace = number(at(pod, &["terminationGracePeriodSeconds"]));
    assert!(
        grace > graceful + delay,
        "terminationGracePeriodSeconds {grace} must exceed --term-delay {delay} + \
         --graceful-timeout {graceful}"
    );
    assert!(
        delay > 0,
        "a delay covers the endpoint removal's propagation"
    );
    // The Service sends to the named container port, the pods it selects
    // are this Deployment's.
    let service = &docs[1];
    let target = at(service, &["spec", "ports"]).as_array().unwrap()[0].clone();
    assert_eq!(at(&target, &["targetPort"]).as_str(), Some(port_name));
    let labels = at(
        deployment,
        &["spec", "template", "metadata", "labels", "app"],
    );
    assert_eq!(
        at(service, &["spec", "selector", "app"]).as_str(),
        labels.as_str()
    );
}

/// The service manager's end of `NOTIFY_SOCKET`, with SO_PASSCRED: each
/// datagram comes with the pid that sent it, which is what systemd checks
/// `NotifyAccess=` against.
struct Manager(std::os::unix::net::UnixDatagram);

impl Manager {
    fn bind(path: &Path) -> Manager {
        let socket = std::os::unix::net::UnixDatagram::bind(path).expect("a notify socket");
        let on: libc::c_int = 1;
        // SAFETY: the descriptor is the open socket just bound; `on` is a
        // c_int that outlives the call, and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_PASSCRED: {}", std::io::Error::last_os_error());
        Manager(socket)
    }

    /// The next message and its sender's pid, within `timeout`; None if
    /// none came.
    fn next(&self, timeout: Duration) -> Option<(String, i32)> {
        self.0.set_read_timeout(Some(timeout)).unwrap();
        let mut data = [0u8; 4096];
        // Room for one SCM_CREDENTIALS message, u64-aligned.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: an all-zero msghdr is a valid empty one; the pointers set
        // below point into `iov` and `control`, which outlive recvmsg.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.0);
        // SAFETY: `msg` describes buffers that are valid and writable for
        // their stated lengths; the socket is open.
        let len = unsafe { libc::recvmsg(fd, &mut msg, 0) };
        if len < 0 {
            return None;
        }
        let mut pid = 0;
        // SAFETY: CMSG_FIRSTHDR/NXTHDR walk the control buffer recvmsg
        // filled, within msg_controllen; SCM_CREDENTIALS data is a ucred.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS
                {
                    let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    pid = cred.pid;
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let text = String::from_utf8_lossy(&data[..len as usize]).into_owned();
        Some((text, pid))
    }

    /// The next message that is not a bare `STATUS=`; its sender must be
    /// `main`.
    fn expect(&self, main: u32, server: &Server) -> String {
        loop {
            let (m, pid) = self.next(TIMEOUT).unwrap_or_else(|| {
                panic!(
                    "no sd_notify message within {TIMEOUT:?}; log:\n{}",
                    server.logs()
                )
            });
            assert_eq!(
                pid as u32, main,
                "{m:?} came from pid {pid}, not the main process: NotifyAccess=main would drop it"
            );
            if !m.starts_with("STATUS=") {
                return m;
            }
        }
    }
}

/// host.service's command lines as systemd runs them: `host serve -c
/// host.toml` with the socket unit's socket (here a unix one, from
/// `systemd-socket-activate`) and a `NOTIFY_SOCKET`; `host reload -p` as
/// ExecReload, with the same `NOTIFY_SOCKET` (systemd gives it to every
/// process of the unit). Every notification must come from the main
/// process, the one ExecStart ran: that is what `NotifyAccess=main`
/// accepts.
#[test]
fn the_unit_under_socket_activation_notifies_from_the_main_process() {
    let dir = TempDir::new("deploy-unit");
    let socket = dir.join("web.sock");
    let notify = dir.join("notify.sock");
    let manager = Manager::bind(&notify);
    let instance = Instance::new("unit", &dir, 0);
    let units = unit_settings(&deploy_file("host.socket"));
    let launcher = [
        program("systemd-socket-activate", "systemd")
            .display()
            .to_string(),
        "-l".into(),
        socket.display().to_string(),
        format!("--fdname={}", one(&units, "Socket", "FileDescriptorName")),
        // It passes on only the variables it is told to.
        "--setenv=NOTIFY_SOCKET".into(),
    ];
    let mut server = server::serve_config(&instance.config)
        .launcher(launcher)
        .args(["-w", "2"])
        .env("NOTIFY_SOCKET", &notify)
        .spawn();
    // systemd-socket-activate execs the host: the main process.
    let main = server.pid();
    let deadline = Instant::now() + TIMEOUT;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no socket: {}", server.logs());
        thread::sleep(Duration::from_millis(10));
    }
    // The first client starts it, and waits in the backlog meanwhile.
    let post = |body: &str| {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(
            s,
            "POST /input HTTP/1.1\r\nHost: app\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let r = post("first");
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("len=5\nfirst"),
        "{r}"
    );
    let m = manager.expect(main, &server);
    assert!(m.starts_with("READY=1\n"), "{m}");
    server.wait_for_log("socket activation: serving web", TIMEOUT);

    // ExecReload.
    let run = server::run_env(
        &dir.path,
        &[("NOTIFY_SOCKET", notify.to_str().unwrap())],
        ["reload", "-p", instance.pidfile.to_str().unwrap()],
    );
    assert!(run.status.success(), "host reload: {run:#?}");
    let m = manager.expect(main, &server);
    assert!(m.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{m}");
    let m = manager.expect(main, &server);
    assert!(m.starts_with("READY=1\n"), "{m}");
    assert!(post("second").ends_with("len=6\nsecond"));

    // systemctl stop, KillMode=mixed: TERM to the main process only.
    server.terminate();
    let m = manager.expect(main, &server);
    assert!(m.starts_with("STOPPING=1"), "{m}");
    let status = server.wait_exit(TIMEOUT);
    assert!(status.success(), "host exited {status}: {}", server.logs());
    // Nothing more, from anyone.
    if let Some((m, pid)) = manager.next(Duration::from_millis(200)) {
        panic!("after the exit: {m:?} from pid {pid}");
    }
    assert!(socket.exists(), "the socket file is systemd's");
}

// ---------------------------------------------------------------------------
// The rolling procedure, under load

/// One `host serve` instance of the fleet: its port, pidfile, plugin file.
struct Instance {
    name: &'static str,
    port: u16,
    pidfile: PathBuf,
    plugin: PathBuf,
    config: PathBuf,
    server: Option<Server>,
    /// `host upgrade` replaced the master `server` started: the running
    /// one is found through the pidfile.
    upgraded: bool,
}

impl Instance {
    fn new(name: &'static str, dir: &TempDir, port: u16) -> Instance {
        let plugin = dir.join(format!("{name}-libapp.so"));
        std::fs::copy(artifacts::rust_plugin("testapps"), &plugin).unwrap();
        let pidfile = dir.join(format!("{name}.pid"));
        // deploy/host.toml, with this instance's paths.
        let mut toml = deploy_file("host.toml");
        toml = replace_once(
            &toml,
            "\"/srv/app/current/libapp.so:app\"",
            &format!("{:?}", plugin.display().to_string()),
        );
        toml = replace_once(
            &toml,
            "\"/run/host/host.pid\"",
            &format!("{:?}", pidfile.display().to_string()),
        );
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, toml).unwrap();
        Instance {
            name,
            port,
            pidfile,
            plugin,
            config,
            server: None,
            upgraded: false,
        }
    }

    fn start(&mut self) {
        let server = server::serve_config(&self.config)
            .bind(&format!("127.0.0.1:{}", self.port))
            // Two cores for two instances, two proxies and the clients.
            .args(["-w", "2", "--threads", "4"])
            .start();
        self.server = Some(server);
    }

    /// Renames `build` over the plugin file, then `host reload -p`.
    fn reload(&self, build: &Path) -> String {
        let stage = self.plugin.with_extension("so.new");
        std::fs::copy(build, &stage).unwrap();
        std::fs::rename(&stage, &self.plugin).unwrap();
        let run = server::run(["reload", "-p", self.pidfile.to_str().unwrap()]);
        assert!(
            run.status.success() && run.stdout.contains("reloaded: build"),
            "host reload of {}: {run:#?}",
            self.name
        );
        run.stdout.trim().to_owned()
    }

    /// `host upgrade -p`: the host binary again, the port kept open.
    fn upgrade(&mut self) -> String {
        let run = server::run(["upgrade", "-p", self.pidfile.to_str().unwrap()]);
        assert!(
            run.status.success() && run.stdout.contains("upgraded: master"),
            "host upgrade of {}: {run:#?}",
            self.name
        );
        self.upgraded = true;
        run.stdout.trim().to_owned()
    }

    /// TERM, and wait until the master has exited (its workers drained).
    fn stop(&mut self) {
        let mut server = self.server.take().expect("running");
        if self.upgraded {
            // The master now is the one the upgrade started: `host stop`
            // finds it by the pidfile, TERMs it and waits for its exit.
            let run = server::run(["stop", "-p", self.pidfile.to_str().unwrap()]);
            assert!(run.status.success(), "host stop of {}: {run:#?}", self.name);
            self.upgraded = false;
            return;
        }
        server.terminate();
        let status = server.wait_exit(Duration::from_secs(40));
        assert!(status.success(), "{} exited {status}", self.name);
    }
}

/// The tallies of the load clients.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    posts: AtomicU64,
    environ_checks: AtomicU64,
    failed: AtomicU64,
    /// The first few failures, described.
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut list = self.failures.lock().unwrap();
        if list.len() < 10 {
            list.push(what);
        }
    }
}

/// One request on a new connection from `from`, `Connection: close`;
/// the status code and body, or what went wrong.
fn exchange(from: &str, to: SocketAddr, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket
        .bind(&local.into())
        .map_err(|e| format!("bind: {e}"))?;
    socket
        .connect_timeout(&to.into(), TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no whole head: {:?}", String::from_utf8_lossy(&response)))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(format!("chunked (Content-Length expected): {head:?}"));
    }
    Ok((status, response[split + 4..].to_vec()))
}

/// A load client: from `from` through the proxy at `to` until `stop`,
/// POST /input with a body of its own, checked echoed back; every eighth
/// request a GET /environ, checked to name `from` as the client over
/// http. Each request carries a client's lies (an X-Forwarded-For and an
/// X-Forwarded-Proto of its own) that the proxy must override.
fn load_client(from: String, to: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let lies = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n";
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        tally.sent.fetch_add(1, Ordering::SeqCst);
        if n.is_multiple_of(8) {
            tally.environ_checks.fetch_add(1, Ordering::SeqCst);
            let request =
                format!("GET /environ HTTP/1.1\r\nHost: app\r\n{lies}Connection: close\r\n\r\n");
            match exchange(&from, to, request.as_bytes()) {
                Ok((200, body)) => {
                    let text = String::from_utf8_lossy(&body);
                    let env: HashMap<&str, &str> =
                        text.lines().filter_map(|l| l.split_once('=')).collect();
                    if env.get("REMOTE_ADDR") != Some(&from.as_str())
                        || env.get("wsgi.url_scheme") != Some(&"http")
                    {
                        tally.fail(format!(
                            "{from} via {to}: REMOTE_ADDR {:?}, scheme {:?}",
                            env.get("REMOTE_ADDR"),
                            env.get("wsgi.url_scheme")
                        ));
                    }
                }
                Ok((status, body)) => tally.fail(format!(
                    "{from} via {to}: GET /environ {status} {}",
                    String::from_utf8_lossy(&body)
                )),
                Err(e) => tally.fail(format!("{from} via {to}: GET /environ {e}")),
            }
            continue;
        }
        tally.posts.fetch_add(1, Ordering::SeqCst);
        let body = format!("{from} request {n} {}", "x".repeat((n % 64) as usize * 64));
        let request = format!(
            "POST /input HTTP/1.1\r\nHost: app\r\n{lies}Content-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let expected = format!("len={}\n{body}", body.len());
        match exchange(&from, to, request.as_bytes()) {
            Ok((200, got)) if got == expected.as_bytes() => {}
            Ok((status, got)) => tally.fail(format!(
                "{from} via {to}: POST {n}: {status} {:?}",
                String::from_utf8_lossy(&got[..got.len().min(200)])
            )),
            Err(e) => tally.fail(format!("{from} via {to}: POST {n}: {e}")),
        }
    }
}

/// nginx with its master process (`nginx -s reload` takes an instance out
/// of the upstream and puts it back), in front of `ports`.
fn start_nginx(ports: [u16; 2]) -> Nginx {
    Nginx(Proxy::start("deploy-nginx", 1, "error.log", |dir, own| {
        nginx_conf(dir, own[0], [(ports[0], ""), (ports[1], "")]);
        nginx_command(dir)
    }))
}

/// nginx run with a master process: stopped with TERM, which the master
/// passes on to its workers (the KILL a [`Proxy`] gets when dropped would
/// leave them holding the port).
struct Nginx(Proxy);

impl std::ops::Deref for Nginx {
    type Target = Proxy;
    fn deref(&self) -> &Proxy {
        &self.0
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.0.child.id() as libc::pid_t;
        // SAFETY: kill has no memory effects; the pid is our child, not
        // yet reaped, so it names no other process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Rewrites nginx's config with `down` on the instances that are, reloads
/// it, and waits until the old worker process has exited: only then has
/// every request the old configuration took been answered.
fn nginx_reconfigure(nginx: &Nginx, ports: [u16; 2], down: [bool; 2]) {
    let log = |n: &Proxy| std::fs::read_to_string(&n.log).unwrap_or_default();
    let exited = log(nginx).matches("exited with code 0").count();
    let mark = |d: bool| if d { " down" } else { "" };
    nginx_conf(
        &nginx.dir,
        nginx.ports[0],
        [(ports[0], mark(down[0])), (ports[1], mark(down[1]))],
    );
    let out = nginx_command(&nginx.dir)
        .args(["-s", "reload"])
        .stdout(Stdio::null())
        .output()
        .expect("nginx -s reload");
    assert!(
        out.status.success(),
        "nginx -s reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while log(nginx).matches("exited with code 0").count() <= exited {
        assert!(
            Instant::now() < deadline,
            "nginx's old worker did not exit:\n{}",
            nginx.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn start_haproxy(ports: [u16; 2]) -> Proxy {
    Proxy::start("deploy-haproxy", 1, "stderr", |dir, own| {
        let path = haproxy_cfg(dir, own[0], ports);
        let mut cmd = Command::new(program("haproxy", "haproxy"));
        cmd.arg("-db").arg("-f").arg(path);
        cmd
    })
}

/// A command to HAProxy's runtime API; its answer.
fn haproxy_api(haproxy: &Proxy, command: &str) -> String {
    let mut sock = UnixStream::connect(haproxy.dir.join("admin.sock")).expect("the stats socket");
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    sock.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    sock.read_to_string(&mut answer).unwrap();
    answer
}

/// `show stat`'s row for backend server `name`, as fields.
fn haproxy_server_stat(haproxy: &Proxy, name: &str) -> HashMap<String, String> {
    let csv = haproxy_api(haproxy, "show stat");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("a header")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let row = lines
        .find(|l| l.starts_with(&format!("host_app,{name},")))
        .unwrap_or_else(|| panic!("no server {name} in:\n{csv}"));
    header
        .iter()
        .zip(row.split(','))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Sets a backend server's admin state; `drain` also waits until nothing
/// of it is in flight, `ready` until its health checks pass again.
fn haproxy_set(haproxy: &Proxy, name: &str, state: &str) {
    let answer = haproxy_api(
        haproxy,
        &format!("set server host_app/{name} state {state}"),
    );
    assert!(answer.trim().is_empty(), "haproxy: {answer}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stat = haproxy_server_stat(haproxy, name);
        let done = match state {
            "drain" => stat["status"] == "DRAIN" && stat["scur"] == "0",
            _ => stat["status"] == "UP",
        };
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "haproxy {name} {state}: {stat:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The README's "Deploying" procedure, on two instances behind nginx and
/// HAProxy at once, with their retries off so no failure is hidden.
#[test]
fn rolling_reload_and_restart_behind_nginx_and_haproxy_drops_nothing() {
    let dir = TempDir::new("deploy-roll");
    let ports = [
        integration_tests::proxy::free_port(),
        integration_tests::proxy::free_port(),
    ];
    let mut fleet = [
        Instance::new("a", &dir, ports[0]),
        Instance::new("b", &dir, ports[1]),
    ];
    for instance in &mut fleet {
        instance.start();
    }
    let nginx = start_nginx(ports);
    let haproxy = start_haproxy(ports);
    for name in ["a", "b"] {
        haproxy_set(&haproxy, name, "ready");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let to = if i % 2 == 0 {
                nginx.addr(0)
            } else {
                haproxy.addr(0)
            };
            let (stop, tally) = (stop.clone(), tally.clone());
            let from = format!("127.0.0.{}", 10 + i);
            thread::spawn(move || load_client(from, to, stop, tally))
        })
        .collect();
    let sent = || tally.sent.load(Ordering::SeqCst);
    let settle = |what: &str| {
        // Some load through the new state before the next step.
        let before = sent();
        let deadline = Instant::now() + TIMEOUT;
        while sent() < before + 200 {
            assert!(Instant::now() < deadline, "no load after {what}");
            thread::sleep(Duration::from_millis(10));
        }
    };
    settle("start");

    // 1. A new build, instance by instance: `host reload` swaps it in
    //    behind the balancers, which need not know.
    let new_build = artifacts::testapps_c();
    let mut reloads = Vec::new();
    for instance in &fleet {
        reloads.push(format!(
            "{}: {}",
            instance.name,
            instance.reload(&new_build)
        ));
        settle("a reload");
    }

    // 2. The host binary again, instance by instance: `host upgrade`
    //    replaces the master in place, as a reload replaces the workers,
    //    and the balancers need not know either.
    let mut upgrades = Vec::new();
    for instance in fleet.iter_mut() {
        let said = instance.upgrade();
        upgrades.push(format!("{}: {said}", instance.name));
        settle("an upgrade");
    }

    // 3. A restart of each (TERM, then a new process on the same port):
    //    out of both balancers first, back in once it listens.
    for (i, instance) in fleet.iter_mut().enumerate() {
        let mut down = [false; 2];
        down[i] = true;
        nginx_reconfigure(&nginx, ports, down);
        haproxy_set(&haproxy, instance.name, "drain");
        instance.stop();
        instance.start();
        haproxy_set(&haproxy, instance.name, "ready");
        nginx_reconfigure(&nginx, ports, [false; 2]);
        settle("a restart");
    }
    settle("the last restart");

    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("a load client panicked");
    }
    let elapsed = started.elapsed();
    let failed = tally.failed.load(Ordering::SeqCst);
    eprintln!(
        "deploy rollout: {} requests ({} POST, {} environ checks) through nginx and HAProxy, \
         {failed} failed, in {:.1} s; 2 reloads, 2 upgrades, 2 restarts\n{}\n{}",
        sent(),
        tally.posts.load(Ordering::SeqCst),
        tally.environ_checks.load(Ordering::SeqCst),
        elapsed.as_secs_f64(),
        reloads.join("\n"),
        upgrades.join("\n")
    );
    assert_eq!(
        failed,
        0,
        "failed requests: {:#?}\nnginx:\n{}\nhaproxy:\n{}",
        tally.failures.lock().unwrap(),
        nginx.logs(),
        haproxy.logs()
    );
    // Both restarted instances served through both proxies: every client
    // address is in each one's access log.
    for instance in &fleet {
        let log = instance.server.as_ref().unwrap().stdout.text();
        for i in 0..4 {
            let client = format!("127.0.0.{} - - [", 10 + i);
            assert!(
                log.contains(&client),
                "{} restarted served no request of {client}:\n{log}",
                instance.name
            );
        }
    }
}
