//! `offsetload`: raw OffsetCommit load and an OffsetFetch start-up probe for
//! `benches/startup.sh` (issue 20: start-up of a broker whose `__consumer_offsets`
//! received 10 million commits).
//!
//! The key space is `--groups` groups × `--topics` topics × `--partitions`
//! partitions; every key is committed `--rounds` times. The offset committed for a
//! key in round `r` is `key_index × 2^20 + r`, so the last one is known without
//! remembering anything.
//!
//! - `commit`: creates the topics, then sends one OffsetCommit v8 per group and
//!   round (simple-protocol commits: generation -1, empty member id, as a client
//!   without a consumer group membership sends them), committing every partition of
//!   the group, over `--connections` connections with up to `--depth` requests in
//!   flight on each. Each group is committed on one connection only, in round order,
//!   and a connection has at least `--depth` groups, so a group's next round is sent
//!   only after its previous round was answered. Any error code fails the run.
//!   Prints one JSON line.
//! - `probe`: connects and sends OffsetFetch for the first group until it is
//!   answered (a broker that is still loading accepts the connection in the kernel's
//!   backlog but answers nothing until it serves), reports the time from
//!   `--since-ns` (the caller's clock before it started the broker) to that answer,
//!   then fetches every key of `--sample-groups` groups (spread evenly) and compares
//!   each with the last committed offset, and reads the broker's memory from
//!   `/proc/<pid>/status`. Prints one JSON line; fails if a fetched offset is wrong.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::sync_channel;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::{Args as ClapArgs, Parser, Subcommand};
use karst_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use karst_protocol::kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use karst_protocol::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use karst_protocol::kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use karst_protocol::kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use serde_json::json;

const OFFSET_COMMIT_VERSION: i16 = 8;
const OFFSET_FETCH_VERSION: i16 = 7;
const CREATE_TOPICS_VERSION: i16 = 5;
/// Kafka's TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;

#[derive(Parser, Debug)]
#[command(name = "offsetload", about = "OffsetCommit load and OffsetFetch start-up probe (benches/startup.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Commits every key `--rounds` times; prints one JSON line.
    Commit {
        #[arg(long)]
        broker: SocketAddr,
        #[command(flatten)]
        shape: Shape,
        /// Connections, each committing its own share of the groups.
        #[arg(long, default_value_t = 4)]
        connections: u32,
        /// Requests in flight per connection.
        #[arg(long, default_value_t = 16)]
        depth: u32,
        /// Gives up after this many seconds.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
    },
    /// Waits until the broker answers OffsetFetch, then checks the committed offsets.
    Probe {
        #[arg(long)]
        broker: SocketAddr,
        #[command(flatten)]
        shape: Shape,
        /// The broker's pid, for its memory.
        #[arg(long)]
        pid: u32,
        /// Unix time in nanoseconds when the broker was started.
        #[arg(long)]
        since_ns: u128,
        /// Groups whose every key is fetched and checked (spread evenly; 0: all).
        #[arg(long, default_value_t = 0)]
        sample_groups: u32,
        /// Gives up after this many seconds without an answer.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
}

/// The key space and how often each key is committed.
#[derive(ClapArgs, Debug, Clone, Copy)]
struct Shape {
    #[arg(long, default_value_t = 1000)]
    groups: u32,
    #[arg(long, default_value_t = 2)]
    topics: u32,
    /// Partitions per topic.
    #[arg(long, default_value_t = 50)]
    partitions: u32,
    /// Commits of every key.
    #[arg(long, default_value_t = 100)]
    rounds: u32,
}

impl Shape {
    fn keys(&self) -> u64 {
        u64::from(self.groups) * u64::from(self.topics) * u64::from(self.partitions)
    }

    fn group(g: u32) -> String {
        format!("startup-bench-{g:05}")
    }

    fn topic(t: u32) -> String {
        format!("startup-bench-topic-{t}")
    }

