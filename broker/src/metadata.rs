//! Cluster metadata: topics, their partitions and configs, brokers, the
//! producer-id allocator. Backed by the controller quorum
//! ([`karst_controller::Controller`]): every change is a proposal committed by
//! the quorum before it returns, and readers take an immutable image derived
//! from the locally applied [`ClusterMetadata`].
//!
//! A single-node broker runs a one-voter quorum in its own process. The
//! controller runs on a small runtime of its own. Request handlers await a
//! commit (the `async` methods), so a commit that cannot happen (no quorum)
//! holds only the requests that wait for it, never a runtime worker; the
//! `_blocking` forms are for plain threads (start-up, shutdown, the ISR loop).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::future::Future;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use karst_controller::{parse_voters, ClusterMetadata, CommandError, CommandOutcome, Controller, MetadataCommand, ProposeError, Voter};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::errors::BrokerError;

pub use karst_controller::{BrokerId, Listener, PartitionState, NO_LEADER};

/// How long a registering broker waits for its own metadata to reach its registration.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(60);

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
#[derive(Debug, Clone, Default)]
pub struct ClusterImage {
    pub topics: BTreeMap<String, TopicMeta>,
    /// First producer id not yet handed to any broker.
    pub next_producer_id: i64,
    /// The replicated image this view was derived from: brokers, partition
    /// leaders, replicas and ISRs.
    pub cluster: Arc<ClusterMetadata>,
    /// Topic names by id: Produce v13+ and Fetch v13+ name every topic by id.
    names_by_id: HashMap<Uuid, String>,
    /// The client quotas, indexed for each request's lookup.
    pub quotas: crate::quotas::QuotaTable,
}

impl ClusterImage {
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicMeta> {
        self.topics.get(self.names_by_id.get(&id)?)
    }

    fn derive(cluster: Arc<ClusterMetadata>) -> ClusterImage {
        let topics = cluster
            .topics
            .values()
            .map(|t| {
                let meta = TopicMeta {
                    name: t.name.clone(),
                    id: t.topic_id,
                    partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                    replication_factor: t.partitions.first().map_or(0, |p| i16::try_from(p.replicas.len()).unwrap_or(i16::MAX)),
                    configs: t.configs.clone(),
                };
                (t.name.clone(), meta)
            })
            .collect();
        let names_by_id = cluster.topics.values().map(|t| (t.topic_id, t.name.clone())).collect();
        let quotas = crate::quotas::QuotaTable::new(&cluster.client_quotas);
        ClusterImage { topics, next_producer_id: cluster.next_producer_id, cluster, names_by_id, quotas }
    }
}

/// The metadata document written by Karst before the controller quorum existed;
/// imported into the quorum once.
#[derive(Debug, Deserialize)]
struct LegacyImage {
    #[serde(default)]
    topics: BTreeMap<String, TopicMeta>,
    #[serde(default)]
    next_producer_id: i64,
}

/// Kafka error codes not (yet) in `karst_protocol::error_codes`.
const NOT_CONTROLLER: i16 = 41;

const LEGACY_DIR: &str = "metadata";
const LEGACY_FILE: &str = "metadata.json";
const CONTROLLER_DIR: &str = "controller";
/// How long start-up waits for a controller leader.
const LEADER_WAIT: Duration = Duration::from_secs(60);

/// The broker's handle on the controller quorum.
pub struct MetadataStore {
    node_id: BrokerId,
    controller: Arc<Controller>,
    /// The controller's runtime; taken on shutdown.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    /// The derived view of the latest applied image, rebuilt when it changes.
    cache: RwLock<Arc<ClusterImage>>,
    /// This broker's registration epoch.
    epoch: Arc<AtomicI64>,
    /// The advertised listeners this broker registered with.
    registered: Mutex<Vec<Listener>>,
    /// `broker.rack`, registered with the controller for rack-aware placement.
    rack: Option<String>,
    /// `replica.listener`: where followers fetch from this broker, when not the client listener.
    replica_listener: Option<Listener>,
}

