//! Issue 15: `ccr code`, `ccr stop` and `ccr statusline` through the real binary, with HOME
//! pointed at a temp dir, a stub `claude` script, and the simulated upstream behind ccr.

#![cfg(unix)]

use ccr::demo::upstream::{SimOptions, SimUpstream, write_social_token_file};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

struct Env {
    home: tempfile::TempDir,
    sim: SimUpstream,
}

impl Env {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ccr"));
        c.args(args)
            .env("HOME", self.home.path())
            .env_remove("CCR_CONFIG")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CCR_LOG");
        c
    }

    fn state_dir(&self) -> PathBuf {
        self.home.path().join(".local/state/ccr")
    }

    /// A config on a free port, one account of the sim, with or without an apiKey.
    fn config(&self, name: &str, port: u16, api_key: Option<&str>) -> PathBuf {
        let token = self.home.path().join(format!("{name}-token.json"));
        write_social_token_file(&token, &self.sim.issue_credentials(Duration::from_secs(3600))).unwrap();
        let mut server = json!({"host": "127.0.0.1", "port": port});
        if let Some(k) = api_key {
            server["apiKey"] = json!(k);
        }
        let config = json!({
            "routing": {"rules": {"default": {"providers": ["solo"]}}},
            "providers": {"solo": {"tokenPath": token.to_string_lossy(),
                "endpoint": self.sim.base_url(), "authEndpoint": self.sim.base_url()}},
            "server": server
        });
        let path = self.home.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        path
    }

    /// A stub `claude` that writes its environment and arguments to `out` and exits 7.
    fn stub(&self, out: &Path) -> PathBuf {
        let path = self.home.path().join("claude-stub.sh");
        let script = format!(
            "#!/bin/sh\n{{ echo \"BASE=$ANTHROPIC_BASE_URL\"; echo \"TOKEN=$ANTHROPIC_AUTH_TOKEN\"; \
             echo \"APIKEY=${{ANTHROPIC_API_KEY-unset}}\"; for a in \"$@\"; do echo \"ARG=$a\"; done; }} > '{}'\nexit 7\n",
            out.display()
        );
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn statusline(&self, config: &Path, stdin: &str) -> String {
        let mut child = self
            .command(&["statusline", "--config", config.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "statusline never fails: {out:?}");
        assert!(out.stderr.is_empty(), "statusline is quiet: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Stops the background instance even when an assertion fails.
struct StopOnDrop<'a>(&'a Env, PathBuf);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.command(&["stop", "--config", self.1.to_str().unwrap()]).output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn lines(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_starts_an_instance_runs_claude_and_stop_stops_it() {
    let env = Env {
        home: tempfile::tempdir().unwrap(),
        sim: SimUpstream::start(SimOptions::named("cc")).await.unwrap(),
    };
    let port = free_port();
    let keyed = env.config("keyed", port, Some("sk-ccr-test"));
    let _guard = StopOnDrop(&env, keyed.clone());
    let record = env.home.path().join("claude-saw.txt");
    let stub = env.stub(&record);
    let base = format!("http://127.0.0.1:{port}");

    // Nothing answers yet: the statusline says so.
    assert_eq!(env.statusline(&keyed, r#"{"session_id":"s-1"}"#), "ccr: not running\n");

    let keyed_s = keyed.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking({
        let mut c =
            env.command(&["code", "--config", &keyed_s, "--", "-p", "hello world", "--model", "opus"]);
        c.env("CCR_CLAUDE_BIN", &stub).env("ANTHROPIC_API_KEY", "sk-ant-real-key");
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(7), "Claude Code's status: {}", lines(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("ccr: started an instance on {base}")), "{stderr}");
    assert!(stderr.contains("`ccr stop` stops it"), "{stderr}");
    let saw = std::fs::read_to_string(&record).unwrap();
    assert_eq!(
        saw,
        format!(
            "BASE={base}\nTOKEN=sk-ccr-test\nAPIKEY=unset\nARG=-p\nARG=hello world\nARG=--model\nARG=opus\n"
        )
    );

    // The background instance: pid and log files in the state folder, and it serves.
    let pid_file = env.state_dir().join(format!("instance-127.0.0.1-{port}.pid"));
    let log_file = env.state_dir().join(format!("instance-127.0.0.1-{port}.log"));
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(log_file.exists());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth("sk-ccr-test")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the bearer key Claude Code sends is accepted");

    // A Claude Code session that has had a turn: the statusline names its account, the credits
    // left and the reset as `/sessions/{id}` tells them, and the rule that served it.
    let r = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth("sk-ccr-test")
        .header("x-claude-code-session-id", "s-42")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let session: serde_json::Value = http
        .get(format!("{base}/sessions/s-42"))
        .bearer_auth("sk-ccr-test")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // "hi" with no tools is a background turn; the config has only a default rule.
    assert_eq!(
        (session["provider"].as_str(), session["category"].as_str()),
        (Some("solo"), Some("background"))
    );
    let health: serde_json::Value =
        http.get(format!("{base}/health/providers")).send().await.unwrap().json().await.unwrap();
    let usage = &health["providers"]["solo"]["usage"];
    let limit = usage["limit"].as_f64().unwrap_or_else(|| panic!("usage in {health}"));
    assert!(limit > 0.0, "{usage}");
    let line = env.statusline(&keyed, r#"{"session_id":"s-42","model":{"id":"claude-sonnet-4-5"}}"#);
    assert!(line.starts_with("ccr: solo · ") && line.ends_with(" · background\n"), "{line}");
    assert!(line.contains(" credits left · reset in ") && line.contains('/'), "{line}");
    let shown_limit: f64 = line
        .split(" credits left")
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert_eq!(shown_limit, limit.round(), "{line} vs {usage}");

    // A second `ccr code` (another config on the same address, no apiKey) reuses the instance
    // and hands Claude Code the placeholder key.
    let plain = env.config("plain", port, None);
    let out = env
        .command(&["code", "--config", plain.to_str().unwrap()])
        .env("CCR_CLAUDE_BIN", &stub)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("started an instance"), "{}", lines(&out));
    let saw = std::fs::read_to_string(&record).unwrap();
    assert_eq!(saw, format!("BASE={base}\nTOKEN=ccr-no-key-needed\nAPIKEY=unset\n"));
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), pid.to_string());

    // Statusline against the running instance: no session on stdin, an unknown session, junk.
    assert_eq!(env.statusline(&keyed, ""), "ccr: running\n");
    assert_eq!(
        env.statusline(&keyed, r#"{"session_id":"never-seen","model":{"id":"x"}}"#),
        "ccr: new session\n"
    );
    assert_eq!(env.statusline(&keyed, "not json"), "ccr: running\n");

    // A missing claude: a clear message and 127.
    let out = env
        .command(&["code", "--config", &keyed_s])
        .env("CCR_CLAUDE_BIN", env.home.path().join("no-such-claude"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        lines(&out).contains("not found (install Claude Code, or set $CCR_CLAUDE_BIN"),
        "{}",
        lines(&out)
    );

    // stop: the instance exits, the pid file goes, the statusline says so.
    let out = env.command(&["stop", "--config", &keyed_s]).output().unwrap();
    assert!(out.status.success(), "{}", lines(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("ccr stop: stopped the instance on {base} (pid {pid})\n")
    );
    assert!(!pid_file.exists());
    assert_eq!(env.statusline(&keyed, r#"{"session_id":"s-1"}"#), "ccr: not running\n");
    let out = env.command(&["stop", "--config", &keyed_s]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no background instance"), "{}", lines(&out));
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.contains(&format!("listening on {base}")) && log.contains("shutting down"), "{log}");
}
