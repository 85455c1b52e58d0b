//! Kafka error codes Karst returns, by their protocol names.
#![allow(missing_docs)]

pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const RECORD_LIST_TOO_LARGE: i16 = 18;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const INVALID_TIMESTAMP: i16 = 32;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const INVALID_CONFIG: i16 = 40;
pub const INVALID_REQUEST: i16 = 42;
pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
pub const POLICY_VIOLATION: i16 = 44;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
pub const UNKNOWN_TOPIC_ID: i16 = 100;
pub const INVALID_RECORD: i16 = 87;
pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
pub const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
pub const FENCED_LEADER_EPOCH: i16 = 74;
pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
pub const ELECTION_NOT_NEEDED: i16 = 84;
/// KIP-1242 (ApiVersions v5): the client's cluster or node id is not this broker's.
pub const REBOOTSTRAP_REQUIRED: i16 = 129;
pub const NETWORK_EXCEPTION: i16 = 13;
pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
pub const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
pub const PRODUCER_FENCED: i16 = 90;
pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
pub const INVALID_TXN_STATE: i16 = 48;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const TRANSACTION_ABORTABLE: i16 = 120;
/// A regular expression that does not compile (ListTransactions v2's pattern).
pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
/// KIP-848: a consumer group member's epoch is not the coordinator's.
pub const FENCED_MEMBER_EPOCH: i16 = 110;
/// KIP-848: a static member's instance id is still held by another member.
pub const UNRELEASED_INSTANCE_ID: i16 = 111;
/// KIP-848: a `ServerAssignor` the coordinator does not have.
pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
/// KIP-848: an offset commit or fetch with an epoch that is not the member's.
pub const STALE_MEMBER_EPOCH: i16 = 113;

/// Kafka's name of an error code (`NOT_LEADER_OR_FOLLOWER`, `NONE` for 0), or
/// `UNKNOWN_ERROR_CODE` for a code Kafka does not define.
pub fn error_name(code: i16) -> &'static str {
    use kafka_protocol::error::ResponseError;
    static NAMES: std::sync::OnceLock<std::collections::HashMap<i16, String>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        let mut names: std::collections::HashMap<i16, String> = (-1..=200)
            .filter_map(|c| match ResponseError::try_from_code(c) {
                Some(ResponseError::Unknown(_)) | None => None,
                Some(e) => Some((c, screaming_snake(&format!("{e:?}")))),
            })
            .collect();
        names.insert(NONE, "NONE".to_string());
        names
    });
    names.get(&code).map_or("UNKNOWN_ERROR_CODE", String::as_str)
}

/// The default message Kafka sends with `code` where a response carries one and no
/// more specific text applies (the `Errors` enum's description), for the codes
/// Karst answers that way.
pub fn default_message(code: i16) -> Option<&'static str> {
    match code {
        UNKNOWN_TOPIC_OR_PARTITION => Some("This server does not host this topic-partition."),
        UNKNOWN_TOPIC_ID => Some("This server does not host this topic ID."),
        ELECTION_NOT_NEEDED => Some("Leader election not needed for topic partition."),
        PREFERRED_LEADER_NOT_AVAILABLE => Some("The preferred leader was not available."),
        ELIGIBLE_LEADERS_NOT_AVAILABLE => Some("Eligible topic partition leaders are not available."),
        _ => None,
    }
}

/// `NotLeaderOrFollower` → `NOT_LEADER_OR_FOLLOWER`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(NONE), "NONE");
        assert_eq!(error_name(NOT_LEADER_OR_FOLLOWER), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(UNKNOWN_TOPIC_OR_PARTITION), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(TOPIC_ALREADY_EXISTS), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(INVALID_TOPIC_EXCEPTION), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(error_name(UNKNOWN_SERVER_ERROR), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE");
        assert_eq!(error_name(i16::MAX), "UNKNOWN_ERROR_CODE");
    }
}
