//! The chat call, `POST /generateAssistantResponse` and its awsJson twin `POST /`: checks in the
//! real service's order (auth, faults, size, body rules, model, quota), then the scripted answer
//! streamed frame by frame.

use super::GENERATE_TARGET;
use super::errors::{
    add_request_id, aws_error, bearer_invalid, cut_response, invalid_model, malformed, quota_exhausted,
    too_long,
};
use super::options::{Endpoint, ErrorKind, Scenario};
use super::scripted::{End, FramePieces, Script, corrupt_a_frame, cut_mid_frame};
use super::state::{InFlight, Knobs, Shared};
use crate::providers::codewhisperer::convert::check_kiro_body;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Delay between the pieces of one frame in the split-UTF-8 scenario when no chunk delay is set,
/// so that the pieces leave in separate TCP writes.
pub(super) const SPLIT_PIECE_DELAY: Duration = Duration::from_millis(1);

pub(super) async fn generate_rest(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    generate(sim, true, method, uri, headers, body).await
}

pub(super) async fn generate_target(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target_ok = headers.get("x-amz-target").is_some_and(|v| v.as_bytes() == GENERATE_TARGET.as_bytes());
    generate(sim, target_ok, method, uri, headers, body).await
}

pub(super) async fn generate(
    sim: Arc<Shared>,
    target_ok: bool,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let epoch = sim.record(Endpoint::Generate, &method, &uri, &headers, &body);
    let guard = InFlight::new(&sim);
    if !target_ok {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            json!({"message": "Unknown operation: the x-amz-target header does not name GenerateAssistantResponse."}),
        );
    }
    let knobs = sim.knobs();
    if sim.pause(knobs.latency, epoch).await.is_err() {
        return cut_response();
    }
    if !sim.authorized(&headers) {
        return bearer_invalid();
    }
    let fault = sim.take_fault(Endpoint::Generate, &knobs);
    if fault == Some(ErrorKind::Hang) {
        sim.hang(epoch).await;
        return cut_response();
    }
    if let Some(response) = fault.and_then(|kind| sim.fault_response(kind)) {
        return response;
    }

    if body.len() > knobs.max_body_bytes {
        let why = format!("body of {} bytes exceeds {} bytes", body.len(), knobs.max_body_bytes);
        return sim.reject(too_long(), why);
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return sim.reject(malformed(), format!("body is not JSON: {e}")),
    };
    if let Err(why) = check_kiro_body(&request) {
        return sim.reject(malformed(), why);
    }
    let view = RequestView::read(&request, body.len());
    let Some(model) = view.model_id else {
        return sim.reject(malformed(), "currentMessage modelId missing".to_owned());
    };
    if !sim.model_known(model) {
        return sim.reject(invalid_model(), format!("unknown modelId {model}"));
    }
    if sim.fixed.enforce_usage_limit
        && sim.counters.streams_started.load(Ordering::Relaxed) >= sim.fixed.usage_limit
    {
        return quota_exhausted();
    }
    match super::state::lock(&sim.account).as_ref() {
        Some(a) if a.suspended => return super::errors::suspended(),
        Some(a) if a.exhausted() => return quota_exhausted(),
        _ => {}
    }

    let plan = Plan::choose(&view, &knobs, sim.fixed.long_frames);
    let mut script = Script::new(&sim, &view);
    script.play(plan, &view);
    script.trailer(&view, model, &knobs);
    let mut frames = script.frames;
    let end = match fault {
        Some(ErrorKind::CutStream) => cut_mid_frame(&mut frames),
        Some(ErrorKind::CorruptFrame) => {
            corrupt_a_frame(&mut frames);
            End::Complete
        }
        _ => End::Complete,
    };
    sim.counters.streams_started.fetch_add(1, Ordering::Relaxed);
    stream_response(sim, frames, end, epoch, guard)
}

/// The parts of a (validated) request body the answer depends on.
pub(super) struct RequestView<'a> {
    pub(super) content: &'a str,
    pub(super) model_id: Option<&'a str>,
    /// Declared tools: name and input schema.
    pub(super) tools: Vec<(&'a str, Option<&'a Value>)>,
    /// Tool results in the current message: id and text.
    pub(super) tool_results: Vec<(&'a str, String)>,
    pub(super) thinking_requested: bool,
    pub(super) body_len: usize,
}

