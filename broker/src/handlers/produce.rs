use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, TopicName};
use karst_protocol::error_codes as ec;
use karst_protocol::message_set::{legacy_magic, up_convert, UpConvertLimits, MAGIC_V0};
use karst_protocol::recompress::{recompress_produce, Recompression};
use karst_protocol::records::{keyless_record_message, keyless_records, record_errors_message, validate_produce};
use karst_protocol::timestamps::{refuse_log_append_time_batches, settle_timestamps, TimestampLimits};
use karst_storage::{StorageError, TimestampType};
use tracing::{debug, warn};
use uuid::Uuid;

use super::leader_hint::{wants_hint, LeaderHints};
use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::group::OFFSETS_TOPIC;
use crate::partition::{Partition, PartitionError};
use crate::security::{acl, authz};

/// Kafka's "no timestamp", also Produce's `log_append_time_ms` for a CreateTime topic.
const NO_TIMESTAMP: i64 = karst_batch::NO_TIMESTAMP;

struct Failure {
    code: i16,
    message: Option<String>,
    /// Produce v8+: the records that caused it, by index in their batch (Kafka's `RecordError`).
    record_errors: Vec<(i32, String)>,
}

impl Failure {
    fn code(code: i16) -> Failure {
        Failure { code, message: None, record_errors: Vec::new() }
    }
    fn with(code: i16, message: String) -> Failure {
        Failure { code, message: Some(message), record_errors: Vec::new() }
    }
}

/// What one Produce request says of all its partitions.
#[derive(Debug, Clone)]
struct Request {
    version: i16,
    transactional_id: Option<Arc<str>>,
    now: i64,
    acks_all: bool,
    /// Produce v12+: what the transaction coordinator said of the partitions added.
    txn_adds: Arc<TxnAdds>,
}

/// Transactions v2 (KIP-890 part 2, Produce v12+): a transactional batch adds its
/// partition to the producer's transaction. Per partition added: the verification
/// token taken before asking, or the coordinator's refusal.
pub(crate) type TxnAdds = HashMap<(String, i32), Result<u64, i16>>;

/// A partition of a Produce v12+ request to add to its producer's transaction.
pub(crate) struct TxnAddition {
    topic: String,
    partition: Arc<Partition>,
    producer_id: i64,
    epoch: i16,
}

/// The partitions of a Produce v12+ request whose transactional batch needs its
/// partition added: those where the producer has no transaction open at its
/// epoch (the first batch of each partition in each transaction).
pub(crate) fn txn_additions(b: &Broker, req: &ProduceRequest, version: i16) -> Vec<TxnAddition> {
    if version < 12 || req.transactional_id.is_none() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for topic in &req.topic_data {
        let Ok(name) = resolve(b, &topic.name, topic.topic_id, version) else { continue };
        for pd in &topic.partition_data {
            let Some(h) = pd.records.as_deref().and_then(|r| karst_batch::BatchHeader::parse(r).ok()) else { continue };
            if !h.is_transactional() || !h.has_producer_id() {
                continue;
            }
            let Some(partition) = b.partitions.get(&name, pd.index) else { continue };
            if !partition.in_transaction(h.producer_id, h.producer_epoch) {
                out.push(TxnAddition { topic: name.clone(), partition, producer_id: h.producer_id, epoch: h.producer_epoch });
            }
        }
    }
    out
}

/// Adds the partitions to `transactional_id`'s transaction with its coordinator,
/// each under a verification token taken before asking (a marker arriving
/// meanwhile voids it).
pub(crate) async fn add_to_txn(b: &Arc<Broker>, transactional_id: &str, additions: Vec<TxnAddition>) -> TxnAdds {
    // (topic, partition, token) by (producer id, epoch).
    type Tokens = Vec<(String, i32, u64)>;
    let mut by_producer: BTreeMap<(i64, i16), Tokens> = BTreeMap::new();
    for a in additions {
        let token = a.partition.start_verification(a.producer_id, a.epoch);
        by_producer.entry((a.producer_id, a.epoch)).or_default().push((a.topic, a.partition.index, token));
    }
    let mut out = TxnAdds::new();
    for ((pid, epoch), parts) in by_producer {
        let tps: Vec<(String, i32)> = parts.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        let codes = crate::txn::verify::add(b, transactional_id, pid, epoch, &tps).await;
        for ((topic, index, token), code) in parts.into_iter().zip(codes) {
            if code != ec::NONE {
                debug!(transactional_id, topic, partition = index, pid, epoch, code, "adding a partition to a transaction refused");
            }
            out.insert((topic, index), if code == ec::NONE { Ok(token) } else { Err(code) });
        }
    }
    out
}

