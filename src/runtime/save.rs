//! Save the weights in force (configured plus run-time overrides) into the config file.

use super::Runtime;
use crate::balancer::BalancerSnapshot;
use crate::config::{self, Config, ConfigError};
use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstContainerNode, CstNode, CstObject, CstRootNode};

/// Why the weights were not saved. The first three are the file's or the setup's state (the
/// operator can fix them); [`SaveError::Write`] is the machine's (a disk error).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SaveError {
    /// Running on the built-in default: there is no file.
    #[error("running on the built-in default config: there is no file to save to (start with --config)")]
    NoFile,
    /// The file on disk does not validate (it may hold an edit in progress).
    #[error("the config file has problems, fix them first: {}", .0.problems().join("; "))]
    FileInvalid(#[source] ConfigError),
    /// The file's text cannot take the edits.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// Writing the file failed.
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// One weight to write into the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WeightEdit {
    /// `providers.<provider>.weight`.
    Provider { provider: String, weight: u32 },
    /// `routing.rules.<rule>.loadBalancing.weights.<provider>`.
    Rule { rule: String, provider: String, weight: u32 },
}

impl WeightEdit {
    fn describe(&self) -> String {
        match self {
            WeightEdit::Provider { provider, weight } => format!("providers.{provider}.weight = {weight}"),
            WeightEdit::Rule { rule, provider, weight } => {
                format!("routing.rules.{rule}.loadBalancing.weights.{provider} = {weight}")
            }
        }
    }
}

/// The edits that make the file's weights equal to the weights in force, given the config the
/// file holds now (`file`) and the balancer's state. Provider-level run-time weights become the
/// provider's `weight`; where a rule would then still differ (a rule weight in the file, or a
/// rule-level run-time weight), the rule's `weights` entry is set. Providers and rules the file
/// does not have are left alone, and so are providers a rule only reaches as its `fallback`
/// (weights do not steer `single`).
pub(super) fn weight_edits(file: &Config, state: &BalancerSnapshot) -> Vec<WeightEdit> {
    let mut edits = Vec::new();
    let provider_weight = |id: &str| -> Option<u32> {
        let p = file.providers.get(id)?;
        Some(u32::try_from(p.weight.max(0)).unwrap_or(u32::MAX))
    };
    let mut new_provider_weight = std::collections::HashMap::new();
    for p in &state.providers {
        let Some(in_file) = provider_weight(&p.id) else { continue };
        let in_force = p.weight_override.unwrap_or(p.weight);
        if in_force != in_file {
            edits.push(WeightEdit::Provider { provider: p.id.clone(), weight: in_force });
        }
        new_provider_weight.insert(p.id.clone(), in_force);
    }
    for r in &state.rules {
        let Some(rule) = file.routing.rules.get(&r.category) else { continue };
        for rp in &r.providers {
            if !rule.providers.contains(&rp.id) {
                continue;
            }
            let after = match rule.load_balancing.weights.get(&rp.id) {
                Some(w) => Some(u32::try_from((*w).max(0)).unwrap_or(u32::MAX)),
                None => new_provider_weight.get(&rp.id).copied(),
            };
            if after.is_some_and(|after| after != rp.weight) {
                edits.push(WeightEdit::Rule {
                    rule: r.category.clone(),
                    provider: rp.id.clone(),
                    weight: rp.weight,
                });
            }
        }
    }
    edits
}

/// Why [`apply_weight_edits`] could not edit the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EditError {
    /// The text is not a JSON object.
    #[error("the config file is not valid JSON: {0}")]
    NotJson(String),
    /// A value on the way to a weight is not an object.
    #[error("cannot write {0}: a value on the way is not a JSON object")]
    NotAnObject(String),
    /// The edited config does not validate.
    #[error("the edited config would be invalid: {0}")]
    Invalid(String),
}

/// `obj.<key>` as an object, created (empty, at the end of `obj`) when it is missing.
fn object_in(obj: &CstObject, key: &str, what: &str) -> Result<CstObject, EditError> {
    match obj.get(key) {
        None => Ok(obj.object_value_or_set(key)),
        Some(prop) => match prop.value() {
            Some(CstNode::Container(CstContainerNode::Object(o))) => Ok(o),
            _ => Err(EditError::NotAnObject(what.to_owned())),
        },
    }
}

