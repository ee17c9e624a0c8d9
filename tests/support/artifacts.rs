//! Where the binaries under test are, and building the C ones.
//!
//! The host and the Rust plugins come from `cargo build --workspace`: they sit
//! in the target directory of the current profile, which is found from the
//! test binary's own path (`target/<profile>/deps/<test>-<hash>`), so
//! `CARGO_TARGET_DIR` and `--release` are honoured without looking at them.
//!
//! The C and C++ plugins and fixtures are compiled here with the system
//! compilers (`$CC`, else `cc`; `$CXX`, else `c++`), once per test process.
//! Several test binaries run at the same time and may compile the same
//! library: each compiles to a file name of its own and renames it into
//! place, which is atomic, so a host never loads a half-written library.
//! The Rust fixtures that must not be built with the workspace's settings
//! (a `panic = "abort"` library) are compiled with `rustc` the same way.

use std::collections::BTreeMap;
use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The workspace root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
}

/// The target directory of the current profile, e.g. `target/debug`.
pub fn target_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary knows its own path");
        let mut dir = exe
            .parent()
            .expect("the test binary is in a directory")
            .to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        dir
    })
}

fn built(file: &str) -> PathBuf {
    let path = target_dir().join(file);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// The `host` binary.
pub fn host() -> PathBuf {
    built(&format!("host{}", std::env::consts::EXE_SUFFIX))
}

/// A Rust plugin built by the workspace, by crate name (`"echo"`).
pub fn rust_plugin(crate_name: &str) -> PathBuf {
    built(&format!("{DLL_PREFIX}{crate_name}{DLL_SUFFIX}"))
}

/// `plugins/hello-c`, exporting `app`.
pub fn hello_c() -> PathBuf {
    compile_c("hello_c", "plugins/hello-c/hello.c", "abi/include")
}

/// `plugins/hello-cpp`, exporting `app`: built as C++17 with every warning
/// an error (`-Wall -Wextra -Werror -pedantic`) and `-fvisibility=hidden`,
/// as a strict C++ project would build it.
pub fn hello_cpp() -> PathBuf {
    once("hello_cpp", |tmp| {
        let root = repo_root();
        let mut args = vec!["-std=c++17".to_owned()];
        args.extend(STRICT.iter().map(|a| (*a).to_owned()));
        args.push(format!("-I{}", root.join("abi/include").display()));
        Compiler::cxx()
            .shared_library(&root.join("plugins/hello-cpp/hello.cpp"), &args, tmp)
            .unwrap_or_else(|e| panic!("{e}"));
    })
}

/// How a strict project builds: every warning an error, and hidden
/// visibility (under which `NWSGI_EXPORT` must still export `app`).
pub const STRICT: [&str; 5] = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-fvisibility=hidden",
];

/// `plugins/testapps-c`, exporting `app`.
pub fn testapps_c() -> PathBuf {
    compile_c("testapps_c", "plugins/testapps-c/testapps.c", "abi/include")
}

/// `plugins/helpers-c`, exporting `app`: a plugin written with
/// `nwsgi_util.h`.
pub fn helpers_c() -> PathBuf {
    compile_c("helpers_c", "plugins/helpers-c/helpers.c", "abi/include")
}

/// `plugins/mistakes-c`, exporting `app`: a route per plugin mistake.
pub fn mistakes_c() -> PathBuf {
    compile_c("mistakes_c", "plugins/mistakes-c/mistakes.c", "abi/include")
}

/// The frozen ABI 1.0 application, built against the 1.0 header.
pub fn app10() -> PathBuf {
    compile_c(
        "app10",
        "tests/fixtures/abi-1.0/app10.c",
        "tests/fixtures/abi-1.0",
    )
}

/// One of the broken plugins in `tests/fixtures/bad/` (`"bad_magic"`, ...).
pub fn bad_plugin(name: &str) -> PathBuf {
    compile_c(name, &format!("tests/fixtures/bad/{name}.c"), "abi/include")
}

/// `tests/fixtures/rust-no-sdk/plugin.rs`, a Rust plugin written without the
/// SDK, built by `rustc` with `-C panic=<panic>` (`"unwind"` or `"abort"`)
/// and stripped, exporting `app`.
pub fn rust_no_sdk(panic: &str) -> PathBuf {
    once(&format!("rust_no_sdk_{panic}"), |tmp| {
        let source = repo_root().join("tests/fixtures/rust-no-sdk/plugin.rs");
        let mut args: Vec<OsString> = ["--crate-type", "cdylib", "--crate-name", "rust_no_sdk"]
            .map(OsString::from)
            .to_vec();
        args.push(format!("-Cpanic={panic}").into());
        args.push("-Cstrip=symbols".into());
        args.push("-o".into());
        args.push(tmp.into());
        args.push(source.into());
        rustc(&args).unwrap_or_else(|e| panic!("{e}"));
    })
}

