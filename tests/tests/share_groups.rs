//! KIP-932 share groups against the real binary: confluent-kafka's `ShareConsumer`
//! (`python/share_consumer.py`, one process per consumer) and the Java
//! `KafkaShareConsumer` (`java/ShareCheck.java`), plus raw requests for what a client
//! cannot be made to do on purpose (exact acquisitions across a SIGKILL restart,
//! wrong epochs, acknowledgements of records never acquired, garbage).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use karst_tests::group::Member;
use karst_tests::java::run_java_program;
use karst_tests::raw::{record_batch, topic_name, KeyValue, RawClient, ReadOutcome};
use karst_tests::share::{acquired, heartbeat, share_ack, share_fetch, start_at_earliest, GROUP_RESOURCE};
use karst_tests::{python_script, unique_topic, wait_for, wait_until, Broker, KafkaUnavailable};
use uuid::Uuid;

const INVALID_REQUEST: i16 = 42;
const UNKNOWN_MEMBER_ID: i16 = 25;
const FENCED_MEMBER_EPOCH: i16 = 110;
const GROUP_ID_NOT_FOUND: i16 = 69;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const INVALID_RECORD_STATE: i16 = 121;
const SHARE_SESSION_NOT_FOUND: i16 = 122;
const INVALID_SHARE_SESSION_EPOCH: i16 = 123;
const UNKNOWN_TOPIC_ID: i16 = 100;
const NON_EMPTY_GROUP: i16 = 68;
const INVALID_CONFIG: i16 = 40;

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Produces `values` to `topic`-`partition`, one batch.
fn produce(raw: &mut RawClient, topic: &str, partition: i32, values: &[String]) -> Result<()> {
    let records: Vec<KeyValue<'_>> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    // Now: records older than retention.ms would be deleted while the test runs.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let r = raw.produce(topic, partition, record_batch(&records, now), 9)?;
    ensure!(r.error_code == 0, "produce to {topic}-{partition}: {}", r.error_code);
    Ok(())
}

/// `python3 tests/python/share_consumer.py` doing `action` with every record.
fn share_consumer(name: &str, broker: &Broker, topic: &str, group: &str, action: &str) -> Result<Member> {
    share_consumer_with(name, broker, topic, group, action, &[])
}

fn share_consumer_with(name: &str, broker: &Broker, topic: &str, group: &str, action: &str, extra: &[&str]) -> Result<Member> {
    let mut cmd = Command::new("python3");
    cmd.arg(python_script("share_consumer.py"))
        .args(["--bootstrap", &broker.bootstrap(), "--topic", topic, "--group", group, "--action", action])
        .args(extra)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    Member::spawn(name, &mut cmd)
}

/// A record a consumer reported: partition, offset, value, what it did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    partition: i32,
    offset: i64,
    value: String,
    action: String,
}

fn got(m: &Member) -> Vec<Got> {
    m.lines()
        .iter()
        .filter_map(|l| {
            let mut it = l.strip_prefix("MSG ")?.split(' ');
            Some(Got {
                partition: it.next()?.parse().ok()?,
                offset: it.next()?.parse().ok()?,
                value: it.next()?.to_string(),
                action: it.next()?.to_string(),
            })
        })
        .collect()
}

/// Values a consumer accepted whose acknowledgement commit it reported (ACKED follows).
fn accepted(m: &Member) -> Vec<String> {
    let lines = m.lines();
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for l in &lines {
        if let Some(rest) = l.strip_prefix("MSG ") {
            if rest.ends_with(" accept") {
                pending.push(rest.split(' ').nth(2).unwrap_or_default().to_string());
            }
        } else if l.starts_with("ACKED ") {
            out.append(&mut pending);
        }
    }
    out
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Fails if any member reported a failure; every value accepted exactly once across `members`.
fn accepted_once(members: &[Member], expected: &[String]) -> Result<()> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in members {
        ensure!(!m.lines().iter().any(|l| l.starts_with("FAIL")), "consumer {} failed\n{}", m.name(), m.report());
        for v in accepted(m) {
            *counts.entry(v).or_default() += 1;
        }
    }
    let twice: Vec<&String> = counts.iter().filter(|(_, n)| **n > 1).map(|(v, _)| v).collect();
    ensure!(twice.is_empty(), "accepted more than once: {twice:?}");
    let missing: Vec<&String> = expected.iter().filter(|v| !counts.contains_key(*v)).collect();
    ensure!(missing.is_empty(), "never accepted: {missing:?}");
    Ok(())
}

fn all_accepted(members: &[Member], expected: &[String]) -> bool {
    let seen: BTreeSet<String> = members.iter().flat_map(accepted).collect();
    expected.iter().all(|v| seen.contains(v))
}

/// Four consumers share a two-partition topic (two on each partition, as the simple
/// assignor has it), taking at most 10 records a poll while records keep coming: each
/// record is accepted exactly once, and the work is spread.
#[test]
fn four_confluent_share_consumers_accept_every_record_once() -> Result<()> {
    let mut broker = Broker::start(&[])?;
    let (topic, group) = (unique_topic("share-four"), unique_topic("share-four-group"));
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, 2, &[])?;
    start_at_earliest(&mut raw, &group)?;
    let mut members = (0..4)
        .map(|i| share_consumer_with(&format!("share-{i}"), &broker, &topic, &group, "accept", &["--max-poll-records", "10"]))
        .collect::<Result<Vec<_>>>()?;
    let describe = ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(str(&group))]);
    wait_until("four members, each with a partition", Duration::from_secs(60), || {
        raw.send(&describe, 1).is_ok_and(|r| {
            r.groups.first().is_some_and(|g| {
                g.members.len() == 4
                    && g.members.iter().all(|m| m.assignment.topic_partitions.iter().map(|t| t.partitions.len()).sum::<usize>() == 1)
            })
        })
    })?;
    let all = values("v", 400);
    for (i, chunk) in all.chunks(20).enumerate() {
        produce(&mut raw, &topic, i32::try_from(i % 2)?, chunk)?;
    }
    let waited = wait_until("every record accepted", Duration::from_secs(90), || all_accepted(&members, &all));
    for m in members.iter_mut() {
        m.finish(Duration::from_secs(30))?;
    }
    waited.map_err(|e| anyhow!("{e}\n{}", members.iter().map(Member::report).collect::<Vec<_>>().join("\n")))?;
    accepted_once(&members, &all)?;
    let spread: Vec<usize> = members.iter().map(|m| accepted(m).len()).collect();
    println!("accepted per consumer: {spread:?}");
    ensure!(spread.iter().filter(|n| **n > 0).count() >= 2, "one consumer did all the work: {spread:?}");
    broker.check_running()
}

