//! `POST /v1/messages` and `POST /v1/messages/count_tokens`.
//!
//! Flow (design §4): read the body under the limit, parse once, classify, convert once, then
//! pick a provider and send. Until the first byte has gone to the client, a provider failure is
//! recorded and the request moves to the next eligible provider of its rule; a 400 is the
//! request's fault and is returned as is. Streaming answers are translated frame by frame as
//! they arrive; a non-streaming answer is collected and, since nothing reached the client yet,
//! a failure part-way through still fails over.

use crate::anthropic::types::{MessagesRequest, parse_request, parse_request_bytes};
use crate::anthropic::{ApiError, ErrorKind};
use crate::balancer::{Lease, Placement, SelectError};
use crate::buffers::{self, PooledBuf};
use crate::classify::classify;
use crate::config::Category;
use crate::providers::codewhisperer::{Prepared, Report, SseAnswer, UpstreamError, prepare};
use crate::runtime::{Live, Runtime};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the client is told about routing, on every answer.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub(super) category: Category,
    pub(super) provider: Option<String>,
    pub(super) attempts: usize,
    /// The conversation's session key (see [`super::session::session_key`]).
    pub(super) session: Option<String>,
    pub(super) affinity: Option<crate::balancer::Affinity>,
}

impl Route {
    fn apply(&self, headers: &mut HeaderMap) {
        headers.insert("x-ccr-category", HeaderValue::from_static(self.category.as_str()));
        if let Some(p) = self.provider.as_deref().and_then(|p| HeaderValue::from_str(p).ok()) {
            headers.insert("x-ccr-provider", p);
        }
        headers.insert("x-ccr-attempts", HeaderValue::from(self.attempts));
        if let Some(a) = self.affinity {
            headers.insert("x-ccr-affinity", HeaderValue::from_static(a.as_str()));
        }
    }

    fn respond(&self, mut response: Response) -> Response {
        self.apply(response.headers_mut());
        response
    }
}

/// The client's error for a body that could not be read: 413 past the limit, else 400.
fn body_error(e: &(dyn std::error::Error + 'static), limit: usize) -> ApiError {
    if let Some(stalled) = super::limits::stalled_error(e) {
        return stalled;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut too_large = false;
    while let Some(s) = source {
        too_large |= s.is::<http_body_util::LengthLimitError>();
        source = s.source();
    }
    if too_large {
        ApiError::new(
            ErrorKind::RequestTooLarge,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    } else {
        ApiError::invalid_request(format!("could not read the request body: {e}"))
    }
}

/// Read the whole body into a reused buffer (see [`buffers`]), refusing more than `limit`
/// bytes with an Anthropic 413.
pub async fn read_body_reused(body: Body, limit: usize) -> Result<PooledBuf, ApiError> {
    use axum::body::HttpBody;
    use http_body_util::BodyExt;
    let mut body = http_body_util::Limited::new(body, limit);
    // Trust the announced length only so far: a client must not make us reserve the whole limit.
    let announced = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    let mut buf = buffers::REQUEST_BODIES.take(announced.min(limit).min(MAX_BODY_RESERVE));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(e.as_ref(), limit))?;
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
        }
    }
    Ok(buf)
}

/// Most bytes reserved up front from a request's `Content-Length`.
const MAX_BODY_RESERVE: usize = 4 * 1024 * 1024;

/// A count-tokens body: a Messages request whose `max_tokens` is optional (the real endpoint
/// does not take one). Errors are those of [`parse_request`].
///
/// Without `max_tokens`, `"max_tokens":1` is spliced in after the opening brace and every other
/// byte is kept, so the texts keep the escapes the estimate counts and `count_tokens` says what
/// `/v1/messages` would estimate for the same body.
fn parse_count_request(bytes: &[u8]) -> Result<MessagesRequest, ApiError> {
    match parse_request(bytes) {
        Err(e) if e.message.contains("missing field `max_tokens`") => {
            let Some(open) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else { return Err(e) };
            let rest = &bytes[open + 1..];
            let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
            let mut spliced = Vec::with_capacity(bytes.len() + 16);
            spliced.extend_from_slice(b"{\"max_tokens\":1");
            if !empty {
                spliced.push(b',');
            }
            spliced.extend_from_slice(rest);
            parse_request(&spliced)
        }
        other => other,
    }
}

fn body_limit(live: &Live) -> usize {
    usize::try_from(live.config.server.max_body_bytes).unwrap_or(usize::MAX)
}

