//! `compression.type` on a topic: the leader stores batches in the topic's codec
//! whatever the producer sent, as Kafka's log validator recompresses them, and
//! consumers read back exactly what was produced.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use karst_batch::compression::{GZIP, ZSTD};
use karst_tests::raw::{record_batch, topic_name, RawClient};
use karst_tests::{unique_topic, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

const N: usize = 300;
const TOPIC_SOURCE: i8 = 1;
const INVALID_CONFIG: i16 = 40;

fn value(i: usize) -> Vec<u8> {
    format!("a compressible value number {i:05} | ").repeat(20).into_bytes()
}

/// Every batch stored in partition 0, fetched raw: (codec, bytes of the batch).
fn stored_batches(c: &mut RawClient, topic: &str) -> Result<Vec<(i16, usize)>> {
    let req = FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(0).with_max_bytes(1 << 24).with_topics(vec![
        FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 24)]),
    ]);
    let resp = c.send(&req, 12)?;
    let p = resp.responses.first().and_then(|t| t.partitions.first()).context("no partition in the Fetch response")?;
    ensure!(p.error_code == 0, "fetch: error {}", p.error_code);
    let records = p.records.clone().unwrap_or_default();
    karst_batch::batches(&records).map(|b| b.map(|(_, h)| (h.compression(), h.total_len())).map_err(|e| anyhow!("{e}"))).collect()
}

/// An idempotent librdkafka producer that sends uncompressed batches.
async fn produce_uncompressed(bootstrap: &str, topic: &str) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("compression.type", "none")
        .set("linger.ms", "20")
        .create()?;
    let mut pending = Vec::new();
    for i in 0..N {
        let (key, v) = (format!("key-{i}"), value(i));
        let headers = OwnedHeaders::new().insert(Header { key: "i", value: Some(&i.to_string()) });
        let record = FutureRecord::to(topic).key(&key).payload(&v).headers(headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| anyhow!("enqueueing {i}: {e}"))?);
    }
    for (i, fut) in pending.into_iter().enumerate() {
        let d = karst_tests::txn::delivered(i, fut).await?;
        ensure!(d.offset == i as i64, "message {i} at offset {}", d.offset);
    }
    Ok(())
}

/// Reads all `N` messages back and checks keys, values and headers.
fn consume_all(bootstrap: &str, topic: &str) -> Result<()> {
    let consumer = karst_tests::txn::assigned_from_start(bootstrap, topic, 0)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 0usize;
    while next < N {
        ensure!(Instant::now() < deadline, "consumed {next} of {N}");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => bail!("consumer error: {e}"),
            Some(Ok(m)) => {
                ensure!(m.offset() == next as i64, "offset {} where {next} was next", m.offset());
                ensure!(m.key() == Some(format!("key-{next}").as_bytes()), "offset {next}: key {:?}", m.key());
                ensure!(m.payload() == Some(&value(next)[..]), "offset {next}: value differs");
                let header = m.headers().and_then(|h| h.iter().next()).context("no header")?;
                ensure!((header.key, header.value) == ("i", Some(next.to_string().as_bytes())), "offset {next}: header");
                next += 1;
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_store_batches_in_their_codec_whatever_the_producer_sent() -> Result<()> {
    let broker = Broker::start(&[])?;
    let bootstrap = broker.bootstrap();
    let mut c = RawClient::connect(broker.addr())?;
    // zstd from creation; gzip set afterwards by IncrementalAlterConfigs.
    let zstd_topic = unique_topic("compression-zstd");
    c.create_topic(&zstd_topic, 1, &[("compression.type", "zstd"), ("compression.zstd.level", "10")])?;
    let gzip_topic = unique_topic("compression-gzip");
    c.create_topic(&gzip_topic, 1, &[])?;
    ensure!(c.alter_topic_config(&gzip_topic, "compression.type", 0, Some("gzip"))? == 0);
    ensure!(c.alter_topic_config(&gzip_topic, "compression.gzip.level", 0, Some("0"))? == INVALID_CONFIG, "gzip has no level 0");
    ensure!(c.alter_topic_config(&gzip_topic, "compression.type", 0, Some("brotli"))? == INVALID_CONFIG);
    let d = c.describe_topic_configs(&zstd_topic)?;
    ensure!(d["compression.type"] == ("zstd".to_string(), TOPIC_SOURCE), "{:?}", d["compression.type"]);
    ensure!(d["compression.zstd.level"] == ("10".to_string(), TOPIC_SOURCE), "{:?}", d["compression.zstd.level"]);
    ensure!(d["compression.gzip.level"] == ("-1".to_string(), 5), "{:?}", d["compression.gzip.level"]);
    ensure!(c.describe_topic_configs(&gzip_topic)?["compression.type"] == ("gzip".to_string(), TOPIC_SOURCE));

    let plain_size: usize = (0..N).map(|i| value(i).len()).sum();
    for (topic, codec) in [(&zstd_topic, ZSTD), (&gzip_topic, GZIP)] {
        produce_uncompressed(&bootstrap, topic).await?;
        let batches = stored_batches(&mut c, topic)?;
        ensure!(batches.iter().all(|(c, _)| *c == codec), "{topic}: stored codecs {batches:?}");
        let stored: usize = batches.iter().map(|(_, len)| len).sum();
        ensure!(stored * 5 < plain_size, "{topic}: {stored} bytes stored for {plain_size} bytes of values");
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        tokio::task::spawn_blocking(move || consume_all(&bootstrap, &topic)).await??;
    }

    // Raw Produce of an uncompressed batch: stored compressed, offsets as usual.
    let r = c.produce(&zstd_topic, 0, record_batch(&[(Some(&b"k"[..]), Some(&[b'x'; 2000][..]))], 1), 9)?;
    ensure!((r.error_code, r.base_offset) == (0, N as i64), "{r:?}");
    let last = stored_batches(&mut c, &zstd_topic)?.last().copied().context("a batch")?;
    ensure!(last.0 == ZSTD && last.1 < 200, "the raw batch is stored as {last:?}");
    Ok(())
}
