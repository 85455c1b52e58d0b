//! Per-topic configuration: Kafka's topic-level keys, their validation and
//! their defaults from the broker configuration.

use std::collections::BTreeMap;

use karst_storage::LogConfig;

use crate::config::BrokerConfig;

/// Topic configs Karst accepts on CreateTopics and reports in DescribeConfigs.
pub const KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.type",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
];

fn int_in(value: &str, min: i64, max: i64) -> Result<i64, String> {
    let v: i64 = value.trim().parse().map_err(|_| format!("`{value}` is not an integer"))?;
    if v < min || v > max {
        return Err(format!("{v} is outside [{min}, {max}]"));
    }
    Ok(v)
}

/// Checks one topic config; the error text goes into INVALID_CONFIG's message.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let r = match key {
        "cleanup.policy" => match value {
            "delete" => Ok(()),
            "compact" | "compact,delete" | "delete,compact" => Err("log compaction is not supported yet; use cleanup.policy=delete".into()),
            _ => Err(format!("`{value}` is not a cleanup policy")),
        },
        "compression.type" => match value {
            "producer" => Ok(()),
            _ => Err("only compression.type=producer is supported: the broker stores batches as producers compress them".into()),
        },
        "message.timestamp.type" => match value {
            "CreateTime" => Ok(()),
            "LogAppendTime" => Err("LogAppendTime is not supported yet".into()),
            _ => Err(format!("`{value}` is not a timestamp type")),
        },
        "message.downconversion.enable" | "unclean.leader.election.enable" => {
            value.parse::<bool>().map(|_| ()).map_err(|_| format!("`{value}` is not a boolean"))
        }
        "index.interval.bytes" => int_in(value, 0, i32::MAX as i64).map(|_| ()),
        "max.message.bytes" => int_in(value, 0, i32::MAX as i64).map(|_| ()),
        "message.timestamp.after.max.ms" | "message.timestamp.before.max.ms" => int_in(value, 0, i64::MAX).map(|_| ()),
        "min.insync.replicas" => int_in(value, 1, i32::MAX as i64).map(|_| ()),
        "retention.bytes" | "retention.ms" => int_in(value, -1, i64::MAX).map(|_| ()),
        "segment.bytes" => int_in(value, 14, i32::MAX as i64).map(|_| ()),
        "segment.index.bytes" => int_in(value, 4096, i32::MAX as i64).map(|_| ()),
        "segment.ms" => int_in(value, 1, i64::MAX).map(|_| ()),
        _ => Err(format!("unknown topic config `{key}`")),
    };
    r.map_err(|e| format!("invalid value for {key}: {e}"))
}

/// The settings a partition's log and produce path use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub max_message_bytes: usize,
    /// acks=all needs at least this many in-sync replicas.
    pub min_insync_replicas: i32,
    /// `message.timestamp.before.max.ms`: how far behind the broker's clock a
    /// record's CreateTime may be.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far ahead of it.
    pub timestamp_after_max_ms: i64,
    /// `message.downconversion.enable`: Fetch v0-v3 consumers are served by
    /// converting to message format v0/v1; off, they get UNSUPPORTED_VERSION.
    pub downconversion_enable: bool,
    pub log: LogConfig,
}

fn get<T: std::str::FromStr>(overrides: &BTreeMap<String, String>, key: &str) -> Option<T> {
    overrides.get(key).and_then(|v| v.trim().parse().ok())
}

fn non_negative(v: i64) -> Option<i64> {
    (v >= 0).then_some(v)
}

