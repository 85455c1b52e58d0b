//! Start-up helpers: what a partition directory holds, and how far a segment's bytes
//! can be trusted.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::Path;

use karst_batch::BatchHeader;

use crate::files::{parse_offset_file_name, remove_if_exists, INDEX_EXT, LOG_EXT, SNAPSHOT_EXT, TIME_INDEX_EXT, TMP_SUFFIX, TXN_INDEX_EXT};

/// The segments and snapshots found in a directory, in offset order.
#[derive(Debug, Default)]
pub(crate) struct DirListing {
    pub(crate) segments: Vec<i64>,
    pub(crate) snapshots: BTreeSet<i64>,
}

/// Lists a partition directory, removing half-written temp files and index files
/// whose segment is gone. Unknown files are left alone.
pub(crate) fn list_dir(dir: &Path) -> io::Result<DirListing> {
    let mut logs = BTreeSet::new();
    let mut indexes = BTreeMap::new();
    let mut snapshots = BTreeSet::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            tracing::warn!(file = %entry.path().display(), "removing stray temporary file");
            remove_if_exists(&entry.path())?;
            continue;
        }
        match parse_offset_file_name(name) {
            Some((offset, LOG_EXT)) => {
                logs.insert(offset);
            }
            Some((offset, INDEX_EXT | TIME_INDEX_EXT | TXN_INDEX_EXT)) => {
                indexes.insert(entry.path(), offset);
            }
            Some((offset, SNAPSHOT_EXT)) => {
                snapshots.insert(offset);
            }
            _ => {}
        }
    }
    for (path, offset) in indexes {
        if !logs.contains(&offset) {
            tracing::warn!(file = %path.display(), "removing index file without a segment");
            remove_if_exists(&path)?;
        }
    }
    Ok(DirListing { segments: logs.into_iter().collect(), snapshots })
}

/// How much a scan believes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// Unsynced tail: check every CRC and require each batch to start exactly where
    /// the previous one ended (offsets contiguous), or with `gaps` at or after it:
    /// a compacted log (or a follower's copy of one) has gaps where the cleaner
    /// removed whole batches. Contiguity is the only check of a batch's base offset,
    /// which no CRC covers, so it is given up only for compacted logs.
    Verify { gaps: bool },
    /// Closed segment: headers only, offsets merely increasing.
    Trusted,
}

/// Result of [`scan_batches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Bytes of whole, acceptable batches from the start of the buffer.
    pub(crate) valid_len: usize,
    /// Offset after the last acceptable batch.
    pub(crate) next_offset: i64,
    /// Why the scan stopped before the end of the buffer, if it did.
    pub(crate) stopped: Option<String>,
}

/// Walks the batches laid end to end in `buf`, the first expected at `first_offset`,
/// calling `on_batch(position, header)` for each acceptable one, and stops at the
/// first torn, corrupt or out-of-order batch.
pub(crate) fn scan_batches(buf: &[u8], first_offset: i64, trust: Trust, mut on_batch: impl FnMut(usize, &BatchHeader)) -> Scan {
    let mut pos = 0usize;
    let mut expected = first_offset;
    let stop = |pos, expected, reason: String| Scan { valid_len: pos, next_offset: expected, stopped: Some(reason) };
    while let Some(rest) = buf.get(pos..).filter(|r| !r.is_empty()) {
        let parsed = match trust {
            Trust::Verify { .. } => BatchHeader::parse_checked(rest),
            Trust::Trusted => BatchHeader::parse(rest),
        };
        let h = match parsed {
            Ok(h) => h,
            Err(e) => return stop(pos, expected, format!("batch at position {pos}: {e}")),
        };
        let in_order = match trust {
            Trust::Verify { gaps: false } => h.base_offset == expected,
            Trust::Verify { gaps: true } => h.base_offset >= expected,
            Trust::Trusted => h.base_offset >= expected,
        };
        if !in_order {
            return stop(pos, expected, format!("batch at position {pos} has base offset {}, expected {expected}", h.base_offset));
        }
        let Some(next) = h.last_offset().checked_add(1) else {
            return stop(pos, expected, format!("batch at position {pos} overflows offsets"));
        };
        on_batch(pos, &h);
        pos += h.total_len();
        expected = next;
    }
    Scan { valid_len: pos, next_offset: expected, stopped: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use karst_batch::build_batch;

    #[test]
    fn scan_stops_at_torn_corrupt_or_reordered_batches() {
        let mut buf = build_batch(10, 2, 0, b"ab");
        let first = buf.len();
        buf.extend(build_batch(12, 1, 0, b"c"));
        let two = buf.len();
        let mut seen = vec![];
        let s = scan_batches(&buf, 10, Trust::Verify { gaps: false }, |p, h| seen.push((p, h.base_offset)));
        assert_eq!(s, Scan { valid_len: two, next_offset: 13, stopped: None });
        assert_eq!(seen, vec![(0, 10), (first, 12)]);

        let s = scan_batches(&buf[..two - 1], 10, Trust::Verify { gaps: false }, |_, _| {});
        assert_eq!((s.valid_len, s.next_offset), (first, 12));
        assert!(s.stopped.is_some());

        let mut bad = buf.clone();
        bad[two - 1] ^= 1;
        assert_eq!(scan_batches(&bad, 10, Trust::Verify { gaps: false }, |_, _| {}).valid_len, first);
        assert_eq!(scan_batches(&bad, 10, Trust::Trusted, |_, _| {}).valid_len, two);

        // A gap is accepted only where gaps may be (a compacted log); going
        // backwards never.
        let mut gap = build_batch(10, 2, 0, b"ab");
        gap.extend(build_batch(15, 1, 0, b"c"));
        let contiguous = Trust::Verify { gaps: false };
        let gaps = Trust::Verify { gaps: true };
        assert_eq!(scan_batches(&gap, 10, contiguous, |_, _| {}).valid_len, first);
        assert_eq!(scan_batches(&gap, 10, gaps, |_, _| {}).next_offset, 16);
        assert_eq!(scan_batches(&gap, 10, Trust::Trusted, |_, _| {}).next_offset, 16);
        assert_eq!(scan_batches(&gap, 11, contiguous, |_, _| {}).valid_len, 0);
        assert_eq!(scan_batches(&gap, 11, gaps, |_, _| {}).valid_len, 0);
        let mut back = build_batch(10, 2, 0, b"ab");
        back.extend(build_batch(11, 1, 0, b"c"));
        assert_eq!(scan_batches(&back, 10, gaps, |_, _| {}).valid_len, first);
        assert_eq!(scan_batches(&back, 10, Trust::Trusted, |_, _| {}).valid_len, first);
    }

    #[test]
    fn listing_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        for name in [
            "00000000000000000000.log",
            "00000000000000000000.index",
            "00000000000000000007.log",
            "00000000000000000005.index",
            "00000000000000000005.timeindex",
            "00000000000000000007.snapshot",
            "00000000000000000009.snapshot.tmp",
            "log-start-offset.tmp",
            "unrelated.txt",
        ] {
            fs::write(p.join(name), b"").expect("write");
        }
        let l = list_dir(p).expect("list");
        assert_eq!(l.segments, vec![0, 7]);
        assert_eq!(l.snapshots.into_iter().collect::<Vec<_>>(), vec![7]);
        assert!(!p.join("00000000000000000005.index").exists());
        assert!(!p.join("00000000000000000005.timeindex").exists());
        assert!(!p.join("log-start-offset.tmp").exists());
        assert!(p.join("00000000000000000000.index").exists());
        assert!(p.join("unrelated.txt").exists());
    }
}
