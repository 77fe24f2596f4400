//! The first run as a new user meets it, through the real binary in an empty home directory:
//! token files checked at once with their fix, claude-code-router's (Node.js) config recognised,
//! `ccr init`, `ccr check` refusing what `start` would refuse, `ccr status` without a config,
//! and `ccr demo` failing in one clean line.

use std::path::Path;
use std::process::{Command, Output};

/// Run `ccr` with `home` as the home directory and no config from the environment.
fn ccr(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ccr"))
        .args(args)
        .env("HOME", home)
        .env_remove("CCR_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .env("CCR_LOG", "warn")
        .output()
        .expect("run ccr")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn check_warns_about_every_missing_token_file_with_its_fix() {
    let home = tempfile::tempdir().unwrap();
    let out = ccr(home.path(), &["check", "--config", "config/codewhisperer-load-balancing.json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "warnings only: {stderr}");
    for id in ["codewhisperer-primary", "codewhisperer-secondary"] {
        let line = format!("warning: account {id} cannot serve: token file ");
        assert!(stdout.contains(&line), "{stdout}");
        assert!(stdout.contains(&format!("or set providers.{id}.tokenPath to the right file")), "{stdout}");
    }
    assert!(stdout.contains("log in with the Kiro IDE"), "{stdout}");
    assert!(stdout.contains("`ccr accounts import`"), "{stdout}");
}

#[test]
fn a_claude_code_router_config_is_recognised_not_misread() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".claude-code-router");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.json");
    std::fs::write(
        &file,
        r#"{"APIKEY":"k","Providers":[{"name":"deepseek"}],"Router":{"default":"deepseek,chat"}}"#,
    )
    .unwrap();
    // Named explicitly: refused, saying what it is and what to do.
    let out = ccr(home.path(), &["check", "--config", file.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {} is a claude-code-router (Node.js) config (it has `Providers` / `Router`), not a ccr \
             config; the two tools use different formats. Run `ccr init` to write a ccr config to {}, or pass \
             --config with a ccr config",
            file.display(),
            home.path().join(".config/ccr/config.json").display()
        )
    );
    // Found at the shared old path: skipped, and said so.
    let out = ccr(home.path(), &["check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "note: config: built-in default (ignored {}: it is claude-code-router's (Node.js) config",
            file.display()
        )),
        "{stdout}"
    );
    // A ccr config at the old path is still used.
    std::fs::copy("config/use-case-3-minimal.json", &file).unwrap();
    let (stdout, _) = text(&ccr(home.path(), &["check"]));
    assert!(stdout.contains(&format!("OK: {} is valid", file.display())), "{stdout}");
}

#[test]
fn init_writes_a_starter_config_that_check_accepts_and_is_then_the_default() {
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join(".aws/sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(
        cache.join("kiro-auth-token.json"),
        r#"{"accessToken":"aoa","refreshToken":"aor","expiresAt":"2030-01-01T00:00:00Z","authMethod":"social"}"#,
    )
    .unwrap();
    let out = ccr(home.path(), &["init"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let target = home.path().join(".config/ccr/config.json");
    assert!(
        stdout.starts_with(&format!("wrote {}\naccounts found: 1\n  kiro ", target.display())),
        "{stdout}"
    );
    assert!(stdout.contains("`ccr check`"), "{stdout}");
    let (stdout, stderr) = text(&ccr(home.path(), &["check"]));
    assert!(stdout.contains(&format!("OK: {} is valid", target.display())), "{stdout}{stderr}");
    assert!(!stdout.contains("cannot serve"), "the found token file is usable: {stdout}");
    // A second init keeps the file.
    let out = ccr(home.path(), &["init"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("already exists; edit it, or run `ccr init --force` to replace it"));
}

#[test]
fn check_refuses_what_start_would_refuse() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("open.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("config/use-case-3-minimal.json").unwrap()).unwrap();
    config["server"] = serde_json::json!({"host": "0.0.0.0", "port": 3456});
    std::fs::write(&file, config.to_string()).unwrap();
    let out = ccr(home.path(), &["check", "--config", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.starts_with("error: server.host: refusing to listen on 0.0.0.0 without server.apiKey"),
        "{stderr}"
    );
    assert!(!stdout.contains("OK:"), "{stdout}");
}

#[test]
fn status_needs_no_config_with_a_url_and_takes_host_port() {
    let home = tempfile::tempdir().unwrap();
    // A config that cannot be read must not matter when --url is given.
    let out = ccr(home.path(), &["status", "--url", "127.0.0.1:1", "--config", "/nonexistent.json"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.starts_with("ccr status: cannot reach http://127.0.0.1:1/status: "), "{stderr}");
}

#[test]
fn demo_without_a_terminal_says_so_in_one_line() {
    let home = tempfile::tempdir().unwrap();
    let out = ccr(home.path(), &["demo", "--port", "0"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "ccr demo: the dashboard needs a terminal; run `ccr demo --headless` to run without one\n"
    );
}

#[test]
fn headless_demo_on_a_busy_port_fails_in_one_clean_line() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let home = tempfile::tempdir().unwrap();
    let out = ccr(home.path(), &["demo", "--headless", "--port", &port, "--duration", "3"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("ccr demo: cannot listen on 127.0.0.1:{port}: ")), "{stderr}");
    assert!(!stderr.contains("Location") && !stderr.contains('\u{1b}'), "{stderr}");
}