/// Records one consumer releases, and records another holds until it is killed with
/// SIGKILL (their locks then expire), are delivered again and accepted by a third.
#[test]
fn released_and_abandoned_records_are_delivered_again() -> Result<()> {
    let mut broker = Broker::start(&["--set", "group.share.record.lock.duration.ms=2000"])?;
    let (topic, group) = (unique_topic("share-redeliver"), unique_topic("share-redeliver-group"));
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, 1, &[])?;
    start_at_earliest(&mut raw, &group)?;
    let all = values("r", 30);
    produce(&mut raw, &topic, 0, &all)?;

    // One poll's records released, then it closes (released again and again they would
    // reach the delivery limit).
    let mut releaser = share_consumer_with("releaser", &broker, &topic, &group, "release", &["--stop-after", "1"])?;
    wait_until("the releaser to close", Duration::from_secs(60), || releaser.lines().iter().any(|l| l == "CLOSED"))
        .map_err(|e| anyhow!("{e}\n{}", releaser.report()))?;
    releaser.finish(Duration::from_secs(30))?;
    let released: BTreeSet<String> = got(&releaser).into_iter().map(|g| g.value).collect();

    let mut holder = share_consumer("holder", &broker, &topic, &group, "hold")?;
    wait_until("the holder to acquire records", Duration::from_secs(60), || !got(&holder).is_empty())
        .map_err(|e| anyhow!("{e}\n{}", holder.report()))?;
    holder.kill9()?;
    let held: BTreeSet<String> = got(&holder).into_iter().map(|g| g.value).collect();

    let mut acceptor = share_consumer("acceptor", &broker, &topic, &group, "accept")?;
    let waited = wait_until("every record accepted", Duration::from_secs(90), || all_accepted(std::slice::from_ref(&acceptor), &all));
    acceptor.finish(Duration::from_secs(30))?;
    waited.map_err(|e| anyhow!("{e}\n{}\n{}\n{}", releaser.report(), holder.report(), acceptor.report()))?;
    ensure!(!released.is_empty() && !held.is_empty(), "released {released:?}, held {held:?}");
    accepted_once(std::slice::from_ref(&acceptor), &all)?;
    // The released records came back to the holder (the first after the releaser).
    let again = got(&holder).iter().filter(|g| released.contains(&g.value)).count();
    ensure!(again > 0, "no released record was delivered to the holder: released {released:?}, held {held:?}");
    broker.check_running()
}

/// A record released on every delivery is archived at `group.share.delivery.count.limit`:
/// delivered exactly that often, and the share-partition start moves past it.
#[test]
fn a_record_released_every_time_stops_at_the_delivery_limit() -> Result<()> {
    const LIMIT: usize = 3;
    let mut broker = Broker::start(&["--set", &format!("group.share.delivery.count.limit={LIMIT}")])?;
    let (topic, group) = (unique_topic("share-limit"), unique_topic("share-limit-group"));
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, 1, &[])?;
    start_at_earliest(&mut raw, &group)?;
    let poison = values("p", 5);
    produce(&mut raw, &topic, 0, &poison)?;
    let mut releaser = share_consumer("releaser", &broker, &topic, &group, "release")?;
    let archived = wait_until("the start offset past the released records", Duration::from_secs(90), || {
        start_offset(&mut raw, &group, &topic).is_ok_and(|o| o == 5)
    });
    let deliveries = got(&releaser);
    releaser.finish(Duration::from_secs(30))?;
    archived.map_err(|e| anyhow!("{e}\n{}", releaser.report()))?;
    let deliveries = deliveries.len().max(got(&releaser).len());
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for g in got(&releaser) {
        *counts.entry(g.value).or_default() += 1;
    }
    ensure!(counts.len() == poison.len() && counts.values().all(|n| *n == LIMIT), "deliveries per record: {counts:?} ({deliveries} lines)");
    // Nothing left to deliver: a new consumer of the group gets no record.
    let mut late = share_consumer("late", &broker, &topic, &group, "accept")?;
    produce(&mut raw, &topic, 0, &["after".to_string()])?;
    wait_until("the late consumer to accept the next record", Duration::from_secs(60), || accepted(&late).contains(&"after".to_string()))
        .map_err(|e| anyhow!("{e}\n{}", late.report()))?;
    late.finish(Duration::from_secs(30))?;
    ensure!(accepted(&late) == vec!["after".to_string()], "archived records delivered again: {:?}", got(&late));
    broker.check_running()
}

/// Records a consumer rejects are archived at once: no other consumer gets them.
#[test]
fn rejected_records_are_never_delivered_again() -> Result<()> {
    let mut broker = Broker::start(&[])?;
    let (topic, group) = (unique_topic("share-reject"), unique_topic("share-reject-group"));
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, 1, &[])?;
    start_at_earliest(&mut raw, &group)?;
    let first = values("x", 10);
    produce(&mut raw, &topic, 0, &first)?;
    let mut rejecter = share_consumer_with("rejecter", &broker, &topic, &group, "reject", &["--stop-after", "1"])?;
    wait_until("the rejecter to close", Duration::from_secs(60), || rejecter.lines().iter().any(|l| l == "CLOSED"))
        .map_err(|e| anyhow!("{e}\n{}", rejecter.report()))?;
    rejecter.finish(Duration::from_secs(30))?;
    let rejected: BTreeSet<String> = got(&rejecter).into_iter().map(|g| g.value).collect();
    ensure!(!rejected.is_empty(), "nothing rejected\n{}", rejecter.report());
    let second = values("y", 10);
    produce(&mut raw, &topic, 0, &second)?;
    let mut acceptor = share_consumer("acceptor", &broker, &topic, &group, "accept")?;
    let rest: Vec<String> = first.iter().filter(|v| !rejected.contains(*v)).chain(&second).cloned().collect();
    let waited = wait_until("the rest accepted", Duration::from_secs(60), || all_accepted(std::slice::from_ref(&acceptor), &rest));
    acceptor.finish(Duration::from_secs(30))?;
    waited.map_err(|e| anyhow!("{e}\n{}", acceptor.report()))?;
    accepted_once(std::slice::from_ref(&acceptor), &rest)?;
    let again: Vec<Got> = got(&acceptor).into_iter().filter(|g| rejected.contains(&g.value)).collect();
    ensure!(again.is_empty(), "rejected records delivered again: {again:?}");
    broker.check_running()
}

