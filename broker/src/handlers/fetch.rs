use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use karst_protocol::error_codes as ec;
use karst_protocol::message_set::{down_convert, fetch_magic, DownConvertOptions};
use karst_storage::StorageError;
use tokio::sync::watch;
use uuid::Uuid;

use crate::broker::Broker;
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

/// Where listeners are split (`inter.broker.listener.name`), follower fetches are
/// accepted only on the inter-broker listener, as in Kafka.
fn on_inter_broker_listener(b: &Broker) -> bool {
    match &b.config.inter_broker_listener_name {
        Some(name) => crate::server::current_listener().is_some_and(|l| *l == **name),
        None => true,
    }
}

/// A requested topic resolved against metadata once per request.
struct Wanted {
    name: TopicName,
    id: Uuid,
    /// Local topic name, or the error every partition of it gets.
    resolved: Result<String, i16>,
    partitions: Vec<FetchPartition>,
}

fn resolve(b: &Broker, req: &mut FetchRequest, version: i16) -> Vec<Wanted> {
    let image = b.metadata.image();
    std::mem::take(&mut req.topics)
        .into_iter()
        .map(|t| {
            let resolved = if version >= 13 {
                image.topic_by_id(t.topic_id).map(|m| m.name.clone()).ok_or(ec::UNKNOWN_TOPIC_ID)
            } else if image.topics.contains_key(t.topic.as_str()) {
                Ok(t.topic.to_string())
            } else {
                Err(ec::UNKNOWN_TOPIC_OR_PARTITION)
            };
            Wanted { name: t.topic, id: t.topic_id, resolved, partitions: t.partitions }
        })
        .collect()
}

fn partition_data(p: Option<&Partition>, index: i32, error: i16) -> PartitionData {
    let d = PartitionData::default().with_partition_index(index).with_error_code(error).with_records(Some(Bytes::new()));
    match p {
        Some(p) => {
            let hw = p.high_watermark();
            d.with_high_watermark(hw).with_last_stable_offset(hw).with_log_start_offset(p.log_start_offset())
        }
        None => d.with_high_watermark(-1).with_last_stable_offset(-1).with_log_start_offset(-1),
    }
}

/// One pass over every requested partition. Returns the response topics and the
/// number of record bytes in them; with `watch` set, subscribes to each partition
/// before reading it so no append between the read and the wait is missed.
fn read_all(
    b: &Broker,
    wanted: &[Wanted],
    max_bytes: usize,
    version: i16,
    replica: Option<Follower>,
    mut watch: Option<&mut Vec<watch::Receiver<i64>>>,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let now = crate::broker::now_ms();
    let image = replica.map(|_| b.metadata.image());
    let listener_ok = replica.is_some() && on_inter_broker_listener(b);
    let mut total = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut parts = Vec::with_capacity(w.partitions.len());
        for fp in &w.partitions {
            let pd = match &w.resolved {
                Err(code) => {
                    any_error = true;
                    partition_data(None, fp.partition, *code)
                }
                Ok(name) => match b
                    .check_leader(name, fp.partition)
                    .and_then(|()| b.partitions.get(name, fp.partition).ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION))
                {
                    Err(code) => {
                        any_error = true;
                        partition_data(None, fp.partition, code)
                    }
                    Ok(_)
                        if replica
                            .zip(image.as_deref())
                            .is_some_and(|(f, image)| follower_refused(b, image, name, fp.partition, f, listener_ok)) =>
                    {
                        tracing::debug!(topic = %name, partition = fp.partition, ?replica, "follower fetch refused: not a current replica with its registered epoch");
                        any_error = true;
                        partition_data(None, fp.partition, ec::NOT_LEADER_OR_FOLLOWER)
                    }
                    Ok(p) => {
                        // KIP-320: a client (or follower) whose metadata names another
                        // leader epoch refreshes it before reading here.
                        if let Some(code) = epoch_error(&p, fp.current_leader_epoch) {
                            any_error = true;
                            parts.push(partition_data(Some(&p), fp.partition, code));
                            continue;
                        }
                        let limit = (fp.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total));
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
                                p.read(fp.fetch_offset, limit, total == 0)
                            }
                        };
                        let read = match (read, replica.is_none().then(|| fetch_magic(version)).flatten()) {
                            (Ok(slice), Some(magic)) => down_convert_for(b, &p, magic, fp.fetch_offset, limit, &slice.bytes),
                            (read, _) => read.map(|slice| slice.bytes).map_err(Refused::from),
                        };
                        match read {
                            Ok(bytes) => {
                                total += bytes.len();
                                partition_data(Some(&p), fp.partition, ec::NONE).with_records(Some(bytes))
                            }
                            Err(Refused::Code(code)) => {
                                any_error = true;
                                partition_data(Some(&p), fp.partition, code)
                            }
                            Err(Refused::Read(PartitionError::Storage(StorageError::OffsetOutOfRange { .. }))) => {
                                any_error = true;
                                partition_data(Some(&p), fp.partition, ec::OFFSET_OUT_OF_RANGE)
                            }
                            Err(Refused::Read(PartitionError::Closed)) => {
                                any_error = true;
                                partition_data(None, fp.partition, ec::NOT_LEADER_OR_FOLLOWER)
                            }
                            Err(Refused::Read(e)) => {
                                tracing::warn!(topic = %name, partition = fp.partition, "fetch read failed: {e}");
                                any_error = true;
                                partition_data(Some(&p), fp.partition, ec::KAFKA_STORAGE_ERROR)
                            }
                        }
                    }
                },
            };
            parts.push(pd);
        }
        let mut t = FetchableTopicResponse::default().with_partitions(parts);
        if version >= 13 {
            t = t.with_topic_id(w.id);
        } else {
            t = t.with_topic(w.name.clone());
        }
        topics.push(t);
    }
    (topics, total, any_error)
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

