//! The broker's one typed configuration, set from defaults, a TOML file,
//! `KARST_*` environment variables and flags, in that order.
//!
//! Keys are Kafka's own names (`log.segment.bytes`, `num.partitions`, ...) so a
//! Kafka user finds them where they look; Karst-only keys follow the same style.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use karst_protocol::recompress::{level_is_valid, CompressionLevels, TopicCompression};
use karst_storage::{CleanupPolicy, DirtyRatio, TimestampType};
use thiserror::Error;

/// A configuration value that cannot be used; start-up stops with it.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("unknown configuration key `{0}`")]
    UnknownKey(String),
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    InvalidValue { key: String, value: String, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Everything a broker needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// `node.id`
    pub node_id: i32,
    /// `listeners`: where to accept Kafka clients (port 0 picks a free port), as
    /// `NAME://host:port,...`; a lone `PLAINTEXT` listener is kept as its bare
    /// `host:port`. [`BrokerConfig::listeners`] gives them parsed and checked.
    pub listen: String,
    /// `advertised.listeners`: `NAME://host:port,...` given to clients in Metadata
    /// (a bare host:port for a single listener); a listener not named here
    /// advertises its bound address.
    pub advertised_listener: Option<String>,
    /// `listener.security.protocol.map`: `NAME:PROTOCOL,...`. Unset: Kafka's
    /// default, where a listener named PLAINTEXT (or SSL, ...) is that protocol.
    /// Only PLAINTEXT is supported.
    pub listener_security_protocol_map: Option<String>,
    /// `inter.broker.listener.name`: the listener other brokers (replication
    /// followers) use to reach this one. Unset: `replica.listener` if set, else
    /// the first listener.
    pub inter_broker_listener_name: Option<String>,
    /// `node.id.from.hostname`: take `node.id` from the trailing number of the
    /// host name (`karst-2` → 2), for StatefulSets and compose replicas.
    pub node_id_from_hostname: bool,
    /// `log.dirs`: where partitions and metadata live.
    pub data_dir: PathBuf,
    /// `socket.request.max.bytes`
    pub socket_request_max_bytes: usize,
    /// `auto.create.topics.enable`
    pub auto_create_topics_enable: bool,
    /// `num.partitions`: partitions of auto-created topics and CreateTopics with -1.
    pub num_partitions: i32,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `message.max.bytes`: default for topics' `max.message.bytes`.
    pub message_max_bytes: usize,
    /// `log.message.timestamp.before.max.ms`: default of topics'
    /// `message.timestamp.before.max.ms` (KIP-937; Kafka's default, no limit).
    pub log_message_timestamp_before_max_ms: i64,
    /// `log.message.timestamp.after.max.ms`: default of topics'
    /// `message.timestamp.after.max.ms` (one hour, as in Kafka 4).
    pub log_message_timestamp_after_max_ms: i64,
    /// `log.message.downconversion.enable`: default of topics'
    /// `message.downconversion.enable` (Fetch v0-v3 consumers served by conversion).
    pub log_message_downconversion_enable: bool,
    /// `log.message.timestamp.type`: default of topics' `message.timestamp.type`.
    pub log_message_timestamp_type: TimestampType,
    /// `compression.type`: default of topics' `compression.type` (`producer`).
    pub compression_type: TopicCompression,
    /// `compression.gzip.level`, `compression.lz4.level`, `compression.zstd.level`:
    /// defaults of the topic configs of the same names.
    pub compression_levels: CompressionLevels,
    /// `fetch.max.bytes`: cap on one fetch response, whatever the client asks.
    pub fetch_max_bytes: usize,
    /// `log.segment.bytes`
    pub log_segment_bytes: u64,
    /// `log.roll.ms`
    pub log_roll_ms: Option<u64>,
    /// `log.retention.ms` (-1: forever)
    pub log_retention_ms: Option<i64>,
    /// `log.retention.bytes` (-1: no limit)
    pub log_retention_bytes: Option<u64>,
    /// `log.index.interval.bytes`
    pub log_index_interval_bytes: u32,
    /// `log.index.size.max.bytes`
    pub log_index_size_max_bytes: u32,
    /// `log.flush.interval.messages`: 1 (default) fsyncs before acknowledging a
    /// produce (group commit shares fsyncs); larger values acknowledge after the
    /// write and fsync in the background, as Kafka does.
    pub log_flush_interval_messages: u64,
    /// `log.flush.interval.ms`: background fsync period when not fsyncing per produce.
    pub log_flush_interval_ms: u64,
    /// `log.retention.check.interval.ms`
    pub log_retention_check_interval_ms: u64,
    /// `log.cleanup.policy`: default of topics' `cleanup.policy`.
    pub log_cleanup_policy: CleanupPolicy,
    /// `log.cleaner.enable`: run the log cleaner for compacted topics.
    pub log_cleaner_enable: bool,
    /// `log.cleaner.threads`: threads cleaning logs, each one log at a time.
    pub log_cleaner_threads: usize,
    /// `log.cleaner.backoff.ms`: how long a cleaner thread sleeps when no log needs cleaning.
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.io.max.bytes.per.second`: read and write rate of all cleaner threads together.
    pub log_cleaner_io_max_bytes_per_second: f64,
    /// `log.cleaner.dedupe.buffer.size`: memory for the key maps of all cleaner threads.
    pub log_cleaner_dedupe_buffer_size: usize,
    /// `log.cleaner.io.buffer.size`: bytes of cleaned batches gathered per write.
    pub log_cleaner_io_buffer_size: usize,
    /// `log.cleaner.io.buffer.load.factor`: how full a key map may get.
    pub log_cleaner_io_buffer_load_factor: f64,
    /// `log.cleaner.delete.retention.ms`: default of topics' `delete.retention.ms`.
    pub log_cleaner_delete_retention_ms: i64,
    /// `log.cleaner.min.compaction.lag.ms`: default of topics' `min.compaction.lag.ms`.
    pub log_cleaner_min_compaction_lag_ms: i64,
    /// `log.cleaner.max.compaction.lag.ms`: default of topics' `max.compaction.lag.ms`.
    pub log_cleaner_max_compaction_lag_ms: i64,
    /// `log.cleaner.min.cleanable.ratio`: default of topics' `min.cleanable.dirty.ratio`.
    pub log_cleaner_min_cleanable_ratio: DirtyRatio,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes`: `segment.bytes` of `__consumer_offsets` when created.
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.retention.minutes`: offsets of an empty group expire after this.
    pub offsets_retention_minutes: i64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`.
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.segment.bytes`: its `segment.bytes` when created.
    pub transaction_state_log_segment_bytes: u64,
    /// `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for.
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often open
    /// transactions are checked for their timeout.
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,
    /// `transactional.id.expiration.ms`: a transactional id with no transaction open
    /// and unused this long is forgotten.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.version`: the finalized level of the feature ApiVersions
    /// announces (KIP-890). 2 (the default, as a new Kafka 4 cluster): clients
    /// may run transactions v2; 0 or 1: transactions v1 only. Every broker of a
    /// cluster needs the same level.
    pub transaction_version: i16,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members.
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub group_max_session_timeout_ms: i32,
    /// `controller.listener`: where this node's controller accepts quorum peers.
    /// Unset: the own entry of `controller.quorum.voters`, or an ephemeral
    /// loopback port for a single-node broker (a lone voter needs no peers).
    pub controller_listener: Option<String>,
    /// `controller.quorum.voters`: `1@host:port,2@host:port,...`. Unset: this
    /// node is the only voter.
    pub controller_quorum_voters: Option<String>,
    /// `process.roles`: what this node runs. `broker,controller` (the default,
    /// KRaft's combined mode), `broker` (serves clients, follows the metadata log
    /// without voting) or `controller` (votes, serves no clients).
    pub roles: Roles,
    /// `cluster.id`: written to a fresh data dir. Unset: derived from
    /// `controller.quorum.voters` (so the voters of one quorum agree), or random
    /// for a single node.
    pub cluster_id: Option<String>,
    /// `broker.session.timeout.ms`: the controller leader fences a broker whose
    /// heartbeats stop for this long.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`
    pub broker_heartbeat_interval_ms: u64,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this long
    /// leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `min.insync.replicas` (topics may override it).
    pub min_insync_replicas: i32,
    /// `broker.rack`: replicas of a partition are spread over racks when set.
    pub broker_rack: Option<String>,
    /// `replica.listener`: host:port followers fetch from, when replication should
    /// use another address (network) than clients. Unset: the client listener.
    pub replica_listener: Option<String>,
    /// `admin.listener`: host:port of the HTTP endpoint for `/metrics` and
    /// `/health/*` (port 0 picks a free one). `None` (an empty value): no endpoint.
    pub admin_listener: Option<String>,
    /// `max.broker.partitions` (KIP-578's name): partition replicas one broker
    /// may host; CreateTopics/CreatePartitions beyond it get POLICY_VIOLATION.
    pub max_broker_partitions: usize,
    /// `group.max.size`: members of one consumer group; a JoinGroup beyond it
    /// gets GROUP_MAX_SIZE_REACHED.
    pub group_max_size: usize,
    /// `group.consumer.session.timeout.ms`: a KIP-848 member not heard from for
    /// this long is fenced.
    pub group_consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`: how often KIP-848 members heartbeat.
    pub group_consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`: members of one KIP-848 group.
    pub group_consumer_max_size: usize,
    /// `group.consumer.assignors`: the first is used when no member names one.
    pub group_consumer_default_assignor: crate::group::assignors::Assignor,
    /// KIP-932 share groups: `group.share.heartbeat.interval.ms`,
    /// `group.share.session.timeout.ms`, `group.share.record.lock.duration.ms`,
    /// `group.share.delivery.count.limit`, `group.share.partition.max.record.locks`,
    /// `group.share.max.size`, `group.share.max.share.sessions`.
    pub share: crate::share::ShareSettings,
    /// `max.connections`: open client connections; at the limit the broker
    /// stops accepting until one closes, as Kafka does.
    pub max_connections: usize,
    /// `max.connections.per.ip`: open connections from one address; a new one
    /// beyond it is closed at once, as Kafka does.
    pub max_connections_per_ip: usize,
    /// Listener security (`ssl.*`, `sasl.*`, `listener.name.<listener>.*`,
    /// `connections.max.reauth.ms`), as given: read per listener by
    /// [`crate::security`] at start-up.
    pub security: BTreeMap<String, String>,
    /// `authorizer.class.name`: set, ACLs are checked (Karst's own authorizer, with
    /// Kafka's StandardAuthorizer semantics, whatever Kafka class is named).
    pub authorizer_class_name: Option<String>,
    /// `super.users`: principals separated by `;`, allowed everything.
    pub super_users: String,
    /// `allow.everyone.if.no.acl.found`
    pub allow_everyone_if_no_acl_found: bool,
    /// `connections.max.idle.ms`: a connection with no request in flight and no
    /// traffic for this long is closed.
    pub connections_max_idle_ms: u64,
    /// `max.incremental.fetch.session.cache.slots`: KIP-227 fetch sessions this broker
    /// keeps; 0 disables them (every fetch is then answered in full).
    pub max_incremental_fetch_session_cache_slots: usize,
    /// `min.incremental.fetch.session.eviction.ms` (KIP-227's name; Kafka fixes it at
    /// 120000): how long a fetch session must be unused, or exist, before a new one
    /// may take its slot.
    pub min_incremental_fetch_session_eviction_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listen: "127.0.0.1:9092".to_string(),
            advertised_listener: None,
            listener_security_protocol_map: None,
            inter_broker_listener_name: None,
            node_id_from_hostname: false,
            data_dir: PathBuf::from("karst-data"),
            socket_request_max_bytes: 100 * 1024 * 1024,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            message_max_bytes: 1_048_588,
            log_message_timestamp_before_max_ms: i64::MAX,
            log_message_timestamp_after_max_ms: 3_600_000,
            log_message_downconversion_enable: true,
            log_message_timestamp_type: TimestampType::CreateTime,
            compression_type: TopicCompression::Producer,
            compression_levels: CompressionLevels::default(),
            fetch_max_bytes: 55 * 1024 * 1024,
            log_segment_bytes: 1 << 30,
            log_roll_ms: Some(7 * 24 * 3600 * 1000),
            log_retention_ms: Some(7 * 24 * 3600 * 1000),
            log_retention_bytes: None,
            log_index_interval_bytes: 4096,
            log_index_size_max_bytes: 10 * 1024 * 1024,
            log_flush_interval_messages: 1,
            log_flush_interval_ms: 1000,
            log_retention_check_interval_ms: 30_000,
            log_cleanup_policy: CleanupPolicy::DELETE,
            log_cleaner_enable: true,
            log_cleaner_threads: 1,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_io_max_bytes_per_second: f64::MAX,
            log_cleaner_dedupe_buffer_size: 128 << 20,
            log_cleaner_io_buffer_size: 512 << 10,
            log_cleaner_io_buffer_load_factor: 0.9,
            log_cleaner_delete_retention_ms: 24 * 3600 * 1000,
            log_cleaner_min_compaction_lag_ms: 0,
            log_cleaner_max_compaction_lag_ms: i64::MAX,
            log_cleaner_min_cleanable_ratio: DirtyRatio::HALF,
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            offsets_retention_minutes: 7 * 24 * 60,
            offset_metadata_max_bytes: 4096,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_segment_bytes: 100 * 1024 * 1024,
            transaction_max_timeout_ms: 900_000,
            transaction_version: 2,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: 10_000,
            transactional_id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            controller_listener: None,
            controller_quorum_voters: None,
            roles: Roles { broker: true, controller: true },
            cluster_id: None,
            broker_session_timeout_ms: 9000,
            broker_heartbeat_interval_ms: 500,
            replica_lag_time_max_ms: 30_000,
            min_insync_replicas: 1,
            broker_rack: None,
            replica_listener: None,
            admin_listener: Some("127.0.0.1:9644".to_string()),
            max_broker_partitions: 50_000,
            group_max_size: 1000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_max_size: i32::MAX as usize,
            group_consumer_default_assignor: crate::group::assignors::Assignor::Uniform,
            share: crate::share::ShareSettings::default(),
            max_connections: 10_000,
            max_connections_per_ip: 10_000,
            security: BTreeMap::new(),
            authorizer_class_name: None,
            super_users: String::new(),
            allow_everyone_if_no_acl_found: false,
            connections_max_idle_ms: 600_000,
            max_incremental_fetch_session_cache_slots: 1000,
            min_incremental_fetch_session_eviction_ms: 120_000,
        }
    }
}

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    value.trim().parse::<T>().map_err(|e| ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: e.to_string(),
    })
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue { key: key.to_string(), value: value.to_string(), reason: reason.to_string() }
}

