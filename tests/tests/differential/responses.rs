//! Responses compared field by field: the same well-formed request goes to Kafka and to
//! Karst at every version of its API that both advertise (and the protocol crate
//! encodes), both responses are flattened into `path = value` pairs
//! ([`karst_tests::fields`]) and compared. Instance-specific values (node ids, cluster
//! and topic ids, hosts and ports, generated member and producer ids) are not
//! compared; differences Karst keeps on purpose are listed in [`kept`] with their
//! reasons. Anything else that differs fails the test, with both values printed.

use std::collections::BTreeSet;
use std::fmt::Debug;

use anyhow::{anyhow, Context, Result};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest, FetchRequest, FetchResponse,
    FindCoordinatorRequest, GroupId, IncrementalAlterConfigsRequest, InitProducerIdRequest, ListGroupsRequest, ListOffsetsRequest,
    MetadataRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest,
};
use kafka_protocol::protocol::StrBytes;
use karst_tests::fields::{compare, flatten, rekey, Difference, Kept, Rules};
use karst_tests::raw::{produce_request, record_batch, topic_name, RawClient};
use karst_tests::unique_topic;

use super::{Pair, Side, LEADER_TIMEOUT};

/// What the scenarios share: a topic of three partitions on each broker (same name),
/// with known records in partition 0, and its id on each side.
pub(super) struct Fixture {
    topic: String,
    /// A one-partition topic with max.message.bytes=200.
    small: String,
    kafka_id: uuid::Uuid,
    karst_id: uuid::Uuid,
    /// `small`'s id on Kafka and on Karst.
    small_ids: (uuid::Uuid, uuid::Uuid),
    /// A group with committed offsets (and no members) on both.
    group: String,
}

impl Fixture {
    pub(super) fn topic(&self) -> &str {
        &self.topic
    }

    fn id(&self, side: Side) -> uuid::Uuid {
        match side {
            Side::Kafka => self.kafka_id,
            Side::Karst => self.karst_id,
        }
    }

    fn small_id(&self, side: Side) -> uuid::Uuid {
        match side {
            Side::Kafka => self.small_ids.0,
            Side::Karst => self.small_ids.1,
        }
    }
}

/// A Produce request for one partition, naming the topic both ways (v13+ reads the id).
fn produce_to(topic: &str, id: uuid::Uuid, partition: i32, records: Vec<u8>) -> kafka_protocol::messages::ProduceRequest {
    let mut req = produce_request(topic, partition, records);
    req.topic_data[0].topic_id = id;
    req
}

/// Fixed timestamps, so both logs hold the same bytes.
const T0: i64 = 1_700_000_000_000;

/// Paths whose values belong to one instance: never compared.
fn ignored() -> Vec<(&'static str, &'static str)> {
    vec![
        ("throttle_time_ms", "time a broker throttled the client"),
        ("*node_id", "broker ids"),
        ("*leader_id", "broker ids"),
        ("*controller_id", "broker ids"),
        ("host", "listener addresses"),
        ("*.host", "listener addresses"),
        ("port", "listener addresses"),
        ("*.port", "listener addresses"),
        ("*cluster_id", "generated per cluster"),
        ("*topic_id", "generated per topic"),
        ("*replica_nodes*", "broker ids"),
        ("*isr_nodes*", "broker ids"),
        ("*offline_replicas*", "broker ids"),
        ("producer_id", "allocated per cluster"),
        ("*member_id", "generated per member"),
        ("*session_id", "fetch session ids are random (whether one was given is compared through the steps' flags)"),
    ]
}

