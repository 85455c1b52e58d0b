//! Tests of the whole log through its public API, plus crash simulations.
use std::fs;
use std::path::{Path, PathBuf};

use karst_batch::{batches, build_batch, build_batch_with_producer, BatchHeader};
use proptest::prelude::*;

use crate::{CleanupPolicy, Log, LogConfig, StorageError};

fn tiny() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        segment_ms: None,
        index_interval_bytes: 128,
        segment_index_bytes: 4096,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

/// A batch of `count` records with a payload derived from `seed`.
fn batch(count: i32, ts: i64, len: usize, seed: u64) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8).collect();
    build_batch(0, count, ts, &payload)
}

fn pbatch(count: i32, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    build_batch_with_producer(0, count, 1_000, pid, epoch, seq, b"payload")
}

/// Appends and returns the batch as written (offset and epoch assigned).
fn append(log: &mut Log, mut b: Vec<u8>) -> Vec<u8> {
    let info = log.append(&b, 3, 0).expect("append");
    assert!(!info.duplicate);
    karst_batch::set_base_offset(&mut b, info.base_offset);
    karst_batch::set_partition_leader_epoch(&mut b, 3);
    b
}

/// Every batch from the log start to the log end, via repeated reads.
fn read_all(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let slice = log.read(offset, 3000, i64::MAX, true).expect("read");
        assert!(!slice.bytes.is_empty(), "empty read at {offset} < {}", log.log_end_offset());
        for item in batches(&slice.bytes) {
            let (pos, h) = item.expect("valid batch");
            out.push(slice.bytes[pos..pos + h.total_len()].to_vec());
            offset = h.last_offset() + 1;
        }
    }
    out
}

fn header(b: &[u8]) -> BatchHeader {
    BatchHeader::parse(b).expect("header")
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn last_log_file(dir: &Path) -> PathBuf {
    files(dir, "log").pop().expect("a segment")
}

/// Fills a log with `n` batches of varied sizes; returns them as written.
fn fill(log: &mut Log, n: u64) -> Vec<Vec<u8>> {
    (0..n).map(|i| append(log, batch(1 + (i % 4) as i32, 1_000 + i as i64, 20 + (i as usize * 37) % 200, i))).collect()
}

#[test]
fn round_trip_across_many_rolls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let written = fill(&mut log, 200);
    let mut expected_offset = 0;
    for b in &written {
        let h = header(b);
        assert_eq!(h.base_offset, expected_offset);
        assert_eq!(h.partition_leader_epoch, 3);
        BatchHeader::parse_checked(b).expect("crc still valid");
        expected_offset = h.last_offset() + 1;
    }
    assert_eq!(log.log_end_offset(), expected_offset);
    assert!(files(dir.path(), "log").len() > 20, "rolled");
    assert_eq!(read_all(&log), written);
    assert_eq!(log.size_bytes(), written.iter().map(|b| b.len() as u64).sum::<u64>());
    // Every offset reads the batch containing it.
    for b in &written {
        let h = header(b);
        for o in h.base_offset..=h.last_offset() {
            let s = log.read(o, 1, i64::MAX, true).expect("read");
            assert_eq!(&s.bytes[..], &b[..]);
            assert_eq!(s.first_offset, h.base_offset);
        }
    }
}

#[test]
fn append_info_and_multi_batch_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    let mut two = batch(3, 50, 10, 1);
    two.extend(batch(2, 70, 10, 2));
    let sent = two.clone();
    let info = log.append(&two, 9, 0).expect("append");
    assert_eq!(two, sent, "the caller's buffer is not modified");
    assert_eq!((info.base_offset, info.last_offset, info.max_timestamp, info.duplicate), (0, 4, 70, false));
    assert_eq!(log.log_end_offset(), 5);
    let stored = log.read(0, 1 << 20, i64::MAX, false).expect("read").bytes;
    assert_eq!(stored.len(), two.len());
    let second = header(&stored[header(&stored).total_len()..]);
    assert_eq!((second.base_offset, second.partition_leader_epoch), (3, 9));
    // Only the base offsets and leader epochs differ; every CRC still holds.
    let first_len = header(&two).total_len();
    for (at, len) in [(0, first_len), (first_len, two.len() - first_len)] {
        assert_eq!(stored[at + 8..at + 12], two[at + 8..at + 12]);
        assert_eq!(stored[at + 16..at + len], two[at + 16..at + len]);
        BatchHeader::parse_checked(&stored[at..at + len]).expect("crc");
    }
    let s = log.read(4, 1 << 20, i64::MAX, false).expect("read");
    assert_eq!(s.first_offset, 3);
}

