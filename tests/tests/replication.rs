//! Replication factor 3 across three `karst` processes: acks=all writes survive
//! kill -9 and SIGSTOP of leaders, and a checker proves every acknowledged record
//! is still there, at its offset, once; replicas end byte-identical.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use karst_tests::proxy::Proxy;
use karst_tests::raw::RawClient;
use karst_tests::{unique_topic, wait_for, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

#[path = "replication/groups.rs"]
mod groups;
#[path = "replication/secure.rs"]
mod secure;

const TIMEOUT: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 6;
/// Records sent per second: a steady load that leaves the machine's two cores room
/// for three brokers, their failovers and the other tests.
const RATE: f64 = 8_000.0;
/// Records in flight per partition: a partition refusing acks=all for a while (an
/// isolated leader) holds back only its own records, not the others'.
const MAX_PENDING_PER_PARTITION: usize = 4_000;

fn start_cluster() -> Result<Vec<Broker>> {
    start_nodes(&[None, None, None])
}

/// Three brokers whose followers fetch through a proxy in front of each leader, so
/// a test can cut replication links while clients and the controllers still reach it.
fn start_cluster_with_proxies() -> Result<(Vec<Broker>, Vec<Proxy>)> {
    let proxies: Vec<Proxy> = (0..3).map(|_| Proxy::start()).collect::<Result<_>>()?;
    let brokers = start_nodes(&proxies.iter().map(|p| Some(p.addr())).collect::<Vec<_>>())?;
    for (b, p) in brokers.iter().zip(&proxies) {
        p.set_target(b.addr());
    }
    Ok((brokers, proxies))
}

fn start_nodes(replica_listeners: &[Option<std::net::SocketAddr>]) -> Result<Vec<Broker>> {
    start_nodes_with(replica_listeners, &[])
}

/// [`start_nodes`] with further `--set` settings for every node.
fn start_nodes_with(replica_listeners: &[Option<std::net::SocketAddr>], settings: &[&str]) -> Result<Vec<Broker>> {
    karst_tests::cluster::start_cluster(replica_listeners.len(), |i| {
        let mut args: Vec<String> =
            ["--set", "broker.session.timeout.ms=3000", "--set", "replica.lag.time.max.ms=3000"].map(String::from).to_vec();
        if let Some(r) = replica_listeners[i] {
            args.extend(["--set".to_string(), format!("replica.listener={r}")]);
        }
        args.extend(settings.iter().flat_map(|s| ["--set".to_string(), s.to_string()]));
        args
    })
}

fn metadata(broker: &Broker, topic: &str) -> Result<MetadataResponse> {
    let mut c = RawClient::connect(broker.addr())?;
    let version = c.version_for(ApiKey::Metadata)?.min(9);
    let t = MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))));
    c.send(&MetadataRequest::default().with_topics(Some(vec![t])).with_allow_auto_topic_creation(false), version)
}

/// partition → (leader, ISR size), as `broker` reports it.
fn layout(broker: &Broker, topic: &str) -> Result<BTreeMap<i32, (i32, usize)>> {
    let resp = metadata(broker, topic)?;
    let t = resp.topics.first().ok_or_else(|| anyhow!("no topic"))?;
    Ok(t.partitions.iter().map(|p| (p.partition_index, (p.leader_id.0, p.isr_nodes.len()))).collect())
}

fn create_rf3(broker: &Broker, topic: &str) -> Result<()> {
    RawClient::connect(broker.addr())?.create_replicated(topic, PARTITIONS, 3, &[("min.insync.replicas", "2")])
}

fn live(brokers: &[Broker]) -> impl Iterator<Item = &Broker> {
    brokers.iter().filter(|b| b.pid().is_some())
}

/// Waits until every live broker sees all partitions led with a full ISR of `isr`.
fn settled(brokers: &[Broker], topic: &str, isr: usize) -> Result<BTreeMap<i32, (i32, usize)>> {
    wait_for("partitions led with a full ISR", TIMEOUT, || {
        let views: Vec<_> = live(brokers).filter_map(|b| layout(b, topic).ok()).collect();
        let ok = !views.is_empty()
            && views.iter().all(|v| v == &views[0])
            && views[0].len() == PARTITIONS as usize
            && views[0].values().all(|(l, n)| *l > 0 && *n == isr);
        ok.then(|| views[0].clone())
    })
}

fn bootstrap_of(brokers: &[Broker]) -> String {
    brokers.iter().map(|b| b.bootstrap()).collect::<Vec<_>>().join(",")
}

/// An acks=all producer running until finished, recording what was acknowledged.
struct Load {
    acked: Acked,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    producer: std::thread::JoinHandle<Result<u64>>,
}

impl Load {
    fn start(brokers: &[Broker], topic: &str) -> Load {
        Load::start_at(brokers, topic, RATE)
    }

    /// [`Load::start`] at `rate` records a second.
    fn start_at(brokers: &[Broker], topic: &str, rate: f64) -> Load {
        let acked: Acked = Arc::default();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let producer = {
            let (t, s, a, e, bs) = (topic.to_string(), stop.clone(), acked.clone(), errors.clone(), bootstrap_of(brokers));
            std::thread::spawn(move || produce_until(bs, t, rate, s, a, e))
        };
        Load { acked, errors, stop, producer }
    }

    fn acked_at_least(&self, n: usize) -> Result<()> {
        wait_for("acknowledgements", TIMEOUT, || (self.acked.lock().unwrap().len() >= n).then_some(())).with_context(|| {
            let errs = self.errors.lock().unwrap();
            format!("{} producer errors, the first: {:?}", errs.len(), errs.iter().take(3).collect::<Vec<_>>())
        })
    }

    /// Stops producing; returns what was sent, acknowledged and refused.
    fn finish(self) -> Result<(u64, AckedRecords, Vec<String>)> {
        self.stop.store(true, Ordering::SeqCst);
        let sent = self.producer.join().map_err(|_| anyhow!("producer panicked"))??;
        let acked = self.acked.lock().unwrap().clone();
        let errs = self.errors.lock().unwrap().clone();
        Ok((sent, acked, errs))
    }
}

/// Acknowledged records.
#[derive(Debug, Clone, Default)]
struct AckedRecords {
    /// (partition, offset) → value.
    at: BTreeMap<(i32, i64), String>,
    /// (partition, value) acknowledged without an offset: an idempotent producer whose
    /// response to a request was lost learns that request was stored when a later one
    /// is acknowledged, and reports its records with offset -1001 (librdkafka's
    /// "persisted, offset unknown").
    unknown_offset: Vec<(i32, String)>,
}

impl AckedRecords {
    fn len(&self) -> usize {
        self.at.len() + self.unknown_offset.len()
    }

    fn insert(&mut self, partition: i32, offset: i64, value: String) {
        if offset < 0 {
            self.unknown_offset.push((partition, value));
        } else {
            self.at.insert((partition, offset), value);
        }
    }
}

