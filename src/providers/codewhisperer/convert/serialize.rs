//! Serialisation: written straight from the turns, no intermediate JSON tree (rule 7).

use super::agent_continuation_id;
use super::turns::{Side, ToolSpec, Turn};
use crate::anthropic::text::escape_into;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// A JSON value written without `null` members or elements.
#[derive(Debug)]
struct NoNulls<'a>(&'a Value);

impl Serialize for NoNulls<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut m = s.serialize_map(None)?;
                for (k, v) in map.iter().filter(|(_, v)| !v.is_null()) {
                    m.serialize_entry(k, &NoNulls(v))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(None)?;
                for v in items.iter().filter(|v| !v.is_null()) {
                    seq.serialize_element(&NoNulls(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// A tool use's `input`: the object without nulls, `{}` for anything that is not an object.
#[derive(Debug)]
pub(super) struct ToolInput<'a>(pub(super) &'a Value);

impl Serialize for ToolInput<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(_) => NoNulls(self.0).serialize(s),
            _ => s.serialize_map(Some(0))?.end(),
        }
    }
}

/// A tool's input schema: nulls removed, `type` (default `object`) and `properties` (default
/// `{}`) always present, a non-array `required` dropped.
struct InputSchema<'a>(Option<&'a Value>);

impl Serialize for InputSchema<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let Some(Value::Object(map)) = self.0 else {
            m.serialize_entry("type", "object")?;
            m.serialize_entry("properties", &EmptyObject)?;
            return m.end();
        };
        if map.get("type").is_none_or(Value::is_null) {
            m.serialize_entry("type", "object")?;
        }
        for (k, v) in map {
            let keep = match k.as_str() {
                "properties" => v.is_object(),
                "required" => v.is_array(),
                _ => !v.is_null(),
            };
            if keep {
                m.serialize_entry(k, &NoNulls(v))?;
            }
        }
        if !map.get("properties").is_some_and(Value::is_object) {
            m.serialize_entry("properties", &EmptyObject)?;
        }
        m.end()
    }
}

struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_map(Some(0))?.end()
    }
}

pub(super) struct StateOut<'s, 'a> {
    pub(super) conversation_id: &'s str,
    pub(super) model_id: &'s str,
    pub(super) history: &'s [Turn<'a>],
    pub(super) current: &'s Turn<'a>,
    pub(super) tools: &'s [ToolSpec<'a>],
}

/// Writes the `conversationState` object, compact, in the key order Kiro's own clients use.
///
/// Written by hand rather than through serde so that the texts, kept escaped as the client
/// sent them, are copied in without being decoded and encoded again; the JSON values (tool
/// inputs and schemas) still go through serde_json.
pub(super) fn write_state(out: &mut Vec<u8>, state: &StateOut<'_, '_>) -> serde_json::Result<()> {
    let w = &mut Writer(out);
    w.put("{");
    w.key_plain("conversationId", state.conversation_id);
    w.put(",");
    w.key_plain("agentContinuationId", &agent_continuation_id(state.conversation_id));
    w.put(",\"agentTaskType\":\"vibe\",\"chatTriggerType\":\"MANUAL\",\"currentMessage\":{\"userInputMessage\":");
    w.user(state.current, state.model_id, state.tools)?;
    w.put("}");
    if !state.history.is_empty() {
        w.put(",\"history\":[");
        for (i, turn) in state.history.iter().enumerate() {
            if i > 0 {
                w.put(",");
            }
            match turn.side {
                Side::User => {
                    w.put("{\"userInputMessage\":");
                    w.user(turn, state.model_id, &[])?;
                }
                Side::Assistant => {
                    w.put("{\"assistantResponseMessage\":");
                    w.assistant(turn)?;
                }
            }
            w.put("}");
        }
        w.put("]");
    }
    w.put("}");
    Ok(())
}

struct Writer<'o>(&'o mut Vec<u8>);

