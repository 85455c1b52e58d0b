//! A cluster client: bootstrap, metadata, connections by broker id, routing to
//! partition leaders and group coordinators.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, GroupId, ListOffsetsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::connection::Connection;
use super::errors::{check, KafkaError};

/// ListOffsets' special timestamps.
pub(crate) const EARLIEST: i64 = -2;
pub(crate) const LATEST: i64 = -1;

/// How long leaders and coordinators are waited for while they are being elected.
const ELECTION_WAIT: Duration = Duration::from_secs(15);

/// A broker as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerInfo {
    pub(crate) id: i32,
    pub(crate) host: String,
    pub(crate) port: i32,
    pub(crate) rack: Option<String>,
}

impl BrokerInfo {
    pub(crate) fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionInfo {
    pub(crate) index: i32,
    pub(crate) leader: i32,
    pub(crate) leader_epoch: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
    pub(crate) offline: Vec<i32>,
    pub(crate) error_code: i16,
}

/// A topic and its partitions, sorted by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicInfo {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) internal: bool,
    pub(crate) partitions: Vec<PartitionInfo>,
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// A client of one cluster.
pub(crate) struct Client {
    bootstrap: Connection,
    conns: HashMap<i32, Connection>,
    brokers: BTreeMap<i32, BrokerInfo>,
    pub(crate) cluster_id: Option<String>,
    pub(crate) controller_id: i32,
}

impl Client {
    /// Connects to the first reachable of the comma-separated `host:port` list.
    pub(crate) async fn connect(bootstrap: &str) -> Result<Client> {
        let addrs: Vec<&str> = bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if addrs.is_empty() {
            bail!("--bootstrap-server is empty");
        }
        let mut failures = Vec::new();
        for addr in &addrs {
            match Connection::connect(addr).await {
                Ok(conn) => {
                    return Ok(Client {
                        bootstrap: conn,
                        conns: HashMap::new(),
                        brokers: BTreeMap::new(),
                        cluster_id: None,
                        controller_id: -1,
                    })
                }
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        bail!("{}\nhint: is a broker running there? Set --bootstrap-server or KARST_BOOTSTRAP_SERVER", failures.join("; "))
    }

    /// The bootstrap connection, good for any request that any broker answers.
    pub(crate) fn any(&mut self) -> &mut Connection {
        &mut self.bootstrap
    }

    /// The brokers the last Metadata listed.
    pub(crate) fn brokers(&self) -> &BTreeMap<i32, BrokerInfo> {
        &self.brokers
    }

    /// A connection to broker `id`, opened on first use.
    pub(crate) async fn broker(&mut self, id: i32) -> Result<&mut Connection> {
        if !self.conns.contains_key(&id) {
            if !self.brokers.contains_key(&id) {
                self.metadata(Some(&[]), false).await?;
            }
            let info = self.brokers.get(&id).ok_or_else(|| anyhow!("broker {id} is not in the cluster's metadata"))?;
            let conn = Connection::connect(&info.addr()).await.with_context(|| format!("connecting to broker {id}"))?;
            self.conns.insert(id, conn);
        }
        self.conns.get_mut(&id).ok_or_else(|| anyhow!("broker {id} has no connection"))
    }

    /// Forgets the connection to `id` (after an I/O error), so the next use reconnects.
    pub(crate) fn disconnect(&mut self, id: i32) {
        self.conns.remove(&id);
    }

    /// Metadata for `topics` (None: every topic), remembering the brokers.
    pub(crate) async fn metadata(&mut self, topics: Option<&[String]>, auto_create: bool) -> Result<MetadataResponse> {
        let topics_req = topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    let mut r = MetadataRequestTopic::default();
                    r.name = Some(topic_name(t));
                    r
                })
                .collect::<Vec<_>>()
        });
        let (_, resp) = self
            .bootstrap
            .call(|_| {
                let mut r = MetadataRequest::default();
                r.topics = topics_req;
                r.allow_auto_topic_creation = auto_create;
                r
            })
            .await?;
        self.brokers = resp
            .brokers
            .iter()
            .map(|b| {
                let info =
                    BrokerInfo { id: b.node_id.0, host: b.host.to_string(), port: b.port, rack: b.rack.as_ref().map(|r| r.to_string()) };
                (b.node_id.0, info)
            })
            .collect();
        self.cluster_id = resp.cluster_id.as_ref().map(|c| c.to_string());
        self.controller_id = resp.controller_id.0;
        Ok(resp)
    }

    /// Every topic the cluster has.
    pub(crate) async fn topics(&mut self) -> Result<Vec<TopicInfo>> {
        let resp = self.metadata(None, false).await?;
        let mut out: Vec<TopicInfo> = resp.topics.iter().filter(|t| t.error_code == 0).map(topic_info).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One topic's partitions, waiting (up to a bound) while leaders are being
    /// elected, e.g. right after the topic was auto-created.
    pub(crate) async fn topic(&mut self, name: &str, auto_create: bool) -> Result<TopicInfo> {
        let deadline = Instant::now() + ELECTION_WAIT;
        loop {
            let resp = self.metadata(Some(&[name.to_string()]), auto_create).await?;
            let t = resp
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
                .ok_or_else(|| anyhow!("the metadata response has no entry for topic `{name}`"))?;
            let info = topic_info(t);
            let leaderless = info.partitions.is_empty() || info.partitions.iter().any(|p| p.leader < 0);
            let err = KafkaError::new(t.error_code, None);
            let retry = (t.error_code == 0 && leaderless) || (t.error_code != 0 && err.is_retriable() && t.error_code != 3);
            if retry && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            check(t.error_code, None).with_context(|| format!("topic `{name}`"))?;
            return Ok(info);
        }
    }

    /// The coordinator of `group` (FindCoordinator), waiting while it loads.
    pub(crate) async fn coordinator_id(&mut self, group: &str) -> Result<i32> {
        let deadline = Instant::now() + ELECTION_WAIT;
        loop {
            let (version, resp) = self
                .bootstrap
                .call(|v| {
                    let mut r = FindCoordinatorRequest::default();
                    if v >= 4 {
                        r.coordinator_keys = vec![str_bytes(group)];
                    } else {
                        r.key = str_bytes(group);
                    }
                    r.key_type = 0;
                    r
                })
                .await?;
            let (code, message, id, host, port) = if version >= 4 {
                let c = resp.coordinators.first().ok_or_else(|| anyhow!("FindCoordinator answered no coordinator"))?;
                (c.error_code, c.error_message.as_ref().map(|m| m.to_string()), c.node_id.0, c.host.to_string(), c.port)
            } else {
                (resp.error_code, resp.error_message.as_ref().map(|m| m.to_string()), resp.node_id.0, resp.host.to_string(), resp.port)
            };
            let err = KafkaError::new(code, message);
            if code != 0 {
                if err.is_retriable() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                return Err(anyhow::Error::new(err).context(format!("finding the coordinator of group `{group}`")));
            }
            self.brokers.entry(id).or_insert(BrokerInfo { id, host, port, rack: None });
            return Ok(id);
        }
    }

    /// A connection to the coordinator of `group`.
    pub(crate) async fn coordinator(&mut self, group: &str) -> Result<(i32, &mut Connection)> {
        let id = self.coordinator_id(group).await?;
        Ok((id, self.broker(id).await?))
    }

    /// Offsets of `partitions` of `topic` at `timestamp` (or [`EARLIEST`] / [`LATEST`]),
    /// asked of each partition's leader. A partition with no offset at or after a
    /// timestamp gets -1.
    pub(crate) async fn list_offsets(&mut self, topic: &TopicInfo, partitions: &[i32], timestamp: i64) -> Result<BTreeMap<i32, i64>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            let info = topic
                .partitions
                .iter()
                .find(|x| x.index == p)
                .ok_or_else(|| anyhow::Error::new(KafkaError::new(3, Some(format!("topic `{}` has no partition {p}", topic.name)))))?;
            if info.leader < 0 {
                return Err(anyhow::Error::new(KafkaError::new(5, Some(format!("{}-{p} has no leader", topic.name)))));
            }
            by_leader.entry(info.leader).or_default().push(p);
        }
        let mut out = BTreeMap::new();
        for (leader, parts) in by_leader {
            let name = topic.name.clone();
            let conn = self.broker(leader).await?;
            let (_, resp) = conn
                .call(|_| {
                    let mut r = ListOffsetsRequest::default();
                    r.replica_id = BrokerId(-1);
                    r.topics = vec![{
                        let mut t = ListOffsetsTopic::default();
                        t.name = topic_name(&name);
                        t.partitions = parts
                            .iter()
                            .map(|&p| {
                                let mut lp = ListOffsetsPartition::default();
                                lp.partition_index = p;
                                lp.current_leader_epoch = -1;
                                lp.timestamp = timestamp;
                                lp
                            })
                            .collect();
                        t
                    }];
                    r
                })
                .await?;
            for t in resp.topics {
                for p in t.partitions {
                    check(p.error_code, None).with_context(|| format!("ListOffsets {}-{}", topic.name, p.partition_index))?;
                    out.insert(p.partition_index, p.offset);
                }
            }
        }
        Ok(out)
    }
}

