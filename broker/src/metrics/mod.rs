//! Prometheus metrics and the admin HTTP endpoint (`/metrics`, `/health/*`).
//!
//! Counters and histograms live in one process-wide set of families updated
//! from one-line hooks on the request path (per batch or per request, atomics
//! only); gauges that describe state (partitions led, ISR, log sizes, lag,
//! controller) are computed when scraped.

mod collect;
mod families;
mod histogram;
mod http;
mod inspect;

use std::future::Future;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use kafka_protocol::messages::{ApiKey, ResponseKind};
use prometheus_client::metrics::gauge::Gauge;

use crate::handlers::Reply;
use families::{ApiErrorLabels, Families, TopicLabel};

pub use collect::readiness;
pub use http::{bind_admin, Admin};

static FAMILIES: LazyLock<Families> = LazyLock::new(Families::new);

fn families() -> &'static Families {
    &FAMILIES
}

/// Produce appended `records` records in `bytes` bytes of batches to `topic`.
pub(crate) fn produced(topic: &Arc<str>, records: i64, bytes: usize) {
    let f = families();
    let label = TopicLabel { topic: topic.clone() };
    f.messages_in.get_or_create(&label).inc_by(u64::try_from(records).unwrap_or(0));
    f.bytes_in.get_or_create(&label).inc_by(bytes as u64);
}

/// A consumer Fetch returned `batches` (whole record batches) of `topic`.
pub(crate) fn consumed(topic: &Arc<str>, batches: &[u8]) {
    if batches.is_empty() {
        return;
    }
    consumed_records(topic, karst_batch::count_records(batches), batches.len());
}

/// A consumer Fetch returned `records` records of `topic` in `bytes` bytes.
pub(crate) fn consumed_records(topic: &Arc<str>, records: u64, bytes: usize) {
    let f = families();
    let label = TopicLabel { topic: topic.clone() };
    f.messages_out.get_or_create(&label).inc_by(records);
    f.bytes_out.get_or_create(&label).inc_by(bytes as u64);
}

/// A Produce v0-v2 client's `records` records of `topic` were converted to a v2 batch.
pub(crate) fn up_converted(topic: &Arc<str>, records: u64) {
    families().up_converted.get_or_create(&TopicLabel { topic: topic.clone() }).inc_by(records);
}

/// `records` records of `topic` were converted for a Fetch v0-v3 consumer.
pub(crate) fn down_converted(topic: &Arc<str>, records: u64) {
    families().down_converted.get_or_create(&TopicLabel { topic: topic.clone() }).inc_by(records);
}

/// A request of `api` in `version`, one of the pre-0.11 versions: operators see which
/// old clients still need them (and the conversion counters, how much data).
pub(crate) fn legacy_request(api: ApiKey, version: i16) {
    let labels = families::ApiVersionLabels { api: families::api_name(api), version: i32::from(version) };
    families().legacy_requests.get_or_create(&labels).inc();
}

/// An operation the ACL authorizer refused, on a resource of `resource_type`.
pub(crate) fn authorization_denied(resource_type: i8) {
    let resource = match resource_type {
        2 => "topic",
        3 => "group",
        4 => "cluster",
        5 => "transactional_id",
        _ => "other",
    };
    families().authorization_denied.get_or_create(&families::ResourceLabel { resource }).inc();
}

/// A refused TLS handshake (`SSL`) or SASL authentication (its mechanism).
pub(crate) fn authentication_failed(mechanism: &str) {
    let mechanism = match mechanism {
        "SSL" => "SSL",
        "PLAIN" => "PLAIN",
        "SCRAM-SHA-256" => "SCRAM-SHA-256",
        "SCRAM-SHA-512" => "SCRAM-SHA-512",
        "OAUTHBEARER" => "OAUTHBEARER",
        _ => "other",
    };
    families().authentication_failures.get_or_create(&families::MechanismLabel { mechanism }).inc();
}

/// A request took its client over a quota: answered with `ms` of throttle time.
pub(crate) fn throttled(kind: crate::quotas::Kind, ms: u64) {
    let quota = match kind {
        crate::quotas::Kind::Produce => "produce",
        crate::quotas::Kind::Fetch => "fetch",
        crate::quotas::Kind::Mutation => "controller_mutation",
        crate::quotas::Kind::Connection => "connection_creation",
    };
    let f = families();
    f.throttled.get_or_create(&families::QuotaLabel { quota }).inc();
    f.throttle_ms.get_or_create(&families::QuotaLabel { quota }).inc_by(ms);
}

/// A deleted topic's series go with it, as Kafka drops its per-topic metrics.
pub(crate) fn topic_deleted(topic: &str) {
    let f = families();
    let label = TopicLabel { topic: Arc::from(topic) };
    for family in [&f.messages_in, &f.bytes_in, &f.messages_out, &f.bytes_out, &f.up_converted, &f.down_converted] {
        family.remove(&label);
    }
}

