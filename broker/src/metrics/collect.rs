//! Gauges of state, computed from the broker's structures when scraped, and the
//! readiness check behind `/health/ready`.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue};
use prometheus_client::metrics::MetricType;

use crate::broker::Broker;

/// Reads the broker at each scrape; registered in a per-scrape registry.
#[derive(Debug)]
pub(super) struct StateCollector {
    pub(super) broker: Arc<Broker>,
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: impl EncodeGaugeValue) -> Result<(), std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&v)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let b = &self.broker;
        let image = b.metadata.image();
        let me = b.node_id;
        let (mut led, mut under, mut offline) = (0i64, 0i64, 0i64);
        for t in image.cluster.topics.values() {
            for p in &t.partitions {
                if p.leader < 0 {
                    offline += 1;
                } else if p.leader == me {
                    led += 1;
                    if p.isr.len() < p.replicas.len() {
                        under += 1;
                    }
                }
            }
        }
        gauge(&mut encoder, "karst_partitions_led", "Partitions this broker leads", led)?;
        gauge(&mut encoder, "karst_under_replicated_partitions", "Partitions led here whose ISR is smaller than their replica set", under)?;
        gauge(&mut encoder, "karst_offline_partitions", "Partitions without a leader, in the controller's view", offline)?;
        let offline_here = i64::try_from(b.partitions.all().iter().filter(|p| p.offline_reason().is_some()).count()).unwrap_or(i64::MAX);
        gauge(
            &mut encoder,
            "karst_offline_replicas",
            "Partition replicas hosted here that went offline after a failed write or fsync (Kafka's OfflineReplicaCount)",
            offline_here,
        )?;
        let is_leader = i64::from(b.metadata.controller_leader() == Some(me));
        gauge(&mut encoder, "karst_controller_is_leader", "1 if this node leads the controller quorum", is_leader)?;
        let active = i64::try_from(image.cluster.unfenced_brokers().count()).unwrap_or(i64::MAX);
        gauge(&mut encoder, "karst_controller_active_brokers", "Registered, unfenced brokers", active)?;
        let sessions = i64::try_from(b.fetch_sessions.len()).unwrap_or(i64::MAX);
        gauge(
            &mut encoder,
            "karst_fetch_session_cache_sessions",
            "KIP-227 fetch sessions cached (Kafka's NumIncrementalFetchSessions)",
            sessions,
        )?;
        let cached = i64::try_from(b.fetch_sessions.partitions()).unwrap_or(i64::MAX);
        gauge(
            &mut encoder,
            "karst_fetch_session_cache_partitions",
            "Partitions cached over all fetch sessions (Kafka's NumIncrementalFetchPartitionsCached)",
            cached,
        )?;

        let open = b.txns.snapshot().iter().filter(|m| m.state == crate::txn::TxnState::Ongoing || m.state.preparing().is_some()).count();
        gauge(
            &mut encoder,
            "karst_transactions_open",
            "Transactions this broker coordinates that are open or being decided",
            i64::try_from(open).unwrap_or(i64::MAX),
        )?;
        let mut unstable = encoder.encode_descriptor(
            "karst_partition_unstable_offsets",
            "High watermark minus last stable offset, for partitions led here with a transaction open (what read_committed consumers wait for)",
            None,
            MetricType::Gauge,
        )?;
        let mut led_parts: Vec<_> = b.partitions.all().into_iter().filter(|p| p.leads_at(p.leader_epoch())).collect();
        led_parts.sort_by(|x, y| (&x.topic, x.index).cmp(&(&y.topic, y.index)));
        for p in led_parts {
            let v = (p.high_watermark() - p.last_stable_offset()).max(0);
            if v > 0 {
                let labels = vec![("topic", p.topic.to_string()), ("partition", p.index.to_string())];
                unstable.encode_family(&labels)?.encode_gauge(&v)?;
            }
        }

        let mut lag = encoder.encode_descriptor(
            "karst_consumer_group_lag",
            "High watermark minus committed offset, for groups coordinated and partitions hosted here",
            None,
            MetricType::Gauge,
        )?;
        for (group, offsets) in b.groups.entries_snapshot() {
            for (topic, partition, committed) in offsets {
                let Some(p) = b.partitions.get(&topic, partition) else { continue };
                let v = (p.high_watermark() - committed).max(0);
                let labels = vec![("group", group.clone()), ("topic", topic), ("partition", partition.to_string())];
                lag.encode_family(&labels)?.encode_gauge(&v)?;
            }
        }
        encode_groups(b, &mut encoder)?;
        let mut sizes =
            encoder.encode_descriptor("karst_log_size_bytes", "Bytes of a hosted partition's log segments", None, MetricType::Gauge)?;
        let mut parts = b.partitions.all();
        parts.sort_by(|x, y| (&x.topic, x.index).cmp(&(&y.topic, y.index)));
        for p in parts {
            let v = i64::try_from(p.size_bytes()).unwrap_or(i64::MAX);
            let labels = vec![("topic", p.topic.to_string()), ("partition", p.index.to_string())];
            sizes.encode_family(&labels)?.encode_gauge(&v)?;
        }
        Ok(())
    }
}

