//! Idempotent and transactional producer state (a simplified Kafka
//! `ProducerStateManager` and `ProducerAppendInfo`).
//!
//! Per producer id: the current epoch, the metadata of its last
//! [`MAX_CACHED_BATCHES`] batches, the coordinator epoch of its last transaction
//! marker and the first offset of its ongoing transaction, if any. Across
//! producers: the ongoing transactions by first offset, whose earliest is the
//! log's first unstable offset. Appends are checked against it before anything is
//! written; recovery rebuilds it from a snapshot plus the batches after it, and a
//! follower replays what its leader accepted.
use std::collections::{BTreeMap, HashMap, VecDeque};

use karst_batch::records::EndTxnMarker;
use karst_batch::BatchHeader;

use crate::{StorageError, StorageResult};

/// Batches remembered per producer for duplicate detection (Kafka's 5 in-flight).
pub(crate) const MAX_CACHED_BATCHES: usize = 5;

/// What the log remembers of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
}

impl BatchMeta {
    fn of(h: &BatchHeader) -> BatchMeta {
        BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
        }
    }
}

/// Kafka's `RecordBatch.NO_PARTITION_LEADER_EPOCH`, the coordinator epoch of a
/// producer that has written no marker yet.
pub(crate) const NO_COORDINATOR_EPOCH: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    pub(crate) batches: VecDeque<BatchMeta>,
    /// The coordinator epoch of the producer's last transaction marker.
    pub(crate) coordinator_epoch: i32,
    /// The first offset of the producer's ongoing transaction.
    pub(crate) current_txn_first_offset: Option<i64>,
}

impl Default for ProducerEntry {
    fn default() -> ProducerEntry {
        ProducerEntry::new(-1)
    }
}

/// A transaction ended by a marker (Kafka's `CompletedTxn`); only transactions
/// with data are completed, so an empty one changes neither the last stable
/// offset nor the aborted transaction index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
    /// The offset of the marker.
    pub(crate) last_offset: i64,
    pub(crate) aborted: bool,
}

impl ProducerEntry {
    pub(crate) fn new(epoch: i16) -> ProducerEntry {
        ProducerEntry { epoch, batches: VecDeque::new(), coordinator_epoch: NO_COORDINATOR_EPOCH, current_txn_first_offset: None }
    }

    /// Records a batch already checked (or replayed): a data batch is remembered and
    /// may start a transaction; a marker ends the ongoing one.
    fn apply(&mut self, pid: i64, h: &BatchHeader, marker: Option<EndTxnMarker>) -> Option<CompletedTxn> {
        self.set_epoch(h.producer_epoch);
        if h.is_control() {
            // A control batch that is not a readable marker (emptied by the cleaner)
            // changes nothing but the epoch.
            let m = marker?;
            self.coordinator_epoch = m.coordinator_epoch;
            let first_offset = self.current_txn_first_offset.take()?;
            return Some(CompletedTxn { producer_id: pid, first_offset, last_offset: h.base_offset, aborted: !m.commit });
        }
        self.remember(BatchMeta::of(h));
        if h.is_transactional() && self.current_txn_first_offset.is_none() {
            self.current_txn_first_offset = Some(h.base_offset);
        }
        None
    }

    fn set_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }

    fn remember(&mut self, meta: BatchMeta) {
        while self.batches.len() >= MAX_CACHED_BATCHES {
            self.batches.pop_front();
        }
        self.batches.push_back(meta);
    }
}

/// The sequence number after `seq`, wrapping at `i32::MAX` as Kafka does.
fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// Who wrote the batches of an append (Kafka's `AppendOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A producer: sequences are checked and retries found.
    Client,
    /// A coordinator of this broker: no sequences, only the epoch is checked.
    Coordinator,
}

/// Outcome of checking one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Append,
    /// A retry of a batch already in the log.
    Duplicate(BatchMeta),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Ongoing transactions: first offset → producer id (derived from `producers`).
    ongoing: BTreeMap<i64, i64>,
}

/// What one append call changes, from [`PendingAppend::into_changes`].
#[derive(Debug, Default)]
pub(crate) struct Changes {
    entries: HashMap<i64, ProducerEntry>,
    completed: Vec<CompletedTxn>,
}

