//! `POST /v1/messages` for requests that carry Anthropic's `web_search` server tool: the search
//! rounds of [`crate::providers::codewhisperer::websearch`] on one account.
//!
//! The account is chosen like for any request, and until the first byte goes to the client a
//! failure moves the request to the next provider of its rule (the direct search of Claude
//! Code's sub-request and the first model round both happen before that byte). After that, every
//! round and every search runs on the same account, and a failure ends the answer with an
//! Anthropic `error` event (streaming) or an error response (JSON). The model's text streams as
//! it arrives; search blocks go out when their search is done; a client tool call in a round is
//! sent when the round ends.

use super::messages::{Route, log_failure, select_error};
use crate::anthropic::types::MessagesRequest;
use crate::anthropic::{ApiError, ErrorKind};
use crate::balancer::{FailureKind, Lease};
use crate::providers::codewhisperer::client::{CodeWhispererClient, EventStream, UpstreamError};
use crate::providers::codewhisperer::convert::{ConvertOptions, Converted, convert};
use crate::providers::codewhisperer::event::KiroEvent;
use crate::providers::codewhisperer::mcp::{self, McpError};
use crate::providers::codewhisperer::models::context_window;
use crate::providers::codewhisperer::websearch::{
    Answer, SearchCall, SearchOutcome, Stop, TOOL_NAME, Totals, append_round, direct_query, model_request,
    search_tool,
};
use crate::providers::codewhisperer::{PING_INTERVAL, new_message_id};
use crate::runtime::{Live, Runtime};
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

/// Everything the rounds need, owned (the streaming rounds run in their own task).
struct Job {
    client: Arc<CodeWhispererClient>,
    lease: Option<Lease>,
    sent_at: Instant,
    /// The conversation as the model sees it, grown by one assistant + one user turn per round.
    request: MessagesRequest,
    model_id: Option<String>,
    max_uses: u64,
    totals: Totals,
    rounds: u64,
    answer: Answer,
    /// Shortened tool name → the client's name, from the latest conversion.
    tool_names: HashMap<String, String>,
}

/// Why the first attempt on a provider failed.
enum AttemptError {
    /// The request's fault: answer it, do not fail over.
    Request(ApiError),
    /// The provider's fault: count it and try the next one.
    Provider { kind: FailureKind, message: String, error: ApiError },
}

impl From<UpstreamError> for AttemptError {
    fn from(e: UpstreamError) -> Self {
        if e.is_provider_fault() {
            AttemptError::Provider {
                kind: e.failure_kind(),
                message: e.message.clone(),
                error: e.to_api_error(),
            }
        } else {
            AttemptError::Request(e.to_api_error())
        }
    }
}

impl From<McpError> for AttemptError {
    fn from(e: McpError) -> Self {
        match e {
            McpError::Upstream(u) if !u.is_provider_fault() => {
                AttemptError::Request(McpError::Upstream(u).to_api_error())
            }
            McpError::Upstream(u) => AttemptError::Provider {
                kind: u.failure_kind(),
                message: format!("web search failed: {}", u.message),
                error: McpError::Upstream(u).to_api_error(),
            },
            other => AttemptError::Provider {
                kind: FailureKind::Protocol,
                message: other.to_string(),
                error: other.to_api_error(),
            },
        }
    }
}

