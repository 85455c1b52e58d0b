//! KIP-848 consumer groups: the coordinator computes every member's target
//! assignment and moves each member towards it one heartbeat at a time, revoking
//! before it reassigns, so no member stops for a rebalance.
//!
//! The group epoch counts changes of subscriptions and of the subscribed topics;
//! the target assignment is computed for an epoch; a member's epoch is the target
//! epoch it has reached. A partition moves to its new owner only once the old one
//! has stopped reporting it. Members speaking the classic protocol (JoinGroup,
//! SyncGroup, Heartbeat) are served from the same assignment, so a group moves
//! between the protocols member by member.
//!
//! Synchronous and driven by explicit times, like the classic state machine.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use karst_protocol::error_codes as ec;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::assignors::{Assignment, Assignor};
use super::embedded;
use super::records::{GroupValue, MemberValue};
use super::state::JoinRequest;

/// The epoch a member leaves with.
pub(crate) const LEAVE_EPOCH: i32 = -1;
/// The epoch a static member leaves with, meaning to come back under its instance id.
pub(crate) const STATIC_LEAVE_EPOCH: i32 = -2;

/// A refusal: Kafka's error code and message.
pub(crate) type Refusal = (i16, String);

/// Subscribable topics: name → (topic id, partitions).
pub(crate) type Topics = BTreeMap<String, (Uuid, i32)>;

/// `group.consumer.*` settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsumerConfig {
    pub(crate) session_timeout_ms: i32,
    pub(crate) heartbeat_interval_ms: i32,
    pub(crate) max_size: usize,
    pub(crate) default_assignor: Assignor,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: i32::MAX as usize,
            default_assignor: Assignor::Uniform,
        }
    }
}

/// Where a member stands on its way to its target assignment (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MemberState {
    Stable,
    /// It must first give up `pending_revocation`.
    UnrevokedPartitions,
    /// Some of its target partitions are still another member's.
    UnreleasedPartitions,
}

/// What a classic-protocol member joined with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClassicMeta {
    pub(crate) session_timeout_ms: i32,
    /// (protocol name, embedded subscription), in the member's order of preference.
    pub(crate) protocols: Vec<(String, Vec<u8>)>,
}

/// A member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) topics: BTreeSet<String>,
    pub(crate) regex: Option<String>,
    pub(crate) assignor: Option<String>,
    pub(crate) epoch: i32,
    pub(crate) previous_epoch: i32,
    pub(crate) state: MemberState,
    pub(crate) assigned: Assignment,
    pub(crate) pending_revocation: Assignment,
    /// KIP-1251: the member epoch at which each assigned partition became this
    /// member's; a commit at an older epoch is taken for the partitions it already had.
    #[serde(default)]
    pub(crate) assigned_at: BTreeMap<Uuid, BTreeMap<i32, i32>>,
    pub(crate) classic: Option<ClassicMeta>,
    /// When it was last heard from (not kept: a restored member's session starts anew).
    #[serde(skip)]
    last_seen: i64,
    #[serde(skip)]
    revoking_since: Option<i64>,
}

impl Member {
    fn new(id: String, now: i64) -> Member {
        Member {
            id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 300_000,
            topics: BTreeSet::new(),
            regex: None,
            assignor: None,
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            assigned_at: BTreeMap::new(),
            classic: None,
            last_seen: now,
            revoking_since: None,
        }
    }

    fn set_epoch(&mut self, epoch: i32) {
        if epoch != self.epoch {
            self.previous_epoch = self.epoch;
            self.epoch = epoch;
        }
    }

    fn session_timeout_ms(&self, cfg: ConsumerConfig) -> i64 {
        self.classic.as_ref().map_or(cfg.session_timeout_ms, |c| c.session_timeout_ms) as i64
    }

    /// The first protocol a classic member listed: the one it is answered in.
    pub(crate) fn classic_protocol(&self) -> Option<(&str, Bytes)> {
        let c = self.classic.as_ref()?;
        c.protocols.first().map(|(n, m)| (n.as_str(), Bytes::from(m.clone())))
    }
}

/// A heartbeat's fields (ConsumerGroupHeartbeat).
#[derive(Debug, Clone, Default)]
pub(crate) struct Heartbeat {
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) topics: Option<Vec<String>>,
    pub(crate) regex: Option<String>,
    pub(crate) assignor: Option<String>,
    pub(crate) owned: Option<Vec<(Uuid, Vec<i32>)>>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
}

/// A heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) member_id: String,
    pub(crate) member_epoch: i32,
    /// Set when the request was full or the member's partitions changed.
    pub(crate) assignment: Option<Assignment>,
}

/// A regular expression as Kafka applies one (RE2/J syntax, the whole name must match).
pub(crate) fn compile_regex(re: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| e.to_string())
}

