//! Log compaction with real clients: `cleanup.policy=compact` keeps the latest value
//! of every key at its original offset, tombstones go after `delete.retention.ms`,
//! consumers reading during a clean see the log as it was produced, keyless records
//! are refused with INVALID_RECORD, a kill -9 during a clean loses nothing, and the
//! replicas of a compacted topic agree.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use karst_tests::cluster::start_cluster;
use karst_tests::metrics::{http_get, parse_exposition};
use karst_tests::raw::{record_batch, RawClient};
use karst_tests::{unique_topic, wait_for, wait_until, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(120);
/// `segment.ms` of the test topics: the active segment rolls on the first append
/// this long after it began, so the records before it become cleanable.
const SEGMENT_MS: u64 = 1000;
const DELETE_RETENTION_MS: u64 = 3000;
const INVALID_RECORD: i16 = 87;

/// One record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    offset: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

fn key(k: usize) -> Vec<u8> {
    format!("key-{k:06}").into_bytes()
}

fn value(k: usize, round: usize) -> Vec<u8> {
    format!("k{k:06}-r{round:02}-{}", "v".repeat(k % 17)).into_bytes()
}

fn compacted_configs(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut c = vec![
        ("cleanup.policy", "compact"),
        ("segment.bytes", "65536"),
        ("segment.ms", "1000"),
        ("min.cleanable.dirty.ratio", "0"),
        ("delete.retention.ms", "3000"),
    ];
    c.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    c.extend_from_slice(extra);
    c
}

fn producer(bootstrap: &str) -> Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "none")
        .set("message.timeout.ms", "60000")
        .create()?)
}

/// Produces (key, value) records to partition 0 in order; returns each one's offset.
fn produce(bootstrap: &str, topic: &str, records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<Vec<i64>> {
    produce_with(&producer(bootstrap)?, topic, records)
}

/// [`produce`] with a producer the caller keeps.
fn produce_with(p: &FutureProducer, topic: &str, records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<Vec<i64>> {
    let mut offsets = Vec::with_capacity(records.len());
    for chunk in records.chunks(5000) {
        let pending: Vec<_> = chunk
            .iter()
            .map(|(k, v)| {
                let mut r = FutureRecord::to(topic).partition(0).key(k);
                if let Some(v) = v {
                    r = r.payload(v);
                }
                p.send_result(r).map_err(|(e, _)| anyhow!("enqueueing: {e}"))
            })
            .collect::<Result<_>>()?;
        for fut in pending {
            let delivery =
                futures::executor::block_on(fut).context("delivery cancelled")?.map_err(|(e, _)| anyhow!("not delivered: {e}"))?;
            offsets.push(delivery.offset);
        }
    }
    Ok(offsets)
}

/// Everything partition 0 holds, from the start to its end.
fn read_all(bootstrap: &str, topic: &str) -> Result<Vec<Seen>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "compaction-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut out: Vec<Seen> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        ensure!(Instant::now() < deadline, "reading {topic} did not reach its end");
        match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => bail!("consuming {topic}: {e}"),
            Some(Ok(m)) => out.push(Seen {
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec).unwrap_or_default(),
                value: m.payload().map(<[u8]>::to_vec),
            }),
        }
    }
    Ok(out)
}

fn metric(b: &Broker, name: &str) -> Result<f64> {
    let admin = b.admin_addr().context("no admin address")?;
    let r = http_get(admin, "/metrics", &[])?;
    Ok(parse_exposition(&r.body)?.value_or_zero(name, &[]))
}

/// What the producer wrote, offset by offset.
#[derive(Default)]
struct Produced {
    at: BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)>,
}

impl Produced {
    fn add(&mut self, records: &[(Vec<u8>, Option<Vec<u8>>)], offsets: &[i64]) {
        for (r, o) in records.iter().zip(offsets) {
            self.at.insert(*o, r.clone());
        }
    }

    /// The latest record of every key: (offset, value).
    fn latest(&self) -> HashMap<Vec<u8>, (i64, Option<Vec<u8>>)> {
        let mut m = HashMap::new();
        for (o, (k, v)) in &self.at {
            m.insert(k.clone(), (*o, v.clone()));
        }
        m
    }

