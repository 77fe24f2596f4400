//! The help popup: every key of the focused pane, from the same tables the key map uses. It
//! uses two columns when one does not fit the terminal's height (80×24 with the demo keys).

use crate::tui::app::App;
use crate::tui::keymap::{self, Action, Focus, KeyContext};
use crate::tui::theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Padding, Paragraph};

/// Columns between the two halves of a two-column popup.
const GAP: u16 = 2;

/// Draw the popup over the middle of `area`.
pub(super) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let ctx = KeyContext { help_open: false, ..app.key_context() };
    let intro = match ctx.focus {
        Focus::Providers => "Keys act on the selected provider.",
        Focus::Logs => "The log pane has the keyboard.",
    };
    let entries = entries(ctx);
    let entry_width = entries.iter().map(Line::width).max().unwrap_or(0);
    let entry_width = u16::try_from(entry_width).unwrap_or(u16::MAX);
    let rows_available = area.height.saturating_sub(3);
    let n = u16::try_from(entries.len()).unwrap_or(u16::MAX);
    let columns: u16 = if n <= rows_available { 1 } else { 2 };
    let rows = n.div_ceil(columns);
    let intro_width = u16::try_from(intro.chars().count()).unwrap_or(u16::MAX);
    let inner_width = (entry_width * columns + GAP * (columns - 1)).max(intro_width);
    let popup_width = inner_width.saturating_add(4).min(area.width);
    let popup_height = rows.saturating_add(3).min(area.height);
    let [popup] = Layout::horizontal([Constraint::Length(popup_width)]).flex(Flex::Center).areas(area);
    let [popup] = Layout::vertical([Constraint::Length(popup_height)]).flex(Flex::Center).areas(popup);
    let block = Block::bordered()
        .title(Line::from(Span::styled(" help ", theme::TITLE)))
        .title_bottom(Line::from(vec![
            Span::styled(" ?/Esc ", theme::KEY),
            Span::styled("close ", theme::DIM),
        ]))
        .border_style(theme::FOCUSED_BORDER)
        .padding(Padding::horizontal(1));
    let inner = block.inner(popup);
    frame.render_widget(Clear, popup);
    frame.render_widget(block, popup);
    let [intro_area, body] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    frame.render_widget(Paragraph::new(Span::styled(intro, theme::DIM)), intro_area);
    let column_areas = Layout::horizontal(vec![Constraint::Length(entry_width); usize::from(columns)])
        .spacing(GAP)
        .split(body);
    for (chunk, column) in entries.chunks(usize::from(rows.max(1))).zip(column_areas.iter()) {
        frame.render_widget(Paragraph::new(chunk.to_vec()), *column);
    }
}

/// One line per binding, the demo's keys under a heading of their own.
fn entries(ctx: KeyContext) -> Vec<Line<'static>> {
    let label_width = keymap::bindings(ctx).map(|b| b.label.chars().count()).max().unwrap_or(1);
    let mut lines = Vec::new();
    let mut demo_heading = false;
    for b in keymap::bindings(ctx) {
        if matches!(b.action, Action::Demo(_)) && !std::mem::replace(&mut demo_heading, true) {
            lines.push(Line::from(Span::styled("fault injection (demo)", theme::TITLE)));
        }
        lines.push(Line::from(vec![
            Span::styled(format!(" {:<label_width$} ", b.label), theme::KEY),
            Span::raw(b.help),
        ]));
    }
    lines
}
