//! A topic's `compression.type`: `producer` stores batches as they were sent; any
//! other value has the leader rebuild each batch whose codec differs in the
//! topic's codec before it is appended, as Kafka's `LogValidator` does (a batch
//! already in that codec is kept as it is: Kafka's in-place assignment). The
//! rebuild itself is [`karst_batch::recompress`].

use bytes::Bytes;
use karst_batch::compression::{self, CodecError};
use karst_batch::recompress::{recompress, RecompressError};
use karst_batch::BatchHeader;

use crate::records::RecordsError;

/// `compression.type` of a topic or the broker (Kafka's `BrokerCompressionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopicCompression {
    /// Batches are stored in the codec the producer chose.
    #[default]
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl TopicCompression {
    const ALL: [TopicCompression; 6] = [
        TopicCompression::Producer,
        TopicCompression::Uncompressed,
        TopicCompression::Gzip,
        TopicCompression::Snappy,
        TopicCompression::Lz4,
        TopicCompression::Zstd,
    ];

    /// Kafka's names, which it compares case-sensitively.
    pub fn parse(value: &str) -> Option<TopicCompression> {
        Self::ALL.into_iter().find(|c| c.as_str() == value.trim())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TopicCompression::Producer => "producer",
            TopicCompression::Uncompressed => "uncompressed",
            TopicCompression::Gzip => "gzip",
            TopicCompression::Snappy => "snappy",
            TopicCompression::Lz4 => "lz4",
            TopicCompression::Zstd => "zstd",
        }
    }

    /// The codec id the topic stores batches in; `None` for `producer`.
    pub fn codec(self) -> Option<i16> {
        match self {
            TopicCompression::Producer => None,
            TopicCompression::Uncompressed => Some(compression::NONE),
            TopicCompression::Gzip => Some(compression::GZIP),
            TopicCompression::Snappy => Some(compression::SNAPPY),
            TopicCompression::Lz4 => Some(compression::LZ4),
            TopicCompression::Zstd => Some(compression::ZSTD),
        }
    }
}

/// `compression.gzip.level`, `compression.lz4.level`, `compression.zstd.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionLevels {
    pub gzip: i32,
    pub lz4: i32,
    pub zstd: i32,
}

impl Default for CompressionLevels {
    fn default() -> Self {
        CompressionLevels {
            gzip: compression::default_level(compression::GZIP),
            lz4: compression::default_level(compression::LZ4),
            zstd: compression::default_level(compression::ZSTD),
        }
    }
}

impl CompressionLevels {
    fn of(&self, codec: i16) -> i32 {
        match codec {
            compression::GZIP => self.gzip,
            compression::LZ4 => self.lz4,
            compression::ZSTD => self.zstd,
            _ => 0,
        }
    }
}

/// Kafka's accepted levels (`CompressionType.levelValidator()`), by config key:
/// gzip 1-9 or -1 (zlib's default), lz4 1-17, zstd -131072-22.
pub fn level_is_valid(key: &str, level: i32) -> bool {
    match key {
        "compression.gzip.level" => level == -1 || (1..=9).contains(&level),
        "compression.lz4.level" => (1..=17).contains(&level),
        "compression.zstd.level" => (-131_072..=22).contains(&level),
        _ => false,
    }
}

/// What a partition's leader needs to store batches in its topic's codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recompression {
    /// The codec to store.
    pub codec: i16,
    pub level: i32,
    /// `max.message.bytes`, checked again on the rebuilt batches as Kafka does.
    pub max_message_bytes: usize,
    /// Largest payload a producer's compressed batch may expand to.
    pub max_decompressed: usize,
}

impl Recompression {
    /// `None` for a topic that stores what producers send.
    pub fn of(topic: TopicCompression, levels: &CompressionLevels, max_message_bytes: usize, max_decompressed: usize) -> Option<Self> {
        let codec = topic.codec()?;
        Some(Recompression { codec, level: levels.of(codec), max_message_bytes, max_decompressed })
    }
}

fn refused(e: RecompressError) -> RecordsError {
    match e {
        RecompressError::Batch(e) => RecordsError::Corrupt(e),
        RecompressError::Codec(CodecError::Compress { .. }) => RecordsError::Decompress(format!("cannot store the batch: {e}")),
        RecompressError::Codec(e) => RecordsError::Decompress(format!("cannot read the records of a compressed batch: {e}")),
    }
}

