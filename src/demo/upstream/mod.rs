//! A simulated Kiro / CodeWhisperer upstream: a real HTTP server on `127.0.0.1` that speaks the
//! real protocol (REST-JSON requests, AWS event-stream responses, the token refresh endpoints),
//! used by `ccr demo`, the integration tests and the benchmarks.
//!
//! It is deliberately not a mock object: clients reach it over TCP exactly as they reach
//! `q.us-east-1.amazonaws.com`, so everything between the socket and the Anthropic client (body
//! conversion, framing, retries, failover, token refresh) runs for real.
//!
//! # Endpoints
//!
//! | path | does |
//! |---|---|
//! | `POST /generateAssistantResponse` | the chat call (REST-JSON): bearer check, [`check_kiro_body`], model check, size check, then a streamed `application/vnd.amazon.eventstream` answer |
//! | `POST /` with `x-amz-target: AmazonCodeWhispererStreamingService.GenerateAssistantResponse` | the same (awsJson flavour); another target → 400 `UnknownOperationException` |
//! | `POST /refreshToken` | social refresh: `{"refreshToken"}` → `{"accessToken","refreshToken","profileArn","expiresIn"}` |
//! | `POST /token` | IdC refresh: `{"clientId","clientSecret","refreshToken","grantType":"refresh_token"}` → `{"accessToken","refreshToken","expiresIn","tokenType":"Bearer"}` |
//! | `GET /getUsageLimits` | bearer required; the protocol notes' §7.1 JSON, usage = streams this sim served |
//! | `GET /ListAvailableModels` | bearer required; the dotted model ids of the sim's [`SimTier`] (free: no Opus) |
//! | `POST /mcp` | bearer required; JSON-RPC `tools/call web_search` with canned results (see `mcp.rs`) |
//! | `GET /health` | `200 {"status":"ok"}`, no auth |
//! | `POST /client/register`, `POST /device_authorization`, `POST /token` (device-code grant), `GET /device` | the SSO-OIDC Builder ID login (`oidc.rs`) |
//!
//! A refresh revokes every access token issued before it for the same login; the old refresh
//! token stays usable (a client can lose a write-back race), and a new one is returned.
//!
//! # Scenarios
//!
//! The answer is chosen by the first marker found in the current user message content, else by
//! the presence of `toolResults` (the answer then acknowledges them, so a tool loop ends), else by
//! the default [`Scenario`] knob. Markers: `[sim:text]`, `[sim:repeat]`, `[sim:tool]`,
//! `[sim:two-tools]`, `[sim:text-after-tool]`, `[sim:object-input]`, `[sim:thinking]`,
//! `[sim:split-utf8]`, `[sim:exception]`, `[sim:bracket]`, `[sim:long]`, `[sim:long:N]`. When the
//! prompt asked for thinking (`<thinking_mode>enabled` or `<thinking_mode>adaptive` in a user
//! message, the way proxies inject it), every answer starts with a `<thinking>…</thinking>\n\n`
//! block whose tags are split across frames. Every successful stream ends with `meteringEvent`
//! then `contextUsageEvent` (then `metadataEvent` when that knob is on), except the exception
//! scenario, which ends with the exception frame.
//!
//! # Faults
//!
//! Knobs are shared and adjustable at run time from any task (`&self` methods). Which injected
//! [`ErrorKind`]s apply where (a kind that does not apply to an endpoint leaves it answering
//! normally):
//!
//! | kind | generate | getUsageLimits, ListAvailableModels, mcp | health | refresh endpoints |
//! |---|---|---|---|---|
//! | `Status500`, `Throttle429`, `Hang` | yes | yes | yes | no |
//! | `Forbidden403` | yes | yes | no (no auth there) | no |
//! | `Quota402`, `Capacity400`, `CutStream`, `CorruptFrame` | yes | no | no | no |
//!
//! The refresh endpoints stand for other services (the Kiro auth host, AWS SSO-OIDC), so the Q
//! service's faults do not reach them; they have their own `set_refresh_fails` knob. Scripted
//! failures ([`SimUpstream::fail_next`]) are consumed only by generate requests that passed the
//! bearer check, so health probes cannot steal them. Latency and `down` apply to every endpoint.
//! Down means the listener is closed (connections refused) and every open connection, idle or
//! mid-stream, is reset; up rebinds the same port.
//!
//! # Layout
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | this overview, the public constants, and `router`: every endpoint's route |
//! | `options.rs` | [`SimOptions`], [`ErrorKind`], [`Scenario`], [`Endpoint`] |
//! | `state.rs` | the state shared by the server and the handle: knobs, power, faults, counters, the checks every handler shares |
//! | `auth.rs` | the token store and the refresh endpoints |
//! | `chat.rs` | the chat call: checks, then the streamed answer |
//! | `scripted.rs` | the frames of each scenario, and the stream faults |
//! | `guard.rs` | the common start of the small JSON endpoints; `/health`; the 404 |
//! | `usage.rs`, `models.rs` | `getUsageLimits`; the known models and `ListAvailableModels` |
//! | `mcp.rs`, `websearch_model.rs` | `/mcp` (web search); how the simulated model uses a search tool |
//! | `errors.rs` | AWS and OAuth error answers |
//! | `listener.rs` | the listener and connections that can be cut (down/up) |
//! | `handle.rs` | [`SimUpstream`]: start, knobs, power, logins, counters |
//! | `token_files.rs` | Kiro IDE token files for issued logins |
//! | `oidc.rs` | the SSO-OIDC device-code login: client registration, device authorization, the device-code grant of `/token`, the approval page |
//!
//! A new endpoint: its handler in a file of its own (named by what it does; start it with
//! `guard::guarded` when it sits behind the Q service's auth and faults), one line in
//! `router`, a variant of [`Endpoint`] (with its counter in `state.rs` and [`SimStats`]), its
//! row in [`ErrorKind::applies_to`] and in the tables above.

