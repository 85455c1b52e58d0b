//! The admin APIs DescribeLogDirs, DescribeTopicPartitions, ElectLeaders,
//! DescribeProducers, AlterClientQuotas and DescribeClientQuotas, compared field by field with Kafka at the lowest and the highest
//! version both serve. Both brokers get the same topic (three partitions: a plain
//! batch in partition 0, an idempotent producer's batch in partition 1); ids, sizes
//! of file systems and directory paths belong to one instance and are not compared.
//! Lists whose order Kafka leaves to a hash map are compared by their keys.

use std::fmt::Debug;

use anyhow::{anyhow, Context, Result};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData as QuotaEntity, EntryData as QuotaEntry, OpData as QuotaOp};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData as QuotaComponent;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::describe_producers_request::TopicRequest as ProducersTopic;
use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
    DescribeLogDirsRequest, DescribeProducersRequest, DescribeTopicPartitionsRequest, ElectLeadersRequest, InitProducerIdRequest,
};
use karst_tests::fields::{Kept, Rules};
use karst_tests::raw::{encode_record, topic_name, RawClient};
use karst_tests::unique_topic;

use super::responses::{Compared, Runner};
use super::{Pair, LEADER_TIMEOUT};

/// Fixed timestamps, so both logs hold batches of the same size.
const T0: i64 = 1_700_000_000_000;

/// What both brokers were given: a topic of three partitions and a one-partition one.
pub(super) struct AdminFixture {
    topic: String,
    single: String,
}

fn ignored() -> Vec<(&'static str, &'static str)> {
    vec![
        ("throttle_time_ms", "time a broker throttled the client"),
        ("*leader_id", "broker ids"),
        ("*replica_nodes*", "broker ids"),
        ("*isr_nodes*", "broker ids"),
        ("*topic_id", "generated per topic"),
        ("*producer_id", "allocated per cluster"),
        ("results[*].log_dir", "the directory each broker was started with"),
        ("results[*].total_bytes", "the size of the file system each broker's directory is on"),
        ("results[*].usable_bytes", "the free space of the file system each broker's directory is on"),
    ]
}

fn kept() -> Vec<Kept> {
    vec![Kept {
        scenario: "DescribeProducers*",
        path: "topics[*].partitions[*].error_message",
        karst_lacks: false,
        why: "the text of an invalid topic name is Karst's own (the code is the same)",
    }]
}

/// Both brokers get the two topics; partition 0 of the first holds a plain batch,
/// partition 1 two records of an idempotent producer.
pub(super) fn prepare(pair: &mut Pair) -> Result<AdminFixture> {
    let topic = unique_topic("diff-admin");
    let single = unique_topic("diff-admin-single");
    for (side, c) in [("Kafka", &mut pair.kafka), ("Karst", &mut pair.karst)] {
        c.create_topic(&topic, 3, &[]).with_context(|| format!("creating {topic} on {side}"))?;
        super::wait_leaders(c, &topic, 3, side)?;
        c.create_topic(&single, 1, &[]).with_context(|| format!("creating {single} on {side}"))?;
        super::wait_leaders(c, &single, 1, side)?;
        super::produce_until_accepted(c, &topic, 0, &[(Some(b"k"), Some(b"plain"))], T0, side)?;
        let (producer_id, epoch) = init_producer_id(c, side)?;
        let mut body = encode_record(0, Some(b"a"), Some(b"1"));
        body.extend(encode_record(1, Some(b"b"), Some(b"2")));
        let batch = karst_batch::build_batch_with_producer(0, 2, T0 + 1_000, producer_id, epoch, 0, &body);
        let version = c.version_for(ApiKey::Produce)?.min(11);
        let p = c.produce(&topic, 1, batch, version)?;
        if p.error_code != 0 {
            return Err(anyhow!("idempotent produce to {topic}-1 on {side}: error {}", p.error_code));
        }
    }
    Ok(AdminFixture { topic, single })
}

