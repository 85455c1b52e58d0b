//! A tiny synchronous Kafka client over `std::net::TcpStream`, built on kafka-protocol's
//! codecs, for tests that need byte-level control (bad input, exact versions).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ConsumerProtocolAssignment, CreateTopicsRequest, DescribeGroupsRequest, GroupId,
    MetadataRequest, OffsetFetchRequest, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use uuid::Uuid;

/// Default read/write timeout of a raw connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response frame the raw client accepts.
const MAX_RESPONSE: usize = 64 << 20;

/// What reading a response frame produced.
#[derive(Debug)]
pub enum ReadOutcome {
    /// A whole size-prefixed frame (without the size).
    Frame(Bytes),
    /// The broker closed the connection (EOF or reset), possibly mid-frame.
    Closed,
}

/// `req` at `version` as a complete frame (size prefix, header, body).
pub fn request_frame<R: Request>(req: &R, version: i16, correlation_id: i32, client_id: StrBytes) -> Result<Vec<u8>> {
    let api_key = ApiKey::try_from(R::KEY).map_err(|()| anyhow!("unknown api key {}", R::KEY))?;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id));
    let mut body = BytesMut::new();
    header.encode(&mut body, api_key.request_header_version(version)).context("encoding request header")?;
    req.encode(&mut body, version).with_context(|| format!("encoding {api_key:?} v{version}"))?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// One TCP connection to a broker.
pub struct RawClient {
    stream: TcpStream,
    next_correlation_id: i32,
    api_versions: Option<ApiVersionsResponse>,
    client_id: StrBytes,
}

