//! The developers' keys pane (toggled with `k`, in place of the routes table): each key with its
//! credits this month against its budget, the requests it has in flight, its requests-per-minute
//! limit, how often a limit refused it, and when it was last seen. Names only, never a key.

use crate::keys::{KeyView, credits_text};
use crate::tui::app::App;
use crate::tui::theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

/// Share of the budget from which the credits turn yellow.
const WARN_SHARE: f64 = 0.8;

/// Draw the pane in `area`.
pub(super) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let s = app.snapshot();
    let view = &s.keys;
    let mut title = vec![Span::styled(" keys ", theme::TITLE)];
    if !view.month.is_empty() {
        title.push(Span::styled(format!("{} · counters {} ", view.month, view.backend), theme::DIM));
    }
    let block = Block::bordered().title(Line::from(title)).border_style(theme::BORDER);
    if view.keys.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let text = "no developer keys (server.keys); add one with `ccr keys add NAME`";
        frame.render_widget(Paragraph::new(Span::styled(text, theme::DIM)), inner);
        return;
    }
    let now = s.taken_at;
    let cells: Vec<[(String, Style); 7]> = view
        .keys
        .iter()
        .map(|k| {
            let limited: u64 = k.limited.values().sum();
            [
                (k.name.clone(), theme::TEXT),
                credits_cell(k),
                (k.live_requests.to_string(), if k.live_requests > 0 { theme::GOOD } else { theme::DIM }),
                (k.limits.requests_per_minute.map_or_else(|| "-".into(), |n| n.to_string()), theme::TEXT),
                (k.requests.to_string(), theme::TEXT),
                (limited.to_string(), if limited > 0 { theme::WARN } else { theme::DIM }),
                (k.last_seen.map_or_else(|| "-".into(), |t| ago((now - t).num_seconds())), theme::DIM),
            ]
        })
        .collect();
    // Each column as wide as its widest cell or header; what is left stays empty on the right.
    let mut total = 0u16;
    let widths: Vec<Constraint> = HEADER
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let widest =
                cells.iter().map(|row| row[i].0.chars().count()).max().unwrap_or(0).max(h.chars().count());
            let w = u16::try_from(widest).unwrap_or(u16::MAX);
            total = total.saturating_add(w);
            Constraint::Length(w)
        })
        .collect();
    // Two spaces between columns when they fit, else one.
    let spacing = if total + 2 * 6 <= area.width.saturating_sub(2) { 2 } else { 1 };
    let rows =
        cells.into_iter().map(|row| Row::new(row.map(|(text, style)| Cell::from(Span::styled(text, style)))));
    let table = Table::new(rows, widths)
        .header(Row::new(HEADER).style(theme::HEADER))
        .column_spacing(spacing)
        .flex(ratatui::layout::Flex::Start)
        .block(block);
    frame.render_widget(table, area);
}

/// Column headers: developer, credits this month (of the budget), requests in flight, the
/// requests-per-minute limit, requests seen, requests refused by a limit, last request.
const HEADER: [&str; 7] = ["developer", "credits", "live", "rpm", "reqs", "limited", "seen"];

/// `287.4/300` in yellow from 80 % of the budget, red at it; `12.5` without a budget.
fn credits_cell(k: &KeyView) -> (String, Style) {
    let used = k.credits_this_month;
    match k.limits.monthly_credits {
        None => (credits_text(used), theme::TEXT),
        Some(budget) => {
            let style = if used >= budget {
                theme::BAD
            } else if used >= budget * WARN_SHARE {
                theme::WARN
            } else {
                theme::TEXT
            };
            (format!("{}/{}", credits_text(used), credits_text(budget)), style)
        }
    }
}

/// `now`, `12s`, `5m`, `3h`, `2d` ago.
fn ago(secs: i64) -> String {
    match secs {
        i64::MIN..=1 => "now".into(),
        2..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}
