//! The dashboard wired to a running instance: `ccr tui` (the proxy plus its dashboard), the
//! task that carries out the dashboard's commands, and the demo's fault keys.
//!
//! The dashboard ([`crate::tui`]) gets a snapshot receiver, a command sender and a feedback
//! receiver, nothing else. [`spawn_executor`] runs its [`UiCommand`]s one at a time: instance
//! commands through [`Runtime::execute`] (the same path as the admin API), demo faults through
//! [`DemoControls`].

use super::{ListenOverride, Running, launch};
use crate::config::{Config, ConfigSource};
use crate::runtime::{Command, Runtime};
use crate::tui::{self, COMMAND_QUEUE, DemoAction, Feedback, TuiError, UiCommand};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Why a demo fault could not be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// The provider is not backed by one of the demo's simulated upstreams.
    #[error("{0} is not a demo upstream")]
    NotADemoUpstream(String),
}

/// The demo's fault injection, plugged into the dashboard by `ccr demo`.
///
/// The dashboard only knows the provider id and the [`DemoAction`]; how an upstream is taken
/// down or slowed is the demo's business. Implementations must be quick (they run on the
/// executor task): flip a switch, do not wait for its effect.
pub(crate) trait DemoControls: Send + Sync {
    /// Apply `action` to the simulated upstream behind `provider`; return a one-line description
    /// of the new state (e.g. "w-2: down").
    fn apply(&self, provider: &str, action: DemoAction) -> Result<String, FaultError>;
}

/// Carry out one dashboard command.
pub(crate) async fn execute(
    runtime: &Arc<Runtime>,
    demo: Option<&Arc<dyn DemoControls>>,
    cmd: UiCommand,
) -> Feedback {
    let command = match cmd {
        UiCommand::Balancer(cmd) => Command::Balancer(cmd),
        UiCommand::Reload => Command::Reload,
        UiCommand::SaveWeights => Command::SaveWeights,
        UiCommand::Demo { provider, action } => {
            return match demo {
                Some(d) => {
                    d.apply(&provider, action).map_or_else(|e| Feedback::err(e.to_string()), Feedback::done)
                }
                None => Feedback::err("demo keys work only in `ccr demo`"),
            };
        }
    };
    // Balancer changes are logged like the admin API's (reload and save log their own).
    let logged = matches!(command, Command::Balancer(_));
    match runtime.execute(command).await {
        Ok(outcome) => {
            if logged {
                tracing::info!("dashboard: {outcome}");
            }
            Feedback::done(outcome.message)
        }
        Err(e) => {
            if logged {
                tracing::warn!("dashboard command refused: {e}");
            }
            Feedback::err(e.to_string())
        }
    }
}

/// Run commands from the dashboard one at a time until the dashboard drops its sender, sending
/// each result back. Results nobody reads any more are dropped.
pub(crate) fn spawn_executor(
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

/// Show the dashboard for `running` until the user quits; with `demo`, the demo's fault keys are
/// live and go to it. The instance keeps running: stopping it is the caller's.
pub(crate) async fn show(running: &Running, demo: Option<Arc<dyn DemoControls>>) -> Result<(), TuiError> {
    let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (feedback_tx, feedback_rx) = mpsc::channel(COMMAND_QUEUE);
    let demo_keys = demo.is_some();
    let executor = spawn_executor(running.runtime.clone(), demo, command_rx, feedback_tx);
    let result = tui::run_dashboard(running.snapshots(), command_tx, feedback_rx, demo_keys).await;
    // The executor ends once the dashboard's sender is gone and the command at hand is done.
    if let Err(e) = executor.await {
        tracing::warn!("dashboard command task failed: {e}");
    }
    result
}

/// `ccr tui`: start the proxy for `config` and run the dashboard until the user quits, then
/// stop the proxy. Logs go to the dashboard's log pane from the start.
pub fn run_tui(config: Config, source: ConfigSource, listen: ListenOverride) -> ExitCode {
    if let Err(e) = tui::init_logging() {
        eprintln!("ccr tui: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccr tui: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let notice = source.notice();
        let running = match launch(config, source, listen).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!("{notice}");
        tracing::info!("listening on {}", running.base_url());
        for w in crate::config::warnings(&running.runtime.config()) {
            tracing::warn!("config: {w}");
        }
        let result = show(&running, None).await;
        running.shutdown().await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ccr tui: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::Command;
    use crate::config::{ConfigSource, parse_config};
    use crate::tui::Progress;
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
        fn apply(&self, provider: &str, action: DemoAction) -> Result<String, FaultError> {
            if provider == "nope" {
                return Err(FaultError::NotADemoUpstream(provider.to_owned()));
            }
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push((provider.to_owned(), action));
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
        assert_eq!(f.progress, Progress::Done);
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
        assert_eq!(f.progress, Progress::Failed, "no demo controls outside the demo");
    }

    #[tokio::test]
    async fn demo_commands_go_to_the_demo_controls() {
        let rt = runtime(ConfigSource::Embedded);
        let recorder = Arc::new(Recorder::default());
        let controls: Arc<dyn DemoControls> = recorder.clone();
        let cmd = UiCommand::Demo { provider: "b".into(), action: DemoAction::AddLatency };
        assert_eq!(execute(&rt, Some(&controls), cmd).await, Feedback::done("b: add latency"));
        let cmd = UiCommand::Demo { provider: "nope".into(), action: DemoAction::TakeDown };
        assert_eq!(execute(&rt, Some(&controls), cmd).await, Feedback::err("nope is not a demo upstream"));
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
        assert_eq!(f.progress, Progress::Done, "{f:?}");
        std::fs::write(&path, "{ not json").expect("write broken config");
        let f = execute(&rt, None, UiCommand::Reload).await;
        assert_eq!(f.progress, Progress::Failed);
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
        assert_eq!(execute(&rt, None, set).await.progress, Progress::Done);
        let f = execute(&rt, None, UiCommand::SaveWeights).await;
        assert_eq!(f.progress, Progress::Done, "{f:?}");
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read back")).expect("valid JSON");
        assert_eq!(saved["providers"]["b"]["weight"], 4);
        assert_eq!(saved["providers"]["a"]["weight"], 3);
        // Refused on the built-in default: there is no file to write.
        let f = execute(&runtime(ConfigSource::Embedded), None, UiCommand::SaveWeights).await;
        assert_eq!(f.progress, Progress::Failed);
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
