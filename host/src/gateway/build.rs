//! What a plugin's file says about how it was built, beyond its descriptor:
//! for now, whether a Rust library can catch its own panics.
//!
//! A Rust plugin built with `panic = "abort"` cannot stop a panic at the
//! boundary: the panic kills the worker process (with every request it was
//! serving), and a panic hook like the SDK's, which records the panic for
//! the log line the boundary would have written, leaves nothing behind. The
//! SDK's `export_app!` refuses to compile such a plugin; `host check` warns
//! about the ones built without it.
//!
//! The file is read, not the loaded image, and only what `strip` keeps:
//! - Rust: rustc writes `rustc version ...` into each object file's
//!   `.comment` section, and the linker keeps it in the library's.
//! - Unwinding: Rust's unwinding runtime (`panic_unwind`, which every Rust
//!   library built with `panic = "unwind"` links in) starts a panic with
//!   `_Unwind_RaiseException`; the abort runtime (`panic_abort`) never
//!   refers to it. On Linux it is imported from libgcc_s, so it is in the
//!   dynamic symbol table even of a stripped library; an unwinder linked in
//!   statically defines it instead, found in `.symtab` while that is there.
//!
//! Both signals were checked on cdylibs built with each strategy, with and
//! without `strip`, fat LTO and `opt-level = "z"`; `tests/panic_abort.rs`
//! checks stripped builds of each. A library that mixes languages may
//! import the symbol for its C++ part while its Rust part aborts: that goes
//! unnoticed. A C or C++ library is never warned about: it has no rustc
//! comment.

use object::{Object, ObjectSection, ObjectSymbol};

/// How a Rust library's panics end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicStrategy {
    /// They unwind, so a boundary can catch them (`catch_unwind`).
    Unwind,
    /// They abort the process.
    Abort,
}

/// The panic strategy of the Rust library in `file` (an ELF shared
/// library's bytes); `None` if it is not a Rust library (or not ELF).
pub fn rust_panic_strategy(file: &[u8]) -> Option<PanicStrategy> {
    let elf = object::File::parse(file).ok()?;
    let comment = elf.section_by_name(".comment")?.data().ok()?;
    if !contains(comment, b"rustc version ") {
        return None;
    }
    let raises = elf
        .dynamic_symbols()
        .chain(elf.symbols())
        .any(|sym| sym.name_bytes() == Ok(b"_Unwind_RaiseException".as_slice()));
    Some(if raises {
        PanicStrategy::Unwind
    } else {
        PanicStrategy::Abort
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary is Rust, linked with `panic = "unwind"` (as every
    /// test is).
    #[test]
    fn a_rust_binary_built_to_unwind_unwinds() {
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        assert_eq!(rust_panic_strategy(&bytes), Some(PanicStrategy::Unwind));
    }

    #[test]
    fn not_elf_is_no_rust_library() {
        assert_eq!(rust_panic_strategy(b"\x7fELF but not really"), None);
        assert_eq!(rust_panic_strategy(b""), None);
    }
}
