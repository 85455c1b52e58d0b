//! The [`Controller`] facade: one controller node (voter or not) of the quorum.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};

use crate::commands::{CommandResult, MetadataCommand};
use crate::errors::{ControllerError, ProposeError};
use crate::fsutil::{read_json, write_json_atomic};
use crate::log_store::LogStore;
use crate::membership::{self, MembershipChange, Quorum};
use crate::metadata::{BrokerId, ClusterMetadata};
use crate::network::{call_once, NetworkFactory, RpcEnvelope, RpcReply, RpcRequest};
use crate::server::RpcServer;
use crate::state_machine::StateMachineStore;
use crate::voters::Voter;
use crate::{NodeId, TypeConfig};

const META_FILE: &str = "meta.json";

/// How long one heartbeat waits for the controller leader's answer.
const HEARTBEAT_ATTEMPT: Duration = Duration::from_secs(1);

/// Tuning of a controller node; the defaults suit a LAN or one machine.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in `[min, max)` (after
    /// the leader's lease of `max`) starts an election.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot (and purge the log before it) every this many entries.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the latest snapshot, so slightly lagging
    /// followers catch up from the log rather than a snapshot transfer.
    pub logs_kept_after_snapshot: u64,
    /// Size at which the active log segment rolls.
    pub segment_bytes: u64,
    /// How long [`Controller::propose`] waits for a commit.
    pub propose_timeout: Duration,
    /// Plain TCP or TLS with client certificates, for every RPC in and out.
    pub transport: crate::Transport,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1000),
            snapshot_every: 1000,
            logs_kept_after_snapshot: 100,
            segment_bytes: 1 << 20,
            propose_timeout: Duration::from_secs(5),
            transport: crate::Transport::plaintext(),
        }
    }
}

/// Identity of a controller data dir, written on first start.
#[derive(Debug, Serialize, Deserialize)]
struct DirMeta {
    cluster_id: String,
    node_id: NodeId,
}

/// State the RPC server shares with the [`Controller`] facade.
pub(crate) struct Shared {
    /// Last heartbeat (broker epoch, when) per broker, recorded while leader.
    pub(crate) heartbeats: parking_lot::Mutex<HashMap<BrokerId, (i64, Instant)>>,
    pub(crate) propose_timeout: Duration,
    pub(crate) voters: Vec<Voter>,
}

/// Propose on `raft` and wait for the commit (leader only).
pub(crate) async fn propose_on(raft: &Raft<TypeConfig>, cmd: MetadataCommand, shared: &Shared) -> Result<CommandResult, ProposeError> {
    let timeout = shared.propose_timeout;
    match tokio::time::timeout(timeout, raft.client_write(cmd)).await {
        Err(_) => Err(ProposeError::Timeout(timeout)),
        Ok(Ok(resp)) => Ok(resp.data),
        Ok(Err(e)) => Err(write_error(e, &shared.voters)),
    }
}

fn static_addr(voters: &[Voter], id: NodeId) -> Option<String> {
    voters.iter().find(|v| v.id == id).map(|v| v.addr.clone())
}

pub(crate) fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>, voters: &[Voter]) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeError::NotLeader {
            leader_addr: f.leader_node.map(|n| n.addr).or_else(|| f.leader_id.and_then(|id| static_addr(voters, id))),
            leader_id: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => ProposeError::Membership(e.to_string()),
        RaftError::Fatal(f) => ProposeError::Shutdown(f.to_string()),
    }
}

pub(crate) fn leader_of(raft: &Raft<TypeConfig>, voters: &[Voter]) -> (Option<NodeId>, Option<String>) {
    let m = raft.metrics();
    let m = m.borrow();
    let id = m.current_leader;
    let addr = id.and_then(|id| m.membership_config.membership().get_node(&id).map(|n| n.addr.clone()).or_else(|| static_addr(voters, id)));
    (id, addr)
}

