//! The cleaner's map from key to the offset of its latest record in the dirty
//! section (Kafka's `SkimpyOffsetMap`), bounded by `log.cleaner.dedupe.buffer.size`.
//!
//! Keys are stored as 128-bit digests, 24 bytes an entry with the offset, as Kafka
//! stores MD5 digests. The digest is two SipHash-1-3 hashes under keys drawn at
//! random for each map, so two keys collide with probability about n²/2¹²⁹, and a
//! producer cannot choose keys that collide with another's (Kafka's MD5 digests
//! can be forced to). A collision would make the cleaner treat two keys as one.
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// Bytes an entry takes in Kafka's accounting: a 16-byte digest and an 8-byte offset.
pub(crate) const BYTES_PER_ENTRY: usize = 24;

/// The digests are uniformly distributed already: the table hashes by their low bits.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

pub(crate) struct OffsetMap {
    entries: HashMap<u128, i64, BuildHasherDefault<DigestHasher>>,
    hashers: (RandomState, RandomState),
    /// Entries the memory allows (Kafka's `slots`).
    slots: usize,
    /// Entries the map takes before it reports itself full (slots × load factor).
    max_entries: usize,
    /// The largest offset put, or advanced to past the keyless tail of a section.
    latest_offset: i64,
}

impl std::fmt::Debug for OffsetMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetMap").field("entries", &self.entries.len()).field("slots", &self.slots).finish()
    }
}

impl OffsetMap {
    /// A map in `memory` bytes filled to `load_factor` at most; it takes at least one key.
    pub(crate) fn new(memory: usize, load_factor: f64) -> OffsetMap {
        let slots = (memory / BYTES_PER_ENTRY).max(1);
        // A float in (0, 1] times a count: the cast saturates and the result is clamped.
        let max_entries = ((slots as f64 * load_factor.clamp(0.0, 1.0)) as usize).clamp(1, slots);
        OffsetMap { entries: HashMap::default(), hashers: (RandomState::new(), RandomState::new()), slots, max_entries, latest_offset: -1 }
    }

    fn digest(&self, key: &[u8]) -> u128 {
        let half = |s: &RandomState| {
            let mut h = s.build_hasher();
            h.write(key);
            h.finish()
        };
        (u128::from(half(&self.hashers.0)) << 64) | u128::from(half(&self.hashers.1))
    }

    /// True once the map holds as many keys as it may.
    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    /// Records `offset` as the latest of `key` (callers check [`OffsetMap::is_full`]
    /// first; a key already present is updated even then).
    pub(crate) fn put(&mut self, key: &[u8], offset: i64) {
        let d = self.digest(key);
        self.entries.insert(d, offset);
        self.latest_offset = self.latest_offset.max(offset);
    }

    /// The latest offset of `key` in the dirty section, -1 when it has none there.
    pub(crate) fn get(&self, key: &[u8]) -> i64 {
        self.entries.get(&self.digest(key)).copied().unwrap_or(-1)
    }

    /// The last offset the map covers: records after it are not in the map.
    pub(crate) fn latest_offset(&self) -> i64 {
        self.latest_offset
    }

    /// Moves the covered range up to `offset` (past batches without keys).
    pub(crate) fn update_latest_offset(&mut self, offset: i64) {
        self.latest_offset = self.latest_offset.max(offset);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The share of the map's memory in use, as Kafka's `utilization`.
    pub(crate) fn utilization(&self) -> f64 {
        self.entries.len() as f64 / self.slots as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_offset_per_key_within_the_memory_bound() {
        let mut m = OffsetMap::new(10 * BYTES_PER_ENTRY, 0.5);
        assert_eq!(m.get(b"a"), -1);
        m.put(b"a", 3);
        m.put(b"b", 4);
        m.put(b"a", 7);
        assert_eq!((m.get(b"a"), m.get(b"b"), m.get(b""), m.len()), (7, 4, -1, 2));
        assert_eq!(m.latest_offset(), 7);
        m.update_latest_offset(5);
        assert_eq!(m.latest_offset(), 7, "never backwards");
        m.update_latest_offset(9);
        assert_eq!(m.latest_offset(), 9);
        for k in 0..3u8 {
            assert!(!m.is_full());
            m.put(&[k, k], 10 + i64::from(k));
        }
        assert!(m.is_full(), "5 of 10 slots at load factor 0.5");
        assert!((m.utilization() - 0.5).abs() < 1e-9);
        assert!(!OffsetMap::new(0, 0.0).is_full(), "room for one key at least");
    }

    #[test]
    fn the_empty_key_and_prefixes_are_distinct_keys() {
        let mut m = OffsetMap::new(1 << 16, 0.9);
        m.put(b"", 1);
        m.put(b"\0", 2);
        m.put(b"\0\0", 3);
        assert_eq!((m.get(b""), m.get(b"\0"), m.get(b"\0\0")), (1, 2, 3));
    }
}
