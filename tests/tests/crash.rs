//! kill -9 under load: every write acknowledged with acks=all survives, exactly once,
//! at its acknowledged offset, in per-producer order; the restarted broker keeps working.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use karst_tests::raw::RawClient;
use karst_tests::{unique_topic, wait_until, Broker};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::{Offset, TopicPartitionList};

const PRODUCERS: usize = 3;
const PARTITIONS: i32 = 3;
/// Acknowledged writes (over all producers) before the kill.
const ACKED_BEFORE_KILL: usize = 4000;
/// Unacknowledged messages each producer keeps in flight at most.
const MAX_IN_FLIGHT: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    producer: usize,
    seq: usize,
    partition: i32,
    offset: i64,
}

fn value(producer: usize, seq: usize) -> String {
    format!("p{producer}-{seq:08}")
}

fn parse_value(v: &[u8]) -> Result<(usize, usize)> {
    let s = std::str::from_utf8(v)?;
    let (p, seq) = s.strip_prefix('p').and_then(|s| s.split_once('-')).ok_or_else(|| anyhow!("unexpected value {s:?}"))?;
    Ok((p.parse()?, seq.parse()?))
}

#[derive(Default)]
struct Shared {
    acks: Mutex<Vec<Ack>>,
    /// Delivery failures before the kill started: there should be none.
    early_failures: Mutex<Vec<String>>,
    completed: AtomicUsize,
    killing: AtomicBool,
    stop: AtomicBool,
}

struct AckContext {
    producer: usize,
    shared: Arc<Shared>,
    in_flight: Arc<(Mutex<usize>, Condvar)>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        match result {
            Ok(m) => {
                if let Ok(mut acks) = self.shared.acks.lock() {
                    acks.push(Ack { producer: self.producer, seq, partition: m.partition(), offset: m.offset() });
                }
                self.shared.completed.fetch_add(1, Ordering::SeqCst);
            }
            Err((e, _)) => {
                if !self.shared.killing.load(Ordering::SeqCst) {
                    if let Ok(mut f) = self.shared.early_failures.lock() {
                        f.push(format!("producer {} seq {seq}: {e}", self.producer));
                    }
                }
            }
        }
        let (count, cv) = &*self.in_flight;
        if let Ok(mut n) = count.lock() {
            *n = n.saturating_sub(1);
            cv.notify_all();
        }
    }
}

/// One producer thread: sends `p<id>-<seq>` to partition `seq % PARTITIONS` until told
/// to stop, then purges whatever is unacknowledged. Returns how many it sent.
fn run_producer(id: usize, bootstrap: String, topic: String, shared: Arc<Shared>) -> Result<usize> {
    let in_flight = Arc::new((Mutex::new(0usize), Condvar::new()));
    let producer: ThreadedProducer<AckContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        // No client retries: a retried request could duplicate a write whose first
        // attempt was persisted, and the test counts duplicates as broker bugs.
        .set("retries", "0")
        .set("enable.idempotence", "false")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "20000")
        .create_with_context(AckContext { producer: id, shared: shared.clone(), in_flight: in_flight.clone() })?;
    let mut seq = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        {
            let (count, cv) = &*in_flight;
            let mut n = count.lock().map_err(|_| anyhow!("poisoned"))?;
            while *n >= MAX_IN_FLIGHT && !shared.stop.load(Ordering::SeqCst) {
                n = cv.wait_timeout(n, Duration::from_millis(100)).map_err(|_| anyhow!("poisoned"))?.0;
            }
            *n += 1;
        }
        let v = value(id, seq);
        let record = BaseRecord::with_opaque_to(&topic, seq).payload(&v).key(&v).partition((seq % PARTITIONS as usize) as i32);
        match producer.send(record) {
            Ok(()) => seq += 1,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                let (count, _) = &*in_flight;
                *count.lock().map_err(|_| anyhow!("poisoned"))? -= 1;
            }
            Err((e, _)) => bail!("producer {id}: send failed: {e}"),
        }
    }
    producer.purge(PurgeConfig::default().queue().inflight());
    let _ = producer.flush(Duration::from_secs(10));
    Ok(seq)
}

/// Reads every partition from the beginning up to its high watermark.
/// Partition → (offset, value) in offset order.
type Log = HashMap<i32, Vec<(i64, Vec<u8>)>>;

