//! Truncation under zero-copy readers: `Bytes` handed out by a read map the
//! segment file, so cutting the log must leave the bytes they hold as they were
//! (see `mmap.rs`). Before the cut segment was replaced rather than shortened,
//! these tests saw the held bytes rewritten by later appends, or died of SIGBUS.

use std::sync::{mpsc, Arc, RwLock};
use std::thread;

use bytes::Bytes;
use karst_batch::{build_batch, BatchHeader};

use crate::{Log, LogConfig};

/// One segment, batches larger than a page, so a cut leaves whole mapped pages
/// past the new end of the file.
fn config() -> LogConfig {
    LogConfig { segment_ms: None, index_interval_bytes: 128, segment_index_bytes: 4096, ..LogConfig::default() }
}

fn batch(fill: u8) -> Vec<u8> {
    build_batch(0, 1, 1_000, &vec![fill; 5_000])
}

fn filled(fills: impl IntoIterator<Item = u8>, epoch: i32) -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), config()).expect("open");
    for fill in fills {
        log.append(&batch(fill), epoch, 0).expect("append");
    }
    (dir, log)
}

/// Every batch in `bytes` passes its CRC.
fn all_valid(bytes: &Bytes) -> bool {
    karst_batch::batches(bytes).all(|item| item.is_ok_and(|(pos, _)| BatchHeader::parse_checked(&bytes[pos..]).is_ok()))
}

#[test]
fn bytes_held_across_a_truncation_and_new_appends_do_not_change() {
    let (_dir, log) = filled(b'a'..b'k', 0);
    let held = log.read(5, 1 << 20, i64::MAX, true).expect("read").bytes;
    let expected = held.to_vec();
    assert_eq!(expected.len(), 5 * batch(0).len());

    let mut log = log.truncate_to(5).expect("truncate");
    for fill in b'p'..b'z' {
        log.append(&batch(fill), 1, 0).expect("append after the cut");
    }
    assert!(held[..] == expected[..], "bytes a reader held changed under it");
    assert!(all_valid(&held));
    let fresh = log.read(5, 1 << 20, i64::MAX, true).expect("read").bytes;
    assert_eq!(BatchHeader::parse(&fresh).expect("header").partition_leader_epoch, 1, "new reads see the new batches");
}

#[test]
fn bytes_held_past_the_cut_stay_readable() {
    let (_dir, log) = filled(b'a'..b'k', 0);
    let held = log.read(1, 1 << 20, i64::MAX, true).expect("read").bytes;
    let expected = held.to_vec();
    let log = log.truncate_to(1).expect("truncate");
    assert_eq!(log.log_end_offset(), 1);
    // Today's pages past the new end: a SIGBUS here if the file was shortened.
    assert!(held[..] == expected[..]);
}

/// The broker's shape: the log behind a lock, a consumer's read taken under it and
/// written to its socket after the lock is released, while the replication thread
/// truncates the follower's log and appends what its new leader has.
#[test]
fn a_consumer_holding_reads_survives_follower_truncations_on_another_thread() {
    const ROUNDS: u8 = 8;
    let (dir, log) = filled(b'a'..b'k', 0);
    let shared = Arc::new(RwLock::new(Some(log)));
    let (holding_tx, holding_rx) = mpsc::channel::<()>();
    let (cut_tx, cut_rx) = mpsc::channel::<()>();

    let consumer = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            for round in 0..ROUNDS {
                let held = {
                    let guard = shared.read().expect("lock");
                    let log = guard.as_ref().expect("open log");
                    log.read(i64::from(round % 3), 1 << 20, i64::MAX, true).expect("read").bytes
                };
                let expected = held.to_vec();
                holding_tx.send(()).expect("follower waits");
                cut_rx.recv().expect("follower truncated");
                assert!(held[..] == expected[..], "round {round}: bytes in flight changed under the consumer");
                assert!(all_valid(&held), "round {round}: bytes in flight fail their CRC");
            }
        })
    };

    for round in 0..ROUNDS {
        holding_rx.recv().expect("consumer holds a read");
        let mut guard = shared.write().expect("lock");
        let log = guard.take().expect("open log");
        let mut log = log.truncate_to(i64::from(round % 4) + 1).expect("truncate");
        while log.log_end_offset() < 10 {
            log.append(&batch(b'A' + round), i32::from(round) + 1, 0).expect("append");
        }
        *guard = Some(log);
        drop(guard);
        cut_tx.send(()).expect("consumer waits");
    }
    consumer.join().expect("consumer thread");
    drop(shared);
    drop(dir);
}
