//! Client quotas: set and described with Kafka's `kafka-configs` (AlterClientQuotas,
//! DescribeClientQuotas, kept in the quorum); a producer and a consumer over their
//! byte rates answered with throttle_time_ms and muted for it (KIP-219), confluent-kafka
//! told so through its throttle callback; another client id untouched; bad quota
//! requests refused with Kafka's errors.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, DescribeClientQuotasRequest, FetchRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use karst_tests::java::run_kafka_tool;
use karst_tests::raw::{produce_request, record_batch, topic_name, RawClient};
use karst_tests::{python_script, run_checked, show_output, unique_topic, Broker};

const TIMEOUT: Duration = Duration::from_secs(60);
const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";

fn kafka_configs(bootstrap: &str, args: &[&str]) -> Result<String> {
    let out = run_kafka_tool(CONFIGS, &[&["--bootstrap-server", bootstrap], args].concat(), TIMEOUT)?;
    ensure!(out.status.success(), "kafka-configs {}\n{}", args.join(" "), show_output(&out));
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Produces one batch of `size` bytes as `client`; the response's throttle time.
fn produce(c: &mut RawClient, topic: &str, size: usize) -> Result<i32> {
    let value = vec![b'x'; size];
    let r: ProduceResponse = c.send(&produce_request(topic, 0, record_batch(&[(None, Some(&value))], 0)), 9)?;
    let code = r.responses.first().and_then(|t| t.partition_responses.first()).map(|p| p.error_code);
    ensure!(code == Some(0), "produce: {code:?}");
    Ok(r.throttle_time_ms)
}

fn fetch(c: &mut RawClient, topic: &str, offset: i64) -> Result<(i32, usize, i64)> {
    let req = FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(100).with_max_bytes(50 << 20).with_topics(vec![
        FetchTopic::default().with_topic(topic_name(topic)).with_partitions(vec![FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(50 << 20)]),
    ]);
    let r = c.send(&req, 11)?;
    let p = r.responses.first().and_then(|t| t.partitions.first()).context("no partition in the fetch")?;
    ensure!(p.error_code == 0, "fetch: {}", p.error_code);
    let records = p.records.clone().unwrap_or_default();
    let mut bytes = records.clone();
    let batches = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).unwrap_or_default();
    let last = batches.iter().flat_map(|s| s.records.iter()).map(|r| r.offset).max().unwrap_or(offset - 1);
    Ok((r.throttle_time_ms, records.len(), last + 1))
}