    /// Every record seen is one produced, at its offset, in increasing offsets.
    fn check_unchanged(&self, seen: &[Seen]) -> Result<()> {
        let mut last = -1;
        for s in seen {
            ensure!(s.offset > last, "offset {} after {last}", s.offset);
            last = s.offset;
            let (k, v) = self.at.get(&s.offset).ok_or_else(|| anyhow!("offset {} was never produced", s.offset))?;
            ensure!(k == &s.key && v == &s.value, "offset {} holds {:?}, produced {:?}", s.offset, s, (k, v));
        }
        Ok(())
    }
}

/// Below `upto`, the log holds exactly the latest record of every key (tombstones
/// too, unless `tombstones_gone`), and nothing of keys whose latest is a tombstone
/// once they are gone. Returns why not, or the number of records below `upto`.
fn compacted_below(produced: &Produced, seen: &[Seen], upto: i64, tombstones_gone: bool) -> Result<usize, String> {
    let latest = produced.latest();
    let below: Vec<&Seen> = seen.iter().filter(|s| s.offset < upto).collect();
    let mut keys = HashMap::new();
    for s in &below {
        if keys.insert(s.key.clone(), s.offset).is_some() {
            return Err(format!("key {:?} appears twice below {upto}", String::from_utf8_lossy(&s.key)));
        }
        let (o, v) = &latest[&s.key];
        if *o != s.offset {
            return Err(format!("key {:?} kept at {} but its latest is at {o}", String::from_utf8_lossy(&s.key), s.offset));
        }
        if tombstones_gone && v.is_none() {
            return Err(format!("tombstone of {:?} at {o} still there", String::from_utf8_lossy(&s.key)));
        }
    }
    for (k, (o, v)) in &latest {
        let expected = *o < upto && (v.is_some() || !tombstones_gone);
        if expected && !keys.contains_key(k) {
            return Err(format!("key {:?} (latest at {o}) missing", String::from_utf8_lossy(k)));
        }
    }
    Ok(below.len())
}

/// The records of `keys` keys over `rounds` updates, round by round, then tombstones
/// for every tenth key.
fn workload(keys: usize, rounds: usize) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut records = Vec::with_capacity(keys * rounds + keys / 10);
    for round in 0..rounds {
        for k in 0..keys {
            records.push((key(k), Some(value(k, round))));
        }
    }
    for k in (0..keys).step_by(10) {
        records.push((key(k), None));
    }
    records
}

/// Appends one record under a new key after `segment.ms`, so the active segment
/// rolls and everything before it can be cleaned; returns its offset.
fn roll(bootstrap: &str, topic: &str, produced: &mut Produced, n: usize) -> Result<i64> {
    roll_with(&producer(bootstrap)?, SEGMENT_MS, topic, produced, n)
}

/// [`roll`] with a producer the caller keeps, for a topic of `segment_ms`.
fn roll_with(p: &FutureProducer, segment_ms: u64, topic: &str, produced: &mut Produced, n: usize) -> Result<i64> {
    // The roll is time-based: nothing to await but the time itself.
    std::thread::sleep(Duration::from_millis(segment_ms + 100));
    let rec = vec![(format!("filler-{n}").into_bytes(), Some(b"x".to_vec()))];
    let offsets = produce_with(p, topic, &rec)?;
    produced.add(&rec, &offsets);
    Ok(offsets[0])
}

