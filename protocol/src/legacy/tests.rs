//! Tests over every legacy codec: golden bytes per version, truncations, random
//! and mutated bodies, and request frames captured from sarama 1.22.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;
use proptest::prelude::*;

use super::*;
use crate::codec;

/// One API version's golden bodies, built by hand from Kafka's JSON schemas (field
/// by field, see each module), and the structs they decode to.
pub(crate) struct Golden {
    pub(crate) key: ApiKey,
    pub(crate) version: i16,
    pub(crate) request: Vec<u8>,
    pub(crate) decoded_request: RequestKind,
    pub(crate) response: Vec<u8>,
    pub(crate) decoded_response: ResponseKind,
}

/// A message set of one message in format v0 (magic 0), as Produce v0/v1 carry it
/// and Fetch v0/v1 return it: offset 0, no key, value "hi".
pub(crate) const MESSAGE_SET_V0: &[u8] = &[
    0, 0, 0, 0, 0, 0, 0, 0, // offset: 0
    0, 0, 0, 16, // message_size: 16
    0xfd, 0x6e, 0xbd, 0xdb, // crc: CRC-32 (IEEE) of magic..value
    0,    // magic: 0
    0,    // attributes: no compression
    0xff, 0xff, 0xff, 0xff, // key: null
    0, 0, 0, 2, b'h', b'i', // value: "hi"
];

/// The same message in format v1 (magic 1, with a timestamp), as Produce v2 carries
/// it and Fetch v2/v3 return it.
pub(crate) const MESSAGE_SET_V1: &[u8] = &[
    0, 0, 0, 0, 0, 0, 0, 0, // offset: 0
    0, 0, 0, 24, // message_size: 24
    0xdb, 0xa4, 0xe6, 0xe2, // crc: CRC-32 (IEEE) of magic..value
    1,    // magic: 1
    0,    // attributes: no compression, create time
    0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // timestamp: 1700000000000
    0xff, 0xff, 0xff, 0xff, // key: null
    0, 0, 0, 2, b'h', b'i', // value: "hi"
];

