//! The TCP listener and the per-connection request loop.
//!
//! Requests on one connection are handled in order and answered in order, as
//! Kafka does. A frame that cannot be parsed closes that connection only.

use std::net::SocketAddr;
use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;

use bytes::BytesMut;
use futures::stream::{FuturesOrdered, StreamExt};
use karst_protocol::codec::{decode_request, encode_api_versions_fallback, DecodeError, Request};
use karst_protocol::framing::take_frame;
use karst_protocol::kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse};
use karst_protocol::kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn, Instrument};

use crate::broker::Broker;
use crate::connections::Slot;
use crate::handlers::{self, Frames, Reply};
use crate::security::authz::{self, Session};
use crate::security::sasl::{SaslSession, Step};
use crate::security::{ListenerSecurity, Principal};

tokio::task_local! {
    /// The name of the listener the current connection arrived on: Metadata,
    /// FindCoordinator and DescribeCluster answer with that listener's addresses,
    /// as Kafka does. Task-local so the request path keeps its signatures.
    static LISTENER: Arc<str>;
}

/// The listener the request being handled arrived on (None outside a connection).
pub(crate) fn current_listener() -> Option<Arc<str>> {
    LISTENER.try_with(Arc::clone).ok()
}

/// Accepts connections on one listener (the first configured one's name) until
/// `shutdown` resolves.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener, shutdown: impl std::future::Future<Output = ()>) {
    let name = broker.config.listeners().ok().and_then(|l| l.bind.into_iter().next()).map_or_else(|| "PLAINTEXT".to_string(), |l| l.name);
    serve_listeners(broker, vec![(name, listener)], shutdown).await
}

