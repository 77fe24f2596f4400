//! `ccr accounts login --builder-id --name ID`: the AWS SSO-OIDC device-code login (protocol
//! notes §7.7), then the account is added like `import` does.
//!
//! 1. The OIDC client registration is kept in the accounts folder as `<clientIdHash>.json` (the
//!    Kiro IDE's layout) and reused until it is within a day of expiring.
//! 2. `/device_authorization` gives a URL and a user code: printed, and opened in a browser when
//!    there is one (stdout a terminal and `$BROWSER` or a display set).
//! 3. `/token` is polled every `interval` seconds; `slow_down` adds 5 s; `expired_token`,
//!    `access_denied` and Ctrl-C end the attempt with a clear message.
//! 4. The tokens go to `accounts/<ID>.json` in the Kiro IdC format (0600).

use super::args::LoginArgs;
use super::import::{Written, add_and_save, refuse_taken};
use super::{AccountsError, ConfigDoc, check_id, write_file_atomically};
use crate::atomic_file::Permissions;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

/// The Builder ID start URL.
pub const BUILDER_ID_START_URL: &str = "https://view.awsapps.com/start";

/// Scopes Kiro's IdC logins ask for.
const SCOPES: [&str; 3] =
    ["codewhisperer:completions", "codewhisperer:analysis", "codewhisperer:conversations"];

/// The `grantType` of a device-code poll.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The shortest wait between two polls, whatever `interval` says (a 0 would spin).
const MIN_POLL_WAIT: Duration = Duration::from_millis(100);

/// Ctrl-C, listened for from creation on.
struct Interrupt {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupt {
    fn new() -> Result<Interrupt, AccountsError> {
        Ok(Interrupt {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| AccountsError::refused(format!("cannot listen for Ctrl-C: {e}")))?,
        })
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What one poll answer means for the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollStep {
    /// Wait this long, then poll again.
    Wait(Duration),
    /// Stop: the reason, for the user.
    Stop(String),
}

/// The poll schedule: `interval` from the authorization (5 s when absent, per RFC 8628), +5 s
/// on each `slow_down`.
#[derive(Debug, Clone)]
pub struct Poller {
    interval: Duration,
}

impl Poller {
    pub fn new(interval_secs: Option<u64>) -> Poller {
        Poller { interval: Duration::from_secs(interval_secs.unwrap_or(5)) }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The next step after an OAuth error code from `/token`.
    pub fn on_error(&mut self, error: &str, description: &str) -> PollStep {
        match error {
            "authorization_pending" => PollStep::Wait(self.interval),
            "slow_down" => {
                self.interval += Duration::from_secs(5);
                PollStep::Wait(self.interval)
            }
            "expired_token" => {
                PollStep::Stop("the code expired before the login was approved; run the command again".into())
            }
            "access_denied" => PollStep::Stop("the login was denied in the browser".into()),
            other => PollStep::Stop(format!("the OIDC service refused the login: {other}: {description}")),
        }
    }
}

/// The OIDC base URL: `--auth-endpoint`, else `https://oidc.{region}.amazonaws.com`.
pub fn oidc_base(args: &LoginArgs) -> String {
    match &args.placement.auth_endpoint {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("https://oidc.{}.amazonaws.com", args.region),
    }
}

pub fn run(args: &LoginArgs) -> Result<String, AccountsError> {
    let p = &args.placement;
    check_id(&p.name)?;
    let mut doc = ConfigDoc::open(p.config.config.as_deref())?;
    refuse_taken(&doc, &p.name)?;
    let dir = doc.accounts_dir();
    let dest = dir.join(format!("{}.json", p.name));
    if dest.exists() {
        return Err(AccountsError::refused(format!(
            "{} exists already (left by an earlier account?); remove it or choose another --name",
            dest.display()
        )));
    }
    let base = oidc_base(args);
    let mut written = Written::default();
    let result = (|| {
        let rt = super::runtime()?;
        rt.block_on(login(args, &base, &dir, &dest, &mut written))?;
        drop(rt);
        add_and_save(&mut doc, p, &dest, Some(&args.region))
    })();
    match result {
        Ok(report) => Ok(format!("logged in as `{}`\n{report}", p.name)),
        Err(e) => {
            written.undo();
            Err(e)
        }
    }
}

async fn login(
    args: &LoginArgs,
    base: &str,
    dir: &Path,
    dest: &Path,
    written: &mut Written,
) -> Result<(), AccountsError> {
    let http = super::http();
    let hash = client_id_hash(&args.start_url, base);
    let reg_path = dir.join(format!("{hash}.json"));
    let (client_id, client_secret) = match reusable_registration(&reg_path) {
        Some(c) => c,
        None => {
            let answer = post(
                &http,
                base,
                "/client/register",
                json!({"clientName": "ccr", "clientType": "public", "scopes": SCOPES}),
            )
            .await?
            .map_err(|(e, d)| AccountsError::refused(format!("client registration refused: {e}: {d}")))?;
            let id = text(&answer, "clientId")?;
            let secret = text(&answer, "clientSecret")?;
            let expires = answer
                .get("clientSecretExpiresAt")
                .and_then(Value::as_i64)
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .unwrap_or_else(|| Utc::now() + chrono::Duration::days(90));
            let registration = json!({"clientId": id, "clientSecret": secret, "expiresAt": rfc3339(expires)});
            let existed = reg_path.exists();
            write_file_atomically(&reg_path, pretty(&registration).as_bytes(), Permissions::Private)?;
            if !existed {
                written.push(reg_path.clone());
            }
            (id, secret)
        }
    };
    let auth = post(
        &http,
        base,
        "/device_authorization",
        json!({"clientId": client_id, "clientSecret": client_secret, "startUrl": args.start_url}),
    )
    .await?
    .map_err(|(e, d)| AccountsError::refused(format!("device authorization refused: {e}: {d}")))?;
    let device_code = text(&auth, "deviceCode")?;
    let user_code = text(&auth, "userCode")?;
    let uri = text(&auth, "verificationUri")?;
    let complete = auth.get("verificationUriComplete").and_then(Value::as_str).map(str::to_owned);
    let expires_in = auth.get("expiresIn").and_then(Value::as_u64).unwrap_or(600);
    // Listen for Ctrl-C before telling the user anything, so no early Ctrl-C is lost.
    let mut interrupt = Interrupt::new()?;
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "To sign in, open {uri}\nand enter the code {user_code}\n(waiting up to {} minutes; Ctrl-C cancels)",
        expires_in.div_ceil(60)
    );
    let _ = out.flush();
    open_browser(complete.as_deref().unwrap_or(&uri));

