use proptest::prelude::*;

use super::*;

fn listener(port: u16) -> Vec<Listener> {
    vec![Listener { name: "PLAINTEXT".into(), host: "127.0.0.1".into(), port }]
}

fn register(md: &mut ClusterMetadata, id: BrokerId) -> i64 {
    let r = md.apply(&MetadataCommand::RegisterBroker {
        broker_id: id,
        incarnation_id: Uuid::from_u128(id as u128 + 1000),
        listeners: listener(9000 + id as u16),
        rack: None,
    });
    let Ok(CommandOutcome::BrokerRegistered { broker_epoch }) = r else { panic!("{r:?}") };
    assert_eq!(md.apply(&MetadataCommand::UnfenceBroker { broker_id: id, broker_epoch }), Ok(CommandOutcome::BrokerUnfenced));
    broker_epoch
}

fn create(md: &mut ClusterMetadata, name: &str, id: u128, assignments: Vec<Vec<BrokerId>>) -> CommandResult {
    md.apply(&MetadataCommand::CreateTopic { name: name.into(), topic_id: Uuid::from_u128(id), configs: BTreeMap::new(), assignments })
}

fn three_brokers() -> (ClusterMetadata, Vec<i64>) {
    let mut md = ClusterMetadata::default();
    let epochs = (1..=3).map(|id| register(&mut md, id)).collect();
    (md, epochs)
}

#[test]
fn broker_registration_epochs_and_retries() {
    let mut md = ClusterMetadata::default();
    let e1 = register(&mut md, 1);
    assert!(!md.broker(1).unwrap().fenced);
    // Same incarnation: idempotent, still unfenced.
    let again = md.apply(&MetadataCommand::RegisterBroker {
        broker_id: 1,
        incarnation_id: Uuid::from_u128(1001),
        listeners: listener(1),
        rack: None,
    });
    assert_eq!(again, Ok(CommandOutcome::BrokerRegistered { broker_epoch: e1 }));
    assert!(!md.broker(1).unwrap().fenced);
    // New incarnation: new epoch, fenced, old epoch stale.
    let r = md.apply(&MetadataCommand::RegisterBroker {
        broker_id: 1,
        incarnation_id: Uuid::from_u128(5),
        listeners: listener(2),
        rack: Some("r".into()),
    });
    let Ok(CommandOutcome::BrokerRegistered { broker_epoch: e2 }) = r else { panic!() };
    assert!(e2 > e1);
    assert!(md.broker(1).unwrap().fenced);
    assert_eq!(md.broker(1).unwrap().rack.as_deref(), Some("r"));
    assert!(matches!(
        md.apply(&MetadataCommand::UnfenceBroker { broker_id: 1, broker_epoch: e1 }),
        Err(CommandError::StaleBrokerEpoch { .. })
    ));
    assert_eq!(md.apply(&MetadataCommand::FenceBroker { broker_id: 9, broker_epoch: 0 }), Err(CommandError::UnknownBroker(9)));
    assert!(md
        .apply(&MetadataCommand::RegisterBroker { broker_id: -1, incarnation_id: Uuid::nil(), listeners: vec![], rack: None })
        .is_err());
}

