//! Transaction markers: once a transaction's outcome is durable in
//! `__transaction_state`, a COMMIT or ABORT marker goes to every partition of it —
//! appended here where this broker leads the partition, else sent to its leader
//! with WriteTxnMarkers — and each waits until replicated (Kafka appends markers
//! with acks=all). Then the transaction is complete.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ApiKey, ProducerId, RequestKind, ResponseKind, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use karst_protocol::error_codes as ec;
use karst_storage::StorageError;
use tracing::{debug, info, warn};

use crate::broker::{now_ms, Broker};
use crate::group::{Pending, OFFSETS_TOPIC};
use crate::partition::PartitionError;
use crate::peer::Conn;

/// Between rounds of markers that could not all be written.
const RETRY: Duration = Duration::from_millis(200);

/// The marker of one transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Marker {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) coordinator_epoch: i32,
    pub(crate) commit: bool,
}

/// Appends `m` to `topic`-`partition`, which this broker must lead, and waits until
/// it is replicated. The group coordinator learns of markers in `__consumer_offsets`.
pub(crate) async fn write_local(b: &Arc<Broker>, topic: &str, partition: i32, m: Marker) -> Result<(), i16> {
    b.check_leader(topic, partition)?;
    let p = b.partitions.get(topic, partition).ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)?;
    let info = p.append_marker(m.producer_id, m.producer_epoch, m.coordinator_epoch, m.commit, now_ms()).map_err(|e| match e {
        PartitionError::Storage(StorageError::InvalidProducerEpoch { .. }) => ec::INVALID_PRODUCER_EPOCH,
        PartitionError::Storage(StorageError::TransactionCoordinatorFenced { .. }) => ec::TRANSACTION_COORDINATOR_FENCED,
        PartitionError::Closed => ec::NOT_LEADER_OR_FOLLOWER,
        e => {
            warn!(topic, partition, "writing a transaction marker failed: {e}");
            ec::KAFKA_STORAGE_ERROR
        }
    })?;
    b.after_append(&p);
    if topic == OFFSETS_TOPIC {
        b.groups.complete_txn(partition, m.producer_id, m.commit);
    }
    crate::metrics::txn_marker(m.commit);
    if Pending::new(p, info.last_offset).durable().await {
        Ok(())
    } else {
        Err(ec::NOT_ENOUGH_REPLICAS)
    }
}

/// What became of one partition's marker.
enum Outcome {
    Done,
    /// Try again (no leader yet, leader moved, not replicated yet).
    Retry,
    /// A newer producer epoch or coordinator wrote there: this coordinator stops.
    Fenced,
}

fn outcome(code: i16) -> Outcome {
    match code {
        ec::NONE | ec::UNKNOWN_TOPIC_OR_PARTITION => Outcome::Done,
        ec::INVALID_PRODUCER_EPOCH | ec::TRANSACTION_COORDINATOR_FENCED => Outcome::Fenced,
        _ => Outcome::Retry,
    }
}

/// Writes `m` to every partition in `partitions` until each is written (or its
/// topic is gone); false if this coordinator was fenced or is no longer the
/// coordinator of `id` at its epoch.
async fn write_all(b: &Arc<Broker>, id: &str, m: Marker, partitions: &BTreeSet<(String, i32)>) -> bool {
    let mut left: BTreeSet<(String, i32)> = partitions.clone();
    while !left.is_empty() {
        if !b.txns.still_at(id, m.coordinator_epoch) {
            return false;
        }
        let image = b.metadata.image();
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for (t, p) in &left {
            match image.cluster.partition(t, *p) {
                None => {
                    by_leader.entry(-2).or_default().push((t.clone(), *p));
                }
                Some(s) => by_leader.entry(s.leader).or_default().push((t.clone(), *p)),
            }
        }
        let mut done = Vec::new();
        for (leader, parts) in by_leader {
            let results: Vec<((String, i32), i16)> = match leader {
                -2 => parts.into_iter().map(|tp| (tp, ec::UNKNOWN_TOPIC_OR_PARTITION)).collect(),
                l if l < 0 => parts.into_iter().map(|tp| (tp, ec::LEADER_NOT_AVAILABLE)).collect(),
                l if l == b.node_id => {
                    let mut out = Vec::new();
                    for (t, p) in parts {
                        let code = write_local(b, &t, p, m).await.err().unwrap_or(ec::NONE);
                        out.push(((t, p), code));
                    }
                    out
                }
                l => write_remote(b, &image, l, m, parts).await,
            };
            for (tp, code) in results {
                match outcome(code) {
                    Outcome::Done => done.push(tp),
                    Outcome::Retry => debug!(transactional_id = id, topic = %tp.0, partition = tp.1, code, "transaction marker: retrying"),
                    Outcome::Fenced => {
                        warn!(transactional_id = id, topic = %tp.0, partition = tp.1, code, "transaction marker refused: a newer producer epoch or coordinator wrote there");
                        return false;
                    }
                }
            }
        }
        for tp in done {
            left.remove(&tp);
        }
        if !left.is_empty() {
            tokio::time::sleep(RETRY).await;
        }
    }
    true
}

