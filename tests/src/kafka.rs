//! Apache Kafka as the reference broker: a single KRaft node (broker and controller in
//! one JVM) on loopback, started from the jars `scripts/kafka-reference.sh` resolves
//! with Maven into a cache, for differential tests that ask Kafka and Karst the same
//! question.
//!
//! Where no Kafka can be had here (no cached jars and no Maven, or no `java`), the
//! fixture fails with a [`KafkaUnavailable`] error, which tests turn into a skip that
//! says why ([`KafkaUnavailable::of`]). `scripts/test-all.sh` fills the cache first
//! and names it in `KARST_KAFKA_CLASSPATH`; with that set, a missing cache is an error,
//! not a skip.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::MetadataRequest;
use tempfile::TempDir;

use crate::broker::workspace_root;
use crate::clients::{run_command, show_output};
use crate::cluster::free_ports;
use crate::raw::RawClient;
use crate::wait::wait_for;

/// The Kafka version resolved when `KARST_KAFKA_VERSION` is unset (the same default as
/// `scripts/kafka-reference.sh`).
pub const DEFAULT_KAFKA_VERSION: &str = "4.4.0";
/// From spawning the JVM to a listener that answers ApiVersions and Metadata.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Formatting the storage directory (a short JVM run).
const FORMAT_TIMEOUT: Duration = Duration::from_secs(120);
/// Resolving the jars with Maven when the cache is empty.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(600);
/// The node id of the single node (broker and controller).
const NODE_ID: i32 = 1;
/// How often a start is retried when a port picked as free was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// JVM options: a small heap, the serial collector (one core's worth of GC threads on
/// a 2-core machine) and the C1 compiler only, which halves start-up at the cost of
/// peak speed that a functional test does not need.
pub const JVM_OPTIONS: &[&str] = &[
    "-Xmx512m",
    "-Xms256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    // slf4j-simple (tests/kafka/pom.xml) writes to stderr; timestamps help to read it.
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
];

/// Why Apache Kafka cannot run here: tests print it and skip.
#[derive(Debug, Clone)]
pub struct KafkaUnavailable(pub String);

impl fmt::Display for KafkaUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Apache Kafka is unavailable: {}", self.0)
    }
}

impl std::error::Error for KafkaUnavailable {}

impl KafkaUnavailable {
    /// The reason, if `e` says that Kafka cannot run here (rather than that it failed).
    pub fn of(e: &anyhow::Error) -> Option<&KafkaUnavailable> {
        e.downcast_ref::<KafkaUnavailable>()
    }
}

/// The Kafka version the fixture runs: `KARST_KAFKA_VERSION` or [`DEFAULT_KAFKA_VERSION`].
pub fn kafka_version() -> String {
    std::env::var("KARST_KAFKA_VERSION").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_KAFKA_VERSION.to_string())
}

/// Which jars: the broker's, the clients' (Java client, tools, Streams) or Connect's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jars {
    Broker,
    Clients,
    Connect,
}

impl Jars {
    /// `scripts/kafka-reference.sh`'s argument, and the cache directory's suffix.
    fn arg(self) -> &'static str {
        match self {
            Jars::Broker => "broker",
            Jars::Clients => "clients",
            Jars::Connect => "connect",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Jars::Broker => "",
            Jars::Clients => "-clients",
            Jars::Connect => "-connect",
        }
    }

    /// The variable `scripts/test-all.sh` names the resolved classpath file in.
    fn env(self) -> &'static str {
        match self {
            Jars::Broker => "KARST_KAFKA_CLASSPATH",
            Jars::Clients => "KARST_KAFKA_CLIENTS_CLASSPATH",
            Jars::Connect => "KARST_KAFKA_CONNECT_CLASSPATH",
        }
    }
}

/// The classpath file of the default cache (as `scripts/kafka-reference.sh` computes it).
fn default_classpath_file(jars: Jars) -> Option<PathBuf> {
    let cache = match std::env::var_os("KARST_KAFKA_CACHE") {
        Some(dir) => PathBuf::from(format!("{}{}", PathBuf::from(dir).display(), jars.suffix())),
        None => {
            let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
                Some(dir) => PathBuf::from(dir),
                None => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
            };
            base.join("karst").join(format!("kafka-{}{}", kafka_version(), jars.suffix()))
        }
    };
    Some(cache.join("classpath"))
}

