//! The log cleaner's rules, one test each, and a property test of the whole log
//! against a model (latest value per key, tombstones until their delete horizon,
//! offsets unchanged). Crash safety: `cleaner_crash_tests`.
use std::collections::BTreeMap;
use std::fs;
use std::ops::ControlFlow;
use std::path::Path;

use karst_batch::compression;
use karst_batch::records::{encode_batch, parse_records, Record};
use karst_batch::{BatchHeader, CONTROL_BIT, HEADER_LEN, TRANSACTIONAL_BIT};
use proptest::prelude::*;

use crate::{CleanStats, CleanerConfig, CleanupPolicy, Isolation, Log, LogConfig, StorageError, Throttler};

// ---------------------------------------------------------------------------
// Support (also used by the crash tests)
// ---------------------------------------------------------------------------

/// A record's key and value (a `None` value is a tombstone).
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A batch to append: records with optional keys and values (a `None` value is a
/// tombstone), a codec, a first timestamp and producer fields.
#[derive(Debug, Clone)]
pub(crate) struct B {
    records: Vec<KeyValue>,
    codec: i16,
    ts: i64,
    pid: i64,
    epoch: i16,
    seq: i32,
    attributes: i16,
}

impl B {
    pub(crate) fn at(ts: i64) -> B {
        B { records: Vec::new(), codec: 0, ts, pid: -1, epoch: -1, seq: -1, attributes: 0 }
    }
    pub(crate) fn kv(mut self, k: &str, v: &str) -> B {
        self.records.push((Some(k.as_bytes().to_vec()), Some(v.as_bytes().to_vec())));
        self
    }
    pub(crate) fn tomb(mut self, k: &str) -> B {
        self.records.push((Some(k.as_bytes().to_vec()), None));
        self
    }
    pub(crate) fn keyless(mut self, v: &str) -> B {
        self.records.push((None, Some(v.as_bytes().to_vec())));
        self
    }
    pub(crate) fn codec(mut self, codec: i16) -> B {
        self.codec = codec;
        self
    }
    pub(crate) fn producer(mut self, pid: i64, epoch: i16, seq: i32) -> B {
        (self.pid, self.epoch, self.seq) = (pid, epoch, seq);
        self
    }
    pub(crate) fn transactional(mut self) -> B {
        self.attributes |= TRANSACTIONAL_BIT;
        self
    }

    /// A transaction marker of `pid` (commit or abort).
    pub(crate) fn marker(ts: i64, pid: i64, epoch: i16, commit: bool) -> B {
        let mut b = B::at(ts);
        b.records.push((Some(vec![0, 0, 0, u8::from(commit)]), Some(vec![0, 0, 0, 0, 0, 0])));
        (b.pid, b.epoch, b.seq, b.attributes) = (pid, epoch, -1, TRANSACTIONAL_BIT | CONTROL_BIT);
        b
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        let mut raw = Vec::new();
        for (i, (k, v)) in self.records.iter().enumerate() {
            let r = Record {
                attributes: 0,
                timestamp_delta: i as i64,
                offset_delta: i as i32,
                key: k.as_deref(),
                value: v.as_deref(),
                headers: &[0],
            };
            r.encode(&mut raw);
        }
        let payload = compression::compress(self.codec, &raw).expect("compress");
        let n = self.records.len() as i32;
        let h = BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: self.attributes | self.codec,
            last_offset_delta: (n - 1).max(0),
            base_timestamp: self.ts,
            max_timestamp: self.ts + i64::from(n.max(1) - 1),
            producer_id: self.pid,
            producer_epoch: self.epoch,
            base_sequence: self.seq,
            record_count: n,
        };
        let mut out = Vec::new();
        encode_batch(&h, &payload, &mut out).expect("encode");
        out
    }
}

/// A data record as read back: offset, key, value.
pub(crate) type Rec = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every batch of the log from its start, with its bytes (CRCs checked, offsets increasing).
pub(crate) fn batches(log: &Log) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out: Vec<(BatchHeader, Vec<u8>)> = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let slice = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        assert!(!slice.bytes.is_empty(), "nothing read at {offset} before the log end {}", log.log_end_offset());
        for item in karst_batch::batches(&slice.bytes) {
            let (pos, h) = item.expect("every batch passes its CRC");
            if let Some((last, _)) = out.last() {
                assert!(h.base_offset > last.last_offset(), "offsets increase");
            }
            out.push((h, slice.bytes[pos..pos + h.total_len()].to_vec()));
            offset = h.last_offset() + 1;
        }
    }
    out
}

/// The decoded records of one batch.
pub(crate) fn decode(h: &BatchHeader, bytes: &[u8]) -> Vec<Rec> {
    let body = &bytes[HEADER_LEN..];
    let payload = compression::decompress(h.compression(), body, 1 << 24).expect("decompress");
    parse_records(&payload, h.record_count)
        .expect("records")
        .iter()
        .map(|r| (r.offset(h.base_offset), r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec)))
        .collect()
}

/// Every data record of the log from its start (control batches left out).
pub(crate) fn records(log: &Log) -> Vec<Rec> {
    batches(log).iter().filter(|(h, _)| !h.is_control()).flat_map(|(h, b)| decode(h, b)).collect()
}

pub(crate) fn append(log: &mut Log, b: &B) -> i64 {
    log.append(&b.build(), 0, b.ts).expect("append").base_offset
}

/// Closes the active segment so everything written so far can be cleaned.
pub(crate) fn roll(log: &mut Log) {
    let end = log.log_end_offset();
    log.roll(end).expect("roll");
}

pub(crate) fn compacted() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        segment_ms: None,
        index_interval_bytes: 64,
        segment_index_bytes: 4096,
        retention_ms: None,
        retention_bytes: None,
        cleanup_policy: CleanupPolicy::COMPACT,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

pub(crate) fn go_on(_: u64) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

