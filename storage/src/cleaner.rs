//! The log cleaner: compaction of a `cleanup.policy=compact` log (Kafka's
//! `LogCleaner`, `Cleaner` and `LogCleanerManager`, whose behaviour is the spec).
//!
//! The log is split at the cleaner checkpoint into a clean head (cleaned before)
//! and a dirty section that runs up to the first uncleanable offset: the active
//! segment, the caller's stable offset (the last stable offset, as Kafka's: no
//! transaction is open below it) and the first segment younger than
//! `min.compaction.lag.ms` each end it, at a segment boundary. The aborted
//! transactions come from the log's aborted transaction indexes. A clean
//!
//! 1. builds a map from key to the offset of its latest record in the dirty
//!    section (bounded memory: when full, the dirty section ends there);
//! 2. groups the segments up to the map's end by `segment.bytes` and the index
//!    sizes, and copies each group into one new segment, keeping a record when it
//!    is past the map, or is the latest of its key and either has a value or is a
//!    tombstone whose batch's delete horizon has not passed;
//! 3. swaps each new segment in for its group crash-safely (`swap`) and moves the
//!    checkpoint to the map's end.
//!
//! Offsets never change: a kept record keeps its offset, a rewritten batch keeps
//! its base offset and last offset delta, and a batch left with no record is
//! dropped, except that it is kept empty when it is the last batch of an active
//! producer (its sequence and epoch survive for duplicate detection) or the last
//! batch of its group (the swap's recovery relies on it, see `swap`). Tombstones
//! and the markers of transactions whose data is gone are kept for
//! `delete.retention.ms` after the clean that first kept them: that clean writes
//! the horizon into their batch (KIP-534). Aborted transactional data is removed;
//! a marker is kept until its transaction's data is gone and then its horizon
//! passed. Records without a key are removed, as Kafka's cleaner does (phase 2
//! refuses them at produce time with INVALID_RECORD; the cleaner meets them only
//! in data written before the topic was compacted). A batch whose records cannot
//! be read (CRC, codec, layout, or larger than `max_decompressed_batch_bytes`) is
//! kept whole and counted.
//!
//! The work is split so a broker can run the expensive part without the log's
//! lock: [`Log::plan_clean`] (`&self`, cheap: picks the range and takes zero-copy
//! views of the closed segments), [`CleanTask::run`] (no log access: reads the
//! views, writes `.cleaned` files, reports its I/O to a callback that can throttle
//! or abort), and [`Log::finish_clean`] (`&mut self`, cheap: renames files and
//! swaps segments, skipping any group whose segments changed meanwhile).
//! [`Log::clean`] does the three in a row.
use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use karst_batch::compression;
use karst_batch::records::{control_record_type, encode_batch, parse_records, Record, CONTROL_ABORT, CONTROL_COMMIT};
use karst_batch::{
    BatchHeader, COMPRESSION_MASK, CONTROL_BIT, DELETE_HORIZON_BIT, HEADER_LEN, NO_TIMESTAMP, TIMESTAMP_TYPE_BIT, TRANSACTIONAL_BIT,
};

use crate::checkpoint;
use crate::files::fsync_dir;
use crate::index::ENTRY_SIZE as INDEX_ENTRY_SIZE;
use crate::log::Log;
use crate::offset_map::OffsetMap;
use crate::producer_state::LastRecord;
use crate::segment::Segment;
use crate::swap::{self, SwapOp};
use crate::time_index::ENTRY_SIZE as TIME_INDEX_ENTRY_SIZE;
use crate::txn_index::AbortedTxn;
use crate::{LogConfig, StorageError, StorageResult};

/// The cleaner's broker-wide settings (Kafka's `log.cleaner.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.dedupe.buffer.size`: memory of the key → offset map of one clean
    /// (24 bytes a key, as Kafka counts; the table itself may take up to twice that).
    pub dedupe_buffer_size: usize,
    /// `log.cleaner.io.buffer.load.factor`: how full the map may get.
    pub dedupe_buffer_load_factor: f64,
    /// `log.cleaner.io.buffer.size`: bytes of cleaned batches gathered per write.
    pub io_buffer_size: usize,
    /// A batch whose records decompress to more than this is kept as it is.
    pub max_decompressed_batch_bytes: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_size: 128 << 20,
            dedupe_buffer_load_factor: 0.9,
            io_buffer_size: 512 << 10,
            max_decompressed_batch_bytes: 64 << 20,
        }
    }
}

/// Where a log can be cleaned and how dirty it is (Kafka's `LogToClean`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleanable {
    /// Where the dirty section starts: the cleaner checkpoint, or the log start.
    pub first_dirty_offset: i64,
    /// Where it ends (a segment's base offset).
    pub first_uncleanable_offset: i64,
    /// Bytes of the segments before the dirty section.
    pub clean_bytes: u64,
    /// Bytes of the segments holding the dirty section.
    pub cleanable_bytes: u64,
    /// How far past `max.compaction.lag.ms` the oldest dirty batch is (0: not due).
    pub compaction_delay_ms: i64,
}

