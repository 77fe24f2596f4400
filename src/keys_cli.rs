//! `ccr keys add | list | remove`: developers' keys in the config file.
//!
//! `add` generates a key (`sk-ccr-` and 32 random bytes from the operating system's generator,
//! as hex), prints it once on stdout and stores only its SHA-256 (`keySha256`) in
//! `server.keys`; the config is validated as `ccr check` would and replaced atomically with its
//! key order and mode kept, so a running ccr picks the key up by hot reload. `list` shows each
//! key's limits, and its usage when the instance the config describes answers `/admin/keys`.

use crate::accounts::{AccountsError, ConfigDoc};
use crate::config::keys::valid_name;
use crate::keys::args::{AddArgs, KeysCommand, ListArgs, RemoveArgs};
use crate::keys::{KeysView, credits_text, sha256_hex};
use serde_json::{Map, Value, json};
use std::process::ExitCode;
use std::time::Duration;

/// Prefix of generated keys: says what the key is for when it turns up somewhere.
pub const KEY_PREFIX: &str = "sk-ccr-";

/// Run one `ccr keys` command.
pub fn run(command: &KeysCommand) -> ExitCode {
    let result = match command {
        KeysCommand::Add(a) => add(a),
        KeysCommand::List(a) => list(a),
        KeysCommand::Remove(a) => remove(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccr keys: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A new key: the prefix and 32 bytes from the operating system's generator, as hex.
pub fn generate_key() -> String {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).unwrap_or_else(|_| {
        // No OS generator: the thread generator (ChaCha, seeded from the OS) is next best.
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
    });
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{KEY_PREFIX}{hex}")
}

fn keys_list(doc: &mut ConfigDoc) -> Result<&mut Vec<Value>, AccountsError> {
    let root =
        doc.value.as_object_mut().ok_or_else(|| AccountsError::refused("the config is not a JSON object"))?;
    root.entry("server")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| AccountsError::refused("`server` in the config is not an object"))?
        .entry("keys")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| AccountsError::refused("`server.keys` in the config is not a list"))
}

/// The `server.keys` entry for a new key (only its digest).
pub fn entry_for(args: &AddArgs, key: &str) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("name".into(), json!(args.name));
    entry.insert("keySha256".into(), json!(sha256_hex(key.as_bytes())));
    if let Some(c) = args.monthly_credits {
        // Whole numbers as integers (`300`, not `300.0`), as a person would write them.
        let whole = c.fract() == 0.0 && c.abs() < 1e15;
        entry.insert("monthlyCredits".into(), if whole { json!(c as i64) } else { json!(c) });
    }
    if let Some(n) = args.rpm {
        entry.insert("requestsPerMinute".into(), json!(n));
    }
    if let Some(n) = args.max_concurrent {
        entry.insert("maxConcurrent".into(), json!(n));
    }
    if !args.models.is_empty() {
        entry.insert("models".into(), json!(args.models));
    }
    entry
}

fn add(args: &AddArgs) -> Result<(), AccountsError> {
    if !valid_name(&args.name) {
        return Err(AccountsError::refused(format!(
            "`{}` is not a usable name: 1-64 letters, digits, `-`, `_`, `.` or `@`",
            args.name
        )));
    }
    let mut doc = ConfigDoc::open(args.config.config.as_deref())?;
    let key = generate_key();
    let list = keys_list(&mut doc)?;
    if list.iter().any(|k| k.get("name").and_then(Value::as_str) == Some(args.name.as_str())) {
        return Err(AccountsError::refused(format!(
            "a key `{}` exists already; `ccr keys remove {}` first to replace it",
            args.name, args.name
        )));
    }
    list.push(Value::Object(entry_for(args, &key)));
    doc.save()?;
    eprintln!(
        "added key `{}` to {} (a running ccr picks it up by hot reload); it is shown once, here:",
        args.name,
        doc.path.display()
    );
    println!("{key}");
    Ok(())
}

fn remove(args: &RemoveArgs) -> Result<(), AccountsError> {
    let mut doc = ConfigDoc::open(args.config.config.as_deref())?;
    let list = keys_list(&mut doc)?;
    let before = list.len();
    list.retain(|k| k.get("name").and_then(Value::as_str) != Some(args.name.as_str()));
    if list.len() == before {
        return Err(AccountsError::refused(format!("no key `{}` in server.keys", args.name)));
    }
    if list.is_empty()
        && let Some(server) = doc.value.get_mut("server").and_then(Value::as_object_mut)
    {
        server.remove("keys");
    }
    doc.save()?;
    eprintln!("removed key `{}` from {}", args.name, doc.path.display());
    Ok(())
}

