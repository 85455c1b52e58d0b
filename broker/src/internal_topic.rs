//! Internal topics (`__consumer_offsets`, `__transaction_state`): created on first
//! use as Kafka does, and the broker that leads a key's partition coordinates it.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::info;
use uuid::Uuid;

use crate::broker::Broker;
use crate::errors::BrokerError;
use crate::metadata::TopicMeta;

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