mod auth;
mod chat;
mod errors;
mod guard;
mod handle;
mod listener;
mod mcp;
mod models;
mod oidc;
mod options;
mod scripted;
mod state;
mod token_files;
mod usage;
mod websearch_model;

#[cfg(test)]
mod tests;

pub use auth::{SimCredentials, SimIdcCredentials};
pub use handle::SimUpstream;
pub use mcp::{McpFailure, RESULTS_PER_QUERY, canned_results};
pub use models::KNOWN_MODEL_IDS;
pub use oidc::{DEVICE_CODE_GRANT, DeviceFlow, OidcStats};
pub use options::{Endpoint, ErrorKind, Scenario, SimOptions, SimTier};
pub use state::{RecordedRequest, SimStats};
pub use token_files::{write_idc_token_file, write_social_token_file};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use state::Shared;
use std::sync::Arc;

/// Default for [`SimOptions::max_body_bytes`]. The real limit is not documented (one gateway saw
/// "cryptic 400s" above ~615 KB); the sim is generous so that demo traffic modelled on Claude
/// Code (0.6–1.4 MB bodies) passes, and tests lower it to exercise the error.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The `x-amz-target` of the chat call in the awsJson flavour (`POST /`).
pub const GENERATE_TARGET: &str = "AmazonCodeWhispererStreamingService.GenerateAssistantResponse";

/// Text of the bearer-invalid error; clients match on it to decide to refresh.
pub const BEARER_INVALID_MESSAGE: &str = "The bearer token included in the request is invalid.";

/// Text of the generic validation error.
pub const MALFORMED_MESSAGE: &str = "Improperly formed request.";

/// Every route of the simulated service: the one place an endpoint is added.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/generateAssistantResponse", post(chat::generate_rest))
        .route("/", post(chat::generate_target))
        .route("/refreshToken", post(auth::refresh_social))
        .route("/token", post(auth::refresh_idc))
        .route("/getUsageLimits", get(usage::usage_limits))
        .route("/ListAvailableModels", get(models::list_models))
        .route("/health", get(guard::health))
        .route("/mcp", post(mcp::handle))
        .merge(oidc::routes())
        .fallback(guard::not_found)
        // The sim applies its own size rule (`max_body_bytes`, answered like Kiro does).
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}
