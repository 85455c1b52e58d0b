//! Hostile and malformed input over the raw protocol client. After every case the
//! broker must still serve: a fresh connection gets a valid ApiVersions response, and
//! a bystander connection opened before the bad input still works.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, MetadataRequest};
use karst_tests::raw::{decode_response, frame_v1, legacy_message_set_v1, record_batch, topic_name, RawClient, ReadOutcome};
use karst_tests::{unique_topic, Broker};

const NONE: i16 = 0;
const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_RECORD: i16 = 87;

/// How long the broker may take to hang up on bad input.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// A broker plus a bystander connection that has completed one ApiVersions exchange.
struct Case {
    broker: Broker,
    bystander: RawClient,
}

impl Case {
    fn start(extra_args: &[&str]) -> Result<Case> {
        let broker = Broker::start(extra_args)?;
        let mut bystander = RawClient::connect(broker.addr())?;
        bystander.api_versions().context("bystander before the bad input")?;
        Ok(Case { broker, bystander })
    }

    fn connect(&self) -> Result<RawClient> {
        RawClient::connect(self.broker.addr())
    }

    /// The broker process is alive, a new connection and the bystander both get a
    /// valid ApiVersions response.
    fn check_still_serving(&mut self) -> Result<()> {
        self.broker.check_running()?;
        self.connect()?.api_versions().context("fresh connection after the bad input")?;
        self.bystander.api_versions().context("bystander connection after the bad input")?;
        Ok(())
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failure reproduces.
fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_be_bytes());
    }
    out.truncate(len);
    out
}

// ---- a) frame length prefix -------------------------------------------------------

fn bad_length_prefix(prefix: [u8; 4]) -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    c.write_raw(&prefix)?;
    // A few bytes of "body": the broker must not wait for the rest of 2 GiB.
    c.write_raw_lenient(&[0u8; 64])?;
    c.expect_closed(CLOSE_WITHIN).with_context(|| format!("length prefix {prefix:02x?}"))?;
    case.check_still_serving()
}

#[test]
fn a_length_prefix_i32_max_closes_the_connection() -> Result<()> {
    bad_length_prefix(0x7fff_ffffi32.to_be_bytes())
}

#[test]
fn a_negative_length_prefix_closes_the_connection() -> Result<()> {
    bad_length_prefix((-2i32).to_be_bytes())
}

#[test]
fn a_length_just_over_socket_request_max_bytes_closes_the_connection() -> Result<()> {
    const LIMIT: i32 = 1 << 20;
    let limit = format!("socket.request.max.bytes={LIMIT}");
    let mut case = Case::start(&["--set", &limit])?;
    let mut c = case.connect()?;
    c.write_raw(&(LIMIT + 1).to_be_bytes())?;
    c.write_raw_lenient(&[0u8; 64])?;
    c.expect_closed(CLOSE_WITHIN)?;
    // A request below the limit on another connection is fine.
    let mut ok = case.connect()?;
    let padding = pseudo_random(1000, 7);
    let topic = unique_topic("limit");
    ok.create_topic(&topic, 1, &[])?;
    let r = ok.produce(&topic, 0, record_batch(&[(None, Some(&padding))], 1), 8)?;
    ensure!(r.error_code == NONE, "produce under the limit: {r:?}");
    case.check_still_serving()
}

// ---- b) random bytes -----------------------------------------------------------------

#[test]
fn b_64k_of_random_bytes_closes_the_connection() -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut bytes = pseudo_random(64 * 1024, 0x9e37_79b9_7f4a_7c15);
    // A frame that spans exactly the buffer, so the broker has a whole "request" of
    // garbage to parse rather than waiting for more.
    let body_len = (bytes.len() - 4) as i32;
    bytes[..4].copy_from_slice(&body_len.to_be_bytes());
    let api_key = i16::from_be_bytes([bytes[4], bytes[5]]);
    ensure!(ApiKey::try_from(api_key).is_err(), "seed produced a real api key {api_key}; pick another seed");
    let mut c = case.connect()?;
    c.write_raw_lenient(&bytes)?;
    c.expect_closed(CLOSE_WITHIN)?;
    case.check_still_serving()
}

