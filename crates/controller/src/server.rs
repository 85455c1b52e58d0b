//! The serving side of controller RPCs: accept peers, check the envelope, hand
//! append-entries / vote / install-snapshot to the local Raft, answer.

use openraft::Raft;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use std::sync::Arc;

use crate::controller::{propose_on, record_heartbeat, Shared};
use crate::membership;
use crate::network::{read_frame, write_frame, RpcEnvelope, RpcReply, RpcRequest};
use crate::transport::{BoxStream, Transport};
use crate::{NodeId, TypeConfig};

/// A running RPC server; [`RpcServer::stop`] closes the listener and every connection.
pub(crate) struct RpcServer {
    stop_tx: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RpcServer {
    pub(crate) fn spawn(
        listener: TcpListener,
        raft: Raft<TypeConfig>,
        cluster_id: String,
        node_id: NodeId,
        shared: Arc<Shared>,
        transport: Transport,
    ) -> RpcServer {
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, raft, cluster_id, node_id, shared, stop_rx, transport));
        RpcServer { stop_tx, task: Some(task) }
    }

    pub(crate) async fn stop(&mut self) {
        self.stop_tx.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.stop_tx.send_replace(true);
    }
}

/// Resolves once a stop is requested (or the handle is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    cluster_id: String,
    node_id: NodeId,
    shared: Arc<Shared>,
    mut stop_rx: watch::Receiver<bool>,
    transport: Transport,
) {
    let mut conns = JoinSet::new();
    let conn_stop = stop_rx.clone();
    loop {
        tokio::select! {
            _ = stopped(&mut stop_rx) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (raft, cluster_id, shared, stop, transport) = (raft.clone(), cluster_id.clone(), shared.clone(), conn_stop.clone(), transport.clone());
                    conns.spawn(async move {
                        // With TLS, a peer without a certificate from the quorum's CA
                        // goes no further than its handshake.
                        match transport.accept(stream).await {
                            Ok(stream) => serve_conn(stream, raft, cluster_id, node_id, shared, stop, peer).await,
                            Err(e) => tracing::warn!(%peer, error = %e, "refusing controller connection: TLS handshake failed"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "controller accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

async fn serve_conn(
    mut stream: BoxStream,
    raft: Raft<TypeConfig>,
    cluster_id: String,
    node_id: NodeId,
    shared: Arc<Shared>,
    mut stop_rx: watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) {
    loop {
        let envelope = tokio::select! {
            _ = stopped(&mut stop_rx) => return,
            r = read_frame::<_, RpcEnvelope>(&mut stream) => match r {
                Ok(Some(env)) => env,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "closing controller connection");
                    return;
                }
            },
        };
        // Operators' tools and joining brokers may not know the cluster id yet.
        let membership = matches!(envelope.request, RpcRequest::Membership(_) | RpcRequest::DescribeQuorum);
        let reply = if envelope.cluster_id != cluster_id && !(membership && envelope.cluster_id.is_empty()) {
            let why = format!(
                "node {node_id} belongs to cluster `{cluster_id}`, node {} sent for cluster `{}`",
                envelope.from, envelope.cluster_id
            );
            tracing::warn!(%peer, "refusing controller RPC: {why}");
            RpcReply::Refused(why)
        } else if envelope.to != node_id {
            let why = format!("this is node {node_id}, node {} addressed node {}", envelope.from, envelope.to);
            tracing::warn!(%peer, "refusing controller RPC: {why}");
            RpcReply::Refused(why)
        } else {
            match envelope.request {
                RpcRequest::AppendEntries(req) => RpcReply::AppendEntries(raft.append_entries(req).await),
                RpcRequest::Vote(req) => RpcReply::Vote(raft.vote(req).await),
                RpcRequest::InstallSnapshot(req) => RpcReply::InstallSnapshot(raft.install_snapshot(req).await),
                RpcRequest::Propose(cmd) => RpcReply::Propose(propose_on(&raft, cmd, &shared).await),
                RpcRequest::Heartbeat { broker_id, broker_epoch } => {
                    RpcReply::Heartbeat(record_heartbeat(&raft, node_id, &shared, broker_id, broker_epoch))
                }
                RpcRequest::Membership(change) => RpcReply::Membership(membership::serve(&raft, &shared, Some(change)).await),
                RpcRequest::DescribeQuorum => RpcReply::Membership(membership::serve(&raft, &shared, None).await),
            }
        };
        if let Err(e) = write_frame(&mut stream, &reply).await {
            tracing::debug!(%peer, error = %e, "closing controller connection");
            return;
        }
    }
}
