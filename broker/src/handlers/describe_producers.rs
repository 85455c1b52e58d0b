//! DescribeProducers: the idempotent producers each partition's log remembers, as
//! Kafka's `ReplicaManager.activeProducerState` answers. Any replica holding the
//! partition answers (followers replay producer state too); a broker that holds
//! no copy answers NOT_LEADER_OR_FOLLOWER. Karst has no transactions yet, so the
//! coordinator epoch and transaction start offset are always -1.

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use karst_protocol::error_codes as ec;

use super::str_bytes;
use crate::broker::Broker;
use crate::topic_name::invalid_reason;

pub(crate) fn handle(b: &Broker, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let image = b.metadata.image();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.to_string();
            // Errors of the whole topic, with Kafka's texts.
            let topic_error = if let Some(why) = invalid_reason(&name) {
                Some((ec::INVALID_TOPIC_EXCEPTION, why))
            } else if image.cluster.topic(&name).is_none() {
                let code = ec::UNKNOWN_TOPIC_OR_PARTITION;
                Some((code, ec::default_message(code).unwrap_or_default().to_string()))
            } else {
                None
            };
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let r = PartitionResponse::default().with_partition_index(index);
                    if let Some((code, message)) = &topic_error {
                        return r.with_error_code(*code).with_error_message(Some(str_bytes(message.clone())));
                    }
                    match producers(b, &name, index) {
                        Ok(active) => r.with_active_producers(active),
                        Err(code) => r.with_error_code(code),
                    }
                })
                .collect();
            TopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn producers(b: &Broker, topic: &str, index: i32) -> Result<Vec<ProducerState>, i16> {
    let state = b.metadata.image().cluster.partition(topic, index).cloned().ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)?;
    let p = b.partitions.get(topic, index).filter(|_| state.replicas.contains(&b.node_id)).ok_or(ec::NOT_LEADER_OR_FOLLOWER)?;
    if p.offline_reason().is_some() {
        return Err(ec::KAFKA_STORAGE_ERROR);
    }
    let active = p.active_producers().ok_or(ec::NOT_LEADER_OR_FOLLOWER)?;
    Ok(active
        .into_iter()
        .map(|a| {
            ProducerState::default()
                .with_producer_id(ProducerId(a.producer_id))
                .with_producer_epoch(i32::from(a.epoch))
                .with_last_sequence(a.last_sequence)
                .with_last_timestamp(a.last_timestamp)
                .with_coordinator_epoch(-1)
                .with_current_txn_start_offset(-1)
        })
        .collect())
}
