//! KIP-227 incremental fetch sessions end to end, against the real binary:
//!
//! - the raw protocol: a full fetch opens a session, incremental fetches carry only the
//!   partitions that got records or a moved high watermark or log start offset, a
//!   forgotten partition is no longer fetched, an incremental long poll waits on every
//!   session partition, an unknown session is FETCH_SESSION_ID_NOT_FOUND (70), a wrong
//!   epoch INVALID_FETCH_SESSION_EPOCH (71), epoch -1 closes; with
//!   `max.incremental.fetch.session.cache.slots=0` no session is created;
//! - real consumers of a topic of 1,000 partitions where a few get records: the Java
//!   client fetches incrementally and most partitions are left out of the answers
//!   (the broker's metrics say so); librdkafka has no fetch sessions (it always sends
//!   session id 0, epoch -1), and is checked to be served in full;
//! - three nodes: followers fetch with one session per leader, and a Fetch v16+ sent to
//!   a broker that does not lead the partition names the leader (KIP-951).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, FetchRequest, FetchResponse, MetadataRequest};
use karst_tests::java::run_java_program;
use karst_tests::metrics::{scrape, Exposition};
use karst_tests::raw::{decode_response, record_batch, topic_name, RawClient, ReadOutcome};
use karst_tests::{unique_topic, wait_for, wait_until, Broker, KafkaUnavailable};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// A metric's growth between two scrapes.
fn grew(before: &Exposition, after: &Exposition, name: &str) -> f64 {
    after.value_or_zero(name, &[]) - before.value_or_zero(name, &[])
}

/// The topic's id (Metadata v12), once every partition has a leader.
fn topic_id(c: &mut RawClient, topic: &str, partitions: usize) -> Result<uuid::Uuid> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
        .with_allow_auto_topic_creation(false);
    wait_for(&format!("leaders for {topic}"), TIMEOUT, || {
        let resp = c.send(&req, 12).ok()?;
        let t = resp.topics.first()?;
        let led = t.partitions.iter().filter(|p| p.error_code == 0 && p.leader_id.0 >= 0).count();
        (t.error_code == 0 && led == partitions).then_some(t.topic_id)
    })
}

/// Produces one record to `partition` (acks=all) and fails unless it is accepted.
fn produce(c: &mut RawClient, topic: &str, partition: i32, value: &[u8]) -> Result<()> {
    let p = c.produce(topic, partition, record_batch(&[(None, Some(value))], 1_700_000_000_000), 9)?;
    ensure!(p.error_code == 0, "producing to {topic}-{partition}: error {}", p.error_code);
    Ok(())
}

/// How a test names its topic in Fetch: by id from v13, by name before.
#[derive(Clone)]
struct Named {
    topic: String,
    id: uuid::Uuid,
    version: i16,
}

impl Named {
    fn topic(&self, partitions: Vec<FetchPartition>) -> FetchTopic {
        let t = FetchTopic::default().with_partitions(partitions);
        if self.version >= 13 {
            t.with_topic_id(self.id)
        } else {
            t.with_topic(topic_name(&self.topic))
        }
    }

    fn forgotten(&self, partitions: Vec<i32>) -> ForgottenTopic {
        let t = ForgottenTopic::default().with_partitions(partitions);
        if self.version >= 13 {
            t.with_topic_id(self.id)
        } else {
            t.with_topic(topic_name(&self.topic))
        }
    }
}

fn at(partition: i32, offset: i64) -> FetchPartition {
    FetchPartition::default().with_partition(partition).with_fetch_offset(offset).with_partition_max_bytes(1 << 20)
}

/// A fetch with the given session id and epoch that does not wait.
fn session_fetch(id: i32, epoch: i32) -> FetchRequest {
    FetchRequest::default().with_max_wait_ms(0).with_min_bytes(0).with_max_bytes(1 << 20).with_session_id(id).with_session_epoch(epoch)
}

/// partition → (record bytes, high watermark, log start offset), of every partition answered.
fn answered(resp: &FetchResponse) -> Result<Vec<(i32, usize, i64, i64)>> {
    ensure!(resp.error_code == 0, "fetch error {}", resp.error_code);
    let mut out = Vec::new();
    for t in &resp.responses {
        for p in &t.partitions {
            ensure!(p.error_code == 0, "partition {}: error {}", p.partition_index, p.error_code);
            out.push((p.partition_index, p.records.as_ref().map_or(0, |r| r.len()), p.high_watermark, p.log_start_offset));
        }
    }
    Ok(out)
}

