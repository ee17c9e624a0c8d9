//! The Rust mirror (`abi::ffi`) against the C header, as the C compiler sees
//! it: every struct's size and alignment, every field's offset, and every
//! constant. A C program generated from the table below is compiled with the
//! system C compiler (`cc`, or `$CC`), run, and its output compared with
//! `size_of`/`align_of`/`offset_of!` and with abi_stable's `TypeLayout`.
//!
//! A second test compiles the same program against the frozen ABI 1.0 header
//! (`tests/fixtures/abi-1.0/nwsgi.h`) and checks that 1.0 is a prefix of the
//! current ABI: a 1.0 plugin's descriptor is `NWSGI_APP_SIZE_1_0` bytes and
//! every field it has sits where the current header puts it.
//!
//! A C compiler is required: without one these tests fail (they never skip).

use abi::ffi;
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;
use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One `#[repr(C)]` struct of the boundary, seen from Rust.
struct RustStruct {
    name: &'static str,
    size: usize,
    align: usize,
    layout: &'static TypeLayout,
    /// Field names in declaration order, with their offsets.
    fields: Vec<(&'static str, usize)>,
}

macro_rules! rust_struct {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        RustStruct {
            name: stringify!($ty),
            size: size_of::<ffi::$ty>(),
            align: align_of::<ffi::$ty>(),
            layout: <ffi::$ty as StableAbi>::LAYOUT,
            fields: vec![$((stringify!($field), offset_of!(ffi::$ty, $field))),*],
        }
    };
}

/// Every struct that crosses the boundary (nwsgi_request is opaque).
fn rust_structs() -> Vec<RustStruct> {
    vec![
        rust_struct!(nwsgi_str { ptr, len }),
        rust_struct!(nwsgi_header { name, value }),
        rust_struct!(nwsgi_exc_info { message }),
        rust_struct!(nwsgi_response_head {
            status,
            headers,
            n_headers
        }),
        rust_struct!(nwsgi_host_api {
            struct_size,
            abi_major,
            abi_minor,
            start_response,
            write,
            read,
            log,
            environ_get,
            environ_each,
            start_response_static,
            write_last,
        }),
        rust_struct!(nwsgi_environ {
            struct_size,
            abi_major,
            abi_minor,
            request_method,
            script_name,
            path_info,
            query_string,
            content_type,
            content_length,
            server_name,
            server_port,
            server_protocol,
            remote_addr,
            remote_port,
            url_scheme,
            request_uri,
            headers,
            n_headers,
            multithread,
            multiprocess,
            run_once,
            has_body,
            api,
            raw_path_info,
        }),
        rust_struct!(nwsgi_body { state, next, close }),
        rust_struct!(nwsgi_init_args {
            struct_size,
            abi_major,
            abi_minor,
            api,
            config,
            n_config,
            fail,
            fail_ctx,
        }),
        rust_struct!(nwsgi_app {
            magic,
            abi_major,
            abi_minor,
            struct_size,
            flags,
            init,
            call,
            shutdown,
            name,
        }),
    ]
}

