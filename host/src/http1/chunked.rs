//! A strict decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! `httparse::parse_chunk_size` is too lenient for a server that must agree
//! with every proxy in front of it about where a body ends: it reads an empty
//! size line as 0 and skips anything after `;`, even a bare LF. Disagreements
//! like these are how request smuggling works, so this decoder accepts exactly
//! the RFC grammar, byte by byte, with one small step function per state
//! (hyper's `ChunkedState` in `decode.rs`):
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! Extensions and trailer fields are validated and then discarded: nothing
//! here may reach the application's headers (RFC 9112 §7.1.2 lets a recipient
//! drop trailers; merging them is how a body could smuggle in a header).

use crate::http1::error::HttpError;
use crate::http1::parse::is_tchar;

/// Cap on the extension bytes of one size line (everything between the
/// chunk-size and its CRLF). Nobody needs extensions; the cap only has to be
/// generous enough not to break a client that sends some.
pub const MAX_CHUNK_EXT_LEN: usize = 4096;

/// Cap on the extension bytes of a whole body, so a stream of tiny chunks
/// with large extensions cannot make us parse unbounded framing per byte of
/// data (hyper caps the total the same way).
pub const MAX_TOTAL_CHUNK_EXT_LEN: usize = 64 * 1024;

/// Cap on the trailer section, CRLFs included.
pub const MAX_TRAILER_LEN: usize = 8192;

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// The size line is empty or holds a byte that is not a hex digit.
    BadSize,
    /// The chunk size does not fit in a `u64`.
    SizeOverflow,
    /// A chunk extension does not follow the grammar.
    BadExtension,
    /// Extension bytes over `MAX_CHUNK_EXT_LEN` or `MAX_TOTAL_CHUNK_EXT_LEN`.
    ExtensionTooLong,
    /// A line ended with a bare CR or bare LF, or data ran past its size.
    BadLineEnding,
    /// A trailer field is malformed (no name, space before colon, obs-fold,
    /// a control character).
    BadTrailer,
    /// The trailer section is over `MAX_TRAILER_LEN`.
    TrailerTooLong,
}

impl ChunkedError {
    fn as_str(self) -> &'static str {
        match self {
            ChunkedError::BadSize => "invalid chunk size",
            ChunkedError::SizeOverflow => "chunk size overflow",
            ChunkedError::BadExtension => "invalid chunk extension",
            ChunkedError::ExtensionTooLong => "chunk extensions too long",
            ChunkedError::BadLineEnding => "invalid line ending in chunked body",
            ChunkedError::BadTrailer => "invalid trailer field",
            ChunkedError::TrailerTooLong => "trailer section too long",
        }
    }
}

impl std::fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ChunkedError {}

/// Every chunked error is a 400, the *TooLong ones included: 431 is about the
/// request's header section, and 413 about the body size limit (which the
/// body reader enforces on what it decoded). Oversized framing inside the body
/// is simply a malformed message (RFC 9112 §7.1: "a server ... ought to
/// limit" extensions and answer 400 or close).
impl From<ChunkedError> for HttpError {
    fn from(err: ChunkedError) -> Self {
        HttpError::BadRequest(err.as_str())
    }
}

/// Where the decoder is in the chunked grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a size line: at least one HEXDIG is required.
    SizeStart,
    /// Inside the hex digits of chunk-size.
    Size,
    /// Inside chunk-ext (counted against the extension caps).
    Ext(Ext),
    /// Saw the CR ending a size line; exactly LF must follow.
    SizeLf,
    /// Inside chunk-data, with this many bytes left.
    Data(u64),
    /// After chunk-data: exactly CR must follow.
    DataCr,
    /// After chunk-data and CR: exactly LF must follow.
    DataLf,
    /// At the start of a trailer field line or of the final CRLF.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// After a trailer field's colon, up to its CR.
    TrailerValue,
    /// Saw the CR ending a trailer field line.
    TrailerLf,
    /// Saw the CR of the final empty line.
    EndLf,
    /// The body is complete; further input belongs to the next request.
    Done,
}

