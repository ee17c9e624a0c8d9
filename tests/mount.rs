//! Several apps in one server (`--mount PREFIX=PLUGIN`): routing by the
//! longest prefix on whole path segments with PEP 3333's SCRIPT_NAME /
//! PATH_INFO split, 404 where nothing is mounted, per-mount init pairs,
//! bad values refused in one line, an init failure naming its mount, an
//! axum app seeing paths relative to its mount, `host check` of each
//! mount, and reloads that swap one mount while the others keep their
//! builds.
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration_tests::artifacts::{self, TempDir};
use integration_tests::client::{self, Response};
use integration_tests::server::{self, Server};
use integration_tests::TIMEOUT;

/// `host serve --mount ... <args>` bound to a free port: no positional
/// plugin (the config file, empty but for the bind, names none).
fn serve_mounts(dir: &TempDir, args: &[&str]) -> Server {
    let config = dir.join("host.toml");
    fs::write(&config, "bind = [\"127.0.0.1:0\"]\n").unwrap();
    server::serve_config(&config).args(args).start()
}

fn echo() -> String {
    path_str(&artifacts::rust_plugin("echo"))
}

fn testapps() -> String {
    path_str(&artifacts::rust_plugin("testapps"))
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_owned()
}

/// The environ echo lists for `target` (its query must be `__environ`,
/// or its PATH_INFO start with `/__environ`): KEY=VALUE lines.
fn environ(server: &Server, target: &str) -> Vec<(String, String)> {
    let r = client::get(server.addr(), target);
    assert_eq!(r.status, 200, "GET {target}: {}", r.text());
    r.text()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn var<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == key)
        .map_or_else(|| panic!("no {key} in {env:?}"), |(_, v)| v.as_str())
}