    let mut poller = Poller::new(auth.get("interval").and_then(Value::as_u64));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(expires_in);
    let poll = async {
        let mut wait = poller.interval();
        loop {
            tokio::time::sleep(wait.max(MIN_POLL_WAIT)).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(AccountsError::refused(
                    "the code expired before the login was approved; run the command again; nothing was added",
                ));
            }
            let body = json!({
                "clientId": client_id, "clientSecret": client_secret,
                "grantType": DEVICE_GRANT, "deviceCode": device_code,
            });
            match post(&http, base, "/token", body).await? {
                Ok(tokens) => return Ok(tokens),
                Err((error, description)) => match poller.on_error(&error, &description) {
                    PollStep::Wait(d) => wait = d,
                    PollStep::Stop(why) => {
                        return Err(AccountsError::refused(format!("{why}; nothing was added")));
                    }
                },
            }
        }
    };
    let tokens = tokio::select! {
        result = poll => result?,
        _ = interrupt.recv() => {
            return Err(AccountsError::refused("login cancelled (Ctrl-C); nothing was added"));
        }
    };
    let expires_in = tokens.get("expiresIn").and_then(Value::as_i64).unwrap_or(3600);
    let file = json!({
        "accessToken": text(&tokens, "accessToken")?,
        "refreshToken": text(&tokens, "refreshToken")?,
        "expiresAt": rfc3339(Utc::now() + chrono::Duration::seconds(expires_in)),
        "clientIdHash": hash,
        "authMethod": "IdC",
        "provider": "BuilderId",
        "region": args.region,
    });
    write_file_atomically(dest, pretty(&file).as_bytes(), Permissions::Private)?;
    written.push(dest.to_path_buf());
    let _ = writeln!(out, "login approved; token saved to {}", dest.display());
    Ok(())
}

/// The registration file name: 40 hex of SHA-256 over the start URL and the OIDC base, so
/// logins against different services never share a client.
fn client_id_hash(start_url: &str, base: &str) -> String {
    let digest = Sha256::digest(json!({"startUrl": start_url, "oidc": base}).to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..40].to_owned()
}

/// A kept registration that is valid for at least another day.
fn reusable_registration(path: &Path) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let expires = DateTime::parse_from_rfc3339(v.get("expiresAt")?.as_str()?).ok()?;
    if expires.with_timezone(&Utc) < Utc::now() + chrono::Duration::days(1) {
        return None;
    }
    Some((v.get("clientId")?.as_str()?.to_owned(), v.get("clientSecret")?.as_str()?.to_owned()))
}

