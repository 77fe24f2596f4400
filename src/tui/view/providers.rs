//! The providers table: one row per provider with status, breaker, weight, load, latency,
//! counters and last error. The selected row is the target of every operator key.

use crate::snapshot::ProviderView;
use crate::tui::app::App;
use crate::tui::keymap::Focus;
use crate::tui::theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Row, Table, TableState};

/// Column headers, in order.
const HEADERS: [&str; 13] = [
    "provider",
    "status",
    "credits",
    "tier",
    "reset",
    "sess",
    "breaker",
    "weight",
    "in-flt",
    "ewma ms",
    "reqs",
    "errs",
    "last error",
];

/// Cells of the credits gauge.
const GAUGE_CELLS: usize = 5;

/// Draw the table in `area`.
pub(super) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let providers = &app.snapshot().providers;
    let id_width = providers.iter().map(|p| p.core.id.chars().count()).max().unwrap_or(8).clamp(8, 24);
    let widths = [
        Constraint::Length(u16::try_from(id_width).unwrap_or(24)),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(4),
        Constraint::Length(4),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Fill(1),
    ];
    let header = Row::new(HEADERS.iter().map(|h| Cell::from(*h))).style(theme::HEADER);
    let now = app.snapshot().taken_at;
    let rows = providers.iter().map(|p| row(p, now));
    let focused = app.focus() == Focus::Providers && !app.help_open();
    let title = Line::from(vec![
        Span::styled(" providers ", theme::TITLE),
        Span::styled(format!("{} ", providers.len()), theme::DIM),
    ]);
    let block = Block::bordered().title(title).border_style(if focused {
        theme::FOCUSED_BORDER
    } else {
        theme::BORDER
    });
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .row_highlight_style(theme::SELECTED)
        .highlight_symbol("▶")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state =
        TableState::default().with_selected((!providers.is_empty()).then_some(app.selected_index()));
    frame.render_stateful_widget(table, area, &mut state);
}

/// The credits gauge (`▰▰▰▱▱ 62%` of the credits left), its tier without `KIRO `, and the days
/// to the reset.
fn credit_cells(view: &ProviderView, now: chrono::DateTime<chrono::Utc>) -> [Cell<'static>; 3] {
    let dash = || Cell::from(Span::styled("-", theme::DIM));
    let Some(u) = &view.core.usage else { return [dash(), dash(), dash()] };
    let share = if u.limit > 0.0 { (u.remaining / u.limit).clamp(0.0, 1.0) } else { 0.0 };
    let filled = ((share * GAUGE_CELLS as f64).round() as usize).min(GAUGE_CELLS);
    let bar = format!("{}{}{:>3.0}%", "▰".repeat(filled), "▱".repeat(GAUGE_CELLS - filled), share * 100.0);
    let tier = u.tier.as_deref().map_or("-".to_owned(), |t| t.trim_start_matches("KIRO ").to_owned());
    let reset =
        u.reset_at.map_or("-".to_owned(), |t| format!("{}d", ((t - now).num_hours().max(0) + 23) / 24));
    [Cell::from(Span::styled(bar, theme::credits(share))), Cell::from(tier), Cell::from(reset)]
}

fn row(view: &ProviderView, now: chrono::DateTime<chrono::Utc>) -> Row<'static> {
    let p = &view.core;
    let (status, status_style) = theme::provider_status(view.status);
    let breaker = match &p.breaker {
        Some(b) => Cell::from(Span::styled(theme::breaker_label(b.state), theme::breaker(b.state))),
        None => Cell::from(Span::styled("-", theme::DIM)),
    };
    let weight = match p.weight_override {
        Some(w) => Cell::from(Span::styled(format!("{}→{w}", p.weight), theme::OPERATOR)),
        None => Cell::from(p.weight.to_string()),
    };
    let cap = if p.max_concurrent == 0 { "-".to_string() } else { p.max_concurrent.to_string() };
    let in_flight_style =
        if p.max_concurrent > 0 && p.in_flight >= p.max_concurrent { theme::WARN } else { theme::TEXT };
    let ewma = if p.latency.measured {
        Cell::from(format!("{:.0}", p.latency.ewma_ms))
    } else {
        Cell::from(Span::styled("-", theme::DIM))
    };
    let errors = p.counters.failures;
    let errors =
        Cell::from(Span::styled(errors.to_string(), if errors > 0 { theme::BAD } else { theme::TEXT }));
    let last_error = p.last_error.as_ref().map(|e| e.message.clone()).map_or_else(
        || Cell::from(Span::styled("-", theme::DIM)),
        |m| Cell::from(Span::styled(m, theme::WARN)),
    );
    let [credits, tier, reset] = credit_cells(view, now);
    Row::new(vec![
        Cell::from(p.id.clone()),
        Cell::from(Span::styled(status, status_style)),
        credits,
        tier,
        reset,
        Cell::from(p.sessions.to_string()),
        breaker,
        weight,
        Cell::from(Span::styled(format!("{}/{cap}", p.in_flight), in_flight_style)),
        ewma,
        Cell::from(p.counters.requests.to_string()),
        errors,
        last_error,
    ])
}
