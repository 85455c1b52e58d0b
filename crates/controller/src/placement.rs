//! Deterministic partition placement: leaders and replicas spread evenly over the
//! given brokers, rack-aware when racks are set. Brokers are ordered alternating
//! by rack (as Kafka does); leaders go round-robin over that order; each follower
//! goes to a rack without a replica of the partition while such a rack exists,
//! and among those to the least loaded broker, ties broken by a rotation after
//! the leader whose shift grows each time the partitions wrap around (so the
//! followers of one leader vary).

use std::collections::{BTreeMap, BTreeSet};

use crate::errors::CommandError;
use crate::metadata::BrokerId;

/// A broker that can receive replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementBroker {
    pub id: BrokerId,
    pub rack: Option<String>,
}

/// Assign `count` partitions with `rf` replicas each; the first replica is the
/// preferred leader. Equivalent to [`place_partitions_from`] with start 0.
pub fn place_partitions(brokers: &[PlacementBroker], count: u32, rf: u16) -> Result<Vec<Vec<BrokerId>>, CommandError> {
    place_partitions_from(brokers, count, rf, 0)
}

/// As [`place_partitions`], with the first partition's leader at position `start`
/// (mod the number of brokers) of the rack-alternated broker order.
pub fn place_partitions_from(brokers: &[PlacementBroker], count: u32, rf: u16, start: usize) -> Result<Vec<Vec<BrokerId>>, CommandError> {
    if count == 0 {
        return Err(CommandError::InvalidPartitions("partition count must be at least 1".into()));
    }
    let arranged = rack_alternated(brokers);
    let n = arranged.len();
    let rf = usize::from(rf);
    if rf == 0 {
        return Err(CommandError::InvalidReplicationFactor("replication factor must be at least 1".into()));
    }
    if rf > n {
        return Err(CommandError::InvalidReplicationFactor(format!("replication factor {rf} is larger than the {n} available broker(s)")));
    }
    let rack_of: BTreeMap<BrokerId, Option<&str>> =
        brokers.iter().map(|b| (b.id, if rack_aware(brokers) { b.rack.as_deref() } else { None })).collect();
    // Rack-unaware placement treats every broker as its own rack.
    let rack_key = |id: BrokerId| -> (Option<&str>, Option<BrokerId>) {
        match rack_of.get(&id).copied().flatten() {
            Some(r) => (Some(r), None),
            None if rack_aware(brokers) => (None, None),
            None => (None, Some(id)),
        }
    };
    let num_racks = arranged.iter().map(|&id| rack_key(id)).collect::<BTreeSet<_>>().len();

    let start = start % n;
    let mut shift = start;
    // Leaders are fixed up front (round-robin), so followers can avoid brokers
    // that will lead later partitions.
    let mut load: BTreeMap<BrokerId, usize> = arranged.iter().map(|&id| (id, 0)).collect();
    for p in 0..count as usize {
        *load.entry(arranged[(start + p) % n]).or_default() += 1;
    }
    let mut out = Vec::with_capacity(count as usize);
    for p in 0..count as usize {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (start + p) % n;
        let leader = arranged[first];
        let mut replicas = vec![leader];
        let mut racks = BTreeSet::from([rack_key(leader)]);
        while replicas.len() < rf {
            let all_racks_used = racks.len() == num_racks;
            // Candidates in rotation order after the leader; the least loaded wins,
            // the earliest in rotation breaks ties.
            let best = (0..n - 1)
                .map(|k| arranged[(first + 1 + (shift + k) % (n - 1)) % n])
                .enumerate()
                .filter(|(_, b)| !replicas.contains(b) && (all_racks_used || !racks.contains(&rack_key(*b))))
                .min_by_key(|&(pos, b)| (load.get(&b).copied().unwrap_or(0), pos))
                .map(|(_, b)| b);
            let Some(b) = best else {
                // Unreachable for rf <= n; a clear error beats a wrong answer.
                return Err(CommandError::InvalidReplicaAssignment("placement found no candidate".into()));
            };
            *load.entry(b).or_default() += 1;
            replicas.push(b);
            racks.insert(rack_key(b));
        }
        out.push(replicas);
    }
    rebalance_followers(&mut out, &mut load, &rack_key);
    Ok(out)
}

