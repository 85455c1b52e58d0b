//! Transactions in the log: producer state with ongoing transactions, the last
//! stable offset, markers and the aborted transaction index, through restarts,
//! crashes (torn tails, failing writes), damaged index files, follower truncation
//! and replication, retention and the cleaner; and a property test of random
//! interleavings against a model.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use karst_batch::records::EndTxnMarker;
use proptest::prelude::*;

use crate::cleaner_tests::{batches, compacted, B};
use crate::faults::{inject, Fault, Point};
use crate::txn_index::ENTRY_SIZE;
use crate::{AbortedTxn, AppendInfo, CleanerConfig, Isolation, Log, LogConfig, StorageError, StorageResult};

/// Small segments, so transactions span several.
fn config() -> LogConfig {
    LogConfig { segment_bytes: 250, segment_ms: None, index_interval_bytes: 64, segment_index_bytes: 4096, ..LogConfig::default() }
}

/// A transactional batch of `n` records of `pid` (epoch 0) from sequence `seq`.
fn txn_batch(pid: i64, seq: i32, n: usize) -> Vec<u8> {
    let mut b = B::at(1_000);
    for i in 0..n {
        b = b.kv(&format!("k{i}"), "v");
    }
    b.producer(pid, 0, seq).transactional().build()
}

/// A non-transactional batch of one record, of `pid` at `seq` or of no producer.
fn plain_batch(producer: Option<(i64, i32)>) -> Vec<u8> {
    let b = B::at(1_000).kv("p", "v");
    match producer {
        Some((pid, seq)) => b.producer(pid, 0, seq).build(),
        None => b.build(),
    }
}

fn txn(log: &mut Log, pid: i64, seq: i32, n: usize) -> StorageResult<AppendInfo> {
    log.append(&txn_batch(pid, seq, n), 0, 1_000)
}

fn marker(log: &mut Log, pid: i64, commit: bool) -> StorageResult<AppendInfo> {
    log.append_marker(pid, 0, 0, commit, 0, 1_000)
}

fn t(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
    AbortedTxn { producer_id: pid, first_offset: first, last_offset: last, last_stable_offset: lso }
}

/// What the log says of its transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TxnView {
    /// (producer id, first offset), by first offset.
    ongoing: Vec<(i64, i64)>,
    /// By marker offset.
    aborted: Vec<AbortedTxn>,
    first_unstable: Option<i64>,
}

fn view_of(log: &Log) -> TxnView {
    let mut aborted = log.aborted_transactions(0, i64::MAX);
    aborted.sort_by_key(|t| t.last_offset);
    TxnView { ongoing: log.ongoing_transactions(), aborted, first_unstable: log.first_unstable_offset() }
}

/// A batch as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MBatch {
    base: i64,
    last: i64,
    pid: i64,
    transactional: bool,
    /// `Some(commit)` for a marker.
    marker: Option<bool>,
}

/// Transactions as Kafka defines them, computed from the batches alone.
fn model_view(batches: &[MBatch]) -> TxnView {
    let mut ongoing: BTreeMap<i64, i64> = BTreeMap::new();
    let mut aborted = Vec::new();
    for b in batches.iter().filter(|b| b.pid >= 0) {
        match b.marker {
            Some(commit) => {
                if let Some(first) = ongoing.remove(&b.pid) {
                    if !commit {
                        let lso = ongoing.values().copied().min().map_or(b.last + 1, |f| f.min(b.last + 1));
                        aborted.push(t(b.pid, first, b.last, lso));
                    }
                }
            }
            None if b.transactional => {
                ongoing.entry(b.pid).or_insert(b.base);
            }
            None => {}
        }
    }
    let mut ongoing: Vec<(i64, i64)> = ongoing.into_iter().collect();
    ongoing.sort_by_key(|(_, first)| *first);
    let first_unstable = ongoing.first().map(|(_, f)| *f);
    TxnView { ongoing, aborted, first_unstable }
}

/// The batches of a log as the model sees them.
fn model_batches(log: &Log) -> Vec<MBatch> {
    batches(log)
        .iter()
        .map(|(h, bytes)| MBatch {
            base: h.base_offset,
            last: h.last_offset(),
            pid: h.producer_id,
            transactional: h.is_transactional(),
            marker: h.is_control().then(|| EndTxnMarker::of_batch(bytes, 1 << 16).map(|m| m.commit).ok()).flatten(),
        })
        .collect()
}

/// The log's transactions are what its batches say, and every fetch range agrees.
fn check_consistent(log: &Log, what: &str) {
    let expected = model_view(&model_batches(log));
    assert_eq!(view_of(log), expected, "{what}");
    check_ranges(log, &expected, what);
}

