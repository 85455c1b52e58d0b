//! Dynamic broker configs (IncrementalAlterConfigs on BROKER resources): kept in the
//! controller quorum, cluster-wide or per broker, applied by every broker without a
//! restart, kept across restarts, and refused with Kafka's errors where Kafka
//! refuses them.

use std::net::TcpStream;
use std::time::Duration;

use anyhow::{ensure, Result};
use karst_tests::raw::{record_batch, RawClient};
use karst_tests::{unique_topic, wait_for, Broker};

const TIMEOUT: Duration = Duration::from_secs(60);
const BROKER: i8 = 4;
const TOPIC: i8 = 2;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const DYNAMIC_BROKER: i8 = 2;
const DYNAMIC_DEFAULT: i8 = 3;
const DEFAULT: i8 = 5;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_REQUEST: i16 = 42;

/// (value, source) of `key` in a DescribeConfigs of `resource_type`/`name` at `addr`.
fn config(addr: std::net::SocketAddr, resource_type: i8, name: &str, key: &str) -> Option<(Option<String>, i8)> {
    let (code, configs) = RawClient::connect(addr).ok()?.describe_configs(resource_type, name).ok()?;
    (code == 0).then_some(())?;
    configs.get(key).map(|c| (c.value.clone(), c.source))
}

/// A produce of one record of `size` bytes to partition 0: the error code.
fn produce(addr: std::net::SocketAddr, topic: &str, size: usize) -> Result<i16> {
    let value = vec![b'x'; size];
    Ok(RawClient::connect(addr)?.produce(topic, 0, record_batch(&[(None, Some(value.as_slice()))], 1_000), 9)?.error_code)
}

#[test]
fn dynamic_broker_configs_live_in_the_quorum_and_apply_on_every_broker_without_a_restart() -> Result<()> {
    let mut brokers = karst_tests::cluster::start_cluster(3, |_| Vec::new())?;
    let topic = unique_topic("dyn");
    RawClient::connect(brokers[0].addr())?.create_replicated(&topic, 1, 3, &[])?;
    let leader = wait_for("a leader taking records", TIMEOUT, || {
        (0..brokers.len()).find(|i| produce(brokers[*i].addr(), &topic, 100).ok() == Some(0))
    })?;
    ensure!(produce(brokers[leader].addr(), &topic, 5_000)? == 0, "5,000 bytes fit the default message.max.bytes");

    // The cluster-wide default, sent to one broker, reaches every broker's topics.
    let mut c = RawClient::connect(brokers[0].addr())?;
    let (code, msg) = c.alter_configs(BROKER, "", &[("message.max.bytes", SET, Some("2000"))])?;
    ensure!(code == 0, "setting the cluster default: {code} {msg:?}");
    for b in &brokers {
        wait_for("the dynamic default in the topic's configs", TIMEOUT, || {
            (config(b.addr(), TOPIC, &topic, "max.message.bytes")? == (Some("2000".into()), DYNAMIC_DEFAULT)).then_some(())
        })?;
    }
    let code = wait_for("the leader to refuse 5,000 bytes", TIMEOUT, || {
        produce(brokers[leader].addr(), &topic, 5_000).ok().filter(|c| *c == MESSAGE_TOO_LARGE)
    })?;
    ensure!(code == MESSAGE_TOO_LARGE);
    ensure!(produce(brokers[leader].addr(), &topic, 1_000)? == 0, "a record under the new limit is taken");

    // One broker's own value wins over the default there only.
    let other = (leader + 1) % brokers.len();
    let other_id = (other + 1).to_string();
    let (code, msg) = RawClient::connect(brokers[other].addr())?.alter_configs(
        BROKER,
        &other_id,
        &[("message.max.bytes", SET, Some("1500")), ("log.cleanup.policy", APPEND, Some("compact"))],
    )?;
    ensure!(code == 0, "setting broker {other_id}'s own: {code} {msg:?}");
    let own = config(brokers[other].addr(), BROKER, &other_id, "message.max.bytes");
    ensure!(own == Some((Some("1500".into()), DYNAMIC_BROKER)), "broker {other_id} describes its own value: {own:?}");
    let policy = config(brokers[other].addr(), BROKER, &other_id, "log.cleanup.policy");
    ensure!(policy == Some((Some("delete,compact".into()), DYNAMIC_BROKER)), "APPEND starts from the default: {policy:?}");
    let elsewhere = config(brokers[leader].addr(), TOPIC, &topic, "max.message.bytes");
    ensure!(elsewhere == Some((Some("2000".into()), DYNAMIC_DEFAULT)), "the leader keeps the default: {elsewhere:?}");
    // A broker takes changes to its own resource only, as Kafka.
    let (code, _) =
        RawClient::connect(brokers[leader].addr())?.alter_configs(BROKER, &other_id, &[("message.max.bytes", SET, Some("9"))])?;
    ensure!(code == INVALID_REQUEST, "another broker's resource: {code}");

    // Kept in the quorum: a restarted broker has them before anyone sets them again.
    brokers[other].restart()?;
    wait_for("broker's own value after a restart", TIMEOUT, || {
        (config(brokers[other].addr(), BROKER, &other_id, "message.max.bytes")? == (Some("1500".into()), DYNAMIC_BROKER)).then_some(())
    })?;
    let described = config(brokers[other].addr(), BROKER, "", "message.max.bytes");
    ensure!(described == Some((Some("2000".into()), DYNAMIC_DEFAULT)), "the default resource lists what is set there: {described:?}");

    // Deleting the default brings the built-in value back everywhere.
    let (code, msg) = c.alter_configs(BROKER, "", &[("message.max.bytes", DELETE, None)])?;
    ensure!(code == 0, "deleting the default: {code} {msg:?}");
    wait_for("5,000 bytes taken again", TIMEOUT, || (produce(brokers[leader].addr(), &topic, 5_000).ok()? == 0).then_some(()))?;
    let back = config(brokers[leader].addr(), TOPIC, &topic, "max.message.bytes");
    ensure!(back == Some((Some("1048588".into()), DEFAULT)), "the built-in default again: {back:?}");
    Ok(())
}

