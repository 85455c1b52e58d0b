//! A share group's membership (KIP-932), as Kafka's group coordinator keeps it: members
//! join with epoch 0 under the member id they chose, heartbeat with the epoch they
//! were given, leave with -1. Every change of membership, subscriptions or subscribed
//! partition counts bumps the group epoch; the assignment is recomputed for it (the
//! assignment epoch) and each member takes it up, with a new member epoch, on its next
//! heartbeat. Share groups have no revocation: a partition may have several owners.

use std::collections::{BTreeMap, BTreeSet};

use karst_protocol::error_codes as ec;

/// Epoch -1: the member leaves.
pub(crate) const LEAVE_EPOCH: i32 = -1;

pub(crate) const FENCED_MEMBER_EPOCH: i16 = 110;
pub(crate) const GROUP_MAX_SIZE_REACHED: i16 = 81;

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) id: String,
    /// The epoch last given to the member.
    pub(crate) epoch: i32,
    pub(crate) rack: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) subscribed: BTreeSet<String>,
    /// Topic → partitions, as last given to the member.
    pub(crate) assignment: BTreeMap<String, Vec<i32>>,
    /// When the member expires without a heartbeat (ms since the epoch).
    deadline: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct ShareGroup {
    pub(crate) id: String,
    pub(crate) epoch: i32,
    pub(crate) assignment_epoch: i32,
    pub(crate) members: BTreeMap<String, Member>,
    /// The target assignment of the assignment epoch, by member.
    target: BTreeMap<String, BTreeMap<String, Vec<i32>>>,
    /// Partition counts of the subscribed topics the assignment was computed for.
    topics: BTreeMap<String, i32>,
}

/// A heartbeat as the handler decoded and checked it.
#[derive(Debug, Clone)]
pub(crate) struct Heartbeat {
    pub(crate) member_id: String,
    pub(crate) epoch: i32,
    pub(crate) rack: Option<String>,
    pub(crate) subscribed: Option<Vec<String>>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
}

/// The settings the coordinator works with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupSettings {
    pub(crate) session_timeout_ms: i64,
    pub(crate) max_size: usize,
}

/// A heartbeat's answer: the member's epoch, and its assignment when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Beat {
    pub(crate) epoch: i32,
    pub(crate) assignment: Option<BTreeMap<String, Vec<i32>>>,
}

impl ShareGroup {
    pub(crate) fn new(id: &str) -> ShareGroup {
        ShareGroup {
            id: id.to_string(),
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topics: BTreeMap::new(),
        }
    }

    /// Kafka's share group states: Empty without members, Stable with.
    pub(crate) fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        }
    }

    /// Handles a heartbeat (epoch ≥ 0); `partitions` gives a topic's partition count
    /// if it exists. Errors: UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH, GROUP_MAX_SIZE_REACHED.
    pub(crate) fn heartbeat(
        &mut self,
        hb: Heartbeat,
        partitions: &dyn Fn(&str) -> Option<i32>,
        now: i64,
        s: &GroupSettings,
    ) -> Result<Beat, (i16, String)> {
        let joining = hb.epoch == 0;
        match self.members.get(&hb.member_id) {
            None if !joining => {
                return Err((ec::UNKNOWN_MEMBER_ID, format!("Member {} is not a member of group {}.", hb.member_id, self.id)))
            }
            None if self.members.len() >= s.max_size => {
                return Err((
                    GROUP_MAX_SIZE_REACHED,
                    format!("The share group has reached its maximum capacity of {} members.", s.max_size),
                ))
            }
            Some(m) if !joining && m.epoch != hb.epoch => {
                return Err((
                    FENCED_MEMBER_EPOCH,
                    format!("The share group member has a {} member epoch.", if hb.epoch > m.epoch { "greater" } else { "smaller" }),
                ))
            }
            _ => {}
        }
        let deadline = now.saturating_add(s.session_timeout_ms);
        let member = self.members.entry(hb.member_id.clone()).or_insert_with(|| Member {
            id: hb.member_id.clone(),
            epoch: 0,
            rack: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed: BTreeSet::new(),
            assignment: BTreeMap::new(),
            deadline,
        });
        member.deadline = deadline;
        member.client_id = hb.client_id;
        member.client_host = hb.client_host;
        if hb.rack.is_some() {
            member.rack = hb.rack;
        }
        let mut bump = false;
        if let Some(topics) = hb.subscribed {
            let topics: BTreeSet<String> = topics.into_iter().collect();
            if topics != member.subscribed {
                member.subscribed = topics;
                bump = true;
            }
        }
        let counts = self.subscribed_counts(partitions);
        if counts != self.topics {
            bump = true;
        }
        if bump {
            self.epoch += 1;
        }
        if self.assignment_epoch < self.epoch {
            self.topics = counts;
            self.target = assign(&self.members, &self.topics);
            self.assignment_epoch = self.epoch;
        }
        let target = self.target.get(&hb.member_id).cloned().unwrap_or_default();
        let Some(member) = self.members.get_mut(&hb.member_id) else {
            return Err((ec::UNKNOWN_MEMBER_ID, String::new()));
        };
        let changed = joining || member.epoch != self.assignment_epoch || member.assignment != target;
        member.epoch = self.assignment_epoch;
        member.assignment = target;
        Ok(Beat { epoch: member.epoch, assignment: changed.then(|| member.assignment.clone()) })
    }

    /// The member leaves (epoch -1): UNKNOWN_MEMBER_ID if it is not one.
    pub(crate) fn leave(&mut self, member_id: &str) -> Result<(), (i16, String)> {
        if self.members.remove(member_id).is_none() {
            return Err((ec::UNKNOWN_MEMBER_ID, format!("Member {member_id} is not a member of group {}.", self.id)));
        }
        self.epoch += 1;
        Ok(())
    }

    /// Removes the members whose session expired; returns their ids.
    pub(crate) fn expire(&mut self, now: i64) -> Vec<String> {
        let gone: Vec<String> = self.members.values().filter(|m| m.deadline <= now).map(|m| m.id.clone()).collect();
        for id in &gone {
            self.members.remove(id);
        }
        if !gone.is_empty() {
            self.epoch += 1;
        }
        gone
    }

    fn subscribed_counts(&self, partitions: &dyn Fn(&str) -> Option<i32>) -> BTreeMap<String, i32> {
        let topics: BTreeSet<&String> = self.members.values().flat_map(|m| &m.subscribed).collect();
        topics.into_iter().filter_map(|t| partitions(t).map(|n| (t.clone(), n))).collect()
    }
}

