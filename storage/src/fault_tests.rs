//! A disk that fails on purpose (see `faults`): EIO on write, EIO on fsync, ENOSPC.
//! The log must stay intact, and after a failed write or fsync never again report
//! anything durable.
use std::fs;
use std::path::Path;

use karst_batch::build_batch;

use crate::faults::{inject, is_no_space, Fault, Point};
use crate::{sync_together, Log, LogConfig, StorageError};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        segment_ms: None,
        index_interval_bytes: 128,
        segment_index_bytes: 4096,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

fn batch(seed: u8) -> Vec<u8> {
    build_batch(0, 2, 1_000 + i64::from(seed), &[seed; 100])
}

/// A log in `dir` holding three synced batches; returns it and its segment size.
fn synced_log(dir: &Path) -> (Log, u64) {
    let mut log = Log::open(dir, config()).expect("open");
    for i in 0..3 {
        log.append(&batch(i), 1, 0).expect("append");
    }
    log.flush_target().expect("target").sync().expect("sync");
    (log, segment_len(dir))
}

fn segment_len(dir: &Path) -> u64 {
    fs::metadata(dir.join("00000000000000000000.log")).expect("segment").len()
}

/// Every batch's base offset, read through the log.
fn offsets(log: &Log) -> Vec<i64> {
    let slice = log.read(log.log_start_offset(), 1 << 20, i64::MAX, true).expect("read");
    karst_batch::batches(&slice.bytes).map(|b| b.expect("whole batch").1.base_offset).collect()
}

fn assert_failed<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) {
    match r {
        Err(StorageError::Failed(_)) => {}
        other => panic!("{what} on a failed log: expected Failed, got {other:?}"),
    }
}

#[test]
fn eio_on_write_leaves_the_log_intact_and_takes_no_more_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, len) = synced_log(dir.path());
    let fault = inject(Point::Write, Fault::Io, 0, dir.path());
    let e = log.append(&batch(9), 1, 0).expect_err("the write fails");
    assert!(matches!(e, StorageError::Io(_)), "{e:?}");
    assert_eq!(log.log_end_offset(), 6, "log end unchanged");
    assert_eq!(segment_len(dir.path()), len, "the torn bytes were cut back");
    assert_eq!(offsets(&log), vec![0, 2, 4], "earlier batches still read");
    assert!(log.failure().is_some_and(|why| why.contains("write failed")));
    drop(fault); // the device answers again: the log still refuses
    assert_failed(log.append(&batch(10), 1, 0), "append");
    assert_failed(log.append_replicated(&batch(10), 0), "replicated append");
    assert_failed(log.flush(), "flush");
    assert_failed(log.flush_target(), "flush target");
    assert_failed(log.close(), "close");
    assert!(!dir.path().join(crate::checkpoint::CLEAN_SHUTDOWN_FILE).exists(), "no clean-shutdown marker");
    let log = Log::open(dir.path(), config()).expect("reopen");
    assert_eq!((log.log_end_offset(), offsets(&log)), (6, vec![0, 2, 4]), "recovered whole");
}

#[test]
fn eio_on_fsync_means_nothing_is_reported_durable_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = synced_log(dir.path());
    log.append(&batch(3), 1, 0).expect("append after the sync");
    let target = log.flush_target().expect("target");
    let fault = inject(Point::Fsync, Fault::Io, 0, dir.path());
    let e = target.sync().expect_err("the fsync fails");
    assert_eq!(e.raw_os_error(), Some(5), "EIO: {e}");
    drop(fault);
    // The kernel may now report success for pages it dropped: never ask it again.
    assert!(target.sync().is_err(), "a retried fsync of the same target is refused");
    assert!(target.failure().is_some_and(|why| why.contains("fsync failed")));
    assert!(log.failure().is_some(), "the failure reached the log through its target");
    assert_failed(log.flush_target(), "flush target");
    assert_failed(log.flush(), "flush");
    assert_failed(log.append(&batch(4), 1, 0), "append");
    assert_failed(log.enforce_retention(i64::MAX), "retention");
    assert_failed(log.delete_records(2), "delete records");
    assert_eq!(offsets(&log), vec![0, 2, 4, 6], "reads still served");
}

#[test]
fn a_failed_flush_or_segment_roll_fails_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = synced_log(&dir.path().join("flush"));
    let _fault = inject(Point::Fsync, Fault::Io, 0, &dir.path().join("flush"));
    assert!(matches!(log.flush(), Err(StorageError::Io(_))));
    assert_failed(log.flush(), "flush");

    // Room for two batches: the third rolls the segment.
    let small = LogConfig { segment_bytes: 5 * batch(0).len() as u64 / 2, ..config() };
    let roll_dir = dir.path().join("roll");
    let mut log = Log::open(&roll_dir, small).expect("open");
    log.append(&batch(0), 1, 0).expect("first batch fits");
    log.append(&batch(1), 1, 0).expect("second batch fits");
    let _fault = inject(Point::Fsync, Fault::Io, 0, &roll_dir);
    assert!(matches!(log.append(&batch(2), 1, 0), Err(StorageError::Io(_))), "the roll's fsync fails");
    assert_eq!(log.log_end_offset(), 4);
    assert_failed(log.append(&batch(3), 1, 0), "append after a failed roll");
}

#[test]
fn a_failed_group_fsync_fails_every_log_in_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, _) = synced_log(&dir.path().join("a"));
    let (b, _) = synced_log(&dir.path().join("b"));
    let (ta, tb) = (a.flush_target().expect("a"), b.flush_target().expect("b"));
    sync_together(&[&ta, &tb], |f| f.sync_all()).expect("a healthy group syncs");
    let failing = sync_together(&[&ta, &tb], |_| Err(std::io::Error::from_raw_os_error(5)));
    assert!(failing.is_err());
    assert!(a.failure().is_some() && b.failure().is_some(), "both logs failed");
    assert!(sync_together(&[&ta, &tb], |f| f.sync_all()).is_err(), "and are never synced again");
}

#[test]
fn enospc_on_write_is_an_error_with_the_log_intact_and_writable_once_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, len) = synced_log(dir.path());
    let full = inject(Point::Write, Fault::NoSpace, 0, dir.path());
    match log.append(&batch(9), 1, 0) {
        Err(StorageError::Io(e)) => assert!(is_no_space(&e), "{e}"),
        other => panic!("expected ENOSPC, got {other:?}"),
    }
    assert_eq!((log.log_end_offset(), segment_len(dir.path())), (6, len), "nothing torn counted or left");
    assert_eq!(offsets(&log), vec![0, 2, 4], "reads served");
    assert!(log.failure().is_none(), "a full disk does not fail the log");
    drop(full);
    let info = log.append(&batch(10), 1, 0).expect("space returned");
    assert_eq!(info.base_offset, 6, "offsets continue where the log ended");
    log.flush_target().expect("target").sync().expect("sync");
    log.close().expect("close");
    let log = Log::open(dir.path(), config()).expect("reopen");
    assert_eq!(offsets(&log), vec![0, 2, 4, 6]);
}
