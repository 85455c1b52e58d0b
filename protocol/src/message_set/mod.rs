//! Message sets of format v0 and v1 ("magic 0/1"): what Kafka clients older
//! than 0.11 produce (Produce v0–v2) and consume (Fetch v0–v3).
//!
//! Karst's log holds only v2 record batches, so old clients are served by
//! converting at the edge, as Kafka does:
//! - [`up_convert`] turns the message set of a Produce v0–v2 partition into one
//!   v2 batch, accepting and refusing what Kafka's log validator accepts and
//!   refuses (`UnifiedLog.analyzeAndValidateRecords`, `LogValidator`,
//!   `AbstractLegacyRecordBatch`).
//! - [`down_convert`] turns stored v2 batches into a message set for a Fetch
//!   v0–v3 consumer (`RecordsUtil.downConvert`, `LazyDownConversionRecords`).
//!
//! The format (all integers big-endian):
//! ```text
//! message set = (offset i64, size i32, message[size])*
//! message     = crc u32, magic i8, attributes i8, [timestamp i64 (magic 1 only)],
//!               key (length i32, -1 = null; bytes), value (length i32, -1 = null; bytes)
//! attributes  = codec (bits 0-2: 0 none, 1 gzip, 2 snappy, 3 lz4) | 0x08 LogAppendTime (magic 1)
//! ```
//! The CRC is CRC-32 (IEEE) over magic..end. A compressed message (a
//! "wrapper") has a null key and a value that decompresses to an inner message
//! set of uncompressed messages. Magic 0 inner offsets are absolute; magic 1
//! inner offsets are relative (0..n-1) and the wrapper carries the absolute
//! offset of its last inner message. LZ4 is the LZ4 frame format; Kafka before
//! 0.10 computed the frame descriptor checksum over the wrong bytes
//! (KAFKA-3160), and Kafka keeps that for magic 0 in both directions.
//!
//! Nothing here trusts a length field: every length is checked against the bytes
//! at hand before it is used, and decompression is bounded by the caller's limit.

use std::borrow::Cow;

use karst_batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, NO_TIMESTAMP};

use crate::compression::decompress;
use crate::records::RecordsError;

/// Message format v0 (Kafka 0.8–0.9): no timestamps.
pub const MAGIC_V0: i8 = 0;
/// Message format v1 (Kafka 0.10): a timestamp per message.
pub const MAGIC_V1: i8 = 1;
/// Smallest magic 0 message: crc, magic, attributes, key and value lengths.
pub const RECORD_OVERHEAD_V0: usize = 14;
/// Smallest magic 1 message: magic 0's plus the timestamp.
pub const RECORD_OVERHEAD_V1: usize = 22;

/// Where the magic byte lies from the start of an entry (offset, size, crc).
const MAGIC_AT: usize = 16;
const CODEC_MASK: u8 = 0x07;
const LOG_APPEND_TIME_BIT: u8 = 0x08;
const NONE: i16 = 0;
const GZIP: i16 = 1;
const SNAPPY: i16 = 2;
const LZ4: i16 = 3;
const ZSTD: i16 = 4;

fn corrupt(msg: impl Into<String>) -> RecordsError {
    RecordsError::CorruptMessage(msg.into())
}