#[test]
fn create_topic_validates_and_sets_leaders() {
    let (mut md, _) = three_brokers();
    let a = md.assign_partitions(12, 3).unwrap();
    assert_eq!(create(&mut md, "t", 1, a.clone()), Ok(CommandOutcome::TopicCreated { topic_id: Uuid::from_u128(1) }));
    let t = md.topic("t").unwrap();
    assert_eq!(t.partitions.len(), 12);
    for (p, r) in t.partitions.iter().zip(&a) {
        assert_eq!(&p.replicas, r);
        assert_eq!(p.leader, r[0]);
        assert_eq!(&p.isr, r);
    }
    let before = md.clone();
    assert_eq!(create(&mut md, "t", 2, a.clone()), Err(CommandError::TopicExists("t".into())));
    assert!(matches!(create(&mut md, "u", 1, a.clone()), Err(CommandError::DuplicateTopicId(..))));
    assert!(matches!(create(&mut md, "bad/name", 3, a.clone()), Err(CommandError::InvalidTopicName(_))));
    assert!(matches!(create(&mut md, "u", 0, a.clone()), Err(CommandError::InvalidRequest(_))));
    assert!(matches!(create(&mut md, "u", 3, vec![]), Err(CommandError::InvalidPartitions(_))));
    assert!(matches!(create(&mut md, "u", 3, vec![vec![1, 1]]), Err(CommandError::InvalidReplicaAssignment(_))));
    assert!(matches!(create(&mut md, "u", 3, vec![vec![1], vec![1, 2]]), Err(CommandError::InvalidReplicaAssignment(_))));
    assert!(matches!(create(&mut md, "u", 3, vec![vec![7]]), Err(CommandError::InvalidReplicaAssignment(_))));
    assert!(matches!(create(&mut md, "u", 3, vec![vec![]]), Err(CommandError::InvalidReplicationFactor(_))));
    assert_eq!(md, before, "rejected commands change nothing");
}

#[test]
fn delete_create_partitions_and_configs() {
    let (mut md, _) = three_brokers();
    create(&mut md, "t", 1, vec![vec![1, 2]]).unwrap();
    assert_eq!(
        md.apply(&MetadataCommand::CreatePartitions { name: "t".into(), assignments: vec![vec![2, 3], vec![3, 1]] }),
        Ok(CommandOutcome::PartitionsCreated { partition_count: 3 })
    );
    assert!(matches!(
        md.apply(&MetadataCommand::CreatePartitions { name: "t".into(), assignments: vec![vec![2]] }),
        Err(CommandError::InvalidReplicaAssignment(_))
    ));
    assert!(matches!(
        md.apply(&MetadataCommand::CreatePartitions { name: "t".into(), assignments: vec![] }),
        Err(CommandError::InvalidPartitions(_))
    ));
    assert!(matches!(
        md.apply(&MetadataCommand::CreatePartitions { name: "x".into(), assignments: vec![vec![1, 2]] }),
        Err(CommandError::UnknownTopic(_))
    ));
    let set = BTreeMap::from([("retention.ms".to_string(), "10".to_string()), ("cleanup.policy".into(), "compact".into())]);
    md.apply(&MetadataCommand::AlterTopicConfig { name: "t".into(), set, remove: vec![] }).unwrap();
    md.apply(&MetadataCommand::AlterTopicConfig {
        name: "t".into(),
        set: BTreeMap::new(),
        remove: vec!["cleanup.policy".into(), "absent".into()],
    })
    .unwrap();
    assert_eq!(md.topic("t").unwrap().configs, BTreeMap::from([("retention.ms".to_string(), "10".to_string())]));
    assert!(matches!(
        md.apply(&MetadataCommand::AlterTopicConfig {
            name: "t".into(),
            set: BTreeMap::from([(" ".to_string(), "v".to_string())]),
            remove: vec![]
        }),
        Err(CommandError::InvalidConfig(_))
    ));
    assert_eq!(
        md.apply(&MetadataCommand::DeleteTopic { name: "t".into() }),
        Ok(CommandOutcome::TopicDeleted { topic_id: Uuid::from_u128(1) })
    );
    assert_eq!(md.apply(&MetadataCommand::DeleteTopic { name: "t".into() }), Err(CommandError::UnknownTopic("t".into())));
    // The name and the id are free again.
    create(&mut md, "t", 1, vec![vec![3]]).unwrap();
}

