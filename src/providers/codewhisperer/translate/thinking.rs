//! The `<thinking>` tag scanner: with thinking requested, a leading `<thinking>…</thinking>` in
//! the answer's text becomes a thinking block (rules on [`Translator::on_text`]).

use super::{OpenBlock, OpenKind, Sink, Translator};

const THINKING_OPEN: &str = "<thinking>";
const THINKING_CLOSE: &str = "</thinking>";

/// Characters that, right before or after `</thinking>`, mean the model is quoting the tag.
fn is_quote_char(c: char) -> bool {
    matches!(c, '`' | '"' | '\'' | '\\' | '“' | '”' | '‘' | '’' | '«' | '»')
}

/// Where the text scanner is, when thinking was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ThinkPhase {
    /// Nothing decided yet: the answer may still begin with `<thinking>`.
    Start,
    /// Inside `<thinking>`; `strip_newline` while the `\n` right after the tag may still come.
    Inside { strip_newline: bool },
    /// Plain text from here on.
    Done,
}

impl Translator {
    /// Text delta. Without thinking it goes straight to a text block. With thinking:
    /// - the answer is in thinking mode only if it *begins* (after whitespace) with `<thinking>`;
    ///   a tag later in the text is the model talking about tags, and stays text;
    /// - one `\n` right after `<thinking>` is dropped;
    /// - `</thinking>` ends thinking when followed by `\n\n` (dropped), at the end of the stream, or
    ///   before a tool use; never when a quote character touches it;
    /// - tags may be split across chunks: the undecidable tail is held back, everything else is
    ///   emitted at once.
    pub(super) fn on_text<S: Sink>(&mut self, text: &str, sink: &mut S) {
        if text.is_empty() {
            return;
        }
        match self.phase {
            ThinkPhase::Done => self.emit_text(text, sink),
            ThinkPhase::Start => {
                self.held.push_str(text);
                let trimmed = self.held.trim_start();
                if let Some(rest) = trimmed.strip_prefix(THINKING_OPEN) {
                    let rest = rest.to_owned();
                    self.held.clear();
                    self.phase = ThinkPhase::Inside { strip_newline: true };
                    self.on_thinking_text(&rest, sink);
                } else if trimmed.is_empty() || THINKING_OPEN.starts_with(trimmed) {
                    // Still could become `<thinking>`.
                } else {
                    self.phase = ThinkPhase::Done;
                    let held = std::mem::take(&mut self.held);
                    self.emit_text(&held, sink);
                }
            }
            ThinkPhase::Inside { .. } => self.on_thinking_text(text, sink),
        }
    }

    fn on_thinking_text<S: Sink>(&mut self, mut text: &str, sink: &mut S) {
        if let ThinkPhase::Inside { strip_newline: true } = self.phase {
            if text.is_empty() {
                return;
            }
            text = text.strip_prefix('\n').unwrap_or(text);
            self.phase = ThinkPhase::Inside { strip_newline: false };
        }
        self.held.push_str(text);
        match find_thinking_end(&self.held, self.last_thinking_char) {
            EndScan::Found(at) => {
                let held = std::mem::take(&mut self.held);
                self.emit_thinking(&held[..at], sink);
                self.close_open(sink);
                self.phase = ThinkPhase::Done;
                self.emit_text(&held[at + THINKING_CLOSE.len() + 2..], sink);
            }
            EndScan::Undecided(safe) => {
                if safe > 0 {
                    let rest = self.held.split_off(safe);
                    let done = std::mem::replace(&mut self.held, rest);
                    self.emit_thinking(&done, sink);
                }
            }
        }
    }

    /// A boundary (tool use, end of stream, failure): settle any held-back text.
    pub(super) fn settle_text<S: Sink>(&mut self, sink: &mut S) {
        match self.phase {
            ThinkPhase::Done => {}
            ThinkPhase::Start => {
                self.phase = ThinkPhase::Done;
                // Only whitespace (or a prefix of `<thinking>`) can be held here.
                let held = std::mem::take(&mut self.held);
                if !held.trim().is_empty() {
                    self.emit_text(&held, sink);
                }
            }
            ThinkPhase::Inside { .. } => {
                self.phase = ThinkPhase::Done;
                let held = std::mem::take(&mut self.held);
                // The held tail is a partial tag (just thinking text), or `</thinking>` followed by
                // at most one character, which the boundary accepts unless it is quoted.
                let thinking = match held.find(THINKING_CLOSE) {
                    Some(at)
                        if held[at + THINKING_CLOSE.len()..].trim().is_empty()
                            && !held[..at]
                                .chars()
                                .next_back()
                                .or(self.last_thinking_char)
                                .is_some_and(is_quote_char) =>
                    {
                        &held[..at]
                    }
                    _ => held.as_str(),
                };
                self.emit_thinking(thinking, sink);
                if matches!(self.open, Some(OpenBlock { kind: OpenKind::Thinking { .. }, .. })) {
                    self.close_open(sink);
                }
            }
        }
    }
}

/// Result of looking for the end of thinking in the held text.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum EndScan {
    /// A real `</thinking>` at this byte offset, followed by `\n\n`.
    Found(usize),
    /// No decision yet; the text before this offset is certainly thinking.
    Undecided(usize),
}

/// `prev` is the last character already emitted before `buf`: it decides whether a tag at the very
/// start of `buf` is quoted.
pub(super) fn find_thinking_end(buf: &str, prev: Option<char>) -> EndScan {
    let mut from = 0;
    while let Some(pos) = buf[from..].find(THINKING_CLOSE) {
        let at = from + pos;
        let after = &buf[at + THINKING_CLOSE.len()..];
        let quoted = buf[..at].chars().next_back().or(prev).is_some_and(is_quote_char)
            || after.chars().next().is_some_and(is_quote_char);
        if !quoted {
            if after.starts_with("\n\n") {
                return EndScan::Found(at);
            }
            if after.is_empty() || after == "\n" {
                return EndScan::Undecided(at);
            }
        }
        // `<` is ASCII, so `at + 1` is a char boundary.
        from = at + 1;
    }
    // Hold back a tail that may be the start of a split `</thinking>`.
    let hold = (1..THINKING_CLOSE.len())
        .rev()
        .find(|&n| {
            buf.len() >= n
                && buf.is_char_boundary(buf.len() - n)
                && THINKING_CLOSE.starts_with(&buf[buf.len() - n..])
        })
        .unwrap_or(0);
    EndScan::Undecided(buf.len() - hold)
}
