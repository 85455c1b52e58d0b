//! One segment: a `.log` file of record batches plus its two sparse indexes.
//!
//! The `.log` holds v2 record batches end to end, exactly as Kafka stores them. The
//! active (last) segment is appended to with plain writes; reads of any segment are
//! served zero-copy from a read-only mapping of the bytes written so far, handed out
//! as [`Bytes`] that keep the mapping alive.
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use karst_batch::{stamp_head, BatchHeader, STAMPED_HEAD_LEN};
use memmap2::Mmap;

use crate::faults::{self, Point};
use crate::files::{offset_path, remove_if_exists, replace_with_prefix, to_usize, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT};
use crate::index::OffsetIndex;
use crate::log::ReadSlice;
use crate::mmap;
use crate::recovery::{scan_batches, Scan, Trust};
use crate::swap::cleaned_name;
use crate::time_index::TimeIndex;
use crate::{LogConfig, StorageError, StorageResult};

/// Kafka's "no timestamp".
const NO_TIMESTAMP: i64 = -1;

/// Bytes at the start of a batch that an append rewrites: base offset and partition
/// leader epoch (outside the CRC), and on a LogAppendTime log the CRC, attributes
/// and max timestamp too.
const REWRITTEN: usize = STAMPED_HEAD_LEN;

/// The first [`REWRITTEN`] bytes of the batch at `pos`, with `h`'s fields.
fn rewritten_head(bytes: &[u8], pos: usize, h: &BatchHeader) -> [u8; REWRITTEN] {
    let mut head = [0u8; REWRITTEN];
    if let Some(src) = bytes.get(pos..pos + REWRITTEN) {
        head.copy_from_slice(src);
    }
    stamp_head(&mut head, h);
    head
}