/// Every constant of the header, with the value `abi::ffi` gives it.
fn rust_constants() -> Vec<(&'static str, i64)> {
    vec![
        ("NWSGI_MAGIC", i64::from(ffi::NWSGI_MAGIC)),
        ("NWSGI_ABI_MAJOR", i64::from(ffi::NWSGI_ABI_MAJOR)),
        ("NWSGI_ABI_MINOR", i64::from(ffi::NWSGI_ABI_MINOR)),
        ("NWSGI_OK", i64::from(ffi::NWSGI_OK)),
        ("NWSGI_ERROR", i64::from(ffi::NWSGI_ERROR)),
        ("NWSGI_E_INVALID", i64::from(ffi::NWSGI_E_INVALID)),
        ("NWSGI_E_STATE", i64::from(ffi::NWSGI_E_STATE)),
        ("NWSGI_E_HEADERS_SENT", i64::from(ffi::NWSGI_E_HEADERS_SENT)),
        ("NWSGI_E_DISCONNECTED", i64::from(ffi::NWSGI_E_DISCONNECTED)),
        ("NWSGI_E_BAD_BODY", i64::from(ffi::NWSGI_E_BAD_BODY)),
        ("NWSGI_LOG_ERROR", i64::from(ffi::NWSGI_LOG_ERROR)),
        ("NWSGI_LOG_WARN", i64::from(ffi::NWSGI_LOG_WARN)),
        ("NWSGI_LOG_INFO", i64::from(ffi::NWSGI_LOG_INFO)),
        ("NWSGI_LOG_DEBUG", i64::from(ffi::NWSGI_LOG_DEBUG)),
        ("NWSGI_LOG_TRACE", i64::from(ffi::NWSGI_LOG_TRACE)),
        ("NWSGI_BODY_END", i64::from(ffi::NWSGI_BODY_END)),
        ("NWSGI_BODY_MORE", i64::from(ffi::NWSGI_BODY_MORE)),
        ("NWSGI_BODY_LAST", i64::from(ffi::NWSGI_BODY_LAST)),
        (
            "NWSGI_APP_THREAD_SAFE",
            i64::from(ffi::NWSGI_APP_THREAD_SAFE),
        ),
    ]
}

/// The header directories.
fn current_include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

fn abi_1_0_include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/abi-1.0")
}

/// What the C program printed.
#[derive(Debug, Default)]
struct CLayout {
    /// struct -> (size, align)
    sizes: BTreeMap<String, (usize, usize)>,
    /// "struct.field" -> offset
    offsets: BTreeMap<String, usize>,
    /// constant -> value
    constants: BTreeMap<String, i64>,
}

/// A C program printing `size <struct> <size> <align>`,
/// `offset <struct>.<field> <offset>` and `const <NAME> <value>` lines for
/// the given structs (fields) and constants.
fn c_program(structs: &[(&str, Vec<&str>)], constants: &[&str]) -> String {
    let mut c = String::from(
        "#include <stdalign.h>\n\
         #include <stddef.h>\n\
         #include <stdio.h>\n\
         #include \"nwsgi.h\"\n\
         \n\
         int main(void) {\n",
    );
    for (name, fields) in structs {
        c.push_str(&format!(
            "    printf(\"size {name} %zu %zu\\n\", sizeof({name}), alignof({name}));\n"
        ));
        for field in fields {
            c.push_str(&format!(
                "    printf(\"offset {name}.{field} %zu\\n\", offsetof({name}, {field}));\n"
            ));
        }
    }
    for constant in constants {
        c.push_str(&format!(
            "    printf(\"const {constant} %lld\\n\", (long long)({constant}));\n"
        ));
    }
    c.push_str("    return 0;\n}\n");
    c
}

/// Compiles `source` against the header in `include_dir` with the system C
/// compiler, runs it and parses its output. Panics (never skips) if there is
/// no C compiler.
fn run_c(tag: &str, source: &str, include_dir: &Path) -> CLayout {
    let dir = std::env::temp_dir().join(format!("nwsgi-abi-layout-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, source).unwrap_or_else(|e| panic!("writing {}: {e}", src.display()));

    // `$CC` may carry arguments (`CC="ccache cc"`), as in make.
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut cc_words = cc.split_whitespace();
    let program = cc_words.next().unwrap_or("cc");
    let output = Command::new(program)
        .args(cc_words)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-I")
        .arg(include_dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs a C compiler to check the ABI layout against nwsgi.h, \
                 but running `{cc}` failed: {e}. Install one (e.g. `apt-get install gcc`) \
                 or point $CC at it."
            )
        });
    assert!(
        output.status.success(),
        "`{cc}` failed to compile the layout probe against {}:\n{}\n--- source ---\n{source}",
        include_dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );

    let run = Command::new(&exe)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
    assert!(
        run.status.success(),
        "the layout probe failed: {:?}",
        run.status
    );
    let stdout = String::from_utf8(run.stdout).expect("probe output is ASCII");
    let _ = std::fs::remove_dir_all(&dir);

    let mut out = CLayout::default();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["size", name, size, align] => {
                out.sizes.insert(
                    (*name).to_owned(),
                    (size.parse().unwrap(), align.parse().unwrap()),
                );
            }
            ["offset", field, offset] => {
                out.offsets
                    .insert((*field).to_owned(), offset.parse().unwrap());
            }
            ["const", name, value] => {
                out.constants
                    .insert((*name).to_owned(), value.parse().unwrap());
            }
            _ => panic!("unexpected probe output line: {line:?}"),
        }
    }
    out
}

