//! Starting and stopping the brokers under test: each on a free loopback port with
//! its own temporary data directory, timed to its first answered request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Which protocol a system speaks, and so which load generator drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    Kafka,
    Redis,
    Nats,
    Rabbit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    KarstFsync,
    KarstNoFsync,
    TansuMemory,
    TansuSqlite,
    RedisAlways,
    RedisEverysec,
    NatsFile,
    RabbitQuorum,
    Kafka,
    KafkaFsync,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Null => "null broker",
            Kind::KarstFsync => "Karst",
            Kind::KarstNoFsync => "Karst no-fsync",
            Kind::TansuMemory => "Tansu memory",
            Kind::TansuSqlite => "Tansu sqlite",
            Kind::RedisAlways => "Redis Streams always",
            Kind::RedisEverysec => "Redis Streams everysec",
            Kind::NatsFile => "NATS JetStream",
            Kind::RabbitQuorum => "RabbitMQ quorum",
            Kind::Kafka => "Kafka",
            Kind::KafkaFsync => "Kafka fsync",
        }
    }

    pub(crate) fn durability(self) -> &'static str {
        match self {
            Kind::Null => "none (stores nothing)",
            Kind::KarstFsync => "fsync before ack (log.flush.interval.messages=1, default)",
            Kind::KarstNoFsync => "page cache, fsync every 1 s (Kafka-style)",
            Kind::TansuMemory => "memory only (memory://)",
            Kind::TansuSqlite => "SQLite file (sqlite://), its default sync",
            Kind::RedisAlways => "AOF appendfsync always",
            Kind::RedisEverysec => "AOF appendfsync everysec",
            Kind::NatsFile => "file store, server-default sync (2.9: periodic, not per message)",
            Kind::RabbitQuorum => "quorum queues, publisher confirms (fsynced WAL)",
            Kind::Kafka => "page cache, no fsync per ack (Kafka's default)",
            Kind::KafkaFsync => "fsync before ack (log.flush.interval.messages=1)",
        }
    }

    pub(crate) fn driver(self) -> Driver {
        match self {
            Kind::Null | Kind::KarstFsync | Kind::KarstNoFsync | Kind::TansuMemory | Kind::TansuSqlite | Kind::Kafka | Kind::KafkaFsync => {
                Driver::Kafka
            }
            Kind::RedisAlways | Kind::RedisEverysec => Driver::Redis,
            Kind::NatsFile => Driver::Nats,
            Kind::RabbitQuorum => Driver::Rabbit,
        }
    }

    /// Apache Kafka: a JVM, so it needs its JIT warmed before it is measured.
    pub(crate) fn is_kafka(self) -> bool {
        matches!(self, Kind::Kafka | Kind::KafkaFsync)
    }
}

/// Kafka's own heap and GC settings for a broker (`kafka-server-start.sh` and
/// `kafka-run-class.sh`), with the full tiered JIT: not the test fixture's small,
/// C1-only JVM, which starts faster but never reaches peak speed.
pub(crate) const KAFKA_JVM_OPTIONS: &[&str] = &[
    "-Xmx1G",
    "-Xms1G",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
    // slf4j-simple (the binding in the jar cache) logs to stderr; INFO would write a
    // line per partition in (f).
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
];

/// Apache Kafka's jars and the `java` to run them.
#[derive(Debug, Clone)]
pub(crate) struct KafkaJars {
    pub(crate) java: PathBuf,
    pub(crate) classpath: String,
    pub(crate) version: String,
}

impl KafkaJars {
    /// From the classpath file `scripts/kafka-reference.sh` prints (a `version` file beside it).
    pub(crate) fn load(classpath_file: &Path, java: &Path) -> Result<KafkaJars> {
        let text = std::fs::read_to_string(classpath_file).with_context(|| format!("reading {}", classpath_file.display()))?;
        let classpath = text.trim().to_string();
        if classpath.is_empty() || !classpath.split(':').all(|j| Path::new(j).is_file()) {
            bail!("{} names a jar that is not there (scripts/kafka-reference.sh fills the cache)", classpath_file.display());
        }
        let version = std::fs::read_to_string(classpath_file.with_file_name("version")).map(|v| v.trim().to_string()).unwrap_or_default();
        Ok(KafkaJars { java: java.to_path_buf(), classpath, version })
    }

