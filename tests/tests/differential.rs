//! Apache Kafka is the reference: the same requests go to a Kafka 4.x node and to Karst,
//! over the raw protocol client, and what a client can observe is compared.
//!
//! - ApiVersions: every API either broker advertises, with both version ranges, printed
//!   as a table. An API Kafka advertises that Karst lacks fails the test unless it is in
//!   [`KNOWN_GAPS`] (with its reason); so does a version of an API both serve that Kafka
//!   advertises and Karst lacks, unless [`OWNED_ELSEWHERE`] names it with the issue that
//!   owns it; a listed gap that Karst now serves, or that Kafka no longer advertises,
//!   fails it too, so the lists stay true.
//! - Error codes of invalid requests (bad topic names, zero partitions, an unknown topic
//!   config, Produce to a missing partition, Fetch past the log end, ListOffsets and
//!   Metadata for an unknown topic), each at the lowest and the highest version both
//!   brokers serve: any difference fails the test with both answers.
//!
//! One test, so one Kafka JVM serves every scenario (nextest runs each test in its own
//! process). Skipped, saying why, where Kafka cannot run (no cached jars and no Maven,
//! or no Java); `scripts/test-all.sh` resolves Kafka first, so it never skips there.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, FetchRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use karst_tests::kafka::KafkaBroker;
use karst_tests::raw::{produce_request, record_batch, topic_name, KeyValue, RawClient};
use karst_tests::{unique_topic, wait_for, Broker, KafkaUnavailable};

#[path = "differential/admin_apis.rs"]
mod admin_apis;
#[path = "differential/authorization.rs"]
mod authorization;
#[path = "differential/cluster.rs"]
mod cluster;
#[path = "differential/rebalance.rs"]
mod rebalance;
#[path = "differential/responses.rs"]
mod responses;
#[path = "differential/transactions.rs"]
mod transactions;

/// API keys newer than the kafka-protocol crate's table, by their Kafka 4.4 names.
const STREAMS_GROUP_HEARTBEAT: i16 = 88;
const STREAMS_GROUP_DESCRIBE: i16 = 89;
const STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE: i16 = 93;
const UNREGISTER_CONTROLLER: i16 = 94;
const NEWER_KEYS: &[(i16, &str)] = &[
    (STREAMS_GROUP_HEARTBEAT, "StreamsGroupHeartbeat"),
    (STREAMS_GROUP_DESCRIBE, "StreamsGroupDescribe"),
    (STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE, "StreamsGroupTopologyDescriptionUpdate"),
    (UNREGISTER_CONTROLLER, "UnregisterController"),
];

