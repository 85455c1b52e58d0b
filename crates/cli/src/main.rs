//! `karst`: the broker binary, and admin commands that speak the Kafka protocol
//! to any broker.

mod admin;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::time::Duration;

use karst_broker::broker::ControllerNode;
use karst_broker::metadata::Listener;
use karst_broker::{serve_listeners, Broker, BrokerConfig};
use karst_controller::{ask_quorum, parse_voters, MembershipChange};
use tokio::net::TcpListener;
use tracing::{info, warn};

#[derive(Parser, Debug)]
#[command(name = "karst", version, about = "Karst: a Kafka-compatible commit-log broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a broker (defaults: 127.0.0.1:9092, data in ./karst-data).
    Serve(ServeArgs),
    /// Show or change the controller quorum of a running cluster.
    Voters(VotersArgs),
    /// Create, list, describe, delete, configure and move topics.
    Topic(admin::TopicCmd),
    /// Write stdin lines to a topic, one record per line.
    Produce(admin::ProduceCmd),
    /// Print a topic's records, alone or as a consumer-group member.
    Consume(admin::ConsumeCmd),
    /// List, describe, reset and delete consumer groups.
    Group(admin::GroupCmd),
    /// Show the cluster: id, controller, brokers.
    Cluster(admin::ClusterCmd),
    /// List, add and delete SCRAM users.
    User(admin::UserCmd),
    /// List, set and delete client quotas (byte rates, request and connection rates).
    Quota(admin::QuotaCmd),
    /// List, add and remove ACLs.
    Acl(admin::AclCmd),
}

#[derive(clap::Args, Debug)]
struct VotersArgs {
    /// Any controller of the cluster, as `id@host:port` (comma-separated for several);
    /// requests are passed on to the quorum's leader.
    #[arg(long, value_name = "ID@HOST:PORT")]
    bootstrap_controller: String,
    #[command(subcommand)]
    action: VotersAction,
}

#[derive(Subcommand, Debug)]
enum VotersAction {
    /// Print the leader, the voters and the learners (broker-only nodes).
    List,
    /// Make node `--node-id`, whose controller listens on `--address`, a voter. A
    /// node started outside `controller.quorum.voters` already follows the log as a
    /// learner; it catches up before it votes.
    Add {
        #[arg(long)]
        node_id: u64,
        #[arg(long, value_name = "HOST:PORT")]
        address: String,
    },
    /// Take node `--node-id` out of the quorum (voter or learner).
    Remove {
        #[arg(long)]
        node_id: u64,
    },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to accept Kafka clients on (port 0 picks a free one), or named
    /// listeners `CLIENT://0.0.0.0:9092,INTERNAL://0.0.0.0:19092` (`listeners`).
    /// Given twice, the last one counts.
    #[arg(long, overrides_with = "listen")]
    listen: Option<String>,
    /// host:port clients are told to connect to (default: the bound address), or
    /// one per named listener `CLIENT://localhost:9092,INTERNAL://karst-1:19092`
    /// (`advertised.listeners`).
    #[arg(long, overrides_with = "advertised_listener")]
    advertised_listener: Option<String>,
    /// Directory for partitions and metadata.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML file with settings (Kafka names, e.g. `log.segment.bytes = 1048576`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Broker id, also this node's controller id (`node.id`, default 1).
    #[arg(long)]
    node_id: Option<i32>,
    /// Address this node's controller accepts quorum peers on
    /// (`controller.listener`; default: its own entry in the voters, or an
    /// ephemeral loopback port for a single node).
    #[arg(long)]
    controller_listen: Option<String>,
    /// The controller quorum: `1@host:port,2@host:port,3@host:port`
    /// (`controller.quorum.voters`; default: this node alone).
    #[arg(long)]
    controller_quorum_voters: Option<String>,
    /// Serve clients and host partitions, but do not vote in the controller quorum
    /// (`process.roles=broker`): the node follows the metadata log as a learner.
    #[arg(long, conflicts_with = "controller_only")]
    broker_only: bool,
    /// Vote in the controller quorum only; no Kafka listener (`process.roles=controller`).
    #[arg(long)]
    controller_only: bool,
    /// Address of the HTTP endpoint for /metrics and /health (`admin.listener`,
    /// default 127.0.0.1:9644; port 0 picks a free one; empty disables it).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Any setting by its Kafka name, repeatable: --set num.partitions=3
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

fn load_config(args: &ServeArgs) -> Result<BrokerConfig> {
    let mut c = BrokerConfig::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        c.apply_toml(&text, &path.display().to_string())?;
    }
    c.apply_env(std::env::vars())?;
    for kv in &args.set {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--set takes KEY=VALUE, got `{kv}`");
        };
        c.set(k.trim(), v)?;
    }
    if let Some(l) = &args.listen {
        c.set("listeners", l)?;
    }
    if let Some(a) = &args.advertised_listener {
        c.set("advertised.listeners", a)?;
    }
    if let Some(d) = &args.data_dir {
        c.data_dir = d.clone();
    }
    if let Some(n) = args.node_id {
        c.node_id = n;
    }
    if args.broker_only {
        c.set("process.roles", "broker")?;
    }
    if args.controller_only {
        c.set("process.roles", "controller")?;
    }
    if let Some(l) = &args.controller_listen {
        c.set("controller.listener", l)?;
    }
    if let Some(v) = &args.controller_quorum_voters {
        c.set("controller.quorum.voters", v)?;
    }
    if let Some(a) = &args.admin_listen {
        c.set("admin.listener", a)?;
    }
    c.finish(hostname)?;
    Ok(c)
}

