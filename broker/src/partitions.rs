//! The partitions this broker hosts, by topic. The broker never touches log
//! files except through here and `Partition`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tracing::{info, warn};

use crate::metadata::TopicMeta;
use crate::partition::{Partition, PartitionError};
use crate::topic_config::TopicConfig;

/// Threads opening or closing logs. Each costs a few fsyncs; run side by side they
/// share journal commits, so thousands of partitions open and close in seconds.
const FILE_THREADS: usize = 32;

/// `f` over every item on up to [`FILE_THREADS`] threads; results in the items' order.
fn on_threads<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| {
        for _ in 0..FILE_THREADS.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((i, r));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// One topic's partitions, replaced whole when partitions are added.
type TopicPartitions = Arc<Vec<Arc<Partition>>>;

/// Topic name → its partitions, indexed by partition number.
#[derive(Debug, Default)]
pub struct Partitions {
    data_dir: PathBuf,
    node_id: i32,
    by_topic: RwLock<HashMap<Arc<str>, TopicPartitions>>,
}

/// `<data>/<topic>-<partition>`, as Kafka lays it out.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

impl Partitions {
    pub fn new(data_dir: &Path, node_id: i32) -> Partitions {
        Partitions { data_dir: data_dir.to_path_buf(), node_id, by_topic: RwLock::default() }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let map = self.by_topic.read();
        let parts = map.get(topic)?;
        usize::try_from(partition).ok().and_then(|i| parts.get(i)).cloned()
    }

    pub fn topic(&self, topic: &str) -> Option<Arc<Vec<Arc<Partition>>>> {
        self.by_topic.read().get(topic).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.by_topic.read().values().flat_map(|v| v.iter().cloned()).collect()
    }

    /// Opens (creating when missing) partitions `0..topic.partitions`.
    pub fn open_topic(&self, topic: &TopicMeta, config: &TopicConfig) -> Result<(), PartitionError> {
        let name: Arc<str> = Arc::from(topic.name.as_str());
        let existing = self.topic(&topic.name);
        let mut parts: Vec<Arc<Partition>> = existing.map(|v| v.as_ref().clone()).unwrap_or_default();
        let missing: Vec<i32> = (parts.len() as i32..topic.partitions).collect();
        let opened = on_threads(&missing, |&p| {
            Partition::open(name.clone(), p, self.node_id, partition_dir(&self.data_dir, &topic.name, p), config.clone())
        });
        let mut fresh = Vec::with_capacity(opened.len());
        let mut first_error = None;
        for p in opened {
            match p {
                Ok(p) => fresh.push(p),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            // All or none: the ones that did open give their descriptors back,
            // or one failed topic would starve every topic created after it.
            on_threads(&fresh, |p| {
                if let Err(e) = p.close() {
                    warn!(topic = %p.topic, partition = p.index, "closing log failed: {e}");
                }
            });
            return Err(e.into());
        }
        parts.extend(fresh);
        self.by_topic.write().insert(name, Arc::new(parts));
        Ok(())
    }

    /// Removes a topic and deletes its files.
    pub fn delete_topic(&self, topic: &str) {
        let removed = self.by_topic.write().remove(topic);
        for p in removed.iter().flat_map(|v| v.iter()) {
            if let Err(e) = p.delete() {
                warn!(topic, partition = p.index, "deleting partition files failed: {e}");
            }
        }
    }

    pub fn set_config(&self, topic: &str, config: &TopicConfig) {
        for p in self.topic(topic).iter().flat_map(|v| v.iter()) {
            p.set_config(config.clone());
        }
    }

    /// Clean shutdown of every log, side by side.
    pub fn close_all(&self) {
        let all = self.all();
        on_threads(&all, |p| {
            if let Err(e) = p.close() {
                warn!(topic = %p.topic, partition = p.index, "closing log failed: {e}");
            }
        });
        info!(partitions = all.len(), "closed all logs");
    }
}
