//! The `ccr keys` command line (clap definitions; the commands are in [`crate::keys_cli`]).

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a key for a developer, print it once, store only its hash in server.keys.
    Add(AddArgs),
    /// Each key's limits, and its usage this month from the running instance when it answers.
    List(ListArgs),
    /// Take a developer's key out of server.keys (a running ccr refuses it after the reload).
    Remove(RemoveArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ConfigFlag {
    /// Config file to edit. Default: $CCR_CONFIG, else the user config.
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct AddArgs {
    /// Who the key is for (letters, digits, `-`, `_`, `.`, `@`): shown in logs, metrics and views.
    pub name: String,
    /// Credits the key may spend per calendar month (UTC).
    #[arg(long, value_name = "N")]
    pub monthly_credits: Option<f64>,
    /// Requests the key may start per minute.
    #[arg(long, value_name = "N")]
    pub rpm: Option<i64>,
    /// Requests of the key in flight at once.
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<i64>,
    /// A model the key may use (repeat for several; `claude-haiku-*` for a family). Default: any.
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    #[command(flatten)]
    pub config: ConfigFlag,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Print the JSON (`/admin/keys` when the instance answers, else the config's keys).
    #[arg(long)]
    pub json: bool,
    /// Base URL of the running instance. Default: the address in the config.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    #[command(flatten)]
    pub config: ConfigFlag,
}

#[derive(Debug, Clone, Args)]
pub struct RemoveArgs {
    /// The key's name.
    pub name: String,
    #[command(flatten)]
    pub config: ConfigFlag,
}
