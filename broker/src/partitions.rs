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

/// Threads closing logs at shutdown.
const CLOSE_THREADS: usize = 16;

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
        for p in parts.len() as i32..topic.partitions {
            let dir = partition_dir(&self.data_dir, &topic.name, p);
            parts.push(Partition::open(name.clone(), p, self.node_id, dir, config.clone())?);
        }
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

    /// Clean shutdown of every log. A close costs a few fsyncs; run side by side they
    /// share journal commits, so thousands of partitions close in seconds, not minutes.
    pub fn close_all(&self) {
        let all = self.all();
        let next = AtomicUsize::new(0);
        let workers = CLOSE_THREADS.min(all.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while let Some(p) = all.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if let Err(e) = p.close() {
                            warn!(topic = %p.topic, partition = p.index, "closing log failed: {e}");
                        }
                    }
                });
            }
        });
        info!(partitions = all.len(), "closed all logs");
    }
}
