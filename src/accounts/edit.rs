//! The JSON edits behind `ccr accounts import|login|remove`: pure functions on the config value
//! (serde_json with `preserve_order`, so keys keep their order). Validation happens on save.

use super::AccountsError;
use serde_json::{Map, Value, json};

/// What adding an account did, for the command's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// `(rule, weight given in its weights map, if it has one)`.
    pub rules: Vec<(String, Option<i64>)>,
}

/// Add `providers.<id>` = `entry` and put the id in the rules: the ones named in `only` (each
/// must exist), else every rule; a config without rules gets a `default` rule. A rule with a
/// `loadBalancing.weights` map gets `weight`, else the mean of its weights. Refuses an id that
/// exists.
pub fn add_account(
    doc: &mut Value,
    id: &str,
    mut entry: Map<String, Value>,
    only: Option<&[String]>,
    weight: Option<i64>,
) -> Result<Added, AccountsError> {
    if weight.is_some_and(|w| w < 0) {
        return Err(AccountsError::refused("--weight must be 0 or more"));
    }
    let root =
        doc.as_object_mut().ok_or_else(|| AccountsError::refused("the config is not a JSON object"))?;
    let providers = root
        .entry("providers")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| AccountsError::refused("`providers` in the config is not an object"))?;
    if providers.contains_key(id) {
        return Err(AccountsError::refused(format!(
            "an account `{id}` exists already (providers.{id}); choose another --name or `ccr accounts remove {id}` first"
        )));
    }
    let rules = root
        .entry("routing")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| AccountsError::refused("`routing` in the config is not an object"))?
        .entry("rules")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| AccountsError::refused("`routing.rules` in the config is not an object"))?;
    if rules.is_empty() {
        rules.insert("default".into(), json!({"providers": []}));
    }
    let chosen: Vec<String> = match only {
        Some(names) => {
            let unknown: Vec<&String> = names.iter().filter(|n| !rules.contains_key(n.as_str())).collect();
            if !unknown.is_empty() {
                let have: Vec<&str> = rules.keys().map(String::as_str).collect();
                return Err(AccountsError::refused(format!(
                    "no rule {} in routing.rules (the config has: {})",
                    unknown.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                    have.join(", ")
                )));
            }
            names.to_vec()
        }
        None => rules.keys().cloned().collect(),
    };
    let mut added = Added { rules: Vec::new() };
    let mut weighted_somewhere = false;
    for name in &chosen {
        let rule = rules
            .get_mut(name)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| AccountsError::refused(format!("routing.rules.{name} is not an object")))?;
        let list =
            rule.entry("providers").or_insert_with(|| json!([])).as_array_mut().ok_or_else(|| {
                AccountsError::refused(format!("routing.rules.{name}.providers is not a list"))
            })?;
        list.push(Value::String(id.to_owned()));
        let weights = rule
            .get_mut("loadBalancing")
            .and_then(Value::as_object_mut)
            .and_then(|lb| lb.get_mut("weights"))
            .and_then(Value::as_object_mut);
        let given = match weights {
            Some(weights) => {
                let w = weight.unwrap_or_else(|| mean_weight(weights));
                weights.insert(id.to_owned(), json!(w));
                weighted_somewhere = true;
                Some(w)
            }
            None => None,
        };
        added.rules.push((name.clone(), given));
    }
    // A rule without a weights map uses the provider's own `weight`.
    if let Some(w) = weight
        && (!weighted_somewhere || added.rules.iter().any(|(_, g)| g.is_none()))
    {
        entry.insert("weight".into(), json!(w));
    }
    if let Some(providers) = root.get_mut("providers").and_then(Value::as_object_mut) {
        providers.insert(id.to_owned(), Value::Object(entry));
    }
    Ok(added)
}

/// The mean of a weights map, rounded; 1 for an empty one.
fn mean_weight(weights: &Map<String, Value>) -> i64 {
    let values: Vec<f64> = weights.values().filter_map(Value::as_f64).collect();
    if values.is_empty() {
        return 1;
    }
    (values.iter().sum::<f64>() / values.len() as f64).round() as i64
}

/// What removing an account did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The removed provider entry (for its `tokenPath`).
    pub entry: Value,
    /// Rules the id was taken out of.
    pub rules: Vec<String>,
    /// Rules dropped because `--force` let them become empty.
    pub dropped_rules: Vec<String>,
}

