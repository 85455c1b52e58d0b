//! Karst's controller quorum: the cluster metadata as an openraft state machine.
//!
//! - [`metadata`] / [`commands`] / [`placement`]: the replicated image, the commands
//!   that change it, and deterministic partition placement — plain serde types,
//!   usable without Raft.
//! - `log_store` / `state_machine`: openraft storage on disk (length+CRC framed log
//!   segments, fsynced vote, snapshots with log purge).
//! - `network` / `server`: Raft RPCs over TCP between controllers.
//! - [`Controller`]: start a node, propose commands, watch the applied image.
//!
//! A controller data dir holds `meta.json` (cluster id and node id; a dir of
//! another cluster or node is refused), `vote.json`, `committed.json`,
//! `purged.json`, `snapshot.bin` and `log/<first index>.log` segments.

pub mod commands;
mod controller;
pub mod errors;
mod fsutil;
mod log_store;
mod membership;
pub mod metadata;
mod network;
pub mod placement;
pub mod quotas;
mod server;
mod state_machine;
pub mod transport;
mod voters;

use std::io::Cursor;

pub use commands::{CommandOutcome, CommandResult, MetadataCommand};
pub use controller::{Controller, ControllerConfig};
pub use errors::{CommandError, ControllerError, ProposeError, VotersError};
pub use membership::{ask_quorum, MembershipChange, Quorum};
pub use metadata::{
    AclBinding, BrokerId, BrokerRegistration, ClusterMetadata, Listener, PartitionState, ScramCredential, TopicMetadata, NO_LEADER,
};
#[doc(hidden)]
pub use network::read_frames_for_fuzzing;
pub use placement::{place_partitions, place_partitions_from, PlacementBroker};
pub use transport::{Transport, TransportTls};
pub use voters::{parse_voters, Voter};

/// Raft node id of a controller.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft type configuration of the controller quorum.
    pub TypeConfig:
        D = MetadataCommand,
        R = CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);