impl std::fmt::Debug for MetadataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataStore").field("node_id", &self.node_id).field("broker_epoch", &self.epoch).finish()
    }
}

fn controller_error(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Startup(format!("controller: {e}"))
}

/// A command rejection as the error a handler answers with.
fn command_error(e: CommandError) -> BrokerError {
    match e {
        CommandError::TopicExists(n) => BrokerError::TopicExists(n),
        CommandError::UnknownTopic(n) => BrokerError::UnknownTopic(n),
        other => BrokerError::Metadata { code: other.kafka_error_code(), message: other.to_string() },
    }
}

fn propose_error(e: ProposeError) -> BrokerError {
    let code = match &e {
        ProposeError::NotLeader { .. } => NOT_CONTROLLER,
        ProposeError::Timeout(_) => karst_protocol::error_codes::REQUEST_TIMED_OUT,
        _ => karst_protocol::error_codes::UNKNOWN_SERVER_ERROR,
    };
    BrokerError::Metadata { code, message: e.to_string() }
}

fn resolve(addr: &str) -> Result<SocketAddr, BrokerError> {
    addr.to_socket_addrs()
        .map_err(|e| BrokerError::Startup(format!("controller listener `{addr}`: {e}")))?
        .next()
        .ok_or_else(|| BrokerError::Startup(format!("controller listener `{addr}` resolves to no address")))
}

/// Name of the listener followers use when a broker registers one apart from its clients'
/// (`replica.listener`).
pub const REPLICA_LISTENER: &str = "REPLICATION";

/// host:port → a registration listener (port 0 when unparsable).
fn listener_of(addr: &str) -> Listener {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
    Listener {
        name: REPLICA_LISTENER.into(),
        host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
        port: port.parse().unwrap_or(0),
    }
}

/// What each listener advertises before binding: its `advertised.listeners`
/// entry, else its configured address (a port 0 is replaced by
/// [`MetadataStore::set_listeners`] once bound).
fn advertised_listeners(config: &BrokerConfig) -> Result<Vec<Listener>, BrokerError> {
    let l = config.listeners().map_err(|e| BrokerError::Startup(e.to_string()))?;
    Ok(l.bind
        .iter()
        .map(|b| {
            let a = l.advertised.get(&b.name).unwrap_or(b);
            Listener { name: b.name.clone(), host: a.bare_host().to_string(), port: a.port }
        })
        .collect())
}