/// Topic overrides laid over the broker's defaults.
pub fn effective(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> TopicConfig {
    let log = LogConfig {
        segment_bytes: get(overrides, "segment.bytes").unwrap_or(broker.log_segment_bytes),
        segment_ms: get::<u64>(overrides, "segment.ms").or(broker.log_roll_ms),
        index_interval_bytes: get(overrides, "index.interval.bytes").unwrap_or(broker.log_index_interval_bytes),
        segment_index_bytes: get(overrides, "segment.index.bytes").unwrap_or(broker.log_index_size_max_bytes),
        retention_ms: match get::<i64>(overrides, "retention.ms") {
            Some(v) => non_negative(v),
            None => broker.log_retention_ms,
        },
        retention_bytes: match get::<i64>(overrides, "retention.bytes") {
            Some(v) => non_negative(v).map(|v| v as u64),
            None => broker.log_retention_bytes,
        },
    };
    TopicConfig {
        max_message_bytes: get(overrides, "max.message.bytes").unwrap_or(broker.message_max_bytes),
        min_insync_replicas: get(overrides, "min.insync.replicas").unwrap_or(broker.min_insync_replicas),
        timestamp_before_max_ms: get(overrides, "message.timestamp.before.max.ms").unwrap_or(broker.log_message_timestamp_before_max_ms),
        timestamp_after_max_ms: get(overrides, "message.timestamp.after.max.ms").unwrap_or(broker.log_message_timestamp_after_max_ms),
        downconversion_enable: get(overrides, "message.downconversion.enable").unwrap_or(broker.log_message_downconversion_enable),
        log,
    }
}

/// Every topic config with its effective value and whether it is a default.
pub fn describe(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> Vec<(&'static str, String, bool)> {
    let e = effective(broker, overrides);
    let opt = |o: Option<i64>| o.map_or("-1".to_string(), |v| v.to_string());
    let defaults: Vec<(&'static str, String)> = vec![
        ("cleanup.policy", "delete".into()),
        ("compression.type", "producer".into()),
        ("index.interval.bytes", e.log.index_interval_bytes.to_string()),
        ("max.message.bytes", e.max_message_bytes.to_string()),
        ("message.downconversion.enable", e.downconversion_enable.to_string()),
        ("message.timestamp.after.max.ms", e.timestamp_after_max_ms.to_string()),
        ("message.timestamp.before.max.ms", e.timestamp_before_max_ms.to_string()),
        ("message.timestamp.type", "CreateTime".into()),
        ("min.insync.replicas", e.min_insync_replicas.to_string()),
        ("retention.bytes", opt(e.log.retention_bytes.map(|v| v as i64))),
        ("retention.ms", opt(e.log.retention_ms)),
        ("segment.bytes", e.log.segment_bytes.to_string()),
        ("segment.index.bytes", e.log.segment_index_bytes.to_string()),
        ("segment.ms", opt(e.log.segment_ms.map(|v| v as i64))),
        ("unclean.leader.election.enable", "false".into()),
    ];
    defaults
        .into_iter()
        .map(|(k, v)| match overrides.get(k) {
            Some(o) => (k, o.clone(), false),
            None => (k, v, true),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_and_are_validated() {
        let b = BrokerConfig::default();
        let mut o = BTreeMap::new();
        o.insert("max.message.bytes".to_string(), "1000".to_string());
        o.insert("retention.ms".to_string(), "-1".to_string());
        let e = effective(&b, &o);
        assert_eq!(e.max_message_bytes, 1000);
        assert_eq!(e.log.retention_ms, None);
        assert_eq!((e.timestamp_before_max_ms, e.timestamp_after_max_ms), (i64::MAX, 3_600_000), "Kafka 4's defaults");
        o.insert("message.timestamp.after.max.ms".to_string(), "5".to_string());
        assert_eq!(effective(&b, &o).timestamp_after_max_ms, 5);
        assert!(validate("message.timestamp.before.max.ms", "-1").is_err());
        assert!(validate("message.timestamp.after.max.ms", "9223372036854775807").is_ok());
        assert!(validate("max.message.bytes", "abc").is_err());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("no.such", "1").is_err());
        assert!(validate("cleanup.policy", "delete").is_ok());
        assert!(KEYS.iter().all(|k| describe(&b, &o).iter().any(|(d, _, _)| d == k)));
    }
}
