//! The cleaner under crashes, failing disks and readers.
//!
//! A crash (kill -9) at any step of a clean, simulated by leaving the files as the
//! step left them (the `.cleaned` files written, then every prefix of the swap's
//! renames and removals), and an injected EIO at every write, fsync, directory
//! fsync and rename of a clean (`faults`), must leave a log that opens into a
//! readable log: every record it holds was in the log before at that offset, every
//! record the clean keeps is there, each key reads as its latest value, and reads
//! by offset and time work. Readers that hold `Bytes` from before a clean keep
//! them unchanged.
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::thread;

use bytes::Bytes;
use karst_batch::BatchHeader;

use crate::cleaner_tests::{append, batches, check_lookups, clean, compacted, decode, files_ending, go_on, records, roll, Rec, B};
use crate::faults::{inject, Fault, Point};
use crate::swap::{self, swap_ops};
use crate::{CleanerConfig, Log, LogConfig};

const NOW: i64 = 50_000;

/// Large segments (so cleaned groups merge several) rolled by hand into small ones.
fn config() -> LogConfig {
    LogConfig { segment_bytes: 4096, ..compacted() }
}

/// A closed log of small segments: overwritten keys, tombstones, every codec, an
/// idempotent producer; an earlier clean left short segments that the next clean
/// merges, and later appends made them dirty again.
fn messy_log(dir: &Path) {
    let mut log = Log::open(dir, config()).expect("open");
    let mut seq = 0;
    for round in 0..2 {
        for i in 0..40i64 {
            let k = format!("k{}", (i * 7 + round) % 13);
            let mut b = if i % 9 == 4 { B::at(1_000 + i).tomb(&k) } else { B::at(1_000 + i).kv(&k, &format!("{round}-{i}")) };
            b = b.kv(&format!("k{}", i % 5), &format!("{round}+{i}")).codec((i % 5) as i16);
            if i % 6 == 0 {
                b = b.producer(3, 0, seq);
                seq += 2;
            }
            append(&mut log, &b);
            if i % 3 == 2 {
                roll(&mut log);
            }
        }
        if round == 0 {
            clean(&mut log, NOW - 10_000).expect("first clean");
        }
    }
    roll(&mut log);
    append(&mut log, &B::at(2_000).kv("k1", "active"));
    log.close().expect("close");
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("ls") {
        let path = entry.expect("entry").path();
        fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

/// The latest value of every key (a tombstone deletes it).
fn view(records: &[Rec]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut v = BTreeMap::new();
    for (_, k, val) in records {
        let k = k.clone().expect("keyed");
        match val {
            Some(val) => v.insert(k, val.clone()),
            None => v.remove(&k),
        };
    }
    v
}

/// What the log before the clean held, and what the clean keeps of it.
struct Expected {
    before: Vec<Rec>,
    kept: Vec<Rec>,
}

impl Expected {
    fn of(src: &Path) -> Expected {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_dir(src, copy.path());
        let mut log = Log::open(copy.path(), config()).expect("open");
        let before = records(&log);
        let stats = clean(&mut log, NOW).expect("a clean to do");
        assert!(stats.segments_cleaned > stats.segments_written, "groups merge segments: {stats:?}");
        Expected { before, kept: records(&log) }
    }

    /// The log holds only records it held before, all that the clean keeps, the same
    /// view, and answers lookups.
    fn check(&self, log: &Log, what: &str) {
        let got = records(log);
        let before: HashMap<i64, &Rec> = self.before.iter().map(|r| (r.0, r)).collect();
        let present: HashMap<i64, &Rec> = got.iter().map(|r| (r.0, r)).collect();
        for r in &got {
            assert_eq!(before.get(&r.0), Some(&r), "{what}: a record that was not there at offset {}", r.0);
        }
        for r in &self.kept {
            assert_eq!(present.get(&r.0), Some(&r), "{what}: a kept record is missing at offset {}", r.0);
        }
        assert_eq!(view(&got), view(&self.before), "{what}: the latest values");
        check_lookups(log);
    }
}

/// Opens the crashed copy, checks it, checks nothing of the clean is left, and that
/// it takes an append and reopens the same.
fn recover_and_check(dir: &Path, expected: &Expected, what: &str) -> Vec<Rec> {
    let mut log = Log::open(dir, config()).unwrap_or_else(|e| panic!("{what}: open after the crash: {e}"));
    expected.check(&log, what);
    for suffix in [".cleaned", ".swap", ".tmp"] {
        assert!(files_ending(dir, suffix).is_empty(), "{what}: {suffix} files left");
    }
    let got = records(&log);
    let end = log.log_end_offset();
    assert_eq!(append(&mut log, &B::at(3_000).kv("after", "crash")), end, "{what}");
    drop(log);
    let log = Log::open(dir, config()).expect("reopen");
    assert_eq!(records(&log)[..got.len()], got[..], "{what}: reopened");
    got
}

#[test]
fn a_crash_at_any_step_of_a_clean_recovers_a_whole_log() {
    let src = tempfile::tempdir().expect("tempdir");
    messy_log(src.path());
    let expected = Expected::of(src.path());

    // The cleaned segments written and fsynced, nothing swapped yet: the crash.
    let crashed = tempfile::tempdir().expect("tempdir");
    copy_dir(src.path(), crashed.path());
    let groups = {
        let log = Log::open(crashed.path(), config()).expect("open");
        let task = log.plan_clean(NOW, i64::MAX, &CleanerConfig::default()).expect("plan").expect("work");
        let cleaned = task.run(&mut go_on).expect("run");
        let groups = cleaned.leave_files();
        drop(log); // kill -9: no close
        groups
    };
    assert!(groups.iter().any(|(_, replaced)| replaced.len() > 2), "{groups:?}");
    let ops: Vec<_> = groups.iter().flat_map(|(base, replaced)| swap_ops(*base, replaced)).collect();

    for k in 0..=ops.len() {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(crashed.path(), dir.path());
        for op in &ops[..k] {
            swap::apply(dir.path(), op).expect("step");
        }
        let what = format!("crash after {k} of {} swap steps", ops.len());
        let got = recover_and_check(dir.path(), &expected, &what);
        if k == 0 {
            assert_eq!(got, expected.before, "{what}: nothing was committed");
        }
        if k == ops.len() {
            assert_eq!(got, expected.kept, "{what}: all of it was");
        }
    }

    // A crash while a cleaned segment was being written: torn at any length.
    let (base, _) = &groups[0];
    let name = swap::cleaned_name(*base, "log");
    let len = fs::metadata(crashed.path().join(&name)).expect("cleaned").len();
    for cut in [0, 1, len / 3, len - 1] {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(crashed.path(), dir.path());
        fs::OpenOptions::new().write(true).open(dir.path().join(&name)).expect("open").set_len(cut).expect("cut");
        let got = recover_and_check(dir.path(), &expected, &format!("torn cleaned segment at {cut}"));
        assert_eq!(got, expected.before);
    }
}

#[test]
fn a_failure_at_any_write_fsync_or_rename_of_a_clean_loses_nothing() {
    let src = tempfile::tempdir().expect("tempdir");
    messy_log(src.path());
    let expected = Expected::of(src.path());
    for point in [Point::Write, Point::Fsync, Point::FsyncDir, Point::Rename] {
        let mut fired = 0;
        for skip in 0.. {
            let dir = tempfile::tempdir().expect("tempdir");
            copy_dir(src.path(), dir.path());
            let mut log = Log::open(dir.path(), config()).expect("open");
            let what = format!("{point:?} failing after {skip} calls");
            let fault = inject(point, Fault::Io, skip, dir.path());
            let result = log.clean(NOW, i64::MAX, &CleanerConfig::default(), &mut go_on);
            drop(fault);
            match result {
                Ok(stats) => {
                    // The fault never fired (or only at the checkpoint, which is advisory).
                    assert!(stats.is_some(), "{what}");
                    assert_eq!(records(&log), expected.kept, "{what}");
                    break;
                }
                Err(e) => {
                    fired += 1;
                    // Failed or not, the live log still reads whole.
                    expected.check(&log, &format!("{what} ({e}), live"));
                    if log.failure().is_none() {
                        assert!(files_ending(dir.path(), ".cleaned").is_empty(), "{what}: an uncommitted clean leaves no file");
                    }
                    drop(log);
                    recover_and_check(dir.path(), &expected, &what);
                }
            }
            assert!(skip < 500, "{what}: the clean never got through");
        }
        assert!(fired > 0, "{point:?} never failed a clean");
    }
}

#[test]
fn bytes_held_across_a_clean_do_not_change() {
    let src = tempfile::tempdir().expect("tempdir");
    messy_log(src.path());
    let mut log = Log::open(src.path(), config()).expect("open");
    let mut held: Vec<Bytes> = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1, i64::MAX, true).expect("read").bytes;
        offset = BatchHeader::parse(&bytes).expect("batch").last_offset() + 1;
        held.push(bytes);
    }
    let copies: Vec<Vec<u8>> = held.iter().map(|b| b.to_vec()).collect();
    clean(&mut log, NOW).expect("clean");
    append(&mut log, &B::at(3_000).kv("k1", "after"));
    for (b, c) in held.iter().zip(&copies) {
        assert!(b[..] == c[..], "bytes a reader held changed under it");
        assert!(BatchHeader::parse_checked(b).is_ok());
    }
    let now: usize = batches(&log).iter().map(|(_, b)| b.len()).sum();
    assert!(now < copies.iter().map(Vec::len).sum::<usize>(), "new reads see the cleaned log");
}

