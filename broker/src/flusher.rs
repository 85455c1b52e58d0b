//! Group commit. Producers that need durability queue their partition here and
//! wait on its high watermark; flusher threads fsync each queued partition once
//! for everything appended so far, outside the log lock, then raise the high
//! watermark. Appends that arrive during an fsync share the next one.
//!
//! When many partitions are waiting at once (thousands of partitions under
//! acks=all), one `syncfs(2)` per file system replaces a `fdatasync` per partition:
//! it makes every file of that file system durable with a single journal commit and
//! cache flush, so the cost stops growing with the partition count.
//!
//! A failed fsync is never retried: the kernel may have dropped the pages it could
//! not write, and a second fsync can report success for them. Every partition the
//! failed call covered (with syncfs, the whole group) goes offline instead, and its
//! high watermark never passes what was durable before.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

use parking_lot::{Condvar, Mutex};
use tracing::error;

use karst_storage::FlushTarget;

use crate::partition::Partition;

/// Queued partitions from which one thread syncs the whole file system instead.
const SYNCFS_BATCH: usize = 8;

#[derive(Debug, Default)]
struct Queue {
    items: Vec<Arc<Partition>>,
    stopped: bool,
}

/// The shared queue and its worker threads.
#[derive(Debug)]
pub(crate) struct Flusher {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Flusher {
    /// Starts `threads` workers. Several workers let fsyncs of different
    /// partitions overlap in the device.
    pub(crate) fn start(threads: usize) -> Arc<Flusher> {
        let f = Arc::new(Flusher { queue: Mutex::new(Queue::default()), ready: Condvar::new() });
        for i in 0..threads.max(1) {
            let me = f.clone();
            let spawned = thread::Builder::new().name(format!("karst-flush-{i}")).spawn(move || me.run());
            if let Err(e) = spawned {
                error!("cannot start flusher thread: {e}");
            }
        }
        f
    }

    /// Queues `p` for an fsync unless it is already queued.
    pub(crate) fn enqueue(&self, p: &Arc<Partition>) {
        if p.flush_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut q = self.queue.lock();
        q.items.push(p.clone());
        drop(q);
        self.ready.notify_one();
    }

    pub(crate) fn stop(&self) {
        self.queue.lock().stopped = true;
        self.ready.notify_all();
    }

    fn run(&self) {
        loop {
            let batch = {
                let mut q = self.queue.lock();
                loop {
                    if q.stopped {
                        return;
                    }
                    if q.items.len() >= SYNCFS_BATCH {
                        break std::mem::take(&mut q.items);
                    }
                    if let Some(p) = q.items.pop() {
                        break vec![p];
                    }
                    self.ready.wait(&mut q);
                }
            };
            self.sync_batch(batch);
        }
    }

    /// Syncs each partition of `batch` (one syncfs per file system when there are several).
    pub(crate) fn sync_batch(&self, batch: Vec<Arc<Partition>>) {
        let mut by_device: HashMap<u64, Vec<(Arc<Partition>, FlushTarget)>> = HashMap::new();
        for p in batch {
            // Cleared before taking the target: an append after this point
            // queues the partition again and is covered by a later fsync.
            p.flush_queued.store(false, Ordering::Release);
            if let Some(target) = p.flush_target() {
                by_device.entry(p.device).or_default().push((p, target));
            }
        }
        for group in by_device.into_values() {
            self.sync_group(group);
        }
    }

