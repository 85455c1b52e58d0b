//! The partition log: a directory of segments, the last of which is active.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::ops::Bound::{Excluded, Unbounded};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use karst_batch::{BatchError, BatchHeader};

use crate::checkpoint;
use crate::faults::is_no_space;
use crate::files::{fsync_dir, offset_path, remove_if_exists, replace_with_prefix, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};
use crate::health::{FlushTarget, Health};
use crate::leader_epochs::LeaderEpochs;
use crate::producer_state::{ProducerState, Verdict};
use crate::recovery;
use crate::segment::Segment;
use crate::snapshot;
use crate::swap;
use crate::{LogConfig, StorageError, StorageResult};

/// What `append` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record of the first batch.
    pub base_offset: i64,
    /// Offset of the last record appended; `log_end_offset() == last_offset + 1`.
    pub last_offset: i64,
    /// Largest batch max_timestamp appended.
    pub max_timestamp: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
    /// True when the batches were a retry of batches already in the log
    /// (idempotent producer); nothing was written and the offsets are the originals.
    pub duplicate: bool,
}

/// Whole batches read from the log.
#[derive(Debug, Clone)]
pub struct ReadSlice {
    /// Concatenated batches; empty when there is nothing at or after the offset.
    pub bytes: Bytes,
    /// Base offset of the first batch in `bytes` (<= requested offset).
    pub first_offset: i64,
}

/// One partition's log: a directory of segments.
///
/// Layout and formats: see the `files`, `index`, `time_index` and `snapshot` modules.
/// Only the active segment may have an unsynced tail: a roll fsyncs the old segment
/// and its indexes before anything is written to the new one.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Segments before the active one, by base offset.
    pub(crate) closed: BTreeMap<i64, Segment>,
    pub(crate) active: Segment,
    log_start_offset: i64,
    log_end_offset: i64,
    pub(crate) producers: ProducerState,
    /// Offsets of the producer-state snapshot files on disk.
    snapshots: BTreeSet<i64>,
    /// Where each leader epoch began (`leader-epoch-checkpoint`).
    epochs: LeaderEpochs,
    /// Set for good by the first failed write or fsync (see `health`).
    pub(crate) health: Arc<Health>,
    /// Where the log cleaner's next dirty section starts (`cleaner-offset-checkpoint`).
    pub(crate) cleaner_checkpoint: Option<i64>,
}

