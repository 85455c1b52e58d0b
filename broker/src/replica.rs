//! A partition's replication state on this broker, as plain data: its role, the
//! ISR the controller committed, and (when leading) how far each follower has
//! fetched. The high watermark and ISR changes are computed here, without I/O.

use std::collections::HashMap;

/// What this broker is for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Leader,
    Follower {
        leader: i32,
    },
    /// No leader, or not a replica here.
    Offline,
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The follower's log end: the offset it asked for last.
    leo: i64,
    /// When it last fetched from at or past the leader's log end.
    caught_up_ms: i64,
}

#[derive(Debug)]
pub(crate) struct ReplicaState {
    pub(crate) role: Role,
    pub(crate) leader_epoch: i32,
    /// When this broker took up its current role at its current epoch.
    pub(crate) since_ms: i64,
    pub(crate) isr: Vec<i32>,
    /// How many replicas the partition is assigned (0 until the image says).
    replicas: usize,
    followers: HashMap<i32, Progress>,
}

impl Default for ReplicaState {
    fn default() -> Self {
        // A single-node partition: this broker leads until the image says otherwise.
        ReplicaState { role: Role::Leader, leader_epoch: 0, since_ms: 0, isr: Vec::new(), replicas: 0, followers: HashMap::new() }
    }
}

impl ReplicaState {
    /// Takes the role the image gives. A new leadership starts every follower's
    /// lag clock now, so none is dropped from the ISR before it could fetch.
    /// Returns true when the role or epoch changed.
    pub(crate) fn apply(&mut self, role: Role, leader_epoch: i32, isr: &[i32], replicas: &[i32], now_ms: i64) -> bool {
        let changed = self.role != role || self.leader_epoch != leader_epoch;
        if changed {
            self.since_ms = now_ms;
            self.followers.clear();
        }
        if role == Role::Leader {
            // Also when nothing changed: a partition created here starts as the
            // default state (leader, epoch 0), and a replica added by a reassignment
            // joins an unchanged leadership. A replica with no clock would never be
            // dropped from the ISR, however long it stays away.
            for r in replicas {
                self.followers.entry(*r).or_insert(Progress { leo: -1, caught_up_ms: now_ms });
            }
        }
        self.role = role;
        self.leader_epoch = leader_epoch;
        self.isr = isr.to_vec();
        self.replicas = replicas.len();
        changed
    }

    /// Whether the ISR is smaller than min.insync.replicas, capped at the replica
    /// count as Kafka caps it (a single-node partition is never below it).
    pub(crate) fn below_min_isr(&self, min_insync: i32) -> bool {
        self.isr_size() < min_insync.min(self.replicas.max(1) as i32)
    }

    /// The ISR's size; a single-node partition's ISR (empty before any image) is itself.
    pub(crate) fn isr_size(&self) -> i32 {
        self.isr.len().max(1) as i32
    }

    /// A follower fetched from `fetch_offset` while this leader's log ended at `leader_leo`.
    pub(crate) fn record_fetch(&mut self, replica: i32, fetch_offset: i64, leader_leo: i64, now_ms: i64) {
        let p = self.followers.entry(replica).or_insert(Progress { leo: -1, caught_up_ms: now_ms });
        p.leo = fetch_offset;
        if fetch_offset >= leader_leo {
            p.caught_up_ms = now_ms;
        }
    }

    /// The high watermark a leader may expose: its own durable end, bounded by every
    /// other ISR member's log end (an ISR member that has not fetched yet holds it
    /// where it is: None).
    ///
    /// As Kafka (KIP-966): below min.insync.replicas (capped at the replica count) it
    /// holds too. A batch appended just before the ISR shrank then waits for the ISR
    /// to heal and is acknowledged, instead of being committed by the leader alone and
    /// answered NOT_ENOUGH_REPLICAS_AFTER_APPEND: a stored batch answered with an
    /// error is one an idempotent producer may send again under a new epoch.
    pub(crate) fn leader_hw(&self, me: i32, local_end: i64, min_insync: i32) -> Option<i64> {
        if self.below_min_isr(min_insync) {
            return None;
        }
        let mut hw = local_end;
        for r in self.isr.iter().filter(|r| **r != me) {
            let leo = self.followers.get(r).map_or(-1, |p| p.leo);
            if leo < 0 {
                return None;
            }
            hw = hw.min(leo);
        }
        Some(hw)
    }