/// Kafka's checks of a ConsumerGroupHeartbeat before it looks at the group.
pub(crate) fn validate(hb: &Heartbeat, group_id: &str, version: i16) -> Result<(), Refusal> {
    let invalid = |m: &str| Err((ec::INVALID_REQUEST, m.to_string()));
    if group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if hb.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if hb.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    // v1 (KIP-1082): the client makes its member id, so it is never empty.
    if version >= 1 && hb.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    match hb.member_epoch {
        e if e > 0 || e == LEAVE_EPOCH => {
            if hb.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
        }
        0 => {
            if hb.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if !hb.owned.as_ref().is_some_and(|o| o.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            let names = hb.topics.as_ref().is_some_and(|t| !t.is_empty());
            if !names && hb.regex.is_none() {
                return invalid("SubscribedTopicNames or SubscribedTopicRegex must be set in first request.");
            }
        }
        STATIC_LEAVE_EPOCH => {
            if hb.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
            if hb.instance_id.is_none() {
                return invalid("InstanceId can't be null.");
            }
        }
        _ => return invalid("MemberEpoch is invalid."),
    }
    if let Some(re) = hb.regex.as_deref().filter(|r| !r.is_empty()) {
        if let Err(e) = compile_regex(re) {
            return Err((ec::INVALID_REGULAR_EXPRESSION, format!("SubscribedTopicRegex `{re}` is not a valid regular expression: {e}.")));
        }
    }
    if let Some(a) = hb.assignor.as_deref() {
        if Assignor::parse(a).is_none() {
            let names: Vec<&str> = Assignor::ALL.iter().map(|a| a.name()).collect();
            return Err((
                ec::UNSUPPORTED_ASSIGNOR,
                format!("ServerAssignor {a} is not supported. Supported assignors: {}.", names.join(", ")),
            ));
        }
    }
    Ok(())
}

fn owns_any(owned: Option<&[(Uuid, Vec<i32>)]>, revoking: &Assignment) -> bool {
    let Some(owned) = owned else { return true };
    owned.iter().any(|(t, ps)| revoking.get(t).is_some_and(|r| ps.iter().any(|p| r.contains(p))))
}

fn is_subset(owned: Option<&[(Uuid, Vec<i32>)]>, assigned: &Assignment) -> bool {
    let Some(owned) = owned else { return false };
    owned.iter().all(|(t, ps)| ps.is_empty() || assigned.get(t).is_some_and(|a| ps.iter().all(|p| a.contains(p))))
}

fn insert_all(into: &mut Assignment, from: &Assignment) {
    for (t, ps) in from {
        into.entry(*t).or_default().extend(ps.iter().copied());
    }
}

/// A KIP-848 consumer group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConsumerGroup {
    pub(crate) id: String,
    pub(crate) epoch: i32,
    pub(crate) assignment_epoch: i32,
    pub(crate) members: BTreeMap<String, Member>,
    pub(crate) target: BTreeMap<String, Assignment>,
    /// The subscribed topics (name → id, partitions) the target was computed for.
    pub(crate) subscribed: Topics,
    /// The assignor the last target assignment was computed with.
    pub(crate) assignor: Option<String>,
    /// Changed since it was last written.
    #[serde(skip)]
    pub(crate) dirty: bool,
}

impl ConsumerGroup {
    pub(crate) fn new(id: &str) -> ConsumerGroup {
        ConsumerGroup { id: id.to_string(), ..Default::default() }
    }

    /// Kafka's `ConsumerGroupState` names.
    pub(crate) fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self.members.values().any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn static_member(&self, instance: &str) -> Option<&Member> {
        self.members.values().find(|m| m.instance_id.as_deref() == Some(instance))
    }

    /// Whether every member but `except` speaks the classic protocol (and some do).
    pub(crate) fn only_classic_members_besides(&self, except: &str) -> bool {
        let rest: Vec<&Member> = self.members.values().filter(|m| m.id != except).collect();
        !rest.is_empty() && rest.iter().all(|m| m.classic.is_some())
    }

