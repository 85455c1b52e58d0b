//! Every error type of the controller crate, in one place.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metadata::BrokerId;

/// Why a metadata command was rejected. These are *results* of applying a
/// committed command (every replica computes the same one), never panics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    #[error("topic id {0} is already used by topic `{1}`")]
    DuplicateTopicId(uuid::Uuid, String),
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    #[error("topic `{topic}` has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("invalid topic name: {0}")]
    InvalidTopicName(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    #[error("stale broker epoch for broker {broker_id}: current {current}, request {request}")]
    StaleBrokerEpoch { broker_id: BrokerId, current: i64, request: i64 },
    #[error("stale partition epoch for {topic}-{partition}: current {current}, request {request}")]
    StalePartitionEpoch { topic: String, partition: i32, current: i32, request: i32 },
    #[error("invalid ISR: {0}")]
    InvalidIsr(String),
    #[error("broker {0} is not eligible: {1}")]
    IneligibleReplica(BrokerId, String),
    #[error("no reassignment of {topic}-{partition} is in progress")]
    NoReassignmentInProgress { topic: String, partition: i32 },
    #[error("producer ids exhausted")]
    ProducerIdsExhausted,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl CommandError {
    /// The Kafka protocol error code a broker should answer with.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            CommandError::TopicExists(_) => 36,                  // TOPIC_ALREADY_EXISTS
            CommandError::DuplicateTopicId(..) => 42,            // INVALID_REQUEST
            CommandError::UnknownTopic(_) => 3,                  // UNKNOWN_TOPIC_OR_PARTITION
            CommandError::UnknownPartition { .. } => 3,          // UNKNOWN_TOPIC_OR_PARTITION
            CommandError::InvalidTopicName(_) => 17,             // INVALID_TOPIC_EXCEPTION
            CommandError::InvalidPartitions(_) => 37,            // INVALID_PARTITIONS
            CommandError::InvalidReplicationFactor(_) => 38,     // INVALID_REPLICATION_FACTOR
            CommandError::InvalidReplicaAssignment(_) => 39,     // INVALID_REPLICA_ASSIGNMENT
            CommandError::InvalidConfig(_) => 40,                // INVALID_CONFIG
            CommandError::UnknownBroker(_) => 102,               // BROKER_ID_NOT_REGISTERED
            CommandError::StaleBrokerEpoch { .. } => 77,         // STALE_BROKER_EPOCH
            CommandError::StalePartitionEpoch { .. } => 95,      // INVALID_UPDATE_VERSION
            CommandError::InvalidIsr(_) => 42,                   // INVALID_REQUEST
            CommandError::IneligibleReplica(..) => 107,          // INELIGIBLE_REPLICA
            CommandError::NoReassignmentInProgress { .. } => 85, // NO_REASSIGNMENT_IN_PROGRESS
            CommandError::ProducerIdsExhausted => -1,            // UNKNOWN_SERVER_ERROR
            CommandError::InvalidRequest(_) => 42,               // INVALID_REQUEST
        }
    }
}

/// A bad `controller.quorum.voters` string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VotersError {
    #[error("voters list is empty")]
    Empty,
    #[error("bad voter `{entry}`: {reason} (expected id@host:port)")]
    BadEntry { entry: String, reason: String },
    #[error("voter id {0} appears more than once")]
    DuplicateId(u64),
    #[error("voter address {0} appears more than once")]
    DuplicateAddr(String),
}

/// Failure to start or run a controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data dir {dir} belongs to cluster `{found}`, not `{expected}`; refusing to start (use an empty dir or the right cluster id)")]
    ClusterIdMismatch { dir: PathBuf, found: String, expected: String },
    #[error("data dir {dir} belongs to node {found}, not node {expected}; refusing to start")]
    NodeIdMismatch { dir: PathBuf, found: u64, expected: u64 },
    #[error("corrupt controller data in {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("invalid cluster id `{0}`: must be non-empty, without whitespace")]
    InvalidClusterId(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Voters(#[from] VotersError),
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a proposal did not produce a [`crate::CommandResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader; the caller forwards to `leader_addr` (if known).
    #[error("not the controller leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader { leader_id: Option<u64>, leader_addr: Option<String> },
    /// No commit within the deadline, e.g. a leader cut off from its quorum. The
    /// command may still commit later: the outcome is unknown.
    #[error("proposal not committed within {0:?}")]
    Timeout(Duration),
    #[error("membership change rejected: {0}")]
    Membership(String),
    #[error("controller is shut down: {0}")]
    Shutdown(String),
}