/// A refusal from the transaction coordinator, as Kafka tells the producer:
/// retriable coordinator states as NOT_ENOUGH_REPLICAS (which every client
/// retries without a metadata refresh), a fenced producer as INVALID_PRODUCER_EPOCH.
fn add_refused(code: i16) -> Failure {
    let told = match code {
        ec::CONCURRENT_TRANSACTIONS
        | ec::NETWORK_EXCEPTION
        | ec::COORDINATOR_LOAD_IN_PROGRESS
        | ec::COORDINATOR_NOT_AVAILABLE
        | ec::NOT_COORDINATOR => ec::NOT_ENOUGH_REPLICAS,
        ec::PRODUCER_FENCED => ec::INVALID_PRODUCER_EPOCH,
        c => c,
    };
    Failure::with(told, format!("the partition could not be added to the transaction (error {code})"))
}

/// A partition index and what its append did.
type PartitionOutcome = (i32, Result<Appended, Failure>);

struct Appended {
    partition: Arc<Partition>,
    base_offset: i64,
    last_offset: i64,
    log_start_offset: i64,
    /// acks=all: the in-sync replicas the answer needs when the batch is committed.
    min_insync: Option<i32>,
    /// The leadership the batch was appended under.
    leader_epoch: i32,
    /// Produce v2+'s `log_append_time_ms`: the time a LogAppendTime topic stamped
    /// (the original's for a retried batch, as Kafka answers any retry), else -1.
    log_append_time: i64,
}

fn storage_failure(e: PartitionError) -> Failure {
    match e {
        PartitionError::Storage(StorageError::OutOfOrderSequence { .. }) => Failure::with(ec::OUT_OF_ORDER_SEQUENCE_NUMBER, e.to_string()),
        PartitionError::Storage(StorageError::InvalidProducerEpoch { .. }) => Failure::with(ec::INVALID_PRODUCER_EPOCH, e.to_string()),
        PartitionError::Storage(StorageError::Batch(_)) => Failure::with(ec::CORRUPT_MESSAGE, e.to_string()),
        PartitionError::Closed => Failure::code(ec::NOT_LEADER_OR_FOLLOWER),
        PartitionError::VerificationExpired(pid) => {
            Failure::with(ec::INVALID_TXN_STATE, format!("producer {pid} has no transaction open with this partition in it"))
        }
        other => {
            warn!("append failed: {other}");
            Failure::with(ec::KAFKA_STORAGE_ERROR, other.to_string())
        }
    }
}

/// Appends one partition's records; on a retriable refusal of an idempotent batch,
/// remembers it (see [`crate::refused_batches`]).
fn append(b: &Arc<Broker>, topic: &str, index: i32, records: Option<Bytes>, req: Request) -> Result<Appended, Failure> {
    if topic == OFFSETS_TOPIC || topic == crate::txn::TXN_TOPIC {
        return Err(Failure::with(ec::INVALID_TOPIC_EXCEPTION, format!("{topic} is internal: clients cannot write to it")));
    }
    let records = records.unwrap_or_default();
    let partition = b.partitions.get(topic, index);
    let r = append_to(b, topic, index, partition.as_ref(), records.clone(), req);
    if let (Err(f), Some(p)) = (&r, &partition) {
        if RETRIABLE_REFUSALS.contains(&f.code) {
            if let Some((pid, epoch, seq)) = producer_of(&records) {
                p.refused.lock().note(pid, epoch, seq, f.code, Instant::now());
            }
        }
    }
    r
}

