//! The dashboard's state: the latest snapshot, the selection, the focus, the last command's
//! result, and the sending end of the command channel.
//!
//! `App` never touches the balancer: it reads an `Arc<Snapshot>` that the event loop hands it and
//! turns key presses into [`UiCommand`]s on a bounded channel. Everything here is synchronous and
//! clock-free, so tests drive it with key events and read the channel.

use super::command::{Feedback, Progress, UiCommand};
use super::keymap::{self, Action, Focus, KeyContext};
use super::logs::LogPane;
use crate::balancer::{Command, RuleSnapshot};
use crate::snapshot::{ProviderView, RuleView, Snapshot};
use crossterm::event::KeyEvent;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The highest weight the `+` key sets: far above any useful ratio, low enough that a held key
/// cannot overflow anything.
pub(super) const MAX_WEIGHT: u32 = 1000;

/// How many of a rule's latest picks the routes table summarises ("recent picks").
pub(super) const RECENT_PICKS: usize = 20;

/// How long a command's result stays in the header, in snapshot-clock ms.
pub(super) const FEEDBACK_SHOWN_MS: u64 = 5_000;

/// A check whose result the dashboard waits for in the snapshots.
#[derive(Debug, Clone, PartialEq)]
enum Awaiting {
    Health { id: String, last_check_ms: Option<u64> },
    Usage { id: String, checked_at: Option<chrono::DateTime<chrono::Utc>> },
}

/// The dashboard's state. Rendering reads it ([`super::view::render`]); keys change it
/// ([`App::on_key`]).
pub struct App {
    snapshot: Arc<Snapshot>,
    selected: usize,
    focus: Focus,
    help_open: bool,
    /// Whether the developers' keys pane replaces the routes table.
    keys_open: bool,
    demo: bool,
    feedback: Option<Feedback>,
    /// The snapshot clock ([`Snapshot::now_ms`]) when the feedback was set: a result line goes
    /// away [`FEEDBACK_SHOWN_MS`] later.
    feedback_at_ms: u64,
    /// A health check or usage check asked for and not yet seen finished, with the provider's
    /// last check time when it was asked.
    awaiting: Option<Awaiting>,
    /// The feedback line is a check's result, which the executor's later "requested" must not
    /// replace.
    showing_check_result: bool,
    /// Weights sent but not yet seen in a snapshot, so that `+ + +` adds three, not one.
    pending_weights: BTreeMap<String, u32>,
    recent: RecentPicks,
    logs: LogPane,
    commands: mpsc::Sender<UiCommand>,
    quit: bool,
}

impl App {
    /// A dashboard showing `snapshot` and sending its commands to `commands`.
    pub fn new(snapshot: Arc<Snapshot>, commands: mpsc::Sender<UiCommand>) -> App {
        let mut recent = RecentPicks::default();
        recent.observe(&snapshot.rules);
        App {
            snapshot,
            selected: 0,
            focus: Focus::Providers,
            help_open: false,
            keys_open: false,
            demo: false,
            feedback: None,
            feedback_at_ms: 0,
            awaiting: None,
            showing_check_result: false,
            pending_weights: BTreeMap::new(),
            recent,
            logs: LogPane::default(),
            commands,
            quit: false,
        }
    }

    /// Turn on the demo's fault keys ([`keymap::DEMO_BINDINGS`]); their commands go out as
    /// [`UiCommand::Demo`].
    pub fn with_demo_keys(mut self) -> App {
        self.demo = true;
        self
    }

    /// Use this log pane (the live tui-logger pane, or fixed lines for tests and screenshots).
    pub fn with_log_pane(mut self, logs: LogPane) -> App {
        self.logs = logs;
        self
    }

