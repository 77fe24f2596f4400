//! The admin API (design §9): the balancer's command path over HTTP, plus the runtime-level
//! commands the dashboard shares with it (reload the config, save the weights in force into the
//! config file).
//!
//! | path | does |
//! |---|---|
//! | `POST /admin/providers/{id}/weight` `{"weight": N, "rule": "default"}` | run-time weight (all rules without `rule`) |
//! | `POST /admin/providers/{id}/drain` · `/undrain` | take out of / put back into rotation |
//! | `POST /admin/providers/{id}/breaker/reset` | close the breaker, clear cooldown and quota exclusion |
//! | `POST /admin/providers/{id}/health-check` | run the health check now |
//! | `POST /admin/reload` | re-read the config file (a bad file keeps the old config) |
//! | `POST /admin/weights/save` | write the weights in force into the config file |
//! | `GET /admin/keys` | developers' keys: limits, usage this month, last seen, live requests |
//!
//! Access: with `server.apiKey` set, every call must present it (`x-api-key` or
//! `Authorization: Bearer`, compared in constant time) from anywhere; without a key, only
//! loopback clients may call. Answers are `{"ok": true, "message": …}` or an Anthropic error body.

use super::{key_matches, presented_key};
use crate::anthropic::{ApiError, ErrorKind};
use crate::balancer;
use crate::runtime::{Command, CommandError, ReloadError, Runtime, SaveError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// `POST /admin/...`: the balancer's command path over HTTP.
pub(super) fn router(rt: &Arc<Runtime>) -> Router<Arc<Runtime>> {
    Router::new()
        .route("/admin/providers/{id}/weight", post(set_weight))
        .route("/admin/providers/{id}/drain", post(drain))
        .route("/admin/providers/{id}/undrain", post(undrain))
        .route("/admin/providers/{id}/breaker/reset", post(reset_breaker))
        .route("/admin/providers/{id}/health-check", post(check_now))
        .route("/admin/providers/{id}/usage-check", post(check_usage))
        .route("/admin/reload", post(reload))
        .route("/admin/weights/save", post(save_weights))
        .route("/admin/keys", axum::routing::get(keys_view))
        .route_layer(middleware::from_fn_with_state(rt.clone(), require_admin_access))
}

/// Why an admin call was refused or failed. Each maps to one status and Anthropic error type.
#[derive(Debug, thiserror::Error)]
pub(super) enum AdminError {
    /// `server.apiKey` is set and the request did not present it.
    #[error("invalid or missing API key (x-api-key or Authorization: Bearer)")]
    BadKey,
    /// No key is configured and the client is not on this machine.
    #[error("the admin API answers only loopback clients while server.apiKey is not set (request from {0})")]
    NotLoopback(IpAddr),
    /// The instance refused the command or could not carry it out.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The body of `POST /admin/providers/{id}/weight` is not `{"weight": N[, "rule": …]}`.
    #[error(
        "invalid request body: {0}; expected {{\"weight\": N}} or {{\"weight\": N, \"rule\": \"default\"}}"
    )]
    WeightBody(#[source] serde_json::Error),
}

impl From<balancer::CommandError> for AdminError {
    fn from(e: balancer::CommandError) -> Self {
        AdminError::Command(e.into())
    }
}

impl AdminError {
    /// The one client-visible form of each error.
    pub(super) fn api_error(&self) -> ApiError {
        use balancer::CommandError as Refused;
        let (kind, status) = match self {
            AdminError::BadKey => (ErrorKind::AuthenticationError, StatusCode::UNAUTHORIZED),
            AdminError::NotLoopback(_) => (ErrorKind::PermissionError, StatusCode::FORBIDDEN),
            AdminError::WeightBody(_) => (ErrorKind::InvalidRequestError, StatusCode::BAD_REQUEST),
            AdminError::Command(e) => match e {
                CommandError::Balancer(Refused::UnknownProvider(_) | Refused::UnknownRule(_)) => {
                    (ErrorKind::NotFoundError, StatusCode::NOT_FOUND)
                }
                CommandError::Balancer(Refused::NotInRule { .. }) => {
                    (ErrorKind::InvalidRequestError, StatusCode::BAD_REQUEST)
                }
                CommandError::Balancer(
                    Refused::NoHealthCheck(_) | Refused::NoUsageCheck(_) | Refused::AllZero { .. },
                )
                | CommandError::Save(SaveError::NoFile | SaveError::FileInvalid(_) | SaveError::Edit(_)) => {
                    (ErrorKind::InvalidRequestError, StatusCode::CONFLICT)
                }
                CommandError::Reload(ReloadError::Rejected(_)) => {
                    (ErrorKind::InvalidRequestError, StatusCode::UNPROCESSABLE_ENTITY)
                }
                // The machine failed, not the request: a disk error, a lost worker.
                CommandError::Save(SaveError::Write { .. }) | CommandError::Interrupted { .. } => {
                    (ErrorKind::ApiError, StatusCode::INTERNAL_SERVER_ERROR)
                }
            },
        };
        ApiError::new(kind, self.to_string()).with_status(status)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        self.api_error().into_response()
    }
}

/// The access rule: the key when one is configured, else a loopback client.
pub(super) fn admin_access(
    expected_key: Option<&str>,
    presented: Option<&str>,
    client: IpAddr,
) -> Result<(), AdminError> {
    match expected_key {
        Some(expected) if key_matches(presented, expected) => Ok(()),
        Some(_) => Err(AdminError::BadKey),
        None if client.to_canonical().is_loopback() => Ok(()),
        None => Err(AdminError::NotLoopback(client)),
    }
}

