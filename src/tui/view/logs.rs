//! The log pane: tui-logger's widget while live, fixed lines in tests and screenshots. It shows
//! a cyan border when it has the keyboard (`l`).

use crate::tui::app::App;
use crate::tui::keymap::Focus;
use crate::tui::logs::{LogLine, LogPane};
use crate::tui::theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use tracing::Level;
use tui_logger::{TuiLoggerLevelOutput, TuiLoggerSmartWidget};

/// Draw the pane in `area`.
pub(super) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let focused = app.focus() == Focus::Logs && !app.help_open();
    let border = if focused { theme::FOCUSED_BORDER } else { theme::BORDER };
    let hint = if focused { "l: back · PgUp/PgDn scroll · t targets " } else { "l: focus " };
    let title = Line::from(vec![Span::styled(" log ", theme::TITLE), Span::styled(hint, theme::DIM)]);
    match app.logs() {
        LogPane::Live(state) => {
            let widget = TuiLoggerSmartWidget::default()
                .title_log(title)
                .title_target(Line::from(Span::styled(" targets ", theme::TITLE)))
                .border_style(border)
                .style_error(level_style(Level::ERROR))
                .style_warn(level_style(Level::WARN))
                .style_info(level_style(Level::INFO))
                .style_debug(level_style(Level::DEBUG))
                .style_trace(level_style(Level::TRACE))
                .output_separator(' ')
                .output_timestamp(Some("%H:%M:%S".into()))
                .output_level(Some(TuiLoggerLevelOutput::Abbreviated))
                .output_target(true)
                .output_file(false)
                .output_line(false)
                .state(state);
            frame.render_widget(widget, area);
        }
        LogPane::Fixed(lines) => {
            let block = Block::bordered().title(title).border_style(border);
            let height = usize::from(block.inner(area).height);
            // The newest lines that fit, like a log that follows its tail.
            let shown = &lines[lines.len().saturating_sub(height)..];
            let text: Vec<Line> = shown.iter().map(fixed_line).collect();
            frame.render_widget(Paragraph::new(text).block(block), area);
        }
    }
}

fn fixed_line(l: &LogLine) -> Line<'static> {
    let level = match l.level {
        Level::ERROR => "E",
        Level::WARN => "W",
        Level::INFO => "I",
        Level::DEBUG => "D",
        Level::TRACE => "T",
    };
    Line::from(vec![
        Span::styled(format!("{level} "), level_style(l.level)),
        Span::styled(format!("{} ", l.target), theme::DIM),
        Span::raw(l.message.clone()),
    ])
}

/// The colour of a log level.
fn level_style(level: Level) -> Style {
    match level {
        Level::ERROR => Style::new().fg(Color::Red),
        Level::WARN => Style::new().fg(Color::Yellow),
        Level::INFO => Style::new(),
        Level::DEBUG => Style::new().fg(Color::Cyan),
        Level::TRACE => Style::new().fg(Color::DarkGray),
    }
}
