//! KIP-951 leader hints: when a partition answers NOT_LEADER_OR_FOLLOWER (or
//! FENCED_LEADER_EPOCH), Produce v10+ and Fetch v16+ responses carry the partition's
//! leader and epoch as this broker's metadata knows them, and the response carries the
//! endpoints of those leaders, so a client that understands them (the Java client 3.7+)
//! goes straight to the new leader instead of refreshing its metadata first.
//!
//! As Kafka's `KafkaApis.getCurrentLeader`: the leader id and epoch come from the
//! metadata image, -1/-1 where it names none; the endpoint is that of the listener the
//! request arrived on, and only for a live (unfenced) broker, since a client cannot use
//! any other. Protocol-neutral: each handler maps [`LeaderHint`] and [`NodeEndpoint`]
//! onto its own response types.

use std::collections::BTreeMap;
use std::sync::Arc;

use karst_protocol::error_codes as ec;

use crate::broker::Broker;
use crate::metadata::ClusterImage;

/// A partition's leader as this broker knows it; -1 for either when unknown (the
/// default of the response field, so it is left out of the encoded response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaderHint {
    pub(crate) leader_id: i32,
    pub(crate) leader_epoch: i32,
}

impl LeaderHint {
    pub(crate) const UNKNOWN: LeaderHint = LeaderHint { leader_id: -1, leader_epoch: -1 };
}

/// Where a client reaches a broker on the listener its request arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeEndpoint {
    pub(crate) node_id: i32,
    pub(crate) host: String,
    pub(crate) port: i32,
    pub(crate) rack: Option<String>,
}

/// Whether a partition error is one Kafka answers with a leader hint.
pub(crate) fn wants_hint(error_code: i16) -> bool {
    error_code == ec::NOT_LEADER_OR_FOLLOWER || error_code == ec::FENCED_LEADER_EPOCH
}

/// Leader hints for one response: look up each refused partition with
/// [`LeaderHints::leader`], then put [`LeaderHints::endpoints`] in the response.
pub(crate) struct LeaderHints<'a> {
    broker: &'a Broker,
    image: Arc<ClusterImage>,
    listener: Option<Arc<str>>,
    endpoints: BTreeMap<i32, NodeEndpoint>,
}

impl<'a> LeaderHints<'a> {
    /// Hints from the metadata as it is now, for a request that arrived on `listener`
    /// (`crate::server::current_listener()` while the request is dispatched; None: the
    /// first listener).
    pub(crate) fn new(broker: &'a Broker, listener: Option<Arc<str>>) -> LeaderHints<'a> {
        LeaderHints { broker, image: broker.metadata.image(), listener, endpoints: BTreeMap::new() }
    }

    /// The leader of `topic`-`partition`, remembering its endpoint for
    /// [`LeaderHints::endpoints`] when the client can reach it.
    pub(crate) fn leader(&mut self, topic: &str, partition: i32) -> LeaderHint {
        let Some(state) = self.image.cluster.partition(topic, partition) else {
            return LeaderHint::UNKNOWN;
        };
        if state.leader < 0 {
            return LeaderHint { leader_id: -1, leader_epoch: state.leader_epoch };
        }
        if !self.endpoints.contains_key(&state.leader) {
            if let Some(e) = self.endpoint_of(state.leader) {
                self.endpoints.insert(state.leader, e);
            }
        }
        LeaderHint { leader_id: state.leader, leader_epoch: state.leader_epoch }
    }

    /// The endpoints of the leaders named so far, by node id.
    pub(crate) fn endpoints(&self) -> impl Iterator<Item = &NodeEndpoint> {
        self.endpoints.values()
    }

    fn endpoint_of(&self, id: i32) -> Option<NodeEndpoint> {
        let name = self.listener.as_deref();
        let registration = self.image.cluster.broker(id);
        if id == self.broker.node_id {
            let (host, port) = self.broker.advertised_on(name)?;
            return Some(NodeEndpoint { node_id: id, host, port, rack: registration.and_then(|r| r.rack.clone()) });
        }
        let r = registration.filter(|r| !r.fenced)?;
        let l = super::endpoint(&r.listeners, name)?;
        Some(NodeEndpoint { node_id: id, host: l.host.clone(), port: i32::from(l.port), rack: r.rack.clone() })
    }
}
