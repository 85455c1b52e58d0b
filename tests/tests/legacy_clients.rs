//! Clients older than Kafka 0.11, unchanged: message formats v0/v1 on Produce v0-v2
//! and Fetch v0-v3, and the other pre-0.11 request versions. sarama 1.22 with its
//! default config (the 0.8.2 protocol) and with old `Version`s; librdkafka (kcat)
//! told not to ask for API versions and to assume an old broker; and the codec a
//! producer chose kept on disk whatever the client.

use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use karst_tests::raw::RawClient;
use karst_tests::{go_binary, run_checked, run_command, show_output, unique_topic, Broker};

const TIMEOUT: Duration = Duration::from_secs(180);

/// Runs tests/sarama/legacy against a fresh 3-partition topic for each codec.
fn sarama(version: &str, codecs: &[&str]) -> Result<()> {
    let bin = go_binary("legacy")?;
    let mut broker = Broker::start(&[])?;
    for codec in codecs {
        let topic = unique_topic(&format!("sarama-legacy-{codec}"));
        RawClient::connect(broker.addr())?.create_topic(&topic, 3, &[])?;
        let mut cmd = Command::new(&bin);
        cmd.args(["-bootstrap", &broker.bootstrap(), "-topic", &topic, "-codec", codec, "-n", "10000"]).stdin(Stdio::null());
        if !version.is_empty() {
            cmd.args(["-version", version]);
        }
        let out = run_command(&mut cmd, TIMEOUT)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        ensure!(out.status.success() && stdout.trim_end().ends_with("OK"), "sarama {version:?} with {codec} failed\n{}", show_output(&out));
        ensure!(stored_codecs(&broker, &topic)? == [codec_id(codec)], "{codec}: the stored batches do not carry the producer's codec");
        // Operators see who still needs the conversion.
        let (up, down) = converted(&broker, &topic)?;
        ensure!(up == 10_000.0 && down >= 10_000.0, "{codec}: up-converted {up}, down-converted {down} records");
    }
    broker.check_running()
}

#[test]
fn sarama_with_its_default_config_round_trips_with_every_codec_it_allows() -> Result<()> {
    // sarama before 1.40 speaks the 0.8.2 protocol unless told otherwise: Produce v0
    // (message format v0), Fetch v0, ListOffsets v0. lz4 needs 0.10 in sarama.
    sarama("", &["none", "gzip", "snappy"])
}

#[test]
fn sarama_speaking_0_9_round_trips_with_every_codec_it_allows() -> Result<()> {
    sarama("0.9.0.0", &["none", "gzip", "snappy"])
}

#[test]
fn sarama_speaking_0_10_round_trips_with_every_codec() -> Result<()> {
    // Produce v2 with message format v1 (timestamps), Fetch v2.
    sarama("0.10.0.0", &["none", "gzip", "snappy", "lz4"])
}

/// Records of `topic` converted (up, down), from the broker's metrics.
fn converted(broker: &Broker, topic: &str) -> Result<(f64, f64)> {
    let admin = broker.admin_addr().context("no admin address")?;
    let metrics = karst_tests::metrics::parse_exposition(&karst_tests::metrics::http_get(admin, "/metrics", &[])?.body)?;
    let up = metrics.value_or_zero("karst_up_converted_records_total", &[("topic", topic)]);
    let down = metrics.value_or_zero("karst_down_converted_records_total", &[("topic", topic)]);
    Ok((up, down))
}

fn codec_id(name: &str) -> i16 {
    match name {
        "gzip" => 1,
        "snappy" => 2,
        "lz4" => 3,
        "zstd" => 4,
        _ => 0,
    }
}

