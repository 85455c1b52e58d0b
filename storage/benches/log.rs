//! Storage micro-benchmarks: append (with and without an fsync per batch) and
//! sequential read throughput of one partition log.
//!
//! Run: `cargo bench -p karst-storage --bench log` (add `-- --quick` for a short run).
//! Set `KARST_BENCH_DIR` to benchmark a particular disk (default: the system temp dir).
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use karst_batch::build_batch;
use karst_storage::{Log, LogConfig};

const RECORDS_PER_BATCH: i32 = 16;
const RECORD_BYTES: usize = 1024;
/// Keep the benchmark's disk footprint bounded.
const MAX_LOG_BYTES: u64 = 512 << 20;

/// A 16 KiB batch: 16 records of ~1 KiB (opaque to the log, which never decodes them).
fn batch() -> Vec<u8> {
    let payload: Vec<u8> = (0..RECORDS_PER_BATCH as usize * RECORD_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    build_batch(0, RECORDS_PER_BATCH, 1_700_000_000_000, &payload)
}

fn config() -> LogConfig {
    LogConfig { segment_bytes: 128 << 20, retention_ms: None, ..LogConfig::default() }
}

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("KARST_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp dir")
}

fn append(c: &mut Criterion) {
    let template = batch();
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes(template.len() as u64));
    group.measurement_time(Duration::from_secs(5));
    for fsync in [false, true] {
        let name = if fsync { "16KiB_batch_fsync_each" } else { "16KiB_batch" };
        group.bench_function(name, |b| {
            let dir = temp_dir();
            let mut log = Log::open(dir.path(), config()).expect("open");
            b.iter(|| {
                black_box(log.append(&template, 0, 0).expect("append"));
                if fsync {
                    log.flush().expect("flush");
                }
                if log.size_bytes() > MAX_LOG_BYTES {
                    log.delete_records(log.log_end_offset()).expect("trim");
                }
            });
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let template = batch();
    let dir = temp_dir();
    let mut log = Log::open(dir.path(), config()).expect("open");
    let total: u64 = 256 << 20;
    while log.size_bytes() < total {
        let buf = template.clone();
        log.append(&buf, 0, 0).expect("append");
    }
    let end = log.log_end_offset();
    let bytes = log.size_bytes();
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    // Consumer-style fetches of up to 1 MiB from the start to the end of the log.
    // Zero-copy: the slices point into the page cache; the copy variant also moves
    // every byte once, as a socket write would.
    for copy in [false, true] {
        let name = if copy { "sequential_1MiB_fetches_copied" } else { "sequential_1MiB_fetches" };
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut offset = 0;
                let mut sink = Vec::with_capacity(1 << 20);
                while offset < end {
                    let s = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
                    if copy {
                        sink.clear();
                        sink.extend_from_slice(&s.bytes);
                    }
                    black_box(&s.bytes);
                    offset = s.first_offset + (s.bytes.len() / template.len()) as i64 * i64::from(RECORDS_PER_BATCH);
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
