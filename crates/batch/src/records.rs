//! The records inside a v2 batch (Kafka's `DefaultRecord`), for the few places
//! that must read them (the log cleaner reads keys and values, then writes the
//! records it keeps into a new batch with the same header fields).
//!
//! ```text
//! length: varint            bytes after this field
//! attributes: int8          unused since magic 2
//! timestampDelta: varlong   from the batch's base timestamp
//! offsetDelta: varint       from the batch's base offset
//! keyLength: varint, key    -1: null key
//! valueLength: varint, value  -1: null value (a tombstone)
//! headerCount: varint, then per header: keyLength varint, key, valueLength varint, value
//! ```

use crate::{put_varlong, varlong, BatchError, BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};

/// One record, borrowing its key, value and headers from the batch payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The header count and the headers, as encoded (copied as they are).
    pub headers: &'a [u8],
}

impl Record<'_> {
    /// The record's offset in a batch based at `base_offset`.
    pub fn offset(&self, base_offset: i64) -> i64 {
        base_offset.saturating_add(i64::from(self.offset_delta))
    }

    /// The record's timestamp in a batch whose base timestamp is `base_timestamp`.
    pub fn timestamp(&self, base_timestamp: i64) -> i64 {
        base_timestamp.saturating_add(self.timestamp_delta)
    }

    /// Appends the record, length first, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(16 + self.key.map_or(0, <[u8]>::len) + self.value.map_or(0, <[u8]>::len) + self.headers.len());
        body.push(self.attributes as u8);
        put_varlong(&mut body, self.timestamp_delta);
        put_varlong(&mut body, i64::from(self.offset_delta));
        for field in [self.key, self.value] {
            match field {
                Some(bytes) => {
                    put_varlong(&mut body, bytes.len() as i64);
                    body.extend_from_slice(bytes);
                }
                None => put_varlong(&mut body, -1),
            }
        }
        body.extend_from_slice(self.headers);
        put_varlong(out, body.len() as i64);
        out.extend_from_slice(&body);
    }
}

fn invalid(why: &'static str) -> BatchError {
    BatchError::Invalid(why)
}

/// A zigzag varint that must fit an i32 (Kafka's `readVarint`).
fn varint(b: &[u8], at: &mut usize, what: &'static str) -> Result<i32, BatchError> {
    let v = varlong(b, at, 5).ok_or(invalid(what))?;
    i32::try_from(v).map_err(|_| invalid(what))
}

/// A length-prefixed byte string; `None` for length -1.
fn bytes_field<'a>(b: &'a [u8], at: &mut usize, what: &'static str) -> Result<Option<&'a [u8]>, BatchError> {
    let len = varint(b, at, what)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| invalid(what))?;
    let end = at.checked_add(len).filter(|e| *e <= b.len()).ok_or(invalid(what))?;
    let field = &b[*at..end];
    *at = end;
    Ok(Some(field))
}

/// Checks the headers at the end of a record body (`headers` must be exactly them).
fn check_headers(headers: &[u8]) -> Result<(), BatchError> {
    let mut at = 0;
    let count = varint(headers, &mut at, "record header count is not a varint")?;
    if count < 0 {
        return Err(invalid("negative record header count"));
    }
    for _ in 0..count {
        match bytes_field(headers, &mut at, "record header key runs past the record")? {
            Some(_) => {}
            None => return Err(invalid("record header with a null key")),
        }
        bytes_field(headers, &mut at, "record header value runs past the record")?;
    }
    if at != headers.len() {
        return Err(invalid("bytes left after the record's headers"));
    }
    Ok(())
}