#[test]
fn malformed_appends_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    assert!(matches!(log.append(&[], 0, 0), Err(StorageError::Batch(_))));
    let mut good_then_torn = batch(1, 0, 10, 1);
    let torn = batch(1, 0, 10, 2);
    good_then_torn.extend_from_slice(&torn[..30]);
    assert!(matches!(log.append(&good_then_torn, 0, 0), Err(StorageError::Batch(_))));
    let mut legacy = batch(1, 0, 10, 1);
    legacy[16] = 1;
    assert!(matches!(log.append(&legacy, 0, 0), Err(StorageError::Batch(_))));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn read_from_middle_of_batch_returns_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    let a = append(&mut log, batch(5, 0, 10, 1));
    let b = append(&mut log, batch(5, 0, 10, 2));
    let s = log.read(7, 1 << 20, i64::MAX, false).expect("read");
    assert_eq!(s.first_offset, 5);
    assert_eq!(&s.bytes[..], &b[..]);
    let s = log.read(2, 1 << 20, i64::MAX, false).expect("read");
    assert_eq!(s.first_offset, 0);
    assert_eq!(s.bytes.len(), a.len() + b.len());
}

#[test]
fn max_bytes_and_min_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig { segment_bytes: 1 << 20, ..tiny() }).expect("open");
    let a = append(&mut log, batch(1, 0, 100, 1));
    let b = append(&mut log, batch(1, 0, 100, 2));
    append(&mut log, batch(1, 0, 100, 3));
    let s = log.read(0, a.len() + b.len() + 10, i64::MAX, false).expect("read");
    assert_eq!(s.bytes.len(), a.len() + b.len(), "stops before exceeding max_bytes");
    let s = log.read(0, 10, i64::MAX, false).expect("read");
    assert!(s.bytes.is_empty());
    let s = log.read(0, 10, i64::MAX, true).expect("read");
    assert_eq!(&s.bytes[..], &a[..], "min_one returns the first batch whole");
    let s = log.read(0, 0, i64::MAX, true).expect("read");
    assert_eq!(s.bytes.len(), a.len());
}

#[test]
fn max_offset_bounds_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig { segment_bytes: 1 << 20, ..tiny() }).expect("open");
    let a = append(&mut log, batch(2, 0, 10, 1));
    append(&mut log, batch(2, 0, 10, 2));
    let s = log.read(0, 1 << 20, 2, true).expect("read");
    assert_eq!(&s.bytes[..], &a[..]);
    let s = log.read(2, 1 << 20, 2, true).expect("read");
    assert!(s.bytes.is_empty(), "nothing visible at the bound");
    let s = log.read(1, 1 << 20, 1, true).expect("read");
    assert!(s.bytes.is_empty());
}

#[test]
fn out_of_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    fill(&mut log, 3);
    let end = log.log_end_offset();
    assert!(matches!(log.read(-1, 100, i64::MAX, true), Err(StorageError::OffsetOutOfRange { offset: -1, .. })));
    assert!(matches!(log.read(end + 1, 100, i64::MAX, true), Err(StorageError::OffsetOutOfRange { .. })));
    let s = log.read(end, 100, i64::MAX, true).expect("read at the end");
    assert!(s.bytes.is_empty());
    assert_eq!(s.first_offset, end);
}

#[test]
fn restart_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    let mut written = fill(&mut log, 60);
    let end = log.log_end_offset();
    log.close().expect("close");
    assert!(dir.path().join("clean-shutdown").exists());
    // Closed: every index trimmed to its entries.
    for p in files(dir.path(), "index") {
        assert_eq!(fs::metadata(&p).expect("meta").len() % 8, 0);
    }
    let mut log = Log::open(dir.path(), tiny()).expect("reopen");
    assert!(!dir.path().join("clean-shutdown").exists(), "marker removed on open");
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log), written);
    written.extend(fill(&mut log, 30));
    assert_eq!(header(written.last().expect("some")).last_offset() + 1, log.log_end_offset());
    log.close().expect("close");
    let log = Log::open(dir.path(), tiny()).expect("reopen");
    assert_eq!(read_all(&log), written);
}

#[test]
fn restart_with_appends_into_reopened_active_segment_keeps_indexes_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 1 << 20, index_interval_bytes: 64, ..tiny() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    let mut written = fill(&mut log, 20);
    log.close().expect("close");
    let mut log = Log::open(dir.path(), cfg.clone()).expect("reopen");
    assert!(log.active.index_len().0 > 0);
    written.extend(fill(&mut log, 20));
    assert_eq!(read_all(&log), written);
    drop(log); // crash: the reopened index is preallocated again
    let log = Log::open(dir.path(), cfg).expect("reopen");
    assert_eq!(read_all(&log), written);
}

/// (position, length) of each batch in a segment file.
fn batch_spans(path: &Path) -> Vec<(usize, usize)> {
    let data = fs::read(path).expect("read");
    batches(&data).map(|r| r.expect("valid")).map(|(p, h)| (p, h.total_len())).collect()
}

