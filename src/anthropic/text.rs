//! [`Text`]: a JSON string value kept as the client escaped it.
//!
//! A Claude Code main turn is 0.6–1.4 MB, almost all of it in a few hundred string values (file
//! contents in tool results, thinking, the system prompt). ccr never needs most of them as text:
//! it copies them from the Anthropic request into the Kiro request. Decoding every escape on the
//! way in and encoding it again on the way out was most of ccr's own cost on such a turn, so the
//! request types keep those strings in their JSON form: reading one is a scan (and a slice of the
//! body, see below), and writing it into the Kiro body is a copy. Only what ccr inspects (a blank
//! check, the token estimate, a web-search query) is decoded, and those decode lazily and usually
//! borrow.
//!
//! Escapes the client wrote stay as written (`\u00e9` is not turned into `é`): the Kiro body
//! means the same JSON either way.
//!
//! A text read while [`reading`] a body is not even copied: it is a slice of the body's
//! [`Bytes`], which stay alive (and out of their pool) until the last such text is dropped.

use bytes::Bytes;
use memchr::memmem;
use serde::de::{self, Deserialize, Deserializer, Unexpected};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::LazyLock;

/// A JSON string value, stored escaped and with its quotes, exactly as it was read.
///
/// Always valid UTF-8: it is made from a `&str` (the body is checked before it is read), never
/// changed, and only ever split around its quotes.
#[derive(Clone)]
pub struct Text(Bytes);

impl Text {
    /// A text from an unescaped string (what a test or ccr itself writes).
    pub fn new(plain: &str) -> Text {
        let mut out = Vec::with_capacity(plain.len() + 2);
        out.push(b'"');
        escape_into(&mut out, plain);
        out.push(b'"');
        Text(Bytes::from(out))
    }

    /// The escaped content between the quotes, ready to be copied into another JSON string.
    pub fn raw(&self) -> &[u8] {
        &self.0[1..self.0.len() - 1]
    }

    /// [`Text::raw`] as a `str`, for the texts read as text (image data, decoding): checked
    /// again, with the same check the body had, since `Text` holds bytes.
    pub fn raw_str(&self) -> &str {
        simdutf8::basic::from_utf8(self.raw()).unwrap_or_default()
    }

    /// The decoded string: borrowed when the JSON had no escape.
    pub fn unescaped(&self) -> Cow<'_, str> {
        unescape(self.raw_str())
    }

    /// Length in bytes of the JSON text between the quotes: what the token estimate counts
    /// (an escape such as `\n` counts its two bytes; decoding a 1 MB request's strings just to
    /// count them would cost more than the rest of the estimate).
    pub fn json_len(&self) -> usize {
        self.raw().len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw().is_empty()
    }

    /// Whether the decoded string is empty or only white space (`str::trim` would empty it).
    /// Stops at the first character that is not white space.
    pub fn is_blank(&self) -> bool {
        is_blank(self.raw())
    }
}

impl Default for Text {
    fn default() -> Self {
        Text(Bytes::from_static(b"\"\""))
    }
}

impl From<&str> for Text {
    fn from(plain: &str) -> Self {
        Text::new(plain)
    }
}

impl From<String> for Text {
    fn from(plain: String) -> Self {
        Text::new(&plain)
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.0 == other.0 || self.unescaped() == other.unescaped()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.unescaped() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.unescaped() == *other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.unescaped(), f)
    }
}

impl<'de> Deserialize<'de> for Text {
    /// Reads the value without decoding it (serde_json's raw capture: a scan, and a slice of the
    /// body [`reading`] it, else a copy); a value that is not a string is refused with serde's
    /// usual "invalid type" message. The deserializer must borrow from its input (serde_json's
    /// `from_str` and `from_slice` do).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&RawValue>::deserialize(deserializer)?.get();
        if raw.starts_with('"') {
            return from_quoted_raw(raw);
        }
        Err(not_a_string::<D::Error>(raw, &"a string"))
    }
}

thread_local! {
    /// The body being read by [`reading`] on this thread.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Runs `read` (a parse of `body`) so that the texts it reads are slices of `body`, not copies.
pub(crate) fn reading<R>(body: &Bytes, read: impl FnOnce(&[u8]) -> R) -> R {
    /// Puts the previous source back, even if `read` unwinds.
    struct Restore(Option<Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SOURCE.with_borrow_mut(|source| *source = previous);
        }
    }
    let _restore = Restore(SOURCE.with_borrow_mut(|source| source.replace(body.clone())));
    read(body)
}