/// Sends `m` for `parts` to broker `leader`; every partition gets a code.
async fn write_remote(
    b: &Broker,
    image: &crate::metadata::ClusterImage,
    leader: i32,
    m: Marker,
    parts: Vec<(String, i32)>,
) -> Vec<((String, i32), i16)> {
    let fail = |parts: Vec<(String, i32)>, why: String| {
        debug!(leader, "sending transaction markers failed: {why}");
        parts.into_iter().map(|tp| (tp, ec::NETWORK_EXCEPTION)).collect::<Vec<_>>()
    };
    let Some(addr) = crate::peer::inter_broker_addr(b, image, leader) else {
        return fail(parts, "no listener".into());
    };
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &parts {
        topics.entry(t.as_str()).or_default().push(*p);
    }
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(m.producer_id))
        .with_producer_epoch(m.producer_epoch)
        .with_transaction_result(m.commit)
        .with_coordinator_epoch(m.coordinator_epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    WritableTxnMarkerTopic::default().with_name(TopicName(StrBytes::from_string(t.to_string()))).with_partition_indexes(ps)
                })
                .collect(),
        );
    let req = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
    let mut conn = match Conn::connect(b, &addr, format!("karst-txn-coordinator-{}", b.node_id)).await {
        Ok(c) => c,
        Err(why) => return fail(parts, why),
    };
    let resp = match conn.call(ApiKey::WriteTxnMarkers, 1, RequestKind::WriteTxnMarkers(req)).await {
        Ok(ResponseKind::WriteTxnMarkers(r)) => r,
        Ok(_) => return fail(parts, "unexpected response".into()),
        Err(why) => return fail(parts, why),
    };
    let mut codes: BTreeMap<(String, i32), i16> = BTreeMap::new();
    for r in resp.markers {
        for t in r.topics {
            for p in t.partitions {
                codes.insert((t.name.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    parts
        .into_iter()
        .map(|tp| {
            let code = codes.get(&tp).copied().unwrap_or(ec::UNKNOWN_SERVER_ERROR);
            (tp, code)
        })
        .collect()
}

/// Writes the markers of `id`'s decided transaction and then its completion, on a
/// task of its own, unless the coordinator moves meanwhile (the new one resumes).
pub(crate) fn complete_later(b: Arc<Broker>, id: String, coordinator_epoch: i32) {
    tokio::spawn(async move {
        let Some(meta) = b.txns.entries.lock().get(&id).cloned() else { return };
        let Some(commit) = meta.state.preparing() else { return };
        let m = Marker { producer_id: meta.producer_id, producer_epoch: meta.producer_epoch, coordinator_epoch, commit };
        if !write_all(&b, &id, m, &meta.partitions).await {
            return;
        }
        loop {
            let next = b.txns.begin(&id, coordinator_epoch, |current| {
                let Some(cur) = current else { return Ok(None) };
                if cur.producer_id != meta.producer_id || cur.producer_epoch != meta.producer_epoch || cur.state != meta.state {
                    return Ok(None);
                }
                Ok(cur.complete(now_ms()).map(|n| (n, ())))
            });
            match next {
                Ok(None) => return,
                Ok(Some((next, ()))) => match b.txns.write(&b, coordinator_epoch, next).await {
                    Ok(()) => {
                        info!(transactional_id = %id, producer_id = m.producer_id, commit, partitions = meta.partitions.len(), tv2 = meta.tv2, "transaction complete");
                        crate::metrics::txn_completed(commit);
                        return;
                    }
                    Err(ec::NOT_COORDINATOR) => return,
                    Err(code) => warn!(transactional_id = %id, code, "completing a transaction failed; retrying"),
                },
                Err(ec::NOT_COORDINATOR) => return,
                Err(_) => {} // pending: another transition is being written
            }
            if !b.txns.still_at(&id, coordinator_epoch) {
                return;
            }
            tokio::time::sleep(RETRY).await;
        }
    });
}
