//! The case-file format of the HTTP/1.1 conformance and request-smuggling
//! corpus in `tests/corpus/` (run by `tests/corpus.rs`). The format is
//! described for authors in `tests/corpus/README.md`; this is its parser.
//!
//! A case is a list of steps: byte segments to send and responses to expect,
//! in order, then what the connection must do after the last response.
//! Parsing is strict: an unknown line, a bad escape or a case without a
//! reference is an error naming the file and line, so a typo cannot silently
//! turn a case into one that tests nothing.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::Path;

/// One case of the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    /// `file:line` of the `case:` line, for failure messages.
    pub location: String,
    /// RFC sections and smuggling techniques it covers (`ref:` lines).
    pub refs: Vec<String>,
    pub steps: Vec<Step>,
    pub then: Then,
}

/// A step of a case, in the order it happens on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Bytes sent in one write (or byte by byte in bytewise mode).
    Send(Vec<u8>),
    /// The next response the server must send.
    Expect(Expected),
}

/// What the connection must do after the last expected response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// The server closes it, and sends nothing more.
    Close,
    /// It stays usable for another request.
    Open,
}

/// What the `Connection` header of a response must (not) list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnToken {
    pub token: String,
    pub present: bool,
}

/// One expected response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Acceptable status codes (`400|501` lists alternatives the RFC allows).
    pub statuses: Vec<u16>,
    /// `100?`: an interim response the server may or may not send.
    pub optional: bool,
    /// The response to a HEAD request: a head and no body, whatever its
    /// Content-Length says.
    pub head: bool,
    pub connection: Vec<ConnToken>,
    /// What the echo app must have seen; `None` is not checked.
    pub echo: EchoExpected,
    /// 1-based line of the `<` line.
    pub line: usize,
}

/// Expected fields of the echo app's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EchoExpected {
    pub method: Option<Vec<u8>>,
    pub version: Option<Vec<u8>>,
    pub uri: Option<Vec<u8>>,
    /// The whole header list, in order (names compared exactly).
    pub headers: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Header names that must not appear (case-insensitive).
    pub absent: Vec<Vec<u8>>,
    pub body: Option<Vec<u8>>,
}

impl EchoExpected {
    /// Whether anything about the echo answer is checked.
    pub fn is_checked(&self) -> bool {
        self.method.is_some()
            || self.version.is_some()
            || self.uri.is_some()
            || self.headers.is_some()
            || !self.absent.is_empty()
            || self.body.is_some()
    }
}

impl fmt::Display for Expected {
    /// The `<` line as written, e.g. `400|501 conn=close`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<String> = self.statuses.iter().map(u16::to_string).collect();
        f.write_str(&statuses.join("|"))?;
        if self.optional {
            f.write_str("?")?;
        }
        if self.head {
            f.write_str(" head")?;
        }
        for c in &self.connection {
            let op = if c.present { "=" } else { "!=" };
            write!(f, " conn{op}{}", c.token)?;
        }
        Ok(())
    }
}

/// Reads every `*.txt` file of `dir` (in name order) and parses it; checks
/// that case names are unique across files.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>, String> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading {}: {e}", dir.display()))?;
    files.retain(|p| p.extension().is_some_and(|e| e == "txt"));
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let text =
            fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        cases.extend(parse(&name, &text)?);
    }
    let mut seen = BTreeSet::new();
    for case in &cases {
        if !seen.insert(case.name.as_str()) {
            return Err(format!(
                "{}: duplicate case name {:?}",
                case.location, case.name
            ));
        }
    }
    Ok(cases)
}

/// Parses one case file; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Vec<Case>, String> {
    let mut cases: Vec<Case> = Vec::new();
    let mut current: Option<Draft> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let at = |msg: String| format!("{file}:{line_no}: {msg}");
        // Unescaped trailing whitespace is never significant (editors strip
        // it); write `\s` or `\t` where it matters.
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix("case:") {
            if let Some(draft) = current.take() {
                cases.push(draft.finish()?);
            }
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(at(format!("a case name is one word, got {name:?}")));
            }
            current = Some(Draft::new(name, format!("{file}:{line_no}")));
            continue;
        }
        let draft = current.as_mut().ok_or_else(|| {
            at("this line is outside any case (start one with `case: NAME`)".into())
        })?;
        draft.line(trimmed, line_no).map_err(at)?;
    }
    if let Some(draft) = current.take() {
        cases.push(draft.finish()?);
    }
    Ok(cases)
}