/// KIP-890's defence against hanging transactions: a transactional batch is taken
/// only while its producer's transaction is open with this partition in it, as the
/// transaction coordinator knows it. A batch that arrives after its transaction
/// ended (a zombie's, or one delayed in the network) would otherwise open a
/// transaction no marker ever closes, and hold the last stable offset back for
/// good. Checked where this broker coordinates the transactional id; elsewhere
/// the batch is taken unchecked, as before KIP-890.
fn verify_in_transaction(b: &Broker, transactional_id: Option<&str>, records: &[u8], topic: &str, index: i32) -> Result<(), Failure> {
    let Some(id) = transactional_id else {
        return Err(Failure::with(ec::TRANSACTIONAL_ID_NOT_FOUND, "transactional records need the request's transactional id".into()));
    };
    let Some((pid, epoch, _)) = producer_of(records) else { return Ok(()) };
    b.txns.verify(b, id, pid, epoch, topic, index).map_err(|(code, why)| Failure::with(code, why))
}

/// How long after taking up a leadership a sequence gap from a producer that has not
/// written under it is put down to batches in flight to the previous leader
/// (answered NOT_LEADER_OR_FOLLOWER, retriable) rather than OUT_OF_ORDER_SEQUENCE_NUMBER,
/// which librdkafka meets by bumping its epoch and storing unacknowledged batches again.
const NEW_LEADERSHIP_MS: i64 = 30_000;

/// Refusals after which a producer sends the same batch again, in the same epoch.
const RETRIABLE_REFUSALS: [i16; 5] = [
    ec::NOT_LEADER_OR_FOLLOWER,
    ec::LEADER_NOT_AVAILABLE,
    ec::NOT_ENOUGH_REPLICAS,
    ec::KAFKA_STORAGE_ERROR,
    ec::UNKNOWN_TOPIC_OR_PARTITION,
];

/// The idempotent producer of the first batch: (producer id, epoch, first sequence).
fn producer_of(records: &[u8]) -> Option<(i64, i16, i32)> {
    let h = karst_batch::BatchHeader::parse(records).ok()?;
    h.has_producer_id().then_some((h.producer_id, h.producer_epoch, h.base_sequence))
}

