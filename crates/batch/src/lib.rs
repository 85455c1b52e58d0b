//! The Kafka record batch (magic 2) as it travels on the wire and lies on disk.
//!
//! Karst does not decode records on the produce or fetch path: it checks the batch
//! header and CRC, then rewrites the two fields the CRC does not cover (base offset
//! and partition leader epoch) in place. The one exception is a batch whose max
//! timestamp cannot be right (below its base timestamp, as sarama's -1): its
//! records' timestamps are read ([`record_timestamps`]) and the max timestamp and
//! CRC rewritten ([`set_max_timestamp`]), as Kafka's log validator does. Both the protocol crate (validating what a
//! producer sent) and the storage crate (re-validating a segment tail at recovery)
//! read batches through this one module.
//!
//! The records themselves ([`records`]) and their compression codecs
//! ([`compression`]) live here too, so that both crates can read them without
//! depending on each other: the protocol crate for timestamps and legacy message
//! sets, the storage crate's log cleaner to keep the latest record of each key.

use thiserror::Error;

pub mod compression;
pub mod recompress;
pub mod records;

/// Bytes before the `batch_length` field's coverage starts: base offset + length.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed v2 batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// The only message format Karst stores.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

/// Attribute bits.
pub const COMPRESSION_MASK: i16 = 0x07;
pub const TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub const TRANSACTIONAL_BIT: i16 = 0x10;
pub const CONTROL_BIT: i16 = 0x20;
/// Set by the log cleaner (KIP-534): the base timestamp holds the time after which
/// the batch's tombstones and an empty transaction's marker may be removed.
pub const DELETE_HORIZON_BIT: i16 = 0x40;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    /// A magic 0 or 1 message set (pre-0.11 clients).
    #[error("legacy message format (magic {0}) is not supported; use message format v2 (Kafka 0.11+ clients)")]
    LegacyMagic(i8),
    /// Any other magic byte.
    #[error("unknown record batch magic {0}")]
    UnknownMagic(i8),
    /// A batch length that cannot hold a v2 header.
    #[error("invalid record batch length {0}")]
    InvalidLength(i32),
    /// The CRC-32C over attributes..end does not match.
    #[error("record batch CRC mismatch: header says {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    /// Header fields that contradict each other.
    #[error("invalid record batch: {0}")]
    Invalid(&'static str),
}

impl BatchError {
    /// Truncation means "more bytes may follow" at a log tail; everything else is corruption.
    pub fn is_truncation(&self) -> bool {
        matches!(self, BatchError::Truncated { .. })
    }
}

/// The fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without checking the CRC.
    ///
    /// Checks that `buf` holds the whole batch the header declares.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < LOG_OVERHEAD + 5 {
            return Err(BatchError::Truncated { needed: LOG_OVERHEAD + 5, available: buf.len() });
        }
        let batch_length = i32_at(buf, BATCH_LENGTH);
        let magic = buf[MAGIC] as i8;
        match magic {
            MAGIC_V2 => {}
            0 | 1 => return Err(BatchError::LegacyMagic(magic)),
            m => return Err(BatchError::UnknownMagic(m)),
        }
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(batch_length));
        }
        let total = LOG_OVERHEAD + batch_length as usize;
        if buf.len() < total {
            return Err(BatchError::Truncated { needed: total, available: buf.len() });
        }
        let h = BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET),
            batch_length,
            partition_leader_epoch: i32_at(buf, PARTITION_LEADER_EPOCH),
            magic,
            crc: i32_at(buf, CRC) as u32,
            attributes: i16_at(buf, ATTRIBUTES),
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA),
            base_timestamp: i64_at(buf, BASE_TIMESTAMP),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP),
            producer_id: i64_at(buf, PRODUCER_ID),
            producer_epoch: i16_at(buf, PRODUCER_EPOCH),
            base_sequence: i32_at(buf, BASE_SEQUENCE),
            record_count: i32_at(buf, RECORD_COUNT),
        };
        if h.last_offset_delta < 0 {
            return Err(BatchError::Invalid("negative last offset delta"));
        }
        if h.record_count < 0 {
            return Err(BatchError::Invalid("negative record count"));
        }
        Ok(h)
    }

    /// Parses the header and verifies the CRC-32C over attributes..end.
    pub fn parse_checked(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let h = BatchHeader::parse(buf)?;
        let actual = crc32c::crc32c(&buf[ATTRIBUTES..h.total_len()]);
        if actual != h.crc {
            return Err(BatchError::CrcMismatch { expected: h.crc, actual });
        }
        Ok(h)
    }

    /// Whole size of the batch including base offset and length fields.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }
    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(self.last_offset_delta as i64)
    }
    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }
    /// True when the timestamps are LogAppendTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
    /// The delete horizon a log cleaner stored in the base timestamp, if any.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_BIT != 0).then_some(self.base_timestamp)
    }
    /// True for a batch written by an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// Sequence number of the last record, wrapping as Kafka does at i32::MAX.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

