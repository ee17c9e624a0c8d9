//! `host new`: the projects it creates build with their one command, pass
//! their own tests, and serve their hello answer from the real host; what
//! it refuses, it refuses with one line, exit status 2, and nothing written.
//!
//! The Rust project is built offline (from the registry cache the workspace
//! build filled) into a target directory shared by every run of this test,
//! so its dependencies are compiled once.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::artifacts::{self, TempDir};
use integration_tests::client::Response;
use integration_tests::server::{self, Finished, Server};

fn new(dir: &Path, args: &[&str]) -> Finished {
    let mut all = vec!["new"];
    all.extend_from_slice(args);
    server::run_in(dir, all)
}

/// Runs `program args` in `dir` with `envs`; panics with its output if it
/// fails. Returns its stdout.
fn must_run(dir: &Path, program: &str, args: &[&str], envs: &[(&str, &Path)]) -> String {
    let out = Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_os_str())))
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`{program} {}` in {} failed ({}):\n{stdout}\n{}",
        args.join(" "),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn get(server: &Server, target: &str) -> Response {
    let mut conn = server.connect();
    conn.send(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    conn.read_response()
}

/// Where the generated Rust projects build: shared between runs.
fn shared_target() -> PathBuf {
    artifacts::target_dir().join("scaffold-target")
}

#[test]
fn a_new_rust_project_builds_passes_its_test_and_serves() {
    let dir = TempDir::new("new-rust");
    let made = new(&dir.path, &["hello-rs"]);
    assert!(made.status.success(), "{made:#?}");
    assert!(made.stdout.contains("cargo build --release"), "{made:#?}");
    let project = dir.join("hello-rs");
    let toml = fs::read_to_string(project.join("Cargo.toml")).unwrap();
    let abi = fs::canonicalize(artifacts::repo_root().join("abi")).unwrap();
    assert!(
        toml.contains(&format!("abi = {{ path = \"{}\" }}", abi.display())),
        "{toml}"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target = shared_target();
    let envs = [("CARGO_TARGET_DIR", target.as_path())];
    must_run(&project, &cargo, &["build", "--offline"], &envs);
    must_run(&project, &cargo, &["test", "--offline"], &envs);
    let library = target.join("debug/libhello_rs.so");
    let server = server::serve(&library).start();
    let resp = get(&server, "/");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "Hello, World!\n")
    );
    let check = server::run(["check", &library.display().to_string()]);
    assert!(check.stdout.contains("name: hello-rs"), "{check:#?}");
}

#[test]
fn a_new_axum_project_builds_passes_its_test_and_serves() {
    let dir = TempDir::new("new-axum");
    let made = new(&dir.path, &["hello-axum", "--lang", "axum"]);
    assert!(made.status.success(), "{made:#?}");
    assert!(made.stdout.contains("cargo build --release"), "{made:#?}");
    let project = dir.join("hello-axum");
    let toml = fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(toml.contains(r#"features = ["tower"]"#), "{toml}");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target = shared_target();
    let envs = [("CARGO_TARGET_DIR", target.as_path())];
    must_run(&project, &cargo, &["build", "--offline"], &envs);
    let tests = must_run(&project, &cargo, &["test", "--offline"], &envs);
    assert!(tests.contains("3 passed"), "{tests}");
    let library = target.join("debug/libhello_axum.so");
    let server = server::serve(&library).start();
    let resp = get(&server, "/");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "Hello, World!\n")
    );
    let resp = get(&server, "/hello?name=Ann");
    assert_eq!((resp.status, resp.text().as_str()), (200, "Hello, Ann!\n"));
    assert_eq!(get(&server, "/nope").status, 404);
}

#[test]
fn a_new_c_project_builds_passes_its_test_and_serves() {
    let dir = TempDir::new("new-c");
    let made = new(&dir.path, &["hello-c", "--lang", "c"]);
    assert!(made.status.success(), "{made:#?}");
    let project = dir.join("hello-c");
    // Self-contained: the headers are copies of this tree's.
    for header in ["nwsgi.h", "nwsgi_util.h"] {
        assert_eq!(
            fs::read(project.join("include").join(header)).unwrap(),
            fs::read(artifacts::repo_root().join("abi/include").join(header)).unwrap(),
            "{header}"
        );
    }
    must_run(&project, "make", &[], &[]);
    let host = artifacts::host();
    let tested = must_run(&project, "make", &["test"], &[("NWSGI_HOST", &host)]);
    let passed = tested.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(passed, 4, "{tested}");
    assert!(!tested.contains("FAIL"), "{tested}");
    let server = server::serve(project.join("libhello-c.so")).start();
    let resp = get(&server, "/");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "Hello, World!\n")
    );
    let resp = get(&server, "/?name=J%C3%A9r%C3%B4me");
    assert_eq!(resp.text(), "Hello, Jérôme!\n");
}

#[test]
fn the_c_projects_test_fails_when_the_answer_is_wrong() {
    let dir = TempDir::new("new-c-broken");
    assert!(new(&dir.path, &["broken", "--lang", "c"]).status.success());
    let project = dir.join("broken");
    let app = fs::read_to_string(project.join("app.c")).unwrap();
    fs::write(
        project.join("app.c"),
        app.replace("\"Hello, \"", "\"Howdy, \""),
    )
    .unwrap();
    let out = Command::new("make")
        .arg("test")
        .env("NWSGI_HOST", artifacts::host())
        .current_dir(&project)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("FAIL GET /: got 'Howdy, World!"),
        "{stderr}"
    );
}

/// The refusal: exit 2, one line on stderr, nothing on stdout.
fn assert_refused(run: &Finished, says: &str) {
    assert_eq!(run.status.code(), Some(2), "{run:#?}");
    let line = run.error_line();
    assert!(line.contains(says), "{line:?} should say {says:?}");
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
}

#[test]
fn host_new_refuses_what_it_cannot_make() {
    let dir = TempDir::new("new-refused");
    for name in ["9lives", "a/b", "..", "my app", "std", "abi", ""] {
        assert_refused(&new(&dir.path, &[name]), "invalid project name");
    }
    fs::create_dir(dir.join("taken")).unwrap();
    fs::write(dir.join("taken/keep.txt"), "mine").unwrap();
    assert_refused(&new(&dir.path, &["taken", "--lang", "c"]), "not empty");
    assert_eq!(
        fs::read_to_string(dir.join("taken/keep.txt")).unwrap(),
        "mine"
    );
    fs::write(dir.join("afile"), "x").unwrap();
    assert_refused(&new(&dir.path, &["afile"]), "already exists");
    assert_refused(
        &new(&dir.path, &["nowhere", "--abi-path", "/nonexistent"]),
        "no abi crate at /nonexistent",
    );
    assert_refused(
        &new(&dir.path, &["cabi", "--lang", "c", "--abi-path", "/tmp"]),
        "--abi-path is for --lang rust and axum",
    );
    assert_refused(&new(&dir.path, &["x", "--lang", "cobol"]), "cobol");
    // Nothing was created by any of them.
    let mut left: Vec<String> = fs::read_dir(&dir.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["afile", "taken"]);
    // An empty directory is taken as it is.
    fs::create_dir(dir.join("empty")).unwrap();
    let made = new(&dir.path, &["empty", "--lang", "c"]);
    assert!(made.status.success(), "{made:#?}");
    assert!(dir.join("empty/app.c").is_file());
}