/// Record a broker heartbeat if this node leads; else name the leader.
pub(crate) fn record_heartbeat(
    raft: &Raft<TypeConfig>,
    self_id: NodeId,
    shared: &Shared,
    broker_id: BrokerId,
    broker_epoch: i64,
) -> Result<(), ProposeError> {
    let leading = {
        let m = raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self_id)
    };
    if !leading {
        let (leader_id, leader_addr) = leader_of(raft, &shared.voters);
        return Err(ProposeError::NotLeader { leader_id, leader_addr });
    }
    shared.heartbeats.lock().insert(broker_id, (broker_epoch, Instant::now()));
    Ok(())
}

/// A running controller node.
pub struct Controller {
    node_id: NodeId,
    cluster_id: String,
    raft: Raft<TypeConfig>,
    image_rx: watch::Receiver<Arc<ClusterMetadata>>,
    voters: Vec<Voter>,
    local_addr: SocketAddr,
    config: ControllerConfig,
    server: Mutex<RpcServer>,
    stopped: AtomicBool,
    shared: Arc<Shared>,
}

impl Controller {
    /// Start with [`ControllerConfig::default`]; see [`Controller::start_with_config`].
    pub async fn start(
        node_id: NodeId,
        cluster_id: &str,
        voters: &[Voter],
        data_dir: impl AsRef<Path>,
        listen_addr: SocketAddr,
    ) -> Result<Controller, ControllerError> {
        Self::start_with_config(node_id, cluster_id, voters, data_dir, listen_addr, ControllerConfig::default()).await
    }

