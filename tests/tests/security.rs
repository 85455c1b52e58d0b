//! TLS and SASL listeners: real clients (kcat, confluent-kafka, Kafka's own tools)
//! over SSL, SASL_SSL with SCRAM-SHA-512, SASL_PLAINTEXT with PLAIN and mTLS; wrong
//! credentials and hostile input refused with Kafka's errors, without harm to other
//! connections; certificates reloaded when their files change. The certificates are
//! made by the tests ([`karst_tests::certs`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use kafka_protocol::messages::{MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use karst_broker::security::scram::{ScramClient, ScramHash};
use karst_tests::certs::TestCa;
use karst_tests::cluster::free_ports;
use karst_tests::java::run_kafka_tool;
use karst_tests::raw::{RawClient, ReadOutcome};
use karst_tests::{python_script, run_checked, show_output, unique_topic, wait_for, Broker};

const TIMEOUT: Duration = Duration::from_secs(60);
const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_bob="bob-secret";"#;

/// A broker with a PLAINTEXT listener (first: inter-broker, and the tests' admin
/// door), then SSL, SASL_SSL, SASL_PLAINTEXT and an mTLS one (SSL requiring a client
/// certificate).
struct Secured {
    broker: Broker,
    ca: TestCa,
    ssl: SocketAddr,
    sasl_ssl: SocketAddr,
    sasl_plain: SocketAddr,
    mtls: SocketAddr,
}

fn secured(extra: &[&str]) -> Result<Secured> {
    let ca = TestCa::new()?;
    let keystore = ca.server("server", "karst-broker")?;
    let p = free_ports(5)?;
    let listen = format!(
        "INTERNAL://127.0.0.1:{},SSL://127.0.0.1:{},SASL_SSL://127.0.0.1:{},SASL_PLAINTEXT://127.0.0.1:{},MTLS://127.0.0.1:{}",
        p[0], p[1], p[2], p[3], p[4]
    );
    let sets = [
        "listener.security.protocol.map=INTERNAL:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,MTLS:SSL".to_string(),
        "ssl.keystore.type=PEM".to_string(),
        format!("ssl.keystore.location={}", keystore.display()),
        "ssl.truststore.type=PEM".to_string(),
        format!("ssl.truststore.location={}", ca.ca_file().display()),
        "listener.name.mtls.ssl.client.auth=required".to_string(),
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".to_string(),
        format!("listener.name.sasl_ssl.plain.sasl.jaas.config={JAAS}"),
        format!("listener.name.sasl_plaintext.plain.sasl.jaas.config={JAAS}"),
    ];
    let mut args: Vec<String> = vec!["--listen".into(), listen];
    for s in sets {
        args.push("--set".into());
        args.push(s);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = Broker::start(&args)?;
    let at = |i: usize| SocketAddr::from(([127, 0, 0, 1], p[i]));
    Ok(Secured { broker, ssl: at(1), sasl_ssl: at(2), sasl_plain: at(3), mtls: at(4), ca })
}

/// Kafka's kafka-configs creates a SCRAM user (AlterUserScramCredentials).
fn add_scram_user(bootstrap: &str, user: &str, mechanism: &str, password: &str) -> Result<()> {
    let config = format!("{mechanism}=[iterations=8192,password={password}]");
    let out = run_kafka_tool(
        CONFIGS,
        &["--bootstrap-server", bootstrap, "--alter", "--add-config", &config, "--entity-type", "users", "--entity-name", user],
        TIMEOUT,
    )?;
    ensure!(out.status.success(), "kafka-configs --alter --entity-type users\n{}", show_output(&out));
    Ok(())
}

/// kcat with `settings` (`-X` pairs): produces `lines` to `topic`, then reads them back.
fn kcat_roundtrip(bootstrap: &str, topic: &str, settings: &[String]) -> Result<()> {
    let x: Vec<String> = settings.iter().flat_map(|s| ["-X".to_string(), s.clone()]).collect();
    let lines: Vec<String> = (0..50).map(|i| format!("line-{i}")).collect();
    // The tests' environment may point the loader at the librdkafka the rdkafka crate
    // built (without OpenSSL): kcat gets the system's, with it.
    let mut child = Command::new("kcat")
        .env_remove("LD_LIBRARY_PATH")
        .args(["-b", bootstrap, "-t", topic, "-P", "-X", "acks=all", "-X", "message.timeout.ms=30000"])
        .args(&x)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning kcat")?;
    {
        let mut stdin = child.stdin.take().context("kcat stdin")?;
        for l in &lines {
            writeln!(stdin, "{l}")?;
        }
    }
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "kcat -P failed: {}", String::from_utf8_lossy(&out.stderr));
    let out = run_checked(
        Command::new("kcat")
            .env_remove("LD_LIBRARY_PATH")
            .args(["-b", bootstrap, "-t", topic, "-C", "-o", "beginning", "-e", "-q"])
            .args(&x)
            .stdin(Stdio::null()),
        TIMEOUT,
    )?;
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    ensure!(got == lines, "kcat read back {} of {} lines", got.len(), lines.len());
    Ok(())
}

/// Kafka's console producer and consumer with SCRAM-SHA-512 over SASL_SSL.
fn java_console_roundtrip(bootstrap: &str, ca: &Path, user: &str, password: &str) -> Result<()> {
    let props = format!(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
         sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{user}\" password=\"{password}\";\n\
         ssl.truststore.type=PEM\nssl.truststore.location={}\n",
        ca.display()
    );
    java_console_with(bootstrap, &props, "")
}

/// Kafka's console producer and consumer with the client `properties`, the JVM given
/// `java_options` (system properties) too.
fn java_console_with(bootstrap: &str, properties: &str, java_options: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let props = dir.path().join("client.properties");
    std::fs::write(&props, properties)?;
    let props = props.display().to_string();
    let topic = unique_topic("secure-java");
    let lines: Vec<String> = (0..20).map(|i| format!("java-{i}")).collect();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, lines.join("\n") + "\n")?;
    let mut cmd = karst_tests::java::java_command("org.apache.kafka.tools.ConsoleProducer")?;
    cmd.env("JAVA_TOOL_OPTIONS", java_options)
        .args(["--bootstrap-server", bootstrap, "--topic", &topic, "--producer.config", &props, "--producer-property", "acks=all"])
        .stdin(std::fs::File::open(&input)?);
    let out = karst_tests::run_command(&mut cmd, TIMEOUT)?;
    ensure!(out.status.success(), "console producer\n{}", show_output(&out));
    let mut cmd = karst_tests::java::java_command("org.apache.kafka.tools.consumer.ConsoleConsumer")?;
    cmd.env("JAVA_TOOL_OPTIONS", java_options).args([
        "--bootstrap-server",
        bootstrap,
        "--topic",
        &topic,
        "--from-beginning",
        "--max-messages",
        "20",
        "--consumer.config",
        &props,
        "--timeout-ms",
        "60000",
    ]);
    let out = karst_tests::run_command(&mut cmd, Duration::from_secs(120))?;
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("java-")).map(str::to_string).collect();
    ensure!(got == lines, "the console consumer read {} of 20\n{}", got.len(), show_output(&out));
    Ok(())
}

