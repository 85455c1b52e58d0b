//! One consumer group's membership state machine (Kafka's classic protocol):
//! Empty → PreparingRebalance → CompletingRebalance → Stable, and Dead.
//!
//! Synchronous and driven by explicit times, so it is tested without a runtime.
//! Delayed JoinGroup and SyncGroup answers are parked as oneshot senders on the
//! members and fired when the group moves on.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio::sync::oneshot;

use karst_protocol::error_codes as ec;

use super::records::{GroupValue, MemberValue};

/// Kafka's group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup gets back (encoded by the handler per version).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JoinResult {
    pub(crate) error: i16,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// Only the leader gets the members and their metadata for the chosen protocol.
    pub(crate) members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    fn error(error: i16, member_id: &str) -> JoinResult {
        JoinResult { error, generation: -1, member_id: member_id.to_string(), ..Default::default() }
    }
}

/// What a SyncGroup gets back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SyncResult {
    pub(crate) error: i16,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) assignment: Bytes,
}

impl SyncResult {
    fn error(error: i16) -> SyncResult {
        SyncResult { error, ..Default::default() }
    }
}

/// An answer now, or one to wait for.
#[derive(Debug)]
pub(crate) enum Outcome<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// A JoinGroup as the state machine sees it.
#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub(crate) require_known_member_id: bool,
}

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    last_heartbeat_ms: i64,
    /// Order of arrival; the earliest member leads when there is no leader.
    joined_seq: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
    fn expired(&self, now: i64) -> bool {
        // A member parked in JoinGroup is alive: it is waiting on us.
        self.join_waiter.is_none() && now - self.last_heartbeat_ms > self.session_timeout_ms as i64
    }
}

/// Knobs from the broker config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// `group.initial.rebalance.delay.ms`
    pub(crate) initial_rebalance_delay_ms: i64,
    /// `group.max.size`: members a group may have.
    pub(crate) max_size: usize,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) state: GroupState,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// `group.instance.id` → member id, for static members.
    static_members: HashMap<String, String>,
    /// KIP-394 member ids handed out and not yet used, with their expiry.
    pending: HashMap<String, i64>,
    rebalance_deadline_ms: i64,
    /// While an empty group forms, completion waits for more joiners until this.
    initial_delay_until_ms: Option<i64>,
    pub(crate) state_timestamp_ms: i64,
    next_seq: u64,
    member_counter: u64,
    /// The group became Empty at a new generation since its record was last
    /// written: the coordinator writes it (Kafka stores a group on every
    /// completed join, the empty one too), so a new coordinator neither brings
    /// back members that left nor a generation gone by.
    pub(crate) record_due: bool,
}