    /// What a replica must hold to rejoin the ISR: everything committed or about to
    /// be, the published high watermark or the one a recompute under this ISR
    /// computes, which it may not have published yet. Taken from the published one
    /// alone, a replica behind a just-computed high watermark could rejoin, be
    /// elected, and lose records already acknowledged.
    pub(crate) fn committed_floor(&self, me: i32, local_end: i64, min_insync: i32, published_hw: i64) -> i64 {
        published_hw.max(self.leader_hw(me, local_end, min_insync).unwrap_or(-1))
    }

    /// The ISR this leader should ask the controller for, if it differs from the
    /// committed one: members that have not caught up for `lag_ms` leave; replicas
    /// that have reached the high watermark and `epoch_start` (where this leader's
    /// epoch began) (re)join, as Kafka's `isFollowerInSync`. A new leader's high
    /// watermark can lag what the previous leader acknowledged; everything below its
    /// epoch start may have been, so a replica without it must not become eligible
    /// to lead (a preferred-leader election would then truncate acknowledged data).
    pub(crate) fn wanted_isr(&self, me: i32, replicas: &[i32], hw: i64, epoch_start: i64, now_ms: i64, lag_ms: i64) -> Option<Vec<i32>> {
        if self.role != Role::Leader {
            return None;
        }
        let wanted: Vec<i32> = replicas
            .iter()
            .copied()
            .filter(|r| {
                if *r == me {
                    return true;
                }
                let p = self.followers.get(r);
                if self.isr.contains(r) {
                    p.is_none_or(|p| now_ms - p.caught_up_ms <= lag_ms)
                } else {
                    p.is_some_and(|p| p.leo >= hw && p.leo >= epoch_start && p.leo >= 0 && now_ms - p.caught_up_ms <= lag_ms)
                }
            })
            .collect();
        let mut a = wanted.clone();
        let mut b = self.isr.clone();
        a.sort_unstable();
        b.sort_unstable();
        (a != b).then_some(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(isr: &[i32]) -> ReplicaState {
        let mut s = ReplicaState::default();
        s.apply(Role::Leader, 3, isr, &[1, 2, 3], 1_000);
        s
    }

    #[test]
    fn a_follower_that_never_fetches_leaves_the_isr_of_a_new_partition() {
        // A partition created with this broker as leader at epoch 0: the same role
        // and epoch as the default state.
        let mut s = ReplicaState::default();
        assert!(!s.apply(Role::Leader, 0, &[1, 2, 3], &[1, 2, 3], 1_000));
        assert_eq!(s.wanted_isr(1, &[1, 2, 3], 0, 0, 3_000, 5_000), None, "within the lag time");
        s.record_fetch(2, 0, 0, 5_000);
        assert_eq!(s.wanted_isr(1, &[1, 2, 3], 0, 0, 6_500, 5_000), Some(vec![1, 2]), "3 never fetched");
    }

    #[test]
    fn hw_waits_for_every_isr_follower() {
        let mut s = leader(&[1, 2, 3]);
        assert_eq!(s.leader_hw(1, 10, 1), None, "followers have not fetched");
        s.record_fetch(2, 7, 10, 1_100);
        assert_eq!(s.leader_hw(1, 10, 1), None);
        s.record_fetch(3, 9, 10, 1_100);
        assert_eq!(s.leader_hw(1, 10, 1), Some(7));
        s.record_fetch(2, 10, 10, 1_200);
        assert_eq!(s.leader_hw(1, 10, 1), Some(9));
        assert_eq!(s.leader_hw(1, 8, 1), Some(8), "never past the leader's own durable end");
        s.apply(Role::Leader, 3, &[1, 2], &[1, 2, 3], 1_300);
        assert_eq!(s.leader_hw(1, 10, 1), Some(10), "a follower out of the ISR no longer holds it");
    }

    #[test]
    fn hw_holds_while_the_isr_is_below_min_insync_replicas() {
        let mut s = leader(&[1, 2, 3]);
        s.record_fetch(2, 10, 10, 1_100);
        s.record_fetch(3, 10, 10, 1_100);
        assert_eq!(s.leader_hw(1, 12, 2), Some(10));
        s.apply(Role::Leader, 3, &[1], &[1, 2, 3], 1_200);
        assert_eq!(s.leader_hw(1, 12, 2), None, "the leader alone commits nothing with min.insync.replicas=2");
        assert_eq!(s.leader_hw(1, 12, 1), Some(12));
        s.apply(Role::Leader, 3, &[1, 2], &[1, 2, 3], 1_300);
        assert_eq!(s.leader_hw(1, 12, 2), Some(10), "healed: follower 2 bounds it again");
        // A setting above the replica count is capped at it, as in Kafka.
        let mut single = ReplicaState::default();
        assert_eq!(single.leader_hw(1, 5, 3), Some(5), "a single-node partition before any image");
        single.apply(Role::Leader, 1, &[1], &[1], 0);
        assert_eq!(single.leader_hw(1, 5, 3), Some(5));
    }

    #[test]
    fn lagging_followers_leave_and_caught_up_ones_return() {
        let mut s = leader(&[1, 2, 3]);
        // Within the grace period nobody leaves.
        assert_eq!(s.wanted_isr(1, &[1, 2, 3], 0, 0, 2_000, 5_000), None);
        s.record_fetch(2, 50, 50, 4_000);
        s.record_fetch(3, 10, 50, 4_000);
        assert_eq!(s.wanted_isr(1, &[1, 2, 3], 10, 0, 7_000, 5_000), Some(vec![1, 2]), "3 has not caught up since 1 000");
        s.apply(Role::Leader, 3, &[1, 2], &[1, 2, 3], 7_000);
        assert_eq!(s.wanted_isr(1, &[1, 2, 3], 50, 0, 7_100, 5_000), None);
        s.record_fetch(3, 50, 50, 7_200);
        assert_eq!(s.wanted_isr(1, &[1, 2, 3], 50, 0, 7_300, 5_000), Some(vec![1, 2, 3]));
    }

    #[test]
    fn a_follower_rejoins_only_once_it_has_what_this_leader_had_when_its_epoch_began() {
        // Leader at epoch 3 since offset 473 (records a previous leader acknowledged),
        // its high watermark still 203: a follower at 203 has reached the high
        // watermark but not the epoch start, and stays out.
        let mut s = leader(&[1, 2]);
        s.record_fetch(2, 473, 473, 1_000);
        s.record_fetch(3, 203, 473, 1_000);
        assert_eq!(s.wanted_isr(1, &[1, 2, 3], 203, 473, 1_100, 5_000), None, "3 lacks 203..473");
        s.record_fetch(3, 473, 473, 1_200);
        assert_eq!(s.wanted_isr(1, &[1, 2, 3], 203, 473, 1_300, 5_000), Some(vec![1, 2, 3]));
    }

    #[test]
    fn a_follower_or_offline_replica_asks_nothing() {
        let mut s = ReplicaState::default();
        assert!(s.apply(Role::Follower { leader: 2 }, 4, &[1, 2], &[1, 2], 0));
        assert_eq!(s.wanted_isr(1, &[1, 2], 0, 0, 100_000, 10), None);
        assert!(!s.apply(Role::Follower { leader: 2 }, 4, &[1, 2], &[1, 2], 0));
        assert!(s.apply(Role::Offline, 5, &[1], &[1, 2], 0));
    }

    /// A recompute computed a high watermark of 100 under ISR [1, 2] and has not
    /// published it (90 still shows): follower 3, at 95, must not rejoin on 90.
    #[test]
    fn a_replica_rejoins_only_past_a_high_watermark_computed_but_not_yet_published() {
        let mut s = leader(&[1, 2]);
        s.record_fetch(2, 100, 100, 1_100);
        s.record_fetch(3, 95, 100, 1_100);
        let floor = s.committed_floor(1, 100, 1, 90);
        assert_eq!(floor, 100);
        assert_eq!(s.wanted_isr(1, &[1, 2, 3], floor, 0, 1_200, 5_000), None, "3 lacks 95..100");
        assert_eq!(s.wanted_isr(1, &[1, 2, 3], 90, 0, 1_200, 5_000), Some(vec![1, 2, 3]), "the published one alone lets it in");
        s.record_fetch(3, 100, 100, 1_300);
        assert_eq!(s.wanted_isr(1, &[1, 2, 3], s.committed_floor(1, 100, 1, 90), 0, 1_300, 5_000), Some(vec![1, 2, 3]));
    }
}