/// Rewrites the base offset of the batch at the start of `batch` (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch of the batch (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// A record or batch timestamp that was never set.
pub const NO_TIMESTAMP: i64 = -1;

/// Rewrites the max timestamp of the batch at the start of `batch`, marks its
/// timestamps as CreateTime (as Kafka's `setMaxTimestamp(CREATE_TIME, ..)`) and
/// recomputes the CRC, which covers both fields.
pub fn set_max_timestamp(batch: &mut [u8], max_timestamp: i64) -> Result<(), BatchError> {
    let h = BatchHeader::parse(batch)?;
    let attributes = h.attributes & !TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..h.total_len()]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Bytes from the start of a batch through its max timestamp: every header field
/// a leader's append may rewrite (base offset, epoch, CRC, attributes, max timestamp).
pub const STAMPED_HEAD_LEN: usize = MAX_TIMESTAMP + 8;

/// The header a LogAppendTime topic's leader stores for the whole batch `batch`
/// (Kafka's `setMaxTimestamp(LOG_APPEND_TIME, now)`): the timestamp-type bit set,
/// max timestamp `now`, base timestamp and records as they are, and the CRC
/// recomputed. Nothing is copied: the CRC of the bytes after the max timestamp is
/// computed once and combined with the old and the new first bytes, so the old CRC
/// is verified in the same pass (a corrupt batch is never given a valid CRC).
/// Write it with [`stamp_head`].
pub fn log_append_time_header(batch: &[u8], now: i64) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(batch)?;
    let tail = &batch[STAMPED_HEAD_LEN..h.total_len()];
    let tail_crc = crc32c::crc32c(tail);
    let crc_with = |covered: &[u8]| crc32c::crc32c_combine(crc32c::crc32c(covered), tail_crc, tail.len());
    let actual = crc_with(&batch[ATTRIBUTES..STAMPED_HEAD_LEN]);
    if actual != h.crc {
        return Err(BatchError::CrcMismatch { expected: h.crc, actual });
    }
    let stamped = BatchHeader { attributes: h.attributes | TIMESTAMP_TYPE_BIT, max_timestamp: now, ..h };
    let mut head = [0u8; STAMPED_HEAD_LEN];
    head.copy_from_slice(&batch[..STAMPED_HEAD_LEN]);
    stamp_head(&mut head, &stamped);
    Ok(BatchHeader { crc: crc_with(&head[ATTRIBUTES..]), ..stamped })
}

/// Writes `h`'s base offset, partition leader epoch, CRC, attributes and max
/// timestamp into the first [`STAMPED_HEAD_LEN`] bytes of a batch (`head` may be
/// just those bytes); the fields between them are left as they are.
pub fn stamp_head(head: &mut [u8], h: &BatchHeader) {
    if head.len() < STAMPED_HEAD_LEN {
        return;
    }
    set_base_offset(head, h.base_offset);
    set_partition_leader_epoch(head, h.partition_leader_epoch);
    head[CRC..CRC + 4].copy_from_slice(&h.crc.to_be_bytes());
    head[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&h.attributes.to_be_bytes());
    head[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&h.max_timestamp.to_be_bytes());
}

/// The timestamps of a batch's records, as Kafka's log validator sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordTimestamps {
    /// Largest record timestamp, [`NO_TIMESTAMP`] when no record has a larger one:
    /// what Kafka writes into the batch's max timestamp.
    pub max: i64,
    /// Smallest record timestamp other than [`NO_TIMESTAMP`], if any.
    pub min: Option<i64>,
}

