//! Up-conversion: a Produce v0–v2 message set into one v2 batch.

use super::*;

// ---------------------------------------------------------------------------
// Up-conversion (Produce v0–v2)
// ---------------------------------------------------------------------------

/// Limits for [`up_convert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpConvertLimits {
    /// The topic's `max.message.bytes`: no entry of the set (offset and size
    /// fields included) and not the resulting v2 batch may be larger
    /// (MESSAGE_TOO_LARGE), as Kafka checks both.
    pub max_message_bytes: usize,
    /// How many bytes the one compressed wrapper's value may decompress to;
    /// more is refused (CORRUPT_MESSAGE) before it is allocated. A few times
    /// `max_message_bytes` is a fair choice.
    pub max_decompressed: usize,
}

/// A message set converted to message format v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpConverted {
    /// One v2 record batch holding every message of the set, in order: base
    /// offset 0 and offsets 0..n-1 (the log assigns the real ones), producer id
    /// -1, no sequence, partition leader epoch -1, CreateTime, the producer's
    /// codec, keys and values as sent, no headers, a valid CRC-32C. Empty when
    /// the set held no whole message: Kafka then appends nothing and answers
    /// NONE with base offset -1.
    pub batch: Vec<u8>,
    pub record_count: i32,
    /// Magic of the set's messages; `None` when it held no whole message.
    pub magic: Option<i8>,
    /// Codec of the batch, the producer's: 0 none, 1 gzip, 2 snappy, 3 lz4.
    pub compression: i16,
    /// Largest record timestamp ([`NO_TIMESTAMP`] for magic 0).
    pub max_timestamp: i64,
    /// Bytes of a partial message at the end of the set, which Kafka drops
    /// without an error (`UnifiedLog.trimInvalidBytes`). Worth a log line.
    pub dropped_trailing_bytes: usize,
    /// A message (or compressed wrapper) of the set claimed LogAppendTime: a
    /// LogAppendTime topic refuses the set for it (INVALID_TIMESTAMP), as Kafka's
    /// `validateTimestamp` does; the batch itself is CreateTime either way.
    pub claims_log_append_time: bool,
}

/// Which record-level refusal Kafka reports when several records are bad
/// (`LogValidator.processRecordErrors`): INVALID_TIMESTAMP wins.
#[derive(Default)]
struct RecordErrors {
    first: Option<RecordsError>,
}

impl RecordErrors {
    fn add(&mut self, e: RecordsError) {
        let replace = match (&self.first, &e) {
            (None, _) => true,
            (Some(RecordsError::InvalidTimestamp(_)), _) => false,
            (Some(_), RecordsError::InvalidTimestamp(_)) => true,
            _ => false,
        };
        if replace {
            self.first = Some(e);
        }
    }
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }
    fn check(self) -> Result<(), RecordsError> {
        self.first.map_or(Ok(()), Err)
    }
}

/// A record's timestamp as Kafka's `validateTimestamp` judges it on a
/// CreateTime topic. The window (`message.timestamp.*.max.ms`) is left to
/// [`crate::timestamps`] on the converted batch.
fn check_timestamp(timestamp: i64, batch_log_append_time: bool) -> Option<RecordsError> {
    if timestamp == NO_TIMESTAMP && batch_log_append_time {
        return Some(RecordsError::InvalidTimestamp(
            "Invalid timestamp type in message: producer should not set timestamp type to LogAppendTime".into(),
        ));
    }
    if timestamp < NO_TIMESTAMP {
        return Some(RecordsError::InvalidTimestamp(format!("Invalid negative timestamp {timestamp}")));
    }
    None
}