#[test]
fn b_random_bytes_without_framing_close_the_connection() -> Result<()> {
    let mut case = Case::start(&[])?;
    // First byte 0xa7: a negative length, whatever follows.
    let mut bytes = pseudo_random(64 * 1024, 42);
    bytes[0] = 0xa7;
    let mut c = case.connect()?;
    c.write_raw_lenient(&bytes)?;
    c.expect_closed(CLOSE_WITHIN)?;
    case.check_still_serving()
}

// ---- c) truncated request --------------------------------------------------------------

#[test]
fn c_truncated_request_then_half_close() -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    let mut partial = 100i32.to_be_bytes().to_vec();
    partial.extend_from_slice(&frame_v1(18, 0, 1, &[])[4..]);
    partial.truncate(4 + 10);
    c.write_raw(&partial)?;
    c.shutdown_write()?;
    c.expect_closed(CLOSE_WITHIN)?;
    case.check_still_serving()
}

#[test]
fn c_truncated_request_then_close() -> Result<()> {
    let mut case = Case::start(&[])?;
    for _ in 0..10 {
        let mut c = case.connect()?;
        let mut partial = 100i32.to_be_bytes().to_vec();
        partial.extend_from_slice(&[0u8, 18, 0, 0, 0, 0, 0, 1, 0, 0]);
        c.write_raw(&partial)?;
        drop(c);
    }
    case.check_still_serving()
}

// ---- d) CRC ----------------------------------------------------------------------------------

#[test]
fn d_produce_with_a_wrong_crc_is_corrupt_message() -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    let topic = unique_topic("crc");
    c.create_topic(&topic, 1, &[])?;
    let max = c.version_for(ApiKey::Produce)?;
    let mut next_offset = 0;
    for version in [3, 7, 8, max] {
        let good = record_batch(&[(Some(b"k"), Some(b"good value"))], 1000);
        let r = c.produce(&topic, 0, good.clone(), version)?;
        ensure!(r.error_code == NONE, "v{version} valid batch: {r:?}");
        ensure!(r.base_offset == next_offset, "v{version} valid batch at {}", r.base_offset);
        next_offset += 1;

        let mut bad = good;
        let last = bad.len() - 3; // inside the value: covered by the CRC
        bad[last] ^= 0x20;
        let r = c.produce(&topic, 0, bad, version)?;
        ensure!(
            r.error_code == CORRUPT_MESSAGE,
            "Produce v{version} with a wrong CRC: error {} (want CORRUPT_MESSAGE 2): {r:?}",
            r.error_code
        );
    }
    // Nothing of the corrupt batches was appended.
    let r = c.produce(&topic, 0, record_batch(&[(None, Some(b"after"))], 1), 8)?;
    ensure!(r.error_code == NONE && r.base_offset == next_offset, "after corrupt batches: {r:?}");
    c.api_versions().context("same connection after CORRUPT_MESSAGE")?;
    case.check_still_serving()
}

// ---- e) unknown API key / unsupported versions ---------------------------------------------------

#[test]
fn e_unknown_api_key_closes_the_connection() -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    c.write_raw(&frame_v1(1000, 0, 7, &[0, 0, 0, 0]))?;
    c.expect_closed(CLOSE_WITHIN)?;
    case.check_still_serving()
}

#[test]
fn e_api_versions_v99_answers_v0_unsupported_version() -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    // As a newer client would send it: request header v2 (flexible), ApiVersions v3 body.
    let correlation_id: i32 = 4242;
    let mut msg = Vec::new();
    msg.extend_from_slice(&18i16.to_be_bytes());
    msg.extend_from_slice(&99i16.to_be_bytes());
    msg.extend_from_slice(&correlation_id.to_be_bytes());
    msg.extend_from_slice(&11i16.to_be_bytes());
    msg.extend_from_slice(b"karst-tests");
    msg.push(0); // header tagged fields
    for s in [&b"karst-tests"[..], b"9.9.9"] {
        msg.push(s.len() as u8 + 1);
        msg.extend_from_slice(s);
    }
    msg.push(0); // body tagged fields
    let mut frame = (msg.len() as i32).to_be_bytes().to_vec();
    frame.extend(msg);
    c.write_raw(&frame)?;
    let body = match c.read_frame()? {
        ReadOutcome::Frame(f) => f,
        ReadOutcome::Closed => {
            bail!("broker closed the connection on ApiVersions v99 (KIP-511 wants a v0 response)")
        }
    };
    let resp: ApiVersionsResponse =
        decode_response(body, 0, correlation_id).context("decoding the answer to ApiVersions v99 as an ApiVersions v0 response")?;
    ensure!(resp.error_code == UNSUPPORTED_VERSION, "error code {} (want UNSUPPORTED_VERSION 35)", resp.error_code);
    let av = resp.api_keys.iter().find(|k| k.api_key == 18).context("api_keys does not list ApiVersions")?;
    ensure!(av.max_version >= 3, "ApiVersions max version {}", av.max_version);
    // The client retries at a supported version on the same connection.
    c.api_versions().context("same connection after UNSUPPORTED_VERSION")?;
    case.check_still_serving()
}

