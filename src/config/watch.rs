//! Watching the config file for hot reload.
//!
//! The watch is on the file's parent directory, not the file: editors save by writing a temporary
//! file and renaming it over the original, which replaces the inode a file watch would follow
//! (style habit 12). Events for other files in the directory are ignored; a burst of events for
//! the config (truncate, write, rename) is debounced into one reload, delivered once the file has
//! been quiet for [`DEBOUNCE`].
//!
//! What a reload does (validate, then swap in one step, keeping live state; a bad file keeps the
//! old config and reports the error) is the caller's business: see `Runtime::reload`.

use notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, DebouncedEvent, DebouncedEventKind, new_debouncer};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Quiet time after the last event before the file is re-read: long enough for an editor's
/// write-and-rename (or a `cp`) to finish, short enough that a change shows within a second.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Why the config file cannot be watched. The proxy runs on without hot reload.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The path names no file.
    #[error("cannot watch {0}: it does not name a file")]
    NoFileName(String),
    /// The operating system refused the watch.
    #[error("cannot watch {dir} for config changes: {source}")]
    Watch { dir: String, source: notify::Error },
}

/// Whether a batch of debounced events concerns the file called `name`: a final (quiet) event
/// for a path with that file name. Continuous events while a write is still going on are skipped
/// so that a half-written file is not read.
pub fn concerns(events: &[DebouncedEvent], name: &OsStr) -> bool {
    events.iter().any(|e| e.kind == DebouncedEventKind::Any && e.path.file_name() == Some(name))
}

/// The directory to watch for `path`.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Watch the file at `path`; after it changes (and has been quiet for `debounce`), run
/// `on_change` on a blocking thread, one run at a time. Changes that arrive during a run lead to
/// one more run. The watch ends when `shutdown` turns true.
pub fn spawn_watcher(
    path: &Path,
    debounce: Duration,
    mut shutdown: watch::Receiver<bool>,
    on_change: impl Fn() + Send + Sync + 'static,
) -> Result<JoinHandle<()>, WatchError> {
    let name: OsString =
        path.file_name().ok_or_else(|| WatchError::NoFileName(path.display().to_string()))?.to_owned();
    let dir = parent_dir(path);
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut debouncer = new_debouncer(debounce, move |result: DebounceEventResult| match result {
        Ok(events) => {
            if concerns(&events, &name) {
                let _ = tx.send(());
            }
        }
        Err(e) => tracing::warn!("config watcher: {e}"),
    })
    .map_err(|e| WatchError::Watch { dir: dir.display().to_string(), source: e })?;
    debouncer
        .watcher()
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| WatchError::Watch { dir: dir.display().to_string(), source: e })?;
    tracing::debug!("watching {} for config changes", dir.display());

    let on_change = Arc::new(on_change);
    let file = path.display().to_string();
    Ok(tokio::spawn(async move {
        // Owned by the task: dropping it at the end stops the OS watch and its thread.
        let _debouncer = debouncer;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                event = rx.recv() => {
                    if event.is_none() {
                        break;
                    }
                    // Changes already queued are covered by this run.
                    while rx.try_recv().is_ok() {}
                    tracing::info!("{file} changed: reloading");
                    let run = on_change.clone();
                    if let Err(e) = tokio::task::spawn_blocking(move || run()).await {
                        tracing::error!("config reload task failed: {e}");
                    }
                }
            }
            if *shutdown.borrow() {
                break;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: &str, kind: DebouncedEventKind) -> DebouncedEvent {
        DebouncedEvent::new(PathBuf::from(path), kind)
    }

    #[test]
    fn only_quiet_events_for_the_config_count() {
        let name = OsStr::new("config.json");
        assert!(concerns(&[event("/etc/ccr/config.json", DebouncedEventKind::Any)], name));
        assert!(concerns(
            &[
                event("/etc/ccr/.config.json.swp", DebouncedEventKind::Any),
                event("./config.json", DebouncedEventKind::Any)
            ],
            name
        ));
        assert!(!concerns(&[event("/etc/ccr/other.json", DebouncedEventKind::Any)], name));
        assert!(!concerns(&[event("/etc/ccr/config.json", DebouncedEventKind::AnyContinuous)], name));
        assert!(!concerns(&[], name));
    }

    #[test]
    fn watches_the_parent_directory() {
        assert_eq!(parent_dir(Path::new("/etc/ccr/config.json")), PathBuf::from("/etc/ccr"));
        assert_eq!(parent_dir(Path::new("config.json")), PathBuf::from("."));
    }

    /// A real file replaced by rename, as editors save: the callback runs. (Real file-system
    /// events take real time; the wait is bounded generously and ends as soon as the call comes.)
    #[tokio::test]
    async fn a_renamed_file_triggers_one_call_and_shutdown_stops_the_watch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{}").expect("write");
        let (stop, stop_rx) = watch::channel(false);
        let (calls, mut called) = mpsc::unbounded_channel();
        let task = spawn_watcher(&path, Duration::from_millis(50), stop_rx, move || {
            let _ = calls.send(());
        })
        .expect("watch");
        let tmp = dir.path().join(".config.json.tmp");
        std::fs::write(&tmp, "{\"a\": 1}").expect("write tmp");
        std::fs::rename(&tmp, &path).expect("rename");
        tokio::time::timeout(Duration::from_secs(10), called.recv())
            .await
            .expect("the watcher reacted within 10 s")
            .expect("a call");
        stop.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops").expect("no panic");
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let (_stop, rx) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let _guard = rt.enter();
        assert!(matches!(spawn_watcher(Path::new("/"), DEBOUNCE, rx, || {}), Err(WatchError::NoFileName(_))));
    }
}