fn consume_all(bootstrap: &str, topic: &str) -> Result<Log> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // librdkafka's assign() needs a group.id (else "Unknown group"); the
        // group itself is never joined and no offset is committed.
        .set("group.id", "karst-tests-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        ensure!(low == 0, "partition {p}: low watermark {low}");
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut log: Log = HashMap::new();
    let done = |log: &Log| ends.iter().all(|(p, end)| log.get(p).map_or(0, |v| v.len() as i64) >= *end);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&log) {
        if Instant::now() > deadline {
            let got: HashMap<i32, usize> = log.iter().map(|(p, v)| (*p, v.len())).collect();
            bail!("consumed {got:?} of high watermarks {ends:?} in 30 s");
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => bail!("consumer error: {e}"),
            Some(Ok(m)) => {
                let entry = log.entry(m.partition()).or_default();
                let expected = entry.len() as i64;
                ensure!(
                    m.offset() == expected,
                    "partition {}: offset {} after {expected} records (gap or reorder)",
                    m.partition(),
                    m.offset()
                );
                entry.push((m.offset(), m.payload().unwrap_or_default().to_vec()));
            }
        }
    }
    Ok(log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_writes_survive_kill_9() -> Result<()> {
    kill_9_under_load(&[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_writes_survive_kill_9_with_small_segments() -> Result<()> {
    // Segments roll every few batches, so recovery crosses many segment files.
    kill_9_under_load(&["--set", "log.segment.bytes=16384"]).await
}

async fn kill_9_under_load(broker_args: &[&str]) -> Result<()> {
    let started = Instant::now();
    let mut broker = Broker::start(broker_args)?;
    let topic = unique_topic("crash");
    RawClient::connect(broker.addr())?.create_topic(&topic, PARTITIONS, &[])?;

    let shared = Arc::new(Shared::default());
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let (bootstrap, topic, shared) = (broker.bootstrap(), topic.clone(), shared.clone());
            std::thread::spawn(move || run_producer(id, bootstrap, topic, shared))
        })
        .collect();

    let waited = wait_until(&format!("{ACKED_BEFORE_KILL} acknowledged writes"), Duration::from_secs(30), || {
        shared.completed.load(Ordering::SeqCst) >= ACKED_BEFORE_KILL || threads.iter().any(|t| t.is_finished())
    });
    shared.killing.store(true, Ordering::SeqCst);
    broker.kill9()?;
    shared.stop.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    for t in threads {
        sent.push(t.join().map_err(|_| anyhow!("producer thread panicked"))??);
    }
    waited?;
    let early = shared.early_failures.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    ensure!(early.is_empty(), "deliveries failed before the kill: {early:?}");
    let acks = shared.acks.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    println!("killed after {:?}: sent {sent:?}, {} acknowledged", started.elapsed(), acks.len());
    ensure!(acks.len() >= ACKED_BEFORE_KILL, "only {} acks", acks.len());

    broker.restart()?;
    let bootstrap = broker.bootstrap();
    let log = {
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        tokio::task::spawn_blocking(move || consume_all(&bootstrap, &topic)).await??
    };

    // Where each value is in the log; no value may appear twice.
    let mut found: HashMap<(usize, usize), (i32, i64)> = HashMap::new();
    for (p, records) in &log {
        for (offset, v) in records {
            let key = parse_value(v).with_context(|| format!("partition {p} offset {offset}"))?;
            if let Some(prev) = found.insert(key, (*p, *offset)) {
                bail!("value {key:?} appears twice: at {prev:?} and ({p}, {offset})");
            }
        }
    }
    for a in &acks {
        match found.get(&(a.producer, a.seq)) {
            Some(&at) if at == (a.partition, a.offset) => {}
            Some(at) => bail!("acknowledged {a:?} is at {at:?} after restart"),
            None => bail!(
                "acknowledged {a:?} is missing after restart (high watermark of partition {}: {})",
                a.partition,
                log.get(&a.partition).map_or(0, Vec::len)
            ),
        }
    }
    // Per producer and partition, sequence numbers increase with the offset.
    for (p, records) in &log {
        let mut last: HashMap<usize, usize> = HashMap::new();
        for (offset, v) in records {
            let (producer, seq) = parse_value(v)?;
            if let Some(prev) = last.insert(producer, seq) {
                ensure!(seq > prev, "partition {p} offset {offset}: producer {producer} seq {seq} after {prev}");
            }
        }
    }
    let total: usize = log.values().map(Vec::len).sum();
    if broker_args.iter().any(|a| a.starts_with("log.segment.bytes")) {
        let dir = broker.data_dir().join(format!("{topic}-0"));
        let segments = std::fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .count();
        println!("{segments} segments in {}", dir.display());
        ensure!(segments > 1, "expected several segments in {}", dir.display());
    }
    println!("after restart: {total} records, all {} acknowledged present at their offsets", acks.len());

    // The restarted broker accepts and serves new writes after the recovered ones.
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("acks", "all").set("message.timeout.ms", "20000").create()?;
    for p in 0..PARTITIONS {
        let v = format!("after-restart-{p}");
        let delivery = producer
            .send(FutureRecord::<(), _>::to(&topic).payload(&v).partition(p), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| anyhow!("produce after restart to partition {p}: {e}"))?;
        let end = log.get(&p).map_or(0, Vec::len) as i64;
        ensure!(delivery.offset == end, "partition {p}: new write at offset {}, expected {end}", delivery.offset);
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        // librdkafka's assign() needs a group.id (else "Unknown group"); the
        // group itself is never joined and no offset is committed.
        .set("group.id", "karst-tests-unused")
        .set("enable.auto.commit", "false")
        .create()?;
    for p in 0..PARTITIONS {
        let end = log.get(&p).map_or(0, Vec::len) as i64;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, p, Offset::Offset(end))?;
        consumer.assign(&tpl)?;
        let m = match consumer.poll(Duration::from_secs(15)) {
            Some(Ok(m)) => m.detach(),
            Some(Err(e)) => bail!("consuming the new write: {e}"),
            None => bail!("partition {p}: the write after restart never arrived"),
        };
        ensure!(
            m.offset() == end && m.payload() == Some(format!("after-restart-{p}").as_bytes()),
            "partition {p}: read {:?} at {}",
            m.payload().map(String::from_utf8_lossy),
            m.offset()
        );
    }
    println!("whole test took {:?}", started.elapsed());
    ensure!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    broker.check_running()
}
