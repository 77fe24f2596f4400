//! Kiro IDE token files for the logins a sim issues, written the way the IDE writes them.

use super::{SimCredentials, SimIdcCredentials};
use crate::atomic_file::{self, Permissions};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::io;
use std::path::{Path, PathBuf};

fn rfc3339_ms(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Write a Kiro IDE social token file (`kiro-auth-token.json` shape: `accessToken`,
/// `refreshToken`, `expiresAt` RFC 3339 with milliseconds and `Z`, `profileArn`, `authMethod`
/// `social`, `provider` `Github`), mode 0600, atomically (temp file + rename, like an editor).
pub fn write_social_token_file(path: &Path, creds: &SimCredentials) -> io::Result<()> {
    let value = json!({
        "accessToken": creds.access_token,
        "refreshToken": creds.refresh_token,
        "expiresAt": rfc3339_ms(&creds.expires_at),
        "profileArn": creds.profile_arn,
        "authMethod": "social",
        "provider": "Github",
    });
    write_private_json(path, &value)
}

/// Write a Kiro IDE IdC token file (`clientIdHash`, `authMethod` `IdC`, `provider` `BuilderId`,
/// `region`, no `profileArn`) and, next to it, the `<clientIdHash>.json` registration file
/// (`clientId`, `clientSecret`, `expiresAt`). Both mode 0600. Returns the registration file's path.
pub fn write_idc_token_file(path: &Path, idc: &SimIdcCredentials) -> io::Result<PathBuf> {
    let creds = &idc.credentials;
    let token = json!({
        "accessToken": creds.access_token,
        "refreshToken": creds.refresh_token,
        "expiresAt": rfc3339_ms(&creds.expires_at),
        "clientIdHash": idc.client_id_hash,
        "authMethod": "IdC",
        "provider": "BuilderId",
        "region": idc.region,
    });
    let registration = json!({
        "clientId": idc.client_id,
        "clientSecret": idc.client_secret,
        "expiresAt": rfc3339_ms(&idc.client_expires_at),
    });
    let registration_path = path.with_file_name(format!("{}.json", idc.client_id_hash));
    write_private_json(&registration_path, &registration)?;
    write_private_json(path, &token)?;
    Ok(registration_path)
}

/// Create the parent directory if needed, then replace `path` atomically with mode 0600.
fn write_private_json(path: &Path, value: &Value) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    atomic_file::write(path, &text, Permissions::Private)
}
