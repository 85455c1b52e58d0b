//! The one table of APIs and versions Karst implements.
//!
//! ApiVersions advertises exactly this table and the dispatcher refuses anything
//! outside it, so the two can never disagree. Every row is a promise: the README's
//! API table names the test that proves it.

use kafka_protocol::messages::ApiKey;

/// An API and the inclusive range of versions Karst serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport { key, min, max }
}

/// Versions chosen where the message shape is implemented end to end; newer
/// versions are left out until they are. ListOffsets v11, DeleteGroups v3,
/// DescribeLogDirs v5 and ApiVersions v5 are beyond kafka-protocol 0.18: the vendored
/// copy adds them (see the workspace `Cargo.toml`).
pub const SUPPORTED: &[ApiSupport] = &[
    api(ApiKey::Produce, 0, 13),
    api(ApiKey::Fetch, 0, 18),
    api(ApiKey::ListOffsets, 0, 11),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::Metadata, 0, 13),
    api(ApiKey::ApiVersions, 0, 5),
    api(ApiKey::CreateTopics, 0, 7),
    api(ApiKey::DeleteTopics, 0, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::AddPartitionsToTxn, 0, 5),
    api(ApiKey::AddOffsetsToTxn, 0, 4),
    api(ApiKey::EndTxn, 0, 5),
    api(ApiKey::WriteTxnMarkers, 1, 1),
    api(ApiKey::TxnOffsetCommit, 0, 5),
    api(ApiKey::DescribeTransactions, 0, 0),
    api(ApiKey::ListTransactions, 0, 2),
    api(ApiKey::DescribeConfigs, 0, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::FindCoordinator, 0, 5),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 0, 9),
    api(ApiKey::OffsetFetch, 0, 9),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::DeleteGroups, 0, 3),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::DescribeClientQuotas, 0, 1),
    api(ApiKey::AlterClientQuotas, 0, 1),
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
    // Kafka 4 removed DescribeLogDirs v0; v5 adds KIP-1066's IsCordoned (the vendored
    // codec adds it too): Karst cordons no directory, so it is always false.
    api(ApiKey::DescribeLogDirs, 1, 5),
    api(ApiKey::DescribeTopicPartitions, 0, 0),
    api(ApiKey::ElectLeaders, 0, 2),
    api(ApiKey::DescribeProducers, 0, 0),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    // KIP-932 share groups: v1 is Kafka's first stable version (v0 was early access).
    api(ApiKey::ShareGroupHeartbeat, 1, 1),
    api(ApiKey::ShareGroupDescribe, 1, 1),
    api(ApiKey::ShareFetch, 1, 1),
    api(ApiKey::ShareAcknowledge, 1, 1),
    api(ApiKey::DescribeShareGroupOffsets, 0, 0),
    api(ApiKey::AlterShareGroupOffsets, 0, 0),
    api(ApiKey::DeleteShareGroupOffsets, 0, 0),
    // Between brokers: a share-partition's leader and its group's coordinator.
    api(ApiKey::ReadShareGroupState, 0, 0),
    api(ApiKey::WriteShareGroupState, 0, 0),
];

/// The supported range for `key`, if Karst implements it at all.
pub fn support(key: ApiKey) -> Option<ApiSupport> {
    SUPPORTED.iter().copied().find(|s| s.key == key)
}

/// Whether `version` of `key` is served.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    support(key).is_some_and(|s| (s.min..=s.max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_stays_within_what_the_codec_can_speak() {
        for s in SUPPORTED {
            let codec = s.key.valid_versions();
            assert!(s.min <= s.max, "{:?}", s.key);
            let lowest_spoken = (s.min..codec.min).all(|v| crate::legacy::handles(s.key, v));
            assert!(lowest_spoken && s.max <= codec.max, "{:?} {}..{} vs codec {:?}", s.key, s.min, s.max, codec);
        }
    }

    #[test]
    fn one_row_per_api() {
        for (i, a) in SUPPORTED.iter().enumerate() {
            assert!(SUPPORTED[i + 1..].iter().all(|b| b.key != a.key));
        }
    }
}