/// The classpath in `file` if every jar it names exists.
fn read_classpath(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let classpath = text.trim().to_string();
    let complete = !classpath.is_empty() && classpath.split(':').all(|jar| Path::new(jar).is_file());
    complete.then_some(classpath)
}

/// The Kafka broker's classpath.
///
/// `KARST_KAFKA_CLASSPATH` (a classpath file, set by `scripts/test-all.sh`) if set: it
/// must be complete. Otherwise the default cache; if that is incomplete and Maven is
/// installed, `scripts/kafka-reference.sh` fills it once per process. Without either,
/// a [`KafkaUnavailable`] error.
pub fn kafka_classpath() -> Result<String> {
    static CLASSPATH: OnceLock<std::result::Result<String, ClasspathError>> = OnceLock::new();
    classpath_of(Jars::Broker, &CLASSPATH)
}

/// The classpath of the Java client, Kafka's tools and Streams (`tests/java/pom.xml`)
/// or of Connect (`tests/connect/pom.xml`), found as [`kafka_classpath`] finds the
/// broker's (`KARST_KAFKA_CLIENTS_CLASSPATH` / `KARST_KAFKA_CONNECT_CLASSPATH`, else
/// the default cache, else Maven).
pub fn clients_classpath(jars: Jars) -> Result<String> {
    static CLIENTS: OnceLock<std::result::Result<String, ClasspathError>> = OnceLock::new();
    static CONNECT: OnceLock<std::result::Result<String, ClasspathError>> = OnceLock::new();
    match jars {
        Jars::Broker => kafka_classpath(),
        Jars::Clients => classpath_of(Jars::Clients, &CLIENTS),
        Jars::Connect => classpath_of(Jars::Connect, &CONNECT),
    }
}

fn classpath_of(jars: Jars, cell: &OnceLock<std::result::Result<String, ClasspathError>>) -> Result<String> {
    let found = cell.get_or_init(|| {
        find_classpath(jars).map_err(|e| match KafkaUnavailable::of(&e) {
            Some(why) => ClasspathError::Unavailable(why.clone()),
            None => ClasspathError::Failed(format!("{e:#}")),
        })
    });
    match found {
        Ok(cp) => Ok(cp.clone()),
        Err(ClasspathError::Unavailable(why)) => Err(why.clone().into()),
        Err(ClasspathError::Failed(why)) => Err(anyhow!("{why}")),
    }
}

/// A remembered failure of [`find_classpath`] (anyhow errors are not `Clone`).
#[derive(Debug)]
enum ClasspathError {
    Unavailable(KafkaUnavailable),
    Failed(String),
}

fn find_classpath(jars: Jars) -> Result<String> {
    if let Some(file) = std::env::var_os(jars.env()).filter(|v| !v.is_empty()) {
        let file = PathBuf::from(file);
        return read_classpath(&file).ok_or_else(|| {
            anyhow!("{}={} is missing or names a jar that is not there (scripts/kafka-reference.sh fills it)", jars.env(), file.display())
        });
    }
    let default = default_classpath_file(jars);
    if let Some(cp) = default.as_deref().and_then(read_classpath) {
        return Ok(cp);
    }
    let where_ = default.as_deref().map_or_else(|| "the cache (no HOME)".to_string(), |p| p.display().to_string());
    let has_maven = Command::new("mvn").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !has_maven {
        return Err(KafkaUnavailable(format!(
            "no Kafka jars at {where_} and no Maven (mvn) to resolve them; run scripts/kafka-reference.sh where Maven can reach its registry"
        ))
        .into());
    }
    let script = workspace_root().join("scripts/kafka-reference.sh");
    let out = run_command(Command::new("bash").arg(&script).arg(jars.arg()).stdin(Stdio::null()), RESOLVE_TIMEOUT)
        .map_err(|e| KafkaUnavailable(format!("{} failed: {e:#}", script.display())))?;
    if !out.status.success() {
        return Err(KafkaUnavailable(format!("{} failed ({}):\n{}", script.display(), out.status, show_output(&out))).into());
    }
    let file = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    read_classpath(&file).ok_or_else(|| anyhow!("{} printed {}, which is not a complete classpath file", script.display(), file.display()))
}

