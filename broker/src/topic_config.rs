//! Per-topic configuration: Kafka's topic-level keys, their validation and
//! their defaults from the broker configuration.

use std::collections::BTreeMap;

use karst_protocol::recompress::{level_is_valid, CompressionLevels, TopicCompression};
use karst_storage::{CleanupPolicy, DirtyRatio, LogConfig, TimestampType};

use crate::config::BrokerConfig;
use crate::dynamic_config::{self, Layers};

/// Topic configs Karst accepts on CreateTopics and reports in DescribeConfigs:
/// the names of the [`SYNONYMS`] and [`ACCEPTED`] tables, Kafka 4.4's topic configs
/// and `message.downconversion.enable`.
pub fn keys() -> impl Iterator<Item = &'static str> {
    specs().map(|s| s.name)
}

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
        "cleanup.policy" => match CleanupPolicy::parse(value) {
            Some(_) => Ok(()),
            None => Err(format!("`{value}` is not a cleanup policy (a list of `delete` and `compact`)")),
        },
        "compression.type" => match TopicCompression::parse(value) {
            Some(_) => Ok(()),
            None => Err(format!("`{value}` is not one of uncompressed, zstd, lz4, snappy, gzip, producer")),
        },
        "compression.gzip.level" | "compression.lz4.level" | "compression.zstd.level" => {
            let v = int_in(value, i32::MIN.into(), i32::MAX.into())?;
            match i32::try_from(v).is_ok_and(|v| level_is_valid(key, v)) {
                true => Ok(()),
                false => Err(format!("{v} is not a level Kafka accepts for this codec")),
            }
        }
        "message.timestamp.type" => match TimestampType::parse(value) {
            Some(_) => Ok(()),
            None => Err(format!("`{value}` is not CreateTime or LogAppendTime")),
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
        "delete.retention.ms" | "min.compaction.lag.ms" => int_in(value, 0, i64::MAX).map(|_| ()),
        "max.compaction.lag.ms" => int_in(value, 1, i64::MAX).map(|_| ()),
        "min.cleanable.dirty.ratio" => ratio(value).map(|_| ()),
        // Karst's flushing is the broker's (log.flush.interval.*) for every topic: a
        // topic asking for its own would not get it, so it is refused rather than kept.
        "flush.messages" | "flush.ms" => Err(format!(
            "a topic's own flush policy is not supported: Karst flushes every topic as the broker's {} says",
            if key == "flush.messages" { "log.flush.interval.messages" } else { "log.flush.interval.ms" }
        )),
        "file.delete.delay.ms" | "segment.jitter.ms" | "remote.copy.lag.ms" => int_in(value, 0, i64::MAX).map(|_| ()),
        "local.retention.bytes" | "local.retention.ms" => int_in(value, -2, i64::MAX).map(|_| ()),
        "remote.copy.lag.bytes" => int_in(value, -1, i64::MAX).map(|_| ()),
        "max.decompressed.message.bytes" => int_in(value, 0, i32::MAX as i64).map(|_| ()),
        "preallocate" | "remote.log.copy.disable" | "remote.log.delete.on.disable" | "errors.deadletterqueue.group.enable" => {
            value.parse::<bool>().map(|_| ()).map_err(|_| format!("`{value}` is not a boolean"))
        }
        "remote.storage.enable" => match value.parse::<bool>() {
            Ok(false) => Ok(()),
            // Kafka's answer on a broker without tiered storage.
            Ok(true) => {
                Err("Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.".into())
            }
            Err(_) => Err(format!("`{value}` is not a boolean")),
        },
        "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas" => throttled_replicas(value),
        _ => Err(format!("unknown topic config `{key}`")),
    };
    r.map_err(|e| format!("invalid value for {key}: {e}"))
}

