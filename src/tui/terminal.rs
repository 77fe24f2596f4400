//! Owning the terminal: raw mode and the alternate screen on the way in, and the terminal given
//! back on every way out.
//!
//! Two mechanisms cover the exits: [`TerminalGuard`]'s `Drop` (normal return, `?` errors, task
//! cancellation) and a panic hook installed by [`TerminalGuard::enter`] (a panic anywhere, on any
//! thread, restores the terminal *before* the panic message is printed, so the message is readable
//! and the shell is usable). Restoring twice is harmless: [`restore`] does the work once per entry.

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use std::io::{self, Stdout};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the terminal is currently in dashboard mode (raw, alternate screen).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The panic hook is chained once per process, however often the dashboard is entered.
static PANIC_HOOK: Once = Once::new();

/// The terminal type the dashboard draws on.
pub type DashboardTerminal = Terminal<CrosstermBackend<Stdout>>;

/// Holds the terminal in dashboard mode; dropping it restores the terminal.
pub struct TerminalGuard {
    terminal: DashboardTerminal,
}

impl TerminalGuard {
    /// Switch to raw mode and the alternate screen, hide the cursor, and make sure a panic
    /// restores all of that first.
    pub fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
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
    pub fn terminal(&mut self) -> &mut DashboardTerminal {
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
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    }
}

/// Chain a panic hook that restores the terminal before the previous hook prints the panic.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
