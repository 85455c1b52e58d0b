//! How controller RPC connections are made: plain TCP, or TLS in both directions with
//! client certificates (the `CONTROLLER` listener mapped to SSL). With TLS a peer
//! without a certificate the quorum's CA signed cannot vote, replicate, propose (a
//! broker registering) or send heartbeats: its handshake fails before any frame.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connection, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Stream for T {}

pub type BoxStream = Pin<Box<dyn Stream>>;

/// A handshake that takes longer is given up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS client side of a connection to `addr` (`host:port`): the server's
/// certificate must name `host`. Shared by the quorum, the brokers' peer connections
/// and the CLI.
pub async fn tls_connect(config: Arc<rustls::ClientConfig>, addr: &str, tcp: TcpStream) -> io::Result<BoxStream> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
    let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_rustls::TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("TLS handshake with {addr} timed out")))??;
    Ok(Box::pin(s))
}

/// The TLS configurations of the quorum transport: the server side requires client
/// certificates; the client side presents one and checks the server's.
#[derive(Clone)]
pub struct TransportTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

/// The quorum transport: plaintext (the default) or TLS.
#[derive(Clone, Default)]
pub struct Transport {
    tls: Option<TransportTls>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.tls.is_some() { "Transport(TLS)" } else { "Transport(plaintext)" })
    }
}

impl Transport {
    pub fn plaintext() -> Transport {
        Transport { tls: None }
    }

    pub fn tls(tls: TransportTls) -> Transport {
        Transport { tls: Some(tls) }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects to `addr` (`host:port`), with TLS when configured, checking the
    /// server's certificate names `host`.
    pub async fn connect(&self, addr: &str) -> io::Result<BoxStream> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Box::pin(tcp)),
            Some(tls) => tls_connect(tls.client.clone(), addr, tcp).await,
        }
    }

    /// Takes an accepted connection through the TLS handshake when configured.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<BoxStream> {
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else { return Ok(Box::pin(tcp)) };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
        let s = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake within 10 s"))??;
        Ok(Box::pin(s))
    }
}
