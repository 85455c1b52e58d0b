//! Raft RPCs between controllers over TCP: the wire format (length-prefixed JSON
//! frames) and the client side (openraft's `RaftNetwork`). The serving side is
//! `server.rs`.
//!
//! A frame is `u32 BE length | JSON`. A connection carries one request at a time:
//! the client writes an [`RpcEnvelope`], the server answers with an [`RpcReply`].
//! Every envelope names the cluster id and the target node id; a server refuses
//! envelopes for another cluster or node with a readable reason.

use std::io;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::commands::{CommandResult, MetadataCommand};
use crate::errors::ProposeError;
use crate::membership::{MembershipChange, Quorum};
use crate::metadata::BrokerId;
use crate::transport::{BoxStream, Transport};
use crate::{NodeId, TypeConfig};

/// Largest frame either side accepts (snapshot chunks are far smaller).
pub(crate) const MAX_FRAME: usize = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RpcEnvelope {
    pub(crate) cluster_id: String,
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) request: RpcRequest,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A proposal forwarded by a non-leader to the leader.
    Propose(MetadataCommand),
    /// A broker's liveness signal, recorded by the leader.
    Heartbeat {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    /// A membership change for the leader (from an operator or a joining broker).
    Membership(MembershipChange),
    /// The membership and leader as the receiving node sees them.
    DescribeQuorum,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RpcReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Propose(Result<CommandResult, ProposeError>),
    Heartbeat(Result<(), ProposeError>),
    /// The quorum after a change (or as described).
    Membership(Result<Quorum, ProposeError>),
    /// The envelope was refused (wrong cluster or node id); the reason is for logs.
    Refused(String),
}

/// One request on a fresh connection to `addr` (forwarded proposals and heartbeats).
pub(crate) async fn call_once(transport: &Transport, addr: &str, envelope: &RpcEnvelope, ttl: Duration) -> io::Result<RpcReply> {
    tokio::time::timeout(ttl, async {
        let mut s = transport.connect(addr).await?;
        write_frame(&mut s, envelope).await?;
        read_frame::<_, RpcReply>(&mut s).await?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"))
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no reply from {addr} within {ttl:?}")))?
}

pub(crate) async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("frame of {} bytes exceeds {MAX_FRAME}", body.len())));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    w.flush().await
}

/// `Ok(None)` on a clean end of stream before a frame starts.
pub(crate) async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes exceeds {MAX_FRAME}")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads frames from `bytes` as a server reads envelopes and, separately, as a
/// client reads replies, each until the bytes end or a frame is refused. Returns
/// how many frames decoded. For the transport's fuzz target (`fuzz/`): the frame
/// reader is private and async, the target is neither.
#[doc(hidden)]
pub async fn read_frames_for_fuzzing(bytes: &[u8]) -> usize {
    let mut decoded = 0;
    let mut r = bytes;
    while let Ok(Some(_)) = read_frame::<_, RpcEnvelope>(&mut r).await {
        decoded += 1;
    }
    let mut r = bytes;
    while let Ok(Some(_)) = read_frame::<_, RpcReply>(&mut r).await {
        decoded += 1;
    }
    decoded
}

/// Creates one [`PeerClient`] per target; openraft calls it per replication stream.
pub(crate) struct NetworkFactory {
    pub(crate) cluster_id: String,
    pub(crate) self_id: NodeId,
    pub(crate) transport: Transport,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            cluster_id: self.cluster_id.clone(),
            self_id: self.self_id,
            target,
            addr: node.addr.clone(),
            conn: None,
            transport: self.transport.clone(),
        }
    }
}

/// A lazily connected TCP client to one peer; reconnects after any failure.
pub(crate) struct PeerClient {
    cluster_id: String,
    self_id: NodeId,
    target: NodeId,
    addr: String,
    conn: Option<BoxStream>,
    transport: Transport,
}

