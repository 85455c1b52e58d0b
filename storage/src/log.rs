//! The partition log: a directory of segments, the last of which is active.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::ops::Bound::{Excluded, Unbounded};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use karst_batch::records::{end_txn_marker_batch, EndTxnMarker};
use karst_batch::{log_append_time_header, BatchError, BatchHeader};

use crate::checkpoint;
use crate::faults::is_no_space;
use crate::files::{fsync_dir, offset_path, remove_if_exists, replace_with_prefix, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT};
use crate::health::{FlushTarget, Health};
use crate::leader_epochs::LeaderEpochs;
use crate::producer_state::{Completion, Origin, ProducerState, Verdict};
use crate::recovery;
use crate::segment::Segment;
use crate::snapshot;
use crate::swap;
use crate::txn_index::{self, AbortedTxn, TxnIndex};
use crate::{LogConfig, StorageError, StorageResult, TimestampType};

/// Decompressed bytes a control batch may take (Kafka writes them uncompressed,
/// one record of a few bytes).
const MAX_CONTROL_BATCH_BYTES: usize = 1 << 16;

/// The marker of a control batch (`None` for a data batch, or a control batch
/// whose marker cannot be read).
fn marker_of(h: &BatchHeader, batch: &[u8]) -> Option<EndTxnMarker> {
    h.is_control().then(|| EndTxnMarker::of_batch(batch, MAX_CONTROL_BATCH_BYTES).ok()).flatten()
}

/// The last offset of `bytes` (whole batches) when none of its batches holds a record
/// or is a control batch, so that a consumer would only skip them; `None` otherwise,
/// and for unreadable bytes, so that a read never hides them.
fn last_offset_without_records(bytes: &[u8]) -> Option<i64> {
    let mut pos = 0;
    let mut last = None;
    while let Some(rest) = bytes.get(pos..).filter(|b| !b.is_empty()) {
        let h = BatchHeader::parse(rest).ok()?;
        if h.record_count > 0 || h.is_control() {
            return None;
        }
        last = Some(h.last_offset());
        pos += h.total_len();
    }
    last
}

/// Which records a read may return (a Fetch request's isolation level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Up to the high watermark.
    ReadUncommitted,
    /// Up to the last stable offset, with the aborted transactions of the range.
    ReadCommitted,
}

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
    /// The aborted transactions of each segment (its `.txnindex`).
    pub(crate) txn_index: TxnIndex,
    /// Completed transactions whose marker may still be at or above the high
    /// watermark, first offset → marker offset (Kafka's `unreplicatedTxns`): until
    /// the marker is replicated a failover can undo it, so the transaction stays
    /// unstable and read_committed consumers do not see past its first offset.
    unreplicated_txns: BTreeMap<i64, i64>,
}

/// A read up to the high watermark or the last stable offset.
#[derive(Debug, Clone)]
pub struct IsolatedRead {
    pub slice: ReadSlice,
    /// With [`Isolation::ReadCommitted`]: the aborted transactions that overlap the
    /// offsets read, by first offset, for the consumer to drop their records.
    /// `None` with [`Isolation::ReadUncommitted`].
    pub aborted: Option<Vec<AbortedTxn>>,
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
            txn_index: TxnIndex::default(),
            unreplicated_txns: BTreeMap::new(),
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

