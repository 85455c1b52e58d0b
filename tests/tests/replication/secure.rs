//! A three-broker cluster whose brokers reach each other over SASL_SSL (PLAIN, the
//! broker principal a super user) and whose controllers talk TLS with client
//! certificates, under the replication checker (kill -9 and pause of leaders); and
//! what a process without the broker credentials gets: no TLS session with the
//! controllers, no SASL session without the password, and TOPIC_AUTHORIZATION_FAILED
//! for a follower fetch as an ordinary user.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc as StdArc;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{BrokerId, FetchRequest, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::Request;
use karst_tests::certs::TestCa;
use karst_tests::raw::{decode_response, request_frame, topic_name};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::*;

const JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="broker-secret" user_broker="broker-secret" user_mallory="mallory-secret";"#;

struct Secure {
    brokers: Vec<Broker>,
    ca: TestCa,
    internal: Vec<SocketAddr>,
    controllers: Vec<SocketAddr>,
}

fn start_secure() -> Result<Secure> {
    let ca = TestCa::new()?;
    let keystore = ca.server("broker", "karst-broker")?;
    let ports = karst_tests::cluster::free_ports(6)?;
    let (client, internal) = (&ports[..3], &ports[3..]);
    let truststore = ca.ca_file();
    let brokers = karst_tests::cluster::start_cluster(3, |i| {
        let mut args = vec!["--listen".to_string(), format!("CLIENT://127.0.0.1:{},INTERNAL://127.0.0.1:{}", client[i], internal[i])];
        for set in [
            "listener.security.protocol.map=CLIENT:PLAINTEXT,INTERNAL:SASL_SSL,CONTROLLER:SSL".to_string(),
            "inter.broker.listener.name=INTERNAL".into(),
            "sasl.enabled.mechanisms=PLAIN".into(),
            "sasl.mechanism.inter.broker.protocol=PLAIN".into(),
            format!("listener.name.internal.plain.sasl.jaas.config={JAAS}"),
            "ssl.keystore.type=PEM".into(),
            format!("ssl.keystore.location={}", keystore.display()),
            "ssl.truststore.type=PEM".into(),
            format!("ssl.truststore.location={}", truststore.display()),
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
            // The brokers' principal, and the tests' PLAINTEXT door.
            "super.users=User:broker;User:ANONYMOUS".into(),
            "broker.session.timeout.ms=3000".into(),
            "replica.lag.time.max.ms=3000".into(),
        ] {
            args.extend(["--set".to_string(), set]);
        }
        args
    })?;
    let controllers = brokers
        .iter()
        .map(|b| {
            let log = std::fs::read_to_string(b.stderr_log()).unwrap_or_default();
            let addr = log
                .lines()
                .find_map(|l| l.split("local_addr=").nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_string))
                .context("the controller's address in the log")?;
            addr.parse::<SocketAddr>().context("the controller's address")
        })
        .collect::<Result<_>>()?;
    let at = |p: &u16| SocketAddr::from(([127, 0, 0, 1], *p));
    Ok(Secure { brokers, ca, internal: internal.iter().map(at).collect(), controllers })
}

/// A TLS client (checking the broker against the test CA) speaking Kafka frames.
struct TlsKafka {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    correlation: i32,
}

fn tls_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<StdArc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(StdArc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(StdArc::new(match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
        }
        None => builder.with_no_client_auth(),
    }))
}

impl TlsKafka {
    fn connect(addr: SocketAddr, config: StdArc<rustls::ClientConfig>) -> Result<TlsKafka> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        let conn = rustls::ClientConnection::new(config, ServerName::try_from("127.0.0.1")?.to_owned())?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsKafka { stream, correlation: 0 })
    }

    fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        self.correlation += 1;
        let frame = request_frame(req, version, self.correlation, StrBytes::from_static_str("mallory"))?;
        self.stream.write_all(&frame)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        self.stream.read_exact(&mut body)?;
        decode_response::<R::Response>(body.into(), version, self.correlation)
    }

    /// SASL/PLAIN: the SaslAuthenticate error code.
    fn plain(&mut self, user: &str, password: &str) -> Result<i16> {
        let h = self.send(&SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")), 1)?;
        ensure!(h.error_code == 0, "SaslHandshake: {}", h.error_code);
        let token = format!("\0{user}\0{password}").into_bytes();
        Ok(self.send(&SaslAuthenticateRequest::default().with_auth_bytes(token.into()), 2)?.error_code)
    }
}