/// Kafka's throttled-replica list: `*`, or `partition:broker` pairs separated by commas
/// (empty for none).
fn throttled_replicas(value: &str) -> Result<(), String> {
    let v = value.trim();
    if v.is_empty() || v == "*" {
        return Ok(());
    }
    let pair = |e: &str| e.trim().split_once(':').is_some_and(|(p, b)| p.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
    if v.split(',').all(pair) {
        Ok(())
    } else {
        Err(format!("`{value}` must be `*` or a list of partition:broker pairs"))
    }
}

/// Whether `key` is a list config (IncrementalAlterConfigs may APPEND and SUBTRACT).
pub fn is_list(key: &str) -> bool {
    specs().any(|s| s.name == key && s.config_type == TYPE_LIST)
}

/// A topic config's built-in default (Kafka's `ConfigDef` default).
pub fn default_value(key: &str) -> Option<String> {
    let defaults = effective(&BrokerConfig::default(), &BTreeMap::new());
    specs().find(|s| s.name == key).map(|s| (s.value)(&defaults))
}

fn ratio(value: &str) -> Result<DirtyRatio, String> {
    let v: f64 = value.trim().parse().map_err(|_| format!("`{value}` is not a number"))?;
    DirtyRatio::new(v).ok_or_else(|| format!("{v} is outside [0, 1]"))
}

/// Checks a topic's whole set of overrides: each key, then the keys that bound each
/// other (Kafka's `LogConfig.validate`).
pub fn validate_all(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in configs {
        validate(k, v)?;
    }
    let min: Option<i64> = get(configs, "min.compaction.lag.ms");
    let max: Option<i64> = get(configs, "max.compaction.lag.ms");
    if let (Some(min), Some(max)) = (min, max) {
        if min > max {
            return Err(format!("conflict topic config setting min.compaction.lag.ms ({min}) > max.compaction.lag.ms ({max})"));
        }
    }
    Ok(())
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
    /// The broker's `log.flush.interval.messages` and `log.flush.interval.ms`, which
    /// every topic follows (DescribeConfigs' `flush.messages` and `flush.ms`).
    pub flush_messages: u64,
    pub flush_ms: u64,
    /// `compression.type`: the codec the leader stores batches in.
    pub compression: TopicCompression,
    /// `compression.gzip.level`, `compression.lz4.level`, `compression.zstd.level`.
    pub compression_levels: CompressionLevels,
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
        cleanup_policy: overrides.get("cleanup.policy").and_then(|v| CleanupPolicy::parse(v)).unwrap_or(broker.log_cleanup_policy),
        delete_retention_ms: get(overrides, "delete.retention.ms").unwrap_or(broker.log_cleaner_delete_retention_ms),
        min_compaction_lag_ms: get(overrides, "min.compaction.lag.ms").unwrap_or(broker.log_cleaner_min_compaction_lag_ms),
        max_compaction_lag_ms: get(overrides, "max.compaction.lag.ms").unwrap_or(broker.log_cleaner_max_compaction_lag_ms),
        min_cleanable_dirty_ratio: overrides
            .get("min.cleanable.dirty.ratio")
            .and_then(|v| ratio(v).ok())
            .unwrap_or(broker.log_cleaner_min_cleanable_ratio),
        timestamp_type: overrides
            .get("message.timestamp.type")
            .and_then(|v| TimestampType::parse(v))
            .unwrap_or(broker.log_message_timestamp_type),
    };
    let levels = broker.compression_levels;
    TopicConfig {
        max_message_bytes: get(overrides, "max.message.bytes").unwrap_or(broker.message_max_bytes),
        min_insync_replicas: get(overrides, "min.insync.replicas").unwrap_or(broker.min_insync_replicas),
        timestamp_before_max_ms: get(overrides, "message.timestamp.before.max.ms").unwrap_or(broker.log_message_timestamp_before_max_ms),
        timestamp_after_max_ms: get(overrides, "message.timestamp.after.max.ms").unwrap_or(broker.log_message_timestamp_after_max_ms),
        downconversion_enable: get(overrides, "message.downconversion.enable").unwrap_or(broker.log_message_downconversion_enable),
        flush_messages: broker.log_flush_interval_messages,
        flush_ms: broker.log_flush_interval_ms,
        compression: overrides.get("compression.type").and_then(|v| TopicCompression::parse(v)).unwrap_or(broker.compression_type),
        compression_levels: CompressionLevels {
            gzip: get(overrides, "compression.gzip.level").unwrap_or(levels.gzip),
            lz4: get(overrides, "compression.lz4.level").unwrap_or(levels.lz4),
            zstd: get(overrides, "compression.zstd.level").unwrap_or(levels.zstd),
        },
        log,
    }
}

