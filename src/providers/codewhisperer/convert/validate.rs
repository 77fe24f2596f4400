//! The §3.5 validator: what makes Kiro answer `400 Improperly formed request.` Used by the
//! simulated upstream (to answer 400 exactly where Kiro would), the tests and the fuzzer.

use super::turns::Side;
use serde_json::Value;
use std::collections::HashSet;

/// Longest tool name Kiro accepts.
pub const KIRO_TOOL_NAME_LIMIT: usize = 64;

/// Checks a full `generateAssistantResponse` body against the rules of protocol notes §3.5 that
/// make Kiro answer `400 Improperly formed request.`; the simulated upstream answers exactly that
/// when this returns `Err`. The error names the rule and the place.
///
/// * rule 1: `conversationState.currentMessage` holds a `userInputMessage` (no assistant);
/// * rule 2: `history` alternates user/assistant, starting with user and ending with assistant;
/// * rule 3: every `content` is a non-empty string (`""` is tolerated only on a user message
///   that carries `toolResults`);
/// * rule 4: every history `toolUses[].toolUseId` is answered by exactly one later `toolResults`
///   entry and every result answers an earlier tool use; no duplicate ids;
/// * rule 5: if any message has tool uses or tool results, the current message declares tools,
///   including every name used in history (case-insensitive);
/// * rule 9: no `null` anywhere; no empty arrays or objects outside tool schemas and tool inputs;
/// * every user message has a non-empty `modelId`; `conversationId` is a non-empty string;
///   tool names are non-empty and at most [`KIRO_TOOL_NAME_LIMIT`] characters.
pub fn check_kiro_body(body: &Value) -> Result<(), String> {
    check_nulls_and_empties(body, false).map_err(|(path, what)| format!("rule 9: {what} at {path}"))?;
    let state = body
        .get("conversationState")
        .and_then(Value::as_object)
        .ok_or("conversationState missing or not an object")?;
    if state.get("conversationId").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err("conversationState.conversationId missing or empty".into());
    }
    let current =
        state.get("currentMessage").and_then(Value::as_object).ok_or("rule 1: currentMessage missing")?;
    if current.contains_key("assistantResponseMessage") {
        return Err("rule 1: currentMessage is an assistant message".into());
    }
    let current_user = current
        .get("userInputMessage")
        .and_then(Value::as_object)
        .ok_or("rule 1: currentMessage.userInputMessage missing")?;

    let empty = Vec::new();
    let history = match state.get("history") {
        None => &empty,
        Some(Value::Array(items)) => items,
        Some(_) => return Err("conversationState.history is not an array".into()),
    };

    // Rule 2, and the per-message checks.
    let mut messages: Vec<(String, Side, &serde_json::Map<String, Value>)> =
        Vec::with_capacity(history.len() + 1);
    for (i, entry) in history.iter().enumerate() {
        let user = entry.get("userInputMessage").and_then(Value::as_object);
        let assistant = entry.get("assistantResponseMessage").and_then(Value::as_object);
        let (side, message) = match (user, assistant) {
            (Some(m), None) => (Side::User, m),
            (None, Some(m)) => (Side::Assistant, m),
            _ => {
                return Err(format!(
                    "rule 2: history[{i}] must hold exactly one of userInputMessage or assistantResponseMessage"
                ));
            }
        };
        let expected = if i % 2 == 0 { Side::User } else { Side::Assistant };
        if side != expected {
            let what = if side == Side::User { "a user" } else { "an assistant" };
            return Err(format!(
                "rule 2: history[{i}] is {what} message; history must alternate starting with user"
            ));
        }
        messages.push((format!("history[{i}]"), side, message));
    }
    if history.len() % 2 == 1 {
        return Err("rule 2: history must end with an assistant message".into());
    }
    messages.push(("currentMessage".to_owned(), Side::User, current_user));

    let mut open_uses: HashSet<&str> = HashSet::new();
    let mut all_uses: HashSet<&str> = HashSet::new();
    let mut all_results: HashSet<&str> = HashSet::new();
    let mut used_names: Vec<&str> = Vec::new();
    let mut any_tool_traffic = false;
    for (place, side, message) in &messages {
        let context = message.get("userInputMessageContext");
        let results = context.and_then(|c| c.get("toolResults")).and_then(Value::as_array);
        let uses = message.get("toolUses").and_then(Value::as_array);
        let content = message
            .get("content")
            .and_then(Value::as_str)
            .ok_or(format!("rule 3: {place}.content missing"))?;
        if content.is_empty() && !(*side == Side::User && results.is_some_and(|r| !r.is_empty())) {
            return Err(format!("rule 3: {place}.content is empty"));
        }
        if *side == Side::User && message.get("modelId").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("{place}.modelId missing or empty"));
        }
        if let Some(tools) = context.and_then(|c| c.get("tools")).and_then(Value::as_array) {
            for (j, tool) in tools.iter().enumerate() {
                check_tool_name(tool.pointer("/toolSpecification/name"), &format!("{place}…tools[{j}]"))?;
            }
        }
        for (j, tool_use) in uses.into_iter().flatten().enumerate() {
            any_tool_traffic = true;
            let id = tool_use.get("toolUseId").and_then(Value::as_str).unwrap_or("");
            if id.is_empty() {
                return Err(format!("rule 4: {place}.toolUses[{j}].toolUseId missing"));
            }
            if !all_uses.insert(id) {
                return Err(format!("rule 4: duplicate toolUseId {id} at {place}.toolUses[{j}]"));
            }
            open_uses.insert(id);
            let name = check_tool_name(tool_use.get("name"), &format!("{place}.toolUses[{j}]"))?;
            used_names.push(name);
        }
        for (j, result) in results.into_iter().flatten().enumerate() {
            any_tool_traffic = true;
            let id = result.get("toolUseId").and_then(Value::as_str).unwrap_or("");
            if !all_results.insert(id) {
                return Err(format!("rule 4: duplicate toolResult for {id} at {place}…toolResults[{j}]"));
            }
            if !open_uses.remove(id) {
                return Err(format!("rule 4: {place}…toolResults[{j}] ({id}) answers no earlier tool use"));
            }
        }
    }
    if let Some(id) = open_uses.iter().next() {
        return Err(format!("rule 4: tool use {id} has no tool result"));
    }

    if any_tool_traffic {
        let tools = current_user
            .get("userInputMessageContext")
            .and_then(|c| c.get("tools"))
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
            .ok_or("rule 5: the conversation uses tools but currentMessage declares none")?;
        let declared: HashSet<String> = tools
            .iter()
            .filter_map(|t| t.pointer("/toolSpecification/name").and_then(Value::as_str))
            .map(str::to_lowercase)
            .collect();
        if let Some(name) = used_names.iter().find(|n| !declared.contains(&n.to_lowercase())) {
            return Err(format!(
                "rule 5: tool {name} is used in history but not declared in currentMessage tools"
            ));
        }
    }
    Ok(())
}

