//! C++ against the C header: `nwsgi.h` compiles alone in every C and C++
//! language mode with every warning an error, the usage example at its top
//! builds and exports `app` in each of them (also under
//! `-fvisibility=hidden`), `hello-cpp`, a C++ plugin with a body
//! iterator object and exceptions, and `helpers-cpp`, one written with
//! `nwsgi_util.h`, are served by the real host.
//!
//! Every compiler found is used: the default ones (`$CC`/`cc`,
//! `$CXX`/`c++`), and GCC and Clang if installed.

use std::fs;
use std::path::PathBuf;

use integration_tests::artifacts::{self, Compiler, Lang, TempDir, STRICT};
use integration_tests::client::{Chunk, Response};
use integration_tests::server::{self, plugin_spec, Server};
use integration_tests::TIMEOUT;

/// The language modes the header promises to work in.
const MODES: [(Lang, &[&str]); 2] = [
    (Lang::C, &["c11", "c17"]),
    (Lang::Cxx, &["c++11", "c++17", "c++20"]),
];

fn extension(lang: Lang) -> &'static str {
    match lang {
        Lang::C => "c",
        Lang::Cxx => "cpp",
    }
}

fn include_flag() -> String {
    format!("-I{}", artifacts::repo_root().join("abi/include").display())
}

/// One build of a source in one language mode with one compiler.
struct Build {
    compiler: Compiler,
    std: &'static str,
    output: PathBuf,
}

/// Compiles `source` (text) in every mode with every compiler, with the
/// [`STRICT`] flags: into a shared library each if `shared`, else only
/// checked (`-fsyntax-only`). Panics with every failing build's diagnostics
/// at once.
fn compile_everywhere(dir: &TempDir, source: &str, shared: bool) -> Vec<Build> {
    let mut builds = Vec::new();
    let mut failures = Vec::new();
    for (lang, stds) in MODES {
        let file = dir.join(format!("tu.{}", extension(lang)));
        fs::write(&file, source).unwrap();
        for compiler in Compiler::all(lang) {
            for &std in stds {
                let mut args = vec![format!("-std={std}"), include_flag()];
                args.extend(STRICT.iter().map(|f| (*f).to_owned()));
                let tag = format!("{}-{std}", compiler.name().replace(['/', ' '], "_"));
                let output = dir.join(format!("lib{tag}.so"));
                let result = if shared {
                    compiler.shared_library(&file, &args, &output)
                } else {
                    args.push("-fsyntax-only".to_owned());
                    args.push(file.display().to_string());
                    compiler.run(&args)
                };
                match result {
                    Ok(()) => builds.push(Build {
                        compiler: compiler.clone(),
                        std,
                        output,
                    }),
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} builds failed:\n\n{}",
        failures.len(),
        failures.len() + builds.len(),
        failures.join("\n\n")
    );
    let mut names: Vec<String> = builds.iter().map(|b| b.compiler.name()).collect();
    names.dedup();
    eprintln!("compiled {} ways, with {}", builds.len(), names.join(", "));
    builds
}

#[test]
fn the_header_alone_compiles_in_every_language_mode() {
    let dir = TempDir::new("header-alone");
    let builds = compile_everywhere(&dir, "#include \"nwsgi.h\"\n", false);
    // Two C modes and three C++ modes at least (the default compilers).
    assert!(builds.len() >= 5, "only {} builds", builds.len());
}

/// The usage example at the top of `nwsgi.h`: from its `#include` to the
/// end of its `app` definition, without the comment's ` *   ` margin.
fn header_example() -> String {
    let header = fs::read_to_string(artifacts::repo_root().join("abi/include/nwsgi.h")).unwrap();
    let mut example = String::new();
    let mut inside = false;
    for line in header.lines() {
        let code = line.strip_prefix(" *   ").unwrap_or(line);
        inside |= code == "#include \"nwsgi.h\"";
        if inside {
            example.push_str(code);
            example.push('\n');
            if code.trim_end().ends_with("\"myapp\");") {
                return example;
            }
        }
    }
    panic!("no usage example (from `#include \"nwsgi.h\"` to `\"myapp\");`) at the top of nwsgi.h");
}

#[test]
fn the_headers_example_exports_app_in_every_language_mode() {
    let dir = TempDir::new("header-example");
    let builds = compile_everywhere(&dir, &header_example(), true);
    for build in &builds {
        let spec = plugin_spec(&build.output, "app");
        let run = server::run(["check", spec.as_str()]);
        assert!(
            run.status.success() && run.stdout.contains("name: myapp"),
            "the example built by `{}` as {} does not load: {run:#?}",
            build.compiler.name(),
            build.std,
        );
    }
    // And a C++ build answers what the example says.
    let cxx = builds
        .iter()
        .find(|b| b.std == "c++17")
        .expect("a C++17 build");
    let server = server::serve(plugin_spec(&cxx.output, "app")).start();
    let resp = get(&server, "/");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "Hello"),
        "{}",
        resp.raw_head
    );
}