pub use crate::dynamic_config::{SOURCE_DEFAULT, SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT, SOURCE_STATIC_BROKER, SOURCE_TOPIC};

/// DescribeConfigs' `config_type` (v3+), Kafka's `ConfigDef.Type` numbering.
pub const TYPE_BOOLEAN: i8 = 1;
pub const TYPE_STRING: i8 = 2;
pub const TYPE_INT: i8 = 3;
pub const TYPE_LONG: i8 = 5;
pub const TYPE_DOUBLE: i8 = 6;
pub const TYPE_LIST: i8 = 7;

fn opt(o: Option<i64>) -> String {
    o.map_or("-1".to_string(), |v| v.to_string())
}

/// One topic config: the broker config that supplies its default (Kafka's synonym),
/// its type, and how to read its value from an effective configuration.
struct Spec {
    name: &'static str,
    broker_key: &'static str,
    config_type: i8,
    value: fn(&TopicConfig) -> String,
}

const SYNONYMS: &[Spec] = &[
    Spec {
        name: "cleanup.policy",
        broker_key: "log.cleanup.policy",
        config_type: TYPE_LIST,
        value: |e| e.log.cleanup_policy.as_str().into(),
    },
    Spec { name: "compression.type", broker_key: "compression.type", config_type: TYPE_STRING, value: |e| e.compression.as_str().into() },
    Spec {
        name: "compression.gzip.level",
        broker_key: "compression.gzip.level",
        config_type: TYPE_INT,
        value: |e| e.compression_levels.gzip.to_string(),
    },
    Spec {
        name: "compression.lz4.level",
        broker_key: "compression.lz4.level",
        config_type: TYPE_INT,
        value: |e| e.compression_levels.lz4.to_string(),
    },
    Spec {
        name: "compression.zstd.level",
        broker_key: "compression.zstd.level",
        config_type: TYPE_INT,
        value: |e| e.compression_levels.zstd.to_string(),
    },
    Spec {
        name: "delete.retention.ms",
        broker_key: "log.cleaner.delete.retention.ms",
        config_type: TYPE_LONG,
        value: |e| e.log.delete_retention_ms.to_string(),
    },
    Spec {
        name: "flush.messages",
        broker_key: "log.flush.interval.messages",
        config_type: TYPE_LONG,
        value: |e| e.flush_messages.to_string(),
    },
    Spec { name: "flush.ms", broker_key: "log.flush.interval.ms", config_type: TYPE_LONG, value: |e| e.flush_ms.to_string() },
    Spec {
        name: "index.interval.bytes",
        broker_key: "log.index.interval.bytes",
        config_type: TYPE_INT,
        value: |e| e.log.index_interval_bytes.to_string(),
    },
    Spec { name: "max.message.bytes", broker_key: "message.max.bytes", config_type: TYPE_INT, value: |e| e.max_message_bytes.to_string() },
    Spec {
        name: "message.downconversion.enable",
        broker_key: "log.message.downconversion.enable",
        config_type: TYPE_BOOLEAN,
        value: |e| e.downconversion_enable.to_string(),
    },
    Spec {
        name: "message.timestamp.after.max.ms",
        broker_key: "log.message.timestamp.after.max.ms",
        config_type: TYPE_LONG,
        value: |e| e.timestamp_after_max_ms.to_string(),
    },
    Spec {
        name: "message.timestamp.before.max.ms",
        broker_key: "log.message.timestamp.before.max.ms",
        config_type: TYPE_LONG,
        value: |e| e.timestamp_before_max_ms.to_string(),
    },
    Spec {
        name: "message.timestamp.type",
        broker_key: "log.message.timestamp.type",
        config_type: TYPE_STRING,
        value: |e| e.log.timestamp_type.as_str().into(),
    },
    Spec {
        name: "max.compaction.lag.ms",
        broker_key: "log.cleaner.max.compaction.lag.ms",
        config_type: TYPE_LONG,
        value: |e| e.log.max_compaction_lag_ms.to_string(),
    },
    Spec {
        name: "min.cleanable.dirty.ratio",
        broker_key: "log.cleaner.min.cleanable.ratio",
        config_type: TYPE_DOUBLE,
        value: |e| e.log.min_cleanable_dirty_ratio.get().to_string(),
    },
    Spec {
        name: "min.compaction.lag.ms",
        broker_key: "log.cleaner.min.compaction.lag.ms",
        config_type: TYPE_LONG,
        value: |e| e.log.min_compaction_lag_ms.to_string(),
    },
    Spec {
        name: "min.insync.replicas",
        broker_key: "min.insync.replicas",
        config_type: TYPE_INT,
        value: |e| e.min_insync_replicas.to_string(),
    },
    Spec {
        name: "retention.bytes",
        broker_key: "log.retention.bytes",
        config_type: TYPE_LONG,
        value: |e| opt(e.log.retention_bytes.map(|v| v as i64)),
    },
    Spec { name: "retention.ms", broker_key: "log.retention.ms", config_type: TYPE_LONG, value: |e| opt(e.log.retention_ms) },
    Spec { name: "segment.bytes", broker_key: "log.segment.bytes", config_type: TYPE_INT, value: |e| e.log.segment_bytes.to_string() },
    Spec {
        name: "segment.index.bytes",
        broker_key: "log.index.size.max.bytes",
        config_type: TYPE_INT,
        value: |e| e.log.segment_index_bytes.to_string(),
    },
    Spec { name: "segment.ms", broker_key: "log.roll.ms", config_type: TYPE_LONG, value: |e| opt(e.log.segment_ms.map(|v| v as i64)) },
    Spec {
        name: "unclean.leader.election.enable",
        broker_key: "unclean.leader.election.enable",
        config_type: TYPE_BOOLEAN,
        value: |_| "false".into(),
    },
];

