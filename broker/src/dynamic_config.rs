//! Dynamic broker configs (Kafka's KIP-226): overrides kept in the controller quorum,
//! cluster-wide (resource "") or for one broker, laid over the static configuration
//! and applied without a restart. This module holds which keys may change, how a
//! change is checked, the effective configuration and how DescribeConfigs reports
//! each broker config's value, source and synonyms.

use std::collections::BTreeMap;

use karst_protocol::error_codes as ec;

use crate::config::{BrokerConfig, ConfigError};
use crate::kafka_broker_configs::KAFKA_BROKER_CONFIGS;

/// DescribeConfigs' `config_source` values.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// The broker configs Karst changes while running: Kafka updates each of them
/// dynamically too. The log settings are the defaults of every topic without its
/// own override (applied to open partitions at once); the cleaner's are read at its
/// next pass; the connection limits apply to the next connection accepted.
/// `log.flush.interval.*` stay static: they choose between an fsync before each
/// acknowledgement and a periodic flush, Karst's durability promise.
pub const DYNAMIC: &[&str] = &[
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.io.buffer.load.factor",
    "log.cleaner.io.buffer.size",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.threads",
    "log.cleanup.policy",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.message.timestamp.after.max.ms",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.type",
    "log.retention.bytes",
    "log.retention.ms",
    "log.roll.ms",
    "log.segment.bytes",
    "max.connections",
    "max.connections.per.ip",
    "message.max.bytes",
    "min.insync.replicas",
];

pub fn is_dynamic(key: &str) -> bool {
    DYNAMIC.contains(&key)
}

/// Kafka 4.4's (dynamic, config_type, sensitive) for one of its broker configs.
fn kafka(key: &str) -> Option<(bool, i8, bool)> {
    KAFKA_BROKER_CONFIGS.binary_search_by(|(name, ..)| (*name).cmp(key)).ok().map(|i| {
        let (_, dynamic, t, sensitive) = KAFKA_BROKER_CONFIGS[i];
        (dynamic, t, sensitive)
    })
}

/// DescribeConfigs' `config_type` of a broker config: Kafka's where Kafka has the
/// key, else Karst's own (its listeners' names are strings, its switches booleans).
pub fn config_type(key: &str) -> i8 {
    match kafka(key) {
        Some((_, t, _)) => t,
        None if key == "node.id.from.hostname" => 1,
        None => 2,
    }
}

/// The dynamic layers over the static configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layers {
    /// The cluster-wide default (resource "").
    pub default: BTreeMap<String, String>,
    /// This broker's own (resource "<node.id>").
    pub own: BTreeMap<String, String>,
}

impl Layers {
    /// The effective configuration: the static one, then the cluster default, then
    /// this broker's own. Custom keys (names neither Kafka nor Karst knows) are kept
    /// and shown, not applied.
    pub fn apply(&self, static_config: &BrokerConfig) -> BrokerConfig {
        let mut c = static_config.clone();
        for (k, v) in self.default.iter().chain(&self.own) {
            if is_dynamic(k) {
                // Checked when set; a value the quorum holds that no longer parses
                // (written by another version) leaves the setting below it in force.
                if let Err(e) = c.set(k, v) {
                    tracing::warn!(key = %k, "ignoring a dynamic broker config: {e}");
                }
            }
        }
        c
    }
}

/// Checks a broker resource's configs after a change (the whole set, as Kafka
/// validates it), with Kafka's messages and error code (INVALID_REQUEST).
pub fn check(configs: &BTreeMap<String, String>, static_config: &BrokerConfig) -> Result<(), (i16, String)> {
    let refused = |what: &str, keys: Vec<&str>| Err((ec::INVALID_REQUEST, format!("{what}: [{}]", keys.join(", "))));
    let known_static: Vec<&str> = configs
        .keys()
        .map(String::as_str)
        .filter(|k| !is_dynamic(k) && (kafka(k).is_some_and(|(dynamic, ..)| !dynamic) || karst_key(static_config, k)))
        .collect();
    if !known_static.is_empty() {
        return refused("Cannot update these configs dynamically", known_static);
    }
    let not_here: Vec<&str> =
        configs.keys().map(String::as_str).filter(|k| !is_dynamic(k) && kafka(k).is_some_and(|(dynamic, ..)| dynamic)).collect();
    if !not_here.is_empty() {
        return refused("Karst does not update these configs dynamically (set them in its configuration and restart)", not_here);
    }
    let mut c = static_config.clone();
    for (k, v) in configs.iter().filter(|(k, _)| is_dynamic(k)) {
        c.set(k, v).map_err(|e| {
            let why = match e {
                ConfigError::InvalidValue { reason, .. } => reason,
                other => other.to_string(),
            };
            (ec::INVALID_REQUEST, format!("Invalid value {v} for configuration {k}: {why}"))
        })?;
    }
    Ok(())
}