fn topic_info(t: &kafka_protocol::messages::metadata_response::MetadataResponseTopic) -> TopicInfo {
    let mut partitions: Vec<PartitionInfo> = t
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            index: p.partition_index,
            leader: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            offline: p.offline_replicas.iter().map(|b| b.0).collect(),
            error_code: p.error_code,
        })
        .collect();
    partitions.sort_by_key(|p| p.index);
    TopicInfo {
        name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
        id: if t.topic_id.is_nil() { String::new() } else { t.topic_id.to_string() },
        internal: t.is_internal,
        partitions,
    }
}

/// A group id for requests.
pub(crate) fn group_id(g: &str) -> GroupId {
    GroupId(str_bytes(g))
}

impl Client {
    /// The controller named by the last Metadata if it is a broker we can reach
    /// (ZooKeeper-era Kafka wants admin requests there), else the bootstrap broker
    /// (KRaft brokers, Karst included, forward them).
    pub(crate) async fn controller(&mut self) -> Result<&mut Connection> {
        if self.brokers.is_empty() {
            self.metadata(Some(&[]), false).await?;
        }
        let id = self.controller_id;
        if id >= 0 && self.brokers.contains_key(&id) && self.broker(id).await.is_ok() {
            return self.broker(id).await;
        }
        Ok(&mut self.bootstrap)
    }
}

impl Client {
    /// Drops every per-broker connection (after a request was abandoned mid-flight).
    pub(crate) fn disconnect_all(&mut self) {
        self.conns.clear();
    }
}