/// Accepts connections on every named listener until `shutdown` resolves.
pub async fn serve_listeners(broker: Arc<Broker>, listeners: Vec<(String, TcpListener)>, shutdown: impl std::future::Future<Output = ()>) {
    broker.start_background();
    tokio::pin!(shutdown);
    let names: Vec<Arc<str>> = listeners.iter().map(|(n, _)| Arc::from(n.as_str())).collect();
    if listeners.is_empty() {
        shutdown.await;
        return;
    }
    let limits = &broker.connection_limits;
    loop {
        // At max.connections nothing is accepted until a connection closes, as in Kafka.
        let place = tokio::select! {
            _ = &mut shutdown => {
                info!("shutting down: no longer accepting connections");
                return;
            }
            place = limits.place() => place,
        };
        // Accepting is cancel-safe: the losers' futures are dropped without losing a connection.
        let accepts = futures::future::select_all(listeners.iter().map(|(_, l)| Box::pin(l.accept())));
        tokio::select! {
            _ = &mut shutdown => {
                info!("shutting down: no longer accepting connections");
                return;
            }
            (accepted, index, _) = accepts => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = limits.admit(place, peer.ip()) else {
                        // Kafka closes a connection over max.connections.per.ip at once.
                        info!(%peer, max = broker.effective_config().max_connections_per_ip, "closing connection: max.connections.per.ip reached");
                        drop(stream);
                        continue;
                    };
                    // KIP-612: over its ip's connection_creation_rate, held unserved, then closed.
                    let hold = broker.throttles.connection(&broker.metadata.image().quotas, peer.ip(), std::time::Instant::now());
                    if hold > 0 {
                        info!(%peer, hold_ms = hold, "closing connection: connection_creation_rate of its ip exceeded");
                        crate::metrics::throttled(crate::quotas::Kind::Connection, hold);
                        tokio::spawn(async move {
                            tokio::time::sleep(std::time::Duration::from_millis(hold)).await;
                            drop((stream, slot));
                        });
                        continue;
                    }
                    let b = broker.clone();
                    let name = names[index].clone();
                    let security = broker.listener_security(&name);
                    let span = tracing::info_span!("conn", %peer, listener = %name);
                    tokio::spawn(LISTENER.scope(name, async move { secure(b, stream, peer, slot, security).await }).instrument(span));
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

/// Requests read ahead of their responses per connection: enough to keep a
/// pipelining producer's appends flowing during an fsync, bounded so a client
/// that never reads its responses cannot make the broker buffer without limit.
const MAX_IN_FLIGHT: usize = 16;

/// A response to come, and whether it was an exclusive one.
type Pending = Pin<Box<dyn Future<Output = (bool, Result<Option<Frames>, String>)> + Send>>;

/// A TLS handshake that takes longer is given up (a client that connects and says
/// nothing holds no task for long).
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A new connection on a listener: TLS first where the listener has it, then the
/// request loop, with SASL where the listener has it.
async fn secure(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr, slot: Slot, security: Arc<ListenerSecurity>) {
    let _ = stream.set_nodelay(true);
    let sasl = security.sasl.clone().map(SaslSession::new);
    let host = peer.ip().to_string();
    let Some(tls) = &security.tls else {
        let (rd, wr) = stream.into_split();
        let session = Session::new(Principal::anonymous(), host);
        return authz::scope(session.clone(), connection(broker, rd, wr, peer, slot, session, sasl)).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            info!(%peer, "closing connection: TLS handshake failed: {e}");
            crate::metrics::authentication_failed("SSL");
            return;
        }
        Err(_) => {
            info!(%peer, "closing connection: no TLS handshake within {} s", TLS_HANDSHAKE_TIMEOUT.as_secs());
            crate::metrics::authentication_failed("SSL");
            return;
        }
    };
    // mTLS: the client certificate's subject is the principal, as Kafka's default
    // `ssl.principal.mapping.rules`; without one the connection is ANONYMOUS.
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(crate::security::tls::subject_name)
        .map_or_else(Principal::anonymous, |n| Principal::user(&n));
    debug!(%peer, %principal, "TLS established");
    let (rd, wr) = tokio::io::split(stream);
    let session = Session::new(principal, host);
    authz::scope(session.clone(), connection(broker, rd, wr, peer, slot, session, sasl)).await
}

/// A SASL step's reply, or Err to close the connection (after the reply, if any).
fn sasl_request(
    broker: &Broker,
    s: &mut SaslSession,
    session: &Session,
    req: &Request,
    peer: SocketAddr,
) -> Result<Frames, Option<Frames>> {
    let encode = |kind: ResponseKind| {
        karst_protocol::codec::encode_response(req.correlation_id, req.api_key, req.version, &kind).map(|b| vec![b]).map_err(|_| None)
    };
    match &req.body {
        RequestKind::SaslHandshake(h) => {
            let (code, names) = s.handshake(h.mechanism.as_str(), req.version);
            let r = SaslHandshakeResponse::default()
                .with_error_code(code)
                .with_mechanisms(names.into_iter().map(StrBytes::from_static_str).collect());
            let frames = encode(ResponseKind::SaslHandshake(r))?;
            if code != 0 {
                info!(%peer, mechanism = %h.mechanism.as_str(), code, "closing connection: SASL handshake refused");
                crate::metrics::authentication_failed(h.mechanism.as_str());
                return Err(Some(frames));
            }
            Ok(frames)
        }
        RequestKind::SaslAuthenticate(a) => {
            let step = s.authenticate(&a.auth_bytes, |user, hash| crate::handlers::scram_credentials::lookup(broker, user, hash));
            let r = SaslAuthenticateResponse::default();
            match step {
                Step::Continue(bytes) => encode(ResponseKind::SaslAuthenticate(r.with_auth_bytes(bytes.into()))),
                Step::Done(bytes) => {
                    debug!(%peer, principal = ?s.principal(), "SASL authenticated");
                    if let Some(p) = s.principal() {
                        session.set_principal(p.clone());
                    }
                    let r = r.with_auth_bytes(bytes.into()).with_session_lifetime_ms(s.lifetime_ms());
                    encode(ResponseKind::SaslAuthenticate(r))
                }
                Step::Failed(code, message) => {
                    info!(%peer, code, "closing connection: {message}");
                    crate::metrics::authentication_failed(s.mechanism().unwrap_or("SASL"));
                    Err(Some(encode(ResponseKind::SaslAuthenticate(
                        r.with_error_code(code).with_error_message(Some(StrBytes::from_string(message))),
                    ))?))
                }
            }
        }
        _ => Err(None),
    }
}

/// A bare SASL token after a v0 handshake: answered bare (length-prefixed), or Err
/// to close the connection (Kafka closes it, answering nothing, when one fails).
fn sasl_raw_token(broker: &Broker, s: &mut SaslSession, session: &Session, token: &[u8], peer: SocketAddr) -> Result<Frames, ()> {
    let step = s.authenticate(token, |user, hash| crate::handlers::scram_credentials::lookup(broker, user, hash));
    if let (Step::Done(_), Some(p)) = (&step, s.principal()) {
        session.set_principal(p.clone());
    }
    match step {
        Step::Continue(bytes) | Step::Done(bytes) => {
            let mut frame = Vec::with_capacity(4 + bytes.len());
            frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            frame.extend_from_slice(&bytes);
            Ok(vec![frame.into()])
        }
        Step::Failed(_, message) => {
            info!(%peer, "closing connection: {message}");
            crate::metrics::authentication_failed(s.mechanism().unwrap_or("SASL"));
            Err(())
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection<R, W>(
    broker: Arc<Broker>,
    mut rd: R,
    wr: W,
    peer: SocketAddr,
    _slot: Slot,
    session: Arc<Session>,
    mut sasl: Option<SaslSession>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _counted = crate::metrics::connection();
    // connections.max.idle.ms: counted from the last byte in or out while no
    // request is in flight (a long-poll fetch is not idleness).
    let max_idle = std::time::Duration::from_millis(broker.config.connections_max_idle_ms);
    let idle = tokio::time::sleep(max_idle);
    tokio::pin!(idle);
    // Small frames are gathered; large ones (record batches) bypass the buffer.
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let max = broker.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut inflight: FuturesOrdered<Pending> = FuturesOrdered::new();
    // Exclusive replies in flight: while any is, no further request is dispatched.
    let mut exclusive = 0usize;
    // An exclusive reply's signal that the rest of it may overlap later requests.
    let mut release: Option<tokio::sync::oneshot::Receiver<()>> = None;
    let mut eof = false;
    // A refused authentication: answer what is in flight, then close.
    let mut closing = false;
    loop {
        // Dispatch every complete request already buffered, in order (none while a
        // quota's throttle mutes the connection).
        while inflight.len() < MAX_IN_FLIGHT && exclusive == 0 && !closing && session.muted_until().is_none() {
            let frame = match take_frame(&mut buf, max) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, "closing connection: {e}");
                    return;
                }
            };
            if let Some(s) = sasl.as_mut() {
                if s.expects_raw_token() {
                    match sasl_raw_token(&broker, s, &session, &frame, peer) {
                        Ok(frames) => inflight.push_back(Box::pin(std::future::ready((false, Ok(Some(frames)))))),
                        Err(()) => closing = true,
                    }
                    continue;
                }
                if s.expired(std::time::Instant::now()) {
                    info!(%peer, "closing connection: its SASL session expired (connections.max.reauth.ms) without re-authentication");
                    closing = true;
                    continue;
                }
            }
            let mut traced = None;
            let reply = match decode_request(frame) {
                Ok(req) if sasl.is_some() && matches!(req.body, RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_)) => {
                    let s = sasl.as_mut().expect("checked");
                    match sasl_request(&broker, s, &session, &req, peer) {
                        Ok(frames) => Reply::Now(Some(frames)),
                        Err(last) => {
                            closing = true;
                            Reply::Now(last)
                        }
                    }
                }
                Ok(req) if sasl.as_ref().is_some_and(|s| !s.authenticated()) && req.api_key != ApiKey::ApiVersions => {
                    // As Kafka: only ApiVersions and the SASL requests before authenticating.
                    info!(%peer, api = ?req.api_key, "closing connection: request before SASL authentication");
                    closing = true;
                    continue;
                }
                Ok(req) => {
                    traced = Traced::start(&req, peer);
                    match handlers::dispatch(&broker, req, peer) {
                        Ok(r) => r,
                        Err(e) => {
                            warn!(%peer, "closing connection: {e}");
                            return;
                        }
                    }
                }
                Err(DecodeError::UnsupportedApiVersions { version, correlation_id }) => {
                    debug!(%peer, version, "ApiVersions at unknown version: answering v0 per KIP-511");
                    Reply::Now(Some(vec![encode_api_versions_fallback(correlation_id)]))
                }
                Err(e) => {
                    warn!(%peer, "closing connection: {e}");
                    return;
                }
            };
            let pending: Pending = match reply {
                Reply::Now(r) => Box::pin(std::future::ready((false, Ok(r)))),
                Reply::Later(f) => Box::pin(async move { (false, f.await) }),
                Reply::Exclusive(f) => {
                    exclusive += 1;
                    Box::pin(async move { (true, f.await) })
                }
                Reply::ExclusiveUntil(f, signal) => {
                    // Dispatching stops while any exclusive reply is in flight, so
                    // this is the only one.
                    exclusive += 1;
                    release = Some(signal);
                    Box::pin(async move { (false, f.await) })
                }
            };
            inflight.push_back(match traced {
                Some(t) => Box::pin(t.answered(pending, peer)),
                None => pending,
            });
        }
        if closing && inflight.is_empty() {
            let _ = wr.flush().await;
            return;
        }
        if eof && inflight.is_empty() {
            if !buf.is_empty() {
                debug!(%peer, pending = buf.len(), "peer closed mid-request");
            }
            return;
        }
        let muted = session.muted_until();
        tokio::select! {
            biased;
            Some((was_exclusive, done)) = inflight.next(), if !inflight.is_empty() => match done {
                Ok(Some(frames)) => {
                    if let Err(e) = write_frames(&mut wr, &frames).await {
                        debug!(%peer, "write failed: {e}");
                        return;
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + max_idle);
                    exclusive -= usize::from(was_exclusive);
                }
                Ok(None) if was_exclusive => exclusive -= 1,
                Ok(None) => {}
                Err(e) => {
                    warn!(%peer, "closing connection: {e}");
                    return;
                }
            },
            _ = async {
                if let Some(r) = release.as_mut() {
                    let _ = r.await;
                }
            }, if release.is_some() => {
                release = None;
                exclusive -= 1;
            }
            // KIP-219: a throttled connection reads nothing until its throttle ends.
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(muted.unwrap_or_else(std::time::Instant::now))), if muted.is_some() => {}
            read = rd.read_buf(&mut buf), if !eof && !closing && inflight.len() < MAX_IN_FLIGHT && exclusive == 0 && muted.is_none() => match read {
                Ok(0) => eof = true,
                Ok(_) => idle.as_mut().reset(tokio::time::Instant::now() + max_idle),
                Err(e) => {
                    debug!(%peer, "read failed: {e}");
                    return;
                }
            },
            _ = &mut idle, if inflight.is_empty() => {
                info!(%peer, idle_ms = max_idle.as_millis() as u64, "closing idle connection (connections.max.idle.ms)");
                return;
            }
        }
    }
}

