//! One partition replica: its log behind a lock, its high watermark, and the
//! notification that wakes long-polling fetches and waiting producers.

use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use karst_storage::{AbortedTxn, AppendInfo, CleanStats, Cleanable, CleanerConfig, FlushTarget, Isolation, Log, ReadSlice, StorageError};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::refused_batches::RefusedBatches;
use crate::replica::{ReplicaState, Role};
use crate::topic_config::TopicConfig;

/// A partition hosted by this broker.
#[derive(Debug)]
pub struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    /// This broker's id.
    node_id: i32,
    pub dir: PathBuf,
    log: RwLock<Option<Log>>,
    config: Mutex<TopicConfig>,
    /// Offsets below the high watermark are visible to consumers and acknowledged
    /// to producers. With fsync-before-ack it trails the log end until fsynced.
    hw: watch::Sender<i64>,
    log_end: AtomicI64,
    log_start: AtomicI64,
    /// Set while the partition sits in the flusher's queue.
    pub(crate) flush_queued: AtomicBool,
    pub(crate) flushed: AtomicI64,
    /// File system (st_dev) of the partition directory: the flusher syncs partitions
    /// that share one together.
    pub(crate) device: u64,
    /// Offsets below this are durable here (fsynced, or written when not fsyncing);
    /// acks=1 producers wait on it.
    local_end: watch::Sender<i64>,
    /// The log end, watched by followers' long polls.
    leo: watch::Sender<i64>,
    pub(crate) replica: Mutex<ReplicaState>,
    /// Why this replica went offline (a failed write or fsync), once it has: from
    /// then on it appends, serves and acknowledges nothing, and its high watermark
    /// stays where it was (Kafka's offline replica in a failed log directory).
    offline: watch::Sender<Option<Arc<str>>>,
    /// Idempotent batches refused here before they were stored.
    pub(crate) refused: Mutex<RefusedBatches>,
    /// Bumped by whatever a clean in progress must not outlive: truncation, a
    /// restart at another offset, close and delete. A clean that sees it move
    /// aborts, and is never swapped in (Kafka's `abortAndPauseCleaning`).
    clean_epoch: AtomicU64,
    /// Held by the cleaner while it cleans this log; close and delete wait for it
    /// (after moving `clean_epoch`, so the clean stops at its next batch).
    cleaning: Mutex<()>,
    /// KIP-890's verification guards: producer id to the token of its latest
    /// verification here. A write verified with the transaction coordinator lands
    /// only while its token is still there; a marker for the producer takes it
    /// away, so a verified write held up past the transaction's end (its client
    /// gone, its broker paused) cannot open a transaction nobody will end.
    verifications: Mutex<std::collections::HashMap<i64, Verification>>,
}

/// A producer's verification in progress here: its token, and how many of the
/// producer's markers may still land without voiding it.
#[derive(Debug, Clone, Copy)]
struct Verification {
    token: u64,
    /// 1 where the producer had a transaction open here at an earlier epoch when
    /// it started: that transaction's marker ends the one before, not the one
    /// verified (transactions v2, whose every transaction has an epoch of its own:
    /// the coordinator writes the last one's markers while the add of the next
    /// one waits for them). At the same epoch the open transaction is the one
    /// verified, and its marker ends it.
    markers_allowed: u8,
}

/// Tokens of verifications, unique in this process.
static VERIFICATION_TOKENS: AtomicU64 = AtomicU64::new(1);

/// The I/O callback of [`Partition::clean`]: called with the bytes of every batch
/// read and chunk written, and a probe telling whether the clean was aborted
/// meanwhile; it may sleep (the throttle) and answers `Break` to stop the clean.
pub(crate) type CleanIo<'a> = &'a mut dyn FnMut(u64, &dyn Fn() -> bool) -> ControlFlow<()>;

/// Lowers a watched offset to at most `end`, waking its watchers only if it moved.
fn lower_to(w: &watch::Sender<i64>, end: i64) {
    w.send_if_modified(|v| {
        let lower = (*v).min(end);
        std::mem::replace(v, lower) != lower
    });
}

/// Why a partition operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("partition is closed")]
    Closed,
    /// A write verified with the transaction coordinator came after a marker of
    /// its producer (this producer id) ended the transaction it was verified in.
    #[error("producer {0}'s transaction ended after its write here was verified")]
    VerificationExpired(i64),
    /// A write or fsync failed here earlier (KAFKA_STORAGE_ERROR).
    #[error("partition is offline on this broker after a storage failure: {0}")]
    Offline(Arc<str>),
}

