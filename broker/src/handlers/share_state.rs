//! Share-partition state between a share-partition's leader and its group's
//! coordinator: ReadShareGroupState and WriteShareGroupState (KIP-932), served by the
//! coordinator, which keeps the state in the group's `__consumer_offsets` partition
//! (`share::state_log`). A leader that coordinates the group itself calls the same
//! code in process; one that does not sends the requests over the inter-broker
//! listener.
//!
//! Nothing a leader claims changes state unchecked: the broker must coordinate the
//! group now (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS); the topic and
//! partition must exist; a leader epoch above the metadata image's is
//! UNKNOWN_LEADER_EPOCH, one below it or below the highest seen for the
//! share-partition FENCED_LEADER_EPOCH, so a deposed leader (paused, partitioned)
//! never overwrites its successor's state; a state epoch below the stored one is
//! FENCED_STATE_EPOCH (the offsets were altered since); state batches must describe
//! a valid snapshot (INVALID_REQUEST). From clients the APIs need CLUSTER_ACTION on
//! the inter-broker listener, as WriteTxnMarkers.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::read_share_group_state_request::{PartitionData as ReadPartition, ReadStateData};
use kafka_protocol::messages::read_share_group_state_response::{PartitionResult as ReadResult, ReadStateResult, StateBatch as ReadBatch};
use kafka_protocol::messages::write_share_group_state_request::{
    PartitionData as WritePartition, StateBatch as WriteBatch, WriteStateData,
};
use kafka_protocol::messages::write_share_group_state_response::{PartitionResult as WriteResult, WriteStateResult};
use kafka_protocol::messages::*;
use karst_protocol::error_codes as ec;
use tracing::{debug, warn};
use uuid::Uuid;

use super::str_bytes;
use crate::broker::Broker;
use crate::group::{Pending, OFFSETS_TOPIC};
use crate::peer::Conn;
use crate::share::partition::Snapshot;
use crate::share::state_log::{self, ShareKey};
use crate::share::SpKey;

/// Kafka's FENCED_STATE_EPOCH.
pub(crate) const FENCED_STATE_EPOCH: i16 = 124;
const VERSION: i16 = 0;
/// How long a leader waits for the coordinator's answer: longer than the coordinator
/// waits for its write to commit, so that the answer, not a timeout here, says
/// whether the state was written.
const STATE_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(35);

// ---------------------------------------------------------------- coordinator side

/// The share-partition a request names, checked against the metadata image: the
/// key, and the partition's leader epoch there.
fn checked(b: &Broker, group: &str, topic_id: Uuid, partition: i32, leader_epoch: i32) -> Result<SpKey, i16> {
    if group.is_empty() {
        return Err(ec::INVALID_REQUEST);
    }
    b.groups.coordinates(b, group)?;
    let image = b.metadata.image();
    let meta = image.topic_by_id(topic_id).ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)?;
    let state = image.cluster.partition(&meta.name, partition).ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)?;
    if leader_epoch > state.leader_epoch {
        return Err(ec::UNKNOWN_LEADER_EPOCH);
    }
    if leader_epoch < state.leader_epoch {
        return Err(ec::FENCED_LEADER_EPOCH);
    }
    Ok((group.to_string(), meta.name.clone(), partition))
}

/// Appends share records of `group` to its `__consumer_offsets` partition here and
/// applies them at once; the returned write is to be awaited.
pub(crate) fn append(b: &Broker, group: &str, records: Vec<(ShareKey, Option<Bytes>)>) -> Result<Pending, i16> {
    b.groups.coordinates(b, group)?;
    let encoded: Vec<(Bytes, Option<Bytes>)> = records.iter().map(|(k, v)| (state_log::encode_key(k), v.clone())).collect();
    let pending = b.groups.persist(b, group, &encoded)?;
    for (k, v) in records {
        b.shares.apply(k, v);
    }
    Ok(pending)
}

