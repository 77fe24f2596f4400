//! Simulated upstreams plus a ccr config pointing at them: the one way the demo, the integration
//! tests and the benchmarks build "some Kiro accounts and a config for them".
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use ccr::demo::pool::{Account, SimPool};
//! use ccr::demo::upstream::SimOptions;
//! use serde_json::json;
//!
//! let pool = SimPool::builder()
//!     .provider_defaults(json!({"firstByteTimeout": 5000, "idleTimeout": 5000}))
//!     .account("a", Account::new())
//!     .account("b", Account::new().sim(SimOptions::named("slow-b")).provider(json!({"weight": 3})))
//!     .rule("default", json!({"providers": ["a", "b"], "loadBalancing": {"strategy": "single", "fallback": "b"}}))
//!     .start()
//!     .await?;
//! // pool.upstreams[i] serves account i; pool.config_path is the written config file.
//! # Ok(()) }
//! ```
//!
//! Each account gets a [`SimUpstream`] on `127.0.0.1:0`, a login issued by that upstream written
//! as a Kiro token file in a fresh temp dir, and a provider entry (`type` `aws`, `authMethod`
//! `kiro-token`, `tokenPath`, `endpoint` and `authEndpoint` at the upstream) in the config. The
//! config starts empty ([`SimPool::builder`]), from the seed config ([`SimPool::seed`]: accounts
//! named like its providers fill them in) or from any JSON ([`SimPool::with_config`]); without a
//! rule, an empty config gets a `default` rule over every account in order. The config is
//! written to the temp dir, which lives as long as the [`SimPool`].

use super::upstream::{SimOptions, SimUpstream, write_social_token_file};
use serde_json::{Map, Value, json};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Lifetime of the login written into each account's token file unless [`Account::token_ttl`]
/// says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// One simulated Kiro account: its upstream's options, its provider entry, its token file.
#[derive(Debug, Clone)]
pub struct Account {
    sim: Option<SimOptions>,
    provider: Value,
    token_ttl: Duration,
    token_file: Option<String>,
}

impl Default for Account {
    fn default() -> Self {
        Account::new()
    }
}

impl Account {
    /// An upstream with default options named after the account, a one-hour login in
    /// `<id>.json`, and the provider entry's required fields only.
    pub fn new() -> Self {
        Account { sim: None, provider: json!({}), token_ttl: DEFAULT_TOKEN_TTL, token_file: None }
    }

    /// The upstream's options (its `name` included).
    pub fn sim(mut self, options: SimOptions) -> Self {
        self.sim = Some(options);
        self
    }

    /// Fields of the provider entry, merged (deeply) over the pool's provider defaults.
    pub fn provider(mut self, fields: Value) -> Self {
        merge(&mut self.provider, fields);
        self
    }

    /// Lifetime of the login written into the token file.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// File name of the token file in the pool's dir (default `<id>.json`).
    pub fn token_file(mut self, name: impl Into<String>) -> Self {
        self.token_file = Some(name.into());
        self
    }
}

/// Where the config starts from.
enum Base {
    Empty,
    Value(Value),
    /// Built from the pool's dir (for configs that name files in it).
    InDir(Box<dyn FnOnce(&Path) -> Value + Send>),
}

/// Builds a [`SimPool`]; see the module docs.
pub struct SimPoolBuilder {
    base: Base,
    accounts: Vec<(String, Account)>,
    provider_defaults: Value,
    rules: Vec<(String, Value)>,
    overlays: Vec<Value>,
    temp_prefix: String,
    config_file: String,
}

/// Started upstreams, their token files and the config pointing at them.
#[derive(Debug)]
pub struct SimPool {
    /// One per account, in the order the accounts were added.
    pub upstreams: Vec<Arc<SimUpstream>>,
    /// The config as written.
    pub config: Value,
    /// The config file's text (pretty JSON).
    pub config_text: String,
    /// The config file, in [`SimPool::dir`].
    pub config_path: PathBuf,
    ids: Vec<String>,
    token_paths: Vec<PathBuf>,
    dir: tempfile::TempDir,
}

impl SimPool {
    /// A pool whose config starts empty.
    pub fn builder() -> SimPoolBuilder {
        SimPoolBuilder::new(Base::Empty)
    }

    /// A pool whose config starts as the seed config ([`crate::config::DEFAULT_CONFIG`]): name
    /// accounts after its providers (`codewhisperer-primary`, `codewhisperer-secondary`).
    pub fn seed() -> SimPoolBuilder {
        let seed = serde_json::from_str(crate::config::DEFAULT_CONFIG).unwrap_or_else(|_| json!({}));
        SimPoolBuilder::new(Base::Value(seed))
    }

    /// A pool whose config starts as `config`.
    pub fn with_config(config: Value) -> SimPoolBuilder {
        SimPoolBuilder::new(Base::Value(config))
    }

    /// A pool whose config starts as what `build` returns for the pool's dir (for configs that
    /// name files there).
    pub fn with_config_in(build: impl FnOnce(&Path) -> Value + Send + 'static) -> SimPoolBuilder {
        SimPoolBuilder::new(Base::InDir(Box::new(build)))
    }

