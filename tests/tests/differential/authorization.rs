//! Authorization answers compared with Kafka's: one Kafka 4.4 and one Karst, each with
//! the ACL authorizer (`StandardAuthorizer`) and `allow.everyone.if.no.acl.found=true`,
//! get the same ACLs for the clients' principal (User:ANONYMOUS on PLAINTEXT) through
//! CreateAcls, then the same requests; each answer is compared field by field.
//! Resources without ACLs stay open (so the ACLs themselves can be created); the
//! denials below decide the rest.

use std::fmt::Debug;

use anyhow::{Context, Result};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateAclsRequest, CreateTopicsRequest, DeleteAclsRequest, DeleteTopicsRequest, DescribeAclsRequest,
    FindCoordinatorRequest, GroupId, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;
use karst_tests::fields::{Kept, Rules};
use karst_tests::raw::{produce_request, record_batch, topic_name};
use karst_tests::unique_topic;

use super::responses::{Compared, Runner};
use super::Pair;

const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;
const READ: i8 = 3;
const WRITE: i8 = 4;
const CREATE: i8 = 5;
const DELETE: i8 = 6;
const DESCRIBE: i8 = 8;

fn ignored() -> Vec<(&'static str, &'static str)> {
    vec![
        ("throttle_time_ms", "time a broker throttled the client"),
        ("brokers*", "each broker's own host and port"),
        ("cluster_id", "generated per cluster"),
        ("controller_id", "broker ids"),
        ("*leader_id", "broker ids"),
        ("*replica_nodes*", "broker ids"),
        ("*isr_nodes*", "broker ids"),
        ("*offline_replicas*", "broker ids"),
        ("*topic_id", "generated per topic"),
        ("node_id", "broker ids"),
        ("host", "each broker's own address"),
        ("port", "each broker's own address"),
        ("coordinators[*].node_id", "broker ids"),
        ("coordinators[*].host", "each broker's own address"),
        ("coordinators[*].port", "each broker's own address"),
        ("*log_append_time_ms", "clock"),
        ("*timestamp", "clock"),
        ("*log_start_offset", "Kafka's first produce to a new partition may answer before its log start is known"),
    ]
}

fn kept() -> Vec<Kept> {
    Vec::new()
}

fn acl(resource_type: i8, name: &str, pattern: i8, operation: i8, permission: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_resource_pattern_type(pattern)
        .with_principal(StrBytes::from_static_str("User:ANONYMOUS"))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(operation)
        .with_permission_type(permission)
}

fn boxed<T: Debug + 'static>(r: T) -> Result<Box<dyn Debug>> {
    Ok(Box::new(r))
}

fn metadata_of(names: &[&str]) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(names.iter().map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n)))).collect()))
        .with_allow_auto_topic_creation(false)
        .with_include_topic_authorized_operations(true)
}

