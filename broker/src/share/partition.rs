//! One share-partition (a share group's view of a topic partition), as Kafka's
//! `SharePartition`: the share-partition start offset (SPSO), the end of the
//! in-flight window (SPEO, exclusive here), and the state of every in-flight record.
//!
//! Pure state, no I/O: the handlers read the log and persist snapshots. Records are
//! tracked one offset at a time; the window is bounded by
//! `group.share.partition.max.record.locks`, so the map stays small.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

/// Acknowledgement types (ShareFetch/ShareAcknowledge `AcknowledgeTypes`).
pub(crate) const ACK_GAP: i8 = 0;
pub(crate) const ACK_ACCEPT: i8 = 1;
pub(crate) const ACK_RELEASE: i8 = 2;
pub(crate) const ACK_REJECT: i8 = 3;

/// INVALID_RECORD_STATE: an acknowledgement of a record this member has not acquired.
pub(crate) const INVALID_RECORD_STATE: i16 = 121;

/// A snapshot may describe at most this many offsets: a corrupt one must not make
/// the broker allocate without bound.
const MAX_SNAPSHOT_OFFSETS: i64 = 1 << 20;

/// Kafka's record states, with its wire values (as `__share_group_state` stores them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordState {
    Available = 0,
    Acquired = 1,
    Acknowledged = 2,
    Archived = 4,
}

impl RecordState {
    fn from_wire(v: i8) -> Option<RecordState> {
        match v {
            0 => Some(RecordState::Available),
            1 => Some(RecordState::Acquired),
            2 => Some(RecordState::Acknowledged),
            4 => Some(RecordState::Archived),
            _ => None,
        }
    }

    fn done(self) -> bool {
        matches!(self, RecordState::Acknowledged | RecordState::Archived)
    }
}

#[derive(Debug, Clone)]
struct InFlight {
    state: RecordState,
    delivery_count: i16,
    /// The member holding the acquisition lock, while Acquired.
    member: Option<Arc<str>>,
    /// When the acquisition lock expires (ms since the epoch), while Acquired.
    deadline: i64,
}

/// The limits a share-partition works under (broker configs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// `group.share.record.lock.duration.ms`
    pub(crate) lock_ms: i64,
    /// `group.share.delivery.count.limit`
    pub(crate) delivery_limit: i16,
    /// `group.share.partition.max.record.locks`
    pub(crate) max_in_flight: i64,
}

/// A record batch as the log holds it: base and last offset, and whether it is a
/// control batch (transaction marker), which is never delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogBatch {
    pub(crate) base: i64,
    pub(crate) last: i64,
    pub(crate) control: bool,
}

/// A run of acquired offsets with one delivery count (ShareFetch `AcquiredRecords`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acquired {
    pub(crate) first: i64,
    pub(crate) last: i64,
    pub(crate) delivery_count: i16,
}

/// One acknowledgement batch: an offset range and its type(s), one per offset or
/// one for the whole range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckBatch {
    pub(crate) first: i64,
    pub(crate) last: i64,
    pub(crate) types: Vec<i8>,
}

/// A share-partition's durable state: what survives a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) topic_id: Uuid,
    pub(crate) start: i64,
    /// Runs of (first, last, state, delivery count), ascending, from `start` on.
    pub(crate) ranges: Vec<(i64, i64, RecordState, i16)>,
    /// Bumped by the coordinator when the offsets are altered: a leader writing
    /// state of an older one is fenced (FENCED_STATE_EPOCH).
    pub(crate) state_epoch: i32,
    /// The partition leader epoch it was last read or written at: a deposed leader's
    /// writes are fenced (FENCED_LEADER_EPOCH).
    pub(crate) leader_epoch: i32,
}

impl Snapshot {
    /// A share-partition starting at `start` with nothing in flight.
    pub(crate) fn at(topic_id: Uuid, start: i64) -> Snapshot {
        Snapshot { topic_id, start, ranges: Vec::new(), state_epoch: 0, leader_epoch: -1 }
    }