/// A completed transaction with the last stable offset right after it (what an
/// aborted transaction index entry records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completion {
    pub(crate) txn: CompletedTxn,
    pub(crate) last_stable_offset: i64,
}

impl ProducerState {
    /// The state of these producers.
    pub(crate) fn from_entries(entries: impl IntoIterator<Item = (i64, ProducerEntry)>) -> ProducerState {
        let mut s = ProducerState::default();
        for (id, e) in entries {
            s.insert(id, e);
        }
        s
    }

    pub(crate) fn producers(&self) -> &HashMap<i64, ProducerEntry> {
        &self.producers
    }

    fn insert(&mut self, id: i64, e: ProducerEntry) {
        if let Some(first) = self.producers.get(&id).and_then(|old| old.current_txn_first_offset) {
            self.ongoing.remove(&first);
        }
        if let Some(first) = e.current_txn_first_offset {
            self.ongoing.insert(first, id);
        }
        self.producers.insert(id, e);
    }

    /// Starts checking one append call; nothing changes until [`ProducerState::commit`].
    pub(crate) fn begin(&self, origin: Origin) -> PendingAppend<'_> {
        PendingAppend { state: self, origin, changed: HashMap::new(), completed: Vec::new() }
    }

    /// Applies the changes of a written append; returns its completed transactions
    /// in log order, each with the last stable offset after it.
    pub(crate) fn commit(&mut self, changes: Changes) -> Vec<Completion> {
        for (id, e) in changes.entries {
            self.insert(id, e);
        }
        changes.completed.into_iter().map(|txn| Completion { txn, last_stable_offset: self.stable_after(&txn) }).collect()
    }

    /// Kafka's `lastStableOffset(completedTxn)`: the first offset of the earliest
    /// transaction of another producer still ongoing, else just past the marker.
    fn stable_after(&self, txn: &CompletedTxn) -> i64 {
        // Bounded by the marker: a transaction begun after it in the same append call
        // does not count (recovery, replaying one batch at a time, agrees).
        let next = txn.last_offset.saturating_add(1);
        self.ongoing.iter().find(|(_, pid)| **pid != txn.producer_id).map_or(next, |(first, _)| (*first).min(next))
    }

    /// Applies a batch read back from the log or copied from the leader, without
    /// checks (recovery, followers); `marker` is a control batch's marker.
    pub(crate) fn replay(&mut self, h: &BatchHeader, marker: Option<EndTxnMarker>) -> Option<Completion> {
        if !h.has_producer_id() {
            return None;
        }
        let mut entry = self.producers.get(&h.producer_id).cloned().unwrap_or_else(|| ProducerEntry::new(h.producer_epoch));
        let completed = entry.apply(h.producer_id, h, marker);
        self.insert(h.producer_id, entry);
        completed.map(|txn| Completion { txn, last_stable_offset: self.stable_after(&txn) })
    }

    /// The first offset of the earliest ongoing transaction (Kafka's first unstable offset).
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Ongoing transactions as (producer id, first offset), by first offset.
    pub(crate) fn ongoing(&self) -> Vec<(i64, i64)> {
        self.ongoing.iter().map(|(first, pid)| (*pid, *first)).collect()
    }
}

/// What the log cleaner must keep of a producer (Kafka's `LastRecord`): the batch
/// holding its last data, or, when its current epoch has none, its last marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastRecord {
    pub(crate) last_data_offset: Option<i64>,
    pub(crate) epoch: i16,
}

impl ProducerState {
    /// Every producer's [`LastRecord`].
    pub(crate) fn last_records(&self) -> HashMap<i64, LastRecord> {
        self.producers
            .iter()
            .map(|(id, e)| (*id, LastRecord { last_data_offset: e.batches.back().map(|b| b.last_offset), epoch: e.epoch }))
            .collect()
    }
}

