//! A leader's rebuild of a producer's batch in its topic's codec (`compression.type`
//! other than `producer`), as Kafka's `LogValidator.buildRecordsAndAssignOffsets`
//! writes it through a `MemoryRecordsBuilder`:
//!
//! - the producer id, epoch, base sequence and transactional bit are kept, so
//!   idempotence and transactions see the same batch;
//! - every record keeps its timestamp, key, value and headers; its attributes are
//!   written 0 and its offset delta is its position (Kafka assigns offsets anew);
//! - the base timestamp is the first record's, the max timestamp the largest
//!   record's (a LogAppendTime topic's leader stamps its own time afterwards);
//! - the CRC is computed over the new bytes.

use std::borrow::Cow;

use thiserror::Error;

use crate::compression::{compress_at, decompress, CodecError, NONE};
use crate::records::{encode_batch, parse_records, Record};
use crate::{BatchError, BatchHeader, COMPRESSION_MASK, HEADER_LEN, NO_TIMESTAMP, TIMESTAMP_TYPE_BIT, TRANSACTIONAL_BIT};

/// Why a batch could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecompressError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// The whole batch at the start of `batch`, its records rewritten in `codec` at
/// Kafka's `level` for it; the records are decompressed into at most
/// `max_decompressed` bytes. The CRC is checked first.
pub fn recompress(batch: &[u8], codec: i16, level: i32, max_decompressed: usize) -> Result<Vec<u8>, RecompressError> {
    let h = BatchHeader::parse_checked(batch)?;
    let body = &batch[HEADER_LEN..h.total_len()];
    let plain = match h.compression() {
        NONE => Cow::Borrowed(body),
        source => Cow::Owned(decompress(source, body, max_decompressed)?),
    };
    let records = parse_records(&plain, h.record_count)?;
    // A LogAppendTime batch's records read as its max timestamp (Kafka's
    // `DefaultRecord.readFrom` with a log append time).
    let timestamp = |r: &Record<'_>| if h.is_log_append_time() { h.max_timestamp } else { r.timestamp(h.base_timestamp) };
    let base_timestamp = records.first().map_or(NO_TIMESTAMP, timestamp);
    let mut max_timestamp = NO_TIMESTAMP;
    let mut raw = Vec::with_capacity(plain.len());
    for (delta, r) in (0i32..).zip(&records) {
        let ts = timestamp(r);
        max_timestamp = max_timestamp.max(ts);
        Record { attributes: 0, timestamp_delta: ts.saturating_sub(base_timestamp), offset_delta: delta, ..*r }.encode(&mut raw);
    }
    if h.is_log_append_time() {
        max_timestamp = h.max_timestamp;
    }
    let payload = compress_at(codec, &raw, level)?;
    let attributes = (h.attributes & (TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT)) | (codec & COMPRESSION_MASK);
    let last_offset_delta = h.record_count.saturating_sub(1).max(0);
    let header = BatchHeader { attributes, last_offset_delta, base_timestamp, max_timestamp, ..h };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_batch(&header, &payload, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::{default_level, GZIP, LZ4, SNAPPY, ZSTD};
    use crate::{build_batch_with_producer, encode_record};

    const T: i64 = 1_700_000_000_000;

    /// A record as a reader sees it: timestamp, key, value, headers.
    type Seen = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<u8>);

    fn records_of(batch: &[u8]) -> Vec<Seen> {
        let h = BatchHeader::parse_checked(batch).expect("valid batch");
        let plain = decompress(h.compression(), &batch[HEADER_LEN..], 1 << 24).expect("readable");
        parse_records(&plain, h.record_count)
            .expect("records")
            .iter()
            .map(|r| (r.timestamp(h.base_timestamp), r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec), r.headers.to_vec()))
            .collect()
    }

    /// A transactional batch of an idempotent producer, three records with keys,
    /// a tombstone and a header.
    fn producer_batch() -> Vec<u8> {
        let header = [2u8, 4, b'h', b'k', 2, b'v']; // zigzag varints: one header, "hk" = "v"
        let records = [
            Record { attributes: 0, timestamp_delta: 0, offset_delta: 0, key: Some(b"k1"), value: Some(b"one"), headers: &header },
            Record { attributes: 0, timestamp_delta: 40, offset_delta: 1, key: Some(b"k2"), value: None, headers: &[0] },
            Record { attributes: 0, timestamp_delta: -3, offset_delta: 2, key: None, value: Some(&[7; 3000]), headers: &[0] },
        ];
        let mut payload = Vec::new();
        for r in &records {
            r.encode(&mut payload);
        }
        let mut b = build_batch_with_producer(0, 3, T, 99, 4, 17, &payload);
        b[22] |= TRANSACTIONAL_BIT as u8;
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn every_codec_round_trips_records_and_producer_fields() {
        let sent = producer_batch();
        let expected = records_of(&sent);
        assert_eq!(expected[1].0, T + 40);
        let mut previous = sent.clone();
        for codec in [GZIP, SNAPPY, LZ4, ZSTD, NONE] {
            // From the previous codec into this one: every pair of codecs is crossed once.
            let out = recompress(&previous, codec, default_level(codec), 1 << 20).expect("rebuilt");
            let h = BatchHeader::parse_checked(&out).expect("CRC valid");
            assert_eq!(h.compression(), codec);
            assert!(h.is_transactional() && !h.is_control() && !h.is_log_append_time());
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.record_count, h.last_offset_delta), (99, 4, 17, 3, 2));
            assert_eq!((h.base_timestamp, h.max_timestamp), (T, T + 40));
            assert_eq!(records_of(&out), expected, "codec {codec}");
            if codec != NONE {
                assert!(out.len() < sent.len(), "codec {codec} compresses the 3000 sevens");
            }
            previous = out;
        }
    }

    #[test]
    fn offsets_are_renumbered_and_a_log_append_time_batch_reads_at_its_time() {
        let mut b = crate::build_batch(0, 2, T, &[encode_record(0, 5, b"a"), encode_record(9, 9, b"b")].concat());
        b[22] |= TIMESTAMP_TYPE_BIT as u8;
        b[35..43].copy_from_slice(&(T + 500).to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let out = recompress(&b, GZIP, 9, 1 << 20).expect("rebuilt");
        let h = BatchHeader::parse_checked(&out).expect("valid");
        assert!(h.is_log_append_time());
        assert_eq!((h.base_timestamp, h.max_timestamp, h.last_offset_delta), (T + 500, T + 500, 1));
        let plain = decompress(GZIP, &out[HEADER_LEN..], 1 << 20).expect("gzip");
        let deltas: Vec<i32> = parse_records(&plain, 2).expect("records").iter().map(|r| r.offset_delta).collect();
        assert_eq!(deltas, [0, 1]);
    }

    #[test]
    fn corrupt_short_and_oversized_batches_are_refused() {
        let sent = producer_batch();
        for cut in [0, 20, HEADER_LEN, sent.len() - 1] {
            assert!(recompress(&sent[..cut], ZSTD, 3, 1 << 20).is_err(), "cut at {cut}");
        }
        let mut flipped = sent.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(recompress(&flipped, ZSTD, 3, 1 << 20), Err(RecompressError::Batch(BatchError::CrcMismatch { .. }))));
        let gz = recompress(&sent, GZIP, -1, 1 << 20).expect("gzip");
        assert!(matches!(recompress(&gz, ZSTD, 3, 100), Err(RecompressError::Codec(CodecError::TooLarge(100)))), "bounded");
        // A record count the payload does not hold.
        let lying = crate::build_batch(0, 2, T, &encode_record(0, 0, b"a"));
        assert!(recompress(&lying, GZIP, -1, 1 << 20).is_err());
    }
}
