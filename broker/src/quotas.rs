//! Client quotas enforced as Kafka's `ClientQuotaManager` does (KIP-13, KIP-55,
//! KIP-219). The quota that applies to a request is found among the entities of the
//! committed metadata in Kafka's order, most specific first (`DefaultQuotaCallback`):
//! user and client-id, user and default client-id, user, default user and client-id,
//! default user and default client-id, default user, client-id, default client-id. The
//! level found also says who shares a rate: a user's quota is shared by all their
//! clients, a default one is given to each user (or client) separately.
//!
//! Rates are Kafka's: bytes over 11 one-second samples, the window counted as at
//! least 10 s. A request that takes a rate over its quota is answered at once with
//! `throttle_time_ms` = (rate − quota) / quota × window, and the connection reads
//! nothing more for that long (KIP-219: newer clients also wait on their own).
//!
//! `controller_mutation_rate` (KIP-599) is a token bucket of partitions created or
//! deleted: it holds up to 11 s of the rate, a request is refused (per topic,
//! THROTTLING_QUOTA_EXCEEDED) while the bucket is below zero, and one that is taken may
//! take it below zero; requests in versions before the quota existed are always taken
//! and throttled instead.
//!
//! `connection_creation_rate` (KIP-612) counts new connections per ip (its own quota,
//! else the default ip's); a connection over it is held without being served for the
//! throttle time (at most a window, 1 s) and then closed, as Kafka's acceptor does.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use std::net::IpAddr;

use karst_controller::quotas::{ClientQuota, CLIENT_ID, IP, USER};
use parking_lot::Mutex;

/// `quota.window.num` and `quota.window.size.seconds`, Kafka's defaults.
const SAMPLES: u32 = 11;
const SAMPLE: Duration = Duration::from_secs(1);
/// Rates not touched for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(SAMPLES as u64 + 1);

/// The bandwidth quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Produce,
    Fetch,
    Mutation,
    Connection,
}

impl Kind {
    pub fn key(self) -> &'static str {
        match self {
            Kind::Produce => "producer_byte_rate",
            Kind::Fetch => "consumer_byte_rate",
            Kind::Mutation => "controller_mutation_rate",
            Kind::Connection => "connection_creation_rate",
        }
    }
}

/// An entity name as the table holds it: absent, the default, or a name.
type Name = Option<Option<String>>;
/// A level of Kafka's lookup order: the (user, client-id) entity, and the rate's tags.
type Level<'a> = ((Name, Name), (&'a str, &'a str));
/// Who shares a rate: a quota kind and the (user, client-id) tags.
type RateKey = (Kind, String, String);

/// The user and client-id quotas of the committed metadata, indexed.
#[derive(Debug, Clone, Default)]
pub struct QuotaTable {
    by_entity: HashMap<(Name, Name), BTreeMap<String, f64>>,
    /// connection_creation_rate by ip (`None`: the default ip's).
    by_ip: HashMap<Option<IpAddr>, f64>,
}

impl QuotaTable {
    pub fn new(quotas: &[ClientQuota]) -> QuotaTable {
        let by_entity = quotas
            .iter()
            .filter(|q| q.entity.keys().all(|k| k == USER || k == CLIENT_ID))
            .map(|q| ((q.entity.get(USER).cloned(), q.entity.get(CLIENT_ID).cloned()), q.values.clone()))
            .collect();
        let by_ip = quotas
            .iter()
            .filter_map(|q| {
                let ip = match q.entity.get(IP)? {
                    None => None,
                    Some(name) => Some(name.parse::<IpAddr>().ok()?),
                };
                Some((ip, *q.values.get(Kind::Connection.key())?))
            })
            .collect();
        QuotaTable { by_entity, by_ip }
    }

    /// The connection_creation_rate of `ip`: its own, else the default ip's.
    pub fn ip_quota(&self, ip: IpAddr) -> Option<f64> {
        self.by_ip.get(&Some(ip)).or_else(|| self.by_ip.get(&None)).copied()
    }

    /// Whether no user or client-id quota exists.
    pub fn is_empty(&self) -> bool {
        self.by_entity.is_empty()
    }