#[test]
fn crash_truncation_at_every_position_keeps_the_valid_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 2000, ..tiny() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    let written = fill(&mut log, 30);
    drop(log);
    let active = last_log_file(dir.path());
    let original = fs::read(&active).expect("read");
    let spans = batch_spans(&active);
    let in_earlier_segments = written.len() - spans.len();
    // Every interesting place in every batch: boundaries, header fields, payload.
    let mut cuts: Vec<usize> = spans
        .iter()
        .flat_map(|&(p, l)| [0, 1, 8, 11, 12, 17, 30, 60, 61, l / 2, l - 1].into_iter().filter(move |r| *r < l).map(move |r| p + r))
        .collect();
    cuts.push(original.len());
    for cut in cuts {
        let copy = tempfile::tempdir().expect("tempdir");
        for f in fs::read_dir(dir.path()).expect("ls") {
            let f = f.expect("entry").path();
            fs::copy(&f, copy.path().join(f.file_name().expect("name"))).expect("copy");
        }
        let target = copy.path().join(active.file_name().expect("name"));
        fs::write(&target, &original[..cut]).expect("truncate");
        let mut log = Log::open(copy.path(), cfg.clone()).expect("open after crash");
        let whole = spans.iter().filter(|(p, l)| p + l <= cut).count();
        let got = read_all(&log);
        assert_eq!(got.len(), in_earlier_segments + whole, "cut at {cut}");
        assert_eq!(&got[..], &written[..got.len()]);
        let kept: usize = spans.iter().take(whole).map(|(_, l)| l).sum();
        assert_eq!(fs::metadata(&target).expect("meta").len() as usize, kept, "torn tail truncated");
        let end = log.log_end_offset();
        let b = append(&mut log, batch(2, 0, 10, 99));
        assert_eq!(header(&b).base_offset, end, "appends continue contiguously");
        assert_eq!(read_all(&log).last(), Some(&b));
    }
}

#[test]
fn crash_with_flipped_bytes_keeps_batches_before_the_flip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 3000, ..tiny() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    let written = fill(&mut log, 40);
    drop(log);
    let active = last_log_file(dir.path());
    let original = fs::read(&active).expect("read");
    let spans = batch_spans(&active);
    let in_earlier_segments = written.len() - spans.len();
    // Every header field (but the partition leader epoch, which no checksum covers)
    // and some payload bytes of every batch of the active segment.
    let flips = spans.iter().enumerate().flat_map(|(i, &(p, l))| {
        [0, 7, 8, 11, 16, 17, 20, 21, 23, 27, 35, 43, 51, 53, 57, 60, 61, l / 2, l - 1]
            .into_iter()
            .filter(move |r| *r < l)
            .map(move |r| (i, p + r))
    });
    for (i, pos) in flips {
        let copy = tempfile::tempdir().expect("tempdir");
        for f in fs::read_dir(dir.path()).expect("ls") {
            let f = f.expect("entry").path();
            fs::copy(&f, copy.path().join(f.file_name().expect("name"))).expect("copy");
        }
        let mut bytes = original.clone();
        bytes[pos] ^= 0x10;
        fs::write(copy.path().join(active.file_name().expect("name")), &bytes).expect("write");
        let mut log = Log::open(copy.path(), cfg.clone()).expect("open after corruption");
        let got = read_all(&log);
        assert_eq!(got.len(), in_earlier_segments + i, "flip at {pos}");
        assert_eq!(&got[..], &written[..got.len()]);
        let end = log.log_end_offset();
        assert_eq!(header(&append(&mut log, batch(1, 0, 5, 7))).base_offset, end);
    }
}

#[test]
fn deleted_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { index_interval_bytes: 64, ..tiny() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    let written = fill(&mut log, 50);
    let entries: Vec<_> = log.closed.values().map(|s| s.index_len()).collect();
    log.close().expect("close");
    for p in files(dir.path(), "index").into_iter().chain(files(dir.path(), "timeindex")) {
        fs::remove_file(p).expect("rm");
    }
    let log = Log::open(dir.path(), cfg.clone()).expect("open");
    assert_eq!(log.closed.values().map(|s| s.index_len()).collect::<Vec<_>>(), entries);
    assert!(entries.iter().any(|(o, t)| *o > 0 && *t > 0));
    assert_eq!(read_all(&log), written);
    assert_eq!(files(dir.path(), "index").len(), files(dir.path(), "log").len());
}

