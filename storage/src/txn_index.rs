//! The aborted transaction index: `<base>.txnindex` beside each segment (Kafka's
//! `TransactionIndex` and `AbortedTxn`).
//!
//! One entry per aborted transaction that had data, in the segment holding its
//! ABORT marker, in marker order. An entry is 34 bytes, big endian, as Kafka's:
//!
//! ```text
//! version i16 (0) | producer id i64 | first offset i64 | last offset i64 (the marker) |
//! last stable offset i64 (after the marker was written)
//! ```
//!
//! Every segment has the file, empty when it has no abort, so a missing file means
//! "unknown" (a segment from before the index existed, or a clean's swap cut short
//! by a crash) and makes the log rebuild the index from its batches. A file is
//! never trusted blindly: its length, versions and offsets are checked against the
//! segment it belongs to (see [`parse`]).
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::faults::{self, Point};
use crate::files::{offset_file_name, offset_path, write_atomic, TXN_INDEX_EXT};

/// Bytes per entry.
pub(crate) const ENTRY_SIZE: usize = 34;
const VERSION: i16 = 0;

/// One aborted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// The offset of the transaction's first batch.
    pub first_offset: i64,
    /// The offset of its ABORT marker.
    pub last_offset: i64,
    /// The log's last stable offset once the marker was written (the first offset of
    /// the earliest transaction of another producer still open, or the marker's + 1).
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub(crate) fn encode(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[..2].copy_from_slice(&VERSION.to_be_bytes());
        for (i, v) in [self.producer_id, self.first_offset, self.last_offset, self.last_stable_offset].into_iter().enumerate() {
            b[2 + 8 * i..10 + 8 * i].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> Result<AbortedTxn, String> {
        let field = |i: usize| -> Result<i64, String> {
            let bytes: [u8; 8] = b.get(2 + 8 * i..10 + 8 * i).and_then(|s| s.try_into().ok()).ok_or("short entry")?;
            Ok(i64::from_be_bytes(bytes))
        };
        let version = i16::from_be_bytes([*b.first().ok_or("short entry")?, *b.get(1).ok_or("short entry")?]);
        if version != VERSION {
            return Err(format!("entry version {version}"));
        }
        Ok(AbortedTxn { producer_id: field(0)?, first_offset: field(1)?, last_offset: field(2)?, last_stable_offset: field(3)? })
    }
}

/// Parses and checks the index of the segment `[base, end)` (`end`: `None` for the
/// active segment). Entries must be whole, of version 0, with a producer id,
/// `0 <= first <= last`, the marker inside the segment and after the previous
/// entry's, and a last stable offset in `[0, last + 1]`.
/// With `torn_tail`, a partial last entry (an append cut by a crash) is dropped.
pub(crate) fn parse(bytes: &[u8], base: i64, end: Option<i64>, torn_tail: bool) -> Result<Vec<AbortedTxn>, String> {
    let whole = bytes.len() - bytes.len() % ENTRY_SIZE;
    if whole != bytes.len() && !torn_tail {
        return Err(format!("{} bytes is not a whole number of entries", bytes.len()));
    }
    let mut out: Vec<AbortedTxn> = Vec::with_capacity(whole / ENTRY_SIZE);
    for chunk in bytes[..whole].chunks_exact(ENTRY_SIZE) {
        let t = AbortedTxn::decode(chunk)?;
        let after_previous = out.last().is_none_or(|p| t.last_offset > p.last_offset);
        let ok = t.producer_id >= 0
            && t.first_offset >= 0
            && t.first_offset <= t.last_offset
            && t.last_offset >= base
            && end.is_none_or(|e| t.last_offset < e)
            && after_previous
            && t.last_stable_offset >= 0
            && t.last_stable_offset <= t.last_offset.saturating_add(1);
        if !ok {
            return Err(format!("impossible entry {t:?} in the segment at {base}"));
        }
        out.push(t);
    }
    Ok(out)
}

/// The bytes of the index of `base`; `None` when the file is missing.
pub(crate) fn read(dir: &Path, base: i64) -> io::Result<Option<Vec<u8>>> {
    match fs::read(offset_path(dir, base, TXN_INDEX_EXT)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the index of `base` with `entries`, atomically.
pub(crate) fn write(dir: &Path, base: i64, entries: &[AbortedTxn]) -> io::Result<()> {
    let bytes: Vec<u8> = entries.iter().flat_map(AbortedTxn::encode).collect();
    write_atomic(dir, &offset_file_name(base, TXN_INDEX_EXT), &bytes)
}

/// Appends one entry to the index of `base` (not synced: see [`sync`]).
pub(crate) fn append(dir: &Path, base: i64, entry: &AbortedTxn) -> io::Result<()> {
    let path = offset_path(dir, base, TXN_INDEX_EXT);
    faults::check(Point::Write, &path)?;
    let mut f = OpenOptions::new().append(true).create(true).open(&path)?;
    f.write_all(&entry.encode())
}

/// Syncs the index of `base`.
pub(crate) fn sync(dir: &Path, base: i64) -> io::Result<()> {
    let path = offset_path(dir, base, TXN_INDEX_EXT);
    faults::check(Point::Fsync, &path)?;
    OpenOptions::new().read(true).open(&path)?.sync_data()
}

/// The aborted transactions of a log in memory: the entries of each segment's file,
/// by segment base offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TxnIndex {
    pub(crate) segments: BTreeMap<i64, Vec<AbortedTxn>>,
}

impl TxnIndex {
    /// Kafka's `collectAbortedTransactions`: from the segment holding `from`, the
    /// aborted transactions that overlap `[from, upper_bound)`, segment by segment
    /// until an entry's last stable offset reaches the upper bound (no later
    /// transaction can then start below it).
    pub(crate) fn collect(&self, from: i64, upper_bound: i64) -> Vec<AbortedTxn> {
        let start = self.segments.range(..=from).next_back().map_or(i64::MIN, |(b, _)| *b);
        let mut out = Vec::new();
        for entries in self.segments.range(start..).map(|(_, e)| e) {
            for t in entries {
                if t.last_offset >= from && t.first_offset < upper_bound {
                    out.push(*t);
                }
                if t.last_stable_offset >= upper_bound {
                    return out;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn { producer_id: pid, first_offset: first, last_offset: last, last_stable_offset: lso }
    }

    #[test]
    fn entries_are_kafkas_34_bytes() {
        let e = t(7, 10, 20, 21);
        let b = e.encode();
        assert_eq!(b.len(), 34);
        assert_eq!(&b[..2], &[0, 0]);
        assert_eq!(&b[2..10], &7i64.to_be_bytes());
        assert_eq!(&b[26..], &21i64.to_be_bytes());
        assert_eq!(AbortedTxn::decode(&b), Ok(e));
    }

    #[test]
    fn parse_checks_every_entry() {
        let good = [t(1, 0, 5, 6), t(2, 3, 9, 4)];
        let bytes: Vec<u8> = good.iter().flat_map(AbortedTxn::encode).collect();
        assert_eq!(parse(&bytes, 5, Some(10), false), Ok(good.to_vec()));
        assert!(parse(&bytes, 6, Some(10), false).is_err(), "marker before the segment");
        assert!(parse(&bytes, 5, Some(9), false).is_err(), "marker after the segment");
        assert!(parse(&bytes[..40], 5, None, false).is_err(), "torn");
        assert_eq!(parse(&bytes[..40], 5, None, true), Ok(good[..1].to_vec()), "torn tail dropped");
        let reordered: Vec<u8> = [good[1], good[0]].iter().flat_map(AbortedTxn::encode).collect();
        assert!(parse(&reordered, 0, None, false).is_err());
        for bad in [t(-1, 0, 5, 6), t(1, 6, 5, 6), t(1, -3, 5, 6), t(1, 0, 5, 7), t(1, 0, 5, -1)] {
            assert!(parse(&bad.encode(), 0, None, false).is_err(), "{bad:?}");
        }
        let mut v1 = good[0].encode();
        v1[1] = 1;
        assert!(parse(&v1, 0, None, false).is_err(), "unknown version");
    }

    #[test]
    fn files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path(), 0).expect("read"), None);
        write(dir.path(), 0, &[]).expect("write");
        assert_eq!(read(dir.path(), 0).expect("read"), Some(Vec::new()));
        append(dir.path(), 0, &t(1, 0, 2, 3)).expect("append");
        append(dir.path(), 0, &t(2, 1, 4, 5)).expect("append");
        sync(dir.path(), 0).expect("sync");
        let bytes = read(dir.path(), 0).expect("read").expect("present");
        assert_eq!(parse(&bytes, 0, None, false), Ok(vec![t(1, 0, 2, 3), t(2, 1, 4, 5)]));
    }

    #[test]
    fn collect_is_kafkas() {
        let mut idx = TxnIndex::default();
        // Segment 0: producer 1 aborted [2, 5] while producer 2's transaction from 4 was open.
        idx.segments.insert(0, vec![t(1, 2, 5, 4)]);
        // Segment 10: producer 2 aborted [4, 12], nothing open after it.
        idx.segments.insert(10, vec![t(2, 4, 12, 13)]);
        idx.segments.insert(20, vec![t(3, 21, 22, 23)]);
        assert_eq!(idx.collect(0, 3), vec![t(1, 2, 5, 4)], "stops at an entry whose LSO reaches the bound");
        assert_eq!(idx.collect(0, 6), vec![t(1, 2, 5, 4), t(2, 4, 12, 13)], "an open transaction reaches into later segments");
        assert_eq!(idx.collect(6, 8), vec![t(2, 4, 12, 13)]);
        assert_eq!(idx.collect(13, 21), vec![]);
        assert_eq!(idx.collect(13, 30), vec![t(3, 21, 22, 23)]);
        assert_eq!(idx.collect(23, 30), vec![]);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), base in 0i64..100, torn in any::<bool>()) {
            let _ = parse(&bytes, base, Some(base + 50), torn);
            let _ = parse(&bytes, base, None, torn);
        }
    }
}