pub(crate) fn clean(log: &mut Log, now: i64) -> Option<CleanStats> {
    log.clean(now, i64::MAX, &CleanerConfig::default(), &mut go_on).expect("clean")
}

fn key(k: &str) -> Option<Vec<u8>> {
    Some(k.as_bytes().to_vec())
}

/// Files in `dir` whose names end with `suffix`.
pub(crate) fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Looks up every offset of the log and every record timestamp, through the indexes.
pub(crate) fn check_lookups(log: &Log) {
    let all = batches(log);
    for (i, (h, _)) in all.iter().enumerate() {
        let from = if i == 0 { log.log_start_offset() } else { all[i - 1].0.last_offset() + 1 };
        for offset in from..=h.last_offset() {
            let slice = log.read(offset, 1, i64::MAX, true).expect("read by offset");
            let got = BatchHeader::parse(&slice.bytes).expect("a batch");
            assert_eq!(got.base_offset, h.base_offset, "read at {offset} starts at the batch holding it, or the next one");
        }
        if h.max_timestamp >= 0 {
            let want = all.iter().find(|(o, _)| o.max_timestamp >= h.max_timestamp).map(|(o, _)| o.base_offset);
            let found =
                log.find_batch_by_timestamp(h.max_timestamp).expect("by time").map(|b| BatchHeader::parse(&b).expect("batch").base_offset);
            assert_eq!(found, want, "lookup of timestamp {}", h.max_timestamp);
        }
    }
}

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

#[test]
fn the_latest_value_of_each_key_is_kept_at_its_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    append(&mut log, &B::at(1_000).kv("a", "1").kv("b", "1"));
    append(&mut log, &B::at(1_001).kv("c", "1"));
    roll(&mut log);
    append(&mut log, &B::at(1_002).kv("a", "2").kv("d", "1"));
    append(&mut log, &B::at(1_003).kv("c", "2"));
    roll(&mut log);
    append(&mut log, &B::at(1_004).kv("a", "3"));
    let end = log.log_end_offset();

    let stats = clean(&mut log, 10_000).expect("something to clean");
    let want = vec![(1, key("b"), key("1")), (4, key("d"), key("1")), (5, key("c"), key("2")), (6, key("a"), key("3"))];
    // "a"=2 at offset 3 stays: the active segment (offset 6) is not in the map.
    let want_with_active = vec![want[0].clone(), (3, key("a"), key("2")), want[1].clone(), want[2].clone(), want[3].clone()];
    assert_eq!(records(&log), want_with_active);
    assert_eq!((log.log_end_offset(), stats.first_dirty_offset, stats.end_offset), (end, 0, 6));
    assert_eq!((stats.segments_cleaned, stats.segments_written, stats.records_read, stats.records_retained), (2, 1, 6, 4));
    assert_eq!(log.cleaner_checkpoint, Some(6));
    // The batch whose records all went is dropped; the group's last batch is kept.
    assert_eq!(batches(&log).iter().map(|(h, _)| (h.base_offset, h.record_count)).collect::<Vec<_>>(), [(0, 1), (3, 2), (5, 1), (6, 1)]);

    roll(&mut log);
    assert!(clean(&mut log, 10_000).is_some(), "the active segment became dirty");
    assert_eq!(records(&log), want);
    assert!(clean(&mut log, 10_000).is_none(), "nothing dirty left");
    check_lookups(&log);

    drop(log); // no clean shutdown
    let log = Log::open(dir.path(), compacted()).expect("reopen");
    assert_eq!(records(&log), want);
    assert_eq!(log.cleaner_checkpoint, Some(end));
    check_lookups(&log);
}

#[test]
fn only_compacted_logs_with_closed_dirty_segments_are_cleaned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig { cleanup_policy: CleanupPolicy::DELETE, ..compacted() }).expect("open");
    append(&mut log, &B::at(1).kv("a", "1"));
    append(&mut log, &B::at(2).kv("a", "2"));
    roll(&mut log);
    assert!(clean(&mut log, 10).is_none(), "delete policy");
    assert!(!log.should_clean(10, i64::MAX).expect("should"));
    log.set_config(compacted());
    append(&mut log, &B::at(3).kv("a", "3"));
    assert!(clean(&mut log, 10).is_some(), "compact: the closed segment");
    assert_eq!(records(&log), vec![(1, key("a"), key("2")), (2, key("a"), key("3"))]);
    assert!(clean(&mut log, 10).is_none(), "only the active segment is dirty");
    let dir2 = tempfile::tempdir().expect("tempdir");
    let mut empty = Log::open(dir2.path(), LogConfig { cleanup_policy: CleanupPolicy::COMPACT_DELETE, ..compacted() }).expect("open");
    assert!(clean(&mut empty, 10).is_none(), "empty log");
}

#[test]
fn the_stable_offset_bounds_the_dirty_section() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    append(&mut log, &B::at(1).kv("a", "1"));
    roll(&mut log);
    append(&mut log, &B::at(2).kv("a", "2"));
    roll(&mut log);
    append(&mut log, &B::at(3).kv("b", "1"));
    // The high watermark inside the second segment: only the first is cleanable.
    let c = log.cleanable(10, 1).expect("cleanable");
    assert_eq!((c.first_dirty_offset, c.first_uncleanable_offset), (0, 1));
    let stats = log.clean(10, 1, &CleanerConfig::default(), &mut go_on).expect("clean").expect("work");
    assert_eq!(stats.end_offset, 1);
    assert_eq!(records(&log).len(), 3, "a=1 is the latest below the stable offset");
    assert_eq!(log.clean(10, 1, &CleanerConfig::default(), &mut go_on).expect("clean"), None);
    clean(&mut log, 10).expect("the rest");
    assert_eq!(records(&log), vec![(1, key("a"), key("2")), (2, key("b"), key("1"))]);
}

