//! KIP-932 share groups: membership (the share group coordinator), per-partition
//! delivery state (the share-partition leader's part), share sessions, and the
//! durable state of both in `__consumer_offsets` ([`state_log`]).
//!
//! This module holds state and rules only; `handlers::share` reads the log, checks
//! leadership and persists.

pub(crate) mod group;
pub(crate) mod partition;
pub(crate) mod session;
pub(crate) mod state_log;

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::errors::BrokerError;
use crate::partition::Partition;
use group::{GroupSettings, ShareGroup};
use partition::{Limits, SharePartition, Snapshot};
use session::ShareSessions;
use state_log::ShareKey;

/// A share-partition: (group, topic, partition).
pub(crate) type SpKey = (String, String, i32);

/// The group configs a share group may set (IncrementalAlterConfigs on its GROUP
/// resource), as Kafka's `GroupConfig` names them.
pub(crate) const GROUP_CONFIGS: &[&str] = &[
    "share.auto.offset.reset",
    "share.heartbeat.interval.ms",
    "share.session.timeout.ms",
    "share.record.lock.duration.ms",
    "share.isolation.level",
];

/// Broker-wide share-group settings (`group.share.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareSettings {
    pub heartbeat_interval_ms: i32,
    pub session_timeout_ms: i32,
    pub record_lock_duration_ms: i64,
    pub delivery_count_limit: i16,
    pub partition_max_record_locks: i64,
    pub max_size: usize,
    pub max_share_sessions: usize,
}

impl Default for ShareSettings {
    /// Kafka's defaults.
    fn default() -> ShareSettings {
        ShareSettings {
            heartbeat_interval_ms: 5000,
            session_timeout_ms: 45_000,
            record_lock_duration_ms: 30_000,
            delivery_count_limit: 5,
            partition_max_record_locks: 2000,
            max_size: 200,
            max_share_sessions: 2000,
        }
    }
}

#[derive(Debug)]
pub struct ShareCoordinator {
    pub(crate) groups: Mutex<HashMap<String, ShareGroup>>,
    /// Share-partitions this broker leads the partition of, as used since it started.
    pub(crate) partitions: Mutex<HashMap<SpKey, SharePartition>>,
    /// The last persisted state of each share-partition whose group this broker coordinates.
    pub(crate) snapshots: Mutex<HashMap<SpKey, Snapshot>>,
    /// The highest partition leader epoch a share-partition's state was read or
    /// written at here, as its coordinator: older leaders are fenced. Held while a
    /// write is checked and appended, so checks and appends are in one order.
    pub(crate) fences: Mutex<HashMap<SpKey, i32>>,
    /// One writer at a time per share-partition this broker leads: its snapshots
    /// reach the coordinator in the order they were taken.
    pub(crate) writers: Mutex<HashMap<SpKey, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    /// Idle connections to other brokers' coordinators, by address.
    pub(crate) peers: Mutex<HashMap<String, Vec<crate::peer::Conn>>>,
    pub(crate) configs: Mutex<HashMap<String, BTreeMap<String, String>>>,
    pub(crate) sessions: Mutex<ShareSessions>,
    /// Bumped when records become available again (released, expired): waiting
    /// ShareFetch requests look again.
    available: watch::Sender<u64>,
    pub(crate) settings: ShareSettings,
}

