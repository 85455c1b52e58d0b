//! `karst`: the broker binary.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use karst_broker::{serve, Broker, BrokerConfig};
use tokio::net::TcpListener;
use tracing::info;

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
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to accept Kafka clients on (port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// host:port clients are told to connect to (default: the bound address).
    #[arg(long)]
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
    if let Some(l) = &args.controller_listen {
        c.set("controller.listener", l)?;
    }
    if let Some(v) = &args.controller_quorum_voters {
        c.set("controller.quorum.voters", v)?;
    }
    Ok(c)
}

fn split_host_port(s: &str) -> Result<(String, i32)> {
    let (host, port) = s.rsplit_once(':').with_context(|| format!("`{s}` is not host:port"))?;
    let port: u16 = port.parse().with_context(|| format!("bad port in `{s}`"))?;
    Ok((host.trim_matches(|c| c == '[' || c == ']').to_string(), port as i32))
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
    let listener = TcpListener::bind(&config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let bound = listener.local_addr()?;
    let broker = tokio::task::spawn_blocking({
        let c = config.clone();
        move || Broker::open(c)
    })
    .await??;
    let (host, port) = match &config.advertised_listener {
        Some(a) => split_host_port(a)?,
        None => (bound.ip().to_string(), bound.port() as i32),
    };
    broker.set_advertised(host.clone(), port);
    println!("Karst listening on {bound}");
    info!(%bound, advertised = %format!("{host}:{port}"), data_dir = %config.data_dir.display(), cluster_id = %broker.cluster_id, "broker started");
    serve(broker.clone(), listener, shutdown_signal()).await;
    tokio::task::spawn_blocking(move || broker.shutdown()).await?;
    info!("stopped");
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KARST_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("karst").build()?;
    match cli.command {
        Command::Serve(args) => rt.block_on(run_serve(args)),
    }
}
