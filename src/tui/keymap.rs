//! Key bindings as data, and the pure function from a key press to an [`Action`].
//!
//! The same tables feed [`map_key`], the footer and the help popup, so what the screen says a key
//! does is what it does. Nothing here touches the terminal or the balancer: the tests feed
//! `KeyEvent`s and compare `Action`s.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_logger::TuiWidgetEvent;

/// A fault the demo injects into the selected simulated upstream (`ccr demo` only).
///
/// The dashboard does not know how faults are made: it sends the action with the selected
/// provider's id, and the demo's [`DemoControls`](super::DemoControls) carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DemoAction {
    /// Make the upstream refuse connections (it is "down").
    TakeDown,
    /// Let the upstream answer again.
    BringBack,
    /// Add a step of latency to the upstream's first byte.
    AddLatency,
    /// Remove a step of latency.
    RemoveLatency,
    /// Raise the share of requests the upstream answers with a 5xx.
    RaiseErrors,
    /// Lower that share.
    LowerErrors,
    /// Use up the account's remaining credits (its next request gets the 402 quota answer).
    ExhaustCredits,
}

impl DemoAction {
    /// A short description, for the help popup and feedback lines.
    pub fn describe(self) -> &'static str {
        match self {
            DemoAction::TakeDown => "take the upstream down",
            DemoAction::BringBack => "bring the upstream back",
            DemoAction::AddLatency => "add latency",
            DemoAction::RemoveLatency => "remove latency",
            DemoAction::RaiseErrors => "raise the error rate",
            DemoAction::LowerErrors => "lower the error rate",
            DemoAction::ExhaustCredits => "use up the account's credits",
        }
    }
}

/// What a key press asks the dashboard to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave the dashboard (and stop the proxy).
    Quit,
    /// Select the provider above.
    SelectPrev,
    /// Select the provider below.
    SelectNext,
    /// Select the first provider.
    SelectFirst,
    /// Select the last provider.
    SelectLast,
    /// Raise the selected provider's weight by one (a run-time override for every rule).
    WeightUp,
    /// Lower the selected provider's weight by one.
    WeightDown,
    /// Raise the selected provider's weight by ten.
    WeightUpTen,
    /// Lower the selected provider's weight by ten.
    WeightDownTen,
    /// Drain the selected provider (forced failover), or put it back if it is drained.
    ToggleDrain,
    /// Close the selected provider's breaker and clear its cooldown / quota exclusion.
    ResetBreaker,
    /// Run the selected provider's health check now.
    CheckNow,
    /// Ask the selected account's credits (`getUsageLimits`) now.
    CheckUsage,
    /// Write the weights in force back into the config file.
    SaveWeights,
    /// Re-read the config file.
    Reload,
    /// Give the keyboard to the log pane.
    FocusLogs,
    /// Give the keyboard back to the providers table.
    FocusProviders,
    /// Show the developers' keys pane in place of the routes table, or the routes again.
    ToggleKeys,
    /// Show or hide the help popup.
    ToggleHelp,
    /// Hide the help popup.
    CloseHelp,
    /// A key for the tui-logger pane (scroll, levels, target selector).
    Log(TuiWidgetEvent),
    /// A demo fault for the selected upstream.
    Demo(DemoAction),
}

/// Which pane has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    /// The providers table: selection and operator commands.
    #[default]
    Providers,
    /// The log pane: tui-logger's own keys.
    Logs,
}

/// Everything the key map needs to know about the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyContext {
    /// Which pane has the keyboard.
    pub focus: Focus,
    /// Whether the help popup is open (it takes every key but quit).
    pub help_open: bool,
    /// Whether demo fault keys are live (`ccr demo`).
    pub demo: bool,
}

/// One key binding: the keys, how the screen spells them, the action, and what it does.
#[derive(Debug, Clone, Copy)]
pub(super) struct Binding {
    /// Key codes that trigger it (Shift is ignored for characters).
    pub keys: &'static [KeyCode],
    /// How the footer and help popup spell the keys.
    pub label: &'static str,
    /// What it does.
    pub action: Action,
    /// One line for the help popup.
    pub help: &'static str,
}

const fn bind(keys: &'static [KeyCode], label: &'static str, action: Action, help: &'static str) -> Binding {
    Binding { keys, label, action, help }
}

use KeyCode::{Char, Down, End, Esc, Home, Left, PageDown, PageUp, Right, Tab, Up};

