//! Issue 5 end to end, over real sockets: the monitoring endpoints' JSON shapes, Prometheus text
//! that parses, admin calls that change what the endpoints report, the API-key and loopback
//! rules, config hot reload from disk (good and broken edits), saving weights into the file, and
//! `ccr status` against a running instance.
//!
//! Most instances here point their providers at nothing reachable (127.0.0.1:9, token files that
//! do not exist): monitoring and admin must work whatever the upstreams do. One test sends real
//! traffic through simulated upstreams so that counters and histograms have data.

mod common;

use ccr::app::{self, LaunchError, ListenOverride, Running};
use ccr::config::{ConfigSource, parse_config};
use ccr::demo::pool::SimPool;
use ccr::runtime::Runtime;
use ccr::server;
use ccr::snapshot::Snapshot;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A two-provider config in the seed's shape, providers unreachable (their token files exist,
/// so both count as able to serve until something fails).
fn config(dir: &Path, primary: i64, secondary: i64, api_key: Option<&str>) -> Value {
    let provider = |name: &str, weight: i64, threshold: i64| {
        let token = json!({"accessToken": "aoa", "refreshToken": "aor",
                           "expiresAt": "2099-01-01T00:00:00Z", "authMethod": "social"});
        std::fs::write(dir.join(format!("{}.json", name.to_lowercase())), token.to_string())
            .expect("token file");
        json!({
            "type": "aws",
            "name": name,
            "authMethod": "kiro-token",
            "tokenPath": dir.join(format!("{}.json", name.to_lowercase())).to_string_lossy(),
            "weight": weight,
            "maxConcurrentRequests": 4,
            "endpoint": "http://127.0.0.1:9",
            "authEndpoint": "http://127.0.0.1:9",
            "healthCheck": {"enabled": true, "interval": 30000, "timeout": 1000, "retries": 3, "endpoint": "/health"},
            "circuitBreaker": {"enabled": true, "failureThreshold": threshold, "resetTimeout": 60000, "monitoringPeriod": 10000}
        })
    };
    let mut c = json!({
        "name": "Observability test",
        "description": "kept as is by saves",
        "routing": {
            "strategy": "load-balancing",
            "rules": {
                "default": {
                    "providers": ["primary", "secondary"],
                    "model": "CLAUDE_SONNET_4_20250514_V1_0",
                    "loadBalancing": {"strategy": "weighted-round-robin",
                                      "weights": {"primary": primary, "secondary": secondary},
                                      "healthCheck": true, "failover": true}
                },
                "background": {
                    "providers": ["secondary", "primary"],
                    "loadBalancing": {"strategy": "round-robin", "failover": true}
                },
                "search": {
                    "providers": ["secondary", "primary"],
                    "loadBalancing": {"strategy": "response-time"}
                }
            }
        },
        "providers": {"primary": provider("Primary", primary, 5), "secondary": provider("Secondary", secondary, 3)},
        "server": {"host": "127.0.0.1", "port": 3456},
        "monitoring": {"enabled": true, "metricsEndpoint": "/metrics", "healthEndpoint": "/health", "dashboardEnabled": true}
    });
    if let Some(key) = api_key {
        c["server"]["apiKey"] = json!(key);
    }
    c
}

struct Instance {
    running: Running,
    http: reqwest::Client,
    path: PathBuf,
    _pool: SimPool,
}