/// librdkafka's log lines, timestamped, on stderr.
struct StderrLog;

impl rdkafka::ClientContext for StderrLog {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!("{}.{:03} librdkafka {level:?} {fac}: {message}", now.as_secs(), now.subsec_millis());
    }
}

/// What the producers had acknowledged.
type Acked = Arc<Mutex<AckedRecords>>;

fn produce_until(
    bootstrap: String,
    topic: String,
    rate: f64,
    stop: Arc<AtomicBool>,
    acked: Acked,
    errors: Arc<Mutex<Vec<String>>>,
) -> Result<u64> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "120000")
        .set("linger.ms", "2")
        .set("topic.metadata.refresh.interval.ms", "500");
    // KARST_CHECKER_DEBUG=eos (librdkafka's debug contexts) prints the producer's own
    // account of its idempotence state (epoch bumps and why) to the test's stderr.
    if let Ok(contexts) = std::env::var("KARST_CHECKER_DEBUG") {
        config.set("debug", contexts).set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    let producer: FutureProducer<StderrLog> = config.create_with_context(StderrLog)?;
    let mut sent = 0u64;
    let started = Instant::now();
    rt.block_on(async {
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut in_flight = [0usize; PARTITIONS as usize];
        let mut next_partition = 0usize;
        use futures::StreamExt;
        let record = |in_flight: &mut [usize], (partition, value, r): (usize, String, Result<_, String>)| {
            in_flight[partition] -= 1;
            match r {
                Ok((p, offset)) => {
                    acked.lock().unwrap().insert(p, offset, value);
                }
                Err(e) => errors.lock().unwrap().push(format!("{value}: {e}")),
            }
        };
        while !stop.load(Ordering::SeqCst) {
            let due = (rate * started.elapsed().as_secs_f64()) as u64 + 1;
            while sent < due && !stop.load(Ordering::SeqCst) {
                // Round robin over the partitions that have room.
                let Some(partition) = (0..in_flight.len())
                    .map(|i| (next_partition + i) % in_flight.len())
                    .find(|p| in_flight[*p] < MAX_PENDING_PER_PARTITION)
                else {
                    break;
                };
                let value = format!("v-{sent}");
                match producer.send_result(FutureRecord::<(), _>::to(&topic).partition(partition as i32).payload(&value)) {
                    Ok(f) => {
                        pending.push(async move {
                            let r = match f.await {
                                Ok(Ok(d)) => Ok((d.partition, d.offset)),
                                Ok(Err((e, _))) => Err(e.to_string()),
                                Err(_) => Err("delivery future cancelled".to_string()),
                            };
                            (partition, value, r)
                        });
                        in_flight[partition] += 1;
                        next_partition = partition + 1;
                        sent += 1;
                    }
                    Err(_) => break, // queue full: wait for acknowledgements first
                }
            }
            let next = tokio::time::timeout(Duration::from_millis(2), pending.next());
            if let Ok(Some(done)) = next.await {
                record(&mut in_flight, done);
            }
        }
        while let Some(done) = pending.next().await {
            record(&mut in_flight, done);
        }
    });
    Ok(sent)
}

/// A consumer reading every partition while the nemesis runs: (partition, offset) →
/// value of everything it was ever given.
fn read_during(bootstrap: String, topic: String, stop: Arc<AtomicBool>) -> Result<BTreeMap<(i32, i64), String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", unique_topic("reader"))
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut seen = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            seen.insert((m.partition(), m.offset()), String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        }
    }
    Ok(seen)
}

/// Every record of every partition, read from the leaders: (partition, offset) → value.
fn read_back(brokers: &[Broker], topic: &str, acked: &AckedRecords) -> Result<BTreeMap<(i32, i64), Vec<String>>> {
    let bootstrap = live(brokers).map(|b| b.bootstrap()).collect::<Vec<_>>().join(",");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", unique_topic("checker"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    // A new leader learns the high watermark from its followers' next fetches: wait
    // until each partition's covers what was acknowledged on it.
    let mut ends = BTreeMap::new();
    for p in 0..PARTITIONS {
        let want = acked.at.range((p, i64::MIN)..=(p, i64::MAX)).next_back().map_or(0, |((_, o), _)| o + 1);
        let high = wait_for("the high watermark to cover the acknowledged records", TIMEOUT, || {
            consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).ok().map(|(_, h)| h).filter(|h| *h >= want)
        })?;
        ends.insert(p, high);
    }
    let mut got: BTreeMap<(i32, i64), Vec<String>> = BTreeMap::new();
    let mut next: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let deadline = Instant::now() + TIMEOUT;
    while next.iter().any(|(p, n)| *n < ends[p]) && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            got.entry((m.partition(), m.offset())).or_default().push(value);
            next.insert(m.partition(), m.offset() + 1);
        }
    }
    ensure!(next.iter().all(|(p, n)| *n >= ends[p]), "read up to {next:?}, high watermarks {ends:?}");
    Ok(got)
}

/// A partition's `.log` bytes on one broker, segments in order.
fn log_bytes(data_dir: &Path, topic: &str, partition: i32) -> Result<Vec<u8>> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        out.extend(std::fs::read(f)?);
    }
    Ok(out)
}