/// A mode of the franz-go program (tests/go/franz/secure.go) that must print `want`;
/// skipped, saying why, without a Go toolchain new enough for the module.
fn franz_mode(args: &[&str], want: &str) -> Result<()> {
    let bin = match karst_tests::go_module_binary("franz") {
        Ok(b) => b,
        Err(e) if karst_tests::ClientUnavailable::of(&e).is_some() => {
            println!("franz-go skipped: {e:#}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let out = run_checked(Command::new(bin).args(args).stdin(Stdio::null()), Duration::from_secs(120))?;
    let said = String::from_utf8_lossy(&out.stdout);
    ensure!(said.contains(want), "franz-go {}:\n{said}", args[0]);
    Ok(())
}

/// franz-go's `secure` mode: SASL_SSL with SCRAM-SHA-512, a wrong password refused.
fn franz_secure(bootstrap: &str, ca: &Path, user: &str, password: &str) -> Result<()> {
    let topic = unique_topic("scram-franz");
    franz_mode(&["secure", bootstrap, &topic, user, password, &ca.display().to_string()], "OK a wrong password is refused")
}

/// The rdkafka crate over SASL_PLAINTEXT with PLAIN: 30 records produced (acks=all)
/// and read back; a wrong password gets no delivery.
fn rdkafka_plain(bootstrap: &str, topic: &str, broker: &Broker) -> Result<()> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::Message;
    RawClient::connect(broker.addr())?.create_topic(topic, 1, &[])?;
    let config = |password: &str| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanisms", "PLAIN")
            .set("sasl.username", "bob")
            .set("sasl.password", password);
        c
    };
    let producer: ThreadedProducer<DefaultProducerContext> =
        config("bob-secret").set("acks", "all").set("message.timeout.ms", "30000").create()?;
    for i in 0..30 {
        producer.send(BaseRecord::<(), str>::to(topic).payload(&format!("rd-{i}"))).map_err(|(e, _)| anyhow!("enqueue: {e}"))?;
    }
    producer.flush(Duration::from_secs(30))?;
    let consumer: BaseConsumer =
        config("bob-secret").set("group.id", unique_topic("rd-plain")).set("auto.offset.reset", "earliest").create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while got.len() < 30 && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            got.push(String::from_utf8_lossy(m?.payload().unwrap_or_default()).to_string());
        }
    }
    ensure!(
        got == (0..30).map(|i| format!("rd-{i}")).collect::<Vec<_>>(),
        "the rdkafka crate read {} of 30 over SASL_PLAINTEXT",
        got.len()
    );
    let wrong: ThreadedProducer<DefaultProducerContext> = config("not-bobs").create()?;
    let refused = wrong.client().fetch_metadata(Some(topic), Duration::from_secs(10));
    ensure!(refused.is_err(), "a wrong password gets no metadata");
    println!("the rdkafka crate with a wrong password: {:?}", refused.err());
    Ok(())
}

/// confluent-kafka with `security` (JSON): `roundtrip` or `refused`.
fn confluent(bootstrap: &str, security: &serde_json::Value, mode: &str) -> Result<String> {
    let out = run_checked(
        Command::new("python3")
            .arg(python_script("secure_roundtrip.py"))
            .args([bootstrap, &security.to_string(), mode])
            .stdin(Stdio::null()),
        Duration::from_secs(120),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn clients_connect_over_ssl_sasl_ssl_with_scram_sasl_plain_and_mtls() -> Result<()> {
    let s = secured(&[])?;
    let ca = s.ca.ca_file().display().to_string();
    add_scram_user(&s.broker.bootstrap(), "alice", "SCRAM-SHA-512", "alice-secret")?;

    // SSL: kcat and confluent-kafka, verifying the broker's certificate and name.
    let ssl = s.ssl.to_string();
    kcat_roundtrip(&ssl, &unique_topic("ssl-kcat"), &["security.protocol=SSL".into(), format!("ssl.ca.location={ca}")])?;
    let said = confluent(&ssl, &serde_json::json!({"security.protocol": "SSL", "ssl.ca.location": ca}), "roundtrip")?;
    ensure!(said.starts_with("roundtrip:"), "{said}");

    // SASL_SSL with SCRAM-SHA-512, the user made by kafka-configs.
    let scram = serde_json::json!({
        "security.protocol": "SASL_SSL", "ssl.ca.location": ca,
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "alice", "sasl.password": "alice-secret",
    });
    let said = confluent(&s.sasl_ssl.to_string(), &scram, "roundtrip")?;
    ensure!(said.starts_with("roundtrip:"), "{said}");
    let scram_kcat = [
        "security.protocol=SASL_SSL".to_string(),
        format!("ssl.ca.location={ca}"),
        "sasl.mechanisms=SCRAM-SHA-512".into(),
        "sasl.username=alice".into(),
        "sasl.password=alice-secret".into(),
    ];
    kcat_roundtrip(&s.sasl_ssl.to_string(), &unique_topic("scram-kcat"), &scram_kcat)?;
    let mut wrong = scram.clone();
    wrong["sasl.password"] = "not-her-password".into();
    let said = confluent(&s.sasl_ssl.to_string(), &wrong, "refused")?;
    ensure!(said.contains("refused"), "{said}");

    // The Java client (Kafka's console producer and consumer) over SASL_SSL with
    // SCRAM-SHA-512 and a PEM truststore.
    java_console_roundtrip(&s.sasl_ssl.to_string(), &s.ca.ca_file(), "alice", "alice-secret")?;

    // franz-go over SASL_SSL with SCRAM-SHA-512 (and a wrong password refused).
    franz_secure(&s.sasl_ssl.to_string(), &s.ca.ca_file(), "alice", "alice-secret")?;

    // SASL_PLAINTEXT with PLAIN, users from the listener's JAAS config.
    let plain = serde_json::json!({
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN", "sasl.username": "bob", "sasl.password": "bob-secret",
    });
    let said = confluent(&s.sasl_plain.to_string(), &plain, "roundtrip")?;
    ensure!(said.starts_with("roundtrip:"), "{said}");
    // The rdkafka crate (its librdkafka is built without OpenSSL: SASL_PLAINTEXT/PLAIN).
    rdkafka_plain(&s.sasl_plain.to_string(), &unique_topic("plain-rdkafka"), &s.broker)?;

    // mTLS: a client certificate from the CA is let in, a connection without one is not.
    let (cert, key) = s.ca.client("carol")?;
    let mtls = serde_json::json!({
        "security.protocol": "SSL", "ssl.ca.location": ca,
        "ssl.certificate.location": cert.display().to_string(), "ssl.key.location": key.display().to_string(),
    });
    let said = confluent(&s.mtls.to_string(), &mtls, "roundtrip")?;
    ensure!(said.starts_with("roundtrip:"), "{said}");
    // kcat, franz-go and the Java client over mTLS too.
    let mtls_kcat = [
        "security.protocol=SSL".to_string(),
        format!("ssl.ca.location={ca}"),
        format!("ssl.certificate.location={}", cert.display()),
        format!("ssl.key.location={}", key.display()),
    ];
    kcat_roundtrip(&s.mtls.to_string(), &unique_topic("mtls-kcat"), &mtls_kcat)?;
    franz_mode(
        &["mtls", &s.mtls.to_string(), &unique_topic("mtls-franz"), &ca, &cert.display().to_string(), &key.display().to_string()],
        "OK a client without a certificate is refused",
    )?;
    let java_keystore = s.ca.dir().join("carol-keystore.pem");
    std::fs::write(&java_keystore, std::fs::read_to_string(&key)? + &std::fs::read_to_string(&cert)?)?;
    let props = format!(
        "security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={ca}\nssl.keystore.type=PEM\nssl.keystore.location={}\n",
        java_keystore.display()
    );
    java_console_with(&s.mtls.to_string(), &props, "").context("the Java client over mTLS")?;
    let said = confluent(&s.mtls.to_string(), &serde_json::json!({"security.protocol": "SSL", "ssl.ca.location": ca}), "refused")?;
    ensure!(said.contains("refused"), "{said}");
    let log = std::fs::read_to_string(s.broker.stderr_log()).unwrap_or_default();
    ensure!(log.contains("TLS handshake failed"), "the refused handshake is logged with its reason");
    Ok(())
}

/// A raw SASL exchange on `addr`: handshake then the tokens, each answered.
fn handshake(c: &mut RawClient, mechanism: &str, version: i16) -> Result<(i16, Vec<String>)> {
    let r = c.send(&SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.to_string())), version)?;
    Ok((r.error_code, r.mechanisms.iter().map(|m| m.to_string()).collect()))
}

