//! KIP-227 incremental fetch sessions: the broker's cache of them and the rules by
//! which a Fetch request (v7+) uses, creates, updates or closes one, as Kafka's
//! `FetchSession`, `FetchSessionCacheShard` and `FetchManager` do.
//!
//! A client that fetches many partitions sends them all once (a full fetch, session
//! epoch 0) and gets a session id; afterwards it sends only the partitions whose fetch
//! position changed (and those it stopped fetching, as forgotten), with the session's
//! next epoch, and the broker answers only for partitions that have something new:
//! records, a moved high watermark or log start offset, or an error. Everything else
//! it fetches from the cached positions and leaves out of the answer.
//!
//! This module knows nothing of the broker: it is given the request's partitions and,
//! after the read, what each answer holds, and a clock (`now_ms`) for eviction.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use karst_protocol::error_codes as ec;
use parking_lot::Mutex;
use uuid::Uuid;

/// The session id of a sessionless fetch (and of an answer without a session).
pub(crate) const INVALID_SESSION_ID: i32 = 0;
/// A full fetch that asks for a new session.
pub(crate) const INITIAL_EPOCH: i32 = 0;
/// A full fetch that wants no session (closing the one it names).
pub(crate) const FINAL_EPOCH: i32 = -1;

/// Kafka's `FetchMetadata.nextEpoch`: epochs count up from 1 and wrap to 1 after
/// `i32::MAX`; the final epoch stays final.
pub(crate) fn next_epoch(prev: i32) -> i32 {
    if prev < 0 {
        FINAL_EPOCH
    } else if prev == i32::MAX {
        1
    } else {
        prev + 1
    }
}

/// A topic as the request names it: by id from Fetch v13, by name before.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TopicKey {
    Id(Uuid),
    Name(Arc<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PartitionKey {
    pub(crate) topic: TopicKey,
    pub(crate) partition: i32,
}

/// What the fetcher asks of one partition; a session keeps the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FetchParams {
    pub(crate) fetch_offset: i64,
    /// The fetcher's own log start (followers).
    pub(crate) log_start_offset: i64,
    pub(crate) max_bytes: i32,
    pub(crate) current_leader_epoch: i32,
    pub(crate) last_fetched_epoch: i32,
}

/// What the answer for one partition holds, as far as a session cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answered {
    pub(crate) record_bytes: usize,
    pub(crate) error: i16,
    pub(crate) high_watermark: i64,
    pub(crate) log_start_offset: i64,
    /// A diverging epoch is set (followers truncate on it).
    pub(crate) diverging_epoch: bool,
    /// A preferred read replica is named.
    pub(crate) preferred_read_replica: bool,
}

/// One partition of a session: the fetcher's latest request and what it was last told.
#[derive(Debug, Clone)]
struct CachedPartition {
    params: FetchParams,
    high_watermark: i64,
    local_log_start_offset: i64,
}

impl CachedPartition {
    fn new(params: FetchParams) -> CachedPartition {
        CachedPartition { params, high_watermark: -1, local_log_start_offset: -1 }
    }

    /// Kafka's `maybeUpdateResponseData`: whether the answer must carry this partition,
    /// remembering what it will have told the fetcher. Records, a changed high
    /// watermark or log start offset, a preferred replica, an error or a diverging
    /// epoch are sent; an error also forgets the high watermark, so the partition is
    /// sent again once the error is gone.
    fn must_respond(&mut self, a: &Answered) -> bool {
        let mut must = a.record_bytes > 0;
        if self.high_watermark != a.high_watermark {
            must = true;
            self.high_watermark = a.high_watermark;
        }
        if self.local_log_start_offset != a.log_start_offset {
            must = true;
            self.local_log_start_offset = a.log_start_offset;
        }
        if a.preferred_read_replica {
            must = true;
        }
        if a.error != ec::NONE {
            self.high_watermark = -1;
            must = true;
        }
        must || a.diverging_epoch
    }
}

