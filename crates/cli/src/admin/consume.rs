//! `karst consume TOPIC`: fetch from the partitions' leaders and print records.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use serde_json::json;

use super::args::StartFrom;
use super::client::{topic_name, Client, TopicInfo, EARLIEST, LATEST};
use super::errors::{check, KafkaError};
use super::membership::{fetch_offsets, Heartbeat, Member, Offsets};
use super::{ConsumeCmd, Format};

/// Longest a fetch waits at the broker for new records.
const MAX_WAIT: Duration = Duration::from_millis(500);
const FETCH_MAX_BYTES: i32 = 8 << 20;
const PARTITION_MAX_BYTES: i32 = 1 << 20;

/// Where each partition of the topic is read next.
type Positions = BTreeMap<i32, i64>;

pub(crate) async fn run(client: &mut Client, cmd: &ConsumeCmd) -> Result<()> {
    let format = cmd.format.unwrap_or(cmd.conn.output);
    let timeout = cmd.timeout_ms.map(Duration::from_millis);
    let mut topic = wait_for_topic(client, &cmd.topic, timeout).await?;
    if let Some(p) = cmd.partition {
        if !topic.partitions.iter().any(|x| x.index == p) {
            return Err(anyhow::Error::new(KafkaError::new(
                3,
                Some(format!("topic `{}` has {} partitions; there is no partition {p}", topic.name, topic.partitions.len())),
            )));
        }
    }
    let mut member = match &cmd.group {
        Some(g) => Some(Member::join(client, g, vec![cmd.topic.clone()]).await?),
        None => None,
    };
    let mut positions = start_positions(client, &mut topic, cmd, member.as_ref()).await?;
    let mut printer =
        Printer { format, out: std::io::BufWriter::new(std::io::stdout()), topic: cmd.topic.clone(), read_committed: cmd.read_committed };
    let mut count: u64 = 0;
    // Joining a group may take a while; the idle timeout starts once reading does.
    let mut last_record = Instant::now();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let outcome: Result<()> = loop {
        if cmd.max_messages.is_some_and(|m| count >= m) {
            break Ok(());
        }
        let wait = match timeout {
            Some(t) => {
                let left = t.saturating_sub(last_record.elapsed());
                if left.is_zero() {
                    break Ok(());
                }
                left.min(MAX_WAIT)
            }
            None => MAX_WAIT,
        };
        if let Some(m) = member.as_mut() {
            match m.heartbeat_if_due(client).await {
                Ok(Heartbeat::Fine) => {}
                Ok(Heartbeat::Rejoin) => {
                    if let Err(e) = m.commit(client, &as_offsets(&cmd.topic, &positions)).await {
                        eprintln!("warning: committing before the rebalance: {e:#}");
                    }
                    if let Err(e) = m.rejoin(client).await {
                        break Err(e);
                    }
                    match start_positions(client, &mut topic, cmd, Some(m)).await {
                        Ok(p) => positions = p,
                        Err(e) => break Err(e),
                    }
                    last_record = Instant::now();
                }
                Err(e) => break Err(e),
            }
        }
        if positions.is_empty() {
            // A group member with no partitions: wait for a rebalance.
            tokio::select! {
                _ = tokio::time::sleep(wait) => continue,
                _ = &mut shutdown => break Ok(()),
            }
        }
        let limit = cmd.max_messages.map(|m| m - count);
        let round = tokio::select! {
            r = fetch_round(client, &mut topic, &mut positions, cmd.from, wait, limit, &mut printer) => r,
            _ = &mut shutdown => {
                // The fetch in flight was dropped mid-response: start afresh.
                client.disconnect_all();
                break Ok(());
            }
        };
        match round {
            Ok(n) if n > 0 => {
                count += n;
                last_record = Instant::now();
            }
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    let flushed = printer.out.flush();
    if let Some(m) = &member {
        if let Err(e) = m.commit(client, &as_offsets(&cmd.topic, &positions)).await {
            eprintln!("warning: committing offsets: {e:#}");
        }
        if let Err(e) = m.leave(client).await {
            eprintln!("warning: leaving the group: {e:#}");
        }
    }
    outcome?;
    flushed.context("writing to stdout")?;
    if let (Some(max), Some(t)) = (cmd.max_messages, timeout) {
        if count < max {
            bail!("timed out: no new record for {} ms, {count} of {max} messages read", t.as_millis());
        }
    }
    eprintln!("Processed a total of {count} messages");
    Ok(())
}

fn as_offsets(topic: &str, positions: &Positions) -> Offsets {
    positions.iter().map(|(p, o)| ((topic.to_string(), *p), *o)).collect()
}

/// The topic's metadata, waiting for it to exist (up to `timeout`, or for ever).
async fn wait_for_topic(client: &mut Client, name: &str, timeout: Option<Duration>) -> Result<TopicInfo> {
    let start = Instant::now();
    let mut warned = false;
    loop {
        match client.topic(name, false).await {
            Ok(t) => return Ok(t),
            Err(e) => {
                let unknown = e.chain().any(|c| c.downcast_ref::<KafkaError>().is_some_and(|k| k.code == 3));
                if !unknown || timeout.is_some_and(|t| start.elapsed() >= t) {
                    return Err(e);
                }
                if !warned {
                    eprintln!("waiting for topic `{name}` to exist");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The offsets to start from: committed ones for a group member, then `--from`.
async fn start_positions(client: &mut Client, topic: &mut TopicInfo, cmd: &ConsumeCmd, member: Option<&Member>) -> Result<Positions> {
    let partitions: Vec<i32> = match (member, cmd.partition) {
        (Some(m), only) => {
            m.assignment.get(&cmd.topic).cloned().unwrap_or_default().into_iter().filter(|p| only.is_none_or(|o| o == *p)).collect()
        }
        (None, Some(p)) => vec![p],
        (None, None) => topic.partitions.iter().map(|p| p.index).collect(),
    };
    let mut positions = Positions::new();
    if let (Some(_), Some(group)) = (member, &cmd.group) {
        let wanted: BTreeMap<String, Vec<i32>> = [(cmd.topic.clone(), partitions.clone())].into();
        for ((_, p), o) in fetch_offsets(client, group, Some(&wanted)).await? {
            positions.insert(p, o);
        }
    }
    let missing: Vec<i32> = partitions.iter().copied().filter(|p| !positions.contains_key(p)).collect();
    if !missing.is_empty() {
        positions.extend(resolve(client, topic, &missing, cmd.from).await?);
    }
    Ok(positions)
}

/// Offsets for `--from` in each of `partitions`.
async fn resolve(client: &mut Client, topic: &mut TopicInfo, partitions: &[i32], from: StartFrom) -> Result<Positions> {
    *topic = client.topic(&topic.name.clone(), false).await?;
    Ok(match from {
        StartFrom::Beginning => client.list_offsets(topic, partitions, EARLIEST).await?,
        StartFrom::End => client.list_offsets(topic, partitions, LATEST).await?,
        StartFrom::Offset(n) => partitions.iter().map(|p| (*p, n)).collect(),
        StartFrom::Timestamp(ms) => {
            let at = client.list_offsets(topic, partitions, ms).await?;
            let mut end = None;
            let mut out = Positions::new();
            for (p, o) in at {
                let o = if o < 0 {
                    if end.is_none() {
                        end = Some(client.list_offsets(topic, partitions, LATEST).await?);
                    }
                    end.as_ref().and_then(|e| e.get(&p).copied()).unwrap_or(0)
                } else {
                    o
                };
                out.insert(p, o);
            }
            out
        }
    })
}

/// One fetch from each leader; prints at most `limit` records and returns how many.
async fn fetch_round(
    client: &mut Client,
    topic: &mut TopicInfo,
    positions: &mut Positions,
    from: StartFrom,
    wait: Duration,
    limit: Option<u64>,
    printer: &mut Printer,
) -> Result<u64> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in positions.keys() {
        let leader = topic.partitions.iter().find(|x| x.index == *p).map_or(-1, |x| x.leader);
        by_leader.entry(leader).or_default().push(*p);
    }
    let leaders = by_leader.len().max(1) as u32;
    let mut printed = 0u64;
    let mut refresh = false;
    let mut reset: Vec<i32> = Vec::new();
    for (leader, parts) in by_leader {
        if leader < 0 {
            refresh = true;
            continue;
        }
        let conn = match client.broker(leader).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("warning: {e:#}");
                refresh = true;
                continue;
            }
        };
        let name = topic.name.clone();
        let offsets: Vec<(i32, i64)> = parts.iter().map(|p| (*p, positions[p])).collect();
        let max_wait = (wait / leaders).as_millis() as i32;
        let read_committed = printer.read_committed;
        let resp = conn
            .call_with_timeout(wait + super::connection::REQUEST_TIMEOUT, |_| {
                let mut t = FetchTopic::default();
                t.topic = topic_name(&name);
                t.partitions = offsets
                    .iter()
                    .map(|(p, o)| {
                        let mut fp = FetchPartition::default();
                        fp.partition = *p;
                        fp.fetch_offset = *o;
                        fp.partition_max_bytes = PARTITION_MAX_BYTES;
                        fp
                    })
                    .collect();
                let mut r = FetchRequest::default();
                r.max_wait_ms = max_wait;
                r.min_bytes = 1;
                r.max_bytes = FETCH_MAX_BYTES;
                r.isolation_level = i8::from(read_committed);
                r.session_id = 0;
                r.session_epoch = -1;
                r.topics = vec![t];
                r
            })
            .await;
        let resp = match resp {
            Ok((_, r)) => r,
            Err(e) => {
                client.disconnect(leader);
                eprintln!("warning: fetching from broker {leader}: {e:#}");
                refresh = true;
                continue;
            }
        };
        check(resp.error_code, None).context("fetching")?;
        for t in resp.responses {
            for pd in t.partitions {
                let p = pd.partition_index;
                let Some(pos) = positions.get_mut(&p) else { continue };
                match pd.error_code {
                    0 => {}
                    1 => {
                        reset.push(p);
                        continue;
                    }
                    code => {
                        let e = KafkaError::new(code, None);
                        if e.is_retriable() {
                            refresh = true;
                            continue;
                        }
                        return Err(anyhow::Error::new(e).context(format!("fetching {}-{p}", topic.name)));
                    }
                }
                let Some(records) = pd.records else { continue };
                let room = limit.map(|l| l.saturating_sub(printed));
                let aborted: Vec<(i64, i64)> =
                    pd.aborted_transactions.iter().flatten().map(|a| (a.producer_id.0, a.first_offset)).collect();
                printed +=
                    read_batches(p, &records, pos, room, &aborted, printer).with_context(|| format!("reading {}-{p}", topic.name))?;
            }
        }
        printer.out.flush().context("writing to stdout")?;
    }
    for p in reset {
        let to = match from {
            StartFrom::Offset(n) => {
                return Err(anyhow::Error::new(KafkaError::new(1, Some(format!("offset {n} is not in {}-{p}", topic.name)))))
            }
            StartFrom::Beginning => EARLIEST,
            _ => LATEST,
        };
        let o = client.list_offsets(topic, &[p], to).await?;
        if let Some(o) = o.get(&p) {
            eprintln!("warning: offset {} is out of range for {}-{p}; moving to {o}", positions[&p], topic.name);
            positions.insert(p, *o);
        }
    }
    if refresh {
        tokio::time::sleep(Duration::from_millis(200)).await;
        *topic = client.topic(&topic.name.clone(), false).await?;
    }
    Ok(printed)
}

/// Prints the records at or after `*position` from the complete batches in
/// `records` (a fetch may end in a partial batch, and begin before the position),
/// at most `room` of them; advances `*position`. `aborted` (producer id, first
/// offset) are the aborted transactions a read_committed fetch named: their
/// producers' transactional batches are skipped from that offset to their ABORT
/// marker, as Kafka's consumer does.
fn read_batches(
    partition: i32,
    records: &Bytes,
    position: &mut i64,
    room: Option<u64>,
    aborted: &[(i64, i64)],
    printer: &mut Printer,
) -> Result<u64> {
    let mut printed = 0u64;
    let mut pending: Vec<(i64, i64)> = aborted.to_vec();
    pending.sort_by_key(|(_, first)| std::cmp::Reverse(*first));
    let mut aborting: std::collections::BTreeSet<i64> = std::collections::BTreeSet::new();
    for item in karst_batch::batches(records) {
        let (at, h) = match item {
            Ok(x) => x,
            Err(e) if e.is_truncation() => break,
            Err(e) => bail!("{e}"),
        };
        while pending.last().is_some_and(|(_, first)| *first <= h.last_offset()) {
            if let Some((pid, _)) = pending.pop() {
                aborting.insert(pid);
            }
        }
        let skip = h.is_transactional() && aborting.contains(&h.producer_id);
        if h.is_control() {
            // An ABORT marker ends the producer's aborted transaction.
            let abort = karst_batch::records::EndTxnMarker::of_batch(&records[at..at + h.total_len()], 1 << 16).is_ok_and(|m| !m.commit);
            if abort {
                aborting.remove(&h.producer_id);
            }
        }
        if h.last_offset() < *position {
            continue;
        }
        if h.is_control() || skip {
            *position = h.last_offset() + 1;
            continue;
        }
        let mut batch = records.slice(at..at + h.total_len());
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| anyhow!("decoding a record batch: {e:#}"))?;
        for r in &set.records {
            if r.offset < *position {
                continue;
            }
            if room.is_some_and(|room| printed >= room) {
                return Ok(printed);
            }
            printer.print(partition, r)?;
            printed += 1;
            *position = r.offset + 1;
        }
        *position = (*position).max(h.last_offset() + 1);
    }
    Ok(printed)
}

struct Printer {
    format: Format,
    out: std::io::BufWriter<std::io::Stdout>,
    topic: String,
    /// Fetch as a read_committed consumer.
    read_committed: bool,
}

impl Printer {
    fn print(&mut self, partition: i32, r: &Record) -> Result<()> {
        match self.format {
            Format::Text => {
                self.out.write_all(r.value.as_deref().unwrap_or_default())?;
                self.out.write_all(b"\n")?;
            }
            Format::Json => {
                let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                let headers: serde_json::Map<String, serde_json::Value> =
                    r.headers.iter().map(|(k, v)| (k.to_string(), json!(text(v)))).collect();
                let v = json!({
                    "topic": self.topic,
                    "partition": partition,
                    "offset": r.offset,
                    "timestamp": r.timestamp,
                    "key": text(&r.key),
                    "value": text(&r.value),
                    "headers": headers,
                });
                serde_json::to_writer(&mut self.out, &v)?;
                self.out.write_all(b"\n")?;
            }
        }
        Ok(())
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