/// Counts the errors a response carries (request and partition level).
pub(crate) fn count_errors(api: ApiKey, response: &ResponseKind) {
    inspect::for_each_error(response, |code| {
        let labels = ApiErrorLabels { api: families::api_name(api), error: families::error_name(code) };
        families().errors.get_or_create(&labels).inc();
    });
}

/// Counts a request and times it until its response is ready.
pub(crate) fn track_request(api: ApiKey, reply: Result<Reply, String>, started: Instant) -> Result<Reply, String> {
    let handles = families().api(api);
    handles.requests.inc();
    match reply {
        Ok(Reply::Later(fut)) => Ok(Reply::Later(Box::pin(async move {
            let r = fut.await;
            handles.latency.observe(started.elapsed().as_secs_f64());
            r
        }))),
        Ok(Reply::Exclusive(fut)) => Ok(Reply::Exclusive(Box::pin(async move {
            let r = fut.await;
            handles.latency.observe(started.elapsed().as_secs_f64());
            r
        }))),
        other => {
            handles.latency.observe(started.elapsed().as_secs_f64());
            other
        }
    }
}

/// The leader's ISR change for a partition was accepted by the controller.
pub(crate) fn isr_changed(grew: bool) {
    let f = families();
    if grew {
        f.isr_expands.inc();
    } else {
        f.isr_shrinks.inc();
    }
}

/// Runs one fsync (`fdatasync`/`syncfs`) and records its duration.
pub(crate) fn time_flush<T>(sync: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let r = sync();
    families().flush_latency.observe(started.elapsed().as_secs_f64());
    r
}

/// A transaction this broker coordinated completed.
pub(crate) fn txn_completed(commit: bool) {
    let f = families();
    if commit {
        f.txns_committed.inc();
    } else {
        f.txns_aborted.inc();
    }
}

/// An open transaction passed its timeout and is being aborted.
pub(crate) fn txn_timed_out() {
    families().txns_timed_out.inc();
}

/// A transaction marker was appended here.
pub(crate) fn txn_marker(_commit: bool) {
    families().txn_markers.inc();
}

/// A full fetch created a fetch session (`evicted`: another one made room for it).
pub(crate) fn fetch_session_created(evicted: bool) {
    let f = families();
    f.fetch_sessions_created.inc();
    if evicted {
        f.fetch_session_evictions.inc();
    }
}

/// An incremental fetch was answered with `sent` of its session's partitions, `omitted` left out.
pub(crate) fn incremental_fetch(sent: usize, omitted: usize) {
    let f = families();
    f.incremental_fetches.inc();
    f.fetch_session_partitions_sent.inc_by(sent as u64);
    f.fetch_session_partitions_omitted.inc_by(omitted as u64);
}

/// The log cleaner completed a clean.
pub(crate) fn log_cleaned(stats: &karst_storage::CleanStats, took: std::time::Duration) {
    let f = families();
    f.cleaner_cleans.inc();
    f.cleaner_bytes_read.inc_by(stats.map_bytes_read.saturating_add(stats.bytes_read));
    f.cleaner_bytes_written.inc_by(stats.bytes_written);
    f.cleaner_records_removed.inc_by(stats.records_read.saturating_sub(stats.records_retained));
    f.cleaner_last_duration.set(took.as_secs_f64());
}

/// A clean was abandoned (truncation, close, delete, shutdown).
pub(crate) fn log_clean_aborted() {
    families().cleaner_aborted.inc();
}

/// A clean failed with an error.
pub(crate) fn log_clean_failed() {
    families().cleaner_failures.inc();
}

/// Holds a gauge up by one while alive.
#[must_use]
pub(crate) struct GaugeGuard(&'static Gauge<i64, AtomicI64>);

impl GaugeGuard {
    fn enter(g: &'static Gauge<i64, AtomicI64>) -> GaugeGuard {
        g.inc();
        GaugeGuard(g)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An open client connection, counted until dropped.
pub(crate) fn connection() -> GaugeGuard {
    GaugeGuard::enter(&families().connections)
}

/// An acks=all Produce waiting in purgatory, counted until dropped.
pub(crate) fn produce_waiting() -> GaugeGuard {
    GaugeGuard::enter(&families().produce_purgatory)
}

/// A long-poll Fetch waiting for data, counted until dropped.
pub(crate) fn fetch_waiting() -> GaugeGuard {
    GaugeGuard::enter(&families().fetch_purgatory)
}

/// Awaits `fut` while counted as a waiting long-poll Fetch.
pub(crate) async fn fetch_wait<F: Future>(fut: F) -> F::Output {
    let _waiting = fetch_waiting();
    fut.await
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_deleted_topic_loses_its_series() {
        let topic: std::sync::Arc<str> = std::sync::Arc::from("metrics-unit-deleted");
        super::produced(&topic, 3, 300);
        let label = super::TopicLabel { topic: topic.clone() };
        assert_eq!(super::families().messages_in.get_or_create(&label).get(), 3);
        super::topic_deleted(&topic);
        assert!(super::families().messages_in.get(&label).is_none());
        assert!(super::families().bytes_in.get(&label).is_none());
    }
}