#[test]
fn zero_filled_preallocated_indexes_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 4000, index_interval_bytes: 64, ..tiny() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    let written = fill(&mut log, 40);
    let (index_path, _) = log.active.index_paths();
    drop(log);
    // The active index is still preallocated: valid entries, then zeros.
    assert_eq!(fs::metadata(&index_path).expect("meta").len(), 4096);
    // A closed segment caught mid-roll: its index zero-extended to the preallocated size.
    let closed_index = files(dir.path(), "index").into_iter().next().expect("index");
    let f = fs::OpenOptions::new().write(true).open(&closed_index).expect("open");
    f.set_len(4096).expect("extend");
    drop(f);
    let log = Log::open(dir.path(), cfg.clone()).expect("open");
    assert_eq!(read_all(&log), written);
    assert_eq!(fs::metadata(&closed_index).expect("meta").len() % 8, 0);
    assert!(fs::metadata(&closed_index).expect("meta").len() < 4096, "rebuilt and trimmed");
    // An all-zero active index is just as fine.
    drop(log);
    fs::write(&index_path, vec![0u8; 4096]).expect("zero");
    let log = Log::open(dir.path(), cfg).expect("open");
    assert_eq!(read_all(&log), written);
}

#[test]
fn garbage_index_files_never_break_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { index_interval_bytes: 64, ..tiny() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    let written = fill(&mut log, 40);
    log.close().expect("close");
    for (i, p) in files(dir.path(), "index").into_iter().chain(files(dir.path(), "timeindex")).enumerate() {
        let garbage: Vec<u8> = (0..(i * 7 % 50)).map(|j| (j * 73 + i) as u8).collect();
        fs::write(p, garbage).expect("write");
    }
    let log = Log::open(dir.path(), cfg).expect("open");
    assert_eq!(read_all(&log), written);
}

#[test]
fn stray_files_are_cleaned_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    let written = fill(&mut log, 5);
    log.close().expect("close");
    fs::write(dir.path().join("00000000000000000000.snapshot.tmp"), b"half").expect("write");
    fs::write(dir.path().join("00000000000000009999.index"), b"orphan").expect("write");
    fs::write(dir.path().join("00000000000000009999.snapshot"), b"beyond the end").expect("write");
    let log = Log::open(dir.path(), tiny()).expect("open");
    assert_eq!(read_all(&log), written);
    assert!(!dir.path().join("00000000000000000000.snapshot.tmp").exists());
    assert!(!dir.path().join("00000000000000009999.index").exists());
    assert!(!dir.path().join("00000000000000009999.snapshot").exists());
}

#[test]
fn timestamp_lookup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { index_interval_bytes: 64, ..tiny() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    // Timestamps 1000, 1010, ... with one out-of-order batch.
    let mut written = Vec::new();
    for i in 0..80i64 {
        let ts = if i == 40 { 5 } else { 1_000 + 10 * i };
        written.push(append(&mut log, batch(2, ts, 60, i as u64)));
    }
    let check = |log: &Log| {
        assert_eq!(log.find_batch_by_timestamp(0).expect("find").as_deref(), Some(&written[0][..]));
        assert_eq!(log.find_batch_by_timestamp(1_000).expect("find").as_deref(), Some(&written[0][..]));
        assert_eq!(log.find_batch_by_timestamp(1_001).expect("find").as_deref(), Some(&written[1][..]));
        assert_eq!(log.find_batch_by_timestamp(1_395).expect("find").as_deref(), Some(&written[41][..]));
        assert_eq!(log.find_batch_by_timestamp(1_790).expect("find").as_deref(), Some(&written[79][..]));
        assert_eq!(log.find_batch_by_timestamp(1_791).expect("find"), None);
        for i in [3usize, 17, 39, 41, 55, 78] {
            let ts = 1_000 + 10 * i as i64;
            assert_eq!(log.find_batch_by_timestamp(ts).expect("find").as_deref(), Some(&written[i][..]), "ts {ts}");
        }
    };
    check(&log);
    log.close().expect("close");
    let log = Log::open(dir.path(), cfg.clone()).expect("open");
    check(&log);
    drop(log);
    for p in files(dir.path(), "timeindex") {
        fs::remove_file(p).expect("rm");
    }
    let mut log = Log::open(dir.path(), cfg).expect("open");
    check(&log);
    // Below the log start, batches are skipped.
    let start = header(&written[10]).base_offset;
    log.delete_records(start).expect("delete");
    assert_eq!(log.find_batch_by_timestamp(0).expect("find").as_deref(), Some(&written[10][..]));
}

