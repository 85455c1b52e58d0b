//! Batch timestamps over the raw protocol: a batch whose header max timestamp
//! is -1 (as sarama writes them) is found by ListOffsets by time, because the
//! broker recomputes the max from the records as Kafka does; records outside
//! `message.timestamp.before.max.ms` / `after.max.ms` (KIP-937) are refused
//! with INVALID_TIMESTAMP. A `message.timestamp.type=LogAppendTime` topic
//! stores the broker's append time instead, and librdkafka sees it as such.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest};
use karst_batch::{build_batch_with_timestamps, BatchHeader, NO_TIMESTAMP};
use karst_tests::raw::{crc32_ieee, frame_v1, legacy_message_set_v1, produce_request, topic_name, RawClient, ReadOutcome};
use karst_tests::{unique_topic, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};

const INVALID_TIMESTAMP: i16 = 32;

fn now_ms() -> Result<i64> {
    Ok(i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?)
}

/// ListOffsets v6 for one timestamp: (error code, offset).
fn offset_for_time(c: &mut RawClient, topic: &str, timestamp: i64) -> Result<(i16, i64)> {
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic_name(topic))
        .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp)])]);
    let resp = c.send(&req, 6)?;
    let p = resp.topics.first().and_then(|t| t.partitions.first()).context("no partition in the ListOffsets response")?;
    Ok((p.error_code, p.offset))
}

/// The whole log of partition 0, as stored.
fn fetch_all(c: &mut RawClient, topic: &str) -> Result<Vec<u8>> {
    let req = FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
        FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20)]),
    ]);
    let resp = c.send(&req, 12)?;
    let p = resp.responses.first().and_then(|t| t.partitions.first()).context("no partition in the Fetch response")?;
    ensure!(p.error_code == 0, "fetch: error {}", p.error_code);
    Ok(p.records.clone().unwrap_or_default().to_vec())
}

#[test]
fn list_offsets_by_time_finds_batches_whose_max_timestamp_is_minus_one() -> Result<()> {
    let broker = Broker::start(&[])?;
    let topic = unique_topic("ts-minus-one");
    let mut c = RawClient::connect(broker.addr())?;
    c.create_topic(&topic, 1, &[])?;
    let t0 = now_ms()? - 60_000;
    // Offsets 0..=2 (max t0+10, not first), then 3..=4 (max t0+30).
    let first = build_batch_with_timestamps(0, &[t0, t0 + 10, t0 + 5], NO_TIMESTAMP);
    let second = build_batch_with_timestamps(0, &[t0 + 20, t0 + 30], NO_TIMESTAMP);
    for (batch, base) in [(first.clone(), 0), (second, 3)] {
        let r = c.produce(&topic, 0, batch, 9)?;
        ensure!((r.error_code, r.base_offset) == (0, base), "produce: error {} at {}", r.error_code, r.base_offset);
    }

    ensure!(offset_for_time(&mut c, &topic, t0 - 1000)? == (0, 0), "a time before every record finds the first offset");
    ensure!(offset_for_time(&mut c, &topic, t0 + 7)? == (0, 1), "inside the first batch: its first record at or after the time");
    ensure!(offset_for_time(&mut c, &topic, t0 + 15)? == (0, 3), "after the first batch's max: the second batch");
    ensure!(offset_for_time(&mut c, &topic, t0 + 31)? == (0, -1), "after every record: none");

    let stored = fetch_all(&mut c, &topic)?;
    let h = BatchHeader::parse_checked(&stored).context("the stored batch has a valid CRC")?;
    ensure!(h.max_timestamp == t0 + 10, "stored max timestamp {} is the records' max", h.max_timestamp);
    ensure!(stored[61..h.total_len()] == first[61..], "records unchanged");
    let h2 = BatchHeader::parse_checked(&stored[h.total_len()..]).context("second batch")?;
    ensure!(h2.max_timestamp == t0 + 30);
    Ok(())
}

