//! ccr: an Anthropic-compatible proxy and load balancer over Kiro / CodeWhisperer accounts.
//!
//! The crate is a library so that the integration tests, benchmarks and fuzz targets reach the
//! same code the `ccr` binary runs. Module map (one concern each):
//!
//! - [`config`]: the JSON config schema, validation with JSON-path errors, lookup and hot reload.
//! - [`anthropic`]: Messages API request types, Anthropic error bodies, the SSE writer.
//! - [`classify`]: request → routing category.
//! - [`balancer`]: strategies, peak-EWMA, circuit breakers, health loop, commands, snapshot.
//! - [`providers`]: the CodeWhisperer client (tokens, conversion, event-stream decoding).
//! - [`snapshot`]: the operator's view of everything, a pure function of the instance's state.
//! - [`runtime`]: the running instance: live config and clients, balancer, reload, save, the
//!   one command path, the snapshot publisher, the background tasks.
//! - [`server`]: the axum router: `/v1/messages`, monitoring and admin endpoints.
//! - [`status`]: the headless status table (`--show-lb-status`, `ccr status`).
//! - [`app`]: the glue on top: an instance with its server on a socket; the dashboard wired to it.
//! - [`tui`]: the ratatui dashboard.
//! - [`atomic_file`]: replacing a file in one step (token write-back, saved weights).
//! - [`fsio`]: reading the config and token files safely (regular files only, size caps).
//! - [`signals`]: SIGINT / SIGTERM as one graceful stop; a second one forces the exit.
//! - [`demo`]: simulated CodeWhisperer upstreams and a traffic generator.
//! - [`state`]: where the pool's shared state lives: memory, or Redis for several instances.
//! - [`accounts`]: `ccr accounts import|login|list|remove` (token files and config edits).
//! - [`keys`]: developers' keys: authentication, credit budgets, rate and concurrency limits,
//!   usage by developer (`server.keys`).
//! - [`keys_cli`]: `ccr keys add|list|remove`.
//! - [`integration`]: Claude Code integration: `ccr code`, `ccr stop`, `ccr statusline`.
//! - [`memory`]: giving memory back to the OS after a burst (the allocator's background purge).

pub mod accounts;
pub mod anthropic;
#[warn(unreachable_pub)]
pub mod app;
pub mod atomic_file;
pub mod balancer;
pub(crate) mod buffers;
pub mod classify;
pub mod cli;
pub mod config;
pub mod demo;
pub mod firstrun;
pub mod fsio;
pub mod integration;
pub mod keys;
pub mod keys_cli;
pub mod memory;
pub mod providers;
#[warn(unreachable_pub)]
pub mod runtime;
#[warn(unreachable_pub)]
pub mod server;
pub mod signals;
#[warn(unreachable_pub)]
pub mod snapshot;
pub mod state;
#[warn(unreachable_pub)]
pub mod status;
#[warn(unreachable_pub)]
pub mod tui;
pub mod usage;