/// Position inside chunk-ext. BWS is optional whitespace, so each place
/// where it may occur is its own state saying what may follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// After ";" (and BWS): a name must come.
    BeforeName,
    /// Inside chunk-ext-name.
    Name,
    /// BWS after a name: "=" or ";" may follow, not CR.
    AfterNameBws,
    /// After "=" (and BWS): a token or quoted-string must come.
    BeforeValue,
    /// Inside a token value.
    Token,
    /// Inside a quoted-string value.
    Quoted,
    /// After a backslash inside a quoted-string.
    QuotedEscape,
    /// Right after the closing quote: ";", BWS or CR may follow.
    AfterQuote,
    /// BWS after a chunk-size or a value: only ";" may follow.
    Bws,
}

/// Incremental decoder for one chunked body. Feed it what arrives; it never
/// buffers, so memory stays constant whatever the client sends. After an
/// error the decoder must not be used again (the connection is closed).
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk-size being accumulated on the current size line.
    size: u64,
    /// Extension bytes on the current size line.
    ext_len: usize,
    /// Extension bytes over the whole body.
    ext_total: usize,
    /// Trailer section bytes so far.
    trailer_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            size: 0,
            ext_len: 0,
            ext_total: 0,
            trailer_len: 0,
        }
    }

    /// Decode from `input` into `out`. Returns (consumed_from_input, written_to_out).
    ///
    /// Stops when `out` is full (framing bytes after the data are still
    /// consumed, so a body ending exactly at the end of `out` is recognised as
    /// done), when `input` is exhausted, or when the body is done: then
    /// `consumed` ends right after the final CRLF, and the rest of `input` is
    /// the next pipelined request.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), ChunkedError> {
        let mut read = 0;
        let mut written = 0;
        while read < input.len() {
            match self.state {
                State::Done => break,
                State::Data(remaining) => {
                    let room = out.len() - written;
                    if room == 0 {
                        break;
                    }
                    let avail = input.len() - read;
                    // `remaining` may exceed usize on 32-bit; the min fits.
                    let n = usize::try_from(remaining)
                        .map_or(avail.min(room), |r| r.min(avail).min(room));
                    out[written..written + n].copy_from_slice(&input[read..read + n]);
                    read += n;
                    written += n;
                    let n = n as u64; // usize always fits in u64
                    self.state = match remaining - n {
                        0 => State::DataCr,
                        left => State::Data(left),
                    };
                }
                _ => {
                    self.step(input[read])?;
                    read += 1;
                }
            }
        }
        Ok((read, written))
    }

    /// Like `decode` into an output without end, but copying nothing: for
    /// checking where a body ends, or dropping one. Returns (consumed from
    /// `input`, data bytes in it).
    pub fn skip(&mut self, input: &[u8]) -> Result<(usize, u64), ChunkedError> {
        let mut read = 0;
        let mut data = 0u64;
        while read < input.len() {
            match self.state {
                State::Done => break,
                State::Data(remaining) => {
                    let avail = (input.len() - read) as u64;
                    let n = remaining.min(avail);
                    read += n as usize; // at most `avail`, which is a usize
                    data += n;
                    self.state = match remaining - n {
                        0 => State::DataCr,
                        left => State::Data(left),
                    };
                }
                _ => {
                    self.step(input[read])?;
                    read += 1;
                }
            }
        }
        Ok((read, data))
    }

    /// True once the final CRLF after the trailer section was consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes one framing byte: the current state's step function picks
    /// the next state, and the byte is charged to the extension or trailer
    /// budget it belongs to.
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        let in_trailer = matches!(
            self.state,
            State::TrailerStart
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerLf
                | State::EndLf
        );
        self.state = match self.state {
            State::SizeStart => self.size_start(b)?,
            State::Size => self.size_digit(b)?,
            State::Ext(ext) => ext_step(ext, b)?,
            State::SizeLf => self.size_lf(b)?,
            State::DataCr => expect(b, b'\r', State::DataLf)?,
            State::DataLf => expect(b, b'\n', State::SizeStart)?,
            State::TrailerStart => trailer_start(b)?,
            State::TrailerName => trailer_name(b)?,
            State::TrailerValue => trailer_value(b)?,
            State::TrailerLf => expect(b, b'\n', State::TrailerStart)?,
            State::EndLf => expect(b, b'\n', State::Done)?,
            // `decode` handles these without calling `step`.
            State::Data(_) | State::Done => self.state,
        };
        // An extension byte is one that leads into (or stays in) chunk-ext:
        // the ";" or BWS after the size counts, the CR ending the line not.
        if let State::Ext(_) = self.state {
            self.ext_len += 1;
            self.ext_total += 1;
            if self.ext_len > MAX_CHUNK_EXT_LEN || self.ext_total > MAX_TOTAL_CHUNK_EXT_LEN {
                return Err(ChunkedError::ExtensionTooLong);
            }
        }
        if in_trailer {
            self.trailer_len += 1;
            if self.trailer_len > MAX_TRAILER_LEN {
                return Err(ChunkedError::TrailerTooLong);
            }
        }
        Ok(())
    }

    /// The first byte of a size line must be a hex digit: an empty size line
    /// is not "0" (that leniency is what we replace httparse for).
    fn size_start(&mut self, b: u8) -> Result<State, ChunkedError> {
        match b {
            b'\n' => Err(ChunkedError::BadLineEnding),
            _ if hex_value(b).is_some() => self.size_digit(b),
            _ => Err(ChunkedError::BadSize),
        }
    }

    fn size_digit(&mut self, b: u8) -> Result<State, ChunkedError> {
        if let Some(v) = hex_value(b) {
            self.size = self
                .size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(v)))
                .ok_or(ChunkedError::SizeOverflow)?;
            return Ok(State::Size);
        }
        match b {
            b'\r' => Ok(State::SizeLf),
            b';' => Ok(State::Ext(Ext::BeforeName)),
            // BWS before ";" only; `Ext::Bws` refuses a CR after it.
            b' ' | b'\t' => Ok(State::Ext(Ext::Bws)),
            b'\n' => Err(ChunkedError::BadLineEnding),
            _ => Err(ChunkedError::BadSize),
        }
    }

    fn size_lf(&mut self, b: u8) -> Result<State, ChunkedError> {
        if b != b'\n' {
            return Err(ChunkedError::BadLineEnding);
        }
        let size = std::mem::take(&mut self.size);
        self.ext_len = 0;
        Ok(if size == 0 {
            State::TrailerStart
        } else {
            State::Data(size)
        })
    }
}

