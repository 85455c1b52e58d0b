//! Metadata commands and their deterministic, validated application to
//! [`ClusterMetadata`]. Every replica applies the same committed commands in the
//! same order and must reach the same image, so `apply` reads nothing but the
//! image and the command (no clock, no randomness, no I/O). A command is checked
//! completely before anything changes: a rejected command leaves the image as it was.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::errors::CommandError;
use crate::metadata::{
    validate_topic_name, AclBinding, BrokerId, BrokerRegistration, ClusterMetadata, Listener, PartitionState, ScramCredential,
    TopicMetadata, NO_LEADER,
};

/// Largest producer-id block one command may allocate.
pub const MAX_PRODUCER_ID_BLOCK: i32 = 1_000_000;

/// A change to the cluster metadata, proposed to the controller leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// A broker process announces itself. A new incarnation gets a new epoch and
    /// starts fenced (its old leaderships move away); the same incarnation again is
    /// an idempotent retry.
    RegisterBroker {
        broker_id: BrokerId,
        incarnation_id: Uuid,
        listeners: Vec<Listener>,
        rack: Option<String>,
    },
    /// The controller decided the broker is gone (heartbeats stopped).
    FenceBroker {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    /// The broker is caught up and heartbeating; leaderless partitions it holds come back.
    UnfenceBroker {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    /// `assignments[p]` is partition p's replica list, first = preferred leader
    /// (see [`ClusterMetadata::assign_partitions`]).
    CreateTopic {
        name: String,
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
        assignments: Vec<Vec<BrokerId>>,
    },
    DeleteTopic {
        name: String,
    },
    /// Appends partitions `existing..existing+assignments.len()`.
    CreatePartitions {
        name: String,
        assignments: Vec<Vec<BrokerId>>,
    },
    /// Sets `set` then removes `remove` (explicit overrides only).
    AlterTopicConfig {
        name: String,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
    /// Dynamic broker configs: `resource` is "" for the cluster-wide default or a
    /// broker id (Kafka's BROKER config resource). Sets `set` then removes `remove`;
    /// the broker that takes the request checks the keys and values (as Kafka's
    /// broker does), the quorum only the resource name.
    AlterBrokerConfig {
        resource: String,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
    /// AlterUserScramCredentials: each (user, mechanism, credential) set, each (user,
    /// mechanism) removed; checked by the broker that takes the request.
    AlterScramCredentials {
        upsertions: Vec<(String, String, ScramCredential)>,
        deletions: Vec<(String, String)>,
    },
    /// CreateAcls and DeleteAcls: `remove` the listed ACLs, then `add` those not there
    /// yet (checked by the broker that takes the request).
    AlterAcls {
        add: Vec<AclBinding>,
        remove: Vec<AclBinding>,
    },
    /// AlterClientQuotas: each entity's values set or removed, checked again here.
    AlterClientQuotas {
        alterations: Vec<crate::quotas::QuotaAlteration>,
    },
    /// Leader election; `partition_epoch` must be the current one.
    ChangePartitionLeader {
        topic: String,
        partition: i32,
        partition_epoch: i32,
        leader: BrokerId,
    },
    /// ISR shrink/expand from the partition leader; `partition_epoch` must be current.
    ChangePartitionIsr {
        topic: String,
        partition: i32,
        partition_epoch: i32,
        isr: Vec<BrokerId>,
    },
    AllocateProducerIds {
        broker_id: BrokerId,
        broker_epoch: i64,
        count: i32,
    },
    /// Move a partition to the replica set `target` (AlterPartitionReassignments), or
    /// cancel the move in progress (`None`). The added replicas join `replicas` at once
    /// and catch up as followers; the move completes when they are all in the ISR.
    ReassignPartition {
        topic: String,
        partition: i32,
        target: Option<Vec<BrokerId>>,
    },
    /// The broker's copies of `partitions` failed on its disk (a write or fsync
    /// error): it leaves their ISRs wherever another member remains and leads none of
    /// them, leadership passing to another unfenced ISR member (or to no leader), as
    /// Kafka's controller treats replicas in an offline log directory. Checked
    /// against the broker's registered epoch; partitions it does not hold (or that
    /// no longer exist) are left alone.
    MarkReplicasOffline {
        broker_id: BrokerId,
        broker_epoch: i64,
        partitions: Vec<(String, i32)>,
    },
}

/// What an accepted command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    /// Raft-internal entries (blank, membership) carry no command.
    Noop,
    BrokerRegistered {
        broker_epoch: i64,
    },
    BrokerFenced,
    BrokerUnfenced,
    TopicCreated {
        topic_id: Uuid,
    },
    TopicDeleted {
        topic_id: Uuid,
    },
    PartitionsCreated {
        partition_count: i32,
    },
    TopicConfigAltered,
    BrokerConfigAltered,
    ScramCredentialsAltered,
    AclsAltered,
    ClientQuotasAltered,
    PartitionChanged {
        state: PartitionState,
    },
    ProducerIdsAllocated {
        first: i64,
        count: i32,
    },
    /// How many of the named partitions changed ISR or leader.
    ReplicasMarkedOffline {
        changed: u32,
    },
}

/// The result every replica computes for a committed command.
pub type CommandResult = Result<CommandOutcome, CommandError>;

impl ClusterMetadata {
    /// Apply one committed command. Deterministic; a rejection changes nothing.
    pub fn apply(&mut self, cmd: &MetadataCommand) -> CommandResult {
        match cmd {
            MetadataCommand::RegisterBroker { broker_id, incarnation_id, listeners, rack } => {
                self.register_broker(*broker_id, *incarnation_id, listeners, rack)
            }
            MetadataCommand::FenceBroker { broker_id, broker_epoch } => {
                self.check_broker_epoch(*broker_id, *broker_epoch)?;
                self.fence(*broker_id);
                Ok(CommandOutcome::BrokerFenced)
            }
            MetadataCommand::UnfenceBroker { broker_id, broker_epoch } => {
                self.check_broker_epoch(*broker_id, *broker_epoch)?;
                self.unfence(*broker_id);
                Ok(CommandOutcome::BrokerUnfenced)
            }
            MetadataCommand::CreateTopic { name, topic_id, configs, assignments } => {
                self.create_topic(name, *topic_id, configs, assignments)
            }
            MetadataCommand::DeleteTopic { name } => {
                let topic = self.topics.remove(name).ok_or_else(|| CommandError::UnknownTopic(name.clone()))?;
                Ok(CommandOutcome::TopicDeleted { topic_id: topic.topic_id })
            }
            MetadataCommand::CreatePartitions { name, assignments } => self.create_partitions(name, assignments),
            MetadataCommand::AlterTopicConfig { name, set, remove } => {
                validate_configs(set)?;
                let topic = self.topics.get_mut(name).ok_or_else(|| CommandError::UnknownTopic(name.clone()))?;
                topic.configs.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
                for k in remove {
                    topic.configs.remove(k);
                }
                Ok(CommandOutcome::TopicConfigAltered)
            }
            MetadataCommand::AlterBrokerConfig { resource, set, remove } => {
                validate_broker_resource(resource)?;
                validate_configs(set)?;
                let configs = self.broker_configs.entry(resource.clone()).or_default();
                configs.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
                for k in remove {
                    configs.remove(k);
                }
                if configs.is_empty() {
                    self.broker_configs.remove(resource);
                }
                Ok(CommandOutcome::BrokerConfigAltered)
            }
            MetadataCommand::AlterScramCredentials { upsertions, deletions } => {
                if upsertions
                    .iter()
                    .map(|(u, m, _)| (u, m))
                    .chain(deletions.iter().map(|(u, m)| (u, m)))
                    .any(|(u, m)| u.is_empty() || m.is_empty())
                {
                    return Err(CommandError::InvalidRequest("a SCRAM credential needs a user and a mechanism".into()));
                }
                for (user, mechanism) in deletions {
                    if let Some(m) = self.scram_credentials.get_mut(user) {
                        m.remove(mechanism);
                        if m.is_empty() {
                            self.scram_credentials.remove(user);
                        }
                    }
                }
                for (user, mechanism, credential) in upsertions {
                    self.scram_credentials.entry(user.clone()).or_default().insert(mechanism.clone(), credential.clone());
                }
                Ok(CommandOutcome::ScramCredentialsAltered)
            }
            MetadataCommand::AlterAcls { add, remove } => {
                self.acls.retain(|a| !remove.contains(a));
                for a in add {
                    if !self.acls.contains(a) {
                        self.acls.push(a.clone());
                    }
                }
                Ok(CommandOutcome::AclsAltered)
            }
            MetadataCommand::AlterClientQuotas { alterations } => {
                for a in alterations {
                    crate::quotas::check_alteration(a).map_err(CommandError::InvalidRequest)?;
                }
                crate::quotas::apply(&mut self.client_quotas, alterations);
                Ok(CommandOutcome::ClientQuotasAltered)
            }
            MetadataCommand::ChangePartitionLeader { topic, partition, partition_epoch, leader } => {
                self.change_leader(topic, *partition, *partition_epoch, *leader)
            }
            MetadataCommand::ChangePartitionIsr { topic, partition, partition_epoch, isr } => {
                self.change_isr(topic, *partition, *partition_epoch, isr)
            }
            MetadataCommand::AllocateProducerIds { broker_id, broker_epoch, count } => {
                self.check_broker_epoch(*broker_id, *broker_epoch)?;
                if !(1..=MAX_PRODUCER_ID_BLOCK).contains(count) {
                    return Err(CommandError::InvalidRequest(format!(
                        "producer id block size {count} is outside 1..={MAX_PRODUCER_ID_BLOCK}"
                    )));
                }
                let first = self.next_producer_id;
                let next = first.checked_add(i64::from(*count)).ok_or(CommandError::ProducerIdsExhausted)?;
                self.next_producer_id = next;
                Ok(CommandOutcome::ProducerIdsAllocated { first, count: *count })
            }
            MetadataCommand::ReassignPartition { topic, partition, target } => self.reassign(topic, *partition, target.as_deref()),
            MetadataCommand::MarkReplicasOffline { broker_id, broker_epoch, partitions } => {
                self.check_broker_epoch(*broker_id, *broker_epoch)?;
                Ok(CommandOutcome::ReplicasMarkedOffline { changed: self.mark_offline(*broker_id, partitions) })
            }
        }
    }

    fn register_broker(
        &mut self,
        broker_id: BrokerId,
        incarnation_id: Uuid,
        listeners: &[Listener],
        rack: &Option<String>,
    ) -> CommandResult {
        if broker_id < 0 {
            return Err(CommandError::InvalidRequest(format!("broker id {broker_id} is negative")));
        }
        if let Some(existing) = self.brokers.get(&broker_id) {
            if existing.incarnation_id == incarnation_id {
                return Ok(CommandOutcome::BrokerRegistered { broker_epoch: existing.epoch });
            }
        }
        let epoch = self.next_broker_epoch;
        self.next_broker_epoch += 1;
        self.brokers.insert(
            broker_id,
            BrokerRegistration { id: broker_id, incarnation_id, listeners: listeners.to_vec(), rack: rack.clone(), epoch, fenced: true },
        );
        // A restarted broker lost whatever it led; move leadership like a fence does.
        self.fence(broker_id);
        Ok(CommandOutcome::BrokerRegistered { broker_epoch: epoch })
    }

    fn check_broker_epoch(&self, broker_id: BrokerId, epoch: i64) -> Result<(), CommandError> {
        let b = self.brokers.get(&broker_id).ok_or(CommandError::UnknownBroker(broker_id))?;
        if b.epoch != epoch {
            return Err(CommandError::StaleBrokerEpoch { broker_id, current: b.epoch, request: epoch });
        }
        Ok(())
    }

    /// Mark fenced, take the broker out of every ISR where another member remains,
    /// and move its leaderships to the first unfenced ISR member in replica order
    /// (or to no leader: a replication-factor-1 partition goes offline).
    fn fence(&mut self, id: BrokerId) {
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = true;
        }
        let unfenced: BTreeSet<BrokerId> = self.unfenced_brokers().map(|b| b.id).collect();
        for (unclean, p) in self.topics.values_mut().flat_map(|t| {
            let unclean = allows_unclean_election(&t.configs);
            t.partitions.iter_mut().map(move |p| (unclean, p))
        }) {
            if p.leader != id && !p.isr.contains(&id) {
                continue;
            }
            let mut changed = false;
            if p.isr.len() > 1 && p.isr.contains(&id) {
                p.isr.retain(|r| *r != id);
                changed = true;
            }
            if p.leader == id {
                p.leader = p.replicas.iter().copied().find(|r| p.isr.contains(r) && unfenced.contains(r)).unwrap_or(NO_LEADER);
                if p.leader == NO_LEADER && unclean {
                    elect_unclean(p, &unfenced);
                }
                p.leader_epoch += 1;
                changed = true;
            } else if p.leader == NO_LEADER && unclean && elect_unclean(p, &unfenced) {
                p.leader_epoch += 1;
                changed = true;
            }
            if changed {
                p.partition_epoch += 1;
            }
        }
    }

    /// Takes broker `id` out of the ISRs of `partitions` (unless it is the last
    /// member) and out of their leadership; returns how many changed.
    fn mark_offline(&mut self, id: BrokerId, partitions: &[(String, i32)]) -> u32 {
        let unfenced: BTreeSet<BrokerId> = self.unfenced_brokers().map(|b| b.id).collect();
        let mut changed = 0;
        for (topic, partition) in partitions {
            let Some(t) = self.topics.get_mut(topic) else { continue };
            let Some(p) = usize::try_from(*partition).ok().and_then(|i| t.partitions.get_mut(i)) else { continue };
            if !p.replicas.contains(&id) {
                continue;
            }
            let before = p.clone();
            if p.isr.len() > 1 {
                p.isr.retain(|r| *r != id);
            }
            if p.leader == id {
                // Never unclean: the other replicas' data is behind what was acknowledged.
                p.leader = p.replicas.iter().copied().find(|r| *r != id && p.isr.contains(r) && unfenced.contains(r)).unwrap_or(NO_LEADER);
                p.leader_epoch += 1;
            }
            if *p != before {
                p.partition_epoch += 1;
                changed += 1;
            }
        }
        changed
    }

    /// Mark unfenced; leaderless partitions with this broker in their ISR get a leader.
    fn unfence(&mut self, id: BrokerId) {
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = false;
        }
        let unfenced: BTreeSet<BrokerId> = self.unfenced_brokers().map(|b| b.id).collect();
        for (unclean, p) in self.topics.values_mut().flat_map(|t| {
            let unclean = allows_unclean_election(&t.configs);
            t.partitions.iter_mut().map(move |p| (unclean, p))
        }) {
            if p.leader != NO_LEADER || !p.replicas.contains(&id) {
                continue;
            }
            if let Some(l) = p.replicas.iter().copied().find(|r| p.isr.contains(r) && unfenced.contains(r)) {
                p.leader = l;
                p.leader_epoch += 1;
                p.partition_epoch += 1;
            } else if unclean && elect_unclean(p, &unfenced) {
                p.leader_epoch += 1;
                p.partition_epoch += 1;
            }
        }
    }

    fn create_topic(
        &mut self,
        name: &str,
        topic_id: Uuid,
        configs: &BTreeMap<String, String>,
        assignments: &[Vec<BrokerId>],
    ) -> CommandResult {
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(CommandError::TopicExists(name.to_string()));
        }
        if topic_id.is_nil() {
            return Err(CommandError::InvalidRequest("topic id must not be the nil uuid".into()));
        }
        if let Some(other) = self.topic_by_id(topic_id) {
            return Err(CommandError::DuplicateTopicId(topic_id, other.name.clone()));
        }
        validate_configs(configs)?;
        if assignments.is_empty() {
            return Err(CommandError::InvalidPartitions("a topic needs at least one partition".into()));
        }
        let rf = assignments[0].len();
        let partitions = self.new_partitions(assignments, rf)?;
        self.topics.insert(name.to_string(), TopicMetadata { name: name.to_string(), topic_id, configs: configs.clone(), partitions });
        Ok(CommandOutcome::TopicCreated { topic_id })
    }

    fn create_partitions(&mut self, name: &str, assignments: &[Vec<BrokerId>]) -> CommandResult {
        let topic = self.topics.get(name).ok_or_else(|| CommandError::UnknownTopic(name.to_string()))?;
        let existing = topic.partitions.len();
        if assignments.is_empty() {
            return Err(CommandError::InvalidPartitions(format!("topic `{name}` already has {existing} partitions")));
        }
        let rf = topic.partitions.first().map_or(assignments[0].len(), |p| p.replicas.len());
        let new = self.new_partitions(assignments, rf)?;
        let total = existing + new.len();
        let total_i32 = i32::try_from(total).map_err(|_| CommandError::InvalidPartitions(format!("{total} partitions")))?;
        if let Some(topic) = self.topics.get_mut(name) {
            topic.partitions.extend(new);
        }
        Ok(CommandOutcome::PartitionsCreated { partition_count: total_i32 })
    }

    /// Validate assignments (all of replication factor `rf`) and build the new
    /// partitions: ISR = unfenced replicas, leader = first of them.
    fn new_partitions(&self, assignments: &[Vec<BrokerId>], rf: usize) -> Result<Vec<PartitionState>, CommandError> {
        if self.partition_count() + assignments.len() > i32::MAX as usize {
            return Err(CommandError::InvalidPartitions("too many partitions".into()));
        }
        if rf == 0 || rf > i16::MAX as usize {
            return Err(CommandError::InvalidReplicationFactor(format!("replication factor {rf}")));
        }
        let mut out = Vec::with_capacity(assignments.len());
        for (i, replicas) in assignments.iter().enumerate() {
            let bad = |why: String| CommandError::InvalidReplicaAssignment(format!("partition {i}: {why}"));
            if replicas.len() != rf {
                return Err(bad(format!("has {} replicas, expected {rf} like the other partitions", replicas.len())));
            }
            let distinct: BTreeSet<_> = replicas.iter().collect();
            if distinct.len() != replicas.len() {
                return Err(bad(format!("duplicate broker in {replicas:?}")));
            }
            if let Some(unknown) = replicas.iter().find(|r| !self.brokers.contains_key(r)) {
                return Err(bad(format!("broker {unknown} is not registered")));
            }
            let isr: Vec<BrokerId> = replicas.iter().copied().filter(|r| self.is_unfenced(*r)).collect();
            let Some(&leader) = isr.first() else {
                return Err(bad(format!("no unfenced broker among {replicas:?}")));
            };
            out.push(PartitionState {
                replicas: replicas.clone(),
                leader,
                leader_epoch: 0,
                isr,
                partition_epoch: 0,
                adding_replicas: vec![],
                removing_replicas: vec![],
            });
        }
        Ok(out)
    }

    fn partition_mut(&mut self, topic: &str, partition: i32, epoch: i32) -> Result<&mut PartitionState, CommandError> {
        let unknown = || CommandError::UnknownPartition { topic: topic.to_string(), partition };
        let t = self.topics.get_mut(topic).ok_or_else(|| CommandError::UnknownTopic(topic.to_string()))?;
        let p = usize::try_from(partition).ok().and_then(|i| t.partitions.get_mut(i)).ok_or_else(unknown)?;
        if p.partition_epoch != epoch {
            return Err(CommandError::StalePartitionEpoch {
                topic: topic.to_string(),
                partition,
                current: p.partition_epoch,
                request: epoch,
            });
        }
        Ok(p)
    }

    fn change_leader(&mut self, topic: &str, partition: i32, epoch: i32, leader: BrokerId) -> CommandResult {
        let eligible = leader == NO_LEADER || self.is_unfenced(leader);
        let p = self.partition_mut(topic, partition, epoch)?;
        if leader != NO_LEADER && !p.isr.contains(&leader) {
            return Err(CommandError::IneligibleReplica(leader, format!("not in the ISR {:?}", p.isr)));
        }
        if !eligible {
            return Err(CommandError::IneligibleReplica(leader, "fenced or not registered".into()));
        }
        if p.leader != leader {
            p.leader = leader;
            p.leader_epoch += 1;
            p.partition_epoch += 1;
        }
        Ok(CommandOutcome::PartitionChanged { state: p.clone() })
    }

    fn change_isr(&mut self, topic: &str, partition: i32, epoch: i32, isr: &[BrokerId]) -> CommandResult {
        let ineligible = isr.iter().copied().find(|r| !self.is_unfenced(*r));
        let unfenced: BTreeSet<BrokerId> = self.unfenced_brokers().map(|b| b.id).collect();
        let p = self.partition_mut(topic, partition, epoch)?;
        if isr.is_empty() {
            return Err(CommandError::InvalidIsr("ISR must not be empty".into()));
        }
        let distinct: BTreeSet<_> = isr.iter().collect();
        if distinct.len() != isr.len() {
            return Err(CommandError::InvalidIsr(format!("duplicate broker in {isr:?}")));
        }
        if let Some(r) = isr.iter().find(|r| !p.replicas.contains(r)) {
            return Err(CommandError::InvalidIsr(format!("broker {r} is not a replica ({:?})", p.replicas)));
        }
        if p.leader != NO_LEADER && !isr.contains(&p.leader) {
            return Err(CommandError::InvalidIsr(format!("ISR {isr:?} leaves out the leader {}", p.leader)));
        }
        if let Some(r) = ineligible {
            return Err(CommandError::IneligibleReplica(r, "fenced or not registered".into()));
        }
        let before = p.clone();
        p.isr = isr.to_vec();
        complete_reassignment(p, &unfenced);
        if *p != before {
            p.partition_epoch += 1;
        }
        Ok(CommandOutcome::PartitionChanged { state: p.clone() })
    }

    /// Starts, replaces or (with `None`) cancels a partition's reassignment.
    fn reassign(&mut self, topic: &str, partition: i32, target: Option<&[BrokerId]>) -> CommandResult {
        if let Some(target) = target {
            let bad = |why: String| CommandError::InvalidReplicaAssignment(format!("{topic}-{partition}: {why}"));
            if target.is_empty() {
                return Err(bad("the new replica list is empty".into()));
            }
            if target.len() > i16::MAX as usize {
                return Err(bad(format!("{} replicas", target.len())));
            }
            let distinct: BTreeSet<_> = target.iter().collect();
            if distinct.len() != target.len() {
                return Err(bad(format!("duplicate broker in {target:?}")));
            }
            if let Some(unknown) = target.iter().find(|r| !self.brokers.contains_key(r)) {
                return Err(bad(format!("broker {unknown} is not registered")));
            }
        }
        let unfenced: BTreeSet<BrokerId> = self.unfenced_brokers().map(|b| b.id).collect();
        let t = self.topics.get_mut(topic).ok_or_else(|| CommandError::UnknownTopic(topic.to_string()))?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get_mut(i))
            .ok_or_else(|| CommandError::UnknownPartition { topic: topic.to_string(), partition })?;
        // The replicas before any move in progress: a new target replaces that move.
        let original: Vec<BrokerId> = p.replicas.iter().copied().filter(|r| !p.adding_replicas.contains(r)).collect();
        let target = match target {
            Some(t) => t.to_vec(),
            None if p.is_reassigning() => original.clone(),
            None => return Err(CommandError::NoReassignmentInProgress { topic: topic.to_string(), partition }),
        };
        let mut next = p.clone();
        next.adding_replicas = target.iter().copied().filter(|r| !original.contains(r)).collect();
        next.removing_replicas = original.iter().copied().filter(|r| !target.contains(r)).collect();
        next.replicas = target.iter().chain(&next.removing_replicas).copied().collect();
        // A cancelled move drops replicas that were being added from the ISR too.
        next.isr.retain(|r| next.replicas.contains(r));
        if next.isr.is_empty() {
            return Err(CommandError::InvalidReplicaAssignment(format!(
                "{topic}-{partition}: none of {:?} is in sync; the move cannot be undone",
                next.replicas
            )));
        }
        if !next.replicas.contains(&next.leader) {
            next.leader = next.replicas.iter().copied().find(|r| next.isr.contains(r) && unfenced.contains(r)).unwrap_or(NO_LEADER);
            next.leader_epoch += 1;
        }
        complete_reassignment(&mut next, &unfenced);
        if next != *p {
            next.partition_epoch = p.partition_epoch + 1;
            *p = next;
        }
        Ok(CommandOutcome::PartitionChanged { state: p.clone() })
    }
}

