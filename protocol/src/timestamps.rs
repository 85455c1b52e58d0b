//! Batch timestamps as Kafka's log validator leaves them: a max timestamp that
//! covers the batch's records, and (CreateTime topics) records no further from
//! the broker's clock than `message.timestamp.before.max.ms` /
//! `message.timestamp.after.max.ms` allow (KIP-937).
//!
//! Kafka decodes every record to recompute the max timestamp. Karst reads
//! records only where the header cannot be right: a max timestamp below the
//! base (first) timestamp, which covers sarama's -1, or a LogAppendTime batch
//! sent to a CreateTime topic. Every producer that fills the header (the Java
//! client, librdkafka, franz-go) writes the first record's timestamp as base and
//! the true maximum as max, so for them the header already says what Kafka
//! would compute, and the produce path stays header-only.

use bytes::{Bytes, BytesMut};
use karst_batch::{record_timestamps, set_max_timestamp, BatchHeader, RecordTimestamps, HEADER_LEN, NO_TIMESTAMP};

use crate::compression::decompress;
use crate::records::RecordsError;

/// The window record timestamps must fall in, around the broker's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampLimits {
    /// The broker's clock, in ms since the epoch.
    pub now: i64,
    /// `message.timestamp.before.max.ms`: how far in the past a record may be.
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a record may be.
    pub after_max_ms: i64,
    /// Largest payload a compressed batch may expand to when its records must be read.
    pub max_decompressed: usize,
}

impl TimestampLimits {
    fn check(&self, ts: RecordTimestamps) -> Result<(), RecordsError> {
        // i128: `now - ts` of a hostile i64 timestamp must not overflow.
        let (now, before, after) = (i128::from(self.now), i128::from(self.before_max_ms), i128::from(self.after_max_ms));
        let too_old = ts.min.filter(|m| now - i128::from(*m) > before);
        let too_new = Some(ts.max).filter(|m| *m != NO_TIMESTAMP && i128::from(*m) - now > after);
        match too_old.or(too_new) {
            None => Ok(()),
            Some(bad) => Err(RecordsError::InvalidTimestamp(format!(
                "Timestamp {bad} of a record is out of range. The timestamp should be within [{}, {}]",
                self.now.saturating_sub(self.before_max_ms),
                self.now.saturating_add(self.after_max_ms)
            ))),
        }
    }
}

/// What one batch's header needs.
enum Verdict {
    /// The header is right as it is.
    Keep,
    /// Write this max timestamp (and CreateTime) into the header.
    SetMax(i64),
}

fn judge(batch: &[u8], h: &BatchHeader, limits: &TimestampLimits) -> Result<Verdict, RecordsError> {
    if h.is_log_append_time() {
        // A CreateTime topic reads every record of such a batch at its max timestamp.
        if h.max_timestamp == NO_TIMESTAMP {
            return Err(RecordsError::InvalidTimestamp("producers must not set the timestamp type to LogAppendTime".into()));
        }
        let ts = RecordTimestamps { max: h.max_timestamp, min: Some(h.max_timestamp) };
        limits.check(ts)?;
        return Ok(Verdict::SetMax(h.max_timestamp));
    }
    if h.max_timestamp >= h.base_timestamp {
        let min = Some(h.base_timestamp).filter(|t| *t != NO_TIMESTAMP);
        limits.check(RecordTimestamps { max: h.max_timestamp, min })?;
        return Ok(Verdict::Keep);
    }
    let body = &batch[HEADER_LEN..h.total_len()];
    let ts = if h.compression() == 0 {
        record_timestamps(body, h.base_timestamp, h.record_count)
    } else {
        let payload = decompress(h.compression(), body, limits.max_decompressed)?;
        record_timestamps(&payload, h.base_timestamp, h.record_count)
    }
    .map_err(RecordsError::Corrupt)?;
    limits.check(ts)?;
    Ok(if ts.max == h.max_timestamp { Verdict::Keep } else { Verdict::SetMax(ts.max) })
}

