use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use karst_protocol::error_codes as ec;
use karst_protocol::message_set::{down_convert, fetch_magic, DownConvertOptions};
use karst_storage::StorageError;
use tokio::sync::watch;
use uuid::Uuid;

use super::leader_hint::{wants_hint, LeaderHints};
use crate::broker::Broker;
use crate::fetch_sessions::{Answered, Context, FetchParams, Filtered, PartitionKey, TopicKey, INVALID_SESSION_ID};
use crate::metadata::ClusterImage;
use crate::partition::{Partition, PartitionError};

/// Who claims to fetch as a follower: a broker id and the broker epoch it registered
/// with (Fetch v15+ `ReplicaState`, KIP-903; -1 on older versions, which carry none).
#[derive(Debug, Clone, Copy)]
struct Follower {
    id: i32,
    epoch: i64,
}

/// Kafka serves a follower fetch only to a replica in the partition's current
/// assignment that fetches with the broker epoch it registered (KIP-903); anyone else
/// claiming a replica id gets NOT_LEADER_OR_FOLLOWER and never reads above the high
/// watermark nor moves it. Without this check any client could read uncommitted data
/// and, claiming an ISR member's id, answer `acks=all` before the real followers have
/// the data.
fn follower_refused(b: &Broker, image: &ClusterImage, topic: &str, partition: i32, f: Follower, listener_ok: bool) -> bool {
    if !listener_ok || f.id == b.node_id {
        return true;
    }
    let assigned = image.cluster.partition(topic, partition).is_some_and(|s| s.replicas.contains(&f.id));
    let registered = image.cluster.broker(f.id).is_some_and(|r| r.epoch == f.epoch);
    !(assigned && registered)
}

/// A fetch session is privileged (harder to evict, KIP-227) only for a claimed follower
/// that is a registered broker fetching with its broker epoch on the inter-broker
/// listener: a client claiming a replica id must not push consumers' sessions out.
fn privileged(b: &Broker, replica: Option<Follower>) -> bool {
    replica.is_some_and(|f| {
        f.id != b.node_id && on_inter_broker_listener(b) && b.metadata.image().cluster.broker(f.id).is_some_and(|r| r.epoch == f.epoch)
    })
}

/// Where listeners are split (`inter.broker.listener.name`), follower fetches are
/// accepted only on the inter-broker listener, as in Kafka.
fn on_inter_broker_listener(b: &Broker) -> bool {
    match &b.config.inter_broker_listener_name {
        Some(name) => crate::server::current_listener().is_some_and(|l| *l == **name),
        None => true,
    }
}

/// One partition to read, as the request (or its fetch session) names it.
struct Target {
    key: PartitionKey,
    /// Local topic name, or the error the partition gets.
    resolved: Result<Arc<str>, i16>,
    params: FetchParams,
}

fn topic_key(version: i16, name: &TopicName, id: Uuid) -> TopicKey {
    if version >= 13 {
        TopicKey::Id(id)
    } else {
        TopicKey::Name(Arc::from(name.as_str()))
    }
}

/// The request's partitions in request order (v17's replica directory id and v18's
/// follower high watermark are not used, as in Kafka's broker).
fn requested(req: &mut FetchRequest, version: i16) -> Vec<(PartitionKey, FetchParams)> {
    std::mem::take(&mut req.topics)
        .into_iter()
        .flat_map(|t| {
            let topic = topic_key(version, &t.topic, t.topic_id);
            t.partitions.into_iter().map(move |p| {
                let params = FetchParams {
                    fetch_offset: p.fetch_offset,
                    log_start_offset: p.log_start_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                    last_fetched_epoch: p.last_fetched_epoch,
                };
                (PartitionKey { topic: topic.clone(), partition: p.partition }, params)
            })
        })
        .collect()
}

/// The partitions an incremental fetch removes from its session.
fn forgotten(req: &FetchRequest, version: i16) -> Vec<PartitionKey> {
    req.forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let topic = topic_key(version, &t.topic, t.topic_id);
            t.partitions.iter().map(move |p| PartitionKey { topic: topic.clone(), partition: *p })
        })
        .collect()
}

