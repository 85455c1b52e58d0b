//! Writes the seed corpus under `fuzz/corpus/<target>/`: real frames, batches,
//! group records, controller frames and partition directories, made by the same
//! code that makes them in Karst. Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus`.
//! The output is deterministic; the corpus is committed.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{BufMut, BytesMut};
use karst_batch::{build_batch, build_batch_with_producer};
use karst_fuzz::put_piece;
use karst_protocol::api_versions::SUPPORTED;
use karst_protocol::kafka_protocol::messages::*;
use karst_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use karst_protocol::kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use karst_protocol::legacy;
use karst_storage::{Log, LogConfig};
use serde_json::json;

#[allow(dead_code, unreachable_pub)]
#[path = "../../broker/src/group/records.rs"]
mod records;

fn out_dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("corpus dir");
    dir
}

fn save(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A real v2 batch with `n` records, as a client encodes it.
fn real_batch(n: i64, compression: Compression) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(format!("key-{i}").into_bytes().into()),
            value: Some(format!("value-{i}").repeat(3).into_bytes().into()),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(&mut out, &records, &RecordEncodeOptions { version: 2, compression }).expect("encode records");
    out.to_vec()
}

fn subscription(version: i16) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(version);
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(vec![s("orders"), s("payments")])
        .with_user_data(Some(b"ud".to_vec().into()))
        .with_owned_partitions(vec![consumer_protocol_subscription::TopicPartition::default()
            .with_topic(TopicName(s("orders")))
            .with_partitions(vec![0, 2])])
        .with_generation_id(if version >= 2 { 3 } else { -1 })
        .with_rack_id(if version >= 3 { Some(s("rack-a")) } else { None });
    sub.encode(&mut b, version).expect("encode subscription");
    b.to_vec()
}

fn assignment(version: i16) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_i16(version);
    let a = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![consumer_protocol_assignment::TopicPartition::default()
            .with_topic(TopicName(s("orders")))
            .with_partitions(vec![1, 3])])
        .with_user_data(Some(b"x".to_vec().into()));
    a.encode(&mut b, version).expect("encode assignment");
    b.to_vec()
}

/// A request body of `key` with a little content where that reaches more code.
fn body(key: ApiKey) -> RequestKind {
    let topic = || TopicName(s("orders"));
    match key {
        ApiKey::Produce => RequestKind::Produce(ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
            produce_request::TopicProduceData::default().with_name(topic()).with_partition_data(vec![
                produce_request::PartitionProduceData::default().with_index(0).with_records(Some(real_batch(2, Compression::None).into())),
            ]),
        ])),
        ApiKey::Fetch => {
            RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(100).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![
                fetch_request::FetchTopic::default().with_topic(topic()).with_partitions(vec![
                    fetch_request::FetchPartition::default().with_partition(0).with_fetch_offset(5).with_partition_max_bytes(1 << 20),
                ]),
            ]))
        }
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default()),
        ApiKey::Metadata => RequestKind::Metadata(
            MetadataRequest::default().with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic()))])),
        ),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default().with_name(topic()).with_num_partitions(3).with_replication_factor(1),
        ])),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default().with_resource_type(2).with_resource_name(s("orders")),
        ])),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(CreatePartitionsRequest::default()),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(s("group"))),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default().with_group_id(GroupId(s("group"))).with_protocol_type(s("consumer")).with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(subscription(1)[2..].to_vec().into()),
            ]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default().with_group_id(GroupId(s("group"))).with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default().with_member_id(s("m-1")).with_assignment(assignment(0).into()),
        ])),
        ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
        ApiKey::OffsetCommit => {
            RequestKind::OffsetCommit(OffsetCommitRequest::default().with_group_id(GroupId(s("group"))).with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic()).with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(42),
                ]),
            ]))
        }
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![GroupId(s("group"))])),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default()),
        ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(AlterPartitionReassignmentsRequest::default()),
        ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default()),
        other => panic!("no seed body for {other:?}"),
    }
}

/// One request frame (size prefix, header, body), or None where `body` cannot be
/// said at `version`.
fn frame(key: ApiKey, version: i16, body: &RequestKind) -> Option<Vec<u8>> {
    let mut out = BytesMut::new();
    out.put_i32(0);
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(i32::from(version) + 1)
        .with_client_id(Some(s("seed")));
    header.encode(&mut out, key.request_header_version(version)).ok()?;
    if legacy::handles(key, version) {
        legacy::encode_request(&mut out, version, body).ok()?;
    } else {
        body.encode(&mut out, version).ok()?;
    }
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Some(out.to_vec())
}

fn request_seeds() {
    let dir = out_dir("request");
    for api in SUPPORTED {
        let body = body(api.key);
        // First byte: where the stream is split into two reads.
        let mut all = vec![7u8];
        for version in api.min..=api.max {
            all.extend(frame(api.key, version, &body).unwrap_or_default());
        }
        save(&dir, &format!("{:?}", api.key), &all);
    }
    // An unknown version of ApiVersions (answered per KIP-511) and an unknown key.
    let mut odd = vec![0u8];
    odd.extend(frame(ApiKey::ApiVersions, 3, &body(ApiKey::ApiVersions)).expect("frame"));
    odd[4 + 4] = 0x7f;
    save(&dir, "ApiVersions-unknown-version", &odd);
}

