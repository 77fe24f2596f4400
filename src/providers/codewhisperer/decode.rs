//! The decode half of the response pipeline: an upstream body (any stream of byte chunks) →
//! Kiro events. Bytes → frames is [`super::frame`], a frame → an event is [`super::event`];
//! [`EventStream`] is the one place they are joined, with the idle timeout, and the proxy, the
//! tests and the frame fuzzer all decode through it ([`super::answer`] takes it from there).

use super::error::{UpstreamError, UpstreamErrorKind};
use super::event::{KiroEvent, parse_frame};
use super::frame::FrameDecoder;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use std::time::Duration;

/// An upstream body: chunks of bytes as they arrive, or why the body broke.
pub type Body = BoxStream<'static, Result<Bytes, UpstreamError>>;

/// The upstream answer as a stream of Kiro events, decoded as bytes arrive.
///
/// `next_event` is cancel-safe (a caller may race it against a ping timer): bytes are only
/// consumed once they arrived, and the idle deadline counts from the last bytes received, not
/// from the call.
pub struct EventStream {
    body: Body,
    decoder: FrameDecoder,
    idle_timeout: Duration,
    last_progress: tokio::time::Instant,
    done: bool,
}

impl EventStream {
    /// Decode `body`; a read that brings nothing for `idle_timeout` fails the answer.
    pub fn new(body: Body, idle_timeout: Duration) -> Self {
        EventStream {
            body,
            decoder: FrameDecoder::new(),
            idle_timeout,
            last_progress: tokio::time::Instant::now(),
            done: false,
        }
    }

    /// The next event if a whole frame of it has already arrived: decoded from what is buffered,
    /// or from body chunks that are ready now. Never waits. `Ok(None)` means nothing complete
    /// has arrived yet (or the body ended: [`EventStream::next_event`] then says how).
    ///
    /// The proxy uses it to send frames that are already here in one write to the client. (The
    /// upstream sends each frame as its own HTTP chunk and the HTTP client decodes the next one
    /// only when asked, so under light load there is rarely more than one.)
    pub fn buffered_event(&mut self) -> Result<Option<KiroEvent>, UpstreamError> {
        loop {
            if let Some(event) = self.decoded_event()? {
                return Ok(Some(event));
            }
            if self.done {
                return Ok(None);
            }
            match self.body.next().now_or_never() {
                None => return Ok(None),
                Some(None) => self.done = true,
                Some(Some(Ok(chunk))) => {
                    self.last_progress = tokio::time::Instant::now();
                    self.decoder.feed(&chunk);
                }
                Some(Some(Err(e))) => return Err(e),
            }
        }
    }

    /// The next event from the bytes already fed to the decoder.
    fn decoded_event(&mut self) -> Result<Option<KiroEvent>, UpstreamError> {
        match self.decoder.next_frame() {
            Ok(Some(frame)) => parse_frame(&frame).map(Some).map_err(|e| {
                UpstreamError::new(UpstreamErrorKind::Protocol, format!("bad upstream event: {e}"))
            }),
            Ok(None) => Ok(None),
            Err(e) => {
                Err(UpstreamError::new(UpstreamErrorKind::Protocol, format!("corrupt upstream frame: {e}")))
            }
        }
    }

    /// Waits for the first event: an answer that ends before any event is an error.
    pub(crate) async fn first_event(mut self) -> Result<(KiroEvent, EventStream), UpstreamError> {
        match self.next_event().await? {
            Some(first) => Ok((first, self)),
            None => Err(UpstreamError::new(
                UpstreamErrorKind::Protocol,
                "upstream ended the answer before any event",
            )),
        }
    }

    /// The next event; `Ok(None)` at a clean end of the answer.
    pub async fn next_event(&mut self) -> Result<Option<KiroEvent>, UpstreamError> {
        loop {
            if let Some(event) = self.decoded_event()? {
                return Ok(Some(event));
            }
            if self.done {
                if self.decoder.buffered_len() > 0 {
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::Protocol,
                        format!(
                            "upstream stream cut inside a frame ({} bytes pending)",
                            self.decoder.buffered_len()
                        ),
                    ));
                }
                return Ok(None);
            }
            match tokio::time::timeout_at(self.last_progress + self.idle_timeout, self.body.next()).await {
                Err(_) => {
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::Timeout,
                        format!("upstream silent for {} ms", self.idle_timeout.as_millis()),
                    ));
                }
                Ok(None) => self.done = true,
                Ok(Some(Ok(chunk))) => {
                    self.last_progress = tokio::time::Instant::now();
                    self.decoder.feed(&chunk);
                }
                Ok(Some(Err(e))) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_already_received_are_available_without_waiting() {
        use super::super::frame::encode_event;
        let text =
            |t: &str| encode_event("assistantResponseEvent", format!(r#"{{"content":"{t}"}}"#).as_bytes());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, UpstreamError>>();
        let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        let mut events = EventStream::new(body.boxed(), Duration::from_secs(5));
        assert_eq!(events.buffered_event(), Ok(None), "nothing received yet");

        // Two frames in one chunk, then a frame in a chunk of its own: all there already.
        let mut two = text("a").to_vec();
        two.extend_from_slice(&text("b"));
        tx.send(Ok(Bytes::from(two))).unwrap();
        tx.send(Ok(text("c"))).unwrap();
        for expected in ["a", "b", "c"] {
            assert_eq!(events.buffered_event(), Ok(Some(KiroEvent::Text(expected.into()))));
        }
        assert_eq!(events.buffered_event(), Ok(None), "the next frame has not arrived");

        // Half a frame is not an event yet; the rest makes it one.
        let d = text("d");
        tx.send(Ok(d.slice(..10))).unwrap();
        assert_eq!(events.buffered_event(), Ok(None));
        tx.send(Ok(d.slice(10..))).unwrap();
        assert_eq!(events.next_event().await, Ok(Some(KiroEvent::Text("d".into()))));

        drop(tx);
        assert_eq!(events.buffered_event(), Ok(None), "the end is not an event");
        assert_eq!(events.next_event().await, Ok(None), "and next_event reports a clean end");
    }
}
