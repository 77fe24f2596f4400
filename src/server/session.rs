//! Conversations: the session key a request carries, and `GET /sessions/{id}` (which account
//! serves a Claude Code session, for `ccr statusline`).
//!
//! The key is the `X-Claude-Code-Session-Id` header, else the `session_id` inside
//! `metadata.user_id` (its JSON form, or the legacy `user_…_account_…_session_<uuid>` form).
//! Values that are not plain ids (ASCII letters, digits, `-`, `_`; 1–128 characters) are ignored,
//! never an error: a request without a usable key is simply placed without affinity.

use super::Runtime;
use crate::anthropic::types::MessagesRequest;
use crate::anthropic::{ApiError, ErrorKind};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// The header Claude Code sends with its session id.
pub const SESSION_HEADER: &str = "x-claude-code-session-id";

/// Whether `id` can serve as a session key.
pub fn is_session_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The conversation's session key: the header, else `metadata.user_id`'s session id.
pub fn session_key(headers: &HeaderMap, req: &MessagesRequest) -> Option<String> {
    let from_header = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| is_session_id(v))
        .map(str::to_owned);
    from_header.or_else(|| req.session_id().filter(|id| is_session_id(id)))
}

/// `GET /sessions/{id}`: the account serving the session, the category of its last request, its
/// turns and when it was last seen; 404 (Anthropic-shaped) for a session not known (never seen,
/// or evicted after `stickyTtl` idle).
pub async fn session_handler(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> Response {
    let unknown = || {
        ApiError::new(ErrorKind::NotFoundError, format!("no conversation with session id {id:?} is known"))
            .into_response()
    };
    if !is_session_id(&id) {
        return unknown();
    }
    let Some(info) = rt.balancer.session(&id) else { return unknown() };
    let snapshot = rt.snapshot_now();
    let provider = snapshot.provider(&info.provider);
    let last_seen =
        chrono::Utc::now() - chrono::Duration::milliseconds(i64::try_from(info.idle_ms).unwrap_or(0));
    let bindings: serde_json::Map<String, serde_json::Value> =
        info.bindings.iter().map(|(rule, p)| (rule.clone(), json!(p))).collect();
    axum::Json(json!({
        "sessionId": id,
        "provider": info.provider,
        "name": provider.map(|p| p.name.clone()),
        "status": provider.map(|p| p.status.as_str()),
        "category": info.category,
        "turns": info.turns,
        "lastSeen": last_seen.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "idleMs": info.idle_ms,
        "bindings": bindings,
        "usage": provider.and_then(|p| p.core.usage.clone()),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::types::parse_request;

    fn request(user_id: Option<&str>) -> MessagesRequest {
        let mut body =
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        if let Some(uid) = user_id {
            body["metadata"] = json!({ "user_id": uid });
        }
        parse_request(body.to_string().as_bytes()).expect("valid")
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SESSION_HEADER, value.parse().expect("header value"));
        h
    }

    const UUID_A: &str = "0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b";
    const UUID_B: &str = "8bb5523b-ec7c-4540-a9ca-beb6d79f1552";

    #[test]
    fn header_wins_then_json_then_legacy() {
        let json_form = format!(r#"{{"device_id":"d","account_uuid":"","session_id":"{UUID_A}"}}"#);
        let legacy = format!("user_0dede55c_account__session_{UUID_B}");
        assert_eq!(session_key(&headers("hdr-1"), &request(Some(&json_form))).as_deref(), Some("hdr-1"));
        assert_eq!(session_key(&HeaderMap::new(), &request(Some(&json_form))).as_deref(), Some(UUID_A));
        assert_eq!(session_key(&HeaderMap::new(), &request(Some(&legacy))).as_deref(), Some(UUID_B));
        assert_eq!(session_key(&HeaderMap::new(), &request(None)), None);
    }

    #[test]
    fn malformed_values_are_ignored_never_a_panic() {
        let none = HeaderMap::new();
        for uid in [
            "",
            "{",
            "{\"session_id\": 5}",
            "{\"session_id\": \"has space\"}",
            "{\"session_id\": \"\"}",
            "[1,2]",
            "user_abc_session_not-a-uuid",
            "user_abc_session_",
            "_session_",
            "plain-user-id",
            "{\"session_id\":\"é\"}",
        ] {
            assert_eq!(session_key(&none, &request(Some(uid))), None, "{uid}");
        }
        let long = "x".repeat(129);
        assert_eq!(session_key(&headers(&long), &request(None)), None);
        assert_eq!(session_key(&headers("a/b"), &request(None)), None);
        assert_eq!(session_key(&headers("   "), &request(None)), None);
        // A bad header falls back to the body.
        let legacy = format!("user_x_account__session_{UUID_B}");
        assert_eq!(session_key(&headers("a b"), &request(Some(&legacy))).as_deref(), Some(UUID_B));
        let mut binary = HeaderMap::new();
        binary.insert(SESSION_HEADER, axum::http::HeaderValue::from_bytes(b"\xff\xfe").expect("opaque"));
        assert_eq!(session_key(&binary, &request(None)), None);
    }
}