impl MetadataStore {
    /// Starts this node's controller (data in `<data_dir>/controller`), waits for
    /// a leader, registers and unfences this broker, and imports a pre-quorum
    /// `metadata/metadata.json` once.
    pub fn open(config: &BrokerConfig, data_dir: &Path, cluster_id: &str) -> Result<MetadataStore, BrokerError> {
        let node_id = config.node_id;
        if node_id < 0 {
            return Err(BrokerError::Startup(format!("node.id {node_id} is negative")));
        }
        let (voters, listen) = match &config.controller_quorum_voters {
            Some(text) => {
                let voters = parse_voters(text).map_err(|e| BrokerError::Startup(format!("controller.quorum.voters: {e}")))?;
                let own = voters.iter().find(|v| v.id == node_id as u64).map(|v| v.addr.clone());
                if own.is_some() && !config.roles.controller {
                    return Err(BrokerError::Startup(format!(
                        "node {node_id} is one of controller.quorum.voters but process.roles={} has no controller",
                        config.roles
                    )));
                }
                // A node outside the static voters joins as a learner: the leader must
                // be able to reach it, so its address cannot be left to chance.
                let listen = match (config.controller_listener.clone(), own) {
                    (Some(l), _) | (None, Some(l)) => l,
                    (None, None) => {
                        return Err(BrokerError::Startup(format!(
                            "node {node_id} is not among controller.quorum.voters: set controller.listener \
                             (--controller-listen) to the address the controller leader can reach it on"
                        )))
                    }
                };
                (voters, listen)
            }
            None => {
                let listen = config.controller_listener.clone().unwrap_or_else(|| "127.0.0.1:0".into());
                (vec![Voter { id: node_id as u64, addr: listen.clone() }], listen)
            }
        };
        let static_voter = voters.iter().any(|v| v.id == node_id as u64);
        let listen_addr = resolve(&listen)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("karst-controller")
            .enable_all()
            .build()
            .map_err(|e| BrokerError::Startup(format!("controller runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let dir = data_dir.join(CONTROLLER_DIR);
        let cid = cluster_id.to_string();
        let protocol = config.controller_protocol().map_err(|e| BrokerError::Startup(e.to_string()))?;
        let transport = crate::security::controller_transport(protocol, &config.security)
            .map_err(|e| BrokerError::Startup(format!("controller transport: {e}")))?;
        if transport.is_tls() {
            info!(node_id, "controller quorum transport: TLS with client certificates");
        }
        let controller_config = karst_controller::ControllerConfig { transport, ..Default::default() };
        let started = run_on(&handle, async move {
            Controller::start_with_config(node_id as u64, &cid, &voters, dir, listen_addr, controller_config).await
        })?
        .map_err(controller_error)?;
        let controller = Arc::new(started);
        info!(node_id, controller = %controller.local_addr(), "controller started");
        let listeners = advertised_listeners(config)?;
        let store = MetadataStore {
            node_id,
            cache: RwLock::new(Arc::new(ClusterImage::derive(controller.metadata()))),
            controller,
            runtime: Mutex::new(Some(runtime)),
            handle,
            epoch: Arc::new(AtomicI64::new(-1)),
            registered: Mutex::new(listeners.clone()),
            rack: config.broker_rack.clone(),
            replica_listener: config.replica_listener.as_deref().map(listener_of),
        };
        if !static_voter {
            // Outside the static voters: (re)join as a learner at this address. A node
            // an operator has since made a voter is told so, and carries on as one.
            let c = store.controller.clone();
            match store.run(async move { c.join_as_learner(LEADER_WAIT).await })? {
                Ok(q) => info!(node_id, leader = ?q.leader, voters = ?q.voters, "following the controller quorum as a learner"),
                Err(ProposeError::Membership(why)) => info!(node_id, "not joining as a learner: {why}"),
                Err(e) => return Err(propose_error(e)),
            }
        }
        let c = store.controller.clone();
        if store.run(async move { c.wait_for_leader(LEADER_WAIT).await })?.is_none() {
            return Err(BrokerError::Startup(format!("no controller leader elected within {LEADER_WAIT:?}")));
        }
        store.handle.spawn(fence_loop(store.controller.clone(), Duration::from_millis(config.broker_session_timeout_ms)));
        if !config.roles.broker {
            return Ok(store);
        }
        store.register(listeners)?;
        store.import_legacy(&data_dir.join(LEGACY_DIR))?;
        store.handle.spawn(heartbeat_loop(
            store.controller.clone(),
            node_id,
            store.epoch.clone(),
            Duration::from_millis(config.broker_heartbeat_interval_ms),
        ));
        Ok(store)
    }

    /// Runs `fut` on the controller runtime and waits for it from this thread.
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Result<T, BrokerError> {
        run_on(&self.handle, fut)
    }

    /// Proposes `cmd` and awaits its commit on the controller's runtime; the
    /// command's own rejection is an error too.
    pub async fn propose(&self, cmd: MetadataCommand) -> Result<CommandOutcome, BrokerError> {
        let c = self.controller.clone();
        let result = self
            .handle
            .spawn(async move { c.propose_anywhere(cmd).await })
            .await
            .map_err(|_| BrokerError::Startup("the controller runtime is stopped".into()))?;
        result.map_err(propose_error)?.map_err(command_error)
    }

    /// [`MetadataStore::propose`] for a plain thread: blocks it until the commit.
    /// Never call it on a runtime worker.
    pub fn propose_blocking(&self, cmd: MetadataCommand) -> Result<CommandOutcome, BrokerError> {
        let c = self.controller.clone();
        let result = self.run(async move { c.propose_anywhere(cmd).await })?;
        result.map_err(propose_error)?.map_err(command_error)
    }

    fn register(&self, listeners: Vec<Listener>) -> Result<(), BrokerError> {
        let outcome = self.propose_blocking(MetadataCommand::RegisterBroker {
            broker_id: self.node_id,
            incarnation_id: Uuid::new_v4(),
            listeners: listeners.iter().cloned().chain(self.replica_listener.clone()).collect(),
            rack: self.rack.clone(),
        })?;
        let CommandOutcome::BrokerRegistered { broker_epoch } = outcome else {
            return Err(BrokerError::Startup(format!("unexpected registration outcome {outcome:?}")));
        };
        self.epoch.store(broker_epoch, Ordering::SeqCst);
        *self.registered.lock() = listeners;
        self.propose_blocking(MetadataCommand::UnfenceBroker { broker_id: self.node_id, broker_epoch })?;
        // As a Kafka broker catches up with the metadata log before it acts: the
        // registration committed at the leader, but this node's own image may still
        // be the one it had when it stopped, naming it leader (and coordinator) of
        // partitions that moved on meanwhile. Nothing is led or answered from that
        // image: the local image is awaited up to the registration, and so to every
        // leadership change made while this broker was away.
        let (c, id) = (self.controller.clone(), self.node_id);
        let caught_up = self.run(async move {
            c.wait_for_metadata(CATCH_UP, |m| m.brokers.get(&id).is_some_and(|b| b.epoch == broker_epoch)).await.is_some()
        })?;
        if !caught_up {
            return Err(BrokerError::Startup(format!(
                "this node's metadata did not reach its own registration (broker epoch {broker_epoch}) within {CATCH_UP:?}"
            )));
        }
        info!(node_id = self.node_id, broker_epoch, "registered with the controller");
        Ok(())
    }

    /// The advertised listeners this broker registered (or will register) with.
    pub fn registered_listeners(&self) -> Vec<Listener> {
        self.registered.lock().clone()
    }

    /// Re-registers when the advertised listeners differ from the registered ones.
    pub fn set_listeners(&self, listeners: &[Listener]) -> Result<(), BrokerError> {
        if self.registered.lock().as_slice() == listeners {
            return Ok(());
        }
        self.register(listeners.to_vec())
    }

    fn import_legacy(&self, dir: &Path) -> Result<(), BrokerError> {
        let path = dir.join(LEGACY_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let legacy: LegacyImage = serde_json::from_slice(&bytes).map_err(|e| BrokerError::Corrupt(format!("{}: {e}", path.display())))?;
        info!(topics = legacy.topics.len(), path = %path.display(), "importing pre-quorum metadata into the controller");
        for t in legacy.topics.values() {
            if self.image().topics.contains_key(&t.name) {
                continue;
            }
            let count = usize::try_from(t.partitions.max(1)).unwrap_or(1);
            let cmd = MetadataCommand::CreateTopic {
                name: t.name.clone(),
                topic_id: t.id,
                configs: t.configs.clone(),
                assignments: vec![vec![self.node_id]; count],
            };
            match self.propose_blocking(cmd) {
                Ok(_) | Err(BrokerError::TopicExists(_)) => {}
                Err(e) => return Err(BrokerError::Startup(format!("importing topic {}: {e}", t.name))),
            }
        }
        while self.image().next_producer_id < legacy.next_producer_id {
            let missing = legacy.next_producer_id - self.image().next_producer_id;
            let count = i32::try_from(missing.min(i64::from(karst_controller::commands::MAX_PRODUCER_ID_BLOCK))).unwrap_or(1);
            self.propose_blocking(MetadataCommand::AllocateProducerIds {
                broker_id: self.node_id,
                broker_epoch: self.epoch.load(Ordering::SeqCst),
                count,
            })?;
        }
        let done = dir.join(format!("{LEGACY_FILE}.imported"));
        fs::rename(&path, &done)?;
        File::open(dir)?.sync_all()?;
        info!(path = %done.display(), "pre-quorum metadata imported");
        Ok(())
    }

    /// The current image; cheap, never blocks on a proposal.
    pub fn image(&self) -> Arc<ClusterImage> {
        let latest = self.controller.metadata();
        let cached = self.cache.read().clone();
        if Arc::ptr_eq(&cached.cluster, &latest) {
            return cached;
        }
        let derived = Arc::new(ClusterImage::derive(latest));
        *self.cache.write() = derived.clone();
        derived
    }

    /// Notified after every applied batch of metadata changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.controller.subscribe()
    }

    pub fn node_id(&self) -> BrokerId {
        self.node_id
    }

    pub fn broker_epoch(&self) -> i64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Controlled shutdown: stop heartbeating and fence this broker, which takes it
    /// out of every ISR and moves its leaderships to other in-sync replicas, so
    /// clients move on at once instead of after the session timeout.
    pub fn fence_self(&self) -> Result<(), BrokerError> {
        let broker_epoch = self.epoch.swap(-1, Ordering::SeqCst);
        if broker_epoch < 0 {
            return Ok(());
        }
        self.propose_blocking(MetadataCommand::FenceBroker { broker_id: self.node_id, broker_epoch }).map(|_| ())
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    /// The controller leader's node id, if one is known.
    pub fn controller_leader(&self) -> Option<BrokerId> {
        self.controller.leader().and_then(|(id, _)| BrokerId::try_from(id).ok())
    }

    /// Creates a topic; `assignments[p]` lists partition p's replicas, or the
    /// controller image places them over the unfenced brokers when `None`.
    pub async fn create_topic(&self, topic: &TopicMeta, assignments: Option<Vec<Vec<BrokerId>>>) -> Result<(), BrokerError> {
        let assignments = match assignments {
            Some(a) => a,
            None => self.place(topic.partitions, topic.replication_factor)?,
        };
        self.propose(MetadataCommand::CreateTopic {
            name: topic.name.clone(),
            topic_id: topic.id,
            configs: topic.configs.clone(),
            assignments,
        })
        .await
        .map(drop)
    }

    /// Places `count` new partitions of `replication_factor` replicas over the unfenced brokers.
    pub(crate) fn place(&self, count: i32, replication_factor: i16) -> Result<Vec<Vec<BrokerId>>, BrokerError> {
        let count = u32::try_from(count).map_err(|_| BrokerError::Metadata {
            code: karst_protocol::error_codes::INVALID_PARTITIONS,
            message: format!("partition count {count}"),
        })?;
        let rf = u16::try_from(replication_factor).map_err(|_| BrokerError::Metadata {
            code: karst_protocol::error_codes::INVALID_REPLICATION_FACTOR,
            message: format!("replication factor {replication_factor}"),
        })?;
        self.image().cluster.assign_partitions(count, rf).map_err(command_error)
    }

    pub async fn delete_topic(&self, name: &str) -> Result<TopicMeta, BrokerError> {
        let meta = self.image().topics.get(name).cloned().ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        self.propose(MetadataCommand::DeleteTopic { name: name.to_string() }).await?;
        Ok(meta)
    }

    /// Grows a topic to `count` partitions, placing the new ones unless `assignments` are given.
    pub async fn set_partition_count(&self, name: &str, count: i32, assignments: Option<Vec<Vec<BrokerId>>>) -> Result<(), BrokerError> {
        let assignments = {
            let image = self.image();
            let t = image.topics.get(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
            match assignments {
                Some(a) => a,
                None => self.place(count - t.partitions, t.replication_factor.max(1))?,
            }
        };
        self.propose(MetadataCommand::CreatePartitions { name: name.to_string(), assignments }).await.map(drop)
    }

    /// Replaces a topic's config overrides.
    pub async fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<(), BrokerError> {
        let remove = {
            let image = self.image();
            let t = image.topics.get(name).ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
            t.configs.keys().filter(|k| !configs.contains_key(*k)).cloned().collect()
        };
        self.propose(MetadataCommand::AlterTopicConfig { name: name.to_string(), set: configs, remove }).await.map(drop)
    }

    /// Replaces the dynamic configs of broker resource `resource` ("" for the
    /// cluster-wide default) with `configs`.
    pub async fn set_broker_configs(&self, resource: &str, configs: BTreeMap<String, String>) -> Result<(), BrokerError> {
        let remove = {
            let image = self.image();
            image
                .cluster
                .broker_config(resource)
                .map(|c| c.keys().filter(|k| !configs.contains_key(*k)).cloned().collect())
                .unwrap_or_default()
        };
        self.propose(MetadataCommand::AlterBrokerConfig { resource: resource.to_string(), set: configs, remove }).await.map(drop)
    }

    /// Reserves `count` producer ids; returns the first. Committed by the quorum
    /// before use, so an id is never handed out twice, even across a crash.
    pub async fn allocate_producer_ids(&self, count: i32) -> Result<i64, BrokerError> {
        let outcome = self
            .propose(MetadataCommand::AllocateProducerIds {
                broker_id: self.node_id,
                broker_epoch: self.epoch.load(Ordering::SeqCst),
                count,
            })
            .await?;
        match outcome {
            CommandOutcome::ProducerIdsAllocated { first, .. } => Ok(first),
            other => Err(BrokerError::Startup(format!("unexpected producer-id outcome {other:?}"))),
        }
    }

    /// Stops the controller and its runtime. Idempotent.
    pub fn shutdown(&self) {
        let Some(rt) = self.runtime.lock().take() else { return };
        let c = self.controller.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(c.shutdown().await);
        });
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("controller shutdown: {e}"),
            Err(_) => warn!("controller shutdown did not finish in time"),
        }
        rt.shutdown_background();
    }
}

impl Drop for MetadataStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.lock().take() {
            rt.shutdown_background();
        }
    }
}