/// `raw` as `Bytes`: a slice of the body being read when it lies inside it, else a copy.
fn share(raw: &str) -> Bytes {
    let within = |body: &Bytes| {
        let (start, end) = (body.as_ptr() as usize, body.as_ptr() as usize + body.len());
        let at = raw.as_ptr() as usize;
        at >= start && at + raw.len() <= end
    };
    SOURCE.with_borrow(|source| match source {
        Some(body) if within(body) => body.slice_ref(raw.as_bytes()),
        _ => Bytes::copy_from_slice(raw.as_bytes()),
    })
}

/// serde's "invalid type: integer `7`, expected …" for a raw JSON value that is not a string.
pub(crate) fn not_a_string<E: de::Error>(raw: &str, expected: &dyn de::Expected) -> E {
    let value: serde_json::Value = match serde_json::from_str(raw) {
        Ok(value) => value,
        // `1e999`: serde_json's own message ("number out of range").
        Err(e) => return E::custom(crate::anthropic::blocks::without_position(&e)),
    };
    let unexpected = match &value {
        serde_json::Value::Null => Unexpected::Unit,
        serde_json::Value::Bool(b) => Unexpected::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Unexpected::Unsigned(u),
            (None, Some(i), _) => Unexpected::Signed(i),
            (_, _, Some(f)) => Unexpected::Float(f),
            _ => Unexpected::Other("number"),
        },
        serde_json::Value::String(_) => Unexpected::Other("string"),
        serde_json::Value::Array(_) => Unexpected::Seq,
        serde_json::Value::Object(_) => Unexpected::Map,
    };
    E::invalid_type(unexpected, expected)
}

/// Wraps an escaped, quoted JSON string from a raw capture.
///
/// serde_json's raw capture checks that a `\u` has four hex digits but not that surrogates come
/// in pairs, which decoding the string did (and Kiro's parser does). A text with a `\uD…` escape
/// is therefore decoded once here, so that a lone surrogate is refused with serde_json's message
/// ("unexpected end of hex escape", "lone leading surrogate …"), exactly as before texts were kept escaped. Texts
/// without one, nearly all, cost one `memmem` scan.
pub(crate) fn from_quoted_raw<E: de::Error>(raw: &str) -> Result<Text, E> {
    debug_assert!(raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"'));
    let bytes = raw.as_bytes();
    static UNICODE_ESCAPE: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\\u"));
    let surrogate = UNICODE_ESCAPE.find_iter(bytes).any(|at| matches!(bytes.get(at + 2), Some(b'd' | b'D')));
    if surrogate && let Err(e) = serde_json::from_str::<String>(raw) {
        return Err(E::custom(crate::anthropic::blocks::without_position(&e)));
    }
    Ok(Text(share(raw)))
}

/// What a string needs escaped in JSON: `"`, `\` and the control characters.
const fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Where escaped text goes: a `String` or a byte buffer.
pub(crate) trait Sink {
    fn put(&mut self, s: &str);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }
}

/// Appends `plain` to `out` escaped for the inside of a JSON string (the same escapes
/// serde_json writes: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, else `\u00XX`).
pub(crate) fn escape_into<W: Sink + ?Sized>(out: &mut W, plain: &str) {
    let bytes = plain.as_bytes();
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        let b = bytes[i];
        out.put(&plain[start..i]);
        match b {
            b'"' => out.put("\\\""),
            b'\\' => out.put("\\\\"),
            b'\n' => out.put("\\n"),
            b'\r' => out.put("\\r"),
            b'\t' => out.put("\\t"),
            0x08 => out.put("\\b"),
            0x0c => out.put("\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let code = [b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]];
                out.put(std::str::from_utf8(&code).unwrap_or_default());
            }
        }
        start = i + 1;
    }
    out.put(&plain[start..]);
}

/// Where the next byte that needs escaping is, from `from` on: eight bytes at a time (the
/// zero-byte test of Mycroft's, as serde_json's reader does it), then byte by byte. The lowest
/// flagged byte of a word is always a true one, which is the only one used.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    // The high bit of each byte of `x` that is zero (exact for the lowest one).
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x;
    let rest = bytes.get(from..)?;
    let mut words = rest.chunks_exact(8);
    for (n, word) in words.by_ref().enumerate() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let w = u64::from_le_bytes(eight);
        let control = w.wrapping_sub(ONES * 0x20) & !w;
        let quote = zero_bytes(w ^ (ONES * u64::from(b'"')));
        let backslash = zero_bytes(w ^ (ONES * u64::from(b'\\')));
        let hits = (control | quote | backslash) & HIGH;
        if hits != 0 {
            return Some(from + n * 8 + hits.trailing_zeros() as usize / 8);
        }
    }
    let tail = words.remainder();
    let tail_at = bytes.len() - tail.len();
    tail.iter().position(|&b| needs_escape(b)).map(|p| tail_at + p)
}