    /// Handles one ConsumerGroupHeartbeat (validated by [`validate`]).
    pub(crate) fn heartbeat(&mut self, hb: Heartbeat, topics: &Topics, now: i64, cfg: ConsumerConfig) -> Result<Reply, Refusal> {
        if hb.member_epoch == LEAVE_EPOCH || hb.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&hb.member_id, hb.instance_id.as_deref(), hb.member_epoch);
        }
        let joining = hb.member_epoch == 0;
        let member_id = if hb.member_id.is_empty() { Uuid::new_v4().to_string() } else { hb.member_id.clone() };
        let previous = self.existing_member(&member_id, hb.instance_id.as_deref(), hb.member_epoch, hb.owned.as_deref(), cfg)?;
        let before = previous.clone();
        let mut m = previous.unwrap_or_else(|| Member::new(member_id.clone(), now));
        if let Some(i) = &hb.instance_id {
            m.instance_id = Some(i.clone());
        }
        if let Some(r) = &hb.rack_id {
            m.rack_id = Some(r.clone());
        }
        if hb.rebalance_timeout_ms != -1 {
            m.rebalance_timeout_ms = hb.rebalance_timeout_ms;
        }
        if let Some(a) = &hb.assignor {
            m.assignor = Some(a.clone());
        }
        if let Some(t) = &hb.topics {
            m.topics = t.iter().cloned().collect();
        }
        if let Some(re) = &hb.regex {
            m.regex = (!re.is_empty()).then(|| re.clone());
        }
        m.client_id = hb.client_id.clone();
        m.client_host = hb.client_host.clone();
        m.classic = None;
        m.last_seen = now;
        let subscription_changed = before.as_ref().is_none_or(|b| b.topics != m.topics || b.regex != m.regex);
        let full = joining || (hb.rebalance_timeout_ms != -1 && hb.topics.is_some() && hb.owned.is_some());
        self.upsert(m, subscription_changed, topics, cfg);
        let owned = if joining { Some(Vec::new()) } else { hb.owned.clone() };
        self.reconcile(&member_id, owned.as_deref(), now);
        let m = &self.members[&member_id];
        let changed = before.as_ref().is_none_or(|b| b.assigned != m.assigned);
        // Only what the record keeps counts as a change: not the time it was heard from.
        let unchanged = before.is_some_and(|b| Member { last_seen: m.last_seen, revoking_since: m.revoking_since, ..b } == *m);
        if !unchanged {
            self.dirty = true;
        }
        Ok(Reply { member_id, member_epoch: m.epoch, assignment: (full || changed).then(|| m.assigned.clone()) })
    }

    /// The member a heartbeat (at `epoch`) speaks for, taken out of the group to be
    /// updated; None for a new one. Checks its epoch and, for a static member, that
    /// the instance id is its own.
    fn existing_member(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        epoch: i32,
        owned: Option<&[(Uuid, Vec<i32>)]>,
        cfg: ConsumerConfig,
    ) -> Result<Option<Member>, Refusal> {
        let joining = epoch == 0;
        let found = match instance {
            None => self.members.get(member_id).cloned(),
            Some(instance) => match self.static_member(instance).cloned() {
                Some(old) if old.id == member_id => Some(old),
                Some(old) if joining => {
                    if old.epoch != STATIC_LEAVE_EPOCH {
                        return Err((
                            ec::UNRELEASED_INSTANCE_ID,
                            format!(
                                "Static member {member_id} with instance id {instance} cannot join the group because the instance id is owned by {} member.",
                                old.id
                            ),
                        ));
                    }
                    // The instance comes back under a new member id: it takes over
                    // the old member's partitions and target without a rebalance.
                    self.members.remove(&old.id);
                    if let Some(t) = self.target.remove(&old.id) {
                        self.target.insert(member_id.to_string(), t);
                    }
                    let mut m = old;
                    m.id = member_id.to_string();
                    m.epoch = 0;
                    m.state = MemberState::Stable;
                    m.pending_revocation.clear();
                    self.dirty = true;
                    return Ok(Some(m));
                }
                Some(old) => {
                    return Err((
                        ec::FENCED_INSTANCE_ID,
                        format!("The static member {member_id} with instance id {instance} is fenced by another member {}.", old.id),
                    ))
                }
                None if joining => None,
                None => return Err((ec::UNKNOWN_MEMBER_ID, format!("Instance id {instance} is unknown."))),
            },
        };
        match found {
            None if !joining => Err((ec::UNKNOWN_MEMBER_ID, format!("Member {member_id} is not a member of group {}.", self.id))),
            None if self.members.len() >= cfg.max_size => Err((
                ec::GROUP_MAX_SIZE_REACHED,
                format!("The consumer group has reached its maximum capacity of {} members.", cfg.max_size),
            )),
            None => Ok(None),
            Some(m) if joining => Ok(Some(m)),
            Some(m) => {
                if epoch > m.epoch {
                    return Err((
                        ec::FENCED_MEMBER_EPOCH,
                        format!("The consumer group member has a greater member epoch ({epoch}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.", m.epoch),
                    ));
                }
                // The answer with the new epoch may have been lost: the previous epoch
                // is taken while the member owns no more than it was given.
                if epoch < m.epoch && (epoch != m.previous_epoch || !is_subset(owned, &m.assigned)) {
                    return Err((
                        ec::FENCED_MEMBER_EPOCH,
                        format!("The consumer group member has a smaller member epoch ({epoch}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.", m.epoch),
                    ));
                }
                Ok(Some(m))
            }
        }
    }

    /// Puts `m` in the group; a changed subscription, or subscribed topics that
    /// changed (created, deleted, more partitions), bumps the group epoch, and a
    /// bumped epoch gets a new target assignment.
    fn upsert(&mut self, m: Member, subscription_changed: bool, topics: &Topics, cfg: ConsumerConfig) {
        self.members.insert(m.id.clone(), m);
        let subscribed = self.resolve(topics);
        if subscription_changed || subscribed != self.subscribed {
            self.subscribed = subscribed;
            self.bump();
        }
        if self.epoch > self.assignment_epoch {
            self.compute_target(cfg);
        }
    }

    fn bump(&mut self) {
        self.epoch += 1;
        self.dirty = true;
    }

    /// The topics any member subscribes to, by name or by regular expression
    /// (internal topics are never matched by one).
    fn resolve(&self, topics: &Topics) -> Topics {
        let regexes: Vec<regex::Regex> = self
            .members
            .values()
            .filter_map(|m| m.regex.as_deref())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|r| compile_regex(r).ok())
            .collect();
        topics
            .iter()
            .filter(|(name, _)| {
                self.members.values().any(|m| m.topics.contains(*name))
                    || (!name.starts_with("__") && regexes.iter().any(|r| r.is_match(name)))
            })
            .map(|(n, v)| (n.clone(), *v))
            .collect()
    }

    /// The topic ids member `m` subscribes to among the resolved topics.
    fn member_topics(&self, m: &Member) -> BTreeSet<Uuid> {
        let re = m.regex.as_deref().and_then(|r| compile_regex(r).ok());
        self.subscribed
            .iter()
            .filter(|(name, _)| m.topics.contains(*name) || (!name.starts_with("__") && re.as_ref().is_some_and(|r| r.is_match(name))))
            .map(|(_, (id, _))| *id)
            .collect()
    }

    /// The assignor members ask for most (ties: the first by name), else the default.
    fn pick_assignor(&self, cfg: ConsumerConfig) -> Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for a in self.members.values().filter_map(|m| m.assignor.as_deref()) {
            *votes.entry(a).or_default() += 1;
        }
        let best = votes.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(a, _)| *a);
        best.and_then(Assignor::parse).unwrap_or(cfg.default_assignor)
    }

    fn compute_target(&mut self, cfg: ConsumerConfig) {
        let assignor = self.pick_assignor(cfg);
        let subscriptions: BTreeMap<String, BTreeSet<Uuid>> =
            self.members.values().map(|m| (m.id.clone(), self.member_topics(m))).collect();
        let partitions: BTreeMap<Uuid, i32> = self.subscribed.values().map(|(id, n)| (*id, *n)).collect();
        self.target = assignor.assign(&subscriptions, &partitions, &self.target);
        self.assignment_epoch = self.epoch;
        self.assignor = Some(assignor.name().to_string());
        self.dirty = true;
    }

    /// Partitions held (assigned or not yet revoked) by members other than `except`.
    fn held_by_others(&self, except: &str) -> BTreeSet<(Uuid, i32)> {
        self.members
            .values()
            .filter(|m| m.id != except)
            .flat_map(|m| m.assigned.iter().chain(m.pending_revocation.iter()))
            .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            .collect()
    }

    /// Kafka's `CurrentAssignmentBuilder`: moves member `id` towards its target,
    /// given the partitions it reports owning (None: not reported, so still owned).
    fn reconcile(&mut self, id: &str, owned: Option<&[(Uuid, Vec<i32>)]>, now: i64) {
        let Some(m) = self.members.get(id) else { return };
        let next = match m.state {
            MemberState::Stable if m.epoch == self.assignment_epoch => return,
            MemberState::UnrevokedPartitions if owns_any(owned, &m.pending_revocation) => return,
            _ => self.next_assignment(m, owned),
        };
        let Some(m) = self.members.get_mut(id) else { return };
        let (state, epoch, assigned, revoking) = next;
        m.revoking_since = match (state, m.state) {
            (MemberState::UnrevokedPartitions, MemberState::UnrevokedPartitions) => m.revoking_since.or(Some(now)),
            (MemberState::UnrevokedPartitions, _) => Some(now),
            _ => None,
        };
        m.state = state;
        m.set_epoch(epoch);
        let mut at: BTreeMap<Uuid, BTreeMap<i32, i32>> = BTreeMap::new();
        for (t, ps) in &assigned {
            for p in ps {
                let since = m.assigned_at.get(t).and_then(|e| e.get(p)).copied().unwrap_or(m.epoch);
                at.entry(*t).or_default().insert(*p, since);
            }
        }
        m.assigned_at = at;
        m.assigned = assigned;
        m.pending_revocation = revoking;
    }

    fn next_assignment(&self, m: &Member, owned: Option<&[(Uuid, Vec<i32>)]>) -> (MemberState, i32, Assignment, Assignment) {
        let empty = Assignment::new();
        let target = self.target.get(&m.id).unwrap_or(&empty);
        let others = self.held_by_others(&m.id);
        let (mut assigned, mut revoking, mut adding) = (Assignment::new(), Assignment::new(), Assignment::new());
        let mut unreleased = false;
        let topics: BTreeSet<Uuid> = target.keys().chain(m.assigned.keys()).copied().collect();
        for t in topics {
            let want = target.get(&t).cloned().unwrap_or_default();
            let have = m.assigned.get(&t).cloned().unwrap_or_default();
            let keep: BTreeSet<i32> = have.intersection(&want).copied().collect();
            let give_up: BTreeSet<i32> = have.difference(&keep).copied().collect();
            let mut add: BTreeSet<i32> = want.difference(&keep).copied().collect();
            let before = add.len();
            add.retain(|p| !others.contains(&(t, *p)));
            unreleased |= add.len() != before;
            for (map, set) in [(&mut assigned, keep), (&mut revoking, give_up), (&mut adding, add)] {
                if !set.is_empty() {
                    map.insert(t, set);
                }
            }
        }
        if !revoking.is_empty() && owns_any(owned, &revoking) {
            (MemberState::UnrevokedPartitions, m.epoch, assigned, revoking)
        } else {
            insert_all(&mut assigned, &adding);
            let state = if unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
            (state, self.assignment_epoch, assigned, Assignment::new())
        }
    }

    /// A member leaves (epoch -1) or, static, steps out meaning to return (-2: it
    /// keeps its partitions until its session ends).
    fn leave(&mut self, member_id: &str, instance: Option<&str>, epoch: i32) -> Result<Reply, Refusal> {
        let id = match instance {
            Some(instance) => match self.static_member(instance) {
                None => return Err((ec::UNKNOWN_MEMBER_ID, format!("Instance id {instance} is unknown."))),
                Some(m) if m.id != member_id => {
                    return Err((
                        ec::FENCED_INSTANCE_ID,
                        format!("The static member {member_id} with instance id {instance} is fenced by another member {}.", m.id),
                    ))
                }
                Some(m) => m.id.clone(),
            },
            None if self.members.contains_key(member_id) => member_id.to_string(),
            None => return Err((ec::UNKNOWN_MEMBER_ID, format!("Member {member_id} is not a member of group {}.", self.id))),
        };
        if epoch == STATIC_LEAVE_EPOCH {
            if let Some(m) = self.members.get_mut(&id) {
                m.set_epoch(STATIC_LEAVE_EPOCH);
            }
            self.dirty = true;
        } else {
            self.remove(&id);
        }
        Ok(Reply { member_id: id, member_epoch: epoch, assignment: None })
    }

    /// Removes a member (left, fenced or expired); the others rebalance.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        if self.members.remove(id).is_none() {
            return false;
        }
        self.target.remove(id);
        self.bump();
        true
    }

    /// Members whose session ended or who did not revoke within their rebalance
    /// timeout are fenced. Returns the ids removed.
    pub(crate) fn tick(&mut self, now: i64, cfg: ConsumerConfig) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now - m.last_seen > m.session_timeout_ms(cfg)
                    || m.revoking_since.is_some_and(|since| now - since > m.rebalance_timeout_ms as i64)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        expired
    }

    /// A restored group: every member's session counted from `now`.
    pub(crate) fn restored(mut self, now: i64) -> ConsumerGroup {
        for m in self.members.values_mut() {
            m.last_seen = now;
            m.revoking_since = (m.state == MemberState::UnrevokedPartitions).then_some(now);
        }
        self.dirty = false;
        self
    }

    /// Whether an offset commit by (`member_id`, `epoch`) may write, as Kafka's
    /// `ConsumerGroup.validateOffsetCommit`.
    pub(crate) fn check_commit(&self, member_id: &str, epoch: i32, version: i16, transactional: bool) -> i16 {
        if epoch < 0 && self.members.is_empty() {
            return ec::NONE;
        }
        let Some(m) = self.members.get(member_id) else { return ec::UNKNOWN_MEMBER_ID };
        if !transactional && m.classic.is_none() && version < 9 {
            return ec::UNSUPPORTED_VERSION;
        }
        match (epoch == m.epoch, m.classic.is_some()) {
            (true, _) => ec::NONE,
            (false, true) => ec::ILLEGAL_GENERATION,
            // KIP-1251: an older epoch is checked partition by partition
            // ([`ConsumerGroup::commit_allowed`]); a newer one never holds.
            (false, false) if epoch < m.epoch && epoch >= 0 => ec::NONE,
            (false, false) => ec::STALE_MEMBER_EPOCH,
        }
    }

    /// KIP-1251, for a commit that [`ConsumerGroup::check_commit`] let through: at
    /// the member's epoch every partition may be written; at an older epoch only the
    /// partitions the member has held since that epoch or before
    /// (assignment epoch ≤ commit epoch), else STALE_MEMBER_EPOCH for that partition.
    pub(crate) fn commit_allowed(&self, member_id: &str, epoch: i32, topic: Uuid, partition: i32) -> bool {
        match self.members.get(member_id) {
            None => true,
            Some(m) if m.classic.is_some() || epoch == m.epoch => true,
            Some(m) => m.assigned_at.get(&topic).and_then(|ps| ps.get(&partition)).is_some_and(|since| *since <= epoch),
        }
    }

    /// Whether an offset fetch naming a member may read (OffsetFetch v9+).
    pub(crate) fn check_fetch(&self, member_id: Option<&str>, epoch: i32) -> i16 {
        let Some(member_id) = member_id else { return ec::NONE };
        if epoch < 0 && member_id.is_empty() {
            return ec::NONE;
        }
        match self.members.get(member_id) {
            None => ec::UNKNOWN_MEMBER_ID,
            Some(m) if m.epoch != epoch => ec::STALE_MEMBER_EPOCH,
            Some(_) => ec::NONE,
        }
    }

    /// The topic names the members subscribe to (OffsetDelete refuses them).
    pub(crate) fn subscribed_names(&self) -> BTreeSet<String> {
        self.subscribed.keys().cloned().collect()
    }
}