#[test]
fn acknowledged_writes_survive_leader_kills_pauses_and_cut_links() -> Result<()> {
    let (mut brokers, proxies) = start_cluster_with_proxies()?;
    let topic = unique_topic("replicated");
    create_rf3(&brokers[0], &topic)?;
    settled(&brokers, &topic, 3)?;

    let load = Load::start(&brokers, &topic);
    let reader = {
        let (t, s, bs) = (topic.clone(), load.stop.clone(), bootstrap_of(&brokers));
        std::thread::spawn(move || read_during(bs, t, s))
    };
    let acked = &load.acked;
    let acked_at_least = |n: usize| load.acked_at_least(n);
    acked_at_least(500)?;

    // KARST_NEMESIS_ROUNDS repeats the whole sequence (default once, about half a minute).
    let rounds: usize = std::env::var("KARST_NEMESIS_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let nemesis = (|| -> Result<()> {
        for round in 0..rounds {
            println!("nemesis round {} of {rounds}", round + 1);
            // Nemesis 1: freeze both followers of partition 2's leader for a second (a
            // cut-off leader), kill -9 that leader, thaw the followers. A leader that acked
            // what its followers never fetched would lose those records here.
            let lead = settled(&brokers, &topic, 3)?;
            let cut_off = (lead[&2].0 - 1) as usize;
            let others: Vec<usize> = (0..3).filter(|i| *i != cut_off).collect();
            for i in &others {
                brokers[*i].signal("STOP")?;
            }
            std::thread::sleep(Duration::from_secs(1)); // the fault's duration, not a wait for a condition
            brokers[cut_off].kill9()?;
            for i in &others {
                brokers[*i].signal("CONT")?;
            }
            settled(&brokers, &topic, 2).context("new leaders after the cut-off leader died")?;
            let before = acked.lock().unwrap().len();
            acked_at_least(before + 300)?;
            brokers[cut_off].restart()?;
            proxies[cut_off].set_target(brokers[cut_off].addr());
            settled(&brokers, &topic, 3).context("the cut-off broker back in every ISR")?;

            // Nemesis 1b: cut the replication links into partition 3's leader for longer
            // than replica.lag.time.max.ms. Its followers fall out of the ISR; below
            // min.insync.replicas its partitions refuse acks=all until the link heals.
            // With every leadership on the isolated broker nothing could be acknowledged
            // while it is cut off: wait for preferred-leader election to spread them.
            let lead = wait_for("leaders on every broker", TIMEOUT, || {
                let lead = settled(&brokers, &topic, 3).ok()?;
                (lead.values().map(|(l, _)| *l).collect::<BTreeSet<_>>().len() == 3).then_some(lead)
            })?;
            let isolated = (lead[&3].0 - 1) as usize;
            proxies[isolated].cut();
            wait_for("the isolated leader's ISRs to shrink", TIMEOUT, || {
                let view = layout(&brokers[isolated], &topic).ok()?;
                view.values().any(|(l, n)| *l == isolated as i32 + 1 && *n < 3).then_some(())
            })?;
            let before = acked.lock().unwrap().len();
            acked_at_least(before + 300).context("producing on to the other leaders while links are cut")?;
            proxies[isolated].heal();
            settled(&brokers, &topic, 3).context("ISRs whole again after the link healed")?;

            // Nemesis 2: kill -9 the leader of partition 0 and bring it back; then pause the
            // leader of partition 1 past its session, and resume it.
            let lead = settled(&brokers, &topic, 3)?;
            let victim = (lead[&0].0 - 1) as usize;
            brokers[victim].kill9()?;
            let before = acked.lock().unwrap().len();
            acked_at_least(before + 500).context("producing on after kill -9 of a leader")?;
            brokers[victim].restart()?;
            proxies[victim].set_target(brokers[victim].addr());
            settled(&brokers, &topic, 3).context("the killed broker back in every ISR")?;

            let lead = settled(&brokers, &topic, 3)?;
            let paused = (lead[&1].0 - 1) as usize;
            brokers[paused].signal("STOP")?;
            let before = acked.lock().unwrap().len();
            let during = acked_at_least(before + 500).context("producing on while a leader is paused");
            brokers[paused].signal("CONT")?;
            during?;
            settled(&brokers, &topic, 3).context("the paused broker back in every ISR")?;
        }
        Ok(())
    })();
    if nemesis.is_err() {
        // A cluster that never settled is a finding too: keep what the brokers logged.
        for b in brokers.iter_mut() {
            b.keep_files();
        }
    }
    nemesis?;
    let before = acked.lock().unwrap().len();
    acked_at_least(before + 300)?;
    let (sent, acked, errs) = load.finish()?;
    let read_live = reader.join().map_err(|_| anyhow!("reader panicked"))??;
    let got = check(&mut brokers, &topic, sent, &acked, &errs)?;
    // Nothing a consumer was given may vanish or change afterwards.
    let vanished = read_live.iter().filter(|(at, v)| got.get(at).is_none_or(|vs| vs.len() != 1 || vs[0] != **v)).count();
    println!("checker: read during the faults {}, vanished since {vanished}", read_live.len());
    ensure!(!read_live.is_empty(), "the reader saw nothing");
    ensure!(vanished == 0, "{vanished} records a consumer read were later gone or different");

    // Replicas agree byte for byte once every broker has stopped cleanly.
    let divergent = stop_and_compare_replicas(&mut brokers, &topic)?;
    println!("checker: divergent partitions {divergent:?}");
    ensure!(divergent.is_empty(), "replicas differ for partitions {divergent:?}");
    Ok(())
}

/// Stops every broker cleanly and compares each partition's log across them: the
/// partitions whose replicas differ.
fn stop_and_compare_replicas(brokers: &mut [Broker], topic: &str) -> Result<BTreeSet<i32>> {
    for b in brokers.iter_mut() {
        b.terminate(TIMEOUT)?;
    }
    let mut divergent = BTreeSet::new();
    for p in 0..PARTITIONS {
        let copies: Vec<Vec<u8>> = brokers.iter().map(|b| log_bytes(b.data_dir(), topic, p)).collect::<Result<_>>()?;
        if copies.iter().any(|c| *c != copies[0]) {
            divergent.insert(p);
        }
    }
    Ok(divergent)
}

/// The checker: every acknowledged record is read back at its offset, once, with its
/// value; no value appears twice. Prints the counts.
/// On failure the brokers' whole logs and data are kept, and each duplicated value's
/// copies are described by the batches holding them.
fn check(
    brokers: &mut [Broker],
    topic: &str,
    sent: u64,
    acked: &AckedRecords,
    errs: &[String],
) -> Result<BTreeMap<(i32, i64), Vec<String>>> {
    let got = read_back(brokers, topic, acked)?;
    let mut lost = 0;
    let mut moved = 0;
    let mut samples = Vec::new();
    for ((p, off), value) in &acked.at {
        match got.get(&(*p, *off)) {
            Some(vs) if vs.len() == 1 && vs[0] == *value => {}
            other => {
                if other.is_some() {
                    moved += 1
                } else {
                    lost += 1
                }
                if samples.len() < 8 {
                    samples.push(format!("{p}/{off} acked {value:?} read {other:?}"));
                }
            }
        }
    }
    if !errs.is_empty() {
        println!("checker: first producer errors: {:?}", &errs[..errs.len().min(5)]);
    }
    let mut seen = BTreeMap::<&str, usize>::new();
    for vs in got.values() {
        for v in vs {
            *seen.entry(v.as_str()).or_default() += 1;
        }
    }
    let duplicated = seen.values().filter(|n| **n > 1).count();
    // Records acknowledged without an offset must be in their partition, once (a value
    // read twice is counted by `duplicated` already).
    let in_partition: BTreeSet<(i32, &str)> = got.iter().flat_map(|((p, _), vs)| vs.iter().map(move |v| (*p, v.as_str()))).collect();
    for (p, value) in &acked.unknown_offset {
        if !in_partition.contains(&(*p, value.as_str())) {
            lost += 1;
            if samples.len() < 8 {
                samples.push(format!("{p}/? acked {value:?} without an offset, not read"));
            }
        }
    }
    if !samples.is_empty() {
        println!("checker: first differences: {samples:?}");
    }
    println!(
        "checker: sent {sent}, acked {} ({} without an offset), read {}, lost {lost}, wrong value {moved}, duplicated {duplicated}, producer errors {}",
        acked.len(),
        acked.unknown_offset.len(),
        got.len(),
        errs.len()
    );
    if lost == 0 && moved == 0 && duplicated == 0 {
        return Ok(got);
    }
    if duplicated > 0 {
        let mut at = BTreeMap::<&str, Vec<(i32, i64)>>::new();
        for (pos, vs) in &got {
            for v in vs {
                at.entry(v.as_str()).or_default().push(*pos);
            }
        }
        for (value, positions) in at.iter().filter(|(_, ps)| ps.len() > 1).take(12) {
            println!("checker: {value} stored at {positions:?}");
            for (p, off) in positions {
                println!("    {p}/{off}: {}", batch_holding(brokers, topic, *p, *off));
            }
        }
    }
    for b in brokers.iter_mut() {
        b.keep_files();
    }
    Err(anyhow!("lost {lost}, wrong {moved}, duplicated {duplicated}"))
}

