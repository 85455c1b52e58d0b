//! Bounded decompression of a record batch's payload, for the rare batch whose
//! records must be read (see [`crate::timestamps`]). A producer controls the
//! compressed bytes, so the output is capped before it is allocated.
//!
//! The codecs themselves live in `karst_batch::compression`, shared with the
//! storage crate's log cleaner; this maps their errors to [`RecordsError`].

use crate::records::RecordsError;

/// Decompresses a batch payload of codec `codec` (1 gzip, 2 snappy, 3 lz4,
/// 4 zstd) into at most `limit` bytes.
pub fn decompress(codec: i16, data: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
    karst_batch::compression::decompress(codec, data, limit).map_err(|e| RecordsError::Decompress(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Producers' framings (the codecs' own round trips are tested in karst-batch).
    #[test]
    fn every_codec_is_read_and_bounded() {
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
        let mut xerial = karst_batch::compression::XERIAL_HEADER.to_vec();
        for chunk in plain.chunks(7000) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).expect("snappy");
            xerial.extend_from_slice(&u32::try_from(block.len()).expect("small").to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        for (codec, data) in [(1, &gz), (2, &raw_snappy), (2, &xerial), (3, &lz), (4, &zs)] {
            assert_eq!(decompress(codec, data, plain.len()).expect("fits"), plain, "codec {codec}");
            let e = decompress(codec, data, plain.len() - 1).expect_err("over its limit");
            assert_eq!(e.message(), format!("record batch expands to more than {} bytes", plain.len() - 1), "codec {codec}");
            let _ = decompress(codec, &data[..data.len() / 2], 1 << 20);
        }
        assert!(decompress(9, &gz, 1 << 20).is_err());
    }
}
