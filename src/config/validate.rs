//! Turning config text into a checked [`Config`], with every problem named by its JSON path.
//!
//! Three passes, each reporting everything it finds:
//! 1. JSON syntax (line and column);
//! 2. unknown keys, with a "did you mean" suggestion (a typo in a weight must never silently
//!    misroute traffic);
//! 3. types (via `serde_path_to_error`), then meaning: references between rules and providers,
//!    ranges, and timing relations.

use super::schema::*;
use serde_json::Value;
use std::fmt;

/// One problem in a config, at a JSON path such as `routing.rules.default.loadBalancing.weights.x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a config text is not a usable config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    #[error("{}", list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    capped(problems).join("\n")
}

/// Most problems reported one by one; the rest are counted ("… and N more").
pub const MAX_REPORTED_PROBLEMS: usize = 20;

/// The problems as lines, at most [`MAX_REPORTED_PROBLEMS`] of them, then one line saying how
/// many more there are: a file with thousands of mistakes must not produce megabytes of report.
pub fn capped(problems: &[Problem]) -> Vec<String> {
    let mut lines: Vec<String> = problems.iter().take(MAX_REPORTED_PROBLEMS).map(|p| p.to_string()).collect();
    if problems.len() > MAX_REPORTED_PROBLEMS {
        lines.push(format!("… and {} more", problems.len() - MAX_REPORTED_PROBLEMS));
    }
    lines
}

/// Parse and check a config text.
pub fn parse_config(text: &str) -> Result<Config, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    let mut problems = Vec::new();
    check_keys(&value, &mut problems);
    if !problems.is_empty() {
        return Err(ParseError::Invalid(problems));
    }
    let config: Config = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ParseError::Invalid(vec![Problem { path, message: plain_types(&e.into_inner().to_string()) }])
    })?;
    check_meaning(&config, &mut problems);
    if problems.is_empty() { Ok(config) } else { Err(ParseError::Invalid(problems)) }
}

/// serde's type names in words a config's author uses: "expected i64" is "expected a whole number".
fn plain_types(message: &str) -> String {
    let mut out = message.to_owned();
    for (rust, words) in [
        ("expected i64", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected f64", "expected a number"),
    ] {
        out = out.replace(rust, words);
    }
    out
}

/// serde_json appends " at line L column C"; we report those separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// The closest candidate to a misspelt name: at most two edits away (one for very short names),
/// so that only likely typos get a suggestion.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    let limit = if name.chars().count() <= 4 { 1 } else { 2 };
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

fn unknown(what: &str, name: &str, candidates: &[&str]) -> String {
    match suggest(name, candidates.iter().copied()) {
        Some(s) => format!("unknown {what} `{name}`; did you mean `{s}`?"),
        None => format!("unknown {what} `{name}`; expected one of: {}", candidates.join(", ")),
    }
}

/// Check the keys of one object against its known keys; returns the object for descent.
fn object_keys<'v>(
    value: &'v Value,
    path: &str,
    known: &[&str],
    problems: &mut Vec<Problem>,
) -> Option<&'v serde_json::Map<String, Value>> {
    let map = value.as_object()?;
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            problems.push(Problem { path: join(path, key), message: unknown("key", key, known) });
        }
    }
    Some(map)
}

fn check_keys(root: &Value, problems: &mut Vec<Problem>) {
    let Some(map) = object_keys(root, "", CONFIG_KEYS, problems) else { return };
    if let Some(v) = map.get("input") {
        object_keys(v, "input", INPUT_KEYS, problems);
    }
    if let Some(v) = map.get("output") {
        object_keys(v, "output", OUTPUT_KEYS, problems);
    }
    if let Some(server) = map.get("server").and_then(|v| object_keys(v, "server", SERVER_KEYS, problems))
        && let Some(list) = server.get("keys").and_then(Value::as_array)
    {
        for (i, entry) in list.iter().enumerate() {
            object_keys(entry, &format!("server.keys[{i}]"), super::keys::KEY_ENTRY_KEYS, problems);
        }
    }
    if let Some(v) = map.get("monitoring") {
        object_keys(v, "monitoring", MONITORING_KEYS, problems);
    }
    if let Some(v) = map.get("state") {
        object_keys(v, "state", STATE_KEYS, problems);
    }
    if let Some(routing) = map.get("routing").and_then(|v| object_keys(v, "routing", ROUTING_KEYS, problems))
        && let Some(rules) = routing.get("rules").and_then(Value::as_object)
    {
        for (category, rule) in rules {
            let path = format!("routing.rules.{category}");
            if Category::parse(category).is_none() {
                problems.push(Problem {
                    path: path.clone(),
                    message: unknown("category", category, &Category::NAMES),
                });
            }
            if let Some(lb) =
                object_keys(rule, &path, RULE_KEYS, problems).and_then(|r| r.get("loadBalancing"))
            {
                object_keys(lb, &join(&path, "loadBalancing"), LOAD_BALANCING_KEYS, problems);
            }
        }
    }
    if let Some(providers) = map.get("providers").and_then(Value::as_object) {
        for (id, provider) in providers {
            let path = format!("providers.{id}");
            let Some(p) = object_keys(provider, &path, PROVIDER_KEYS, problems) else { continue };
            let nested: [(&str, &[&str]); 4] = [
                ("healthCheck", HEALTH_CHECK_KEYS),
                ("circuitBreaker", CIRCUIT_BREAKER_KEYS),
                ("metrics", METRICS_KEYS),
                ("usage", USAGE_KEYS),
            ];
            for (key, known) in nested {
                if let Some(v) = p.get(key) {
                    object_keys(v, &join(&path, key), known, problems);
                }
            }
        }
    }
}