fn append_to(
    b: &Arc<Broker>,
    topic: &str,
    index: i32,
    partition: Option<&Arc<Partition>>,
    records: Bytes,
    req: Request,
) -> Result<Appended, Failure> {
    let Request { version, transactional_id, now, acks_all, txn_adds } = req;
    b.check_leader(topic, index).map_err(Failure::code)?;
    let partition = partition.ok_or(Failure::code(ec::UNKNOWN_TOPIC_OR_PARTITION))?.clone();
    let config = partition.config();
    let max = config.max_message_bytes;
    if acks_all {
        let r = partition.replica.lock();
        if r.below_min_isr(config.min_insync_replicas) {
            return Err(Failure::with(
                ec::NOT_ENOUGH_REPLICAS,
                format!("{} in-sync replica(s), min.insync.replicas is {}", r.isr_size(), config.min_insync_replicas),
            ));
        }
    }
    // Produce v0-v2 may carry message format v0/v1: one v2 batch is stored instead,
    // as Kafka's log validator converts it. Magic 0 has no timestamps to check.
    let (records, timestamps_checked) = match legacy_magic(&records).filter(|_| version <= 2) {
        None => (records, true),
        Some(_) => {
            let limits = UpConvertLimits { max_message_bytes: max, max_decompressed: b.config.socket_request_max_bytes };
            let up = up_convert(&records, &limits).map_err(|e| Failure::with(e.error_code(), e.message()))?;
            if up.claims_log_append_time && config.log.timestamp_type == TimestampType::LogAppendTime {
                return Err(Failure::with(ec::INVALID_TIMESTAMP, "producers must not set the timestamp type to LogAppendTime".into()));
            }
            if up.dropped_trailing_bytes > 0 {
                debug!(
                    topic,
                    partition = index,
                    bytes = up.dropped_trailing_bytes,
                    "dropped a partial message at the end of a message set"
                );
            }
            if up.batch.is_empty() {
                // No whole message: Kafka appends nothing and answers NONE, offset -1.
                let leader_epoch = partition.leader_epoch();
                let log_start_offset = partition.log_start_offset();
                return Ok(Appended {
                    partition,
                    base_offset: -1,
                    last_offset: -1,
                    log_start_offset,
                    min_insync: None,
                    leader_epoch,
                    log_append_time: NO_TIMESTAMP,
                });
            }
            crate::metrics::up_converted(&partition.topic, u64::try_from(up.record_count).unwrap_or(0));
            (Bytes::from(up.batch), up.magic != Some(MAGIC_V0))
        }
    };
    let summary = validate_produce(&records, max).map_err(|e| Failure::with(e.error_code(), e.message()))?;
    // Kafka's clients from Produce v11 know TRANSACTION_ABORTABLE: a batch outside
    // its transaction aborts the transaction instead of failing the producer.
    let abortable = |f: Failure| match f.code {
        ec::INVALID_TXN_STATE if version > 10 => Failure { code: ec::TRANSACTION_ABORTABLE, ..f },
        _ => f,
    };
    // Transactions v2: the batch goes in under the guard its partition's add took.
    let mut in_txn = None;
    if summary.transactional {
        if version >= 12 {
            if transactional_id.is_none() {
                return Err(Failure::with(
                    ec::TRANSACTIONAL_ID_NOT_FOUND,
                    "transactional records need the request's transactional id".into(),
                ));
            }
            let token = match txn_adds.get(&(topic.to_string(), index)) {
                Some(Err(code)) => return Err(abortable(add_refused(*code))),
                Some(Ok(token)) => Some(*token),
                None => None,
            };
            in_txn = producer_of(&records).map(|(pid, epoch, _)| (pid, epoch, token));
        } else {
            verify_in_transaction(b, transactional_id.as_deref(), &records, topic, index).map_err(abortable)?;
        }
    }
    if config.log.cleanup_policy.compact {
        // The cleaner keeps the latest record per key: a keyless record has no
        // place in a compacted log, and Kafka refuses the whole batch for it.
        let keyless =
            keyless_records(&records, b.config.socket_request_max_bytes).map_err(|e| Failure::with(e.error_code(), e.message()))?;
        if let Some((_, indexes)) = keyless {
            let record_errors: Vec<(i32, String)> = indexes.into_iter().map(|i| (i, keyless_record_message(topic, index))).collect();
            return Err(Failure { code: ec::INVALID_RECORD, message: Some(record_errors_message(&record_errors)), record_errors });
        }
    }
    let records = match config.log.timestamp_type {
        // The log stamps `now` into every batch as it writes it (storage's append).
        TimestampType::LogAppendTime => {
            refuse_log_append_time_batches(&records).map_err(|e| Failure::with(e.error_code(), e.message()))?;
            records
        }
        TimestampType::CreateTime => {
            let limits = TimestampLimits {
                now,
                before_max_ms: if timestamps_checked { config.timestamp_before_max_ms } else { i64::MAX },
                after_max_ms: if timestamps_checked { config.timestamp_after_max_ms } else { i64::MAX },
                max_decompressed: b.config.socket_request_max_bytes,
            };
            settle_timestamps(records, &limits).map_err(|e| Failure::with(e.error_code(), e.message()))?
        }
    };
    let received_bytes = records.len();
    let records = match Recompression::of(config.compression, &config.compression_levels, max, b.config.socket_request_max_bytes) {
        Some(r) => recompress_produce(records, &r).map_err(|e| Failure::with(e.error_code(), e.message()))?,
        None => records,
    };
    // No copy: offsets are assigned as the batches are written to the segment.
    let appended = match in_txn {
        Some((pid, epoch, token)) => partition.append_in_txn(&records, pid, epoch, token, now),
        None => partition.append_on_runtime(&records, now),
    };
    let info = appended.map_err(|e| {
        debug!(topic, partition = index, "append refused: {e}");
        if let PartitionError::Storage(StorageError::OutOfOrderSequence { producer_id, expected, got, last_offset }) = &e {
            let (producer_id, expected, got) = (*producer_id, *expected, *got);
            // A batch pipelined behind one refused here: answer as that one was.
            let explained = producer_of(&records)
                .filter(|(pid, _, _)| *pid == producer_id)
                .and_then(|(pid, epoch, _)| partition.refused.lock().explain(pid, epoch, expected, Instant::now()));
            if let Some(code) = explained {
                return Failure::with(
                    code,
                    format!("sequence {got} follows the batch at {expected}, refused with error {code}: retry that one first"),
                );
            }
            // The batch at `expected` may have gone to the previous leader and be
            // refused there: the producer retries it here, then this one.
            if partition.predates_new_leadership(*last_offset, now, NEW_LEADERSHIP_MS) {
                return Failure::with(
                    ec::NOT_LEADER_OR_FOLLOWER,
                    format!("sequence {got} skips {expected}, and this producer has not written here since the leadership moved: retry what went to the previous leader first"),
                );
            }
        }
        abortable(storage_failure(e))
    })?;
    if info.duplicate {
        debug!(
            topic,
            partition = index,
            base_offset = info.base_offset,
            last_offset = info.last_offset,
            "retried batch: answered with the original's offsets"
        );
    } else {
        crate::metrics::produced(&partition.topic, summary.record_count, received_bytes);
        b.after_append(&partition);
    }
    let leader_epoch = partition.leader_epoch();
    let log_append_time = match config.log.timestamp_type {
        _ if info.duplicate => info.max_timestamp,
        TimestampType::LogAppendTime => info.max_timestamp,
        TimestampType::CreateTime => NO_TIMESTAMP,
    };
    Ok(Appended {
        partition,
        base_offset: info.base_offset,
        last_offset: info.last_offset,
        log_start_offset: info.log_start_offset,
        min_insync: acks_all.then_some(config.min_insync_replicas),
        leader_epoch,
        log_append_time,
    })
}