fn positive<T: PartialOrd + Default>(key: &str, value: &str, v: T) -> Result<T, ConfigError> {
    if v > T::default() {
        Ok(v)
    } else {
        Err(invalid(key, value, "must be positive"))
    }
}

/// A codec's compression level, in the range Kafka accepts for `key`.
fn level(key: &str, value: &str) -> Result<i32, ConfigError> {
    let v = parse(key, value)?;
    if level_is_valid(key, v) {
        Ok(v)
    } else {
        Err(invalid(key, value, "outside the levels Kafka accepts for this codec"))
    }
}

fn non_negative(key: &str, value: &str) -> Result<i64, ConfigError> {
    match parse::<i64>(key, value)? {
        v if v >= 0 => Ok(v),
        _ => Err(invalid(key, value, "must not be negative")),
    }
}

/// A double as Kafka prints it where it matters: its default rate limit is
/// `Double.MAX_VALUE`, printed `1.7976931348623157E308`.
fn java_double(v: f64) -> String {
    if v == f64::MAX {
        "1.7976931348623157E308".to_string()
    } else {
        v.to_string()
    }
}

/// -1 means "none", as in Kafka; other negatives are errors.
fn optional_i64(key: &str, value: &str) -> Result<Option<i64>, ConfigError> {
    match parse::<i64>(key, value)? {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v)),
        _ => Err(invalid(key, value, "must be -1 or non-negative")),
    }
}