    /// The quota of `kind` for (user, client-id), and the rate it is counted in
    /// (Kafka's metric tags: whose bytes are added together).
    pub fn resolve(&self, kind: Kind, user: &str, client: &str) -> Option<(f64, (String, String))> {
        if self.is_empty() {
            return None;
        }
        let (u, c) = (Some(Some(user.to_string())), Some(Some(client.to_string())));
        let levels: [Level<'_>; 8] = [
            ((u.clone(), c.clone()), (user, client)),
            ((u.clone(), Some(None)), (user, client)),
            ((u, None), (user, "")),
            ((Some(None), c.clone()), (user, client)),
            ((Some(None), Some(None)), (user, client)),
            ((Some(None), None), (user, "")),
            ((None, c), ("", client)),
            ((None, Some(None)), ("", client)),
        ];
        levels.into_iter().find_map(|(entity, (tu, tc))| {
            let quota = *self.by_entity.get(&entity)?.get(kind.key())?;
            Some((quota, (tu.to_string(), tc.to_string())))
        })
    }
}

/// Kafka's sampled rate: bytes per second over the last samples.
#[derive(Debug, Default)]
struct Rate {
    /// (start, bytes), oldest first, at most SAMPLES.
    samples: std::collections::VecDeque<(Instant, f64)>,
}

impl Rate {
    fn record(&mut self, bytes: f64, now: Instant) {
        while self.samples.front().is_some_and(|(start, _)| now.duration_since(*start) >= SAMPLE * SAMPLES) {
            self.samples.pop_front();
        }
        if self.samples.back().is_none_or(|(start, _)| now.duration_since(*start) >= SAMPLE) {
            self.samples.push_back((now, 0.0));
            if self.samples.len() > SAMPLES as usize {
                self.samples.pop_front();
            }
        }
        if let Some(last) = self.samples.back_mut() {
            last.1 += bytes;
        }
    }

    /// The rate and the window it was measured over (Kafka's `Rate.windowSize`: at
    /// least SAMPLES − 1 whole samples).
    fn measure(&self, now: Instant) -> (f64, Duration) {
        let total: f64 = self.samples.iter().map(|(_, v)| v).sum();
        let oldest = self.samples.front().map_or(now, |(start, _)| *start);
        let elapsed = now.duration_since(oldest).max(SAMPLE * (SAMPLES - 1));
        (total / elapsed.as_secs_f64(), elapsed)
    }

    fn last(&self) -> Option<Instant> {
        self.samples.back().map(|(start, _)| *start)
    }
}

/// KIP-599's token bucket: tokens refill at the quota up to a burst of the window.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, quota: f64, now: Instant) -> f64 {
        let burst = quota * f64::from(SAMPLES) * SAMPLE.as_secs_f64();
        self.tokens = (self.tokens + quota * now.saturating_duration_since(self.at).as_secs_f64()).min(burst);
        self.at = now;
        self.tokens
    }

    /// Milliseconds until the bucket is back at zero.
    fn deficit_ms(&self, quota: f64) -> u64 {
        (-self.tokens / quota * 1000.0).max(0.0).round() as u64
    }
}

/// The rates of everyone under a quota.
#[derive(Debug)]
pub struct Throttles {
    /// The rates, and when stale ones were last forgotten.
    rates: Mutex<(HashMap<RateKey, Rate>, Instant)>,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl Default for Throttles {
    fn default() -> Self {
        Throttles { rates: Mutex::new((HashMap::new(), Instant::now())), buckets: Mutex::default() }
    }
}

/// What a controller mutation quota said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutations {
    /// Taken; throttle for this long (ms; 0: within the quota).
    Taken(u64),
    /// Refused: the bucket is below zero for this long (ms).
    Refused(u64),
}

impl Throttles {
    /// Counts `bytes` against the quota of `kind` for (user, client-id); the throttle
    /// time in milliseconds (0: no quota, or within it).
    pub fn record(&self, table: &QuotaTable, kind: Kind, user: &str, client: &str, bytes: usize, now: Instant) -> u64 {
        let Some((quota, (tu, tc))) = table.resolve(kind, user, client) else { return 0 };
        let mut guard = self.rates.lock();
        let (rates, swept) = &mut *guard;
        if now.duration_since(*swept) >= FORGET_AFTER {
            rates.retain(|_, r| r.last().is_some_and(|l| now.duration_since(l) < FORGET_AFTER));
            *swept = now;
        }
        let rate = rates.entry((kind, tu, tc)).or_default();
        rate.record(bytes as f64, now);
        let (value, window) = rate.measure(now);
        if value <= quota {
            return 0;
        }
        ((value - quota) / quota * window.as_millis() as f64).round() as u64
    }

