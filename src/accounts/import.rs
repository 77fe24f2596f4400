//! `ccr accounts import [FILE] --name ID`: take a Kiro token file into ccr's accounts folder.
//!
//! Steps, each refusing with the config untouched: the config is valid and the id free; the file
//! is a Kiro token (and an IdC token's registration file is there); the copy (0600, the original
//! never modified) answers `getUsageLimits` (unless `--no-verify`); the edited config passes the
//! `ccr check` validation. A refusal after the copy removes the copy again.

use super::args::{ImportArgs, Placement};
use super::usage::{self, Checked};
use super::{AccountsError, ConfigDoc, check_id, edit, write_file_atomically};
use crate::atomic_file::Permissions;
use crate::config::{Provider, expand_tilde};
use crate::providers::codewhisperer::token::read_token_file;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// The Kiro IDE's token file.
pub const KIRO_IDE_TOKEN: &str = "~/.aws/sso/cache/kiro-auth-token.json";

/// Files written so far, removed again if the command refuses later.
#[derive(Default)]
pub(crate) struct Written(Vec<PathBuf>);

impl Written {
    pub(crate) fn push(&mut self, p: PathBuf) {
        self.0.push(p);
    }

    pub(crate) fn undo(self) {
        for p in self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub fn run(args: &ImportArgs) -> Result<String, AccountsError> {
    let p = &args.placement;
    check_id(&p.name)?;
    let mut doc = ConfigDoc::open(p.config.config.as_deref())?;
    refuse_taken(&doc, &p.name)?;
    let source = match &args.file {
        Some(f) => f.clone(),
        None => expand_tilde(KIRO_IDE_TOKEN),
    };
    let (raw, registration) = read_kiro_token(&source)?;
    let dir = doc.accounts_dir();
    let dest = dir.join(format!("{}.json", p.name));
    if dest.exists() {
        return Err(AccountsError::refused(format!(
            "{} exists already (left by an earlier account?); remove it or choose another --name",
            dest.display()
        )));
    }
    let mut written = Written::default();
    let result = (|| {
        if let Some((hash, reg_source)) = &registration {
            let reg_dest = dir.join(format!("{hash}.json"));
            let bytes = std::fs::read(reg_source).map_err(|e| AccountsError::io(reg_source, e))?;
            match std::fs::read(&reg_dest) {
                Ok(existing) if existing == bytes => {}
                Ok(_) => {
                    return Err(AccountsError::refused(format!(
                        "{} exists with another registration; cannot import this IdC login next to it",
                        reg_dest.display()
                    )));
                }
                Err(_) => {
                    write_file_atomically(&reg_dest, &bytes, Permissions::Private)?;
                    written.push(reg_dest);
                }
            }
        }
        write_file_atomically(&dest, &raw, Permissions::Private)?;
        written.push(dest.clone());
        add_and_save(&mut doc, p, &dest, None)
    })();
    match result {
        Ok(report) => Ok(format!("imported {} as `{}`\n{report}", source.display(), p.name)),
        Err(e) => {
            written.undo();
            Err(e)
        }
    }
}

/// Refuse an id that is already a provider.
pub(crate) fn refuse_taken(doc: &ConfigDoc, id: &str) -> Result<(), AccountsError> {
    if doc.providers().is_some_and(|p| p.contains_key(id)) {
        return Err(AccountsError::refused(format!(
            "an account `{id}` exists already in {} (providers.{id}); choose another --name or `ccr accounts remove {id}` first",
            doc.path.display()
        )));
    }
    Ok(())
}

/// The file's bytes, and for an IdC login that names its registration by `clientIdHash`
/// (without inline `clientId`/`clientSecret`), that hash and the registration file's path.
/// An IdC token's `clientIdHash` and the registration file it names.
type Registration = Option<(String, PathBuf)>;

fn read_kiro_token(path: &Path) -> Result<(Vec<u8>, Registration), AccountsError> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if path == expand_tilde(KIRO_IDE_TOKEN) => AccountsError::refused(format!(
            "no Kiro IDE token at {}: log in with the Kiro IDE first, pass a FILE, or use `ccr accounts login --builder-id`",
            path.display()
        )),
        _ => AccountsError::io(path, e),
    })?;
    let not_kiro =
        |why: &str| AccountsError::refused(format!("{} is not a Kiro token file: {why}", path.display()));
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| not_kiro("not JSON"))?;
    let object = value.as_object().ok_or_else(|| not_kiro("not a JSON object"))?;
    if !object.contains_key("accessToken") && !object.contains_key("refreshToken") {
        return Err(not_kiro("no accessToken / refreshToken"));
    }
    read_token_file(path).map_err(|e| not_kiro(&e.to_string().replace(&path.display().to_string(), "it")))?;
    let text = |k: &str| object.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let registration = match (text("clientIdHash"), text("clientId")) {
        (Some(hash), None) => {
            if !hash.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(not_kiro("clientIdHash is not a hash"));
            }
            let reg = path.with_file_name(format!("{hash}.json"));
            if !reg.is_file() {
                return Err(AccountsError::refused(format!(
                    "{} is an IdC login whose registration file {} is missing (the Kiro IDE keeps it next to the token)",
                    path.display(),
                    reg.display()
                )));
            }
            Some((hash.to_owned(), reg))
        }
        _ => None,
    };
    Ok((bytes, registration))
}

