//! Serialisation: written straight from the turns, no intermediate JSON tree (rule 7).

use super::agent_continuation_id;
use super::turns::{Side, ToolSpec, Turn};
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

/// `{key: value}`.
struct Single<'k, V>(&'k str, V);

impl<V: Serialize> Serialize for Single<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0, &self.1)?;
        m.end()
    }
}

pub(super) struct StateOut<'s, 'a> {
    pub(super) conversation_id: &'s str,
    pub(super) model_id: &'s str,
    pub(super) history: &'s [Turn<'a>],
    pub(super) current: &'s Turn<'a>,
    pub(super) tools: &'s [ToolSpec<'a>],
}

impl Serialize for StateOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("conversationId", self.conversation_id)?;
        m.serialize_entry("agentContinuationId", &agent_continuation_id(self.conversation_id))?;
        m.serialize_entry("agentTaskType", "vibe")?;
        m.serialize_entry("chatTriggerType", "MANUAL")?;
        let current = UserOut { turn: self.current, model_id: self.model_id, tools: self.tools };
        m.serialize_entry("currentMessage", &Single("userInputMessage", current))?;
        if !self.history.is_empty() {
            m.serialize_entry("history", &HistoryOut { turns: self.history, model_id: self.model_id })?;
        }
        m.end()
    }
}

struct HistoryOut<'s, 'a> {
    turns: &'s [Turn<'a>],
    model_id: &'s str,
}

impl Serialize for HistoryOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.turns.len()))?;
        for turn in self.turns {
            match turn.side {
                Side::User => seq.serialize_element(&Single(
                    "userInputMessage",
                    UserOut { turn, model_id: self.model_id, tools: &[] },
                ))?,
                Side::Assistant => {
                    seq.serialize_element(&Single("assistantResponseMessage", AssistantOut(turn)))?
                }
            }
        }
        seq.end()
    }
}

struct UserOut<'s, 'a> {
    turn: &'s Turn<'a>,
    model_id: &'s str,
    tools: &'s [ToolSpec<'a>],
}

impl Serialize for UserOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("content", &self.turn.text)?;
        m.serialize_entry("modelId", self.model_id)?;
        m.serialize_entry("origin", "AI_EDITOR")?;
        if !self.turn.images.is_empty() {
            m.serialize_entry("images", &self.turn.images)?;
        }
        if !self.tools.is_empty() || !self.turn.tool_results.is_empty() {
            m.serialize_entry("userInputMessageContext", &ContextOut { tools: self.tools, turn: self.turn })?;
        }
        m.end()
    }
}

struct ContextOut<'s, 'a> {
    tools: &'s [ToolSpec<'a>],
    turn: &'s Turn<'a>,
}

impl Serialize for ContextOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        if !self.tools.is_empty() {
            m.serialize_entry("tools", &ToolsOut(self.tools))?;
        }
        if !self.turn.tool_results.is_empty() {
            m.serialize_entry("toolResults", &self.turn.tool_results)?;
        }
        m.end()
    }
}

struct ToolsOut<'s, 'a>(&'s [ToolSpec<'a>]);

impl Serialize for ToolsOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for tool in self.0 {
            seq.serialize_element(&Single("toolSpecification", SpecOut(tool)))?;
        }
        seq.end()
    }
}

struct SpecOut<'s, 'a>(&'s ToolSpec<'a>);

impl Serialize for SpecOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("name", &self.0.name)?;
        m.serialize_entry("description", &self.0.description)?;
        m.serialize_entry("inputSchema", &Single("json", InputSchema(self.0.schema)))?;
        m.end()
    }
}

struct AssistantOut<'s, 'a>(&'s Turn<'a>);

impl Serialize for AssistantOut<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("content", &self.0.text)?;
        if !self.0.tool_uses.is_empty() {
            m.serialize_entry("toolUses", &self.0.tool_uses)?;
        }
        m.end()
    }
}