    /// Counts a new connection from `ip`: the milliseconds to hold it before closing it
    /// (0: within its ip's connection_creation_rate, or none). A refused connection is
    /// not counted, so refusals do not hold the rate up (as Kafka).
    pub fn connection(&self, table: &QuotaTable, ip: IpAddr, now: Instant) -> u64 {
        let Some(quota) = table.ip_quota(ip) else { return 0 };
        let mut guard = self.rates.lock();
        let rate = guard.0.entry((Kind::Connection, ip.to_string(), String::new())).or_default();
        rate.record(1.0, now);
        let (value, window) = rate.measure(now);
        if value <= quota {
            return 0;
        }
        rate.record(-1.0, now);
        (((value - quota) / quota * window.as_millis() as f64).round() as u64).min(SAMPLE.as_millis() as u64)
    }

    /// Takes `partitions` controller mutations (partitions created or deleted) for
    /// (user, client-id): `strict` (CreateTopics v6+, CreatePartitions v3+,
    /// DeleteTopics v5+) refuses them while the bucket is below zero; otherwise they are
    /// taken and the client throttled until the bucket is back at zero.
    pub fn mutate(&self, table: &QuotaTable, user: &str, client: &str, partitions: f64, strict: bool, now: Instant) -> Mutations {
        let Some((quota, tags)) = table.resolve(Kind::Mutation, user, client) else { return Mutations::Taken(0) };
        let mut buckets = self.buckets.lock();
        if buckets.len() > 10_000 {
            // A bucket untouched for a minute has refilled (or nearly): start it anew.
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < Duration::from_secs(60));
        }
        let bucket = buckets.entry(tags).or_insert_with(|| Bucket { tokens: quota * f64::from(SAMPLES) * SAMPLE.as_secs_f64(), at: now });
        if bucket.refill(quota, now) < 0.0 && strict {
            return Mutations::Refused(bucket.deficit_ms(quota));
        }
        bucket.tokens -= partitions;
        Mutations::Taken(if strict { 0 } else { bucket.deficit_ms(quota) })
    }

    /// The most one response may carry under `kind`'s quota for (user, client-id):
    /// what the quota allows over the window (Kafka's `maxValueInQuotaWindow`).
    pub fn window_bytes(table: &QuotaTable, kind: Kind, user: &str, client: &str) -> Option<usize> {
        let (quota, _) = table.resolve(kind, user, client)?;
        Some((quota * f64::from(SAMPLES - 1) * SAMPLE.as_secs_f64()).min(usize::MAX as f64) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use karst_controller::quotas::QuotaEntity;

    fn quota(entity: &[(&str, Option<&str>)], key: &str, value: f64) -> ClientQuota {
        let entity: QuotaEntity = entity.iter().map(|(k, v)| (k.to_string(), v.map(String::from))).collect();
        ClientQuota { entity, values: [(key.to_string(), value)].into_iter().collect() }
    }

    #[test]
    fn the_most_specific_quota_applies_and_names_who_shares_it() {
        let p = "producer_byte_rate";
        let table = QuotaTable::new(&[
            quota(&[(USER, Some("alice")), (CLIENT_ID, Some("app"))], p, 1.0),
            quota(&[(USER, Some("alice"))], p, 2.0),
            quota(&[(USER, None)], p, 3.0),
            quota(&[(CLIENT_ID, Some("tool"))], p, 4.0),
            quota(&[(CLIENT_ID, None)], p, 5.0),
            quota(&[(USER, Some("bob"))], "consumer_byte_rate", 6.0),
        ]);
        let r = |u: &str, c: &str| table.resolve(Kind::Produce, u, c).map(|(q, (tu, tc))| (q, tu, tc));
        assert_eq!(r("alice", "app"), Some((1.0, "alice".into(), "app".into())));
        assert_eq!(r("alice", "other"), Some((2.0, "alice".into(), "".into())), "a user's quota is shared by their clients");
        assert_eq!(r("carol", "tool"), Some((3.0, "carol".into(), "".into())), "the default user's, per user");
        assert_eq!(table.resolve(Kind::Fetch, "bob", "x").map(|(q, _)| q), Some(6.0));
        assert_eq!(table.resolve(Kind::Fetch, "carol", "x"), None);
        let clients = QuotaTable::new(&[quota(&[(CLIENT_ID, Some("tool"))], p, 4.0), quota(&[(CLIENT_ID, None)], p, 5.0)]);
        assert_eq!(clients.resolve(Kind::Produce, "u", "tool").map(|(q, t)| (q, t.1)), Some((4.0, "tool".into())));
        assert_eq!(clients.resolve(Kind::Produce, "u", "x").map(|(q, t)| (q, t.0, t.1)), Some((5.0, "".into(), "x".into())));
    }

    #[test]
    fn throttle_time_brings_the_rate_back_to_the_quota() {
        let table = QuotaTable::new(&[quota(&[(USER, Some("alice"))], "producer_byte_rate", 1000.0)]);
        let t = Throttles::default();
        let start = Instant::now();
        // 10 s at 1000 B/s: within the quota.
        for s in 0..10 {
            assert_eq!(t.record(&table, Kind::Produce, "alice", "c", 1000, start + SAMPLE * s), 0);
        }
        // 5000 more bytes at once: 15,000 B over a 10 s window is 1,500 B/s, half
        // again the quota: wait half the window.
        let ms = t.record(&table, Kind::Produce, "alice", "c", 5000, start + SAMPLE * 10);
        assert!((4900..=5100).contains(&ms), "{ms}");
        assert_eq!(t.record(&table, Kind::Produce, "bob", "c", 1 << 30, start), 0, "no quota for bob");
        assert_eq!(Throttles::window_bytes(&table, Kind::Produce, "alice", "x"), Some(10_000));
    }

    #[test]
    fn connections_over_an_ips_rate_are_held_at_most_a_window() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let entity = |name: Option<&str>| -> QuotaEntity { [(IP.to_string(), name.map(String::from))].into_iter().collect() };
        let table = QuotaTable::new(&[
            ClientQuota { entity: entity(Some("10.0.0.1")), values: [("connection_creation_rate".to_string(), 2.0)].into_iter().collect() },
            ClientQuota { entity: entity(None), values: [("connection_creation_rate".to_string(), 100.0)].into_iter().collect() },
        ]);
        assert_eq!(table.ip_quota(ip("10.0.0.2")), Some(100.0), "the default ip's");
        let t = Throttles::default();
        let now = Instant::now();
        // 2/s over a 10 s window: twenty connections at once are within it.
        for _ in 0..20 {
            assert_eq!(t.connection(&table, ip("10.0.0.1"), now), 0);
        }
        assert_eq!(t.connection(&table, ip("10.0.0.1"), now), 500, "the 21st waits (2.1 - 2) / 2 × 10 s");
        assert_eq!(t.connection(&table, ip("10.0.0.1"), now), 500, "a refusal is not counted");
        assert_eq!(t.connection(&table, ip("10.0.0.2"), now), 0);
    }

    #[test]
    fn mutations_are_refused_while_the_bucket_is_below_zero() {
        let table = QuotaTable::new(&[quota(&[(CLIENT_ID, None)], "controller_mutation_rate", 2.0)]);
        let t = Throttles::default();
        let start = Instant::now();
        // A burst of 22 (11 s at 2/s): 30 partitions at once are taken, leaving -8.
        assert_eq!(t.mutate(&table, "u", "admin", 30.0, true, start), Mutations::Taken(0));
        assert_eq!(t.mutate(&table, "u", "admin", 1.0, true, start), Mutations::Refused(4000), "8 tokens short at 2/s");
        assert_eq!(t.mutate(&table, "u", "admin", 1.0, false, start), Mutations::Taken(4500), "an old version is taken, then throttled");
        assert_eq!(t.mutate(&table, "u", "admin", 1.0, true, start + Duration::from_millis(4500)), Mutations::Taken(0));
        assert_eq!(t.mutate(&table, "u", "other", 1.0, true, start), Mutations::Taken(0), "each client id its own bucket");
    }
}