/// One idempotent producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    /// -1 while the producer has no batch here in its current epoch.
    pub last_sequence: i32,
    /// The max timestamp of its last batch; -1 as `last_sequence`.
    pub last_timestamp: i64,
    /// The coordinator epoch of its last transaction marker (-1: none).
    pub coordinator_epoch: i32,
    /// The first offset of its ongoing transaction (-1: none).
    pub current_txn_start_offset: i64,
}

impl ProducerState {
    /// Every producer the log remembers, by producer id.
    pub(crate) fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, e)| ActiveProducer {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.batches.back().map_or(-1, |b| b.max_timestamp),
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.current_txn_first_offset.unwrap_or(-1),
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }
}

/// The evolving state of the producers touched by one append call.
#[derive(Debug)]
pub(crate) struct PendingAppend<'a> {
    state: &'a ProducerState,
    origin: Origin,
    changed: HashMap<i64, ProducerEntry>,
    completed: Vec<CompletedTxn>,
}

impl PendingAppend<'_> {
    /// Checks `h` (with its assigned offsets) against the state so far and records it.
    /// A control batch must come with its `marker`, read by the caller.
    pub(crate) fn check(&mut self, h: &BatchHeader, marker: Option<EndTxnMarker>) -> StorageResult<Verdict> {
        if !h.has_producer_id() {
            return Ok(Verdict::Append);
        }
        let pid = h.producer_id;
        let committed = self.state.producers.get(&pid);
        // Duplicates are looked up among batches already in the log only (as Kafka
        // does): a batch repeated within one call is out of order, not a retry.
        let client = self.origin == Origin::Client;
        if let Some(e) = committed.filter(|e| client && e.epoch == h.producer_epoch && !h.is_control()) {
            let last_seq = h.last_sequence();
            if let Some(dup) = e.batches.iter().find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq) {
                return Ok(Verdict::Duplicate(*dup));
            }
        }
        let current = self.changed.get(&pid).or(committed);
        let mut entry = match current {
            // No state at all (new producer, or its state expired): accept any sequence.
            None => ProducerEntry::new(h.producer_epoch),
            Some(e) => {
                if h.producer_epoch < e.epoch {
                    return Err(StorageError::InvalidProducerEpoch { producer_id: pid, current: e.epoch, got: h.producer_epoch });
                }
                let e = e.clone();
                let last_offset = e.batches.back().map_or(-1, |b| b.last_offset);
                if h.is_control() {
                    // Transaction markers move the epoch but carry no sequence; a
                    // coordinator older than the last one to write a marker is fenced.
                    if let Some(m) = marker.filter(|m| m.coordinator_epoch < e.coordinator_epoch) {
                        return Err(StorageError::TransactionCoordinatorFenced {
                            producer_id: pid,
                            current: e.coordinator_epoch,
                            got: m.coordinator_epoch,
                        });
                    }
                } else if !client {
                    // A coordinator's batch has no sequence to check.
                } else if h.producer_epoch > e.epoch {
                    if h.base_sequence != 0 {
                        return Err(StorageError::OutOfOrderSequence { producer_id: pid, expected: 0, got: h.base_sequence, last_offset });
                    }
                } else {
                    let expected = e.batches.back().map_or(0, |b| next_sequence(b.last_seq));
                    if h.base_sequence != expected {
                        return Err(StorageError::OutOfOrderSequence { producer_id: pid, expected, got: h.base_sequence, last_offset });
                    }
                }
                if !h.is_control() && !h.is_transactional() {
                    if let Some(first) = e.current_txn_first_offset {
                        return Err(StorageError::InvalidTxnState { producer_id: pid, txn_first_offset: first });
                    }
                }
                e
            }
        };
        if h.is_control() && marker.is_none() {
            return Err(StorageError::Batch(karst_batch::BatchError::Invalid("control batch is not a transaction marker")));
        }
        if let Some(done) = entry.apply(pid, h, marker) {
            self.completed.push(done);
        }
        self.changed.insert(pid, entry);
        Ok(Verdict::Append)
    }

    pub(crate) fn into_changes(self) -> Changes {
        Changes { entries: self.changed, completed: self.completed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use karst_batch::build_batch_with_producer;

    fn header(offset: i64, count: i32, pid: i64, epoch: i16, seq: i32) -> BatchHeader {
        let b = build_batch_with_producer(offset, count, 0, pid, epoch, seq, b"");
        BatchHeader::parse(&b).expect("valid")
    }

    fn apply(state: &mut ProducerState, h: &BatchHeader) -> StorageResult<Verdict> {
        let mut p = state.begin(Origin::Client);
        let v = p.check(h, None)?;
        let changes = p.into_changes();
        state.commit(changes);
        Ok(v)
    }

    #[test]
    fn active_producers_report_their_last_batch() {
        let mut s = ProducerState::default();
        apply(&mut s, &header(0, 2, 9, 1, 0)).expect("ok");
        apply(&mut s, &header(2, 3, 9, 1, 2)).expect("ok");
        apply(&mut s, &header(5, 1, 4, 0, 0)).expect("ok");
        let active = s.active();
        assert_eq!(active.iter().map(|p| (p.producer_id, p.epoch, p.last_sequence)).collect::<Vec<_>>(), [(4, 0, 0), (9, 1, 4)]);
        // A producer known only from a marker has no batch to report.
        s.producers.insert(11, ProducerEntry::new(3));
        assert_eq!(s.active().last().map(|p| (p.last_sequence, p.last_timestamp)), Some((-1, -1)));
    }

    #[test]
    fn sequence_rules() {
        let mut s = ProducerState::default();
        // Unknown producer: any sequence.
        assert_eq!(apply(&mut s, &header(0, 2, 7, 0, 10)).expect("ok"), Verdict::Append);
        assert_eq!(apply(&mut s, &header(2, 3, 7, 0, 12)).expect("ok"), Verdict::Append);
        // Duplicate of the first batch.
        match apply(&mut s, &header(5, 2, 7, 0, 10)).expect("ok") {
            Verdict::Duplicate(m) => assert_eq!((m.base_offset, m.last_offset), (0, 1)),
            v => panic!("{v:?}"),
        }
        // Gap.
        assert!(matches!(apply(&mut s, &header(5, 1, 7, 0, 16)), Err(StorageError::OutOfOrderSequence { expected: 15, got: 16, .. })));
        // Old epoch fenced.
        assert!(matches!(apply(&mut s, &header(5, 1, 7, -1, 15)), Err(StorageError::InvalidProducerEpoch { current: 0, .. })));
        // New epoch must start at 0.
        assert!(matches!(apply(&mut s, &header(5, 1, 7, 1, 15)), Err(StorageError::OutOfOrderSequence { expected: 0, got: 15, .. })));
        assert_eq!(apply(&mut s, &header(5, 1, 7, 1, 0)).expect("ok"), Verdict::Append);
        assert_eq!(s.producers[&7].batches.len(), 1);
        // Non-idempotent batches are not checked.
        assert_eq!(apply(&mut s, &header(6, 1, -1, -1, -1)).expect("ok"), Verdict::Append);
    }

    #[test]
    fn wraps_and_keeps_five() {
        let mut s = ProducerState::default();
        apply(&mut s, &header(0, 2, 1, 0, i32::MAX - 1)).expect("ok");
        assert_eq!(apply(&mut s, &header(2, 1, 1, 0, 0)).expect("ok"), Verdict::Append);
        for i in 1..10 {
            apply(&mut s, &header(2 + i, 1, 1, 0, i as i32)).expect("ok");
        }
        assert_eq!(s.producers[&1].batches.len(), MAX_CACHED_BATCHES);
        // Only the last five are remembered: an older retry is out of order.
        assert!(matches!(apply(&mut s, &header(20, 1, 1, 0, 3)), Err(StorageError::OutOfOrderSequence { expected: 10, got: 3, .. })));
        assert!(matches!(apply(&mut s, &header(20, 1, 1, 0, 9)).expect("ok"), Verdict::Duplicate(_)));
    }

    fn txn_header(offset: i64, pid: i64, epoch: i16, seq: i32) -> BatchHeader {
        let mut h = header(offset, 1, pid, epoch, seq);
        h.attributes |= karst_batch::TRANSACTIONAL_BIT;
        h
    }

    fn marker_header(offset: i64, pid: i64, epoch: i16) -> BatchHeader {
        let mut h = header(offset, 1, pid, epoch, -1);
        h.attributes |= karst_batch::TRANSACTIONAL_BIT | karst_batch::CONTROL_BIT;
        h
    }

    fn apply_marker(state: &mut ProducerState, h: &BatchHeader, commit: bool, coordinator_epoch: i32) -> StorageResult<Vec<Completion>> {
        let mut p = state.begin(Origin::Client);
        p.check(h, Some(EndTxnMarker { commit, coordinator_epoch }))?;
        let changes = p.into_changes();
        Ok(state.commit(changes))
    }

    #[test]
    fn transactions_begin_with_data_and_end_with_a_marker() {
        let mut s = ProducerState::default();
        apply(&mut s, &txn_header(0, 1, 0, 0)).expect("ok");
        apply(&mut s, &txn_header(1, 2, 0, 0)).expect("ok");
        apply(&mut s, &txn_header(2, 1, 0, 1)).expect("ok");
        assert_eq!((s.first_unstable_offset(), s.ongoing()), (Some(0), vec![(1, 0), (2, 1)]));
        // Producer 1 aborts while 2 is open: the entry's LSO is 2's first offset.
        let done = apply_marker(&mut s, &marker_header(3, 1, 0), false, 4).expect("ok");
        let txn = CompletedTxn { producer_id: 1, first_offset: 0, last_offset: 3, aborted: true };
        assert_eq!(done, [Completion { txn, last_stable_offset: 1 }]);
        assert_eq!(s.first_unstable_offset(), Some(1));
        // An empty transaction completes nothing; an older coordinator is fenced.
        assert_eq!(apply_marker(&mut s, &marker_header(4, 1, 0), true, 4).expect("ok"), []);
        assert!(matches!(apply_marker(&mut s, &marker_header(5, 1, 0), true, 3), Err(StorageError::TransactionCoordinatorFenced { .. })));
        // A marker needs its marker; data outside the transaction is refused.
        assert!(s.begin(Origin::Client).check(&marker_header(5, 2, 0), None).is_err());
        assert!(matches!(
            apply(&mut s, &header(5, 1, 2, 0, 1)),
            Err(StorageError::InvalidTxnState { producer_id: 2, txn_first_offset: 1 })
        ));
        let done = apply_marker(&mut s, &marker_header(5, 2, 0), true, 0).expect("ok");
        assert_eq!(done.iter().map(|c| (c.txn.aborted, c.last_stable_offset)).collect::<Vec<_>>(), [(false, 6)]);
        assert_eq!(s.first_unstable_offset(), None);

        // Replaying the same batches (recovery, a follower) gives the same state.
        let mut r = ProducerState::default();
        let marker = |commit| Some(EndTxnMarker { commit, coordinator_epoch: 4 });
        r.replay(&txn_header(0, 1, 0, 0), None);
        r.replay(&txn_header(1, 2, 0, 0), None);
        r.replay(&txn_header(2, 1, 0, 1), None);
        assert_eq!(r.replay(&marker_header(3, 1, 0), marker(false)), Some(Completion { txn, last_stable_offset: 1 }));
        r.replay(&marker_header(4, 1, 0), marker(true));
        r.replay(&marker_header(5, 2, 0), Some(EndTxnMarker { commit: true, coordinator_epoch: 0 }));
        assert_eq!(r, s);
    }

    #[test]
    fn pending_is_all_or_nothing() {
        let s = ProducerState::default();
        let mut p = s.begin(Origin::Client);
        p.check(&header(0, 1, 3, 0, 0), None).expect("ok");
        assert!(p.check(&header(1, 1, 3, 0, 5), None).is_err(), "evolving state is used");
        drop(p);
        assert!(s.producers.is_empty());
        // The same batch twice in one call is not a retry of itself.
        let mut p = s.begin(Origin::Client);
        p.check(&header(0, 1, 3, 0, 0), None).expect("ok");
        assert!(matches!(p.check(&header(1, 1, 3, 0, 0), None), Err(StorageError::OutOfOrderSequence { expected: 1, got: 0, .. })));
    }
}