/// A JSON string being built from pieces, kept escaped: client texts are copied in as they
/// came ([`TextBuf::push_text`]), ccr's own words are escaped on the way in
/// ([`TextBuf::push_plain`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextBuf(Vec<u8>);

impl TextBuf {
    pub fn with_capacity(n: usize) -> TextBuf {
        TextBuf(Vec::with_capacity(n))
    }

    pub fn plain(s: &str) -> TextBuf {
        let mut buf = TextBuf::with_capacity(s.len());
        buf.push_plain(s);
        buf
    }

    pub fn push_plain(&mut self, s: &str) {
        escape_into(&mut self.0, s);
    }

    pub fn push_text(&mut self, text: &Text) {
        self.0.extend_from_slice(text.raw());
    }

    /// Appends escaped content (another buffer's, or a text's [`Text::raw`]).
    pub fn push_raw(&mut self, raw: &[u8]) {
        self.0.extend_from_slice(raw);
    }

    pub fn raw(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn is_blank(&self) -> bool {
        is_blank(&self.0)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn reserve(&mut self, n: usize) {
        self.0.reserve(n);
    }
}

/// One decoded escape at the start of `rest` (just after a backslash): the character and how
/// many bytes of `rest` it used. Escapes that serde_json refused never get here; a lone
/// surrogate decodes as U+FFFD.
fn decode_escape(rest: &[u8]) -> (char, usize) {
    let hex = |at: usize| -> Option<u32> {
        let digits = rest.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    match rest.first() {
        Some(b'n') => ('\n', 1),
        Some(b't') => ('\t', 1),
        Some(b'r') => ('\r', 1),
        Some(b'b') => ('\u{8}', 1),
        Some(b'f') => ('\u{c}', 1),
        Some(b'u') => {
            let Some(first) = hex(1) else { return ('\u{fffd}', 1) };
            if (0xD800..0xDC00).contains(&first)
                && rest.get(5..7) == Some(b"\\u")
                && let Some(second) = hex(7)
                && (0xDC00..0xE000).contains(&second)
            {
                let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                return (char::from_u32(c).unwrap_or('\u{fffd}'), 11);
            }
            (char::from_u32(first).unwrap_or('\u{fffd}'), 5)
        }
        // `\"`, `\\`, `\/`.
        Some(&b) => (char::from(b), 1),
        None => ('\\', 0),
    }
}

/// The first character of UTF-8 `bytes` (U+FFFD if they do not start with one).
fn first_char(bytes: &[u8]) -> char {
    let head = &bytes[..bytes.len().min(4)];
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
    };
    valid.chars().next().unwrap_or('\u{fffd}')
}

/// Decodes the inside of a JSON string; borrows when there is no escape.
pub(crate) fn unescape(raw: &str) -> Cow<'_, str> {
    let Some(first) = raw.find('\\') else { return Cow::Borrowed(raw) };
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut i = first;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let (c, used) = decode_escape(&bytes[i + 1..]);
            out.push(c);
            i += 1 + used;
        } else {
            let next = raw[i..].find('\\').map_or(bytes.len(), |n| i + n);
            out.push_str(&raw[i..next]);
            i = next;
        }
    }
    Cow::Owned(out)
}