    /// The snapshot on screen.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Show a newer snapshot. The selection follows the selected provider by id when the provider
    /// list changes (a reload), and stays in range.
    pub fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        let selected_id = self.selected_provider().map(|p| p.core.id.clone());
        self.snapshot = snapshot;
        let providers = &self.snapshot.providers;
        if let Some(i) = selected_id.and_then(|id| providers.iter().position(|p| p.core.id == id)) {
            self.selected = i;
        }
        self.selected = self.selected.min(providers.len().saturating_sub(1));
        self.pending_weights.retain(|id, w| {
            providers.iter().find(|p| &p.core.id == id).is_some_and(|p| p.effective_weight != *w)
        });
        self.recent.observe(&self.snapshot.rules);
        self.check_results();
        if self.feedback.as_ref().is_some_and(|f| f.progress != Progress::Pending)
            && self.snapshot.now_ms.saturating_sub(self.feedback_at_ms) >= FEEDBACK_SHOWN_MS
        {
            self.feedback = None;
        }
    }

    /// Turn a finished health or usage check that was asked for into a result line.
    fn check_results(&mut self) {
        let Some(awaiting) = &self.awaiting else { return };
        let id = match awaiting {
            Awaiting::Health { id, .. } | Awaiting::Usage { id, .. } => id.clone(),
        };
        let Some(view) = self.snapshot.providers.iter().find(|p| p.core.id == id) else {
            self.awaiting = None;
            return;
        };
        let feedback = match awaiting {
            Awaiting::Health { last_check_ms, .. } => {
                let h = &view.core.health;
                if h.last_check_ms.is_none() || h.last_check_ms == *last_check_ms {
                    return;
                }
                match (&h.last_error, h.consecutive_failures) {
                    (Some(error), n) if n > 0 => Feedback::err(format!(
                        "{id}: health check failed ({n}/{} in a row): {error}",
                        h.retries
                    )),
                    _ => Feedback::done(match h.last_latency_ms {
                        Some(ms) => format!("{id}: health check passed in {ms:.0} ms"),
                        None => format!("{id}: health check passed"),
                    }),
                }
            }
            Awaiting::Usage { checked_at, .. } => {
                let Some(u) = &view.core.usage else { return };
                if Some(u.checked_at) == *checked_at {
                    return;
                }
                let tier = u.tier.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
                Feedback::done(format!(
                    "{id}: {:.1} of {:.1} credits used, {:.1} left{tier}",
                    u.used, u.limit, u.remaining
                ))
            }
        };
        self.awaiting = None;
        self.set_feedback(feedback);
        self.showing_check_result = true;
    }

    fn set_feedback(&mut self, feedback: Feedback) {
        self.showing_check_result = false;
        self.feedback = Some(feedback);
        self.feedback_at_ms = self.snapshot.now_ms;
    }

    /// Show the outcome of a command. A check's "requested" is followed by its result once a
    /// snapshot shows it finished.
    pub fn on_feedback(&mut self, feedback: Feedback) {
        if feedback.progress == Progress::Failed {
            // A refused weight change must not skew the next `+`.
            self.pending_weights.clear();
            self.awaiting = None;
        } else if self.showing_check_result {
            return;
        }
        self.set_feedback(feedback);
    }

    /// Handle a key press. Returns whether the screen may have changed.
    pub fn on_key(&mut self, key: KeyEvent) -> bool {
        match keymap::map_key(key, self.key_context()) {
            Some(action) => {
                self.apply(action);
                true
            }
            None => false,
        }
    }

    /// Carry out an action: change the view, or send a command for the selected provider.
    pub fn apply(&mut self, action: Action) {
        let len = self.snapshot.providers.len();
        match action {
            Action::Quit => self.quit = true,
            Action::SelectPrev => self.selected = self.selected.saturating_sub(1),
            Action::SelectNext => self.selected = (self.selected + 1).min(len.saturating_sub(1)),
            Action::SelectFirst => self.selected = 0,
            Action::SelectLast => self.selected = len.saturating_sub(1),
            Action::WeightUp => self.change_weight(|w| w.saturating_add(1).min(MAX_WEIGHT)),
            Action::WeightDown => self.change_weight(|w| w.saturating_sub(1)),
            Action::WeightUpTen => self.change_weight(|w| w.saturating_add(10).min(MAX_WEIGHT)),
            Action::WeightDownTen => self.change_weight(|w| w.saturating_sub(10)),
            Action::ToggleDrain => {
                if let Some(p) = self.selected_provider() {
                    let id = p.core.id.clone();
                    let cmd = if p.core.drained { Command::Undrain(id) } else { Command::Drain(id) };
                    self.send(UiCommand::Balancer(cmd));
                }
            }
            Action::ResetBreaker => {
                self.send_for_selected(|id| UiCommand::Balancer(Command::ResetBreaker(id)))
            }
            Action::CheckNow => {
                if let Some(p) = self.selected_provider() {
                    let awaiting = Awaiting::Health {
                        id: p.core.id.clone(),
                        last_check_ms: p.core.health.last_check_ms,
                    };
                    let id = p.core.id.clone();
                    if self.send(UiCommand::Balancer(Command::CheckNow(id))) {
                        self.awaiting = Some(awaiting);
                    }
                }
            }
            Action::CheckUsage => {
                if let Some(p) = self.selected_provider() {
                    let checked_at = p.core.usage.as_ref().map(|u| u.checked_at);
                    let awaiting = Awaiting::Usage { id: p.core.id.clone(), checked_at };
                    let id = p.core.id.clone();
                    if self.send(UiCommand::Balancer(Command::CheckUsage(id))) {
                        self.awaiting = Some(awaiting);
                    }
                }
            }
            Action::Demo(action) => self.send_for_selected(|provider| UiCommand::Demo { provider, action }),
            Action::SaveWeights => {
                self.send(UiCommand::SaveWeights);
            }
            Action::Reload => {
                self.send(UiCommand::Reload);
            }
            Action::FocusLogs => self.focus = Focus::Logs,
            Action::FocusProviders => self.focus = Focus::Providers,
            Action::ToggleHelp => self.help_open = !self.help_open,
            Action::CloseHelp => self.help_open = false,
            Action::ToggleKeys => self.keys_open = !self.keys_open,
            Action::Log(event) => self.logs.transition(event),
        }
    }

    fn change_weight(&mut self, f: impl Fn(u32) -> u32) {
        let Some(p) = self.selected_provider() else { return };
        let id = p.core.id.clone();
        let current = self.pending_weights.get(&id).copied().unwrap_or(p.effective_weight);
        let weight = f(current);
        if weight == current {
            self.set_feedback(Feedback::err(format!("{id}: weight stays {current} (range 0–{MAX_WEIGHT})")));
            return;
        }
        if self.send(UiCommand::Balancer(Command::SetWeight { provider: id.clone(), rule: None, weight })) {
            self.pending_weights.insert(id, weight);
        }
    }

    fn send_for_selected(&mut self, make: impl FnOnce(String) -> UiCommand) {
        if let Some(p) = self.selected_provider() {
            let cmd = make(p.core.id.clone());
            self.send(cmd);
        }
    }

    /// Queue a command; says so on screen until its result arrives. Returns whether it was queued.
    fn send(&mut self, cmd: UiCommand) -> bool {
        let what = cmd.describe();
        match self.commands.try_send(cmd) {
            Ok(()) => {
                self.set_feedback(Feedback::pending(format!("{what}…")));
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.set_feedback(Feedback::err(format!("busy: {what} not sent, try again")));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.set_feedback(Feedback::err(format!("{what}: the proxy is shutting down")));
                false
            }
        }
    }

    /// Whether the user asked to quit.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// What the key map needs to know.
    pub fn key_context(&self) -> KeyContext {
        KeyContext { focus: self.focus, help_open: self.help_open, demo: self.demo }
    }

    /// Index of the selected provider in the snapshot's provider list.
    pub fn selected_index(&self) -> usize {
        self.selected
    }

    /// The selected provider, if there is any provider.
    pub fn selected_provider(&self) -> Option<&ProviderView> {
        self.snapshot.providers.get(self.selected)
    }

    /// Which pane has the keyboard.
    pub fn focus(&self) -> Focus {
        self.focus
    }

    /// Whether the help popup is open.
    pub fn help_open(&self) -> bool {
        self.help_open
    }

    /// Whether the developers' keys pane is shown (in place of the routes table).
    pub fn keys_open(&self) -> bool {
        self.keys_open
    }

    /// Whether the demo's fault keys are live.
    pub fn demo_keys(&self) -> bool {
        self.demo
    }

    /// The last command's outcome (or "sent" while it runs).
    pub fn feedback(&self) -> Option<&Feedback> {
        self.feedback.as_ref()
    }

    /// The log pane.
    pub fn logs(&self) -> &LogPane {
        &self.logs
    }

    /// How often each of the rule's candidates was among its last [`RECENT_PICKS`] picks, in
    /// candidate order.
    pub fn recent_picks(&self, rule: &RuleSnapshot) -> Vec<usize> {
        self.recent.counts(rule)
    }
}

