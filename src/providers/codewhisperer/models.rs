//! Anthropic model names → Kiro `modelId`s, and the context window of each Kiro model.
//!
//! Kiro uses lower-case dotted ids (`claude-opus-4.8`, `claude-sonnet-4.5`, `claude-haiku-4.5`,
//! `claude-sonnet-4`, `*-1m` variants, `auto`). The mapping reads the family (`opus`, `sonnet`,
//! `haiku`) and the version that follows it (`4-8` → `4.8`; date stamps like `20250929` are
//! ignored), so new releases map without a table change: `claude-opus-5-5` → `claude-opus-5.5`.
//! Versions older than anything Kiro serves are lifted to the oldest id it still accepts, a name
//! with a family but no version gets a well-known default, and names without a Claude family
//! (`my-router-model`) become `auto`, letting the service choose. A routing rule that names a
//! model sends it verbatim and bypasses this mapping.

/// The Kiro id that lets the service choose the model.
pub const AUTO: &str = "auto";

/// Context window of Kiro's 1M-token models (sonnet/opus 4.6 and later, `-1m` variants).
pub const LONG_CONTEXT_WINDOW: u64 = 1_000_000;

/// Context window of every other model.
pub const DEFAULT_CONTEXT_WINDOW: u64 = 200_000;

/// A Claude model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Opus,
    Sonnet,
    Haiku,
}

impl Family {
    fn as_str(self) -> &'static str {
        match self {
            Family::Opus => "opus",
            Family::Sonnet => "sonnet",
            Family::Haiku => "haiku",
        }
    }
}

/// `major.minor` (`minor` absent for names like `claude-sonnet-5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    major: u32,
    minor: Option<u32>,
}

impl Version {
    fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor.unwrap_or(0)) >= (major, minor)
    }
}

/// What a model name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModelName {
    family: Family,
    version: Option<Version>,
    one_million: bool,
}

/// A version component: one or two digits (so date stamps are not taken for versions).
fn version_part(token: &str) -> Option<u32> {
    if (1..=2).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_digit()) {
        token.parse().ok()
    } else {
        None
    }
}

/// Reads family, version and 1M flag from an Anthropic name (`claude-sonnet-4-5-20250929`),
/// a legacy one (`claude-3-5-haiku-20241022`), a Bedrock one
/// (`us.anthropic.claude-opus-4-1-20250805-v1:0`), an old upper-case Kiro id
/// (`CLAUDE_SONNET_4_20250514_V1_0`) or a dotted Kiro id (`claude-opus-4.6-1m`).
fn parse(name: &str) -> Option<ModelName> {
    let lower = name.to_ascii_lowercase();
    let tokens: Vec<&str> =
        lower.split(['-', '.', '_', '[', ']', ' ', '/', ':', '@']).filter(|t| !t.is_empty()).collect();
    let (index, family) = tokens.iter().enumerate().find_map(|(i, t)| {
        let family = match *t {
            "opus" => Family::Opus,
            "sonnet" => Family::Sonnet,
            "haiku" => Family::Haiku,
            _ => return None,
        };
        Some((i, family))
    })?;
    let one_million = tokens.contains(&"1m");

    let after = &tokens[index + 1..];
    let version = match after.first().and_then(|t| version_part(t)) {
        Some(major) => Some(Version { major, minor: after.get(1).and_then(|t| version_part(t)) }),
        None => {
            // Legacy order: `claude-3-5-sonnet`, `claude-3-opus`.
            let before: Vec<u32> =
                tokens[..index].iter().rev().map_while(|t| version_part(t)).collect::<Vec<_>>();
            match before.as_slice() {
                [] => None,
                [major] => Some(Version { major: *major, minor: None }),
                [minor, major, ..] => Some(Version { major: *major, minor: Some(*minor) }),
            }
        }
    };
    Some(ModelName { family, version, one_million })
}

/// The Kiro `modelId` for an Anthropic model name.
///
/// | input | Kiro id |
/// |---|---|
/// | `claude-opus-4-8` | `claude-opus-4.8` |
/// | `claude-sonnet-4-5-20250929` | `claude-sonnet-4.5` |
/// | `claude-haiku-4-5-20251001`, any older haiku | `claude-haiku-4.5` |
/// | `claude-sonnet-4-20250514` | `claude-sonnet-4` |
/// | `claude-3-7-sonnet-…`, `claude-sonnet-4-1` | `claude-sonnet-4.5` |
/// | `claude-opus-4-1-…`, older opus | `claude-opus-4.5` |
/// | family without version (`opus`, `sonnet`, `haiku`) | `claude-opus-4.6`, `claude-sonnet-4.5`, `claude-haiku-4.5` |
/// | 4.5 and later of any family | the dotted form, `-1m` kept (`claude-opus-5-5` → `claude-opus-5.5`) |
/// | anything else (`my-router-model`) | `auto` |
pub fn map_model(name: &str) -> String {
    let Some(parsed) = parse(name) else {
        return AUTO.to_owned();
    };
    let family = parsed.family.as_str();
    let base = match (parsed.family, parsed.version) {
        (Family::Opus, None) => "claude-opus-4.6".to_owned(),
        (Family::Sonnet, None) => "claude-sonnet-4.5".to_owned(),
        (Family::Haiku, None) => "claude-haiku-4.5".to_owned(),
        (_, Some(v)) if v.at_least(4, 5) => match v.minor {
            Some(minor) if minor > 0 => format!("claude-{family}-{}.{minor}", v.major),
            _ => format!("claude-{family}-{}", v.major),
        },
        (Family::Sonnet, Some(Version { major: 4, minor: None | Some(0) })) => "claude-sonnet-4".to_owned(),
        (Family::Sonnet, Some(_)) => "claude-sonnet-4.5".to_owned(),
        (Family::Opus, Some(_)) => "claude-opus-4.5".to_owned(),
        (Family::Haiku, Some(_)) => "claude-haiku-4.5".to_owned(),
    };
    if parsed.one_million { format!("{base}-1m") } else { base }
}