/// This machine's host name (a container's or pod's own).
fn hostname() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_str().ok()?.to_string();
    (!name.is_empty()).then_some(name)
}

async fn run_serve(args: ServeArgs) -> Result<()> {
    let config = load_config(&args)?;
    for (k, v) in config.describe() {
        info!("config {k} = {v}");
    }
    match karst_broker::limits::raise_open_file_limit() {
        Some(n) => info!("open-file limit {n}"),
        None => info!("open-file limit: unlimited"),
    }
    if !config.roles.broker {
        return run_controller_only(config).await;
    }
    let listeners = config.listeners()?;
    let mut bound = Vec::new();
    for l in &listeners.bind {
        let addr = l.address();
        let listener = TcpListener::bind(&addr).await.with_context(|| format!("binding listener {} ({addr})", l.name))?;
        bound.push((l.name.clone(), listener.local_addr()?, listener));
    }
    // Port 0 becomes the bound port, so the broker registers where it really listens.
    let mut config = config;
    let bound_text = bound.iter().map(|(name, addr, _)| format!("{name}://{addr}")).collect::<Vec<_>>().join(",");
    config.set("listeners", &bound_text)?;
    // The admin endpoint starts before the logs are recovered, so /health/live answers
    // (and /health/ready says why not) during a long start-up.
    let admin = match &config.admin_listener {
        Some(addr) => {
            let listener = karst_broker::metrics::bind_admin(addr).await.map_err(anyhow::Error::msg)?;
            let bound = listener.local_addr()?;
            Some((karst_broker::metrics::Admin::start(listener), bound))
        }
        None => None,
    };
    let broker = tokio::task::spawn_blocking({
        let c = config.clone();
        move || Broker::open(c)
    })
    .await??;
    let advertised: Vec<Listener> = bound
        .iter()
        .map(|(name, addr, _)| match listeners.advertised.get(name) {
            Some(a) => Listener { name: name.clone(), host: a.bare_host().to_string(), port: a.port },
            // 0.0.0.0 is no address a client can connect to; an image started with
            // `docker run -p 9092:9092` is reached from its host as localhost.
            None if addr.ip().is_unspecified() => {
                warn!(listener = %name, "{addr} is advertised as localhost:{}; set advertised.listeners for other clients", addr.port());
                Listener { name: name.clone(), host: "localhost".to_string(), port: addr.port() }
            }
            None => Listener { name: name.clone(), host: addr.ip().to_string(), port: addr.port() },
        })
        .collect();
    // Re-registering waits for a controller commit: a plain thread's job.
    tokio::task::spawn_blocking({
        let (b, a) = (broker.clone(), advertised.clone());
        move || b.set_advertised_listeners(a)
    })
    .await?;
    if let Some((admin, addr)) = admin {
        admin.set_broker(broker.clone());
        println!("Karst admin listening on {addr}");
    }
    for ((name, addr, _), a) in bound.iter().zip(&advertised) {
        println!("Karst listener {name} on {addr} advertised as {}:{}", a.host, a.port);
    }
    let first = bound.first().map(|b| b.1).context("no listeners")?;
    println!("Karst listening on {first}");
    info!(bound = %bound_text, advertised = ?advertised, data_dir = %config.data_dir.display(), cluster_id = %broker.cluster_id, "broker started");
    let sockets = bound.into_iter().map(|(name, _, l)| (name, l)).collect();
    serve_listeners(broker.clone(), sockets, shutdown_signal()).await;
    tokio::task::spawn_blocking(move || broker.shutdown()).await?;
    info!("stopped");
    Ok(())
}