/// The codecs of every batch stored for `topic`, deduplicated, from the segment files.
fn stored_codecs(broker: &Broker, topic: &str) -> Result<Vec<i16>> {
    let mut codecs = Vec::new();
    for p in 0..3 {
        let dir = broker.data_dir().join(format!("{topic}-{p}"));
        if !dir.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            // Whole batches only: the active segment may end in unused space.
            for (_, header) in karst_batch::batches(&bytes).map_while(Result::ok) {
                let codec = header.compression();
                if !codecs.contains(&codec) {
                    codecs.push(codec);
                }
            }
        }
    }
    Ok(codecs)
}

fn kcat(broker: &Broker, extra: &[&str]) -> Command {
    let mut cmd = Command::new("kcat");
    cmd.arg("-b").arg(broker.bootstrap()).args(extra).stdin(Stdio::null());
    cmd
}

/// kcat produces `lines` to partition 0 of a new topic and consumes them back, with
/// `extra` librdkafka settings on both sides.
fn kcat_round_trip(broker: &Broker, codec: &str, extra: &[&str]) -> Result<String> {
    let topic = unique_topic(&format!("kcat-legacy-{codec}"));
    RawClient::connect(broker.addr())?.create_topic(&topic, 1, &[])?;
    let lines: Vec<String> = (0..5_000).map(|i| format!("key-{}\tline {i} {}", i % 13, "repetitive ".repeat(1 + i % 7))).collect();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("input");
    File::create(&path)?.write_all((lines.join("\n") + "\n").as_bytes())?;
    let mut produce = kcat(broker, extra);
    produce.args(["-P", "-t", &topic, "-p", "0", "-K", "\t", "-z", codec, "-X", "acks=all"]).stdin(File::open(&path)?);
    run_checked(&mut produce, TIMEOUT)?;
    let out =
        run_checked(kcat(broker, extra).args(["-C", "-t", &topic, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"]), TIMEOUT)?;
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    ensure!(got.len() == lines.len(), "{codec} {extra:?}: consumed {} of {} lines", got.len(), lines.len());
    ensure!(got == lines, "{codec} {extra:?}: consumed lines differ from the produced ones");
    Ok(topic)
}

#[test]
fn kcat_assuming_an_old_broker_round_trips_with_every_codec() -> Result<()> {
    // librdkafka without ApiVersions: broker.version.fallback decides the request
    // versions and the message format (0.8.2 and 0.9.0: v0). 0.10.0 and later make
    // librdkafka ask ApiVersions after all: the modern path, kept as a control.
    let broker = Broker::start(&[])?;
    for fallback in ["0.8.2", "0.9.0", "0.10.0"] {
        let setting = format!("broker.version.fallback={fallback}");
        let extra = ["-X", "api.version.request=false", "-X", &setting];
        for codec in ["none", "gzip", "snappy", "lz4"] {
            let topic = kcat_round_trip(&broker, codec, &extra).with_context(|| format!("fallback {fallback}"))?;
            ensure!(stored_codecs(&broker, &topic)? == [codec_id(codec)], "fallback {fallback}, {codec}: stored codecs differ");
            let (up, down) = converted(&broker, &topic)?;
            let old = fallback != "0.10.0";
            ensure!(
                (up == 5_000.0 && down >= 5_000.0) == old && (old || up + down == 0.0),
                "fallback {fallback}, {codec}: {up} records up-converted, {down} down-converted"
            );
        }
    }
    broker_alive(broker)
}

#[test]
fn kcat_and_rdkafka_keep_the_codec_they_were_asked_for() -> Result<()> {
    // librdkafka before its fix for KAFKA-18659 (Debian's kcat has 2.0.2) turns gzip,
    // snappy and lz4 off when a broker's Produce versions start above 0: the data
    // round-trips, uncompressed.
    let broker = Broker::start(&[])?;
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = kcat_round_trip(&broker, codec, &[])?;
        let stored = stored_codecs(&broker, &topic)?;
        ensure!(stored == [codec_id(codec)], "kcat -z {codec}: stored batches carry codecs {stored:?}");
    }
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_topic(&format!("rdkafka-codec-{codec}"));
        RawClient::connect(broker.addr())?.create_topic(&topic, 1, &[])?;
        rdkafka_produce(&broker, &topic, codec)?;
        let stored = stored_codecs(&broker, &topic)?;
        // librdkafka sends a batch uncompressed when compressing it would not make it
        // smaller (rdkafka_msgset_writer.c): under load a batch of one short record
        // can be that. Never another codec, and the one asked for at least once.
        ensure!(
            stored.contains(&codec_id(codec)) && stored.iter().all(|c| *c == codec_id(codec) || *c == 0),
            "rdkafka compression.type={codec}: stored batches carry codecs {stored:?}"
        );
    }
    broker_alive(broker)
}

/// 2,000 repetitive records through the `rdkafka` crate (librdkafka 2.12) with `codec`.
fn rdkafka_produce(broker: &Broker, topic: &str, codec: &str) -> Result<()> {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("compression.type", codec)
        .set("linger.ms", "20")
        .set("acks", "all")
        .create()?;
    for i in 0..2_000 {
        let value = format!("record {i} {}", "repetitive ".repeat(1 + i % 7));
        producer.send(BaseRecord::<(), _>::to(topic).partition(0).payload(&value)).map_err(|(e, _)| anyhow::anyhow!("send {i}: {e}"))?;
    }
    producer.flush(Duration::from_secs(30))?;
    ensure!(producer.in_flight_count() == 0, "{codec}: records still in flight");
    Ok(())
}

fn broker_alive(mut broker: Broker) -> Result<()> {
    broker.check_running()
}

/// Sends `body` as `api` `version` through Karst's own codec (which speaks the pre-0.11
/// versions kafka-protocol dropped) and decodes the answer.
fn call_at(
    c: &mut RawClient,
    api: kafka_protocol::messages::ApiKey,
    version: i16,
    body: kafka_protocol::messages::RequestKind,
) -> Result<kafka_protocol::messages::ResponseKind> {
    let id = c.correlation_id();
    let frame = karst_protocol::codec::encode_request(api, version, id, "karst-tests", &body).map_err(anyhow::Error::msg)?;
    c.write_raw(&frame)?;
    let karst_tests::raw::ReadOutcome::Frame(frame) = c.read_frame()? else { anyhow::bail!("connection closed on {api:?} v{version}") };
    let (got_id, resp) = karst_protocol::codec::decode_response(api, version, frame).map_err(anyhow::Error::msg)?;
    ensure!(got_id == id, "correlation id {got_id}, sent {id}");
    Ok(resp)
}

/// Sends Produce `version` with `set` as partition 0's records; returns (error, base offset).
fn produce_set(c: &mut RawClient, topic: &str, version: i16, set: Vec<u8>) -> Result<(i16, i64)> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestKind, ResponseKind};
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(karst_tests::raw::topic_name(topic))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(set.into()))])]);
    let ResponseKind::Produce(r) = call_at(c, ApiKey::Produce, version, RequestKind::Produce(req))? else {
        anyhow::bail!("not a Produce response")
    };
    let p = &r.responses[0].partition_responses[0];
    Ok((p.error_code, p.base_offset))
}