/// POST JSON; `Ok(Err((error, description)))` is an OAuth error answer.
async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> Result<Result<Value, (String, String)>, AccountsError> {
    let url = format!("{base}{path}");
    let unreachable = |e: reqwest::Error| {
        AccountsError::refused(format!(
            "cannot reach {url}: {}",
            crate::providers::codewhisperer::token::describe_transport(&e)
        ))
    };
    let response = http.post(&url).json(&body).send().await.map_err(unreachable)?;
    let status = response.status();
    let text = response.text().await.map_err(unreachable)?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(Ok(value));
    }
    let field =
        |k: &str| value.get(k).and_then(Value::as_str).unwrap_or("").chars().take(200).collect::<String>();
    let error = match field("error") {
        e if e.is_empty() => format!("HTTP {}", status.as_u16()),
        e => e,
    };
    Ok(Err((error, field("error_description"))))
}

fn text(v: &Value, key: &str) -> Result<String, AccountsError> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| AccountsError::refused(format!("the OIDC service's answer has no `{key}`")))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// Open `url` in a browser when there is one to open: stdout a terminal, and `$BROWSER` set or
/// a graphical session (`DISPLAY` / `WAYLAND_DISPLAY` on Linux; always on macOS). Never waits
/// for it, never fails the login.
fn open_browser(url: &str) {
    if !std::io::stdout().is_terminal() {
        return;
    }
    let browser = std::env::var("BROWSER").ok().filter(|b| !b.trim().is_empty());
    let command = match browser {
        Some(b) => b,
        None if cfg!(target_os = "macos") => "open".into(),
        None if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some() => {
            "xdg-open".into()
        }
        None => return,
    };
    let _ = std::process::Command::new(command)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_schedule_follows_the_answers() {
        let mut p = Poller::new(Some(1));
        assert_eq!(p.on_error("authorization_pending", ""), PollStep::Wait(Duration::from_secs(1)));
        assert_eq!(p.on_error("slow_down", ""), PollStep::Wait(Duration::from_secs(6)));
        assert_eq!(p.on_error("authorization_pending", ""), PollStep::Wait(Duration::from_secs(6)));
        assert_eq!(p.on_error("slow_down", ""), PollStep::Wait(Duration::from_secs(11)));
        assert!(matches!(p.on_error("expired_token", ""), PollStep::Stop(s) if s.contains("expired")));
        assert!(matches!(p.on_error("access_denied", ""), PollStep::Stop(s) if s.contains("denied")));
        assert!(
            matches!(p.on_error("invalid_client", "Client is expired"), PollStep::Stop(s) if s.contains("Client is expired"))
        );
        assert_eq!(Poller::new(None).interval(), Duration::from_secs(5));
    }

    #[test]
    fn registration_names_differ_per_service() {
        let a = client_id_hash(BUILDER_ID_START_URL, "https://oidc.us-east-1.amazonaws.com");
        let b = client_id_hash(BUILDER_ID_START_URL, "http://127.0.0.1:9");
        assert_eq!(a.len(), 40);
        assert_ne!(a, b);
    }
}