fn indexes(resp: &FetchResponse) -> Result<BTreeSet<i32>> {
    Ok(answered(resp)?.into_iter().map(|(p, ..)| p).collect())
}

/// Full fetch, then incremental fetches on a topic of six partitions each holding one
/// record, at one Fetch version.
fn session_at(broker: &Broker, version: i16) -> Result<()> {
    let mut c = RawClient::connect(broker.addr())?;
    let topic = unique_topic(&format!("fs-raw-v{version}"));
    c.create_topic(&topic, 6, &[])?;
    let id = topic_id(&mut c, &topic, 6)?;
    let t = Named { topic: topic.clone(), id, version };
    for p in 0..6 {
        produce(&mut c, &topic, p, b"first")?;
    }

    // Full fetch at the log ends: a session, and every partition in the answer.
    let full = session_fetch(0, 0).with_topics(vec![t.topic((0..6).map(|p| at(p, 1)).collect())]);
    let resp = c.send(&full, version)?;
    let session = resp.session_id;
    ensure!(session != 0, "v{version}: no session for a full fetch with epoch 0: {resp:?}");
    let got = answered(&resp)?;
    ensure!(got.len() == 6 && got.iter().all(|(_, bytes, hw, _)| *bytes == 0 && *hw == 1), "v{version}: full answer {got:?}");

    // Records in partitions 1 and 4: only they come back, with their new high watermark.
    produce(&mut c, &topic, 1, b"second")?;
    produce(&mut c, &topic, 4, b"second")?;
    let resp = c.send(&session_fetch(session, 1), version)?;
    ensure!(resp.session_id == session, "v{version}: session id {} != {session}", resp.session_id);
    let got = answered(&resp)?;
    let ones: Vec<i32> = got.iter().filter(|(_, bytes, hw, _)| *bytes > 0 && *hw == 2).map(|(p, ..)| *p).collect();
    ensure!(ones == vec![1, 4] && got.len() == 2, "v{version}: incremental answer {got:?}, expected partitions 1 and 4 with records");

    // The client moves on in 1 and 4 and names only them: nothing changed, nothing sent.
    let resp = c.send(&session_fetch(session, 2).with_topics(vec![t.topic(vec![at(1, 2), at(4, 2)])]), version)?;
    ensure!(answered(&resp)?.is_empty(), "v{version}: nothing new, yet {:?}", answered(&resp)?);

    // A moved log start offset (DeleteRecords) is sent without records.
    let del = DeleteRecordsRequest::default()
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name(&topic))
            .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(3).with_offset(1)])])
        .with_timeout_ms(10_000);
    let d = c.send(&del, 2)?;
    let low = d.topics.first().and_then(|t| t.partitions.first()).map(|p| (p.error_code, p.low_watermark));
    ensure!(low == Some((0, 1)), "DeleteRecords: {d:?}");
    let resp = c.send(&session_fetch(session, 3), version)?;
    ensure!(answered(&resp)? == vec![(3, 0, 1, 1)], "v{version}: after DeleteRecords {:?}", answered(&resp)?);

    // A forgotten partition is no longer fetched.
    produce(&mut c, &topic, 0, b"unseen")?;
    let resp = c.send(&session_fetch(session, 4).with_forgotten_topics_data(vec![t.forgotten(vec![0])]), version)?;
    ensure!(answered(&resp)?.is_empty(), "v{version}: forgotten partition 0 answered: {:?}", answered(&resp)?);

    // An incremental long poll wakes for a session partition the request did not name.
    let started = Instant::now();
    let poll = session_fetch(session, 5).with_max_wait_ms(30_000).with_min_bytes(1);
    let correlation = c.correlation_id();
    let frame = c.encode(&poll, version, correlation)?;
    c.write_raw(&frame)?;
    wait_until("the incremental fetch to wait in purgatory", TIMEOUT, || {
        scrape(broker).is_ok_and(|m| m.value_or_zero("karst_fetch_purgatory_size", &[]) >= 1.0)
    })?;
    let mut other = RawClient::connect(broker.addr())?;
    produce(&mut other, &topic, 5, b"wake")?;
    let ReadOutcome::Frame(frame) = c.read_frame()? else { bail!("connection closed during the long poll") };
    let resp: FetchResponse = decode_response(frame, version, correlation)?;
    let waited = started.elapsed();
    ensure!(indexes(&resp)? == BTreeSet::from([5]), "v{version}: long poll answered {:?}", answered(&resp)?);
    ensure!(waited < Duration::from_secs(20), "v{version}: the long poll took {waited:?}, not woken by the append");

    // Session errors: the top-level code, session id 0, no partitions.
    let resp = c.send(&session_fetch(session, 99), version)?;
    ensure!(
        (resp.error_code, resp.session_id, resp.responses.len()) == (INVALID_FETCH_SESSION_EPOCH, 0, 0),
        "v{version}: wrong epoch answered {resp:?}"
    );
    let unknown = if session == i32::MAX { 1 } else { session + 1 };
    let resp = c.send(&session_fetch(unknown, 1), version)?;
    ensure!(
        (resp.error_code, resp.session_id, resp.responses.len()) == (FETCH_SESSION_ID_NOT_FOUND, 0, 0),
        "v{version}: unknown session answered {resp:?}"
    );
    // The wrong epoch did not move the session on: epoch 6 is still the next one.
    let resp = c.send(&session_fetch(session, 6), version)?;
    ensure!(resp.error_code == 0 && resp.session_id == session, "v{version}: epoch 6 after errors: {resp:?}");

    // Epoch -1 closes it: answered without a session, and the id is gone.
    let close = session_fetch(session, -1).with_topics(vec![t.topic(vec![at(2, 1)])]);
    let resp = c.send(&close, version)?;
    ensure!(resp.session_id == 0 && indexes(&resp)? == BTreeSet::from([2]), "v{version}: closing fetch answered {resp:?}");
    let resp = c.send(&session_fetch(session, 7), version)?;
    ensure!(resp.error_code == FETCH_SESSION_ID_NOT_FOUND, "v{version}: closed session answered {resp:?}");
    Ok(())
}

