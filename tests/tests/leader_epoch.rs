//! KIP-320 over the raw protocol: a Fetch or ListOffsets naming an older leader
//! epoch than the partition's gets FENCED_LEADER_EPOCH, a newer one
//! UNKNOWN_LEADER_EPOCH, so a client with stale metadata refreshes it instead of
//! reading from a replica that may have been truncated.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest, MetadataRequest};
use karst_tests::raw::{record_batch, topic_name, RawClient};
use karst_tests::{unique_topic, wait_for, Broker};

const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

fn leader_epoch(c: &mut RawClient, topic: &str) -> Result<i32> {
    let req = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]));
    let resp = c.send(&req, 9)?;
    Ok(resp.topics[0].partitions[0].leader_epoch)
}

fn fetch_code(c: &mut RawClient, topic: &str, epoch: i32) -> Result<(i16, i64)> {
    let req = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
        .with_topic(topic_name(topic))
        .with_partitions(vec![FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_current_leader_epoch(epoch)
            .with_partition_max_bytes(1 << 20)])]);
    let resp = c.send(&req, 12)?;
    let p = &resp.responses[0].partitions[0];
    Ok((p.error_code, p.high_watermark))
}

fn list_offsets_code(c: &mut RawClient, topic: &str, epoch: i32) -> Result<(i16, i32)> {
    let req =
        ListOffsetsRequest::default().with_replica_id(kafka_protocol::messages::BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default(
        )
        .with_name(topic_name(topic))
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_current_leader_epoch(epoch)
            .with_timestamp(-1)])]);
    let resp = c.send(&req, 6)?;
    let p = &resp.topics[0].partitions[0];
    Ok((p.error_code, p.leader_epoch))
}

#[test]
fn stale_and_future_leader_epochs_are_refused_on_fetch_and_list_offsets() -> Result<()> {
    let mut broker = Broker::start(&[])?;
    let topic = unique_topic("epochs");
    let mut c = RawClient::connect(broker.addr())?;
    c.create_topic(&topic, 1, &[])?;
    let produced = c.produce(&topic, 0, record_batch(&[(None, Some(b"v".as_slice()))], 0), 9)?;
    ensure!(produced.error_code == 0, "produce: {}", produced.error_code);

    let e0 = leader_epoch(&mut c, &topic)?;
    ensure!(fetch_code(&mut c, &topic, -1)? == (0, 1), "no epoch given: served");
    ensure!(fetch_code(&mut c, &topic, e0)? == (0, 1), "the current epoch: served");
    ensure!(fetch_code(&mut c, &topic, e0 + 1)?.0 == UNKNOWN_LEADER_EPOCH);
    ensure!(list_offsets_code(&mut c, &topic, e0 + 1)?.0 == UNKNOWN_LEADER_EPOCH);
    ensure!(list_offsets_code(&mut c, &topic, e0)? == (0, e0), "ListOffsets names the current epoch");

    // A restart is a new broker incarnation: leadership is taken and given back, so
    // the partition's leader epoch moves on and the old one is stale.
    broker.terminate(Duration::from_secs(30))?;
    broker.restart()?;
    let mut c = RawClient::connect(broker.addr())?;
    let e1 =
        wait_for("a new leader epoch after the restart", Duration::from_secs(30), || leader_epoch(&mut c, &topic).ok().filter(|e| *e > e0))
            .context("leader epoch")?;
    ensure!(fetch_code(&mut c, &topic, e0)?.0 == FENCED_LEADER_EPOCH, "the pre-restart epoch is fenced");
    ensure!(list_offsets_code(&mut c, &topic, e0)?.0 == FENCED_LEADER_EPOCH);
    ensure!(fetch_code(&mut c, &topic, e1)? == (0, 1), "the new epoch reads the record");
    Ok(())
}
