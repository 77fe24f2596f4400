//! The header: where the proxy listens, how long it has run, the request rate and load, the config
//! file with the last reload's result, and the last command's outcome.

use crate::snapshot::{Snapshot, format_duration_ms};
use crate::tui::app::App;
use crate::tui::command::Progress;
use crate::tui::theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// Rows the header takes.
pub(super) const HEIGHT: u16 = 3;

/// Draw the header in `area`.
pub(super) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let s = app.snapshot();
    let lines = vec![status_line(s), config_line(s), feedback_line(app)];
    frame.render_widget(Paragraph::new(lines), area);
}

fn sep() -> Span<'static> {
    Span::styled("  ", theme::DIM)
}

fn status_line(s: &Snapshot) -> Line<'static> {
    let in_flight: u32 = s.providers.iter().map(|p| p.core.in_flight).sum();
    let available = s.providers.iter().filter(|p| p.available).count();
    let mut spans = vec![
        Span::styled(" ccr ", theme::BRAND),
        Span::raw(" "),
        Span::raw(s.listen.clone().unwrap_or_else(|| "not listening".into())),
        sep(),
        Span::styled("up ", theme::DIM),
        Span::raw(format_uptime(s.uptime_ms)),
        sep(),
        Span::raw(format!("{:.1}", s.requests_per_sec)),
        Span::styled(" req/s", theme::DIM),
        sep(),
        Span::raw(in_flight.to_string()),
        Span::styled(" in flight", theme::DIM),
        sep(),
        Span::styled(
            format!("{available}/{}", s.providers.len()),
            if available == 0 {
                theme::BAD
            } else if available < s.providers.len() {
                theme::WARN
            } else {
                theme::GOOD
            },
        ),
        Span::styled(" available", theme::DIM),
    ];
    if s.queue.waiting > 0 {
        spans.push(sep());
        spans.push(Span::styled(format!("{} queued", s.queue.waiting), theme::WARN));
    }
    Line::from(spans)
}

fn config_line(s: &Snapshot) -> Line<'static> {
    let age_ms = (s.taken_at - s.reload.at).num_milliseconds().max(0);
    let age = format_duration_ms(u64::try_from(age_ms).unwrap_or(0));
    // The first load happens as the instance starts; anything later is a reload.
    let reloaded = (s.reload.at - s.started_at).num_seconds() > 1;
    let mut spans = vec![Span::styled(" config ", theme::DIM), Span::raw(s.config_path.clone()), sep()];
    if s.reload.ok {
        spans.push(Span::styled("✓ ", theme::GOOD));
        spans.push(Span::raw(if reloaded { "reloaded" } else { "loaded" }));
        spans.push(Span::styled(format!(" {age} ago"), theme::DIM));
    } else {
        spans.push(Span::styled("✗ reload failed", theme::BAD));
        spans.push(Span::styled(format!(" {age} ago: "), theme::DIM));
        spans.push(Span::styled(s.reload.message.clone(), theme::BAD));
    }
    // A shared pool: whether Redis is reachable (alone, this instance decides on its own state).
    if let Some(connected) = s.state.connected {
        spans.push(sep());
        spans.push(Span::styled("state ", theme::DIM));
        spans.push(Span::styled(s.state.short(), if connected { theme::GOOD } else { theme::BAD }));
    }
    Line::from(spans)
}

fn feedback_line(app: &App) -> Line<'static> {
    match app.feedback() {
        Some(f) => {
            let (mark, style) = match f.progress {
                Progress::Pending => ("…", theme::DIM),
                Progress::Done => ("»", theme::GOOD),
                Progress::Failed => ("✗", theme::BAD),
            };
            Line::from(vec![
                Span::styled(format!(" {mark} "), style),
                Span::styled(
                    f.text.clone(),
                    if f.progress == Progress::Failed { theme::BAD } else { theme::TEXT },
                ),
            ])
        }
        None => Line::from(Span::styled(" keys act on the selected provider · ? for help", theme::DIM)),
    }
}

/// `42s`, `5m07s`, `3h02m05s`, `2d04h`.
pub(crate) fn format_uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m{:02}s", s / 3600, (s % 3600) / 60, s % 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}