#[test]
fn e_produce_v0_with_a_message_set_is_stored_and_answered_in_v0_layout() -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    c.create_topic("t", 1, &[])?;
    let set = legacy_message_set_v1(None, Some(b"v0"), 1);
    let mut body = Vec::new();
    body.extend_from_slice(&1i16.to_be_bytes()); // acks
    body.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    body.extend_from_slice(&(b"t".len() as i16).to_be_bytes());
    body.extend_from_slice(b"t");
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&(set.len() as i32).to_be_bytes());
    body.extend_from_slice(&set);
    c.write_raw(&frame_v1(0, 0, 9, &body))?;
    let ReadOutcome::Frame(r) = c.read_frame()? else { bail!("connection closed on Produce v0") };
    // correlation id; [topic: name, [partition, error, base offset]]; nothing else in v0.
    let mut expect = 9i32.to_be_bytes().to_vec();
    expect.extend_from_slice(&1i32.to_be_bytes());
    expect.extend_from_slice(&1i16.to_be_bytes());
    expect.extend_from_slice(b"t");
    expect.extend_from_slice(&1i32.to_be_bytes());
    expect.extend_from_slice(&0i32.to_be_bytes());
    expect.extend_from_slice(&0i16.to_be_bytes());
    expect.extend_from_slice(&0i64.to_be_bytes());
    ensure!(r[..] == expect[..], "Produce v0 answer {:?}, want {expect:?} (stored at offset 0, no error)", &r[..]);
    case.check_still_serving()
}

// ---- f) invalid topic names ---------------------------------------------------------------------

const INVALID_NAMES: [&str; 6] = ["", ".", "..", "a/b", "has space", "LONG"];

fn invalid_names() -> Vec<String> {
    INVALID_NAMES.iter().map(|n| if *n == "LONG" { "x".repeat(250) } else { n.to_string() }).collect()
}

#[test]
fn f_create_topics_with_invalid_names_is_invalid_topic_exception() -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    for name in invalid_names() {
        let r = c.create_topic_result(&name, 1, &[])?;
        ensure!(
            r.error_code == INVALID_TOPIC_EXCEPTION,
            "CreateTopics {:?} (len {}): error {} {:?} (want INVALID_TOPIC_EXCEPTION 17)",
            if name.len() > 20 { "x*250" } else { name.as_str() },
            name.len(),
            r.error_code,
            r.error_message
        );
    }
    // None of them exists afterwards.
    let version = c.version_for(ApiKey::Metadata)?;
    let all = c.send(&MetadataRequest::default().with_topics(None), version)?;
    let bad = invalid_names();
    for t in &all.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        ensure!(!bad.contains(&name), "invalid topic {name:?} was created");
    }
    case.check_still_serving()
}

#[test]
fn f_metadata_auto_create_of_an_invalid_name_is_invalid_topic_exception() -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    let version = c.version_for(ApiKey::Metadata)?;
    for name in ["has space", "a/b", ".."] {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(name)))]))
            .with_allow_auto_topic_creation(true);
        let resp = c.send(&req, version)?;
        let t = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            .with_context(|| format!("Metadata v{version} has no entry for {name:?}: {resp:?}"))?;
        ensure!(
            t.error_code == INVALID_TOPIC_EXCEPTION,
            "Metadata v{version} auto-create {name:?}: error {} (want INVALID_TOPIC_EXCEPTION 17)",
            t.error_code
        );
    }
    case.check_still_serving()
}

// ---- g) unknown partition -----------------------------------------------------------------------