/// Waits until the log below `upto` is compacted as [`compacted_below`] says,
/// checking after each clean the broker reports.
fn await_compacted(b: &Broker, topic: &str, produced: &Produced, upto: i64, tombstones_gone: bool) -> Result<Vec<Seen>> {
    let bootstrap = b.bootstrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut cleans = -1.0;
    let mut why = String::new();
    while Instant::now() < deadline {
        let now = metric(b, "karst_log_cleaner_cleans_total")?;
        if now > cleans {
            cleans = now;
            let seen = read_all(&bootstrap, topic)?;
            produced.check_unchanged(&seen)?;
            match compacted_below(produced, &seen, upto, tombstones_gone) {
                Ok(_) => return Ok(seen),
                Err(e) => why = e,
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{topic} not compacted below {upto} after {TIMEOUT:?} ({cleans} cleans): {why}")
}

/// Reads the whole log over and over until told to stop, checking every pass
/// against what was produced; returns the passes completed.
fn reader(bootstrap: String, topic: String, produced: Arc<Produced>, stop: Arc<AtomicBool>) -> Result<usize> {
    let mut passes = 0;
    while !stop.load(Ordering::SeqCst) {
        let seen = read_all(&bootstrap, &topic)?;
        produced.check_unchanged(&seen).with_context(|| format!("pass {passes}"))?;
        passes += 1;
    }
    Ok(passes)
}

#[test]
fn keyed_updates_compact_to_the_latest_value_of_every_key_with_offsets_kept() -> Result<()> {
    let b = Broker::start(&["--set", "log.cleaner.backoff.ms=100"])?;
    let bootstrap = b.bootstrap();
    let topic = unique_topic("compacted");
    RawClient::connect(b.addr())?.create_topic(&topic, 1, &compacted_configs(&[]))?;

    const KEYS: usize = 100_000;
    const ROUNDS: usize = 3;
    let records = workload(KEYS, ROUNDS);
    let mut produced = Produced::default();
    let offsets = produce(&bootstrap, &topic, &records)?;
    ensure!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "offsets assigned in order");
    produced.add(&records, &offsets);
    let dir = b.data_dir().join(format!("{topic}-0"));
    // What was appended, whatever the cleaner has already done to it.
    let admin = b.admin_addr().context("no admin address")?;
    let bytes_before =
        parse_exposition(&http_get(admin, "/metrics", &[])?.body)?.value_or_zero("karst_topic_bytes_in_total", &[("topic", &topic)]);

    // A reader goes over the log while it is cleaned.
    let filler = roll(&bootstrap, &topic, &mut produced, 1)?;
    let produced = Arc::new(produced);
    let stop = Arc::new(AtomicBool::new(false));
    let r = {
        let (bootstrap, topic, produced, stop) = (bootstrap.clone(), topic.clone(), produced.clone(), stop.clone());
        std::thread::spawn(move || reader(bootstrap, topic, produced, stop))
    };
    let seen = await_compacted(&b, &topic, &produced, filler, false);
    stop.store(true, Ordering::SeqCst);
    let passes = r.join().map_err(|_| anyhow!("reader panicked"))??;
    let seen = seen?;
    let live = KEYS - KEYS / 10;
    let kept = seen.iter().filter(|s| s.offset < filler).count();
    ensure!(kept == KEYS, "{kept} records kept below {filler}: every key's latest, tombstones included");
    eprintln!(
        "first clean: {} records produced, {kept} kept ({live} live keys + {} tombstones); {} bytes produced, {} log bytes after; reader passes {passes}",
        records.len(),
        KEYS / 10,
        bytes_before,
        log_bytes(&dir)?
    );

    // After delete.retention.ms, a later clean removes the tombstones.
    let mut produced = Arc::try_unwrap(produced).map_err(|_| anyhow!("reader still holds the records"))?;
    std::thread::sleep(Duration::from_millis(DELETE_RETENTION_MS));
    let filler2 = roll(&bootstrap, &topic, &mut produced, 2)?;
    let seen = await_compacted(&b, &topic, &produced, filler2, true)?;
    let kept: Vec<&Seen> = seen.iter().filter(|s| s.offset < filler2).collect();
    ensure!(kept.len() == live + 1, "{} records after the tombstones went (expected {live} keys and filler-1)", kept.len());
    ensure!(kept.iter().all(|s| s.value.is_some()), "no tombstone left");
    let latest = produced.latest();
    let by_key: HashMap<&[u8], &Seen> = kept.iter().map(|s| (&s.key[..], *s)).collect();
    for k in (0..KEYS).filter(|k| k % 10 != 0) {
        let s = by_key.get(&key(k)[..]).ok_or_else(|| anyhow!("key {k} gone"))?;
        ensure!(s.value.as_deref() == Some(&value(k, ROUNDS - 1)[..]), "key {k}: {:?}", s.value);
        ensure!(latest[&key(k)].0 == s.offset, "key {k} moved");
    }
    eprintln!("second clean: {} records kept, {} log bytes", kept.len(), log_bytes(&dir)?);
    ensure!(metric(&b, "karst_log_cleaner_bytes_written_total")? > 0.0, "bytes written counted");
    ensure!(metric(&b, "karst_log_cleaner_records_removed_total")? >= (records.len() - KEYS) as f64, "records removed counted");
    Ok(())
}

fn log_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.path().extension().is_some_and(|x| x == "log") {
            total += e.metadata()?.len();
        }
    }
    Ok(total)
}