/// confluent-kafka consumers across a kill -9 of the broker: what one accepted before
/// is not delivered again, what another held (acquired, never acknowledged) is.
#[test]
fn confluent_consumers_resume_after_a_kill9_restart() -> Result<()> {
    let mut broker = Broker::start(&[])?;
    let (topic, group) = (unique_topic("share-crash"), unique_topic("share-crash-group"));
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, 1, &[])?;
    start_at_earliest(&mut raw, &group)?;
    let before = values("a", 20);
    produce(&mut raw, &topic, 0, &before)?;
    let mut first = share_consumer_with("first", &broker, &topic, &group, "accept", &["--stop-after", "1"])?;
    wait_until("the first consumer to close", Duration::from_secs(60), || first.lines().iter().any(|l| l == "CLOSED"))
        .map_err(|e| anyhow!("{e}\n{}", first.report()))?;
    first.finish(Duration::from_secs(30))?;
    let after = values("b", 20);
    produce(&mut raw, &topic, 0, &after)?;
    let mut holder = share_consumer("holder", &broker, &topic, &group, "hold")?;
    wait_until("the holder to acquire records", Duration::from_secs(60), || !got(&holder).is_empty())
        .map_err(|e| anyhow!("{e}\n{}", holder.report()))?;

    broker.restart()?;
    holder.kill9()?;
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    let mut second = share_consumer("second", &broker, &topic, &group, "accept")?;
    let members = |second: &Member| [accepted(&first), accepted(second)].concat();
    let waited = wait_until("every record accepted once across the restart", Duration::from_secs(90), || {
        let seen: BTreeSet<String> = members(&second).into_iter().collect();
        all.iter().all(|v| seen.contains(v))
    });
    second.finish(Duration::from_secs(30))?;
    waited.map_err(|e| anyhow!("{e}\n{}\n{}\n{}", first.report(), holder.report(), second.report()))?;
    ensure!(!accepted(&first).is_empty() && !got(&holder).is_empty(), "accepted before {:?}, held {:?}", accepted(&first), got(&holder));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in members(&second) {
        *counts.entry(v).or_default() += 1;
    }
    let twice: Vec<&String> = counts.iter().filter(|(_, n)| **n > 1).map(|(v, _)| v).collect();
    ensure!(twice.is_empty(), "accepted before the restart and delivered again: {twice:?}");
    broker.check_running()
}

/// DescribeShareGroupOffsets: the group's start offset of `topic`-0.
fn start_offset(raw: &mut RawClient, group: &str, topic: &str) -> Result<i64> {
    use describe_share_group_offsets_request::{DescribeShareGroupOffsetsRequestGroup, DescribeShareGroupOffsetsRequestTopic};
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![DescribeShareGroupOffsetsRequestGroup::default()
        .with_group_id(GroupId(str(group)))
        .with_topics(Some(vec![DescribeShareGroupOffsetsRequestTopic::default()
            .with_topic_name(topic_name(topic))
            .with_partitions(vec![0])]))]);
    let resp = raw.send(&req, 0)?;
    let g = resp.groups.first().ok_or_else(|| anyhow!("no group"))?;
    ensure!(g.error_code == 0, "describe offsets: {}", g.error_code);
    let p = g.topics.first().and_then(|t| t.partitions.first()).ok_or_else(|| anyhow!("no partition in {resp:?}"))?;
    ensure!(p.error_code == 0, "describe offsets partition: {}", p.error_code);
    Ok(p.start_offset)
}

/// Fetches (a new session) until something is acquired.
fn fetch_some(raw: &mut RawClient, group: &str, member: &str, topic: Uuid, max_records: i32) -> Result<BTreeMap<i64, i16>> {
    let mut epoch = 0;
    wait_for("records to acquire", Duration::from_secs(30), || {
        let resp = share_fetch(raw, group, member, epoch, topic, &[], max_records).ok()?;
        epoch += 1;
        let got = acquired(&resp);
        (resp.error_code == 0 && !got.is_empty()).then_some(got)
    })
}

/// Records accepted before a SIGKILL are never delivered again after the restart;
/// records acquired and not acknowledged are.
#[test]
fn acknowledged_state_survives_a_kill9_restart() -> Result<()> {
    let mut broker = Broker::start(&[])?;
    let (topic, group) = (unique_topic("share-restart"), unique_topic("share-restart-group"));
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, 1, &[])?;
    start_at_earliest(&mut raw, &group)?;
    let id = raw.topic_id(&topic)?;
    produce(&mut raw, &topic, 0, &values("a", 20))?;
    let m1 = Uuid::new_v4().to_string();
    let hb = heartbeat(&mut raw, &group, &m1, 0, Some(&[&topic]))?;
    ensure!(hb.error_code == 0 && hb.member_epoch > 0, "join: {hb:?}");
    let got = share_fetch(&mut raw, &group, &m1, 0, id, &[], 15)?;
    ensure!(got.error_code == 0, "fetch: {got:?}");
    ensure!(acquired(&got).keys().copied().collect::<Vec<_>>() == (0..15).collect::<Vec<_>>(), "first fetch acquired {:?}", acquired(&got));
    let ack = share_ack(&mut raw, &group, &m1, 1, id, &[(0, 9, 1)])?;
    let codes: Vec<i16> = ack.responses.iter().flat_map(|t| &t.partitions).map(|p| p.error_code).collect();
    ensure!(ack.error_code == 0 && codes == vec![0], "accepting 0..=9: {ack:?}");
    ensure!(start_offset(&mut raw, &group, &topic)? == 10, "start offset before the restart");

    broker.restart()?;
    let mut raw = RawClient::connect(broker.addr())?;
    ensure!(start_offset(&mut raw, &group, &topic)? == 10, "start offset after the restart");
    let m2 = Uuid::new_v4().to_string();
    let hb = heartbeat(&mut raw, &group, &m2, 0, Some(&[&topic]))?;
    ensure!(hb.error_code == 0, "join after the restart: {hb:?}");
    let again = fetch_some(&mut raw, &group, &m2, id, 100)?;
    ensure!(again.keys().copied().collect::<Vec<_>>() == (10..20).collect::<Vec<_>>(), "after the restart acquired {again:?}");
    ensure!((10..15).all(|o| again[&o] == 2) && (15..20).all(|o| again[&o] == 1), "delivery counts {again:?}");
    broker.check_running()
}

