//! Request decoding as the broker's connection loop does it: frames taken off a
//! byte stream (`framing::take_frame`), each decoded into header and body
//! (`codec::decode_request`, with the legacy codecs), and the record batches of a
//! Produce validated as its handler does. Any panic is a bug; errors are expected.
#![no_main]

use bytes::BytesMut;
use karst_protocol::codec::decode_request;
use karst_protocol::framing::take_frame;
use karst_protocol::kafka_protocol::messages::RequestKind;
use karst_protocol::records::validate_produce;
use libfuzzer_sys::fuzz_target;

/// Small, so the size check is exercised; seeds are far below it.
const MAX_FRAME: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // The first byte splits the stream in two reads, as TCP may deliver it.
    let Some((&split, stream)) = data.split_first() else { return };
    let cut = usize::from(split).min(stream.len());
    let mut buf = BytesMut::from(&stream[..cut]);
    let mut rest = &stream[cut..];
    for _ in 0..1000 {
        let frame = match take_frame(&mut buf, MAX_FRAME) {
            Ok(Some(frame)) => frame,
            Ok(None) if !rest.is_empty() => {
                buf.extend_from_slice(rest);
                rest = &[];
                continue;
            }
            Ok(None) | Err(_) => return,
        };
        let Ok(request) = decode_request(frame) else { return };
        if let RequestKind::Produce(produce) = request.body {
            for topic in &produce.topic_data {
                for partition in &topic.partition_data {
                    let records = partition.records.as_deref().unwrap_or_default();
                    let _ = validate_produce(records, MAX_FRAME);
                }
            }
        }
    }
});