fn invalid(msg: impl Into<String>) -> RecordsError {
    RecordsError::InvalidRecord(msg.into())
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn be_i64(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// The message format of a Fetch version's records: magic 0 for v0–v1, magic 1
/// for v2–v3, `None` (v2 batches, no conversion) from v4 on.
pub fn fetch_magic(fetch_version: i16) -> Option<i8> {
    match fetch_version {
        0 | 1 => Some(MAGIC_V0),
        2 | 3 => Some(MAGIC_V1),
        _ => None,
    }
}

/// The magic of the first entry of a Produce partition's records when it is 0
/// or 1, i.e. when the records must go through [`up_convert`]; `None` for v2
/// batches (Kafka accepts those in Produce v0–v2 too) and for input too short
/// to tell.
pub fn legacy_magic(records: &[u8]) -> Option<i8> {
    match *records.get(MAGIC_AT)? as i8 {
        m @ (MAGIC_V0 | MAGIC_V1) => Some(m),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Reading messages
// ---------------------------------------------------------------------------

/// One v0/v1 message, borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Message<'a> {
    offset: i64,
    magic: i8,
    attributes: u8,
    /// As written for magic 1, [`NO_TIMESTAMP`] for magic 0.
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

impl Message<'_> {
    fn codec(&self) -> i16 {
        i16::from(self.attributes & CODEC_MASK)
    }
    fn log_append_time(&self) -> bool {
        self.magic >= MAGIC_V1 && self.attributes & LOG_APPEND_TIME_BIT != 0
    }
}

/// What starts a (non-empty) message set, read as Kafka's
/// `ByteBufferLogInputStream` reads it.
enum Entry<'a> {
    /// A whole entry: its offset, the magic byte and the message (crc..end).
    Whole { offset: i64, magic: i8, message: &'a [u8] },
    /// Fewer bytes than the entry declares: a partial message at the end.
    Partial,
}

fn entry(buf: &[u8]) -> Result<Entry<'_>, RecordsError> {
    let (Some(offset), Some(size)) = (be_i64(buf, 0), be_i32(buf, 8)) else {
        return Ok(Entry::Partial);
    };
    let size = usize::try_from(size)
        .ok()
        .filter(|s| *s >= RECORD_OVERHEAD_V0)
        .ok_or_else(|| corrupt(format!("message size {size} is less than the minimum message overhead ({RECORD_OVERHEAD_V0})")))?;
    let Some(&magic) = buf.get(MAGIC_AT) else {
        return Ok(Entry::Partial);
    };
    let magic = magic as i8;
    if !(MAGIC_V0..=MAGIC_V2).contains(&magic) {
        return Err(corrupt(format!("invalid magic found in message: {magic}")));
    }
    match buf.get(LOG_OVERHEAD..LOG_OVERHEAD + size) {
        Some(message) => Ok(Entry::Whole { offset, magic, message }),
        None => Ok(Entry::Partial),
    }
}

/// A length-prefixed byte field: -1 is null, any other negative length or one
/// past the end of the message is corruption.
fn bytes_field<'a>(m: &'a [u8], at: &mut usize, what: &str) -> Result<Option<&'a [u8]>, RecordsError> {
    let len = be_i32(m, *at).ok_or_else(|| corrupt(format!("message ends before its {what} length")))?;
    *at += 4;
    if len == -1 {
        return Ok(None);
    }
    let n = usize::try_from(len).map_err(|_| corrupt(format!("invalid message {what} length {len}")))?;
    let data = m.get(*at..at.saturating_add(n)).ok_or_else(|| corrupt(format!("message {what} length {len} runs past the message")))?;
    *at += n;
    Ok(Some(data))
}

/// Checks the CRC of `m` (crc..end of one message) and reads its fields. The
/// key and value must fill the message exactly.
fn parse_message(offset: i64, m: &[u8]) -> Result<Message<'_>, RecordsError> {
    let stored = be_u32(m, 0).filter(|_| m.len() >= RECORD_OVERHEAD_V0).ok_or_else(|| {
        corrupt(format!("message is corrupt (crc could not be retrieved as the message is too small, size = {})", m.len()))
    })?;
    let computed = crc32fast::hash(&m[4..]);
    if stored != computed {
        return Err(corrupt(format!("message is corrupt (stored crc = {stored}, computed crc = {computed})")));
    }
    let magic = m[4] as i8;
    let attributes = m[5];
    let (timestamp, mut at) = match magic {
        MAGIC_V0 => (NO_TIMESTAMP, 6),
        MAGIC_V1 => {
            if m.len() < RECORD_OVERHEAD_V1 {
                return Err(corrupt(format!("magic 1 message of {} bytes is shorter than its header", m.len())));
            }
            (be_i64(m, 6).unwrap_or(NO_TIMESTAMP), 14)
        }
        other => return Err(corrupt(format!("invalid magic found in message: {other}"))),
    };
    let key = bytes_field(m, &mut at, "key")?;
    let value = bytes_field(m, &mut at, "value")?;
    if at != m.len() {
        return Err(corrupt(format!("{} bytes follow the message value", m.len() - at)));
    }
    Ok(Message { offset, magic, attributes, timestamp, key, value })
}