fn produce_seeds() {
    let dir = out_dir("produce");
    let with = |flags: u8, batches: &[Vec<u8>]| {
        let mut v = vec![flags];
        for b in batches {
            v.extend_from_slice(b);
        }
        v
    };
    let plain = build_batch(0, 3, 1_000, b"abc");
    save(&dir, "one", &with(0, std::slice::from_ref(&plain)));
    save(&dir, "two", &with(0, &[plain.clone(), build_batch(0, 1, 2_000, b"z")]));
    save(&dir, "idempotent", &with(0, &[build_batch_with_producer(0, 2, 1_000, 7, 0, 0, b"ab")]));
    save(
        &dir,
        "idempotent-in-sequence",
        &with(0, &[build_batch_with_producer(0, 2, 1_000, 7, 0, 0, b"ab"), build_batch_with_producer(0, 1, 1_000, 7, 0, 2, b"c")]),
    );
    save(&dir, "idempotent-gap", &with(0, &[build_batch_with_producer(0, 2, 1_000, 7, 0, 5, b"ab")]));
    let mut transactional = build_batch_with_producer(0, 1, 1_000, 9, 1, 0, b"t");
    transactional[22] |= 0x10;
    save(&dir, "transactional-fixcrc", &with(1, &[transactional]));
    let mut control = plain.clone();
    control[22] |= 0x20;
    save(&dir, "control-fixcrc", &with(1, &[control]));
    let mut legacy = plain.clone();
    legacy[16] = 1;
    save(&dir, "legacy-magic", &with(0, &[legacy]));
    save(&dir, "torn", &with(0, &[plain[..plain.len() - 2].to_vec()]));
    save(&dir, "too-large", &with(2, &[build_batch(0, 1, 1_000, &[b'x'; 100])]));
    save(&dir, "real", &with(0, &[real_batch(4, Compression::None)]));
    save(&dir, "real-gzip", &with(0, &[real_batch(4, Compression::Gzip)]));
    save(&dir, "real-lz4", &with(0, &[real_batch(3, Compression::Lz4)]));
}

fn group_seeds() {
    let dir = out_dir("group");
    let tagged = |tag: u8, bytes: &[u8]| [&[tag][..], bytes].concat();
    let key = records::encode_key(&records::Key::Offset { group: "g".into(), topic: "orders".into(), partition: 3 });
    save(&dir, "key-offset", &tagged(0, &key));
    save(&dir, "key-group", &tagged(0, &records::encode_key(&records::Key::Group { group: "g".into() })));
    let offset = records::OffsetValue { offset: 42, leader_epoch: 1, metadata: "meta".into(), commit_timestamp: 7 };
    save(&dir, "offset-value", &tagged(1, &records::encode_offset(&offset)));
    let group = records::GroupValue {
        protocol_type: "consumer".into(),
        generation: 5,
        protocol: Some("range".into()),
        leader: Some("m-1".into()),
        state_timestamp: 9,
    };
    save(&dir, "group-value", &tagged(2, &records::encode_group(&group)));
    for v in 0..=3 {
        save(&dir, &format!("subscription-v{v}"), &tagged(3, &subscription(v)));
    }
    for v in 0..=3 {
        save(&dir, &format!("assignment-v{v}"), &tagged(3, &assignment(v)));
    }
}

fn controller_seeds() {
    use karst_controller::{MetadataCommand, TypeConfig};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    let dir = out_dir("controller_frame");
    let frame = |value: serde_json::Value| {
        let body = serde_json::to_vec(&value).expect("json");
        [&(body.len() as u32).to_be_bytes()[..], &body].concat()
    };
    let envelope = |request: serde_json::Value| frame(json!({"cluster_id": "c1", "from": 1, "to": 2, "request": request}));
    let log_id = LogId::new(CommittedLeaderId::new(1, 1), 4);
    let vote = openraft::raft::VoteRequest::<u64>::new(Vote::new(2, 1), Some(log_id));
    save(&dir, "vote", &envelope(json!({ "Vote": vote })));
    let command = MetadataCommand::FenceBroker { broker_id: 3, broker_epoch: 9 };
    let entry = Entry::<TypeConfig> { log_id: LogId::new(CommittedLeaderId::new(1, 1), 5), payload: EntryPayload::Normal(command.clone()) };
    let append = openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(1, 1),
        prev_log_id: Some(log_id),
        entries: vec![entry],
        leader_commit: Some(log_id),
    };
    save(&dir, "append-entries", &envelope(json!({ "AppendEntries": append })));
    save(&dir, "propose", &envelope(json!({ "Propose": command })));
    save(&dir, "heartbeat", &envelope(json!({"Heartbeat": {"broker_id": 3, "broker_epoch": 9}})));
    save(&dir, "describe-quorum", &envelope(json!("DescribeQuorum")));
    save(&dir, "reply-refused", &frame(json!({"Refused": "wrong cluster"})));
    save(&dir, "reply-heartbeat", &frame(json!({"Heartbeat": {"Ok": null}})));
    let two = [envelope(json!("DescribeQuorum")), envelope(json!({"Heartbeat": {"broker_id": 1, "broker_epoch": 1}}))].concat();
    save(&dir, "two-frames", &two);
}