/// Checks the timestamps of batches that [`crate::records::validate_produce`]
/// accepted and returns them with every header that needed it fixed: the same
/// bytes, uncopied, when none did; refuses them all with INVALID_TIMESTAMP
/// when one record is outside the window, as Kafka does.
pub fn settle_timestamps(records: Bytes, limits: &TimestampLimits) -> Result<Bytes, RecordsError> {
    let mut fixes = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let h = BatchHeader::parse(&records[pos..]).map_err(RecordsError::Corrupt)?;
        let end = pos + h.total_len();
        if let Verdict::SetMax(max) = judge(&records[pos..end], &h, limits)? {
            fixes.push((pos, max));
        }
        pos = end;
    }
    if fixes.is_empty() {
        return Ok(records);
    }
    let mut fixed = BytesMut::from(&records[..]);
    for (pos, max) in fixes {
        set_max_timestamp(&mut fixed[pos..], max).map_err(RecordsError::Corrupt)?;
    }
    Ok(fixed.freeze())
}

/// A LogAppendTime topic takes no timestamp from producers, so the KIP-937 window
/// does not apply and headers are not fixed (the leader stamps its own time). Only a
/// batch that already claims LogAppendTime is refused with INVALID_TIMESTAMP, as
/// Kafka's `LogValidator.validateTimestamp` refuses it on such a topic.
pub fn refuse_log_append_time_batches(records: &[u8]) -> Result<(), RecordsError> {
    let mut pos = 0;
    while pos < records.len() {
        let h = BatchHeader::parse(&records[pos..]).map_err(RecordsError::Corrupt)?;
        if h.is_log_append_time() {
            return Err(RecordsError::InvalidTimestamp("producers must not set the timestamp type to LogAppendTime".into()));
        }
        pos += h.total_len();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_codes;
    use karst_batch::{build_batch_with_timestamps, RecordTimestamps};
    use std::io::Write;

    const NOW: i64 = 1_700_000_000_000;

    fn open(after: i64) -> TimestampLimits {
        TimestampLimits { now: NOW, before_max_ms: i64::MAX, after_max_ms: after, max_decompressed: 1 << 20 }
    }

    #[test]
    fn a_max_timestamp_of_minus_one_is_fixed_from_the_records() {
        let sent = build_batch_with_timestamps(0, &[NOW - 3000, NOW - 1000, NOW - 2000], NO_TIMESTAMP);
        let out = settle_timestamps(Bytes::from(sent.clone()), &open(3_600_000)).expect("accepted");
        let h = BatchHeader::parse_checked(&out).expect("CRC valid after the fix");
        assert_eq!(h.max_timestamp, NOW - 1000);
        assert_eq!(h.base_timestamp, NOW - 3000);
        assert_eq!(&out[HEADER_LEN..], &sent[HEADER_LEN..], "records unchanged");
        assert_eq!(out.len(), sent.len());
    }

    #[test]
    fn a_consistent_header_passes_uncopied() {
        let sent = Bytes::from(build_batch_with_timestamps(0, &[NOW, NOW + 5], NOW + 5));
        let out = settle_timestamps(sent.clone(), &open(3_600_000)).expect("accepted");
        assert_eq!(out.as_ptr(), sent.as_ptr(), "no copy");
        // Records without timestamps (-1 throughout) are consistent too.
        let none = Bytes::from(build_batch_with_timestamps(0, &[NO_TIMESTAMP], NO_TIMESTAMP));
        assert_eq!(settle_timestamps(none.clone(), &open(0)).expect("no timestamp, nothing to check").as_ptr(), none.as_ptr());
    }

    #[test]
    fn only_the_inconsistent_batch_of_several_is_rewritten() {
        let good = build_batch_with_timestamps(0, &[NOW], NOW);
        let bad = build_batch_with_timestamps(0, &[NOW + 1, NOW + 7], NO_TIMESTAMP);
        let out = settle_timestamps(Bytes::from([good.clone(), bad].concat()), &open(3_600_000)).expect("accepted");
        assert_eq!(&out[..good.len()], &good[..]);
        let h = BatchHeader::parse_checked(&out[good.len()..]).expect("valid");
        assert_eq!(h.max_timestamp, NOW + 7);
    }

    #[test]
    fn records_outside_the_window_are_invalid_timestamps() {
        let limits = TimestampLimits { now: NOW, before_max_ms: 60_000, after_max_ms: 1000, max_decompressed: 1 << 20 };
        let code = |ts: &[i64], max: i64| {
            settle_timestamps(Bytes::from(build_batch_with_timestamps(0, ts, max)), &limits).map(drop).map_err(|e| e.error_code())
        };
        assert_eq!(code(&[NOW - 60_000, NOW + 1000], NOW + 1000), Ok(()), "the bounds are inclusive");
        assert_eq!(code(&[NOW + 1001], NOW + 1001), Err(error_codes::INVALID_TIMESTAMP), "future, header");
        assert_eq!(code(&[NOW - 60_001], NOW - 60_001), Err(error_codes::INVALID_TIMESTAMP), "past, header");
        assert_eq!(code(&[NOW, NOW + 5000], NO_TIMESTAMP), Err(error_codes::INVALID_TIMESTAMP), "future, from the records");
        assert_eq!(code(&[NOW, NOW - 70_000], NO_TIMESTAMP), Err(error_codes::INVALID_TIMESTAMP), "past, from the records");
        let hostile = TimestampLimits { now: i64::MIN, before_max_ms: 0, after_max_ms: 0, max_decompressed: 0 };
        assert!(settle_timestamps(Bytes::from(build_batch_with_timestamps(0, &[i64::MAX], i64::MAX)), &hostile).is_err());
        assert_eq!(limits.check(RecordTimestamps { max: NO_TIMESTAMP, min: None }), Ok(()));
    }

    #[test]
    fn a_log_append_time_batch_from_a_producer() {
        let mut b = build_batch_with_timestamps(0, &[NOW - 5], NOW);
        b[22] |= 0x08;
        set_crc(&mut b);
        let out = settle_timestamps(Bytes::from(b.clone()), &open(3_600_000)).expect("read at its max timestamp");
        let h = BatchHeader::parse_checked(&out).expect("valid");
        assert!(!h.is_log_append_time());
        assert_eq!(h.max_timestamp, NOW);
        b[35..43].copy_from_slice(&NO_TIMESTAMP.to_be_bytes());
        set_crc(&mut b);
        let e = settle_timestamps(Bytes::from(b), &open(3_600_000)).expect_err("no timestamp at all");
        assert_eq!(e.error_code(), error_codes::INVALID_TIMESTAMP);
    }

    #[test]
    fn a_log_append_time_topic_skips_the_window_and_refuses_producer_log_append_time() {
        let ancient = build_batch_with_timestamps(0, &[5, 6], NO_TIMESTAMP);
        let mut both = ancient.clone();
        both.extend(build_batch_with_timestamps(0, &[NOW + 10_000_000], NOW + 10_000_000));
        assert_eq!(refuse_log_append_time_batches(&both), Ok(()), "no window: the broker's clock is stored");
        let mut lat = build_batch_with_timestamps(0, &[NOW], NOW);
        lat[22] |= 0x08;
        set_crc(&mut lat);
        let mut mixed = ancient;
        mixed.extend(&lat);
        assert_eq!(refuse_log_append_time_batches(&mixed).map_err(|e| e.error_code()), Err(error_codes::INVALID_TIMESTAMP));
        assert!(refuse_log_append_time_batches(&mixed[..mixed.len() - 3]).is_err(), "a cut batch");
    }

    fn set_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn a_compressed_batch_with_a_bad_header_is_read_through_its_codec() {
        let plain = build_batch_with_timestamps(0, &[NOW - 9, NOW - 2, NOW - 4], NO_TIMESTAMP);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain[HEADER_LEN..]).expect("gzip");
        let mut b = plain[..HEADER_LEN].to_vec();
        b.extend(gz.finish().expect("gzip"));
        let len = i32::try_from(b.len() - 12).expect("small");
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[22] |= 1; // gzip
        set_crc(&mut b);
        BatchHeader::parse_checked(&b).expect("a valid compressed batch");
        let out = settle_timestamps(Bytes::from(b.clone()), &open(3_600_000)).expect("accepted");
        let h = BatchHeader::parse_checked(&out).expect("valid");
        assert_eq!((h.max_timestamp, h.compression()), (NOW - 2, 1));
        assert_eq!(&out[HEADER_LEN..], &b[HEADER_LEN..], "compressed records unchanged");
        let tight = TimestampLimits { max_decompressed: 10, ..open(3_600_000) };
        assert_eq!(settle_timestamps(Bytes::from(b), &tight).map_err(|e| e.error_code()), Err(error_codes::CORRUPT_MESSAGE));
    }
}