/// Topic configs Karst takes and describes as Kafka does but does not act on:
/// replication is not throttled, there is no tiered storage (`remote.storage.enable`
/// is refused when true), segment files go at once and are not preallocated, rolls
/// are not jittered, share groups have no dead-letter queue yet. The values Kafka's
/// tools set (a reassignment's throttled replicas, say) are accepted and shown.
const ACCEPTED: &[Spec] = &[
    Spec { name: "errors.deadletterqueue.group.enable", broker_key: "", config_type: TYPE_BOOLEAN, value: |_| "false".into() },
    Spec { name: "file.delete.delay.ms", broker_key: "log.segment.delete.delay.ms", config_type: TYPE_LONG, value: |_| "60000".into() },
    Spec { name: "follower.replication.throttled.replicas", broker_key: "", config_type: TYPE_LIST, value: |_| String::new() },
    Spec { name: "leader.replication.throttled.replicas", broker_key: "", config_type: TYPE_LIST, value: |_| String::new() },
    Spec { name: "local.retention.bytes", broker_key: "log.local.retention.bytes", config_type: TYPE_LONG, value: |_| "-2".into() },
    Spec { name: "local.retention.ms", broker_key: "log.local.retention.ms", config_type: TYPE_LONG, value: |_| "-2".into() },
    Spec {
        name: "max.decompressed.message.bytes",
        broker_key: "max.decompressed.message.bytes",
        config_type: TYPE_INT,
        value: |_| "2147483639".into(),
    },
    Spec { name: "preallocate", broker_key: "log.preallocate", config_type: TYPE_BOOLEAN, value: |_| "false".into() },
    Spec { name: "remote.copy.lag.bytes", broker_key: "log.remote.copy.lag.bytes", config_type: TYPE_LONG, value: |_| "-1".into() },
    Spec { name: "remote.copy.lag.ms", broker_key: "log.remote.copy.lag.ms", config_type: TYPE_LONG, value: |_| "0".into() },
    Spec { name: "remote.log.copy.disable", broker_key: "", config_type: TYPE_BOOLEAN, value: |_| "false".into() },
    Spec { name: "remote.log.delete.on.disable", broker_key: "", config_type: TYPE_BOOLEAN, value: |_| "false".into() },
    Spec { name: "remote.storage.enable", broker_key: "", config_type: TYPE_BOOLEAN, value: |_| "false".into() },
    Spec { name: "segment.jitter.ms", broker_key: "", config_type: TYPE_LONG, value: |_| "0".into() },
];