/// Differences Karst keeps on purpose, each with its reason. The test fails on a kept
/// difference that no scenario shows any more, so the list stays true.
fn kept() -> Vec<Kept> {
    const FLUSH: &str = "Karst fsyncs before it acknowledges by default (log.flush.interval.messages=1, a 1 s background \
                         period otherwise), Kafka leaves flushing to the OS (both unset); every topic follows the broker's";
    vec![
        Kept {
            scenario: "DescribeConfigs*",
            path: "results[0].configs[message.downconversion.enable]*",
            karst_lacks: false,
            why: "Kafka 4 removed message formats v0/v1 and this config with them; Karst serves old clients (issue 15)",
        },
        Kept {
            scenario: "CreateTopics, validate only*",
            path: "topics[0].configs[message.downconversion.enable]*",
            karst_lacks: false,
            why: "Kafka 4 removed message formats v0/v1 and this config with them; Karst serves old clients (issue 15)",
        },
        Kept {
            scenario: "*refused*",
            path: "*error_message",
            karst_lacks: false,
            why: "error texts are Karst's own (the codes are compared); Kafka's default texts are used where a client shows them",
        },
        Kept {
            scenario: "*",
            path: "*configs[min.insync.replicas]*source",
            karst_lacks: false,
            why: "Kafka 4 writes a cluster-wide min.insync.replicas (DYNAMIC_DEFAULT_BROKER_CONFIG) when it formats its storage \
                  with eligible leader replicas (KIP-966); Karst writes no dynamic config of its own, so its default is DEFAULT_CONFIG",
        },
        Kept {
            scenario: "DescribeConfigs*",
            path: "results[0].configs[min.insync.replicas].synonyms[1]*",
            karst_lacks: true,
            why: "Kafka lists that cluster-wide dynamic default and then the static default; Karst has only the latter",
        },
        Kept {
            scenario: "Broker configs*",
            path: "*configs[min.insync.replicas]*",
            karst_lacks: false,
            why: "the cluster-wide min.insync.replicas Kafka 4 writes when it formats its storage (KIP-966), which Karst does not",
        },
        Kept {
            scenario: "Broker configs*",
            path: "*configs[log.flush.interval.*",
            karst_lacks: false,
            why: "Karst fsyncs before it acknowledges by default and keeps that choice static (a restart changes it), so \
                  log.flush.interval.* are read-only; Kafka leaves flushing to the OS",
        },
        Kept {
            scenario: "Broker configs*",
            path: "before.results[0].configs[max.connections*",
            karst_lacks: false,
            why: "Karst bounds connections by default (10,000 in all and per address); Kafka's defaults are unbounded",
        },
        Kept {
            scenario: "Broker configs*",
            path: "before.results[0].configs[group.max.size]*",
            karst_lacks: false,
            why: "Karst bounds a consumer group at 1,000 members by default; Kafka's default is unbounded",
        },
        Kept {
            scenario: "Broker configs*",
            path: "before.results[0].configs[log.retention.check.interval.ms]*",
            karst_lacks: false,
            why: "Karst looks for segments past retention every 30 s, Kafka every 5 minutes",
        },
        Kept { scenario: "DescribeConfigs*", path: "results[0].configs[flush.*", karst_lacks: false, why: FLUSH },
        Kept { scenario: "CreateTopics, validate only*", path: "topics[0].configs[flush.*", karst_lacks: false, why: FLUSH },
    ]
}

/// One comparison: a scenario at one version.
pub(super) struct Compared {
    pub scenario: String,
    /// Paths either answer held: a comparison of nothing would show 0.
    pub fields: usize,
    pub differences: Vec<Difference>,
    /// A request that failed on one side (or both): no comparison.
    pub failed: Option<String>,
}

pub(super) type Ask<'a> = dyn Fn(&mut RawClient, i16, Side) -> Result<Box<dyn Debug>> + 'a;

/// Sends each scenario's request to both brokers and keeps the comparisons.
pub(super) struct Runner<'p> {
    pair: &'p mut Pair,
    rules: Rules,
    pub out: Vec<Compared>,
}

impl<'p> Runner<'p> {
    pub(super) fn new(pair: &'p mut Pair, rules: Rules) -> Runner<'p> {
        Runner { pair, rules, out: Vec::new() }
    }

    /// Asks both at only the lowest and the highest version of `key` from `floor` that
    /// both serve; lists matching `(glob, key field)` are compared by that field.
    pub(super) fn run_ends(&mut self, scenario: &str, key: ApiKey, floor: i16, keyed: &[(&str, &str)], ask: &Ask<'_>) -> Result<()> {
        for v in self.pair.versions(key, floor)? {
            self.compare_at(scenario, key, v, keyed, ask);
        }
        Ok(())
    }

    /// Asks both brokers at every version of `key` from `floor` that both serve.
    fn run(&mut self, scenario: &str, key: ApiKey, floor: i16, ask: &Ask<'_>) -> Result<()> {
        self.run_keyed(scenario, key, floor, &[], ask)
    }

    /// [`Runner::run`] up to `ceiling` (for a field later versions dropped).
    fn run_upto(&mut self, scenario: &str, key: ApiKey, floor: i16, ceiling: i16, ask: &Ask<'_>) -> Result<()> {
        self.run_inner(scenario, key, floor, ceiling, &[], ask)
    }

    /// [`Runner::run`], with the lists matching each `(list glob, key field)` compared
    /// element by element by that field ([`rekey`]), not by position.
    fn run_keyed(&mut self, scenario: &str, key: ApiKey, floor: i16, keyed: &[(&str, &str)], ask: &Ask<'_>) -> Result<()> {
        self.run_inner(scenario, key, floor, i16::MAX, keyed, ask)
    }

    fn run_inner(&mut self, scenario: &str, key: ApiKey, floor: i16, ceiling: i16, keyed: &[(&str, &str)], ask: &Ask<'_>) -> Result<()> {
        let versions = self.pair.versions(key, floor)?;
        let (lo, hi) = (versions[0], (*versions.last().unwrap_or(&versions[0])).min(ceiling));
        for v in lo..=hi {
            self.compare_at(scenario, key, v, keyed, ask);
        }
        Ok(())
    }

    fn compare_at(&mut self, scenario: &str, key: ApiKey, v: i16, keyed: &[(&str, &str)], ask: &Ask<'_>) {
        let flat = |r: Box<dyn Debug>| keyed.iter().fold(flatten(&r), |f, (list, field)| rekey(f, list, field));
        let name = format!("{scenario} ({key:?} v{v})");
        let kafka = ask(&mut self.pair.kafka, v, Side::Kafka).map(flat);
        let karst = ask(&mut self.pair.karst, v, Side::Karst).map(flat);
        let compared = match (kafka, karst) {
            (Ok(a), Ok(b)) => {
                let fields = a.keys().chain(b.keys()).collect::<BTreeSet<_>>().len();
                Compared { differences: compare(&name, &a, &b, &self.rules), scenario: name, fields, failed: None }
            }
            (a, b) => {
                let why = [("Kafka", a.err()), ("Karst", b.err())]
                    .into_iter()
                    .filter_map(|(side, e)| e.map(|e| format!("{side}: {e:#}")))
                    .collect::<Vec<_>>()
                    .join("; ");
                Compared { scenario: name, fields: 0, differences: Vec::new(), failed: Some(why) }
            }
        };
        self.out.push(compared);
    }
}

/// A consumer's Fetch of partition 0 of `topic` (by name and id) from `offset`.
fn fetch_request(topic: &str, id: uuid::Uuid, offset: i64, isolation_level: i8) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation_level)
        .with_topics(vec![FetchTopic::default().with_topic(topic_name(topic)).with_topic_id(id).with_partitions(vec![
            FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20),
        ])])
}

