//! Every advertised version of the group APIs against an in-process broker: a
//! member joins, syncs, heartbeats, commits, fetches offsets and leaves.

mod support;

use karst_broker::{Broker, BrokerConfig};
use support::start;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use karst_protocol::api_versions::support;
use karst_protocol::error_codes as ec;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn clamp(key: ApiKey, v: i16) -> i16 {
    let r = support(key).expect("supported");
    v.clamp(r.min, r.max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_apis_at_every_advertised_version() {
    let (dir, broker, mut c) = start(|c| {
        c.group_initial_rebalance_delay_ms = 0;
        c.offsets_topic_num_partitions = 3;
    })
    .await;
    let topic =
        CreateTopicsRequest::default().with_topics(vec![kafka_protocol::messages::create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s("t")))
            .with_num_partitions(2)
            .with_replication_factor(1)]);
    c.call(ApiKey::CreateTopics, 5, RequestKind::CreateTopics(topic)).await;

    let join = support(ApiKey::JoinGroup).expect("join");
    for v in join.min..=join.max {
        let group = format!("g{v}");
        let fv = clamp(ApiKey::FindCoordinator, v);
        let find = if fv >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s(&group)])
        } else {
            FindCoordinatorRequest::default().with_key(s(&group))
        };
        let ResponseKind::FindCoordinator(f) = c.call(ApiKey::FindCoordinator, fv, RequestKind::FindCoordinator(find)).await else {
            panic!()
        };
        let node = if fv >= 4 { f.coordinators[0].node_id } else { f.node_id };
        assert_eq!(node.0, broker.node_id, "FindCoordinator v{fv}");

        let req = |member: &str| {
            JoinGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(s(member))
                .with_group_instance_id(None)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(b"\0\0\0\0\0\x01\0\x01t"))])
        };
        let ResponseKind::JoinGroup(mut j) = c.call(ApiKey::JoinGroup, v, RequestKind::JoinGroup(req(""))).await else { panic!() };
        if v >= 4 {
            assert_eq!(j.error_code, ec::MEMBER_ID_REQUIRED, "JoinGroup v{v}");
            let id = j.member_id.to_string();
            let ResponseKind::JoinGroup(j2) = c.call(ApiKey::JoinGroup, v, RequestKind::JoinGroup(req(&id))).await else { panic!() };
            j = j2;
        }
        assert_eq!(j.error_code, 0, "JoinGroup v{v}");
        assert_eq!(j.generation_id, 1);
        assert_eq!(j.leader, j.member_id);
        assert_eq!(j.members.len(), 1);
        let member = j.member_id.clone();

        let sv = clamp(ApiKey::SyncGroup, v);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(1)
            .with_member_id(member.clone())
            .with_group_instance_id(None)
            .with_protocol_type(if sv >= 5 { Some(s("consumer")) } else { None })
            .with_protocol_name(if sv >= 5 { Some(s("range")) } else { None })
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(Bytes::from_static(b"A"))]);
        let ResponseKind::SyncGroup(sr) = c.call(ApiKey::SyncGroup, sv, RequestKind::SyncGroup(sync)).await else { panic!() };
        assert_eq!(sr.error_code, 0, "SyncGroup v{sv}");
        assert_eq!(sr.assignment, Bytes::from_static(b"A"));

        let hv = clamp(ApiKey::Heartbeat, v);
        let hb = |generation: i32| {
            HeartbeatRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id(generation)
                .with_member_id(member.clone())
                .with_group_instance_id(None)
        };
        let ResponseKind::Heartbeat(h) = c.call(ApiKey::Heartbeat, hv, RequestKind::Heartbeat(hb(1))).await else { panic!() };
        assert_eq!(h.error_code, 0, "Heartbeat v{hv}");
        let ResponseKind::Heartbeat(h) = c.call(ApiKey::Heartbeat, hv, RequestKind::Heartbeat(hb(9))).await else { panic!() };
        assert_eq!(h.error_code, ec::ILLEGAL_GENERATION, "Heartbeat v{hv}");

        // v0 carries no generation: it is a commit outside membership, checked below.
        let cv = clamp(ApiKey::OffsetCommit, v.max(1));
        let commit = |partition: i32, generation: i32| {
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(member.clone())
                .with_group_instance_id(None)
                .with_topics(vec![OffsetCommitRequestTopic::default().with_name(TopicName(s("t"))).with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(40 + v as i64)
                        .with_committed_metadata(Some(s("m"))),
                ])])
        };
        let ResponseKind::OffsetCommit(oc) = c.call(ApiKey::OffsetCommit, cv, RequestKind::OffsetCommit(commit(1, 1))).await else {
            panic!()
        };
        assert_eq!(oc.topics[0].partitions[0].error_code, 0, "OffsetCommit v{cv}");
        let ResponseKind::OffsetCommit(oc) = c.call(ApiKey::OffsetCommit, cv, RequestKind::OffsetCommit(commit(7, 1))).await else {
            panic!()
        };
        assert_eq!(oc.topics[0].partitions[0].error_code, ec::UNKNOWN_TOPIC_OR_PARTITION);
        let ResponseKind::OffsetCommit(oc) = c.call(ApiKey::OffsetCommit, cv, RequestKind::OffsetCommit(commit(1, 5))).await else {
            panic!()
        };
        assert_eq!(oc.topics[0].partitions[0].error_code, ec::ILLEGAL_GENERATION);

        let fv = clamp(ApiKey::OffsetFetch, v);
        let fetch = if fv >= 8 {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(&group)))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1])]))])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(TopicName(s("t"))).with_partition_indexes(vec![0, 1])]))
        };
        let ResponseKind::OffsetFetch(of) = c.call(ApiKey::OffsetFetch, fv, RequestKind::OffsetFetch(fetch)).await else { panic!() };
        let offsets: Vec<i64> = if fv >= 8 {
            of.groups[0].topics[0].partitions.iter().map(|p| p.committed_offset).collect()
        } else {
            of.topics[0].partitions.iter().map(|p| p.committed_offset).collect()
        };
        assert_eq!(offsets, vec![-1, 40 + v as i64], "OffsetFetch v{fv}");

        let lv = clamp(ApiKey::LeaveGroup, v);
        let leave = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_members(vec![MemberIdentity::default().with_member_id(member.clone())])
        } else {
            LeaveGroupRequest::default().with_group_id(GroupId(s(&group))).with_member_id(member.clone())
        };
        let ResponseKind::LeaveGroup(l) = c.call(ApiKey::LeaveGroup, lv, RequestKind::LeaveGroup(leave)).await else { panic!() };
        let code = if lv >= 3 { l.members[0].error_code } else { l.error_code };
        assert_eq!(code, 0, "LeaveGroup v{lv}");
    }

    // OffsetCommit v0: no generation or member, allowed for a group nobody is in.
    let standalone = OffsetCommitRequest::default().with_group_id(GroupId(s("standalone"))).with_group_instance_id(None).with_topics(vec![
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(5)]),
    ]);
    let ResponseKind::OffsetCommit(oc) = c.call(ApiKey::OffsetCommit, 0, RequestKind::OffsetCommit(standalone)).await else { panic!() };
    assert_eq!(oc.topics[0].partitions[0].error_code, 0, "OffsetCommit v0");
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("standalone")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(TopicName(s("t"))).with_partition_indexes(vec![0])]));
    let ResponseKind::OffsetFetch(of) = c.call(ApiKey::OffsetFetch, 1, RequestKind::OffsetFetch(fetch)).await else { panic!() };
    assert_eq!(of.topics[0].partitions[0].committed_offset, 5);

    let lg = support(ApiKey::ListGroups).expect("list");
    for v in lg.min..=lg.max {
        let ResponseKind::ListGroups(r) = c.call(ApiKey::ListGroups, v, RequestKind::ListGroups(ListGroupsRequest::default())).await else {
            panic!()
        };
        assert_eq!(r.groups.len(), (join.max - join.min + 2) as usize, "ListGroups v{v}");
    }
    let dg = support(ApiKey::DescribeGroups).expect("describe");
    for v in dg.min..=dg.max {
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g0"))]);
        let ResponseKind::DescribeGroups(r) = c.call(ApiKey::DescribeGroups, v, RequestKind::DescribeGroups(req)).await else { panic!() };
        assert_eq!(r.groups[0].group_state.as_str(), "Empty", "DescribeGroups v{v}");
    }
    let od = OffsetDeleteRequest::default().with_group_id(GroupId(s("g0"))).with_topics(vec![OffsetDeleteRequestTopic::default()
        .with_name(TopicName(s("t")))
        .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(1)])]);
    let ResponseKind::OffsetDelete(r) = c.call(ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(od)).await else { panic!() };
    assert_eq!(r.error_code, 0);
    let del = support(ApiKey::DeleteGroups).expect("delete");
    for v in del.min..=del.max {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&format!("g{v}"))), GroupId(s("nope"))]);
        let ResponseKind::DeleteGroups(r) = c.call(ApiKey::DeleteGroups, v, RequestKind::DeleteGroups(req)).await else { panic!() };
        assert_eq!(r.results[0].error_code, 0, "DeleteGroups v{v}");
        assert_eq!(r.results[1].error_code, ec::GROUP_ID_NOT_FOUND);
        // v3's ErrorMessage: Kafka fills it only for streams groups, so a classic
        // group's refusal carries none.
        assert_eq!(r.results[1].error_message, None, "DeleteGroups v{v}");
    }

    // Offsets survive a restart: reopen the same directory.
    broker.shutdown();
    drop(broker);
    drop(c);
    let config = BrokerConfig { data_dir: dir.path().to_path_buf(), offsets_topic_num_partitions: 3, ..Default::default() };
    let reopened = Broker::open(config).expect("shutdown released the data directory");
    let entries = reopened.groups.entries_snapshot();
    assert!(!entries.iter().any(|(g, _)| g == "g0" || g == "g1" || g == "g2"), "deleted groups stay deleted");
    let g5 = entries.iter().find(|(g, _)| g == "g5").expect("g5 survived");
    assert_eq!(g5.1, vec![("t".to_string(), 1, 45)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_group_requests_get_kafkas_errors() {
    let (_dir, _broker, mut c) = start(|c| {
        c.group_initial_rebalance_delay_ms = 0;
        c.offsets_topic_num_partitions = 3;
    })
    .await;
    let join = |group: &str, member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member))
            .with_group_instance_id(None)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(Bytes::new())])
    };
    let too_long = "g".repeat(40_000);
    for (group, expected) in [("", ec::INVALID_GROUP_ID), (too_long.as_str(), ec::INVALID_GROUP_ID)] {
        let ResponseKind::JoinGroup(j) = c.call(ApiKey::JoinGroup, 9, RequestKind::JoinGroup(join(group, ""))).await else { panic!() };
        assert_eq!(j.error_code, expected, "group id of {} bytes", group.len());
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_group_instance_id(None)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1)])]);
        let ResponseKind::OffsetCommit(oc) = c.call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit)).await else { panic!() };
        assert_eq!(oc.topics[0].partitions[0].error_code, expected);
    }
    // A member id the group never handed out.
    let ResponseKind::JoinGroup(j) = c.call(ApiKey::JoinGroup, 9, RequestKind::JoinGroup(join("real", "ghost"))).await else { panic!() };
    assert_eq!(j.error_code, ec::UNKNOWN_MEMBER_ID);
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s("real")))
        .with_generation_id(1)
        .with_member_id(s("ghost"))
        .with_group_instance_id(None);
    let ResponseKind::Heartbeat(h) = c.call(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(hb)).await else { panic!() };
    assert_eq!(h.error_code, ec::UNKNOWN_MEMBER_ID);
    // A session timeout outside the broker's bounds.
    let ResponseKind::JoinGroup(j) =
        c.call(ApiKey::JoinGroup, 9, RequestKind::JoinGroup(join("real", "").with_session_timeout_ms(10))).await
    else {
        panic!()
    };
    assert_eq!(j.error_code, ec::INVALID_SESSION_TIMEOUT);
    // Commit with a member id into a group that has no such member.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("nogroup")))
        .with_generation_id_or_member_epoch(3)
        .with_member_id(s("ghost"))
        .with_group_instance_id(None)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1)])]);
    let ResponseKind::OffsetCommit(oc) = c.call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit)).await else { panic!() };
    assert_eq!(oc.topics[0].partitions[0].error_code, ec::ILLEGAL_GENERATION);
}