impl Log {
    /// Opens (creating if missing) the log in `dir`, recovering an unclean tail.
    pub fn open(dir: &Path, config: LogConfig) -> StorageResult<Log> {
        fs::create_dir_all(dir)?;
        // A clean interrupted by a crash: finish its committed swaps, drop the rest.
        swap::recover(dir)?;
        let listing = recovery::list_dir(dir)?;
        let clean = checkpoint::has_clean_shutdown_marker(dir);
        let checkpointed_start = checkpoint::read_log_start_offset(dir)?;
        let mut closed = BTreeMap::new();
        let (active, log_end_offset) = match listing.segments.split_last() {
            None => {
                let base = checkpointed_start.unwrap_or(0);
                let seg = Segment::create(dir, base, &config)?;
                fsync_dir(dir)?;
                (seg, base)
            }
            Some((&last, rest)) => {
                for &base in rest {
                    closed.insert(base, Segment::open_closed(dir, base, &config)?);
                }
                Segment::open_active(dir, last, &config, clean)?
            }
        };
        let first_base = closed.keys().next().copied().unwrap_or(active.base_offset());
        let log_start_offset = checkpointed_start.unwrap_or(first_base).max(first_base);
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            closed,
            active,
            log_start_offset,
            log_end_offset,
            producers: ProducerState::default(),
            snapshots: listing.snapshots,
            epochs: LeaderEpochs::default(),
            health: Arc::default(),
            cleaner_checkpoint: checkpoint::read_cleaner_offset(dir)?,
        };
        if log_start_offset > log_end_offset {
            // Recovery lost data above a persisted log start (DeleteRecords/retention
            // moved it into a tail that was never synced). As Kafka does, start over
            // empty at the log start rather than hand out offsets below it again.
            tracing::warn!(
                dir = %dir.display(),
                log_end_offset,
                log_start_offset,
                "log ends below its start offset; starting over empty at the start offset"
            );
            return log.restart_at(log_start_offset);
        }
        // Finish a DeleteRecords that persisted its checkpoint but crashed before deleting.
        log.delete_segments_below(log_start_offset)?;
        log.load_producer_state()?;
        log.load_leader_epochs()?;
        if clean {
            checkpoint::remove_clean_shutdown_marker(dir)?;
        }
        Ok(log)
    }

    /// Loads the newest valid snapshot at or below the log end and replays the batch
    /// headers after it.
    fn load_producer_state(&mut self) -> StorageResult<()> {
        let stale: Vec<i64> = self.snapshots.range((Excluded(self.log_end_offset), Unbounded)).copied().collect();
        for offset in stale {
            tracing::warn!(dir = %self.dir.display(), offset, "removing producer snapshot beyond the log end");
            snapshot::remove(&self.dir, offset)?;
            self.snapshots.remove(&offset);
        }
        let first_base = self.first_segment_base();
        let mut state = ProducerState::default();
        let mut from = first_base;
        while let Some(&offset) = self.snapshots.last() {
            match snapshot::read(&self.dir, offset) {
                Ok(s) => {
                    state = s;
                    from = offset.max(first_base);
                    break;
                }
                Err(reason) => {
                    tracing::warn!(dir = %self.dir.display(), offset, %reason, "removing unreadable producer snapshot");
                    snapshot::remove(&self.dir, offset)?;
                    self.snapshots.remove(&offset);
                }
            }
        }
        for seg in self.segments_from(from) {
            seg.for_each_batch(from, |h| state.replay(h))?;
        }
        self.producers = state;
        Ok(())
    }

    /// Reads the leader epoch cache, fitted to the recovered log; rebuilt from the
    /// batches' epochs when missing, unreadable or behind the last batch.
    fn load_leader_epochs(&mut self) -> StorageResult<()> {
        let last_epoch = match self.log_end_offset > self.log_start_offset {
            true => self.segments_from(self.log_end_offset - 1).next().and_then(|s| s.batch_at(self.log_end_offset - 1).ok().flatten()),
            false => None,
        }
        .map(|(_, h)| h.partition_leader_epoch);
        let mut epochs = match LeaderEpochs::read(&self.dir)? {
            Some(c) if last_epoch.is_none_or(|e| c.latest_epoch().is_some_and(|l| l >= e)) => c,
            _ => {
                let mut c = LeaderEpochs::default();
                for seg in self.segments_from(self.log_start_offset) {
                    seg.for_each_batch(self.log_start_offset, |h| {
                        c.assign(h.partition_leader_epoch, h.base_offset);
                    })?;
                }
                c.write(&self.dir)?;
                c
            }
        };
        let cut = epochs.truncate_from_end(self.log_end_offset);
        if epochs.truncate_from_start(self.log_start_offset) || cut {
            epochs.write(&self.dir)?;
        }
        self.epochs = epochs;
        Ok(())
    }

    /// Records the epochs of appended batches; the file is rewritten when one is new.
    fn note_epochs(&mut self, headers: &[(usize, BatchHeader)]) {
        let mut changed = false;
        for (_, h) in headers {
            changed |= self.epochs.assign(h.partition_leader_epoch, h.base_offset);
        }
        if changed {
            // The batches are already written; a lost update is repaired on the
            // next open, which rebuilds a cache that is behind the last batch.
            if let Err(e) = self.epochs.write(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not write leader-epoch-checkpoint");
            }
        }
    }

    /// After the log start moved: the epoch in force there starts there.
    fn epochs_follow_start(&mut self) {
        if self.epochs.truncate_from_start(self.log_start_offset) {
            if let Err(e) = self.epochs.write(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not write leader-epoch-checkpoint");
            }
        }
    }

    /// The leader epoch cache.
    pub fn leader_epochs(&self) -> &LeaderEpochs {
        &self.epochs
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` this log knows and where it ended.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset)
    }

    fn first_segment_base(&self) -> i64 {
        self.closed.keys().next().copied().unwrap_or(self.active.base_offset())
    }

    /// All segments in offset order, starting with the one that holds `offset`.
    fn segments_from(&self, offset: i64) -> impl Iterator<Item = &Segment> {
        let closed = if offset >= self.active.base_offset() {
            self.closed.range(self.active.base_offset()..)
        } else {
            match self.closed.range(..=offset).next_back() {
                Some((&base, _)) => self.closed.range(base..),
                None => self.closed.range(..),
            }
        };
        closed.map(|(_, s)| s).chain(std::iter::once(&self.active))
    }

    /// Appends one or more v2 batches laid end to end.
    ///
    /// Offsets and the partition leader epoch are assigned on the way to the file;
    /// `batches` itself is left as it is (it may be a shared request buffer).
    /// Idempotent-producer sequences are checked for every batch before anything is
    /// written; if any batch is a duplicate of one in the log, nothing is written and
    /// the original offsets of that batch are returned with `duplicate: true`
    /// (Kafka treats the whole append as the retry).
    pub fn append(&mut self, batches: &[u8], leader_epoch: i32, now_ms: i64) -> StorageResult<AppendInfo> {
        self.health.check()?;
        let (headers, next_offset, max_timestamp) = self.headers(batches, Some(leader_epoch))?;
        let mut pending = self.producers.begin();
        for (_, h) in &headers {
            if let Verdict::Duplicate(original) = pending.check(h)? {
                return Ok(AppendInfo {
                    base_offset: original.base_offset,
                    last_offset: original.last_offset,
                    max_timestamp: original.max_timestamp,
                    log_start_offset: self.log_start_offset,
                    duplicate: true,
                });
            }
        }
        let changes = pending.into_changes();
        let info = self.write(batches, &headers, next_offset, max_timestamp, now_ms)?;
        self.producers.commit(changes);
        self.note_epochs(&headers);
        Ok(info)
    }

    /// Appends batches copied from the partition's leader, keeping their offsets and
    /// leader epochs: the first must start at or after the log end and each after
    /// the previous one (a compacted leader log has gaps where the cleaner removed
    /// whole batches, as Kafka's follower append allows). Their CRCs are checked, as
    /// they crossed the network; producer state follows what the leader accepted,
    /// without re-validating sequences.
    pub fn append_replicated(&mut self, batches: &[u8], now_ms: i64) -> StorageResult<AppendInfo> {
        self.health.check()?;
        let (headers, next_offset, max_timestamp) = self.headers(batches, None)?;
        for (pos, _) in &headers {
            BatchHeader::parse_checked(&batches[*pos..])?;
        }
        let info = self.write(batches, &headers, next_offset, max_timestamp, now_ms)?;
        for (_, h) in &headers {
            self.producers.replay(h);
        }
        self.note_epochs(&headers);
        Ok(info)
    }

    /// Parses the batches of an append. With `assign`, offsets from the log end and
    /// that leader epoch are given to them; without, their own offsets must be at or
    /// past the log end and increase. Returns the headers by position, the next log
    /// end and the max timestamp.
    #[allow(clippy::type_complexity)]
    fn headers(&self, batches: &[u8], assign: Option<i32>) -> StorageResult<(Vec<(usize, BatchHeader)>, i64, i64)> {
        if batches.is_empty() {
            return Err(StorageError::Batch(BatchError::Invalid("no record batch to append")));
        }
        let mut headers = Vec::new();
        let mut pos = 0usize;
        let mut next_offset = self.log_end_offset;
        let mut max_timestamp = -1i64;
        while pos < batches.len() {
            let mut h = BatchHeader::parse(&batches[pos..])?;
            match assign {
                Some(epoch) => {
                    h.base_offset = next_offset;
                    h.partition_leader_epoch = epoch;
                }
                None if h.base_offset < next_offset => {
                    return Err(StorageError::Batch(BatchError::Invalid("replicated batch overlaps the log")));
                }
                None => {}
            }
            if h.last_offset_delta < 0 {
                return Err(StorageError::Batch(BatchError::Invalid("negative last offset delta")));
            }
            next_offset = h
                .base_offset
                .checked_add(i64::from(h.last_offset_delta) + 1)
                .ok_or(StorageError::Batch(BatchError::Invalid("offset overflow")))?;
            max_timestamp = max_timestamp.max(h.max_timestamp);
            headers.push((pos, h));
            pos += h.total_len();
        }
        Ok((headers, next_offset, max_timestamp))
    }

    /// Writes parsed batches to the active segment (rolling first when due).
    fn write(
        &mut self,
        batches: &[u8],
        headers: &[(usize, BatchHeader)],
        next_offset: i64,
        max_timestamp: i64,
        now_ms: i64,
    ) -> StorageResult<AppendInfo> {
        let base_offset = headers.first().map_or(self.log_end_offset, |(_, h)| h.base_offset);
        if self.should_roll(batches.len() as u64, next_offset, now_ms) {
            // At the first batch's offset: after a gap (replicated from a compacted
            // log) the relative offsets of the new segment start at 0.
            self.roll(base_offset)?;
        }
        if let Err(e) = self.active.append(batches, headers, self.config.index_interval_bytes, now_ms) {
            // A full file system, with the partial write cut back, leaves the log as it
            // was; anything else (EIO, a cut that failed) leaves it in doubt.
            if !is_no_space(&e) {
                self.health.fail(format_args!("write failed: {e}"));
            }
            return Err(e.into());
        }
        self.log_end_offset = next_offset;
        Ok(AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            max_timestamp,
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    /// Deletes every batch and starts the log empty at `offset`, which may be past
    /// its end: a follower whose leader has deleted (retention, DeleteRecords) what
    /// it would need next starts again at the leader's log start.
    pub fn restart_at(mut self, offset: i64) -> StorageResult<Log> {
        self.health.check()?;
        let (dir, config) = (self.dir.clone(), self.config.clone());
        let bases: Vec<i64> = self.segments_from(i64::MIN).map(Segment::base_offset).collect();
        let snapshots = std::mem::take(&mut self.snapshots);
        drop(self); // unmaps every segment before its files go
                    // The new start is recorded first: a crash in between leaves segments below
                    // it, which the next open deletes.
        checkpoint::write_log_start_offset(&dir, offset.max(0))?;
        for base in bases {
            for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
                remove_if_exists(&offset_path(&dir, base, ext))?;
            }
        }
        for s in snapshots {
            snapshot::remove(&dir, s)?;
        }
        remove_if_exists(&dir.join(crate::leader_epochs::FILE))?;
        remove_if_exists(&dir.join(checkpoint::CLEANER_OFFSET_FILE))?;
        checkpoint::remove_clean_shutdown_marker(&dir)?;
        Log::open(&dir, config)
    }

    /// Removes the batch holding `offset` and everything after it (a follower
    /// cutting what its leader never committed) and returns the reopened log, which
    /// ends at that batch's base offset. The files are cut while the log is closed
    /// (the cut segment by a copy of its prefix renamed over it, since `Bytes` of
    /// earlier reads may still map it) and the active segment is then recovered like after a crash: indexes rebuilt,
    /// batches verified, producer snapshots past the new end dropped. At or below
    /// the log start, the log restarts empty at `offset`.
    pub fn truncate_to(self, offset: i64) -> StorageResult<Log> {
        self.health.check()?;
        if offset >= self.log_end_offset {
            return Ok(self);
        }
        if offset <= self.log_start_offset {
            return self.restart_at(offset.max(0));
        }
        let (dir, config) = (self.dir.clone(), self.config.clone());
        let seg = self.segments_from(offset).next().unwrap_or(&self.active);
        let cut_base = seg.base_offset();
        let cut_pos = match seg.batch_at(offset)? {
            Some((pos, _)) => pos as u64,
            None => seg.size(),
        };
        let later: Vec<i64> = self.segments_from(offset).map(Segment::base_offset).filter(|b| *b > cut_base).collect();
        let cleaned_past_cut = self.cleaner_checkpoint.is_some_and(|c| c > offset);
        drop(self); // unmaps every segment before its file is cut
        if cleaned_past_cut {
            // What gets appended after the cut is dirty (Kafka's maybeTruncateCheckpoint).
            checkpoint::write_cleaner_offset(&dir, offset)?;
        }
        for base in later {
            for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT] {
                remove_if_exists(&offset_path(&dir, base, ext))?;
            }
        }
        // Readers may still hold bytes of the cut file: it is replaced, not shortened.
        replace_with_prefix(&offset_path(&dir, cut_base, LOG_EXT), cut_pos)?;
        checkpoint::remove_clean_shutdown_marker(&dir)?;
        fsync_dir(&dir)?;
        Log::open(&dir, config)
    }

    /// Whether appending `incoming_bytes` now would roll the active segment first
    /// (fsyncs and a new file), so a caller on an async runtime can move that
    /// append off its worker. Ignores the rare roll for relative-offset overflow.
    pub fn would_roll(&self, incoming_bytes: u64, now_ms: i64) -> bool {
        self.should_roll(incoming_bytes, self.log_end_offset + 1, now_ms)
    }

    fn should_roll(&self, incoming_bytes: u64, next_offset: i64, now_ms: i64) -> bool {
        let seg = &self.active;
        if seg.size() == 0 {
            return false;
        }
        // Index positions are u32: never let a segment grow past i32::MAX bytes.
        let max_bytes = self.config.segment_bytes.min(i32::MAX as u64);
        let too_big = seg.size().saturating_add(incoming_bytes) > max_bytes;
        let too_old = match (self.config.roll_ms(), seg.rolling_base_ms()) {
            (Some(ms), Some(base)) => now_ms.saturating_sub(base) > i64::try_from(ms).unwrap_or(i64::MAX),
            _ => false,
        };
        // Relative offsets in the indexes are u32 as well.
        let offsets_overflow = next_offset - 1 - seg.base_offset() > i64::from(i32::MAX);
        too_big || too_old || offsets_overflow || seg.indexes_full()
    }

    /// Closes the active segment and starts a new one at `base` (the log end, or
    /// past it for a replicated batch after a gap). Any failure fails the log: the
    /// old segment may be neither synced nor the last one.
    pub(crate) fn roll(&mut self, base: i64) -> StorageResult<()> {
        self.health.check()?;
        let rolled = self.roll_segment(base.max(self.log_end_offset));
        if let Err(e) = &rolled {
            self.health.fail(format_args!("segment roll failed: {e}"));
        }
        rolled
    }

    fn roll_segment(&mut self, base: i64) -> StorageResult<()> {
        // The old segment's bytes are durable before the new segment exists, so a crash
        // never leaves an unsynced tail anywhere but in the last segment.
        crate::faults::check(crate::faults::Point::Fsync, self.active.log_path())?;
        self.active.file()?.sync_data()?;
        let new = Segment::create(&self.dir, base, &self.config)?;
        fsync_dir(&self.dir)?;
        let mut old = std::mem::replace(&mut self.active, new);
        let frozen = old.freeze();
        self.closed.insert(old.base_offset(), old);
        frozen?;
        if let Err(e) = self.write_snapshot() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not write producer snapshot on roll");
        }
        Ok(())
    }

    fn write_snapshot(&mut self) -> StorageResult<()> {
        snapshot::write(&self.dir, self.log_end_offset, &self.producers)?;
        self.snapshots.insert(self.log_end_offset);
        Ok(())
    }

    /// Reads whole batches from the one containing `offset`.
    ///
    /// Stops before a batch whose base offset is >= `max_offset` and before exceeding
    /// `max_bytes`, except that with `min_one` the first batch is returned whole even
    /// if larger. Reads at most one segment; the next read continues.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64, min_one: bool) -> StorageResult<ReadSlice> {
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(StorageError::OffsetOutOfRange { offset, log_start: self.log_start_offset, log_end: self.log_end_offset });
        }
        let empty = ReadSlice { bytes: Bytes::new(), first_offset: offset };
        if offset == self.log_end_offset || offset >= max_offset {
            return Ok(empty);
        }
        for seg in self.segments_from(offset) {
            if let Some(slice) = seg.read(offset, max_bytes, max_offset, min_one)? {
                return Ok(slice);
            }
        }
        Ok(empty)
    }

    /// The idempotent producers this log remembers (DescribeProducers).
    pub fn active_producers(&self) -> Vec<crate::producer_state::ActiveProducer> {
        self.producers.active()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }

    /// The largest record timestamp of the segments holding the log from its start
    /// (-1 when no record carries one): Kafka's max timestamp "so far" (KIP-734).
    pub fn max_timestamp(&self) -> i64 {
        self.segments_from(self.log_start_offset).map(Segment::max_timestamp).max().unwrap_or(-1).max(-1)
    }

    /// The first batch whose max timestamp is >= `timestamp`, whole.
    pub fn find_batch_by_timestamp(&self, timestamp: i64) -> StorageResult<Option<Bytes>> {
        for seg in self.segments_from(self.log_start_offset) {
            if seg.max_timestamp() < timestamp {
                continue;
            }
            if let Some(batch) = seg.find_by_timestamp(timestamp, self.log_start_offset)? {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    /// What to fsync outside the log's lock; refused once the log has failed.
    pub fn flush_target(&self) -> StorageResult<FlushTarget> {
        self.health.check()?;
        Ok(FlushTarget {
            file: Arc::clone(self.active.file()?),
            log_end_offset: self.log_end_offset,
            path: self.active.log_path().to_path_buf(),
            health: Arc::clone(&self.health),
        })
    }

    /// Syncs the active segment and its indexes; a failure fails the log.
    pub fn flush(&mut self) -> StorageResult<()> {
        self.health.check()?;
        if let Err(e) = self.active.flush() {
            self.health.fail(format_args!("fsync failed: {e}"));
            return Err(e.into());
        }
        Ok(())
    }

    /// Why the log failed (a write or fsync error), if it did: it then refuses every
    /// append, flush and truncation, and never again reports anything durable.
    pub fn failure(&self) -> Option<&str> {
        self.health.failure()
    }

    /// Runs a change of files; an I/O error in it fails the log.
    fn guarded<T>(&mut self, change: impl FnOnce(&mut Log) -> StorageResult<T>) -> StorageResult<T> {
        self.health.check()?;
        let r = change(self);
        if let Err(StorageError::Io(e)) = &r {
            self.health.fail(e);
        }
        r
    }

    /// Kafka DeleteRecords: raises the log start offset to `before_offset` (clamped to
    /// the log end), deletes the segments entirely below it and persists it.
    pub fn delete_records(&mut self, before_offset: i64) -> StorageResult<i64> {
        self.guarded(|log| log.delete_records_below(before_offset))
    }

    fn delete_records_below(&mut self, before_offset: i64) -> StorageResult<i64> {
        let new_start = before_offset.min(self.log_end_offset);
        if new_start <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        checkpoint::write_log_start_offset(&self.dir, new_start)?;
        self.log_start_offset = new_start;
        self.epochs_follow_start();
        self.delete_segments_below(new_start)?;
        Ok(self.log_start_offset)
    }

    /// Deletes closed segments that hold only offsets below `offset`.
    fn delete_segments_below(&mut self, offset: i64) -> StorageResult<usize> {
        let mut deleted = 0;
        while let Some((&base, _)) = self.closed.first_key_value() {
            let next_base = self.closed.range((Excluded(base), Unbounded)).next().map_or(self.active.base_offset(), |(&b, _)| b);
            if next_base > offset {
                break;
            }
            self.delete_oldest_segment()?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Deletes the oldest closed segment, moving the log start past it and dropping
    /// producer snapshots below the new first segment.
    fn delete_oldest_segment(&mut self) -> StorageResult<()> {
        let Some((_, seg)) = self.closed.pop_first() else {
            return Ok(());
        };
        seg.delete()?;
        let first_base = self.first_segment_base();
        self.log_start_offset = self.log_start_offset.max(first_base);
        self.epochs_follow_start();
        let old: Vec<i64> = self.snapshots.range(..first_base).copied().collect();
        for offset in old {
            snapshot::remove(&self.dir, offset)?;
            self.snapshots.remove(&offset);
        }
        Ok(())
    }

    /// Deletes closed segments past `retention.ms` (by their largest timestamp) and,
    /// while the log exceeds `retention.bytes`, the oldest closed segments whose
    /// removal keeps it at or above that size (Kafka's rule). An expired active
    /// segment is rolled first so it can go too. Returns the number deleted.
    /// Nothing is deleted unless `cleanup.policy` includes delete (a `compact` log
    /// keeps everything its cleaner keeps; DeleteRecords still applies to it).
    pub fn enforce_retention(&mut self, now_ms: i64) -> StorageResult<usize> {
        self.guarded(|log| log.delete_expired(now_ms))
    }

    fn delete_expired(&mut self, now_ms: i64) -> StorageResult<usize> {
        let mut deleted = 0;
        if !self.config.cleanup_policy.delete {
            return Ok(0);
        }
        if let Some(retention_ms) = self.config.retention_ms.filter(|ms| *ms >= 0) {
            let expired = |seg: &Segment| seg.largest_timestamp_for_retention().is_some_and(|ts| now_ms.saturating_sub(ts) > retention_ms);
            if self.closed.values().all(expired) && self.active.size() > 0 && expired(&self.active) {
                self.roll(self.log_end_offset)?;
            }
            while self.closed.first_key_value().is_some_and(|(_, s)| expired(s)) {
                self.delete_oldest_segment()?;
                deleted += 1;
            }
        }
        if let Some(retention_bytes) = self.config.retention_bytes {
            let mut total = self.size_bytes();
            while let Some((_, seg)) = self.closed.first_key_value() {
                let remaining = total - seg.size();
                if remaining < retention_bytes {
                    break;
                }
                total = remaining;
                self.delete_oldest_segment()?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            checkpoint::write_log_start_offset(&self.dir, self.log_start_offset)?;
        }
        Ok(deleted)
    }

    /// Takes effect for future appends and retention runs.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Sum of the segments' `.log` sizes.
    pub fn size_bytes(&self) -> u64 {
        self.closed.values().map(Segment::size).sum::<u64>() + self.active.size()
    }

    /// Flushes, trims the active indexes, writes a producer snapshot and the
    /// clean-shutdown marker.
    /// A failed log is left as it is, without the marker, so the next open
    /// recovers it from what the disk really holds.
    pub fn close(mut self) -> StorageResult<()> {
        self.health.check()?;
        self.active.freeze()?;
        self.write_snapshot()?;
        checkpoint::write_log_start_offset(&self.dir, self.log_start_offset)?;
        checkpoint::write_clean_shutdown_marker(&self.dir)?;
        Ok(())
    }

    /// Removes the whole directory.
    pub fn delete(self) -> StorageResult<()> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