impl Partition {
    pub(crate) fn open(
        topic: Arc<str>,
        index: i32,
        node_id: i32,
        dir: PathBuf,
        config: TopicConfig,
    ) -> Result<Arc<Partition>, StorageError> {
        let log = Log::open(&dir, config.log.clone())?;
        let end = log.log_end_offset();
        let start = log.log_start_offset();
        let (hw, _) = watch::channel(end);
        let (leo, _) = watch::channel(end);
        let device = std::fs::metadata(&dir).map(|m| m.dev())?;
        Ok(Arc::new(Partition {
            topic,
            index,
            node_id,
            dir,
            log: RwLock::new(Some(log)),
            config: Mutex::new(config),
            hw,
            log_end: AtomicI64::new(end),
            log_start: AtomicI64::new(start),
            flush_queued: AtomicBool::new(false),
            flushed: AtomicI64::new(end),
            device,
            local_end: watch::channel(end).0,
            leo,
            replica: Mutex::new(ReplicaState::default()),
            offline: watch::channel(None).0,
            refused: Mutex::default(),
            clean_epoch: AtomicU64::new(0),
            cleaning: Mutex::new(()),
            verifications: Mutex::default(),
        }))
    }

    /// Why this replica is offline, if it is.
    pub fn offline_reason(&self) -> Option<Arc<str>> {
        self.offline.borrow().clone()
    }

    /// A receiver that sees the replica go offline (waiting producers give up on it).
    pub(crate) fn subscribe_offline(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.offline.subscribe()
    }

    fn check_online(&self) -> Result<(), PartitionError> {
        match self.offline_reason() {
            Some(why) => Err(PartitionError::Offline(why)),
            None => Ok(()),
        }
    }

    /// Takes the replica offline for good (until the broker restarts): a write or
    /// fsync of its log failed, so the kernel may have dropped pages a retried fsync
    /// would report durable.
    pub(crate) fn go_offline(&self, why: &str) {
        let went = self.offline.send_if_modified(|o| match o {
            Some(_) => false,
            None => {
                *o = Some(Arc::from(why));
                true
            }
        });
        if went {
            tracing::error!(topic = %self.topic, partition = self.index, reason = why, "replica offline after a storage failure");
        }
    }

    /// After a log operation failed: offline if the log itself failed.
    fn note_failure(&self, log: &Log) {
        if let Some(why) = log.failure() {
            self.go_offline(why);
        }
    }

    pub fn config(&self) -> TopicConfig {
        self.config.lock().clone()
    }

    pub(crate) fn set_config(&self, config: TopicConfig) {
        if let Some(log) = self.log.write().as_mut() {
            log.set_config(config.log.clone());
        }
        *self.config.lock() = config;
    }

    pub fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log_end.load(Ordering::Acquire)
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// A receiver that sees every high-watermark advance (for long polls and acks).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Wakes everyone waiting on the high watermark without moving it: a leadership
    /// that ended here ends their wait.
    pub(crate) fn wake_waiters(&self) {
        self.hw.send_modify(|_| {});
    }

    /// Waits until the high watermark passes `last_offset` or this replica no longer
    /// leads at `epoch`, whichever comes first; Err when the partition is gone.
    ///
    /// The leadership is read between waits, not in a `wait_for` predicate: that
    /// runs under the watch's lock, and taking the replica lock there deadlocks
    /// with a thread that reads the high watermark under the replica lock while a
    /// writer of the high watermark queues between them.
    pub(crate) async fn hw_past_or_deposed(&self, last_offset: i64, epoch: i32) -> Result<(), watch::error::RecvError> {
        let mut rx = self.hw.subscribe();
        loop {
            let hw = *rx.borrow_and_update();
            if hw > last_offset || !self.leads_at(epoch) {
                return Ok(());
            }
            rx.changed().await?;
        }
    }

    /// Whether this replica still leads at `epoch`.
    pub(crate) fn leads_at(&self, epoch: i32) -> bool {
        let r = self.replica.lock();
        r.role == Role::Leader && r.leader_epoch == epoch
    }

    /// Whether a producer whose last batch here ends at `last_offset` has not written
    /// since this broker took up its leadership, less than `window_ms` ago: batches it
    /// sent meanwhile may still be in flight to the previous leader.
    pub(crate) fn predates_new_leadership(&self, last_offset: i64, now_ms: i64, window_ms: i64) -> bool {
        let (epoch, since) = {
            let r = self.replica.lock();
            if r.role != Role::Leader {
                return false;
            }
            (r.leader_epoch, r.since_ms)
        };
        if now_ms.saturating_sub(since) > window_ms {
            return false;
        }
        let guard = self.log.read();
        let Some(log) = guard.as_ref() else { return false };
        // This leadership's first batch starts its epoch; before one, the log end.
        let start = log.leader_epochs().entries().iter().find(|(e, _)| *e == epoch).map_or(log.log_end_offset(), |(_, s)| *s);
        last_offset < start
    }

    /// Where this replica's current leader epoch began in its log: the first offset
    /// written at that epoch, or the log end while none has been.
    pub(crate) fn leader_epoch_start(&self) -> i64 {
        let epoch = self.leader_epoch();
        let guard = self.log.read();
        let Some(log) = guard.as_ref() else { return i64::MAX };
        log.leader_epochs().entries().iter().find(|(e, _)| *e == epoch).map_or(log.log_end_offset(), |(_, s)| *s)
    }

