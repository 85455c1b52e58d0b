use thiserror::Error;

/// Broker-level failures outside a single request's error codes.
#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage error: {0}")]
    Storage(#[from] karst_storage::StorageError),
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    #[error("{0} exhausted")]
    Exhausted(&'static str),
    /// A committed topic's partitions could not be opened here; they stay offline.
    #[error("{0}")]
    Offline(String),
    #[error("{0}")]
    Startup(String),
    /// The controller refused or could not commit a metadata change; `code` is
    /// the Kafka error code to answer with.
    #[error("{message}")]
    Metadata { code: i16, message: String },
}
