//! Message sets of format v0/v1 (Produce v0–v2, Fetch v0–v3): the input is
//! read as an old client's produce set (`message_set::up_convert`), as a
//! fetched set (`read_message_set`) and as stored v2 batches
//! (`down_convert`). Errors are expected; a panic is a bug, and so is an
//! accepted set whose v2 batch is invalid or does not convert back to the
//! same number of records in both legacy formats.
#![no_main]

use karst_protocol::message_set::{down_convert, read_message_set, up_convert, DownConvertOptions, UpConvertLimits};
use karst_protocol::records::validate_produce;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let _ = read_message_set(data, LIMIT);
    for magic in [0, 1] {
        let _ = down_convert(data, &DownConvertOptions { magic, fetch_offset: 0, max_bytes: LIMIT, max_decompressed: LIMIT });
    }
    let Ok(up) = up_convert(data, &UpConvertLimits { max_message_bytes: LIMIT, max_decompressed: LIMIT }) else { return };
    if up.record_count == 0 {
        assert!(up.batch.is_empty(), "no records, no batch");
        return;
    }
    let summary = validate_produce(&up.batch, LIMIT).expect("an accepted set becomes a valid v2 batch");
    assert_eq!(summary.record_count, i64::from(up.record_count));
    for magic in [0, 1] {
        let opts = DownConvertOptions { magic, fetch_offset: 0, max_bytes: usize::MAX, max_decompressed: 4 * LIMIT };
        let back = down_convert(&up.batch, &opts).expect("the batch converts back");
        assert_eq!(back.record_count, up.record_count as usize);
        let read = read_message_set(&back.records, 4 * LIMIT).expect("the converted set reads back");
        assert_eq!(read.len(), back.record_count);
    }
});