/// Per group this broker coordinates: members and epoch, by type (`classic`,
/// `consumer`, `share`); per share-partition it leads: records in flight (between
/// the share-partition start and end offsets).
fn encode_groups(b: &Broker, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    // (group, type, state, members, epoch)
    let mut groups: Vec<(String, &'static str, String, usize, i32)> = b
        .groups
        .entries
        .lock()
        .iter()
        .map(|(id, e)| match &e.consumer {
            Some(c) => (id.clone(), "consumer", c.state_name().to_string(), c.members.len(), c.epoch),
            None => (id.clone(), "classic", e.group.state.name().to_string(), e.group.members.len(), e.group.generation),
        })
        .collect();
    groups.extend(b.shares.groups.lock().values().map(|g| {
        let state = if g.members.is_empty() { "Empty" } else { "Stable" };
        (g.id.clone(), "share", state.to_string(), g.members.len(), g.epoch)
    }));
    groups.sort();
    let mut members = encoder.encode_descriptor(
        "karst_group_members",
        "Members of a group this broker coordinates, by type (classic, consumer, share) and state",
        None,
        MetricType::Gauge,
    )?;
    for (group, kind, state, n, _) in &groups {
        let labels = vec![("group", group.clone()), ("type", kind.to_string()), ("state", state.clone())];
        members.encode_family(&labels)?.encode_gauge(&(*n as i64))?;
    }
    let mut epochs = encoder.encode_descriptor(
        "karst_group_epoch",
        "A group's generation (classic) or group epoch (consumer, share): it counts rebalances",
        None,
        MetricType::Gauge,
    )?;
    for (group, kind, _, _, epoch) in &groups {
        let labels = vec![("group", group.clone()), ("type", kind.to_string())];
        epochs.encode_family(&labels)?.encode_gauge(&i64::from(*epoch))?;
    }
    let mut in_flight = encoder.encode_descriptor(
        "karst_share_partition_in_flight_records",
        "Records between a share-partition's start and end offsets (delivered and not yet all acknowledged), for partitions led here",
        None,
        MetricType::Gauge,
    )?;
    let mut parts: Vec<((String, String, i32), i64)> =
        b.shares.partitions.lock().iter().map(|(k, sp)| (k.clone(), (sp.end() - sp.start()).max(0))).collect();
    parts.sort();
    for ((group, topic, partition), n) in parts {
        let labels = vec![("group", group), ("topic", topic), ("partition", partition.to_string())];
        in_flight.encode_family(&labels)?.encode_gauge(&n)?;
    }
    Ok(())
}

/// `Ok` once the broker is registered and unfenced with a controller quorum that
/// has a leader (so it can serve metadata); else why not.
pub fn readiness(b: &Broker) -> Result<(), String> {
    if b.metadata.broker_epoch() < 0 {
        return Err("not registered with the controller".into());
    }
    if b.metadata.controller_leader().is_none() {
        return Err("the controller quorum has no leader".into());
    }
    if !b.metadata.image().cluster.is_unfenced(b.node_id) {
        return Err("fenced by the controller".into());
    }
    let mut offline: Vec<(String, Arc<str>)> =
        b.partitions.all().iter().filter_map(|p| Some((format!("{}-{}", p.topic, p.index), p.offline_reason()?))).collect();
    offline.sort();
    if let Some((_, why)) = offline.first() {
        let names: Vec<&str> = offline.iter().take(10).map(|(n, _)| n.as_str()).collect();
        return Err(format!(
            "{} partition replica(s) offline after a storage failure ({}{}): {why}",
            offline.len(),
            names.join(", "),
            if offline.len() > 10 { ", ..." } else { "" },
        ));
    }
    Ok(())
}
