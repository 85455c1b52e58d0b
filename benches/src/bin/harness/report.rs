//! The Markdown report: tables with absolute numbers and ratios, the acceptance
//! targets of issue 4 checked against this run, and links to the plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use karst_benches::RunResult;

use crate::systems::Kind;
use crate::{plots, Outcome, Plan, Scale};

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

fn k(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 && a / b < 0.1 => format!("{:.3}×", a / b),
        Some(b) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn find<'a>(runs: &'a [RunResult], workload: &str, kind: Kind) -> Option<&'a RunResult> {
    runs.iter().find(|r| r.workload == workload && r.system == kind.name())
}

/// Throughput of a max-throughput run: what reached the consumers, i.e. the lower
/// of the produce and consume rates (a producer that outruns its consumers builds
/// a backlog rather than moving data); the produce rate where nothing consumes.
fn delivered(r: &RunResult) -> f64 {
    if r.consumers > 0 {
        r.produce_msgs_per_s.min(r.consume_msgs_per_s)
    } else {
        r.produce_msgs_per_s
    }
}

fn throughput_table(md: &mut String, runs: &[RunResult], workload: &str) {
    let null = find(runs, workload, Kind::Null).map(delivered);
    let tansu = find(runs, workload, Kind::TansuMemory).map(delivered);
    let kafka = find(runs, workload, Kind::Kafka).map(delivered);
    let kafka_fsync = find(runs, workload, Kind::KafkaFsync).map(delivered);
    md.push_str(
        "| system | durability | produce msgs/s | produce MB/s | consume msgs/s | throughput msgs/s | ack p99 ms | e2e p50 ms | e2e p99 ms | e2e p99.9 ms | e2e max ms | errors | missing | × null | × Tansu memory | × Kafka | × Kafka fsync |\n",
    );
    md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in runs.iter().filter(|r| r.workload == workload) {
        let consumer = r.consumers > 0;
        let dash = |s: String| if consumer { s } else { "–".into() };
        // The null broker serves copies of old batches: their send times are not this record's.
        let e2e = |s: String| if consumer && r.system != Kind::Null.name() { s } else { "–".into() };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.system,
            r.durability,
            k(r.produce_msgs_per_s),
            k(r.produce_mb_per_s),
            dash(k(r.consume_msgs_per_s)),
            k(delivered(r)),
            ms(r.ack_latency.p99_us),
            e2e(ms(r.e2e_latency.p50_us)),
            e2e(ms(r.e2e_latency.p99_us)),
            e2e(ms(r.e2e_latency.p999_us)),
            e2e(ms(r.e2e_latency.max_us)),
            r.errors,
            r.missing,
            ratio(delivered(r), null),
            ratio(delivered(r), tansu),
            ratio(delivered(r), kafka),
            ratio(delivered(r), kafka_fsync),
        );
    }
    let errs: Vec<String> = runs
        .iter()
        .filter(|r| r.workload == workload && !r.error_samples.is_empty())
        .map(|r| format!("{}: {}", r.system, r.error_samples.join("; ")))
        .collect();
    if !errs.is_empty() {
        md.push_str("\nErrors seen: ");
        md.push_str(&errs.join(" — "));
        md.push('\n');
    }
}

fn check(md: &mut String, what: &str, value: Option<f64>, target: f64, higher_is_better: bool, unit: &str) {
    check_also(md, what, value, target, higher_is_better, unit, None);
}

/// As `check`, with a second reading of the same ratio shown beside the verdict.
fn check_also(md: &mut String, what: &str, value: Option<f64>, target: f64, higher_is_better: bool, unit: &str, also: Option<(&str, f64)>) {
    let line = match value {
        None => format!("- {what}: not measured in this run\n"),
        Some(v) => {
            let ok = if higher_is_better { v >= target } else { v <= target };
            let verdict = if ok {
                "met".to_string()
            } else if higher_is_better {
                format!("**missed** (reaches {:.0}% of the target)", 100.0 * v / target)
            } else {
                format!("**missed** ({:.1}× over)", v / target)
            };
            let also = also.map(|(label, a)| format!("; {label}: {a:.2}")).unwrap_or_default();
            format!("- {what}: {v:.2}{unit} (target {} {target:.2}{unit}): {verdict}{also}\n", if higher_is_better { "≥" } else { "≤" })
        }
    };
    md.push_str(&line);
}