/// How one exchange failed, before mapping to openraft's error for the RPC kind.
enum CallError {
    Timeout,
    Unreachable(io::Error),
    Refused(String),
}

impl PeerClient {
    async fn exchange(&mut self, request: RpcRequest, ttl: Duration) -> Result<RpcReply, CallError> {
        let envelope = RpcEnvelope { cluster_id: self.cluster_id.clone(), from: self.self_id, to: self.target, request };
        let res = tokio::time::timeout(ttl, async {
            if self.conn.is_none() {
                self.conn = Some(self.transport.connect(&self.addr).await?);
            }
            let Some(conn) = self.conn.as_mut() else { return Err(io::Error::other("not connected")) };
            write_frame(conn, &envelope).await?;
            read_frame::<_, RpcReply>(conn).await?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"))
        })
        .await;
        match res {
            Ok(Ok(RpcReply::Refused(why))) => {
                self.conn = None;
                tracing::warn!(target_node = self.target, addr = %self.addr, reason = %why, "controller peer refused our RPC");
                Err(CallError::Refused(why))
            }
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.conn = None;
                Err(CallError::Unreachable(e))
            }
            Err(_) => {
                self.conn = None;
                Err(CallError::Timeout)
            }
        }
    }

    fn rpc_error<E: std::error::Error>(&self, e: CallError, action: RPCTypes, ttl: Duration) -> RPCError<NodeId, BasicNode, E> {
        match e {
            CallError::Timeout => RPCError::Timeout(Timeout { action, id: self.self_id, target: self.target, timeout: ttl }),
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Refused(why) => RPCError::Unreachable(Unreachable::new(&io::Error::other(why))),
        }
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<NodeId, BasicNode, E> {
        RPCError::RemoteError(RemoteError::new_with_node(self.target, BasicNode { addr: self.addr.clone() }, e))
    }

    fn mismatch<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&io::Error::other("reply does not match the request kind")))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let ttl = option.hard_ttl();
        match self.exchange(RpcRequest::AppendEntries(rpc), ttl).await {
            Ok(RpcReply::AppendEntries(r)) => r.map_err(|e| self.remote(e)),
            Ok(_) => Err(self.mismatch()),
            Err(e) => Err(self.rpc_error(e, RPCTypes::AppendEntries, ttl)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>> {
        let ttl = option.hard_ttl();
        match self.exchange(RpcRequest::InstallSnapshot(rpc), ttl).await {
            Ok(RpcReply::InstallSnapshot(r)) => r.map_err(|e| self.remote(e)),
            Ok(_) => Err(self.mismatch()),
            Err(e) => Err(self.rpc_error(e, RPCTypes::InstallSnapshot, ttl)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let ttl = option.hard_ttl();
        match self.exchange(RpcRequest::Vote(rpc), ttl).await {
            Ok(RpcReply::Vote(r)) => r.map_err(|e| self.remote(e)),
            Ok(_) => Err(self.mismatch()),
            Err(e) => Err(self.rpc_error(e, RPCTypes::Vote, ttl)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_lengths_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let reply = RpcReply::Refused("wrong cluster".into());
        write_frame(&mut a, &reply).await.unwrap();
        let got: RpcReply = read_frame(&mut b).await.unwrap().unwrap();
        assert!(matches!(got, RpcReply::Refused(why) if why == "wrong cluster"));

        // A hostile length is refused before allocating.
        a.write_all(&(u32::MAX).to_be_bytes()).await.unwrap();
        let err = read_frame::<_, RpcReply>(&mut b).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        // Garbage JSON is an error; a clean close before a frame is `None`.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&3u32.to_be_bytes()).await.unwrap();
        a.write_all(b"{{{").await.unwrap();
        drop(a);
        assert!(read_frame::<_, RpcReply>(&mut b).await.is_err());
        assert!(read_frame::<_, RpcReply>(&mut b).await.unwrap().is_none());
    }
}
