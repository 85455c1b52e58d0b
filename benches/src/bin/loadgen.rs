//! `loadgen`: drives any Kafka-protocol broker through librdkafka (the `rdkafka`
//! crate) with the same client settings, and prints one JSON [`RunResult`].
//!
//! N producers (each its own client on its own thread) send fixed-size records
//! with a send timestamp in the payload, acks=all; M consumers per group (each its
//! own client on its own thread) measure end-to-end latency from that timestamp
//! into HDR histograms. Modes: maximum throughput for a duration, a fixed total
//! rate (`--rate`), and catch-up (`--backlog-bytes`: write a backlog first, then
//! time reading it from the beginning). Every loop is bounded by a deadline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use karst_benches::payload::{self, now_ns};
use karst_benches::result::{histogram, record};
use karst_benches::{Latency, RunResult, Spread};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen", about = "Kafka-protocol load generator (librdkafka) printing a JSON result")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic (default: a fresh name per run).
    #[arg(long)]
    topic: Option<String>,
    #[arg(long, default_value_t = 6)]
    partitions: usize,
    /// Do not create the topic (it exists, or the broker auto-creates it).
    #[arg(long)]
    skip_create: bool,
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// Consumers per group (0: produce only).
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    /// Consumer groups; each reads every record.
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Join real consumer groups (subscribe) instead of assigning partitions.
    #[arg(long)]
    subscribe: bool,
    /// Record size in bytes (at least 16).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Fixed total rate in msgs/s over all producers (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Catch-up mode: produce this many bytes first, then time reading them back.
    #[arg(long)]
    backlog_bytes: Option<u64>,
    /// In catch-up mode, try to drop the page cache between writing and reading.
    #[arg(long)]
    drop_caches: bool,
    /// Seconds consumers may take after the producers stop to receive everything.
    #[arg(long, default_value_t = 15.0)]
    drain_timeout: f64,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    #[arg(long, default_value_t = 1_048_576)]
    batch_bytes: usize,
    /// Labels copied into the JSON.
    #[arg(long, default_value = "kafka")]
    system: String,
    #[arg(long, default_value = "adhoc")]
    workload: String,
    #[arg(long, default_value = "")]
    durability: String,
    /// Write the JSON here instead of stdout.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Consumers skip ApiVersions and speak this Kafka version's protocol (librdkafka
    /// `broker.version.fallback`: 0.8.x or 0.9.0; later versions make librdkafka ask
    /// anyway), e.g. 0.9.0: Fetch v1, message format v0, which a broker serves by
    /// down-converting its v2 batches.
    #[arg(long)]
    consumer_fallback: Option<String>,
    /// Before the run, send one empty record to every partition and wait until all
    /// are acknowledged: a broker may list a partition in Metadata before it can
    /// take writes (Apache Kafka creates the logs after publishing the metadata).
    #[arg(long)]
    ready_probe: bool,
}

/// The measured window in [`now_ns`] time, and run-wide flags.
struct Shared {
    start_ns: AtomicU64,
    end_ns: AtomicU64,
    stop_producers: AtomicBool,
}

impl Shared {
    fn in_window(&self, t: u64) -> bool {
        t >= self.start_ns.load(Ordering::Relaxed) && t < self.end_ns.load(Ordering::Relaxed)
    }
}

struct ProdCtx {
    shared: Arc<Shared>,
    acked_total: AtomicU64,
    acked_window: AtomicU64,
    errors: AtomicU64,
    samples: Mutex<Vec<String>>,
    hist: Mutex<Histogram<u64>>,
}

impl ClientContext for ProdCtx {}

impl ProducerContext for ProdCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let now = now_ns();
                self.acked_total.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = m.payload().and_then(payload::sent_ns) {
                    if self.shared.in_window(t) {
                        self.acked_window.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut h) = self.hist.lock() {
                            record(&mut h, now.saturating_sub(t) / 1000);
                        }
                    }
                }
            }
            Err((e, _)) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut s) = self.samples.lock() {
                    if s.len() < 5 {
                        s.push(format!("delivery: {e}"));
                    }
                }
            }
        }
    }
}

fn producer_config(a: &Args) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &a.brokers)
        .set("acks", "all")
        .set("linger.ms", a.linger_ms.to_string())
        .set("batch.size", a.batch_bytes.to_string())
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "30000");
    c
}

fn consumer_config(a: &Args, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &a.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "65536")
        .set("session.timeout.ms", "10000");
    if let Some(v) = &a.consumer_fallback {
        c.set("api.version.request", "false").set("broker.version.fallback", v);
    }
    c
}

