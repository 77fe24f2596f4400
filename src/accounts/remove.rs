//! `ccr accounts remove ID`: out of the providers, every rule and its weights.

use super::args::RemoveArgs;
use super::{AccountsError, ConfigDoc, edit};
use crate::config::expand_tilde;
use serde_json::Value;
use std::path::Path;

pub fn run(args: &RemoveArgs) -> Result<String, AccountsError> {
    let mut doc = ConfigDoc::open(args.config.config.as_deref())?;
    if doc.original.is_none() {
        return Err(AccountsError::refused(format!(
            "no config at {}: nothing to remove",
            doc.path.display()
        )));
    }
    let removed = edit::remove_account(&mut doc.value, &args.id, args.force)?;
    doc.save()?;
    let mut report = format!(
        "removed providers.{} from {}{}",
        args.id,
        doc.path.display(),
        if removed.rules.is_empty() {
            String::new()
        } else {
            format!(" and rules: {}", removed.rules.join(", "))
        }
    );
    if !removed.dropped_rules.is_empty() {
        report.push_str(&format!(
            "\ndropped rules left without providers (--force): {} (their requests now use `default`)",
            removed.dropped_rules.join(", ")
        ));
    }
    let token = removed.entry.get("tokenPath").and_then(Value::as_str).map(expand_tilde);
    if let Some(token) = token {
        report.push('\n');
        report.push_str(&token_note(&token, &doc.accounts_dir(), args.delete_token));
    }
    report.push_str("\n(a running instance picks this up by hot reload)");
    Ok(report)
}

/// Delete the token file when asked and it is ccr's own; say what happened to it.
fn token_note(token: &Path, accounts_dir: &Path, delete: bool) -> String {
    let ours = match (token.parent().map(Path::canonicalize), accounts_dir.canonicalize()) {
        (Some(Ok(parent)), Ok(dir)) => parent == dir,
        _ => false,
    };
    match (delete, ours) {
        (false, _) => format!("token file kept: {} (--delete-token deletes it)", token.display()),
        (true, false) => format!(
            "token file kept: {} is not in ccr's accounts folder {} (ccr never deletes files it does not own)",
            token.display(),
            accounts_dir.display()
        ),
        (true, true) => match std::fs::remove_file(token) {
            Ok(()) => format!("token file deleted: {}", token.display()),
            Err(e) => format!("token file {} not deleted: {e}", token.display()),
        },
    }
}
