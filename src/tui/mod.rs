//! The dashboard (`ccr tui`): the proxy and a ratatui view of it in one process.
//!
//! Data flows one way. The runtime publishes an `Arc<Snapshot>` on a watch channel; the event
//! loop hands each new one to [`App`], which the pure [`render`] draws. Keys go through the pure
//! `keymap::map_key` to an [`Action`]; actions that change the proxy become [`UiCommand`]s on a bounded
//! channel, carried out elsewhere (by `app::dashboard`, through the same command path as the admin
//! API), and their outcome comes back as a [`Feedback`] line. [`run_dashboard`] takes only those
//! channels: the dashboard cannot reach the running instance, so the one-way flow is a matter of
//! types, not discipline.
//!
//! The loop redraws only when something changed (a snapshot, a key, a command result, a resize,
//! or once a second for the clock), and at most every [`FRAME_INTERVAL`]. While it is up,
//! `tracing` goes to the log pane (tui-logger) and nothing is printed; the terminal is restored
//! on every exit path, panics included ([`terminal`]).
//!
//! `ccr tui` and `ccr demo` start it through `app::dashboard`; the demo turns on its fault keys.

mod app;
mod command;
mod keymap;
pub mod logs;
pub mod sample;
mod terminal;
mod theme;
mod view;

#[cfg(test)]
mod tests;

pub use app::App;
pub(crate) use command::COMMAND_QUEUE;
pub use command::{Feedback, Progress, UiCommand};
pub use keymap::{Action, DemoAction, Focus, KeyContext};
pub use logs::{LogLine, LogPane, init_logging};
pub use view::render;

use crate::snapshot::Snapshot;
use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use terminal::{DashboardTerminal, TerminalGuard};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Shortest time between two redraws: at most ten frames a second, however busy the proxy is.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(100);

/// Longest time without a redraw, so the uptime and the log pane move while nothing changes.
pub const IDLE_REDRAW: Duration = Duration::from_secs(1);

/// Why the dashboard stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// The terminal could not be set up, read or drawn on (e.g. stdin is not a terminal).
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Take over the terminal and show the snapshots until the user quits (`q`, Ctrl-C) or the
/// process gets SIGINT. Key presses go out on `commands`; their results come back on `feedback`.
/// With `demo_keys`, the demo's fault keys are live. The terminal is given back before this
/// returns (or unwinds); the proxy keeps running: stopping it is the caller's.
///
/// Call [`init_logging`] first, so that nothing is printed over the dashboard.
pub async fn run_dashboard(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    commands: mpsc::Sender<UiCommand>,
    mut feedback: mpsc::Receiver<Feedback>,
    demo_keys: bool,
) -> Result<(), TuiError> {
    let first = snapshots.borrow_and_update().clone();
    let mut app = App::new(first, commands).with_log_pane(LogPane::live());
    if demo_keys {
        app = app.with_demo_keys();
    }
    let mut guard = TerminalGuard::enter()?;
    event_loop(guard.terminal(), &mut app, &mut snapshots, &mut feedback).await
    // The guard drops here: the terminal is back before anything else happens; the App (and its
    // command sender) goes with it.
}

/// Draw when something changed, at most every [`FRAME_INTERVAL`]; stop when the app quits.
async fn event_loop(
    terminal: &mut DashboardTerminal,
    app: &mut App,
    snapshots: &mut watch::Receiver<Arc<Snapshot>>,
    feedback: &mut mpsc::Receiver<Feedback>,
) -> Result<(), TuiError> {
    let mut events = EventStream::new();
    let mut signals = crate::signals::StopSignals::install();
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    let mut snapshots_open = true;
    loop {
        let now = Instant::now();
        let mut next_frame = None;
        if dirty {
            match last_draw.map(|t| t + FRAME_INTERVAL).filter(|due| *due > now) {
                Some(due) => next_frame = Some(due),
                None => {
                    terminal.draw(|frame| render(app, frame))?;
                    last_draw = Some(now);
                    dirty = false;
                }
            }
        }
        let idle_deadline = last_draw.unwrap_or(now) + IDLE_REDRAW;
        let wake = next_frame.unwrap_or(idle_deadline);
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => dirty |= app.on_key(key),
                Some(Ok(Event::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
            changed = snapshots.changed(), if snapshots_open => match changed {
                Ok(()) => {
                    let latest = snapshots.borrow_and_update().clone();
                    app.on_snapshot(latest);
                    dirty = true;
                }
                Err(_) => snapshots_open = false,
            },
            Some(result) = feedback.recv() => {
                app.on_feedback(result);
                dirty = true;
            }
            _ = signals.next() => app.apply(Action::Quit),
            () = tokio::time::sleep_until(wake) => {
                if next_frame.is_none() {
                    // A second without a change: redraw for the log pane.
                    dirty = true;
                }
            }
        }
        if app.should_quit() {
            return Ok(());
        }
    }
}
