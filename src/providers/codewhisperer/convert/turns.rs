//! Turns: the request after merging, before serialisation (rules 1–6 of the module notes).

use super::serialize::ToolInput;
use super::{
    CONTINUE, DEFAULT_THINKING_BUDGET, EMPTY_ASSISTANT, EMPTY_TOOL_RESULT, HISTORY_TOOL_DESCRIPTION,
    MAX_IMAGE_BYTES, MAX_IMAGES, MAX_THINKING_BUDGET, MISSING_TOOL_RESULT, TOOL_RESULTS_PROVIDED,
    kiro_tool_name,
};
use crate::anthropic::ApiError;
use crate::anthropic::text::{Text, TextBuf, unescape};
use crate::anthropic::types::{
    Content, ContentBlock, Message, MessagesRequest, Role, Source, ThinkingKind, Tool, ToolResultBlock,
};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    User,
    Assistant,
}

/// One history or current message.
#[derive(Debug)]
pub(super) struct Turn<'a> {
    pub(super) side: Side,
    /// Kept escaped: client texts are copied in as they came (see [`crate::anthropic::text`]).
    pub(super) text: TextBuf,
    pub(super) images: Vec<KImage<'a>>,
    pub(super) tool_results: Vec<KToolResult<'a>>,
    pub(super) tool_uses: Vec<KToolUse<'a>>,
}

impl<'a> Turn<'a> {
    pub(super) fn new(side: Side) -> Self {
        Turn {
            side,
            text: TextBuf::default(),
            images: Vec::new(),
            tool_results: Vec::new(),
            tool_uses: Vec::new(),
        }
    }

    pub(super) fn text(side: Side, text: &str) -> Self {
        let mut turn = Turn::new(side);
        turn.text.push_plain(text);
        turn
    }

    /// Rule 3: no empty content.
    pub(super) fn fill_empty(&mut self) {
        if !self.text.is_blank() {
            return;
        }
        let placeholder = match self.side {
            Side::Assistant => EMPTY_ASSISTANT,
            Side::User if !self.tool_results.is_empty() => TOOL_RESULTS_PROVIDED,
            Side::User => CONTINUE,
        };
        self.text.clear();
        self.text.push_plain(placeholder);
    }
}

#[derive(Debug)]
pub(super) struct KImage<'a> {
    pub(super) format: &'static str,
    pub(super) source: KImageSource<'a>,
}

#[derive(Debug)]
pub(super) struct KImageSource<'a> {
    pub(super) bytes: &'a str,
}

#[derive(Debug)]
pub(super) struct KToolResult<'a> {
    pub(super) tool_use_id: &'a str,
    pub(super) content: [KText<'a>; 1],
    pub(super) status: &'static str,
}

impl<'a> KToolResult<'a> {
    fn new(tool_use_id: &'a str, text: Piece<'a>, is_error: bool) -> Self {
        let text = if text.is_blank() { Piece::Plain(EMPTY_TOOL_RESULT) } else { text };
        KToolResult {
            tool_use_id,
            content: [KText { text }],
            status: if is_error { "error" } else { "success" },
        }
    }
}

#[derive(Debug)]
pub(super) struct KText<'a> {
    pub(super) text: Piece<'a>,
}

/// A piece of Kiro text: a client's text as it came, ccr's own words, or a mix built here.
#[derive(Debug)]
pub(super) enum Piece<'a> {
    Text(&'a Text),
    Plain(&'static str),
    Built(TextBuf),
}

impl Piece<'_> {
    fn is_blank(&self) -> bool {
        match self {
            Piece::Text(t) => t.is_blank(),
            Piece::Plain(s) => s.trim().is_empty(),
            Piece::Built(b) => b.is_blank(),
        }
    }

    /// Appends the piece to `buf` (escaped as needed).
    pub(super) fn append_to(&self, buf: &mut TextBuf) {
        match self {
            Piece::Text(t) => buf.push_text(t),
            Piece::Plain(s) => buf.push_plain(s),
            Piece::Built(b) => buf.push_raw(b.raw()),
        }
    }

    /// The escaped content, to be written between quotes.
    pub(super) fn write_raw(&self, out: &mut Vec<u8>) {
        match self {
            Piece::Text(t) => out.extend_from_slice(t.raw()),
            Piece::Plain(s) => crate::anthropic::text::escape_into(out, s),
            Piece::Built(b) => out.extend_from_slice(b.raw()),
        }
    }
}