impl Instance {
    async fn start(build: impl FnOnce(&Path) -> Value + Send + 'static) -> Instance {
        let pool = SimPool::with_config_in(build).start().await.expect("config in a temp dir");
        let path = pool.config_path.clone();
        let parsed = pool.parsed_config().expect("test config is valid");
        let running = app::launch(
            parsed,
            ConfigSource::Flag(path.clone()),
            ListenOverride { host: Some("127.0.0.1".into()), port: Some(0) },
        )
        .await
        .expect("launch");
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        Instance { running, http, path, _pool: pool }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    async fn text(&self, path: &str) -> (u16, String, String) {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        let status = r.status().as_u16();
        let content_type =
            r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        (status, content_type, r.text().await.expect("text"))
    }

    async fn admin(&self, path: &str, body: Option<Value>, key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(self.url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        let r = req.send().await.expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    /// Replace the config file the way editors save: write a sibling, rename it over.
    fn rewrite(&self, text: &str) {
        let tmp = self.path.with_extension("json.swp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &self.path).expect("rename");
    }

    async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
}

/// Wait for a condition that depends on the file system and real time (the config watcher),
/// checking often and giving up after a generous bound.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_endpoint_answers_in_its_shape() {
    let ccr = Instance::start(|dir| config(dir, 70, 30, None)).await;

    let (status, health) = ccr.get("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(keys(&health), ["status", "providers", "uptimeMs", "config", "state"]);
    assert_eq!(health["state"], serde_json::json!({"backend": "memory"}));
    assert_eq!(health["status"], "ok");
    assert_eq!(health["providers"], json!({"total": 2, "available": 2}));
    assert_eq!(keys(&health["config"]), ["ok", "at", "message"]);

    let (status, providers) = ccr.get("/health/providers").await;
    assert_eq!(status, 200);
    assert_eq!(keys(&providers), ["status", "checkedAt", "config", "providers"]);
    assert_eq!(keys(&providers["providers"]), ["primary", "secondary"]);
    let primary = &providers["providers"]["primary"];
    assert_eq!(
        keys(primary),
        [
            "name",
            "status",
            "reason",
            "available",
            "blocked",
            "drained",
            "healthCheck",
            "lastError",
            "usage",
            "usageError",
            "sessions",
            "token"
        ]
    );
    assert_eq!(primary["name"], "Primary");
    assert_eq!(
        keys(&primary["healthCheck"]),
        [
            "enabled",
            "status",
            "consecutiveFailures",
            "retries",
            "lastCheck",
            "nextCheck",
            "lastLatencyMs",
            "lastError"
        ]
    );
    assert_eq!(primary["healthCheck"]["enabled"], true);
    assert_eq!(keys(&primary["token"]), ["expiresAt", "lastRefresh", "error"]);
    assert_eq!(providers["config"]["reload"]["ok"], true);

    let (status, lb) = ccr.get("/metrics/load-balancing").await;
    assert_eq!(status, 200);
    assert_eq!(keys(&lb), ["uptimeMs", "requestsTotal", "requestsPerSecond", "queue", "rules", "providers"]);
    assert_eq!(keys(&lb["rules"]), ["default", "background", "search"]);
    let default = &lb["rules"]["default"];
    assert_eq!(keys(default), ["strategy", "model", "failover", "healthCheck", "fallback", "providers"]);
    assert_eq!(default["strategy"], "weighted-round-robin");
    assert_eq!(default["model"], "CLAUDE_SONNET_4_20250514_V1_0");
    assert_eq!(
        default["providers"],
        json!([
            {"id": "primary", "weight": 70, "configuredWeight": 70, "weightOverride": null, "picks": 0},
            {"id": "secondary", "weight": 30, "configuredWeight": 30, "weightOverride": null, "picks": 0}
        ])
    );
    assert_eq!(
        keys(&lb["providers"]["secondary"]),
        [
            "status",
            "requests",
            "successes",
            "failures",
            "neutral",
            "inFlight",
            "maxConcurrent",
            "weight",
            "configuredWeight",
            "weightOverride",
            "ewmaMs",
            "measured",
            "lastTtfbMs",
            "p50Ms",
            "p95Ms",
            "byCategory"
        ]
    );
    assert_eq!(lb["providers"]["secondary"]["maxConcurrent"], 4);

    let (status, breakers) = ccr.get("/metrics/circuit-breakers").await;
    assert_eq!(status, 200);
    let b = &breakers["providers"]["secondary"];
    assert_eq!(
        keys(b),
        [
            "enabled",
            "state",
            "failures",
            "failureThreshold",
            "monitoringPeriodMs",
            "resetTimeoutMs",
            "openedAt",
            "nextProbeAt",
            "nextProbeInMs",
            "probeInFlight",
            "timesOpened"
        ]
    );
    assert_eq!(b["state"], "CLOSED");
    assert_eq!(b["failureThreshold"], 3);

    // The seed's dashboard shape, exactly.
    let (status, dash) = ccr.get("/dashboard/load-balancing").await;
    assert_eq!(status, 200);
    assert_eq!(keys(&dash), ["providers", "strategies"]);
    for id in ["primary", "secondary"] {
        assert_eq!(
            keys(&dash["providers"][id]),
            ["status", "connections", "responseTime", "circuitBreakerState", "weight", "requestCount"]
        );
    }
    assert_eq!(dash["providers"]["primary"]["weight"], 70);
    assert_eq!(dash["providers"]["primary"]["connections"], 0);
    assert_eq!(dash["providers"]["primary"]["circuitBreakerState"], "CLOSED");
    assert_eq!(
        dash["strategies"],
        json!({"default": "weighted-round-robin", "background": "round-robin", "search": "response-time"})
    );

    // The whole snapshot, as `ccr status` reads it.
    let (status, snapshot) = ccr.get("/status").await;
    assert_eq!(status, 200);
    let snapshot: Snapshot = serde_json::from_value(snapshot).expect("a Snapshot");
    assert_eq!(snapshot.config_name.as_deref(), Some("Observability test"));
    assert_eq!(snapshot.listen.as_deref(), Some(ccr.running.addr.to_string().as_str()));
    assert_eq!(snapshot.providers.len(), 2);
    assert_eq!(
        snapshot.rule("default").and_then(|r| r.model.as_deref()),
        Some("CLAUDE_SONNET_4_20250514_V1_0")
    );

    let (status, content_type, text) = ccr.text("/metrics").await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let families = parse_prometheus(&text);
    assert_eq!(families["ccr_circuit_breaker_state"], "gauge");
    assert_eq!(families["ccr_upstream_ttfb_seconds"], "histogram");

    ccr.shutdown().await;
}

#[tokio::test]
async fn configured_monitoring_paths_are_honoured() {
    let ccr = Instance::start(|dir| {
        let mut c = config(dir, 70, 30, None);
        c["monitoring"] = json!({"metricsEndpoint": "/prometheus", "healthEndpoint": "/healthz", "dashboardEnabled": false});
        c
    })
    .await;
    assert_eq!(ccr.get("/healthz").await.0, 200);
    assert_eq!(ccr.get("/healthz/providers").await.0, 200);
    let (status, _, text) = ccr.text("/prometheus").await;
    assert_eq!(status, 200);
    parse_prometheus(&text);
    for gone in ["/health", "/metrics", "/dashboard/load-balancing"] {
        assert_eq!(ccr.text(gone).await.0, 404, "{gone}");
    }
    ccr.shutdown().await;
}

#[tokio::test]
async fn admin_calls_change_what_the_endpoints_report() {
    let ccr = Instance::start(|dir| config(dir, 70, 30, None)).await;

    // Weight for every rule.
    let (status, answer) =
        ccr.admin("/admin/providers/primary/weight", Some(json!({"weight": 50})), None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ok"], true);
    assert!(answer["message"].as_str().is_some_and(|m| m.contains("70 -> 50")), "{answer}");
    let (_, dash) = ccr.get("/dashboard/load-balancing").await;
    assert_eq!(dash["providers"]["primary"]["weight"], 50);
    let (_, lb) = ccr.get("/metrics/load-balancing").await;
    assert_eq!(lb["providers"]["primary"]["weightOverride"], 50);
    assert_eq!(lb["rules"]["default"]["providers"][0]["weight"], 50);

    // Weight for one rule.
    let (status, _) = ccr
        .admin("/admin/providers/secondary/weight", Some(json!({"weight": 9, "rule": "background"})), None)
        .await;
    assert_eq!(status, 200);
    let (_, lb) = ccr.get("/metrics/load-balancing").await;
    assert_eq!(
        lb["rules"]["background"]["providers"][0],
        json!({
            "id": "secondary", "weight": 9, "configuredWeight": null, "weightOverride": 9, "picks": 0
        })
    );
    assert_eq!(lb["rules"]["default"]["providers"][1]["weight"], 30, "other rules keep their weight");
    let (_, _, prom) = ccr.text("/metrics").await;
    assert!(prom.contains("ccr_rule_weight{rule=\"background\",provider=\"secondary\"} 9\n"), "{prom}");

    // Drain both: /health turns 503; undrain one: back to 200.
    for id in ["primary", "secondary"] {
        let (status, _) = ccr.admin(&format!("/admin/providers/{id}/drain"), None, None).await;
        assert_eq!(status, 200);
    }
    let (status, health) = ccr.get("/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unavailable");
    let (_, providers) = ccr.get("/health/providers").await;
    assert_eq!(providers["providers"]["primary"]["status"], "draining");
    assert_eq!(providers["providers"]["primary"]["drained"], true);
    let (_, dash) = ccr.get("/dashboard/load-balancing").await;
    assert_eq!(dash["providers"]["secondary"]["status"], "draining");
    let (_, _, prom) = ccr.text("/metrics").await;
    assert!(prom.contains("ccr_provider_status{provider=\"primary\",status=\"draining\"} 1\n"));
    assert!(prom.contains("ccr_provider_available{provider=\"primary\"} 0\n"));
    let (status, _) = ccr.admin("/admin/providers/primary/undrain", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(ccr.get("/health").await.0, 200);

    // Breaker reset and health check now.
    let (status, answer) = ccr.admin("/admin/providers/secondary/breaker/reset", None, None).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["message"].as_str().is_some_and(|m| m.contains("CLOSED")), "{answer}");
    let (status, answer) = ccr.admin("/admin/providers/primary/health-check", None, None).await;
    assert_eq!(status, 200, "{answer}");

    // Refusals are Anthropic-shaped.
    let (status, err) = ccr.admin("/admin/providers/nope/drain", None, None).await;
    assert_eq!(status, 404);
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "not_found_error");
    let (status, err) = ccr.admin("/admin/providers/primary/weight", Some(json!({"weight": -3})), None).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let (status, err) =
        ccr.admin("/admin/providers/primary/weight", Some(json!({"weight": 3, "rule": "nope"})), None).await;
    assert_eq!(status, 404, "{err}");
    let (status, _) = ccr.admin("/admin/providers/primary/weight", Some(json!({"wieght": 3})), None).await;
    assert_eq!(status, 400);

    ccr.shutdown().await;
}

#[tokio::test]
async fn with_an_api_key_admin_and_v1_require_it() {
    let ccr = Instance::start(|dir| config(dir, 70, 30, Some("s3cret-key"))).await;

    let (status, err) = ccr.admin("/admin/providers/primary/drain", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(err["error"]["type"], "authentication_error");
    let (status, _) = ccr.admin("/admin/providers/primary/drain", None, Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, _) = ccr.admin("/admin/providers/primary/drain", None, Some("s3cret-key")).await;
    assert_eq!(status, 200);
    let r = ccr
        .http
        .post(ccr.url("/admin/providers/primary/undrain"))
        .header("authorization", "Bearer s3cret-key")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);

    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let r = ccr.http.post(ccr.url("/v1/messages")).json(&body).send().await.expect("POST");
    assert_eq!(r.status(), 401);
    let r = ccr
        .http
        .post(ccr.url("/v1/messages"))
        .header("x-api-key", "nope")
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 401);

    // Monitoring needs no key.
    assert_eq!(ccr.get("/health").await.0, 200);
    assert_eq!(ccr.get("/dashboard/load-balancing").await.0, 200);
    let (_, snapshot) = ccr.get("/status").await;
    assert_eq!(snapshot["apiKeyRequired"], true);
    ccr.shutdown().await;
}

#[tokio::test]
async fn a_non_loopback_listen_address_without_a_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parsed = parse_config(&config(dir.path(), 70, 30, None).to_string()).expect("config");
    let result = app::launch(
        parsed,
        ConfigSource::Embedded,
        ListenOverride { host: Some("0.0.0.0".into()), port: Some(0) },
    )
    .await;
    match result {
        Err(e @ LaunchError::OpenWithoutKey { .. }) => {
            let message = e.to_string();
            assert!(message.contains("refusing to listen on 0.0.0.0 without server.apiKey"), "{message}");
        }
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(running) => {
            running.shutdown().await;
            panic!("listened on 0.0.0.0 without an API key");
        }
    }
}

/// Serve the real router as if every client came from `client`.
async fn serve_as_if_from(
    rt: std::sync::Arc<Runtime>,
    client: SocketAddr,
) -> (String, tokio::task::JoinHandle<()>) {
    use axum::extract::connect_info::MockConnectInfo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = server::router(rt).layer(MockConnectInfo(client));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service()).await;
    });
    (base, task)
}