/// A member that stops heartbeating leaves the group after the session timeout, and the
/// records it held are released at once (long before their 30 s locks expire).
#[test]
fn a_silent_member_expires_and_its_records_are_released() -> Result<()> {
    let mut broker = Broker::start(&["--set", "group.share.session.timeout.ms=1500"])?;
    let (topic, group) = (unique_topic("share-expiry"), unique_topic("share-expiry-group"));
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, 1, &[])?;
    start_at_earliest(&mut raw, &group)?;
    let id = raw.topic_id(&topic)?;
    produce(&mut raw, &topic, 0, &values("e", 5))?;
    let silent = Uuid::new_v4().to_string();
    ensure!(heartbeat(&mut raw, &group, &silent, 0, Some(&[&topic]))?.error_code == 0, "join");
    ensure!(fetch_some(&mut raw, &group, &silent, id, 100)?.len() == 5, "the silent member acquires all");
    let describe = ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(str(&group))]);
    wait_until("the silent member to expire", Duration::from_secs(20), || {
        raw.send(&describe, 1)
            .is_ok_and(|r| r.groups.first().is_some_and(|g| g.error_code == 0 && g.members.is_empty() && g.group_state.as_str() == "Empty"))
    })?;
    ensure!(heartbeat(&mut raw, &group, &silent, 1, None)?.error_code == UNKNOWN_MEMBER_ID, "the expired member's heartbeat");
    let next = Uuid::new_v4().to_string();
    ensure!(heartbeat(&mut raw, &group, &next, 0, Some(&[&topic]))?.error_code == 0, "join");
    let again = fetch_some(&mut raw, &group, &next, id, 100)?;
    ensure!(again.len() == 5 && again.values().all(|c| *c == 2), "released records delivered again: {again:?}");
    broker.check_running()
}

#[test]
fn java_share_consumer_reads_and_accepts() -> Result<()> {
    let mut broker = Broker::start(&[])?;
    let (topic, group) = (unique_topic("share-java"), unique_topic("share-java-group"));
    match run_java_program("ShareCheck.java", &[&broker.bootstrap(), &topic, &group], Duration::from_secs(240)) {
        Ok(out) => println!("{}", String::from_utf8_lossy(&out.stdout)),
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => println!("skipped: {why}"),
            None => return Err(e),
        },
    }
    broker.check_running()
}

