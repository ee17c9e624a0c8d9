//! The Rust mirror of the ABI (`abi::ffi`) has the layout and constants of
//! the normative C header, as the C compiler sees it; and ABI 1.1 only
//! appended to 1.0 (the frozen 1.0 header in `tests/fixtures/abi-1.0`).

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};

use abi::ffi;
use integration_tests::artifacts::run_c_program;

/// One measured quantity (`sizeof nwsgi_str`, `nwsgi_app.name`, ...) to its
/// value.
type Layout = BTreeMap<String, u64>;

/// Lists every boundary struct with every field, once, and derives from the
/// list both the Rust measurements and a C program printing the same ones.
macro_rules! structs {
    ($($ty:ident { $($field:ident),* $(,)? })*) => {
        /// `(struct, fields)` for the C program.
        const STRUCTS: &[(&str, &[&str])] = &[$((stringify!($ty), &[$(stringify!($field)),*])),*];

        fn rust_layout() -> Layout {
            let mut layout = Layout::new();
            $(
                layout.insert(concat!("sizeof ", stringify!($ty)).into(), size_of::<ffi::$ty>() as u64);
                layout.insert(concat!("alignof ", stringify!($ty)).into(), align_of::<ffi::$ty>() as u64);
                $(
                    layout.insert(
                        concat!(stringify!($ty), ".", stringify!($field)).into(),
                        offset_of!(ffi::$ty, $field) as u64,
                    );
                )*
            )*
            layout
        }
    };
}

structs! {
    nwsgi_str { ptr, len }
    nwsgi_header { name, value }
    nwsgi_exc_info { message }
    nwsgi_host_api {
        struct_size, abi_major, abi_minor, start_response, write, read, log, environ_get,
        environ_each,
    }
    nwsgi_environ {
        struct_size, abi_major, abi_minor, request_method, script_name, path_info,
        query_string, content_type, content_length, server_name, server_port,
        server_protocol, remote_addr, remote_port, url_scheme, request_uri, headers,
        n_headers, multithread, multiprocess, run_once, has_body, api,
    }
    nwsgi_body { state, next, close }
    nwsgi_init_args {
        struct_size, abi_major, abi_minor, api, config, n_config, fail, fail_ctx,
    }
    nwsgi_app { magic, abi_major, abi_minor, struct_size, flags, init, call, shutdown, name }
}

/// The named constants, Rust value first; the C program prints the macro or
/// enumerator of the same name.
fn rust_constants() -> Layout {
    let constants: &[(&str, i64)] = &[
        ("NWSGI_MAGIC", ffi::NWSGI_MAGIC.into()),
        ("NWSGI_ABI_MAJOR", ffi::NWSGI_ABI_MAJOR.into()),
        ("NWSGI_ABI_MINOR", ffi::NWSGI_ABI_MINOR.into()),
        ("NWSGI_OK", ffi::NWSGI_OK.into()),
        ("NWSGI_ERROR", ffi::NWSGI_ERROR.into()),
        ("NWSGI_E_INVALID", ffi::NWSGI_E_INVALID.into()),
        ("NWSGI_E_STATE", ffi::NWSGI_E_STATE.into()),
        ("NWSGI_E_HEADERS_SENT", ffi::NWSGI_E_HEADERS_SENT.into()),
        ("NWSGI_E_DISCONNECTED", ffi::NWSGI_E_DISCONNECTED.into()),
        ("NWSGI_E_BAD_BODY", ffi::NWSGI_E_BAD_BODY.into()),
        ("NWSGI_LOG_ERROR", ffi::NWSGI_LOG_ERROR.into()),
        ("NWSGI_LOG_WARN", ffi::NWSGI_LOG_WARN.into()),
        ("NWSGI_LOG_INFO", ffi::NWSGI_LOG_INFO.into()),
        ("NWSGI_LOG_DEBUG", ffi::NWSGI_LOG_DEBUG.into()),
        ("NWSGI_LOG_TRACE", ffi::NWSGI_LOG_TRACE.into()),
        ("NWSGI_BODY_END", ffi::NWSGI_BODY_END.into()),
        ("NWSGI_BODY_MORE", ffi::NWSGI_BODY_MORE.into()),
        ("NWSGI_BODY_LAST", ffi::NWSGI_BODY_LAST.into()),
        ("NWSGI_APP_THREAD_SAFE", ffi::NWSGI_APP_THREAD_SAFE.into()),
    ];
    constants
        .iter()
        // Compared as the C program prints them: as 64-bit two's complement.
        .map(|&(name, value)| (name.to_owned(), value as u64))
        .collect()
}