fn ext_step(ext: Ext, b: u8) -> Result<State, ChunkedError> {
    let next = match (ext, b) {
        (Ext::BeforeName | Ext::BeforeValue | Ext::AfterNameBws | Ext::Bws, b' ' | b'\t') => ext,
        (Ext::BeforeName, _) if is_tchar(b) => Ext::Name,
        (Ext::Name, _) if is_tchar(b) => Ext::Name,
        (Ext::Name, b' ' | b'\t') => Ext::AfterNameBws,
        (Ext::Name | Ext::AfterNameBws, b'=') => Ext::BeforeValue,
        (Ext::BeforeValue, b'"') => Ext::Quoted,
        (Ext::BeforeValue, _) if is_tchar(b) => Ext::Token,
        (Ext::Token, _) if is_tchar(b) => Ext::Token,
        (Ext::Token | Ext::AfterQuote, b' ' | b'\t') => Ext::Bws,
        (Ext::Quoted, b'"') => Ext::AfterQuote,
        (Ext::Quoted, b'\\') => Ext::QuotedEscape,
        (Ext::Quoted, _) if is_qdtext(b) => Ext::Quoted,
        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
        (Ext::QuotedEscape, _) if is_field_vchar(b) || b == b' ' || b == b'\t' => Ext::Quoted,
        (Ext::Name | Ext::AfterNameBws | Ext::Token | Ext::AfterQuote | Ext::Bws, b';') => {
            Ext::BeforeName
        }
        // The size line may end right after a name or a value, not after BWS.
        (Ext::Name | Ext::Token | Ext::AfterQuote, b'\r') => return Ok(State::SizeLf),
        (_, b'\n') => return Err(ChunkedError::BadLineEnding),
        _ => return Err(ChunkedError::BadExtension),
    };
    Ok(State::Ext(next))
}

fn trailer_start(b: u8) -> Result<State, ChunkedError> {
    match b {
        b'\r' => Ok(State::EndLf),
        b'\n' => Err(ChunkedError::BadLineEnding),
        // A leading SP/HTAB would be obs-fold or whitespace before a name.
        _ if is_tchar(b) => Ok(State::TrailerName),
        _ => Err(ChunkedError::BadTrailer),
    }
}