/// The latest picks of each rule, rebuilt from the growth of the pick counters between snapshots.
///
/// Snapshots may coalesce several picks; their order inside one snapshot step is lost, which does
/// not matter for a count over the window.
#[derive(Debug, Default)]
struct RecentPicks {
    /// Per category: the pick counters last seen, by provider id.
    last: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per category: the latest picks, oldest first.
    window: BTreeMap<String, VecDeque<String>>,
}

impl RecentPicks {
    fn observe(&mut self, rules: &[RuleView]) {
        self.last.retain(|category, _| rules.iter().any(|r| &r.core.category == category));
        self.window.retain(|category, _| rules.iter().any(|r| &r.core.category == category));
        for rule in rules.iter().map(|r| &r.core) {
            let last = self.last.entry(rule.category.clone()).or_default();
            let window = self.window.entry(rule.category.clone()).or_default();
            for p in &rule.providers {
                let before = last.insert(p.id.clone(), p.picks);
                // A provider seen for the first time counts from here on, not from zero.
                let grown = before.map_or(0, |b| p.picks.saturating_sub(b));
                let grown = usize::try_from(grown).unwrap_or(RECENT_PICKS).min(RECENT_PICKS);
                window.extend(std::iter::repeat_n(p.id.clone(), grown));
            }
            while window.len() > RECENT_PICKS {
                window.pop_front();
            }
        }
    }

