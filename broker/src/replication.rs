//! Kafka's replication, follower side and leader bookkeeping.
//!
//! A follower fetches from its partition's leader with ordinary Fetch requests
//! carrying its broker id as replica id, appends what it gets with the leader's
//! offsets, and takes the leader's high watermark. Before fetching from a new
//! leader it asks, with OffsetForLeaderEpoch, where its own latest epoch ended on
//! the leader and truncates there (KIP-101), so a returning old leader drops
//! exactly what was never committed. The leader learns each follower's log end
//! from its fetch offset, holds the high watermark at the lowest log end in the
//! ISR, and asks the controller to shrink or expand the ISR.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic, ReplicaState};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, OffsetForLeaderEpochRequest, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use karst_controller::MetadataCommand;
use karst_protocol::error_codes as ec;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::broker::{now_ms, Broker};
use crate::fetch_sessions::{next_epoch, INITIAL_EPOCH};
use crate::group::OFFSETS_TOPIC;
use crate::partition::Partition;
use crate::peer::Conn;
use crate::replica::Role;
use crate::txn::TXN_TOPIC;

/// v15: the follower names itself with its broker epoch (KIP-903), which the
/// leader checks against the registration before serving it as a follower.
const FETCH_VERSION: i16 = 15;
const EPOCH_VERSION: i16 = 3;
const RETRY: Duration = Duration::from_millis(200);

/// Brings each hosted partition's role in line with the image; starts a fetcher
/// for every partition this broker newly follows.
pub(crate) fn apply_roles(b: &Broker) {
    let image = b.metadata.image();
    let now = now_ms();
    for p in b.partitions.all() {
        let Some(state) = image.cluster.partition(&p.topic, p.index) else { continue };
        let role = if state.leader == b.node_id {
            Role::Leader
        } else if state.leader >= 0 && state.replicas.contains(&b.node_id) {
            Role::Follower { leader: state.leader }
        } else {
            Role::Offline
        };
        let was_leader = p.replica.lock().role == Role::Leader;
        let changed = p.replica.lock().apply(role, state.leader_epoch, &state.isr, &state.replicas, now);
        if changed && was_leader {
            // Producers waiting here for their batches to commit get their answer now.
            p.wake_waiters();
        }
        if &*p.topic == OFFSETS_TOPIC {
            // Group coordination moves with the leadership of the group's partition;
            // a partition created here starts as leader, unchanged, and is read too.
            match role {
                Role::Leader if changed || !b.groups.serves(p.index, state.leader_epoch) => {
                    b.shares.take_over(&p, b.groups.partitions);
                    b.groups.take_over(&p);
                }
                _ if changed && was_leader => {
                    b.groups.hand_over(&p);
                    b.shares.hand_over(p.index, b.groups.partitions);
                }
                _ => {}
            }
        }
        if changed && &*p.topic == TXN_TOPIC {
            // So does transaction coordination, at the partition's new leader epoch.
            match role {
                Role::Leader => b.txns.take_over(&p),
                _ if was_leader => b.txns.hand_over(&p),
                _ => {}
            }
        }
        if changed && !state.replicas.contains(&b.node_id) && p.log_end_offset() > 0 {
            // Moved off this broker by a reassignment: the data now lives on the new
            // replicas (the controller completes a move only once they are in sync).
            info!(topic = %p.topic, partition = p.index, "no longer a replica; dropping the local copy");
            if let Err(e) = p.restart_at(0) {
                warn!(topic = %p.topic, partition = p.index, "dropping the local copy failed: {e}");
            }
        }
        match role {
            Role::Leader => p.recompute_hw(),
            Role::Follower { leader } if changed => {
                let addr = crate::peer::inter_broker_addr(b, &image, leader);
                let Some(addr) = addr else {
                    warn!(topic = %p.topic, partition = p.index, leader, "leader has no listener; not following yet");
                    continue;
                };
                let Some(topic_id) = image.cluster.topic(&p.topic).map(|t| t.topic_id) else { continue };
                let me = Me { id: b.node_id, broker_epoch: b.metadata.broker_epoch(), topic_id };
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => {
                        info!(topic = %p.topic, partition = p.index, leader, epoch = state.leader_epoch, "following");
                        let following = Following { p: p.clone(), me, epoch: state.leader_epoch };
                        b.fetchers.follow(&h, leader, addr, following, b.config.fsync_before_ack(), b.peer_security.clone());
                    }
                    Err(_) => warn!(topic = %p.topic, partition = p.index, "no runtime to follow the leader on"),
                }
            }
            _ => {}
        }
    }
}