/// Resolves each partition's topic against metadata, once per topic.
fn resolve(b: &Broker, partitions: Vec<(PartitionKey, FetchParams)>, consumer: bool) -> Vec<Target> {
    let image = b.metadata.image();
    let mut known: HashMap<TopicKey, Result<Arc<str>, i16>> = HashMap::new();
    partitions
        .into_iter()
        .map(|(key, params)| {
            let resolved = known
                .entry(key.topic.clone())
                .or_insert_with(|| match &key.topic {
                    TopicKey::Id(id) => image.topic_by_id(*id).map(|m| Arc::from(m.name.as_str())).ok_or(ec::UNKNOWN_TOPIC_ID),
                    TopicKey::Name(name) if image.topics.contains_key(&**name) => Ok(name.clone()),
                    TopicKey::Name(_) => Err(ec::UNKNOWN_TOPIC_OR_PARTITION),
                })
                .clone()
                .and_then(|name| {
                    // A consumer needs READ on the topic (followers are checked by epoch).
                    if consumer && !crate::security::authz::allowed(b, crate::security::acl::TOPIC, &name, crate::security::acl::READ) {
                        Err(29) // TOPIC_AUTHORIZATION_FAILED
                    } else {
                        Ok(name)
                    }
                })
                .clone();
            Target { key, resolved, params }
        })
        .collect()
}

fn partition_data(p: Option<&Partition>, index: i32, error: i16) -> PartitionData {
    let d = PartitionData::default().with_partition_index(index).with_error_code(error).with_records(Some(Bytes::new()));
    match p {
        Some(p) => d
            .with_high_watermark(p.high_watermark())
            .with_last_stable_offset(p.last_stable_offset())
            .with_log_start_offset(p.log_start_offset()),
        None => d.with_high_watermark(-1).with_last_stable_offset(-1).with_log_start_offset(-1),
    }
}