fn message_set(magic: i8, codec: i16, values: &[&[u8]]) -> Result<Vec<u8>> {
    use karst_protocol::message_set::{build_message_set, MessageRef};
    let messages: Vec<MessageRef<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| MessageRef { offset: i as i64, timestamp: 1_700_000_000_000, key: Some(b"k"), value: Some(v) })
        .collect();
    build_message_set(magic, codec, None, &messages).map_err(|e| anyhow::anyhow!("{}", e.message()))
}

/// One uncompressed-looking message whose attributes say `codec` and whose value is
/// `value` as given: a wrapper built by hand (CRC-32 over magic..end).
fn wrapper(magic: i8, codec: u8, value: &[u8]) -> Vec<u8> {
    wrapper_at(0, magic, codec, value)
}

/// [`wrapper`] at message offset `offset` (a magic 1 wrapper's offset is its last inner one's).
fn wrapper_at(offset: i64, magic: i8, codec: u8, value: &[u8]) -> Vec<u8> {
    let mut m = vec![magic as u8, codec];
    if magic == 1 {
        m.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    }
    m.extend_from_slice(&(-1i32).to_be_bytes());
    m.extend_from_slice(&(value.len() as i32).to_be_bytes());
    m.extend_from_slice(value);
    let mut entry = offset.to_be_bytes().to_vec();
    entry.extend_from_slice(&((m.len() + 4) as i32).to_be_bytes());
    entry.extend_from_slice(&karst_tests::raw::crc32_ieee(&m).to_be_bytes());
    entry.extend_from_slice(&m);
    entry
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data)?;
    Ok(e.finish()?)
}