fn check_ranges(log: &Log, expected: &TxnView, what: &str) {
    let end = log.log_end_offset();
    for from in [0, end / 3, end / 2, end.saturating_sub(2)] {
        for upper in [from + 1, from + 4, end, i64::MAX] {
            let mut want: Vec<(i64, i64)> = expected
                .aborted
                .iter()
                .filter(|t| t.last_offset >= from && t.first_offset < upper)
                .map(|t| (t.producer_id, t.first_offset))
                .collect();
            want.sort_by_key(|(_, f)| *f);
            let got: Vec<(i64, i64)> = log.aborted_transactions(from, upper).iter().map(|t| (t.producer_id, t.first_offset)).collect();
            assert_eq!(got, want, "{what}: aborted transactions in [{from}, {upper})");
        }
    }
    // At the log end every marker is below the high watermark; below it, a
    // transaction whose marker is not yet replicated may hold the LSO lower still.
    assert_eq!(log.last_stable_offset(end), expected.first_unstable.map_or(end, |f| f.min(end)), "{what}: LSO at {end}");
    let hw = end / 2;
    assert!(log.last_stable_offset(hw) <= expected.first_unstable.map_or(hw, |f| f.min(hw)), "{what}: LSO at {hw}");
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("ls") {
        let path = entry.expect("entry").path();
        fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        fs::read_dir(dir).expect("ls").map(|e| e.expect("entry").path()).filter(|p| p.extension().is_some_and(|e| e == ext)).collect();
    v.sort();
    v
}

/// Producers 1 and 2 interleave transactions across segments; 3 is idempotent
/// without transactions; some batches have no producer. Ends with producer 2's
/// transaction open.
fn scenario(log: &mut Log) -> StorageResult<usize> {
    let mut acked = 0;
    let mut step = |r: StorageResult<AppendInfo>| -> StorageResult<()> {
        r?;
        acked += 1;
        Ok(())
    };
    step(txn(log, 1, 0, 2))?; // 0-1
    step(log.append(&plain_batch(None), 0, 1_000))?; // 2
    step(txn(log, 2, 0, 1))?; // 3
    step(txn(log, 1, 2, 3))?; // 4-6
    step(log.append(&plain_batch(Some((3, 0))), 0, 1_000))?; // 7
    step(marker(log, 1, false))?; // 8: abort [0, 8] while 2 is open from 3
    step(txn(log, 1, 5, 1))?; // 9
    step(marker(log, 2, true))?; // 10
    step(marker(log, 1, false))?; // 11: abort [9, 11]
    step(marker(log, 1, false))?; // 12: nothing open, nothing indexed
    step(txn(log, 2, 1, 2))?; // 13-14
    step(txn(log, 1, 6, 1))?; // 15
    step(log.append(&plain_batch(Some((3, 1))), 0, 1_000))?; // 16
    step(marker(log, 1, false))?; // 17: abort [15, 17] while 2 is open from 13
    step(txn(log, 2, 3, 1))?; // 18
    Ok(acked)
}

fn scenario_view() -> TxnView {
    TxnView { ongoing: vec![(2, 13)], aborted: vec![t(1, 0, 8, 3), t(1, 9, 11, 12), t(1, 15, 17, 13)], first_unstable: Some(13) }
}

#[test]
fn transactions_move_the_last_stable_offset_and_aborts_are_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One segment: a read returns batches of one segment at most.
    let mut log = Log::open(dir.path(), LogConfig { segment_bytes: 1 << 20, ..config() }).expect("open");
    txn(&mut log, 1, 0, 2).expect("append");
    assert_eq!(log.first_unstable_offset(), Some(0));
    assert_eq!((log.last_stable_offset(2), log.last_stable_offset(0)), (0, 0));
    log.append(&plain_batch(None), 0, 1_000).expect("append"); // 2
    txn(&mut log, 2, 0, 1).expect("append"); // 3
    assert_eq!(log.ongoing_transactions(), [(1, 0), (2, 3)]);
    // read_committed reads stop at the first open transaction.
    let read = log.read_isolated(0, 1 << 20, 4, Isolation::ReadCommitted, true).expect("read");
    assert!(read.slice.bytes.is_empty() && read.aborted == Some(vec![]), "nothing is stable yet");
    let read = log.read_isolated(0, 1 << 20, 4, Isolation::ReadUncommitted, true).expect("read");
    assert_eq!((karst_batch::batches(&read.slice.bytes).count(), read.aborted), (3, None));

    marker(&mut log, 1, true).expect("commit"); // 4
    assert_eq!((log.first_unstable_offset(), log.last_stable_offset(5)), (Some(3), 3));
    marker(&mut log, 2, false).expect("abort"); // 5
                                                // Until the high watermark passes a marker, its transaction stays unstable: a
                                                // failover could still lose the marker (Kafka's unreplicated transactions).
    assert_eq!((log.first_unstable_offset(), log.last_stable_offset(6), log.last_stable_offset(5)), (None, 6, 3));
    assert_eq!(log.last_stable_offset(4), 0, "producer 1's commit at 4 is not below the high watermark either");
    assert_eq!(log.aborted_transactions(0, 6), [t(2, 3, 5, 6)]);
    assert_eq!(log.aborted_transactions(0, 3), [], "the transaction starts at the upper bound");
    assert_eq!(log.aborted_transactions(6, 7), [], "it ended before the fetch offset");
    let read = log.read_isolated(2, 1 << 20, 6, Isolation::ReadCommitted, true).expect("read");
    assert_eq!(read.aborted, Some(vec![t(2, 3, 5, 6)]));
    assert_eq!(
        karst_batch::batches(&read.slice.bytes).filter_map(Result::ok).map(|(_, h)| h.base_offset).collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
    let p = log.active_producers();
    assert_eq!(
        p.iter().map(|p| (p.producer_id, p.coordinator_epoch, p.current_txn_start_offset)).collect::<Vec<_>>(),
        [(1, 0, -1), (2, 0, -1)]
    );
    // Once the high watermark has passed both markers, they are forgotten.
    log.note_high_watermark(6);
    assert_eq!(log.last_stable_offset(6), 6);
}

#[test]
fn markers_are_checked_as_kafkas_producer_append_info() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), config()).expect("open");
    log.append(&B::at(1).kv("a", "1").producer(1, 1, 0).transactional().build(), 0, 1).expect("append"); // 0
    let end = log.log_end_offset();
    let e = log.append_marker(1, 0, 0, true, 0, 1).expect_err("an older producer epoch");
    assert!(matches!(e, StorageError::InvalidProducerEpoch { current: 1, got: 0, .. }), "{e:?}");
    log.append_marker(1, 1, 5, false, 0, 1).expect("abort at coordinator epoch 5"); // 1
    assert_eq!(log.aborted_transactions(0, 10), [t(1, 0, 1, 2)]);
    log.append(&B::at(1).kv("a", "2").producer(1, 1, 1).transactional().build(), 0, 1).expect("append"); // 2
    let e = log.append_marker(1, 1, 4, true, 0, 1).expect_err("an older coordinator");
    assert!(matches!(e, StorageError::TransactionCoordinatorFenced { current: 5, got: 4, .. }), "{e:?}");
    let e = log.append(&B::at(1).kv("a", "3").producer(1, 1, 2).build(), 0, 1).expect_err("non-transactional inside a transaction");
    assert!(matches!(e, StorageError::InvalidTxnState { producer_id: 1, txn_first_offset: 2 }), "{e:?}");
    assert_eq!((log.log_end_offset(), log.ongoing_transactions()), (end + 2, vec![(1, 2)]), "nothing refused was written");
    // A coordinator fencing the producer: a marker of a newer epoch ends the transaction.
    log.append_marker(1, 2, 6, false, 0, 1).expect("abort with an epoch bump"); // 3
    assert_eq!(log.aborted_transactions(0, 10), [t(1, 0, 1, 2), t(1, 2, 3, 4)]);
    // A marker with nothing open is written but indexes nothing.
    log.append_marker(1, 2, 6, false, 0, 1).expect("empty abort"); // 4
    assert_eq!(log.aborted_transactions(0, 10).len(), 2);
    let e = log.append(&B::marker(1, 1, 2, true).build()[..70], 0, 1).expect_err("a torn control batch");
    assert!(matches!(e, StorageError::Batch(_)), "{e:?}");
    let p = log.active_producers();
    assert_eq!((p[0].epoch, p[0].coordinator_epoch, p[0].current_txn_start_offset), (2, 6, -1));
}

