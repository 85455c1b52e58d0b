//! Follower-side log operations: appending a leader's batches as they are, and
//! truncating what the leader never committed.

use karst_batch::{build_batch, BatchHeader};
use proptest::prelude::*;

use crate::{CleanupPolicy, Log, LogConfig, StorageError};

fn tiny() -> LogConfig {
    LogConfig { segment_bytes: 1024, segment_ms: None, index_interval_bytes: 128, segment_index_bytes: 4096, ..LogConfig::default() }
}

fn batch(count: i32, len: usize, seed: u64) -> Vec<u8> {
    let value: Vec<u8> = (0..len).map(|i| (seed as usize * 31 + i) as u8).collect();
    build_batch(0, count, 1_000 + seed as i64, &value)
}

/// Every batch of `log` from its start, as stored.
fn stored(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let slice = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        assert!(!slice.bytes.is_empty());
        for item in karst_batch::batches(&slice.bytes) {
            let (pos, h) = item.expect("valid batch");
            out.push(slice.bytes[pos..pos + h.total_len()].to_vec());
            offset = h.last_offset() + 1;
        }
    }
    out
}

fn leader_with(n: u64, epoch: i32) -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    for i in 0..n {
        log.append(&batch(1 + (i % 3) as i32, 30 + (i as usize * 17) % 150, i), epoch, 0).expect("append");
    }
    (dir, log)
}

#[test]
fn a_follower_copy_is_byte_identical_and_reopens() {
    let (_ld, leader) = leader_with(40, 7);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut follower = Log::open(dir.path(), tiny()).expect("open");
    // Fetch-sized chunks of whole batches, as a follower receives them.
    let mut offset = 0;
    while offset < leader.log_end_offset() {
        let chunk = leader.read(offset, 300, i64::MAX, true).expect("read").bytes;
        let info = follower.append_replicated(&chunk, 0).expect("replicated append");
        assert_eq!(info.base_offset, offset);
        offset = info.last_offset + 1;
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(stored(&follower), stored(&leader));
    assert!(stored(&follower).iter().all(|b| BatchHeader::parse(b).expect("h").partition_leader_epoch == 7), "epochs kept");
    follower.close().expect("close");
    let follower = Log::open(dir.path(), tiny()).expect("reopen");
    assert_eq!(stored(&follower), stored(&leader));
}

#[test]
fn replicated_batches_that_go_backwards_or_are_corrupt_write_nothing() {
    let (_ld, leader) = leader_with(6, 1);
    let all = leader.read(0, 1 << 20, i64::MAX, true).expect("read").bytes;
    let first_len = BatchHeader::parse(&all).expect("h").total_len();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = Log::open(dir.path(), tiny()).expect("open");

    // Going backwards within one call: the second batch, then the first.
    let second_len = BatchHeader::parse(&all[first_len..]).expect("h").total_len();
    let backwards_pair = [&all[first_len..first_len + second_len], &all[..first_len]].concat();
    assert!(matches!(f.append_replicated(&backwards_pair, 0), Err(StorageError::Batch(_))));
    // A flipped bit in a record: CRC mismatch.
    let mut flipped = all[..first_len].to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x10;
    assert!(matches!(f.append_replicated(&flipped, 0), Err(StorageError::Batch(_))));
    // A negative last offset delta (outside the CRC is the base offset only, so this one is caught by its shape).
    let mut backwards = all[..first_len].to_vec();
    backwards[23..27].copy_from_slice(&(-3i32).to_be_bytes());
    assert!(matches!(f.append_replicated(&backwards, 0), Err(StorageError::Batch(_))));
    // Torn: half a batch.
    assert!(matches!(f.append_replicated(&all[..first_len / 2], 0), Err(StorageError::Batch(_))));
    assert_eq!(f.log_end_offset(), 0);
    assert_eq!(f.size_bytes(), 0, "nothing was written");
    f.append_replicated(&all, 0).expect("the real thing");
    assert_eq!(stored(&f), stored(&leader));
}

/// A compacted leader log has gaps where the cleaner removed whole batches: a
/// follower takes them (as Kafka's follower append does), refuses a batch below
/// its log end, and, being compacted too, recovers them after a crash (no clean
/// shutdown). A log that is not compacted recovers contiguous offsets only.
#[test]
fn replicated_batches_after_a_gap_are_kept_and_survive_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let compacted = LogConfig { cleanup_policy: CleanupPolicy::COMPACT, ..tiny() };
    let mut f = Log::open(dir.path(), compacted.clone()).expect("open");
    let at = |base: i64, count: i32| build_batch(base, count, 1_000, b"gap");
    let info = f.append_replicated(&[at(0, 2), at(5, 1)].concat(), 0).expect("a gap inside one call");
    assert_eq!((info.base_offset, info.last_offset, f.log_end_offset()), (0, 5, 6));
    let info = f.append_replicated(&at(9, 3), 0).expect("a gap after the log end");
    assert_eq!((info.base_offset, info.last_offset), (9, 11));
    assert!(matches!(f.append_replicated(&at(11, 1), 0), Err(StorageError::Batch(_))), "overlaps the log");
    // A gap too wide for the active segment's relative offsets rolls a segment at the batch.
    let far = i64::from(i32::MAX) + 100;
    f.append_replicated(&at(far, 1), 0).expect("far past the end");
    assert_eq!(f.active.base_offset(), far);
    let bases = |log: &Log| stored(log).iter().map(|b| BatchHeader::parse(b).expect("h").base_offset).collect::<Vec<_>>();
    assert_eq!(bases(&f), vec![0, 5, 9, far]);
    assert_eq!(f.read(3, 1 << 20, i64::MAX, true).expect("read in a gap").first_offset, 5);
    drop(f); // no clean shutdown: the active segment is verified batch by batch
    let f = Log::open(dir.path(), compacted).expect("recover");
    assert_eq!(bases(&f), vec![0, 5, 9, far]);
    assert_eq!(f.log_end_offset(), far + 1);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut f = Log::open(dir.path(), tiny()).expect("open");
    f.append_replicated(&[at(0, 2), at(5, 1)].concat(), 0).expect("a gap");
    drop(f);
    let f = Log::open(dir.path(), tiny()).expect("recover");
    assert_eq!((bases(&f), f.log_end_offset()), (vec![0], 2), "not compacted: the tail after the gap is cut");
}