/// Kafka's member id shape: client id, then a unique suffix.
fn new_member_id(client_id: &str, _counter: u64) -> String {
    let prefix: String = if client_id.is_empty() { "member".into() } else { client_id.chars().take(100).collect() };
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Group {
    pub(crate) fn new(id: &str, now: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: None,
            state_timestamp_ms: now,
            next_seq: 0,
            member_counter: 0,
            record_due: false,
        }
    }

    fn transition(&mut self, to: GroupState, now: i64) {
        self.state = to;
        self.state_timestamp_ms = now;
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // Some protocol must be common to every member and the newcomer.
        protocols.iter().any(|(name, _)| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)))
    }

    /// Whether a new member would exceed `group.max.size` (Kafka refuses it
    /// with GROUP_MAX_SIZE_REACHED; members already in stay).
    fn is_full(&self, timing: Timing) -> bool {
        self.members.len() >= timing.max_size
    }

    /// Handles JoinGroup.
    pub(crate) fn join(&mut self, req: JoinRequest, now: i64, timing: Timing) -> Outcome<JoinResult> {
        if self.state == GroupState::Dead {
            return Outcome::Now(JoinResult::error(ec::COORDINATOR_NOT_AVAILABLE, &req.member_id));
        }
        if !(self.supports(&req.protocol_type, &req.protocols)) {
            return Outcome::Now(JoinResult::error(ec::INCONSISTENT_GROUP_PROTOCOL, &req.member_id));
        }
        if req.member_id.is_empty() {
            if let Some(instance) = req.instance_id.clone() {
                return self.join_static_unknown(instance, req, now, timing);
            }
            if self.is_full(timing) {
                return Outcome::Now(JoinResult::error(ec::GROUP_MAX_SIZE_REACHED, &req.member_id));
            }
            self.member_counter += 1;
            let id = new_member_id(&req.client_id, self.member_counter);
            if req.require_known_member_id {
                self.pending.insert(id.clone(), now + req.session_timeout_ms as i64);
                return Outcome::Now(JoinResult::error(ec::MEMBER_ID_REQUIRED, &id));
            }
            return self.add_and_rebalance(id, req, now, timing);
        }
        if self.pending.remove(&req.member_id).is_some() {
            if self.is_full(timing) {
                return Outcome::Now(JoinResult::error(ec::GROUP_MAX_SIZE_REACHED, &req.member_id));
            }
            let id = req.member_id.clone();
            return self.add_and_rebalance(id, req, now, timing);
        }
        if let Some(instance) = &req.instance_id {
            match self.static_members.get(instance) {
                Some(id) if *id != req.member_id => return Outcome::Now(JoinResult::error(ec::FENCED_INSTANCE_ID, &req.member_id)),
                _ => {}
            }
        }
        let Some(member) = self.members.get_mut(&req.member_id) else {
            return Outcome::Now(JoinResult::error(ec::UNKNOWN_MEMBER_ID, &req.member_id));
        };
        member.last_heartbeat_ms = now;
        let unchanged = member.protocols == req.protocols;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match self.state {
            GroupState::CompletingRebalance | GroupState::Stable if unchanged && !(self.state == GroupState::Stable && is_leader) => {
                // A retry or a follower re-sending its unchanged metadata: answer
                // with the current generation instead of disturbing the group.
                Outcome::Now(self.join_result_for(&req.member_id, false))
            }
            _ => {
                let id = req.member_id.clone();
                self.add_and_rebalance(id, req, now, timing)
            }
        }
    }

    fn join_static_unknown(&mut self, instance: String, req: JoinRequest, now: i64, timing: Timing) -> Outcome<JoinResult> {
        self.member_counter += 1;
        let new_id = new_member_id(&req.client_id, self.member_counter);
        let Some(old_id) = self.static_members.get(&instance).cloned() else {
            if self.is_full(timing) {
                return Outcome::Now(JoinResult::error(ec::GROUP_MAX_SIZE_REACHED, &req.member_id));
            }
            return self.add_and_rebalance(new_id, req, now, timing);
        };
        // The same instance is back (a restart within the session timeout): it
        // takes over the old member's place and assignment under a new id.
        let Some(mut m) = self.members.remove(&old_id) else {
            self.static_members.remove(&instance);
            return self.add_and_rebalance(new_id, req, now, timing);
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(ec::FENCED_INSTANCE_ID, &old_id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult::error(ec::FENCED_INSTANCE_ID));
        }
        let unchanged = m.protocols == req.protocols;
        m.id = new_id.clone();
        m.last_heartbeat_ms = now;
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.session_timeout_ms = req.session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        self.members.insert(new_id.clone(), m);
        self.static_members.insert(instance, new_id.clone());
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        if self.state == GroupState::Stable && unchanged {
            // No rebalance: the others keep their partitions, this one gets its old ones.
            let leader = self.leader.as_deref() == Some(new_id.as_str());
            return Outcome::Now(self.join_result_for(&new_id, leader));
        }
        self.add_and_rebalance(new_id, req, now, timing)
    }

    fn add_and_rebalance(&mut self, id: String, req: JoinRequest, now: i64, timing: Timing) -> Outcome<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let member = self.members.entry(id.clone()).or_insert_with(|| Member {
            id: id.clone(),
            instance_id: None,
            client_id: String::new(),
            client_host: String::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            last_heartbeat_ms: now,
            joined_seq: seq,
        });
        member.instance_id = req.instance_id.clone();
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.protocols = req.protocols;
        member.last_heartbeat_ms = now;
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(JoinResult::error(ec::UNKNOWN_MEMBER_ID, &id));
        }
        if let Some(instance) = req.instance_id {
            self.static_members.insert(instance, id);
        }
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some(until) = self.initial_delay_until_ms {
                    // Another joiner while an empty group forms: wait a little longer,
                    // but never beyond the rebalance timeout.
                    self.initial_delay_until_ms =
                        Some((now + timing.initial_rebalance_delay_ms).min(self.rebalance_deadline_ms).max(until));
                }
            }
            _ => self.prepare_rebalance(now, timing),
        }
        self.maybe_complete_join(now);
        Outcome::Wait(rx)
    }

    fn prepare_rebalance(&mut self, now: i64, timing: Timing) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult::error(ec::REBALANCE_IN_PROGRESS));
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        let timeout = self.members.values().map(|m| m.rebalance_timeout_ms as i64).max().unwrap_or(0);
        self.rebalance_deadline_ms = now + timeout;
        self.initial_delay_until_ms = if was_empty && timing.initial_rebalance_delay_ms > 0 {
            Some((now + timing.initial_rebalance_delay_ms).min(self.rebalance_deadline_ms))
        } else {
            None
        };
        self.transition(GroupState::PreparingRebalance, now);
    }

    /// Starts a rebalance now: a group that was a consumer group hands the
    /// assignment back to its members' own assignor (KIP-848's downgrade).
    pub(crate) fn rebalance_now(&mut self, now: i64, timing: Timing) {
        self.prepare_rebalance(now, timing);
    }

    /// Completes the join phase once every member has rejoined (or the
    /// rebalance timeout removed the ones that did not).
    fn maybe_complete_join(&mut self, now: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.initial_delay_until_ms.is_some_and(|t| now < t) {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty();
        if !all_joined && now < self.rebalance_deadline_ms {
            return;
        }
        let laggards: Vec<String> = self.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.id.clone()).collect();
        for id in laggards {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.initial_delay_until_ms = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.transition(GroupState::Empty, now);
            self.record_due = true;
            return;
        }
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.values().min_by_key(|m| m.joined_seq).map(|m| m.id.clone());
        }
        self.transition(GroupState::CompletingRebalance, now);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let result = self.join_result_for(&id, is_leader);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heartbeat_ms = now;
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(result);
                }
            }
        }
    }

    fn join_result_for(&self, member_id: &str, with_members: bool) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members {
            let mut ms: Vec<&Member> = self.members.values().collect();
            ms.sort_by_key(|m| m.joined_seq);
            ms.iter().map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata_for(&protocol))).collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: ec::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Each member votes for its most preferred protocol among those all support.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let common: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| self.members.values().all(|m| m.protocols.iter().any(|(x, _)| x == *n)))
            .collect();
        let mut votes: Vec<(&String, usize)> = common.iter().map(|n| (*n, 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| common.contains(&n)) {
                if let Some(v) = votes.iter_mut().find(|(n, _)| *n == name) {
                    v.1 += 1;
                }
            }
        }
        // Most votes wins; ties go to the first member's preference order.
        let best = votes.iter().map(|(_, c)| *c).max()?;
        votes.into_iter().find(|(_, c)| *c == best).map(|(n, _)| n.clone())
    }

    fn remove_member(&mut self, id: &str) -> bool {
        let Some(mut m) = self.members.remove(id) else {
            return self.pending.remove(id).is_some();
        };
        if let Some(instance) = &m.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(id) {
                self.static_members.remove(instance);
            }
        }
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResult::error(ec::UNKNOWN_MEMBER_ID, id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResult::error(ec::UNKNOWN_MEMBER_ID));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        true
    }

    /// After members left or expired: rebalance the rest, or finish a join.
    fn after_departure(&mut self, now: i64, timing: Timing) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation += 1;
                    self.protocol = None;
                    self.transition(GroupState::Empty, now);
                    self.record_due = true;
                } else {
                    self.prepare_rebalance(now, timing);
                }
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn check_member(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            if let Some(id) = self.static_members.get(instance) {
                if id != member_id {
                    return Err(ec::FENCED_INSTANCE_ID);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ec::UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return Err(ec::ILLEGAL_GENERATION);
        }
        Ok(())
    }

    /// Handles SyncGroup. Returns the outcome and whether the group's assignment
    /// just became final (so the caller persists the group).
    pub(crate) fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> (Outcome<SyncResult>, bool) {
        if self.state == GroupState::Dead {
            return (Outcome::Now(SyncResult::error(ec::COORDINATOR_NOT_AVAILABLE)), false);
        }
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return (Outcome::Now(SyncResult::error(e)), false);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => (Outcome::Now(SyncResult::error(ec::UNKNOWN_MEMBER_ID)), false),
            GroupState::PreparingRebalance => (Outcome::Now(SyncResult::error(ec::REBALANCE_IN_PROGRESS)), false),
            GroupState::Stable => (Outcome::Now(self.sync_result(member_id)), false),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.last_heartbeat_ms = now;
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncResult::error(ec::REBALANCE_IN_PROGRESS));
                    }
                }
                if self.leader.as_deref() != Some(member_id) {
                    return (Outcome::Wait(rx), false);
                }
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                }
                self.transition(GroupState::Stable, now);
                let ids: Vec<String> = self.members.keys().cloned().collect();
                for id in ids {
                    let r = self.sync_result(&id);
                    if let Some(w) = self.members.get_mut(&id).and_then(|m| m.sync_waiter.take()) {
                        let _ = w.send(r);
                    }
                }
                (Outcome::Wait(rx), true)
            }
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: ec::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    pub(crate) fn heartbeat(&mut self, member_id: &str, instance_id: Option<&str>, generation: i32, now: i64) -> i16 {
        match self.state {
            GroupState::Dead => return ec::COORDINATOR_NOT_AVAILABLE,
            GroupState::Empty => return ec::UNKNOWN_MEMBER_ID,
            _ => {}
        }
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return e;
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now;
        }
        match self.state {
            GroupState::PreparingRebalance => ec::REBALANCE_IN_PROGRESS,
            _ => ec::NONE,
        }
    }

    /// LeaveGroup for one member identity.
    pub(crate) fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now: i64, timing: Timing) -> i16 {
        if self.state == GroupState::Dead {
            return ec::COORDINATOR_NOT_AVAILABLE;
        }
        let id = match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => return ec::UNKNOWN_MEMBER_ID,
                Some(id) if !member_id.is_empty() && id != member_id => return ec::FENCED_INSTANCE_ID,
                Some(id) => id.clone(),
            },
            None => member_id.to_string(),
        };
        if !self.remove_member(&id) {
            return ec::UNKNOWN_MEMBER_ID;
        }
        self.after_departure(now, timing);
        ec::NONE
    }

    /// Expires silent members and overdue rebalances. Returns whether anything changed.
    pub(crate) fn tick(&mut self, now: i64, timing: Timing) -> bool {
        let before = (self.state, self.generation, self.members.len());
        let expired: Vec<String> = self.members.values().filter(|m| m.expired(now)).map(|m| m.id.clone()).collect();
        self.pending.retain(|_, until| *until > now);
        if !expired.is_empty() {
            for id in &expired {
                self.remove_member(id);
            }
            self.after_departure(now, timing);
        }
        self.maybe_complete_join(now);
        before != (self.state, self.generation, self.members.len())
    }

    /// Whether a standalone or member commit may write offsets now.
    pub(crate) fn check_commit(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> i16 {
        if self.state == GroupState::Dead {
            return ec::COORDINATOR_NOT_AVAILABLE;
        }
        // As Kafka's ClassicGroup.validateOffsetCommit: a commit outside any
        // membership (an admin client's, or a consumer using assign()) is taken while
        // the group is empty, and refused as from an unknown member while it is not.
        if generation < 0 && self.state == GroupState::Empty {
            return ec::NONE;
        }
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return ec::UNKNOWN_MEMBER_ID;
        }
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return e;
        }
        if self.state == GroupState::CompletingRebalance {
            return ec::REBALANCE_IN_PROGRESS;
        }
        ec::NONE
    }

    /// Restores the group from its record, as Kafka loads a group: with members
    /// it is Stable, each member's session counted from `now` (so members still
    /// there go on heartbeating and committing, and the others expire); without,
    /// Empty at its generation.
    pub(crate) fn restore(&mut self, v: GroupValue, now: i64) {
        self.generation = v.generation;
        self.protocol_type = Some(v.protocol_type);
        self.protocol = v.protocol;
        self.members.clear();
        self.static_members.clear();
        self.pending.clear();
        self.initial_delay_until_ms = None;
        self.record_due = false;
        let Some(protocol) = self.protocol.clone().filter(|_| !v.members.is_empty()) else {
            self.leader = None;
            self.transition(GroupState::Empty, now);
            return;
        };
        for m in v.members {
            if let Some(instance) = &m.instance_id {
                self.static_members.insert(instance.clone(), m.member_id.clone());
            }
            let member = Member {
                id: m.member_id.clone(),
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                join_waiter: None,
                sync_waiter: None,
                last_heartbeat_ms: now,
                joined_seq: self.next_seq,
            };
            self.next_seq += 1;
            self.members.insert(m.member_id, member);
        }
        self.leader = v.leader.filter(|l| self.members.contains_key(l));
        self.transition(GroupState::Stable, now);
    }

    /// The group as its record keeps it.
    pub(crate) fn value(&self) -> GroupValue {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing { initial_rebalance_delay_ms: 0, max_size: 1000 };

    fn req(member: &str, instance: Option<&str>) -> JoinRequest {
        JoinRequest {
            member_id: member.into(),
            instance_id: instance.map(Into::into),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"r")), ("roundrobin".into(), Bytes::from_static(b"rr"))],
            require_known_member_id: true,
        }
    }

    fn now_value<T: std::fmt::Debug>(o: Outcome<T>) -> T {
        match o {
            Outcome::Now(v) => v,
            Outcome::Wait(mut rx) => rx.try_recv().expect("answered already"),
        }
    }

    /// Joins a new member through the KIP-394 round trip; returns its id and receiver.
    fn join_new(g: &mut Group, now: i64) -> (String, oneshot::Receiver<JoinResult>) {
        let first = now_value(g.join(req("", None), now, T));
        assert_eq!(first.error, ec::MEMBER_ID_REQUIRED);
        match g.join(req(&first.member_id, None), now, T) {
            Outcome::Wait(rx) => (first.member_id, rx),
            Outcome::Now(r) => panic!("expected to wait: {r:?}"),
        }
    }

    #[test]
    fn a_full_group_refuses_new_members_with_group_max_size_reached() {
        let t = Timing { initial_rebalance_delay_ms: 0, max_size: 2 };
        let mut g = Group::new("g", 0);
        let mut ids = Vec::new();
        for _ in 0..2 {
            let first = now_value(g.join(req("", None), 0, t));
            assert_eq!(first.error, ec::MEMBER_ID_REQUIRED);
            let _ = g.join(req(&first.member_id, None), 0, t);
            ids.push(first.member_id);
        }
        assert_eq!(g.members.len(), 2);
        assert_eq!(now_value(g.join(req("", None), 0, t)).error, ec::GROUP_MAX_SIZE_REACHED, "a new member");
        assert_eq!(now_value(g.join(req("", Some("static-1")), 0, t)).error, ec::GROUP_MAX_SIZE_REACHED, "a new static member");
        // A member id handed out before the group filled up is refused too.
        let mut h = Group::new("h", 0);
        let early = now_value(h.join(req("", None), 0, t)).member_id;
        for _ in 0..2 {
            let first = now_value(h.join(req("", None), 0, t));
            let _ = h.join(req(&first.member_id, None), 0, t);
        }
        assert_eq!(now_value(h.join(req(&early, None), 0, t)).error, ec::GROUP_MAX_SIZE_REACHED);
        // Members already in may rejoin.
        assert!(matches!(g.join(req(&ids[0], None), 0, t), Outcome::Wait(_) | Outcome::Now(JoinResult { error: 0, .. })));
        assert_eq!(g.members.len(), 2);
    }

    #[test]
    fn single_member_forms_a_stable_group() {
        let mut g = Group::new("g", 0);
        let (id, mut rx) = join_new(&mut g, 0);
        let r = rx.try_recv().expect("join completes at once: everyone joined");
        assert_eq!((r.error, r.generation, r.leader.as_str()), (0, 1, id.as_str()));
        assert_eq!(r.protocol.as_deref(), Some("range"));
        assert_eq!(r.members.len(), 1);
        let (o, persist) = g.sync(&id, None, 1, vec![(id.clone(), Bytes::from_static(b"a"))], 1);
        assert!(persist);
        assert_eq!(now_value(o).assignment, Bytes::from_static(b"a"));
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.heartbeat(&id, None, 1, 2), 0);
        assert_eq!(g.heartbeat(&id, None, 0, 2), ec::ILLEGAL_GENERATION);
        assert_eq!(g.heartbeat("nobody", None, 1, 2), ec::UNKNOWN_MEMBER_ID);
    }

    /// A new coordinator (failover, restart) carries on with the members of the
    /// group's last record, as Kafka's: they heartbeat and commit at their
    /// generation without rejoining, and one that is gone expires.
    #[test]
    fn a_restored_group_keeps_its_members_and_a_vanished_one_expires() {
        let mut g = Group::new("g", 0);
        let (a, mut ra) = join_new(&mut g, 0);
        ra.try_recv().expect("gen 1");
        now_value(g.sync(&a, None, 1, vec![(a.clone(), Bytes::from_static(b"all"))], 0).0);
        let (b, mut rb) = join_new(&mut g, 1);
        let Outcome::Wait(mut ra) = g.join(req(&a, None), 2, T) else { panic!("a rejoins") };
        ra.try_recv().expect("a");
        rb.try_recv().expect("b");
        let (ob, _) = g.sync(&b, None, 2, vec![], 3);
        let (_, persist) = g.sync(&a, None, 2, vec![(a.clone(), Bytes::from_static(b"p0")), (b.clone(), Bytes::from_static(b"p1"))], 3);
        assert!(persist);
        drop(ob);
        let record = g.value();
        assert_eq!(record.members.len(), 2);
        assert_eq!(record.members.iter().find(|m| m.member_id == b).map(|m| m.subscription.clone()), Some(Bytes::from_static(b"r")));

        let mut restored = Group::new("g", 100);
        restored.restore(record, 100);
        assert_eq!((restored.state, restored.generation, restored.leader.as_deref()), (GroupState::Stable, 2, Some(a.as_str())));
        assert_eq!(restored.heartbeat(&a, None, 2, 101), ec::NONE);
        assert_eq!(restored.check_commit(&a, None, 2), ec::NONE);
        assert_eq!(restored.check_commit(&b, None, 1), ec::ILLEGAL_GENERATION);
        assert_eq!(now_value(restored.sync(&b, None, 2, vec![], 102).0).assignment, Bytes::from_static(b"p1"));
        // b never heartbeats again: its session (10 s) runs out, a is asked to rejoin.
        assert_eq!(restored.heartbeat(&a, None, 2, 9_000), ec::NONE);
        restored.tick(10_200, T);
        assert!(!restored.members.contains_key(&b));
        assert_eq!(restored.heartbeat(&a, None, 2, 10_300), ec::REBALANCE_IN_PROGRESS);

        // An empty group's record brings back no one.
        let mut empty = Group::new("g", 0);
        empty.restore(GroupValue { members: Vec::new(), ..g.value() }, 5);
        assert_eq!((empty.state, empty.generation, empty.members.len()), (GroupState::Empty, 2, 0));
    }

    #[test]
    fn second_member_triggers_rebalance_and_both_get_assignments() {
        let mut g = Group::new("g", 0);
        let (a, mut ra) = join_new(&mut g, 0);
        ra.try_recv().expect("gen 1");
        let (o, _) = g.sync(&a, None, 1, vec![(a.clone(), Bytes::from_static(b"all"))], 0);
        now_value(o);
        let (b, mut rb) = join_new(&mut g, 1);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(g.heartbeat(&a, None, 1, 1), ec::REBALANCE_IN_PROGRESS);
        assert!(rb.try_recv().is_err(), "waits for a to rejoin");
        let mut ra = match g.join(req(&a, None), 2, T) {
            Outcome::Wait(rx) => rx,
            Outcome::Now(r) => panic!("{r:?}"),
        };
        let (ja, jb) = (ra.try_recv().expect("a"), rb.try_recv().expect("b"));
        assert_eq!((ja.generation, jb.generation), (2, 2));
        assert_eq!(ja.leader, a, "the old leader keeps leading");
        assert_eq!((ja.members.len(), jb.members.len()), (2, 0));
        let (ob, _) = g.sync(&b, None, 2, vec![], 3);
        let Outcome::Wait(mut sb) = ob else { panic!("follower waits for the leader") };
        let (oa, persist) = g.sync(&a, None, 2, vec![(a.clone(), Bytes::from_static(b"p0")), (b.clone(), Bytes::from_static(b"p1"))], 3);
        assert!(persist);
        assert_eq!(now_value(oa).assignment, Bytes::from_static(b"p0"));
        assert_eq!(sb.try_recv().expect("b answered").assignment, Bytes::from_static(b"p1"));
    }

    #[test]
    fn silent_member_expires_and_the_rest_rebalance() {
        let mut g = Group::new("g", 0);
        let (a, mut ra) = join_new(&mut g, 0);
        ra.try_recv().expect("gen 1");
        let (b, mut rb) = join_new(&mut g, 0);
        let mut ra = match g.join(req(&a, None), 0, T) {
            Outcome::Wait(rx) => rx,
            Outcome::Now(r) => panic!("{r:?}"),
        };
        ra.try_recv().expect("a gen 2");
        rb.try_recv().expect("b gen 2");
        let _ = g.sync(&a, None, 2, vec![], 0);
        assert_eq!(g.state, GroupState::Stable);
        // b goes quiet; a keeps heartbeating.
        assert_eq!(g.heartbeat(&a, None, 2, 9_000), 0);
        assert!(g.tick(10_001, T));
        assert!(!g.members.contains_key(&b));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(g.heartbeat(&a, None, 2, 10_002), ec::REBALANCE_IN_PROGRESS);
        let r = now_value(g.join(req(&a, None), 10_003, T));
        assert_eq!((r.generation, r.members.len()), (3, 1));
    }

    #[test]
    fn rebalance_timeout_drops_members_that_never_rejoin() {
        let mut g = Group::new("g", 0);
        let (a, mut ra) = join_new(&mut g, 0);
        ra.try_recv().expect("gen 1");
        let _ = g.sync(&a, None, 1, vec![], 0);
        let (_b, mut rb) = join_new(&mut g, 5);
        // a keeps heartbeating (getting REBALANCE_IN_PROGRESS) but never rejoins.
        for t in [1_000, 9_000, 17_000, 25_000] {
            g.heartbeat(&a, None, 1, t);
            g.tick(t, T);
        }
        assert!(rb.try_recv().is_err());
        g.tick(30_006, T);
        let r = rb.try_recv().expect("completed at the rebalance timeout");
        assert_eq!(r.members.len(), 1);
        assert!(!g.members.contains_key(&a));
    }

    #[test]
    fn static_member_rejoins_without_rebalance_and_old_id_is_fenced() {
        let mut g = Group::new("g", 0);
        let r1 = now_value(g.join(req("", Some("i1")), 0, T));
        let (o, _) = g.sync(&r1.member_id, Some("i1"), 1, vec![(r1.member_id.clone(), Bytes::from_static(b"x"))], 0);
        now_value(o);
        // Restart: same instance id, no member id.
        let r2 = now_value(g.join(req("", Some("i1")), 100, T));
        assert_eq!(r2.error, 0);
        assert_eq!(r2.generation, 1, "no rebalance");
        assert_ne!(r2.member_id, r1.member_id);
        assert_eq!(g.state, GroupState::Stable);
        let (o, _) = g.sync(&r2.member_id, Some("i1"), 1, vec![], 101);
        assert_eq!(now_value(o).assignment, Bytes::from_static(b"x"));
        assert_eq!(g.heartbeat(&r1.member_id, Some("i1"), 1, 102), ec::FENCED_INSTANCE_ID);
    }

    #[test]
    fn inconsistent_protocols_and_unknown_members_are_refused() {
        let mut g = Group::new("g", 0);
        let (a, _ra) = join_new(&mut g, 0);
        let mut other = req("", None);
        other.protocols = vec![("sticky".into(), Bytes::new())];
        assert_eq!(now_value(g.join(other, 1, T)).error, ec::INCONSISTENT_GROUP_PROTOCOL);
        assert_eq!(now_value(g.join(req("ghost", None), 1, T)).error, ec::UNKNOWN_MEMBER_ID);
        assert_eq!(g.leave(&a, None, 2, T), 0);
        assert_eq!(g.state, GroupState::Empty);
        assert_eq!(g.leave(&a, None, 2, T), ec::UNKNOWN_MEMBER_ID);
    }

    #[test]
    fn commits_are_fenced_by_generation_and_membership() {
        let mut g = Group::new("g", 0);
        assert_eq!(g.check_commit("", None, -1), 0, "standalone commit to an empty group");
        let (a, mut ra) = join_new(&mut g, 0);
        ra.try_recv().expect("gen 1");
        assert_eq!(g.check_commit(&a, None, 1), ec::REBALANCE_IN_PROGRESS);
        let _ = g.sync(&a, None, 1, vec![], 0);
        assert_eq!(g.check_commit(&a, None, 1), 0);
        assert_eq!(g.check_commit(&a, None, 7), ec::ILLEGAL_GENERATION);
        assert_eq!(g.check_commit("ghost", None, 1), ec::UNKNOWN_MEMBER_ID);
        assert_eq!(g.check_commit("", None, -1), ec::UNKNOWN_MEMBER_ID, "group has members: Kafka's answer to an admin commit");
    }

    #[test]
    fn initial_delay_gathers_joiners_into_one_generation() {
        let timing = Timing { initial_rebalance_delay_ms: 3_000, max_size: 1000 };
        let mut g = Group::new("g", 0);
        let mut rxs = Vec::new();
        for t in [0, 500, 1_000] {
            let first = now_value(g.join(req("", None), t, timing));
            match g.join(req(&first.member_id, None), t, timing) {
                Outcome::Wait(rx) => rxs.push(rx),
                Outcome::Now(r) => panic!("{r:?}"),
            }
        }
        g.tick(2_000, timing);
        assert!(rxs.iter_mut().all(|rx| rx.try_recv().is_err()));
        g.tick(4_001, timing);
        let gens: Vec<i32> = rxs.iter_mut().map(|rx| rx.try_recv().expect("done").generation).collect();
        assert_eq!(gens, vec![1, 1, 1]);
    }
}