/// Wrong epochs, unknown members, acknowledgements of records never acquired, share
/// sessions misused and undecodable ShareFetch frames get Kafka's error codes (or a
/// closed connection), and the broker keeps serving.
#[test]
fn bad_share_requests_get_kafkas_errors() -> Result<()> {
    let mut broker = Broker::start(&[])?;
    let (topic, group) = (unique_topic("share-bad"), unique_topic("share-bad-group"));
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, 1, &[])?;
    start_at_earliest(&mut raw, &group)?;
    let id = raw.topic_id(&topic)?;
    produce(&mut raw, &topic, 0, &values("b", 5))?;
    let m = Uuid::new_v4().to_string();

    // Group configs: set ones and defaults; unknown names and bad values refused.
    let (code, configs) = raw.describe_configs(GROUP_RESOURCE, &group)?;
    let reset = configs.get("share.auto.offset.reset").ok_or_else(|| anyhow!("{configs:?}"))?;
    ensure!(code == 0 && reset.value.as_deref() == Some("earliest") && reset.source == 8, "{configs:?}");
    ensure!(
        configs.get("share.record.lock.duration.ms").is_some_and(|c| c.value.as_deref() == Some("30000") && c.source == 5),
        "{configs:?}"
    );
    ensure!(raw.alter_configs(GROUP_RESOURCE, &group, &[("no.such.config", 0, Some("1"))])?.0 == INVALID_CONFIG, "unknown group config");
    ensure!(raw.alter_configs(GROUP_RESOURCE, &group, &[("share.auto.offset.reset", 0, Some("soon"))])?.0 == INVALID_CONFIG, "bad value");

    // Heartbeats.
    ensure!(heartbeat(&mut raw, &group, &m, 0, None)?.error_code == INVALID_REQUEST, "first heartbeat without topics");
    ensure!(heartbeat(&mut raw, &group, "", 0, Some(&[&topic]))?.error_code == INVALID_REQUEST, "empty member id");
    ensure!(heartbeat(&mut raw, &group, &m, -2, None)?.error_code == INVALID_REQUEST, "epoch -2");
    ensure!(heartbeat(&mut raw, "", &m, 0, Some(&[&topic]))?.error_code == INVALID_REQUEST, "empty group id");
    let first = heartbeat(&mut raw, &group, &m, 0, Some(&[&topic]))?;
    ensure!(first.error_code == 0 && first.member_epoch == 1 && first.heartbeat_interval_ms == 5000, "join: {first:?}");
    let parts: Vec<i32> =
        first.assignment.iter().flat_map(|a| &a.topic_partitions).filter(|t| t.topic_id == id).flat_map(|t| t.partitions.clone()).collect();
    ensure!(parts == vec![0], "assignment {first:?}");
    ensure!(heartbeat(&mut raw, &group, &m, 7, None)?.error_code == FENCED_MEMBER_EPOCH, "wrong epoch");
    ensure!(heartbeat(&mut raw, &group, &Uuid::new_v4().to_string(), 1, None)?.error_code == UNKNOWN_MEMBER_ID, "unknown member");
    ensure!(heartbeat(&mut raw, &group, "nobody", -1, None)?.error_code == UNKNOWN_MEMBER_ID, "unknown member leaving");

    // The classic protocol and the share protocol do not mix.
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(str(&group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(str(""))
        .with_protocol_type(str("consumer"));
    ensure!(raw.send(&join, 5)?.error_code == INCONSISTENT_GROUP_PROTOCOL, "JoinGroup of a share group");
    let commit_to = |g: &str| {
        OffsetCommitRequest::default().with_group_id(GroupId(str(g))).with_generation_id_or_member_epoch(-1).with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic_name(&topic)).with_partitions(vec![
                offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1),
            ]),
        ])
    };
    let refused = raw.send(&commit_to(&group), 8)?;
    ensure!(
        refused.topics.iter().flat_map(|t| &t.partitions).all(|p| p.error_code == GROUP_ID_NOT_FOUND),
        "OffsetCommit to a share group: {refused:?}"
    );
    let classic = unique_topic("classic-group");
    ensure!(raw.send(&commit_to(&classic), 8)?.topics.iter().flat_map(|t| &t.partitions).all(|p| p.error_code == 0), "classic commit");
    ensure!(heartbeat(&mut raw, &classic, &m, 0, Some(&[&topic]))?.error_code == GROUP_ID_NOT_FOUND, "share heartbeat to a classic group");
    let described = raw.send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(str(&group))]), 6)?;
    ensure!(
        described.groups.first().is_some_and(|g| g.error_code == GROUP_ID_NOT_FOUND && g.group_state.as_str() == "Dead"),
        "{described:?}"
    );
    let listed = raw.send(&ListGroupsRequest::default().with_types_filter(vec![str("share")]), 5)?;
    ensure!(
        listed
            .groups
            .iter()
            .any(|g| g.group_id.as_str() == group && g.group_type.as_str() == "share" && g.group_state.as_str() == "Stable"),
        "{listed:?}"
    );
    ensure!(!listed.groups.iter().any(|g| g.group_id.as_str() == classic), "types filter");

    // Share sessions.
    ensure!(share_fetch(&mut raw, &group, &m, 3, id, &[], 10)?.error_code == SHARE_SESSION_NOT_FOUND, "no session yet");
    ensure!(share_fetch(&mut raw, &group, &m, -1, id, &[], 10)?.error_code == INVALID_REQUEST, "closing with partitions to fetch");
    ensure!(share_fetch(&mut raw, &group, &m, 0, id, &[(0, 0, 1)], 10)?.error_code == INVALID_REQUEST, "acknowledging when opening");
    let opened = share_fetch(&mut raw, &group, &m, 0, id, &[], 2)?;
    ensure!(acquired(&opened).keys().copied().collect::<Vec<_>>() == vec![0, 1], "acquired {:?}", acquired(&opened));
    ensure!(share_fetch(&mut raw, &group, &m, 5, id, &[], 10)?.error_code == INVALID_SHARE_SESSION_EPOCH, "wrong session epoch");
    ensure!(share_ack(&mut raw, &group, &m, 0, id, &[(0, 0, 1)])?.error_code == INVALID_SHARE_SESSION_EPOCH, "ShareAcknowledge epoch 0");

    // Acknowledgements of records not acquired (by anyone, or by this member).
    let codes = |r: &ShareAcknowledgeResponse| r.responses.iter().flat_map(|t| &t.partitions).map(|p| p.error_code).collect::<Vec<_>>();
    // Past every record delivered: INVALID_REQUEST, as Kafka (the differential test).
    let r = share_ack(&mut raw, &group, &m, 1, id, &[(3, 4, 1)])?;
    ensure!(r.error_code == 0 && codes(&r) == vec![INVALID_REQUEST], "records never delivered: {r:?}");
    let other = Uuid::new_v4().to_string();
    ensure!(heartbeat(&mut raw, &group, &other, 0, Some(&[&topic]))?.error_code == 0, "second member");
    ensure!(share_fetch(&mut raw, &group, &other, 0, id, &[], 10)?.error_code == 0, "second member's session");
    let r = share_ack(&mut raw, &group, &other, 1, id, &[(0, 1, 1)])?;
    ensure!(codes(&r) == vec![INVALID_RECORD_STATE], "another member's records: {r:?}");
    let r = share_ack(&mut raw, &group, &m, 2, id, &[(1, 0, 1)])?;
    ensure!(codes(&r) == vec![INVALID_REQUEST], "first offset after last: {r:?}");
    let r = share_ack(&mut raw, &group, &m, 3, id, &[(0, 0, 9)])?;
    ensure!(codes(&r) == vec![INVALID_REQUEST], "acknowledge type 9: {r:?}");
    let unknown = share_fetch(&mut raw, &group, &m, 4, Uuid::new_v4(), &[], 10)?;
    let unknown_codes: Vec<i16> = unknown.responses.iter().flat_map(|t| &t.partitions).map(|p| p.error_code).collect();
    ensure!(unknown_codes.contains(&UNKNOWN_TOPIC_ID), "unknown topic id: {unknown:?}");
    let r = share_ack(&mut raw, &group, &m, 5, id, &[(0, 1, 1)])?;
    ensure!(r.error_code == 0 && codes(&r) == vec![0], "accepting what it acquired: {r:?}");

    // Offsets of a group with members cannot be altered; after both leave they can.
    let alter = AlterShareGroupOffsetsRequest::default().with_group_id(GroupId(str(&group))).with_topics(vec![
        alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default()
            .with_topic_name(topic_name(&topic))
            .with_partitions(vec![alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default()
                .with_partition_index(0)
                .with_start_offset(4)]),
    ]);
    ensure!(raw.send(&alter, 0)?.error_code == NON_EMPTY_GROUP, "altering a group with members");
    for member in [&m, &other] {
        let epoch = heartbeat(&mut raw, &group, member, -1, None)?;
        ensure!(epoch.error_code == 0 && epoch.member_epoch == -1, "leaving: {epoch:?}");
    }
    let altered = raw.send(&alter, 0)?;
    ensure!(altered.error_code == 0 && altered.responses.iter().flat_map(|t| &t.partitions).all(|p| p.error_code == 0), "{altered:?}");
    ensure!(start_offset(&mut raw, &group, &topic)? == 4, "start offset after AlterShareGroupOffsets");
    let delete = DeleteShareGroupOffsetsRequest::default().with_group_id(GroupId(str(&group))).with_topics(vec![
        delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(topic_name(&topic)),
    ]);
    let deleted = raw.send(&delete, 0)?;
    ensure!(deleted.error_code == 0 && deleted.responses.iter().all(|t| t.error_code == 0), "{deleted:?}");
    ensure!(start_offset(&mut raw, &group, &topic)? == -1, "no start offset after DeleteShareGroupOffsets");
    let gone = raw.send(&DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str(&group))]), 2)?;
    ensure!(gone.results.iter().all(|r| r.error_code == 0), "deleting the empty share group: {gone:?}");

    // Undecodable ShareFetch bodies close the connection; the broker keeps serving.
    for (i, body) in [vec![0xffu8; 40], vec![0u8; 3], (0..200).map(|i| (i * 37 % 251) as u8).collect::<Vec<u8>>()].iter().enumerate() {
        let mut c = RawClient::connect(broker.addr())?;
        let mut frame = Vec::new();
        let header_len = 2 + 2 + 4 + 2 + 1; // key, version, correlation id, null client id, no tags
        frame.extend_from_slice(&((header_len + body.len()) as i32).to_be_bytes());
        frame.extend_from_slice(&78i16.to_be_bytes());
        frame.extend_from_slice(&1i16.to_be_bytes());
        frame.extend_from_slice(&(i as i32).to_be_bytes());
        frame.extend_from_slice(&(-1i16).to_be_bytes());
        frame.push(0);
        frame.extend_from_slice(body);
        c.write_raw(&frame)?;
        match c.read_frame() {
            Ok(ReadOutcome::Closed) | Err(_) => {}
            Ok(ReadOutcome::Frame(f)) => {
                // A body that happens to decode is answered: it must be an error.
                let resp = karst_tests::raw::decode_response::<ShareFetchResponse>(f, 1, i as i32).context("decoding the answer")?;
                ensure!(resp.error_code != 0, "garbage {i} answered without an error: {resp:?}");
            }
        }
    }
    let mut raw = RawClient::connect(broker.addr())?;
    ensure!(heartbeat(&mut raw, &group, &m, 0, Some(&[&topic]))?.error_code == 0, "serving after garbage");
    broker.check_running()
}