/// The ISR changes this broker's led partitions need, and the return of leadership
/// to preferred replicas (called periodically on every broker).
pub(crate) fn maintain_isr(b: &Broker) {
    let image = b.metadata.image();
    let now = now_ms();
    let lag = i64::try_from(b.config.replica_lag_time_max_ms).unwrap_or(i64::MAX);
    let mut offline = Vec::new();
    for p in b.partitions.all() {
        let Some(state) = image.cluster.partition(&p.topic, p.index) else { continue };
        if p.offline_reason().is_some() {
            // Until the image shows it gone from leadership and (where others
            // remain) from the ISR; a lost proposal is repeated next round.
            if state.leader == b.node_id || (state.isr.len() > 1 && state.isr.contains(&b.node_id)) {
                offline.push((p.topic.to_string(), p.index));
            }
            continue;
        }
        if state.leader != b.node_id || state.replicas.len() < 2 {
            continue;
        }
        let epoch_start = p.leader_epoch_start();
        let (local, min_insync) = (p.local_end(), p.config().min_insync_replicas);
        let wanted = {
            let r = p.replica.lock();
            // Both read under the lock the recompute computes under.
            let floor = r.committed_floor(b.node_id, local, min_insync, p.high_watermark());
            r.wanted_isr(b.node_id, &state.replicas, floor, epoch_start, now, lag)
        }
        // A fenced broker (paused or dead past its session, removed from every ISR by
        // the controller) does not rejoin on a fetch it made before, as in Kafka (KIP-841).
        .map(|w| w.into_iter().filter(|r| state.isr.contains(r) || image.cluster.is_unfenced(*r)).collect::<Vec<_>>())
        .filter(|w| {
            let (mut a, mut c) = (w.clone(), state.isr.clone());
            a.sort_unstable();
            c.sort_unstable();
            a != c
        });
        let Some(isr) = wanted else {
            // Preferred-leader election: hand the partition back to its first replica
            // once that one is in sync again (after a restart moved leadership here).
            let preferred = state.replicas[0];
            if preferred != b.node_id && state.isr.contains(&preferred) && image.cluster.is_unfenced(preferred) {
                info!(topic = %p.topic, partition = p.index, to = preferred, "moving leadership back to the preferred replica");
                let cmd = MetadataCommand::ChangePartitionLeader {
                    topic: p.topic.to_string(),
                    partition: p.index,
                    partition_epoch: state.partition_epoch,
                    leader: preferred,
                };
                if let Err(e) = b.metadata.propose_blocking(cmd) {
                    debug!(topic = %p.topic, partition = p.index, "preferred leader not restored: {e}");
                }
            }
            continue;
        };
        info!(topic = %p.topic, partition = p.index, from = ?state.isr, to = ?isr, "changing ISR");
        let grew = isr.len() > state.isr.len();
        let cmd = MetadataCommand::ChangePartitionIsr {
            topic: p.topic.to_string(),
            partition: p.index,
            partition_epoch: state.partition_epoch,
            isr,
        };
        match b.metadata.propose_blocking(cmd) {
            Ok(_) => crate::metrics::isr_changed(grew),
            Err(e) => debug!(topic = %p.topic, partition = p.index, "ISR change not made: {e}"),
        }
    }
    if !offline.is_empty() {
        report_offline(b, offline);
    }
}

/// Asks the controller to move leadership of this broker's offline replicas to
/// other in-sync replicas and take this broker out of their ISRs.
fn report_offline(b: &Broker, partitions: Vec<(String, i32)>) {
    let broker_epoch = b.metadata.broker_epoch();
    if broker_epoch < 0 {
        return; // not registered (or shutting down): fencing moves everything anyway
    }
    let count = partitions.len();
    let cmd = MetadataCommand::MarkReplicasOffline { broker_id: b.node_id, broker_epoch, partitions };
    // maintain_isr runs on a blocking thread, like the ISR changes above.
    match b.metadata.propose_blocking(cmd) {
        Ok(_) => warn!(partitions = count, "offline replicas reported to the controller: leadership moves to other in-sync replicas"),
        Err(e) => warn!(partitions = count, "could not report offline replicas to the controller (retrying): {e}"),
    }
}