/// The `java` to run Kafka with: `KARST_KAFKA_JAVA` or `java` on PATH.
pub fn java_bin() -> Result<PathBuf> {
    let java = std::env::var_os("KARST_KAFKA_JAVA").filter(|v| !v.is_empty()).map_or_else(|| PathBuf::from("java"), PathBuf::from);
    match Command::new(&java).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => Ok(java),
        Ok(s) => Err(KafkaUnavailable(format!("`{} -version` exited with {s}", java.display())).into()),
        Err(e) => Err(KafkaUnavailable(format!("no Java runtime (`{}`: {e}); Kafka 4 needs Java 17 or newer", java.display())).into()),
    }
}

/// A random KRaft cluster id: 16 random bytes in unpadded URL-safe base64, as Kafka's
/// `Uuid.randomUuid().toString()` (which also never starts with '-').
pub fn random_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    loop {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let mut out = String::with_capacity(22);
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        if !out.starts_with('-') {
            return out;
        }
    }
}

/// A running Apache Kafka node (KRaft, `process.roles=broker,controller`) on 127.0.0.1
/// with a fresh storage directory.
///
/// Killed (SIGKILL) on drop, printing the tail of its log (shown by the test harness
/// only if the test fails). The log is kept if the test panics, the log and data if
/// `KARST_TEST_KEEP` is set or [`KafkaBroker::keep_files`] was called. Where
/// `setpriv` exists the JVM also gets SIGKILL when the thread that started it dies
/// (a test process killed by its harness leaves no JVM behind), so start it from the
/// thread that uses it.
pub struct KafkaBroker {
    child: Option<Child>,
    node_id: i32,
    addr: SocketAddr,
    controller_addr: SocketAddr,
    dir: Option<TempDir>,
    cluster_id: String,
    version: String,
    spawned: Instant,
    started_in: Duration,
    keep: bool,
}

/// Where one node listens.
struct Node {
    id: i32,
    addr: SocketAddr,
    controller_addr: SocketAddr,
}

/// Apache Kafka nodes 1..=n on loopback, each broker and controller, one KRaft quorum
/// of all of them (static voters), internal topics and new topics replicated to
/// min(n, 3) nodes with min.insync.replicas for the internal ones of 2.
pub struct KafkaCluster {
    pub nodes: Vec<KafkaBroker>,
    started_in: Duration,
}

impl KafkaCluster {
    /// Starts `n` nodes; each gets `overrides(node index)` over the defaults of
    /// [`KafkaBroker::start_with`]. Ready when every node's Metadata lists all `n`.
    pub fn start(n: usize, overrides: impl Fn(usize) -> Vec<(String, String)>) -> Result<KafkaCluster> {
        let classpath = kafka_classpath()?;
        let java = java_bin()?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let ports = free_ports(2 * n)?;
            let nodes: Vec<Node> = (0..n)
                .map(|i| Node {
                    id: i as i32 + 1,
                    addr: SocketAddr::from(([127, 0, 0, 1], ports[2 * i])),
                    controller_addr: SocketAddr::from(([127, 0, 0, 1], ports[2 * i + 1])),
                })
                .collect();
            let voters = nodes.iter().map(|nd| format!("{}@{}", nd.id, nd.controller_addr)).collect::<Vec<_>>().join(",");
            let cluster_id = random_cluster_id();
            let started = Instant::now();
            let mut running = Vec::new();
            for (i, node) in nodes.iter().enumerate() {
                let own = overrides(i);
                let own: Vec<(&str, &str)> = own.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                running.push(KafkaBroker::spawn(&java, &classpath, node, &voters, &cluster_id, n.min(3), &own)?);
            }
            let mut failed = None;
            for b in &mut running {
                if let Err(e) = b.wait_ready(n) {
                    failed = Some(e);
                    break;
                }
            }
            match failed {
                None => {
                    let started_in = started.elapsed();
                    for b in &mut running {
                        b.started_in = b.spawned.elapsed();
                    }
                    return Ok(KafkaCluster { nodes: running, started_in });
                }
                Some(e) => {
                    let mut retry = None;
                    for b in &mut running {
                        if let Ok(port_error) = b.port_taken(anyhow!("{e:#}")) {
                            retry = Some(port_error);
                        }
                    }
                    match retry {
                        Some(port_error) => last = Some(port_error),
                        None => return Err(e),
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("the Kafka cluster did not start")))
    }

    /// From spawning the first JVM to every node ready.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Every node's PLAINTEXT listener, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(KafkaBroker::bootstrap).collect::<Vec<_>>().join(",")
    }
}

