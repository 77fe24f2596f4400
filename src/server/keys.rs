//! The `/v1/*` gate: who is asking ([`crate::keys::Keys::authenticate`]), whether their key's
//! limits let the request through ([`crate::keys::Keys::admit`], before anything reaches an
//! upstream), and the bookkeeping that lasts as long as the answer: the key's concurrency slot
//! is held until the answer's last byte has gone out, and every lease the request is granted
//! charges its metering to the key (see [`crate::balancer::with_meter_tap`]). The handlers find
//! the [`Ticket`] in the request's extensions (for the model check).
//!
//! One log line per request of a developer key names the key, never the key itself.

use crate::keys::{Caller, Ticket};
use crate::runtime::Runtime;
use axum::body::Body;
use axum::body::{Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The middleware on `/v1/*`.
pub(super) async fn require_key(
    State(rt): State<Arc<Runtime>>,
    mut request: Request,
    next: Next,
) -> Response {
    let config = rt.config();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let caller = match rt.keys.authenticate(request.headers(), config.server.api_key.as_deref()) {
        Ok(caller) => caller,
        Err(e) => {
            tracing::info!("{method} {path}: refused: {e}");
            return e.api_error().into_response();
        }
    };
    // Limits count requests for answers; token counts and model lists only need the key.
    let Caller::Developer(entry) = caller else { return next.run(request).await };
    if path != "/v1/messages" {
        return next.run(request).await;
    }
    let ticket = match rt.keys.admit(&entry).await {
        Ok(ticket) => ticket,
        Err(e) => {
            tracing::info!(key = %entry.name, "{method} {path}: refused: {e}");
            return e.api_error().into_response();
        }
    };
    request.extensions_mut().insert(ticket.clone());
    let response = crate::balancer::with_meter_tap(ticket.meter_tap(), next.run(request)).await;
    tracing::info!(key = %entry.name, status = response.status().as_u16(), "{method} {path}");
    hold_until_sent(response, ticket)
}

/// The response, with `ticket` kept alive until its body has been sent or dropped.
fn hold_until_sent(response: Response, ticket: Ticket) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(Held { body, _ticket: ticket }))
}

/// A body that keeps a [`Ticket`] (and so the key's concurrency slot) until it is done; sizes
/// pass through, so a JSON answer keeps its `Content-Length`.
struct Held {
    body: Body,
    _ticket: Ticket,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