#[test]
fn restarts_clean_or_crashed_keep_transactions_and_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), config()).expect("open");
    scenario(&mut log).expect("scenario");
    assert_eq!(view_of(&log), scenario_view());
    check_consistent(&log, "live");
    assert!(files(dir.path(), "log").len() > 3, "transactions span segments");
    assert_eq!(files(dir.path(), "txnindex").len(), files(dir.path(), "log").len(), "every segment has its index");
    log.close().expect("close");
    let log = Log::open(dir.path(), config()).expect("reopen");
    assert_eq!(view_of(&log), scenario_view(), "after a clean close");
    drop(log); // a crash
    let log = Log::open(dir.path(), config()).expect("reopen");
    assert_eq!(view_of(&log), scenario_view(), "after a crash");
    drop(log);
    for s in files(dir.path(), "snapshot") {
        fs::remove_file(s).expect("rm");
    }
    let log = Log::open(dir.path(), config()).expect("reopen");
    assert_eq!(view_of(&log), scenario_view(), "without snapshots");
}

/// A closed (`clean`) or crashed copy of the scenario's log.
fn scenario_dir(clean: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), config()).expect("open");
    scenario(&mut log).expect("scenario");
    if clean {
        log.close().expect("close");
    }
    dir
}

#[test]
fn damaged_index_files_are_rebuilt_never_trusted() {
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 7] = [
        ("torn", |b| b.truncate(b.len().saturating_sub(5))),
        ("garbage appended", |b| b.extend_from_slice(&[0xff; 7])),
        ("unknown version", |b| {
            b.extend_from_slice(&{
                let mut e = t(1, 0, 1, 2).encode();
                e[1] = 9;
                e
            })
        }),
        ("a marker outside the segment", |b| b.extend_from_slice(&t(1, 0, 1 << 40, 2).encode())),
        ("entries repeated", |b| {
            let e = b.clone();
            b.extend_from_slice(&e);
        }),
        ("all ones", |b| *b = vec![0xff; ENTRY_SIZE * 2]),
        ("an impossible entry", |b| b.extend_from_slice(&t(-5, 9, 3, -1).encode())),
    ];
    for clean in [true, false] {
        let src = scenario_dir(clean);
        for file in files(src.path(), "txnindex") {
            let name = file.file_name().expect("name").to_owned();
            for (what, damage) in &damages {
                let dir = tempfile::tempdir().expect("tempdir");
                copy_dir(src.path(), dir.path());
                let mut bytes = fs::read(dir.path().join(&name)).expect("read");
                damage(&mut bytes);
                fs::write(dir.path().join(&name), &bytes).expect("write");
                let what = format!("{what} in {name:?}, clean {clean}");
                let log = Log::open(dir.path(), config()).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(view_of(&log), scenario_view(), "{what}");
                drop(log);
                let log = Log::open(dir.path(), config()).expect("reopen");
                assert_eq!(view_of(&log), scenario_view(), "{what}: the rewritten files read back");
            }
            // A missing file, too.
            let dir = tempfile::tempdir().expect("tempdir");
            copy_dir(src.path(), dir.path());
            fs::remove_file(dir.path().join(&name)).expect("rm");
            let log = Log::open(dir.path(), config()).expect("open");
            assert_eq!(view_of(&log), scenario_view(), "{name:?} missing");
            assert!(dir.path().join(&name).is_file(), "rewritten");
        }
    }
}