#[test]
fn leader_and_isr_changes_check_partition_epoch() {
    let (mut md, _) = three_brokers();
    create(&mut md, "t", 1, vec![vec![1, 2, 3]]).unwrap();
    let shrink = MetadataCommand::ChangePartitionIsr { topic: "t".into(), partition: 0, partition_epoch: 0, isr: vec![1, 2] };
    let Ok(CommandOutcome::PartitionChanged { state }) = md.apply(&shrink) else { panic!() };
    assert_eq!((state.isr.clone(), state.partition_epoch, state.leader_epoch), (vec![1, 2], 1, 0));
    // The same change again carries a stale epoch.
    assert!(matches!(md.apply(&shrink), Err(CommandError::StalePartitionEpoch { current: 1, request: 0, .. })));
    let elect = |leader, epoch| MetadataCommand::ChangePartitionLeader { topic: "t".into(), partition: 0, partition_epoch: epoch, leader };
    assert!(matches!(md.apply(&elect(3, 1)), Err(CommandError::IneligibleReplica(3, _))));
    let Ok(CommandOutcome::PartitionChanged { state }) = md.apply(&elect(2, 1)) else { panic!() };
    assert_eq!((state.leader, state.leader_epoch, state.partition_epoch), (2, 1, 2));
    assert!(matches!(md.apply(&elect(1, 1)), Err(CommandError::StalePartitionEpoch { .. })));
    let isr = |isr: Vec<BrokerId>| MetadataCommand::ChangePartitionIsr { topic: "t".into(), partition: 0, partition_epoch: 2, isr };
    assert!(matches!(md.apply(&isr(vec![1])), Err(CommandError::InvalidIsr(_))), "leader left out");
    assert!(matches!(md.apply(&isr(vec![2, 4])), Err(CommandError::InvalidIsr(_))), "not a replica");
    assert!(matches!(md.apply(&isr(vec![])), Err(CommandError::InvalidIsr(_))));
    assert!(matches!(md.apply(&isr(vec![2, 2])), Err(CommandError::InvalidIsr(_))));
    assert!(matches!(
        md.apply(&MetadataCommand::ChangePartitionIsr { topic: "t".into(), partition: 5, partition_epoch: 0, isr: vec![1] }),
        Err(CommandError::UnknownPartition { .. })
    ));
    assert!(matches!(
        md.apply(&MetadataCommand::ChangePartitionIsr { topic: "x".into(), partition: 0, partition_epoch: 0, isr: vec![1] }),
        Err(CommandError::UnknownTopic(_))
    ));
}

#[test]
fn fencing_moves_leaders_and_rf1_goes_offline_then_returns() {
    let (mut md, epochs) = three_brokers();
    create(&mut md, "r3", 1, vec![vec![1, 2, 3]]).unwrap();
    create(&mut md, "r1", 2, vec![vec![1], vec![2]]).unwrap();
    md.apply(&MetadataCommand::FenceBroker { broker_id: 1, broker_epoch: epochs[0] }).unwrap();
    let p = md.partition("r3", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch), (2, vec![2, 3], 1, 1));
    let p = md.partition("r1", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (NO_LEADER, vec![1], 1), "rf 1 goes offline");
    assert_eq!(md.partition("r1", 1).unwrap().leader, 2, "untouched");
    // A fenced broker cannot lead or join an ISR; placement avoids it.
    assert!(matches!(create(&mut md, "x", 9, vec![vec![1]]), Err(CommandError::InvalidReplicaAssignment(_))));
    assert!(md.assign_partitions(6, 2).unwrap().iter().flatten().all(|b| *b != 1));
    md.apply(&MetadataCommand::UnfenceBroker { broker_id: 1, broker_epoch: epochs[0] }).unwrap();
    let p = md.partition("r1", 0).unwrap();
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 2, 2), "rf 1 partition is back");
    assert_eq!(md.partition("r3", 0).unwrap().leader, 2, "a led partition keeps its new leader");
}

