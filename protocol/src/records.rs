//! Validation of the record batches inside a Produce request, header-only.

use karst_batch::{batches, BatchError, BatchHeader};

use crate::error_codes;

/// What a producer's records may be refused for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsError {
    Corrupt(BatchError),
    Legacy(i8),
    TooLarge {
        size: usize,
        max: usize,
    },
    Control,
    Empty,
    /// A record timestamp outside the topic's window (KIP-937), or a
    /// LogAppendTime batch from a producer.
    InvalidTimestamp(String),
    /// A compressed payload that cannot be read back (when its records must be).
    Decompress(String),
    /// A v0/v1 message (or set) that is malformed: bad CRC, bad length, truncated
    /// inside a compressed wrapper (see [`crate::message_set`]).
    CorruptMessage(String),
    /// A v0/v1 message set that is well formed but refused as Kafka refuses it
    /// (nested compression, mixed magic, several compressed wrappers, ...).
    InvalidRecord(String),
    /// Stored records in a codec the requested format cannot carry (zstd for a
    /// pre-0.11 consumer).
    UnsupportedCompression(String),
}

impl RecordsError {
    /// The Kafka error code for the partition response.
    pub fn error_code(&self) -> i16 {
        match self {
            RecordsError::Corrupt(_) | RecordsError::Empty | RecordsError::Decompress(_) | RecordsError::CorruptMessage(_) => {
                error_codes::CORRUPT_MESSAGE
            }
            RecordsError::InvalidTimestamp(_) => error_codes::INVALID_TIMESTAMP,
            RecordsError::Legacy(_) | RecordsError::Control | RecordsError::InvalidRecord(_) => error_codes::INVALID_RECORD,
            RecordsError::UnsupportedCompression(_) => error_codes::UNSUPPORTED_COMPRESSION_TYPE,
            RecordsError::TooLarge { .. } => error_codes::MESSAGE_TOO_LARGE,
        }
    }

    /// A human-readable reason for the partition response's error message.
    pub fn message(&self) -> String {
        match self {
            RecordsError::Corrupt(e) => e.to_string(),
            RecordsError::Legacy(m) => format!(
                "a magic {m} message set in Produce v3 or later, which carry message format v2 only: old clients send message formats v0/v1 with Produce v0-v2"
            ),
            RecordsError::TooLarge { size, max } => format!("record batch of {size} bytes exceeds max.message.bytes {max}"),
            RecordsError::Control => "producers may not write control batches".to_string(),
            RecordsError::Empty => "produce request carries no record batch".to_string(),
            RecordsError::InvalidTimestamp(m)
            | RecordsError::Decompress(m)
            | RecordsError::CorruptMessage(m)
            | RecordsError::InvalidRecord(m)
            | RecordsError::UnsupportedCompression(m) => m.clone(),
        }
    }
}

/// Summary of validated batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordsSummary {
    pub batch_count: usize,
    pub record_count: i64,
    pub producer_id: i64,
    pub transactional: bool,
}

/// Checks every batch: magic 2, length, CRC-32C, size against `max_message_bytes`,
/// no control batches. Records themselves are not decoded.
pub fn validate_produce(records: &[u8], max_message_bytes: usize) -> Result<RecordsSummary, RecordsError> {
    if records.is_empty() {
        return Err(RecordsError::Empty);
    }
    let mut s = RecordsSummary { producer_id: -1, ..Default::default() };
    for item in batches(records) {
        let (_, h): (usize, BatchHeader) = item.map_err(|e| match e {
            BatchError::LegacyMagic(m) => RecordsError::Legacy(m),
            other => RecordsError::Corrupt(other),
        })?;
        if h.total_len() > max_message_bytes {
            return Err(RecordsError::TooLarge { size: h.total_len(), max: max_message_bytes });
        }
        if h.is_control() {
            return Err(RecordsError::Control);
        }
        s.batch_count += 1;
        s.record_count += h.record_count as i64;
        s.transactional |= h.is_transactional();
        if h.has_producer_id() {
            s.producer_id = h.producer_id;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use karst_batch::build_batch;

    #[test]
    fn good_batches_pass() {
        let mut b = build_batch(0, 2, 1, b"ab");
        b.extend(build_batch(0, 1, 1, b"c"));
        let s = validate_produce(&b, 1 << 20).expect("valid");
        assert_eq!(s.batch_count, 2);
        assert_eq!(s.record_count, 3);
    }

    #[test]
    fn each_refusal_has_its_code() {
        let mut b = build_batch(0, 1, 1, b"abc");
        let n = b.len();
        assert_eq!(validate_produce(&b, n - 1).map_err(|e| e.error_code()), Err(error_codes::MESSAGE_TOO_LARGE));
        b[n - 1] ^= 1;
        assert_eq!(validate_produce(&b, 1 << 20).map_err(|e| e.error_code()), Err(error_codes::CORRUPT_MESSAGE));
        b[16] = 1;
        assert_eq!(validate_produce(&b, 1 << 20).map_err(|e| e.error_code()), Err(error_codes::INVALID_RECORD));
        assert_eq!(validate_produce(&[], 1 << 20).map_err(|e| e.error_code()), Err(error_codes::CORRUPT_MESSAGE));
        assert_eq!(validate_produce(&b[..10], 1 << 20).map_err(|e| e.error_code()), Err(error_codes::CORRUPT_MESSAGE));
    }
}
