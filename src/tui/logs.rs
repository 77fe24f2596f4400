//! The log pane's source, and routing `tracing` into it while the dashboard is up.
//!
//! Live, the pane is tui-logger's widget over its global buffer, fed by a `tracing` layer that
//! replaces the stderr subscriber: nothing is printed outside the dashboard. Tests and
//! screenshots use fixed lines instead, so that whole-screen snapshots hold no clock values.

use std::sync::OnceLock;
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tui_logger::{TuiWidgetEvent, TuiWidgetState};

/// Lines the tui-logger buffer keeps for scrolling back.
pub const LOG_BUFFER_LINES: usize = 5_000;

/// One fixed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// The module that logged it.
    pub target: String,
    /// The message.
    pub message: String,
}

impl LogLine {
    /// A fixed line.
    pub fn new(level: Level, target: impl Into<String>, message: impl Into<String>) -> LogLine {
        LogLine { level, target: target.into(), message: message.into() }
    }
}

/// Where the log pane's lines come from.
pub enum LogPane {
    /// tui-logger's global buffer, with this widget state (scroll position, target selector).
    Live(TuiWidgetState),
    /// These lines, oldest first (tests, screenshots).
    Fixed(Vec<LogLine>),
}

impl Default for LogPane {
    fn default() -> LogPane {
        LogPane::Fixed(Vec::new())
    }
}

impl LogPane {
    /// The live pane, with tui-logger's target selector hidden (`t` shows it).
    pub fn live() -> LogPane {
        let state = TuiWidgetState::new().set_default_display_level(tui_logger::LevelFilter::Trace);
        state.transition(TuiWidgetEvent::HideKey);
        LogPane::Live(state)
    }

    /// Pass a key on to tui-logger (fixed lines have nothing to scroll).
    pub fn transition(&self, event: TuiWidgetEvent) {
        if let LogPane::Live(state) = self {
            state.transition(event);
        }
    }
}

/// Why logging could not be routed into the dashboard.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("cannot start the log collector: {0}")]
    Collector(String),
    #[error("a logger is already installed: {0}")]
    AlreadySet(String),
}

/// Route `tracing` into tui-logger, filtered by `$CCR_LOG` (default `info`). Call once, before
/// the dashboard starts and instead of the stderr subscriber; later calls return the first result.
pub fn init_logging() -> Result<(), &'static LogInitError> {
    static INIT: OnceLock<Result<(), LogInitError>> = OnceLock::new();
    INIT.get_or_init(|| {
        tui_logger::init_logger(tui_logger::LevelFilter::Trace)
            .map_err(|e| LogInitError::Collector(e.to_string()))?;
        tui_logger::set_buffer_depth(LOG_BUFFER_LINES);
        let filter = tracing_subscriber::EnvFilter::try_from_env("CCR_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::registry()
            .with(filter)
            .with(tui_logger::TuiTracingSubscriberLayer)
            .try_init()
            .map_err(|e| LogInitError::AlreadySet(e.to_string()))
    })
    .as_ref()
    .map(|_| ())
}
