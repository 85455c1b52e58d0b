//! Connection limits, Kafka's way: `max.connections` stops the acceptor until a
//! connection closes (the kernel's backlog holds the newcomers), and
//! `max.connections.per.ip` closes a new connection from an address that has
//! too many already.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Counts open connections, in total and per peer address.
#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: AtomicUsize,
    /// `max.connections` now, and the places a lowered limit still has to take
    /// back (from connections open when it was lowered, as they close).
    max_total: Mutex<(usize, usize)>,
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
        let max = max_connections.min(Semaphore::MAX_PERMITS);
        ConnectionLimits {
            total: Arc::new(Semaphore::new(max)),
            per_ip: Arc::default(),
            max_per_ip: AtomicUsize::new(max_per_ip),
            max_total: Mutex::new((max, 0)),
        }
    }

    /// New limits (dynamic broker configs). Open connections stay open, as in Kafka:
    /// a lowered `max.connections` takes back free places now and the others as
    /// connections close.
    pub(crate) fn set(&self, max_connections: usize, max_per_ip: usize) {
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
        let max = max_connections.min(Semaphore::MAX_PERMITS);
        let mut m = self.max_total.lock();
        let (current, owed) = *m;
        if max >= current {
            let freed = (max - current).saturating_sub(owed);
            m.1 = owed.saturating_sub(max - current);
            self.total.add_permits(freed);
        } else {
            let lower = current - max;
            let taken = self.total.forget_permits(lower);
            m.1 = owed + (lower - taken);
        }
        m.0 = max;
    }

    /// Waits for a place under `max.connections`.
    pub(crate) async fn place(&self) -> Place {
        loop {
            // The semaphore is never closed; were it, no limit beats a stopped acceptor.
            let Ok(permit) = self.total.clone().acquire_owned().await else {
                return Place { _permit: None };
            };
            let mut m = self.max_total.lock();
            if m.1 == 0 {
                return Place { _permit: Some(permit) };
            }
            // A place a lowered limit took back.
            m.1 -= 1;
            permit.forget();
        }
    }

    /// The connection's slot, or None when `ip` is at `max.connections.per.ip`.
    pub(crate) fn admit(&self, place: Place, ip: IpAddr) -> Option<Slot> {
        let mut counts = self.per_ip.lock();
        let n = counts.entry(ip).or_default();
        if *n >= self.max_per_ip.load(Ordering::Relaxed) {
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

    #[tokio::test]
    async fn limits_change_while_connections_are_open() {
        let limits = ConnectionLimits::new(2, 1);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let a1 = limits.admit(limits.place().await, a).expect("first");
        limits.set(2, 2);
        let a2 = limits.admit(limits.place().await, a).expect("per-ip limit raised");
        // Lowered below what is open: nobody is closed, places come back as they close.
        limits.set(1, 2);
        drop(a1);
        assert_eq!(limits.total.available_permits(), 1, "the freed place is there to take");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), limits.place()).await;
        assert!(waiting.is_err(), "taken back by the lowered limit: one connection is open, the limit is one");
        drop(a2);
        let _b1 = limits.admit(limits.place().await, b).expect("a place once the open one closed");
        limits.set(3, 2);
        assert_eq!(limits.total.available_permits(), 2, "raised: two more places");
    }
}