pub(crate) fn snapshot_record(key: &SpKey, s: Option<&Snapshot>) -> (ShareKey, Option<Bytes>) {
    let k = ShareKey::Partition { group: key.0.clone(), topic: key.1.clone(), partition: key.2 };
    (k, s.map(state_log::encode_partition))
}

/// The coordinator's answer to a read at `leader_epoch`: the stored state, or None
/// for a share-partition never started. A group set to start at the earliest
/// offset starts at 0 here (the leader moves it to the log's start), so that the
/// configs stay with the coordinator.
pub(crate) async fn read_here(b: &Broker, group: &str, topic_id: Uuid, partition: i32, leader_epoch: i32) -> Result<Option<Snapshot>, i16> {
    let (stored, pending) = {
        let key = checked(b, group, topic_id, partition, leader_epoch)?;
        let mut fences = b.shares.fences.lock();
        let stored = b.shares.snapshots.lock().get(&key).filter(|s| s.topic_id == topic_id).cloned();
        let fence = fences.get(&key).copied().unwrap_or(-1).max(stored.as_ref().map_or(-1, |s| s.leader_epoch));
        if leader_epoch < fence {
            return Err(ec::FENCED_LEADER_EPOCH);
        }
        fences.insert(key.clone(), leader_epoch);
        match stored {
            Some(s) => (Some(s), None),
            None if b.shares.starts_earliest(group) => {
                let s = Snapshot { leader_epoch, ..Snapshot::at(topic_id, 0) };
                let pending = append(b, group, vec![snapshot_record(&key, Some(&s))])?;
                (Some(s), Some(pending))
            }
            None => (None, None),
        }
    };
    if let Some(p) = pending {
        p.committed().await?;
    }
    Ok(stored)
}

/// The coordinator's side of a write: checked, appended, committed.
pub(crate) async fn write_here(b: &Broker, group: &str, partition: i32, s: Snapshot) -> Result<(), i16> {
    let pending = {
        let key = checked(b, group, s.topic_id, partition, s.leader_epoch)?;
        let mut fences = b.shares.fences.lock();
        let stored = b.shares.snapshots.lock().get(&key).filter(|x| x.topic_id == s.topic_id).map(|x| (x.leader_epoch, x.state_epoch));
        let fence = fences.get(&key).copied().unwrap_or(-1).max(stored.map_or(-1, |x| x.0));
        if s.leader_epoch < fence {
            return Err(ec::FENCED_LEADER_EPOCH);
        }
        if stored.is_some_and(|x| s.state_epoch < x.1) {
            return Err(FENCED_STATE_EPOCH);
        }
        fences.insert(key.clone(), s.leader_epoch);
        append(b, group, vec![snapshot_record(&key, Some(&s))])?
    };
    // Appended and then deposed: the new coordinator may have the write or not, so
    // the leader (and its client) is told the outcome is unknown, not that it failed.
    pending.committed().await.map_err(|code| if code == ec::NOT_COORDINATOR { ec::REQUEST_TIMED_OUT } else { code })
}

/// ReadShareGroupState, from another broker leading the partitions.
pub(crate) async fn read(b: Arc<Broker>, req: ReadShareGroupStateRequest) -> ReadShareGroupStateResponse {
    let allowed = super::txn::inter_broker_allowed(&b);
    let group = req.group_id.to_string();
    let mut results = Vec::new();
    for t in req.topics {
        let mut partitions = Vec::new();
        for p in t.partitions {
            let out = ReadResult::default().with_partition(p.partition).with_start_offset(-1);
            let got = if allowed {
                read_here(&b, &group, t.topic_id, p.partition, p.leader_epoch).await
            } else {
                Err(ec::CLUSTER_AUTHORIZATION_FAILED)
            };
            partitions.push(match got {
                Ok(None) => out,
                Ok(Some(s)) => {
                    let batches = s
                        .batches()
                        .map(|(first, last, state, count)| {
                            ReadBatch::default()
                                .with_first_offset(first)
                                .with_last_offset(last)
                                .with_delivery_state(state)
                                .with_delivery_count(count)
                        })
                        .collect();
                    out.with_state_epoch(s.state_epoch).with_start_offset(s.start).with_state_batches(batches)
                }
                Err(code) => out.with_error_code(code),
            });
        }
        results.push(ReadStateResult::default().with_topic_id(t.topic_id).with_partitions(partitions));
    }
    ReadShareGroupStateResponse::default().with_results(results)
}