#[test]
fn keyless_records_are_refused_on_compacted_topics_with_invalid_record() -> Result<()> {
    let b = Broker::start(&[])?;
    let topic = unique_topic("compacted-keys");
    let mut raw = RawClient::connect(b.addr())?;
    raw.create_topic(&topic, 1, &[("cleanup.policy", "compact,delete")])?;

    // librdkafka: the delivery fails with INVALID_RECORD, not retried.
    let p = producer(&b.bootstrap())?;
    let r = futures::executor::block_on(
        p.send_result(FutureRecord::<(), _>::to(&topic).partition(0).payload("no key")).map_err(|_| anyhow!("enqueue"))?,
    )?;
    match r {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord), _)) => {}
        other => bail!("a keyless record: {other:?}"),
    }
    let r = futures::executor::block_on(
        p.send_result(FutureRecord::to(&topic).partition(0).key("k").payload("keyed")).map_err(|_| anyhow!("enqueue"))?,
    )?;
    ensure!(matches!(&r, Ok(d) if d.offset == 0), "a keyed record is stored at offset 0: {r:?}");

    // Produce v8+: the whole batch refused, each keyless record named by its index.
    let batch = record_batch(&[(Some(b"a"), Some(b"1")), (None, Some(b"2")), (Some(b"c"), Some(b"3")), (None, None)], 1);
    for version in [8, 9, 11] {
        let pr = raw.produce(&topic, 0, batch.clone(), version)?;
        ensure!(pr.error_code == INVALID_RECORD, "v{version}: {pr:?}");
        let errors: Vec<(i32, String)> =
            pr.record_errors.iter().map(|e| (e.batch_index, e.batch_index_error_message.as_deref().unwrap_or("").to_string())).collect();
        let msg = format!("Compacted topic cannot accept message without key in topic partition {topic}-0");
        ensure!(errors == vec![(1, msg.clone()), (3, msg.clone())], "v{version}: {errors:?}");
        let top = pr.error_message.as_deref().unwrap_or("");
        ensure!(
            top == format!(
                "One or more records have been rejected due to 2 record errors in total, and only showing the first three errors at most: \
                 [RecordError(batchIndex=1, message='{msg}'), RecordError(batchIndex=3, message='{msg}')]"
            ),
            "v{version}: {top}"
        );
    }
    let pr = raw.produce(&topic, 0, batch, 7)?;
    ensure!(pr.error_code == INVALID_RECORD && pr.record_errors.is_empty(), "v7: {pr:?}");
    // Nothing of the refused batches was stored.
    let pr = raw.produce(&topic, 0, record_batch(&[(Some(b"d"), Some(b"4"))], 1), 9)?;
    ensure!(pr.error_code == 0 && pr.base_offset == 1, "{pr:?}");

    // A topic with the default policy (delete) takes keyless records.
    let plain = unique_topic("plain");
    raw.create_topic(&plain, 1, &[])?;
    ensure!(raw.produce(&plain, 0, record_batch(&[(None, Some(b"x"))], 1), 9)?.error_code == 0);
    Ok(())
}

/// Deterministic "random" delays without a generator crate.
fn jitter(seed: u64, max_ms: u64) -> Duration {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id());
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    Duration::from_millis(x % max_ms.max(1))
}

