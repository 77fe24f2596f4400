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

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Quiet time after the last change before the file is re-read: long enough for an editor's
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

/// Whether an event kind can mean new content. Reads do not: the reload itself opens and reads
/// the file, and reacting to that would reload forever. Metadata changes (times, permissions)
/// do not either.
pub fn is_content_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) | EventKind::Other => false,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
    }
}

/// Whether an event may have changed the file called `name`.
pub fn concerns(event: &Event, name: &OsStr) -> bool {
    is_content_change(&event.kind) && event.paths.iter().any(|p| p.file_name() == Some(name))
}

/// The directory to watch for `path`.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Watch the file at `path`; once it has changed and then been quiet for `debounce`, run
/// `on_change` on a blocking thread, one run at a time (changes during a run lead to one more
/// run). The watch ends when `shutdown` turns true.
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
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<Event>| match result {
        Ok(event) => {
            if concerns(&event, &name) {
                let _ = tx.send(());
            }
        }
        Err(e) => tracing::warn!("config watcher: {e}"),
    })
    .map_err(|e| WatchError::Watch { dir: dir.display().to_string(), source: e })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| WatchError::Watch { dir: dir.display().to_string(), source: e })?;
    tracing::debug!("watching {} for config changes", dir.display());

    let on_change = Arc::new(on_change);
    let file = path.display().to_string();
    Ok(tokio::spawn(async move {
        // Owned by the task: dropping it at the end stops the OS watch.
        let _watcher = watcher;
        let mut due: Option<Instant> = None;
        loop {
            let quiet = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {}
                event = rx.recv() => match event {
                    Some(()) => due = Some(Instant::now() + debounce),
                    None => break,
                },
                () = quiet => {
                    due = None;
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
    use notify::event::{CreateKind, DataChange, MetadataKind, RenameMode};

    fn event(path: &str, kind: EventKind) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_content_changes_of_the_config_count() {
        let name = OsStr::new("config.json");
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert!(concerns(&event("/etc/ccr/config.json", write), name));
        assert!(concerns(&event("./config.json", EventKind::Create(CreateKind::File)), name));
        assert!(concerns(&event("config.json", EventKind::Modify(ModifyKind::Name(RenameMode::To))), name));
        assert!(concerns(
            &event("config.json", EventKind::Access(AccessKind::Close(AccessMode::Write))),
            name
        ));
        assert!(!concerns(&event("/etc/ccr/other.json", write), name));
        // The reload's own read must not trigger another reload.
        assert!(!concerns(&event("config.json", EventKind::Access(AccessKind::Open(AccessMode::Any))), name));
        assert!(!concerns(
            &event("config.json", EventKind::Access(AccessKind::Close(AccessMode::Read))),
            name
        ));
        assert!(!concerns(
            &event("config.json", EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any))),
            name
        ));
    }

    #[test]
    fn watches_the_parent_directory() {
        assert_eq!(parent_dir(Path::new("/etc/ccr/config.json")), PathBuf::from("/etc/ccr"));
        assert_eq!(parent_dir(Path::new("config.json")), PathBuf::from("."));
    }

    /// A real file replaced by rename, as editors save: one call, whose own read of the file
    /// does not cause another. (File-system events take real time: the positive wait is bounded
    /// generously and ends as soon as the call comes; the quiet check after it cannot fail
    /// spuriously, only miss a loop slower than itself.)
    #[tokio::test]
    async fn a_renamed_file_triggers_one_call_and_shutdown_stops_the_watch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{}").expect("write");
        let (stop, stop_rx) = watch::channel(false);
        let (calls, mut called) = mpsc::unbounded_channel();
        let read_path = path.clone();
        let task = spawn_watcher(&path, Duration::from_millis(50), stop_rx, move || {
            let _ = std::fs::read_to_string(&read_path);
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
        let again = tokio::time::timeout(Duration::from_millis(500), called.recv()).await;
        assert!(again.is_err(), "reading the file in the callback caused another call");
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
