//! `host new NAME [--lang rust|c|axum]`: a plugin project in `./NAME` that
//! builds with one command, serves as it is, and has a test.
//!
//! The templates are files under `host/templates/`, built into the binary
//! (as are the C headers), so the C project needs nothing from the source
//! tree at run time. The Rust project depends on the `abi` crate by path:
//! `--abi-path`, else the one next to the host's own source tree, as it was
//! when this binary was built.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{NewArgs, NewLang};
use crate::settings::quoted;

/// The `abi` crate of the source tree this binary was built from.
const BUILT_ABI_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../abi");

const RUST_CARGO_TOML: &str = include_str!("../templates/rust/Cargo.toml.in");
const RUST_LIB_RS: &str = include_str!("../templates/rust/lib.rs.in");
const RUST_GITIGNORE: &str = include_str!("../templates/rust/gitignore");
const AXUM_CARGO_TOML: &str = include_str!("../templates/axum/Cargo.toml.in");
const AXUM_LIB_RS: &str = include_str!("../templates/axum/lib.rs.in");
const C_APP: &str = include_str!("../templates/c/app.c");
const C_MAKEFILE: &str = include_str!("../templates/c/Makefile");
const C_TEST: &str = include_str!("../templates/c/test.sh");
const C_GITIGNORE: &str = include_str!("../templates/c/gitignore");
const NWSGI_H: &str = include_str!("../../abi/include/nwsgi.h");
const NWSGI_UTIL_H: &str = include_str!("../../abi/include/nwsgi_util.h");

/// Names a project may not take: Rust keywords and the crates every Rust
/// build already has (cargo refuses them as package names), and `abi`,
/// the SDK the project depends on.
const RESERVED: [&str; 45] = [
    "abi",
    "alloc",
    "core",
    "proc_macro",
    "proc-macro",
    "std",
    "test",
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "yield",
];

/// Why `host new` did not create the project.
enum Refusal {
    /// The command line asks for something impossible: exit 2.
    Usage(String),
    /// Creating it failed: exit 1.
    Failed(String),
}

/// Runs `host new`: prints what to do next, or one line saying why not.
pub fn run(args: NewArgs) -> ExitCode {
    match create(&args) {
        Ok(next) => {
            println!(
                "created {} project {} in ./{}",
                args.lang.name(),
                args.name,
                args.name
            );
            for line in next {
                println!("  {line}");
            }
            ExitCode::SUCCESS
        }
        Err(Refusal::Usage(why)) => {
            eprintln!("error: {why}");
            ExitCode::from(2)
        }
        Err(Refusal::Failed(why)) => {
            eprintln!("error: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Creates the project; returns the commands that build, serve and test it.
fn create(args: &NewArgs) -> Result<Vec<String>, Refusal> {
    check_name(&args.name).map_err(Refusal::Usage)?;
    let files = match args.lang {
        NewLang::Rust => rust_files(&args.name, args.abi_path.as_deref())?,
        NewLang::C => {
            if args.abi_path.is_some() {
                return Err(Refusal::Usage(
                    "--abi-path is for --lang rust and axum (a C project copies the headers)"
                        .into(),
                ));
            }
            c_files(&args.name)
        }
        NewLang::Axum => axum_files(&args.name, args.abi_path.as_deref())?,
    };
    let dir = Path::new(&args.name);
    let created = prepare_dir(dir)?;
    if let Err(e) = write_all(dir, &files) {
        // Leave nothing half-made behind (only what this run created).
        if created {
            let _ = fs::remove_dir_all(dir);
        }
        return Err(Refusal::Failed(e));
    }
    let name = &args.name;
    Ok(match args.lang {
        NewLang::Rust | NewLang::Axum => vec![
            format!("cd {name} && cargo build --release"),
            format!("host serve target/release/lib{}.so", crate_name(name)),
            "cargo test".into(),
        ],
        _ => vec![
            format!("cd {name} && make"),
            "make serve    # host serve on 127.0.0.1:8000".into(),
            "make test     # serve on a free port and check the answers".into(),
        ],
    })
}

/// A name is a directory, a Cargo package and a library file name at once:
/// an ASCII letter, then letters, digits, '-' or '_', at most 64 in all.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "invalid project name {name:?}: use an ASCII letter, then letters, digits, '-' or '_' (at most 64)"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "invalid project name {name:?}: reserved in Rust or by the SDK"
        ));
    }
    Ok(())
}

