//! A disk that fails under a running broker: storage fault injection switched on
//! through the admin endpoint (`PUT /failpoints`, compiled into test builds only).
//! A failed fsync takes the partitions it covered offline: nothing after it is
//! acknowledged, and in a cluster leadership moves to another in-sync replica.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, FetchRequest, MetadataRequest};
use karst_tests::metrics::{exchange, http_get, parse_exposition};
use karst_tests::raw::{record_batch, topic_name, RawClient};
use karst_tests::{unique_topic, wait_for, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);
const KAFKA_STORAGE_ERROR: i16 = 56;
const LEADER_NOT_AVAILABLE: i16 = 5;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// Switches storage faults on `admin` (see `karst_storage::faults`).
fn failpoints(admin: SocketAddr, spec: &str) -> Result<()> {
    let query: String = spec
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let req = format!("PUT /failpoints?{query} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let raw = exchange(admin, req.as_bytes())?;
    let text = String::from_utf8_lossy(&raw);
    ensure!(
        text.starts_with("HTTP/1.1 200"),
        "PUT /failpoints refused (is the binary built with `--features failpoints`, e.g. by \
         `cargo build -p karst --features failpoints`?):\n{text}"
    );
    Ok(())
}

fn admin(b: &Broker) -> Result<SocketAddr> {
    b.admin_addr().ok_or_else(|| anyhow!("broker has no admin endpoint"))
}

fn offline_replicas(b: &Broker) -> Result<f64> {
    let r = http_get(admin(b)?, "/metrics", &[])?;
    parse_exposition(&r.body)?.value("karst_offline_replicas", &[])
}

/// One Fetch (as a consumer) of `topic`-0 from `offset`: error code and record bytes.
fn fetch(b: &Broker, topic: &str, offset: i64) -> Result<(i16, usize)> {
    let mut c = RawClient::connect(b.addr())?;
    let version = c.version_for(ApiKey::Fetch)?.min(12);
    let req = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default().with_topic(topic_name(topic)).with_partitions(vec![FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20)])]);
    let resp = c.send(&req, version)?;
    let p = resp.responses.first().and_then(|t| t.partitions.first()).ok_or_else(|| anyhow!("empty fetch response"))?;
    Ok((p.error_code, p.records.as_ref().map_or(0, |r| r.len())))
}

#[test]
fn a_failed_fsync_on_a_single_broker_fails_the_produce_and_takes_the_partition_offline() -> Result<()> {
    let broker = Broker::start(&[])?;
    let topic = unique_topic("fsync-fails");
    let mut c = RawClient::connect(broker.addr())?;
    c.create_topic(&topic, 1, &[])?;
    let version = c.version_for(ApiKey::Produce)?.min(9);
    let before = c.produce(&topic, 0, record_batch(&[(None, Some(b"durable"))], 1_000), version)?;
    ensure!(before.error_code == 0 && before.base_offset == 0, "{before:?}");
    assert_eq!(fetch(&broker, &topic, 0)?.0, 0, "readable before the fault");

    failpoints(admin(&broker)?, &format!("fsync=eio@{topic}-0"))?;
    let failed = c.produce(&topic, 0, record_batch(&[(None, Some(b"lost"))], 1_000), version)?;
    assert_eq!((failed.error_code, failed.base_offset), (KAFKA_STORAGE_ERROR, -1), "acks=all is answered KAFKA_STORAGE_ERROR: {failed:?}");
    // The disk answers again: a retried fsync could report the lost pages durable.
    failpoints(admin(&broker)?, &format!("fsync=off@{topic}-0"))?;
    let again = c.produce(&topic, 0, record_batch(&[(None, Some(b"after"))], 1_000), version)?;
    assert!(
        [KAFKA_STORAGE_ERROR, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER].contains(&again.error_code),
        "the partition stays offline: {again:?}"
    );
    // Earlier data: served, or refused with an error code, never the lost record.
    let (code, bytes) = fetch(&broker, &topic, 0)?;
    assert!(
        [0, KAFKA_STORAGE_ERROR, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER].contains(&code),
        "fetch after the failure: error {code}"
    );
    if code == 0 {
        let (code_past, past) = fetch(&broker, &topic, 1)?;
        assert!(code_past != 0 || past == 0, "nothing past the failed fsync is visible");
        assert!(bytes > 0, "the durable record is served");
    }

    let ready = http_get(admin(&broker)?, "/health/ready", &[])?;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("offline") && ready.body.contains(&format!("{topic}-0")), "{}", ready.body);
    assert_eq!(offline_replicas(&broker)?, 1.0);
    Ok(())
}

