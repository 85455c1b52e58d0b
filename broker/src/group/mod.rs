//! The group coordinator: consumer-group membership and committed offsets,
//! stored in the internal topic `__consumer_offsets` through the same storage as
//! any topic, so both survive a restart.

pub mod assignors;
pub(crate) mod consumer;
pub(crate) mod embedded;
pub(crate) mod records;
pub(crate) mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use karst_protocol::error_codes as ec;
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::broker::{now_ms, Broker};
use crate::errors::BrokerError;
use crate::partition::Partition;
use records::{Key, OffsetValue};
pub(crate) use state::{Group, GroupState, JoinRequest, JoinResult, Outcome, SyncResult, Timing};

/// A `__consumer_offsets` record: key and value (None: tombstone).
pub(crate) type KeyValue = (Bytes, Option<Bytes>);

/// A group id with its committed offsets as (topic, partition, offset).
pub type GroupOffsets = (String, Vec<(String, i32, i64)>);

/// The internal topic holding groups and offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// `__consumer_offsets`' configs, as Kafka creates it: compacted, with segments of
/// `offsets.topic.segment.bytes` (100 MiB).
pub(crate) fn offsets_topic_configs(segment_bytes: u64) -> BTreeMap<String, String> {
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("segment.bytes".to_string(), segment_bytes.to_string());
    configs
}

/// A group and its committed offsets.
#[derive(Debug)]
pub(crate) struct GroupEntry {
    /// The classic group; unused (Empty) while the group is a consumer group.
    pub(crate) group: Group,
    /// Set while the group speaks KIP-848's consumer protocol.
    pub(crate) consumer: Option<consumer::ConsumerGroup>,
    pub(crate) offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Offsets committed in open transactions, by producer id: they count once
    /// the transaction's COMMIT marker reaches the group's partition.
    pub(crate) pending_txn: HashMap<i64, BTreeMap<(String, i32), OffsetValue>>,
}

impl GroupEntry {
    pub(crate) fn new(id: &str, now: i64) -> GroupEntry {
        GroupEntry { group: Group::new(id, now), consumer: None, offsets: BTreeMap::new(), pending_txn: HashMap::new() }
    }

    /// Whether the group has no members (its offsets may expire, it may be deleted).
    pub(crate) fn is_empty(&self) -> bool {
        match &self.consumer {
            Some(c) => c.members.is_empty(),
            None => self.group.state == GroupState::Empty,
        }
    }

    /// Makes this a consumer group for a member joining with the consumer protocol:
    /// a group without members just changes type (its offsets stay); a classic
    /// group whose members all speak the consumer embedded protocol is upgraded,
    /// its members keeping their partitions until they rejoin (KIP-848).
    pub(crate) fn upgrade(&mut self, topics: &consumer::Topics, now: i64) -> Result<(), consumer::Refusal> {
        let id = self.group.id.clone();
        if self.group.members.is_empty() {
            let mut c = consumer::ConsumerGroup::new(&id);
            // The generation never goes backwards across the change.
            c.epoch = self.group.generation.max(0);
            c.assignment_epoch = c.epoch;
            self.consumer = Some(c);
            self.group = Group::new(&id, now);
            return Ok(());
        }
        let not_consumer = || (ec::GROUP_ID_NOT_FOUND, format!("Group {id} is not a consumer group."));
        if self.group.protocol_type.as_deref() != Some("consumer") {
            return Err(not_consumer());
        }
        let c = consumer::ConsumerGroup::from_classic(&id, &self.group.value(), topics, now).ok_or_else(not_consumer)?;
        info!(group = %id, members = c.members.len(), "classic group upgraded to a consumer group");
        // Members parked in JoinGroup or SyncGroup are answered as their channels
        // close, and rejoin.
        self.group = Group::new(&id, now);
        self.consumer = Some(c);
        Ok(())
    }