#[test]
fn clients_over_their_byte_rates_are_throttled_and_told_and_others_are_not() -> Result<()> {
    let broker = Broker::start(&[])?;
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("quota");
    RawClient::connect(broker.addr())?.create_topic(&topic, 1, &[])?;

    // Kafka's tool sets and describes quotas; bad values get Kafka's answers.
    kafka_configs(
        &bootstrap,
        &[
            "--alter",
            "--entity-type",
            "clients",
            "--entity-name",
            "slow",
            "--add-config",
            "producer_byte_rate=50000,consumer_byte_rate=50000",
        ],
    )?;
    kafka_configs(&bootstrap, &["--alter", "--entity-type", "users", "--entity-default", "--add-config", "request_percentage=200"])?;
    let described = kafka_configs(&bootstrap, &["--describe", "--entity-type", "clients", "--entity-name", "slow"])?;
    ensure!(
        described.contains("producer_byte_rate=50000.0") && described.contains("consumer_byte_rate=50000.0"),
        "kafka-configs --describe:\n{described}"
    );
    let users = kafka_configs(&bootstrap, &["--describe", "--entity-type", "users", "--entity-default"])?;
    ensure!(users.contains("request_percentage=200.0"), "the default user's quota:\n{users}");
    let refused = |args: &[&str]| -> Result<String> {
        let out = run_kafka_tool(CONFIGS, &[&["--bootstrap-server", bootstrap.as_str(), "--alter"], args].concat(), TIMEOUT)?;
        ensure!(!out.status.success(), "kafka-configs --alter {} was taken", args.join(" "));
        Ok(show_output(&out))
    };
    let said = refused(&["--entity-type", "clients", "--entity-name", "x", "--add-config", "producer_byte_rate=1.5"])?;
    ensure!(said.contains("cannot be a fractional value"), "{said}");
    refused(&["--entity-type", "ips", "--entity-name", "not-an-ip", "--add-config", "connection_creation_rate=5"])
        .context("an ip quota for something that is no address")?;

    // DescribeClientQuotas filters are checked as Kafka checks them.
    let mut admin = RawClient::connect(broker.addr())?;
    let component = |kind: &str, match_type: i8, m: Option<&str>| {
        ComponentData::default()
            .with_entity_type(StrBytes::from_string(kind.into()))
            .with_match_type(match_type)
            .with_match(m.map(|s| StrBytes::from_string(s.into())))
    };
    for (components, code) in [
        (vec![component("group", 2, None)], 35),
        (vec![component("client-id", 0, None)], 42),
        (vec![component("client-id", 1, Some("x"))], 42),
        (vec![component("ip", 2, None), component("user", 2, None)], 42),
        (vec![component("user", 2, None), component("user", 1, None)], 42),
    ] {
        let r = admin.send(&DescribeClientQuotasRequest::default().with_components(components), 1)?;
        ensure!(r.error_code == code, "DescribeClientQuotas filter: {} (wanted {code})", r.error_code);
    }
    let r = admin.send(
        &DescribeClientQuotasRequest::default().with_components(vec![component("client-id", 0, Some("slow"))]).with_strict(true),
        1,
    )?;
    ensure!(r.entries.as_ref().is_some_and(|e| e.len() == 1 && e[0].values.len() == 2), "exact match: {:?}", r.entries);

    // A producer over 50 kB/s: answered with a throttle time, then muted that long.
    let mut slow = RawClient::connect(broker.addr())?;
    slow.set_client_id("slow");
    let mut fast = RawClient::connect(broker.addr())?;
    fast.set_client_id("fast");
    // 500 kB (the quota over its 10 s window) go at once; then each 100 kB more
    // asks for another 2 s.
    let mut throttle = 0;
    for _ in 0..20 {
        throttle = produce(&mut slow, &topic, 100_000)?;
        ensure!(produce(&mut fast, &topic, 100_000)? == 0, "another client id is not throttled");
        if throttle >= 1000 {
            break;
        }
    }
    ensure!(throttle >= 1000, "the producer over its quota is told to wait: {throttle} ms");
    let muted_at = Instant::now();
    let next = produce(&mut slow, &topic, 10)?;
    let waited = muted_at.elapsed();
    ensure!(
        waited >= Duration::from_millis(throttle as u64 * 9 / 10),
        "the connection is muted for the throttle: {waited:?} of {throttle} ms"
    );
    ensure!(produce(&mut fast, &topic, 10)? == 0, "the other client still goes at once");
    println!("producer throttled {throttle} ms, next answer after {waited:?}; next throttle {next} ms");

    // A consumer over 50 kB/s: one response holds at most what the quota allows over
    // its window (500 kB); the next is throttled.
    let mut reader = RawClient::connect(broker.addr())?;
    reader.set_client_id("slow");
    let (mut offset, mut fetch_throttle) = (0, 0);
    for _ in 0..6 {
        let (t, bytes, next) = fetch(&mut reader, &topic, offset)?;
        ensure!(bytes <= 500_000 + 110_000, "one response within the quota's window: {bytes} bytes");
        offset = next;
        if t > 0 {
            fetch_throttle = t;
            break;
        }
    }
    ensure!(fetch_throttle > 0, "the consumer over its quota is told to wait");
    let m = karst_tests::metrics::scrape(&broker)?;
    ensure!(m.value_or_zero("karst_throttled_requests_total", &[("quota", "produce")]) > 0.0, "produce throttles are counted");
    ensure!(m.value_or_zero("karst_throttled_requests_total", &[("quota", "fetch")]) > 0.0, "fetch throttles are counted");

    // confluent-kafka reports the throttle through its callback.
    let topic2 = unique_topic("quota-confluent");
    RawClient::connect(broker.addr())?.create_topic(&topic2, 1, &[])?;
    let out = run_checked(
        Command::new("python3")
            .arg(python_script("quota_throttle.py"))
            .args([&bootstrap, &topic2, "slow", "200", "2000"])
            .stdin(Stdio::null()),
        Duration::from_secs(200),
    )?;
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).context("quota_throttle.py output")?;
    ensure!(said["delivered"] == 200 && said["read"] == 200, "everything delivered and read under the quota: {said}");
    ensure!(said["producer_throttles"].as_u64() > Some(0), "librdkafka's throttle_cb saw the producer's throttle: {said}");
    ensure!(said["consumer_throttles"].as_u64() > Some(0), "and the consumer's: {said}");

    // Removed: no more throttling.
    kafka_configs(
        &bootstrap,
        &["--alter", "--entity-type", "clients", "--entity-name", "slow", "--delete-config", "producer_byte_rate,consumer_byte_rate"],
    )?;
    let described = kafka_configs(&bootstrap, &["--describe", "--entity-type", "clients", "--entity-name", "slow"])?;
    ensure!(!described.contains("producer_byte_rate"), "deleted:\n{described}");
    let mut free = RawClient::connect(broker.addr())?;
    free.set_client_id("slow");
    ensure!(produce(&mut free, &topic, 100_000)? == 0, "without the quota, no throttle");
    Ok(())
}