/// One fetch session. Partitions keep their order; one that was sent records moves
/// to the end, so a size-limited answer serves the others first next time.
#[derive(Debug)]
pub(crate) struct Session {
    id: i32,
    uses_topic_ids: bool,
    /// The epoch the next request must carry.
    epoch: i32,
    partitions: IndexMap<PartitionKey, CachedPartition>,
}

/// How a Fetch request is served, decided before anything is read.
#[derive(Debug)]
pub(crate) enum Context {
    /// No session: every requested partition is answered, session id 0.
    Sessionless,
    /// A session error: the answer carries this top-level error, session id 0 and no
    /// partitions.
    Error(i16),
    /// A full fetch that creates a session once answered, if there is room.
    Full,
    /// An incremental fetch of the session's partitions.
    Incremental(Incremental),
}

/// An incremental fetch in progress.
#[derive(Debug)]
pub(crate) struct Incremental {
    session: Arc<Mutex<Session>>,
    pub(crate) id: i32,
    request_epoch: i32,
    /// Every partition of the session (not just the request's), in session order,
    /// with the latest parameters the fetcher gave for it.
    pub(crate) partitions: Vec<(PartitionKey, FetchParams)>,
}

/// What an incremental answer keeps.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filtered {
    /// For each answered partition, in order, whether it is sent.
    Send(Vec<bool>),
    /// The session moved on meanwhile (a duplicate or concurrent request): the
    /// answer is this error with the session's id and no partitions, as Kafka's.
    Error(i16),
}

/// The cache's bookkeeping of one session, for eviction (Kafka's `lastUsed` and
/// `evictableByAll`/`evictableByPrivileged` trees, as flags read by a scan).
#[derive(Debug)]
struct Entry {
    session: Arc<Mutex<Session>>,
    /// Created by a follower.
    privileged: bool,
    creation_ms: i64,
    last_used_ms: i64,
    /// Partitions at the last touch.
    size: usize,
    evictable_by_privileged: bool,
    evictable_by_all: bool,
}

#[derive(Debug, Default)]
struct Cache {
    sessions: HashMap<i32, Entry>,
    /// Sum of the sessions' sizes.
    partitions: usize,
}

impl Cache {
    fn remove(&mut self, id: i32) -> bool {
        match self.sessions.remove(&id) {
            Some(e) => {
                self.partitions = self.partitions.saturating_sub(e.size);
                true
            }
            None => false,
        }
    }

    /// Kafka's `touch`: records a use at `now` and the session's size, and whether
    /// the session may now be evicted for a new one.
    fn touch(&mut self, id: i32, size: usize, now_ms: i64, eviction_ms: i64) {
        let Some(e) = self.sessions.get_mut(&id) else { return };
        self.partitions = self.partitions.saturating_sub(e.size) + size;
        e.size = size;
        e.last_used_ms = now_ms;
        let old = now_ms.saturating_sub(e.creation_ms) > eviction_ms;
        e.evictable_by_privileged = !e.privileged || old;
        e.evictable_by_all = old;
    }
}

/// The broker's fetch sessions (`max.incremental.fetch.session.cache.slots`; 0
/// disables them: every full fetch is answered without one).
///
/// Lock order, as Kafka's: the cache, then a session; never the other way.
#[derive(Debug)]
pub(crate) struct FetchSessions {
    slots: usize,
    eviction_ms: i64,
    cache: Mutex<Cache>,
}

impl FetchSessions {
    pub(crate) fn new(slots: usize, eviction_ms: i64) -> FetchSessions {
        FetchSessions { slots, eviction_ms, cache: Mutex::new(Cache::default()) }
    }

    /// Sessions cached.
    pub(crate) fn len(&self) -> usize {
        self.cache.lock().sessions.len()
    }

    /// Partitions cached over all sessions.
    pub(crate) fn partitions(&self) -> usize {
        self.cache.lock().partitions
    }