    /// The offset committed for a key in round `round`.
    fn offset(&self, g: u32, t: u32, p: u32, round: u32) -> i64 {
        let key = (u64::from(g) * u64::from(self.topics) + u64::from(t)) * u64::from(self.partitions) + u64::from(p);
        ((key << 20) | u64::from(round)) as i64
    }
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// A complete request frame: size, header, body.
fn frame<R: Request>(req: &R, version: i16, correlation_id: i32) -> Result<Vec<u8>> {
    let key = ApiKey::try_from(R::KEY).map_err(|()| anyhow!("unknown api key {}", R::KEY))?;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("offsetload")));
    let mut body = BytesMut::new();
    header.encode(&mut body, key.request_header_version(version))?;
    req.encode(&mut body, version)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn read_frame(stream: &mut TcpStream) -> Result<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).context("reading a response size")?;
    let size = i32::from_be_bytes(size);
    if !(0..=256 << 20).contains(&size) {
        bail!("response frame of {size} bytes");
    }
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body).context("reading a response")?;
    Ok(Bytes::from(body))
}

fn decode<R: Request>(mut frame: Bytes, version: i16, correlation_id: i32) -> Result<R::Response> {
    let key = ApiKey::try_from(R::KEY).map_err(|()| anyhow!("unknown api key {}", R::KEY))?;
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))?;
    if header.correlation_id != correlation_id {
        bail!("correlation id {} where {correlation_id} was expected", header.correlation_id);
    }
    R::Response::decode(&mut frame, version)
}

fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    s.set_write_timeout(Some(Duration::from_secs(120)))?;
    Ok(s)
}

fn create_topics(addr: SocketAddr, shape: &Shape) -> Result<()> {
    let mut s = connect(addr)?;
    let topics = (0..shape.topics)
        .map(|t| {
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(Shape::topic(t))))
                .with_num_partitions(shape.partitions as i32)
                .with_replication_factor(1)
        })
        .collect();
    let req = CreateTopicsRequest::default().with_topics(topics).with_timeout_ms(60_000);
    s.write_all(&frame(&req, CREATE_TOPICS_VERSION, 1)?)?;
    let resp = decode::<CreateTopicsRequest>(read_frame(&mut s)?, CREATE_TOPICS_VERSION, 1)?;
    for t in resp.topics {
        if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
            bail!("creating {}: error {} {:?}", t.name.as_str(), t.error_code, t.error_message);
        }
    }
    Ok(())
}

fn commit_request(shape: &Shape, g: u32, round: u32) -> OffsetCommitRequest {
    let topics = (0..shape.topics)
        .map(|t| {
            OffsetCommitRequestTopic::default().with_name(TopicName(StrBytes::from_string(Shape::topic(t)))).with_partitions(
                (0..shape.partitions)
                    .map(|p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p as i32)
                            .with_committed_offset(shape.offset(g, t, p, round))
                            .with_committed_leader_epoch(-1)
                            .with_committed_metadata(Some(StrBytes::from_static_str("")))
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(Shape::group(g))))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(topics)
}

/// One connection's share: groups `c, c + n, c + 2n, …`, every round.
fn commit_connection(addr: SocketAddr, shape: Shape, c: u32, n: u32, depth: u32, deadline: Instant) -> Result<u64> {
    let groups: Vec<u32> = (c..shape.groups).step_by(n as usize).collect();
    if groups.len() < depth as usize {
        bail!("connection {c} has {} groups, fewer than --depth {depth}: a group's rounds could overtake each other", groups.len());
    }
    let mut writer = connect(addr)?;
    let mut reader = writer.try_clone()?;
    // The writer blocks once `depth` requests wait for their answers.
    let (tx, rx) = sync_channel::<i32>(depth as usize - 1);
    let write = thread::spawn(move || -> Result<()> {
        let mut id = 0i32;
        for round in 0..shape.rounds {
            for &g in &groups {
                if Instant::now() > deadline {
                    bail!("timed out");
                }
                id += 1;
                let bytes = frame(&commit_request(&shape, g, round), OFFSET_COMMIT_VERSION, id)?;
                if tx.send(id).is_err() {
                    return Ok(()); // the reader failed and says why
                }
                writer.write_all(&bytes).context("writing OffsetCommit")?;
            }
        }
        Ok(())
    });
    let mut committed = 0u64;
    let mut failure = None;
    for id in rx.iter() {
        let resp: OffsetCommitResponse =
            match read_frame(&mut reader).and_then(|f| decode::<OffsetCommitRequest>(f, OFFSET_COMMIT_VERSION, id)) {
                Ok(r) => r,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    failure.get_or_insert_with(|| {
                        anyhow!("OffsetCommit {}-{}: error code {}", t.name.as_str(), p.partition_index, p.error_code)
                    });
                }
                committed += 1;
            }
        }
        if failure.is_some() {
            break;
        }
    }
    drop(rx);
    let written = write.join().map_err(|_| anyhow!("writer thread panicked"))?;
    if let Some(e) = failure {
        return Err(e);
    }
    written?;
    Ok(committed)
}