/// Context window, in tokens, of a Kiro model id: 1M for `-1m` variants and for sonnet/opus
/// 4.6 and later, 200k for everything else (including `auto` and unknown ids). Used to turn
/// Kiro's `contextUsagePercentage` into input tokens.
pub fn context_window(model_id: &str) -> u64 {
    match parse(model_id) {
        Some(m) if m.one_million => LONG_CONTEXT_WINDOW,
        Some(ModelName { family: Family::Opus | Family::Sonnet, version: Some(v), .. })
            if v.at_least(4, 6) =>
        {
            LONG_CONTEXT_WINDOW
        }
        _ => DEFAULT_CONTEXT_WINDOW,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_anthropic_names_to_kiro_ids() {
        let cases = [
            ("claude-opus-4-8", "claude-opus-4.8"),
            ("claude-opus-4-7", "claude-opus-4.7"),
            ("claude-opus-4-6", "claude-opus-4.6"),
            ("claude-opus-4-5-20251101", "claude-opus-4.5"),
            ("claude-opus-4-1-20250805", "claude-opus-4.5"),
            ("claude-opus-5-5", "claude-opus-5.5"),
            ("claude-opus-5", "claude-opus-5"),
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5"),
            ("claude-sonnet-4-5", "claude-sonnet-4.5"),
            ("claude-sonnet-4-6", "claude-sonnet-4.6"),
            ("claude-sonnet-4-8", "claude-sonnet-4.8"),
            ("claude-sonnet-5", "claude-sonnet-5"),
            ("claude-sonnet-5-0", "claude-sonnet-5"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            ("claude-3-7-sonnet-20250219", "claude-sonnet-4.5"),
            ("claude-3-5-sonnet-20241022", "claude-sonnet-4.5"),
            ("claude-haiku-4-5-20251001", "claude-haiku-4.5"),
            ("claude-haiku-4-5", "claude-haiku-4.5"),
            ("claude-3-5-haiku-20241022", "claude-haiku-4.5"),
            ("claude-3-haiku-20240307", "claude-haiku-4.5"),
            ("claude-haiku-5", "claude-haiku-5"),
            ("claude-3-opus-20240229", "claude-opus-4.5"),
            ("opus", "claude-opus-4.6"),
            ("sonnet", "claude-sonnet-4.5"),
            ("haiku", "claude-haiku-4.5"),
            ("claude-sonnet-4-5-thinking", "claude-sonnet-4.5"),
            ("claude-opus-4-6[1m]", "claude-opus-4.6-1m"),
            ("claude-sonnet-4-6-1m", "claude-sonnet-4.6-1m"),
            ("claude-sonnet-4.5", "claude-sonnet-4.5"),
            ("claude-opus-4.6-1m", "claude-opus-4.6-1m"),
            ("Claude-Opus-4-8", "claude-opus-4.8"),
            ("CLAUDE_SONNET_4_20250514_V1_0", "claude-sonnet-4"),
            ("CLAUDE_SONNET_4_5_20250929_V1_0", "claude-sonnet-4.5"),
            ("us.anthropic.claude-opus-4-6-v1:0", "claude-opus-4.6"),
            ("my-router-model", "auto"),
            ("my-small-fast", "auto"),
            ("gpt-4o", "auto"),
            ("auto", "auto"),
            ("", "auto"),
            ("claude", "auto"),
            ("sonnets-are-nice", "auto"),
        ];
        for (input, expected) in cases {
            assert_eq!(map_model(input), expected, "map_model({input:?})");
        }
    }

    #[test]
    fn context_windows() {
        let cases = [
            ("claude-opus-4.8", LONG_CONTEXT_WINDOW),
            ("claude-opus-4.6", LONG_CONTEXT_WINDOW),
            ("claude-sonnet-4.6", LONG_CONTEXT_WINDOW),
            ("claude-sonnet-5", LONG_CONTEXT_WINDOW),
            ("claude-opus-5.5", LONG_CONTEXT_WINDOW),
            ("claude-sonnet-4.5-1m", LONG_CONTEXT_WINDOW),
            ("claude-sonnet-4.5", DEFAULT_CONTEXT_WINDOW),
            ("claude-opus-4.5", DEFAULT_CONTEXT_WINDOW),
            ("claude-sonnet-4", DEFAULT_CONTEXT_WINDOW),
            ("claude-haiku-4.5", DEFAULT_CONTEXT_WINDOW),
            ("claude-haiku-5", DEFAULT_CONTEXT_WINDOW),
            ("auto", DEFAULT_CONTEXT_WINDOW),
            ("deepseek-3.2", DEFAULT_CONTEXT_WINDOW),
        ];
        for (input, expected) in cases {
            assert_eq!(context_window(input), expected, "context_window({input:?})");
        }
    }

    #[test]
    fn mapped_ids_keep_their_window() {
        assert_eq!(context_window(&map_model("claude-opus-4-8")), LONG_CONTEXT_WINDOW);
        assert_eq!(context_window(&map_model("claude-haiku-4-5-20251001")), DEFAULT_CONTEXT_WINDOW);
        assert_eq!(context_window(&map_model("my-router-model")), DEFAULT_CONTEXT_WINDOW);
    }
}
