//! Replacing segments with the cleaner's output, crash-safely (Kafka's
//! `.cleaned` → `.swap` → replace).
//!
//! The cleaner writes a group's replacement as `<B>.log.cleaned`, `<B>.index.cleaned`
//! and `<B>.timeindex.cleaned` (B: the base offset of the group's first segment),
//! fsyncs them and the directory. Then [`swap_ops`] run in order:
//!
//! ```text
//! 1. rename <B>.log.cleaned -> <B>.log.swap    the commit point
//! 2. fsync the directory
//! 3. remove the group's other segments (<b>.log, .index, .timeindex, .txnindex,
//!    b > B) and <B>.txnindex
//! 4. rename <B>.index.cleaned -> <B>.index, <B>.timeindex.cleaned -> <B>.timeindex
//! 5. fsync the directory
//! 6. rename <B>.log.swap -> <B>.log            replaces the old first segment
//! 7. fsync the directory
//! ```
//!
//! The log then writes `<B>.txnindex` for the new segment (the entries of the
//! group's indexes whose ABORT marker the clean kept). Until it has, the segment
//! has no aborted transaction index, which makes an open after a crash rebuild
//! them all from the batches.
//!
//! The fsync before step 6 makes sure that, whatever order a power failure keeps
//! directory changes in, `<B>.log` is never the new segment while an old segment
//! of the group or an old index of `<B>` is still there.
//!
//! Every rename and removal leaves the inodes that readers map untouched (see
//! `mmap`): `Bytes` of a replaced segment keep its old bytes.
//!
//! A crash before step 1 leaves `.cleaned` files, which [`recover`] removes: the
//! log is as it was. After step 1, [`recover`] finishes the swap: the swap segment
//! covers the offsets [B, E), E being the offset after its last batch, and the
//! cleaner always keeps the last batch of a group (empty if need be), so E is where
//! the next segment after the group starts, and exactly the segments with a base in
//! (B, E) are the group's. Those are removed, the index files are taken from
//! `.cleaned` when both are there and otherwise rebuilt, and the swap becomes
//! `<B>.log`.
use std::fs::{self, File};
use std::io;
use std::path::Path;

use crate::faults::{self, Point};
use crate::files::{
    fsync_dir, offset_file_name, parse_offset_file_name, remove_if_exists, to_usize, CLEANED_SUFFIX, INDEX_EXT, LOG_EXT, SWAP_SUFFIX,
    TIME_INDEX_EXT, TXN_INDEX_EXT,
};
use crate::mmap;
use crate::recovery::{scan_batches, Trust};

/// One file-system step of a swap, on names within the partition directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SwapOp {
    Rename { from: String, to: String },
    Remove(String),
    SyncDir,
}

/// `<base>.<ext>.cleaned`
pub(crate) fn cleaned_name(base: i64, ext: &str) -> String {
    format!("{}{CLEANED_SUFFIX}", offset_file_name(base, ext))
}

/// `<base>.log.swap`
pub(crate) fn swap_name(base: i64) -> String {
    format!("{}{SWAP_SUFFIX}", offset_file_name(base, LOG_EXT))
}

/// The steps that replace the segments at `replaced` (the first is `base`) by the
/// cleaned segment of `base`. The first step is the commit point.
pub(crate) fn swap_ops(base: i64, replaced: &[i64]) -> Vec<SwapOp> {
    let mut ops = vec![SwapOp::Rename { from: cleaned_name(base, LOG_EXT), to: swap_name(base) }, SwapOp::SyncDir];
    for &b in replaced.iter().filter(|b| **b != base).rev() {
        for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT] {
            ops.push(SwapOp::Remove(offset_file_name(b, ext)));
        }
    }
    ops.push(SwapOp::Remove(offset_file_name(base, TXN_INDEX_EXT)));
    for ext in [INDEX_EXT, TIME_INDEX_EXT] {
        ops.push(SwapOp::Rename { from: cleaned_name(base, ext), to: offset_file_name(base, ext) });
    }
    ops.push(SwapOp::SyncDir);
    ops.push(SwapOp::Rename { from: swap_name(base), to: offset_file_name(base, LOG_EXT) });
    ops.push(SwapOp::SyncDir);
    ops
}

fn rename(dir: &Path, from: &str, to: &str) -> io::Result<()> {
    let from = dir.join(from);
    faults::check(Point::Rename, &from)?;
    fs::rename(&from, dir.join(to))
}

/// Runs one step (with the fault-injection seam at renames and directory fsyncs).
pub(crate) fn apply(dir: &Path, op: &SwapOp) -> io::Result<()> {
    match op {
        SwapOp::Rename { from, to } => rename(dir, from, to),
        SwapOp::Remove(name) => remove_if_exists(&dir.join(name)),
        SwapOp::SyncDir => fsync_dir(dir),
    }
}