/// How a wait for a batch to commit ended.
enum Waited {
    Committed,
    /// The replica went offline first: its high watermark never moves again, so the
    /// batch is never acknowledged.
    Offline(Arc<str>),
    /// The leadership it was appended under ended before it committed.
    NotLeader,
    /// The partition is gone.
    Gone,
}

/// Waits until the batch ending at `last_offset` is acknowledged: for acks=all below
/// the high watermark, for acks=1 durable on this broker (Kafka's acks=1 is the
/// leader's own append; Karst adds the fsync when it fsyncs before acknowledging).
///
/// As Kafka's produce purgatory: a batch waits only while this broker still leads at
/// the epoch it was appended under. A leadership that moved on answers
/// NOT_LEADER_OR_FOLLOWER at once: the batch was not committed, and the new leader may
/// not have it (the former leader truncates it). Left waiting, the request outlives the
/// leadership and ends in a timeout or a lost connection, which an idempotent producer
/// must count as possibly stored; it then sends its next batch to the new leader past
/// the gap, gets OUT_OF_ORDER_SEQUENCE_NUMBER, and librdkafka answers that by bumping its
/// epoch and renumbering every batch it has not had acknowledged, on every partition:
/// batches that were stored are stored again.
async fn acknowledged(p: &Partition, last_offset: i64, epoch: i32, acks_all: bool) -> Waited {
    let (mut local, mut offline) = (p.subscribe_local_end(), p.subscribe_offline());
    let reached = |p: &Partition| if acks_all { p.high_watermark() > last_offset } else { p.local_end() > last_offset };
    let ended = tokio::select! {
        // A leadership change wakes the high watermark's waiters (`wake_waiters`).
        r = p.hw_past_or_deposed(if acks_all { last_offset } else { i64::MAX }, epoch) => r.is_err(),
        r = local.wait_for(|end| !acks_all && *end > last_offset) => r.is_err(),
        r = offline.wait_for(Option::is_some) => r.is_err(),
    };
    if ended {
        return Waited::Gone;
    }
    // What was durable before the failure stays acknowledged; a leadership that
    // ended does not: its follower, truncated, learns a high watermark past the
    // same offsets from the new leader, with other batches in them.
    if reached(p) && (p.leads_at(epoch) || p.offline_reason().is_some()) {
        return Waited::Committed;
    }
    match p.offline_reason() {
        Some(why) => Waited::Offline(why),
        None => Waited::NotLeader,
    }
}

/// A topic of the request as the response names it (by name before v13, by id from
/// v13, KIP-516), and its local name where the broker knows it.
struct TopicRef {
    name: TopicName,
    id: Uuid,
    local: Option<String>,
}

/// Where a response's KIP-951 leader hints come from (Produce v10+).
struct HintSource {
    broker: Arc<Broker>,
    /// The listener the request arrived on: the hints' endpoints are on it.
    listener: Option<Arc<str>>,
}