#[tokio::test]
async fn without_a_key_only_loopback_clients_may_call_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lan: SocketAddr = "192.168.7.20:50000".parse().expect("addr");
    let http = reqwest::Client::builder().no_proxy().build().expect("client");

    let parsed = parse_config(&config(dir.path(), 70, 30, None).to_string()).expect("config");
    let (base, task) = serve_as_if_from(Runtime::new(parsed, ConfigSource::Embedded), lan).await;
    let r = http.post(format!("{base}/admin/providers/primary/drain")).send().await.expect("POST");
    assert_eq!(r.status(), 403);
    let err: Value = r.json().await.expect("json");
    assert_eq!(err["error"]["type"], "permission_error");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("192.168.7.20")), "{err}");
    let r = http.get(format!("{base}/health")).send().await.expect("GET");
    assert_eq!(r.status(), 200, "monitoring stays open");
    task.abort();

    // With a key, a remote client presenting it may call.
    let parsed = parse_config(&config(dir.path(), 70, 30, Some("k")).to_string()).expect("config");
    let (base, task) = serve_as_if_from(Runtime::new(parsed, ConfigSource::Embedded), lan).await;
    let r = http.post(format!("{base}/admin/providers/primary/drain")).header("x-api-key", "k").send().await;
    assert_eq!(r.expect("POST").status(), 200);
    task.abort();
}