fn check_meaning(config: &Config, problems: &mut Vec<Problem>) {
    let mut bad = |path: String, message: String| problems.push(Problem { path, message });

    if config.input.format != "anthropic" {
        bad(
            "input.format".into(),
            format!("unsupported format `{}`; only `anthropic` is spoken", config.input.format),
        );
    }
    if config.output.format != "anthropic" {
        bad(
            "output.format".into(),
            format!("unsupported format `{}`; only `anthropic` is spoken", config.output.format),
        );
    }

    // Providers.
    if config.providers.is_empty() {
        bad("providers".into(), "no providers defined".into());
    }
    let ids: Vec<&str> = config.providers.keys().map(String::as_str).collect();
    for (id, p) in &config.providers {
        let path = format!("providers.{id}");
        if !PROVIDER_TYPES.contains(&p.kind.as_str()) {
            bad(join(&path, "type"), unknown("provider type", &p.kind, &PROVIDER_TYPES));
        }
        if !AUTH_METHODS.contains(&p.auth_method.as_str()) {
            bad(join(&path, "authMethod"), unknown("auth method", &p.auth_method, &AUTH_METHODS));
        }
        if p.token_path.trim().is_empty() {
            bad(join(&path, "tokenPath"), "must not be empty".into());
        }
        if p.weight < 0 {
            bad(join(&path, "weight"), format!("must not be negative (got {})", p.weight));
        }
        at_least_one(&mut bad, join(&path, "maxConcurrentRequests"), p.max_concurrent_requests);
        for (key, value) in [
            ("connectTimeout", p.connect_timeout),
            ("firstByteTimeout", p.first_byte_timeout),
            ("idleTimeout", p.idle_timeout),
        ] {
            at_least_one(&mut bad, join(&path, key), value);
        }
        for (key, url) in [("endpoint", &p.endpoint), ("authEndpoint", &p.auth_endpoint)] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                bad(join(&path, key), format!("must be an http:// or https:// URL (got `{url}`)"));
            }
        }
        if p.region.trim().is_empty() || p.region.contains(['/', ' ', ':']) {
            bad(join(&path, "region"), format!("not an AWS region name: `{}`", p.region));
        }
        {
            let up = join(&path, "usage");
            if p.usage.refresh_interval < 10_000 {
                bad(
                    join(&up, "refreshInterval"),
                    format!("must be at least 10000 ms (got {})", p.usage.refresh_interval),
                );
            }
            if !p.usage.reserve.is_finite() || p.usage.reserve < 0.0 {
                bad(
                    join(&up, "reserve"),
                    format!("must be a number of credits >= 0 (got {})", p.usage.reserve),
                );
            }
        }
        if let Some(hc) = &p.health_check {
            let hp = join(&path, "healthCheck");
            at_least_one(&mut bad, join(&hp, "interval"), hc.interval);
            at_least_one(&mut bad, join(&hp, "timeout"), hc.timeout);
            at_least_one(&mut bad, join(&hp, "retries"), hc.retries);
            if hc.timeout >= 1 && hc.interval >= 1 && hc.timeout >= hc.interval {
                bad(
                    join(&hp, "timeout"),
                    format!("must be shorter than interval ({} ms >= {} ms)", hc.timeout, hc.interval),
                );
            }
            if let Some(ep) = &hc.endpoint
                && !ep.starts_with('/')
            {
                bad(join(&hp, "endpoint"), format!("must be a path starting with `/` (got `{ep}`)"));
            }
        }
        if let Some(cb) = &p.circuit_breaker {
            let cp = join(&path, "circuitBreaker");
            at_least_one(&mut bad, join(&cp, "failureThreshold"), cb.failure_threshold);
            at_least_one(&mut bad, join(&cp, "resetTimeout"), cb.reset_timeout);
            at_least_one(&mut bad, join(&cp, "monitoringPeriod"), cb.monitoring_period);
        }
        at_least_one(&mut bad, join(&path, "metrics.responseTimeWindow"), p.metrics.response_time_window);
    }

    // Routing.
    if !ROUTING_STRATEGIES.contains(&config.routing.strategy.as_str()) {
        bad(
            "routing.strategy".into(),
            unknown("routing strategy", &config.routing.strategy, &ROUTING_STRATEGIES),
        );
    }
    at_least_one(&mut bad, "routing.longContextThreshold".into(), config.routing.long_context_threshold);
    at_least_one(&mut bad, "routing.backgroundMaxTokens".into(), config.routing.background_max_tokens);
    if !config.routing.rules.contains_key("default") {
        bad(
            "routing.rules".into(),
            "no `default` rule: requests that match no other category need one".into(),
        );
    }
    for (category, rule) in &config.routing.rules {
        let path = format!("routing.rules.{category}");
        if rule.providers.is_empty() {
            bad(join(&path, "providers"), "must list at least one provider".into());
        }
        for (i, id) in rule.providers.iter().enumerate() {
            if !config.providers.contains_key(id) {
                bad(format!("{path}.providers[{i}]"), undefined_provider(id, &ids));
            } else if rule.providers[..i].contains(id) {
                bad(format!("{path}.providers[{i}]"), format!("`{id}` is listed twice"));
            }
        }
        if let Some(model) = &rule.model
            && model.trim().is_empty()
        {
            bad(join(&path, "model"), "must not be empty (omit it to map the requested model)".into());
        }
        let lb = &rule.load_balancing;
        let lp = join(&path, "loadBalancing");
        let strategy = Strategy::parse(&lb.strategy);
        if strategy.is_none() {
            bad(join(&lp, "strategy"), unknown("strategy", &lb.strategy, &Strategy::NAMES));
        }
        if lb.sticky_ttl < 1000 {
            bad(join(&lp, "stickyTtl"), format!("must be at least 1000 ms (got {})", lb.sticky_ttl));
        }
        for (id, w) in &lb.weights {
            let wp = format!("{lp}.weights.{id}");
            if !config.providers.contains_key(id) {
                bad(wp, undefined_provider(id, &ids));
            } else if !rule.providers.contains(id) {
                bad(
                    wp,
                    format!("`{id}` is not one of this rule's providers ({})", rule.providers.join(", ")),
                );
            } else if *w < 0 {
                bad(wp, format!("must not be negative (got {w})"));
            }
        }
        if let Some(fb) = &lb.fallback {
            if !config.providers.contains_key(fb) {
                bad(join(&lp, "fallback"), undefined_provider(fb, &ids));
            } else if strategy.is_some()
                && strategy != Some(Strategy::Single)
                && config.routing.strategy != "fixed"
            {
                bad(
                    join(&lp, "fallback"),
                    format!("only applies to the `single` strategy (this rule uses `{}`)", lb.strategy),
                );
            }
        }
        let known: Vec<&String> =
            rule.providers.iter().filter(|id| config.providers.contains_key(*id)).collect();
        if !known.is_empty() && known.iter().all(|id| config.effective_weight(rule, id) == 0) {
            let which = if lb.weights.is_empty() { join(&path, "providers") } else { join(&lp, "weights") };
            bad(which, "every provider of this rule has weight 0: nothing could ever be picked".into());
        }
    }

    // Server and monitoring.
    if !(1..=65535).contains(&config.server.port) {
        bad("server.port".into(), format!("must be between 1 and 65535 (got {})", config.server.port));
    }
    if config.server.host.trim().is_empty() {
        bad("server.host".into(), "must not be empty".into());
    }
    if let Some(key) = &config.server.api_key
        && key.trim().is_empty()
    {
        bad("server.apiKey".into(), "must not be empty (omit it to disable the key)".into());
    }
    super::keys::check_meaning(&config.server.keys, config.server.api_key.as_deref(), &mut bad);
    at_least_one(&mut bad, "server.maxBodyBytes".into(), config.server.max_body_bytes);
    at_least_one(&mut bad, "server.maxConnections".into(), config.server.max_connections);
    for (key, value) in [
        ("requestHeadTimeout", config.server.request_head_timeout),
        ("bodyIdleTimeout", config.server.body_idle_timeout),
        ("shutdownTimeout", config.server.shutdown_timeout),
    ] {
        at_least_one(&mut bad, format!("server.{key}"), value);
    }
    for (i, origin) in config.server.allowed_origins.iter().enumerate() {
        if super::origin::parse_origin(origin).is_none() {
            bad(
                format!("server.allowedOrigins[{i}]"),
                format!(
                    "must be an origin like `https://example.com` or `http://host:8080` (got `{origin}`)"
                ),
            );
        }
    }
    for (i, host) in config.server.allowed_hosts.iter().enumerate() {
        if host.trim().is_empty() || host.contains(['/', ' ', '@']) {
            bad(
                format!("server.allowedHosts[{i}]"),
                format!("must be a host name like `ccr.lan` (got `{host}`)"),
            );
        }
    }
    for (key, p) in [
        ("metricsEndpoint", &config.monitoring.metrics_endpoint),
        ("healthEndpoint", &config.monitoring.health_endpoint),
    ] {
        if !p.starts_with('/') || p.len() < 2 {
            bad(format!("monitoring.{key}"), format!("must be a path like `/metrics` (got `{p}`)"));
        } else if p.starts_with("/v1/") || p.starts_with("/admin/") {
            bad(format!("monitoring.{key}"), format!("`{p}` collides with the proxy's own routes"));
        }
    }
    if config.monitoring.metrics_endpoint == config.monitoring.health_endpoint {
        bad("monitoring.metricsEndpoint".into(), "must differ from healthEndpoint".into());
    }

    // Shared state.
    let state = &config.state;
    if !STATE_BACKENDS.contains(&state.backend.as_str()) {
        bad("state.backend".into(), unknown("state backend", &state.backend, &STATE_BACKENDS));
    }
    match (&state.url, state.is_redis()) {
        (None, true) => bad("state.url".into(), "required for the `redis` backend".into()),
        (Some(_), false) if state.backend == "memory" => {
            bad("state.url".into(), "only used by the `redis` backend (set `backend` to `redis`)".into())
        }
        // The URL may hold a password: the message never repeats it.
        (Some(url), _) if !redis_url_ok(url) => bad(
            "state.url".into(),
            "not a Redis URL: expected redis://host:port/db, rediss://… (TLS) or redis+unix:///path".into(),
        ),
        _ => {}
    }
    if state.key_prefix.contains(char::is_whitespace) {
        bad("state.keyPrefix".into(), "must not contain spaces".into());
    }
    if !(1..=10_000).contains(&state.timeout) {
        bad("state.timeout".into(), format!("must be between 1 and 10000 ms (got {})", state.timeout));
    }
    if state.lease_ttl < 1000 {
        bad("state.leaseTtl".into(), format!("must be at least 1000 ms (got {})", state.lease_ttl));
    }
}