struct ProducerOut {
    ctx: Arc<ProdCtx>,
    sent: u64,
    send_errors: Vec<String>,
}

/// Sends until the window ends (or `max_msgs`), at `rate` msgs/s if given.
fn run_producer(a: &Args, topic: &str, id: usize, shared: Arc<Shared>, rate: Option<f64>, max_msgs: Option<u64>) -> Result<ProducerOut> {
    let ctx = Arc::new(ProdCtx {
        shared: shared.clone(),
        acked_total: AtomicU64::new(0),
        acked_window: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        samples: Mutex::new(Vec::new()),
        hist: Mutex::new(histogram()),
    });
    let producer: ThreadedProducer<ArcCtx> = producer_config(a).create_with_context(ArcCtx(ctx.clone())).context("creating producer")?;
    let mut buf = payload::buffer(a.size, id as u32);
    let parts = a.partitions.max(1);
    let mut partition = id % parts;
    let begin = Instant::now();
    let hard_deadline = begin + Duration::from_secs_f64(a.warmup + a.duration + 600.0);
    let end_ns = shared.end_ns.load(Ordering::Relaxed);
    let mut sent = 0u64;
    let mut send_errors = Vec::new();
    loop {
        if shared.stop_producers.load(Ordering::Relaxed) || Instant::now() >= hard_deadline {
            break;
        }
        if let Some(max) = max_msgs {
            if sent >= max {
                break;
            }
        } else if now_ns() >= end_ns {
            break;
        }
        if let Some(r) = rate {
            let due = (r * begin.elapsed().as_secs_f64()) as u64;
            if sent >= due {
                thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        payload::stamp(&mut buf);
        let rec = BaseRecord::<(), [u8]>::to(topic).payload(&buf[..]).partition(partition as i32);
        match producer.send(rec) {
            Ok(()) => {
                sent += 1;
                partition = (partition + 1) % parts;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => thread::sleep(Duration::from_micros(500)),
            Err((e, _)) => {
                if send_errors.len() < 5 {
                    send_errors.push(format!("send: {e}"));
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
    // Bounded: what is not acknowledged within the drain timeout is purged and
    // counted (each purged record reports a delivery error).
    let drain = Duration::from_secs_f64(a.drain_timeout.max(1.0));
    if producer.flush(Timeout::After(drain)).is_err() {
        let before = ctx.errors.load(Ordering::SeqCst);
        producer.purge(PurgeConfig::default().queue().inflight());
        let _ = producer.flush(Timeout::After(Duration::from_secs(5)));
        let purged = ctx.errors.load(Ordering::SeqCst) - before;
        send_errors.push(format!("{purged} records not acknowledged within {drain:?} after the run were purged"));
    }
    Ok(ProducerOut { ctx, sent, send_errors })
}

/// `ProducerContext` is implemented for the context type itself; an `Arc`
/// wrapper lets the main thread read the counters after the client is gone.
struct ArcCtx(Arc<ProdCtx>);
impl ClientContext for ArcCtx {}
impl ProducerContext for ArcCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, o: ()) {
        self.0.delivery(result, o)
    }
}

struct ConsumerOut {
    hist: Histogram<u64>,
    window_count: u64,
    per_partition: Vec<u64>,
    errors: Vec<String>,
}

struct GroupState {
    consumed: AtomicU64,
}

/// Reads until the group has everything the producers got acknowledged (once
/// that number is known) or the drain deadline passes.
#[allow(clippy::too_many_arguments)]
fn run_consumer(
    a: &Args,
    topic: &str,
    group_name: &str,
    index: usize,
    shared: Arc<Shared>,
    group: Arc<GroupState>,
    target: Arc<AtomicU64>,
    ready: Arc<AtomicU64>,
    done_by: Arc<AtomicU64>,
) -> Result<ConsumerOut> {
    let consumer: BaseConsumer = consumer_config(a, group_name).create().context("creating consumer")?;
    if a.subscribe {
        consumer.subscribe(&[topic]).context("subscribe")?;
    } else {
        let mut tpl = TopicPartitionList::new();
        for p in (0..a.partitions).filter(|p| p % a.consumers.max(1) == index) {
            tpl.add_partition_offset(topic, p as i32, Offset::Beginning).context("partition list")?;
        }
        consumer.assign(&tpl).context("assign")?;
        ready.fetch_add(1, Ordering::SeqCst);
    }
    let mut is_ready = !a.subscribe;
    let mut out = ConsumerOut { hist: histogram(), window_count: 0, per_partition: vec![0; a.partitions], errors: Vec::new() };
    let hard_deadline = Instant::now() + Duration::from_secs_f64(a.warmup + a.duration + a.drain_timeout + 600.0);
    // Counted locally and added to the group's total in steps: one shared counter
    // written per record by every consumer thread costs the client more than the record.
    let mut unpublished = 0u64;
    loop {
        if unpublished > 0 {
            group.consumed.fetch_add(std::mem::take(&mut unpublished), Ordering::Relaxed);
        }
        let t = target.load(Ordering::SeqCst);
        if t != u64::MAX && group.consumed.load(Ordering::Relaxed) >= t {
            break;
        }
        let d = done_by.load(Ordering::SeqCst);
        if (d != 0 && now_ns() >= d) || Instant::now() >= hard_deadline {
            break;
        }
        // Up to 256 records between checks of the shared state; it waits only while there are none.
        let mut wait = Duration::from_millis(50);
        for _ in 0..256 {
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    let now = now_ns();
                    unpublished += 1;
                    wait = Duration::ZERO;
                    // A readiness probe's record (`--ready-probe`): counted toward the target only.
                    if m.payload().is_none_or(<[u8]>::is_empty) {
                        continue;
                    }
                    if shared.in_window(now) {
                        out.window_count += 1;
                        if let Some(c) = out.per_partition.get_mut(m.partition() as usize) {
                            *c += 1;
                        }
                    }
                    if let Some(sent) = m.payload().and_then(payload::sent_ns) {
                        if shared.in_window(sent) {
                            record(&mut out.hist, now.saturating_sub(sent) / 1000);
                        }
                    }
                }
                Some(Err(e)) => {
                    if out.errors.len() < 5 {
                        out.errors.push(format!("consume: {e}"));
                    }
                    break;
                }
                None => break,
            }
        }
        if !is_ready && consumer.assignment().map(|a| a.count() > 0).unwrap_or(false) {
            is_ready = true;
            ready.fetch_add(1, Ordering::SeqCst);
        }
    }
    Ok(out)
}

/// Creates the topic; a note if it took more than one request.
fn create_topic(a: &Args, topic: &str) -> Result<Option<String>> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &a.brokers).create().context("creating admin client")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60))).request_timeout(Some(Duration::from_secs(120)));
    let create = |n: usize| -> Result<Option<RDKafkaErrorCode>> {
        let new = NewTopic::new(topic, n as i32, TopicReplication::Fixed(1));
        let res = rt.block_on(admin.create_topics(&[new], &opts)).context("CreateTopics")?;
        for r in res {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, e)) => return Ok(Some(e)),
            }
        }
        Ok(None)
    };
    match create(a.partitions)? {
        None => Ok(None),
        // Apache Kafka's controller refuses an operation of more than 10,000 metadata
        // records (a record per partition): half the partitions, then CreatePartitions.
        Some(RDKafkaErrorCode::PolicyViolation) if a.partitions >= 2000 => {
            let half = a.partitions / 2;
            if let Some(e) = create(half)? {
                bail!("creating topic {topic} with {half} partitions: {e}");
            }
            let more = NewPartitions::new(topic, a.partitions);
            for r in rt.block_on(admin.create_partitions(&[more], &opts)).context("CreatePartitions")? {
                if let Err((t, e)) = r {
                    bail!("CreatePartitions {t} to {}: {e}", a.partitions);
                }
            }
            Ok(Some(format!(
                "CreateTopics with {} partitions was refused (policy violation); created with {half}, then CreatePartitions to {}",
                a.partitions, a.partitions
            )))
        }
        Some(e) => bail!("creating topic {topic}: {e}"),
    }
}