/// The broker's shape: the log behind a lock, a consumer reading it over and over
/// while a cleaner thread plans under the read lock, runs without it and swaps
/// under the write lock, and a producer keeps appending. Every record read at an
/// offset is the one written there, every pass reads valid batches in order, and
/// the last pass reads each key's latest value.
#[test]
fn consumers_reading_during_cleans_see_a_consistent_log() {
    const ROUNDS: i64 = 6;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), config()).expect("open");
    let shared = Arc::new(RwLock::new(log));
    let written: Arc<Mutex<HashMap<i64, Rec>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let consumer = {
        let (shared, written, done) = (Arc::clone(&shared), Arc::clone(&written), Arc::clone(&done));
        thread::spawn(move || {
            let mut passes = 0;
            loop {
                let last = done.load(std::sync::atomic::Ordering::Acquire);
                let mut offset = 0;
                let mut seen = Vec::new();
                loop {
                    let slice = {
                        let log = shared.read().expect("lock");
                        if offset >= log.log_end_offset() {
                            break;
                        }
                        log.read(offset.max(log.log_start_offset()), 700, i64::MAX, true).expect("read")
                    };
                    for item in karst_batch::batches(&slice.bytes) {
                        let (pos, h) = item.expect("a valid batch");
                        assert!(h.base_offset >= offset || seen.is_empty(), "batches in order");
                        if !h.is_control() {
                            seen.extend(decode(&h, &slice.bytes[pos..pos + h.total_len()]));
                        }
                        offset = h.last_offset() + 1;
                    }
                }
                let written = written.lock().expect("lock");
                for r in &seen {
                    assert_eq!(written.get(&r.0), Some(r), "offset {} reads what was written there", r.0);
                }
                passes += 1;
                if last {
                    let mut all: Vec<Rec> = written.values().cloned().collect();
                    all.sort();
                    assert_eq!(view(&seen), view(&all), "the last pass reads the latest values");
                    return passes;
                }
            }
        })
    };

    for round in 0..ROUNDS {
        {
            let mut log = shared.write().expect("lock");
            for i in 0..30i64 {
                let b = B::at(1_000 * round + i).kv(&format!("k{}", i % 7), &format!("{round}/{i}")).codec((i % 5) as i16);
                let base = append(&mut log, &b);
                written
                    .lock()
                    .expect("lock")
                    .insert(base, (base, Some(format!("k{}", i % 7).into_bytes()), Some(format!("{round}/{i}").into_bytes())));
                if i % 10 == 9 {
                    roll(&mut log);
                }
            }
        }
        let task = shared.read().expect("lock").plan_clean(NOW, i64::MAX, &CleanerConfig::default()).expect("plan").expect("work");
        let cleaned = task.run(&mut go_on).expect("run, without the lock");
        shared.write().expect("lock").finish_clean(cleaned).expect("swap");
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let passes = consumer.join().expect("consumer");
    assert!(passes >= 2, "{passes} passes");
    let log = shared.read().expect("lock");
    check_lookups(&log);
    assert!(log.closed.values().all(|s| s.size() > 0));
}
