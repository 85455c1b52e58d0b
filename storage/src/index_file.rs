//! A file of fixed-size entries shared by the offset and time indexes.
//!
//! While its segment is active the file is preallocated (zero-filled) and mapped
//! read-write; entries are written straight into the mapping. When the segment
//! rolls or the log closes, the mapping is flushed and dropped, the file is trimmed
//! to its entries, fsynced, and mapped read-only.
//!
//! No file descriptor is kept open: a mapping outlives the descriptor it was made
//! from, and the file is reopened by path for the rare resize. With thousands of
//! partitions the descriptors would otherwise be the first limit a broker hits.
use std::fs::{File, OpenOptions};
use std::io;
use std::path::PathBuf;

use memmap2::{Mmap, MmapMut};

use crate::faults::{self, Point};
use crate::files::{remove_if_exists, to_usize};
use crate::mmap;

#[derive(Debug)]
enum State {
    Writable { map: MmapMut },
    ReadOnly { map: Option<Mmap> },
}

#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    entry_size: usize,
    /// Number of valid entries at the start of the mapping.
    entries: usize,
    /// Length of the file when opened read-only (may hold a partial trailing entry).
    file_len: u64,
    state: State,
}

impl IndexFile {
    /// Creates (or empties) `path`, preallocated to `capacity` entries, mapped writable.
    pub(crate) fn create(path: PathBuf, entry_size: usize, capacity: usize) -> io::Result<IndexFile> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        let len = capacity.max(1).saturating_mul(entry_size);
        file.set_len(len as u64)?;
        let map = mmap::map_write(&file, len)?;
        Ok(IndexFile { path, entry_size, entries: 0, file_len: len as u64, state: State::Writable { map } })
    }

    /// Opens an existing file read-only. Every whole entry counts until the caller
    /// validates them with [`IndexFile::set_len_entries`]. `Ok(None)` if missing.
    pub(crate) fn open_read_only(path: PathBuf, entry_size: usize) -> io::Result<Option<IndexFile>> {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let file_len = file.metadata()?.len();
        let entries = to_usize(file_len)? / entry_size;
        let map = if entries == 0 { None } else { Some(mmap::map_read(&file, entries * entry_size)?) };
        Ok(Some(IndexFile { path, entry_size, entries, file_len, state: State::ReadOnly { map } }))
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Whole entries the file holds (valid or not) when opened read-only.
    pub(crate) fn file_entries(&self) -> usize {
        match &self.state {
            State::Writable { map, .. } => map.len() / self.entry_size,
            State::ReadOnly { map } => map.as_ref().map_or(0, |m| m.len() / self.entry_size),
        }
    }

    /// True when the file length is exactly its entries (no partial or spare tail).
    pub(crate) fn is_exact(&self) -> bool {
        matches!(self.state, State::ReadOnly { .. }) && self.file_len == (self.entries * self.entry_size) as u64
    }

    /// Declares the first `n` entries valid (n is clamped to what the file holds).
    pub(crate) fn set_len_entries(&mut self, n: usize) {
        self.entries = n.min(self.file_entries());
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    pub(crate) fn capacity(&self) -> usize {
        match &self.state {
            State::Writable { map, .. } => map.len() / self.entry_size,
            State::ReadOnly { .. } => self.entries,
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.state {
            State::Writable { map, .. } => map,
            State::ReadOnly { map } => map.as_deref().unwrap_or(&[]),
        }
    }

    /// The `i`th raw entry among all whole entries in the file (valid or not).
    pub(crate) fn raw_entry(&self, i: usize) -> Option<&[u8]> {
        let start = i.checked_mul(self.entry_size)?;
        self.bytes().get(start..start.checked_add(self.entry_size)?)
    }

    /// The `i`th valid entry.
    pub(crate) fn entry(&self, i: usize) -> Option<&[u8]> {
        if i < self.entries {
            self.raw_entry(i)
        } else {
            None
        }
    }

    /// Appends an entry; false when the file is read-only or full.
    pub(crate) fn push(&mut self, entry: &[u8]) -> bool {
        if entry.len() != self.entry_size {
            return false;
        }
        let start = self.entries * self.entry_size;
        match &mut self.state {
            State::Writable { map, .. } => match map.get_mut(start..start + entry.len()) {
                Some(slot) => {
                    slot.copy_from_slice(entry);
                    self.entries += 1;
                    true
                }
                None => false,
            },
            State::ReadOnly { .. } => false,
        }
    }

    /// Writes dirty pages of a writable mapping to disk (msync).
    pub(crate) fn flush(&self) -> io::Result<()> {
        match &self.state {
            State::Writable { map, .. } => {
                faults::check(Point::Fsync, &self.path)?;
                map.flush()
            }
            State::ReadOnly { .. } => Ok(()),
        }
    }

    /// Flushes, unmaps, trims the file to its entries, fsyncs it, maps it read-only.
    pub(crate) fn freeze(&mut self) -> io::Result<()> {
        self.flush()?;
        let map = match std::mem::replace(&mut self.state, State::ReadOnly { map: None }) {
            State::Writable { map } => map,
            read_only => {
                self.state = read_only;
                return Ok(());
            }
        };
        drop(map); // no mapping may exist while the file is shortened
        let len = self.entries * self.entry_size;
        let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        file.set_len(len as u64)?;
        faults::check(Point::Fsync, &self.path)?;
        file.sync_all()?;
        self.file_len = len as u64;
        let map = if len == 0 { None } else { Some(mmap::map_read(&file, len)?) };
        self.state = State::ReadOnly { map };
        Ok(())
    }

    /// Turns a read-only file back into a writable, preallocated one keeping the
    /// valid entries (for the active segment after a clean open).
    pub(crate) fn make_writable(&mut self, capacity: usize) -> io::Result<()> {
        if matches!(self.state, State::Writable { .. }) {
            return Ok(());
        }
        self.state = State::ReadOnly { map: None }; // unmap before resizing
        let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
        let keep = self.entries * self.entry_size;
        file.set_len(keep as u64)?; // drop any invalid tail, then zero-extend
        let len = capacity.max(self.entries + 1).saturating_mul(self.entry_size);
        file.set_len(len as u64)?;
        let map = mmap::map_write(&file, len)?;
        self.file_len = len as u64;
        self.state = State::Writable { map };
        Ok(())
    }

    /// Deletes the file.
    pub(crate) fn remove(self) -> io::Result<()> {
        let path = self.path.clone();
        drop(self);
        remove_if_exists(&path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_freeze_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.index");
        let mut f = IndexFile::create(path.clone(), 4, 3).expect("create");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 12);
        assert!(f.push(&[1, 2, 3, 4]));
        assert!(f.push(&[5, 6, 7, 8]));
        assert!(f.push(&[9, 9, 9, 9]));
        assert!(!f.push(&[0, 0, 0, 0]), "full");
        f.set_len_entries(2);
        f.freeze().expect("freeze");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 8);
        assert_eq!(f.entry(1), Some(&[5u8, 6, 7, 8][..]));
        assert_eq!(f.entry(2), None);
        assert!(!f.push(&[1, 1, 1, 1]), "read-only");
        drop(f);
        let mut f = IndexFile::open_read_only(path.clone(), 4).expect("open").expect("exists");
        assert_eq!(f.len(), 2);
        assert!(f.is_exact());
        f.make_writable(10).expect("writable");
        assert_eq!(f.capacity(), 10);
        assert!(f.push(&[7, 7, 7, 7]));
        assert_eq!(f.entry(0), Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(f.entry(2), Some(&[7u8, 7, 7, 7][..]));
        f.remove().expect("remove");
        assert!(!path.exists());
    }

    #[test]
    fn missing_and_partial() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("y.index");
        assert!(IndexFile::open_read_only(path.clone(), 8).expect("open").is_none());
        std::fs::write(&path, [0u8; 11]).expect("write");
        let f = IndexFile::open_read_only(path, 8).expect("open").expect("exists");
        assert_eq!(f.len(), 1);
        assert!(!f.is_exact());
    }
}
