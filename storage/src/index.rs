//! The sparse offset index of a segment (`.index`).
//!
//! Entries of 8 bytes: offset relative to the segment base (u32 BE) and file
//! position (u32 BE) of the batch starting at that offset. One entry per
//! `index.interval.bytes` of log; the first batch (position 0) never gets one, so every
//! valid entry has a relative offset > 0 and a position > 0 and both strictly
//! increase. A zero-filled (preallocated) slot therefore always ends the entries.
use std::io;
use std::path::PathBuf;

use crate::index_file::IndexFile;

pub(crate) const ENTRY_SIZE: usize = 8;

#[derive(Debug)]
pub(crate) struct OffsetIndex {
    file: IndexFile,
    base_offset: i64,
}

fn decode(raw: &[u8]) -> Option<(u32, u32)> {
    let rel = u32::from_be_bytes(raw.get(0..4)?.try_into().ok()?);
    let pos = u32::from_be_bytes(raw.get(4..8)?.try_into().ok()?);
    Some((rel, pos))
}

impl OffsetIndex {
    /// A new, empty, writable index preallocated to `prealloc_bytes`.
    pub(crate) fn create(path: PathBuf, base_offset: i64, prealloc_bytes: u32) -> io::Result<OffsetIndex> {
        let capacity = (prealloc_bytes as usize / ENTRY_SIZE).max(1);
        Ok(OffsetIndex { file: IndexFile::create(path, ENTRY_SIZE, capacity)?, base_offset })
    }

    /// Opens an existing index read-only. Returns it with only its valid prefix of
    /// entries (increasing, pointing inside a log of `log_size` bytes); `exact` tells
    /// whether that prefix is the whole file. `Ok(None)` if the file is missing.
    pub(crate) fn open(path: PathBuf, base_offset: i64, log_size: u64) -> io::Result<Option<(OffsetIndex, bool)>> {
        let Some(mut file) = IndexFile::open_read_only(path, ENTRY_SIZE)? else {
            return Ok(None);
        };
        let mut valid = 0;
        let mut prev = (0u32, 0u32);
        while let Some((rel, pos)) = file.raw_entry(valid).and_then(decode) {
            if rel <= prev.0 || pos <= prev.1 || u64::from(pos) >= log_size {
                break;
            }
            prev = (rel, pos);
            valid += 1;
        }
        file.set_len_entries(valid);
        let exact = file.is_exact();
        Ok(Some((OffsetIndex { file, base_offset }, exact)))
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &std::path::Path {
        self.file.path()
    }

    pub(crate) fn len(&self) -> usize {
        self.file.len()
    }

    fn entry(&self, i: usize) -> Option<(i64, u64)> {
        let (rel, pos) = self.file.entry(i).and_then(decode)?;
        Some((self.base_offset.saturating_add(i64::from(rel)), u64::from(pos)))
    }

    /// The last entry as (absolute offset, position).
    pub(crate) fn last(&self) -> Option<(i64, u64)> {
        self.len().checked_sub(1).and_then(|i| self.entry(i))
    }

    /// Position of the batch of the largest entry with offset <= `offset`, or 0.
    /// The batch holding `offset` starts at or after the returned position.
    pub(crate) fn lookup(&self, offset: i64) -> u64 {
        // Binary search for the number of entries with offset <= target.
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid) {
                Some((o, _)) if o <= offset => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.checked_sub(1).and_then(|i| self.entry(i)).map_or(0, |(_, pos)| pos)
    }

    /// Adds an entry for the batch starting at `offset` / `position` if it fits the
    /// format and keeps entries increasing; false if skipped (or the index is full).
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> bool {
        let (Ok(rel), Ok(pos)) = (u32::try_from(offset.saturating_sub(self.base_offset)), u32::try_from(position)) else {
            return false;
        };
        if rel == 0 || pos == 0 {
            return false;
        }
        if let Some((last_off, last_pos)) = self.last() {
            if offset <= last_off || position <= last_pos {
                return false;
            }
        }
        let mut raw = [0u8; ENTRY_SIZE];
        raw[0..4].copy_from_slice(&rel.to_be_bytes());
        raw[4..8].copy_from_slice(&pos.to_be_bytes());
        self.file.push(&raw)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.len() >= self.file.capacity()
    }

    pub(crate) fn flush(&self) -> io::Result<()> {
        self.file.flush()
    }

    pub(crate) fn freeze(&mut self) -> io::Result<()> {
        self.file.freeze()
    }

    pub(crate) fn make_writable(&mut self, prealloc_bytes: u32) -> io::Result<()> {
        self.file.make_writable(prealloc_bytes as usize / ENTRY_SIZE)
    }

    pub(crate) fn remove(self) -> io::Result<()> {
        self.file.remove()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_validation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::create(path.clone(), 100, 80).expect("create");
        assert_eq!(idx.lookup(150), 0);
        assert!(!idx.append(100, 0), "first batch is never indexed");
        assert!(idx.append(110, 1000));
        assert!(idx.append(120, 2000));
        assert!(!idx.append(115, 3000), "offsets must increase");
        assert!(idx.append(130, 3000));
        assert_eq!(idx.lookup(99), 0);
        assert_eq!(idx.lookup(109), 0);
        assert_eq!(idx.lookup(110), 1000);
        assert_eq!(idx.lookup(125), 2000);
        assert_eq!(idx.lookup(1 << 40), 3000);
        drop(idx); // crash: preallocated, zero-filled tail stays

        let (idx, exact) = OffsetIndex::open(path.clone(), 100, 5000).expect("open").expect("exists");
        assert_eq!(idx.len(), 3, "zero-filled tail ends the entries");
        assert!(!exact);
        let (idx, _) = OffsetIndex::open(path.clone(), 100, 2500).expect("open").expect("exists");
        assert_eq!(idx.len(), 2, "entries pointing past the log end are invalid");
        let mut idx = idx;
        idx.make_writable(80).expect("writable");
        idx.freeze().expect("freeze");
        drop(idx);
        let (idx, exact) = OffsetIndex::open(path, 100, 2500).expect("open").expect("exists");
        assert!(exact);
        assert_eq!(idx.last(), Some((120, 2000)));
    }

    #[test]
    fn full_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut idx = OffsetIndex::create(dir.path().join("i"), 0, 16).expect("create");
        assert!(idx.append(1, 10));
        assert!(!idx.is_full());
        assert!(idx.append(2, 20));
        assert!(idx.is_full());
        assert!(!idx.append(3, 30));
    }
}
