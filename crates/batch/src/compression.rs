//! The four codecs of a v2 batch's records: compressing as Kafka's producers and
//! broker write them, and decompressing with a bound on the output (a producer
//! controls the compressed bytes, so the output is capped before it is allocated).
//!
//! Used by the protocol crate (timestamps, legacy message sets) and by the storage
//! crate's log cleaner, which re-encodes the records it keeps in their batch's codec.

use std::io::{Read, Write};

use thiserror::Error;

/// Codec ids of the batch attributes' low three bits.
pub const NONE: i16 = 0;
pub const GZIP: i16 = 1;
pub const SNAPPY: i16 = 2;
pub const LZ4: i16 = 3;
pub const ZSTD: i16 = 4;

/// Why records could not be compressed or decompressed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("record batch expands to more than {0} bytes")]
    TooLarge(usize),
    #[error("cannot decompress {codec} record batch: {reason}")]
    Decompress { codec: &'static str, reason: String },
    #[error("cannot {codec}-compress records: {reason}")]
    Compress { codec: &'static str, reason: String },
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
}

fn failed(codec: &'static str, e: impl std::fmt::Display) -> CodecError {
    CodecError::Decompress { codec, reason: e.to_string() }
}

fn compress_failed(codec: &'static str, e: impl std::fmt::Display) -> CodecError {
    CodecError::Compress { codec, reason: e.to_string() }
}

/// Reads all of `r`, failing once more than `limit` bytes come out.
fn read_bounded(r: impl Read, codec: &'static str, limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap).read_to_end(&mut out).map_err(|e| failed(codec, e))?;
    if out.len() > limit {
        return Err(CodecError::TooLarge(limit));
    }
    Ok(out)
}

/// The xerial snappy-java stream header Kafka's producers and broker write: magic,
/// version 1, compatible version 1.
pub const XERIAL_HEADER: &[u8] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
/// snappy-java's `SnappyOutputStream` block size.
const XERIAL_BLOCK: usize = 32 * 1024;

fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CodecError> {
    let n = snap::raw::decompress_len(block).map_err(|e| failed("snappy", e))?;
    if n > limit.saturating_sub(out.len()) {
        return Err(CodecError::TooLarge(limit));
    }
    let start = out.len();
    out.resize(start + n, 0);
    snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(|e| failed("snappy", e))?;
    Ok(())
}

fn unsnappy(data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        snappy_block(data, &mut out, limit)?;
        return Ok(out);
    }
    let mut rest = data.get(XERIAL_HEADER.len()..).ok_or_else(|| failed("snappy", "truncated stream header"))?;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(|| failed("snappy", "truncated block length"))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|e| failed("snappy", e))?;
        let block = tail.get(..len).ok_or_else(|| failed("snappy", "truncated block"))?;
        snappy_block(block, &mut out, limit)?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// Decompresses a batch payload of codec `codec` (0 none, 1 gzip, 2 snappy, 3 lz4,
/// 4 zstd) into at most `limit` bytes.
pub fn decompress(codec: i16, data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    match codec {
        NONE => {
            if data.len() > limit {
                return Err(CodecError::TooLarge(limit));
            }
            Ok(data.to_vec())
        }
        GZIP => read_bounded(flate2::read::MultiGzDecoder::new(data), "gzip", limit),
        SNAPPY => unsnappy(data, limit),
        LZ4 => read_bounded(lz4::Decoder::new(data).map_err(|e| failed("lz4", e))?, "lz4", limit),
        ZSTD => read_bounded(zstd::stream::read::Decoder::new(data).map_err(|e| failed("zstd", e))?, "zstd", limit),
        other => Err(CodecError::UnknownCodec(other)),
    }
}

/// Kafka's default level of each codec (`CompressionType.defaultLevel()`): gzip's
/// -1 is zlib's default (6); lz4's 9 selects lz4-java's fast compressor.
pub fn default_level(codec: i16) -> i32 {
    match codec {
        GZIP => -1,
        LZ4 => 9,
        ZSTD => 3,
        _ => 0,
    }
}

/// Compresses `data` as Kafka writes a v2 batch's records in `codec`, at Kafka's
/// default level (see [`compress_at`]).
pub fn compress(codec: i16, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    compress_at(codec, data, default_level(codec))
}