fn goldens() -> Vec<Golden> {
    [
        produce::goldens::all(),
        fetch::goldens::all(),
        list_offsets::goldens::all(),
        offset_commit::goldens::all(),
        offset_fetch::goldens::all(),
        topics::goldens::all(),
        describe_configs::goldens::all(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn name(g: &Golden) -> String {
    format!("{:?} v{}", g.key, g.version)
}

#[test]
fn handles_exactly_the_listed_versions() {
    let expected = [
        (ApiKey::Produce, 0),
        (ApiKey::Produce, 1),
        (ApiKey::Produce, 2),
        (ApiKey::Fetch, 0),
        (ApiKey::Fetch, 1),
        (ApiKey::Fetch, 2),
        (ApiKey::Fetch, 3),
        (ApiKey::ListOffsets, 0),
        (ApiKey::OffsetCommit, 0),
        (ApiKey::OffsetCommit, 1),
        (ApiKey::OffsetFetch, 0),
        (ApiKey::CreateTopics, 0),
        (ApiKey::CreateTopics, 1),
        (ApiKey::DeleteTopics, 0),
        (ApiKey::DescribeConfigs, 0),
    ];
    let mut handled = Vec::new();
    for raw in 0..i16::MAX {
        let Ok(key) = ApiKey::try_from(raw) else { continue };
        handled.extend((-1..=30).filter(|&v| handles(key, v)).map(|v| (key, v)));
    }
    assert_eq!(handled, expected);
}

#[test]
fn legacy_ranges_end_where_kafka_protocol_begins() {
    for r in LEGACY_VERSIONS {
        assert_eq!(r.min, 0, "{:?}", r.key);
        assert_eq!(r.max + 1, r.key.valid_versions().min, "{:?}: no gap and no overlap with kafka-protocol", r.key);
        assert_eq!(lowest_version(r.key), 0);
    }
    assert_eq!(lowest_version(ApiKey::Metadata), 0);
    assert_eq!(lowest_version(ApiKey::DescribeAcls), 1, "not here: kafka-protocol's own floor");
}

#[test]
fn every_legacy_version_has_a_golden() {
    let goldens = goldens();
    for r in LEGACY_VERSIONS {
        for v in r.min..=r.max {
            assert_eq!(goldens.iter().filter(|g| g.key == r.key && g.version == v).count(), 1, "{:?} v{v}", r.key);
        }
    }
    assert!(goldens.iter().all(|g| handles(g.key, g.version)));
}

#[test]
fn golden_requests_decode_as_expected_and_re_encode_byte_identically() {
    for g in goldens() {
        let decoded = decode(g.key, g.version, Bytes::from(g.request.clone())).unwrap_or_else(|e| panic!("{}: {e}", name(&g)));
        assert_eq!(decoded, g.decoded_request, "{}", name(&g));
        let mut out = BytesMut::new();
        encode_request(&mut out, g.version, &g.decoded_request).unwrap_or_else(|e| panic!("{}: {e}", name(&g)));
        assert_eq!(&out[..], &g.request[..], "{}: client encoding", name(&g));
    }
}

#[test]
fn golden_responses_encode_byte_identically_and_decode_as_expected() {
    for g in goldens() {
        let mut out = BytesMut::new();
        encode(&mut out, g.version, &g.decoded_response).unwrap_or_else(|e| panic!("{}: {e}", name(&g)));
        assert_eq!(&out[..], &g.response[..], "{}: server encoding", name(&g));
        let decoded = decode_response(g.key, g.version, Bytes::from(g.response.clone())).unwrap_or_else(|e| panic!("{}: {e}", name(&g)));
        assert_eq!(decoded, g.decoded_response, "{}", name(&g));
    }
}

#[test]
fn every_truncation_of_a_golden_is_an_error() {
    for g in goldens() {
        let request = Bytes::from(g.request.clone());
        for cut in 0..request.len() {
            assert!(decode(g.key, g.version, request.slice(..cut)).is_err(), "{} request cut at {cut}", name(&g));
        }
        let response = Bytes::from(g.response.clone());
        for cut in 0..response.len() {
            assert!(decode_response(g.key, g.version, response.slice(..cut)).is_err(), "{} response cut at {cut}", name(&g));
        }
    }
}

#[test]
fn bodies_of_the_wrong_kind_or_version_are_refused() {
    let g = &produce::goldens::all()[0];
    assert!(decode(ApiKey::Produce, 3, Bytes::from(g.request.clone())).is_err(), "v3 is kafka-protocol's");
    assert!(decode(ApiKey::Metadata, 0, Bytes::new()).is_err());
    assert!(encode_request(&mut BytesMut::new(), 3, &g.decoded_request).is_err());
    assert!(encode(&mut BytesMut::new(), 3, &g.decoded_response).is_err());
    assert!(decode_response(ApiKey::Produce, 3, Bytes::new()).is_err());
    let metadata = RequestKind::Metadata(Default::default());
    assert!(encode_request(&mut BytesMut::new(), 0, &metadata).is_err());
}

/// The frame-level entry points in `codec` pick the legacy codecs, with the
/// request and response header versions kafka-protocol gives the old versions
/// (v1 and v0: none of these versions is flexible).
#[test]
fn frames_go_through_the_codec_entry_points() {
    for g in goldens() {
        let frame = codec::encode_request(g.key, g.version, 9, "karst", &g.decoded_request).expect("frame");
        let mut b = frame.slice(4..);
        let header = RequestHeader::decode(&mut b, g.key.request_header_version(g.version)).expect("header");
        assert_eq!((header.request_api_key, header.request_api_version, header.correlation_id), (g.key as i16, g.version, 9));
        assert_eq!(&b[..], &g.request[..], "{}", name(&g));

        let frame = codec::encode_response(9, g.key, g.version, &g.decoded_response).expect("frame");
        assert_eq!(&frame[4..8], &9i32.to_be_bytes(), "correlation id, then the body (header v0)");
        assert_eq!(&frame[8..], &g.response[..], "{}", name(&g));
        let (correlation_id, body) = codec::decode_response(g.key, g.version, frame.slice(4..)).expect("decodes");
        assert_eq!((correlation_id, body), (9, g.decoded_response));
    }
}

fn legacy_versions() -> Vec<(ApiKey, i16)> {
    LEGACY_VERSIONS.iter().flat_map(|r| (r.min..=r.max).map(move |v| (r.key, v))).collect()
}

/// A request that decodes is one the client side can say again, and saying it
/// again gives the same request.
fn assert_request_round_trips(key: ApiKey, version: i16, body: Bytes) {
    if let Ok(decoded) = decode(key, version, body) {
        let mut out = BytesMut::new();
        encode_request(&mut out, version, &decoded).expect("a decoded request re-encodes");
        assert_eq!(decode(key, version, out.freeze()).expect("and decodes again"), decoded);
    }
}

fn assert_response_re_encodes(key: ApiKey, version: i16, body: Bytes) {
    if let Ok(decoded) = decode_response(key, version, body) {
        encode(&mut BytesMut::new(), version, &decoded).expect("a decoded response re-encodes");
    }
}

proptest! {
    #[test]
    fn random_bodies_never_panic(which in any::<prop::sample::Index>(), body in prop::collection::vec(any::<u8>(), 0..256)) {
        let versions = legacy_versions();
        let (key, version) = versions[which.index(versions.len())];
        let body = Bytes::from(body);
        assert_request_round_trips(key, version, body.clone());
        assert_response_re_encodes(key, version, body);
    }

    #[test]
    fn mutated_goldens_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let goldens = goldens();
        let g = &goldens[which.index(goldens.len())];
        for original in [&g.request, &g.response] {
            let mut body = original.clone();
            for (at, byte) in &edits {
                let i = at.index(body.len());
                body[i] = *byte;
            }
            let body = Bytes::from(body);
            assert_request_round_trips(g.key, g.version, body.clone());
            assert_response_re_encodes(g.key, g.version, body);
        }
    }

    /// Counts and lengths far beyond the body are refused before anything is
    /// allocated for them: a golden with one four-byte window set to a huge value.
    #[test]
    fn huge_declared_lengths_neither_allocate_nor_panic(which in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), huge in 0x0100_0000i32..=i32::MAX) {
        let goldens = goldens();
        let g = &goldens[which.index(goldens.len())];
        for original in [&g.request, &g.response] {
            let mut body = original.clone();
            let i = at.index(body.len() - 3);
            body[i..i + 4].copy_from_slice(&huge.to_be_bytes());
            let body = Bytes::from(body);
            assert_request_round_trips(g.key, g.version, body.clone());
            assert_response_re_encodes(g.key, g.version, body);
        }
    }
}

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/legacy-apis");

/// The golden response bodies are committed as files too, for the sarama check
/// described in testdata/legacy-apis/README.md. `KARST_BLESS=1` rewrites them.
#[test]
fn committed_golden_responses_are_the_goldens() {
    let bless = std::env::var_os("KARST_BLESS").is_some();
    for g in goldens() {
        let path = format!("{TESTDATA}/golden-responses/{:?}-v{}.bin", g.key, g.version);
        if bless {
            std::fs::write(&path, &g.response).expect("write golden");
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(committed, g.response, "{path}");
    }
}

mod sarama {
    //! Request frames sarama 1.22 wrote (testdata/legacy-apis/README.md): each
    //! decodes to what sarama was asked to send and re-encodes byte-identically.

    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn s(text: &'static str) -> StrBytes {
        StrBytes::from_static_str(text)
    }

    fn events() -> TopicName {
        TopicName(s("events"))
    }

    fn produce(records: &'static [u8]) -> RequestKind {
        RequestKind::Produce(ProduceRequest::default().with_acks(1).with_timeout_ms(1500).with_topic_data(vec![TopicProduceData::default()
            .with_name(events())
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from_static(records)))])]))
    }

    fn fetch(max_bytes: i32) -> RequestKind {
        RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(500).with_min_bytes(1).with_max_bytes(max_bytes).with_topics(vec![
            FetchTopic::default().with_topic(events()).with_partitions(vec![
                FetchPartition::default().with_partition(0).with_fetch_offset(41).with_partition_max_bytes(1_048_576),
            ]),
        ]))
    }

    fn offset_commit(generation: i32, member: &'static str) -> RequestKind {
        RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g1")))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(member))
                .with_group_instance_id(None)
                .with_topics(vec![OffsetCommitRequestTopic::default().with_name(events()).with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42)
                        .with_committed_metadata(Some(s("m"))),
                ])]),
        )
    }

    fn create_topics(validate_only: bool) -> RequestKind {
        RequestKind::CreateTopics(CreateTopicsRequest::default().with_timeout_ms(30_000).with_validate_only(validate_only).with_topics(
            vec![
            CreatableTopic::default()
                .with_name(TopicName(s("new")))
                .with_num_partitions(3)
                .with_replication_factor(1)
                .with_configs(vec![CreatableTopicConfig::default().with_name(s("cleanup.policy")).with_value(Some(s("compact")))]),
        ],
        ))
    }

    fn cases() -> Vec<(&'static str, &'static [u8], RequestKind)> {
        macro_rules! capture {
            ($name:literal) => {
                ($name, include_bytes!(concat!("../../testdata/legacy-apis/sarama-requests/", $name, ".bin")).as_slice())
            };
        }
        let case = |(name, frame), expected| (name, frame, expected);
        vec![
            case(capture!("produce-v0"), produce(MESSAGE_SET_V0)),
            case(capture!("produce-v1"), produce(MESSAGE_SET_V0)),
            case(capture!("produce-v2"), produce(MESSAGE_SET_V1)),
            case(capture!("fetch-v0"), fetch(i32::MAX)),
            case(capture!("fetch-v1"), fetch(i32::MAX)),
            case(capture!("fetch-v2"), fetch(i32::MAX)),
            // sarama's MaxResponseSize, 100 MiB
            case(capture!("fetch-v3"), fetch(104_857_600)),
            case(
                capture!("list-offsets-v0"),
                RequestKind::ListOffsets(ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(
                    vec![ListOffsetsTopic::default()
                        .with_name(events())
                        .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])],
                )),
            ),
            case(capture!("offset-commit-v0"), offset_commit(-1, "")),
            case(capture!("offset-commit-v1"), offset_commit(4, "m-1")),
            case(
                capture!("offset-fetch-v0"),
                RequestKind::OffsetFetch(
                    OffsetFetchRequest::default()
                        .with_group_id(GroupId(s("g1")))
                        .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(events()).with_partition_indexes(vec![0, 1])])),
                ),
            ),
            case(capture!("create-topics-v0"), create_topics(false)),
            case(capture!("create-topics-v1"), create_topics(true)),
            case(
                capture!("delete-topics-v0"),
                RequestKind::DeleteTopics(
                    DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("old"))]).with_timeout_ms(30_000),
                ),
            ),
            case(
                capture!("describe-configs-v0"),
                RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default().with_resource_type(2).with_resource_name(s("events")).with_configuration_keys(None),
                ])),
            ),
        ]
    }

    #[test]
    fn sarama_requests_decode_as_sent_and_re_encode_byte_identically() {
        for (name, frame, expected) in cases() {
            let frame = Bytes::from_static(frame);
            assert_eq!(frame[..4], ((frame.len() - 4) as i32).to_be_bytes(), "{name}: size prefix");
            let key = ApiKey::try_from(i16::from_be_bytes([frame[4], frame[5]])).expect("api key");
            let version = i16::from_be_bytes([frame[6], frame[7]]);
            assert!(handles(key, version), "{name}");
            let mut b = frame.slice(4..);
            let header = RequestHeader::decode(&mut b, key.request_header_version(version)).expect("header");
            assert_eq!(header.client_id.as_deref(), Some("sarama"), "{name}");
            let decoded = decode(key, version, b.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(decoded, expected, "{name}");
            let mut out = BytesMut::new();
            encode_request(&mut out, version, &decoded).expect("encodes");
            assert_eq!(&out[..], &b[..], "{name}: re-encoded");
            for cut in 0..b.len() {
                assert!(decode(key, version, b.slice(..cut)).is_err(), "{name} cut at {cut}");
            }
        }
    }
}
