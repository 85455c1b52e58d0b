//! Group commit. Producers that need durability queue their partition here and
//! wait on its high watermark; flusher threads fsync each queued partition once
//! for everything appended so far, outside the log lock, then raise the high
//! watermark. Appends that arrive during an fsync share the next one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tracing::error;

use crate::partition::Partition;

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
            let p = {
                let mut q = self.queue.lock();
                loop {
                    if q.stopped {
                        return;
                    }
                    if let Some(p) = q.items.pop() {
                        break p;
                    }
                    self.ready.wait(&mut q);
                }
            };
            // Cleared before taking the target: an append after this point
            // queues the partition again and is covered by a later fsync.
            p.flush_queued.store(false, Ordering::Release);
            let Some(target) = p.flush_target() else {
                continue;
            };
            match target.file.sync_data() {
                Ok(()) => {
                    p.flushed.fetch_max(target.log_end_offset, Ordering::AcqRel);
                    p.advance_hw(target.log_end_offset);
                }
                Err(e) => {
                    error!(topic = %p.topic, partition = p.index, "fsync failed, will retry: {e}");
                    thread::sleep(Duration::from_millis(100));
                    self.enqueue(&p);
                }
            }
        }
    }
}
