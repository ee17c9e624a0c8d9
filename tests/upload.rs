//! `plugins/upload` served by the real host: multi-megabyte uploads sent
//! chunked by curl (and with a Content-Length by python3), hashed and
//! stored piece by piece, with the host buffering the body first and with
//! `--no-request-buffering`; and a body over `max_bytes` refused with 413.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use integration_tests::artifacts::{self, TempDir};
use integration_tests::server::{self, Server};

/// 5 MiB that are not all alike, and their SHA-256 (from `sha256sum`, not
/// from the code under test).
fn payload(dir: &TempDir) -> (std::path::PathBuf, Vec<u8>, String) {
    let bytes: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = dir.join("payload.bin");
    fs::write(&path, &bytes).expect("writing the payload");
    let out = Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("sha256sum");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let hex = text.split_whitespace().next().expect("a digest").to_owned();
    (path, bytes, hex)
}

fn serve(store: &TempDir, extra: &[&str]) -> Server {
    let dir = format!("dir={}", store.path.display());
    server::serve(artifacts::rust_plugin("upload"))
        .args(["--app-arg", &dir])
        .args(extra)
        .start()
}

/// `curl -T file` with `Transfer-Encoding: chunked` (no length up front).
fn curl_chunked(server: &Server, file: &std::path::Path) -> String {
    let url = format!("http://{}/upload", server.addr());
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "-H",
            "Transfer-Encoding: chunked",
            "-T",
        ])
        .arg(file)
        .arg(&url)
        .output()
        .expect("curl is installed");
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl: {body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    body
}

fn check_stored(store: &TempDir, hex: &str, bytes: &[u8]) {
    let stored = fs::read(store.join(hex)).expect("the upload is stored under its hash");
    assert!(stored == bytes, "stored bytes differ");
    let parts: Vec<_> = fs::read_dir(&store.path)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".part"))
        .collect();
    assert!(parts.is_empty(), "part files left: {parts:?}");
}

#[test]
fn a_chunked_upload_is_hashed_and_stored_with_and_without_buffering() {
    let scratch = TempDir::new("upload-src");
    let (file, bytes, hex) = payload(&scratch);
    let want = format!(
        r#"{{"bytes":{},"sha256":"{hex}","saved":"{hex}"}}"#,
        bytes.len()
    );
    for extra in [&[][..], &["--no-request-buffering"][..]] {
        let store = TempDir::new("upload-store");
        let server = serve(&store, extra);
        assert_eq!(curl_chunked(&server, &file), want, "{extra:?}");
        check_stored(&store, &hex, &bytes);
    }
}

#[test]
fn python_streams_with_a_content_length() {
    let scratch = TempDir::new("upload-src");
    let (file, bytes, hex) = payload(&scratch);
    let store = TempDir::new("upload-store");
    let server = serve(&store, &["--no-request-buffering"]);
    // http.client sends a file object in blocks, as it reads it.
    let script = format!(
        "import http.client, sys\n\
         c = http.client.HTTPConnection('127.0.0.1', {port})\n\
         f = open(sys.argv[1], 'rb')\n\
         c.request('POST', '/upload', body=f, headers={{'Content-Length': str({len})}})\n\
         r = c.getresponse()\n\
         sys.stdout.write(str(r.status) + ' ' + r.read().decode())\n",
        port = server.port(),
        len = bytes.len()
    );
    let mut python = Command::new("python3")
        .arg("-")
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        r#"200 {{"bytes":{},"sha256":"{hex}","saved":"{hex}"}}"#,
        bytes.len()
    );
    assert_eq!(text, want);
    check_stored(&store, &hex, &bytes);
}

#[test]
fn an_upload_over_max_bytes_is_413_and_leaves_no_file() {
    let scratch = TempDir::new("upload-src");
    let (file, _, _) = payload(&scratch);
    let store = TempDir::new("upload-store");
    let server = serve(
        &store,
        &["--no-request-buffering", "--app-arg", "max_bytes=1000000"],
    );
    let url = format!("http://{}/upload", server.addr());
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Transfer-Encoding: chunked",
            "-T",
        ])
        .arg(&file)
        .arg(&url)
        .output()
        .expect("curl is installed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "413");
    assert_eq!(
        fs::read_dir(&store.path).unwrap().count(),
        0,
        "a file was left"
    );
}