/// A case being read.
struct Draft {
    case: Case,
    then: Option<Then>,
    /// Bytes of the send segment being accumulated.
    segment: Option<Vec<u8>>,
}

impl Draft {
    fn new(name: &str, location: String) -> Draft {
        Draft {
            case: Case {
                name: name.to_owned(),
                location,
                refs: Vec::new(),
                steps: Vec::new(),
                then: Then::Close,
            },
            then: None,
            segment: None,
        }
    }

    fn flush_segment(&mut self) {
        if let Some(bytes) = self.segment.take() {
            self.case.steps.push(Step::Send(bytes));
        }
    }

    /// The response the echo lines refer to: the last `<` line, with no send
    /// after it.
    fn last_expected(&mut self, key: &str) -> Result<&mut Expected, String> {
        match (&self.segment, self.case.steps.last_mut()) {
            (None, Some(Step::Expect(e))) => Ok(e),
            _ => Err(format!("`{key}` must follow a `<` line")),
        }
    }

    fn line(&mut self, line: &str, line_no: usize) -> Result<(), String> {
        if self.then.is_some() {
            return Err("nothing may follow `then:` in a case".into());
        }
        // Request bytes: `>` appends CRLF, `~` appends nothing.
        if let Some(rest) = line.strip_prefix('>') {
            let mut bytes = unescape(strip_one_space(rest))?;
            bytes.extend_from_slice(b"\r\n");
            self.segment.get_or_insert_with(Vec::new).extend(bytes);
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix('~') {
            let bytes = unescape(strip_one_space(rest))?;
            self.segment.get_or_insert_with(Vec::new).extend(bytes);
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix('<') {
            self.flush_segment();
            let mut expected = parse_expected(rest)?;
            expected.line = line_no;
            self.case.steps.push(Step::Expect(expected));
            return Ok(());
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("unknown line {line:?}"))?;
        let value = strip_one_space(value);
        match key {
            "ref" => {
                if value.trim().is_empty() {
                    return Err("empty `ref:`".into());
                }
                self.case.refs.push(value.trim().to_owned());
            }
            "then" => {
                self.flush_segment();
                self.then = Some(match value.trim() {
                    "close" => Then::Close,
                    "open" => Then::Open,
                    other => return Err(format!("`then:` is `close` or `open`, not {other:?}")),
                });
            }
            "echo.method" => self.last_expected(key)?.echo.method = Some(unescape(value)?),
            "echo.version" => self.last_expected(key)?.echo.version = Some(unescape(value)?),
            "echo.uri" => self.last_expected(key)?.echo.uri = Some(unescape(value)?),
            "echo.body" => self.last_expected(key)?.echo.body = Some(unescape(value)?),
            "echo.no-header" => {
                let name = unescape(value.trim())?;
                self.last_expected(key)?.echo.absent.push(name);
            }
            "echo.header" => {
                let (name, field) = value
                    .split_once(':')
                    .ok_or_else(|| format!("`echo.header:` wants `NAME: VALUE`, got {value:?}"))?;
                let pair = (unescape(name)?, unescape(strip_one_space(field))?);
                let expected = self.last_expected(key)?;
                expected
                    .echo
                    .headers
                    .get_or_insert_with(Vec::new)
                    .push(pair);
            }
            "echo.no-headers" => {
                self.last_expected(key)?.echo.headers = Some(Vec::new());
            }
            _ => return Err(format!("unknown key {key:?} in {line:?}")),
        }
        Ok(())
    }

    fn finish(self) -> Result<Case, String> {
        let Draft {
            mut case,
            then,
            segment,
        } = self;
        let err = |msg: &str| format!("{}: case {}: {msg}", case.location, case.name);
        if segment.is_some() {
            return Err(err(
                "request bytes after the last `<` line are never checked",
            ));
        }
        case.then = then.ok_or_else(|| err("no `then: close|open` line"))?;
        if case.refs.is_empty() {
            return Err(err("no `ref:` line (RFC section or technique)"));
        }
        if !matches!(case.steps.first(), Some(Step::Send(_))) {
            return Err(err("a case starts with request bytes"));
        }
        match case.steps.last() {
            Some(Step::Expect(e)) if !e.optional => {}
            _ => return Err(err("a case ends with a (non-optional) `<` line")),
        }
        Ok(case)
    }
}

/// `< STATUS[|STATUS...][?] [head] [conn=TOKEN] [conn!=TOKEN]`
fn parse_expected(rest: &str) -> Result<Expected, String> {
    let mut words = rest.split_whitespace();
    let status = words.next().ok_or("`<` needs a status")?;
    let (status, optional) = match status.strip_suffix('?') {
        Some(s) => (s, true),
        None => (status, false),
    };
    let statuses = status
        .split('|')
        .map(|s| match s.parse::<u16>() {
            Ok(code) if (100..=599).contains(&code) && s.len() == 3 => Ok(code),
            _ => Err(format!("bad status {s:?}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut expected = Expected {
        statuses,
        optional,
        ..Expected::default()
    };
    for word in words {
        if word == "head" {
            expected.head = true;
        } else if let Some(token) = word.strip_prefix("conn!=") {
            expected.connection.push(ConnToken {
                token: token.to_owned(),
                present: false,
            });
        } else if let Some(token) = word.strip_prefix("conn=") {
            expected.connection.push(ConnToken {
                token: token.to_owned(),
                present: true,
            });
        } else {
            return Err(format!("unknown word {word:?} on a `<` line"));
        }
    }
    Ok(expected)
}

/// The single space that separates a marker or key from its text.
fn strip_one_space(s: &str) -> &str {
    s.strip_prefix(' ').unwrap_or(s)
}

/// Turns case text into bytes: `\r \n \t \0 \s` (space) `\\ \{ \}`,
/// `\xHH`, and `{TEXT*N}` for TEXT (itself escaped, and possibly holding
/// repeats) repeated N times.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let (byte, used) = escape_at(bytes, i)?;
                out.push(byte);
                i += used;
            }
            b'{' => {
                let close = closing_brace(bytes, i).ok_or_else(|| {
                    format!("unclosed `{{` in {text:?} (write `\\{{` for a brace)")
                })?;
                let inner = &text[i + 1..close];
                let (unit, count) = inner
                    .rsplit_once('*')
                    .ok_or_else(|| format!("`{{{inner}}}` is not `{{TEXT*COUNT}}`"))?;
                let count: usize = count
                    .parse()
                    .map_err(|_| format!("bad repeat count in `{{{inner}}}`"))?;
                out.extend(unescape(unit)?.repeat(count));
                i = close + 1;
            }
            b'}' => return Err(format!("stray `}}` in {text:?} (write `\\}}`)")),
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The byte an escape starting at `bytes[i] == b'\\'` stands for, and its
/// length.
fn escape_at(bytes: &[u8], i: usize) -> Result<(u8, usize), String> {
    let byte = match bytes.get(i + 1) {
        Some(b'r') => b'\r',
        Some(b'n') => b'\n',
        Some(b't') => b'\t',
        Some(b'0') => 0,
        Some(b's') => b' ',
        Some(b'\\') => b'\\',
        Some(b'{') => b'{',
        Some(b'}') => b'}',
        Some(b'x') => {
            let hex = bytes
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("`\\x` wants two hex digits")?;
            return Ok((hex, 4));
        }
        other => {
            return Err(format!(
                "unknown escape `\\{}`",
                other.map(|&b| b as char).unwrap_or(' ')
            ))
        }
    };
    Ok((byte, 2))
}

/// The index of the `}` closing the `{` at `open`, skipping escapes and
/// nested repeats.
fn closing_brace(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Bytes written back in the escape syntax, for messages; long runs of one
/// byte are shown as `{x*N}` and the whole is cut at `max` characters.
pub fn show(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let run = bytes[i..].iter().take_while(|&&c| c == b).count();
        if run >= 8 {
            out.push_str(&format!("{{{}*{run}}}", show_byte(b)));
            i += run;
        } else {
            out.push_str(&show_byte(b));
            i += 1;
        }
        if out.len() > max {
            out.truncate(max);
            out.push_str(&format!("... ({} bytes)", bytes.len()));
            break;
        }
    }
    out
}

fn show_byte(b: u8) -> String {
    match b {
        b'\r' => "\\r".into(),
        b'\n' => "\\n".into(),
        b'\t' => "\\t".into(),
        0 => "\\0".into(),
        b'\\' => "\\\\".into(),
        b'{' => "\\{".into(),
        b'}' => "\\}".into(),
        0x20..=0x7e => (b as char).to_string(),
        _ => format!("\\x{b:02x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_repeats() {
        assert_eq!(
            unescape(r"a\r\n\t\0\s\\\{\}\x7f\xFF").unwrap(),
            b"a\r\n\t\0 \\{}\x7f\xff"
        );
        assert_eq!(unescape("{ab*3}c").unwrap(), b"abababc");
        assert_eq!(unescape(r"{X: y\r\n*2}").unwrap(), b"X: y\r\nX: y\r\n");
        assert_eq!(unescape("{<{a*2}>*2}").unwrap(), b"<aa><aa>");
        for bad in [r"\q", r"{a\*b*2}", r"\x4", "{ab}", "{a*x}", "a}", "{a*2"] {
            assert!(unescape(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn show_round_trips() {
        let bytes = b"GET /\r\n\0\x80{}\\ xxxxxxxxxx";
        assert_eq!(unescape(&show(bytes, 1000)).unwrap(), bytes);
    }

    #[test]
    fn parses_a_case() {
        let text = "\
# a comment
case: sample
ref: RFC 9112 §6.1
> POST / HTTP/1.1
> Host: x
>
~ 5\\r\\nhello\\r\\n0\\r\\n\\r\\n
< 100?
< 200|201 conn!=close
  echo.method: POST
  echo.header: Host: x
  echo.body: hello
> HEAD / HTTP/1.1
< 200 head conn=keep-alive
then: open
";
        let cases = parse("t.txt", text).unwrap();
        assert_eq!(cases.len(), 1);
        let case = &cases[0];
        assert_eq!((case.name.as_str(), case.then), ("sample", Then::Open));
        assert_eq!(case.location, "t.txt:2");
        assert_eq!(case.steps.len(), 5);
        assert_eq!(
            case.steps[0],
            Step::Send(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec())
        );
        let Step::Expect(ok) = &case.steps[2] else {
            panic!("{:?}", case.steps[2])
        };
        assert_eq!(ok.to_string(), "200|201 conn!=close");
        assert_eq!(
            ok.echo.headers,
            Some(vec![(b"Host".to_vec(), b"x".to_vec())])
        );
        assert_eq!(ok.echo.body.as_deref(), Some(&b"hello"[..]));
        let Step::Expect(head) = &case.steps[4] else {
            panic!("{:?}", case.steps[4])
        };
        assert_eq!(head.to_string(), "200 head conn=keep-alive");
    }

    #[test]
    fn refuses_incomplete_cases() {
        let missing = [
            "case: a\n> GET / HTTP/1.1\n< 200\nthen: open\n",
            "case: a\nref: x\n> GET / HTTP/1.1\n< 200\n",
            "case: a\nref: x\n< 200\nthen: open\n",
            "case: a\nref: x\n> GET / HTTP/1.1\n< 200\n> GET / HTTP/1.1\nthen: open\n",
            "case: a\nref: x\n> GET\necho.body: x\n< 200\nthen: open\n",
            "case: a\nref: x\n> GET\n< 200 bogus\nthen: open\n",
            "case: a\nref: x\n> GET\n< 200\nthen: maybe\n",
        ];
        for text in missing {
            assert!(parse("t.txt", text).is_err(), "accepted {text:?}");
        }
    }
}
