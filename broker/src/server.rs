//! The TCP listener and the per-connection request loop.
//!
//! Requests on one connection are handled in order and answered in order, as
//! Kafka does. A frame that cannot be parsed closes that connection only.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use karst_protocol::codec::{decode_request, encode_api_versions_fallback, DecodeError};
use karst_protocol::framing::take_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn, Instrument};

use crate::broker::Broker;
use crate::handlers;

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    broker.start_background();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("shutting down: no longer accepting connections");
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let b = broker.clone();
                    let span = tracing::info_span!("conn", %peer);
                    tokio::spawn(async move { connection(b, stream, peer).await }.instrument(span));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn connection(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let max = broker.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = match take_frame(&mut buf, max) {
            Ok(Some(f)) => f,
            Ok(None) => match rd.read_buf(&mut buf).await {
                Ok(0) => {
                    if !buf.is_empty() {
                        debug!(%peer, pending = buf.len(), "peer closed mid-request");
                    }
                    return;
                }
                Ok(_) => continue,
                Err(e) => {
                    debug!(%peer, "read failed: {e}");
                    return;
                }
            },
            Err(e) => {
                warn!(%peer, "closing connection: {e}");
                return;
            }
        };
        let response = match decode_request(frame) {
            Ok(req) => match handlers::dispatch(&broker, req).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(%peer, "closing connection: {e}");
                    return;
                }
            },
            Err(DecodeError::UnsupportedApiVersions {
                version,
                correlation_id,
            }) => {
                debug!(%peer, version, "ApiVersions at unknown version: answering v0 per KIP-511");
                Some(encode_api_versions_fallback(correlation_id))
            }
            Err(e) => {
                warn!(%peer, "closing connection: {e}");
                return;
            }
        };
        if let Some(bytes) = response {
            if let Err(e) = wr.write_all(&bytes).await {
                debug!(%peer, "write failed: {e}");
                return;
            }
        }
    }
}
