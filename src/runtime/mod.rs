//! The running instance: the current config and provider clients (swapped whole on reload) next
//! to the balancer (which keeps its state across reloads), and everything that acts on them as a
//! whole. Its methods all live in this module:
//!
//! - [`reload`](Runtime::reload) and [`apply_config`](Runtime::apply_config) (`reload.rs`): swap
//!   in a new config; a bad file keeps the old one.
//! - [`save_weights`](Runtime::save_weights) (`save.rs`): write the weights in force into the file.
//! - [`execute`](Runtime::execute) (`command.rs`): the one command path, shared by the admin API
//!   and the dashboard, with typed errors ([`CommandError`]).
//! - the snapshot publisher (`publisher.rs`): builds the pure [`crate::snapshot`] view of the
//!   instance and publishes it on a watch channel.
//! - the background tasks (`background.rs`): health loop, snapshot publisher, config watcher.
//!
//! The HTTP server (`server`) and the application glue (`app`) sit on top of it; this
//! module knows neither.

mod background;
mod command;
mod drain;
mod publisher;
mod reload;
mod save;
mod spec;
mod usage_poller;

pub(crate) use background::Background;
pub(crate) use command::{Command, CommandError};
pub(crate) use drain::Drain;
pub(crate) use reload::ReloadError;
pub(crate) use save::SaveError;
pub use spec::balancer_spec;

use crate::balancer::Balancer;
use crate::classify::Thresholds;
use crate::config::{Config, ConfigSource};
use crate::providers::codewhisperer::client::{CodeWhispererClient, HttpClients};
use crate::snapshot::ReloadInfo;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// One consistent view of the config and the clients built from it.
pub struct Live {
    pub config: Arc<Config>,
    pub clients: HashMap<String, Arc<CodeWhispererClient>>,
    pub thresholds: Thresholds,
}

/// Everything a running instance shares between the proxy, the monitors and the dashboard.
pub struct Runtime {
    live: RwLock<Arc<Live>>,
    pub balancer: Arc<Balancer>,
    http: HttpClients,
    source: ConfigSource,
    started_at: DateTime<Utc>,
    listen: Mutex<Option<SocketAddr>>,
    reload: Mutex<ReloadInfo>,
    /// Client requests received on `/v1/messages` (for requests/s).
    requests_total: AtomicU64,
    /// Serialises reloads (file watcher, admin API and dashboard may ask at once).
    reload_lock: Mutex<()>,
    /// The published operator snapshot and what building it needs.
    publisher: publisher::Publisher,
    /// Ends in-flight streams when the shutdown deadline passes.
    pub drain: Drain,
    /// The accounts' models for `/v1/models` (cached `ListAvailableModels`).
    pub(crate) models: crate::providers::codewhisperer::model_list::ModelCatalog,
    /// Developers' keys, their counters and usage (`server.keys`).
    pub keys: crate::keys::Keys,
    /// Where the pool's shared state lives (memory, or Redis): chosen at start.
    pub state: Arc<crate::state::SharedState>,
}

impl Runtime {
    pub fn new(config: Config, source: ConfigSource) -> Arc<Runtime> {
        let http = HttpClients::default();
        let balancer = Balancer::new(balancer_spec(&config));
        let keys = crate::keys::Keys::new(&config);
        let state = crate::state::SharedState::from_settings(&config.state);
        if let Some(link) = state.redis() {
            keys.set_counters(Arc::new(crate::keys::RedisCounters::new(link.clone())));
        }
        let models = crate::providers::codewhisperer::model_list::ModelCatalog::default();
        if let Some(link) = state.redis() {
            models.share_with(Arc::new(crate::state::models::RedisModels::new(link.clone())));
        }
        let live = build_live(config, &http, None);
        state.attach_balancer(&balancer);
        state.attach_clients(&live.clients);
        Arc::new(Runtime {
            live: RwLock::new(Arc::new(live)),
            balancer,
            http,
            source,
            started_at: Utc::now(),
            listen: Mutex::new(None),
            reload: Mutex::new(ReloadInfo { at: Utc::now(), ok: true, message: "loaded".into() }),
            requests_total: AtomicU64::new(0),
            reload_lock: Mutex::new(()),
            publisher: publisher::Publisher::default(),
            drain: Drain::default(),
            models,
            keys,
            state,
        })
    }

    /// The current config and clients (cheap: one `Arc` clone).
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn config(&self) -> Arc<Config> {
        self.live().config.clone()
    }

    pub(crate) fn set_listen_addr(&self, addr: SocketAddr) {
        *self.listen.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
    }

    pub(crate) fn listen_addr(&self) -> Option<SocketAddr> {
        *self.listen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The outcome of the last config load or reload.
    pub(crate) fn reload_status(&self) -> ReloadInfo {
        self.reload.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn count_request(&self) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
    }
}

fn build_live(config: Config, http: &HttpClients, old: Option<&Live>) -> Live {
    let clients = config
        .providers
        .iter()
        .map(|(id, p)| {
            let reused = old.and_then(|old| {
                let same = old.config.providers.get(id).is_some_and(|before| before == p);
                same.then(|| old.clients.get(id).cloned()).flatten()
            });
            (id.clone(), reused.unwrap_or_else(|| CodeWhispererClient::new(id, p, http)))
        })
        .collect();
    let thresholds = Thresholds::from_config(&config);
    Live { config: Arc::new(config), clients, thresholds }
}