impl<'a> RequestView<'a> {
    pub(super) fn read(body: &'a Value, body_len: usize) -> Self {
        let current = body.pointer("/conversationState/currentMessage/userInputMessage");
        let content = current.and_then(|m| m.get("content")).and_then(Value::as_str).unwrap_or("");
        let model_id = current.and_then(|m| m.get("modelId")).and_then(Value::as_str);
        let context = current.and_then(|m| m.get("userInputMessageContext"));
        let tools = context
            .and_then(|c| c.get("tools"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let spec = t.get("toolSpecification")?;
                let name = spec.get("name")?.as_str()?;
                Some((name, spec.pointer("/inputSchema/json")))
            })
            .collect();
        let tool_results = context
            .and_then(|c| c.get("toolResults"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|r| {
                let id = r.get("toolUseId").and_then(Value::as_str).unwrap_or("");
                let text = r
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|block| match block.get("text").and_then(Value::as_str) {
                        Some(t) => t.to_owned(),
                        None => block.get("json").map(Value::to_string).unwrap_or_default(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                (id, text)
            })
            .collect();
        let history_contents = body
            .pointer("/conversationState/history")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.pointer("/userInputMessage/content").and_then(Value::as_str));
        let thinking_requested = std::iter::once(content).chain(history_contents).any(|c| {
            c.contains("<thinking_mode>enabled</thinking_mode>")
                || c.contains("<thinking_mode>adaptive</thinking_mode>")
        });
        RequestView { content, model_id, tools, tool_results, thinking_requested, body_len }
    }
}

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    Scenario(Scenario),
    /// Acknowledge the current message's tool results.
    ToolResultAck,
    /// Call the declared search tool with the query the user asked for.
    WebSearch,
    /// Summarise the web search results in the current message's tool results.
    SearchSummary,
}

impl Plan {
    pub(super) fn choose(view: &RequestView<'_>, knobs: &Knobs, long_frames: usize) -> Plan {
        if let Some(s) = Scenario::find_marker(view.content, long_frames) {
            Plan::Scenario(s)
        } else if super::websearch_model::query(view).is_some() {
            Plan::WebSearch
        } else if super::websearch_model::summary(view).is_some() {
            Plan::SearchSummary
        } else if !view.tool_results.is_empty() {
            Plan::ToolResultAck
        } else {
            Plan::Scenario(knobs.scenario)
        }
    }
}

/// The streamed body: one write per piece, `chunk_delay` between frames (read live, so a change
/// applies mid-stream), cut with an error when the sim goes down or shuts down.
pub(super) struct BodyState {
    pub(super) sim: Arc<Shared>,
    pub(super) writes: VecDeque<(Bytes, Duration)>,
    pub(super) first: bool,
    pub(super) epoch: u64,
    pub(super) end: End,
    pub(super) done: bool,
    pub(super) _guard: InFlight,
}

pub(super) fn stream_response(
    sim: Arc<Shared>,
    frames: Vec<FramePieces>,
    end: End,
    epoch: u64,
    guard: InFlight,
) -> Response {
    let mut writes = VecDeque::new();
    for frame in frames {
        for (i, piece) in frame.into_iter().enumerate() {
            // Pieces after the first of a frame follow at least `SPLIT_PIECE_DELAY` apart.
            writes.push_back((piece, if i == 0 { Duration::ZERO } else { SPLIT_PIECE_DELAY }));
        }
    }
    let state = BodyState { sim, writes, first: true, epoch, end, done: false, _guard: guard };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let Some((bytes, min_delay)) = st.writes.pop_front() else {
            st.done = true;
            if st.end == End::Complete {
                st.sim.counters.streams_completed.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        };
        let delay = if st.first { Duration::ZERO } else { st.sim.knobs().chunk_delay.max(min_delay) };
        st.first = false;
        if st.sim.pause(delay, st.epoch).await.is_err() {
            st.done = true;
            let err = io::Error::new(io::ErrorKind::ConnectionReset, "simulated upstream went down");
            return Some((Err(err), st));
        }
        Some((Ok::<Bytes, io::Error>(bytes), st))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.amazon.eventstream"));
    add_request_id(&mut response);
    response
}