fn init_producer_id(c: &mut RawClient, side: &str) -> Result<(i64, i16)> {
    let version = c.version_for(ApiKey::InitProducerId)?.min(4);
    let req = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(-1);
    // Kafka answers COORDINATOR_LOAD_IN_PROGRESS until its first block of ids arrives.
    karst_tests::wait_for(&format!("a producer id from {side}"), LEADER_TIMEOUT, || {
        let r = c.send(&req, version).ok()?;
        (r.error_code == 0).then_some((r.producer_id.0, r.producer_epoch))
    })
}

fn boxed<T: Debug + 'static>(r: T) -> Result<Box<dyn Debug>> {
    Ok(Box::new(r))
}

fn log_dir_topic(name: &str, partitions: &[i32]) -> DescribableLogDirTopic {
    DescribableLogDirTopic::default().with_topic(topic_name(name)).with_partitions(partitions.to_vec())
}

fn elect(topic: &str, partitions: &[i32]) -> TopicPartitions {
    TopicPartitions::default().with_topic(topic_name(topic)).with_partitions(partitions.to_vec())
}

fn dtp(names: &[&str], limit: i32, cursor: Option<(&str, i32)>) -> DescribeTopicPartitionsRequest {
    DescribeTopicPartitionsRequest::default()
        .with_topics(names.iter().map(|n| TopicRequest::default().with_name(topic_name(n))).collect())
        .with_response_partition_limit(limit)
        .with_cursor(cursor.map(|(t, p)| Cursor::default().with_topic_name(topic_name(t)).with_partition_index(p)))
}