/// Whether to keep fetching: an offline replica stops, so it never looks caught up.
fn following(p: &Partition, leader: i32, epoch: i32) -> bool {
    if p.offline_reason().is_some() {
        return false;
    }
    let r = p.replica.lock();
    r.role == (Role::Follower { leader }) && r.leader_epoch == epoch
}

/// Why a step with the leader failed.
#[derive(Debug)]
enum Stop {
    /// Reconnect after a pause (connection trouble).
    Retry(String),
    /// This partition waits and tries again (the leader not ready for it, a local
    /// failure); the connection and the other partitions carry on.
    Partition(String),
}

/// What a follower says about itself in its fetches.
#[derive(Debug, Clone, Copy)]
struct Me {
    id: i32,
    broker_epoch: i64,
    topic_id: uuid::Uuid,
}

/// KIP-101/KIP-279: cut this log where it stops agreeing with the leader's.
///
/// The follower asks where its latest epoch ended on the leader. The leader answers
/// with the largest epoch it knows at or below that one and where that epoch ended
/// there. If this log knows that epoch too, it keeps the shorter of the two ends for
/// it; if not, it cuts to where its own epochs below it end and asks again (each round
/// drops an epoch). Taking the leader's end offset alone would keep batches of an epoch
/// the leader never saw whenever the leader's older epoch ran longer than ours did.
async fn truncate_for(p: &Arc<Partition>, conn: &mut Conn, leader: i32, epoch: i32) -> Result<(), Stop> {
    let retry = |e: crate::partition::PartitionError| Stop::Partition(e.to_string());
    loop {
        if !following(p, leader, epoch) {
            return Err(Stop::Partition("no longer following this leader at this epoch".into()));
        }
        let Some(mine) = p.latest_epoch().map_err(retry)? else {
            return Ok(()); // nothing written under any epoch: nothing to cut
        };
        let (their_epoch, their_end) = leader_end_for(p, conn, epoch, mine).await?;
        let end = p.log_end_offset();
        let ours = if their_epoch >= 0 { p.end_offset_for_epoch(their_epoch).map_err(retry)? } else { (-1, -1) };
        let (cut, done) = truncation_point((their_epoch, their_end), ours, p.high_watermark());
        if cut < end {
            let p2 = p.clone();
            let after = tokio::task::spawn_blocking(move || p2.truncate_as_follower(cut, leader, epoch))
                .await
                .map_err(|e| Stop::Partition(e.to_string()))?
                .map_err(retry)?;
            info!(topic = %p.topic, partition = p.index, epoch = mine, leader_epoch = their_epoch, their_end, cut, end = after, "truncated to where the leader's log agrees");
        }
        if done || cut >= end {
            return Ok(());
        }
    }
}

/// Where a follower cuts, and whether that settles it, from the leader's answer
/// `(epoch, end)` and this log's own `(epoch, end)` for that epoch (Kafka's fetcher
/// rule). The caller bounds the cut by its log end.
fn truncation_point(theirs: (i32, i64), ours: (i32, i64), high_watermark: i64) -> (i64, bool) {
    let (their_epoch, their_end) = theirs;
    if their_epoch < 0 || their_end < 0 {
        return (high_watermark, true);
    }
    match ours {
        // No epoch of ours that old: the leader's end is all there is to go by.
        (e, _) if e < 0 => (their_end, true),
        (e, my_end) if e == their_epoch => (my_end.min(their_end), true),
        // The leader's epoch is unknown here: cut to where our older epochs end, ask again.
        (_, my_end) => (my_end, false),
    }
}

/// OffsetForLeaderEpoch: the leader's largest epoch at or below `mine`, and its end there.
async fn leader_end_for(p: &Partition, conn: &mut Conn, epoch: i32, mine: i32) -> Result<(i32, i64), Stop> {
    let req =
        OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(p.node_id())).with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_string(p.topic.to_string())))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(p.index)
                .with_current_leader_epoch(epoch)
                .with_leader_epoch(mine)])]);
    let ResponseKind::OffsetForLeaderEpoch(resp) =
        conn.call(ApiKey::OffsetForLeaderEpoch, EPOCH_VERSION, RequestKind::OffsetForLeaderEpoch(req)).await.map_err(Stop::Retry)?
    else {
        return Err(Stop::Retry("unexpected response".into()));
    };
    let answer = resp.topics.first().and_then(|t| t.partitions.first()).ok_or_else(|| Stop::Partition("empty answer".into()))?;
    if answer.error_code != ec::NONE {
        return Err(Stop::Partition(format!("OffsetForLeaderEpoch error {}", answer.error_code)));
    }
    Ok((answer.leader_epoch, answer.end_offset))
}

