//! Every advertised version of every API, against an in-process broker on a
//! loopback port: the request decodes, the handler answers, the response
//! encodes and decodes at that version with the expected error codes.

mod support;

use support::start;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use karst_protocol::api_versions::{support, SUPPORTED};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn batch(n: i32) -> Bytes {
    let records: Vec<u8> = (0..n).flat_map(|i| record(i as u8)).collect();
    Bytes::from(karst_batch::build_batch(0, n, 1_700_000_000_000, &records))
}

/// One encoded record: length, attributes, ts delta, offset delta, key null, value, no headers.
fn record(i: u8) -> Vec<u8> {
    let body = vec![0u8, 0, i * 2, 1, 2, i, 0];
    let mut r = vec![(body.len() as u8) * 2];
    r.extend(body);
    r
}

fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let s = support(key).expect("supported");
    s.min..=s.max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_round_trips() {
    let (_dir, broker, mut c) = start(|_| {}).await;

    for v in versions(ApiKey::ApiVersions) {
        let ResponseKind::ApiVersions(r) = c.call(ApiKey::ApiVersions, v, RequestKind::ApiVersions(ApiVersionsRequest::default())).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0);
        assert_eq!(r.api_keys.len(), SUPPORTED.len());
    }
    // v5 (KIP-1242): the cluster and node the client means to reach, checked.
    let cluster = StrBytes::from_string(broker.cluster_id.clone());
    for (cluster_id, node_id, expected) in [
        (Some(cluster.clone()), broker.node_id, 0),
        (Some(cluster.clone()), broker.node_id + 1, karst_protocol::error_codes::REBOOTSTRAP_REQUIRED),
        (Some(StrBytes::from_static_str("another-cluster")), broker.node_id, karst_protocol::error_codes::REBOOTSTRAP_REQUIRED),
        (None, broker.node_id, karst_protocol::error_codes::INVALID_REQUEST),
    ] {
        let req = ApiVersionsRequest::default().with_cluster_id(cluster_id.clone()).with_node_id(node_id);
        let ResponseKind::ApiVersions(r) = c.call(ApiKey::ApiVersions, 5, RequestKind::ApiVersions(req)).await else { panic!() };
        assert_eq!(r.error_code, expected, "ApiVersions v5 for cluster {cluster_id:?} node {node_id}");
        assert_eq!(r.api_keys.is_empty(), expected != 0, "ApiVersions v5: the API list only with no error");
    }

    for v in versions(ApiKey::CreateTopics) {
        let t = format!("t{v}");
        let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(name(&t))
            .with_num_partitions(2)
            .with_replication_factor(1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("3600000")))])]);
        let ResponseKind::CreateTopics(r) = c.call(ApiKey::CreateTopics, v, RequestKind::CreateTopics(req)).await else { panic!() };
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}: {:?}", r.topics[0].error_message);
    }
    assert!(broker.metadata.image().topics.contains_key("t2"));

    for v in versions(ApiKey::Metadata) {
        let req = if v == 0 { MetadataRequest::default().with_topics(Some(vec![])) } else { MetadataRequest::default().with_topics(None) };
        let ResponseKind::Metadata(r) = c.call(ApiKey::Metadata, v, RequestKind::Metadata(req)).await else { panic!() };
        assert_eq!(r.brokers.len(), 1, "v{v}");
        assert!(r.topics.len() >= 6, "v{v}: {}", r.topics.len());
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name(&format!("auto{v}"))))]))
            .with_allow_auto_topic_creation(true);
        let ResponseKind::Metadata(r) = c.call(ApiKey::Metadata, v, RequestKind::Metadata(req)).await else { panic!() };
        assert_eq!(r.topics[0].error_code, 0, "auto-create via Metadata v{v}");
        assert_eq!(r.topics[0].partitions.len(), 1);
    }

    let mut offset = 0;
    let topic_id = broker.metadata.image().topics["t2"].id;
    for v in versions(ApiKey::Produce) {
        // v13+ names the topic by id (KIP-516).
        let t =
            if v >= 13 { TopicProduceData::default().with_topic_id(topic_id) } else { TopicProduceData::default().with_name(name("t2")) };
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![t.with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch(3)))])]);
        let ResponseKind::Produce(r) = c.call(ApiKey::Produce, v, RequestKind::Produce(req)).await else { panic!() };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "Produce v{v}: {:?}", p.error_message);
        assert_eq!(p.base_offset, offset, "Produce v{v}");
        if v >= 13 {
            assert_eq!(r.responses[0].topic_id, topic_id, "Produce v{v} answers by topic id");
        }
        offset += 3;
    }
    // An id no topic has: UNKNOWN_TOPIC_ID, answered under that id, as Kafka.
    let unknown = uuid::Uuid::from_u128(0x1234);
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_topic_id(unknown)
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch(1)))])]);
    let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 13, RequestKind::Produce(req)).await else { panic!() };
    assert_eq!(r.responses[0].topic_id, unknown);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (karst_protocol::error_codes::UNKNOWN_TOPIC_ID, -1), "Produce v13 to an unknown topic id");

    for v in versions(ApiKey::Fetch) {
        let mut t = FetchTopic::default()
            .with_partitions(vec![FetchPartition::default().with_partition(0).with_fetch_offset(4).with_partition_max_bytes(1 << 20)]);
        t = if v >= 13 { t.with_topic_id(topic_id) } else { t.with_topic(name("t2")) };
        let req = FetchRequest::default().with_max_wait_ms(100).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![t]);
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, v, RequestKind::Fetch(req)).await else { panic!() };
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert_eq!(p.high_watermark, offset, "Fetch v{v}");
        let mut records = p.records.clone().expect("records");
        if let Some(magic) = karst_protocol::message_set::fetch_magic(v) {
            // Fetch v0-v3: the batches down-converted to message format v0/v1, one
            // message per record of an uncompressed batch, from the fetch offset on.
            let messages = karst_protocol::message_set::read_message_set(&records, 1 << 20).expect("a message set");
            assert!(messages.iter().all(|m| m.magic == magic), "Fetch v{v}: magic");
            assert_eq!(messages.first().map(|m| m.offset), Some(4), "Fetch v{v}");
            assert_eq!(messages.last().map(|m| m.offset), Some(offset - 1), "Fetch v{v}");
            continue;
        }
        // Offset 4 is inside the second batch (3..=5): that whole batch comes back first.
        let h = karst_batch::BatchHeader::parse_checked(&records).expect("valid batch");
        assert_eq!(h.base_offset, 3, "Fetch v{v}");
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records).expect("decodes");
        assert!(sets.iter().map(|s| s.records.len()).sum::<usize>() >= 3);
    }

    // KIP-227 fetch sessions at every version that has them (v7+): epoch 0 opens one;
    // an incremental fetch with nothing new answers no partitions; a wrong epoch is
    // INVALID_FETCH_SESSION_EPOCH and an unknown session FETCH_SESSION_ID_NOT_FOUND
    // (session id 0 both); epoch -1 closes it.
    for v in versions(ApiKey::Fetch).filter(|v| *v >= 7) {
        let topic = |t: FetchTopic| if v >= 13 { t.with_topic_id(topic_id) } else { t.with_topic(name("t2")) };
        let at_end = FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(1 << 20);
        let fetch = |id: i32, epoch: i32| FetchRequest::default().with_max_wait_ms(0).with_session_id(id).with_session_epoch(epoch);
        let full = fetch(0, 0).with_topics(vec![topic(FetchTopic::default().with_partitions(vec![at_end.clone()]))]);
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, v, RequestKind::Fetch(full)).await else { panic!() };
        assert_eq!((r.error_code, r.responses.len()), (0, 1), "Fetch v{v}: full fetch");
        assert_ne!(r.session_id, 0, "Fetch v{v}: a session for epoch 0");
        let id = r.session_id;
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, v, RequestKind::Fetch(fetch(id, 1))).await else { panic!() };
        assert_eq!((r.error_code, r.session_id, r.responses.len()), (0, id, 0), "Fetch v{v}: incremental, nothing new");
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, v, RequestKind::Fetch(fetch(id, 7))).await else { panic!() };
        assert_eq!((r.error_code, r.session_id, r.responses.len()), (71, 0, 0), "Fetch v{v}: wrong epoch");
        let close = fetch(id, -1).with_topics(vec![topic(FetchTopic::default().with_partitions(vec![at_end]))]);
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, v, RequestKind::Fetch(close)).await else { panic!() };
        assert_eq!((r.error_code, r.session_id, r.responses.len()), (0, 0, 1), "Fetch v{v}: closing, sessionless");
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, v, RequestKind::Fetch(fetch(id, 2))).await else { panic!() };
        assert_eq!((r.error_code, r.session_id, r.responses.len()), (70, 0, 0), "Fetch v{v}: closed session");
    }

    // The single node leads at the epoch its image gives; everything so far was written in it.
    let epoch = broker.metadata.image().cluster.partition("t2", 0).expect("t2-0").leader_epoch;
    for v in versions(ApiKey::OffsetForLeaderEpoch) {
        use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
        let parts = [epoch, epoch + 5, epoch - 1]
            .iter()
            .map(|e| OffsetForLeaderPartition::default().with_partition(0).with_current_leader_epoch(-1).with_leader_epoch(*e))
            .collect();
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default().with_topic(name("t2")).with_partitions(parts)]);
        let ResponseKind::OffsetForLeaderEpoch(r) = c.call(ApiKey::OffsetForLeaderEpoch, v, RequestKind::OffsetForLeaderEpoch(req)).await
        else {
            panic!()
        };
        let got: Vec<(i16, i32, i64)> = r.topics[0].partitions.iter().map(|p| (p.error_code, p.leader_epoch, p.end_offset)).collect();
        assert_eq!(got, vec![(0, epoch, offset), (0, epoch, offset), (0, -1, -1)], "OffsetForLeaderEpoch v{v}");
    }

    for v in versions(ApiKey::ListOffsets) {
        let parts = [-2i64, -1, 1_700_000_000_000]
            .iter()
            .map(|ts| ListOffsetsPartition::default().with_partition_index(0).with_timestamp(*ts))
            .collect();
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default().with_name(name("t2")).with_partitions(parts)]);
        let ResponseKind::ListOffsets(r) = c.call(ApiKey::ListOffsets, v, RequestKind::ListOffsets(req)).await else { panic!() };
        let offsets: Vec<i64> = r.topics[0].partitions.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, vec![0, offset, 0], "ListOffsets v{v}");
    }

    for v in versions(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default().with_resource_type(2).with_resource_name(StrBytes::from_static_str("t2")),
            DescribeConfigsResource::default().with_resource_type(4).with_resource_name(StrBytes::from_static_str("1")),
        ]);
        let ResponseKind::DescribeConfigs(r) = c.call(ApiKey::DescribeConfigs, v, RequestKind::DescribeConfigs(req)).await else {
            panic!()
        };
        assert_eq!(r.results[0].error_code, 0);
        let retention = r.results[0].configs.iter().find(|c| c.name.as_str() == "retention.ms").expect("retention.ms");
        assert_eq!(retention.value.as_deref(), Some("3600000"));
        assert!(!r.results[1].configs.is_empty());
        assert!(r.results[0].configs.iter().all(|c| !c.read_only), "topic configs can be altered (v{v})");
        let read_only = |name: &str| r.results[1].configs.iter().find(|c| c.name.as_str() == name).map(|c| c.read_only);
        assert_eq!(read_only("node.id"), Some(true), "static broker configs are read-only, as Kafka marks them (v{v})");
        assert_eq!(read_only("log.retention.ms"), Some(false), "dynamic broker configs are not (v{v})");
    }

    for v in versions(ApiKey::DescribeCluster) {
        let ResponseKind::DescribeCluster(r) =
            c.call(ApiKey::DescribeCluster, v, RequestKind::DescribeCluster(DescribeClusterRequest::default())).await
        else {
            panic!()
        };
        assert_eq!(r.brokers.len(), 1);
        assert_eq!(r.cluster_id.as_str(), broker.cluster_id);
        assert!(!r.brokers[0].is_fenced, "DescribeCluster v{v}");
    }
    // v2 (KIP-1073): fenced brokers on request; a lone live broker has none.
    let req = DescribeClusterRequest::default().with_include_fenced_brokers(true);
    let ResponseKind::DescribeCluster(r) = c.call(ApiKey::DescribeCluster, 2, RequestKind::DescribeCluster(req)).await else { panic!() };
    assert_eq!((r.error_code, r.brokers.len(), r.brokers[0].is_fenced), (0, 1, false));

    for v in versions(ApiKey::InitProducerId) {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let ResponseKind::InitProducerId(r) = c.call(ApiKey::InitProducerId, v, RequestKind::InitProducerId(req)).await else { panic!() };
        assert_eq!(r.error_code, 0);
        assert!(r.producer_id.0 >= 0);
    }

    for v in versions(ApiKey::CreatePartitions) {
        let t = format!("t{}", 2 + v);
        let req = CreatePartitionsRequest::default().with_timeout_ms(1000).with_topics(vec![
            kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name(&t))
                .with_count(4)
                .with_assignments(None),
        ]);
        let ResponseKind::CreatePartitions(r) = c.call(ApiKey::CreatePartitions, v, RequestKind::CreatePartitions(req)).await else {
            panic!()
        };
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}: {:?}", r.results[0].error_message);
        assert_eq!(broker.metadata.image().topics[&t].partitions, 4);
    }

    for v in versions(ApiKey::DeleteRecords) {
        let req = DeleteRecordsRequest::default().with_timeout_ms(1000).with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name("t2"))
            .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(v as i64 + 1)])]);
        let ResponseKind::DeleteRecords(r) = c.call(ApiKey::DeleteRecords, v, RequestKind::DeleteRecords(req)).await else { panic!() };
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        assert_eq!(r.topics[0].partitions[0].low_watermark, v as i64 + 1);
    }

    for v in versions(ApiKey::IncrementalAlterConfigs) {
        use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let value = format!("{}", 1000 + v as i64);
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default().with_resource_type(2).with_resource_name(StrBytes::from_static_str("t2")).with_configs(vec![
                AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(value.clone()))),
            ]),
            AlterConfigsResource::default().with_resource_type(2).with_resource_name(StrBytes::from_static_str("t2")).with_configs(vec![
                AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str("soon"))),
            ]),
            // No change to broker 1: nothing to do (as Kafka).
            AlterConfigsResource::default().with_resource_type(4).with_resource_name(StrBytes::from_static_str("1")),
            // A static broker setting: refused, as Kafka refuses it.
            AlterConfigsResource::default().with_resource_type(4).with_resource_name(StrBytes::from_static_str("1")).with_configs(vec![
                AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("num.partitions"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str("3"))),
            ]),
            // Removing an override of a broker that does not exist.
            AlterConfigsResource::default().with_resource_type(4).with_resource_name(StrBytes::from_static_str("77")),
        ]);
        let ResponseKind::IncrementalAlterConfigs(r) =
            c.call(ApiKey::IncrementalAlterConfigs, v, RequestKind::IncrementalAlterConfigs(req)).await
        else {
            panic!()
        };
        let codes: Vec<i16> = r.responses.iter().map(|x| x.error_code).collect();
        assert_eq!(codes, vec![0, 40, 0, 42, 42], "IncrementalAlterConfigs v{v}");
        assert_eq!(broker.metadata.image().topics["t2"].configs.get("retention.ms"), Some(&value));
    }
    for v in versions(ApiKey::AlterConfigs) {
        use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let req = AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t2"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("max.message.bytes"))
                .with_value(Some(StrBytes::from_static_str("2000")))])]);
        let ResponseKind::AlterConfigs(r) = c.call(ApiKey::AlterConfigs, v, RequestKind::AlterConfigs(req)).await else { panic!() };
        assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
        let configs = &broker.metadata.image().topics["t2"].configs;
        assert_eq!(configs.get("max.message.bytes").map(String::as_str), Some("2000"));
        assert!(!configs.contains_key("retention.ms"), "AlterConfigs replaces the whole set");
        assert_eq!(broker.partitions.get("t2", 0).expect("partition").config().max_message_bytes, 2000, "applied to the live partition");
    }

    for v in versions(ApiKey::DescribeLogDirs) {
        let req = DescribeLogDirsRequest::default().with_topics(None);
        let ResponseKind::DescribeLogDirs(r) = c.call(ApiKey::DescribeLogDirs, v, RequestKind::DescribeLogDirs(req)).await else {
            panic!()
        };
        let dir = &r.results[0];
        assert_eq!((r.results.len(), dir.error_code), (1, 0), "DescribeLogDirs v{v}");
        assert!(dir.topics.iter().any(|t| t.name.as_str() == "t2"), "DescribeLogDirs v{v}: {dir:?}");
        if v >= 4 {
            assert!(dir.total_bytes > 0 && dir.usable_bytes >= 0, "DescribeLogDirs v{v}: {dir:?}");
        }
        assert!(!dir.is_cordoned, "DescribeLogDirs v{v}: Karst cordons no directory");
    }

    for v in versions(ApiKey::DescribeTopicPartitions) {
        use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![TopicRequest::default().with_name(name("t2")), TopicRequest::default().with_name(name("nope"))])
            .with_response_partition_limit(2000);
        let ResponseKind::DescribeTopicPartitions(r) =
            c.call(ApiKey::DescribeTopicPartitions, v, RequestKind::DescribeTopicPartitions(req)).await
        else {
            panic!()
        };
        let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![3, 0], "DescribeTopicPartitions v{v}: topics in name order");
        let count = usize::try_from(broker.metadata.image().topics["t2"].partitions).expect("count");
        assert_eq!(r.topics[1].partitions.len(), count, "DescribeTopicPartitions v{v}");
    }

    for v in versions(ApiKey::ElectLeaders) {
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        let req = ElectLeadersRequest::default()
            .with_topic_partitions(Some(vec![TopicPartitions::default().with_topic(name("t2")).with_partitions(vec![0, 9])]));
        let ResponseKind::ElectLeaders(r) = c.call(ApiKey::ElectLeaders, v, RequestKind::ElectLeaders(req)).await else { panic!() };
        let codes: Vec<i16> = r.replica_election_results[0].partition_result.iter().map(|p| p.error_code).collect();
        assert_eq!(codes, vec![84, 3], "ElectLeaders v{v}: ELECTION_NOT_NEEDED, UNKNOWN_TOPIC_OR_PARTITION");
    }

    for v in versions(ApiKey::DescribeProducers) {
        use kafka_protocol::messages::describe_producers_request::TopicRequest;
        let req = DescribeProducersRequest::default()
            .with_topics(vec![TopicRequest::default().with_name(name("t2")).with_partition_indexes(vec![0, 9])]);
        let ResponseKind::DescribeProducers(r) = c.call(ApiKey::DescribeProducers, v, RequestKind::DescribeProducers(req)).await else {
            panic!()
        };
        let codes: Vec<i16> = r.topics[0].partitions.iter().map(|p| p.error_code).collect();
        assert_eq!(codes, vec![0, 3], "DescribeProducers v{v}");
    }

    for v in versions(ApiKey::DeleteTopics) {
        let t = format!("t{}", 2 + v - 1);
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default().with_name(Some(name(&t)))])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&t)])
        };
        let ResponseKind::DeleteTopics(r) = c.call(ApiKey::DeleteTopics, v, RequestKind::DeleteTopics(req)).await else { panic!() };
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v} {t}");
        assert!(!broker.metadata.image().topics.contains_key(&t));
    }
}