    /// The runs as Kafka's state batches: (first, last, wire state, delivery count).
    pub(crate) fn batches(&self) -> impl Iterator<Item = (i64, i64, i8, i16)> + '_ {
        self.ranges.iter().map(|&(first, last, state, count)| (first, last, state as i8, count))
    }

    /// A snapshot from Kafka's state batches, checked as a stored one is: None for
    /// runs that overlap, go back, name unknown states or describe too many offsets.
    pub(crate) fn from_batches(topic_id: Uuid, start: i64, batches: impl IntoIterator<Item = (i64, i64, i8, i16)>) -> Option<Snapshot> {
        let mut ranges = Vec::new();
        let (mut next, mut total) = (start, 0i64);
        if start < 0 {
            return None;
        }
        for (first, last, state, count) in batches {
            let state = RecordState::from_wire(state)?;
            if first < next || last < first || count < 0 {
                return None;
            }
            total = total.checked_add(last.checked_sub(first)?.checked_add(1)?)?;
            if total > MAX_SNAPSHOT_OFFSETS {
                return None;
            }
            next = last.checked_add(1)?;
            ranges.push((first, last, state, count));
        }
        Some(Snapshot { ranges, ..Snapshot::at(topic_id, start) })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SharePartition {
    pub(crate) topic_id: Uuid,
    start: i64,
    end: i64,
    records: BTreeMap<i64, InFlight>,
    /// The epochs its snapshots are written with (see [`Snapshot`]).
    pub(crate) state_epoch: i32,
    pub(crate) leader_epoch: i32,
    /// Changes made (acknowledgements) and the last of them persisted: a write
    /// carries every change before it, so writes waiting behind it may be done.
    pub(crate) changes: u64,
    pub(crate) saved: u64,
    /// Unique to this instance: a change made to one loaded before a reload is not
    /// taken as written by the reloaded one's writes.
    pub(crate) id: u64,
}

static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl SharePartition {
    /// A share-partition starting at `start` with nothing in flight.
    pub(crate) fn new(topic_id: Uuid, start: i64) -> SharePartition {
        SharePartition {
            topic_id,
            start,
            end: start,
            records: BTreeMap::new(),
            state_epoch: 0,
            leader_epoch: -1,
            changes: 0,
            saved: 0,
            id: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The share-partition start offset: every record below it is done.
    pub(crate) fn start(&self) -> i64 {
        self.start
    }

    /// One past the last offset ever acquired or skipped.
    pub(crate) fn end(&self) -> i64 {
        self.end
    }

    /// The state and delivery count of `offset`, if it is in flight.
    #[cfg(test)]
    pub(crate) fn state(&self, offset: i64) -> Option<(RecordState, i16)> {
        self.records.get(&offset).map(|r| (r.state, r.delivery_count))
    }

    /// Where the next log read should start: the first available in-flight record,
    /// or the end of the window.
    pub(crate) fn next_fetch_offset(&self) -> i64 {
        self.records.iter().find(|(_, r)| r.state == RecordState::Available).map_or(self.end, |(o, _)| *o)
    }

    /// Whether a record could be acquired now without reading past `high_watermark`.
    pub(crate) fn has_available(&self, high_watermark: i64, limits: &Limits) -> bool {
        self.records.values().any(|r| r.state == RecordState::Available)
            || (self.end < high_watermark && self.end - self.start < limits.max_in_flight)
    }

    /// The log's start moved past records (retention, DeleteRecords): they are gone.
    pub(crate) fn log_start_moved(&mut self, log_start: i64) {
        if log_start > self.start {
            self.records = self.records.split_off(&log_start);
            self.start = log_start;
            self.end = self.end.max(log_start);
        }
    }

    /// Acquires for `member` up to `max_records` available records among `batches`
    /// (read from the log at [`SharePartition::next_fetch_offset`]): in-flight
    /// available ones again, new ones up to the in-flight limit. Control batches and
    /// offsets missing between batches are archived, never delivered.
    pub(crate) fn acquire(&mut self, member: &str, batches: &[LogBatch], max_records: usize, now: i64, limits: &Limits) -> Vec<Acquired> {
        let member: Arc<str> = Arc::from(member);
        let mut out: Vec<Acquired> = Vec::new();
        let mut taken = 0usize;
        let lock = |count: i16| InFlight {
            state: RecordState::Acquired,
            delivery_count: count,
            member: Some(member.clone()),
            deadline: now.saturating_add(limits.lock_ms),
        };
        'batches: for b in batches {
            if b.last < b.base {
                continue;
            }
            for offset in b.base.max(self.start)..=b.last {
                if taken >= max_records {
                    break 'batches;
                }
                if offset < self.end {
                    let Some(r) = self.records.get_mut(&offset) else { continue };
                    if r.state != RecordState::Available || b.control {
                        continue;
                    }
                    let count = r.delivery_count.saturating_add(1);
                    *r = lock(count);
                    push(&mut out, offset, count);
                    taken += 1;
                    continue;
                }
                if offset > self.end && self.records.is_empty() {
                    // Offsets the log does not hold (compacted away) before this batch,
                    // with nothing in flight: the window starts after them.
                    self.start = offset;
                    self.end = offset;
                }
                if offset - self.start >= limits.max_in_flight {
                    break 'batches;
                }
                // A gap behind records still in flight (short: within the window)
                // holds nothing to deliver.
                for gap in self.end..offset {
                    self.records.insert(gap, InFlight { state: RecordState::Archived, delivery_count: 0, member: None, deadline: 0 });
                }
                self.end = offset + 1;
                if b.control {
                    self.records.insert(offset, InFlight { state: RecordState::Archived, delivery_count: 0, member: None, deadline: 0 });
                    continue;
                }
                self.records.insert(offset, lock(1));
                push(&mut out, offset, 1);
                taken += 1;
            }
        }
        self.advance();
        out
    }

    /// Applies `member`'s acknowledgements, all or none, as Kafka's `SharePartition`: a
    /// batch wholly below the start offset is done already and skipped; one reaching
    /// past the records ever delivered is INVALID_REQUEST; every other offset must be
    /// one the member holds acquired (INVALID_RECORD_STATE otherwise). The offsets
    /// looked at never go beyond the in-flight window, whatever a batch claims.
    pub(crate) fn acknowledge(&mut self, member: &str, batches: &[AckBatch], limits: &Limits) -> Result<(), i16> {
        for b in batches {
            if b.first > b.last || b.first < 0 {
                return Err(karst_protocol::error_codes::INVALID_REQUEST);
            }
            if b.last < self.start {
                continue;
            }
            if b.last >= self.end {
                return Err(karst_protocol::error_codes::INVALID_REQUEST);
            }
            for offset in b.first.max(self.start)..=b.last {
                let held =
                    self.records.get(&offset).is_some_and(|r| r.state == RecordState::Acquired && r.member.as_deref() == Some(member));
                if !held {
                    return Err(INVALID_RECORD_STATE);
                }
            }
        }
        for b in batches.iter().filter(|b| b.last >= self.start) {
            for offset in b.first.max(self.start)..=b.last {
                let i = usize::try_from(offset - b.first).unwrap_or(usize::MAX);
                let kind = if b.types.len() == 1 { b.types[0] } else { b.types.get(i).copied().unwrap_or(ACK_ACCEPT) };
                let Some(r) = self.records.get_mut(&offset) else { continue };
                match kind {
                    ACK_ACCEPT => settle(r, RecordState::Acknowledged),
                    ACK_RELEASE => release(r, limits),
                    // REJECT, and GAP (an offset the log does not hold): never delivered again.
                    ACK_REJECT | ACK_GAP => settle(r, RecordState::Archived),
                    _ => settle(r, RecordState::Archived),
                }
            }
        }
        self.advance();
        Ok(())
    }

    /// Releases every record `member` holds (its share session closed or it left).
    /// Returns whether anything changed.
    pub(crate) fn release_member(&mut self, member: &str, limits: &Limits) -> bool {
        let mut changed = false;
        for r in self.records.values_mut() {
            if r.state == RecordState::Acquired && r.member.as_deref() == Some(member) {
                release(r, limits);
                changed = true;
            }
        }
        self.advance();
        changed
    }

    /// Expired acquisition locks make their records available again, or archived
    /// once delivered `delivery.count.limit` times. Returns whether any expired.
    pub(crate) fn expire_locks(&mut self, now: i64, limits: &Limits) -> bool {
        let mut changed = false;
        for r in self.records.values_mut() {
            if r.state == RecordState::Acquired && r.deadline <= now {
                release(r, limits);
                changed = true;
            }
        }
        self.advance();
        changed
    }

    /// The start moves past every leading record that is done.
    fn advance(&mut self) {
        while let Some(e) = self.records.first_entry() {
            if *e.key() != self.start || !e.get().state.done() {
                break;
            }
            e.remove();
            self.start += 1;
        }
        if self.records.is_empty() {
            self.start = self.start.max(self.end);
            self.end = self.start;
        }
    }

    /// What to persist: acquired records count as available (a restart drops locks).
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut ranges: Vec<(i64, i64, RecordState, i16)> = Vec::new();
        for (&offset, r) in &self.records {
            let state = if r.state == RecordState::Acquired { RecordState::Available } else { r.state };
            match ranges.last_mut() {
                Some(last) if last.1 + 1 == offset && last.2 == state && last.3 == r.delivery_count => last.1 = offset,
                _ => ranges.push((offset, offset, state, r.delivery_count)),
            }
        }
        Snapshot { topic_id: self.topic_id, start: self.start, ranges, state_epoch: self.state_epoch, leader_epoch: self.leader_epoch }
    }

    /// A share-partition as a snapshot left it.
    pub(crate) fn restore(s: &Snapshot) -> SharePartition {
        let mut p = SharePartition::new(s.topic_id, s.start);
        (p.state_epoch, p.leader_epoch) = (s.state_epoch, s.leader_epoch);
        for &(first, last, state, count) in &s.ranges {
            for offset in first..=last {
                p.records.insert(offset, InFlight { state, delivery_count: count, member: None, deadline: 0 });
            }
            p.end = p.end.max(last + 1);
        }
        p.advance();
        p
    }
}

fn push(out: &mut Vec<Acquired>, offset: i64, count: i16) {
    match out.last_mut() {
        Some(a) if a.last + 1 == offset && a.delivery_count == count => a.last = offset,
        _ => out.push(Acquired { first: offset, last: offset, delivery_count: count }),
    }
}

fn settle(r: &mut InFlight, state: RecordState) {
    r.state = state;
    r.member = None;
}

fn release(r: &mut InFlight, limits: &Limits) {
    let state = if r.delivery_count >= limits.delivery_limit { RecordState::Archived } else { RecordState::Available };
    settle(r, state);
}

/// Version 0 had no epochs; version 1 adds the state and leader epochs.
const SNAPSHOT_VERSION: i16 = 1;

/// A snapshot as stored: version, topic id, start, the epochs, then the runs.
pub(crate) fn encode_snapshot(s: &Snapshot) -> Bytes {
    let mut b = BytesMut::with_capacity(38 + s.ranges.len() * 19);
    b.put_i16(SNAPSHOT_VERSION);
    b.put_slice(s.topic_id.as_bytes());
    b.put_i64(s.start);
    b.put_i32(s.state_epoch);
    b.put_i32(s.leader_epoch);
    b.put_i32(i32::try_from(s.ranges.len()).unwrap_or(i32::MAX));
    for &(first, last, state, count) in &s.ranges {
        b.put_i64(first);
        b.put_i64(last);
        b.put_i8(state as i8);
        b.put_i16(count);
    }
    b.freeze()
}

/// A stored snapshot, or None for bytes that are not one: runs must ascend without
/// overlap from the start and describe a bounded number of offsets.
pub(crate) fn decode_snapshot(mut b: Bytes) -> Option<Snapshot> {
    if b.remaining() < 2 + 16 + 8 + 4 {
        return None;
    }
    let version = b.get_i16();
    if !(0..=SNAPSHOT_VERSION).contains(&version) {
        return None;
    }
    let mut id = [0u8; 16];
    b.copy_to_slice(&mut id);
    let start = b.get_i64();
    let (state_epoch, leader_epoch) = match version {
        0 => (0, -1),
        _ if b.remaining() >= 8 => (b.get_i32(), b.get_i32()),
        _ => return None,
    };
    if b.remaining() < 4 {
        return None;
    }
    let n = usize::try_from(b.get_i32()).ok()?;
    if b.remaining() != n.checked_mul(19)? {
        return None;
    }
    let runs: Vec<(i64, i64, i8, i16)> = (0..n).map(|_| (b.get_i64(), b.get_i64(), b.get_i8(), b.get_i16())).collect();
    let s = Snapshot::from_batches(Uuid::from_bytes(id), start, runs)?;
    Some(Snapshot { state_epoch, leader_epoch, ..s })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { lock_ms: 1000, delivery_limit: 3, max_in_flight: 100 };

    fn batch(base: i64, last: i64) -> LogBatch {
        LogBatch { base, last, control: false }
    }

    fn ack(first: i64, last: i64, kind: i8) -> AckBatch {
        AckBatch { first, last, types: vec![kind] }
    }

    #[test]
    fn acquires_new_records_and_respects_max_records() {
        let mut p = SharePartition::new(Uuid::nil(), 0);
        let got = p.acquire("a", &[batch(0, 4), batch(5, 9)], 7, 0, &LIMITS);
        assert_eq!(got, vec![Acquired { first: 0, last: 6, delivery_count: 1 }]);
        assert_eq!(p.end(), 7);
        assert_eq!(p.next_fetch_offset(), 7);
        // Another member gets what is left, not the acquired ones.
        let got = p.acquire("b", &[batch(5, 9)], 100, 0, &LIMITS);
        assert_eq!(got, vec![Acquired { first: 7, last: 9, delivery_count: 1 }]);
        assert_eq!(p.state(3), Some((RecordState::Acquired, 1)));
    }

    #[test]
    fn accepted_records_move_the_start() {
        let mut p = SharePartition::new(Uuid::nil(), 10);
        p.acquire("a", &[batch(10, 14)], 100, 0, &LIMITS);
        p.acknowledge("a", &[ack(10, 12, ACK_ACCEPT)], &LIMITS).expect("ack");
        assert_eq!(p.start(), 13);
        // Per-offset types: accept 13, reject 14.
        p.acknowledge("a", &[AckBatch { first: 13, last: 14, types: vec![ACK_ACCEPT, ACK_REJECT] }], &LIMITS).expect("ack");
        assert_eq!((p.start(), p.end()), (15, 15));
    }

    /// Kafka's rules at the edges of the in-flight window: below the start is done
    /// already, past the end was never delivered; a batch claiming a huge range is
    /// refused without walking it.
    #[test]
    fn acknowledgements_below_the_start_are_skipped_and_past_the_end_refused() {
        let mut p = SharePartition::new(Uuid::nil(), 0);
        p.acquire("a", &[batch(0, 4)], 100, 0, &LIMITS);
        p.acknowledge("a", &[ack(0, 1, ACK_ACCEPT)], &LIMITS).expect("ack");
        assert_eq!(p.start(), 2);
        assert_eq!(p.acknowledge("a", &[ack(0, 1, ACK_ACCEPT)], &LIMITS), Ok(()), "done already");
        assert_eq!(p.acknowledge("a", &[ack(3, 5, ACK_ACCEPT)], &LIMITS), Err(karst_protocol::error_codes::INVALID_REQUEST));
        assert_eq!(p.acknowledge("a", &[ack(2, i64::MAX, ACK_ACCEPT)], &LIMITS), Err(karst_protocol::error_codes::INVALID_REQUEST));
        assert_eq!(p.state(2), Some((RecordState::Acquired, 1)), "all or nothing");
        // A batch from below the start into acquired records acknowledges those.
        p.acknowledge("a", &[AckBatch { first: 0, last: 3, types: vec![ACK_ACCEPT] }], &LIMITS).expect("ack");
        assert_eq!(p.start(), 4);
    }

    #[test]
    fn acknowledging_records_not_acquired_is_invalid_record_state() {
        let mut p = SharePartition::new(Uuid::nil(), 0);
        p.acquire("a", &[batch(0, 4)], 100, 0, &LIMITS);
        assert_eq!(p.acknowledge("b", &[ack(0, 0, ACK_ACCEPT)], &LIMITS), Err(INVALID_RECORD_STATE), "another member's");
        assert_eq!(
            p.acknowledge("a", &[ack(3, 7, ACK_ACCEPT)], &LIMITS),
            Err(karst_protocol::error_codes::INVALID_REQUEST),
            "past the window"
        );
        assert_eq!(p.state(3), Some((RecordState::Acquired, 1)), "all or nothing");
        // Offset 2 accepted while 0 and 1 are still acquired: the start stays at 0.
        p.acknowledge("a", &[ack(2, 2, ACK_ACCEPT)], &LIMITS).expect("ack");
        assert_eq!(p.acknowledge("a", &[ack(2, 2, ACK_ACCEPT)], &LIMITS), Err(INVALID_RECORD_STATE), "twice");
    }

    #[test]
    fn released_and_expired_records_are_delivered_again() {
        let mut p = SharePartition::new(Uuid::nil(), 0);
        p.acquire("a", &[batch(0, 3)], 100, 0, &LIMITS);
        p.acknowledge("a", &[ack(1, 1, ACK_RELEASE)], &LIMITS).expect("release");
        assert_eq!(p.next_fetch_offset(), 1);
        assert_eq!(p.acquire("b", &[batch(0, 3)], 100, 10, &LIMITS), vec![Acquired { first: 1, last: 1, delivery_count: 2 }]);
        // a's locks on 0, 2, 3 expire at 1000; b's on 1 at 1010.
        assert!(!p.expire_locks(999, &LIMITS));
        assert!(p.expire_locks(1000, &LIMITS));
        assert_eq!(p.state(0), Some((RecordState::Available, 1)));
        assert_eq!(p.state(1), Some((RecordState::Acquired, 2)));
        let got = p.acquire("c", &[batch(0, 3)], 100, 1000, &LIMITS);
        assert_eq!(got, vec![Acquired { first: 0, last: 0, delivery_count: 2 }, Acquired { first: 2, last: 3, delivery_count: 2 }]);
        assert!(p.release_member("c", &LIMITS));
        assert_eq!(p.state(2), Some((RecordState::Available, 2)));
    }

    #[test]
    fn the_delivery_limit_archives_a_record() {
        let mut p = SharePartition::new(Uuid::nil(), 0);
        for round in 1..=3 {
            let got = p.acquire("a", &[batch(0, 1)], 1, 0, &LIMITS);
            assert_eq!(got, vec![Acquired { first: 0, last: 0, delivery_count: round }]);
            p.acknowledge("a", &[ack(0, 0, ACK_RELEASE)], &LIMITS).expect("release");
        }
        // Delivered 3 times (the limit): archived, the start moves past it.
        assert_eq!(p.start(), 1);
        assert_eq!(p.acquire("a", &[batch(0, 1)], 10, 0, &LIMITS), vec![Acquired { first: 1, last: 1, delivery_count: 1 }]);
    }

    #[test]
    fn control_batches_and_gaps_are_never_delivered() {
        let mut p = SharePartition::new(Uuid::nil(), 0);
        let got = p.acquire("a", &[batch(0, 1), LogBatch { base: 2, last: 2, control: true }, batch(5, 6)], 100, 0, &LIMITS);
        assert_eq!(got, vec![Acquired { first: 0, last: 1, delivery_count: 1 }, Acquired { first: 5, last: 6, delivery_count: 1 }]);
        p.acknowledge("a", &[ack(0, 1, ACK_ACCEPT)], &LIMITS).expect("ack");
        assert_eq!(p.start(), 5, "the marker and the gap are archived");
    }

    #[test]
    fn a_wide_gap_in_the_log_is_skipped_not_materialized() {
        let mut p = SharePartition::new(Uuid::nil(), 0);
        p.acquire("a", &[batch(0, 1)], 100, 0, &LIMITS);
        // Behind records in flight, a gap wider than the window waits for them.
        assert!(p.acquire("a", &[batch(1_000_000_000, 1_000_000_001)], 100, 0, &LIMITS).is_empty());
        p.acknowledge("a", &[ack(0, 1, ACK_ACCEPT)], &LIMITS).expect("ack");
        let got = p.acquire("a", &[batch(1_000_000_000, 1_000_000_001)], 100, 0, &LIMITS);
        assert_eq!(got, vec![Acquired { first: 1_000_000_000, last: 1_000_000_001, delivery_count: 1 }]);
        assert_eq!(p.start(), 1_000_000_000);
        assert!(p.records.len() <= 2);
    }

    #[test]
    fn the_in_flight_limit_stops_new_acquisitions() {
        let limits = Limits { max_in_flight: 3, ..LIMITS };
        let mut p = SharePartition::new(Uuid::nil(), 0);
        assert_eq!(p.acquire("a", &[batch(0, 9)], 100, 0, &limits).iter().map(|a| a.last - a.first + 1).sum::<i64>(), 3);
        assert!(!p.has_available(10, &limits));
        p.acknowledge("a", &[ack(0, 0, ACK_ACCEPT)], &limits).expect("ack");
        assert!(p.has_available(10, &limits));
    }

    #[test]
    fn a_snapshot_round_trips_and_drops_locks() {
        let mut p = SharePartition::new(Uuid::from_u128(7), 0);
        p.acquire("a", &[batch(0, 5)], 100, 0, &LIMITS);
        p.acknowledge("a", &[ack(0, 0, ACK_ACCEPT), ack(2, 2, ACK_ACCEPT), ack(3, 3, ACK_REJECT)], &LIMITS).expect("ack");
        let s = p.snapshot();
        assert_eq!(s.start, 1);
        let decoded = decode_snapshot(encode_snapshot(&s)).expect("decodes");
        assert_eq!(decoded, s);
        let mut q = SharePartition::restore(&decoded);
        assert_eq!((q.start(), q.end()), (1, 6));
        assert_eq!(q.state(1), Some((RecordState::Available, 1)), "acquired before the restart: available");
        assert_eq!(q.state(2), Some((RecordState::Acknowledged, 1)));
        let got = q.acquire("b", &[batch(0, 5)], 100, 0, &LIMITS);
        assert_eq!(got, vec![Acquired { first: 1, last: 1, delivery_count: 2 }, Acquired { first: 4, last: 5, delivery_count: 2 }]);
    }

    #[test]
    fn corrupt_snapshots_are_refused() {
        let snapshot = Snapshot {
            ranges: vec![(5, 6, RecordState::Acknowledged, 1), (8, 9, RecordState::Available, 2)],
            state_epoch: 2,
            leader_epoch: 7,
            ..Snapshot::at(Uuid::from_u128(1), 5)
        };
        let good = encode_snapshot(&snapshot);
        assert_eq!(decode_snapshot(good.clone()), Some(snapshot.clone()));
        // A version-0 snapshot (no epochs), as an older Karst wrote it, still reads.
        let mut v0 = good.to_vec();
        v0.drain(26..34);
        v0[0..2].copy_from_slice(&0i16.to_be_bytes());
        assert_eq!(decode_snapshot(Bytes::from(v0)), Some(Snapshot { state_epoch: 0, leader_epoch: -1, ..snapshot }));
        for cut in 0..good.len() {
            assert!(decode_snapshot(good.slice(..cut)).is_none(), "cut at {cut}");
        }
        let mut bad = good.to_vec();
        bad[0..2].copy_from_slice(&9i16.to_be_bytes());
        assert!(decode_snapshot(Bytes::from(bad)).is_none(), "unknown version");
        let overlapping =
            Snapshot { ranges: vec![(5, 9, RecordState::Archived, 1), (7, 8, RecordState::Archived, 1)], ..Snapshot::at(Uuid::nil(), 5) };
        assert!(decode_snapshot(encode_snapshot(&overlapping)).is_none());
        let huge = Snapshot { ranges: vec![(0, i64::MAX - 1, RecordState::Archived, 1)], ..Snapshot::at(Uuid::nil(), 0) };
        assert!(decode_snapshot(encode_snapshot(&huge)).is_none());
        let mut bad_state =
            encode_snapshot(&Snapshot { ranges: vec![(0, 0, RecordState::Archived, 1)], ..Snapshot::at(Uuid::nil(), 0) }).to_vec();
        let at = bad_state.len() - 3;
        bad_state[at] = 3;
        assert!(decode_snapshot(Bytes::from(bad_state)).is_none(), "state 3 does not exist");
        let mut rng = 0x1234_5678_u64;
        for _ in 0..2000 {
            let len = (rng % 80) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            let _ = decode_snapshot(Bytes::from(bytes));
        }
    }
}
