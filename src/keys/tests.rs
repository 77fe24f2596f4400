use super::*;
use crate::config::parse_config;
use axum::http::HeaderValue;

fn config(keys: &str) -> Config {
    parse_config(&format!(
        r#"{{"server": {{"apiKey": "operator-secret", "keys": {keys}}},
            "routing": {{"rules": {{"default": {{"providers": ["a"]}}}}}},
            "providers": {{"a": {{"endpoint": "http://127.0.0.1:9", "tokenPath": "/nonexistent/a.json"}}}}}}"#
    ))
    .unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn presented_keys_and_the_operator_comparison() {
    assert!(key_matches(Some("secret"), "secret"));
    assert!(!key_matches(Some("secreT"), "secret"));
    assert!(!key_matches(Some("secret2"), "secret"));
    assert!(!key_matches(None, "secret"));
    let mut h = headers(&[("authorization", "Bearer abc")]);
    assert_eq!(presented_key(&h), Some("abc"));
    h.insert("x-api-key", "xyz".parse().unwrap());
    assert_eq!(presented_key(&h), Some("xyz"));
}

#[test]
fn keys_are_found_by_their_digest_whichever_form_the_config_uses() {
    let bob_digest = sha256_hex(b"sk-bob");
    let keys = Keys::new(&config(&format!(
        r#"[{{"name": "alice", "key": "sk-alice"}}, {{"name": "bob", "keySha256": "{}"}}]"#,
        bob_digest.to_uppercase()
    )));
    let who = |h: &[(&'static str, &str)]| keys.authenticate(&headers(h), Some("operator-secret"));
    assert!(matches!(who(&[("x-api-key", "sk-alice")]), Ok(Caller::Developer(e)) if e.name == "alice"));
    assert!(
        matches!(who(&[("authorization", "Bearer sk-bob")]), Ok(Caller::Developer(e)) if e.name == "bob")
    );
    assert!(matches!(who(&[("x-api-key", "operator-secret")]), Ok(Caller::Operator)));
    assert_eq!(who(&[("x-api-key", "sk-carol")]).unwrap_err(), KeyError::Unauthenticated);
    assert_eq!(who(&[]).unwrap_err(), KeyError::Unauthenticated);
    assert_eq!(keys.entries()[1].hash_prefix(), bob_digest[..8]);
}

#[test]
fn without_keys_only_the_operator_key_is_checked() {
    let mut c = config("[]");
    let keys = Keys::new(&c);
    assert!(matches!(
        keys.authenticate(&headers(&[]), Some("operator-secret")),
        Err(KeyError::Unauthenticated)
    ));
    c.server.api_key = None;
    assert!(matches!(keys.authenticate(&headers(&[]), None), Ok(Caller::Anyone)));
}

#[test]
fn models_match_by_name_dated_name_or_prefix() {
    let allowed = vec!["claude-sonnet-4-5".to_string(), "claude-haiku-*".to_string()];
    for ok in
        ["claude-sonnet-4-5", "Claude-Sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]
    {
        assert!(model_allowed(&allowed, ok), "{ok}");
    }
    for no in ["claude-opus-4-6", "claude-sonnet-4-5-x", "claude-sonnet-4-50", "claude-sonnet-4", ""] {
        assert!(!model_allowed(&allowed, no), "{no}");
    }
}

#[test]
fn months_and_their_ends_are_utc_calendar_months() {
    let at = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
    assert_eq!(month_of(at(2026, 11, 30, 23)), "2026-11");
    assert_eq!(month_end(at(2026, 11, 30, 23)), at(2026, 12, 1, 0));
    assert_eq!(month_end(at(2026, 12, 31, 23)), at(2027, 1, 1, 0));
    assert_eq!(credits_text(12.5), "12.5");
    assert_eq!(credits_text(300.0), "300");
    assert_eq!(credits_text(0.0123), "0.0123");
    assert_eq!(credits_text(0.00001), "0");
}

#[tokio::test]
async fn admission_counts_refusals_and_the_ticket_charges_and_releases() {
    let keys = Keys::new(&config(
        r#"[{"name": "alice", "key": "sk-alice", "monthlyCredits": 1, "maxConcurrent": 1, "models": ["claude-sonnet-4-5"]}]"#,
    ));
    let alice = keys.entries()[0].clone();
    let ticket = keys.admit(&alice).await.unwrap();
    let err = keys.admit(&alice).await.unwrap_err();
    assert_eq!(err.reason(), Some("concurrency"));
    assert_eq!(err.api_error().status, axum::http::StatusCode::TOO_MANY_REQUESTS);
    assert!(check_model(Some(&ticket), "claude-sonnet-4-5-20250929").is_ok());
    let refused = check_model(Some(&ticket), "claude-opus-4-6").unwrap_err();
    assert_eq!(refused.kind, ErrorKind::PermissionError);
    assert_eq!(refused.message, "key alice may not use model claude-opus-4-6 (allowed: claude-sonnet-4-5)");
    ticket.charge("a", "default", 0.6);
    ticket.meter_tap()("a", "thinking", 0.5);
    drop(ticket);
    let view = keys.view();
    let k = &view.keys[0];
    assert_eq!((k.requests, k.live_requests, k.credits_this_month), (2, 0, 1.1));
    assert_eq!(k.by_category.get("thinking"), Some(&0.5));
    assert_eq!(k.limited.get("concurrency"), Some(&1));
    assert_eq!(k.limited.get("model"), Some(&1));
    let over = keys.admit(&alice).await.unwrap_err();
    let api = over.api_error();
    assert_eq!(api.kind, ErrorKind::RateLimitError);
    assert!(api.message.starts_with("key alice has used 1.1 of its 1 monthly credits"), "{}", api.message);
    assert!(api.retry_after.is_some());
}

#[test]
fn a_reload_keeps_the_usage_of_keys_that_stay() {
    let keys =
        Keys::new(&config(r#"[{"name": "alice", "key": "sk-alice"}, {"name": "bob", "key": "sk-bob"}]"#));
    keys.count_limited("alice", "model");
    keys.count_limited("bob", "model");
    keys.apply_config(&config(r#"[{"name": "alice", "key": "sk-alice2"}]"#));
    let view = keys.view();
    assert_eq!(view.keys.len(), 1);
    assert_eq!(view.keys[0].limited.get("model"), Some(&1));
    assert!(matches!(
        keys.authenticate(&headers(&[("x-api-key", "sk-alice")]), None),
        Err(KeyError::Unauthenticated)
    ));
}