/// Sends one empty record to every partition and waits until each is acknowledged
/// (librdkafka retries those a broker is not ready to take yet); returns the count.
fn ready_probe(a: &Args, topic: &str) -> Result<u64> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        producer_config(a).set("message.timeout.ms", "300000").create().context("creating probe producer")?;
    for p in 0..a.partitions {
        loop {
            match producer.send(BaseRecord::<(), [u8]>::to(topic).payload(&[][..]).partition(p as i32)) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => thread::sleep(Duration::from_millis(1)),
                Err((e, _)) => bail!("probe record to partition {p}: {e}"),
            }
        }
    }
    producer.flush(Timeout::After(Duration::from_secs(300))).context("waiting for every partition to take a record")?;
    Ok(a.partitions as u64)
}

/// Waits until metadata shows the topic with all its partitions.
fn wait_for_topic(a: &Args, topic: &str) -> Result<()> {
    let probe: BaseConsumer = consumer_config(a, "loadgen-probe").create().context("creating probe client")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(md) = probe.fetch_metadata(Some(topic), Duration::from_secs(10)) {
            if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                if t.error().is_none() && t.partitions().len() >= a.partitions && t.partitions().iter().all(|p| p.error().is_none()) {
                    return Ok(());
                }
            }
        }
        if Instant::now() >= deadline {
            bail!("topic {topic} did not show {} partitions within 60 s", a.partitions);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Writes 3 to /proc/sys/vm/drop_caches after a sync; false if not permitted.
fn drop_page_cache() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

struct Consumers {
    handles: Vec<thread::JoinHandle<Result<ConsumerOut>>>,
    target: Arc<AtomicU64>,
    done_by: Arc<AtomicU64>,
    ready: Arc<AtomicU64>,
}

fn spawn_consumers(a: &Args, topic: &str, run_id: &str, shared: &Arc<Shared>) -> Consumers {
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let done_by = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for g in 0..a.groups {
        let group = Arc::new(GroupState { consumed: AtomicU64::new(0) });
        for c in 0..a.consumers {
            let (a, topic, shared, group, target, ready, done_by) =
                (a.clone(), topic.to_string(), shared.clone(), group.clone(), target.clone(), ready.clone(), done_by.clone());
            let name = format!("{run_id}-g{g}");
            handles.push(thread::spawn(move || run_consumer(&a, &topic, &name, c, shared, group, target, ready, done_by)));
        }
    }
    Consumers { handles, target, done_by, ready }
}

fn wait_ready(c: &Consumers, n: usize, secs: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while (c.ready.load(Ordering::SeqCst) as usize) < n {
        if Instant::now() >= deadline {
            bail!("only {} of {n} consumers got partitions within {secs} s", c.ready.load(Ordering::SeqCst));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn collect_consumers(c: Consumers, res: &mut RunResult, parts: usize) -> Histogram<u64> {
    let mut hist = histogram();
    let mut per_partition = vec![0u64; parts];
    for h in c.handles {
        match h.join() {
            Ok(Ok(o)) => {
                let _ = hist.add(&o.hist);
                res.consumed += o.window_count;
                for (acc, v) in per_partition.iter_mut().zip(o.per_partition) {
                    *acc += v;
                }
                for e in o.errors {
                    res.add_error(e);
                }
            }
            Ok(Err(e)) => res.add_error(format!("{e:#}")),
            Err(_) => res.add_error("consumer thread panicked"),
        }
    }
    if parts > 1 {
        res.spread = Some(Spread::from_counts(&per_partition));
    }
    hist
}

fn collect_producers(handles: Vec<thread::JoinHandle<Result<ProducerOut>>>, res: &mut RunResult) -> Histogram<u64> {
    let mut hist = histogram();
    for h in handles {
        match h.join() {
            Ok(Ok(p)) => {
                res.produced += p.ctx.acked_window.load(Ordering::SeqCst);
                res.acked_total += p.ctx.acked_total.load(Ordering::SeqCst);
                let errs = p.ctx.errors.load(Ordering::SeqCst);
                let samples = p.ctx.samples.lock().map(|s| s.clone()).unwrap_or_default();
                for s in samples.iter().chain(p.send_errors.iter()) {
                    if res.error_samples.len() < 5 {
                        res.error_samples.push(s.clone());
                    }
                }
                res.errors += errs + p.send_errors.len() as u64;
                if let Ok(h) = p.ctx.hist.lock() {
                    let _ = hist.add(&*h);
                }
                let _ = p.sent;
            }
            Ok(Err(e)) => res.add_error(format!("{e:#}")),
            Err(_) => res.add_error("producer thread panicked"),
        }
    }
    hist
}

fn run(a: Args) -> Result<RunResult> {
    payload::origin();
    if a.size < payload::MIN_SIZE {
        bail!("--size must be at least {}", payload::MIN_SIZE);
    }
    let run_id = format!("bench-{}-{}", std::process::id(), now_ns() % 1_000_000);
    let topic = a.topic.clone().unwrap_or_else(|| format!("{run_id}-{}", a.workload));
    let t_create = Instant::now();
    let create_note = if a.skip_create { None } else { create_topic(&a, &topic)? };
    wait_for_topic(&a, &topic)?;
    let create_topic_s = Some(t_create.elapsed().as_secs_f64());
    let (probed, ready_s) = if a.ready_probe { (ready_probe(&a, &topic)?, Some(t_create.elapsed().as_secs_f64())) } else { (0, None) };
    let mut res = RunResult {
        system: a.system.clone(),
        workload: a.workload.clone(),
        durability: a.durability.clone(),
        record_size: a.size,
        partitions: a.partitions,
        producers: a.producers,
        consumers: a.consumers,
        groups: a.groups,
        duration_s: a.duration,
        target_rate: a.rate,
        create_topic_s,
        ready_s,
        ..Default::default()
    };
    res.notes.extend(create_note);
    let shared = Arc::new(Shared { start_ns: AtomicU64::new(0), end_ns: AtomicU64::new(u64::MAX), stop_producers: AtomicBool::new(false) });
    let drain = Duration::from_secs_f64(a.drain_timeout);

    if let Some(backlog) = a.backlog_bytes {
        // Phase 1: write the backlog as fast as possible, no consumers.
        let per_producer = backlog / a.size as u64 / a.producers.max(1) as u64;
        let t0 = Instant::now();
        shared.start_ns.store(now_ns(), Ordering::SeqCst);
        let handles: Vec<_> = (0..a.producers)
            .map(|i| {
                let (a, topic, shared) = (a.clone(), topic.clone(), shared.clone());
                thread::spawn(move || run_producer(&a, &topic, i, shared, None, Some(per_producer)))
            })
            .collect();
        let ack_hist = collect_producers(handles, &mut res);
        let write_s = t0.elapsed().as_secs_f64();
        res.duration_s = write_s;
        res.ack_latency = Latency::from_histogram(&ack_hist);
        res.backlog_bytes = Some(res.acked_total * a.size as u64);
        // Phase 2: read it all back from the beginning.
        let dropped = a.drop_caches && drop_page_cache();
        res.page_cache_dropped = Some(dropped);
        let produced = res.produced;
        res.produced = 0;
        let read_start = Instant::now();
        shared.start_ns.store(u64::MAX, Ordering::SeqCst); // no latency samples on the read side
        let consumers = spawn_consumers(&a, &topic, &run_id, &shared);
        consumers.target.store(res.acked_total, Ordering::SeqCst);
        consumers.done_by.store(now_ns() + (drain.as_nanos() as u64).max(60_000_000_000), Ordering::SeqCst);
        let _ = collect_consumers(consumers, &mut res, a.partitions);
        let read_s = read_start.elapsed().as_secs_f64();
        res.catchup_s = Some(read_s);
        res.produced = produced;
        res.finish_rates();
        // The read rate is the catch-up rate over the whole backlog.
        res.consume_msgs_per_s = res.acked_total as f64 / read_s.max(1e-9);
        res.consume_mb_per_s = res.consume_msgs_per_s * a.size as f64 / 1e6;
        res.notes.push(format!("backlog written in {write_s:.1} s, read back in {read_s:.1} s"));
        if !dropped {
            res.notes.push("page cache not dropped: the backlog was read from memory".into());
        }
        return Ok(res);
    }

    let consumers = spawn_consumers(&a, &topic, &run_id, &shared);
    wait_ready(&consumers, a.consumers * a.groups, 60)?;
    let start = now_ns() + (a.warmup * 1e9) as u64;
    shared.start_ns.store(start, Ordering::SeqCst);
    shared.end_ns.store(start + (a.duration * 1e9) as u64, Ordering::SeqCst);
    let per_producer_rate = a.rate.map(|r| r / a.producers.max(1) as f64);
    let handles: Vec<_> = (0..a.producers)
        .map(|i| {
            let (a, topic, shared) = (a.clone(), topic.clone(), shared.clone());
            thread::spawn(move || run_producer(&a, &topic, i, shared, per_producer_rate, None))
        })
        .collect();
    let ack_hist = collect_producers(handles, &mut res);
    consumers.target.store(res.acked_total + probed, Ordering::SeqCst);
    consumers.done_by.store(now_ns() + drain.as_nanos() as u64, Ordering::SeqCst);
    let groups = a.groups as u64;
    let e2e = collect_consumers(consumers, &mut res, a.partitions);
    res.ack_latency = Latency::from_histogram(&ack_hist);
    res.e2e_latency = Latency::from_histogram(&e2e);
    if a.consumers > 0 {
        let expected = res.produced * groups;
        let got = res.e2e_latency.count;
        res.missing = expected.saturating_sub(got);
    }
    res.finish_rates();
    Ok(res)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let out = a.out.clone();
    let res = run(a)?;
    let json = serde_json::to_string_pretty(&res)?;
    match out {
        Some(p) => std::fs::write(&p, json).with_context(|| format!("writing {}", p.display()))?,
        None => println!("{json}"),
    }
    Ok(())
}