#[test]
fn offline_replicas_leave_isr_and_leadership_checked_against_the_broker_epoch() {
    let (mut md, epochs) = three_brokers();
    create(&mut md, "r3", 1, vec![vec![1, 2, 3], vec![2, 1, 3], vec![2, 3, 1]]).unwrap();
    create(&mut md, "r1", 2, vec![vec![1]]).unwrap();
    let offline = |epoch, partitions: &[(&str, i32)]| MetadataCommand::MarkReplicasOffline {
        broker_id: 1,
        broker_epoch: epoch,
        partitions: partitions.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
    };
    let all = [("r3", 0), ("r3", 1), ("r1", 0), ("gone", 0), ("r3", 7)];
    let stale = md.apply(&offline(epochs[0] + 1, &all));
    assert!(matches!(stale, Err(CommandError::StaleBrokerEpoch { .. })), "{stale:?}");
    assert_eq!(md.partition("r3", 0).unwrap().leader, 1, "a stale report changes nothing");
    assert_eq!(md.apply(&offline(epochs[0], &all)), Ok(CommandOutcome::ReplicasMarkedOffline { changed: 3 }));
    let p = md.partition("r3", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch), (2, vec![2, 3], 1, 1), "led: moved");
    let p = md.partition("r3", 1).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch), (2, vec![2, 3], 0, 1), "followed: out of the ISR");
    let p = md.partition("r1", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (NO_LEADER, vec![1], 1), "sole copy: no leader, still the ISR");
    assert_eq!(md.partition("r3", 2).unwrap().isr, vec![2, 3, 1], "not named: untouched");
    assert!(md.broker(1).is_some_and(|b| !b.fenced), "the broker still serves its healthy partitions");
    assert_eq!(md.apply(&offline(epochs[0], &all)), Ok(CommandOutcome::ReplicasMarkedOffline { changed: 0 }), "idempotent");
}

#[test]
fn reassignment_adds_catches_up_then_drops() {
    let (mut md, _) = three_brokers();
    register(&mut md, 4);
    create(&mut md, "t", 1, vec![vec![1, 2, 3]]).unwrap();
    let move_to = |target: Option<Vec<BrokerId>>| MetadataCommand::ReassignPartition { topic: "t".into(), partition: 0, target };
    let Ok(CommandOutcome::PartitionChanged { state }) = md.apply(&move_to(Some(vec![4, 2, 3]))) else { panic!() };
    assert_eq!(state.replicas, vec![4, 2, 3, 1], "the target first, then the replicas to drop");
    assert_eq!((state.adding_replicas.clone(), state.removing_replicas.clone()), (vec![4], vec![1]));
    assert_eq!((state.leader, state.isr.clone(), state.partition_epoch), (1, vec![1, 2, 3], 1), "nothing moves yet");
    // Broker 4 catches up: the leader asks for it in the ISR, which completes the move.
    let isr = |epoch, isr| MetadataCommand::ChangePartitionIsr { topic: "t".into(), partition: 0, partition_epoch: epoch, isr };
    let Ok(CommandOutcome::PartitionChanged { state }) = md.apply(&isr(1, vec![1, 2, 3, 4])) else { panic!() };
    assert_eq!(state.replicas, vec![4, 2, 3]);
    assert_eq!(state.isr, vec![2, 3, 4]);
    assert!(!state.is_reassigning());
    assert_eq!((state.leader, state.leader_epoch, state.partition_epoch), (4, 1, 2), "leadership moved into the target");
    assert!(matches!(md.apply(&move_to(None)), Err(CommandError::NoReassignmentInProgress { .. })));
    assert_eq!(CommandError::NoReassignmentInProgress { topic: "t".into(), partition: 0 }.kafka_error_code(), 85);
}