    /// The leader epoch this replica is at.
    pub(crate) fn leader_epoch(&self) -> i32 {
        self.replica.lock().leader_epoch
    }

    /// Raises the high watermark, never lowering it; an offline replica's stays put.
    pub(crate) fn advance_hw(&self, to: i64) {
        if self.offline.borrow().is_some() {
            return;
        }
        self.hw.send_if_modified(|hw| {
            if to > *hw {
                *hw = to;
                true
            } else {
                false
            }
        });
    }

    /// Appends validated batches, stamped with the current leader epoch.
    ///
    /// Refused (Closed) unless this replica has taken up its leadership: between a
    /// metadata image naming this broker leader and `apply_roles` acting on it, the
    /// replica is still a follower of the old leader at the old epoch. An append then
    /// would be stamped with the old epoch, so a former leader holding other batches
    /// at those offsets under that epoch would keep them when it truncates (KIP-101
    /// compares epochs), and the replicas would diverge.
    pub fn append(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, PartitionError> {
        self.append_with(|log, epoch| Ok(log.append(batches, epoch, now_ms)?))
    }

    /// Starts a verification of `producer_id`'s transaction for a write here: the
    /// token [`Partition::append_verified`] needs, valid until a marker of the
    /// producer is appended or another verification starts.
    pub(crate) fn start_verification(&self, producer_id: i64, epoch: i16) -> u64 {
        let token = VERIFICATION_TOKENS.fetch_add(1, Ordering::Relaxed);
        // Taken under the log's lock: a marker lands before or after, not between.
        let guard = self.log.read();
        let open = guard.as_ref().and_then(|l| l.open_transaction_epoch(producer_id)).is_some_and(|e| e < epoch);
        self.verifications.lock().insert(producer_id, Verification { token, markers_allowed: u8::from(open) });
        token
    }

    /// Appends batches a coordinator of this broker writes in a transaction of
    /// `producer_id` (transactional offset commits: no sequences, only producer
    /// epochs, are checked), verified under `token`: refused (VerificationExpired)
    /// when a marker of the producer, or another verification of its, came in
    /// between (Kafka's VerificationGuard; stricter than Kafka, which lets any write
    /// in once the producer has a transaction open here, so that a write verified
    /// in one transaction cannot land in the producer's next).
    pub fn append_verified(&self, batches: &[u8], producer_id: i64, token: u64, now_ms: i64) -> Result<AppendInfo, PartitionError> {
        self.append_with(|log, epoch| {
            if !self.verified(producer_id, token) {
                return Err(PartitionError::VerificationExpired(producer_id));
            }
            Ok(log.append_as_coordinator(batches, epoch, now_ms)?)
        })
    }

    /// Appends a transactions v2 producer's batches (Produce v12+): taken while the
    /// producer `pid` has a transaction open here at `epoch`, or under `token`, the
    /// verification started before its coordinator added this partition to the
    /// transaction; else refused (VerificationExpired): a marker came in between,
    /// and the batch would open a transaction here its coordinator never ends.
    pub fn append_in_txn(
        &self,
        batches: &[u8],
        pid: i64,
        epoch: i16,
        token: Option<u64>,
        now_ms: i64,
    ) -> Result<AppendInfo, PartitionError> {
        let append = || {
            self.append_with(|log, leader_epoch| {
                let verified = token.is_some_and(|t| self.verified(pid, t));
                if !verified && !log.in_transaction(pid, epoch) {
                    return Err(PartitionError::VerificationExpired(pid));
                }
                Ok(log.append(batches, leader_epoch, now_ms)?)
            })
        };
        self.off_worker_if_rolling(batches.len(), now_ms, append)
    }

    /// Whether the verification of `producer_id` under `token` still holds.
    fn verified(&self, producer_id: i64, token: u64) -> bool {
        self.verifications.lock().get(&producer_id).is_some_and(|v| v.token == token)
    }

    /// Whether producer `pid` has a transaction open here at `epoch`.
    pub(crate) fn in_transaction(&self, pid: i64, epoch: i16) -> bool {
        self.log.read().as_ref().is_some_and(|l| l.in_transaction(pid, epoch))
    }

    /// Appends a transaction marker (WriteTxnMarkers) as the leader; verifications
    /// of the producer's writes made before it no longer hold.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        now_ms: i64,
    ) -> Result<AppendInfo, PartitionError> {
        self.append_with(|log, epoch| {
            let mut verifications = self.verifications.lock();
            match verifications.get_mut(&producer_id) {
                Some(v) if v.markers_allowed > 0 => v.markers_allowed -= 1,
                Some(_) => {
                    verifications.remove(&producer_id);
                }
                None => {}
            }
            drop(verifications);
            Ok(log.append_marker(producer_id, producer_epoch, coordinator_epoch, commit, epoch, now_ms)?)
        })
    }

