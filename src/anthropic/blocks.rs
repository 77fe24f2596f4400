//! Reading content blocks (`{"type": "text", "text": …}`) by their `type`, by hand.
//!
//! serde's derive for internally tagged enums reads the whole object into a buffer of decoded
//! values before it looks at `type`: every string of every block was decoded and copied once
//! more, and a [`Text`] (which keeps its JSON escaped) could not be read at all. Here each key is
//! read straight into its field once `type` is known. Claude Code writes `type` first in most
//! blocks; the keys that come before it (`tool_result`'s `tool_use_id`, say) are kept as raw JSON
//! and read when the type is known.
//!
//! What is accepted and refused is what the derive accepted: unknown keys are ignored, a key
//! the block type does not use is ignored, an unknown type is [`ContentBlock::Unknown`], a
//! missing required key or a value of the wrong type is an error naming it.

use super::text::Text;
use super::types::{Content, ContentBlock, Source, ToolResultBlock, result_content};
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A serde_json error's message without its ` at line L column C` (a position inside a value
/// read a second time would point into that value, not into the request).
pub(super) fn without_position(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match message.strip_suffix(&position) {
        Some(m) => m.to_owned(),
        None => message,
    }
}

/// A key, borrowed from the input when it has no escape.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// One tagged block type: its kinds, the fields read so far, and how a block is built.
trait Tagged: Sized {
    type Kind: Copy;
    type Fields: Default;
    /// The derive's wording, kept for error messages.
    const EXPECTING: &'static str;
    fn kind(name: &str) -> Self::Kind;
    /// Reads the value of `key` for a block of `kind`; keys the kind does not use are skipped.
    fn field<'x, D: Deserializer<'x>>(
        kind: Self::Kind,
        key: &str,
        fields: &mut Self::Fields,
        value: D,
    ) -> Result<(), D::Error>;
    fn build<E: de::Error>(kind: Self::Kind, fields: Self::Fields) -> Result<Self, E>;
}

/// Sets a field once; a second occurrence is an error, as with the derive.
fn put<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

fn required<T, E: de::Error>(slot: Option<T>, name: &'static str) -> Result<T, E> {
    slot.ok_or_else(|| E::missing_field(name))
}

/// `null` reads as the default (`is_error: null`).
fn or_default<'x, T: Default + Deserialize<'x>, D: Deserializer<'x>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

struct TaggedVisitor<T>(PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut kind: Option<T::Kind> = None;
        let mut early: Vec<(String, &'de RawValue)> = Vec::new();
        let mut fields = T::Fields::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "type" {
                if kind.is_some() {
                    return Err(de::Error::duplicate_field("type"));
                }
                let Key(name) = map.next_value::<Key<'de>>()?;
                kind = Some(T::kind(&name));
                continue;
            }
            match kind {
                Some(kind) => map.next_value_seed(FieldSeed::<T> { kind, key: &key, fields: &mut fields })?,
                None => early.push((key.into_owned(), map.next_value::<&'de RawValue>()?)),
            }
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        for (key, raw) in early {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            // Named from the block on (`.text: …`, `.content[1].text: …`): `parse_request` appends it
            // to the block's path, as if the key had been read in place.
            T::field(kind, &key, &mut fields, &mut de).map_err(|e| {
                let message = without_position(&e);
                if message.starts_with('[') {
                    de::Error::custom(format_args!(".{key}{message}"))
                } else {
                    de::Error::custom(format_args!(".{key}: {message}"))
                }
            })?;
        }
        T::build(kind, fields)
    }
}

struct FieldSeed<'f, T: Tagged> {
    kind: T::Kind,
    key: &'f str,
    fields: &'f mut T::Fields,
}

impl<'de, T: Tagged> DeserializeSeed<'de> for FieldSeed<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        T::field(self.kind, self.key, self.fields, d)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Image,
    ToolUse,
    ToolResult,
    Thinking,
    RedactedThinking,
    Document,
    ServerToolUse,
    WebSearchToolResult,
    Unknown,
}

#[derive(Default)]
struct BlockFields {
    /// `text`, or `thinking`'s `thinking`.
    text: Option<Text>,
    source: Option<Source>,
    id: Option<String>,
    name: Option<String>,
    input: Option<Value>,
    tool_use_id: Option<String>,
    result: Option<Option<Content<ToolResultBlock>>>,
    search: Option<Value>,
    is_error: Option<bool>,
    title: Option<Option<String>>,
}

impl Tagged for ContentBlock {
    type Kind = BlockKind;
    type Fields = BlockFields;
    const EXPECTING: &'static str = "internally tagged enum ContentBlock";