    /// Makes every target of one file system durable, then raises their high
    /// watermarks; on failure takes the partitions whose logs failed offline.
    fn sync_group(&self, group: Vec<(Arc<Partition>, FlushTarget)>) {
        let synced = crate::metrics::time_flush(|| sync_targets(&group));
        if let Err(e) = &synced {
            error!(partitions = group.len(), "fsync failed; taking the partitions it covered offline: {e}");
        }
        for (p, target) in group {
            match (&synced, target.failure()) {
                (_, Some(why)) => p.go_offline(&why),
                (Ok(()), None) => {
                    p.flushed.fetch_max(target.log_end_offset, Ordering::AcqRel);
                    p.set_local_end(target.log_end_offset);
                }
                // Refused unsynced because another log of the group had failed
                // before: this one is healthy and gets its own fsync later.
                (Err(_), None) => self.enqueue(&p),
            }
        }
    }
}

/// One target: its fdatasync. Several on one file system: a single syncfs(2), which
/// reports write-back errors since Linux 5.8.
#[cfg(target_os = "linux")]
fn sync_targets(group: &[(Arc<Partition>, FlushTarget)]) -> std::io::Result<()> {
    match group {
        [] => Ok(()),
        [(_, target)] => target.sync(),
        _ => {
            let targets: Vec<&FlushTarget> = group.iter().map(|(_, t)| t).collect();
            karst_storage::sync_together(&targets, |file| rustix::fs::syncfs(file).map_err(std::io::Error::from))
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_targets(group: &[(Arc<Partition>, FlushTarget)]) -> std::io::Result<()> {
    group.iter().try_for_each(|(_, target)| target.sync())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::topic_config;

    fn partitions(dir: &std::path::Path, n: i32) -> Vec<Arc<Partition>> {
        let config = topic_config::effective(&BrokerConfig::default(), &BTreeMap::new());
        (0..n)
            .map(|i| {
                let p = Partition::open(Arc::from("t"), i, 1, dir.join(format!("t-{i}")), config.clone()).expect("open");
                for _ in 0..=i {
                    p.append(&karst_batch::build_batch(0, 2, 1_000, b"value"), 0).expect("append");
                }
                p
            })
            .collect()
    }

    #[test]
    fn a_batch_of_partitions_is_synced_together_and_every_watermark_rises() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parts = partitions(dir.path(), 2 * SYNCFS_BATCH as i32);
        let flusher = Flusher { queue: Mutex::new(Queue::default()), ready: Condvar::new() };
        for p in &parts {
            assert_eq!(p.high_watermark(), 0, "nothing is visible before the sync");
            p.flush_queued.store(true, Ordering::Release);
        }
        flusher.sync_batch(parts.clone());
        for p in &parts {
            let end = 2 * (i64::from(p.index) + 1);
            assert_eq!((p.log_end_offset(), p.high_watermark()), (end, end));
            assert_eq!(p.flushed.load(Ordering::Acquire), end);
            assert!(!p.flush_queued.load(Ordering::Acquire), "dequeued");
        }
    }

    #[test]
    fn a_failed_syncfs_takes_every_partition_of_its_group_offline_for_good() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parts = partitions(dir.path(), SYNCFS_BATCH as i32);
        let flusher = Flusher { queue: Mutex::new(Queue::default()), ready: Condvar::new() };
        // The fault hits one partition's file; the one syncfs covered them all.
        let one = format!("{}/", dir.path().join("t-3").display());
        karst_storage::faults::configure(&format!("fsync=eio@{one}")).expect("fault on");
        flusher.sync_batch(parts.clone());
        karst_storage::faults::configure(&format!("fsync=off@{one}")).expect("fault off");
        flusher.sync_batch(parts.clone());
        for p in &parts {
            assert!(p.offline_reason().is_some_and(|why| why.contains("fsync failed")), "{}-{} offline", p.topic, p.index);
            assert_eq!(p.high_watermark(), 0, "nothing acknowledged, not even after a retry");
            assert!(!p.flush_queued.load(Ordering::Acquire), "never queued again");
        }
    }

    #[test]
    fn queued_partitions_reach_their_watermarks_through_the_threads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let parts = partitions(dir.path(), 3 * SYNCFS_BATCH as i32);
        let flusher = Flusher::start(2);
        let mut waits: Vec<_> = parts.iter().map(|p| p.subscribe()).collect();
        for p in &parts {
            flusher.enqueue(p);
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        rt.block_on(async {
            for (p, w) in parts.iter().zip(&mut waits) {
                let end = p.log_end_offset();
                tokio::time::timeout(Duration::from_secs(30), w.wait_for(|hw| *hw >= end)).await.expect("in time").expect("open");
            }
        });
        flusher.stop();
    }
}