impl Cleanable {
    /// `cleanable / (clean + cleanable)`, compared with `min.cleanable.dirty.ratio`.
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.cleanable_bytes;
        if total == 0 {
            return 0.0;
        }
        self.cleanable_bytes as f64 / total as f64
    }

    /// `max.compaction.lag.ms` has passed for dirty data that can be cleaned.
    pub fn needs_compaction_now(&self) -> bool {
        self.compaction_delay_ms > 0 && self.cleanable_bytes > 0
    }
}

/// What a clean did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanStats {
    pub first_dirty_offset: i64,
    /// The first offset not cleaned: the new cleaner checkpoint.
    pub end_offset: i64,
    /// Segments replaced, and segments written in their place.
    pub segments_cleaned: usize,
    pub segments_written: usize,
    /// Groups not swapped in because their segments changed during the clean
    /// (retention or truncation); the checkpoint then stays unless they are gone.
    pub groups_abandoned: usize,
    /// Building the map: dirty bytes and records read, keys mapped.
    pub map_bytes_read: u64,
    pub map_records_read: u64,
    pub map_keys: usize,
    pub map_utilization: f64,
    /// Copying: bytes and records read, records kept, bytes written.
    pub bytes_read: u64,
    pub records_read: u64,
    pub records_retained: u64,
    pub bytes_written: u64,
    pub batches_read: u64,
    pub batches_retained: u64,
    /// Records without a key, removed (Kafka counts them as invalid messages).
    pub keyless_records_removed: u64,
    /// Batches whose records could not be read, kept whole.
    pub unreadable_batches_kept: u64,
}

/// The cleaner's I/O callback: called with every batch read and every chunk written
/// (in bytes); it may sleep to hold `log.cleaner.io.max.bytes.per.second` (see
/// [`Throttler`]) and answers `Break` to abort the clean (shutdown, partition gone).
pub type CleanerIo<'a> = &'a mut dyn FnMut(u64) -> ControlFlow<()>;

fn tick(io: &mut dyn FnMut(u64) -> ControlFlow<()>, bytes: usize) -> StorageResult<()> {
    match io(bytes as u64) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(StorageError::CleaningAborted),
    }
}

/// Holds I/O to a rate (Kafka's `Throttler` for `log.cleaner.io.max.bytes.per.second`):
/// every check interval it compares the bytes done with the time passed and asks
/// for the sleep that brings them back to the rate.
#[derive(Debug, Clone)]
pub struct Throttler {
    bytes_per_second: f64,
    check_interval: Duration,
    period_start: Instant,
    observed: u64,
}

impl Throttler {
    /// Kafka checks every 300 ms.
    pub const CHECK_INTERVAL: Duration = Duration::from_millis(300);
    /// No single sleep is longer, so a throttled cleaner still notices a shutdown.
    pub const MAX_SLEEP: Duration = Duration::from_secs(60);

    /// A rate that is not a positive number means no limit.
    pub fn new(bytes_per_second: f64, now: Instant) -> Throttler {
        Throttler { bytes_per_second, check_interval: Self::CHECK_INTERVAL, period_start: now, observed: 0 }
    }

    /// A new rate (a dynamic `log.cleaner.io.max.bytes.per.second`), from the next check.
    pub fn set_rate(&mut self, bytes_per_second: f64) {
        self.bytes_per_second = bytes_per_second;
    }

    /// Counts `bytes` done by `now`; returns how long to sleep to keep to the rate.
    pub fn delay(&mut self, bytes: u64, now: Instant) -> Duration {
        self.observed = self.observed.saturating_add(bytes);
        let elapsed = now.saturating_duration_since(self.period_start);
        if elapsed < self.check_interval || self.observed == 0 {
            return Duration::ZERO;
        }
        let sleep = if self.bytes_per_second.is_finite() && self.bytes_per_second > 0.0 {
            let needed = Duration::try_from_secs_f64(self.observed as f64 / self.bytes_per_second).unwrap_or(Duration::MAX);
            needed.saturating_sub(elapsed).min(Self::MAX_SLEEP)
        } else {
            Duration::ZERO
        };
        self.period_start = now + sleep;
        self.observed = 0;
        sleep
    }

    /// [`Throttler::delay`] at the current time, then the sleep.
    pub fn throttle(&mut self, bytes: u64) {
        let d = self.delay(bytes, Instant::now());
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}

/// A closed segment as the clean reads it.
#[derive(Debug)]
struct Source {
    base: i64,
    id: u64,
    data: Bytes,
    index_entries: usize,
    time_index_entries: usize,
}

impl Source {
    /// The segment's batches in order, each with its header and whether it is the
    /// last; a batch that cannot be read ends the walk with the error.
    fn batches<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = StorageResult<(BatchHeader, &'a [u8], bool)>> + 'a {
        let data = &self.data[..];
        let mut pos = 0;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed || pos >= data.len() {
                return None;
            }
            match BatchHeader::parse(&data[pos..]) {
                Ok(h) => {
                    let batch = &data[pos..pos + h.total_len()];
                    pos += h.total_len();
                    Some(Ok((h, batch, pos == data.len())))
                }
                Err(e) => {
                    failed = true;
                    Some(Err(corrupt(dir, self.base, pos, e)))
                }
            }
        })
    }
}