/// The batches of a produce request (accepted by [`crate::records::validate_produce`])
/// with every batch in another codec rebuilt in `r`'s; the same bytes, uncopied,
/// when all are already in it. A rebuilt batch above `max.message.bytes` is
/// MESSAGE_TOO_LARGE; one that cannot be read, CORRUPT_MESSAGE.
pub fn recompress_produce(records: Bytes, r: &Recompression) -> Result<Bytes, RecordsError> {
    let mut out: Option<Vec<u8>> = None;
    let mut pos = 0;
    while pos < records.len() {
        let h = BatchHeader::parse(&records[pos..]).map_err(RecordsError::Corrupt)?;
        let batch = &records[pos..pos + h.total_len()];
        // Kafka leaves control batches in the codec they were written in.
        if h.compression() == r.codec || h.is_control() {
            if let Some(out) = out.as_mut() {
                out.extend_from_slice(batch);
            }
        } else {
            let rebuilt = recompress(batch, r.codec, r.level, r.max_decompressed).map_err(refused)?;
            if rebuilt.len() > r.max_message_bytes {
                return Err(RecordsError::TooLarge { size: rebuilt.len(), max: r.max_message_bytes });
            }
            out.get_or_insert_with(|| records[..pos].to_vec()).extend_from_slice(&rebuilt);
        }
        pos += h.total_len();
    }
    Ok(out.map_or(records, Bytes::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_codes;
    use karst_batch::{build_batch, encode_record, HEADER_LEN};

    fn batch(values: &[&[u8]]) -> Vec<u8> {
        let records: Vec<u8> = (0i32..).zip(values).flat_map(|(i, v)| encode_record(0, i, v)).collect();
        build_batch(0, values.len() as i32, 1_000, &records)
    }

    fn target(topic: TopicCompression) -> Recompression {
        Recompression::of(topic, &CompressionLevels::default(), 1 << 20, 1 << 20).expect("a codec")
    }

    #[test]
    fn names_and_levels_are_kafkas() {
        for c in TopicCompression::ALL {
            assert_eq!(TopicCompression::parse(c.as_str()), Some(c));
        }
        assert_eq!(TopicCompression::parse("none"), None, "Kafka's topic name is `uncompressed`");
        assert_eq!(TopicCompression::parse("GZIP"), None);
        assert_eq!(Recompression::of(TopicCompression::Producer, &CompressionLevels::default(), 1, 1), None);
        assert_eq!(CompressionLevels::default(), CompressionLevels { gzip: -1, lz4: 9, zstd: 3 });
        assert!(level_is_valid("compression.gzip.level", -1) && !level_is_valid("compression.gzip.level", 0));
        assert!(level_is_valid("compression.lz4.level", 17) && !level_is_valid("compression.lz4.level", 18));
        assert!(level_is_valid("compression.zstd.level", -131_072) && !level_is_valid("compression.zstd.level", 23));
    }

    #[test]
    fn batches_in_another_codec_are_rebuilt_and_the_rest_kept_uncopied() {
        let big = vec![b'z'; 4000];
        let plain = Bytes::from([batch(&[&big, b"a"]), batch(&[b"b"])].concat());
        for topic in [TopicCompression::Gzip, TopicCompression::Snappy, TopicCompression::Lz4, TopicCompression::Zstd] {
            let r = target(topic);
            let out = recompress_produce(plain.clone(), &r).expect("rebuilt");
            let headers: Vec<BatchHeader> = karst_batch::batches(&out).map(|b| b.expect("valid").1).collect();
            assert_eq!(headers.len(), 2, "{topic:?}");
            assert!(headers.iter().all(|h| h.compression() == r.codec), "{topic:?}");
            assert!(out.len() < plain.len(), "{topic:?} compresses");
            // And back: uncompressed gives the records as they were sent.
            let back = recompress_produce(out.clone(), &target(TopicCompression::Uncompressed)).expect("uncompressed");
            assert_eq!(back, plain, "{topic:?} round trip");
            let same = recompress_produce(out.clone(), &r).expect("kept");
            assert_eq!(same.as_ptr(), out.as_ptr(), "already in the topic's codec: no copy");
        }
    }

    #[test]
    fn rebuilt_batches_are_checked_against_max_message_bytes_and_bad_ones_refused() {
        let plain = Bytes::from(batch(&[b"value"]));
        let gz = recompress_produce(plain.clone(), &target(TopicCompression::Gzip)).expect("gzip");
        let tight = Recompression { max_message_bytes: gz.len() - 1, ..target(TopicCompression::Gzip) };
        assert_eq!(recompress_produce(plain.clone(), &tight).map_err(|e| e.error_code()), Err(error_codes::MESSAGE_TOO_LARGE));
        let mut corrupt = gz.to_vec();
        corrupt[HEADER_LEN + 2] ^= 0xff;
        let crc = crc32c::crc32c(&corrupt[21..]);
        corrupt[17..21].copy_from_slice(&crc.to_be_bytes());
        let code = recompress_produce(Bytes::from(corrupt), &target(TopicCompression::Zstd)).map_err(|e| e.error_code());
        assert_eq!(code, Err(error_codes::CORRUPT_MESSAGE), "an unreadable gzip payload");
        let bomb = Recompression { max_decompressed: 3, ..target(TopicCompression::Zstd) };
        assert_eq!(recompress_produce(gz, &bomb).map_err(|e| e.error_code()), Err(error_codes::CORRUPT_MESSAGE));
        assert!(recompress_produce(plain.slice(..plain.len() - 1), &target(TopicCompression::Zstd)).is_err());
    }
}