/// A partition this broker follows, handed to the fetcher of its leader.
#[derive(Debug)]
pub(crate) struct Following {
    p: Arc<Partition>,
    me: Me,
    /// The leader epoch it follows at.
    epoch: i32,
}

/// The partitions handed to one fetcher and not yet taken up by it.
#[derive(Debug, Default)]
struct Inbox {
    added: Mutex<Vec<Following>>,
    wake: Notify,
}

/// The running fetchers' inboxes, by leader id and address.
type Registry = Arc<Mutex<HashMap<(i32, String), Arc<Inbox>>>>;

/// This broker's follower fetchers: one task per leader (and its address), fetching
/// every partition followed from that leader in one KIP-227 fetch session, as
/// Kafka's replica fetcher threads do. A fetcher ends once it follows nothing.
#[derive(Debug, Default)]
pub(crate) struct Fetchers {
    by_leader: Registry,
}

impl Fetchers {
    /// Hands `following` to the fetcher of `leader` at `addr`, starting one if none runs.
    fn follow(
        &self,
        rt: &tokio::runtime::Handle,
        leader: i32,
        addr: String,
        following: Following,
        fsync: bool,
        security: Arc<crate::security::PeerSecurity>,
    ) {
        let mut all = self.by_leader.lock();
        let key = (leader, addr);
        let inbox = match all.get(&key) {
            Some(inbox) => inbox.clone(),
            None => {
                let inbox = Arc::new(Inbox::default());
                all.insert(key.clone(), inbox.clone());
                let fetcher = Fetcher::new(leader, key.1.clone(), fsync, security);
                rt.spawn(fetcher.run(inbox.clone(), self.by_leader.clone(), key));
                inbox
            }
        };
        inbox.added.lock().push(following);
        inbox.wake.notify_one();
    }
}

/// A followed partition as its fetcher keeps it.
#[derive(Debug)]
struct Fetched {
    f: Following,
    /// Cut to where the leader's log agrees (once per leader epoch).
    truncated: bool,
    /// Left out of fetches until then, after an error.
    delayed_until: Option<Instant>,
    /// The fetch offset and log start the leader's session last got for it (None: the
    /// session does not hold it).
    in_session: Option<(i64, i64)>,
}

impl Fetched {
    fn fetch_partition(&self) -> FetchPartition {
        FetchPartition::default()
            .with_partition(self.f.p.index)
            .with_current_leader_epoch(self.f.epoch)
            .with_fetch_offset(self.f.p.log_end_offset())
            .with_log_start_offset(self.f.p.log_start_offset())
            .with_partition_max_bytes(4 << 20)
    }

    fn position(&self) -> (i64, i64) {
        (self.f.p.log_end_offset(), self.f.p.log_start_offset())
    }

    fn delay(&mut self, why: &str) {
        debug!(topic = %self.f.p.topic, partition = self.f.p.index, "follower fetch paused: {why}");
        self.delayed_until = Some(Instant::now() + RETRY);
    }
}

/// The fetch session the fetcher holds with its leader.
#[derive(Debug, Clone, Copy, Default)]
struct LeaderSession {
    /// 0: none (the next fetch is full).
    id: i32,
    /// The epoch of the next incremental fetch.
    epoch: i32,
}

/// One leader's fetcher.
struct Fetcher {
    leader: i32,
    addr: String,
    fsync: bool,
    /// TLS and SASL to the leader's inter-broker listener.
    security: Arc<crate::security::PeerSecurity>,
    /// By topic id and partition, in the order taken up.
    partitions: IndexMap<(Uuid, i32), Fetched>,
    session: LeaderSession,
    /// A session to close with the next full fetch (after an error).
    stale_session: i32,
    /// Partitions let go of that the session still holds: forgotten by the next fetch.
    dropped: Vec<(Uuid, i32)>,
}

impl Fetcher {
    fn new(leader: i32, addr: String, fsync: bool, security: Arc<crate::security::PeerSecurity>) -> Fetcher {
        Fetcher {
            leader,
            addr,
            fsync,
            security,
            partitions: IndexMap::new(),
            session: LeaderSession::default(),
            stale_session: 0,
            dropped: Vec::new(),
        }
    }