#[tokio::test]
async fn editing_the_config_file_reloads_it_and_a_broken_edit_keeps_the_old_one() {
    let ccr = Instance::start(|dir| config(dir, 70, 30, None)).await;
    let dir = ccr.path.parent().expect("dir").to_path_buf();
    let weight = |dash: &Value, id: &str| dash["providers"][id]["weight"].as_u64();
    let c = &ccr;

    // A run-time weight on `secondary` survives a reload that does not touch its weight.
    let (status, _) = ccr
        .admin("/admin/providers/secondary/weight", Some(json!({"weight": 5, "rule": "default"})), None)
        .await;
    assert_eq!(status, 200);

    let mut edited = config(&dir, 50, 30, None);
    edited["routing"]["rules"]["default"]["loadBalancing"]["weights"]["primary"] = json!(55);
    ccr.rewrite(&serde_json::to_string_pretty(&edited).expect("json"));
    eventually("the provider weight 50 from the edited file", || async move {
        weight(&c.get("/dashboard/load-balancing").await.1, "primary") == Some(50)
    })
    .await;
    let (_, lb) = ccr.get("/metrics/load-balancing").await;
    assert_eq!(lb["rules"]["default"]["providers"][0]["weight"], 55);
    assert_eq!(lb["rules"]["default"]["providers"][1]["weight"], 5, "the run-time weight was kept");
    let (_, providers) = ccr.get("/health/providers").await;
    assert_eq!(providers["config"]["reload"]["ok"], true);

    // A broken edit: the old config stays, the error is visible.
    ccr.rewrite("{\n  \"routing\": {\"rules\": \n");
    eventually("the rejected reload in /health/providers", || async move {
        c.get("/health/providers").await.1["config"]["reload"]["ok"] == false
    })
    .await;
    let (_, providers) = ccr.get("/health/providers").await;
    let message = providers["config"]["reload"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("keeping the previous one"), "{message}");
    assert!(message.contains("line"), "a syntax error names its line: {message}");
    assert_eq!(weight(&ccr.get("/dashboard/load-balancing").await.1, "primary"), Some(50));
    let (_, snapshot) = ccr.get("/status").await;
    assert_eq!(snapshot["reload"]["ok"], false);
    // A reload on demand says the same.
    let (status, err) = ccr.admin("/admin/reload", None, None).await;
    assert_eq!(status, 422, "{err}");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("keeping the previous one")));

    // A valid file again: accepted.
    ccr.rewrite(&serde_json::to_string_pretty(&config(&dir, 60, 40, None)).expect("json"));
    eventually("the weight 60 after the fix", || async move {
        weight(&c.get("/dashboard/load-balancing").await.1, "primary") == Some(60)
    })
    .await;
    eventually("the accepted reload", || async move { c.get("/health").await.1["config"]["ok"] == true })
        .await;
    let (status, answer) = ccr.admin("/admin/reload", None, None).await;
    assert_eq!(status, 200, "{answer}");
    ccr.shutdown().await;
}