    /// After members left a consumer group: when only classic members are left, it
    /// becomes a classic group again, rebalancing at once (KIP-848's downgrade).
    /// Returns the records that say so.
    /// `names` (topic names by id) is asked for only when the group does change.
    pub(crate) fn maybe_downgrade(
        &mut self,
        names: impl FnOnce() -> HashMap<uuid::Uuid, String>,
        now: i64,
        timing: Timing,
    ) -> Option<Vec<KeyValue>> {
        let c = self.consumer.as_ref()?;
        if !c.only_classic_members_besides("") {
            return None;
        }
        let v = c.to_classic(&names(), now)?;
        let id = c.id.clone();
        let mut g = Group::new(&id, now);
        g.restore(v, now);
        g.rebalance_now(now, timing);
        info!(group = %id, members = g.members.len(), "consumer group downgraded to a classic group");
        self.group = g;
        self.consumer = None;
        Some(vec![(records::encode_key(&Key::Consumer { group: id }), None), GroupCoordinator::group_record(&self.group)])
    }

    /// The group's type as ListGroups v5 names it.
    pub(crate) fn kind(&self) -> &'static str {
        if self.consumer.is_some() {
            "consumer"
        } else {
            "classic"
        }
    }

    /// Whether an open transaction has committed an offset for `topic`-`partition`.
    pub(crate) fn unstable(&self, topic: &str, partition: i32) -> bool {
        self.pending_txn.values().any(|o| o.keys().any(|(t, p)| t == topic && *p == partition))
    }
}

/// All groups this broker coordinates.
#[derive(Debug)]
pub struct GroupCoordinator {
    pub(crate) entries: Mutex<HashMap<String, GroupEntry>>,
    /// `__consumer_offsets` partitions whose groups are in `entries` (read by
    /// [`GroupCoordinator::load`] or a take-over); locked after `entries`.
    loaded: Mutex<HashSet<i32>>,
    /// `__consumer_offsets` partitions this broker coordinates the groups of, with the
    /// leader epoch it read them back at. The metadata image names a new leader
    /// before the broker has replayed the partition: until then its groups are
    /// COORDINATOR_LOAD_IN_PROGRESS here, not served from what it read before.
    serving: Mutex<HashMap<i32, i32>>,
    /// Woken when a partition is read back (`serving` grew).
    served: tokio::sync::Notify,
    /// When [`GroupCoordinator::tick`] last ran (ms since the epoch, 0: not yet).
    ticked_ms: AtomicI64,
    /// After this broker did not run for a while (paused, starved): until when it
    /// distrusts its metadata, and the image it had then (see [`GroupCoordinator::stalled`]).
    distrust: Mutex<Option<(i64, usize)>>,
    /// Records read from `__consumer_offsets` by replays since the broker started.
    replayed: AtomicUsize,
    pub(crate) timing: Timing,
    /// `group.consumer.*`: KIP-848 groups.
    pub(crate) consumer: consumer::ConsumerConfig,
    pub(crate) partitions: i32,
    pub(crate) offsets_retention_ms: i64,
    /// Serialises creation of the offsets topic.
    create_lock: tokio::sync::Mutex<()>,
}

/// A write of a coordinator (offsets, group, transaction state, a marker) to await
/// before answering.
pub(crate) struct Pending {
    partition: Arc<Partition>,
    last_offset: i64,
    /// The leadership it was appended under.
    leader_epoch: i32,
}

impl Pending {
    /// The write just appended to `partition`, ending at `last_offset`.
    pub(crate) fn new(partition: Arc<Partition>, last_offset: i64) -> Pending {
        let leader_epoch = partition.leader_epoch();
        Pending { partition, last_offset, leader_epoch }
    }

    /// Waits until the write is committed: the high watermark past it while this
    /// broker still leads at the epoch it was appended under. False if the broker
    /// gave up first or the leadership ended: a leader deposed while paused truncates
    /// the write when it follows again, and the high watermark it then learns from
    /// the new leader passes the same offsets with other records in them.
    pub(crate) async fn durable(self) -> bool {
        self.committed().await.is_ok()
    }

    /// [`Pending::durable`] with the error a client is told, as Kafka's group
    /// coordinator: NOT_COORDINATOR when the leadership ended (the client finds the
    /// new coordinator at once), REQUEST_TIMED_OUT when the write did not commit in time.
    pub(crate) async fn committed(self) -> Result<(), i16> {
        let p = &self.partition;
        let (last, epoch) = (self.last_offset, self.leader_epoch);
        let waited = tokio::time::timeout(std::time::Duration::from_secs(30), p.hw_past_or_deposed(last, epoch)).await;
        if !p.leads_at(epoch) {
            Err(ec::NOT_COORDINATOR)
        } else if matches!(waited, Ok(Ok(()))) && p.high_watermark() > last {
            Ok(())
        } else {
            Err(ec::REQUEST_TIMED_OUT)
        }
    }
}