/// Converts the message set of one Produce v0–v2 partition (magic 0 or 1) into
/// one v2 record batch, as Kafka's broker does before appending it.
///
/// Accepted as Kafka accepts: any outer offsets (the log assigns offsets);
/// inner offsets of a compressed wrapper in any order (Kafka rewrites them);
/// a magic 1 wrapper whose offset is 0 (some librdkafka versions); a partial
/// message at the end (dropped, see [`UpConverted::dropped_trailing_bytes`]);
/// snappy in xerial framing or raw; LZ4 magic 0 frames with the broken
/// descriptor checksum. Magic 1 timestamps are kept (a LogAppendTime wrapper's
/// timestamp replaces its inner ones, as Kafka reads them); magic 0 records get
/// [`NO_TIMESTAMP`].
///
/// Refused, with Kafka's error code ([`RecordsError::error_code`]):
/// - CORRUPT_MESSAGE: a message size below 14, a magic byte outside 0..=2, a
///   CRC mismatch (outer and inner messages), key/value lengths that do not
///   fit the message, a payload that cannot be decompressed or expands past
///   `max_decompressed`, an unknown codec (5–7; Kafka fails with an unknown
///   server error there), an inner message set cut short.
/// - INVALID_RECORD: messages of different magic (or a v2 batch among them),
///   a compressed wrapper that is not the set's only message, a wrapper with a
///   null value or no inner messages, a compressed inner message, an inner
///   magic different from the wrapper's, a magic 1 wrapper offset below its
///   last inner offset and not 0, a zstd wrapper.
/// - INVALID_TIMESTAMP: a LogAppendTime message without a timestamp (Kafka:
///   producers must not set LogAppendTime), a timestamp below -1.
/// - MESSAGE_TOO_LARGE: an entry or the resulting batch above `max_message_bytes`.
///
/// Where Kafka fails with an unchecked exception (UNKNOWN_SERVER_ERROR: an
/// unknown codec, an undecodable payload, a length past the message, a
/// timestamp below -1) Karst names the refusal as above. Stricter than Kafka,
/// on purpose: bytes after a message's value, key/value lengths below -1 (Kafka
/// reads them as null) and a message cut short inside a wrapper (Kafka drops
/// it) are CORRUPT_MESSAGE. testdata/legacy holds Kafka 3.9's verdicts on
/// 500+ inputs and the tests hold these to them.
///
/// For the caller: route a partition's records here when [`legacy_magic`] says
/// 0 or 1 (a v2 batch first goes the v2 way, as in Kafka); then treat the batch
/// as a v2 producer's (timestamp window with [`crate::timestamps`], offsets,
/// append). Compacted topics: Kafka also refuses records without a key there
/// (INVALID_RECORD), which this function does not know about.
pub fn up_convert(set: &[u8], limits: &UpConvertLimits) -> Result<UpConverted, RecordsError> {
    // Pass 1, as UnifiedLog.analyzeAndValidateRecords: framing, size and CRC of
    // every top-level entry. `None` stands for a (valid) v2 batch among them.
    let mut entries: Vec<Option<Message<'_>>> = Vec::new();
    let mut pos = 0;
    let mut dropped_trailing_bytes = 0;
    let mut source_codec = NONE;
    while pos < set.len() {
        let (offset, magic, message) = match entry(&set[pos..])? {
            Entry::Partial => {
                dropped_trailing_bytes = set.len() - pos;
                break;
            }
            Entry::Whole { offset, magic, message } => (offset, magic, message),
        };
        let size = LOG_OVERHEAD + message.len();
        if size > limits.max_message_bytes {
            return Err(RecordsError::TooLarge { size, max: limits.max_message_bytes });
        }
        let codec = if magic == MAGIC_V2 {
            let h = BatchHeader::parse_checked(&set[pos..pos + size]).map_err(RecordsError::Corrupt)?;
            entries.push(None);
            h.compression()
        } else {
            let m = parse_message(offset, message)?;
            entries.push(Some(m));
            m.codec()
        };
        match codec {
            NONE => {}
            GZIP | SNAPPY | LZ4 | ZSTD => source_codec = codec,
            other => return Err(corrupt(format!("unknown compression codec {other}"))),
        }
        pos += size;
    }
    let Some(first) = entries.first().copied() else {
        return Ok(UpConverted {
            batch: Vec::new(),
            record_count: 0,
            magic: None,
            compression: NONE,
            max_timestamp: NO_TIMESTAMP,
            dropped_trailing_bytes,
            claims_log_append_time: false,
        });
    };
    let first = first.ok_or_else(|| invalid("a record batch of magic 2 is not a message set of magic 0 or 1"))?;

    // Pass 2, as LogValidator: one compressed wrapper or uncompressed messages
    // of one magic, each record checked, all gathered into one v2 batch.
    if source_codec != NONE && entries.len() > 1 {
        return Err(invalid("Compressed outer record has more than one batch"));
    }
    let mut w = V2Writer::new();
    for m in &entries {
        let Some(m) = m.filter(|m| m.magic == first.magic) else {
            let magic = m.map_or(MAGIC_V2, |m| m.magic);
            return Err(invalid(format!("batch magic {magic} is not the same as the first batch's magic byte {}", first.magic)));
        };
        if m.codec() == NONE {
            if let Some(e) = check_timestamp(m.timestamp, m.log_append_time()) {
                return Err(e);
            }
            w.push(m.timestamp, m.key, m.value)?;
        } else {
            unwrap_into(&m, limits.max_decompressed, &mut w)?;
        }
    }
    let record_count = w.count;
    let max_timestamp = w.max_timestamp;
    let batch = w.finish(source_codec)?;
    if batch.len() > limits.max_message_bytes {
        return Err(RecordsError::TooLarge { size: batch.len(), max: limits.max_message_bytes });
    }
    let claims_log_append_time = entries.iter().flatten().any(Message::log_append_time);
    Ok(UpConverted {
        batch,
        record_count,
        magic: Some(first.magic),
        compression: source_codec,
        max_timestamp,
        dropped_trailing_bytes,
        claims_log_append_time,
    })
}