/// Strips a `PLAINTEXT://` style scheme from a Kafka listener value.
fn listener_address(value: &str) -> &str {
    value.split_once("://").map_or(value, |(_, rest)| rest)
}

/// The listener name of a bare `host:port` (Kafka's default listener).
pub const DEFAULT_LISTENER: &str = "PLAINTEXT";

/// The security protocols Kafka knows; Karst speaks only the first.
const PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// One entry of `listeners` or `advertised.listeners`: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedAddress {
    /// Upper-cased, as Kafka normalises listener names.
    pub name: String,
    /// `host:port` (an IPv6 host in brackets).
    pub host: String,
    pub port: u16,
}

impl NamedAddress {
    /// `host:port`, ready for binding or connecting (an empty host is every interface).
    pub fn address(&self) -> String {
        let host = if self.host.is_empty() { "0.0.0.0" } else { &self.host };
        format!("{host}:{}", self.port)
    }

    /// The host without IPv6 brackets, as registered and advertised.
    pub fn bare_host(&self) -> &str {
        self.host.trim_matches(|c| c == '[' || c == ']')
    }
}

impl fmt::Display for NamedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.name, self.host, self.port)
    }
}

/// A listener name Kafka accepts: letters, digits, `_` and `-`.
fn valid_listener_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parses `NAME://host:port,...` (a bare `host:port` is named PLAINTEXT); every
/// error names `key`. Names must be unique.
pub fn parse_named_addresses(key: &str, value: &str) -> Result<Vec<NamedAddress>, ConfigError> {
    let mut out: Vec<NamedAddress> = Vec::new();
    for entry in value.split(',').map(str::trim) {
        if entry.is_empty() {
            return Err(invalid(key, value, "empty entry"));
        }
        let (name, addr) = match entry.split_once("://") {
            Some((n, a)) => (n.trim().to_ascii_uppercase(), a.trim()),
            None => (DEFAULT_LISTENER.to_string(), entry),
        };
        if !valid_listener_name(&name) {
            return Err(invalid(key, value, &format!("`{name}` is not a listener name (letters, digits, `_` and `-`)")));
        }
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(invalid(key, value, &format!("`{entry}` is not NAME://host:port")));
        };
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(invalid(key, value, &format!("IPv6 host in `{entry}` must be in brackets")));
        }
        let port: u16 = port.parse().map_err(|_| invalid(key, value, &format!("bad port in `{entry}`")))?;
        if out.iter().any(|o| o.name == name) {
            return Err(invalid(key, value, &format!("listener name `{name}` appears twice")));
        }
        out.push(NamedAddress { name, host: host.to_string(), port });
    }
    Ok(out)
}

/// The text `listeners` / `advertised.listeners` keep: a lone PLAINTEXT entry
/// as its bare `host:port` (what it has always been), otherwise `NAME://host:port,...`.
fn canonical(list: &[NamedAddress]) -> String {
    match list {
        [only] if only.name == DEFAULT_LISTENER => format!("{}:{}", only.host, only.port),
        _ => list.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
    }
}

/// Parses `NAME:PROTOCOL,...` of `listener.security.protocol.map`.
fn parse_protocol_map(key: &str, value: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut map = BTreeMap::new();
    for entry in value.split(',').map(str::trim) {
        let Some((name, protocol)) = entry.split_once(':') else {
            return Err(invalid(key, value, &format!("`{entry}` is not NAME:PROTOCOL")));
        };
        let (name, protocol) = (name.trim().to_ascii_uppercase(), protocol.trim().to_ascii_uppercase());
        if !valid_listener_name(&name) {
            return Err(invalid(key, value, &format!("`{name}` is not a listener name")));
        }
        if !PROTOCOLS.contains(&protocol.as_str()) {
            return Err(invalid(key, value, &format!("unknown security protocol `{protocol}` (Kafka's: {})", PROTOCOLS.join(", "))));
        }
        if map.insert(name.clone(), protocol).is_some() {
            return Err(invalid(key, value, &format!("listener name `{name}` appears twice")));
        }
    }
    Ok(map)
}

/// The node id a host name ends with: `karst-2` → 2, `broker7` → 7.
pub fn node_id_from_hostname(hostname: &str) -> Option<i32> {
    let host = hostname.trim().split('.').next().unwrap_or("");
    let digits = host.len() - host.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    host[host.len() - digits..].parse().ok()
}

/// The listeners of a configuration, parsed and checked against each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// What to bind, in the order given.
    pub bind: Vec<NamedAddress>,
    /// `advertised.listeners` by listener name; a listener without an entry
    /// advertises its bound address.
    pub advertised: BTreeMap<String, NamedAddress>,
    /// `inter.broker.listener.name`, when set.
    pub inter_broker: Option<String>,
    /// Each listener's security protocol.
    pub protocols: BTreeMap<String, crate::security::Protocol>,
}

