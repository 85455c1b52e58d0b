use super::*;
use crate::error_codes;
use karst_batch::set_base_offset;
use proptest::prelude::*;
use std::io::Write;

const BIG: usize = 1 << 24;

fn limits() -> UpConvertLimits {
    UpConvertLimits { max_message_bytes: BIG, max_decompressed: BIG }
}

fn down(magic: i8) -> DownConvertOptions {
    DownConvertOptions { magic, fetch_offset: 0, max_bytes: BIG, max_decompressed: BIG }
}

/// An owned message for building test sets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn msg(offset: i64, timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Msg {
    Msg { offset, timestamp, key: key.map(<[u8]>::to_vec), value: value.map(<[u8]>::to_vec) }
}

fn refs(msgs: &[Msg]) -> Vec<MessageRef<'_>> {
    msgs.iter().map(|m| MessageRef { offset: m.offset, timestamp: m.timestamp, key: m.key.as_deref(), value: m.value.as_deref() }).collect()
}

fn set(magic: i8, codec: i16, msgs: &[Msg]) -> Vec<u8> {
    build_message_set(magic, codec, None, &refs(msgs)).expect("builds")
}

/// A variety of keys and values: null, empty, small, and one large enough
/// to span several snappy (32 KiB) and lz4 (64 KiB) blocks.
fn sample() -> Vec<Msg> {
    let large: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect();
    vec![
        msg(0, 1_600_000_000_000, None, Some(b"value zero")),
        msg(1, 1_600_000_000_005, Some(b"key one"), None),
        msg(2, 1_599_999_999_000, Some(b""), Some(b"")),
        msg(3, 1_600_000_000_001, None, None),
        msg(4, 1_600_000_000_010, Some(b"big"), Some(&large)),
        msg(5, 1_600_000_000_002, Some(&[0xff; 300]), Some(b"\x00\x01\x02")),
    ]
}

/// Record of a v2 batch: (offset, timestamp, key, value).
type Rec = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>);

fn v2_contents(batch: &[u8]) -> (BatchHeader, Vec<Rec>) {
    let h = BatchHeader::parse_checked(batch).expect("a valid v2 batch");
    assert_eq!(h.total_len(), batch.len(), "one batch");
    let payload = &batch[HEADER_LEN..];
    let data = decompress(h.compression(), payload, BIG).expect("decompresses");
    let recs = v2_records(&h, &data)
        .expect("records")
        .into_iter()
        .map(|r| (r.offset, r.timestamp, r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec)))
        .collect();
    (h, recs)
}

fn code<T: std::fmt::Debug>(r: Result<T, RecordsError>) -> i16 {
    r.expect_err("refused").error_code()
}

/// Recomputes the CRC of every top-level message of an uncompressed set
/// after a test edited it.
fn fix_crcs(set: &mut [u8]) {
    let mut pos = 0;
    while pos + LOG_OVERHEAD <= set.len() {
        let size = usize::try_from(be_i32(set, pos + 8).expect("size")).unwrap_or(set.len());
        let end = pos.saturating_add(LOG_OVERHEAD).saturating_add(size).min(set.len());
        if end >= pos + MAGIC_AT {
            let crc = crc32fast::hash(&set[pos + MAGIC_AT..end]);
            set[pos + LOG_OVERHEAD..pos + MAGIC_AT].copy_from_slice(&crc.to_be_bytes());
        }
        pos = end;
    }
}

/// A wrapper message around `inner` (an already built inner message set),
/// compressed with `codec`, at `offset`.
fn wrapper(magic: i8, codec: i16, offset: i64, attributes_extra: u8, timestamp: i64, inner: &[u8]) -> Vec<u8> {
    let value = compress(codec, inner, magic).expect("compresses");
    let mut out = Vec::new();
    write_entry(&mut out, offset, magic, codec as u8 | attributes_extra, timestamp, None, Some(&value)).expect("writes");
    out
}

// --- golden bytes -------------------------------------------------------

#[test]
fn golden_magic0_message() {
    // Offset 0, size 19, CRC-32 of 00 00 ffffffff 00000005 "hello"
    // (0x87a77ab2, computed independently with zlib), magic 0, attributes 0,
    // null key, value "hello".
    let golden: &[u8] = b"\0\0\0\0\0\0\0\0\0\0\0\x13\x87\xa7\x7a\xb2\0\0\xff\xff\xff\xff\0\0\0\x05hello";
    assert_eq!(set(0, 0, &[msg(0, 1234, None, Some(b"hello"))]), golden);
    let up = up_convert(golden, &limits()).expect("valid");
    assert_eq!((up.record_count, up.magic, up.compression, up.max_timestamp), (1, Some(0), 0, NO_TIMESTAMP));
    let (h, recs) = v2_contents(&up.batch);
    assert_eq!(recs, vec![(0, NO_TIMESTAMP, None, Some(b"hello".to_vec()))]);
    assert_eq!((h.base_offset, h.producer_id, h.producer_epoch, h.base_sequence), (0, -1, -1, -1));
    assert_eq!((h.base_timestamp, h.max_timestamp, h.attributes), (NO_TIMESTAMP, NO_TIMESTAMP, 0));
    assert_eq!(read_message_set(golden, BIG).expect("reads")[0].value.as_deref(), Some(&b"hello"[..]));
}

#[test]
fn golden_magic1_message() {
    // Offset 0, size 24, CRC-32 0xbf070c1c (zlib), magic 1, attributes 0,
    // timestamp 1_500_000_000_000, key "k", value "v".
    let golden: &[u8] = b"\0\0\0\0\0\0\0\0\0\0\0\x18\xbf\x07\x0c\x1c\x01\0\0\0\x01\x5d\x3e\xf7\x98\0\0\0\0\x01k\0\0\0\x01v";
    assert_eq!(set(1, 0, &[msg(0, 1_500_000_000_000, Some(b"k"), Some(b"v"))]), golden);
    let up = up_convert(golden, &limits()).expect("valid");
    let (h, recs) = v2_contents(&up.batch);
    assert_eq!(recs, vec![(0, 1_500_000_000_000, Some(b"k".to_vec()), Some(b"v".to_vec()))]);
    assert_eq!((h.base_timestamp, h.max_timestamp), (1_500_000_000_000, 1_500_000_000_000));
    let mut back = down_convert(&up.batch, &down(1)).expect("converts").records;
    assert_eq!(back, golden);
    set_base_offset(&mut back, 0); // no-op on a legacy set's offset field, which is already 0
    assert_eq!(back, golden);
}

#[test]
fn xxh32_matches_reference_vectors() {
    assert_eq!(xxh32(b"", 0), 0x02CC_5D05);
    assert_eq!(xxh32(b"a", 0), 0x550D_7456);
    assert_eq!(xxh32(b"abc", 0), 0x32D1_53FF);
    assert_eq!(xxh32(b"Nobody inspects the spammish repetition", 0), 0xE229_3B2F);
    let long: Vec<u8> = (0..=255u8).collect();
    // The 16-byte stripe path against the byte-at-a-time tail path.
    assert_ne!(xxh32(&long, 0), xxh32(&long[..255], 0));
}

#[test]
fn lz4_header_checksum_matches_liblz4() {
    // liblz4 writes the correct descriptor checksum: ours must agree for
    // every header shape it writes.
    for (size, content_checksum) in [
        (lz4::BlockSize::Max64KB, false),
        (lz4::BlockSize::Max256KB, true),
        (lz4::BlockSize::Max1MB, false),
        (lz4::BlockSize::Max4MB, true),
    ] {
        let mut b = lz4::EncoderBuilder::new();
        b.block_size(size).checksum(if content_checksum {
            lz4::ContentChecksum::ChecksumEnabled
        } else {
            lz4::ContentChecksum::NoChecksum
        });
        let mut e = b.build(Vec::new()).expect("encoder");
        e.write_all(b"some bytes").expect("write");
        let (frame, r) = e.finish();
        r.expect("finish");
        assert!(matches!(lz4_with_checksum(&frame, Lz4Checksum::Correct), Cow::Borrowed(_)), "already correct");
        let broken = lz4_with_checksum(&frame, Lz4Checksum::Broken);
        assert_ne!(broken[6], frame[6]);
        assert_eq!(lz4_with_checksum(&broken, Lz4Checksum::Correct).as_ref(), &frame[..]);
    }
    // A frame with content size: the checksum covers the 8 extra bytes.
    let mut e = lz4::EncoderBuilder::new().content_size(3).build(Vec::new()).expect("encoder");
    e.write_all(b"abc").expect("write");
    let (frame, r) = e.finish();
    r.expect("finish");
    assert_eq!(frame[4] & 0x08, 0x08);
    assert!(matches!(lz4_with_checksum(&frame, Lz4Checksum::Correct), Cow::Borrowed(_)));
    // Not a frame, or cut in its header: left alone.
    assert_eq!(lz4_with_checksum(b"xy", Lz4Checksum::Correct).as_ref(), b"xy");
    assert_eq!(lz4_with_checksum(&frame[..6], Lz4Checksum::Broken).as_ref(), &frame[..6]);
}