/// One pass over every partition to read. Returns one answer per target (in order)
/// and the number of record bytes in them; with `watch` set, subscribes to each
/// partition before reading it so no append between the read and the wait is missed.
fn read_all(
    b: &Broker,
    targets: &[Target],
    max_bytes: usize,
    version: i16,
    replica: Option<Follower>,
    read_committed: bool,
    mut watch: Option<&mut Vec<watch::Receiver<i64>>>,
) -> (Vec<PartitionData>, usize, bool) {
    let now = crate::broker::now_ms();
    let image = replica.map(|_| b.metadata.image());
    let listener_ok = replica.is_some() && on_inter_broker_listener(b);
    // With an authorizer, a follower fetch needs CLUSTER_ACTION (a broker's principal:
    // super.users), as in Kafka.
    let cluster_action = replica.is_none()
        || crate::security::authz::may(
            b,
            crate::security::acl::CLUSTER,
            crate::security::acl::CLUSTER_NAME,
            crate::security::acl::CLUSTER_ACTION,
        );
    let mut total = 0usize;
    let mut any_error = false;
    let mut parts = Vec::with_capacity(targets.len());
    for t in targets {
        let (index, fp) = (t.key.partition, &t.params);
        let pd = match &t.resolved {
            Err(code) => {
                any_error = true;
                partition_data(None, index, *code)
            }
            Ok(name) => {
                match b.check_leader(name, index).and_then(|()| b.partitions.get(name, index).ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)) {
                    Err(code) => {
                        any_error = true;
                        partition_data(None, index, code)
                    }
                    Ok(_) if !cluster_action => {
                        tracing::debug!(topic = %name, partition = index, ?replica, "follower fetch refused: no CLUSTER_ACTION");
                        any_error = true;
                        partition_data(None, index, ec::TOPIC_AUTHORIZATION_FAILED)
                    }
                    Ok(_)
                        if replica
                            .zip(image.as_deref())
                            .is_some_and(|(f, image)| follower_refused(b, image, name, index, f, listener_ok)) =>
                    {
                        tracing::debug!(topic = %name, partition = index, ?replica, "follower fetch refused: not a current replica with its registered epoch");
                        any_error = true;
                        partition_data(None, index, ec::NOT_LEADER_OR_FOLLOWER)
                    }
                    Ok(p) => {
                        // KIP-320: a client (or follower) whose metadata names another
                        // leader epoch refreshes it before reading here.
                        if let Some(code) = epoch_error(&p, fp.current_leader_epoch) {
                            any_error = true;
                            parts.push(partition_data(Some(&p), index, code));
                            continue;
                        }
                        let limit = (fp.max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
                        let mut aborted = None;
                        let read = match replica {
                            // A follower: its fetch offset is its log end; it may read up to ours.
                            Some(f) => {
                                if let Some(w) = watch.as_deref_mut() {
                                    w.push(p.subscribe_leo());
                                }
                                p.follower_fetched(f.id, fp.fetch_offset, now);
                                p.read_for_follower(fp.fetch_offset, limit)
                            }
                            None => {
                                if let Some(w) = watch.as_deref_mut() {
                                    w.push(p.subscribe());
                                }
                                if read_committed {
                                    p.read_committed(fp.fetch_offset, limit, total == 0).map(|(slice, list)| {
                                        aborted = Some(list);
                                        slice
                                    })
                                } else {
                                    p.read(fp.fetch_offset, limit, total == 0)
                                }
                            }
                        };
                        let read = match (read, replica.is_none().then(|| fetch_magic(version)).flatten()) {
                            (Ok(slice), Some(magic)) => down_convert_for(b, &p, magic, fp.fetch_offset, limit, &slice.bytes),
                            (read, _) => read.map(|slice| slice.bytes).map_err(Refused::from),
                        };
                        match read {
                            Ok(bytes) => {
                                total += bytes.len();
                                partition_data(Some(&p), index, ec::NONE)
                                    .with_records(Some(bytes))
                                    .with_aborted_transactions(aborted.map(aborted_list))
                            }
                            Err(Refused::Code(code)) => {
                                any_error = true;
                                partition_data(Some(&p), index, code)
                            }
                            Err(Refused::Read(PartitionError::Storage(StorageError::OffsetOutOfRange { .. }))) => {
                                any_error = true;
                                partition_data(Some(&p), index, ec::OFFSET_OUT_OF_RANGE)
                            }
                            Err(Refused::Read(PartitionError::Closed)) => {
                                any_error = true;
                                partition_data(None, index, ec::NOT_LEADER_OR_FOLLOWER)
                            }
                            Err(Refused::Read(e)) => {
                                tracing::warn!(topic = %name, partition = index, "fetch read failed: {e}");
                                any_error = true;
                                partition_data(Some(&p), index, ec::KAFKA_STORAGE_ERROR)
                            }
                        }
                    }
                }
            }
        };
        parts.push(pd);
    }
    (parts, total, any_error)
}

/// The aborted transactions of a read_committed answer: producer id and first offset.
fn aborted_list(list: Vec<karst_storage::AbortedTxn>) -> Vec<AbortedTransaction> {
    list.into_iter()
        .map(|t| AbortedTransaction::default().with_producer_id(ProducerId(t.producer_id)).with_first_offset(t.first_offset))
        .collect()
}

/// KIP-320: FENCED_LEADER_EPOCH for an epoch older than this leader's, UNKNOWN_LEADER_EPOCH
/// for a newer one (this broker has not seen it yet); -1 skips the check.
pub(super) fn epoch_error(p: &Partition, theirs: i32) -> Option<i16> {
    let ours = p.replica.lock().leader_epoch;
    match theirs {
        t if t < 0 || t == ours => None,
        t if t < ours => Some(ec::FENCED_LEADER_EPOCH),
        _ => Some(ec::UNKNOWN_LEADER_EPOCH),
    }
}

/// Why a partition's read gave no records.
enum Refused {
    Read(PartitionError),
    Code(i16),
}

impl From<PartitionError> for Refused {
    fn from(e: PartitionError) -> Refused {
        Refused::Read(e)
    }
}