#[test]
fn describe_log_dirs_and_producers_answer_kafka_storage_error_for_a_replica_a_failed_fsync_took_offline() -> Result<()> {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeProducersRequest};
    let broker = Broker::start(&[])?;
    let topic = unique_topic("fsync-describe");
    let mut c = RawClient::connect(broker.addr())?;
    c.create_topic(&topic, 1, &[])?;
    let version = c.version_for(ApiKey::Produce)?.min(9);
    let describe_dirs = |c: &mut RawClient| -> Result<i16> {
        let v = c.version_for(ApiKey::DescribeLogDirs)?;
        let resp = c.send(&DescribeLogDirsRequest::default().with_topics(None), v)?;
        Ok(resp.results.first().ok_or_else(|| anyhow!("no log directory"))?.error_code)
    };
    let describe_producers = |c: &mut RawClient| -> Result<i16> {
        let req = DescribeProducersRequest::default()
            .with_topics(vec![TopicRequest::default().with_name(topic_name(&topic)).with_partition_indexes(vec![0])]);
        let resp = c.send(&req, 0)?;
        Ok(resp.topics.first().and_then(|t| t.partitions.first()).ok_or_else(|| anyhow!("no partition 0"))?.error_code)
    };
    let first = c.produce(&topic, 0, record_batch(&[(None, Some(b"durable"))], 1_000), version)?;
    ensure!(first.error_code == 0, "{first:?}");
    assert_eq!((describe_dirs(&mut c)?, describe_producers(&mut c)?), (0, 0), "healthy before the fault");

    failpoints(admin(&broker)?, &format!("fsync=eio@{topic}-0"))?;
    let failed = c.produce(&topic, 0, record_batch(&[(None, Some(b"lost"))], 1_000), version)?;
    assert_eq!(failed.error_code, KAFKA_STORAGE_ERROR, "{failed:?}");
    // As Kafka: the directory holding an offline replica is offline as a whole, and
    // the replica's producer state is not described.
    assert_eq!(describe_dirs(&mut c)?, KAFKA_STORAGE_ERROR, "DescribeLogDirs");
    assert_eq!(describe_producers(&mut c)?, KAFKA_STORAGE_ERROR, "DescribeProducers");
    Ok(())
}

/// partition 0 of `topic` as `b` reports it: (leader, ISR).
fn leader_and_isr(b: &Broker, topic: &str) -> Result<(i32, Vec<i32>)> {
    let mut c = RawClient::connect(b.addr())?;
    let version = c.version_for(ApiKey::Metadata)?.min(9);
    let t = MetadataRequestTopic::default().with_name(Some(topic_name(topic)));
    let resp = c.send(&MetadataRequest::default().with_topics(Some(vec![t])).with_allow_auto_topic_creation(false), version)?;
    let p = resp.topics.first().and_then(|t| t.partitions.first()).ok_or_else(|| anyhow!("no partition 0 of {topic}"))?;
    Ok((p.leader_id.0, p.isr_nodes.iter().map(|n| n.0).collect()))
}

/// Acknowledged (offset, value) pairs and refusals of an acks=all producer.
#[derive(Default)]
struct Outcomes {
    acked: Vec<(i64, String)>,
    errors: Vec<String>,
}

/// Sends "v-0", "v-1", … to partition 0 with acks=all (idempotent) until `stop`,
/// at most `window` in flight.
fn produce(bootstrap: String, topic: String, stop: Arc<AtomicBool>, out: Arc<Mutex<Outcomes>>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "120000")
        .set("linger.ms", "5")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()?;
    rt.block_on(async {
        use futures::StreamExt;
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut sent = 0u64;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            while !stopping && pending.len() < 200 {
                let value = format!("v-{sent}");
                let Ok(f) = producer.send_result(FutureRecord::<(), _>::to(&topic).partition(0).payload(&value)) else { break };
                sent += 1;
                pending.push(async move { (value, f.await) });
            }
            if stopping && pending.is_empty() {
                break;
            }
            let Ok(Some((value, r))) = tokio::time::timeout(Duration::from_millis(20), pending.next()).await else { continue };
            let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
            match r {
                Ok(Ok(d)) => o.acked.push((d.offset, value)),
                Ok(Err((e, _))) => o.errors.push(format!("{value}: {e}")),
                Err(_) => o.errors.push(format!("{value}: delivery future cancelled")),
            }
        }
    });
    Ok(())
}

