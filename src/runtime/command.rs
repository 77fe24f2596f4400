//! The one command path into a running instance, shared by the admin API and the dashboard.
//!
//! A [`Command`] is a balancer command (weight, drain, breaker reset, check now) or an
//! instance-level one (reload the config, save the weights in force). [`Runtime::execute`]
//! carries it out and answers with an [`Outcome`] (a line for people) or a typed
//! [`CommandError`]; the HTTP status of each error is decided once, by the admin API.

use super::{ReloadError, Runtime, SaveError};
use crate::balancer;
use std::sync::Arc;

/// What the operator asks of a running instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// An operator command for the balancer.
    Balancer(balancer::Command),
    /// Re-read the config file.
    Reload,
    /// Write the weights in force into the config file (and reload it).
    SaveWeights,
}

/// A command carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// What changed, in words (`"a: weight 1 -> 5 (all rules)"`).
    pub message: String,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// The balancer refused it (unknown provider or rule, no health check…).
    #[error(transparent)]
    Balancer(#[from] balancer::CommandError),
    /// The config file was not accepted; the previous config stays live.
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// The weights were not written into the config file.
    #[error(transparent)]
    Save(#[from] SaveError),
    /// The worker doing the file work ended without an answer (it panicked or the runtime is
    /// shutting down).
    #[error("{what} did not finish: {reason}")]
    Interrupted { what: &'static str, reason: String },
}

impl Runtime {
    /// Carry out one command. Reload and save do blocking file I/O on tokio's blocking pool.
    pub(crate) async fn execute(self: &Arc<Self>, command: Command) -> Result<Outcome, CommandError> {
        let message = match command {
            Command::Balancer(cmd) => self.balancer.apply(cmd)?,
            Command::Reload => self.blocking("reload", |rt| rt.reload().map_err(CommandError::from)).await?,
            Command::SaveWeights => {
                self.blocking("save weights", |rt| rt.save_weights().map_err(CommandError::from)).await?
            }
        };
        Ok(Outcome { message })
    }

    async fn blocking(
        self: &Arc<Self>,
        what: &'static str,
        work: fn(&Runtime) -> Result<String, CommandError>,
    ) -> Result<String, CommandError> {
        let rt = self.clone();
        tokio::task::spawn_blocking(move || work(&rt))
            .await
            .unwrap_or_else(|e| Err(CommandError::Interrupted { what, reason: e.to_string() }))
    }
}
