//! The transaction APIs: InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and TxnOffsetCommit from producers,
//! WriteTxnMarkers from coordinators, and DescribeTransactions and
//! ListTransactions for tools. Kafka's `TransactionCoordinator` decides the errors.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use karst_protocol::error_codes as ec;
use tracing::{debug, info, warn};

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::group::records::{self as group_records, Key};
use crate::group::{offset_value, GroupEntry, OFFSETS_TOPIC};
use crate::txn::markers::{self, Marker};
use crate::txn::state::End;
use crate::txn::{Init, TxnMeta, TxnState};

/// Clients older than KIP-588 know no PRODUCER_FENCED: they are told
/// INVALID_PRODUCER_EPOCH, as Kafka's `KafkaApis` does.
fn fenced_for(code: i16, old_client: bool) -> i16 {
    if code == ec::PRODUCER_FENCED && old_client {
        ec::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

fn init_error(code: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default().with_error_code(code).with_producer_id(ProducerId(-1)).with_producer_epoch(-1)
}

/// Ok with the coordinator epoch, after creating `__transaction_state` on first use.
async fn coordinator(b: &Arc<Broker>, id: &str) -> Result<i32, i16> {
    if id.is_empty() {
        return Err(ec::INVALID_REQUEST);
    }
    if let Err(e) = b.txns.ensure_topic(b).await {
        warn!("creating {}: {e}", crate::txn::TXN_TOPIC);
        return Err(ec::COORDINATOR_NOT_AVAILABLE);
    }
    b.txns.coordinator_epoch(b, id)
}

/// InitProducerId for a transactional id (Kafka's `handleInitProducerId`).
pub(crate) async fn init_producer_id(b: Arc<Broker>, req: InitProducerIdRequest, version: i16) -> InitProducerIdResponse {
    let resp = init(b, req, version).await;
    let code = fenced_for(resp.error_code, version < 4);
    resp.with_error_code(code)
}

async fn init(b: Arc<Broker>, req: InitProducerIdRequest, version: i16) -> InitProducerIdResponse {
    let id = req.transactional_id.as_ref().map(|t| t.to_string()).unwrap_or_default();
    let timeout = req.transaction_timeout_ms;
    if timeout <= 0 || timeout > b.config.transaction_max_timeout_ms {
        return init_error(if id.is_empty() { ec::INVALID_REQUEST } else { ec::INVALID_TRANSACTION_TIMEOUT });
    }
    let epoch = match coordinator(&b, &id).await {
        Ok(e) => e,
        Err(code) => return init_error(code),
    };
    let expected = (version >= 3 && req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    // A new id, or one whose epoch is exhausted, needs a fresh producer id: taken
    // before the lock (it may await the controller), unused otherwise.
    let needs_id = b.txns.entries.lock().get(&id).is_none_or(|m| crate::txn::state::epoch_exhausted(m.producer_epoch));
    let fresh = if needs_id {
        match b.next_producer_id().await {
            Ok(pid) => Some(pid),
            Err(e) => {
                warn!("allocating a producer id failed: {e}");
                return init_error(ec::COORDINATOR_NOT_AVAILABLE);
            }
        }
    } else {
        None
    };
    if !b.txns.still_at(&id, epoch) {
        // Coordination moved while a producer id was being allocated.
        return init_error(ec::NOT_COORDINATOR);
    }
    if !b.txns.knows(&id) {
        let Some(pid) = fresh else { return init_error(ec::CONCURRENT_TRANSACTIONS) };
        b.txns.insert_new(TxnMeta::new(&id, pid, now_ms(), timeout));
    }
    let now = now_ms();
    let step = b.txns.begin(&id, epoch, |current| {
        let Some(m) = current else { return Err(ec::CONCURRENT_TRANSACTIONS) };
        let mut spare = fresh;
        match m.init(timeout, expected, now, || spare.take().unwrap_or(-1))? {
            Init::Ready(next) if next.producer_id < 0 => Err(ec::CONCURRENT_TRANSACTIONS),
            Init::Ready(next) => Ok(Some((next, false))),
            Init::FenceAndAbort(next) => Ok(Some((next, true))),
        }
    });
    let (next, fencing) = match step {
        Ok(Some(s)) => s,
        Ok(None) => return init_error(ec::CONCURRENT_TRANSACTIONS),
        Err(code) => return init_error(code),
    };
    let (pid, producer_epoch) = (next.producer_id, next.producer_epoch);
    if let Err(code) = b.txns.write(&b, epoch, next).await {
        return init_error(code);
    }
    if fencing {
        // The open transaction of the producer this one replaces is aborted first.
        info!(transactional_id = %id, producer_id = pid, "fencing the previous producer: aborting its open transaction");
        return init_error(ec::CONCURRENT_TRANSACTIONS);
    }
    info!(transactional_id = %id, producer_id = pid, producer_epoch, "initialized a transactional producer");
    InitProducerIdResponse::default().with_producer_id(ProducerId(pid)).with_producer_epoch(producer_epoch)
}

/// Adds `partitions` to `id`'s transaction, writing the state if it changes;
/// `tv2`: for a transactions v2 producer (by a partition leader or group coordinator).
pub(crate) async fn add_to_txn(
    b: &Arc<Broker>,
    id: &str,
    pid: i64,
    producer_epoch: i16,
    partitions: BTreeSet<(String, i32)>,
    tv2: bool,
) -> i16 {
    let epoch = match coordinator(b, id).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    // The next transaction's first AddPartitionsToTxn often arrives while the last
    // one's markers are still being written: rather than answer
    // CONCURRENT_TRANSACTIONS at once (the producer backs off 20 ms or more before
    // asking again), wait here a little for the transaction to complete.
    let deadline = tokio::time::Instant::now() + CONCURRENT_WAIT;
    loop {
        let completed = b.txns.changed.notified();
        // Coordination may move while this waits: `begin` then answers
        // NOT_COORDINATOR (the id's state is gone from here), not that the
        // producer id is unknown (a fatal error to the producer).
        let now = now_ms();
        let step = b.txns.begin(id, epoch, |current| {
            let m = current.ok_or(ec::INVALID_PRODUCER_ID_MAPPING)?;
            Ok(m.add_partitions(pid, producer_epoch, &partitions, tv2, now)?.map(|n| (n, ())))
        });
        match step {
            Ok(None) => return ec::NONE,
            Ok(Some((next, ()))) => return b.txns.write(b, epoch, next).await.err().unwrap_or(ec::NONE),
            Err(ec::CONCURRENT_TRANSACTIONS) if tokio::time::Instant::now() < deadline => {
                let _ = tokio::time::timeout_at(deadline, completed).await;
            }
            Err(code) => return code,
        }
    }
}

/// How long AddPartitionsToTxn and AddOffsetsToTxn wait for a transaction of the
/// same producer to complete before answering CONCURRENT_TRANSACTIONS.
const CONCURRENT_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// AddPartitionsToTxn v0-3 (a producer's): every partition must exist, else it
/// gets UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED.
pub(crate) async fn add_partitions(b: Arc<Broker>, req: AddPartitionsToTxnRequest, version: i16) -> AddPartitionsToTxnResponse {
    if version >= 4 {
        return add_partitions_batched(b, req, version).await;
    }
    let id = req.v3_and_below_transactional_id.to_string();
    let image = b.metadata.image();
    let mut unknown = BTreeSet::new();
    let mut partitions = BTreeSet::new();
    for t in &req.v3_and_below_topics {
        let count = image.topics.get(t.name.as_str()).map_or(0, |m| m.partitions);
        for p in &t.partitions {
            if (0..count).contains(p) {
                partitions.insert((t.name.to_string(), *p));
            } else {
                unknown.insert((t.name.to_string(), *p));
            }
        }
    }
    let code = if unknown.is_empty() {
        let code = add_to_txn(&b, &id, req.v3_and_below_producer_id.0, req.v3_and_below_producer_epoch, partitions, false).await;
        fenced_for(code, version < 2)
    } else {
        ec::OPERATION_NOT_ATTEMPTED
    };
    let results = req
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let c = if unknown.contains(&(t.name.to_string(), *p)) { ec::UNKNOWN_TOPIC_OR_PARTITION } else { code };
                    AddPartitionsToTxnPartitionResult::default().with_partition_index(*p).with_partition_error_code(c)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default().with_name(t.name.clone()).with_results_by_partition(parts)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

/// AddPartitionsToTxn v4+ (from brokers, KIP-890): transactions batched; with
/// `verify_only` each partition is checked to be in its producer's open
/// transaction, else added to it (v5: for a transactions v2 producer, whose
/// writes add their partitions). Only on the inter-broker listener where
/// listeners are split (CLUSTER_AUTHORIZATION_FAILED elsewhere, as Kafka requires
/// CLUSTER_ACTION).
async fn add_partitions_batched(b: Arc<Broker>, req: AddPartitionsToTxnRequest, version: i16) -> AddPartitionsToTxnResponse {
    if !inter_broker_allowed(&b) {
        return AddPartitionsToTxnResponse::default().with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED);
    }
    let mut results = Vec::new();
    for t in req.transactions {
        let id = t.transactional_id.to_string();
        let partitions: Vec<(String, i32)> = t.topics.iter().flat_map(|x| x.partitions.iter().map(|p| (x.name.to_string(), *p))).collect();
        let codes: Vec<i16> = match b.txns.coordinator_epoch(&b, &id) {
            Err(code) => vec![code; partitions.len()],
            Ok(_) if t.verify_only => b
                .txns
                .verify_partitions(&id, t.producer_id.0, t.producer_epoch, &partitions)
                .unwrap_or_else(|code| vec![code; partitions.len()]),
            Ok(_) => {
                let code = add_to_txn(&b, &id, t.producer_id.0, t.producer_epoch, partitions.iter().cloned().collect(), version >= 5).await;
                vec![code; partitions.len()]
            }
        };
        let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
        for ((topic, p), code) in partitions.iter().zip(codes) {
            let r = AddPartitionsToTxnPartitionResult::default().with_partition_index(*p).with_partition_error_code(code);
            match topics.last_mut() {
                Some(x) if x.name.as_str() == topic => x.results_by_partition.push(r),
                _ => topics
                    .push(AddPartitionsToTxnTopicResult::default().with_name(super::topic_name(topic)).with_results_by_partition(vec![r])),
            }
        }
        results.push(AddPartitionsToTxnResult::default().with_transactional_id(t.transactional_id).with_topic_results(topics));
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction.
pub(crate) async fn add_offsets(b: Arc<Broker>, req: AddOffsetsToTxnRequest, version: i16) -> AddOffsetsToTxnResponse {
    let group = req.group_id.to_string();
    if let Err(e) = b.groups.ensure_topic(&b).await {
        warn!("creating {OFFSETS_TOPIC}: {e}");
        return AddOffsetsToTxnResponse::default().with_error_code(ec::COORDINATOR_NOT_AVAILABLE);
    }
    let partition = group_records::partition_for(&group, b.groups.partitions);
    let partitions = [(OFFSETS_TOPIC.to_string(), partition)].into_iter().collect();
    let code = add_to_txn(&b, &req.transactional_id, req.producer_id.0, req.producer_epoch, partitions, false).await;
    if code != ec::NONE {
        debug!(transactional_id = %req.transactional_id.as_str(), group, code, "AddOffsetsToTxn refused");
    }
    AddOffsetsToTxnResponse::default().with_error_code(fenced_for(code, version < 2))
}

/// EndTxn (Kafka's `handleEndTransaction`): answered once the decision is
/// durable; the markers follow. v5+ (transactions v2) bumps the epoch and
/// answers the producer id and epoch the producer goes on with.
pub(crate) async fn end_txn(b: Arc<Broker>, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let id = req.transactional_id.to_string();
    let tv2 = version >= 5;
    let answer = |code: i16, (pid, epoch): (i64, i16)| {
        let (pid, epoch) = if code == ec::NONE { (pid, epoch) } else { (-1, -1) };
        EndTxnResponse::default()
            .with_error_code(fenced_for(code, version < 2))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
    };
    let fail = |code: i16| answer(code, (-1, -1));
    let epoch = match coordinator(&b, &id).await {
        Ok(e) => e,
        Err(code) => return fail(code),
    };
    // An exhausted epoch moves to a new producer id: taken before the lock (it may
    // await the controller), unused otherwise.
    let exhausted = tv2 && b.txns.entries.lock().get(&id).is_some_and(|m| crate::txn::state::epoch_exhausted(m.producer_epoch));
    let fresh = if exhausted {
        match b.next_producer_id().await {
            Ok(pid) => Some(pid),
            Err(e) => {
                warn!("allocating a producer id failed: {e}");
                return fail(ec::COORDINATOR_NOT_AVAILABLE);
            }
        }
    } else {
        None
    };
    let now = now_ms();
    // A retry of an end already complete writes nothing: its answer comes out here.
    let mut done = None;
    let step = b.txns.begin(&id, epoch, |current| {
        let m = current.ok_or(ec::INVALID_PRODUCER_ID_MAPPING)?;
        let mut spare = fresh;
        match m.end(req.producer_id.0, req.producer_epoch, req.committed, tv2, now, || spare.take().unwrap_or(-1))? {
            End::Done(pid, e) => {
                done = Some((pid, e));
                Ok(None)
            }
            // The epoch ran out after a producer id was looked for: asked again.
            End::Decide(next) if next.tv2 && next.next_producer_id < 0 && crate::txn::state::epoch_exhausted(m.producer_epoch) => {
                Err(ec::CONCURRENT_TRANSACTIONS)
            }
            End::Decide(next) => {
                let out = next.answer();
                Ok(Some((next, out)))
            }
        }
    });
    match step {
        Ok(None) => answer(ec::NONE, done.unwrap_or((-1, -1))),
        Ok(Some((next, out))) => match b.txns.write(&b, epoch, next).await {
            Ok(()) => answer(ec::NONE, out),
            Err(code) => fail(code),
        },
        Err(code) => fail(code),
    }
}

/// Where listeners are split, markers are taken on the inter-broker listener only
/// (CLUSTER_AUTHORIZATION_FAILED elsewhere); with an authorizer, from a principal with
/// CLUSTER_ACTION (a broker's: super.users), as Kafka requires.
pub(super) fn inter_broker_allowed(b: &Broker) -> bool {
    let listener = match &b.config.inter_broker_listener_name {
        Some(name) => crate::server::current_listener().is_some_and(|l| *l == **name),
        None => true,
    };
    listener
        && crate::security::authz::allowed(
            b,
            crate::security::acl::CLUSTER,
            crate::security::acl::CLUSTER_NAME,
            crate::security::acl::CLUSTER_ACTION,
        )
}

/// WriteTxnMarkers (from a transaction coordinator): each marker is appended to
/// the partitions this broker leads and answered once replicated.
pub(crate) async fn write_markers(b: Arc<Broker>, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let allowed = inter_broker_allowed(&b);
    let mut out = Vec::new();
    for m in req.markers {
        let marker = Marker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            coordinator_epoch: m.coordinator_epoch,
            commit: m.transaction_result,
        };
        let mut topics = Vec::new();
        for t in m.topics {
            let mut parts = Vec::new();
            for p in t.partition_indexes {
                let code = if !allowed {
                    ec::CLUSTER_AUTHORIZATION_FAILED
                } else if marker.producer_id < 0 || marker.producer_epoch < 0 {
                    ec::INVALID_REQUEST
                } else {
                    markers::write_local(&b, &t.name, p, marker).await.err().unwrap_or(ec::NONE)
                };
                if code != ec::NONE {
                    debug!(topic = %t.name.as_str(), partition = p, code, "transaction marker refused");
                }
                parts.push(WritableTxnMarkerPartitionResult::default().with_partition_index(p).with_error_code(code));
            }
            topics.push(WritableTxnMarkerTopicResult::default().with_name(t.name).with_partitions(parts));
        }
        out.push(WritableTxnMarkerResult::default().with_producer_id(m.producer_id).with_topics(topics));
    }
    WriteTxnMarkersResponse::default().with_markers(out)
}

/// TxnOffsetCommit, at the group coordinator: the offsets are written as part of
/// the producer's transaction and count once its COMMIT marker arrives. KIP-447:
/// a member id and generation, when given, must be the group's current ones.
pub(crate) async fn txn_offset_commit(b: Arc<Broker>, req: TxnOffsetCommitRequest, version: i16) -> TxnOffsetCommitResponse {
    let (group, pid, epoch) = (req.group_id.to_string(), req.producer_id.0, req.producer_epoch);
    let resp = offset_commit_in_txn(b, req, version).await;
    let codes: BTreeSet<i16> =
        resp.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).filter(|c| *c != ec::NONE).collect();
    if !codes.is_empty() {
        debug!(group, pid, epoch, ?codes, "transactional offset commit refused");
    }
    resp
}

async fn offset_commit_in_txn(b: Arc<Broker>, req: TxnOffsetCommitRequest, version: i16) -> TxnOffsetCommitResponse {
    let group = req.group_id.to_string();
    let respond = |codes: &dyn Fn(&str, i32) -> i16| {
        let topics = req
            .topics
            .iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| {
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(codes(&t.name, p.partition_index))
                    })
                    .collect();
                TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(parts)
            })
            .collect();
        TxnOffsetCommitResponse::default().with_topics(topics)
    };
    if let Err(e) = b.groups.ensure_topic(&b).await {
        warn!("creating {OFFSETS_TOPIC}: {e}");
        return respond(&|_, _| ec::COORDINATOR_NOT_AVAILABLE);
    }
    if let Some(code) = super::groups::group_error(&b, &group, crate::security::acl::READ) {
        return respond(&|_, _| code);
    }
    let producer = (req.producer_id.0, req.producer_epoch);
    if producer.0 < 0 || producer.1 < 0 {
        return respond(&|_, _| ec::INVALID_PRODUCER_EPOCH);
    }
    // As Kafka: the group's partition must be in the producer's open transaction
    // (AddOffsetsToTxn first), else nothing is written. v5+ (transactions v2): the
    // producer sends no AddOffsetsToTxn, and the partition is added here.
    let offsets_partition = group_records::partition_for(&group, b.groups.partitions);
    let Some(partition) = b.partitions.get(OFFSETS_TOPIC, offsets_partition) else {
        return respond(&|_, _| ec::COORDINATOR_NOT_AVAILABLE);
    };
    // The guard is taken before asking: a marker of this producer arriving while
    // the answer is on its way makes the write below fail instead of opening a
    // transaction in `__consumer_offsets` that nobody will end.
    let verified = partition.start_verification(producer.0, producer.1);
    let in_txn = if version >= 5 {
        let added =
            crate::txn::verify::add(&b, &req.transactional_id, producer.0, producer.1, &[(OFFSETS_TOPIC.to_string(), offsets_partition)])
                .await;
        match added.first().copied().unwrap_or(ec::UNKNOWN_SERVER_ERROR) {
            ec::NONE => Ok(()),
            ec::PRODUCER_FENCED => Err(ec::INVALID_PRODUCER_EPOCH),
            code => Err(code),
        }
    } else {
        crate::txn::verify::verify(&b, &req.transactional_id, producer.0, producer.1, OFFSETS_TOPIC, offsets_partition).await
    };
    if let Err(code) = in_txn {
        return respond(&|_, _| code);
    }
    let image = b.metadata.image();
    let now = now_ms();
    let max_meta = b.config.offset_metadata_max_bytes;
    let mut codes: std::collections::HashMap<(String, i32), i16> = std::collections::HashMap::new();
    let mut writes = Vec::new();
    let mut values = Vec::new();
    {
        let entries = b.groups.entries.lock();
        // KIP-447: a member of a group that has moved on is fenced; Kafka checks only
        // when the request names a member (v3+) and the group knows members.
        if version >= 3 && req.generation_id >= 0 {
            let code = match entries.get(&group) {
                None => ec::ILLEGAL_GENERATION,
                Some(e) => match &e.consumer {
                    Some(c) => c.check_commit(&req.member_id, req.generation_id, version, true),
                    None => e.group.check_commit(&req.member_id, req.group_instance_id.as_deref(), req.generation_id),
                },
            };
            if code != ec::NONE {
                return respond(&|_, _| code);
            }
        }
        for t in &req.topics {
            let partitions = image.topics.get(t.name.as_str()).map_or(0, |m| m.partitions);
            for p in &t.partitions {
                let epoch = if version >= 2 { p.committed_leader_epoch } else { -1 };
                let metadata = p.committed_metadata.as_deref();
                let code = match offset_value(partitions, p.partition_index, metadata, max_meta, p.committed_offset, epoch, now) {
                    Ok(v) => {
                        let key = Key::Offset { group: group.clone(), topic: t.name.to_string(), partition: p.partition_index };
                        writes.push((group_records::encode_key(&key), Some(group_records::encode_offset(&v))));
                        values.push(((t.name.to_string(), p.partition_index), v));
                        ec::NONE
                    }
                    Err(code) => code,
                };
                codes.insert((t.name.to_string(), p.partition_index), code);
            }
        }
    }
    let mut write_error = ec::NONE;
    if !writes.is_empty() {
        // Pending until the marker: OffsetFetch with require_stable waits on it. Noted
        // before the append: a marker landing between the append and a note made
        // after it would find nothing to settle, and the note would hold the group's
        // offsets unstable for good.
        {
            let mut entries = b.groups.entries.lock();
            let e = entries.entry(group.clone()).or_insert_with(|| GroupEntry::new(&group, now));
            e.pending_txn.entry(producer.0).or_default().extend(values);
        }
        match b.groups.persist_txn(&b, &partition, (producer, verified), &writes) {
            Ok(pending) => {
                if let Err(code) = pending.committed().await {
                    write_error = code;
                }
            }
            Err(code) => {
                if code == ec::INVALID_TXN_STATE {
                    // A marker of the producer came first and settled its transaction:
                    // nothing of it is pending any more.
                    if let Some(e) = b.groups.entries.lock().get_mut(&group) {
                        e.pending_txn.remove(&producer.0);
                    }
                }
                write_error = code;
            }
        }
    }
    respond(&|t, p| match codes.get(&(t.to_string(), p)).copied().unwrap_or(ec::UNKNOWN_TOPIC_OR_PARTITION) {
        ec::NONE => write_error,
        c => c,
    })
}