/// Whether `url` is a Redis URL the client can use (parsed only; nothing is contacted).
fn redis_url_ok(url: &str) -> bool {
    ["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|s| url.starts_with(s))
        && redis::Client::open(url).is_ok()
}

/// Things that are valid but probably not what the user wants; printed by `ccr check` and
/// logged at start.
pub fn warnings(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    for (id, p) in &config.providers {
        if let Some(hc) = p.active_health_check()
            && let Some(path) = &hc.endpoint
            && p.is_real_kiro_api()
        {
            out.push(Problem {
                path: format!("providers.{id}.healthCheck.endpoint"),
                message: format!(
                    "the Kiro API serves no {path}: health checks use the authenticated usage probe \
                     (getUsageLimits) instead; remove `endpoint` to silence this note"
                ),
            });
        }
    }
    for (category, rule) in &config.routing.rules {
        if rule.load_balancing.health_check
            && rule
                .providers
                .iter()
                .all(|id| config.providers.get(id).is_some_and(|p| p.active_health_check().is_none()))
        {
            out.push(Problem {
                path: format!("routing.rules.{category}.loadBalancing.healthCheck"),
                message:
                    "none of this rule's providers has an enabled healthCheck block, so it has no effect"
                        .into(),
            });
        }
    }
    out
}

fn at_least_one(bad: &mut impl FnMut(String, String), path: String, value: i64) {
    if value < 1 {
        bad(path, format!("must be at least 1 (got {value})"));
    }
}

fn undefined_provider(id: &str, ids: &[&str]) -> String {
    match suggest(id, ids.iter().copied()) {
        Some(s) => format!("provider `{id}` is not defined under `providers`; did you mean `{s}`?"),
        None => format!("provider `{id}` is not defined under `providers` (defined: {})", ids.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match parse_config(text) {
            Ok(_) => vec![],
            Err(ParseError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    const MINIMAL: &str = r#"{"routing":{"rules":{"default":{"providers":["a"]}}},"providers":{"a":{}}}"#;

    #[test]
    fn minimal_config_fills_defaults() {
        let c = parse_config(MINIMAL).expect("valid");
        let a = &c.providers["a"];
        assert_eq!(a.token_path, DEFAULT_TOKEN_PATH);
        assert_eq!(a.api_base(), "https://q.us-east-1.amazonaws.com");
        assert_eq!(a.auth_base(), "https://prod.us-east-1.auth.desktop.kiro.dev");
        assert_eq!(c.server.port, 3456);
        assert_eq!(c.routing.long_context_threshold, 60_000);
        assert!(a.active_breaker().is_some());
        assert!(a.active_health_check().is_none());
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = parse_config("{\n  \"routing\": {,\n}").unwrap_err();
        match err {
            ParseError::Syntax { line, column, .. } => assert_eq!((line, column), (2, 15)),
            other => panic!("expected a syntax error, got {other}"),
        }
    }

    #[test]
    fn misspelt_key_gets_a_suggestion() {
        let text = MINIMAL.replace(r#""a":{}"#, r#""a":{"wieght":3}"#);
        assert_eq!(problems(&text), vec!["providers.a.wieght: unknown key `wieght`; did you mean `weight`?"]);
    }

    #[test]
    fn wrong_type_names_the_path() {
        let text = MINIMAL.replace(r#""a":{}"#, r#""a":{"weight":"heavy"}"#);
        let p = problems(&text);
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("providers.a.weight: invalid type: string \"heavy\""), "{p:?}");
    }

    #[test]
    fn suggestion_needs_a_close_match() {
        assert_eq!(suggest("wieght", ["weight", "name"]), Some("weight"));
        assert_eq!(suggest("zzz", ["weight", "name"]), None);
        assert_eq!(
            suggest("codewhisperer-primay", ["codewhisperer-primary", "codewhisperer-secondary"]),
            Some("codewhisperer-primary")
        );
    }
    fn with_state(state: &str) -> String {
        MINIMAL.replacen('{', &format!("{{\"state\":{state},"), 1)
    }

    #[test]
    fn state_defaults_to_memory() {
        let c = parse_config(MINIMAL).expect("valid");
        assert_eq!(c.state.backend, "memory");
        assert!(!c.state.is_redis());
        assert_eq!(c.state.key_prefix, "ccr:");
        assert_eq!((c.state.timeout, c.state.lease_ttl), (5, 30_000));
    }

    #[test]
    fn redis_state_is_checked_by_path_and_never_echoes_the_url() {
        let c = parse_config(&with_state(r#"{"backend":"redis","url":"rediss://:s3cret@cache:6380/2"}"#))
            .expect("valid");
        assert!(c.state.is_redis());
        assert_eq!(
            problems(&with_state(r#"{"backend":"redis","keyPrefx":"x"}"#)),
            vec!["state.keyPrefx: unknown key `keyPrefx`; did you mean `keyPrefix`?"]
        );
        assert_eq!(
            problems(&with_state(r#"{"backend":"redsi"}"#)),
            vec!["state.backend: unknown state backend `redsi`; did you mean `redis`?",]
        );
        assert_eq!(
            problems(&with_state(r#"{"backend":"redis"}"#)),
            vec!["state.url: required for the `redis` backend"]
        );
        let bad = problems(&with_state(
            r#"{"backend":"redis","url":"http://:hunter2@x","timeout":0,"leaseTtl":10}"#,
        ));
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].starts_with("state.url: not a Redis URL"), "{bad:?}");
        assert!(bad.iter().all(|p| !p.contains("hunter2")), "{bad:?}");
        assert_eq!(bad[1], "state.timeout: must be between 1 and 10000 ms (got 0)");
        assert_eq!(bad[2], "state.leaseTtl: must be at least 1000 ms (got 10)");
        assert_eq!(
            problems(&with_state(r#"{"url":"redis://h"}"#)),
            vec!["state.url: only used by the `redis` backend (set `backend` to `redis`)"]
        );
    }
}
