//! One transactional id's state and its transitions, as Kafka's
//! `TransactionMetadata`: each transition is computed here without side effects,
//! written to `__transaction_state` by the coordinator, and takes effect once
//! durable. Errors are Kafka's codes.

use std::collections::BTreeSet;

use karst_protocol::error_codes as ec;

/// Kafka's `TransactionState`, with its codes in the log and names in the APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

const STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::Dead,
    TxnState::PrepareEpochFence,
];

impl TxnState {
    pub(crate) fn code(self) -> i8 {
        STATES.iter().position(|s| *s == self).map_or(0, |i| i as i8)
    }

    pub(crate) fn from_code(code: i8) -> Option<TxnState> {
        usize::try_from(code).ok().and_then(|i| STATES.get(i).copied())
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<TxnState> {
        STATES.iter().copied().find(|s| s.name() == name)
    }

    /// Markers are being written: the transaction's outcome is decided.
    pub(crate) fn preparing(self) -> Option<bool> {
        match self {
            TxnState::PrepareCommit => Some(true),
            TxnState::PrepareAbort => Some(false),
            _ => None,
        }
    }
}

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH` / `NO_PRODUCER_ID`.
pub(crate) const NO_EPOCH: i16 = -1;
pub(crate) const NO_PRODUCER_ID: i64 = -1;

/// An epoch this high cannot be bumped again: a new producer id is given instead.
pub(crate) fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// A transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnMeta {
    pub(crate) id: String,
    pub(crate) producer_id: i64,
    /// The producer id before the last rotation (KIP-360 retries), in memory only.
    pub(crate) last_producer_id: i64,
    pub(crate) producer_epoch: i16,
    /// The epoch before the last bump (KIP-360 retries), in memory only.
    pub(crate) last_producer_epoch: i16,
    pub(crate) timeout_ms: i32,
    pub(crate) state: TxnState,
    pub(crate) partitions: BTreeSet<(String, i32)>,
    pub(crate) start_ms: i64,
    pub(crate) update_ms: i64,
    /// A transition is being written: other requests get CONCURRENT_TRANSACTIONS.
    pub(crate) pending: bool,
    /// The transaction runs under transactions v2 (KIP-890): every EndTxn bumps
    /// the epoch (Kafka's `clientTransactionVersion` 2).
    pub(crate) tv2: bool,
    /// Transactions v2, epoch exhausted: the producer id the transaction's
    /// completion moves to (Kafka's `nextProducerId`).
    pub(crate) next_producer_id: i64,
}

/// What EndTxn does with an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Nothing to write (a retry of an end already complete): answer with this
    /// producer id and epoch.
    Done(i64, i16),
    /// Write this decision, then answer with [`TxnMeta::answer`].
    Decide(TxnMeta),
}

/// What InitProducerId does with an existing id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Init {
    /// Write this (Empty, new epoch or producer id) and answer with it.
    Ready(TxnMeta),
    /// A transaction is open: abort it under a bumped epoch (this PrepareAbort),
    /// and answer CONCURRENT_TRANSACTIONS so the producer retries.
    FenceAndAbort(TxnMeta),
}

impl TxnMeta {
    /// A new id, before its first epoch.
    pub(crate) fn new(id: &str, producer_id: i64, now: i64, timeout_ms: i32) -> TxnMeta {
        TxnMeta {
            id: id.to_string(),
            producer_id,
            last_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_EPOCH,
            last_producer_epoch: NO_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            update_ms: now,
            pending: false,
            tv2: false,
            next_producer_id: NO_PRODUCER_ID,
        }
    }

    fn to(&self, state: TxnState, now: i64) -> TxnMeta {
        TxnMeta { state, update_ms: now, pending: false, ..self.clone() }
    }

    /// Kafka's `prepareInitProducerIdTransit`. `expected` is the producer id and
    /// epoch a KIP-360 producer names; `new_id` gives a fresh producer id.
    pub(crate) fn init(&self, timeout_ms: i32, expected: Option<(i64, i16)>, now: i64, new_id: impl FnOnce() -> i64) -> Result<Init, i16> {
        if self.pending {
            return Err(ec::CONCURRENT_TRANSACTIONS);
        }
        if let Some((pid, epoch)) = expected {
            let valid =
                self.producer_epoch == NO_EPOCH || pid == self.producer_id || (pid == self.last_producer_id && epoch_exhausted(epoch));
            if !valid {
                return Err(ec::PRODUCER_FENCED);
            }
        }
        match self.state {
            TxnState::PrepareAbort | TxnState::PrepareCommit => Err(ec::CONCURRENT_TRANSACTIONS),
            TxnState::Ongoing => Ok(Init::FenceAndAbort(self.fence_and_abort(now))),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut next = self.to(TxnState::Empty, now);
                next.timeout_ms = timeout_ms;
                next.partitions.clear();
                next.start_ms = -1;
                if epoch_exhausted(self.producer_epoch) && expected.is_none_or(|(_, e)| e == self.producer_epoch) {
                    next.last_producer_id = self.producer_id;
                    next.last_producer_epoch = if expected.is_some() { self.producer_epoch } else { NO_EPOCH };
                    next.producer_id = new_id();
                    next.producer_epoch = 0;
                    return Ok(Init::Ready(next));
                }
                let bumped = self.producer_epoch.saturating_add(1);
                let (epoch, last) = match expected {
                    None => (bumped, NO_EPOCH),
                    Some((_, e)) if self.producer_epoch == NO_EPOCH || e == self.producer_epoch => (bumped, self.producer_epoch),
                    // A retry of a bump whose answer was lost: the same epoch again.
                    Some((_, e)) if e == self.last_producer_epoch => (self.producer_epoch, self.last_producer_epoch),
                    Some(_) => return Err(ec::PRODUCER_FENCED),
                };
                next.producer_epoch = epoch;
                next.last_producer_epoch = last;
                Ok(Init::Ready(next))
            }
            TxnState::Dead | TxnState::PrepareEpochFence => Err(ec::CONCURRENT_TRANSACTIONS),
        }
    }

    /// The open transaction aborted under a bumped epoch (Kafka's epoch fence
    /// followed by an abort not from the client): the producer is fenced.
    pub(crate) fn fence_and_abort(&self, now: i64) -> TxnMeta {
        let mut next = self.to(TxnState::PrepareAbort, now);
        if !epoch_exhausted(self.producer_epoch) {
            next.producer_epoch = self.producer_epoch + 1;
        }
        next.last_producer_epoch = NO_EPOCH;
        next
    }

    /// Checks a client request's producer id and epoch against this state.
    pub(crate) fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), i16> {
        if producer_id != self.producer_id {
            Err(ec::INVALID_PRODUCER_ID_MAPPING)
        } else if epoch != self.producer_epoch {
            Err(ec::PRODUCER_FENCED)
        } else {
            Ok(())
        }
    }

    /// Kafka's AddPartitionsToTxn (and AddOffsetsToTxn's one partition): None when
    /// they are in the open transaction already. `tv2`: added by a partition
    /// leader or group coordinator for a transactions v2 producer, which sends no
    /// AddPartitionsToTxn of its own.
    pub(crate) fn add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &BTreeSet<(String, i32)>,
        tv2: bool,
        now: i64,
    ) -> Result<Option<TxnMeta>, i16> {
        self.check_producer(producer_id, epoch)?;
        if self.pending || matches!(self.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(ec::CONCURRENT_TRANSACTIONS);
        }
        if self.state == TxnState::Ongoing && partitions.is_subset(&self.partitions) {
            return Ok(None);
        }
        if matches!(self.state, TxnState::Dead | TxnState::PrepareEpochFence) {
            return Err(ec::INVALID_TXN_STATE);
        }
        let mut next = self.to(TxnState::Ongoing, now);
        if self.state != TxnState::Ongoing {
            next.start_ms = now;
            next.partitions.clear();
        }
        next.partitions.extend(partitions.iter().cloned());
        next.tv2 = tv2;
        Ok(Some(next))
    }

    /// Kafka's EndTxn from a client (`endTransaction`). `tv2` (EndTxn v5+): the
    /// decision bumps the epoch, to a new producer id `new_id` gives where the
    /// epoch is exhausted, and the producer goes on with what it is answered.
    ///
    /// Under transactions v2 the epoch tells a retry from the next end: an end
    /// being decided or complete is retried with the epoch before its bump (or,
    /// after a move to a new producer id, the last epoch of the previous one).
    pub(crate) fn end(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        tv2: bool,
        now: i64,
        new_id: impl FnOnce() -> i64,
    ) -> Result<End, i16> {
        let bumped_from = |e: i16| i32::from(self.producer_epoch) == i32::from(e) + 1;
        let retry_on_overflow = self.tv2
            && self.last_producer_id == producer_id
            && epoch == i16::MAX - 1
            && self.producer_epoch == 0
            && self.producer_id != producer_id;
        let retry_on_bump = self.tv2 && bumped_from(epoch);
        let valid = if self.tv2 {
            match self.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
                // As Kafka 4.4: the current epoch ends nothing (INVALID_TXN_STATE below).
                TxnState::CompleteCommit | TxnState::CompleteAbort => retry_on_bump || retry_on_overflow || epoch == self.producer_epoch,
                _ => epoch == self.producer_epoch,
            }
        } else {
            epoch == self.producer_epoch
        };
        if producer_id != self.producer_id && !retry_on_overflow {
            return Err(ec::INVALID_PRODUCER_ID_MAPPING);
        }
        if !valid {
            return Err(ec::PRODUCER_FENCED);
        }
        if self.pending {
            return Err(ec::CONCURRENT_TRANSACTIONS);
        }
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut next = self.to(if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort }, now);
                next.tv2 = tv2;
                if tv2 {
                    if epoch_exhausted(self.producer_epoch) {
                        next.next_producer_id = new_id();
                    }
                    next.producer_epoch = self.producer_epoch.saturating_add(1);
                    next.last_producer_epoch = self.producer_epoch;
                }
                Ok(End::Decide(next))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if !self.tv2 || retry_on_bump || retry_on_overflow => {
                Ok(End::Done(self.producer_id, self.producer_epoch))
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Err(ec::CONCURRENT_TRANSACTIONS),
            _ => Err(ec::INVALID_TXN_STATE),
        }
    }

    /// The producer id and epoch an end decided in this state answers: the
    /// producer's next ones (the new producer id at epoch 0 where it moves).
    pub(crate) fn answer(&self) -> (i64, i16) {
        if self.tv2 && self.next_producer_id >= 0 {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        }
    }

    /// Every marker is written: the transaction is complete.
    pub(crate) fn complete(&self, now: i64) -> Option<TxnMeta> {
        let commit = self.state.preparing()?;
        let mut next = self.to(if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort }, now);
        next.partitions.clear();
        if self.tv2 && self.next_producer_id >= 0 {
            // The markers went out under the old producer id's last epoch.
            next.last_producer_id = self.producer_id;
            next.last_producer_epoch = self.producer_epoch;
            next.producer_id = self.next_producer_id;
            next.producer_epoch = 0;
        }
        next.next_producer_id = NO_PRODUCER_ID;
        Some(next)
    }

    /// An open transaction past its timeout.
    pub(crate) fn timed_out(&self, now: i64) -> bool {
        self.state == TxnState::Ongoing && !self.pending && self.start_ms >= 0 && now - self.start_ms > i64::from(self.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EndTxn from a transactions v1 client: None when nothing is written.
    fn end1(m: &TxnMeta, pid: i64, epoch: i16, commit: bool, now: i64) -> Result<Option<TxnMeta>, i16> {
        m.end(pid, epoch, commit, false, now, || unreachable!()).map(|e| match e {
            End::Decide(n) => Some(n),
            End::Done(..) => None,
        })
    }

    fn tp(t: &str, p: i32) -> BTreeSet<(String, i32)> {
        [(t.to_string(), p)].into_iter().collect()
    }

    fn ready(r: Result<Init, i16>) -> TxnMeta {
        match r {
            Ok(Init::Ready(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_transaction_runs_from_init_to_complete() {
        let m = TxnMeta::new("t", 7, 0, 60_000);
        let m = ready(m.init(60_000, None, 1, || unreachable!()));
        assert_eq!((m.producer_id, m.producer_epoch, m.state), (7, 0, TxnState::Empty));
        assert_eq!(end1(&m, 7, 0, true, 2), Err(ec::INVALID_TXN_STATE), "nothing to commit");
        let m = m.add_partitions(7, 0, &tp("a", 0), false, 3).expect("add").expect("changes");
        assert_eq!((m.state, m.start_ms), (TxnState::Ongoing, 3));
        assert_eq!(m.add_partitions(7, 0, &tp("a", 0), false, 4), Ok(None), "already in");
        let m = m.add_partitions(7, 0, &tp("b", 1), false, 5).expect("add").expect("changes");
        assert_eq!((m.partitions.len(), m.start_ms), (2, 3));
        assert_eq!(m.add_partitions(7, 1, &tp("a", 0), false, 5), Err(ec::PRODUCER_FENCED));
        assert_eq!(m.add_partitions(8, 0, &tp("a", 0), false, 5), Err(ec::INVALID_PRODUCER_ID_MAPPING));
        assert_eq!(end1(&m, 7, 0, false, 6).map(|m| m.map(|m| m.state)), Ok(Some(TxnState::PrepareAbort)));
        let m = end1(&m, 7, 0, true, 6).expect("end").expect("changes");
        assert_eq!(m.state, TxnState::PrepareCommit);
        assert_eq!(end1(&m, 7, 0, true, 7), Err(ec::CONCURRENT_TRANSACTIONS));
        assert_eq!(end1(&m, 7, 0, false, 7), Err(ec::INVALID_TXN_STATE));
        assert_eq!(m.add_partitions(7, 0, &tp("a", 0), false, 7), Err(ec::CONCURRENT_TRANSACTIONS));
        let m = m.complete(8).expect("complete");
        assert_eq!((m.state, m.partitions.len()), (TxnState::CompleteCommit, 0));
        assert_eq!(end1(&m, 7, 0, true, 9), Ok(None), "a retried commit");
        assert_eq!(end1(&m, 7, 0, false, 9), Err(ec::INVALID_TXN_STATE));
    }

    #[test]
    fn init_bumps_the_epoch_and_fences_an_open_transaction() {
        let m = ready(TxnMeta::new("t", 7, 0, 1000).init(1000, None, 1, || 9));
        let m = m.add_partitions(7, 0, &tp("a", 0), false, 2).expect("add").expect("changes");
        // A second producer with the same id: the open transaction is aborted under epoch 1.
        let fenced = match m.init(1000, None, 3, || 9) {
            Ok(Init::FenceAndAbort(f)) => f,
            other => panic!("{other:?}"),
        };
        assert_eq!((fenced.state, fenced.producer_epoch), (TxnState::PrepareAbort, 1));
        assert_eq!(end1(&fenced, 7, 0, true, 4), Err(ec::PRODUCER_FENCED), "the zombie is fenced");
        let done = fenced.complete(5).expect("complete");
        let next = ready(done.init(1000, None, 6, || 9));
        assert_eq!((next.producer_id, next.producer_epoch), (7, 2));
        // KIP-360: a producer naming its id and current epoch gets the next; naming
        // the previous epoch (a lost answer) gets the current again; else fenced.
        let bumped = ready(next.init(1000, Some((7, 2)), 7, || 9));
        assert_eq!((bumped.producer_epoch, bumped.last_producer_epoch), (3, 2));
        assert_eq!(ready(bumped.init(1000, Some((7, 2)), 8, || 9)).producer_epoch, 3);
        assert_eq!(bumped.init(1000, Some((7, 0)), 8, || 9), Err(ec::PRODUCER_FENCED));
        assert_eq!(bumped.init(1000, Some((5, 3)), 8, || 9), Err(ec::PRODUCER_FENCED));
    }

    #[test]
    fn an_exhausted_epoch_moves_to_a_new_producer_id() {
        let mut m = TxnMeta::new("t", 7, 0, 1000);
        m.producer_epoch = i16::MAX - 1;
        let next = ready(m.init(1000, None, 1, || 9));
        assert_eq!((next.producer_id, next.producer_epoch, next.last_producer_id), (9, 0, 7));
        let mut pending = next.clone();
        pending.pending = true;
        assert_eq!(pending.init(1000, None, 2, || 10), Err(ec::CONCURRENT_TRANSACTIONS));
    }

    #[test]
    fn an_open_transaction_times_out() {
        let m = ready(TxnMeta::new("t", 7, 0, 100).init(100, None, 0, || 9));
        let m = m.add_partitions(7, 0, &tp("a", 0), false, 1_000).expect("add").expect("changes");
        assert!(!m.timed_out(1_100));
        assert!(m.timed_out(1_101));
        assert!(m.complete(0).is_none(), "an open transaction is not complete");
        for s in STATES {
            assert_eq!(TxnState::from_code(s.code()), Some(s));
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
    }

    fn end2(m: &TxnMeta, pid: i64, epoch: i16, commit: bool, now: i64) -> Result<End, i16> {
        m.end(pid, epoch, commit, true, now, || 9)
    }

    fn decided(r: Result<End, i16>) -> TxnMeta {
        match r {
            Ok(End::Decide(n)) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transactions_v2_bump_the_epoch_at_every_end_and_tell_a_retry_from_the_next_end() {
        let m = ready(TxnMeta::new("t", 7, 0, 60_000).init(60_000, None, 1, || unreachable!()));
        let m = m.add_partitions(7, 0, &tp("a", 0), true, 2).expect("add").expect("changes");
        assert!(m.tv2);
        let d = decided(end2(&m, 7, 0, true, 3));
        assert_eq!((d.state, d.producer_epoch, d.last_producer_epoch, d.answer()), (TxnState::PrepareCommit, 1, 0, (7, 1)));
        // Retried while the markers go out: the epoch before the bump is a retry.
        assert_eq!(end2(&d, 7, 0, true, 4), Err(ec::CONCURRENT_TRANSACTIONS));
        assert_eq!(end2(&d, 7, 1, true, 4), Err(ec::PRODUCER_FENCED), "the bumped epoch ends nothing yet");
        let done = d.complete(5).expect("complete");
        assert_eq!((done.state, done.producer_epoch), (TxnState::CompleteCommit, 1));
        assert_eq!(end2(&done, 7, 0, true, 6), Ok(End::Done(7, 1)), "a retried commit learns the new epoch");
        assert_eq!(end2(&done, 7, 0, false, 6), Err(ec::INVALID_TXN_STATE));
        assert_eq!(end2(&done, 7, 1, true, 6), Err(ec::INVALID_TXN_STATE), "no transaction of epoch 1 is open");
        assert_eq!(end2(&done, 7, 2, true, 6), Err(ec::PRODUCER_FENCED));
        // The next transaction, at the epoch answered: added by a partition leader.
        assert_eq!(done.add_partitions(7, 0, &tp("a", 0), true, 7), Err(ec::PRODUCER_FENCED));
        let next = done.add_partitions(7, 1, &tp("a", 0), true, 7).expect("add").expect("changes");
        assert_eq!(end2(&next, 7, 0, false, 8), Err(ec::PRODUCER_FENCED), "an old epoch cannot end an open transaction");
        let aborted = decided(end2(&next, 7, 1, false, 8));
        assert_eq!((aborted.state, aborted.producer_epoch), (TxnState::PrepareAbort, 2));
    }

    #[test]
    fn transactions_v2_move_to_a_new_producer_id_when_the_epoch_is_exhausted() {
        let mut m = TxnMeta::new("t", 7, 0, 60_000);
        m.producer_epoch = i16::MAX - 1;
        let m = m.add_partitions(7, i16::MAX - 1, &tp("a", 0), true, 1).expect("add").expect("changes");
        let d = decided(end2(&m, 7, i16::MAX - 1, true, 2));
        // The markers carry the last epoch of producer id 7; the producer goes on as 9.
        assert_eq!((d.producer_id, d.producer_epoch, d.next_producer_id, d.answer()), (7, i16::MAX, 9, (9, 0)));
        let done = d.complete(3).expect("complete");
        assert_eq!((done.producer_id, done.producer_epoch, done.last_producer_id, done.next_producer_id), (9, 0, 7, -1));
        assert_eq!(done.answer(), (9, 0));
        assert_eq!(end2(&done, 7, i16::MAX - 1, true, 4), Ok(End::Done(9, 0)), "the retry learns the new producer id");
        assert_eq!(end2(&done, 7, 5, true, 4), Err(ec::INVALID_PRODUCER_ID_MAPPING));
    }

    #[test]
    fn a_transactions_v2_producer_whose_transaction_timed_out_may_abort_and_go_on() {
        let m = ready(TxnMeta::new("t", 7, 0, 100).init(100, None, 0, || 9));
        let m = m.add_partitions(7, 0, &tp("a", 0), true, 1).expect("add").expect("changes");
        let fenced = m.fence_and_abort(200);
        assert_eq!((fenced.state, fenced.producer_epoch), (TxnState::PrepareAbort, 1));
        assert_eq!(end2(&fenced, 7, 0, true, 201), Err(ec::INVALID_TXN_STATE), "its commit is refused");
        assert_eq!(end2(&fenced, 7, 0, false, 201), Err(ec::CONCURRENT_TRANSACTIONS));
        let done = fenced.complete(202).expect("complete");
        assert_eq!(end2(&done, 7, 0, false, 203), Ok(End::Done(7, 1)));
        // Transactions v1 keep strict epochs: the producer is fenced.
        let mut v1 = done.clone();
        v1.tv2 = false;
        assert_eq!(v1.end(7, 0, false, false, 203, || 9), Err(ec::PRODUCER_FENCED));
    }
}