/// Whether `key` is one of Karst's own broker configs.
fn karst_key(static_config: &BrokerConfig, key: &str) -> bool {
    static_config.describe().iter().any(|(k, _)| *k == key)
}

/// Settings whose built-in default Kafka takes from another key.
const DERIVED_DEFAULT: &[&str] = &["log.retention.ms", "log.roll.ms"];

/// Names Kafka shows as the built-in default of a key whose default it derives from
/// another (`log.retention.hours=168` under `log.retention.ms`).
fn default_synonym(key: &str, default_value: &str) -> (&'static str, String) {
    const WEEK_MS: &str = "604800000";
    match key {
        "log.retention.ms" if default_value == WEEK_MS => ("log.retention.hours", "168".into()),
        "log.roll.ms" if default_value == WEEK_MS => ("log.roll.hours", "168".into()),
        _ => ("", default_value.to_string()),
    }
}

/// A broker config's value as DescribeConfigs shows it: Karst describes an unset
/// optional setting in words for its own CLI ("(none)"); Kafka answers null.
pub fn shown(value: String) -> Option<String> {
    (!value.starts_with('(')).then_some(value)
}

/// One broker config's synonyms, highest precedence first (Kafka's `configSynonyms`):
/// this broker's dynamic value, the cluster default, the static value (when it is
/// not the built-in default: Karst cannot tell a value set to the default from one
/// left alone), the built-in default. As Kafka, entries before the first one named
/// `key` are dropped (`log.retention.hours` alone is not listed for `log.retention.ms`).
pub fn synonyms(key: &'static str, layers: &Layers, static_config: &BrokerConfig) -> Vec<(&'static str, Option<String>, i8)> {
    let value_of = |c: &BrokerConfig| c.describe().into_iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    let mut out = Vec::new();
    if let Some(v) = layers.own.get(key) {
        out.push((key, Some(v.clone()), SOURCE_DYNAMIC_BROKER));
    }
    if let Some(v) = layers.default.get(key) {
        out.push((key, Some(v.clone()), SOURCE_DYNAMIC_DEFAULT));
    }
    let default = value_of(&BrokerConfig::default());
    let static_value = value_of(static_config);
    if static_value != default {
        if let Some(v) = static_value {
            out.push((key, shown(v), SOURCE_STATIC_BROKER));
        }
    }
    if let Some(v) = default.and_then(shown) {
        let (name, value) = default_synonym(key, &v);
        out.push((if name.is_empty() { key } else { name }, Some(value), SOURCE_DEFAULT));
    }
    let first = out.iter().position(|(n, ..)| *n == key).unwrap_or(out.len());
    out.split_off(first)
}

/// One broker config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
    pub config_type: i8,
    pub synonyms: Vec<(String, Option<String>, i8)>,
}

/// Every config of this broker (resource "<node.id>"): Karst's settings with their
/// effective values, then custom keys set dynamically (shown as Kafka shows them:
/// sensitive, without a value).
pub fn describe_broker(static_config: &BrokerConfig, layers: &Layers) -> Vec<Described> {
    let effective = layers.apply(static_config);
    let mut out: Vec<Described> = effective
        .describe()
        .into_iter()
        .map(|(key, value)| {
            let synonyms = synonyms(key, layers, static_config);
            let first = synonyms.first().filter(|(n, ..)| *n == key);
            let source = first.map_or(SOURCE_DEFAULT, |s| s.2);
            // A dynamic value is shown as it was set, as Kafka shows it; a setting whose
            // default Kafka derives from another key (log.retention.hours) has no
            // value of its own until set.
            let value = match first {
                Some((_, v, SOURCE_DYNAMIC_BROKER | SOURCE_DYNAMIC_DEFAULT)) => v.clone(),
                None if DERIVED_DEFAULT.contains(&key) => None,
                _ => shown(value),
            };
            Described {
                name: key.to_string(),
                value,
                source,
                read_only: !is_dynamic(key),
                sensitive: kafka(key).is_some_and(|(.., s)| s),
                config_type: config_type(key),
                synonyms: synonyms.into_iter().map(|(n, v, s)| (n.to_string(), v, s)).collect(),
            }
        })
        .collect();
    for (map, source) in [(&layers.own, SOURCE_DYNAMIC_BROKER), (&layers.default, SOURCE_DYNAMIC_DEFAULT)] {
        let custom_keys: Vec<&String> = map.keys().filter(|k| !out.iter().any(|d| d.name == **k)).collect();
        for k in custom_keys {
            out.push(custom(k, source));
        }
    }
    out
}

/// The cluster-wide default resource (""): only what is set there, as Kafka.
pub fn describe_default(layers: &Layers) -> Vec<Described> {
    layers
        .default
        .iter()
        .map(|(k, v)| {
            if !is_dynamic(k) {
                return custom(k, SOURCE_DYNAMIC_DEFAULT);
            }
            Described {
                name: k.clone(),
                value: Some(v.clone()),
                source: SOURCE_DYNAMIC_DEFAULT,
                read_only: false,
                sensitive: false,
                config_type: config_type(k),
                synonyms: vec![(k.clone(), Some(v.clone()), SOURCE_DYNAMIC_DEFAULT)],
            }
        })
        .collect()
}