fn authenticate(c: &mut RawClient, token: Vec<u8>) -> Result<(i16, Vec<u8>, i64)> {
    let r = c.send(&SaslAuthenticateRequest::default().with_auth_bytes(token.into()), 2)?;
    Ok((r.error_code, r.auth_bytes.to_vec(), r.session_lifetime_ms))
}

fn metadata_ok(c: &mut RawClient) -> bool {
    c.send(&MetadataRequest::default().with_topics(Some(vec![])), 12).is_ok()
}

fn scram_login(addr: SocketAddr, user: &str, password: &str) -> Result<(RawClient, i64)> {
    let mut c = RawClient::connect(addr)?;
    ensure!(handshake(&mut c, "SCRAM-SHA-256", 1)?.0 == 0);
    let mut client = ScramClient::new(ScramHash::Sha256, user, password);
    let (code, server_first, _) = authenticate(&mut c, client.first())?;
    ensure!(code == 0, "client-first: {code}");
    let (code, server_final, lifetime) = authenticate(&mut c, client.last(&server_first).map_err(|e| anyhow!(e.0))?)?;
    ensure!(code == 0, "client-final: {code}");
    ensure!(client.verify(&server_final), "the broker proves it holds the credential");
    Ok((c, lifetime))
}

#[test]
fn sasl_and_tls_refusals_get_kafkas_errors_and_harm_no_other_connection() -> Result<()> {
    let s = secured(&["--set", "listener.name.sasl_plaintext.connections.max.reauth.ms=3000"])?;
    add_scram_user(&s.broker.bootstrap(), "dave", "SCRAM-SHA-256", "dave-secret")?;
    let addr = s.sasl_plain;
    // A client that authenticated first, kept open through everything below.
    let (mut good, lifetime) = scram_login(addr, "dave", "dave-secret")?;
    ensure!(lifetime > 0 && lifetime <= 3000, "KIP-368: the session lifetime is reported ({lifetime} ms)");

    // Before authenticating: ApiVersions is answered, anything else closes.
    let mut c = RawClient::connect(addr)?;
    c.api_versions()?;
    ensure!(!metadata_ok(&mut c), "Metadata before authenticating closes the connection");

    // A mechanism not enabled: UNSUPPORTED_SASL_MECHANISM with the enabled ones, then closed.
    let mut c = RawClient::connect(addr)?;
    let (code, names) = handshake(&mut c, "GSSAPI", 1)?;
    ensure!(code == UNSUPPORTED_SASL_MECHANISM && names == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], "{code} {names:?}");
    ensure!(!metadata_ok(&mut c), "closed after the refusal");

    // PLAIN with a wrong password: SASL_AUTHENTICATION_FAILED, then closed.
    let mut c = RawClient::connect(addr)?;
    ensure!(handshake(&mut c, "PLAIN", 1)?.0 == 0);
    let (code, _, _) = authenticate(&mut c, b"\0bob\0wrong".to_vec())?;
    ensure!(code == SASL_AUTHENTICATION_FAILED, "wrong password: {code}");
    ensure!(!metadata_ok(&mut c));

    // SCRAM with a tampered nonce, an unknown user, a wrong password; SaslAuthenticate
    // before any handshake.
    let mut c = RawClient::connect(addr)?;
    handshake(&mut c, "SCRAM-SHA-256", 1)?;
    let mut client = ScramClient::new(ScramHash::Sha256, "dave", "dave-secret");
    let (_, first, _) = authenticate(&mut c, client.first())?;
    let last = String::from_utf8(client.last(&first).map_err(|e| anyhow!(e.0))?)?.replacen(",r=", ",r=forged", 1);
    ensure!(authenticate(&mut c, last.into_bytes())?.0 == SASL_AUTHENTICATION_FAILED, "a forged nonce");
    let mut c = RawClient::connect(addr)?;
    handshake(&mut c, "SCRAM-SHA-256", 1)?;
    ensure!(authenticate(&mut c, ScramClient::new(ScramHash::Sha256, "nobody", "x").first())?.0 == SASL_AUTHENTICATION_FAILED);
    ensure!(scram_login(addr, "dave", "wrong").is_err(), "a wrong SCRAM password");
    let mut c = RawClient::connect(addr)?;
    ensure!(authenticate(&mut c, b"\0bob\0bob-secret".to_vec())?.0 == ILLEGAL_SASL_STATE, "SaslAuthenticate before SaslHandshake");
    // An oversized token: the frame limit closes the connection.
    let mut c = RawClient::connect(addr)?;
    handshake(&mut c, "PLAIN", 1)?;
    ensure!(authenticate(&mut c, vec![b'x'; 105 * 1024 * 1024]).is_err(), "a 105 MB token is refused");

    // SaslHandshake v0 (sarama's default): the PLAIN token comes bare and is answered bare.
    let mut c = RawClient::connect(addr)?;
    ensure!(handshake(&mut c, "PLAIN", 0)?.0 == 0);
    let token = b"\0bob\0bob-secret";
    let mut frame = (token.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(token);
    c.write_raw(&frame)?;
    match c.read_frame()? {
        ReadOutcome::Frame(answer) => ensure!(answer.is_empty(), "an empty token answers a v0 PLAIN login, got {} bytes", answer.len()),
        other => bail!("no answer to a v0 PLAIN token: {other:?}"),
    }
    ensure!(metadata_ok(&mut c), "authenticated through v0");

    // A SASL request on the PLAINTEXT listener: ILLEGAL_SASL_STATE, as Kafka answers.
    let mut c = RawClient::connect(s.broker.addr())?;
    ensure!(handshake(&mut c, "PLAIN", 1)?.0 == ILLEGAL_SASL_STATE);

    // TLS garbage and a truncated handshake on the SSL listener: closed.
    let mut t = TcpStream::connect(s.ssl)?;
    t.set_read_timeout(Some(Duration::from_secs(20)))?;
    t.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3])?;
    t.write_all(b"GET / HTTP/1.1\r\n\r\n")?;
    let mut sink = Vec::new();
    ensure!(t.read_to_end(&mut sink).map(|_| true).unwrap_or(true), "garbage is answered with a TLS alert at most, then closed");
    let mut t = TcpStream::connect(s.ssl)?;
    t.write_all(&[0x16, 0x03, 0x01])?;
    drop(t);

    // SCRAM credentials described and refused as Kafka does (on the PLAINTEXT listener).
    scram_admin_errors(s.broker.addr())?;

    // The authenticated client saw none of it.
    ensure!(metadata_ok(&mut good), "the first client still works");
    // KIP-368: re-authenticating on the same connection renews the session; without
    // it, the first request after the session ends closes the connection.
    ensure!(handshake(&mut good, "SCRAM-SHA-256", 1)?.0 == 0, "re-authentication starts with a handshake");
    let mut client = ScramClient::new(ScramHash::Sha256, "dave", "dave-secret");
    let (_, first, _) = authenticate(&mut good, client.first())?;
    let (code, _, renewed) = authenticate(&mut good, client.last(&first).map_err(|e| anyhow!(e.0))?)?;
    ensure!(code == 0 && renewed > 0, "re-authenticated: {code}, lifetime {renewed}");
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(renewed as u64 + 200) {
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(!metadata_ok(&mut good), "a request after the session ended closes the connection");
    let log = std::fs::read_to_string(s.broker.stderr_log()).unwrap_or_default();
    ensure!(log.contains("SASL session expired"), "the expiry is logged");
    ensure!(scram_login(addr, "dave", "dave-secret").is_ok(), "a new connection logs in");
    Ok(())
}