#[test]
fn tombstones_stay_until_the_delete_horizon_their_first_clean_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    append(&mut log, &B::at(100).kv("a", "1").kv("b", "1"));
    append(&mut log, &B::at(101).tomb("a"));
    roll(&mut log);
    clean(&mut log, 5_000).expect("clean");
    let all = batches(&log);
    assert_eq!(records(&log), vec![(1, key("b"), key("1")), (2, key("a"), None)], "the value under the tombstone went");
    let tomb = &all[1].0;
    assert_eq!(tomb.delete_horizon_ms(), Some(6_000), "now + delete.retention.ms, in the base timestamp");
    assert_eq!(decode(tomb, &all[1].1)[0].0, 2);
    assert_eq!(BatchHeader::parse(&all[1].1).expect("h").max_timestamp, 101, "record timestamps survive the new base");
    let body = compression::decompress(0, &all[1].1[HEADER_LEN..], 1 << 20).expect("payload");
    let r = parse_records(&body, 1).expect("records")[0];
    assert_eq!(r.timestamp(tomb.base_timestamp), 101);
    assert_eq!(all[0].0.delete_horizon_ms(), None, "no tombstone, no horizon");

    // Before the horizon a later clean keeps it; at the horizon it goes.
    append(&mut log, &B::at(102).kv("c", "1"));
    roll(&mut log);
    clean(&mut log, 5_999).expect("clean");
    assert!(records(&log).contains(&(2, key("a"), None)));
    assert_eq!(batches(&log)[1].0.delete_horizon_ms(), Some(6_000), "the horizon is not moved");
    append(&mut log, &B::at(103).kv("d", "1"));
    roll(&mut log);
    clean(&mut log, 6_000).expect("clean");
    assert_eq!(records(&log), vec![(1, key("b"), key("1")), (3, key("c"), key("1")), (4, key("d"), key("1"))]);
}

#[test]
fn min_compaction_lag_leaves_young_segments_dirty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { min_compaction_lag_ms: 1_000, ..compacted() };
    let mut log = Log::open(dir.path(), cfg).expect("open");
    append(&mut log, &B::at(1_000).kv("a", "1"));
    append(&mut log, &B::at(1_001).kv("a", "2"));
    roll(&mut log);
    append(&mut log, &B::at(5_000).kv("a", "3"));
    append(&mut log, &B::at(5_001).kv("a", "4"));
    roll(&mut log);
    let c = log.cleanable(5_500, i64::MAX).expect("cleanable");
    assert_eq!((c.first_dirty_offset, c.first_uncleanable_offset), (0, 2), "the second segment is younger than the lag");
    clean(&mut log, 5_500).expect("clean");
    assert_eq!(records(&log).iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(log.cleanable(5_500, i64::MAX).expect("cleanable").cleanable_bytes, 0);
    clean(&mut log, 6_002).expect("old enough now");
    assert_eq!(records(&log), vec![(3, key("a"), key("4"))]);
}

#[test]
fn max_compaction_lag_makes_a_log_due_whatever_its_ratio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg =
        LogConfig { max_compaction_lag_ms: 10_000, min_cleanable_dirty_ratio: crate::DirtyRatio::new(0.99).expect("ratio"), ..compacted() };
    let mut log = Log::open(dir.path(), cfg).expect("open");
    for i in 0..6 {
        append(&mut log, &B::at(1_000 + i).kv(&format!("k{i}"), "v"));
    }
    roll(&mut log);
    clean(&mut log, 2_000).expect("first clean");
    append(&mut log, &B::at(3_000).kv("k0", "w"));
    roll(&mut log);
    let c = log.cleanable(4_000, i64::MAX).expect("cleanable");
    assert!(c.dirty_ratio() > 0.0 && c.dirty_ratio() < 0.99, "{}", c.dirty_ratio());
    assert_eq!(c.compaction_delay_ms, 0);
    assert!(!c.needs_compaction_now());
    assert!(!log.should_clean(4_000, i64::MAX).expect("should"));
    let c = log.cleanable(13_500, i64::MAX).expect("cleanable");
    assert_eq!(c.compaction_delay_ms, 500, "the dirty batch of time 3000 is 500 ms past the lag");
    assert!(c.needs_compaction_now());
    assert!(log.should_clean(13_500, i64::MAX).expect("should"));
}

#[test]
fn the_dirty_ratio_is_dirty_bytes_over_all_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    append(&mut log, &B::at(1).kv("a", "1"));
    roll(&mut log);
    let first = log.size_bytes();
    let c = log.cleanable(10, i64::MAX).expect("cleanable");
    assert_eq!((c.clean_bytes, c.cleanable_bytes, c.dirty_ratio()), (0, first, 1.0));
    assert!(log.should_clean(10, i64::MAX).expect("should"), "1.0 > 0.5");
    clean(&mut log, 10).expect("clean");
    let cleaned = log.size_bytes();
    append(&mut log, &B::at(2).kv("b", "1"));
    append(&mut log, &B::at(3).kv("c", "1"));
    let c = log.cleanable(10, i64::MAX).expect("cleanable");
    assert_eq!((c.clean_bytes, c.cleanable_bytes, c.dirty_ratio()), (cleaned, 0, 0.0), "the active segment does not count");
    roll(&mut log);
    let c = log.cleanable(10, i64::MAX).expect("cleanable");
    let dirty = log.size_bytes() - cleaned;
    assert_eq!((c.clean_bytes, c.cleanable_bytes), (cleaned, dirty));
    assert!((c.dirty_ratio() - dirty as f64 / (cleaned + dirty) as f64).abs() < 1e-12);
    assert!(log.should_clean(10, i64::MAX).expect("should"), "2/3 > 0.5");
}