#[test]
fn reassignment_cancel_replace_and_bad_targets() {
    let (mut md, _) = three_brokers();
    register(&mut md, 4);
    register(&mut md, 5);
    create(&mut md, "t", 1, vec![vec![1, 2]]).unwrap();
    let move_to = |target: Option<Vec<BrokerId>>| MetadataCommand::ReassignPartition { topic: "t".into(), partition: 0, target };
    for bad in [vec![], vec![1, 1], vec![1, 9]] {
        let before = md.clone();
        assert!(matches!(md.apply(&move_to(Some(bad))), Err(CommandError::InvalidReplicaAssignment(_))));
        assert_eq!(md, before);
    }
    assert!(matches!(
        md.apply(&MetadataCommand::ReassignPartition { topic: "t".into(), partition: 3, target: Some(vec![1]) }),
        Err(CommandError::UnknownPartition { .. })
    ));
    md.apply(&move_to(Some(vec![3, 4]))).unwrap();
    let p = md.partition("t", 0).unwrap();
    assert_eq!((p.replicas.clone(), p.adding_replicas.clone(), p.removing_replicas.clone()), (vec![3, 4, 1, 2], vec![3, 4], vec![1, 2]));
    // 3 catches up, then the operator changes their mind: the move to [5, 2] replaces
    // the one in progress, and 3 (now neither original nor target) leaves the ISR.
    let epoch = p.partition_epoch;
    md.apply(&MetadataCommand::ChangePartitionIsr { topic: "t".into(), partition: 0, partition_epoch: epoch, isr: vec![1, 2, 3] }).unwrap();
    assert!(md.partition("t", 0).unwrap().is_reassigning(), "4 has not caught up");
    md.apply(&move_to(Some(vec![5, 2]))).unwrap();
    let p = md.partition("t", 0).unwrap();
    assert_eq!((p.replicas.clone(), p.adding_replicas.clone(), p.removing_replicas.clone()), (vec![5, 2, 1], vec![5], vec![1]));
    assert_eq!(p.isr, vec![1, 2]);
    // Cancelling goes back to the original replicas (Kafka's order: kept ones first).
    md.apply(&move_to(None)).unwrap();
    let p = md.partition("t", 0).unwrap();
    assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader, p.is_reassigning()), (vec![2, 1], vec![1, 2], 1, false));
    // A move that only drops replicas completes at once when the rest are in sync.
    md.apply(&move_to(Some(vec![2]))).unwrap();
    let p = md.partition("t", 0).unwrap();
    assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader, p.is_reassigning()), (vec![2], vec![2], 2, false));
}

#[test]
fn reassignment_waits_while_the_target_is_out_of_sync() {
    let (mut md, _) = three_brokers();
    create(&mut md, "t", 1, vec![vec![1, 2, 3]]).unwrap();
    md.apply(&MetadataCommand::ChangePartitionIsr { topic: "t".into(), partition: 0, partition_epoch: 0, isr: vec![1] }).unwrap();
    md.apply(&MetadataCommand::ReassignPartition { topic: "t".into(), partition: 0, target: Some(vec![2, 3]) }).unwrap();
    let p = md.partition("t", 0).unwrap().clone();
    assert!(p.is_reassigning(), "only the replica being dropped holds the data");
    assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
    md.apply(&MetadataCommand::ChangePartitionIsr { topic: "t".into(), partition: 0, partition_epoch: p.partition_epoch, isr: vec![1, 2] })
        .unwrap();
    let p = md.partition("t", 0).unwrap();
    assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader, p.is_reassigning()), (vec![2, 3], vec![2], 2, false));
}

#[test]
fn unclean_election_only_when_the_topic_allows_it() {
    let (mut md, epochs) = three_brokers();
    create(&mut md, "clean", 1, vec![vec![1, 2, 3]]).unwrap();
    create(&mut md, "unclean", 2, vec![vec![1, 2, 3]]).unwrap();
    md.apply(&MetadataCommand::AlterTopicConfig {
        name: "unclean".into(),
        set: BTreeMap::from([("unclean.leader.election.enable".to_string(), "true".to_string())]),
        remove: vec![],
    })
    .unwrap();
    for t in ["clean", "unclean"] {
        md.apply(&MetadataCommand::ChangePartitionIsr { topic: t.into(), partition: 0, partition_epoch: 0, isr: vec![1] }).unwrap();
    }
    md.apply(&MetadataCommand::FenceBroker { broker_id: 1, broker_epoch: epochs[0] }).unwrap();
    let p = md.partition("clean", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![1]), "waits for its only in-sync replica");
    let p = md.partition("unclean", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (2, vec![2], 1), "takes a live out-of-sync replica");
    md.apply(&MetadataCommand::UnfenceBroker { broker_id: 1, broker_epoch: epochs[0] }).unwrap();
    assert_eq!(md.partition("clean", 0).unwrap().leader, 1);
}