/// Greedy choices can leave one broker two replicas ahead of another. Move a
/// follower from a broker with load `hi` to one with load `<= hi - 2` wherever a
/// partition allows it without losing rack diversity. Each move lowers the sum of
/// squared loads, so this terminates; the leaders never move.
fn rebalance_followers<K: Ord>(out: &mut [Vec<BrokerId>], load: &mut BTreeMap<BrokerId, usize>, rack_key: &impl Fn(BrokerId) -> K) {
    'improve: loop {
        let mut by_load: Vec<(usize, BrokerId)> = load.iter().map(|(&b, &l)| (l, b)).collect();
        by_load.sort_unstable();
        for &(hi_load, hi) in by_load.iter().rev() {
            for &(lo_load, lo) in &by_load {
                if lo_load + 2 > hi_load {
                    break;
                }
                for replicas in out.iter_mut() {
                    if replicas.contains(&lo) {
                        continue;
                    }
                    let Some(slot) = replicas.iter().skip(1).position(|b| *b == hi).map(|i| i + 1) else { continue };
                    let racks_before = replicas.iter().map(|b| rack_key(*b)).collect::<BTreeSet<_>>().len();
                    replicas[slot] = lo;
                    let racks_after = replicas.iter().map(|b| rack_key(*b)).collect::<BTreeSet<_>>().len();
                    if racks_after < racks_before {
                        replicas[slot] = hi;
                        continue;
                    }
                    *load.entry(hi).or_default() -= 1;
                    *load.entry(lo).or_default() += 1;
                    continue 'improve;
                }
            }
        }
        return;
    }
}

fn rack_aware(brokers: &[PlacementBroker]) -> bool {
    brokers.iter().any(|b| b.rack.is_some())
}