pub(crate) fn encode_batch(records: &[(Bytes, Option<Bytes>)], now: i64) -> Result<BytesMut, BrokerError> {
    encode_batch_of(records, now, None)
}

/// A batch of `records`, transactional for `producer` (id and epoch, no sequence)
/// when given: a transactional offset commit.
pub(crate) fn encode_batch_of(records: &[(Bytes, Option<Bytes>)], now: i64, producer: Option<(i64, i16)>) -> Result<BytesMut, BrokerError> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer.map_or(-1, |(id, _)| id),
            producer_epoch: producer.map_or(-1, |(_, epoch)| epoch),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: Some(k.clone()),
            value: v.clone(),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, recs.iter(), &RecordEncodeOptions { version: 2, compression: Compression::None })
        .map_err(|e| BrokerError::Corrupt(format!("encoding group records: {e}")))?;
    Ok(buf)
}

impl GroupCoordinator {
    pub(crate) fn new(partitions: i32, timing: Timing, offsets_retention_ms: i64) -> GroupCoordinator {
        GroupCoordinator {
            entries: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashSet::new()),
            serving: Mutex::new(HashMap::new()),
            served: tokio::sync::Notify::new(),
            ticked_ms: AtomicI64::new(0),
            distrust: Mutex::new(None),
            replayed: AtomicUsize::new(0),
            timing,
            consumer: consumer::ConsumerConfig::default(),
            partitions,
            offsets_retention_ms,
            create_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The topics a consumer group may subscribe to: name → (id, partitions).
    pub(crate) fn topics(b: &Broker) -> consumer::Topics {
        b.metadata.image().topics.values().map(|t| (t.name.clone(), (t.id, t.partitions))).collect()
    }

    /// Topic names by id.
    pub(crate) fn topic_names(b: &Broker) -> HashMap<uuid::Uuid, String> {
        b.metadata.image().topics.values().map(|t| (t.id, t.name.clone())).collect()
    }

    /// Every group with its committed offsets as (topic, partition, offset).
    pub fn entries_snapshot(&self) -> Vec<GroupOffsets> {
        let entries = self.entries.lock();
        let mut out: Vec<GroupOffsets> =
            entries.iter().map(|(id, e)| (id.clone(), e.offsets.iter().map(|((t, p), v)| (t.clone(), *p, v.offset)).collect())).collect();
        out.sort();
        out
    }

    /// Whether `__consumer_offsets` exists (every group API needs it).
    pub(crate) fn has_topic(&self, b: &Broker) -> bool {
        b.metadata.image().topics.contains_key(OFFSETS_TOPIC)
    }

    /// Creates `__consumer_offsets` on first use, as Kafka does: compacted, so the
    /// log keeps the latest record of every group and offset, and retention never
    /// deletes offsets of idle groups.
    pub(crate) async fn ensure_topic(&self, b: &Arc<Broker>) -> Result<(), BrokerError> {
        let configs = offsets_topic_configs(b.config.offsets_topic_segment_bytes);
        crate::internal_topic::ensure(b, &self.create_lock, OFFSETS_TOPIC, self.partitions, configs).await
    }

    /// A `__consumer_offsets` created before Karst compacted it (kept whole with
    /// `retention.ms=-1`) becomes compacted, as Kafka's always is: the overrides it
    /// had stay, `cleanup.policy=compact` is added. Returns whether it is (now) compacted.
    pub(crate) async fn upgrade_topic(&self, b: &Arc<Broker>) -> Result<bool, BrokerError> {
        let Some(topic) = b.metadata.image().topics.get(OFFSETS_TOPIC).cloned() else { return Ok(false) };
        if topic.configs.get("cleanup.policy").and_then(|p| karst_storage::CleanupPolicy::parse(p)).is_some_and(|p| p.compact) {
            return Ok(true);
        }
        let mut configs = topic.configs.clone();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        b.alter_topic_configs(OFFSETS_TOPIC, configs).await?;
        info!("{OFFSETS_TOPIC} was created with cleanup.policy=delete: now compacted, as Kafka's");
        Ok(true)
    }

    /// Ok when this broker coordinates `group` (leads its `__consumer_offsets`
    /// partition); else NOT_COORDINATOR, or COORDINATOR_NOT_AVAILABLE while that
    /// partition has no leader or the topic does not exist yet (the request
    /// path creates it first: [`GroupCoordinator::ensure_topic`]).
    pub(crate) fn coordinates(&self, b: &Broker, group: &str) -> Result<(), i16> {
        let index = records::partition_for(group, self.partitions);
        if self.stalled(b) {
            return Err(ec::NOT_COORDINATOR);
        }
        crate::internal_topic::coordinates(b, OFFSETS_TOPIC, index)?;
        let epoch = b.metadata.image().cluster.partition(OFFSETS_TOPIC, index).map(|s| s.leader_epoch);
        if epoch.is_some() && self.serving.lock().get(&index).copied() == epoch {
            Ok(())
        } else {
            Err(ec::COORDINATOR_LOAD_IN_PROGRESS)
        }
    }

    /// Whether this broker may have been deposed without knowing it: it did not run
    /// for half a broker session (paused, starved), long enough for the controller
    /// to fence it and move its leaderships, and its metadata has not changed since
    /// (nor has a full session passed). Its groups' state in memory may then be
    /// older than the new coordinator's: it coordinates nothing until then, rather
    /// than answer OffsetFetch or a heartbeat from it. Share-partition leadership is
    /// distrusted the same way (`handlers::share`).
    pub(crate) fn stalled(&self, b: &Broker) -> bool {
        let now = now_ms();
        if Self::stalled_since(b, self.ticked_ms.load(Ordering::Relaxed), now) {
            return true; // not ticked since: running again only now
        }
        let mut distrust = self.distrust.lock();
        match *distrust {
            Some((until, image)) if now < until && image == Arc::as_ptr(&b.metadata.image().cluster) as usize => true,
            Some(_) => {
                *distrust = None;
                false
            }
            None => false,
        }
    }

    /// Whether a tick last run at `ticked` (0: never) is more than half a broker
    /// session before `now`: long enough for the controller to have fenced this broker.
    fn stalled_since(b: &Broker, ticked: i64, now: i64) -> bool {
        let session = i64::try_from(b.config.broker_session_timeout_ms).unwrap_or(i64::MAX);
        ticked > 0 && now.saturating_sub(ticked) > session / 2
    }

    /// Whether this broker has read back every `__consumer_offsets` partition the
    /// metadata image says it leads.
    pub(crate) fn serves_all_it_leads(&self, b: &Broker) -> bool {
        let image = b.metadata.image();
        let Some(t) = image.cluster.topic(OFFSETS_TOPIC) else { return true };
        let serving = self.serving.lock();
        t.partitions.iter().zip(0i32..).all(|(p, i)| p.leader != b.node_id || serving.get(&i) == Some(&p.leader_epoch))
    }

    /// Waits, up to `timeout`, until [`GroupCoordinator::serves_all_it_leads`]: a group
    /// request arriving while a partition this broker now leads is read back waits for
    /// it rather than be told COORDINATOR_LOAD_IN_PROGRESS, which older clients (sarama
    /// 1.22's JoinGroup) do not retry.
    pub(crate) async fn wait_until_served(&self, b: &Broker, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.served.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.serves_all_it_leads(b) {
                return;
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                warn!("{OFFSETS_TOPIC} partitions this broker leads were not read back within {timeout:?}: answering anyway");
                return;
            }
        }
    }