#[test]
fn retention_by_time_rolls_an_expired_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { retention_ms: Some(1_000), ..tiny() };
    let mut log = Log::open(dir.path(), cfg).expect("open");
    // Old batches (ts 1000..), then new ones (ts 100_000..).
    for i in 0..30 {
        append(&mut log, batch(1, 1_000 + i, 100, i as u64));
    }
    let boundary = log.log_end_offset();
    log.flush().expect("flush");
    let mut recent = Vec::new();
    for i in 0..30 {
        recent.push(append(&mut log, batch(1, 100_000 + i, 100, i as u64)));
    }
    let deleted = log.enforce_retention(100_500).expect("retention");
    assert!(deleted > 0);
    assert!(log.log_start_offset() <= boundary, "a segment with new data is kept");
    assert!(log.log_start_offset() > 0);
    assert!(read_all(&log).ends_with(&recent));
    assert_eq!(log.enforce_retention(100_500).expect("again"), 0);
    // Everything expired: the active segment is rolled and deleted too.
    let end = log.log_end_offset();
    assert!(log.enforce_retention(1_000_000).expect("all") > 0);
    assert_eq!(log.log_start_offset(), end);
    assert_eq!(log.size_bytes(), 0);
    assert!(read_all(&log).is_empty());
    assert!(matches!(log.read(end - 1, 100, i64::MAX, true), Err(StorageError::OffsetOutOfRange { .. })));
    let b = append(&mut log, batch(1, 2_000_000, 10, 1));
    assert_eq!(header(&b).base_offset, end);
    let start = log.log_start_offset();
    log.close().expect("close");
    let log = Log::open(dir.path(), tiny()).expect("reopen");
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(read_all(&log), vec![b]);
}

#[test]
fn retention_by_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    let written = fill(&mut log, 100);
    let total = log.size_bytes();
    log.set_config(LogConfig { retention_bytes: Some(total / 2), ..tiny() });
    let deleted = log.enforce_retention(0).expect("retention");
    assert!(deleted > 0);
    let size = log.size_bytes();
    assert!(size >= total / 2, "never below retention.bytes");
    assert!(size < total / 2 + 1024, "at most one segment above it");
    let got = read_all(&log);
    assert!(written.ends_with(&got));
    assert_eq!(header(&got[0]).base_offset, log.log_start_offset());
    assert_eq!(files(dir.path(), "log").len(), log.closed.len() + 1);
}

/// `cleanup.policy`: retention deletes segments for `delete` and `compact,delete`,
/// never for `compact` alone (whose log the cleaner keeps); DeleteRecords applies
/// to every policy.
#[test]
fn retention_applies_only_to_policies_that_delete() {
    for (policy, deletes) in [(CleanupPolicy::COMPACT, false), (CleanupPolicy::COMPACT_DELETE, true), (CleanupPolicy::DELETE, true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = Log::open(dir.path(), tiny()).expect("open");
        let written = fill(&mut log, 60);
        let total = log.size_bytes();
        log.set_config(LogConfig { retention_ms: Some(1), retention_bytes: Some(total / 3), cleanup_policy: policy, ..tiny() });
        let deleted = log.enforce_retention(i64::MAX / 2).expect("retention");
        assert_eq!(deleted > 0, deletes, "{policy:?}");
        if !deletes {
            assert_eq!((log.log_start_offset(), read_all(&log)), (0, written.clone()), "{policy:?} keeps everything");
        }
        let end = log.log_end_offset();
        assert_eq!(log.delete_records(end).expect("delete records"), end, "{policy:?}");
    }
}

#[test]
fn delete_records_persists_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    let written = fill(&mut log, 60);
    let segments_before = files(dir.path(), "log").len();
    let mid = header(&written[30]).base_offset + 1; // inside batch 30
    assert_eq!(log.delete_records(mid).expect("delete"), mid);
    assert_eq!(log.delete_records(mid - 5).expect("no-op"), mid, "never moves back");
    assert!(files(dir.path(), "log").len() < segments_before);
    assert!(matches!(log.read(mid - 1, 100, i64::MAX, true), Err(StorageError::OffsetOutOfRange { .. })));
    let s = log.read(mid, 100_000, i64::MAX, true).expect("read");
    assert_eq!(s.first_offset, mid - 1, "the batch holding the start is returned whole");
    drop(log); // crash
    let mut log = Log::open(dir.path(), tiny()).expect("reopen");
    assert_eq!(log.log_start_offset(), mid);
    let end = log.log_end_offset();
    assert_eq!(log.delete_records(i64::MAX).expect("delete all"), end, "clamped to the log end");
    log.close().expect("close");
    let log = Log::open(dir.path(), tiny()).expect("reopen");
    assert_eq!(log.log_start_offset(), end);
    assert!(read_all(&log).is_empty());
}

#[test]
fn lost_tail_above_the_log_start_restarts_empty_at_the_log_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 1 << 20, ..tiny() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    fill(&mut log, 10);
    let end = log.log_end_offset();
    log.delete_records(end - 1).expect("delete");
    drop(log);
    // The whole unsynced active segment is lost.
    fs::write(last_log_file(dir.path()), b"").expect("truncate");
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (end - 1, end - 1));
    let b = append(&mut log, batch(1, 0, 10, 1));
    assert_eq!(header(&b).base_offset, end - 1, "offsets below the start are never reused");
    drop(log);
    let log = Log::open(dir.path(), cfg).expect("open");
    assert_eq!(read_all(&log), vec![b]);
    assert_eq!(files(dir.path(), "log").len(), 1);
}