/// Brokers deduplicated and ordered by id; when racks are set, interleaved by rack
/// (first broker of each rack, then the second of each, ...). Brokers without a
/// rack form one group of their own.
fn rack_alternated(brokers: &[PlacementBroker]) -> Vec<BrokerId> {
    let mut by_rack: BTreeMap<Option<&str>, BTreeSet<BrokerId>> = BTreeMap::new();
    let aware = rack_aware(brokers);
    for b in brokers {
        let key = if aware { b.rack.as_deref() } else { None };
        by_rack.entry(key).or_default().insert(b.id);
    }
    let mut seen = BTreeSet::new();
    let groups: Vec<Vec<BrokerId>> = by_rack.into_values().map(|ids| ids.into_iter().filter(|id| seen.insert(*id)).collect()).collect();
    let longest = groups.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for i in 0..longest {
        for g in &groups {
            if let Some(id) = g.get(i) {
                out.push(*id);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(ids: &[BrokerId]) -> Vec<PlacementBroker> {
        ids.iter().map(|&id| PlacementBroker { id, rack: None }).collect()
    }

    fn racked(spec: &[(BrokerId, &str)]) -> Vec<PlacementBroker> {
        spec.iter().map(|&(id, r)| PlacementBroker { id, rack: Some(r.to_string()) }).collect()
    }

    fn counts(assign: &[Vec<BrokerId>], leaders_only: bool) -> BTreeMap<BrokerId, usize> {
        let mut m = BTreeMap::new();
        for r in assign {
            let take = if leaders_only { 1 } else { r.len() };
            for id in &r[..take] {
                *m.entry(*id).or_insert(0) += 1;
            }
        }
        m
    }

    fn spread(m: &BTreeMap<BrokerId, usize>, n: usize) -> usize {
        let max = m.values().copied().max().unwrap_or(0);
        let min = if m.len() < n { 0 } else { m.values().copied().min().unwrap_or(0) };
        max - min
    }

    fn check_basic(assign: &[Vec<BrokerId>], count: u32, rf: u16) {
        assert_eq!(assign.len(), count as usize);
        for r in assign {
            assert_eq!(r.len(), rf as usize);
            let distinct: BTreeSet<_> = r.iter().collect();
            assert_eq!(distinct.len(), r.len(), "duplicate replica in {r:?}");
        }
    }

    #[test]
    fn spreads_leaders_and_replicas_evenly() {
        for n in 1..=9 {
            let ids: Vec<BrokerId> = (1..=n).collect();
            for rf in 1..=n.min(4) as u16 {
                for count in 1u32..=40 {
                    for start in [0usize, 1, 5] {
                        let a = place_partitions_from(&plain(&ids), count, rf, start).unwrap();
                        check_basic(&a, count, rf);
                        assert!(spread(&counts(&a, true), n as usize) <= 1, "leaders n={n} rf={rf} count={count}: {a:?}");
                        assert!(
                            spread(&counts(&a, false), n as usize) <= 1,
                            "replicas n={n} rf={rf} count={count}: {:?}",
                            counts(&a, false)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn twelve_partitions_on_three_brokers() {
        let a = place_partitions(&plain(&[3, 1, 2]), 12, 3).unwrap();
        assert_eq!(counts(&a, true), BTreeMap::from([(1, 4), (2, 4), (3, 4)]));
        assert_eq!(counts(&a, false), BTreeMap::from([(1, 12), (2, 12), (3, 12)]));
        assert_eq!(a[0][0], 1, "start 0 leads on the lowest id");
    }

    #[test]
    fn large_topics_stay_balanced() {
        let ids: Vec<BrokerId> = (0..10).collect();
        let a = place_partitions_from(&plain(&ids), 5000, 3, 7).unwrap();
        check_basic(&a, 5000, 3);
        assert!(spread(&counts(&a, true), 10) <= 1);
        assert!(spread(&counts(&a, false), 10) <= 1);
    }

    #[test]
    fn is_deterministic() {
        let b = racked(&[(1, "a"), (2, "b"), (3, "a"), (4, "c")]);
        assert_eq!(place_partitions(&b, 20, 3).unwrap(), place_partitions(&b, 20, 3).unwrap());
        let mut shuffled = b.clone();
        shuffled.reverse();
        assert_eq!(place_partitions(&b, 20, 3).unwrap(), place_partitions(&shuffled, 20, 3).unwrap());
    }

    #[test]
    fn rack_aware_spans_racks() {
        let b = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
        let rack = |id: BrokerId| b.iter().find(|x| x.id == id).unwrap().rack.clone().unwrap();
        for rf in 1..=3u16 {
            let a = place_partitions(&b, 30, rf).unwrap();
            check_basic(&a, 30, rf);
            for r in &a {
                let racks: BTreeSet<String> = r.iter().map(|&id| rack(id)).collect();
                assert_eq!(racks.len(), r.len(), "replicas {r:?} share a rack");
            }
            assert!(spread(&counts(&a, true), 6) <= 1);
            assert!(spread(&counts(&a, false), 6) <= 1, "{:?}", counts(&a, false));
        }
        // More replicas than racks: every rack is used, no broker twice.
        let a = place_partitions(&b, 10, 4).unwrap();
        check_basic(&a, 10, 4);
        for r in &a {
            let racks: BTreeSet<String> = r.iter().map(|&id| rack(id)).collect();
            assert_eq!(racks.len(), 3, "{r:?}");
        }
    }

    #[test]
    fn uneven_racks_still_use_every_rack() {
        let b = racked(&[(1, "a"), (2, "a"), (3, "a"), (4, "b")]);
        let a = place_partitions(&b, 8, 2).unwrap();
        check_basic(&a, 8, 2);
        for r in &a {
            let has_b = r.contains(&4);
            let has_a = r.iter().any(|id| [1, 2, 3].contains(id));
            assert!(has_a && has_b, "rf 2 over two racks must use both: {r:?}");
        }
    }

    #[test]
    fn rejects_impossible_requests() {
        assert!(matches!(place_partitions(&plain(&[1, 2]), 0, 1), Err(CommandError::InvalidPartitions(_))));
        assert!(matches!(place_partitions(&plain(&[1, 2]), 3, 0), Err(CommandError::InvalidReplicationFactor(_))));
        assert!(matches!(place_partitions(&plain(&[1, 2]), 3, 3), Err(CommandError::InvalidReplicationFactor(_))));
        assert!(matches!(place_partitions(&[], 1, 1), Err(CommandError::InvalidReplicationFactor(_))));
        // Duplicate broker entries count once.
        assert!(place_partitions(&plain(&[1, 1]), 1, 2).is_err());
    }
}
