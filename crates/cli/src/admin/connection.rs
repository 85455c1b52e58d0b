//! One TCP connection to a broker: size-prefixed frames, correlation ids, and the
//! ApiVersions handshake that fixes, per API, the highest version both sides speak.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use karst_protocol::framing::peek_size;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::errors::KafkaError;

/// The client id every request carries.
pub(crate) const CLIENT_ID: &str = "karst-cli";
/// Connecting gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A response not complete after this long (beyond any wait the request asks the
/// broker for) fails the request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response frame accepted; a larger declared size closes the connection.
const MAX_RESPONSE: usize = 256 << 20;

/// The highest version of each API this client's code fills in and reads correctly.
/// Newer versions change a message's shape (topic ids instead of names, batched
/// group keys) in ways the commands below do not handle, so they are capped here;
/// the codec's own range caps the rest.
fn client_max(key: ApiKey) -> i16 {
    match key {
        ApiKey::Produce => 12,        // v13: topics by id
        ApiKey::Fetch => 12,          // v13: topics by id
        ApiKey::ListOffsets => 7,     // v8+: tiered storage specials
        ApiKey::Metadata => 12,       // v13 only adds a top-level error code
        ApiKey::OffsetCommit => 8,    // v9: KIP-848 member epochs
        ApiKey::OffsetFetch => 8,     // v9: KIP-848 member epochs
        ApiKey::DescribeGroups => 5,  // v6: KIP-848 error messages
        ApiKey::DescribeCluster => 1, // v2: fenced brokers
        ApiKey::FindCoordinator => 4, // v5+: share and transaction-2PC errors
        ApiKey::DescribeConfigs => 4,
        ApiKey::ListGroups => 5,
        _ => i16::MAX,
    }
}

/// Picks the highest version both the broker (`broker_min..=broker_max`) and this
/// client (`client_min..=client_max`) speak.
pub(crate) fn negotiate(client: (i16, i16), broker: (i16, i16)) -> Option<i16> {
    let low = client.0.max(broker.0);
    let high = client.1.min(broker.1);
    (low <= high).then_some(high)
}

