//! `peerload`: the (a)/(b)/(c) workloads against non-Kafka peers, each with its own
//! Rust client, printing the same JSON [`RunResult`] as `loadgen`.
//!
//! - Redis Streams (`redis`): one stream per partition, XADD pipelined, XREAD BLOCK.
//! - NATS JetStream (`async-nats`): one file-store stream, a subject per partition,
//!   publishes pipelined and each acknowledged; pull consumers (one per group).
//! - RabbitMQ (`lapin`): one quorum queue per partition, publisher confirms for every
//!   message, consumers with automatic acknowledgement.
//!
//! Batching equivalent to the Kafka client's: a producer sends up to one batch
//! (1 MiB or 1000 records) and waits for every acknowledgement before the next.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use karst_benches::payload::{self, now_ns};
use karst_benches::result::{histogram, record};
use karst_benches::{Latency, RunResult, Spread};
use tokio::sync::Mutex;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum System {
    Redis,
    Nats,
    Rabbitmq,
}

#[derive(Parser, Debug, Clone)]
#[command(name = "peerload", about = "Redis Streams / NATS JetStream / RabbitMQ load generator printing a JSON result")]
struct Args {
    #[arg(value_enum)]
    kind: System,
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 6)]
    partitions: usize,
    #[arg(long, default_value_t = 2)]
    producers: usize,
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    #[arg(long, default_value_t = 1)]
    groups: usize,
    #[arg(long, default_value_t = 1024)]
    size: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 15.0)]
    drain_timeout: f64,
    /// Records per producer batch at most (also capped at 1 MiB).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    #[arg(long, default_value = "peer")]
    system: String,
    #[arg(long, default_value = "adhoc")]
    workload: String,
    #[arg(long, default_value = "")]
    durability: String,
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Accepted for symmetry with loadgen; catch-up is not implemented for peers.
    #[arg(long)]
    backlog_bytes: Option<u64>,
    #[arg(long)]
    drop_caches: bool,
}

struct Window {
    start: u64,
    end: u64,
}

impl Window {
    fn contains(&self, t: u64) -> bool {
        t >= self.start && t < self.end
    }
}

#[derive(Default)]
struct Counters {
    acked_total: AtomicU64,
    acked_window: AtomicU64,
    errors: AtomicU64,
}

struct Ctx {
    a: Args,
    run: String,
    win: Window,
    counters: Counters,
    ack_hist: Mutex<Histogram<u64>>,
    samples: std::sync::Mutex<Vec<String>>,
    /// Set once producers are done: every group must reach it.
    target: AtomicU64,
    done_by: AtomicU64,
}

impl Ctx {
    fn error(&self, e: impl std::fmt::Display) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.samples.lock() {
            if s.len() < 5 {
                s.push(e.to_string());
            }
        }
    }

    fn batch_len(&self) -> usize {
        self.a.batch.min((1 << 20) / self.a.size).max(1)
    }

    /// Records to send now: a full batch, or what the fixed rate makes due.
    async fn due(&self, begin: Instant, sent: u64, per_producer_rate: Option<f64>) -> usize {
        let batch = self.batch_len();
        match per_producer_rate {
            None => batch,
            Some(r) => loop {
                let due = (r * begin.elapsed().as_secs_f64()) as u64;
                if due > sent {
                    return ((due - sent) as usize).min(batch);
                }
                if now_ns() >= self.win.end {
                    return 0;
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            },
        }
    }

    async fn acked(&self, sent_ns: &[u64]) {
        let now = now_ns();
        let mut h = self.ack_hist.lock().await;
        for &t in sent_ns {
            self.counters.acked_total.fetch_add(1, Ordering::Relaxed);
            if self.win.contains(t) {
                self.counters.acked_window.fetch_add(1, Ordering::Relaxed);
                record(&mut h, now.saturating_sub(t) / 1000);
            }
        }
    }

    fn finished(&self, consumed: u64) -> bool {
        let t = self.target.load(Ordering::SeqCst);
        let d = self.done_by.load(Ordering::SeqCst);
        (t != u64::MAX && consumed >= t) || (d != 0 && now_ns() >= d)
    }
}

/// What one consumer saw.
struct Seen {
    hist: Histogram<u64>,
    window_count: u64,
    per_partition: Vec<u64>,
}