/// APIs Kafka 4.x advertises that Karst does not serve yet, each with its reason (and
/// the issue that owns it, where one does). The test fails on any other missing API,
/// and on an entry here that is no longer a gap.
const KNOWN_GAPS: &[(i16, &str)] = &[
    // Security (issue 21).
    (ApiKey::CreateDelegationToken as i16, "delegation tokens need SASL first (issue 21); not planned yet"),
    (ApiKey::RenewDelegationToken as i16, "delegation tokens need SASL first (issue 21); not planned yet"),
    (ApiKey::ExpireDelegationToken as i16, "delegation tokens need SASL first (issue 21); not planned yet"),
    (ApiKey::DescribeDelegationToken as i16, "delegation tokens need SASL first (issue 21); not planned yet"),
    // KIP-932 share-coordinator APIs: Karst's group coordinator keeps share state, read and
    // written by partition leaders with ReadShareGroupState and WriteShareGroupState.
    (
        ApiKey::InitializeShareGroupState as i16,
        "share-coordinator API Karst does not need: its group coordinator starts share state on first read and deletes it with the group",
    ),
    (
        ApiKey::DeleteShareGroupState as i16,
        "share-coordinator API Karst does not need: its group coordinator starts share state on first read and deletes it with the group",
    ),
    (
        ApiKey::ReadShareGroupStateSummary as i16,
        "share-coordinator API Karst does not need: its group coordinator starts share state on first read and deletes it with the group",
    ),
    // No issue owns these yet.
    (ApiKey::AlterReplicaLogDirs as i16, "one log directory per broker (no JBOD): nothing to move between directories"),
    (ApiKey::ListConfigResources as i16, "listing config resources (and KIP-714 client metrics) not implemented; no issue yet"),
    (ApiKey::DescribeQuorum as i16, "the controller quorum is openraft, not KRaft; its state is not mapped to DescribeQuorum yet"),
    (ApiKey::AddRaftVoter as i16, "the controller quorum's voters are static (controller.quorum.voters); no KIP-853 changes"),
    (ApiKey::RemoveRaftVoter as i16, "the controller quorum's voters are static (controller.quorum.voters); no KIP-853 changes"),
    (UNREGISTER_CONTROLLER, "the controller quorum's voters are static (controller.quorum.voters); no controller removal"),
    (ApiKey::UpdateFeatures as i16, "Karst finalizes no feature levels (ApiVersions lists none), so there is none to update"),
    (ApiKey::UnregisterBroker as i16, "decommissioning a broker from the cluster metadata not implemented; no issue yet"),
    (STREAMS_GROUP_HEARTBEAT, "KIP-1071 streams groups not implemented; no issue yet (Kafka Streams uses classic groups by default)"),
    (STREAMS_GROUP_DESCRIBE, "KIP-1071 streams groups not implemented; no issue yet"),
    (STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE, "KIP-1071 streams groups not implemented; no issue yet"),
];

/// Versions of APIs Karst serves that Kafka 4.x advertises beyond Karst's range, each
/// owned by another piece of work: (API key, first and last version Karst lacks, why).
/// The test fails when Kafka advertises a version Karst lacks that is not listed here,
/// and when an entry no longer matches what Karst lacks (served now, or Kafka's range
/// moved), so the list stays true.
const OWNED_ELSEWHERE: &[(i16, i16, i16, &str)] = &[
    (ApiKey::TxnOffsetCommit as i16, 6, 6, "v6 is beyond the kafka-protocol codec Karst builds on (it ends at v5); clients use v5 for transactions v2"),
    (ApiKey::WriteTxnMarkers as i16, 2, 2, "v2 names the transaction version; Karst's brokers write markers to each other with v1 (the kafka-protocol codec ends there), a transactions v2 marker carrying its bumped epoch either way"),
    (ApiKey::OffsetCommit as i16, 10, 10, "v10 names topics by id (KIP-848's follow-up): beyond the kafka-protocol codec Karst builds on (it ends at v9)"),
    (ApiKey::OffsetFetch as i16, 10, 10, "v10 names topics by id (KIP-848's follow-up): beyond the kafka-protocol codec Karst builds on (it ends at v9)"),
    (ApiKey::FindCoordinator as i16, 6, 6, "v6 share-group coordinator keys (KIP-932): share groups, issue 22"),
    (ApiKey::ShareFetch as i16, 2, 2, "v2 (KIP-1206 acquire modes, KIP-1222 renew) is beyond the kafka-protocol codec Karst builds on (it ends at v1)"),
    (ApiKey::ShareAcknowledge as i16, 2, 2, "v2 (KIP-1222 renew) is beyond the kafka-protocol codec Karst builds on (it ends at v1)"),
    (ApiKey::WriteShareGroupState as i16, 1, 1, "v1 (KIP-1226 DeliveryCompleteCount) is beyond the kafka-protocol codec Karst builds on (it ends at v0)"),
    (ApiKey::DescribeShareGroupOffsets as i16, 1, 1, "v1 is beyond the kafka-protocol codec Karst builds on (it ends at v0)"),
];