#[tokio::test]
async fn saving_weights_writes_them_into_the_file() {
    let ccr = Instance::start(|dir| config(dir, 70, 30, None)).await;
    let (status, _) = ccr.admin("/admin/providers/primary/weight", Some(json!({"weight": 40})), None).await;
    assert_eq!(status, 200);
    let (status, answer) = ccr.admin("/admin/weights/save", None, None).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["message"].as_str().is_some_and(|m| m.contains("providers.primary.weight = 40")),
        "{answer}"
    );

    let text = std::fs::read_to_string(&ccr.path).expect("read");
    let saved: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(keys(&saved), ["name", "description", "routing", "providers", "server", "monitoring"]);
    assert_eq!(saved["description"], "kept as is by saves");
    assert_eq!(saved["providers"]["primary"]["weight"], 40);
    assert_eq!(saved["routing"]["rules"]["default"]["loadBalancing"]["weights"]["primary"], 40);
    assert_eq!(saved["providers"]["secondary"]["weight"], 30);

    // The saved weight is now the configured one: no override left, same weight in force.
    let (_, lb) = ccr.get("/metrics/load-balancing").await;
    assert_eq!(lb["providers"]["primary"]["configuredWeight"], 40);
    assert_eq!(lb["providers"]["primary"]["weightOverride"], Value::Null);
    assert_eq!(lb["rules"]["default"]["providers"][0]["weight"], 40);
    let (status, answer) = ccr.admin("/admin/weights/save", None, None).await;
    assert_eq!(status, 200);
    assert!(answer["message"].as_str().is_some_and(|m| m.contains("already holds")), "{answer}");
    ccr.shutdown().await;
}

