//! The providers table: one row per provider with status, credits (gauge, tier, days to the
//! reset), bound conversations, breaker, weight, load, latency, counters and last error. The selected row is the target of every operator key.

use crate::snapshot::ProviderView;
use crate::tui::app::App;
use crate::tui::keymap::Focus;
use crate::tui::theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Row, Table, TableState};

/// The optional columns, in the order they are given up when the terminal is narrow (first
/// dropped first): the id, the status and the reason are always shown.
const OPTIONAL: [Column; 10] = [
    Column::Ewma,
    Column::Requests,
    Column::Tier,
    Column::Sessions,
    Column::Reset,
    Column::InFlight,
    Column::Breaker,
    Column::Errors,
    Column::Weight,
    Column::Credits,
];

/// Cells of the credits gauge.
const GAUGE_CELLS: usize = 5;

/// The narrowest "why" column kept before optional columns are given up.
const MIN_REASON: u16 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Id,
    Status,
    Credits,
    Tier,
    Reset,
    Sessions,
    Breaker,
    Weight,
    InFlight,
    Ewma,
    Requests,
    Errors,
    Reason,
}

impl Column {
    fn header(self) -> &'static str {
        match self {
            Column::Id => "provider",
            Column::Status => "status",
            Column::Credits => "credits",
            Column::Tier => "tier",
            Column::Reset => "reset",
            Column::Sessions => "sess",
            Column::Breaker => "breaker",
            Column::Weight => "weight",
            Column::InFlight => "in-flt",
            Column::Ewma => "ewma ms",
            Column::Requests => "reqs",
            Column::Errors => "errs",
            Column::Reason => "why / last error",
        }
    }

    fn width(self) -> u16 {
        match self {
            Column::Breaker | Column::Credits => 9,
            Column::Weight | Column::Ewma => 7,
            Column::InFlight | Column::Requests => 6,
            Column::Errors | Column::Tier | Column::Reset => 5,
            Column::Sessions => 4,
            Column::Id | Column::Status | Column::Reason => 0,
        }
    }
}

/// The columns shown in `width` cells, in display order, with the id column's width.
fn layout(width: u16, id_width: u16, status_width: u16) -> Vec<(Column, u16)> {
    // Borders (2) and the highlight symbol (1); one space between columns.
    let inner = width.saturating_sub(3);
    let fixed = id_width + 1 + status_width + 1;
    let mut shown: Vec<Column> = OPTIONAL.to_vec();
    let used = |cols: &[Column]| fixed + cols.iter().map(|c| c.width() + 1).sum::<u16>();
    while !shown.is_empty() && inner.saturating_sub(used(&shown)) < MIN_REASON {
        shown.remove(0);
    }
    let order = [
        Column::Id,
        Column::Status,
        Column::Credits,
        Column::Tier,
        Column::Reset,
        Column::Sessions,
        Column::Breaker,
        Column::Weight,
        Column::InFlight,
        Column::Ewma,
        Column::Requests,
        Column::Errors,
        Column::Reason,
    ];
    let reason = inner.saturating_sub(used(&shown));
    order
        .into_iter()
        .filter(|c| matches!(c, Column::Id | Column::Status | Column::Reason) || shown.contains(c))
        .map(|c| {
            let w = match c {
                Column::Id => id_width,
                Column::Status => status_width,
                Column::Reason => reason,
                other => other.width(),
            };
            (c, w)
        })
        .collect()
}