/// The dead-letter recipe (`python/share_dlq.py`, README *Share groups*): records that
/// fail are released and tried again until their third delivery, then copied to a DLQ
/// topic (with where they came from and how often they were tried) and accepted;
/// every other record is processed once.
#[test]
fn the_dead_letter_recipe_copies_records_that_keep_failing_to_a_dlq_topic() -> Result<()> {
    let broker = Broker::start(&[])?;
    let (topic, group) = (unique_topic("share-dlq"), unique_topic("share-dlq-group"));
    let dlq = format!("{topic}.dlq");
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, 2, &[])?;
    raw.create_topic(&dlq, 1, &[])?;
    start_at_earliest(&mut raw, &group)?;
    let mut all: Vec<String> = Vec::new();
    for p in 0..2 {
        let vals: Vec<String> = (0..10).map(|i| if i % 4 == 1 { format!("poison-{p}-{i}") } else { format!("job-{p}-{i}") }).collect();
        produce(&mut raw, &topic, p, &vals)?;
        all.extend(vals);
    }
    let mut cmd = Command::new("python3");
    cmd.arg(python_script("share_dlq.py")).args(["--bootstrap", &broker.bootstrap(), "--topic", &topic, "--group", &group]);
    cmd.args(["--dlq", &dlq, "--max-attempts", "3", "--idle-exit", "5"]);
    let out = karst_tests::run_command(&mut cmd, Duration::from_secs(120))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success(), "share_dlq.py failed\n{}", karst_tests::show_output(&out));
    let mut ok: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("OK ")).collect();
    let mut dead: Vec<(&str, &str)> = text.lines().filter_map(|l| l.strip_prefix("DLQ ")).filter_map(|l| l.split_once(' ')).collect();
    ok.sort_unstable();
    dead.sort_unstable();
    let mut jobs: Vec<&str> = all.iter().map(String::as_str).filter(|v| v.starts_with("job")).collect();
    jobs.sort_unstable();
    let mut poison: Vec<(&str, &str)> = all.iter().map(String::as_str).filter(|v| v.starts_with("poison")).map(|v| (v, "3")).collect();
    poison.sort_unstable();
    ensure!(ok == jobs, "processed {ok:?}, expected every job once\n{text}");
    ensure!(dead == poison, "dead-lettered {dead:?}, expected each poison record at its third delivery\n{text}");
    let metrics = karst_tests::metrics::scrape(&broker)?;
    for p in ["0", "1"] {
        let n = metrics.value("karst_share_partition_in_flight_records", &[("group", &group), ("topic", &topic), ("partition", p)])?;
        ensure!(n == 0.0, "{topic}-{p}: {n} records still in flight after every one was accepted");
    }
    ensure!(metrics.value("karst_group_members", &[("group", &group), ("type", "share"), ("state", "Empty")])? == 0.0, "the consumer left");
    let d = karst_tests::clients::karst_json(&broker, &["group", "describe", &group])?;
    let starts: Vec<i64> =
        d["offsets"].as_array().map(|o| o.iter().filter_map(|r| r["committed_offset"].as_i64()).collect()).unwrap_or_default();
    ensure!(d["protocol_type"] == "share" && starts == [10, 10], "karst group describe: {d}");
    let listed = karst_tests::clients::karst_json(&broker, &["group", "list"])?;
    ensure!(listed.as_array().is_some_and(|a| a.iter().any(|g| g["group"] == group.as_str() && g["type"] == "share")), "{listed}");
    let copied = karst_tests::kcat_consume(&broker.bootstrap(), &dlq)?;
    let mut copied: Vec<&str> = copied.iter().map(String::as_str).collect();
    copied.sort_unstable();
    let names: Vec<&str> = poison.iter().map(|(v, _)| *v).collect();
    ensure!(copied == names, "the DLQ topic holds {copied:?}");
    Ok(())
}