impl Writer<'_> {
    fn put(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// `"s"`, escaped.
    fn plain(&mut self, s: &str) {
        self.0.push(b'"');
        escape_into(self.0, s);
        self.0.push(b'"');
    }

    /// `"key":"value"` with `value` escaped (keys are ccr's own and need no escaping).
    fn key_plain(&mut self, key: &str, value: &str) {
        self.key(key);
        self.plain(value);
    }

    fn key(&mut self, key: &str) {
        self.0.push(b'"');
        self.put(key);
        self.put("\":");
    }

    /// `"raw"`: already escaped content.
    fn raw(&mut self, raw: &[u8]) {
        self.0.push(b'"');
        self.0.extend_from_slice(raw);
        self.0.push(b'"');
    }

    fn value<T: Serialize>(&mut self, value: &T) -> serde_json::Result<()> {
        serde_json::to_writer(&mut *self.0, value)
    }

    fn user(&mut self, turn: &Turn<'_>, model_id: &str, tools: &[ToolSpec<'_>]) -> serde_json::Result<()> {
        self.put("{");
        self.key("content");
        self.raw(turn.text.raw());
        self.put(",");
        self.key_plain("modelId", model_id);
        self.put(",\"origin\":\"AI_EDITOR\"");
        if !turn.images.is_empty() {
            self.put(",\"images\":[");
            for (i, image) in turn.images.iter().enumerate() {
                if i > 0 {
                    self.put(",");
                }
                self.put("{");
                self.key_plain("format", image.format);
                self.put(",\"source\":{\"bytes\":");
                self.raw(image.source.bytes.as_bytes());
                self.put("}}");
            }
            self.put("]");
        }
        if !tools.is_empty() || !turn.tool_results.is_empty() {
            self.put(",\"userInputMessageContext\":{");
            if !tools.is_empty() {
                self.put("\"tools\":[");
                for (i, tool) in tools.iter().enumerate() {
                    if i > 0 {
                        self.put(",");
                    }
                    self.put("{\"toolSpecification\":{");
                    self.key_plain("name", &tool.name);
                    self.put(",");
                    self.key_plain("description", &tool.description);
                    self.put(",\"inputSchema\":{\"json\":");
                    self.value(&InputSchema(tool.schema))?;
                    self.put("}}}");
                }
                self.put("]");
            }
            if !turn.tool_results.is_empty() {
                if !tools.is_empty() {
                    self.put(",");
                }
                self.put("\"toolResults\":[");
                for (i, result) in turn.tool_results.iter().enumerate() {
                    if i > 0 {
                        self.put(",");
                    }
                    self.put("{");
                    self.key_plain("toolUseId", result.tool_use_id);
                    self.put(",\"content\":[");
                    for (j, part) in result.content.iter().enumerate() {
                        if j > 0 {
                            self.put(",");
                        }
                        self.put("{\"text\":\"");
                        part.text.write_raw(self.0);
                        self.put("\"}");
                    }
                    self.put("],");
                    self.key_plain("status", result.status);
                    self.put("}");
                }
                self.put("]");
            }
            self.put("}");
        }
        self.put("}");
        Ok(())
    }

    fn assistant(&mut self, turn: &Turn<'_>) -> serde_json::Result<()> {
        self.put("{");
        self.key("content");
        self.raw(turn.text.raw());
        if !turn.tool_uses.is_empty() {
            self.put(",\"toolUses\":[");
            for (i, tool_use) in turn.tool_uses.iter().enumerate() {
                if i > 0 {
                    self.put(",");
                }
                self.put("{");
                self.key_plain("toolUseId", tool_use.tool_use_id);
                self.put(",");
                self.key_plain("name", &tool_use.name);
                self.put(",\"input\":");
                self.value(&tool_use.input)?;
                self.put("}");
            }
            self.put("]");
        }
        self.put("}");
        Ok(())
    }
}
