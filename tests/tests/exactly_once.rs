//! The exactly-once checker, in the spirit of Jepsen's Kafka workload: on three nodes,
//! consume-transform-produce pipelines (librdkafka transactional producers and
//! read_committed group members committing their offsets in the transaction) copy an
//! input topic to an output topic while a nemesis kills -9 and pauses the transaction
//! coordinators, the group coordinator and partition leaders. Afterwards:
//! - every input record is in the output exactly once (no loss, no duplicate);
//! - every transaction is in the output whole or not at all (no torn transaction);
//! - nothing a read_committed consumer saw during the faults is missing from, or
//!   different in, the final output (no aborted read);
//! - the group's committed offsets are the input's end offsets;
//! - every acknowledged input record is there (no lost acknowledged write).
//!
//! `KARST_EOS_ROUNDS` repeats the fault sequence (default 1). `KARST_EOS_CLIENT=franz`
//! runs the pipelines with franz-go's GroupTransactSession (`tests/go/franz`, mode
//! `eos-pipeline`) instead of librdkafka: transactions v2 (KIP-890 part 2), where
//! partitions join the transaction through Produce and TxnOffsetCommit and every
//! EndTxn bumps the epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use karst_tests::raw::{topic_name, RawClient};
use karst_tests::txn::{consumer, threaded_txn_producer};
use karst_tests::{unique_topic, wait_for, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(90);
const PARTITIONS: i32 = 4;
const WORKERS: usize = 2;
/// How long a killed node stays down when librdkafka's pipelines make no progress.
const DOWN_AT_MOST: Duration = Duration::from_secs(30);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn bootstrap_of(brokers: &[Broker]) -> String {
    brokers.iter().map(Broker::bootstrap).collect::<Vec<_>>().join(",")
}

/// Leader node of every partition of `topic`, as a live broker sees it.
fn leaders(brokers: &[Broker], topic: &str) -> Result<BTreeMap<i32, i32>> {
    wait_for("leaders", TIMEOUT, || {
        let b = brokers.iter().find(|b| b.pid().is_some())?;
        let mut c = RawClient::connect(b.addr()).ok()?;
        let md = c
            .send(
                &MetadataRequest::default().with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
                ])),
                9,
            )
            .ok()?;
        let t = md.topics.first()?;
        let m: BTreeMap<i32, i32> = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect();
        (m.len() == PARTITIONS as usize && m.values().all(|l| *l > 0 && brokers[(*l - 1) as usize].pid().is_some())).then_some(m)
    })
}

/// Waits until every partition of every topic (the internal ones too) is led by a
/// live node with all three replicas in sync: the next fault then starts from a
/// whole cluster, as min.insync.replicas=2 would otherwise (rightly) stop writes.
fn whole(brokers: &[Broker]) -> Result<()> {
    wait_for("every partition with a full ISR", Duration::from_secs(120), || {
        let b = brokers.iter().find(|b| b.pid().is_some())?;
        let mut c = RawClient::connect(b.addr()).ok()?;
        let md = c.send(&MetadataRequest::default().with_topics(None), 9).ok()?;
        let ok = !md.topics.is_empty()
            && md.topics.iter().all(|t| t.error_code == 0 && t.partitions.iter().all(|p| p.leader_id.0 > 0 && p.isr_nodes.len() == 3));
        ok.then_some(())
    })
}

/// The node coordinating `key` (key type 0: a group, 1: a transactional id).
fn coordinator(brokers: &[Broker], key: &str, key_type: i8) -> Result<i32> {
    wait_for("a coordinator", TIMEOUT, || {
        let b = brokers.iter().find(|b| b.pid().is_some())?;
        let mut c = RawClient::connect(b.addr()).ok()?;
        let r = c.send(&FindCoordinatorRequest::default().with_key(s(key)).with_key_type(key_type), 3).ok()?;
        (r.error_code == 0 && brokers[(r.node_id.0 - 1) as usize].pid().is_some()).then_some(r.node_id.0)
    })
}