impl Seen {
    fn new(parts: usize) -> Seen {
        Seen { hist: histogram(), window_count: 0, per_partition: vec![0; parts] }
    }

    fn got(&mut self, ctx: &Ctx, partition: usize, data: &[u8]) {
        let now = now_ns();
        if ctx.win.contains(now) {
            self.window_count += 1;
            if let Some(c) = self.per_partition.get_mut(partition) {
                *c += 1;
            }
        }
        if let Some(t) = payload::sent_ns(data) {
            if ctx.win.contains(t) {
                record(&mut self.hist, now.saturating_sub(t) / 1000);
            }
        }
    }
}

fn my_partitions(a: &Args, index: usize) -> Vec<usize> {
    (0..a.partitions).filter(|p| p % a.consumers.max(1) == index).collect()
}

// ---------------------------------------------------------------- Redis Streams

mod redis_peer {
    use super::*;
    use redis::streams::{StreamReadOptions, StreamReadReply};
    use redis::AsyncCommands;

    fn key(ctx: &Ctx, p: usize) -> String {
        format!("{}-{p}", ctx.run)
    }

    pub(super) async fn setup(_ctx: &Arc<Ctx>) -> Result<()> {
        Ok(())
    }

    pub(super) async fn produce(ctx: Arc<Ctx>, id: usize, rate: Option<f64>) -> Result<()> {
        let client = redis::Client::open(ctx.a.url.as_str())?;
        let mut con = client.get_multiplexed_async_connection().await.context("connecting to redis")?;
        // A pipeline under `appendfsync always` can take longer than the default 500 ms.
        con.set_response_timeout(Duration::from_secs(60));
        let mut buf = payload::buffer(ctx.a.size, id as u32);
        let mut partition = id % ctx.a.partitions.max(1);
        let begin = Instant::now();
        let mut sent = 0u64;
        while now_ns() < ctx.win.end {
            let n = ctx.due(begin, sent, rate).await;
            if n == 0 {
                break;
            }
            let mut pipe = redis::pipe();
            let mut stamps = Vec::with_capacity(n);
            for _ in 0..n {
                stamps.push(payload::stamp(&mut buf));
                pipe.cmd("XADD").arg(key(&ctx, partition)).arg("MAXLEN").arg("~").arg(500_000).arg("*").arg("d").arg(&buf[..]).ignore();
                partition = (partition + 1) % ctx.a.partitions.max(1);
            }
            match pipe.query_async::<()>(&mut con).await {
                Ok(()) => ctx.acked(&stamps).await,
                Err(e) => ctx.error(format!("XADD: {e}")),
            }
            sent += n as u64;
        }
        Ok(())
    }