    /// Fetches until nothing is followed from this leader any more.
    async fn run(mut self, inbox: Arc<Inbox>, registry: Registry, key: (i32, String)) {
        let mut conn: Option<Conn> = None;
        loop {
            self.take_up(&inbox);
            if self.partitions.is_empty() {
                // Gone from the registry under its lock, so no partition is handed to
                // a fetcher that has stopped taking them.
                let mut all = registry.lock();
                if inbox.added.lock().is_empty() {
                    all.remove(&key);
                    debug!(leader = self.leader, addr = %self.addr, "follower fetcher stopped: nothing left to follow");
                    return;
                }
                continue;
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match Conn::connect_with(&self.security, &self.addr, format!("karst-replica-{}", self.node_id())).await {
                    Ok(c) => conn.insert(c),
                    Err(why) => {
                        debug!(leader = self.leader, "follower fetcher cannot connect: {why}");
                        self.wait(&inbox, Some(Instant::now() + RETRY)).await;
                        continue;
                    }
                },
            };
            let round = async {
                self.truncate_new(c).await?;
                self.fetch(c, &inbox).await
            };
            if let Err(Stop::Retry(why) | Stop::Partition(why)) = round.await {
                // A new connection starts a new session with a full fetch.
                debug!(leader = self.leader, addr = %self.addr, "follower fetcher reconnects: {why}");
                conn = None;
                self.reset_session();
                self.wait(&inbox, Some(Instant::now() + RETRY)).await;
            }
        }
    }

    /// This broker's id, as its partitions were handed over.
    fn node_id(&self) -> i32 {
        self.partitions.values().next().map_or(-1, |f| f.f.me.id)
    }

    /// Takes up newly handed partitions (a new epoch replaces the old entry, to be
    /// truncated again) and lets go of those no longer followed from this leader.
    fn take_up(&mut self, inbox: &Inbox) {
        let leader = self.leader;
        let dropped = &mut self.dropped;
        self.partitions.retain(|key, x| {
            let keep = following(&x.f.p, leader, x.f.epoch);
            if !keep && x.in_session.is_some() {
                dropped.push(*key);
            }
            keep
        });
        for f in std::mem::take(&mut *inbox.added.lock()) {
            let key = (f.me.topic_id, f.p.index);
            // Sent again in full (its epoch may be new), never forgotten in the same fetch.
            self.dropped.retain(|d| *d != key);
            self.partitions.insert(key, Fetched { f, truncated: false, delayed_until: None, in_session: None });
        }
    }