/// A C program printing `<key> <value>` for every struct in `structs`
/// (skipping the fields in `skip`) and, if `constants`, every constant.
fn c_program(structs: &[(&str, &[&str])], skip: &[&str], constants: bool) -> String {
    let mut code = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include <stdalign.h>\n#include \"nwsgi.h\"\n\
         int main(void) {\n",
    );
    for (ty, fields) in structs {
        code +=
            &format!("    printf(\"sizeof {ty} %llu\\n\", (unsigned long long)sizeof({ty}));\n");
        code +=
            &format!("    printf(\"alignof {ty} %llu\\n\", (unsigned long long)alignof({ty}));\n");
        for field in fields
            .iter()
            .filter(|f| !skip.contains(&format!("{ty}.{f}").as_str()))
        {
            code += &format!(
                "    printf(\"{ty}.{field} %llu\\n\", (unsigned long long)offsetof({ty}, {field}));\n"
            );
        }
    }
    if constants {
        for name in rust_constants().keys() {
            code += &format!(
                "    printf(\"{name} %llu\\n\", (unsigned long long)(long long)({name}));\n"
            );
        }
    }
    code + "    return 0;\n}\n"
}

fn parse(output: &str) -> Layout {
    output
        .lines()
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').expect("`key value` lines");
            (key.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// Every entry that differs, as `key: left vs right`.
fn differences(left: &Layout, right: &Layout) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    keys.into_iter()
        .filter(|k| left.get(*k) != right.get(*k))
        .map(|k| format!("{k}: {:?} vs {:?}", left.get(k), right.get(k)))
        .collect()
}

#[test]
fn rust_structs_match_the_c_header() {
    let c = parse(&run_c_program(
        &c_program(STRUCTS, &[], false),
        "abi/include",
    ));
    let diff = differences(&rust_layout(), &c);
    assert!(diff.is_empty(), "Rust vs C layout:\n{}", diff.join("\n"));
}

#[test]
fn rust_constants_match_the_c_header() {
    let c = parse(&run_c_program(&c_program(&[], &[], true), "abi/include"));
    let diff = differences(&rust_constants(), &c);
    assert!(diff.is_empty(), "Rust vs C constants:\n{}", diff.join("\n"));
}

/// Within a major version structs only grow at the end: every field the 1.0
/// header has sits at the same offset in 1.1, and no struct shrank.
#[test]
fn abi_1_1_only_appends_to_1_0() {
    let new_in_1_1 = ["nwsgi_app.name"];
    let v1_0 = parse(&run_c_program(
        &c_program(STRUCTS, &new_in_1_1, false),
        "tests/fixtures/abi-1.0",
    ));
    let v1_1 = parse(&run_c_program(
        &c_program(STRUCTS, &[], false),
        "abi/include",
    ));
    let mut problems = Vec::new();
    for (key, old) in &v1_0 {
        let new = v1_1[key];
        let ok = if key.starts_with("sizeof ") {
            new >= *old
        } else {
            new == *old
        };
        if !ok {
            problems.push(format!("{key}: 1.0 has {old}, 1.1 has {new}"));
        }
    }
    assert!(
        problems.is_empty(),
        "1.1 is not an append-only extension of 1.0:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        v1_0["sizeof nwsgi_app"],
        ffi::NWSGI_APP_SIZE_1_0 as u64,
        "NWSGI_APP_SIZE_1_0 should be the 1.0 header's sizeof(nwsgi_app)"
    );
}
