//! Hardening (issue 11), through the real socket: web pages cannot drive ccr, nothing blocks the
//! runtime, unfinished requests are timed out, connections are capped, upstream 4xx point the
//! right way, error answers are Anthropic-shaped, compressed bodies are decoded, and files
//! written through symlinks stay symlinks. Signals and shutdown are in `tests/shutdown.rs`.

mod common;

use ccr::demo::pool::{Account, SimPool, SimPoolBuilder};
use ccr::demo::upstream::ErrorKind;
use common::*;
use serde_json::{Value, json};
use std::io::Write as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bounds waits that succeed quickly when the code is right; never a pass condition by itself.
const GENEROUS: Duration = Duration::from_secs(10);

/// `pool` with these `server` settings.
fn with_server(pool: SimPoolBuilder, server: Value) -> SimPoolBuilder {
    pool.merge(json!({ "server": server }))
}

/// The seed pool with failover on in the default rule.
fn failover_pool() -> SimPoolBuilder {
    seed_pool().merge(json!({"routing": {"rules": {"default": {"loadBalancing": {"failover": true}}}}}))
}

fn small_request() -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
           "messages": [{"role": "user", "content": "hello"}]})
}

async fn raw(h: &Harness) -> TcpStream {
    TcpStream::connect(h.ccr.addr).await.unwrap()
}

/// Read until EOF or `limit`; returns what came.
async fn read_all(stream: &mut TcpStream, limit: Duration) -> Result<String, &'static str> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    match read {
        Ok(()) => Ok(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => Err("the connection stayed open"),
    }
}

fn error_type(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(v["type"], "error", "{body}");
    v["error"]["type"].clone()
}

// ---------------------------------------------------------------------------------------------
// Web pages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn web_pages_cannot_drive_ccr_without_a_key() {
    let h = start(with_server(
        seed_pool(),
        json!({"allowedOrigins": ["https://tools.example"], "allowedHosts": ["ccr.lan"]}),
    ))
    .await;
    let post = |path: &str| h.http.post(h.url(path));

    // A no-cors text/plain POST from a page: drain, save, spend credits.
    for path in ["/admin/providers/codewhisperer-primary/drain", "/admin/weights/save", "/v1/messages"] {
        let r = post(path)
            .header("origin", "https://evil.example")
            .header("content-type", "text/plain")
            .body(small_request().to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let body = r.text().await.unwrap();
        assert_eq!(error_type(&body), "permission_error", "{body}");
        assert!(body.contains("https://evil.example"), "{body}");
    }
    // The same without Origin (an old browser, a form) is still refused for its content type.
    let r = post("/admin/providers/codewhisperer-primary/drain")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("must be JSON"));
    // Sec-Fetch-Site: cross-site.
    let r = h.http.get(h.url("/status")).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(r.status(), 403);
    // DNS rebinding: a page's own name as Host.
    let r = h.http.get(h.url("/status")).header("host", "attacker.example:3456").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_type(&r.text().await.unwrap()), "permission_error");
    // Nothing happened.
    let status: Value = h.http.get(h.url("/health/providers")).send().await.unwrap().json().await.unwrap();
    assert!(!status.to_string().contains("\"drained\":true"), "{status}");

    // What is allowed: loopback origins, listed origins and hosts, ordinary clients.
    let r = post("/v1/messages")
        .header("origin", "http://localhost:5173")
        .json(&small_request())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/v1/messages")
        .header("origin", "https://tools.example")
        .header("sec-fetch-site", "cross-site")
        .json(&small_request())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h.http.get(h.url("/status")).header("host", "ccr.lan:3456").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post("/admin/providers/codewhisperer-primary/drain").send().await.unwrap();
    assert_eq!(r.status(), 200, "a body-less admin POST (curl -X POST) works");
    h.shutdown().await;
}

#[tokio::test]
async fn with_a_key_any_host_works_but_origins_are_still_checked() {
    let h = start(with_server(solo_pool(), json!({"apiKey": "k3y"}))).await;
    let r = h
        .http
        .post(h.url("/v1/messages"))
        .header("host", "ccr.example.org")
        .header("x-api-key", "k3y")
        .json(&small_request())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h
        .http
        .post(h.url("/v1/messages"))
        .header("origin", "https://evil.example")
        .header("x-api-key", "k3y")
        .json(&small_request())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Files that would block or are too big
// ---------------------------------------------------------------------------------------------

#[cfg(unix)]
fn mkfifo(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success(), "mkfifo");
}

