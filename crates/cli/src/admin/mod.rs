//! The admin commands: a small Kafka client (kafka-protocol codecs over tokio
//! TcpStream) that works against any broker speaking the Kafka protocol.

mod acl;
pub(crate) mod args;
pub(crate) mod client;
pub(crate) mod cluster;
pub(crate) mod connection;
pub(crate) mod consume;
pub(crate) mod errors;
pub(crate) mod group;
pub(crate) mod legacy;
pub(crate) mod membership;
pub(crate) mod murmur2;
pub(crate) mod output;
pub(crate) mod produce;
mod quota;
mod security;
pub(crate) mod topic;
mod user;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

use args::{parse_acks, parse_from, parse_key_value, StartFrom};
use client::Client;
use errors::KafkaError;

/// Text for people, JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum Format {
    #[default]
    Text,
    Json,
}

/// Where to connect and how to print: accepted before or after the subcommand.
#[derive(Args, Debug, Clone)]
pub(crate) struct Conn {
    /// Broker(s) to bootstrap from: HOST:PORT, comma-separated for several
    /// (`-b` as in kcat).
    #[arg(short = 'b', long, global = true, env = "KARST_BOOTSTRAP_SERVER", default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub(crate) bootstrap_server: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub(crate) output: Format,
    /// Kafka client properties for a secured listener (security.protocol, ssl.*,
    /// sasl.mechanism, sasl.jaas.config), as Kafka's tools take them.
    #[arg(long, global = true, env = "KARST_COMMAND_CONFIG", value_name = "FILE")]
    pub(crate) command_config: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct TopicCmd {
    #[command(flatten)]
    pub(crate) conn: Conn,
    #[command(subcommand)]
    pub(crate) action: TopicAction,
}

#[derive(Subcommand, Debug)]
pub(crate) enum TopicAction {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(long)]
        partitions: Option<i32>,
        /// Copies of each partition (default: the broker's default.replication.factor).
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, repeatable: --config retention.ms=86400000
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed if the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topic names.
    List {
        /// Leave out internal topics (__consumer_offsets).
        #[arg(long)]
        exclude_internal: bool,
    },
    /// Partitions (leader, replicas, ISR) and configs of a topic.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Set or remove topic configs (IncrementalAlterConfigs).
    AlterConfig {
        name: String,
        /// Set a config, repeatable: --set retention.ms=3600000
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Remove a config override (back to the default), repeatable.
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Move a partition's replicas, cancel a move, or list moves in progress.
    Reassign {
        /// The topic (optional with --list).
        name: Option<String>,
        /// The partition to move.
        #[arg(long)]
        partition: Option<i32>,
        /// The new replica list, preferred leader first: 1,2,3
        #[arg(long, value_name = "IDS", conflicts_with_all = ["cancel", "list"])]
        replicas: Option<String>,
        /// Cancel the partition's move in progress.
        #[arg(long, conflicts_with = "list")]
        cancel: bool,
        /// List the moves in progress (of NAME, or of every topic).
        #[arg(long)]
        list: bool,
    },
}

#[derive(Args, Debug)]
pub(crate) struct ProduceCmd {
    #[command(flatten)]
    pub(crate) conn: Conn,
    /// The topic (created if the broker auto-creates topics).
    pub(crate) topic: String,
    /// Write every record to this partition.
    #[arg(long)]
    pub(crate) partition: Option<i32>,
    /// Split each line at the first SEP into key and value.
    #[arg(long, value_name = "SEP")]
    pub(crate) key_separator: Option<String>,
    /// Acknowledgements to wait for: all, 1 or 0.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub(crate) acks: i16,
}

#[derive(Args, Debug)]
pub(crate) struct ConsumeCmd {
    #[command(flatten)]
    pub(crate) conn: Conn,
    /// The topic to read.
    pub(crate) topic: String,
    /// Read only this partition.
    #[arg(long)]
    pub(crate) partition: Option<i32>,
    /// Consume as a member of this consumer group (committed offsets, rebalancing).
    #[arg(long)]
    pub(crate) group: Option<String>,
    /// Where to start without a committed offset: beginning, end, offset:N, timestamp:MS.
    #[arg(long, default_value = "end", value_parser = parse_from)]
    pub(crate) from: StartFrom,
    /// Stop after this many records.
    #[arg(long)]
    pub(crate) max_messages: Option<u64>,
    /// Stop when no new record arrives for this long.
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// Record format: text (one value per line) or json (one object per line).
    /// Default: --output.
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
    /// Read as a read_committed consumer: up to the last stable offset, without the
    /// records of aborted transactions (default: read_uncommitted, as Kafka's
    /// console consumer).
    #[arg(long)]
    pub(crate) read_committed: bool,
}

#[derive(Args, Debug)]
pub(crate) struct UserCmd {
    #[command(flatten)]
    pub(crate) conn: Conn,
    #[command(subcommand)]
    pub(crate) action: UserAction,
}

#[derive(Subcommand, Debug)]
pub(crate) enum UserAction {
    /// SCRAM users and their mechanisms (DescribeUserScramCredentials).
    List,
    /// Set a user's SCRAM credential (salted here; the broker never sees the password).
    Add {
        name: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// 4096 to 16384, as Kafka accepts.
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
    },
    /// Remove a user's SCRAM credential for one mechanism.
    Delete {
        name: String,
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
    },
}

#[derive(Args, Debug)]
pub(crate) struct AclCmd {
    #[command(flatten)]
    pub(crate) conn: Conn,
    #[command(subcommand)]
    pub(crate) action: AclAction,
}

/// What an ACL command names: one resource (or none: any), a principal, a host and
/// operations, as kafka-acls takes them.
#[derive(Args, Debug)]
pub(crate) struct AclArgs {
    #[arg(long)]
    pub(crate) topic: Option<String>,
    #[arg(long)]
    pub(crate) group: Option<String>,
    #[arg(long)]
    pub(crate) cluster: bool,
    #[arg(long)]
    pub(crate) transactional_id: Option<String>,
    /// The resource name is a prefix (a PREFIXED pattern).
    #[arg(long)]
    pub(crate) prefixed: bool,
    /// `User:NAME` (`User:*` for everyone).
    #[arg(long)]
    pub(crate) principal: Option<String>,
    /// The client address the ACL is for (`*`: any, the default when adding).
    #[arg(long)]
    pub(crate) host: Option<String>,
    /// Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs,
    /// AlterConfigs, IdempotentWrite, All; repeatable.
    #[arg(long)]
    pub(crate) operation: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum AclAction {
    /// ACLs matching the filters (DescribeAcls).
    List {
        #[command(flatten)]
        acl: AclArgs,
    },
    /// Adds an ACL per operation (CreateAcls).
    Add {
        #[command(flatten)]
        acl: AclArgs,
        #[arg(long)]
        allow: bool,
        #[arg(long)]
        deny: bool,
    },
    /// Removes the ACLs matching the filters (DeleteAcls).
    Remove {
        #[command(flatten)]
        acl: AclArgs,
    },
}

#[derive(Args, Debug)]
pub(crate) struct QuotaCmd {
    #[command(flatten)]
    pub(crate) conn: Conn,
    #[command(subcommand)]
    pub(crate) action: QuotaAction,
}

/// The entity a quota belongs to: a user, a client id, both, or an ip, each named or
/// the default one (what applies to those without their own).
#[derive(Args, Debug)]
pub(crate) struct QuotaEntityArgs {
    #[arg(long)]
    pub(crate) user: Option<String>,
    #[arg(long)]
    pub(crate) default_user: bool,
    #[arg(long)]
    pub(crate) client_id: Option<String>,
    #[arg(long)]
    pub(crate) default_client_id: bool,
    #[arg(long)]
    pub(crate) ip: Option<String>,
    #[arg(long)]
    pub(crate) default_ip: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum QuotaAction {
    /// Every entity's quotas (DescribeClientQuotas).
    List,
    /// Set quotas: producer_byte_rate, consumer_byte_rate, request_percentage,
    /// controller_mutation_rate (users, client ids), connection_creation_rate (ips).
    Set {
        #[command(flatten)]
        entity: QuotaEntityArgs,
        /// KEY=VALUE pairs.
        #[arg(required = true)]
        values: Vec<String>,
    },
    /// Remove quotas by key.
    Delete {
        #[command(flatten)]
        entity: QuotaEntityArgs,
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub(crate) struct GroupCmd {
    #[command(flatten)]
    pub(crate) conn: Conn,
    #[command(subcommand)]
    pub(crate) action: GroupAction,
}

#[derive(Subcommand, Debug)]
pub(crate) enum GroupAction {
    /// List consumer groups.
    List,
    /// State, members, assignments, committed offsets and lag of a group.
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no members).
    ResetOffsets(ResetOffsetsArgs),
    /// Delete a group (it must have no members).
    Delete { group: String },
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime"]))]
pub(crate) struct ResetOffsetsArgs {
    pub(crate) group: String,
    /// The topic whose offsets to move.
    #[arg(long)]
    pub(crate) topic: String,
    /// Only this partition (default: all).
    #[arg(long)]
    pub(crate) partition: Option<i32>,
    /// To the first offset of each partition.
    #[arg(long)]
    pub(crate) to_earliest: bool,
    /// To the end of each partition.
    #[arg(long)]
    pub(crate) to_latest: bool,
    /// To this offset (clamped to each partition's range).
    #[arg(long, value_name = "N")]
    pub(crate) to_offset: Option<i64>,
    /// To the first offset with a timestamp at or after MS (milliseconds since the epoch).
    #[arg(long, value_name = "MS")]
    pub(crate) to_datetime: Option<i64>,
    /// Commit the new offsets (without it, only print the plan).
    #[arg(long)]
    pub(crate) execute: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ClusterCmd {
    #[command(flatten)]
    pub(crate) conn: Conn,
    #[command(subcommand)]
    pub(crate) action: ClusterAction,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterAction {
    /// Cluster id, controller and brokers.
    Info,
    /// Requests in pre-0.11 protocol versions and records converted between message
    /// formats, from a broker's admin listener: which old clients still need them.
    LegacyClients {
        /// The broker's admin listener (`admin.listener`), HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        admin: String,
    },
    /// Show or change dynamic broker configs (kept in the controller quorum, applied
    /// without a restart): the cluster-wide default, or one broker's with --broker.
    Config {
        /// The broker (node.id) whose own configs to show or change.
        #[arg(long, value_name = "ID")]
        broker: Option<i32>,
        /// Set a config, repeatable: --set log.retention.ms=3600000
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Remove a dynamic config (back to the static or built-in value), repeatable.
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

/// An admin command, ready to run.
#[derive(Debug)]
pub(crate) enum AdminCommand {
    Topic(TopicCmd),
    Produce(ProduceCmd),
    Consume(ConsumeCmd),
    Group(GroupCmd),
    Cluster(ClusterCmd),
    User(UserCmd),
    Quota(QuotaCmd),
    Acl(AclCmd),
}

async fn run(cmd: AdminCommand) -> Result<()> {
    let conn = match &cmd {
        AdminCommand::Topic(c) => &c.conn,
        AdminCommand::Produce(c) => &c.conn,
        AdminCommand::Consume(c) => &c.conn,
        AdminCommand::Group(c) => &c.conn,
        AdminCommand::Cluster(c) => &c.conn,
        AdminCommand::User(c) => &c.conn,
        AdminCommand::Quota(c) => &c.conn,
        AdminCommand::Acl(c) => &c.conn,
    };
    if let Some(path) = &conn.command_config {
        anyhow::Context::with_context(security::configure(path), || format!("--command-config {}", path.display()))?;
    }
    match cmd {
        AdminCommand::Topic(c) => {
            let mut client = Client::connect(&c.conn.bootstrap_server).await?;
            topic::run(&mut client, c.conn.output, c.action).await
        }
        AdminCommand::Produce(c) => {
            let mut client = Client::connect(&c.conn.bootstrap_server).await?;
            produce::run(&mut client, &c).await
        }
        AdminCommand::Consume(c) => {
            let mut client = Client::connect(&c.conn.bootstrap_server).await?;
            consume::run(&mut client, &c).await
        }
        AdminCommand::User(c) => {
            let mut client = Client::connect(&c.conn.bootstrap_server).await?;
            user::run(&mut client, c.conn.output, c.action).await
        }
        AdminCommand::Quota(c) => {
            let mut client = Client::connect(&c.conn.bootstrap_server).await?;
            quota::run(&mut client, c.conn.output, c.action).await
        }
        AdminCommand::Acl(c) => {
            let mut client = Client::connect(&c.conn.bootstrap_server).await?;
            acl::run(&mut client, c.conn.output, c.action).await
        }
        AdminCommand::Group(c) => {
            let mut client = Client::connect(&c.conn.bootstrap_server).await?;
            group::run(&mut client, c.conn.output, c.action).await
        }
        AdminCommand::Cluster(c) => match c.action {
            ClusterAction::Info => {
                let mut client = Client::connect(&c.conn.bootstrap_server).await?;
                cluster::info(&mut client, c.conn.output).await
            }
            ClusterAction::LegacyClients { admin } => legacy::run(&admin, c.conn.output).await,
            ClusterAction::Config { broker, set, delete } => {
                let mut client = Client::connect(&c.conn.bootstrap_server).await?;
                cluster::config(&mut client, c.conn.output, broker, &set, &delete).await
            }
        },
    }
}

/// Runs an admin command on its own runtime and turns any failure into a short
/// message on stderr and exit status 1 (no backtrace).
pub(crate) fn main(cmd: AdminCommand) -> ! {
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(run(cmd));
    // Background stdin readers must not keep the process alive.
    rt.shutdown_background();
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            if output::is_broken_pipe(&e) {
                std::process::exit(0);
            }
            eprintln!("error: {e:#}");
            if let Some(hint) = e.chain().find_map(|c| c.downcast_ref::<KafkaError>()).and_then(KafkaError::hint) {
                eprintln!("hint: {hint}");
            }
            std::process::exit(1);
        }
    }
}