#[test]
fn the_last_batch_of_each_producer_is_kept_empty_for_its_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    append(&mut log, &B::at(1).kv("a", "1").kv("b", "1").producer(7, 2, 0));
    append(&mut log, &B::at(2).kv("a", "2").producer(7, 2, 2));
    append(&mut log, &B::at(3).kv("a", "3").kv("b", "3"));
    append(&mut log, &B::at(4).kv("z", "1"));
    roll(&mut log);
    clean(&mut log, 10).expect("clean");
    let all = batches(&log);
    let shape: Vec<_> = all.iter().map(|(h, _)| (h.base_offset, h.last_offset(), h.record_count, h.producer_id, h.base_sequence)).collect();
    assert_eq!(shape, [(2, 2, 0, 7, 2), (3, 4, 2, -1, -1), (5, 5, 1, -1, -1)], "producer 7's first batch went, its last stays empty");
    let empty = &all[0].0;
    assert_eq!((empty.producer_epoch, empty.last_sequence(), empty.max_timestamp, empty.compression()), (2, 2, 2, 0));
    drop(log);
    // The sequence survives a restart that replays the cleaned log (no snapshot).
    for s in files_ending(dir.path(), ".snapshot") {
        fs::remove_file(dir.path().join(s)).expect("rm snapshot");
    }
    let mut log = Log::open(dir.path(), compacted()).expect("reopen");
    let p = log.active_producers();
    assert_eq!(p.iter().map(|p| (p.producer_id, p.epoch, p.last_sequence)).collect::<Vec<_>>(), [(7, 2, 2)]);
    append(&mut log, &B::at(5).kv("c", "1").producer(7, 2, 3));
    let e = log.append(&B::at(6).kv("c", "2").producer(7, 2, 9).build(), 0, 6).expect_err("a gap is still a gap");
    assert!(matches!(e, StorageError::OutOfOrderSequence { expected: 4, .. }), "{e:?}");
}

#[test]
fn aborted_data_goes_and_markers_follow_once_their_data_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    // Producer 9: an aborted transaction, then a committed one.
    append(&mut log, &B::at(1).kv("x", "aborted").kv("y", "aborted").producer(9, 0, 0).transactional()); // 0-1
    append(&mut log, &B::marker(2, 9, 0, false)); // 2
    append(&mut log, &B::at(3).kv("x", "committed").producer(9, 0, 2).transactional()); // 3
    append(&mut log, &B::marker(4, 9, 0, true)); // 4
    append(&mut log, &B::at(5).kv("q", "1")); // 5
    roll(&mut log);
    let shape = |log: &Log| {
        batches(log).iter().map(|(h, _)| (h.base_offset, h.is_control(), h.record_count, h.delete_horizon_ms())).collect::<Vec<_>>()
    };

    clean(&mut log, 100).expect("clean");
    assert_eq!(records(&log), vec![(3, key("x"), key("committed")), (5, key("q"), key("1"))], "aborted data removed");
    // The abort marker stays (this clean met its data); the commit marker stays
    // (its transaction's data is kept).
    assert_eq!(shape(&log), [(2, true, 1, None), (3, false, 1, None), (4, true, 1, None), (5, false, 1, None)]);

    // The next clean finds no data of the aborted transaction: its marker gets a horizon...
    append(&mut log, &B::at(6).kv("r", "1"));
    roll(&mut log);
    clean(&mut log, 200).expect("clean");
    assert_eq!(shape(&log)[0], (2, true, 1, Some(1_200)));
    // ...and goes once it has passed.
    append(&mut log, &B::at(7).kv("s", "1"));
    roll(&mut log);
    clean(&mut log, 1_200).expect("clean");
    assert_eq!(shape(&log).iter().map(|s| s.0).collect::<Vec<_>>(), [3, 4, 5, 6, 7]);

    // Once the committed data is overwritten, its marker follows the same way.
    append(&mut log, &B::at(8).kv("x", "later"));
    roll(&mut log);
    clean(&mut log, 2_000).expect("clean");
    assert_eq!(
        shape(&log).iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        [(3, false), (4, true), (5, false), (6, false), (7, false), (8, false)]
    );
    assert_eq!(batches(&log)[0].0.record_count, 0, "producer 9's last data batch stays, empty");
}

#[test]
fn a_producers_last_marker_is_kept_when_its_epoch_has_no_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    append(&mut log, &B::at(1).kv("x", "1").producer(4, 0, 0).transactional());
    append(&mut log, &B::marker(2, 4, 0, false));
    // An epoch bump through an abort marker with no data (a fenced producer).
    append(&mut log, &B::marker(3, 4, 1, false));
    append(&mut log, &B::at(4).kv("q", "1"));
    roll(&mut log);
    for now in [10, 20, 5_000] {
        append(&mut log, &B::at(now).kv(&format!("k{now}"), "v"));
        roll(&mut log);
        clean(&mut log, now).expect("clean");
    }
    let markers: Vec<_> =
        batches(&log).iter().filter(|(h, _)| h.is_control()).map(|(h, _)| (h.base_offset, h.producer_epoch, h.record_count)).collect();
    // Epoch 0's marker went after its horizon; epoch 1's is producer 4's last
    // entry (it fences epoch 0), kept without its record.
    assert_eq!(markers, [(2, 1, 0)]);
    let data: Vec<_> = batches(&log).iter().filter(|(h, _)| h.producer_id == 4 && !h.is_control()).map(|(h, _)| h.record_count).collect();
    assert!(data.is_empty(), "the aborted data went: {data:?}");
}