/// WriteShareGroupState, from another broker leading the partitions.
pub(crate) async fn write(b: Arc<Broker>, req: WriteShareGroupStateRequest) -> WriteShareGroupStateResponse {
    let allowed = super::txn::inter_broker_allowed(&b);
    let group = req.group_id.to_string();
    let mut results = Vec::new();
    for t in req.topics {
        let mut partitions = Vec::new();
        for p in t.partitions {
            let batches = p.state_batches.iter().map(|x| (x.first_offset, x.last_offset, x.delivery_state, x.delivery_count));
            let code = match Snapshot::from_batches(t.topic_id, p.start_offset, batches) {
                _ if !allowed => ec::CLUSTER_AUTHORIZATION_FAILED,
                None => ec::INVALID_REQUEST,
                Some(s) => {
                    let s = Snapshot { state_epoch: p.state_epoch, leader_epoch: p.leader_epoch, ..s };
                    write_here(&b, &group, p.partition, s).await.err().unwrap_or(ec::NONE)
                }
            };
            partitions.push(WriteResult::default().with_partition(p.partition).with_error_code(code));
        }
        results.push(WriteStateResult::default().with_topic_id(t.topic_id).with_partitions(partitions));
    }
    WriteShareGroupStateResponse::default().with_results(results)
}

// ---------------------------------------------------------------- leader side

/// Where `group`'s coordinator is: None for this broker, else its inter-broker address.
fn coordinator(b: &Broker, group: &str) -> Result<Option<String>, i16> {
    match b.groups.coordinates(b, group) {
        Ok(()) => Ok(None),
        Err(ec::NOT_COORDINATOR) => {
            let image = b.metadata.image();
            let index = crate::group::records::partition_for(group, b.groups.partitions);
            let leader = image.cluster.partition(OFFSETS_TOPIC, index).map(|s| s.leader).ok_or(ec::COORDINATOR_NOT_AVAILABLE)?;
            crate::peer::inter_broker_addr(b, &image, leader).map(Some).ok_or(ec::COORDINATOR_NOT_AVAILABLE)
        }
        Err(code) => Err(code),
    }
}

/// One request to the coordinator at `addr`, on an idle pooled connection or a new one.
async fn call(b: &Broker, addr: &str, key: ApiKey, body: RequestKind) -> Result<ResponseKind, i16> {
    let idle = b.shares.peers.lock().get_mut(addr).and_then(|v| v.pop());
    let mut conn = match idle {
        Some(c) => c,
        None => Conn::connect(b, addr, format!("karst-share-{}", b.node_id)).await.map_err(|e| {
            debug!("share state: {e}");
            ec::COORDINATOR_NOT_AVAILABLE
        })?,
    };
    match conn.call_within(key, VERSION, body, STATE_CALL_TIMEOUT).await {
        Ok(r) => {
            let mut peers = b.shares.peers.lock();
            let idle = peers.entry(addr.to_string()).or_default();
            if idle.len() < 8 {
                idle.push(conn);
            }
            Ok(r)
        }
        Err(e) => {
            // Sent, and no answer: the coordinator may have written it or not.
            debug!("share state call to {addr}: {e}");
            Err(ec::REQUEST_TIMED_OUT)
        }
    }
}

