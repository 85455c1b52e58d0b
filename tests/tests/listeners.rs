//! Named listeners, as in Kafka: a broker listens on several addresses, each with a
//! name and an advertised address, and answers Metadata, FindCoordinator and
//! DescribeCluster with the addresses of the listener the request arrived on.
//! Replication uses `inter.broker.listener.name`; bad listener configs stop start-up
//! naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use karst_tests::cluster::free_ports;
use karst_tests::proxy::Proxy;
use karst_tests::raw::RawClient;
use karst_tests::{kcat_consume, kcat_produce, unique_topic, wait_for, Broker};

const TIMEOUT: Duration = Duration::from_secs(60);
const MAP: &str = "listener.security.protocol.map=CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT";

fn metadata(addr: SocketAddr, topic: Option<&str>) -> Result<MetadataResponse> {
    let mut c = RawClient::connect(addr)?;
    let version = c.version_for(ApiKey::Metadata)?.min(9);
    let topics = topic.map(|t| vec![MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))]);
    c.send(&MetadataRequest::default().with_topics(topics).with_allow_auto_topic_creation(false), version)
}

/// node id → host:port, as Metadata over `addr` lists the brokers.
fn brokers_seen_at(addr: SocketAddr) -> Result<BTreeMap<i32, String>> {
    Ok(metadata(addr, None)?.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect())
}

/// The coordinator of `group` as FindCoordinator over `addr` answers it.
fn coordinator_seen_at(addr: SocketAddr, group: &str) -> Result<String> {
    let mut c = RawClient::connect(addr)?;
    let version = c.version_for(ApiKey::FindCoordinator)?.min(3);
    let req = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
    // The group's partition may still be electing its leader right after creation.
    wait_for("FindCoordinator to answer", TIMEOUT, || {
        let resp = c.send(&req, version).ok()?;
        (resp.error_code == 0).then(|| format!("{}:{}", resp.host.as_str(), resp.port))
    })
}