/// The field offsets a C compiler gives a struct whose fields have these
/// (size, alignment) pairs, in order.
fn c_offsets(fields: &[(usize, usize)]) -> Vec<usize> {
    let mut offset = 0_usize;
    fields
        .iter()
        .map(|&(size, align)| {
            offset = offset.next_multiple_of(align);
            let here = offset;
            offset += size;
            here
        })
        .collect()
}

fn probe_for(structs: &[RustStruct], constants: &[(&'static str, i64)]) -> String {
    let table: Vec<(&str, Vec<&str>)> = structs
        .iter()
        .map(|s| (s.name, s.fields.iter().map(|f| f.0).collect()))
        .collect();
    let names: Vec<&str> = constants.iter().map(|c| c.0).collect();
    c_program(&table, &names)
}

#[test]
fn rust_mirror_matches_c_header() {
    let structs = rust_structs();
    let constants = rust_constants();
    let c = run_c(
        "current",
        &probe_for(&structs, &constants),
        &current_include_dir(),
    );

    let mut mismatches = Vec::new();
    for s in &structs {
        // The field table above must list every field of the Rust struct, in
        // order: abi_stable's layout knows them all.
        let stable_fields = s
            .layout
            .get_fields()
            .unwrap_or_else(|| panic!("{} has no fields in its TypeLayout", s.name));
        let stable_names: Vec<&str> = stable_fields.iter().map(|f| f.name()).collect();
        let listed: Vec<&str> = s.fields.iter().map(|f| f.0).collect();
        assert_eq!(
            stable_names, listed,
            "{}: the test's field list is out of date with abi::ffi",
            s.name
        );

        // Size and alignment: C, Rust and abi_stable must agree.
        let (c_size, c_align) = c.sizes[s.name];
        if (c_size, c_align) != (s.size, s.align) {
            mismatches.push(format!(
                "{}: C size/align {c_size}/{c_align}, Rust {}/{}",
                s.name, s.size, s.align
            ));
        }
        if (s.layout.size(), s.layout.alignment()) != (s.size, s.align) {
            mismatches.push(format!(
                "{}: abi_stable size/align {}/{}, Rust {}/{}",
                s.name,
                s.layout.size(),
                s.layout.alignment(),
                s.size,
                s.align
            ));
        }

        // Offsets: C's offsetof against Rust's offset_of!, and against the
        // C layout rule applied to abi_stable's per-field sizes/alignments.
        let field_layouts: Vec<(usize, usize)> = stable_fields
            .iter()
            .map(|f| (f.layout().size(), f.layout().alignment()))
            .collect();
        let computed = c_offsets(&field_layouts);
        for (i, &(field, rust_offset)) in s.fields.iter().enumerate() {
            let key = format!("{}.{field}", s.name);
            let c_offset = c.offsets[&key];
            if c_offset != rust_offset {
                mismatches.push(format!("{key}: C offset {c_offset}, Rust {rust_offset}"));
            }
            if computed[i] != rust_offset {
                mismatches.push(format!(
                    "{key}: offset from abi_stable's field layouts {}, Rust {rust_offset}",
                    computed[i]
                ));
            }
        }
    }
    for (name, value) in &constants {
        let c_value = c.constants[*name];
        if c_value != *value {
            mismatches.push(format!("{name}: C {c_value}, Rust {value}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "abi::ffi disagrees with include/nwsgi.h:\n  {}",
        mismatches.join("\n  ")
    );

    // The 1.0 descriptor size the host accepts is the prefix up to `name`.
    assert_eq!(ffi::NWSGI_APP_SIZE_1_0, c.offsets["nwsgi_app.name"]);
    assert!(ffi::NWSGI_APP_SIZE_1_0 < size_of::<ffi::nwsgi_app>());
    // Likewise the 1.0 host table: everything before the 1.2 functions.
    assert_eq!(
        ffi::NWSGI_HOST_API_SIZE_1_0,
        c.offsets["nwsgi_host_api.start_response_static"]
    );
    // And the environ before 1.3's field.
    assert_eq!(
        ffi::NWSGI_ENVIRON_SIZE_1_0,
        c.offsets["nwsgi_environ.raw_path_info"]
    );
}

/// `NWSGI_ENVIRON_HAS`, the C test a plugin makes before reading a 1.3
/// field, on an environ of each size a host may send.
#[test]
fn environ_has_tells_which_fields_an_environ_has() {
    let full = size_of::<ffi::nwsgi_environ>();
    let mut source = String::from(
        "#include <stdio.h>\n\
         #include <string.h>\n\
         #include \"nwsgi.h\"\n\
         \n\
         int main(void) {\n\
         \x20   nwsgi_environ env;\n\
         \x20   memset(&env, 0, sizeof env);\n",
    );
    for (tag, size) in [("V10", ffi::NWSGI_ENVIRON_SIZE_1_0), ("V13", full)] {
        source.push_str(&format!("    env.struct_size = {size};\n"));
        for field in ["api", "raw_path_info"] {
            source.push_str(&format!(
                "    printf(\"const {tag}_{field} %d\\n\", (int)NWSGI_ENVIRON_HAS(&env, {field}));\n"
            ));
        }
    }
    source.push_str("    return 0;\n}\n");
    let c = run_c("environ-has", &source, &current_include_dir());
    let expect = [
        ("V10_api", 1),
        ("V10_raw_path_info", 0),
        ("V13_api", 1),
        ("V13_raw_path_info", 1),
    ];
    for (name, value) in expect {
        assert_eq!(c.constants[name], value, "NWSGI_ENVIRON_HAS for {name}");
    }
}

/// `NWSGI_API_HAS`, the C test a plugin makes before calling a 1.2
/// function, on a table of each size a host may have: 1.0/1.1, one pointer
/// short of 1.2, and 1.2.
#[test]
fn api_has_tells_which_functions_a_table_has() {
    let full = size_of::<ffi::nwsgi_host_api>();
    let short = full - size_of::<usize>();
    let sizes = [
        ("V10", ffi::NWSGI_HOST_API_SIZE_1_0),
        ("SHORT", short),
        ("V12", full),
    ];
    let mut source = String::from(
        "#include <stdio.h>\n\
         #include <string.h>\n\
         #include \"nwsgi.h\"\n\
         \n\
         int main(void) {\n\
         \x20   nwsgi_host_api api;\n\
         \x20   memset(&api, 0, sizeof api);\n",
    );
    for (tag, size) in sizes {
        source.push_str(&format!("    api.struct_size = {size};\n"));
        for field in ["environ_each", "start_response_static", "write_last"] {
            source.push_str(&format!(
                "    printf(\"const {tag}_{field} %d\\n\", (int)NWSGI_API_HAS(&api, {field}));\n"
            ));
        }
    }
    source.push_str("    return 0;\n}\n");
    let c = run_c("api-has", &source, &current_include_dir());
    let expect = [
        ("V10_environ_each", 1),
        ("V10_start_response_static", 0),
        ("V10_write_last", 0),
        ("SHORT_environ_each", 1),
        ("SHORT_start_response_static", 1),
        ("SHORT_write_last", 0),
        ("V12_environ_each", 1),
        ("V12_start_response_static", 1),
        ("V12_write_last", 1),
    ];
    for (name, value) in expect {
        assert_eq!(c.constants[name], value, "NWSGI_API_HAS for {name}");
    }
}

#[test]
fn abi_1_0_is_a_prefix_of_the_current_abi() {
    let fixture = abi_1_0_include_dir();
    assert!(
        fixture.join("nwsgi.h").is_file(),
        "missing frozen header {}",
        fixture.join("nwsgi.h").display()
    );

    // At 1.0, nwsgi_app had no `name` (1.1), the host table ended at
    // `environ_each` and there was no nwsgi_response_head (1.2); everything
    // else is unchanged.
    let mut structs = rust_structs();
    structs.retain(|s| s.name != "nwsgi_response_head");
    let app = structs
        .iter_mut()
        .find(|s| s.name == "nwsgi_app")
        .expect("nwsgi_app is in the table");
    assert_eq!(app.fields.pop().map(|f| f.0), Some("name"));
    let api = structs
        .iter_mut()
        .find(|s| s.name == "nwsgi_host_api")
        .expect("nwsgi_host_api is in the table");
    assert_eq!(api.fields.pop().map(|f| f.0), Some("write_last"));
    assert_eq!(api.fields.pop().map(|f| f.0), Some("start_response_static"));
    let env = structs
        .iter_mut()
        .find(|s| s.name == "nwsgi_environ")
        .expect("nwsgi_environ is in the table");
    assert_eq!(env.fields.pop().map(|f| f.0), Some("raw_path_info"));

    let constants = rust_constants();
    let c = run_c("abi-1.0", &probe_for(&structs, &constants), &fixture);

    let mut mismatches = Vec::new();
    let (env_size, _) = c.sizes["nwsgi_environ"];
    if env_size != ffi::NWSGI_ENVIRON_SIZE_1_0 {
        mismatches.push(format!(
            "sizeof(nwsgi_environ) at 1.0 is {env_size}, NWSGI_ENVIRON_SIZE_1_0 is {}",
            ffi::NWSGI_ENVIRON_SIZE_1_0
        ));
    }
    let (app_size, _) = c.sizes["nwsgi_app"];
    if app_size != ffi::NWSGI_APP_SIZE_1_0 {
        mismatches.push(format!(
            "sizeof(nwsgi_app) at 1.0 is {app_size}, NWSGI_APP_SIZE_1_0 is {}",
            ffi::NWSGI_APP_SIZE_1_0
        ));
    }
    let (api_size, _) = c.sizes["nwsgi_host_api"];
    if api_size != ffi::NWSGI_HOST_API_SIZE_1_0 {
        mismatches.push(format!(
            "sizeof(nwsgi_host_api) at 1.0 is {api_size}, NWSGI_HOST_API_SIZE_1_0 is {}",
            ffi::NWSGI_HOST_API_SIZE_1_0
        ));
    }
    for s in &structs {
        // The descriptor grew in 1.1, the host table in 1.2 and the environ
        // in 1.3; the other structs never changed.
        if !["nwsgi_app", "nwsgi_host_api", "nwsgi_environ"].contains(&s.name) {
            let c_size = c.sizes[s.name];
            if c_size != (s.size, s.align) {
                mismatches.push(format!(
                    "{}: 1.0 size/align {}/{}, current {}/{}",
                    s.name, c_size.0, c_size.1, s.size, s.align
                ));
            }
        }
        // Every 1.0 field sits where the current ABI puts it.
        for &(field, offset) in &s.fields {
            let key = format!("{}.{field}", s.name);
            let c_offset = c.offsets[&key];
            if c_offset != offset {
                mismatches.push(format!("{key}: 1.0 offset {c_offset}, current {offset}"));
            }
        }
    }
    for (name, value) in &constants {
        let expected = if *name == "NWSGI_ABI_MINOR" {
            0
        } else {
            *value
        };
        let c_value = c.constants[*name];
        if c_value != expected {
            mismatches.push(format!("{name}: 1.0 header {c_value}, expected {expected}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "ABI 1.0 is not a prefix of the current ABI:\n  {}",
        mismatches.join("\n  ")
    );
}
