//! `harness`: runs every workload against every broker it can start on this
//! machine and writes `benches/results/<UTC date>.md` with tables and PNG plots.
//! `benches/run.sh` installs the peers, builds everything and calls this.

mod memory;
mod plots;
mod report;
mod systems;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use karst_benches::RunResult;

use systems::{Driver, Kind, Programs, Running, StartOpts};

#[derive(Parser, Debug)]
#[command(name = "harness", about = "Side-by-side broker benchmarks: tables and plots in benches/results/")]
struct Args {
    /// Short runs and a small backlog (under 5 minutes in all).
    #[arg(long)]
    quick: bool,
    /// Directory holding loadgen, peerload and nullbroker.
    #[arg(long)]
    bin_dir: PathBuf,
    #[arg(long)]
    karst: PathBuf,
    #[arg(long)]
    tansu: Option<PathBuf>,
    /// Apache Kafka's classpath file, as `scripts/kafka-reference.sh` prints it.
    #[arg(long, env = "KARST_KAFKA_CLASSPATH")]
    kafka_classpath: Option<PathBuf>,
    /// The `java` that runs Kafka (default: on PATH).
    #[arg(long)]
    java: Option<PathBuf>,
    /// Where the report and plots go.
    #[arg(long, default_value = "benches/results")]
    results: PathBuf,
    /// Scratch space for data directories (removed afterwards).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Only these systems (comma-separated names as in the report, lower-case, e.g. "karst,null broker").
    #[arg(long)]
    only: Option<String>,
    /// Skip these workloads (letters, e.g. "ef").
    #[arg(long, default_value = "")]
    skip: String,
    /// Total backlog for workload (e), bytes (default: 256 MiB quick, 4 GiB full).
    #[arg(long)]
    backlog_bytes: Option<u64>,
    /// Appended to the report's name: `<date>[-quick]-<tag>.md`.
    #[arg(long)]
    tag: Option<String>,
}

impl Args {
    /// The options of this run as `benches/run.sh` takes them, for the report.
    fn options(&self) -> String {
        let mut o = String::new();
        if self.quick {
            o.push_str(" --quick");
        }
        if let Some(only) = &self.only {
            o.push_str(&format!(" --only \"{only}\""));
        }
        if !self.skip.is_empty() {
            o.push_str(&format!(" --skip {}", self.skip));
        }
        if let Some(b) = self.backlog_bytes {
            o.push_str(&format!(" --backlog-bytes {b}"));
        }
        if let Some(t) = &self.tag {
            o.push_str(&format!(" --tag {t}"));
        }
        o
    }
}

/// Timings of one mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) warmup: f64,
    pub(crate) latency_warmup: f64,
    pub(crate) duration: f64,
    pub(crate) drain: f64,
    pub(crate) backlog: u64,
    pub(crate) scale_partitions: usize,
    pub(crate) scale_duration: f64,
    /// Memory to touch before the first broker (see `memory.rs`).
    pub(crate) touch: u64,
    /// Seconds of unrecorded load a fresh Kafka JVM gets before its first measured
    /// run, so that its hot paths run compiled by C2 rather than interpreted.
    pub(crate) jvm_warmup: f64,
}

/// What one system did at start-up.
#[derive(Debug, Clone)]
pub(crate) struct StartInfo {
    pub(crate) kind: Kind,
    pub(crate) startup_ms: f64,
    /// Kafka: until Metadata lists the broker; others: `startup_ms`.
    pub(crate) ready_ms: f64,
    pub(crate) idle_rss: u64,
    pub(crate) idle_anon: u64,
}

/// How Apache Kafka ran, for the report.
#[derive(Debug, Clone, Default)]
pub(crate) struct KafkaSetup {
    pub(crate) version: String,
    pub(crate) java: String,
    /// JIT warm-ups run: (JVM, seconds of load, throughput it reached).
    pub(crate) warmups: Vec<String>,
}

/// Everything the report is made of.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) starts: Vec<StartInfo>,
    pub(crate) runs: Vec<RunResult>,
    /// Systems or workloads that could not run, and why.
    pub(crate) skipped: Vec<String>,
    pub(crate) fixed_rate: Option<f64>,
    pub(crate) scale: Option<Scale>,
    pub(crate) kafka_scale: Option<Scale>,
    pub(crate) kafka: Option<KafkaSetup>,
    pub(crate) drop_caches_possible: bool,
    pub(crate) elapsed_s: f64,
    /// /proc/loadavg (1, 5, 15 min) when the harness started.
    pub(crate) load_start: String,
    /// What was done about the machine's memory before the runs (a paragraph).
    pub(crate) memory_note: String,
}