/// Set `obj.<key>` to the number `n`, in place when the key exists, else appended.
fn set_number(obj: &CstObject, key: &str, n: u32) {
    match obj.get(key) {
        Some(prop) => prop.set_value(jsonc_parser::json!(n)),
        None => {
            obj.append(key, jsonc_parser::json!(n));
        }
    }
}

/// Apply weight edits to a config file's text. Only the weights change: an existing weight is
/// replaced where it stands, a missing one is added at the end of its object (with the objects
/// that lead to it), and every other byte of the file (order, spacing, line breaks) stays as
/// the user wrote it. The result is checked to be a valid config.
pub(super) fn apply_weight_edits(text: &str, edits: &[WeightEdit]) -> Result<String, EditError> {
    let root =
        CstRootNode::parse(text, &ParseOptions::default()).map_err(|e| EditError::NotJson(e.to_string()))?;
    let obj = root.object_value().ok_or_else(|| EditError::NotJson("not an object".into()))?;
    for edit in edits {
        let what = edit.describe();
        match edit {
            WeightEdit::Provider { provider, weight } => {
                let providers = object_in(&obj, "providers", &what)?;
                set_number(&object_in(&providers, provider, &what)?, "weight", *weight);
            }
            WeightEdit::Rule { rule, provider, weight } => {
                let mut node = obj.clone();
                for key in ["routing", "rules", rule.as_str(), "loadBalancing", "weights"] {
                    node = object_in(&node, key, &what)?;
                }
                set_number(&node, provider, *weight);
            }
        }
    }
    let out = root.to_string();
    config::parse_config(&out).map_err(|e| EditError::Invalid(e.to_string()))?;
    Ok(out)
}

impl Runtime {
    /// Write the weights in force (configured plus run-time overrides) into the config file, then
    /// reload it, so the overrides become the configured weights. Only the weights' text changes
    /// (see [`apply_weight_edits`]); the file is replaced in one atomic step. Refused when
    /// running on the built-in default, or when the file on disk does not validate (it may hold
    /// an edit in progress). Blocking file I/O: call it off the async workers.
    pub(crate) fn save_weights(&self) -> Result<String, SaveError> {
        let result = self.save_weights_inner();
        match &result {
            Ok(m) => tracing::info!("{m}"),
            Err(e) => tracing::error!("weights not saved: {e}"),
        }
        result
    }

