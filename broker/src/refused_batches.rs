//! Idempotent producers' batches a leader refused before storing them, so that the
//! batches pipelined behind one get the same retriable answer instead of
//! OUT_OF_ORDER_SEQUENCE_NUMBER.
//!
//! A producer keeps up to five requests in flight per partition. When the first is
//! refused (NOT_ENOUGH_REPLICAS, NOT_LEADER_OR_FOLLOWER, ...) and the condition clears
//! before the next one is looked at, that next batch arrives with a gap in its
//! sequence. Kafka answers OUT_OF_ORDER_SEQUENCE_NUMBER, and librdkafka meets that by
//! bumping its producer epoch and renumbering every batch it has not had acknowledged,
//! on every partition: batches that were stored but whose answer was lost (a leader
//! killed mid-request) are stored a second time. Answering the gap with the first
//! batch's own error keeps the producer retrying in order, within its epoch, where the
//! leader's producer state recognises every retry.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Requests a producer may have in flight per partition, and some slack.
const PER_PRODUCER: usize = 8;
/// Producers remembered per partition.
const PRODUCERS: usize = 4096;
/// After this a refusal explains nothing: the producer has moved on.
const REMEMBERED: Duration = Duration::from_secs(120);

#[derive(Debug)]
struct Refusals {
    epoch: i16,
    /// (first sequence, error code, when).
    batches: Vec<(i32, i16, Instant)>,
}

#[derive(Debug, Default)]
pub(crate) struct RefusedBatches {
    by_producer: HashMap<i64, Refusals>,
}

impl RefusedBatches {
    /// The batch of `producer_id`/`epoch` starting at `first_sequence` was refused with
    /// `code` before it was stored.
    pub(crate) fn note(&mut self, producer_id: i64, epoch: i16, first_sequence: i32, code: i16, now: Instant) {
        if self.by_producer.len() >= PRODUCERS && !self.by_producer.contains_key(&producer_id) {
            self.by_producer.retain(|_, r| r.batches.iter().any(|b| now.duration_since(b.2) < REMEMBERED));
            if self.by_producer.len() >= PRODUCERS {
                return;
            }
        }
        let r = self.by_producer.entry(producer_id).or_insert(Refusals { epoch, batches: Vec::new() });
        if r.epoch != epoch {
            *r = Refusals { epoch, batches: Vec::new() };
        }
        r.batches.retain(|b| b.0 != first_sequence && now.duration_since(b.2) < REMEMBERED);
        if r.batches.len() == PER_PRODUCER {
            r.batches.remove(0);
        }
        r.batches.push((first_sequence, code, now));
    }

    /// The error to answer a batch of `producer_id`/`epoch` whose sequence skipped
    /// ahead of `expected`: the refusal of the batch that starts there, if there was one.
    pub(crate) fn explain(&self, producer_id: i64, epoch: i16, expected: i32, now: Instant) -> Option<i16> {
        let r = self.by_producer.get(&producer_id).filter(|r| r.epoch == epoch)?;
        r.batches.iter().find(|b| b.0 == expected && now.duration_since(b.2) < REMEMBERED).map(|b| b.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_ENOUGH_REPLICAS: i16 = 19;
    const NOT_LEADER: i16 = 6;

    #[test]
    fn a_gap_is_explained_only_by_a_refusal_where_it_starts() {
        let now = Instant::now();
        let mut r = RefusedBatches::default();
        r.note(7, 0, 100, NOT_ENOUGH_REPLICAS, now);
        r.note(7, 0, 123, NOT_ENOUGH_REPLICAS, now);
        assert_eq!(r.explain(7, 0, 100, now), Some(NOT_ENOUGH_REPLICAS), "the first of two refused in a row");
        assert_eq!(r.explain(7, 0, 123, now), Some(NOT_ENOUGH_REPLICAS));
        assert_eq!(r.explain(7, 0, 101, now), None, "a gap that starts elsewhere is a real one");
        assert_eq!(r.explain(7, 1, 100, now), None, "another epoch");
        assert_eq!(r.explain(8, 0, 100, now), None, "another producer");
        assert_eq!(r.explain(7, 0, 100, now + REMEMBERED), None, "forgotten after a while");
        r.note(7, 1, 0, NOT_LEADER, now);
        assert_eq!(r.explain(7, 0, 100, now), None, "a new epoch starts over");
        assert_eq!(r.explain(7, 1, 0, now), Some(NOT_LEADER));
    }

    #[test]
    fn memory_is_bounded_per_producer_and_per_partition() {
        let now = Instant::now();
        let mut r = RefusedBatches::default();
        for seq in 0..100 {
            r.note(1, 0, seq, NOT_LEADER, now);
        }
        assert_eq!(r.explain(1, 0, 99, now), Some(NOT_LEADER));
        assert_eq!(r.explain(1, 0, 0, now), None, "only the newest are kept");
        for pid in 0..(PRODUCERS as i64 + 10) {
            r.note(pid, 0, 5, NOT_LEADER, now);
        }
        assert!(r.by_producer.len() <= PRODUCERS);
        let later = now + REMEMBERED;
        r.note(1_000_000, 0, 5, NOT_LEADER, later);
        assert_eq!(r.explain(1_000_000, 0, 5, later), Some(NOT_LEADER), "stale producers make room");
    }
}