#[cfg(unix)]
#[tokio::test]
async fn a_fifo_or_huge_token_file_fails_that_account_only() {
    let h = start(failover_pool()).await;
    let primary = h.pool.token_path("codewhisperer-primary").unwrap().to_path_buf();
    mkfifo(&primary);
    for i in 0..4 {
        let (status, headers, body) =
            tokio::time::timeout(GENEROUS, h.call(&small_request())).await.expect("answered, not hung");
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(headers["x-ccr-provider"], "codewhisperer-secondary");
    }
    let health = tokio::time::timeout(GENEROUS, h.http.get(h.url("/health/providers")).send())
        .await
        .expect("/health answers")
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(health.contains("not a regular file"), "{health}");

    // A 1 MB file: refused by size, not read whole.
    std::fs::remove_file(&primary).unwrap();
    let mut f = std::fs::File::create(&primary).unwrap();
    f.write_all(&vec![b' '; 1024 * 1024]).unwrap();
    drop(f);
    let (status, headers, _) = h.call(&small_request()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ccr-provider"], "codewhisperer-secondary");
    let health = h.http.get(h.url("/health/providers")).send().await.unwrap().text().await.unwrap();
    assert!(health.contains("bytes is more than"), "{health}");
    h.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_fifo_config_keeps_the_last_good_config_and_says_so() {
    let h = start(solo_pool()).await;
    mkfifo(&h.config_path);
    let r = tokio::time::timeout(GENEROUS, h.http.post(h.url("/admin/reload")).send())
        .await
        .expect("reload answers, not hung")
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("not a regular file"));
    let health: Value = h.http.get(h.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["config"]["ok"], false, "{health}");
    assert!(health["config"]["message"].as_str().unwrap().contains("not a regular file"), "{health}");
    let (status, _, _) = h.call(&small_request()).await;
    assert_eq!(status, 200, "the last good config still serves");
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Unfinished requests, sizes, connection cap
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unfinished_request_head_is_timed_out() {
    let h = start(with_server(solo_pool(), json!({"requestHeadTimeout": 200}))).await;
    let mut c = raw(&h).await;
    c.write_all(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-filler: ").await.unwrap();
    c.write_all(&vec![b'a'; 64 * 1024]).await.unwrap();
    read_all(&mut c, GENEROUS).await.expect("ccr closed the connection");
    h.shutdown().await;
}

#[tokio::test]
async fn a_stalled_body_gets_a_408() {
    let h = start(with_server(solo_pool(), json!({"bodyIdleTimeout": 200}))).await;
    let mut c = raw(&h).await;
    c.write_all(
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    let answer = read_all(&mut c, GENEROUS).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request body stalled"), "{answer}");
    h.shutdown().await;
}

#[tokio::test]
async fn an_announced_body_over_the_limit_is_refused_before_100_continue() {
    let h = start(with_server(solo_pool(), json!({"maxBodyBytes": 1000}))).await;
    let mut c = raw(&h).await;
    c.write_all(
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1001\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = read_all(&mut c, GENEROUS).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("request_too_large"), "{answer}");
    h.shutdown().await;
}

#[tokio::test]
async fn open_connections_are_capped() {
    let h = start(with_server(solo_pool(), json!({"maxConnections": 2}))).await;
    let mut held = vec![raw(&h).await, raw(&h).await];
    // Both slots are taken by connections that send nothing: the next client waits…
    let waiting = tokio::spawn({
        let url = h.url("/health");
        let http = h.http.clone();
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a third connection was served while two were open");
    // …until one closes.
    held.pop();
    let status = tokio::time::timeout(GENEROUS, waiting).await.expect("served once a slot freed").unwrap();
    assert_eq!(status.unwrap(), 200);
    drop(held);
    h.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_connects_queues_in_a_large_backlog() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    let burst = somaxconn.min(1024).saturating_sub(24).min(400);
    if burst <= 200 {
        eprintln!("net.core.somaxconn is {somaxconn}: too small to tell a 1024 backlog from 128; skipped");
        return;
    }
    let h = start(with_server(solo_pool(), json!({"maxConnections": 1}))).await;
    // The one slot is held, so every further connect waits in the backlog.
    let _held = raw(&h).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = h.ccr.addr;
    let connects = (0..burst)
        .map(|_| async move { tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await });
    let results = futures_util::future::join_all(connects).await;
    let stalled = results.iter().filter(|r| !matches!(r, Ok(Ok(_)))).count();
    assert_eq!(stalled, 0, "{stalled} of {burst} connects stalled");
    drop(results);
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Upstream 4xx
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unexpected_upstream_4xx_fail_over_and_count_against_the_account() {
    let h = start(
        seed_pool()
            .provider_defaults(json!({"circuitBreaker": {"failureThreshold": 100}}))
            .merge(json!({"routing": {"rules": {"default": {"loadBalancing": {"strategy": "round-robin", "failover": true}}}}})),
    )
    .await;
    for code in [404u16, 409, 422, 431, 451] {
        h.upstreams[0].fail_next(1, ErrorKind::ClientStatus(code));
        h.upstreams[1].fail_next(1, ErrorKind::ClientStatus(code));
        // One of the two answers 4xx; the request moves on and the other fails too, or the
        // first answers. Either way no 400 comes back.
        let (status, headers, body) = h.call(&small_request()).await;
        assert_ne!(status, 400, "{code}: {body}");
        if status == 200 {
            assert_eq!(headers["x-ccr-attempts"], "2", "{code}");
        } else {
            assert_eq!(status, 502, "{code}: {body}");
            assert_eq!(error_type(&body), "api_error");
        }
        h.upstreams[0].clear_scripted_failures();
        h.upstreams[1].clear_scripted_failures();
    }
    let metrics = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let failures: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ccr_upstream_requests_total") && l.contains("outcome=\"failure\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(failures >= 5.0, "each 4xx counted against its account:\n{metrics}");

    // 413 is the request's fault: straight back, no failover.
    h.upstreams[0].fail_next(1, ErrorKind::ClientStatus(413));
    h.upstreams[1].fail_next(1, ErrorKind::ClientStatus(413));
    let (status, headers, body) = h.call(&small_request()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(headers["x-ccr-attempts"], "1");
    assert_eq!(error_type(&body), "request_too_large");
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Error shapes and encodings
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_methods_and_bad_urls_get_anthropic_json() {
    let h = start(solo_pool()).await;
    let r = h.http.get(h.url("/v1/messages")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("allow"));
    let body = r.text().await.unwrap();
    assert_eq!(error_type(&body), "invalid_request_error");
    assert!(body.contains("method not allowed"), "{body}");
    let r = h.http.post(h.url("/admin/providers/%FF%FE/drain")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_type(&r.text().await.unwrap()), "invalid_request_error");
    let r = h
        .http
        .post(h.url("/admin/providers/solo/weight"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_type(&r.text().await.unwrap()), "invalid_request_error");
    h.shutdown().await;
}

#[tokio::test]
async fn gzip_bodies_are_decoded_and_unknown_encodings_refused() {
    let h = start(solo_pool()).await;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(small_request().to_string().as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let send = |encoding: &str, body: Vec<u8>| {
        h.http
            .post(h.url("/v1/messages"))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(body)
            .send()
    };
    let r = send("gzip", gz.clone()).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = send("br", gz.clone()).await.unwrap();
    assert_eq!(r.status(), 415);
    let body = r.text().await.unwrap();
    assert!(body.contains("gzip"), "{body}");
    assert_eq!(error_type(&body), "invalid_request_error");
    let r = send("gzip", b"not gzip".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Symlinks
// ---------------------------------------------------------------------------------------------

#[cfg(unix)]
#[tokio::test]
async fn symlinked_config_and_token_files_are_written_through() {
    use std::os::unix::fs::PermissionsExt;
    // The token is about to expire, so the first request refreshes it.
    let h = start(
        SimPool::builder()
            .provider_defaults(json!({"firstByteTimeout": 5000, "idleTimeout": 5000}))
            .account("solo", Account::new().sim(sim(0)).token_ttl(Duration::from_secs(60)))
            .rule("default", json!({"providers": ["solo"]})),
    )
    .await;
    // The token file moves elsewhere and a link takes its place.
    let dir = h.pool.dir().to_path_buf();
    let link = h.pool.token_path("solo").unwrap().to_path_buf();
    std::fs::create_dir(dir.join("real")).unwrap();
    let real = dir.join("real/token.json");
    std::fs::rename(&link, &real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let (status, _, body) = h.call(&small_request()).await;
    assert_eq!(status, 200, "{body}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still a link");
    let token: Value = serde_json::from_str(&std::fs::read_to_string(&real).unwrap()).unwrap();
    assert!(
        h.upstreams[0].is_access_token_valid(token["accessToken"].as_str().unwrap()),
        "the real file holds the refreshed token"
    );
    assert_eq!(
        std::fs::metadata(&real).unwrap().permissions().mode() & 0o777,
        0o600,
        "credentials stay private"
    );

    // The config: moved elsewhere, linked, saved through the admin API.
    let real_config = dir.join("real/config.json");
    std::fs::rename(&h.config_path, &real_config).unwrap();
    std::fs::set_permissions(&real_config, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink(&real_config, &h.config_path).unwrap();
    let r =
        h.http.post(h.url("/admin/providers/solo/weight")).json(&json!({"weight": 7})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = h.http.post(h.url("/admin/weights/save")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(std::fs::symlink_metadata(&h.config_path).unwrap().file_type().is_symlink());
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&real_config).unwrap()).unwrap();
    assert_eq!(saved["providers"]["solo"]["weight"], 7);
    assert_eq!(std::fs::metadata(&real_config).unwrap().permissions().mode() & 0o777, 0o640, "mode kept");
    h.shutdown().await;
}