    /// Loads the newest valid snapshot at or below the log end and the segments'
    /// aborted transaction indexes, and replays the batches after the snapshot. The
    /// index entries of the markers replayed are rebuilt; when any segment's index
    /// is missing or fails its checks, every index is rebuilt from the first segment
    /// (with a snapshot taken at its base, if there is one: it knows the producers of
    /// segments retention deleted). Index files that differ from the result are
    /// rewritten.
    fn load_producer_state(&mut self) -> StorageResult<()> {
        let stale: Vec<i64> = self.snapshots.range((Excluded(self.log_end_offset), Unbounded)).copied().collect();
        for offset in stale {
            tracing::warn!(dir = %self.dir.display(), offset, "removing producer snapshot beyond the log end");
            snapshot::remove(&self.dir, offset)?;
            self.snapshots.remove(&offset);
        }
        let bases: Vec<i64> = self.segments_from(i64::MIN).map(Segment::base_offset).collect();
        let mut on_disk: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        let mut loaded: BTreeMap<i64, Vec<AbortedTxn>> = BTreeMap::new();
        let mut trusted = true;
        // A torn last entry of the active index: an append cut by a crash, whose
        // marker the replay must meet again, so no snapshot inside the segment is used.
        let mut torn = false;
        for (i, &base) in bases.iter().enumerate() {
            let end = bases.get(i + 1).copied();
            let Some(bytes) = txn_index::read(&self.dir, base)? else {
                tracing::warn!(dir = %self.dir.display(), base, "aborted transaction index missing");
                trusted = false;
                continue;
            };
            torn |= end.is_none() && bytes.len() % txn_index::ENTRY_SIZE != 0;
            match txn_index::parse(&bytes, base, end, end.is_none()) {
                Ok(entries) => {
                    loaded.insert(base, entries);
                }
                Err(reason) => {
                    tracing::warn!(dir = %self.dir.display(), base, %reason, "aborted transaction index unusable");
                    trusted = false;
                }
            }
            on_disk.insert(base, bytes);
        }
        let first_base = self.first_segment_base();
        let mut state = ProducerState::default();
        let mut from = first_base;
        if !trusted {
            tracing::warn!(dir = %self.dir.display(), "rebuilding aborted transaction indexes from the whole log");
            loaded.clear();
        }
        let active_base = self.active.base_offset();
        let usable = |offset: i64| match trusted {
            true => !torn || offset <= active_base,
            false => offset <= first_base,
        };
        while let Some(&offset) = self.snapshots.iter().rev().find(|o| usable(**o)) {
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
        // What the replay goes over is rebuilt.
        let mut index = TxnIndex::default();
        for &base in &bases {
            let mut entries = loaded.remove(&base).unwrap_or_default();
            entries.retain(|t| t.last_offset < from);
            index.segments.insert(base, entries);
        }
        let mut unreplicated = BTreeMap::new();
        for seg in self.segments_from(from) {
            let entries = index.segments.entry(seg.base_offset()).or_default();
            seg.for_each_batch_with_bytes(from, |h, batch| {
                if let Some(done) = state.replay(h, marker_of(h, batch)) {
                    unreplicated.insert(done.txn.first_offset, done.txn.last_offset);
                    if done.txn.aborted {
                        entries.push(aborted_entry(&done));
                    }
                }
            })?;
        }
        self.unreplicated_txns = unreplicated;
        for (base, entries) in &index.segments {
            let bytes: Vec<u8> = entries.iter().flat_map(AbortedTxn::encode).collect();
            if on_disk.get(base) != Some(&bytes) {
                txn_index::write(&self.dir, *base, entries)?;
            }
        }
        self.producers = state;
        self.txn_index = index;
        Ok(())
    }

    /// Adds the aborted transactions among `done` (completed by batches just written
    /// to the active segment) to its index. A failed write fails the log: the
    /// batches are in it, and the next open rebuilds the entries.
    fn index_aborts(&mut self, done: &[Completion]) -> StorageResult<()> {
        let base = self.active.base_offset();
        for c in done {
            self.unreplicated_txns.insert(c.txn.first_offset, c.txn.last_offset);
        }
        for c in done.iter().filter(|c| c.txn.aborted) {
            let entry = aborted_entry(c);
            self.txn_index.segments.entry(base).or_default().push(entry);
            if let Err(e) = txn_index::append(&self.dir, base, &entry) {
                self.health.fail(format_args!("aborted transaction index write failed: {e}"));
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Syncs the active segment's aborted transaction index, when it has entries.
    fn sync_txn_index(&self) -> std::io::Result<()> {
        let base = self.active.base_offset();
        match self.txn_index.segments.get(&base) {
            Some(entries) if !entries.is_empty() => txn_index::sync(&self.dir, base),
            _ => Ok(()),
        }
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
        self.append_from(batches, leader_epoch, now_ms, Origin::Client)
    }

    /// Appends batches a coordinator of this broker wrote (transactional offset
    /// commits in `__consumer_offsets`, Kafka's `AppendOrigin.COORDINATOR`): they carry
    /// a producer id and epoch but no sequence, so only the epoch is checked.
    pub fn append_as_coordinator(&mut self, batches: &[u8], leader_epoch: i32, now_ms: i64) -> StorageResult<AppendInfo> {
        self.append_from(batches, leader_epoch, now_ms, Origin::Coordinator)
    }

    fn append_from(&mut self, batches: &[u8], leader_epoch: i32, now_ms: i64, origin: Origin) -> StorageResult<AppendInfo> {
        self.health.check()?;
        let (headers, next_offset, max_timestamp) = self.headers(batches, Some(leader_epoch), now_ms)?;
        let mut pending = self.producers.begin(origin);
        for (pos, h) in &headers {
            let marker = match h.is_control() {
                true => Some(EndTxnMarker::of_batch(&batches[*pos..], MAX_CONTROL_BATCH_BYTES)?),
                false => None,
            };
            if let Verdict::Duplicate(original) = pending.check(h, marker)? {
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
        let done = self.producers.commit(changes);
        self.note_epochs(&headers);
        self.index_aborts(&done)?;
        Ok(info)
    }

    /// Appends a transaction marker for `producer_id` (a WriteTxnMarkers request from
    /// the transaction coordinator): a control batch as Kafka's
    /// `MemoryRecords.withEndTransactionMarker`. Refused with `InvalidProducerEpoch`
    /// for an epoch older than the producer's and `TransactionCoordinatorFenced` for
    /// a coordinator epoch older than that of the producer's last marker. An ABORT
    /// of a transaction with data adds it to the aborted transaction index; either
    /// marker ends the producer's ongoing transaction and may move the last stable
    /// offset.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        leader_epoch: i32,
        now_ms: i64,
    ) -> StorageResult<AppendInfo> {
        let marker = EndTxnMarker { commit, coordinator_epoch };
        let batch = end_txn_marker_batch(self.log_end_offset, now_ms, leader_epoch, producer_id, producer_epoch, marker);
        self.append(&batch, leader_epoch, now_ms)
    }

    /// Appends batches copied from the partition's leader, keeping their offsets and
    /// leader epochs: the first must start at or after the log end and each after
    /// the previous one (a compacted leader log has gaps where the cleaner removed
    /// whole batches, as Kafka's follower append allows). Their CRCs are checked, as
    /// they crossed the network; producer state follows what the leader accepted,
    /// without re-validating sequences.
    pub fn append_replicated(&mut self, batches: &[u8], now_ms: i64) -> StorageResult<AppendInfo> {
        self.health.check()?;
        let (headers, next_offset, max_timestamp) = self.headers(batches, None, now_ms)?;
        for (pos, _) in &headers {
            BatchHeader::parse_checked(&batches[*pos..])?;
        }
        let info = self.write(batches, &headers, next_offset, max_timestamp, now_ms)?;
        let mut done = Vec::new();
        for (pos, h) in &headers {
            done.extend(self.producers.replay(h, marker_of(h, &batches[*pos..*pos + h.total_len()])));
        }
        self.note_epochs(&headers);
        self.index_aborts(&done)?;
        Ok(info)
    }

    /// Parses the batches of an append. With `assign`, offsets from the log end and
    /// that leader epoch are given to them, and on a LogAppendTime log the time
    /// `now_ms` (every batch, control batches too, as Kafka's log validator stamps
    /// them); without, their own offsets must be at or past the log end and
    /// increase, and they keep their bytes. Returns the headers by position, the
    /// next log end and the max timestamp.
    #[allow(clippy::type_complexity)]
    fn headers(&self, batches: &[u8], assign: Option<i32>, now_ms: i64) -> StorageResult<(Vec<(usize, BatchHeader)>, i64, i64)> {
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
                    if self.config.timestamp_type == TimestampType::LogAppendTime {
                        h = log_append_time_header(&batches[pos..], now_ms)?;
                    }
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
            for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT] {
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
            for ext in [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT, TXN_INDEX_EXT] {
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
        // The index is durable before a snapshot past its entries can be written.
        self.sync_txn_index()?;
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
    /// if larger. Reads at most one segment; the next read continues. Every batch is
    /// returned, those without records too: a follower copies them all.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64, min_one: bool) -> StorageResult<ReadSlice> {
        self.read_segments(offset, max_bytes, max_offset, min_one, false)
    }

    /// [`Log::read`], which with `for_consumer` passes over a segment whose batches
    /// from `offset` on carry no record (no control batch either) to the next one.
    ///
    /// A clean leaves a group of segments whose records all went as the group's last
    /// batch, empty (the swap's recovery needs it, see `cleaner`), so a compacted log
    /// can hold many segments of one empty batch. An answer made of such batches
    /// alone tells librdkafka that its fetch size cut the first batch: it doubles the
    /// size, never lowers it, and past 1 GiB fails the partition with
    /// MSG_SIZE_TOO_LARGE, so a consumer reading such a log fails after about ten of
    /// them. A consumer takes the next batch after a gap as after any compacted-away
    /// offsets. When no segment below `max_offset` has a record, the last slice read
    /// is returned, so the consumer still moves past them.
    fn read_segments(&self, offset: i64, max_bytes: usize, max_offset: i64, min_one: bool, for_consumer: bool) -> StorageResult<ReadSlice> {
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(StorageError::OffsetOutOfRange { offset, log_start: self.log_start_offset, log_end: self.log_end_offset });
        }
        let empty = ReadSlice { bytes: Bytes::new(), first_offset: offset };
        if offset == self.log_end_offset || offset >= max_offset {
            return Ok(empty);
        }
        let mut passed = None;
        for seg in self.segments_from(offset) {
            let Some(slice) = seg.read(offset, max_bytes, max_offset, min_one)? else { continue };
            if !for_consumer {
                return Ok(slice);
            }
            if slice.bytes.is_empty() {
                // Cut by `max_offset` or `max_bytes`: nothing further may be read.
                return Ok(passed.unwrap_or(slice));
            }
            let Some(last) = last_offset_without_records(&slice.bytes) else { return Ok(slice) };
            // Only past the end of the segment: batches after these in it (cut by
            // `max_bytes` or `max_offset`, or unreadable) come first.
            if !matches!(seg.read(last.saturating_add(1), 1, max_offset, false), Ok(None)) {
                return Ok(slice);
            }
            passed = Some(slice);
        }
        Ok(passed.unwrap_or(empty))
    }

    /// Reads as [`Log::read`] up to the high watermark or, for `ReadCommitted`, up to
    /// the last stable offset, with the aborted transactions overlapping the batches
    /// read (Kafka's `UnifiedLog.read` and `collectAbortedTransactions`).
    /// A consumer's read: segments holding only batches without records are passed
    /// over (see `read_segments`).
    pub fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        high_watermark: i64,
        isolation: Isolation,
        min_one: bool,
    ) -> StorageResult<IsolatedRead> {
        let max_offset = match isolation {
            Isolation::ReadUncommitted => high_watermark,
            Isolation::ReadCommitted => self.last_stable_offset(high_watermark),
        };
        let slice = self.read_segments(offset, max_bytes, max_offset, min_one, true)?;
        let aborted = match isolation {
            Isolation::ReadUncommitted => None,
            Isolation::ReadCommitted => {
                // The offset after the last batch read bounds the transactions that matter.
                let mut upper = None;
                let mut pos = 0;
                while let Some(h) = slice.bytes.get(pos..).filter(|b| !b.is_empty()).and_then(|b| BatchHeader::parse(b).ok()) {
                    upper = Some(h.last_offset().saturating_add(1));
                    pos += h.total_len();
                }
                Some(upper.map_or_else(Vec::new, |upper| self.aborted_transactions(offset, upper)))
            }
        };
        Ok(IsolatedRead { slice, aborted })
    }

    /// The aborted transactions that overlap `[from_offset, upper_bound)`, by first
    /// offset (what a read_committed Fetch response lists: producer id and first offset).
    pub fn aborted_transactions(&self, from_offset: i64, upper_bound: i64) -> Vec<AbortedTxn> {
        let mut out = self.txn_index.collect(from_offset, upper_bound);
        out.sort_by_key(|t| t.first_offset);
        out
    }

    /// The first offset of the earliest transaction still open in this log (Kafka's
    /// first unstable offset), at least the log start offset; `None` when none is.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers.first_unstable_offset().map(|first| first.max(self.log_start_offset))
    }

    /// The last stable offset: the first offset of the earliest transaction still
    /// open or whose marker is not yet below `high_watermark`, or the high watermark
    /// when that is lower or there is none. A read_committed consumer reads below it.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        let unreplicated = self.unreplicated_txns.iter().find(|(_, marker)| **marker >= high_watermark).map(|(first, _)| *first);
        let first = match (self.first_unstable_offset(), unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        first.map_or(high_watermark, |first| first.max(self.log_start_offset).min(high_watermark))
    }

    /// Forgets the completed transactions whose markers are below `high_watermark`:
    /// they are stable for good (Kafka's `onHighWatermarkUpdated`).
    pub fn note_high_watermark(&mut self, high_watermark: i64) {
        self.unreplicated_txns.retain(|_, marker| *marker >= high_watermark);
    }

    /// The open transactions as (producer id, first offset), by first offset.
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.producers.ongoing()
    }

    /// Whether producer `producer_id` has a transaction open here at `epoch`.
    pub fn in_transaction(&self, producer_id: i64, epoch: i16) -> bool {
        self.producers.producers().get(&producer_id).is_some_and(|e| e.epoch == epoch && e.current_txn_first_offset.is_some())
    }

    /// The epoch of producer `producer_id`'s transaction open here, if one is.
    pub fn open_transaction_epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.producers().get(&producer_id).filter(|e| e.current_txn_first_offset.is_some()).map(|e| e.epoch)
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
        let Some((base, seg)) = self.closed.pop_first() else {
            return Ok(());
        };
        seg.delete()?;
        self.txn_index.segments.remove(&base);
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
        self.sync_txn_index()?;
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

/// The index entry of an aborted transaction.
fn aborted_entry(c: &Completion) -> AbortedTxn {
    AbortedTxn {
        producer_id: c.txn.producer_id,
        first_offset: c.txn.first_offset,
        last_offset: c.txn.last_offset,
        last_stable_offset: c.last_stable_offset,
    }
}