#[test]
fn a_torn_tail_at_any_byte_recovers_what_is_left() {
    let src = scenario_dir(false);
    let active = files(src.path(), "log").pop().expect("a segment");
    let len = fs::metadata(&active).expect("stat").len();
    for cut in (0..=len).rev() {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(src.path(), dir.path());
        let path = dir.path().join(active.file_name().expect("name"));
        fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(cut).expect("cut");
        let log = Log::open(dir.path(), config()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        check_consistent(&log, &format!("cut at byte {cut}"));
    }
}

#[test]
fn a_failure_at_any_write_fsync_or_rename_recovers_a_consistent_log() {
    for point in [Point::Write, Point::Fsync, Point::FsyncDir, Point::Rename] {
        let mut fired = 0;
        for skip in 0.. {
            let dir = tempfile::tempdir().expect("tempdir");
            let what = format!("{point:?} failing after {skip} calls");
            let mut log = Log::open(dir.path(), config()).expect("open");
            let fault = inject(point, Fault::Io, skip, dir.path());
            let result = scenario(&mut log);
            drop(fault);
            match result {
                Ok(_) => {
                    assert_eq!(view_of(&log), scenario_view(), "{what}");
                    break;
                }
                Err(e) => {
                    fired += 1;
                    drop(log);
                    let log = Log::open(dir.path(), config()).unwrap_or_else(|e2| panic!("{what} ({e}): reopen: {e2}"));
                    check_consistent(&log, &format!("{what} ({e})"));
                }
            }
            assert!(skip < 1_000, "{what}: the scenario never got through");
        }
        // A failed snapshot write (the only rename) is not an append's failure.
        assert!(fired > 0 || point == Point::Rename, "{point:?} never failed");
    }
}

#[test]
fn follower_truncation_inside_a_transaction_restores_its_state() {
    let src = scenario_dir(true);
    let full = Log::open(src.path(), config()).expect("open");
    let all = model_batches(&full);
    let end = full.log_end_offset();
    drop(full);
    for cut in 0..=end {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(src.path(), dir.path());
        let log = Log::open(dir.path(), config()).expect("open");
        let mut log = log.truncate_to(cut).expect("truncate");
        let kept: Vec<MBatch> = all.iter().copied().filter(|b| b.last < cut).collect();
        let what = format!("truncated to {cut}");
        assert_eq!(view_of(&log), model_view(&kept), "{what}");
        check_consistent(&log, &what);
        // The follower goes on: producer 2's transaction (if open) ends, and the
        // state survives a restart.
        log.append_marker(2, 0, 0, false, 1, 2_000).expect("marker after the cut");
        let after = view_of(&log);
        assert!(after.ongoing.iter().all(|(pid, _)| *pid != 2), "{what}");
        drop(log);
        let log = Log::open(dir.path(), config()).expect("reopen");
        assert_eq!(view_of(&log), after, "{what}: reopened");
    }
}

#[test]
fn a_follower_replays_transactions_and_can_take_over() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let mut leader = Log::open(leader_dir.path(), config()).expect("open");
    scenario(&mut leader).expect("scenario");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut follower = Log::open(dir.path(), config()).expect("open");
    while follower.log_end_offset() < leader.log_end_offset() {
        let slice = leader.read(follower.log_end_offset(), 150, i64::MAX, true).expect("read");
        follower.append_replicated(&slice.bytes, 1_000).expect("replicate");
    }
    assert_eq!(view_of(&follower), scenario_view());
    // A replicated marker is not checked against coordinator epochs (the leader did).
    let stale = karst_batch::records::end_txn_marker_batch(
        follower.log_end_offset(),
        1,
        0,
        2,
        0,
        EndTxnMarker { commit: false, coordinator_epoch: -1 },
    );
    follower.append_replicated(&stale, 1_000).expect("replicated marker");
    let view = view_of(&follower);
    assert_eq!(view.ongoing, []);
    assert_eq!(view.aborted.last(), Some(&t(2, 13, 19, 20)));
    // Promoted, it checks markers as a leader does.
    txn(&mut follower, 1, 7, 1).expect("a new transaction");
    let e = follower.append_marker(1, 0, -2, true, 2, 1).expect_err("older coordinator");
    assert!(matches!(e, StorageError::TransactionCoordinatorFenced { .. }), "{e:?}");
    follower.append_marker(1, 0, 3, true, 2, 1).expect("commit");
    check_consistent(&follower, "promoted follower");
}