/// Reads a zigzag varint of at most `max_bytes` bytes at `*at`.
pub(crate) fn varlong(b: &[u8], at: &mut usize, max_bytes: usize) -> Option<i64> {
    let mut raw = 0u64;
    for i in 0..max_bytes {
        let byte = *b.get(*at)?;
        *at += 1;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Walks the uncompressed records of a v2 batch (the bytes after the header, or
/// the decompressed payload) and collects their timestamps, reading only each
/// record's length, attributes and timestamp delta.
///
/// `count` is the batch's record count; the records must fill `records` exactly,
/// as Kafka requires.
pub fn record_timestamps(records: &[u8], base_timestamp: i64, count: i32) -> Result<RecordTimestamps, BatchError> {
    let mut out = RecordTimestamps { max: NO_TIMESTAMP, min: None };
    let mut at = 0usize;
    for _ in 0..count.max(0) {
        let len = varlong(records, &mut at, 5).ok_or(BatchError::Invalid("record length is not a varint"))?;
        let len = usize::try_from(len).map_err(|_| BatchError::Invalid("negative record length"))?;
        let end = at.checked_add(len).filter(|e| *e <= records.len()).ok_or(BatchError::Invalid("record runs past the batch"))?;
        let body = &records[at..end];
        let mut p = 1; // attributes, unused since magic 2
        let delta = varlong(body, &mut p, 10).ok_or(BatchError::Invalid("record timestamp delta is not a varlong"))?;
        let ts = base_timestamp.saturating_add(delta);
        out.max = out.max.max(ts);
        if ts != NO_TIMESTAMP {
            out.min = Some(out.min.map_or(ts, |m| m.min(ts)));
        }
        at = end;
    }
    if at != records.len() {
        return Err(BatchError::Invalid("bytes left after the batch's declared record count"));
    }
    Ok(out)
}

/// Records in the whole batches laid end to end in `buf`, read from their
/// `records_count` fields without checking magic or CRC: for counting what
/// passes by (metrics), not for deciding what to store. A batch with a negative
/// count counts nothing; the walk ends at a partial batch or a length that
/// cannot hold a header.
pub fn count_records(mut buf: &[u8]) -> u64 {
    let mut total = 0u64;
    while buf.len() >= HEADER_LEN {
        let Some(size) = usize::try_from(i32_at(buf, BATCH_LENGTH)).ok().and_then(|l| l.checked_add(LOG_OVERHEAD)) else { break };
        if size > buf.len() || size < HEADER_LEN {
            break;
        }
        total += u64::try_from(i32_at(buf, RECORD_COUNT)).unwrap_or(0);
        buf = &buf[size..];
    }
    total
}

/// Iterates over the batches laid end to end in `buf`, verifying each CRC.
///
/// Yields `(position, header)`; stops at the first error, which it yields once.
pub fn batches(buf: &[u8]) -> Batches<'_> {
    Batches { buf, pos: 0, failed: false }
}

/// Iterator returned by [`batches`].
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl Iterator for Batches<'_> {
    type Item = Result<(usize, BatchHeader), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        match BatchHeader::parse_checked(&self.buf[self.pos..]) {
            Ok(h) => {
                let at = self.pos;
                self.pos += h.total_len();
                Some(Ok((at, h)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Builds a valid batch around already-encoded record bytes: test and bench support.
///
/// `records` is the concatenation of encoded records; the caller says how many.
pub fn build_batch(base_offset: i64, record_count: i32, timestamp: i64, records: &[u8]) -> Vec<u8> {
    build_batch_with_producer(base_offset, record_count, timestamp, -1, -1, -1, records)
}

/// Like [`build_batch`], with idempotent-producer fields.
pub fn build_batch_with_producer(
    base_offset: i64,
    record_count: i32,
    timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + records.len());
    b.extend_from_slice(&base_offset.to_be_bytes());
    let batch_length = (HEADER_LEN - LOG_OVERHEAD + records.len()) as i32;
    b.extend_from_slice(&batch_length.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&(record_count.max(1) - 1).to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&base_sequence.to_be_bytes());
    b.extend_from_slice(&record_count.to_be_bytes());
    b.extend_from_slice(records);
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Encodes one v2 record (no key, no headers): test and bench support.
pub fn encode_record(timestamp_delta: i64, offset_delta: i32, value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8]; // attributes
    put_varlong(&mut body, timestamp_delta);
    put_varlong(&mut body, i64::from(offset_delta));
    put_varlong(&mut body, -1); // null key
    put_varlong(&mut body, value.len() as i64);
    body.extend_from_slice(value);
    put_varlong(&mut body, 0); // no headers
    let mut out = Vec::with_capacity(body.len() + 5);
    put_varlong(&mut out, body.len() as i64);
    out.extend(body);
    out
}

/// A valid batch whose records carry `timestamps` (relative to the first) and
/// whose header says `max_timestamp`, right or wrong: test support, e.g. for
/// sarama's batches with a max timestamp of -1.
pub fn build_batch_with_timestamps(base_offset: i64, timestamps: &[i64], max_timestamp: i64) -> Vec<u8> {
    let base = timestamps.first().copied().unwrap_or(NO_TIMESTAMP);
    let mut records = Vec::new();
    for (i, ts) in timestamps.iter().enumerate() {
        records.extend(encode_record(ts - base, i as i32, format!("v{i}").as_bytes()));
    }
    let mut b = build_batch(base_offset, timestamps.len() as i32, base, &records);
    b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_only(records: i32, body: usize) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN + body];
        let len = i32::try_from(b.len() - LOG_OVERHEAD).expect("small");
        b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        b[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&records.to_be_bytes());
        b
    }

    #[test]
    fn counts_records_of_whole_batches_only() {
        let mut run = header_only(3, 20);
        run.extend(header_only(5, 0));
        assert_eq!(count_records(&run), 8);
        let partial = header_only(7, 30);
        run.extend(&partial[..40]);
        assert_eq!(count_records(&run), 8, "a cut batch is not counted");
        assert_eq!(count_records(&[]), 0);
        let mut hostile = header_only(-4, 0);
        hostile.extend(header_only(2, 1));
        assert_eq!(count_records(&hostile), 2, "a negative count counts nothing and the walk goes on");
        let mut bad_len = header_only(9, 0);
        bad_len[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(count_records(&bad_len), 0);
        let mut short_len = header_only(9, 0);
        short_len[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(count_records(&short_len), 0, "a length shorter than a header ends the walk");
        let real = build_batch(0, 4, 0, b"abcd");
        assert_eq!(count_records(&[real.clone(), real].concat()), 8);
    }
    use proptest::prelude::*;

    #[test]
    fn round_trip_header() {
        let b = build_batch_with_producer(7, 3, 1000, 42, 1, 10, b"abcdef");
        let h = BatchHeader::parse_checked(&b).expect("valid");
        assert_eq!(h.base_offset, 7);
        assert_eq!(h.last_offset(), 9);
        assert_eq!(h.record_count, 3);
        assert_eq!(h.producer_id, 42);
        assert_eq!(h.base_sequence, 10);
        assert_eq!(h.last_sequence(), 12);
        assert_eq!(h.total_len(), b.len());
    }

    #[test]
    fn offset_and_epoch_rewrite_keep_crc_valid() {
        let mut b = build_batch(0, 1, 5, b"x");
        set_base_offset(&mut b, 1234);
        set_partition_leader_epoch(&mut b, 9);
        let h = BatchHeader::parse_checked(&b).expect("crc still valid");
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.partition_leader_epoch, 9);
    }

    #[test]
    fn legacy_magic_is_named() {
        let mut b = build_batch(0, 1, 5, b"x");
        b[MAGIC] = 1;
        assert_eq!(BatchHeader::parse(&b), Err(BatchError::LegacyMagic(1)));
    }

    #[test]
    fn sequence_wraps() {
        let b = build_batch_with_producer(0, 3, 0, 1, 0, i32::MAX - 1, b"");
        let h = BatchHeader::parse(&b).expect("valid");
        assert_eq!(h.last_sequence(), 0);
    }

    #[test]
    fn iterates_concatenated_batches_and_stops_at_torn_tail() {
        let mut buf = build_batch(0, 1, 1, b"a");
        buf.extend(build_batch(1, 2, 1, b"bb"));
        let full = buf.len();
        buf.extend(&build_batch(3, 1, 1, b"ccc")[..20]);
        let got: Vec<_> = batches(&buf).collect();
        assert_eq!(got.len(), 3);
        assert!(got[0].is_ok() && got[1].is_ok());
        assert!(got[2].as_ref().err().is_some_and(BatchError::is_truncation));
        let (pos, h) = *got[1].as_ref().expect("ok");
        assert_eq!(pos + h.total_len(), full);
    }

    #[test]
    fn record_timestamps_come_from_the_records() {
        let b = build_batch_with_timestamps(0, &[1000, 1500, 900], NO_TIMESTAMP);
        let h = BatchHeader::parse_checked(&b).expect("valid");
        assert_eq!((h.base_timestamp, h.max_timestamp), (1000, NO_TIMESTAMP));
        let ts = record_timestamps(&b[HEADER_LEN..], h.base_timestamp, h.record_count).expect("records");
        assert_eq!(ts, RecordTimestamps { max: 1500, min: Some(900) });
        assert!(record_timestamps(&b[HEADER_LEN..], 1000, 2).is_err(), "bytes left over");
        assert!(record_timestamps(&b[HEADER_LEN..], 1000, 4).is_err(), "a record missing");
        assert!(record_timestamps(&b[HEADER_LEN..b.len() - 1], 1000, 3).is_err(), "a cut record");
        assert_eq!(record_timestamps(&[], 5, 0).expect("empty"), RecordTimestamps { max: NO_TIMESTAMP, min: None });
        assert!(record_timestamps(&[0x80; 20], 0, 1).is_err(), "an endless varint");
        assert!(record_timestamps(&[0], 0, 1).is_err(), "a record without attributes");
    }

    #[test]
    fn max_timestamp_rewrite_recomputes_the_crc_and_keeps_the_records() {
        let mut b = build_batch_with_timestamps(0, &[1000, 1500], NO_TIMESTAMP);
        b[ATTRIBUTES + 1] |= TIMESTAMP_TYPE_BIT as u8;
        let records = b[HEADER_LEN..].to_vec();
        set_max_timestamp(&mut b, 1500).expect("whole batch");
        let h = BatchHeader::parse_checked(&b).expect("crc valid after the rewrite");
        assert_eq!(h.max_timestamp, 1500);
        assert!(!h.is_log_append_time(), "CreateTime, as Kafka writes it");
        assert_eq!(&b[HEADER_LEN..], &records[..]);
        assert!(set_max_timestamp(&mut b[..30], 1).is_err());
    }

    #[test]
    fn log_append_time_stamp_sets_the_bit_and_time_and_keeps_the_records() {
        let mut b = build_batch_with_producer(0, 2, 1000, 42, 3, 7, &[encode_record(0, 0, b"a"), encode_record(5, 1, b"b")].concat());
        b[ATTRIBUTES + 1] |= 0x10 | 0x03; // transactional, lz4 bits: kept as they are
        let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        let before = BatchHeader::parse_checked(&b).expect("valid");
        let h = log_append_time_header(&b, 77_000).expect("stamped");
        assert!(h.is_log_append_time() && h.is_transactional());
        assert_eq!((h.max_timestamp, h.base_timestamp, h.compression()), (77_000, 1000, 3));
        assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.record_count), (42, 3, 7, 2));
        let mut stored = b.clone();
        stamp_head(&mut stored[..STAMPED_HEAD_LEN], &h);
        let read = BatchHeader::parse_checked(&stored).expect("CRC valid after the stamp");
        assert_eq!(read, h);
        assert_eq!(&stored[STAMPED_HEAD_LEN..], &b[STAMPED_HEAD_LEN..], "records untouched");
        assert_eq!(before.attributes | TIMESTAMP_TYPE_BIT, read.attributes);
        // Stamping again (a batch already LogAppendTime) only moves the time.
        let again = log_append_time_header(&stored, 78_000).expect("stamped twice");
        assert_eq!((again.attributes, again.max_timestamp), (read.attributes, 78_000));
    }

    #[test]
    fn log_append_time_stamp_refuses_corrupt_and_short_batches() {
        let b = build_batch(0, 1, 5, &encode_record(0, 0, b"x"));
        for cut in [0, 10, 30, HEADER_LEN, b.len() - 1] {
            assert!(log_append_time_header(&b[..cut], 1).is_err(), "cut at {cut}");
        }
        for at in [ATTRIBUTES, MAX_TIMESTAMP, PRODUCER_ID, b.len() - 1] {
            let mut bad = b.clone();
            bad[at] ^= 0x40;
            assert!(matches!(log_append_time_header(&bad, 1), Err(BatchError::CrcMismatch { .. })), "flip at {at}");
        }
        let mut short = [0u8; 10];
        stamp_head(&mut short, &BatchHeader::parse(&b).expect("valid"));
        assert_eq!(short, [0u8; 10], "too short a head is left alone");
    }

    proptest! {
        #[test]
        fn record_walk_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), count in -2i32..50, base in any::<i64>()) {
            let _ = record_timestamps(&bytes, base, count);
        }
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_in_crc_range_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            bit in 0usize..8,
            pos_seed in any::<usize>(),
        ) {
            let mut b = build_batch(0, 1, 0, &payload);
            let pos = ATTRIBUTES + pos_seed % (b.len() - ATTRIBUTES);
            b[pos] ^= 1 << bit;
            prop_assert!(BatchHeader::parse_checked(&b).is_err(), "flip at {} went unnoticed", pos);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = BatchHeader::parse_checked(&bytes);
            let _ = log_append_time_header(&bytes, 1);
            for r in batches(&bytes) { let _ = r; }
        }
    }
}