/// Keys of the providers table (the default focus).
pub(super) const PROVIDER_BINDINGS: &[Binding] = &[
    bind(&[Up], "↑", Action::SelectPrev, "select the provider above"),
    bind(&[Down, Char('j')], "↓/j", Action::SelectNext, "select the provider below"),
    bind(&[Home, Char('g')], "g", Action::SelectFirst, "select the first provider"),
    bind(&[End, Char('G')], "G", Action::SelectLast, "select the last provider"),
    bind(&[Char('+'), Char('=')], "+", Action::WeightUp, "raise its weight (all rules)"),
    bind(&[Char('-'), Char('_')], "-", Action::WeightDown, "lower its weight"),
    bind(&[Char('>')], ">", Action::WeightUpTen, "raise its weight by 10"),
    bind(&[Char('<')], "<", Action::WeightDownTen, "lower its weight by 10"),
    bind(&[Char('f')], "f", Action::ToggleDrain, "drain it (failover) / undo"),
    bind(&[Char('b')], "b", Action::ResetBreaker, "reset breaker and cooldowns"),
    bind(&[Char('h')], "h", Action::CheckNow, "run its health check now"),
    bind(&[Char('u')], "u", Action::CheckUsage, "check its credits (usage) now"),
    bind(&[Char('s')], "s", Action::SaveWeights, "save weights to the config"),
    bind(&[Char('r')], "r", Action::Reload, "reload the config file"),
    bind(&[Char('l'), Tab], "l", Action::FocusLogs, "focus the log pane"),
    bind(&[Char('k')], "k", Action::ToggleKeys, "developers' keys / routes"),
    bind(&[Char('?')], "?", Action::ToggleHelp, "this help"),
    bind(&[Char('q')], "q", Action::Quit, "quit (also Ctrl-C)"),
];

/// Keys of the log pane while it has the focus (tui-logger's own keys, plus the way back).
pub(super) const LOG_BINDINGS: &[Binding] = &[
    bind(&[Char('l'), Tab], "l", Action::FocusProviders, "back to the providers table"),
    bind(&[PageUp], "PgUp", Action::Log(TuiWidgetEvent::PrevPageKey), "scroll back (page mode)"),
    bind(&[PageDown], "PgDn", Action::Log(TuiWidgetEvent::NextPageKey), "scroll forward"),
    bind(&[Esc], "Esc", Action::Log(TuiWidgetEvent::EscapeKey), "leave page mode (follow)"),
    bind(&[Char('t')], "t", Action::Log(TuiWidgetEvent::HideKey), "show/hide target selector"),
    bind(&[Up, Char('k')], "↑/k", Action::Log(TuiWidgetEvent::UpKey), "previous target"),
    bind(&[Down, Char('j')], "↓/j", Action::Log(TuiWidgetEvent::DownKey), "next target"),
    bind(&[Left], "←", Action::Log(TuiWidgetEvent::LeftKey), "show fewer levels"),
    bind(&[Right], "→", Action::Log(TuiWidgetEvent::RightKey), "show more levels"),
    bind(&[Char('-')], "-", Action::Log(TuiWidgetEvent::MinusKey), "capture fewer levels"),
    bind(&[Char('+'), Char('=')], "+", Action::Log(TuiWidgetEvent::PlusKey), "capture more levels"),
    bind(&[Char('f')], "f", Action::Log(TuiWidgetEvent::FocusKey), "only the selected target"),
    bind(&[Char(' ')], "Space", Action::Log(TuiWidgetEvent::SpaceKey), "hide targets that are off"),
    bind(&[Char('?')], "?", Action::ToggleHelp, "this help"),
    bind(&[Char('q')], "q", Action::Quit, "quit (also Ctrl-C)"),
];

/// Demo fault keys, live only under `ccr demo`, on the selected upstream.
pub(super) const DEMO_BINDINGS: &[Binding] = &[
    bind(&[Char('d')], "d", Action::Demo(DemoAction::TakeDown), "demo: take upstream down"),
    bind(&[Char('D')], "D", Action::Demo(DemoAction::BringBack), "demo: bring upstream back"),
    bind(&[Char('x')], "x", Action::Demo(DemoAction::ExhaustCredits), "demo: use up its credits"),
    bind(&[Char(']')], "]", Action::Demo(DemoAction::AddLatency), "demo: add latency"),
    bind(&[Char('[')], "[", Action::Demo(DemoAction::RemoveLatency), "demo: remove latency"),
    bind(&[Char('e')], "e", Action::Demo(DemoAction::RaiseErrors), "demo: raise error rate"),
    bind(&[Char('E')], "E", Action::Demo(DemoAction::LowerErrors), "demo: lower error rate"),
];

