//! Validation of the record batches inside a Produce request, header-only.

use karst_batch::records::parse_records;
use karst_batch::{batches, BatchError, BatchHeader, HEADER_LEN};

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

/// For a compacted topic (Kafka's `LogValidator.validateKey`): the first batch
/// holding records without a key, as its index among the batches and the indexes
/// of those records within it; `None` when every record has a key. Reads the
/// records of batches [`validate_produce`] accepted, decompressing each into at
/// most `max_decompressed` bytes.
pub fn keyless_records(records: &[u8], max_decompressed: usize) -> Result<Option<(usize, Vec<i32>)>, RecordsError> {
    for (batch_index, item) in batches(records).enumerate() {
        let (pos, h) = item.map_err(RecordsError::Corrupt)?;
        // `batches` checked that the batch fits.
        let truncated = || RecordsError::Corrupt(BatchError::Truncated { needed: pos + h.total_len(), available: records.len() });
        let end = pos.checked_add(h.total_len()).ok_or_else(truncated)?;
        let payload = records.get(pos + HEADER_LEN..end).ok_or_else(truncated)?;
        let plain = match h.compression() {
            0 => std::borrow::Cow::Borrowed(payload),
            codec => std::borrow::Cow::Owned(
                karst_batch::compression::decompress(codec, payload, max_decompressed)
                    .map_err(|e| RecordsError::Decompress(format!("cannot read the records of a compressed batch: {e}")))?,
            ),
        };
        let parsed = parse_records(&plain, h.record_count).map_err(RecordsError::Corrupt)?;
        let keyless: Vec<i32> = (0i32..).zip(&parsed).filter(|(_, r)| r.key.is_none()).map(|(i, _)| i).collect();
        if !keyless.is_empty() {
            return Ok(Some((batch_index, keyless)));
        }
    }
    Ok(None)
}

/// Kafka's message for a keyless record on a compacted topic (`RecordError`'s text).
pub fn keyless_record_message(topic: &str, partition: i32) -> String {
    format!("Compacted topic cannot accept message without key in topic partition {topic}-{partition}")
}

/// Kafka's partition-level message when records are refused one by one
/// (`LogValidator.processRecordErrors` with `RecordError`'s `toString`).
pub fn record_errors_message(errors: &[(i32, String)]) -> String {
    let shown: Vec<String> = errors.iter().take(3).map(|(i, m)| format!("RecordError(batchIndex={i}, message='{m}')")).collect();
    format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        errors.len(),
        shown.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use karst_batch::build_batch;

    #[test]
    fn keyless_records_are_found_by_their_index_in_the_first_batch_with_any() {
        use karst_batch::records::Record;
        let batch = |keys: &[Option<&[u8]>]| {
            let mut payload = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                let r = Record { attributes: 0, timestamp_delta: 0, offset_delta: i as i32, key: *k, value: Some(b"v"), headers: &[0] };
                r.encode(&mut payload);
            }
            build_batch(0, keys.len() as i32, 1, &payload)
        };
        let keyed = batch(&[Some(b"a"), Some(b"b")]);
        assert_eq!(keyless_records(&keyed, 1 << 20), Ok(None));
        let mut two = keyed.clone();
        two.extend(batch(&[Some(b"a"), None, Some(b"c"), None]));
        assert_eq!(keyless_records(&two, 1 << 20), Ok(Some((1, vec![1, 3]))));
        let mut bad = batch(&[None]);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(keyless_records(&bad, 1 << 20).is_err(), "CRC checked");
        let m = record_errors_message(&[(0, keyless_record_message("t", 3))]);
        assert_eq!(
            m,
            "One or more records have been rejected due to 1 record errors in total, and only showing the first three errors at most: \
             [RecordError(batchIndex=0, message='Compacted topic cannot accept message without key in topic partition t-3')]"
        );
    }

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