#[test]
fn incremental_fetches_carry_only_changed_partitions() -> Result<()> {
    let broker = Broker::start(&[])?;
    let before = scrape(&broker)?;
    // By name (v12) and by topic id (the newest version).
    let newest = RawClient::connect(broker.addr())?.version_for(ApiKey::Fetch)?;
    ensure!(newest == 18, "Fetch v{newest} is the newest the broker and the codec share, expected 18");
    for version in [7, 12, newest] {
        session_at(&broker, version).with_context(|| format!("Fetch v{version}"))?;
    }
    let after = scrape(&broker)?;
    let incremental = grew(&before, &after, "karst_fetch_session_incremental_fetches_total");
    let omitted = grew(&before, &after, "karst_fetch_session_partitions_omitted_total");
    let sent = grew(&before, &after, "karst_fetch_session_partitions_sent_total");
    println!("incremental fetches {incremental}, partitions sent {sent}, omitted {omitted}");
    ensure!(incremental >= 18.0 && omitted > sent, "metrics: {incremental} incremental fetches, {sent} sent, {omitted} omitted");
    ensure!(grew(&before, &after, "karst_fetch_session_created_total") == 3.0, "one session per version");
    Ok(())
}

#[test]
fn zero_slots_disable_fetch_sessions() -> Result<()> {
    let broker = Broker::start(&["--set", "max.incremental.fetch.session.cache.slots=0"])?;
    let mut c = RawClient::connect(broker.addr())?;
    let topic = unique_topic("fs-noslots");
    c.create_topic(&topic, 2, &[])?;
    let id = topic_id(&mut c, &topic, 2)?;
    let t = Named { topic, id, version: 18 };
    let resp = c.send(&session_fetch(0, 0).with_topics(vec![t.topic(vec![at(0, 0), at(1, 0)])]), 18)?;
    ensure!(resp.session_id == 0 && indexes(&resp)? == BTreeSet::from([0, 1]), "full fetch without slots: {resp:?}");
    let resp = c.send(&session_fetch(1, 1), 18)?;
    ensure!(resp.error_code == FETCH_SESSION_ID_NOT_FOUND, "incremental fetch without slots: {resp:?}");
    ensure!(scrape(&broker)?.value("karst_fetch_session_cache_sessions", &[])? == 0.0, "sessions cached");
    Ok(())
}

// ---- real consumers of 1,000 partitions -----------------------------------------------------

const MANY: i32 = 1000;
/// Records produced before the consumer starts, to a few partitions.
const ALREADY: i32 = 12;
/// Records produced one at a time while the consumer reads.
const ROUNDS: i32 = 20;

/// A broker with a topic of 1,000 partitions, `ALREADY` records in four of them.
fn many_partitions(prefix: &str) -> Result<(Broker, String)> {
    let broker = Broker::start(&[])?;
    let topic = unique_topic(prefix);
    let mut c = RawClient::connect(broker.addr())?;
    c.create_topic(&topic, MANY, &[])?;
    topic_id(&mut c, &topic, MANY as usize)?;
    for i in 0..ALREADY {
        produce(&mut c, &topic, (i % 4) * (MANY / 4) + 1, format!("already-{i}").as_bytes())?;
    }
    Ok((broker, topic))
}