    /// Whether the groups of `__consumer_offsets` partition `index` were read back
    /// at leader epoch `epoch` (see `serving`).
    pub(crate) fn serves(&self, index: i32, epoch: i32) -> bool {
        self.serving.lock().get(&index) == Some(&epoch)
    }

    /// The coordinator of `group` (node id, host, port on `listener`, None: the
    /// first): the leader of its partition.
    pub(crate) fn coordinator_endpoint(&self, b: &Broker, group: &str, listener: Option<&str>) -> Option<(i32, String, i32)> {
        crate::internal_topic::leader_endpoint(b, OFFSETS_TOPIC, records::partition_for(group, self.partitions), listener)
    }

    /// Rebuilds groups and offsets by reading `__consumer_offsets` from the start:
    /// the partitions not already read by a take-over while the broker opened (a
    /// leadership applied from the metadata image). Returns the records this call read.
    pub(crate) fn load(&self, b: &Broker) -> Result<usize, BrokerError> {
        let Some(parts) = b.partitions.topic(OFFSETS_TOPIC) else { return Ok(0) };
        let mut entries = self.entries.lock();
        let mut loaded = self.loaded.lock();
        let now = now_ms();
        let mut records = 0usize;
        for p in parts.iter() {
            if loaded.contains(&p.index) {
                continue;
            }
            records += self.replay(p, &mut entries, now)?;
            loaded.insert(p.index);
            if p.replica.lock().role == crate::replica::Role::Leader {
                self.serving.lock().insert(p.index, p.leader_epoch());
                self.served.notify_waiters();
            }
        }
        let total = self.records_replayed();
        if total > 0 {
            info!(groups = entries.len(), records = total, "loaded consumer groups");
        }
        Ok(records)
    }