    fn kind(name: &str) -> BlockKind {
        match name {
            "text" => BlockKind::Text,
            "image" => BlockKind::Image,
            "tool_use" => BlockKind::ToolUse,
            "tool_result" => BlockKind::ToolResult,
            "thinking" => BlockKind::Thinking,
            "redacted_thinking" => BlockKind::RedactedThinking,
            "document" => BlockKind::Document,
            "server_tool_use" => BlockKind::ServerToolUse,
            "web_search_tool_result" => BlockKind::WebSearchToolResult,
            _ => BlockKind::Unknown,
        }
    }

    fn field<'x, D: Deserializer<'x>>(
        kind: BlockKind,
        key: &str,
        f: &mut BlockFields,
        d: D,
    ) -> Result<(), D::Error> {
        use BlockKind as K;
        match (kind, key) {
            (K::Text, "text") => put(&mut f.text, Text::deserialize(d)?, "text"),
            (K::Thinking, "thinking") => put(&mut f.text, Text::deserialize(d)?, "thinking"),
            (K::Image, "source") => put(&mut f.source, Source::deserialize(d)?, "source"),
            (K::Document, "source") => match Option::<Source>::deserialize(d)? {
                Some(source) => put(&mut f.source, source, "source"),
                None => Ok(()),
            },
            (K::Document, "title") => put(&mut f.title, Option::<String>::deserialize(d)?, "title"),
            (K::ToolUse, "id") => put(&mut f.id, String::deserialize(d)?, "id"),
            (K::ToolUse, "name") => put(&mut f.name, String::deserialize(d)?, "name"),
            (K::ServerToolUse, "id") => put(&mut f.id, String::deserialize(d)?, "id"),
            (K::ServerToolUse, "name") => put(&mut f.name, String::deserialize(d)?, "name"),
            (K::ToolUse | K::ServerToolUse, "input") => put(&mut f.input, Value::deserialize(d)?, "input"),
            (K::ToolResult, "tool_use_id") => put(&mut f.tool_use_id, String::deserialize(d)?, "tool_use_id"),
            (K::WebSearchToolResult, "tool_use_id") => {
                put(&mut f.tool_use_id, String::deserialize(d)?, "tool_use_id")
            }
            (K::ToolResult, "content") => put(&mut f.result, result_content(d)?, "content"),
            (K::ToolResult, "is_error") => put(&mut f.is_error, or_default(d)?, "is_error"),
            (K::WebSearchToolResult, "content") => put(&mut f.search, Value::deserialize(d)?, "content"),
            _ => IgnoredAny::deserialize(d).map(|_| ()),
        }
    }

    fn build<E: de::Error>(kind: BlockKind, f: BlockFields) -> Result<Self, E> {
        Ok(match kind {
            BlockKind::Text => ContentBlock::Text { text: required(f.text, "text")? },
            BlockKind::Image => ContentBlock::Image { source: required(f.source, "source")? },
            BlockKind::ToolUse => ContentBlock::ToolUse {
                id: required(f.id, "id")?,
                name: required(f.name, "name")?,
                input: f.input.unwrap_or_default(),
            },
            BlockKind::ToolResult => ContentBlock::ToolResult {
                tool_use_id: required(f.tool_use_id, "tool_use_id")?,
                content: f.result.flatten(),
                is_error: f.is_error.unwrap_or_default(),
            },
            BlockKind::Thinking => ContentBlock::Thinking { thinking: f.text.unwrap_or_default() },
            BlockKind::RedactedThinking => ContentBlock::RedactedThinking,
            BlockKind::Document => ContentBlock::Document { source: f.source, title: f.title.flatten() },
            BlockKind::ServerToolUse => ContentBlock::ServerToolUse {
                id: f.id.unwrap_or_default(),
                name: f.name.unwrap_or_default(),
                input: f.input.unwrap_or_default(),
            },
            BlockKind::WebSearchToolResult => ContentBlock::WebSearchToolResult {
                tool_use_id: f.tool_use_id.unwrap_or_default(),
                content: f.search.unwrap_or_default(),
            },
            BlockKind::Unknown => ContentBlock::Unknown,
        })
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TaggedVisitor::<ContentBlock>(PhantomData))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResultKind {
    Text,
    Image,
    ToolReference,
    Document,
    Unknown,
}

#[derive(Default)]
struct ResultFields {
    text: Option<Text>,
    source: Option<Source>,
    tool_name: Option<String>,
    title: Option<Option<String>>,
}

impl Tagged for ToolResultBlock {
    type Kind = ResultKind;
    type Fields = ResultFields;
    const EXPECTING: &'static str = "internally tagged enum ToolResultBlock";