/// A planned clean, ready to run without the log (see the module documentation).
#[derive(Debug)]
pub struct CleanTask {
    dir: PathBuf,
    config: LogConfig,
    cleaner: CleanerConfig,
    now_ms: i64,
    first_dirty: i64,
    first_uncleanable: i64,
    /// The closed segments before the first uncleanable offset, from the first.
    sources: Vec<Source>,
    /// The log's aborted transactions (its aborted transaction indexes), by first offset.
    aborted: Vec<AbortedTxn>,
    producers: HashMap<i64, LastRecord>,
}

/// One group's cleaned segment, written and waiting to be swapped in.
#[derive(Debug)]
struct CleanedGroup {
    base: i64,
    /// The segments it replaces: base offset and [`Segment::id`].
    sources: Vec<(i64, u64)>,
    /// Swapped in or discarded: its files are no longer this value's to remove.
    settled: bool,
}

/// The output of [`CleanTask::run`]: cleaned segments on disk, to hand to
/// [`Log::finish_clean`]. Dropped unfinished, it removes its files.
#[derive(Debug)]
pub struct Cleaned {
    dir: PathBuf,
    groups: Vec<CleanedGroup>,
    end_offset: i64,
    stats: CleanStats,
}

impl Cleaned {
    pub fn stats(&self) -> &CleanStats {
        &self.stats
    }

    /// For crash tests: leaves the files for the test to swap step by step, and
    /// returns each group's base and the bases of the segments it replaces.
    #[cfg(test)]
    pub(crate) fn leave_files(mut self) -> Vec<(i64, Vec<i64>)> {
        self.groups
            .iter_mut()
            .map(|g| {
                g.settled = true;
                (g.base, g.sources.iter().map(|s| s.0).collect())
            })
            .collect()
    }
}

impl Drop for Cleaned {
    fn drop(&mut self) {
        for g in self.groups.iter_mut().filter(|g| !g.settled) {
            swap::discard(&self.dir, g.base);
            g.settled = true;
        }
    }
}

// ---------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------

/// What a control batch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// No record left (a cleaned marker).
    Empty,
    Abort,
    Commit,
    /// Another control type, or a record that cannot be read.
    Other,
}

fn control_kind(batch: &[u8], h: &BatchHeader, limit: usize) -> Control {
    if h.record_count == 0 {
        return Control::Empty;
    }
    let Ok(payload) = payload(batch, h, limit) else { return Control::Other };
    let Ok(records) = parse_records(&payload, h.record_count) else { return Control::Other };
    match records.first().and_then(|r| control_record_type(r.key)) {
        Some(CONTROL_ABORT) => Control::Abort,
        Some(CONTROL_COMMIT) => Control::Commit,
        _ => Control::Other,
    }
}

/// Transaction state while walking the log in order (Kafka's `CleanedTransactionMetadata`).
#[derive(Debug, Default)]
struct TxnState {
    /// Aborted transactions not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Producers inside an aborted transaction: the last batch of it seen.
    aborted: HashMap<i64, Option<i64>>,
    /// Producers inside a transaction that is not aborted, with data seen.
    committed: HashSet<i64>,
}

impl TxnState {
    /// For a walk starting at `from`.
    fn new(all: &[AbortedTxn], from: i64) -> TxnState {
        TxnState { pending: all.iter().filter(|t| t.last_offset >= from).copied().collect(), ..TxnState::default() }
    }

    fn reach(&mut self, offset: i64) {
        while let Some(t) = self.pending.front().copied().filter(|t| t.first_offset <= offset) {
            self.pending.pop_front();
            self.aborted.entry(t.producer_id).or_insert(None);
        }
    }

    /// A data batch: true when it belongs to an aborted transaction (discard it).
    fn on_batch(&mut self, h: &BatchHeader) -> bool {
        self.reach(h.last_offset());
        if !h.is_transactional() {
            return false;
        }
        match self.aborted.get_mut(&h.producer_id) {
            Some(last_seen) => {
                *last_seen = Some(h.last_offset());
                true
            }
            None => {
                self.committed.insert(h.producer_id);
                false
            }
        }
    }