/// Workload (f): 10,000 partitions on one broker.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scale {
    pub(crate) partitions: usize,
    /// The broker stopped within its 30 s grace before the restart (else it was killed).
    pub(crate) clean_stop: bool,
    pub(crate) empty_startup_ms: f64,
    pub(crate) create_s: f64,
    pub(crate) restart_ms: f64,
    pub(crate) idle_rss: u64,
    pub(crate) run: Option<RunResult>,
}

struct Harness {
    args: Args,
    progs: Programs,
    plan: Plan,
    scratch: PathBuf,
    out: Outcome,
}

/// A load generator run, described independently of the driver.
#[derive(Debug, Clone)]
struct Load {
    workload: &'static str,
    size: usize,
    partitions: usize,
    producers: usize,
    consumers: usize,
    groups: usize,
    subscribe: bool,
    rate: Option<f64>,
    backlog: Option<u64>,
    /// Consumers speak this old Kafka version's protocol (no ApiVersions).
    consumer_fallback: Option<&'static str>,
    /// A JIT warm-up: run, but not recorded as a result.
    discard: bool,
}

impl Load {
    fn base(workload: &'static str, size: usize) -> Load {
        Load {
            workload,
            size,
            partitions: 6,
            producers: 2,
            consumers: 2,
            groups: 1,
            subscribe: false,
            rate: None,
            backlog: None,
            consumer_fallback: None,
            discard: false,
        }
    }
}

impl Harness {
    fn wanted(&self, kind: Kind) -> bool {
        match &self.args.only {
            None => true,
            Some(list) => list.split(',').any(|n| n.trim().eq_ignore_ascii_case(kind.name())),
        }
    }

    fn start(&mut self, kind: Kind, partitions: usize) -> Option<Running> {
        let opts = StartOpts { data_dir: None, partitions, scratch: &self.scratch };
        match systems::start(kind, &self.progs, &opts) {
            Ok(r) => {
                // Let it settle before reading its idle footprint.
                let settle = if kind == Kind::RabbitQuorum || kind.is_kafka() { 2000 } else { 500 };
                thread::sleep(Duration::from_millis(settle));
                let (rss, anon) = r.rss();
                if !self.out.starts.iter().any(|s| s.kind == kind) {
                    self.out.starts.push(StartInfo {
                        kind,
                        startup_ms: r.startup_ms,
                        ready_ms: r.ready_ms,
                        idle_rss: rss,
                        idle_anon: anon,
                    });
                }
                eprintln!(
                    "[harness] started {} on {} in {:.1} ms (ready {:.1} ms), idle RSS {:.1} MB",
                    kind.name(),
                    r.addr,
                    r.startup_ms,
                    r.ready_ms,
                    rss as f64 / 1e6
                );
                if kind.is_kafka() && partitions == 6 && self.plan.jvm_warmup > 0.0 {
                    let warm = Load { discard: true, ..Load::base("jit-warmup", 1024) };
                    let got = self.run_load(&r, &warm);
                    let note = match got {
                        Some(w) => format!("{}: {:.0} s, {:.0} msgs/s", kind.name(), self.plan.jvm_warmup, w.produce_msgs_per_s),
                        None => format!("{}: {:.0} s, failed", kind.name(), self.plan.jvm_warmup),
                    };
                    self.out.kafka.get_or_insert_with(Default::default).warmups.push(note);
                }
                Some(r)
            }
            Err(e) => {
                let msg = format!("{}: could not start: {e:#}", kind.name());
                eprintln!("[harness] {msg}");
                if !self.out.skipped.contains(&msg) {
                    self.out.skipped.push(msg);
                }
                None
            }
        }
    }