    pub(super) async fn consume(ctx: Arc<Ctx>, _group: usize, index: usize, consumed: Arc<AtomicU64>) -> Result<Seen> {
        let client = redis::Client::open(ctx.a.url.as_str())?;
        let mut con = client.get_multiplexed_async_connection().await.context("connecting to redis")?;
        // A pipeline under `appendfsync always` can take longer than the default 500 ms.
        con.set_response_timeout(Duration::from_secs(60));
        let parts = my_partitions(&ctx.a, index);
        let keys: Vec<String> = parts.iter().map(|&p| key(&ctx, p)).collect();
        let mut ids: Vec<String> = vec!["0".to_string(); keys.len()];
        let mut seen = Seen::new(ctx.a.partitions);
        let opts = StreamReadOptions::default().count(1000).block(100);
        while !ctx.finished(consumed.load(Ordering::Relaxed)) {
            let reply: StreamReadReply = match con.xread_options(&keys, &ids, &opts).await {
                Ok(r) => r,
                Err(e) => {
                    ctx.error(format!("XREAD: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            for sk in reply.keys {
                let Some(slot) = keys.iter().position(|k| *k == sk.key) else { continue };
                for entry in sk.ids {
                    if let Some(redis::Value::BulkString(data)) = entry.map.get("d") {
                        seen.got(&ctx, parts[slot], data);
                    }
                    consumed.fetch_add(1, Ordering::Relaxed);
                    ids[slot] = entry.id;
                }
            }
        }
        Ok(seen)
    }
}

// ---------------------------------------------------------------- NATS JetStream

mod nats_peer {
    use super::*;
    use async_nats::jetstream::{self, consumer, stream};

    fn stream_name(ctx: &Ctx) -> String {
        ctx.run.replace('-', "_")
    }

    pub(super) async fn setup(ctx: &Arc<Ctx>) -> Result<()> {
        let client = async_nats::connect(ctx.a.url.as_str()).await.context("connecting to nats")?;
        let js = jetstream::new(client);
        js.create_stream(stream::Config {
            name: stream_name(ctx),
            subjects: vec![format!("{}.*", stream_name(ctx))],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating stream: {e}"))?;
        for g in 0..ctx.a.groups {
            let s = js.get_stream(stream_name(ctx)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            s.create_consumer(consumer::pull::Config {
                durable_name: Some(format!("g{g}")),
                ack_policy: consumer::AckPolicy::None,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating consumer: {e}"))?;
        }
        Ok(())
    }

    pub(super) async fn produce(ctx: Arc<Ctx>, id: usize, rate: Option<f64>) -> Result<()> {
        let client = async_nats::connect(ctx.a.url.as_str()).await.context("connecting to nats")?;
        let js = jetstream::new(client);
        let mut buf = payload::buffer(ctx.a.size, id as u32);
        let mut partition = id % ctx.a.partitions.max(1);
        let begin = Instant::now();
        let mut sent = 0u64;
        let subjects: Vec<String> = (0..ctx.a.partitions).map(|p| format!("{}.{p}", stream_name(&ctx))).collect();
        while now_ns() < ctx.win.end {
            let n = ctx.due(begin, sent, rate).await;
            if n == 0 {
                break;
            }
            let mut pending = Vec::with_capacity(n);
            for _ in 0..n {
                let t = payload::stamp(&mut buf);
                match js.publish(subjects[partition].clone(), Bytes::copy_from_slice(&buf)).await {
                    Ok(f) => pending.push((t, f)),
                    Err(e) => ctx.error(format!("publish: {e}")),
                }
                partition = (partition + 1) % ctx.a.partitions.max(1);
            }
            let mut ok = Vec::with_capacity(n);
            for (t, f) in pending {
                match f.await {
                    Ok(_) => ok.push(t),
                    Err(e) => ctx.error(format!("publish ack: {e}")),
                }
            }
            ctx.acked(&ok).await;
            sent += n as u64;
        }
        Ok(())
    }

    pub(super) async fn consume(ctx: Arc<Ctx>, group: usize, _index: usize, consumed: Arc<AtomicU64>) -> Result<Seen> {
        let client = async_nats::connect(ctx.a.url.as_str()).await.context("connecting to nats")?;
        let js = jetstream::new(client);
        let s = js.get_stream(stream_name(&ctx)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let c: consumer::PullConsumer = s.get_consumer(&format!("g{group}")).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut messages = c.stream().max_messages_per_batch(1000).messages().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let prefix = format!("{}.", stream_name(&ctx));
        let mut seen = Seen::new(ctx.a.partitions);
        while !ctx.finished(consumed.load(Ordering::Relaxed)) {
            match tokio::time::timeout(Duration::from_millis(100), messages.next()).await {
                Ok(Some(Ok(m))) => {
                    let p = m.subject.as_str().strip_prefix(&prefix).and_then(|s| s.parse().ok()).unwrap_or(0);
                    seen.got(&ctx, p, &m.payload);
                    consumed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(Err(e))) => ctx.error(format!("consume: {e}")),
                Ok(None) => break,
                Err(_) => {}
            }
        }
        Ok(seen)
    }
}

// ---------------------------------------------------------------- RabbitMQ

mod rabbit_peer {
    use super::*;
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    fn queue(ctx: &Ctx, p: usize) -> String {
        format!("{}-{p}", ctx.run)
    }

    pub(super) async fn setup(ctx: &Arc<Ctx>) -> Result<()> {
        if ctx.a.groups > 1 {
            bail!("RabbitMQ quorum queues are consumed destructively: one group only");
        }
        let conn = Connection::connect(&ctx.a.url, ConnectionProperties::default()).await.context("connecting to rabbitmq")?;
        let ch = conn.create_channel().await?;
        for p in 0..ctx.a.partitions {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
            ch.queue_declare(queue(ctx, p).as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)
                .await
                .context("declaring quorum queue")?;
        }
        let _ = conn.close(0, "setup done".into()).await;
        Ok(())
    }

    pub(super) async fn produce(ctx: Arc<Ctx>, id: usize, rate: Option<f64>) -> Result<()> {
        let conn = Connection::connect(&ctx.a.url, ConnectionProperties::default()).await.context("connecting to rabbitmq")?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        let mut buf = payload::buffer(ctx.a.size, id as u32);
        let mut partition = id % ctx.a.partitions.max(1);
        let begin = Instant::now();
        let mut sent = 0u64;
        let queues: Vec<String> = (0..ctx.a.partitions).map(|p| queue(&ctx, p)).collect();
        while now_ns() < ctx.win.end {
            let n = ctx.due(begin, sent, rate).await;
            if n == 0 {
                break;
            }
            let mut pending = Vec::with_capacity(n);
            for _ in 0..n {
                let t = payload::stamp(&mut buf);
                let props = BasicProperties::default().with_delivery_mode(2);
                match ch.basic_publish("".into(), queues[partition].as_str().into(), BasicPublishOptions::default(), &buf, props).await {
                    Ok(confirm) => pending.push((t, confirm)),
                    Err(e) => ctx.error(format!("publish: {e}")),
                }
                partition = (partition + 1) % ctx.a.partitions.max(1);
            }
            let mut ok = Vec::with_capacity(n);
            for (t, c) in pending {
                match c.await {
                    Ok(conf) if conf.is_ack() => ok.push(t),
                    Ok(_) => ctx.error("publish nacked"),
                    Err(e) => ctx.error(format!("confirm: {e}")),
                }
            }
            ctx.acked(&ok).await;
            sent += n as u64;
        }
        let _ = conn.close(0, "done".into()).await;
        Ok(())
    }

    pub(super) async fn consume(ctx: Arc<Ctx>, _group: usize, index: usize, consumed: Arc<AtomicU64>) -> Result<Seen> {
        let conn = Connection::connect(&ctx.a.url, ConnectionProperties::default()).await.context("connecting to rabbitmq")?;
        let ch = conn.create_channel().await?;
        ch.basic_qos(2000, BasicQosOptions::default()).await?;
        let parts = my_partitions(&ctx.a, index);
        let mut streams = Vec::new();
        for &p in &parts {
            let c = ch
                .basic_consume(
                    queue(&ctx, p).as_str().into(),
                    format!("c{index}-{p}").as_str().into(),
                    BasicConsumeOptions { no_ack: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await?;
            streams.push(c.map(move |d| (p, d)));
        }
        let mut all = futures_util::stream::select_all(streams);
        let mut seen = Seen::new(ctx.a.partitions);
        while !ctx.finished(consumed.load(Ordering::Relaxed)) {
            match tokio::time::timeout(Duration::from_millis(100), all.next()).await {
                Ok(Some((p, Ok(d)))) => {
                    seen.got(&ctx, p, &d.data);
                    consumed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some((_, Err(e)))) => ctx.error(format!("consume: {e}")),
                Ok(None) => break,
                Err(_) => {}
            }
        }
        let _ = conn.close(0, "done".into()).await;
        Ok(seen)
    }
}

async fn run(a: Args) -> Result<RunResult> {
    payload::origin();
    if a.size < payload::MIN_SIZE {
        bail!("--size must be at least {}", payload::MIN_SIZE);
    }
    if a.backlog_bytes.is_some() {
        bail!("catch-up (--backlog-bytes) is not implemented for {:?}", a.kind);
    }
    let run = format!("bench-{}-{}", std::process::id(), now_ns() % 1_000_000);
    // The window is fixed once setup is done (below); a placeholder until then.
    let mut ctx = Ctx {
        a: a.clone(),
        run,
        win: Window { start: 0, end: u64::MAX },
        counters: Counters::default(),
        ack_hist: Mutex::new(histogram()),
        samples: std::sync::Mutex::new(Vec::new()),
        target: AtomicU64::new(u64::MAX),
        done_by: AtomicU64::new(0),
    };
    {
        let c = Arc::new(ctx);
        match a.kind {
            System::Redis => redis_peer::setup(&c).await?,
            System::Nats => nats_peer::setup(&c).await?,
            System::Rabbitmq => rabbit_peer::setup(&c).await?,
        }
        ctx = Arc::try_unwrap(c).map_err(|_| anyhow::anyhow!("setup kept the context"))?;
    }
    // Consumers connect first (the window starts after the warm-up anyway).
    let start = now_ns() + (a.warmup * 1e9) as u64 + 300_000_000;
    ctx.win = Window { start, end: start + (a.duration * 1e9) as u64 };
    let ctx = Arc::new(ctx);
    let mut consumer_tasks = Vec::new();
    for g in 0..a.groups {
        let consumed = Arc::new(AtomicU64::new(0));
        for c in 0..a.consumers {
            let (ctx, consumed) = (ctx.clone(), consumed.clone());
            consumer_tasks.push(tokio::spawn(async move {
                match ctx.a.kind {
                    System::Redis => redis_peer::consume(ctx, g, c, consumed).await,
                    System::Nats => nats_peer::consume(ctx, g, c, consumed).await,
                    System::Rabbitmq => rabbit_peer::consume(ctx, g, c, consumed).await,
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rate = a.rate.map(|r| r / a.producers.max(1) as f64);
    let producer_tasks: Vec<_> = (0..a.producers)
        .map(|i| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                // Bounded: a producer stops at the window's end; past that plus a margin it is abandoned.
                let limit = Duration::from_secs_f64(ctx.a.warmup + ctx.a.duration + 120.0);
                let fut = async {
                    match ctx.a.kind {
                        System::Redis => redis_peer::produce(ctx.clone(), i, rate).await,
                        System::Nats => nats_peer::produce(ctx.clone(), i, rate).await,
                        System::Rabbitmq => rabbit_peer::produce(ctx.clone(), i, rate).await,
                    }
                };
                tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| Err(anyhow::anyhow!("producer timed out")))
            })
        })
        .collect();
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
        ..Default::default()
    };
    for t in producer_tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => res.add_error(format!("{e:#}")),
            Err(e) => res.add_error(format!("producer task: {e}")),
        }
    }
    let acked_total = ctx.counters.acked_total.load(Ordering::SeqCst);
    ctx.target.store(acked_total, Ordering::SeqCst);
    ctx.done_by.store(now_ns() + (a.drain_timeout * 1e9) as u64, Ordering::SeqCst);
    let mut e2e = histogram();
    let mut per_partition = vec![0u64; a.partitions];
    for t in consumer_tasks {
        match t.await {
            Ok(Ok(seen)) => {
                let _ = e2e.add(&seen.hist);
                res.consumed += seen.window_count;
                for (acc, v) in per_partition.iter_mut().zip(seen.per_partition) {
                    *acc += v;
                }
            }
            Ok(Err(e)) => res.add_error(format!("{e:#}")),
            Err(e) => res.add_error(format!("consumer task: {e}")),
        }
    }
    res.produced = ctx.counters.acked_window.load(Ordering::SeqCst);
    res.acked_total = acked_total;
    res.errors += ctx.counters.errors.load(Ordering::SeqCst);
    if let Ok(s) = ctx.samples.lock() {
        for e in s.iter() {
            if res.error_samples.len() < 5 {
                res.error_samples.push(e.clone());
            }
        }
    }
    res.ack_latency = Latency::from_histogram(&*ctx.ack_hist.lock().await);
    res.e2e_latency = Latency::from_histogram(&e2e);
    if a.consumers > 0 {
        res.missing = (res.produced * a.groups as u64).saturating_sub(res.e2e_latency.count);
    }
    if a.partitions > 1 {
        res.spread = Some(Spread::from_counts(&per_partition));
    }
    res.finish_rates();
    Ok(res)
}

fn main() -> Result<()> {
    let a = Args::parse();
    let out = a.out.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let res = rt.block_on(run(a))?;
    // Clients may leave background tasks; do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(2));
    let json = serde_json::to_string_pretty(&res)?;
    match out {
        Some(p) => std::fs::write(&p, json).with_context(|| format!("writing {}", p.display()))?,
        None => println!("{json}"),
    }
    Ok(())
}