#[test]
fn compressed_batches_keep_their_codec() {
    for codec in [compression::NONE, compression::GZIP, compression::SNAPPY, compression::LZ4, compression::ZSTD] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = Log::open(dir.path(), compacted()).expect("open");
        let big = "v".repeat(300);
        append(&mut log, &B::at(1).kv("a", &big).kv("b", "1").kv("c", &big).codec(codec));
        append(&mut log, &B::at(2).kv("a", "2").tomb("c").codec(codec));
        append(&mut log, &B::at(3).kv("z", "1"));
        roll(&mut log);
        clean(&mut log, 10).expect("clean");
        let all = batches(&log);
        assert_eq!(all[0].0.compression(), codec, "codec {codec}");
        assert_eq!((all[0].0.base_offset, all[0].0.last_offset(), all[0].0.record_count), (0, 2, 1));
        assert_eq!(all[1].0.compression(), codec);
        assert_eq!(
            records(&log),
            vec![(1, key("b"), key("1")), (3, key("a"), key("2")), (4, key("c"), None), (5, key("z"), key("1"))],
            "codec {codec}"
        );
    }
}

#[test]
fn records_without_a_key_are_removed_as_kafka_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    append(&mut log, &B::at(1).keyless("x").kv("a", "1"));
    append(&mut log, &B::at(2).keyless("y"));
    roll(&mut log);
    append(&mut log, &B::at(3).keyless("in the active segment"));
    let stats = clean(&mut log, 10).expect("clean");
    assert_eq!(stats.keyless_records_removed, 2);
    assert_eq!(records(&log), vec![(1, key("a"), key("1")), (3, None, Some(b"in the active segment".to_vec()))]);
    assert_eq!(batches(&log)[1].0.record_count, 0, "the group's last batch stays, empty");
}

#[test]
fn segments_are_grouped_within_segment_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 1_000, ..compacted() };
    let mut log = Log::open(dir.path(), cfg).expect("open");
    let mut latest = BTreeMap::new();
    for i in 0..200i64 {
        let (k, v) = (format!("k{}", i % 40), format!("{i:0>60}"));
        let offset = append(&mut log, &B::at(i).kv(&k, &v));
        latest.insert(k, (offset, v));
    }
    roll(&mut log);
    // Groups are sized by their segments before cleaning (as Kafka's): full
    // segments are cleaned one by one, and merge on a later clean.
    let before = log.closed.len();
    let stats = clean(&mut log, 1_000).expect("clean");
    assert_eq!((stats.segments_cleaned, stats.segments_written), (before, before));
    for i in 200..210i64 {
        let (k, v) = (format!("k{}", i % 40), format!("{i:0>60}"));
        let offset = append(&mut log, &B::at(i).kv(&k, &v));
        latest.insert(k, (offset, v));
    }
    roll(&mut log);
    let before = log.closed.len();
    let stats = clean(&mut log, 1_000).expect("clean");
    assert_eq!(stats.segments_cleaned, before);
    assert!(stats.segments_written * 2 < before, "{} segments from {before}", stats.segments_written);
    assert!(log.closed.values().all(|s| s.size() <= 1_000));
    let mut want: Vec<Rec> = latest.into_iter().map(|(k, (o, v))| (o, Some(k.into_bytes()), Some(v.into_bytes()))).collect();
    want.sort();
    assert_eq!(records(&log), want);
    check_lookups(&log);
}

#[test]
fn a_full_offset_map_cleans_in_rounds_that_converge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    for i in 0..60i64 {
        append(&mut log, &B::at(i).kv(&format!("k{}", i % 12), &i.to_string()));
        if i % 10 == 9 {
            roll(&mut log);
        }
    }
    let small = CleanerConfig {
        dedupe_buffer_size: 5 * crate::offset_map::BYTES_PER_ENTRY,
        dedupe_buffer_load_factor: 1.0,
        ..CleanerConfig::default()
    };
    let mut rounds = 0;
    while let Some(stats) = log.clean(100, i64::MAX, &small, &mut go_on).expect("clean") {
        assert!(stats.map_keys <= 5);
        rounds += 1;
        assert!(rounds < 20);
    }
    assert!(rounds > 2, "{rounds} rounds");
    let want: Vec<Rec> = (48..60).map(|i| (i, key(&format!("k{}", i % 12)), key(&i.to_string()))).collect();
    assert_eq!(records(&log), want);
}

#[test]
fn reads_by_offset_and_time_and_rebuilt_indexes_agree_after_a_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig { segment_bytes: 700, ..compacted() }).expect("open");
    for i in 0..120i64 {
        let b = if i % 7 == 0 {
            B::at(1_000 + i).tomb(&format!("k{}", i % 9))
        } else {
            B::at(1_000 + i).kv(&format!("k{}", i % 9), &format!("{i:0>30}"))
        };
        append(&mut log, &b.codec((i % 5) as i16));
    }
    roll(&mut log);
    clean(&mut log, 5_000).expect("clean");
    check_lookups(&log);
    let want = records(&log);
    drop(log);
    let log = Log::open(dir.path(), compacted()).expect("reopen");
    assert_eq!(records(&log), want);
    check_lookups(&log);
    drop(log);
    for name in files_ending(dir.path(), ".index").into_iter().chain(files_ending(dir.path(), ".timeindex")) {
        fs::remove_file(dir.path().join(name)).expect("rm index");
    }
    let log = Log::open(dir.path(), compacted()).expect("reopen with indexes rebuilt");
    assert_eq!(records(&log), want);
    check_lookups(&log);
}

#[test]
fn a_batch_whose_records_cannot_be_read_is_kept_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    append(&mut log, &B::at(1).kv("a", "1"));
    let mut bad = B::at(2).kv("a", "2").kv("b", "2").build();
    let n = bad.len();
    bad[n - 3] ^= 0x40; // a record byte: the CRC no longer matches
    log.append(&bad, 0, 2).expect("storage appends without checking CRCs");
    append(&mut log, &B::at(3).kv("a", "3"));
    roll(&mut log);
    let stats = clean(&mut log, 10).expect("clean");
    assert_eq!(stats.unreadable_batches_kept, 1);
    let kept: Vec<_> = log.read(0, 1 << 20, i64::MAX, true).expect("read").bytes.to_vec();
    let first = BatchHeader::parse(&kept).expect("batch");
    assert_eq!(first.base_offset, 1, "a=1 went; the unreadable batch is the first left");
    assert_eq!(&kept[12..first.total_len()], &bad[12..], "byte for byte, but the offset");
}