#[test]
fn g_produce_to_a_missing_partition_is_unknown_topic_or_partition() -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    let topic = unique_topic("one-partition");
    c.create_topic(&topic, 1, &[])?;
    let r = c.produce(&topic, 5, record_batch(&[(None, Some(b"x"))], 1), 8)?;
    ensure!(
        r.error_code == UNKNOWN_TOPIC_OR_PARTITION,
        "Produce v8 to partition 5 of a 1-partition topic: error {} (want 3): {r:?}",
        r.error_code
    );
    let r = c.produce(&topic, 0, record_batch(&[(None, Some(b"x"))], 1), 8)?;
    ensure!(r.error_code == NONE, "partition 0 of the same topic: {r:?}");
    case.check_still_serving()
}

// ---- h) max.message.bytes -----------------------------------------------------------------------

#[test]
fn h_batch_over_max_message_bytes_is_message_too_large() -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    let topic = unique_topic("small-messages");
    c.create_topic(&topic, 1, &[("max.message.bytes", "1000")])?;
    let small = pseudo_random(500, 1);
    let r = c.produce(&topic, 0, record_batch(&[(None, Some(&small))], 1), 8)?;
    ensure!(r.error_code == NONE, "~570-byte batch under max.message.bytes=1000: {r:?}");
    let big = pseudo_random(2000, 2);
    let batch = record_batch(&[(None, Some(&big))], 1);
    let batch_len = batch.len();
    ensure!(batch_len > 2000);
    let r = c.produce(&topic, 0, batch, 8)?;
    ensure!(
        r.error_code == MESSAGE_TOO_LARGE,
        "{batch_len}-byte batch with max.message.bytes=1000: error {} (want MESSAGE_TOO_LARGE 10): {r:?}",
        r.error_code
    );
    let r = c.produce(&topic, 0, record_batch(&[(None, Some(&small))], 1), 8)?;
    ensure!(r.error_code == NONE && r.base_offset == 1, "after the refused batch: {r:?}");
    case.check_still_serving()
}

// ---- i) legacy message format ------------------------------------------------------------------

#[test]
fn i_legacy_magic_1_message_set_is_invalid_record() -> Result<()> {
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    let topic = unique_topic("legacy");
    c.create_topic(&topic, 1, &[])?;
    let set = legacy_message_set_v1(Some(b"key"), Some(b"legacy value"), 1_700_000_000_000);
    let r = c.produce(&topic, 0, set.clone(), 3)?;
    ensure!(
        r.error_code == INVALID_RECORD,
        "Produce v3 with a magic 1 message set: error {} (want INVALID_RECORD 87): {r:?}",
        r.error_code
    );
    let r = c.produce(&topic, 0, set, 8)?;
    ensure!(
        r.error_code == INVALID_RECORD,
        "Produce v8 with a magic 1 message set: error {} (want INVALID_RECORD 87): {r:?}",
        r.error_code
    );
    let msg = r.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default().to_lowercase();
    ensure!(
        msg.contains("legacy") || msg.contains("magic"),
        "Produce v8 error_message {:?} does not mention the legacy format",
        r.error_message
    );
    let r = c.produce(&topic, 0, record_batch(&[(None, Some(b"v2"))], 1), 8)?;
    ensure!(r.error_code == NONE && r.base_offset == 0, "v2 batch after the refusals: {r:?}");
    case.check_still_serving()
}

#[test]
fn raw_client_sanity_produce_and_metadata() -> Result<()> {
    // Guards the raw client itself: if this fails, the other cases prove nothing.
    let mut case = Case::start(&[])?;
    let mut c = case.connect()?;
    let topic = unique_topic("sanity");
    c.create_topic(&topic, 2, &[])?;
    for p in 0..2 {
        for expected in 0..3 {
            let r = c.produce(&topic, p, record_batch(&[(Some(b"k"), Some(b"v"))], 1), 8)?;
            ensure!(r.error_code == NONE && r.base_offset == expected, "{r:?}");
        }
    }
    let version = c.version_for(ApiKey::Metadata)?;
    let md = c.send(
        &MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(&topic)))])),
        version,
    )?;
    let t = md.topics.first().context("no topic in metadata")?;
    ensure!(t.error_code == NONE && t.partitions.len() == 2, "{t:?}");
    ensure!(
        md.brokers.iter().any(|b| b.port == i32::from(case.broker.addr().port())),
        "metadata does not advertise the bound port: {:?}",
        md.brokers
    );
    case.check_still_serving()
}