/// A fetch of nothing, that does not wait, in session `id` at `epoch`.
fn session_fetch(id: i32, epoch: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_id(id)
        .with_session_epoch(epoch)
}

/// `topic` (by name, and by id from v13) with `(partition, offset)` to fetch.
fn fetch_topic(topic: &str, id: uuid::Uuid, version: i16, at: &[(i32, i64)]) -> FetchTopic {
    let parts =
        at.iter().map(|(p, o)| FetchPartition::default().with_partition(*p).with_fetch_offset(*o).with_partition_max_bytes(1 << 20));
    let t = FetchTopic::default().with_partitions(parts.collect());
    if version >= 13 {
        t.with_topic_id(id)
    } else {
        t.with_topic(topic_name(topic))
    }
}

/// What one fetch session went through; compared field by field.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug
struct SessionSteps {
    /// Epoch 0 of three partitions at their ends (one record each).
    full: FetchResponse,
    opened: bool,
    /// Epoch 1, naming nothing, after a record was produced to partition 1.
    incremental: FetchResponse,
    same_session: bool,
    /// Epoch 2, naming partition 1 at its new end.
    nothing_new: FetchResponse,
    /// Epoch -1: closed, answered without a session.
    closing: FetchResponse,
    closing_without_session: bool,
    /// An incremental fetch of the closed session.
    after_close: FetchResponse,
}

/// A fresh topic `name` of three partitions with one record each, and a fetch session
/// on it from a full fetch to its close.
fn session_steps(c: &mut RawClient, version: i16, name: &str, side: Side) -> Result<SessionSteps> {
    let side_name = match side {
        Side::Kafka => "Kafka",
        Side::Karst => "Karst",
    };
    c.create_topic(name, 3, &[]).with_context(|| format!("creating {name} on {side_name}"))?;
    let id = super::wait_leaders(c, name, 3, side_name)?;
    for p in 0..3 {
        super::produce_until_accepted(c, name, p, &[(Some(b"k"), Some(b"first"))], T0, side_name)?;
    }
    let full = c.send(&session_fetch(0, 0).with_topics(vec![fetch_topic(name, id, version, &[(0, 1), (1, 1), (2, 1)])]), version)?;
    let session = full.session_id;
    super::produce_until_accepted(c, name, 1, &[(Some(b"k"), Some(b"second"))], T0 + 1_000, side_name)?;
    let incremental = c.send(&session_fetch(session, 1), version)?;
    let nothing_new = c.send(&session_fetch(session, 2).with_topics(vec![fetch_topic(name, id, version, &[(1, 2)])]), version)?;
    let closing = c.send(&session_fetch(session, -1), version)?;
    let after_close = c.send(&session_fetch(session, 3), version)?;
    Ok(SessionSteps {
        opened: session != 0,
        same_session: incremental.session_id == session && nothing_new.session_id == session,
        closing_without_session: closing.session_id == 0,
        full,
        incremental,
        nothing_new,
        closing,
        after_close,
    })
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn boxed<T: Debug + 'static>(r: T) -> Result<Box<dyn Debug>> {
    Ok(Box::new(r))
}