    fn counts(&self, rule: &RuleSnapshot) -> Vec<usize> {
        let window = self.window.get(&rule.category);
        rule.providers
            .iter()
            .map(|p| window.map_or(0, |w| w.iter().filter(|id| **id == p.id).count()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::keymap::DemoAction;
    use crate::tui::sample::{self, IDS, Scenario};
    use crossterm::event::{KeyCode, KeyModifiers};

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    fn app_with(capacity: usize) -> (App, mpsc::Receiver<UiCommand>) {
        let (tx, rx) = mpsc::channel(capacity);
        (App::new(Arc::new(sample::snapshot(Scenario::Normal)), tx), rx)
    }

    fn drain(rx: &mut mpsc::Receiver<UiCommand>) -> Vec<UiCommand> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn set_weight(provider: &str, weight: u32) -> UiCommand {
        UiCommand::Balancer(Command::SetWeight { provider: provider.into(), rule: None, weight })
    }

    #[test]
    fn key_presses_send_commands_for_the_selected_provider() {
        let (mut app, mut rx) = app_with(32);
        for c in ['j', '+', '+', 'f', 'b', 'h'] {
            assert!(app.on_key(key(c)), "{c} is bound");
        }
        assert!(app.on_key(KeyEvent::new(KeyCode::Up, KeyModifiers::NONE)));
        for c in ['-', 's', 'r'] {
            assert!(app.on_key(key(c)), "{c} is bound");
        }
        // IDS[1] is kiro-personal, whose weight in force is 2 (override of 1).
        assert_eq!(
            drain(&mut rx),
            vec![
                set_weight(IDS[1], 3),
                set_weight(IDS[1], 4),
                UiCommand::Balancer(Command::Drain(IDS[1].into())),
                UiCommand::Balancer(Command::ResetBreaker(IDS[1].into())),
                UiCommand::Balancer(Command::CheckNow(IDS[1].into())),
                set_weight(IDS[0], 2),
                UiCommand::SaveWeights,
                UiCommand::Reload,
            ]
        );
        assert!(!app.should_quit());
        assert!(app.on_key(key('q')));
        assert!(app.should_quit());
    }

    #[test]
    fn angle_brackets_step_the_weight_by_ten() {
        let (mut app, mut rx) = app_with(8);
        // IDS[0] (kiro-work) has weight 3.
        app.on_key(key('>'));
        app.on_key(key('<'));
        app.on_key(key('<'));
        assert_eq!(
            drain(&mut rx),
            vec![set_weight(IDS[0], 13), set_weight(IDS[0], 3), set_weight(IDS[0], 0)]
        );
    }

    #[test]
    fn a_health_check_shows_its_result_when_a_snapshot_has_it_then_the_line_clears() {
        let (mut app, mut rx) = app_with(8);
        let base = sample::snapshot(Scenario::Normal);
        let before = base.providers[0].core.health.last_check_ms;
        app.on_key(key('h'));
        assert_eq!(drain(&mut rx), vec![UiCommand::Balancer(Command::CheckNow(IDS[0].into()))]);
        // A snapshot without a new check changes nothing.
        app.on_snapshot(Arc::new(base.clone()));
        assert_eq!(app.feedback().map(|f| f.progress), Some(Progress::Pending));
        // The check fails.
        let mut s = base.clone();
        let h = &mut s.providers[0].core.health;
        h.last_check_ms = Some(before.unwrap_or(0) + 1_000);
        h.consecutive_failures = 1;
        h.last_error = Some("connection refused".into());
        s.now_ms = base.now_ms + 1_000;
        app.on_snapshot(Arc::new(s.clone()));
        let f = app.feedback().expect("a result").clone();
        assert_eq!(f.progress, Progress::Failed);
        assert!(f.text.contains("health check failed (1/") && f.text.contains("connection refused"), "{f:?}");
        // The executor's "requested" arriving late does not hide the result.
        app.on_feedback(Feedback::done("kiro-work: health check requested"));
        assert_eq!(app.feedback(), Some(&f));
        // Still there 4 s later, gone at 5 s.
        s.now_ms += FEEDBACK_SHOWN_MS - 1;
        app.on_snapshot(Arc::new(s.clone()));
        assert!(app.feedback().is_some());
        s.now_ms += 1;
        app.on_snapshot(Arc::new(s));
        assert_eq!(app.feedback(), None);
    }

    #[test]
    fn a_passing_health_check_says_how_long_it_took() {
        let (mut app, _rx) = app_with(8);
        let base = sample::snapshot(Scenario::Normal);
        app.on_key(key('h'));
        let mut s = base.clone();
        let h = &mut s.providers[0].core.health;
        h.last_check_ms = Some(h.last_check_ms.unwrap_or(0) + 500);
        h.consecutive_failures = 0;
        h.last_error = None;
        h.last_latency_ms = Some(118.4);
        app.on_snapshot(Arc::new(s));
        let f = app.feedback().expect("a result");
        assert_eq!(
            (f.progress, f.text.as_str()),
            (Progress::Done, "kiro-work: health check passed in 118 ms")
        );
    }

    #[test]
    fn drain_toggles_back_once_the_snapshot_shows_it_drained() {
        let (mut app, mut rx) = app_with(8);
        app.on_key(key('f'));
        let mut s = sample::snapshot(Scenario::Normal);
        s.providers[0].core.drained = true;
        app.on_snapshot(Arc::new(s));
        app.on_key(key('f'));
        assert_eq!(
            drain(&mut rx),
            vec![
                UiCommand::Balancer(Command::Drain(IDS[0].into())),
                UiCommand::Balancer(Command::Undrain(IDS[0].into())),
            ]
        );
    }

    #[test]
    fn weight_steps_start_from_the_snapshot_once_it_caught_up() {
        let (mut app, mut rx) = app_with(8);
        app.on_key(key('+')); // kiro-work 3 -> 4
        let mut s = sample::snapshot(Scenario::Normal);
        s.providers[0].effective_weight = 4;
        s.providers[0].core.weight_override = Some(4);
        app.on_snapshot(Arc::new(s));
        assert!(app.pending_weights.is_empty(), "the snapshot confirmed the weight");
        app.on_key(key('-'));
        assert_eq!(drain(&mut rx), vec![set_weight(IDS[0], 4), set_weight(IDS[0], 3)]);
    }

    #[test]
    fn a_refused_command_resets_pending_weights() {
        let (mut app, mut rx) = app_with(8);
        app.on_key(key('+'));
        app.on_feedback(Feedback::err("unknown provider"));
        app.on_key(key('+'));
        assert_eq!(drain(&mut rx), vec![set_weight(IDS[0], 4), set_weight(IDS[0], 4)]);
    }

    #[test]
    fn weight_stays_in_range() {
        let mut s = sample::snapshot(Scenario::Normal);
        s.providers[0].effective_weight = 0;
        let (tx, mut rx) = mpsc::channel(8);
        let mut app = App::new(Arc::new(s), tx);
        app.on_key(key('-'));
        assert!(drain(&mut rx).is_empty(), "no command below zero");
        assert_eq!(app.feedback().map(|f| f.progress), Some(Progress::Failed));
    }

    #[test]
    fn selection_stays_in_range_and_follows_the_provider_across_reloads() {
        let (mut app, _rx) = app_with(8);
        for _ in 0..10 {
            app.on_key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
        }
        assert_eq!(app.selected_index(), 2);
        app.on_key(KeyEvent::new(KeyCode::Up, KeyModifiers::NONE));
        assert_eq!(app.selected_provider().map(|p| p.core.id.as_str()), Some(IDS[1]));
        // A reload removes the first provider: the selection stays on kiro-personal.
        let mut s = sample::snapshot(Scenario::Normal);
        s.providers.remove(0);
        app.on_snapshot(Arc::new(s));
        assert_eq!(app.selected_provider().map(|p| p.core.id.as_str()), Some(IDS[1]));
        // Everything removed: nothing selected, keys send nothing.
        let mut s = sample::snapshot(Scenario::Normal);
        s.providers.clear();
        app.on_snapshot(Arc::new(s));
        assert!(app.selected_provider().is_none());
        app.on_key(key('f'));
        app.on_key(key('+'));
    }

    #[test]
    fn demo_keys_send_demo_commands_only_in_the_demo() {
        let (mut app, mut rx) = app_with(8);
        assert!(!app.on_key(key('d')), "not bound outside the demo");
        let mut app = app.with_demo_keys();
        app.on_key(key('j'));
        for c in ['d', 'D', ']', '[', 'e', 'E', 'x'] {
            assert!(app.on_key(key(c)));
        }
        let provider = IDS[1].to_string();
        let demo = |action| UiCommand::Demo { provider: provider.clone(), action };
        assert_eq!(
            drain(&mut rx),
            vec![
                demo(DemoAction::TakeDown),
                demo(DemoAction::BringBack),
                demo(DemoAction::AddLatency),
                demo(DemoAction::RemoveLatency),
                demo(DemoAction::RaiseErrors),
                demo(DemoAction::LowerErrors),
                demo(DemoAction::ExhaustCredits),
            ]
        );
    }

    #[test]
    fn log_focus_and_help_keep_operator_keys_away() {
        let (mut app, mut rx) = app_with(8);
        app.on_key(key('l'));
        assert_eq!(app.focus(), Focus::Logs);
        app.on_key(key('f')); // tui-logger's "focus target", not drain
        app.on_key(key('l'));
        assert_eq!(app.focus(), Focus::Providers);
        app.on_key(key('?'));
        assert!(app.help_open());
        app.on_key(key('b')); // swallowed by the help
        app.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        assert!(!app.help_open());
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn a_full_queue_says_busy_instead_of_blocking() {
        let (mut app, mut rx) = app_with(1);
        app.on_key(key('b'));
        app.on_key(key('h'));
        let f = app.feedback().expect("feedback");
        assert_eq!(f.progress, Progress::Failed);
        assert!(f.text.starts_with("busy:"), "{}", f.text);
        assert_eq!(drain(&mut rx).len(), 1);
        drop(rx);
        app.on_key(key('r'));
        assert!(app.feedback().is_some_and(|f| f.text.contains("shutting down")));
    }

    #[test]
    fn recent_picks_count_the_latest_picks_per_rule() {
        let (app, _rx) = sample::app(Scenario::Normal);
        let rule = &app.snapshot().rules[0].core;
        // Between the earlier and the current sample, default picked 6, 4 and 2 times.
        assert_eq!(app.recent_picks(rule), vec![6, 4, 2]);
        // The window holds the last RECENT_PICKS only.
        let (tx, _rx) = mpsc::channel(1);
        let mut app = App::new(Arc::new(sample::earlier_snapshot(Scenario::Normal)), tx);
        let mut s = sample::snapshot(Scenario::Normal);
        for p in &mut s.rules[0].core.providers {
            p.picks += 100;
        }
        app.on_snapshot(Arc::new(s));
        let counts = app.recent_picks(&app.snapshot().rules[0].core);
        assert_eq!(counts.iter().sum::<usize>(), RECENT_PICKS);
    }
}