    fn kind(name: &str) -> ResultKind {
        match name {
            "text" => ResultKind::Text,
            "image" => ResultKind::Image,
            "tool_reference" => ResultKind::ToolReference,
            "document" => ResultKind::Document,
            _ => ResultKind::Unknown,
        }
    }

    fn field<'x, D: Deserializer<'x>>(
        kind: ResultKind,
        key: &str,
        f: &mut ResultFields,
        d: D,
    ) -> Result<(), D::Error> {
        use ResultKind as K;
        match (kind, key) {
            (K::Text, "text") => put(&mut f.text, Text::deserialize(d)?, "text"),
            (K::Image, "source") => put(&mut f.source, Source::deserialize(d)?, "source"),
            (K::Document, "source") => match Option::<Source>::deserialize(d)? {
                Some(source) => put(&mut f.source, source, "source"),
                None => Ok(()),
            },
            (K::Document, "title") => put(&mut f.title, Option::<String>::deserialize(d)?, "title"),
            (K::ToolReference, "tool_name") => put(&mut f.tool_name, String::deserialize(d)?, "tool_name"),
            _ => IgnoredAny::deserialize(d).map(|_| ()),
        }
    }

    fn build<E: de::Error>(kind: ResultKind, f: ResultFields) -> Result<Self, E> {
        Ok(match kind {
            ResultKind::Text => ToolResultBlock::Text { text: required(f.text, "text")? },
            ResultKind::Image => ToolResultBlock::Image { source: required(f.source, "source")? },
            ResultKind::ToolReference => {
                ToolResultBlock::ToolReference { tool_name: f.tool_name.unwrap_or_default() }
            }
            ResultKind::Document => ToolResultBlock::Document { source: f.source, title: f.title.flatten() },
            ResultKind::Unknown => ToolResultBlock::Unknown,
        })
    }
}

impl<'de> Deserialize<'de> for ToolResultBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TaggedVisitor::<ToolResultBlock>(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(json: &str) -> Result<ContentBlock, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn type_may_come_after_the_other_keys() {
        let late = block(r#"{"tool_use_id":"t1","is_error":null,"content":"out\nput","type":"tool_result"}"#);
        let early = block(r#"{"type":"tool_result","tool_use_id":"t1","content":"out\nput"}"#);
        assert_eq!(late, early);
        let Ok(ContentBlock::ToolResult { tool_use_id, content: Some(Content::Text(text)), is_error: false }) =
            late
        else {
            panic!("{late:?}")
        };
        assert_eq!(tool_use_id, "t1");
        assert_eq!(text.raw(), br"out\nput", "kept escaped");
    }

    #[test]
    fn refusals_name_the_field() {
        let err = block(r#"{"type":"text"}"#).expect_err("no text");
        assert!(err.starts_with("missing field `text`"), "{err}");
        let err = block(r#"{"text":"a","type":"text","text":"b"}"#).expect_err("twice");
        assert!(err.contains("duplicate field `text`"), "{err}");
        let err = block(r#"{"text":5,"type":"text"}"#).expect_err("a number before the type");
        assert!(err.starts_with(".text: invalid type: integer `5`, expected a string"), "{err}");
        let err = block(r#"{"type":"tool_use","id":"x"}"#).expect_err("no name");
        assert!(err.starts_with("missing field `name`"), "{err}");
        let err = block(r#""text""#).expect_err("not an object");
        assert!(err.contains("expected internally tagged enum ContentBlock"), "{err}");
        let err = block(r#"{"text":"a"}"#).expect_err("no type");
        assert!(err.starts_with("missing field `type`"), "{err}");
    }

    #[test]
    fn unknown_types_and_keys_are_ignored() {
        assert_eq!(block(r#"{"type":"future","text":5,"x":[{"y":null}]}"#), Ok(ContentBlock::Unknown));
        assert_eq!(
            block(r#"{"cache_control":{"type":"ephemeral"},"type":"text","text":"hi","citations":[]}"#),
            Ok(ContentBlock::Text { text: Text::new("hi") })
        );
        // A key another type uses is skipped, whatever its value.
        assert_eq!(
            block(r#"{"type":"text","text":"hi","source":7}"#),
            Ok(ContentBlock::Text { text: Text::new("hi") })
        );
        assert_eq!(
            block(r#"{"type":"redacted_thinking","data":"opaque"}"#),
            Ok(ContentBlock::RedactedThinking)
        );
    }
}
