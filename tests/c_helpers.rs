//! `nwsgi_util.h`, the header-only helpers for C and C++ applications: the
//! header compiles alone in every C and C++ language mode with every
//! warning an error (C++ also without old-style casts or `0` as a null
//! pointer); `tests/fixtures/c-helpers/check.c`, which checks every helper's
//! exact output against a fake host, compiles and passes in each of those
//! modes; and `plugins/helpers-c`, written with the helpers, answers through
//! the real host.
//!
//! Every compiler found is used: the default ones (`$CC`/`cc`,
//! `$CXX`/`c++`), and GCC and Clang if installed.

use std::fs;
use std::process::Command;

use integration_tests::artifacts::{self, Compiler, Lang, TempDir, STRICT};
use integration_tests::client::Response;
use integration_tests::server::{self, plugin_spec, Server};

/// The language modes the header promises to work in.
const MODES: [(Lang, &[&str]); 2] = [
    (Lang::C, &["c11", "c17"]),
    (Lang::Cxx, &["c++11", "c++17", "c++20"]),
];

/// Beyond [`STRICT`], for the header alone: no implicit narrowing or sign
/// change, and in C++ the casts and null pointers of modern C++.
const EXTRA_C: [&str; 2] = ["-Wconversion", "-Wsign-conversion"];
const EXTRA_CXX: [&str; 4] = [
    "-Wconversion",
    "-Wsign-conversion",
    "-Wold-style-cast",
    "-Wzero-as-null-pointer-constant",
];

fn include_flag() -> String {
    format!("-I{}", artifacts::repo_root().join("abi/include").display())
}