/// Frames of the inner message set of a wrapper: `(offset, message)`.
/// Inside a CRC-checked wrapper a cut message is corruption, not a tail to drop.
fn inner_frames(data: &[u8]) -> Result<Vec<(i64, &[u8])>, RecordsError> {
    let mut frames = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (Some(offset), Some(size)) = (be_i64(rest, 0), be_i32(rest, 8)) else {
            return Err(corrupt(format!("compressed message set ends with {} bytes of a partial message", rest.len())));
        };
        let size = usize::try_from(size).ok().filter(|s| *s >= RECORD_OVERHEAD_V0).ok_or_else(|| {
            corrupt(format!("inner message size {size} is less than the minimum message overhead ({RECORD_OVERHEAD_V0})"))
        })?;
        let message = rest.get(LOG_OVERHEAD..LOG_OVERHEAD + size).ok_or_else(|| {
            corrupt(format!("compressed message set ends inside a message of {size} bytes ({} left)", rest.len() - LOG_OVERHEAD))
        })?;
        frames.push((offset, message));
        rest = &rest[LOG_OVERHEAD + size..];
    }
    Ok(frames)
}

/// Decompresses a wrapper's value. For magic 0 an LZ4 frame descriptor checksum
/// is not checked (old clients computed it wrongly), as Kafka's
/// `Lz4BlockInputStream` with `ignoreFlagDescriptorChecksum`.
fn decompress_wrapper(codec: i16, magic: i8, value: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
    if codec == LZ4 && magic == MAGIC_V0 {
        return decompress(codec, &lz4_with_checksum(value, Lz4Checksum::Correct), limit);
    }
    decompress(codec, value, limit)
}

// ---------------------------------------------------------------------------
// LZ4 frame descriptor checksum
// ---------------------------------------------------------------------------

const LZ4_FRAME_MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();

/// Which bytes the frame descriptor checksum covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lz4Checksum {
    /// The LZ4 frame format's: the descriptor (FLG, BD, optional fields).
    Correct,
    /// Kafka 0.8–0.9's, kept by Kafka for magic 0: the magic number and the descriptor.
    Broken,
}

/// The frame with its descriptor checksum byte set as `which` says; the frame
/// as it is when its header cannot be read (decompression then refuses it).
fn lz4_with_checksum(frame: &[u8], which: Lz4Checksum) -> Cow<'_, [u8]> {
    let Some(&flg) = frame.get(4).filter(|_| frame.starts_with(&LZ4_FRAME_MAGIC)) else {
        return Cow::Borrowed(frame);
    };
    let mut end = 6; // magic, FLG, BD
    if flg & 0x08 != 0 {
        end += 8; // content size
    }
    if flg & 0x01 != 0 {
        end += 4; // dictionary id
    }
    let Some(&current) = frame.get(end) else {
        return Cow::Borrowed(frame);
    };
    let start = if which == Lz4Checksum::Correct { 4 } else { 0 };
    let hc = (xxh32(&frame[start..end], 0) >> 8) as u8;
    if current == hc {
        return Cow::Borrowed(frame);
    }
    let mut fixed = frame.to_vec();
    fixed[end] = hc;
    Cow::Owned(fixed)
}

