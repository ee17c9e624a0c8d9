//! Settings from every source (`host serve -c FILE`, `HOST_ARGS`, `$PORT`,
//! flags): their order, `host config`, `host check -c`, the one-line
//! errors that name file, line and key, and HUP re-reading the file.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::artifacts::{self, TempDir};
use integration_tests::client;
use integration_tests::server::{self, Finished, Server};
use integration_tests::TIMEOUT;

fn testapps() -> String {
    path_str(&artifacts::rust_plugin("testapps")).to_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// `host <args>` in `dir` with `envs` set.
fn host(dir: &TempDir, envs: &[(&str, &str)], args: &[&str]) -> Finished {
    server::run_env(&dir.path, envs, args)
}

/// The `key = value  # source` line of `host config` output for `key`:
/// (value, source).
fn setting<'a>(out: &'a str, key: &str) -> (&'a str, &'a str) {
    let line = out
        .lines()
        .find(|l| l.split(" = ").next() == Some(key))
        .unwrap_or_else(|| panic!("no `{key} = ` line in:\n{out}"));
    let (value, source) = line[key.len() + 3..]
        .rsplit_once("  # ")
        .unwrap_or_else(|| panic!("no `  # source` in {line:?}"));
    (value.trim_end(), source)
}

#[test]
fn file_then_environment_then_flags() {
    let dir = TempDir::new("settings-order");
    fs::write(
        dir.join("host.toml"),
        "# comment\nworkers = 2\ntimeout = 7\nthreads = 3\nmax_requests = 50\n\
         app-arg = [\"a=1\", \"b=2\"]\nbind = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    let run = host(
        &dir,
        &[("HOST_ARGS", "-w 3 --timeout 8 --app-arg 'c=3 4'")],
        &[
            "config",
            "-c",
            "host.toml",
            "--timeout",
            "9",
            "-b",
            "127.0.0.1:10",
        ],
    );
    assert!(run.status.success(), "{run:#?}");
    let out = &run.stdout;
    assert_eq!(setting(out, "threads"), ("3", "host.toml:4"), "{out}");
    assert_eq!(setting(out, "max-requests"), ("50", "host.toml:5"), "{out}");
    assert_eq!(setting(out, "workers"), ("3", "$HOST_ARGS"), "{out}");
    assert_eq!(setting(out, "timeout"), ("9", "command line"), "{out}");
    assert_eq!(setting(out, "keep-alive"), ("2", "default"), "{out}");
    // A list from a later source replaces the earlier one whole.
    assert_eq!(
        setting(out, "app-arg"),
        (r#"["c=3 4"]"#, "$HOST_ARGS"),
        "{out}"
    );
    assert_eq!(
        setting(out, "bind"),
        (r#"["127.0.0.1:10"]"#, "command line"),
        "{out}"
    );
    assert_eq!(setting(out, "reload"), ("false", "default"), "{out}");
}

#[test]
fn port_binds_every_interface_only_when_nothing_else_binds() {
    let dir = TempDir::new("settings-port");
    let run = host(&dir, &[("PORT", "5123")], &["config"]);
    assert!(run.status.success(), "{run:#?}");
    assert_eq!(
        setting(&run.stdout, "bind"),
        (r#"["0.0.0.0:5123"]"#, "$PORT"),
        "{}",
        run.stdout
    );
    fs::write(dir.join("host.toml"), "bind = [\"127.0.0.1:7\"]\n").unwrap();
    let run = host(&dir, &[("PORT", "5123")], &["config", "-c", "host.toml"]);
    assert_eq!(
        setting(&run.stdout, "bind"),
        (r#"["127.0.0.1:7"]"#, "host.toml:1"),
        "{}",
        run.stdout
    );
    // Without any: the sockets systemd passed, else 127.0.0.1:8000, decided
    // when the server binds.
    let run = host(&dir, &[], &["config"]);
    assert!(
        run.stdout.lines().any(|l| l.starts_with("# bind (unset)")),
        "{}",
        run.stdout
    );
}

#[test]
fn config_prints_toml_that_reads_back_as_the_same_settings() {
    let dir = TempDir::new("settings-roundtrip");
    let plugin = testapps();
    let run = host(
        &dir,
        &[],
        &[
            "config",
            &plugin,
            "-w",
            "4",
            "--app-arg",
            "quote=say \"hi\"",
            "--access-logfile",
            "-",
            "--reload",
            "--log-level",
            "debug",
        ],
    );
    assert!(run.status.success(), "{run:#?}");
    fs::write(dir.join("again.toml"), &run.stdout).unwrap();
    let again = host(&dir, &[], &["config", "-c", "again.toml"]);
    assert!(again.status.success(), "{again:#?}");
    let mut keys = 0;
    for line in run.stdout.lines().filter(|l| !l.starts_with('#')) {
        let key = line.split(" = ").next().unwrap();
        let (before, _) = setting(&run.stdout, key);
        let (after, source) = setting(&again.stdout, key);
        assert_eq!(before, after, "{key}:\n{}\n{}", run.stdout, again.stdout);
        assert!(source.starts_with("again.toml:"), "{key}: {source}");
        keys += 1;
    }
    assert!(keys > 20, "every setting is printed:\n{}", run.stdout);
    assert_eq!(setting(&run.stdout, "plugin").0, format!("\"{plugin}\""));
    assert_eq!(setting(&run.stdout, "reload").0, "true");
}

/// Each kind of bad file: exit 2, one `error:` line naming file, line, key.
#[test]
fn a_bad_file_is_one_line_naming_file_line_and_key() {
    let dir = TempDir::new("settings-errors");
    let cases: &[(&str, &str)] = &[
        // (file, what the error line must contain)
        ("workers = 2\ntimeout = \n", "bad.toml:2: key 'timeout': not TOML"),
        ("workers = 2\n\nwrokers = 3\n", "bad.toml:3: key 'wrokers': not a setting (did you mean 'workers'?)"),
        ("keepalive = 5\n", "bad.toml:1: key 'keepalive': not a setting (did you mean 'keep-alive'?)"),
        ("worker_class = \"gevent\"\n", "bad.toml:1: key 'worker_class': not a setting: a gunicorn setting"),
        ("workers = \"4\"\n", "bad.toml:1: key 'workers': expected an integer, found a string"),
        ("reload = 1\n", "bad.toml:1: key 'reload': expected true or false, found an integer"),
        ("bind = 8000\n", "bad.toml:1: key 'bind': expected a string"),
        (
            "[app-arg]\na = \"x\"\nb = [1]\n",
            "bad.toml:3: key 'app-arg.b': expected a string, found an array",
        ),
        ("workers = 0\n", "bad.toml:1: key 'workers': invalid value '0'"),
        ("log_level = \"loud\"\n", "bad.toml:1: key 'log_level': invalid value 'loud'"),
        ("config = \"other.toml\"\n", "bad.toml:1: key 'config': a config file cannot name another"),
        (
            "body-temp-dir = \"/tmp\"\nno-request-buffering = true\n",
            "bad.toml:1: key 'body-temp-dir' conflicts with key 'no-request-buffering' (set by bad.toml:2)",
        ),
    ];
    for (text, expected) in cases {
        fs::write(dir.join("bad.toml"), text).unwrap();
        for cmd in ["config", "serve", "check"] {
            let run = host(&dir, &[], &[cmd, "-c", "bad.toml"]);
            let line = run.error_line();
            assert!(line.contains(expected), "{cmd} with {text:?}: {line}");
            assert_eq!(run.status.code(), Some(2), "{cmd} with {text:?}: {run:#?}");
        }
    }
    // A conflict between the file and a flag names both sources.
    fs::write(dir.join("bad.toml"), "no-request-buffering = true\n").unwrap();
    let run = host(
        &dir,
        &[],
        &["config", "-c", "bad.toml", "--body-temp-dir", "/tmp"],
    );
    let line = run.error_line();
    assert!(
        line.contains("bad.toml:1: key 'no-request-buffering' conflicts with key 'body-temp-dir' (set by command line)"),
        "{line}"
    );
    assert_eq!(run.status.code(), Some(2));
    let run = host(&dir, &[("HOST_ARGS", "--workers 'two")], &["config"]);
    assert!(
        run.error_line().contains("$HOST_ARGS: a ' is not closed"),
        "{run:#?}"
    );
    assert_eq!(run.status.code(), Some(2));
}

#[test]
fn check_validates_the_file_then_its_plugin() {
    let dir = TempDir::new("settings-check");
    let plugin = testapps();
    fs::write(
        dir.join("host.toml"),
        format!("plugin = \"{plugin}\"\nworkers = 2\n"),
    )
    .unwrap();
    let run = host(&dir, &[], &["check", "-c", "host.toml"]);
    assert!(run.status.success(), "{run:#?}");
    assert!(run.stdout.contains("config: host.toml (valid)"), "{run:#?}");
    assert!(
        run.stdout.contains(&format!("plugin: {plugin}")),
        "{run:#?}"
    );
    assert!(run.stdout.contains("abi: "), "{run:#?}");
    // A file without a plugin: the one named on the command line.
    fs::write(dir.join("host.toml"), "workers = 2\n").unwrap();
    let run = host(&dir, &[], &["check", "-c", "host.toml", &plugin]);
    assert!(run.status.success(), "{run:#?}");
    let run = host(&dir, &[], &["check", "-c", "host.toml"]);
    assert!(run.error_line().contains("no plugin"), "{run:#?}");
    assert_eq!(run.status.code(), Some(2));
}

/// A served site whose settings are in `host.toml`.
struct Site {
    dir: TempDir,
    config: std::path::PathBuf,
    pidfile: String,
}

impl Site {
    fn new(label: &str) -> Site {
        let dir = TempDir::new(label);
        let config = dir.join("host.toml");
        let pidfile = path_str(&dir.join("host.pid")).to_owned();
        Site {
            dir,
            config,
            pidfile,
        }
    }

    fn write(&self, settings: &str) {
        let text = format!(
            "plugin = \"{}\"\npid = \"{}\"\nsettle-period = 0\n{settings}",
            testapps(),
            self.pidfile
        );
        fs::write(&self.config, text).unwrap();
    }

    fn reload(&self) -> Finished {
        host(&self.dir, &[], &["reload", "-p", &self.pidfile])
    }
}

/// Asks until `GET target` answers `body`, as it does once every worker
/// of a rolling reload has replaced the old ones.
fn wait_for_body(server: &Server, target: &str, body: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = client::get(server.addr(), target).text();
        if got == body {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "GET {target} still answers {got:?}, not {body:?}; log:\n{}",
            server.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Asks `host status` until it says `wanted` of the master and its
/// workers are `ready` ready ones of generation `generation`, and no other.
fn wait_for_status(site: &Site, wanted: &str, ready: usize, generation: u32) -> String {
    let deadline = Instant::now() + TIMEOUT;
    let worker = format!(" generation {generation} ready");
    loop {
        let run = host(&site.dir, &[], &["status", "-p", &site.pidfile]);
        let text = run.stdout;
        let mut lines = text.lines();
        let master = lines.next().unwrap_or("");
        let workers: Vec<&str> = lines.collect();
        if master.contains(wanted)
            && workers.len() == ready
            && workers.iter().all(|w| w.ends_with(&worker))
        {
            return text;
        }
        assert!(Instant::now() < deadline, "status stays:\n{text}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hup_rereads_the_file_and_applies_workers_and_app_args_live() {
    let site = Site::new("settings-hup");
    site.write("bind = \"127.0.0.1:0\"\nworkers = 1\napp-arg = [\"a=1\"]\n");
    let server = server::serve_config(&site.config).start();
    wait_for_body(&server, "/config", "a=1\n");
    wait_for_status(&site, "workers 1", 1, 1);

    site.write("bind = \"127.0.0.1:1\"\nworkers = 2\n\n[app-arg]\na = \"2\"\nb = 3\n");
    let run = site.reload();
    assert!(run.status.success(), "{run:#?}\n{}", server.logs());
    // The bind cannot change while serving: named, not applied.
    assert!(
        run.stdout.contains("reloaded: ")
            && run.stdout.contains("not applied until a restart: bind"),
        "{run:#?}"
    );
    server.wait_for_log("HUP: settings changed: workers, app-arg", TIMEOUT);
    server.wait_for_log(
        "HUP: bind changed but cannot while the server runs",
        TIMEOUT,
    );
    wait_for_body(&server, "/config", "a=2\nb=3\n");
    wait_for_status(&site, "generation 2 workers 2", 2, 2);
    // Still the address it started on.
    assert_eq!(client::get(server.addr(), "/config").status, 200);
}

#[test]
fn hup_with_a_broken_file_keeps_the_running_settings() {
    let site = Site::new("settings-hup-broken");
    site.write("bind = \"127.0.0.1:0\"\napp-arg = [\"a=1\"]\n");
    let server = server::serve_config(&site.config).start();
    wait_for_body(&server, "/config", "a=1\n");

    site.write("bind = \"127.0.0.1:0\"\napp-arg = [\"a=2\"]\nworkers = \"two\"\n");
    let run = site.reload();
    let line = run.error_line();
    let config = path_str(&site.config);
    assert!(
        line.contains(&format!("{config}:6: key 'workers': expected an integer")),
        "{line}"
    );
    server.wait_for_log(
        &format!("HUP: {config}:6: key 'workers': expected an integer, found a string; the settings in force stay"),
        TIMEOUT,
    );
    // Nothing changed: the same workers, the same app args.
    assert_eq!(client::get(server.addr(), "/config").text(), "a=1\n");
    wait_for_status(&site, "generation 1 workers 1", 1, 1);

    // Fixed, the next HUP applies it.
    site.write("bind = \"127.0.0.1:0\"\napp-arg = [\"a=2\"]\n");
    let run = site.reload();
    assert!(run.status.success(), "{run:#?}");
    wait_for_body(&server, "/config", "a=2\n");
}
