//! The registry and the metric families updated on the hot path. Counters are
//! registered without `_total`: prometheus-client adds it in both formats.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, OnceLock};

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::histogram::{AtomicHistogram, FLUSH_BUCKETS, LATENCY_BUCKETS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TopicLabel {
    pub(crate) topic: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ApiLabel {
    pub(crate) api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResourceLabel {
    pub(crate) resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QuotaLabel {
    pub(crate) quota: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MechanismLabel {
    pub(crate) mechanism: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ApiVersionLabels {
    pub(crate) api: &'static str,
    pub(crate) version: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ApiErrorLabels {
    pub(crate) api: &'static str,
    pub(crate) error: &'static str,
}

type HistogramFamily<L> = Family<L, AtomicHistogram, fn() -> AtomicHistogram>;

/// One API's request count and latency, cloned out of the families once so a
/// request touches only atomics.
#[derive(Debug)]
pub(crate) struct ApiHandles {
    pub(crate) requests: Counter,
    pub(crate) latency: AtomicHistogram,
}

/// Every metric updated as requests flow; the state gauges are read at scrape time
/// (see `collect`).
#[derive(Debug)]
pub(crate) struct Families {
    pub(crate) registry: Registry,
    pub(crate) messages_in: Family<TopicLabel, Counter>,
    pub(crate) bytes_in: Family<TopicLabel, Counter>,
    pub(crate) messages_out: Family<TopicLabel, Counter>,
    pub(crate) bytes_out: Family<TopicLabel, Counter>,
    pub(crate) up_converted: Family<TopicLabel, Counter>,
    pub(crate) down_converted: Family<TopicLabel, Counter>,
    requests: Family<ApiLabel, Counter>,
    /// Requests in the pre-0.11 versions only Karst's legacy codecs serve.
    pub(crate) legacy_requests: Family<ApiVersionLabels, Counter>,
    /// Refused TLS handshakes and SASL authentications.
    pub(crate) authentication_failures: Family<MechanismLabel, Counter>,
    /// Requests (or parts of them) refused by the ACL authorizer.
    pub(crate) authorization_denied: Family<ResourceLabel, Counter>,
    /// Requests answered with a quota's throttle time, and that time.
    pub(crate) throttled: Family<QuotaLabel, Counter>,
    pub(crate) throttle_ms: Family<QuotaLabel, Counter>,
    latency: HistogramFamily<ApiLabel>,
    pub(crate) errors: Family<ApiErrorLabels, Counter>,
    pub(crate) isr_shrinks: Counter,
    pub(crate) isr_expands: Counter,
    pub(crate) flush_latency: AtomicHistogram,
    pub(crate) produce_purgatory: Gauge<i64, AtomicI64>,
    pub(crate) fetch_purgatory: Gauge<i64, AtomicI64>,
    pub(crate) connections: Gauge<i64, AtomicI64>,
    pub(crate) fetch_sessions_created: Counter,
    pub(crate) fetch_session_evictions: Counter,
    pub(crate) incremental_fetches: Counter,
    pub(crate) fetch_session_partitions_sent: Counter,
    pub(crate) fetch_session_partitions_omitted: Counter,
    pub(crate) txns_committed: Counter,
    pub(crate) txns_aborted: Counter,
    pub(crate) txns_timed_out: Counter,
    pub(crate) txn_markers: Counter,
    pub(crate) cleaner_cleans: Counter,
    pub(crate) cleaner_aborted: Counter,
    pub(crate) cleaner_failures: Counter,
    pub(crate) cleaner_bytes_read: Counter,
    pub(crate) cleaner_bytes_written: Counter,
    pub(crate) cleaner_records_removed: Counter,
    pub(crate) cleaner_last_duration: Gauge<f64, AtomicU64>,
    /// Indexed by API key number.
    apis: Box<[OnceLock<ApiHandles>]>,
}

fn latency_histogram() -> AtomicHistogram {
    AtomicHistogram::new(LATENCY_BUCKETS)
}

/// Highest API key number with its own slot; later ones share the last slot's
/// lookup through the family (never on any current client's hot path).
const API_SLOTS: usize = 128;

impl Families {
    pub(crate) fn new() -> Families {
        let mut registry = Registry::default();
        let f = Families {
            registry: Registry::default(),
            messages_in: Family::default(),
            bytes_in: Family::default(),
            messages_out: Family::default(),
            bytes_out: Family::default(),
            up_converted: Family::default(),
            down_converted: Family::default(),
            requests: Family::default(),
            legacy_requests: Family::default(),
            authentication_failures: Family::default(),
            authorization_denied: Family::default(),
            throttled: Family::default(),
            throttle_ms: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> AtomicHistogram),
            errors: Family::default(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            flush_latency: AtomicHistogram::new(FLUSH_BUCKETS),
            produce_purgatory: Gauge::default(),
            fetch_purgatory: Gauge::default(),
            connections: Gauge::default(),
            fetch_sessions_created: Counter::default(),
            fetch_session_evictions: Counter::default(),
            incremental_fetches: Counter::default(),
            fetch_session_partitions_sent: Counter::default(),
            fetch_session_partitions_omitted: Counter::default(),
            txns_committed: Counter::default(),
            txns_aborted: Counter::default(),
            txns_timed_out: Counter::default(),
            txn_markers: Counter::default(),
            cleaner_cleans: Counter::default(),
            cleaner_aborted: Counter::default(),
            cleaner_failures: Counter::default(),
            cleaner_bytes_read: Counter::default(),
            cleaner_bytes_written: Counter::default(),
            cleaner_records_removed: Counter::default(),
            cleaner_last_duration: Gauge::default(),
            apis: (0..API_SLOTS).map(|_| OnceLock::new()).collect(),
        };
        registry.register("karst_topic_messages_in", "Records appended by Produce", f.messages_in.clone());
        registry.register("karst_topic_bytes_in", "Record-batch bytes appended by Produce", f.bytes_in.clone());
        registry.register("karst_topic_messages_out", "Records returned by consumer Fetch", f.messages_out.clone());
        registry.register("karst_topic_bytes_out", "Record-batch bytes returned by consumer Fetch", f.bytes_out.clone());
        registry.register(
            "karst_up_converted_records",
            "Records produced in message format v0/v1 (Produce v0-v2 clients) and converted to v2 batches",
            f.up_converted.clone(),
        );
        registry.register(
            "karst_down_converted_records",
            "Records converted to message format v0/v1 for Fetch v0-v3 consumers",
            f.down_converted.clone(),
        );
        registry.register("karst_requests", "Requests handled, by Kafka API", f.requests.clone());
        registry.register(
            "karst_legacy_requests",
            "Requests in pre-0.11 versions (Kafka 4 refuses them; Karst serves them), by Kafka API and version",
            f.legacy_requests.clone(),
        );
        registry.register(
            "karst_authorization_denied",
            "Operations the ACL authorizer refused, by resource type (topic, group, cluster, transactional_id)",
            f.authorization_denied.clone(),
        );
        registry.register(
            "karst_throttled_requests",
            "Requests that took a client over its quota (produce: producer_byte_rate, fetch: consumer_byte_rate)",
            f.throttled.clone(),
        );
        registry.register(
            "karst_throttle_time_ms",
            "Throttle time given to clients over their quota, in milliseconds, by quota",
            f.throttle_ms.clone(),
        );
        registry.register(
            "karst_authentication_failures",
            "Connections refused in a TLS handshake (SSL) or a SASL authentication (by mechanism)",
            f.authentication_failures.clone(),
        );
        registry.register("karst_request_errors", "Request and partition level errors, by Kafka API and error name", f.errors.clone());
        registry.register("karst_isr_shrinks", "ISR shrinks proposed by this broker as leader and accepted", f.isr_shrinks.clone());
        registry.register("karst_isr_expands", "ISR expansions proposed by this broker as leader and accepted", f.isr_expands.clone());
        registry.register("karst_request_latency_seconds", "Time from a request's dispatch to its response", f.latency.clone());
        registry.register("karst_log_flush_latency_seconds", "Duration of one fdatasync or syncfs of the logs", f.flush_latency.clone());
        registry.register(
            "karst_produce_purgatory_size",
            "acks=all Produce requests waiting for replication or fsync",
            f.produce_purgatory.clone(),
        );
        registry.register("karst_fetch_purgatory_size", "Long-poll Fetch requests waiting for data", f.fetch_purgatory.clone());
        registry.register("karst_connections", "Open Kafka client connections", f.connections.clone());
        registry.register(
            "karst_fetch_session_created",
            "KIP-227 fetch sessions created by full fetches (epoch 0)",
            f.fetch_sessions_created.clone(),
        );
        registry.register(
            "karst_transactions_committed",
            "Transactions this broker coordinated that completed with a commit",
            f.txns_committed.clone(),
        );
        registry.register(
            "karst_transactions_aborted",
            "Transactions this broker coordinated that completed with an abort (timed-out ones included)",
            f.txns_aborted.clone(),
        );
        registry.register(
            "karst_transactions_timed_out",
            "Open transactions this broker aborted for passing their transaction.timeout.ms",
            f.txns_timed_out.clone(),
        );
        registry.register(
            "karst_transaction_markers_written",
            "COMMIT and ABORT markers appended by this broker as a leader",
            f.txn_markers.clone(),
        );
        registry.register(
            "karst_fetch_session_evictions",
            "Fetch sessions evicted from the cache to make room for a new one",
            f.fetch_session_evictions.clone(),
        );
        registry.register(
            "karst_fetch_session_incremental_fetches",
            "Incremental Fetch requests served from a fetch session",
            f.incremental_fetches.clone(),
        );
        registry.register(
            "karst_fetch_session_partitions_sent",
            "Partitions carried by incremental Fetch responses (records, a moved watermark or log start, an error)",
            f.fetch_session_partitions_sent.clone(),
        );
        registry.register(
            "karst_fetch_session_partitions_omitted",
            "Session partitions left out of incremental Fetch responses as unchanged",
            f.fetch_session_partitions_omitted.clone(),
        );
        registry.register("karst_log_cleaner_cleans", "Cleans of compacted logs completed", f.cleaner_cleans.clone());
        registry.register(
            "karst_log_cleaner_aborted",
            "Cleans abandoned because their log was truncated, closed or deleted, or the broker stopped",
            f.cleaner_aborted.clone(),
        );
        registry.register("karst_log_cleaner_failures", "Cleans that failed with an error", f.cleaner_failures.clone());
        registry.register(
            "karst_log_cleaner_bytes_read",
            "Log bytes the cleaner read (building key maps and copying)",
            f.cleaner_bytes_read.clone(),
        );
        registry.register("karst_log_cleaner_bytes_written", "Bytes of cleaned segments written", f.cleaner_bytes_written.clone());
        registry.register(
            "karst_log_cleaner_records_removed",
            "Records the cleaner removed (superseded, expired tombstones, keyless)",
            f.cleaner_records_removed.clone(),
        );
        registry.register(
            "karst_log_cleaner_last_clean_duration_seconds",
            "Duration of the last completed clean",
            f.cleaner_last_duration.clone(),
        );
        Families { registry, ..f }
    }

    /// The request counter and latency histogram of `api`.
    pub(crate) fn api(&self, api: ApiKey) -> ApiHandles {
        let make = || {
            let label = ApiLabel { api: api_name(api) };
            ApiHandles { requests: self.requests.get_or_create_owned(&label), latency: self.latency.get_or_create_owned(&label) }
        };
        match self.apis.get(api as i16 as usize) {
            Some(slot) => {
                let h = slot.get_or_init(make);
                ApiHandles { requests: h.requests.clone(), latency: h.latency.clone() }
            }
            None => make(),
        }
    }
}

/// Kafka's name of an API ("Produce", "Fetch", ...), as in its documentation.
pub(crate) fn api_name(api: ApiKey) -> &'static str {
    // ApiKey's Debug names are Kafka's (`Produce`, `OffsetCommit`); leak-free
    // because the table is built once per key.
    static NAMES: OnceLock<Vec<(ApiKey, &'static str)>> = OnceLock::new();
    let names = NAMES.get_or_init(|| ApiKey::iter().map(|k| (k, &*Box::leak(format!("{k:?}").into_boxed_str()))).collect());
    names.iter().find(|(k, _)| *k == api).map_or("Unknown", |(_, n)| n)
}

pub(crate) use karst_protocol::error_codes::error_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_are_kafkas() {
        assert_eq!(api_name(ApiKey::Produce), "Produce");
        assert_eq!(api_name(ApiKey::Fetch), "Fetch");
        assert_eq!(api_name(ApiKey::OffsetCommit), "OffsetCommit");
    }

    #[test]
    fn api_handles_share_the_registered_series() {
        let f = Families::new();
        f.api(ApiKey::Produce).requests.inc();
        f.api(ApiKey::Produce).latency.observe(0.001);
        assert_eq!(f.api(ApiKey::Produce).requests.get(), 1);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &f.registry).expect("encodes");
        assert!(text.contains("karst_requests_total{api=\"Produce\"} 1\n"), "{text}");
        assert!(text.contains("karst_request_latency_seconds_count{api=\"Produce\"} 1\n"), "{text}");
        assert!(
            text.contains("karst_request_latency_seconds_bucket{le=\"0.001\",api=\"Produce\"} 1\n")
                || text.contains("karst_request_latency_seconds_bucket{api=\"Produce\",le=\"0.001\"} 1\n"),
            "{text}"
        );
    }
}