/// DescribeUserScramCredentials and AlterUserScramCredentials: what is kept and
/// Kafka's per-user errors.
fn scram_admin_errors(addr: SocketAddr) -> Result<()> {
    use kafka_protocol::messages::alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
    use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
    use kafka_protocol::messages::{AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest};
    let mut c = RawClient::connect(addr)?;
    let name = |n: &str| StrBytes::from_string(n.to_string());
    let all = c.send(&DescribeUserScramCredentialsRequest::default().with_users(None), 0)?;
    let dave = all.results.iter().find(|r| r.user.as_str() == "dave").context("dave is described")?;
    ensure!(
        dave.credential_infos.iter().map(|i| (i.mechanism, i.iterations)).collect::<Vec<_>>() == [(1, 8192)],
        "SCRAM-SHA-256 with kafka-configs' 8192 iterations: {dave:?}"
    );
    let users = vec![UserName::default().with_name(name("dave")), UserName::default().with_name(name("nobody"))];
    let named = c.send(&DescribeUserScramCredentialsRequest::default().with_users(Some(users)), 0)?;
    let codes: Vec<(String, i16)> = named.results.iter().map(|r| (r.user.to_string(), r.error_code)).collect();
    ensure!(codes == [("dave".to_string(), 0), ("nobody".to_string(), 91)], "RESOURCE_NOT_FOUND for an unknown user: {codes:?}");
    let twice = vec![UserName::default().with_name(name("dave")), UserName::default().with_name(name("dave"))];
    let dup = c.send(&DescribeUserScramCredentialsRequest::default().with_users(Some(twice)), 0)?;
    ensure!(dup.results.iter().all(|r| r.error_code == 92), "DUPLICATE_RESOURCE: {dup:?}");
    let up = |user: &str, mechanism: i8, iterations: i32| {
        ScramCredentialUpsertion::default()
            .with_name(name(user))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(bytes::Bytes::from_static(b"salt-salt"))
            .with_salted_password(bytes::Bytes::from(vec![7u8; 32]))
    };
    let req = AlterUserScramCredentialsRequest::default()
        .with_upsertions(vec![up("few", 1, 100), up("many", 1, 20_000), up("odd", 9, 4096), up("", 1, 4096)])
        .with_deletions(vec![ScramCredentialDeletion::default().with_name(name("ghost")).with_mechanism(2)]);
    let r = c.send(&req, 0)?;
    let codes: std::collections::BTreeMap<String, i16> = r.results.iter().map(|r| (r.user.to_string(), r.error_code)).collect();
    let expected: std::collections::BTreeMap<String, i16> =
        [("few", 93), ("many", 93), ("odd", 33), ("", 93), ("ghost", 91)].into_iter().map(|(u, c)| (u.to_string(), c)).collect();
    ensure!(codes == expected, "Kafka's errors per user: {codes:?}");
    let after = c.send(&DescribeUserScramCredentialsRequest::default().with_users(None), 0)?;
    ensure!(after.results.len() == all.results.len(), "nothing refused was stored");
    Ok(())
}

/// The DER of the certificate `addr` serves, through a client trusting `ca`.
fn served_certificate(addr: SocketAddr, ca: &Path) -> Result<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1")?.to_owned())?;
    let mut sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    let certs = conn.peer_certificates().context("no server certificate")?;
    Ok(certs.first().context("empty chain")?.as_ref().to_vec())
}

#[test]
fn a_listeners_certificate_is_reloaded_when_its_file_changes() -> Result<()> {
    let s = secured(&[])?;
    let before = served_certificate(s.ssl, &s.ca.ca_file())?;
    // The same file, a new key and certificate (renewed): served from the next
    // connection on, without a restart.
    s.ca.server("server", "karst-broker-renewed")?;
    let after = wait_for("the renewed certificate to be served", TIMEOUT, || {
        served_certificate(s.ssl, &s.ca.ca_file()).ok().filter(|c| *c != before)
    })?;
    ensure!(after != before);
    // A file that does not load is not taken: the renewed certificate stays.
    std::fs::write(s.ca.dir().join("server.pem"), "not a certificate")?;
    std::thread::sleep(Duration::from_millis(1500));
    let still = served_certificate(s.ssl, &s.ca.ca_file())?;
    ensure!(still == after, "a broken file leaves the last good certificate in use");
    let log = std::fs::read_to_string(s.broker.stderr_log()).unwrap_or_default();
    ensure!(log.contains("reloaded") && log.contains("does not load"), "both are logged");
    Ok(())
}

#[test]
fn a_listener_whose_certificate_does_not_load_stops_start_up_naming_the_setting() -> Result<()> {
    let p = free_ports(2)?;
    let listen = format!("INTERNAL://127.0.0.1:{},SSL://127.0.0.1:{}", p[0], p[1]);
    let args = [
        "--listen",
        &listen,
        "--set",
        "listener.security.protocol.map=INTERNAL:PLAINTEXT,SSL:SSL",
        "--set",
        "ssl.keystore.location=/nonexistent/server.pem",
    ];
    match Broker::start(&args) {
        Ok(_) => bail!("a broker with a missing keystore started"),
        Err(e) => {
            let text = format!("{e:#}");
            ensure!(text.contains("listener SSL") && text.contains("/nonexistent/server.pem"), "{text}");
        }
    }
    Ok(())
}