/// Finishes a reassignment once every added replica is in the ISR: the replicas
/// become the target, the removed ones leave the ISR, and leadership moves into the
/// target if it was outside. The partition epoch is the caller's to bump.
fn complete_reassignment(p: &mut PartitionState, unfenced: &BTreeSet<BrokerId>) {
    if !p.is_reassigning() || !p.adding_replicas.iter().all(|r| p.isr.contains(r)) {
        return;
    }
    let target = p.target_replicas();
    let isr: Vec<BrokerId> = p.isr.iter().copied().filter(|r| target.contains(r)).collect();
    if isr.is_empty() {
        // Nothing in the target is in sync (the move only drops replicas, and the
        // remaining ones lag): finishing now would lose the committed data.
        return;
    }
    p.replicas = target;
    p.isr = isr;
    p.adding_replicas.clear();
    p.removing_replicas.clear();
    if !p.replicas.contains(&p.leader) {
        p.leader = p.replicas.iter().copied().find(|r| p.isr.contains(r) && unfenced.contains(r)).unwrap_or(NO_LEADER);
        p.leader_epoch += 1;
    }
}

/// The topic config `unclean.leader.election.enable` (Kafka's default: false).
fn allows_unclean_election(configs: &BTreeMap<String, String>) -> bool {
    configs.get("unclean.leader.election.enable").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// A leaderless partition whose ISR is all gone takes the first live replica as
/// leader, with an ISR of just that replica: availability over the records only
/// the lost ISR held, which is what the topic asked for. The caller bumps the epochs.
fn elect_unclean(p: &mut PartitionState, unfenced: &BTreeSet<BrokerId>) -> bool {
    let Some(l) = p.replicas.iter().copied().find(|r| unfenced.contains(r)) else { return false };
    p.leader = l;
    p.isr = vec![l];
    true
}

/// As Kafka's controller: "" (the cluster default) or a non-negative broker id,
/// registered or not.
fn validate_broker_resource(name: &str) -> Result<(), CommandError> {
    if name.is_empty() {
        return Ok(());
    }
    match name.parse::<i32>() {
        Ok(id) if id >= 0 => Ok(()),
        Ok(_) => Err(CommandError::InvalidRequest("Invalid negative broker ID.".into())),
        Err(_) => Err(CommandError::InvalidRequest("Unable to parse broker name as a base 10 number.".into())),
    }
}

fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), CommandError> {
    if configs.keys().any(|k| k.trim().is_empty()) {
        return Err(CommandError::InvalidConfig("config name must not be empty".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