/// How long a freshly created topic may take to get a leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka with `overrides`, or `None` (the reason printed) where it cannot run here.
fn kafka_or_skip(overrides: &[(&str, &str)]) -> Result<Option<KafkaBroker>> {
    match KafkaBroker::start_with(overrides) {
        Ok(kafka) => Ok(Some(kafka)),
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                Ok(None)
            }
            None => Err(e),
        },
    }
}

#[test]
fn karst_answers_like_apache_kafka() -> Result<()> {
    let started = Instant::now();
    // Kafka first: where it cannot run, the test skips before starting anything else.
    let Some(kafka) = kafka_or_skip(&[])? else { return Ok(()) };
    // Kafka's fixture starts groups without the initial rebalance delay; so does Karst here.
    let karst = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"])?;
    println!(
        "Apache Kafka {} ready in {:.1?} (JVM spawn to ready; {:.1?} since the test started), Karst at {}",
        kafka.version(),
        kafka.started_in(),
        started.elapsed(),
        karst.addr()
    );

    let mut k = RawClient::connect(kafka.addr())?;
    let mut r = RawClient::connect(karst.addr())?;
    let kafka_versions = k.api_versions().context("Kafka's ApiVersions")?;
    let karst_versions = r.api_versions().context("Karst's ApiVersions")?;

    let mut failures = Vec::new();
    if let Err(e) = compare_api_versions(&kafka_versions, &karst_versions) {
        failures.push(format!("{e:#}"));
    }

    let mut pair = Pair { kafka: k, karst: r, kafka_versions, karst_versions };
    let outcomes = run_scenarios(&mut pair)?;
    let differences = print_outcomes(&outcomes);
    if differences > 0 {
        failures.push(format!(
            "{differences} of {} answers differ from Kafka's (the lines marked DIFFERENT above; both answers printed)",
            outcomes.len()
        ));
    }
    let fixture = responses::prepare(&mut pair)?;
    let compared = responses::run(&mut pair, &fixture)?;
    match responses::report(&compared) {
        Ok((_, 0, _, 0)) => {}
        Ok((total, unlisted, _, failed)) => failures.push(format!(
            "responses: {unlisted} unlisted field differences and {failed} failed requests in {total} comparisons (marked DIFFERENT/FAILED above)"
        )),
        Err(e) => failures.push(format!("{e:#}")),
    }
    match rebalance::compare(&pair, kafka.addr(), karst.addr(), fixture.topic()) {
        Ok(0) => {}
        Ok(n) => failures.push(format!("a group through a rebalance: {n} steps differ (marked DIFFERENT above)")),
        Err(e) => failures.push(format!("a group through a rebalance: {e:#}")),
    }
    if let Err(e) = compare_admin_apis(&mut pair) {
        failures.push(format!("admin APIs: {e:#}"));
    }
    match transactions::compare(&pair, kafka.addr(), karst.addr()) {
        Ok(0) => {}
        Ok(n) => failures.push(format!("a transaction and its bad inputs: {n} steps differ (marked DIFFERENT above)")),
        Err(e) => failures.push(format!("a transaction and its bad inputs: {e:#}")),
    }
    println!("differential test took {:.1?}", started.elapsed());
    if !failures.is_empty() {
        bail!("Karst differs from Apache Kafka {}:\n- {}", kafka.version(), failures.join("\n- "));
    }
    Ok(())
}

/// Authorization: Kafka and Karst with the ACL authorizer, the same ACLs and the same
/// requests (`differential/authorization.rs`).
#[test]
fn karst_authorizes_like_apache_kafka() -> Result<()> {
    let authorizer =
        [("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"), ("allow.everyone.if.no.acl.found", "true")];
    let Some(kafka) = kafka_or_skip(&authorizer)? else { return Ok(()) };
    let mut args = vec!["--set".to_string(), "group.initial.rebalance.delay.ms=0".to_string()];
    for (k, v) in authorizer {
        args.extend(["--set".to_string(), format!("{k}={v}")]);
    }
    let karst = Broker::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let (mut k, mut r) = (RawClient::connect(kafka.addr())?, RawClient::connect(karst.addr())?);
    let (kafka_versions, karst_versions) = (k.api_versions()?, r.api_versions()?);
    let mut pair = Pair { kafka: k, karst: r, kafka_versions, karst_versions };
    let compared = authorization::run(&mut pair)?;
    match authorization::report(&compared)? {
        0 => Ok(()),
        n => bail!("{n} authorization answers differ from Kafka {} or failed (marked DIFFERENT/FAILED above)", kafka.version()),
    }
}