/// Creates the shared topic and group on both brokers.
pub(super) fn prepare(pair: &mut Pair) -> Result<Fixture> {
    let topic = unique_topic("diff-fields");
    let small = unique_topic("diff-small");
    let group = unique_topic("diff-group");
    let mut ids = Vec::new();
    let mut small_ids = Vec::new();
    for (side, c) in [("Kafka", &mut pair.kafka), ("Karst", &mut pair.karst)] {
        c.create_topic(&topic, 3, &[]).with_context(|| format!("creating {topic} on {side}"))?;
        let id = super::wait_leaders(c, &topic, 3, side)?;
        c.create_topic(&small, 1, &[("max.message.bytes", "200")]).with_context(|| format!("creating {small} on {side}"))?;
        small_ids.push(super::wait_leaders(c, &small, 1, side)?);
        // Two batches in partition 0, one in partition 2 (for DeleteRecords).
        for (partition, records, ts) in [
            (0, vec![(Some(&b"k0"[..]), Some(&b"v0"[..])), (Some(b"k1"), None)], T0),
            (0, vec![(None, Some(&b"v2"[..]))], T0 + 1_000),
            (2, vec![(Some(&b"a"[..]), Some(&b"1"[..])), (Some(b"b"), Some(b"2")), (Some(b"c"), Some(b"3"))], T0),
        ] {
            super::produce_until_accepted(c, &topic, partition, &records, ts, side)?;
        }
        let version = c.version_for(ApiKey::OffsetCommit)?.min(7);
        let req =
            OffsetCommitRequest::default().with_group_id(GroupId(s(&group))).with_generation_id_or_member_epoch(-1).with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(2)]),
            ]);
        // Kafka creates its offsets topic on the first FindCoordinator (answering
        // COORDINATOR_NOT_AVAILABLE meanwhile); until then commits get NOT_COORDINATOR.
        let find = FindCoordinatorRequest::default().with_key(s(&group));
        karst_tests::wait_for(&format!("a group coordinator on {side}"), LEADER_TIMEOUT, || {
            c.send(&find, 3).ok().filter(|r| r.error_code == 0).map(|_| ())
        })?;
        let mut last = String::new();
        let committed = karst_tests::wait_for(&format!("an offset commit on {side}"), LEADER_TIMEOUT, || {
            let resp = match c.send(&req, version) {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{e:#}");
                    return None;
                }
            };
            let code = resp.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code);
            last = format!("error code {code:?}");
            (code == Some(0)).then_some(())
        });
        committed.with_context(|| format!("committing offsets for {group} on {side} (last: {last})"))?;
        ids.push(id);
    }
    Ok(Fixture { topic, small, kafka_id: ids[0], karst_id: ids[1], small_ids: (small_ids[0], small_ids[1]), group })
}