    /// Records read from `__consumer_offsets` by replays since the broker started.
    pub(crate) fn records_replayed(&self) -> usize {
        self.replayed.load(Ordering::Relaxed)
    }

    /// This broker now leads `p` (a `__consumer_offsets` partition): its groups are
    /// read again from the log, which followed the old coordinator's.
    pub(crate) fn take_over(&self, p: &Partition) {
        let mut entries = self.entries.lock();
        let mut loaded = self.loaded.lock();
        self.forget(&mut entries, p.index);
        match self.replay(p, &mut entries, now_ms()) {
            Ok(records) => {
                loaded.insert(p.index);
                self.serving.lock().insert(p.index, p.leader_epoch());
                self.served.notify_waiters();
                info!(partition = p.index, records, "became coordinator of the groups of {OFFSETS_TOPIC}-{}", p.index)
            }
            Err(e) => {
                loaded.remove(&p.index);
                self.serving.lock().remove(&p.index);
                warn!(partition = p.index, "loading groups failed: {e}")
            }
        }
    }

    /// This broker no longer leads `p`: its groups are another coordinator's now.
    pub(crate) fn hand_over(&self, p: &Partition) {
        let mut entries = self.entries.lock();
        self.forget(&mut entries, p.index);
        self.loaded.lock().remove(&p.index);
        self.serving.lock().remove(&p.index);
    }

    fn forget(&self, entries: &mut HashMap<String, GroupEntry>, partition: i32) {
        entries.retain(|group, _| records::partition_for(group, self.partitions) != partition);
    }

    /// Replays one `__consumer_offsets` partition up to its log end; returns the records read.
    fn replay(&self, p: &Partition, entries: &mut HashMap<String, GroupEntry>, now: i64) -> Result<usize, BrokerError> {
        let mut records = 0usize;
        crate::internal_topic::for_each_record(p, OFFSETS_TOPIC, |r| {
            if r.control {
                // A transaction marker: COMMIT (type 1) or ABORT (type 0).
                if let Some(commit) = r.key.as_ref().filter(|k| k.len() >= 4).map(|k| k[2..4] == [0, 1]) {
                    complete_pending(entries, |g| records::partition_for(g, self.partitions) == p.index, r.producer_id, commit);
                }
                return;
            }
            records += 1;
            let Some(key) = r.key.and_then(records::decode_key) else { return };
            let txn = r.transactional.then_some(r.producer_id);
            apply(entries, key, r.value, now, txn);
        })?;
        self.replayed.fetch_add(records, Ordering::Relaxed);
        Ok(records)
    }