/// `text` in at most `width` cells: cut with an ellipsis, never silently.
fn ellipsize(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `12s`, `5m`, `3h`, `2d`: a duration in its largest whole unit.
fn short_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// What the operator wants to know of a healthy account: when its token expires, when its
/// health and its credits were last checked.
fn account_facts(view: &ProviderView, snapshot: &crate::snapshot::Snapshot) -> Option<String> {
    let mut facts = Vec::new();
    if let Some(at) = view.token.expires_at {
        let left = (at - snapshot.taken_at).num_milliseconds();
        facts.push(if left > 0 {
            format!("token expires in {}", short_duration(left.unsigned_abs()))
        } else {
            "token expired (refreshed on the next request)".to_owned()
        });
    }
    if let Some(at) = view.core.health.last_check_ms {
        facts.push(format!("health checked {} ago", short_duration(snapshot.now_ms.saturating_sub(at))));
    }
    if let Some(u) = &view.core.usage {
        let ago = (snapshot.taken_at - u.checked_at).num_milliseconds().max(0).unsigned_abs();
        facts.push(format!("credits checked {} ago", short_duration(ago)));
    }
    (!facts.is_empty()).then(|| facts.join(" · "))
}

/// Draw the table in `area`. The bottom border says why the selected provider is not healthy.
pub(super) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let providers = &app.snapshot().providers;
    let longest = providers.iter().map(|p| p.core.id.chars().count()).max().unwrap_or(8);
    // Ids beyond a third of the width are ellipsised.
    let id_cap = usize::from(area.width / 4).clamp(8, 24);
    let id_width = u16::try_from(longest.clamp(8, id_cap)).unwrap_or(24);
    let status_width = providers.iter().map(|p| p.status.as_str().len()).max().unwrap_or(7).max(7);
    let status_width = u16::try_from(status_width).unwrap_or(15);
    let columns = layout(area.width, id_width, status_width);
    let widths: Vec<Constraint> = columns
        .iter()
        .map(|(c, w)| if *c == Column::Reason { Constraint::Fill(1) } else { Constraint::Length(*w) })
        .collect();
    let header = Row::new(columns.iter().map(|(c, _)| Cell::from(c.header()))).style(theme::HEADER);
    let now = app.snapshot().taken_at;
    let rows = providers.iter().map(|p| row(p, &columns, now));
    let focused = app.focus() == Focus::Providers && !app.help_open();
    let title = Line::from(vec![
        Span::styled(" providers ", theme::TITLE),
        Span::styled(format!("{} ", providers.len()), theme::DIM),
    ]);
    let mut block = Block::bordered().title(title).border_style(if focused {
        theme::FOCUSED_BORDER
    } else {
        theme::BORDER
    });
    if let Some(view) = app.selected_provider() {
        let room = usize::from(area.width.saturating_sub(4));
        let line = match &view.status_reason {
            Some(reason) => {
                let (_, style) = theme::provider_status(view.status);
                Some(Span::styled(ellipsize(&format!(" {}: {reason} ", view.core.id), room), style))
            }
            None => account_facts(view, app.snapshot()).map(|facts| {
                Span::styled(ellipsize(&format!(" {}: {facts} ", view.core.id), room), theme::DIM)
            }),
        };
        if let Some(line) = line {
            block = block.title_bottom(Line::from(line));
        }
    }
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

fn row(view: &ProviderView, columns: &[(Column, u16)], now: chrono::DateTime<chrono::Utc>) -> Row<'static> {
    let p = &view.core;
    let [credits, tier, reset] = credit_cells(view, now);
    let mut credit_parts = [Some(credits), Some(tier), Some(reset)];
    let mut cell = |column: Column, width: u16| -> Cell<'static> {
        match column {
            Column::Credits => credit_parts[0].take().unwrap_or_default(),
            Column::Tier => credit_parts[1].take().unwrap_or_default(),
            Column::Reset => credit_parts[2].take().unwrap_or_default(),
            Column::Sessions => Cell::from(p.sessions.to_string()),
            Column::Id => Cell::from(ellipsize(&p.id, usize::from(width))),
            Column::Status => {
                let (status, style) = theme::provider_status(view.status);
                Cell::from(Span::styled(status, style))
            }
            Column::Breaker => match &p.breaker {
                Some(b) => Cell::from(Span::styled(b.state.as_str(), theme::breaker(b.state))),
                None => Cell::from(Span::styled("-", theme::DIM)),
            },
            Column::Weight => match p.weight_override {
                Some(w) => Cell::from(Span::styled(format!("{}→{w}", p.weight), theme::OPERATOR)),
                None => Cell::from(p.weight.to_string()),
            },
            Column::InFlight => {
                let cap = if p.max_concurrent == 0 { "-".to_string() } else { p.max_concurrent.to_string() };
                let style = if p.max_concurrent > 0 && p.in_flight >= p.max_concurrent {
                    theme::WARN
                } else {
                    theme::TEXT
                };
                Cell::from(Span::styled(format!("{}/{cap}", p.in_flight), style))
            }
            Column::Ewma => {
                if p.latency.measured {
                    Cell::from(format!("{:.0}", p.latency.ewma_ms))
                } else {
                    Cell::from(Span::styled("-", theme::DIM))
                }
            }
            Column::Requests => Cell::from(p.counters.requests.to_string()),
            Column::Errors => {
                let errors = p.counters.failures;
                Cell::from(Span::styled(
                    errors.to_string(),
                    if errors > 0 { theme::BAD } else { theme::TEXT },
                ))
            }
            // Why it is not healthy, else the last error (dimmed: it no longer matters).
            Column::Reason => match (&view.status_reason, &p.last_error) {
                (Some(reason), _) => {
                    Cell::from(Span::styled(ellipsize(reason, usize::from(width)), theme::WARN))
                }
                (None, Some(e)) => {
                    Cell::from(Span::styled(ellipsize(&e.message, usize::from(width)), theme::DIM))
                }
                (None, None) => Cell::from(Span::styled("-", theme::DIM)),
            },
        }
    };
    Row::new(columns.iter().map(|(c, w)| cell(*c, *w)).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_terminals_give_up_ewma_first_and_keep_id_status_and_reason() {
        let all = layout(160, 13, 12);
        assert_eq!(all.len(), 13);
        let at_120: Vec<Column> = layout(120, 13, 12).into_iter().map(|(c, _)| c).collect();
        assert!(at_120.contains(&Column::Credits) && !at_120.contains(&Column::Ewma));
        let at_80: Vec<Column> = layout(80, 13, 12).into_iter().map(|(c, _)| c).collect();
        assert!(!at_80.contains(&Column::Ewma));
        for kept in [Column::Id, Column::Status, Column::Reason] {
            assert!(at_80.contains(&kept));
        }
        let tiny: Vec<Column> = layout(40, 13, 12).into_iter().map(|(c, _)| c).collect();
        assert_eq!(tiny, [Column::Id, Column::Status, Column::Reason]);
        assert_eq!(ellipsize("codewhisperer-secondary", 10), "codewhisp…");
        assert_eq!(ellipsize("short", 10), "short");
        assert_eq!(
            [0, 59_999, 60_000, 3_599_999, 3_600_000, 86_400_000].map(short_duration),
            ["0s", "59s", "1m", "59m", "1h", "1d"]
        );
    }
}