    /// Stops a system and deletes its data: a full run writes more than the disk
    /// holds if every run's data is kept until the end.
    fn stop(&self, r: Running) {
        eprintln!("[harness] stopping {}", r.kind.name());
        let dir = r.data_dir.clone();
        if !r.stop() {
            eprintln!("[harness] (killed after 30 s)");
        }
        if dir.starts_with(&self.scratch) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// Runs one load against a running system; the result is recorded.
    fn run_load(&mut self, r: &Running, load: &Load) -> Option<RunResult> {
        let kind = r.kind;
        let consumers = load.consumers;
        let out_file = self.scratch.join(format!("{}-{}-{}.json", load.workload, kind.name().replace(' ', "-"), r.addr.port()));
        let (bin, mut cmd) = match kind.driver() {
            Driver::Kafka => {
                let bin = self.args.bin_dir.join("loadgen");
                let mut c = Command::new(&bin);
                c.arg("--brokers").arg(r.addr.to_string());
                if kind == Kind::Null {
                    c.arg("--skip-create");
                }
                if load.subscribe {
                    c.arg("--subscribe");
                }
                (bin, c)
            }
            d => {
                let bin = self.args.bin_dir.join("peerload");
                let mut c = Command::new(&bin);
                let (sys, url) = match d {
                    Driver::Redis => ("redis", format!("redis://{}/", r.addr)),
                    Driver::Nats => ("nats", format!("nats://{}", r.addr)),
                    _ => ("rabbitmq", format!("amqp://guest:guest@{}/%2f", r.addr)),
                };
                c.arg(sys).arg("--url").arg(url);
                (bin, c)
            }
        };
        let warmup = match (load.backlog, load.rate) {
            (Some(_), _) => 0.0,
            // Latency is measured once every consumer is reading: records sent before
            // would wait for a consumer's start-up and show that, not the broker.
            (None, Some(_)) => self.plan.latency_warmup,
            (None, None) => self.plan.warmup,
        };
        let duration = match load.workload {
            "f" => self.plan.scale_duration,
            _ if load.discard => self.plan.jvm_warmup,
            _ => self.plan.duration,
        };
        let warmup = if load.discard { 0.0 } else { warmup };
        cmd.arg("--system")
            .arg(kind.name())
            .arg("--workload")
            .arg(load.workload)
            .arg("--durability")
            .arg(kind.durability())
            .arg("--partitions")
            .arg(load.partitions.to_string())
            .arg("--producers")
            .arg(load.producers.to_string())
            .arg("--consumers")
            .arg(consumers.to_string())
            .arg("--groups")
            .arg(load.groups.to_string())
            .arg("--size")
            .arg(load.size.to_string())
            .arg("--duration")
            .arg(duration.to_string())
            .arg("--warmup")
            .arg(warmup.to_string())
            .arg("--drain-timeout")
            .arg(self.plan.drain.to_string())
            .arg("--out")
            .arg(&out_file);
        if let Some(rate) = load.rate {
            cmd.arg("--rate").arg(format!("{rate:.0}"));
        }
        if let Some(b) = load.backlog {
            cmd.arg("--backlog-bytes").arg(b.to_string()).arg("--drop-caches");
        }
        if let Some(v) = load.consumer_fallback {
            cmd.arg("--consumer-fallback").arg(v);
        }
        if load.workload == "f" {
            cmd.arg("--ready-probe");
        }
        let limit = Duration::from_secs_f64(warmup + duration + self.plan.drain + 180.0);
        // Nobody's writeback is left for the next run to wait behind.
        let _ = Command::new("sync").status();
        eprintln!("[harness] workload ({}) {} B on {}", load.workload, load.size, kind.name());
        // The server's peak footprint while the load runs, sampled every 250 ms.
        let (mut peak, mut peak_anon, mut ticks) = (0u64, 0u64, 0u32);
        let sample = || {
            ticks += 1;
            if ticks % 5 == 1 {
                let (rss, anon) = r.rss();
                peak = peak.max(rss);
                peak_anon = peak_anon.max(anon);
            }
        };
        let res = run_bounded(&mut cmd, limit, &self.scratch.join(format!("{}-{}.stderr", load.workload, r.addr.port())), sample)
            .with_context(|| format!("running {}", bin.display()))
            .and_then(|()| {
                let text = std::fs::read_to_string(&out_file).context("reading the load generator's JSON")?;
                serde_json::from_str::<RunResult>(&text).context("parsing the load generator's JSON")
            });
        match res {
            Ok(mut rr) => {
                rr.system = kind.name().to_string();
                rr.server_rss_peak = Some(peak);
                rr.server_anon_peak = Some(peak_anon);
                eprintln!(
                    "[harness]   -> {:.0} msgs/s produced, {:.0} msgs/s consumed, e2e p99 {} us, errors {}, peak RSS {:.1} MB",
                    rr.produce_msgs_per_s,
                    rr.consume_msgs_per_s,
                    rr.e2e_latency.p99_us,
                    rr.errors,
                    peak as f64 / 1e6
                );
                if !load.discard {
                    self.out.runs.push(rr.clone());
                }
                Some(rr)
            }
            Err(e) => {
                let msg = format!("{} workload ({}) {} B: {e:#}", kind.name(), load.workload, load.size);
                eprintln!("[harness] {msg}");
                self.out.skipped.push(msg);
                None
            }
        }
    }

    /// Runs `loads` in turn on `r`; with `fresh`, each after the first on a new
    /// instance with an empty data directory (Kafka-protocol brokers start in
    /// milliseconds): no run reads or holds what an earlier one wrote, and a
    /// memory-only broker does not carry every earlier run in memory. Returns the
    /// instance still running, or `None` when a restart failed.
    fn run_loads(&mut self, mut r: Running, loads: &[Load], fresh: bool) -> Option<Running> {
        for (j, load) in loads.iter().enumerate() {
            if j > 0 && fresh {
                let kind = r.kind;
                self.stop(r);
                r = self.start(kind, 6)?;
            }
            self.run_load(&r, load);
        }
        Some(r)
    }

    fn kinds(&self, all: &[Kind]) -> Vec<Kind> {
        all.iter().copied().filter(|k| self.wanted(*k)).collect()
    }

    fn run(&mut self) -> Result<()> {
        let t0 = Instant::now();
        self.out.load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ");
        let skip = self.args.skip.clone();
        let kafka = [Kind::Null, Kind::KarstFsync, Kind::KarstNoFsync, Kind::TansuMemory, Kind::TansuSqlite, Kind::Kafka, Kind::KafkaFsync];
        let peers = [Kind::RedisAlways, Kind::RedisEverysec, Kind::NatsFile, Kind::RabbitQuorum];
        let everything: Vec<Kind> = kafka.iter().chain(peers.iter()).copied().collect();
        self.out.drop_caches_possible = std::fs::OpenOptions::new().write(true).open("/proc/sys/vm/drop_caches").is_ok()
            && Command::new("sh").arg("-c").arg("sync; echo 3 > /proc/sys/vm/drop_caches").status().map(|s| s.success()).unwrap_or(false);

        // Phase 1: (a) and (b), maximum throughput, every system. The last one
        // (RabbitMQ, slow to start) goes on to its phase-2 runs without a restart.
        let order = self.kinds(&everything);
        let mut kept: Option<Running> = None;
        for (i, &kind) in order.iter().enumerate() {
            if skip.contains('a') && skip.contains('b') {
                break;
            }
            // (a) and (b); then the same with producers only for the Kafka-protocol
            // brokers: the broker's cost of taking records in, without the consumers'.
            let mut loads: Vec<Load> = [("a", 1024), ("b", 100)].iter().map(|&(w, size)| Load::base(w, size)).collect();
            if kafka.contains(&kind) {
                loads.extend([("ap", 1024), ("bp", 100)].iter().map(|&(w, size)| Load { consumers: 0, ..Load::base(w, size) }));
            }
            loads.retain(|l| !skip.contains(&l.workload[..1]));
            let Some(r) = self.start(kind, 6) else { continue };
            // Kafka keeps its warmed JVM from one run to the next (each run has its own topic).
            let Some(r) = self.run_loads(r, &loads, kafka.contains(&kind) && !kind.is_kafka()) else { continue };
            if i + 1 == order.len() && kind != Kind::Null {
                kept = Some(r);
            } else {
                self.stop(r);
            }
        }

        // (c) at half the lowest peer maximum (1 KiB records, workload (a)).
        let lowest = self
            .out
            .runs
            .iter()
            .filter(|r| r.workload == "a" && r.system != Kind::Null.name() && r.produce_msgs_per_s > 0.0)
            .map(|r| r.produce_msgs_per_s)
            .fold(f64::INFINITY, f64::min);
        let rate = if lowest.is_finite() { (lowest * 0.5).max(100.0) } else { 1000.0 };
        self.out.fixed_rate = Some(rate);

        // Phase 2: (c) every system but the null broker; (d), (e) the Kafka brokers.
        let mut order2 = self.kinds(&everything);
        if let Some(k) = kept.as_ref().map(|r| r.kind) {
            order2.retain(|x| *x != k);
            order2.insert(0, k);
        }
        for kind in order2 {
            if kind == Kind::Null {
                continue;
            }
            let want_c = !skip.contains('c');
            let want_de = matches!(kind, Kind::KarstFsync | Kind::KarstNoFsync | Kind::TansuMemory | Kind::Kafka | Kind::KafkaFsync)
                && !(skip.contains('d') && skip.contains('e'));
            if !want_c && !want_de {
                continue;
            }
            let mut loads = Vec::new();
            if want_c {
                loads.push(Load { rate: Some(rate), ..Load::base("c", 1024) });
            }
            if want_de && !skip.contains('d') {
                loads.push(Load { groups: 4, consumers: 1, subscribe: true, ..Load::base("d", 1024) });
            }
            if want_de && !skip.contains('e') {
                loads.push(Load { backlog: Some(self.plan.backlog), ..Load::base("e", 1024) });
                if matches!(kind, Kind::KarstFsync | Kind::KarstNoFsync) {
                    // The same catch-up read by pre-0.11 consumers (librdkafka assuming a
                    // 0.9.0 broker: Fetch v1, message format v0): Karst down-converts what
                    // the v4+ path sends as is.
                    loads.push(Load { backlog: Some(self.plan.backlog), consumer_fallback: Some("0.9.0"), ..Load::base("e-old", 1024) });
                }
            }
            let r = match kept.take() {
                Some(r) if r.kind == kind => r,
                other => {
                    if let Some(o) = other {
                        self.stop(o);
                    }
                    let Some(r) = self.start(kind, 6) else { continue };
                    r
                }
            };
            if let Some(r) = self.run_loads(r, &loads, kafka.contains(&kind) && !kind.is_kafka()) {
                self.stop(r);
            }
        }

        if let Some(r) = kept.take() {
            self.stop(r);
        }

        // (f) 10,000 partitions on one Karst broker, and on Kafka with its default durability.
        if !skip.contains('f') && self.wanted(Kind::KarstFsync) {
            self.out.scale = self.scale(Kind::KarstFsync);
        }
        if !skip.contains('f') && self.wanted(Kind::Kafka) {
            self.out.kafka_scale = self.scale(Kind::Kafka);
        }
        self.out.elapsed_s = t0.elapsed().as_secs_f64();
        Ok(())
    }

    fn scale(&mut self, kind: Kind) -> Option<Scale> {
        // 10,000 first; if the broker cannot hold that many here, half as many, so
        // the report still shows how it scales (and says why the first failed).
        for n in [self.plan.scale_partitions, self.plan.scale_partitions / 2] {
            let r = self.start(kind, n)?;
            let mut s = Scale { partitions: n, empty_startup_ms: r.ready_ms, ..Default::default() };
            let load = Load { partitions: n, ..Load::base("f", 1024) };
            s.run = self.run_load(&r, &load);
            if s.run.is_none() {
                self.out.skipped.push(format!(
                    "(f) {} {n} partitions failed; broker log: {}",
                    kind.name(),
                    r.log_tail().replace('\n', " | ")
                ));
                self.stop(r);
                continue;
            }
            s.create_s = s.run.as_ref().and_then(|r| r.create_topic_s).unwrap_or(0.0);
            let dir = r.data_dir.clone();
            eprintln!("[harness] stopping {} with {n} partitions", kind.name());
            s.clean_stop = r.stop(); // keeping its data for the restart
            let opts = StartOpts { data_dir: Some(&dir), partitions: n, scratch: &self.scratch };
            match systems::start(kind, &self.progs, &opts) {
                Ok(mut r2) => {
                    s.restart_ms = r2.ready_ms;
                    thread::sleep(Duration::from_millis(1000));
                    if r2.alive() {
                        s.idle_rss = r2.rss_bytes();
                        eprintln!(
                            "[harness] {} restart with {n} partitions: {:.0} ms, RSS {:.1} MB",
                            kind.name(),
                            s.restart_ms,
                            s.idle_rss as f64 / 1e6
                        );
                    } else {
                        self.out.skipped.push(format!(
                            "(f) {} restart with {n} partitions exited: {}",
                            kind.name(),
                            r2.log_tail().replace('\n', " | ")
                        ));
                        s.restart_ms = 0.0;
                    }
                    self.stop(r2);
                }
                Err(e) => self.out.skipped.push(format!("(f) {} restart with {n} partitions: {e:#}", kind.name())),
            }
            return Some(s);
        }
        None
    }
}

/// Runs `cmd` to completion within `limit`, stderr to `log`; killed past the limit.
/// `tick` is called every 50 ms while it runs.
fn run_bounded(cmd: &mut Command, limit: Duration, log: &Path, mut tick: impl FnMut()) -> Result<()> {
    let logf = std::fs::File::create(log)?;
    let mut child =
        cmd.env("RUST_BACKTRACE", "0").env("RUST_LIB_BACKTRACE", "0").stdout(Stdio::null()).stderr(logf).stdin(Stdio::null()).spawn()?;
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let reason = text.lines().find(|l| l.starts_with("Error:")).map(str::to_string).unwrap_or_else(|| {
                let tail: Vec<&str> = text.lines().rev().take(6).collect();
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            });
            anyhow::bail!("exited with {status}: {reason}");
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("killed after {limit:?}");
        }
        tick();
        thread::sleep(Duration::from_millis(50));
    }
}