#[test]
fn lz4_magic0_checksum_quirk_both_ways() {
    let msgs = sample();
    // Written: Kafka's header for 64 KiB independent blocks is
    // 04 22 4d 18 | 60 | 40 | HC, HC = 0x82 when correct (magic 1).
    let v1 = set(1, LZ4, &msgs);
    let v0 = set(0, LZ4, &msgs);
    let frame_at = |magic: i8| LOG_OVERHEAD + if magic == 0 { RECORD_OVERHEAD_V0 } else { RECORD_OVERHEAD_V1 };
    let h1 = &v1[frame_at(1)..frame_at(1) + 7];
    let h0 = &v0[frame_at(0)..frame_at(0) + 7];
    assert_eq!(h1, [0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82]);
    let broken = (xxh32(&[0x04, 0x22, 0x4d, 0x18, 0x60, 0x40], 0) >> 8) as u8;
    assert_ne!(broken, 0x82);
    assert_eq!(h0, [0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, broken]);
    // Read: magic 0 takes the broken and the correct checksum alike (Kafka
    // ignores it); magic 1 takes only the correct one.
    let up0 = up_convert(&v0, &limits()).expect("broken checksum accepted for magic 0");
    assert_eq!(up0.record_count, 6);
    let mut v0_correct = v0.clone();
    let at = frame_at(0) + 6;
    v0_correct[at] = 0x82;
    fix_crcs(&mut v0_correct);
    assert_eq!(up_convert(&v0_correct, &limits()).expect("correct checksum accepted for magic 0").batch, up0.batch);
    let mut v1_broken = v1.clone();
    let at = frame_at(1) + 6;
    v1_broken[at] = broken;
    fix_crcs(&mut v1_broken);
    assert_eq!(code(up_convert(&v1_broken, &limits())), error_codes::CORRUPT_MESSAGE);
    // Down-conversion writes the broken checksum for magic 0 only.
    let mut stored = up0.batch;
    set_base_offset(&mut stored, 0);
    assert_eq!(down_convert(&stored, &down(0)).expect("v0").records, v0);
    assert_eq!(down_convert(&stored, &down(1)).expect("v1").records[frame_at(1)..frame_at(1) + 7], *h1);
}

// --- up-conversion ------------------------------------------------------

#[test]
fn up_converts_every_codec_and_magic_into_one_batch() {
    let msgs = sample();
    for magic in [0, 1] {
        for codec in [NONE, GZIP, SNAPPY, LZ4] {
            let s = set(magic, codec, &msgs);
            let up = up_convert(&s, &limits()).expect("valid");
            assert_eq!((up.record_count, up.magic, up.compression, up.dropped_trailing_bytes), (6, Some(magic), codec, 0));
            let (h, recs) = v2_contents(&up.batch);
            assert_eq!(h.compression(), codec);
            assert!(!h.is_log_append_time() && !h.is_transactional() && !h.is_control());
            assert_eq!((h.last_offset_delta, h.record_count, h.partition_leader_epoch), (5, 6, -1));
            for (i, (r, m)) in recs.iter().zip(&msgs).enumerate() {
                let ts = if magic == 0 { NO_TIMESTAMP } else { m.timestamp };
                assert_eq!(r, &(i as i64, ts, m.key.clone(), m.value.clone()), "magic {magic} codec {codec} record {i}");
            }
            let max = if magic == 0 { NO_TIMESTAMP } else { 1_600_000_000_010 };
            assert_eq!((h.base_timestamp, h.max_timestamp, up.max_timestamp), (if magic == 0 { -1 } else { msgs[0].timestamp }, max, max));
        }
    }
}

#[test]
fn round_trips_byte_for_byte() {
    // A set as Kafka writes it (offsets 0..n-1, CreateTime) comes back
    // unchanged through v2, for every codec and both magics.
    let msgs = sample();
    for magic in [0, 1] {
        for codec in [NONE, GZIP, SNAPPY, LZ4] {
            let s = set(magic, codec, &msgs);
            let stored = up_convert(&s, &limits()).expect("up").batch;
            let back = down_convert(&stored, &down(magic)).expect("down");
            assert_eq!(back.records, s, "magic {magic} codec {codec}");
            assert_eq!(back.record_count, 6);
            assert_eq!(back.messages, if codec == NONE { 6 } else { 1 });
            assert_eq!((back.last_offset, back.stopped_early), (Some(5), false));
        }
    }
}

#[test]
fn many_messages_at_a_log_offset() {
    let msgs: Vec<Msg> =
        (0..2000).map(|i| msg(i, 1_000 + i, Some(format!("k{i}").as_bytes()), Some(&vec![i as u8; (i % 50) as usize]))).collect();
    for codec in [NONE, GZIP, SNAPPY, LZ4] {
        let mut stored = up_convert(&set(1, codec, &msgs), &limits()).expect("up").batch;
        set_base_offset(&mut stored, 1_000_000);
        for magic in [0, 1] {
            let back = read_message_set(&down_convert(&stored, &down(magic)).expect("down").records, BIG).expect("read");
            assert_eq!(back.len(), 2000);
            for (i, r) in back.iter().enumerate() {
                assert_eq!(r.offset, 1_000_000 + i as i64);
                assert_eq!(r.timestamp, if magic == 0 { NO_TIMESTAMP } else { 1_000 + i as i64 });
                assert_eq!((r.key.as_ref(), r.value.as_ref(), r.compression), (msgs[i].key.as_ref(), msgs[i].value.as_ref(), codec));
            }
        }
    }
}

#[test]
fn cross_magic_conversion() {
    let msgs = sample();
    let stored = up_convert(&set(1, GZIP, &msgs), &limits()).expect("up").batch;
    let v0 = read_message_set(&down_convert(&stored, &down(0)).expect("down").records, BIG).expect("read");
    assert!(v0.iter().all(|r| r.magic == 0 && r.timestamp == NO_TIMESTAMP && !r.log_append_time));
    let stored = up_convert(&set(0, SNAPPY, &msgs), &limits()).expect("up").batch;
    let v1 = read_message_set(&down_convert(&stored, &down(1)).expect("down").records, BIG).expect("read");
    assert!(v1.iter().all(|r| r.magic == 1 && r.timestamp == NO_TIMESTAMP));
    assert_eq!(v1.iter().map(|r| r.value.clone()).collect::<Vec<_>>(), msgs.iter().map(|m| m.value.clone()).collect::<Vec<_>>());
}