/// What the cluster says when the pipelines stop moving: each pipeline's transaction
/// at its coordinator, the group's offsets as a require_stable fetch sees them, and
/// the open transactions of every partition involved (DescribeProducers at leaders).
fn diagnose(brokers: &[Broker], group: &str, input: &str, output: &str) {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{DescribeProducersRequest, DescribeTransactionsRequest, GroupId, OffsetFetchRequest, TransactionalId};
    for w in 0..WORKERS {
        let id = format!("{group}-w{w}");
        let Ok(node) = coordinator(brokers, &id, 1) else { continue };
        let Ok(mut c) = RawClient::connect(brokers[(node - 1) as usize].addr()) else { continue };
        let r = c.send(&DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(&id))]), 0);
        println!("diagnosis: {id} at node {node}: {r:?}");
    }
    if let Ok(node) = coordinator(brokers, group, 0) {
        if let Ok(mut c) = RawClient::connect(brokers[(node - 1) as usize].addr()) {
            let req = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_require_stable(true).with_topics(Some(vec![
                OffsetFetchRequestTopic::default().with_name(topic_name(input)).with_partition_indexes((0..PARTITIONS).collect()),
            ]));
            let r = c.send(&req, 7).map(|r| {
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.error_code, p.committed_offset)))
                    .collect::<Vec<_>>()
            });
            println!("diagnosis: group {group} at node {node}, require_stable offsets (partition, error, offset): {r:?}");
        }
    }
    for b in brokers.iter().filter(|b| b.pid().is_some()) {
        let Ok(mut c) = RawClient::connect(b.addr()) else { continue };
        let topics = ["__consumer_offsets", "__transaction_state", input, output]
            .iter()
            .map(|t| TopicRequest::default().with_name(topic_name(t)).with_partition_indexes((0..50).collect()))
            .collect();
        if let Ok(r) = c.send(&DescribeProducersRequest::default().with_topics(topics), 0) {
            for t in &r.topics {
                for p in t.partitions.iter().filter(|p| p.error_code == 0) {
                    for pr in p.active_producers.iter().filter(|pr| pr.current_txn_start_offset >= 0) {
                        println!(
                            "diagnosis: {}-{} led by {}: producer {} epoch {} open transaction from offset {}",
                            t.name.as_str(),
                            p.partition_index,
                            b.addr(),
                            pr.producer_id.0,
                            pr.producer_epoch,
                            pr.current_txn_start_offset
                        );
                    }
                }
            }
        }
    }
}

#[derive(Default)]
struct Stats {
    committed: AtomicUsize,
    aborted: AtomicUsize,
    restarts: AtomicUsize,
    /// What each pipeline is doing, and since when: a stall shows where it waits.
    stage: std::sync::Mutex<BTreeMap<usize, (&'static str, Instant)>>,
}

impl Stats {
    fn at(&self, worker: usize, stage: &'static str) {
        if let Ok(mut s) = self.stage.lock() {
            s.insert(worker, (stage, Instant::now()));
        }
    }

    fn stages(&self) -> String {
        self.stage.lock().map_or_else(
            |_| "poisoned".to_string(),
            |s| {
                s.iter()
                    .map(|(w, (what, since))| format!("pipeline {w}: {what} for {:.1?}", since.elapsed()))
                    .collect::<Vec<_>>()
                    .join("; ")
            },
        )
    }
}

/// Writes the input (round robin over the partitions, about 300 records/s) until
/// `on` goes false; returns the values acknowledged and every value attempted.
fn feed(bootstrap: String, topic: String, on: Arc<AtomicBool>) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let p: rdkafka::producer::BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .create_with_context(Acks(acked.clone()))?;
    let mut attempted = BTreeSet::new();
    let mut i = 0u64;
    while on.load(Ordering::SeqCst) {
        for _ in 0..30 {
            let partition = (i % PARTITIONS as u64) as i32;
            let v = format!("in-{partition}-{i}");
            if p.send(BaseRecord::<(), str>::to(&topic).payload(&v).partition(partition)).is_ok() {
                attempted.insert(v);
            }
            i += 1;
        }
        p.poll(Duration::from_millis(100));
    }
    p.flush(TIMEOUT)?;
    let acked = acked.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    Ok((acked, attempted))
}

/// Records each acknowledged value.
struct Acks(Arc<std::sync::Mutex<BTreeSet<String>>>);

impl rdkafka::ClientContext for Acks {}

impl rdkafka::producer::ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            if let (Some(v), Ok(mut acked)) = (m.payload(), self.0.lock()) {
                acked.insert(String::from_utf8_lossy(v).into_owned());
            }
        }
    }
}

