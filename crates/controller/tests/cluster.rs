//! Controller quorums on loopback ports with temp data dirs. Every wait has a
//! deadline; conditions are polled, never assumed after a sleep.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use karst_controller::{
    parse_voters, ClusterMetadata, CommandOutcome, Controller, ControllerConfig, ControllerError, Listener, MetadataCommand, ProposeError,
    Voter,
};
use tempfile::TempDir;
use uuid::Uuid;

const CLUSTER: &str = "karst-test";
const WAIT: Duration = Duration::from_secs(20);

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
}

/// Run a test body with an overall deadline.
async fn bounded<F: Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("test exceeded its deadline");
}

/// Loopback addresses that were free a moment ago.
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn test_config() -> ControllerConfig {
    ControllerConfig { propose_timeout: Duration::from_secs(3), ..ControllerConfig::default() }
}

struct Cluster {
    voters: Vec<Voter>,
    addrs: Vec<SocketAddr>,
    dirs: Vec<TempDir>,
    nodes: Vec<Option<Controller>>,
    config: ControllerConfig,
}

impl Cluster {
    async fn start(n: usize, config: ControllerConfig) -> Cluster {
        let addrs = free_addrs(n);
        let spec = addrs.iter().enumerate().map(|(i, a)| format!("{}@{a}", i + 1)).collect::<Vec<_>>().join(",");
        let voters = parse_voters(&spec).unwrap();
        let dirs = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut c = Cluster { voters, addrs, dirs, nodes: (0..n).map(|_| None).collect(), config };
        for i in 0..n {
            c.start_node(i).await;
        }
        c
    }

    async fn start_node(&mut self, i: usize) {
        let ctl =
            Controller::start_with_config(i as u64 + 1, CLUSTER, &self.voters, self.dirs[i].path(), self.addrs[i], self.config.clone())
                .await
                .unwrap();
        self.nodes[i] = Some(ctl);
    }

    async fn stop_node(&mut self, i: usize) {
        if let Some(ctl) = self.nodes[i].take() {
            ctl.shutdown().await.unwrap();
        }
    }

    fn node(&self, i: usize) -> &Controller {
        self.nodes[i].as_ref().expect("node is running")
    }

    fn running(&self) -> impl Iterator<Item = &Controller> {
        self.nodes.iter().flatten()
    }