#[test]
fn records_outside_the_timestamp_window_get_invalid_timestamp() -> Result<()> {
    let broker = Broker::start(&["--set", "log.message.timestamp.before.max.ms=86400000"])?;
    let mut c = RawClient::connect(broker.addr())?;
    let windowed = unique_topic("ts-window");
    c.create_topic(&windowed, 1, &[("message.timestamp.before.max.ms", "60000"), ("message.timestamp.after.max.ms", "60000")])?;
    let defaults = unique_topic("ts-defaults");
    c.create_topic(&defaults, 1, &[])?;
    let hour = 3_600_000;
    let now = now_ms()?;

    let mut code = |topic: &str, timestamps: &[i64], max: i64| -> Result<i16> {
        Ok(c.produce(topic, 0, build_batch_with_timestamps(0, timestamps, max), 9)?.error_code)
    };
    ensure!(code(&windowed, &[now], now)? == 0, "now is inside the window");
    ensure!(code(&windowed, &[now - hour], now - hour)? == INVALID_TIMESTAMP, "an hour in the past, 60 s allowed");
    ensure!(code(&windowed, &[now + hour], now + hour)? == INVALID_TIMESTAMP, "an hour in the future, 60 s allowed");
    ensure!(code(&windowed, &[now, now + hour], NO_TIMESTAMP)? == INVALID_TIMESTAMP, "a future record behind a -1 header");

    // Broker defaults: after.max.ms one hour (Kafka 4), before.max.ms as set above.
    ensure!(code(&defaults, &[now + 2 * hour], now + 2 * hour)? == INVALID_TIMESTAMP, "two hours ahead, default one hour");
    ensure!(code(&defaults, &[now - 2 * 86_400_000], now - 2 * 86_400_000)? == INVALID_TIMESTAMP, "two days behind, broker says one");
    ensure!(code(&defaults, &[now - hour], now - hour)? == 0);
    ensure!(code(&defaults, &[NO_TIMESTAMP], NO_TIMESTAMP)? == 0, "a record without a timestamp is not checked");

    ensure!(fetch_all(&mut c, &windowed)?.len() > 61, "the accepted batch is stored");
    Ok(())
}

/// LogAppendTime: the Produce answer, librdkafka's delivery reports and consumed
/// messages, the stored batches, ListOffsets and DescribeConfigs all carry the
/// broker's append time; producers' create times, even far outside the CreateTime
/// window, are not checked; a producer's own LogAppendTime batch is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_store_and_answer_the_broker_time() -> Result<()> {
    const N: usize = 50;
    let broker = Broker::start(&[])?;
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("ts-log-append");
    let mut c = RawClient::connect(broker.addr())?;
    c.create_topic(&topic, 1, &[("message.timestamp.type", "LogAppendTime")])?;
    let d = c.describe_topic_configs(&topic)?;
    ensure!(d["message.timestamp.type"] == ("LogAppendTime".to_string(), 1), "described as {:?}", d["message.timestamp.type"]);

    // Two hours ahead: a CreateTime topic (after.max.ms = 1 hour) would refuse it.
    let create_time = now_ms()? + 2 * 3_600_000;
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("acks", "all").set("linger.ms", "5").create()?;
    let before = now_ms()?;
    let mut pending = Vec::new();
    for i in 0..N {
        let value = format!("value-{i}");
        let record = FutureRecord::to(&topic).key("k").payload(&value).timestamp(create_time);
        pending.push(producer.send_result(record).map_err(|(e, _)| anyhow!("enqueueing {i}: {e}"))?);
    }
    let mut delivered = Vec::new();
    for (i, fut) in pending.into_iter().enumerate() {
        let d = karst_tests::txn::delivered(i, fut).await?;
        delivered.push((d.offset, d.timestamp));
    }
    let after = now_ms()?;
    for (offset, ts) in &delivered {
        match ts {
            Timestamp::LogAppendTime(t) if (before..=after).contains(t) => {}
            other => bail!("delivery report of offset {offset}: {other:?}, want LogAppendTime within [{before}, {after}]"),
        }
    }

    let consumed = tokio::task::spawn_blocking({
        let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
        move || -> Result<Vec<(i64, Timestamp, Vec<u8>)>> {
            let consumer = karst_tests::txn::assigned_from_start(&bootstrap, &topic, 0)?;
            let mut out = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while out.len() < N {
                ensure!(Instant::now() < deadline, "consumed {} of {N}", out.len());
                match consumer.poll(Duration::from_millis(200)) {
                    None => {}
                    Some(Err(e)) => bail!("consumer error: {e}"),
                    Some(Ok(m)) => out.push((m.offset(), m.timestamp(), m.payload().unwrap_or_default().to_vec())),
                }
            }
            Ok(out)
        }
    })
    .await??;
    for (i, (offset, ts, value)) in consumed.iter().enumerate() {
        ensure!(*value == format!("value-{i}").into_bytes(), "offset {offset}: value {value:?}");
        let reported = delivered.iter().find(|(o, _)| o == offset).map(|(_, t)| *t);
        ensure!(Some(*ts) == reported, "offset {offset}: consumed {ts:?}, delivery report {reported:?}");
    }

    // The stored batches: LogAppendTime, valid CRCs, records as sent.
    let stored = fetch_all(&mut c, &topic)?;
    let mut times = Vec::new();
    for item in karst_batch::batches(&stored) {
        let (_, h) = item.context("a stored batch with a valid CRC")?;
        ensure!(h.is_log_append_time() && (before..=after).contains(&h.max_timestamp), "stored batch {h:?}");
        ensure!(h.base_timestamp == create_time, "base timestamp {} is the producer's", h.base_timestamp);
        times.push((h.base_offset, h.max_timestamp));
    }
    ensure!(!times.is_empty());
    // ListOffsets by time looks at the append time, not the (future) create time.
    let (first_offset, first_time) = times[0];
    ensure!(offset_for_time(&mut c, &topic, first_time)? == (0, first_offset), "by append time");
    ensure!(offset_for_time(&mut c, &topic, after + 1)? == (0, -1), "after every append time: none, whatever the create times");

    // Raw Produce: log_append_time_ms is the stored time; a LogAppendTime batch from a
    // producer is refused.
    let sent_at = now_ms()?;
    let r = c.produce(&topic, 0, build_batch_with_timestamps(0, &[1, 2], 2), 9)?;
    ensure!(r.error_code == 0, "produce: error {}", r.error_code);
    ensure!((sent_at..=now_ms()?).contains(&r.log_append_time_ms), "log_append_time_ms {}", r.log_append_time_ms);
    let stored = fetch_all(&mut c, &topic)?;
    let last = karst_batch::batches(&stored).filter_map(Result::ok).last().map(|(_, h)| h).context("a last batch")?;
    ensure!((last.base_offset, last.max_timestamp) == (r.base_offset, r.log_append_time_ms), "stored {last:?}, answered {r:?}");
    let mut lat = build_batch_with_timestamps(0, &[sent_at], sent_at);
    let stamped = karst_batch::log_append_time_header(&lat, sent_at)?;
    karst_batch::stamp_head(&mut lat, &stamped);
    ensure!(c.produce(&topic, 0, lat, 9)?.error_code == INVALID_TIMESTAMP, "a producer's LogAppendTime batch");

    // A CreateTime topic answers -1.
    let create = unique_topic("ts-create");
    c.create_topic(&create, 1, &[])?;
    let now = now_ms()?;
    let r = c.produce(&create, 0, build_batch_with_timestamps(0, &[now], now), 9)?;
    ensure!((r.error_code, r.log_append_time_ms) == (0, -1), "CreateTime: {r:?}");
    Ok(())
}

