//! The broker's shared state and its lifecycle: open the data directory,
//! recover every partition, run background tasks, shut down cleanly.

use std::collections::{BTreeMap, HashMap};
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
use crate::metadata::{write_atomically, BrokerId, Listener, MetadataStore, TopicMeta};
use crate::partition::{Partition, PartitionError};
use crate::partitions::Partitions;
use crate::topic_config::{self, TopicConfig};

/// Producer ids are reserved from metadata in blocks, so InitProducerId rarely writes.
const PRODUCER_ID_BLOCK: i32 = 1000;

/// What this broker last applied of a topic: its id and config overrides.
type AppliedTopic = (Uuid, BTreeMap<String, String>);

/// Everything request handlers share.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub node_id: i32,
    /// What clients are told to connect to, per listener (in `listeners` order).
    advertised: Mutex<Vec<Listener>>,
    pub metadata: MetadataStore,
    pub partitions: Partitions,
    pub groups: GroupCoordinator,
    pub(crate) flusher: Arc<Flusher>,
    producer_ids: Mutex<(i64, i64)>,
    /// Topics whose partitions this broker opened from the metadata image.
    applied: Mutex<HashMap<String, AppliedTopic>>,
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

/// A cluster id every voter of `voters` computes alike (FNV-1a of the list).
fn voters_cluster_id(voters: &str) -> String {
    let mut parts: Vec<&str> = voters.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    parts.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.join(",").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("karst-{h:016x}")
}

/// Locks the data directory (creating it on first start) and returns the lock and
/// the cluster id from `meta.properties`, refusing a directory of another node.
fn open_data_dir(config: &BrokerConfig) -> Result<(File, String), BrokerError> {
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
        let id = match (&config.cluster_id, &config.controller_quorum_voters) {
            (Some(id), _) => id.clone(),
            (None, Some(voters)) => voters_cluster_id(voters),
            (None, None) => Uuid::new_v4().simple().to_string(),
        };
        let text = format!("# Karst data directory\nversion=1\ncluster.id={id}\nnode.id={}\n", config.node_id);
        write_atomically(&props_path, text.as_bytes())?;
        id
    };
    Ok((lock, cluster_id))
}