impl BrokerConfig {
    /// Every key `set` understands, for help texts.
    pub const KEYS: &'static [&'static str] = &[
        "node.id",
        "listeners",
        "advertised.listeners",
        "listener.security.protocol.map",
        "inter.broker.listener.name",
        "node.id.from.hostname",
        "log.dirs",
        "socket.request.max.bytes",
        "auto.create.topics.enable",
        "num.partitions",
        "default.replication.factor",
        "message.max.bytes",
        "log.message.timestamp.before.max.ms",
        "log.message.timestamp.after.max.ms",
        "log.message.downconversion.enable",
        "log.message.timestamp.type",
        "compression.type",
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.zstd.level",
        "fetch.max.bytes",
        "log.segment.bytes",
        "log.roll.ms",
        "log.retention.ms",
        "log.retention.hours",
        "log.retention.bytes",
        "log.index.interval.bytes",
        "log.index.size.max.bytes",
        "log.flush.interval.messages",
        "log.flush.interval.ms",
        "log.retention.check.interval.ms",
        "log.cleanup.policy",
        "log.cleaner.enable",
        "log.cleaner.threads",
        "log.cleaner.backoff.ms",
        "log.cleaner.io.max.bytes.per.second",
        "log.cleaner.dedupe.buffer.size",
        "log.cleaner.io.buffer.size",
        "log.cleaner.io.buffer.load.factor",
        "log.cleaner.delete.retention.ms",
        "log.cleaner.min.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        "log.cleaner.min.cleanable.ratio",
        "offsets.topic.num.partitions",
        "offsets.topic.segment.bytes",
        "offsets.retention.minutes",
        "offset.metadata.max.bytes",
        "transaction.state.log.num.partitions",
        "transaction.state.log.segment.bytes",
        "transaction.max.timeout.ms",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "transactional.id.expiration.ms",
        "transaction.version",
        "group.initial.rebalance.delay.ms",
        "group.min.session.timeout.ms",
        "group.max.session.timeout.ms",
        "controller.listener",
        "controller.quorum.voters",
        "process.roles",
        "cluster.id",
        "broker.session.timeout.ms",
        "broker.heartbeat.interval.ms",
        "replica.lag.time.max.ms",
        "min.insync.replicas",
        "broker.rack",
        "replica.listener",
        "admin.listener",
        "max.broker.partitions",
        "group.max.size",
        "group.share.heartbeat.interval.ms",
        "group.share.session.timeout.ms",
        "group.share.record.lock.duration.ms",
        "group.share.delivery.count.limit",
        "group.share.partition.max.record.locks",
        "group.share.max.size",
        "group.share.max.share.sessions",
        "max.connections",
        "max.connections.per.ip",
        "connections.max.idle.ms",
        "max.incremental.fetch.session.cache.slots",
        "min.incremental.fetch.session.eviction.ms",
    ];

    /// Sets one key from its text value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.trim();
        match key {
            "node.id" => self.node_id = parse(key, v)?,
            "listeners" | "listen" => self.listen = canonical(&parse_named_addresses("listeners", v)?),
            "advertised.listeners" | "advertised.listener" => {
                self.advertised_listener =
                    if v.is_empty() { None } else { Some(canonical(&parse_named_addresses("advertised.listeners", v)?)) }
            }
            "listener.security.protocol.map" => {
                self.listener_security_protocol_map = if v.is_empty() {
                    None
                } else {
                    parse_protocol_map(key, v)?;
                    Some(v.to_string())
                }
            }
            "inter.broker.listener.name" => {
                self.inter_broker_listener_name = if v.is_empty() {
                    None
                } else if valid_listener_name(v) {
                    Some(v.to_ascii_uppercase())
                } else {
                    return Err(invalid(key, v, "not a listener name"));
                }
            }
            "node.id.from.hostname" => self.node_id_from_hostname = parse(key, v)?,
            "log.dirs" | "log.dir" | "data.dir" => self.data_dir = PathBuf::from(v),
            "socket.request.max.bytes" => self.socket_request_max_bytes = positive(key, v, parse(key, v)?)?,
            "auto.create.topics.enable" => self.auto_create_topics_enable = parse(key, v)?,
            "num.partitions" => self.num_partitions = positive(key, v, parse(key, v)?)?,
            "default.replication.factor" => self.default_replication_factor = positive(key, v, parse(key, v)?)?,
            "message.max.bytes" => self.message_max_bytes = positive(key, v, parse(key, v)?)?,
            "log.message.timestamp.before.max.ms" => self.log_message_timestamp_before_max_ms = non_negative(key, v)?,
            "log.message.timestamp.after.max.ms" => self.log_message_timestamp_after_max_ms = non_negative(key, v)?,
            "log.message.downconversion.enable" => self.log_message_downconversion_enable = parse(key, v)?,
            "log.message.timestamp.type" => {
                self.log_message_timestamp_type =
                    TimestampType::parse(v).ok_or_else(|| invalid(key, v, "must be CreateTime or LogAppendTime"))?
            }
            "compression.type" => {
                self.compression_type = TopicCompression::parse(v)
                    .ok_or_else(|| invalid(key, v, "must be one of uncompressed, zstd, lz4, snappy, gzip, producer"))?
            }
            "compression.gzip.level" => self.compression_levels.gzip = level(key, v)?,
            "compression.lz4.level" => self.compression_levels.lz4 = level(key, v)?,
            "compression.zstd.level" => self.compression_levels.zstd = level(key, v)?,
            "fetch.max.bytes" => self.fetch_max_bytes = positive(key, v, parse(key, v)?)?,
            "log.segment.bytes" => self.log_segment_bytes = positive(key, v, parse(key, v)?)?,
            "log.roll.ms" => self.log_roll_ms = optional_i64(key, v)?.map(|x| x as u64),
            "log.retention.ms" => self.log_retention_ms = optional_i64(key, v)?,
            "log.retention.hours" => self.log_retention_ms = optional_i64(key, v)?.map(|h| h * 3_600_000),
            "log.retention.bytes" => self.log_retention_bytes = optional_i64(key, v)?.map(|x| x as u64),
            "log.index.interval.bytes" => self.log_index_interval_bytes = positive(key, v, parse(key, v)?)?,
            "log.index.size.max.bytes" => {
                let n: u32 = positive(key, v, parse(key, v)?)?;
                if n < 4096 {
                    return Err(invalid(key, v, "must be at least 4096"));
                }
                self.log_index_size_max_bytes = n;
            }
            "log.flush.interval.messages" => self.log_flush_interval_messages = positive(key, v, parse(key, v)?)?,
            "log.flush.interval.ms" => self.log_flush_interval_ms = positive(key, v, parse(key, v)?)?,
            "log.retention.check.interval.ms" => self.log_retention_check_interval_ms = positive(key, v, parse(key, v)?)?,
            "log.cleanup.policy" => {
                self.log_cleanup_policy =
                    CleanupPolicy::parse(v).ok_or_else(|| invalid(key, v, "must be a list of `delete` and `compact`"))?
            }
            "log.cleaner.enable" => self.log_cleaner_enable = parse(key, v)?,
            "log.cleaner.threads" => self.log_cleaner_threads = positive(key, v, parse(key, v)?)?,
            "log.cleaner.backoff.ms" => self.log_cleaner_backoff_ms = positive(key, v, parse(key, v)?)?,
            "log.cleaner.io.max.bytes.per.second" => {
                let rate: f64 = parse(key, v)?;
                if rate.is_nan() || rate <= 0.0 {
                    return Err(invalid(key, v, "must be positive"));
                }
                self.log_cleaner_io_max_bytes_per_second = rate;
            }
            "log.cleaner.dedupe.buffer.size" => {
                let n: usize = parse(key, v)?;
                // Kafka's minimum: enough for a useful map (1 MiB a thread).
                if n < 1 << 20 {
                    return Err(invalid(key, v, "must be at least 1048576"));
                }
                self.log_cleaner_dedupe_buffer_size = n;
            }
            "log.cleaner.io.buffer.size" => {
                let n: usize = parse(key, v)?;
                if n < 4096 {
                    return Err(invalid(key, v, "must be at least 4096"));
                }
                self.log_cleaner_io_buffer_size = n;
            }
            "log.cleaner.io.buffer.load.factor" => {
                let f: f64 = parse(key, v)?;
                if f.is_nan() || f <= 0.0 || f > 1.0 {
                    return Err(invalid(key, v, "must be in (0, 1]"));
                }
                self.log_cleaner_io_buffer_load_factor = f;
            }
            "log.cleaner.delete.retention.ms" => self.log_cleaner_delete_retention_ms = non_negative(key, v)?,
            "log.cleaner.min.compaction.lag.ms" => self.log_cleaner_min_compaction_lag_ms = non_negative(key, v)?,
            "log.cleaner.max.compaction.lag.ms" => self.log_cleaner_max_compaction_lag_ms = positive(key, v, parse(key, v)?)?,
            "log.cleaner.min.cleanable.ratio" => {
                let r: f64 = parse(key, v)?;
                self.log_cleaner_min_cleanable_ratio = DirtyRatio::new(r).ok_or_else(|| invalid(key, v, "must be in [0, 1]"))?;
            }
            "offsets.topic.num.partitions" => self.offsets_topic_num_partitions = positive(key, v, parse(key, v)?)?,
            "offsets.topic.segment.bytes" => {
                let n: u64 = parse(key, v)?;
                if !(14..=i32::MAX as u64).contains(&n) {
                    return Err(invalid(key, v, "must be in [14, 2147483647]"));
                }
                self.offsets_topic_segment_bytes = n;
            }
            "offsets.retention.minutes" => self.offsets_retention_minutes = positive(key, v, parse(key, v)?)?,
            "offset.metadata.max.bytes" => self.offset_metadata_max_bytes = parse(key, v)?,
            "transaction.state.log.num.partitions" => self.transaction_state_log_num_partitions = positive(key, v, parse(key, v)?)?,
            "transaction.state.log.segment.bytes" => {
                let n: u64 = parse(key, v)?;
                if !(14..=i32::MAX as u64).contains(&n) {
                    return Err(invalid(key, v, "must be in [14, 2147483647]"));
                }
                self.transaction_state_log_segment_bytes = n;
            }
            "transaction.max.timeout.ms" => self.transaction_max_timeout_ms = positive(key, v, parse(key, v)?)?,
            "transactional.id.expiration.ms" => self.transactional_id_expiration_ms = positive(key, v, parse(key, v)?)?,
            "transaction.version" => {
                let level: i16 = parse(key, v)?;
                if !(0..=crate::handlers::api_versions::TRANSACTION_VERSION_MAX).contains(&level) {
                    return Err(invalid(key, v, "must be 0, 1 or 2"));
                }
                self.transaction_version = level;
            }
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.transaction_abort_timed_out_transaction_cleanup_interval_ms = positive(key, v, parse(key, v)?)?
            }
            "group.initial.rebalance.delay.ms" => {
                let d: i64 = parse(key, v)?;
                if d < 0 {
                    return Err(invalid(key, v, "must not be negative"));
                }
                self.group_initial_rebalance_delay_ms = d;
            }
            "group.min.session.timeout.ms" => self.group_min_session_timeout_ms = positive(key, v, parse(key, v)?)?,
            "group.max.session.timeout.ms" => self.group_max_session_timeout_ms = positive(key, v, parse(key, v)?)?,
            "controller.listener" | "controller.listeners" => {
                self.controller_listener = if v.is_empty() { None } else { Some(listener_address(v).to_string()) }
            }
            "controller.quorum.voters" => self.controller_quorum_voters = if v.is_empty() { None } else { Some(v.to_string()) },
            "cluster.id" => self.cluster_id = if v.is_empty() { None } else { Some(v.to_string()) },
            "process.roles" => {
                self.roles = Roles::parse(v).ok_or_else(|| invalid(key, v, "must be broker, controller or broker,controller"))?
            }
            "broker.session.timeout.ms" => self.broker_session_timeout_ms = positive(key, v, parse(key, v)?)?,
            "broker.heartbeat.interval.ms" => self.broker_heartbeat_interval_ms = positive(key, v, parse(key, v)?)?,
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = positive(key, v, parse(key, v)?)?,
            "min.insync.replicas" => self.min_insync_replicas = positive(key, v, parse(key, v)?)?,
            "broker.rack" => self.broker_rack = if v.is_empty() { None } else { Some(v.to_string()) },
            "replica.listener" => self.replica_listener = if v.is_empty() { None } else { Some(listener_address(v).to_string()) },
            // `off` too, since an empty KARST_* variable counts as unset.
            "admin.listener" => {
                self.admin_listener =
                    if v.is_empty() || v.eq_ignore_ascii_case("off") { None } else { Some(listener_address(v).to_string()) }
            }
            "max.broker.partitions" => self.max_broker_partitions = positive(key, v, parse(key, v)?)?,
            "group.max.size" => self.group_max_size = positive(key, v, parse(key, v)?)?,
            "group.consumer.session.timeout.ms" => self.group_consumer_session_timeout_ms = positive(key, v, parse(key, v)?)?,
            "group.consumer.heartbeat.interval.ms" => self.group_consumer_heartbeat_interval_ms = positive(key, v, parse(key, v)?)?,
            "group.consumer.max.size" => self.group_consumer_max_size = positive(key, v, parse(key, v)?)?,
            "group.consumer.assignors" => {
                // Kafka's class names or the assignors' names; the first is the default.
                let first = v.split(',').map(str::trim).find(|s| !s.is_empty()).unwrap_or_default();
                let name = match first.rsplit('.').next().unwrap_or_default() {
                    "UniformAssignor" => "uniform",
                    "RangeAssignor" => "range",
                    other => other,
                };
                self.group_consumer_default_assignor =
                    crate::group::assignors::Assignor::parse(name).ok_or_else(|| invalid(key, v, "must name uniform or range"))?;
            }
            "group.share.heartbeat.interval.ms" => self.share.heartbeat_interval_ms = positive(key, v, parse(key, v)?)?,
            "group.share.session.timeout.ms" => self.share.session_timeout_ms = positive(key, v, parse(key, v)?)?,
            "group.share.record.lock.duration.ms" => self.share.record_lock_duration_ms = positive(key, v, parse(key, v)?)?,
            "group.share.delivery.count.limit" => self.share.delivery_count_limit = positive(key, v, parse(key, v)?)?,
            "group.share.partition.max.record.locks" => self.share.partition_max_record_locks = positive(key, v, parse(key, v)?)?,
            "group.share.max.size" => self.share.max_size = positive(key, v, parse(key, v)?)?,
            "group.share.max.share.sessions" => self.share.max_share_sessions = positive(key, v, parse(key, v)?)?,
            "max.connections" => self.max_connections = positive(key, v, parse(key, v)?)?,
            "max.connections.per.ip" => self.max_connections_per_ip = positive(key, v, parse(key, v)?)?,
            "connections.max.idle.ms" => self.connections_max_idle_ms = positive(key, v, parse(key, v)?)?,
            "max.incremental.fetch.session.cache.slots" => {
                self.max_incremental_fetch_session_cache_slots = usize::try_from(non_negative(key, v)?).unwrap_or(usize::MAX)
            }
            "min.incremental.fetch.session.eviction.ms" => {
                self.min_incremental_fetch_session_eviction_ms = u64::try_from(non_negative(key, v)?).unwrap_or(u64::MAX)
            }
            "authorizer.class.name" => {
                const KNOWN: [&str; 3] =
                    ["org.apache.kafka.metadata.authorizer.StandardAuthorizer", "kafka.security.authorizer.AclAuthorizer", "karst"];
                self.authorizer_class_name = match v {
                    "" => None,
                    k if KNOWN.contains(&k) => Some(k.to_string()),
                    other => return Err(invalid(key, other, &format!("Karst's authorizer answers to {}", KNOWN.join(", ")))),
                }
            }
            "super.users" => {
                crate::security::acl::AuthorizerSettings::parse_super_users(v).map_err(|e| invalid(key, v, &e))?;
                self.super_users = v.to_string();
            }
            "allow.everyone.if.no.acl.found" => self.allow_everyone_if_no_acl_found = parse(key, v)?,
            k if k.starts_with("ssl.") || k.starts_with("sasl.") || k.starts_with("listener.name.") || k == "connections.max.reauth.ms" => {
                crate::security::check_key(k)
                    .map_err(|reason| invalid(key, if crate::security::is_sensitive(k) { "(hidden)" } else { v }, &reason))?;
                if v.is_empty() {
                    self.security.remove(k);
                } else {
                    self.security.insert(k.to_string(), v.to_string());
                }
            }
            _ => return Err(ConfigError::UnknownKey(key.to_string())),
        }
        Ok(())
    }

    /// Applies a TOML file; nested tables flatten to dotted keys, so both
    /// `log.segment.bytes = 1048576` and `"log.segment.bytes" = 1048576` work.
    pub fn apply_toml(&mut self, text: &str, path: &str) -> Result<(), ConfigError> {
        let table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| ConfigError::File { path: path.to_string(), reason: e.to_string() })?;
        let mut flat = BTreeMap::new();
        flatten("", &table, &mut flat);
        for (k, v) in flat {
            self.set(&k, &v)?;
        }
        Ok(())
    }

    /// Applies `KARST_*` variables: `KARST_LOG_SEGMENT_BYTES` sets `log.segment.bytes`.
    pub fn apply_env<I: IntoIterator<Item = (String, String)>>(&mut self, vars: I) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("KARST_") else {
                continue;
            };
            if matches!(rest, "BIN" | "LOG" | "BOOTSTRAP_SERVER") {
                // Reserved for tooling, log filters and the admin CLI's
                // `--bootstrap-server`, not broker settings.
                continue;
            }
            if value.trim().is_empty() {
                // `KARST_X=` (e.g. compose's `${X:-}`) counts as unset.
                continue;
            }
            let key = rest.to_ascii_lowercase().replace('_', ".");
            self.set(&key, &value)?;
        }
        Ok(())
    }

    /// The effective configuration as `key = value` lines, printed at start-up.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let opt = |o: Option<i64>| o.map_or("-1".to_string(), |v| v.to_string());
        vec![
            ("node.id", self.node_id.to_string()),
            ("listeners", self.listen.clone()),
            ("advertised.listeners", self.advertised_listener.clone().unwrap_or_else(|| "(bound address)".into())),
            (
                "listener.security.protocol.map",
                self.listener_security_protocol_map.clone().unwrap_or_else(|| "(PLAINTEXT:PLAINTEXT)".into()),
            ),
            (
                "inter.broker.listener.name",
                self.inter_broker_listener_name.clone().unwrap_or_else(|| "(replica.listener or the first)".into()),
            ),
            ("node.id.from.hostname", self.node_id_from_hostname.to_string()),
            ("log.dirs", self.data_dir.display().to_string()),
            ("socket.request.max.bytes", self.socket_request_max_bytes.to_string()),
            ("auto.create.topics.enable", self.auto_create_topics_enable.to_string()),
            ("num.partitions", self.num_partitions.to_string()),
            ("default.replication.factor", self.default_replication_factor.to_string()),
            ("message.max.bytes", self.message_max_bytes.to_string()),
            ("log.message.timestamp.before.max.ms", self.log_message_timestamp_before_max_ms.to_string()),
            ("log.message.timestamp.after.max.ms", self.log_message_timestamp_after_max_ms.to_string()),
            ("log.message.downconversion.enable", self.log_message_downconversion_enable.to_string()),
            ("log.message.timestamp.type", self.log_message_timestamp_type.as_str().to_string()),
            ("compression.type", self.compression_type.as_str().to_string()),
            ("compression.gzip.level", self.compression_levels.gzip.to_string()),
            ("compression.lz4.level", self.compression_levels.lz4.to_string()),
            ("compression.zstd.level", self.compression_levels.zstd.to_string()),
            ("fetch.max.bytes", self.fetch_max_bytes.to_string()),
            ("log.segment.bytes", self.log_segment_bytes.to_string()),
            ("log.roll.ms", opt(self.log_roll_ms.map(|v| v as i64))),
            ("log.retention.ms", opt(self.log_retention_ms)),
            ("log.retention.bytes", opt(self.log_retention_bytes.map(|v| v as i64))),
            ("log.index.interval.bytes", self.log_index_interval_bytes.to_string()),
            ("log.index.size.max.bytes", self.log_index_size_max_bytes.to_string()),
            ("log.flush.interval.messages", self.log_flush_interval_messages.to_string()),
            ("log.flush.interval.ms", self.log_flush_interval_ms.to_string()),
            ("log.retention.check.interval.ms", self.log_retention_check_interval_ms.to_string()),
            ("log.cleanup.policy", self.log_cleanup_policy.as_str().to_string()),
            ("log.cleaner.enable", self.log_cleaner_enable.to_string()),
            ("log.cleaner.threads", self.log_cleaner_threads.to_string()),
            ("log.cleaner.backoff.ms", self.log_cleaner_backoff_ms.to_string()),
            ("log.cleaner.io.max.bytes.per.second", java_double(self.log_cleaner_io_max_bytes_per_second)),
            ("log.cleaner.dedupe.buffer.size", self.log_cleaner_dedupe_buffer_size.to_string()),
            ("log.cleaner.io.buffer.size", self.log_cleaner_io_buffer_size.to_string()),
            ("log.cleaner.io.buffer.load.factor", java_double(self.log_cleaner_io_buffer_load_factor)),
            ("log.cleaner.delete.retention.ms", self.log_cleaner_delete_retention_ms.to_string()),
            ("log.cleaner.min.compaction.lag.ms", self.log_cleaner_min_compaction_lag_ms.to_string()),
            ("log.cleaner.max.compaction.lag.ms", self.log_cleaner_max_compaction_lag_ms.to_string()),
            ("log.cleaner.min.cleanable.ratio", java_double(self.log_cleaner_min_cleanable_ratio.get())),
            ("controller.listener", self.controller_listener.clone().unwrap_or_else(|| "(own voter address or ephemeral)".into())),
            ("controller.quorum.voters", self.controller_quorum_voters.clone().unwrap_or_else(|| "(this node alone)".into())),
            ("process.roles", self.roles.to_string()),
            ("broker.session.timeout.ms", self.broker_session_timeout_ms.to_string()),
            ("replica.lag.time.max.ms", self.replica_lag_time_max_ms.to_string()),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
            ("broker.rack", self.broker_rack.clone().unwrap_or_else(|| "(none)".into())),
            ("replica.listener", self.replica_listener.clone().unwrap_or_else(|| "(the client listener)".into())),
            ("admin.listener", self.admin_listener.clone().unwrap_or_else(|| "(disabled)".into())),
            ("max.broker.partitions", self.max_broker_partitions.to_string()),
            ("group.max.size", self.group_max_size.to_string()),
            ("group.consumer.session.timeout.ms", self.group_consumer_session_timeout_ms.to_string()),
            ("group.consumer.heartbeat.interval.ms", self.group_consumer_heartbeat_interval_ms.to_string()),
            ("group.consumer.max.size", self.group_consumer_max_size.to_string()),
            ("group.consumer.assignors", self.group_consumer_default_assignor.name().to_string()),
            ("group.share.heartbeat.interval.ms", self.share.heartbeat_interval_ms.to_string()),
            ("group.share.session.timeout.ms", self.share.session_timeout_ms.to_string()),
            ("group.share.record.lock.duration.ms", self.share.record_lock_duration_ms.to_string()),
            ("group.share.delivery.count.limit", self.share.delivery_count_limit.to_string()),
            ("group.share.partition.max.record.locks", self.share.partition_max_record_locks.to_string()),
            ("group.share.max.size", self.share.max_size.to_string()),
            ("group.share.max.share.sessions", self.share.max_share_sessions.to_string()),
            ("max.connections", self.max_connections.to_string()),
            ("max.connections.per.ip", self.max_connections_per_ip.to_string()),
            ("connections.max.idle.ms", self.connections_max_idle_ms.to_string()),
            ("max.incremental.fetch.session.cache.slots", self.max_incremental_fetch_session_cache_slots.to_string()),
            ("min.incremental.fetch.session.eviction.ms", self.min_incremental_fetch_session_eviction_ms.to_string()),
        ]
    }

    /// The security protocol `listener.security.protocol.map` gives the controller
    /// quorum's transport (its `CONTROLLER` entry), if any.
    pub fn controller_protocol(&self) -> Result<Option<crate::security::Protocol>, ConfigError> {
        let Some(text) = &self.listener_security_protocol_map else { return Ok(None) };
        let map = parse_protocol_map("listener.security.protocol.map", text)?;
        match map.get("CONTROLLER") {
            None => Ok(None),
            Some(p) => crate::security::Protocol::parse(p)
                .map(Some)
                .ok_or_else(|| invalid("listener.security.protocol.map", text, &format!("`{p}` is not a security protocol"))),
        }
    }

    /// The name and protocol of the listener other brokers reach this one on.
    pub fn inter_broker_listener(&self) -> Result<Option<(String, crate::security::Protocol)>, ConfigError> {
        let l = self.listeners()?;
        let name = match (&self.inter_broker_listener_name, &self.replica_listener) {
            (_, Some(_)) => return Ok(None),
            (Some(name), None) => name.clone(),
            (None, None) => match l.bind.first() {
                Some(first) => first.name.clone(),
                None => return Ok(None),
            },
        };
        Ok(l.protocols.get(&name).map(|p| (name, *p)))
    }

    /// The listeners, checked against each other: unique names, a PLAINTEXT
    /// protocol mapping for each, advertised names that are listeners, an
    /// inter-broker listener that exists. Every error names its key.
    pub fn listeners(&self) -> Result<Listeners, ConfigError> {
        let bind = parse_named_addresses("listeners", &self.listen)?;
        let map = match &self.listener_security_protocol_map {
            Some(text) => Some(parse_protocol_map("listener.security.protocol.map", text)?),
            None => None,
        };
        let mut protocols = BTreeMap::new();
        for l in &bind {
            let protocol = match &map {
                Some(m) => m.get(&l.name).cloned(),
                // Kafka's default map names each protocol after itself.
                None => PROTOCOLS.contains(&l.name.as_str()).then(|| l.name.clone()),
            };
            let Some(protocol) = protocol.as_deref().and_then(crate::security::Protocol::parse) else {
                return Err(invalid(
                    "listener.security.protocol.map",
                    self.listener_security_protocol_map.as_deref().unwrap_or(""),
                    &format!("listener `{}` has no security protocol mapping (add `{}:PLAINTEXT`)", l.name, l.name),
                ));
            };
            protocols.insert(l.name.clone(), protocol);
        }
        let mut advertised = BTreeMap::new();
        if let Some(text) = &self.advertised_listener {
            let list = parse_named_addresses("advertised.listeners", text)?;
            let lone_bare = list.len() == 1 && list[0].name == DEFAULT_LISTENER && !text.contains("://");
            for mut a in list {
                if lone_bare && bind.len() == 1 {
                    // A bare host:port advertises the one listener, whatever its name.
                    a.name = bind[0].name.clone();
                }
                if !bind.iter().any(|l| l.name == a.name) {
                    return Err(invalid("advertised.listeners", text, &format!("`{}` is not one of the listeners", a.name)));
                }
                if a.host.is_empty() {
                    return Err(invalid("advertised.listeners", text, &format!("listener `{}` advertises no host", a.name)));
                }
                advertised.insert(a.name.clone(), a);
            }
        }
        if let Some(name) = &self.inter_broker_listener_name {
            if !bind.iter().any(|l| &l.name == name) {
                return Err(invalid("inter.broker.listener.name", name, "not one of the listeners"));
            }
            if self.replica_listener.is_some() {
                return Err(invalid(
                    "inter.broker.listener.name",
                    name,
                    "set either inter.broker.listener.name or replica.listener, not both",
                ));
            }
        }
        Ok(Listeners { bind, advertised, inter_broker: self.inter_broker_listener_name.clone(), protocols })
    }

    /// Cross-key checks and derived settings before start-up: the listeners, and
    /// `node.id` from `hostname` when `node.id.from.hostname` is set.
    pub fn finish(&mut self, hostname: impl FnOnce() -> Option<String>) -> Result<(), ConfigError> {
        if self.node_id_from_hostname {
            let host = hostname().unwrap_or_default();
            self.node_id = node_id_from_hostname(&host)
                .ok_or_else(|| invalid("node.id.from.hostname", "true", &format!("host name `{host}` does not end with a number")))?;
        }
        self.listeners()?;
        Ok(())
    }

    /// True when a produce is acknowledged only after its data is fsynced.
    pub fn fsync_before_ack(&self) -> bool {
        self.log_flush_interval_messages <= 1
    }
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            other => {
                out.insert(key, other.to_string());
            }
        }
    }
}

