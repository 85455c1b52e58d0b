//! One connection to another broker, one request at a time: follower fetches and
//! the transaction coordinator's markers and verifications go through it. Over TLS
//! and SASL when the inter-broker listener has them ([`PeerSecurity`]).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use karst_controller::transport::BoxStream;
use karst_protocol::codec::{decode_response, encode_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::broker::Broker;
use crate::metadata::{ClusterImage, REPLICA_LISTENER};
use crate::security::sasl::Mechanism;
use crate::security::PeerSecurity;

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
    stream: BoxStream,
    correlation: i32,
    client_id: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

impl Conn {
    pub(crate) async fn connect(b: &Broker, addr: &str, client_id: String) -> Result<Conn, String> {
        Self::connect_with(&b.peer_security, addr, client_id).await
    }

    pub(crate) async fn connect_with(security: &PeerSecurity, addr: &str, client_id: String) -> Result<Conn, String> {
        let tcp = tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream: BoxStream = match &security.tls {
            None => Box::pin(tcp),
            Some(config) => karst_controller::transport::tls_connect(config.clone(), addr, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {addr}: {e}"))?,
        };
        let mut conn = Conn { stream, correlation: 0, client_id };
        if let Some((mechanism, user, password)) = &security.sasl {
            conn.authenticate(*mechanism, user, password).await.map_err(|e| format!("SASL with {addr}: {e}"))?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1, then SaslAuthenticate v2 as `user`.
    async fn authenticate(&mut self, mechanism: Mechanism, user: &str, password: &str) -> Result<(), String> {
        let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism.name()));
        let ResponseKind::SaslHandshake(r) = self.call(ApiKey::SaslHandshake, 1, RequestKind::SaslHandshake(hs)).await? else {
            return Err("not a SaslHandshake response".into());
        };
        if r.error_code != 0 {
            return Err(format!("SaslHandshake {}: error {}", mechanism.name(), r.error_code));
        }
        let mut client = crate::security::sasl::SaslClient::new(mechanism, user, password)?;
        let mut token = client.first();
        loop {
            let req = SaslAuthenticateRequest::default().with_auth_bytes(token.into());
            let ResponseKind::SaslAuthenticate(r) = self.call(ApiKey::SaslAuthenticate, 2, RequestKind::SaslAuthenticate(req)).await?
            else {
                return Err("not a SaslAuthenticate response".into());
            };
            if r.error_code != 0 {
                return Err(format!("error {}: {}", r.error_code, r.error_message.as_deref().unwrap_or("")));
            }
            match client.next(&r.auth_bytes)? {
                Some(next) => token = next,
                None => return Ok(()),
            }
        }
    }

    pub(crate) async fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> Result<ResponseKind, String> {
        self.call_within(key, version, body, CALL_TIMEOUT).await
    }

    /// [`Conn::call`], waiting up to `timeout` for the answer.
    pub(crate) async fn call_within(
        &mut self,
        key: ApiKey,
        version: i16,
        body: RequestKind,
        timeout: Duration,
    ) -> Result<ResponseKind, String> {
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
        let frame = tokio::time::timeout(timeout, exchange)
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
