//! Small checkpoint files: the log start offset, the cleaner's first dirty offset
//! and the clean-shutdown marker.
use std::fs;
use std::io;
use std::path::Path;

use crate::files::{fsync_dir, remove_if_exists, write_atomic};

pub(crate) const LOG_START_OFFSET_FILE: &str = "log-start-offset";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Kafka keeps one such file per log directory; Karst one per partition.
pub(crate) const CLEANER_OFFSET_FILE: &str = "cleaner-offset-checkpoint";
const VERSION: &str = "0";

/// Reads the persisted log start offset; `None` when absent or unreadable (logged).
pub(crate) fn read_log_start_offset(dir: &Path) -> io::Result<Option<i64>> {
    read_offset(dir, LOG_START_OFFSET_FILE)
}

/// Persists the log start offset atomically (temp file, fsync, rename, fsync dir).
pub(crate) fn write_log_start_offset(dir: &Path, offset: i64) -> io::Result<()> {
    write_offset(dir, LOG_START_OFFSET_FILE, offset)
}

/// Reads where the cleaner's dirty section starts; `None` when absent or unreadable.
pub(crate) fn read_cleaner_offset(dir: &Path) -> io::Result<Option<i64>> {
    read_offset(dir, CLEANER_OFFSET_FILE)
}

/// Persists where the cleaner's dirty section starts, atomically.
pub(crate) fn write_cleaner_offset(dir: &Path, offset: i64) -> io::Result<()> {
    write_offset(dir, CLEANER_OFFSET_FILE, offset)
}

fn read_offset(dir: &Path, name: &str) -> io::Result<Option<i64>> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let parsed = std::str::from_utf8(&bytes).ok().and_then(|text| {
        let mut lines = text.lines();
        if lines.next()? != VERSION {
            return None;
        }
        let offset = lines.next()?.trim().parse::<i64>().ok()?;
        (offset >= 0).then_some(offset)
    });
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "ignoring unreadable offset checkpoint");
    }
    Ok(parsed)
}

fn write_offset(dir: &Path, name: &str, offset: i64) -> io::Result<()> {
    write_atomic(dir, name, format!("{VERSION}\n{offset}\n").as_bytes())
}

pub(crate) fn has_clean_shutdown_marker(dir: &Path) -> bool {
    dir.join(CLEAN_SHUTDOWN_FILE).is_file()
}

pub(crate) fn write_clean_shutdown_marker(dir: &Path) -> io::Result<()> {
    write_atomic(dir, CLEAN_SHUTDOWN_FILE, b"")
}

/// Removes the marker durably, so that a crash after new appends is seen as a crash.
pub(crate) fn remove_clean_shutdown_marker(dir: &Path) -> io::Result<()> {
    remove_if_exists(&dir.join(CLEAN_SHUTDOWN_FILE))?;
    fsync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_start_offset_round_trip_and_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_log_start_offset(dir.path()).expect("read"), None);
        write_log_start_offset(dir.path(), 1234).expect("write");
        assert_eq!(read_log_start_offset(dir.path()).expect("read"), Some(1234));
        fs::write(dir.path().join(LOG_START_OFFSET_FILE), b"\xff\xfegarbage").expect("write");
        assert_eq!(read_log_start_offset(dir.path()).expect("read"), None);
        fs::write(dir.path().join(LOG_START_OFFSET_FILE), b"0\n-5\n").expect("write");
        assert_eq!(read_log_start_offset(dir.path()).expect("read"), None);
    }

    #[test]
    fn cleaner_offset_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_cleaner_offset(dir.path()).expect("read"), None);
        write_cleaner_offset(dir.path(), 77).expect("write");
        write_log_start_offset(dir.path(), 5).expect("write");
        assert_eq!(read_cleaner_offset(dir.path()).expect("read"), Some(77));
        assert_eq!(read_log_start_offset(dir.path()).expect("read"), Some(5));
    }

    #[test]
    fn marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!has_clean_shutdown_marker(dir.path()));
        write_clean_shutdown_marker(dir.path()).expect("write");
        assert!(has_clean_shutdown_marker(dir.path()));
        remove_clean_shutdown_marker(dir.path()).expect("remove");
        assert!(!has_clean_shutdown_marker(dir.path()));
        remove_clean_shutdown_marker(dir.path()).expect("remove twice");
    }
}