/// Parses the uncompressed records of a v2 batch (the bytes after the header, or
/// the decompressed payload). `count` is the batch's record count; the records
/// must fill `payload` exactly, as Kafka requires.
pub fn parse_records(payload: &[u8], count: i32) -> Result<Vec<Record<'_>>, BatchError> {
    let count = usize::try_from(count).map_err(|_| invalid("negative record count"))?;
    // Every record takes at least 7 bytes: a hostile count allocates nothing.
    let mut out = Vec::with_capacity(count.min(payload.len() / 7));
    let mut at = 0usize;
    for _ in 0..count {
        let len = varint(payload, &mut at, "record length is not a varint")?;
        let len = usize::try_from(len).map_err(|_| invalid("negative record length"))?;
        let end = at.checked_add(len).filter(|e| *e <= payload.len()).ok_or(invalid("record runs past the batch"))?;
        let body = &payload[at..end];
        let mut p = 0usize;
        let attributes = *body.first().ok_or(invalid("record without attributes"))? as i8;
        p += 1;
        let timestamp_delta = varlong(body, &mut p, 10).ok_or(invalid("record timestamp delta is not a varlong"))?;
        let offset_delta = varint(body, &mut p, "record offset delta is not a varint")?;
        let key = bytes_field(body, &mut p, "record key runs past the record")?;
        let value = bytes_field(body, &mut p, "record value runs past the record")?;
        let headers = &body[p..];
        check_headers(headers)?;
        out.push(Record { attributes, timestamp_delta, offset_delta, key, value, headers });
        at = end;
    }
    if at != payload.len() {
        return Err(invalid("bytes left after the batch's declared record count"));
    }
    Ok(out)
}

/// Transaction marker types (the second field of a control record's key).
pub const CONTROL_ABORT: i16 = 0;
pub const CONTROL_COMMIT: i16 = 1;

/// The type of a control record from its key (version int16, type int16), as
/// Kafka's `ControlRecordType.parse`; `None` when the key is not one.
pub fn control_record_type(key: Option<&[u8]>) -> Option<i16> {
    let key = key?;
    let version = i16::from_be_bytes([*key.first()?, *key.get(1)?]);
    if version < 0 {
        return None;
    }
    Some(i16::from_be_bytes([*key.get(2)?, *key.get(3)?]))
}

/// A transaction's end marker: the one record of a control batch that a
/// transaction coordinator writes to each partition of a transaction (Kafka's
/// `EndTransactionMarker`).
///
/// ```text
/// key:   version int16 (0) | type int16 (0 ABORT, 1 COMMIT)
/// value: version int16 (0) | coordinator epoch int32
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    /// True for COMMIT, false for ABORT.
    pub commit: bool,
    /// The epoch of the transaction coordinator that wrote the marker.
    pub coordinator_epoch: i32,
}

/// The version Karst writes in a marker's key and value (Kafka's current one).
pub const END_TXN_MARKER_VERSION: i16 = 0;

impl EndTxnMarker {
    /// The control record type of this marker.
    pub fn control_type(&self) -> i16 {
        if self.commit {
            CONTROL_COMMIT
        } else {
            CONTROL_ABORT
        }
    }

    /// The control record key: version, type.
    pub fn key(&self) -> [u8; 4] {
        let mut k = [0u8; 4];
        k[..2].copy_from_slice(&END_TXN_MARKER_VERSION.to_be_bytes());
        k[2..].copy_from_slice(&self.control_type().to_be_bytes());
        k
    }

    /// The control record value: version, coordinator epoch.
    pub fn value(&self) -> [u8; 6] {
        let mut v = [0u8; 6];
        v[..2].copy_from_slice(&END_TXN_MARKER_VERSION.to_be_bytes());
        v[2..].copy_from_slice(&self.coordinator_epoch.to_be_bytes());
        v
    }