pub(super) fn run(pair: &mut Pair, f: &Fixture) -> Result<Vec<Compared>> {
    let mut r = Runner::new(pair, Rules { ignore: ignored(), kept: kept() });
    let topic = f.topic.as_str();

    r.run("Metadata for the topic", ApiKey::Metadata, 0, &|c, v, _| {
        let mut req =
            MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]));
        if v >= 4 {
            req = req.with_allow_auto_topic_creation(false);
        }
        boxed(c.send(&req, v)?)
    })?;
    r.run("Metadata for the topic with authorized operations", ApiKey::Metadata, 8, &|c, v, _| {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
            .with_allow_auto_topic_creation(false)
            .with_include_topic_authorized_operations(true);
        boxed(c.send(&req, v)?)
    })?;

    r.run("Fetch partition 0 from offset 0", ApiKey::Fetch, 4, &|c, v, side| boxed(c.send(&fetch_request(topic, f.id(side), 0, 0), v)?))?;
    r.run("Fetch partition 0 from offset 2 (the second batch)", ApiKey::Fetch, 4, &|c, v, side| {
        boxed(c.send(&fetch_request(topic, f.id(side), 2, 0), v)?)
    })?;

    r.run("Produce one batch to partition 1 (acks=all)", ApiKey::Produce, 3, &|c, v, side| {
        let req = produce_to(topic, f.id(side), 1, record_batch(&[(Some(b"p"), Some(b"produced"))], T0 + 2_000));
        boxed(c.send(&req, v)?)
    })?;
    let small = f.small.as_str();
    r.run("Produce refused: a record above max.message.bytes=200", ApiKey::Produce, 3, &|c, v, side| {
        let req = produce_to(small, f.small_id(side), 0, record_batch(&[(None, Some(&[7u8; 1000][..]))], T0));
        boxed(c.send(&req, v)?)
    })?;
    r.run("Produce refused: a corrupt batch (CRC)", ApiKey::Produce, 3, &|c, v, side| {
        let mut batch = record_batch(&[(None, Some(b"x"))], T0);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        boxed(c.send(&produce_to(small, f.small_id(side), 0, batch), v)?)
    })?;
    r.run("CreateTopics refused: retention.ms=abc (validate only)", ApiKey::CreateTopics, 2, &|c, v, _| {
        let t = CreatableTopic::default()
            .with_name(topic_name(&unique_topic("diff-badvalue")))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default().with_name(s("retention.ms")).with_value(Some(s("abc")))]);
        let mut resp = c.send(&CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000).with_validate_only(true), v)?;
        // The name is unique per side.
        resp.topics.iter_mut().for_each(|t| t.name = topic_name("(unique)"));
        boxed(resp)
    })?;
    // kafka-reassign-partitions --verify clears throttles so, on every broker.
    r.run("IncrementalAlterConfigs, DELETE of broker 1's unset throttle rates", ApiKey::IncrementalAlterConfigs, 0, &|c, v, _| {
        let deletes = ["leader.replication.throttled.rate", "follower.replication.throttled.rate"]
            .map(|k| AlterableConfig::default().with_name(s(k)).with_config_operation(1).with_value(None))
            .to_vec();
        let req = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default().with_resource_type(4).with_resource_name(s("1")).with_configs(deletes)]);
        boxed(c.send(&req, v)?)
    })?;
    r.run("IncrementalAlterConfigs refused: retention.ms=abc", ApiKey::IncrementalAlterConfigs, 0, &|c, v, _| {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(topic))
            .with_configs(vec![AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(s("abc")))])]);
        boxed(c.send(&req, v)?)
    })?;

    // The special timestamps from -3 on, at every version: the versions before the one
    // that introduced each answer UNSUPPORTED_VERSION; without tiered storage -4 is the
    // log start and -5 and -6 find no offset.
    for (what, ts) in [
        ("earliest", -2),
        ("latest", -1),
        ("the second batch's timestamp", T0 + 1_000),
        ("a timestamp past the end", T0 + 5_000),
        ("the max timestamp (-3)", -3),
        ("the earliest local offset (-4)", -4),
        ("the latest tiered offset (-5)", -5),
        ("the earliest pending upload (-6)", -6),
    ] {
        r.run(&format!("ListOffsets {what}"), ApiKey::ListOffsets, 1, &|c, v, _| {
            let req = ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts)])]);
            boxed(c.send(&req, v)?)
        })?;
    }

    r.run("OffsetForLeaderEpoch, epoch 0 of partition 0", ApiKey::OffsetForLeaderEpoch, 0, &|c, v, _| {
        let mut p = OffsetForLeaderPartition::default().with_partition(0).with_leader_epoch(0);
        if v >= 2 {
            p = p.with_current_leader_epoch(-1);
        }
        let mut req = OffsetForLeaderEpochRequest::default()
            .with_topics(vec![OffsetForLeaderTopic::default().with_topic(topic_name(topic)).with_partitions(vec![p])]);
        if v >= 3 {
            req = req.with_replica_id((-1).into());
        }
        boxed(c.send(&req, v)?)
    })?;

    r.run_keyed("DescribeConfigs of the topic, all keys", ApiKey::DescribeConfigs, 0, &[("results[*].configs", "name")], &|c, v, _| {
        let mut req = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(topic))
            .with_configuration_keys(None)]);
        if v >= 1 {
            req = req.with_include_synonyms(true);
        }
        if v >= 3 {
            req = req.with_include_documentation(false);
        }
        boxed(c.send(&req, v)?)
    })?;

    let created = unique_topic("diff-validate");
    let keyed = [("topics[*].configs", "name")];
    r.run_keyed("CreateTopics, validate only, 3 partitions and retention.ms", ApiKey::CreateTopics, 2, &keyed, &|c, v, _| {
        let t = CreatableTopic::default()
            .with_name(topic_name(&created))
            .with_num_partitions(3)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default().with_name(s("retention.ms")).with_value(Some(s("60000")))]);
        let req = CreateTopicsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000).with_validate_only(true);
        boxed(c.send(&req, v)?)
    })?;

    for (what, assignments) in [("placed by the broker", None), ("with an empty assignment list", Some(Vec::new()))] {
        r.run(&format!("CreatePartitions, validate only, 3 to 4, {what}"), ApiKey::CreatePartitions, 0, &|c, v, _| {
            let t = CreatePartitionsTopic::default().with_name(topic_name(topic)).with_count(4).with_assignments(assignments.clone());
            let req = CreatePartitionsRequest::default().with_topics(vec![t]).with_timeout_ms(10_000).with_validate_only(true);
            boxed(c.send(&req, v)?)
        })?;
    }

    r.run("IncrementalAlterConfigs, validate only, SET retention.ms", ApiKey::IncrementalAlterConfigs, 0, &|c, v, _| {
        let req = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default().with_resource_type(2).with_resource_name(s(topic)).with_configs(vec![
                AlterableConfig::default().with_name(s("retention.ms")).with_config_operation(0).with_value(Some(s("60000"))),
            ])])
            .with_validate_only(true);
        boxed(c.send(&req, v)?)
    })?;

    r.run("InitProducerId, idempotent", ApiKey::InitProducerId, 0, &|c, v, _| {
        let req = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(-1);
        // Kafka answers COORDINATOR_LOAD_IN_PROGRESS until its first block of producer
        // ids arrives from the controller; a client retries it.
        let mut resp = c.send(&req, v)?;
        let until = std::time::Instant::now() + LEADER_TIMEOUT;
        while resp.error_code == 14 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(100));
            resp = c.send(&req, v)?;
        }
        boxed(resp)
    })?;

    let group = f.group.as_str();
    r.run("FindCoordinator for the group", ApiKey::FindCoordinator, 0, &|c, v, _| {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s(group)])
        } else {
            FindCoordinatorRequest::default().with_key(s(group))
        };
        boxed(c.send(&req, v)?)
    })?;
    r.run("OffsetFetch for the group", ApiKey::OffsetFetch, 1, &|c, v, _| {
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(vec![0, 1])]))])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(topic_name(topic)).with_partition_indexes(vec![0, 1])]))
        };
        boxed(c.send(&req, v)?)
    })?;
    r.run("DescribeGroups for the group (no members)", ApiKey::DescribeGroups, 0, &|c, v, _| {
        boxed(c.send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]), v)?)
    })?;
    let no_group = unique_topic("diff-no-group");
    r.run("DescribeGroups of an unknown group", ApiKey::DescribeGroups, 0, &|c, v, _| {
        boxed(c.send(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&no_group))]), v)?)
    })?;
    r.run("DescribeGroups with authorized operations", ApiKey::DescribeGroups, 3, &|c, v, _| {
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]).with_include_authorized_operations(true);
        boxed(c.send(&req, v)?)
    })?;
    // v11 dropped the field.
    r.run_upto("Metadata with cluster authorized operations", ApiKey::Metadata, 8, 10, &|c, v, _| {
        let req = MetadataRequest::default().with_topics(Some(vec![])).with_include_cluster_authorized_operations(true);
        boxed(c.send(&req, v)?)
    })?;
    r.run("Fetch, read_committed", ApiKey::Fetch, 4, &|c, v, side| boxed(c.send(&fetch_request(topic, f.id(side), 0, 1), v)?))?;

    // KIP-227 fetch sessions (Fetch v7+).
    r.run("Fetch, incremental, of an unknown session", ApiKey::Fetch, 7, &|c, v, _| boxed(c.send(&session_fetch(123_456_789, 1), v)?))?;
    r.run("Fetch, incremental, with the wrong session epoch", ApiKey::Fetch, 7, &|c, v, side| {
        let full = session_fetch(0, 0).with_topics(vec![fetch_topic(topic, f.id(side), v, &[(0, 0)])]);
        let opened = c.send(&full, v)?;
        let wrong = c.send(&session_fetch(opened.session_id, 5), v)?;
        c.send(&session_fetch(opened.session_id, -1), v)?;
        boxed(wrong)
    })?;
    let sessions = unique_topic("diff-session");
    r.run("Fetch session: full, incremental, nothing new, closed", ApiKey::Fetch, 7, &|c, v, side| {
        boxed(session_steps(c, v, &format!("{sessions}-v{v}"), side)?)
    })?;
    r.run("ListGroups", ApiKey::ListGroups, 0, &|c, v, _| {
        // Only the groups of this test: each broker serves this test alone.
        let mut resp = c.send(&ListGroupsRequest::default(), v)?;
        resp.groups.retain(|g| g.group_id.0.as_str() == group);
        boxed(resp)
    })?;

    r.run("DescribeCluster", ApiKey::DescribeCluster, 0, &|c, v, _| boxed(c.send(&DescribeClusterRequest::default(), v)?))?;
    r.run("DescribeCluster with authorized operations", ApiKey::DescribeCluster, 0, &|c, v, _| {
        boxed(c.send(&DescribeClusterRequest::default().with_include_cluster_authorized_operations(true), v)?)
    })?;
    r.run("DescribeCluster including fenced brokers", ApiKey::DescribeCluster, 2, &|c, v, _| {
        boxed(c.send(&DescribeClusterRequest::default().with_include_fenced_brokers(true), v)?)
    })?;

    r.run("DeleteRecords of partition 2 before offset 1", ApiKey::DeleteRecords, 0, &|c, v, _| {
        let req = DeleteRecordsRequest::default()
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(2).with_offset(1)])])
            .with_timeout_ms(10_000);
        boxed(c.send(&req, v)?)
    })?;

    r.run("AlterConfigs, validate only, retention.ms", ApiKey::AlterConfigs, 0, &|c, v, _| {
        use kafka_protocol::messages::alter_configs_request as ac;
        let req = AlterConfigsRequest::default()
            .with_resources(vec![ac::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(topic))
                .with_configs(vec![ac::AlterableConfig::default().with_name(s("retention.ms")).with_value(Some(s("60000")))])])
            .with_validate_only(true);
        boxed(c.send(&req, v)?)
    })?;
    r.run("OffsetDelete of the group's partition 0 (no members)", ApiKey::OffsetDelete, 0, &|c, v, _| {
        let req = OffsetDeleteRequest::default().with_group_id(GroupId(s(group))).with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)])]);
        boxed(c.send(&req, v)?)
    })?;
    // The first version deletes the group; the later ones find it gone.
    r.run("DeleteGroups of the group, then of a deleted group", ApiKey::DeleteGroups, 0, &|c, v, _| {
        boxed(c.send(&DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]), v)?)
    })?;

    let unknown = unique_topic("diff-unknown");
    r.run("DeleteTopics of an unknown topic", ApiKey::DeleteTopics, 1, &|c, v, _| {
        let name = &unknown;
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default().with_name(Some(topic_name(name)))])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic_name(name)])
        }
        .with_timeout_ms(10_000);
        boxed(c.send(&req, v)?)
    })?;

    // Broker configs: the settings both brokers have (none set in either fixture's
    // configuration), then a dynamic cluster default set, seen in the default
    // resource, the broker and a topic, a static key refused, and the default removed
    // again (run last: other scenarios see no dynamic default).
    r.run_keyed("Broker configs, dynamic default set and deleted", ApiKey::IncrementalAlterConfigs, 0, &BROKER_KEYED, &|c, v, _| {
        boxed(broker_config_steps(c, v, topic)?)
    })?;

    Ok(r.out)
}