#[test]
fn a_java_consumer_of_1000_partitions_fetches_incrementally() -> Result<()> {
    let (broker, topic) = many_partitions("fs-java")?;
    let before = scrape(&broker)?;
    let args = [broker.bootstrap(), topic.clone(), MANY.to_string(), ALREADY.to_string(), ROUNDS.to_string()];
    let out = match run_java_program("FetchSessionsCheck.java", &args.iter().map(String::as_str).collect::<Vec<_>>(), TIMEOUT * 3) {
        Ok(out) => out,
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                return Ok(());
            }
            None => return Err(e),
        },
    };
    println!("{}", String::from_utf8_lossy(&out.stdout));
    let after = scrape(&broker)?;
    let created = grew(&before, &after, "karst_fetch_session_created_total");
    let incremental = grew(&before, &after, "karst_fetch_session_incremental_fetches_total");
    let sent = grew(&before, &after, "karst_fetch_session_partitions_sent_total");
    let omitted = grew(&before, &after, "karst_fetch_session_partitions_omitted_total");
    println!("Java consumer: {created} sessions created, {incremental} incremental fetches, partitions sent {sent}, omitted {omitted}");
    ensure!(created >= 1.0, "the Java consumer opened no fetch session");
    ensure!(incremental >= f64::from(ROUNDS), "only {incremental} incremental fetches for {ROUNDS} rounds");
    // Each incremental answer carries the partition that got a record (and little
    // else): of 1,000 partitions per fetch, well over 99% are left out.
    ensure!(omitted >= 0.99 * (sent + omitted), "partitions sent {sent}, omitted {omitted}: most should be omitted");
    // The consumer closes its session as it closes (a full fetch with epoch -1).
    println!("sessions cached after the consumer closed: {}", after.value("karst_fetch_session_cache_sessions", &[])?);
    Ok(())
}

#[test]
fn librdkafka_consumes_1000_partitions_without_fetch_sessions() -> Result<()> {
    let (broker, topic) = many_partitions("fs-rdkafka")?;
    let before = scrape(&broker)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        // assign() needs a group.id; the group is never joined.
        .set("group.id", unique_topic("fs-rdkafka-group"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..MANY {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let read = |n: i32, what: &str| -> Result<()> {
        let mut got = 0;
        wait_until(what, TIMEOUT, || {
            while let Some(m) = consumer.poll(Duration::from_millis(100)) {
                if m.is_ok() {
                    got += 1;
                }
            }
            got >= n
        })
    };
    read(ALREADY, "the records already there")?;
    let mut c = RawClient::connect(broker.addr())?;
    for r in 0..ROUNDS {
        produce(&mut c, &topic, (r % 4) * (MANY / 4), format!("round-{r}").as_bytes())?;
        read(1, &format!("round {r}'s record"))?;
    }
    let after = scrape(&broker)?;
    let fetches =
        after.value("karst_requests_total", &[("api", "Fetch")])? - before.value_or_zero("karst_requests_total", &[("api", "Fetch")]);
    let created = grew(&before, &after, "karst_fetch_session_created_total");
    let incremental = grew(&before, &after, "karst_fetch_session_incremental_fetches_total");
    println!("librdkafka: {fetches} fetches, {created} sessions created, {incremental} incremental fetches");
    // librdkafka (2.12) has no KIP-227 support: it sends session id 0 and epoch -1 on
    // every fetch, so each one names (and is answered for) every partition.
    ensure!(fetches >= f64::from(ROUNDS), "only {fetches} fetches");
    ensure!(created == 0.0 && incremental == 0.0, "librdkafka opened sessions: {created} created, {incremental} incremental");
    Ok(())
}

// ---- three nodes -------------------------------------------------------------------------

/// Each broker's view of partition → (leader, leader epoch).
fn leaders(c: &mut RawClient, topic: &str) -> Result<Vec<(i32, i32)>> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
        .with_allow_auto_topic_creation(false);
    let resp = c.send(&req, 12)?;
    let t = resp.topics.first().ok_or_else(|| anyhow!("no topic in {resp:?}"))?;
    let mut parts: Vec<(i32, i32, i32)> = t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0, p.leader_epoch)).collect();
    parts.sort();
    Ok(parts.into_iter().map(|(_, l, e)| (l, e)).collect())
}