/// Every record of partition 0 up to its high watermark, read from `bootstrap`.
fn read_all(bootstrap: &str, topic: &str, at_least: i64) -> Result<Vec<(i64, String)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_topic("checker"))
        .set("enable.auto.commit", "false")
        .create()?;
    let high = wait_for("the high watermark to cover the acknowledged records", TIMEOUT, || {
        consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).ok().map(|(_, h)| h).filter(|h| *h >= at_least)
    })?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut got = Vec::new();
    let mut next = 0;
    wait_for("every record up to the high watermark", TIMEOUT, || {
        while let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let Ok(m) = m else { continue };
            got.push((m.offset(), String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string()));
            next = m.offset() + 1;
        }
        (next >= high).then_some(())
    })?;
    Ok(got)
}

#[test]
fn an_fsync_failure_on_the_leader_moves_leadership_and_loses_no_acknowledged_record() -> Result<()> {
    let brokers = karst_tests::cluster::start_cluster(3, |_| {
        ["--set", "broker.session.timeout.ms=3000", "--set", "replica.lag.time.max.ms=3000"].map(String::from).to_vec()
    })?;
    let topic = unique_topic("fsync-leader");
    RawClient::connect(brokers[0].addr())?.create_replicated(&topic, 1, 3, &[("min.insync.replicas", "2")])?;
    let (leader, _) = wait_for("a leader with a full ISR", TIMEOUT, || {
        leader_and_isr(&brokers[0], &topic).ok().filter(|(l, isr)| *l > 0 && isr.len() == 3)
    })?;
    let failing = &brokers[usize::try_from(leader - 1)?];
    let others: Vec<&Broker> = brokers.iter().filter(|b| !std::ptr::eq(*b, failing)).collect();

    let bootstrap = brokers.iter().map(|b| b.bootstrap()).collect::<Vec<_>>().join(",");
    let (stop, out) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Outcomes::default())));
    let producer = {
        let (b, t, s, o) = (bootstrap.clone(), topic.clone(), stop.clone(), out.clone());
        std::thread::spawn(move || produce(b, t, s, o))
    };
    let acked = || out.lock().unwrap_or_else(|e| e.into_inner()).acked.len();
    wait_for("acknowledgements before the fault", TIMEOUT, || (acked() >= 500).then_some(()))?;

    failpoints(admin(failing)?, "fsync=eio")?;
    let (new_leader, isr) = wait_for("leadership to move off the failed broker", TIMEOUT, || {
        leader_and_isr(others[0], &topic).ok().filter(|(l, isr)| *l > 0 && *l != leader && !isr.contains(&leader))
    })?;
    let at_move = acked();
    wait_for("acknowledgements from the new leader", TIMEOUT, || (acked() >= at_move + 500).then_some(()))?;
    stop.store(true, Ordering::SeqCst);
    producer.join().map_err(|_| anyhow!("producer panicked"))??;

    let out = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
    let last = out.acked.iter().map(|(o, _)| *o).max().unwrap_or(-1);
    let others_bootstrap = others.iter().map(|b| b.bootstrap()).collect::<Vec<_>>().join(",");
    let log = read_all(&others_bootstrap, &topic, last + 1)?;
    let by_offset: BTreeMap<i64, &str> = log.iter().map(|(o, v)| (*o, v.as_str())).collect();
    let mut lost = Vec::new();
    for (offset, value) in &out.acked {
        if by_offset.get(offset) != Some(&value.as_str()) {
            lost.push(format!("{value}@{offset}: found {:?}", by_offset.get(offset)));
        }
    }
    let mut seen = BTreeMap::new();
    let duplicated: Vec<&String> = log.iter().filter(|(_, v)| seen.insert(v.clone(), ()).is_some()).map(|(_, v)| v).collect();
    let numbers: Vec<u64> = log.iter().filter_map(|(_, v)| v.strip_prefix("v-")?.parse().ok()).collect();
    let out_of_order = numbers.windows(2).filter(|w| w[0] >= w[1]).count();
    assert!(lost.is_empty(), "{} acknowledged records lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert!(duplicated.is_empty(), "{} duplicated, e.g. {:?}", duplicated.len(), &duplicated[..duplicated.len().min(5)]);
    assert_eq!(out_of_order, 0, "records out of send order");
    eprintln!(
        "leader {leader} failed; new leader {new_leader} with ISR {isr:?}; {} acknowledged ({at_move} before the move), {} refused, {} in the log",
        out.acked.len(),
        out.errors.len(),
        log.len()
    );

    let ready = http_get(admin(failing)?, "/health/ready", &[])?;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("offline"), "{}", ready.body);
    ensure!(offline_replicas(failing)? >= 1.0, "the failed broker counts its offline replica");
    for b in &others {
        let r = http_get(admin(b)?, "/health/ready", &[]).context("ready")?;
        assert_eq!(r.status, 200, "healthy brokers stay ready: {}", r.body);
    }
    Ok(())
}
