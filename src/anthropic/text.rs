//! [`Text`]: a JSON string value kept as the client escaped it.
//!
//! A Claude Code main turn is 0.6–1.4 MB, almost all of it in a few hundred string values (file
//! contents in tool results, thinking, the system prompt). ccr never needs most of them as text:
//! it copies them from the Anthropic request into the Kiro request. Decoding every escape on the
//! way in and encoding it again on the way out was most of ccr's own cost on such a turn, so the
//! request types keep those strings in their JSON form: reading one is a scan and a copy, and
//! writing it into the Kiro body is a copy. Only what ccr inspects (a blank check, the token
//! estimate, a web-search query) is decoded, and those decode lazily and usually borrow.
//!
//! Escapes the client wrote stay as written (`\u00e9` is not turned into `é`): the Kiro body
//! means the same JSON either way.

use serde::de::{self, Deserialize, Deserializer, Unexpected};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A JSON string value, stored escaped and with its quotes, exactly as it was read.
#[derive(Clone)]
pub struct Text(Box<str>);

impl Text {
    /// A text from an unescaped string (what a test or ccr itself writes).
    pub fn new(plain: &str) -> Text {
        let mut out = String::with_capacity(plain.len() + 2);
        out.push('"');
        escape_into(&mut out, plain);
        out.push('"');
        Text(out.into_boxed_str())
    }

    /// The escaped content between the quotes, ready to be copied into another JSON string.
    pub fn raw(&self) -> &str {
        &self.0[1..self.0.len() - 1]
    }

    /// The decoded string: borrowed when the JSON had no escape.
    pub fn unescaped(&self) -> Cow<'_, str> {
        unescape(self.raw())
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
        Text("\"\"".into())
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
    /// Reads the value without decoding it (serde_json's raw capture: a scan and one copy); a
    /// value that is not a string is refused with serde's usual "invalid type" message.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Box<str> = Box::<RawValue>::deserialize(deserializer)?.into();
        if raw.starts_with('"') {
            return from_quoted_raw(raw);
        }
        Err(not_a_string::<D::Error>(&raw, &"a string"))
    }
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
pub(crate) fn from_quoted_raw<E: de::Error>(raw: Box<str>) -> Result<Text, E> {
    debug_assert!(raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"'));
    let bytes = raw.as_bytes();
    let surrogate =
        memchr::memmem::find_iter(bytes, b"\\u").any(|at| matches!(bytes.get(at + 2), Some(b'd' | b'D')));
    if surrogate && let Err(e) = serde_json::from_str::<String>(&raw) {
        return Err(E::custom(crate::anthropic::blocks::without_position(&e)));
    }
    Ok(Text(raw))
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
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
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

/// A JSON string being built from pieces, kept escaped: client texts are copied in as they
/// came ([`TextBuf::push_text`]), ccr's own words are escaped on the way in
/// ([`TextBuf::push_plain`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextBuf(String);

impl TextBuf {
    pub fn with_capacity(n: usize) -> TextBuf {
        TextBuf(String::with_capacity(n))
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
        self.0.push_str(text.raw());
    }

    /// Appends escaped content (another buffer's, or a text's [`Text::raw`]).
    pub fn push_raw(&mut self, raw: &str) {
        self.0.push_str(raw);
    }

    pub fn raw(&self) -> &str {
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
fn is_blank(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let (c, used) = if bytes[i] == b'\\' {
            let (c, used) = decode_escape(&bytes[i + 1..]);
            (c, used + 1)
        } else {
            let c = raw[i..].chars().next().unwrap_or('\0');
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
            assert_eq!(text.raw(), &json[1..json.len() - 1], "kept as written");
            assert_eq!(text.unescaped(), plain);
            assert_eq!(text.json_len(), json.len() - 2);
            assert_eq!(text.is_blank(), plain.trim().is_empty(), "{plain:?}");
            assert_eq!(Text::new(plain).raw(), text.raw(), "the same escapes as serde_json");
            assert_eq!(text, Text::new(plain));
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