#[test]
fn brokers_over_sasl_ssl_and_controllers_over_mtls_survive_the_checker_and_shut_out_strangers() -> Result<()> {
    let Secure { mut brokers, ca, internal, controllers } = start_secure()?;
    let topic = unique_topic("secure-replicated");
    create_rf3(&brokers[0], &topic)?;
    settled(&brokers, &topic, 3).context("followers in every ISR over SASL_SSL")?;
    let log = std::fs::read_to_string(brokers[0].stderr_log()).unwrap_or_default();
    ensure!(log.contains("controller quorum transport: TLS with client certificates"), "the quorum runs over TLS");

    // Strangers first. The controllers: plain TCP, or TLS without a certificate the
    // CA signed, gets no session (so no vote, no proposal, no broker registration).
    let mut plain = TcpStream::connect(controllers[0])?;
    plain.set_read_timeout(Some(Duration::from_secs(15)))?;
    let envelope = br#"{"cluster_id":"","from":9,"to":1,"request":"DescribeQuorum"}"#;
    let mut frame = (envelope.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(envelope);
    let _ = plain.write_all(&frame);
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    ensure!(!String::from_utf8_lossy(&answer).contains("Membership"), "a plain TCP peer is answered nothing");
    let rogue = TestCa::new()?;
    let (cert, key) = rogue.client("rogue-broker")?;
    let with_rogue_cert = tls_config(&ca.ca_file(), Some((&cert, &key)))?;
    // A session: the handshake, then a frame sent and four bytes of an answer read
    // (with TLS 1.3 a refused client certificate shows at the first read).
    let session = |addr: SocketAddr, config: StdArc<rustls::ClientConfig>| -> Result<()> {
        let mut c = TlsKafka::connect(addr, config)?;
        c.stream.write_all(&frame)?;
        let mut b = [0u8; 4];
        c.stream.read_exact(&mut b)?;
        Ok(())
    };
    ensure!(session(controllers[0], with_rogue_cert).is_err(), "a certificate from another CA gets no controller session");
    let without_cert = tls_config(&ca.ca_file(), None)?;
    ensure!(session(controllers[1], without_cert.clone()).is_err(), "no client certificate, no controller session");
    let refused = brokers.iter().any(|b| {
        std::fs::read_to_string(b.stderr_log()).unwrap_or_default().contains("refusing controller connection: TLS handshake failed")
    });
    ensure!(refused, "the controllers log the refused handshakes");

    // The inter-broker listener: a wrong password is refused; an ordinary user claiming
    // to be broker 2's replica gets TOPIC_AUTHORIZATION_FAILED (no CLUSTER_ACTION).
    let lead = settled(&brokers, &topic, 3)?;
    let leader = lead[&0].0 as usize - 1;
    let mut wrong = TlsKafka::connect(internal[leader], without_cert.clone())?;
    ensure!(wrong.plain("broker", "not-the-password")? == 58, "a wrong broker password: SASL_AUTHENTICATION_FAILED");
    let mut mallory = TlsKafka::connect(internal[leader], without_cert.clone())?;
    ensure!(mallory.plain("mallory", "mallory-secret")? == 0, "mallory is a user");
    let follower_id = ((leader + 1) % 3 + 1) as i32;
    let fetch = FetchRequest::default()
        .with_replica_state(ReplicaState::default().with_replica_id(BrokerId(follower_id)).with_replica_epoch(-1))
        .with_max_wait_ms(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(&topic))
            .with_topic_id(RawClient::connect(brokers[0].addr())?.topic_id(&topic)?)
            .with_partitions(vec![FetchPartition::default().with_partition(0).with_partition_max_bytes(1 << 20)])]);
    let r = mallory.send(&fetch, 15)?;
    let code = r.responses.first().and_then(|t| t.partitions.first()).map(|p| p.error_code);
    ensure!(code == Some(29), "a follower fetch as mallory: TOPIC_AUTHORIZATION_FAILED, got {code:?}");

    // The checker, under kill -9 and pause of leaders.
    let load = Load::start(&brokers, &topic);
    load.acked_at_least(500)?;
    let lead = settled(&brokers, &topic, 3)?;
    let victim = (lead[&0].0 - 1) as usize;
    brokers[victim].kill9()?;
    let before = load.acked.lock().unwrap().len();
    load.acked_at_least(before + 500).context("producing on after kill -9 of a leader")?;
    brokers[victim].restart()?;
    settled(&brokers, &topic, 3).context("the killed broker back in every ISR over SASL_SSL")?;
    let lead = settled(&brokers, &topic, 3)?;
    let paused = (lead[&1].0 - 1) as usize;
    brokers[paused].signal("STOP")?;
    let before = load.acked.lock().unwrap().len();
    let during = load.acked_at_least(before + 500).context("producing on while a leader is paused");
    brokers[paused].signal("CONT")?;
    during?;
    settled(&brokers, &topic, 3).context("the paused broker back in every ISR")?;
    let before = load.acked.lock().unwrap().len();
    load.acked_at_least(before + 300)?;
    let (sent, acked, errs) = load.finish()?;
    check(&mut brokers, &topic, sent, &acked, &errs)?;
    let divergent = stop_and_compare_replicas(&mut brokers, &topic)?;
    ensure!(divergent.is_empty(), "replicas differ for partitions {divergent:?}");
    Ok(())
}