/// `write_all` over several buffers (the standard one is not stable yet).
fn write_all_vectored(file: &File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut file = file;
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "failed to write whole batches")),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Keeps a mapping alive for as long as any `Bytes` cut from it.
struct SharedMap(Arc<Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Source of [`Segment::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
pub(crate) struct Segment {
    /// Unique among the segments this process opened: the cleaner's swap checks that
    /// the segments it cleaned are still the log's (retention, truncation and an
    /// earlier swap replace them by others).
    id: u64,
    base_offset: i64,
    log_path: PathBuf,
    /// The open `.log` file while the segment is active. A closed segment keeps no
    /// descriptor (its file is reopened by path to map it), so a broker holds one
    /// descriptor per partition rather than one per segment.
    file: Option<Arc<File>>,
    /// Bytes of whole batches in the file.
    size: u64,
    index: OffsetIndex,
    time_index: TimeIndex,
    /// Largest batch max timestamp seen, NO_TIMESTAMP if none.
    max_timestamp: i64,
    /// Base offset of the batch carrying `max_timestamp`.
    offset_of_max_timestamp: i64,
    bytes_since_index: u64,
    /// Start of the `segment.ms` clock (see [`Segment::rolling_base_ms`]).
    rolling_base_ms: Option<i64>,
    /// Read-only mapping of the first `len()` bytes; replaced when the segment grew.
    map: Mutex<Option<Arc<Mmap>>>,
}

impl Segment {
    fn assemble(base_offset: i64, log_path: PathBuf, file: Arc<File>, index: OffsetIndex, time_index: TimeIndex) -> Segment {
        Segment {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            base_offset,
            log_path,
            file: Some(file),
            size: 0,
            index,
            time_index,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            bytes_since_index: 0,
            rolling_base_ms: None,
            map: Mutex::new(None),
        }
    }

    fn open_log_for_append(path: &Path, create: bool) -> io::Result<File> {
        OpenOptions::new().read(true).append(true).create(create).open(path)
    }

    /// Creates a new, empty active segment (replacing stale files of that name).
    pub(crate) fn create(dir: &Path, base_offset: i64, config: &LogConfig) -> io::Result<Segment> {
        let log_path = offset_path(dir, base_offset, LOG_EXT);
        // A stale file of that name may still be mapped by readers: unlink it rather
        // than shorten it.
        remove_if_exists(&log_path)?;
        let file = Self::open_log_for_append(&log_path, true)?;
        let index = OffsetIndex::create(offset_path(dir, base_offset, INDEX_EXT), base_offset, config.segment_index_bytes)?;
        let time_index = TimeIndex::create(offset_path(dir, base_offset, TIME_INDEX_EXT), base_offset, config.segment_index_bytes)?;
        // Every segment has its aborted transaction index, empty to begin with (a
        // missing one makes the next open rebuild them all, see `txn_index`).
        faults::check(Point::Write, &offset_path(dir, base_offset, TXN_INDEX_EXT))?;
        OpenOptions::new().write(true).create(true).truncate(true).open(offset_path(dir, base_offset, TXN_INDEX_EXT))?;
        Ok(Self::assemble(base_offset, log_path, Arc::new(file), index, time_index))
    }

    /// Creates the empty segment the cleaner writes a group into: `<base>.log.cleaned`
    /// and its `.cleaned` indexes (see `swap`), replacing stale files of those names.
    pub(crate) fn create_cleaned(dir: &Path, base_offset: i64, config: &LogConfig) -> io::Result<Segment> {
        let log_path = dir.join(cleaned_name(base_offset, LOG_EXT));
        remove_if_exists(&log_path)?;
        let file = Self::open_log_for_append(&log_path, true)?;
        let index = OffsetIndex::create(dir.join(cleaned_name(base_offset, INDEX_EXT)), base_offset, config.segment_index_bytes)?;
        let time_index = TimeIndex::create(dir.join(cleaned_name(base_offset, TIME_INDEX_EXT)), base_offset, config.segment_index_bytes)?;
        Ok(Self::assemble(base_offset, log_path, Arc::new(file), index, time_index))
    }

    /// Builds fresh (writable) indexes by scanning the log's first `size` bytes.
    /// The caller must hold no mapping of the old index files.
    fn build(
        dir: &Path,
        base_offset: i64,
        log_path: PathBuf,
        file: Arc<File>,
        size: u64,
        config: &LogConfig,
        trust: Trust,
    ) -> StorageResult<(Segment, Scan)> {
        let index = OffsetIndex::create(offset_path(dir, base_offset, INDEX_EXT), base_offset, config.segment_index_bytes)?;
        let time_index = TimeIndex::create(offset_path(dir, base_offset, TIME_INDEX_EXT), base_offset, config.segment_index_bytes)?;
        let mut seg = Self::assemble(base_offset, log_path, file, index, time_index);
        if size == 0 {
            return Ok((seg, Scan { valid_len: 0, next_offset: base_offset, stopped: None }));
        }
        let map = seg.map_file(to_usize(size)?)?;
        let interval = u64::from(config.index_interval_bytes);
        let mut first_timestamp = None;
        let scan = scan_batches(&map, base_offset, trust, |pos, h| {
            if pos == 0 {
                first_timestamp = Some(h.max_timestamp);
            }
            seg.track_batch(pos as u64, h, interval);
        });
        drop(map);
        seg.size = scan.valid_len as u64;
        seg.rolling_base_ms = first_timestamp.filter(|t| *t >= 0);
        Ok((seg, scan))
    }

    /// Opens a closed segment: trusted as is, unless an index is missing or invalid,
    /// in which case both are rebuilt from the log.
    pub(crate) fn open_closed(dir: &Path, base_offset: i64, config: &LogConfig) -> StorageResult<Segment> {
        let log_path = offset_path(dir, base_offset, LOG_EXT);
        let file = Arc::new(File::open(&log_path)?);
        let size = file.metadata()?.len();
        let opened = (
            OffsetIndex::open(offset_path(dir, base_offset, INDEX_EXT), base_offset, size)?,
            TimeIndex::open(offset_path(dir, base_offset, TIME_INDEX_EXT), base_offset)?,
        );
        match opened {
            (Some((index, true)), Some((time_index, true))) => {
                let mut seg = Self::assemble(base_offset, log_path, file, index, time_index);
                seg.file = None;
                seg.size = size;
                if let Some((ts, offset)) = seg.time_index.last() {
                    seg.max_timestamp = ts;
                    seg.offset_of_max_timestamp = offset;
                }
                return Ok(seg);
            }
            stale => drop(stale), // unmap before the files are rewritten
        }
        tracing::warn!(segment = %log_path.display(), "index missing or invalid; rebuilding it from the log");
        let (mut seg, scan) = Self::build(dir, base_offset, log_path, file, size, config, Trust::Trusted)?;
        if let Some(reason) = scan.stopped {
            tracing::warn!(
                segment = %seg.log_path.display(),
                position = scan.valid_len,
                %reason,
                "closed segment has unreadable bytes; indexed up to them and left the file unchanged"
            );
        }
        seg.size = size;
        seg.freeze()?;
        Ok(seg)
    }

    /// Opens the active (last) segment. After a clean shutdown its indexes are trusted
    /// and only the bytes after the last index entry are checked; otherwise (or if that
    /// check fails) every batch is verified (CRC, contiguous offsets, or increasing
    /// ones for a compacted log, which has gaps), the file is
    /// truncated at the first bad one and the indexes are rebuilt.
    /// Returns the segment and the offset after its last batch.
    pub(crate) fn open_active(dir: &Path, base_offset: i64, config: &LogConfig, clean: bool) -> StorageResult<(Segment, i64)> {
        let log_path = offset_path(dir, base_offset, LOG_EXT);
        let file = Arc::new(Self::open_log_for_append(&log_path, false)?);
        let size = file.metadata()?.len();
        if clean {
            if let Some(opened) = Self::open_active_clean(dir, base_offset, &log_path, &file, size, config)? {
                return Ok(opened);
            }
            tracing::warn!(segment = %log_path.display(), "clean shutdown marker present but the active segment does not check out; recovering it");
        }
        let (mut seg, scan) = Self::build(dir, base_offset, log_path, file, size, config, Self::verify(config))?;
        let valid = scan.valid_len as u64;
        if valid < size {
            tracing::warn!(
                segment = %seg.log_path.display(),
                dropped_bytes = size - valid,
                kept_bytes = valid,
                reason = scan.stopped.as_deref().unwrap_or("unknown"),
                "truncating torn or corrupt tail of the active segment"
            );
            // Not cut in place: a log reopened in a running broker (after a follower
            // truncation) may still have readers mapping the file.
            replace_with_prefix(&seg.log_path, valid)?;
            seg.file = Some(Arc::new(Self::open_log_for_append(&seg.log_path, false)?));
        }
        Ok((seg, scan.next_offset))
    }

    fn open_active_clean(
        dir: &Path,
        base_offset: i64,
        log_path: &Path,
        file: &Arc<File>,
        size: u64,
        config: &LogConfig,
    ) -> StorageResult<Option<(Segment, i64)>> {
        let opened = (
            OffsetIndex::open(offset_path(dir, base_offset, INDEX_EXT), base_offset, size)?,
            TimeIndex::open(offset_path(dir, base_offset, TIME_INDEX_EXT), base_offset)?,
        );
        let (Some((index, true)), Some((time_index, true))) = opened else {
            return Ok(None);
        };
        let (start_offset, start_pos) = index.last().unwrap_or((base_offset, 0));
        let mut seg = Self::assemble(base_offset, log_path.to_path_buf(), Arc::clone(file), index, time_index);
        seg.size = size;
        if let Some((ts, offset)) = seg.time_index.last() {
            seg.max_timestamp = ts;
            seg.offset_of_max_timestamp = offset;
        }
        let mut next_offset = base_offset;
        if size > 0 {
            let map = mmap::map_read(file, to_usize(size)?)?;
            seg.rolling_base_ms = BatchHeader::parse(&map).ok().map(|h| h.max_timestamp).filter(|t| *t >= 0);
            let Some(tail) = map.get(to_usize(start_pos)?..) else {
                return Ok(None);
            };
            let scan = scan_batches(tail, start_offset, Self::verify(config), |_, h| seg.observe_timestamp(h));
            if scan.stopped.is_some() {
                return Ok(None);
            }
            next_offset = scan.next_offset;
            seg.bytes_since_index = size - start_pos;
        }
        seg.index.make_writable(config.segment_index_bytes)?;
        seg.time_index.make_writable(config.segment_index_bytes)?;
        Ok(Some((seg, next_offset)))
    }

    /// How an unsynced tail is verified: a compacted log may have gaps.
    fn verify(config: &LogConfig) -> Trust {
        Trust::Verify { gaps: config.cleanup_policy.compact }
    }

    fn observe_timestamp(&mut self, h: &BatchHeader) {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.base_offset;
        }
    }

    /// Accounts for a batch written at `pos`: timestamps and sparse index entries.
    fn track_batch(&mut self, pos: u64, h: &BatchHeader, interval: u64) {
        self.observe_timestamp(h);
        if pos > 0 && self.bytes_since_index >= interval {
            self.index.append(h.base_offset, pos);
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.total_len() as u64;
    }

    /// Appends the whole batches in `bytes`; `batches` holds each one's position within
    /// `bytes` and its header with the offset and leader epoch to store, which replace
    /// those in `bytes` on the way to the file. No fsync.
    pub(crate) fn append(&mut self, bytes: &[u8], batches: &[(usize, BatchHeader)], interval: u32, now_ms: i64) -> io::Result<()> {
        let start = self.size;
        let file = self.open_file()?;
        // Each batch is written as its rewritten first bytes followed by the rest as
        // received, in one writev: the request buffer is never copied.
        let heads: Vec<[u8; REWRITTEN]> = batches.iter().map(|(pos, h)| rewritten_head(bytes, *pos, h)).collect();
        let mut slices = Vec::with_capacity(2 * batches.len());
        for ((pos, h), head) in batches.iter().zip(&heads) {
            slices.push(IoSlice::new(head));
            slices.push(IoSlice::new(bytes.get(pos + REWRITTEN..pos + h.total_len()).unwrap_or_default()));
        }
        let written: usize = slices.iter().map(|s| s.len()).sum();
        let wrote = match faults::check(Point::Write, &self.log_path) {
            // An injected failure tears the write like a real one: the first bytes land.
            Err(e) => {
                let torn = slices.len().min(1);
                write_all_vectored(file, &mut slices[..torn]).and(Err(e))
            }
            Ok(()) => write_all_vectored(file, &mut slices),
        };
        if let Err(e) = wrote {
            // Cut a partial write back so the file keeps ending at a batch boundary.
            if let Err(undo) = file.set_len(start) {
                tracing::warn!(segment = %self.log_path.display(), error = %undo, "could not undo a partial append");
                return Err(io::Error::other(format!("{e}; cutting the partial write back failed too: {undo}")));
            }
            return Err(e);
        }
        for (rel, h) in batches {
            self.track_batch(start + *rel as u64, h, u64::from(interval));
        }
        self.size = start + written as u64;
        if self.rolling_base_ms.is_none() {
            self.rolling_base_ms = Some(now_ms);
        }
        Ok(())
    }

    /// A read-only mapping covering every byte written so far (None when empty).
    fn mapped(&self) -> StorageResult<Option<Arc<Mmap>>> {
        if self.size == 0 {
            return Ok(None);
        }
        let mut guard = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(map) = guard.as_ref().filter(|m| m.len() as u64 >= self.size) {
            return Ok(Some(Arc::clone(map)));
        }
        let map = Arc::new(self.map_file(to_usize(self.size)?)?);
        *guard = Some(Arc::clone(&map));
        Ok(Some(map))
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The segment's open file: an error for a closed segment, which is never written.
    fn open_file(&self) -> io::Result<&Arc<File>> {
        self.file.as_ref().ok_or_else(|| io::Error::other(format!("segment {} is closed", self.log_path.display())))
    }

    /// Maps the first `len` bytes of the `.log`, opening it by path when closed.
    fn map_file(&self, len: usize) -> io::Result<Mmap> {
        match &self.file {
            Some(file) => mmap::map_read(file, len),
            None => mmap::map_read(&File::open(&self.log_path)?, len),
        }
    }

    fn corrupt(&self, pos: usize, e: impl std::fmt::Display) -> StorageError {
        StorageError::Corrupt { path: self.log_path.display().to_string(), reason: format!("batch at position {pos}: {e}") }
    }

    fn parse_at(&self, data: &[u8], pos: usize) -> StorageResult<BatchHeader> {
        let rest = data.get(pos..).ok_or_else(|| self.corrupt(pos, "position past the end"))?;
        BatchHeader::parse(rest).map_err(|e| self.corrupt(pos, e))
    }

    /// Position and header of the batch holding `offset` (or the first after it).
    pub(crate) fn batch_at(&self, offset: i64) -> StorageResult<Option<(usize, BatchHeader)>> {
        let Some(map) = self.mapped()? else {
            return Ok(None);
        };
        self.find_batch(&map[..self.data_len(&map)], offset)
    }

    /// The batch whose last offset is the first >= `offset`, found through the index.
    fn find_batch(&self, data: &[u8], offset: i64) -> StorageResult<Option<(usize, BatchHeader)>> {
        let mut pos = to_usize(self.index.lookup(offset))?;
        while pos < data.len() {
            let h = self.parse_at(data, pos)?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len();
        }
        Ok(None)
    }

    fn data_len(&self, map: &Mmap) -> usize {
        map.len().min(to_usize(self.size).unwrap_or(usize::MAX))
    }

    /// Whole batches from the one holding `offset` (see [`crate::Log::read`]).
    /// None when this segment holds nothing at or after `offset`.
    pub(crate) fn read(&self, offset: i64, max_bytes: usize, max_offset: i64, min_one: bool) -> StorageResult<Option<ReadSlice>> {
        let Some(map) = self.mapped()? else {
            return Ok(None);
        };
        let data = &map[..self.data_len(&map)];
        let Some((start, first)) = self.find_batch(data, offset)? else {
            return Ok(None);
        };
        let mut end = start;
        let mut next = Some(first);
        while let Some(h) = next.take() {
            if h.base_offset >= max_offset {
                break;
            }
            let len = h.total_len();
            if end - start + len > max_bytes {
                if end == start && min_one {
                    end += len;
                }
                break;
            }
            end += len;
            if end < data.len() {
                // A bad batch after the first ends this read; the next read reports it.
                next = BatchHeader::parse(&data[end..]).ok();
            }
        }
        let bytes = if end > start { Bytes::from_owner(SharedMap(Arc::clone(&map))).slice(start..end) } else { Bytes::new() };
        let first_offset = if bytes.is_empty() { offset } else { first.base_offset };
        Ok(Some(ReadSlice { bytes, first_offset }))
    }

    /// The first batch at or after `min_offset` whose max timestamp is >= `timestamp`.
    pub(crate) fn find_by_timestamp(&self, timestamp: i64, min_offset: i64) -> StorageResult<Option<Bytes>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let Some(map) = self.mapped()? else {
            return Ok(None);
        };
        let data = &map[..self.data_len(&map)];
        let from = self.time_index.lookup(timestamp).unwrap_or(self.base_offset).max(min_offset);
        let Some((mut pos, mut h)) = self.find_batch(data, from)? else {
            return Ok(None);
        };
        loop {
            if h.last_offset() >= min_offset && h.max_timestamp >= timestamp {
                let end = pos + h.total_len();
                return Ok(Some(Bytes::from_owner(SharedMap(Arc::clone(&map))).slice(pos..end)));
            }
            pos += h.total_len();
            if pos >= data.len() {
                return Ok(None);
            }
            h = self.parse_at(data, pos)?;
        }
    }

    /// Every byte of the segment, zero-copy (the mapping lives as long as the `Bytes`).
    pub(crate) fn data(&self) -> StorageResult<Bytes> {
        let Some(map) = self.mapped()? else {
            return Ok(Bytes::new());
        };
        let len = self.data_len(&map);
        Ok(Bytes::from_owner(SharedMap(map)).slice(..len))
    }

    /// The max timestamp of the segment's first batch (Kafka's first batch timestamp).
    pub(crate) fn first_batch_timestamp(&self) -> StorageResult<Option<i64>> {
        Ok(self.batch_at(self.base_offset)?.map(|(_, h)| h.max_timestamp))
    }

    /// Calls `f` with the header of every batch whose base offset is >= `from_offset`.
    /// Stops (with a warning) at unreadable bytes.
    pub(crate) fn for_each_batch(&self, from_offset: i64, mut f: impl FnMut(&BatchHeader)) -> StorageResult<()> {
        self.for_each_batch_with_bytes(from_offset, |h, _| f(h))
    }

    /// [`Segment::for_each_batch`], with each batch's bytes.
    pub(crate) fn for_each_batch_with_bytes(&self, from_offset: i64, mut f: impl FnMut(&BatchHeader, &[u8])) -> StorageResult<()> {
        let Some(map) = self.mapped()? else {
            return Ok(());
        };
        let data = &map[..self.data_len(&map)];
        let mut pos = to_usize(self.index.lookup(from_offset))?;
        while pos < data.len() {
            let h = match BatchHeader::parse(&data[pos..]) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(segment = %self.log_path.display(), position = pos, error = %e, "stopped reading batch headers");
                    break;
                }
            };
            if h.base_offset >= from_offset {
                f(&h, &data[pos..pos + h.total_len()]);
            }
            pos += h.total_len();
        }
        Ok(())
    }

    /// Makes the segment immutable: closing time index entry, fsync of the log,
    /// indexes trimmed to their entries and fsynced.
    pub(crate) fn freeze(&mut self) -> io::Result<()> {
        if self.max_timestamp >= 0 {
            self.time_index.append_final(self.max_timestamp, self.offset_of_max_timestamp);
        }
        if let Some(file) = self.file.take() {
            faults::check(Point::Fsync, &self.log_path)?;
            file.sync_data()?;
        }
        self.index.freeze()?;
        self.time_index.freeze()
    }

    /// fsync of the log and msync of the index mappings.
    pub(crate) fn flush(&self) -> io::Result<()> {
        if let Some(file) = &self.file {
            faults::check(Point::Fsync, &self.log_path)?;
            file.sync_data()?;
        }
        self.index.flush()?;
        self.time_index.flush()
    }

    /// Removes the segment's files.
    pub(crate) fn delete(self) -> io::Result<()> {
        let Segment { log_path, file, index, time_index, map, .. } = self;
        drop(map);
        drop(file);
        remove_if_exists(&log_path)?;
        remove_if_exists(&log_path.with_extension(TXN_INDEX_EXT))?;
        index.remove()?;
        time_index.remove()
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The open file of an active segment (an error once closed).
    pub(crate) fn file(&self) -> io::Result<&Arc<File>> {
        self.open_file()
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// The newest timestamp for retention: the largest batch timestamp, or the file's
    /// modification time when no batch carries one. None when unknown.
    pub(crate) fn largest_timestamp_for_retention(&self) -> Option<i64> {
        if self.max_timestamp >= 0 {
            return Some(self.max_timestamp);
        }
        let modified = std::fs::metadata(&self.log_path).and_then(|m| m.modified()).ok()?;
        let ms = modified.duration_since(UNIX_EPOCH).ok()?.as_millis();
        i64::try_from(ms).ok()
    }

    /// When the `segment.ms` clock started: the `now_ms` of the first append into this
    /// segment; for a segment reopened after a restart (append time not stored), the
    /// max timestamp of its first batch. None while empty.
    pub(crate) fn rolling_base_ms(&self) -> Option<i64> {
        self.rolling_base_ms
    }

    /// True when an index has no room for another entry.
    pub(crate) fn indexes_full(&self) -> bool {
        self.index.is_full() || self.time_index.is_full()
    }

    /// Entries in the offset and time indexes.
    pub(crate) fn index_len(&self) -> (usize, usize) {
        (self.index.len(), self.time_index.len())
    }

    #[cfg(test)]
    pub(crate) fn index_paths(&self) -> (PathBuf, PathBuf) {
        (self.index.path().to_path_buf(), self.time_index.path().to_path_buf())
    }
}