/// Keys while the help popup is open: it closes on `?` or Esc, and quit still quits.
pub(super) const HELP_BINDINGS: &[Binding] = &[
    bind(&[Char('?'), Esc, KeyCode::Enter], "?/Esc", Action::CloseHelp, "close this help"),
    bind(&[Char('q')], "q", Action::Quit, "quit"),
];

/// One footer entry: how the keys are spelled, and one word for what they do.
pub(super) type FooterEntry = (&'static str, &'static str);

/// The footer's short list for the providers table. The help popup has the rest.
pub(super) const PROVIDER_FOOTER: &[FooterEntry] = &[
    ("↑↓", "move"),
    ("+/-", "weight"),
    ("f", "drain"),
    ("b", "reset"),
    ("h", "check"),
    ("s", "save"),
    ("r", "reload"),
    ("l", "logs"),
    ("k", "keys"),
];

/// The footer's short list for the demo's fault keys.
pub(super) const DEMO_FOOTER: &[FooterEntry] =
    &[("d/D", "down/up"), ("]/[", "latency"), ("e/E", "errors"), ("x", "credits")];

/// The footer's short list while the log pane has the keyboard.
pub(super) const LOG_FOOTER: &[FooterEntry] =
    &[("l", "back"), ("PgUp/PgDn", "scroll"), ("Esc", "follow"), ("t", "targets"), ("←→", "levels")];

/// The footer's short list while the help popup is open.
pub(super) const HELP_FOOTER: &[FooterEntry] = &[("?/Esc", "close")];

/// The footer's entries that are always shown, last.
pub(super) const FOOTER_TAIL: &[FooterEntry] = &[("?", "help"), ("q", "quit")];

/// The always-shown entries for a context (no "? help" while the help is open).
pub(super) fn footer_tail(ctx: KeyContext) -> &'static [FooterEntry] {
    if ctx.help_open { &FOOTER_TAIL[1..] } else { FOOTER_TAIL }
}

/// The footer's entries for a context, most useful first (a narrow footer drops from the end,
/// before [`FOOTER_TAIL`]).
pub(super) fn footer(ctx: KeyContext) -> impl Iterator<Item = &'static FooterEntry> {
    let (main, demo): (&'static [FooterEntry], &'static [FooterEntry]) = if ctx.help_open {
        (HELP_FOOTER, &[])
    } else {
        match ctx.focus {
            Focus::Providers => (PROVIDER_FOOTER, if ctx.demo { DEMO_FOOTER } else { &[] }),
            Focus::Logs => (LOG_FOOTER, &[]),
        }
    };
    main.iter().chain(demo)
}

/// The bindings in force for a context, in the order the help popup lists them.
pub(super) fn bindings(ctx: KeyContext) -> impl Iterator<Item = &'static Binding> {
    let (main, demo): (&'static [Binding], &'static [Binding]) = if ctx.help_open {
        (HELP_BINDINGS, &[])
    } else {
        match ctx.focus {
            Focus::Providers => (PROVIDER_BINDINGS, if ctx.demo { DEMO_BINDINGS } else { &[] }),
            Focus::Logs => (LOG_BINDINGS, &[]),
        }
    };
    main.iter().chain(demo)
}

/// The action for a key press in a context, or `None` when the key does nothing there.
///
/// Ctrl-C quits everywhere. Other Ctrl / Alt chords do nothing (so a terminal's shortcuts never
/// trigger a command by accident); Shift is ignored for characters, whose case already says it.
/// Key releases and repeats from terminals that report them are ignored, except that a held
/// navigation key repeats.
pub(super) fn map_key(key: KeyEvent, ctx: KeyContext) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, Char('c') | Char('C')).then_some(Action::Quit);
    }
    if key.modifiers.intersects(KeyModifiers::ALT | KeyModifiers::SUPER | KeyModifiers::META) {
        return None;
    }
    let binding = bindings(ctx).find(|b| b.keys.contains(&key.code))?;
    if key.kind == KeyEventKind::Repeat && !is_navigation(binding.action) {
        return None;
    }
    Some(binding.action)
}