impl KafkaBroker {
    /// Starts a node with the fixture's defaults (see [`KafkaBroker::start_with`]).
    pub fn start() -> Result<KafkaBroker> {
        KafkaBroker::start_with(&[])
    }

    /// Starts a node: formats storage with a random cluster id, writes server.properties
    /// (the defaults below, then `overrides` in order, a later key replacing an earlier
    /// one), starts `java <JVM_OPTIONS> -cp <classpath> kafka.Kafka server.properties`
    /// and waits until its listener answers ApiVersions and lists the node in Metadata.
    ///
    /// Defaults: a PLAINTEXT listener and a CONTROLLER listener on free loopback ports,
    /// one partition per new topic, replication factor 1 for every internal topic,
    /// `group.initial.rebalance.delay.ms=0`, topic auto-creation on (Karst's defaults).
    pub fn start_with(overrides: &[(&str, &str)]) -> Result<KafkaBroker> {
        let classpath = kafka_classpath()?;
        let java = java_bin()?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match KafkaBroker::try_start(&java, &classpath, overrides)? {
                Ok(broker) => return Ok(broker),
                // A port picked as free was bound by someone else before the JVM got it.
                Err(port_taken) => last = Some(port_taken),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("Kafka did not start")))
    }

    /// `Ok(Err(_))`: the JVM could not bind a port; worth another try.
    fn try_start(java: &Path, classpath: &str, overrides: &[(&str, &str)]) -> Result<Result<KafkaBroker>> {
        let ports = free_ports(2)?;
        let node = Node {
            id: NODE_ID,
            addr: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            controller_addr: SocketAddr::from(([127, 0, 0, 1], ports[1])),
        };
        let voters = format!("{NODE_ID}@{}", node.controller_addr);
        let mut broker = KafkaBroker::spawn(java, classpath, &node, &voters, &random_cluster_id(), 1, overrides)?;
        match broker.wait_ready(1) {
            Ok(()) => {
                broker.started_in = broker.spawned.elapsed();
                Ok(Ok(broker))
            }
            Err(e) => Ok(Err(broker.port_taken(e)?)),
        }
    }

    /// A start that failed: `Ok(e)` if the JVM died binding a port (worth another
    /// try), else the error itself.
    fn port_taken(&mut self, e: anyhow::Error) -> Result<anyhow::Error> {
        let log = self.log_tail(60);
        let exited = self.exit_status().is_some();
        if exited && (log.contains("Address already in use") || log.contains("BindException")) {
            return Ok(anyhow!("Kafka could not bind its ports: {e:#}\n{log}"));
        }
        Err(e)
    }

    /// Writes a node's server.properties (the defaults, then `overrides` in order, a
    /// later key replacing an earlier one), formats its storage and spawns its JVM,
    /// without waiting for it. `replication` is the replication factor of the internal
    /// topics and of new topics.
    fn spawn(
        java: &Path,
        classpath: &str,
        node: &Node,
        voters: &str,
        cluster_id: &str,
        replication: usize,
        overrides: &[(&str, &str)],
    ) -> Result<KafkaBroker> {
        let dir = tempfile::Builder::new().prefix("kafka-ref-").tempdir().context("creating Kafka's temp dir")?;
        let (addr, controller_addr) = (node.addr, node.controller_addr);
        let data = dir.path().join("data");
        let rf = replication.to_string();
        let min_isr = if replication > 1 { "2" } else { "1" }.to_string();
        let mut props: Vec<(String, String)> = [
            ("process.roles", "broker,controller".to_string()),
            ("node.id", node.id.to_string()),
            ("controller.quorum.voters", voters.to_string()),
            ("listeners", format!("PLAINTEXT://{addr},CONTROLLER://{controller_addr}")),
            ("advertised.listeners", format!("PLAINTEXT://{addr}")),
            ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_string()),
            ("controller.listener.names", "CONTROLLER".to_string()),
            ("inter.broker.listener.name", "PLAINTEXT".to_string()),
            ("log.dirs", data.display().to_string()),
            ("num.partitions", "1".to_string()),
            ("default.replication.factor", rf.clone()),
            ("auto.create.topics.enable", "true".to_string()),
            ("offsets.topic.replication.factor", rf.clone()),
            ("transaction.state.log.replication.factor", rf.clone()),
            ("transaction.state.log.min.isr", min_isr.clone()),
            ("share.coordinator.state.topic.replication.factor", rf),
            ("share.coordinator.state.topic.min.isr", min_isr),
            ("group.initial.rebalance.delay.ms", "0".to_string()),
            // Fewer threads than Kafka's defaults: this is a 2-core test machine.
            ("num.network.threads", "2".to_string()),
            ("num.io.threads", "2".to_string()),
            ("num.recovery.threads.per.data.dir", "1".to_string()),
            ("background.threads", "2".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in overrides {
            props.retain(|(key, _)| key != k);
            props.push((k.to_string(), v.to_string()));
        }
        let properties = dir.path().join("server.properties");
        let mut f = File::create(&properties).with_context(|| format!("creating {}", properties.display()))?;
        for (k, v) in &props {
            writeln!(f, "{k}={v}")?;
        }
        drop(f);

        let mut format = Command::new(java);
        format
            .args(JVM_OPTIONS)
            .arg("-cp")
            .arg(classpath)
            .arg("kafka.tools.StorageTool")
            .args(["format", "--cluster-id", cluster_id, "--config"])
            .arg(&properties)
            .arg("--ignore-formatted")
            .stdin(Stdio::null());
        let out = run_command(&mut format, FORMAT_TIMEOUT).context("formatting Kafka's storage")?;
        std::fs::write(dir.path().join("format.log"), [&out.stdout[..], &out.stderr[..]].concat())?;
        if !out.status.success() {
            bail!("kafka.tools.StorageTool format failed ({}):\n{}", out.status, tail(&String::from_utf8_lossy(&out.stderr), 40));
        }

        let log = dir.path().join("kafka.log");
        let log_file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = match which("setpriv") {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "KILL", "--"]).arg(java);
                c
            }
            None => Command::new(java),
        };
        cmd.args(JVM_OPTIONS)
            .arg(format!("-Dkafka.logs.dir={}", dir.path().join("logs").display()))
            .arg("-cp")
            .arg(classpath)
            .arg("kafka.Kafka")
            .arg(&properties)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let spawned = Instant::now();
        let child = cmd.spawn().with_context(|| format!("spawning {}", java.display()))?;
        Ok(KafkaBroker {
            child: Some(child),
            node_id: node.id,
            addr,
            controller_addr,
            dir: Some(dir),
            cluster_id: cluster_id.to_string(),
            version: kafka_version(),
            spawned,
            started_in: Duration::ZERO,
            keep: false,
        })
    }

    /// Until the PLAINTEXT listener answers ApiVersions and Metadata lists this node
    /// and `brokers` brokers in all (registered and unfenced), or the JVM exits.
    fn wait_ready(&mut self, brokers: usize) -> Result<()> {
        let (addr, id) = (self.addr, self.node_id);
        let ready = wait_for("Kafka's listener to answer ApiVersions and Metadata", START_TIMEOUT, || {
            if let Some(status) = self.exit_status() {
                return Some(Err(anyhow!("the Kafka JVM exited with {status} before it was ready")));
            }
            let mut client = RawClient::connect(addr).ok()?;
            client.api_versions().ok()?;
            let resp = client.send(&MetadataRequest::default().with_topics(Some(vec![])), 1).ok()?;
            (resp.brokers.iter().any(|b| b.node_id.0 == id) && resp.brokers.len() >= brokers).then_some(Ok(()))
        });
        match ready {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) | Err(e) => Err(anyhow!("{e:#}; Kafka's log ({}):\n{}", self.log_path().display(), self.log_tail(40))),
        }
    }

    /// The node's id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The PLAINTEXT listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The CONTROLLER listener (the KRaft quorum's).
    pub fn controller_addr(&self) -> SocketAddr {
        self.controller_addr
    }

    /// The cluster id the storage was formatted with.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The Kafka version running.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// From spawning the JVM to ready (storage formatting not included).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The node's directory: `server.properties`, `data/`, `kafka.log`, `format.log`.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// The JVM's combined stdout and stderr (Kafka logs through slf4j-simple to stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("kafka.log")
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&std::fs::read_to_string(self.log_path()).unwrap_or_default(), n)
    }

    /// Keeps the node's directory (log and data) after the test, printing where.
    pub fn keep_files(&mut self) {
        self.keep = true;
    }

    /// The JVM's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` if the JVM has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Fails (with the log's tail) unless the JVM is still running.
    pub fn check_running(&mut self) -> Result<()> {
        match (self.child.is_some(), self.exit_status()) {
            (false, _) => bail!("Kafka is not running (killed by the test)"),
            (true, Some(status)) => bail!("the Kafka JVM exited with {status}; log tail:\n{}", self.log_tail(40)),
            (true, None) => Ok(()),
        }
    }

    /// SIGKILL the JVM and reap it. The directory stays until drop.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("SIGKILL the Kafka JVM")?;
            child.wait().context("reaping the Kafka JVM")?;
        }
        Ok(())
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.kill9();
        eprintln!("---- kafka log (last 40 lines of {}) ----\n{}\n---- end kafka log ----", self.log_path().display(), self.log_tail(40));
        let keep = self.keep || std::env::var_os("KARST_TEST_KEEP").is_some() || std::thread::panicking();
        if keep {
            if let Some(dir) = self.dir.take() {
                eprintln!("kafka directory (log, data, server.properties) kept in {}", dir.keep().display());
            }
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `name` found on PATH.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Runs `steps(bootstrap)` (each returns what it checked, one line each) against the
/// Karst broker at `karst_bootstrap`, then against Apache Kafka started with
/// `overrides`, and requires the same lines from both. A [`KafkaUnavailable`] from
/// either side skips the test, printing why.
pub fn same_steps_on_kafka(
    what: &str,
    karst_bootstrap: &str,
    overrides: &[(&str, &str)],
    steps: impl Fn(&str) -> Result<Vec<String>>,
) -> Result<()> {
    let karst_steps = match steps(karst_bootstrap) {
        Ok(s) => s,
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                return Ok(());
            }
            None => return Err(e.context(format!("{what} against Karst"))),
        },
    };
    println!("against Karst:\n  {}", karst_steps.join("\n  "));
    let kafka = KafkaBroker::start_with(overrides)?;
    let kafka_steps = steps(&kafka.bootstrap()).with_context(|| format!("{what} against Apache Kafka {}", kafka.version()))?;
    println!("against Apache Kafka {}:\n  {}", kafka.version(), kafka_steps.join("\n  "));
    anyhow::ensure!(karst_steps == kafka_steps, "{what}: Karst and Apache Kafka differ");
    Ok(())
}

