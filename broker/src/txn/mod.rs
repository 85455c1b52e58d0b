//! The transaction coordinator: transactional ids, their producer ids and epochs
//! and their open transactions, kept in the internal compacted topic
//! `__transaction_state`. The broker leading a transactional id's partition
//! coordinates it, at that partition's leader epoch (the coordinator epoch its
//! markers carry); the state is read again from the log when leadership moves.
//!
//! Every change is a transition ([`state`]) written to the log first and applied
//! once durable; meanwhile the id is pending and other requests for it are told
//! CONCURRENT_TRANSACTIONS. Once PrepareCommit or PrepareAbort is durable the
//! producer is answered and the markers are written to every partition of the
//! transaction ([`markers`]), then CompleteCommit or CompleteAbort.

pub(crate) mod markers;
pub(crate) mod records;
pub(crate) mod state;
pub(crate) mod verify;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use karst_protocol::error_codes as ec;
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::broker::{now_ms, Broker};
use crate::errors::BrokerError;
use crate::group::Pending;
use crate::partition::Partition;
pub(crate) use state::{Init, TxnMeta, TxnState};

/// The internal topic holding transactional ids' states.
pub const TXN_TOPIC: &str = "__transaction_state";

/// `__transaction_state`'s configs, as Kafka creates it: compacted, segments of
/// `transaction.state.log.segment.bytes`, and `min.insync.replicas` 2 where there
/// are replicas enough (Kafka's `transaction.state.log.min.isr`).
fn topic_configs(segment_bytes: u64, replicas: usize) -> BTreeMap<String, String> {
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("segment.bytes".to_string(), segment_bytes.to_string());
    configs.insert("min.insync.replicas".to_string(), replicas.clamp(1, 2).to_string());
    configs
}

/// The transaction coordinator of this broker.
#[derive(Debug)]
pub struct TxnCoordinator {
    pub(crate) entries: Mutex<HashMap<String, TxnMeta>>,
    /// The coordinator epoch of each `__transaction_state` partition this broker leads.
    epochs: Mutex<HashMap<i32, i32>>,
    /// Decided transactions a new coordinator found, whose markers go out next tick.
    resume: Mutex<Vec<(String, i32)>>,
    /// Woken after every transition written (or given up).
    pub(crate) changed: tokio::sync::Notify,
    pub(crate) partitions: i32,
    create_lock: tokio::sync::Mutex<()>,
}