#[test]
fn a_kill_9_during_cleaning_loses_no_kept_record() -> Result<()> {
    // Writing in small chunks, so a clean's files show from the start of its copy;
    // throttled, so the throttle's path runs (it first checks after 300 ms, later
    // than these cleans end on a fast disk).
    let mut b = Broker::start(&[
        "--set",
        "log.cleaner.backoff.ms=100",
        "--set",
        "log.cleaner.io.max.bytes.per.second=200000",
        "--set",
        "log.cleaner.io.buffer.size=4096",
    ])?;
    let topic = unique_topic("compacted-crash");
    // One segment per run (rolled by time, after the run's records): one clean per run.
    let configs = compacted_configs(&[("delete.retention.ms", "600000"), ("segment.ms", "5000"), ("segment.bytes", "8388608")]);
    RawClient::connect(b.addr())?.create_topic(&topic, 1, &configs)?;
    let dir = b.data_dir().join(format!("{topic}-0"));
    // Enough that a clean outlasts the throttle's first check (300 ms), after which
    // it holds to the rate.
    const KEYS: usize = 20_000;
    let mut produced = Produced::default();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
    let runs = AtomicUsize::new(0);
    for run in 0..3u64 {
        // Idempotent: the filler's answer can go with the kill, and its retry to the
        // restarted broker must not store it twice.
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", b.bootstrap())
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "none")
            .set("message.timeout.ms", "60000")
            .create()?;
        let records = workload(KEYS, 2);
        let offsets = produce_with(&p, &topic, &records)?;
        produced.add(&records, &offsets);
        // A watcher kills the broker a random time (up to 40 ms: on a fast disk a
        // clean's copy takes tens of milliseconds, the throttle's first check comes
        // after 300) after a clean starts writing its first cleaned segment.
        let delay = jitter(seed ^ run, 40);
        let pid = b.pid().context("broker not running")?;
        let watcher = {
            let dir = dir.clone();
            std::thread::spawn(move || -> Result<()> {
                let cleaning =
                    || std::fs::read_dir(&dir).is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".cleaned")));
                let deadline = Instant::now() + TIMEOUT;
                while !cleaning() {
                    ensure!(Instant::now() < deadline, "no clean started within {TIMEOUT:?}");
                    std::thread::sleep(Duration::from_micros(500));
                }
                std::thread::sleep(delay);
                let status = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status()?;
                ensure!(status.success(), "kill -KILL {pid}");
                Ok(())
            })
        };
        // The filler rolls the segment, which starts the clean the watcher kills: its
        // answer is awaited once the broker is back, not before the kill.
        std::thread::sleep(Duration::from_millis(5100));
        let filler_record = vec![(format!("filler-{}", run + 1).into_bytes(), Some(b"x".to_vec()))];
        let (key, value) = &filler_record[0];
        let filler_sent = p
            .send_result(FutureRecord::to(&topic).partition(0).key(key).payload(value.as_deref().unwrap_or_default()))
            .map_err(|(e, _)| anyhow!("enqueueing the filler: {e}"))?;
        watcher.join().map_err(|_| anyhow!("watcher panicked"))??;
        b.kill9()?;
        // What the kill left for recovery: a clean's uncommitted or committed files.
        let left: Vec<String> = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
            .collect();
        b.restart()?;
        let filler = futures::executor::block_on(filler_sent)
            .context("filler delivery cancelled")?
            .map_err(|(e, _)| anyhow!("filler not delivered: {e}"))?
            .offset;
        produced.add(&filler_record, &[filler]);
        let seen = read_all(&b.bootstrap(), &topic)?;
        produced.check_unchanged(&seen).with_context(|| format!("run {run}: after a kill {delay:?} into a clean"))?;
        let latest = produced.latest();
        let mut last: HashMap<&[u8], (i64, &Option<Vec<u8>>)> = HashMap::new();
        for s in &seen {
            last.insert(&s.key[..], (s.offset, &s.value));
        }
        for (k, (o, v)) in &latest {
            let got = last.get(&k[..]).ok_or_else(|| anyhow!("run {run}: key {:?} lost", String::from_utf8_lossy(k)))?;
            ensure!(got.0 == *o && got.1 == v, "run {run}: key {:?} reads {got:?}, latest at {o}", String::from_utf8_lossy(k));
        }
        // The restarted cleaner finishes the job.
        await_compacted(&b, &topic, &produced, filler, false).with_context(|| format!("run {run}"))?;
        eprintln!("run {run}: killed {delay:?} into a clean, leaving {left:?}; {} records read after restart, compacted again", seen.len());
        runs.fetch_add(1, Ordering::SeqCst);
    }
    ensure!(runs.load(Ordering::SeqCst) == 3);
    Ok(())
}

/// Key → the offset and value of its latest record.
type LatestByKey = BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)>;