/// The header of the batch holding `offset` on each broker: who appended it, under
/// which leader epoch, for which producer id, epoch and sequences.
fn batch_holding(brokers: &[Broker], topic: &str, partition: i32, offset: i64) -> String {
    let mut out = Vec::new();
    for (i, b) in brokers.iter().enumerate() {
        let Ok(bytes) = log_bytes(b.data_dir(), topic, partition) else { continue };
        let mut rest = &bytes[..];
        while let Ok(h) = karst_batch::BatchHeader::parse(rest) {
            if (h.base_offset..=h.last_offset()).contains(&offset) {
                out.push(format!(
                    "broker {}: batch {}..{} leader epoch {} producer {} epoch {} seq {}..{}",
                    i + 1,
                    h.base_offset,
                    h.last_offset(),
                    h.partition_leader_epoch,
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                    h.last_sequence()
                ));
                break;
            }
            let Some(next) = rest.get(h.total_len()..) else { break };
            rest = next;
        }
    }
    out.join("; ")
}

#[test]
fn a_rolling_restart_under_load_loses_nothing_and_raises_no_error() -> Result<()> {
    let mut brokers = start_cluster()?;
    let topic = unique_topic("rolling");
    create_rf3(&brokers[0], &topic)?;
    settled(&brokers, &topic, 3)?;
    let load = Load::start(&brokers, &topic);
    let acked = &load.acked;
    let acked_at_least = |n: usize| load.acked_at_least(n);
    acked_at_least(300)?;
    for i in 0..brokers.len() {
        // SIGTERM: a controlled shutdown hands leadership to the other in-sync replicas.
        let stopped = Instant::now();
        brokers[i].terminate(TIMEOUT)?;
        settled(&brokers, &topic, 2).with_context(|| format!("leaders after stopping broker {}", i + 1))?;
        println!("rolling restart: broker {} stopped, leaders moved within {:?}", i + 1, stopped.elapsed());
        let before = acked.lock().unwrap().len();
        acked_at_least(before + 200).with_context(|| format!("producing while broker {} is down", i + 1))?;
        brokers[i].restart()?;
        settled(&brokers, &topic, 3).with_context(|| format!("broker {} back in every ISR", i + 1))?;
    }
    let before = acked.lock().unwrap().len();
    acked_at_least(before + 200)?;
    let (sent, acked, errs) = load.finish()?;
    check(&mut brokers, &topic, sent, &acked, &errs)?;
    ensure!(errs.is_empty(), "the producer saw errors it could not retry: {:?}", &errs[..errs.len().min(5)]);
    Ok(())
}

/// FindCoordinator for `group` through `broker`: the coordinator's node id, once there is one.
fn coordinator_of(broker: &Broker, group: &str) -> Option<i32> {
    use kafka_protocol::messages::FindCoordinatorRequest;
    let mut c = RawClient::connect(broker.addr()).ok()?;
    let version = c.version_for(ApiKey::FindCoordinator).ok()?.min(3);
    let resp = c.send(&FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string())), version).ok()?;
    (resp.error_code == 0 && resp.node_id.0 > 0).then_some(resp.node_id.0)
}

/// Reads `group`'s records of `topic` until `want` arrived, committing after each poll batch.
fn consume_in_group(bootstrap: &str, group: &str, topic: &str, want: usize) -> Result<Vec<(i32, i64)>> {
    use rdkafka::consumer::CommitMode;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while got.len() < want && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            got.push((m.partition(), m.offset()));
            if got.len() == want {
                consumer.commit_message(&m, CommitMode::Sync)?;
            }
        }
    }
    ensure!(got.len() == want, "group {group} read {} of {want}", got.len());
    // Commit every partition's position, not only the last message's.
    consumer.commit_consumer_state(CommitMode::Sync)?;
    consumer.unsubscribe();
    Ok(got)
}

#[test]
fn a_consumer_group_survives_its_coordinators_broker_being_killed() -> Result<()> {
    let mut brokers = start_cluster()?;
    let topic = unique_topic("grouped");
    create_rf3(&brokers[0], &topic)?;
    settled(&brokers, &topic, 3)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let bootstrap = brokers.iter().map(|b| b.bootstrap()).collect::<Vec<_>>().join(",");
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).set("acks", "all").create()?;
    rt.block_on(async {
        for i in 0..120 {
            let v = format!("g-{i}");
            let rec = FutureRecord::<(), _>::to(&topic).partition(i % PARTITIONS).payload(&v);
            producer.send(rec, Duration::from_secs(30)).await.map_err(|(e, _)| anyhow!("produce: {e}"))?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let group = unique_topic("survivor");
    let first = consume_in_group(&bootstrap, &group, &topic, 60)?;
    let coordinator = wait_for("a coordinator", TIMEOUT, || coordinator_of(&brokers[0], &group))?;
    let ci = (coordinator - 1) as usize;
    brokers[ci].kill9()?;
    let other = (ci + 1) % 3;
    let next = wait_for("another broker to coordinate the group", TIMEOUT, || {
        coordinator_of(&brokers[other], &group).filter(|c| *c != coordinator)
    })?;
    println!("group coordinator {coordinator} killed; broker {next} coordinates the group now");
    let bootstrap_live = live(&brokers).map(|b| b.bootstrap()).collect::<Vec<_>>().join(",");
    let rest = consume_in_group(&bootstrap_live, &group, &topic, 60)?;
    let firsts: BTreeSet<_> = first.iter().collect();
    let again: Vec<_> = rest.iter().filter(|r| firsts.contains(r)).collect();
    ensure!(again.is_empty(), "records committed before the kill were read again: {again:?}");
    let all: BTreeSet<_> = first.iter().chain(rest.iter()).collect();
    ensure!(all.len() == 120, "the group read {} distinct records of 120", all.len());
    Ok(())
}

#[test]
fn a_follower_behind_the_leaders_log_start_starts_over_there() -> Result<()> {
    use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
    use kafka_protocol::messages::DeleteRecordsRequest;
    let mut brokers = start_cluster()?;
    let topic = unique_topic("behind");
    create_rf3(&brokers[0], &topic)?;
    let lead = settled(&brokers, &topic, 3)?;
    let leader = (lead[&0].0 - 1) as usize;
    let follower = (leader + 1) % 3;
    brokers[follower].terminate(TIMEOUT)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", bootstrap_of(&brokers)).set("acks", "all").create()?;
    rt.block_on(async {
        for i in 0..50 {
            let v = format!("b-{i}");
            producer
                .send(FutureRecord::<(), _>::to(&topic).partition(0).payload(&v), Duration::from_secs(30))
                .await
                .map_err(|(e, _)| anyhow!("produce: {e}"))?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // The leader forgets everything below offset 40; the stopped follower has none of it.
    let mut c = RawClient::connect(brokers[leader].addr())?;
    let version = c.version_for(ApiKey::DeleteRecords)?.min(2);
    let req = DeleteRecordsRequest::default().with_timeout_ms(10_000).with_topics(vec![DeleteRecordsTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.clone())))
        .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(40)])]);
    let resp = c.send(&req, version)?;
    let low = resp.topics[0].partitions[0].low_watermark;
    ensure!(low == 40, "DeleteRecords left the log start at {low}");
    brokers[follower].restart()?;
    settled(&brokers, &topic, 3).context("the follower back in the ISR after starting over at the leader's log start")?;
    // Its copy now holds exactly the leader's records from offset 40.
    for b in brokers.iter_mut() {
        b.terminate(TIMEOUT)?;
    }
    let dir = brokers[follower].data_dir().join(format!("{topic}-0"));
    let start = std::fs::read_to_string(dir.join("log-start-offset")).context("log-start-offset")?;
    ensure!(start.lines().nth(1) == Some("40"), "follower's log start {start:?}");
    Ok(())
}

