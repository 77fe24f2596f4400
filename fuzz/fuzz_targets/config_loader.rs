//! Fuzz target: the config loader (`parse_config`), and for every config it accepts, what is
//! built from it at start and on reload: the routing description (`ccr check`), the warnings,
//! the balancer spec, a balancer, and one selection per category.
//!
//! The first input byte picks how the rest is read: as config text, or as a list of edits applied
//! to the seed config (a key path from the schema set to a value of any JSON type), which gets
//! past the syntax and key checks into the meaning checks and the balancer.
//!
//! Properties checked, beyond "no panic": a rejected config names at least one problem, and a
//! selection on an accepted config's fresh balancer never waits.
#![no_main]

use ccr::balancer::Balancer;
use ccr::config::{ConfigSource, DEFAULT_CONFIG, ParseError, parse_config, warnings};
use ccr::runtime::balancer_spec;
use futures_util::FutureExt;
use libfuzzer_sys::arbitrary::{self, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const PROVIDERS: &[&str] = &["codewhisperer-primary", "codewhisperer-secondary", "ghost"];
const CATEGORIES: &[&str] = &["default", "background", "thinking", "longcontext", "search", "webSearch"];

/// Key paths the edits may touch (`{p}` a provider id, `{c}` a category).
const PATHS: &[&str] = &[
    "routing.strategy",
    "routing.longContextThreshold",
    "routing.backgroundMaxTokens",
    "routing.rules.{c}",
    "routing.rules.{c}.providers",
    "routing.rules.{c}.model",
    "routing.rules.{c}.loadBalancing.strategy",
    "routing.rules.{c}.loadBalancing.weights.{p}",
    "routing.rules.{c}.loadBalancing.failover",
    "routing.rules.{c}.loadBalancing.healthCheck",
    "routing.rules.{c}.loadBalancing.fallback",
    "providers.{p}",
    "providers.{p}.weight",
    "providers.{p}.maxConcurrentRequests",
    "providers.{p}.type",
    "providers.{p}.authMethod",
    "providers.{p}.tokenPath",
    "providers.{p}.endpoint",
    "providers.{p}.healthCheck.interval",
    "providers.{p}.healthCheck.timeout",
    "providers.{p}.healthCheck.retries",
    "providers.{p}.healthCheck.enabled",
    "providers.{p}.circuitBreaker.failureThreshold",
    "providers.{p}.circuitBreaker.resetTimeout",
    "providers.{p}.circuitBreaker.monitoringPeriod",
    "providers.{p}.metrics.responseTimeWindow",
    "providers.{p}.connectTimeout",
    "providers.{p}.firstByteTimeout",
    "providers.{p}.idleTimeout",
    "server.port",
    "server.host",
    "server.maxBodyBytes",
    "monitoring.metricsEndpoint",
    "input.format",
];

const STRINGS: &[&str] = &[
    "round-robin",
    "weighted-round-robin",
    "least-connections",
    "response-time",
    "single",
    "fixed",
    "load-balancing",
    "codewhisperer-primary",
    "codewhisperer-secondary",
    "aws",
    "kiro-token",
    "http://127.0.0.1:1",
    "",
    "~/x.json",
    "anthropic",
];

fn value(u: &mut Unstructured, depth: u32) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Value::Null,
        1 => json!(u.arbitrary::<bool>()?),
        2 => json!(u.arbitrary::<i64>()?),
        3 => json!(u.int_in_range(-2..=100_000)?),
        4 => json!(u.arbitrary::<f64>()?),
        5 => json!(u.arbitrary::<String>()?),
        6 => json!(*u.choose(STRINGS)?),
        7 => json!(*u.choose(PROVIDERS)?),
        8 if depth < 2 => {
            let n = u.int_in_range(0..=3)?;
            Value::Array((0..n).map(|_| value(u, depth + 1)).collect::<arbitrary::Result<_>>()?)
        }
        _ if depth < 2 => {
            let mut map = serde_json::Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                let key =
                    if u.arbitrary::<bool>()? { u.choose(PROVIDERS)?.to_string() } else { u.arbitrary()? };
                map.insert(key, value(u, depth + 1)?);
            }
            Value::Object(map)
        }
        _ => json!(1),
    })
}

fn set(root: &mut Value, path: &str, v: Value) {
    let mut node = root;
    let keys: Vec<&str> = path.split('.').collect();
    for key in &keys[..keys.len() - 1] {
        if !node.is_object() {
            *node = json!({});
        }
        node =
            node.as_object_mut().map(|m| m.entry(key.to_string()).or_insert(json!({}))).expect("an object");
    }
    if let Some(map) = node.as_object_mut() {
        map.insert(keys[keys.len() - 1].to_string(), v);
    } else {
        *node = json!({ keys[keys.len() - 1]: v });
    }
}

fn edited_seed(u: &mut Unstructured) -> arbitrary::Result<String> {
    let mut config: Value = serde_json::from_str(DEFAULT_CONFIG).expect("the seed config is JSON");
    for _ in 0..u.int_in_range(1..=6)? {
        let path =
            u.choose(PATHS)?.replace("{p}", u.choose(PROVIDERS)?).replace("{c}", u.choose(CATEGORIES)?);
        if u.int_in_range(0..=5)? == 0 {
            // Delete instead of set.
            let (parent, key) = path.rsplit_once('.').unwrap_or(("", path.as_str()));
            let pointer: String =
                parent.split('.').filter(|k| !k.is_empty()).map(|k| format!("/{k}")).collect();
            if let Some(map) = config.pointer_mut(&pointer).and_then(Value::as_object_mut) {
                map.remove(key);
            }
        } else {
            let v = value(u, 0)?;
            set(&mut config, &path, v);
        }
    }
    Ok(config.to_string())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        }
    } else {
        match edited_seed(&mut Unstructured::new(rest)) {
            Ok(text) => text,
            Err(_) => return,
        }
    };
    match parse_config(&text) {
        Err(ParseError::Syntax { message, .. }) => assert!(!message.is_empty()),
        Err(ParseError::Invalid(problems)) => assert!(!problems.is_empty(), "a rejection names a problem"),
        Ok(config) => {
            let _ = config.describe(&ConfigSource::Embedded);
            let _ = warnings(&config);
            let balancer = Balancer::new(balancer_spec(&config));
            for category in CATEGORIES {
                let pick = balancer.select(category, &[]).now_or_never();
                assert!(pick.is_some(), "a fresh balancer never waits ({category})");
                if let Some(Ok(lease)) = pick {
                    lease.success(std::time::Duration::from_millis(10));
                }
            }
            let _ = balancer.snapshot();
        }
    }
});
