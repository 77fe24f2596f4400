//! One upstream answer, from its first event on: the decode pipeline ([`EventStream`]) joined to
//! the translator, either as Anthropic SSE chunks ([`Answer::into_sse`]) or as one JSON message
//! ([`Answer::collect`]). The proxy, the tests and the frame fuzzer all go through here.

use super::decode::{Body, EventStream};
use super::error::{UpstreamError, UpstreamErrorKind};
use super::event::KiroEvent;
use super::translate::{MessageAggregator, ResponseOptions, SseTranslator, new_message_id};
use crate::anthropic::ApiError;
use bytes::{Bytes, BytesMut};
use std::time::Duration;

/// What an answer told about the account that served it, reported as it arrives (the handler
/// passes it on to the balancer's lease). New account facts from the upstream go here.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Report {
    /// A `meteringEvent`: the credits this answer cost the account.
    Metered { credits: f64 },
}

/// The report an event carries, if any.
fn report_of(event: &KiroEvent) -> Option<Report> {
    match event {
        KiroEvent::Metering { credits } => Some(Report::Metered { credits: *credits }),
        _ => None,
    }
}

/// Keep-alive `ping` interval while an answer streams (protocol notes §5.5).
pub const PING_INTERVAL: Duration = Duration::from_secs(25);

/// An upstream answer whose first event has arrived: until then a failure can still move the
/// request to another provider; from here on the answer belongs to the client.
pub struct Answer {
    first: KiroEvent,
    events: EventStream,
    options: ResponseOptions,
}

impl Answer {
    /// Waits for the first event of `events`. An answer that ends or breaks before any event is
    /// an error.
    pub(crate) async fn start(
        events: EventStream,
        options: ResponseOptions,
    ) -> Result<Answer, UpstreamError> {
        let (first, events) = events.first_event().await?;
        Ok(Answer { first, events, options })
    }

    /// An answer whose first event has already been read.
    pub(crate) fn new(first: KiroEvent, events: EventStream, options: ResponseOptions) -> Answer {
        Answer { first, events, options }
    }

    /// An answer read from any byte stream (the proxy's comes from the HTTP client): how the
    /// tests and the fuzzer drive the production pipeline. Needs a tokio runtime with time.
    pub async fn from_body(
        body: Body,
        options: ResponseOptions,
        idle_timeout: Duration,
    ) -> Result<Answer, UpstreamError> {
        Answer::start(EventStream::new(body, idle_timeout), options).await
    }

    /// Collects the whole answer into one Anthropic message (non-streaming requests). An upstream
    /// failure part-way through is an error: nothing has reached the client yet. `report` hears
    /// about the account as events arrive, failure or not.
    pub async fn collect(
        mut self,
        mut report: impl FnMut(Report),
    ) -> Result<serde_json::Value, UpstreamError> {
        let mut message = MessageAggregator::new(self.options, new_message_id());
        let mut next = Some(self.first);
        while let Some(event) = next {
            if let Some(r) = report_of(&event) {
                report(r);
            }
            message.on_event(event).map_err(|e| {
                UpstreamError::new(UpstreamErrorKind::Protocol, format!("upstream failed: {}", e.message))
            })?;
            next = self.events.next_event().await?;
        }
        Ok(message.finish())
    }

    /// The answer as Anthropic SSE: `message_start` and the first event are ready at once, the
    /// rest is translated as it arrives.
    pub fn into_sse(self) -> SseAnswer {
        let mut translator = SseTranslator::new(self.options, new_message_id());
        let mut buf = BytesMut::with_capacity(4096);
        translator.start(&mut buf);
        SseAnswer {
            translator,
            events: self.events,
            buf,
            pending_first: Some(self.first),
            outcome: Outcome::Open,
        }
    }
}

/// How a streaming answer ended, once it has.
enum Outcome {
    Open,
    Ended(Result<(), UpstreamError>),
    Taken,
}

/// A streaming answer in progress: [`next_chunk`](SseAnswer::next_chunk) gives the client's
/// bytes, [`take_outcome`](SseAnswer::take_outcome) how the upstream did, once it is known.
pub struct SseAnswer {
    translator: SseTranslator,
    events: EventStream,
    buf: BytesMut,
    pending_first: Option<KiroEvent>,
    outcome: Outcome,
}