/// Three Kafka nodes and three Karst nodes: replication as a client sees it, before and
/// after a node dies (a test of its own: nextest runs it beside the single-node one).
#[test]
fn a_karst_cluster_answers_like_a_kafka_cluster() -> Result<()> {
    match cluster::compare()? {
        None | Some(0) => Ok(()),
        Some(n) => bail!("three nodes: {n} observations differ from Kafka's (marked DIFFERENT above)"),
    }
}

/// DescribeLogDirs, DescribeTopicPartitions, ElectLeaders and DescribeProducers
/// (`differential/admin_apis.rs`); fails on any unlisted difference.
fn compare_admin_apis(pair: &mut Pair) -> Result<()> {
    let fixture = admin_apis::prepare(pair)?;
    let compared = admin_apis::run(pair, &fixture)?;
    match admin_apis::report(&compared)? {
        0 => Ok(()),
        n => bail!("{n} comparisons differ or failed (marked DIFFERENT/FAILED above)"),
    }
}

// ---- ApiVersions -------------------------------------------------------------------------

fn ranges(resp: &ApiVersionsResponse) -> BTreeMap<i16, (i16, i16)> {
    resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect()
}

fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(()) => NEWER_KEYS.iter().find(|(k, _)| *k == key).map_or_else(|| format!("key {key}"), |(_, name)| name.to_string()),
    }
}

/// `v3` or `v3-v5`.
fn versions_text(lo: i16, hi: i16) -> String {
    if lo == hi {
        format!("v{lo}")
    } else {
        format!("v{lo}-v{hi}")
    }
}

fn show_range(r: Option<&(i16, i16)>) -> String {
    r.map_or_else(|| "-".to_string(), |(lo, hi)| format!("{lo}-{hi}"))
}

