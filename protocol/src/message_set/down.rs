//! Down-conversion: stored v2 batches into a message set for Fetch v0–v3, and
//! reading a message set as a consumer does.

use super::*;

// ---------------------------------------------------------------------------
// Down-conversion (Fetch v0–v3)
// ---------------------------------------------------------------------------

/// What [`down_convert`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownConvertOptions {
    /// Target format: [`fetch_magic`] of the Fetch version (0 or 1).
    pub magic: i8,
    /// The partition's fetch offset. Records below it are left out of
    /// uncompressed batches (each becomes its own message; some librdkafka
    /// versions rely on this); a compressed batch is written whole, as in Kafka.
    pub fetch_offset: i64,
    /// Byte budget of the converted records. The messages converted from the
    /// first stored batch that yields any are always written whole, however
    /// large, so that a consumer can make progress (Kafka sizes its response
    /// to at least that first converted batch); after it, a message or wrapper
    /// that would take the output past `max_bytes` ends the conversion.
    pub max_bytes: usize,
    /// How many bytes one stored batch's records may decompress to.
    pub max_decompressed: usize,
}

/// Stored v2 batches converted to a message set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DownConverted {
    /// The message set: whole messages only.
    pub records: Vec<u8>,
    /// Top-level messages written (a wrapper counts once).
    pub messages: usize,
    /// Records written (each inner message of a wrapper counts).
    pub record_count: usize,
    /// Offset of the last record written.
    pub last_offset: Option<i64>,
    /// True when stored batches were left out: by `max_bytes`, or because the
    /// next one is zstd-compressed. The consumer fetches again from after
    /// `last_offset` (and then gets UNSUPPORTED_COMPRESSION_TYPE for zstd).
    pub stopped_early: bool,
}