/// Reads a share-partition's state from its group's coordinator, as the partition's
/// leader at `leader_epoch`.
pub(crate) async fn load(b: &Broker, key: &SpKey, topic_id: Uuid, leader_epoch: i32) -> Result<Option<Snapshot>, i16> {
    let Some(addr) = coordinator(b, &key.0)? else { return read_here(b, &key.0, topic_id, key.2, leader_epoch).await };
    let req = ReadShareGroupStateRequest::default().with_group_id(str_bytes(key.0.clone())).with_topics(vec![ReadStateData::default()
        .with_topic_id(topic_id)
        .with_partitions(vec![ReadPartition::default().with_partition(key.2).with_leader_epoch(leader_epoch)])]);
    let ResponseKind::ReadShareGroupState(resp) =
        call(b, &addr, ApiKey::ReadShareGroupState, RequestKind::ReadShareGroupState(req)).await?
    else {
        return Err(ec::COORDINATOR_NOT_AVAILABLE);
    };
    let Some(p) = resp.results.into_iter().flat_map(|r| r.partitions).find(|p| p.partition == key.2) else {
        return Err(ec::COORDINATOR_NOT_AVAILABLE);
    };
    if p.error_code != ec::NONE {
        return Err(p.error_code);
    }
    if p.start_offset < 0 {
        return Ok(None);
    }
    let batches = p.state_batches.iter().map(|x| (x.first_offset, x.last_offset, x.delivery_state, x.delivery_count));
    match Snapshot::from_batches(topic_id, p.start_offset, batches) {
        Some(s) => Ok(Some(Snapshot { state_epoch: p.state_epoch, leader_epoch, ..s })),
        None => {
            warn!(group = key.0, topic = key.1, partition = key.2, "the coordinator answered share state that does not decode");
            Err(ec::UNKNOWN_SERVER_ERROR)
        }
    }
}

/// Writes a share-partition's state to its group's coordinator, as the leader at
/// the snapshot's leader epoch.
pub(crate) async fn save(b: &Broker, key: &SpKey, s: Snapshot) -> Result<(), i16> {
    let Some(addr) = coordinator(b, &key.0)? else { return write_here(b, &key.0, key.2, s).await };
    let batches = s
        .batches()
        .map(|(first, last, state, count)| {
            WriteBatch::default().with_first_offset(first).with_last_offset(last).with_delivery_state(state).with_delivery_count(count)
        })
        .collect();
    let part = WritePartition::default()
        .with_partition(key.2)
        .with_state_epoch(s.state_epoch)
        .with_leader_epoch(s.leader_epoch)
        .with_start_offset(s.start)
        .with_state_batches(batches);
    let req = WriteShareGroupStateRequest::default()
        .with_group_id(str_bytes(key.0.clone()))
        .with_topics(vec![WriteStateData::default().with_topic_id(s.topic_id).with_partitions(vec![part])]);
    let ResponseKind::WriteShareGroupState(resp) =
        call(b, &addr, ApiKey::WriteShareGroupState, RequestKind::WriteShareGroupState(req)).await?
    else {
        return Err(ec::COORDINATOR_NOT_AVAILABLE);
    };
    match resp.results.into_iter().flat_map(|r| r.partitions).find(|p| p.partition == key.2) {
        Some(p) if p.error_code == ec::NONE => Ok(()),
        Some(p) => Err(p.error_code),
        None => Err(ec::COORDINATOR_NOT_AVAILABLE),
    }
}

/// The error a share client gets for a failed read or write of share state, as
/// Kafka's share-partition maps its persister's errors.
pub(crate) fn for_client(code: i16) -> i16 {
    match code {
        ec::NOT_COORDINATOR | ec::COORDINATOR_NOT_AVAILABLE | ec::COORDINATOR_LOAD_IN_PROGRESS | ec::UNKNOWN_LEADER_EPOCH => {
            ec::COORDINATOR_NOT_AVAILABLE
        }
        ec::FENCED_LEADER_EPOCH => ec::NOT_LEADER_OR_FOLLOWER,
        ec::REQUEST_TIMED_OUT | ec::NOT_LEADER_OR_FOLLOWER | ec::UNKNOWN_TOPIC_OR_PARTITION | FENCED_STATE_EPOCH => code,
        _ => ec::UNKNOWN_SERVER_ERROR,
    }
}
