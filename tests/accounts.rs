//! Issue 15: `ccr accounts import | login | list | remove` through the real binary, with HOME
//! pointed at a temp dir and the simulated upstream (which also plays the SSO-OIDC service).

mod common;

use ccr::app::{self, ListenOverride};
use ccr::config::{ConfigSource, parse_config};
use ccr::demo::upstream::{
    DeviceFlow, SimOptions, SimUpstream, write_idc_token_file, write_social_token_file,
};
use common::{main_turn, sse_text};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A temp HOME and the sim.
struct Env {
    home: tempfile::TempDir,
    sim: SimUpstream,
}

impl Env {
    async fn new() -> Env {
        let home = tempfile::tempdir().unwrap();
        let sim = SimUpstream::start(SimOptions::named("acct")).await.unwrap();
        sim.set_device_interval(0);
        Env { home, sim }
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    fn user_config(&self) -> PathBuf {
        self.home().join(".config/ccr/config.json")
    }

    fn accounts_dir(&self) -> PathBuf {
        self.home().join(".config/ccr/accounts")
    }

    fn kiro_ide_file(&self) -> PathBuf {
        self.home().join(".aws/sso/cache/kiro-auth-token.json")
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_ccr"));
        c.args(args)
            .env("HOME", self.home())
            .env_remove("CCR_CONFIG")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("BROWSER")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env("CCR_LOG", "warn")
            .kill_on_drop(true);
        c
    }

    async fn ccr(&self, args: &[&str]) -> Output {
        self.command(args).output().await.unwrap()
    }

    /// `--endpoint SIM --auth-endpoint SIM` plus `args`.
    async fn ccr_sim(&self, args: &[&str]) -> Output {
        let base = self.sim.base_url();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--endpoint", &base, "--auth-endpoint", &base]);
        self.ccr(&all).await
    }
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn json_file(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// An existing user config with one account of the sim, a weighted default rule and an
/// unweighted background rule.
fn existing_config(env: &Env) -> String {
    let token = env.home().join("first.json");
    write_social_token_file(&token, &env.sim.issue_credentials(Duration::from_secs(3600))).unwrap();
    let config = json!({
        "name": "mine",
        "routing": {"rules": {
            "default": {"providers": ["first"], "loadBalancing": {"strategy": "weighted-round-robin", "weights": {"first": 40}}},
            "background": {"providers": ["first"]}
        }},
        "providers": {"first": {"type": "aws", "tokenPath": token.to_string_lossy(),
            "endpoint": env.sim.base_url(), "authEndpoint": env.sim.base_url()}},
        "server": {"port": 3456}
    });
    let text = serde_json::to_string_pretty(&config).unwrap();
    std::fs::create_dir_all(env.user_config().parent().unwrap()).unwrap();
    std::fs::write(env.user_config(), &text).unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_the_kiro_ide_file_then_list() {
    let env = Env::new().await;
    let before = existing_config(&env);
    let ide = env.kiro_ide_file();
    write_social_token_file(&ide, &env.sim.issue_credentials(Duration::from_secs(3600))).unwrap();
    let original = std::fs::read(&ide).unwrap();
    let original_mtime = std::fs::metadata(&ide).unwrap().modified().unwrap();

    let out = env.ccr_sim(&["accounts", "import", "--name", "second"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("checked upstream: KIRO PRO, credits 0/1000 used (1000 left)"), "{stdout}");
    assert!(stdout.contains("in rules: default (weight 40), background"), "{stdout}");

    // The copy: ccr's own folder, 0600, same content; the original untouched.
    let copy = env.accounts_dir().join("second.json");
    assert_eq!(std::fs::read(&copy).unwrap(), original);
    #[cfg(unix)]
    assert_eq!(mode(&copy), 0o600);
    assert_eq!(std::fs::read(&ide).unwrap(), original);
    assert_eq!(std::fs::metadata(&ide).unwrap().modified().unwrap(), original_mtime);

    // The config: keys and order kept, the account added to both rules, still valid.
    let after = std::fs::read_to_string(env.user_config()).unwrap();
    let v: Value = serde_json::from_str(&after).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["name", "routing", "providers", "server"]);
    assert_eq!(v["routing"]["rules"]["default"]["providers"], json!(["first", "second"]));
    assert_eq!(
        v["routing"]["rules"]["default"]["loadBalancing"]["weights"],
        json!({"first": 40, "second": 40})
    );
    assert_eq!(v["routing"]["rules"]["background"]["providers"], json!(["first", "second"]));
    assert_eq!(v["providers"]["second"]["tokenPath"], json!(copy.to_string_lossy()));
    assert_eq!(v["providers"]["second"]["endpoint"], json!(env.sim.base_url()));
    let old: Value = serde_json::from_str(&before).unwrap();
    assert_eq!(v["providers"]["first"], old["providers"]["first"], "other entries unchanged");
    let check = env.ccr(&["check"]).await;
    assert!(check.status.success(), "{:?}", text(&check));

    // list: both accounts, asked upstream, as a table and as JSON.
    let out = env.ccr(&["accounts", "list"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ID"), "{stdout}");
    assert!(lines[0].contains("CREDITS") && lines[0].contains("RESET") && lines[0].contains("TOKEN EXPIRES"));
    assert!(
        lines[1].starts_with("first") && lines[1].contains("KIRO PRO") && lines[1].contains("0/1000"),
        "{stdout}"
    );
    assert!(lines[2].starts_with("second") && lines[2].trim_end().ends_with("ok"), "{stdout}");
    let out = env.ccr(&["accounts", "list", "--json"]).await;
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[1]["id"], "second");
    assert_eq!(rows[1]["tier"], "KIRO PRO");
    assert_eq!(rows[1]["limit"], 1000.0);
    assert_eq!(rows[1]["remaining"], 1000.0);
    assert_eq!(rows[1]["state"], "ok");
    assert!(rows[1]["resetAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_an_idc_login_with_its_registration_into_a_new_config() {
    let env = Env::new().await;
    let source = env.home().join("elsewhere/token.json");
    let idc = env.sim.issue_idc_credentials(Duration::from_secs(3600));
    let registration = write_idc_token_file(&source, &idc).unwrap();
    let config = env.home().join("cfg/new.json");
    let out = env
        .ccr_sim(&[
            "accounts",
            "import",
            source.to_str().unwrap(),
            "--name",
            "idc",
            "--config",
            config.to_str().unwrap(),
        ])
        .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let dir = env.home().join("cfg/accounts");
    assert_eq!(std::fs::read(dir.join("idc.json")).unwrap(), std::fs::read(&source).unwrap());
    let copied_reg = dir.join(registration.file_name().unwrap());
    assert_eq!(std::fs::read(&copied_reg).unwrap(), std::fs::read(&registration).unwrap());
    #[cfg(unix)]
    assert_eq!(mode(&copied_reg), 0o600);
    let v = json_file(&config);
    assert_eq!(v["routing"]["rules"]["default"]["providers"], json!(["idc"]));
    #[cfg(unix)]
    assert_eq!(mode(&config), 0o600, "a new config may hold an apiKey later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_and_the_config_is_untouched() {
    let env = Env::new().await;
    let before = existing_config(&env);
    let not_kiro = env.home().join("not-kiro.json");
    std::fs::write(&not_kiro, r#"{"hello": "world"}"#).unwrap();
    let rejected = env.home().join("rejected.json");
    std::fs::write(
        &rejected,
        json!({"accessToken": "aoaNOTISSUED", "refreshToken": format!("aor{}", "x".repeat(120)),
               "expiresAt": "2099-01-01T00:00:00.000Z", "authMethod": "social", "provider": "Github"})
        .to_string(),
    )
    .unwrap();
    let good = env.home().join("good.json");
    write_social_token_file(&good, &env.sim.issue_credentials(Duration::from_secs(3600))).unwrap();
    let idc_alone = env.home().join("alone/token.json");
    let reg =
        write_idc_token_file(&idc_alone, &env.sim.issue_idc_credentials(Duration::from_secs(3600))).unwrap();
    std::fs::remove_file(reg).unwrap();
    let (g, n, r, i) = (
        good.to_str().unwrap(),
        not_kiro.to_str().unwrap(),
        rejected.to_str().unwrap(),
        idc_alone.to_str().unwrap(),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["accounts", "import", g, "--name", "first"], "an account `first` exists already"),
        (vec!["accounts", "import", g, "--name", "a/b"], "is not a usable account id"),
        (
            vec!["accounts", "import", n, "--name", "x"],
            "is not a Kiro token file: no accessToken / refreshToken",
        ),
        (vec!["accounts", "import", r, "--name", "x"], "the upstream did not accept this token"),
        (vec!["accounts", "import", i, "--name", "x"], "registration file"),
        (
            vec!["accounts", "import", g, "--name", "x", "--rules", "default,nope"],
            "no rule `nope` in routing.rules",
        ),
        (vec!["accounts", "import", g, "--name", "x", "--weight=-3"], "--weight must be 0 or more"),
        (vec!["accounts", "import", "--name", "x"], "no Kiro IDE token at"),
        (vec!["accounts", "remove", "ghost"], "no account `ghost` in providers (the config has: first)"),
        (vec!["accounts", "remove", "first"], "without providers"),
        (vec!["accounts", "remove", "first", "--force"], "only account of the `default` rule"),
    ];
    for (args, expected) in cases {
        let out = if args[1] == "remove" { env.ccr(&args).await } else { env.ccr_sim(&args).await };
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: expected `{expected}` in:\n{stderr}");
        assert!(!stderr.contains("aoa") && !stderr.contains("aor"), "no token in messages: {stderr}");
        assert_eq!(
            std::fs::read_to_string(env.user_config()).unwrap(),
            before,
            "{args:?} changed the config"
        );
        let leftovers: Vec<_> =
            std::fs::read_dir(env.accounts_dir()).map(|d| d.count()).into_iter().collect();
        assert!(leftovers.iter().all(|n| *n == 0), "{args:?} left files in the accounts folder");
    }
    // --no-verify skips the upstream check.
    let out = env.ccr_sim(&["accounts", "import", r, "--name", "unchecked", "--no-verify"]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("not checked upstream (--no-verify)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_takes_an_account_out_of_everything() {
    let env = Env::new().await;
    existing_config(&env);
    let ide = env.kiro_ide_file();
    write_social_token_file(&ide, &env.sim.issue_credentials(Duration::from_secs(3600))).unwrap();
    assert!(env.ccr_sim(&["accounts", "import", "--name", "second"]).await.status.success());
    let copy = env.accounts_dir().join("second.json");

    let out = env.ccr(&["accounts", "remove", "first", "--delete-token"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("removed providers.first"), "{stdout}");
    assert!(
        stdout.contains("is not in ccr's accounts folder"),
        "the user's own file is never deleted: {stdout}"
    );
    assert!(env.home().join("first.json").exists());
    let v = json_file(&env.user_config());
    assert!(v["providers"].get("first").is_none());
    assert_eq!(v["routing"]["rules"]["default"]["providers"], json!(["second"]));
    assert_eq!(v["routing"]["rules"]["default"]["loadBalancing"]["weights"], json!({"second": 40}));
    assert_eq!(v["routing"]["rules"]["background"]["providers"], json!(["second"]));
    assert!(env.ccr(&["check"]).await.status.success());

    // Add one more only to default; removing `second` would empty `background`.
    let good = env.home().join("third-src.json");
    write_social_token_file(&good, &env.sim.issue_credentials(Duration::from_secs(3600))).unwrap();
    let out = env
        .ccr_sim(&[
            "accounts",
            "import",
            good.to_str().unwrap(),
            "--name",
            "third",
            "--rules",
            "default",
            "--weight",
            "60",
        ])
        .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = env.ccr(&["accounts", "remove", "second"]).await;
    assert!(text(&out).1.contains("rule `background` without providers"), "{:?}", text(&out));
    let out = env.ccr(&["accounts", "remove", "second", "--force", "--delete-token"]).await;
    let (stdout, _) = text(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("dropped rules left without providers (--force): background"), "{stdout}");
    assert!(stdout.contains("token file deleted"), "{stdout}");
    assert!(!copy.exists());
    let v = json_file(&env.user_config());
    assert_eq!(v["routing"]["rules"]["default"]["providers"], json!(["third"]));
    assert_eq!(v["routing"]["rules"]["default"]["loadBalancing"]["weights"], json!({"third": 60}));
    assert!(v["routing"]["rules"].get("background").is_none());
    assert!(env.ccr(&["check"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_by_device_code_then_serve_and_refresh() {
    let env = Env::new().await;
    let out = env.ccr_sim(&["accounts", "login", "--builder-id", "--name", "bid"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let base = env.sim.base_url();
    assert!(stdout.contains(&format!("To sign in, open {base}/device\nand enter the code ")), "{stdout}");
    let code = stdout.split("enter the code ").nth(1).unwrap().lines().next().unwrap();
    assert!(code.len() == 9 && code.as_bytes()[4] == b'-', "{code}");
    assert!(stdout.contains("logged in as `bid`") && stdout.contains("KIRO PRO"), "{stdout}");
    let stats = env.sim.oidc_stats();
    assert_eq!((stats.registrations, stats.device_authorizations, stats.device_polls), (1, 1, 3));

    // The token file: Kiro's IdC format, 0600, and the registration beside it.
    let token_path = env.accounts_dir().join("bid.json");
    let token = json_file(&token_path);
    #[cfg(unix)]
    assert_eq!(mode(&token_path), 0o600);
    for key in ["accessToken", "refreshToken", "expiresAt", "clientIdHash", "region"] {
        assert!(token[key].as_str().is_some_and(|s| !s.is_empty()), "{key} in {token}");
    }
    assert_eq!((token["authMethod"].as_str(), token["provider"].as_str()), (Some("IdC"), Some("BuilderId")));
    let reg =
        json_file(&env.accounts_dir().join(format!("{}.json", token["clientIdHash"].as_str().unwrap())));
    assert!(reg["clientId"].is_string() && reg["clientSecret"].is_string() && reg["expiresAt"].is_string());

    // A config was created (there was none) and is valid.
    let v = json_file(&env.user_config());
    assert_eq!(v["providers"]["bid"]["authEndpoint"], json!(base));
    assert!(env.ccr(&["check"]).await.status.success());

    // The account serves requests, and refreshes at the OIDC token endpoint when the upstream
    // rejects its token.
    let text_cfg = std::fs::read_to_string(env.user_config()).unwrap();
    let running = app::launch(
        parse_config(&text_cfg).unwrap(),
        ConfigSource::Flag(env.user_config()),
        ListenOverride { host: Some("127.0.0.1".into()), port: Some(0) },
    )
    .await
    .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/v1/messages", running.base_url());
    let r = http.post(&url).json(&main_turn("hi", true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(sse_text(&r.text().await.unwrap()).contains("acct"));
    let refreshes = env.sim.stats().refresh_idc;
    env.sim.expire_access_tokens();
    let r = http.post(&url).json(&main_turn("again", true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(sse_text(&r.text().await.unwrap()).contains("acct"));
    assert_eq!(env.sim.stats().refresh_idc, refreshes + 1, "one refresh at the OIDC /token endpoint");
    let refreshed = json_file(&token_path);
    assert_ne!(refreshed["accessToken"], token["accessToken"]);
    assert_eq!(refreshed["clientIdHash"], token["clientIdHash"], "other fields kept");
    running.shutdown().await;

    // A second login reuses the registration.
    let out = env.ccr_sim(&["accounts", "login", "--builder-id", "--name", "bid2", "--no-verify"]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(env.sim.oidc_stats().registrations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_ends_clearly_on_denial_expiry_and_ctrl_c() {
    let env = Env::new().await;
    let before = existing_config(&env);
    for (flow, expected) in [
        (DeviceFlow::Deny, "the login was denied in the browser; nothing was added"),
        (DeviceFlow::Expire, "the code expired before the login was approved"),
    ] {
        env.sim.set_device_flow(flow);
        let out = env.ccr_sim(&["accounts", "login", "--builder-id", "--name", "late"]).await;
        let (_, stderr) = text(&out);
        assert!(!out.status.success());
        assert!(stderr.contains(expected), "{flow:?}: {stderr}");
        assert_eq!(std::fs::read_to_string(env.user_config()).unwrap(), before);
        assert!(!env.accounts_dir().join("late.json").exists());
    }

    // Manual: the "browser" approves through the verification URL.
    env.sim.set_device_flow(DeviceFlow::Manual);
    let base = env.sim.base_url();
    let mut child = env
        .command(&[
            "accounts",
            "login",
            "--builder-id",
            "--name",
            "manual",
            "--endpoint",
            &base,
            "--auth-endpoint",
            &base,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let code = loop {
        let line = lines.next_line().await.unwrap().expect("the code line");
        if let Some(code) = line.strip_prefix("and enter the code ") {
            break code.to_owned();
        }
    };
    let page = reqwest::get(format!("{base}/device?user_code={code}")).await.unwrap();
    assert_eq!(page.status(), 200);
    let status = child.wait().await.unwrap();
    let mut rest = String::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        rest.push_str(&l);
        rest.push('\n');
    }
    assert!(status.success(), "{rest}");
    assert!(rest.contains("logged in as `manual`"), "{rest}");
    let before = std::fs::read_to_string(env.user_config()).unwrap();

    // Ctrl-C while waiting.
    let mut child = env
        .command(&[
            "accounts",
            "login",
            "--builder-id",
            "--name",
            "cancelled",
            "--endpoint",
            &base,
            "--auth-endpoint",
            &base,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while !lines.next_line().await.unwrap().expect("output").starts_with("(waiting") {}
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = child.wait_with_output().await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("login cancelled (Ctrl-C); nothing was added"), "{stderr}");
    assert_eq!(std::fs::read_to_string(env.user_config()).unwrap(), before);
    assert!(!env.accounts_dir().join("cancelled.json").exists());
}