impl Broker {
    /// Opens the data directory (creating it on first start) and recovers every partition.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, BrokerError> {
        let (lock, cluster_id) = open_data_dir(&config)?;
        let dir = config.data_dir.clone();
        let metadata = MetadataStore::open(&config, &dir, &cluster_id)?;
        let partitions = Partitions::new(&dir, config.node_id);
        let advertised = Mutex::new(metadata.registered_listeners());
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
            applied: Mutex::new(HashMap::new()),
            groups,
            lock: Mutex::new(Some(lock)),
        });
        if let Err(e) = broker.apply_image() {
            broker.metadata.shutdown();
            return Err(e);
        }
        info!(topics = broker.applied.lock().len(), partitions = broker.partitions.all().len(), cluster_id = %broker.cluster_id, "recovered logs");
        broker.groups.load(&broker)?;
        Ok(broker)
    }

    /// Sets the address the first listener advertises (the bound one unless configured).
    pub fn set_advertised(&self, host: String, port: i32) {
        let mut all = self.advertised.lock().clone();
        let port = u16::try_from(port).unwrap_or(0);
        match all.first_mut() {
            Some(first) => (first.host, first.port) = (host, port),
            None => all.push(Listener { name: crate::config::DEFAULT_LISTENER.into(), host, port }),
        }
        self.set_advertised_listeners(all);
    }

    /// Sets what every listener advertises (registered with the controller, so
    /// other brokers name this one the same way).
    pub fn set_advertised_listeners(&self, listeners: Vec<Listener>) {
        if let Err(e) = self.metadata.set_listeners(&listeners) {
            warn!(?listeners, "registering listeners with the controller failed: {e}");
        }
        *self.advertised.lock() = listeners;
    }

    /// Host and port this broker advertises on `listener` (None: the first listener).
    pub fn advertised_on(&self, listener: Option<&str>) -> Option<(String, i32)> {
        let all = self.advertised.lock();
        let l = match listener {
            Some(name) => all.iter().find(|l| l.name == name),
            None => all.first(),
        }?;
        Some((l.host.clone(), i32::from(l.port)))
    }

    pub fn topic_config(&self, topic: &TopicMeta) -> TopicConfig {
        topic_config::effective(&self.config, &topic.configs)
    }

    /// Creates a topic through the controller, placing its partitions over the
    /// unfenced brokers, and opens the partitions hosted here.
    pub fn create_topic(&self, topic: TopicMeta) -> Result<(), BrokerError> {
        self.create_topic_assigned(topic, None)
    }

    /// Creates a topic with explicit replica assignments (`None`: placed by the controller).
    pub fn create_topic_assigned(&self, topic: TopicMeta, assignments: Option<Vec<Vec<BrokerId>>>) -> Result<(), BrokerError> {
        self.metadata.create_topic(&topic, assignments)?;
        self.apply_image()
    }

    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, BrokerError> {
        let meta = self.metadata.delete_topic(name)?;
        self.apply_image()?;
        Ok(meta)
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(&self, name: &str, count: i32) -> Result<(), BrokerError> {
        self.create_partitions_assigned(name, count, None)
    }

    /// Grows a topic to `count` partitions with explicit assignments for the new ones.
    pub fn create_partitions_assigned(&self, name: &str, count: i32, assignments: Option<Vec<Vec<BrokerId>>>) -> Result<(), BrokerError> {
        self.metadata.set_partition_count(name, count, assignments)?;
        self.apply_image()
    }

    /// Replaces a topic's config overrides and applies them to its partitions.
    pub fn alter_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<(), BrokerError> {
        self.metadata.set_topic_configs(name, configs)?;
        self.apply_image()
    }

    /// Brings the hosted partitions in line with the committed metadata image:
    /// opens partitions of topics with a replica here, applies changed configs,
    /// deletes topics that are gone. Idempotent; called after every change made
    /// here and whenever the controller applies changes made elsewhere.
    pub fn apply_image(&self) -> Result<(), BrokerError> {
        let image = self.metadata.image();
        let mut applied = self.applied.lock();
        let gone: Vec<String> = applied
            .iter()
            .filter(|(name, (id, _))| image.topics.get(name.as_str()).is_none_or(|t| t.id != *id))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.partitions.delete_topic(&name);
            crate::metrics::topic_deleted(&name);
            applied.remove(&name);
            info!(topic = %name, "removed deleted topic's partitions");
        }
        for t in image.topics.values() {
            let hosted = image.cluster.topic(&t.name).is_some_and(|ct| ct.partitions.iter().any(|p| p.replicas.contains(&self.node_id)));
            if !hosted {
                continue;
            }
            let tc = self.topic_config(t);
            let open = self.partitions.topic(&t.name).map_or(0, |v| v.len());
            if open < usize::try_from(t.partitions).unwrap_or(0) {
                self.partitions
                    .open_topic(t, &tc)
                    .map_err(|e| BrokerError::Startup(format!("opening partitions of topic {}: {e}", t.name)))?;
            }
            match applied.get(&t.name) {
                Some((_, configs)) if *configs == t.configs => continue,
                Some(_) => self.partitions.set_config(&t.name, &tc),
                None => {}
            }
            applied.insert(t.name.clone(), (t.id, t.configs.clone()));
        }
        drop(applied);
        crate::replication::apply_roles(self);
        Ok(())
    }

    /// Whether this broker leads `topic`/`partition`: produce and fetch are served
    /// by the leader only; others answer NOT_LEADER_OR_FOLLOWER so clients refresh.
    pub fn check_leader(&self, topic: &str, partition: i32) -> Result<(), i16> {
        match self.metadata.image().cluster.partition(topic, partition) {
            Some(s) if s.leader == self.node_id => Ok(()),
            Some(s) if s.leader < 0 => Err(karst_protocol::error_codes::LEADER_NOT_AVAILABLE),
            Some(_) => Err(karst_protocol::error_codes::NOT_LEADER_OR_FOLLOWER),
            None => Err(karst_protocol::error_codes::UNKNOWN_TOPIC_OR_PARTITION),
        }
    }

    /// A fresh producer id for an idempotent producer.
    pub fn next_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self.producer_ids.lock();
        if ids.0 >= ids.1 {
            let first = self.metadata.allocate_producer_ids(PRODUCER_ID_BLOCK)?;
            *ids = (first, first + i64::from(PRODUCER_ID_BLOCK));
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
            p.set_local_end(p.log_end_offset());
        }
    }

    /// Background work: retention and, when not fsyncing per produce, periodic flushes.
    pub(crate) fn start_background(self: &Arc<Self>) {
        let me = self.clone();
        let mut changes = self.metadata.subscribe();
        tokio::spawn(async move {
            // Changes committed through other brokers reach the partitions here.
            while changes.changed().await.is_ok() {
                let b = me.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || b.apply_image()).await {
                    warn!("applying the metadata image failed: {e}");
                }
            }
        });
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
            // Leaders shrink and expand their partitions' ISRs through the controller.
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let b = me.clone();
                let _ = tokio::task::spawn_blocking(move || crate::replication::maintain_isr(&b)).await;
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
                Ok(0) | Err(PartitionError::Closed | PartitionError::Offline(_)) => {}
                Ok(n) => {
                    info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments")
                }
                Err(e) => warn!(topic = %p.topic, partition = p.index, "retention failed: {e}"),
            }
        }
    }

    /// Flushes and closes every log; the next start finds a clean shutdown.
    pub fn shutdown(&self) {
        let leading = self.partitions.all().iter().filter(|p| p.replica.lock().role == crate::replica::Role::Leader).count();
        if self.metadata.image().cluster.brokers.len() > 1 {
            match self.metadata.fence_self() {
                Ok(()) => info!(leading, "controlled shutdown: fenced, leadership moved to other in-sync replicas"),
                Err(e) => warn!("controlled shutdown: could not fence this broker: {e}"),
            }
        }
        self.flusher.stop();
        self.partitions.close_all();
        self.metadata.shutdown();
        self.lock.lock().take();
    }
}

/// A node with `process.roles=controller`: a voter of the controller quorum that
/// serves no Kafka clients and hosts no partitions.
pub struct ControllerNode {
    pub metadata: MetadataStore,
    lock: Mutex<Option<File>>,
}

impl ControllerNode {
    pub fn open(config: &BrokerConfig) -> Result<ControllerNode, BrokerError> {
        let (lock, cluster_id) = open_data_dir(config)?;
        let metadata = MetadataStore::open(config, &config.data_dir, &cluster_id)?;
        Ok(ControllerNode { metadata, lock: Mutex::new(Some(lock)) })
    }

    /// The address the controller listens on for its peers.
    pub fn controller_addr(&self) -> std::net::SocketAddr {
        self.metadata.controller().local_addr()
    }

    pub fn shutdown(&self) {
        self.metadata.shutdown();
        self.lock.lock().take();
    }
}