/// A Fetch v0-v3 consumer's records: the stored v2 batches converted to message
/// format `magic` (0 or 1), as Kafka down-converts for clients older than 0.11.
/// Counted here, as the response's bytes are no longer v2 batches.
fn down_convert_for(b: &Broker, p: &Partition, magic: i8, fetch_offset: i64, max_bytes: usize, batches: &[u8]) -> Result<Bytes, Refused> {
    if !p.config().downconversion_enable {
        return Err(Refused::Code(ec::UNSUPPORTED_VERSION));
    }
    let opts = DownConvertOptions { magic, fetch_offset, max_bytes, max_decompressed: b.config.socket_request_max_bytes };
    match down_convert(batches, &opts) {
        Ok(d) => {
            let records = u64::try_from(d.record_count).unwrap_or(0);
            crate::metrics::down_converted(&p.topic, records);
            crate::metrics::consumed_records(&p.topic, records, d.records.len());
            Ok(Bytes::from(d.records))
        }
        Err(e) => {
            tracing::debug!(topic = %p.topic, partition = p.index, "down-conversion refused: {}", e.message());
            Err(Refused::Code(e.error_code()))
        }
    }
}

/// What a session needs to know of one answer.
fn answered(p: &PartitionData) -> Answered {
    Answered {
        record_bytes: p.records.as_ref().map_or(0, Bytes::len),
        error: p.error_code,
        high_watermark: p.high_watermark,
        log_start_offset: p.log_start_offset,
        diverging_epoch: p.diverging_epoch.epoch >= 0 || p.diverging_epoch.end_offset >= 0,
        preferred_read_replica: p.preferred_read_replica.0 >= 0,
    }
}

/// KIP-951 (Fetch v16+): a partition refused because this broker does not lead it (or
/// leads it at a newer epoch) names the leader and epoch this broker knows, and the
/// response gives that leader's address on the request's listener, so the client
/// need not ask Metadata first.
fn name_leaders(b: &Broker, targets: &[&Target], parts: &mut [PartitionData]) -> Vec<NodeEndpoint> {
    let mut hints = LeaderHints::new(b, crate::server::current_listener());
    for (t, p) in targets.iter().zip(parts.iter_mut()) {
        let Ok(name) = &t.resolved else { continue };
        if wants_hint(p.error_code) {
            let leader = hints.leader(name, t.key.partition);
            p.current_leader =
                LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader.leader_id)).with_leader_epoch(leader.leader_epoch);
        }
    }
    hints
        .endpoints()
        .map(|e| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(e.node_id))
                .with_host(super::str_bytes(e.host.clone()))
                .with_port(e.port)
                .with_rack(e.rack.clone().map(super::str_bytes))
        })
        .collect()
}

/// The response: the session's verdict on what to send (a full fetch asking for a
/// session gets one here, if there is room), consecutive partitions of one topic
/// grouped under it, and a consumer's (not a follower's) v2 records counted as read
/// (down-converted ones were counted as they were converted).
fn respond(
    b: &Broker,
    context: &Context,
    replica: Option<Follower>,
    targets: &[Target],
    parts: Vec<PartitionData>,
    version: i16,
    read_committed: bool,
) -> FetchResponse {
    let mut session_id = INVALID_SESSION_ID;
    let mut send: Option<Vec<bool>> = None;
    match context {
        Context::Sessionless | Context::Error(_) => {}
        Context::Full => {
            let created = targets.iter().zip(&parts).map(|(t, p)| (t.key.clone(), t.params, answered(p))).collect();
            let (id, evicted) = b.fetch_sessions.create(privileged(b, replica), version >= 13, created, crate::broker::now_ms());
            if id != INVALID_SESSION_ID {
                crate::metrics::fetch_session_created(evicted);
            }
            session_id = id;
        }
        Context::Incremental(inc) => match inc.filter(targets.iter().zip(&parts).map(|(t, p)| (&t.key, answered(p)))) {
            Filtered::Error(code) => return FetchResponse::default().with_error_code(code).with_session_id(inc.id),
            Filtered::Send(flags) => {
                let sent = flags.iter().filter(|s| **s).count();
                crate::metrics::incremental_fetch(sent, flags.len() - sent);
                session_id = inc.id;
                send = Some(flags);
            }
        },
    }
    let (targets, mut parts): (Vec<&Target>, Vec<PartitionData>) = targets
        .iter()
        .zip(parts)
        .enumerate()
        .filter(|(i, _)| send.as_ref().is_none_or(|flags| flags.get(*i).copied().unwrap_or(true)))
        .map(|(_, pair)| pair)
        .unzip();
    // As Kafka: null for read_uncommitted, a list for read_committed (empty for a
    // partition that read nothing).
    if read_committed {
        for p in parts.iter_mut().filter(|p| p.aborted_transactions.is_none()) {
            p.aborted_transactions = Some(Vec::new());
        }
    }
    let node_endpoints = if version >= 16 { name_leaders(b, &targets, &mut parts) } else { Vec::new() };
    let count_records = replica.is_none() && fetch_magic(version).is_none();
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut last: Option<&TopicKey> = None;
    for (t, p) in targets.iter().zip(parts) {
        if count_records {
            if let (Ok(name), Some(records)) = (&t.resolved, p.records.as_ref()) {
                crate::metrics::consumed(name, records);
            }
        }
        match topics.last_mut() {
            Some(topic) if last == Some(&t.key.topic) => topic.partitions.push(p),
            _ => {
                let topic = FetchableTopicResponse::default().with_partitions(vec![p]);
                topics.push(match &t.key.topic {
                    TopicKey::Id(id) => topic.with_topic_id(*id),
                    TopicKey::Name(name) => topic.with_topic(super::topic_name(name)),
                });
                last = Some(&t.key.topic);
            }
        }
    }
    FetchResponse::default().with_responses(topics).with_session_id(session_id).with_node_endpoints(node_endpoints)
}