#[test]
fn retention_and_delete_records_take_the_index_with_their_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), config()).expect("open");
    scenario(&mut log).expect("scenario");
    let logs = files(dir.path(), "log").len();
    log.delete_records(12).expect("delete records");
    assert!(files(dir.path(), "log").len() < logs);
    assert_eq!(files(dir.path(), "txnindex").len(), files(dir.path(), "log").len());
    let aborted = log.aborted_transactions(log.log_start_offset(), i64::MAX);
    assert!(aborted.iter().all(|t| t.last_offset >= log.log_start_offset()), "{aborted:?}");
    assert!(aborted.contains(&t(1, 15, 17, 13)));
    // Producer 2's transaction from 13 is open: the first unstable offset follows
    // the log start past it, as Kafka's.
    assert_eq!(log.first_unstable_offset(), Some(13));
    log.delete_records(14).expect("delete records");
    assert_eq!((log.first_unstable_offset(), log.last_stable_offset(19), log.last_stable_offset(10)), (Some(14), 14, 10));
    let before = (view_of(&log), log.active_producers());
    drop(log);
    let log = Log::open(dir.path(), config()).expect("reopen");
    assert_eq!((view_of(&log), log.active_producers()), before);
    drop(log);
    // Rebuilt indexes start from the snapshot at the first segment, which knows the
    // producers and transactions of the deleted segments.
    for f in files(dir.path(), "txnindex") {
        fs::remove_file(f).expect("rm");
    }
    let log = Log::open(dir.path(), config()).expect("reopen");
    assert_eq!((view_of(&log), log.active_producers()), before, "rebuilt");
}

