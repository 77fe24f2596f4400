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

/// Draw the pane in `area`. The bars start at zero (a bar twice as high is twice as slow) and
/// the bottom border states the scale, so samples of 121–124 ms read as flat, not as a spike.
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
    if let Some((_, hi)) = range {
        block = block.title_bottom(
            Line::from(Span::styled(format!(" scale 0–{} ", format_ms(hi)), theme::DIM)).right_aligned(),
        );
    }
    frame.render_widget(block, area);
    let [stats, chart] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    frame.render_widget(Paragraph::new(stats_line(p)), stats);
    if range.is_none() {
        frame.render_widget(Paragraph::new(Span::styled("no samples yet", theme::DIM)), chart);
        return;
    }
    // Whole milliseconds from zero: the tallest bar is the slowest sample shown.
    let bars = shown.iter().map(|s| {
        let above = if s.ms.is_finite() { s.ms.max(0.0).round() as u64 } else { 0 };
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