/// The value version of a consumer group record.
const CONSUMER_GROUP_VALUE_VERSION: i16 = 0;

/// A consumer group's record value: a version, then the group as JSON.
pub(crate) fn encode_record(g: &ConsumerGroup) -> Bytes {
    let mut b = bytes::BytesMut::new();
    bytes::BufMut::put_i16(&mut b, CONSUMER_GROUP_VALUE_VERSION);
    // Serialising plain data into memory cannot fail.
    bytes::BufMut::put_slice(&mut b, &serde_json::to_vec(g).unwrap_or_default());
    b.freeze()
}

/// None for a value of another version or bytes that are not a group.
pub(crate) fn decode_record(mut b: Bytes) -> Option<ConsumerGroup> {
    if bytes::Buf::remaining(&b) < 2 || bytes::Buf::get_i16(&mut b) != CONSUMER_GROUP_VALUE_VERSION {
        return None;
    }
    serde_json::from_slice(&b).ok()
}

/// What a classic member is told on a consumer group: (member id, generation =
/// member epoch, protocol name).
pub(crate) type ClassicJoined = (String, i32, String);

impl ConsumerGroup {
    /// A classic member joins or rejoins (Kafka's `classicGroupJoinToConsumerGroup`):
    /// its subscription is read from its embedded protocol, its owned partitions
    /// count as the ones it still holds.
    pub(crate) fn classic_join(
        &mut self,
        j: JoinRequest,
        topics: &Topics,
        now: i64,
        cfg: ConsumerConfig,
    ) -> Result<ClassicJoined, Refusal> {
        let Some((protocol, metadata)) = j.protocols.first().cloned() else {
            return Err((ec::INCONSISTENT_GROUP_PROTOCOL, "no protocols".into()));
        };
        let Some(sub) = embedded::decode_subscription(&metadata) else {
            return Err((ec::INCONSISTENT_GROUP_PROTOCOL, "the embedded consumer protocol is malformed".into()));
        };
        let existing = match &j.instance_id {
            Some(instance) => self.static_member(instance).cloned().map(|old| {
                // A classic static member rejoining under a new id replaces the old one.
                if old.id != j.member_id {
                    self.members.remove(&old.id);
                    if let Some(t) = self.target.remove(&old.id) {
                        self.target.insert(j.member_id.clone(), t);
                    }
                }
                Member { id: j.member_id.clone(), ..old }
            }),
            None => self.members.get(&j.member_id).cloned(),
        };
        if existing.is_none() && self.members.len() >= cfg.max_size {
            return Err((ec::GROUP_MAX_SIZE_REACHED, "The consumer group has reached its maximum capacity.".into()));
        }
        let before = existing.clone();
        let mut m = existing.unwrap_or_else(|| Member::new(j.member_id.clone(), now));
        m.instance_id = j.instance_id.clone();
        m.rack_id = sub.rack_id.clone().or(m.rack_id);
        m.rebalance_timeout_ms = j.rebalance_timeout_ms;
        m.assignor = None;
        m.topics = sub.topics.iter().cloned().collect();
        m.regex = None;
        m.client_id = j.client_id;
        m.client_host = j.client_host;
        m.classic = Some(ClassicMeta {
            session_timeout_ms: j.session_timeout_ms,
            protocols: j.protocols.iter().map(|(n, b)| (n.clone(), b.to_vec())).collect(),
        });
        m.last_seen = now;
        let changed = before.as_ref().is_none_or(|b| b.topics != m.topics || b.regex != m.regex);
        let id = m.id.clone();
        self.upsert(m, changed, topics, cfg);
        let owned: Vec<(Uuid, Vec<i32>)> = sub.owned.iter().filter_map(|(t, ps)| topics.get(t).map(|(id, _)| (*id, ps.clone()))).collect();
        self.reconcile(&id, Some(&owned), now);
        self.dirty = true;
        let epoch = self.members.get(&id).map_or(0, |m| m.epoch);
        Ok((id, epoch, protocol))
    }