    /// The temp dir holding the token files and the config (removed when the pool is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The account ids, in order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|i| i == id)
    }

    /// The upstream of account `id`.
    pub fn upstream(&self, id: &str) -> Option<&Arc<SimUpstream>> {
        self.index(id).map(|i| &self.upstreams[i])
    }

    /// The token file of account `id`.
    pub fn token_path(&self, id: &str) -> Option<&Path> {
        self.index(id).map(|i| self.token_paths[i].as_path())
    }

    /// The config, parsed and validated as ccr does.
    pub fn parsed_config(&self) -> Result<crate::config::Config, crate::config::ParseError> {
        crate::config::parse_config(&self.config_text)
    }

    /// Shut every upstream down and wait for them.
    pub async fn shutdown(&self) {
        for up in &self.upstreams {
            up.shutdown().await;
        }
    }
}

impl SimPoolBuilder {
    fn new(base: Base) -> Self {
        SimPoolBuilder {
            base,
            accounts: Vec::new(),
            provider_defaults: json!({}),
            rules: Vec::new(),
            overlays: Vec::new(),
            temp_prefix: ".tmp".to_owned(),
            config_file: "config.json".to_owned(),
        }
    }

    /// Add an account (an upstream, a token file and the provider entry `id`).
    pub fn account(mut self, id: impl Into<String>, account: Account) -> Self {
        self.accounts.push((id.into(), account));
        self
    }

    /// Fields merged (deeply) into every account's provider entry, before the account's own.
    pub fn provider_defaults(mut self, fields: Value) -> Self {
        merge(&mut self.provider_defaults, fields);
        self
    }

    /// Set `routing.rules.<name>` (replacing a rule of that name).
    pub fn rule(mut self, name: impl Into<String>, rule: Value) -> Self {
        self.rules.push((name.into(), rule));
        self
    }

    /// JSON merged (deeply) over the finished config: top-level fields, a threshold, a timer.
    pub fn merge(mut self, overlay: Value) -> Self {
        self.overlays.push(overlay);
        self
    }

    /// Prefix of the temp dir's name.
    pub fn temp_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.temp_prefix = prefix.into();
        self
    }

    /// File name of the config in the temp dir (default `config.json`).
    pub fn config_file(mut self, name: impl Into<String>) -> Self {
        self.config_file = name.into();
        self
    }

    /// Start the upstreams, write their token files and the config.
    pub async fn start(self) -> io::Result<SimPool> {
        let SimPoolBuilder { base, accounts, provider_defaults, rules, overlays, temp_prefix, config_file } =
            self;
        let dir = tempfile::Builder::new().prefix(&temp_prefix).tempdir()?;
        let empty = matches!(base, Base::Empty);
        let mut config = match base {
            Base::Empty => json!({}),
            Base::Value(v) => v,
            Base::InDir(build) => build(dir.path()),
        };
        if !config.is_object() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the base config is not a JSON object"));
        }

        let mut upstreams = Vec::with_capacity(accounts.len());
        let mut ids = Vec::with_capacity(accounts.len());
        let mut token_paths = Vec::with_capacity(accounts.len());
        for (id, account) in &accounts {
            let options = account.sim.clone().unwrap_or_else(|| SimOptions::named(id.as_str()));
            upstreams.push(Arc::new(SimUpstream::start(options).await?));
        }
        for ((id, account), up) in accounts.into_iter().zip(&upstreams) {
            let token = dir.path().join(account.token_file.unwrap_or_else(|| format!("{id}.json")));
            write_social_token_file(&token, &up.issue_credentials(account.token_ttl))?;
            let entry = object_at(&mut config, &["providers", &id]);
            entry.entry("type").or_insert_with(|| json!("aws"));
            entry.entry("authMethod").or_insert_with(|| json!("kiro-token"));
            entry.insert("tokenPath".to_owned(), json!(token.to_string_lossy()));
            entry.insert("endpoint".to_owned(), json!(up.base_url()));
            entry.insert("authEndpoint".to_owned(), json!(up.base_url()));
            let entry = &mut config["providers"][&id];
            merge(entry, provider_defaults.clone());
            merge(entry, account.provider);
            ids.push(id);
            token_paths.push(token);
        }

        if rules.is_empty() && empty {
            object_at(&mut config, &["routing", "rules"])
                .insert("default".to_owned(), json!({"providers": ids}));
        }
        for (name, rule) in rules {
            object_at(&mut config, &["routing", "rules"]).insert(name, rule);
        }
        for overlay in overlays {
            merge(&mut config, overlay);
        }

        let config_text = serde_json::to_string_pretty(&config).map_err(io::Error::other)?;
        let config_path = dir.path().join(config_file);
        std::fs::write(&config_path, &config_text)?;
        Ok(SimPool { upstreams, config, config_text, config_path, ids, token_paths, dir })
    }
}

