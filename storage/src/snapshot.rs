//! Producer-state snapshot files: `<20-digit offset>.snapshot`.
//!
//! A snapshot at offset `n` holds the producer state after every batch below `n`.
//! Layout (big endian):
//!
//! ```text
//! magic "KPS2" | crc32c(body) u32 | body
//! body: offset i64 | producer count u32 |
//!       per producer: producer id i64 | epoch i16 | coordinator epoch i32 |
//!                     current transaction's first offset i64 (-1: none) |
//!                     batch count u8 |
//!                     per batch: first seq i32 | last seq i32 | base offset i64 |
//!                                last offset i64 | max timestamp i64
//! ```
//!
//! Version 1 ("KPS1", written before transactions) has no coordinator epoch and no
//! transaction offset; it is still read, as producers without a marker or an
//! ongoing transaction.
use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::Path;

use crate::files::{offset_file_name, offset_path, remove_if_exists, write_atomic, SNAPSHOT_EXT};
use crate::producer_state::{BatchMeta, ProducerEntry, ProducerState, MAX_CACHED_BATCHES, NO_COORDINATOR_EPOCH};

const MAGIC: &[u8; 4] = b"KPS2";
const MAGIC_V1: &[u8; 4] = b"KPS1";

pub(crate) fn encode(offset: i64, state: &ProducerState) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&offset.to_be_bytes());
    let mut ids: Vec<_> = state.producers().keys().copied().collect();
    ids.sort_unstable();
    body.extend_from_slice(&(ids.len() as u32).to_be_bytes());
    for id in ids {
        let Some(e) = state.producers().get(&id) else {
            continue;
        };
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&e.epoch.to_be_bytes());
        body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        body.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
        let n = e.batches.len().min(MAX_CACHED_BATCHES);
        body.push(n as u8);
        for b in e.batches.iter().skip(e.batches.len() - n) {
            body.extend_from_slice(&b.first_seq.to_be_bytes());
            body.extend_from_slice(&b.last_seq.to_be_bytes());
            body.extend_from_slice(&b.base_offset.to_be_bytes());
            body.extend_from_slice(&b.last_offset.to_be_bytes());
            body.extend_from_slice(&b.max_timestamp.to_be_bytes());
        }
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Bounds-checked big-endian reader.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.0.len() < N {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().map_err(|_| "truncated".to_string())
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.take::<8>().map(i64::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.take::<4>().map(u32::from_be_bytes)
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    fn u8(&mut self) -> Result<u8, String> {
        self.take::<1>().map(|[b]| b)
    }
}

/// Decodes a snapshot taken at `offset`; any inconsistency is an error, never a panic.
pub(crate) fn decode(offset: i64, bytes: &[u8]) -> Result<ProducerState, String> {
    let mut r = Reader(bytes);
    let v2 = match &r.take::<4>()? {
        m if m == MAGIC => true,
        m if m == MAGIC_V1 => false,
        _ => return Err("bad magic".into()),
    };
    let crc = r.u32()?;
    let body = r.0;
    let actual = crc32c::crc32c(body);
    if actual != crc {
        return Err(format!("crc mismatch: stored {crc:#010x}, computed {actual:#010x}"));
    }
    let stored_offset = r.i64()?;
    if stored_offset != offset {
        return Err(format!("holds offset {stored_offset}, named {offset}"));
    }
    let count = r.u32()?;
    let mut entries = Vec::new();
    let mut txn_starts = std::collections::HashSet::new();
    for _ in 0..count {
        let id = r.i64()?;
        let epoch = r.i16()?;
        let (coordinator_epoch, txn_first) = if v2 { (r.i32()?, r.i64()?) } else { (NO_COORDINATOR_EPOCH, -1) };
        let current_txn_first_offset = match txn_first {
            -1 => None,
            o if (0..offset).contains(&o) && txn_starts.insert(o) => Some(o),
            o => return Err(format!("producer {id}'s transaction starts at {o}")),
        };
        let n = r.u8()? as usize;
        if n > MAX_CACHED_BATCHES {
            return Err(format!("{n} cached batches for producer {id}"));
        }
        let mut batches = VecDeque::with_capacity(n);
        for _ in 0..n {
            batches.push_back(BatchMeta {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                base_offset: r.i64()?,
                last_offset: r.i64()?,
                max_timestamp: r.i64()?,
            });
        }
        entries.push((id, ProducerEntry { epoch, batches, coordinator_epoch, current_txn_first_offset }));
    }
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(ProducerState::from_entries(entries))
}

/// Writes the snapshot for `offset` atomically.
pub(crate) fn write(dir: &Path, offset: i64, state: &ProducerState) -> io::Result<()> {
    write_atomic(dir, &offset_file_name(offset, SNAPSHOT_EXT), &encode(offset, state))
}

/// Reads the snapshot for `offset`; `Err(reason)` when missing or invalid.
pub(crate) fn read(dir: &Path, offset: i64) -> Result<ProducerState, String> {
    let bytes = fs::read(offset_path(dir, offset, SNAPSHOT_EXT)).map_err(|e| e.to_string())?;
    decode(offset, &bytes)
}

pub(crate) fn remove(dir: &Path, offset: i64) -> io::Result<()> {
    remove_if_exists(&offset_path(dir, offset, SNAPSHOT_EXT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> ProducerState {
        let mut e = ProducerEntry::new(3);
        e.batches.push_back(BatchMeta { first_seq: 0, last_seq: 4, base_offset: 10, last_offset: 14, max_timestamp: 99 });
        e.coordinator_epoch = 6;
        e.current_txn_first_offset = Some(12);
        ProducerState::from_entries([(42, e), (7, ProducerEntry::new(0))])
    }

    /// A snapshot as version 1 wrote it.
    fn encode_v1(offset: i64, state: &ProducerState) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&offset.to_be_bytes());
        let mut ids: Vec<_> = state.producers().keys().copied().collect();
        ids.sort_unstable();
        body.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let e = &state.producers()[&id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                for v in [i64::from(b.first_seq), i64::from(b.last_seq)] {
                    body.extend_from_slice(&(v as i32).to_be_bytes());
                }
                for v in [b.base_offset, b.last_offset, b.max_timestamp] {
                    body.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        let mut out = MAGIC_V1.to_vec();
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn version_1_snapshots_still_read() {
        let old = encode_v1(15, &sample());
        let got = decode(15, &old).expect("decode v1");
        let e = &got.producers()[&42];
        assert_eq!((e.epoch, e.batches.len(), e.coordinator_epoch, e.current_txn_first_offset), (3, 1, NO_COORDINATOR_EPOCH, None));
        assert_eq!(got.first_unstable_offset(), None);
        let v2 = decode(15, &encode(15, &sample())).expect("decode v2");
        assert_eq!(v2.first_unstable_offset(), Some(12), "ongoing transactions are rebuilt");
    }

    #[test]
    fn impossible_transaction_offsets_are_refused() {
        let mut e = ProducerEntry::new(0);
        e.current_txn_first_offset = Some(20);
        assert!(decode(15, &encode(15, &ProducerState::from_entries([(1, e)]))).is_err(), "a transaction after the snapshot");
        let mut a = ProducerEntry::new(0);
        a.current_txn_first_offset = Some(3);
        let b = a.clone();
        let two = ProducerState::from_entries([(1, a), (2, b)]);
        assert!(decode(15, &encode(15, &two)).is_err(), "two transactions at one offset");
    }

    #[test]
    fn round_trip_and_corruption() {
        let s = sample();
        let bytes = encode(15, &s);
        assert_eq!(decode(15, &bytes).expect("decode"), s);
        assert!(decode(16, &bytes).is_err());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode(15, &b).is_err(), "flip at {i}");
            assert!(decode(15, &bytes[..i]).is_err(), "truncated at {i}");
        }
    }

    #[test]
    fn files() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), 15, &sample()).expect("write");
        assert_eq!(read(dir.path(), 15).expect("read"), sample());
        remove(dir.path(), 15).expect("remove");
        assert!(read(dir.path(), 15).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(0, &bytes);
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&crc32c::crc32c(&bytes).to_be_bytes());
            framed.extend_from_slice(&bytes);
            let _ = decode(0, &framed);
        }
    }
}