#[test]
fn a_segment_damaged_on_disk_after_opening_fails_the_clean_and_keeps_the_log() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    let first = B::at(1).kv("a", "1").build();
    append(&mut log, &B::at(1).kv("a", "1"));
    append(&mut log, &B::at(2).kv("a", "2"));
    roll(&mut log);
    // The second batch's length now claims more than the segment holds.
    let segment = dir.path().join(files_ending(dir.path(), ".log")[0].clone());
    let mut f = fs::OpenOptions::new().write(true).open(&segment).expect("segment");
    f.seek(SeekFrom::Start(first.len() as u64 + 8)).expect("seek");
    f.write_all(&0x7fff_fff0_u32.to_be_bytes()).expect("damage");
    drop(f);
    match log.clean(10, i64::MAX, &CleanerConfig::default(), &mut go_on) {
        Err(StorageError::Corrupt { reason, .. }) => assert!(reason.contains("cannot read the batch at position"), "{reason}"),
        other => panic!("a damaged segment was cleaned: {other:?}"),
    }
    assert!(files_ending(dir.path(), ".cleaned").is_empty() && files_ending(dir.path(), ".swap").is_empty());
    let read = log.read(0, 1 << 20, i64::MAX, true).expect("read").bytes.to_vec();
    assert_eq!(BatchHeader::parse(&read).expect("the first batch").base_offset, 0, "the log before the damage still reads");
}

#[test]
fn the_io_callback_sees_every_byte_and_can_abort() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compacted()).expect("open");
    for i in 0..30i64 {
        append(&mut log, &B::at(i).kv(&format!("k{}", i % 4), "value"));
    }
    roll(&mut log);
    let before = records(&log);
    let mut calls = 0;
    let abort = log.clean(10, i64::MAX, &CleanerConfig::default(), &mut |_| {
        calls += 1;
        if calls > 35 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert!(matches!(abort, Err(StorageError::CleaningAborted)), "{abort:?}");
    assert!(log.failure().is_none(), "an abort leaves the log healthy");
    assert_eq!(records(&log), before);
    assert!(files_ending(dir.path(), ".cleaned").is_empty(), "no file left behind");

    let mut seen = 0u64;
    let stats = log.clean(10, i64::MAX, &CleanerConfig::default(), &mut |n| {
        seen += n;
        ControlFlow::Continue(())
    });
    let stats = stats.expect("clean").expect("work");
    assert_eq!(seen, stats.map_bytes_read + stats.bytes_read + stats.bytes_written);
    assert!(stats.bytes_written < stats.bytes_read);
}

#[test]
fn a_throttler_holds_the_rate() {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let mut t = Throttler::new(1_000.0, t0);
    assert_eq!(t.delay(500, t0 + Duration::from_millis(100)), Duration::ZERO, "within the check interval");
    // 1500 bytes at 1000 B/s need 1.5 s; 0.4 s passed.
    assert_eq!(t.delay(1_000, t0 + Duration::from_millis(400)), Duration::from_millis(1_100));
    // A new period starts after the sleep.
    let t1 = t0 + Duration::from_millis(1_500);
    assert_eq!(t.delay(100, t1 + Duration::from_millis(400)), Duration::ZERO, "100 B in 0.4 s is under the rate");
    let mut unlimited = Throttler::new(f64::INFINITY, t0);
    assert_eq!(unlimited.delay(u64::MAX, t0 + Duration::from_secs(1)), Duration::ZERO);
    let mut slow = Throttler::new(1e-300, t0);
    assert_eq!(slow.delay(10, t0 + Duration::from_secs(1)), Throttler::MAX_SLEEP);
}

#[test]
fn finishing_skips_groups_whose_segments_changed_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig { segment_bytes: 300, ..compacted() }).expect("open");
    for i in 0..40i64 {
        append(&mut log, &B::at(i).kv(&format!("k{}", i % 5), &format!("{i:0>40}")));
    }
    roll(&mut log);
    let small_groups = CleanerConfig::default();
    let task = log.plan_clean(100, i64::MAX, &small_groups).expect("plan").expect("work");
    let cleaned = task.run(&mut go_on).expect("run");
    // Meanwhile DeleteRecords removes the first segments.
    let second = *log.closed.keys().nth(2).expect("segments");
    log.delete_records(second).expect("delete records");
    let stats = log.finish_clean(cleaned).expect("finish");
    assert!(stats.groups_abandoned >= 1);
    assert!(files_ending(dir.path(), ".cleaned").is_empty());
    let got = records(&log);
    assert!(got.iter().all(|r| r.0 >= second));
    assert_eq!(log.cleaner_checkpoint, Some(40), "the abandoned groups are gone: the checkpoint moves");

    // A truncation makes a new log: nothing of an older clean applies to it.
    append(&mut log, &B::at(50).kv("k1", "new"));
    roll(&mut log);
    let task = log.plan_clean(200, i64::MAX, &small_groups).expect("plan").expect("work");
    let cleaned = task.run(&mut go_on).expect("run");
    let log = log.truncate_to(30).expect("truncate");
    let mut log = log;
    assert_eq!(log.cleaner_checkpoint, Some(30), "the checkpoint follows the cut");
    let before = records(&log);
    let stats = log.finish_clean(cleaned).expect("finish");
    assert_eq!(stats.segments_written, 0);
    assert_eq!(records(&log), before);
    assert_eq!(log.cleaner_checkpoint, Some(30), "not moved by an abandoned clean");
}