/// CreateTopics of one topic at `version`: its error code and the throttle time.
fn create(c: &mut RawClient, version: i16, name: &str, partitions: i32) -> Result<(i16, i32)> {
    let topic = CreatableTopic::default().with_name(topic_name(name)).with_num_partitions(partitions).with_replication_factor(1);
    let r = c.send(&CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(10_000), version)?;
    Ok((r.topics.first().map_or(-1, |t| t.error_code), r.throttle_time_ms))
}

#[test]
fn topic_mutations_over_the_controller_mutation_rate_are_refused_or_throttled() -> Result<()> {
    let broker = Broker::start(&[])?;
    let bootstrap = broker.bootstrap();
    kafka_configs(
        &bootstrap,
        &["--alter", "--entity-type", "clients", "--entity-name", "provisioner", "--add-config", "controller_mutation_rate=2"],
    )?;
    let mut c = RawClient::connect(broker.addr())?;
    c.set_client_id("provisioner");
    // A burst of 11 s at 2 partitions/s: 30 partitions are taken, leaving the bucket 8 short.
    ensure!(create(&mut c, 7, &unique_topic("burst"), 30)? == (0, 0), "the burst is taken");
    let (code, throttle) = create(&mut c, 7, &unique_topic("refused"), 1)?;
    ensure!(code == 89 && throttle > 3000, "THROTTLING_QUOTA_EXCEEDED while the bucket is below zero: {code}, {throttle} ms");
    let mut other = RawClient::connect(broker.addr())?;
    other.set_client_id("someone-else");
    ensure!(create(&mut other, 7, &unique_topic("other"), 5)? == (0, 0), "another client id has no quota");
    // CreateTopics v5 does not know the error: taken, and throttled.
    let started = Instant::now();
    let (code, throttle) = create(&mut c, 5, &unique_topic("old-version"), 1)?;
    ensure!(code == 0 && throttle > 0, "an old version is taken and throttled: {code}, {throttle} ms");
    ensure!(
        started.elapsed() >= Duration::from_millis(2500),
        "the refused request's throttle muted the connection: {:?}",
        started.elapsed()
    );
    let m = karst_tests::metrics::scrape(&broker)?;
    ensure!(
        m.value_or_zero("karst_throttled_requests_total", &[("quota", "controller_mutation")]) >= 2.0,
        "mutation throttles are counted"
    );
    Ok(())
}

