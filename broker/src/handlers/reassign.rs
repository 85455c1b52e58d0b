//! Partition reassignment: AlterPartitionReassignments starts, replaces or cancels
//! moves through the controller; ListPartitionReassignments reports the moves in
//! progress. The move itself is replication: added replicas follow the leader and
//! the controller completes the move when they are all in the ISR.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{ReassignablePartitionResponse, ReassignableTopicResponse};
use kafka_protocol::messages::list_partition_reassignments_response::{OngoingPartitionReassignment, OngoingTopicReassignment};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId as WireBrokerId, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse,
};
use karst_controller::{MetadataCommand, PartitionState};
use karst_protocol::error_codes as ec;
use tracing::info;

use super::str_bytes;
use crate::broker::Broker;
use crate::errors::BrokerError;

pub(crate) async fn alter(b: Arc<Broker>, req: AlterPartitionReassignmentsRequest) -> AlterPartitionReassignmentsResponse {
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = t.name.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            let target: Option<Vec<i32>> = p.replicas.map(|rs| rs.into_iter().map(|r| r.0).collect());
            partitions.push(match reassign(&b, &topic, p.partition_index, target, req.allow_replication_factor_change).await {
                Ok(()) => r,
                Err((code, message)) => r.with_error_code(code).with_error_message(Some(str_bytes(message))),
            });
        }
        responses.push(ReassignableTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(req.allow_replication_factor_change)
        .with_responses(responses)
}

async fn reassign(b: &Broker, topic: &str, partition: i32, target: Option<Vec<i32>>, rf_change: bool) -> Result<(), (i16, String)> {
    if let Some(target) = &target {
        let image = b.metadata.image();
        let Some(state) = image.cluster.partition(topic, partition) else {
            return Err((ec::UNKNOWN_TOPIC_OR_PARTITION, format!("{topic}-{partition} does not exist")));
        };
        // KIP-860: a v0 request (the flag's default is true) may change the factor;
        // a client that sets it false asks for the factor to be kept.
        let original = state.replicas.len() - state.adding_replicas.len();
        if !rf_change && target.len() != original {
            return Err((
                ec::INVALID_REPLICATION_FACTOR,
                format!("{topic}-{partition} has {original} replicas; the new list has {}", target.len()),
            ));
        }
        let added: Vec<i32> = target.iter().filter(|id| !state.replicas.contains(id)).copied().collect();
        crate::limits::check_hosted_partitions(&image.cluster, &[added], b.config.max_broker_partitions).map_err(|e| match e {
            BrokerError::Metadata { code, message } => (code, message),
            other => (ec::UNKNOWN_SERVER_ERROR, other.to_string()),
        })?;
    }
    let cmd = MetadataCommand::ReassignPartition { topic: topic.to_string(), partition, target: target.clone() };
    match b.metadata.propose(cmd).await {
        Ok(_) => {
            match target {
                Some(t) => info!(topic, partition, target = ?t, "reassigning partition"),
                None => info!(topic, partition, "cancelled the partition's reassignment"),
            }
            Ok(())
        }
        Err(BrokerError::Metadata { code, message }) => Err((code, message)),
        Err(BrokerError::UnknownTopic(t)) => Err((ec::UNKNOWN_TOPIC_OR_PARTITION, format!("topic `{t}` does not exist"))),
        Err(e) => Err((ec::UNKNOWN_SERVER_ERROR, e.to_string())),
    }
}

pub(crate) fn list(b: &Arc<Broker>, req: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    let image = b.metadata.image();
    let ongoing = |p: &PartitionState, index: i32| {
        OngoingPartitionReassignment::default()
            .with_partition_index(index)
            .with_replicas(wire(&p.replicas))
            .with_adding_replicas(wire(&p.adding_replicas))
            .with_removing_replicas(wire(&p.removing_replicas))
    };
    let topics: Vec<OngoingTopicReassignment> = match req.topics {
        // Null: every partition being moved.
        None => image
            .cluster
            .topics
            .values()
            .filter_map(|t| {
                let parts: Vec<_> = (0i32..).zip(&t.partitions).filter(|(_, p)| p.is_reassigning()).map(|(i, p)| ongoing(p, i)).collect();
                (!parts.is_empty())
                    .then(|| OngoingTopicReassignment::default().with_name(str_bytes(t.name.clone()).into()).with_partitions(parts))
            })
            .collect(),
        // Kafka lists only the named partitions that are being moved, silently
        // skipping the others (and unknown ones).
        Some(wanted) => wanted
            .into_iter()
            .filter_map(|w| {
                let t = image.cluster.topic(w.name.as_str())?;
                let parts: Vec<_> = w
                    .partition_indexes
                    .iter()
                    .filter_map(|i| usize::try_from(*i).ok().and_then(|u| t.partitions.get(u)).map(|p| (*i, p)))
                    .filter(|(_, p)| p.is_reassigning())
                    .map(|(i, p)| ongoing(p, i))
                    .collect();
                (!parts.is_empty()).then(|| OngoingTopicReassignment::default().with_name(w.name).with_partitions(parts))
            })
            .collect(),
    };
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

fn wire(ids: &[i32]) -> Vec<WireBrokerId> {
    ids.iter().map(|i| WireBrokerId(*i)).collect()
}
