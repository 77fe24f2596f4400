//! What the dashboard asks of the running proxy, and the task that carries it out.
//!
//! The dashboard sends [`UiCommand`]s over a bounded channel; [`spawn_executor`] applies them to
//! the [`Runtime`] (balancer commands, reload, save weights) or to the demo's [`DemoControls`],
//! and sends back a [`Feedback`] line for the screen. Balancer commands take the same path as the
//! admin API, so their effect shows in the monitoring endpoints too.

use super::keymap::DemoAction;
use crate::balancer::Command;
use crate::server::Runtime;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How many commands may wait for the executor. Commands are cheap; a full queue means
/// something is stuck (a slow save), and the dashboard says "busy" instead of blocking.
pub const COMMAND_QUEUE: usize = 16;

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
pub enum Outcome {
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
    pub outcome: Outcome,
    /// What happened, in the words of whoever carried it out.
    pub text: String,
}

impl Feedback {
    /// A command on its way.
    pub fn pending(text: impl Into<String>) -> Feedback {
        Feedback { outcome: Outcome::Pending, text: text.into() }
    }

    /// A command carried out.
    pub fn done(text: impl Into<String>) -> Feedback {
        Feedback { outcome: Outcome::Done, text: text.into() }
    }

    /// A command refused or failed.
    pub fn err(text: impl Into<String>) -> Feedback {
        Feedback { outcome: Outcome::Failed, text: text.into() }
    }

    fn from_result(r: Result<String, String>) -> Feedback {
        match r {
            Ok(t) => Feedback::done(t),
            Err(t) => Feedback::err(t),
        }
    }
}

/// The demo's fault injection, plugged into the dashboard by `ccr demo`.
///
/// The dashboard only knows the provider id and the [`DemoAction`]; how an upstream is taken
/// down or slowed is the demo's business. Implementations must be quick (they run on the
/// executor task): flip a switch, do not wait for its effect.
pub trait DemoControls: Send + Sync {
    /// Apply `action` to the simulated upstream behind `provider`; return a one-line description
    /// of the new state (e.g. "w-2: down"), or why it could not be done.
    fn apply(&self, provider: &str, action: DemoAction) -> Result<String, String>;
}

/// Carry out one command.
pub async fn execute(
    runtime: &Arc<Runtime>,
    demo: Option<&Arc<dyn DemoControls>>,
    cmd: UiCommand,
) -> Feedback {
    match cmd {
        UiCommand::Balancer(cmd) => {
            Feedback::from_result(runtime.balancer.apply(cmd).map_err(|e| e.to_string()))
        }
        UiCommand::Reload => {
            let rt = runtime.clone();
            let result = tokio::task::spawn_blocking(move || rt.reload()).await;
            Feedback::from_result(result.unwrap_or_else(|e| Err(format!("reload failed: {e}"))))
        }
        UiCommand::SaveWeights => {
            let rt = runtime.clone();
            let result = tokio::task::spawn_blocking(move || rt.save_weights()).await;
            Feedback::from_result(result.unwrap_or_else(|e| Err(format!("save failed: {e}"))))
        }
        UiCommand::Demo { provider, action } => match demo {
            Some(d) => Feedback::from_result(d.apply(&provider, action)),
            None => Feedback::err("demo keys work only in `ccr demo`"),
        },
    }
}