    fn save_weights_inner(&self) -> Result<String, SaveError> {
        let Some(path) = self.source.path() else {
            return Err(SaveError::NoFile);
        };
        let (file_config, text) = config::load(&self.source).map_err(SaveError::FileInvalid)?;
        let edits = weight_edits(&file_config, &self.balancer.snapshot());
        if edits.is_empty() {
            return Ok(format!("{} already holds the weights in force", path.display()));
        }
        let edited = apply_weight_edits(&text, &edits)?;
        crate::atomic_file::write(path, edited.as_bytes(), crate::atomic_file::Permissions::Keep)
            .map_err(|source| SaveError::Write { path: path.display().to_string(), source })?;
        let list: Vec<String> = edits.iter().map(WeightEdit::describe).collect();
        // The reload signals the snapshot publisher.
        let reloaded = self.reload();
        let mut message = format!("saved to {}: {}", path.display(), list.join(", "));
        if let Err(e) = reloaded {
            message.push_str(&format!(" (but the reload failed: {e})"));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::Command;
    use crate::config::{ConfigSource, parse_config};
    use serde_json::{Map, Value};

    const FILE: &str = r#"{
  "name": "keep me",
  "routing": {"rules": {
    "default": {"providers": ["a", "b"],
                "loadBalancing": {"strategy": "weighted-round-robin", "weights": {"a": 70, "b": 30}}},
    "background": {"providers": ["b", "a"]}
  }},
  "providers": {
    "a": {"weight": 70, "endpoint": "http://127.0.0.1:9", "tokenPath": "/nonexistent/a.json"},
    "b": {"weight": 30, "endpoint": "http://127.0.0.1:9", "tokenPath": "/nonexistent/b.json"}
  },
  "server": {"port": 3456}
}"#;

    #[test]
    fn edits_cover_provider_and_rule_overrides() {
        let config = parse_config(FILE).expect("config");
        let rt = Runtime::new(config.clone(), ConfigSource::Embedded);
        assert!(weight_edits(&config, &rt.balancer.snapshot()).is_empty());
        rt.balancer.apply(Command::SetWeight { provider: "a".into(), rule: None, weight: 50 }).expect("a");
        rt.balancer
            .apply(Command::SetWeight { provider: "b".into(), rule: Some("background".into()), weight: 4 })
            .expect("b");
        let edits = weight_edits(&config, &rt.balancer.snapshot());
        assert_eq!(
            edits,
            vec![
                WeightEdit::Provider { provider: "a".into(), weight: 50 },
                // The provider-level override also beats the rule weight in `default`.
                WeightEdit::Rule { rule: "default".into(), provider: "a".into(), weight: 50 },
                WeightEdit::Rule { rule: "background".into(), provider: "b".into(), weight: 4 },
            ]
        );
        let text = apply_weight_edits(FILE, &edits).expect("edit");
        let saved = parse_config(&text).expect("valid");
        assert_eq!(saved.providers["a"].weight, 50);
        assert_eq!(saved.routing.rules["default"].load_balancing.weights["a"], 50);
        assert_eq!(saved.routing.rules["background"].load_balancing.weights["b"], 4);
        // Order and other content kept.
        let keys: Vec<String> =
            serde_json::from_str::<Map<String, Value>>(&text).expect("json").keys().cloned().collect();
        assert_eq!(keys, ["name", "routing", "providers", "server"]);
        assert!(text.contains("\"keep me\""));
        // After saving, the file's weights are the weights in force: nothing more to write.
        rt.apply_config(saved.clone());
        assert!(weight_edits(&saved, &rt.balancer.snapshot()).is_empty());
    }

    /// The lines of `after` that are not in `before`, in order.
    fn changed_lines<'a>(before: &str, after: &'a str) -> Vec<&'a str> {
        let old: Vec<&str> = before.lines().collect();
        after.lines().filter(|l| !old.contains(l)).collect()
    }

    #[test]
    fn a_weight_change_touches_only_its_own_text() {
        // The seed-style layout: one key per line, two-space indent.
        let file = r#"{
  "name": "mine",
  "routing": {
    "rules": {
      "default": {
        "providers": ["a", "b"],
        "loadBalancing": {
          "strategy": "weighted-round-robin",
          "weights": {
            "a": 70,
            "b": 30
          }
        }
      },
      "background": {"providers": ["b", "a"]}
    }
  },
  "providers": {
    "a": {"weight": 70,   "tokenPath": "/nonexistent/a.json"},
    "b": {
      "tokenPath": "/nonexistent/b.json"
    }
  }
}
"#;
        let edits = [
            WeightEdit::Rule { rule: "default".into(), provider: "a".into(), weight: 60 },
            WeightEdit::Provider { provider: "a".into(), weight: 61 },
        ];
        let text = apply_weight_edits(file, &edits).expect("edit");
        assert_eq!(text.lines().count(), file.lines().count(), "{text}");
        assert_eq!(
            changed_lines(file, &text),
            [
                "            \"a\": 60,",
                "    \"a\": {\"weight\": 61,   \"tokenPath\": \"/nonexistent/a.json\"},"
            ]
        );
        assert!(text.ends_with("}\n"));

        // A weight that is not there yet is added at the end of its object, and nothing else moves.
        let edits = [
            WeightEdit::Provider { provider: "b".into(), weight: 5 },
            WeightEdit::Rule { rule: "background".into(), provider: "b".into(), weight: 2 },
        ];
        let text = apply_weight_edits(file, &edits).expect("edit");
        let saved = parse_config(&text).expect("valid");
        assert_eq!(saved.providers["b"].weight, 5);
        assert_eq!(saved.routing.rules["background"].load_balancing.weights["b"], 2);
        let untouched = file.lines().filter(|l| text.lines().any(|t| t == *l)).count();
        assert!(untouched >= file.lines().count() - 3, "{text}");
    }

    #[test]
    fn edits_that_break_the_config_are_refused() {
        let edits = [
            WeightEdit::Rule { rule: "default".into(), provider: "a".into(), weight: 0 },
            WeightEdit::Rule { rule: "default".into(), provider: "b".into(), weight: 0 },
        ];
        assert!(matches!(apply_weight_edits(FILE, &edits), Err(EditError::Invalid(_))));
        assert!(matches!(apply_weight_edits("[1]", &[]), Err(EditError::NotJson(_))));
    }
}
