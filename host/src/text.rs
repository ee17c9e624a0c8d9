//! Bytes from outside (a client, a plugin) shown in a log line or on a
//! terminal: whatever they hold, they print as one line of themselves.
//!
//! A `\n` in an app's log message would otherwise forge a host log line,
//! and an escape sequence would reach the operator's terminal raw. UTF-8
//! text passes as it is; control characters (C0, DEL, C1), the
//! bidirectional overrides that reorder what a reader sees, bytes that are
//! not UTF-8, and the backslash itself are written as escapes, so an
//! escape in the output always means the input had that byte.
use std::fmt::{self, Write};

/// Displays `bytes` escaped (see the module). Costs nothing until printed.
#[derive(Clone, Copy)]
pub struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    c if (c as u32) < 0x80 && c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
                    c if c.is_control() || is_bidi_control(c) => {
                        write!(f, "\\u{{{:x}}}", c as u32)?;
                    }
                    c => f.write_char(c)?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `Shown` for a `&str` (valid UTF-8 that may still hold controls).
pub fn shown(s: &str) -> Shown<'_> {
    Shown(s.as_bytes())
}

/// Embedding, override and isolate controls (the "Trojan Source" set).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(b: &[u8]) -> String {
        Shown(b).to_string()
    }

    #[test]
    fn plain_text_and_utf8_pass() {
        assert_eq!(show(b"GET / HTTP/1.1"), "GET / HTTP/1.1");
        assert_eq!(
            show("caf\u{e9} \u{1f600}".as_bytes()),
            "caf\u{e9} \u{1f600}"
        );
    }

    #[test]
    fn controls_and_invalid_bytes_are_escaped() {
        assert_eq!(
            show(b"a\nINFO forged\r\x1b[31m\x7f\x00"),
            "a\\nINFO forged\\r\\x1b[31m\\x7f\\x00"
        );
        assert_eq!(show(b"\xff\xfe ok \xc3"), "\\xff\\xfe ok \\xc3");
        assert_eq!(show("\u{85}\u{202e}x".as_bytes()), "\\u{85}\\u{202e}x");
        // An escape in the output always means the input had that byte.
        assert_eq!(show(b"\\x0a"), "\\\\x0a");
    }

    #[test]
    fn output_is_one_line_of_printable_text() {
        let all: Vec<u8> = (0..=255u8).collect();
        let out = show(&all);
        assert!(out.chars().all(|c| !c.is_control()), "{out:?}");
    }
}