    /// A control batch: true when its transaction has no data left in this walk,
    /// so the marker may go once its delete horizon has passed.
    fn on_control(&mut self, h: &BatchHeader, kind: Control) -> bool {
        self.reach(h.last_offset());
        match kind {
            Control::Empty => true,
            // Kept while this walk still met data of the transaction.
            Control::Abort => !matches!(self.aborted.remove(&h.producer_id), Some(Some(_))),
            Control::Commit => !self.committed.remove(&h.producer_id),
            Control::Other => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

/// The uncompressed records of a whole batch (CRC checked), or why not.
fn payload<'b>(batch: &'b [u8], h: &BatchHeader, limit: usize) -> Result<Cow<'b, [u8]>, String> {
    BatchHeader::parse_checked(batch).map_err(|e| e.to_string())?;
    let body = batch.get(HEADER_LEN..h.total_len()).ok_or("batch shorter than its header")?;
    match h.compression() {
        compression::NONE => Ok(Cow::Borrowed(body)),
        codec => compression::decompress(codec, body, limit).map(Cow::Owned).map_err(|e| e.to_string()),
    }
}

/// Attribute bits Kafka writes (compression, timestamp type, transactional,
/// control); the delete horizon bit is set separately.
const KEPT_ATTRIBUTES: i16 = COMPRESSION_MASK | TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | CONTROL_BIT;

/// Writes a batch holding `kept` of `h`'s records (Kafka's `buildRetainedRecordsInto`):
/// same base offset and last offset delta, same codec; the base timestamp is the
/// delete horizon when there is one, else the first kept record's timestamp.
fn rebuild(h: &BatchHeader, kept: &[Record<'_>], horizon: Option<i64>, out: &mut Vec<u8>) -> Result<(), String> {
    let timestamp = |r: &Record<'_>| r.timestamp(h.base_timestamp);
    let base_timestamp = horizon.or_else(|| kept.first().map(timestamp)).unwrap_or(NO_TIMESTAMP);
    let mut max_timestamp = NO_TIMESTAMP;
    let mut raw = Vec::new();
    for r in kept {
        let ts = timestamp(r);
        max_timestamp = max_timestamp.max(ts);
        Record { timestamp_delta: ts.saturating_sub(base_timestamp), ..*r }.encode(&mut raw);
    }
    if h.is_log_append_time() {
        max_timestamp = h.max_timestamp;
    }
    let payload = compression::compress(h.compression(), &raw).map_err(|e| e.to_string())?;
    let attributes = (h.attributes & KEPT_ATTRIBUTES) | if horizon.is_some() { DELETE_HORIZON_BIT } else { 0 };
    let record_count = i32::try_from(kept.len()).map_err(|e| e.to_string())?;
    let header = BatchHeader { attributes, base_timestamp, max_timestamp, record_count, ..*h };
    encode_batch(&header, &payload, out).map_err(|e| e.to_string())
}

/// The header of a batch kept without records (Kafka's `writeEmptyHeader`).
fn write_empty(h: &BatchHeader, out: &mut Vec<u8>) -> StorageResult<()> {
    let attributes = h.attributes & (TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | CONTROL_BIT);
    let header = BatchHeader { attributes, base_timestamp: NO_TIMESTAMP, record_count: 0, ..*h };
    Ok(encode_batch(&header, &[], out)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retention {
    /// Drop the batch whatever its records.
    Delete,
    /// Drop it when no record is kept.
    DeleteEmpty,
    /// Keep it, empty if no record is kept.
    RetainEmpty,
}

/// The per-batch and per-record rules of a clean (Kafka's `RecordFilter` in `cleanInto`).
struct Filter<'a> {
    map: &'a OffsetMap,
    now_ms: i64,
    delete_retention_ms: i64,
    producers: &'a HashMap<i64, LastRecord>,
    txn: TxnState,
    max_decompressed: usize,
}

impl Filter<'_> {
    /// Whether `h` holds the last data of an active producer (or, for a producer
    /// whose last entry is a marker, is that marker of its current epoch).
    fn is_last_of_producer(&self, h: &BatchHeader) -> bool {
        h.has_producer_id()
            && self.producers.get(&h.producer_id).is_some_and(|last| match last.last_data_offset {
                Some(offset) => h.last_offset() == offset,
                None => h.is_control() && h.producer_epoch == last.epoch,
            })
    }

    /// Kafka's `shouldRetainRecord`.
    fn keep_record(&self, h: &BatchHeader, r: &Record<'_>, stats: &mut CleanStats) -> bool {
        let offset = r.offset(h.base_offset);
        if offset > self.map.latest_offset() {
            return true;
        }
        let Some(key) = r.key else {
            stats.keyless_records_removed += 1;
            return false;
        };
        let latest = offset >= self.map.get(key);
        let tombstone_kept = h.delete_horizon_ms().is_none_or(|horizon| self.now_ms < horizon);
        latest && (r.value.is_some() || tombstone_kept)
    }

    /// Appends to `out` what the clean keeps of `batch` (whose header is `h`).
    fn batch(
        &mut self,
        batch: &[u8],
        h: &BatchHeader,
        last_in_group: bool,
        out: &mut Vec<u8>,
        stats: &mut CleanStats,
    ) -> StorageResult<()> {
        stats.batches_read += 1;
        stats.bytes_read += batch.len() as u64;
        let control = h.is_control().then(|| control_kind(batch, h, self.max_decompressed));
        let can_discard = match control {
            Some(kind) => self.txn.on_control(h, kind),
            None => self.txn.on_batch(h),
        };
        let discard_records = match control {
            Some(_) => can_discard && h.delete_horizon_ms().is_some_and(|horizon| horizon <= self.now_ms),
            None => can_discard,
        };
        let retention = if self.is_last_of_producer(h) || last_in_group {
            Retention::RetainEmpty
        } else if discard_records {
            Retention::Delete
        } else {
            Retention::DeleteEmpty
        };
        if retention == Retention::Delete {
            stats.records_read += u64::try_from(h.record_count).unwrap_or(0);
            return Ok(());
        }
        let empty = |out: &mut Vec<u8>, stats: &mut CleanStats| {
            if retention != Retention::RetainEmpty {
                return Ok(());
            }
            stats.batches_retained += 1;
            if h.record_count == 0 {
                out.extend_from_slice(batch);
                return Ok(());
            }
            write_empty(h, out)
        };
        if discard_records {
            stats.records_read += u64::try_from(h.record_count).unwrap_or(0);
            return empty(out, stats);
        }
        let keep_whole = |reason: String, out: &mut Vec<u8>, stats: &mut CleanStats| {
            tracing::warn!(offset = h.base_offset, %reason, "log cleaner keeps a batch whose records it cannot read");
            stats.unreadable_batches_kept += 1;
            stats.batches_retained += 1;
            out.extend_from_slice(batch);
            Ok(())
        };
        let payload = match payload(batch, h, self.max_decompressed) {
            Ok(p) => p,
            Err(reason) => return keep_whole(reason, out, stats),
        };
        let records = match parse_records(&payload, h.record_count) {
            Ok(r) => r,
            Err(e) => return keep_whole(e.to_string(), out, stats),
        };
        let mut kept = Vec::with_capacity(records.len());
        let mut tombstones = false;
        for r in &records {
            if control.is_some() || self.keep_record(h, r, stats) {
                tombstones |= r.value.is_none();
                kept.push(*r);
            }
        }
        stats.records_read += records.len() as u64;
        stats.records_retained += kept.len() as u64;
        if kept.is_empty() {
            return empty(out, stats);
        }
        stats.batches_retained += 1;
        let marker_of_empty_txn = can_discard && control.is_some();
        let set_horizon = (tombstones || marker_of_empty_txn) && h.delete_horizon_ms().is_none();
        if kept.len() == records.len() && !set_horizon {
            out.extend_from_slice(batch);
            return Ok(());
        }
        let horizon = match set_horizon {
            true => Some(self.now_ms.saturating_add(self.delete_retention_ms)),
            false => h.delete_horizon_ms(),
        };
        let start = out.len();
        if let Err(reason) = rebuild(h, &kept, horizon, out) {
            tracing::warn!(offset = h.base_offset, %reason, "log cleaner keeps a batch it cannot rewrite");
            out.truncate(start);
            stats.unreadable_batches_kept += 1;
            out.extend_from_slice(batch);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------

impl Log {
    /// The closed segment holding `offset`, or `None` when that is the active one.
    fn closed_base_of(&self, offset: i64) -> Option<i64> {
        if offset >= self.active.base_offset() {
            return None;
        }
        Some(self.closed.range(..=offset).next_back().map_or_else(|| self.first_closed_base(), |(&b, _)| b))
    }

    fn first_closed_base(&self) -> i64 {
        self.closed.keys().next().copied().unwrap_or(self.active.base_offset())
    }

    /// Where this log can be cleaned now and how dirty it is (Kafka's
    /// `cleanableOffsets` and `calculateCleanableBytes`). `stable_offset` bounds the
    /// dirty section: the high watermark (the last stable offset once Karst has
    /// transactions); `i64::MAX` for none.
    pub fn cleanable(&self, now_ms: i64, stable_offset: i64) -> StorageResult<Cleanable> {
        let start = self.log_start_offset();
        let first_dirty = match self.cleaner_checkpoint {
            Some(c) if c >= start && c <= self.log_end_offset() => c,
            _ => start,
        };
        let dirty_base = self.closed_base_of(first_dirty).unwrap_or(self.active.base_offset());
        let dirty_segments = || self.closed.range(dirty_base..).map(|(_, s)| s);
        let mut bound = stable_offset.min(self.active.base_offset());
        let min_lag = self.config.min_compaction_lag_ms.max(0);
        if min_lag > 0 {
            let too_young = |s: &&Segment| s.largest_timestamp_for_retention().is_none_or(|ts| ts > now_ms.saturating_sub(min_lag));
            if let Some(s) = dirty_segments().find(too_young) {
                bound = bound.min(s.base_offset());
            }
        }
        let first_uncleanable = self.closed_base_of(first_dirty.max(bound)).unwrap_or(self.active.base_offset());
        let from = dirty_base.min(first_uncleanable);
        let clean_bytes = self.closed.range(..from).map(|(_, s)| s.size()).sum();
        let cleanable_bytes = self.closed.range(from..first_uncleanable).map(|(_, s)| s.size()).sum();
        let max_lag = self.config.max_compaction_lag_ms.max(0);
        let clean_until = now_ms.saturating_sub(max_lag);
        let mut earliest = i64::MAX;
        for s in dirty_segments() {
            if let Some(ts) = s.first_batch_timestamp()?.filter(|ts| *ts > 0) {
                earliest = earliest.min(ts);
            }
        }
        let compaction_delay_ms = if earliest < clean_until { clean_until - earliest } else { 0 };
        Ok(Cleanable {
            first_dirty_offset: first_dirty,
            first_uncleanable_offset: first_uncleanable,
            clean_bytes,
            cleanable_bytes,
            compaction_delay_ms,
        })
    }

    /// Whether the cleaner should clean this log now (Kafka's choice of a log to
    /// clean): it is compacted and either `max.compaction.lag.ms` has passed for
    /// some of its dirty data or its dirty ratio exceeds `min.cleanable.dirty.ratio`.
    pub fn should_clean(&self, now_ms: i64, stable_offset: i64) -> StorageResult<bool> {
        if !self.config.cleanup_policy.compact {
            return Ok(false);
        }
        let c = self.cleanable(now_ms, stable_offset)?;
        Ok(c.needs_compaction_now() || (c.cleanable_bytes > 0 && c.dirty_ratio() > self.config.min_cleanable_dirty_ratio.get()))
    }

    /// Plans a clean of the dirty section (whatever its ratio: see
    /// [`Log::should_clean`]); `None` when the log is not compacted or has nothing
    /// to clean. Cheap, and it changes nothing: the task holds zero-copy views of
    /// the closed segments and runs without the log.
    pub fn plan_clean(&self, now_ms: i64, stable_offset: i64, cleaner: &CleanerConfig) -> StorageResult<Option<CleanTask>> {
        self.health.check()?;
        if !self.config.cleanup_policy.compact {
            return Ok(None);
        }
        let c = self.cleanable(now_ms, stable_offset)?;
        if c.cleanable_bytes == 0 {
            return Ok(None);
        }
        let mut sources = Vec::new();
        for (&base, seg) in self.closed.range(..c.first_uncleanable_offset) {
            let (index_entries, time_index_entries) = seg.index_len();
            sources.push(Source { base, id: seg.id(), data: seg.data()?, index_entries, time_index_entries });
        }
        // Kafka's `collectAbortedTransactions` over the whole log, from the indexes.
        let mut aborted: Vec<AbortedTxn> = self.txn_index.segments.values().flatten().copied().collect();
        aborted.sort_by_key(|t| t.first_offset);
        Ok(Some(CleanTask {
            dir: self.dir.clone(),
            config: self.config.clone(),
            cleaner: cleaner.clone(),
            now_ms,
            first_dirty: c.first_dirty_offset,
            first_uncleanable: c.first_uncleanable_offset,
            sources,
            aborted,
            producers: self.producers.last_records(),
        }))
    }

    /// Swaps the cleaned segments in for the segments they replace (each group only
    /// if those are still this log's, unchanged) and moves the cleaner checkpoint.
    ///
    /// Until a group's commit point (see `swap`) a failure leaves the log as it was
    /// and healthy; after it, a failure fails the log, and the next open finishes
    /// the swap.
    pub fn finish_clean(&mut self, mut cleaned: Cleaned) -> StorageResult<CleanStats> {
        self.health.check()?;
        if cleaned.dir != self.dir {
            return Err(StorageError::Io(std::io::Error::other("cleaned segments of another log")));
        }
        let mut complete = true;
        let first_base = self.first_closed_base();
        for i in 0..cleaned.groups.len() {
            let g = &cleaned.groups[i];
            let intact = g.sources.iter().all(|(b, id)| self.closed.get(b).is_some_and(|s| s.id() == *id));
            if !intact {
                let gone = g.sources.iter().all(|(b, _)| *b < first_base && !self.closed.contains_key(b));
                complete &= gone;
                cleaned.stats.groups_abandoned += 1;
                tracing::info!(dir = %self.dir.display(), base = g.base, gone, "log changed during the clean: not swapping in this group");
                swap::discard(&self.dir, g.base);
                cleaned.groups[i].settled = true;
                continue;
            }
            let (base, replaced): (i64, Vec<i64>) = (g.base, g.sources.iter().map(|s| s.0).collect());
            cleaned.groups[i].settled = true;
            self.swap_in(base, &replaced)?;
            cleaned.stats.segments_cleaned += replaced.len();
            cleaned.stats.segments_written += 1;
        }
        if complete {
            let end = cleaned.end_offset;
            if let Err(e) = checkpoint::write_cleaner_offset(&self.dir, end) {
                // The segments are swapped; a lost checkpoint only means the next
                // clean reads more than it needs to.
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not write the cleaner checkpoint");
            } else {
                self.cleaner_checkpoint = Some(end);
            }
        }
        Ok(std::mem::take(&mut cleaned.stats))
    }

    fn swap_in(&mut self, base: i64, replaced: &[i64]) -> StorageResult<()> {
        let ops = swap::swap_ops(base, replaced);
        let Some((commit, rest)) = ops.split_first() else { return Ok(()) };
        if let Err(e) = swap::apply(&self.dir, commit) {
            // Not committed: the old segments are whole. Take the cleaned files away
            // (and the swap, were the rename done after all).
            swap::discard(&self.dir, base);
            if let SwapOp::Rename { to, .. } = commit {
                let _ = crate::files::remove_if_exists(&self.dir.join(to));
            }
            return Err(e.into());
        }
        let swapped = self.finish_swap(base, replaced, rest);
        if let Err(e) = &swapped {
            self.health.fail(format_args!("swapping in a cleaned segment failed: {e}"));
        }
        swapped
    }

    fn finish_swap(&mut self, base: i64, replaced: &[i64], rest: &[SwapOp]) -> StorageResult<()> {
        for op in rest {
            swap::apply(&self.dir, op)?;
        }
        let mut aborted = Vec::new();
        for b in replaced {
            // Dropping a segment unmaps nothing a reader holds: `Bytes` keep their mapping.
            self.closed.remove(b);
            aborted.extend(self.txn_index.segments.remove(b).unwrap_or_default());
        }
        let seg = Segment::open_closed(&self.dir, base, &self.config)?;
        // The group's aborted transactions whose ABORT marker the clean kept (as
        // Kafka's cleaned index: a consumer told of one must meet its marker). A
        // failure from here on leaves the segment without an index file: the log
        // fails, and its next open rebuilds the indexes.
        let mut kept_aborts = HashSet::new();
        let scanned = seg.for_each_batch_with_bytes(base, |h, batch| {
            if h.is_control() && control_kind(batch, h, 1 << 16) == Control::Abort {
                kept_aborts.insert(h.base_offset);
            }
        });
        self.closed.insert(base, seg);
        scanned?;
        aborted.retain(|t| kept_aborts.contains(&t.last_offset));
        crate::txn_index::write(&self.dir, base, &aborted)?;
        self.txn_index.segments.insert(base, aborted);
        Ok(())
    }

    /// Plans, runs and finishes a clean in one call (see the module documentation);
    /// `None` when there is nothing to clean.
    pub fn clean(
        &mut self,
        now_ms: i64,
        stable_offset: i64,
        cleaner: &CleanerConfig,
        io: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> StorageResult<Option<CleanStats>> {
        let Some(task) = self.plan_clean(now_ms, stable_offset, cleaner)? else {
            return Ok(None);
        };
        let cleaned = task.run(io)?;
        self.finish_clean(cleaned).map(Some)
    }
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

impl CleanTask {
    /// Where the dirty section this task cleans starts and ends.
    pub fn dirty_range(&self) -> (i64, i64) {
        (self.first_dirty, self.first_uncleanable)
    }

    /// Builds the offset map and writes a cleaned segment per group; the log is not
    /// touched (see [`Log::finish_clean`]). On error or abort the files written so
    /// far are removed.
    pub fn run(self, io: &mut dyn FnMut(u64) -> ControlFlow<()>) -> StorageResult<Cleaned> {
        let limit = self.cleaner.max_decompressed_batch_bytes;
        let aborted = &self.aborted;
        let mut stats = CleanStats { first_dirty_offset: self.first_dirty, ..CleanStats::default() };
        let mut map = OffsetMap::new(self.cleaner.dedupe_buffer_size, self.cleaner.dedupe_buffer_load_factor);
        self.build_offset_map(&mut map, aborted, &mut stats, io)?;
        let end_offset = map.latest_offset() + 1;
        stats.end_offset = end_offset;
        stats.map_keys = map.len();
        stats.map_utilization = map.utilization();

        let mut cleaned = Cleaned { dir: self.dir.clone(), groups: Vec::new(), end_offset, stats: CleanStats::default() };
        let first_base = self.sources.first().map_or(end_offset, |s| s.base);
        let mut filter = Filter {
            map: &map,
            now_ms: self.now_ms,
            delete_retention_ms: self.config.delete_retention_ms,
            producers: &self.producers,
            txn: TxnState::new(aborted, first_base),
            max_decompressed: limit,
        };
        let to_clean = self.sources.iter().take_while(|s| s.base < end_offset).count();
        for group in self.group_by_size(&self.sources[..to_clean]) {
            if let Some(g) = self.clean_group(group, &mut filter, &mut stats, io)? {
                cleaned.groups.push(g);
            }
        }
        cleaned.stats = stats;
        Ok(cleaned)
    }

    /// The offset after source `i`: the next segment's base.
    fn next_base(&self, i: usize) -> i64 {
        self.sources.get(i + 1).map_or(self.first_uncleanable, |s| s.base)
    }

    /// Kafka's `buildOffsetMap`: the latest offset of every key in the dirty section,
    /// until the map is full.
    fn build_offset_map(
        &self,
        map: &mut OffsetMap,
        aborted: &[AbortedTxn],
        stats: &mut CleanStats,
        io: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> StorageResult<()> {
        let mut txn = TxnState::new(aborted, self.first_dirty);
        let limit = self.cleaner.max_decompressed_batch_bytes;
        for (i, src) in self.sources.iter().enumerate() {
            let next = self.next_base(i);
            if next <= self.first_dirty {
                continue;
            }
            for item in src.batches(&self.dir) {
                let (h, batch, _) = item?;
                if h.last_offset() < self.first_dirty {
                    continue;
                }
                tick(io, batch.len())?;
                stats.map_bytes_read += batch.len() as u64;
                if h.is_control() {
                    txn.on_control(&h, control_kind(batch, &h, limit));
                } else if txn.on_batch(&h) {
                    stats.map_records_read += u64::try_from(h.record_count).unwrap_or(0);
                } else if let Ok(p) = payload(batch, &h, limit) {
                    if let Ok(records) = parse_records(&p, h.record_count) {
                        for r in &records {
                            let offset = r.offset(h.base_offset);
                            if let Some(key) = r.key.filter(|_| offset >= self.first_dirty) {
                                if map.is_full() {
                                    return Ok(());
                                }
                                map.put(key, offset);
                            }
                            stats.map_records_read += 1;
                        }
                    }
                }
                map.update_latest_offset(h.last_offset());
            }
            // Past a gap at the end of the segment too.
            map.update_latest_offset(next - 1);
        }
        Ok(())
    }

    /// Kafka's `groupSegmentsBySize`: consecutive segments whose log, offset index
    /// and time index fit one segment's limits, and whose offsets fit its relative
    /// offsets.
    fn group_by_size<'s>(&self, sources: &'s [Source]) -> Vec<&'s [Source]> {
        let max_bytes = self.config.segment_bytes.min(i32::MAX as u64);
        let max_index = u64::from(self.config.segment_index_bytes);
        let index_bytes = |s: &Source| (s.index_entries * INDEX_ENTRY_SIZE) as u64;
        let time_index_bytes = |s: &Source| (s.time_index_entries * TIME_INDEX_ENTRY_SIZE) as u64;
        let mut groups = Vec::new();
        let mut start = 0;
        while start < sources.len() {
            let first = &sources[start];
            let (mut size, mut index, mut time_index) = (first.data.len() as u64, index_bytes(first), time_index_bytes(first));
            let mut end = start + 1;
            while let Some(s) = sources.get(end) {
                let last_offset = self.next_base(end) - 1;
                let fits = size + s.data.len() as u64 <= max_bytes
                    && index + index_bytes(s) <= max_index
                    && time_index + time_index_bytes(s) <= max_index
                    && (s.data.is_empty() || last_offset - first.base <= i64::from(i32::MAX));
                if !fits {
                    break;
                }
                size += s.data.len() as u64;
                index += index_bytes(s);
                time_index += time_index_bytes(s);
                end += 1;
            }
            groups.push(&sources[start..end]);
            start = end;
        }
        groups
    }

    /// Copies one group into a new `.cleaned` segment, fsynced; `None` for a group
    /// without a batch.
    fn clean_group(
        &self,
        group: &[Source],
        filter: &mut Filter<'_>,
        stats: &mut CleanStats,
        io: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> StorageResult<Option<CleanedGroup>> {
        let Some(first) = group.first() else { return Ok(None) };
        if group.iter().all(|s| s.data.is_empty()) {
            return Ok(None);
        }
        let base = first.base;
        let written = self.write_group(base, group, filter, stats, io);
        if let Err(e) = written {
            swap::discard(&self.dir, base);
            return Err(e);
        }
        Ok(Some(CleanedGroup { base, sources: group.iter().map(|s| (s.base, s.id)).collect(), settled: false }))
    }

    fn write_group(
        &self,
        base: i64,
        group: &[Source],
        filter: &mut Filter<'_>,
        stats: &mut CleanStats,
        io: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> StorageResult<()> {
        let mut seg = Segment::create_cleaned(&self.dir, base, &self.config)?;
        let mut out = Vec::new();
        let last_source = group.len() - 1;
        for (i, src) in group.iter().enumerate() {
            for item in src.batches(&self.dir) {
                let (h, batch, last_in_source) = item?;
                tick(io, batch.len())?;
                filter.batch(batch, &h, i == last_source && last_in_source, &mut out, stats)?;
                if out.len() >= self.cleaner.io_buffer_size {
                    self.write_out(&mut seg, &mut out, stats, io)?;
                }
            }
        }
        self.write_out(&mut seg, &mut out, stats, io)?;
        seg.freeze()?;
        drop(seg);
        fsync_dir(&self.dir)?;
        Ok(())
    }

    /// Appends the gathered batches to the cleaned segment (its indexes follow).
    fn write_out(
        &self,
        seg: &mut Segment,
        out: &mut Vec<u8>,
        stats: &mut CleanStats,
        io: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> StorageResult<()> {
        if out.is_empty() {
            return Ok(());
        }
        let mut headers = Vec::new();
        let mut pos = 0;
        while pos < out.len() {
            let h = BatchHeader::parse(&out[pos..])?;
            headers.push((pos, h));
            pos += h.total_len();
        }
        seg.append(out, &headers, self.config.index_interval_bytes, self.now_ms)?;
        stats.bytes_written += out.len() as u64;
        tick(io, out.len())?;
        out.clear();
        Ok(())
    }
}

fn corrupt(dir: &Path, base: i64, pos: usize, e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        path: crate::files::offset_path(dir, base, crate::files::LOG_EXT).display().to_string(),
        reason: format!("the log cleaner cannot read the batch at position {pos}: {e}"),
    }
}