/// XXH32, the hash of the LZ4 frame format's checksums.
fn xxh32(data: &[u8], seed: u32) -> u32 {
    const P1: u32 = 2_654_435_761;
    const P2: u32 = 2_246_822_519;
    const P3: u32 = 3_266_489_917;
    const P4: u32 = 668_265_263;
    const P5: u32 = 374_761_393;
    fn round(acc: u32, lane: u32) -> u32 {
        acc.wrapping_add(lane.wrapping_mul(P2)).rotate_left(13).wrapping_mul(P1)
    }
    fn lane(b: &[u8]) -> u32 {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    let mut stripes = data.chunks_exact(16);
    let mut h = if data.len() >= 16 {
        let mut v = [seed.wrapping_add(P1).wrapping_add(P2), seed.wrapping_add(P2), seed, seed.wrapping_sub(P1)];
        for stripe in &mut stripes {
            for (i, acc) in v.iter_mut().enumerate() {
                *acc = round(*acc, lane(&stripe[4 * i..]));
            }
        }
        v[0].rotate_left(1).wrapping_add(v[1].rotate_left(7)).wrapping_add(v[2].rotate_left(12)).wrapping_add(v[3].rotate_left(18))
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(data.len() as u32);
    let tail = stripes.remainder();
    let mut words = tail.chunks_exact(4);
    for w in &mut words {
        h = h.wrapping_add(lane(w).wrapping_mul(P3)).rotate_left(17).wrapping_mul(P4);
    }
    for &b in words.remainder() {
        h = h.wrapping_add(u32::from(b).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^ (h >> 16)
}

// ---------------------------------------------------------------------------
// Compressing
// ---------------------------------------------------------------------------

/// The xerial snappy-java stream framing Kafka's producers and broker write.
#[cfg(test)]
const XERIAL_HEADER: &[u8] = karst_batch::compression::XERIAL_HEADER;

/// Compresses `data` as Kafka writes a batch or wrapper of `magic` in `codec`
/// (`karst_batch::compression`); a magic 0 LZ4 wrapper gets the frame descriptor
/// checksum Kafka 0.8-0.9 computed.
fn compress(codec: i16, data: &[u8], magic: i8) -> Result<Vec<u8>, RecordsError> {
    let out = karst_batch::compression::compress(codec, data).map_err(|e| RecordsError::Decompress(e.to_string()))?;
    if codec == LZ4 && magic == MAGIC_V0 {
        return Ok(lz4_with_checksum(&out, Lz4Checksum::Broken).into_owned());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Writing messages
// ---------------------------------------------------------------------------

/// One message to write with [`build_message_set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// Written for magic 1 (negative values as [`NO_TIMESTAMP`]), ignored for magic 0.
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

fn too_large(size: usize) -> RecordsError {
    RecordsError::TooLarge { size, max: i32::MAX as usize }
}

/// Appends one entry (offset, size, message) to `out`.
fn write_entry(
    out: &mut Vec<u8>,
    offset: i64,
    magic: i8,
    attributes: u8,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(), RecordsError> {
    let overhead = if magic == MAGIC_V0 { RECORD_OVERHEAD_V0 } else { RECORD_OVERHEAD_V1 };
    let size = overhead + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
    let size_field = i32::try_from(size).map_err(|_| too_large(size))?;
    let start = out.len();
    out.reserve(LOG_OVERHEAD + size);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&size_field.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // crc, below
    out.push(magic as u8);
    out.push(attributes);
    if magic != MAGIC_V0 {
        out.extend_from_slice(&timestamp.max(NO_TIMESTAMP).to_be_bytes());
    }
    for field in [key, value] {
        match field {
            // Lengths fit: their sum fits `size_field`.
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let crc = crc32fast::hash(&out[start + MAGIC_AT..]);
    out[start + LOG_OVERHEAD..start + MAGIC_AT].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Builds a message set of `magic` (0 or 1) from `messages`, as a pre-0.11
/// client or Kafka's down-conversion (`MemoryRecordsBuilder`) writes it.
///
/// Uncompressed (`codec` 0): one message per entry, each at its own offset.
/// Compressed (1 gzip, 2 snappy, 3 lz4): one wrapper at the offset of the last
/// message, whose inner offsets are absolute (magic 0) or relative to the first
/// message (magic 1); a magic 1 wrapper carries the largest timestamp. An LZ4
/// magic 0 wrapper gets the broken descriptor checksum old consumers verify.
/// `log_append_time` (magic 1): every message, and the wrapper, says
/// LogAppendTime with this timestamp. No messages: an empty set.
pub fn build_message_set(
    magic: i8,
    codec: i16,
    log_append_time: Option<i64>,
    messages: &[MessageRef<'_>],
) -> Result<Vec<u8>, RecordsError> {
    if magic != MAGIC_V0 && magic != MAGIC_V1 {
        return Err(invalid(format!("cannot write a message set of magic {magic}")));
    }
    let lat_bit = if magic == MAGIC_V1 && log_append_time.is_some() { LOG_APPEND_TIME_BIT } else { 0 };
    let timestamp_of = |m: &MessageRef<'_>| log_append_time.unwrap_or(m.timestamp).max(NO_TIMESTAMP);
    let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
        return Ok(Vec::new());
    };
    let mut plain = Vec::new();
    for m in messages {
        let offset = if codec != NONE && magic == MAGIC_V1 { m.offset.wrapping_sub(first.offset) } else { m.offset };
        write_entry(&mut plain, offset, magic, lat_bit, timestamp_of(m), m.key, m.value)?;
    }
    if codec == NONE {
        return Ok(plain);
    }
    let compressed = compress(codec, &plain, magic)?;
    let wrapper_ts = match log_append_time {
        Some(t) => t.max(NO_TIMESTAMP),
        None => messages.iter().map(timestamp_of).max().unwrap_or(NO_TIMESTAMP),
    };
    let codec_bits = u8::try_from(codec).ok().filter(|c| *c <= CODEC_MASK).unwrap_or(0);
    let mut out = Vec::with_capacity(LOG_OVERHEAD + RECORD_OVERHEAD_V1 + compressed.len());
    write_entry(&mut out, last.offset, magic, codec_bits | lat_bit, wrapper_ts, None, Some(&compressed))?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// v2 records
// ---------------------------------------------------------------------------

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_varlong(out, i64::from(v));
}

fn varlong(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut raw = 0u64;
    for i in 0..10 {
        let byte = *b.get(*at)?;
        *at += 1;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

fn varint(b: &[u8], at: &mut usize) -> Option<i32> {
    let mut raw = 0u32;
    for i in 0..5 {
        let byte = *b.get(*at)?;
        *at += 1;
        raw |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((raw >> 1) as i32 ^ -((raw & 1) as i32));
        }
    }
    None
}

/// Records of one v2 batch being written, offsets 0.. in order.
struct V2Writer {
    records: Vec<u8>,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
}

impl V2Writer {
    fn new() -> V2Writer {
        V2Writer { records: Vec::new(), count: 0, base_timestamp: None, max_timestamp: NO_TIMESTAMP }
    }

    /// Appends a record as Kafka's `DefaultRecord.writeTo`: no headers.
    fn push(&mut self, timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<(), RecordsError> {
        let base = *self.base_timestamp.get_or_insert(timestamp);
        let mut body = Vec::with_capacity(16 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len));
        body.push(0); // attributes
        put_varlong(&mut body, timestamp.wrapping_sub(base));
        put_varint(&mut body, self.count);
        for field in [key, value] {
            match field {
                Some(b) => {
                    put_varint(&mut body, i32::try_from(b.len()).map_err(|_| too_large(b.len()))?);
                    body.extend_from_slice(b);
                }
                None => put_varint(&mut body, -1),
            }
        }
        put_varint(&mut body, 0); // headers
        put_varint(&mut self.records, i32::try_from(body.len()).map_err(|_| too_large(body.len()))?);
        self.records.extend_from_slice(&body);
        self.count = self.count.checked_add(1).ok_or_else(|| invalid("too many records for one batch"))?;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Ok(())
    }

    /// The v2 batch: base offset 0, no producer id, CreateTime, `codec`.
    fn finish(self, codec: i16) -> Result<Vec<u8>, RecordsError> {
        let body = if codec == NONE { self.records } else { compress(codec, &self.records, MAGIC_V2)? };
        let len = HEADER_LEN - LOG_OVERHEAD + body.len();
        let batch_length = i32::try_from(len).map_err(|_| too_large(len + LOG_OVERHEAD))?;
        let base_timestamp = self.base_timestamp.unwrap_or(NO_TIMESTAMP);
        let mut b = Vec::with_capacity(HEADER_LEN + body.len());
        b.extend_from_slice(&0i64.to_be_bytes()); // base offset: the log assigns it
        b.extend_from_slice(&batch_length.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch: the leader sets it
        b.push(MAGIC_V2 as u8);
        b.extend_from_slice(&[0; 4]); // crc, below
        b.extend_from_slice(&codec.to_be_bytes()); // attributes: codec, CreateTime
        b.extend_from_slice(&(self.count - 1).max(0).to_be_bytes()); // last offset delta
        b.extend_from_slice(&base_timestamp.to_be_bytes());
        b.extend_from_slice(&self.max_timestamp.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        b.extend_from_slice(&self.count.to_be_bytes());
        b.extend_from_slice(&body);
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(b)
    }
}

/// One record of a stored v2 batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct V2Record<'a> {
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

fn var_bytes<'a>(b: &'a [u8], at: &mut usize) -> Option<Option<&'a [u8]>> {
    let len = varint(b, at)?;
    if len == -1 {
        return Some(None);
    }
    let n = usize::try_from(len).ok()?;
    let data = b.get(*at..at.checked_add(n)?)?;
    *at += n;
    Some(Some(data))
}

fn read_v2_record<'a>(h: &BatchHeader, body: &'a [u8]) -> Option<V2Record<'a>> {
    let mut p = 1; // attributes: unused since magic 2
    body.first()?;
    let timestamp_delta = varlong(body, &mut p)?;
    let offset_delta = varint(body, &mut p)?;
    let key = var_bytes(body, &mut p)?;
    let value = var_bytes(body, &mut p)?;
    let headers = varint(body, &mut p)?;
    for _ in 0..usize::try_from(headers).ok()? {
        var_bytes(body, &mut p)??; // header key: never null
        var_bytes(body, &mut p)?; // header value: may be null
    }
    if p != body.len() {
        return None;
    }
    let timestamp = if h.is_log_append_time() { h.max_timestamp } else { h.base_timestamp.wrapping_add(timestamp_delta) };
    Some(V2Record { offset: h.base_offset.wrapping_add(i64::from(offset_delta)), timestamp, key, value })
}

/// The records of a v2 batch (its uncompressed record bytes), which must hold
/// exactly the declared count, as Kafka's `DefaultRecordBatch` requires.
fn v2_records<'a>(h: &BatchHeader, data: &'a [u8]) -> Result<Vec<V2Record<'a>>, RecordsError> {
    let bad = |what: &str| corrupt(format!("stored record batch at offset {}: {what}", h.base_offset));
    let count = usize::try_from(h.record_count).map_err(|_| bad("negative record count"))?;
    let mut out = Vec::with_capacity(count.min(data.len() / 7));
    let mut at = 0;
    for _ in 0..count {
        let len = varint(data, &mut at).ok_or_else(|| bad("record length is not a varint"))?;
        let end = usize::try_from(len).ok().and_then(|n| at.checked_add(n)).filter(|e| *e <= data.len());
        let end = end.ok_or_else(|| bad("record runs past the batch"))?;
        out.push(read_v2_record(h, &data[at..end]).ok_or_else(|| bad("malformed record"))?);
        at = end;
    }
    if at != data.len() {
        return Err(bad("bytes left after the declared record count"));
    }
    Ok(out)
}

mod down;
mod up;

pub use down::{down_convert, read_message_set, DownConvertOptions, DownConverted, LegacyRecord};
pub use up::{up_convert, UpConvertLimits, UpConverted};

#[cfg(test)]
mod tests;
