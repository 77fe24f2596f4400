//! Reading and writing the small files ccr owns (the config, token files), safely.
//!
//! Reading ([`read_capped`]): only regular files (a FIFO, a device or a directory is refused, so
//! a read can never block forever), opened non-blocking and checked again on the open handle, and
//! never more than a cap (a token file is a few KB; a 1 GB file must not be read whole).
//!
//! Writing ([`write_through`]): when the path is a symlink, the file written is the link's
//! target, so the link stays a link and the real file gets the new content; the new content goes
//! into a temporary file beside the target and is renamed over it in one step, keeping the
//! target's permissions (or exact ones, for credentials).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Largest token (or client registration) file read.
pub const TOKEN_FILE_CAP: u64 = 256 * 1024;

/// Largest config file read.
pub const CONFIG_FILE_CAP: u64 = 16 * 1024 * 1024;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not found")]
    NotFound,
    #[error("not a regular file (it is {0}); refusing to read it")]
    NotRegular(&'static str),
    #[error("{size} bytes is more than the {cap} bytes such a file may have")]
    TooLarge { size: u64, cap: u64 },
    #[error("{0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::NotFound { ReadError::NotFound } else { ReadError::Io(e) }
    }
}

fn file_kind(ft: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_block_device() || ft.is_char_device() {
            return "a device";
        }
    }
    if ft.is_dir() { "a directory" } else { "not a regular file" }
}

/// Read a whole regular file of at most `cap` bytes (following symlinks).
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(file_kind(meta.file_type())));
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge { size: meta.len(), cap });
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Swapped for a FIFO between the check and the open: the open must not wait for a writer.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(file_kind(meta.file_type())));
    }
    let mut out = Vec::with_capacity(usize::try_from(meta.len().min(cap)).unwrap_or(0));
    file.take(cap + 1).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(ReadError::TooLarge { size: out.len() as u64, cap });
    }
    Ok(out)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_text_capped(path: &Path, cap: u64) -> Result<String, ReadError> {
    let bytes = read_capped(path, cap)?;
    String::from_utf8(bytes)
        .map_err(|_| ReadError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")))
}

/// The file a write to `path` must replace: `path` itself, or the final target of the symlink
/// chain it starts (relative links resolved against their own directory).
pub fn write_target(path: &Path) -> std::io::Result<PathBuf> {
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
    Err(std::io::Error::other(format!("{}: too many levels of symbolic links", path.display())))
}

/// The permissions a rewritten file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Those of the file replaced; the process default for a new file.
    Keep,
    /// Exactly these (Unix), e.g. 0600 for credentials whatever the file had.
    Exactly(u32),
}

/// Replace the file at `path` (through symlinks) with `contents` in one rename, with the
/// permissions `mode` says.
pub fn write_through(path: &Path, contents: &[u8], mode: Mode) -> std::io::Result<()> {
    let target = write_target(path)?;
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents)?;
    match mode {
        Mode::Keep => {
            if let Ok(meta) = std::fs::metadata(&target) {
                std::fs::set_permissions(tmp.path(), meta.permissions())?;
            }
        }
        #[cfg(unix)]
        Mode::Exactly(bits) => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(bits))?;
        }
        #[cfg(not(unix))]
        Mode::Exactly(_) => {}
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_under_the_cap_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(read_capped(&p, 5).unwrap(), b"hello");
        assert!(matches!(read_capped(&p, 4), Err(ReadError::TooLarge { size: 5, cap: 4 })));
        assert!(matches!(read_capped(&dir.path().join("nope"), 9), Err(ReadError::NotFound)));
        assert!(matches!(read_capped(dir.path(), 9), Err(ReadError::NotRegular("a directory"))));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_written_through_keeping_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/t.json");
        std::fs::write(&target, b"old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real/t.json", &link).unwrap();
        write_through(&link, b"new", Mode::Keep).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o640);
        write_through(&link, b"newer", Mode::Exactly(0o600)).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"newer");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