/// Converts stored v2 batches (as read from the log from the batch holding
/// `fetch_offset`, possibly ending in a partial batch) into a message set of
/// magic 0 (Fetch v0–v1) or 1 (Fetch v2–v3), as Kafka's down-conversion does:
///
/// - every stored batch becomes one wrapper in the same codec (gzip, snappy in
///   xerial framing, lz4 with the broken descriptor checksum for magic 0), or,
///   uncompressed, one message per record; offsets are the absolute offsets,
///   inner offsets absolute (magic 0) or relative to the batch's first record
///   (magic 1) with the wrapper at the last record's offset;
/// - control batches (transaction markers) are skipped; records of
///   transactional batches, aborted or not, are written (Fetch v0–v3 is
///   read_uncommitted and carries no aborted-transaction list);
/// - headers are dropped; magic 1 keeps each record's timestamp and the
///   batch's timestamp type (LogAppendTime: the batch's max timestamp, flagged
///   in the attributes), a negative timestamp becomes -1; magic 0 has none;
/// - a partial batch at the end is dropped;
/// - a zstd batch: UNSUPPORTED_COMPRESSION_TYPE when it is the first to
///   convert, else the conversion stops before it ([`DownConverted::stopped_early`]).
///
/// Other errors: a stored batch or record that cannot be read (CORRUPT_MESSAGE;
/// the stored CRC is not checked, as Kafka does not check it here), a
/// payload larger than `max_decompressed`, `magic` not 0 or 1 (INVALID_RECORD).
///
/// The caller reads stored batches up to the partition's `max_bytes` and
/// passes the same `max_bytes` here; conversion can grow the data (a v0
/// message costs 26 bytes of overhead, a v2 record about 8), in which case
/// the output stops at whole messages within `max_bytes` and the consumer
/// fetches the rest next time.
pub fn down_convert(log: &[u8], opts: &DownConvertOptions) -> Result<DownConverted, RecordsError> {
    if opts.magic != MAGIC_V0 && opts.magic != MAGIC_V1 {
        return Err(invalid(format!("cannot down-convert to magic {}", opts.magic)));
    }
    let mut out = DownConverted::default();
    let mut pos = 0;
    while pos < log.len() {
        let h = match BatchHeader::parse(&log[pos..]) {
            Ok(h) => h,
            Err(e) if e.is_truncation() => break,
            Err(e) => return Err(RecordsError::Corrupt(e)),
        };
        let batch = &log[pos..pos + h.total_len()];
        pos += h.total_len();
        if h.is_control() {
            continue;
        }
        if out.messages > 0 && out.records.len() >= opts.max_bytes {
            out.stopped_early = true;
            break;
        }
        let codec = h.compression();
        match codec {
            NONE | GZIP | SNAPPY | LZ4 => {}
            ZSTD if out.messages == 0 => {
                return Err(RecordsError::UnsupportedCompression("Down-conversion of zstandard-compressed batches is not supported".into()))
            }
            ZSTD => {
                out.stopped_early = true;
                break;
            }
            other => return Err(corrupt(format!("stored record batch at offset {}: unknown compression codec {other}", h.base_offset))),
        }
        let payload = &batch[HEADER_LEN..];
        let data = if codec == NONE { Cow::Borrowed(payload) } else { Cow::Owned(decompress(codec, payload, opts.max_decompressed)?) };
        let records = v2_records(&h, &data)?;
        let first_output = out.messages == 0;
        let lat = h.is_log_append_time().then_some(h.max_timestamp);
        if codec == NONE {
            let overhead = if opts.magic == MAGIC_V0 { RECORD_OVERHEAD_V0 } else { RECORD_OVERHEAD_V1 };
            let lat_bit = if opts.magic == MAGIC_V1 && lat.is_some() { LOG_APPEND_TIME_BIT } else { 0 };
            for r in records.iter().filter(|r| r.offset >= opts.fetch_offset) {
                let size = LOG_OVERHEAD + overhead + r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len);
                if !first_output && out.records.len() + size > opts.max_bytes {
                    out.stopped_early = true;
                    return Ok(out);
                }
                write_entry(&mut out.records, r.offset, opts.magic, lat_bit, lat.unwrap_or(r.timestamp), r.key, r.value)?;
                out.messages += 1;
                out.record_count += 1;
                out.last_offset = Some(r.offset);
            }
        } else {
            let Some(last) = records.last() else { continue };
            let refs: Vec<MessageRef<'_>> =
                records.iter().map(|r| MessageRef { offset: r.offset, timestamp: r.timestamp, key: r.key, value: r.value }).collect();
            let wrapper = build_message_set(opts.magic, codec, lat, &refs)?;
            if !first_output && out.records.len() + wrapper.len() > opts.max_bytes {
                out.stopped_early = true;
                return Ok(out);
            }
            out.records.extend_from_slice(&wrapper);
            out.messages += 1;
            out.record_count += records.len();
            out.last_offset = Some(last.offset);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Reading a message set as a consumer
// ---------------------------------------------------------------------------

/// One record of a v0/v1 message set as an old consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyRecord {
    /// Absolute offset.
    pub offset: i64,
    pub magic: i8,
    /// Codec of the wrapper it came in (0: uncompressed).
    pub compression: i16,
    /// [`NO_TIMESTAMP`] for magic 0.
    pub timestamp: i64,
    pub log_append_time: bool,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Reads a message set as Kafka's consumer reads a fetched one: a partial
/// message at the end is ignored, wrappers are opened (bounded by
/// `max_decompressed` each) and their inner offsets made absolute, a magic 1
/// LogAppendTime wrapper's timestamp applies to its inner messages. CRCs are
/// checked; a malformed message is an error.
pub fn read_message_set(set: &[u8], max_decompressed: usize) -> Result<Vec<LegacyRecord>, RecordsError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < set.len() {
        let Entry::Whole { offset, message, .. } = entry(&set[pos..])? else { break };
        pos += LOG_OVERHEAD + message.len();
        let m = parse_message(offset, message)?;
        let record = |r: &Message<'_>, offset: i64, compression: i16, timestamp: i64, log_append_time: bool| LegacyRecord {
            offset,
            magic: r.magic,
            compression,
            timestamp,
            log_append_time,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
        };
        let codec = m.codec();
        if codec == NONE {
            out.push(record(&m, m.offset, NONE, m.timestamp, m.log_append_time()));
            continue;
        }
        if !matches!(codec, GZIP | SNAPPY | LZ4) {
            return Err(invalid(format!("unsupported wrapper compression codec {codec}")));
        }
        let value = m.value.ok_or_else(|| invalid("compressed message with a null value"))?;
        let data = decompress_wrapper(codec, m.magic, value, max_decompressed)?;
        let frames = inner_frames(&data)?;
        let Some(&(last_inner, _)) = frames.last() else {
            return Err(invalid("compressed message with no inner messages"));
        };
        let base = match (m.magic, m.offset) {
            (MAGIC_V0, _) | (_, 0) => 0,
            (_, wrapper) if wrapper < last_inner => return Err(invalid("wrapper offset below its last inner offset")),
            (_, wrapper) => wrapper - last_inner,
        };
        for (inner_offset, body) in frames {
            let r = parse_message(inner_offset, body)?;
            if r.magic != m.magic || r.codec() != NONE {
                return Err(invalid("inner message of another magic, or compressed"));
            }
            let (timestamp, lat) = if m.log_append_time() { (m.timestamp, true) } else { (r.timestamp, r.log_append_time()) };
            out.push(record(&r, base.wrapping_add(inner_offset), codec, timestamp, lat));
        }
    }
    Ok(out)
}