    /// Wait until one running node leads and every running node knows it.
    async fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            for (i, ctl) in self.nodes.iter().enumerate() {
                let Some(ctl) = ctl else { continue };
                if ctl.is_leader() && self.running().all(|o| o.leader().map(|l| l.0) == Some(ctl.node_id())) {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Propose on whichever node leads, retrying only while there is no leader.
    async fn propose(&self, cmd: MetadataCommand) -> CommandOutcome {
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = self.running().find(|c| c.is_leader());
            if let Some(l) = leader {
                match l.propose(cmd.clone()).await {
                    Ok(Ok(outcome)) => return outcome,
                    Ok(Err(e)) => panic!("{cmd:?} rejected: {e}"),
                    Err(ProposeError::NotLeader { .. }) => {}
                    Err(e) => panic!("{cmd:?} failed: {e}"),
                }
            }
            assert!(Instant::now() < deadline, "no leader accepted {cmd:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until every running node's image equals `want`.
    async fn wait_all_equal(&self, want: &ClusterMetadata) {
        for ctl in self.running() {
            let got = ctl.wait_for_metadata(WAIT, |m| m == want).await;
            assert!(got.is_some(), "node {} did not reach the expected image: {:?}", ctl.node_id(), ctl.metadata());
        }
    }
}

/// Register brokers `1..=n` (as brokers would) and unfence them.
async fn register_brokers(c: &Cluster, n: i32) {
    for id in 1..=n {
        let outcome = c
            .propose(MetadataCommand::RegisterBroker {
                broker_id: id,
                incarnation_id: Uuid::new_v4(),
                listeners: vec![Listener { name: "PLAINTEXT".into(), host: "127.0.0.1".into(), port: 9092 + id as u16 }],
                rack: None,
            })
            .await;
        let CommandOutcome::BrokerRegistered { broker_epoch } = outcome else { panic!("{outcome:?}") };
        c.propose(MetadataCommand::UnfenceBroker { broker_id: id, broker_epoch }).await;
    }
}

fn create_topic_cmd(image: &ClusterMetadata, name: &str, partitions: u32, rf: u16) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
        configs: BTreeMap::new(),
        assignments: image.assign_partitions(partitions, rf).unwrap(),
    }
}

async fn create_topic(c: &Cluster, name: &str, partitions: u32, rf: u16) -> Arc<ClusterMetadata> {
    let leader = c.wait_leader(WAIT).await;
    let cmd = create_topic_cmd(&c.node(leader).metadata(), name, partitions, rf);
    let outcome = c.propose(cmd).await;
    assert!(matches!(outcome, CommandOutcome::TopicCreated { .. }), "{outcome:?}");
    let leader = c.wait_leader(WAIT).await;
    c.node(leader).metadata()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_proposes_applies_and_restarts() {
    init_logs();
    bounded(60, async {
        let mut c = Cluster::start(1, test_config()).await;
        assert_eq!(c.node(0).wait_for_leader(WAIT).await, Some(1), "a single voter elects itself");
        let mut watch = c.node(0).subscribe();
        watch.borrow_and_update();
        register_brokers(&c, 1).await;
        assert!(watch.has_changed().unwrap(), "the watch fires on apply");
        let image = create_topic(&c, "solo", 3, 1).await;
        let t = image.topic("solo").unwrap();
        assert_eq!(t.partitions.len(), 3);
        assert!(t.partitions.iter().all(|p| p.leader == 1 && p.isr == vec![1]));
        // A rejected command is a result, not an error of the quorum.
        let dup = c.node(0).propose(create_topic_cmd(&image, "solo", 1, 1)).await.unwrap();
        assert_eq!(dup, Err(karst_controller::CommandError::TopicExists("solo".into())));

        c.stop_node(0).await;
        // A crash mid-append left half a frame at the end of the log.
        let seg = segment_bases(c.dirs[0].path()).pop().unwrap();
        let path = c.dirs[0].path().join("log").join(format!("{seg:020}.log"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, b'{']);
        std::fs::write(&path, &bytes).unwrap();
        c.start_node(0).await;
        // The committed log is re-applied on open, before any election.
        let m = c.node(0).metadata();
        assert_eq!(*m, *image, "image after restart");
        let image = create_topic(&c, "solo2", 1, 1).await;
        assert!(image.topic("solo2").is_some());
        c.stop_node(0).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_fail_over_and_catch_up() {
    init_logs();
    bounded(120, async {
        let mut c = Cluster::start(3, test_config()).await;
        let leader = c.wait_leader(WAIT).await;
        register_brokers(&c, 3).await;
        let image = create_topic(&c, "orders", 12, 3).await;
        c.wait_all_equal(&image).await;
        let t = image.topic("orders").unwrap();
        let mut leaders = BTreeMap::new();
        for p in &t.partitions {
            *leaders.entry(p.leader).or_insert(0) += 1;
        }
        assert_eq!(leaders, BTreeMap::from([(1, 4), (2, 4), (3, 4)]), "leaders spread over all brokers");

        // Kill the leader: a new one is elected and proposals succeed again.
        let old = c.node(leader).node_id();
        c.stop_node(leader).await;
        let t0 = Instant::now();
        let new_leader = c.wait_leader(WAIT).await;
        let elected = t0.elapsed();
        assert_ne!(c.node(new_leader).node_id(), old);
        let image = create_topic(&c, "after-failover", 3, 2).await;
        let committed = t0.elapsed();
        println!("failover: new leader elected after {elected:?}, first CreateTopic committed after {committed:?}");
        assert!(committed < Duration::from_secs(10), "failover took {committed:?}");

        // The old leader restarts from its data dir and catches up.
        c.start_node(leader).await;
        c.wait_all_equal(&image).await;
        for i in 0..3 {
            c.stop_node(i).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_keeps_state() {
    init_logs();
    bounded(120, async {
        let mut c = Cluster::start(3, test_config()).await;
        c.wait_leader(WAIT).await;
        register_brokers(&c, 3).await;
        create_topic(&c, "a", 6, 2).await;
        create_topic(&c, "b", 2, 3).await;
        c.propose(MetadataCommand::AlterTopicConfig {
            name: "a".into(),
            set: BTreeMap::from([("retention.ms".to_string(), "60000".to_string())]),
            remove: vec![],
        })
        .await;
        let leader = c.wait_leader(WAIT).await;
        let image = c.node(leader).metadata();
        c.wait_all_equal(&image).await;

        for i in 0..3 {
            c.stop_node(i).await;
        }
        for i in 0..3 {
            c.start_node(i).await;
        }
        c.wait_leader(WAIT).await;
        c.wait_all_equal(&image).await;
        assert_eq!(image.topic("a").unwrap().configs["retention.ms"], "60000");
        // And the quorum works again.
        let image = create_topic(&c, "c", 1, 1).await;
        c.wait_all_equal(&image).await;
        for i in 0..3 {
            c.stop_node(i).await;
        }
    })
    .await;
}

fn segment_bases(dir: &std::path::Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_and_a_lagging_node_installs_one() {
    init_logs();
    bounded(120, async {
        let config = ControllerConfig { snapshot_every: 20, logs_kept_after_snapshot: 5, segment_bytes: 2048, ..test_config() };
        let mut c = Cluster::start(3, config).await;
        let leader = c.wait_leader(WAIT).await;
        register_brokers(&c, 3).await;
        create_topic(&c, "cfg", 1, 3).await;
        // Take a follower down; it will come back behind the purge point.
        let lagging = (leader + 1) % 3;
        c.stop_node(lagging).await;
        for i in 0..120 {
            c.propose(MetadataCommand::AlterTopicConfig {
                name: "cfg".into(),
                set: BTreeMap::from([(format!("k{}", i % 7), i.to_string())]),
                remove: vec![],
            })
            .await;
        }
        let leader = c.wait_leader(WAIT).await;
        let l = c.node(leader);
        let m = l
            .raft()
            .wait(Some(WAIT))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= 100) && m.purged.is_some_and(|p| p.index >= 90), "snapshot+purge")
            .await
            .expect("leader snapshots and purges");
        println!("leader snapshot at {:?}, purged up to {:?}", m.snapshot, m.purged);
        let bases = segment_bases(c.dirs[leader].path());
        assert!(bases.first().is_some_and(|b| *b > 0), "old segments deleted: {bases:?}");
        assert!(bases.len() < 10, "log does not grow without bound: {bases:?}");

        let image = l.metadata();
        c.start_node(lagging).await;
        c.wait_all_equal(&image).await;
        let lm = c.node(lagging).raft_metrics().borrow().clone();
        assert!(lm.snapshot.is_some(), "lagging node caught up through a snapshot: {lm:?}");

        // Restarting from that snapshot gives the same image.
        c.stop_node(lagging).await;
        c.start_node(lagging).await;
        assert_eq!(*c.node(lagging).metadata(), *image, "image right after restart");
        for i in 0..3 {
            c.stop_node(i).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit() {
    init_logs();
    bounded(120, async {
        let config = ControllerConfig { propose_timeout: Duration::from_secs(2), ..test_config() };
        let mut c = Cluster::start(3, config).await;
        let leader = c.wait_leader(WAIT).await;
        register_brokers(&c, 3).await;
        let before = create_topic(&c, "kept", 1, 1).await;
        c.wait_all_equal(&before).await;
        let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        for &f in &followers {
            c.stop_node(f).await;
        }
        let alone = c.node(leader);
        let cmd = create_topic_cmd(&before, "lost", 1, 1);
        let r = alone.propose(cmd.clone()).await;
        assert!(matches!(r, Err(ProposeError::Timeout(_)) | Err(ProposeError::NotLeader { .. })), "a minority must not commit: {r:?}");
        assert!(alone.metadata().topic("lost").is_none());

        // Restore a majority: the quorum works again.
        c.start_node(followers[0]).await;
        let outcome = c.propose(create_topic_cmd(&before, "found", 1, 1)).await;
        assert!(matches!(outcome, CommandOutcome::TopicCreated { .. }));
        for i in 0..3 {
            c.stop_node(i).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_are_added_and_removed_at_runtime() {
    init_logs();
    bounded(120, async {
        let addrs = free_addrs(3);
        let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let seed = parse_voters(&format!("1@{}", addrs[0])).unwrap();
        let mut nodes = Vec::new();
        for i in 0..3 {
            // Nodes 2 and 3 are not in the static voter list: they wait to be added.
            let ctl = Controller::start_with_config(i as u64 + 1, CLUSTER, &seed, dirs[i].path(), addrs[i], test_config()).await.unwrap();
            nodes.push(ctl);
        }
        assert_eq!(nodes[0].wait_for_leader(WAIT).await, Some(1));
        nodes[0].add_voter(2, &addrs[1].to_string()).await.unwrap();
        nodes[0].add_voter(3, &addrs[2].to_string()).await.unwrap();
        for n in &nodes {
            let m = n.raft().wait(Some(WAIT)).voter_ids([1, 2, 3], "three voters").await;
            assert!(m.is_ok(), "node {} sees three voters", n.node_id());
        }
        let r = nodes[0]
            .propose(MetadataCommand::RegisterBroker { broker_id: 1, incarnation_id: Uuid::new_v4(), listeners: vec![], rack: None })
            .await
            .unwrap();
        assert!(r.is_ok());
        for n in &nodes {
            assert!(n.wait_for_metadata(WAIT, |m| m.broker(1).is_some()).await.is_some());
        }
        // A follower refuses proposals and names the leader.
        let r = nodes[1].propose(MetadataCommand::DeleteTopic { name: "x".into() }).await;
        assert_eq!(r, Err(ProposeError::NotLeader { leader_id: Some(1), leader_addr: Some(addrs[0].to_string()) }));

        nodes[0].remove_voter(3).await.unwrap();
        for n in &nodes[..2] {
            let m = n.raft().wait(Some(WAIT)).voter_ids([1, 2], "two voters").await;
            assert!(m.is_ok(), "node {} sees two voters", n.node_id());
        }
        nodes[2].shutdown().await.unwrap();
        let r = nodes[0].propose(MetadataCommand::DeleteTopic { name: "x".into() }).await.unwrap();
        assert!(r.is_err(), "committed (and rejected: no such topic) without node 3");
        for n in &nodes[..2] {
            n.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_data_dir_of_another_cluster_or_node() {
    init_logs();
    bounded(60, async {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addrs(1)[0];
        let voters = parse_voters(&format!("1@{addr}")).unwrap();
        let ctl = Controller::start(1, CLUSTER, &voters, dir.path(), addr).await.unwrap();
        ctl.shutdown().await.unwrap();

        let err = Controller::start(1, "another-cluster", &voters, dir.path(), addr).await.err().unwrap();
        assert!(matches!(err, ControllerError::ClusterIdMismatch { .. }), "{err}");
        println!("{err}");
        let err = Controller::start(2, CLUSTER, &voters, dir.path(), addr).await.err().unwrap();
        assert!(matches!(err, ControllerError::NodeIdMismatch { found: 1, expected: 2, .. }), "{err}");
        let err = Controller::start(1, "has space", &voters, dir.path(), addr).await.err().unwrap();
        assert!(matches!(err, ControllerError::InvalidClusterId(_)), "{err}");

        // A non-empty dir without the meta file is not adopted silently.
        let stray = tempfile::tempdir().unwrap();
        std::fs::write(stray.path().join("something"), b"x").unwrap();
        let err = Controller::start(1, CLUSTER, &voters, stray.path(), addr).await.err().unwrap();
        assert!(matches!(err, ControllerError::Corrupt { .. }), "{err}");

        // The right identity still starts.
        let ctl = Controller::start(1, CLUSTER, &voters, dir.path(), addr).await.unwrap();
        assert_eq!(ctl.wait_for_leader(WAIT).await, Some(1));
        ctl.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused_on_the_wire() {
    init_logs();
    bounded(60, async {
        let addrs = free_addrs(3);
        let spec = addrs.iter().enumerate().map(|(i, a)| format!("{}@{a}", i + 1)).collect::<Vec<_>>().join(",");
        let voters = parse_voters(&spec).unwrap();
        let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let cluster = if i == 2 { "intruder" } else { CLUSTER };
            nodes.push(
                Controller::start_with_config(i as u64 + 1, cluster, &voters, dirs[i].path(), addrs[i], test_config()).await.unwrap(),
            );
        }
        // Nodes 1 and 2 are a majority of the configured three.
        let leader = nodes[0].wait_for_leader(WAIT).await.expect("leader among 1 and 2");
        assert!(leader == 1 || leader == 2);
        let l = &nodes[leader as usize - 1];
        let r = l
            .propose(MetadataCommand::RegisterBroker { broker_id: 7, incarnation_id: Uuid::new_v4(), listeners: vec![], rack: None })
            .await
            .unwrap();
        assert!(r.is_ok());
        let other = &nodes[2 - leader as usize];
        assert!(other.wait_for_metadata(WAIT, |m| m.broker(7).is_some()).await.is_some());
        // Give the intruder a few heartbeats' time; it must not take the data nor lead.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(nodes[2].metadata().broker(7).is_none());
        assert!(!nodes[2].is_leader());
        for n in &nodes {
            n.shutdown().await.unwrap();
        }
    })
    .await;
}