// Flags of the log_recovery target's input (see fuzz_targets/log_recovery.rs).
const CLEAN: u8 = 1;
const FIX_CRCS: u8 = 2;
const TWO_SEGMENTS: u8 = 4;
const INDEXES_OF_ACTIVE: u8 = 8;
const EPOCHS: u8 = 16;
const LOG_START: u8 = 32;
const SNAPSHOT: u8 = 64;

fn seg_name(offset: i64, ext: &str) -> String {
    format!("{offset:020}.{ext}")
}

/// Packs a partition directory into a log_recovery input.
fn pack(dir: &Path, flags: u8, base: i64, bases: &[i64], active_log: Option<Vec<u8>>) -> Vec<u8> {
    let read = |name: &str| fs::read(dir.join(name)).unwrap_or_default();
    let active = *bases.last().expect("a segment");
    let indexed = if flags & INDEXES_OF_ACTIVE != 0 || bases.len() == 1 { active } else { bases[0] };
    let mut out = vec![flags, u8::try_from(base).expect("small base")];
    put_piece(&mut out, &read(&seg_name(indexed, "index")));
    put_piece(&mut out, &read(&seg_name(indexed, "timeindex")));
    put_piece(&mut out, &read("leader-epoch-checkpoint"));
    put_piece(&mut out, &read("log-start-offset"));
    put_piece(&mut out, &read(&seg_name(active, "snapshot")));
    if flags & TWO_SEGMENTS != 0 {
        put_piece(&mut out, &read(&seg_name(bases[0], "log")));
    }
    out.extend(active_log.unwrap_or_else(|| read(&seg_name(active, "log"))));
    out
}

fn log_recovery_seeds() {
    let out = out_dir("log_recovery");
    let config = LogConfig { segment_index_bytes: 4096, index_interval_bytes: 64, ..LogConfig::default() };
    let fill = |log: &mut Log, n: i64, epoch: i32| {
        let mut sequence = 0;
        for i in 0..n {
            let value = vec![b'a' + (i % 26) as u8; 20 + (i as usize * 7) % 60];
            let count = 1 + (i % 3) as i32;
            let info = log.append(&build_batch_with_producer(0, count, 1_000 + i, 5, 0, sequence, &value), epoch, 0).expect("append");
            assert!(!info.duplicate);
            sequence += count;
        }
    };

    // Unclean single segment: whole, torn, corrupt, and a CRC left for the fixer.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(tmp.path(), config.clone()).expect("open");
    fill(&mut log, 8, 2);
    log.flush().expect("flush");
    let bytes = fs::read(tmp.path().join(seg_name(0, "log"))).expect("segment");
    save(&out, "unclean", &pack(tmp.path(), 0, 0, &[0], None));
    save(&out, "unclean-epochs", &pack(tmp.path(), EPOCHS, 0, &[0], None));
    save(&out, "torn", &pack(tmp.path(), 0, 0, &[0], Some(bytes[..bytes.len() - 5].to_vec())));
    let mut corrupt = bytes.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x40;
    save(&out, "corrupt", &pack(tmp.path(), 0, 0, &[0], Some(corrupt.clone())));
    save(&out, "corrupt-fixcrc", &pack(tmp.path(), FIX_CRCS, 0, &[0], Some(corrupt)));
    drop(log);

    // Clean shutdown: trimmed indexes, snapshot, checkpoints.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(tmp.path(), config.clone()).expect("open");
    fill(&mut log, 12, 1);
    log.close().expect("close");
    save(&out, "clean", &pack(tmp.path(), CLEAN | EPOCHS | LOG_START | SNAPSHOT, 0, &[0], None));
    save(&out, "clean-marker-missing", &pack(tmp.path(), EPOCHS | SNAPSHOT, 0, &[0], None));

    // Two segments (rolled), at base offset 10.
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::write(tmp.path().join("log-start-offset"), "0\n10\n").expect("checkpoint");
    let small = LogConfig { segment_bytes: 600, ..config.clone() };
    let mut log = Log::open(tmp.path(), small).expect("open");
    fill(&mut log, 10, 3);
    let bases: Vec<i64> = {
        let mut b: Vec<i64> = fs::read_dir(tmp.path())
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        b.sort();
        b
    };
    log.close().expect("close");
    let two = [bases[0], bases[1]];
    save(&out, "two-segments", &pack(tmp.path(), TWO_SEGMENTS | CLEAN | SNAPSHOT, 10, &two, None));
    save(&out, "two-segments-unclean", &pack(tmp.path(), TWO_SEGMENTS | INDEXES_OF_ACTIVE | LOG_START, 10, &two, None));
}

fn main() {
    request_seeds();
    produce_seeds();
    group_seeds();
    controller_seeds();
    log_recovery_seeds();
}