/// The broker settings compared: Kafka's names that Karst has, but for those naming
/// an instance (ids, addresses, directories) and those the fixtures set.
const BROKER_KEYS: &[&str] = &[
    "broker.session.timeout.ms",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "connections.max.idle.ms",
    "fetch.max.bytes",
    "group.max.size",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.enable",
    "log.cleaner.io.buffer.load.factor",
    "log.cleaner.io.buffer.size",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.threads",
    "log.cleanup.policy",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.message.timestamp.after.max.ms",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.type",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "log.retention.ms",
    "log.roll.ms",
    "log.segment.bytes",
    "max.connections",
    "max.connections.per.ip",
    "max.incremental.fetch.session.cache.slots",
    "message.max.bytes",
    "min.insync.replicas",
    "replica.lag.time.max.ms",
    "socket.request.max.bytes",
];

const BROKER_KEYED: [(&str, &str); 1] = [("*results[*].configs", "name")];

/// What the broker-config scenario went through; compared field by field.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug
struct BrokerConfigSteps {
    before: kafka_protocol::messages::DescribeConfigsResponse,
    set: kafka_protocol::messages::IncrementalAlterConfigsResponse,
    default_resource: kafka_protocol::messages::DescribeConfigsResponse,
    broker_after: kafka_protocol::messages::DescribeConfigsResponse,
    topic_after: kafka_protocol::messages::DescribeConfigsResponse,
    static_refused: kafka_protocol::messages::IncrementalAlterConfigsResponse,
    deleted: kafka_protocol::messages::IncrementalAlterConfigsResponse,
    broker_restored: kafka_protocol::messages::DescribeConfigsResponse,
}