fn hello_cpp() -> Server {
    server::serve(plugin_spec(&artifacts::hello_cpp(), "app")).start()
}

fn get(server: &Server, target: &str) -> Response {
    let mut conn = server.connect();
    conn.send(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    conn.read_response()
}

#[test]
fn hello_cpp_answers_like_hello_c() {
    let cpp = hello_cpp();
    let c = server::serve(plugin_spec(&artifacts::hello_c(), "app")).start();
    for request in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"HEAD /any HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let head = request.starts_with(b"HEAD");
        let [from_cpp, from_c] = [&cpp, &c].map(|server| {
            let mut conn = server.connect();
            conn.send(request);
            let resp = if head {
                conn.read_head_response()
            } else {
                conn.read_response()
            };
            let date = resp.header("date").unwrap_or_default().to_owned();
            String::from_utf8_lossy(&resp.raw).replacen(&date, "<date>", 1)
        });
        assert_eq!(from_cpp, from_c, "left: hello-cpp, right: hello-c");
    }
    let resp = get(&cpp, "/");
    assert_eq!((resp.status, resp.text().as_str()), (200, "Hello, World!"));
    assert_eq!(resp.header("content-length"), Some("13"));
}

#[test]
fn hello_cpp_streams_from_its_counter_object() {
    let server = hello_cpp();
    let resp = get(&server, "/count?n=3");
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert!(resp.chunked && resp.complete, "{resp:?}");
    assert_eq!(resp.chunks, [&b"1\n"[..], b"2\n", b"3\n"]);
    let resp = get(&server, "/count?n=0");
    assert_eq!((resp.status, resp.body.len()), (200, 0), "{resp:?}");
}

#[test]
fn hello_cpp_catches_its_own_exceptions() {
    let server = hello_cpp();
    // Caught where expected: the parser's exceptions become a 400.
    for target in [
        "/count",
        "/count?n=abc",
        "/count?n=-1",
        "/count?n=1001",
        "/count?n=99999999999999999999999",
    ] {
        let resp = get(&server, target);
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (400, "n must be a number from 0 to 1000\n"),
            "{target}"
        );
    }
    // Caught by the guard around `call`: logged, and the host answers 500.
    let resp = get(&server, "/throw");
    assert_eq!(resp.status, 500, "{}", resp.raw_head);
    server.wait_for_log("/throw threw", TIMEOUT);
    // Caught by the guard around the iterator's `next`: the body had begun,
    // so the host cuts the connection after what was sent.
    let mut conn = server.connect();
    conn.send(b"GET /count?n=5&throw_at=2 HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = conn.read_head();
    assert_eq!(head.status, 200, "{}", head.raw_head);
    assert_eq!(conn.read_chunk(), Chunk::Data(b"1\n".to_vec()));
    assert_eq!(conn.read_chunk(), Chunk::Eof);
    server.wait_for_log("counter threw at line 2", TIMEOUT);
    // No exception took the worker down on its way out.
    assert_eq!(get(&server, "/").status, 200);
    let logs = server.logs();
    assert!(!logs.contains("exited:"), "a worker died:\n{logs}");
}

/// `plugins/helpers-cpp/greet.cpp`, a C++ plugin written with
/// `nwsgi_util.h`, built strict as C++17 by every C++ compiler found, and
/// each build served.
#[test]
fn helpers_cpp_builds_with_every_compiler_and_serves() {
    let dir = TempDir::new("helpers-cpp");
    let source = artifacts::repo_root().join("plugins/helpers-cpp/greet.cpp");
    for compiler in Compiler::all(Lang::Cxx) {
        let mut args = vec!["-std=c++17".to_owned(), include_flag()];
        args.extend(STRICT.iter().map(|f| (*f).to_owned()));
        let tag = compiler.name().replace(['/', ' '], "_");
        let output = dir.join(format!("libgreet-{tag}.so"));
        compiler
            .shared_library(&source, &args, &output)
            .unwrap_or_else(|e| panic!("{e}"));
        let server = server::serve(plugin_spec(&output, "app"))
            .args(["--app-arg", "greeting=Hi"])
            .start();
        let resp = get(&server, "/?name=Ann+Lee%21");
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "Hi, Ann Lee!!\n"),
            "{tag}"
        );
        assert_eq!(get(&server, "/").text(), "Hi, World!\n", "{tag}");
        let mut conn = server.connect();
        conn.send(b"GET /?name=Ann HTTP/1.1\r\nHost: x\r\nAccept: Application/JSON\r\n\r\n");
        let json = conn.read_response();
        assert_eq!(json.text(), r#"{"greeting":"Hi, Ann!"}"#, "{tag}");
        assert_eq!(json.header("content-type"), Some("application/json"));
        let unavailable = get(&server, "/status?code=503");
        assert_eq!(
            (unavailable.status, unavailable.text().as_str()),
            (503, "503 Service Unavailable\n")
        );
        assert_eq!(get(&server, "/status").status, 400, "{tag}");
        assert_eq!(get(&server, "/nope").status, 404, "{tag}");
    }
}
