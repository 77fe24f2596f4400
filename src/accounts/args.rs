//! The `ccr accounts` command line.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// One row per account: tier, credits used/limit, reset, token expiry, state. Asks each
    /// account's getUsageLimits itself (refreshing tokens when needed): no instance needed.
    List(ListArgs),
    /// Copy a Kiro token file into ccr's accounts folder, check it upstream, add the account.
    Import(ImportArgs),
    /// Log in a new account with AWS Builder ID (device code), then add it like `import`.
    Login(LoginArgs),
    /// Take an account out of the providers and every rule.
    Remove(RemoveArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ConfigFlag {
    /// Config file to edit. Default: $CCR_CONFIG, else the user config (created when missing).
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub config: ConfigFlag,
    /// Print JSON (one object per account) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where the new account goes in the config.
#[derive(Debug, Clone, Args)]
pub struct Placement {
    /// The account id (`providers.<ID>`; also the token file's name).
    #[arg(long = "name", value_name = "ID")]
    pub name: String,
    /// Rules to add it to (comma-separated). Default: every rule.
    #[arg(long, value_name = "RULE,…", value_delimiter = ',')]
    pub rules: Option<Vec<String>>,
    /// Its weight in rules with a `weights` map (default: the mean of the rule's weights);
    /// the provider's `weight` for rules without one.
    #[arg(long, value_name = "N")]
    pub weight: Option<i64>,
    /// API base URL for this account (private or simulated endpoints).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Auth base URL for this account: social refresh, and the OIDC base for Builder ID login
    /// and IdC refresh.
    #[arg(long, value_name = "URL")]
    pub auth_endpoint: Option<String>,
    /// Do not check the token with a getUsageLimits call.
    #[arg(long)]
    pub no_verify: bool,
    #[command(flatten)]
    pub config: ConfigFlag,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The Kiro token file. Default: the Kiro IDE's ~/.aws/sso/cache/kiro-auth-token.json.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub placement: Placement,
}

#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Log in with AWS Builder ID / IAM Identity Center (the device-code flow). Required: the
    /// only login ccr performs itself (import a Kiro IDE file for Google / GitHub accounts).
    #[arg(long, required = true)]
    pub builder_id: bool,
    /// AWS region of the OIDC service.
    #[arg(long, default_value = "us-east-1", value_name = "R")]
    pub region: String,
    /// The IAM Identity Center start URL (Builder ID: https://view.awsapps.com/start).
    #[arg(long, default_value = crate::accounts::login::BUILDER_ID_START_URL, value_name = "URL")]
    pub start_url: String,
    #[command(flatten)]
    pub placement: Placement,
}

#[derive(Debug, Clone, Args)]
pub struct RemoveArgs {
    /// The account id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Also delete its token file (only when it is in ccr's accounts folder).
    #[arg(long)]
    pub delete_token: bool,
    /// Drop rules that would be left without providers instead of refusing.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub config: ConfigFlag,
}
