//! Segment and index recovery: the input becomes the files of a partition
//! directory (one or two segments, their `.index`/`.timeindex`, optionally the
//! clean-shutdown marker, leader-epoch checkpoint, log-start-offset checkpoint and
//! a producer snapshot), and `Log::open` recovers it.
//!
//! Opening may fail with an error; it must never panic. Without a clean-shutdown
//! marker the single segment is untrusted, and then what recovery keeps must be a
//! valid prefix of the input: the file is a prefix, every batch in it passes its
//! CRC with contiguous offsets, the log end follows the last one, and the log takes
//! and returns a new append and reopens at the same end.
#![no_main]

use std::fs;
use std::path::Path;

use karst_batch::{build_batch, BatchHeader};
use karst_fuzz::{fix_crcs, temp_dir, Pieces};
use karst_storage::{Log, LogConfig};
use libfuzzer_sys::fuzz_target;

const CLEAN: u8 = 1;
const FIX_CRCS: u8 = 2;
const TWO_SEGMENTS: u8 = 4;
const INDEXES_OF_ACTIVE: u8 = 8;
const EPOCHS: u8 = 16;
const LOG_START: u8 = 32;
const SNAPSHOT: u8 = 64;

fn name(offset: i64, ext: &str) -> String {
    format!("{offset:020}.{ext}")
}

/// The offset after the last batch a header walk finds (`base + 1` if none).
fn next_offset(log: &[u8], base: i64) -> i64 {
    let (mut pos, mut next) = (0usize, base + 1);
    while let Some(h) = log.get(pos..).and_then(|rest| BatchHeader::parse(rest).ok()) {
        next = h.last_offset().saturating_add(1).max(next);
        pos += h.total_len();
    }
    next
}

fn config() -> LogConfig {
    LogConfig { segment_index_bytes: 4096, index_interval_bytes: 64, ..LogConfig::default() }
}

fuzz_target!(|data: &[u8]| {
    let mut p = Pieces(data);
    let flags = p.byte();
    let base = i64::from(p.byte());
    let (index, time_index, epochs, log_start, snapshot) = (p.piece(), p.piece(), p.piece(), p.piece(), p.piece());
    let closed = (flags & TWO_SEGMENTS != 0).then(|| p.piece().to_vec());
    let mut active = p.rest().to_vec();
    let mut closed = closed;
    if flags & FIX_CRCS != 0 {
        fix_crcs(&mut active);
        if let Some(c) = closed.as_mut() {
            fix_crcs(c);
        }
    }

    let tmp = temp_dir();
    let dir = tmp.path();
    let active_base = closed.as_deref().map_or(base, |c| next_offset(c, base));
    let write = |file: &str, bytes: &[u8]| fs::write(dir.join(file), bytes).expect("write an input file");
    if let Some(c) = &closed {
        write(&name(base, "log"), c);
    }
    write(&name(active_base, "log"), &active);
    let indexed = if flags & INDEXES_OF_ACTIVE != 0 || closed.is_none() { active_base } else { base };
    write(&name(indexed, "index"), index);
    write(&name(indexed, "timeindex"), time_index);
    if flags & CLEAN != 0 {
        write("clean-shutdown", b"");
    }
    if flags & EPOCHS != 0 {
        write("leader-epoch-checkpoint", epochs);
    }
    if flags & LOG_START != 0 {
        write("log-start-offset", log_start);
    }
    if flags & SNAPSHOT != 0 {
        write(&name(active_base, "snapshot"), snapshot);
    }

    let Ok(log) = Log::open(dir, config()) else { return };
    let strict = flags & (CLEAN | TWO_SEGMENTS | LOG_START) == 0;
    check(dir, log, &active, active_base, strict);
});

/// Reads the whole recovered log; in `strict` mode also checks that it is a valid
/// prefix of `input` and that it stays usable.
fn check(dir: &Path, mut log: Log, input: &[u8], base: i64, strict: bool) {
    let on_disk = fs::read(dir.join(name(base, "log"))).unwrap_or_default();
    if strict {
        assert!(input.starts_with(&on_disk), "recovery kept bytes that are not a prefix of the segment");
    }
    let mut offset = log.log_start_offset();
    let mut kept = 0usize;
    for _ in 0..10_000 {
        if offset >= log.log_end_offset() {
            break;
        }
        let slice = match log.read(offset, 1 << 16, i64::MAX, true) {
            Ok(s) => s,
            Err(e) if !strict => {
                let _ = e;
                return;
            }
            Err(e) => panic!("reading recovered offset {offset}: {e}"),
        };
        let mut pos = 0usize;
        let start = offset;
        while pos < slice.bytes.len() {
            let h = match BatchHeader::parse_checked(&slice.bytes[pos..]) {
                Ok(h) => h,
                Err(e) if strict => panic!("recovered batch at offset {offset} is invalid: {e}"),
                Err(_) => return,
            };
            if strict {
                assert_eq!(h.base_offset, offset, "recovered offsets are contiguous");
            }
            offset = h.last_offset().saturating_add(1).max(offset);
            pos += h.total_len();
            kept += h.total_len();
        }
        if offset == start {
            assert!(!strict, "a read of recovered offset {offset} returned nothing before the log end");
            return;
        }
    }
    if !strict {
        return;
    }
    assert_eq!(offset, log.log_end_offset(), "the log end follows the last recovered batch");
    assert_eq!(kept, on_disk.len(), "every kept byte belongs to a recovered batch");

    let end = log.log_end_offset();
    let batch = build_batch(0, 2, 1_000, b"fuzz");
    let info = log.append(&batch, 1, 2_000).expect("a recovered log takes an append");
    assert_eq!(info.base_offset, end);
    let read = log.read(end, 1 << 16, i64::MAX, true).expect("the append reads back");
    assert_eq!(read.bytes.len(), batch.len());
    log.close().expect("a recovered log closes");
    let reopened = Log::open(dir, config()).expect("a closed log reopens");
    assert_eq!(reopened.log_end_offset(), end + 2, "reopened at the same end");
}
