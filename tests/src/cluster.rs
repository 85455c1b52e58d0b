//! Several `karst` processes forming one cluster on loopback.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::{ApiKey, MetadataRequest};

use crate::broker::Launch;
use crate::raw::RawClient;
use crate::{wait_for, Broker};

/// Ports free right now (bound, then released) for servers that must keep their port
/// across restarts. They come from below the kernel's ephemeral range: a port from
/// inside it, once its server is killed, can be taken as the local port of any
/// outgoing connection on the machine, and the restarted server cannot bind it.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_100));
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut seed = uuid::Uuid::new_v4().as_u128();
    let mut ports = Vec::new();
    for _ in 0..10_000 {
        if ports.len() == n {
            return Ok(ports);
        }
        let port = low + (seed % u128::from(high - low)) as u16;
        seed = seed.rotate_left(17) ^ 0x9E37_79B9;
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.insert(port);
        ports.push(port);
    }
    bail!("no {n} free ports between {low} and {high}")
}

/// Starts nodes 1..=n concurrently as one controller quorum (each waits for the
/// quorum before it listens); `extra(i)` gives node i+1's own further arguments.
pub fn start_cluster(n: usize, extra: impl Fn(usize) -> Vec<String> + Sync) -> Result<Vec<Broker>> {
    start_cluster_with(n, extra, &Launch::default())
}

/// [`start_cluster`] with process settings for every node.
pub fn start_cluster_with(n: usize, extra: impl Fn(usize) -> Vec<String> + Sync, launch: &Launch) -> Result<Vec<Broker>> {
    let ports = free_ports(n)?;
    let voters = ports.iter().enumerate().map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1)).collect::<Vec<_>>().join(",");
    let brokers: Vec<Broker> = std::thread::scope(|s| {
        let handles: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let mut args = vec![
                    "--node-id".to_string(),
                    (i + 1).to_string(),
                    "--controller-listen".to_string(),
                    format!("127.0.0.1:{port}"),
                    "--controller-quorum-voters".to_string(),
                    voters.clone(),
                ];
                args.extend(extra(i));
                s.spawn(move || Broker::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), launch.clone()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| anyhow!("starting a broker panicked"))?).collect::<Result<_>>()
    })?;
    all_unfenced(&brokers)?;
    Ok(brokers)
}

/// Waits until every node lists all of them in Metadata. A node listens once it has
/// registered, but the controller unfences it only on a later heartbeat: until then a
/// replicated CreateTopics finds too few brokers (INVALID_REPLICATION_FACTOR, as Kafka).
fn all_unfenced(brokers: &[Broker]) -> Result<()> {
    let listed = |b: &Broker| -> Result<usize> {
        let mut c = RawClient::connect(b.addr())?;
        let version = c.version_for(ApiKey::Metadata)?.min(9);
        Ok(c.send(&MetadataRequest::default().with_topics(Some(Vec::new())), version)?.brokers.len())
    };
    wait_for("every node to list every broker", Duration::from_secs(60), || {
        brokers.iter().all(|b| listed(b).is_ok_and(|n| n == brokers.len())).then_some(())
    })
}