#[derive(Debug)]
pub(super) struct KToolUse<'a> {
    pub(super) tool_use_id: &'a str,
    pub(super) name: Cow<'a, str>,
    pub(super) input: ToolInput<'a>,
    /// The client's name, for the case-insensitive "declared?" check.
    pub(super) original: &'a str,
}

/// One entry of `userInputMessageContext.tools`.
#[derive(Debug)]
pub(super) struct ToolSpec<'a> {
    pub(super) name: Cow<'a, str>,
    pub(super) description: Cow<'a, str>,
    pub(super) schema: Option<&'a Value>,
}

/// Joins `part` (ccr's own words) onto `buf` with `sep` when both are non-empty.
pub(super) fn push_part(buf: &mut TextBuf, part: &str, sep: &str) {
    if part.is_empty() {
        return;
    }
    if !buf.is_empty() {
        buf.push_plain(sep);
    }
    buf.push_plain(part);
}

/// Joins a client's `text` onto `buf` with `sep` when both are non-empty.
pub(super) fn push_text(buf: &mut TextBuf, text: &Text, sep: &str) {
    if text.is_empty() {
        return;
    }
    if !buf.is_empty() {
        buf.push_plain(sep);
    }
    buf.push_text(text);
}

/// Joins already escaped `raw` onto `buf` with `sep` when both are non-empty.
pub(super) fn push_raw(buf: &mut TextBuf, raw: &TextBuf, sep: &str) {
    if raw.is_empty() {
        return;
    }
    if !buf.is_empty() {
        buf.push_plain(sep);
    }
    buf.push_raw(raw.raw());
}

/// Appends the text pieces of one message: blocks joined with `\n`, messages merged into one
/// turn separated by a blank line, a replayed `<thinking>` block followed by a blank line.
pub(super) struct TextJoiner {
    pub(super) first: bool,
    pub(super) after_thinking: bool,
}

impl TextJoiner {
    fn new() -> Self {
        TextJoiner { first: true, after_thinking: false }
    }

    fn sep(&mut self) -> &'static str {
        let sep = if self.first || self.after_thinking { "\n\n" } else { "\n" };
        self.first = false;
        self.after_thinking = false;
        sep
    }

    /// A client's text.
    fn push(&mut self, buf: &mut TextBuf, text: &Text) {
        if !text.is_empty() {
            let sep = self.sep();
            push_text(buf, text, sep);
        }
    }

    /// ccr's own words (notes, descriptions).
    fn push_plain(&mut self, buf: &mut TextBuf, part: &str) {
        if !part.is_empty() {
            let sep = self.sep();
            push_part(buf, part, sep);
        }
    }

    /// Text built here, already escaped.
    fn push_raw(&mut self, buf: &mut TextBuf, raw: &TextBuf) {
        if !raw.is_empty() {
            let sep = self.sep();
            push_raw(buf, raw, sep);
        }
    }

    fn push_thinking(&mut self, buf: &mut TextBuf, thinking: &Text) {
        if thinking.is_blank() {
            return;
        }
        let sep = if self.first { "\n\n" } else { "\n" };
        if !buf.is_empty() {
            buf.push_plain(sep);
        }
        buf.reserve(thinking.raw().len() + 23);
        buf.push_plain("<thinking>");
        buf.push_text(thinking);
        buf.push_plain("</thinking>");
        self.first = false;
        self.after_thinking = true;
    }
}

