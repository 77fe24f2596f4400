//! What the dashboard asks of the running proxy, and what comes back.
//!
//! The dashboard sends [`UiCommand`]s over a bounded channel and receives a [`Feedback`] line
//! for the screen over another; it never sees who carries the commands out. The application
//! glue (`app::dashboard`) runs them through the instance's one command path (the same as the
//! admin API, so their effect shows in the monitoring endpoints too) or the demo's fault
//! injection.

use super::keymap::DemoAction;
use crate::balancer::Command;

/// How many commands may wait for the executor. Commands are cheap; a full queue means
/// something is stuck (a slow save), and the dashboard says "busy" instead of blocking.
pub(crate) const COMMAND_QUEUE: usize = 16;

/// A command from the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiCommand {
    /// An operator command for the balancer (weight, drain, breaker reset, check now).
    Balancer(Command),
    /// Re-read the config file.
    Reload,
    /// Write the weights in force back into the config file.
    SaveWeights,
    /// A demo fault for one simulated upstream.
    Demo { provider: String, action: DemoAction },
}

impl UiCommand {
    /// A short description, shown while the command runs or when it cannot be sent.
    pub fn describe(&self) -> String {
        match self {
            UiCommand::Balancer(Command::SetWeight { provider, weight, .. }) => {
                format!("{provider}: set weight {weight}")
            }
            UiCommand::Balancer(Command::Drain(p)) => format!("{p}: drain"),
            UiCommand::Balancer(Command::Undrain(p)) => format!("{p}: undrain"),
            UiCommand::Balancer(Command::ResetBreaker(p)) => format!("{p}: reset breaker"),
            UiCommand::Balancer(Command::CheckNow(p)) => format!("{p}: check health"),
            UiCommand::Balancer(Command::CheckUsage(p)) => format!("{p}: check usage"),
            UiCommand::Reload => "reload config".into(),
            UiCommand::SaveWeights => "save weights".into(),
            UiCommand::Demo { provider, action } => format!("{provider}: {}", action.describe()),
        }
    }
}

/// Where a command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Sent, no answer yet.
    Pending,
    /// Done.
    Done,
    /// Refused or failed.
    Failed,
}

/// One line about the last command, for the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// Where it stands.
    pub progress: Progress,
    /// What happened, in the words of whoever carried it out.
    pub text: String,
}

impl Feedback {
    /// A command on its way.
    pub fn pending(text: impl Into<String>) -> Feedback {
        Feedback { progress: Progress::Pending, text: text.into() }
    }

    /// A command carried out.
    pub fn done(text: impl Into<String>) -> Feedback {
        Feedback { progress: Progress::Done, text: text.into() }
    }

    /// A command refused or failed.
    pub fn err(text: impl Into<String>) -> Feedback {
        Feedback { progress: Progress::Failed, text: text.into() }
    }
}