/// Tells the controller leader this broker is alive, every `interval`.
async fn heartbeat_loop(controller: Arc<Controller>, broker_id: BrokerId, epoch: Arc<AtomicI64>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let e = epoch.load(Ordering::SeqCst);
        if e < 0 {
            continue; // not registered, or shutting down
        }
        if let Err(err) = controller.heartbeat(broker_id, e).await {
            tracing::debug!(broker_id, "heartbeat not delivered: {err}");
        }
    }
}

/// On the controller leader: fence brokers whose heartbeats stopped for
/// `session_timeout`, unfence fenced ones that heartbeat again. A new leader
/// gives every broker a full session before fencing it, and so does a leader that
/// was itself not running (a paused or starved process): heartbeats that arrived
/// meanwhile are still queued unread, so their absence says nothing of the brokers.
async fn fence_loop(controller: Arc<Controller>, session_timeout: Duration) {
    const TICK: Duration = Duration::from_millis(200);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_since: Option<std::time::Instant> = None;
    let mut last_tick = std::time::Instant::now();
    loop {
        tick.tick().await;
        let stalled = last_tick.elapsed() > stall_after(session_timeout);
        last_tick = std::time::Instant::now();
        if !controller.is_leader() {
            leading_since = None;
            continue;
        }
        if stalled {
            info!("this controller was not running for a while: every broker gets a full session before fencing");
            leading_since = None;
        }
        let since = *leading_since.get_or_insert_with(std::time::Instant::now);
        let beats = controller.broker_heartbeats();
        let image = controller.metadata();
        for b in image.brokers.values() {
            let last = beats.get(&b.id).filter(|(e, _)| *e == b.epoch).map(|(_, at)| *at);
            let recent = last.is_some_and(|at| at.elapsed() < session_timeout);
            let cmd = if !b.fenced && !recent && since.elapsed() >= session_timeout {
                info!(broker_id = b.id, "fencing broker: no heartbeat for {session_timeout:?}");
                MetadataCommand::FenceBroker { broker_id: b.id, broker_epoch: b.epoch }
            } else if b.fenced && recent {
                info!(broker_id = b.id, "unfencing broker: heartbeats resumed");
                MetadataCommand::UnfenceBroker { broker_id: b.id, broker_epoch: b.epoch }
            } else {
                continue;
            };
            match controller.propose(cmd).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(broker_id = b.id, "fence change rejected: {e}"),
                Err(e) => tracing::debug!(broker_id = b.id, "fence change not committed: {e}"),
            }
        }
    }
}