    /// The classic member `member_id` (or the static one of `instance`), checked.
    fn classic_member(&self, member_id: &str, instance: Option<&str>) -> Result<&Member, i16> {
        let m = match instance {
            Some(i) => {
                let m = self.static_member(i).ok_or(ec::UNKNOWN_MEMBER_ID)?;
                if m.id != member_id {
                    return Err(ec::FENCED_INSTANCE_ID);
                }
                m
            }
            None => self.members.get(member_id).ok_or(ec::UNKNOWN_MEMBER_ID)?,
        };
        if m.classic.is_none() {
            return Err(ec::UNKNOWN_MEMBER_ID);
        }
        Ok(m)
    }

    /// A classic member's SyncGroup: its assigned partitions in its embedded
    /// protocol's version, as (protocol name, assignment).
    pub(crate) fn classic_sync(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        names: &HashMap<Uuid, String>,
    ) -> Result<(String, Bytes), i16> {
        let m = self.classic_member(member_id, instance)?;
        if generation != m.epoch {
            return Err(ec::ILLEGAL_GENERATION);
        }
        if self.epoch > m.epoch && m.state != MemberState::UnrevokedPartitions {
            return Err(ec::REBALANCE_IN_PROGRESS);
        }
        let (protocol, metadata) = m.classic_protocol().ok_or(ec::UNKNOWN_MEMBER_ID)?;
        let version = if metadata.len() >= 2 { i16::from_be_bytes([metadata[0], metadata[1]]) } else { 0 };
        let partitions: Vec<(String, Vec<i32>)> =
            m.assigned.iter().filter_map(|(t, ps)| names.get(t).map(|n| (n.clone(), ps.iter().copied().collect()))).collect();
        Ok((protocol.to_string(), embedded::encode_assignment(version, &partitions)))
    }