impl ShareCoordinator {
    pub(crate) fn new(settings: ShareSettings) -> ShareCoordinator {
        ShareCoordinator {
            groups: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashMap::new()),
            snapshots: Mutex::new(HashMap::new()),
            fences: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            configs: Mutex::new(HashMap::new()),
            sessions: Mutex::new(ShareSessions::new(settings.max_share_sessions, 120_000)),
            available: watch::channel(0).0,
            settings,
        }
    }

    /// Reads the share-group records of `__consumer_offsets` partitions back.
    pub(crate) fn load<'a>(&self, parts: impl Iterator<Item = &'a Partition>) -> Result<usize, BrokerError> {
        let mut n = 0usize;
        for p in parts {
            crate::internal_topic::for_each_record(p, crate::group::OFFSETS_TOPIC, |r| {
                if r.control || r.transactional {
                    return;
                }
                let Some(key) = r.key.and_then(state_log::decode_key) else { return };
                n += 1;
                self.apply(key, r.value);
            })?;
        }
        Ok(n)
    }

    /// One share-group record, as written or read back.
    pub(crate) fn apply(&self, key: ShareKey, value: Option<bytes::Bytes>) {
        match key {
            ShareKey::Partition { group, topic, partition } => {
                let k = (group, topic, partition);
                match value.and_then(state_log::decode_partition) {
                    Some(s) => self.snapshots.lock().insert(k, s),
                    None => self.snapshots.lock().remove(&k),
                };
            }
            ShareKey::Config { group } => match value.and_then(state_log::decode_configs) {
                Some(c) => {
                    self.configs.lock().insert(group, c);
                }
                None => {
                    self.configs.lock().remove(&group);
                }
            },
            ShareKey::Group { group } => match value.and_then(state_log::decode_group) {
                Some(epoch) => {
                    let mut groups = self.groups.lock();
                    let g = groups.entry(group.clone()).or_insert_with(|| ShareGroup::new(&group));
                    g.epoch = g.epoch.max(epoch);
                    g.assignment_epoch = g.assignment_epoch.max(epoch);
                }
                None => {
                    self.groups.lock().remove(&group);
                }
            },
        }
    }

    /// This broker now coordinates the groups of `__consumer_offsets` partition `p`
    /// (`partitions` in all): their share records are read again from its log,
    /// which followed the old coordinator's.
    pub(crate) fn take_over(&self, p: &Partition, partitions: i32) {
        self.forget(p.index, partitions);
        let read = crate::internal_topic::for_each_record(p, crate::group::OFFSETS_TOPIC, |r| {
            if r.control || r.transactional {
                return;
            }
            if let Some(key) = r.key.and_then(state_log::decode_key) {
                self.apply(key, r.value);
            }
        });
        if let Err(e) = read {
            tracing::warn!(partition = p.index, "loading share groups failed: {e}");
        }
    }

    /// This broker no longer coordinates the groups of partition `index`.
    pub(crate) fn hand_over(&self, index: i32, partitions: i32) {
        self.forget(index, partitions);
    }

    fn forget(&self, index: i32, partitions: i32) {
        let theirs = |group: &str| crate::group::records::partition_for(group, partitions) == index;
        self.snapshots.lock().retain(|k, _| !theirs(&k.0));
        self.fences.lock().retain(|k, _| !theirs(&k.0));
        self.configs.lock().retain(|g, _| !theirs(g));
        self.groups.lock().retain(|g, _| !theirs(g));
    }

    /// The lock a share-partition's reads and writes of its durable state take.
    pub(crate) fn writer(&self, key: &SpKey) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        self.writers.lock().entry(key.clone()).or_default().clone()
    }

    pub(crate) fn is_share_group(&self, id: &str) -> bool {
        self.groups.lock().contains_key(id)
    }

    fn group_config(&self, group: &str, key: &str) -> Option<String> {
        self.configs.lock().get(group).and_then(|c| c.get(key).cloned())
    }

    fn config_number(&self, group: &str, key: &str) -> Option<i64> {
        self.group_config(group, key).and_then(|v| v.parse().ok()).filter(|v| *v > 0)
    }

    pub(crate) fn limits(&self, group: &str) -> Limits {
        Limits {
            lock_ms: self.config_number(group, "share.record.lock.duration.ms").unwrap_or(self.settings.record_lock_duration_ms),
            delivery_limit: self.settings.delivery_count_limit,
            max_in_flight: self.settings.partition_max_record_locks,
        }
    }

    pub(crate) fn group_settings(&self, group: &str) -> GroupSettings {
        GroupSettings {
            session_timeout_ms: self
                .config_number(group, "share.session.timeout.ms")
                .unwrap_or(i64::from(self.settings.session_timeout_ms)),
            max_size: self.settings.max_size,
        }
    }

    pub(crate) fn heartbeat_interval_ms(&self, group: &str) -> i32 {
        self.config_number(group, "share.heartbeat.interval.ms")
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(self.settings.heartbeat_interval_ms)
    }

    /// Whether a new share-partition starts at the log's start (`earliest`) rather
    /// than its end (`latest`, Kafka's default).
    pub(crate) fn starts_earliest(&self, group: &str) -> bool {
        self.group_config(group, "share.auto.offset.reset").is_some_and(|v| v.eq_ignore_ascii_case("earliest"))
    }

    pub(crate) fn subscribe_available(&self) -> watch::Receiver<u64> {
        self.available.subscribe()
    }

    pub(crate) fn notify_available(&self) {
        self.available.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Releases everything `member` of `group` holds, in every share-partition here.
    pub(crate) fn release_member(&self, group: &str, member: &str) {
        let limits = self.limits(group);
        let mut changed = false;
        for ((g, _, _), p) in self.partitions.lock().iter_mut() {
            if g == group {
                changed |= p.release_member(member, &limits);
            }
        }
        if changed {
            self.notify_available();
        }
    }

    /// Periodic work: silent members leave their groups (their records released),
    /// expired acquisition locks free their records.
    pub(crate) fn tick(&self, now: i64) {
        let gone: Vec<(String, String)> = {
            let mut groups = self.groups.lock();
            groups.iter_mut().flat_map(|(id, g)| g.expire(now).into_iter().map(move |m| (id.clone(), m))).collect()
        };
        for (group, member) in &gone {
            tracing::info!(group, member, "share group member expired");
            self.sessions.lock().remove(group, member);
            self.release_member(group, member);
        }
        let mut changed = false;
        let limits: HashMap<String, Limits> = {
            let partitions = self.partitions.lock();
            partitions
                .keys()
                .map(|(g, _, _)| g.clone())
                .collect::<std::collections::HashSet<_>>()
                .into_iter()
                .map(|g| {
                    let l = self.limits(&g);
                    (g, l)
                })
                .collect()
        };
        for ((g, _, _), p) in self.partitions.lock().iter_mut() {
            if let Some(l) = limits.get(g) {
                changed |= p.expire_locks(now, l);
            }
        }
        if changed {
            self.notify_available();
        }
    }

    /// Forgets a share-partition's live state (its offsets were altered or deleted):
    /// the next fetch starts it again from its snapshot.
    pub(crate) fn reset_partition(&self, key: &SpKey) {
        self.partitions.lock().remove(key);
    }
}
