//! The plugin authors' guide (`docs/guide/`) shows only code that is
//! compiled and tested. Every listing in it is a copy of a file, or of a
//! marked region of one, under an include line naming it:
//!
//! ````text
//! <!-- guide-include: plugins/upload/src/lib.rs#stream -->
//! ```rust
//! ...the lines between `// guide:start stream` and `// guide:end stream`
//! ```
//! ````
//!
//! These tests fail when a listing drifts from its file, when a listing of
//! code (Rust, C, C++, Zig, TOML) has no include line, when an included
//! file is not something the workspace or a test builds, and when a
//! relative link points nowhere. `GUIDE_UPDATE=1 cargo test -p
//! integration-tests --test guide` rewrites the listings from the files.

use std::fs;
use std::path::{Path, PathBuf};

use integration_tests::artifacts::repo_root;

const INCLUDE: &str = "<!-- guide-include: ";
/// Fence languages that are code a reader would copy into a project: each
/// such listing must come from a file that is built.
const CODE: [&str; 6] = ["rust", "c", "cpp", "zig", "toml", "c++"];

fn guide_files() -> Vec<PathBuf> {
    let dir = repo_root().join("docs/guide");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    assert!(files.len() > 5, "the guide's chapters are missing");
    files
}

/// `path#region`: the file's lines between `guide:start region` and
/// `guide:end region` (the whole file without `#`), without marker lines,
/// their common indentation removed.
fn region(spec: &str) -> Result<String, String> {
    let (path, name) = match spec.split_once('#') {
        Some((path, name)) => (path, Some(name)),
        None => (spec, None),
    };
    let text = fs::read_to_string(repo_root().join(path)).map_err(|e| format!("{path}: {e}"))?;
    let is_marker = |line: &str, what: &str| {
        let line = line.trim();
        let body = line
            .strip_prefix("//")
            .or_else(|| line.strip_prefix('#'))
            .map(str::trim);
        match body.and_then(|b| b.strip_prefix("guide:")) {
            Some(rest) => what.is_empty() || rest == what,
            None => false,
        }
    };
    let lines: Vec<&str> = match name {
        None => text.lines().collect(),
        Some(name) => {
            let start = format!("start {name}");
            let end = format!("end {name}");
            let from = text
                .lines()
                .position(|l| is_marker(l, &start))
                .ok_or_else(|| format!("{path}: no `guide:start {name}` line"))?;
            let len = text
                .lines()
                .skip(from + 1)
                .position(|l| is_marker(l, &end))
                .ok_or_else(|| format!("{path}: no `guide:end {name}` line"))?;
            text.lines().skip(from + 1).take(len).collect()
        }
    };
    let lines: Vec<&str> = lines.into_iter().filter(|l| !is_marker(l, "")).collect();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in lines {
        out.push_str(line.get(indent..).unwrap_or("").trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// One listing: the include spec (if any), its fence language, the line
/// range of its body in the chapter.
struct Listing {
    spec: Option<String>,
    lang: String,
    body: std::ops::Range<usize>,
}

fn listings(text: &str) -> Vec<Listing> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let spec = i
            .checked_sub(1)
            .and_then(|p| lines[p].strip_prefix(INCLUDE))
            .and_then(|s| s.strip_suffix(" -->"))
            .map(str::to_owned);
        let start = i + 1;
        let end = (start..lines.len())
            .find(|&j| lines[j].starts_with("```"))
            .unwrap_or(lines.len());
        out.push(Listing {
            spec,
            lang: lang.trim().to_owned(),
            body: start..end,
        });
        i = end + 1;
    }
    out
}

/// Whether the workspace or a test builds `path`: a Rust or TOML file in a
/// workspace member's directory, or another file named by a test.
fn is_built(path: &str) -> bool {
    let root = repo_root();
    if path.ends_with(".rs") || path.ends_with(".toml") {
        let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
        let mut dir = Path::new(path).parent();
        while let Some(d) = dir {
            if manifest.contains(&format!("\"{}\"", d.display())) {
                return true;
            }
            dir = d.parent();
        }
        return false;
    }
    let tests = root.join("tests");
    let mentions = |file: PathBuf| fs::read_to_string(file).is_ok_and(|t| t.contains(path));
    fs::read_dir(&tests)
        .into_iter()
        .chain(fs::read_dir(tests.join("support")))
        .flatten()
        .flatten()
        // Not this file, whose own tests name paths that are not built.
        .filter(|e| e.file_name() != "guide.rs")
        .any(|e| e.path().extension().is_some_and(|x| x == "rs") && mentions(e.path()))
}

#[test]
fn every_listing_is_its_file_and_every_file_is_built() {
    let update = std::env::var_os("GUIDE_UPDATE").is_some();
    let mut problems = Vec::new();
    for file in guide_files() {
        let name = file
            .strip_prefix(repo_root())
            .unwrap()
            .display()
            .to_string();
        let text = fs::read_to_string(&file).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        // Replaced from the last so earlier ranges stay valid.
        for listing in listings(&text).into_iter().rev() {
            let at = format!("{name}:{}", listing.body.start);
            let Some(spec) = listing.spec else {
                if CODE.contains(&listing.lang.as_str()) {
                    problems.push(format!(
                        "{at}: a `{}` listing without an include line",
                        listing.lang
                    ));
                }
                continue;
            };
            let path = spec.split('#').next().unwrap_or_default();
            if !is_built(path) {
                problems.push(format!(
                    "{at}: {path} is not built by the workspace or a test"
                ));
            }
            let want = match region(&spec) {
                Ok(want) => want,
                Err(e) => {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
            };
            let have: String = lines[listing.body.clone()]
                .iter()
                .map(|l| format!("{l}\n"))
                .collect();
            if have != want {
                if update {
                    lines.splice(listing.body.clone(), want.lines().map(str::to_owned));
                } else {
                    problems.push(format!(
                        "{at}: the listing differs from {spec} (GUIDE_UPDATE=1 rewrites it)"
                    ));
                }
            }
        }
        if update {
            let mut new = lines.join("\n");
            new.push('\n');
            if new != text {
                fs::write(&file, new).unwrap();
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn relative_links_point_at_files() {
    let mut problems = Vec::new();
    for file in guide_files() {
        let text = fs::read_to_string(&file).unwrap();
        let dir = file.parent().unwrap();
        for (i, line) in text.lines().enumerate() {
            for target in line.split("](").skip(1).filter_map(|s| s.split(')').next()) {
                let target = target.split('#').next().unwrap_or_default();
                if target.is_empty() || target.contains("://") {
                    continue;
                }
                if !dir.join(target).exists() {
                    let name = file.file_name().unwrap().to_string_lossy();
                    problems.push(format!("{name}:{}: {target} does not exist", i + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checks above must see what they check: a listing that differs, or
/// has no include line, is reported.
#[test]
fn the_checker_sees_drift_and_bare_listings() {
    let chapter = "<!-- guide-include: Cargo.toml -->\n```toml\n[workspace]\n```\n\n```rust\nfn main() {}\n```\n\n```sh\nls\n```\n";
    let found = listings(chapter);
    assert_eq!(found.len(), 3);
    assert_eq!(found[0].spec.as_deref(), Some("Cargo.toml"));
    assert_ne!(region("Cargo.toml").unwrap(), "[workspace]\n");
    assert_eq!(
        (found[1].spec.is_none(), found[1].lang.as_str()),
        (true, "rust")
    );
    assert_eq!(found[2].lang, "sh");
    assert!(region("plugins/upload/src/lib.rs#nope").is_err());
    assert!(is_built("plugins/hello/src/lib.rs"));
    assert!(is_built("plugins/hello-c/hello.c"));
    assert!(!is_built("plugins/nowhere/x.c"));
}