/// Each share-group scenario and what the broker at `addr` answered (codes, and the
/// facts a client sees), the same steps against Karst and against Apache Kafka 4.4.
fn share_answers(addr: std::net::SocketAddr, name: &str) -> Result<Vec<(&'static str, String)>> {
    let mut raw = RawClient::connect(addr)?;
    let (topic, group) = (format!("{name}-t"), format!("{name}-g"));
    raw.create_topic(&topic, 1, &[])?;
    let id = raw.topic_id(&topic)?;
    let mut out: Vec<(&'static str, String)> = Vec::new();
    // Kafka creates its offsets topic on the first FindCoordinator.
    raw.send(&FindCoordinatorRequest::default().with_key(str(&group)), 3)?;
    let (code, _) = wait_for("the group coordinator", Duration::from_secs(30), || {
        let r = raw.alter_configs(GROUP_RESOURCE, &group, &[("share.auto.offset.reset", 0, Some("earliest"))]).ok()?;
        (!matches!(r.0, 14..=16)).then_some(r)
    })?;
    out.push(("share.auto.offset.reset=earliest", code.to_string()));
    produce(&mut raw, &topic, 0, &values("d", 5))?;
    let m = Uuid::new_v4().to_string();
    out.push(("a first heartbeat without topics", heartbeat(&mut raw, &group, &m, 0, None)?.error_code.to_string()));
    out.push(("a heartbeat with no member id", heartbeat(&mut raw, &group, "", 0, Some(&[&topic]))?.error_code.to_string()));
    out.push(("epoch -2", heartbeat(&mut raw, &group, &m, -2, None)?.error_code.to_string()));
    let joined = wait_for("the share group to take the member", Duration::from_secs(30), || {
        // Kafka's coordinator may still be loading the group's partition.
        heartbeat(&mut raw, &group, &m, 0, Some(&[&topic])).ok().filter(|r| !matches!(r.error_code, 14..=16))
    })?;
    // Kafka's first member epoch may be past 1 (its epoch also counts metadata
    // changes); a client takes whatever it is given.
    out.push(("join", format!("{} epoch above 0: {}", joined.error_code, joined.member_epoch > 0)));
    out.push(("a greater epoch", heartbeat(&mut raw, &group, &m, 7, None)?.error_code.to_string()));
    out.push(("an unknown member", heartbeat(&mut raw, &group, &Uuid::new_v4().to_string(), 1, None)?.error_code.to_string()));
    // Kafka assigns in the background: the assignment comes with a later heartbeat.
    let mut epoch = joined.member_epoch;
    let mut assigned = joined.assignment.as_ref().is_some_and(|a| a.topic_partitions.iter().any(|t| t.topic_id == id));
    let mut last = String::new();
    wait_until("the assignment", Duration::from_secs(30), || {
        if assigned {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(r) = heartbeat(&mut raw, &group, &m, epoch, None) {
            last = format!("{r:?}");
            epoch = r.member_epoch.max(epoch);
            assigned = r.assignment.as_ref().is_some_and(|a| a.topic_partitions.iter().any(|t| t.topic_id == id));
        }
        assigned
    })
    .map_err(|e| anyhow!("{e}: {last}"))?;
    let got = fetch_some(&mut raw, &group, &m, id, 10)?;
    out.push(("records acquired", format!("{:?}", got.keys().collect::<Vec<_>>())));
    out.push(("every delivery count 1", got.values().all(|c| *c == 1).to_string()));
    // fetch_some opened a session and may have moved its epoch; a new one is opened.
    let fresh = share_fetch(&mut raw, &group, &m, 0, id, &[], 10)?;
    out.push(("a new session while records are acquired", fresh.error_code.to_string()));
    let wrong = share_fetch(&mut raw, &group, &m, 9, id, &[], 10)?;
    out.push(("a session epoch out of order", wrong.error_code.to_string()));
    let stranger = share_fetch(&mut raw, &group, &Uuid::new_v4().to_string(), 3, id, &[], 10)?;
    out.push(("a session that was never opened", stranger.error_code.to_string()));
    let part = |r: &ShareAcknowledgeResponse| {
        format!("{} {:?}", r.error_code, r.responses.iter().flat_map(|t| &t.partitions).map(|p| p.error_code).collect::<Vec<_>>())
    };
    let unacquired = share_ack(&mut raw, &group, &m, 1, id, &[(100, 101, 1)])?;
    out.push(("accepting records never acquired", part(&unacquired)));
    let accepted = share_ack(&mut raw, &group, &m, 2, id, &[(0, 4, 1)])?;
    out.push(("accepting the acquired records", part(&accepted)));
    let again = share_ack(&mut raw, &group, &m, 3, id, &[(0, 4, 1)])?;
    out.push(("accepting them again", part(&again)));
    let mut start = String::new();
    let _ = wait_until("the start offset past the accepted records", Duration::from_secs(10), || {
        start = start_offset(&mut raw, &group, &topic).map_or_else(|e| e.to_string(), |s| s.to_string());
        start == "5"
    });
    out.push(("DescribeShareGroupOffsets after accepting 0..4", start));
    let described = raw.send(&ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(str(&format!("{name}-none")))]), 1)?;
    out.push(("ShareGroupDescribe of no group", described.groups.first().map_or(-1, |g| g.error_code).to_string()));
    let _ = epoch;
    out.push(("a leave", heartbeat(&mut raw, &group, &m, -1, None)?.error_code.to_string()));
    Ok(out)
}

#[test]
fn share_requests_get_the_answers_kafka_gives() -> Result<()> {
    let name = unique_topic("sharediff");
    // Kafka 4.4's share coordinator had not moved the described start offset 10 s
    // after the acknowledgement (it persists share state in the background); Karst
    // answers after its state is written. Karst must say 5 here.
    let slower_on_kafka = |what: &str, karst: &String, _: &String| what == "DescribeShareGroupOffsets after accepting 0..4" && karst == "5";
    karst_tests::kafka::same_answers_as_kafka(|addr| share_answers(addr, &name), slower_on_kafka)
}