    /// Open (or create) the node's data dir, listen for peers on `listen_addr` and
    /// start Raft. When `node_id` is among `voters` and the dir is fresh, the quorum
    /// is bootstrapped with exactly `voters` (every voter may do so; the same
    /// config is safe). A node not among `voters` waits to be added with
    /// [`Controller::add_voter`]. A single voter elects itself.
    ///
    /// Refuses a data dir written for another cluster id or node id.
    pub async fn start_with_config(
        node_id: NodeId,
        cluster_id: &str,
        voters: &[Voter],
        data_dir: impl AsRef<Path>,
        listen_addr: SocketAddr,
        config: ControllerConfig,
    ) -> Result<Controller, ControllerError> {
        if cluster_id.is_empty() || cluster_id.chars().any(char::is_whitespace) {
            return Err(ControllerError::InvalidClusterId(cluster_id.to_string()));
        }
        let dir = data_dir.as_ref().to_path_buf();
        let (image_tx, image_rx) = watch::channel(Arc::new(ClusterMetadata::default()));
        let (log_store, sm) = {
            let (dir, cluster_id, segment_bytes) = (dir.clone(), cluster_id.to_string(), config.segment_bytes);
            tokio::task::spawn_blocking(move || open_dir(&dir, &cluster_id, node_id, segment_bytes, image_tx))
                .await
                .map_err(|e| ControllerError::Raft(format!("open task failed: {e}")))??
        };

        let listener = TcpListener::bind(listen_addr).await.map_err(|source| ControllerError::Bind { addr: listen_addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| ControllerError::Bind { addr: listen_addr, source })?;

        let raft_config = Config {
            cluster_name: cluster_id.to_string(),
            heartbeat_interval: millis(config.heartbeat_interval),
            election_timeout_min: millis(config.election_timeout_min),
            election_timeout_max: millis(config.election_timeout_max),
            install_snapshot_timeout: millis(config.election_timeout_max).max(1000),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
            // Snapshot chunks travel as JSON arrays of numbers; keep frames modest.
            snapshot_max_chunk_size: 1 << 20,
            ..Config::default()
        }
        .validate()
        .map_err(|e| ControllerError::Raft(format!("bad raft config: {e}")))?;

        let network = NetworkFactory { cluster_id: cluster_id.to_string(), self_id: node_id, transport: config.transport.clone() };
        let raft =
            Raft::new(node_id, Arc::new(raft_config), network, log_store, sm).await.map_err(|e| ControllerError::Raft(e.to_string()))?;
        let shared = Arc::new(Shared {
            heartbeats: parking_lot::Mutex::new(HashMap::new()),
            propose_timeout: config.propose_timeout,
            voters: voters.to_vec(),
        });
        let server = RpcServer::spawn(listener, raft.clone(), cluster_id.to_string(), node_id, shared.clone(), config.transport.clone());

        let is_voter = voters.iter().any(|v| v.id == node_id);
        let initialized = raft.is_initialized().await.map_err(|e| ControllerError::Raft(e.to_string()))?;
        if is_voter && !initialized {
            let members: BTreeMap<NodeId, BasicNode> = voters.iter().map(|v| (v.id, BasicNode { addr: v.addr.clone() })).collect();
            tracing::info!(node_id, cluster_id, voters = ?voters.iter().map(Voter::to_string).collect::<Vec<_>>(), "bootstrapping controller quorum");
            if let Err(e) = raft.initialize(members).await {
                // Another voter's membership may have arrived first; that is fine.
                tracing::info!(node_id, error = %e, "controller quorum initialize skipped");
            }
        }
        tracing::info!(node_id, cluster_id, %local_addr, data_dir = %dir.display(), "controller started");
        Ok(Controller {
            node_id,
            cluster_id: cluster_id.to_string(),
            raft,
            image_rx,
            voters: voters.to_vec(),
            local_addr,
            config,
            server: Mutex::new(server),
            stopped: AtomicBool::new(false),
            shared,
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The address the RPC listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Propose `cmd` to the quorum and wait until it is committed and applied
    /// locally. Only the leader accepts proposals: elsewhere this returns
    /// [`ProposeError::NotLeader`] naming the leader, and the caller forwards.
    pub async fn propose(&self, cmd: MetadataCommand) -> Result<CommandResult, ProposeError> {
        propose_on(&self.raft, cmd, &self.shared).await
    }

    /// Send `request` to the current leader (when it is another node), retrying
    /// while no leader is known or it moves, for at most twice the propose timeout.
    async fn to_leader<T, F: std::future::Future<Output = Result<T, ProposeError>>>(
        &self,
        request: impl Fn() -> RpcRequest,
        local: impl Fn() -> F,
        unwrap: impl Fn(RpcReply) -> Option<Result<T, ProposeError>>,
    ) -> Result<T, ProposeError> {
        let (ttl, budget) = (self.config.propose_timeout + Duration::from_secs(1), self.config.propose_timeout * 2);
        self.to_leader_within(ttl, budget, request, local, unwrap).await
    }

    /// [`Controller::to_leader`] with each call to the leader given `ttl` and the
    /// whole `budget`.
    async fn to_leader_within<T, F: std::future::Future<Output = Result<T, ProposeError>>>(
        &self,
        ttl: Duration,
        budget: Duration,
        request: impl Fn() -> RpcRequest,
        local: impl Fn() -> F,
        unwrap: impl Fn(RpcReply) -> Option<Result<T, ProposeError>>,
    ) -> Result<T, ProposeError> {
        let deadline = Instant::now() + budget;
        let mut last = ProposeError::NotLeader { leader_id: None, leader_addr: None };
        loop {
            let (leader_id, leader_addr) = leader_of(&self.raft, &self.voters);
            match (leader_id, leader_addr) {
                (Some(id), _) if id == self.node_id => match local().await {
                    Err(e @ ProposeError::NotLeader { .. }) => last = e,
                    other => return other,
                },
                (Some(id), Some(addr)) => {
                    let envelope = RpcEnvelope { cluster_id: self.cluster_id.clone(), from: self.node_id, to: id, request: request() };
                    match call_once(&self.config.transport, &addr, &envelope, ttl).await {
                        Ok(reply) => match unwrap(reply) {
                            Some(Err(e @ ProposeError::NotLeader { .. })) => last = e,
                            Some(other) => return other,
                            None => last = ProposeError::Shutdown(format!("leader {id} at {addr} refused the request")),
                        },
                        Err(e) => last = ProposeError::Shutdown(format!("leader {id} at {addr}: {e}")),
                    }
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Like [`Controller::propose`], but a non-leader forwards the command to
    /// the leader over the controller transport and returns its result.
    pub async fn propose_anywhere(&self, cmd: MetadataCommand) -> Result<CommandResult, ProposeError> {
        self.to_leader(
            || RpcRequest::Propose(cmd.clone()),
            || {
                let cmd = cmd.clone();
                async move { self.propose(cmd).await }
            },
            |reply| match reply {
                RpcReply::Propose(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// A broker's heartbeat, recorded by the controller leader (forwarded there from elsewhere).
    ///
    /// Each attempt is short (a heartbeat is sent again soon anyway): one that
    /// waited out a full proposal timeout on a leader that stopped (paused,
    /// starved) would reach its successor only after the successor had fenced
    /// every broker for silence.
    pub async fn heartbeat(&self, broker_id: BrokerId, broker_epoch: i64) -> Result<(), ProposeError> {
        self.to_leader_within(
            HEARTBEAT_ATTEMPT,
            HEARTBEAT_ATTEMPT * 2,
            || RpcRequest::Heartbeat { broker_id, broker_epoch },
            || std::future::ready(record_heartbeat(&self.raft, self.node_id, &self.shared, broker_id, broker_epoch)),
            |reply| match reply {
                RpcReply::Heartbeat(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    /// Heartbeats recorded while this node leads: broker id → (broker epoch, when).
    pub fn broker_heartbeats(&self) -> HashMap<BrokerId, (i64, Instant)> {
        self.shared.heartbeats.lock().clone()
    }

    fn static_addr(&self, id: NodeId) -> Option<String> {
        static_addr(&self.voters, id)
    }

    /// The locally applied metadata image.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.image_rx.borrow().clone()
    }

    /// A receiver that is notified after every applied batch of log entries.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.image_rx.clone()
    }

    /// Wait (at most `timeout`) until the local image satisfies `pred`.
    pub async fn wait_for_metadata(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&ClusterMetadata) -> bool,
    ) -> Option<Arc<ClusterMetadata>> {
        let mut rx = self.image_rx.clone();
        let r = tokio::time::timeout(timeout, rx.wait_for(|m| pred(m))).await;
        match r {
            Ok(Ok(m)) => Some(m.clone()),
            _ => None,
        }
    }

    /// Whether this node currently is the leader (as far as it knows).
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    /// The current leader's id and controller address, if one is known.
    pub fn leader(&self) -> Option<(NodeId, Option<String>)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id).map(|n| n.addr.clone()).or_else(|| self.static_addr(id));
        Some((id, addr))
    }

    /// Wait (at most `timeout`) until some leader is known; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let m = self.raft.wait(Some(timeout)).metrics(|m| m.current_leader.is_some(), "a leader is known").await.ok()?;
        m.current_leader
    }

    /// The current voter ids of the quorum (from the latest membership config).
    pub fn voter_ids(&self) -> BTreeSet<NodeId> {
        self.raft.metrics().borrow().membership_config.voter_ids().collect()
    }

    /// openraft's metrics (term, log and applied index, snapshot, purge point, ...).
    pub fn raft_metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    /// The underlying Raft handle, for metrics waits and diagnostics.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Add node `id` listening at `addr` as a voter (leader only): it first joins
    /// as a learner and catches up, then the membership change is committed.
    pub async fn add_voter(&self, id: NodeId, addr: &str) -> Result<(), ProposeError> {
        self.change_membership(MembershipChange::AddVoter { id, addr: addr.to_string() }).await.map(|_| ())
    }

    /// Remove voter `id` from the quorum (leader only). The node is dropped from
    /// the membership entirely; shut it down afterwards.
    pub async fn remove_voter(&self, id: NodeId) -> Result<(), ProposeError> {
        self.change_membership(MembershipChange::RemoveNode { id }).await.map(|_| ())
    }

    /// Carries out `change` here (leader only).
    pub async fn change_membership(&self, change: MembershipChange) -> Result<Quorum, ProposeError> {
        membership::change_on(&self.raft, change, &self.shared).await
    }

    /// The membership and leader as this node sees them.
    pub fn quorum(&self) -> Quorum {
        membership::quorum_of(&self.raft)
    }

    /// For a node outside the voters (broker-only): asks the quorum, through
    /// `voters`, to add this node as a learner at its own listener address, so it
    /// receives the metadata log.
    pub async fn join_as_learner(&self, timeout: Duration) -> Result<Quorum, ProposeError> {
        let change = MembershipChange::AddLearner { id: self.node_id, addr: self.local_addr.to_string() };
        membership::ask_quorum(&self.config.transport, &self.voters, &self.cluster_id, self.node_id, Some(change), timeout).await
    }

    /// Stop Raft and the RPC listener. Idempotent. The data dir can then be
    /// reopened by a new [`Controller::start`].
    pub async fn shutdown(&self) -> Result<(), ControllerError> {
        self.stopped.store(true, Ordering::SeqCst);
        self.server.lock().await.stop().await;
        self.raft.shutdown().await.map_err(|e| ControllerError::Raft(format!("shutdown: {e}")))?;
        tracing::info!(node_id = self.node_id, "controller stopped");
        Ok(())
    }
}

impl Drop for Controller {
    /// Dropping a running controller stops it in the background (the listener
    /// closes at once); call [`Controller::shutdown`] to wait for it.
    fn drop(&mut self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let raft = self.raft.clone();
                rt.spawn(async move {
                    let _ = raft.shutdown().await;
                });
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Check or write the dir's identity, then open the log and the state machine.
fn open_dir(
    dir: &Path,
    cluster_id: &str,
    node_id: NodeId,
    segment_bytes: u64,
    image_tx: watch::Sender<Arc<ClusterMetadata>>,
) -> Result<(LogStore, StateMachineStore), ControllerError> {
    let io = |path: PathBuf| move |source| ControllerError::Io { path, source };
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    let meta_path = dir.join(META_FILE);
    match read_json::<DirMeta>(&meta_path) {
        Ok(Some(meta)) => {
            if meta.cluster_id != cluster_id {
                return Err(ControllerError::ClusterIdMismatch {
                    dir: dir.to_path_buf(),
                    found: meta.cluster_id,
                    expected: cluster_id.to_string(),
                });
            }
            if meta.node_id != node_id {
                return Err(ControllerError::NodeIdMismatch { dir: dir.to_path_buf(), found: meta.node_id, expected: node_id });
            }
        }
        Ok(None) => {
            let used = std::fs::read_dir(dir).map_err(io(dir.to_path_buf()))?.next().is_some();
            if used {
                return Err(ControllerError::Corrupt {
                    path: meta_path,
                    reason: "missing, but the directory is not empty; refusing to guess whose data it holds".into(),
                });
            }
            write_json_atomic(&meta_path, &DirMeta { cluster_id: cluster_id.to_string(), node_id }).map_err(io(meta_path.clone()))?;
        }
        Err(e) => return Err(ControllerError::Corrupt { path: meta_path, reason: e.to_string() }),
    }
    let log = LogStore::open(dir, segment_bytes).map_err(|e| corrupt_or_io(dir, e))?;
    let sm = StateMachineStore::open(dir, image_tx).map_err(|e| corrupt_or_io(dir, e))?;
    Ok((log, sm))
}

fn corrupt_or_io(dir: &Path, e: std::io::Error) -> ControllerError {
    if e.kind() == std::io::ErrorKind::InvalidData {
        ControllerError::Corrupt { path: dir.to_path_buf(), reason: e.to_string() }
    } else {
        ControllerError::Io { path: dir.to_path_buf(), source: e }
    }
}