/// Adds one Anthropic message to the turn list, merging it into the last turn when the role
/// (user and system count as one side) is the same.
pub(super) fn add_message<'a>(
    turns: &mut Vec<Turn<'a>>,
    message: &'a Message,
    names: &mut HashMap<String, String>,
) {
    let side = match message.role {
        Role::Assistant => Side::Assistant,
        Role::User | Role::System => Side::User,
    };
    if !matches!(turns.last(), Some(t) if t.side == side) {
        turns.push(Turn::new(side));
    }
    let index = turns.len() - 1;
    let turn = &mut turns[index];
    let mut joiner = TextJoiner::new();
    let blocks = match &message.content {
        Content::Text(s) => {
            joiner.push(&mut turn.text, s);
            return;
        }
        Content::Blocks(blocks) => blocks,
    };
    for block in blocks {
        match (side, block) {
            (_, ContentBlock::Text { text }) => joiner.push(&mut turn.text, text),
            (_, ContentBlock::Document { source, title }) => {
                let mut text = TextBuf::default();
                document_text(source.as_ref(), title.as_deref(), &mut text);
                joiner.push_raw(&mut turn.text, &text);
            }
            (Side::User, ContentBlock::Image { source }) => match image(source) {
                Ok(image) => turn.images.push(image),
                Err(Some(note)) => joiner.push_plain(&mut turn.text, &note),
                Err(None) => {}
            },
            (Side::User, ContentBlock::ToolResult { tool_use_id, content, is_error }) => {
                let text = tool_result_text(content.as_ref(), &mut turn.images);
                turn.tool_results.push(KToolResult::new(tool_use_id, text, *is_error));
            }
            (Side::Assistant, ContentBlock::Thinking { thinking }) => {
                joiner.push_thinking(&mut turn.text, thinking);
            }
            (Side::Assistant, ContentBlock::ToolUse { id, name, input }) => turn.tool_uses.push(KToolUse {
                tool_use_id: id,
                name: kiro_tool_name(name, names),
                input: ToolInput(input),
                original: name,
            }),
            (
                Side::Assistant,
                block @ (ContentBlock::ServerToolUse { .. } | ContentBlock::WebSearchToolResult { .. }),
            ) => {
                if let Some(text) = super::super::websearch::history_text(block) {
                    joiner.push_plain(&mut turn.text, &text);
                }
            }
            // Images and results in assistant turns, tool uses and thinking in user turns, redacted
            // thinking and unknown blocks have no Kiro equivalent.
            _ => {}
        }
    }
}