/// Whether the inside of a JSON string decodes to white space only.
fn is_blank(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        let (c, used) = if bytes[i] == b'\\' {
            let (c, used) = decode_escape(&bytes[i + 1..]);
            (c, used + 1)
        } else {
            let c = first_char(&bytes[i..]);
            (c, c.len_utf8())
        };
        if !c.is_whitespace() {
            return false;
        }
        i += used.max(1);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Text {
        serde_json::from_str(json).expect("a JSON string")
    }

    #[test]
    fn reading_keeps_the_escapes_and_decoding_restores_the_string() {
        for plain in [
            "",
            "plain",
            "line\nbreak\ttab \"quoted\" back\\slash / naïve → 😀",
            "\u{1}\u{8}\u{c}\u{1f}",
            "   ",
        ] {
            let json = serde_json::to_string(plain).expect("json");
            let text = read(&json);
            assert_eq!(text.raw(), &json.as_bytes()[1..json.len() - 1], "kept as written");
            assert_eq!(text.unescaped(), plain);
            assert_eq!(text.json_len(), json.len() - 2);
            assert_eq!(text.is_blank(), plain.trim().is_empty(), "{plain:?}");
            assert_eq!(Text::new(plain).raw(), text.raw(), "the same escapes as serde_json");
            assert_eq!(text, Text::new(plain));
        }
    }

    #[test]
    fn reading_shares_only_texts_inside_the_body_and_puts_the_previous_body_back() {
        let outer = Bytes::from_static(br#""outer""#);
        let inner = Bytes::from_static(br#""inner""#);
        let shared = |text: &Text, body: &[u8]| text.raw().as_ptr() == body[1..].as_ptr();
        reading(&outer, |o| {
            let a: Text = serde_json::from_slice(o).expect("a string");
            assert!(shared(&a, o), "a slice of the body being read");
            reading(&inner, |i| {
                let b: Text = serde_json::from_slice(i).expect("a string");
                assert!(shared(&b, i));
                let c: Text = serde_json::from_slice(o).expect("a string");
                assert!(!shared(&c, o), "outside the body being read: copied");
                assert_eq!(c, "outer");
            });
            let d: Text = serde_json::from_slice(o).expect("a string");
            assert!(shared(&d, o), "the outer body is back");
        });
        let e: Text = serde_json::from_slice(&outer).expect("a string");
        assert!(!shared(&e, &outer), "no body being read: copied");
        assert_eq!(e, "outer");
    }

    #[test]
    fn escaping_finds_every_byte_that_needs_it_wherever_it_falls_in_a_word() {
        let specials = ['"', '\\', '\n', '\u{0}', '\u{1f}', '\t'];
        let fillers = ["", "a", "é", "😀", "\u{7f}", " ", "~"];
        for len in 0..20 {
            for (k, special) in specials.iter().enumerate() {
                for at in 0..=len {
                    let filler = fillers[(len + at + k) % fillers.len()];
                    let mut plain: String = (0..len).map(|i| if i % 3 == 0 { filler } else { "x" }).collect();
                    let cut = plain.char_indices().nth(at).map_or(plain.len(), |(i, _)| i);
                    plain.insert(cut, *special);
                    let mut escaped = String::new();
                    escape_into(&mut escaped, &plain);
                    let expected = serde_json::to_string(&plain).expect("json");
                    assert_eq!(escaped, expected[1..expected.len() - 1], "{plain:?}");
                }
            }
        }
    }

    #[test]
    fn unicode_escapes_decode_and_count_like_their_characters() {
        let text = read(r#""caf\u00e9 \ud83d\ude00 \u2028 \/ \u0041""#);
        assert_eq!(text.unescaped(), "café 😀 \u{2028} / A");
        assert_eq!(text, "café 😀 \u{2028} / A");
        assert!(read(r#"" \n\t\r\u00a0\u2028 ""#).is_blank());
        assert!(!read(r#"" \n x""#).is_blank());
    }

    #[test]
    fn a_lone_surrogate_is_refused_as_decoding_refused_it() {
        for lone in [r#""a\ud83d""#, r#""\ude00""#, r#""\uD83D\uD83D\uDE00""#] {
            let err = serde_json::from_str::<Text>(lone).expect_err("a lone surrogate").to_string();
            let reference = serde_json::from_str::<String>(lone).expect_err("a lone surrogate").to_string();
            assert_eq!(err.split(" at line").next(), reference.split(" at line").next(), "{lone}");
        }
        for fine in [r#""\ud83d\ude00""#, r#""\\ud83d""#, r#""\u00e9 \u2028""#] {
            let text = serde_json::from_str::<Text>(fine).expect("valid");
            assert_eq!(text.unescaped(), serde_json::from_str::<String>(fine).expect("valid"));
        }
        let err = serde_json::from_str::<Text>("1e999").expect_err("out of range").to_string();
        assert!(err.starts_with("number out of range"), "{err}");
    }

    #[test]
    fn a_value_that_is_not_a_string_is_refused_like_a_string_field() {
        for (json, expected) in [
            ("7", "invalid type: integer `7`, expected a string"),
            ("-2", "invalid type: integer `-2`, expected a string"),
            ("1.5", "invalid type: floating point `1.5`, expected a string"),
            ("true", "invalid type: boolean `true`, expected a string"),
            ("null", "invalid type: null, expected a string"),
            ("[1]", "invalid type: sequence, expected a string"),
            ("{}", "invalid type: map, expected a string"),
        ] {
            let err = serde_json::from_str::<Text>(json).expect_err("not a string").to_string();
            let reference = serde_json::from_str::<String>(json).expect_err("not a string").to_string();
            assert!(err.starts_with(expected), "{err}");
            assert!(reference.starts_with(expected), "{reference}");
        }
    }
}