impl TxnCoordinator {
    pub(crate) fn new(partitions: i32) -> TxnCoordinator {
        TxnCoordinator {
            entries: Mutex::new(HashMap::new()),
            epochs: Mutex::new(HashMap::new()),
            resume: Mutex::new(Vec::new()),
            changed: tokio::sync::Notify::new(),
            partitions,
            create_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The `__transaction_state` partition of a transactional id (Kafka's hash).
    pub(crate) fn partition_for(&self, transactional_id: &str) -> i32 {
        crate::group::records::partition_for(transactional_id, self.partitions)
    }

    /// Creates `__transaction_state` on first use, as Kafka does.
    pub(crate) async fn ensure_topic(&self, b: &Arc<Broker>) -> Result<(), BrokerError> {
        let brokers = b.metadata.image().cluster.unfenced_brokers().count();
        let configs = topic_configs(b.config.transaction_state_log_segment_bytes, brokers.min(3));
        crate::internal_topic::ensure(b, &self.create_lock, TXN_TOPIC, self.partitions, configs).await
    }

    /// The coordinator epoch when this broker coordinates `transactional_id`;
    /// else NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or, while its partition is
    /// still being read, COORDINATOR_LOAD_IN_PROGRESS.
    pub(crate) fn coordinator_epoch(&self, b: &Broker, transactional_id: &str) -> Result<i32, i16> {
        let partition = self.partition_for(transactional_id);
        crate::internal_topic::coordinates(b, TXN_TOPIC, partition)?;
        if let Some(epoch) = self.epochs.lock().get(&partition).copied() {
            return Ok(epoch);
        }
        // A partition this broker led from its creation or start-up: no leadership
        // change announced it, so it is read now.
        let p = b.partitions.get(TXN_TOPIC, partition).ok_or(ec::COORDINATOR_NOT_AVAILABLE)?;
        if !p.leads_at(p.leader_epoch()) {
            return Err(ec::COORDINATOR_LOAD_IN_PROGRESS);
        }
        self.take_over(&p);
        self.epochs.lock().get(&partition).copied().ok_or(ec::COORDINATOR_LOAD_IN_PROGRESS)
    }

    /// Whether this broker still coordinates `transactional_id` at `epoch`.
    pub(crate) fn still_at(&self, transactional_id: &str, epoch: i32) -> bool {
        self.epochs.lock().get(&self.partition_for(transactional_id)) == Some(&epoch)
    }

    /// The coordinator of `transactional_id` (node id, host, port on `listener`).
    pub(crate) fn coordinator_endpoint(&self, b: &Broker, transactional_id: &str, listener: Option<&str>) -> Option<(i32, String, i32)> {
        crate::internal_topic::leader_endpoint(b, TXN_TOPIC, self.partition_for(transactional_id), listener)
    }

    /// This broker now leads `p`: its transactional ids are read from the log, and
    /// transactions found deciding get their markers written.
    pub(crate) fn take_over(&self, p: &Partition) {
        let epoch = p.leader_epoch();
        // The log is read before the lock is taken: other ids' requests go on meanwhile.
        let mut loaded = HashMap::new();
        let records = match replay(p, &mut loaded, self) {
            Ok(records) => records,
            Err(e) => {
                warn!(partition = p.index, "loading transactions failed: {e}");
                return;
            }
        };
        let resume: Vec<String> = loaded.iter().filter(|(_, m)| m.state.preparing().is_some()).map(|(id, _)| id.clone()).collect();
        {
            let mut entries = self.entries.lock();
            entries.retain(|id, _| self.partition_for(id) != p.index);
            entries.extend(loaded);
            self.epochs.lock().insert(p.index, epoch);
        }
        info!(partition = p.index, records, epoch, "became transaction coordinator of {TXN_TOPIC}-{}", p.index);
        self.resume.lock().extend(resume.into_iter().map(|id| (id, epoch)));
    }

    /// Writes the markers of the decided transactions a take-over found.
    pub(crate) fn resume(&self, b: &Arc<Broker>) {
        // Partitions led since creation or start-up had no leadership change to read them.
        if let Some(parts) = b.partitions.topic(TXN_TOPIC) {
            for p in parts.iter() {
                let known = self.epochs.lock().contains_key(&p.index);
                if !known && p.leads_at(p.leader_epoch()) {
                    self.take_over(p);
                }
            }
        }
        let found = std::mem::take(&mut *self.resume.lock());
        for (id, epoch) in found {
            markers::complete_later(b.clone(), id, epoch);
        }
    }

    /// This broker no longer leads `p`.
    pub(crate) fn hand_over(&self, p: &Partition) {
        self.epochs.lock().remove(&p.index);
        self.entries.lock().retain(|id, _| self.partition_for(id) != p.index);
    }

    /// Appends `m`'s record to its partition.
    fn persist(&self, b: &Broker, m: &TxnMeta) -> Result<Pending, i16> {
        let partition = b.partitions.get(TXN_TOPIC, self.partition_for(&m.id)).ok_or(ec::NOT_COORDINATOR)?;
        // Dead: the id expired, and its tombstone lets the cleaner remove it.
        let value = (m.state != TxnState::Dead).then(|| records::encode_value(m));
        let record = (records::encode_key(&m.id), value);
        let batch = crate::group::encode_batch(&[record], now_ms()).map_err(|_| ec::UNKNOWN_SERVER_ERROR)?;
        let info = partition.append(&batch, now_ms()).map_err(|e| {
            warn!(transactional_id = %m.id, "writing {TXN_TOPIC} failed: {e}");
            ec::NOT_COORDINATOR
        })?;
        b.after_append(&partition);
        Ok(Pending::new(partition, info.last_offset))
    }

    /// Writes the transition to `next` (its id marked pending by the caller) and
    /// applies it once durable, if this broker still coordinates the id at
    /// `epoch`. On failure the id is no longer pending and keeps its state. A
    /// decision (PrepareCommit, PrepareAbort) then has its markers written.
    ///
    /// The write runs on a task of its own: the request that asked for it may be
    /// dropped (its client's connection reset) while the write awaits replication,
    /// and a transition cut off there would leave the id pending for good, its
    /// producer told CONCURRENT_TRANSACTIONS forever.
    pub(crate) async fn write(&self, b: &Arc<Broker>, epoch: i32, next: TxnMeta) -> Result<(), i16> {
        let b = b.clone();
        let task = tokio::spawn(async move {
            let (id, deciding) = (next.id.clone(), next.state.preparing().is_some());
            let r = b.txns.write_inner(&b, epoch, next).await;
            b.txns.changed.notify_waiters();
            if r.is_ok() && deciding {
                markers::complete_later(b.clone(), id, epoch);
            }
            r
        });
        task.await.unwrap_or(Err(ec::UNKNOWN_SERVER_ERROR))
    }

    async fn write_inner(&self, b: &Broker, epoch: i32, next: TxnMeta) -> Result<(), i16> {
        let written = match self.persist(b, &next) {
            Ok(p) => match p.durable().await {
                true => Ok(()),
                false => Err(ec::COORDINATOR_NOT_AVAILABLE),
            },
            Err(code) => Err(code),
        };
        let mut entries = self.entries.lock();
        if !self.still_at(&next.id, epoch) {
            return Err(ec::NOT_COORDINATOR);
        }
        match written {
            Ok(()) if next.state == TxnState::Dead => {
                entries.remove(&next.id);
                Ok(())
            }
            Ok(()) => {
                entries.insert(next.id.clone(), TxnMeta { pending: false, ..next });
                Ok(())
            }
            Err(code) => {
                if let Some(m) = entries.get_mut(&next.id) {
                    m.pending = false;
                }
                Err(code)
            }
        }
    }

    /// Marks `id` pending for a transition computed from its state under the lock;
    /// `f` gives the next state (None: nothing to write) or an error. A new id is
    /// put in first (Empty, no epoch) by InitProducerId.
    ///
    /// NOT_COORDINATOR unless this broker still coordinates `id` at `epoch`,
    /// checked under the lock a take-over swaps the state under: a writer of an
    /// earlier epoch must not mark the new coordinator's state pending (its write
    /// then ends in NOT_COORDINATOR, leaving the mark for good).
    pub(crate) fn begin<T>(
        &self,
        id: &str,
        epoch: i32,
        f: impl FnOnce(Option<&TxnMeta>) -> Result<Option<(TxnMeta, T)>, i16>,
    ) -> Result<Option<(TxnMeta, T)>, i16> {
        let mut entries = self.entries.lock();
        if !self.still_at(id, epoch) {
            return Err(ec::NOT_COORDINATOR);
        }
        let current = entries.get(id);
        if current.is_some_and(|m| m.pending) {
            return Err(ec::CONCURRENT_TRANSACTIONS);
        }
        let out = f(current)?;
        if out.is_some() {
            if let Some(e) = entries.get_mut(id) {
                e.pending = true;
            }
        }
        Ok(out)
    }

    /// Forgets transactional ids unused for `transactional.id.expiration.ms` with no
    /// transaction open (Kafka's `removeExpiredTransactionalIds`): a tombstone is
    /// written, and the id is gone once it is durable. A producer that comes back
    /// with the id starts over at epoch 0 under a new producer id.
    pub(crate) fn expire_ids(&self, b: &Arc<Broker>, expiration_ms: i64) {
        let now = now_ms();
        let expired: Vec<(String, TxnMeta, i32)> = {
            let mut entries = self.entries.lock();
            let epochs = self.epochs.lock().clone();
            entries
                .iter_mut()
                .filter(|(_, m)| {
                    !m.pending
                        && matches!(m.state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
                        && now.saturating_sub(m.update_ms) > expiration_ms
                })
                .filter_map(|(id, m)| {
                    let epoch = epochs.get(&self.partition_for(id)).copied()?;
                    m.pending = true;
                    let mut dead = m.clone();
                    dead.state = TxnState::Dead;
                    Some((id.clone(), dead, epoch))
                })
                .collect()
        };
        for (id, dead, epoch) in expired {
            info!(transactional_id = %id, producer_id = dead.producer_id, "expiring a transactional id unused for transactional.id.expiration.ms");
            let b = b.clone();
            tokio::spawn(async move {
                if let Err(code) = b.txns.write(&b, epoch, dead).await {
                    warn!(transactional_id = %id, code, "expiring a transactional id failed");
                }
            });
        }
    }

    /// Aborts open transactions past their timeout under a bumped epoch, fencing
    /// their producers (Kafka's `abortTimedOutTransactions`).
    pub(crate) fn abort_timed_out(&self, b: &Arc<Broker>) {
        let now = now_ms();
        let expired: Vec<(String, TxnMeta, i32)> = {
            let mut entries = self.entries.lock();
            let epochs = self.epochs.lock().clone();
            entries
                .iter_mut()
                .filter(|(_, m)| m.timed_out(now))
                .filter_map(|(id, m)| {
                    let epoch = epochs.get(&self.partition_for(id)).copied()?;
                    m.pending = true;
                    Some((id.clone(), m.fence_and_abort(now), epoch))
                })
                .collect()
        };
        for (id, next, epoch) in expired {
            info!(transactional_id = %id, producer_id = next.producer_id, "aborting a transaction past its timeout");
            let b = b.clone();
            tokio::spawn(async move {
                match b.txns.write(&b, epoch, next).await {
                    Ok(()) => crate::metrics::txn_timed_out(),
                    Err(code) => warn!(transactional_id = %id, code, "aborting a timed-out transaction failed"),
                }
            });
        }
    }

    /// KIP-890's verification, where this broker coordinates `id`: Ok while
    /// producer `pid` at `epoch` has a transaction open with `topic`-`partition` in
    /// it; else the error a write in it gets, with why. Unchecked (Ok) where
    /// another broker coordinates the id.
    pub(crate) fn verify(&self, b: &Broker, id: &str, pid: i64, epoch: i16, topic: &str, partition: i32) -> Result<(), (i16, String)> {
        if self.coordinator_epoch(b, id).is_err() {
            return Ok(());
        }
        let entries = self.entries.lock();
        let Some(m) = entries.get(id) else {
            return Err((ec::INVALID_PRODUCER_ID_MAPPING, format!("transactional id {id} is not known")));
        };
        if m.producer_id != pid {
            return Err((ec::INVALID_PRODUCER_ID_MAPPING, format!("producer id {pid} is not {id}'s")));
        }
        if epoch < m.producer_epoch {
            return Err((ec::INVALID_PRODUCER_EPOCH, format!("producer epoch {epoch} is older than {id}'s {}", m.producer_epoch)));
        }
        let open = m.state == TxnState::Ongoing && epoch == m.producer_epoch && m.partitions.contains(&(topic.to_string(), partition));
        if !open {
            return Err((ec::INVALID_TXN_STATE, format!("{topic}-{partition} is not in an open transaction of {id}")));
        }
        Ok(())
    }

    /// KIP-890 verification for another broker (AddPartitionsToTxn v4, verify_only):
    /// for each of `partitions`, NONE when it is in producer `pid`'s open transaction
    /// at `epoch`, else INVALID_TXN_STATE; or one error for all of them (unknown id
    /// or producer id, fenced epoch, a transaction being decided).
    pub(crate) fn verify_partitions(&self, id: &str, pid: i64, epoch: i16, partitions: &[(String, i32)]) -> Result<Vec<i16>, i16> {
        let entries = self.entries.lock();
        let m = entries.get(id).ok_or(ec::INVALID_PRODUCER_ID_MAPPING)?;
        m.check_producer(pid, epoch)?;
        // As Kafka's: a transition being written (the producer adding more
        // partitions meanwhile) does not hold the answer up: the state it reads is
        // the last durable one, and the write verified is checked again at its
        // append (the verification guard).
        if m.state.preparing().is_some() {
            return Err(ec::CONCURRENT_TRANSACTIONS);
        }
        let open = m.state == TxnState::Ongoing;
        Ok(partitions.iter().map(|tp| if open && m.partitions.contains(tp) { ec::NONE } else { ec::INVALID_TXN_STATE }).collect())
    }

    /// Puts a new transactional id in, Empty with no epoch yet, unless it is known.
    pub(crate) fn insert_new(&self, m: TxnMeta) {
        self.entries.lock().entry(m.id.clone()).or_insert(m);
    }

    /// Whether `id` is known here.
    pub(crate) fn knows(&self, id: &str) -> bool {
        self.entries.lock().contains_key(id)
    }

    /// The transactional ids this broker coordinates, for ListTransactions.
    pub(crate) fn snapshot(&self) -> Vec<TxnMeta> {
        let mut out: Vec<TxnMeta> = self.entries.lock().values().cloned().collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// Replays one `__transaction_state` partition into `entries`; returns the records read.
fn replay(p: &Partition, entries: &mut HashMap<String, TxnMeta>, c: &TxnCoordinator) -> Result<usize, BrokerError> {
    let mut records = 0usize;
    crate::internal_topic::for_each_record(p, TXN_TOPIC, |r| {
        if r.control {
            return;
        }
        records += 1;
        let Some(id) = r.key.and_then(records::decode_key) else { return };
        if c.partition_for(&id) == p.index {
            apply(entries, id, r.value);
        }
    })?;
    Ok(records)
}

fn apply(entries: &mut HashMap<String, TxnMeta>, id: String, value: Option<Bytes>) {
    match value.and_then(records::decode_value) {
        Some(v) => {
            let old = entries.get(&id);
            let previous =
                old.map_or(state::NO_PRODUCER_ID, |o| if o.producer_id != v.producer_id { o.producer_id } else { o.last_producer_id });
            let m = TxnMeta {
                id: id.clone(),
                producer_id: v.producer_id,
                last_producer_id: if v.previous_producer_id >= 0 { v.previous_producer_id } else { previous },
                producer_epoch: v.producer_epoch,
                last_producer_epoch: state::NO_EPOCH,
                timeout_ms: v.timeout_ms,
                state: v.state,
                partitions: v.partitions,
                start_ms: v.start_ms,
                update_ms: v.update_ms,
                pending: false,
                tv2: v.client_transaction_version >= 2,
                next_producer_id: v.next_producer_id,
            };
            entries.insert(id, m);
        }
        None => {
            entries.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transition begun by a coordinator whose epoch has passed (its task still
    /// running after a take-over) must not mark the new coordinator's state
    /// pending: its write ends in NOT_COORDINATOR and the mark would stay, every
    /// later request told CONCURRENT_TRANSACTIONS (found by the exactly-once checker).
    #[test]
    fn a_writer_of_an_earlier_coordinator_epoch_cannot_mark_the_new_state_pending() {
        let c = TxnCoordinator::new(50);
        let id = "txn";
        let p = c.partition_for(id);
        c.epochs.lock().insert(p, 5);
        c.insert_new(TxnMeta::new(id, 7, 0, 60_000));
        c.epochs.lock().insert(p, 6); // a take-over at epoch 6
        let same = |m: Option<&TxnMeta>| Ok(m.map(|m| (m.clone(), ())));
        assert_eq!(c.begin(id, 5, same).err(), Some(ec::NOT_COORDINATOR));
        assert!(!c.entries.lock()[id].pending);
        assert!(c.begin(id, 6, same).is_ok_and(|s| s.is_some()));
        assert!(c.entries.lock()[id].pending);
        assert_eq!(c.begin(id, 6, same).err(), Some(ec::CONCURRENT_TRANSACTIONS));
    }
}