pub(super) fn run(pair: &mut Pair, f: &AdminFixture) -> Result<Vec<Compared>> {
    let mut r = Runner::new(pair, Rules { ignore: ignored(), kept: kept() });
    let (topic, single) = (f.topic.as_str(), f.single.as_str());
    let unknown = unique_topic("diff-admin-unknown");
    let unknown = unknown.as_str();

    // DescribeLogDirs: partitions are listed in Kafka's hash order.
    let by_partition = [("results[*].topics[*].partitions", "partition_index"), ("results[*].topics", "name")];
    r.run_ends(
        "DescribeLogDirs, three partitions, one past the end and an unknown topic",
        ApiKey::DescribeLogDirs,
        0,
        &by_partition,
        &|c, v, _| {
            let req = DescribeLogDirsRequest::default()
                .with_topics(Some(vec![log_dir_topic(topic, &[0, 1, 2, 7]), log_dir_topic(unknown, &[0])]));
            boxed(c.send(&req, v)?)
        },
    )?;
    r.run_ends("DescribeLogDirs, all partitions (null), the test's topics kept", ApiKey::DescribeLogDirs, 0, &by_partition, &|c, v, _| {
        let mut resp = c.send(&DescribeLogDirsRequest::default().with_topics(None), v)?;
        for result in &mut resp.results {
            result.topics.retain(|t| [topic, single].contains(&t.name.as_str()));
        }
        boxed(resp)
    })?;
    r.run_ends("DescribeLogDirs, no topics (empty list)", ApiKey::DescribeLogDirs, 0, &[], &|c, v, _| {
        boxed(c.send(&DescribeLogDirsRequest::default().with_topics(Some(Vec::new())), v)?)
    })?;

    // DescribeTopicPartitions.
    r.run_ends("DescribeTopicPartitions, two topics and an unknown one", ApiKey::DescribeTopicPartitions, 0, &[], &|c, v, _| {
        boxed(c.send(&dtp(&[topic, unknown, single], 2000, None), v)?)
    })?;
    r.run_ends("DescribeTopicPartitions, an invalid topic name", ApiKey::DescribeTopicPartitions, 0, &[], &|c, v, _| {
        boxed(c.send(&dtp(&["a/b"], 2000, None), v)?)
    })?;
    // Pages of two partitions through 3 + 1 partitions: (0,1), (2; then the cursor
    // names the next topic), (single 0).
    for (page, cursor) in [("first page", None), ("second page", Some((topic, 2))), ("third page", Some((single, 0)))] {
        r.run_ends(&format!("DescribeTopicPartitions, limit 2, {page}"), ApiKey::DescribeTopicPartitions, 0, &[], &|c, v, _| {
            boxed(c.send(&dtp(&[topic, single], 2, cursor), v)?)
        })?;
    }
    r.run_ends("DescribeTopicPartitions, limit 3 fills the page exactly", ApiKey::DescribeTopicPartitions, 0, &[], &|c, v, _| {
        boxed(c.send(&dtp(&[topic, single], 3, None), v)?)
    })?;
    r.run_ends("DescribeTopicPartitions, cursor past the last partition", ApiKey::DescribeTopicPartitions, 0, &[], &|c, v, _| {
        boxed(c.send(&dtp(&[topic], 10, Some((topic, 9))), v)?)
    })?;
    r.run_ends(
        "DescribeTopicPartitions refused: the cursor's topic not asked for",
        ApiKey::DescribeTopicPartitions,
        0,
        &[],
        &|c, v, _| boxed(c.send(&dtp(&[topic], 10, Some((unknown, 0))), v)?),
    )?;
    r.run_ends("DescribeTopicPartitions refused: a negative cursor partition", ApiKey::DescribeTopicPartitions, 0, &[], &|c, v, _| {
        boxed(c.send(&dtp(&[topic], 10, Some((topic, -1))), v)?)
    })?;
    r.run_ends(
        "DescribeTopicPartitions, all topics from a cursor, the test's topics kept",
        ApiKey::DescribeTopicPartitions,
        0,
        &[],
        &|c, v, _| {
            let mut resp = c.send(&dtp(&[], 2000, Some((topic, 1))), v)?;
            resp.topics.retain(|t| t.name.as_ref().is_some_and(|n| [topic, single].contains(&n.as_str())));
            boxed(resp)
        },
    )?;

    // ElectLeaders: one broker each, so every partition already has its preferred leader.
    r.run_ends(
        "ElectLeaders preferred, three partitions, one past the end, an unknown topic",
        ApiKey::ElectLeaders,
        0,
        &[],
        &|c, v, _| {
            let req = ElectLeadersRequest::default()
                .with_election_type(0)
                .with_topic_partitions(Some(vec![elect(topic, &[0, 1, 2, 5]), elect(unknown, &[0])]));
            boxed(c.send(&req, v)?)
        },
    )?;
    r.run_ends("ElectLeaders unclean of a led partition", ApiKey::ElectLeaders, 1, &[], &|c, v, _| {
        let req = ElectLeadersRequest::default().with_election_type(1).with_topic_partitions(Some(vec![elect(topic, &[0])]));
        boxed(c.send(&req, v)?)
    })?;
    r.run_ends("ElectLeaders refused: election type 5", ApiKey::ElectLeaders, 1, &[], &|c, v, _| {
        let req = ElectLeadersRequest::default().with_election_type(5).with_topic_partitions(Some(vec![elect(topic, &[0])]));
        boxed(c.send(&req, v)?)
    })?;
    r.run_ends("ElectLeaders, an empty list", ApiKey::ElectLeaders, 0, &[], &|c, v, _| {
        boxed(c.send(&ElectLeadersRequest::default().with_topic_partitions(Some(Vec::new())), v)?)
    })?;
    r.run_ends(
        "ElectLeaders, all partitions (null), the test's topics kept",
        ApiKey::ElectLeaders,
        0,
        &[("replica_election_results", "topic")],
        &|c, v, _| {
            let mut resp = c.send(&ElectLeadersRequest::default().with_topic_partitions(None), v)?;
            resp.replica_election_results.retain(|t| [topic, single].contains(&t.topic.as_str()));
            boxed(resp)
        },
    )?;

    // DescribeProducers.
    r.run_ends("DescribeProducers, an idempotent producer's partition and others", ApiKey::DescribeProducers, 0, &[], &|c, v, _| {
        let req = DescribeProducersRequest::default().with_topics(vec![
            ProducersTopic::default().with_name(topic_name(topic)).with_partition_indexes(vec![1, 0, 4]),
            ProducersTopic::default().with_name(topic_name(unknown)).with_partition_indexes(vec![0]),
            ProducersTopic::default().with_name(topic_name("a/b")).with_partition_indexes(vec![0]),
        ]);
        boxed(c.send(&req, v)?)
    })?;

    // Client quotas: Kafka's checks of each entry, then what is kept, by entity.
    let client = unique_topic("diff-quota-client");
    let client = client.as_str();
    // Kafka answers one result per entity, in its hash map's order: both sides are
    // put in one order (entities by their components) before comparing.
    let entry = |entity: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]| {
        QuotaEntry::default()
            .with_entity(
                entity
                    .iter()
                    .map(|(k, n)| QuotaEntity::default().with_entity_type(str_bytes(k)).with_entity_name(n.map(str_bytes)))
                    .collect(),
            )
            .with_ops(
                ops.iter().map(|(k, v, remove)| QuotaOp::default().with_key(str_bytes(k)).with_value(*v).with_remove(*remove)).collect(),
            )
    };
    let canonical = |mut resp: AlterClientQuotasResponse| {
        for e in resp.entries.iter_mut() {
            e.entity.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
        }
        resp.entries.sort_by_key(|e| format!("{:?}", e.entity.iter().map(|d| (&d.entity_type, &d.entity_name)).collect::<Vec<_>>()));
        resp
    };
    // Each check on an entity of its own (Kafka answers per entity), then duplicates.
    let (c1, c2, c3, c4, c5) =
        (format!("{client}-1"), format!("{client}-2"), format!("{client}-3"), format!("{client}-4"), format!("{client}-5"));
    let distinct = vec![
        entry(&[], &[("producer_byte_rate", 1000.0, false)]),
        entry(&[("group", Some("g"))], &[("producer_byte_rate", 1000.0, false)]),
        entry(&[("client-id", Some(""))], &[("producer_byte_rate", 1000.0, false)]),
        entry(&[("client-id", Some(&c1))], &[("connection_creation_rate", 5.0, false)]),
        entry(&[("client-id", Some(&c2))], &[("producer_byte_rate", 0.0, false)]),
        entry(&[("client-id", Some(&c3))], &[("producer_byte_rate", -3.0, false)]),
        entry(&[("client-id", Some(&c4))], &[("consumer_byte_rate", 1.5, false)]),
        entry(&[("client-id", Some(&c5))], &[("bogus_rate", 1.0, false)]),
        entry(&[("ip", Some("10.1.2.3")), ("user", Some("u"))], &[("connection_creation_rate", 5.0, false)]),
        entry(&[("ip", Some("10.1.2.4"))], &[("producer_byte_rate", 5.0, false)]),
        entry(&[("ip", Some("10.1.2.5"))], &[("connection_creation_rate", 2.5, false)]),
        entry(&[("ip", Some("10.1.2.6"))], &[("connection_creation_rate", 3e10, false)]),
        entry(&[("user", Some(&c1)), ("client-id", Some(&c1))], &[("request_percentage", 12.5, false)]),
    ];
    r.run_ends("AlterClientQuotas, each entry checked, validate only", ApiKey::AlterClientQuotas, 0, &[], &|c, v, _| {
        boxed(canonical(c.send(&AlterClientQuotasRequest::default().with_entries(distinct.clone()).with_validate_only(true), v)?))
    })?;
    let refused = vec![
        entry(&[("client-id", Some(client))], &[("connection_creation_rate", 5.0, false)]),
        entry(&[("client-id", Some(client))], &[("producer_byte_rate", 0.0, false)]),
        entry(&[("ip", Some("10.1.2.3"))], &[("producer_byte_rate", 5.0, false)]),
        entry(&[("ip", Some("10.1.2.3"))], &[("connection_creation_rate", 2.5, false)]),
    ];
    r.run_ends("AlterClientQuotas, an entity named twice, validate only", ApiKey::AlterClientQuotas, 0, &[], &|c, v, _| {
        boxed(canonical(c.send(&AlterClientQuotasRequest::default().with_entries(refused.clone()).with_validate_only(true), v)?))
    })?;
    let twice = vec![entry(&[("user", Some(client))], &[("producer_byte_rate", 10.0, false), ("producer_byte_rate", 20.0, false)])];
    r.run_ends("AlterClientQuotas, a key twice in one entry", ApiKey::AlterClientQuotas, 0, &[], &|c, v, _| {
        boxed(canonical(c.send(&AlterClientQuotasRequest::default().with_entries(twice.clone()).with_validate_only(true), v)?))
    })?;
    let accepted = vec![
        entry(&[("client-id", Some(client))], &[("producer_byte_rate", 1048576.0, false), ("consumer_byte_rate", 2097152.0, false)]),
        entry(&[("user", Some(client)), ("client-id", None)], &[("request_percentage", 150.0, false)]),
        entry(&[("client-id", Some(client)), ("user", Some(client))], &[("controller_mutation_rate", 7.5, false)]),
    ];
    r.run_ends("AlterClientQuotas set, then described", ApiKey::AlterClientQuotas, 0, &[], &|c, v, _| {
        boxed(canonical(c.send(&AlterClientQuotasRequest::default().with_entries(accepted.clone()), v)?))
    })?;
    let component = |kind: &str, match_type: i8, m: Option<&str>| {
        QuotaComponent::default().with_entity_type(str_bytes(kind)).with_match_type(match_type).with_match(m.map(str_bytes))
    };
    let mine = |resp: &mut DescribeClientQuotasResponse| {
        if let Some(entries) = resp.entries.as_mut() {
            entries.retain(|e| e.entity.iter().any(|d| d.entity_name.as_deref() == Some(client)));
            for e in entries.iter_mut() {
                e.entity.sort_by(|a, b| a.entity_type.cmp(&b.entity_type));
                e.values.sort_by(|a, b| a.key.cmp(&b.key));
            }
            entries.sort_by_key(|e| format!("{:?}", e.entity));
        }
    };
    let filters: Vec<(&str, Vec<QuotaComponent>, bool)> = vec![
        ("the client id exactly, strict", vec![component("client-id", 0, Some(client))], true),
        ("the client id exactly, not strict", vec![component("client-id", 0, Some(client))], false),
        ("the user named, any client id", vec![component("user", 0, Some(client)), component("client-id", 2, None)], true),
        ("the user named, the default client id", vec![component("user", 0, Some(client)), component("client-id", 1, None)], true),
        ("no filter", vec![], false),
        ("refused: an unknown entity type", vec![component("group", 2, None)], false),
        ("refused: exact without a name", vec![component("user", 0, None)], false),
        ("refused: default with a name", vec![component("user", 1, Some("x"))], false),
        ("refused: specified with a name", vec![component("user", 2, Some("x"))], false),
        ("refused: an unknown match type", vec![component("user", 7, None)], false),
        ("refused: a type twice", vec![component("user", 2, None), component("user", 1, None)], false),
        ("refused: ip with user", vec![component("ip", 2, None), component("user", 2, None)], false),
    ];
    for (what, components, strict) in &filters {
        r.run_ends(&format!("DescribeClientQuotas, {what}"), ApiKey::DescribeClientQuotas, 0, &[], &|c, v, _| {
            let mut resp = c.send(&DescribeClientQuotasRequest::default().with_components(components.clone()).with_strict(*strict), v)?;
            mine(&mut resp);
            boxed(resp)
        })?;
    }
    Ok(r.out)
}

fn str_bytes(s: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.to_string())
}

/// Prints every comparison; returns how many differ (unlisted) or failed. Fails on a
/// kept difference no comparison showed.
pub(super) fn report(compared: &[Compared]) -> Result<usize> {
    let (_, unlisted, _, failed) = super::responses::report_as("admin APIs field by field", compared, &kept())?;
    Ok(unlisted + failed)
}
