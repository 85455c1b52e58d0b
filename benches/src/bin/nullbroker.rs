//! `nullbroker`: the smallest Kafka broker librdkafka producers and consumers
//! accept. It answers ApiVersions, Metadata (itself as the one broker, any topic
//! with `--partitions` partitions), CreateTopics (success), Produce (success with
//! incrementing offsets, nothing stored), FindCoordinator (itself), ListOffsets
//! and Fetch. It keeps only the last record batch produced to each partition and
//! serves every fetched offset below the partition's end from copies of it (base
//! offset rewritten, which is outside the batch's CRC), so consumers do the same
//! work as against a real broker while nothing is stored. With the same client as
//! the real brokers it measures the machine's and the client's limit. Codecs are
//! Karst's protocol crate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use karst_batch::{count_records, set_base_offset, BatchHeader};
use karst_protocol::codec::{decode_request, encode_api_versions_fallback, encode_response, DecodeError};
use karst_protocol::fetch_frames::encode_fetch_frames;
use karst_protocol::framing::{take_frame, DEFAULT_MAX_FRAME};
use karst_protocol::kafka_protocol::messages::api_versions_response::ApiVersion;
use karst_protocol::kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use karst_protocol::kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use karst_protocol::kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use karst_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use karst_protocol::kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use karst_protocol::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsResponse, FetchRequest, FetchResponse, FindCoordinatorResponse, ListOffsetsResponse,
    MetadataResponse, ProduceResponse, RequestKind, ResponseKind,
};
use karst_protocol::kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Parser, Debug)]
#[command(name = "nullbroker", about = "A Kafka broker that acknowledges every Produce and stores nothing")]
struct Args {
    /// Loopback address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Partitions reported for every topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

struct State {
    addr: SocketAddr,
    partitions: i32,
    parts: Mutex<HashMap<(StrBytes, i32), Part>>,
    /// Woken on every Produce, so a Fetch at the end of a partition waits like a long poll.
    produced: Notify,
}

#[derive(Default)]
struct Part {
    /// Next offset (the end of the partition).
    next: i64,
    /// The first batch of the last Produce, and its record count.
    last: Option<(Bytes, i64)>,
}

/// The first record batch of `data` and the offsets it takes.
fn first_batch(data: &Bytes) -> Option<(Bytes, i64)> {
    let h = BatchHeader::parse(data).ok()?;
    Some((data.slice(..h.total_len()), i64::from(h.last_offset_delta) + 1))
}

/// Copies of `batch` from `offset` on, each with its base offset rewritten, while
/// below `end` and within `max_bytes` (at least one).
fn copies(batch: &[u8], count: i64, mut offset: i64, end: i64, max_bytes: usize) -> Bytes {
    let mut out = BytesMut::new();
    while offset < end && (out.is_empty() || out.len() + batch.len() <= max_bytes) {
        let at = out.len();
        out.extend_from_slice(batch);
        set_base_offset(&mut out[at..], offset);
        offset += count;
    }
    out.freeze()
}

fn api(key: ApiKey, min: i16, max: i16) -> ApiVersion {
    ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max)
}

