//! Karst's commit log: one [`Log`] per partition directory.
//!
//! Synchronous and deterministic: no networking, no tokio. The broker owns the
//! threads and locking; this crate owns the files.

mod checkpoint;
mod cleaner;
mod config;
mod errors;
pub mod faults;
mod files;
mod health;
mod index;
mod index_file;
mod leader_epochs;
mod log;
mod mmap;
mod offset_map;
mod producer_state;
mod recovery;
mod segment;
mod snapshot;
mod swap;
mod time_index;
mod txn_index;

pub use cleaner::{CleanStats, CleanTask, Cleanable, Cleaned, CleanerConfig, CleanerIo, Throttler};
pub use config::{CleanupPolicy, DirtyRatio, LogConfig, TimestampType};
pub use errors::{StorageError, StorageResult};
pub use health::{sync_together, FlushTarget};
pub use leader_epochs::{LeaderEpochs, UNDEFINED_EPOCH_END};
pub use log::{AppendInfo, IsolatedRead, Isolation, Log, ReadSlice};
pub use producer_state::ActiveProducer;
pub use txn_index::AbortedTxn;

#[cfg(test)]
mod cleaner_crash_tests;
#[cfg(test)]
mod cleaner_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod replication_tests;
#[cfg(test)]
mod truncation_tests;
#[cfg(test)]
mod txn_tests;