impl RawClient {
    /// Connects with [`IO_TIMEOUT`] read and write timeouts.
    pub fn connect(addr: SocketAddr) -> Result<RawClient> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RawClient { stream, next_correlation_id: 1, api_versions: None, client_id: StrBytes::from_static_str("karst-tests") })
    }

    /// Read and write timeouts other than [`IO_TIMEOUT`]: how long a paused broker may
    /// hold a request.
    pub fn set_io_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.set_write_timeout(Some(timeout))?;
        Ok(())
    }

    /// The client id the following requests carry (quotas are per client id).
    pub fn set_client_id(&mut self, id: &str) {
        self.client_id = StrBytes::from_string(id.to_string());
    }

    /// A fresh correlation id.
    pub fn correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id += 1;
        id
    }

    /// Encodes `req` at `version` as a complete frame (size prefix, header, body).
    pub fn encode<R: Request>(&mut self, req: &R, version: i16, correlation_id: i32) -> Result<Vec<u8>> {
        request_frame(req, version, correlation_id, self.client_id.clone())
    }

    /// Sends `req` at `version` and decodes the response, checking the correlation id
    /// and that the body was consumed exactly.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let correlation_id = self.correlation_id();
        let frame = self.encode(req, version, correlation_id)?;
        self.stream.write_all(&frame).context("writing request")?;
        let frame = match self.read_frame()? {
            ReadOutcome::Frame(f) => f,
            ReadOutcome::Closed => bail!("broker closed the connection instead of answering {:?} v{version}", ApiKey::try_from(R::KEY)),
        };
        decode_response::<R::Response>(frame, version, correlation_id)
    }

    /// Writes raw bytes.
    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Writes raw bytes, treating "the broker already closed" (broken pipe, reset) as
    /// success: useful when the broker is expected to hang up mid-write.
    pub fn write_raw_lenient(&mut self, bytes: &[u8]) -> Result<()> {
        match self.write_raw(bytes) {
            Ok(()) => Ok(()),
            Err(e) if is_closed_error(&e) => Ok(()),
            Err(e) => Err(e).context("writing raw bytes"),
        }
    }

    /// Half-closes the connection (no more bytes from the client).
    pub fn shutdown_write(&self) -> Result<()> {
        self.stream.shutdown(Shutdown::Write)?;
        Ok(())
    }

    /// Reads one size-prefixed frame.
    pub fn read_frame(&mut self) -> Result<ReadOutcome> {
        let mut size = [0u8; 4];
        if !read_exact_or_closed(&mut self.stream, &mut size)? {
            return Ok(ReadOutcome::Closed);
        }
        let size = i32::from_be_bytes(size);
        if size < 0 || size as usize > MAX_RESPONSE {
            bail!("broker sent a frame size of {size}");
        }
        let mut body = vec![0u8; size as usize];
        if !read_exact_or_closed(&mut self.stream, &mut body)? {
            return Ok(ReadOutcome::Closed);
        }
        Ok(ReadOutcome::Frame(Bytes::from(body)))
    }

    /// Fails unless the broker closes this connection within `within`, without
    /// sending anything first.
    pub fn expect_closed(&mut self, within: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(within))?;
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        let mut received = 0usize;
        let result = loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => received += n,
                Err(e) if is_closed_error(&e) => break Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break Err(anyhow!("connection still open {:?} after the bad input", start.elapsed()))
                }
                Err(e) => break Err(e).context("reading from broker"),
            }
            if start.elapsed() > within {
                break Err(anyhow!("connection still open after {within:?}"));
            }
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT))?;
        result?;
        if received > 0 {
            bail!("broker sent {received} bytes before closing; expected a close without a response");
        }
        Ok(())
    }

    /// ApiVersions v3; fails unless the error code is 0 and the API list is non-empty.
    /// The first answer is remembered for [`RawClient::version_for`].
    pub fn api_versions(&mut self) -> Result<ApiVersionsResponse> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("karst-tests"))
            .with_client_software_version(StrBytes::from_static_str("0.1.0"));
        let resp = self.send(&req, 3)?;
        if resp.error_code != 0 {
            bail!("ApiVersions v3 returned error code {}", resp.error_code);
        }
        if !resp.api_keys.iter().any(|k| k.api_key == ApiKey::ApiVersions as i16) {
            bail!("ApiVersions v3 response does not list ApiVersions: {resp:?}");
        }
        self.api_versions = Some(resp.clone());
        Ok(resp)
    }

    /// The highest version of `key` that both the broker (per ApiVersions) and
    /// kafka-protocol support.
    pub fn version_for(&mut self, key: ApiKey) -> Result<i16> {
        if self.api_versions.is_none() {
            self.api_versions()?;
        }
        let versions = self.api_versions.as_ref().context("api versions")?;
        let theirs =
            versions.api_keys.iter().find(|k| k.api_key == key as i16).ok_or_else(|| anyhow!("broker does not advertise {key:?}"))?;
        let ours = key.valid_versions();
        let max = theirs.max_version.min(ours.max);
        if max < theirs.min_version.max(ours.min) {
            bail!("no common version for {key:?}: broker {theirs:?}, ours {ours:?}");
        }
        Ok(max)
    }

    /// Creates a topic (CreateTopics at the highest common version) and returns the
    /// per-topic result without judging its error code.
    pub fn create_topic_result(&mut self, name: &str, partitions: i32, configs: &[(&str, &str)]) -> Result<CreatableTopicResult> {
        self.create_replicated_result(name, partitions, 1, configs)
    }

    /// CreateTopics with a replication factor; the broker's result for the topic.
    pub fn create_replicated_result(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<CreatableTopicResult> {
        let version = self.version_for(ApiKey::CreateTopics)?;
        self.create_topic_at(version, name, partitions, replication_factor, configs)
    }

    /// CreateTopics at `version`; the broker's result for the topic.
    pub fn create_topic_at(
        &mut self,
        version: i16,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<CreatableTopicResult> {
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            );
        let req = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(10_000);
        let resp = self.send(&req, version)?;
        resp.topics
            .into_iter()
            .find(|t| t.name.0.as_str() == name)
            .ok_or_else(|| anyhow!("CreateTopics response has no result for {name:?}"))
    }

    /// Creates a topic and fails unless the broker reports success.
    pub fn create_topic(&mut self, name: &str, partitions: i32, configs: &[(&str, &str)]) -> Result<()> {
        let result = self.create_topic_result(name, partitions, configs)?;
        if result.error_code != 0 {
            bail!("CreateTopics {name:?} failed: error {} {:?}", result.error_code, result.error_message);
        }
        Ok(())
    }

    /// Creates a replicated topic and fails unless the broker reports success.
    pub fn create_replicated(&mut self, name: &str, partitions: i32, replication_factor: i16, configs: &[(&str, &str)]) -> Result<()> {
        let result = self.create_replicated_result(name, partitions, replication_factor, configs)?;
        if result.error_code != 0 {
            bail!(
                "CreateTopics {name:?} (replication factor {replication_factor}) failed: error {} {:?}",
                result.error_code,
                result.error_message
            );
        }
        Ok(())
    }

    /// Produces `records` (a record batch or message set, as raw bytes) to one
    /// partition with acks=all at `version`, returning that partition's response. From
    /// v13 Produce names topics by id (KIP-516): the id is looked up in Metadata first.
    pub fn produce(&mut self, topic: &str, partition: i32, records: Vec<u8>, version: i16) -> Result<PartitionProduceResponse> {
        let mut req = produce_request(topic, partition, records);
        if version < 13 {
            let resp = self.send(&req, version)?;
            return partition_response(&resp, topic, partition);
        }
        let id = self.topic_id(topic)?;
        req.topic_data.iter_mut().for_each(|t| t.topic_id = id);
        let resp = self.send(&req, version)?;
        resp.responses
            .iter()
            .filter(|t| t.topic_id == id)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .cloned()
            .ok_or_else(|| anyhow!("no response for {topic} ({id})-{partition} in {resp:?}"))
    }

    /// The id of `topic` (Metadata v12, without creating it); fails where the broker
    /// does not know the topic.
    pub fn topic_id(&mut self, topic: &str) -> Result<Uuid> {
        let version = self.version_for(ApiKey::Metadata)?.min(12);
        if version < 10 {
            bail!("Metadata v{version} carries no topic ids");
        }
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
            .with_allow_auto_topic_creation(false);
        let resp = self.send(&req, version)?;
        let t = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
            .ok_or_else(|| anyhow!("no entry for {topic} in Metadata: {resp:?}"))?;
        if t.error_code != 0 || t.topic_id.is_nil() {
            bail!("Metadata for {topic}: error code {}, topic id {}", t.error_code, t.topic_id);
        }
        Ok(t.topic_id)
    }

    /// DescribeConfigs v4 of `topic`: (value, source) of every config by name.
    pub fn describe_topic_configs(&mut self, topic: &str) -> Result<BTreeMap<String, (String, i8)>> {
        let (code, configs) = self.describe_configs(2, topic)?;
        if code != 0 {
            bail!("DescribeConfigs {topic}: error {code}");
        }
        Ok(configs.into_iter().map(|(k, c)| (k, (c.value.unwrap_or_default(), c.source))).collect())
    }

    /// DescribeConfigs v4 (with synonyms) of one resource (2 topic, 4 broker): the
    /// error code and every config by name.
    pub fn describe_configs(&mut self, resource_type: i8, name: &str) -> Result<(i16, BTreeMap<String, DescribedConfig>)> {
        use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        use kafka_protocol::messages::DescribeConfigsRequest;
        let resource = DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_string()));
        let resp = self.send(&DescribeConfigsRequest::default().with_resources(vec![resource]).with_include_synonyms(true), 4)?;
        let r = resp.results.first().ok_or_else(|| anyhow!("no result"))?;
        let configs = r
            .configs
            .iter()
            .map(|c| {
                let described = DescribedConfig {
                    value: c.value.as_ref().map(|v| v.to_string()),
                    source: c.config_source,
                    read_only: c.read_only,
                    synonyms: c.synonyms.iter().map(|s| (s.name.to_string(), s.value.as_ref().map(|v| v.to_string()), s.source)).collect(),
                };
                (c.name.to_string(), described)
            })
            .collect();
        Ok((r.error_code, configs))
    }

    /// IncrementalAlterConfigs v1 of one config of `topic` (`op`: 0 SET, 1 DELETE,
    /// 2 APPEND, 3 SUBTRACT); returns the error code.
    pub fn alter_topic_config(&mut self, topic: &str, key: &str, op: i8, value: Option<&str>) -> Result<i16> {
        Ok(self.alter_configs(2, topic, &[(key, op, value)])?.0)
    }

    /// IncrementalAlterConfigs v1 of one resource (2 topic, 4 broker) with `ops`
    /// (name, operation, value): the error code and message.
    pub fn alter_configs(&mut self, resource_type: i8, name: &str, ops: &[(&str, i8, Option<&str>)]) -> Result<(i16, Option<String>)> {
        use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
        use kafka_protocol::messages::IncrementalAlterConfigsRequest;
        let configs = ops
            .iter()
            .map(|(key, op, value)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(key.to_string()))
                    .with_config_operation(*op)
                    .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
            })
            .collect();
        let resource = AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configs(configs);
        let resp = self.send(&IncrementalAlterConfigsRequest::default().with_resources(vec![resource]), 1)?;
        let r = resp.responses.first().ok_or_else(|| anyhow!("no response"))?;
        Ok((r.error_code, r.error_message.as_ref().map(|m| m.to_string())))
    }

    /// The offsets `group` has committed for `partitions` of `topic` (OffsetFetch at the
    /// highest common version up to v7, the last with a single group per request), as
    /// partition → offset, -1 where nothing is committed. Fails on any error code.
    pub fn committed_offsets(&mut self, group: &str, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, i64>> {
        let version = self.version_for(ApiKey::OffsetFetch)?.min(7);
        let req = OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_string(group.to_string()))).with_topics(Some(vec![
            OffsetFetchRequestTopic::default().with_name(topic_name(topic)).with_partition_indexes(partitions.to_vec()),
        ]));
        let resp = self.send(&req, version)?;
        if resp.error_code != 0 {
            bail!("OffsetFetch v{version} for group {group:?} returned error code {}", resp.error_code);
        }
        let mut out = BTreeMap::new();
        for t in resp.topics.iter().filter(|t| t.name.0.as_str() == topic) {
            for p in &t.partitions {
                if p.error_code != 0 {
                    bail!("OffsetFetch v{version} {group:?} {topic}-{}: error code {}", p.partition_index, p.error_code);
                }
                out.insert(p.partition_index, p.committed_offset);
            }
        }
        let wanted: BTreeSet<i32> = partitions.iter().copied().collect();
        if !out.keys().eq(wanted.iter()) {
            bail!("OffsetFetch v{version} {group:?} {topic}: asked for partitions {partitions:?}, got {resp:?}");
        }
        Ok(out)
    }

    /// DescribeGroups (highest common version) for one group; fails on a group error code.
    pub fn describe_group(&mut self, group: &str) -> Result<DescribedGroup> {
        let version = self.version_for(ApiKey::DescribeGroups)?;
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
        let resp = self.send(&req, version)?;
        let described = resp
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| anyhow!("DescribeGroups v{version} has no entry for {group:?}"))?;
        if described.error_code != 0 {
            bail!("DescribeGroups v{version} {group:?}: error code {}", described.error_code);
        }
        Ok(described)
    }
}

