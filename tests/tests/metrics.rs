//! The admin endpoint: `/metrics` counters move by exactly what real clients
//! produced and consumed, ISR changes show under a paused follower, health
//! endpoints answer, and hostile admin clients do not disturb Kafka clients.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use karst_tests::cluster::start_cluster;
use karst_tests::metrics::{exchange, http_get, parse_exposition, Exposition};
use karst_tests::raw::RawClient;
use karst_tests::{unique_topic, wait_for, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);

fn admin(b: &Broker) -> Result<SocketAddr> {
    b.admin_addr().context("the broker printed no admin address")
}

fn scrape(addr: SocketAddr) -> Result<Exposition> {
    let r = http_get(addr, "/metrics", &[])?;
    ensure!(r.status == 200, "/metrics answered {}: {}", r.status, r.body);
    ensure!(r.header("content-type") == Some("text/plain; version=0.0.4; charset=utf-8"), "content type {:?}", r.header("content-type"));
    parse_exposition(&r.body)
}

/// Produces `n` records of `size` bytes each (acks=all) to partition 0.
fn produce(bootstrap: &str, topic: &str, n: usize, size: usize) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "none")
        .set("message.timeout.ms", "30000")
        .create()?;
    let payload = vec![b'x'; size];
    let pending: Vec<_> = (0..n)
        .map(|i| {
            producer
                .send_result(FutureRecord::<(), _>::to(topic).partition(0).payload(&payload))
                .map_err(|(e, _)| anyhow!("enqueueing {i}: {e}"))
        })
        .collect::<Result<_>>()?;
    for (i, fut) in pending.into_iter().enumerate() {
        futures::executor::block_on(fut).context("delivery cancelled")?.map_err(|(e, _)| anyhow!("record {i} not delivered: {e}"))?;
    }
    Ok(())
}

/// Reads partition 0 from the start until `n` records arrived; returns their payload bytes.
fn consume(bootstrap: &str, topic: &str, n: usize) -> Result<usize> {
    let consumer = karst_tests::txn::assigned_from_start(bootstrap, topic, 0)?;
    let (mut got, mut bytes) = (0usize, 0usize);
    let deadline = Instant::now() + TIMEOUT;
    while got < n {
        ensure!(Instant::now() < deadline, "consumed {got} of {n}");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                got += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(e)) => bail!("consumer error: {e}"),
            None => {}
        }
    }
    ensure!(got == n, "consumed {got} records, produced {n}");
    Ok(bytes)
}

