//! A hostile Kafka peer: a loopback server that reads one request from each
//! connection and answers it with one kind of broken response, in turn. Started
//! with [`GarbageServer::start_after_handshake`] it first answers ApiVersions
//! properly, so the broken answer meets what a client reads after the handshake.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::BytesMut;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;

/// The broken answers, one per connection, in this order.
pub const KINDS: [&str; 7] = [
    "random bytes",
    "a 2 GiB size prefix, then silence",
    "a negative size prefix",
    "the request's correlation id, then random bytes",
    "another correlation id",
    "the request's correlation id, then zeros",
    "no answer at all",
];

#[derive(Default)]
struct State {
    handshake: bool,
    served: AtomicUsize,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

pub struct GarbageServer {
    addr: SocketAddr,
    state: Arc<State>,
}

impl GarbageServer {
    pub fn start() -> Result<GarbageServer> {
        GarbageServer::start_with(false)
    }

    /// Answers each connection's first request (ApiVersions) properly, then its
    /// second with the broken answer.
    pub fn start_after_handshake() -> Result<GarbageServer> {
        GarbageServer::start_with(true)
    }

    fn start_with(handshake: bool) -> Result<GarbageServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State { handshake, ..State::default() });
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    s.conns.lock().unwrap().push(c);
                }
                let n = s.served.fetch_add(1, Ordering::SeqCst);
                let handshake = s.handshake;
                std::thread::spawn(move || {
                    let _ = answer(conn, n, handshake);
                });
            }
        });
        Ok(GarbageServer { addr, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections answered so far.
    pub fn served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }
}

impl Drop for GarbageServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// xorshift: the bytes need not be good random numbers, only not a valid response.
fn noise(seed: usize, len: usize) -> Vec<u8> {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn read_request(conn: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut size = [0u8; 4];
    conn.read_exact(&mut size)?;
    let len = i32::from_be_bytes(size).clamp(0, 1 << 20) as usize;
    let mut request = vec![0u8; len];
    conn.read_exact(&mut request)?;
    Ok(request)
}

/// A valid ApiVersions response to `request` (at its version) offering the APIs
/// an admin client starts with.
fn api_versions(request: &[u8]) -> io::Result<Vec<u8>> {
    let version = request.get(2..4).map_or(0, |v| i16::from_be_bytes([v[0], v[1]])).clamp(0, 3);
    let correlation_id = request.get(4..8).map_or(0, |c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    let api = |key: ApiKey, max: i16| ApiVersion::default().with_api_key(key as i16).with_max_version(max);
    let resp = ApiVersionsResponse::default().with_api_keys(vec![
        api(ApiKey::ApiVersions, 3),
        api(ApiKey::Metadata, 12),
        api(ApiKey::CreateTopics, 7),
        api(ApiKey::DeleteTopics, 6),
        api(ApiKey::Produce, 9),
        api(ApiKey::Fetch, 12),
        api(ApiKey::ListOffsets, 6),
        api(ApiKey::FindCoordinator, 4),
        api(ApiKey::ListGroups, 4),
        api(ApiKey::DescribeGroups, 5),
        api(ApiKey::DescribeCluster, 0),
    ]);
    let mut body = BytesMut::new();
    let bad = |e: anyhow::Error| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    ResponseHeader::default().with_correlation_id(correlation_id).encode(&mut body, 0).map_err(bad)?;
    resp.encode(&mut body, version).map_err(bad)?;
    Ok([&(body.len() as i32).to_be_bytes()[..], &body].concat())
}

fn answer(mut conn: TcpStream, n: usize, handshake: bool) -> io::Result<()> {
    let mut request = read_request(&mut conn)?;
    if handshake {
        conn.write_all(&api_versions(&request)?)?;
        request = read_request(&mut conn)?;
    }
    let correlation = request.get(4..8).map_or([0; 4], |c| [c[0], c[1], c[2], c[3]]);
    let frame = |body: &[u8]| [&((body.len() + 4) as i32).to_be_bytes()[..], &correlation, body].concat();
    match n % KINDS.len() {
        0 => conn.write_all(&noise(n, 300))?,
        1 => conn.write_all(&i32::MAX.to_be_bytes())?,
        2 => conn.write_all(&(-5i32).to_be_bytes())?,
        3 => conn.write_all(&frame(&noise(n, 200)))?,
        4 => {
            let other = (i32::from_be_bytes(correlation).wrapping_add(7)).to_be_bytes();
            conn.write_all(&[&12i32.to_be_bytes()[..], &other, &[0; 8]].concat())?
        }
        5 => conn.write_all(&frame(&[0; 64]))?,
        _ => {}
    }
    // Hold the connection until the peer gives up on it.
    io::copy(&mut conn, &mut io::sink())?;
    Ok(())
}
