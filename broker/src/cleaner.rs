//! The broker's log cleaner (Kafka's `LogCleaner` threads): background threads
//! that pick the dirtiest compacted log among the partitions this broker hosts,
//! leader or follower (each replica compacts its own copy, as in Kafka), and clean
//! it with the storage layer's cleaner, throttled to
//! `log.cleaner.io.max.bytes.per.second`; when no log needs cleaning they sleep
//! `log.cleaner.backoff.ms`. Never on a runtime worker: each is an OS thread.
//!
//! A clean coexists with appends (it copies closed segments only, and swaps under
//! the log's lock), with retention (groups whose segments went are not swapped
//! in), and with truncation, close and delete, which abort it (see
//! [`Partition::clean`]). Shutdown wakes every thread, aborts a clean at its next
//! batch and joins them before the logs are closed.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use karst_storage::{CleanerConfig, StorageError, Throttler};
use parking_lot::{Condvar, Mutex};
use tracing::{info, warn};

use crate::broker::{now_ms, Broker};
use crate::config::BrokerConfig;
use crate::partition::{Partition, PartitionError};

/// The cleaner threads and what they share.
#[derive(Debug)]
pub(crate) struct LogCleaner {
    stopped: Mutex<bool>,
    wake: Condvar,
    /// One rate for all threads, as Kafka's shared throttler.
    throttler: Mutex<Throttler>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl LogCleaner {
    pub(crate) fn new(config: &BrokerConfig) -> LogCleaner {
        LogCleaner {
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            throttler: Mutex::new(Throttler::new(config.log_cleaner_io_max_bytes_per_second, Instant::now())),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// The storage cleaner's settings: the dedupe buffer is shared by the threads.
    fn storage_config(config: &BrokerConfig) -> CleanerConfig {
        let threads = config.log_cleaner_threads.max(1);
        CleanerConfig {
            dedupe_buffer_size: (config.log_cleaner_dedupe_buffer_size / threads).max(1 << 20),
            dedupe_buffer_load_factor: config.log_cleaner_io_buffer_load_factor,
            io_buffer_size: config.log_cleaner_io_buffer_size,
            ..CleanerConfig::default()
        }
    }

    /// Starts threads up to `log.cleaner.threads` (none when `log.cleaner.enable` is
    /// off); called again when the dynamic setting may have been raised. A lowered
    /// one stops the threads above it after their pass.
    pub(crate) fn start(b: &Arc<Broker>) {
        if !b.config.log_cleaner_enable {
            if b.cleaner.threads.lock().is_empty() {
                info!("log cleaner disabled (log.cleaner.enable=false): compacted topics are not compacted");
            }
            return;
        }
        let mut threads = b.cleaner.threads.lock();
        if *b.cleaner.stopped.lock() {
            return;
        }
        threads.retain(|t| !t.is_finished());
        let live: Vec<usize> = threads.iter().filter_map(|t| t.thread().name()?.strip_prefix("log-cleaner-")?.parse().ok()).collect();
        for i in (0..b.effective_config().log_cleaner_threads.max(1)).filter(|i| !live.contains(i)) {
            let me = b.clone();
            match std::thread::Builder::new().name(format!("log-cleaner-{i}")).spawn(move || me.cleaner.run(&me, i)) {
                Ok(t) => threads.push(t),
                Err(e) => warn!("starting log cleaner thread {i} failed: {e}"),
            }
        }
    }

    /// Stops the threads: a clean in progress is abandoned at its next batch.
    pub(crate) fn stop(&self) {
        *self.stopped.lock() = true;
        self.wake.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            if t.join().is_err() {
                warn!("a log cleaner thread panicked");
            }
        }
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.lock()
    }

    /// Sleeps up to `d`; false when woken by a stop.
    fn sleep(&self, d: Duration, until_also: &dyn Fn() -> bool) -> bool {
        let deadline = Instant::now() + d;
        let mut stopped = self.stopped.lock();
        while !*stopped && !until_also() {
            // Short waits, so a clean aborted by its partition notices too.
            let step = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
            if step.is_zero() {
                break;
            }
            self.wake.wait_for(&mut stopped, step);
        }
        !*stopped
    }

    /// Thread `index`'s loop; the settings are read again before each pass, so
    /// dynamic changes apply without a restart.
    fn run(&self, b: &Broker, index: usize) {
        while !self.is_stopped() {
            let settings = b.effective_config();
            if index >= settings.log_cleaner_threads.max(1) {
                info!(thread = index, "log cleaner thread stopping: log.cleaner.threads was lowered");
                break;
            }
            let config = Self::storage_config(&settings);
            let backoff = Duration::from_millis(settings.log_cleaner_backoff_ms);
            self.throttler.lock().set_rate(settings.log_cleaner_io_max_bytes_per_second);
            let cleaned = self.clean_dirtiest(b, &config);
            if !cleaned && !self.sleep(backoff, &|| false) {
                break;
            }
        }
    }

    /// Cleans the dirtiest log that needs it (Kafka's `grabFilthiestCompactedLog`:
    /// those past `max.compaction.lag.ms` first, then by dirty ratio above
    /// `min.cleanable.dirty.ratio`). Returns whether one was cleaned.
    fn clean_dirtiest(&self, b: &Broker, config: &CleanerConfig) -> bool {
        let now = now_ms();
        let mut candidates: Vec<(bool, f64, Arc<Partition>)> = b
            .partitions
            .all()
            .into_iter()
            .filter_map(|p| {
                let c = p.cleanable(now)?;
                let ratio = c.dirty_ratio();
                let min = p.config().log.min_cleanable_dirty_ratio.get();
                let due = c.needs_compaction_now();
                (due || (c.cleanable_bytes > 0 && ratio > min)).then_some((due, ratio, p))
            })
            .collect();
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
        for (_, ratio, p) in candidates {
            if self.is_stopped() {
                return false;
            }
            let started = Instant::now();
            let mut io = |bytes: u64, aborted: &dyn Fn() -> bool| {
                let delay = self.throttler.lock().delay(bytes, Instant::now());
                if !delay.is_zero() && !self.sleep(delay, aborted) {
                    return ControlFlow::Break(());
                }
                if self.is_stopped() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            match p.clean(now, config, &mut io) {
                Ok(None) => continue,
                Ok(Some(stats)) => {
                    let took = started.elapsed();
                    crate::metrics::log_cleaned(&stats, took);
                    info!(
                        topic = %p.topic,
                        partition = p.index,
                        dirty_ratio = ratio,
                        from = stats.first_dirty_offset,
                        to = stats.end_offset,
                        records_read = stats.records_read,
                        records_kept = stats.records_retained,
                        bytes_read = stats.bytes_read,
                        bytes_written = stats.bytes_written,
                        segments = stats.segments_cleaned,
                        ms = took.as_millis() as u64,
                        "cleaned log"
                    );
                    if stats.end_offset > stats.first_dirty_offset {
                        return true;
                    }
                    // No progress (the log changed under it): the next one, or the backoff.
                }
                Err(PartitionError::Storage(StorageError::CleaningAborted)) => {
                    crate::metrics::log_clean_aborted();
                    info!(topic = %p.topic, partition = p.index, "log clean aborted");
                }
                Err(PartitionError::Closed | PartitionError::Offline(_)) => crate::metrics::log_clean_aborted(),
                Err(e) => {
                    crate::metrics::log_clean_failed();
                    warn!(topic = %p.topic, partition = p.index, "cleaning the log failed: {e}");
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use karst_batch::records::Record;

    use super::*;
    use crate::topic_config;

    /// A batch of one record per key, each with `value`.
    fn keyed(keys: std::ops::Range<u32>, value: &[u8]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (i, k) in keys.clone().enumerate() {
            let key = k.to_be_bytes();
            Record { attributes: 0, timestamp_delta: 0, offset_delta: i as i32, key: Some(&key), value: Some(value), headers: &[0] }
                .encode(&mut payload);
        }
        karst_batch::build_batch(0, keys.len() as i32, broker_now(), &payload)
    }

    fn broker_now() -> i64 {
        now_ms()
    }

    /// A compacted partition holding `rounds` updates of 100 keys over many small
    /// segments, all visible (high watermark at the end).
    fn compacted_partition(dir: &std::path::Path, rounds: usize) -> Arc<Partition> {
        let mut overrides = BTreeMap::new();
        overrides.insert("cleanup.policy".to_string(), "compact".to_string());
        overrides.insert("segment.bytes".to_string(), "2048".to_string());
        overrides.insert("min.cleanable.dirty.ratio".to_string(), "0".to_string());
        let config = topic_config::effective(&BrokerConfig::default(), &overrides);
        let p = Partition::open(Arc::from("t"), 0, 1, dir.join("t-0"), config).expect("open");
        for round in 0..rounds {
            for chunk in 0..10 {
                p.append(&keyed(chunk * 10..chunk * 10 + 10, format!("round {round}").as_bytes()), broker_now()).expect("append");
            }
        }
        p.set_local_end(p.log_end_offset());
        assert_eq!(p.high_watermark(), p.log_end_offset());
        p
    }

    #[test]
    fn a_partition_is_cleaned_to_the_latest_record_of_each_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = compacted_partition(dir.path(), 5);
        let c = p.cleanable(broker_now()).expect("compacted and online");
        assert!(c.cleanable_bytes > 0 && c.dirty_ratio() > 0.0, "{c:?}");
        let before = p.size_bytes();
        let stats = p
            .clean(broker_now(), &CleanerConfig::default(), &mut |_, _| ControlFlow::Continue(()))
            .expect("clean")
            .expect("something to clean");
        assert!(stats.records_retained < stats.records_read, "{stats:?}");
        assert!(p.size_bytes() < before, "{} bytes after, {before} before", p.size_bytes());
        assert_eq!(p.log_end_offset(), 500, "offsets kept");
        // Cleaned up to the active segment: nothing dirty left.
        assert_eq!(p.cleanable(broker_now()).map(|c| c.cleanable_bytes), Some(0));
    }

    #[test]
    fn truncation_during_a_clean_aborts_it_and_nothing_is_swapped_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = compacted_partition(dir.path(), 5);
        let before = p.size_bytes();
        let mut truncated = false;
        let r = p.clean(broker_now(), &CleanerConfig::default(), &mut |_, _| {
            if !truncated {
                truncated = true;
                p.truncate_to(250).expect("truncate");
            }
            ControlFlow::Continue(())
        });
        assert!(matches!(r, Err(PartitionError::Storage(StorageError::CleaningAborted))), "{r:?}");
        assert_eq!(p.log_end_offset(), 250);
        assert!(p.size_bytes() <= before);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("t-0"))
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".cleaned"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // The next clean works on the truncated log.
        p.set_local_end(p.log_end_offset());
        let stats = p.clean(broker_now(), &CleanerConfig::default(), &mut |_, _| ControlFlow::Continue(())).expect("clean");
        assert!(stats.is_some());
    }

    #[test]
    fn a_delete_policy_log_is_never_a_candidate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = topic_config::effective(&BrokerConfig::default(), &BTreeMap::new());
        let p = Partition::open(Arc::from("t"), 0, 1, dir.path().join("t-0"), config).expect("open");
        p.append(&keyed(0..10, b"v"), broker_now()).expect("append");
        assert!(p.cleanable(broker_now()).is_none());
    }

    #[test]
    fn the_dedupe_buffer_is_shared_by_the_threads() {
        let c = BrokerConfig { log_cleaner_threads: 4, log_cleaner_dedupe_buffer_size: 64 << 20, ..BrokerConfig::default() };
        assert_eq!(LogCleaner::storage_config(&c).dedupe_buffer_size, 16 << 20);
        let c = BrokerConfig { log_cleaner_threads: 64, ..c };
        assert_eq!(LogCleaner::storage_config(&c).dedupe_buffer_size, 1 << 20, "never below 1 MiB");
    }
}