fn trailer_name(b: u8) -> Result<State, ChunkedError> {
    match b {
        b':' => Ok(State::TrailerValue),
        _ if is_tchar(b) => Ok(State::TrailerName),
        // Includes whitespace before the colon (RFC 9112 §5.1: MUST reject).
        _ => Err(ChunkedError::BadTrailer),
    }
}

fn trailer_value(b: u8) -> Result<State, ChunkedError> {
    match b {
        b'\r' => Ok(State::TrailerLf),
        b'\n' => Err(ChunkedError::BadLineEnding),
        b' ' | b'\t' => Ok(State::TrailerValue),
        _ if is_field_vchar(b) => Ok(State::TrailerValue),
        _ => Err(ChunkedError::BadTrailer),
    }
}

fn expect(b: u8, want: u8, next: State) -> Result<State, ChunkedError> {
    if b == want {
        Ok(next)
    } else {
        Err(ChunkedError::BadLineEnding)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// VCHAR / obs-text: what a field value may hold besides SP and HTAB.
fn is_field_vchar(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text (RFC 9110 §5.6.4).
fn is_qdtext(b: u8) -> bool {
    b == b'\t' || b == b' ' || (is_field_vchar(b) && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` in one go with a large output buffer.
    fn decode_all(input: &[u8]) -> Result<(usize, Vec<u8>, bool), ChunkedError> {
        let mut dec = ChunkedDecoder::new();
        let mut out = vec![0; input.len() + 16];
        let (read, written) = dec.decode(input, &mut out)?;
        out.truncate(written);
        Ok((read, out, dec.is_done()))
    }

    fn err(input: &[u8]) -> ChunkedError {
        decode_all(input).expect_err("should be refused")
    }

    /// RFC 9112 §7.1: the basic shape, and that consumption stops right after
    /// the final CRLF so a pipelined request stays in the buffer.
    #[test]
    fn decodes_chunks_and_stops_at_the_end() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let (read, out, done) = decode_all(body).unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(&body[read..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn hex_sizes_any_case_and_leading_zeros() {
        let body = b"A\r\n0123456789\r\n0000b\r\nabcdefghijk\r\n000\r\n\r\n";
        let (_, out, done) = decode_all(body).unwrap();
        assert_eq!(out, b"0123456789abcdefghijk");
        assert!(done);
        let (_, out, _) = decode_all(b"a\r\n0123456789\r\n0\r\n\r\n").unwrap();
        assert_eq!(out.len(), 10);
    }

    /// Every split point of the input must give the same result as one call.
    #[test]
    fn byte_at_a_time_input_and_output() {
        let body = b"3;a=b\r\nabc\r\n2\r\nde\r\n0\r\nX-T: v\r\n\r\nrest";
        let mut dec = ChunkedDecoder::new();
        let mut got = Vec::new();
        let mut pos = 0;
        while !dec.is_done() {
            let mut one = [0u8; 1];
            let end = (pos + 1).min(body.len());
            let (read, written) = dec.decode(&body[pos..end], &mut one).unwrap();
            got.extend_from_slice(&one[..written]);
            pos += read;
        }
        assert_eq!(got, b"abcde");
        assert_eq!(&body[pos..], b"rest");
    }

    #[test]
    fn full_output_stops_data_but_not_framing() {
        let body = b"4\r\nabcd\r\n0\r\n\r\nnext";
        let mut dec = ChunkedDecoder::new();
        let mut out = [0u8; 2];
        assert_eq!(dec.decode(body, &mut out).unwrap(), (5, 2));
        assert_eq!(&out, b"ab");
        let (read, written) = dec.decode(&body[5..], &mut out).unwrap();
        assert_eq!(written, 2);
        assert_eq!(&out, b"cd");
        // The body ended exactly when `out` filled up: the framing after it
        // is still consumed, so the caller sees `is_done` without another call.
        assert!(dec.is_done());
        assert_eq!(&body[5 + read..], b"next");
        assert_eq!(dec.decode(b"more", &mut out).unwrap(), (0, 0));
    }

    #[test]
    fn empty_output_buffer_consumes_framing_only() {
        let mut dec = ChunkedDecoder::new();
        assert_eq!(dec.decode(b"3\r\nabc", &mut []).unwrap(), (3, 0));
    }

    /// RFC 9112 §7.1: chunk-size = 1*HEXDIG; an empty line is not zero.
    #[test]
    fn empty_or_bad_size_lines() {
        assert_eq!(err(b"\r\n"), ChunkedError::BadSize);
        assert_eq!(err(b"\r\n\r\n"), ChunkedError::BadSize);
        assert_eq!(err(b"g\r\n"), ChunkedError::BadSize);
        assert_eq!(err(b"0x5\r\nhello\r\n0\r\n\r\n"), ChunkedError::BadSize);
        assert_eq!(err(b"-1\r\n"), ChunkedError::BadSize);
        assert_eq!(err(b"+1\r\n"), ChunkedError::BadSize);
        assert_eq!(err(b" 1\r\n"), ChunkedError::BadSize);
        assert_eq!(err(b";a\r\n"), ChunkedError::BadSize);
    }

    #[test]
    fn size_overflow_is_checked() {
        // 16 hex digits fit in u64, 17 significant ones do not.
        let mut dec = ChunkedDecoder::new();
        dec.decode(b"ffffffffffffffff", &mut []).unwrap();
        assert_eq!(err(b"10000000000000000\r\n"), ChunkedError::SizeOverflow);
        // Leading zeros do not count towards overflow.
        assert!(decode_all(b"00000000000000000001\r\nx\r\n0\r\n\r\n").is_ok());
    }

    /// RFC 9112 §2.2 and §7.1: lines end with CRLF; a bare LF or CR is an
    /// error, never a line ending (a lenient proxy might see it differently).
    #[test]
    fn bare_lf_and_bare_cr_are_refused_everywhere() {
        assert_eq!(err(b"5\nhello\r\n0\r\n\r\n"), ChunkedError::BadLineEnding);
        assert_eq!(err(b"5\rhello\r\n0\r\n\r\n"), ChunkedError::BadLineEnding);
        assert_eq!(err(b"5\r\nhello\n0\r\n\r\n"), ChunkedError::BadLineEnding);
        assert_eq!(err(b"5\r\nhello\r0\r\n\r\n"), ChunkedError::BadLineEnding);
        assert_eq!(err(b"5\r\nhelloX\r\n"), ChunkedError::BadLineEnding);
        assert_eq!(err(b"0\r\n\n"), ChunkedError::BadLineEnding);
        assert_eq!(err(b"0\r\n\rX"), ChunkedError::BadLineEnding);
        assert_eq!(err(b"0\r\nA: b\n\r\n"), ChunkedError::BadLineEnding);
        assert_eq!(err(b"0\r\nA: b\rX"), ChunkedError::BadLineEnding);
        // httparse skips to the LF after ';', even a bare one.
        assert_eq!(err(b"5;a\nhello\r\n0\r\n\r\n"), ChunkedError::BadLineEnding);
        assert_eq!(err(b"\n"), ChunkedError::BadLineEnding);
    }

    /// RFC 9112 §7.1.1: chunk-ext grammar with BWS, token and quoted-string.
    #[test]
    fn valid_extensions_are_skipped() {
        for ext in [
            &b";a"[..],
            b";a=b",
            b";a=b;c",
            b" ;a",
            b"\t; a = b ; c=\"q \\\" d\"",
            b";a=\"\"",
            b";name=\"x;y=z\\\\\"",
        ] {
            let mut body = b"3".to_vec();
            body.extend_from_slice(ext);
            body.extend_from_slice(b"\r\nabc\r\n0");
            body.extend_from_slice(ext);
            body.extend_from_slice(b"\r\n\r\n");
            let (_, out, done) = decode_all(&body)
                .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(ext)));
            assert_eq!(out, b"abc");
            assert!(done);
        }
    }

    #[test]
    fn invalid_extensions_are_refused() {
        for ext in [
            &b";"[..],
            b";=b",
            b";a=",
            b";a=b c",
            b";a b",
            b";a=\"unterminated",
            b";a=\"x\"y",
            b";a@b",
            b";a=b@",
            b";a=\"\x01\"",
            b"x",
        ] {
            let mut body = b"3".to_vec();
            body.extend_from_slice(ext);
            body.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
            let e = err(&body);
            assert!(
                matches!(e, ChunkedError::BadExtension | ChunkedError::BadSize),
                "{:?}: {e:?}",
                String::from_utf8_lossy(ext)
            );
        }
        // BWS is only allowed before ";", so trailing whitespace is refused.
        assert_eq!(err(b"3 \r\nabc\r\n0\r\n\r\n"), ChunkedError::BadExtension);
        assert_eq!(err(b"3;a \r\nabc\r\n0\r\n\r\n"), ChunkedError::BadExtension);
        assert_eq!(
            err(b"3;a=b \r\nabc\r\n0\r\n\r\n"),
            ChunkedError::BadExtension
        );
        assert_eq!(err(b"3;a=\"b\" \r\n"), ChunkedError::BadExtension);
    }

    #[test]
    fn extension_length_is_capped_per_line_and_per_body() {
        let mut body = b"1;a=".to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_CHUNK_EXT_LEN - 3));
        body.extend_from_slice(b"\r\nz\r\n0\r\n\r\n");
        assert!(decode_all(&body).is_ok(), "exactly at the cap");

        let mut body = b"1;a=".to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_CHUNK_EXT_LEN - 2));
        assert_eq!(err(&body), ChunkedError::ExtensionTooLong);

        // Many lines, each under the cap, still exhaust the body budget.
        let mut line = b"1;a=".to_vec();
        line.extend(std::iter::repeat_n(b'x', 1000));
        line.extend_from_slice(b"\r\nz\r\n");
        let body = line.repeat(MAX_TOTAL_CHUNK_EXT_LEN / 1000 + 1);
        assert_eq!(err(&body), ChunkedError::ExtensionTooLong);
    }

    /// RFC 9112 §7.1.2: trailer fields are validated and discarded.
    #[test]
    fn trailers_are_validated_and_discarded() {
        let body = b"1\r\nx\r\n0\r\nX-Sum: abc \t\r\nOther:\r\nE: \xff\r\n\r\nnext";
        let (read, out, done) = decode_all(body).unwrap();
        assert_eq!(out, b"x");
        assert!(done);
        assert_eq!(&body[read..], b"next");
    }

    #[test]
    fn malformed_trailers_are_refused() {
        for trailer in [
            &b": no-name\r\n"[..],
            b"Name : space-before-colon\r\n",
            b" obs-fold\r\n",
            b"A: b\r\n continued\r\n",
            b"No-colon\r\n",
            b"A: nul\x00\r\n",
            b"A: del\x7f\r\n",
            b"Na(me: x\r\n",
        ] {
            let mut body = b"0\r\n".to_vec();
            body.extend_from_slice(trailer);
            body.extend_from_slice(b"\r\n");
            assert_eq!(
                err(&body),
                ChunkedError::BadTrailer,
                "{:?}",
                String::from_utf8_lossy(trailer)
            );
        }
    }

    #[test]
    fn trailer_section_is_capped() {
        let mut body = b"0\r\nA: ".to_vec();
        body.extend(std::iter::repeat_n(b'v', MAX_TRAILER_LEN - 7));
        body.extend_from_slice(b"\r\n\r\n");
        // "A: " + value + CRLF + CRLF = MAX_TRAILER_LEN bytes exactly.
        assert!(decode_all(&body).is_ok());
        let mut body = b"0\r\nA: ".to_vec();
        body.extend(std::iter::repeat_n(b'v', MAX_TRAILER_LEN - 6));
        body.extend_from_slice(b"\r\n\r\n");
        assert_eq!(err(&body), ChunkedError::TrailerTooLong);
    }

    #[test]
    fn incomplete_input_is_not_an_error() {
        let body = b"5;a=\"b\"\r\nhel";
        let (read, out, done) = decode_all(body).unwrap();
        assert_eq!(
            (read, out.as_slice(), done),
            (body.len(), &b"hel"[..], false)
        );
        let (_, _, done) = decode_all(b"0\r\nA: b\r\n").unwrap();
        assert!(!done);
    }

    #[test]
    fn maps_to_400() {
        for e in [
            ChunkedError::BadSize,
            ChunkedError::SizeOverflow,
            ChunkedError::BadExtension,
            ChunkedError::ExtensionTooLong,
            ChunkedError::BadLineEnding,
            ChunkedError::BadTrailer,
            ChunkedError::TrailerTooLong,
        ] {
            assert_eq!(HttpError::from(e).status(), 400);
        }
    }
}
