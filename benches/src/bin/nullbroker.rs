//! `nullbroker`: the smallest Kafka broker librdkafka producers accept. It answers
//! ApiVersions, Metadata (itself as the one broker, any topic with `--partitions`
//! partitions), CreateTopics (success) and Produce (success with incrementing
//! offsets, nothing stored). With the same client as the real brokers it measures
//! the machine's and the client's limit. Codecs are Karst's protocol crate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use karst_protocol::codec::{decode_request, encode_api_versions_fallback, encode_response, DecodeError};
use karst_protocol::framing::{take_frame, DEFAULT_MAX_FRAME};
use karst_protocol::kafka_protocol::messages::api_versions_response::ApiVersion;
use karst_protocol::kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use karst_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use karst_protocol::kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use karst_protocol::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsResponse, MetadataResponse, ProduceResponse, RequestKind, ResponseKind,
};
use karst_protocol::kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
    /// Next offset per (topic, partition).
    offsets: Mutex<HashMap<(StrBytes, i32), i64>>,
}

/// Records in a concatenation of v2 record batches (last offset delta + 1 each).
fn count_records(mut data: &[u8]) -> i64 {
    let mut n = 0i64;
    while data.len() >= 61 {
        let len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let last_delta = i32::from_be_bytes([data[23], data[24], data[25], data[26]]);
        n += i64::from(last_delta.max(0)) + 1;
        let total = 12 + len.max(0) as usize;
        if total > data.len() {
            break;
        }
        data = &data[total..];
    }
    n
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
        RequestKind::Produce(req) => {
            let mut offsets = state.offsets.lock().ok()?;
            let responses = req
                .topic_data
                .into_iter()
                .map(|t| {
                    let parts = t
                        .partition_data
                        .iter()
                        .map(|pd| {
                            let n = pd.records.as_deref().map(count_records).unwrap_or(0);
                            let next = offsets.entry((t.name.0.clone(), pd.index)).or_insert(0);
                            let base = *next;
                            *next += n;
                            PartitionProduceResponse::default().with_index(pd.index).with_base_offset(base)
                        })
                        .collect();
                    TopicProduceResponse::default().with_name(t.name).with_partition_responses(parts)
                })
                .collect();
            if req.acks == 0 {
                return None;
            }
            ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
        }
        _ => return None,
    })
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
    let state = Arc::new(State { addr, partitions: args.partitions.max(1), offsets: Mutex::new(HashMap::new()) });
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

    #[test]
    fn counts_records_of_concatenated_batches() {
        let mut batch = vec![0u8; 70];
        batch[8..12].copy_from_slice(&58i32.to_be_bytes());
        batch[23..27].copy_from_slice(&4i32.to_be_bytes());
        let two = [batch.clone(), batch].concat();
        assert_eq!(count_records(&two), 10);
        assert_eq!(count_records(&[]), 0);
    }
}