/// `process.roles=controller`: a quorum voter without a Kafka listener.
async fn run_controller_only(config: BrokerConfig) -> Result<()> {
    let node = tokio::task::spawn_blocking({
        let c = config.clone();
        move || ControllerNode::open(&c)
    })
    .await??;
    let addr = node.controller_addr();
    println!("Karst controller listening on {addr}");
    info!(%addr, node_id = config.node_id, data_dir = %config.data_dir.display(), "controller-only node started");
    shutdown_signal().await;
    tokio::task::spawn_blocking(move || node.shutdown()).await?;
    info!("stopped");
    Ok(())
}

async fn run_voters(args: VotersArgs) -> Result<()> {
    let contacts = parse_voters(&args.bootstrap_controller).map_err(|e| anyhow::anyhow!("--bootstrap-controller: {e}"))?;
    let change = match args.action {
        VotersAction::List => None,
        VotersAction::Add { node_id, address } => Some(MembershipChange::AddVoter { id: node_id, addr: address }),
        VotersAction::Remove { node_id } => Some(MembershipChange::RemoveNode { id: node_id }),
    };
    let q = ask_quorum(&karst_controller::Transport::plaintext(), &contacts, "", 0, change, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("leader: {}", q.leader.map_or("none".to_string(), |l| l.to_string()));
    for (id, addr) in &q.voters {
        println!("voter {id}@{addr}");
    }
    for (id, addr) in &q.learners {
        println!("learner {id}@{addr}");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => broker_runtime()?.block_on(run_serve(args)),
        Command::Voters(args) => broker_runtime()?.block_on(run_voters(args)),
        Command::Topic(c) => admin::main(admin::AdminCommand::Topic(c)),
        Command::Produce(c) => admin::main(admin::AdminCommand::Produce(c)),
        Command::Consume(c) => admin::main(admin::AdminCommand::Consume(c)),
        Command::Group(c) => admin::main(admin::AdminCommand::Group(c)),
        Command::User(c) => admin::main(admin::AdminCommand::User(c)),
        Command::Quota(c) => admin::main(admin::AdminCommand::Quota(c)),
        Command::Acl(c) => admin::main(admin::AdminCommand::Acl(c)),
        Command::Cluster(c) => admin::main(admin::AdminCommand::Cluster(c)),
    }
}

/// The log filter without `KARST_LOG` or `RUST_LOG`: Karst's own crates at info,
/// dependencies at warn (openraft prints whole state structs at info).
const DEFAULT_LOG_FILTER: &str = "warn,karst=info,karst_broker=info,karst_controller=info,karst_storage=info,karst_protocol=info";

/// `KARST_LOG`, else `RUST_LOG`, else [`DEFAULT_LOG_FILTER`].
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("KARST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER))
}

/// Logging and the runtime of `serve` and `voters`.
fn broker_runtime() -> Result<tokio::runtime::Runtime> {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("karst").build()?)
}