    /// `java -version`'s first line.
    pub(crate) fn java_version(&self) -> String {
        Command::new(&self.java)
            .arg("-version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stderr).lines().next().map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    }
}

/// Where the harness finds each program.
#[derive(Debug, Clone)]
pub(crate) struct Programs {
    pub(crate) karst: PathBuf,
    pub(crate) nullbroker: PathBuf,
    pub(crate) tansu: Option<PathBuf>,
    pub(crate) redis: Option<PathBuf>,
    pub(crate) nats: Option<PathBuf>,
    pub(crate) rabbit: Option<PathBuf>,
    pub(crate) epmd: Option<PathBuf>,
    pub(crate) kafka: Option<KafkaJars>,
}

/// Finds `name` on PATH (or in the extra directories).
pub(crate) fn which(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':').map(PathBuf::from).chain(extra.iter().map(PathBuf::from)).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

pub(crate) struct Running {
    pub(crate) kind: Kind,
    pub(crate) addr: SocketAddr,
    pub(crate) startup_ms: f64,
    /// Kafka: until Metadata lists the broker (registered and unfenced), which comes
    /// after its first ApiVersions answer; others: `startup_ms`.
    pub(crate) ready_ms: f64,
    child: Child,
    /// A helper started for this system (RabbitMQ's epmd), stopped with it.
    helper: Option<Child>,
    pub(crate) data_dir: PathBuf,
    log: PathBuf,
}

impl Running {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident set size of the server and every process it started, in bytes.
    pub(crate) fn rss_bytes(&self) -> u64 {
        self.rss().0
    }

    /// (VmRSS, RssAnon) of the server and every process it started, in bytes.
    /// RssAnon leaves out file pages mapped into it (Karst's mapped log segments).
    pub(crate) fn rss(&self) -> (u64, u64) {
        let mut pids = descendants(self.pid());
        pids.push(self.pid());
        pids.iter().filter_map(|&p| rss_of(p)).fold((0, 0), |(a, b), (x, y)| (a + x, b + y))
    }

    /// Stops the server (TERM, then KILL after 30 s) and everything it started;
    /// false if it had to be killed.
    pub(crate) fn stop(mut self) -> bool {
        let mut pids = descendants(self.pid());
        pids.push(self.pid());
        for p in &pids {
            let _ = Command::new("kill").arg("-TERM").arg(p.to_string()).stderr(Stdio::null()).status();
        }
        // As long as an operator would wait (Kubernetes' default grace period): a
        // broker killed mid-shutdown would restart through crash recovery.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut clean = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                clean = true;
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in &pids {
            if Path::new(&format!("/proc/{p}")).exists() {
                let _ = Command::new("kill").arg("-KILL").arg(p.to_string()).stderr(Stdio::null()).status();
            }
        }
        if let Some(mut h) = self.helper.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        clean
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// (VmRSS, RssAnon) of one process, in bytes.
fn rss_of(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some((field("VmRSS:")?, field("RssAnon:").unwrap_or(0)))
}

/// All processes below `root` in the process tree.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // pid (comm) state ppid ...: comm may contain spaces, so split after ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse::<u32>().ok()) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// A request that makes a listening server answer, proving it serves clients
/// (not only that its socket is bound: the kernel accepts connections into the
/// backlog before the server calls accept).
fn probe(kind: Kind) -> &'static [u8] {
    match kind.driver() {
        // ApiVersions v0, correlation id 1, null client id.
        Driver::Kafka => &[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff],
        Driver::Redis => b"PING\r\n",
        // The server sends INFO on connect.
        Driver::Nats => b"",
        Driver::Rabbit => b"AMQP\x00\x00\x09\x01",
    }
}

fn answers(addr: SocketAddr, kind: Kind) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
    if s.write_all(probe(kind)).is_err() {
        return false;
    }
    let mut b = [0u8; 8];
    matches!(s.read(&mut b), Ok(n) if n > 0)
}

/// Whether a Metadata v0 answer (all topics) lists at least one broker: Kafka leaves
/// its broker out until it has registered with its controller and been unfenced, and
/// CreateTopics fails before that.
fn lists_a_broker(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(1000)));
    // Metadata v0, correlation id 2, null client id, an empty topic array (v0: all).
    if s.write_all(&[0, 0, 0, 14, 0, 3, 0, 0, 0, 0, 0, 2, 0xff, 0xff, 0, 0, 0, 0]).is_err() {
        return false;
    }
    // Length, correlation id, then the broker array's count.
    let mut b = [0u8; 12];
    s.read_exact(&mut b).is_ok() && i32::from_be_bytes([b[8], b[9], b[10], b[11]]) > 0
}