/// The synchronous half of a Produce: validate and append every partition, in
/// request order, before the next request on the connection is looked at (so an
/// idempotent producer's pipelined batches land in sequence order).
pub(crate) struct InFlight {
    acks: i16,
    version: i16,
    timeout_ms: i32,
    results: Vec<(TopicRef, Vec<PartitionOutcome>)>,
    hints: Option<HintSource>,
}

/// The local name of a requested topic: v13+ names it by id (UNKNOWN_TOPIC_ID for an
/// id the metadata does not have, as Kafka answers), older versions by name.
fn resolve(b: &Broker, name: &TopicName, id: Uuid, version: i16) -> Result<String, i16> {
    if version >= 13 {
        b.metadata.image().topic_by_id(id).map(|t| t.name.clone()).ok_or(ec::UNKNOWN_TOPIC_ID)
    } else {
        Ok(name.to_string())
    }
}

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

pub(crate) fn start(b: &Arc<Broker>, req: ProduceRequest, version: i16, txn_adds: TxnAdds) -> InFlight {
    let acks = req.acks;
    let request = Request {
        version,
        transactional_id: req.transactional_id.as_ref().map(|t| Arc::from(t.as_str())),
        now: now_ms(),
        acks_all: acks == -1,
        txn_adds: Arc::new(txn_adds),
    };
    let mut results = Vec::with_capacity(req.topic_data.len());
    let txn_refused = request.transactional_id.as_deref().is_some_and(|id| !authz::allowed(b, acl::TRANSACTIONAL_ID, id, acl::WRITE));
    for topic in req.topic_data {
        let local = match resolve(b, &topic.name, topic.topic_id, version) {
            _ if txn_refused => Err(TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            Ok(name) if !authz::allowed(b, acl::TOPIC, &name, acl::WRITE) => Err(TOPIC_AUTHORIZATION_FAILED),
            other => other,
        };
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let r = match &local {
                _ if !matches!(acks, -1..=1) => Err(Failure::code(ec::INVALID_REQUIRED_ACKS)),
                Err(code) => Err(Failure::code(*code)),
                Ok(name) => append(b, name, pd.index, pd.records, request.clone()),
            };
            if let Err(f) = &r {
                debug!(topic = topic.name.as_str(), topic_id = %topic.topic_id, partition = pd.index, code = f.code, message = ?f.message, "produce refused");
            }
            parts.push((pd.index, r));
        }
        results.push((TopicRef { name: topic.name, id: topic.topic_id, local: local.ok() }, parts));
    }
    let hints = (version >= 10 && !cfg!(feature = "bench-no-leader-hints"))
        .then(|| HintSource { broker: b.clone(), listener: crate::server::current_listener() });
    InFlight { acks, version, timeout_ms: req.timeout_ms, results, hints }
}

/// KIP-951: a partition refused with NOT_LEADER_OR_FOLLOWER names the leader this
/// broker knows, and the response carries that leader's endpoint.
fn add_leader_hints(source: &HintSource, responses: &mut [TopicProduceResponse], topics: &[Option<String>]) -> Vec<NodeEndpoint> {
    let mut hints = LeaderHints::new(&source.broker, source.listener.clone());
    for (t, local) in responses.iter_mut().zip(topics) {
        let Some(name) = local else { continue };
        for p in t.partition_responses.iter_mut().filter(|p| wants_hint(p.error_code)) {
            let leader = hints.leader(name, p.index);
            p.current_leader =
                LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader.leader_id)).with_leader_epoch(leader.leader_epoch);
        }
    }
    hints
        .endpoints()
        .map(|e| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(e.node_id))
                .with_host(str_bytes(e.host.clone()))
                .with_port(e.port)
                .with_rack(e.rack.clone().map(str_bytes))
        })
        .collect()
}

impl InFlight {
    pub(crate) fn wants_response(&self) -> bool {
        self.acks != 0
    }