    /// Reads a marker from a control record's key and value, as Kafka's
    /// `EndTransactionMarker.deserialize`: the key's type must be ABORT or COMMIT,
    /// the value's version non-negative; bytes after the coordinator epoch (later,
    /// flexible versions) are ignored.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<EndTxnMarker, BatchError> {
        let commit = match control_record_type(key) {
            Some(CONTROL_ABORT) => false,
            Some(CONTROL_COMMIT) => true,
            _ => return Err(invalid("control record is not a transaction marker")),
        };
        let value = value.ok_or(invalid("transaction marker without a value"))?;
        let field = |at: usize, n: usize| value.get(at..at + n).ok_or(invalid("transaction marker value too short"));
        let version = field(0, 2).map(|b| i16::from_be_bytes([b[0], b[1]]))?;
        if version < 0 {
            return Err(invalid("negative transaction marker version"));
        }
        let coordinator_epoch = field(2, 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))?;
        Ok(EndTxnMarker { commit, coordinator_epoch })
    }

    /// The marker of a whole control batch (`batch` starts with its header; its
    /// CRC is not checked here). Control batches are uncompressed, as Kafka writes
    /// them; a compressed one is read up to `limit` decompressed bytes.
    pub fn of_batch(batch: &[u8], limit: usize) -> Result<EndTxnMarker, BatchError> {
        let h = BatchHeader::parse(batch)?;
        if !h.is_control() {
            return Err(invalid("not a control batch"));
        }
        let body = batch.get(HEADER_LEN..h.total_len()).ok_or(invalid("batch shorter than its header"))?;
        let payload = match h.compression() {
            crate::compression::NONE => std::borrow::Cow::Borrowed(body),
            codec => std::borrow::Cow::Owned(
                crate::compression::decompress(codec, body, limit).map_err(|_| invalid("control batch does not decompress"))?,
            ),
        };
        if h.record_count != 1 {
            return Err(invalid("a transaction marker batch holds one record"));
        }
        let records = parse_records(&payload, 1)?;
        let r = records.first().ok_or(invalid("control batch without a record"))?;
        EndTxnMarker::decode(r.key, r.value)
    }
}

/// Transactional and control attribute bits of a marker batch.
const MARKER_ATTRIBUTES: i16 = crate::TRANSACTIONAL_BIT | crate::CONTROL_BIT;