/// `kafka-acls` (Kafka's tool) against `bootstrap`.
fn kafka_acls(bootstrap: &str, args: &[&str]) -> Result<String> {
    let out = run_kafka_tool("org.apache.kafka.tools.AclCommand", &[&["--bootstrap-server", bootstrap], args].concat(), TIMEOUT)?;
    ensure!(out.status.success(), "kafka-acls {}\n{}", args.join(" "), show_output(&out));
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// confluent-kafka as `user` doing `actions` (see tests/python/acl_check.py).
fn as_user(bootstrap: &str, user: &str, password: &str, actions: &[&str]) -> Result<serde_json::Value> {
    let security = serde_json::json!({
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN", "sasl.username": user, "sasl.password": password,
    });
    let out = run_checked(
        Command::new("python3")
            .arg(python_script("acl_check.py"))
            .args([bootstrap, &security.to_string(), &serde_json::json!(actions).to_string()])
            .stdin(Stdio::null()),
        Duration::from_secs(180),
    )?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// As alice (PLAIN): an OffsetCommit to group g-ok for her topic and another, then
/// OffsetFetch of all and of the other one.
fn offsets_per_topic(sasl: &str, orders: &str, secret: &str) -> Result<()> {
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
    let mut c = RawClient::connect(sasl.parse()?)?;
    ensure!(handshake(&mut c, "PLAIN", 1)?.0 == 0);
    ensure!(authenticate(&mut c, b"\0alice\0alice-secret".to_vec())?.0 == 0);
    let topic = |t: &str| {
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(t.to_string())))
            .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1)])
    };
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g-ok")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![topic(orders), topic(secret)]);
    let r = c.send(&req, 8)?;
    let codes: Vec<(String, i16)> = r.topics.iter().map(|t| (t.name.to_string(), t.partitions[0].error_code)).collect();
    ensure!(codes == [(orders.to_string(), 0), (secret.to_string(), 29)], "OffsetCommit per topic: {codes:?}");
    let all = c.send(&OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g-ok"))).with_topics(None), 7)?;
    let listed: Vec<String> = all.topics.iter().map(|t| t.name.to_string()).collect();
    ensure!(listed == [orders.to_string()], "OffsetFetch of all lists the describable topics: {listed:?}");
    let named = OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g-ok"))).with_topics(Some(vec![
        OffsetFetchRequestTopic::default().with_name(TopicName(StrBytes::from_string(secret.to_string()))).with_partition_indexes(vec![0]),
    ]));
    let r = c.send(&named, 7)?;
    ensure!(r.topics[0].partitions[0].error_code == 29, "OffsetFetch of another topic: {r:?}");
    // KIP-430: the operations alice's ACLs allow on her topic (READ 3, WRITE 4, DESCRIBE 8).
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let md = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(orders.to_string()))))]))
        .with_include_topic_authorized_operations(true);
    let r = c.send(&md, 12)?;
    ensure!(
        r.topics[0].topic_authorized_operations == (1 << 3) | (1 << 4) | (1 << 8),
        "authorized operations: {:b}",
        r.topics[0].topic_authorized_operations
    );
    Ok(())
}

/// A broker with the ACL authorizer: a PLAINTEXT listener (the tests' door: its
/// ANONYMOUS is the super user) and a SASL_PLAINTEXT one where alice and bob log in
/// with PLAIN. The broker and the SASL listener's address.
fn acl_broker() -> Result<(Broker, String)> {
    let p = free_ports(2)?;
    let listen = format!("INTERNAL://127.0.0.1:{},SASL_PLAINTEXT://127.0.0.1:{}", p[0], p[1]);
    let jaas = r#"listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret" user_bob="bob-secret";"#;
    let broker = Broker::start(&[
        "--listen",
        &listen,
        "--set",
        "listener.security.protocol.map=INTERNAL:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "--set",
        jaas,
        "--set",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "--set",
        "super.users=User:ANONYMOUS",
    ])?;
    Ok((broker, SocketAddr::from(([127, 0, 0, 1], p[1])).to_string()))
}

#[test]
fn acls_decide_what_each_principal_may_do() -> Result<()> {
    let (broker, sasl) = acl_broker()?;
    let admin = broker.bootstrap();
    let (orders, secret) = (unique_topic("orders"), unique_topic("secret"));
    let mut c = RawClient::connect(broker.addr())?;
    c.create_topic(&orders, 1, &[])?;
    c.create_topic(&secret, 1, &[])?;

    kafka_acls(&admin, &["--add", "--allow-principal", "User:alice", "--operation", "Write", "--topic", &orders])?;
    kafka_acls(&admin, &["--add", "--allow-principal", "User:alice", "--operation", "Read", "--topic", &orders, "--group", "g-ok"])?;
    let listed = kafka_acls(&admin, &["--list", "--topic", &orders])?;
    ensure!(listed.contains("User:alice") && listed.contains("WRITE") && listed.contains("READ"), "kafka-acls --list:\n{listed}");

    let produce_orders = format!("produce:{orders}");
    let produce_secret = format!("produce:{secret}");
    let consume_ok = format!("consume:{orders}:g-ok");
    let consume_other_group = format!("consume:{orders}:g-other");
    let alice = as_user(&sasl, "alice", "alice-secret", &[&produce_orders, &produce_secret, &consume_ok, &consume_other_group, "topics"])?;
    ensure!(alice[&produce_orders] == "ok", "alice may write to {orders}: {alice}");
    ensure!(alice[&produce_secret] == "TOPIC_AUTHORIZATION_FAILED", "alice may not write to {secret}: {alice}");
    ensure!(alice[&consume_ok] == "ok", "alice reads {orders} in g-ok: {alice}");
    ensure!(alice[&consume_other_group] == "GROUP_AUTHORIZATION_FAILED", "alice may not use g-other: {alice}");
    ensure!(alice["topics"] == serde_json::json!([orders]), "Metadata lists only what alice may describe: {alice}");
    let bob = as_user(&sasl, "bob", "bob-secret", &[&produce_orders])?;
    ensure!(bob[&produce_orders] == "TOPIC_AUTHORIZATION_FAILED", "bob has no ACL: {bob}");
    let m = karst_tests::metrics::scrape(&broker)?;
    ensure!(m.value_or_zero("karst_authorization_denied_total", &[("resource", "topic")]) > 0.0, "refusals are counted");
    ensure!(m.value_or_zero("karst_authorization_denied_total", &[("resource", "group")]) > 0.0, "group refusals too");

    // Per topic in the group APIs: alice commits and reads offsets of her topic only.
    offsets_per_topic(&sasl, &orders, &secret)?;

    // A deny wins over the allow; removing it gives the write back.
    kafka_acls(&admin, &["--add", "--deny-principal", "User:alice", "--operation", "Write", "--topic", &orders])?;
    let denied = as_user(&sasl, "alice", "alice-secret", &[&produce_orders])?;
    ensure!(denied[&produce_orders] == "TOPIC_AUTHORIZATION_FAILED", "the deny wins: {denied}");
    kafka_acls(&admin, &["--remove", "--force", "--deny-principal", "User:alice", "--operation", "Write", "--topic", &orders])?;
    let again = as_user(&sasl, "alice", "alice-secret", &[&produce_orders])?;
    ensure!(again[&produce_orders] == "ok", "the deny removed: {again}");

    // A principal without ALTER on the cluster cannot manage ACLs; ACL APIs without
    // an authorizer answer SECURITY_DISABLED.
    let plain = Broker::start(&[])?;
    let out = run_kafka_tool("org.apache.kafka.tools.AclCommand", &["--bootstrap-server", &plain.bootstrap(), "--list"], TIMEOUT)?;
    ensure!(!out.status.success() && show_output(&out).contains("No Authorizer is configured"), "{}", show_output(&out));
    Ok(())
}