    /// The asynchronous half: wait until each append is durable (and so visible).
    pub(crate) async fn finish(self) -> ProduceResponse {
        let _waiting = (self.acks == -1).then(crate::metrics::produce_waiting);
        let version = self.version;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.timeout_ms.max(0) as u64);
        let mut responses = Vec::with_capacity(self.results.len());
        let mut locals = Vec::with_capacity(self.results.len());
        for (topic, parts) in self.results {
            let name = &topic.name;
            let mut prs = Vec::with_capacity(parts.len());
            for (index, r) in parts {
                let pr = PartitionProduceResponse::default().with_index(index);
                let pr = match r {
                    Ok(a) => {
                        let durable = tokio::time::timeout_at(
                            deadline,
                            acknowledged(&a.partition, a.last_offset, a.leader_epoch, a.min_insync.is_some()),
                        )
                        .await;
                        // The ISR may have shrunk below min.insync.replicas while this
                        // batch waited: then fewer copies exist than were promised.
                        let below_min = a.min_insync.is_some_and(|m| a.partition.replica.lock().below_min_isr(m));
                        match durable {
                            Ok(Waited::NotLeader) => pr.with_error_code(ec::NOT_LEADER_OR_FOLLOWER).with_base_offset(-1),
                            Ok(Waited::Committed) if below_min => {
                                pr.with_error_code(ec::NOT_ENOUGH_REPLICAS_AFTER_APPEND).with_base_offset(-1)
                            }
                            Ok(Waited::Committed) => {
                                let pr = pr.with_base_offset(a.base_offset).with_log_append_time_ms(a.log_append_time);
                                if version >= 5 {
                                    pr.with_log_start_offset(a.log_start_offset)
                                } else {
                                    pr
                                }
                            }
                            Ok(Waited::Offline(why)) => {
                                let pr = pr.with_error_code(ec::KAFKA_STORAGE_ERROR).with_base_offset(-1);
                                if version >= 8 {
                                    pr.with_error_message(Some(str_bytes(format!("partition offline on this broker: {why}"))))
                                } else {
                                    pr
                                }
                            }
                            _ => {
                                debug!(topic = name.as_str(), index, "produce timed out waiting for fsync");
                                pr.with_error_code(ec::REQUEST_TIMED_OUT).with_base_offset(-1)
                            }
                        }
                    }
                    Err(f) => {
                        let pr = pr.with_error_code(f.code).with_base_offset(-1);
                        if version >= 8 {
                            let record_errors = f
                                .record_errors
                                .into_iter()
                                .map(|(i, m)| {
                                    BatchIndexAndErrorMessage::default()
                                        .with_batch_index(i)
                                        .with_batch_index_error_message(Some(str_bytes(m)))
                                })
                                .collect();
                            pr.with_error_message(f.message.map(str_bytes)).with_record_errors(record_errors)
                        } else {
                            pr
                        }
                    }
                };
                prs.push(pr);
            }
            responses.push(TopicProduceResponse::default().with_name(topic.name).with_topic_id(topic.id).with_partition_responses(prs));
            locals.push(topic.local);
        }
        let node_endpoints = match &self.hints {
            Some(source) => add_leader_hints(source, &mut responses, &locals),
            None => Vec::new(),
        };
        ProduceResponse::default().with_responses(responses).with_node_endpoints(node_endpoints)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::flusher::Flusher;
    use crate::topic_config;

    fn appended(p: &Arc<Partition>, info: karst_storage::AppendInfo) -> Appended {
        Appended {
            partition: p.clone(),
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_start_offset: info.log_start_offset,
            min_insync: Some(1),
            leader_epoch: p.leader_epoch(),
            log_append_time: NO_TIMESTAMP,
        }
    }