#[test]
fn segment_ms_rolls_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 1 << 20, segment_ms: Some(100), ..tiny() };
    let mut log = Log::open(dir.path(), cfg).expect("open");
    let b = batch(1, 0, 10, 1);
    log.append(&b, 0, 1_000).expect("append");
    let b = batch(1, 0, 10, 2);
    log.append(&b, 0, 1_100).expect("append");
    assert_eq!(files(dir.path(), "log").len(), 1);
    let b = batch(1, 0, 10, 3);
    log.append(&b, 0, 1_101).expect("append");
    assert_eq!(files(dir.path(), "log").len(), 2);
}

#[test]
fn a_compacted_log_rolls_by_max_compaction_lag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 1 << 20, cleanup_policy: CleanupPolicy::COMPACT, max_compaction_lag_ms: 100, ..tiny() };
    let mut log = Log::open(dir.path(), cfg).expect("open");
    log.append(&batch(1, 0, 10, 1), 0, 1_000).expect("append");
    log.append(&batch(1, 0, 10, 2), 0, 1_100).expect("append");
    assert_eq!(files(dir.path(), "log").len(), 1);
    log.append(&batch(1, 0, 10, 3), 0, 1_101).expect("append");
    assert_eq!(files(dir.path(), "log").len(), 2, "segment.ms is unset: max.compaction.lag.ms rolled it");
}

#[test]
fn flush_target_flush_and_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("topic-0");
    let mut log = Log::open(&path, tiny()).expect("open");
    fill(&mut log, 3);
    let t = log.flush_target().expect("active segment is open");
    assert_eq!(t.log_end_offset, log.log_end_offset());
    t.file.sync_data().expect("sync outside the lock");
    log.flush().expect("flush");
    log.delete().expect("delete");
    assert!(!path.exists());
}

#[test]
fn reads_survive_segment_deletion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    let written = fill(&mut log, 40);
    let s = log.read(0, 100_000, i64::MAX, true).expect("read");
    log.delete_records(log.log_end_offset()).expect("delete");
    assert!(written[0].starts_with(&s.bytes[..written[0].len()]), "zero-copy bytes stay valid after unlink");
}

// ---- idempotent producers ----

#[test]
fn producer_duplicates_gaps_and_fencing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    let first = append(&mut log, pbatch(3, 7, 0, 0));
    append(&mut log, pbatch(2, 7, 0, 3));
    let end = log.log_end_offset();
    // Retry of the first batch: nothing written, original offsets.
    let info = log.append(&pbatch(3, 7, 0, 0), 0, 0).expect("dup");
    assert!(info.duplicate);
    assert_eq!((info.base_offset, info.last_offset), (0, 2));
    assert_eq!(log.log_end_offset(), end);
    // Gap.
    assert!(matches!(
        log.append(&pbatch(1, 7, 0, 6), 0, 0),
        Err(StorageError::OutOfOrderSequence { producer_id: 7, expected: 5, got: 6, .. })
    ));
    // Fenced epoch.
    assert!(matches!(
        log.append(&pbatch(1, 7, -1, 5), 0, 0),
        Err(StorageError::InvalidProducerEpoch { producer_id: 7, current: 0, got: -1 })
    ));
    // New epoch must start at 0.
    assert!(matches!(log.append(&pbatch(1, 7, 1, 5), 0, 0), Err(StorageError::OutOfOrderSequence { expected: 0, got: 5, .. })));
    append(&mut log, pbatch(1, 7, 1, 0));
    assert!(matches!(log.append(&pbatch(1, 7, 0, 5), 0, 0), Err(StorageError::InvalidProducerEpoch { .. })));
    // Unknown producer: any sequence.
    append(&mut log, pbatch(1, 8, 0, 42));
    assert_eq!(log.log_end_offset(), end + 2);
    assert_eq!(read_all(&log)[0], first);
}

#[test]
fn producer_checks_are_all_or_nothing_per_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    let mut call = pbatch(2, 5, 0, 0);
    call.extend(pbatch(2, 5, 0, 2)); // in order with the first batch of the same call
    log.append(&call, 0, 0).expect("append");
    let mut bad = pbatch(1, 5, 0, 4);
    bad.extend(pbatch(1, 5, 0, 9));
    assert!(log.append(&bad, 0, 0).is_err());
    assert_eq!(log.log_end_offset(), 4, "the valid first batch was not written either");
    append(&mut log, pbatch(1, 5, 0, 4));
}