/// The response; a consumer's (not a follower's) v2 records are counted as read
/// (down-converted ones were counted as they were converted).
fn respond(
    replica: Option<Follower>,
    wanted: &[Wanted],
    mut topics: Vec<FetchableTopicResponse>,
    version: i16,
    read_committed: bool,
) -> FetchResponse {
    // As Kafka: null for read_uncommitted, a list (empty: Karst has no transactions
    // yet) for read_committed.
    for p in topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
        p.aborted_transactions = read_committed.then(Vec::new);
    }
    if replica.is_none() && fetch_magic(version).is_none() {
        for (w, t) in wanted.iter().zip(&topics) {
            let Ok(name) = &w.resolved else { continue };
            let topic: Arc<str> = Arc::from(name.as_str());
            t.partitions.iter().filter_map(|p| p.records.as_ref()).for_each(|r| crate::metrics::consumed(&topic, r));
        }
    }
    FetchResponse::default().with_responses(topics)
}

pub(crate) async fn handle(b: &Arc<Broker>, mut req: FetchRequest, version: i16) -> FetchResponse {
    let wanted = resolve(b, &mut req, version);
    let (replica_id, epoch) =
        if version >= 15 { (req.replica_state.replica_id.0, req.replica_state.replica_epoch) } else { (req.replica_id.0, -1) };
    let replica = (replica_id >= 0).then_some(Follower { id: replica_id, epoch });
    let max_bytes = if req.max_bytes <= 0 { usize::MAX } else { req.max_bytes as usize };
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let read_committed = version >= 4 && req.isolation_level == 1;
    loop {
        let mut receivers = Vec::new();
        let (topics, total, any_error) = read_all(b, &wanted, max_bytes, version, replica, Some(&mut receivers));
        let done = total >= min_bytes || any_error || receivers.is_empty() || tokio::time::Instant::now() >= deadline;
        if done {
            return respond(replica, &wanted, topics, version, read_committed);
        }
        // Long poll: wait for any of these partitions to advance, or the deadline.
        let changes = select_all(receivers.iter_mut().map(|r| Box::pin(r.changed())));
        if crate::metrics::fetch_wait(tokio::time::timeout_at(deadline, changes)).await.is_err() {
            let (topics, _, _) = read_all(b, &wanted, max_bytes, version, replica, None);
            return respond(replica, &wanted, topics, version, read_committed);
        }
    }
}