/// Starts a Fetch: the session (if any) is looked up, created, updated or closed now,
/// in request order; the returned future reads, long-polls and answers.
pub(crate) fn start(b: &Arc<Broker>, mut req: FetchRequest, version: i16) -> impl Future<Output = FetchResponse> + Send + 'static {
    let (replica_id, epoch) =
        if version >= 15 { (req.replica_state.replica_id.0, req.replica_state.replica_epoch) } else { (req.replica_id.0, -1) };
    let replica = (replica_id >= 0).then_some(Follower { id: replica_id, epoch });
    let requested = requested(&mut req, version);
    let mut context = if version >= 7 {
        let forgotten = forgotten(&req, version);
        b.fetch_sessions.new_context(version, req.session_id, req.session_epoch, &requested, &forgotten, crate::broker::now_ms())
    } else {
        Context::Sessionless
    };
    let b = b.clone();
    async move {
        if let Context::Error(code) = context {
            tracing::debug!(session = req.session_id, epoch = req.session_epoch, error = code, "fetch session error");
            return FetchResponse::default().with_error_code(code);
        }
        // An incremental fetch reads (and long-polls on) every partition of its session.
        let partitions = match &mut context {
            Context::Incremental(inc) => std::mem::take(&mut inc.partitions),
            _ => requested,
        };
        let targets = resolve(&b, partitions, replica.is_none());
        serve(&b, &context, &targets, &req, version, replica).await
    }
}

async fn serve(
    b: &Broker,
    context: &Context,
    targets: &[Target],
    req: &FetchRequest,
    version: i16,
    replica: Option<Follower>,
) -> FetchResponse {
    let max_bytes = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let read_committed = version >= 4 && req.isolation_level == 1;
    loop {
        let mut receivers = Vec::new();
        let (parts, total, any_error) = read_all(b, targets, max_bytes, version, replica, read_committed, Some(&mut receivers));
        let done = total >= min_bytes || any_error || receivers.is_empty() || tokio::time::Instant::now() >= deadline;
        if done {
            return respond(b, context, replica, targets, parts, version, read_committed);
        }
        // Long poll: wait for any of these partitions to advance, or the deadline.
        let changes = select_all(receivers.iter_mut().map(|r| Box::pin(r.changed())));
        if crate::metrics::fetch_wait(tokio::time::timeout_at(deadline, changes)).await.is_err() {
            let (parts, _, _) = read_all(b, targets, max_bytes, version, replica, read_committed, None);
            return respond(b, context, replica, targets, parts, version, read_committed);
        }
    }
}