/// Kiro's image limits: an image over [`MAX_IMAGE_BYTES`] is refused with a 400 that says so
/// (ccr does not re-encode images); beyond [`MAX_IMAGES`] in one request the oldest are left out
/// and their message says how many.
pub(super) fn limit_images(history: &mut [Turn<'_>], current: &mut Turn<'_>) -> Result<(), ApiError> {
    let mut total = 0;
    for turn in history.iter().chain(std::iter::once(&*current)) {
        for img in &turn.images {
            let decoded = img.source.bytes.len() / 4 * 3;
            if decoded > MAX_IMAGE_BYTES {
                return Err(ApiError::invalid_request(format!(
                    "messages: an image of {:.1} MB is larger than the {} MB Kiro accepts per image; resize or compress it",
                    decoded as f64 / 1_048_576.0,
                    MAX_IMAGE_BYTES / 1_048_576
                )));
            }
        }
        total += turn.images.len();
    }
    let mut excess = total.saturating_sub(MAX_IMAGES);
    for turn in history.iter_mut() {
        if excess == 0 {
            break;
        }
        let drop = excess.min(turn.images.len());
        if drop > 0 {
            turn.images.drain(..drop);
            excess -= drop;
            push_part(
                &mut turn.text,
                &format!("[{drop} image(s) left out: Kiro takes at most {MAX_IMAGES} images per request]"),
                "\n",
            );
        }
    }
    Ok(())
}

/// Kiro image format for a media type; `None` for formats Kiro does not take.
pub(super) fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type.trim().to_ascii_lowercase().as_str() {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

/// A base64 image, or why not: `Err(Some(text))` for a URL image (described in the text),
/// `Err(None)` for an unsupported or empty one (dropped).
pub(super) fn image(source: &Source) -> Result<KImage<'_>, Option<String>> {
    if let Some(url) = source.url.as_deref().filter(|_| source.kind == "url") {
        return Err(Some(format!("[Image: {url}]")));
    }
    // The data goes to Kiro as the client escaped it (base64 has nothing to escape but an
    // optional `\/`, which means the same to Kiro's parser).
    let data = source.data.as_ref().map_or("", Text::raw_str);
    // `data:image/png;base64,AAAA` carries its own media type (decoded: `image\/png` is legal).
    let (url_media, bytes) = match data.strip_prefix("data:").and_then(|rest| rest.split_once(',')) {
        Some((meta, bytes)) => (Some(unescape(meta)), bytes),
        None => (None, data),
    };
    let url_media = url_media.as_deref().and_then(|meta| meta.split(';').next());
    let media_type = source.media_type.as_deref().or(url_media).unwrap_or("");
    match image_format(media_type) {
        Some(format) if !bytes.is_empty() => Ok(KImage { format, source: KImageSource { bytes } }),
        _ => Err(None),
    }
}

/// The text of a tool result: string content as is, blocks joined with `\n`, images and
/// documents described, tool references named.
///
/// Kiro's tool results carry text only, so base64 images in a result move to `images`, the user
/// message that carries the result, and the result says where each went:
/// `[Image: attached to this message as image N]`.
pub(super) fn tool_result_text<'a>(
    content: Option<&'a Content<ToolResultBlock>>,
    images: &mut Vec<KImage<'a>>,
) -> Piece<'a> {
    if let Some(Content::Blocks(blocks)) = content
        && blocks.iter().any(|b| matches!(b, ToolResultBlock::Image { .. }))
    {
        let mut out = TextBuf::default();
        for block in blocks {
            match block {
                ToolResultBlock::Image { source } => match image(source) {
                    Ok(img) => {
                        images.push(img);
                        let note = format!("[Image: attached to this message as image {}]", images.len());
                        push_part(&mut out, &note, "\n");
                    }
                    Err(_) => result_block_text(block, &mut out),
                },
                other => result_block_text(other, &mut out),
            }
        }
        return Piece::Built(out);
    }
    match content {
        None => Piece::Plain(""),
        Some(Content::Text(s)) => Piece::Text(s),
        Some(Content::Blocks(blocks)) => match blocks.as_slice() {
            [ToolResultBlock::Text { text }] => Piece::Text(text),
            _ => {
                let mut out = TextBuf::default();
                for block in blocks {
                    result_block_text(block, &mut out);
                }
                Piece::Built(out)
            }
        },
    }
}

pub(super) fn result_block_text(block: &ToolResultBlock, out: &mut TextBuf) {
    match block {
        ToolResultBlock::Text { text } => push_text(out, text, "\n"),
        ToolResultBlock::Image { source } => {
            let media = source.media_type.as_deref().unwrap_or("unknown type");
            let note = match source.url.as_deref() {
                Some(url) => format!("[Image: {url}]"),
                None => format!("[Image omitted: {media} is not a format Kiro takes (png, jpeg, gif, webp)]"),
            };
            push_part(out, &note, "\n");
        }
        ToolResultBlock::ToolReference { tool_name } if !tool_name.is_empty() => {
            push_part(out, &format!("[Tool reference: {tool_name}]"), "\n");
        }
        ToolResultBlock::Document { source, title } => {
            let mut text = TextBuf::default();
            document_text(source.as_ref(), title.as_deref(), &mut text);
            push_raw(out, &text, "\n");
        }
        ToolResultBlock::ToolReference { .. } | ToolResultBlock::Unknown => {}
    }
}

