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

use crate::cleaner::LogCleaner;
use crate::config::BrokerConfig;
use crate::connections::ConnectionLimits;
use crate::dynamic_config::Layers;
use crate::errors::BrokerError;
use crate::fetch_sessions::FetchSessions;
use crate::flusher::Flusher;
use crate::group::{GroupCoordinator, Timing};
use crate::metadata::{write_atomically, BrokerId, Listener, MetadataStore, TopicMeta};
use crate::partition::{Partition, PartitionError};
use crate::partitions::Partitions;
use crate::replication::Fetchers;
use crate::security::acl::AuthorizerSettings;
use crate::security::{ListenerSecurity, Protocol};
use crate::topic_config::{self, TopicConfig};
use crate::txn::TxnCoordinator;

/// Producer ids are reserved from metadata in blocks, so InitProducerId rarely writes.
const PRODUCER_ID_BLOCK: i32 = 1000;

/// What this broker last applied of a topic: its id and config overrides.
type AppliedTopic = (Uuid, BTreeMap<String, String>);

/// What one pass of [`Broker::apply_image`] could not do.
#[derive(Debug, Default)]
pub struct Applied {
    /// Topics whose partitions failed to open in this pass, with the reason.
    pub failed: Vec<(String, String)>,
}

impl Applied {
    /// Err when `topic` failed to open in this pass (a failure of another topic
    /// is that topic's, not the caller's).
    pub fn opened(self, topic: &str) -> Result<(), BrokerError> {
        match self.failed.into_iter().find(|(t, _)| t == topic || t.is_empty()) {
            Some((_, why)) => Err(BrokerError::Offline(why)),
            None => Ok(()),
        }
    }
}

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
    pub txns: TxnCoordinator,
    /// KIP-932 share groups and share-partitions.
    pub shares: crate::share::ShareCoordinator,
    /// KIP-227 incremental fetch sessions (Fetch v7+).
    pub(crate) fetch_sessions: FetchSessions,
    /// Follower fetchers, one per leader this broker follows partitions of.
    pub(crate) fetchers: Fetchers,
    pub(crate) flusher: Arc<Flusher>,
    /// The log cleaner's threads (started with the background work).
    pub(crate) cleaner: LogCleaner,
    /// The block of producer ids this broker hands out; a tokio lock because a
    /// refill awaits a controller commit while holding it.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Topics whose partitions this broker opened from the metadata image.
    applied: Mutex<HashMap<String, AppliedTopic>>,
    /// Topics whose partitions failed to open, with the id and partition count
    /// that failed: not retried until one of them changes.
    open_failed: Mutex<HashMap<String, (Uuid, i32, String)>>,
    /// Held until shutdown: one broker per data directory.
    lock: Mutex<Option<File>>,
    /// The dynamic config layers last read from the metadata image, and the
    /// configuration they make with the static one.
    dynamic: Mutex<(Layers, Arc<BrokerConfig>)>,
    /// The layers the hosted partitions were last configured with.
    applied_layers: Mutex<Layers>,
    /// `max.connections` and `max.connections.per.ip`, changed while running.
    pub(crate) connection_limits: ConnectionLimits,
    /// Each listener's TLS and SASL, by listener name.
    listener_security: BTreeMap<String, Arc<ListenerSecurity>>,
    /// The ACL authorizer's settings, when `authorizer.class.name` is set.
    authorizer: Option<AuthorizerSettings>,
    /// Byte rates of the clients under a quota.
    pub(crate) throttles: crate::quotas::Throttles,
    /// How this broker connects to its peers' inter-broker listener.
    pub(crate) peer_security: Arc<crate::security::PeerSecurity>,
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