/// A gap between the fence loop's 200 ms ticks after which the controller itself
/// counts as having stalled: a third of the session, at least a second.
fn stall_after(session_timeout: Duration) -> Duration {
    (session_timeout / 3).max(Duration::from_secs(1))
}

fn run_on<T: Send + 'static>(handle: &tokio::runtime::Handle, fut: impl Future<Output = T> + Send + 'static) -> Result<T, BrokerError> {
    let (tx, rx) = std::sync::mpsc::channel();
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| BrokerError::Startup("the controller runtime is stopped".into()))
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

/// Where a pre-quorum data dir kept its metadata (for tests of the import).
pub fn legacy_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LEGACY_DIR).join(LEGACY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures::executor::block_on;

    fn config(dir: &Path) -> BrokerConfig {
        BrokerConfig { data_dir: dir.to_path_buf(), ..Default::default() }
    }

    #[test]
    fn changes_survive_reopen() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = MetadataStore::open(&config(d.path()), d.path(), "c1").expect("open");
        let t = TopicMeta { name: "a".into(), id: Uuid::new_v4(), partitions: 3, replication_factor: 1, configs: BTreeMap::new() };
        block_on(s.create_topic(&t, None)).expect("create");
        assert!(matches!(block_on(s.create_topic(&t, None)), Err(BrokerError::TopicExists(_))));
        block_on(s.set_partition_count("a", 5, None)).expect("grow");
        assert_eq!(block_on(s.allocate_producer_ids(10)).expect("ids"), 0);
        assert_eq!(s.image().cluster.partition("a", 4).expect("p4").leader, 1);
        s.shutdown();
        drop(s);
        let s = MetadataStore::open(&config(d.path()), d.path(), "c1").expect("reopen");
        assert_eq!(s.image().topics["a"].partitions, 5);
        assert_eq!(s.image().topics["a"].id, t.id);
        assert_eq!(block_on(s.allocate_producer_ids(10)).expect("ids"), 10);
        block_on(s.delete_topic("a")).expect("delete");
        assert!(s.image().topics.is_empty());
        s.shutdown();
    }

    #[test]
    fn pre_quorum_metadata_is_imported_once() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(d.path().join(LEGACY_DIR)).expect("mkdir");
        let id = Uuid::new_v4();
        let legacy = serde_json::json!({
            "topics": {"old": {"name": "old", "id": id, "partitions": 4, "replication_factor": 1,
                               "configs": {"retention.ms": "1000"}}},
            "next_producer_id": 2500
        });
        fs::write(legacy_path(d.path()), serde_json::to_vec_pretty(&legacy).expect("json")).expect("write");
        let s = MetadataStore::open(&config(d.path()), d.path(), "c1").expect("open");
        let image = s.image();
        let t = &image.topics["old"];
        assert_eq!((t.id, t.partitions, t.configs.get("retention.ms").map(String::as_str)), (id, 4, Some("1000")));
        assert!(image.next_producer_id >= 2500);
        assert!(!legacy_path(d.path()).exists(), "imported file is renamed");
        block_on(s.delete_topic("old")).expect("delete");
        s.shutdown();
        drop(s);
        let s = MetadataStore::open(&config(d.path()), d.path(), "c1").expect("reopen");
        assert!(s.image().topics.is_empty(), "not imported a second time");
        assert!(block_on(s.allocate_producer_ids(1)).expect("id") >= 2500);
        s.shutdown();
    }
}
