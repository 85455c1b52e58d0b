//! The `rdkafka` crate (librdkafka built from source): keyed produce/fetch round trips
//! with headers, consumers assigned explicitly (no group).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use karst_tests::raw::RawClient;
use karst_tests::{unique_topic, Broker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);

fn key(i: usize) -> String {
    format!("key-{}", i % 17)
}
fn value(i: usize) -> Vec<u8> {
    format!("value-{i:06}|").repeat(1 + i % 3).into_bytes()
}
fn headers(i: usize) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header { key: "seq", value: Some(&i.to_string()) })
        .insert(Header { key: "bin", value: Some(&[0u8, 255, 1][..]) })
        .insert(Header { key: "null", value: None::<&[u8]> })
}

fn producer(bootstrap: &str) -> Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()?)
}

/// Sends `n` keyed messages with headers and returns index → (partition, offset).
async fn produce(bootstrap: &str, topic: &str, n: usize) -> Result<HashMap<usize, (i32, i64)>> {
    let producer = producer(bootstrap)?;
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let (k, v) = (key(i), value(i));
        let record = FutureRecord::to(topic).key(&k).payload(&v).headers(headers(i));
        let fut = producer.send_result(record).map_err(|(e, _)| anyhow!("enqueueing message {i}: {e}"))?;
        pending.push(fut);
    }
    let mut acked = HashMap::new();
    for (i, fut) in pending.into_iter().enumerate() {
        let delivery = tokio::time::timeout(TIMEOUT, fut)
            .await
            .with_context(|| format!("no delivery report for message {i}"))?
            .context("delivery future cancelled")?
            .map_err(|(e, _)| anyhow!("message {i} not delivered: {e}"))?;
        acked.insert(i, (delivery.partition, delivery.offset));
    }
    let mut positions: Vec<_> = acked.values().collect();
    positions.sort();
    positions.dedup();
    ensure!(positions.len() == n, "two messages acknowledged at the same offset");
    Ok(acked)
}

/// Checks one consumed message against what was acknowledged; returns its index.
fn verify(m: &BorrowedMessage<'_>, acked: &HashMap<usize, (i32, i64)>) -> Result<usize> {
    let hdrs = m.headers().context("message without headers")?;
    let seq = hdrs.iter().find(|h| h.key == "seq").and_then(|h| h.value).context("no seq header")?;
    let i: usize = std::str::from_utf8(seq)?.parse()?;
    let at = (m.partition(), m.offset());
    ensure!(acked.get(&i) == Some(&at), "message {i} found at {at:?}, acknowledged at {:?}", acked.get(&i));
    ensure!(m.key() == Some(key(i).as_bytes()), "message {i}: key {:?}", m.key());
    ensure!(m.payload() == Some(&value(i)[..]), "message {i}: payload differs");
    let got: Vec<(String, Option<Vec<u8>>)> = hdrs.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect();
    let want = vec![
        ("seq".to_string(), Some(i.to_string().into_bytes())),
        ("bin".to_string(), Some(vec![0u8, 255, 1])),
        ("null".to_string(), None),
    ];
    ensure!(got == want, "message {i}: headers {got:?}, want {want:?}");
    Ok(i)
}

fn assignment(topic: &str, partitions: i32) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    Ok(tpl)
}

/// Per-partition offsets must come in order, starting at 0, without gaps.
struct OrderCheck(HashMap<i32, i64>);

impl OrderCheck {
    fn see(&mut self, partition: i32, offset: i64) -> Result<()> {
        let next = self.0.entry(partition).or_insert(0);
        ensure!(offset == *next, "partition {partition}: offset {offset}, expected {next}");
        *next += 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_producer_then_base_consumer() -> Result<()> {
    const N: usize = 2000;
    let mut broker = Broker::start(&[])?;
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("rdkafka-base");
    RawClient::connect(broker.addr())?.create_topic(&topic, 2, &[])?;
    let acked = produce(&bootstrap, &topic, N).await?;

    let consumed = tokio::task::spawn_blocking(move || -> Result<Vec<usize>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            // librdkafka's assign() needs a group.id (else "Unknown group"); the
            // group itself is never joined and no offset is committed.
            .set("group.id", "karst-tests-unused")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()?;
        consumer.assign(&assignment(&topic, 2)?)?;
        let mut order = OrderCheck(HashMap::new());
        let mut seen = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        while seen.len() < N {
            if Instant::now() > deadline {
                bail!("consumed {} of {N} in {TIMEOUT:?}", seen.len());
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(e)) => bail!("consumer error: {e}"),
                Some(Ok(m)) => {
                    order.see(m.partition(), m.offset())?;
                    seen.push(verify(&m, &acked)?);
                }
            }
        }
        for p in 0..2 {
            let (low, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
            ensure!(low == 0, "partition {p}: low watermark {low}");
            ensure!(
                high == order.0.get(&p).copied().unwrap_or(0),
                "partition {p}: high watermark {high}, consumed up to {:?}",
                order.0.get(&p)
            );
        }
        Ok(seen)
    })
    .await??;
    let mut sorted = consumed;
    sorted.sort_unstable();
    ensure!(sorted == (0..N).collect::<Vec<_>>(), "messages missing or duplicated");
    broker.check_running()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_client_future_producer_stream_consumer() -> Result<()> {
    const N: usize = 1000;
    let mut broker = Broker::start(&[])?;
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("rdkafka-stream");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for r in results {
        r.map_err(|(t, e)| anyhow!("creating {t}: {e}"))?;
    }
    let acked = produce(&bootstrap, &topic, N).await?;
    let partitions: std::collections::HashSet<i32> = acked.values().map(|(p, _)| *p).collect();
    ensure!(partitions.len() == 3, "keyed messages used only partitions {partitions:?}");

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        // librdkafka's assign() needs a group.id (else "Unknown group"); the
        // group itself is never joined and no offset is committed.
        .set("group.id", "karst-tests-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()?;
    consumer.assign(&assignment(&topic, 3)?)?;
    let mut order = OrderCheck(HashMap::new());
    let mut seen = vec![false; N];
    for n in 0..N {
        let m =
            tokio::time::timeout(TIMEOUT, consumer.recv()).await.with_context(|| format!("consumed only {n} of {N} in {TIMEOUT:?}"))??;
        order.see(m.partition(), m.offset())?;
        let i = verify(&m, &acked)?;
        ensure!(!seen[i], "message {i} consumed twice");
        seen[i] = true;
    }
    broker.check_running()
}