#[test]
fn followers_fetch_with_sessions_and_non_leaders_name_the_leader() -> Result<()> {
    let brokers = karst_tests::cluster::start_cluster(3, |_| Vec::new())?;
    let addr = |id: i32| -> SocketAddr { brokers[(id - 1) as usize].addr() };
    let topic = unique_topic("fs-cluster");
    let mut c = RawClient::connect(addr(1))?;
    // Every write needs all three replicas: acks=all succeeds only through the followers' fetches.
    c.create_replicated(&topic, 6, 3, &[("min.insync.replicas", "3")])?;
    let id = topic_id(&mut c, &topic, 6)?;
    let layout = wait_for("full ISRs", TIMEOUT, || {
        let l = leaders(&mut c, &topic).ok()?;
        let isr_full = metadata_isr(&mut c, &topic).ok()?.iter().all(|n| *n == 3);
        isr_full.then_some(l)
    })?;
    for round in 0..5 {
        for (p, (leader, _)) in layout.iter().enumerate() {
            let mut to_leader = RawClient::connect(addr(*leader))?;
            wait_until(&format!("acks=all to partition {p}"), TIMEOUT, || {
                to_leader
                    .produce(&topic, p as i32, record_batch(&[(None, Some(format!("r{round}").as_bytes()))], 1_700_000_000_000), 9)
                    .is_ok_and(|r| r.error_code == 0)
            })?;
        }
    }
    // Each broker leads partitions the other two follow: one session per follower,
    // whose idle incremental fetches leave out the partitions that did not change.
    for (i, b) in brokers.iter().enumerate() {
        if !layout.iter().any(|(l, _)| *l == i as i32 + 1) {
            continue;
        }
        let m = wait_for(&format!("node {}'s followers to fetch incrementally", i + 1), TIMEOUT, || {
            let m = scrape(b).ok()?;
            (m.value_or_zero("karst_fetch_session_partitions_omitted_total", &[]) > 0.0).then_some(m)
        })?;
        let sessions = m.value("karst_fetch_session_cache_sessions", &[])?;
        let incremental = m.value_or_zero("karst_fetch_session_incremental_fetches_total", &[]);
        let sent = m.value_or_zero("karst_fetch_session_partitions_sent_total", &[]);
        let omitted = m.value_or_zero("karst_fetch_session_partitions_omitted_total", &[]);
        println!(
            "node {}: {sessions} fetch sessions cached, {incremental} incremental fetches, {sent} partitions sent, {omitted} omitted",
            i + 1
        );
        ensure!(sessions == 2.0, "node {} leads partitions two followers fetch, yet caches {sessions} sessions", i + 1);
    }

    // KIP-951: a Fetch at v16+ to a broker that does not lead the partition names the
    // leader, its epoch and its address; v15 does not.
    let (p, (leader, epoch)) = layout.iter().enumerate().next().ok_or_else(|| anyhow!("no partitions"))?;
    let other = (1..=3).find(|n| n != leader).ok_or_else(|| anyhow!("no other node"))?;
    let mut to_other = RawClient::connect(addr(other))?;
    for version in [15, 16, 18] {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_topics(vec![FetchTopic::default().with_topic_id(id).with_partitions(vec![at(p as i32, 0)])]);
        let resp = to_other.send(&req, version)?;
        let part = resp.responses.first().and_then(|t| t.partitions.first()).ok_or_else(|| anyhow!("empty answer {resp:?}"))?;
        ensure!(part.error_code == NOT_LEADER_OR_FOLLOWER, "v{version}: {resp:?}");
        let named = (part.current_leader.leader_id.0, part.current_leader.leader_epoch);
        let endpoints: Vec<(i32, i32)> = resp.node_endpoints.iter().map(|e| (e.node_id.0, e.port)).collect();
        if version >= 16 {
            ensure!(named == (*leader, *epoch), "v{version}: current leader {named:?}, Metadata says {:?}", (leader, epoch));
            ensure!(endpoints == vec![(*leader, i32::from(addr(*leader).port()))], "v{version}: node endpoints {endpoints:?}");
        } else {
            ensure!(named == (-1, -1) && endpoints.is_empty(), "v{version} has no KIP-951 fields: {resp:?}");
        }
    }
    Ok(())
}

/// ISR sizes of every partition of `topic`.
fn metadata_isr(c: &mut RawClient, topic: &str) -> Result<Vec<usize>> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
        .with_allow_auto_topic_creation(false);
    let resp = c.send(&req, 12)?;
    let t = resp.topics.first().ok_or_else(|| anyhow!("no topic"))?;
    Ok(t.partitions.iter().map(|p| p.isr_nodes.len()).collect())
}