    fn append_with(&self, f: impl FnOnce(&mut Log, i32) -> Result<AppendInfo, PartitionError>) -> Result<AppendInfo, PartitionError> {
        let mut guard = self.log.write();
        let epoch = {
            let r = self.replica.lock();
            if r.role != Role::Leader {
                return Err(PartitionError::Closed);
            }
            r.leader_epoch
        };
        let log = guard.as_mut().ok_or(PartitionError::Closed)?;
        self.check_online()?;
        log.note_high_watermark(self.high_watermark());
        let info = f(log, epoch).inspect_err(|_| self.note_failure(log))?;
        self.after_write(log);
        Ok(info)
    }

    /// [`Partition::append`] from a runtime worker: an append that rolls the
    /// segment (fsyncs, file creation) runs in `block_in_place`, so the worker's
    /// other tasks move to another thread meanwhile, and order is kept.
    pub fn append_on_runtime(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, PartitionError> {
        self.off_worker_if_rolling(batches.len(), now_ms, || self.append(batches, now_ms))
    }

    /// Runs `append` of `len` bytes in `block_in_place` when it rolls the segment
    /// on a multi-threaded runtime, else in place.
    fn off_worker_if_rolling<T>(&self, len: usize, now_ms: i64, append: impl FnOnce() -> T) -> T {
        let rolls = self.log.read().as_ref().is_some_and(|l| l.would_roll(len as u64, now_ms));
        match tokio::runtime::Handle::try_current() {
            Ok(h) if rolls && h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(append),
            _ => append(),
        }
    }

    /// Appends batches copied from the leader (a follower's fetch), offsets kept.
    /// Refused (Closed) unless this broker still follows `leader` at `epoch`: a fetch
    /// answered by a former leader must not land after a newer fetcher truncated.
    pub fn append_replicated(&self, batches: &[u8], leader: i32, epoch: i32, now_ms: i64) -> Result<AppendInfo, PartitionError> {
        let mut guard = self.log.write();
        self.check_following(leader, epoch)?;
        let log = guard.as_mut().ok_or(PartitionError::Closed)?;
        self.check_online()?;
        log.note_high_watermark(self.high_watermark());
        let info = log.append_replicated(batches, now_ms).inspect_err(|_| self.note_failure(log))?;
        self.after_write(log);
        Ok(info)
    }

    fn after_write(&self, log: &Log) {
        self.log_end.store(log.log_end_offset(), Ordering::Release);
        self.log_start.store(log.log_start_offset(), Ordering::Release);
        self.leo.send_replace(log.log_end_offset());
    }

    /// Whether this replica still follows `leader` at `epoch`: what a follower's
    /// fetcher learnt from a leader applies only then. Checked under the log's write
    /// lock, so a leadership taken up since (and the writes made under it) never meets
    /// an answer from the leader before: a fetcher whose call to a paused leader
    /// returns seconds later would otherwise cut the new leader's acknowledged writes.
    fn check_following(&self, leader: i32, epoch: i32) -> Result<(), PartitionError> {
        let r = self.replica.lock();
        if r.role != (Role::Follower { leader }) || r.leader_epoch != epoch {
            return Err(PartitionError::Closed);
        }
        Ok(())
    }

    /// A follower of `leader` at `epoch` cuts what that leader does not have; refused
    /// (Closed) once it no longer follows it there.
    pub fn truncate_as_follower(&self, offset: i64, leader: i32, epoch: i32) -> Result<i64, PartitionError> {
        self.truncate(offset, Some((leader, epoch)))
    }

    /// A follower cuts what its leader does not have; the high watermark comes down with it.
    pub fn truncate_to(&self, offset: i64) -> Result<i64, PartitionError> {
        self.truncate(offset, None)
    }

    fn truncate(&self, offset: i64, following: Option<(i32, i32)>) -> Result<i64, PartitionError> {
        self.check_online()?;
        self.abort_cleaning();
        let mut guard = self.log.write();
        if let Some((leader, epoch)) = following {
            self.check_following(leader, epoch)?;
        }
        let log = guard.take().ok_or(PartitionError::Closed)?;
        // On failure the partition stays closed: its files are in doubt.
        let log = log.truncate_to(offset)?;
        let end = log.log_end_offset();
        self.after_write(&log);
        *guard = Some(log);
        self.flushed.store(end.min(self.flushed.load(Ordering::Acquire)), Ordering::Release);
        lower_to(&self.local_end, end);
        lower_to(&self.hw, end);
        Ok(end)
    }

    /// A follower of `leader` at `epoch` below that leader's log start starts over,
    /// empty, at `offset`; refused (Closed) once it no longer follows it there.
    pub fn restart_as_follower(&self, offset: i64, leader: i32, epoch: i32) -> Result<(), PartitionError> {
        self.restart(offset, Some((leader, epoch)))
    }

    /// A replica dropped from a partition (or below its leader's log start) starts
    /// over, empty, at `offset`.
    pub fn restart_at(&self, offset: i64) -> Result<(), PartitionError> {
        self.restart(offset, None)
    }

    fn restart(&self, offset: i64, following: Option<(i32, i32)>) -> Result<(), PartitionError> {
        self.check_online()?;
        self.abort_cleaning();
        let mut guard = self.log.write();
        if let Some((leader, epoch)) = following {
            self.check_following(leader, epoch)?;
        }
        let log = guard.take().ok_or(PartitionError::Closed)?;
        let log = log.restart_at(offset)?;
        self.after_write(&log);
        *guard = Some(log);
        self.flushed.store(offset, Ordering::Release);
        self.local_end.send_replace(offset);
        self.hw.send_replace(offset);
        Ok(())
    }

    /// Where the leader epoch this log knows best at or below `epoch` ended.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<(i32, i64), PartitionError> {
        let guard = self.log.read();
        Ok(guard.as_ref().ok_or(PartitionError::Closed)?.end_offset_for_epoch(epoch))
    }

