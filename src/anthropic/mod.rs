//! The Anthropic Messages API as Claude Code speaks it: request types, error bodies, SSE events.

mod blocks;
pub mod error;
pub mod sse;
pub mod text;
pub mod types;

pub use error::{ApiError, ErrorKind};