/// A key neither Kafka nor Karst knows, set dynamically: Kafka keeps it and shows it
/// as a sensitive value of unknown type.
fn custom(key: &str, source: i8) -> Described {
    Described {
        name: key.to_string(),
        value: None,
        source,
        read_only: true,
        sensitive: true,
        config_type: 0,
        synonyms: vec![(key.to_string(), None, source)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_dynamic_key_is_one_karst_parses_and_kafka_updates_dynamically() {
        let c = BrokerConfig::default();
        for k in DYNAMIC {
            assert!(kafka(k).is_some_and(|(dynamic, ..)| dynamic), "{k} is dynamic in Kafka");
            assert!(karst_key(&c, k), "{k} is a Karst setting");
        }
        assert!(KAFKA_BROKER_CONFIGS.windows(2).all(|w| w[0].0 < w[1].0), "sorted for the binary search");
    }

    #[test]
    fn changes_are_checked_as_kafka_checks_them() {
        let c = BrokerConfig::default();
        assert_eq!(check(&map(&[("log.retention.ms", "5000"), ("my.own.key", "x")]), &c), Ok(()));
        let msg = |r: Result<(), (i16, String)>| r.map_err(|(code, m)| (code == ec::INVALID_REQUEST, m)).unwrap_err();
        assert_eq!(
            msg(check(&map(&[("num.partitions", "3")]), &c)),
            (true, "Cannot update these configs dynamically: [num.partitions]".into())
        );
        assert_eq!(
            msg(check(&map(&[("admin.listener", "127.0.0.1:1")]), &c)).1,
            "Cannot update these configs dynamically: [admin.listener]"
        );
        assert!(msg(check(&map(&[("num.io.threads", "4")]), &c)).1.starts_with("Karst does not update these configs dynamically"));
        assert!(msg(check(&map(&[("log.retention.ms", "abc")]), &c)).1.starts_with("Invalid value abc for configuration log.retention.ms"));
        assert!(check(&map(&[("log.cleanup.policy", "compact,delete"), ("message.max.bytes", "0")]), &c).is_err());
    }

    #[test]
    fn the_broker_over_the_default_over_the_static_configuration() {
        let mut s = BrokerConfig::default();
        s.set("message.max.bytes", "3000000").expect("static");
        let layers = Layers {
            default: map(&[("log.retention.ms", "5000"), ("message.max.bytes", "2000000"), ("custom.one", "x")]),
            own: map(&[("log.retention.ms", "7000"), ("max.connections", "10")]),
        };
        let e = layers.apply(&s);
        assert_eq!((e.log_retention_ms, e.message_max_bytes, e.max_connections), (Some(7000), 2_000_000, 10));
        let d = describe_broker(&s, &layers);
        let find = |n: &str| d.iter().find(|x| x.name == n).cloned().unwrap_or_else(|| panic!("{n}"));
        let r = find("log.retention.ms");
        assert_eq!((r.value.as_deref(), r.source, r.read_only), (Some("7000"), SOURCE_DYNAMIC_BROKER, false));
        assert_eq!(
            r.synonyms,
            vec![
                ("log.retention.ms".into(), Some("7000".into()), SOURCE_DYNAMIC_BROKER),
                ("log.retention.ms".into(), Some("5000".into()), SOURCE_DYNAMIC_DEFAULT),
                ("log.retention.hours".into(), Some("168".into()), SOURCE_DEFAULT),
            ],
            "as Kafka lists them"
        );
        let m = find("message.max.bytes");
        assert_eq!((m.source, m.synonyms.len()), (SOURCE_DYNAMIC_DEFAULT, 3), "dynamic default, static, default");
        assert!(find("node.id").read_only && !find("max.connections").read_only);
        assert_eq!(find("log.retention.bytes").synonyms, vec![("log.retention.bytes".into(), Some("-1".into()), SOURCE_DEFAULT)]);
        let plain = describe_broker(&BrokerConfig::default(), &Layers::default());
        let r = plain.iter().find(|x| x.name == "log.retention.ms").expect("described");
        assert!(r.synonyms.is_empty() && r.source == SOURCE_DEFAULT, "Kafka lists log.retention.hours only under a set value");
        assert_eq!(r.value, None, "and shows no value of its own");
        let c = find("custom.one");
        assert_eq!((c.value, c.sensitive, c.source, c.config_type), (None, true, SOURCE_DYNAMIC_DEFAULT, 0));
        let defaults = describe_default(&layers);
        assert_eq!(defaults.len(), 3);
        assert_eq!(defaults.iter().find(|x| x.name == "log.retention.ms").map(|x| x.source), Some(SOURCE_DYNAMIC_DEFAULT));
    }
}