/// The object at `path` under `root`, created (replacing a non-object) as needed.
fn object_at<'v>(root: &'v mut Value, path: &[&str]) -> &'v mut Map<String, Value> {
    let mut at = root;
    for key in path {
        if !at.is_object() {
            *at = json!({});
        }
        at = at
            .as_object_mut()
            .map(|m| m.entry(*key).or_insert_with(|| json!({})))
            .expect("made an object above");
    }
    if !at.is_object() {
        *at = json!({});
    }
    at.as_object_mut().expect("made an object above")
}

/// Merge `overlay` into `target`: objects field by field (recursively), anything else replaced.
fn merge(target: &mut Value, overlay: Value) {
    match (target, overlay) {
        (Value::Object(t), Value::Object(o)) => {
            for (key, value) in o {
                match t.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        t.insert(key, value);
                    }
                }
            }
        }
        (t, o) => *t = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_deep_for_objects_and_replaces_the_rest() {
        let mut a = json!({"x": {"y": 1, "z": 2}, "list": [1, 2], "keep": true});
        merge(&mut a, json!({"x": {"z": 3, "w": 4}, "list": [9], "new": "n"}));
        assert_eq!(a, json!({"x": {"y": 1, "z": 3, "w": 4}, "list": [9], "keep": true, "new": "n"}));
    }

    #[tokio::test]
    async fn an_empty_pool_config_points_each_account_at_its_upstream() {
        let pool = SimPool::builder()
            .provider_defaults(json!({"firstByteTimeout": 5000}))
            .account("a", Account::new())
            .account("b", Account::new().provider(json!({"firstByteTimeout": 7000, "weight": 2})))
            .start()
            .await
            .expect("pool starts");
        let c = &pool.config;
        assert_eq!(c["routing"]["rules"], json!({"default": {"providers": ["a", "b"]}}));
        for (i, id) in ["a", "b"].into_iter().enumerate() {
            let p = &c["providers"][id];
            let up = &pool.upstreams[i];
            assert_eq!(up.name(), id, "the upstream is named after its account");
            assert_eq!(p["type"], "aws");
            assert_eq!(p["authMethod"], "kiro-token");
            assert_eq!(p["endpoint"], json!(up.base_url()));
            assert_eq!(p["authEndpoint"], json!(up.base_url()));
            let token = pool.token_path(id).expect("a token file");
            assert_eq!(p["tokenPath"], json!(token.to_string_lossy()));
            assert_eq!(token, pool.dir().join(format!("{id}.json")));
            let written: Value = serde_json::from_str(&std::fs::read_to_string(token).unwrap()).unwrap();
            let access = written["accessToken"].as_str().expect("an access token");
            assert!(up.is_access_token_valid(access), "the token file holds a login its upstream accepts");
        }
        assert_eq!(c["providers"]["a"]["firstByteTimeout"], 5000);
        assert_eq!(c["providers"]["b"]["firstByteTimeout"], 7000);
        assert_eq!(c["providers"]["b"]["weight"], 2);
        assert_eq!(std::fs::read_to_string(&pool.config_path).unwrap(), pool.config_text);
        assert_eq!(pool.config_path, pool.dir().join("config.json"));
        pool.parsed_config().expect("a valid config");
        pool.shutdown().await;
    }

    #[tokio::test]
    async fn a_seed_pool_fills_in_the_seed_providers_and_keeps_the_rest() {
        let pool = SimPool::seed()
            .account("codewhisperer-primary", Account::new().token_file("kiro-auth-token-primary.json"))
            .account("codewhisperer-secondary", Account::new())
            .rule("background", json!({"providers": ["codewhisperer-primary"]}))
            .merge(json!({"name": "seeded", "routing": {"longContextThreshold": 2000}}))
            .config_file("demo-config.json")
            .start()
            .await
            .expect("pool starts");
        let seed: Value = serde_json::from_str(crate::config::DEFAULT_CONFIG).unwrap();
        let c = &pool.config;
        assert_eq!(c["name"], "seeded");
        assert_eq!(c["routing"]["longContextThreshold"], 2000);
        assert_eq!(c["routing"]["rules"]["default"], seed["routing"]["rules"]["default"]);
        assert_eq!(c["routing"]["rules"]["background"], json!({"providers": ["codewhisperer-primary"]}));
        let primary = &c["providers"]["codewhisperer-primary"];
        assert_eq!(primary["circuitBreaker"], seed["providers"]["codewhisperer-primary"]["circuitBreaker"]);
        assert_eq!(primary["endpoint"], json!(pool.upstreams[0].base_url()));
        assert_eq!(
            pool.token_path("codewhisperer-primary"),
            Some(pool.dir().join("kiro-auth-token-primary.json").as_path())
        );
        assert_eq!(pool.config_path.file_name().and_then(|n| n.to_str()), Some("demo-config.json"));
        pool.parsed_config().expect("a valid config");
        pool.shutdown().await;
    }

    #[tokio::test]
    async fn a_config_built_in_the_dir_names_files_there() {
        let pool = SimPool::with_config_in(|dir| json!({"note": dir.join("x.json").to_string_lossy()}))
            .start()
            .await
            .expect("pool starts");
        assert_eq!(pool.config["note"], json!(pool.dir().join("x.json").to_string_lossy()));
        assert!(pool.upstreams.is_empty());
    }
}
