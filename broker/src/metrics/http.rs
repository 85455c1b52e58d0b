//! The admin HTTP listener: `/metrics`, `/health/live`, `/health/ready`.
//!
//! HTTP/1 only, on the broker's runtime. It is built so that no admin client
//! can take from Kafka clients: bounded header size, no request bodies, a
//! header read timeout, a lifetime per connection, a cap on concurrent
//! connections, and rendering on a blocking thread.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::collect::{readiness, StateCollector};
use super::families;
use crate::broker::Broker;

/// Request head bytes hyper buffers at most (its minimum); a larger head gets 431.
const MAX_HEAD_BYTES: usize = 8192;
const MAX_HEADERS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this long, keep-alive or not.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Concurrent admin connections; further ones are closed at once.
const MAX_CONNECTIONS: usize = 32;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds the admin listener, naming the key in the error.
pub async fn bind_admin(addr: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| format!("cannot bind admin.listener {addr}: {e}"))
}

/// The running admin endpoint. It serves from the moment it is bound (liveness
/// during log recovery); readiness and state metrics wait for [`Admin::set_broker`].
#[derive(Debug, Clone)]
pub struct Admin {
    broker: Arc<OnceLock<Arc<Broker>>>,
}

impl Admin {
    /// Starts serving `listener` on the current runtime until it stops.
    pub fn start(listener: TcpListener) -> Admin {
        let admin = Admin { broker: Arc::new(OnceLock::new()) };
        tokio::spawn(serve(admin.clone(), listener));
        admin
    }

    /// The broker is open: report on it.
    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }
}

async fn serve(broker: Admin, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "admin: too many connections; closing");
            continue;
        };
        let b = broker.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| route(b.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, "admin connection closed: {e}"),
                Err(_) => debug!(%peer, "admin connection closed after its lifetime"),
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body)
}

async fn route(b: Admin, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if karst_storage::faults::ENABLED && req.uri().path() == "/failpoints" {
        return Ok(failpoints(&req));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n"));
    }
    let has_body = req.headers().contains_key(TRANSFER_ENCODING)
        || req.headers().get(CONTENT_LENGTH).is_some_and(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) != Some(0));
    if has_body {
        return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "request bodies are not accepted\n"));
    }
    let r = match req.uri().path() {
        "/metrics" => {
            let openmetrics =
                req.headers().get_all(ACCEPT).iter().any(|v| v.to_str().is_ok_and(|s| s.contains("application/openmetrics-text")));
            match tokio::task::spawn_blocking(move || render(b, openmetrics)).await {
                Ok(Ok(text)) => reply(StatusCode::OK, if openmetrics { OPENMETRICS_TEXT } else { PROMETHEUS_TEXT }, text),
                Ok(Err(e)) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render metrics: {e}\n")),
                Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render metrics: {e}\n")),
            }
        }
        "/health/live" => plain(StatusCode::OK, "live\n"),
        "/health/ready" => {
            match b.broker.get().map_or(Err("starting: recovering logs and joining the controller quorum".into()), |b| readiness(b)) {
                Ok(()) => plain(StatusCode::OK, "ready\n"),
                Err(why) => plain(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
            }
        }
        _ => plain(StatusCode::NOT_FOUND, "not found; try /metrics, /health/live or /health/ready\n"),
    };
    Ok(r)
}

/// The exposition: the hot-path families, then the state read now.
/// `PUT /failpoints?<specification>`, in test builds only (cargo feature
/// `failpoints`): switches storage fault injection in the running broker (see
/// `karst_storage::faults` for the percent-encoded specification).
fn failpoints(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::PUT {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only PUT\n");
    }
    let Some(spec) = percent_decode(req.uri().query().unwrap_or_default()) else {
        return plain(StatusCode::BAD_REQUEST, "bad percent-encoding\n");
    };
    match karst_storage::faults::configure(&spec) {
        Ok(()) => {
            warn!(spec, "fault injection changed through the admin endpoint");
            plain(StatusCode::OK, "ok\n")
        }
        Err(e) => plain(StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(c) = bytes.next() {
        match c {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            c => out.push(c),
        }
    }
    String::from_utf8(out).ok()
}

fn render(b: Admin, openmetrics: bool) -> Result<String, std::fmt::Error> {
    let mut state = Registry::default();
    if let Some(broker) = b.broker.get() {
        state.register_collector(Box::new(StateCollector { broker: broker.clone() }));
    }
    let mut out = String::with_capacity(16 * 1024);
    if openmetrics {
        text::encode_registry(&mut out, &families().registry)?;
        text::encode_registry(&mut out, &state)?;
        text::encode_eof(&mut out)?;
    } else {
        prometheus_text::encode(&mut out, &families().registry)?;
        prometheus_text::encode(&mut out, &state)?;
    }
    Ok(out)
}
