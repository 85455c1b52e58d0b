//! Changing who is in the quorum at runtime: voters added and removed by an
//! operator, and broker-only nodes joining as learners (they receive the metadata
//! log but do not vote).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers, Raft};
use serde::{Deserialize, Serialize};

use crate::controller::{leader_of, write_error, Shared};
use crate::errors::ProposeError;
use crate::network::{call_once, RpcEnvelope, RpcReply, RpcRequest};
use crate::voters::Voter;
use crate::{NodeId, TypeConfig};

/// A change to the quorum's membership, carried out by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Receive the log without voting (a broker-only node). Re-adding a learner
    /// at a new address updates it.
    AddLearner { id: NodeId, addr: String },
    /// Join as a learner, catch up, then become a voter.
    AddVoter { id: NodeId, addr: String },
    /// Leave the quorum (voter or learner).
    RemoveNode { id: NodeId },
}

/// The quorum as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    pub leader: Option<NodeId>,
    /// Voters with their controller addresses, by id.
    pub voters: Vec<(NodeId, String)>,
    /// Learners (broker-only nodes) with their controller addresses, by id.
    pub learners: Vec<(NodeId, String)>,
}

/// The membership `raft` has applied.
pub(crate) fn quorum_of(raft: &Raft<TypeConfig>) -> Quorum {
    let m = raft.metrics();
    let m = m.borrow();
    let membership = m.membership_config.membership();
    let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
    let mut voters = Vec::new();
    let mut learners = Vec::new();
    for (id, node) in membership.nodes() {
        let entry = (*id, node.addr.clone());
        if voter_ids.contains(id) {
            voters.push(entry);
        } else {
            learners.push(entry);
        }
    }
    Quorum { leader: m.current_leader, voters, learners }
}

/// Carries out `change` on `raft` (leader only; elsewhere NotLeader names the leader).
pub(crate) async fn change_on(raft: &Raft<TypeConfig>, change: MembershipChange, shared: &Shared) -> Result<Quorum, ProposeError> {
    let budget = shared.propose_timeout * 4;
    let work = async {
        match change {
            MembershipChange::AddLearner { id, addr } => {
                let current = quorum_of(raft);
                if current.voters.iter().any(|(v, _)| *v == id) {
                    return Err(ProposeError::Membership(format!("node {id} is a voter; remove it before it can rejoin as a learner")));
                }
                if current.learners.iter().any(|(l, a)| *l == id && *a == addr) {
                    return Ok(());
                }
                // A learner that moved is replaced: openraft keeps the first address otherwise.
                if current.learners.iter().any(|(l, _)| *l == id) {
                    raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                        .await
                        .map_err(|e| write_error(e, &shared.voters))?;
                }
                raft.add_learner(id, BasicNode { addr }, false).await.map(|_| ()).map_err(|e| write_error(e, &shared.voters))
            }
            MembershipChange::AddVoter { id, addr } => {
                if !quorum_of(raft).learners.iter().any(|(l, a)| *l == id && *a == addr) {
                    raft.add_learner(id, BasicNode { addr }, true).await.map_err(|e| write_error(e, &shared.voters))?;
                }
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map(|_| ())
                    .map_err(|e| write_error(e, &shared.voters))
            }
            MembershipChange::RemoveNode { id } => {
                let current = quorum_of(raft);
                let change = if current.voters.iter().any(|(v, _)| *v == id) {
                    if current.voters.len() == 1 {
                        return Err(ProposeError::Membership(format!("node {id} is the last voter")));
                    }
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else if current.learners.iter().any(|(l, _)| *l == id) {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                } else {
                    return Err(ProposeError::Membership(format!("node {id} is not in the quorum")));
                };
                raft.change_membership(change, false).await.map(|_| ()).map_err(|e| write_error(e, &shared.voters))
            }
        }
    };
    match tokio::time::timeout(budget, work).await {
        Err(_) => Err(ProposeError::Timeout(budget)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(quorum_of(raft)),
    }
}

/// Not leader: who is, as far as this node knows.
pub(crate) fn not_leader(raft: &Raft<TypeConfig>, shared: &Shared) -> ProposeError {
    let (leader_id, leader_addr) = leader_of(raft, &shared.voters);
    ProposeError::NotLeader { leader_id, leader_addr }
}

/// Asks the quorum for a membership change from outside it (an operator's tool, or
/// a broker-only node joining): tries each of `contacts` and follows the leader they
/// name, until the leader answers or `timeout` passes. An empty `cluster_id` is
/// accepted by the nodes for these requests.
pub async fn ask_quorum(
    transport: &crate::Transport,
    contacts: &[Voter],
    cluster_id: &str,
    from: NodeId,
    change: Option<MembershipChange>,
    timeout: Duration,
) -> Result<Quorum, ProposeError> {
    let deadline = Instant::now() + timeout;
    let mut last = ProposeError::NotLeader { leader_id: None, leader_addr: None };
    let mut targets: Vec<(NodeId, String)> = contacts.iter().map(|v| (v.id, v.addr.clone())).collect();
    let mut i = 0;
    while Instant::now() < deadline {
        let Some((to, addr)) = targets.get(i % targets.len().max(1)).cloned() else {
            return Err(ProposeError::Shutdown("no controller to ask".into()));
        };
        i += 1;
        let request = match &change {
            Some(c) => RpcRequest::Membership(c.clone()),
            None => RpcRequest::DescribeQuorum,
        };
        let envelope = RpcEnvelope { cluster_id: cluster_id.to_string(), from, to, request };
        let ttl = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        match call_once(transport, &addr, &envelope, ttl).await {
            Ok(RpcReply::Membership(Ok(q))) => return Ok(q),
            Ok(RpcReply::Membership(Err(ProposeError::NotLeader { leader_id: Some(id), leader_addr: Some(a) }))) => {
                // Ask the named leader next.
                targets.retain(|(t, _)| *t != id);
                targets.insert(0, (id, a));
                i = 0;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Ok(RpcReply::Membership(Err(e @ (ProposeError::Membership(_) | ProposeError::Timeout(_))))) => return Err(e),
            Ok(RpcReply::Membership(Err(e))) => last = e,
            Ok(RpcReply::Refused(why)) => last = ProposeError::Shutdown(format!("node {to} at {addr} refused: {why}")),
            Ok(_) => last = ProposeError::Shutdown(format!("node {to} at {addr} answered something else")),
            Err(e) => last = ProposeError::Shutdown(format!("node {to} at {addr}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

/// The server's side: describe the quorum, or carry out a change when leading.
pub(crate) async fn serve(raft: &Raft<TypeConfig>, shared: &Shared, change: Option<MembershipChange>) -> Result<Quorum, ProposeError> {
    match change {
        None => Ok(quorum_of(raft)),
        Some(change) => {
            let q = quorum_of(raft);
            let me = raft.metrics().borrow().id;
            if q.leader != Some(me) {
                return Err(not_leader(raft, shared));
            }
            change_on(raft, change, shared).await
        }
    }
}
