//! Reading the small files ccr owns (the config, token files) safely. (Writing them is
//! [`crate::atomic_file`], which writes through symlinks.)
//!
//! Reading ([`read_capped`]): only regular files (a FIFO, a device or a directory is refused, so
//! a read can never block forever), opened non-blocking and checked again on the open handle, and
//! never more than a cap (a token file is a few KB; a 1 GB file must not be read whole).

use std::io::Read;
use std::path::Path;

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
}
