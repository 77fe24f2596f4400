//! Whole-screen tests: the pure renderer on a `TestBackend`, fed the fixed samples of
//! [`super::sample`], compared with the committed insta snapshots in `src/tui/snapshots/`.

use super::app::App;
use super::keymap::Action;
use super::sample::{self, Scenario};
use super::view::render;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use std::sync::Arc;

fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    terminal.draw(|frame| render(app, frame)).expect("draw");
    terminal
}

fn press(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

/// The buffer's text, one line per row, trailing blanks kept (what the screenshots show).
fn text(buffer: &Buffer) -> String {
    let width = usize::from(buffer.area.width);
    let cells: Vec<&str> = buffer.content.iter().map(|c| c.symbol()).collect();
    cells.chunks(width.max(1)).map(|row| row.concat()).collect::<Vec<_>>().join("\n")
}

/// The position of the first occurrence of `needle` on screen, as (column, row).
fn find(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
    let area = buffer.area;
    for y in 0..area.height {
        let row: Vec<&str> = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
        let line = row.concat();
        if let Some(byte) = line.find(needle) {
            // Columns, not bytes: count the cells before the match.
            let mut consumed = 0;
            for (x, sym) in row.iter().enumerate() {
                if consumed == byte {
                    return u16::try_from(x).ok().map(|x| (x, y));
                }
                consumed += sym.len();
            }
        }
    }
    None
}

#[test]
fn normal_at_80x24() {
    let (app, _rx) = sample::app(Scenario::Normal);
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn normal_at_120x36() {
    let (app, _rx) = sample::app(Scenario::Normal);
    insta::assert_snapshot!(draw(&app, 120, 36).backend());
}

#[test]
fn provider_down_at_80x24() {
    let (app, _rx) = sample::app(Scenario::ProviderDown);
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn provider_down_at_120x36() {
    let (app, _rx) = sample::app(Scenario::ProviderDown);
    insta::assert_snapshot!(draw(&app, 120, 36).backend());
}

#[test]
fn help_popup_at_80x24() {
    let (mut app, _rx) = sample::app(Scenario::Normal);
    press(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn help_popup_with_demo_keys_at_80x24() {
    let (app, _rx) = sample::app(Scenario::Normal);
    let mut app = app.with_demo_keys();
    press(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn keys_pane_at_80x24() {
    let (mut app, _rx) = sample::app(Scenario::Normal);
    press(&mut app, KeyCode::Char('k'));
    let terminal = draw(&app, 80, 24);
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("287.4/300"), "alice's credits against her budget:\n{screen}");
    assert!(!screen.contains(" routes "), "the keys pane replaces the routes:\n{screen}");
    insta::assert_snapshot!(terminal.backend());
    press(&mut app, KeyCode::Char('k'));
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains(" routes "), "k again brings the routes back:\n{screen}");
}

#[test]
fn keys_pane_at_120x36() {
    let (mut app, _rx) = sample::app(Scenario::Normal);
    press(&mut app, KeyCode::Char('k'));
    insta::assert_snapshot!(draw(&app, 120, 36).backend());
}

#[test]
fn keys_pane_without_keys_says_how_to_add_one() {
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let mut snapshot = sample::many_providers(2);
    snapshot.keys = Default::default();
    let mut app = App::new(Arc::new(snapshot), tx);
    press(&mut app, KeyCode::Char('k'));
    let screen = text(draw(&app, 100, 24).backend().buffer());
    assert!(screen.contains("ccr keys add NAME"), "{screen}");
}

#[test]
fn log_focus_at_80x24() {
    let (mut app, _rx) = sample::app(Scenario::ProviderDown);
    press(&mut app, KeyCode::Char('l'));
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn ten_providers_scroll_at_80x24() {
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let mut app = App::new(Arc::new(sample::many_providers(10)), tx);
    app.apply(Action::SelectLast);
    let terminal = draw(&app, 80, 24);
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("kiro-10"), "the selected last provider is scrolled into view:\n{screen}");
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn breaker_states_are_coloured() {
    let (app, _rx) = sample::app(Scenario::ProviderDown);
    let terminal = draw(&app, 120, 36);
    let buffer = terminal.backend().buffer();
    let (x, y) = find(buffer, "OPEN ").expect("an open breaker on screen");
    assert_eq!(buffer[(x, y)].fg, Color::Red, "open breaker in red");
    let (x, y) = find(buffer, "CLOSED").expect("a closed breaker on screen");
    assert_eq!(buffer[(x, y)].fg, Color::Green, "closed breaker in green");
    // The operator's weight override stands out.
    let (x, y) = find(buffer, "1→2").expect("weight override marked");
    assert_eq!(buffer[(x, y)].fg, Color::Magenta);
}

#[test]
fn needs_login_at_80x24_shows_the_reason_and_the_fix() {
    let mut s = sample::snapshot(Scenario::Normal);
    let spare = &mut s.providers[2];
    spare.status = crate::snapshot::ProviderStatus::NeedsLogin;
    spare.available = false;
    spare.status_reason = Some(format!(
        "token file /home/me/.aws/sso/cache/kiro-auth-token-spare.json not found; fix: {}",
        crate::firstrun::fix_hint("kiro-spare")
    ));
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let mut app = App::new(Arc::new(s), tx);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    let terminal = draw(&app, 80, 24);
    let screen = text(terminal.backend().buffer());
    assert!(
        screen.contains("└ kiro-spare: token file /home/me/.aws/sso/cache/kiro-auth-token-spare.json"),
        "{screen}"
    );
    assert!(screen.contains("needs_login"), "{screen}");
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn half_open_breaker_is_yellow() {
    let mut s = sample::snapshot(Scenario::ProviderDown);
    if let Some(b) = s.providers.get_mut(2).and_then(|p| p.core.breaker.as_mut()) {
        b.state = crate::balancer::BreakerState::HalfOpen;
    }
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let app = App::new(Arc::new(s), tx);
    let terminal = draw(&app, 120, 36);
    let buffer = terminal.backend().buffer();
    let (x, y) = find(buffer, "HALF_OPEN").expect("half-open on screen");
    assert_eq!(buffer[(x, y)].fg, Color::Yellow);
}

#[test]
fn every_action_shows_on_screen() {
    let (mut app, mut rx) = sample::app(Scenario::Normal);
    press(&mut app, KeyCode::Char('f'));
    assert!(rx.try_recv().is_ok());
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("kiro-work: drain…"), "{screen}");
    app.on_feedback(super::Feedback::done("kiro-work: drained: new requests fail over"));
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("» kiro-work: drained: new requests fail over"), "{screen}");
    app.on_feedback(super::Feedback::err("config not reloaded, keeping the previous one: bad"));
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("✗ config not reloaded"), "{screen}");
}

#[test]
fn tiny_and_empty_screens_do_not_panic() {
    let (mut app, _rx) = sample::app(Scenario::ProviderDown);
    for (w, h) in [(1, 1), (10, 4), (30, 8), (80, 5), (200, 3)] {
        draw(&app, w, h);
    }
    press(&mut app, KeyCode::Char('?'));
    for (w, h) in [(1, 1), (10, 4), (30, 8)] {
        draw(&app, w, h);
    }
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let empty = App::new(Arc::new(crate::snapshot::Snapshot::empty()), tx);
    let screen = text(draw(&empty, 80, 24).backend().buffer());
    assert!(screen.contains("no providers"), "{screen}");
}
