//! The broker's shared state and its lifecycle: open the data directory,
//! recover every partition, run background tasks, shut down cleanly.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::errors::BrokerError;
use crate::flusher::Flusher;
use crate::group::{GroupCoordinator, Timing};
use crate::metadata::{write_atomically, MetadataStore, TopicMeta};
use crate::partition::Partition;
use crate::partitions::Partitions;
use crate::topic_config::{self, TopicConfig};

/// Producer ids are reserved from metadata in blocks, so InitProducerId rarely writes.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Everything request handlers share.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub node_id: i32,
    /// Host and port clients are told to connect to.
    advertised: Mutex<(String, i32)>,
    pub metadata: MetadataStore,
    pub partitions: Partitions,
    pub groups: GroupCoordinator,
    pub(crate) flusher: Arc<Flusher>,
    producer_ids: Mutex<(i64, i64)>,
    /// Held until shutdown: one broker per data directory.
    lock: Mutex<Option<File>>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn read_properties(path: &Path) -> Result<BTreeMap<String, String>, BrokerError> {
    let text = fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

impl Broker {
    /// Opens the data directory (creating it on first start) and recovers every partition.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, BrokerError> {
        let dir = config.data_dir.clone();
        fs::create_dir_all(&dir)?;
        let lock = File::create(dir.join(".lock"))?;
        if lock.try_lock().is_err() {
            return Err(BrokerError::Startup(format!("data directory {} is in use by another karst process", dir.display())));
        }
        let props_path = dir.join("meta.properties");
        let cluster_id = if props_path.exists() {
            let props = read_properties(&props_path)?;
            let node: Option<i32> = props.get("node.id").and_then(|v| v.parse().ok());
            if node != Some(config.node_id) {
                return Err(BrokerError::Startup(format!(
                    "{} belongs to node.id {:?}, but this broker is configured as node.id {}",
                    props_path.display(),
                    props.get("node.id"),
                    config.node_id
                )));
            }
            props.get("cluster.id").cloned().ok_or_else(|| BrokerError::Corrupt(format!("{} has no cluster.id", props_path.display())))?
        } else {
            let id = Uuid::new_v4().simple().to_string();
            let text = format!("# Karst data directory\nversion=1\ncluster.id={id}\nnode.id={}\n", config.node_id);
            write_atomically(&props_path, text.as_bytes())?;
            id
        };
        let metadata = MetadataStore::open(&dir.join("metadata"))?;
        let partitions = Partitions::new(&dir);
        let image = metadata.image();
        for topic in image.topics.values() {
            let tc = topic_config::effective(&config, &topic.configs);
            partitions.open_topic(topic, &tc).map_err(|e| BrokerError::Startup(format!("opening topic {}: {e}", topic.name)))?;
        }
        info!(topics = image.topics.len(), partitions = partitions.all().len(), %cluster_id, "recovered logs");
        let advertised = Mutex::new(("127.0.0.1".to_string(), 9092));
        let flusher = Flusher::start(4);
        let groups = GroupCoordinator::new(
            config.offsets_topic_num_partitions,
            Timing { initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms },
            config.offsets_retention_minutes.saturating_mul(60_000),
        );
        let broker = Arc::new(Broker {
            node_id: config.node_id,
            config,
            cluster_id,
            advertised,
            metadata,
            partitions,
            flusher,
            producer_ids: Mutex::new((0, 0)),
            groups,
            lock: Mutex::new(Some(lock)),
        });
        broker.groups.load(&broker)?;
        Ok(broker)
    }

    /// Sets the address advertised in Metadata (the bound one unless configured).
    pub fn set_advertised(&self, host: String, port: i32) {
        *self.advertised.lock() = (host, port);
    }

    pub fn advertised(&self) -> (String, i32) {
        self.advertised.lock().clone()
    }

    pub fn topic_config(&self, topic: &TopicMeta) -> TopicConfig {
        topic_config::effective(&self.config, &topic.configs)
    }

    /// Creates a topic in metadata and opens its partitions.
    pub fn create_topic(&self, topic: TopicMeta) -> Result<(), BrokerError> {
        let tc = self.topic_config(&topic);
        self.metadata.create_topic(topic.clone())?;
        self.partitions.open_topic(&topic, &tc).map_err(|e| BrokerError::Startup(e.to_string()))
    }

    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, BrokerError> {
        let meta = self.metadata.delete_topic(name)?;
        self.partitions.delete_topic(name);
        Ok(meta)
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(&self, name: &str, count: i32) -> Result<(), BrokerError> {
        self.metadata.set_partition_count(name, count)?;
        let image = self.metadata.image();
        let topic = image.topics.get(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        self.partitions.open_topic(topic, &self.topic_config(topic)).map_err(|e| BrokerError::Startup(e.to_string()))
    }

    /// Replaces a topic's config overrides and applies them to its partitions.
    pub fn alter_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<(), BrokerError> {
        self.metadata.set_topic_configs(name, configs)?;
        let image = self.metadata.image();
        let topic = image.topics.get(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        self.partitions.set_config(name, &self.topic_config(topic));
        Ok(())
    }

    /// A fresh producer id for an idempotent producer.
    pub fn next_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self.producer_ids.lock();
        if ids.0 >= ids.1 {
            let first = self.metadata.allocate_producer_ids(PRODUCER_ID_BLOCK)?;
            *ids = (first, first + PRODUCER_ID_BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// After an append: make the data durable (and then visible), or visible now.
    pub(crate) fn after_append(&self, p: &Arc<Partition>) {
        if self.config.fsync_before_ack() {
            self.flusher.enqueue(p);
        } else {
            p.advance_hw(p.log_end_offset());
        }
    }

    /// Background work: retention and, when not fsyncing per produce, periodic flushes.
    pub(crate) fn start_background(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            // Session expiry and rebalance deadlines are checked at this granularity.
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                me.groups.tick(&me);
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(me.config.log_retention_check_interval_ms));
            tick.tick().await;
            loop {
                tick.tick().await;
                let b = me.clone();
                let _ = tokio::task::spawn_blocking(move || b.enforce_retention()).await;
            }
        });
        if !self.config.fsync_before_ack() {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(me.config.log_flush_interval_ms));
                loop {
                    tick.tick().await;
                    for p in me.partitions.all() {
                        if p.flushed.load(std::sync::atomic::Ordering::Acquire) < p.log_end_offset() {
                            me.flusher.enqueue(&p);
                        }
                    }
                }
            });
        }
    }

    fn enforce_retention(&self) {
        let now = now_ms();
        for p in self.partitions.all() {
            match p.enforce_retention(now) {
                Ok(0) => {}
                Ok(n) => {
                    info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments")
                }
                Err(e) => warn!(topic = %p.topic, partition = p.index, "retention failed: {e}"),
            }
        }
    }

    /// Flushes and closes every log; the next start finds a clean shutdown.
    pub fn shutdown(&self) {
        self.flusher.stop();
        self.partitions.close_all();
        self.lock.lock().take();
    }
}