fn handle(state: &State, body: RequestKind, version: i16) -> Option<ResponseKind> {
    Some(match body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(ApiVersionsResponse::default().with_api_keys(vec![
            api(ApiKey::Produce, 3, 11),
            api(ApiKey::Metadata, 0, 12),
            api(ApiKey::ApiVersions, 0, 3),
            api(ApiKey::CreateTopics, 2, 7),
            api(ApiKey::FindCoordinator, 0, 3),
            api(ApiKey::ListOffsets, 1, 6),
            api(ApiKey::Fetch, 4, 12),
        ])),
        RequestKind::Metadata(req) => {
            let node = BrokerId(1);
            let brokers = vec![MetadataResponseBroker::default()
                .with_node_id(node)
                .with_host(StrBytes::from_string(state.addr.ip().to_string()))
                .with_port(i32::from(state.addr.port()))];
            let topics = req
                .topics
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.name)
                .map(|name| {
                    let partitions = (0..state.partitions)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(node)
                                .with_replica_nodes(vec![node])
                                .with_isr_nodes(vec![node])
                        })
                        .collect();
                    MetadataResponseTopic::default().with_name(Some(name)).with_partitions(partitions)
                })
                .collect();
            let mut resp = MetadataResponse::default().with_brokers(brokers).with_topics(topics);
            if version >= 1 {
                resp = resp.with_controller_id(node);
            }
            if version >= 2 {
                resp = resp.with_cluster_id(Some(StrBytes::from_static_str("null-cluster")));
            }
            ResponseKind::Metadata(resp)
        }
        RequestKind::CreateTopics(req) => ResponseKind::CreateTopics(
            CreateTopicsResponse::default()
                .with_topics(req.topics.into_iter().map(|t| CreatableTopicResult::default().with_name(t.name)).collect()),
        ),
        RequestKind::FindCoordinator(_) => ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_string(state.addr.ip().to_string()))
                .with_port(i32::from(state.addr.port())),
        ),
        RequestKind::ListOffsets(req) => {
            let parts = state.parts.lock().ok()?;
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let end = parts.get(&(t.name.0.clone(), p.partition_index)).map_or(0, |x| x.next);
                            // -2 is the earliest offset (0 here); anything else the end.
                            let offset = if p.timestamp == -2 { 0 } else { end };
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_timestamp(-1)
                                .with_offset(offset)
                        })
                        .collect();
                    ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
                })
                .collect();
            ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
        }
        RequestKind::Produce(req) => {
            let mut offsets = state.parts.lock().ok()?;
            let responses = req
                .topic_data
                .into_iter()
                .map(|t| {
                    let parts = t
                        .partition_data
                        .iter()
                        .map(|pd| {
                            let n = pd.records.as_deref().map_or(0, |r| count_records(r) as i64);
                            let part = offsets.entry((t.name.0.clone(), pd.index)).or_default();
                            let base = part.next;
                            part.next += n;
                            if let Some(b) = pd.records.as_ref().and_then(first_batch) {
                                part.last = Some(b);
                            }
                            PartitionProduceResponse::default().with_index(pd.index).with_base_offset(base)
                        })
                        .collect();
                    TopicProduceResponse::default().with_name(t.name).with_partition_responses(parts)
                })
                .collect();
            drop(offsets);
            state.produced.notify_waiters();
            if req.acks == 0 {
                return None;
            }
            ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
        }
        _ => return None,
    })
}

/// A Fetch answer: every requested partition from its offset on, copies of its
/// last batch. Returns the response and the record bytes in it.
/// A partition's end and its last batch with the offsets it takes, as a fetch saw them.
type Seen = (i64, Option<(Bytes, i64)>);

fn fetch(state: &State, req: &FetchRequest) -> (FetchResponse, usize) {
    // Each partition's end and last batch (a reference count), read under the lock;
    // the copies are made after it, so producers are not held up by them.
    let Ok(parts) = state.parts.lock() else { return (FetchResponse::default(), 0) };
    let seen: Vec<Vec<Seen>> = req
        .topics
        .iter()
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| parts.get(&(t.topic.0.clone(), p.partition)).map_or((0, None), |x| (x.next, x.last.clone())))
                .collect()
        })
        .collect();
    drop(parts);
    let mut total = 0usize;
    let max_bytes = usize::try_from(req.max_bytes).unwrap_or(0).max(1);
    let responses = req
        .topics
        .iter()
        .zip(seen)
        .map(|(t, seen)| {
            let partitions = t
                .partitions
                .iter()
                .zip(seen)
                .map(|(p, (end, last))| {
                    let room = usize::try_from(p.partition_max_bytes).unwrap_or(0).min(max_bytes.saturating_sub(total));
                    let records = match last {
                        Some((batch, count)) if room > 0 && p.fetch_offset < end => copies(&batch, count, p.fetch_offset, end, room),
                        _ => Bytes::new(),
                    };
                    total += records.len();
                    PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_high_watermark(end)
                        .with_last_stable_offset(end)
                        .with_log_start_offset(0)
                        .with_records(Some(records))
                })
                .collect();
            FetchableTopicResponse::default().with_topic(t.topic.clone()).with_partitions(partitions)
        })
        .collect();
    (FetchResponse::default().with_responses(responses), total)
}