/// A request being traced (`KARST_LOG=karst::requests=trace`): each request and how
/// long its answer took, to tell a client waiting on Karst from one waiting on itself.
struct Traced {
    api: karst_protocol::kafka_protocol::messages::ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: String,
    at: std::time::Instant,
}

impl Traced {
    /// Logs the request and starts its clock, when requests are traced.
    fn start(req: &karst_protocol::codec::Request, peer: SocketAddr) -> Option<Self> {
        if !tracing::enabled!(target: "karst::requests", tracing::Level::TRACE) {
            return None;
        }
        let t = Traced {
            api: req.api_key,
            version: req.version,
            correlation_id: req.correlation_id,
            client_id: req.client_id.as_ref().map_or_else(String::new, |c| c.to_string()),
            at: std::time::Instant::now(),
        };
        tracing::trace!(target: "karst::requests", %peer, api = ?t.api, version = t.version, correlation_id = t.correlation_id, client_id = %t.client_id, "request");
        Some(t)
    }

    async fn answered(self, pending: Pending, peer: SocketAddr) -> (bool, Result<Option<Frames>, String>) {
        let (exclusive, done) = pending.await;
        let outcome = match &done {
            Ok(Some(_)) => "answered",
            Ok(None) => "no answer (acks=0)",
            Err(_) => "failed",
        };
        tracing::trace!(
            target: "karst::requests",
            %peer,
            api = ?self.api,
            correlation_id = self.correlation_id,
            client_id = %self.client_id,
            elapsed_ms = self.at.elapsed().as_millis() as u64,
            "{outcome}"
        );
        (exclusive, done)
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(wr: &mut BufWriter<W>, frames: &Frames) -> std::io::Result<()> {
    for f in frames {
        wr.write_all(f).await?;
    }
    wr.flush().await
}