fn check_tool_name<'v>(name: Option<&'v Value>, place: &str) -> Result<&'v str, String> {
    let name = name.and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        return Err(format!("{place}: tool name missing"));
    }
    if name.chars().count() > KIRO_TOOL_NAME_LIMIT {
        return Err(format!("{place}: tool name {name} is longer than {KIRO_TOOL_NAME_LIMIT} characters"));
    }
    Ok(name)
}

/// Rule 9 walk. `free` is true inside tool schemas and tool inputs, where empty containers are
/// legitimate JSON Schema / tool arguments. Returns the path and the problem.
fn check_nulls_and_empties(value: &Value, free: bool) -> Result<(), (String, &'static str)> {
    match value {
        Value::Null => Err((String::new(), "null")),
        Value::Array(items) => {
            if items.is_empty() && !free {
                return Err((String::new(), "empty array"));
            }
            for (i, item) in items.iter().enumerate() {
                check_nulls_and_empties(item, free).map_err(|(p, w)| (format!("[{i}]{p}"), w))?;
            }
            Ok(())
        }
        Value::Object(map) => {
            if map.is_empty() && !free {
                return Err((String::new(), "empty object"));
            }
            for (k, v) in map {
                let free = free || matches!(k.as_str(), "inputSchema" | "input" | "json");
                check_nulls_and_empties(v, free).map_err(|(p, w)| (format!(".{k}{p}"), w))?;
            }
            Ok(())
        }
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(()),
    }
}