#[test]
fn a_follower_copies_a_cleaned_log_gaps_and_all() {
    let (ld, fd) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let mut leader = Log::open(ld.path(), compacted()).expect("open");
    for i in 0..50i64 {
        append(&mut leader, &B::at(i).kv(&format!("k{}", i % 6), &i.to_string()));
    }
    roll(&mut leader);
    append(&mut leader, &B::at(60).kv("k0", "tail"));
    clean(&mut leader, 100).expect("clean");
    let mut follower = Log::open(fd.path(), compacted()).expect("open");
    let mut offset = 0;
    while offset < leader.log_end_offset() {
        let chunk = leader.read(offset, 200, i64::MAX, true).expect("read").bytes;
        follower.append_replicated(&chunk, 0).expect("replicated");
        offset = follower.log_end_offset();
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    let bytes = |log: &Log| batches(log).into_iter().map(|(_, b)| b).collect::<Vec<_>>();
    assert_eq!(bytes(&follower), bytes(&leader));
    drop(follower);
    let follower = Log::open(fd.path(), compacted()).expect("recover");
    assert_eq!(bytes(&follower), bytes(&leader));
}

#[test]
fn slices_read_before_a_swap_keep_their_bytes() {
    // A Fetch answer is sent after the log's lock is released; the clean that swaps
    // its segments out meanwhile must leave the bytes it maps as they were.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig { segment_bytes: 1_000, ..compacted() }).expect("open");
    for i in 0..60i64 {
        append(&mut log, &B::at(i).kv(&format!("k{}", i % 5), &format!("{i:0>90}")));
    }
    roll(&mut log);
    let mut held = Vec::new();
    let mut offset = 0;
    while offset < log.log_end_offset() {
        let slice = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        let copy = slice.bytes.to_vec();
        offset = karst_batch::batches(&copy).last().expect("a batch").expect("whole").1.last_offset() + 1;
        held.push((slice.bytes, copy));
    }
    assert!(held.len() > 3, "several segments");
    for round in 0..3 {
        append(&mut log, &B::at(100 + round).kv("k0", "new"));
        roll(&mut log);
        clean(&mut log, 1_000).expect("clean");
    }
    for (bytes, copy) in &held {
        assert_eq!(&bytes[..], &copy[..], "a slice held across the swap is unchanged");
    }
    check_lookups(&log);
}

/// The batches a consumer's Fetch at `offset` gets (read_uncommitted, up to `hw`).
fn consumer_read(log: &Log, offset: i64, hw: i64) -> Vec<BatchHeader> {
    consumer_read_within(log, offset, hw, 1 << 20, true)
}

fn consumer_read_within(log: &Log, offset: i64, hw: i64, max_bytes: usize, min_one: bool) -> Vec<BatchHeader> {
    let read = log.read_isolated(offset, max_bytes, hw, Isolation::ReadUncommitted, min_one).expect("consumer read");
    karst_batch::batches(&read.slice.bytes).map(|b| b.expect("whole batches, CRCs right").1).collect()
}

#[test]
fn a_consumer_read_passes_over_segments_a_clean_left_without_records() {
    // One batch per segment, each too big to share a group with another: a clean
    // leaves each segment whose records all went as its group's last batch, empty.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig { segment_bytes: 1_000, ..compacted() }).expect("open");
    let big = "v".repeat(600);
    for round in 0..5 {
        append(&mut log, &B::at(round).kv("a", &big).kv("b", &format!("{round}")));
        roll(&mut log);
    }
    append(&mut log, &B::at(10).kv("c", "active"));
    let hw = log.log_end_offset();
    clean(&mut log, 1_000).expect("clean");
    let all = batches(&log);
    assert_eq!(
        all.iter().map(|(h, _)| (h.base_offset, h.record_count)).collect::<Vec<_>>(),
        [(0, 0), (2, 0), (4, 0), (6, 0), (8, 2), (10, 1)],
        "four segments hold nothing but an empty batch"
    );
    assert_eq!(log.read(0, 1 << 20, hw, true).expect("read").bytes.len(), all[0].1.len(), "a follower still copies every batch");

    // A consumer reading from the start gets records in every answer: one made of an
    // empty batch alone makes librdkafka double its fetch size, and after ten
    // fails the partition with MSG_SIZE_TOO_LARGE.
    let got = consumer_read(&log, 0, hw);
    assert_eq!(got.iter().map(|h| (h.base_offset, h.record_count)).collect::<Vec<_>>(), [(8, 2)]);
    for offset in [1, 5, 7] {
        assert_eq!(consumer_read(&log, offset, hw)[0].base_offset, 8, "from {offset}");
    }
    // With nothing but empty batches below the high watermark, the last of them
    // comes back, so the consumer moves up to the high watermark.
    let got = consumer_read(&log, 0, 8);
    assert_eq!(got.iter().map(|h| (h.base_offset, h.last_offset(), h.record_count)).collect::<Vec<_>>(), [(6, 7, 0)]);
    assert!(consumer_read(&log, 8, 8).is_empty());
}

#[test]
fn a_consumer_read_passes_over_a_segment_only_once_read_to_its_end() {
    // An active producer's last batch is kept empty; the records after it in the
    // same segment must not be passed over when `max_bytes` cut the read before them.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig { segment_bytes: 1_000, ..compacted() }).expect("open");
    append(&mut log, &B::at(0).kv("a", "1").producer(5, 0, 0));
    append(&mut log, &B::at(1).kv("b", &"v".repeat(600)));
    roll(&mut log);
    append(&mut log, &B::at(2).kv("a", "2"));
    roll(&mut log);
    append(&mut log, &B::at(3).kv("c", "active"));
    let hw = log.log_end_offset();
    clean(&mut log, 1_000).expect("clean");
    let all = batches(&log);
    assert_eq!(all.iter().map(|(h, _)| (h.base_offset, h.record_count)).collect::<Vec<_>>(), [(0, 0), (1, 1), (2, 1), (3, 1)]);
    let got = consumer_read_within(&log, 0, hw, 100, false);
    assert_eq!(got.iter().map(|h| (h.base_offset, h.record_count)).collect::<Vec<_>>(), [(0, 0)], "not the next segment's batch");
    let got = consumer_read(&log, 0, hw);
    assert_eq!(got.iter().map(|h| (h.base_offset, h.record_count)).collect::<Vec<_>>(), [(0, 0), (1, 1), (2, 1)], "one cleaned segment");
}

// ---------------------------------------------------------------------------
// The whole log against a model
// ---------------------------------------------------------------------------

/// A record of the model: offset, key, value, and the delete horizon of its batch
/// once a clean kept it as a tombstone.
#[derive(Debug, Clone)]
struct ModelRec {
    offset: i64,
    key: u8,
    value: Option<Vec<u8>>,
    horizon: Option<i64>,
}

#[derive(Debug, Clone)]
enum Op {
    /// With `idempotent`, from producer 5 (whose last batch a clean keeps, empty if need be).
    Append {
        records: Vec<(u8, Option<u8>)>,
        codec: i16,
        idempotent: bool,
    },
    Roll,
    Clean {
        advance: i64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (proptest::collection::vec((0u8..8, proptest::option::weighted(0.8, any::<u8>())), 1..5), 0i16..5, proptest::bool::weighted(0.2))
            .prop_map(|(records, codec, idempotent)| Op::Append { records, codec, idempotent }),
        1 => Just(Op::Roll),
        2 => (0i64..700).prop_map(|advance| Op::Clean { advance }),
        1 => Just(Op::Reopen),
    ]
}

fn as_recs(model: &[ModelRec]) -> Vec<Rec> {
    model.iter().map(|r| (r.offset, Some(format!("k{}", r.key).into_bytes()), r.value.clone())).collect()
}

/// What a clean at `now` keeps of the model: below `end` the latest record of each
/// key, unless it is a tombstone whose horizon has passed; tombstones kept get one.
fn model_clean(model: &mut Vec<ModelRec>, end: i64, now: i64, retention: i64) {
    let mut latest = BTreeMap::new();
    for r in model.iter().filter(|r| r.offset < end) {
        latest.insert(r.key, r.offset);
    }
    model.retain(|r| r.offset >= end || (latest[&r.key] == r.offset && (r.value.is_some() || r.horizon.is_none_or(|h| now < h))));
    for r in model.iter_mut().filter(|r| r.offset < end && r.value.is_none() && r.horizon.is_none()) {
        r.horizon = Some(now + retention);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random keyed appends (tombstones, every codec, several segments), cleans at
    /// increasing times and restarts: the log always reads as the model, at the
    /// original offsets, and a second clean of the same data changes nothing.
    #[test]
    fn cleaning_keeps_the_latest_value_of_every_key(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig { segment_bytes: 600, delete_retention_ms: 500, ..compacted() };
        let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
        let mut model: Vec<ModelRec> = Vec::new();
        let mut now = 1_000i64;
        let mut sequence = 0;
        for op in ops {
            match op {
                Op::Append { records, codec, idempotent } => {
                    let mut b = B::at(now).codec(codec);
                    if idempotent {
                        b = b.producer(5, 0, sequence);
                        sequence += records.len() as i32;
                    }
                    for (k, v) in &records {
                        b = match v {
                            Some(v) => b.kv(&format!("k{k}"), &format!("v{v}")),
                            None => b.tomb(&format!("k{k}")),
                        };
                    }
                    let base = append(&mut log, &b);
                    for (i, (k, v)) in records.iter().enumerate() {
                        model.push(ModelRec { offset: base + i as i64, key: *k, value: v.map(|v| format!("v{v}").into_bytes()), horizon: None });
                    }
                    now += 1;
                }
                Op::Roll => {
                    if log.active.size() > 0 {
                        roll(&mut log);
                    }
                }
                Op::Clean { advance } => {
                    now += advance;
                    let end = log.active.base_offset();
                    let dirty = log.cleanable(now, i64::MAX).expect("cleanable").cleanable_bytes > 0;
                    let stats = clean(&mut log, now);
                    prop_assert_eq!(stats.is_some(), dirty);
                    if let Some(stats) = stats {
                        prop_assert_eq!(stats.end_offset, end);
                        model_clean(&mut model, end, now, cfg.delete_retention_ms);
                    }
                    prop_assert!(clean(&mut log, now).is_none(), "nothing dirty right after a clean");
                }
                Op::Reopen => {
                    drop(log);
                    log = Log::open(dir.path(), cfg.clone()).expect("reopen");
                }
            }
            prop_assert_eq!(records(&log), as_recs(&model));
        }
        // Producer 5's sequence survived every clean and restart.
        if sequence > 0 {
            let next = B::at(now).kv("k0", "last").producer(5, 0, sequence);
            prop_assert!(log.append(&next.build(), 0, now).is_ok());
            model.push(ModelRec { offset: log.log_end_offset() - 1, key: 0, value: Some(b"last".to_vec()), horizon: None });
        }
        // A clean of everything from the log start (the checkpoint forgotten), then
        // another at the same time: the second changes no record (batches may merge
        // into fewer segments).
        if log.active.size() > 0 {
            roll(&mut log);
        }
        let end = log.active.base_offset();
        for round in 0..2 {
            log.cleaner_checkpoint = None;
            fs::remove_file(dir.path().join(crate::checkpoint::CLEANER_OFFSET_FILE)).ok();
            let before = records(&log);
            let cleaned = clean(&mut log, now);
            prop_assert_eq!(cleaned.is_some(), end > log.log_start_offset());
            model_clean(&mut model, end, now, cfg.delete_retention_ms);
            prop_assert_eq!(records(&log), as_recs(&model));
            if round == 1 {
                prop_assert_eq!(records(&log), before, "cleaning twice changes nothing");
            }
        }
        check_lookups(&log);
        prop_assert!(files_ending(dir.path(), ".cleaned").is_empty() && files_ending(dir.path(), ".swap").is_empty());
    }
}