/// (error code, offset, timestamp) ListOffsets at `v` answers for `ts` on ts-0.
async fn list(c: &mut support::Client, v: i16, ts: i64) -> (i16, i64, i64) {
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
        .with_name(name("ts"))
        .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts)])]);
    let ResponseKind::ListOffsets(r) = c.call(ApiKey::ListOffsets, v, RequestKind::ListOffsets(req)).await else { panic!() };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

/// ListOffsets' special timestamps, each from the version that introduced it, as
/// Kafka answers them: -3 the first record with the largest timestamp (not the last
/// record: producers may set timestamps out of order), -4 the log start (no tiered
/// storage, so the local log is the log), -5 and -6 no offset (nothing tiered, nothing
/// waiting to be); older
/// versions, and negative timestamps no version knows, get UNSUPPORTED_VERSION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_special_timestamps_as_kafka() {
    let (_dir, _broker, mut c) = start(|_| {}).await;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default().with_name(name("ts")).with_num_partitions(1).with_replication_factor(1)]);
    let ResponseKind::CreateTopics(r) = c.call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req)).await else { panic!() };
    assert_eq!(r.topics[0].error_code, 0);

    // An empty log has no record with a largest timestamp.
    assert_eq!(list(&mut c, 7, -3).await, (0, -1, -1));

    let t0 = 1_700_000_000_000i64;
    // Offsets 0..=2, then 3..=4: the largest timestamp is at offset 1, and again at 4.
    for (base, timestamps) in [(0, vec![t0, t0 + 50, t0 + 20]), (3, vec![t0 + 10, t0 + 50])] {
        let max = *timestamps.iter().max().expect("records");
        let records = Bytes::from(karst_batch::build_batch_with_timestamps(base, &timestamps, max));
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
            .with_name(name("ts"))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))])]);
        let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 9, RequestKind::Produce(req)).await else { panic!() };
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }

    for v in 7..=11 {
        assert_eq!(list(&mut c, v, -3).await, (0, 1, t0 + 50), "MAX_TIMESTAMP at v{v}");
    }
    assert_eq!(list(&mut c, 6, -3).await.0, karst_protocol::error_codes::UNSUPPORTED_VERSION, "MAX_TIMESTAMP before v7");
    for v in 8..=11 {
        assert_eq!(list(&mut c, v, -4).await, (0, 0, -1), "EARLIEST_LOCAL at v{v}");
    }
    assert_eq!(list(&mut c, 7, -4).await.0, karst_protocol::error_codes::UNSUPPORTED_VERSION, "EARLIEST_LOCAL before v8");
    for v in 9..=11 {
        assert_eq!(list(&mut c, v, -5).await, (0, -1, -1), "LATEST_TIERED at v{v}");
    }
    assert_eq!(list(&mut c, 8, -5).await.0, karst_protocol::error_codes::UNSUPPORTED_VERSION, "LATEST_TIERED before v9");
    assert_eq!(list(&mut c, 11, -6).await, (0, -1, -1), "EARLIEST_PENDING_UPLOAD at v11");
    assert_eq!(list(&mut c, 10, -6).await.0, karst_protocol::error_codes::UNSUPPORTED_VERSION, "EARLIEST_PENDING_UPLOAD before v11");
    for v in [1, 6, 10, 11] {
        assert_eq!(list(&mut c, v, -7).await.0, karst_protocol::error_codes::UNSUPPORTED_VERSION, "an unknown negative timestamp at v{v}");
    }
    // Timestamps and the classic pair are unchanged at the new versions.
    assert_eq!(list(&mut c, 11, t0 + 15).await, (0, 1, t0 + 50));
    assert_eq!(list(&mut c, 11, -1).await.1, 5);
    assert_eq!(list(&mut c, 11, -2).await.1, 0);
}
