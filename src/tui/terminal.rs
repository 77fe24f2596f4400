//! Owning the terminal: raw mode and the alternate screen on the way in, and the terminal given
//! back on every way out.
//!
//! Two mechanisms cover the exits: [`TerminalGuard`]'s `Drop` (normal return, `?` errors, task
//! cancellation, unwinding) and a panic hook installed by [`TerminalGuard::enter`]: a panic on the
//! dashboard's thread restores the terminal *before* the panic message is printed, so the message
//! is readable and the shell is usable. A panic on another thread (a request handler's task, which
//! tokio contains) is not an exit: the hook logs it to the dashboard's log pane instead of printing
//! over the screen, and the dashboard stays up. Restoring twice is harmless: [`restore`] does the
//! work once per entry.

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::thread::ThreadId;

/// Whether the terminal is currently in dashboard mode (raw, alternate screen).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The thread that entered dashboard mode: its panics end the dashboard.
static DASHBOARD_THREAD: Mutex<Option<ThreadId>> = Mutex::new(None);

/// The panic hook is chained once per process, however often the dashboard is entered.
static PANIC_HOOK: Once = Once::new();

/// The terminal type the dashboard draws on.
pub(super) type DashboardTerminal = Terminal<CrosstermBackend<Stdout>>;

/// Holds the terminal in dashboard mode; dropping it restores the terminal.
pub(super) struct TerminalGuard {
    terminal: DashboardTerminal,
}

impl TerminalGuard {
    /// Switch to raw mode and the alternate screen, hide the cursor, and make sure a panic
    /// restores all of that first.
    pub(super) fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        *DASHBOARD_THREAD.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current().id());
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        // From here on, an error must undo what was done: `restore` knows how.
        let setup = || -> io::Result<DashboardTerminal> {
            execute!(io::stdout(), EnterAlternateScreen, Hide)?;
            let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
            terminal.clear()?;
            Ok(terminal)
        };
        match setup() {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    /// The terminal to draw on.
    pub(super) fn terminal(&mut self) -> &mut DashboardTerminal {
        &mut self.terminal
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Give the terminal back: leave raw mode and the alternate screen, show the cursor. Does
/// nothing when the dashboard is not up; errors are ignored (there is nobody left to tell).
pub(super) fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    }
}

/// What the panic hook does with a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnPanic {
    /// The dashboard is not up: the previous hook prints as usual.
    Print,
    /// The dashboard's own thread: restore the terminal, then print.
    RestoreAndPrint,
    /// Another thread while the dashboard is up: log it to the log pane, print nothing.
    Log,
}

fn on_panic(active: bool, dashboard: Option<ThreadId>, current: ThreadId) -> OnPanic {
    match (active, dashboard) {
        (false, _) => OnPanic::Print,
        (true, Some(t)) if t != current => OnPanic::Log,
        (true, _) => OnPanic::RestoreAndPrint,
    }
}

/// Chain a panic hook that restores the terminal before the previous hook prints the panic.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let dashboard = *DASHBOARD_THREAD.lock().unwrap_or_else(|e| e.into_inner());
            match on_panic(ACTIVE.load(Ordering::SeqCst), dashboard, std::thread::current().id()) {
                OnPanic::Print => previous(info),
                OnPanic::RestoreAndPrint => {
                    restore();
                    previous(info);
                }
                OnPanic::Log => tracing::error!("panic in a background thread (the proxy goes on): {info}"),
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dashboards_own_panics_take_the_terminal_down() {
        let here = std::thread::current().id();
        let other = std::thread::spawn(|| std::thread::current().id()).join().expect("thread");
        assert_eq!(on_panic(false, Some(here), other), OnPanic::Print);
        assert_eq!(on_panic(false, None, here), OnPanic::Print);
        assert_eq!(on_panic(true, Some(here), here), OnPanic::RestoreAndPrint);
        assert_eq!(on_panic(true, None, here), OnPanic::RestoreAndPrint);
        assert_eq!(on_panic(true, Some(here), other), OnPanic::Log);
    }
}