/// AlterPartitionReassignments through `broker`: partition → error code.
fn reassign(broker: &Broker, topic: &str, moves: &[(i32, Option<Vec<i32>>)]) -> Result<BTreeMap<i32, i16>> {
    use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId};
    let mut c = RawClient::connect(broker.addr())?;
    let version = c.version_for(ApiKey::AlterPartitionReassignments)?;
    let partitions = moves
        .iter()
        .map(|(p, target)| {
            ReassignablePartition::default()
                .with_partition_index(*p)
                .with_replicas(target.as_ref().map(|t| t.iter().map(|b| BrokerId(*b)).collect()))
        })
        .collect();
    let req = AlterPartitionReassignmentsRequest::default().with_timeout_ms(10_000).with_topics(vec![ReassignableTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partitions(partitions)]);
    let resp = c.send(&req, version)?;
    ensure!(resp.error_code == 0, "AlterPartitionReassignments: error {}", resp.error_code);
    Ok(resp.responses.iter().flat_map(|t| &t.partitions).map(|p| (p.partition_index, p.error_code)).collect())
}

/// ListPartitionReassignments for every partition: partition → (replicas, adding, removing).
type Ongoing = BTreeMap<i32, (Vec<i32>, Vec<i32>, Vec<i32>)>;

fn reassignments(broker: &Broker, topic: &str) -> Result<Ongoing> {
    use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
    use kafka_protocol::messages::ListPartitionReassignmentsRequest;
    let mut c = RawClient::connect(broker.addr())?;
    let req = ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000).with_topics(Some(vec![
        ListPartitionReassignmentsTopics::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_indexes((0..PARTITIONS).collect()),
    ]));
    let resp = c.send(&req, 0)?;
    ensure!(resp.error_code == 0, "ListPartitionReassignments: error {}", resp.error_code);
    let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    Ok(resp
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition_index, (ids(&p.replicas), ids(&p.adding_replicas), ids(&p.removing_replicas))))
        .collect())
}

/// partition → replicas, as `broker`'s Metadata reports them.
fn replicas(broker: &Broker, topic: &str) -> Result<BTreeMap<i32, Vec<i32>>> {
    let resp = metadata(broker, topic)?;
    let t = resp.topics.first().ok_or_else(|| anyhow!("no topic"))?;
    Ok(t.partitions.iter().map(|p| (p.partition_index, p.replica_nodes.iter().map(|b| b.0).collect())).collect())
}