/// Take `providers.<id>` out of the providers and of every rule (list, weights, fallback). A
/// rule left without providers is refused, unless `force`, which drops that rule (never
/// `default`, which the config requires).
pub fn remove_account(doc: &mut Value, id: &str, force: bool) -> Result<Removed, AccountsError> {
    let root =
        doc.as_object_mut().ok_or_else(|| AccountsError::refused("the config is not a JSON object"))?;
    let exists = root.get("providers").and_then(Value::as_object).is_some_and(|p| p.contains_key(id));
    if !exists {
        let have: Vec<String> = root
            .get("providers")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        return Err(AccountsError::refused(format!(
            "no account `{id}` in providers (the config has: {})",
            if have.is_empty() { "none".into() } else { have.join(", ") }
        )));
    }
    let mut removed = Removed { entry: Value::Null, rules: Vec::new(), dropped_rules: Vec::new() };
    if let Some(rules) =
        root.get_mut("routing").and_then(|r| r.get_mut("rules")).and_then(Value::as_object_mut)
    {
        let mut emptied = Vec::new();
        for (name, rule) in rules.iter_mut() {
            let Some(rule) = rule.as_object_mut() else { continue };
            let Some(list) = rule.get_mut("providers").and_then(Value::as_array_mut) else { continue };
            let before = list.len();
            list.retain(|p| p.as_str() != Some(id));
            if list.len() == before {
                continue;
            }
            removed.rules.push(name.clone());
            if list.is_empty() {
                emptied.push(name.clone());
            }
            if let Some(lb) = rule.get_mut("loadBalancing").and_then(Value::as_object_mut) {
                if let Some(weights) = lb.get_mut("weights").and_then(Value::as_object_mut) {
                    weights.shift_remove(id);
                }
                if lb.get("fallback").and_then(Value::as_str) == Some(id) {
                    lb.shift_remove("fallback");
                }
            }
        }
        if !emptied.is_empty() {
            if !force {
                return Err(AccountsError::refused(format!(
                    "removing `{id}` would leave rule{} {} without providers; add another account first, or pass --force to drop {}",
                    if emptied.len() == 1 { "" } else { "s" },
                    emptied.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                    if emptied.len() == 1 { "that rule" } else { "those rules" },
                )));
            }
            if emptied.iter().any(|n| n == "default") {
                return Err(AccountsError::refused(format!(
                    "`{id}` is the only account of the `default` rule, which every config needs; add another account first"
                )));
            }
            for name in &emptied {
                rules.shift_remove(name);
            }
            removed.dropped_rules = emptied;
        }
    }
    if let Some(providers) = root.get_mut("providers").and_then(Value::as_object_mut) {
        removed.entry = providers.shift_remove(id).unwrap_or(Value::Null);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Value {
        serde_json::from_str(
            r#"{"name":"x","routing":{"rules":{
                "default":{"providers":["a","b"],"loadBalancing":{"strategy":"weighted-round-robin","weights":{"a":70,"b":30}}},
                "background":{"providers":["b"],"loadBalancing":{"strategy":"single","fallback":"b"}}}},
              "providers":{"a":{"tokenPath":"/a"},"b":{"tokenPath":"/b"}},"server":{"port":1}}"#,
        )
        .unwrap()
    }

    #[test]
    fn add_goes_to_every_rule_with_the_mean_weight_and_keeps_order() {
        let mut doc = seed();
        let added = add_account(&mut doc, "c", Map::new(), None, None).unwrap();
        assert_eq!(added.rules, vec![("default".into(), Some(50)), ("background".into(), None)]);
        assert_eq!(doc["routing"]["rules"]["default"]["providers"], json!(["a", "b", "c"]));
        assert_eq!(doc["routing"]["rules"]["default"]["loadBalancing"]["weights"]["c"], 50);
        assert_eq!(doc["routing"]["rules"]["background"]["providers"], json!(["b", "c"]));
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "routing", "providers", "server"]);
        let providers: Vec<&String> = doc["providers"].as_object().unwrap().keys().collect();
        assert_eq!(providers, ["a", "b", "c"]);
    }

    #[test]
    fn add_to_chosen_rules_with_a_weight() {
        let mut doc = seed();
        add_account(&mut doc, "c", Map::new(), Some(&["background".into()]), Some(5)).unwrap();
        assert_eq!(doc["routing"]["rules"]["default"]["providers"], json!(["a", "b"]));
        assert_eq!(doc["providers"]["c"]["weight"], 5, "background has no weights map");
        let e = add_account(&mut doc, "d", Map::new(), Some(&["nope".into()]), None).unwrap_err();
        assert!(e.to_string().contains("no rule `nope`"), "{e}");
        let e = add_account(&mut doc, "a", Map::new(), None, None).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
    }

    #[test]
    fn add_to_an_empty_config_makes_a_default_rule() {
        let mut doc = json!({"routing":{"rules":{}},"providers":{}});
        add_account(&mut doc, "only", Map::new(), None, None).unwrap();
        assert_eq!(doc["routing"]["rules"]["default"]["providers"], json!(["only"]));
    }

    #[test]
    fn remove_cleans_rules_weights_and_fallback() {
        let mut doc = seed();
        let e = remove_account(&mut doc.clone(), "b", false).unwrap_err();
        assert!(e.to_string().contains("rule `background` without providers"), "{e}");
        let removed = remove_account(&mut doc, "b", true).unwrap();
        assert_eq!(removed.rules, ["default", "background"]);
        assert_eq!(removed.dropped_rules, ["background"]);
        assert_eq!(removed.entry["tokenPath"], "/b");
        assert_eq!(doc["routing"]["rules"]["default"]["providers"], json!(["a"]));
        assert_eq!(doc["routing"]["rules"]["default"]["loadBalancing"]["weights"], json!({"a": 70}));
        assert!(doc["routing"]["rules"].get("background").is_none());
        let e = remove_account(&mut doc, "a", true).unwrap_err();
        assert!(e.to_string().contains("`default` rule"), "{e}");
        let e = remove_account(&mut doc, "zz", false).unwrap_err();
        assert!(e.to_string().contains("no account `zz`"), "{e}");
    }
}