/// Removes the cleaned files of `base` and a swap of it that was not committed
/// (best effort: whatever is left, [`recover`] removes on the next open).
pub(crate) fn discard(dir: &Path, base: i64) {
    for name in [cleaned_name(base, LOG_EXT), cleaned_name(base, INDEX_EXT), cleaned_name(base, TIME_INDEX_EXT)] {
        if let Err(e) = remove_if_exists(&dir.join(&name)) {
            tracing::warn!(dir = %dir.display(), file = name, error = %e, "could not remove a cleaned segment file");
        }
    }
}

/// The offset after the last batch of the segment file at `path` based at `base`.
fn end_offset(path: &Path, base: i64) -> io::Result<i64> {
    let file = File::open(path)?;
    let len = to_usize(file.metadata()?.len())?;
    if len == 0 {
        return Ok(base);
    }
    let map = mmap::map_read(&file, len)?;
    let scan = scan_batches(&map, base, Trust::Trusted, |_, _| {});
    if let Some(reason) = scan.stopped {
        tracing::warn!(file = %path.display(), %reason, "swap segment has unreadable bytes; it covers the offsets before them");
    }
    Ok(scan.next_offset)
}

/// Finishes the swaps a crash interrupted and removes the cleaner's uncommitted
/// files; runs on open, before the segments are listed.
pub(crate) fn recover(dir: &Path) -> io::Result<()> {
    let mut swaps = Vec::new();
    let mut segments = Vec::new();
    let mut cleaned = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match parse_offset_file_name(name) {
            Some((offset, ext)) if ext == format!("{LOG_EXT}{SWAP_SUFFIX}") => swaps.push(offset),
            Some((offset, LOG_EXT)) => segments.push(offset),
            Some(_) if name.ends_with(CLEANED_SUFFIX) => cleaned.push(name.to_string()),
            _ => {}
        }
    }
    if swaps.is_empty() && cleaned.is_empty() {
        return Ok(());
    }
    swaps.sort_unstable();
    for &base in &swaps {
        let end = end_offset(&dir.join(swap_name(base)), base)?;
        tracing::warn!(dir = %dir.display(), base, end, "finishing the swap of a cleaned segment interrupted by a crash");
        for &b in segments.iter().filter(|b| **b > base && **b < end) {
            for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT] {
                remove_if_exists(&dir.join(offset_file_name(b, ext)))?;
            }
        }
        // The old first segment's aborted transactions are not the swapped one's:
        // without the file, the open rebuilds the indexes.
        remove_if_exists(&dir.join(offset_file_name(base, TXN_INDEX_EXT)))?;
        let (index, time_index) = (cleaned_name(base, INDEX_EXT), cleaned_name(base, TIME_INDEX_EXT));
        if dir.join(&index).is_file() && dir.join(&time_index).is_file() {
            rename(dir, &index, &offset_file_name(base, INDEX_EXT))?;
            rename(dir, &time_index, &offset_file_name(base, TIME_INDEX_EXT))?;
        } else {
            // One may be the old segment's: both are rebuilt from the swapped log.
            for name in [index, time_index, offset_file_name(base, INDEX_EXT), offset_file_name(base, TIME_INDEX_EXT)] {
                remove_if_exists(&dir.join(name))?;
            }
        }
        fsync_dir(dir)?;
        rename(dir, &swap_name(base), &offset_file_name(base, LOG_EXT))?;
    }
    for name in cleaned {
        if !swaps.iter().any(|&b| name == cleaned_name(b, INDEX_EXT) || name == cleaned_name(b, TIME_INDEX_EXT)) {
            tracing::warn!(dir = %dir.display(), file = name, "removing a cleaned segment file that was never swapped in");
        }
        remove_if_exists(&dir.join(name))?;
    }
    fsync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_commit_first_then_remove_then_rename_into_place() {
        let ops = swap_ops(0, &[0, 10, 20]);
        assert_eq!(ops[0], SwapOp::Rename { from: "00000000000000000000.log.cleaned".into(), to: "00000000000000000000.log.swap".into() });
        assert_eq!(ops[1], SwapOp::SyncDir);
        let removed: Vec<_> = ops.iter().filter_map(|o| if let SwapOp::Remove(n) = o { Some(n.as_str()) } else { None }).collect();
        assert_eq!(
            removed,
            [
                "00000000000000000020.log",
                "00000000000000000020.index",
                "00000000000000000020.timeindex",
                "00000000000000000020.txnindex",
                "00000000000000000010.log",
                "00000000000000000010.index",
                "00000000000000000010.timeindex",
                "00000000000000000010.txnindex",
                "00000000000000000000.txnindex"
            ]
        );
        assert_eq!(
            ops[ops.len() - 2],
            SwapOp::Rename { from: "00000000000000000000.log.swap".into(), to: "00000000000000000000.log".into() }
        );
        assert_eq!(ops.last(), Some(&SwapOp::SyncDir));
        assert_eq!(ops[ops.len() - 3], SwapOp::SyncDir, "the renames before the last are durable first");
        assert_eq!(swap_ops(5, &[5]).len(), 8, "a group of one segment removes only its aborted transaction index");
    }
}