#[test]
fn a_crash_at_any_step_of_a_clean_leaves_consistent_indexes() {
    let src = scenario_dir(true);
    // Segments of the scenario merge into larger cleaned ones.
    let cfg = LogConfig { segment_bytes: 4096, ..compacted() };
    let now = 50_000;
    let crashed = tempfile::tempdir().expect("tempdir");
    copy_dir(src.path(), crashed.path());
    let groups = {
        let log = Log::open(crashed.path(), cfg.clone()).expect("open");
        let task = log.plan_clean(now, i64::MAX, &CleanerConfig::default()).expect("plan").expect("work");
        let cleaned = task.run(&mut |_| std::ops::ControlFlow::Continue(())).expect("run");
        cleaned.leave_files()
    };
    assert!(groups.iter().any(|(_, replaced)| replaced.len() > 1), "{groups:?}");
    let ops: Vec<_> = groups.iter().flat_map(|(base, replaced)| crate::swap::swap_ops(*base, replaced)).collect();
    for k in 0..=ops.len() {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(crashed.path(), dir.path());
        for op in &ops[..k] {
            crate::swap::apply(dir.path(), op).expect("step");
        }
        let what = format!("crash after {k} of {} swap steps", ops.len());
        let log = Log::open(dir.path(), cfg.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
        check_consistent(&log, &what);
        assert_eq!(files(dir.path(), "txnindex").len(), files(dir.path(), "log").len(), "{what}");
    }
    // A clean that completes keeps the entries of the markers it keeps, and they
    // read back after a restart.
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(src.path(), dir.path());
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    log.clean(now, i64::MAX, &CleanerConfig::default(), &mut |_| std::ops::ControlFlow::Continue(())).expect("clean");
    let live = view_of(&log);
    let markers: Vec<i64> = model_batches(&log).iter().filter(|b| b.marker == Some(false)).map(|b| b.base).collect();
    assert!(live.aborted.iter().all(|t| markers.contains(&t.last_offset)), "{live:?} {markers:?}");
    assert_eq!(live.ongoing, scenario_view().ongoing);
    drop(log);
    let log = Log::open(dir.path(), cfg).expect("reopen");
    assert_eq!(view_of(&log), live);
}

#[test]
fn the_cleaner_keeps_the_index_of_the_markers_it_keeps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 1 << 20, ..compacted() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    let seal = |log: &mut Log| {
        let end = log.log_end_offset();
        log.roll(end).expect("roll");
    };
    log.append(&B::at(1).kv("x", "aborted").producer(9, 0, 0).transactional().build(), 0, 1).expect("append"); // 0
    log.append_marker(9, 0, 0, false, 0, 2).expect("abort"); // 1
    seal(&mut log);
    log.append(&B::at(3).kv("x", "committed").producer(9, 0, 1).transactional().build(), 0, 3).expect("append"); // 2
    log.append_marker(9, 0, 0, true, 0, 4).expect("commit"); // 3
    log.append(&B::at(5).kv("y", "1").build(), 0, 5).expect("append"); // 4
    seal(&mut log);
    assert_eq!(log.aborted_transactions(0, i64::MAX), [t(9, 0, 1, 2)]);
    let clean = |log: &mut Log, now: i64| log.clean(now, i64::MAX, &CleanerConfig::default(), &mut |_| std::ops::ControlFlow::Continue(()));
    clean(&mut log, 100).expect("clean").expect("a clean to do");
    // The clean met the aborted data: the marker and its entry stay.
    assert_eq!(log.aborted_transactions(0, i64::MAX), [t(9, 0, 1, 2)]);
    assert_eq!(files(dir.path(), "txnindex").len(), files(dir.path(), "log").len());
    drop(log);
    let mut log = Log::open(dir.path(), cfg.clone()).expect("reopen");
    assert_eq!(log.aborted_transactions(0, i64::MAX), [t(9, 0, 1, 2)], "the swapped segment's index file");
    // Later cleans: the marker gets a horizon, then goes, and its entry with it.
    for now in [200, 100_000_000] {
        log.append(&B::at(now).kv(&format!("z{now}"), "1").build(), 0, now).expect("append");
        seal(&mut log);
        clean(&mut log, now).expect("clean");
    }
    let markers: Vec<i64> =
        batches(&log).iter().filter(|(h, _)| h.is_control() && h.record_count > 0).map(|(h, _)| h.base_offset).collect();
    assert!(!markers.contains(&1), "the abort marker went: {markers:?}");
    assert_eq!(log.aborted_transactions(0, i64::MAX), [], "and its entry");
    let before = view_of(&log);
    drop(log);
    let log = Log::open(dir.path(), cfg).expect("reopen");
    assert_eq!(view_of(&log), before);
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    /// A transactional batch of `n` records.
    Txn {
        pid: i64,
        n: usize,
    },
    /// A non-transactional batch, of a producer (0-2 are transactional, 3-4 not) or none.
    Plain {
        pid: Option<i64>,
    },
    Marker {
        pid: i64,
        commit: bool,
    },
    /// Truncates `back` offsets from the end (a follower cutting its tail).
    Truncate {
        back: i64,
    },
    Restart {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0i64..3, 1usize..4).prop_map(|(pid, n)| Op::Txn { pid, n }),
        2 => proptest::option::of(0i64..5).prop_map(|pid| Op::Plain { pid }),
        3 => (0i64..3, any::<bool>()).prop_map(|(pid, commit)| Op::Marker { pid, commit }),
        1 => (0i64..8).prop_map(|back| Op::Truncate { back }),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

/// The next sequence of `pid`: after its last data batch in the log, else 0.
fn next_seq(batches: &[(karst_batch::BatchHeader, Vec<u8>)], pid: i64) -> i32 {
    batches.iter().rev().find(|(h, _)| h.producer_id == pid && !h.is_control()).map_or(0, |(h, _)| h.last_sequence() + 1)
}

fn run(ops: &[Op]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Some(Log::open(dir.path(), config()).expect("open"));
    let mut model: Vec<MBatch> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let what = format!("op {i}: {op:?}");
        let mut l = log.take().expect("log");
        let end = l.log_end_offset();
        let expected_view = model_view(&model);
        let in_txn = |pid: i64| expected_view.ongoing.iter().any(|(p, _)| *p == pid);
        let current = batches(&l);
        match op {
            Op::Txn { pid, n } => {
                let info = txn(&mut l, *pid, next_seq(&current, *pid), *n).unwrap_or_else(|e| panic!("{what}: {e}"));
                model.push(MBatch { base: end, last: info.last_offset, pid: *pid, transactional: true, marker: None });
            }
            Op::Plain { pid } => {
                let r = l.append(&plain_batch(pid.map(|p| (p, next_seq(&current, p)))), 0, 1_000);
                match pid {
                    Some(p) if in_txn(*p) => {
                        assert!(matches!(r, Err(StorageError::InvalidTxnState { .. })), "{what}: {r:?}");
                    }
                    _ => {
                        r.unwrap_or_else(|e| panic!("{what}: {e}"));
                        model.push(MBatch { base: end, last: end, pid: pid.unwrap_or(-1), transactional: false, marker: None });
                    }
                }
            }
            Op::Marker { pid, commit } => {
                marker(&mut l, *pid, *commit).unwrap_or_else(|e| panic!("{what}: {e}"));
                model.push(MBatch { base: end, last: end, pid: *pid, transactional: true, marker: Some(*commit) });
            }
            Op::Truncate { back } => {
                let cut = (end - back).max(0);
                l = l.truncate_to(cut).unwrap_or_else(|e| panic!("{what}: {e}"));
                model.retain(|b| b.last < cut);
            }
            Op::Restart { clean } => {
                if *clean {
                    l.close().unwrap_or_else(|e| panic!("{what}: {e}"));
                } else {
                    drop(l);
                }
                l = Log::open(dir.path(), config()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            }
        }
        let expected = model_view(&model);
        assert_eq!(view_of(&l), expected, "{what}");
        check_ranges(&l, &expected, &what);
        log = Some(l);
    }
    // Whatever the history, a restart agrees.
    drop(log);
    let l = Log::open(dir.path(), config()).expect("final reopen");
    assert_eq!(view_of(&l), model_view(&model), "final reopen");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops);
    }
}