/// Runs `rustc` (`$RUSTC`, else the one on `PATH`, run in the repository
/// root so that a toolchain file there counts) with `--edition 2021` and
/// `args`: `Err` with its diagnostics if it fails.
pub fn rustc(args: &[OsString]) -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let result = Command::new(&rustc)
        .current_dir(repo_root())
        .args(["--edition", "2021"])
        .args(args)
        .output()
        .map_err(|e| format!("running `{rustc}`: {e}"))?;
    if result.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{rustc} {}` failed ({}):\n{}",
            args.join(std::ffi::OsStr::new(" ")).to_string_lossy(),
            result.status,
            String::from_utf8_lossy(&result.stderr)
        ))
    }
}

/// The `abi` crate as built for these tests, to compile a plugin against
/// the SDK with [`rustc`] (`--extern abi=<this>`, its dependencies in
/// `<target>/deps`): the newest `libabi-*.rlib` there, i.e. the one cargo
/// built last, from the current source.
pub fn abi_rlib() -> PathBuf {
    let deps = target_dir().join("deps");
    let entries = fs::read_dir(&deps).unwrap_or_else(|e| panic!("reading {}: {e}", deps.display()));
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libabi-") && name.ends_with(".rlib")
        })
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .max()
        .map(|(_, path)| path)
        .unwrap_or_else(|| {
            panic!(
                "no libabi-*.rlib in {}: build the workspace first",
                deps.display()
            )
        })
}

/// A text file named like a shared library.
pub fn not_a_library() -> PathBuf {
    let dest = c_output_dir().join(format!("{DLL_PREFIX}not_a_library{DLL_SUFFIX}"));
    let tmp = unique_sibling(&dest);
    let src = repo_root().join("tests/fixtures/bad/not-a-library.txt");
    fs::copy(&src, &tmp).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
    fs::rename(&tmp, &dest).unwrap_or_else(|e| panic!("renaming to {}: {e}", dest.display()));
    dest
}

/// Where the libraries built here go (C, C++, and Rust built without cargo).
fn c_output_dir() -> PathBuf {
    let dir = target_dir().join("c-plugins");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// A file name next to `path` that no other process or thread uses.
fn unique_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = OsString::from(".");
    name.push(path.file_name().expect("a file path"));
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Compiles `source` (relative to the repository root) into
/// `<target>/c-plugins/lib<stem>.so`, once per process.
fn compile_c(stem: &str, source: &str, include: &str) -> PathBuf {
    once(stem, |tmp| {
        let root = repo_root();
        cc(&root.join(source), &root.join(include), &[], tmp);
    })
}

/// `<target>/c-plugins/lib<stem>.so`, made by `build` (into the temporary
/// path it is given) the first time this process asks for `stem`.
fn once(stem: &str, build: impl FnOnce(&Path)) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    // Held while compiling so a library is compiled once even when several
    // tests of this process ask for it at the same moment.
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.get(stem) {
        return path.clone();
    }
    let dest = c_output_dir().join(format!("{DLL_PREFIX}{stem}{DLL_SUFFIX}"));
    let tmp = unique_sibling(&dest);
    build(&tmp);
    fs::rename(&tmp, &dest).unwrap_or_else(|e| panic!("renaming to {}: {e}", dest.display()));
    built.insert(stem.to_owned(), dest.clone());
    dest
}

/// Compiles `source` (relative to the repository root) against
/// `abi/include` into `output`, with one `-D` per entry of `defines`
/// (`NAME` or `NAME=VALUE`). Not cached: each call compiles. The library is
/// written under another name and renamed over `output`, so a host loading
/// or watching `output` never sees a half-written file.
pub fn compile_c_into(source: &str, defines: &[&str], output: &Path) {
    let root = repo_root();
    let tmp = unique_sibling(output);
    cc(&root.join(source), &root.join("abi/include"), defines, &tmp);
    fs::rename(&tmp, output).unwrap_or_else(|e| panic!("renaming to {}: {e}", output.display()));
}

/// `tests/fixtures/swap/app.c` built as `build_id` (what its answers and its
/// shutdown log line name) with `extra` defines (`"INIT_FAIL"`,
/// `"INIT_CRASH"`), into `output` (see [`compile_c_into`]).
pub fn swap_plugin(build_id: &str, extra: &[&str], output: &Path) {
    let build = format!("BUILD_ID=\"{build_id}\"");
    let mut defines = vec![build.as_str()];
    defines.extend_from_slice(extra);
    compile_c_into("tests/fixtures/swap/app.c", &defines, output);
}

/// Runs the C compiler (`$CC`, else `cc`) to build a shared library;
/// panics with its diagnostics.
fn cc(source: &Path, include: &Path, defines: &[&str], output: &Path) {
    let mut args = vec!["-O2".to_owned(), "-std=c11".to_owned()];
    args.push(format!("-I{}", include.display()));
    args.extend(defines.iter().map(|d| format!("-D{d}")));
    Compiler::c()
        .shared_library(source, &args, output)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The language a [`Compiler`] compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    C,
    Cxx,
}

/// A C or C++ compiler command. It may carry arguments
/// (`CC="ccache cc"`), as in make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiler {
    words: Vec<String>,
}

impl Compiler {
    /// `$CC`, else `cc`.
    pub fn c() -> Compiler {
        Compiler::from_env("CC", "cc")
    }

    /// `$CXX`, else `c++`.
    pub fn cxx() -> Compiler {
        Compiler::from_env("CXX", "c++")
    }

    fn from_env(var: &str, default: &str) -> Compiler {
        let command = std::env::var(var).unwrap_or_else(|_| default.to_owned());
        let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        if words.is_empty() {
            Compiler::named(default)
        } else {
            Compiler { words }
        }
    }

    fn named(program: &str) -> Compiler {
        Compiler {
            words: vec![program.to_owned()],
        }
    }

    /// Every distinct compiler for `lang` here: the default one (`$CC` or
    /// `cc`, `$CXX` or `c++`), then GCC's and Clang's if installed and not
    /// the same executable. The second is what tells a portable header from
    /// one that only one compiler accepts; `.ci/run` installs both.
    pub fn all(lang: Lang) -> Vec<Compiler> {
        let (default, others) = match lang {
            Lang::C => (Compiler::c(), ["gcc", "clang"]),
            Lang::Cxx => (Compiler::cxx(), ["g++", "clang++"]),
        };
        let mut found = vec![default];
        let mut seen = vec![found[0].identity()];
        for name in others {
            let compiler = Compiler::named(name);
            let identity = compiler.identity();
            if identity.0.is_some() && !seen.contains(&identity) {
                seen.push(identity);
                found.push(compiler);
            }
        }
        found
    }

    /// What tells two compiler commands apart: the executable the program
    /// resolves to (`None` if not installed) and the other words.
    fn identity(&self) -> (Option<PathBuf>, Vec<String>) {
        (resolve(&self.words[0]), self.words[1..].to_vec())
    }

    /// The command as typed, e.g. `clang++`.
    pub fn name(&self) -> String {
        self.words.join(" ")
    }

    /// Runs the compiler with `args`: `Err` with the command and its
    /// diagnostics if it fails (or cannot be run at all).
    pub fn run(&self, args: &[String]) -> Result<(), String> {
        let name = self.name();
        let result = Command::new(&self.words[0])
            .args(&self.words[1..])
            .args(args)
            .output()
            .map_err(|e| {
                format!(
                    "running the compiler `{name}`: {e} (install it: `apt-get install gcc g++`)"
                )
            })?;
        if result.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{name} {}` failed ({}):\n{}",
                args.join(" "),
                result.status,
                String::from_utf8_lossy(&result.stderr)
            ))
        }
    }

    /// Compiles `source` with `args` into the shared library `output`
    /// (removed again if the compiler fails).
    pub fn shared_library(
        &self,
        source: &Path,
        args: &[String],
        output: &Path,
    ) -> Result<(), String> {
        let mut all = vec!["-shared".to_owned(), "-fPIC".to_owned(), "-o".to_owned()];
        all.push(output.display().to_string());
        all.push(source.display().to_string());
        all.extend_from_slice(args);
        self.run(&all).inspect_err(|_| {
            let _ = fs::remove_file(output);
        })
    }
}

/// Where `program` is, as `execvp` would find it, with symbolic links
/// resolved (`cc` is often a link to `gcc`).
fn resolve(program: &str) -> Option<PathBuf> {
    let path = if program.contains('/') {
        PathBuf::from(program)
    } else {
        let dirs = std::env::var_os("PATH")?;
        std::env::split_paths(&dirs)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())?
    };
    fs::canonicalize(path).ok()
}

/// A path for a scratch file, removed when dropped.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(label: &str) -> TempFile {
        let dir = target_dir().join("test-tmp");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        TempFile {
            path: unique_sibling(&dir.join(label)),
        }
    }

    /// The file's contents, or "" while it does not exist.
    pub fn read(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A scratch directory, removed with everything in it when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = target_dir().join("test-tmp");
        let path = unique_sibling(&dir.join(label));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    /// `path` joined to the directory.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        self.path.join(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