/// `POST /v1/messages/count_tokens`: the same cheap estimate the classifier uses. Takes the
/// count-tokens request shape: a Messages request without `max_tokens` (and any `stream`).
pub async fn count_tokens(State(rt): State<Arc<Runtime>>, body: Body) -> Response {
    let live = rt.live();
    let result = async {
        let bytes = read_body_reused(body, body_limit(&live)).await?;
        let req = parse_count_request(&bytes)?;
        Ok::<_, ApiError>(req.estimate_input_tokens())
    }
    .await;
    match result {
        Ok(tokens) => axum::Json(serde_json::json!({ "input_tokens": tokens })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/messages` (with or without `?beta=true`).
pub async fn messages(
    State(rt): State<Arc<Runtime>>,
    ticket: Option<axum::Extension<crate::keys::Ticket>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    rt.count_request();
    let live = rt.live();
    let bytes = match read_body_reused(body, body_limit(&live)).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    // The texts of the request are slices of the body: its buffer goes back to the pool when
    // the request is dropped, below, once prepared.
    let req = match parse_request_bytes(&bytes.into_bytes()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = crate::keys::check_model(ticket.as_deref(), &req.model) {
        return e.into_response();
    }
    let estimate = req.estimate_input_tokens();
    let category = classify(&req, estimate, live.thresholds);
    let session = super::session::session_key(&headers, &req);
    let mut route = Route { category, provider: None, attempts: 0, session, affinity: None };
    let rule_model = match live.config.rule(category) {
        Ok((_, rule)) => rule.model.clone(),
        Err(e) => {
            tracing::error!("{e}");
            return route
                .respond(select_error(&SelectError::NoRule(category.as_str().into())).into_response());
        }
    };
    // The rule's model, else a `/v1/models` id mapped back exactly, else the name mapping.
    let model_id = rule_model.or_else(|| rt.models.kiro_id(&req.model));
    if crate::providers::codewhisperer::websearch::search_tool(&req).is_some() {
        let response = super::websearch::handle(&rt, &live, req, model_id, &mut route).await;
        return route.respond(response);
    }
    let prepared = match prepare(&req, estimate, model_id.as_deref()) {
        Ok(p) => p,
        Err(e) => return route.respond(e.into_response()),
    };
    // Everything the attempts need is prepared: free the parsed request (as large as the body)
    // before waiting on the upstream, not after.
    drop(req);
    dispatch(&rt, &live, &prepared, &mut route).await
}

async fn dispatch(rt: &Arc<Runtime>, live: &Live, prepared: &Prepared, route: &mut Route) -> Response {
    let category = route.category.as_str();
    let max_attempts = rt.balancer.max_attempts(category);
    let mut tried: Vec<String> = Vec::new();
    let mut failures = super::unserved::Failures::default();

    while route.attempts < max_attempts {
        let place = Placement { session: route.session.as_deref(), model: Some(prepared.model_id()) };
        let mut lease = match rt.balancer.select_for(category, &tried, place).await {
            Ok(lease) => lease,
            Err(e) => {
                return route.respond(match failures.final_error(live, route.category) {
                    Some(err) => err.into_response(),
                    None => select_error(&e).into_response(),
                });
            }
        };
        route.attempts += 1;
        route.affinity = lease.affinity();
        let id = lease.id().to_string();
        route.provider = Some(id.clone());
        tried.push(id.clone());
        let Some(client) = live.clients.get(&id).cloned() else {
            // Reloaded away between select and here: not the provider's fault.
            lease.neutral();
            continue;
        };
        let sent_at = Instant::now();
        match client.send(prepared).await {
            Ok(answer) => {
                lease.first_byte(sent_at.elapsed());
                if prepared.stream() {
                    let stop = rt.drain.subscribe();
                    return route.respond(stream_response(answer.into_sse(), lease, sent_at, stop));
                }
                match answer.collect(|r| report(&lease, r)).await {
                    Ok(message) => {
                        lease.success(sent_at.elapsed());
                        return route.respond(axum::Json(message).into_response());
                    }
                    Err(err) => {
                        log_failure(&id, &err, route.attempts, max_attempts);
                        lease.failure(err.failure_kind(), &err.message);
                        failures.push(&id, &err);
                    }
                }
            }
            Err(err) if !err.is_provider_fault() => {
                lease.neutral();
                tracing::info!(provider = %id, "request rejected upstream: {}", err.message);
                return route.respond(err.to_api_error().into_response());
            }
            Err(err) => {
                log_failure(&id, &err, route.attempts, max_attempts);
                lease.failure(err.failure_kind(), &err.message);
                failures.push(&id, &err);
            }
        }
    }
    let err = failures
        .final_error(live, route.category)
        .unwrap_or_else(|| ApiError::new(ErrorKind::OverloadedError, "no provider could take the request"));
    route.respond(err.into_response())
}

pub(super) fn log_failure(id: &str, err: &UpstreamError, attempt: usize, max: usize) {
    if attempt < max {
        tracing::warn!(provider = %id, attempt, "upstream failed, failing over: {}", err.message);
    } else {
        tracing::warn!(provider = %id, attempt, "upstream failed: {}", err.message);
    }
}

/// The client's error when no provider could be picked at all.
pub fn select_error(e: &SelectError) -> ApiError {
    match e {
        SelectError::AllOpen { retry_after } => {
            ApiError::new(ErrorKind::OverloadedError, "every provider's circuit breaker is open; retry later")
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .with_retry_after(*retry_after)
        }
        SelectError::Overloaded { .. } => {
            ApiError::new(ErrorKind::OverloadedError, e.to_string()).with_retry_after(Duration::from_secs(1))
        }
        SelectError::Unavailable { retry_after } => {
            let err = ApiError::new(ErrorKind::OverloadedError, e.to_string())
                .with_status(StatusCode::SERVICE_UNAVAILABLE);
            match retry_after {
                Some(after) => err.with_retry_after(*after),
                None => err,
            }
        }
        SelectError::NoRule(_) | SelectError::NoCandidates { .. } => {
            ApiError::new(ErrorKind::OverloadedError, e.to_string())
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// Passes what an answer told about its account on to the lease.
fn report(lease: &Lease, r: Report) {
    match r {
        Report::Metered { credits } => lease.metered(credits),
    }
}

/// The SSE answer: `message_start` and the first event go out at once, the rest as they come.
fn stream_response(
    sse: SseAnswer,
    lease: Lease,
    sent_at: Instant,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Response {
    let state = Streaming { sse, lease: Some(lease), sent_at, stop };
    let body = Body::from_stream(futures_util::stream::unfold(state, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<_, std::io::Error>(chunk), s))
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// One streaming answer in progress. Dropping it (client gone) drops the lease, which counts
/// the attempt as neutral and releases the in-flight slot.
struct Streaming {
    sse: SseAnswer,
    lease: Option<Lease>,
    sent_at: Instant,
    /// Turns true when the shutdown deadline passes: the answer ends with an `error` event.
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Streaming {
    /// The next bytes for the client; `None` when the answer is complete. What the answer says
    /// about the account goes to the lease as it arrives, and the lease is settled as soon as the
    /// upstream's outcome is known. While the answer waits on the upstream, the shutdown deadline
    /// can end it.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let Streaming { sse, lease, stop, .. } = self;
        let mut reports = |r| {
            if let Some(lease) = lease.as_ref() {
                report(lease, r);
            }
        };
        let next = if sse.has_ready_output() {
            Some(sse.next_chunk(&mut reports).await)
        } else {
            tokio::select! {
                chunk = sse.next_chunk(&mut reports) => Some(chunk),
                () = async {
                    if stop.wait_for(|stop| *stop).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => None,
            }
        };
        let chunk = match next {
            Some(chunk) => chunk,
            None => {
                self.shut_down();
                self.sse.next_chunk(&mut |_| {}).await
            }
        };
        if let Some(outcome) = self.sse.take_outcome()
            && let Some(lease) = self.lease.take()
        {
            match outcome {
                Ok(()) => lease.success(self.sent_at.elapsed()),
                Err(err) => lease.failure(err.failure_kind(), &err.message),
            }
        }
        chunk
    }

    /// The shutdown deadline passed: close the answer with an error event. Not the provider's
    /// fault (dropping the lease counts the attempt as neutral).
    fn shut_down(&mut self) {
        let err = ApiError::new(
            ErrorKind::OverloadedError,
            "ccr is shutting down and the answer did not finish within server.shutdownTimeout; retry",
        );
        self.sse.abort(&err);
        self.lease.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_tokens_estimates_what_v1_messages_would() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"caf\u00e9\n\"x\""}]}],"system":"s\ts"}"#;
        let counted = parse_count_request(body.as_bytes()).expect("a count body").estimate_input_tokens();
        let with = body.replacen('{', r#"{"max_tokens":5,"#, 1);
        let sent = parse_request(with.as_bytes()).expect("a messages body").estimate_input_tokens();
        assert_eq!(counted, sent);
        assert_eq!(parse_count_request(with.as_bytes()).expect("max_tokens is allowed").max_tokens, 5);
        let err = parse_count_request(b" { } ").expect_err("no messages");
        assert!(err.message.contains("missing field `model`"), "{}", err.message);
    }

    #[tokio::test]
    async fn bodies_are_read_whole_under_the_limit_and_refused_over_it() {
        let body = Body::from(vec![b'x'; 3000]);
        let buf = read_body_reused(body, 5000).await.expect("under the limit");
        assert_eq!(buf.len(), 3000);
        assert!(buf.iter().all(|b| *b == b'x'));
        drop(buf);
        let chunks = futures_util::stream::iter(
            (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(&[b'y'; 1000]))),
        );
        let err = read_body_reused(Body::from_stream(chunks), 5000).await.expect_err("over the limit");
        assert_eq!(err.kind, ErrorKind::RequestTooLarge);
        assert!(err.message.contains("5000"), "{}", err.message);
        let broken = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"{\"a\"")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let err = read_body_reused(Body::from_stream(broken), 5000).await.expect_err("a broken body");
        assert_eq!(err.kind, ErrorKind::InvalidRequestError);
        assert!(err.message.starts_with("could not read the request body"), "{}", err.message);
    }
}