fn described_cluster_at(addr: SocketAddr) -> Result<BTreeMap<i32, String>> {
    let mut c = RawClient::connect(addr)?;
    let version = c.version_for(ApiKey::DescribeCluster)?.min(1);
    let resp = c.send(&DescribeClusterRequest::default(), version)?;
    ensure!(resp.error_code == 0, "DescribeCluster: error {}", resp.error_code);
    Ok(resp.brokers.iter().map(|b| (b.broker_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect())
}

#[test]
fn each_listener_answers_with_its_own_advertised_address() -> Result<()> {
    let ports = free_ports(2)?;
    let (client, internal) = (ports[0], ports[1]);
    // Two loopback addresses, so each listener is told apart by host and port.
    let listen = format!("CLIENT://127.0.0.1:{client},INTERNAL://127.0.0.2:{internal}");
    let advertised = format!("CLIENT://localhost:{client},INTERNAL://127.0.0.2:{internal}");
    let broker = Broker::start(&["--listen", &listen, "--advertised-listener", &advertised, "--set", MAP])?;
    ensure!(broker.addr().port() == client, "the first listener is the CLIENT one, got {}", broker.addr());
    let client_addr: SocketAddr = format!("127.0.0.1:{client}").parse()?;
    let internal_addr: SocketAddr = format!("127.0.0.2:{internal}").parse()?;

    let via_client = brokers_seen_at(client_addr)?;
    let via_internal = brokers_seen_at(internal_addr)?;
    ensure!(via_client == BTreeMap::from([(1, format!("localhost:{client}"))]), "Metadata via CLIENT: {via_client:?}");
    ensure!(via_internal == BTreeMap::from([(1, format!("127.0.0.2:{internal}"))]), "Metadata via INTERNAL: {via_internal:?}");

    ensure!(described_cluster_at(client_addr)? == via_client, "DescribeCluster via CLIENT differs from Metadata");
    ensure!(described_cluster_at(internal_addr)? == via_internal, "DescribeCluster via INTERNAL differs from Metadata");

    let group = unique_topic("group");
    let c = coordinator_seen_at(client_addr, &group)?;
    let i = coordinator_seen_at(internal_addr, &group)?;
    ensure!(c == format!("localhost:{client}"), "FindCoordinator via CLIENT: {c}");
    ensure!(i == format!("127.0.0.2:{internal}"), "FindCoordinator via INTERNAL: {i}");

    // kcat produces through one listener and consumes through the other: each is
    // told, and reaches, only the addresses of the listener it bootstrapped from.
    let topic = unique_topic("listeners");
    let want: Vec<String> = (0..50).map(|i| format!("record-{i}")).collect();
    kcat_produce(&format!("localhost:{client}"), &topic, &want, "all")?;
    let got = kcat_consume(&format!("127.0.0.2:{internal}"), &topic)?;
    ensure!(got == want, "consumed via INTERNAL {} lines, first {:?}", got.len(), got.first());
    println!("one broker: Metadata, DescribeCluster and FindCoordinator answer per listener; kcat across listeners");
    Ok(())
}

#[test]
fn the_single_listener_flags_still_work() -> Result<()> {
    let port = free_ports(1)?[0];
    let broker = Broker::start(&["--advertised-listener", &format!("localhost:{port}"), "--listen", &format!("127.0.0.1:{port}")])?;
    let seen = brokers_seen_at(broker.addr())?;
    ensure!(seen == BTreeMap::from([(1, format!("localhost:{port}"))]), "Metadata: {seen:?}");
    Ok(())
}

/// Starting a broker with `args` fails, naming `key` on stderr.
fn refused(args: &[&str], key: &str) -> Result<()> {
    match Broker::start(args) {
        Ok(_) => Err(anyhow!("{args:?} started; it should be refused naming `{key}`")),
        Err(e) => {
            let text = format!("{e:#}");
            ensure!(text.contains(&format!("`{key}`")), "{args:?} refused without naming `{key}`:\n{text}");
            Ok(())
        }
    }
}

#[test]
fn bad_listener_configs_are_refused_naming_the_key() -> Result<()> {
    refused(&["--listen", "A://127.0.0.1:0,A://127.0.0.1:0", "--set", "listener.security.protocol.map=A:PLAINTEXT"], "listeners")?;
    refused(&["--listen", "CLIENT://127.0.0.1:0,INTERNAL://127.0.0.1:0"], "listener.security.protocol.map")?;
    refused(
        &["--listen", "CLIENT://127.0.0.1:0,INTERNAL://127.0.0.1:0", "--set", "listener.security.protocol.map=CLIENT:PLAINTEXT"],
        "listener.security.protocol.map",
    )?;
    // A TLS or SASL inter-broker listener needs what the broker connects to its peers
    // with: its keystore and truststore, its own SASL username and password.
    let refused_saying = |args: &[&str], says: &str| -> Result<()> {
        match Broker::start(args) {
            Ok(_) => Err(anyhow!("{args:?} started; it should be refused saying {says:?}")),
            Err(e) => {
                let text = format!("{e:#}");
                ensure!(text.contains(says), "{args:?} refused without saying {says:?}:\n{text}");
                Ok(())
            }
        }
    };
    refused_saying(
        &["--listen", "CLIENT://127.0.0.1:0", "--set", "listener.security.protocol.map=CLIENT:SSL"],
        "listener.name.client.ssl.keystore.location",
    )?;
    refused_saying(
        &["--listen", "CLIENT://127.0.0.1:0", "--set", "listener.security.protocol.map=CLIENT:SASL_PLAINTEXT"],
        "listener.name.client.plain.sasl.jaas.config: the broker's own username and password",
    )?;
    refused(
        &["--listen", "CLIENT://127.0.0.1:0", "--set", MAP, "--advertised-listener", "CLIENT://localhost:1,EXTERNAL://localhost:2"],
        "advertised.listeners",
    )?;
    refused(
        &["--listen", "CLIENT://127.0.0.1:0", "--set", MAP, "--set", "inter.broker.listener.name=INTERNAL"],
        "inter.broker.listener.name",
    )?;
    Ok(())
}

fn create_rf3(addr: SocketAddr, topic: &str) -> Result<()> {
    RawClient::connect(addr)?.create_replicated(topic, 3, 3, &[("min.insync.replicas", "2")])
}

#[test]
fn replication_uses_the_inter_broker_listener() -> Result<()> {
    // Every node: CLIENT on 127.0.0.1, INTERNAL on 127.0.0.2 advertised through a
    // proxy, so cutting the proxies cuts exactly the inter-broker traffic.
    let proxies: Vec<Proxy> = (0..3).map(|_| Proxy::start()).collect::<Result<_>>()?;
    let client_ports = free_ports(3)?;
    let internal_ports = free_ports(3)?;
    let brokers = karst_tests::cluster::start_cluster(3, |i| {
        let listen = format!("CLIENT://127.0.0.1:{},INTERNAL://127.0.0.2:{}", client_ports[i], internal_ports[i]);
        let advertised = format!("INTERNAL://{}", proxies[i].addr());
        [
            "--listen",
            &listen,
            "--advertised-listener",
            &advertised,
            "--set",
            MAP,
            "--set",
            "inter.broker.listener.name=INTERNAL",
            "--set",
            "replica.lag.time.max.ms=3000",
            "--set",
            "broker.session.timeout.ms=4000",
        ]
        .map(String::from)
        .to_vec()
    })?;
    for (i, p) in proxies.iter().enumerate() {
        p.set_target(format!("127.0.0.2:{}", internal_ports[i]).parse()?);
    }
    let client_addrs: Vec<SocketAddr> = brokers.iter().map(Broker::addr).collect();
    ensure!(client_addrs.iter().zip(&client_ports).all(|(a, p)| a.port() == *p), "CLIENT listeners first: {client_addrs:?}");

    // Each listener lists every broker by its own name for it.
    let via_client = wait_for("three brokers via CLIENT", TIMEOUT, || brokers_seen_at(client_addrs[0]).ok().filter(|m| m.len() == 3))?;
    let want_client: BTreeMap<i32, String> = (0..3).map(|i| (i as i32 + 1, client_addrs[i].to_string())).collect();
    ensure!(via_client == want_client, "Metadata via CLIENT: {via_client:?}");
    let internal_addr: SocketAddr = format!("127.0.0.2:{}", internal_ports[0]).parse()?;
    let via_internal = brokers_seen_at(internal_addr)?;
    let want_internal: BTreeMap<i32, String> = (0..3).map(|i| (i as i32 + 1, proxies[i].addr().to_string())).collect();
    ensure!(via_internal == want_internal, "Metadata via INTERNAL: {via_internal:?}");

    let topic = unique_topic("interbroker");
    create_rf3(client_addrs[0], &topic)?;
    let bootstrap = client_addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let first: Vec<String> = (0..100).map(|i| format!("before-{i}")).collect();
    kcat_produce(&bootstrap, &topic, &first, "all")?;
    let isr_sizes = |t: &str| -> Option<Vec<usize>> {
        let resp = metadata(client_addrs[0], Some(t)).ok()?;
        let parts = &resp.topics.first()?.partitions;
        (parts.len() == 3).then(|| parts.iter().map(|p| p.isr_nodes.len()).collect())
    };
    wait_for("a full ISR on every partition (followers replicate via INTERNAL)", TIMEOUT, || {
        isr_sizes(&topic).filter(|s| s.iter().all(|n| *n == 3))
    })?;

    // Cut the INTERNAL links: followers fall behind the writes clients keep making
    // via CLIENT (acks=1) and leave the ISR.
    for p in &proxies {
        p.cut();
    }
    let mut during = Vec::new();
    wait_for("the ISRs to shrink to their leaders with INTERNAL cut", TIMEOUT, || {
        let batch: Vec<String> = (0..3).map(|i| format!("cut-{}", during.len() + i)).collect();
        if kcat_produce(&bootstrap, &topic, &batch, "1").is_ok() {
            during.extend(batch);
        }
        isr_sizes(&topic).filter(|s| s.iter().all(|n| *n == 1))
    })?;
    for p in &proxies {
        p.heal();
    }
    wait_for("the followers back in the ISR once INTERNAL is healed", TIMEOUT, || isr_sizes(&topic).filter(|s| s.iter().all(|n| *n == 3)))?;
    let second: Vec<String> = (0..100).map(|i| format!("after-{i}")).collect();
    kcat_produce(&bootstrap, &topic, &second, "all")?;
    let mut got = kcat_consume(&bootstrap, &topic)?;
    got.sort();
    let mut want: Vec<String> = first.into_iter().chain(during).chain(second).collect();
    want.sort();
    ensure!(got == want, "consumed {} of {} records", got.len(), want.len());
    println!("three nodes: replication over INTERNAL (ISR 3 → 1 when cut → 3 when healed), clients over CLIENT");
    Ok(())
}

/// One Produce to a follower of `partition` of `topic` at `version`, over `addr`:
/// (error code, hinted leader and epoch, the endpoints listed as id → host:port).
fn produce_to_follower(addr: SocketAddr, topic: &str, partition: i32, version: i16) -> Result<(i16, i32, i32, BTreeMap<i32, String>)> {
    let mut c = RawClient::connect(addr)?;
    let mut req = karst_tests::raw::produce_request(topic, partition, karst_tests::raw::record_batch(&[(None, Some(b"x"))], 1));
    req.topic_data[0].topic_id = c.topic_id(topic)?;
    let resp = c.send(&req, version)?;
    let p = resp.responses.first().and_then(|t| t.partition_responses.first()).ok_or_else(|| anyhow!("empty response: {resp:?}"))?;
    let endpoints = resp.node_endpoints.iter().map(|e| (e.node_id.0, format!("{}:{}", e.host.as_str(), e.port))).collect();
    Ok((p.error_code, p.current_leader.leader_id.0, p.current_leader.leader_epoch, endpoints))
}

/// KIP-951: Produce v10+ sent to a follower is refused NOT_LEADER_OR_FOLLOWER with the
/// partition's leader and epoch, and the response lists that leader's endpoint on the
/// listener the request arrived on, so the client can go there without a Metadata
/// round trip. v9 has neither field.
#[test]
fn produce_to_a_follower_names_the_leader_on_the_requests_listener() -> Result<()> {
    let client_ports = free_ports(3)?;
    let internal_ports = free_ports(3)?;
    let brokers = karst_tests::cluster::start_cluster(3, |i| {
        let listen = format!("CLIENT://127.0.0.1:{},INTERNAL://127.0.0.2:{}", client_ports[i], internal_ports[i]);
        ["--listen", &listen, "--set", MAP, "--set", "inter.broker.listener.name=INTERNAL"].map(String::from).to_vec()
    })?;
    let client: Vec<SocketAddr> = brokers.iter().map(Broker::addr).collect();
    let internal: Vec<SocketAddr> = internal_ports.iter().map(|p| format!("127.0.0.2:{p}").parse()).collect::<Result<_, _>>()?;
    let topic = unique_topic("hints");
    create_rf3(client[0], &topic)?;
    let leaders = wait_for("a leader for every partition", TIMEOUT, || {
        let resp = metadata(client[0], Some(&topic)).ok()?;
        let parts = &resp.topics.first()?.partitions;
        let led: BTreeMap<i32, (i32, i32)> =
            parts.iter().filter(|p| p.leader_id.0 > 0).map(|p| (p.partition_index, (p.leader_id.0, p.leader_epoch))).collect();
        (led.len() == 3).then_some(led)
    })?;
    for (partition, (leader, epoch)) in &leaders {
        let follower = (1..=3).find(|id| id != leader).ok_or_else(|| anyhow!("no follower"))? as usize - 1;
        let at = |addrs: &[SocketAddr]| BTreeMap::from([(*leader, addrs[*leader as usize - 1].to_string())]);
        for version in [10, 12, 13] {
            let got = produce_to_follower(client[follower], &topic, *partition, version)?;
            ensure!(got == (6, *leader, *epoch, at(&client)), "Produce v{version} via CLIENT to a follower of {partition}: {got:?}");
        }
        let got = produce_to_follower(internal[follower], &topic, *partition, 13)?;
        ensure!(got == (6, *leader, *epoch, at(&internal)), "Produce v13 via INTERNAL to a follower of {partition}: {got:?}");
        let got = produce_to_follower(client[follower], &topic, *partition, 9)?;
        ensure!(got == (6, -1, -1, BTreeMap::new()), "Produce v9 has no hint fields: {got:?}");
    }
    println!("three nodes: Produce to a follower names the leader, its epoch and its address on the request's listener");
    Ok(())
}