/// Prints the comparison table; fails on an unlisted gap or a stale known gap.
fn compare_api_versions(kafka: &ApiVersionsResponse, karst: &ApiVersionsResponse) -> Result<()> {
    let (kafka, karst) = (ranges(kafka), ranges(karst));
    let known: BTreeMap<i16, &str> = KNOWN_GAPS.iter().copied().collect();
    let mut table = String::from("| key | API | Kafka 4.x | Karst | comparison |\n|---:|---|---|---|---|\n");
    let mut unlisted = Vec::new();
    let (mut same, mut gaps) = (0, 0);
    for key in kafka.keys().chain(karst.keys()).copied().collect::<BTreeSet<i16>>() {
        let (kr, rr) = (kafka.get(&key), karst.get(&key));
        let note = match (kr, rr) {
            (Some(a), Some(b)) if a == b => {
                same += 1;
                "same".to_string()
            }
            (Some(a), Some(b)) => {
                let mut parts = Vec::new();
                if b.0 < a.0 {
                    parts.push(format!("Karst also serves older {}", versions_text(b.0, a.0 - 1)));
                }
                if b.0 > a.0 {
                    parts.push(format!("Karst lacks {}", versions_text(a.0, b.0 - 1)));
                }
                if b.1 < a.1 {
                    parts.push(format!("Karst lacks {}", versions_text(b.1 + 1, a.1)));
                }
                if b.1 > a.1 {
                    parts.push(format!("Karst also serves {}", versions_text(a.1 + 1, b.1)));
                }
                parts.join("; ")
            }
            (Some(_), None) => {
                gaps += 1;
                match known.get(&key) {
                    Some(why) => format!("known gap: {why}"),
                    None => {
                        unlisted.push(api_name(key));
                        "MISSING in Karst (not a known gap)".to_string()
                    }
                }
            }
            (None, Some(_)) => "Karst only".to_string(),
            (None, None) => unreachable!("key {key} came from one of the maps"),
        };
        let _ = writeln!(table, "| {key} | {} | {} | {} | {note} |", api_name(key), show_range(kr), show_range(rr));
    }
    println!("ApiVersions v3, Kafka vs Karst ({} APIs from Kafka, {} from Karst):\n{table}", kafka.len(), karst.len());
    println!("{same} APIs with the same range, {gaps} APIs Kafka advertises and Karst lacks ({} known gaps)", known.len());

    let mut problems = Vec::new();
    if !unlisted.is_empty() {
        problems.push(format!("Kafka advertises APIs Karst lacks that KNOWN_GAPS does not list: {}", unlisted.join(", ")));
    }
    problems.extend(version_gaps(&kafka, &karst));
    if known.len() != KNOWN_GAPS.len() {
        problems.push("KNOWN_GAPS lists an API twice".to_string());
    }
    for (key, why) in KNOWN_GAPS {
        let name = api_name(*key);
        if karst.contains_key(key) {
            problems.push(format!("{name} is listed in KNOWN_GAPS ({why}) but Karst advertises it now: remove it from the list"));
        } else if !kafka.contains_key(key) {
            problems.push(format!("{name} is listed in KNOWN_GAPS but Kafka does not advertise it: remove it from the list"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("{}", problems.join("\n- ")))
    }
}

/// The versions of APIs both serve that Kafka advertises and Karst lacks, against
/// [`OWNED_ELSEWHERE`]: one problem per unlisted gap and per stale entry.
fn version_gaps(kafka: &BTreeMap<i16, (i16, i16)>, karst: &BTreeMap<i16, (i16, i16)>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut lacking = BTreeMap::new();
    for (key, (klo, khi)) in kafka {
        let Some((rlo, rhi)) = karst.get(key) else { continue };
        if rhi < khi {
            lacking.insert(*key, (rhi + 1, *khi));
        }
        if rlo > klo {
            problems.push(format!("Karst lacks {} {} that Kafka advertises", api_name(*key), versions_text(*klo, rlo - 1)));
        }
    }
    let mut listed = BTreeSet::new();
    for (key, from, to, why) in OWNED_ELSEWHERE {
        let name = api_name(*key);
        if !listed.insert(*key) {
            problems.push(format!("OWNED_ELSEWHERE lists {name} twice"));
        }
        match lacking.get(key) {
            Some(&(lo, hi)) if (lo, hi) == (*from, *to) => println!("{name} {}: owned elsewhere: {why}", versions_text(lo, hi)),
            Some(&(lo, hi)) => problems.push(format!(
                "OWNED_ELSEWHERE lists {name} {} ({why}) but Karst lacks {}: update the entry",
                versions_text(*from, *to),
                versions_text(lo, hi)
            )),
            None => problems.push(format!(
                "OWNED_ELSEWHERE lists {name} {} ({why}) but Karst serves every version of it Kafka advertises: remove the entry",
                versions_text(*from, *to)
            )),
        }
    }
    for (key, (lo, hi)) in &lacking {
        if !listed.contains(key) {
            problems.push(format!(
                "Kafka advertises {} {} that Karst lacks and OWNED_ELSEWHERE does not list: serve them, or list them with the issue that owns them",
                api_name(*key),
                versions_text(*lo, *hi)
            ));
        }
    }
    problems
}

// ---- error codes of invalid requests ---------------------------------------------------------

/// Both connections and what each broker advertised.
struct Pair {
    kafka: RawClient,
    karst: RawClient,
    kafka_versions: ApiVersionsResponse,
    karst_versions: ApiVersionsResponse,
}

impl Pair {
    /// The lowest and highest versions of `key` (not below `floor`) that Kafka, Karst
    /// and the raw client's codecs all serve; one entry if they coincide.
    fn versions(&self, key: ApiKey, floor: i16) -> Result<Vec<i16>> {
        let find =
            |resp: &ApiVersionsResponse| resp.api_keys.iter().find(|k| k.api_key == key as i16).map(|k| (k.min_version, k.max_version));
        let kafka = find(&self.kafka_versions).ok_or_else(|| anyhow!("Kafka does not advertise {key:?}"))?;
        let karst = find(&self.karst_versions).ok_or_else(|| anyhow!("Karst does not advertise {key:?}"))?;
        let codec = key.valid_versions();
        let lo = kafka.0.max(karst.0).max(codec.min).max(floor);
        let hi = kafka.1.min(karst.1).min(codec.max);
        if lo > hi {
            bail!("no version of {key:?} from v{floor} that both serve: Kafka {kafka:?}, Karst {karst:?}");
        }
        Ok(if lo == hi { vec![lo] } else { vec![lo, hi] })
    }
}

/// What one broker answered: an error code and, where the response has one, its message.
#[derive(Debug, Clone)]
struct Answer {
    code: i16,
    message: Option<String>,
}

impl Answer {
    fn new(code: i16, message: Option<&StrBytes>) -> Answer {
        Answer { code, message: message.map(|m| m.to_string()) }
    }

    fn show(&self) -> String {
        let name = match ResponseError::try_from_code(self.code) {
            None => "NONE".to_string(),
            Some(e) => format!("{e:?}"),
        };
        match &self.message {
            Some(m) => format!("{} {name} ({m:?})", self.code),
            None => format!("{} {name}", self.code),
        }
    }
}

struct Outcome {
    scenario: String,
    kafka: Result<Answer, String>,
    karst: Result<Answer, String>,
}

impl Outcome {
    fn same(&self) -> bool {
        matches!((&self.kafka, &self.karst), (Ok(a), Ok(b)) if a.code == b.code)
    }
}

/// A topic prepared on both brokers for the scenarios that need an existing one: one
/// partition holding one record, and its id on each side (Fetch v13+ names topics by id).
struct Existing {
    name: String,
    kafka_id: uuid::Uuid,
    karst_id: uuid::Uuid,
}

impl Existing {
    fn id(&self, side: Side) -> uuid::Uuid {
        match side {
            Side::Kafka => self.kafka_id,
            Side::Karst => self.karst_id,
        }
    }
}

fn run_scenarios(pair: &mut Pair) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    let mut run = |pair: &mut Pair,
                   scenario: &str,
                   key: ApiKey,
                   floor: i16,
                   ask: &dyn Fn(&mut RawClient, i16, Side) -> Result<Answer>|
     -> Result<()> {
        for version in pair.versions(key, floor)? {
            let kafka = ask(&mut pair.kafka, version, Side::Kafka).map_err(|e| format!("{e:#}"));
            let karst = ask(&mut pair.karst, version, Side::Karst).map_err(|e| format!("{e:#}"));
            out.push(Outcome { scenario: format!("{scenario} ({key:?} v{version})"), kafka, karst });
        }
        Ok(())
    };

    // CreateTopics from v2 (the first with an error message; Kafka 4 serves v2 and up).
    let long_name = "x".repeat(250);
    for (what, name) in [("empty name", ""), ("name with '/'", "a/b"), ("250-character name", long_name.as_str())] {
        run(pair, &format!("CreateTopics, {what}"), ApiKey::CreateTopics, 2, &|c, v, _| create_topics(c, v, name, 1, &[]))?;
    }
    run(pair, "CreateTopics, 0 partitions", ApiKey::CreateTopics, 2, &|c, v, _| create_topics(c, v, &unique_topic("diff-zero"), 0, &[]))?;
    run(pair, "CreateTopics, unknown config key", ApiKey::CreateTopics, 2, &|c, v, _| {
        create_topics(c, v, &unique_topic("diff-badcfg"), 1, &[("no.such.config", "1")])
    })?;

    let existing = prepare_topic(pair)?;
    let topic = existing.name.as_str();
    run(pair, "Produce to partition 5 of a 1-partition topic", ApiKey::Produce, 0, &|c, v, side| {
        let mut req = produce_request(topic, 5, record_batch(&[(None, Some(b"x"))], now_ms()));
        // v13+ names the topic by id.
        req.topic_data[0].topic_id = existing.id(side);
        let resp = c.send(&req, v)?;
        let p = resp
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == 5)
            .ok_or_else(|| anyhow!("no result for partition 5 in {resp:?}"))?;
        Ok(Answer::new(p.error_code, p.error_message.as_ref()))
    })?;
    run(pair, "Produce to a topic id no topic has", ApiKey::Produce, 13, &|c, v, _| {
        let mut req = produce_request("", 0, record_batch(&[(None, Some(b"x"))], now_ms()));
        req.topic_data[0].topic_id = uuid::Uuid::from_u128(0x5eed);
        let resp = c.send(&req, v)?;
        let p = resp
            .responses
            .iter()
            .filter(|t| t.topic_id == req.topic_data[0].topic_id)
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == 0)
            .ok_or_else(|| anyhow!("no result for the unknown id's partition 0 in {resp:?}"))?;
        Ok(Answer::new(p.error_code, p.error_message.as_ref()))
    })?;
    run(pair, "Fetch at offset 100 of a 1-record log", ApiKey::Fetch, 0, &|c, v, side| {
        let id = existing.id(side);
        let req =
            FetchRequest::default().with_max_wait_ms(100).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default(
            )
            .with_topic(topic_name(topic))
            .with_topic_id(id)
            .with_partitions(vec![FetchPartition::default().with_partition(0).with_fetch_offset(100).with_partition_max_bytes(1 << 20)])]);
        let resp = c.send(&req, v)?;
        if resp.error_code != 0 {
            return Ok(Answer::new(resp.error_code, None));
        }
        let p = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == 0)
            .ok_or_else(|| anyhow!("no result for partition 0 in {resp:?}"))?;
        Ok(Answer::new(p.error_code, None))
    })?;
    let unknown = unique_topic("diff-unknown");
    run(pair, "ListOffsets (latest) for an unknown topic", ApiKey::ListOffsets, 1, &|c, v, _| {
        let req = ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(&unknown))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)])]);
        let resp = c.send(&req, v)?;
        let p = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == 0)
            .ok_or_else(|| anyhow!("no result for partition 0 in {resp:?}"))?;
        Ok(Answer::new(p.error_code, None))
    })?;
    // From v4, the first version where a client can ask not to auto-create.
    run(pair, "Metadata for an unknown topic, allow_auto_topic_creation=false", ApiKey::Metadata, 4, &|c, v, _| {
        let resp = metadata(c, v, &unknown, false)?;
        let t = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == unknown))
            .ok_or_else(|| anyhow!("no entry for {unknown} in {resp:?}"))?;
        Ok(Answer::new(t.error_code, None))
    })?;
    Ok(out)
}