    /// The newest leader epoch in this log, if any.
    pub fn latest_epoch(&self) -> Result<Option<i32>, PartitionError> {
        let guard = self.log.read();
        Ok(guard.as_ref().ok_or(PartitionError::Closed)?.leader_epochs().latest_epoch())
    }

    /// A receiver of log-end changes (followers' long polls).
    pub(crate) fn subscribe_leo(&self) -> watch::Receiver<i64> {
        self.leo.subscribe()
    }

    /// Offsets below `end` are durable here; the high watermark may move.
    pub(crate) fn set_local_end(&self, end: i64) {
        self.local_end.send_if_modified(|e| {
            let raised = end > *e;
            if raised {
                *e = end;
            }
            raised
        });
        self.recompute_hw();
    }

    /// Where this replica's durable log ends.
    pub(crate) fn local_end(&self) -> i64 {
        *self.local_end.borrow()
    }

    /// A receiver of durable-end changes (acks=1 producers).
    pub(crate) fn subscribe_local_end(&self) -> watch::Receiver<i64> {
        self.local_end.subscribe()
    }

    /// A leader's high watermark: its durable end bounded by the ISR's log ends, and
    /// held while the ISR is below min.insync.replicas.
    pub(crate) fn recompute_hw(&self) {
        let local = self.local_end();
        let min_insync = self.config.lock().min_insync_replicas;
        let hw = {
            let r = self.replica.lock();
            if r.role != Role::Leader {
                return; // a follower's high watermark comes from its leader
            }
            r.leader_hw(self.node_id, local, min_insync)
        };
        if let Some(hw) = hw {
            self.advance_hw(hw);
        }
    }

    /// A follower asked for records from `fetch_offset`: its log ends there.
    pub(crate) fn follower_fetched(&self, replica: i32, fetch_offset: i64, now_ms: i64) {
        let leo = self.log_end_offset();
        self.replica.lock().record_fetch(replica, fetch_offset, leo, now_ms);
        self.recompute_hw();
    }

    /// A follower takes its leader's high watermark, up to its own log end.
    pub(crate) fn follow_hw(&self, leader_hw: i64) {
        let end = self.log_end_offset().min(self.local_end());
        self.advance_hw(leader_hw.min(end));
    }

    pub(crate) fn node_id(&self) -> i32 {
        self.node_id
    }

    /// Whole batches up to the log end, for a follower.
    pub fn read_for_follower(&self, offset: i64, max_bytes: usize) -> Result<ReadSlice, PartitionError> {
        self.check_online()?;
        let guard = self.log.read();
        let log = guard.as_ref().ok_or(PartitionError::Closed)?;
        if offset == log.log_end_offset() {
            return Ok(ReadSlice { bytes: Bytes::new(), first_offset: offset });
        }
        Ok(log.read(offset, max_bytes, i64::MAX, true)?)
    }