/// Every key's latest (offset, value) in a replica's segment files.
fn replica_content(dir: &Path) -> Result<LatestByKey> {
    let mut files: Vec<_> =
        std::fs::read_dir(dir)?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "log")).collect();
    files.sort();
    let mut out = BTreeMap::new();
    for f in files {
        let data = std::fs::read(&f)?;
        for item in karst_batch::batches(&data) {
            let (pos, h) = item.map_err(|e| anyhow!("{}: {e}", f.display()))?;
            ensure!(h.compression() == 0, "uncompressed test data");
            let payload = &data[pos + karst_batch::HEADER_LEN..pos + h.total_len()];
            for r in karst_batch::records::parse_records(payload, h.record_count).map_err(|e| anyhow!("{e}"))? {
                let k = r.key.map(<[u8]>::to_vec).unwrap_or_default();
                out.insert(k, (r.offset(h.base_offset), r.value.map(<[u8]>::to_vec)));
            }
        }
    }
    Ok(out)
}

#[test]
fn replicas_of_a_compacted_topic_clean_their_own_copies_and_agree() -> Result<()> {
    let mut nodes = start_cluster(3, |_| vec!["--set".into(), "log.cleaner.backoff.ms=100".into()])?;
    let topic = unique_topic("compacted-rf3");
    RawClient::connect(nodes[0].addr())?.create_replicated(
        &topic,
        1,
        3,
        &compacted_configs(&[("min.insync.replicas", "3"), ("delete.retention.ms", "600000")]),
    )?;
    let bootstrap = nodes[0].bootstrap();
    let mut produced = Produced::default();
    const KEYS: usize = 3000;
    for round in 0..2 {
        let before: Vec<f64> = nodes.iter().map(|n| metric(n, "karst_log_cleaner_cleans_total")).collect::<Result<_>>()?;
        let records = workload(KEYS, 3);
        let offsets = produce(&bootstrap, &topic, &records)?;
        produced.add(&records, &offsets);
        roll(&bootstrap, &topic, &mut produced, round + 1)?;
        // Every replica cleans its own copy (the cleans counter of each node moves).
        for (i, (n, before)) in nodes.iter().zip(before).enumerate() {
            wait_until(&format!("a clean on node {i}"), TIMEOUT, || metric(n, "karst_log_cleaner_cleans_total").is_ok_and(|c| c > before))?;
        }
    }
    // The followers kept fetching from the compacted leader: acks=all with
    // min.insync.replicas=3 after the cleans.
    let tail = vec![(b"after".to_vec(), Some(b"clean".to_vec()))];
    let offsets = produce(&bootstrap, &topic, &tail)?;
    produced.add(&tail, &offsets);
    let seen = read_all(&bootstrap, &topic)?;
    produced.check_unchanged(&seen)?;
    let dirs: Vec<_> = nodes.iter().map(|n| n.data_dir().join(format!("{topic}-0"))).collect();
    for n in nodes.iter_mut() {
        n.terminate(Duration::from_secs(30))?;
    }
    let latest: LatestByKey = produced.latest().into_iter().collect();
    for (i, d) in dirs.iter().enumerate() {
        let content = replica_content(d)?;
        ensure!(content == latest, "replica {i}: {} keys, expected {}", content.len(), latest.len());
        eprintln!("replica {i}: {} keys, {} log bytes", content.len(), log_bytes(d)?);
    }
    Ok(())
}