#[derive(Clone, Copy)]
enum Side {
    Kafka,
    Karst,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn create_topics(c: &mut RawClient, version: i16, name: &str, partitions: i32, configs: &[(&str, &str)]) -> Result<Answer> {
    let t = c.create_topic_at(version, name, partitions, 1, configs)?;
    Ok(Answer::new(t.error_code, t.error_message.as_ref()))
}

fn metadata(c: &mut RawClient, version: i16, topic: &str, auto_create: bool) -> Result<MetadataResponse> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
        .with_allow_auto_topic_creation(auto_create);
    c.send(&req, version)
}

/// Creates a 1-partition topic on both brokers, waits for its leader, produces one
/// record to it and takes its topic id from each.
fn prepare_topic(pair: &mut Pair) -> Result<Existing> {
    let name = unique_topic("diff-existing");
    let mut ids = Vec::new();
    for (side, c) in [("Kafka", &mut pair.kafka), ("Karst", &mut pair.karst)] {
        c.create_topic(&name, 1, &[]).with_context(|| format!("creating {name} on {side}"))?;
        ids.push(wait_leaders(c, &name, 1, side)?);
        produce_until_accepted(c, &name, 0, &[(Some(b"k"), Some(b"v"))], now_ms(), side)?;
    }
    Ok(Existing { name, kafka_id: ids[0], karst_id: ids[1] })
}