/// Appends the inner messages of the compressed `wrapper` to `w`, as Kafka's
/// `DeepRecordsIterator` reads them and `LogValidator` checks them.
fn unwrap_into(wrapper: &Message<'_>, max_decompressed: usize, w: &mut V2Writer) -> Result<(), RecordsError> {
    let codec = wrapper.codec();
    if codec == ZSTD {
        return Err(invalid(format!("invalid wrapper compression type zstd for magic {}", wrapper.magic)));
    }
    let value =
        wrapper.value.ok_or_else(|| invalid(format!("Found invalid compressed record set with null value (magic = {})", wrapper.magic)))?;
    let data = decompress_wrapper(codec, wrapper.magic, value, max_decompressed)?;
    let frames = inner_frames(&data)?;
    let Some(&(last_inner, _)) = frames.last() else {
        return Err(invalid("Found invalid compressed record set with no inner records"));
    };
    if wrapper.magic == MAGIC_V1 && wrapper.offset != 0 && wrapper.offset < last_inner {
        return Err(invalid(format!(
            "Found invalid wrapper offset in compressed v1 message set, wrapper offset '{}' is less than the last inner message offset '{last_inner}' and it is not zero.",
            wrapper.offset
        )));
    }
    let lat = wrapper.log_append_time();
    let mut errors = RecordErrors::default();
    for (offset, body) in frames {
        // Frames hold at least RECORD_OVERHEAD_V0 bytes: magic and attributes are there.
        if body[5] & CODEC_MASK != 0 {
            return Err(invalid("Compressed outer record should not have an inner record with a compression attribute set"));
        }
        let magic = body[4] as i8;
        if magic != wrapper.magic {
            errors.add(invalid(format!("Record's magic {magic} does not match outer magic {}", wrapper.magic)));
            continue;
        }
        let r = parse_message(offset, body)?;
        let timestamp = if lat { wrapper.timestamp } else { r.timestamp };
        if let Some(e) = check_timestamp(timestamp, lat) {
            errors.add(e);
        }
        if errors.is_empty() {
            w.push(timestamp, r.key, r.value)?;
        }
    }
    errors.check()
}