#[test]
fn connections_over_an_ips_creation_rate_are_held_then_closed() -> Result<()> {
    let broker = Broker::start(&[])?;
    let addr = broker.addr();
    // Kafka's tool names the ip; its own connections count too.
    kafka_configs(
        &broker.bootstrap(),
        &["--alter", "--entity-type", "ips", "--entity-name", "127.0.0.1", "--add-config", "connection_creation_rate=2"],
    )?;
    let described = kafka_configs(&broker.bootstrap(), &["--describe", "--entity-type", "ips", "--entity-name", "127.0.0.1"]);
    // 2/s over the 10 s window: some twenty connections go; then one is held unanswered
    // (at most a second) and closed.
    let mut served = 0;
    let mut refused = None;
    for _ in 0..40 {
        let mut c = RawClient::connect(addr)?;
        match c.api_versions() {
            Ok(_) => served += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    ensure!(refused.is_some() && served <= 22, "a connection over the rate is closed unanswered (served {served})");
    let log = std::fs::read_to_string(broker.stderr_log()).unwrap_or_default();
    ensure!(log.contains("connection_creation_rate of its ip exceeded"), "the refusal is logged");
    let m = karst_tests::metrics::scrape(&broker)?;
    ensure!(m.value_or_zero("karst_throttled_requests_total", &[("quota", "connection_creation")]) >= 1.0, "and counted");
    // As the window moves on, connections are served again.
    karst_tests::wait_until("a connection served again", Duration::from_secs(30), || {
        RawClient::connect(addr).and_then(|mut c| c.api_versions().map(|_| ())).is_ok()
    })?;
    ensure!(described.is_ok_and(|d| d.contains("connection_creation_rate=2")), "kafka-configs describes the ip quota");
    Ok(())
}

#[test]
fn the_karst_cli_sets_lists_and_deletes_quotas() -> Result<()> {
    let broker = Broker::start(&[])?;
    let karst = |args: &[&str]| -> Result<std::process::Output> {
        karst_tests::run_command(
            Command::new(karst_tests::karst_bin()?).args(args).args(["-b", &broker.bootstrap()]).stdin(Stdio::null()),
            TIMEOUT,
        )
    };
    let ok = |args: &[&str]| -> Result<String> {
        let out = karst(args)?;
        ensure!(out.status.success(), "karst {}\n{}", args.join(" "), show_output(&out));
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    };
    ok(&["quota", "set", "--user", "alice", "--client-id", "app", "producer_byte_rate=1048576", "consumer_byte_rate=2097152"])?;
    ok(&["quota", "set", "--default-user", "request_percentage=150"])?;
    ok(&["quota", "set", "--ip", "127.0.0.1", "connection_creation_rate=20"])?;
    let listed = ok(&["quota", "list"])?;
    for want in [
        "user=alice,client-id=app\tconsumer_byte_rate=2097152,producer_byte_rate=1048576",
        "user=<default>\trequest_percentage=150",
        "ip=127.0.0.1\tconnection_creation_rate=20",
    ] {
        ensure!(listed.contains(want), "karst quota list lacks {want:?}:\n{listed}");
    }
    let refused = karst(&["quota", "set", "--client-id", "x", "producer_byte_rate=-5"])?;
    ensure!(!refused.status.success() && show_output(&refused).contains("must be greater than 0"), "{}", show_output(&refused));
    let refused = karst(&["quota", "set", "--ip", "127.0.0.1", "producer_byte_rate=5"])?;
    ensure!(!refused.status.success() && show_output(&refused).contains("Invalid configuration key"), "{}", show_output(&refused));
    ok(&["quota", "delete", "--user", "alice", "--client-id", "app", "producer_byte_rate"])?;
    let listed = ok(&["quota", "list", "--output", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&listed)?;
    let alice =
        v["quotas"].as_array().and_then(|q| q.iter().find(|e| e["entity"] == "user=alice,client-id=app")).cloned().unwrap_or_default();
    ensure!(alice["values"] == serde_json::json!({"consumer_byte_rate": 2097152.0}), "after the delete: {listed}");
    Ok(())
}