#[test]
fn cleaner_topic_configs_are_described_altered_and_appended() -> Result<()> {
    let b = Broker::start(&["--set", "log.cleaner.min.cleanable.ratio=0.25"])?;
    let topic = unique_topic("compaction-configs");
    let mut raw = RawClient::connect(b.addr())?;
    raw.create_topic(&topic, 1, &[("delete.retention.ms", "1000")])?;
    let d = raw.describe_topic_configs(&topic)?;
    let (default, static_broker, topic_source) = (5, 4, 1);
    ensure!(d["cleanup.policy"] == ("delete".to_string(), default), "{:?}", d["cleanup.policy"]);
    ensure!(d["delete.retention.ms"] == ("1000".to_string(), topic_source), "{:?}", d["delete.retention.ms"]);
    ensure!(d["min.cleanable.dirty.ratio"] == ("0.25".to_string(), static_broker), "{:?}", d["min.cleanable.dirty.ratio"]);
    ensure!(d["min.compaction.lag.ms"] == ("0".to_string(), default));
    ensure!(d["max.compaction.lag.ms"] == ("9223372036854775807".to_string(), default));
    // APPEND to the list config, from its default.
    ensure!(raw.alter_topic_config(&topic, "cleanup.policy", 2, Some("compact"))? == 0);
    ensure!(raw.describe_topic_configs(&topic)?["cleanup.policy"] == ("delete,compact".to_string(), topic_source));
    // Keyless records are now refused.
    ensure!(raw.produce(&topic, 0, record_batch(&[(None, Some(b"x"))], 1), 9)?.error_code == INVALID_RECORD);
    ensure!(raw.alter_topic_config(&topic, "cleanup.policy", 3, Some("delete"))? == 0);
    ensure!(raw.describe_topic_configs(&topic)?["cleanup.policy"].0 == "compact");
    // Subtracting the last policy, APPEND on a non-list config, bad values: INVALID_CONFIG.
    let invalid_config = 40;
    ensure!(raw.alter_topic_config(&topic, "cleanup.policy", 3, Some("compact"))? == invalid_config);
    ensure!(raw.alter_topic_config(&topic, "segment.ms", 2, Some("5"))? == invalid_config);
    ensure!(raw.alter_topic_config(&topic, "min.cleanable.dirty.ratio", 0, Some("1.5"))? == invalid_config);
    ensure!(raw.alter_topic_config(&topic, "cleanup.policy", 0, Some("compact,none"))? == invalid_config);
    ensure!(raw.alter_topic_config(&topic, "max.compaction.lag.ms", 0, Some("10"))? == 0);
    ensure!(raw.alter_topic_config(&topic, "min.compaction.lag.ms", 0, Some("11"))? == invalid_config, "min above max");
    ensure!(raw.alter_topic_config(&topic, "cleanup.policy", 1, None)? == 0);
    ensure!(raw.describe_topic_configs(&topic)?["cleanup.policy"] == ("delete".to_string(), default));
    Ok(())
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "log")).count())
}

#[test]
fn consumer_offsets_is_compacted_and_its_groups_load_from_what_the_cleaner_kept() -> Result<()> {
    let mut b = Broker::start(&[
        "--set",
        "log.cleaner.backoff.ms=100",
        "--set",
        "offsets.topic.num.partitions=1",
        "--set",
        "offsets.topic.segment.bytes=8192",
        "--set",
        "group.initial.rebalance.delay.ms=0",
    ])?;
    let topic = unique_topic("offsets-compacted");
    let mut raw = RawClient::connect(b.addr())?;
    raw.create_topic(&topic, 2, &[])?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", "compacted-offsets")
        .set("enable.auto.commit", "false")
        .create()?;
    const COMMITS: i64 = 1500;
    for i in 1..=COMMITS {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(i))?;
        tpl.add_partition_offset(&topic, 1, Offset::Offset(10 * i))?;
        consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync)?;
    }
    drop(consumer);
    let d = raw.describe_topic_configs("__consumer_offsets")?;
    ensure!(d["cleanup.policy"].0 == "compact", "{:?}", d["cleanup.policy"]);
    let dir = b.data_dir().join("__consumer_offsets-0");
    // 3000 offset commits take hundreds of KiB; cleaned, a few segments of 8 KiB hold
    // the latest of each (the cleaner may have been at work during the commits).
    wait_until("__consumer_offsets cleaned", TIMEOUT, || {
        metric(&b, "karst_log_cleaner_cleans_total").is_ok_and(|c| c > 0.0) && log_bytes(&dir).is_ok_and(|n| n < 4 * 8192)
    })?;
    eprintln!("__consumer_offsets-0 after cleaning: {} segments, {} bytes", segment_count(&dir), log_bytes(&dir)?);
    // A restart replays the compacted log, gaps and all.
    b.kill9()?;
    b.restart()?;
    let mut raw = RawClient::connect(b.addr())?;
    let committed =
        wait_for("the group's offsets after the restart", TIMEOUT, || raw.committed_offsets("compacted-offsets", &topic, &[0, 1]).ok())?;
    ensure!(committed == BTreeMap::from([(0, COMMITS), (1, 10 * COMMITS)]), "{committed:?}");
    Ok(())
}