/// DescribeTransactions: the state of each id this broker coordinates.
pub(crate) fn describe(b: &Broker, req: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let s = TransactionState::default().with_transactional_id(id.clone()).with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
            if id.is_empty() {
                return s.with_error_code(ec::INVALID_REQUEST);
            }
            if let Err(code) = b.txns.coordinator_epoch(b, &id) {
                return s.with_error_code(code);
            }
            let Some(m) = b.txns.entries.lock().get(id.as_str()).cloned().filter(|m| m.state != TxnState::Dead) else {
                return s.with_error_code(ec::TRANSACTIONAL_ID_NOT_FOUND);
            };
            let mut topics: Vec<TopicData> = Vec::new();
            for (t, p) in &m.partitions {
                match topics.last_mut() {
                    Some(d) if d.topic.as_str() == t => d.partitions.push(*p),
                    _ => topics.push(TopicData::default().with_topic(super::topic_name(t)).with_partitions(vec![*p])),
                }
            }
            s.with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_transaction_state(str_bytes(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// ListTransactions: the ids this broker coordinates, filtered by state, producer
/// id, (v1) how long they have been open and (v2, KIP-1152) a regular expression
/// the whole id matches, as Java's `Matcher.matches`; INVALID_REGULAR_EXPRESSION
/// when it does not compile.
pub(crate) fn list(b: &Broker, req: ListTransactionsRequest, version: i16) -> ListTransactionsResponse {
    let pattern = match req.transactional_id_pattern.as_deref().filter(|p| version >= 2 && !p.is_empty()) {
        None => None,
        Some(p) => match regex::RegexBuilder::new(&format!("^(?:{p})$")).size_limit(1 << 20).build() {
            Ok(r) => Some(r),
            Err(e) => {
                debug!("ListTransactions pattern refused: {e}");
                return ListTransactionsResponse::default().with_error_code(ec::INVALID_REGULAR_EXPRESSION);
            }
        },
    };
    let mut unknown = Vec::new();
    let mut states = BTreeSet::new();
    for f in &req.state_filters {
        match TxnState::from_name(f) {
            Some(s) => {
                states.insert(s);
            }
            None => unknown.push(f.clone()),
        }
    }
    let pids: BTreeSet<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let now = now_ms();
    let listed = b
        .txns
        .snapshot()
        .into_iter()
        .filter(|m| m.state != TxnState::Dead)
        .filter(|m| states.is_empty() || states.contains(&m.state))
        .filter(|m| pids.is_empty() || pids.contains(&m.producer_id))
        .filter(|m| version < 1 || req.duration_filter < 0 || (m.state == TxnState::Ongoing && now - m.start_ms >= req.duration_filter))
        .filter(|m| pattern.as_ref().is_none_or(|r| r.is_match(&m.id)))
        .map(|m| {
            ListedState::default()
                .with_transactional_id(TransactionalId(str_bytes(m.id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(str_bytes(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(listed)
}