    /// Waits until `until` (or, without it, until a fetch can be sent) or until a
    /// partition is handed over, whichever is first.
    async fn wait(&self, inbox: &Inbox, until: Option<Instant>) {
        let until =
            until.or_else(|| self.partitions.values().filter_map(|x| x.delayed_until).min()).unwrap_or_else(|| Instant::now() + RETRY);
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = inbox.wake.notified() => {}
        }
    }

    fn reset_session(&mut self) {
        if self.session.id != 0 {
            self.stale_session = self.session.id;
        }
        self.session = LeaderSession::default();
        self.dropped.clear();
        for x in self.partitions.values_mut() {
            x.in_session = None;
        }
    }

    /// KIP-101: each newly followed partition is cut where the leader's log agrees
    /// before it is fetched (on failure it waits and is tried again).
    async fn truncate_new(&mut self, conn: &mut Conn) -> Result<(), Stop> {
        let now = Instant::now();
        for x in self.partitions.values_mut().filter(|x| !x.truncated && x.delayed_until.is_none_or(|t| t <= now)) {
            match truncate_for(&x.f.p, conn, self.leader, x.f.epoch).await {
                Ok(()) => {
                    x.truncated = true;
                    x.delayed_until = None;
                }
                Err(Stop::Partition(why)) => x.delay(&why),
                // The connection itself may be broken: start over on a new one.
                Err(Stop::Retry(why)) => {
                    x.delay(&why);
                    return Err(Stop::Retry(why));
                }
            }
        }
        Ok(())
    }

    /// One fetch: full when there is no session (all fetchable partitions), else
    /// incremental (those whose position moved, and as forgotten those the session
    /// holds that are paused or gone); then every answered partition is applied.
    async fn fetch(&mut self, conn: &mut Conn, inbox: &Inbox) -> Result<(), Stop> {
        let now = Instant::now();
        let full = self.session.id == 0;
        let mut topics: IndexMap<Uuid, Vec<FetchPartition>> = IndexMap::new();
        let mut forgotten: IndexMap<Uuid, Vec<i32>> = IndexMap::new();
        let mut sent = Vec::new();
        let mut fetchable = 0usize;
        let mut broker_epoch = -1;
        for (&(topic_id, index), x) in &self.partitions {
            broker_epoch = broker_epoch.max(x.f.me.broker_epoch);
            let ready = x.truncated && x.delayed_until.is_none_or(|t| t <= now);
            if !ready {
                if !full && x.in_session.is_some() {
                    forgotten.entry(topic_id).or_default().push(index);
                }
                continue;
            }
            fetchable += 1;
            let position = x.position();
            if full || x.in_session != Some(position) {
                topics.entry(topic_id).or_default().push(x.fetch_partition());
                sent.push(((topic_id, index), position));
            }
        }
        if !full {
            // Partitions the session holds that this fetcher let go of.
            for &(topic_id, index) in &self.dropped {
                forgotten.entry(topic_id).or_default().push(index);
            }
        }
        if fetchable == 0 {
            self.wait(inbox, None).await;
            return Ok(());
        }
        let (session_id, session_epoch) =
            if full { (std::mem::take(&mut self.stale_session), INITIAL_EPOCH) } else { (self.session.id, self.session.epoch) };
        let req = FetchRequest::default()
            .with_replica_state(ReplicaState::default().with_replica_id(BrokerId(self.node_id())).with_replica_epoch(broker_epoch))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_session_id(session_id)
            .with_session_epoch(session_epoch)
            .with_topics(topics.into_iter().map(|(id, parts)| FetchTopic::default().with_topic_id(id).with_partitions(parts)).collect())
            .with_forgotten_topics_data(
                forgotten.into_iter().map(|(id, parts)| ForgottenTopic::default().with_topic_id(id).with_partitions(parts)).collect(),
            );
        let call = async { conn.call(ApiKey::Fetch, FETCH_VERSION, RequestKind::Fetch(req)).await.map_err(Stop::Retry) };
        let ResponseKind::Fetch(resp) = unless_stuck(call, inbox).await? else {
            return Err(Stop::Retry("unexpected response".into()));
        };
        if resp.error_code != ec::NONE {
            // FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH or any other:
            // the next fetch is a full one, on a new session.
            debug!(
                leader = self.leader,
                error = resp.error_code,
                session = self.session.id,
                "follower fetch session error; fetching in full"
            );
            self.reset_session();
            return Ok(());
        }
        self.session = match (full, resp.session_id) {
            (_, 0) => LeaderSession::default(),
            (true, id) => LeaderSession { id, epoch: next_epoch(INITIAL_EPOCH) },
            (false, id) if id == self.session.id => LeaderSession { id, epoch: next_epoch(self.session.epoch) },
            (false, id) => {
                debug!(leader = self.leader, expected = self.session.id, got = id, "follower fetch answered for another session");
                self.reset_session();
                return Ok(());
            }
        };
        // What the session now holds for each partition sent (every fetchable one,
        // for a full fetch), and nothing for the ones forgotten.
        self.dropped.clear();
        for x in self.partitions.values_mut() {
            let ready = x.truncated && x.delayed_until.is_none_or(|t| t <= now);
            if self.session.id == 0 || !ready {
                x.in_session = None;
            }
        }
        if self.session.id != 0 {
            for (key, position) in sent {
                if let Some(x) = self.partitions.get_mut(&key) {
                    x.in_session = Some(position);
                }
            }
        }
        self.apply(resp).await;
        Ok(())
    }

    /// Applies one answer: each partition's records are appended (in parallel, each
    /// fsynced where acks wait for it), then its durable end and high watermark move.
    async fn apply(&mut self, resp: kafka_protocol::messages::FetchResponse) {
        let leader = self.leader;
        let mut appends = Vec::new();
        for t in resp.responses {
            for data in t.partitions {
                let Some(x) = self.partitions.get_mut(&(t.topic_id, data.partition_index)) else { continue };
                let p = x.f.p.clone();
                // Nothing else writes this replica: its log end is the offset fetched.
                let (epoch, offset, fsync) = (x.f.epoch, p.log_end_offset(), self.fsync);
                if data.error_code == ec::OFFSET_OUT_OF_RANGE && data.log_start_offset > offset {
                    // The leader no longer has what comes next here (retention, DeleteRecords).
                    let start = data.log_start_offset;
                    let p2 = p.clone();
                    match tokio::task::spawn_blocking(move || p2.restart_as_follower(start, leader, epoch)).await {
                        Ok(Ok(())) => {
                            warn!(topic = %p.topic, partition = p.index, from = offset, to = start, "below the leader's log start: starting over there")
                        }
                        Ok(Err(e)) => x.delay(&e.to_string()),
                        Err(e) => x.delay(&e.to_string()),
                    }
                    continue;
                }
                if data.error_code != ec::NONE {
                    x.delay(&format!("fetch error {}", data.error_code));
                    continue;
                }
                let records = data.records.unwrap_or_default();
                let hw = data.high_watermark;
                appends.push(async move {
                    if !records.is_empty() {
                        let p2 = p.clone();
                        let appended = tokio::task::spawn_blocking(move || -> Result<(), String> {
                            p2.append_replicated(&records, leader, epoch, now_ms()).map_err(|e| e.to_string())?;
                            if fsync {
                                if let Some(t) = p2.flush_target() {
                                    if let Err(e) = t.sync() {
                                        p2.go_offline(&t.failure().unwrap_or_else(|| e.to_string()));
                                        return Err(e.to_string());
                                    }
                                }
                            }
                            Ok(())
                        })
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r);
                        if let Err(e) = appended {
                            return Err(((t.topic_id, p.index), format!("appending replicated batches: {e}")));
                        }
                    }
                    // What was appended is in the log whatever the role is now (a
                    // leadership taken up meanwhile counts it as its durable end), but
                    // a high watermark from a leader this replica no longer follows
                    // is not its to take.
                    p.set_local_end(p.log_end_offset());
                    if following(&p, leader, epoch) {
                        p.follow_hw(hw);
                    }
                    Ok(())
                });
            }
        }
        for failed in futures::future::join_all(appends).await.into_iter().filter_map(Result::err) {
            let (key, why) = failed;
            if let Some(x) = self.partitions.get_mut(&key) {
                x.delay(&why);
            }
        }
    }
}