/// Decodes a consumer-protocol member assignment (as DescribeGroups and SyncGroup carry
/// it: i16 version, then the assignment) into topic → sorted partitions.
/// One config in a DescribeConfigs answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    pub value: Option<String>,
    pub source: i8,
    pub read_only: bool,
    /// (name, value, source), highest precedence first.
    pub synonyms: Vec<(String, Option<String>, i8)>,
}

pub fn decode_assignment(bytes: &Bytes) -> Result<BTreeMap<String, Vec<i32>>> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        bail!("member assignment of {} bytes", buf.remaining());
    }
    let version = buf.get_i16();
    if version < 0 {
        bail!("member assignment with version {version}");
    }
    // Newer versions only append fields, which a lower version's decoder ignores.
    let assignment = ConsumerProtocolAssignment::decode(&mut buf, version.min(3)).context("decoding a member assignment")?;
    let mut out = BTreeMap::new();
    for tp in assignment.assigned_partitions {
        let mut parts = tp.partitions.clone();
        parts.sort_unstable();
        out.insert(tp.topic.0.to_string(), parts);
    }
    Ok(out)
}

/// Decodes a response frame: header (checking the correlation id), then the body at
/// `version`, requiring that no bytes are left over.
pub fn decode_response<T: Decodable + HeaderVersion>(mut frame: Bytes, version: i16, correlation_id: i32) -> Result<T> {
    let header = ResponseHeader::decode(&mut frame, T::header_version(version)).context("decoding response header")?;
    if header.correlation_id != correlation_id {
        bail!("response correlation id {} != request's {correlation_id}", header.correlation_id);
    }
    let body = T::decode(&mut frame, version).context("decoding response body")?;
    if frame.has_remaining() {
        bail!("{} bytes left over after decoding the response body at v{version}", frame.remaining());
    }
    Ok(body)
}

