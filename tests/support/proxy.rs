//! Real proxies (nginx, HAProxy) started by a test: each with its own
//! config, pid and temporary paths in a temp dir, on ports nobody else
//! listens on, killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::artifacts::TempDir;
use crate::TIMEOUT;

/// A program the real-proxy tests need: on PATH, or in /usr/sbin.
pub fn program(name: &str, package: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin").join(name)])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is needed by this test: install it (apt-get install {package}; .ci/run does)")
        })
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A proxy process the test started, with its directory; killed when
/// dropped.
pub struct Proxy {
    pub child: Child,
    pub ports: Vec<u16>,
    pub log: PathBuf,
    pub dir: TempDir,
}

impl Proxy {
    /// Starts `command(dir, ports)` with `n` free ports and waits until it
    /// listens on all of them. Another process may take a port between
    /// our look and the proxy's bind: then it is tried again.
    pub fn start(
        label: &str,
        n: usize,
        log: &str,
        command: impl Fn(&TempDir, &[u16]) -> Command,
    ) -> Proxy {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = TempDir::new(label);
            let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
            let mut cmd = command(&dir, &ports);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.join("stderr")).expect("a log file"),
                ));
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("starting {label}: {e}"));
            let mut proxy = Proxy {
                child,
                ports,
                log: dir.join(log),
                dir,
            };
            match proxy.wait_listening() {
                Ok(()) => return proxy,
                Err(text) => last = text,
            }
        }
        panic!("{label} did not start:\n{last}");
    }

    pub fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + TIMEOUT;
        for &port in &self.ports {
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                let exited = self.child.try_wait().ok().flatten();
                if exited.is_some() || Instant::now() >= deadline {
                    return Err(self.logs());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Its log, and its stderr if that is another file.
    pub fn logs(&self) -> String {
        let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let stderr = self.log.with_file_name("stderr");
        if stderr == self.log {
            return read(&stderr);
        }
        format!("{}{}", read(&self.log), read(&stderr))
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[i]))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate and its key, `cert.pem` and `key.pem` in
/// `dir`, and both in `both.pem` (HAProxy's form).
pub fn certificate(dir: &TempDir) {
    let status = Command::new(program("openssl", "openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running openssl");
    assert!(status.success(), "openssl req failed");
    let both = [
        std::fs::read(dir.join("cert.pem")).unwrap(),
        std::fs::read(dir.join("key.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("both.pem"), both).unwrap();
}
