//! Cluster metadata: topics, their partitions and configs, the producer-id
//! allocator. This is the seam the controller quorum replaces: every change is a
//! method here, persisted before it returns, and readers take an immutable image.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::errors::BrokerError;

/// One topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Explicit overrides only; defaults come from the broker config.
    pub configs: BTreeMap<String, String>,
}

/// An immutable view of all metadata.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterImage {
    pub topics: BTreeMap<String, TopicMeta>,
    /// First producer id not yet handed to any broker.
    pub next_producer_id: i64,
}

impl ClusterImage {
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|t| t.id == id)
    }
}

/// Persisted metadata, one JSON document written atomically.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    image: RwLock<Arc<ClusterImage>>,
    /// Serialises writers so each change persists before the next begins.
    write: Mutex<()>,
}

const FILE: &str = "metadata.json";

impl MetadataStore {
    pub fn open(meta_dir: &Path) -> Result<MetadataStore, BrokerError> {
        fs::create_dir_all(meta_dir)?;
        let path = meta_dir.join(FILE);
        let image = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| BrokerError::Corrupt(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ClusterImage::default(),
            Err(e) => return Err(e.into()),
        };
        Ok(MetadataStore { path, image: RwLock::new(Arc::new(image)), write: Mutex::new(()) })
    }

    /// The current image; cheap, never blocks on a writer's I/O.
    pub fn image(&self) -> Arc<ClusterImage> {
        self.image.read().clone()
    }

    fn update<T>(&self, f: impl FnOnce(&mut ClusterImage) -> Result<T, BrokerError>) -> Result<T, BrokerError> {
        let _w = self.write.lock();
        let mut next = (*self.image()).clone();
        let out = f(&mut next)?;
        persist(&self.path, &next)?;
        *self.image.write() = Arc::new(next);
        Ok(out)
    }

    pub fn create_topic(&self, topic: TopicMeta) -> Result<(), BrokerError> {
        self.update(|img| {
            if img.topics.contains_key(&topic.name) {
                return Err(BrokerError::TopicExists(topic.name.clone()));
            }
            img.topics.insert(topic.name.clone(), topic);
            Ok(())
        })
    }

    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, BrokerError> {
        self.update(|img| img.topics.remove(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string())))
    }

    pub fn set_partition_count(&self, name: &str, count: i32) -> Result<(), BrokerError> {
        self.update(|img| {
            let t = img.topics.get_mut(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
            t.partitions = count;
            Ok(())
        })
    }

    /// Replaces a topic's config overrides.
    pub fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<(), BrokerError> {
        self.update(|img| {
            let t = img.topics.get_mut(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
            t.configs = configs;
            Ok(())
        })
    }

    /// Reserves `count` producer ids; returns the first. Persisted before use, so
    /// an id is never handed out twice, even across a crash.
    pub fn allocate_producer_ids(&self, count: i64) -> Result<i64, BrokerError> {
        self.update(|img| {
            let first = img.next_producer_id;
            img.next_producer_id = first.checked_add(count).ok_or(BrokerError::Exhausted("producer ids"))?;
            Ok(first)
        })
    }
}

fn persist(path: &Path, image: &ClusterImage) -> Result<(), BrokerError> {
    let bytes = serde_json::to_vec_pretty(image).map_err(|e| BrokerError::Corrupt(e.to_string()))?;
    write_atomically(path, &bytes)
}

/// Temp file, fsync, rename, fsync the directory: the file is old or new, never torn.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BrokerError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_reopen() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = MetadataStore::open(d.path()).expect("open");
        let t = TopicMeta { name: "a".into(), id: Uuid::new_v4(), partitions: 3, replication_factor: 1, configs: BTreeMap::new() };
        s.create_topic(t.clone()).expect("create");
        assert!(matches!(s.create_topic(t.clone()), Err(BrokerError::TopicExists(_))));
        s.set_partition_count("a", 5).expect("grow");
        assert_eq!(s.allocate_producer_ids(10).expect("ids"), 0);
        drop(s);
        let s = MetadataStore::open(d.path()).expect("reopen");
        assert_eq!(s.image().topics["a"].partitions, 5);
        assert_eq!(s.allocate_producer_ids(10).expect("ids"), 10);
        s.delete_topic("a").expect("delete");
        assert!(s.image().topics.is_empty());
    }
}
