//! Producer-state snapshot files: `<20-digit offset>.snapshot`.
//!
//! A snapshot at offset `n` holds the producer state after every batch below `n`.
//! Layout (big endian):
//!
//! ```text
//! magic "KPS1" | crc32c(body) u32 | body
//! body: offset i64 | producer count u32 |
//!       per producer: producer id i64 | epoch i16 | batch count u8 |
//!                     per batch: first seq i32 | last seq i32 | base offset i64 |
//!                                last offset i64 | max timestamp i64
//! ```
use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::Path;

use crate::files::{offset_file_name, offset_path, remove_if_exists, write_atomic, SNAPSHOT_EXT};
use crate::producer_state::{BatchMeta, ProducerEntry, ProducerState, MAX_CACHED_BATCHES};

const MAGIC: &[u8; 4] = b"KPS1";

pub(crate) fn encode(offset: i64, state: &ProducerState) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&offset.to_be_bytes());
    let mut ids: Vec<_> = state.producers.keys().copied().collect();
    ids.sort_unstable();
    body.extend_from_slice(&(ids.len() as u32).to_be_bytes());
    for id in ids {
        let Some(e) = state.producers.get(&id) else {
            continue;
        };
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&e.epoch.to_be_bytes());
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
    if &r.take::<4>()? != MAGIC {
        return Err("bad magic".into());
    }
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
    let mut state = ProducerState::default();
    for _ in 0..count {
        let id = r.i64()?;
        let epoch = r.i16()?;
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
        state.producers.insert(id, ProducerEntry { epoch, batches });
    }
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(state)
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
        let mut s = ProducerState::default();
        let mut e = ProducerEntry { epoch: 3, batches: VecDeque::new() };
        e.batches.push_back(BatchMeta { first_seq: 0, last_seq: 4, base_offset: 10, last_offset: 14, max_timestamp: 99 });
        s.producers.insert(42, e);
        s.producers.insert(7, ProducerEntry { epoch: 0, batches: VecDeque::new() });
        s
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
        write(dir.path(), 5, &sample()).expect("write");
        assert_eq!(read(dir.path(), 5).expect("read"), sample());
        remove(dir.path(), 5).expect("remove");
        assert!(read(dir.path(), 5).is_err());
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
