//! `ccr statusline`: the command for Claude Code's `statusLine` setting.
//!
//! Claude Code runs it after each message with a JSON object on stdin (`session_id`, `model`,
//! `workspace`, …) and shows the first line it prints. This asks the instance which account
//! serves that session (`GET /sessions/{id}`: `account`, `category`, `turns`, `lastSeen`), and
//! that account's credits (`usage` in the session answer, else `<health>/providers`:
//! `providers.<id>.usage = {used, limit, remaining, resetAt, tier, checkedAt}`), and prints
//! one short line:
//!
//! ```text
//! ccr: primary · 988/1000 credits left · reset in 12d · default
//! ```
//!
//! It talks plain HTTP/1.1 over one short-lived local connection (no TLS stack to set up), with
//! 300 ms timeouts, so it answers in milliseconds; it always exits 0 and prints something short:
//! `ccr: not running` when nothing answers, `ccr: new session` for a session the instance has
//! not seen (or an instance without the sessions endpoint).

use super::StatuslineArgs;
use super::code::{connect, print_line, read_limited};
use crate::config;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_millis(300);

/// Why a GET did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("not running: {0}")]
    Unreachable(std::io::Error),
    #[error("bad answer: {0}")]
    Bad(String),
}

/// `GET {base}{path}` over one HTTP/1.1 connection (`Connection: close`); `http://` only.
/// Returns the status and the body (content-length, chunked or read-to-close).
pub fn http_get(
    base: &str,
    path: &str,
    key: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), GetError> {
    let mut stream = connect(base, timeout).map_err(GetError::Unreachable)?;
    let host = base.trim_start_matches("http://").split('/').next().unwrap_or("localhost");
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n");
    if let Some(key) = key {
        request.push_str(&format!("x-api-key: {key}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).map_err(GetError::Unreachable)?;
    let mut raw = Vec::new();
    stream.take(4 * 1024 * 1024).read_to_end(&mut raw).map_err(|e| GetError::Bad(e.to_string()))?;
    let split =
        raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| GetError::Bad("no headers".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| GetError::Bad("no status line".into()))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(body.len());
        out.extend_from_slice(&body[start..end]);
        body = body.get(end + 2..).unwrap_or(&[]);
    }
    out
}

/// What the session endpoint says, read tolerantly.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SessionView {
    pub account: Option<String>,
    pub category: Option<String>,
    pub usage: Option<Value>,
}

pub fn parse_session(v: &Value) -> SessionView {
    let s = |keys: &[&str]| keys.iter().find_map(|k| v.get(*k).and_then(Value::as_str)).map(str::to_owned);
    SessionView {
        account: s(&["account", "provider", "providerId"]),
        category: s(&["category", "lastCategory"]),
        usage: v.get("usage").filter(|u| u.is_object()).cloned(),
    }
}

/// The line for a known session.
pub fn render(view: &SessionView, usage: Option<&Value>, now: DateTime<Utc>) -> String {
    let mut parts = vec![view.account.clone().unwrap_or_else(|| "?".into())];
    if let Some(u) = usage {
        let n = |k: &str| u.get(k).and_then(Value::as_f64);
        let remaining = n("remaining").or_else(|| Some(n("limit")? - n("used")?));
        if let Some(r) = remaining {
            match n("limit") {
                Some(l) => parts.push(format!(
                    "{}/{} credits left",
                    crate::accounts::usage::number(r.max(0.0)),
                    crate::accounts::usage::number(l)
                )),
                None => parts.push(format!("{} credits left", crate::accounts::usage::number(r.max(0.0)))),
            }
        }
        if let Some(reset) =
            u.get("resetAt").and_then(Value::as_str).and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            let secs = (reset.with_timezone(&Utc) - now).num_seconds().max(0);
            parts.push(format!("reset in {}d", (secs + 86_399) / 86_400));
        }
    }
    if let Some(c) = &view.category {
        parts.push(c.clone());
    }
    format!("ccr: {}", parts.join(" · "))
}

/// `ccr statusline`: never fails loudly; always exit 0.
pub fn run(args: &StatuslineArgs) -> ExitCode {
    print_line(&line(args));
    ExitCode::SUCCESS
}

fn line(args: &StatuslineArgs) -> String {
    let input = if std::io::stdin().is_terminal() {
        String::new()
    } else {
        read_limited(std::io::stdin().lock(), 1024 * 1024)
    };
    let session = serde_json::from_str::<Value>(&input)
        .ok()
        .and_then(|v| v.get("session_id").and_then(Value::as_str).map(str::to_owned))
        .filter(|s| !s.is_empty() && s.len() <= 200);
    let (base, key, health) = match &args.url {
        Some(url) => (url.trim_end_matches('/').to_owned(), None, "/health".to_owned()),
        None => match config::load(&config::locate(args.config.config.as_deref())) {
            Ok((cfg, _)) => (
                crate::status::default_url(&cfg),
                cfg.server.api_key.clone(),
                cfg.monitoring.health_endpoint.trim_end_matches('/').to_owned(),
            ),
            Err(_) => return "ccr: config error (ccr check)".into(),
        },
    };
    let Some(session) = session else {
        return match http_get(&base, &health, key.as_deref(), TIMEOUT) {
            Ok(_) => "ccr: running".into(),
            Err(GetError::Unreachable(_)) => "ccr: not running".into(),
            Err(GetError::Bad(_)) => "ccr: ?".into(),
        };
    };
    let path = format!("/sessions/{}", encode(&session));
    let view = match http_get(&base, &path, key.as_deref(), TIMEOUT) {
        Ok((200, body)) => match serde_json::from_str::<Value>(&body) {
            Ok(v) => parse_session(&v),
            Err(_) => return "ccr: ?".into(),
        },
        Ok((404, _)) => return "ccr: new session".into(),
        Ok((status, _)) => return format!("ccr: ? ({status})"),
        Err(GetError::Unreachable(_)) => return "ccr: not running".into(),
        Err(GetError::Bad(_)) => return "ccr: ?".into(),
    };
    let usage = view.usage.clone().or_else(|| {
        let account = view.account.as_deref()?;
        let (status, body) = http_get(&base, &format!("{health}/providers"), key.as_deref(), TIMEOUT).ok()?;
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        v.get("providers")?.get(account)?.get("usage").filter(|u| u.is_object()).cloned()
    });
    render(&view, usage.as_ref(), Utc::now())
}

/// Percent-encode a path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_account_credits_reset_and_category() {
        let now = DateTime::parse_from_rfc3339("2026-03-20T12:00:00Z").unwrap().with_timezone(&Utc);
        let view =
            parse_session(&json!({"account":"primary","category":"thinking","turns":3,"lastSeen":"x"}));
        let usage = json!({"used":12.0,"limit":1000.0,"remaining":988.0,"resetAt":"2026-04-01T00:00:00Z","tier":"KIRO FREE"});
        assert_eq!(
            render(&view, Some(&usage), now),
            "ccr: primary · 988/1000 credits left · reset in 12d · thinking"
        );
        assert_eq!(render(&view, None, now), "ccr: primary · thinking");
        let view = parse_session(&json!({"provider":"b","usage":{"used":5,"limit":50}}));
        assert_eq!(render(&view, view.usage.as_ref(), now), "ccr: b · 45/50 credits left");
    }

    #[test]
    fn chunked_bodies_and_odd_ids() {
        assert_eq!(dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), b"hello world");
        assert_eq!(dechunk(b"zz\r\n"), b"");
        assert_eq!(encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