#[test]
fn reassignment_moves_replicas_to_a_new_broker_under_load() -> Result<()> {
    use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
    let mut brokers = start_nodes(&[None, None, None, None])?;
    let topic = unique_topic("moved");
    // Every partition on brokers 1-3; broker 4 is the new machine.
    let original: BTreeMap<i32, Vec<i32>> = (0..PARTITIONS).map(|p| (p, (0..3).map(|i| (p + i) % 3 + 1).collect())).collect();
    {
        let mut c = RawClient::connect(brokers[0].addr())?;
        let version = c.version_for(ApiKey::CreateTopics)?.min(5);
        let t = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.clone())))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(
                original
                    .iter()
                    .map(|(p, rs)| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(*p)
                            .with_broker_ids(rs.iter().map(|b| kafka_protocol::messages::BrokerId(*b)).collect())
                    })
                    .collect(),
            )
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("min.insync.replicas"))
                .with_value(Some(StrBytes::from_static_str("2")))]);
        let resp = c.send(&CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000), version)?;
        ensure!(resp.topics[0].error_code == 0, "CreateTopics with assignments: error {}", resp.topics[0].error_code);
    }
    settled(&brokers, &topic, 3)?;
    ensure!(replicas(&brokers[3], &topic)? == original);

    // Refusals carry Kafka's codes and change nothing.
    let codes = reassign(&brokers[1], &topic, &[(0, Some(vec![1, 2, 9])), (1, None), (99, Some(vec![1, 2, 3]))])?;
    ensure!(codes == BTreeMap::from([(0, 39), (1, 85), (99, 3)]), "refusals answered {codes:?}");
    ensure!(reassignments(&brokers[1], &topic)?.is_empty(), "a refused move is listed");

    let load = Load::start(&brokers, &topic);
    load.acked_at_least(500)?;

    // A move to a broker that cannot catch up (paused) stays in progress and can be cancelled.
    brokers[3].signal("STOP")?;
    let target0 = vec![4, 2, 3];
    let codes = wait_for("the move of partition 0 accepted", TIMEOUT, || {
        reassign(&brokers[1], &topic, &[(0, Some(target0.clone()))]).ok().filter(|c| c[&0] == 0)
    })?;
    ensure!(codes[&0] == 0);
    // Every broker's view of the metadata catches up on its own; wait for the one asked.
    let in_progress = (vec![4, 2, 3, 1], vec![4], vec![1]);
    wait_for("the move listed as in progress", TIMEOUT, || {
        (reassignments(&brokers[2], &topic).ok()?.get(&0) == Some(&in_progress)).then_some(())
    })?;
    ensure!(reassign(&brokers[1], &topic, &[(0, None)])?[&0] == 0, "cancel refused");
    // Kafka's order after a cancel: the replicas the move kept, then the ones it would have dropped.
    wait_for("the cancelled move gone, the replicas restored", TIMEOUT, || {
        (reassignments(&brokers[0], &topic).ok()?.is_empty() && replicas(&brokers[0], &topic).ok()?[&0] == vec![2, 3, 1]).then_some(())
    })?;
    brokers[3].signal("CONT")?;

    // Move every replica off broker 1 onto broker 4, under load.
    let moved: BTreeMap<i32, Vec<i32>> =
        original.iter().map(|(p, rs)| (*p, rs.iter().map(|b| if *b == 1 { 4 } else { *b }).collect())).collect();
    let moves: Vec<(i32, Option<Vec<i32>>)> = moved.iter().map(|(p, rs)| (*p, Some(rs.clone()))).collect();
    let started = Instant::now();
    wait_for("the moves accepted", TIMEOUT, || reassign(&brokers[2], &topic, &moves).ok().filter(|c| c.values().all(|c| *c == 0)))?;
    wait_for("the moves to complete", TIMEOUT, || {
        (reassignments(&brokers[0], &topic).ok()?.is_empty() && replicas(&brokers[3], &topic).ok()? == moved).then_some(())
    })?;
    println!("reassignment: 6 partitions moved from broker 1 to broker 4 in {:?}", started.elapsed());
    settled(&brokers, &topic, 3).context("every partition led, ISR of 3, after the move")?;
    let before = load.acked.lock().unwrap().len();
    load.acked_at_least(before + 500)?;
    let (sent, acked, errs) = load.finish()?;
    check(&mut brokers, &topic, sent, &acked, &errs)?;

    for b in brokers.iter_mut() {
        b.terminate(TIMEOUT)?;
    }
    for p in 0..PARTITIONS {
        let dropped = log_bytes(brokers[0].data_dir(), &topic, p)?;
        ensure!(dropped.is_empty(), "broker 1 still holds {} bytes of partition {p}", dropped.len());
        let copies: Vec<Vec<u8>> =
            moved[&p].iter().map(|b| log_bytes(brokers[(*b - 1) as usize].data_dir(), &topic, p)).collect::<Result<_>>()?;
        ensure!(!copies[0].is_empty() && copies.iter().all(|c| *c == copies[0]), "partition {p}: the new replicas differ");
    }
    Ok(())
}