/// What a read_committed consumer sees below the last stable offset (Kafka's
/// `CompletedFetch` with `READ_COMMITTED`): the aborted transactions of the range
/// turn their producers' transactional batches away until their ABORT marker. The
/// latest value of each key (a tombstone deletes it), and the offsets read.
fn consumer_view(log: &Log) -> (BTreeMap<Vec<u8>, Vec<u8>>, Vec<i64>) {
    let lso = log.last_stable_offset(log.log_end_offset());
    let mut pending: std::collections::VecDeque<AbortedTxn> = log.aborted_transactions(log.log_start_offset(), lso).into();
    let mut aborted_pids = std::collections::HashSet::new();
    let mut view = BTreeMap::new();
    let mut offsets = Vec::new();
    for (h, bytes) in batches(log).into_iter().filter(|(h, _)| h.base_offset < lso) {
        while pending.front().is_some_and(|t| t.first_offset <= h.last_offset()) {
            aborted_pids.insert(pending.pop_front().expect("front").producer_id);
        }
        if h.is_control() {
            if EndTxnMarker::of_batch(&bytes, 1 << 16).is_ok_and(|m| !m.commit) {
                aborted_pids.remove(&h.producer_id);
            }
            continue;
        }
        if h.is_transactional() && aborted_pids.contains(&h.producer_id) {
            continue;
        }
        for (offset, k, v) in crate::cleaner_tests::decode(&h, &bytes) {
            offsets.push(offset);
            let k = k.expect("keyed");
            match v {
                Some(v) => view.insert(k, v),
                None => view.remove(&k),
            };
        }
    }
    (view, offsets)
}

/// One step of the cleaning property test.
#[derive(Debug, Clone)]
enum COp {
    Txn { pid: i64, key: u8, tombstone: bool },
    Plain { key: u8, tombstone: bool },
    Marker { pid: i64, commit: bool },
    Roll,
    Clean { now: i64 },
}