    /// Appends records for `group` to its `__consumer_offsets` partition.
    pub(crate) fn persist(&self, b: &Broker, group: &str, records: &[(Bytes, Option<Bytes>)]) -> Result<Pending, i16> {
        let index = records::partition_for(group, self.partitions);
        let partition = b.partitions.get(OFFSETS_TOPIC, index).ok_or(ec::COORDINATOR_NOT_AVAILABLE)?;
        let batch = encode_batch(records, now_ms()).map_err(|_| ec::KAFKA_STORAGE_ERROR)?;
        let info = partition.append(&batch, now_ms()).map_err(|e| {
            warn!(group, "writing {OFFSETS_TOPIC} failed: {e}");
            ec::KAFKA_STORAGE_ERROR
        })?;
        b.after_append(&partition);
        Ok(Pending::new(partition, info.last_offset))
    }

    /// Appends offsets committed in a transaction of `producer` (id, epoch) to the
    /// group's `partition`, as verified under `token`: a transactional batch, which
    /// the transaction's marker commits or aborts. The producer's epoch is checked
    /// against the partition's; INVALID_TXN_STATE when the transaction ended after
    /// the verification.
    pub(crate) fn persist_txn(
        &self,
        b: &Broker,
        partition: &Arc<Partition>,
        ((producer_id, epoch), token): ((i64, i16), u64),
        records: &[KeyValue],
    ) -> Result<Pending, i16> {
        use crate::partition::PartitionError;
        let batch = encode_batch_of(records, now_ms(), Some((producer_id, epoch))).map_err(|_| ec::KAFKA_STORAGE_ERROR)?;
        let info = partition.append_verified(&batch, producer_id, token, now_ms()).map_err(|e| match e {
            PartitionError::Storage(karst_storage::StorageError::InvalidProducerEpoch { .. }) => ec::PRODUCER_FENCED,
            PartitionError::VerificationExpired(_) => ec::INVALID_TXN_STATE,
            PartitionError::Closed => ec::NOT_COORDINATOR,
            e => {
                warn!(partition = partition.index, "writing {OFFSETS_TOPIC} failed: {e}");
                ec::KAFKA_STORAGE_ERROR
            }
        })?;
        b.after_append(partition);
        Ok(Pending::new(partition.clone(), info.last_offset))
    }

    /// A transaction marker of `producer_id` reached `__consumer_offsets`-`partition`:
    /// the offsets its groups committed in that transaction count (commit) or are
    /// dropped (abort).
    pub(crate) fn complete_txn(&self, partition: i32, producer_id: i64, commit: bool) {
        let mut entries = self.entries.lock();
        complete_pending(&mut entries, |g| records::partition_for(g, self.partitions) == partition, producer_id, commit);
    }

    /// The group's metadata record, members included, written when an assignment
    /// becomes final and when the group becomes empty.
    pub(crate) fn group_record(g: &Group) -> (Bytes, Option<Bytes>) {
        (records::encode_key(&Key::Group { group: g.id.clone() }), Some(records::encode_group(&g.value())))
    }

    /// A consumer group's record: the whole group.
    pub(crate) fn consumer_record(g: &consumer::ConsumerGroup) -> (Bytes, Option<Bytes>) {
        (records::encode_key(&Key::Consumer { group: g.id.clone() }), Some(consumer::encode_record(g)))
    }

    /// A write of `group`'s record failed (or its outcome is unknown) while the change
    /// it carried stays in memory: the record is written again at the next tick, so
    /// that what a new coordinator reads back does not stay behind what members
    /// were told (their epochs, their assignments) until the group changes again.
    pub(crate) fn rewrite_later(&self, group: &str) {
        if let Some(e) = self.entries.lock().get_mut(group) {
            match e.consumer.as_mut() {
                Some(c) => c.dirty = true,
                None => e.group.record_due = true,
            }
        }
    }