/// Sends `per_partition` records to every partition with acks=all and records where
/// each landed.
fn produce_acked(brokers: &[Broker], topic: &str, prefix: &str, per_partition: usize, acked: &mut AckedRecords) -> Result<u64> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_of(brokers))
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()?;
    rt.block_on(async {
        let mut sends = Vec::new();
        for i in 0..per_partition {
            for p in 0..PARTITIONS {
                let value = format!("{prefix}-{p}-{i}");
                let producer = &producer;
                sends.push(async move {
                    let r = producer.send(FutureRecord::<(), _>::to(topic).partition(p).payload(&value), Duration::from_secs(60)).await;
                    (value, r)
                });
            }
        }
        for (value, r) in futures::future::join_all(sends).await {
            let d = r.map_err(|(e, _)| anyhow!("producing {value}: {e}"))?;
            acked.insert(d.partition, d.offset, value);
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok((per_partition * PARTITIONS as usize) as u64)
}

/// Followers whose leader answers with broken responses (random bytes, absurd or
/// negative sizes, wrong correlation ids, undecodable bodies, silence) neither crash
/// nor store anything from them; once the leader answers properly again they catch
/// up, rejoin the ISR and end byte-identical to it.
#[test]
fn followers_survive_garbage_from_their_leader() -> Result<()> {
    use karst_tests::garbage::{GarbageServer, KINDS};
    let (mut brokers, proxies) = start_cluster_with_proxies()?;
    let topic = unique_topic("garbage");
    create_rf3(&brokers[0], &topic)?;
    let lead = settled(&brokers, &topic, 3)?;
    let mut acked = AckedRecords::default();
    let mut sent = produce_acked(&brokers, &topic, "before", 200, &mut acked)?;

    // Followers reach a leader through its proxy: point the proxy of partition 0's
    // leader at the hostile server and drop the followers' live connections.
    let leader = (lead[&0].0 - 1) as usize;
    let garbage = GarbageServer::start()?;
    proxies[leader].set_target(garbage.addr());
    proxies[leader].cut();
    proxies[leader].heal();
    let rounds = 2 * KINDS.len();
    wait_for("every kind of broken answer served twice", TIMEOUT, || (garbage.served() >= rounds).then_some(()))?;
    for b in brokers.iter_mut() {
        b.check_running().context("a broker died of its leader's garbage")?;
    }
    println!("garbage: {} broken answers served to the followers of broker {}", garbage.served(), leader + 1);

    proxies[leader].set_target(brokers[leader].addr());
    proxies[leader].cut();
    proxies[leader].heal();
    drop(garbage);
    settled(&brokers, &topic, 3).context("the followers back in the ISR once the leader answers properly")?;
    sent += produce_acked(&brokers, &topic, "after", 200, &mut acked)?;
    check(&mut brokers, &topic, sent, &acked, &[])?;
    for b in brokers.iter_mut() {
        b.terminate(TIMEOUT)?;
    }
    for p in 0..PARTITIONS {
        let copies: Vec<Vec<u8>> = brokers.iter().map(|b| log_bytes(b.data_dir(), &topic, p)).collect::<Result<_>>()?;
        ensure!(copies.iter().all(|c| *c == copies[0]), "replicas of partition {p} differ");
    }
    Ok(())
}

#[test]
fn a_produce_waiting_on_a_leadership_that_moves_is_answered_not_leader_at_once() -> Result<()> {
    // A batch appended by a leader waits for its followers; the leadership then moves
    // while the broker lives on. As Kafka's produce purgatory does, the waiting request
    // is answered NOT_LEADER_OR_FOLLOWER when the leadership ends, not left to time out
    // (an idempotent producer must count a timeout as "possibly stored", skips past it
    // and is driven into renumbering batches that were stored: duplicates).
    use karst_tests::raw::{produce_request, record_batch};
    let brokers = karst_tests::cluster::start_cluster(3, |_| {
        ["--set", "broker.session.timeout.ms=60000", "--set", "replica.lag.time.max.ms=60000"].map(String::from).to_vec()
    })?;
    let topic = unique_topic("moved");
    RawClient::connect(brokers[0].addr())?.create_replicated(&topic, 1, 3, &[])?;
    let (leader, replicas) = wait_for("a leader with a full ISR", TIMEOUT, || {
        let t = metadata(&brokers[0], &topic).ok()?;
        let p = t.topics.first()?.partitions.first()?.clone();
        (p.leader_id.0 > 0 && p.isr_nodes.len() == 3).then(|| (p.leader_id.0, p.replica_nodes.iter().map(|r| r.0).collect::<Vec<_>>()))
    })?;
    let others: Vec<i32> = replicas.iter().copied().filter(|r| *r != leader).collect();
    // A first record, committed, shows the leader has taken up its leadership.
    let mut warm = RawClient::connect(brokers[(leader - 1) as usize].addr())?;
    wait_for("a first committed record", TIMEOUT, || {
        let r = warm.send(&produce_request(&topic, 0, record_batch(&[(None, Some(b"first"))], 1_000)), 9).ok()?;
        (r.responses[0].partition_responses[0].error_code == 0).then_some(())
    })?;
    // One follower frozen: the batch below cannot commit while it stays in the ISR.
    let frozen = (others[1] - 1) as usize;
    brokers[frozen].signal("STOP")?;
    let leader_dir = brokers[(leader - 1) as usize].data_dir().to_path_buf();
    let before = log_bytes(&leader_dir, &topic, 0)?.len();
    let outcome = (|| -> Result<i16> {
        let lead_addr = brokers[(leader - 1) as usize].addr();
        let mut c = RawClient::connect(lead_addr)?;
        let (topic2, batch) = (topic.clone(), record_batch(&[(None, Some(b"waits"))], 1_000));
        let sender = std::thread::spawn(move || -> Result<i16> {
            let req = produce_request(&topic2, 0, batch).with_timeout_ms(120_000);
            Ok(c.send(&req, 9)?.responses[0].partition_responses[0].error_code)
        });
        wait_for("the batch in the leader's log", TIMEOUT, || log_bytes(&leader_dir, &topic, 0).ok().filter(|b| b.len() > before))?;
        // Move the partition off its leader (onto the other two): the controller hands
        // the leadership to the live follower while the batch waits.
        let moved = wait_for("the reassignment to be accepted", TIMEOUT, || {
            reassign(&brokers[(others[0] - 1) as usize], &topic, &[(0, Some(others.clone()))]).ok().filter(|r| r.get(&0) == Some(&0))
        });
        let code = sender.join().map_err(|_| anyhow!("producer thread panicked"))??;
        moved?;
        Ok(code)
    })();
    brokers[frozen].signal("CONT")?;
    let code = outcome?;
    ensure!(code == 6, "the waiting produce was answered with error {code}, not NOT_LEADER_OR_FOLLOWER (6)");
    Ok(())
}

#[test]
fn a_batch_appended_before_the_isr_fell_below_min_insync_is_acknowledged_once_it_heals() -> Result<()> {
    // As Kafka (KIP-966): a leader left alone below min.insync.replicas commits
    // nothing. A batch it appended just before its followers dropped out waits for
    // them and is acknowledged when they are back. Before, the leader committed it
    // alone and answered NOT_ENOUGH_REPLICAS_AFTER_APPEND: stored, yet an error to the
    // producer, which an idempotent producer that bumps its epoch sends again.
    use karst_tests::raw::{produce_request, record_batch};
    let (brokers, proxies) = start_cluster_with_proxies()?;
    let topic = unique_topic("minisr");
    RawClient::connect(brokers[0].addr())?.create_replicated(&topic, 1, 3, &[("min.insync.replicas", "2")])?;
    let leader = leader_with_full_isr(&brokers, &topic)?;
    let mut warm = RawClient::connect(brokers[leader].addr())?;
    wait_for("a first committed record", TIMEOUT, || {
        let r = warm.send(&produce_request(&topic, 0, record_batch(&[(None, Some(b"first"))], 1_000)), 9).ok()?;
        (r.responses[0].partition_responses[0].error_code == 0).then_some(())
    })?;
    let before = log_bytes(brokers[leader].data_dir(), &topic, 0)?.len();
    proxies[leader].cut();
    let outcome = (|| -> Result<(i16, i64)> {
        let mut c = RawClient::connect(brokers[leader].addr())?;
        let (topic2, batch) = (topic.clone(), record_batch(&[(None, Some(b"waits"))], 1_000));
        let sender = std::thread::spawn(move || -> Result<(i16, i64)> {
            let r = c.send(&produce_request(&topic2, 0, batch).with_timeout_ms(120_000), 9)?;
            let p = &r.responses[0].partition_responses[0];
            Ok((p.error_code, p.base_offset))
        });
        let dir = brokers[leader].data_dir();
        wait_for("the batch in the leader's log", TIMEOUT, || log_bytes(dir, &topic, 0).ok().filter(|b| b.len() > before))?;
        wait_for("the cut-off leader's ISR to shrink to itself", TIMEOUT, || {
            (layout(&brokers[leader], &topic).ok()?.get(&0)?.1 == 1).then_some(())
        })?;
        proxies[leader].heal();
        sender.join().map_err(|_| anyhow!("producer thread panicked"))?
    })();
    proxies[leader].heal();
    let (code, offset) = outcome?;
    ensure!(code == 0 && offset == 1, "the batch was answered error {code} at offset {offset}, not acknowledged at 1");
    Ok(())
}

#[test]
fn a_batch_pipelined_behind_a_refused_one_gets_its_retriable_error_not_out_of_order() -> Result<()> {
    // An idempotent producer's first batch is refused before it is stored
    // (NOT_ENOUGH_REPLICAS: the leader is cut off from its followers); the condition
    // clears before the batch pipelined behind it arrives, with a gap in its sequence.
    // Kafka answers OUT_OF_ORDER_SEQUENCE_NUMBER, which makes librdkafka bump its epoch
    // and store again every batch it had not had acknowledged. Karst answers the first
    // batch's own retriable error, and the producer retries both in order.
    use karst_tests::raw::produce_request;
    let (brokers, proxies) = start_cluster_with_proxies()?;
    let topic = unique_topic("gap");
    RawClient::connect(brokers[0].addr())?.create_replicated(&topic, 1, 3, &[("min.insync.replicas", "2")])?;
    let leader = leader_with_full_isr(&brokers, &topic)?;
    let mut c = RawClient::connect(brokers[leader].addr())?;
    let producer = IdempotentProducer::init(&mut c)?;
    let batch = |seq: i32, n: i32| producer.batch(seq, n);
    let mut send = |seq: i32, n: i32| -> Result<i16> {
        let r = c.send(&produce_request(&topic, 0, batch(seq, n)), 9)?;
        Ok(r.responses[0].partition_responses[0].error_code)
    };
    wait_for("the first batch acknowledged", TIMEOUT, || (send(0, 5).ok()? == 0).then_some(()))?;

    proxies[leader].cut();
    let refused = wait_for("the cut-off leader's ISR to shrink to itself", TIMEOUT, || {
        (layout(&brokers[leader], &topic).ok()?.get(&0)?.1 == 1).then_some(())
    })
    .and_then(|()| {
        // The leader takes up the shrunk ISR a moment after the metadata shows it (on a
        // loaded machine, long enough for a batch to be appended and time out): wait
        // until it refuses acks=all writes, with plain (non-idempotent) probes that
        // leave the producer's sequence alone.
        let mut probe = RawClient::connect(brokers[leader].addr())?;
        wait_for("the leader to refuse writes below min.insync.replicas", TIMEOUT, || {
            let req = produce_request(&topic, 0, karst_tests::raw::record_batch(&[(None, Some(b"probe"))], 1_000)).with_timeout_ms(500);
            (probe.send(&req, 9).ok()?.responses[0].partition_responses[0].error_code == 19).then_some(())
        })
    })
    .and_then(|()| send(5, 3));
    proxies[leader].heal();
    let refused = refused?;
    ensure!(refused == 19, "batch 5..7 with the ISR below min.insync.replicas: {refused}, expected NOT_ENOUGH_REPLICAS (19)");
    wait_for("the ISR whole again", TIMEOUT, || (layout(&brokers[leader], &topic).ok()?.get(&0)?.1 == 3).then_some(()))?;
    let gap = send(8, 2)?;
    ensure!(gap == 19, "batch 8..9 behind the refused 5..7 was answered {gap}, not NOT_ENOUGH_REPLICAS (19)");
    // As with the shrink, the leader takes up the whole ISR a moment after the
    // metadata shows it: until then the retry is refused again, as a producer's is.
    let mut retried = -1;
    wait_for("the retried 5..7 stored once the leader has its ISR back", TIMEOUT, || {
        retried = send(5, 3).ok()?;
        (retried != 19).then_some(())
    })?;
    ensure!(retried == 0 && send(8, 2)? == 0, "the retries in order are stored (5..7 answered {retried})");
    ensure!(send(11, 1)? == 45, "a gap no refusal explains is still OUT_OF_ORDER_SEQUENCE_NUMBER");
    Ok(())
}

#[test]
fn a_gap_at_a_new_leader_from_a_producer_that_has_not_written_there_is_retriable() -> Result<()> {
    // The leadership moves while an idempotent producer has batches in flight to the
    // old leader; the first of them is refused there (NOT_LEADER_OR_FOLLOWER) and the
    // next one reaches the new leader first, with a gap. Kafka answers
    // OUT_OF_ORDER_SEQUENCE_NUMBER (librdkafka then bumps its epoch and stores its
    // unacknowledged batches again); Karst answers NOT_LEADER_OR_FOLLOWER, and the
    // producer retries both, in order.
    use karst_tests::raw::produce_request;
    let mut brokers = karst_tests::cluster::start_cluster(3, |_| Vec::new())?;
    let topic = unique_topic("newleader");
    RawClient::connect(brokers[0].addr())?.create_replicated(&topic, 1, 3, &[("min.insync.replicas", "2")])?;
    let leader_of = |brokers: &[Broker], not: i32| {
        wait_for("a leader with a full ISR", TIMEOUT, || {
            let t = live(brokers).find_map(|b| metadata(b, &topic).ok())?;
            let p = t.topics.first()?.partitions.first()?.clone();
            (p.leader_id.0 > 0 && p.leader_id.0 != not && p.isr_nodes.len() >= 2).then_some((p.leader_id.0 - 1) as usize)
        })
    };
    let first = leader_of(&brokers, -1)?;
    let mut c = RawClient::connect(brokers[first].addr())?;
    let producer = IdempotentProducer::init(&mut c)?;
    let batch = |seq: i32, n: i32| producer.batch(seq, n);
    let send = |c: &mut RawClient, seq: i32, n: i32| -> Result<i16> {
        let r = c.send(&produce_request(&topic, 0, batch(seq, n)), 9)?;
        Ok(r.responses[0].partition_responses[0].error_code)
    };
    wait_for("the first batch acknowledged", TIMEOUT, || (send(&mut c, 0, 5).ok()? == 0).then_some(()))?;

    // A controlled shutdown hands the leadership to another in-sync replica.
    brokers[first].terminate(TIMEOUT)?;
    let second = leader_of(&brokers, first as i32 + 1)?;
    let mut c = RawClient::connect(brokers[second].addr())?;
    // Another client's record shows the new leader has taken up its leadership.
    wait_for("a record from another client on the new leader", TIMEOUT, || {
        let r = c.send(&produce_request(&topic, 0, karst_tests::raw::record_batch(&[(None, Some(b"other"))], 1_000)), 9).ok()?;
        (r.responses[0].partition_responses[0].error_code == 0).then_some(())
    })?;
    let gap = send(&mut c, 8, 2)?;
    ensure!(gap == 6, "batch 8..9, after 0..4 acknowledged by the previous leader, was answered {gap}, not NOT_LEADER_OR_FOLLOWER (6)");
    ensure!(send(&mut c, 5, 3)? == 0 && send(&mut c, 8, 2)? == 0, "the retries in order are stored");
    ensure!(send(&mut c, 11, 1)? == 45, "once the producer has written under this leadership a gap is OUT_OF_ORDER_SEQUENCE_NUMBER");
    Ok(())
}

/// Partition 0's leader (an index into `brokers`) once all three replicas are in its ISR.
fn leader_with_full_isr(brokers: &[Broker], topic: &str) -> Result<usize> {
    wait_for("a leader with a full ISR", TIMEOUT, || {
        let t = metadata(&brokers[0], topic).ok()?;
        let p = t.topics.first()?.partitions.first()?.clone();
        (p.leader_id.0 > 0 && p.isr_nodes.len() == 3).then_some((p.leader_id.0 - 1) as usize)
    })
}

/// An idempotent producer's id and epoch (InitProducerId), and its batches.
struct IdempotentProducer {
    id: i64,
    epoch: i16,
}

impl IdempotentProducer {
    fn init(c: &mut RawClient) -> Result<IdempotentProducer> {
        use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
        let init = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let r = wait_for("a producer id", TIMEOUT, || c.send(&init, 4).ok().filter(|r| r.error_code == 0))?;
        Ok(IdempotentProducer { id: r.producer_id.0, epoch: r.producer_epoch })
    }

    /// `n` records with sequences from `seq`.
    fn batch(&self, seq: i32, n: i32) -> Vec<u8> {
        use karst_tests::raw::encode_record;
        let records: Vec<u8> = (0..n).flat_map(|i| encode_record(i64::from(i), None, Some(format!("v{}", seq + i).as_bytes()))).collect();
        karst_batch::build_batch_with_producer(0, n, 1_000, self.id, self.epoch, seq, &records)
    }
}