async fn serve_conn(state: Arc<State>, mut sock: TcpStream) -> Result<()> {
    sock.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(1 << 20);
    let mut out: Vec<Bytes> = Vec::new();
    loop {
        while let Some(frame) = take_frame(&mut buf, DEFAULT_MAX_FRAME)? {
            match decode_request(frame) {
                Ok(req) => {
                    let (api_key, version, cid) = (req.api_key, req.version, req.correlation_id);
                    let produce_acks0 = matches!(&req.body, RequestKind::Produce(p) if p.acks == 0);
                    if let RequestKind::Fetch(f) = &req.body {
                        // Written now: a long poll below must not hold earlier answers back.
                        for b in out.drain(..) {
                            sock.write_all(&b).await?;
                        }
                        let wait = Duration::from_millis(u64::try_from(f.max_wait_ms).unwrap_or(0).min(1000));
                        let deadline = tokio::time::Instant::now() + wait;
                        let resp = loop {
                            let woken = state.produced.notified();
                            let (resp, bytes) = fetch(&state, f);
                            if bytes > 0 || tokio::time::Instant::now() >= deadline {
                                break resp;
                            }
                            let _ = tokio::time::timeout_at(deadline, woken).await;
                        };
                        for b in encode_fetch_frames(cid, version, &resp).map_err(anyhow::Error::msg)? {
                            sock.write_all(&b).await?;
                        }
                        continue;
                    }
                    match handle(&state, req.body, version) {
                        Some(resp) => out.push(encode_response(cid, api_key, version, &resp).map_err(anyhow::Error::msg)?),
                        None if produce_acks0 => {}
                        None => anyhow::bail!("{api_key:?} v{version} is not served by the null broker"),
                    }
                }
                Err(DecodeError::UnsupportedApiVersions { correlation_id, .. }) => out.push(encode_api_versions_fallback(correlation_id)),
                Err(e) => anyhow::bail!("{e}"),
            }
        }
        for b in out.drain(..) {
            sock.write_all(&b).await?;
        }
        if sock.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.listen.ip().is_loopback(), "the null broker listens on loopback only");
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("nullbroker listening on {addr}");
    let state = Arc::new(State { addr, partitions: args.partitions.max(1), parts: Mutex::new(HashMap::new()), produced: Notify::new() });
    loop {
        let (sock, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_conn(state, sock).await {
                eprintln!("connection closed: {e:#}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use karst_batch::build_batch;

    #[test]
    fn copies_rewrite_base_offsets_and_stop_at_the_end() {
        let batch = build_batch(0, 5, 0, &[0u8; 9]);
        assert_eq!(batch.len(), 70);
        let (b, n) = first_batch(&Bytes::from([batch.clone(), batch].concat())).expect("a v2 batch");
        assert_eq!(n, 5);
        let out = copies(&b, n, 10, 22, 1 << 20);
        assert_eq!(out.len(), 3 * 70, "10, 15 and 20 are below 22");
        let bases: Vec<i64> = out.chunks(70).map(|c| i64::from_be_bytes(c[..8].try_into().unwrap())).collect();
        assert_eq!(bases, [10, 15, 20]);
        assert_eq!(copies(&b, n, 10, 22, 100).len(), 70, "at least one batch, then within the limit");
        assert!(copies(&b, n, 22, 22, 1 << 20).is_empty());
        assert!(first_batch(&Bytes::from_static(&[0u8; 10])).is_none());
    }
}