/// How long a fetch (which the leader answers within its 500 ms wait) may go unanswered
/// while newly followed partitions wait for the fetcher.
const STUCK: Duration = Duration::from_secs(2);

/// Awaits a fetch, unless a partition is handed to the fetcher while the leader has
/// not answered for [`STUCK`]: then the fetch is given up (and with it the connection),
/// so a leader that stopped answering (paused, partitioned) holds up newly followed
/// partitions for seconds, not until the call times out. One fetcher per leader
/// serves them all, where a task per partition used to start on a fresh connection.
async fn unless_stuck<T>(call: impl std::future::Future<Output = Result<T, Stop>>, inbox: &Inbox) -> Result<T, Stop> {
    let started = Instant::now();
    tokio::pin!(call);
    let mut handed = false;
    loop {
        tokio::select! {
            answer = &mut call => return answer,
            _ = inbox.wake.notified(), if !handed => handed = true,
            _ = tokio::time::sleep_until((started + STUCK).into()), if handed => {
                return Err(Stop::Retry(format!("no answer to a fetch for {STUCK:?} while partitions wait")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::truncation_point;

    #[test]
    fn a_follower_keeps_only_what_the_leaders_epochs_agree_with() {
        // Same epoch on both sides: the shorter end wins.
        assert_eq!(truncation_point((3, 130), (3, 100), 50), (100, true));
        assert_eq!(truncation_point((3, 90), (3, 100), 50), (90, true));
        // The leader answers epoch 3 (it never saw our epoch 5) and its epoch 3 ran to
        // 130, ours to 100 where our epoch 5 began: our epoch-5 batches at 100..130 are
        // not the leader's, so the cut is at 100, not 130.
        assert_eq!(truncation_point((3, 130), (3, 100), 50).0, 100);
        // We do not know the leader's epoch 4: cut to the end of our epoch 3, ask again.
        assert_eq!(truncation_point((4, 130), (3, 100), 50), (100, false));
        // No epoch of ours that old: the leader's end; no answer at all: the high watermark.
        assert_eq!(truncation_point((2, 70), (-1, -1), 50), (70, true));
        assert_eq!(truncation_point((-1, -1), (3, 100), 50), (50, true));
    }
}
