//! `karst produce TOPIC`: every stdin line is one record.
//!
//! A thread reads stdin; the sender takes whatever lines are waiting (up to a
//! request's worth), so a fast pipe makes big batches and an interactive terminal
//! sends each line at once. Records go to `--partition`, else to Kafka's default
//! partition for their key (murmur2), else round robin; each request carries one
//! batch per partition to the partitions' leaders.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use tokio::sync::mpsc;

use super::client::{topic_name, Client, TopicInfo};
use super::errors::KafkaError;
use super::murmur2::partition_for_key;
use super::ProduceCmd;

/// Bytes of keys and values collected into one request (below the default
/// max.message.bytes, so one partition's batch always fits).
const MAX_REQUEST_BYTES: usize = 900 * 1024;
const MAX_REQUEST_RECORDS: usize = 50_000;
/// Attempts for a batch refused with a retriable error.
const ATTEMPTS: u32 = 6;
/// How often a long run prints its rate.
const RATE_EVERY: Duration = Duration::from_secs(5);
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

pub(crate) async fn run(client: &mut Client, cmd: &ProduceCmd) -> Result<()> {
    let mut topic = client.topic(&cmd.topic, true).await?;
    if let Some(p) = cmd.partition {
        if !topic.partitions.iter().any(|x| x.index == p) {
            return Err(anyhow::Error::new(KafkaError::new(
                3,
                Some(format!("topic `{}` has {} partitions; there is no partition {p}", topic.name, topic.partitions.len())),
            )));
        }
    }
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16 * 1024);
    std::thread::spawn(move || read_stdin(tx));

    let start = Instant::now();
    let mut last_rate = start;
    let (mut count, mut bytes, mut round_robin) = (0u64, 0u64, 0usize);
    while let Some(first) = rx.recv().await {
        let mut lines = vec![first];
        let mut size = lines[0].len();
        while size < MAX_REQUEST_BYTES && lines.len() < MAX_REQUEST_RECORDS {
            match rx.try_recv() {
                Ok(l) => {
                    size += l.len();
                    lines.push(l);
                }
                Err(_) => break,
            }
        }
        let n = lines.len() as u64;
        let mut per_partition: BTreeMap<i32, Vec<(Option<Bytes>, Bytes)>> = BTreeMap::new();
        let partitions = topic.partitions.len().max(1);
        for line in lines {
            let (key, value) = split_key(line, cmd.key_separator.as_deref());
            let p = match (cmd.partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, partitions as i32),
                (None, None) => {
                    round_robin = (round_robin + 1) % partitions;
                    topic.partitions.get(round_robin).map_or(0, |x| x.index)
                }
            };
            per_partition.entry(p).or_default().push((key, value));
        }
        send(client, &mut topic, per_partition, cmd.acks)
            .await
            .map_err(|e| e.context(format!("{count} records were produced before this failure")))?;
        count += n;
        bytes += size as u64;
        if last_rate.elapsed() >= RATE_EVERY {
            last_rate = Instant::now();
            eprintln!("{}", rate_line(count, bytes, start.elapsed()));
        }
    }
    eprintln!("{}", rate_line(count, bytes, start.elapsed()));
    Ok(())
}

fn rate_line(count: u64, bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    format!(
        "Produced {count} records in {:.2}s ({:.0} records/s, {:.2} MB/s)",
        elapsed.as_secs_f64(),
        count as f64 / secs,
        bytes as f64 / secs / 1e6
    )
}

/// Reads lines (without `\n` / `\r\n`) until EOF or until the receiver is gone.
fn read_stdin(tx: mpsc::Sender<Vec<u8>>) {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                if tx.blocking_send(line).is_err() {
                    return;
                }
            }
            Err(e) => {
                eprintln!("error: reading stdin: {e}");
                return;
            }
        }
    }
}