/// Produce v2 (Kafka 0.10's, through Karst's legacy codec) of a message set:
/// (error code, base offset, log_append_time_ms).
fn produce_v2(c: &mut RawClient, topic: &str, set: Vec<u8>) -> Result<(i16, i64, i64)> {
    use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
    let mut body = bytes::BytesMut::new();
    let req = produce_request(topic, 0, set);
    karst_protocol::legacy::encode_request(&mut body, 2, &RequestKind::Produce(req)).map_err(|e| anyhow!(e))?;
    let correlation_id = c.correlation_id();
    c.write_raw(&frame_v1(0, 2, correlation_id, &body))?;
    let ReadOutcome::Frame(frame) = c.read_frame()? else { bail!("connection closed on Produce v2") };
    ensure!(frame.len() >= 4 && frame[..4] == correlation_id.to_be_bytes(), "correlation id");
    let resp = karst_protocol::legacy::decode_response(ApiKey::Produce, 2, frame.slice(4..)).map_err(|e| anyhow!(e))?;
    let ResponseKind::Produce(resp) = resp else { bail!("not a Produce response") };
    let p = resp.responses.first().and_then(|t| t.partition_responses.first()).context("no partition")?;
    Ok((p.error_code, p.base_offset, p.log_append_time_ms))
}

/// Message format v1 from a pre-0.11 producer (Produce v2), up-converted: stamped
/// with the append time on a LogAppendTime topic, answered in Produce v2's
/// `log_append_time_ms`, and refused when the producer claims LogAppendTime itself.
#[test]
fn log_append_time_topics_stamp_and_answer_legacy_producers() -> Result<()> {
    let broker = Broker::start(&[])?;
    let mut c = RawClient::connect(broker.addr())?;
    let topic = unique_topic("ts-log-append-legacy");
    c.create_topic(&topic, 1, &[("message.timestamp.type", "LogAppendTime")])?;
    let before = now_ms()?;
    let (code, base, time) = produce_v2(&mut c, &topic, legacy_message_set_v1(Some(b"k"), Some(b"v"), 5))?;
    let after = now_ms()?;
    ensure!((code, base) == (0, 0), "Produce v2: error {code} at {base}");
    ensure!((before..=after).contains(&time), "log_append_time_ms {time} outside [{before}, {after}]");
    let stored = fetch_all(&mut c, &topic)?;
    let h = BatchHeader::parse_checked(&stored).context("a valid stored batch")?;
    ensure!(h.is_log_append_time() && h.max_timestamp == time, "stored {h:?}");
    let mut claims = legacy_message_set_v1(None, Some(b"v"), 5);
    claims[17] |= 0x08; // the message's attributes: LogAppendTime
    let crc = crc32_ieee(&claims[16..]);
    claims[12..16].copy_from_slice(&crc.to_be_bytes());
    ensure!(produce_v2(&mut c, &topic, claims)?.0 == INVALID_TIMESTAMP, "a producer's LogAppendTime message");
    Ok(())
}
