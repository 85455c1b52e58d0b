//! Three `karst` processes forming one cluster: a controller quorum of three
//! voters, partitions spread over the brokers, clients routed by Metadata, and
//! a new controller leader after the old one is killed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use karst_tests::raw::RawClient;
use karst_tests::{run_checked, unique_topic, wait_for, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TIMEOUT: Duration = Duration::from_secs(30);
const PARTITIONS: i32 = 12;

/// Ports the OS considers free right now (bound, then released).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
    Ok(listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<_>>()?)
}

/// Starts nodes 1..=3 concurrently (each waits for a quorum before it listens).
fn start_cluster() -> Result<Vec<Broker>> {
    let ports = free_ports(3)?;
    let voters = ports.iter().enumerate().map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1)).collect::<Vec<_>>().join(",");
    std::thread::scope(|s| {
        let handles: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let voters = voters.clone();
                s.spawn(move || {
                    let node = (i + 1).to_string();
                    let controller = format!("127.0.0.1:{port}");
                    Broker::start(&[
                        "--node-id",
                        &node,
                        "--controller-listen",
                        &controller,
                        "--controller-quorum-voters",
                        &voters,
                        "--set",
                        "broker.session.timeout.ms=4000",
                    ])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| anyhow!("starting a broker panicked"))?).collect()
    })
}

fn metadata(addr: std::net::SocketAddr, topic: Option<&str>) -> Result<MetadataResponse> {
    let mut c = RawClient::connect(addr)?;
    let version = c.version_for(ApiKey::Metadata)?.min(9);
    let topics = topic.map(|t| vec![MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))]);
    c.send(&MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(false), version)
}

/// Partition → leader of `topic` as `broker` reports it.
fn leaders(broker: &Broker, topic: &str) -> Result<BTreeMap<i32, i32>> {
    let resp = metadata(broker.addr(), Some(topic))?;
    let t = resp.topics.first().ok_or_else(|| anyhow!("no topic in Metadata response"))?;
    ensure!(t.error_code == 0, "Metadata for {topic}: error {}", t.error_code);
    Ok(t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect())
}

fn create(broker: &Broker, topic: &str, partitions: i32) -> Result<()> {
    RawClient::connect(broker.addr())?.create_topic(topic, partitions, &[])
}

#[test]
fn three_brokers_share_metadata_and_survive_the_controller_leader() -> Result<()> {
    let mut brokers = start_cluster()?;
    let topic = unique_topic("cluster");
    create(&brokers[2], &topic, PARTITIONS).context("CreateTopics through broker 3")?;

    // Every broker reports the same leaders, spread over all three.
    let agreed = wait_for("all brokers to agree on the leaders", TIMEOUT, || {
        let views: Vec<BTreeMap<i32, i32>> = brokers.iter().filter_map(|b| leaders(b, &topic).ok()).collect();
        let complete = views.len() == 3 && views[0].len() == PARTITIONS as usize && views[0].values().all(|l| *l > 0);
        (complete && views.iter().all(|v| *v == views[0])).then(|| views[0].clone())
    })?;
    let on: BTreeSet<i32> = agreed.values().copied().collect();
    ensure!(on == BTreeSet::from([1, 2, 3]), "leaders {agreed:?} are not spread over brokers 1, 2 and 3");
    let resp = metadata(brokers[0].addr(), None)?;
    ensure!(resp.brokers.len() == 3, "broker 1 lists {} brokers", resp.brokers.len());

    // confluent's librdkafka produces to every partition through broker 1's bootstrap...
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers[0].bootstrap())
        .set("acks", "all")
        .set("message.timeout.ms", "20000")
        .create()?;
    rt.block_on(async {
        for p in 0..PARTITIONS {
            let value = format!("value-{p}");
            let record = FutureRecord::<(), _>::to(&topic).partition(p).payload(&value);
            producer.send(record, TIMEOUT).await.map_err(|(e, _)| anyhow!("producing to partition {p}: {e}"))?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // ...and kcat consumes every partition through broker 2's.
    let out = run_checked(
        Command::new("kcat")
            .args(["-b", &brokers[1].bootstrap(), "-C", "-t", &topic, "-o", "beginning", "-e", "-q", "-f", "%p %s\n"])
            .stdin(Stdio::null()),
        TIMEOUT,
    )?;
    let got: BTreeSet<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    let want: BTreeSet<String> = (0..PARTITIONS).map(|p| format!("{p} value-{p}")).collect();
    ensure!(got == want, "kcat consumed {got:?}, expected {want:?}");

    // kill -9 the controller leader; CreateTopics through another broker works again.
    let leader = metadata(brokers[0].addr(), None)?.controller_id.0;
    ensure!((1..=3).contains(&leader), "controller id {leader}");
    brokers[(leader - 1) as usize].kill9()?;
    let other = &brokers[(leader % 3) as usize];
    let killed = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let t = unique_topic("after-failover");
        match create(other, &t, 2) {
            Ok(()) => break,
            Err(e) if killed.elapsed() < TIMEOUT => {
                if attempts % 10 == 1 {
                    eprintln!("CreateTopics after the kill not yet: {e:#}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => bail!("CreateTopics did not succeed within {TIMEOUT:?} of killing the leader: {e:#}"),
        }
    }
    let took = killed.elapsed();
    println!("controller failover: CreateTopics succeeded {took:?} after kill -9 of node {leader} ({attempts} attempts)");
    eprintln!("controller failover: CreateTopics succeeded {took:?} after kill -9 of node {leader} ({attempts} attempts)");
    ensure!(took < Duration::from_secs(10), "failover took {took:?}");
    for b in brokers.iter_mut().filter(|b| b.pid().is_some()) {
        b.check_running()?;
    }
    Ok(())
}
