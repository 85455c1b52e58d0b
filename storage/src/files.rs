//! File names of a partition directory and small file-system helpers.
//!
//! ```text
//! 00000000000000000000.log        record batches, Kafka's on-disk format
//! 00000000000000000000.index      sparse offset index
//! 00000000000000000000.timeindex  sparse time index
//! 00000000000000000000.txnindex   aborted transactions whose marker is in the segment
//! 00000000000000000042.snapshot   producer state as of offset 42
//! log-start-offset                checkpoint written by DeleteRecords / retention
//! clean-shutdown                  present only between a clean close and the next open
//! cleaner-offset-checkpoint       where the log cleaner's next dirty section starts
//! *.tmp                           half-written files; removed on open
//! <base>.log.cleaned, .index.cleaned, .timeindex.cleaned
//!                                 a segment the cleaner is writing; removed on open
//! <base>.log.swap                 a cleaned segment committed to replace the segments
//!                                 it covers; the swap is completed on open (`swap`)
//! ```
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::faults::{self, Point};

pub(crate) const LOG_EXT: &str = "log";
pub(crate) const INDEX_EXT: &str = "index";
pub(crate) const TIME_INDEX_EXT: &str = "timeindex";
pub(crate) const SNAPSHOT_EXT: &str = "snapshot";
pub(crate) const TXN_INDEX_EXT: &str = "txnindex";
pub(crate) const TMP_SUFFIX: &str = ".tmp";
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
pub(crate) const SWAP_SUFFIX: &str = ".swap";

/// `<offset, 20 digits>.<ext>`.
pub(crate) fn offset_file_name(offset: i64, ext: &str) -> String {
    format!("{offset:020}.{ext}")
}

pub(crate) fn offset_path(dir: &Path, offset: i64, ext: &str) -> PathBuf {
    dir.join(offset_file_name(offset, ext))
}

/// Splits `<20 digits>.<ext>` into the offset and the extension.
pub(crate) fn parse_offset_file_name(name: &str) -> Option<(i64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let offset = stem.parse::<i64>().ok()?;
    Some((offset, ext))
}

/// Makes renames, creations and deletions in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    faults::check(Point::FsyncDir, dir)?;
    File::open(dir)?.sync_all()
}

/// Replaces `dir/name` with `contents` atomically: temp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        faults::check(Point::Write, &tmp)?;
        f.write_all(contents)?;
        faults::check(Point::Fsync, &tmp)?;
        f.sync_all()?;
    }
    faults::check(Point::Rename, &tmp)?;
    fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}

/// Cuts `path` to its first `len` bytes without touching its inode: the prefix is
/// copied to a temp file, fsynced and renamed over `path`, then the directory is
/// fsynced. Mappings of the old file (zero-copy reads still in flight) keep the old
/// inode and its bytes as they were; shortening it in place would make them fault
/// (SIGBUS) past the new end, and later appends would rewrite bytes they hold.
pub(crate) fn replace_with_prefix(path: &Path, len: u64) -> io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a file in a directory", path.display())));
    };
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    {
        let src = File::open(path)?;
        let mut dst = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        let copied = io::copy(&mut (&src).take(len), &mut dst)?;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} has {copied} of the {len} bytes to keep", path.display()),
            ));
        }
        crate::faults::check(crate::faults::Point::Fsync, path)?;
        dst.sync_all()?;
    }
    crate::faults::check(crate::faults::Point::Rename, path)?;
    fs::rename(&tmp, path)?;
    fsync_dir(dir)
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `u64` file sizes and positions as `usize` (lossless on 64-bit targets).
pub(crate) fn to_usize(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{n} does not fit in usize")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = offset_file_name(42, LOG_EXT);
        assert_eq!(name, "00000000000000000042.log");
        assert_eq!(parse_offset_file_name(&name), Some((42, LOG_EXT)));
        assert_eq!(parse_offset_file_name("0042.log"), None);
        assert_eq!(parse_offset_file_name("99999999999999999999.log"), None);
        assert_eq!(parse_offset_file_name("0000000000000000004x.log"), None);
        assert_eq!(parse_offset_file_name("log-start-offset"), None);
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_atomic(dir.path(), "x", b"one").expect("write");
        write_atomic(dir.path(), "x", b"two").expect("write");
        assert_eq!(fs::read(dir.path().join("x")).expect("read"), b"two");
        assert!(!dir.path().join("x.tmp").exists());
    }
}