#[tokio::test]
async fn prometheus_output_parses_with_traffic() {
    let h = common::start(common::seed_pool()).await;
    for i in 0..4 {
        let (status, _, body) = h.call(&common::main_turn(&format!("hello {i}"), false)).await;
        assert_eq!(status, 200, "{body}");
    }
    let text = h.http.get(h.url("/metrics")).send().await.expect("GET").text().await.expect("text");
    let families = parse_prometheus(&text);
    assert_eq!(families["ccr_upstream_requests_total"], "counter");
    assert!(text.contains("ccr_client_requests_total 4\n"), "{text}");
    let successes: f64 = text
        .lines()
        .filter(|l| l.starts_with("ccr_upstream_requests_total{") && l.contains("outcome=\"success\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(successes, 4.0, "{text}");
    let observed: f64 = text
        .lines()
        .filter(|l| l.starts_with("ccr_upstream_ttfb_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(observed, 4.0, "every request's time to first byte is in the histogram: {text}");
    h.shutdown().await;
}

#[tokio::test]
async fn ccr_status_prints_a_running_instance() {
    let ccr = Instance::start(|dir| config(dir, 70, 30, None)).await;
    let (status, _) = ccr.admin("/admin/providers/secondary/drain", None, None).await;
    assert_eq!(status, 200);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ccr"))
        .args(["status", "--url", &ccr.running.base_url()])
        .env_remove("CCR_CONFIG")
        .output()
        .await
        .expect("run ccr status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("Observability test · 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("PROVIDER"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("secondary") && l.contains("draining")), "{stdout}");
    assert!(stdout.contains("default     weighted-round-robin +failover"), "{stdout}");
    ccr.shutdown().await;

    // Nothing listening: a clear error and a failing exit.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", free.local_addr().expect("addr"));
    drop(free);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ccr"))
        .args(["status", "--url", &url])
        .output()
        .await
        .expect("run ccr status");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

/// Checks Prometheus text exposition format 0.0.4 line by line and returns each family's type:
/// every sample line is `name{labels} value` with valid names, escaped label values and a
/// number; every family has HELP and TYPE before its samples; counters end in `_total`;
/// histogram buckets are cumulative and end in `+Inf` equal to `_count`.
fn parse_prometheus(text: &str) -> BTreeMap<String, String> {
    fn valid_name(n: &str) -> bool {
        let mut chars = n.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    /// Parses `{k="v",...}` at the start of `s`; returns the labels and the rest.
    fn labels(s: &str) -> (Vec<(String, String)>, &str) {
        let Some(mut rest) = s.strip_prefix('{') else { return (Vec::new(), s) };
        let mut out = Vec::new();
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                return (out, r);
            }
            let eq = rest.find('=').expect("label has =");
            let name = &rest[..eq];
            assert!(valid_name(name) && !name.contains(':'), "label name {name:?}");
            rest = rest[eq + 1..].strip_prefix('"').expect("label value is quoted");
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                let (i, c) = chars.next().expect("unterminated label value");
                match c {
                    '\\' => match chars.next().expect("escape").1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        other => panic!("bad escape \\{other}"),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            out.push((name.to_owned(), value));
            rest = &rest[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let mut help = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_samples = BTreeSet::new();
    let mut buckets: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name");
            assert!(help.insert(name.to_owned()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().expect("name"), parts.next().expect("type"));
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
            assert!(help.contains(name), "TYPE before HELP for {name}");
            assert!(!seen_samples.contains(name), "TYPE after samples of {name}");
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "TYPE twice for {name}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} should end in _total");
            }
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
        let name_end = line.find(['{', ' ']).expect("sample has a value");
        let name = &line[..name_end];
        assert!(valid_name(name), "metric name {name:?}");
        let (labels, rest) = labels(&line[name_end..]);
        let value = rest.strip_prefix(' ').expect("one space before the value");
        let number = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse::<f64>().unwrap_or_else(|_| panic!("value {v:?} in {line:?}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample {name} without TYPE");
        seen_samples.insert(family.to_owned());
        let others: Vec<String> =
            labels.iter().filter(|(k, _)| k != "le").map(|(k, v)| format!("{k}={v}")).collect();
        let series = format!("{family}{{{}}}", others.join(","));
        if name.ends_with("_bucket") && family != name {
            let le = labels.iter().find(|(k, _)| k == "le").map(|(_, v)| v.clone()).expect("bucket has le");
            buckets.entry(series).or_default().push((le, number));
        } else if name.ends_with("_count") && family != name {
            counts.insert(series, number);
        }
    }
    for (series, b) in &buckets {
        assert!(b.windows(2).all(|w| w[0].1 <= w[1].1), "{series}: buckets are not cumulative");
        let (last_le, last) = b.last().expect("buckets");
        assert_eq!(last_le, "+Inf", "{series}: last bucket is +Inf");
        assert_eq!(Some(last), counts.get(series), "{series}: +Inf bucket equals _count");
    }
    assert!(!types.is_empty(), "no metric families");
    types
}