/// Actions that may repeat while a key is held.
fn is_navigation(action: Action) -> bool {
    matches!(
        action,
        Action::SelectPrev
            | Action::SelectNext
            | Action::Log(TuiWidgetEvent::UpKey | TuiWidgetEvent::DownKey)
            | Action::Log(TuiWidgetEvent::PrevPageKey | TuiWidgetEvent::NextPageKey)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventState;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn shifted(c: char) -> KeyEvent {
        KeyEvent::new(Char(c), KeyModifiers::SHIFT)
    }

    const PROVIDERS: KeyContext = KeyContext { focus: Focus::Providers, help_open: false, demo: false };
    const DEMO: KeyContext = KeyContext { focus: Focus::Providers, help_open: false, demo: true };
    const LOGS: KeyContext = KeyContext { focus: Focus::Logs, help_open: false, demo: false };
    const HELP: KeyContext = KeyContext { focus: Focus::Providers, help_open: true, demo: false };

    #[test]
    fn provider_keys_map_to_operator_actions() {
        let cases = [
            (key(Up), Action::SelectPrev),
            (key(Char('k')), Action::ToggleKeys),
            (key(Down), Action::SelectNext),
            (key(Char('j')), Action::SelectNext),
            (key(Home), Action::SelectFirst),
            (shifted('G'), Action::SelectLast),
            (shifted('+'), Action::WeightUp),
            (key(Char('=')), Action::WeightUp),
            (key(Char('-')), Action::WeightDown),
            (shifted('>'), Action::WeightUpTen),
            (key(Char('<')), Action::WeightDownTen),
            (key(Char('f')), Action::ToggleDrain),
            (key(Char('b')), Action::ResetBreaker),
            (key(Char('h')), Action::CheckNow),
            (key(Char('s')), Action::SaveWeights),
            (key(Char('r')), Action::Reload),
            (key(Char('l')), Action::FocusLogs),
            (key(Tab), Action::FocusLogs),
            (shifted('?'), Action::ToggleHelp),
            (key(Char('q')), Action::Quit),
            (KeyEvent::new(Char('c'), KeyModifiers::CONTROL), Action::Quit),
        ];
        for (k, want) in cases {
            assert_eq!(map_key(k, PROVIDERS), Some(want), "{k:?}");
        }
    }

    #[test]
    fn unbound_keys_and_chords_do_nothing() {
        for k in [
            key(Char('z')),
            key(KeyCode::F(5)),
            KeyEvent::new(Char('s'), KeyModifiers::CONTROL),
            KeyEvent::new(Char('q'), KeyModifiers::ALT),
        ] {
            assert_eq!(map_key(k, PROVIDERS), None, "{k:?}");
        }
    }

    #[test]
    fn releases_are_ignored_and_only_navigation_repeats() {
        let release = KeyEvent::new_with_kind(Char('f'), KeyModifiers::NONE, KeyEventKind::Release);
        assert_eq!(map_key(release, PROVIDERS), None);
        let held_f = KeyEvent::new_with_kind(Char('f'), KeyModifiers::NONE, KeyEventKind::Repeat);
        assert_eq!(map_key(held_f, PROVIDERS), None, "a held key must not toggle drain back and forth");
        let held_down = KeyEvent::new_with_kind_and_state(
            Down,
            KeyModifiers::NONE,
            KeyEventKind::Repeat,
            KeyEventState::NONE,
        );
        assert_eq!(map_key(held_down, PROVIDERS), Some(Action::SelectNext));
    }

    #[test]
    fn demo_keys_are_live_only_in_the_demo() {
        let cases = [
            (key(Char('d')), DemoAction::TakeDown),
            (shifted('D'), DemoAction::BringBack),
            (key(Char('x')), DemoAction::ExhaustCredits),
            (key(Char(']')), DemoAction::AddLatency),
            (key(Char('[')), DemoAction::RemoveLatency),
            (key(Char('e')), DemoAction::RaiseErrors),
            (shifted('E'), DemoAction::LowerErrors),
        ];
        for (k, want) in cases {
            assert_eq!(map_key(k, DEMO), Some(Action::Demo(want)), "{k:?}");
            assert_eq!(map_key(k, PROVIDERS), None, "{k:?} outside the demo");
        }
        // The operator keys still work in the demo.
        assert_eq!(map_key(key(Char('f')), DEMO), Some(Action::ToggleDrain));
    }

    #[test]
    fn log_focus_hands_keys_to_tui_logger() {
        let cases = [
            (key(PageUp), Action::Log(TuiWidgetEvent::PrevPageKey)),
            (key(PageDown), Action::Log(TuiWidgetEvent::NextPageKey)),
            (key(Esc), Action::Log(TuiWidgetEvent::EscapeKey)),
            (key(Char('t')), Action::Log(TuiWidgetEvent::HideKey)),
            (key(Up), Action::Log(TuiWidgetEvent::UpKey)),
            (key(Char('j')), Action::Log(TuiWidgetEvent::DownKey)),
            (key(Left), Action::Log(TuiWidgetEvent::LeftKey)),
            (key(Right), Action::Log(TuiWidgetEvent::RightKey)),
            (shifted('+'), Action::Log(TuiWidgetEvent::PlusKey)),
            (key(Char('-')), Action::Log(TuiWidgetEvent::MinusKey)),
            (key(Char('f')), Action::Log(TuiWidgetEvent::FocusKey)),
            (key(Char(' ')), Action::Log(TuiWidgetEvent::SpaceKey)),
            (key(Char('l')), Action::FocusProviders),
            (key(Tab), Action::FocusProviders),
            (key(Char('q')), Action::Quit),
        ];
        for (k, want) in cases {
            assert_eq!(map_key(k, LOGS), Some(want), "{k:?}");
        }
        // Operator commands are not reachable from the log pane: `f` there is tui-logger's.
        assert_eq!(map_key(key(Char('b')), LOGS), None);
        assert_eq!(map_key(key(Char('s')), LOGS), None);
    }

    #[test]
    fn help_takes_every_key_but_quit() {
        assert_eq!(map_key(key(Esc), HELP), Some(Action::CloseHelp));
        assert_eq!(map_key(shifted('?'), HELP), Some(Action::CloseHelp));
        assert_eq!(map_key(key(Char('q')), HELP), Some(Action::Quit));
        assert_eq!(map_key(KeyEvent::new(Char('c'), KeyModifiers::CONTROL), HELP), Some(Action::Quit));
        assert_eq!(map_key(key(Char('f')), HELP), None);
        assert_eq!(map_key(key(Down), HELP), None);
    }

    #[test]
    fn footer_words_name_real_bindings() {
        // Every key the footer names must do what the footer says in that context.
        let expect = |ctx: KeyContext, label: &str, action: Action| {
            let b =
                bindings(ctx).find(|b| b.action == action).unwrap_or_else(|| panic!("{action:?} unbound"));
            assert!(label.contains(b.label) || b.label.contains(label), "{label} vs {}", b.label);
        };
        expect(PROVIDERS, "f", Action::ToggleDrain);
        expect(PROVIDERS, "b", Action::ResetBreaker);
        expect(PROVIDERS, "h", Action::CheckNow);
        expect(PROVIDERS, "u", Action::CheckUsage);
        expect(PROVIDERS, "s", Action::SaveWeights);
        expect(PROVIDERS, "r", Action::Reload);
        expect(PROVIDERS, "l", Action::FocusLogs);
        expect(PROVIDERS, "+/-", Action::WeightUp);
        expect(PROVIDERS, "+/-", Action::WeightDown);
        expect(DEMO, "d/D", Action::Demo(DemoAction::TakeDown));
        expect(DEMO, "d/D", Action::Demo(DemoAction::BringBack));
        expect(DEMO, "x", Action::Demo(DemoAction::ExhaustCredits));
        expect(DEMO, "]/[", Action::Demo(DemoAction::AddLatency));
        expect(DEMO, "e/E", Action::Demo(DemoAction::LowerErrors));
        expect(LOGS, "l", Action::FocusProviders);
        expect(LOGS, "t", Action::Log(TuiWidgetEvent::HideKey));
        expect(HELP, "?/Esc", Action::CloseHelp);
        for ctx in [PROVIDERS, LOGS] {
            expect(ctx, "?", Action::ToggleHelp);
            expect(ctx, "q", Action::Quit);
        }
        assert_eq!(footer(DEMO).count(), PROVIDER_FOOTER.len() + DEMO_FOOTER.len());
        assert_eq!(footer(PROVIDERS).count(), PROVIDER_FOOTER.len());
    }

    #[test]
    fn no_key_is_bound_twice_in_one_context() {
        for ctx in [PROVIDERS, DEMO, LOGS, HELP] {
            let mut seen = Vec::new();
            for b in bindings(ctx) {
                for k in b.keys {
                    assert!(!seen.contains(k), "{k:?} bound twice in {ctx:?}");
                    seen.push(*k);
                }
            }
        }
    }
}