/// Every topic config: those Karst acts on, then those it only takes and shows.
fn specs() -> impl Iterator<Item = &'static Spec> {
    SYNONYMS.iter().chain(ACCEPTED)
}

/// One topic config as DescribeConfigs (and CreateTopics v5+) report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub config_type: i8,
    /// The topic's override (if any), then the broker's layers, highest first:
    /// (name, value, source).
    pub synonyms: Vec<(&'static str, Option<String>, i8)>,
}

/// Every topic config with its effective value, where it comes from and its synonyms:
/// the topic's override, then the broker's dynamic, static and built-in values of
/// the broker config that supplies its default, as Kafka lists them.
pub fn describe(static_config: &BrokerConfig, layers: &Layers, overrides: &BTreeMap<String, String>) -> Vec<Described> {
    let at_broker = effective(&layers.apply(static_config), &BTreeMap::new());
    let karst_keys: Vec<&str> = static_config.describe().into_iter().map(|(k, _)| k).collect();
    specs()
        .map(|spec| {
            let (name, broker_key, config_type) = (spec.name, spec.broker_key, spec.config_type);
            let value = (spec.value)(&at_broker);
            let mut synonyms = Vec::new();
            if let Some(o) = overrides.get(name) {
                synonyms.push((name, Some(o.clone()), SOURCE_TOPIC));
            }
            if karst_keys.contains(&broker_key) {
                synonyms.extend(dynamic_config::synonyms(broker_key, layers, static_config));
            } else if !broker_key.is_empty() {
                // A Kafka broker setting Karst does not have: its value is Kafka's default.
                synonyms.push((broker_key, Some(value.clone()), SOURCE_DEFAULT));
            }
            let broker_source = synonyms.iter().find(|s| s.0 == broker_key).map_or(SOURCE_DEFAULT, |s| s.2);
            match overrides.get(name) {
                Some(o) => Described { name, value: o.clone(), source: SOURCE_TOPIC, config_type, synonyms },
                None => Described { name, value, source: broker_source, config_type, synonyms },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_configs_carry_their_source_and_synonyms_as_kafka_does() {
        let b = BrokerConfig { message_max_bytes: 2_000_000, ..BrokerConfig::default() };
        let mut o = BTreeMap::new();
        o.insert("segment.bytes".to_string(), "4096".to_string());
        let d = describe(&b, &Layers::default(), &o);
        let find = |n: &str| d.iter().find(|x| x.name == n).unwrap().clone();
        let seg = find("segment.bytes");
        assert_eq!((seg.value.as_str(), seg.source, seg.config_type), ("4096", SOURCE_TOPIC, TYPE_INT));
        assert_eq!(seg.synonyms[0], ("segment.bytes", Some("4096".to_string()), SOURCE_TOPIC));
        assert_eq!(seg.synonyms[1].0, "log.segment.bytes");
        assert_eq!(seg.synonyms[1].2, SOURCE_DEFAULT);
        let max = find("max.message.bytes");
        assert_eq!((max.value.as_str(), max.source), ("2000000", SOURCE_STATIC_BROKER));
        assert_eq!(
            max.synonyms,
            vec![
                ("message.max.bytes", Some("2000000".to_string()), SOURCE_STATIC_BROKER),
                ("message.max.bytes", Some("1048588".to_string()), SOURCE_DEFAULT)
            ],
            "the static value, then Kafka's default"
        );
        let layers = Layers {
            default: BTreeMap::from([("message.max.bytes".to_string(), "3000000".to_string())]),
            own: BTreeMap::from([("log.retention.ms".to_string(), "5000".to_string())]),
        };
        let d = describe(&b, &layers, &BTreeMap::new());
        let find = |n: &str| d.iter().find(|x| x.name == n).unwrap().clone();
        let max = find("max.message.bytes");
        assert_eq!((max.value.as_str(), max.source, max.synonyms.len()), ("3000000", SOURCE_DYNAMIC_DEFAULT, 3));
        let r = find("retention.ms");
        assert_eq!((r.value.as_str(), r.source), ("5000", SOURCE_DYNAMIC_BROKER));
        assert_eq!(r.synonyms[1], ("log.retention.hours", Some("168".to_string()), SOURCE_DEFAULT));
        let d = describe(&b, &Layers::default(), &o);
        let find = |n: &str| d.iter().find(|x| x.name == n).unwrap().clone();
        assert!(find("retention.ms").synonyms.is_empty(), "Kafka lists log.retention.ms only once set");
        assert_eq!(find("cleanup.policy").config_type, TYPE_LIST);
    }

    #[test]
    fn cleaner_configs_come_from_the_topic_then_the_broker() {
        let mut b = BrokerConfig::default();
        b.set("log.cleanup.policy", "compact,delete").expect("broker default");
        b.set("log.cleaner.min.cleanable.ratio", "0.1").expect("broker default");
        let mut o = BTreeMap::new();
        let e = effective(&b, &o).log;
        assert_eq!((e.cleanup_policy, e.min_cleanable_dirty_ratio.get()), (CleanupPolicy::COMPACT_DELETE, 0.1));
        assert_eq!((e.delete_retention_ms, e.min_compaction_lag_ms, e.max_compaction_lag_ms), (86_400_000, 0, i64::MAX));
        for (k, v) in [("cleanup.policy", "compact"), ("min.cleanable.dirty.ratio", "0.75"), ("delete.retention.ms", "5")] {
            o.insert(k.to_string(), v.to_string());
        }
        o.insert("min.compaction.lag.ms".to_string(), "7".to_string());
        o.insert("max.compaction.lag.ms".to_string(), "8".to_string());
        let e = effective(&b, &o).log;
        assert_eq!(e.cleanup_policy, CleanupPolicy::COMPACT);
        assert_eq!(
            (e.min_cleanable_dirty_ratio.get(), e.delete_retention_ms, e.min_compaction_lag_ms, e.max_compaction_lag_ms),
            (0.75, 5, 7, 8)
        );
        assert!(validate_all(&o).is_ok());
        o.insert("min.compaction.lag.ms".to_string(), "9".to_string());
        assert!(validate_all(&o).is_err(), "min above max");
        let d = describe(&b, &Layers::default(), &BTreeMap::new());
        let policy = d.iter().find(|x| x.name == "cleanup.policy").expect("described");
        assert_eq!((policy.value.as_str(), policy.source), ("compact,delete", SOURCE_STATIC_BROKER));
        assert_eq!(d.iter().find(|x| x.name == "min.cleanable.dirty.ratio").map(|x| x.config_type), Some(TYPE_DOUBLE));
        assert!(is_list("cleanup.policy") && !is_list("segment.ms"));
        assert_eq!(default_value("cleanup.policy").as_deref(), Some("delete"));
        for bad in [("cleanup.policy", "compact,"), ("min.cleanable.dirty.ratio", "1.1"), ("max.compaction.lag.ms", "0")] {
            assert!(validate(bad.0, bad.1).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamp_type_and_compression_are_described_from_the_topic_then_the_broker() {
        let mut b = BrokerConfig::default();
        let d = describe(&b, &Layers::default(), &BTreeMap::new());
        let find = |d: &[Described], n: &str| d.iter().find(|x| x.name == n).cloned().expect("described");
        for (name, value, t) in [
            ("message.timestamp.type", "CreateTime", TYPE_STRING),
            ("compression.type", "producer", TYPE_STRING),
            ("compression.gzip.level", "-1", TYPE_INT),
            ("compression.lz4.level", "9", TYPE_INT),
            ("compression.zstd.level", "3", TYPE_INT),
        ] {
            let x = find(&d, name);
            assert_eq!((x.value.as_str(), x.source, x.config_type), (value, SOURCE_DEFAULT, t), "{name}");
        }
        assert_eq!(find(&d, "message.timestamp.type").synonyms[0].0, "log.message.timestamp.type");
        b.set("log.message.timestamp.type", "LogAppendTime").expect("broker default");
        b.set("compression.type", "gzip").expect("broker default");
        let e = effective(&b, &BTreeMap::new());
        assert_eq!((e.log.timestamp_type, e.compression), (TimestampType::LogAppendTime, TopicCompression::Gzip));
        let d = describe(&b, &Layers::default(), &BTreeMap::new());
        assert_eq!(find(&d, "compression.type").source, SOURCE_STATIC_BROKER);
        let mut o = BTreeMap::new();
        for (k, v) in [("message.timestamp.type", "CreateTime"), ("compression.type", "zstd"), ("compression.zstd.level", "-7")] {
            assert_eq!(validate(k, v), Ok(()), "{k}={v}");
            o.insert(k.to_string(), v.to_string());
        }
        let e = effective(&b, &o);
        assert_eq!(
            (e.log.timestamp_type, e.compression, e.compression_levels.zstd),
            (TimestampType::CreateTime, TopicCompression::Zstd, -7)
        );
        let ts = find(&describe(&b, &Layers::default(), &o), "message.timestamp.type");
        assert_eq!((ts.value.as_str(), ts.source), ("CreateTime", SOURCE_TOPIC));
        assert_eq!(ts.synonyms[1], ("log.message.timestamp.type", Some("LogAppendTime".to_string()), SOURCE_STATIC_BROKER));
        for (k, v) in [
            ("message.timestamp.type", "logappendtime"),
            ("compression.type", "none"),
            ("compression.gzip.level", "10"),
            ("compression.lz4.level", "0"),
            ("compression.zstd.level", "99999999999"),
        ] {
            assert!(validate(k, v).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn every_kafka_topic_config_is_described_and_checked_as_kafka_does() {
        let b = BrokerConfig::default();
        let d = describe(&b, &Layers::default(), &BTreeMap::new());
        let find = |n: &str| d.iter().find(|x| x.name == n).cloned().unwrap_or_else(|| panic!("{n} described"));
        for (name, value, t, synonym) in [
            ("file.delete.delay.ms", "60000", TYPE_LONG, Some("log.segment.delete.delay.ms")),
            ("local.retention.ms", "-2", TYPE_LONG, Some("log.local.retention.ms")),
            ("preallocate", "false", TYPE_BOOLEAN, Some("log.preallocate")),
            ("remote.storage.enable", "false", TYPE_BOOLEAN, None),
            ("leader.replication.throttled.replicas", "", TYPE_LIST, None),
            ("segment.jitter.ms", "0", TYPE_LONG, None),
            ("max.decompressed.message.bytes", "2147483639", TYPE_INT, Some("max.decompressed.message.bytes")),
            // Karst's own default: an fsync before each acknowledgement.
            ("flush.messages", "1", TYPE_LONG, Some("log.flush.interval.messages")),
        ] {
            let x = find(name);
            assert_eq!((x.value.as_str(), x.source, x.config_type), (value, SOURCE_DEFAULT, t), "{name}");
            assert_eq!(x.synonyms.first().map(|s| s.0), synonym, "{name}");
        }
        for ok in [
            ("leader.replication.throttled.replicas", "0:1,1:2"),
            ("follower.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", ""),
            ("remote.storage.enable", "false"),
            ("local.retention.bytes", "-2"),
            ("file.delete.delay.ms", "0"),
        ] {
            assert_eq!(validate(ok.0, ok.1), Ok(()), "{ok:?}");
        }
        for bad in [
            ("leader.replication.throttled.replicas", "0-1"),
            ("remote.storage.enable", "true"),
            ("local.retention.ms", "-3"),
            ("segment.jitter.ms", "-1"),
            ("preallocate", "yes"),
            ("flush.messages", "1"),
            ("flush.ms", "1000"),
        ] {
            assert!(validate(bad.0, bad.1).is_err(), "{bad:?}");
        }
        let mut o = BTreeMap::new();
        o.insert("preallocate".to_string(), "true".to_string());
        let p = describe(&b, &Layers::default(), &o).into_iter().find(|x| x.name == "preallocate").expect("described");
        assert_eq!((p.value.as_str(), p.source), ("true", SOURCE_TOPIC), "an accepted override is shown as set");
    }

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
        assert!(keys().all(|k| describe(&b, &Layers::default(), &o).iter().any(|d| d.name == k)));
        assert!(keys().all(|k| validate(k, "x").is_err_and(|e| !e.contains("unknown"))), "every key is validated");
        assert_eq!(describe(&b, &Layers::default(), &o).len(), SYNONYMS.len() + ACCEPTED.len());
    }
}
