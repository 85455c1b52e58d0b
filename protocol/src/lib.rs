//! The Kafka wire protocol as Karst speaks it. No I/O: bytes in, values out.

pub mod api_versions;
pub mod codec;
pub mod compression;
pub mod error_codes;
pub mod fetch_frames;
pub mod framing;
pub mod legacy;
pub mod message_set;
pub mod recompress;
pub mod records;
pub mod timestamps;

pub use kafka_protocol;
pub use karst_batch as batch;
