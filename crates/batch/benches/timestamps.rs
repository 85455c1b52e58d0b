//! What reading a batch's record timestamps costs next to the CRC-32C check every
//! produced batch already gets: the price of recomputing a max timestamp that
//! the header got wrong (sarama's -1), paid only for such batches.
//!
//! Run: `cargo bench -p karst-batch --bench timestamps -- --quick`.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use karst_batch::{build_batch_with_timestamps, record_timestamps, BatchHeader, HEADER_LEN, NO_TIMESTAMP};

fn bench(c: &mut Criterion) {
    // Many tiny records (the walk's worst case: its cost is per record, the CRC's per byte)
    // and a 16 KiB batch (Kafka's default batch.size) of 1 KiB records.
    for (records, name) in [(400usize, "400 records of ~12 B (5 KiB)"), (16, "16 records of ~1 KiB (16 KiB)")] {
        let timestamps: Vec<i64> = (0..records as i64).map(|i| 1_700_000_000_000 + i).collect();
        let mut batch = build_batch_with_timestamps(0, &timestamps, NO_TIMESTAMP);
        if records == 16 {
            let mut body = Vec::new();
            for (i, _) in timestamps.iter().enumerate() {
                body.extend(karst_batch::encode_record(i as i64, i as i32, &vec![b'x'; 1000]));
            }
            batch = karst_batch::build_batch(0, records as i32, timestamps[0], &body);
        }
        let h = BatchHeader::parse_checked(&batch).expect("valid");
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function("crc32c check", |b| b.iter(|| BatchHeader::parse_checked(black_box(&batch)).expect("valid")));
        group.bench_function("record timestamps", |b| {
            b.iter(|| record_timestamps(black_box(&batch[HEADER_LEN..]), h.base_timestamp, h.record_count).expect("records"))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