/// The provider entry for a token file ccr keeps.
pub(crate) fn provider_entry(
    id: &str,
    token: &Path,
    p: &Placement,
    region: Option<&str>,
) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert("type".into(), json!("codewhisperer"));
    entry.insert("name".into(), json!(id));
    entry.insert("authMethod".into(), json!("kiro-token"));
    entry.insert("tokenPath".into(), json!(token.display().to_string()));
    if let Some(e) = &p.endpoint {
        entry.insert("endpoint".into(), json!(e));
    }
    if let Some(e) = &p.auth_endpoint {
        entry.insert("authEndpoint".into(), json!(e));
    }
    if let Some(r) = region.filter(|r| *r != "us-east-1") {
        entry.insert("region".into(), json!(r));
    }
    entry
}

/// Check the account upstream (unless `--no-verify`), add it to the config and save. Returns
/// the report lines.
pub(crate) fn add_and_save(
    doc: &mut ConfigDoc,
    p: &Placement,
    token: &Path,
    region: Option<&str>,
) -> Result<String, AccountsError> {
    let entry = provider_entry(&p.name, token, p, region);
    let mut report = String::new();
    if p.no_verify {
        report.push_str("not checked upstream (--no-verify)\n");
    } else {
        let provider: Provider = serde_json::from_value(Value::Object(entry.clone()))
            .map_err(|e| AccountsError::refused(format!("bad --endpoint / --auth-endpoint: {e}")))?;
        let checked = verify(&provider)?;
        report.push_str(&describe_checked(&checked));
    }
    let added = edit::add_account(&mut doc.value, &p.name, entry, p.rules.as_deref(), p.weight)?;
    doc.save()?;
    let rules: Vec<String> = added
        .rules
        .iter()
        .map(|(r, w)| match w {
            Some(w) => format!("{r} (weight {w})"),
            None => r.clone(),
        })
        .collect();
    report.push_str(&format!(
        "token file: {}\nadded providers.{} to {} in rules: {}\n(a running instance picks this up by hot reload)",
        token.display(),
        p.name,
        doc.path.display(),
        rules.join(", ")
    ));
    Ok(report)
}

fn verify(provider: &Provider) -> Result<Checked, AccountsError> {
    let rt = super::runtime()?;
    rt.block_on(usage::check(provider, &super::http())).map_err(|reason| {
        AccountsError::refused(format!(
            "the upstream did not accept this token: {reason} (nothing was added; --no-verify skips this check)"
        ))
    })
}

fn describe_checked(c: &Checked) -> String {
    let u = &c.usage;
    let reset = u.reset_at.map(|t| format!(", resets {}", t.format("%Y-%m-%d"))).unwrap_or_default();
    format!(
        "checked upstream: {}, credits {} used ({} left){reset}\n",
        u.tier.as_deref().unwrap_or("unknown tier"),
        u.credits(),
        usage::number(u.remaining())
    )
}