/// Key and value of a line: split at the first `sep` if given and present.
pub(crate) fn split_key(line: Vec<u8>, sep: Option<&str>) -> (Option<Bytes>, Bytes) {
    let Some(sep) = sep.map(str::as_bytes).filter(|s| !s.is_empty()) else {
        return (None, Bytes::from(line));
    };
    match line.windows(sep.len()).position(|w| w == sep) {
        Some(at) => {
            let line = Bytes::from(line);
            (Some(line.slice(..at)), line.slice(at + sep.len()..))
        }
        None => (None, Bytes::from(line)),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One v2 record batch of `records`.
pub(crate) fn encode_batch(records: &[(Option<Bytes>, Bytes)], timestamp: i64) -> Result<Bytes> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever `offset - sequence` changes;
            // this keeps one batch with base sequence -1 (no idempotence).
            sequence: (i as i32).wrapping_sub(1),
            timestamp,
            key: k.clone(),
            value: Some(v.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records.iter(), &RecordEncodeOptions { version: 2, compression: Compression::None })
        .map_err(|e| anyhow!("encoding a record batch: {e:#}"))?;
    Ok(buf.freeze())
}

/// Sends one batch per partition to the partitions' leaders, retrying partitions
/// refused with a retriable error after refreshing the metadata.
async fn send(
    client: &mut Client,
    topic: &mut TopicInfo,
    per_partition: BTreeMap<i32, Vec<(Option<Bytes>, Bytes)>>,
    acks: i16,
) -> Result<()> {
    let ts = now_ms();
    let mut pending: BTreeMap<i32, Bytes> = BTreeMap::new();
    for (p, recs) in &per_partition {
        pending.insert(*p, encode_batch(recs, ts)?);
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in pending.keys() {
            let leader = topic.partitions.iter().find(|x| x.index == *p).map_or(-1, |x| x.leader);
            by_leader.entry(leader).or_default().push(*p);
        }
        let mut retry: Option<anyhow::Error> = None;
        for (leader, parts) in by_leader {
            if leader < 0 {
                retry = Some(anyhow::Error::new(KafkaError::new(5, Some(format!("{} has partitions without a leader", topic.name)))));
                continue;
            }
            let data: Vec<PartitionProduceData> = parts
                .iter()
                .map(|p| {
                    let mut d = PartitionProduceData::default();
                    d.index = *p;
                    d.records = pending.get(p).cloned();
                    d
                })
                .collect();
            let build = |_: i16| {
                let mut t = TopicProduceData::default();
                t.name = topic_name(&topic.name);
                t.partition_data = data;
                let mut r = ProduceRequest::default();
                r.acks = acks;
                r.timeout_ms = PRODUCE_TIMEOUT_MS;
                r.topic_data = vec![t];
                r
            };
            let conn = match client.broker(leader).await {
                Ok(c) => c,
                Err(e) => {
                    retry = Some(e);
                    continue;
                }
            };
            if acks == 0 {
                if let Err(e) = conn.send_only(build).await {
                    client.disconnect(leader);
                    retry = Some(e);
                    continue;
                }
                for p in &parts {
                    pending.remove(p);
                }
                continue;
            }
            let resp = match conn.call(build).await {
                Ok((_, r)) => r,
                Err(e) => {
                    client.disconnect(leader);
                    retry = Some(e);
                    continue;
                }
            };
            for t in resp.responses {
                for pr in t.partition_responses {
                    if !parts.contains(&pr.index) {
                        continue;
                    }
                    if pr.error_code == 0 {
                        pending.remove(&pr.index);
                        continue;
                    }
                    let err = KafkaError::new(pr.error_code, pr.error_message.as_ref().map(|m| m.to_string()));
                    if !err.is_retriable() {
                        return Err(anyhow::Error::new(err).context(format!("producing to {}-{}", topic.name, pr.index)));
                    }
                    retry = Some(anyhow::Error::new(err).context(format!("producing to {}-{}", topic.name, pr.index)));
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if attempt >= ATTEMPTS {
            return Err(retry.unwrap_or_else(|| anyhow!("the broker did not answer for every partition")))
                .with_context(|| format!("giving up after {ATTEMPTS} attempts"));
        }
        tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
        *topic = client.topic(&topic.name.clone(), false).await?;
        if topic.partitions.is_empty() {
            bail!("topic `{}` has no partitions any more", topic.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_separator_splits_at_the_first_occurrence() {
        assert_eq!(split_key(b"k:v:w".to_vec(), Some(":")), (Some(Bytes::from_static(b"k")), Bytes::from_static(b"v:w")));
        assert_eq!(split_key(b"novalue".to_vec(), Some(":")), (None, Bytes::from_static(b"novalue")));
        assert_eq!(split_key(b"a::b".to_vec(), Some("::")), (Some(Bytes::from_static(b"a")), Bytes::from_static(b"b")));
        assert_eq!(split_key(b"a:b".to_vec(), None), (None, Bytes::from_static(b"a:b")));
    }

    #[test]
    fn batches_round_trip_through_the_decoder() {
        let recs = vec![(Some(Bytes::from_static(b"k")), Bytes::from_static(b"v1")), (None, Bytes::from_static(b"v2"))];
        let b = encode_batch(&recs, 1234).expect("encodes");
        let h = karst_batch::BatchHeader::parse_checked(&b).expect("a valid v2 batch");
        assert_eq!((h.total_len(), h.record_count, h.base_sequence, h.producer_id), (b.len(), 2, -1, -1), "one batch, no idempotence");
        let mut buf = b.clone();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).expect("decodes");
        assert_eq!(set.records.len(), 2);
        assert_eq!(set.records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(set.records[1].value.as_deref(), Some(&b"v2"[..]));
        assert_eq!(set.records[1].timestamp, 1234);
    }
}