    /// Periodic work: member expiry, rebalance timeouts, offset retention.
    pub(crate) fn tick(&self, b: &Broker) {
        let now = now_ms();
        let last = self.ticked_ms.swap(now, Ordering::Relaxed);
        if Self::stalled_since(b, last, now) {
            warn!(stalled_ms = now - last, "this broker did not run for a while: it coordinates no group until its metadata moves on");
            let session = i64::try_from(b.config.broker_session_timeout_ms).unwrap_or(i64::MAX);
            *self.distrust.lock() = Some((now.saturating_add(session), Arc::as_ptr(&b.metadata.image().cluster) as usize));
        }
        let mut writes: Vec<(String, Vec<KeyValue>)> = Vec::new();
        {
            let mut entries = self.entries.lock();
            for (id, e) in entries.iter_mut() {
                if let Some(c) = e.consumer.as_mut() {
                    let fenced = c.tick(now, self.consumer);
                    let mut recs = Vec::new();
                    if std::mem::take(&mut c.dirty) {
                        recs.push(Self::consumer_record(c));
                    }
                    if !fenced.is_empty() {
                        info!(group = %id, members = ?fenced, "fenced consumer group members: session or rebalance timeout");
                        if let Some(more) = e.maybe_downgrade(|| Self::topic_names(b), now, self.timing) {
                            recs = more;
                        }
                    }
                    if !recs.is_empty() {
                        writes.push((id.clone(), recs));
                    }
                } else {
                    e.group.tick(now, self.timing);
                    if std::mem::take(&mut e.group.record_due) {
                        writes.push((id.clone(), vec![Self::group_record(&e.group)]));
                    }
                }
                if e.is_empty() && self.offsets_retention_ms > 0 {
                    let expired: Vec<(String, i32)> = e
                        .offsets
                        .iter()
                        .filter(|(_, v)| now - v.commit_timestamp > self.offsets_retention_ms)
                        .map(|(k, _)| k.clone())
                        .collect();
                    if !expired.is_empty() {
                        let tombstones = expired
                            .iter()
                            .map(|(t, p)| (records::encode_key(&Key::Offset { group: id.clone(), topic: t.clone(), partition: *p }), None))
                            .collect();
                        for k in &expired {
                            e.offsets.remove(k);
                        }
                        writes.push((id.clone(), tombstones));
                    }
                }
            }
        }
        for (group, recs) in writes {
            if let Err(code) = self.persist(b, &group, &recs) {
                warn!(group, code, "writing the group or its offsets' expiry failed");
            }
        }
    }
}

/// What a client is told when writing its group's record failed, as Kafka's
/// `appendGroupMetadataErrorToResponseError`: retriable coordinator errors send it
/// back to FindCoordinator (a storage error takes the coordinator's partition offline).
pub(crate) fn write_error(code: i16) -> i16 {
    const INVALID_FETCH_SIZE: i16 = 4;
    match code {
        ec::UNKNOWN_TOPIC_OR_PARTITION | ec::NOT_ENOUGH_REPLICAS | ec::REQUEST_TIMED_OUT => ec::COORDINATOR_NOT_AVAILABLE,
        ec::NOT_LEADER_OR_FOLLOWER | ec::KAFKA_STORAGE_ERROR => ec::NOT_COORDINATOR,
        ec::MESSAGE_TOO_LARGE | ec::RECORD_LIST_TOO_LARGE | INVALID_FETCH_SIZE => ec::UNKNOWN_SERVER_ERROR,
        other => other,
    }
}

/// Commits or drops the offsets `producer_id` committed in its transaction to the
/// groups `here` selects.
fn complete_pending(entries: &mut HashMap<String, GroupEntry>, here: impl Fn(&str) -> bool, producer_id: i64, commit: bool) {
    for (id, e) in entries.iter_mut() {
        if !here(id) {
            continue;
        }
        if let Some(offsets) = e.pending_txn.remove(&producer_id) {
            if commit {
                e.offsets.extend(offsets);
            }
        }
    }
}

