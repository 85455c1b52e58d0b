//! What one client may make the broker allocate or wait for: metadata records per
//! request, partitions per broker, connections (total, per address, idle), and
//! controller commits that cannot happen (they hold only their own requests).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreateTopicsRequest, FetchRequest, MetadataRequest};
use karst_tests::cluster::start_cluster_with;
use karst_tests::raw::{record_batch, topic_name, RawClient};
use karst_tests::{unique_topic, wait_for, Broker, Launch};

const POLICY_VIOLATION: i16 = 44;
const KAFKA_STORAGE_ERROR: i16 = 56;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// CreateTopics of `(name, partitions)` in one request; the results in request order.
fn create_topics(c: &mut RawClient, topics: &[(&str, i32)]) -> Result<Vec<CreatableTopicResult>> {
    let req = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(
        topics
            .iter()
            .map(|(name, n)| CreatableTopic::default().with_name(topic_name(name)).with_num_partitions(*n).with_replication_factor(1))
            .collect(),
    );
    let version = c.version_for(ApiKey::CreateTopics)?;
    Ok(c.send(&req, version)?.topics)
}

/// The error code Metadata (without auto-creation) gives for `topic`.
fn topic_error(c: &mut RawClient, topic: &str) -> Result<i16> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
        .with_allow_auto_topic_creation(false);
    Ok(c.send(&req, 9)?.topics.first().context("no topic in Metadata")?.error_code)
}

fn create_partitions(c: &mut RawClient, topic: &str, count: i32) -> Result<(i16, Option<String>)> {
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatePartitionsTopic::default().with_name(topic_name(topic)).with_count(count).with_assignments(None)]);
    let r = c.send(&req, 1)?.results.into_iter().next().context("no CreatePartitions result")?;
    Ok((r.error_code, r.error_message.map(|m| m.to_string())))
}

fn produce_one(c: &mut RawClient, topic: &str, partition: i32, value: &[u8]) -> Result<i64> {
    let p = c.produce(topic, partition, record_batch(&[(None, Some(value))], 1_700_000_000_000), 7)?;
    ensure!(p.error_code == 0, "produce to {topic}-{partition}: error {}", p.error_code);
    Ok(p.base_offset)
}

/// Fetch v12 from offset 0 without waiting; (error, high watermark, bytes of records).
fn fetch(c: &mut RawClient, topic: &str, partition: i32) -> Result<(i16, i64, usize)> {
    let req = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
        .with_topic(topic_name(topic))
        .with_partitions(vec![FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(0)
            .with_partition_max_bytes(1 << 20)])]);
    let resp = c.send(&req, 12)?;
    let p = &resp.responses.first().context("no topic in Fetch")?.partitions.first().context("no partition in Fetch")?;
    Ok((p.error_code, p.high_watermark, p.records.as_ref().map_or(0, |r| r.len())))
}

#[test]
fn a_request_of_more_than_10000_metadata_records_is_refused_whole_with_policy_violation() -> Result<()> {
    let broker = Broker::start(&[])?;
    let mut c = RawClient::connect(broker.addr())?;
    let huge = unique_topic("huge");
    let r = create_topics(&mut c, &[(&huge, 10_000)])?;
    ensure!(r[0].error_code == POLICY_VIOLATION, "10,000 partitions + the topic record: {:?}", r[0]);
    ensure!(topic_error(&mut c, &huge)? == UNKNOWN_TOPIC_OR_PARTITION, "nothing was committed");
    // Kafka counts the whole request: two topics that each fit are refused together.
    let (a, b) = (unique_topic("half-a"), unique_topic("half-b"));
    let r = create_topics(&mut c, &[(&a, 6_000), (&b, 6_000)])?;
    ensure!(r.iter().all(|t| t.error_code == POLICY_VIOLATION), "{r:?}");
    ensure!(topic_error(&mut c, &a)? == UNKNOWN_TOPIC_OR_PARTITION && topic_error(&mut c, &b)? == UNKNOWN_TOPIC_OR_PARTITION);
    let small = unique_topic("small");
    c.create_topic(&small, 2, &[])?;
    let (code, message) = create_partitions(&mut c, &small, 20_000)?;
    ensure!(code == POLICY_VIOLATION, "CreatePartitions to 20,000: {code} {message:?}");
    // Not refused by the bound: 9,999 records fit (and what fits is created).
    let (code, message) = create_partitions(&mut c, &small, 12)?;
    ensure!(code == 0, "CreatePartitions to 12: {code} {message:?}");
    Ok(())
}

