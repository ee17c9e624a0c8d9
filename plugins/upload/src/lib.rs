//! `upload`: a request body streamed through the app, never held whole.
//!
//! `PUT /upload` (or `POST`) reads `wsgi.input` 64 KiB at a time, hashes
//! each piece with SHA-256 and, with `--app-arg dir=PATH`, appends it to a
//! file there; it answers `{"bytes": N, "sha256": ".."}`, and with a
//! directory also `"saved": "<sha256>"` (the file's name: uploading the same
//! bytes twice keeps one copy). Memory per upload is one buffer, whatever
//! the size. `--app-arg max_bytes=N` refuses larger bodies with 413 as soon
//! as they pass N.
//!
//! By default the host reads the whole body before `call` (into memory, or
//! a temporary file past `--body-buffer-size`); with
//! `--no-request-buffering` each `read` waits for the client instead, and
//! the upload is hashed while it arrives.
#![forbid(unsafe_code)]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use abi::http::{Method, StatusCode};
use abi::{App, Body, Config, Environ, Error, StartResponse};
use sha2::{Digest, Sha256};

const CHUNK: usize = 64 * 1024;

pub struct Upload {
    dir: Option<PathBuf>,
    max_bytes: u64,
    /// Names the part files of uploads in progress, unique in this process.
    next_part: AtomicU64,
}

/// Where the bytes go besides the hash: nowhere, or a part file that is
/// renamed to its hash once complete and removed if the upload fails.
enum Sink {
    Discard,
    File { file: File, path: PathBuf },
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Discard => Ok(()),
            Sink::File { file, .. } => file.write_all(bytes),
        }
    }

    /// Keep the upload as `dir/<hex>`.
    fn finish(self, dir: &Path, hex: &str) -> io::Result<()> {
        match self {
            Sink::Discard => Ok(()),
            Sink::File { file, path } => {
                file.sync_all()?;
                fs::rename(&path, dir.join(hex))
            }
        }
    }

    fn discard(self) {
        if let Sink::File { path, .. } = self {
            // Best effort: a part file left behind only costs disk space.
            let _ = fs::remove_file(path);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Upload {
    fn sink(&self) -> io::Result<Sink> {
        let Some(dir) = &self.dir else {
            return Ok(Sink::Discard);
        };
        let n = self.next_part.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".part-{}-{n}", std::process::id()));
        Ok(Sink::File {
            file: File::create(&path)?,
            path,
        })
    }

    // guide:start stream
    /// Hash (and store) the body piece by piece: (size, SHA-256).
    fn stream(&self, input: &mut impl Read, sink: &mut Sink) -> Result<(u64, [u8; 32]), Error> {
        let mut buf = vec![0; CHUNK];
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            size += n as u64;
            if size > self.max_bytes {
                let why = format!("upload over {} bytes\n", self.max_bytes);
                return Err(
                    Error::status(StatusCode::PAYLOAD_TOO_LARGE).with_body("text/plain", why)
                );
            }
            hasher.update(&buf[..n]);
            sink.write(&buf[..n])?;
        }
        Ok((size, hasher.finalize().into()))
    }
    // guide:end stream
}

impl App for Upload {
    const NAME: &'static str = "upload";

    fn init(config: &Config) -> Result<Self, String> {
        let dir = config.get("dir").map(PathBuf::from);
        if let Some(dir) = &dir {
            fs::create_dir_all(dir).map_err(|e| format!("dir={}: {e}", dir.display()))?;
        }
        let max_bytes = match config.get("max_bytes") {
            None => u64::MAX,
            Some(v) => v.parse().map_err(|e| format!("max_bytes={v:?}: {e}"))?,
        };
        Ok(Upload {
            dir,
            max_bytes,
            next_part: AtomicU64::new(0),
        })
    }

    // guide:start call
    fn call(&self, env: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        if env.uri().path() != "/upload" {
            return Err(Error::status(StatusCode::NOT_FOUND));
        }
        if !matches!(env.method(), Method::PUT | Method::POST) {
            start
                .status(StatusCode::METHOD_NOT_ALLOWED)
                .header("allow", "PUT,POST")
                .start()?;
            return Ok(Body::empty());
        }
        let mut sink = self.sink()?;
        let (size, digest) = match self.stream(&mut env.input(), &mut sink) {
            Ok(done) => done,
            Err(e) => {
                sink.discard();
                return Err(e);
            }
        };
        let hex = hex(&digest);
        let saved = match &self.dir {
            Some(dir) => {
                sink.finish(dir, &hex)?;
                format!(r#","saved":"{hex}""#)
            }
            None => String::new(),
        };
        start
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .start()?;
        Ok(Body::from(format!(
            r#"{{"bytes":{size},"sha256":"{hex}"{saved}}}"#
        )))
    }
    // guide:end call
}

abi::export_app!(Upload);

#[cfg(test)]
mod tests {
    use super::Upload;
    use abi::http::{Request, StatusCode};
    use abi::testing::Client;
    use abi::Config;

    #[test]
    fn hashes_and_limits() {
        let client = Client::init::<Upload>(&Config::from_pairs([("max_bytes", "5")])).unwrap();
        let ok = client.call(Request::put("/upload").body("abc").unwrap());
        assert_eq!(
            ok.body(),
            br#"{"bytes":3,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#
        );
        let big = client.call(Request::put("/upload").body("abcdef").unwrap());
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let get = client.call(Request::get("/upload").body(()).unwrap());
        assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