#[test]
fn truncation_cuts_at_the_batch_holding_the_offset_and_appends_continue() {
    let (dir, log) = leader_with(60, 2);
    let before = stored(&log);
    assert!(log.closed.len() >= 4, "several segments");
    let end = log.log_end_offset();
    // Past the end: nothing happens.
    let log = log.truncate_to(end + 5).expect("no-op");
    assert_eq!(log.log_end_offset(), end);
    for target in [end - 1, end / 2 + 1, 7, 1] {
        let (_d, fresh) = leader_with(60, 2);
        let kept: Vec<Vec<u8>> = stored(&fresh)
            .into_iter()
            .take_while(|b| {
                let h = BatchHeader::parse(b).expect("h");
                h.last_offset() < target
            })
            .collect();
        let new_end = kept.last().map_or(0, |b| BatchHeader::parse(b).expect("h").last_offset() + 1);
        let mut cut = fresh.truncate_to(target).expect("truncate");
        assert_eq!(cut.log_end_offset(), new_end, "truncating to {target}");
        assert!(new_end <= target);
        assert_eq!(stored(&cut), kept);
        let info = cut.append(&batch(2, 40, 99), 3, 0).expect("append after truncation");
        assert_eq!(info.base_offset, new_end);
        let path = _d.path().to_path_buf();
        cut.close().expect("close");
        let reopened = Log::open(&path, tiny()).expect("reopen");
        assert_eq!(reopened.log_end_offset(), new_end + 2);
        assert_eq!(stored(&reopened)[..kept.len()], kept[..]);
    }
    drop(log);
    drop(before);
    drop(dir);
}