/// One partition's state as ReadShareGroupState answers it: (error, state epoch,
/// start offset, batches as (first, last, state, delivery count)).
type ReadState = (i16, i32, i64, Vec<(i64, i64, i8, i16)>);

fn read_state(raw: &mut RawClient, group: &str, topic: Uuid, leader_epoch: i32) -> Result<ReadState> {
    use read_share_group_state_request::{PartitionData, ReadStateData};
    let req = ReadShareGroupStateRequest::default().with_group_id(str(group)).with_topics(vec![ReadStateData::default()
        .with_topic_id(topic)
        .with_partitions(vec![PartitionData::default().with_partition(0).with_leader_epoch(leader_epoch)])]);
    let resp = raw.send(&req, 0)?;
    let p = resp.results.iter().flat_map(|r| &r.partitions).next().ok_or_else(|| anyhow!("no partition in {resp:?}"))?;
    let batches = p.state_batches.iter().map(|b| (b.first_offset, b.last_offset, b.delivery_state, b.delivery_count)).collect();
    Ok((p.error_code, p.state_epoch, p.start_offset, batches))
}

fn write_state(
    raw: &mut RawClient,
    group: &str,
    topic: Uuid,
    epochs: (i32, i32),
    start: i64,
    batches: &[(i64, i64, i8, i16)],
) -> Result<i16> {
    use write_share_group_state_request::{PartitionData, StateBatch, WriteStateData};
    let batches = batches
        .iter()
        .map(|&(first, last, state, count)| {
            StateBatch::default().with_first_offset(first).with_last_offset(last).with_delivery_state(state).with_delivery_count(count)
        })
        .collect();
    let part = PartitionData::default()
        .with_partition(0)
        .with_state_epoch(epochs.0)
        .with_leader_epoch(epochs.1)
        .with_start_offset(start)
        .with_state_batches(batches);
    let req = WriteShareGroupStateRequest::default()
        .with_group_id(str(group))
        .with_topics(vec![WriteStateData::default().with_topic_id(topic).with_partitions(vec![part])]);
    let resp = raw.send(&req, 0)?;
    resp.results.iter().flat_map(|r| &r.partitions).next().map(|p| p.error_code).ok_or_else(|| anyhow!("no partition in {resp:?}"))
}

/// The broker-to-broker share-state APIs check what the writer claims before any
/// state changes: leader epochs ahead of the metadata (UNKNOWN_LEADER_EPOCH) or
/// behind it (FENCED_LEADER_EPOCH), state batches that overlap, unknown topics, and
/// a state epoch older than an AlterShareGroupOffsets made (FENCED_STATE_EPOCH).
#[test]
fn share_state_writes_are_checked_against_what_the_coordinator_knows() -> Result<()> {
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    const FENCED_LEADER_EPOCH: i16 = 74;
    const UNKNOWN_LEADER_EPOCH: i16 = 75;
    const FENCED_STATE_EPOCH: i16 = 124;
    const ACKNOWLEDGED: i8 = 2;
    let broker = Broker::start(&[])?;
    let (topic, group) = (unique_topic("share-state"), unique_topic("share-state-group"));
    let mut raw = RawClient::connect(broker.addr())?;
    raw.create_topic(&topic, 1, &[])?;
    let id = raw.topic_id(&topic)?;
    produce(&mut raw, &topic, 0, &values("s", 10))?;
    let member = Uuid::new_v4().to_string();
    let hb = heartbeat(&mut raw, &group, &member, 0, Some(&[&topic]))?;
    ensure!(hb.error_code == 0, "join: {hb:?}");
    ensure!(hb.member_epoch > 0, "join: {hb:?}");

    let fresh = read_state(&mut raw, &group, id, 0)?;
    ensure!(fresh == (0, 0, -1, vec![]), "a share-partition never started reads as uninitialized: {fresh:?}");
    ensure!(write_state(&mut raw, &group, id, (0, 1), 3, &[])? == UNKNOWN_LEADER_EPOCH, "a leader epoch the metadata has not reached");
    let overlapping = [(3, 6, ACKNOWLEDGED, 1), (5, 7, ACKNOWLEDGED, 1)];
    ensure!(write_state(&mut raw, &group, id, (0, 0), 3, &overlapping)? == INVALID_REQUEST, "overlapping state batches");
    ensure!(write_state(&mut raw, &group, id, (0, 0), 3, &[(3, 3, 3, 1)])? == INVALID_REQUEST, "delivery state 3 does not exist");
    ensure!(write_state(&mut raw, &group, Uuid::new_v4(), (0, 0), 3, &[])? == UNKNOWN_TOPIC_OR_PARTITION, "an unknown topic id");
    ensure!(write_state(&mut raw, &group, id, (0, 0), 3, &[(4, 5, ACKNOWLEDGED, 1)])? == 0, "a good write");
    let stored = read_state(&mut raw, &group, id, 0)?;
    ensure!(stored == (0, 0, 3, vec![(4, 5, ACKNOWLEDGED, 1)]), "read back: {stored:?}");
    ensure!(write_state(&mut raw, &group, id, (0, -1), 0, &[])? == FENCED_LEADER_EPOCH, "a deposed leader's write");
    ensure!(read_state(&mut raw, &group, id, 0)? == stored, "unchanged by the refused writes");

    let left = heartbeat(&mut raw, &group, &member, -1, None)?;
    ensure!(left.error_code == 0, "leaving: {left:?}");
    let alter = AlterShareGroupOffsetsRequest::default().with_group_id(GroupId(str(&group))).with_topics(vec![
        alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default()
            .with_topic_name(topic_name(&topic))
            .with_partitions(vec![alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default()
                .with_partition_index(0)
                .with_start_offset(7)]),
    ]);
    let altered = raw.send(&alter, 0)?;
    ensure!(altered.error_code == 0, "{altered:?}");
    ensure!(write_state(&mut raw, &group, id, (0, 0), 3, &[])? == FENCED_STATE_EPOCH, "a write of the state before the alteration");
    let after = read_state(&mut raw, &group, id, 0)?;
    ensure!(after == (0, 1, 7, vec![]), "the altered state, at state epoch 1: {after:?}");
    Ok(())
}
