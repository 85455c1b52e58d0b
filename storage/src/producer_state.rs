//! Idempotent-producer state (a simplified Kafka `ProducerStateManager`).
//!
//! Per producer id: the current epoch and the metadata of its last
//! [`MAX_CACHED_BATCHES`] batches. Appends are checked against it before anything is
//! written; recovery rebuilds it from a snapshot plus the batch headers after it.
use std::collections::{HashMap, VecDeque};

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

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    pub(crate) batches: VecDeque<BatchMeta>,
}

impl ProducerEntry {
    fn new(epoch: i16) -> ProducerEntry {
        ProducerEntry { epoch, batches: VecDeque::new() }
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

/// Outcome of checking one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Append,
    /// A retry of a batch already in the log.
    Duplicate(BatchMeta),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerState {
    pub(crate) producers: HashMap<i64, ProducerEntry>,
}

impl ProducerState {
    /// Starts checking one append call; nothing changes until [`ProducerState::commit`].
    pub(crate) fn begin(&self) -> PendingAppend<'_> {
        PendingAppend { state: self, changed: HashMap::new() }
    }

    pub(crate) fn commit(&mut self, changes: HashMap<i64, ProducerEntry>) {
        self.producers.extend(changes);
    }

    /// Applies a batch read back from the log, without checks (recovery).
    pub(crate) fn replay(&mut self, h: &BatchHeader) {
        if !h.has_producer_id() {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_insert_with(|| ProducerEntry::new(h.producer_epoch));
        entry.set_epoch(h.producer_epoch);
        if !h.is_control() {
            entry.remember(BatchMeta::of(h));
        }
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
    changed: HashMap<i64, ProducerEntry>,
}

impl PendingAppend<'_> {
    /// Checks `h` (with its assigned offsets) against the state so far and records it.
    pub(crate) fn check(&mut self, h: &BatchHeader) -> StorageResult<Verdict> {
        if !h.has_producer_id() {
            return Ok(Verdict::Append);
        }
        let pid = h.producer_id;
        let committed = self.state.producers.get(&pid);
        // Duplicates are looked up among batches already in the log only (as Kafka
        // does): a batch repeated within one call is out of order, not a retry.
        if let Some(e) = committed.filter(|e| e.epoch == h.producer_epoch && !h.is_control()) {
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
                let mut e = e.clone();
                let last_offset = e.batches.back().map_or(-1, |b| b.last_offset);
                if h.is_control() {
                    // Transaction markers move the epoch but carry no sequence.
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
                e.set_epoch(h.producer_epoch);
                e
            }
        };
        if !h.is_control() {
            entry.remember(BatchMeta::of(h));
        }
        self.changed.insert(pid, entry);
        Ok(Verdict::Append)
    }

    pub(crate) fn into_changes(self) -> HashMap<i64, ProducerEntry> {
        self.changed
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
        let mut p = state.begin();
        let v = p.check(h)?;
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

    #[test]
    fn pending_is_all_or_nothing() {
        let s = ProducerState::default();
        let mut p = s.begin();
        p.check(&header(0, 1, 3, 0, 0)).expect("ok");
        assert!(p.check(&header(1, 1, 3, 0, 5)).is_err(), "evolving state is used");
        drop(p);
        assert!(s.producers.is_empty());
        // The same batch twice in one call is not a retry of itself.
        let mut p = s.begin();
        p.check(&header(0, 1, 3, 0, 0)).expect("ok");
        assert!(matches!(p.check(&header(1, 1, 3, 0, 0)), Err(StorageError::OutOfOrderSequence { expected: 1, got: 0, .. })));
    }
}