/// A `TopicName` from a `&str`.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// A Produce request (acks=all, 10 s timeout) of `records` for one partition.
pub fn produce_request(topic: &str, partition: i32, records: Vec<u8>) -> ProduceRequest {
    ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(topic_name(topic))
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(Bytes::from(records)))])])
}

/// The response for `topic`/`partition` in a Produce response.
pub fn partition_response(resp: &ProduceResponse, topic: &str, partition: i32) -> Result<PartitionProduceResponse> {
    resp.responses
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == partition)
        .cloned()
        .ok_or_else(|| anyhow!("no response for {topic}-{partition} in {resp:?}"))
}

/// A record's optional key and optional value.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// A v2 record batch holding `records` as (key, value) pairs, with a valid CRC.
pub fn record_batch(records: &[KeyValue<'_>], timestamp: i64) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        body.extend(encode_record(i as i64, *key, *value));
    }
    karst_batch::build_batch(0, records.len() as i32, timestamp, &body)
}

/// A transactional batch of one record (key `k`) of producer `pid` at `epoch` and `seq`.
pub fn txn_record_batch(pid: i64, epoch: i16, seq: i32, value: &str) -> Bytes {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let r = Record {
        transactional: true,
        control: false,
        partition_leader_epoch: 0,
        producer_id: pid,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: seq,
        timestamp: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut buf = BytesMut::new();
    // One record, no compression: the encoder cannot fail.
    let _ = RecordBatchEncoder::encode(&mut buf, [r].iter(), &RecordEncodeOptions { version: 2, compression: Compression::None });
    buf.freeze()
}

/// One v2 record (timestamp delta 0, no headers).
pub fn encode_record(offset_delta: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
    let mut r = Vec::new();
    r.push(0); // attributes
    put_varint(&mut r, 0); // timestamp delta
    put_varint(&mut r, offset_delta);
    for field in [key, value] {
        match field {
            Some(b) => {
                put_varint(&mut r, b.len() as i64);
                r.extend_from_slice(b);
            }
            None => put_varint(&mut r, -1),
        }
    }
    put_varint(&mut r, 0); // header count
    let mut out = Vec::with_capacity(r.len() + 5);
    put_varint(&mut out, r.len() as i64);
    out.extend(r);
    out
}

/// Appends a zig-zag varint.
pub fn put_varint(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

/// A one-message legacy (magic 1, Kafka 0.10) message set, built by hand:
/// offset i64, message size i32, then crc u32 (CRC-32/IEEE over magic..end),
/// magic 1, attributes 0, timestamp i64, key and value as i32-length bytes.
pub fn legacy_message_set_v1(key: Option<&[u8]>, value: Option<&[u8]>, timestamp: i64) -> Vec<u8> {
    let mut msg = vec![1u8, 0u8]; // magic, attributes
    msg.extend_from_slice(&timestamp.to_be_bytes());
    for field in [key, value] {
        match field {
            Some(b) => {
                msg.extend_from_slice(&(b.len() as i32).to_be_bytes());
                msg.extend_from_slice(b);
            }
            None => msg.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let crc = crc32_ieee(&msg);
    let mut set = Vec::new();
    set.extend_from_slice(&0i64.to_be_bytes());
    set.extend_from_slice(&((msg.len() + 4) as i32).to_be_bytes());
    set.extend_from_slice(&crc.to_be_bytes());
    set.extend(msg);
    set
}

/// CRC-32/IEEE (the legacy message format's checksum), bitwise.
pub fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A hand-built request with a v1 header (i16 key, i16 version, i32 correlation id,
/// nullable string client id) and an arbitrary body, as a complete frame.
pub fn frame_v1(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let client_id = b"karst-tests";
    let mut msg = Vec::new();
    msg.extend_from_slice(&api_key.to_be_bytes());
    msg.extend_from_slice(&version.to_be_bytes());
    msg.extend_from_slice(&correlation_id.to_be_bytes());
    msg.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    msg.extend_from_slice(client_id);
    msg.extend_from_slice(body);
    let mut frame = (msg.len() as i32).to_be_bytes().to_vec();
    frame.extend(msg);
    frame
}

fn is_closed_error(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof)
}

/// Fills `buf`; `Ok(false)` if the peer closed (EOF or reset) first.
fn read_exact_or_closed(stream: &mut TcpStream, buf: &mut [u8]) -> Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_closed_error(&e) => return Ok(false),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                bail!("timed out reading from the broker ({filled}/{} bytes)", buf.len())
            }
            Err(e) => return Err(e).context("reading from the broker"),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_ieee_check_value() {
        assert_eq!(crc32_ieee(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn varints_zigzag() {
        let mut b = Vec::new();
        put_varint(&mut b, -1);
        put_varint(&mut b, 1);
        put_varint(&mut b, 300);
        assert_eq!(b, vec![0x01, 0x02, 0xd8, 0x04]);
    }

    #[test]
    fn record_batch_decodes_with_kafka_protocol() {
        let batch = record_batch(&[(Some(b"k"), Some(b"v1")), (None, Some(b"v2"))], 1234);
        let mut bytes = Bytes::from(batch);
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).expect("decodes");
        assert_eq!(set.records.len(), 2);
        assert_eq!(set.records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(set.records[1].value.as_deref(), Some(&b"v2"[..]));
        assert_eq!(set.records[1].offset, 1);
        assert_eq!(set.records[1].timestamp, 1234);
    }

    #[test]
    fn legacy_message_set_layout() {
        let set = legacy_message_set_v1(None, Some(b"hello"), 7);
        // offset(8) size(4) crc(4) magic(1) attrs(1) ts(8) key(4) value(4+5)
        assert_eq!(set.len(), 8 + 4 + 4 + 1 + 1 + 8 + 4 + 4 + 5);
        assert_eq!(i32::from_be_bytes(set[8..12].try_into().unwrap()) as usize, set.len() - 12);
        assert_eq!(set[16], 1);
        let crc = u32::from_be_bytes(set[12..16].try_into().unwrap());
        assert_eq!(crc, crc32_ieee(&set[16..]));
    }
}