    /// Kafka's `FetchManager.newContext`: what a request with `session_id` and
    /// `epoch` gets. Fetch below v7 has no sessions (the caller passes 0 and -1).
    /// A full fetch closes the session it names; epoch -1 then fetches without one,
    /// epoch 0 asks for a new one. An incremental fetch must name a cached session
    /// with its expected epoch and the same naming of topics (ids from v13); its
    /// partitions are added or updated and `forgotten` removed, and a session left
    /// empty is closed (the fetch is then sessionless).
    pub(crate) fn new_context(
        &self,
        version: i16,
        session_id: i32,
        epoch: i32,
        requested: &[(PartitionKey, FetchParams)],
        forgotten: &[PartitionKey],
        now_ms: i64,
    ) -> Context {
        if version < 7 {
            return Context::Sessionless;
        }
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            if session_id != INVALID_SESSION_ID {
                self.cache.lock().remove(session_id);
            }
            return if epoch == FINAL_EPOCH { Context::Sessionless } else { Context::Full };
        }
        let mut cache = self.cache.lock();
        let Some(entry) = cache.sessions.get(&session_id) else {
            return Context::Error(ec::FETCH_SESSION_ID_NOT_FOUND);
        };
        let shared = entry.session.clone();
        let mut session = shared.lock();
        if session.epoch != epoch {
            return Context::Error(ec::INVALID_FETCH_SESSION_EPOCH);
        }
        if session.uses_topic_ids != (version >= 13) {
            return Context::Error(ec::FETCH_SESSION_TOPIC_ID_ERROR);
        }
        for (key, params) in requested {
            match session.partitions.get_mut(key) {
                Some(cached) => cached.params = *params,
                None => {
                    session.partitions.insert(key.clone(), CachedPartition::new(*params));
                }
            }
        }
        for key in forgotten {
            session.partitions.shift_remove(key);
        }
        if session.partitions.is_empty() {
            drop(session);
            cache.remove(session_id);
            return Context::Sessionless;
        }
        let size = session.partitions.len();
        cache.touch(session_id, size, now_ms, self.eviction_ms);
        session.epoch = next_epoch(session.epoch);
        let partitions = session.partitions.iter().map(|(k, c)| (k.clone(), c.params)).collect();
        drop(session);
        Context::Incremental(Incremental { session: shared, id: session_id, request_epoch: epoch, partitions })
    }

    /// After a full fetch (epoch 0) is answered: creates a session of its partitions
    /// (with what each was told) if there is room or one can be evicted. Returns the
    /// new session's id (0: none) and whether another session was evicted for it.
    pub(crate) fn create(
        &self,
        privileged: bool,
        uses_topic_ids: bool,
        partitions: Vec<(PartitionKey, FetchParams, Answered)>,
        now_ms: i64,
    ) -> (i32, bool) {
        let size = partitions.len();
        let mut cache = self.cache.lock();
        let mut evicted = false;
        if cache.sessions.len() >= self.slots {
            if !self.try_evict(&mut cache, privileged, size, now_ms) {
                return (INVALID_SESSION_ID, false);
            }
            evicted = true;
        }
        let id = loop {
            let id = (Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff) as i32;
            if id != INVALID_SESSION_ID && !cache.sessions.contains_key(&id) {
                break id;
            }
        };
        let partitions = partitions
            .into_iter()
            .map(|(key, params, a)| {
                (key, CachedPartition { params, high_watermark: a.high_watermark, local_log_start_offset: a.log_start_offset })
            })
            .collect();
        let session = Session { id, uses_topic_ids, epoch: next_epoch(INITIAL_EPOCH), partitions };
        cache.sessions.insert(
            id,
            Entry {
                session: Arc::new(Mutex::new(session)),
                privileged,
                creation_ms: now_ms,
                last_used_ms: now_ms,
                size: 0,
                evictable_by_privileged: false,
                evictable_by_all: false,
            },
        );
        cache.touch(id, size, now_ms, self.eviction_ms);
        (id, evicted)
    }

    /// Kafka's `tryEvict`: a new session (`privileged`, `size` partitions) may take the
    /// place of the least recently used one if that was unused for longer than the
    /// eviction time; otherwise of the least valuable evictable one (unprivileged
    /// before privileged, then fewest partitions) if the new one is worth more. A
    /// session is evictable by followers unless it is a follower's own created less
    /// than the eviction time ago, and by anyone once that old.
    fn try_evict(&self, cache: &mut Cache, privileged: bool, size: usize, now_ms: i64) -> bool {
        let Some((&stale, entry)) = cache.sessions.iter().min_by_key(|(id, e)| (e.last_used_ms, **id)) else {
            return false;
        };
        if now_ms.saturating_sub(entry.last_used_ms) > self.eviction_ms {
            return cache.remove(stale);
        }
        let cheapest = cache
            .sessions
            .iter()
            .filter(|(_, e)| if privileged { e.evictable_by_privileged } else { e.evictable_by_all })
            .map(|(id, e)| (e.privileged, e.size, *id))
            .min();
        match cheapest {
            Some(victim) if (privileged, size, 0) >= victim => cache.remove(victim.2),
            _ => false,
        }
    }
}

