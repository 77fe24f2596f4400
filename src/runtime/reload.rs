//! Reload: re-read the config file and swap it in whole, keeping the balancer's live state.

use super::{Runtime, balancer_spec, build_live};
use crate::config::{self, Config, ConfigError};
use crate::snapshot::ReloadInfo;
use chrono::Utc;
use std::sync::Arc;

/// Why a reload left the previous config in force.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The file could not be read or does not validate; every problem is listed.
    #[error("config not reloaded, keeping the previous one: {}", .0.problems().join("; "))]
    Rejected(#[source] ConfigError),
}

impl Runtime {
    /// Re-read the config file and swap it in. A bad file keeps the old config; the outcome is
    /// logged, kept in [`reload_status`](Self::reload_status) and signalled to the snapshot
    /// publisher (once per reload, whoever asked: file watcher, admin API, dashboard, save).
    /// Blocking file I/O: call it off the async workers.
    pub(crate) fn reload(&self) -> Result<String, ReloadError> {
        let result = {
            let _one_at_a_time = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
            let result = match config::load(&self.source) {
                Ok((config, _)) => {
                    self.apply_config(config);
                    Ok(format!("reloaded {}", self.source.label()))
                }
                Err(e) => Err(ReloadError::Rejected(e)),
            };
            let info = match &result {
                Ok(m) => {
                    tracing::info!("{m}");
                    ReloadInfo { at: Utc::now(), ok: true, message: m.clone() }
                }
                Err(e) => {
                    tracing::error!("{e}");
                    ReloadInfo { at: Utc::now(), ok: false, message: e.to_string() }
                }
            };
            *self.reload.lock().unwrap_or_else(|e| e.into_inner()) = info;
            result
        };
        self.snapshot_changed();
        result
    }

    /// Swap in a validated config in one step: the balancer keeps the live state of providers
    /// that persist; clients are reused where the provider's settings did not change.
    pub(crate) fn apply_config(&self, config: Config) {
        let old = self.live();
        if !self.state.matches(&config.state) {
            tracing::warn!("`state` changed in the config: the new backend takes effect at the next start");
        }
        self.balancer.reconfigure(balancer_spec(&config));
        self.keys.apply_config(&config);
        let live = build_live(config, &self.http, Some(&old));
        self.state.attach_clients(&live.clients);
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
    }
}