    /// A classic member's Heartbeat: REBALANCE_IN_PROGRESS when it should rejoin
    /// (the group moved on, it must give partitions up, or partitions it waits
    /// for are free now).
    pub(crate) fn classic_heartbeat(&mut self, member_id: &str, instance: Option<&str>, generation: i32, now: i64) -> i16 {
        let m = match self.classic_member(member_id, instance) {
            Ok(m) => m,
            Err(e) => return e,
        };
        if generation != m.epoch {
            return ec::ILLEGAL_GENERATION;
        }
        let id = m.id.clone();
        let waiting_for_free = m.state == MemberState::UnreleasedPartitions && {
            let others = self.held_by_others(&id);
            let target = self.target.get(&id).cloned().unwrap_or_default();
            target.iter().any(|(t, ps)| ps.iter().any(|p| !others.contains(&(*t, *p)) && !m.assigned.get(t).is_some_and(|a| a.contains(p))))
        };
        let rejoin = m.epoch < self.epoch || m.state == MemberState::UnrevokedPartitions || waiting_for_free;
        if let Some(m) = self.members.get_mut(&id) {
            m.last_seen = now;
        }
        if rejoin {
            ec::REBALANCE_IN_PROGRESS
        } else {
            ec::NONE
        }
    }

    /// A classic member's LeaveGroup.
    pub(crate) fn classic_leave(&mut self, member_id: &str, instance: Option<&str>) -> i16 {
        let id = match instance {
            Some(i) => match self.static_member(i) {
                None => return ec::UNKNOWN_MEMBER_ID,
                Some(m) if !member_id.is_empty() && m.id != member_id => return ec::FENCED_INSTANCE_ID,
                Some(m) => m.id.clone(),
            },
            None => member_id.to_string(),
        };
        if self.remove(&id) {
            ec::NONE
        } else {
            ec::UNKNOWN_MEMBER_ID
        }
    }

