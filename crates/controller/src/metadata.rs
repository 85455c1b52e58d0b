//! The replicated cluster metadata image: brokers, topics, partitions and the
//! producer-id allocator. Plain serde types, independent of openraft; changed
//! only by [`ClusterMetadata::apply`](crate::commands) with a committed command.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::errors::CommandError;
use crate::placement::{place_partitions_from, PlacementBroker};

/// Kafka broker id (`node.id`).
pub type BrokerId = i32;

/// `leader` of a partition that has none (offline).
pub const NO_LEADER: BrokerId = -1;

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// A registered broker. Heartbeats are not replicated: fencing is a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: BrokerId,
    /// Changes on every broker process start; a re-registration with the same
    /// incarnation is a retry.
    pub incarnation_id: Uuid,
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
    /// Assigned by the controller on each new registration; requests carrying an
    /// older epoch are stale.
    pub epoch: i64,
    /// A fenced broker leads nothing and is not in any ISR (unless it is the last one).
    pub fenced: bool,
}

/// One partition's replica assignment and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<BrokerId>,
    /// [`NO_LEADER`] when offline.
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub isr: Vec<BrokerId>,
    /// Bumped on every change of this partition; changes must name the current one.
    pub partition_epoch: i32,
    /// A reassignment in progress: replicas being added (they are already in
    /// `replicas`, catching up) and replicas to drop once every added one is in the ISR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<BrokerId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<BrokerId>,
}

impl PartitionState {
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replica set a reassignment in progress moves to (the replicas when none is).
    pub fn target_replicas(&self) -> Vec<BrokerId> {
        self.replicas.iter().copied().filter(|r| !self.removing_replicas.contains(r)).collect()
    }
}

/// One topic; `partitions[i]` is partition `i`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub topic_id: Uuid,
    /// Explicit overrides only.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionState>,
}

/// The whole replicated image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicMetadata>,
    /// First producer id not yet handed out.
    pub next_producer_id: i64,
    /// Epoch the next new broker registration gets.
    pub next_broker_epoch: i64,
    /// Dynamic broker configs: "" is the cluster-wide default, a broker id's own
    /// overrides it (Kafka's DYNAMIC_DEFAULT_BROKER_CONFIG and DYNAMIC_BROKER_CONFIG).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// SCRAM credentials by user, then mechanism (`SCRAM-SHA-256`, `SCRAM-SHA-512`):
    /// salted keys, never a password (Kafka's UserScramCredentialRecord).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram_credentials: BTreeMap<String, BTreeMap<String, ScramCredential>>,
    /// ACLs (CreateAcls), in the order they were created; no two equal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<AclBinding>,
    /// Client quotas (AlterClientQuotas), one entry per entity with values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_quotas: Vec<crate::quotas::ClientQuota>,
}

/// One ACL, with Kafka's codes: resource type, pattern type, operation, permission.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    /// `User:alice`, `User:*`.
    pub principal: String,
    /// `*` or an address.
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

/// One user's SCRAM credential for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl ClusterMetadata {
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicMetadata> {
        self.topics.values().find(|t| t.topic_id == id)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        let idx = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.partitions.get(idx)
    }

    /// The dynamic configs of `resource` ("" for the cluster default), if any.
    pub fn broker_config(&self, resource: &str) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(resource)
    }

    pub fn broker(&self, id: BrokerId) -> Option<&BrokerRegistration> {
        self.brokers.get(&id)
    }

    /// Registered, unfenced brokers, by id.
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn is_unfenced(&self, id: BrokerId) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Total partitions over all topics.
    pub fn partition_count(&self) -> usize {
        self.topics.values().map(|t| t.partitions.len()).sum()
    }

    /// Replica assignment for `count` new partitions over the unfenced brokers,
    /// as a proposer computes it for CreateTopic / CreatePartitions. The start
    /// position rotates with the cluster's partition count so that successive
    /// topics do not all lead on the same broker.
    pub fn assign_partitions(&self, count: u32, replication_factor: u16) -> Result<Vec<Vec<BrokerId>>, CommandError> {
        let brokers: Vec<PlacementBroker> = self.unfenced_brokers().map(|b| PlacementBroker { id: b.id, rack: b.rack.clone() }).collect();
        place_partitions_from(&brokers, count, replication_factor, self.partition_count())
    }
}

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Kafka's topic-name rules; `Err` holds why `name` is not legal.
pub fn validate_topic_name(name: &str) -> Result<(), CommandError> {
    let reason = if name.is_empty() {
        "topic name is empty".to_string()
    } else if name == "." || name == ".." {
        format!("topic name cannot be `{name}`")
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        format!("topic name is {} characters, longer than {MAX_TOPIC_NAME_LEN}", name.len())
    } else if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        format!("topic name `{name}` contains `{c}`; legal characters are ASCII alphanumerics, '.', '_' and '-'")
    } else {
        return Ok(());
    };
    Err(CommandError::InvalidTopicName(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_rules() {
        for bad in ["", ".", "..", "a/b", "has space", "ü", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "a.b_c-d", "__consumer_offsets", &"x".repeat(249)] {
            assert!(validate_topic_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn image_round_trips_through_json() {
        let mut md = ClusterMetadata::default();
        md.brokers.insert(
            1,
            BrokerRegistration {
                id: 1,
                incarnation_id: Uuid::from_u128(7),
                listeners: vec![Listener { name: "PLAINTEXT".into(), host: "h".into(), port: 9092 }],
                rack: Some("r1".into()),
                epoch: 3,
                fenced: false,
            },
        );
        md.topics.insert(
            "t".into(),
            TopicMetadata {
                name: "t".into(),
                topic_id: Uuid::from_u128(9),
                configs: [("retention.ms".to_string(), "1".to_string())].into(),
                partitions: vec![PartitionState {
                    replicas: vec![1],
                    leader: 1,
                    leader_epoch: 0,
                    isr: vec![1],
                    partition_epoch: 0,
                    adding_replicas: vec![],
                    removing_replicas: vec![],
                }],
            },
        );
        let json = serde_json::to_vec(&md).unwrap();
        assert_eq!(serde_json::from_slice::<ClusterMetadata>(&json).unwrap(), md);
        assert_eq!(md.partition("t", 0).unwrap().leader, 1);
        assert!(md.partition("t", 1).is_none());
        assert!(md.partition("t", -1).is_none());
        assert_eq!(md.topic_by_id(Uuid::from_u128(9)).unwrap().name, "t");
    }
}
