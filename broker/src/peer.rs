//! One connection to another broker, one request at a time: follower fetches and
//! the transaction coordinator's markers and verifications go through it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use karst_protocol::codec::{decode_response, encode_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::broker::Broker;
use crate::metadata::{ClusterImage, REPLICA_LISTENER};

/// The address of `broker`'s inter-broker listener: `inter.broker.listener.name`
/// where set (every broker names the same one, as in Kafka), else its replica
/// listener or its first.
pub(crate) fn inter_broker_addr(b: &Broker, image: &ClusterImage, broker: i32) -> Option<String> {
    image
        .cluster
        .broker(broker)
        .and_then(|r| match &b.config.inter_broker_listener_name {
            Some(name) => r.listeners.iter().find(|l| &l.name == name),
            None => r.listeners.iter().find(|l| l.name == REPLICA_LISTENER).or(r.listeners.first()),
        })
        .map(|l| format!("{}:{}", l.host, l.port))
}

/// How long a connect or a request may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a broker; errors are the reason it is unusable.
pub(crate) struct Conn {
    stream: TcpStream,
    correlation: i32,
    client_id: String,
}

impl Conn {
    pub(crate) async fn connect(addr: &str, client_id: String) -> Result<Conn, String> {
        let stream = tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn { stream, correlation: 0, client_id })
    }

    pub(crate) async fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> Result<ResponseKind, String> {
        self.correlation = self.correlation.wrapping_add(1);
        let frame = encode_request(key, version, self.correlation, &self.client_id, &body)?;
        let exchange = async {
            self.stream.write_all(&frame).await?;
            let size = self.stream.read_i32().await?;
            let size = usize::try_from(size).map_err(|_| std::io::Error::other("negative frame size"))?;
            if size > 64 << 20 {
                return Err(std::io::Error::other(format!("response of {size} bytes")));
            }
            let mut buf = BytesMut::zeroed(size);
            self.stream.read_exact(&mut buf).await?;
            Ok::<Bytes, std::io::Error>(buf.freeze())
        };
        let frame = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{key:?} timed out"))?
            .map_err(|e| format!("{key:?}: {e}"))?;
        let (correlation, body) = decode_response(key, version, frame)?;
        if correlation != self.correlation {
            return Err(format!("correlation id {correlation}, expected {}", self.correlation));
        }
        Ok(body)
    }
}