/// Cargo's library name for a package: '-' becomes '_'.
fn crate_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Makes `dir`, or accepts it empty: returns whether this run created it.
fn prepare_dir(dir: &Path) -> Result<bool, Refusal> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(Refusal::Usage(format!(
                    "{} already exists and is not empty",
                    dir.display()
                )))
            } else {
                Ok(false)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(dir)
            .map(|()| true)
            .map_err(|e| Refusal::Failed(format!("cannot create {}: {e}", dir.display()))),
        Err(_) if dir.exists() => Err(Refusal::Usage(format!(
            "{} already exists and is not an empty directory",
            dir.display()
        ))),
        Err(e) => Err(Refusal::Failed(format!(
            "cannot read {}: {e}",
            dir.display()
        ))),
    }
}

/// One file of a project: where, what, and whether it is a program.
struct File {
    path: &'static str,
    text: String,
    executable: bool,
}

fn file(path: &'static str, text: String) -> File {
    File {
        path,
        text,
        executable: false,
    }
}

fn write_all(dir: &Path, files: &[File]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for f in files {
        let path = dir.join(f.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        fs::write(&path, &f.text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if f.executable {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("cannot make {} executable: {e}", path.display()))?;
        }
    }
    Ok(())
}

fn fill(template: &str, name: &str) -> String {
    template
        .replace("{{NAME}}", name)
        .replace("{{CRATE}}", &crate_name(name))
}

fn rust_files(name: &str, abi_path: Option<&Path>) -> Result<Vec<File>, Refusal> {
    cargo_files(name, abi_path, RUST_CARGO_TOML, RUST_LIB_RS)
}

fn axum_files(name: &str, abi_path: Option<&Path>) -> Result<Vec<File>, Refusal> {
    cargo_files(name, abi_path, AXUM_CARGO_TOML, AXUM_LIB_RS)
}

/// A Cargo project depending on the `abi` crate: its manifest and library
/// from the templates given.
fn cargo_files(
    name: &str,
    abi_path: Option<&Path>,
    manifest: &str,
    library: &str,
) -> Result<Vec<File>, Refusal> {
    let abi = abi_dir(abi_path)?;
    let abi = abi.to_str().ok_or_else(|| {
        Refusal::Usage(format!(
            "the abi crate's path {} is not UTF-8 (Cargo.toml cannot name it): give --abi-path",
            abi.display()
        ))
    })?;
    let cargo_toml = fill(manifest, name).replace("{{ABI_PATH}}", &quoted(abi));
    Ok(vec![
        file("Cargo.toml", cargo_toml),
        file("src/lib.rs", fill(library, name)),
        file(".gitignore", RUST_GITIGNORE.to_owned()),
    ])
}

/// The `abi` crate directory, absolute: `--abi-path`, else the one in the
/// source tree this binary was built from.
fn abi_dir(given: Option<&Path>) -> Result<PathBuf, Refusal> {
    let (dir, from) = match given {
        Some(dir) => (dir.to_path_buf(), "--abi-path"),
        None => (PathBuf::from(BUILT_ABI_PATH), "the host's source tree"),
    };
    let is_abi = fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|toml| toml.lines().any(|l| l.trim() == "name = \"abi\""));
    if !is_abi {
        let hint = if given.is_some() {
            ""
        } else {
            ": give --abi-path DIR (the abi/ directory of the host's sources)"
        };
        return Err(Refusal::Usage(format!(
            "no abi crate at {} (from {from}){hint}",
            dir.display()
        )));
    }
    fs::canonicalize(&dir).map_err(|e| Refusal::Failed(format!("{}: {e}", dir.display())))
}

fn c_files(name: &str) -> Vec<File> {
    vec![
        file("app.c", fill(C_APP, name)),
        file("Makefile", fill(C_MAKEFILE, name)),
        File {
            path: "test.sh",
            text: fill(C_TEST, name),
            executable: true,
        },
        file("include/nwsgi.h", NWSGI_H.to_owned()),
        file("include/nwsgi_util.h", NWSGI_UTIL_H.to_owned()),
        file(".gitignore", C_GITIGNORE.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "my-app", "shop_2", &"x".repeat(64)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "2fast",
            "-x",
            "_x",
            "a b",
            "a/b",
            "..",
            "é",
            "std",
            "abi",
            "fn",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn toml_strings() {
        assert_eq!(quoted("/a/b"), "\"/a/b\"");
        assert_eq!(quoted("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }

    #[test]
    fn templates_are_filled() {
        let files = c_files("my-app");
        assert!(files
            .iter()
            .all(|f| !f.text.contains("{{") || f.path.starts_with("include/")));
        let makefile = &files.iter().find(|f| f.path == "Makefile").unwrap().text;
        assert!(makefile.contains("LIB = libmy-app.so"));
        assert_eq!(
            fill("lib{{CRATE}}.so {{NAME}}", "my-app"),
            "libmy_app.so my-app"
        );
    }
}
