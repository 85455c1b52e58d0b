//! Shared by the in-process API tests: a broker on a loopback port and a raw client.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use karst_broker::{serve, Broker, BrokerConfig};
use karst_protocol::codec::{decode_response, encode_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Client {
    stream: TcpStream,
    next: i32,
}

impl Client {
    /// Sends one request and decodes its response; panics naming the API and version.
    pub async fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        self.next += 1;
        let frame = encode_request(key, version, self.next, "sweep", &body).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
        self.stream.write_all(&frame).await.expect("write");
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.unwrap_or_else(|e| panic!("{key:?} v{version}: connection closed: {e}"));
        let mut buf = BytesMut::zeroed(i32::from_be_bytes(len) as usize);
        self.stream.read_exact(&mut buf).await.expect("body");
        let (corr, resp) = decode_response(key, version, buf.freeze()).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
        assert_eq!(corr, self.next, "{key:?} v{version}: correlation id");
        resp
    }
}

/// Opens a broker on a fresh directory (with `tweak` applied to its config) and connects.
pub async fn start(tweak: impl FnOnce(&mut BrokerConfig)) -> (tempfile::TempDir, Arc<Broker>, Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BrokerConfig { data_dir: dir.path().to_path_buf(), ..Default::default() };
    tweak(&mut config);
    let broker = Broker::open(config).expect("open");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    broker.set_advertised("127.0.0.1".into(), addr.port() as i32);
    tokio::spawn(serve(broker.clone(), listener, std::future::pending()));
    let stream = TcpStream::connect(addr).await.expect("connect");
    (dir, broker, Client { stream, next: 0 })
}
