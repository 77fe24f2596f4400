//! The routes table: for each routing category, its strategy, its providers with the weight each
//! has in that rule (run-time overrides marked `*`), how its latest picks were spread, and the
//! model it asks for.

use crate::balancer::{RuleSnapshot, StrategyKind};
use crate::snapshot::Snapshot;
use crate::tui::app::{App, RECENT_PICKS};
use crate::tui::theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Row, Table};

/// One rule, as the table shows it.
struct RouteRow {
    category: String,
    strategy: &'static str,
    providers: Line<'static>,
    recent: String,
    model: String,
}

/// Widest "recent" column: with many providers the counts are cut rather than the providers.
const MAX_RECENT_WIDTH: usize = 9;

/// Draw the table in `area`. The model column is shown only when it fits next to the full
/// providers list: on a narrow terminal the providers matter more.
pub(super) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let snapshot = app.snapshot();
    let rows: Vec<RouteRow> = snapshot
        .rules
        .iter()
        .map(|view| {
            let rule = &view.core;
            RouteRow {
                category: rule.category.clone(),
                strategy: strategy_label(rule.strategy),
                providers: providers_line(rule, snapshot),
                recent: app.recent_picks(rule).iter().map(usize::to_string).collect::<Vec<_>>().join("/"),
                model: view.model.as_deref().map_or_else(|| "-".into(), short_model),
            }
        })
        .collect();
    let widest = |f: fn(&RouteRow) -> usize, min: usize| rows.iter().map(f).max().unwrap_or(0).max(min);
    let category_w = widest(|r| r.category.chars().count(), 8);
    let recent_w = widest(|r| r.recent.chars().count(), 6).min(MAX_RECENT_WIDTH);
    let providers_w = widest(|r| r.providers.width(), 16);
    let model_w = widest(|r| r.model.chars().count(), 5);
    let inner = usize::from(area.width.saturating_sub(2));
    let fixed = category_w + 11 + recent_w + 3;
    let show_model = inner >= fixed + providers_w + 1 + model_w;
    let len = |w: usize| Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX));
    let mut widths = vec![len(category_w), len(11), Constraint::Fill(1), len(recent_w)];
    let mut header = vec!["category", "strategy", "providers:weight", "recent"];
    if show_model {
        widths.push(len(model_w));
        header.push("model");
    }
    let table_rows = rows.into_iter().map(|r| {
        let mut cells = vec![
            Cell::from(r.category),
            Cell::from(r.strategy),
            Cell::from(r.providers),
            Cell::from(r.recent),
        ];
        if show_model {
            cells.push(Cell::from(Span::styled(r.model, theme::DIM)));
        }
        Row::new(cells)
    });
    let title = Line::from(vec![
        Span::styled(" routes ", theme::TITLE),
        Span::styled(format!("recent = last {RECENT_PICKS} picks "), theme::DIM),
    ]);
    let table = Table::new(table_rows, widths)
        .header(Row::new(header).style(theme::HEADER))
        .column_spacing(1)
        .block(Block::bordered().title(title).border_style(theme::BORDER));
    frame.render_widget(table, area);
}

/// A model id short enough for the column: lower case, without the `claude` prefix, the date
/// stamp and the version tag (`CLAUDE_SONNET_4_20250514_V1_0` → `sonnet-4`,
/// `claude-opus-4.6-1m` → `opus-4.6-1m`). Ids that do not look like that are kept as they are.
pub(super) fn short_model(id: &str) -> String {
    let lower = id.to_ascii_lowercase().replace('_', "-");
    let is_date = |t: &str| t.len() == 8 && t.bytes().all(|b| b.is_ascii_digit());
    let is_version_tag =
        |t: &str| t.strip_prefix('v').is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    let tokens: Vec<&str> = lower
        .split('-')
        .filter(|t| !t.is_empty())
        .skip_while(|t| *t == "claude")
        .take_while(|t| !is_version_tag(t))
        .filter(|t| !is_date(t))
        .collect();
    if tokens.is_empty() { id.to_owned() } else { tokens.join("-") }
}

/// A strategy name short enough for the column.
pub(crate) fn strategy_label(kind: StrategyKind) -> &'static str {
    match kind {
        StrategyKind::RoundRobin => "round-robin",
        StrategyKind::WeightedRoundRobin => "weighted-rr",
        StrategyKind::LeastConnections => "least-conn",
        StrategyKind::ResponseTime => "resp-time",
        StrategyKind::Single => "single",
        StrategyKind::Credits => "credits",
    }
}

/// `a:3 b:1*` (weights in force for this rule, `*` where a run-time override changed it), or
/// `a → b` for `single` with a fallback.
fn providers_line(rule: &RuleSnapshot, snapshot: &Snapshot) -> Line<'static> {
    let mut spans = Vec::new();
    if rule.strategy == StrategyKind::Single {
        if let Some(first) = rule.providers.first() {
            spans.push(Span::raw(first.id.clone()));
        }
        if let Some(fallback) = &rule.fallback {
            spans.push(Span::styled(" → ", theme::DIM));
            spans.push(Span::raw(fallback.clone()));
        }
        return Line::from(spans);
    }
    for (i, p) in rule.providers.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::raw(p.id.clone()));
        let configured = p.configured_weight.or_else(|| snapshot.provider(&p.id).map(|q| q.core.weight));
        let overridden = p.weight_override.is_some() || configured.is_some_and(|w| w != p.weight);
        let weight = format!(":{}{}", p.weight, if overridden { "*" } else { "" });
        spans.push(Span::styled(weight, if overridden { theme::OPERATOR } else { theme::DIM }));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::short_model;

    #[test]
    fn model_ids_are_shortened_for_the_table() {
        for (id, short) in [
            ("CLAUDE_SONNET_4_20250514_V1_0", "sonnet-4"),
            ("CLAUDE_3_7_SONNET_20250219_V1_0", "3-7-sonnet"),
            ("claude-sonnet-4.5", "sonnet-4.5"),
            ("claude-opus-4.6-1m", "opus-4.6-1m"),
            ("claude-sonnet-4-5-20250929", "sonnet-4-5"),
            ("auto", "auto"),
            ("claude", "claude"),
        ] {
            assert_eq!(short_model(id), short, "{id}");
        }
    }
}