#[test]
fn producer_state_survives_clean_and_crash_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    // Enough batches to roll several times (snapshots at each roll).
    for seq in 0..40 {
        append(&mut log, pbatch(1, 11, 2, seq));
        append(&mut log, batch(1, 0, 50, seq as u64));
    }
    let check = |log: &mut Log, next: i32| {
        let info = log.append(&pbatch(1, 11, 2, next - 1), 0, 0).expect("dup");
        assert!(info.duplicate);
        assert!(matches!(
            log.append(&pbatch(1, 11, 2, next + 1), 0, 0),
            Err(StorageError::OutOfOrderSequence { expected, .. }) if expected == next
        ));
        assert!(matches!(log.append(&pbatch(1, 11, 1, 0), 0, 0), Err(StorageError::InvalidProducerEpoch { .. })));
    };
    check(&mut log, 40);
    log.close().expect("close");
    assert!(!files(dir.path(), "snapshot").is_empty());
    let mut log = Log::open(dir.path(), tiny()).expect("clean reopen");
    check(&mut log, 40);
    append(&mut log, pbatch(1, 11, 2, 40));
    drop(log); // crash: state after the last snapshot comes from the batch headers
    let mut log = Log::open(dir.path(), tiny()).expect("crash reopen");
    check(&mut log, 41);
    drop(log);
    for p in files(dir.path(), "snapshot") {
        fs::write(p, b"corrupt").expect("corrupt");
    }
    let mut log = Log::open(dir.path(), tiny()).expect("reopen without snapshots");
    check(&mut log, 41);
}

#[test]
fn crash_truncation_below_a_snapshot_discards_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 1 << 20, ..tiny() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    for seq in 0..5 {
        append(&mut log, pbatch(1, 1, 0, seq));
    }
    log.close().expect("close"); // snapshot at 5
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    append(&mut log, pbatch(1, 1, 0, 5));
    drop(log);
    // Lose the last three batches (a torn tail that fsync never covered).
    let seg = last_log_file(dir.path());
    let spans = batch_spans(&seg);
    fs::OpenOptions::new().write(true).open(&seg).expect("open").set_len(spans[3].0 as u64).expect("truncate");
    let mut log = Log::open(dir.path(), cfg).expect("open");
    assert_eq!(log.log_end_offset(), 3);
    assert!(files(dir.path(), "snapshot").iter().all(|p| !p.ends_with("00000000000000000005.snapshot")));
    append(&mut log, pbatch(1, 1, 0, 3));
}

// ---- random operations ----

#[derive(Debug, Clone)]
enum Op {
    Append {
        count: i32,
        len: usize,
    },
    /// DeleteRecords up to a fraction of the way from the log start to the log end.
    DeleteRecords(f64),
    CleanRestart,
    CrashRestart,
    /// Crash, then cut the active segment at a fraction of its length.
    CrashTruncate(f64),
    /// Crash, then flip a bit at a fraction of the active segment's length.
    CrashFlip(f64, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1i32..6, 0usize..400).prop_map(|(count, len)| Op::Append { count, len }),
        1 => (0.0f64..1.0).prop_map(Op::DeleteRecords),
        1 => Just(Op::CleanRestart),
        1 => Just(Op::CrashRestart),
        1 => (0.0f64..1.0).prop_map(Op::CrashTruncate),
        1 => (0.0f64..1.0, 0u8..8).prop_map(|(f, b)| Op::CrashFlip(f, b)),
    ]
}

/// Compares batches ignoring the partition leader epoch (covered by no checksum).
fn same_batch(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a[..12] == b[..12] && a[16..] == b[16..]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn random_appends_restarts_and_corruptions(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig { segment_bytes: 1500, index_interval_bytes: 100, ..tiny() };
        let mut log = Some(Log::open(dir.path(), cfg.clone()).expect("open"));
        // The batches from the log start on, as written.
        let mut model: Vec<Vec<u8>> = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            let Some(mut l) = log.take() else { break };
            match op {
                Op::Append { count, len } => {
                    let end = l.log_end_offset();
                    let b = append(&mut l, batch(count, n as i64, len, n as u64));
                    prop_assert_eq!(header(&b).base_offset, end);
                    model.push(b);
                    log = Some(l);
                    continue;
                }
                Op::DeleteRecords(f) => {
                    let (start, end) = (l.log_start_offset(), l.log_end_offset());
                    let before = start + ((end - start) as f64 * f) as i64;
                    let new_start = l.delete_records(before).expect("delete records");
                    prop_assert_eq!(new_start, before.max(start));
                    model.retain(|b| header(b).last_offset() >= new_start);
                    prop_assert_eq!(read_all(&l), model.clone());
                    log = Some(l);
                    continue;
                }
                Op::CleanRestart => l.close().expect("close"),
                Op::CrashRestart | Op::CrashTruncate(_) | Op::CrashFlip(..) => drop(l),
            }
            // The first batch the corruption touches: every batch before it must survive.
            let mut first_damaged = i64::MAX;
            let seg = last_log_file(dir.path());
            let mut bytes = fs::read(&seg).expect("read");
            if !bytes.is_empty() {
                let headers: Vec<_> = batches(&bytes).map(|r| r.expect("valid")).collect();
                let at = |f: f64| ((bytes.len() as f64 * f) as usize).min(bytes.len() - 1);
                let damaged = |pos: usize| {
                    headers.iter().find(|(p, h)| p + h.total_len() > pos).map_or(i64::MAX, |(_, h)| h.base_offset)
                };
                match op {
                    Op::CrashTruncate(f) => {
                        let cut = at(f);
                        first_damaged = damaged(cut);
                        bytes.truncate(cut);
                    }
                    Op::CrashFlip(f, bit) => {
                        let pos = at(f);
                        first_damaged = damaged(pos);
                        bytes[pos] ^= 1 << bit;
                    }
                    _ => {}
                }
                fs::write(&seg, &bytes).expect("write");
            }
            let must_keep = model.iter().filter(|b| header(b).base_offset < first_damaged).count();
            let l = Log::open(dir.path(), cfg.clone()).expect("reopen never fails");
            let got = read_all(&l);
            prop_assert!(got.len() >= must_keep, "lost batches: kept {} of {}", got.len(), must_keep);
            prop_assert!(got.len() <= model.len());
            for (g, m) in got.iter().zip(&model) {
                prop_assert!(same_batch(g, m));
            }
            match got.last() {
                Some(b) => prop_assert_eq!(l.log_end_offset(), header(b).last_offset() + 1),
                None => prop_assert_eq!(l.log_end_offset(), l.log_start_offset()),
            }
            model = got;
            log = Some(l);
        }
    }
}