/// Runs `answers(addr)` (each scenario and what the broker answered) against a fresh
/// Karst, then against Apache Kafka, prints both side by side, and fails on a scenario
/// they answer differently unless `known(scenario, karst, kafka)` accepts the
/// difference. Without Kafka here, Karst's answers are printed and the test passes.
pub fn same_answers_as_kafka<T: PartialEq + std::fmt::Debug>(
    answers: impl Fn(std::net::SocketAddr) -> Result<Vec<(&'static str, T)>>,
    known: impl Fn(&str, &T, &T) -> bool,
) -> Result<()> {
    let karst = crate::Broker::start(&[])?;
    let karst_answers = answers(karst.addr())?;
    let kafka = match KafkaBroker::start() {
        Ok(k) => k,
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("Karst's answers {karst_answers:?}; Kafka skipped: {why}");
                return Ok(());
            }
            None => return Err(e),
        },
    };
    let kafka_answers = answers(kafka.addr())?;
    let mut differ = Vec::new();
    for ((what, k), (_, a)) in karst_answers.iter().zip(&kafka_answers) {
        println!("{what:46} Karst {:24} Kafka {a:?}", format!("{k:?}"));
        if k != a && !known(what, k, a) {
            differ.push(*what);
        }
    }
    anyhow::ensure!(
        karst_answers.len() == kafka_answers.len(),
        "{} scenarios on Karst, {} on Kafka",
        karst_answers.len(),
        kafka_answers.len()
    );
    anyhow::ensure!(differ.is_empty(), "Karst and Kafka {} disagree on: {differ:?}", kafka.version());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_base64_chars() {
        for _ in 0..200 {
            let id = random_cluster_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{id}");
            assert!(!id.starts_with('-'), "{id}");
        }
    }

    #[test]
    fn unavailable_is_recognised_through_anyhow() {
        let e = anyhow::Error::new(KafkaUnavailable("no java".into()));
        assert_eq!(KafkaUnavailable::of(&e).map(|u| u.0.as_str()), Some("no java"));
        assert!(KafkaUnavailable::of(&anyhow!("other")).is_none());
    }
}