/// Compresses `data` as Kafka writes a v2 batch's records in `codec`: gzip;
/// snappy in xerial framing (32 KiB blocks); an LZ4 frame of 64 KiB independent
/// blocks without checksums or content size (Kafka's `Lz4BlockOutputStream`,
/// which reads every block on its own); zstd. Codec 0 returns the bytes as they
/// are. `level` is Kafka's number for the codec (`compression.gzip.level` -1 or
/// 1-9, `compression.lz4.level` 1-17, `compression.zstd.level` -131072-22);
/// snappy has none. As in Kafka, lz4's default level 9 is the fast compressor and
/// any other level the high-compression one.
pub fn compress_at(codec: i16, data: &[u8], level: i32) -> Result<Vec<u8>, CodecError> {
    match codec {
        NONE => Ok(data.to_vec()),
        GZIP => {
            let level = match u32::try_from(level) {
                Ok(l @ 1..=9) => flate2::Compression::new(l),
                _ => flate2::Compression::default(),
            };
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data).map_err(|e| compress_failed("gzip", e))?;
            e.finish().map_err(|e| compress_failed("gzip", e))
        }
        SNAPPY => {
            let mut out = XERIAL_HEADER.to_vec();
            let mut encoder = snap::raw::Encoder::new();
            for chunk in data.chunks(XERIAL_BLOCK) {
                let block = encoder.compress_vec(chunk).map_err(|e| compress_failed("snappy", e))?;
                let len = u32::try_from(block.len()).map_err(|e| compress_failed("snappy", e))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        LZ4 => {
            // liblz4's level 0 is its fast mode; 3 and above its high-compression one.
            let lz4_level = if level == default_level(LZ4) { 0 } else { u32::try_from(level.clamp(1, 17)).unwrap_or(0) };
            let mut e = lz4::EncoderBuilder::new()
                .level(lz4_level)
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .map_err(|e| compress_failed("lz4", e))?;
            e.write_all(data).map_err(|e| compress_failed("lz4", e))?;
            let (frame, r) = e.finish();
            r.map_err(|e| compress_failed("lz4", e))?;
            Ok(frame)
        }
        ZSTD => zstd::encode_all(data, level).map_err(|e| compress_failed("zstd", e)),
        other => Err(CodecError::UnknownCodec(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_is_bounded() {
        let plain: Vec<u8> = (0..50_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [NONE, GZIP, SNAPPY, LZ4, ZSTD] {
            let packed = compress(codec, &plain).expect("compresses");
            if codec != NONE {
                assert!(packed.len() < plain.len(), "codec {codec} compresses");
            }
            assert_eq!(decompress(codec, &packed, plain.len()).expect("fits"), plain, "codec {codec}");
            assert_eq!(decompress(codec, &packed, plain.len() - 1), Err(CodecError::TooLarge(plain.len() - 1)), "codec {codec}");
            let _ = decompress(codec, &packed[..packed.len() / 2], 1 << 20);
        }
        assert_eq!(compress(SNAPPY, &plain).expect("snappy")[..16], *XERIAL_HEADER);
        assert_eq!(decompress(9, b"x", 10), Err(CodecError::UnknownCodec(9)));
        assert_eq!(compress(7, b"x"), Err(CodecError::UnknownCodec(7)));
    }

    #[test]
    fn every_level_kafka_accepts_compresses_and_reads_back() {
        let plain: Vec<u8> = (0..20_000u32).flat_map(|i| (i % 97).to_le_bytes()).collect();
        let levels: [(i16, &[i32]); 3] = [(GZIP, &[-1, 1, 9]), (LZ4, &[1, 9, 17]), (ZSTD, &[-131072, -5, 1, 3, 22])];
        for (codec, levels) in levels {
            for level in levels {
                let packed = compress_at(codec, &plain, *level).expect("compresses");
                assert_eq!(decompress(codec, &packed, plain.len()).expect("reads back"), plain, "codec {codec} level {level}");
            }
        }
        assert_eq!(compress(ZSTD, &plain), compress_at(ZSTD, &plain, 3), "Kafka's default zstd level");
    }

    #[test]
    fn foreign_framings_are_read() {
        let plain: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
        // Raw snappy (librdkafka without xerial framing).
        let raw = snap::raw::Encoder::new().compress_vec(&plain).expect("snappy");
        assert_eq!(decompress(SNAPPY, &raw, plain.len()).expect("raw snappy"), plain);
        // An LZ4 frame with linked blocks and checksums (lz4's defaults).
        let mut lz = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
        lz.write_all(&plain).expect("lz4");
        let (lz, r) = lz.finish();
        r.expect("lz4");
        assert_eq!(decompress(LZ4, &lz, plain.len()).expect("lz4 frame"), plain);
        // A zstd stream and two concatenated gzip members.
        let zs = zstd::encode_all(&plain[..], 3).expect("zstd");
        assert_eq!(decompress(ZSTD, &zs, plain.len()).expect("zstd"), plain);
        let half = plain.len() / 2;
        let mut gz = compress(GZIP, &plain[..half]).expect("gzip");
        gz.extend(compress(GZIP, &plain[half..]).expect("gzip"));
        assert_eq!(decompress(GZIP, &gz, plain.len()).expect("multi-member gzip"), plain);
    }
}
