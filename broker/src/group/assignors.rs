//! The server-side assignors of KIP-848 consumer groups: `uniform` (balanced and
//! sticky, Kafka's default) and `range` (per topic, contiguous ranges in member id
//! order). Pure functions of the members' subscriptions, the topics and the last
//! target assignment, so they are tested without a broker.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id.
pub(crate) type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors a member may name in `ServerAssignor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Uniform,
    Range,
}

impl Assignor {
    pub(crate) const ALL: [Assignor; 2] = [Assignor::Uniform, Assignor::Range];

    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    pub fn parse(name: &str) -> Option<Assignor> {
        Assignor::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The target assignment of every member in `subscriptions` (member id → topic
    /// ids it may be given), over `partitions` (topic id → partition count),
    /// starting from `previous` (kept where it stays balanced).
    pub(crate) fn assign(
        self,
        subscriptions: &BTreeMap<String, BTreeSet<Uuid>>,
        partitions: &BTreeMap<Uuid, i32>,
        previous: &BTreeMap<String, Assignment>,
    ) -> BTreeMap<String, Assignment> {
        match self {
            Assignor::Uniform => uniform(subscriptions, partitions, previous),
            Assignor::Range => range(subscriptions, partitions),
        }
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

/// Balanced and sticky: every member keeps what it had while it stays subscribed,
/// the rest goes to the least loaded member that may take it, then partitions move
/// to members with at least two fewer until no such move is left (members with
/// other subscriptions cannot always be equal). Each move narrows the spread, so
/// the moves end, and an assignment that needs none is given back unchanged.
fn uniform(
    subscriptions: &BTreeMap<String, BTreeSet<Uuid>>,
    partitions: &BTreeMap<Uuid, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions.keys().map(|m| (m.clone(), Assignment::new())).collect();
    if subscriptions.is_empty() {
        return out;
    }
    let eligible = |topic: &Uuid| -> Vec<&String> { subscriptions.iter().filter(|(_, t)| t.contains(topic)).map(|(m, _)| m).collect() };
    let all: Vec<(Uuid, i32)> = partitions
        .iter()
        .filter(|(t, _)| subscriptions.values().any(|s| s.contains(t)))
        .flat_map(|(t, n)| (0..*n).map(move |p| (*t, p)))
        .collect();
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (member, had) in previous {
        let Some(subscribed) = subscriptions.get(member) else { continue };
        let Some(mine) = out.get_mut(member) else { continue };
        for (topic, ps) in had {
            let n = partitions.get(topic).copied().unwrap_or(0);
            if !subscribed.contains(topic) {
                continue;
            }
            for p in ps.iter().filter(|p| **p < n) {
                if taken.insert((*topic, *p)) {
                    mine.entry(*topic).or_default().insert(*p);
                }
            }
        }
    }
    for (topic, p) in all.iter().filter(|tp| !taken.contains(tp)) {
        let members = eligible(topic);
        let least = members.into_iter().min_by_key(|m| (out.get(*m).map_or(0, count), (*m).clone()));
        if let Some(m) = least {
            out.entry(m.clone()).or_default().entry(*topic).or_default().insert(*p);
        }
    }
    // Moves from the most to the least loaded member that may take the partition:
    // each move narrows the spread by the least it can, so no member loses more
    // than its surplus (a new member takes its share and nobody else moves).
    let bound = all.len() * subscriptions.len() + 1;
    for _ in 0..bound {
        let loads: BTreeMap<&String, usize> = out.iter().map(|(m, a)| (m, count(a))).collect();
        let mut givers: Vec<(&String, usize)> = loads.iter().map(|(m, n)| (*m, *n)).collect();
        givers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut best: Option<(String, String, Uuid, i32)> = None;
        'search: for (from, from_load) in givers {
            let Some(a) = out.get(from) else { continue };
            // The least loaded member this one could give to, over all its partitions.
            let mut choice: Option<(usize, &String, Uuid, i32)> = None;
            for (topic, ps) in a {
                let Some(p) = ps.iter().next_back() else { continue };
                for to in eligible(topic) {
                    let to_load = loads[to];
                    if to_load + 1 < from_load && choice.is_none_or(|(l, t, ..)| (to_load, to) < (l, t)) {
                        choice = Some((to_load, to, *topic, *p));
                    }
                }
            }
            if let Some((_, to, topic, p)) = choice {
                best = Some((from.clone(), to.clone(), topic, p));
                break 'search;
            }
        }
        let Some((from, to, topic, p)) = best else { break };
        if let Some(ps) = out.get_mut(&from).and_then(|a| a.get_mut(&topic)) {
            ps.remove(&p);
            if ps.is_empty() {
                out.get_mut(&from).map(|a| a.remove(&topic));
            }
        }
        out.entry(to).or_default().entry(topic).or_default().insert(p);
    }
    out
}

/// Kafka's range: per topic, the subscribed members in member id order each take a
/// contiguous range, the first `partitions % members` one partition more.
fn range(subscriptions: &BTreeMap<String, BTreeSet<Uuid>>, partitions: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions.keys().map(|m| (m.clone(), Assignment::new())).collect();
    for (topic, n) in partitions {
        let members: Vec<&String> = subscriptions.iter().filter(|(_, t)| t.contains(topic)).map(|(m, _)| m).collect();
        if members.is_empty() || *n <= 0 {
            continue;
        }
        let (per, extra) = (*n as usize / members.len(), *n as usize % members.len());
        let mut next = 0i32;
        for (i, m) in members.into_iter().enumerate() {
            let take = per + usize::from(i < extra);
            if take == 0 {
                continue;
            }
            let ps: BTreeSet<i32> = (next..next + take as i32).collect();
            next += take as i32;
            out.entry(m.clone()).or_default().insert(*topic, ps);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn subs(members: &[(&str, &[u128])]) -> BTreeMap<String, BTreeSet<Uuid>> {
        members.iter().map(|(m, ts)| (m.to_string(), ts.iter().map(|n| t(*n)).collect())).collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let s = subs(&[("b", &[1]), ("a", &[1]), ("c", &[1])]);
        let parts = BTreeMap::from([(t(1), 7)]);
        let out = Assignor::Range.assign(&s, &parts, &BTreeMap::new());
        assert_eq!(out["a"][&t(1)], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"][&t(1)], BTreeSet::from([3, 4]));
        assert_eq!(out["c"][&t(1)], BTreeSet::from([5, 6]));
    }

    #[test]
    fn uniform_keeps_what_members_had_when_one_joins() {
        let parts = BTreeMap::from([(t(1), 6)]);
        let two = Assignor::Uniform.assign(&subs(&[("a", &[1]), ("b", &[1])]), &parts, &BTreeMap::new());
        let three = Assignor::Uniform.assign(&subs(&[("a", &[1]), ("b", &[1]), ("c", &[1])]), &parts, &two);
        for m in ["a", "b"] {
            assert!(three[m][&t(1)].is_subset(&two[m][&t(1)]), "{m} kept a subset of what it had");
            assert_eq!(count(&three[m]), 2);
        }
        assert_eq!(count(&three["c"]), 2);
    }

    #[test]
    fn a_joining_member_takes_its_share_and_nobody_else_moves() {
        let parts = BTreeMap::from([(t(1), 20)]);
        let mut members: Vec<(String, &[u128])> = Vec::new();
        let mut previous = BTreeMap::new();
        for i in 0..10 {
            members.push((format!("m{i:02}"), &[1]));
            let s: BTreeMap<String, BTreeSet<Uuid>> =
                members.iter().map(|(m, ts)| (m.clone(), ts.iter().map(|n| t(*n)).collect())).collect();
            let out = Assignor::Uniform.assign(&s, &parts, &previous);
            let moved: usize = previous
                .iter()
                .map(|(m, a): (&String, &Assignment)| a.values().flatten().filter(|p| !out[m].values().flatten().any(|q| q == *p)).count())
                .sum();
            let share = count(&out[&format!("m{i:02}")]);
            assert_eq!(moved, if i == 0 { 0 } else { share }, "join {i}: {moved} moved for a share of {share}");
            previous = out;
        }
    }

    proptest! {
        /// Every subscribed partition is assigned exactly once, only to a member
        /// subscribed to its topic; with one subscription for all, loads differ by
        /// at most one.
        #[test]
        fn every_partition_once_and_balanced(
            members in proptest::collection::btree_map("[a-f]{1,3}", proptest::collection::btree_set(1u128..4, 1..3), 1..6),
            counts in proptest::collection::vec(0i32..9, 3),
            assignor in prop_oneof![Just(Assignor::Uniform), Just(Assignor::Range)],
            homogeneous in any::<bool>(),
        ) {
            let s: BTreeMap<String, BTreeSet<Uuid>> = members
                .into_iter()
                .map(|(m, ts)| (m, if homogeneous { BTreeSet::from([t(1), t(2), t(3)]) } else { ts.into_iter().map(t).collect() }))
                .collect();
            let parts: BTreeMap<Uuid, i32> = counts.iter().enumerate().map(|(i, n)| (t(i as u128 + 1), *n)).collect();
            let first = assignor.assign(&s, &parts, &BTreeMap::new());
            let out = assignor.assign(&s, &parts, &first);
            let mut seen = BTreeSet::new();
            for (m, a) in &out {
                for (topic, ps) in a {
                    prop_assert!(s[m].contains(topic));
                    for p in ps {
                        prop_assert!(seen.insert((*topic, *p)), "assigned twice");
                    }
                }
            }
            let wanted: usize = parts.iter().filter(|(tp, _)| s.values().any(|x| x.contains(tp))).map(|(_, n)| *n as usize).sum();
            prop_assert_eq!(seen.len(), wanted);
            if homogeneous && assignor == Assignor::Uniform {
                let loads: Vec<usize> = out.values().map(count).collect();
                prop_assert!(loads.iter().max().unwrap_or(&0) - loads.iter().min().unwrap_or(&0) <= 1);
            }
            if assignor == Assignor::Uniform {
                prop_assert_eq!(&out, &first, "stable when nothing changed");
            }
        }
    }
}