#[test]
fn truncation_at_or_below_the_start_empties_the_log_at_that_offset() {
    let (dir, log) = leader_with(20, 1);
    let mut log = log.truncate_to(0).expect("truncate");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert!(stored(&log).is_empty());
    log.append(&batch(1, 10, 1), 1, 0).expect("append");
    log.close().expect("close");
    let log = Log::open(dir.path(), tiny()).expect("reopen");
    assert_eq!(log.log_end_offset(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    /// A follower that copies, truncates to random points and copies again always
    /// ends byte-identical to its leader, across reopens.
    #[test]
    fn copy_truncate_and_recopy_converge(n in 1u64..40, cuts in proptest::collection::vec(0i64..120, 1..4), chunk in 100usize..2000) {
        let (_ld, leader) = leader_with(n, 5);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut follower = Log::open(dir.path(), tiny()).expect("open");
        for cut in cuts {
            while follower.log_end_offset() < leader.log_end_offset() {
                let bytes = leader.read(follower.log_end_offset(), chunk, i64::MAX, true).expect("read").bytes;
                follower.append_replicated(&bytes, 0).expect("append");
            }
            follower = follower.truncate_to(cut).expect("truncate");
            prop_assert!(follower.log_end_offset() <= cut.max(0) || follower.log_end_offset() == leader.log_end_offset());
            follower.close().expect("close");
            follower = Log::open(dir.path(), tiny()).expect("reopen");
        }
        while follower.log_end_offset() < leader.log_end_offset() {
            let bytes = leader.read(follower.log_end_offset(), chunk, i64::MAX, true).expect("read").bytes;
            follower.append_replicated(&bytes, 0).expect("append");
        }
        prop_assert_eq!(stored(&follower), stored(&leader));
    }
}

#[test]
fn leader_epochs_follow_appends_truncation_retention_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), tiny()).expect("open");
    for (epoch, n) in [(1, 10u64), (3, 10), (4, 10)] {
        for i in 0..n {
            log.append(&batch(1, 40, i), epoch, 0).expect("append");
        }
    }
    assert_eq!(log.leader_epochs().entries(), &[(1, 0), (3, 10), (4, 20)]);
    assert_eq!(log.end_offset_for_epoch(3), (3, 20));
    assert_eq!(log.end_offset_for_epoch(2), (1, 10));
    assert_eq!(log.end_offset_for_epoch(4), (4, 30));
    assert_eq!(log.end_offset_for_epoch(0), crate::leader_epochs::UNDEFINED_EPOCH_END);
    let file = dir.path().join(crate::leader_epochs::FILE);
    assert_eq!(std::fs::read_to_string(&file).expect("checkpoint"), "0\n3\n1 0\n3 10\n4 20\n");

    // A follower copying this log learns the same epochs from the batches.
    let fdir = tempfile::tempdir().expect("tempdir");
    let mut follower = Log::open(fdir.path(), tiny()).expect("open");
    let bytes = log.read(0, 1 << 20, i64::MAX, true).expect("read").bytes;
    let mut at = 0;
    while follower.log_end_offset() < log.log_end_offset() {
        let chunk = log.read(follower.log_end_offset(), 1 << 20, i64::MAX, true).expect("read").bytes;
        follower.append_replicated(&chunk, 0).expect("replicated");
        at += 1;
        assert!(at < 100);
    }
    drop(bytes);
    assert_eq!(follower.leader_epochs(), log.leader_epochs());

    // Truncating into epoch 3 drops epoch 4.
    let mut log = log.truncate_to(15).expect("truncate");
    assert_eq!(log.leader_epochs().entries(), &[(1, 0), (3, 10)]);
    assert_eq!(log.end_offset_for_epoch(4), (3, 15));
    // Moving the log start past epoch 1's segments moves epoch 1's start or drops it.
    let start = log.delete_records(12).expect("delete records");
    assert!(start == 12);
    assert_eq!(log.leader_epochs().entries(), &[(3, 12)]);
    log.close().expect("close");

    // A missing or stale checkpoint is rebuilt from the batches.
    std::fs::remove_file(&file).expect("remove");
    let log = Log::open(dir.path(), tiny()).expect("reopen");
    let rebuilt = log.leader_epochs().clone();
    assert_eq!(rebuilt.latest_epoch(), Some(3));
    drop(log);
    std::fs::write(&file, "0\n1\n1 0\n").expect("stale");
    let log = Log::open(dir.path(), tiny()).expect("reopen");
    assert_eq!(log.leader_epochs(), &rebuilt, "a cache behind the last batch is rebuilt");
}

#[test]
fn restart_at_empties_the_log_at_any_offset_and_survives_reopen() {
    let (dir, log) = leader_with(30, 2);
    assert!(!log.leader_epochs().entries().is_empty());
    let far = log.log_end_offset() + 1_000;
    let mut log = log.restart_at(far).expect("restart past the end");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (far, far));
    assert!(stored(&log).is_empty());
    assert!(log.leader_epochs().entries().is_empty(), "no epoch is known for an empty log");
    let info = log.append(&batch(2, 10, 1), 4, 0).expect("append");
    assert_eq!(info.base_offset, far);
    log.close().expect("close");
    let log = Log::open(dir.path(), tiny()).expect("reopen");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (far, far + 2));
    assert_eq!(log.leader_epochs().entries(), &[(4, far)]);
}
