//! ElectLeaders: preferred (and, from v1, unclean) leader election through the
//! controller, with the answers of Kafka's `ReplicationControlManager.electLeaders`.
//! Any broker takes the request; the change is proposed to the quorum's leader.

use std::sync::Arc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use karst_controller::{MetadataCommand, PartitionState};
use karst_protocol::error_codes as ec;
use tracing::info;

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::errors::BrokerError;
use crate::metadata::NO_LEADER;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Election {
    Preferred,
    Unclean,
}

/// The leader an election would choose for `p`, or the error Kafka answers.
/// `alive`: whether a broker may lead (registered and unfenced).
fn choose(p: &PartitionState, election: Election, alive: impl Fn(i32) -> bool) -> Result<i32, i16> {
    let preferred = p.replicas.first().copied().unwrap_or(NO_LEADER);
    let valid = |r: i32| r != NO_LEADER && p.isr.contains(&r) && alive(r);
    match election {
        Election::Preferred if preferred == p.leader => Err(ec::ELECTION_NOT_NEEDED),
        Election::Unclean if p.leader != NO_LEADER => Err(ec::ELECTION_NOT_NEEDED),
        Election::Preferred => {
            let target = p.target_replicas();
            match target.first() {
                Some(&r) if valid(r) => Ok(r),
                // The current leader may keep leading: nothing changes.
                _ if valid(p.leader) => Err(ec::PREFERRED_LEADER_NOT_AVAILABLE),
                _ => target.iter().skip(1).copied().find(|r| valid(*r)).ok_or(ec::PREFERRED_LEADER_NOT_AVAILABLE),
            }
        }
        // Leaderless: the first live in-sync replica. Karst does not promote an
        // out-of-sync replica (that would lose acknowledged writes), which Kafka's
        // unclean election would.
        Election::Unclean => p.target_replicas().into_iter().find(|r| valid(*r)).ok_or(ec::ELIGIBLE_LEADERS_NOT_AVAILABLE),
    }
}

pub(crate) async fn handle(b: Arc<Broker>, req: ElectLeadersRequest, version: i16) -> ElectLeadersResponse {
    if req.topic_partitions.as_ref().is_some_and(Vec::is_empty) {
        // Kafka's controller answers an empty list before looking at anything else.
        return ElectLeadersResponse::default();
    }
    let election = match (version, req.election_type) {
        (0, _) | (_, 0) => Election::Preferred,
        (_, 1) => Election::Unclean,
        (_, other) => return invalid(&req, &format!("Unknown election type {other}")),
    };
    let Some(wanted) = req.topic_partitions else {
        // Null: every partition, leaving out those that need no election.
        let image = b.metadata.image();
        let mut results = Vec::new();
        for t in image.cluster.topics.values() {
            let mut parts = Vec::new();
            for p in 0..i32::try_from(t.partitions.len()).unwrap_or(i32::MAX) {
                let r = elect(&b, &t.name, p, election).await;
                if r.error_code != ec::ELECTION_NOT_NEEDED {
                    parts.push(r);
                }
            }
            results.push(ReplicaElectionResult::default().with_topic(topic_name(&t.name)).with_partition_result(parts));
        }
        return ElectLeadersResponse::default().with_replica_election_results(results);
    };
    let mut results = Vec::with_capacity(wanted.len());
    for t in wanted {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            parts.push(elect(&b, t.topic.as_str(), p, election).await);
        }
        results.push(ReplicaElectionResult::default().with_topic(t.topic).with_partition_result(parts));
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// Kafka's answer to a request it refuses as a whole.
fn invalid(req: &ElectLeadersRequest, message: &str) -> ElectLeadersResponse {
    let results = req
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| {
            let parts = t.partitions.iter().map(|p| result(*p, ec::INVALID_REQUEST, Some(message.to_string()))).collect();
            ReplicaElectionResult::default().with_topic(t.topic.clone()).with_partition_result(parts)
        })
        .collect();
    ElectLeadersResponse::default().with_error_code(ec::INVALID_REQUEST).with_replica_election_results(results)
}