/// Waits until every one of `partitions` partitions of `topic` has a leader; returns
/// the topic's id.
fn wait_leaders(c: &mut RawClient, topic: &str, partitions: usize, side: &str) -> Result<uuid::Uuid> {
    let version = c.version_for(ApiKey::Metadata)?.min(12);
    wait_for(&format!("leaders for {topic} on {side}"), LEADER_TIMEOUT, || {
        let resp = metadata(c, version, topic, false).ok()?;
        let t = resp.topics.first()?;
        let led = t.partitions.iter().filter(|p| p.error_code == 0 && p.leader_id.0 >= 0).count();
        (t.error_code == 0 && led == partitions).then_some(t.topic_id)
    })
}

/// Produces one batch (acks=all), retrying retriable errors: Kafka's Metadata can name
/// the leader a moment before its replica manager has become leader.
fn produce_until_accepted(
    c: &mut RawClient,
    topic: &str,
    partition: i32,
    records: &[KeyValue<'_>],
    timestamp: i64,
    side: &str,
) -> Result<()> {
    let version = c.version_for(ApiKey::Produce)?.min(11);
    let mut last = 0;
    wait_for(&format!("a produce to {topic}-{partition} on {side} to succeed"), LEADER_TIMEOUT, || {
        match c.produce(topic, partition, record_batch(records, timestamp), version) {
            Ok(p) if p.error_code == 0 => Some(Ok(())),
            Ok(p) if ResponseError::try_from_code(p.error_code).is_some_and(|e| e.is_retriable()) => {
                last = p.error_code;
                None
            }
            Ok(p) => Some(Err(anyhow!("producing to {topic}-{partition} on {side}: error {}", p.error_code))),
            Err(e) => Some(Err(e)),
        }
    })
    .with_context(|| format!("last error code {last}"))?
}

/// Prints two step-by-step observation lists side by side (Kafka's, Karst's); returns
/// how many lines differ.
fn print_steps(kafka: &[String], karst: &[String]) -> usize {
    let mut differing = 0;
    for i in 0..kafka.len().max(karst.len()) {
        let (x, y) = (kafka.get(i).map_or("(none)", String::as_str), karst.get(i).map_or("(none)", String::as_str));
        if x == y {
            println!("  same      {x}");
        } else {
            differing += 1;
            println!("  DIFFERENT Kafka: {x}\n            Karst: {y}");
        }
    }
    differing
}

/// Prints one line per answer pair; returns how many differ.
fn print_outcomes(outcomes: &[Outcome]) -> usize {
    println!("\nerror codes of invalid requests, Kafka vs Karst:");
    let mut differences = 0;
    for o in outcomes {
        let show = |r: &Result<Answer, String>| match r {
            Ok(a) => a.show(),
            Err(e) => format!("request failed: {e}"),
        };
        let verdict = if o.same() {
            "same"
        } else {
            differences += 1;
            "DIFFERENT"
        };
        println!("  {verdict:9} {}\n            Kafka: {}\n            Karst: {}", o.scenario, show(&o.kafka), show(&o.karst));
    }
    println!("{} answers compared, {differences} different", outcomes.len());
    differences
}