/// Answer a request with a web search server tool.
pub(super) async fn handle(
    rt: &Arc<Runtime>,
    live: &Live,
    req: MessagesRequest,
    model_id: Option<String>,
    route: &mut Route,
) -> Response {
    let Some(tool) = search_tool(&req) else {
        return ApiError::invalid_request("tools: no web_search tool").into_response();
    };
    let direct = direct_query(&req);
    let base = model_request(&req);
    let streaming = req.stream;
    let client_model = req.model.clone();
    drop(req);

    let category = route.category.as_str();
    let max_attempts = rt.balancer.max_attempts(category);
    let mut tried: Vec<String> = Vec::new();
    let mut last_error: Option<ApiError> = None;
    while route.attempts < max_attempts {
        let place =
            crate::balancer::Placement { session: route.session.as_deref(), model: model_id.as_deref() };
        let mut lease = match rt.balancer.select_for(category, &tried, place).await {
            Ok(lease) => lease,
            Err(e) => return last_error.unwrap_or_else(|| select_error(&e)).into_response(),
        };
        route.attempts += 1;
        route.affinity = lease.affinity();
        let id = lease.id().to_string();
        route.provider = Some(id.clone());
        tried.push(id.clone());
        let Some(client) = live.clients.get(&id).cloned() else {
            lease.neutral();
            continue;
        };
        let sent_at = Instant::now();
        let mut job = Job {
            client,
            lease: None,
            sent_at,
            request: base.clone(),
            model_id: model_id.clone(),
            max_uses: tool.max_uses,
            totals: Totals::default(),
            rounds: 0,
            answer: Answer::new(streaming, new_message_id(), client_model.clone()),
            tool_names: HashMap::new(),
        };
        match job.first_round(direct.as_deref()).await {
            Ok((calls, first, events)) => {
                lease.first_byte(sent_at.elapsed());
                job.lease = Some(lease);
                job.answer.start(job.request.estimate_input_tokens());
                for (call, outcome) in &calls {
                    job.answer.server_tool_use(call);
                    job.answer.search_result(call, outcome);
                }
                return if streaming { job.stream(first, events) } else { job.collect(first, events).await };
            }
            Err(AttemptError::Request(err)) => {
                lease.neutral();
                return err.into_response();
            }
            Err(AttemptError::Provider { kind, message, error }) => {
                let as_upstream = UpstreamError::new(
                    crate::providers::codewhisperer::client::UpstreamErrorKind::Protocol,
                    message.clone(),
                );
                log_failure(&id, &as_upstream, route.attempts, max_attempts);
                lease.failure(kind, &message);
                last_error = Some(error);
            }
        }
    }
    last_error
        .unwrap_or_else(|| ApiError::new(ErrorKind::OverloadedError, "no provider could take the request"))
        .into_response()
}