async fn require_admin_access(
    State(rt): State<Arc<Runtime>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let config = rt.config();
    if let Err(e) =
        admin_access(config.server.api_key.as_deref(), presented_key(request.headers()), client.ip())
    {
        tracing::warn!(client = %client, path = %request.uri().path(), "admin call refused: {e}");
        return e.into_response();
    }
    next.run(request).await
}

/// `GET /admin/keys`: every developer key's limits and usage (names and digest prefixes only),
/// with this month's credits read from the counters (pool-wide with a shared backend).
async fn keys_view(State(rt): State<Arc<Runtime>>) -> Response {
    rt.keys.refresh().await;
    axum::Json(rt.keys.view()).into_response()
}

fn done(message: String) -> Response {
    axum::Json(json!({ "ok": true, "message": message })).into_response()
}

/// Carry out a command through the instance's one command path.
async fn run(rt: &Arc<Runtime>, command: Command) -> Result<Response, AdminError> {
    let logged = matches!(command, Command::Balancer(_));
    let outcome = rt.execute(command).await?;
    // Reload and save log their own outcome.
    if logged {
        tracing::info!("admin: {outcome}");
    }
    Ok(done(outcome.message))
}

/// The body of `POST /admin/providers/{id}/weight`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: u32,
    #[serde(default)]
    rule: Option<String>,
}

async fn set_weight(
    State(rt): State<Arc<Runtime>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let body: WeightBody = serde_json::from_slice(&body).map_err(AdminError::WeightBody)?;
    run(
        &rt,
        Command::Balancer(balancer::Command::SetWeight {
            provider: id,
            rule: body.rule,
            weight: body.weight,
        }),
    )
    .await
}

async fn drain(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> Result<Response, AdminError> {
    run(&rt, Command::Balancer(balancer::Command::Drain(id))).await
}

async fn undrain(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> Result<Response, AdminError> {
    run(&rt, Command::Balancer(balancer::Command::Undrain(id))).await
}

async fn reset_breaker(
    State(rt): State<Arc<Runtime>>,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    run(&rt, Command::Balancer(balancer::Command::ResetBreaker(id))).await
}

async fn check_usage(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> Result<Response, AdminError> {
    run(&rt, Command::Balancer(balancer::Command::CheckUsage(id))).await
}

async fn check_now(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> Result<Response, AdminError> {
    run(&rt, Command::Balancer(balancer::Command::CheckNow(id))).await
}

async fn reload(State(rt): State<Arc<Runtime>>) -> Result<Response, AdminError> {
    run(&rt, Command::Reload).await
}

async fn save_weights(State(rt): State<Arc<Runtime>>) -> Result<Response, AdminError> {
    run(&rt, Command::SaveWeights).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn access_rules() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let lan = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20));
        let mapped_lo = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert!(admin_access(None, None, lo).is_ok());
        assert!(admin_access(None, None, IpAddr::V6(Ipv6Addr::LOCALHOST)).is_ok());
        assert!(admin_access(None, None, mapped_lo).is_ok());
        assert!(
            matches!(admin_access(None, Some("anything"), lan), Err(AdminError::NotLoopback(ip)) if ip == lan)
        );
        assert!(admin_access(Some("k"), Some("k"), lan).is_ok());
        assert!(matches!(admin_access(Some("k"), Some("x"), lo), Err(AdminError::BadKey)));
        assert!(matches!(admin_access(Some("k"), None, lo), Err(AdminError::BadKey)));
    }

    #[test]
    fn errors_map_to_statuses() {
        let status = |e: AdminError| e.api_error().status;
        let io = || std::io::Error::other("disk full");
        assert_eq!(status(AdminError::BadKey), StatusCode::UNAUTHORIZED);
        assert_eq!(status(AdminError::NotLoopback(IpAddr::V4(Ipv4Addr::UNSPECIFIED))), StatusCode::FORBIDDEN);
        assert_eq!(status(balancer::CommandError::UnknownProvider("x".into()).into()), StatusCode::NOT_FOUND);
        assert_eq!(
            status(balancer::CommandError::NotInRule { provider: "a".into(), rule: "b".into() }.into()),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(balancer::CommandError::NoHealthCheck("a".into()).into()), StatusCode::CONFLICT);
        assert_eq!(
            status(balancer::CommandError::AllZero { rule: "default".into() }.into()),
            StatusCode::CONFLICT
        );
        let unreadable = || ConfigError::Io { file: "c.json".into(), source: io().into() };
        let reload = CommandError::Reload(ReloadError::Rejected(unreadable()));
        assert_eq!(status(reload.into()), StatusCode::UNPROCESSABLE_ENTITY);
        // The file's or the setup's state: the operator can fix it.
        assert_eq!(status(CommandError::Save(SaveError::NoFile).into()), StatusCode::CONFLICT);
        let invalid = CommandError::Save(SaveError::FileInvalid(unreadable()));
        assert_eq!(status(invalid.into()), StatusCode::CONFLICT);
        // A disk error is the machine's: 500, with the path and the cause in the message.
        let write = AdminError::from(CommandError::Save(SaveError::Write {
            path: "/etc/c.json".into(),
            source: io(),
        }));
        let api = write.api_error();
        assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(api.kind, ErrorKind::ApiError);
        assert_eq!(api.message, "cannot write /etc/c.json: disk full");
    }
}