fn result(partition: i32, code: i16, message: Option<String>) -> PartitionResult {
    let message = message.or_else(|| ec::default_message(code).map(str::to_string));
    PartitionResult::default().with_partition_id(partition).with_error_code(code).with_error_message(message.map(str_bytes))
}

async fn elect(b: &Broker, topic: &str, partition: i32, election: Election) -> PartitionResult {
    let image = b.metadata.image();
    let Some(t) = image.cluster.topic(topic) else {
        return result(partition, ec::UNKNOWN_TOPIC_OR_PARTITION, Some(format!("No such topic as {topic}")));
    };
    let Some(state) = usize::try_from(partition).ok().and_then(|i| t.partitions.get(i)) else {
        return result(partition, ec::UNKNOWN_TOPIC_OR_PARTITION, Some(format!("No such partition as {topic}-{partition}")));
    };
    let leader = match choose(state, election, |id| image.cluster.is_unfenced(id)) {
        Ok(leader) => leader,
        Err(code) => return result(partition, code, None),
    };
    let cmd =
        MetadataCommand::ChangePartitionLeader { topic: topic.to_string(), partition, partition_epoch: state.partition_epoch, leader };
    match b.metadata.propose(cmd).await {
        Ok(_) => {
            info!(topic, partition, from = state.leader, to = leader, ?election, "elected a leader");
            result(partition, ec::NONE, None)
        }
        Err(BrokerError::Metadata { code, message }) => result(partition, code, Some(message)),
        Err(BrokerError::UnknownTopic(_)) => result(partition, ec::UNKNOWN_TOPIC_OR_PARTITION, None),
        Err(e) => result(partition, ec::UNKNOWN_SERVER_ERROR, Some(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[i32], leader: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 3,
            isr: isr.to_vec(),
            partition_epoch: 5,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    #[test]
    fn preferred_election() {
        let all = |_| true;
        // Already led by the first replica.
        assert_eq!(choose(&state(&[1, 2], 1, &[1, 2]), Election::Preferred, all), Err(ec::ELECTION_NOT_NEEDED));
        // The first replica is in sync and alive: it takes over.
        assert_eq!(choose(&state(&[1, 2], 2, &[1, 2]), Election::Preferred, all), Ok(1));
        // Out of sync, or fenced: the current leader stays.
        assert_eq!(choose(&state(&[1, 2], 2, &[2]), Election::Preferred, all), Err(ec::PREFERRED_LEADER_NOT_AVAILABLE));
        assert_eq!(choose(&state(&[1, 2], 2, &[1, 2]), Election::Preferred, |id| id != 1), Err(ec::PREFERRED_LEADER_NOT_AVAILABLE));
        // Leaderless, the preferred one down: another in-sync replica, as Kafka does.
        assert_eq!(choose(&state(&[1, 2, 3], NO_LEADER, &[1, 3]), Election::Preferred, |id| id != 1), Ok(3));
        assert_eq!(choose(&state(&[1], NO_LEADER, &[1]), Election::Preferred, |_| false), Err(ec::PREFERRED_LEADER_NOT_AVAILABLE));
    }

    #[test]
    fn unclean_election() {
        assert_eq!(choose(&state(&[1, 2], 2, &[2]), Election::Unclean, |_| true), Err(ec::ELECTION_NOT_NEEDED));
        assert_eq!(choose(&state(&[1, 2], NO_LEADER, &[1, 2]), Election::Unclean, |id| id == 2), Ok(2));
        // Only an out-of-sync replica is alive: Karst does not promote it.
        assert_eq!(choose(&state(&[1, 2], NO_LEADER, &[1]), Election::Unclean, |id| id == 2), Err(ec::ELIGIBLE_LEADERS_NOT_AVAILABLE));
    }

    #[test]
    fn an_empty_replica_list_never_panics() {
        // Kafka's preferred replica of an empty list is "no leader", which it has.
        assert_eq!(choose(&state(&[], NO_LEADER, &[]), Election::Preferred, |_| true), Err(ec::ELECTION_NOT_NEEDED));
        assert_eq!(choose(&state(&[], NO_LEADER, &[]), Election::Unclean, |_| true), Err(ec::ELIGIBLE_LEADERS_NOT_AVAILABLE));
    }
}