/// What a node runs (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Serves Kafka clients and hosts partitions.
    pub broker: bool,
    /// Votes in the controller quorum (a node without it follows the metadata log as a learner).
    pub controller: bool,
}

impl Roles {
    fn parse(text: &str) -> Option<Roles> {
        let mut roles = Roles { broker: false, controller: false };
        for part in text.split(',').map(str::trim) {
            match part {
                "broker" => roles.broker = true,
                "controller" => roles.controller = true,
                _ => return None,
            }
        }
        (roles.broker || roles.controller).then_some(roles)
    }
}

impl std::fmt::Display for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.broker, self.controller) {
            (true, true) => f.write_str("broker,controller"),
            (true, false) => f.write_str("broker"),
            (false, _) => f.write_str("controller"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let mut c = BrokerConfig::default();
        c.apply_toml("num.partitions = 3\n\"log.segment.bytes\" = 1048576\nlisteners = \"PLAINTEXT://127.0.0.1:19092\"\n", "x")
            .expect("valid toml");
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.log_segment_bytes, 1_048_576);
        assert_eq!(c.listen, "127.0.0.1:19092");
        c.apply_env(vec![("KARST_NUM_PARTITIONS".to_string(), "6".to_string()), ("PATH".to_string(), "/bin".to_string())])
            .expect("valid env");
        assert_eq!(c.num_partitions, 6);
    }

    #[test]
    fn env_ignores_the_admin_cli_bootstrap_server() {
        let mut c = BrokerConfig::default();
        let before = c.describe();
        c.apply_env(vec![("KARST_BOOTSTRAP_SERVER".to_string(), "10.0.0.1:9092".to_string())])
            .expect("KARST_BOOTSTRAP_SERVER is the admin CLI's, not a broker setting");
        assert_eq!(c.describe(), before);
        assert!(c.apply_env(vec![("KARST_NO_SUCH_KEY".to_string(), "1".to_string())]).is_err(), "other unknown keys still refused");
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = BrokerConfig::default();
        let e = c.set("num.partitions", "zero").expect_err("not a number");
        assert!(e.to_string().contains("num.partitions"));
        assert!(c.set("num.partitions", "0").is_err());
        assert!(matches!(c.set("no.such.key", "1"), Err(ConfigError::UnknownKey(_))));
        assert!(c.set("log.retention.ms", "-5").is_err());
        c.set("log.retention.ms", "-1").expect("-1 is forever");
        assert_eq!(c.log_retention_ms, None);
        assert!(c.set("log.message.timestamp.after.max.ms", "-1").is_err());
        c.set("log.message.timestamp.before.max.ms", "60000").expect("valid");
        assert_eq!(c.log_message_timestamp_before_max_ms, 60_000);
    }

    #[test]
    fn timestamp_type_and_compression_defaults_take_kafkas_values_only() {
        let mut c = BrokerConfig::default();
        c.set("log.message.timestamp.type", "LogAppendTime").expect("valid");
        assert_eq!(c.log_message_timestamp_type, TimestampType::LogAppendTime);
        assert!(c.set("log.message.timestamp.type", "AppendTime").is_err());
        c.set("compression.type", "zstd").expect("valid");
        assert_eq!(c.compression_type, TopicCompression::Zstd);
        assert!(c.set("compression.type", "none").is_err(), "the topic-side name is uncompressed");
        c.set("compression.zstd.level", "-5").expect("negative zstd levels are fast ones");
        c.set("compression.gzip.level", "-1").expect("zlib's default");
        for (k, v) in [("compression.gzip.level", "0"), ("compression.lz4.level", "18"), ("compression.zstd.level", "23")] {
            assert!(c.set(k, v).is_err(), "{k}={v}");
        }
        assert_eq!(c.compression_levels, CompressionLevels { gzip: -1, lz4: 9, zstd: -5 });
        let printed = c.describe();
        assert!(printed.contains(&("compression.type", "zstd".to_string())));
        assert!(printed.contains(&("log.message.timestamp.type", "LogAppendTime".to_string())));
    }

    #[test]
    fn fetch_session_slots_may_be_zero() {
        let mut c = BrokerConfig::default();
        assert_eq!((c.max_incremental_fetch_session_cache_slots, c.min_incremental_fetch_session_eviction_ms), (1000, 120_000));
        c.set("max.incremental.fetch.session.cache.slots", "0").expect("0 disables sessions");
        assert_eq!(c.max_incremental_fetch_session_cache_slots, 0);
        assert!(c.set("max.incremental.fetch.session.cache.slots", "-1").is_err());
        c.apply_env(vec![("KARST_MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS".to_string(), "5000".to_string())]).expect("env");
        assert_eq!(c.min_incremental_fetch_session_eviction_ms, 5000);
        assert!(c.describe().iter().any(|(k, v)| *k == "max.incremental.fetch.session.cache.slots" && v == "0"));
    }

    #[test]
    fn admin_listener_defaults_and_disables() {
        let mut c = BrokerConfig::default();
        assert_eq!(c.admin_listener.as_deref(), Some("127.0.0.1:9644"));
        c.apply_env(vec![("KARST_ADMIN_LISTENER".to_string(), "127.0.0.1:0".to_string())]).expect("env");
        assert_eq!(c.admin_listener.as_deref(), Some("127.0.0.1:0"));
        c.apply_env(vec![("KARST_ADMIN_LISTENER".to_string(), String::new())]).expect("empty is unset");
        assert_eq!(c.admin_listener.as_deref(), Some("127.0.0.1:0"));
        c.apply_env(vec![("KARST_ADMIN_LISTENER".to_string(), "off".to_string())]).expect("off disables");
        assert_eq!(c.admin_listener, None);
        c.set("admin.listener", "127.0.0.1:0").expect("set");
        c.set("admin.listener", "").expect("an empty flag disables");
        assert_eq!(c.admin_listener, None);
        c.apply_toml("[admin]\nlistener = \"0.0.0.0:9700\"\n", "x").expect("toml");
        assert_eq!(c.admin_listener.as_deref(), Some("0.0.0.0:9700"));
    }

    #[test]
    fn process_roles() {
        let mut c = BrokerConfig::default();
        assert_eq!(c.roles.to_string(), "broker,controller");
        c.set("process.roles", "broker").expect("broker");
        assert_eq!((c.roles.broker, c.roles.controller), (true, false));
        c.set("process.roles", "controller").expect("controller");
        assert_eq!((c.roles.broker, c.roles.controller), (false, true));
        c.set("process.roles", " controller , broker").expect("both");
        assert_eq!(c.roles.to_string(), "broker,controller");
        assert!(c.set("process.roles", "zookeeper").is_err());
        assert!(c.set("process.roles", "").is_err());
    }

    fn listeners_of(pairs: &[(&str, &str)]) -> Result<Listeners, ConfigError> {
        let mut c = BrokerConfig::default();
        for (k, v) in pairs {
            c.set(k, v)?;
        }
        c.listeners()
    }

    fn refused_naming(pairs: &[(&str, &str)], key: &str) {
        let e = listeners_of(pairs).expect_err("refused");
        assert!(e.to_string().contains(&format!("`{key}`")), "{pairs:?}: `{e}` does not name {key}");
    }

    #[test]
    fn a_bare_listener_is_plaintext_and_keeps_its_old_form() {
        let l = listeners_of(&[("listeners", "127.0.0.1:0"), ("advertised.listeners", "localhost:9092")]).expect("valid");
        assert_eq!(l.bind, vec![NamedAddress { name: "PLAINTEXT".into(), host: "127.0.0.1".into(), port: 0 }]);
        assert_eq!(l.advertised["PLAINTEXT"].address(), "localhost:9092");
        let mut c = BrokerConfig::default();
        c.set("listeners", "PLAINTEXT://0.0.0.0:9092").expect("valid");
        assert_eq!(c.listen, "0.0.0.0:9092");
        // A bare advertised address goes with the one listener, whatever its name.
        let l = listeners_of(&[
            ("listeners", "CLIENT://0.0.0.0:9092"),
            ("listener.security.protocol.map", "CLIENT:PLAINTEXT"),
            ("advertised.listeners", "localhost:9092"),
        ])
        .expect("valid");
        assert_eq!(l.advertised["CLIENT"].port, 9092);
    }

    #[test]
    fn named_listeners_parse() {
        let l = listeners_of(&[
            ("listeners", "CLIENT://0.0.0.0:9092, internal://:19092,IPV6://[::1]:29092"),
            ("advertised.listeners", "CLIENT://localhost:9092,INTERNAL://karst-1:19092"),
            ("listener.security.protocol.map", "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,ipv6:plaintext"),
            ("inter.broker.listener.name", "INTERNAL"),
        ])
        .expect("valid");
        let names: Vec<&str> = l.bind.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["CLIENT", "INTERNAL", "IPV6"]);
        assert_eq!(l.bind[1].address(), "0.0.0.0:19092", "an empty host binds every interface");
        assert_eq!(l.bind[2].address(), "[::1]:29092");
        assert_eq!(l.bind[2].bare_host(), "::1");
        assert_eq!(l.advertised["INTERNAL"].address(), "karst-1:19092");
        assert!(!l.advertised.contains_key("IPV6"), "not advertised: its bound address is");
        assert_eq!(l.inter_broker.as_deref(), Some("INTERNAL"));
    }

    #[test]
    fn bad_listener_configs_name_their_key() {
        refused_naming(&[("listeners", "A://127.0.0.1:1,A://127.0.0.1:2")], "listeners");
        refused_naming(&[("listeners", "CLIENT://127.0.0.1:1")], "listener.security.protocol.map");
        refused_naming(
            &[("listeners", "CLIENT://127.0.0.1:1,INTERNAL://127.0.0.1:2"), ("listener.security.protocol.map", "CLIENT:PLAINTEXT")],
            "listener.security.protocol.map",
        );
        refused_naming(&[("listener.security.protocol.map", "CLIENT:SSL")], "listener.security.protocol.map");
        refused_naming(&[("listener.security.protocol.map", "CLIENT:SASL_SSL")], "listener.security.protocol.map");
        refused_naming(&[("listener.security.protocol.map", "CLIENT:GOPHER")], "listener.security.protocol.map");
        refused_naming(&[("listener.security.protocol.map", "CLIENT")], "listener.security.protocol.map");
        // An SSL inter-broker listener is taken (its TLS settings are checked when the
        // broker builds its peer connections).
        assert_eq!(
            listeners_of(&[("listeners", "SSL://127.0.0.1:1")]).expect("an SSL listener").protocols["SSL"],
            crate::security::Protocol::Ssl
        );
        let l = listeners_of(&[
            ("listeners", "INTERNAL://127.0.0.1:1,SSL://127.0.0.1:2,SASL_SSL://127.0.0.1:3"),
            ("listener.security.protocol.map", "INTERNAL:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL"),
        ])
        .expect("secured listeners beside a PLAINTEXT inter-broker one");
        assert_eq!(l.protocols["SASL_SSL"], crate::security::Protocol::SaslSsl);
        let mut c = BrokerConfig::default();
        assert!(c.set("listener.name.ssl.ssl.keystore.location", "/k.pem").is_ok());
        assert!(c.set("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config", "M required;").is_ok());
        assert!(c.set("ssl.keystore.lokation", "/k.pem").is_err(), "a misspelt security setting stops start-up");
        assert!(c.set("listener.name..ssl.client.auth", "required").is_err());
        refused_naming(
            &[
                ("listeners", "CLIENT://127.0.0.1:1"),
                ("listener.security.protocol.map", "CLIENT:PLAINTEXT"),
                ("advertised.listeners", "CLIENT://localhost:1,OTHER://localhost:2"),
            ],
            "advertised.listeners",
        );
        refused_naming(&[("advertised.listeners", "A://h:1,A://h:2")], "advertised.listeners");
        refused_naming(&[("advertised.listeners", ":9092")], "advertised.listeners");
        refused_naming(&[("inter.broker.listener.name", "INTERNAL")], "inter.broker.listener.name");
        refused_naming(&[("inter.broker.listener.name", "PLAINTEXT"), ("replica.listener", "127.0.0.1:1")], "inter.broker.listener.name");
        refused_naming(&[("listeners", "127.0.0.1")], "listeners");
        refused_naming(&[("listeners", "127.0.0.1:99999")], "listeners");
        refused_naming(&[("listeners", "::1:9092")], "listeners");
        refused_naming(&[("listeners", "A B://127.0.0.1:1")], "listeners");
        refused_naming(&[("listeners", "127.0.0.1:1,,127.0.0.1:2")], "listeners");
        refused_naming(&[("listeners", "")], "listeners");
    }

    #[test]
    fn node_id_from_the_host_name() {
        assert_eq!(node_id_from_hostname("karst-2"), Some(2));
        assert_eq!(node_id_from_hostname("karst-0.karst-headless.default.svc.cluster.local"), Some(0));
        assert_eq!(node_id_from_hostname("broker17"), Some(17));
        assert_eq!(node_id_from_hostname("karst"), None);
        assert_eq!(node_id_from_hostname(""), None);
        assert_eq!(node_id_from_hostname("n-99999999999999"), None, "too large for an i32");
        let mut c = BrokerConfig::default();
        c.set("node.id.from.hostname", "true").expect("bool");
        c.finish(|| Some("karst-3".into())).expect("numbered");
        assert_eq!(c.node_id, 3);
        let e = c.finish(|| Some("karst".into())).expect_err("no number");
        assert!(e.to_string().contains("node.id.from.hostname"), "{e}");
        let mut plain = BrokerConfig::default();
        plain.finish(|| panic!("not asked")).expect("no hostname needed");
    }

    #[test]
    fn empty_environment_variables_count_as_unset() {
        let mut c = BrokerConfig::default();
        c.apply_env(vec![
            ("KARST_NUM_PARTITIONS".to_string(), String::new()),
            ("KARST_ADVERTISED_LISTENERS".to_string(), "  ".to_string()),
            ("KARST_NODE_ID".to_string(), "4".to_string()),
        ])
        .expect("empty values are skipped");
        assert_eq!((c.num_partitions, c.advertised_listener.clone(), c.node_id), (1, None, 4));
    }
}