impl Incremental {
    /// Kafka's `IncrementalFetchContext.updateAndGenerateResponseData`: which of the
    /// answered partitions (in the order read) the answer carries, updating what the
    /// session remembers of each; a partition sent with records moves to the end.
    pub(crate) fn filter<'a>(&self, answered: impl IntoIterator<Item = (&'a PartitionKey, Answered)>) -> Filtered {
        let answered = answered.into_iter();
        let mut session = self.session.lock();
        if session.epoch != next_epoch(self.request_epoch) {
            tracing::info!(
                session = session.id,
                expected = next_epoch(self.request_epoch),
                epoch = session.epoch,
                "fetch session moved on: a duplicate request?"
            );
            return Filtered::Error(ec::INVALID_FETCH_SESSION_EPOCH);
        }
        let mut send = Vec::with_capacity(answered.size_hint().0);
        let mut to_back = Vec::new();
        for (key, a) in answered {
            let must = match session.partitions.get_mut(key) {
                Some(cached) => cached.must_respond(&a),
                None => true,
            };
            if must && a.record_bytes > 0 {
                to_back.push(key);
            }
            send.push(must);
        }
        for key in to_back {
            if let Some((k, v)) = session.partitions.shift_remove_entry(key) {
                session.partitions.insert(k, v);
            }
        }
        Filtered::Send(send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVICT: i64 = 120_000;

    fn key(topic: &str, partition: i32) -> PartitionKey {
        PartitionKey { topic: TopicKey::Name(Arc::from(topic)), partition }
    }

    fn id_key(id: u128, partition: i32) -> PartitionKey {
        PartitionKey { topic: TopicKey::Id(Uuid::from_u128(id)), partition }
    }

    fn params(offset: i64) -> FetchParams {
        FetchParams { fetch_offset: offset, log_start_offset: -1, max_bytes: 1 << 20, current_leader_epoch: -1, last_fetched_epoch: -1 }
    }

    fn quiet(hw: i64) -> Answered {
        Answered {
            record_bytes: 0,
            error: ec::NONE,
            high_watermark: hw,
            log_start_offset: 0,
            diverging_epoch: false,
            preferred_read_replica: false,
        }
    }

    fn with_records(hw: i64) -> Answered {
        Answered { record_bytes: 100, ..quiet(hw) }
    }

    /// A session of partitions 0..n of `t` (v12, by name), created at `now`; its id.
    fn open(s: &FetchSessions, n: i32, privileged: bool, now: i64) -> i32 {
        let parts = (0..n).map(|p| (key("t", p), params(0), quiet(10))).collect();
        let (id, _) = s.create(privileged, false, parts, now);
        id
    }

    fn pairs(answered: &[(PartitionKey, Answered)]) -> impl Iterator<Item = (&PartitionKey, Answered)> {
        answered.iter().map(|(k, a)| (k, *a))
    }

    fn incremental(c: Context) -> Incremental {
        match c {
            Context::Incremental(i) => i,
            other => panic!("expected an incremental context, got {other:?}"),
        }
    }

    #[test]
    fn epochs_count_from_one_and_wrap_to_one() {
        assert_eq!(next_epoch(INITIAL_EPOCH), 1);
        assert_eq!(next_epoch(41), 42);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(FINAL_EPOCH), FINAL_EPOCH);
        assert_eq!(next_epoch(-7), FINAL_EPOCH);
    }

    #[test]
    fn full_fetches_create_sessions_and_sessionless_ones_do_not() {
        let s = FetchSessions::new(10, EVICT);
        assert!(matches!(s.new_context(12, 0, FINAL_EPOCH, &[], &[], 0), Context::Sessionless));
        assert!(matches!(s.new_context(6, 0, INITIAL_EPOCH, &[], &[], 0), Context::Sessionless), "no sessions before v7");
        assert!(matches!(s.new_context(12, 0, INITIAL_EPOCH, &[(key("t", 0), params(0))], &[], 0), Context::Full));
        let id = open(&s, 3, false, 0);
        assert_ne!(id, INVALID_SESSION_ID);
        assert_eq!((s.len(), s.partitions()), (1, 3));
        // The first incremental fetch carries epoch 1.
        let inc = incremental(s.new_context(12, id, 1, &[], &[], 1));
        assert_eq!(inc.id, id);
        assert_eq!(inc.partitions.len(), 3, "every session partition is fetched, not only the request's");
    }

    #[test]
    fn incremental_fetches_add_update_and_forget_partitions() {
        let s = FetchSessions::new(10, EVICT);
        let id = open(&s, 2, false, 0);
        // Partition 1 moves on, partition 5 joins, partition 0 is forgotten.
        let inc = incremental(s.new_context(12, id, 1, &[(key("t", 1), params(7)), (key("t", 5), params(3))], &[key("t", 0)], 1));
        let got: Vec<(i32, i64)> = inc.partitions.iter().map(|(k, p)| (k.partition, p.fetch_offset)).collect();
        assert_eq!(got, vec![(1, 7), (5, 3)]);
        assert_eq!(s.partitions(), 2);
        // Nothing asked, nothing forgotten: the cached positions are fetched again.
        let inc = incremental(s.new_context(12, id, 2, &[], &[], 2));
        let got: Vec<(i32, i64)> = inc.partitions.iter().map(|(k, p)| (k.partition, p.fetch_offset)).collect();
        assert_eq!(got, vec![(1, 7), (5, 3)]);
        // Forgetting a partition the session does not hold changes nothing.
        let inc = incremental(s.new_context(12, id, 3, &[], &[key("t", 99)], 3));
        assert_eq!(inc.partitions.len(), 2);
    }

    #[test]
    fn unchanged_partitions_are_left_out_of_incremental_answers() {
        let s = FetchSessions::new(10, EVICT);
        let id = open(&s, 4, false, 0);
        let inc = incremental(s.new_context(12, id, 1, &[], &[], 1));
        let answered: Vec<(PartitionKey, Answered)> = vec![
            (key("t", 0), quiet(10)),        // nothing new
            (key("t", 1), with_records(12)), // records
            (key("t", 2), quiet(11)),        // the high watermark moved
            (key("t", 3), Answered { log_start_offset: 5, ..quiet(10) }),
        ];
        assert_eq!(inc.filter(pairs(&answered)), Filtered::Send(vec![false, true, true, true]));
        // Told once, not again.
        let inc = incremental(s.new_context(12, id, 2, &[], &[], 2));
        let order: Vec<i32> = inc.partitions.iter().map(|(k, _)| k.partition).collect();
        assert_eq!(order, vec![0, 2, 3, 1], "the partition that got records moves to the end");
        let answered: Vec<(PartitionKey, Answered)> = vec![
            (key("t", 0), quiet(10)),
            (key("t", 2), quiet(11)),
            (key("t", 3), Answered { log_start_offset: 5, ..quiet(10) }),
            (key("t", 1), quiet(12)),
        ];
        assert_eq!(inc.filter(pairs(&answered)), Filtered::Send(vec![false, false, false, false]));
    }

    #[test]
    fn errors_are_always_sent_and_resent_once_gone() {
        let s = FetchSessions::new(10, EVICT);
        let id = open(&s, 1, false, 0);
        let failing = Answered { error: ec::NOT_LEADER_OR_FOLLOWER, high_watermark: -1, log_start_offset: -1, ..quiet(0) };
        for epoch in 1..=2 {
            let inc = incremental(s.new_context(12, id, epoch, &[], &[], 1));
            assert_eq!(inc.filter(pairs(&[(key("t", 0), failing)])), Filtered::Send(vec![true]), "epoch {epoch}");
        }
        // The error is gone and the high watermark is the one sent before it: sent anyway.
        let inc = incremental(s.new_context(12, id, 3, &[], &[], 1));
        assert_eq!(inc.filter(pairs(&[(key("t", 0), quiet(10))])), Filtered::Send(vec![true]));
        let diverging = Answered { diverging_epoch: true, ..quiet(10) };
        let inc = incremental(s.new_context(12, id, 4, &[], &[], 1));
        assert_eq!(inc.filter(pairs(&[(key("t", 0), diverging)])), Filtered::Send(vec![true]));
    }

    #[test]
    fn unknown_sessions_and_wrong_epochs_are_session_errors() {
        let s = FetchSessions::new(10, EVICT);
        assert!(matches!(s.new_context(12, 12345, 1, &[], &[], 0), Context::Error(ec::FETCH_SESSION_ID_NOT_FOUND)));
        let id = open(&s, 1, false, 0);
        assert!(matches!(s.new_context(12, id, 2, &[], &[], 0), Context::Error(ec::INVALID_FETCH_SESSION_EPOCH)));
        // The wrong epoch did not move the session on: epoch 1 still works, then 2.
        incremental(s.new_context(12, id, 1, &[], &[], 0));
        assert!(matches!(s.new_context(12, id, 1, &[], &[], 0), Context::Error(ec::INVALID_FETCH_SESSION_EPOCH)), "a replay");
        incremental(s.new_context(12, id, 2, &[], &[], 0));
        // A session by name cannot be used at v13 (ids), nor one by id below it.
        assert!(matches!(s.new_context(13, id, 3, &[], &[], 0), Context::Error(ec::FETCH_SESSION_TOPIC_ID_ERROR)));
        let (by_id, _) = s.create(false, true, vec![(id_key(7, 0), params(0), quiet(1))], 0);
        assert!(matches!(s.new_context(12, by_id, 1, &[], &[], 0), Context::Error(ec::FETCH_SESSION_TOPIC_ID_ERROR)));
        incremental(s.new_context(13, by_id, 1, &[], &[], 0));
    }

    #[test]
    fn epochs_wrap_from_max_to_one() {
        let s = FetchSessions::new(10, EVICT);
        let id = open(&s, 1, false, 0);
        s.cache.lock().sessions[&id].session.lock().epoch = i32::MAX;
        let inc = incremental(s.new_context(12, id, i32::MAX, &[], &[], 0));
        assert_eq!(inc.filter(pairs(&[(key("t", 0), quiet(10))])), Filtered::Send(vec![false]));
        incremental(s.new_context(12, id, 1, &[], &[], 0));
    }

    #[test]
    fn a_request_overtaken_by_the_next_one_answers_invalid_epoch() {
        let s = FetchSessions::new(10, EVICT);
        let id = open(&s, 1, false, 0);
        let first = incremental(s.new_context(12, id, 1, &[], &[], 0));
        let second = incremental(s.new_context(12, id, 2, &[], &[], 0));
        assert_eq!(first.filter(pairs(&[(key("t", 0), quiet(10))])), Filtered::Error(ec::INVALID_FETCH_SESSION_EPOCH));
        assert_eq!(second.filter(pairs(&[(key("t", 0), quiet(10))])), Filtered::Send(vec![false]));
    }

    #[test]
    fn final_epoch_closes_the_session_and_fetches_without_one() {
        let s = FetchSessions::new(10, EVICT);
        let id = open(&s, 2, false, 0);
        assert!(matches!(s.new_context(12, id, FINAL_EPOCH, &[(key("t", 0), params(0))], &[], 1), Context::Sessionless));
        assert_eq!((s.len(), s.partitions()), (0, 0));
        assert!(matches!(s.new_context(12, id, 1, &[], &[], 1), Context::Error(ec::FETCH_SESSION_ID_NOT_FOUND)));
        // Epoch 0 naming a session closes it too, and asks for a new one.
        let id = open(&s, 2, false, 0);
        assert!(matches!(s.new_context(12, id, INITIAL_EPOCH, &[], &[], 1), Context::Full));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn forgetting_every_partition_closes_the_session() {
        let s = FetchSessions::new(10, EVICT);
        let id = open(&s, 2, false, 0);
        assert!(matches!(s.new_context(12, id, 1, &[], &[key("t", 0), key("t", 1)], 1), Context::Sessionless));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn zero_slots_disable_sessions() {
        let s = FetchSessions::new(0, EVICT);
        assert!(matches!(s.new_context(12, 0, INITIAL_EPOCH, &[(key("t", 0), params(0))], &[], 0), Context::Full));
        assert_eq!(open(&s, 3, false, 0), INVALID_SESSION_ID);
        assert_eq!(open(&s, 3, true, 0), INVALID_SESSION_ID, "not even for a follower");
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn eviction_follows_kafkas_rules() {
        let s = FetchSessions::new(2, EVICT);
        let small = open(&s, 2, false, 0);
        let big = open(&s, 5, false, 0);
        // Full, nothing stale, nothing old enough to be evictable by a consumer.
        let (none, evicted) = s.create(false, false, vec![(key("t", 0), params(0), quiet(0)); 9], 10);
        assert_eq!((none, evicted), (INVALID_SESSION_ID, false));
        // A follower may evict a consumer's session at once: the smallest goes.
        let follower = open(&s, 1, true, 20);
        assert_ne!(follower, INVALID_SESSION_ID);
        assert!(s.new_context(12, small, 1, &[], &[], 21).is_error());
        assert!(!s.new_context(12, big, 1, &[], &[], 21).is_error());
        // Another follower cannot evict a fresh follower's session, but the consumer's.
        let follower2 = open(&s, 1, true, 30);
        assert_ne!(follower2, INVALID_SESSION_ID);
        assert!(s.new_context(12, big, 2, &[], &[], 31).is_error());
        // Both slots hold fresh followers: a third follower finds nothing to evict.
        assert_eq!(open(&s, 9, true, 40), INVALID_SESSION_ID);
        // Past the eviction time both are old: a larger consumer session may evict the
        // smallest, a smaller one may not.
        let later = 40 + EVICT + 1;
        incremental(s.new_context(12, follower, 1, &[], &[], later));
        incremental(s.new_context(12, follower2, 1, &[], &[], later));
        assert_eq!(open(&s, 1, false, later), INVALID_SESSION_ID, "not worth more than a follower's");
        // Unused for longer than the eviction time: the least recently used goes first.
        let much_later = later + EVICT + 1;
        let consumer = open(&s, 1, false, much_later);
        assert_ne!(consumer, INVALID_SESSION_ID);
        assert_eq!(s.len(), 2);
        assert_eq!(s.partitions(), 2);
    }

    #[test]
    fn a_consumer_with_more_partitions_evicts_an_old_smaller_session() {
        let s = FetchSessions::new(1, EVICT);
        let old = open(&s, 2, false, 0);
        // Used recently (not stale), but created long ago: evictable by all.
        incremental(s.new_context(12, old, 1, &[], &[], EVICT + 10));
        assert_eq!(open(&s, 2, false, EVICT + 20), INVALID_SESSION_ID, "the same size is not worth more");
        let (bigger, evicted) = s.create(false, false, (0..3).map(|p| (key("u", p), params(0), quiet(0))).collect(), EVICT + 30);
        assert!(evicted);
        assert_ne!(bigger, INVALID_SESSION_ID);
        assert!(s.new_context(12, old, 2, &[], &[], EVICT + 40).is_error());
    }

    impl Context {
        fn is_error(&self) -> bool {
            matches!(self, Context::Error(_))
        }
    }
}