fn cop() -> impl Strategy<Value = COp> {
    prop_oneof![
        4 => (0i64..3, 0u8..6, proptest::bool::weighted(0.2)).prop_map(|(pid, key, tombstone)| COp::Txn { pid, key, tombstone }),
        3 => (0u8..6, proptest::bool::weighted(0.2)).prop_map(|(key, tombstone)| COp::Plain { key, tombstone }),
        3 => (0i64..3, any::<bool>()).prop_map(|(pid, commit)| COp::Marker { pid, commit }),
        2 => Just(COp::Roll),
        2 => (0i64..3_000).prop_map(|now| COp::Clean { now }),
    ]
}

fn run_cleaning(ops: &[COp]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 600, ..compacted() };
    let mut log = Log::open(dir.path(), cfg.clone()).expect("open");
    let mut now = 0;
    for (i, op) in ops.iter().enumerate() {
        let what = format!("op {i}: {op:?}");
        let current = batches(&log);
        match op {
            COp::Txn { pid, key, tombstone } => {
                let k = format!("k{key}");
                let b = if *tombstone { B::at(1_000).tomb(&k) } else { B::at(1_000).kv(&k, &format!("t{i}")) };
                log.append(&b.producer(*pid, 0, next_seq(&current, *pid)).transactional().build(), 0, 1_000).expect(&what);
            }
            COp::Plain { key, tombstone } => {
                let k = format!("k{key}");
                let b = if *tombstone { B::at(1_000).tomb(&k) } else { B::at(1_000).kv(&k, &format!("p{i}")) };
                log.append(&b.build(), 0, 1_000).expect(&what);
            }
            COp::Marker { pid, commit } => {
                marker(&mut log, *pid, *commit).expect(&what);
            }
            // (An empty active segment is not rolled: the log never does.)
            COp::Roll if log.active.size() > 0 => {
                let end = log.log_end_offset();
                log.roll(end).expect(&what);
            }
            COp::Roll => {}
            COp::Clean { now: step } => {
                now += step;
                let before = (consumer_view(&log), view_of(&log).ongoing, log.first_unstable_offset());
                // The broker cleans below the last stable offset.
                let lso = log.last_stable_offset(log.log_end_offset());
                log.clean(now, lso, &CleanerConfig::default(), &mut |_| std::ops::ControlFlow::Continue(())).expect(&what);
                let after = (consumer_view(&log), view_of(&log).ongoing, log.first_unstable_offset());
                assert_eq!(after.0 .0, before.0 .0, "{what}: a read_committed consumer's view");
                assert!(after.0 .1.iter().all(|o| before.0 .1.contains(o)), "{what}: only records it saw before");
                assert_eq!((&after.1, after.2), (&before.1, before.2), "{what}: open transactions");
                let aborts: Vec<i64> = model_batches(&log).iter().filter(|b| b.marker == Some(false)).map(|b| b.base).collect();
                let listed = log.aborted_transactions(0, i64::MAX);
                assert!(listed.iter().all(|t| aborts.contains(&t.last_offset)), "{what}: {listed:?} without markers {aborts:?}");
            }
        }
    }
    let live = (consumer_view(&log).0, view_of(&log));
    drop(log);
    let log = Log::open(dir.path(), cfg).expect("reopen");
    assert_eq!((consumer_view(&log).0, view_of(&log)), live, "reopened");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn cleaning_below_the_lso_keeps_what_read_committed_consumers_see(ops in proptest::collection::vec(cop(), 1..50)) {
        run_cleaning(&ops);
    }
}

#[test]
fn a_coordinators_transactional_writes_carry_no_sequence_and_only_the_epoch_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), config()).expect("open");
    let offsets = |seq: i32, epoch: i16| B::at(1_000).kv("g", "o").producer(7, epoch, seq).transactional().build();
    // Two transactional offset commits of one producer, both without a sequence.
    log.append_as_coordinator(&offsets(-1, 1), 0, 1_000).expect("first");
    log.append_as_coordinator(&offsets(-1, 1), 0, 1_000).expect("second: not a duplicate, not out of order");
    assert_eq!(log.ongoing_transactions(), [(7, 0)]);
    assert!(matches!(log.append_as_coordinator(&offsets(-1, 0), 0, 1_000), Err(StorageError::InvalidProducerEpoch { .. })));
    // A client may not do the same: its batches are sequenced (this one is taken
    // for a retry of the last, so nothing is written).
    let end = log.log_end_offset();
    assert!(log.append(&offsets(-1, 1), 0, 1_000).map_or(true, |i| i.duplicate));
    assert_eq!(log.log_end_offset(), end);
    log.append_marker(7, 1, 0, true, 0, 1_000).expect("commit");
    assert_eq!((log.ongoing_transactions(), log.last_stable_offset(3)), (vec![], 3));
}