/// Run commands from the dashboard one at a time until the dashboard drops its sender, sending
/// each result back. Results nobody reads any more are dropped.
pub fn spawn_executor(
    runtime: Arc<Runtime>,
    demo: Option<Arc<dyn DemoControls>>,
    mut commands: mpsc::Receiver<UiCommand>,
    feedback: mpsc::Sender<Feedback>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(cmd) = commands.recv().await {
            let result = execute(&runtime, demo.as_ref(), cmd).await;
            if feedback.send(result).await.is_err() {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSource, parse_config};
    use std::sync::Mutex;

    const CONFIG: &str = r#"{
      "routing": {"rules": {
        "default": {"providers": ["a", "b"],
                    "loadBalancing": {"strategy": "weighted-round-robin"}}
      }},
      "providers": {
        "a": {"weight": 3, "endpoint": "http://127.0.0.1:9", "tokenPath": "/nonexistent/ccr-tui-test/a.json"},
        "b": {"weight": 1, "endpoint": "http://127.0.0.1:9", "tokenPath": "/nonexistent/ccr-tui-test/b.json"}
      }
    }"#;

    fn runtime(source: ConfigSource) -> Arc<Runtime> {
        Runtime::new(parse_config(CONFIG).expect("test config"), source)
    }

    /// Records what the dashboard asked of the demo.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, DemoAction)>>);

    impl DemoControls for Recorder {
        fn apply(&self, provider: &str, action: DemoAction) -> Result<String, String> {
            if provider == "nope" {
                return Err(format!("no upstream {provider}"));
            }
            self.0.lock().map_err(|e| e.to_string())?.push((provider.to_owned(), action));
            Ok(format!("{provider}: {}", action.describe()))
        }
    }

    #[tokio::test]
    async fn balancer_commands_change_the_balancer() {
        let rt = runtime(ConfigSource::Embedded);
        let set = UiCommand::Balancer(Command::SetWeight { provider: "b".into(), rule: None, weight: 5 });
        let f = execute(&rt, None, set).await;
        assert_eq!(f, Feedback::done("b: weight 1 -> 5 (all rules)"));
        let f = execute(&rt, None, UiCommand::Balancer(Command::Drain("a".into()))).await;
        assert_eq!(f.outcome, Outcome::Done);
        let s = rt.balancer.snapshot();
        assert_eq!(s.provider("b").and_then(|p| p.weight_override), Some(5));
        assert!(s.provider("a").is_some_and(|p| p.drained));
        // The published snapshot (what the dashboard and the monitoring endpoints read) agrees.
        let view = rt.snapshot_now();
        assert_eq!(view.provider("b").map(|p| p.effective_weight), Some(5));
    }

    #[tokio::test]
    async fn refusals_come_back_as_failed_feedback() {
        let rt = runtime(ConfigSource::Embedded);
        let f = execute(&rt, None, UiCommand::Balancer(Command::ResetBreaker("zz".into()))).await;
        assert_eq!(f, Feedback::err("unknown provider \"zz\""));
        let f = execute(&rt, None, UiCommand::Balancer(Command::CheckNow("a".into()))).await;
        assert_eq!(f, Feedback::err("provider \"a\" has no health check configured"));
        let demo = UiCommand::Demo { provider: "a".into(), action: DemoAction::TakeDown };
        let f = execute(&rt, None, demo).await;
        assert_eq!(f.outcome, Outcome::Failed, "no demo controls outside the demo");
    }

    #[tokio::test]
    async fn demo_commands_go_to_the_demo_controls() {
        let rt = runtime(ConfigSource::Embedded);
        let recorder = Arc::new(Recorder::default());
        let controls: Arc<dyn DemoControls> = recorder.clone();
        let cmd = UiCommand::Demo { provider: "b".into(), action: DemoAction::AddLatency };
        assert_eq!(execute(&rt, Some(&controls), cmd).await, Feedback::done("b: add latency"));
        let cmd = UiCommand::Demo { provider: "nope".into(), action: DemoAction::TakeDown };
        assert_eq!(execute(&rt, Some(&controls), cmd).await, Feedback::err("no upstream nope"));
        let seen = recorder.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(seen, vec![("b".to_string(), DemoAction::AddLatency)]);
    }

    #[tokio::test]
    async fn reload_reports_a_bad_file_and_keeps_the_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, CONFIG).expect("write config");
        let rt = runtime(ConfigSource::Flag(path.clone()));
        let f = execute(&rt, None, UiCommand::Reload).await;
        assert_eq!(f.outcome, Outcome::Done, "{f:?}");
        std::fs::write(&path, "{ not json").expect("write broken config");
        let f = execute(&rt, None, UiCommand::Reload).await;
        assert_eq!(f.outcome, Outcome::Failed);
        assert!(f.text.starts_with("config not reloaded"), "{}", f.text);
        assert_eq!(rt.balancer.snapshot().providers.len(), 2, "the old config stays live");
        assert!(!rt.snapshot_now().reload.ok, "the header shows the failed reload");
    }

    #[tokio::test]
    async fn save_writes_the_weights_in_force_into_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, CONFIG).expect("write config");
        let rt = runtime(ConfigSource::Flag(path.clone()));
        let set = UiCommand::Balancer(Command::SetWeight { provider: "b".into(), rule: None, weight: 4 });
        assert_eq!(execute(&rt, None, set).await.outcome, Outcome::Done);
        let f = execute(&rt, None, UiCommand::SaveWeights).await;
        assert_eq!(f.outcome, Outcome::Done, "{f:?}");
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read back")).expect("valid JSON");
        assert_eq!(saved["providers"]["b"]["weight"], 4);
        assert_eq!(saved["providers"]["a"]["weight"], 3);
        // Refused on the built-in default: there is no file to write.
        let f = execute(&runtime(ConfigSource::Embedded), None, UiCommand::SaveWeights).await;
        assert_eq!(f.outcome, Outcome::Failed);
    }

    #[tokio::test]
    async fn the_executor_answers_in_order_and_ends_with_the_dashboard() {
        let rt = runtime(ConfigSource::Embedded);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (fb_tx, mut fb_rx) = mpsc::channel(COMMAND_QUEUE);
        let task = spawn_executor(rt.clone(), None, cmd_rx, fb_tx);
        for cmd in [
            UiCommand::Balancer(Command::Drain("a".into())),
            UiCommand::Balancer(Command::Undrain("a".into())),
            UiCommand::Balancer(Command::Drain("zz".into())),
        ] {
            cmd_tx.send(cmd).await.expect("executor alive");
        }
        drop(cmd_tx);
        let mut outcomes = Vec::new();
        while let Some(f) = fb_rx.recv().await {
            outcomes.push(f);
        }
        task.await.expect("executor task");
        assert_eq!(
            outcomes,
            vec![
                Feedback::done("a: drained: new requests fail over"),
                Feedback::done("a: back in rotation"),
                Feedback::err("unknown provider \"zz\""),
            ]
        );
        assert!(!rt.balancer.snapshot().provider("a").is_some_and(|p| p.drained));
    }
}