fn utc_date() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%d"]).output().ok();
    out.and_then(|o| String::from_utf8(o.stdout).ok()).map(|s| s.trim().to_string()).unwrap_or_else(|| "undated".into())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let plan = if args.quick {
        Plan {
            warmup: 0.5,
            latency_warmup: 2.0,
            duration: 3.0,
            drain: 6.0,
            backlog: 256 << 20,
            scale_partitions: 10_000,
            scale_duration: 3.0,
            touch: 6 << 30,
            jvm_warmup: 10.0,
        }
    } else {
        Plan {
            warmup: 5.0,
            latency_warmup: 5.0,
            duration: 20.0,
            drain: 20.0,
            backlog: 4 << 30,
            scale_partitions: 10_000,
            scale_duration: 20.0,
            touch: 20 << 30,
            jvm_warmup: 30.0,
        }
    };
    let plan = Plan { backlog: args.backlog_bytes.unwrap_or(plan.backlog), ..plan };
    let scratch = match &args.scratch {
        Some(s) => s.clone(),
        None => std::env::temp_dir().join(format!("karst-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&scratch)?;
    let extra = ["/usr/sbin", "/usr/lib/rabbitmq/bin", "/usr/lib/erlang/bin"];
    let progs = Programs {
        karst: args.karst.clone(),
        nullbroker: args.bin_dir.join("nullbroker"),
        tansu: args.tansu.clone().or_else(|| systems::which("tansu", &[])),
        redis: systems::which("redis-server", &extra),
        nats: systems::which("nats-server", &extra),
        // The real script, not /usr/sbin's wrapper (which switches user and drops the environment).
        rabbit: Some(PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server"))
            .filter(|p| p.is_file())
            .or_else(|| systems::which("rabbitmq-server", &extra)),
        epmd: systems::which("epmd", &extra),
        kafka: None,
    };
    let mut h = Harness { args, progs, plan, scratch: scratch.clone(), out: Outcome::default() };
    for (what, p) in
        [("tansu", &h.progs.tansu), ("redis-server", &h.progs.redis), ("nats-server", &h.progs.nats), ("rabbitmq-server", &h.progs.rabbit)]
    {
        if p.is_none() {
            h.out.skipped.push(format!("{what}: not installed"));
        }
    }
    let java = h.args.java.clone().or_else(|| systems::which("java", &[]));
    match (&h.args.kafka_classpath, java) {
        (Some(cp), Some(java)) => match systems::KafkaJars::load(cp, &java) {
            Ok(jars) => {
                h.out.kafka = Some(KafkaSetup { version: jars.version.clone(), java: jars.java_version(), warmups: Vec::new() });
                h.progs.kafka = Some(jars);
            }
            Err(e) => h.out.skipped.push(format!("Apache Kafka: {e:#}")),
        },
        (None, _) => h.out.skipped.push("Apache Kafka: no --kafka-classpath (scripts/kafka-reference.sh prints it)".into()),
        (_, None) => h.out.skipped.push("Apache Kafka: no java".into()),
    }
    let memory = memory::prepare(h.plan.touch);
    h.out.memory_note = memory.note();
    let result = h.run();
    drop(memory);
    let date = utc_date();
    std::fs::create_dir_all(&h.args.results)?;
    let stem = [Some(date.clone()), h.args.quick.then(|| "quick".to_string()), h.args.tag.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("-");
    let md = report::write(&h.args.results, &date, &stem, &h.args.options(), h.args.quick, &h.plan, &h.out)?;
    eprintln!("[harness] report: {}", md.display());
    if h.args.scratch.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}
