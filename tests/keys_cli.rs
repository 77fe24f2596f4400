//! `ccr keys add | list | remove` through the real binary on a temp config, with a real
//! `ccr start` picking the changes up by hot reload; and no key in its log.
#![cfg(unix)]

use ccr::demo::pool::{Account, SimPool};
use ccr::demo::upstream::SimOptions;
use ccr::keys::sha256_hex;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const GENEROUS: Duration = Duration::from_secs(20);

fn ccr(args: &[&str], config: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ccr"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .output()
        .expect("ccr runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn status_with(http: &reqwest::Client, base: &str, key: &str) -> u16 {
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 50,
                      "messages": [{"role": "user", "content": "hello"}]});
    let r =
        http.post(format!("{base}/v1/messages")).header("x-api-key", key).json(&body).send().await.unwrap();
    r.status().as_u16()
}

/// Poll until `key` gets `want` (the config watcher has reloaded), for up to 20 s.
async fn until_status(http: &reqwest::Client, base: &str, key: &str, want: u16) {
    let mut got = 0;
    for _ in 0..400 {
        got = status_with(http, base, key).await;
        if got == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {want}, still {got}");
}

#[tokio::test]
async fn keys_are_added_listed_and_removed_on_a_running_instance_without_leaking() {
    let pool = SimPool::builder()
        .provider_defaults(json!({"firstByteTimeout": 5000, "idleTimeout": 5000}))
        .account(
            "solo",
            Account::new().sim(SimOptions { chunk_delay: Duration::ZERO, ..SimOptions::named("solo") }),
        )
        .rule("default", json!({"providers": ["solo"]}))
        .merge(json!({"input": {"defaultInstance": false}}))
        .start()
        .await
        .unwrap();
    let path = pool.config_path.clone();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let before: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();

    // add: the key on stdout once, only its digest in the file, everything else kept.
    let out = ccr(
        &[
            "keys",
            "add",
            "alice",
            "--monthly-credits",
            "5",
            "--rpm",
            "60",
            "--model",
            "claude-sonnet-4-5",
            "--model",
            "claude-haiku-*",
        ],
        &path,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let alice = text(&out.stdout).trim().to_owned();
    assert!(alice.starts_with("sk-ccr-") && alice.len() == 7 + 64, "{alice}");
    assert!(text(&out.stderr).contains("added key `alice`"), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(!written.contains(&alice), "the key itself is never stored");
    let after: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(
        after["server"]["keys"],
        json!([{"name": "alice", "keySha256": sha256_hex(alice.as_bytes()), "monthlyCredits": 5,
                "requestsPerMinute": 60, "models": ["claude-sonnet-4-5", "claude-haiku-*"]}])
    );
    let mut without_keys = after.clone();
    without_keys.as_object_mut().unwrap().remove("server");
    let mut before_without = before.clone();
    before_without.as_object_mut().unwrap().remove("server");
    assert_eq!(without_keys, before_without);
    let keys_order: Vec<&String> = after.as_object().unwrap().keys().filter(|k| *k != "server").collect();
    let before_order: Vec<&String> = before.as_object().unwrap().keys().filter(|k| *k != "server").collect();
    assert_eq!(keys_order, before_order, "key order kept");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640, "mode kept");
    // A second key of the same name is refused; a bad limit is refused with its JSON path.
    let out = ccr(&["keys", "add", "alice"], &path);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("a key `alice` exists already"), "{}", text(&out.stderr));
    let out = ccr(&["keys", "add", "carol", "--rpm", "0"], &path);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("server.keys[1].requestsPerMinute: must be between 1 and 1000000"),
        "{}",
        text(&out.stderr)
    );

    // A running instance.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ccr"))
        .args(["start", "--port", "0", "--config"])
        .arg(&path)
        .env("CCR_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ccr starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let base = tokio::time::timeout(GENEROUS, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.lock().unwrap().push(line.clone());
            if let Some(at) = line.find("listening on ") {
                return line[at + "listening on ".len()..].trim().to_string();
            }
        }
        panic!("ccr ended before listening");
    })
    .await
    .expect("ccr listens");
    let collector = {
        let log = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push(line);
            }
        })
    };
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(status_with(&http, &base, &alice).await, 200);
    assert_eq!(status_with(&http, &base, "sk-ccr-unknown").await, 401);

    // A key added while it runs works after the hot reload.
    let out = ccr(&["keys", "add", "bob"], &path);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bob = text(&out.stdout).trim().to_owned();
    until_status(&http, &base, &bob, 200).await;

    // list: usage from the running instance.
    let out = ccr(&["keys", "list", "--url", &base], &path);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines_of: Vec<&str> = table.lines().collect();
    assert!(lines_of[0].starts_with("NAME   HASH      CREDITS  BUDGET  RPM  CONCURRENT  MODELS"), "{table}");
    let alice_row = lines_of.iter().find(|l| l.starts_with("alice ")).expect("alice's row");
    assert!(alice_row.contains(&sha256_hex(alice.as_bytes())[..8]), "{table}");
    assert!(alice_row.contains("claude-sonnet-4-5,claude-haiku-*"), "{table}");
    assert!(table.contains("(counters: memory)"), "{table}");
    let out = ccr(&["keys", "list", "--json", "--url", &base], &path);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["keys"][0]["name"], "alice");
    assert_eq!(json["keys"][0]["requests"], 1);
    assert!(json["keys"][0]["creditsThisMonth"].as_f64().unwrap() > 0.0, "{json}");

    // remove: refused after the reload.
    let out = ccr(&["keys", "remove", "alice"], &path);
    assert!(out.status.success(), "{}", text(&out.stderr));
    until_status(&http, &base, &alice, 401).await;
    let out = ccr(&["keys", "remove", "alice"], &path);
    assert!(text(&out.stderr).contains("no key `alice` in server.keys"), "{}", text(&out.stderr));

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    tokio::time::timeout(GENEROUS, child.wait()).await.expect("ccr stops").unwrap();
    collector.await.unwrap();

    // Without an instance, list shows the config.
    let out = ccr(&["keys", "list", "--url", &base], &path);
    let table = text(&out.stdout);
    assert!(
        table.starts_with("NAME  BUDGET  RPM  CONCURRENT  MODELS\nbob   -       -    -           any\n"),
        "{table}"
    );
    assert!(table.contains("usage unknown"), "{table}");

    let log = log.lock().unwrap().join("\n");
    assert!(log.contains("key=alice"), "the key's name in the request's log line:\n{log}");
    assert!(log.contains("key=bob"), "{log}");
    for secret in [&alice, &bob] {
        assert!(!log.contains(secret.as_str()), "a key in the log:\n{log}");
        assert!(!log.contains(&sha256_hex(secret.as_bytes())), "a full digest in the log:\n{log}");
    }
    pool.shutdown().await;
}
