//! A Rust plugin built with `panic = "abort"` cannot catch a panic at the
//! boundary: one panic kills the worker process and every request it
//! serves. The SDK refuses to compile such a plugin; `host check` warns
//! about one built without the SDK, stripped or not.

use std::ffi::OsString;

use integration_tests::artifacts::{self, TempDir};
use integration_tests::server::{self, plugin_spec};

/// The start of `host check`'s line about such a library.
const WARNING: &str = "warning: a Rust library built with panic = \"abort\"";

/// Type-checks `tests/fixtures/sdk-plugin/plugin.rs`, a plugin using the
/// SDK's `export_app!`, as a cdylib built with `-C panic=<panic>`.
fn check_sdk_plugin(panic: &str) -> Result<(), String> {
    let out = TempDir::new("sdk-plugin");
    let mut abi = OsString::from("abi=");
    abi.push(artifacts::abi_rlib());
    let mut deps = OsString::from("dependency=");
    deps.push(artifacts::target_dir().join("deps"));
    let source = artifacts::repo_root().join("tests/fixtures/sdk-plugin/plugin.rs");
    let mut args: Vec<OsString> = [
        "--crate-type",
        "cdylib",
        "--crate-name",
        "sdk_plugin",
        "--emit=metadata",
    ]
    .map(OsString::from)
    .to_vec();
    args.push(format!("-Cpanic={panic}").into());
    args.extend(["--extern".into(), abi, "-L".into(), deps]);
    args.extend(["--out-dir".into(), out.path.clone().into(), source.into()]);
    artifacts::rustc(&args)
}

#[test]
fn the_sdk_refuses_to_compile_a_plugin_built_with_panic_abort() {
    // The same source compiles to unwind, so the refusal is the strategy's.
    check_sdk_plugin("unwind").unwrap_or_else(|e| panic!("{e}"));
    let err = check_sdk_plugin("abort").expect_err("export_app! accepted panic = \"abort\"");
    assert!(
        err.contains("abi::export_app!: a plugin must be built with panic = \"unwind\""),
        "{err}"
    );
}

/// `host check <plugin>:app`, which must succeed; its stdout.
fn check(plugin: &std::path::Path) -> String {
    let spec = plugin_spec(plugin, "app");
    let run = server::run(["check", spec.as_str()]);
    assert!(run.status.success(), "host check failed: {run:#?}");
    run.stdout
}

#[test]
fn check_warns_about_a_stripped_rust_plugin_built_with_panic_abort() {
    let out = check(&artifacts::rust_no_sdk("abort"));
    assert!(out.contains("name: rust-no-sdk"), "{out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(warnings[0].starts_with(WARNING), "{out}");
}

#[test]
fn check_does_not_warn_about_plugins_that_catch_their_panics() {
    let plugins = [
        artifacts::rust_no_sdk("unwind"), // the same source, stripped too
        artifacts::rust_plugin("hello"),  // the SDK
        artifacts::hello_c(),
        artifacts::hello_cpp(),
    ];
    for plugin in plugins {
        let out = check(&plugin);
        assert!(!out.contains("warning"), "{}:\n{out}", plugin.display());
    }
}