/// Replays one `__consumer_offsets` record into the in-memory state; `txn` is the
/// producer id of a transactional record.
fn apply(entries: &mut HashMap<String, GroupEntry>, key: Key, value: Option<Bytes>, now: i64, txn: Option<i64>) {
    match key {
        Key::Offset { group, topic, partition } => {
            let e = entries.entry(group.clone()).or_insert_with(|| GroupEntry::new(&group, now));
            match value.and_then(records::decode_offset) {
                Some(v) if txn.is_some() => {
                    e.pending_txn.entry(txn.unwrap_or(-1)).or_default().insert((topic, partition), v);
                }
                Some(v) => {
                    e.offsets.insert((topic, partition), v);
                }
                None => {
                    e.offsets.remove(&(topic, partition));
                }
            }
        }
        Key::Group { group } => match value.and_then(records::decode_group) {
            Some(v) => {
                // Written after the group's consumer record, it is a downgrade: the
                // group is classic again.
                let e = entries.entry(group.clone()).or_insert_with(|| GroupEntry::new(&group, now));
                e.consumer = None;
                e.group.restore(v, now);
            }
            None => {
                entries.remove(&group);
            }
        },
        Key::Consumer { group } => match value {
            Some(v) => match consumer::decode_record(v) {
                Some(g) => {
                    let e = entries.entry(group.clone()).or_insert_with(|| GroupEntry::new(&group, now));
                    e.group = Group::new(&group, now);
                    e.consumer = Some(g.restored(now));
                }
                None => warn!(group, "a consumer group record Karst cannot read: skipped"),
            },
            None => {
                if let Some(e) = entries.get_mut(&group) {
                    e.consumer = None;
                }
            }
        },
    }
}

/// A committed offset as an OffsetCommit or TxnOffsetCommit gives it, or its
/// partition's error: UNKNOWN_TOPIC_OR_PARTITION outside the topic's `partitions`,
/// OFFSET_METADATA_TOO_LARGE beyond `max_metadata` bytes.
pub(crate) fn offset_value(
    partitions: i32,
    partition: i32,
    metadata: Option<&str>,
    max_metadata: usize,
    offset: i64,
    leader_epoch: i32,
    now: i64,
) -> Result<OffsetValue, i16> {
    let metadata = metadata.unwrap_or_default().to_string();
    if !(0..partitions).contains(&partition) {
        Err(ec::UNKNOWN_TOPIC_OR_PARTITION)
    } else if metadata.len() > max_metadata {
        Err(ec::OFFSET_METADATA_TOO_LARGE)
    } else {
        Ok(OffsetValue { offset, leader_epoch, metadata, commit_timestamp: now })
    }
}

/// Topics a `consumer`-protocol member subscribed to, from its join metadata.
pub(crate) fn subscribed_topics(metadata: &Bytes) -> Vec<String> {
    let mut b = metadata.clone();
    let mut out = Vec::new();
    if b.remaining() < 6 {
        return out;
    }
    let _version = b.get_i16();
    let n = b.get_i32();
    for _ in 0..n.max(0) {
        if b.remaining() < 2 {
            break;
        }
        let len = b.get_i16();
        let Ok(len) = usize::try_from(len) else { break };
        if b.remaining() < len {
            break;
        }
        if let Ok(s) = String::from_utf8(b.split_to(len).to_vec()) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;

    /// Opening a broker reads each `__consumer_offsets` partition once, whether a
    /// take-over (a leadership applied from the metadata image) or the load read it.
    #[test]
    fn opening_a_broker_replays_each_offsets_partition_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = BrokerConfig { data_dir: dir.path().to_path_buf(), offsets_topic_num_partitions: 3, ..Default::default() };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let _in_runtime = rt.enter();
        let b = Broker::open(config.clone()).expect("open");
        rt.block_on(b.groups.ensure_topic(&b)).expect("offsets topic");
        let commits = 10;
        for i in 0..commits {
            let group = format!("g{}", i % 4);
            let key = records::encode_key(&Key::Offset { group: group.clone(), topic: "t".into(), partition: 0 });
            let value = OffsetValue { offset: i, leader_epoch: -1, metadata: String::new(), commit_timestamp: now_ms() };
            let pending = b.groups.persist(&b, &group, &[(key, Some(records::encode_offset(&value)))]).expect("persist");
            assert!(rt.block_on(pending.durable()), "commit {i} durable");
        }
        b.shutdown();
        drop(b);

        let b = Broker::open(config).expect("reopen");
        assert_eq!(b.groups.records_replayed(), commits as usize, "every record read once");
        assert_eq!(b.groups.load(&b).expect("load"), 0, "nothing left to read");
        let g1 = b.groups.entries_snapshot().into_iter().find(|(g, _)| g == "g1").map(|(_, o)| o);
        assert_eq!(g1, Some(vec![("t".to_string(), 0, 9)]), "g1's last commit");
        b.shutdown();
    }
}