/// Kafka's `simple` share assignor, per topic: its partitions are spread over the
/// members subscribed to it; with more members than partitions, each member gets one
/// partition and a partition several members.
pub(crate) fn assign(members: &BTreeMap<String, Member>, topics: &BTreeMap<String, i32>) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for (topic, &count) in topics {
        let subscribers: Vec<&String> = members.values().filter(|m| m.subscribed.contains(topic)).map(|m| &m.id).collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let n = subscribers.len();
        let count_usize = usize::try_from(count).unwrap_or(0);
        if n <= count_usize {
            for p in 0..count {
                let m = subscribers[usize::try_from(p).unwrap_or(0) % n];
                out.entry(m.clone()).or_default().entry(topic.clone()).or_default().push(p);
            }
        } else {
            for (i, m) in subscribers.iter().enumerate() {
                let p = i32::try_from(i % count_usize).unwrap_or(0);
                out.entry((*m).clone()).or_default().entry(topic.clone()).or_default().push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: GroupSettings = GroupSettings { session_timeout_ms: 1000, max_size: 3 };

    fn hb(member: &str, epoch: i32, topics: Option<&[&str]>) -> Heartbeat {
        Heartbeat {
            member_id: member.into(),
            epoch,
            rack: None,
            subscribed: topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn two(t: &str) -> Option<i32> {
        (t == "t").then_some(2)
    }

    #[test]
    fn members_share_partitions_when_there_are_more_members_than_partitions() {
        let mut g = ShareGroup::new("g");
        let a = g.heartbeat(hb("a", 0, Some(&["t"])), &two, 0, &S).expect("a joins");
        assert_eq!(a.epoch, 1);
        assert_eq!(a.assignment.expect("assignment")["t"], vec![0, 1]);
        let b = g.heartbeat(hb("b", 0, Some(&["t"])), &two, 0, &S).expect("b joins");
        assert_eq!(b.epoch, 2);
        assert_eq!(b.assignment.expect("assignment")["t"], vec![1]);
        // a still has epoch 1: it takes up epoch 2 and its new assignment.
        let a = g.heartbeat(hb("a", 1, None), &two, 0, &S).expect("a beats");
        assert_eq!((a.epoch, a.assignment.expect("new")["t"].clone()), (2, vec![0]));
        assert_eq!(g.heartbeat(hb("a", 2, None), &two, 0, &S).expect("steady").assignment, None, "unchanged: not sent");
        let c = g.heartbeat(hb("c", 0, Some(&["t"])), &two, 0, &S).expect("c joins");
        assert_eq!(c.assignment.expect("assignment")["t"], vec![0], "a partition with two owners");
        assert_eq!(g.heartbeat(hb("d", 0, Some(&["t"])), &two, 0, &S).map_err(|e| e.0), Err(GROUP_MAX_SIZE_REACHED));
    }

    #[test]
    fn wrong_epochs_and_unknown_members_are_refused() {
        let mut g = ShareGroup::new("g");
        g.heartbeat(hb("a", 0, Some(&["t"])), &two, 0, &S).expect("join");
        assert_eq!(g.heartbeat(hb("a", 5, None), &two, 0, &S).map_err(|e| e.0), Err(FENCED_MEMBER_EPOCH));
        assert_eq!(g.heartbeat(hb("x", 1, None), &two, 0, &S).map_err(|e| e.0), Err(ec::UNKNOWN_MEMBER_ID));
        assert_eq!(g.leave("x").map_err(|e| e.0), Err(ec::UNKNOWN_MEMBER_ID));
        g.leave("a").expect("leave");
        assert_eq!(g.state(), "Empty");
    }

    #[test]
    fn silent_members_expire_and_bump_the_epoch() {
        let mut g = ShareGroup::new("g");
        g.heartbeat(hb("a", 0, Some(&["t"])), &two, 0, &S).expect("join");
        g.heartbeat(hb("b", 0, Some(&["t"])), &two, 500, &S).expect("join");
        assert_eq!(g.expire(1000), vec!["a".to_string()]);
        let b = g.heartbeat(hb("b", 2, None), &two, 1100, &S).expect("b beats");
        assert_eq!((b.epoch, b.assignment.expect("all")["t"].clone()), (3, vec![0, 1]));
    }

    #[test]
    fn partition_count_changes_reassign() {
        let mut g = ShareGroup::new("g");
        g.heartbeat(hb("a", 0, Some(&["t"])), &two, 0, &S).expect("join");
        let three = |t: &str| (t == "t").then_some(3);
        let a = g.heartbeat(hb("a", 1, None), &three, 0, &S).expect("beat");
        assert_eq!((a.epoch, a.assignment.expect("more")["t"].clone()), (2, vec![0, 1, 2]));
    }
}