#[test]
fn broker_config_changes_are_checked_and_connection_limits_apply_at_once() -> Result<()> {
    let broker = Broker::start(&[])?;
    let mut c = RawClient::connect(broker.addr())?;
    for (key, value, says) in [
        ("num.partitions", "3", "Cannot update these configs dynamically: [num.partitions]"),
        ("log.retention.ms", "abc", "Invalid value abc for configuration log.retention.ms"),
        ("num.io.threads", "4", "Karst does not update these configs dynamically"),
    ] {
        let (code, msg) = c.alter_configs(BROKER, "", &[(key, SET, Some(value))])?;
        ensure!(code == INVALID_REQUEST, "{key}={value}: {code}");
        ensure!(msg.as_deref().is_some_and(|m| m.starts_with(says)), "{key}={value}: {msg:?}");
    }
    let (code, _) = c.alter_configs(BROKER, "x", &[("log.retention.ms", SET, Some("1"))])?;
    ensure!(code == INVALID_REQUEST, "a resource name that is no broker id: {code}");
    // A name Kafka does not know is kept as a custom config, shown without its value.
    let (code, _) = c.alter_configs(BROKER, "1", &[("my.own.setting", SET, Some("secret"))])?;
    ensure!(code == 0, "a custom config: {code}");
    let custom = config(broker.addr(), BROKER, "1", "my.own.setting");
    ensure!(custom == Some((None, DYNAMIC_BROKER)), "a custom config is described without its value: {custom:?}");

    // max.connections.per.ip, lowered while connections are open: they stay, the next
    // one from the address is closed; raised again, it is taken.
    let (code, msg) = c.alter_configs(BROKER, "1", &[("max.connections.per.ip", SET, Some("2"))])?;
    ensure!(code == 0, "max.connections.per.ip: {code} {msg:?}");
    let mut second = RawClient::connect(broker.addr())?;
    second.api_versions()?;
    c.api_versions()?;
    let mut third = TcpStream::connect(broker.addr())?;
    third.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 1];
    let read = std::io::Read::read(&mut third, &mut buf);
    ensure!(matches!(read, Ok(0)) || read.is_err(), "a third connection from 127.0.0.1 is closed at once: {read:?}");
    RawClient::connect(broker.addr())?.api_versions().err().ok_or_else(|| anyhow::anyhow!("a third connection is refused"))?;
    let (code, _) = c.alter_configs(BROKER, "1", &[("max.connections.per.ip", DELETE, None)])?;
    ensure!(code == 0);
    wait_for("a third connection taken again", TIMEOUT, || RawClient::connect(broker.addr()).ok()?.api_versions().ok())?;
    Ok(())
}