/// (SCRIPT_NAME, PATH_INFO) of `target`.
fn split(server: &Server, target: &str) -> (String, String) {
    let env = environ(server, target);
    (
        var(&env, "SCRIPT_NAME").to_owned(),
        var(&env, "PATH_INFO").to_owned(),
    )
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[test]
fn longest_prefix_on_whole_segments_splits_script_name_and_path_info() {
    let dir = TempDir::new("mount-routing");
    let echo = echo();
    // One library at three mounts: each is loaded as an app of its own.
    let server = serve_mounts(
        &dir,
        &[
            "--mount",
            &format!("/api={echo}"),
            "--mount",
            &format!("/api/v2/={echo}"),
            "--mount",
            &format!("/={echo}"),
        ],
    );
    // Exact prefix: PATH_INFO is empty; a trailing slash is PATH_INFO's.
    assert_eq!(split(&server, "/api?__environ"), pair("/api", ""));
    assert_eq!(split(&server, "/api/?__environ"), pair("/api", "/"));
    assert_eq!(split(&server, "/api/x/y?__environ"), pair("/api", "/x/y"));
    // The longest prefix wins; "/api/v2" was given with a trailing '/'.
    assert_eq!(split(&server, "/api/v2/t?__environ"), pair("/api/v2", "/t"));
    assert_eq!(split(&server, "/api/v2?__environ"), pair("/api/v2", ""));
    assert_eq!(split(&server, "/api/v22?__environ"), pair("/api", "/v22"));
    // Matched against the decoded path; RAW_PATH_INFO is the raw rest.
    assert_eq!(
        split(&server, "/%61pi/a%2Fb?__environ"),
        pair("/api", "/a/b")
    );
    let env = environ(&server, "/%61pi/a%2Fb?__environ");
    assert_eq!(var(&env, "RAW_PATH_INFO"), "/a%2Fb");
    let env = environ(&server, "/api?__environ");
    assert_eq!(var(&env, "RAW_PATH_INFO"), "");
    let env = environ(&server, "/x%2Fy?__environ");
    assert_eq!(var(&env, "RAW_PATH_INFO"), "/x%2Fy");
    assert_eq!(var(&env, "PATH_INFO"), "/x/y");
    let env = environ(&server, "/api/v2/%C3%A9?__environ");
    assert_eq!(var(&env, "RAW_PATH_INFO"), "/%C3%A9");
    // "/apix" is not under "/api": the root app gets all of it.
    assert_eq!(split(&server, "/apix?__environ"), pair("", "/apix"));
    assert_eq!(split(&server, "/apix/y?__environ"), pair("", "/apix/y"));
    assert_eq!(split(&server, "/?__environ"), pair("", "/"));
}

#[test]
fn without_a_root_mount_an_unmounted_path_is_404() {
    let dir = TempDir::new("mount-404");
    let server = serve_mounts(&dir, &["--mount", &format!("/api={}", echo())]);
    assert_eq!(split(&server, "/api/x?__environ"), pair("/api", "/x"));
    for target in ["/", "/apix", "/other/api", "/%61pix"] {
        let r = client::get(server.addr(), target);
        assert_eq!(r.status, 404, "GET {target}: {r:#?}");
    }
    // The server still serves after them.
    assert_eq!(split(&server, "/api?__environ"), pair("/api", ""));
    // A 404 keeps the connection, its body skipped, as an app's would.
    let mut conn = server.connect();
    conn.send(b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    conn.send(b"GET /api/after?__environ HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = conn.read_response();
    assert_eq!(r.status, 404, "{r:#?}");
    assert!(!r.connection_has("close"), "{r:#?}");
    let r = conn.read_response();
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.text().contains("PATH_INFO=/after\n"), "{}", r.text());
    let mut conn = server.connect();
    conn.send(b"HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = conn.read_head_response();
    assert_eq!(r.status, 404, "{r:#?}");
}

#[test]
fn every_app_gets_the_app_args_and_its_own_mount_args() {
    let dir = TempDir::new("mount-args");
    let testapps = testapps();
    let server = serve_mounts(
        &dir,
        &[
            "--mount",
            &format!("/a={testapps}"),
            "--mount",
            &format!("/b={testapps}:app"),
            "--app-arg",
            "all=1",
            "--mount-arg",
            "/a:who=a",
            "--mount-arg",
            "/b/:who=b",
        ],
    );
    assert_eq!(
        client::get(server.addr(), "/a/config").text(),
        "all=1\nwho=a\n"
    );
    assert_eq!(
        client::get(server.addr(), "/b/config").text(),
        "all=1\nwho=b\n"
    );
}

#[test]
fn a_positional_plugin_is_mounted_at_the_root() {
    let server = server::serve(artifacts::rust_plugin("testapps"))
        .args(["--mount", &format!("/api={}", echo())])
        .start();
    assert_eq!(split(&server, "/api/q?__environ"), pair("/api", "/q"));
    let r = client::get(server.addr(), "/environ");
    assert!(r.text().contains("SCRIPT_NAME=\n"), "{}", r.text());
}

#[test]
fn bad_mounts_are_refused_in_one_line_with_exit_2() {
    let echo = echo();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--mount".into(), format!("api={echo}")], "'api'"),
        (vec!["--mount".into(), format!("/a//b={echo}")], "'/a//b'"),
        (
            vec!["--mount".into(), format!("/a/../b={echo}")],
            "'/a/../b'",
        ),
        (vec!["--mount".into(), format!("/a/.={echo}")], "'/a/.'"),
        (vec!["--mount".into(), format!("/a?b={echo}")], "'/a?b'"),
        (vec!["--mount".into(), format!("/a#={echo}")], "'/a#'"),
        (vec!["--mount".into(), format!("/a%20={echo}")], "'/a%20'"),
        (vec!["--mount".into(), "/api".into()], "'/api'"),
        (
            vec![
                "--mount".into(),
                format!("/a={echo}"),
                "--mount".into(),
                format!("/a/={echo}"),
            ],
            "'/a' is mounted twice",
        ),
        (
            vec![echo.clone(), "--mount".into(), format!("/={echo}")],
            "already mounted at '/'",
        ),
        (
            vec![
                "--mount".into(),
                format!("/a={echo}"),
                "--mount-arg".into(),
                "/b:k=v".into(),
            ],
            "'/b:k=v'",
        ),
    ];
    for (args, named) in cases {
        let mut argv: Vec<String> = vec!["serve".into(), "-b".into(), "127.0.0.1:0".into()];
        argv.extend(args.iter().cloned());
        let run = server::run(&argv);
        let line = run.error_line();
        assert_eq!(run.status.code(), Some(2), "{args:?}: {run:#?}");
        assert!(line.contains(named), "{args:?}: {line}");
    }
}

#[test]
fn an_init_failure_names_the_mount_and_the_plugin() {
    let testapps = testapps();
    let run = server::run([
        "serve",
        "-b",
        "127.0.0.1:0",
        "--mount",
        &format!("/ok={testapps}"),
        "--mount",
        &format!("/bad={testapps}"),
        "--mount-arg",
        "/bad:fail=1",
    ]);
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    let line = run.error_line();
    assert!(line.contains("mount /bad:"), "{line}");
    assert!(line.contains(&testapps), "{line}");
    assert!(line.contains("init refused: fail=1"), "{line}");
}

#[test]
fn an_axum_app_routes_relative_to_its_mount() {
    let dir = TempDir::new("mount-axum");
    let server = serve_mounts(
        &dir,
        &[
            "--mount",
            &format!("/api={}", path_str(&artifacts::rust_plugin("todo_axum"))),
            "--mount",
            &format!("/={}", echo()),
        ],
    );
    let r = client::get(server.addr(), "/api/health");
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"), "{r:#?}");
    let r = client::get(server.addr(), "/api/todos");
    assert_eq!(r.status, 200, "{r:#?}");
    assert!(r.text().starts_with('['), "{}", r.text());
    let r = client::get(server.addr(), "/%61pi/health");
    assert_eq!(r.status, 200, "{r:#?}");
    // Not the app's: the root app (echo) answers.
    assert_eq!(split(&server, "/health?__environ"), pair("", "/health"));
}

#[test]
fn check_checks_every_mount() {
    let (echo, testapps) = (echo(), testapps());
    let run = server::run([
        "check",
        "--mount",
        &format!("/api={echo}"),
        "--mount",
        &format!("/={testapps}"),
    ]);
    assert!(run.status.success(), "{run:#?}");
    assert!(run.stdout.contains("mount: /api\n"), "{}", run.stdout);
    assert!(run.stdout.contains("mount: /\n"), "{}", run.stdout);
    assert_eq!(run.stdout.matches("abi: ").count(), 2, "{}", run.stdout);
    let run = server::run([
        "check",
        "--mount",
        &format!("/api={echo}"),
        "--mount",
        "/x=/nonexistent/libx.so",
    ]);
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    assert!(run.error_line().contains("mount /x:"), "{run:#?}");
}

/// Two mounts of the `swap` fixture, each from a file of its own, with a
/// pidfile: what a deploy of one app replaces.
struct Site {
    dir: TempDir,
    pidfile: PathBuf,
}

impl Site {
    fn new(label: &str) -> Site {
        let dir = TempDir::new(label);
        for sub in ["live", "stage"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let site = Site {
            pidfile: dir.join("host.pid"),
            dir,
        };
        site.deploy("a", "a1");
        site.deploy("b", "b1");
        site
    }

    fn file(&self, app: &str) -> String {
        path_str(&self.dir.join(format!("live/lib{app}.so")))
    }

    /// Builds `build` and renames it over app `app`'s file.
    fn deploy(&self, app: &str, build: &str) {
        let stage = self.dir.join(format!("stage/lib{app}.so"));
        artifacts::swap_plugin(build, &[], &stage);
        fs::rename(&stage, self.file(app)).unwrap();
    }

    fn serve(&self, extra: &[&str]) -> Server {
        let (a, b) = (self.file("a"), self.file("b"));
        let pid = path_str(&self.pidfile);
        let mut args = vec![
            "--mount".to_owned(),
            format!("/a={a}"),
            "--mount".to_owned(),
            format!("/b={b}"),
            "-p".to_owned(),
            pid,
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = self.dir.join("host.toml");
        fs::write(&config, "bind = [\"127.0.0.1:0\"]\n").unwrap();
        server::serve_config(&config).args(&args).start()
    }

    fn status(&self) -> String {
        let run = server::run(["status", "-p", &path_str(&self.pidfile)]);
        assert!(run.status.success(), "{run:#?}");
        run.stdout
    }

    /// `mount PREFIX build HASH generation G` for each mount.
    fn mount_builds(&self) -> Vec<String> {
        self.status()
            .lines()
            .filter(|l| l.starts_with("mount "))
            .map(|l| l.split(" plugin ").next().unwrap().to_owned())
            .collect()
    }
}

/// The build `GET /PREFIX/` answers with, once every worker is the new
/// generation's (the swap fixture says `build <id> pid <pid>`).
fn build_of(server: &Server, prefix: &str) -> String {
    let r: Response = client::get(server.addr(), &format!("{prefix}/"));
    assert_eq!(r.status, 200, "{r:#?}");
    let text = r.text();
    text.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn wait_for_build(server: &Server, prefix: &str, build: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while build_of(server, prefix) != build {
        assert!(Instant::now() < deadline, "{prefix} never served {build}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_reload_swaps_only_the_mount_whose_file_changed() {
    let site = Site::new("mount-reload");
    let server = site.serve(&[]);
    assert_eq!(build_of(&server, "/a"), "a1");
    assert_eq!(build_of(&server, "/b"), "b1");
    let before = site.mount_builds();
    assert_eq!(before.len(), 2, "{before:?}");

    site.deploy("a", "a2");
    let run = server::run(["reload", "-p", &path_str(&site.pidfile)]);
    assert!(run.status.success(), "{run:#?}");
    wait_for_build(&server, "/a", "a2");
    assert_eq!(build_of(&server, "/b"), "b1");
    let after = site.mount_builds();
    assert_ne!(after[0], before[0], "/a should have a new build");
    assert_eq!(after[1], before[1], "/b keeps its build and generation");
    server.wait_for_log("/a build", TIMEOUT);

    // `host reload --mount /b`: /a changed on disk too, but only /b is
    // read again.
    site.deploy("a", "a3");
    site.deploy("b", "b2");
    let run = server::run(["reload", "-p", &path_str(&site.pidfile), "--mount", "/b"]);
    assert!(run.status.success(), "{run:#?}");
    wait_for_build(&server, "/b", "b2");
    assert_eq!(build_of(&server, "/a"), "a2");
    let last = site.mount_builds();
    assert_eq!(last[0], after[0], "/a keeps the build it ran");
    // The JSON status (what /status answers) lists the mounts too.
    let run = server::run(["status", "--json", "-p", &path_str(&site.pidfile)]);
    assert!(run.status.success(), "{run:#?}");
    let b_build = last[1].split_whitespace().nth(3).unwrap();
    assert!(
        run.stdout.contains(&format!("\"build\":\"{b_build}\""))
            && run.stdout.contains("\"prefix\":\"/b\""),
        "{}",
        run.stdout
    );

    let run = server::run(["reload", "-p", &path_str(&site.pidfile), "--mount", "/c"]);
    assert!(
        run.error_line().contains("no app is mounted at '/c'"),
        "{run:#?}"
    );
}

#[test]
fn a_failing_new_build_of_one_mount_is_refused_and_the_old_set_serves() {
    let site = Site::new("mount-refused");
    let server = site.serve(&[]);
    let before = site.mount_builds();
    let stage = site.dir.join("stage/liba.so");
    artifacts::swap_plugin("a-bad", &["INIT_FAIL"], &stage);
    fs::rename(&stage, site.file("a")).unwrap();
    let run = server::run(["reload", "-p", &path_str(&site.pidfile)]);
    let line = run.error_line();
    assert!(line.contains("mount /a:"), "{line}");
    assert!(line.contains("swap init refused"), "{line}");
    server.wait_for_log("mount /a:", TIMEOUT);
    assert_eq!(build_of(&server, "/a"), "a1");
    assert_eq!(build_of(&server, "/b"), "b1");
    assert_eq!(site.mount_builds(), before);
}

#[test]
fn watch_mode_watches_every_mount() {
    let site = Site::new("mount-watch");
    let server = site.serve(&["--reload"]);
    site.deploy("b", "b2");
    wait_for_build(&server, "/b", "b2");
    assert_eq!(build_of(&server, "/a"), "a1");
}

#[test]
fn the_access_log_has_the_whole_path_and_the_mount() {
    let dir = TempDir::new("mount-access");
    let echo = echo();
    let server = serve_mounts(
        &dir,
        &[
            "--mount",
            &format!("/api={echo}"),
            "--mount",
            &format!("/={echo}"),
            "--access-logfile",
            "-",
            "--access-log-format",
            "path=%(U)s mount=%({script_name}e)s",
        ],
    );
    client::get(server.addr(), "/api/x?__environ");
    client::get(server.addr(), "/y?__environ");
    let out = server.stdout.wait_for("path=/y", TIMEOUT);
    assert!(out.contains("path=/api/x mount=/api\n"), "{out}");
    assert!(out.contains("path=/y mount=-\n"), "{out}");
}

#[test]
fn a_config_file_mounts_with_a_table_and_a_list() {
    let dir = TempDir::new("mount-config");
    let (echo, testapps) = (echo(), testapps());
    let config = dir.join("host.toml");
    fs::write(
        &config,
        format!(
            "bind = [\"127.0.0.1:0\"]\nmount-arg = [\"/t:who=t\"]\n\n[mount]\n\"/api\" = \"{echo}\"\n\"/t\" = \"{testapps}\"\n"
        ),
    )
    .unwrap();
    let server = server::serve_config(&config).start();
    assert_eq!(split(&server, "/api/z?__environ"), pair("/api", "/z"));
    assert_eq!(client::get(server.addr(), "/t/config").text(), "who=t\n");
    let run = server::run(["config", "-c", &path_str(&config)]);
    assert!(
        run.stdout
            .contains(&format!("mount = [\"/api={echo}\", \"/t={testapps}\"]")),
        "{}",
        run.stdout
    );
}
