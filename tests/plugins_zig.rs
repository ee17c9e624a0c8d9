//! `plugins/hello-zig` built with the Zig toolchain from PyPI (`pip install
//! ziglang`, run as `python3 -m ziglang`) and served by the real host.
//! Zig translates `nwsgi.h` and `nwsgi_util.h` itself (`zig translate-c`),
//! so the plugin uses the header's types and helpers without bindings
//! written by hand. Skipped, saying so, where ziglang is not installed
//! (`.ci/run` installs it).

use std::path::Path;
use std::process::Command;

use integration_tests::artifacts;
use integration_tests::client;
use integration_tests::server;

/// `python3 -m ziglang ARGS`, failing with its output.
fn zig(args: &[&str], cache: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("python3")
        .args(["-m", "ziglang"])
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .current_dir(artifacts::repo_root())
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "zig {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn zig_installed() -> bool {
    Command::new("python3")
        .args(["-m", "ziglang", "version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The two steps of the guide's build: translate the headers to a Zig
/// module, then build the shared library importing it as `nwsgi`.
fn build(dir: &Path) -> std::path::PathBuf {
    // Kept between runs (the C library Zig links against is built once).
    let cache = artifacts::target_dir().join("zig-cache");
    let module = dir.join("nwsgi.zig");
    let translated = zig(
        &[
            "translate-c",
            "-lc",
            "-I",
            "abi/include",
            "abi/include/nwsgi_util.h",
        ],
        &cache,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&module, translated).expect("writing the translated header");
    let lib = dir.join("libhello_zig.so");
    let root = "-Mroot=plugins/hello-zig/hello.zig".to_owned();
    let nwsgi = format!("-Mnwsgi={}", module.display());
    let emit = format!("-femit-bin={}", lib.display());
    let args = [
        "build-lib",
        "-dynamic",
        "-O",
        "ReleaseSmall",
        "-lc",
        "--dep",
        "nwsgi",
        &root,
        &nwsgi,
        &emit,
    ];
    zig(&args, &cache).unwrap_or_else(|e| panic!("{e}"));
    lib
}

#[test]
fn hello_zig_builds_exports_app_and_serves() {
    if !zig_installed() {
        eprintln!("SKIPPED: `python3 -m ziglang` is not installed (pip install ziglang)");
        return;
    }
    // Fixed paths, so that Zig's cache finds its earlier build.
    let dir = artifacts::target_dir().join("zig-hello");
    std::fs::create_dir_all(&dir).expect("creating the build directory");
    let lib = build(&dir);
    let check = server::run(["check", lib.to_str().expect("a UTF-8 path")]);
    assert!(check.status.success(), "{check:#?}");
    assert!(check.stdout.contains("hello-zig"), "{}", check.stdout);

    let server = server::serve(&lib).start();
    let get = |target: &str| {
        let request = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
        client::request(server.addr(), request.as_bytes())
    };
    let hello = get("/");
    assert_eq!(
        (hello.status, hello.text().as_str()),
        (200, "Hello, World!\n")
    );
    assert_eq!(
        hello.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // nwsgi_query_get decodes `+` and `%XX`.
    let ann = get("/?x=1&name=Ann+Lee%21");
    assert_eq!(
        (ann.status, ann.text().as_str()),
        (200, "Hello, Ann Lee!!\n")
    );
    let long = get(&format!("/?name={}", "x".repeat(80)));
    assert_eq!(
        (long.status, long.text().as_str()),
        (400, "name too long\n")
    );
    let post = client::request(
        server.addr(),
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        (post.status, post.reason.as_str()),
        (405, "Method Not Allowed")
    );
}
