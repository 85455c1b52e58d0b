//! Produce validation and the append behind it: the record batches of one
//! partition are checked as the Produce handler does (`records::validate_produce`:
//! magic, lengths, CRC, size, control bit), and batches that pass are appended to a
//! fresh log (offsets assigned, idempotent-producer sequences checked) and read
//! back. Errors are expected; a panic, or accepted batches that do not read back
//! whole, is a bug.
#![no_main]

use karst_batch::{batches, count_records, BatchHeader};
use karst_fuzz::{fix_crcs, temp_dir};
use karst_protocol::records::validate_produce;
use karst_storage::{Log, LogConfig};
use libfuzzer_sys::fuzz_target;

/// Limits picked by the second flag bits, so MESSAGE_TOO_LARGE is reachable.
const MAX_MESSAGE_BYTES: [usize; 4] = [1 << 20, 64, 200, 1000];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, records)) = data.split_first() else { return };
    let mut records = records.to_vec();
    if flags & 1 != 0 {
        fix_crcs(&mut records);
    }
    let max = MAX_MESSAGE_BYTES[usize::from((flags >> 1) & 3)];
    let _ = count_records(&records);
    for (pos, h) in batches(&records).flatten() {
        let _ = BatchHeader::parse_checked(&records[pos..]);
        let _ = (h.last_offset(), h.last_sequence(), h.compression());
    }
    if validate_produce(&records, max).is_err() {
        return;
    }
    let dir = temp_dir();
    let config = LogConfig { segment_index_bytes: 4096, index_interval_bytes: 128, ..LogConfig::default() };
    let mut log = Log::open(dir.path(), config).expect("a fresh log opens");
    let Ok(info) = log.append(&records, 3, 1_000) else { return };
    let read = log.read(info.base_offset, records.len(), i64::MAX, true).expect("appended batches read back");
    assert_eq!(read.bytes.len(), records.len(), "accepted batches read back whole");
    // A retry of the same batches: a duplicate, refused, or appended again.
    let _ = log.append(&records, 3, 2_000);
});