/// Each listener's security, built from the configuration: a key or certificate that
/// does not load stops start-up, naming the setting.
fn listener_security(config: &BrokerConfig) -> Result<BTreeMap<String, Arc<ListenerSecurity>>, BrokerError> {
    let listeners = config.listeners().map_err(|e| BrokerError::Startup(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, protocol) in listeners.protocols {
        let security = ListenerSecurity::build(protocol, &name, &config.security)
            .map_err(|e| BrokerError::Startup(format!("listener {name} ({}): {e}", protocol.as_str())))?;
        if protocol != Protocol::Plaintext {
            info!(listener = %name, protocol = protocol.as_str(), "listener security");
        }
        out.insert(name, Arc::new(security));
    }
    Ok(out)
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
        let mut groups = GroupCoordinator::new(
            config.offsets_topic_num_partitions,
            Timing { initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms, max_size: config.group_max_size },
            config.offsets_retention_minutes.saturating_mul(60_000),
        );
        groups.consumer = crate::group::consumer::ConsumerConfig {
            session_timeout_ms: config.group_consumer_session_timeout_ms,
            heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
            max_size: config.group_consumer_max_size,
            default_assignor: config.group_consumer_default_assignor,
        };
        let fetch_sessions = FetchSessions::new(
            config.max_incremental_fetch_session_cache_slots,
            i64::try_from(config.min_incremental_fetch_session_eviction_ms).unwrap_or(i64::MAX),
        );
        let txn_partitions = config.transaction_state_log_num_partitions;
        let share_settings = config.share;
        let config_for_cache = config.clone();
        let listener_security = listener_security(&config)?;
        let peer_security = match config.inter_broker_listener().map_err(|e| BrokerError::Startup(e.to_string()))? {
            Some((name, protocol)) => crate::security::PeerSecurity::build(protocol, &name, &config.security)
                .map_err(|e| BrokerError::Startup(format!("inter-broker listener {name} ({}): {e}", protocol.as_str())))?,
            None => crate::security::PeerSecurity::default(),
        };
        let authorizer = config.authorizer_class_name.as_ref().map(|_| AuthorizerSettings {
            super_users: AuthorizerSettings::parse_super_users(&config.super_users).unwrap_or_default(),
            allow_if_no_acl: config.allow_everyone_if_no_acl_found,
        });
        let connection_limits = ConnectionLimits::new(config.max_connections, config.max_connections_per_ip);
        let broker = Arc::new(Broker {
            node_id: config.node_id,
            fetch_sessions,
            fetchers: Fetchers::default(),
            cleaner: LogCleaner::new(&config),
            config,
            cluster_id,
            advertised,
            metadata,
            partitions,
            flusher,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            applied: Mutex::new(HashMap::new()),
            open_failed: Mutex::new(HashMap::new()),
            groups,
            txns: TxnCoordinator::new(txn_partitions),
            shares: crate::share::ShareCoordinator::new(share_settings),
            lock: Mutex::new(Some(lock)),
            dynamic: Mutex::new((Layers::default(), Arc::new(config_for_cache))),
            applied_layers: Mutex::new(Layers::default()),
            connection_limits,
            listener_security,
            authorizer,
            throttles: Default::default(),
            peer_security: Arc::new(peer_security),
        });
        // At start-up a partition that cannot be opened stops the broker, as before.
        if let Some((_, why)) = broker.apply_image().failed.into_iter().next() {
            broker.metadata.shutdown();
            return Err(BrokerError::Startup(why));
        }
        info!(topics = broker.applied.lock().len(), partitions = broker.partitions.all().len(), cluster_id = %broker.cluster_id, "recovered logs");
        broker.groups.load(&broker)?;
        if let Some(parts) = broker.partitions.topic(crate::group::OFFSETS_TOPIC) {
            broker.shares.load(parts.iter().map(|p| p.as_ref()))?;
        }
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
        topic_config::effective(&self.effective_config(), &topic.configs)
    }

    /// The ACL authorizer's settings, if one is configured.
    pub(crate) fn authorizer(&self) -> Option<&AuthorizerSettings> {
        self.authorizer.as_ref()
    }

    pub(crate) fn authorizer_enabled(&self) -> bool {
        self.authorizer.is_some()
    }

    /// The TLS and SASL of listener `name` (PLAINTEXT for one not configured).
    pub(crate) fn listener_security(&self, name: &str) -> Arc<ListenerSecurity> {
        self.listener_security.get(name).cloned().unwrap_or_else(|| Arc::new(ListenerSecurity::plaintext()))
    }

    /// This broker's dynamic config layers in the committed metadata: the
    /// cluster-wide default and its own.
    pub fn config_layers(&self) -> Layers {
        let image = self.metadata.image();
        let of = |resource: &str| image.cluster.broker_config(resource).cloned().unwrap_or_default();
        Layers { default: of(""), own: of(&self.node_id.to_string()) }
    }

    /// The configuration in force: the static one under the dynamic layers.
    pub fn effective_config(&self) -> Arc<BrokerConfig> {
        let layers = self.config_layers();
        let mut cached = self.dynamic.lock();
        if cached.0 != layers {
            let config = Arc::new(layers.apply(&self.config));
            *cached = (layers, config);
        }
        cached.1.clone()
    }

    /// Creates a topic through the controller, placing its partitions over the
    /// unfenced brokers, and opens the partitions hosted here.
    pub async fn create_topic(self: &Arc<Self>, topic: TopicMeta) -> Result<(), BrokerError> {
        self.create_topic_assigned(topic, None).await
    }

    /// Creates a topic with explicit replica assignments (`None`: placed by the controller).
    pub async fn create_topic_assigned(
        self: &Arc<Self>,
        topic: TopicMeta,
        assignments: Option<Vec<Vec<BrokerId>>>,
    ) -> Result<(), BrokerError> {
        let placed = match assignments {
            Some(a) => a,
            None => self.metadata.place(topic.partitions, topic.replication_factor)?,
        };
        crate::limits::check_hosted_partitions(&self.metadata.image().cluster, &placed, self.config.max_broker_partitions)?;
        self.metadata.create_topic(&topic, Some(placed)).await?;
        self.apply_image_async().await.opened(&topic.name)
    }

    pub async fn delete_topic(self: &Arc<Self>, name: &str) -> Result<TopicMeta, BrokerError> {
        let meta = self.metadata.delete_topic(name).await?;
        self.apply_image_async().await.opened(name)?;
        Ok(meta)
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(self: &Arc<Self>, name: &str, count: i32) -> Result<(), BrokerError> {
        self.create_partitions_assigned(name, count, None).await
    }

    /// Grows a topic to `count` partitions with explicit assignments for the new ones.
    pub async fn create_partitions_assigned(
        self: &Arc<Self>,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<BrokerId>>>,
    ) -> Result<(), BrokerError> {
        let placed = match assignments {
            Some(a) => a,
            None => {
                let image = self.metadata.image();
                let t = image.topics.get(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
                self.metadata.place(count - t.partitions, t.replication_factor.max(1))?
            }
        };
        crate::limits::check_hosted_partitions(&self.metadata.image().cluster, &placed, self.config.max_broker_partitions)?;
        self.metadata.set_partition_count(name, count, Some(placed)).await?;
        self.apply_image_async().await.opened(name)
    }

    /// Replaces a topic's config overrides and applies them to its partitions.
    pub async fn alter_topic_configs(self: &Arc<Self>, name: &str, configs: BTreeMap<String, String>) -> Result<(), BrokerError> {
        self.metadata.set_topic_configs(name, configs).await?;
        self.apply_image_async().await.opened(name)
    }

    /// Stores broker resource `resource`'s dynamic configs (checked by the caller) in
    /// the quorum and applies them here; the other brokers apply them as the change
    /// reaches them.
    pub async fn alter_broker_configs(self: &Arc<Self>, resource: &str, configs: BTreeMap<String, String>) -> Result<(), BrokerError> {
        self.metadata.set_broker_configs(resource, configs).await?;
        self.apply_image_async().await;
        LogCleaner::start(self);
        Ok(())
    }

    /// [`Broker::apply_image`] on the blocking pool: opening, closing and deleting
    /// logs is file work (fsyncs) that must not hold a runtime worker.
    pub async fn apply_image_async(self: &Arc<Self>) -> Applied {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.apply_image()).await {
            Ok(applied) => applied,
            Err(e) => Applied { failed: vec![(String::new(), format!("applying the metadata image stopped: {e}"))] },
        }
    }

    /// Brings the hosted partitions in line with the committed metadata image:
    /// opens partitions of topics with a replica here, applies changed configs,
    /// deletes topics that are gone. Idempotent; called after every change made
    /// here and whenever the controller applies changes made elsewhere.
    ///
    /// A topic whose partitions fail to open (no descriptors left, a bad disk)
    /// is reported and left offline here, and not retried until its metadata
    /// changes: one such topic must never stop the others from being applied.
    pub fn apply_image(&self) -> Applied {
        let mut out = Applied::default();
        let mut applied = self.applied.lock();
        // Read under the lock: a pass holding an image older than the one another
        // pass applied meanwhile would take its newer topics for deleted ones and
        // delete their partitions.
        let image = self.metadata.image();
        let mut failed = self.open_failed.lock();
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
        failed.retain(|name, (id, _, _)| image.topics.get(name.as_str()).is_some_and(|t| t.id == *id));
        // Dynamic broker configs changed: every topic's defaults may have.
        let layers = self.config_layers();
        let mut applied_layers = self.applied_layers.lock();
        let layers_changed = *applied_layers != layers;
        let broker_config = self.effective_config();
        if layers_changed {
            let c = &broker_config;
            self.connection_limits.set(c.max_connections, c.max_connections_per_ip);
            info!(default = ?layers.default, own = ?layers.own, "applying dynamic broker configs");
        }
        for t in image.topics.values() {
            let hosted = image.cluster.topic(&t.name).is_some_and(|ct| ct.partitions.iter().any(|p| p.replicas.contains(&self.node_id)));
            if !hosted {
                continue;
            }
            let tc = topic_config::effective(&broker_config, &t.configs);
            let open = self.partitions.topic(&t.name).map_or(0, |v| v.len());
            if open < usize::try_from(t.partitions).unwrap_or(0) {
                // Reported again, without retrying: the pass that failed may have been
                // another caller's (the change watcher's), not this one's.
                if let Some((_, _, why)) = failed.get(&t.name).filter(|(id, count, _)| *id == t.id && *count == t.partitions) {
                    out.failed.push((t.name.clone(), why.clone()));
                    continue;
                }
                if let Err(e) = self.partitions.open_topic(t, &tc) {
                    let why = format!("opening partitions of topic {}: {e}", t.name);
                    warn!(topic = %t.name, partitions = t.partitions, "{why}; its partitions stay offline on this broker");
                    failed.insert(t.name.clone(), (t.id, t.partitions, why.clone()));
                    out.failed.push((t.name.clone(), why));
                    continue;
                }
                failed.remove(&t.name);
            }
            match applied.get(&t.name) {
                Some((_, configs)) if *configs == t.configs && !layers_changed => continue,
                Some(_) => self.partitions.set_config(&t.name, &tc),
                None => {}
            }
            applied.insert(t.name.clone(), (t.id, t.configs.clone()));
        }
        *applied_layers = layers;
        drop(applied_layers);
        drop(failed);
        drop(applied);
        crate::replication::apply_roles(self);
        out
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
    pub async fn next_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let first = self.metadata.allocate_producer_ids(PRODUCER_ID_BLOCK).await?;
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
                // Failures are logged by apply_image and leave only that topic offline.
                let _ = me.apply_image_async().await;
                // A raised log.cleaner.threads starts its threads.
                LogCleaner::start(&me);
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            // Session expiry and rebalance deadlines are checked at this granularity.
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                me.groups.tick(&me);
                me.shares.tick(now_ms());
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            // Markers of transactions found deciding by a new coordinator go out at
            // once; timed-out transactions are looked for at Kafka's interval.
            let every = Duration::from_millis(me.config.transaction_abort_timed_out_transaction_cleanup_interval_ms);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_abort = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                me.txns.resume(&me);
                if last_abort.elapsed() >= every {
                    last_abort = tokio::time::Instant::now();
                    me.txns.abort_timed_out(&me);
                    me.txns.expire_ids(&me, me.config.transactional_id_expiration_ms);
                }
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
        LogCleaner::start(self);
        let me = self.clone();
        tokio::spawn(async move {
            // A __consumer_offsets from before compaction becomes compacted; retried
            // while the metadata is still catching up or the controller is busy.
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                match me.groups.upgrade_topic(&me).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => warn!("making __consumer_offsets compacted failed (retrying): {e}"),
                }
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
        self.cleaner.stop();
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