/// Writes `<stem>.md`, `<stem>.json` and the plots; `options` are the run's options as `benches/run.sh` takes them.
pub(crate) fn write(dir: &Path, date: &str, stem: &str, options: &str, quick: bool, plan: &Plan, out: &Outcome) -> Result<PathBuf> {
    let runs = &out.runs;
    let mut md = String::new();
    let _ = writeln!(md, "# Karst benchmarks, {date} ({})\n", if quick { "quick" } else { "full" });
    let _ = writeln!(
        md,
        "Reproduce: `benches/run.sh{}` (writes this file). Machine: {} cores ({}), {} memory, Linux {}. \
         Everything ran on this one machine over loopback, load generator and broker sharing the cores; \
         load average at the start {} and at the end {} (other work on the machine makes runs noisy: compare within one report). \
         Harness time: {:.0} s.\n",
        options,
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        sh("free -h | awk '/Mem:/{print $2}'"),
        sh("uname -r"),
        out.load_start,
        sh("cut -d' ' -f1-3 /proc/loadavg"),
        out.elapsed_s
    );
    let _ = writeln!(
        md,
        "Kafka-protocol brokers are driven by `loadgen` (librdkafka through the `rdkafka` crate) with identical settings: \
         acks=all, linger.ms=5, batch.size=1 MiB, no compression, idempotence off; each producer and consumer is its own \
         client on its own thread; records carry their send time and consumers measure end-to-end latency (HDR histogram). \
         Consumers assign partitions (real consumer groups in (d)). Redis Streams, NATS JetStream and RabbitMQ are driven by \
         `peerload` with their own Rust clients (`redis`, `async-nats`, `lapin`), one stream/subject/queue per partition, \
         pipelined publishing with up to 1 MiB in flight per producer and a confirm for every message. Each run: {} s warm-up \
         ({} s in (c)), {} s measured; latency percentiles cover records sent in the measured window.\n",
        plan.warmup, plan.latency_warmup, plan.duration
    );
    md.push_str(
        "The null broker stores nothing: it acknowledges every Produce and answers every Fetch below a partition's end with \
         copies of the last batch produced to it, so its consumers do the same client work as a real broker's. It is the \
         limit of this client on this machine: a broker at 1.0× costs nothing.\n\n",
    );
    if let Some(k) = &out.kafka {
        let _ = writeln!(
            md,
            "Apache Kafka {} runs as one KRaft node (broker and controller in one JVM) on loopback with a fresh data directory, \
             from the jars `scripts/kafka-reference.sh` resolves. Java: {}. JVM options: `{}` (the heap and G1 settings of \
             Kafka's `kafka-server-start.sh` and `kafka-run-class.sh`, full tiered JIT). Broker settings are Kafka's defaults \
             (num.network.threads=3, num.io.threads=8, 1 GiB segments) plus what one node needs: replication factor 1 for the \
             internal topics and `group.initial.rebalance.delay.ms=0`, as in Kafka's shipped `server.properties`. \
             \"Kafka\" acknowledges from the page cache (its default: no fsync per acknowledgement, flushing left to the OS); \
             \"Kafka fsync\" sets `log.flush.interval.messages=1`, so every append is fsynced before it is acknowledged: \
             Karst's default durability. \
             JIT warm-up: Karst and the other peers start afresh for every workload, with nothing to warm; a fresh Kafka JVM \
             instead gets {:.0} s of unrecorded load shaped like (a) (1 KiB records, 2 producers, 2 consumers, maximum rate, \
             its own topic) before its first measured run, and then keeps running from one workload to the next, each on a new \
             topic: one JVM for (a), (b), (a′), (b′), another for (c), (d), (e), each warmed. Warm-ups in this run: {}. \
             Kafka's start-up is timed to its first ApiVersions answer, like the other brokers'; \"ready\" is until Metadata \
             lists the broker (registered with its controller and unfenced; CreateTopics fails before), and runs start only then. \
             Formatting its storage (`kafka.tools.StorageTool`, a separate JVM run before the broker's) is not timed.\n",
            k.version,
            k.java,
            crate::systems::KAFKA_JVM_OPTIONS.join(" "),
            plan.jvm_warmup,
            if k.warmups.is_empty() { "none".to_string() } else { k.warmups.join("; ") }
        );
    }
    md.push_str(&out.memory_note);
    md.push('\n');

    md.push_str("## Start-up and memory\n\nStart-up is from spawning the process to the first answer on a new connection (Kafka protocol: ApiVersions; Redis: PING; NATS: INFO; RabbitMQ: the AMQP handshake), empty data directory; ready is the same for all but Apache Kafka (see above). Idle RSS is VmRSS of the server and its child processes shortly after start (2 s for RabbitMQ and Kafka, 0.5 s for the others); under load is the highest VmRSS sampled every 250 ms during (a). Anon is RssAnon, which leaves out file pages mapped into the process (Karst reads its log through mappings, which VmRSS counts; Kafka reads with read and sendfile, which it does not).\n\n");
    md.push_str("| system | start-up ms | ready ms | idle RSS MB | idle anon MB | RSS under load (a) MB | anon under load (a) MB |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for s in &out.starts {
        let a = find(runs, "a", s.kind);
        let peak = |f: fn(&RunResult) -> Option<u64>| a.and_then(f).map(mb).unwrap_or_else(|| "–".into());
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {} | {} | {} | {} |",
            s.kind.name(),
            s.startup_ms,
            s.ready_ms,
            mb(s.idle_rss),
            mb(s.idle_anon),
            peak(|r| r.server_rss_peak),
            peak(|r| r.server_anon_peak)
        );
    }

    let date_png = |name: &str| format!("{stem}-{name}.png");
    let font = plots::init_font();
    if let Err(e) = &font {
        md.push_str(&format!("\nPlots were not drawn: {e:#}.\n"));
    }
    let mut panels = Vec::new();
    for (w, title) in [("a", "(a) maximum throughput, 1 KiB records"), ("b", "(b) maximum throughput, 100-byte records")] {
        md.push_str(&format!(
            "\n## {title}\n\n1 topic, 6 partitions, 2 producers, 2 consumers, acks=all. Throughput is what reached the consumers: \
             the lower of the produce and consume rates (a producer that outruns its consumers is building a backlog, not moving data); \
             the ratios are of throughput.\n\n"
        ));
        throughput_table(&mut md, runs, w);
        panels.push((title, runs.iter().filter(|r| r.workload == w).collect::<Vec<_>>()));
    }
    for (w, title) in [("ap", "(a′) producers only, 1 KiB records"), ("bp", "(b′) producers only, 100-byte records")] {
        md.push_str(&format!(
            "\n## {title}\n\nAs (a)/(b) with no consumers, Kafka-protocol brokers only: the broker's cost of taking records in, \
             without the consumers' share of the two cores.\n\n"
        ));
        throughput_table(&mut md, runs, w);
    }
    if font.is_ok() && panels.iter().any(|(_, r)| !r.is_empty()) {
        match plots::throughput(&dir.join(date_png("throughput")), &panels) {
            Ok(()) => md.push_str(&format!("\n![throughput]({})\n", date_png("throughput"))),
            Err(e) => md.push_str(&format!("\nThroughput plot failed: {e:#}\n")),
        }
    }

    let rate = out.fixed_rate.unwrap_or(0.0);
    md.push_str(&format!(
        "\n## (c) latency at a fixed rate\n\n{rate:.0} msgs/s of 1 KiB records (half the lowest peer maximum in (a)), 6 partitions, 2 producers, 2 consumers.\n\n"
    ));
    md.push_str("| system | durability | achieved msgs/s | e2e p50 ms | e2e p99 ms | e2e p99.9 ms | e2e max ms | ack p99 ms | missing | p99 × Karst | p99 × Kafka |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let karst_p99 = find(runs, "c", Kind::KarstFsync).map(|r| r.e2e_latency.p99_us as f64);
    let kafka_p99 = find(runs, "c", Kind::Kafka).map(|r| r.e2e_latency.p99_us as f64);
    let c_runs: Vec<&RunResult> = runs.iter().filter(|r| r.workload == "c").collect();
    for r in &c_runs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.system,
            r.durability,
            k(r.produce_msgs_per_s),
            ms(r.e2e_latency.p50_us),
            ms(r.e2e_latency.p99_us),
            ms(r.e2e_latency.p999_us),
            ms(r.e2e_latency.max_us),
            ms(r.ack_latency.p99_us),
            r.missing,
            ratio(r.e2e_latency.p99_us as f64, karst_p99),
            ratio(r.e2e_latency.p99_us as f64, kafka_p99)
        );
    }
    if font.is_ok() && !c_runs.is_empty() {
        match plots::latency(&dir.join(date_png("latency")), &format!("(c) end-to-end latency at {rate:.0} msgs/s, 1 KiB"), &c_runs) {
            Ok(()) => md.push_str(&format!("\n![latency]({})\n", date_png("latency"))),
            Err(e) => md.push_str(&format!("\nLatency plot failed: {e:#}\n")),
        }
    }

    md.push_str("\n## (d) fan-out: 4 consumer groups\n\n1 KiB records at maximum rate, 6 partitions, 2 producers, 4 groups of 1 member each (subscribe), every group reads every record (Karst, Tansu memory, Kafka).\n\n");
    md.push_str("| system | produce msgs/s | consume msgs/s per group | e2e p50 ms | e2e p99 ms | e2e max ms | missing | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in runs.iter().filter(|r| r.workload == "d") {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.system,
            k(r.produce_msgs_per_s),
            k(r.consume_msgs_per_s),
            ms(r.e2e_latency.p50_us),
            ms(r.e2e_latency.p99_us),
            ms(r.e2e_latency.max_us),
            r.missing,
            r.errors
        );
    }

    md.push_str(&format!(
        "\n## (e) catch-up read of a backlog\n\n{} MB of 1 KiB records written first (Karst, Tansu memory, Kafka), then read from the beginning by 2 consumers. \
         Dropping the page cache (`echo 3 > /proc/sys/vm/drop_caches`) {}.\n\n",
        mb(plan.backlog),
        if out.drop_caches_possible {
            "works here and was done between writing and reading"
        } else {
            "is not permitted here, so the backlog was read from the page cache: this measures the read path, not the disk"
        }
    ));
    md.push_str("| system | backlog MB | write msgs/s | read s | read msgs/s | read MB/s | page cache dropped |\n|---|---:|---:|---:|---:|---:|---|\n");
    for r in runs.iter().filter(|r| r.workload == "e" || r.workload == "e-old") {
        let consumers = if r.workload == "e-old" { " (0.9.0 consumers: Fetch v1, down-converted)" } else { "" };
        let _ = writeln!(
            md,
            "| {}{consumers} | {} | {} | {:.1} | {} | {} | {} |",
            r.system,
            mb(r.backlog_bytes.unwrap_or(0)),
            k(r.acked_total as f64 / r.duration_s.max(1e-9)),
            r.catchup_s.unwrap_or(0.0),
            k(r.consume_msgs_per_s),
            k(r.consume_mb_per_s),
            if r.page_cache_dropped == Some(true) { "yes" } else { "no" }
        );
    }

    let scales: Vec<(Kind, &Scale)> = [(Kind::KarstFsync, out.scale.as_ref()), (Kind::Kafka, out.kafka_scale.as_ref())]
        .into_iter()
        .filter_map(|(k, s)| Some((k, s?)))
        .collect();
    if !scales.is_empty() {
        md.push_str(&format!(
            "\n## (f) {} partitions on one broker (Karst with fsync before every ack; Kafka with its default, no fsync)\n\n1 KiB records at maximum rate from 2 producers, round-robin \
             over every partition, so each produce request carries thousands of one-record batches; 2 consumers assigned half the \
             partitions each. Consume msgs/s counts records received within the measured window; the e2e percentiles cover every \
             record sent in it, however late it arrived. Errors are records the producers still held when the run ended, purged by the load generator after its \
             drain timeout (librdkafka batches per partition, so at this spread most records wait in the client). Start-up and restart \
             are to ready (Kafka: Metadata lists the broker). Before the restart the broker is stopped with SIGTERM and 30 s to finish; \
             one that takes longer is killed and restarts through recovery. No JIT warm-up for Kafka here. Before the measured run one \
             empty record goes to every partition and the run starts once all are acknowledged (Kafka lists a new partition in \
             Metadata before it has created its log); those records are not counted.\n\n",
            plan.scale_partitions
        ));
        md.push_str("| system | partitions | start-up, empty ms | CreateTopics until all partitions in metadata s | until every partition took a record s | stopped within 30 s | restart with the partitions ms | idle RSS after restart MB | produce msgs/s | consume msgs/s | e2e p50 ms | e2e p99 ms | per-partition msgs min / median / max | CV | partitions with none | errors |\n|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n");
        for (kind, s) in &scales {
            let (p, c, spread, errors) = match &s.run {
                Some(r) => (k(r.produce_msgs_per_s), k(r.consume_msgs_per_s), r.spread.clone(), r.errors),
                None => ("–".into(), "–".into(), None, 0),
            };
            let (p50, p99) = match &s.run {
                Some(r) => (ms(r.e2e_latency.p50_us), ms(r.e2e_latency.p99_us)),
                None => ("–".into(), "–".into()),
            };
            let (mmm, cv, empty) = match spread {
                Some(sp) => (format!("{} / {} / {}", sp.min, sp.median, sp.max), format!("{:.2}", sp.cv), sp.empty.to_string()),
                None => ("–".into(), "–".into(), "–".into()),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {:.1} | {} | {} | {:.0} | {} | {p} | {c} | {p50} | {p99} | {mmm} | {cv} | {empty} | {errors} |",
                kind.name(),
                s.partitions,
                s.empty_startup_ms,
                s.create_s,
                s.run.as_ref().and_then(|r| r.ready_s).map_or("–".into(), |v| format!("{v:.1}")),
                if s.clean_stop { "yes" } else { "no (killed)" },
                s.restart_ms,
                mb(s.idle_rss)
            );
        }
        for (kind, s) in &scales {
            if let Some(r) = s.run.as_ref().filter(|r| !r.error_samples.is_empty()) {
                md.push_str(&format!("\n{} errors seen: {}\n", kind.name(), r.error_samples.join("; ")));
            }
        }
        if scales.iter().any(|(_, s)| s.partitions < plan.scale_partitions) {
            md.push_str("\nA row with fewer partitions: the full count could not be created there (see *Not run*).\n");
        }
    }

    kafka_section(&mut md, out);
    md.push_str("\n## Acceptance targets of issue 4, checked against this run\n\n");
    md.push_str(
        "Throughput ratios are of what reached the consumers (see (a)); where consumers ran, the ratio of produce rates alone follows it.\n\n",
    );
    for w in ["a", "b", "ap", "bp"] {
        let rel = |a: Option<&RunResult>, b: Option<&RunResult>, f: fn(&RunResult) -> f64| match (a, b) {
            (Some(a), Some(b)) if f(b) > 0.0 => Some(f(a) / f(b)),
            _ => None,
        };
        let produce = |r: &RunResult| r.produce_msgs_per_s;
        for (mine, peer, target) in [
            (Kind::KarstFsync, Kind::Null, 0.8),
            (Kind::KarstNoFsync, Kind::Null, 0.8),
            (Kind::KarstFsync, Kind::TansuMemory, 3.0),
            (Kind::KarstFsync, Kind::TansuSqlite, 3.0),
        ] {
            let (a, b) = (find(runs, w, mine), find(runs, w, peer));
            let also = if w.len() == 1 { rel(a, b, produce).map(|v| ("produce rates", v)) } else { None };
            let peer_name = if peer == Kind::TansuSqlite { "Tansu sqlite (durable storage)" } else { peer.name() };
            let mine_name = if mine == Kind::KarstFsync { "Karst (fsync)" } else { mine.name() };
            check_also(&mut md, &format!("({w}) {mine_name} / {peer_name}"), rel(a, b, delivered), target, true, "", also);
        }
        if w.len() > 1 {
            continue; // the other brokers ran with consumers only
        }
        for (mine, peer) in [
            (Kind::KarstFsync, Kind::RedisAlways),
            (Kind::KarstFsync, Kind::RabbitQuorum),
            (Kind::KarstNoFsync, Kind::RedisEverysec),
            (Kind::KarstNoFsync, Kind::NatsFile),
        ] {
            let (a, b) = (find(runs, w, mine), find(runs, w, peer));
            check(&mut md, &format!("({w}) {} / {} msgs/s", mine.name(), peer.name()), rel(a, b, delivered), 1.0, true, "");
        }
    }
    let tansu_p99 = find(runs, "c", Kind::TansuMemory).map(|r| r.e2e_latency.p99_us as f64);
    let p99_ratio = match (karst_p99, tansu_p99) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    check(&mut md, "(c) Karst p99 / Tansu memory p99", p99_ratio, 1.0 / 3.0, false, "");
    let start = |kind: Kind| out.starts.iter().find(|s| s.kind == kind);
    check(&mut md, "Karst idle RSS, MB", start(Kind::KarstFsync).map(|s| s.idle_rss as f64 / 1e6), 20.0, false, "");
    check(&mut md, "Karst start-up, empty data dir, ms", start(Kind::KarstFsync).map(|s| s.startup_ms), 100.0, false, "");
    if let Some(s) = &out.scale {
        check(
            &mut md,
            &format!("Karst restart with {} partitions, ms", s.partitions),
            Some(s.restart_ms).filter(|v| *v > 0.0),
            5000.0,
            false,
            "",
        );
        check(
            &mut md,
            &format!("Karst RSS with {} partitions, MB", s.partitions),
            Some(s.idle_rss as f64 / 1e6).filter(|v| *v > 0.0),
            1024.0,
            false,
            "",
        );
    }

    if !out.skipped.is_empty() {
        md.push_str("\n## Not run\n\n");
        for s in &out.skipped {
            let _ = writeln!(md, "- {}", s.replace('\n', " "));
        }
    }
    let notes: Vec<String> = runs.iter().flat_map(|r| r.notes.iter().map(move |n| format!("{} ({}): {n}", r.system, r.workload))).collect();
    if !notes.is_empty() {
        md.push_str("\n## Notes from the load generators\n\n");
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    let path = dir.join(format!("{stem}.md"));
    std::fs::write(&path, md)?;
    let json = dir.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(runs)?)?;
    Ok(path)
}