/// A control batch holding one end-transaction marker, as Kafka's
/// `MemoryRecords.withEndTransactionMarker`: magic 2, uncompressed, create time,
/// transactional and control bits, the producer's id and epoch, base sequence -1,
/// one record at offset delta 0 with the marker's key and value.
pub fn end_txn_marker_batch(
    base_offset: i64,
    timestamp: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
) -> Vec<u8> {
    let (key, value) = (marker.key(), marker.value());
    let record = Record { attributes: 0, timestamp_delta: 0, offset_delta: 0, key: Some(&key), value: Some(&value), headers: &[0] };
    let mut payload = Vec::with_capacity(24);
    record.encode(&mut payload);
    let h = BatchHeader {
        base_offset,
        batch_length: 0,
        partition_leader_epoch,
        magic: MAGIC_V2,
        crc: 0,
        attributes: MARKER_ATTRIBUTES,
        last_offset_delta: 0,
        base_timestamp: timestamp,
        max_timestamp: timestamp,
        producer_id,
        producer_epoch,
        base_sequence: -1,
        record_count: 1,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    // A 61-byte header and a 20-byte record always fit an i32 length.
    if encode_batch(&h, &payload, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Writes a whole batch: the fields of `h` (magic 2; its batch length and CRC are
/// computed here) followed by `payload`, the records as stored (compressed when
/// `h`'s attributes say so).
pub fn encode_batch(h: &BatchHeader, payload: &[u8], out: &mut Vec<u8>) -> Result<(), BatchError> {
    let batch_length = i32::try_from(HEADER_LEN - LOG_OVERHEAD + payload.len()).map_err(|_| invalid("record batch too large"))?;
    let start = out.len();
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&h.attributes.to_be_bytes());
    out.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&h.base_timestamp.to_be_bytes());
    out.extend_from_slice(&h.max_timestamp.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    out.extend_from_slice(&h.record_count.to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[crc_at + 4..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(out.len() - start, HEADER_LEN + payload.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header_bytes(headers: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varlong(&mut out, headers.len() as i64);
        for (k, v) in headers {
            put_varlong(&mut out, k.len() as i64);
            out.extend_from_slice(k);
            match v {
                Some(v) => {
                    put_varlong(&mut out, v.len() as i64);
                    out.extend_from_slice(v);
                }
                None => put_varlong(&mut out, -1),
            }
        }
        out
    }

    #[test]
    fn records_round_trip_with_null_keys_values_and_headers() {
        let h1 = header_bytes(&[(b"trace", Some(b"abc")), (b"empty", None)]);
        let h0 = header_bytes(&[]);
        let records = [
            Record { attributes: 0, timestamp_delta: 0, offset_delta: 0, key: Some(b"k1"), value: Some(b"v1"), headers: &h0 },
            Record { attributes: 0, timestamp_delta: -5, offset_delta: 3, key: Some(b""), value: None, headers: &h1 },
            Record { attributes: 0, timestamp_delta: i64::MAX, offset_delta: i32::MAX, key: None, value: Some(b""), headers: &h0 },
        ];
        let mut payload = Vec::new();
        for r in &records {
            r.encode(&mut payload);
        }
        assert_eq!(parse_records(&payload, 3).expect("parses"), records);
        assert!(parse_records(&payload, 2).is_err(), "a record left over");
        assert!(parse_records(&payload, 4).is_err(), "a record missing");
        assert!(parse_records(&payload[..payload.len() - 1], 3).is_err(), "cut");
        assert!(parse_records(&payload, -1).is_err());
        assert_eq!(records[1].offset(100), 103);
        assert_eq!(records[1].timestamp(1_000), 995);
    }

    #[test]
    fn malformed_headers_are_refused() {
        let h0 = header_bytes(&[]);
        let mut bad_count = Vec::new();
        put_varlong(&mut bad_count, -2);
        let mut null_key = Vec::new();
        put_varlong(&mut null_key, 1);
        put_varlong(&mut null_key, -1);
        put_varlong(&mut null_key, -1);
        for headers in [&bad_count[..], &null_key[..], &[2u8][..], &[0u8, 0][..]] {
            let r = Record { attributes: 0, timestamp_delta: 0, offset_delta: 0, key: Some(b"k"), value: None, headers };
            let mut payload = Vec::new();
            r.encode(&mut payload);
            assert!(parse_records(&payload, 1).is_err(), "{headers:?}");
        }
        let ok = Record { attributes: 0, timestamp_delta: 0, offset_delta: 0, key: Some(b"k"), value: None, headers: &h0 };
        let mut payload = Vec::new();
        ok.encode(&mut payload);
        assert!(parse_records(&payload, 1).is_ok());
    }

    #[test]
    fn control_record_types() {
        assert_eq!(control_record_type(Some(&[0, 0, 0, 0])), Some(CONTROL_ABORT));
        assert_eq!(control_record_type(Some(&[0, 0, 0, 1, 9])), Some(CONTROL_COMMIT));
        assert_eq!(control_record_type(Some(&[0, 0, 0])), None);
        assert_eq!(control_record_type(Some(&[0x80, 0, 0, 1])), None, "negative version");
        assert_eq!(control_record_type(None), None);
    }

    #[test]
    fn encoded_batches_parse_and_pass_their_crc() {
        let r = Record { attributes: 0, timestamp_delta: 2, offset_delta: 4, key: Some(b"k"), value: Some(b"v"), headers: &[0] };
        let mut payload = Vec::new();
        r.encode(&mut payload);
        let template = BatchHeader::parse(&crate::build_batch_with_producer(0, 1, 0, 7, 1, 3, b"")).expect("header");
        let h = BatchHeader {
            base_offset: 40,
            partition_leader_epoch: 6,
            last_offset_delta: 9,
            base_timestamp: 1_000,
            max_timestamp: 1_002,
            ..template
        };
        let mut out = vec![0xee];
        encode_batch(&h, &payload, &mut out).expect("encodes");
        let got = BatchHeader::parse_checked(&out[1..]).expect("valid batch");
        assert_eq!((got.base_offset, got.partition_leader_epoch, got.last_offset_delta, got.producer_id), (40, 6, 9, 7));
        assert_eq!((got.base_timestamp, got.max_timestamp, got.base_sequence, got.record_count), (1_000, 1_002, 3, 1));
        assert_eq!(got.total_len(), out.len() - 1);
        assert_eq!(parse_records(&out[1 + HEADER_LEN..], 1).expect("records"), vec![r]);
    }

    #[test]
    fn end_txn_marker_batches_round_trip() {
        for (commit, epoch) in [(true, 0), (false, 7), (true, i32::MAX)] {
            let m = EndTxnMarker { commit, coordinator_epoch: epoch };
            let b = end_txn_marker_batch(42, 1_700, 3, 9_001, 5, m);
            let h = BatchHeader::parse_checked(&b).expect("valid batch");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.base_offset, h.partition_leader_epoch, h.producer_id, h.producer_epoch), (42, 3, 9_001, 5));
            assert_eq!((h.base_sequence, h.record_count, h.last_offset_delta, h.compression()), (-1, 1, 0, 0));
            assert_eq!((h.base_timestamp, h.max_timestamp), (1_700, 1_700));
            assert_eq!(EndTxnMarker::of_batch(&b, 1 << 20).expect("marker"), m);
            let records = parse_records(&b[HEADER_LEN..], 1).expect("records");
            assert_eq!(control_record_type(records[0].key), Some(m.control_type()));
        }
        // Golden bytes of Kafka's key and value for an ABORT at coordinator epoch 1.
        let abort = EndTxnMarker { commit: false, coordinator_epoch: 1 };
        assert_eq!(abort.key(), [0, 0, 0, 0]);
        assert_eq!(abort.value(), [0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn bad_markers_are_refused() {
        let ok_value = [0u8, 0, 0, 0, 0, 3];
        assert_eq!(EndTxnMarker::decode(Some(&[0, 0, 0, 1]), Some(&ok_value)), Ok(EndTxnMarker { commit: true, coordinator_epoch: 3 }));
        // A later value version with more bytes still reads.
        assert!(EndTxnMarker::decode(Some(&[0, 0, 0, 1]), Some(&[0, 1, 0, 0, 0, 3, 0])).is_ok());
        assert!(EndTxnMarker::decode(Some(&[0, 0, 0, 2]), Some(&ok_value)).is_err(), "another control type");
        assert!(EndTxnMarker::decode(None, Some(&ok_value)).is_err());
        assert!(EndTxnMarker::decode(Some(&[0, 0, 0, 0]), None).is_err());
        assert!(EndTxnMarker::decode(Some(&[0, 0, 0, 0]), Some(&[0, 0, 0])).is_err());
        assert!(EndTxnMarker::decode(Some(&[0, 0, 0, 0]), Some(&[0xff, 0, 0, 0, 0, 0])).is_err());
        let data = crate::build_batch(0, 1, 0, &crate::encode_record(0, 0, b"x"));
        assert!(EndTxnMarker::of_batch(&data, 1 << 20).is_err(), "not a control batch");
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), count in -2i32..40) {
            let _ = parse_records(&bytes, count);
            let _ = EndTxnMarker::decode(bytes.get(..4), bytes.get(4..));
            let mut batch = end_txn_marker_batch(0, 0, 0, 1, 0, EndTxnMarker { commit: true, coordinator_epoch: 0 });
            for (i, b) in bytes.iter().enumerate() {
                let at = i % batch.len();
                batch[at] ^= b;
            }
            let _ = EndTxnMarker::of_batch(&batch, 1 << 16);
        }

        #[test]
        fn encode_then_parse_is_identity(
            recs in proptest::collection::vec((any::<i64>(), any::<i32>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20))), 0..10)
        ) {
            let h0 = [0u8];
            let records: Vec<Record<'_>> = recs.iter().map(|(ts, off, k, v)| Record {
                attributes: 0, timestamp_delta: *ts, offset_delta: *off, key: k.as_deref(), value: v.as_deref(), headers: &h0,
            }).collect();
            let mut payload = Vec::new();
            for r in &records {
                r.encode(&mut payload);
            }
            prop_assert_eq!(parse_records(&payload, records.len() as i32).expect("parses"), records);
        }
    }
}
