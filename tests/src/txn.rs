//! Transactions with the `rdkafka` crate, for the tests: a transactional producer
//! that counts its deliveries, consumers by isolation level, reads and end offsets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::raw::RawClient;
use crate::wait::wait_until;

/// How long one client step may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Counts the producer's delivery reports.
#[derive(Default)]
pub struct Deliveries {
    pub ok: AtomicUsize,
    pub failed: AtomicUsize,
    /// Printed before librdkafka's log lines (see [`txn_producer`]).
    pub label: String,
}

impl ClientContext for Deliveries {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!("{}.{:03} librdkafka {} {level:?} {fac}: {message}", now.as_secs(), now.subsec_millis(), self.label);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::SeqCst),
            Err(_) => self.failed.fetch_add(1, Ordering::SeqCst),
        };
    }
}

pub type TxnProducer = BaseProducer<Deliveries>;

pub fn txn_producer(bootstrap: &str, transactional_id: Option<&str>) -> Result<TxnProducer> {
    let (config, context) = txn_config(bootstrap, transactional_id);
    Ok(config.create_with_context(context)?)
}

/// [`txn_producer`] polled by its own thread: delivery reports and librdkafka's log
/// lines arrive while a transactional call blocks the caller (a [`TxnProducer`]'s
/// wait until the caller polls again).
///
/// Its idle connections close after 10 s: librdkafka (2.12 to 2.14) re-examines a
/// transactional offset commit that waits for a group coordinator it has cached, but
/// which is down or was dropped from the cluster's metadata, only when some broker
/// connection changes state, and would otherwise wait past its timeout for good
/// (librdkafka issues 5456 and 5511).
pub fn threaded_txn_producer(bootstrap: &str, transactional_id: Option<&str>) -> Result<ThreadedProducer<Deliveries>> {
    let (mut config, context) = txn_config(bootstrap, transactional_id);
    config.set("connections.max.idle.ms", "10000");
    Ok(config.create_with_context(context)?)
}

fn txn_config(bootstrap: &str, transactional_id: Option<&str>) -> (ClientConfig, Deliveries) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("acks", "all").set("linger.ms", "0").set("message.timeout.ms", "60000");
    if let Some(id) = transactional_id {
        config.set("transactional.id", id);
    }
    // KARST_CHECKER_DEBUG=eos,protocol (librdkafka's debug contexts) prints the
    // producer's own account of its transactions to the test's stderr.
    if let Ok(contexts) = std::env::var("KARST_CHECKER_DEBUG") {
        config.set("debug", contexts).set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    (config, Deliveries { label: transactional_id.unwrap_or_default().to_string(), ..Deliveries::default() })
}

/// Sends `values` (keyed `key`) to topic and waits until all are delivered: a
/// transaction's records reach the log before it ends (librdkafka's abort would drop
/// records still queued).
pub fn send_all(p: &TxnProducer, topic: &str, values: &[String], key: Option<&str>) -> Result<()> {
    let before = p.context().ok.load(Ordering::SeqCst);
    for v in values {
        let mut record = BaseRecord::to(topic).payload(v.as_str());
        if let Some(k) = key {
            record = record.key(k);
        }
        p.send(record).map_err(|(e, _)| anyhow!("enqueueing {v}: {e}"))?;
    }
    p.flush(TIMEOUT)?;
    let (ok, failed) = (p.context().ok.load(Ordering::SeqCst) - before, p.context().failed.load(Ordering::SeqCst));
    ensure!(ok == values.len() && failed == 0, "{ok} of {} records delivered, {failed} failed", values.len());
    Ok(())
}

pub fn consumer(bootstrap: &str, isolation: &str, group: &str) -> Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation)
        .create()?)
}

/// The delivery report of message `i`, within a minute.
pub async fn delivered(i: usize, report: rdkafka::producer::DeliveryFuture) -> Result<rdkafka::producer::future_producer::Delivery> {
    tokio::time::timeout(Duration::from_secs(60), report)
        .await
        .with_context(|| format!("no delivery report for {i}"))?
        .context("cancelled")?
        .map_err(|(e, _)| anyhow!("message {i} not delivered: {e}"))
}

/// A consumer assigned partition `partition` of `topic` from its start, outside any
/// group (librdkafka's assign() needs a group.id; the group is never joined).
pub fn assigned_from_start(bootstrap: &str, topic: &str, partition: i32) -> Result<BaseConsumer> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "karst-tests-unused")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    c.assign(&tpl)?;
    Ok(c)
}

/// Reads topic/partition from `from` until `want` messages came, then two seconds more
/// for extras; returns (offset, value) in the order read.
pub fn read(bootstrap: &str, topic: &str, partition: i32, from: i64, isolation: &str, want: usize) -> Result<Vec<(i64, String)>> {
    let c = consumer(bootstrap, isolation, "karst-tests-unused")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    c.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut extra = None;
    loop {
        if out.len() >= want && extra.is_none() {
            extra = Some(Instant::now() + Duration::from_secs(2));
        }
        if extra.is_some_and(|e| Instant::now() > e) {
            return Ok(out);
        }
        ensure!(Instant::now() < deadline, "{isolation} consumer read {} of {want} from {topic}/{partition}", out.len());
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.with_context(|| format!("{isolation} consumer"))?;
            out.push((m.offset(), String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()));
        }
    }
}

/// (high watermark, last stable offset) of topic/partition, as ListOffsets tells a
/// read_uncommitted and a read_committed consumer.
pub fn ends(bootstrap: &str, topic: &str, partition: i32) -> Result<(i64, i64)> {
    let (_, high) = consumer(bootstrap, "read_uncommitted", "karst-tests-unused")?.fetch_watermarks(topic, partition, TIMEOUT)?;
    let (_, stable) = consumer(bootstrap, "read_committed", "karst-tests-unused")?.fetch_watermarks(topic, partition, TIMEOUT)?;
    Ok((high, stable))
}

pub fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let addr: SocketAddr = bootstrap.parse().with_context(|| format!("bootstrap {bootstrap}"))?;
    RawClient::connect(addr)?.create_topic(topic, partitions, &[])?;
    // Metadata can lag CreateTopics by a moment.
    let c = consumer(bootstrap, "read_uncommitted", "karst-tests-unused")?;
    wait_until(&format!("leaders for {topic}"), TIMEOUT, || {
        c.fetch_metadata(Some(topic), Duration::from_secs(5)).is_ok_and(|md| {
            md.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            })
        })
    })
}

/// Polls `fetch` until it returns `want` or TIMEOUT passed; returns the last value
/// (the caller checks it).
pub fn settle<T: PartialEq>(want: &T, mut fetch: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = fetch()?;
        if &got == want || Instant::now() > deadline {
            return Ok(got);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
