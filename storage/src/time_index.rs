//! The sparse time index of a segment (`.timeindex`).
//!
//! Entries of 12 bytes: timestamp (i64 BE) and offset relative to the segment base
//! (u32 BE). An entry `(t, o)` says: the largest batch max timestamp among the batches
//! appended up to the moment the entry was written is `t`, and the batch starting at
//! offset `o` carries it. Entries are added at offset-index points when the timestamp
//! grew, and once more when the segment is closed, so the last entry of a closed
//! segment holds its largest timestamp. Timestamps strictly increase, offsets never
//! decrease; a zero-filled (preallocated) slot ends the entries.
use std::io;
use std::path::PathBuf;

use crate::index_file::IndexFile;

pub(crate) const ENTRY_SIZE: usize = 12;

#[derive(Debug)]
pub(crate) struct TimeIndex {
    file: IndexFile,
    base_offset: i64,
}

fn decode(raw: &[u8]) -> Option<(i64, u32)> {
    let ts = i64::from_be_bytes(raw.get(0..8)?.try_into().ok()?);
    let rel = u32::from_be_bytes(raw.get(8..12)?.try_into().ok()?);
    Some((ts, rel))
}

impl TimeIndex {
    /// A new, empty, writable index preallocated to `prealloc_bytes` (at least two
    /// entries: one slot is kept for the closing entry).
    pub(crate) fn create(path: PathBuf, base_offset: i64, prealloc_bytes: u32) -> io::Result<TimeIndex> {
        let capacity = (prealloc_bytes as usize / ENTRY_SIZE).max(2);
        Ok(TimeIndex { file: IndexFile::create(path, ENTRY_SIZE, capacity)?, base_offset })
    }

    /// Opens an existing index read-only with its valid prefix of entries; `exact`
    /// tells whether that prefix is the whole file. `Ok(None)` if missing.
    pub(crate) fn open(path: PathBuf, base_offset: i64) -> io::Result<Option<(TimeIndex, bool)>> {
        let Some(mut file) = IndexFile::open_read_only(path, ENTRY_SIZE)? else {
            return Ok(None);
        };
        let mut valid = 0;
        let mut prev: Option<(i64, u32)> = None;
        while let Some((ts, rel)) = file.raw_entry(valid).and_then(decode) {
            if ts < 0 || prev.is_some_and(|(pts, prel)| ts <= pts || rel < prel) {
                break;
            }
            prev = Some((ts, rel));
            valid += 1;
        }
        file.set_len_entries(valid);
        let exact = file.is_exact();
        Ok(Some((TimeIndex { file, base_offset }, exact)))
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &std::path::Path {
        self.file.path()
    }

    pub(crate) fn len(&self) -> usize {
        self.file.len()
    }

    fn entry(&self, i: usize) -> Option<(i64, i64)> {
        let (ts, rel) = self.file.entry(i).and_then(decode)?;
        Some((ts, self.base_offset.saturating_add(i64::from(rel))))
    }

    /// The last entry as (timestamp, absolute offset).
    pub(crate) fn last(&self) -> Option<(i64, i64)> {
        self.len().checked_sub(1).and_then(|i| self.entry(i))
    }

    /// Offset of the batch of the last entry whose timestamp is < `timestamp`: every
    /// batch before that one has a smaller max timestamp, so a search for the first
    /// batch with max timestamp >= `timestamp` may start there. None: start at the base.
    pub(crate) fn lookup(&self, timestamp: i64) -> Option<i64> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid) {
                Some((ts, _)) if ts < timestamp => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.checked_sub(1).and_then(|i| self.entry(i)).map(|(_, off)| off)
    }

    fn push(&mut self, timestamp: i64, offset: i64, final_entry: bool) -> bool {
        if timestamp < 0 || self.last().is_some_and(|(ts, _)| timestamp <= ts) {
            return false;
        }
        if !final_entry && self.is_full() {
            return false;
        }
        let Ok(rel) = u32::try_from(offset.saturating_sub(self.base_offset)) else {
            return false;
        };
        if self.last().is_some_and(|(_, o)| offset < o) {
            return false;
        }
        let mut raw = [0u8; ENTRY_SIZE];
        raw[0..8].copy_from_slice(&timestamp.to_be_bytes());
        raw[8..12].copy_from_slice(&rel.to_be_bytes());
        self.file.push(&raw)
    }

    /// Adds an entry if `timestamp` exceeds the last entry's and room remains
    /// (keeping one slot for the closing entry).
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> bool {
        self.push(timestamp, offset, false)
    }

    /// The closing entry of a segment: may use the reserved slot.
    pub(crate) fn append_final(&mut self, timestamp: i64, offset: i64) -> bool {
        self.push(timestamp, offset, true)
    }

    /// Full when only the slot reserved for the closing entry is left.
    pub(crate) fn is_full(&self) -> bool {
        self.file.len() + 1 >= self.file.capacity()
    }

    pub(crate) fn flush(&self) -> io::Result<()> {
        self.file.flush()
    }

    pub(crate) fn freeze(&mut self) -> io::Result<()> {
        self.file.freeze()
    }

    pub(crate) fn make_writable(&mut self, prealloc_bytes: u32) -> io::Result<()> {
        self.file.make_writable((prealloc_bytes as usize / ENTRY_SIZE).max(2))
    }

    pub(crate) fn remove(self) -> io::Result<()> {
        self.file.remove()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_lookup_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t");
        let mut t = TimeIndex::create(path.clone(), 10, 48).expect("create");
        assert_eq!(t.lookup(5), None);
        assert!(t.maybe_append(100, 12));
        assert!(!t.maybe_append(100, 13), "timestamp must grow");
        assert!(t.maybe_append(200, 15));
        assert!(t.maybe_append(300, 20));
        assert!(t.is_full());
        assert!(!t.maybe_append(400, 22), "last slot reserved");
        assert!(t.append_final(400, 22));
        assert_eq!(t.lookup(100), None);
        assert_eq!(t.lookup(101), Some(12));
        assert_eq!(t.lookup(300), Some(15));
        assert_eq!(t.lookup(i64::MAX), Some(22));
        assert_eq!(t.last(), Some((400, 22)));
        t.freeze().expect("freeze");
        drop(t);
        let (t, exact) = TimeIndex::open(path, 10).expect("open").expect("exists");
        assert!(exact);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn zero_filled_tail_is_not_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t");
        let mut t = TimeIndex::create(path.clone(), 0, 120).expect("create");
        assert!(t.maybe_append(5, 1));
        drop(t);
        let (t, exact) = TimeIndex::open(path, 0).expect("open").expect("exists");
        assert_eq!(t.len(), 1);
        assert!(!exact);
    }
}