#[test]
fn max_broker_partitions_refuses_what_would_exceed_it_before_committing() -> Result<()> {
    let broker = Broker::start(&["--set", "max.broker.partitions=10"])?;
    let mut c = RawClient::connect(broker.addr())?;
    let (a, b, d) = (unique_topic("a"), unique_topic("b"), unique_topic("d"));
    c.create_topic(&a, 6, &[])?;
    let r = create_topics(&mut c, &[(&b, 5)])?;
    ensure!(r[0].error_code == POLICY_VIOLATION, "6 + 5 > 10: {:?}", r[0]);
    ensure!(topic_error(&mut c, &b)? == UNKNOWN_TOPIC_OR_PARTITION, "nothing was committed");
    let (code, message) = create_partitions(&mut c, &a, 11)?;
    ensure!(code == POLICY_VIOLATION, "growing to 11: {code} {message:?}");
    c.create_topic(&d, 4, &[])?;
    ensure!(produce_one(&mut c, &d, 3, b"fits")? == 0);
    Ok(())
}

/// The wedge of issue 14: a topic whose partitions cannot all be opened (here: the
/// process is out of descriptors) used to make every later CreateTopics fail.
#[test]
fn a_topic_that_cannot_be_opened_does_not_block_the_next_one() -> Result<()> {
    let broker = Broker::start_with(&[], Launch { nofile: Some(256), ..Launch::default() })?;
    let mut c = RawClient::connect(broker.addr())?;
    let huge = unique_topic("too-many-files");
    let r = create_topics(&mut c, &[(&huge, 600)])?;
    ensure!(r[0].error_code == KAFKA_STORAGE_ERROR, "600 partitions under 256 descriptors: {:?}", r[0]);
    for i in 0..3 {
        let next = unique_topic(&format!("after-{i}"));
        c.create_topic(&next, 1, &[]).with_context(|| format!("CreateTopics #{i} after the failed one"))?;
        ensure!(produce_one(&mut c, &next, 0, b"still working")? == 0);
    }
    Ok(())
}

#[test]
fn max_connections_per_ip_closes_the_newcomer() -> Result<()> {
    let broker = Broker::start(&["--set", "max.connections.per.ip=2"])?;
    let mut first = RawClient::connect(broker.addr())?;
    let mut second = RawClient::connect(broker.addr())?;
    first.api_versions()?;
    second.api_versions()?;
    let mut third = RawClient::connect(broker.addr())?;
    third.expect_closed(Duration::from_secs(30))?;
    drop(first);
    // The place is given back once the broker sees the close.
    wait_for("a connection after one closed", Duration::from_secs(30), || {
        RawClient::connect(broker.addr()).ok().and_then(|mut c| c.api_versions().ok())
    })?;
    second.api_versions()?;
    Ok(())
}