#[test]
fn image_without_reassignment_fields_still_reads() {
    let json = r#"{"replicas":[1,2],"leader":1,"leader_epoch":3,"isr":[1,2],"partition_epoch":4}"#;
    let p: PartitionState = serde_json::from_str(json).unwrap();
    assert!(!p.is_reassigning());
    assert_eq!(serde_json::to_string(&p).unwrap(), json, "and is written the same way");
}

#[test]
fn producer_id_blocks() {
    let (mut md, epochs) = three_brokers();
    let alloc = |broker_id, broker_epoch, count| MetadataCommand::AllocateProducerIds { broker_id, broker_epoch, count };
    assert_eq!(md.apply(&alloc(1, epochs[0], 1000)), Ok(CommandOutcome::ProducerIdsAllocated { first: 0, count: 1000 }));
    assert_eq!(md.apply(&alloc(2, epochs[1], 10)), Ok(CommandOutcome::ProducerIdsAllocated { first: 1000, count: 10 }));
    assert!(matches!(md.apply(&alloc(2, epochs[1] + 1, 10)), Err(CommandError::StaleBrokerEpoch { .. })));
    assert!(matches!(md.apply(&alloc(2, epochs[1], 0)), Err(CommandError::InvalidRequest(_))));
    assert!(matches!(md.apply(&alloc(2, epochs[1], MAX_PRODUCER_ID_BLOCK + 1)), Err(CommandError::InvalidRequest(_))));
    md.next_producer_id = i64::MAX - 5;
    assert_eq!(md.apply(&alloc(2, epochs[1], 10)), Err(CommandError::ProducerIdsExhausted));
    assert_eq!(md.next_producer_id, i64::MAX - 5);
}

#[test]
fn error_codes_are_kafkas() {
    assert_eq!(CommandError::TopicExists("t".into()).kafka_error_code(), 36);
    assert_eq!(CommandError::UnknownTopic("t".into()).kafka_error_code(), 3);
    assert_eq!(CommandError::StalePartitionEpoch { topic: "t".into(), partition: 0, current: 1, request: 0 }.kafka_error_code(), 95);
}

