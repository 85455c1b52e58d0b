//! Kafka error codes as the user sees them: the protocol's name, the broker's
//! message, and a one-line hint.

use std::fmt;

use kafka_protocol::error::ResponseError;

/// A non-zero error code from a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KafkaError {
    pub(crate) code: i16,
    pub(crate) message: Option<String>,
}

impl KafkaError {
    pub(crate) fn new(code: i16, message: Option<String>) -> KafkaError {
        KafkaError { code, message: message.filter(|m| !m.is_empty()) }
    }

    /// Kafka's name of the code, e.g. `TOPIC_ALREADY_EXISTS`.
    pub(crate) fn name(&self) -> String {
        error_name(self.code)
    }

    /// Whether retrying (after refreshing metadata) may succeed.
    pub(crate) fn is_retriable(&self) -> bool {
        ResponseError::try_from_code(self.code).is_some_and(|e| e.is_retriable())
    }

    /// What to do about it, for the codes a user of this tool is likely to meet.
    pub(crate) fn hint(&self) -> Option<&'static str> {
        Some(match self.code {
            1 => "the offset is outside the partition's log; start from `beginning`, `end` or a valid offset",
            3 => "check the name with `karst topic list`, or create it with `karst topic create`",
            5 | 6 => "leadership is moving; retry in a moment (`karst topic describe` shows the leaders)",
            7 => "the broker did not finish in time; retry, or check the broker's log",
            10 => "the record is larger than the topic's max.message.bytes",
            14..=16 => "the group coordinator is not ready; retry in a moment",
            17 => "topic names use only letters, digits, '.', '_' and '-' (at most 249 characters)",
            19 | 20 => "fewer in-sync replicas than min.insync.replicas; check the brokers, or produce with --acks 1",
            22 | 25 | 27 => "the group rebalanced; retry",
            24 => "give a non-empty group id",
            35 => "the broker does not support this request version",
            36 => "choose another name, or delete the topic first with `karst topic delete`",
            37 => "the partition count must be at least 1",
            38 => "the replication factor must be between 1 and the number of brokers (`karst cluster info`)",
            39 => "replica ids must be distinct brokers of the cluster (`karst cluster info`)",
            40 => "check the config name and value (`karst topic describe` shows the current configs)",
            41 => "send the request to the controller; retry in a moment",
            42 => "the broker refused the request as malformed",
            58 => "the broker requires authentication, which this tool does not support",
            68 => "stop the group's consumers first (`karst group describe` shows the members)",
            69 => "no such group: `karst group list` shows the groups",
            85 => "there is no reassignment in progress for that partition (`karst topic reassign --list`)",
            _ => return None,
        })
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for KafkaError {}

/// `Ok(())` for 0, else the error with the broker's message.
pub(crate) fn check(code: i16, message: Option<&str>) -> Result<(), KafkaError> {
    if code == 0 {
        Ok(())
    } else {
        Err(KafkaError::new(code, message.map(str::to_string)))
    }
}

/// Kafka's SCREAMING_SNAKE name of an error code (with the number where Kafka has no name).
pub(crate) fn error_name(code: i16) -> String {
    match karst_protocol::error_codes::error_name(code) {
        "UNKNOWN_ERROR_CODE" => format!("UNKNOWN_ERROR_CODE_{code}"),
        name => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kafkas() {
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(17), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
        let e = KafkaError::new(36, Some("Topic 'x' already exists.".into()));
        assert_eq!(e.to_string(), "TOPIC_ALREADY_EXISTS: Topic 'x' already exists.");
        assert!(e.hint().is_some());
        assert!(KafkaError::new(6, None).is_retriable());
        assert!(!KafkaError::new(36, None).is_retriable());
    }
}
