//! Bounded decompression of a record batch's payload, for the rare batch whose
//! records must be read (see [`crate::timestamps`]). A producer controls the
//! compressed bytes, so the output is capped before it is allocated.

use std::io::Read;

use crate::records::RecordsError;

fn too_large(limit: usize) -> RecordsError {
    RecordsError::Decompress(format!("record batch expands to more than {limit} bytes"))
}

fn failed(codec: &str, e: impl std::fmt::Display) -> RecordsError {
    RecordsError::Decompress(format!("cannot decompress {codec} record batch: {e}"))
}

/// Reads all of `r`, failing once more than `limit` bytes come out.
fn read_bounded(r: impl Read, codec: &str, limit: usize) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap).read_to_end(&mut out).map_err(|e| failed(codec, e))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// The xerial snappy-java stream header Kafka's producers write.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), RecordsError> {
    let n = snap::raw::decompress_len(block).map_err(|e| failed("snappy", e))?;
    if n > limit.saturating_sub(out.len()) {
        return Err(too_large(limit));
    }
    let start = out.len();
    out.resize(start + n, 0);
    snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(|e| failed("snappy", e))?;
    Ok(())
}

fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        snappy_block(data, &mut out, limit)?;
        return Ok(out);
    }
    let mut rest = data.get(XERIAL_HEADER_LEN..).ok_or_else(|| failed("snappy", "truncated stream header"))?;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(|| failed("snappy", "truncated block length"))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|e| failed("snappy", e))?;
        let block = tail.get(..len).ok_or_else(|| failed("snappy", "truncated block"))?;
        snappy_block(block, &mut out, limit)?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// Decompresses a batch payload of codec `codec` (1 gzip, 2 snappy, 3 lz4,
/// 4 zstd) into at most `limit` bytes.
pub fn decompress(codec: i16, data: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
    match codec {
        0 => {
            if data.len() > limit {
                return Err(too_large(limit));
            }
            Ok(data.to_vec())
        }
        1 => read_bounded(flate2::read::MultiGzDecoder::new(data), "gzip", limit),
        2 => snappy(data, limit),
        3 => read_bounded(lz4::Decoder::new(data).map_err(|e| failed("lz4", e))?, "lz4", limit),
        4 => read_bounded(zstd::stream::read::Decoder::new(data).map_err(|e| failed("zstd", e))?, "zstd", limit),
        other => Err(RecordsError::Decompress(format!("unknown compression codec {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_codec_round_trips_and_is_bounded() {
        let plain: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let mut lz = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
        lz.write_all(&plain).expect("lz4");
        let (lz, r) = lz.finish();
        r.expect("lz4");
        let zs = zstd::encode_all(&plain[..], 0).expect("zstd");
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&plain).expect("snappy");
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for chunk in plain.chunks(7000) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).expect("snappy");
            xerial.extend_from_slice(&u32::try_from(block.len()).expect("small").to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        for (codec, data) in [(1, &gz), (2, &raw_snappy), (2, &xerial), (3, &lz), (4, &zs)] {
            assert_eq!(decompress(codec, data, plain.len()).expect("fits"), plain, "codec {codec}");
            assert!(decompress(codec, data, plain.len() - 1).is_err(), "codec {codec} over its limit");
            let _ = decompress(codec, &data[..data.len() / 2], 1 << 20);
        }
        assert!(decompress(9, &gz, 1 << 20).is_err());
    }
}