#[test]
fn topic_counters_move_by_exactly_what_clients_produced_and_consumed() -> Result<()> {
    const N: usize = 500;
    const SIZE: usize = 100;
    let broker = Broker::start(&[])?;
    let admin = admin(&broker)?;
    let topic = unique_topic("metrics");
    RawClient::connect(broker.addr())?.create_topic(&topic, 1, &[])?;
    let t = [("topic", topic.as_str())];
    let before = scrape(admin)?;
    ensure!(before.value_or_zero("karst_topic_messages_in_total", &t) == 0.0, "a fresh topic has counted messages");

    produce(&broker.bootstrap(), &topic, N, SIZE)?;
    let after = scrape(admin)?;
    ensure!(
        after.value("karst_topic_messages_in_total", &t)? == N as f64,
        "messages in: {:?}",
        after.value("karst_topic_messages_in_total", &t)
    );
    let bytes_in = after.value("karst_topic_bytes_in_total", &t)?;
    // Every byte appended is in the one segment file: the counter is exact, not an estimate.
    let log = broker.data_dir().join(format!("{topic}-0")).join(format!("{:020}.log", 0));
    let on_disk = std::fs::metadata(&log).with_context(|| format!("{}", log.display()))?.len();
    ensure!(bytes_in == on_disk as f64, "bytes in {bytes_in}, segment holds {on_disk}");
    ensure!(bytes_in >= (N * SIZE) as f64, "bytes in {bytes_in} below the payloads' {}", N * SIZE);
    ensure!(after.value("karst_log_size_bytes", &[("topic", &topic), ("partition", "0")])? == on_disk as f64, "log size gauge");
    ensure!(after.value("karst_partitions_led", &[])? >= 1.0);

    let payload_bytes = consume(&broker.bootstrap(), &topic, N)?;
    ensure!(payload_bytes == N * SIZE);
    // The consumer's fetches are answered before it sees the records; the counters
    // are updated as the response is built.
    let e = wait_for("consumer counters", TIMEOUT, || {
        let e = scrape(admin).ok()?;
        (e.value_or_zero("karst_topic_messages_out_total", &t) >= N as f64).then_some(e)
    })?;
    ensure!(e.value("karst_topic_messages_out_total", &t)? == N as f64, "messages out {:?}", e.value("karst_topic_messages_out_total", &t));
    ensure!(
        e.value("karst_topic_bytes_out_total", &t)? == bytes_in,
        "bytes out {:?} != bytes in {bytes_in}",
        e.value("karst_topic_bytes_out_total", &t)
    );

    for api in ["Produce", "Fetch", "Metadata"] {
        let count = e.value("karst_request_latency_seconds_count", &[("api", api)])?;
        ensure!(count > 0.0, "no {api} latency observations");
        let inf = e.value("karst_request_latency_seconds_bucket", &[("api", api), ("le", "+Inf")])?;
        ensure!(inf == count, "{api}: +Inf bucket {inf} != count {count}");
        ensure!(e.value("karst_requests_total", &[("api", api)])? >= count, "{api}: fewer requests than timings");
    }
    ensure!(e.types.get("karst_request_latency_seconds").map(String::as_str) == Some("histogram"));
    ensure!(e.types.get("karst_topic_messages_in_total").map(String::as_str) == Some("counter"));
    ensure!(e.value("karst_log_flush_latency_seconds_count", &[])? > 0.0, "acks=all produces were fsynced");
    ensure!(e.value("karst_connections", &[])? >= 0.0);
    for gauge in ["karst_offline_partitions", "karst_under_replicated_partitions"] {
        ensure!(e.value(gauge, &[])? == 0.0, "{gauge} on a single broker");
    }
    // The closed consumer's last long poll ends within its max wait.
    wait_for("the purgatories to empty", TIMEOUT, || {
        let e = scrape(admin).ok()?;
        (e.value("karst_produce_purgatory_size", &[]).ok()? == 0.0 && e.value("karst_fetch_purgatory_size", &[]).ok()? == 0.0).then_some(())
    })?;
    ensure!(e.value("karst_controller_is_leader", &[])? == 1.0 && e.value("karst_controller_active_brokers", &[])? == 1.0);

    // Partition-level errors are counted by Kafka's error name.
    let unknown = unique_topic("metrics-missing");
    let resp = RawClient::connect(broker.addr())?.produce(&unknown, 7, karst_tests::raw::record_batch(&[(None, Some(&b"v"[..]))], 0), 8)?;
    ensure!(resp.error_code != 0, "produce to a missing partition succeeded");
    let errs = scrape(admin)?;
    ensure!(errs.value_or_zero("karst_request_errors_total", &[("api", "Produce")]) >= 1.0, "produce error not counted");

    // Group lag: the high watermark minus what the group committed.
    let group = unique_topic("metrics-group");
    let committer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).set("group.id", &group).create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset((N - 100) as i64))?;
    committer.commit(&tpl, CommitMode::Sync)?;
    let lag = wait_for("the group's lag", TIMEOUT, || {
        scrape(admin).ok()?.value("karst_consumer_group_lag", &[("group", &group), ("topic", &topic), ("partition", "0")]).ok()
    })?;
    ensure!(lag == 100.0, "lag {lag}, expected 100");

    // OpenMetrics when asked for it.
    let om = http_get(admin, "/metrics", &[("Accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")])?;
    ensure!(om.status == 200 && om.header("content-type").is_some_and(|c| c.starts_with("application/openmetrics-text")));
    ensure!(om.body.ends_with("# EOF\n"), "OpenMetrics exposition must end with # EOF");
    ensure!(om.body.contains(&format!("karst_topic_messages_in_total{{topic=\"{topic}\"}} {N}")), "OpenMetrics counter sample");

    // The Grafana dashboard that compose provisions queries only what a broker exports.
    let path = karst_tests::workspace_root().join("docker/grafana/dashboards/karst.json");
    let dashboard = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let exported = scrape(admin)?;
    let mut queried = std::collections::BTreeSet::new();
    for (at, _) in dashboard.match_indices("karst_") {
        let name: String = dashboard[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        queried.insert(name);
    }
    ensure!(queried.len() >= 10, "the dashboard queries only {queried:?}");
    for name in &queried {
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        ensure!(exported.types.contains_key(family), "the dashboard queries {name}, which the broker does not export");
    }
    Ok(())
}

#[test]
fn health_endpoints_answer_on_a_running_broker() -> Result<()> {
    let broker = Broker::start(&[])?;
    let admin = admin(&broker)?;
    let live = http_get(admin, "/health/live", &[])?;
    ensure!(live.status == 200, "live: {} {}", live.status, live.body);
    let ready = wait_for("the broker to be ready", TIMEOUT, || http_get(admin, "/health/ready", &[]).ok().filter(|r| r.status == 200))?;
    ensure!(ready.body.starts_with("ready"));
    ensure!(http_get(admin, "/nope", &[])?.status == 404);
    Ok(())
}

#[test]
fn an_admin_bind_failure_names_the_key() -> Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let data = tempfile::tempdir()?;
    let mut cmd = std::process::Command::new(karst_tests::karst_bin()?);
    karst_tests::broker::scrub_karst_env(&mut cmd);
    let out = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", &addr, "--data-dir"])
        .arg(data.path())
        .stdin(std::process::Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "started with its admin port taken");
    ensure!(stderr.contains("admin.listener") && stderr.contains(&addr), "error does not name the key: {stderr}");
    ensure!(!String::from_utf8_lossy(&out.stdout).contains("Karst listening"), "announced a listener it will not serve");
    let off = Broker::start(&["--admin-listen", ""])?;
    ensure!(off.admin_addr().is_none(), "an empty admin.listener still serves");
    Ok(())
}