    /// The classic group this one becomes when only classic members are left
    /// (KIP-848's downgrade): their subscriptions and current assignments, at the
    /// group epoch as generation.
    pub(crate) fn to_classic(&self, names: &HashMap<Uuid, String>, now: i64) -> Option<GroupValue> {
        let first = self.members.values().next()?;
        let (protocol, _) = first.classic_protocol()?;
        let members = self
            .members
            .values()
            .map(|m| {
                let c = m.classic.as_ref()?;
                let (_, sub) = c.protocols.iter().find(|(n, _)| n == protocol).or(c.protocols.first())?;
                let version = if sub.len() >= 2 { i16::from_be_bytes([sub[0], sub[1]]) } else { 0 };
                let partitions: Vec<(String, Vec<i32>)> =
                    m.assigned.iter().filter_map(|(t, ps)| names.get(t).map(|n| (n.clone(), ps.iter().copied().collect()))).collect();
                Some(MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: c.session_timeout_ms,
                    subscription: Bytes::from(sub.clone()),
                    assignment: embedded::encode_assignment(version, &partitions),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(GroupValue {
            protocol_type: "consumer".into(),
            generation: self.epoch,
            protocol: Some(protocol.to_string()),
            leader: Some(first.id.clone()),
            state_timestamp: now,
            members,
        })
    }

    /// The consumer group a classic group becomes when a consumer-protocol member
    /// joins it (KIP-848's upgrade): its members keep their assignments, at the
    /// generation as epoch. None when a member's embedded protocol cannot be read.
    pub(crate) fn from_classic(id: &str, v: &GroupValue, topics: &Topics, now: i64) -> Option<ConsumerGroup> {
        let mut g = ConsumerGroup::new(id);
        g.epoch = v.generation.max(0);
        g.assignment_epoch = g.epoch;
        for mv in &v.members {
            let sub = embedded::decode_subscription(&mv.subscription)?;
            let assigned: Assignment = embedded::decode_assignment(&mv.assignment)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(t, ps)| topics.get(&t).map(|(id, _)| (*id, ps.into_iter().collect::<BTreeSet<i32>>())))
                .filter(|(_, ps)| !ps.is_empty())
                .collect();
            let mut m = Member::new(mv.member_id.clone(), now);
            m.instance_id = mv.instance_id.clone();
            m.client_id = mv.client_id.clone();
            m.client_host = mv.client_host.clone();
            m.rebalance_timeout_ms = mv.rebalance_timeout_ms;
            m.topics = sub.topics.into_iter().collect();
            m.rack_id = sub.rack_id;
            m.epoch = g.epoch;
            m.previous_epoch = g.epoch;
            m.assigned = assigned.clone();
            m.classic = Some(ClassicMeta {
                session_timeout_ms: mv.session_timeout_ms,
                protocols: vec![(v.protocol.clone().unwrap_or_default(), mv.subscription.to_vec())],
            });
            g.target.insert(m.id.clone(), assigned);
            g.members.insert(m.id.clone(), m);
        }
        g.subscribed = g.resolve(topics);
        g.dirty = true;
        Some(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: ConsumerConfig =
        ConsumerConfig { session_timeout_ms: 45_000, heartbeat_interval_ms: 5_000, max_size: 10, default_assignor: Assignor::Uniform };

    fn topics() -> Topics {
        BTreeMap::from([("a".to_string(), (Uuid::from_u128(1), 4)), ("b".to_string(), (Uuid::from_u128(2), 2))])
    }

    fn join(id: &str, subscribe: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 60_000,
            topics: Some(subscribe.iter().map(|s| s.to_string()).collect()),
            owned: Some(vec![]),
            ..Default::default()
        }
    }

    fn beat(id: &str, epoch: i32, owned: &Assignment) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned: Some(owned.iter().map(|(t, ps)| (*t, ps.iter().copied().collect())).collect()),
            ..Default::default()
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
        let mut g = ConsumerGroup::new("g");
        let r1 = g.heartbeat(join("m1", &["a"]), &topics(), 0, CFG).expect("join");
        assert_eq!((r1.member_epoch, count(r1.assignment.as_ref().expect("assignment"))), (1, 4));
        let r2 = g.heartbeat(join("m2", &["a"]), &topics(), 1, CFG).expect("join");
        assert_eq!(r2.member_epoch, 2);
        assert_eq!(count(r2.assignment.as_ref().expect("assignment")), 0, "m1 still holds them");
        assert_eq!(g.state_name(), "Reconciling");
        // m1 is told to give two up and stays at epoch 1 until it does.
        let owned1 = r1.assignment.expect("a");
        let r = g.heartbeat(beat("m1", 1, &owned1), &topics(), 2, CFG).expect("beat");
        assert_eq!((r.member_epoch, count(r.assignment.as_ref().expect("changed"))), (1, 2));
        assert_eq!(g.members["m1"].state, MemberState::UnrevokedPartitions);
        let kept = r.assignment.expect("a");
        let r = g.heartbeat(beat("m1", 1, &kept), &topics(), 3, CFG).expect("beat");
        assert_eq!((r.member_epoch, r.assignment), (2, None));
        let r = g.heartbeat(beat("m2", 2, &Assignment::new()), &topics(), 4, CFG).expect("beat");
        assert_eq!(count(r.assignment.as_ref().expect("freed")), 2);
        assert_eq!(g.state_name(), "Stable");
        let mine = r.assignment.expect("a");
        assert!(mine.values().flatten().all(|p| !kept.values().flatten().any(|q| q == p)), "no partition twice");
    }

    #[test]
    fn epochs_are_checked_and_the_previous_one_is_taken_once() {
        let mut g = ConsumerGroup::new("g");
        let r = g.heartbeat(join("m1", &["a"]), &topics(), 0, CFG).expect("join");
        let owned = r.assignment.expect("a");
        assert_eq!(g.heartbeat(beat("m1", 5, &owned), &topics(), 1, CFG).map_err(|e| e.0), Err(ec::FENCED_MEMBER_EPOCH));
        assert_eq!(g.heartbeat(beat("zz", 1, &owned), &topics(), 1, CFG).map_err(|e| e.0), Err(ec::UNKNOWN_MEMBER_ID));
        g.heartbeat(join("m2", &["b"]), &topics(), 1, CFG).expect("join");
        // m1 moved to epoch 2 without losing anything; a lost answer: epoch 1 still works.
        let r = g.heartbeat(beat("m1", 1, &owned), &topics(), 2, CFG).expect("beat");
        assert_eq!(r.member_epoch, 2);
        assert_eq!(g.heartbeat(beat("m1", 1, &owned), &topics(), 3, CFG).map(|r| r.member_epoch), Ok(2), "previous epoch, owned a subset");
        let mut more = owned.clone();
        more.insert(Uuid::from_u128(2), BTreeSet::from([0]));
        assert_eq!(g.heartbeat(beat("m1", 1, &more), &topics(), 3, CFG).map_err(|e| e.0), Err(ec::FENCED_MEMBER_EPOCH));
    }

    /// KIP-1251: after a rebalance moved the member to a newer epoch, a commit still in
    /// flight at the older one is taken for the partitions it kept, not for new ones.
    #[test]
    fn a_commit_at_an_older_epoch_is_taken_for_partitions_held_since() {
        let mut g = ConsumerGroup::new("g");
        let r = g.heartbeat(join("m1", &["a"]), &topics(), 0, CFG).expect("join");
        let owned = r.assignment.expect("a");
        g.heartbeat(join("m2", &["b"]), &topics(), 1, CFG).expect("join");
        let r = g.heartbeat(beat("m1", 1, &owned), &topics(), 2, CFG).expect("beat");
        assert_eq!(r.member_epoch, 2);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(g.check_commit("m1", 1, 9, false), ec::NONE);
        assert!(g.commit_allowed("m1", 1, a, 0), "held since epoch 1");
        assert!(!g.commit_allowed("m1", 1, b, 0), "never the member's");
        assert!(!g.commit_allowed("m1", 0, a, 0), "assigned after epoch 0");
    }

    #[test]
    fn silent_members_and_slow_revokers_are_fenced() {
        let mut g = ConsumerGroup::new("g");
        g.heartbeat(join("m1", &["a"]), &topics(), 0, CFG).expect("join");
        g.heartbeat(join("m2", &["a"]), &topics(), 0, CFG).expect("join");
        let r = g.heartbeat(beat("m1", 1, &Assignment::from([(Uuid::from_u128(1), BTreeSet::from([0, 1, 2, 3]))])), &topics(), 0, CFG);
        assert_eq!(g.members["m1"].state, MemberState::UnrevokedPartitions, "{r:?}");
        // m2 keeps heartbeating; m1 neither revokes within 60 s nor is heard from.
        g.heartbeat(beat("m2", 2, &Assignment::new()), &topics(), 50_000, CFG).expect("beat");
        assert_eq!(g.tick(50_001, CFG), vec!["m1".to_string()]);
        let r = g.heartbeat(beat("m2", 2, &Assignment::new()), &topics(), 50_002, CFG).expect("beat");
        assert_eq!(count(r.assignment.as_ref().expect("all")), 4);
    }

    #[test]
    fn a_static_member_comes_back_under_a_new_id_with_its_partitions() {
        let mut g = ConsumerGroup::new("g");
        let mut hb = join("m1", &["a"]);
        hb.instance_id = Some("i".into());
        let r = g.heartbeat(hb.clone(), &topics(), 0, CFG).expect("join");
        let epoch = g.epoch;
        let mut again = hb.clone();
        again.member_id = "m2".into();
        assert_eq!(g.heartbeat(again.clone(), &topics(), 1, CFG).map_err(|e| e.0), Err(ec::UNRELEASED_INSTANCE_ID));
        let mut leave = beat("m1", STATIC_LEAVE_EPOCH, &Assignment::new());
        leave.instance_id = Some("i".into());
        assert_eq!(g.heartbeat(leave, &topics(), 2, CFG).map(|r| r.member_epoch), Ok(STATIC_LEAVE_EPOCH));
        let r2 = g.heartbeat(again, &topics(), 3, CFG).expect("rejoin");
        assert_eq!(r2.assignment, r.assignment, "same partitions");
        assert_eq!(g.epoch, epoch, "no rebalance");
        let mut old = beat("m1", 1, &Assignment::new());
        old.instance_id = Some("i".into());
        assert_eq!(g.heartbeat(old, &topics(), 4, CFG).map_err(|e| e.0), Err(ec::FENCED_INSTANCE_ID));
    }

    #[test]
    fn regex_subscriptions_follow_topics_as_they_appear() {
        let mut g = ConsumerGroup::new("g");
        let mut hb = join("m1", &[]);
        hb.topics = None;
        hb.regex = Some("a|c.*".into());
        let r = g.heartbeat(hb, &topics(), 0, CFG).expect("join");
        assert_eq!(count(r.assignment.as_ref().expect("a")), 4);
        let mut more = topics();
        more.insert("cc".into(), (Uuid::from_u128(3), 3));
        more.insert("__consumer_offsets".into(), (Uuid::from_u128(4), 50));
        let owned = r.assignment.expect("a");
        let r = g.heartbeat(beat("m1", 1, &owned), &more, 1, CFG).expect("beat");
        assert_eq!(count(r.assignment.as_ref().expect("new topic")), 7);
    }

    #[test]
    fn bad_heartbeats_get_kafkas_errors() {
        let code = |hb: Heartbeat, v: i16| validate(&hb, "g", v).err().map(|e| e.0);
        let mut hb = join("m", &["a"]);
        assert_eq!(code(hb.clone(), 1), None);
        hb.regex = Some("(".into());
        assert_eq!(code(hb.clone(), 1), Some(ec::INVALID_REGULAR_EXPRESSION));
        hb.regex = None;
        hb.assignor = Some("sticky".into());
        assert_eq!(code(hb.clone(), 1), Some(ec::UNSUPPORTED_ASSIGNOR));
        hb.assignor = None;
        hb.member_epoch = -3;
        assert_eq!(code(hb.clone(), 1), Some(ec::INVALID_REQUEST));
        hb.member_epoch = 0;
        hb.member_id.clear();
        assert_eq!(code(hb.clone(), 1), Some(ec::INVALID_REQUEST));
        assert_eq!(code(hb.clone(), 0), None, "v0: the coordinator names the member");
        hb.topics = None;
        assert_eq!(code(hb, 0), Some(ec::INVALID_REQUEST));
    }

    #[test]
    fn a_snapshot_round_trips_and_commits_are_fenced_by_epoch() {
        let mut g = ConsumerGroup::new("g");
        g.heartbeat(join("m1", &["a", "b"]), &topics(), 0, CFG).expect("join");
        let json = serde_json::to_vec(&g).expect("json");
        let back: ConsumerGroup = serde_json::from_slice(&json).expect("back");
        let back = back.restored(10);
        assert_eq!(back.members["m1"].assigned, g.members["m1"].assigned);
        assert_eq!(back.check_commit("m1", 1, 9, false), ec::NONE);
        assert_eq!(back.check_commit("m1", 2, 9, false), ec::STALE_MEMBER_EPOCH, "an epoch the member never had");
        assert_eq!(back.check_commit("m1", 1, 8, false), ec::UNSUPPORTED_VERSION);
        assert_eq!(back.check_commit("x", 1, 9, false), ec::UNKNOWN_MEMBER_ID);
        assert_eq!(back.check_fetch(Some("m1"), 0), ec::STALE_MEMBER_EPOCH);
        assert!(serde_json::from_slice::<ConsumerGroup>(b"{\"id\":3}").is_err(), "corrupt bytes are refused");
        // The record as written: whole it reads back, cut short or of another version it is refused.
        let record = encode_record(&g);
        assert_eq!(decode_record(record.clone()).map(|r| r.members.len()), Some(1));
        for cut in [0, 1, 2, record.len() / 2, record.len() - 1] {
            assert!(decode_record(record.slice(..cut)).is_none(), "cut at {cut}");
        }
        let mut other = record.to_vec();
        other[1] = 9;
        assert!(decode_record(Bytes::from(other)).is_none(), "another value version");
    }

    proptest::proptest! {
        #[test]
        fn garbage_group_records_are_refused_without_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode_record(Bytes::from(bytes));
        }
    }
}