#[test]
fn the_karst_cli_adds_lists_and_deletes_scram_users() -> Result<()> {
    let s = secured(&[])?;
    let karst = |args: &[&str]| -> Result<String> {
        let out = run_checked(
            Command::new(karst_tests::karst_bin()?).args(args).args(["-b", &s.broker.bootstrap()]).stdin(Stdio::null()),
            TIMEOUT,
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    };
    karst(&["user", "add", "erin", "--password", "erin-secret", "--mechanism", "SCRAM-SHA-256"])?;
    let listed = karst(&["user", "list"])?;
    ensure!(listed.contains("erin") && listed.contains("SCRAM-SHA-256 (iterations 8192)"), "karst user list:\n{listed}");
    scram_login(s.sasl_plain, "erin", "erin-secret").context("erin logs in with the password the CLI salted")?;
    karst(&["user", "delete", "erin", "--mechanism", "SCRAM-SHA-256"])?;
    ensure!(scram_login(s.sasl_plain, "erin", "erin-secret").is_err(), "deleted: no login");
    ensure!(!karst(&["user", "list"])?.contains("erin"));
    Ok(())
}

const ISSUER: &str = "https://issuer.karst.test";
const SECURED_VALIDATOR: &str = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler";

/// An identity provider for the tests: an ES256 key, its JWK set file (key id
/// `kid`), and signed tokens.
struct Issuer {
    _dir: tempfile::TempDir,
    key: jsonwebtoken::EncodingKey,
    kid: String,
    jwks: std::path::PathBuf,
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Issuer {
    fn new(kid: &str) -> Result<Issuer> {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|e| anyhow!("key: {e}"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).map_err(|e| anyhow!("key: {e}"))?;
        let point = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64url(&point[1..33]), "y": b64url(&point[33..])}]});
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("keys.jwks");
        std::fs::write(&file, jwks.to_string())?;
        Ok(Issuer { _dir: dir, key: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()), kid: kid.into(), jwks: file })
    }

    /// A token for `sub`, good for `life_s` seconds (negative: expired), with `claims` over the usual ones.
    fn token(&self, sub: &str, life_s: i64, claims: serde_json::Value) -> Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let mut body =
            serde_json::json!({"sub": sub, "iat": now_s() - 5, "exp": now_s() + life_s, "aud": "karst", "iss": ISSUER, "scope": "kafka"});
        for (k, v) in claims.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        Ok(jsonwebtoken::encode(&header, &body, &self.key)?)
    }
}