impl Job {
    fn options(&self) -> ConvertOptions<'_> {
        ConvertOptions { model_id: self.model_id.as_deref(), ..ConvertOptions::default() }
    }

    fn convert(&mut self) -> Result<Converted, ApiError> {
        let converted = convert(&self.request, &self.options())?;
        self.tool_names = converted.tool_names.clone();
        Ok(converted)
    }

    /// Search a direct query (if any), then start the first model round: everything that may
    /// still fail over.
    async fn first_round(
        &mut self,
        direct: Option<&str>,
    ) -> Result<(Vec<(SearchCall, SearchOutcome)>, KiroEvent, EventStream), AttemptError> {
        let mut calls = Vec::new();
        if let Some(query) = direct {
            let hits = mcp::web_search(&self.client, query).await?;
            self.totals.searches += 1;
            let call = SearchCall::new(format!("tooluse_{}", uuid::Uuid::new_v4().simple()), query);
            calls.push((call, SearchOutcome::Hits(hits)));
            append_round(&mut self.request, "", &calls);
        }
        let converted = self.convert().map_err(AttemptError::Request)?;
        let (first, events) = self.client.send_converted(&converted).await?;
        self.rounds = 1;
        Ok((calls, first, events))
    }

    /// Non-streaming: run every round, then answer with one message.
    async fn collect(mut self, first: KiroEvent, events: EventStream) -> Response {
        match self.run(first, events, &mut |_| true).await {
            Ok(message) => axum::Json(message).into_response(),
            Err(err) => err.into_response(),
        }
    }

    /// Streaming: the rounds run in their own task and write SSE into the response body.
    fn stream(mut self, first: KiroEvent, events: EventStream) -> Response {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(async move {
            let mut send = |bytes: Bytes| tx.send(bytes).is_ok();
            if self.run(first, events, &mut send).await.is_err() {
                // The error event is already in the answer and was flushed.
            }
        });
        let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
        }));
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    /// Hand what the answer wrote so far to the client; false when the client is gone.
    fn flush(&mut self, send: &mut (dyn FnMut(Bytes) -> bool + Send)) -> bool {
        if self.answer.out.is_empty() {
            return true;
        }
        send(self.answer.out.split().freeze())
    }

    /// The rounds. `Ok` is the JSON message (non-streaming) or `Null` after a streamed answer;
    /// `Err` is the failure (already written as an `error` event when streaming).
    async fn run(
        &mut self,
        first: KiroEvent,
        mut events: EventStream,
        send: &mut (dyn FnMut(Bytes) -> bool + Send),
    ) -> Result<serde_json::Value, ApiError> {
        let mut pending = Some(first);
        loop {
            let round = match self.read_round(pending.take(), &mut events, send).await {
                Ok(round) => round,
                Err(err) => return Err(self.failed(err, FailureKind::Protocol, send)),
            };
            let restored = |name: &str| self.tool_names.get(name).cloned().unwrap_or_else(|| name.to_owned());
            let mut searches = Vec::new();
            let mut client_calls = Vec::new();
            for (id, name, input) in &round.tools {
                let name = restored(name);
                let input: serde_json::Value =
                    serde_json::from_str(input).unwrap_or_else(|_| serde_json::json!({}));
                if name == TOOL_NAME {
                    let query = input.get("query").and_then(|q| q.as_str()).unwrap_or("").to_owned();
                    searches.push(SearchCall::new(id.clone(), query));
                } else {
                    client_calls.push((id.clone(), name, input));
                }
            }
            if round.stop.is_some() || searches.is_empty() {
                for (id, name, input) in client_calls.iter().cloned() {
                    self.answer.tool_use(&id, &name, input);
                }
                let stop =
                    round.stop.unwrap_or(if client_calls.is_empty() { Stop::EndTurn } else { Stop::ToolUse });
                return Ok(self.finished(stop, send));
            }
            let mut done = Vec::with_capacity(searches.len());
            for call in searches {
                let outcome = if self.totals.searches < self.max_uses && !call.query.trim().is_empty() {
                    match mcp::web_search(&self.client, &call.query).await {
                        Ok(hits) => {
                            self.totals.searches += 1;
                            SearchOutcome::Hits(hits)
                        }
                        Err(err) => {
                            let kind = match &err {
                                McpError::Upstream(u) => u.failure_kind(),
                                _ => FailureKind::Protocol,
                            };
                            return Err(self.failed(err.to_api_error(), kind, send));
                        }
                    }
                } else {
                    SearchOutcome::LimitReached
                };
                self.answer.server_tool_use(&call);
                self.answer.search_result(&call, &outcome);
                if !self.flush(send) {
                    return Err(ApiError::new(ErrorKind::ApiError, "client went away"));
                }
                done.push((call, outcome));
            }
            if !client_calls.is_empty() {
                for (id, name, input) in client_calls {
                    self.answer.tool_use(&id, &name, input);
                }
                return Ok(self.finished(Stop::ToolUse, send));
            }
            // Rounds beyond `max_uses` + 1 (the model answers after the last search; one more to
            // read the "limit reached" result): stop with what there is.
            if self.rounds > self.max_uses + 1 {
                return Ok(self.finished(Stop::PauseTurn, send));
            }
            append_round(&mut self.request, &round.text, &done);
            let converted = match self.convert() {
                Ok(c) => c,
                Err(err) => return Err(self.failed(err, FailureKind::Protocol, send)),
            };
            match self.client.send_converted(&converted).await {
                Ok((first, next)) => {
                    self.rounds += 1;
                    pending = Some(first);
                    events = next;
                }
                Err(err) => {
                    let kind = err.failure_kind();
                    return Err(self.failed(err.to_api_error(), kind, send));
                }
            }
        }
    }

    /// The normal end of the answer.
    fn finished(&mut self, stop: Stop, send: &mut (dyn FnMut(Bytes) -> bool + Send)) -> serde_json::Value {
        let message = self.answer.finish(stop, &self.totals);
        self.flush(send);
        if let Some(lease) = self.lease.take() {
            lease.success(self.sent_at.elapsed());
        }
        message.unwrap_or(serde_json::Value::Null)
    }

    /// A failure after the answer started.
    fn failed(
        &mut self,
        err: ApiError,
        kind: FailureKind,
        send: &mut (dyn FnMut(Bytes) -> bool + Send),
    ) -> ApiError {
        tracing::warn!(provider = %self.client.id(), "web search answer failed: {}", err.message);
        self.answer.fail(&err);
        self.flush(send);
        if let Some(lease) = self.lease.take() {
            lease.failure(kind, &err.message);
        }
        err
    }

    /// Read one model round to its end, streaming its text.
    async fn read_round(
        &mut self,
        mut pending: Option<KiroEvent>,
        events: &mut EventStream,
        send: &mut (dyn FnMut(Bytes) -> bool + Send),
    ) -> Result<Round, ApiError> {
        let converted_estimate = self.request.estimate_input_tokens();
        let mut round = Round::default();
        loop {
            let event = match pending.take() {
                Some(e) => e,
                None => match tokio::time::timeout(PING_INTERVAL, events.next_event()).await {
                    Err(_) => {
                        self.answer.ping();
                        if !self.flush(send) {
                            return Err(ApiError::new(ErrorKind::ApiError, "client went away"));
                        }
                        continue;
                    }
                    Ok(Ok(Some(e))) => e,
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => return Err(e.to_api_error()),
                },
            };
            match event {
                KiroEvent::Text(text) => {
                    round.output_chars += text.chars().count() as u64;
                    self.answer.text(&text);
                    round.text.push_str(&text);
                    if !self.flush(send) {
                        return Err(ApiError::new(ErrorKind::ApiError, "client went away"));
                    }
                }
                KiroEvent::ToolUse { id, name, input, .. } => {
                    let at = match round.tools.iter().position(|(i, _, _)| *i == id) {
                        Some(at) => at,
                        None => {
                            round.tools.push((id, name, String::new()));
                            round.tools.len() - 1
                        }
                    };
                    if let Some(input) = input {
                        round.output_chars += input.len() as u64;
                        round.tools[at].2.push_str(&input);
                    }
                }
                KiroEvent::Usage { input_tokens, output_tokens, cache_read, cache_write } => {
                    round.usage = Some((input_tokens, output_tokens, cache_read, cache_write));
                }
                KiroEvent::ContextUsage { percentage } => round.context = Some(percentage),
                KiroEvent::Exception { kind, message } => {
                    if kind == "ContentLengthExceededException" {
                        round.stop = Some(Stop::MaxTokens);
                    } else {
                        return Err(ApiError::new(
                            ErrorKind::ApiError,
                            format!("upstream {kind}: {message}"),
                        ));
                    }
                }
                KiroEvent::Error { code, message } => {
                    return Err(ApiError::new(
                        ErrorKind::ApiError,
                        format!("upstream error {code}: {message}"),
                    ));
                }
                KiroEvent::InvalidState { reason, message } => {
                    return Err(ApiError::new(
                        ErrorKind::ApiError,
                        format!("upstream invalid state {reason}: {message}"),
                    ));
                }
                KiroEvent::StopReason(reason) => {
                    if let Some(stop) = crate::providers::codewhisperer::kiro_stop_reason(&reason) {
                        round.stop = Some(match stop.as_str() {
                            "max_tokens" => Stop::MaxTokens,
                            "refusal" => Stop::Refusal,
                            "pause_turn" => Stop::PauseTurn,
                            "model_context_window_exceeded" => Stop::ModelContextWindowExceeded,
                            "tool_use" => Stop::ToolUse,
                            _ => Stop::EndTurn,
                        });
                    }
                }
                // Searches cost the account's credits like chat turns (protocol notes §7.5).
                KiroEvent::Metering { credits } => {
                    if let Some(lease) = &self.lease {
                        lease.metered(credits);
                    }
                }
                KiroEvent::Reasoning { .. } | KiroEvent::Ignored(_) => {}
            }
        }
        if round.context.is_some_and(|p| p >= 100.0) {
            round.stop = Some(Stop::ModelContextWindowExceeded);
        }
        let window = context_window(
            &self
                .model_id
                .clone()
                .unwrap_or_else(|| crate::providers::codewhisperer::models::map_model(&self.request.model)),
        );
        let (input, output, cache_read, cache_write) = match round.usage {
            Some((i, o, r, w)) if i > 0 || o > 0 => (i, o, r, w),
            _ => {
                let input = match round.context.filter(|p| p.is_finite() && *p > 0.0) {
                    Some(p) => (p * window as f64 / 100.0).round() as u64,
                    None => converted_estimate,
                };
                (input, round.output_chars.div_ceil(4).max(1), 0, 0)
            }
        };
        self.totals.input_tokens += input;
        self.totals.output_tokens += output;
        self.totals.cache_read += cache_read;
        self.totals.cache_write += cache_write;
        Ok(round)
    }
}

/// One model round as read.
#[derive(Default)]
struct Round {
    text: String,
    /// (tool use id, Kiro name, input JSON text), in order of appearance.
    tools: Vec<(String, String, String)>,
    usage: Option<(u64, u64, u64, u64)>,
    context: Option<f64>,
    output_chars: u64,
    stop: Option<Stop>,
}