fn broker_config_steps(c: &mut RawClient, v: i16, topic: &str) -> Result<BrokerConfigSteps> {
    let describe = |c: &mut RawClient, resource_type: i8, name: &str, keys: Option<&[&str]>| {
        let resource = DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configuration_keys(keys.map(|k| k.iter().map(|k| s(k)).collect()));
        c.send(&DescribeConfigsRequest::default().with_resources(vec![resource]).with_include_synonyms(true), 4)
    };
    let alter = |c: &mut RawClient, ops: &[(&str, i8, Option<&str>)]| {
        let configs = ops
            .iter()
            .map(|(k, op, value)| AlterableConfig::default().with_name(s(k)).with_config_operation(*op).with_value(value.map(s)))
            .collect();
        let req = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default().with_resource_type(4).with_resource_name(s("")).with_configs(configs)]);
        c.send(&req, v)
    };
    let before = describe(c, 4, "1", Some(BROKER_KEYS))?;
    let set = alter(c, &[("log.retention.ms", 0, Some("3600000")), ("message.max.bytes", 0, Some("2000000"))])?;
    // Kafka applies a change a moment after it answers: read until it shows.
    let mut default_resource = describe(c, 4, "", None)?;
    for _ in 0..100 {
        let shown = default_resource.results[0].configs.iter().any(|x| x.name.as_str() == "message.max.bytes");
        if shown {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        default_resource = describe(c, 4, "", None)?;
    }
    let mut broker_after = describe(c, 4, "1", Some(&["log.retention.ms", "message.max.bytes"]))?;
    for _ in 0..100 {
        // Kafka updates a value a moment after its source and synonyms.
        let applied =
            broker_after.results[0].configs.iter().all(|x| x.config_source == 3 && x.synonyms.first().is_some_and(|s| s.value == x.value));
        if applied {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        broker_after = describe(c, 4, "1", Some(&["log.retention.ms", "message.max.bytes"]))?;
    }
    let topic_after = describe(c, 2, topic, Some(&["retention.ms", "max.message.bytes"]))?;
    let static_refused = alter(c, &[("num.partitions", 0, Some("3"))])?;
    let deleted = alter(c, &[("log.retention.ms", 1, None), ("message.max.bytes", 1, None)])?;
    let mut broker_restored = describe(c, 4, "1", Some(&["log.retention.ms", "message.max.bytes"]))?;
    for _ in 0..100 {
        let restored = broker_restored.results[0]
            .configs
            .iter()
            .all(|x| x.config_source != 3 && x.synonyms.last().map(|s| s.value.clone()).unwrap_or_default() == x.value);
        if restored {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        broker_restored = describe(c, 4, "1", Some(&["log.retention.ms", "message.max.bytes"]))?;
    }
    Ok(BrokerConfigSteps { before, set, default_resource, broker_after, topic_after, static_refused, deleted, broker_restored })
}

/// Prints every comparison; returns (pairs compared, unlisted differences, kept
/// differences seen, failures) and fails on a kept difference no comparison showed.
pub(super) fn report(compared: &[Compared]) -> Result<(usize, usize, usize, usize)> {
    report_as("responses field by field", compared, &kept())
}

/// [`report`] for a set of comparisons under its own title and kept differences.
pub(super) fn report_as(title: &str, compared: &[Compared], kept: &[Kept]) -> Result<(usize, usize, usize, usize)> {
    println!("\n{title}, Kafka vs Karst:");
    // KARST_DIFF_VERBOSE=1 prints the kept differences too.
    let verbose = std::env::var_os("KARST_DIFF_VERBOSE").is_some();
    let (mut unlisted, mut kept_seen, mut failed) = (0, 0, 0);
    let mut used = BTreeSet::new();
    let scenarios: BTreeSet<&str> = compared.iter().map(|c| c.scenario.split(" (").next().unwrap_or("")).collect();
    for c in compared {
        if let Some(why) = &c.failed {
            failed += 1;
            println!("  FAILED    {}: {why}", c.scenario);
            continue;
        }
        let open: Vec<&Difference> = c.differences.iter().filter(|d| d.kept.is_none()).collect();
        let verdict = if open.is_empty() { "same" } else { "DIFFERENT" };
        let kept_here: Vec<&Difference> = c.differences.iter().filter(|d| d.kept.is_some()).collect();
        let suffix = if kept_here.is_empty() { String::new() } else { format!(" ({} kept differences)", kept_here.len()) };
        println!("  {verdict:9} {} ({} fields){suffix}", c.scenario, c.fields);
        for d in &open {
            println!("              {}", d.show());
        }
        if verbose {
            for d in &kept_here {
                println!("              kept: {}", d.show());
            }
        }
        unlisted += open.len();
        kept_seen += kept_here.len();
        for d in kept_here {
            if let Some(k) = d.kept {
                used.insert((k.scenario, k.path));
            }
        }
    }
    println!(
        "{} scenarios, {} scenario × version pairs compared: {unlisted} unlisted differences, {kept_seen} kept differences, {failed} failed requests",
        scenarios.len(),
        compared.len()
    );
    if !kept.is_empty() {
        println!("kept differences (on purpose):");
        for k in kept {
            println!("  {} / {}: {}", k.scenario, k.path, k.why);
        }
    }
    let stale: Vec<String> =
        kept.iter().filter(|k| !used.contains(&(k.scenario, k.path))).map(|k| format!("{} / {}", k.scenario, k.path)).collect();
    if !stale.is_empty() {
        return Err(anyhow!("kept differences that no comparison shows any more (remove them): {}", stale.join(", ")));
    }
    Ok((compared.len(), unlisted, kept_seen, failed))
}
