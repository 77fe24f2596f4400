//! Rendering: one pure function from [`App`] to a frame, one file per pane.
//!
//! ```text
//!  header (3 rows: listen, uptime, rate, load · config and reload · last command)
//!  providers table (selected row = target of the keys)
//!  routes table (or, with `k`, the keys)  │ latency of the selected provider
//!  log pane (tui-logger)
//!  footer (keys)
//! ```
//!
//! Heights adapt to the terminal: the providers table gets a row per provider when it can, the
//! routes a row per rule, the log pane the rest (at least three rows). At 80×24 with a few
//! providers every pane has room.

mod footer;
mod header;
mod help;
mod keys;
mod latency;
mod logs;
mod providers;
mod routes;

use super::app::App;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};

/// Rows of the log pane at least (border plus one line).
const MIN_LOG_ROWS: u16 = 3;
/// Rows of the routes / latency band at least (border, header or stats, two rows).
const MIN_MIDDLE_ROWS: u16 = 5;
/// Rows of the providers table at least (border, header, one row).
const MIN_PROVIDER_ROWS: u16 = 4;
/// Columns of the latency pane: this share of the width of the routes / latency band …
const LATENCY_PERCENT: u16 = 28;
/// … but at least this many (its stats line), so that 80 columns still show it whole.
const MIN_LATENCY_WIDTH: u16 = 26;

/// Draw the whole dashboard.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let s = app.snapshot();
    let middle_rows = if app.keys_open() { s.keys.keys.len().max(1) } else { s.rules.len() };
    let rows = split_rows(area, s.providers.len(), middle_rows);
    header::render(app, frame, rows.header);
    providers::render(app, frame, rows.providers);
    let [routes_area, latency_area] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(latency_width(rows.middle.width))])
            .areas(rows.middle);
    if app.keys_open() {
        keys::render(app, frame, routes_area);
    } else {
        routes::render(app, frame, routes_area);
    }
    latency::render(app, frame, latency_area);
    logs::render(app, frame, rows.logs);
    footer::render(app, frame, rows.footer);
    if app.help_open() {
        help::render(app, frame, area);
    }
}

/// The latency pane's width in a band `width` columns wide.
fn latency_width(width: u16) -> u16 {
    (width / 100 * LATENCY_PERCENT + width % 100 * LATENCY_PERCENT / 100)
        .max(MIN_LATENCY_WIDTH)
        .min(width / 2)
}

/// The screen's bands, top to bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rows {
    header: Rect,
    providers: Rect,
    middle: Rect,
    logs: Rect,
    footer: Rect,
}

/// Share the height: providers and routes get what they need when it fits; otherwise the routes
/// band shrinks to a third of the space, then the providers table scrolls.
fn split_rows(area: Rect, providers: usize, rules: usize) -> Rows {
    let body = area.height.saturating_sub(header::HEIGHT + 1);
    let want = |n: usize| u16::try_from(n).unwrap_or(u16::MAX).saturating_add(3);
    let want_providers = want(providers).max(MIN_PROVIDER_ROWS);
    let want_middle = want(rules).max(MIN_MIDDLE_ROWS + 1);
    let (p, m) = if want_providers + want_middle + MIN_LOG_ROWS <= body {
        (want_providers, want_middle)
    } else {
        let m = want_middle.min(body / 3).max(MIN_MIDDLE_ROWS);
        let p = body.saturating_sub(m + MIN_LOG_ROWS).clamp(MIN_PROVIDER_ROWS.min(body), want_providers);
        (p, m)
    };
    let [header, providers, middle, logs, footer] = Layout::vertical([
        Constraint::Length(header::HEIGHT),
        Constraint::Length(p),
        Constraint::Length(m),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    Rows { header, providers, middle, logs, footer }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_80x24_every_band_has_room() {
        let r = split_rows(Rect::new(0, 0, 80, 24), 3, 5);
        assert_eq!((r.header.height, r.providers.height, r.middle.height), (3, 6, 8));
        assert_eq!(r.logs.height, 24 - 3 - 6 - 8 - 1);
        assert_eq!(r.footer, Rect::new(0, 23, 80, 1));
    }

    #[test]
    fn many_providers_scroll_instead_of_squeezing_the_logs_away() {
        let r = split_rows(Rect::new(0, 0, 80, 24), 10, 5);
        assert!(r.logs.height >= MIN_LOG_ROWS, "{r:?}");
        assert!(r.middle.height >= MIN_MIDDLE_ROWS, "{r:?}");
        assert_eq!(r.header.height + r.providers.height + r.middle.height + r.logs.height + 1, 24);
        assert!(r.providers.height < 13, "the table scrolls: {r:?}");
    }

    #[test]
    fn a_tiny_terminal_does_not_panic() {
        for (w, h) in [(0, 0), (1, 1), (10, 3), (20, 8), (80, 10)] {
            let r = split_rows(Rect::new(0, 0, w, h), 10, 5);
            assert!(r.footer.bottom() <= h, "{r:?}");
        }
    }
}
