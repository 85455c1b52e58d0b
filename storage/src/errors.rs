use thiserror::Error;

/// Everything the log can refuse or fail at.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A batch handed to `append` is malformed (maps to CORRUPT_MESSAGE).
    #[error("corrupt record batch: {0}")]
    Batch(#[from] karst_batch::BatchError),
    /// Requested offset is below the log start or above the log end.
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: i64, log_start: i64, log_end: i64 },
    /// Idempotent producer sent a gap or a reordering (OUT_OF_ORDER_SEQUENCE_NUMBER).
    /// `last_offset` is where the producer's last batch in this log ends (-1: none).
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32, last_offset: i64 },
    /// Producer epoch older than the one the log has seen (INVALID_PRODUCER_EPOCH).
    #[error("producer {producer_id} epoch {got} is older than {current}")]
    InvalidProducerEpoch { producer_id: i64, current: i16, got: i16 },
    /// A transaction marker from a coordinator older than the last one that wrote a
    /// marker for this producer (TRANSACTION_COORDINATOR_FENCED).
    #[error("transaction coordinator epoch {got} for producer {producer_id} is older than {current}")]
    TransactionCoordinatorFenced { producer_id: i64, current: i32, got: i32 },
    /// A non-transactional batch from a producer inside a transaction (INVALID_TXN_STATE).
    #[error("producer {producer_id} wrote a non-transactional batch inside its transaction begun at offset {txn_first_offset}")]
    InvalidTxnState { producer_id: i64, txn_first_offset: i64 },
    /// A file on disk is not what the log expects and cannot be repaired.
    #[error("corrupt log file {path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// An earlier write or fsync failed: the log takes no more writes and reports
    /// nothing more durable until it is reopened (KAFKA_STORAGE_ERROR).
    #[error("log failed earlier: {0}")]
    Failed(String),
    /// The log cleaner's I/O callback asked it to stop; the log is unchanged.
    #[error("log cleaning aborted")]
    CleaningAborted,
}

pub type StorageResult<T> = Result<T, StorageError>;