#[test]
fn log_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
}

#[test]
fn closed_segments_keep_no_descriptor_and_still_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("topic-0");
    let written = {
        let mut log = Log::open(&path, tiny()).expect("open");
        let written = fill(&mut log, 40);
        assert!(log.closed.len() >= 3, "the fill crosses several segments");
        assert!(log.closed.values().all(|s| s.file().is_err()), "a rolled segment holds no descriptor");
        assert!(log.active.file().is_ok());
        log.close().expect("close");
        written
    };
    let log = Log::open(&path, tiny()).expect("reopen");
    assert!(log.closed.values().all(|s| s.file().is_err()), "a reopened closed segment holds no descriptor");
    assert_eq!(read_all(&log), written);
}

/// `message.timestamp.type=LogAppendTime`: the leader's append stamps each batch with
/// its clock (time index and lookups follow it); a follower stores the leader's bytes.
#[test]
fn a_log_append_time_log_stamps_leader_appends_and_keeps_replicated_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { index_interval_bytes: 64, timestamp_type: crate::TimestampType::LogAppendTime, ..tiny() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    let mut sent = Vec::new();
    for i in 0..30i64 {
        // Create times run backwards; append times forwards.
        let b = batch(2, 50_000 - i, 60, i as u64);
        let info = log.append(&b, 3, 10_000 + 10 * i).expect("append");
        assert_eq!(info.max_timestamp, 10_000 + 10 * i);
        sent.push(b);
    }
    let idem = pbatch(1, 7, 0, 0);
    let info = log.append(&idem, 3, 20_000).expect("idempotent append");
    let retry = log.append(&idem, 3, 25_000).expect("retried");
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.max_timestamp), (info.base_offset, 20_000), "a retry answers with the original append time");
    let stored = read_all(&log);
    assert_eq!(stored.len(), 31);
    for (i, (b, original)) in stored.iter().zip(&sent).enumerate() {
        let h = BatchHeader::parse_checked(b).expect("CRC valid on disk");
        assert!(h.is_log_append_time());
        assert_eq!((h.max_timestamp, h.base_timestamp), (10_000 + 10 * i as i64, 50_000 - i as i64));
        assert_eq!(&b[karst_batch::STAMPED_HEAD_LEN..], &original[karst_batch::STAMPED_HEAD_LEN..], "records as sent");
    }
    assert_eq!(log.find_batch_by_timestamp(10_101).expect("find").as_deref(), Some(&stored[11][..]), "by append time");
    assert_eq!(log.max_timestamp(), 20_000);
    // Kafka's validator stamps control batches too.
    let marker = log.append_marker(7, 0, 0, true, 3, 30_000).expect("a marker");
    let stored = read_all(&log);
    let h = BatchHeader::parse_checked(stored.last().expect("the marker")).expect("valid");
    assert!(h.is_control() && h.is_log_append_time());
    assert_eq!((h.base_offset, h.max_timestamp), (marker.base_offset, 30_000));

    // A follower of a LogAppendTime topic stores exactly what its leader stored.
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let mut follower = Log::open(follower_dir.path(), cfg).expect("open");
    let all: Vec<u8> = read_all(&log).concat();
    follower.append_replicated(&all, 99_999).expect("replicated");
    assert_eq!(read_all(&follower), read_all(&log));

    // A batch whose CRC does not match is refused, not stamped valid.
    let mut bad = batch(1, 1, 10, 1);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(log.append(&bad, 3, 1), Err(StorageError::Batch(karst_batch::BatchError::CrcMismatch { .. }))));
}