#[test]
fn bad_message_sets_get_kafkas_errors_and_nothing_of_them_is_stored() -> Result<()> {
    const CORRUPT_MESSAGE: i16 = 2;
    const MESSAGE_TOO_LARGE: i16 = 10;
    const INVALID_RECORD: i16 = 87;
    // Decompression is bounded by socket.request.max.bytes.
    let mut broker = Broker::start(&["--set", "socket.request.max.bytes=1048576"])?;
    let topic = unique_topic("bad-sets");
    let mut c = RawClient::connect(broker.addr())?;
    c.create_topic(&topic, 1, &[("max.message.bytes", "100000")])?;
    let good = message_set(1, 0, &[b"one", b"two", b"three"])?;

    // A wrong CRC anywhere in the set refuses the whole set.
    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x55;
    // A set cut inside its only message holds no whole message: Kafka stores nothing
    // and answers NONE with offset -1; cut inside the last one, it keeps the others.
    let one = message_set(0, 0, &[b"only"])?;
    // Compression inside compression.
    let inner = message_set(1, 1, &[b"a", b"b"])?;
    let nested = wrapper(1, 1, &gzip(&inner)?);
    // A small wrapper expanding past what the broker decompresses.
    let bomb = message_set(1, 1, &[&vec![b'x'; 2_000_000]])?;
    // Garbage inside a wrapper: CORRUPT_MESSAGE.
    let garbage = wrapper(1, 1, &gzip(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xffnot a message")?);
    // Inner offsets 0..2 under a wrapper at offset 1: the absolute offsets it implies go
    // backwards (Kafka: "wrapper offset is less than the last inner message offset").
    let backwards = wrapper_at(1, 1, 1, &gzip(&message_set(1, 0, &[b"a", b"b", b"c"])?)?);
    let cases: Vec<(&str, i16, Vec<u8>, i16)> = vec![
        ("wrong CRC", 2, bad_crc, CORRUPT_MESSAGE),
        ("nested compression", 2, nested, INVALID_RECORD),
        ("expands past the decompression bound", 2, bomb, CORRUPT_MESSAGE),
        ("garbage inside a wrapper", 1, garbage, CORRUPT_MESSAGE),
        ("inner offsets going backwards", 2, backwards, INVALID_RECORD),
    ];
    for (what, version, set, want) in cases {
        let (code, _) = produce_set(&mut c, &topic, version, set)?;
        ensure!(code == want, "{what}: error {code}, Kafka answers {want}");
    }
    let (code, offset) = produce_set(&mut c, &topic, 0, one[..one.len() - 3].to_vec())?;
    ensure!((code, offset) == (0, -1), "a set with no whole message: error {code} offset {offset}, Kafka answers 0 and -1");
    ensure!(stored_codecs(&broker, &topic)?.is_empty(), "something of a refused set was stored");
    // The broker keeps serving: the good set is stored whole, the cut one up to its cut.
    ensure!(produce_set(&mut c, &topic, 2, good.clone())? == (0, 0), "the good set after the bad ones");
    let (code, offset) = produce_set(&mut c, &topic, 1, good[..good.len() - 4].to_vec())?;
    ensure!((code, offset) == (0, 3), "a set cut in its last message: error {code} offset {offset}");
    let hw = karst_tests::raw::RawClient::connect(broker.addr())?.produce(
        &topic,
        0,
        karst_tests::raw::record_batch(&[(None, Some(b"v2"))], 1_000),
        9,
    )?;
    ensure!(hw.error_code == 0 && hw.base_offset == 5, "a v2 batch after them lands at 5: {hw:?}");
    // max.message.bytes limits the stored (compressed) batch, as in Kafka: a record
    // that is larger only once decompressed is stored; one stored larger is refused.
    let big = message_set(1, 1, &[&vec![b'x'; 400_000]])?;
    ensure!(produce_set(&mut c, &topic, 2, big)? == (0, 6), "a 400 KB record compressing well");
    let incompressible: Vec<u8> = (0..150_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (code, _) = produce_set(&mut c, &topic, 2, message_set(1, 0, &[&incompressible])?)?;
    ensure!(code == MESSAGE_TOO_LARGE, "a 150 KB message with max.message.bytes 100000: error {code}");
    broker.check_running()
}

/// (partition, offset, key, value) of every record, in partition and offset order.
type Dump = Vec<(i32, i64, Option<Vec<u8>>, Option<Vec<u8>>)>;

/// Every record of `topic` as sarama 1.22 reads it speaking `version` ("" = 0.8.2).
fn sarama_dump(broker: &Broker, topic: &str, version: &str) -> Result<Dump> {
    let bin = go_binary("legacy")?;
    let mut cmd = Command::new(&bin);
    cmd.args(["-bootstrap", &broker.bootstrap(), "-topic", topic, "-mode", "dump"]).stdin(Stdio::null());
    if !version.is_empty() {
        cmd.args(["-version", version]);
    }
    let out = run_command(&mut cmd, TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(out.status.success() && stdout.trim_end().ends_with("OK"), "sarama dump failed\n{}", show_output(&out));
    let unhex = |s: &str| -> Result<Option<Vec<u8>>> {
        if s == "-" {
            return Ok(None);
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(anyhow::Error::from))
            .collect::<Result<Vec<u8>>>()
            .map(Some)
    };
    let mut dump = Dump::new();
    for line in stdout.lines().filter(|l| *l != "OK") {
        let f: Vec<&str> = line.split('\t').collect();
        ensure!(f.len() == 4, "dump line {line:?}");
        dump.push((f[0].parse()?, f[1].parse()?, unhex(f[2])?, unhex(f[3])?));
    }
    dump.sort_by_key(|r| (r.0, r.1));
    Ok(dump)
}

/// Every record of `topic` as the rdkafka crate (Fetch v4+, v2 batches) reads it.
fn rdkafka_dump(broker: &Broker, topic: &str, partitions: i32, expected: usize) -> Result<Dump> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", unique_topic("dump"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut dump = Dump::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while dump.len() < expected {
        ensure!(std::time::Instant::now() < deadline, "rdkafka read {} of {expected} records", dump.len());
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            dump.push((m.partition(), m.offset(), m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
        }
    }
    dump.sort_by_key(|r| (r.0, r.1));
    Ok(dump)
}

#[test]
fn records_cross_message_format_generations_byte_identical_at_the_same_offsets() -> Result<()> {
    use rdkafka::config::ClientConfig;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let mut broker = Broker::start(&[])?;

    // v2 batches from an idempotent producer, with headers, read by a 0.8.2 consumer
    // (Fetch v0, message format v0: headers dropped, as Kafka drops them).
    let topic = unique_topic("v2-to-old");
    RawClient::connect(broker.addr())?.create_topic(&topic, 3, &[])?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        // Not lz4: for message format v0 Kafka (and Karst) write the frame checksum
        // pre-0.10 clients computed wrongly, which sarama 1.22 refuses from Kafka too.
        .set("compression.type", "snappy")
        .set("linger.ms", "10")
        .create()?;
    let n = 3_000;
    for i in 0..n {
        let key = format!("key-{}", i % 11);
        let value = (i % 10 != 0).then(|| format!("value {i} {}", "ab".repeat(i % 9)));
        let headers = OwnedHeaders::new().insert(Header { key: "h", value: Some(&format!("{i}")) });
        let mut record = BaseRecord::<String, String>::to(&topic).partition((i % 3) as i32).key(&key).headers(headers);
        if let Some(v) = &value {
            record = record.payload(v);
        }
        producer.send(record).map_err(|(e, _)| anyhow::anyhow!("send {i}: {e}"))?;
    }
    producer.flush(Duration::from_secs(30))?;
    let modern = rdkafka_dump(&broker, &topic, 3, n)?;
    for version in ["", "0.10.0.0"] {
        let old = sarama_dump(&broker, &topic, version)?;
        ensure!(old == modern, "sarama {version:?} read {} records, rdkafka {}: they differ", old.len(), modern.len());
    }

    // Message format v0 from a 0.8.2 producer (gzip), read as v2 batches.
    let topic = unique_topic("old-to-v2");
    RawClient::connect(broker.addr())?.create_topic(&topic, 3, &[])?;
    let bin = go_binary("legacy")?;
    let out = run_command(
        Command::new(&bin).args(["-bootstrap", &broker.bootstrap(), "-topic", &topic, "-codec", "gzip", "-n", "2000"]).stdin(Stdio::null()),
        TIMEOUT,
    )?;
    ensure!(out.status.success(), "sarama 0.8.2 producer\n{}", show_output(&out));
    let old = sarama_dump(&broker, &topic, "")?;
    let modern = rdkafka_dump(&broker, &topic, 3, old.len())?;
    ensure!(old.len() == 2000 && old == modern, "{} records read by sarama, {} by rdkafka: they differ", old.len(), modern.len());
    broker.check_running()
}

/// tests/sarama/oldgroup: three members speaking the 0.9/0.10 group protocol through
/// sarama's Broker API (JoinGroup v0, SyncGroup v0, Heartbeat v0, OffsetCommit v2,
/// OffsetFetch v1): half the messages in one generation, the rest in a later one that
/// resumes from the committed offsets; every message once.
fn old_group(version: &str) -> Result<()> {
    let bin = go_binary("oldgroup")?;
    let mut broker = Broker::start(&[])?;
    let topic = unique_topic("oldgroup");
    RawClient::connect(broker.addr())?.create_topic(&topic, 6, &[])?;
    let group = unique_topic("oldgroup-g");
    let out = run_command(
        Command::new(&bin)
            .args(["-bootstrap", &broker.bootstrap(), "-topic", &topic, "-group", &group, "-version", version, "-n", "6000"])
            .stdin(Stdio::null()),
        TIMEOUT,
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    ensure!(out.status.success() && stdout.trim_end().ends_with("OK"), "sarama {version} group\n{}", show_output(&out));
    broker.check_running()
}

#[test]
fn a_sarama_0_9_consumer_group_of_three_consumes_every_message_once_and_resumes() -> Result<()> {
    old_group("0.9.0.0")
}

#[test]
fn a_sarama_0_10_consumer_group_of_three_consumes_every_message_once_and_resumes() -> Result<()> {
    old_group("0.10.0.0")
}

/// Fetch `version` of partition 0 of `topic` from offset 0: (error code, record bytes).
fn fetch_partition_0(c: &mut RawClient, topic: &str, version: i16) -> Result<(i16, usize)> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, RequestKind, ResponseKind};
    let req = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
        .with_topic(karst_tests::raw::topic_name(topic))
        .with_partitions(vec![FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(r) = call_at(c, ApiKey::Fetch, version, RequestKind::Fetch(req))? else {
        anyhow::bail!("not a Fetch response")
    };
    let p = &r.responses[0].partitions[0];
    Ok((p.error_code, p.records.as_ref().map_or(0, |r| r.len())))
}

/// Fetch v0, v3 and v4 of each (topic, down-conversion on?): v0-v3 get
/// UNSUPPORTED_VERSION (35) where it is off, v4+ are never affected.
fn check_down_conversion_switch(c: &mut RawClient, topics: &[(&str, bool)]) -> Result<()> {
    for (t, _) in topics {
        ensure!(produce_set(c, t, 2, message_set(1, 0, &[b"one", b"two"])?)? == (0, 0), "{t}: produce");
    }
    for version in [0, 3, 4] {
        for (t, on) in topics {
            let (code, records) = fetch_partition_0(c, t, version)?;
            let want = if version < 4 && !on { 35 } else { 0 };
            ensure!(code == want, "Fetch v{version} of {t}: error {code}, want {want}");
            ensure!((records > 0) == (want == 0), "Fetch v{version} of {t}: {records} record bytes");
        }
    }
    Ok(())
}

#[test]
fn fetch_v0_to_v3_gets_unsupported_version_where_down_conversion_is_off() -> Result<()> {
    // Per topic: message.downconversion.enable.
    let mut broker = Broker::start(&[])?;
    let mut c = RawClient::connect(broker.addr())?;
    let (on, off) = (unique_topic("down-on"), unique_topic("down-off"));
    c.create_topic(&on, 1, &[])?;
    c.create_topic(&off, 1, &[("message.downconversion.enable", "false")])?;
    check_down_conversion_switch(&mut c, &[(&on, true), (&off, false)])?;
    broker.check_running()?;
    // Broker-wide: log.message.downconversion.enable is the topics' default.
    let mut broker = Broker::start(&["--set", "log.message.downconversion.enable=false"])?;
    let mut c = RawClient::connect(broker.addr())?;
    let (default, on) = (unique_topic("down-default"), unique_topic("down-on"));
    c.create_topic(&default, 1, &[])?;
    c.create_topic(&on, 1, &[("message.downconversion.enable", "true")])?;
    check_down_conversion_switch(&mut c, &[(&default, false), (&on, true)])?;
    broker.check_running()
}

#[test]
fn the_admin_cli_shows_who_still_needs_the_old_protocol() -> Result<()> {
    let mut broker = Broker::start(&[])?;
    let admin = broker.admin_addr().context("no admin address")?.to_string();
    let cli = |args: &[&str]| -> Result<String> {
        let mut cmd = Command::new(karst_tests::karst_bin()?);
        cmd.args(["cluster", "legacy-clients", "--admin", &admin]).args(args).stdin(Stdio::null());
        karst_tests::broker::scrub_karst_env(&mut cmd);
        Ok(String::from_utf8_lossy(&run_checked(&mut cmd, TIMEOUT)?.stdout).into_owned())
    };
    let quiet = cli(&[])?;
    ensure!(quiet.contains("No pre-0.11 requests"), "before any old client:\n{quiet}");
    let topic = unique_topic("cli-legacy");
    let mut c = RawClient::connect(broker.addr())?;
    c.create_topic(&topic, 1, &[])?;
    ensure!(produce_set(&mut c, &topic, 0, message_set(0, 0, &[b"one", b"two", b"three"])?)? == (0, 0), "Produce v0");
    ensure!(fetch_partition_0(&mut c, &topic, 1)?.0 == 0, "Fetch v1");
    let text = cli(&[])?;
    ensure!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Produce", "v0", "1"]), "Produce v0 not listed:\n{text}");
    ensure!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [topic.as_str(), "3", "3"]), "{topic} not listed:\n{text}");
    let json: serde_json::Value = serde_json::from_str(&cli(&["--output", "json"])?)?;
    let fetch_v1 =
        json["requests"].as_array().into_iter().flatten().any(|r| r["api"] == "Fetch" && r["version"] == 1 && r["requests"] == 1.0);
    ensure!(fetch_v1, "Fetch v1 not in the JSON: {json}");
    broker.check_running()
}