fn commit(addr: SocketAddr, shape: Shape, connections: u32, depth: u32, timeout: u64) -> Result<()> {
    create_topics(addr, &shape)?;
    let connections = connections.clamp(1, shape.groups.max(1));
    let depth = depth.max(1);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let start = Instant::now();
    let handles: Vec<_> =
        (0..connections).map(|c| thread::spawn(move || commit_connection(addr, shape, c, connections, depth, deadline))).collect();
    let mut commits = 0u64;
    for h in handles {
        commits += h.join().map_err(|_| anyhow!("connection thread panicked"))??;
    }
    let secs = start.elapsed().as_secs_f64();
    let requests = u64::from(shape.groups) * u64::from(shape.rounds);
    println!(
        "{}",
        json!({
            "commits": commits,
            "keys": shape.keys(),
            "requests": requests,
            "commits_per_request": u64::from(shape.topics) * u64::from(shape.partitions),
            "connections": connections,
            "depth": depth,
            "seconds": secs,
            "commits_per_s": commits as f64 / secs,
            "requests_per_s": requests as f64 / secs,
        })
    );
    if commits != shape.keys() * u64::from(shape.rounds) {
        bail!("{commits} commits acknowledged, {} expected", shape.keys() * u64::from(shape.rounds));
    }
    Ok(())
}

fn fetch_request(shape: &Shape, g: u32) -> OffsetFetchRequest {
    let topics = (0..shape.topics)
        .map(|t| {
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(Shape::topic(t))))
                .with_partition_indexes((0..shape.partitions as i32).collect())
        })
        .collect();
    OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_string(Shape::group(g)))).with_topics(Some(topics))
}

/// Fetches group `g`'s offsets; returns (keys checked, keys wrong, first wrong one).
fn check_group(s: &mut TcpStream, shape: &Shape, g: u32, id: i32) -> Result<(u64, u64, Option<String>)> {
    s.write_all(&frame(&fetch_request(shape, g), OFFSET_FETCH_VERSION, id)?)?;
    let resp: OffsetFetchResponse = decode::<OffsetFetchRequest>(read_frame(s)?, OFFSET_FETCH_VERSION, id)?;
    if resp.error_code != 0 {
        bail!("OffsetFetch {}: error code {}", Shape::group(g), resp.error_code);
    }
    let (mut checked, mut wrong, mut first) = (0u64, 0u64, None);
    for t in 0..shape.topics {
        let name = Shape::topic(t);
        let topic = resp.topics.iter().find(|x| x.name.as_str() == name);
        for p in 0..shape.partitions {
            let want = shape.offset(g, t, p, shape.rounds - 1);
            let got = topic.and_then(|x| x.partitions.iter().find(|q| q.partition_index == p as i32));
            checked += 1;
            let ok = got.is_some_and(|q| q.error_code == 0 && q.committed_offset == want);
            if !ok {
                wrong += 1;
                first.get_or_insert_with(|| format!("{} {name}-{p}: {:?}, expected offset {want}", Shape::group(g), got));
            }
        }
    }
    Ok((checked, wrong, first))
}

