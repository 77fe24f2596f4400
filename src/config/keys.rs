//! `server.keys`: developers' keys with their limits (issue #17). The schema and its checks live
//! here; enforcement is in [`crate::keys`].

use serde::Deserialize;

/// One developer's key: `{"name": "alice", "keySha256": "<hex>", "monthlyCredits": 300, …}`.
/// Every limit is optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyEntry {
    /// Who the key belongs to: shown in logs, metrics, `/admin/keys` and the dashboard.
    pub name: String,
    /// The key itself (hand-written configs). Exactly one of `key` and `keySha256`.
    #[serde(default)]
    pub key: Option<String>,
    /// The SHA-256 of the key, 64 hex digits (what `ccr keys add` writes).
    #[serde(default)]
    pub key_sha256: Option<String>,
    /// Credits this key may spend per calendar month (UTC), summed from each answer's metering.
    #[serde(default)]
    pub monthly_credits: Option<f64>,
    /// Requests this key may start per minute (a token bucket: bursts up to this many).
    #[serde(default)]
    pub requests_per_minute: Option<i64>,
    /// Requests of this key in flight at once.
    #[serde(default)]
    pub max_concurrent: Option<i64>,
    /// The models this key may ask for (see [`crate::keys::model_allowed`]); absent: any.
    #[serde(default)]
    pub models: Option<Vec<String>>,
}

pub(crate) const KEY_ENTRY_KEYS: &[&str] =
    &["name", "key", "keySha256", "monthlyCredits", "requestsPerMinute", "maxConcurrent", "models"];

/// The SHA-256 of `bytes` as 64 lower-case hex digits: how a key is stored and compared.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A key's name: a metric label and a word in logs.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// Whether `hex` is a SHA-256 digest written as 64 hex digits.
pub fn valid_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The meaning checks of `server.keys`: names, exactly one of `key` / `keySha256`, digests,
/// limits at least 1, no key twice, none equal to the operator key.
pub(super) fn check_meaning(keys: &[KeyEntry], api_key: Option<&str>, bad: &mut impl FnMut(String, String)) {
    let mut names: Vec<&str> = Vec::new();
    let mut digests: Vec<(String, String)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let path = format!("server.keys[{i}]");
        if !valid_name(&k.name) {
            bad(
                format!("{path}.name"),
                format!(
                    "must be 1-64 letters, digits, `-`, `_`, `.` or `@` (got `{}`)",
                    k.name.chars().take(80).collect::<String>()
                ),
            );
        } else if names.contains(&k.name.as_str()) {
            bad(format!("{path}.name"), format!("`{}` is used by another key; names must be unique", k.name));
        }
        names.push(&k.name);
        let digest = match (&k.key, &k.key_sha256) {
            (Some(_), Some(_)) => {
                bad(path.clone(), "has both `key` and `keySha256`; give exactly one".into());
                None
            }
            (None, None) => {
                bad(path.clone(), "needs `key` or `keySha256` (`ccr keys add NAME` writes one)".into());
                None
            }
            (Some(key), None) if key.trim().is_empty() => {
                bad(format!("{path}.key"), "must not be empty".into());
                None
            }
            (Some(key), None) if api_key == Some(key.as_str()) => {
                bad(
                    format!("{path}.key"),
                    "is the operator key `server.apiKey`; give the developer their own".into(),
                );
                None
            }
            (Some(key), None) => Some(sha256_hex(key.as_bytes())),
            (None, Some(hex)) if !valid_sha256_hex(hex) => {
                bad(
                    format!("{path}.keySha256"),
                    format!("must be 64 hex digits (a SHA-256 digest), got {} characters", hex.len()),
                );
                None
            }
            (None, Some(hex)) => Some(hex.to_ascii_lowercase()),
        };
        if let Some(d) = digest {
            if let Some((_, other)) = digests.iter().find(|(seen, _)| *seen == d) {
                bad(path.clone(), format!("is the same key as {other}; each developer needs their own"));
            }
            digests.push((d, path.clone()));
        }
        if let Some(c) = k.monthly_credits
            && !(c.is_finite() && c > 0.0)
        {
            bad(
                format!("{path}.monthlyCredits"),
                format!("must be a number above 0 (got {c}); omit it for no budget"),
            );
        }
        for (field, value) in
            [("requestsPerMinute", k.requests_per_minute), ("maxConcurrent", k.max_concurrent)]
        {
            if let Some(v) = value
                && !(1..=1_000_000).contains(&v)
            {
                bad(
                    format!("{path}.{field}"),
                    format!("must be between 1 and 1000000 (got {v}); omit it for no limit"),
                );
            }
        }
        if let Some(models) = &k.models {
            if models.is_empty() {
                bad(
                    format!("{path}.models"),
                    "must list at least one model; omit it to allow every model".into(),
                );
            }
            for (j, m) in models.iter().enumerate() {
                if m.trim().is_empty() || m.trim() == "*" {
                    bad(
                        format!("{path}.models[{j}]"),
                        format!(
                            "must be a model name like `claude-sonnet-4-5` or a prefix like `claude-haiku-*` (got `{m}`)"
                        ),
                    );
                }
            }
        }
    }
}