fn wait_for_port(addr: SocketAddr, kind: Kind, child: &mut Child, t0: Instant, timeout: Duration) -> Result<f64> {
    loop {
        if answers(addr, kind) {
            return Ok(t0.elapsed().as_secs_f64() * 1000.0);
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("exited with {status} before accepting connections");
        }
        if t0.elapsed() > timeout {
            bail!("no connection accepted within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Options for one start.
pub(crate) struct StartOpts<'a> {
    /// Reuse this data directory (a restart) instead of a fresh one.
    pub(crate) data_dir: Option<&'a Path>,
    /// Partitions the null broker reports per topic.
    pub(crate) partitions: usize,
    pub(crate) scratch: &'a Path,
}

pub(crate) fn start(kind: Kind, progs: &Programs, opts: &StartOpts<'_>) -> Result<Running> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let data_dir = match opts.data_dir {
        Some(d) => d.to_path_buf(),
        None => {
            let d = opts.scratch.join(format!("{}-{}", kind.name().replace(' ', "-").to_lowercase(), port));
            std::fs::create_dir_all(&d)?;
            d
        }
    };
    let log = opts.scratch.join(format!("{}-{}.log", kind.name().replace(' ', "-").to_lowercase(), port));
    let logf = std::fs::File::create(&log)?;
    let mut helper = None;
    let missing = |what: &str| anyhow::anyhow!("{what} is not installed");
    let mut cmd = match kind {
        Kind::Null => {
            let mut c = Command::new(&progs.nullbroker);
            c.arg("--listen").arg(addr.to_string()).arg("--partitions").arg(opts.partitions.to_string());
            c
        }
        Kind::KarstFsync | Kind::KarstNoFsync => {
            let mut c = Command::new(&progs.karst);
            // Karst reads KARST_* variables as settings (KARST_KAFKA_CLASSPATH, say, from
            // scripts/test-all.sh, is an unknown key): it runs on its defaults here.
            for (k, _) in std::env::vars_os() {
                if k.to_str().is_some_and(|k| k.starts_with("KARST_")) {
                    c.env_remove(k);
                }
            }
            c.arg("serve").arg("--listen").arg(addr.to_string()).arg("--data-dir").arg(&data_dir).env("KARST_LOG", "warn");
            // A free admin port: side-by-side runs must not race for the default 9644.
            c.arg("--admin-listen").arg("127.0.0.1:0");
            if kind == Kind::KarstNoFsync {
                c.arg("--set").arg("log.flush.interval.messages=9223372036854775807");
            }
            c
        }
        Kind::TansuMemory | Kind::TansuSqlite => {
            let bin = progs.tansu.as_ref().ok_or_else(|| missing("tansu"))?;
            let mut c = Command::new(bin);
            let engine = if kind == Kind::TansuMemory {
                "memory://tansu/".to_string()
            } else {
                // Tansu resolves sqlite://NAME against its working directory (the data dir).
                "sqlite://tansu.db".to_string()
            };
            c.arg("broker")
                .arg("--listener-url")
                .arg(format!("tcp://{addr}"))
                .arg("--advertised-listener-url")
                .arg(format!("tcp://{addr}"))
                .arg("--storage-engine")
                .arg(engine)
                .env("RUST_LOG", "warn")
                .current_dir(&data_dir);
            c
        }
        Kind::RedisAlways | Kind::RedisEverysec => {
            let bin = progs.redis.as_ref().ok_or_else(|| missing("redis-server"))?;
            let mut c = Command::new(bin);
            let fsync = if kind == Kind::RedisAlways { "always" } else { "everysec" };
            c.args(["--bind", "127.0.0.1", "--port"]).arg(port.to_string()).arg("--dir").arg(&data_dir).args([
                "--appendonly",
                "yes",
                "--appendfsync",
                fsync,
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ]);
            c
        }
        Kind::NatsFile => {
            let bin = progs.nats.as_ref().ok_or_else(|| missing("nats-server"))?;
            let mut c = Command::new(bin);
            c.args(["-a", "127.0.0.1", "-p"]).arg(port.to_string()).arg("-js").arg("-sd").arg(&data_dir);
            c
        }
        Kind::RabbitQuorum => {
            let bin = progs.rabbit.as_ref().ok_or_else(|| missing("rabbitmq-server"))?;
            let epmd = progs.epmd.as_ref().ok_or_else(|| missing("epmd"))?;
            let epmd_port = free_port()?;
            let dist_port = free_port()?;
            // Our own epmd on loopback, in the foreground, so it stops with us.
            helper = Some(
                Command::new(epmd)
                    .args(["-address", "127.0.0.1", "-port"])
                    .arg(epmd_port.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting epmd")?,
            );
            let conf = data_dir.join("rabbitmq.conf");
            std::fs::write(
                &conf,
                format!(
                    "listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\nlog.console = false\nlog.file.level = warning\n\
                     management_agent.disable_metrics_collector = true\n"
                ),
            )?;
            let mut c = Command::new(bin);
            c.env("RABBITMQ_NODENAME", format!("bench{port}@localhost"))
                .env("RABBITMQ_CONFIG_FILE", data_dir.join("rabbitmq"))
                .env("RABBITMQ_MNESIA_BASE", data_dir.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", data_dir.join("log"))
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", data_dir.join("enabled_plugins"))
                .env("RABBITMQ_ENABLED_PLUGINS", "")
                .env("RABBITMQ_DIST_PORT", dist_port.to_string())
                .env("ERL_EPMD_PORT", epmd_port.to_string())
                .env("ERL_EPMD_ADDRESS", "127.0.0.1")
                .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}")
                .env("HOME", &data_dir);
            c
        }
        Kind::Kafka | Kind::KafkaFsync => {
            let jars = progs.kafka.as_ref().ok_or_else(|| missing("Apache Kafka (java and scripts/kafka-reference.sh's jars)"))?;
            kafka_command(kind, jars, addr, &data_dir)?
        }
    };
    cmd.stdout(logf.try_clone()?).stderr(logf).stdin(Stdio::null());
    let t0 = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {}", kind.name()))?;
    let timeout = match kind {
        Kind::RabbitQuorum => Duration::from_secs(60),
        // A JVM, and a restart in (f) loads every partition's log first.
        Kind::Kafka | Kind::KafkaFsync => Duration::from_secs(300),
        _ => Duration::from_secs(30),
    };
    let ready = wait_for_port(addr, kind, &mut child, t0, timeout).and_then(|startup_ms| {
        if !kind.is_kafka() {
            return Ok((startup_ms, startup_ms));
        }
        loop {
            if lists_a_broker(addr) {
                return Ok((startup_ms, t0.elapsed().as_secs_f64() * 1000.0));
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!("exited with {status} before Metadata listed the broker");
            }
            if t0.elapsed() > timeout {
                bail!("Metadata did not list the broker within {timeout:?}");
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
    match ready {
        Ok((startup_ms, ready_ms)) => Ok(Running { kind, addr, startup_ms, ready_ms, child, helper, data_dir, log }),
        Err(e) => {
            let r = Running { kind, addr, startup_ms: 0.0, ready_ms: 0.0, child, helper, data_dir, log };
            let tail = r.log_tail();
            r.stop();
            Err(e.context(format!("{} did not start; log tail:\n{tail}", kind.name())))
        }
    }
}

/// A single KRaft node (broker and controller in one JVM) as `tests/src/kafka.rs`
/// starts it, with Kafka's broker defaults otherwise: server.properties in the data
/// directory, the log under `log/`, storage formatted once (a restart keeps it).
fn kafka_command(kind: Kind, jars: &KafkaJars, addr: SocketAddr, data_dir: &Path) -> Result<Command> {
    let controller = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let log_dir = data_dir.join("log");
    let mut props = format!(
        "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@{controller}\n\
         listeners=PLAINTEXT://{addr},CONTROLLER://{controller}\nadvertised.listeners=PLAINTEXT://{addr}\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\ncontroller.listener.names=CONTROLLER\n\
         inter.broker.listener.name=PLAINTEXT\nlog.dirs={}\n\
         offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\n\
         share.coordinator.state.topic.replication.factor=1\nshare.coordinator.state.topic.min.isr=1\n\
         group.initial.rebalance.delay.ms=0\n",
        log_dir.display()
    );
    if kind == Kind::KafkaFsync {
        props.push_str("log.flush.interval.messages=1\n");
    }
    let properties = data_dir.join("server.properties");
    std::fs::write(&properties, props)?;
    if !log_dir.join("meta.properties").exists() {
        // A short tool run, not timed: a small C1-only JVM is enough.
        let out = Command::new(&jars.java)
            .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", &jars.classpath, "kafka.tools.StorageTool", "format", "--cluster-id"])
            .arg(cluster_id()?)
            .arg("--config")
            .arg(&properties)
            .arg("--ignore-formatted")
            .stdin(Stdio::null())
            .output()
            .context("running kafka.tools.StorageTool")?;
        if !out.status.success() {
            bail!("kafka.tools.StorageTool format failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        }
    }
    // setpriv: the JVM is killed if the harness dies, so no broker outlives a run.
    let mut c = match which("setpriv", &[]) {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&jars.java);
            c
        }
        None => Command::new(&jars.java),
    };
    c.args(KAFKA_JVM_OPTIONS)
        .arg(format!("-Dkafka.logs.dir={}", data_dir.join("logs").display()))
        .arg("-cp")
        .arg(&jars.classpath)
        .arg("kafka.Kafka")
        .arg(&properties)
        .current_dir(data_dir);
    Ok(c)
}

/// A KRaft cluster id: 16 random bytes in unpadded URL-safe base64, not starting with '-'.
fn cluster_id() -> Result<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut f = std::fs::File::open("/dev/urandom")?;
    loop {
        let mut bytes = [0u8; 16];
        f.read_exact(&mut bytes)?;
        let mut out = String::with_capacity(22);
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        if !out.starts_with('-') {
            return Ok(out);
        }
    }
}