/// VmHWM, VmRSS, RssAnon and RssFile of `pid` in KiB.
fn memory(pid: u32) -> Result<serde_json::Value> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
    };
    Ok(json!({
        "vm_hwm_kib": field("VmHWM"),
        "vm_rss_kib": field("VmRSS"),
        "rss_anon_kib": field("RssAnon"),
        "rss_file_kib": field("RssFile"),
    }))
}

fn probe(addr: SocketAddr, shape: Shape, pid: u32, since_ns: u128, sample_groups: u32, timeout: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout);
    // The peak of anonymous memory while loading (VmHWM counts mapped log pages too),
    // sampled every 5 ms until the broker answers.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        thread::spawn(move || {
            let mut peak = 0u64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kib) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| s.lines().find_map(|l| l.strip_prefix("RssAnon:")?.split_whitespace().next()?.parse::<u64>().ok()))
                {
                    peak = peak.max(kib);
                }
                thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let mut attempts = 0u32;
    // Connect (refused until the listener is bound) and ask until answered.
    let (mut s, ready_ns) = loop {
        if Instant::now() > deadline {
            bail!("no OffsetFetch answer within {timeout} s");
        }
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            bail!("the broker (pid {pid}) exited");
        }
        attempts += 1;
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => s,
            Err(_) => {
                thread::sleep(Duration::from_millis(2));
                continue;
            }
        };
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(timeout)))?;
        if s.write_all(&frame(&fetch_request(&shape, 0), OFFSET_FETCH_VERSION, 1)?).is_err() {
            thread::sleep(Duration::from_millis(2));
            continue;
        }
        match read_frame(&mut s) {
            Ok(f) => {
                let at = now_ns();
                decode::<OffsetFetchRequest>(f, OFFSET_FETCH_VERSION, 1)?;
                break (s, at);
            }
            // Closed or reset before answering (a broker stopping or not serving yet): again.
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::TimedOut) =>
            {
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    };
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_anon = sampler.join().map_err(|_| anyhow!("sampler thread panicked"))?;
    let mem = memory(pid)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let n = if sample_groups == 0 { shape.groups } else { sample_groups.min(shape.groups) };
    let (mut checked, mut wrong, mut first) = (0u64, 0u64, None);
    let started = Instant::now();
    for i in 0..n {
        // Evenly spread over the groups, the first and the last included.
        let g = if n <= 1 { 0 } else { (u64::from(i) * u64::from(shape.groups - 1) / u64::from(n - 1)) as u32 };
        let (c, w, f) = check_group(&mut s, &shape, g, i as i32 + 2)?;
        checked += c;
        wrong += w;
        if first.is_none() {
            first = f;
        }
    }
    println!(
        "{}",
        json!({
            "ready_ms": (ready_ns.saturating_sub(since_ns)) as f64 / 1e6,
            "connect_attempts": attempts,
            "memory_at_ready": mem,
            "rss_anon_peak_sampled_kib": peak_anon,
            "groups_checked": n,
            "keys_checked": checked,
            "keys_wrong": wrong,
            "first_wrong": first,
            "check_ms": started.elapsed().as_secs_f64() * 1e3,
        })
    );
    if wrong > 0 {
        bail!("{wrong} of {checked} committed offsets differ from the last commit, e.g. {}", first.unwrap_or_default());
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Commit { broker, shape, connections, depth, timeout } => commit(broker, shape, connections, depth, timeout),
        Command::Probe { broker, shape, pid, since_ns, sample_groups, timeout } => {
            probe(broker, shape, pid, since_ns, sample_groups, timeout)
        }
    }
}
