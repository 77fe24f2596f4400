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
//! - [`server`]: the axum router: `/v1/messages`, monitoring and admin endpoints; the runtime.
//! - [`snapshot`]: the operator's view of everything, published on a watch channel.
//! - [`status`]: the headless status table (`--show-lb-status`, `ccr status`).
//! - [`app`]: assembling a running instance (server, health loop, publisher, watcher).
//! - [`tui`]: the ratatui dashboard.
//! - [`demo`]: simulated CodeWhisperer upstreams and a traffic generator.

pub mod anthropic;
pub mod app;
pub mod balancer;
pub mod classify;
pub mod cli;
pub mod config;
pub mod demo;
pub mod providers;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod tui;
pub mod usage;