/// Runs `build(compiler, lang, std, file)` for each compiler and mode, with
/// `source` written as `tu.c` / `tu.cpp`; returns how many ran, and panics
/// with every failure's diagnostics at once.
fn everywhere(
    dir: &TempDir,
    source: &str,
    mut build: impl FnMut(&Compiler, Lang, &str, &std::path::Path) -> Result<(), String>,
) -> usize {
    let mut done = 0;
    let mut failures = Vec::new();
    for (lang, stds) in MODES {
        let file = dir.join(match lang {
            Lang::C => "tu.c",
            Lang::Cxx => "tu.cpp",
        });
        fs::write(&file, source).unwrap();
        for compiler in Compiler::all(lang) {
            for &std in stds {
                match build(&compiler, lang, std, &file) {
                    Ok(()) => done += 1,
                    Err(e) => failures.push(format!("[{} -std={std}] {e}", compiler.name())),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} builds failed:\n\n{}",
        failures.len(),
        failures.len() + done,
        failures.join("\n\n")
    );
    done
}

#[test]
fn the_helper_header_alone_compiles_in_every_language_mode() {
    let dir = TempDir::new("util-header-alone");
    let done = everywhere(
        &dir,
        "#include \"nwsgi_util.h\"\n",
        |compiler, lang, std, file| {
            let mut args = vec![format!("-std={std}"), include_flag()];
            args.extend(STRICT.iter().map(|f| (*f).to_owned()));
            let extra: &[&str] = match lang {
                Lang::C => &EXTRA_C,
                Lang::Cxx => &EXTRA_CXX,
            };
            args.extend(extra.iter().map(|f| (*f).to_owned()));
            args.push("-fsyntax-only".to_owned());
            args.push(file.display().to_string());
            compiler.run(&args)
        },
    );
    // Two C modes and three C++ modes at least (the default compilers).
    assert!(done >= 5, "only {done} builds");
}

#[test]
fn every_helper_gives_the_exact_expected_output_in_every_language_mode() {
    let dir = TempDir::new("util-check");
    let source =
        fs::read_to_string(artifacts::repo_root().join("tests/fixtures/c-helpers/check.c"))
            .unwrap();
    let mut runs = 0;
    let done = everywhere(&dir, &source, |compiler, _, std, file| {
        let tag = compiler.name().replace(['/', ' '], "_");
        let exe = dir.join(format!("check-{tag}-{std}"));
        let mut args = vec![format!("-std={std}"), include_flag()];
        args.extend(STRICT.iter().map(|f| (*f).to_owned()));
        args.extend(["-o".to_owned(), exe.display().to_string()]);
        args.push(file.display().to_string());
        compiler.run(&args)?;
        let out = Command::new(&exe)
            .output()
            .map_err(|e| format!("running {}: {e}", exe.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        runs += 1;
        // Hundreds of checks ran (the status table alone has 500 codes),
        // and none failed.
        let summary = stdout.lines().last().unwrap_or_default();
        let ran: usize = summary
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if out.status.success() && summary.ends_with(" 0 failed") && ran > 1500 {
            Ok(())
        } else {
            Err(format!("check failed ({}):\n{stdout}", out.status))
        }
    });
    assert_eq!(done, runs);
    assert!(done >= 5, "only {done} builds");
}

fn helpers_c() -> Server {
    server::serve(plugin_spec(&artifacts::helpers_c(), "app"))
        .args(["--app-arg", "greeting=Hi"])
        .start()
}

fn request(server: &Server, request: &str) -> Response {
    let mut conn = server.connect();
    conn.send(request.as_bytes());
    if request.starts_with("HEAD") {
        conn.read_head_response()
    } else {
        conn.read_response()
    }
}

fn get(server: &Server, target: &str) -> Response {
    request(server, &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"))
}

#[test]
fn helpers_c_reads_its_greeting_in_init() {
    let server = helpers_c();
    let resp = get(&server, "/");
    assert_eq!((resp.status, resp.text().as_str()), (200, "Hi, World!\n"));
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    // nwsgi_respond used write_last: the host framed it with a length.
    assert_eq!(resp.header("content-length"), Some("11"));
    let resp = request(
        &server,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (405, "405 Method Not Allowed\n")
    );
    assert!(resp
        .raw_head
        .starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
}

#[test]
fn helpers_c_decodes_the_query_and_finds_headers_by_any_case() {
    let server = helpers_c();
    let resp = request(
        &server,
        "GET /inspect?a=1&&b=x+y%2Bz&p=100%25&=v&flag&k=v=w&long=0123456789012345678901234567890123456789&c=%41 HTTP/1.1\r\n\
         Host: x\r\nx-multi: one\r\nAccept: */*\r\nX-MULTI: two\r\nContent-type: text/csv\r\n\r\n",
    );
    assert_eq!(resp.status, 200, "{}", resp.raw_head);
    assert_eq!(
        resp.text(),
        "query a=1\n\
         query b=x y+z\n\
         query p=100%\n\
         query =v\n\
         query flag=\n\
         query k=v=w\n\
         query! long=0123456789012345678901234567\n\
         query c=A\n\
         first: one\n\
         each: one|two\n\
         joined: one, two\n\
         type: text/csv\n"
    );
    // No such header: nothing first or joined, an empty list.
    let resp = get(&server, "/inspect");
    assert_eq!((resp.status, resp.text().as_str()), (200, "each: \n"));
}

/// `raw_path_info` (ABI 1.3) through the real host: the path as sent,
/// beside the decoded PATH_INFO, for each target form with a path.
#[test]
fn helpers_c_sees_the_path_as_the_client_sent_it() {
    let server = helpers_c();
    for (target, raw, decoded) in [
        ("/raw/a%2Fb%20c?x=%41", "/raw/a%2Fb%20c", "/raw/a/b c"),
        ("/raw/plain", "/raw/plain", "/raw/plain"),
        ("http://x/raw/%7Euser?q", "/raw/%7Euser", "/raw/~user"),
    ] {
        let resp = get(&server, target);
        assert_eq!(resp.status, 200, "{target}");
        assert_eq!(
            resp.text(),
            format!("raw: {raw}\ndecoded: {decoded}\n"),
            "{target}"
        );
    }
}

#[test]
fn helpers_c_answers_each_code_with_its_status_line() {
    let server = helpers_c();
    for (code, line) in [
        (200, "200 OK"),
        (201, "201 Created"),
        (404, "404 Not Found"),
        (413, "413 Content Too Large"),
        (418, "418 Client Error"),
        (299, "299 Success"),
        (451, "451 Unavailable For Legal Reasons"),
        (503, "503 Service Unavailable"),
        (599, "599 Server Error"),
    ] {
        let resp = get(&server, &format!("/status?code={code}"));
        assert_eq!(resp.status, code, "{}", resp.raw_head);
        assert!(
            resp.raw_head.starts_with(&format!("HTTP/1.1 {line}\r\n")),
            "{code}: {}",
            resp.raw_head
        );
        assert_eq!(resp.text(), format!("{line}\n"));
    }
    // The app's own 400 for a code that is no number.
    for target in [
        "/status",
        "/status?code=",
        "/status?code=abc",
        "/status?code=12345",
    ] {
        let resp = get(&server, target);
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (400, "code must be a number\n"),
            "{target}"
        );
    }
    // No status line for 700: start_response refuses it, the host answers 500.
    assert_eq!(get(&server, "/status?code=700").status, 500);
    // The host sends no 1xx from start_response either.
    assert_eq!(get(&server, "/status?code=103").status, 500);
    let resp = get(&server, "/nowhere");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (404, "404 Not Found\n")
    );
}

/// The usage example at the top of `nwsgi_util.h`: from its `#include` to
/// the end of its `app` definition, without the comment's ` *   ` margin.
fn util_example() -> String {
    let header =
        fs::read_to_string(artifacts::repo_root().join("abi/include/nwsgi_util.h")).unwrap();
    let mut example = String::new();
    let mut inside = false;
    for line in header.lines() {
        let code = line.strip_prefix(" *   ").unwrap_or(line);
        inside |= code == "#include \"nwsgi_util.h\"";
        if inside {
            example.push_str(code);
            example.push('\n');
            if code.trim_end().ends_with("\"greeter\");") {
                return example;
            }
        }
    }
    panic!("no usage example (from `#include \"nwsgi_util.h\"` to `\"greeter\");`) at the top of nwsgi_util.h");
}

#[test]
fn the_helper_headers_example_builds_everywhere_and_answers() {
    let dir = TempDir::new("util-example");
    let mut libraries = Vec::new();
    let done = everywhere(&dir, &util_example(), |compiler, _, std, file| {
        let tag = compiler.name().replace(['/', ' '], "_");
        let output = dir.join(format!("lib{tag}-{std}.so"));
        let mut args = vec![format!("-std={std}"), include_flag()];
        args.extend(STRICT.iter().map(|f| (*f).to_owned()));
        compiler.shared_library(file, &args, &output)?;
        let spec = plugin_spec(&output, "app");
        let check = server::run(["check", spec.as_str()]);
        if !check.stdout.contains("name: greeter") {
            return Err(format!("does not load: {check:#?}"));
        }
        libraries.push((std.to_owned(), output));
        Ok(())
    });
    assert!(done >= 5, "only {done} builds");
    for (std, library) in libraries
        .iter()
        .filter(|(std, _)| std == "c11" || std == "c++17")
    {
        let server = server::serve(plugin_spec(library, "app")).start();
        let resp = get(&server, "/?name=C+and+C%2B%2B");
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "C and C++"),
            "{std}"
        );
        assert_eq!(get(&server, "/").text(), "world", "{std}");
    }
}