impl SseAnswer {
    /// The next bytes for the client; `None` when the answer is complete (after a last
    /// `message_stop`, or an `error` event when the upstream failed mid-stream).
    ///
    /// Each event is translated as soon as its frame is complete, and nothing waits for a frame
    /// not yet received. Frames already at hand when one is translated leave in the same chunk
    /// (one write to the client instead of several); the HTTP client hands over one upstream
    /// chunk (one frame) at a time, so this batches only what is ready, mostly under load. A
    /// `ping` goes out after [`PING_INTERVAL`] without an event.
    ///
    /// `report` hears about the account as events arrive. Cancel-safe: a caller may race it
    /// against a shutdown signal and then [`abort`](SseAnswer::abort).
    pub async fn next_chunk(&mut self, report: &mut (dyn FnMut(Report) + Send)) -> Option<Bytes> {
        loop {
            if let Some(first) = self.pending_first.take() {
                self.on_event(first, report);
                self.drain_arrived(report);
            }
            if !self.buf.is_empty() {
                return Some(self.buf.split().freeze());
            }
            if self.translator.is_done() {
                return None;
            }
            match tokio::time::timeout(PING_INTERVAL, self.events.next_event()).await {
                Err(_) => self.translator.ping(&mut self.buf),
                Ok(Ok(Some(event))) => {
                    self.on_event(event, report);
                    self.drain_arrived(report);
                }
                Ok(Ok(None)) => {
                    self.translator.finish(&mut self.buf);
                    self.end(Ok(()));
                }
                Ok(Err(err)) => self.upstream_failed(err),
            }
        }
    }

    /// Whether [`next_chunk`](SseAnswer::next_chunk) has bytes without waiting for the upstream.
    pub fn has_ready_output(&self) -> bool {
        self.pending_first.is_some() || !self.buf.is_empty() || self.translator.is_done()
    }

    /// Ends the answer for a reason of the proxy's own (shutting down): the open blocks are
    /// closed and `err` goes out as the `error` event with the next chunk. The upstream's outcome
    /// stays unknown (`take_outcome` gives `None`).
    pub fn abort(&mut self, err: &ApiError) {
        self.pending_first = None;
        self.translator.fail(err, &mut self.buf);
        self.outcome = Outcome::Taken;
    }

    /// How the upstream did, once: `Some(Ok(()))` after a complete answer, `Some(Err(_))` after a
    /// failure mid-stream, `None` while the answer is still open (or when already taken).
    pub fn take_outcome(&mut self) -> Option<Result<(), UpstreamError>> {
        match std::mem::replace(&mut self.outcome, Outcome::Taken) {
            Outcome::Ended(result) => Some(result),
            Outcome::Open => {
                self.outcome = Outcome::Open;
                None
            }
            Outcome::Taken => None,
        }
    }

    fn end(&mut self, result: Result<(), UpstreamError>) {
        if matches!(self.outcome, Outcome::Open) {
            self.outcome = Outcome::Ended(result);
        }
    }

    /// Translate the events that have already arrived, without waiting for more (see
    /// [`EventStream::buffered_event`]).
    fn drain_arrived(&mut self, report: &mut (dyn FnMut(Report) + Send)) {
        while !self.translator.is_done() {
            match self.events.buffered_event() {
                Ok(Some(event)) => self.on_event(event, report),
                Ok(None) => return,
                Err(err) => {
                    self.upstream_failed(err);
                    return;
                }
            }
        }
    }

    /// The upstream broke after the first byte: close the answer with an error event.
    fn upstream_failed(&mut self, err: UpstreamError) {
        tracing::warn!("upstream failed mid-stream: {}", err.message);
        self.translator.fail(&err.to_api_error(), &mut self.buf);
        self.end(Err(err));
    }

    fn on_event(&mut self, event: KiroEvent, report: &mut (dyn FnMut(Report) + Send)) {
        if let Some(r) = report_of(&event) {
            report(r);
        }
        if let Err(err) = self.translator.on_event(event, &mut self.buf) {
            // The translator already wrote the error event.
            tracing::warn!("upstream reported a failure mid-stream: {}", err.message);
            self.end(Err(UpstreamError::new(UpstreamErrorKind::Protocol, err.message)));
        }
    }
}

#[cfg(test)]
mod tests;