/// A connection to one broker.
pub(crate) struct Connection {
    addr: String,
    stream: karst_controller::transport::BoxStream,
    next_correlation_id: i32,
    /// Broker-advertised `(min, max)` per API key.
    broker_versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects to `addr` (host:port) and negotiates versions with ApiVersions.
    pub(crate) async fn connect(addr: &str) -> Result<Connection> {
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => bail!("cannot connect to {addr}: {e}"),
            Err(_) => bail!("cannot connect to {addr}: no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        };
        let _ = tcp.set_nodelay(true);
        let security = super::security::current();
        let stream: karst_controller::transport::BoxStream = match security.and_then(|s| s.tls.clone()) {
            None => Box::pin(tcp),
            Some(config) => {
                karst_controller::transport::tls_connect(config, addr, tcp).await.with_context(|| format!("TLS handshake with {addr}"))?
            }
        };
        let mut conn = Connection { addr: addr.to_string(), stream, next_correlation_id: 1, broker_versions: HashMap::new() };
        conn.handshake().await.with_context(|| format!("ApiVersions with {addr}"))?;
        if let Some((mechanism, user, password)) = security.and_then(|s| s.sasl.as_ref()) {
            conn.authenticate(*mechanism, user, password).await.with_context(|| format!("SASL {} with {addr}", mechanism.name()))?;
        }
        Ok(conn)
    }

    /// SaslHandshake, then SaslAuthenticate until the exchange is done.
    async fn authenticate(&mut self, mechanism: karst_broker::security::sasl::Mechanism, user: &str, password: &str) -> Result<()> {
        use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
        let name = StrBytes::from_static_str(mechanism.name());
        let (_, h) = self.call(|_| SaslHandshakeRequest::default().with_mechanism(name)).await?;
        if h.error_code != 0 {
            let enabled: Vec<&str> = h.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(KafkaError::new(h.error_code, Some(format!("the broker offers {}", enabled.join(", ")))).into());
        }
        let mut client = karst_broker::security::sasl::SaslClient::new(mechanism, user, password).map_err(|e| anyhow!(e))?;
        let mut token = client.first();
        loop {
            let (_, r) = self.call(|_| SaslAuthenticateRequest::default().with_auth_bytes(token.into())).await?;
            if r.error_code != 0 {
                return Err(KafkaError::new(r.error_code, r.error_message.map(|m| m.to_string())).into());
            }
            match client.next(&r.auth_bytes).map_err(|e| anyhow!(e))? {
                Some(next) => token = next,
                None => return Ok(()),
            }
        }
    }

    async fn handshake(&mut self) -> Result<()> {
        // v3 first (flexible, carries our name); a broker that does not know it
        // answers v0 with UNSUPPORTED_VERSION and its list (KIP-511).
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let correlation_id = self.write_request(&req, 3).await?;
        let frame = self.read_frame(REQUEST_TIMEOUT).await?;
        let resp = decode_api_versions(frame, correlation_id)?;
        let resp = if resp.error_code == 35 {
            let correlation_id = self.write_request(&ApiVersionsRequest::default(), 0).await?;
            let frame = self.read_frame(REQUEST_TIMEOUT).await?;
            decode_api_versions(frame, correlation_id)?
        } else {
            resp
        };
        if resp.error_code != 0 {
            return Err(KafkaError::new(resp.error_code, None).into());
        }
        self.broker_versions = resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(())
    }

    /// The version of `R` to use with this broker, or an error naming the API if
    /// there is none both sides speak.
    pub(crate) fn version<R: Request>(&self) -> Result<i16> {
        let name = ApiKey::try_from(R::KEY).map(|k| format!("{k:?}")).unwrap_or_else(|()| format!("API {}", R::KEY));
        let Some(&broker) = self.broker_versions.get(&R::KEY) else {
            bail!("the broker at {} does not support {name}", self.addr);
        };
        let key = ApiKey::try_from(R::KEY).map_err(|()| anyhow!("unknown API key {}", R::KEY))?;
        let client = (R::VERSIONS.min, R::VERSIONS.max.min(client_max(key)));
        negotiate(client, broker).ok_or_else(|| {
            anyhow!(
                "the broker at {} speaks {name} v{}..v{}, this client v{}..v{}: no common version",
                self.addr,
                broker.0,
                broker.1,
                client.0,
                client.1
            )
        })
    }

    /// Whether the broker advertises `R` at all.
    pub(crate) fn supports<R: Request>(&self) -> bool {
        self.version::<R>().is_ok()
    }

    /// Sends a request built for the negotiated version and waits for its response.
    pub(crate) async fn call<R: Request>(&mut self, build: impl FnOnce(i16) -> R) -> Result<(i16, R::Response)> {
        self.call_with_timeout(REQUEST_TIMEOUT, build).await
    }

    /// Like [`Connection::call`], for requests the broker may hold (long polls, joins).
    pub(crate) async fn call_with_timeout<R: Request>(
        &mut self,
        timeout: Duration,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(i16, R::Response)> {
        let version = self.version::<R>()?;
        let req = build(version);
        let correlation_id = self.write_request(&req, version).await?;
        let mut frame = self.read_frame(timeout).await?;
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(|e| anyhow!("malformed response header from {}: {e:#}", self.addr))?;
        if header.correlation_id != correlation_id {
            bail!("{} answered correlation id {} to request {correlation_id}", self.addr, header.correlation_id);
        }
        let name = ApiKey::try_from(R::KEY).map(|k| format!("{k:?}")).unwrap_or_default();
        let body = R::Response::decode(&mut frame, version)
            .map_err(|e| anyhow!("malformed {name} v{version} response from {}: {e:#}", self.addr))?;
        Ok((version, body))
    }

    /// Sends a request that gets no response (Produce with acks=0).
    pub(crate) async fn send_only<R: Request>(&mut self, build: impl FnOnce(i16) -> R) -> Result<i16> {
        let version = self.version::<R>()?;
        let req = build(version);
        self.write_request(&req, version).await?;
        Ok(version)
    }

    async fn write_request<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let key = ApiKey::try_from(R::KEY).map_err(|()| anyhow!("unknown API key {}", R::KEY))?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::with_capacity(256);
        buf.extend_from_slice(&[0; 4]);
        header.encode(&mut buf, key.request_header_version(version)).map_err(|e| anyhow!("encoding {key:?} header: {e:#}"))?;
        req.encode(&mut buf, version).map_err(|e| anyhow!("encoding {key:?} v{version}: {e:#}"))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        match tokio::time::timeout(REQUEST_TIMEOUT, self.stream.write_all(&buf)).await {
            Ok(Ok(())) => Ok(correlation_id),
            Ok(Err(e)) => bail!("sending to {}: {e}", self.addr),
            Err(_) => bail!("sending to {}: timed out", self.addr),
        }
    }

    async fn read_frame(&mut self, timeout: Duration) -> Result<Bytes> {
        let addr = self.addr.clone();
        let read = async {
            let mut size = [0u8; 4];
            self.stream.read_exact(&mut size).await?;
            let len = match peek_size(&size, MAX_RESPONSE) {
                Ok(Some(n)) => n,
                Ok(None) => unreachable!("four bytes were read"),
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
            };
            let mut buf = BytesMut::zeroed(len);
            self.stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf.freeze())
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => bail!("{addr} closed the connection"),
            Ok(Err(e)) => bail!("reading from {addr}: {e}"),
            Err(_) => bail!("no response from {addr} within {}s", timeout.as_secs()),
        }
    }
}

/// ApiVersions responses always have a v0 header; the body is read at v3 unless it
/// is the v0 fallback (error code UNSUPPORTED_VERSION first), which is read at v0.
fn decode_api_versions(mut frame: Bytes, correlation_id: i32) -> Result<ApiVersionsResponse> {
    let header = ResponseHeader::decode(&mut frame, 0).map_err(|e| anyhow!("malformed ApiVersions header: {e:#}"))?;
    if header.correlation_id != correlation_id {
        bail!("answered correlation id {} to request {correlation_id}", header.correlation_id);
    }
    if frame.remaining() >= 2 && i16::from_be_bytes([frame[0], frame[1]]) == 35 {
        return ApiVersionsResponse::decode(&mut frame, 0).map_err(|e| anyhow!("malformed ApiVersions v0 response: {e:#}"));
    }
    ApiVersionsResponse::decode(&mut frame, 3).map_err(|e| anyhow!("malformed ApiVersions v3 response: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(negotiate((0, 9), (0, 5)), Some(5));
        assert_eq!(negotiate((3, 12), (3, 11)), Some(11));
        assert_eq!(negotiate((4, 12), (0, 17)), Some(12));
        assert_eq!(negotiate((4, 12), (0, 3)), None);
        assert_eq!(negotiate((0, 1), (2, 4)), None);
    }
}
