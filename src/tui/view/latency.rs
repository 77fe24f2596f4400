//! Latency history of the selected provider: a sparkline of its recent samples (requests in the
//! latency colour, health probes dimmed) under a line with the EWMA, the last and the peak.

use crate::balancer::{ProviderSnapshot, SampleSource};
use crate::tui::app::App;
use crate::tui::theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline, SparklineBar};

/// Draw the pane in `area`. The bars span the shown samples' range (lowest sample = lowest
/// bar), stated in the bottom border, so that a change of a few hundred ms on top of seconds of
/// latency is visible.
pub(super) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let provider = app.selected_provider().map(|v| &v.core);
    let mut title = vec![Span::styled(" latency ", theme::TITLE)];
    if let Some(p) = provider {
        title.push(Span::styled(format!("{} ", p.id), theme::TEXT));
    }
    let mut block = Block::bordered().title(Line::from(title)).border_style(theme::BORDER);
    let Some(p) = provider else {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(Paragraph::new(Span::styled("no providers", theme::DIM)), inner);
        return;
    };
    let inner = block.inner(area);
    // The newest samples that fit, oldest on the left.
    let all = &p.latency.samples;
    let shown = &all[all.len() - all.len().min(usize::from(inner.width))..];
    let range = shown.iter().filter(|s| s.ms.is_finite()).fold(None, |r: Option<(f64, f64)>, s| {
        Some(r.map_or((s.ms, s.ms), |(lo, hi)| (lo.min(s.ms), hi.max(s.ms))))
    });
    if let Some((lo, hi)) = range {
        block = block.title_bottom(
            Line::from(Span::styled(format!(" {}–{} ", format_ms(lo), format_ms(hi)), theme::DIM))
                .right_aligned(),
        );
    }
    frame.render_widget(block, area);
    let [stats, chart] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    frame.render_widget(Paragraph::new(stats_line(p)), stats);
    let Some((lo, _)) = range else {
        frame.render_widget(Paragraph::new(Span::styled("no samples yet", theme::DIM)), chart);
        return;
    };
    // Whole milliseconds above a floor just under the lowest sample, so it still gets a sliver.
    let floor = (lo * 0.9).max(0.0);
    let bars = shown.iter().map(|s| {
        let above = if s.ms.is_finite() { (s.ms - floor).max(0.0).round() as u64 } else { 0 };
        let style = match s.source {
            SampleSource::Request => theme::LATENCY,
            SampleSource::Probe => theme::DIM,
        };
        SparklineBar::from(above).style(Some(style))
    });
    frame.render_widget(Sparkline::default().data(bars).bar_set(symbols::bar::NINE_LEVELS), chart);
}

/// `ewma 720ms · last 850ms` (dashes while unmeasured).
fn stats_line(p: &ProviderSnapshot) -> Line<'static> {
    let mut spans = Vec::new();
    let mut item = |label: &str, value: Option<f64>| {
        if !spans.is_empty() {
            spans.push(Span::styled(" · ", theme::DIM));
        }
        spans.push(Span::styled(format!("{label} "), theme::DIM));
        spans.push(match value {
            Some(v) => Span::raw(format_ms(v)),
            None => Span::styled("-", theme::DIM),
        });
    };
    item("ewma", p.latency.measured.then_some(p.latency.ewma_ms));
    item("last", p.latency.last_ttfb_ms);
    Line::from(spans)
}

/// `850ms` below ten seconds, else `12.3s`.
pub(crate) fn format_ms(ms: f64) -> String {
    if ms < 10_000.0 { format!("{ms:.0}ms") } else { format!("{:.1}s", ms / 1000.0) }
}