/// A document block as text: plain-text and nested-content documents inline (with their title),
/// URL documents by address, binary ones (PDF) as a note.
pub(super) fn document_text(source: Option<&Source>, title: Option<&str>, out: &mut TextBuf) {
    let title = title.filter(|t| !t.is_empty());
    let Some(source) = source else {
        if let Some(title) = title {
            push_part(out, &format!("[Document: {title}]"), "\n");
        }
        return;
    };
    match source.kind.as_str() {
        "text" | "content" => {
            if let Some(title) = title {
                push_part(out, &format!("Document: {title}"), "\n");
            }
            if let Some(data) = &source.data {
                push_text(out, data, "\n");
            }
            match &source.content {
                Some(Content::Text(s)) => push_text(out, s, "\n"),
                Some(Content::Blocks(blocks)) => blocks.iter().for_each(|b| result_block_text(b, out)),
                None => {}
            }
        }
        "url" => push_part(out, &format!("[Document: {}]", source.url.as_deref().unwrap_or("")), "\n"),
        _ => {
            let media = source.media_type.as_deref().unwrap_or("unknown type");
            let note = match title {
                Some(title) => format!("[Document omitted: {title} ({media})]"),
                None => format!("[Document omitted: {media}]"),
            };
            push_part(out, &note, "\n");
        }
    }
}

/// The top-level system prompt, blocks joined with `\n`.
pub(super) fn system_text(req: &MessagesRequest) -> TextBuf {
    match &req.system {
        None => TextBuf::default(),
        Some(Content::Text(s)) => {
            let mut out = TextBuf::with_capacity(s.raw().len());
            out.push_text(s);
            out
        }
        Some(Content::Blocks(blocks)) => {
            let mut out = TextBuf::with_capacity(blocks.iter().map(|b| b.text.raw().len() + 2).sum());
            for block in blocks {
                push_text(&mut out, &block.text, "\n");
            }
            out
        }
    }
}

/// The KRS-style thinking tags put at the start of the system-prompt turn.
///
/// `enabled`: `<thinking_mode>enabled</thinking_mode><max_thinking_length>N</max_thinking_length>`
/// with N = `budget_tokens` (default 20 000) capped at 24 576. `adaptive`:
/// `<thinking_mode>adaptive</thinking_mode><thinking_effort>E</thinking_effort>` with E =
/// `output_config.effort` when it is `low`, `medium` or `high`, else `high` (the values KRS
/// accepts; `xhigh`/`max` are not known to Kiro).
pub(super) fn thinking_prefix(req: &MessagesRequest) -> Option<String> {
    match req.thinking_kind()? {
        ThinkingKind::Enabled => {
            let budget = req.thinking_budget().unwrap_or(DEFAULT_THINKING_BUDGET).min(MAX_THINKING_BUDGET);
            Some(format!(
                "<thinking_mode>enabled</thinking_mode><max_thinking_length>{budget}</max_thinking_length>"
            ))
        }
        ThinkingKind::Adaptive => {
            let effort = req.effort().filter(|e| matches!(*e, "low" | "medium" | "high")).unwrap_or("high");
            Some(format!(
                "<thinking_mode>adaptive</thinking_mode><thinking_effort>{effort}</thinking_effort>"
            ))
        }
        ThinkingKind::Disabled | ThinkingKind::Other => None,
    }
}

