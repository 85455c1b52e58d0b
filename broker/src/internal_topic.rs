//! Internal topics (`__consumer_offsets`, `__transaction_state`): created on first
//! use as Kafka does, and the broker that leads a key's partition coordinates it.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::records::{Record, RecordBatchDecoder};
use tracing::info;
use uuid::Uuid;

use crate::broker::Broker;
use crate::errors::BrokerError;
use crate::metadata::TopicMeta;
use crate::partition::Partition;

/// Creates `name` unless it exists; `lock` serialises the first requests, which
/// wait here for the commit, each on its own task.
pub(crate) async fn ensure(
    b: &Arc<Broker>,
    lock: &tokio::sync::Mutex<()>,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
) -> Result<(), BrokerError> {
    if b.metadata.image().topics.contains_key(name) {
        return Ok(());
    }
    let _g = lock.lock().await;
    if b.metadata.image().topics.contains_key(name) {
        return Ok(());
    }
    // Like Kafka's replication factor of 3 for internal topics, bounded by the brokers there are.
    let brokers = b.metadata.image().cluster.unfenced_brokers().count();
    let replication_factor = i16::try_from(brokers.clamp(1, 3)).unwrap_or(1);
    let meta = TopicMeta { name: name.into(), id: Uuid::new_v4(), partitions, replication_factor, configs };
    match b.create_topic(meta).await {
        Ok(()) | Err(BrokerError::TopicExists(_)) => {
            info!(partitions, "created {name}");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The leader of `topic`-`partition` as node id, host and port on `listener` (None:
/// the first), if it has a live one.
pub(crate) fn leader_endpoint(b: &Broker, topic: &str, partition: i32, listener: Option<&str>) -> Option<(i32, String, i32)> {
    let image = b.metadata.image();
    let state = image.cluster.partition(topic, partition)?;
    let broker = image.cluster.brokers.get(&state.leader).filter(|r| !r.fenced)?;
    let l = crate::handlers::endpoint(&broker.listeners, listener)?;
    Some((state.leader, l.host.clone(), i32::from(l.port)))
}

/// Ok when this broker leads `topic`-`partition` (and so coordinates its keys);
/// else NOT_COORDINATOR, or COORDINATOR_NOT_AVAILABLE while it has no leader or the
/// topic does not exist yet.
pub(crate) fn coordinates(b: &Broker, topic: &str, partition: i32) -> Result<(), i16> {
    use karst_protocol::error_codes as ec;
    if !b.metadata.image().topics.contains_key(topic) {
        return Err(ec::COORDINATOR_NOT_AVAILABLE);
    }
    match b.check_leader(topic, partition) {
        Ok(()) => Ok(()),
        Err(ec::NOT_LEADER_OR_FOLLOWER) => Err(ec::NOT_COORDINATOR),
        Err(_) => Err(ec::COORDINATOR_NOT_AVAILABLE),
    }
}

/// Calls `f` with every record of `p` (a partition of internal topic `topic`) from
/// its log start to its end, control records included, in offset order: how a
/// coordinator reads its state back. A batch that does not decode is Corrupt.
pub(crate) fn for_each_record(p: &Partition, topic: &str, mut f: impl FnMut(Record)) -> Result<(), BrokerError> {
    let mut offset = p.log_start_offset();
    while offset < p.log_end_offset() {
        let slice = p.read_for_follower(offset, 1 << 20).map_err(|e| BrokerError::Startup(format!("reading {topic}: {e}")))?;
        if slice.bytes.is_empty() {
            break;
        }
        // A compacted log has gaps, and batches the cleaner left empty: the next
        // offset to read comes from the batch headers, not the records.
        let mut next = offset;
        for h in karst_batch::batches(&slice.bytes) {
            let (_, h) = h.map_err(|e| BrokerError::Corrupt(format!("{topic}-{}: {e}", p.index)))?;
            next = next.max(h.last_offset().saturating_add(1));
        }
        let mut buf = slice.bytes.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| BrokerError::Corrupt(format!("{topic}-{}: {e}", p.index)))?;
        // Records before the offset asked for, in the batch that holds it, were read.
        sets.into_iter().flat_map(|s| s.records).filter(|r| r.offset >= offset).for_each(&mut f);
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(())
}
