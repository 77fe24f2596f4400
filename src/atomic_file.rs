//! Replacing a file in one step: write a temporary file beside the target, flush it to disk,
//! then rename it over the target. A reader (the Kiro IDE, ccr's own token reader, the config
//! watcher) sees the old contents or the new ones, never half of a write; a crash leaves the old
//! file in place.
//!
//! The one writer for every file ccr or its simulator replaces: refreshed token files, the config
//! file when weights are saved, the simulator's token files.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The permissions the replaced file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permissions {
    /// Mode 0600 (owner read/write only), whatever the file had: for credentials.
    Private,
    /// The permissions the file has now; a new file gets 0600 (the temporary file's mode).
    Keep,
}

/// Replace `path` with `contents` atomically, with the given permissions. The parent directory
/// must exist. On error the target is untouched and the temporary file is removed.
pub fn write(path: &Path, contents: &[u8], permissions: Permissions) -> io::Result<()> {
    let target = target_of(path)?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Created 0600 on unix; removed when dropped unless persisted.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents)?;
    set_permissions(tmp.path(), &target, permissions)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// The file that is actually replaced when `path` is written: `path` itself, or the final target
/// of the symlink chain it starts (relative links resolved against their own directory), so a
/// symlinked config or token file stays a link and the file it points to gets the new contents.
pub fn target_of(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)?;
                current = if link.is_absolute() {
                    link
                } else {
                    current.parent().unwrap_or(Path::new(".")).join(link)
                };
            }
            _ => return Ok(current),
        }
    }
    Err(io::Error::other(format!("{}: too many levels of symbolic links", path.display())))
}

fn set_permissions(tmp: &Path, target: &Path, permissions: Permissions) -> io::Result<()> {
    match permissions {
        Permissions::Private => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o600))?;
            }
            #[cfg(not(unix))]
            let _ = tmp;
        }
        Permissions::Keep => {
            if let Ok(meta) = std::fs::metadata(target) {
                std::fs::set_permissions(tmp, meta.permissions())?;
            }
        }
    }
    Ok(())
}

/// Flush the directory entry of the rename (best effort: the file's contents are already on
/// disk, and some file systems refuse to sync a directory).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_contents_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(&path, "old").unwrap();
        write(&path, b"new contents", Permissions::Keep).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new contents");
        assert_eq!(entries(dir.path()), ["f.json"]);
    }

    #[test]
    fn creates_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.json");
        write(&path, b"{}", Permissions::Private).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
    }

    #[cfg(unix)]
    #[test]
    fn private_sets_0600_and_keep_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

        let token = dir.path().join("token.json");
        std::fs::write(&token, "x").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&token, b"y", Permissions::Private).unwrap();
        assert_eq!(mode(&token), 0o600);

        let config = dir.path().join("config.json");
        std::fs::write(&config, "x").unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
        write(&config, b"y", Permissions::Keep).unwrap();
        assert_eq!(mode(&config), 0o640);

        let fresh = dir.path().join("fresh.json");
        write(&fresh, b"y", Permissions::Keep).unwrap();
        assert_eq!(mode(&fresh), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_written_through_to_their_target() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/t.json");
        std::fs::write(&target, b"old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.json");
        let chain = dir.path().join("chain.json");
        std::os::unix::fs::symlink("real/t.json", &link).unwrap();
        std::os::unix::fs::symlink(&link, &chain).unwrap();
        write(&chain, b"new", Permissions::Keep).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(std::fs::symlink_metadata(&chain).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o640);
        write(&link, b"newer", Permissions::Private).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"newer");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(entries(&dir.path().join("real")), vec!["t.json".to_string()]);
    }

    #[test]
    fn a_missing_directory_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("f.json");
        assert!(write(&path, b"x", Permissions::Private).is_err());
        assert_eq!(entries(dir.path()), Vec::<String>::new());
    }
}