pub(super) fn run(pair: &mut Pair) -> Result<Vec<Compared>> {
    let base = unique_topic("diff-acl");
    let (open, denied, hidden) = (format!("{base}-open"), format!("{base}-denied"), format!("{base}-hidden"));
    let (group_denied, group_open) = (format!("{base}-g-denied"), format!("{base}-g-open"));
    let no_create = format!("{base}-nocreate-");
    for (side, c) in [("Kafka", &mut pair.kafka), ("Karst", &mut pair.karst)] {
        for t in [&open, &denied, &hidden] {
            c.create_topic(t, 1, &[]).with_context(|| format!("creating {t} on {side}"))?;
            super::wait_leaders(c, t, 1, side)?;
        }
    }
    let acls = vec![
        acl(TOPIC, &denied, LITERAL, WRITE, DENY),
        acl(TOPIC, &denied, LITERAL, DELETE, DENY),
        acl(TOPIC, &hidden, LITERAL, DESCRIBE, DENY),
        acl(TOPIC, &open, LITERAL, READ, ALLOW),
        acl(GROUP, &group_denied, LITERAL, READ, DENY),
        acl(TOPIC, &no_create, PREFIXED, CREATE, DENY),
    ];
    let mut r = Runner::new(pair, Rules { ignore: ignored(), kept: kept() });
    // The ACLs, created at the lowest and the highest version both serve (the second
    // time they exist already: taken again, as Kafka does), compared.
    r.run_ends("CreateAcls, the scenario's ACLs", ApiKey::CreateAcls, 1, &[], &|c, v, _| {
        boxed(c.send(&CreateAclsRequest::default().with_creations(acls.clone()), v)?)
    })?;
    r.run_ends("DescribeAcls, every ACL (ANY filter)", ApiKey::DescribeAcls, 1, &[], &|c, v, _| {
        let filter = DescribeAclsRequest::default()
            .with_resource_type_filter(1)
            .with_resource_name_filter(None)
            .with_pattern_type_filter(1)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_operation(1)
            .with_permission_type(1);
        let mut resp = c.send(&filter, v)?;
        for res in resp.resources.iter_mut() {
            res.acls.sort_by_key(|a| (a.operation, a.permission_type));
        }
        resp.resources.sort_by(|a, b| a.resource_name.cmp(&b.resource_name));
        boxed(resp)
    })?;

    let produce = |topic: &str| produce_request(topic, 0, record_batch(&[(Some(b"k"), Some(b"v"))], 1_700_000_000_000));
    r.run_ends("Produce, a topic whose WRITE is denied", ApiKey::Produce, 3, &[], &|c, v, _| boxed(c.send(&produce(&denied), v)?))?;
    r.run_ends("Produce, an open topic", ApiKey::Produce, 3, &[], &|c, v, _| boxed(c.send(&produce(&open), v)?))?;
    r.run_ends("Metadata, three topics, one not describable", ApiKey::Metadata, 8, &[("topics", "name")], &|c, v, _| {
        boxed(c.send(&metadata_of(&[&open, &denied, &hidden]), v)?)
    })?;
    r.run_ends("Metadata, all topics, the scenario's kept", ApiKey::Metadata, 8, &[("topics", "name")], &|c, v, _| {
        let mut resp = c.send(&MetadataRequest::default().with_topics(None).with_include_topic_authorized_operations(true), v)?;
        resp.topics.retain(|t| t.name.as_ref().is_some_and(|n| n.as_str().starts_with(&base)));
        boxed(resp)
    })?;
    r.run_ends("ListOffsets, a topic not describable and an open one", ApiKey::ListOffsets, 1, &[("topics", "name")], &|c, v, _| {
        let topics = [&hidden, &open]
            .iter()
            .map(|t| {
                ListOffsetsTopic::default()
                    .with_name(topic_name(t))
                    .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2)])
            })
            .collect();
        boxed(c.send(&ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics), v)?)
    })?;
    r.run_ends("FindCoordinator, a group whose READ is denied (DESCRIBE is not)", ApiKey::FindCoordinator, 0, &[], &|c, v, _| {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![StrBytes::from_string(group_denied.clone())])
        } else {
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group_denied.clone()))
        };
        boxed(c.send(&req, v)?)
    })?;
    let commit = |group: &str, topic: &str| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(0)])])
    };
    r.run_ends("OffsetCommit, a group whose READ is denied", ApiKey::OffsetCommit, 2, &[], &|c, v, _| {
        boxed(c.send(&commit(&group_denied, &open), v)?)
    })?;
    r.run_ends("OffsetCommit, an open group, a topic not describable", ApiKey::OffsetCommit, 2, &[], &|c, v, _| {
        boxed(c.send(&commit(&group_open, &hidden), v)?)
    })?;
    r.run_ends("OffsetFetch, a group whose READ is denied", ApiKey::OffsetFetch, 1, &[], &|c, v, _| {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group_denied.clone())))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(topic_name(&open)).with_partition_indexes(vec![0])]));
        boxed(c.send(&req, v.min(7))?)
    })?;
    r.run_ends("CreateTopics, a prefix whose CREATE is denied, validate only", ApiKey::CreateTopics, 2, &[], &|c, v, _| {
        let t = CreatableTopic::default().with_name(topic_name(&format!("{no_create}x"))).with_num_partitions(1).with_replication_factor(1);
        boxed(c.send(&CreateTopicsRequest::default().with_topics(vec![t]).with_validate_only(true).with_timeout_ms(10_000), v)?)
    })?;
    // Kafka's controller lets DELETE on the cluster (open here: no ACL on it) delete any
    // topic, its own DELETE denied or not: deleted by the first version, unknown after.
    r.run_ends("DeleteTopics, a topic whose DELETE is denied (the cluster's is not)", ApiKey::DeleteTopics, 1, &[], &|c, v, _| {
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default().with_name(Some(topic_name(&denied)))])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&denied)])
        };
        boxed(c.send(&req.with_timeout_ms(10_000), v)?)
    })?;
    // The ACLs go, compared as DeleteAcls lists them (by resource, then operation); the
    // second version finds none left.
    r.run_ends("DeleteAcls, the scenario's ACLs by type", ApiKey::DeleteAcls, 1, &[], &|c, v, _| {
        // Only this scenario's ACLs exist on these two brokers: every one of each type.
        let filter = |t: i8| {
            DeleteAclsFilter::default()
                .with_resource_type_filter(t)
                .with_resource_name_filter(None)
                .with_pattern_type_filter(1)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_operation(1)
                .with_permission_type(1)
        };
        let mut resp = c.send(&DeleteAclsRequest::default().with_filters(vec![filter(TOPIC), filter(GROUP)]), v)?;
        for f in resp.filter_results.iter_mut() {
            f.matching_acls.sort_by(|a, b| {
                (&a.resource_name, a.operation, a.permission_type).cmp(&(&b.resource_name, b.operation, b.permission_type))
            });
        }
        boxed(resp)
    })?;
    Ok(r.out)
}

/// Prints every comparison; how many differ or failed.
pub(super) fn report(compared: &[Compared]) -> Result<usize> {
    let (_, unlisted, _, failed) = super::responses::report_as("authorization answers field by field", compared, &kept())?;
    Ok(unlisted + failed)
}