/// Rule 4: pairs each user turn's tool results with the tool uses of the assistant turn before it.
pub(super) fn pair_tool_results<'a>(history: &mut [Turn<'a>], current: &mut Turn<'a>) {
    let mut seen_uses: HashSet<&'a str> = HashSet::new();
    let mut orphans_seen: HashSet<&'a str> = HashSet::new();
    let mut pending: Vec<&'a str> = Vec::new();
    for turn in history.iter_mut().chain(std::iter::once(current)) {
        match turn.side {
            Side::Assistant => {
                turn.tool_uses.retain(|u| !u.tool_use_id.is_empty() && seen_uses.insert(u.tool_use_id));
                pending.clear();
                pending.extend(turn.tool_uses.iter().map(|u| u.tool_use_id));
            }
            Side::User => {
                if turn.tool_results.is_empty() && pending.is_empty() {
                    continue;
                }
                let mut answered: HashSet<&'a str> = HashSet::new();
                let results = std::mem::take(&mut turn.tool_results);
                let mut orphan_text = TextBuf::default();
                for result in results {
                    let id = result.tool_use_id;
                    if pending.contains(&id) {
                        if answered.insert(id) {
                            turn.tool_results.push(result);
                        }
                    } else if orphans_seen.insert(id) {
                        let status = if result.status == "error" { " (error)" } else { "" };
                        let [KText { text }] = result.content;
                        let mut part = TextBuf::plain(&format!("[Tool result for {id}{status}]\n"));
                        text.append_to(&mut part);
                        push_raw(&mut orphan_text, &part, "\n\n");
                    }
                }
                for id in pending.drain(..) {
                    if !answered.contains(id) {
                        turn.tool_results.push(KToolResult::new(id, Piece::Plain(MISSING_TOOL_RESULT), true));
                    }
                }
                push_raw(&mut turn.text, &orphan_text, "\n\n");
            }
        }
    }
}

/// Rule 5 and 6: the tool specs for the current message.
pub(super) fn tool_specs<'a>(
    req: &'a MessagesRequest,
    max_description: usize,
    history: &[Turn<'a>],
    names: &mut HashMap<String, String>,
) -> Vec<ToolSpec<'a>> {
    let mut declared: HashSet<String> = HashSet::with_capacity(req.tools.len());
    let mut specs = Vec::with_capacity(req.tools.len());
    for tool in &req.tools {
        if tool.is_server_tool() || tool.name.is_empty() || !declared.insert(tool.name.to_lowercase()) {
            continue;
        }
        specs.push(ToolSpec {
            name: kiro_tool_name(&tool.name, names),
            description: tool_description(tool, max_description),
            schema: tool.input_schema.as_ref(),
        });
    }
    for tool_use in history.iter().flat_map(|t| &t.tool_uses) {
        if declared.insert(tool_use.original.to_lowercase()) {
            specs.push(ToolSpec {
                name: tool_use.name.clone(),
                description: Cow::Borrowed(HISTORY_TOOL_DESCRIPTION),
                schema: None,
            });
        }
    }
    specs
}

/// The description capped at `max` characters (the last three being `...`), or a placeholder
/// naming the tool when empty.
///
/// `input_examples` (Kiro has no such field) are appended as `Input examples:` lines.
pub(super) fn tool_description(tool: &Tool, max: usize) -> Cow<'_, str> {
    if !tool.input_examples.is_empty() {
        let mut text = tool.description.clone().unwrap_or_default();
        text.push_str("\n\nInput examples:");
        for example in &tool.input_examples {
            text.push_str("\n- ");
            text.push_str(&example.to_string());
        }
        let with = Tool { description: Some(text), input_examples: Vec::new(), ..tool.clone() };
        return Cow::Owned(tool_description(&with, max).into_owned());
    }
    let description = tool.description.as_deref().unwrap_or("");
    if description.trim().is_empty() {
        return Cow::Owned(format!("Tool: {}", tool.name));
    }
    if description.len() <= max || description.char_indices().nth(max).is_none() {
        return Cow::Borrowed(description);
    }
    let keep = max.saturating_sub(3);
    let cut = description.char_indices().nth(keep).map_or(description.len(), |(i, _)| i);
    Cow::Owned(format!("{}...", &description[..cut]))
}
