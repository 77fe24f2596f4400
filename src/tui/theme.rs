//! Colours and text styles of the dashboard, in one place so that every pane speaks the same
//! visual language: green is fine, yellow is degraded or transient, red is broken, magenta is an
//! operator's doing (drained, weight override).

use crate::balancer::BreakerState;
use crate::snapshot::ProviderStatus;
use ratatui::style::{Color, Modifier, Style};

/// Body text.
pub(super) const TEXT: Style = Style::new();
/// Secondary text: labels, units, "no data" dashes.
pub(super) const DIM: Style = Style::new().fg(Color::DarkGray);
/// Pane titles.
pub(super) const TITLE: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
/// The border of the focused pane.
pub(super) const FOCUSED_BORDER: Style = Style::new().fg(Color::Cyan);
/// The border of the other panes.
pub(super) const BORDER: Style = Style::new().fg(Color::DarkGray);
/// Column headers of tables.
pub(super) const HEADER: Style = Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD);
/// The selected table row: a dark grey from the 256-colour ramp, dark enough that red, yellow
/// and green text on it stays readable.
pub(super) const SELECTED: Style = Style::new().bg(Color::Indexed(237)).add_modifier(Modifier::BOLD);
/// Key names in the footer and the help popup.
pub(super) const KEY: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
/// Something working.
pub(super) const GOOD: Style = Style::new().fg(Color::Green);
/// Something degraded or transient.
pub(super) const WARN: Style = Style::new().fg(Color::Yellow);
/// Something broken.
pub(super) const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
/// Something the operator did by hand (drain, weight override).
pub(super) const OPERATOR: Style = Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD);
/// The latency sparkline.
pub(super) const LATENCY: Style = Style::new().fg(Color::Cyan);
/// The application name in the header.
pub(super) const BRAND: Style = Style::new().fg(Color::Black).bg(Color::Cyan).add_modifier(Modifier::BOLD);

/// The colour of a breaker state: closed is green, half-open yellow, open red.
pub(super) fn breaker(state: BreakerState) -> Style {
    match state {
        BreakerState::Closed => GOOD,
        BreakerState::HalfOpen => WARN,
        BreakerState::Open => BAD,
    }
}

/// A provider's status as its one name ([`ProviderStatus::as_str`]), and its colour.
pub(super) fn provider_status(status: ProviderStatus) -> (&'static str, Style) {
    let style = match status {
        ProviderStatus::Healthy => GOOD,
        ProviderStatus::Unknown => TEXT,
        ProviderStatus::Draining => OPERATOR,
        ProviderStatus::CoolingDown => WARN,
        ProviderStatus::Unhealthy
        | ProviderStatus::NeedsLogin
        | ProviderStatus::Suspended
        | ProviderStatus::QuotaExhausted
        | ProviderStatus::CircuitOpen => BAD,
    };
    (status.as_str(), style)
}

/// The colour of a credits gauge by the share left: green, yellow under 30 %, red under 10 %.
pub(crate) fn credits(remaining_share: f64) -> Style {
    if remaining_share < 0.1 {
        BAD
    } else if remaining_share < 0.3 {
        WARN
    } else {
        GOOD
    }
}