    /// acks=all producers wait on the high watermark; an fsync fails under them.
    #[test]
    fn a_failed_fsync_answers_waiting_producers_kafka_storage_error_and_the_high_watermark_stays_below_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = topic_config::effective(&BrokerConfig::default(), &BTreeMap::new());
        let p = Partition::open(Arc::from("t"), 0, 1, dir.path().join("t-0"), config).expect("open");
        let batch = karst_batch::build_batch(0, 2, 1_000, b"value");
        let flusher = Flusher::start(1);
        let durable = appended(&p, p.append(&batch, 0).expect("append"));
        let spec = dir.path().to_string_lossy();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        rt.block_on(async {
            flusher.enqueue(&p);
            tokio::time::timeout(Duration::from_secs(30), p.subscribe().wait_for(|hw| *hw == 2)).await.expect("in time").expect("open");
        });
        let lost = appended(&p, p.append(&batch, 0).expect("append"));
        karst_storage::faults::configure(&format!("fsync=eio@{spec}")).expect("fault on");
        let in_flight = InFlight {
            acks: -1,
            version: 9,
            timeout_ms: 60_000,
            results: vec![(
                TopicRef { name: TopicName(StrBytes::from_static_str("t")), id: Uuid::nil(), local: Some("t".into()) },
                vec![(0, Ok(durable)), (0, Ok(lost))],
            )],
            hints: None,
        };
        flusher.enqueue(&p);
        let response = rt.block_on(in_flight.finish());
        let answers = &response.responses[0].partition_responses;
        assert_eq!((answers[0].error_code, answers[0].base_offset), (ec::NONE, 0), "synced before the failure: acknowledged");
        assert_eq!((answers[1].error_code, answers[1].base_offset), (ec::KAFKA_STORAGE_ERROR, -1), "never acknowledged");
        assert!(answers[1].error_message.as_ref().is_some_and(|m| m.contains("fsync failed")), "{:?}", answers[1].error_message);
        assert!(p.offline_reason().is_some());

        // The disk answers again; a retried fsync could now claim the lost pages durable.
        karst_storage::faults::configure(&format!("fsync=off@{spec}")).expect("fault off");
        flusher.sync_batch(vec![p.clone()]);
        assert_eq!(p.high_watermark(), 2, "the high watermark never passes the failed data");
        assert!(matches!(p.append(&batch, 0), Err(PartitionError::Offline(_))), "no more appends");
        assert!(matches!(p.read(0, 1 << 20, true), Err(PartitionError::Offline(_))), "fetches answer KAFKA_STORAGE_ERROR");
        flusher.stop();
    }

    /// EIO on a write: that append fails and the partition goes offline with it.
    #[test]
    fn eio_on_a_write_answers_kafka_storage_error_and_takes_the_partition_offline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = topic_config::effective(&BrokerConfig::default(), &BTreeMap::new());
        let p = Partition::open(Arc::from("t"), 0, 1, dir.path().join("t-0"), config).expect("open");
        let batch = karst_batch::build_batch(0, 2, 1_000, b"value");
        p.append(&batch, 0).expect("append");
        let spec = dir.path().to_string_lossy();
        karst_storage::faults::configure(&format!("write=eio@{spec}")).expect("fault on");
        let failure = storage_failure(p.append(&batch, 0).expect_err("write fails"));
        karst_storage::faults::configure(&format!("write=off@{spec}")).expect("fault off");
        assert_eq!(failure.code, ec::KAFKA_STORAGE_ERROR);
        assert!(p.offline_reason().is_some_and(|why| why.contains("write failed")));
        assert_eq!(p.log_end_offset(), 2, "log end unchanged");
        assert_eq!(storage_failure(p.append(&batch, 0).expect_err("offline")).code, ec::KAFKA_STORAGE_ERROR);
        assert!(p.flush_target().is_none(), "nothing left to sync");
    }

    /// A full disk refuses the append with a clear error, and only that append.
    #[test]
    fn enospc_answers_kafka_storage_error_and_the_partition_stays_writable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = topic_config::effective(&BrokerConfig::default(), &BTreeMap::new());
        let p = Partition::open(Arc::from("t"), 0, 1, dir.path().join("t-0"), config).expect("open");
        let batch = karst_batch::build_batch(0, 2, 1_000, b"value");
        p.append(&batch, 0).expect("append");
        p.set_local_end(p.log_end_offset());
        let spec = dir.path().to_string_lossy();
        karst_storage::faults::configure(&format!("write=enospc@{spec}")).expect("fault on");
        let failure = storage_failure(p.append(&batch, 0).expect_err("disk full"));
        assert_eq!(failure.code, ec::KAFKA_STORAGE_ERROR);
        assert!(failure.message.as_ref().is_some_and(|m| m.contains("No space left")), "{:?}", failure.message);
        assert!(p.offline_reason().is_none(), "still online");
        assert_eq!((p.log_end_offset(), p.high_watermark()), (2, 2));
        assert!(!p.read(0, 1 << 20, true).expect("reads served").bytes.is_empty());
        karst_storage::faults::configure(&format!("write=off@{spec}")).expect("fault off");
        assert_eq!(p.append(&batch, 0).expect("space returned").base_offset, 2);
    }
}
