//! Claude Code integration: `ccr code` (run Claude Code through ccr, starting a background
//! instance when none answers), `ccr stop` (stop that instance), and `ccr statusline` (the
//! command for Claude Code's `statusLine` setting).

pub mod code;
pub mod statusline;

pub use crate::cli::{CodeArgs, StatuslineArgs};
