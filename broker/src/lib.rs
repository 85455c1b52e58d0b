//! The Karst broker: listener, connection loop, request handlers and the
//! partitions it hosts. Storage and protocol are synchronous crates below it;
//! this crate owns the tokio tasks.

pub mod broker;
mod cleaner;
pub mod config;
mod connections;
pub mod dynamic_config;
pub mod errors;
mod fetch_sessions;
mod flusher;
pub mod group;
mod handlers;
mod internal_topic;
mod kafka_broker_configs;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod partitions;
mod peer;
pub mod quotas;
mod refused_batches;
mod replica;
mod replication;
pub mod security;
mod server;
pub mod share;
pub mod topic_config;
mod topic_name;
pub mod txn;

pub use broker::Broker;
pub use config::{BrokerConfig, ConfigError};
pub use errors::BrokerError;
pub use server::{serve, serve_listeners};
