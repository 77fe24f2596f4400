//! The Kiro / CodeWhisperer provider: Anthropic ↔ `generateAssistantResponse` conversion,
//! AWS event-stream decoding, token handling and the HTTP client.
//!
//! See `docs` in the README and the protocol notes for the wire format.

pub mod buffers;
pub mod client;
pub mod convert;
pub mod events;
pub mod eventstream;
pub mod mcp;
pub mod model_list;
pub mod models;
pub mod stream;
pub mod token;
pub mod websearch;