/// Kafka's unsecured development token: `alg: none`, no signature.
fn unsecured_token(sub: &str, life_s: i64) -> String {
    let claims = serde_json::json!({"sub": sub, "iat": now_s(), "exp": now_s() + life_s});
    format!("{}.{}.", b64url(br#"{"alg":"none"}"#), b64url(claims.to_string().as_bytes()))
}

/// The OAUTHBEARER client first message (RFC 7628).
fn bearer(authzid: &str, token: &str) -> Vec<u8> {
    let a = if authzid.is_empty() { String::new() } else { format!("a={authzid}") };
    format!("n,{a},\u{1}auth=Bearer {token}\u{1}\u{1}").into_bytes()
}

/// Logs in with OAUTHBEARER: Ok(the connection) or Err with what the broker said.
fn oauth_login(addr: SocketAddr, message: Vec<u8>) -> Result<RawClient, String> {
    let mut c = RawClient::connect(addr).map_err(|e| e.to_string())?;
    let (code, _) = handshake(&mut c, "OAUTHBEARER", 1).map_err(|e| e.to_string())?;
    if code != 0 {
        return Err(format!("handshake: {code}"));
    }
    let (code, bytes, _) = authenticate(&mut c, message).map_err(|e| e.to_string())?;
    match code {
        0 if bytes.is_empty() => Ok(c),
        // A challenge: the client acknowledges it and is refused with its text.
        0 => {
            let challenge = String::from_utf8_lossy(&bytes).to_string();
            let (code, _, _) = authenticate(&mut c, vec![1]).map_err(|e| e.to_string())?;
            let closed = c.expect_closed(Duration::from_secs(10)).is_ok();
            Err(format!("challenge {challenge} then code {code}, closed {closed}"))
        }
        code => {
            let closed = c.expect_closed(Duration::from_secs(10)).is_ok();
            Err(format!("code {code}, closed {closed}"))
        }
    }
}

fn topic_error(c: &mut RawClient, topic: &str) -> Result<i16> {
    let r = c.send(
        &MetadataRequest::default().with_topics(Some(vec![kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(karst_tests::raw::topic_name(topic)))])),
        12,
    )?;
    r.topics.first().map(|t| t.error_code).context("no topic in the answer")
}

#[test]
fn oauthbearer_tokens_are_checked_by_signature_or_taken_unsecured_from_every_client() -> Result<()> {
    let ca = TestCa::new()?;
    let keystore = ca.server("server", "karst-broker")?;
    let issuer = Issuer::new("k1")?;
    let rogue = Issuer::new("k1")?;
    let p = free_ports(4)?;
    let listen = format!("INTERNAL://127.0.0.1:{},OAUTH://127.0.0.1:{},JWT://127.0.0.1:{},JWTRAW://127.0.0.1:{}", p[0], p[1], p[2], p[3]);
    let mut sets = vec![
        "listener.security.protocol.map=INTERNAL:PLAINTEXT,OAUTH:SASL_PLAINTEXT,JWT:SASL_SSL,JWTRAW:SASL_PLAINTEXT".to_string(),
        "sasl.enabled.mechanisms=OAUTHBEARER".into(),
        "ssl.keystore.type=PEM".into(),
        format!("ssl.keystore.location={}", keystore.display()),
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
        "super.users=User:ANONYMOUS".into(),
    ];
    for l in ["jwt", "jwtraw"] {
        sets.push(format!("listener.name.{l}.oauthbearer.sasl.server.callback.handler.class={SECURED_VALIDATOR}"));
        sets.push(format!("listener.name.{l}.oauthbearer.sasl.oauthbearer.jwks.endpoint.url=file://{}", issuer.jwks.display()));
        sets.push(format!("listener.name.{l}.oauthbearer.sasl.oauthbearer.expected.audience=karst"));
        sets.push(format!("listener.name.{l}.oauthbearer.sasl.oauthbearer.expected.issuer={ISSUER}"));
    }
    let mut args: Vec<String> = vec!["--listen".into(), listen];
    for s in sets {
        args.extend(["--set".to_string(), s]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let broker = Broker::start(&args)?;
    let at = |i: usize| SocketAddr::from(([127, 0, 0, 1], p[i]));
    let (oauth, jwt, jwtraw) = (at(1), at(2), at(3));
    // alice may do anything with topics and groups; mallory nothing.
    kafka_acls(&broker.bootstrap(), &["--add", "--allow-principal", "User:alice", "--operation", "All", "--topic", "*", "--group", "*"])?;
    let log = std::fs::read_to_string(broker.stderr_log()).unwrap_or_default();
    ensure!(log.contains("OAUTHBEARER takes unsecured tokens"), "the unsecured listener is warned about");

    // Unsecured (development) tokens: kcat (librdkafka's unsecured JWT) and the Java
    // client (Kafka's unsecured login module).
    let unsecured_kcat = [
        "security.protocol=SASL_PLAINTEXT".to_string(),
        "sasl.mechanisms=OAUTHBEARER".into(),
        "enable.sasl.oauthbearer.unsecure.jwt=true".into(),
        "sasl.oauthbearer.config=principal=alice".into(),
    ];
    kcat_roundtrip(&oauth.to_string(), &unique_topic("oauth-kcat"), &unsecured_kcat)?;
    let props = "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n\
         sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"alice\";\n";
    java_console_with(&oauth.to_string(), props, "").context("the Java client with an unsecured token")?;

    // Signed tokens over SASL_SSL: confluent-kafka, franz-go and the Java client (a token file).
    let ca_file = ca.ca_file().display().to_string();
    let signed = |token: String| {
        serde_json::json!({"security.protocol": "SASL_SSL", "ssl.ca.location": ca_file, "sasl.mechanisms": "OAUTHBEARER",
            "oauth.token": token, "oauth.principal": "alice"})
    };
    let said = confluent(&jwt.to_string(), &signed(issuer.token("alice", 600, serde_json::json!({}))?), "roundtrip")?;
    ensure!(said.starts_with("roundtrip:"), "{said}");
    for (what, token) in [
        ("signed by another key", rogue.token("alice", 600, serde_json::json!({}))?),
        ("expired", issuer.token("alice", -120, serde_json::json!({}))?),
        ("unsecured", unsecured_token("alice", 600)),
    ] {
        let said = confluent(&jwt.to_string(), &signed(token), "refused")?;
        ensure!(said.contains("refused"), "a token {what}: {said}");
    }
    let good = issuer.token("alice", 600, serde_json::json!({}))?;
    let bad = rogue.token("alice", 600, serde_json::json!({}))?;
    franz_mode(&["oauth", &jwt.to_string(), &unique_topic("oauth-franz"), &good, &bad, &ca_file], "OK a bad token is refused")?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token.jwt");
    std::fs::write(&token_file, issuer.token("alice", 600, serde_json::json!({}))?)?;
    let props = format!(
        "security.protocol=SASL_SSL\nsasl.mechanism=OAUTHBEARER\n\
         sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;\n\
         sasl.login.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler\n\
         sasl.oauthbearer.token.endpoint.url=file://{}\nssl.truststore.type=PEM\nssl.truststore.location={ca_file}\n",
        token_file.display()
    );
    let allowed = format!(
        "-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=file://{0} -Dorg.apache.kafka.sasl.oauthbearer.allowed.files={0}",
        token_file.display()
    );
    java_console_with(&jwt.to_string(), &props, &allowed).context("the Java client with a signed token from a file")?;

    // Hostile and wrong tokens, by hand: each challenged with invalid_token, then
    // refused with SASL_AUTHENTICATION_FAILED and closed; an authenticated connection
    // goes on unharmed. The principal is the token's subject: mallory's valid token
    // gets mallory's (empty) rights.
    let mut good = oauth_login(jwtraw, bearer("", &issuer.token("alice", 600, serde_json::json!({}))?)).map_err(|e| anyhow!(e))?;
    let topic = unique_topic("oauth-acl");
    RawClient::connect(broker.addr())?.create_topic(&topic, 1, &[])?;
    ensure!(topic_error(&mut good, &topic)? == 0, "alice describes {topic}");
    let mut mallory = oauth_login(jwtraw, bearer("", &issuer.token("mallory", 600, serde_json::json!({}))?)).map_err(|e| anyhow!(e))?;
    ensure!(topic_error(&mut mallory, &topic)? == 29, "mallory gets TOPIC_AUTHORIZATION_FAILED");
    let challenged = format!("challenge {{\"status\":\"invalid_token\"}} then code {SASL_AUTHENTICATION_FAILED}, closed true");
    let refused_now = format!("code {SASL_AUTHENTICATION_FAILED}, closed true");
    let swapped = {
        let t = issuer.token("alice", 600, serde_json::json!({}))?;
        let parts: Vec<&str> = t.split('.').collect();
        let forged = serde_json::json!({"sub": "admin", "iat": now_s(), "exp": now_s() + 600, "aud": "karst", "iss": ISSUER});
        format!("{}.{}.{}", parts[0], b64url(forged.to_string().as_bytes()), parts[2])
    };
    let cases: Vec<(&str, Vec<u8>, &String)> = vec![
        ("expired", bearer("", &issuer.token("alice", -120, serde_json::json!({}))?), &challenged),
        ("signed by another key", bearer("", &rogue.token("alice", 600, serde_json::json!({}))?), &challenged),
        ("unsecured on a signed listener", bearer("", &unsecured_token("alice", 600)), &challenged),
        ("claims swapped under a signature", bearer("", &swapped), &challenged),
        ("another audience", bearer("", &issuer.token("alice", 600, serde_json::json!({"aud": "elsewhere"}))?), &challenged),
        ("another issuer", bearer("", &issuer.token("alice", 600, serde_json::json!({"iss": "https://evil.test"}))?), &challenged),
        ("no iat", bearer("", &issuer.token("alice", 600, serde_json::json!({"iat": null}))?), &challenged),
        ("garbage", b"n,,\x01auth=Bearer eyJ.eyJ.!\x01\x01".to_vec(), &refused_now),
        ("not a first message", vec![0xff; 64], &refused_now),
        ("a %x01 before any challenge", vec![1], &refused_now),
        ("an authzid that is not the token's subject", bearer("admin", &issuer.token("alice", 600, serde_json::json!({}))?), &refused_now),
    ];
    for (what, message, want) in cases {
        match oauth_login(jwtraw, message) {
            Ok(_) => bail!("a token {what} was accepted"),
            Err(said) => ensure!(&said == want, "a token {what}: {said}, wanted {want}"),
        }
    }
    ensure!(topic_error(&mut good, &topic)? == 0, "the authenticated connection goes on");
    let m = karst_tests::metrics::scrape(&broker)?;
    ensure!(m.value_or_zero("karst_authentication_failures_total", &[("mechanism", "OAUTHBEARER")]) >= 11.0, "refusals are counted");
    let log = std::fs::read_to_string(broker.stderr_log()).unwrap_or_default();
    ensure!(log.contains("OAUTHBEARER token refused"), "why a token was refused is logged");
    Ok(())
}

/// The current sarama (IBM, tests/go/sarama's `secure` mode) over SASL_SSL with
/// SCRAM-SHA-512 and with OAUTHBEARER, and over SSL with a client certificate; a wrong
/// password and a token from another key refused.
#[test]
fn sarama_connects_over_scram_oauthbearer_and_mtls() -> Result<()> {
    let bin = match karst_tests::go_module_binary("sarama") {
        Ok(b) => b,
        Err(e) if karst_tests::ClientUnavailable::of(&e).is_some() => {
            println!("sarama skipped: {e:#}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let ca = TestCa::new()?;
    let keystore = ca.server("server", "karst-broker")?;
    let issuer = Issuer::new("k1")?;
    let rogue = Issuer::new("k1")?;
    let p = free_ports(4)?;
    let listen = format!("INTERNAL://127.0.0.1:{},SCRAM://127.0.0.1:{},JWT://127.0.0.1:{},MTLS://127.0.0.1:{}", p[0], p[1], p[2], p[3]);
    let sets = [
        "listener.security.protocol.map=INTERNAL:PLAINTEXT,SCRAM:SASL_SSL,JWT:SASL_SSL,MTLS:SSL".to_string(),
        "ssl.keystore.type=PEM".into(),
        format!("ssl.keystore.location={}", keystore.display()),
        "ssl.truststore.type=PEM".into(),
        format!("ssl.truststore.location={}", ca.ca_file().display()),
        "listener.name.mtls.ssl.client.auth=required".into(),
        "listener.name.scram.sasl.enabled.mechanisms=SCRAM-SHA-512".into(),
        "listener.name.jwt.sasl.enabled.mechanisms=OAUTHBEARER".into(),
        format!("listener.name.jwt.oauthbearer.sasl.server.callback.handler.class={SECURED_VALIDATOR}"),
        format!("listener.name.jwt.oauthbearer.sasl.oauthbearer.jwks.endpoint.url={}", issuer.jwks.display()),
    ];
    let mut args: Vec<String> = vec!["--listen".into(), listen];
    for s in sets {
        args.extend(["--set".to_string(), s]);
    }
    let broker = Broker::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    add_scram_user(&broker.bootstrap(), "sam", "SCRAM-SHA-512", "sam-secret")?;
    let topic = unique_topic("sarama-secure");
    let mut admin = RawClient::connect(broker.addr())?;
    for suffix in ["scram", "oauth", "mtls"] {
        admin.create_topic(&format!("{topic}-{suffix}"), 1, &[])?;
    }
    let (cert, key) = ca.client("sarama")?;
    let at = |i: usize| SocketAddr::from(([127, 0, 0, 1], p[i])).to_string();
    let token = issuer.token("sam", 600, serde_json::json!({}))?;
    let bad = rogue.token("sam", 600, serde_json::json!({}))?;
    let out = run_checked(
        Command::new(bin)
            .args(["secure", &at(1), &at(2), &at(3), &topic, "sam", "sam-secret", &ca.ca_file().display().to_string(), &token, &bad])
            .args([cert.display().to_string(), key.display().to_string()])
            .stdin(Stdio::null()),
        Duration::from_secs(180),
    )?;
    let said = String::from_utf8_lossy(&out.stdout);
    for want in [
        "OK sarama produced and read back 50 records over SASL_SSL/SCRAM-SHA-512",
        "OK sarama produced and read back 50 records over SASL_SSL/OAUTHBEARER",
        "OK sarama produced and read back 50 records over SSL with a client certificate",
        "OK a wrong SCRAM password is refused",
        "OK a token signed by another key is refused",
    ] {
        ensure!(said.contains(want), "sarama secure lacks {want:?}:\n{said}");
    }
    Ok(())
}

/// The karst CLI with Kafka's client properties (`--command-config`): over SASL_SSL with
/// PLAIN and with SCRAM-SHA-512, over SSL; a wrong password is refused, naming it.
#[test]
fn the_karst_cli_speaks_tls_and_sasl_with_a_command_config() -> Result<()> {
    let s = secured(&[])?;
    add_scram_user(&s.broker.bootstrap(), "carol", "SCRAM-SHA-512", "carol-secret")?;
    let dir = tempfile::tempdir()?;
    let ca = s.ca.ca_file().display().to_string();
    let props = |name: &str, text: String| -> Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    };
    let jaas = |module: &str, user: &str, password: &str| {
        format!("sasl.jaas.config=org.apache.kafka.common.security.{module} required username=\"{user}\" password=\"{password}\";\n")
    };
    let plain = props(
        "plain.properties",
        format!("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nssl.truststore.type=PEM\nssl.truststore.location={ca}\n")
            + &jaas("plain.PlainLoginModule", "admin", "admin-secret"),
    )?;
    let scram = props(
        "scram.properties",
        format!("security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nssl.truststore.location={ca}\n")
            + &jaas("scram.ScramLoginModule", "carol", "carol-secret"),
    )?;
    let ssl = props("ssl.properties", format!("security.protocol=SSL\nssl.truststore.location={ca}\n"))?;
    let wrong = props(
        "wrong.properties",
        format!("security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nssl.truststore.location={ca}\n")
            + &jaas("scram.ScramLoginModule", "carol", "not-her-password"),
    )?;
    let karst = |addr: SocketAddr, config: &str, args: &[&str]| -> Result<std::process::Output> {
        karst_tests::run_command(
            Command::new(karst_tests::karst_bin()?)
                .args(args)
                .args(["-b", &addr.to_string(), "--command-config", config])
                .stdin(Stdio::null()),
            TIMEOUT,
        )
    };
    let topic = unique_topic("cli-secure");
    let out = karst(s.sasl_ssl, &plain, &["topic", "create", &topic, "--partitions", "2"])?;
    ensure!(out.status.success(), "karst topic create over SASL_SSL/PLAIN\n{}", show_output(&out));
    let out = karst(s.sasl_ssl, &scram, &["topic", "list"])?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&topic),
        "karst topic list over SCRAM\n{}",
        show_output(&out)
    );
    let out = karst(s.ssl, &ssl, &["topic", "describe", &topic])?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&topic),
        "karst topic describe over SSL\n{}",
        show_output(&out)
    );
    let out = karst(s.sasl_ssl, &wrong, &["topic", "list"])?;
    let said = show_output(&out);
    ensure!(
        !out.status.success() && said.contains("SASL") && said.to_ascii_lowercase().contains("authentication"),
        "a wrong password:\n{said}"
    );
    Ok(())
}

/// `karst acl add|list|remove` manages the ACLs that decide what alice may do.
#[test]
fn the_karst_cli_adds_lists_and_removes_acls() -> Result<()> {
    let (broker, sasl) = acl_broker()?;
    let topic = unique_topic("cli-acl");
    RawClient::connect(broker.addr())?.create_topic(&topic, 1, &[])?;
    let karst = |args: &[&str]| -> Result<String> {
        let out = run_checked(
            Command::new(karst_tests::karst_bin()?).args(args).args(["-b", &broker.bootstrap()]).stdin(Stdio::null()),
            TIMEOUT,
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    };
    let produce = format!("produce:{topic}");
    let before = as_user(&sasl, "alice", "alice-secret", &[&produce])?;
    ensure!(before[&produce] == "TOPIC_AUTHORIZATION_FAILED", "no ACL yet: {before}");
    karst(&["acl", "add", "--allow", "--principal", "User:alice", "--operation", "Write", "--operation", "Describe", "--topic", &topic])?;
    let listed = karst(&["acl", "list", "--topic", &topic])?;
    for want in
        [format!("Topic:literal:{topic}\tUser:alice\t*\tWrite\tAllow"), format!("Topic:literal:{topic}\tUser:alice\t*\tDescribe\tAllow")]
    {
        ensure!(listed.contains(&want), "karst acl list lacks {want:?}:\n{listed}");
    }
    let after = as_user(&sasl, "alice", "alice-secret", &[&produce])?;
    ensure!(after[&produce] == "ok", "alice writes with her ACL: {after}");
    let removed = karst(&["acl", "remove", "--principal", "User:alice", "--topic", &topic])?;
    ensure!(removed.contains("Removed 2 ACL(s)"), "{removed}");
    ensure!(karst(&["acl", "list"])?.trim().is_empty(), "no ACL left");
    let again = as_user(&sasl, "alice", "alice-secret", &[&produce])?;
    ensure!(again[&produce] == "TOPIC_AUTHORIZATION_FAILED", "removed: {again}");
    Ok(())
}