    /// Reads whole batches visible below the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<ReadSlice, PartitionError> {
        self.check_online()?;
        let hw = self.high_watermark();
        let guard = self.log.read();
        let log = guard.as_ref().ok_or(PartitionError::Closed)?;
        if offset == hw {
            // Nothing visible yet; avoid touching the files.
            return Ok(ReadSlice { bytes: Bytes::new(), first_offset: offset });
        }
        if offset > hw && offset <= log.log_end_offset() {
            // Written but not yet durable: not an error, just nothing to see.
            return Ok(ReadSlice { bytes: Bytes::new(), first_offset: offset });
        }
        // The consumer's read: it passes over segments a clean left without records.
        Ok(log.read_isolated(offset, max_bytes, hw, Isolation::ReadUncommitted, min_one)?.slice)
    }

    /// The last stable offset: a read_committed consumer reads below it.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.log.read().as_ref().map_or(hw, |log| log.last_stable_offset(hw))
    }

    /// Reads whole batches below the last stable offset, for a read_committed
    /// consumer, with the aborted transactions among them.
    pub fn read_committed(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<(ReadSlice, Vec<AbortedTxn>), PartitionError> {
        self.check_online()?;
        let hw = self.high_watermark();
        let guard = self.log.read();
        let log = guard.as_ref().ok_or(PartitionError::Closed)?;
        let lso = log.last_stable_offset(hw);
        if offset >= lso && offset <= log.log_end_offset() {
            // Written, maybe committed, but not stable yet: nothing to see.
            return Ok((ReadSlice { bytes: Bytes::new(), first_offset: offset }, Vec::new()));
        }
        let read = log.read_isolated(offset, max_bytes, hw, Isolation::ReadCommitted, min_one)?;
        Ok((read.slice, read.aborted.unwrap_or_default()))
    }

    /// The first offset of each transaction still open here, by producer id.
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.log.read().as_ref().map_or_else(Vec::new, Log::ongoing_transactions)
    }

    pub fn max_timestamp(&self) -> Result<i64, PartitionError> {
        let guard = self.log.read();
        let log = guard.as_ref().ok_or(PartitionError::Closed)?;
        Ok(log.max_timestamp())
    }

    pub fn find_batch_by_timestamp(&self, timestamp: i64) -> Result<Option<Bytes>, PartitionError> {
        let guard = self.log.read();
        let log = guard.as_ref().ok_or(PartitionError::Closed)?;
        Ok(log.find_batch_by_timestamp(timestamp)?)
    }

    pub fn delete_records(&self, before: i64) -> Result<i64, PartitionError> {
        let mut guard = self.log.write();
        let log = guard.as_mut().ok_or(PartitionError::Closed)?;
        self.check_online()?;
        let start = log.delete_records(before).inspect_err(|_| self.note_failure(log))?;
        self.log_start.store(start, Ordering::Release);
        Ok(start)
    }

    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, PartitionError> {
        let mut guard = self.log.write();
        let log = guard.as_mut().ok_or(PartitionError::Closed)?;
        self.check_online()?;
        let n = log.enforce_retention(now_ms).inspect_err(|_| self.note_failure(log))?;
        self.log_start.store(log.log_start_offset(), Ordering::Release);
        Ok(n)
    }

    /// The idempotent producers the log remembers (None once it is closed).
    pub fn active_producers(&self) -> Option<Vec<karst_storage::ActiveProducer>> {
        self.log.read().as_ref().map(|l| l.active_producers())
    }

    /// Stops a clean in progress at its next batch and keeps it from being swapped in.
    fn abort_cleaning(&self) {
        self.clean_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Where this log can be cleaned and how dirty it is, when it is compacted and
    /// online: the dirty section ends at the high watermark (a follower's comes from
    /// its leader), so nothing a consumer cannot see yet is cleaned.
    pub(crate) fn cleanable(&self, now_ms: i64) -> Option<Cleanable> {
        if self.offline_reason().is_some() {
            return None;
        }
        let guard = self.log.read();
        let log = guard.as_ref()?;
        if !self.config.lock().log.cleanup_policy.compact {
            return None;
        }
        match log.cleanable(now_ms, self.high_watermark()) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "cannot tell how dirty the log is");
                None
            }
        }
    }

    /// Cleans the dirty section of a compacted log (see `karst_storage::cleaner`):
    /// plans under the read lock, copies without any lock, reporting its I/O to
    /// `io` (which throttles, or breaks to abort; its second argument tells whether
    /// this clean was aborted meanwhile, for a throttle's sleep to end early), and swaps the cleaned segments
    /// in under the write lock. `None` when there was nothing to clean or another
    /// thread is cleaning this log. A truncation, restart, close or delete meanwhile
    /// aborts it (`StorageError::CleaningAborted`) and its files are removed.
    pub(crate) fn clean(&self, now_ms: i64, cleaner: &CleanerConfig, io: CleanIo<'_>) -> Result<Option<CleanStats>, PartitionError> {
        let Some(_cleaning) = self.cleaning.try_lock() else { return Ok(None) };
        let epoch = self.clean_epoch.load(Ordering::Acquire);
        let task = {
            let guard = self.log.read();
            let log = guard.as_ref().ok_or(PartitionError::Closed)?;
            self.check_online()?;
            // Below the last stable offset only: an open transaction's records are not
            // yet known to be committed or aborted (equal to the high watermark until
            // the broker serves transactions).
            log.plan_clean(now_ms, log.last_stable_offset(self.high_watermark()), cleaner)?
        };
        let Some(task) = task else { return Ok(None) };
        let aborted = || self.clean_epoch.load(Ordering::Acquire) != epoch;
        let cleaned = task.run(&mut |bytes| if aborted() { ControlFlow::Break(()) } else { io(bytes, &aborted) })?;
        let mut guard = self.log.write();
        if aborted() {
            // Dropped unfinished, the cleaned files are removed.
            return Err(StorageError::CleaningAborted.into());
        }
        let log = guard.as_mut().ok_or(PartitionError::Closed)?;
        self.check_online()?;
        let stats = log.finish_clean(cleaned).inspect_err(|_| self.note_failure(log))?;
        self.log_start.store(log.log_start_offset(), Ordering::Release);
        Ok(Some(stats))
    }

    pub fn size_bytes(&self) -> u64 {
        self.log.read().as_ref().map_or(0, |l| l.size_bytes())
    }

    /// What the flusher syncs outside the lock (None once the log is closed or failed).
    pub(crate) fn flush_target(&self) -> Option<FlushTarget> {
        let guard = self.log.read();
        let log = guard.as_ref()?;
        match log.flush_target() {
            Ok(target) => Some(target),
            Err(_) if log.failure().is_some() => {
                self.note_failure(log);
                None
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "no file to flush");
                None
            }
        }
    }

    /// Closes the log cleanly (final fsync, clean-shutdown marker).
    pub fn close(&self) -> Result<(), PartitionError> {
        self.abort_cleaning();
        let _no_clean = self.cleaning.lock();
        if let Some(log) = self.log.write().take() {
            log.close()?;
        }
        Ok(())
    }

    /// Closes and removes the partition's files.
    pub fn delete(&self) -> Result<(), PartitionError> {
        self.abort_cleaning();
        // The clean's files are in the directory about to go.
        let _no_clean = self.cleaning.lock();
        if let Some(log) = self.log.write().take() {
            log.delete()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;

    use super::*;
    use crate::config::BrokerConfig;

    fn offsets_batch(producer_id: i64) -> bytes::BytesMut {
        let record = (Bytes::from_static(b"key"), Some(Bytes::from_static(b"offset")));
        crate::group::encode_batch_of(&[record], 0, Some((producer_id, 0))).expect("batch")
    }

    /// A transactional offset commit verified in one transaction and held up past
    /// its marker must not open a transaction there that nobody will end.
    #[test]
    fn a_verified_write_is_refused_once_a_marker_or_a_newer_verification_of_its_producer_came_in_between() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::topic_config::effective(&BrokerConfig::default(), &BTreeMap::new());
        let p = Partition::open(Arc::from("__consumer_offsets"), 0, 1, dir.path().join("p-0"), config).expect("open");
        let token = p.start_verification(7, 0);
        p.append_verified(&offsets_batch(7), 7, token, 0).expect("a verified write");
        let late = p.start_verification(7, 0);
        let other = p.start_verification(8, 0);
        p.append_marker(7, 0, 0, true, 0).expect("the marker");
        let end = p.log_end_offset();
        assert!(matches!(p.append_verified(&offsets_batch(7), 7, late, 0), Err(PartitionError::VerificationExpired(7))));
        assert_eq!(p.log_end_offset(), end, "nothing written");
        assert!(p.ongoing_transactions().is_empty(), "no transaction opened by the late write");
        p.append_verified(&offsets_batch(8), 8, other, 0).expect("another producer's verification holds");

        let older = p.start_verification(7, 0);
        let newer = p.start_verification(7, 0);
        assert!(matches!(p.append_verified(&offsets_batch(7), 7, older, 0), Err(PartitionError::VerificationExpired(7))));
        p.append_verified(&offsets_batch(7), 7, newer, 0).expect("the newest verification holds");
        assert_eq!(p.ongoing_transactions().len(), 2);
    }

    /// A client's transactional batch of one record: producer `pid` at `epoch`, `seq`.
    fn txn_batch(pid: i64, epoch: i16, seq: i32) -> bytes::BytesMut {
        use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
        let r = Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: seq,
            timestamp: 0,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, [r].iter(), &RecordEncodeOptions { version: 2, compression: Compression::None })
            .expect("batch");
        buf
    }

    /// Transactions v2: a batch goes in while its producer's transaction is open
    /// here at its epoch, or under the token of the add that put this partition in
    /// the transaction; a marker arriving after the add voids the token, and the
    /// batch would open a transaction here that no marker ever ends.
    #[test]
    fn a_transactions_v2_batch_needs_its_transaction_open_here_or_a_live_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::topic_config::effective(&BrokerConfig::default(), &BTreeMap::new());
        let p = Partition::open(Arc::from("t"), 0, 1, dir.path().join("p-0"), config).expect("open");
        assert!(matches!(p.append_in_txn(&txn_batch(7, 0, 0), 7, 0, None, 0), Err(PartitionError::VerificationExpired(7))));
        assert_eq!(p.log_end_offset(), 0, "nothing written");
        let token = p.start_verification(7, 0);
        p.append_in_txn(&txn_batch(7, 0, 0), 7, 0, Some(token), 0).expect("added: in");
        assert!(p.in_transaction(7, 0));
        p.append_in_txn(&txn_batch(7, 0, 1), 7, 0, None, 0).expect("open here: no token needed");
        // The next transaction's add (epoch 1) starts while this one is open here;
        // its coordinator writes this one's marker (at the bumped epoch) while the
        // add waits for it: the token holds through that one marker.
        let next = p.start_verification(7, 1);
        p.append_marker(7, 1, 0, true, 0).expect("the marker");
        assert!(!p.in_transaction(7, 1) && !p.in_transaction(7, 0));
        p.append_in_txn(&txn_batch(7, 1, 0), 7, 1, Some(next), 0).expect("added after the last marker: in");
        assert!(p.in_transaction(7, 1));
        // A verification at the open transaction's own epoch is for that
        // transaction: its marker ends it, and the late batch is refused.
        let late = p.start_verification(7, 1);
        p.append_marker(7, 1, 0, false, 0).expect("the abort marker");
        let end = p.log_end_offset();
        assert!(matches!(p.append_in_txn(&txn_batch(7, 1, 1), 7, 1, Some(late), 0), Err(PartitionError::VerificationExpired(7))));
        assert_eq!(p.log_end_offset(), end, "nothing written");
        let fresh = p.start_verification(7, 1);
        p.append_in_txn(&txn_batch(7, 1, 1), 7, 1, Some(fresh), 0).expect("added again: in");
        assert!(p.in_transaction(7, 1));
        assert!(
            matches!(p.append_in_txn(&txn_batch(7, 0, 2), 7, 0, None, 0), Err(PartitionError::VerificationExpired(7))),
            "the old epoch"
        );
    }

    /// A coordinator's write counts as durable only while this broker still leads
    /// at the epoch it was appended under: a leader deposed while paused truncates
    /// the write once it follows again, and the high watermark it then learns from
    /// the new leader passes the same offsets, with the new leader's records in them
    /// (found by the exactly-once checker: a transactional offset commit answered as
    /// written, then missing).
    #[tokio::test]
    async fn a_deposed_leaders_write_is_not_durable_when_the_high_watermark_passes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::topic_config::effective(&BrokerConfig::default(), &BTreeMap::new());
        let p = Partition::open(Arc::from("__consumer_offsets"), 0, 1, dir.path().join("p-0"), config).expect("open");
        let batch = || crate::group::encode_batch(&[(Bytes::from_static(b"k"), Some(Bytes::from_static(b"v")))], 0).expect("batch");
        let last = p.append(&batch(), 0).expect("append").last_offset;
        let committed = crate::group::Pending::new(p.clone(), last);
        p.advance_hw(last + 1);
        assert!(committed.durable().await, "committed while leading");

        let last = p.append(&batch(), 0).expect("append").last_offset;
        let deposed = tokio::spawn(crate::group::Pending::new(p.clone(), last).committed());
        let epoch = p.leader_epoch();
        assert!(p.replica.lock().apply(crate::replica::Role::Follower { leader: 2 }, epoch + 1, &[1, 2], &[1, 2], 0));
        p.wake_waiters();
        p.advance_hw(last + 1);
        let told = deposed.await.expect("task");
        assert_eq!(told, Err(karst_protocol::error_codes::NOT_COORDINATOR), "the leadership it was written under ended");
    }

    /// A follower's fetcher asked its leader where their logs agree; the leader was
    /// paused, so the answer came seconds later, after this replica had been elected
    /// leader in its place and had acknowledged writes. The old leader's answer must
    /// not cut them, nor wipe the log, nor be appended (found by the exactly-once
    /// checker: transactions committed on the new leader, then truncated away when the
    /// paused leader resumed).
    #[test]
    fn a_leader_refuses_what_its_fetcher_learnt_from_the_leader_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::topic_config::effective(&BrokerConfig::default(), &BTreeMap::new());
        let p = Partition::open(Arc::from("t"), 0, 1, dir.path().join("t-0"), config).expect("open");
        let batch = || crate::group::encode_batch(&[(Bytes::from_static(b"k"), Some(Bytes::from_static(b"v")))], 0).expect("batch");
        let epoch = p.leader_epoch();
        // Following node 3 at the next epoch: its batches are taken.
        assert!(p.replica.lock().apply(crate::replica::Role::Follower { leader: 3 }, epoch + 1, &[1, 3], &[1, 3], 0));
        let mut replicated = batch().to_vec();
        replicated[..8].copy_from_slice(&0i64.to_be_bytes());
        p.append_replicated(&replicated, 3, epoch + 1, 0).expect("a follower takes its leader's batches");
        // Elected in node 3's place: this replica writes under its own epoch.
        assert!(p.replica.lock().apply(crate::replica::Role::Leader, epoch + 2, &[1], &[1, 3], 0));
        let end = p.append(&batch(), 0).expect("append as leader").last_offset + 1;
        assert_eq!(end, 2);
        // What the fetcher of node 3 at the old epoch would do with a late answer.
        assert!(matches!(p.truncate_as_follower(1, 3, epoch + 1), Err(PartitionError::Closed)));
        assert!(matches!(p.restart_as_follower(5, 3, epoch + 1), Err(PartitionError::Closed)));
        assert!(matches!(p.append_replicated(&replicated, 3, epoch + 1, 0), Err(PartitionError::Closed)));
        assert_eq!(p.log_end_offset(), end, "the leader's write is kept");
        // While it follows, the same cut is made.
        assert!(p.replica.lock().apply(crate::replica::Role::Follower { leader: 3 }, epoch + 3, &[1, 3], &[1, 3], 0));
        assert_eq!(p.truncate_as_follower(1, 3, epoch + 3).expect("truncate"), 1);
    }
}
