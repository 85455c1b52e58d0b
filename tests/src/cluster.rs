//! Several `karst` processes forming one cluster on loopback.

use std::net::TcpListener;

use anyhow::{anyhow, Result};

use crate::Broker;

/// Ports the OS considers free right now (bound, then released).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<_>>()?;
    Ok(listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<_>>()?)
}

/// Starts nodes 1..=n concurrently as one controller quorum (each waits for the
/// quorum before it listens); `extra(i)` gives node i+1's own further arguments.
pub fn start_cluster(n: usize, extra: impl Fn(usize) -> Vec<String> + Sync) -> Result<Vec<Broker>> {
    let ports = free_ports(n)?;
    let voters = ports.iter().enumerate().map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1)).collect::<Vec<_>>().join(",");
    std::thread::scope(|s| {
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
                s.spawn(move || Broker::start(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| anyhow!("starting a broker panicked"))?).collect()
    })
}