#[test]
fn max_connections_holds_newcomers_until_a_connection_closes() -> Result<()> {
    let broker = Broker::start(&["--set", "max.connections=2"])?;
    let mut first = RawClient::connect(broker.addr())?;
    let mut second = RawClient::connect(broker.addr())?;
    first.api_versions()?;
    second.api_versions()?;
    // The kernel completes the handshake (backlog); the broker does not accept it yet.
    let addr = broker.addr();
    let third = std::thread::spawn(move || -> Result<()> {
        let mut c = RawClient::connect(addr)?;
        c.api_versions()?;
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(500));
    ensure!(!third.is_finished(), "a third connection was served while two were open");
    drop(first);
    third.join().map_err(|_| anyhow::anyhow!("third client panicked"))??;
    second.api_versions()?;
    Ok(())
}

#[test]
fn idle_connections_are_closed_after_connections_max_idle_ms() -> Result<()> {
    let broker = Broker::start(&["--set", "connections.max.idle.ms=300"])?;
    let mut c = RawClient::connect(broker.addr())?;
    c.api_versions()?;
    c.expect_closed(Duration::from_secs(30))?;
    Ok(())
}

/// Issue 14 item 4: CreateTopics that cannot commit (two of three voters stopped)
/// used to block the broker's runtime workers on the commit, one each, so with two
/// workers every other connection stalled. They now wait as futures: produce and
/// fetch on other connections go on.
#[test]
fn produce_and_fetch_go_on_while_controller_commits_cannot_happen() -> Result<()> {
    let launch = Launch { env: vec![("TOKIO_WORKER_THREADS".into(), "2".into())], ..Launch::default() };
    let nodes = start_cluster_with(3, |_| Vec::new(), &launch)?;
    let mut c = RawClient::connect(nodes[0].addr())?;
    let topic = unique_topic("live");
    c.create_topic(&topic, 3, &[])?;
    // A partition node 1 leads (placement spreads three partitions over three nodes).
    let partition = wait_for("node 1 to lead a partition", Duration::from_secs(30), || {
        let req = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(&topic)))]));
        let resp = c.send(&req, 9).ok()?;
        resp.topics.first()?.partitions.iter().find(|p| p.leader_id.0 == 1 && p.error_code == 0).map(|p| p.partition_index)
    })?;
    // Metadata may name the leader before that broker has opened the partition
    // (UNKNOWN_TOPIC_OR_PARTITION meanwhile).
    wait_for("the first record", Duration::from_secs(30), || produce_one(&mut c, &topic, partition, b"before").ok())?;
    let mut producer = RawClient::connect(nodes[0].addr())?;
    let mut consumer = RawClient::connect(nodes[0].addr())?;
    producer.api_versions()?;
    consumer.api_versions()?;

    let version = c.version_for(ApiKey::CreateTopics)?;
    nodes[1].signal("STOP")?;
    nodes[2].signal("STOP")?;
    // Four requests (twice the workers), of ten topics each: no commit can happen,
    // so each waits out the controller's timeouts, topic after topic.
    let mut admins = Vec::new();
    for i in 0..4 {
        let mut a = RawClient::connect(nodes[0].addr())?;
        let names: Vec<String> = (0..10).map(|t| unique_topic(&format!("stuck-{i}-{t}"))).collect();
        let req = CreateTopicsRequest::default().with_timeout_ms(60_000).with_topics(
            names
                .iter()
                .map(|n| CreatableTopic::default().with_name(topic_name(n)).with_num_partitions(1).with_replication_factor(1))
                .collect(),
        );
        let correlation_id = a.correlation_id();
        let frame = a.encode(&req, version, correlation_id)?;
        a.write_raw(&frame)?;
        admins.push(a);
    }
    // The raw client's read timeout (15 s) bounds each: far less than the stuck
    // requests take (ten topics × the controller's propose timeout).
    let offset = produce_one(&mut producer, &topic, partition, b"during").context("produce while commits are stuck")?;
    ensure!(offset == 1, "produced at {offset}");
    let (code, hw, bytes) = fetch(&mut consumer, &topic, partition).context("fetch while commits are stuck")?;
    ensure!(code == 0 && hw == 2 && bytes > 0, "fetch: error {code}, high watermark {hw}, {bytes} bytes");
    let mut late = RawClient::connect(nodes[0].addr()).context("a new connection while commits are stuck")?;
    late.api_versions()?;
    nodes[1].signal("CONT")?;
    nodes[2].signal("CONT")?;
    drop(admins);
    Ok(())
}
