//! Connection limits, Kafka's way: `max.connections` stops the acceptor until a
//! connection closes (the kernel's backlog holds the newcomers), and
//! `max.connections.per.ip` closes a new connection from an address that has
//! too many already.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Counts open connections, in total and per peer address.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
}

/// A place under `max.connections`, taken before accepting.
#[derive(Debug)]
pub(crate) struct Place {
    _permit: Option<OwnedSemaphorePermit>,
}

/// An open connection's share of both limits; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _place: Place,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.per_ip.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    pub(crate) fn new(max_connections: usize, max_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            total: Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS))),
            per_ip: Arc::default(),
            max_per_ip,
        }
    }

    /// Waits for a place under `max.connections`.
    pub(crate) async fn place(&self) -> Place {
        // The semaphore is never closed; were it, no limit beats a stopped acceptor.
        Place { _permit: self.total.clone().acquire_owned().await.ok() }
    }

    /// The connection's slot, or None when `ip` is at `max.connections.per.ip`.
    pub(crate) fn admit(&self, place: Place, ip: IpAddr) -> Option<Slot> {
        let mut counts = self.per_ip.lock();
        let n = counts.entry(ip).or_default();
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(Slot { _place: place, ip, per_ip: self.per_ip.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn per_ip_and_total_limits_count_open_connections() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let a1 = limits.admit(limits.place().await, a).expect("first from a");
        let _a2 = limits.admit(limits.place().await, a).expect("second from a");
        assert!(limits.admit(limits.place().await, a).is_none(), "a third from a is refused");
        let _b1 = limits.admit(limits.place().await, b).expect("another address is counted apart");
        assert!(limits.total.available_permits() == 0, "three open: max.connections reached");
        drop(a1);
        let _a3 = limits.admit(limits.place().await, a).expect("a closed connection gives its place back");
    }
}