/// One figure of the Karst–Kafka comparison: its value for a system, if measured.
type Metric<'a> = Box<dyn Fn(Kind) -> Option<f64> + 'a>;

/// Karst against Apache Kafka, workload by workload, and the goal check of issue 16.
fn kafka_section(md: &mut String, out: &Outcome) {
    let runs = &out.runs;
    if !runs.iter().any(|r| r.system == Kind::Kafka.name() || r.system == Kind::KafkaFsync.name()) {
        return;
    }
    let run = |w: &'static str, f: fn(&RunResult) -> f64| -> Metric<'_> { Box::new(move |kind| find(runs, w, kind).map(f)) };
    let start = |f: fn(&crate::StartInfo) -> f64| -> Metric<'_> {
        Box::new(move |kind| out.starts.iter().find(|s| s.kind == kind).map(f).filter(|v| *v > 0.0))
    };
    let scale = |f: fn(&Scale) -> Option<f64>| -> Metric<'_> {
        Box::new(move |kind| match kind {
            Kind::KarstFsync => out.scale.as_ref().and_then(f),
            Kind::Kafka => out.kafka_scale.as_ref().and_then(f),
            _ => None,
        })
    };
    let us_ms = |us: u64| us as f64 / 1000.0;
    let rows: Vec<(&str, Metric<'_>)> = vec![
        ("(a) throughput msgs/s, 1 KiB", run("a", delivered)),
        ("(a) produce MB/s", run("a", |r| r.produce_mb_per_s)),
        ("(b) throughput msgs/s, 100 B", run("b", delivered)),
        ("(b) produce MB/s", run("b", |r| r.produce_mb_per_s)),
        ("(a′) producers only msgs/s, 1 KiB", run("ap", delivered)),
        ("(b′) producers only msgs/s, 100 B", run("bp", delivered)),
        ("(c) e2e p50 ms at the fixed rate", Box::new(move |kind| find(runs, "c", kind).map(|r| us_ms(r.e2e_latency.p50_us)))),
        ("(c) e2e p99 ms", Box::new(move |kind| find(runs, "c", kind).map(|r| us_ms(r.e2e_latency.p99_us)))),
        ("(c) e2e p99.9 ms", Box::new(move |kind| find(runs, "c", kind).map(|r| us_ms(r.e2e_latency.p999_us)))),
        ("(d) produce msgs/s, 4 groups", run("d", |r| r.produce_msgs_per_s)),
        ("(d) consume msgs/s per group", run("d", |r| r.consume_msgs_per_s)),
        ("(e) catch-up read MB/s", run("e", |r| r.consume_mb_per_s)),
        ("start-up ms (first ApiVersions answer)", start(|s| s.startup_ms)),
        ("ready ms", start(|s| s.ready_ms)),
        ("idle RSS MB", start(|s| s.idle_rss as f64 / 1e6)),
        ("idle anon MB", start(|s| s.idle_anon as f64 / 1e6)),
        ("RSS under load (a) MB", Box::new(move |kind| find(runs, "a", kind).and_then(|r| r.server_rss_peak).map(|b| b as f64 / 1e6))),
        ("anon under load (a) MB", Box::new(move |kind| find(runs, "a", kind).and_then(|r| r.server_anon_peak).map(|b| b as f64 / 1e6))),
        ("(f) CreateTopics s", scale(|s| Some(s.create_s).filter(|v| *v > 0.0))),
        ("(f) until every partition took a record s", scale(|s| s.run.as_ref().and_then(|r| r.ready_s))),
        ("(f) produce msgs/s", scale(|s| s.run.as_ref().map(|r| r.produce_msgs_per_s))),
        ("(f) restart ms", scale(|s| Some(s.restart_ms).filter(|v| *v > 0.0))),
        ("(f) RSS after restart MB", scale(|s| Some(s.idle_rss as f64 / 1e6).filter(|v| *v > 0.0))),
    ];
    md.push_str(
        "\n## Karst against Apache Kafka\n\nThe figures above side by side. Ratios are Karst's figure divided by Kafka's: above 1 is \
         better for throughput, below 1 for latency, time and memory. Throughput ratios hold for MB/s as well (the same record sizes). \
         (f) ran Kafka with its default durability only.\n\n",
    );
    md.push_str("| | Karst | Karst no-fsync | Kafka | Kafka fsync | Karst / Kafka | Karst / Kafka fsync | Karst no-fsync / Kafka |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let show = |v: Option<f64>| v.map(|v| if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") }).unwrap_or_else(|| "–".into());
    for (what, f) in &rows {
        let (karst, nofsync, kafka, kafka_fsync) = (f(Kind::KarstFsync), f(Kind::KarstNoFsync), f(Kind::Kafka), f(Kind::KafkaFsync));
        if kafka.is_none() && kafka_fsync.is_none() {
            continue;
        }
        let _ = writeln!(
            md,
            "| {what} | {} | {} | {} | {} | {} | {} | {} |",
            show(karst),
            show(nofsync),
            show(kafka),
            show(kafka_fsync),
            karst.map_or("–".into(), |a| ratio(a, kafka)),
            karst.map_or("–".into(), |a| ratio(a, kafka_fsync)),
            nofsync.map_or("–".into(), |a| ratio(a, kafka)),
        );
    }

    md.push_str(
        "\n## Goal check (issue 16)\n\nKarst with fsync before every acknowledgement at least as fast as Kafka without fsync; \
         Karst's p99 at most a third of Kafka's; Karst's RSS at most a twentieth of Kafka's. Kafka here is its default \
         configuration (no fsync), one run each on this shared 2-core machine.\n\n",
    );
    let verdict = |ok: bool| if ok { "**met**" } else { "**not met**" };
    for (w, what) in [("a", "(a) 1 KiB"), ("b", "(b) 100 B"), ("ap", "(a′) producers only, 1 KiB"), ("bp", "(b′) producers only, 100 B")]
    {
        let (Some(a), Some(b)) = (find(runs, w, Kind::KarstFsync), find(runs, w, Kind::Kafka)) else {
            let _ = writeln!(md, "- Throughput, {what}: not measured in this run");
            continue;
        };
        let (x, y) = (delivered(a), delivered(b));
        let _ = writeln!(
            md,
            "- Throughput, {what}: Karst with fsync before every ack {} msgs/s vs Kafka without fsync {} msgs/s = {:.2}× (goal ≥ 1×): {}",
            k(x),
            k(y),
            x / y.max(1e-9),
            verdict(x >= y)
        );
    }
    if let (Some(a), Some(b)) = (find(runs, "c", Kind::KarstFsync), find(runs, "c", Kind::Kafka)) {
        let (x, y) = (us_ms(a.e2e_latency.p99_us), us_ms(b.e2e_latency.p99_us));
        let also = find(runs, "c", Kind::KafkaFsync)
            .map(|f| format!(" (Kafka fsync p99 {:.2} ms)", us_ms(f.e2e_latency.p99_us)))
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "- Latency, (c): Karst e2e p99 {x:.2} ms vs a third of Kafka's {y:.2} ms = {:.2} ms{also}: {}",
            y / 3.0,
            verdict(x <= y / 3.0)
        );
    }
    let rss = |kind: Kind| out.starts.iter().find(|s| s.kind == kind).map(|s| s.idle_rss as f64 / 1e6);
    if let (Some(x), Some(y)) = (rss(Kind::KarstFsync), rss(Kind::Kafka)) {
        let _ = writeln!(
            md,
            "- Memory, idle: Karst RSS {x:.1} MB vs a twentieth of Kafka's {y:.1} MB = {:.1} MB: {}",
            y / 20.0,
            verdict(x <= y / 20.0)
        );
    }
    let loaded = |kind: Kind| find(runs, "a", kind).and_then(|r| Some((r.server_rss_peak? as f64 / 1e6, r.server_anon_peak? as f64 / 1e6)));
    if let (Some((x, xa)), Some((y, ya))) = (loaded(Kind::KarstFsync), loaded(Kind::Kafka)) {
        let _ = writeln!(
            md,
            "- Memory, under load (a): Karst RSS {x:.1} MB vs a twentieth of Kafka's {y:.1} MB = {:.1} MB: {}; anonymous memory only (without mapped log pages): {xa:.1} MB vs {ya:.1} / 20 = {:.1} MB: {}",
            y / 20.0,
            verdict(x <= y / 20.0),
            ya / 20.0,
            verdict(xa <= ya / 20.0)
        );
    }
}