/// What a pipeline works on: the cluster, the topics, the group, its number, when to
/// stop and where it reports.
struct Pipe {
    bootstrap: String,
    input: String,
    output: String,
    group: String,
    worker: usize,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

/// One pipeline: a read_committed group member and a transactional producer. Each
/// transaction carries a tag `w<worker>-<n>` and its size in every record, so torn
/// transactions show in the output. On any error both clients start over (a new
/// producer with the same transactional id fences the old one and aborts its open
/// transaction; the new member resumes at the committed offsets).
fn pipeline(Pipe { bootstrap, input, output, group, worker, stop, stats }: Pipe) -> Result<()> {
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let mut run = || -> Result<()> {
            stats.at(worker, "init_transactions");
            let p = threaded_txn_producer(&bootstrap, Some(&format!("{group}-w{worker}")))?;
            p.init_transactions(TIMEOUT)?;
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", "10000")
                .create()?;
            c.subscribe(&[&input])?;
            while !stop.load(Ordering::SeqCst) {
                stats.at(worker, "consuming");
                let mut batch = Vec::new();
                let until = Instant::now() + Duration::from_millis(200);
                while batch.len() < 50 && Instant::now() < until {
                    // A consumer error (a broker gone) is librdkafka's to recover from.
                    if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                        batch.push((m.partition(), m.offset(), String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()));
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                seq += 1;
                let tag = format!("w{worker}-{seq}");
                stats.at(worker, "producing");
                p.begin_transaction()?;
                for (partition, _, v) in &batch {
                    let value = format!("{v}|{tag}|{}", batch.len());
                    let rec = BaseRecord::<(), str>::to(&output).payload(&value).partition(*partition);
                    p.send(rec).map_err(|(e, _)| anyhow!("enqueueing: {e}"))?;
                }
                let mut offsets = TopicPartitionList::new();
                let mut next: BTreeMap<i32, i64> = BTreeMap::new();
                for (partition, offset, _) in &batch {
                    let e = next.entry(*partition).or_insert(0);
                    *e = (*e).max(offset + 1);
                }
                for (partition, offset) in next {
                    offsets.add_partition_offset(&input, partition, Offset::Offset(offset))?;
                }
                let meta = c.group_metadata().context("no group metadata")?;
                stats.at(worker, "send_offsets_to_transaction");
                p.send_offsets_to_transaction(&offsets, &meta, TIMEOUT)?;
                stats.at(worker, "commit_transaction");
                p.commit_transaction(TIMEOUT)?;
                stats.committed.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        };
        if let Err(e) = run() {
            // The transaction in flight (if any) is aborted by the next producer's init.
            stats.restarts.fetch_add(1, Ordering::SeqCst);
            stats.aborted.fetch_add(1, Ordering::SeqCst);
            println!("pipeline {worker}: starting over after: {e:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// A pipeline run by franz-go (`franz eos-pipeline`, see `tests/go/franz/eos.go`): the
/// same transactions, tags and records as [`pipeline`], reported line by line on the
/// program's output; stopped by closing its input.
fn go_pipeline(Pipe { bootstrap, input, output, group, worker, stop, stats }: Pipe) -> Result<()> {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let bin = karst_tests::modern::go_module_binary("franz")?;
    let mut child = Command::new(bin)
        .args(["eos-pipeline", &bootstrap, &input, &output, &group, &worker.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting franz eos-pipeline")?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().context("no output")?;
    let reader = {
        let stats = stats.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let (what, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                match what {
                    "STAGE" => {
                        let stage = ["consuming", "producing", "committing", "starting"].into_iter().find(|s| *s == rest).unwrap_or("?");
                        stats.at(worker, stage);
                    }
                    "COMMITTED" => {
                        stats.committed.fetch_add(1, Ordering::SeqCst);
                    }
                    "ABORTED" => {
                        stats.aborted.fetch_add(1, Ordering::SeqCst);
                    }
                    "RESTART" => {
                        stats.restarts.fetch_add(1, Ordering::SeqCst);
                        println!("pipeline {worker} (franz-go): starting over after: {rest}");
                    }
                    _ => println!("pipeline {worker} (franz-go): {line}"),
                }
            }
        })
    };
    while !stop.load(Ordering::SeqCst) {
        if child.try_wait()?.is_some() {
            bail!("franz eos-pipeline {worker} exited before it was stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stdin);
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("franz eos-pipeline {worker} did not stop within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = reader.join();
    Ok(())
}

/// A read_committed consumer of every output partition until stopped: what it saw.
fn observe(bootstrap: String, output: String, stop: Arc<AtomicBool>) -> Result<BTreeMap<(i32, i64), String>> {
    let c = consumer(&bootstrap, "read_committed", "karst-eos-observer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&output, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut seen = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            seen.insert((m.partition(), m.offset()), String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    Ok(seen)
}

/// Every record of `topic` for `isolation`, by partition and offset: read until
/// every partition's position reaches its end (for read_committed, the last stable
/// offset, which markers may put past the last record), or nothing came for 3 s.
fn read_all(bootstrap: &str, topic: &str, isolation: &str) -> Result<BTreeMap<(i32, i64), String>> {
    let c = consumer(bootstrap, isolation, "karst-eos-reader")?;
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (_, high) = c.fetch_watermarks(topic, p, TIMEOUT)?;
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut last = Instant::now();
    loop {
        ensure!(Instant::now() < deadline, "reading {topic} ({isolation}) to its end timed out");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.insert((m.partition(), m.offset()), String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            last = Instant::now();
            continue;
        }
        let positions = c.position()?;
        let at_end = (0..PARTITIONS).all(|p| {
            matches!(positions.find_partition(topic, p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= ends[&p]) || ends[&p] == 0
        });
        if at_end || last.elapsed() > Duration::from_secs(3) {
            return Ok(out);
        }
    }
}

/// The group's committed offsets on `input`.
fn committed(bootstrap: &str, group: &str, input: &str) -> Result<BTreeMap<i32, i64>> {
    let c = consumer(bootstrap, "read_committed", group)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(input, p);
    }
    let got = c.committed_offsets(tpl, TIMEOUT)?;
    Ok((0..PARTITIONS)
        .map(|p| {
            (p, got.find_partition(input, p).and_then(|e| if let Offset::Offset(o) = e.offset() { Some(o) } else { None }).unwrap_or(-1))
        })
        .collect())
}

// On demand, not in the default run: its faults hinge on 3 s sessions that a
// loaded two-core CI machine running other clusters alongside can stretch, and a
// run of ten rounds takes minutes. What it found is fixed, most of it kept by focused
// tests (see the README). Run it with
// `KARST_EOS_ROUNDS=10 cargo nextest run -p karst-tests --run-ignored all -E 'test(exactly_once)'`.
#[test]
#[ignore = "on demand: timing-sensitive faults, minutes per run; see the comment above"]
fn transactions_stay_exactly_once_through_coordinator_and_leader_faults() -> Result<()> {
    let mut brokers = karst_tests::cluster::start_cluster(3, |_| {
        [
            "--set",
            "broker.session.timeout.ms=3000",
            "--set",
            "replica.lag.time.max.ms=3000",
            "--set",
            "group.initial.rebalance.delay.ms=0",
            "--set",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
        ]
        .map(String::from)
        .to_vec()
    })?;
    let bootstrap = bootstrap_of(&brokers);
    let (input, output, group) = (unique_topic("eos-in"), unique_topic("eos-out"), unique_topic("eos-group"));
    let mut admin = RawClient::connect(brokers[0].addr())?;
    for t in [&input, &output] {
        admin.create_replicated(t, PARTITIONS, 3, &[("min.insync.replicas", "2")])?;
    }
    leaders(&brokers, &input)?;
    leaders(&brokers, &output)?;

    // The input: written all along by an idempotent acks=all producer, so every
    // round has records to move; what it was told is acknowledged is recorded.
    let feeding = Arc::new(AtomicBool::new(true));
    let feeder = {
        let (bs, topic, on) = (bootstrap.clone(), input.clone(), feeding.clone());
        std::thread::spawn(move || feed(bs, topic, on))
    };

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let franz = std::env::var("KARST_EOS_CLIENT").is_ok_and(|c| c == "franz");
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let pipe = Pipe {
                bootstrap: bootstrap.clone(),
                input: input.clone(),
                output: output.clone(),
                group: group.clone(),
                worker: w,
                stop: stop.clone(),
                stats: stats.clone(),
            };
            std::thread::spawn(move || if franz { go_pipeline(pipe) } else { pipeline(pipe) })
        })
        .collect();
    let observer_stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (bs, o, st) = (bootstrap.clone(), output.clone(), observer_stop.clone());
        std::thread::spawn(move || observe(bs, o, st))
    };
    let progress = |stats: &Stats, more: usize| -> Result<()> {
        let before = stats.committed.load(Ordering::SeqCst);
        let started = Instant::now();
        wait_for("pipelines committing", TIMEOUT, || (stats.committed.load(Ordering::SeqCst) >= before + more).then_some(()))
            .with_context(|| stats.stages())?;
        println!("  {more} more transactions committed in {:.1?}", started.elapsed());
        Ok(())
    };
    progress(&stats, 3)?;
    // While a killed node is down the pipelines must go on, but librdkafka's
    // send_offsets_to_transaction can wait for the node to come back: it keeps the
    // group coordinator it last used in a cache and, when that broker is down, waits
    // for a broker state change that a dead broker never makes, ignoring its timeout
    // (librdkafka issues 5456 and 5511, open in 2.12 to 2.14). So with librdkafka a
    // killed node comes back after DOWN_AT_MOST without progress (said in the output),
    // and the pipelines must then commit; franz-go must commit while it is down.
    let while_down = |stats: &Stats, what: &str| -> Result<()> {
        if franz {
            return progress(stats, 2).with_context(|| format!("committing after {what} died"));
        }
        let before = stats.committed.load(Ordering::SeqCst);
        if wait_for("pipelines committing", DOWN_AT_MOST, || (stats.committed.load(Ordering::SeqCst) >= before + 2).then_some(())).is_err()
        {
            println!("  no progress in {DOWN_AT_MOST:?} while {what} is down ({}); restarting it", stats.stages());
        } else {
            println!("  2 more transactions committed while {what} is down");
        }
        Ok(())
    };

    let rounds: usize = std::env::var("KARST_EOS_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let nemesis = (|| -> Result<()> {
        for round in 0..rounds {
            println!("nemesis round {} of {rounds}", round + 1);
            // 1. kill -9 the transaction coordinator of pipeline 0, restart it.
            let node = coordinator(&brokers, &format!("{group}-w0"), 1)?;
            println!("kill -9 node {node}, the transaction coordinator of pipeline 0");
            let i = (node - 1) as usize;
            brokers[i].kill9()?;
            while_down(&stats, "the transaction coordinator")?;
            brokers[i].restart()?;
            progress(&stats, 2).context("committing after the transaction coordinator's restart")?;
            whole(&brokers)?;
            // 2. pause the group coordinator past the broker session, resume it.
            let node = coordinator(&brokers, &group, 0)?;
            println!("pause node {node}, the group coordinator, for 5 s");
            let i = (node - 1) as usize;
            brokers[i].signal("STOP")?;
            std::thread::sleep(Duration::from_secs(5)); // the fault's duration
            brokers[i].signal("CONT")?;
            progress(&stats, 2).context("committing after the group coordinator's pause")?;
            whole(&brokers)?;
            // 3. kill -9 the leader of output partition 0, restart it.
            let node = leaders(&brokers, &output)?[&0];
            println!("kill -9 node {node}, the leader of output partition 0");
            let i = (node - 1) as usize;
            brokers[i].kill9()?;
            while_down(&stats, "an output leader")?;
            brokers[i].restart()?;
            progress(&stats, 2).context("committing after the output leader's restart")?;
            whole(&brokers)?;
            // 4. pause the transaction coordinator of pipeline 1 for a second.
            let node = coordinator(&brokers, &format!("{group}-w1"), 1)?;
            println!("pause node {node}, the transaction coordinator of pipeline 1, for 1 s");
            let i = (node - 1) as usize;
            brokers[i].signal("STOP")?;
            std::thread::sleep(Duration::from_secs(1)); // the fault's duration
            brokers[i].signal("CONT")?;
            progress(&stats, 2).context("committing after the coordinator's pause")?;
            whole(&brokers)?;
        }
        Ok(())
    })();
    // The input stops; the pipelines finish it.
    feeding.store(false, Ordering::SeqCst);
    let (sent, attempted) = feeder.join().map_err(|_| anyhow!("the input producer panicked"))??;
    let finished = nemesis.and_then(|()| {
        let c = consumer(&bootstrap, "read_uncommitted", "karst-eos-reader")?;
        let ends: BTreeMap<i32, i64> =
            (0..PARTITIONS).map(|p| c.fetch_watermarks(&input, p, TIMEOUT).map(|(_, high)| (p, high))).collect::<Result<_, _>>()?;
        wait_for("the group's offsets at the input's end", Duration::from_secs(180), || {
            committed(&bootstrap, &group, &input).ok().filter(|c| *c == ends).map(|_| ())
        })?;
        Ok(ends)
    });
    if finished.is_err() {
        println!("diagnosis: {}", stats.stages());
        diagnose(&brokers, &group, &input, &output);
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().map_err(|_| anyhow!("pipeline panicked"))??;
    }
    observer_stop.store(true, Ordering::SeqCst);
    let seen = observer.join().map_err(|_| anyhow!("observer panicked"))??;
    if finished.is_err() {
        for b in brokers.iter_mut() {
            b.keep_files();
        }
    }
    let ends = finished?;

    // The checker.
    let input_back = read_all(&bootstrap, &input, "read_committed")?;
    let input_values: BTreeSet<&str> = input_back.values().map(String::as_str).collect();
    let lost_input = sent.iter().filter(|v| !input_values.contains(v.as_str())).count();
    let out = read_all(&bootstrap, &output, "read_committed")?;
    let everything = read_all(&bootstrap, &output, "read_uncommitted")?;
    // Each input value's copies in the output: (partition, offset, transaction tag).
    let mut copies: BTreeMap<&str, Vec<(i32, i64, &str)>> = BTreeMap::new();
    let mut txns: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for ((partition, offset), v) in &out {
        let mut parts = v.split('|');
        let (Some(orig), Some(tag), Some(n)) = (parts.next(), parts.next(), parts.next()) else { bail!("malformed output {v}") };
        copies.entry(orig).or_default().push((*partition, *offset, tag));
        let e = txns.entry(tag).or_insert((0, n.parse().unwrap_or(0)));
        e.0 += 1;
    }
    let lost = sent.iter().filter(|v| !copies.contains_key(v.as_str())).count();
    let duplicated = copies.values().filter(|c| c.len() > 1).count();
    // Which transactions a duplicate is in tells the pipelines' story apart from the broker's.
    for (orig, c) in copies.iter().filter(|(_, c)| c.len() > 1).take(3) {
        println!("checker: {orig} is in the output {} times: (partition, offset, transaction) {c:?}", c.len());
    }
    for v in sent.iter().filter(|v| !copies.contains_key(v.as_str())).take(3) {
        println!("checker: acknowledged input {v} is not in the output");
    }
    // A record whose acknowledgement was lost may be in the input: not unexpected.
    let unexpected = copies.keys().filter(|v| !attempted.contains(**v)).count();
    let torn = txns.values().filter(|(got, n)| got != n).count();
    let aborted_reads = seen.iter().filter(|(at, v)| out.get(at) != Some(*v)).count();
    let offsets = committed(&bootstrap, &group, &input)?;
    println!(
        "checker: input {} (acknowledged {}, lost {lost_input}); output read_committed {} in {} transactions, read_uncommitted {}; \
         lost {lost}, duplicated {duplicated}, unexpected {unexpected}, torn transactions {torn}; \
         read during the faults {}, aborted reads {aborted_reads}; committed offsets {offsets:?}; \
         pipelines: {} transactions committed, {} restarts",
        input_back.len(),
        sent.len(),
        out.len(),
        txns.len(),
        everything.len(),
        seen.len(),
        stats.committed.load(Ordering::SeqCst),
        stats.restarts.load(Ordering::SeqCst),
    );
    let anomalies = lost_input + lost + duplicated + unexpected + torn + aborted_reads + usize::from(offsets != ends);
    if anomalies > 0 {
        for b in brokers.iter_mut() {
            b.keep_files();
        }
        bail!("{anomalies} anomalies (see the checker line above)");
    }
    ensure!(!seen.is_empty(), "the observer saw nothing");
    ensure!(sent.len() > 1000, "only {} input records were acknowledged", sent.len());
    Ok(())
}