fn arb_command() -> impl Strategy<Value = MetadataCommand> {
    let broker = 0..5i32;
    let names = prop::sample::select(vec!["a", "b", "c", "bad name"]);
    let replicas = prop::collection::vec(0..5i32, 0..4);
    prop_oneof![
        (broker.clone(), 0..3u128, prop::option::of(prop::sample::select(vec!["r1", "r2"]))).prop_map(|(id, inc, rack)| {
            MetadataCommand::RegisterBroker {
                broker_id: id,
                incarnation_id: Uuid::from_u128(inc),
                listeners: listener(9092),
                rack: rack.map(str::to_string),
            }
        }),
        (broker.clone(), 0..6i64).prop_map(|(broker_id, broker_epoch)| MetadataCommand::FenceBroker { broker_id, broker_epoch }),
        (broker.clone(), 0..6i64).prop_map(|(broker_id, broker_epoch)| MetadataCommand::UnfenceBroker { broker_id, broker_epoch }),
        (names.clone(), 1..4u128, prop::collection::vec(replicas.clone(), 0..4)).prop_map(|(n, id, assignments)| {
            MetadataCommand::CreateTopic { name: n.into(), topic_id: Uuid::from_u128(id), configs: BTreeMap::new(), assignments }
        }),
        names.clone().prop_map(|n| MetadataCommand::DeleteTopic { name: n.into() }),
        (names.clone(), prop::collection::vec(replicas.clone(), 0..3))
            .prop_map(|(n, assignments)| MetadataCommand::CreatePartitions { name: n.into(), assignments }),
        (names.clone(), prop::sample::select(vec!["a", "unclean.leader.election.enable"]), "true|[0-9]").prop_map(|(n, k, v)| {
            MetadataCommand::AlterTopicConfig { name: n.into(), set: BTreeMap::from([(k.to_string(), v)]), remove: vec!["a".into()] }
        }),
        (names.clone(), 0..3i32, prop::option::of(replicas.clone()))
            .prop_map(|(n, partition, target)| { MetadataCommand::ReassignPartition { topic: n.into(), partition, target } }),
        (names.clone(), 0..3i32, 0..4i32, -1..5i32).prop_map(|(n, partition, partition_epoch, leader)| {
            MetadataCommand::ChangePartitionLeader { topic: n.into(), partition, partition_epoch, leader }
        }),
        (names, 0..3i32, 0..4i32, replicas).prop_map(|(n, partition, partition_epoch, isr)| {
            MetadataCommand::ChangePartitionIsr { topic: n.into(), partition, partition_epoch, isr }
        }),
        (broker.clone(), 0..6i64, -1..2000i32).prop_map(|(broker_id, broker_epoch, count)| MetadataCommand::AllocateProducerIds {
            broker_id,
            broker_epoch,
            count
        }),
        (broker, 0..6i64, prop::collection::vec((prop::sample::select(vec!["a", "b"]), 0..3i32), 0..3)).prop_map(
            |(broker_id, broker_epoch, parts)| MetadataCommand::MarkReplicasOffline {
                broker_id,
                broker_epoch,
                partitions: parts.into_iter().map(|(t, p)| (t.to_string(), p)).collect(),
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Two replicas applying the same committed sequence reach the same image and
    /// the same results, and the image survives a snapshot round trip.
    #[test]
    fn same_commands_same_state(cmds in prop::collection::vec(arb_command(), 0..80)) {
        let mut a = ClusterMetadata::default();
        let mut b = ClusterMetadata::default();
        for cmd in &cmds {
            let before = a.clone();
            let ra = a.apply(cmd);
            let rb = b.apply(cmd);
            prop_assert_eq!(&ra, &rb);
            if ra.is_err() {
                prop_assert_eq!(&a, &before, "a rejected command changed the image");
            }
            // Invariants: leaders are in their ISR, ISRs are non-empty subsets of replicas.
            for p in a.topics.values().flat_map(|t| &t.partitions) {
                prop_assert!(!p.isr.is_empty());
                prop_assert!(p.isr.iter().all(|r| p.replicas.contains(r)));
                prop_assert!(p.leader == NO_LEADER || p.isr.contains(&p.leader));
                prop_assert!(p.adding_replicas.iter().chain(&p.removing_replicas).all(|r| p.replicas.contains(r)));
                prop_assert!(p.adding_replicas.iter().all(|r| !p.removing_replicas.contains(r)));
                prop_assert!(!p.target_replicas().is_empty());
            }
        }
        prop_assert_eq!(&a, &b);
        let json = serde_json::to_vec(&a).unwrap();
        prop_assert_eq!(serde_json::from_slice::<ClusterMetadata>(&json).unwrap(), a);
    }
}

#[test]
fn broker_configs_are_kept_per_broker_and_as_the_cluster_default() {
    let mut md = ClusterMetadata::default();
    let set = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    let alter = |resource: &str, s: BTreeMap<String, String>, remove: &[&str]| MetadataCommand::AlterBrokerConfig {
        resource: resource.into(),
        set: s,
        remove: remove.iter().map(|r| r.to_string()).collect(),
    };
    assert_eq!(md.apply(&alter("", set(&[("log.retention.ms", "5000")]), &[])), Ok(CommandOutcome::BrokerConfigAltered));
    // Any non-negative id, registered or not, as Kafka's controller.
    md.apply(&alter("7", set(&[("max.connections", "10"), ("message.max.bytes", "2000")]), &[])).unwrap();
    md.apply(&alter("7", BTreeMap::new(), &["message.max.bytes", "absent"])).unwrap();
    assert_eq!(md.broker_config(""), Some(&set(&[("log.retention.ms", "5000")])));
    assert_eq!(md.broker_config("7"), Some(&set(&[("max.connections", "10")])));
    md.apply(&alter("7", BTreeMap::new(), &["max.connections"])).unwrap();
    assert_eq!(md.broker_config("7"), None, "an emptied resource is dropped");
    for (bad, code) in [("-1", "negative"), ("x", "base 10"), ("1.5", "base 10")] {
        match md.apply(&alter(bad, set(&[("a", "b")]), &[])) {
            Err(CommandError::InvalidRequest(m)) => assert!(m.contains(code), "{bad}: {m}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(matches!(md.apply(&alter("", set(&[("", "b")]), &[])), Err(CommandError::InvalidConfig(_))));
    // The image round-trips, and one written before broker configs existed still reads.
    let json = serde_json::to_string(&md).unwrap();
    assert_eq!(serde_json::from_str::<ClusterMetadata>(&json).unwrap(), md);
    let old: ClusterMetadata = serde_json::from_str(r#"{"brokers":{},"topics":{},"next_producer_id":0,"next_broker_epoch":0}"#).unwrap();
    assert!(old.broker_configs.is_empty());
}

#[test]
fn scram_credentials_are_set_and_removed_per_user_and_mechanism() {
    let mut md = ClusterMetadata::default();
    let cred = |i: i32| ScramCredential { salt: vec![1], stored_key: vec![2], server_key: vec![3], iterations: i };
    let alter = |up: Vec<(&str, &str, ScramCredential)>, del: Vec<(&str, &str)>| MetadataCommand::AlterScramCredentials {
        upsertions: up.into_iter().map(|(u, m, c)| (u.to_string(), m.to_string(), c)).collect(),
        deletions: del.into_iter().map(|(u, m)| (u.to_string(), m.to_string())).collect(),
    };
    md.apply(&alter(vec![("alice", "SCRAM-SHA-256", cred(4096)), ("alice", "SCRAM-SHA-512", cred(8192))], vec![])).unwrap();
    md.apply(&alter(vec![("bob", "SCRAM-SHA-256", cred(4096))], vec![("alice", "SCRAM-SHA-256"), ("nobody", "SCRAM-SHA-256")])).unwrap();
    assert_eq!(md.scram_credentials["alice"].keys().collect::<Vec<_>>(), ["SCRAM-SHA-512"]);
    assert_eq!(md.scram_credentials["bob"]["SCRAM-SHA-256"].iterations, 4096);
    md.apply(&alter(vec![], vec![("bob", "SCRAM-SHA-256")])).unwrap();
    assert!(!md.scram_credentials.contains_key("bob"), "a user without credentials is gone");
    assert!(matches!(md.apply(&alter(vec![("", "SCRAM-SHA-256", cred(1))], vec![])), Err(CommandError::InvalidRequest(_))));
    let json = serde_json::to_string(&md).unwrap();
    assert_eq!(serde_json::from_str::<ClusterMetadata>(&json).unwrap(), md);
}

#[test]
fn acls_are_added_once_and_removed() {
    let mut md = ClusterMetadata::default();
    let acl = |name: &str| AclBinding {
        resource_type: 2,
        resource_name: name.into(),
        pattern_type: 3,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: 3,
        permission_type: 3,
    };
    md.apply(&MetadataCommand::AlterAcls { add: vec![acl("a"), acl("b"), acl("a")], remove: vec![] }).unwrap();
    assert_eq!(md.acls, vec![acl("a"), acl("b")], "no duplicates");
    md.apply(&MetadataCommand::AlterAcls { add: vec![acl("c")], remove: vec![acl("a"), acl("x")] }).unwrap();
    assert_eq!(md.acls, vec![acl("b"), acl("c")]);
    let json = serde_json::to_string(&md).unwrap();
    assert_eq!(serde_json::from_str::<ClusterMetadata>(&json).unwrap(), md);
}