#[test]
fn hostile_admin_clients_do_not_disturb_kafka_clients() -> Result<()> {
    let broker = Broker::start(&[])?;
    let admin = admin(&broker)?;
    // Idle connections that never send a full request head stay open meanwhile.
    let mut idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(admin)).collect::<std::io::Result<_>>()?;
    for s in &mut idle {
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")?;
    }
    // Garbage bytes: an error status or a closed connection, never a hang.
    let garbage = exchange(admin, b"\x00\x01\x02\xff garbage \r\n\r\n")?;
    ensure!(garbage.is_empty() || garbage.starts_with(b"HTTP/1.1 4"), "garbage answered {:?}", String::from_utf8_lossy(&garbage));
    // An oversized request head.
    let huge = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(256 * 1024));
    let big = exchange(admin, huge.as_bytes()).unwrap_or_default();
    ensure!(
        big.is_empty() || big.starts_with(b"HTTP/1.1 431") || big.starts_with(b"HTTP/1.1 4"),
        "oversized answered {:?}",
        String::from_utf8_lossy(&big[..big.len().min(200)])
    );
    // A request body is refused.
    let post = exchange(admin, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")?;
    ensure!(post.starts_with(b"HTTP/1.1 405"), "POST answered {:?}", String::from_utf8_lossy(&post));
    let body = exchange(admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n")?;
    ensure!(body.starts_with(b"HTTP/1.1 413"), "a GET with a body answered {:?}", String::from_utf8_lossy(&body));

    // Kafka clients on the same broker are served throughout.
    let topic = unique_topic("metrics-hostile");
    RawClient::connect(broker.addr())?.create_topic(&topic, 1, &[])?;
    produce(&broker.bootstrap(), &topic, 50, 10)?;
    ensure!(consume(&broker.bootstrap(), &topic, 50)? == 500);
    ensure!(http_get(admin, "/health/live", &[])?.status == 200, "the admin endpoint itself still answers");
    drop(idle);
    Ok(())
}

/// CreateTopics of one partition with three replicas: the topic's error code.
fn create_rf3(broker: &Broker, topic: &str) -> Result<i16> {
    Ok(RawClient::connect(broker.addr())?.create_replicated_result(topic, 1, 3, &[])?.error_code)
}

/// Node id of partition 0's leader, as `b` reports it.
fn leader_of(b: &Broker, topic: &str) -> Option<i32> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", b.bootstrap()).create().ok()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
    let p = md.topics().first()?.partitions().first()?;
    (p.error().is_none() && p.isr().len() == 3).then_some(p.leader())
}

#[test]
fn a_paused_follower_shrinks_and_then_expands_the_isr() -> Result<()> {
    let extra = |_| ["--set", "replica.lag.time.max.ms=2000", "--set", "broker.session.timeout.ms=60000"].map(String::from).to_vec();
    let brokers = start_cluster(3, extra)?;
    let topic = unique_topic("metrics-isr");
    let code = create_rf3(&brokers[0], &topic)?;
    ensure!(code == 0, "CreateTopics RF 3: error {code}");
    let leader = wait_for("a leader with an ISR of 3", TIMEOUT, || leader_of(&brokers[0], &topic))?;
    let li = usize::try_from(leader - 1)?;
    let follower = (li + 1) % 3;
    let admin = admin(&brokers[li])?;
    produce(&brokers[li].bootstrap(), &topic, 20, 10)?;
    let before = scrape(admin)?;
    let shrinks0 = before.value("karst_isr_shrinks_total", &[])?;
    let expands0 = before.value("karst_isr_expands_total", &[])?;

    brokers[follower].signal("STOP")?;
    let paused = scopeguard(&brokers[follower]);
    let e = wait_for("the ISR to shrink", TIMEOUT, || {
        let e = scrape(admin).ok()?;
        (e.value("karst_under_replicated_partitions", &[]).ok()? > 0.0).then_some(e)
    })?;
    ensure!(e.value("karst_isr_shrinks_total", &[])? > shrinks0, "shrink not counted");
    drop(paused); // SIGCONT
    let e = wait_for("the ISR to expand", TIMEOUT, || {
        let e = scrape(admin).ok()?;
        (e.value("karst_under_replicated_partitions", &[]).ok()? == 0.0).then_some(e)
    })?;
    ensure!(e.value("karst_isr_expands_total", &[])? > expands0, "expand not counted");
    ensure!(e.value("karst_controller_active_brokers", &[])? == 3.0);
    Ok(())
}

/// Sends SIGCONT when dropped, so a failing test does not leave a broker stopped.
struct Continue<'a>(&'a Broker);

fn scopeguard(b: &Broker) -> Continue<'_> {
    Continue(b)
}

impl Drop for Continue<'_> {
    fn drop(&mut self) {
        let _ = self.0.signal("CONT");
    }
}