fn list(args: &ListArgs) -> Result<(), AccountsError> {
    let flag = args.config.config.as_deref();
    let source = crate::config::locate(flag);
    let (config, _) = crate::config::load(&source).map_err(|e| AccountsError::refused(e.to_string()))?;
    let base = args.url.clone().unwrap_or_else(|| crate::status::default_url(&config));
    let live = crate::integration::statusline::http_get(
        &base,
        "/admin/keys",
        config.server.api_key.as_deref(),
        Duration::from_secs(3),
    );
    let view: Option<KeysView> = match live {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    };
    if args.json {
        let value = match &view {
            Some(v) => serde_json::to_value(v).unwrap_or_default(),
            None => json!({"keys": config.server.keys.iter().map(config_json).collect::<Vec<_>>()}),
        };
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return Ok(());
    }
    if config.server.keys.is_empty() {
        println!("no keys in server.keys (add one with `ccr keys add NAME`)");
        return Ok(());
    }
    match &view {
        Some(v) => print!("{}", render_live(v)),
        None => {
            print!("{}", render_config(&config.server.keys));
            println!("(no ccr answered /admin/keys at {base}: usage unknown)");
        }
    }
    Ok(())
}

fn config_json(k: &crate::config::KeyEntry) -> Value {
    json!({
        "name": k.name,
        "limits": {
            "monthlyCredits": k.monthly_credits,
            "requestsPerMinute": k.requests_per_minute,
            "maxConcurrent": k.max_concurrent,
            "models": k.models,
        }
    })
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn models_text(models: Option<&Vec<String>>) -> String {
    models.map_or_else(|| "any".to_owned(), |m| m.join(","))
}

/// The table from the config alone.
pub fn render_config(keys: &[crate::config::KeyEntry]) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.name.clone(),
                opt(k.monthly_credits.map(credits_text)),
                opt(k.requests_per_minute),
                opt(k.max_concurrent),
                models_text(k.models.as_ref()),
            ]
        })
        .collect();
    table(&["NAME", "BUDGET", "RPM", "CONCURRENT", "MODELS"], &rows)
}

/// The table from a running instance's `/admin/keys`.
pub fn render_live(view: &KeysView) -> String {
    let rows: Vec<Vec<String>> = view
        .keys
        .iter()
        .map(|k| {
            vec![
                k.name.clone(),
                k.hash_prefix.clone(),
                credits_text(k.credits_this_month),
                opt(k.limits.monthly_credits.map(credits_text)),
                opt(k.limits.requests_per_minute),
                opt(k.limits.max_concurrent),
                models_text(k.limits.models.as_ref()),
                k.live_requests.to_string(),
                k.requests.to_string(),
                k.limited.values().sum::<u64>().to_string(),
                k.last_seen.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string()),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "NAME",
            "HASH",
            "CREDITS",
            "BUDGET",
            "RPM",
            "CONCURRENT",
            "MODELS",
            "LIVE",
            "REQUESTS",
            "LIMITED",
            "LAST SEEN",
        ],
        &rows,
    );
    let resets = view
        .resets_at
        .map_or_else(String::new, |t| format!(", budgets reset {}", t.format("%Y-%m-%d %H:%MZ")));
    out.push_str(&format!("credits for {} (counters: {}){resets}\n", view.month, view.backend));
    out
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(head.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::args::ConfigFlag;

    #[test]
    fn generated_keys_are_long_random_and_prefixed() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 64);
        assert!(a[KEY_PREFIX.len()..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_entry_holds_the_digest_and_the_limits_only() {
        let args = AddArgs {
            name: "alice".into(),
            monthly_credits: Some(300.0),
            rpm: Some(60),
            max_concurrent: None,
            models: vec!["claude-sonnet-4-5".into()],
            config: ConfigFlag { config: None },
        };
        let entry = Value::Object(entry_for(&args, "sk-ccr-x"));
        assert_eq!(
            entry,
            json!({"name": "alice", "keySha256": sha256_hex(b"sk-ccr-x"), "monthlyCredits": 300,
                   "requestsPerMinute": 60, "models": ["claude-sonnet-4-5"]})
        );
        assert!(!entry.to_string().contains("sk-ccr-x"));
    }
}
