//! The footer: the keys of the focused pane, as many as fit, with help and quit always shown.

use crate::tui::app::App;
use crate::tui::keymap;
use crate::tui::theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// Draw the footer in `area` (one row).
pub(super) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let ctx = app.key_context();
    let entries: Vec<(&str, &str)> = keymap::footer(ctx).copied().collect();
    let line = footer_line(&entries, keymap::footer_tail(ctx), usize::from(area.width));
    frame.render_widget(Paragraph::new(line), area);
}

/// Width of an entry: key, space, word.
fn entry_width((key, word): (&str, &str)) -> usize {
    key.chars().count() + 1 + word.chars().count()
}

/// The entries that fit in `width`, separated by two spaces when everything fits that way, by
/// one otherwise; the `tail` (help, quit) is always kept.
fn footer_line(entries: &[(&str, &str)], tail: &[(&str, &str)], width: usize) -> Line<'static> {
    let tail_width: usize = tail.iter().map(|e| entry_width(*e)).sum();
    let total = |gap: usize, n: usize| -> usize {
        1 + entries.iter().take(n).map(|e| entry_width(*e)).sum::<usize>()
            + tail_width
            + gap * (n + tail.len()).saturating_sub(1)
    };
    let gap = if total(2, entries.len()) <= width { 2 } else { 1 };
    let fitting = (0..=entries.len()).rev().find(|&n| total(gap, n) <= width).unwrap_or(0);
    let mut spans = vec![Span::raw(" ")];
    for (i, (key, word)) in entries.iter().take(fitting).chain(tail.iter()).enumerate() {
        if i > 0 {
            spans.push(Span::raw(" ".repeat(gap)));
        }
        spans.push(Span::styled((*key).to_string(), theme::KEY));
        spans.push(Span::styled(format!(" {word}"), theme::DIM));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::keymap::{FOOTER_TAIL, PROVIDER_FOOTER};

    fn text(line: &Line) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn wide_footer_shows_every_key_with_double_spaces() {
        let line = text(&footer_line(PROVIDER_FOOTER, FOOTER_TAIL, 200));
        assert_eq!(
            line,
            " ↑↓ move  +/- weight  f drain  b reset  h check  s save  r reload  l logs  k keys  ? help  q quit"
        );
    }

    #[test]
    fn at_80_columns_every_key_still_fits() {
        let line = text(&footer_line(PROVIDER_FOOTER, FOOTER_TAIL, 80));
        assert!(line.chars().count() <= 80, "{line}");
        assert_eq!(line, " ↑↓ move +/- weight f drain b reset h check s save r reload l logs ? help q quit");
    }

    #[test]
    fn narrow_footer_drops_from_the_end_but_keeps_help_and_quit() {
        let line = text(&footer_line(PROVIDER_FOOTER, FOOTER_TAIL, 41));
        assert_eq!(line, " ↑↓ move +/- weight f drain ? help q quit");
        let line = text(&footer_line(PROVIDER_FOOTER, FOOTER_TAIL, 40));
        assert_eq!(line, " ↑↓ move +/- weight ? help q quit");
        let line = text(&footer_line(PROVIDER_FOOTER, FOOTER_TAIL, 5));
        assert_eq!(line, " ? help q quit", "help and quit even when nothing fits");
    }
}