#[test]
fn outer_and_inner_offsets_are_not_the_producers_business() {
    // Uncompressed: any offsets (clients send 0s, or garbage).
    let mut msgs = sample();
    for (m, o) in msgs.iter_mut().zip([7, 7, -3, 0, i64::MAX, 2]) {
        m.offset = o;
    }
    let up = up_convert(&set(1, NONE, &msgs), &limits()).expect("any outer offsets");
    assert_eq!(v2_contents(&up.batch).1.iter().map(|r| r.0).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
    // Magic 1 inner offsets out of order or with gaps: Kafka rewrites them.
    let inner = set(1, NONE, &msgs);
    let w = wrapper(1, GZIP, i64::MAX, 0, 5, &inner);
    let up = up_convert(&w, &limits()).expect("inner offsets rewritten");
    assert_eq!(v2_contents(&up.batch).1.iter().map(|r| r.0).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
    // A magic 1 wrapper at offset 0 (some librdkafka versions).
    let inner = set(1, NONE, &sample());
    assert_eq!(up_convert(&wrapper(1, LZ4, 0, 0, 5, &inner), &limits()).expect("wrapper offset 0").record_count, 6);
    // A magic 1 wrapper below its last inner offset, not 0: refused.
    assert_eq!(code(up_convert(&wrapper(1, LZ4, 4, 0, 5, &inner), &limits())), error_codes::INVALID_RECORD);
    assert_eq!(up_convert(&wrapper(1, LZ4, 5, 0, 5, &inner), &limits()).expect("wrapper at its last inner offset").record_count, 6);
    // Magic 0: absolute inner offsets, anything goes.
    let inner0 = set(0, NONE, &msgs);
    assert_eq!(up_convert(&wrapper(0, GZIP, -1, 0, 0, &inner0), &limits()).expect("magic 0").record_count, 6);
}

#[test]
fn timestamps_follow_kafkas_reading() {
    let inner = set(1, NONE, &sample());
    // A LogAppendTime wrapper's timestamp is its inner messages' timestamp.
    let w = wrapper(1, SNAPPY, 5, LOG_APPEND_TIME_BIT, 1_234, &inner);
    let up = up_convert(&w, &limits()).expect("valid");
    let (h, recs) = v2_contents(&up.batch);
    assert!(recs.iter().all(|r| r.1 == 1_234));
    assert!(!h.is_log_append_time(), "the v2 batch is CreateTime");
    assert!(up.claims_log_append_time, "which a LogAppendTime topic refuses");
    assert!(!up_convert(&set(1, GZIP, &sample()), &limits()).expect("valid").claims_log_append_time);
    assert_eq!(
        read_message_set(&w, BIG).expect("read").iter().map(|r| (r.timestamp, r.log_append_time)).collect::<Vec<_>>(),
        vec![(1_234, true); 6]
    );
    // ... without one, it is refused as Kafka refuses a producer's LogAppendTime.
    let w = wrapper(1, SNAPPY, 5, LOG_APPEND_TIME_BIT, NO_TIMESTAMP, &inner);
    assert_eq!(code(up_convert(&w, &limits())), error_codes::INVALID_TIMESTAMP);
    // Uncompressed LogAppendTime messages: their own timestamps, refused at -1.
    let mut s = build_message_set(1, NONE, Some(77), &refs(&sample())).expect("builds");
    let up = up_convert(&s, &limits()).expect("valid");
    assert!(v2_contents(&up.batch).1.iter().all(|r| r.1 == 77));
    assert!(up.claims_log_append_time);
    s.clear();
    write_entry(&mut s, 0, 1, LOG_APPEND_TIME_BIT, NO_TIMESTAMP, None, Some(b"v")).expect("writes");
    assert_eq!(code(up_convert(&s, &limits())), error_codes::INVALID_TIMESTAMP);
    // A timestamp below -1.
    let mut s = set(1, NONE, &[msg(0, 5, None, Some(b"v"))]);
    s[LOG_OVERHEAD + 6..LOG_OVERHEAD + 14].copy_from_slice(&(-2i64).to_be_bytes());
    fix_crcs(&mut s);
    assert_eq!(code(up_convert(&s, &limits())), error_codes::INVALID_TIMESTAMP);
    // A magic 1 set with -1 timestamps (CreateTime, none set) is fine.
    let up = up_convert(&set(1, NONE, &[msg(0, -1, None, Some(b"v"))]), &limits()).expect("valid");
    assert_eq!(v2_contents(&up.batch).1[0].1, NO_TIMESTAMP);
    // Timestamp precedence: an inner magic mismatch and a LogAppendTime
    // message without timestamp both refused: INVALID_TIMESTAMP wins.
    let mut mixed = set(0, NONE, &[msg(0, 0, None, Some(b"a"))]);
    mixed.extend(set(1, NONE, &[msg(1, 1, None, Some(b"b"))]));
    let w = wrapper(1, GZIP, 1, LOG_APPEND_TIME_BIT, NO_TIMESTAMP, &mixed);
    assert_eq!(code(up_convert(&w, &limits())), error_codes::INVALID_TIMESTAMP);
}

#[test]
fn partial_trailing_message_is_dropped_as_kafka_does() {
    let s = set(1, NONE, &sample());
    let whole = set(1, NONE, &sample()[..5]);
    for cut in [whole.len() + 1, whole.len() + 11, whole.len() + 12, whole.len() + 20, s.len() - 1] {
        let up = up_convert(&s[..cut], &limits()).expect("trailing part dropped");
        assert_eq!((up.record_count, up.dropped_trailing_bytes), (5, cut - whole.len()), "cut at {cut}");
    }
    // Nothing whole: nothing appended, no error.
    for cut in [0, 1, 11, 12, 17, 30] {
        let up = up_convert(&s[..cut], &limits()).expect("empty");
        assert_eq!((up.batch.len(), up.record_count, up.magic, up.dropped_trailing_bytes), (0, 0, None, cut));
    }
    // A size field claiming 2 GiB: a partial message, nothing allocated.
    let mut huge = s.clone();
    huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    assert_eq!(up_convert(&huge, &limits()).expect("partial").dropped_trailing_bytes, s.len());
}

fn one(magic: i8) -> Vec<u8> {
    set(magic, NONE, &[msg(0, 10, Some(b"k"), Some(b"value"))])
}

fn with(mut s: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    s[at..at + bytes.len()].copy_from_slice(bytes);
    fix_crcs(&mut s);
    s
}

/// Malformed or refused produce inputs: (name, set, Kafka's error code).
fn refusal_cases() -> Vec<(&'static str, Vec<u8>, i16)> {
    use error_codes::{CORRUPT_MESSAGE as CORRUPT, INVALID_RECORD as INVALID};
    let inner = set(1, NONE, &sample()[..4]);
    let mut cases: Vec<(&str, Vec<u8>, i16)> = vec![
        ("size below 14", with(one(0), 8, &13i32.to_be_bytes()), CORRUPT),
        ("negative size", with(one(0), 8, &(-1i32).to_be_bytes()), CORRUPT),
        ("magic 3", with(one(0), MAGIC_AT, &[3]), CORRUPT),
        ("magic -1", with(one(0), MAGIC_AT, &[0xff]), CORRUPT),
        ("magic 2 first", with(one(1), MAGIC_AT, &[2]), CORRUPT),
        ("v2 batch after a message", [one(1), karst_batch::build_batch(0, 1, 1, b"x")].concat(), INVALID),
        ("v2 batch first", [karst_batch::build_batch(0, 1, 1, b"x"), one(1)].concat(), INVALID),
        ("key length past the message", with(one(0), 18, &100i32.to_be_bytes()), CORRUPT),
        ("key length -2", with(one(0), 18, &(-2i32).to_be_bytes()), CORRUPT),
        ("value length past the message", with(one(0), 23, &6i32.to_be_bytes()), CORRUPT),
        ("bytes after the value", with(one(0), 23, &4i32.to_be_bytes()), CORRUPT),
        ("magic 1 shorter than its header", Vec::new(), CORRUPT),
        ("codec 5", with(one(1), 17, &[5]), CORRUPT),
        ("codec 7", with(one(1), 17, &[7]), CORRUPT),
        ("zstd wrapper", wrapper(1, GZIP, 5, 0, 5, &inner), INVALID),
        ("wrapper with null value", Vec::new(), INVALID),
        ("mixed magic", [one(0), one(1)].concat(), INVALID),
        ("two wrappers", [wrapper(1, GZIP, 5, 0, 5, &inner), wrapper(1, GZIP, 5, 0, 5, &inner)].concat(), INVALID),
        ("message then wrapper", [one(1), wrapper(1, GZIP, 5, 0, 5, &inner)].concat(), INVALID),
        ("wrapper then message", [wrapper(1, LZ4, 5, 0, 5, &inner), one(1)].concat(), INVALID),
        ("nested compression", wrapper(1, GZIP, 0, 0, 5, &wrapper(1, GZIP, 5, 0, 5, &inner)), INVALID),
        ("inner magic differs", wrapper(1, GZIP, 0, 0, 5, &one(0)), INVALID),
        ("inner of magic 0 in magic 1", wrapper(0, LZ4, 0, 0, 5, &one(1)), INVALID),
        ("no inner messages", wrapper(1, SNAPPY, 0, 0, 5, &[]), INVALID),
        ("inner cut short", wrapper(1, GZIP, 0, 0, 5, &inner[..inner.len() - 1]), CORRUPT),
        ("inner framing cut", wrapper(1, GZIP, 0, 0, 5, &inner[..inner.len() - 1][..5]), CORRUPT),
        ("inner size below 14", wrapper(1, GZIP, 0, 0, 5, &with(one(1), 8, &3i32.to_be_bytes())), CORRUPT),
        ("garbage gzip", with(wrapper(1, GZIP, 0, 0, 5, &inner), 50, b"garbage!"), CORRUPT),
        ("garbage snappy", with(wrapper(1, SNAPPY, 0, 0, 5, &inner), 60, b"garbage!"), CORRUPT),
        ("garbage lz4", with(wrapper(1, LZ4, 0, 0, 5, &inner), 60, b"garbage!"), CORRUPT),
        ("wrapper below its last inner offset", wrapper(1, LZ4, 2, 0, 5, &inner), INVALID),
        ("lz4 magic 1 broken checksum", Vec::new(), CORRUPT),
        ("log append time without timestamp", Vec::new(), error_codes::INVALID_TIMESTAMP),
        (
            "log append time wrapper without timestamp",
            wrapper(1, SNAPPY, 5, LOG_APPEND_TIME_BIT, NO_TIMESTAMP, &inner),
            error_codes::INVALID_TIMESTAMP,
        ),
        ("timestamp -2", with(one(1), LOG_OVERHEAD + 6, &(-2i64).to_be_bytes()), error_codes::INVALID_TIMESTAMP),
    ];
    // The zstd wrapper: codec bits 4 over a payload (never opened).
    let slot = |cases: &mut Vec<(&str, Vec<u8>, i16)>, name: &str| -> usize { cases.iter().position(|c| c.0 == name).expect("case") };
    let i = slot(&mut cases, "zstd wrapper");
    let z = &mut cases[i].1;
    z[17] = ZSTD as u8;
    fix_crcs(z);
    // The wrapper with a null value: its value length -1 and nothing after.
    let i = slot(&mut cases, "wrapper with null value");
    write_entry(&mut cases[i].1, 0, 1, GZIP as u8, 5, None, None).expect("writes");
    // A magic 1 message cut to 14 bytes: the magic 0 minimum.
    let i = slot(&mut cases, "magic 1 shorter than its header");
    let short = &mut cases[i].1;
    *short = one(1)[..LOG_OVERHEAD + 14].to_vec();
    short[8..12].copy_from_slice(&14i32.to_be_bytes());
    fix_crcs(short);
    // A corrupt inner CRC.
    let mut bad_inner = inner.clone();
    bad_inner[30] ^= 1;
    cases.push(("inner crc", wrapper(1, GZIP, 0, 0, 5, &bad_inner), CORRUPT));
    // Magic 1 LZ4 with the magic 0 descriptor checksum.
    let v1 = set(1, LZ4, &sample()[..4]);
    let broken = (xxh32(&[0x04, 0x22, 0x4d, 0x18, 0x60, 0x40], 0) >> 8) as u8;
    let i = slot(&mut cases, "lz4 magic 1 broken checksum");
    cases[i].1 = with(v1, LOG_OVERHEAD + RECORD_OVERHEAD_V1 + 6, &[broken]);
    // An uncompressed LogAppendTime message without a timestamp.
    let i = slot(&mut cases, "log append time without timestamp");
    write_entry(&mut cases[i].1, 0, 1, LOG_APPEND_TIME_BIT, NO_TIMESTAMP, None, Some(b"v")).expect("writes");
    cases
}

#[test]
fn every_refusal_has_kafkas_code() {
    let mut cases = refusal_cases();
    cases.push(("message too large", set(1, NONE, &[msg(0, 1, None, Some(&[0; 2000]))]), error_codes::MESSAGE_TOO_LARGE));
    let inner = set(1, NONE, &sample()[..4]);
    let small = UpConvertLimits { max_message_bytes: 1000, max_decompressed: BIG };
    for (name, input, expected) in &cases {
        let got = up_convert(input, &small).map(|u| u.record_count);
        assert_eq!(got.as_ref().map_err(RecordsError::error_code), Err(*expected), "{name}: {got:?}");
    }
    // Every single-byte change of a message's CRC-covered bytes is caught.
    for s in [one(0), one(1), wrapper(1, GZIP, 5, 0, 5, &inner)] {
        for at in LOG_OVERHEAD..s.len() {
            let mut bad = s.clone();
            bad[at] ^= 0x20;
            assert!(up_convert(&bad, &limits()).is_err(), "change at {at} accepted");
        }
    }
}

#[test]
fn decompression_is_bounded() {
    // 8 MiB of zeros compress to a few KiB; the limit stops them at 1 MiB.
    let msgs = [msg(0, 1, None, Some(&vec![0u8; 8 << 20]))];
    for codec in [GZIP, SNAPPY, LZ4] {
        let s = set(1, codec, &msgs);
        assert!(s.len() < 1 << 20, "codec {codec} compresses");
        let l = UpConvertLimits { max_message_bytes: BIG, max_decompressed: 1 << 20 };
        assert_eq!(code(up_convert(&s, &l)), error_codes::CORRUPT_MESSAGE, "codec {codec}");
        assert_eq!(code(read_message_set(&s, 1 << 20)), error_codes::CORRUPT_MESSAGE);
        let stored = up_convert(&s, &limits()).expect("within a larger limit").batch;
        let tight = DownConvertOptions { max_decompressed: 1 << 20, ..down(1) };
        assert_eq!(code(down_convert(&stored, &tight)), error_codes::CORRUPT_MESSAGE);
    }
    // The converted batch is held to max.message.bytes too.
    let s = set(1, NONE, &[msg(0, 1, None, Some(&[1; 900])), msg(1, 1, None, Some(&[2; 900]))]);
    let l = UpConvertLimits { max_message_bytes: 1000, max_decompressed: BIG };
    assert_eq!(code(up_convert(&s, &l)), error_codes::MESSAGE_TOO_LARGE);
}

#[test]
fn snappy_raw_and_xerial_both_accepted() {
    let inner = set(1, NONE, &sample());
    let raw = snap::raw::Encoder::new().compress_vec(&inner).expect("snappy");
    let mut w = Vec::new();
    write_entry(&mut w, 5, 1, SNAPPY as u8, 9, None, Some(&raw)).expect("writes");
    let a = up_convert(&w, &limits()).expect("raw snappy");
    let b = up_convert(&set(1, SNAPPY, &sample()), &limits()).expect("xerial snappy");
    assert_eq!(v2_contents(&a.batch).1, v2_contents(&b.batch).1);
    assert!(set(1, SNAPPY, &sample())[LOG_OVERHEAD + RECORD_OVERHEAD_V1..].starts_with(XERIAL_HEADER));
}

#[test]
fn helpers_route_by_version_and_magic() {
    assert_eq!(
        (fetch_magic(0), fetch_magic(1), fetch_magic(2), fetch_magic(3), fetch_magic(4)),
        (Some(0), Some(0), Some(1), Some(1), None)
    );
    assert_eq!(legacy_magic(&set(0, NONE, &sample())), Some(0));
    assert_eq!(legacy_magic(&set(1, GZIP, &sample())), Some(1));
    assert_eq!(legacy_magic(&karst_batch::build_batch(0, 1, 1, b"x")), None);
    assert_eq!(legacy_magic(&[0; 16]), None);
    assert!(build_message_set(2, NONE, None, &[]).is_err());
    assert_eq!(build_message_set(1, GZIP, None, &[]).expect("empty"), Vec::<u8>::new());
}

// --- down-conversion ----------------------------------------------------

const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;
const LOG_APPEND: i16 = 0x08;

/// (offset delta, timestamp, key, value)
type StoredRec<'a> = (i32, i64, Option<&'a [u8]>, Option<&'a [u8]>);

/// A stored v2 batch at `base` with `attributes` beyond the codec, whose
/// records have the given offset deltas, timestamps and one header each.
fn stored(base: i64, codec: i16, attributes: i16, recs: &[StoredRec<'_>]) -> Vec<u8> {
    let base_ts = recs.first().map_or(NO_TIMESTAMP, |r| r.1);
    let mut records = Vec::new();
    for (delta, ts, key, value) in recs {
        let mut body = vec![0u8];
        put_varlong(&mut body, ts - base_ts);
        put_varint(&mut body, *delta);
        for f in [key, value] {
            match f {
                Some(b) => {
                    put_varint(&mut body, b.len() as i32);
                    body.extend_from_slice(b);
                }
                None => put_varint(&mut body, -1),
            }
        }
        put_varint(&mut body, 2); // headers, dropped by down-conversion
        for (k, v) in [(&b"h1"[..], Some(&b"x"[..])), (b"h2", None)] {
            put_varint(&mut body, k.len() as i32);
            body.extend_from_slice(k);
            match v {
                Some(v) => {
                    put_varint(&mut body, v.len() as i32);
                    body.extend_from_slice(v);
                }
                None => put_varint(&mut body, -1),
            }
        }
        put_varint(&mut records, body.len() as i32);
        records.extend(body);
    }
    let w = V2Writer {
        records,
        count: recs.len() as i32,
        base_timestamp: Some(base_ts),
        max_timestamp: recs.iter().map(|r| r.1).max().unwrap_or(-1),
    };
    let mut b = w.finish(codec).expect("batch");
    let last_delta = recs.last().map_or(0, |r| r.0);
    b[23..27].copy_from_slice(&last_delta.to_be_bytes());
    b[21..23].copy_from_slice(&(codec | attributes).to_be_bytes());
    set_base_offset(&mut b, base);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    BatchHeader::parse_checked(&b).expect("valid");
    b
}

fn offsets(records: &[u8]) -> Vec<i64> {
    read_message_set(records, BIG).expect("reads").iter().map(|r| r.offset).collect()
}

#[test]
fn control_batches_are_skipped_and_transactional_data_kept() {
    let mut log = stored(100, NONE, TRANSACTIONAL, &[(0, 10, None, Some(b"a")), (1, 11, None, Some(b"b"))]);
    log.extend(stored(102, NONE, TRANSACTIONAL | CONTROL, &[(0, 12, Some(b"\0\0\0\0"), Some(b"\0\0\0\0\0\0"))]));
    log.extend(stored(103, GZIP, TRANSACTIONAL, &[(0, 13, None, Some(b"c"))]));
    log.extend(stored(104, GZIP, CONTROL, &[(0, 14, Some(b"\0\0\0\x01"), Some(b"\0\0\0\0\0\0"))]));
    for magic in [0, 1] {
        let d = down_convert(&log, &down(magic)).expect("converts");
        assert_eq!(offsets(&d.records), vec![100, 101, 103]);
        assert_eq!((d.messages, d.record_count, d.last_offset, d.stopped_early), (3, 3, Some(103), false));
    }
    // Only control batches: nothing.
    let only = stored(7, NONE, CONTROL, &[(0, 1, Some(b"\0\0\0\0"), Some(b"\0\0\0\0\0\0"))]);
    assert_eq!(down_convert(&only, &down(1)).expect("empty"), DownConverted::default());
}

#[test]
fn headers_dropped_timestamps_per_magic() {
    let log = stored(50, NONE, 0, &[(0, 1_000, Some(b"k"), Some(b"v")), (1, 999, None, None), (2, -7, Some(b""), Some(b""))]);
    let v1 = read_message_set(&down_convert(&log, &down(1)).expect("v1").records, BIG).expect("read");
    assert_eq!(
        v1.iter().map(|r| (r.offset, r.timestamp, r.log_append_time)).collect::<Vec<_>>(),
        vec![(50, 1_000, false), (51, 999, false), (52, -1, false)]
    );
    assert_eq!(
        v1.iter().map(|r| (r.key.clone(), r.value.clone())).collect::<Vec<_>>(),
        vec![(Some(b"k".to_vec()), Some(b"v".to_vec())), (None, None), (Some(vec![]), Some(vec![]))]
    );
    let v0 = read_message_set(&down_convert(&log, &down(0)).expect("v0").records, BIG).expect("read");
    assert!(v0.iter().all(|r| r.magic == 0 && r.timestamp == NO_TIMESTAMP));
    // LogAppendTime: the batch's max timestamp, flagged, for magic 1.
    for codec in [NONE, LZ4] {
        let log = stored(0, codec, LOG_APPEND, &[(0, 5, None, Some(b"a")), (1, 6, None, Some(b"b"))]);
        let out = down_convert(&log, &down(1)).expect("v1").records;
        let v1 = read_message_set(&out, BIG).expect("read");
        assert!(v1.iter().all(|r| r.timestamp == 6 && r.log_append_time), "codec {codec}: {v1:?}");
        assert_eq!(out[LOG_OVERHEAD + 5] & LOG_APPEND_TIME_BIT, LOG_APPEND_TIME_BIT, "outer attributes");
        let v0 = down_convert(&log, &down(0)).expect("v0").records;
        assert_eq!(v0[LOG_OVERHEAD + 5], codec as u8, "no timestamp type in magic 0");
        // As a LogAppendTime topic's leader stores a CreateTime batch: the append
        // time, not any record's, is every message's timestamp.
        let mut appended = stored(0, codec, 0, &[(0, 5, None, Some(b"a")), (1, 6, None, Some(b"b"))]);
        let h = karst_batch::log_append_time_header(&appended, 9_000).expect("stamped");
        karst_batch::stamp_head(&mut appended, &h);
        let v1 = read_message_set(&down_convert(&appended, &down(1)).expect("v1").records, BIG).expect("read");
        assert_eq!(v1.iter().map(|r| (r.timestamp, r.log_append_time)).collect::<Vec<_>>(), [(9_000, true); 2], "codec {codec}");
    }
}

#[test]
fn offsets_per_target_magic() {
    // A compacted compressed batch: offsets 200, 202, 205.
    let log = stored(200, GZIP, 0, &[(0, 1, None, Some(b"a")), (2, 2, None, Some(b"b")), (5, 3, None, Some(b"c"))]);
    for magic in [0, 1] {
        let out = down_convert(&log, &down(magic)).expect("converts").records;
        assert_eq!(be_i64(&out, 0), Some(205), "wrapper at the last offset");
        let m = parse_message(205, &out[LOG_OVERHEAD..]).expect("wrapper");
        let inner = decompress_wrapper(GZIP, magic, m.value.expect("value"), BIG).expect("inner");
        let inner_offsets: Vec<i64> = inner_frames(&inner).expect("frames").iter().map(|f| f.0).collect();
        assert_eq!(inner_offsets, if magic == 0 { vec![200, 202, 205] } else { vec![0, 2, 5] });
        assert_eq!(offsets(&out), vec![200, 202, 205]);
        if magic == 1 {
            assert_eq!(m.timestamp, 3, "wrapper timestamp: the largest");
        }
    }
}

#[test]
fn fetch_offset_trims_uncompressed_batches_only() {
    let mut log = stored(10, NONE, 0, &[(0, 1, None, Some(b"a")), (1, 1, None, Some(b"b")), (2, 1, None, Some(b"c"))]);
    log.extend(stored(13, SNAPPY, 0, &[(0, 1, None, Some(b"d")), (1, 1, None, Some(b"e"))]));
    let at = |fetch_offset| down_convert(&log, &DownConvertOptions { fetch_offset, ..down(1) }).expect("converts");
    assert_eq!(offsets(&at(11).records), vec![11, 12, 13, 14]);
    assert_eq!(offsets(&at(14).records), vec![13, 14], "a compressed batch comes whole");
    assert_eq!(offsets(&at(13).records), vec![13, 14], "a batch with nothing left is skipped");
}

#[test]
fn partial_last_batch_is_dropped() {
    let mut log = stored(0, NONE, 0, &[(0, 1, None, Some(b"a"))]);
    let next = stored(1, GZIP, 0, &[(0, 1, None, Some(b"b"))]);
    for cut in [1, 12, 20, 61, next.len() - 1] {
        let mut l = log.clone();
        l.extend_from_slice(&next[..cut]);
        let d = down_convert(&l, &down(0)).expect("converts");
        assert_eq!(offsets(&d.records), vec![0], "cut at {cut}");
    }
    log.extend(next);
    assert_eq!(offsets(&down_convert(&log, &down(0)).expect("converts").records), vec![0, 1]);
    assert_eq!(down_convert(&[], &down(0)).expect("nothing"), DownConverted::default());
}

#[test]
fn max_bytes_keeps_the_first_batch_whole_then_whole_messages() {
    let big = vec![7u8; 500];
    let mut log = stored(0, NONE, 0, &[(0, 1, None, Some(&big)), (1, 1, None, Some(&big))]);
    log.extend(stored(2, NONE, 0, &[(0, 1, None, Some(&big)), (1, 1, None, Some(&big))]));
    log.extend(stored(4, GZIP, 0, &[(0, 1, None, Some(&big))]));
    let with = |max_bytes| down_convert(&log, &DownConvertOptions { max_bytes, ..down(0) }).expect("converts");
    let first = with(0);
    assert_eq!((offsets(&first.records), first.stopped_early), (vec![0, 1], true), "the first batch is whole even over budget");
    let one_more = with(first.records.len() + LOG_OVERHEAD + RECORD_OVERHEAD_V0 + 500);
    assert_eq!(offsets(&one_more.records), vec![0, 1, 2], "then whole messages within the budget");
    assert!(one_more.stopped_early);
    let all = with(BIG);
    assert_eq!((offsets(&all.records), all.stopped_early), (vec![0, 1, 2, 3, 4], false));
    let no_wrapper = with(all.records.len() - 1);
    assert_eq!((offsets(&no_wrapper.records), no_wrapper.stopped_early), (vec![0, 1, 2, 3], true));
    // Whole messages only: never a cut one.
    for max_bytes in 0..all.records.len() {
        let d = with(max_bytes);
        assert_eq!(read_message_set(&d.records, BIG).expect("whole").len(), d.record_count);
        assert!(d.records.len() <= max_bytes.max(first.records.len()));
    }
}

#[test]
fn zstd_is_unsupported_for_old_consumers() {
    let z = stored(0, ZSTD, 0, &[(0, 1, None, Some(b"a"))]);
    assert_eq!(code(down_convert(&z, &down(1))), error_codes::UNSUPPORTED_COMPRESSION_TYPE);
    let mut log = stored(0, NONE, CONTROL, &[(0, 1, Some(b"\0\0\0\0"), Some(b"\0\0\0\0\0\0"))]);
    log.extend(stored(1, ZSTD, 0, &[(0, 1, None, Some(b"a"))]));
    assert_eq!(code(down_convert(&log, &down(1))), error_codes::UNSUPPORTED_COMPRESSION_TYPE, "first after a control batch");
    let mut log = stored(0, NONE, 0, &[(0, 1, None, Some(b"a"))]);
    log.extend(z);
    let d = down_convert(&log, &down(0)).expect("converts what precedes");
    assert_eq!((offsets(&d.records), d.stopped_early), (vec![0], true));
}

#[test]
fn unreadable_stored_batches_are_errors() {
    let good = stored(0, NONE, 0, &[(0, 1, None, Some(b"a")), (1, 1, None, Some(b"b"))]);
    let mut wrong_count = good.clone();
    wrong_count[57..61].copy_from_slice(&3i32.to_be_bytes());
    let mut fewer = good.clone();
    fewer[57..61].copy_from_slice(&1i32.to_be_bytes());
    let mut bad_record = good.clone();
    bad_record[HEADER_LEN] = 0x7f; // record length far past the batch
    let mut bad_codec = good.clone();
    bad_codec[22] = 6;
    let mut bad_magic = good.clone();
    bad_magic[16] = 1;
    for (name, log) in [("count", wrong_count), ("fewer", fewer), ("record", bad_record), ("codec", bad_codec), ("magic", bad_magic)] {
        assert_eq!(code(down_convert(&log, &down(1))), error_codes::CORRUPT_MESSAGE, "{name}");
    }
    assert_eq!(code(down_convert(&good, &DownConvertOptions { magic: 2, ..down(1) })), error_codes::INVALID_RECORD);
}

// --- Apache Kafka as the oracle ---------------------------------------------
//
// testdata/legacy holds vectors written and judged by Kafka 3.9's own record
// code (KafkaOracle.java; README.md there says how to regenerate them):
// kafka/ sets built by Kafka, and Kafka's down-conversions of v2 batches;
// produce-cases.bin inputs written here with Kafka's verdicts beside them in
// produce-cases.kafka; rust/ our
// conversions with Kafka's reading of them.

fn testdata(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/legacy").join(rel)
}

fn read_file(rel: &str) -> Vec<u8> {
    std::fs::read(testdata(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn read_text(rel: &str) -> String {
    String::from_utf8(read_file(rel)).expect("utf-8")
}

/// KafkaOracle.records(big), field for field.
fn oracle_records(big: bool) -> Vec<Msg> {
    (0..12i64)
        .map(|i| {
            let key = (i % 3 != 0).then(|| format!("key-{i}").into_bytes());
            let value = if i % 5 == 0 {
                None
            } else if i % 7 == 0 {
                Some(Vec::new())
            } else if i == 8 && big {
                Some((0..70_000usize).map(|j| ((j * 31 + j / 1000) & 0xff) as u8).collect())
            } else {
                Some(format!("value-{i}").repeat(i as usize).into_bytes())
            };
            Msg { offset: i, timestamp: 1_600_000_000_000 + i * 1000 - (i % 4) * 3000, key, value }
        })
        .collect()
}

/// KafkaOracle.hex: "-" for null, hex up to 64 bytes, else length and CRC-32.
fn hexish(b: Option<&[u8]>) -> String {
    match b {
        None => "-".into(),
        Some(b) if b.len() > 64 => format!("#{}:{:x}", b.len(), crc32fast::hash(b)),
        Some(b) => std::iter::once("x".to_string()).chain(b.iter().map(|x| format!("{x:02x}"))).collect(),
    }
}

fn dump_line(offset: i64, timestamp: i64, lat: bool, key: Option<&[u8]>, value: Option<&[u8]>) -> String {
    format!("{offset} {timestamp} {} {} {}\n", u8::from(lat), hexish(key), hexish(value))
}

/// KafkaOracle.dump of a message set.
fn dump_set(set: &[u8]) -> String {
    let records = read_message_set(set, BIG).expect("readable");
    records.iter().map(|r| dump_line(r.offset, r.timestamp, r.log_append_time, r.key.as_deref(), r.value.as_deref())).collect()
}

/// KafkaOracle.dump of one v2 batch.
fn dump_v2(batch: &[u8]) -> String {
    let (h, recs) = v2_contents(batch);
    recs.iter().map(|r| dump_line(r.0, r.1, h.is_log_append_time(), r.2.as_deref(), r.3.as_deref())).collect()
}

/// What a consumer sees of each top-level entry besides the records: offset,
/// magic, attributes, the wrapper timestamp (magic 1), the whole message when
/// uncompressed and the LZ4 frame header when lz4.
fn shape(set: &[u8]) -> Vec<(i64, i8, u8, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Ok(Entry::Whole { offset, magic, message }) = entry(&set[pos..]) {
        let m = parse_message(offset, message).expect("valid");
        let detail = match m.codec() {
            NONE => message.to_vec(),
            LZ4 => m.value.expect("value")[..7].to_vec(),
            _ => Vec::new(),
        };
        out.push((offset, magic, m.attributes, m.timestamp, detail));
        pos += LOG_OVERHEAD + message.len();
        if pos == set.len() {
            break;
        }
    }
    out
}

const CODEC_NAMES: [(i16, &str); 4] = [(NONE, "none"), (GZIP, "gzip"), (SNAPPY, "snappy"), (LZ4, "lz4")];

#[test]
fn kafka_built_sets_convert_and_come_back_as_kafka_writes_them() {
    for (codec, name) in CODEC_NAMES {
        let expected = oracle_records(codec != NONE);
        for magic in [0, 1] {
            let input = read_file(&format!("kafka/v{magic}-{name}.bin"));
            let up = up_convert(&input, &limits()).expect("Kafka's own set");
            assert_eq!((up.record_count, up.compression, up.dropped_trailing_bytes), (12, codec, 0));
            let (_, recs) = v2_contents(&up.batch);
            for (r, m) in recs.iter().zip(&expected) {
                let ts = if magic == 0 { NO_TIMESTAMP } else { m.timestamp };
                assert_eq!(r, &(m.offset, ts, m.key.clone(), m.value.clone()), "v{magic}-{name}");
            }
            let back = down_convert(&up.batch, &down(magic)).expect("down").records;
            assert_eq!(shape(&back), shape(&input), "v{magic}-{name}: wrapper fields and LZ4 header as Kafka writes them");
            assert_eq!(dump_set(&back), dump_set(&input), "v{magic}-{name}");
            if codec == NONE {
                assert_eq!(back, input, "v{magic}-{name} byte for byte");
            }
        }
    }
}

#[test]
fn down_conversion_matches_kafkas() {
    let mut cases: Vec<(String, i64)> = Vec::new();
    for (_, name) in CODEC_NAMES {
        cases.push((name.to_string(), 1000));
        cases.push((format!("{name}-lat"), 1000));
    }
    cases.push(("none-from1003".into(), 1003));
    cases.push(("txn".into(), 1000));
    for (name, fetch_offset) in cases {
        let log = read_file(&format!("kafka/v2-{name}.bin"));
        for magic in [0, 1] {
            let ours = down_convert(&log, &DownConvertOptions { fetch_offset, ..down(magic) }).expect("converts").records;
            let theirs = read_file(&format!("kafka/down-v{magic}-{name}.bin"));
            assert_eq!(dump_set(&ours), read_text(&format!("kafka/down-v{magic}-{name}.kafka")), "v{magic} {name}: records");
            assert_eq!(dump_set(&ours), dump_set(&theirs), "v{magic} {name}: records");
            assert_eq!(shape(&ours), shape(&theirs), "v{magic} {name}: entries");
            if name.starts_with("none") {
                assert_eq!(ours, theirs, "v{magic} {name}: byte for byte");
            }
        }
    }
}

#[test]
fn kafka_reads_our_conversions() {
    for (codec, name) in CODEC_NAMES {
        for magic in [0, 1] {
            // Our down-conversion of Kafka's v2 batch, as Kafka's consumer reads it.
            let verdict = read_text(&format!("rust/down-v{magic}-{name}.kafka"));
            let expected = read_text(&format!("kafka/down-v{magic}-{name}.kafka"));
            assert_eq!(verdict, format!("ok\n{expected}"), "rust/down-v{magic}-{name}");
            // Our v2 batch from Kafka's v0/v1 set, as Kafka reads it.
            let verdict = read_text(&format!("rust/up-v{magic}-{name}.kafka"));
            let expected: String = oracle_records(codec != NONE)
                .iter()
                .map(|m| dump_line(m.offset, if magic == 0 { -1 } else { m.timestamp }, false, m.key.as_deref(), m.value.as_deref()))
                .collect();
            assert_eq!(verdict, format!("ok\n{expected}"), "rust/up-v{magic}-{name}");
        }
    }
}

#[test]
fn sarama_sets_up_convert() {
    // sarama 1.22's producer: magic 0 with every inner offset 0, magic 1
    // wrappers at offset 0 with the first message's timestamp.
    for (codec, name) in CODEC_NAMES {
        let expected = oracle_records(codec != NONE);
        for magic in [0, 1] {
            let input = read_file(&format!("sarama/v{magic}-{name}.bin"));
            let up = up_convert(&input, &limits()).expect("sarama's set");
            assert_eq!((up.record_count, up.magic, up.compression), (12, Some(magic), codec), "v{magic}-{name}");
            let (_, recs) = v2_contents(&up.batch);
            for (r, m) in recs.iter().zip(&expected) {
                let ts = if magic == 0 { NO_TIMESTAMP } else { m.timestamp };
                assert_eq!(r, &(m.offset, ts, m.key.clone(), m.value.clone()), "v{magic}-{name}");
            }
        }
    }
}

#[test]
fn sarama_reads_our_conversions_as_it_reads_kafkas() {
    for (_, name) in CODEC_NAMES {
        for magic in [0, 1] {
            let ours = read_text(&format!("rust/down-v{magic}-{name}.sarama"));
            assert_eq!(ours, read_text(&format!("kafka/down-v{magic}-{name}.sarama")), "v{magic}-{name}");
            if (magic, name) == (0, "lz4") {
                // sarama's lz4 library checks the descriptor checksum that
                // Kafka (and so Karst) writes the 0.8/0.9 way for magic 0;
                // sarama refuses lz4 below Version V0_10_0_0 for this reason.
                assert!(ours.starts_with("error lz4: invalid header checksum"), "{ours}");
            } else {
                assert_eq!(ours, format!("ok\n{}", read_text(&format!("kafka/down-v{magic}-{name}.kafka"))), "v{magic}-{name}");
            }
        }
    }
}

/// Where Karst answers a produce input differently from Kafka, on purpose.
fn deviation(kafka_code: Option<i16>, ours: &Result<UpConverted, RecordsError>) -> Option<&'static str> {
    let Err(e) = ours else { return None };
    if kafka_code == Some(e.error_code()) {
        return None;
    }
    let m = e.message();
    if m.contains("follow the message value") {
        Some("Karst refuses bytes after a message's value, which Kafka ignores")
    } else if m.contains("invalid message key length") || m.contains("invalid message value length") {
        Some("Karst refuses key/value lengths below -1, which Kafka reads as null")
    } else if m.contains("compressed message set ends") {
        Some("Karst refuses a cut message inside a wrapper, which Kafka drops")
    } else if kafka_code == Some(error_codes::UNKNOWN_SERVER_ERROR) {
        Some("Kafka fails with an unchecked exception, Karst names the refusal")
    } else {
        None
    }
}

/// produce-cases.bin: (name length u16, name, data length u32, data)*.
fn read_cases(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        let name = String::from_utf8(bytes[at + 2..at + 2 + n].to_vec()).expect("name");
        at += 2 + n;
        let len = be_i32(bytes, at).expect("length") as usize;
        out.push((name, bytes[at + 4..at + 4 + len].to_vec()));
        at += 4 + len;
    }
    out
}

#[test]
fn kafka_verdicts_on_produce_inputs() {
    let l = UpConvertLimits { max_message_bytes: 1_000_000, max_decompressed: BIG };
    let cases = read_cases(&read_file("produce-cases.bin"));
    let text = read_text("produce-cases.kafka");
    let verdicts: std::collections::HashMap<&str, String> = text
        .split("== ")
        .skip(1)
        .map(|chunk| {
            let (name, verdict) = chunk.split_once('\n').expect("name line");
            (name, verdict.to_string())
        })
        .collect();
    assert_eq!(verdicts.len(), cases.len(), "a verdict per case");
    assert!(cases.len() > 400, "{} cases", cases.len());
    let mut deviations: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (name, input) in &cases {
        let verdict = &verdicts[name.as_str()];
        let ours = up_convert(input, &l);
        let kafka_code =
            verdict.strip_prefix("error ").map(|rest| rest.split(' ').next().and_then(|c| c.parse::<i16>().ok()).expect("code"));
        if let Some(why) = deviation(kafka_code, &ours) {
            deviations.entry(why).or_default().push(name.clone());
            continue;
        }
        match (verdict.lines().next(), &ours) {
            (Some("empty"), Ok(up)) => assert_eq!(up.record_count, 0, "{name}"),
            (Some("ok"), Ok(up)) => {
                let (records, batch) = verdict["ok\n".len()..].split_once("batch ").expect("batch line");
                assert_eq!(dump_v2(&up.batch), records, "{name}: records");
                if up.compression == NONE {
                    assert_eq!(format!("{}\n", hexish(Some(&up.batch))), batch, "{name}: the v2 batch byte for byte");
                }
            }
            (_, Err(e)) if kafka_code == Some(e.error_code()) => {}
            _ => panic!("{name}: Kafka says {verdict:?}, Karst {:?}", ours.map(|u| u.record_count)),
        }
    }
    for (why, cases) in &deviations {
        eprintln!("{} cases: {why}: {}", cases.len(), cases.join(", "));
    }
    // The named cases where Karst is stricter than Kafka, and only those.
    let mut named: Vec<&String> = deviations.values().flatten().filter(|n| !n.starts_with("random-")).collect();
    named.sort();
    assert_eq!(
        named,
        [
            "bytes-after-the-value",
            "codec-5",
            "codec-7",
            "garbage-gzip",
            "garbage-snappy",
            "inner-cut-short",
            "inner-framing-cut",
            "key-length--2",
            "key-length-past-the-message",
            "lz4-magic-1-broken-checksum",
            "magic-1-shorter-than-its-header",
            "timestamp--2",
            "value-length-past-the-message",
        ],
        "named deviations"
    );
    let agreed = cases.len() - deviations.values().map(Vec::len).sum::<usize>();
    assert!(agreed > 380, "{agreed} of {} cases answered as Kafka answers", cases.len());
}

/// xorshift64*, for reproducible generated cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, max: u64) -> Option<Vec<u8>> {
        if self.below(5) == 0 {
            return None;
        }
        let n = self.below(max + 1);
        Some((0..n).map(|_| if self.below(3) == 0 { b'a' } else { self.next() as u8 }).collect())
    }
    fn msgs(&mut self, n: u64) -> Vec<Msg> {
        (0..n as i64)
            .map(|i| {
                let timestamp = if self.below(4) == 0 { NO_TIMESTAMP } else { 1_500_000_000_000 + self.below(1 << 36) as i64 };
                Msg { offset: i, timestamp, key: self.bytes(12), value: self.bytes(120) }
            })
            .collect()
    }
    fn edit(&mut self, data: &mut [u8]) {
        for _ in 0..1 + self.below(4) {
            let at = self.below(data.len() as u64) as usize;
            data[at] = match self.below(4) {
                0 => 0,
                1 => 0xff,
                2 => data[at] ^ (1 << self.below(8)),
                _ => self.next() as u8,
            };
        }
    }
}

fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// Writes produce-cases.bin and rust/*.bin for KafkaOracle.java to judge:
/// `cargo test -p karst-protocol write_oracle_inputs -- --ignored`.
#[test]
#[ignore]
fn write_oracle_inputs() {
    let mut cases = Vec::new();
    let mut put = |name: &str, data: &[u8]| {
        let name = slug(name);
        cases.extend_from_slice(&(name.len() as u16).to_be_bytes());
        cases.extend_from_slice(name.as_bytes());
        cases.extend_from_slice(&(data.len() as u32).to_be_bytes());
        cases.extend_from_slice(data);
    };
    for (name, data, _) in refusal_cases() {
        put(name, &data);
    }
    let inner = set(1, NONE, &sample()[..4]);
    let mut odd = sample()[..4].to_vec();
    for (m, o) in odd.iter_mut().zip([7, 7, -3, 0]) {
        m.offset = o;
    }
    let partial = set(1, NONE, &sample()[..4]);
    let raw = snap::raw::Encoder::new().compress_vec(&inner).expect("snappy");
    let mut raw_snappy = Vec::new();
    write_entry(&mut raw_snappy, 3, 1, SNAPPY as u8, 9, None, Some(&raw)).expect("writes");
    let mut lz4_v0_correct = set(0, LZ4, &sample()[..4]);
    lz4_v0_correct[LOG_OVERHEAD + RECORD_OVERHEAD_V0 + 6] = 0x82;
    fix_crcs(&mut lz4_v0_correct);
    let accepted: Vec<(&str, Vec<u8>)> = vec![
        ("log append time wrapper", wrapper(1, SNAPPY, 5, LOG_APPEND_TIME_BIT, 1_234, &inner)),
        ("wrapper offset 0", wrapper(1, LZ4, 0, 0, 5, &inner)),
        ("inner offsets out of order", wrapper(1, GZIP, 100, 0, 5, &set(1, NONE, &odd))),
        ("magic 0 wrapper any offsets", wrapper(0, GZIP, -1, 0, 0, &set(0, NONE, &odd))),
        ("outer offsets out of order", set(0, NONE, &odd)),
        ("partial trailing message", [&partial[..], &partial[..20]].concat()),
        ("partial trailing size", [&partial[..], &partial[..7]].concat()),
        ("only a partial message", partial[..30].to_vec()),
        ("empty set", Vec::new()),
        ("uncompressed log append time", build_message_set(1, NONE, Some(77), &refs(&sample()[..4])).expect("builds")),
        ("magic 1 without timestamps", set(1, NONE, &[msg(0, -1, None, Some(b"v")), msg(1, -1, Some(b"k"), None)])),
        ("raw snappy", raw_snappy),
        ("lz4 magic 0 correct checksum", lz4_v0_correct),
        ("lz4 magic 0 broken checksum", set(0, LZ4, &sample()[..4])),
    ];
    for (name, data) in accepted {
        put(name, &data);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..60 {
        let n = 1 + rng.below(20);
        let msgs = rng.msgs(n);
        put(&format!("random-valid-{i:03}"), &set(rng.below(2) as i8, rng.below(4) as i16, &msgs));
    }
    for i in 0..250 {
        let n = 1 + rng.below(6);
        let msgs = rng.msgs(n);
        let mut s = set(rng.below(2) as i8, if rng.below(2) == 0 { NONE } else { 1 + rng.below(3) as i16 }, &msgs);
        rng.edit(&mut s);
        if rng.below(3) != 0 {
            fix_crcs(&mut s);
        }
        put(&format!("random-edit-{i:03}"), &s);
    }
    for i in 0..150 {
        let magic = rng.below(2) as i8;
        let n = 1 + rng.below(6);
        let msgs = rng.msgs(n);
        let mut plain = set(magic, NONE, &msgs);
        rng.edit(&mut plain);
        if rng.below(3) != 0 {
            fix_crcs(&mut plain);
        }
        let lat = if magic == 1 && rng.below(4) == 0 { LOG_APPEND_TIME_BIT } else { 0 };
        let offset = [0, n as i64 - 1, n as i64 + 10, 1][rng.below(4) as usize];
        put(&format!("random-inner-{i:03}"), &wrapper(magic, 1 + rng.below(3) as i16, offset, lat, 1_600_000_000_000, &plain));
    }
    std::fs::write(testdata("produce-cases.bin"), cases).expect("write");
    // Our conversions of Kafka's vectors, for Kafka to read.
    let rust = testdata("rust");
    std::fs::create_dir_all(&rust).expect("dir");
    for (_, name) in CODEC_NAMES {
        for magic in [0, 1] {
            let d = down_convert(&read_file(&format!("kafka/v2-{name}.bin")), &DownConvertOptions { fetch_offset: 1000, ..down(magic) });
            std::fs::write(rust.join(format!("down-v{magic}-{name}.bin")), d.expect("down").records).expect("write");
            let up = up_convert(&read_file(&format!("kafka/v{magic}-{name}.bin")), &limits()).expect("up");
            std::fs::write(rust.join(format!("up-v{magic}-{name}.bin")), up.batch).expect("write");
        }
    }
}

// --- properties -----------------------------------------------------------

fn arb_bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![1 => Just(None), 4 => proptest::collection::vec(any::<u8>(), 0..max).prop_map(Some)]
}

fn arb_msgs() -> impl Strategy<Value = Vec<Msg>> {
    proptest::collection::vec((prop_oneof![Just(-1i64), 0i64..1 << 42], arb_bytes(40), arb_bytes(300)), 1..40).prop_map(|v| {
        v.into_iter().enumerate().map(|(i, (timestamp, key, value))| Msg { offset: i as i64, timestamp, key, value }).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_sets_round_trip(msgs in arb_msgs(), magic in 0i8..2, codec in 0i16..4, base in 0i64..1 << 40) {
        let s = set(magic, codec, &msgs);
        let up = up_convert(&s, &limits()).expect("valid");
        prop_assert_eq!(up.record_count as usize, msgs.len());
        let (_, recs) = v2_contents(&up.batch);
        for (r, m) in recs.iter().zip(&msgs) {
            let ts = if magic == 0 { NO_TIMESTAMP } else { m.timestamp };
            prop_assert_eq!(r, &(m.offset, ts, m.key.clone(), m.value.clone()));
        }
        // Byte for byte back to the same magic at the original offsets.
        prop_assert_eq!(&down_convert(&up.batch, &down(magic)).expect("down").records, &s);
        // At a log offset, to the other magic, as a consumer reads it.
        let mut stored = up.batch.clone();
        set_base_offset(&mut stored, base);
        let other = 1 - magic;
        let read = read_message_set(&down_convert(&stored, &down(other)).expect("down").records, BIG).expect("read");
        prop_assert_eq!(read.len(), msgs.len());
        for (r, m) in read.iter().zip(&msgs) {
            prop_assert_eq!((r.offset, r.magic, r.compression), (base + m.offset, other, codec));
            prop_assert_eq!(r.timestamp, if magic == 1 && other == 1 { m.timestamp } else { NO_TIMESTAMP });
            prop_assert_eq!((&r.key, &r.value), (&m.key, &m.value));
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let small = UpConvertLimits { max_message_bytes: 1 << 16, max_decompressed: 1 << 16 };
        let _ = up_convert(&bytes, &small);
        let _ = read_message_set(&bytes, 1 << 16);
        let _ = down_convert(&bytes, &DownConvertOptions { max_decompressed: 1 << 16, ..down(0) });
    }

    #[test]
    fn mutated_sets_never_panic(msgs in arb_msgs(), magic in 0i8..2, codec in 0i16..4, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), recrc in any::<bool>()) {
        let mut s = set(magic, codec, &msgs);
        for (at, b) in edits {
            let at = at % s.len();
            s[at] = b;
        }
        if recrc {
            fix_crcs(&mut s); // reach past the CRC into the fields and the payload
        }
        let small = UpConvertLimits { max_message_bytes: 1 << 20, max_decompressed: 1 << 20 };
        let _ = read_message_set(&s, 1 << 20);
        // What is accepted is a valid v2 batch that converts back whole.
        if let Ok(up) = up_convert(&s, &small).map_err(|e| e.error_code()) {
            if up.record_count > 0 {
                let summary = crate::records::validate_produce(&up.batch, 1 << 20).expect("a valid v2 batch");
                prop_assert_eq!(summary.record_count, i64::from(up.record_count));
                for magic in [0, 1] {
                    let back = down_convert(&up.batch, &down(magic)).expect("converts back");
                    prop_assert_eq!(read_message_set(&back.records, BIG).expect("reads").len(), up.record_count as usize);
                }
            }
        }
    }

    #[test]
    fn wrappers_of_random_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..600), magic in 0i8..2, codec in 1i16..4, compressed in any::<bool>()) {
        // Random inner bytes, compressed properly (or not at all): every
        // inner-parsing path behind a valid CRC and a valid frame.
        let value = if compressed { compress(codec, &payload, magic).expect("compresses") } else { payload };
        let mut w = Vec::new();
        write_entry(&mut w, 0, magic, codec as u8, 1, None, Some(&value)).expect("writes");
        let _ = up_convert(&w, &limits());
        let _ = read_message_set(&w, BIG);
    }

    #[test]
    fn mutated_stored_batches_never_panic(msgs in arb_msgs(), codec in 0i16..4, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), magic in 0i8..2) {
        let mut b = up_convert(&set(1, codec, &msgs), &limits()).expect("valid").batch;
        for (at, v) in edits {
            let at = HEADER_LEN.min(b.len() - 1) + at % (b.len() - HEADER_LEN.min(b.len() - 1));
            b[at] = v;
        }
        let _ = down_convert(&b, &DownConvertOptions { max_decompressed: 1 << 20, ..down(magic) });
    }
}
