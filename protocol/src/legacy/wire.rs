//! The classic (non-flexible) Kafka wire types, read and written with every
//! length checked: big-endian integers, strings with an i16 length (-1 = null),
//! bytes with an i32 length (-1 = null) and arrays with an i32 count.
//!
//! A declared length or count is compared with the bytes that are left before
//! anything is allocated for it, so a hostile four-byte count costs nothing.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use thiserror::Error;

/// Why a legacy body could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum WireError {
    #[error("{field}: needs {need} bytes, {left} left")]
    Truncated { field: &'static str, need: usize, left: usize },
    #[error("{field}: negative length {len}")]
    NegativeLength { field: &'static str, len: i32 },
    #[error("{field}: null where a value is required")]
    Null { field: &'static str },
    #[error("{field}: {count} elements cannot fit in the {left} bytes left")]
    CountTooLarge { field: &'static str, count: i32, left: usize },
    #[error("{field}: not UTF-8")]
    Utf8 { field: &'static str },
    #[error("{field}: {len} bytes or elements exceed what the wire type can carry")]
    TooLong { field: &'static str, len: usize },
    #[error("{field} cannot be carried by v{version}")]
    NotInVersion { field: &'static str, version: i16 },
    /// From kafka-protocol's codec, where a legacy version shares a newer one's layout.
    #[error("{0}")]
    Codec(String),
}

pub(crate) type Wire<T> = Result<T, WireError>;

/// Reads classic wire types off the front of a body.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    fn need(&self, field: &'static str, need: usize) -> Wire<()> {
        let left = self.buf.remaining();
        if left < need {
            return Err(WireError::Truncated { field, need, left });
        }
        Ok(())
    }

    pub(crate) fn i8(&mut self, field: &'static str) -> Wire<i8> {
        self.need(field, 1)?;
        Ok(self.buf.get_i8())
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Wire<i16> {
        self.need(field, 2)?;
        Ok(self.buf.get_i16())
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Wire<i32> {
        self.need(field, 4)?;
        Ok(self.buf.get_i32())
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Wire<i64> {
        self.need(field, 8)?;
        Ok(self.buf.get_i64())
    }

    /// A boolean: any non-zero byte is true, as Kafka reads it.
    pub(crate) fn bool(&mut self, field: &'static str) -> Wire<bool> {
        Ok(self.i8(field)? != 0)
    }

    fn take(&mut self, field: &'static str, len: usize) -> Wire<Bytes> {
        self.need(field, len)?;
        Ok(self.buf.split_to(len))
    }

    pub(crate) fn nullable_string(&mut self, field: &'static str) -> Wire<Option<StrBytes>> {
        let len = self.i16(field)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| WireError::NegativeLength { field, len: len.into() })?;
        let bytes = self.take(field, len)?;
        StrBytes::from_utf8(bytes).map(Some).map_err(|_| WireError::Utf8 { field })
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Wire<StrBytes> {
        self.nullable_string(field)?.ok_or(WireError::Null { field })
    }

    /// Bytes with an i32 length (record sets): handed out as a slice of the
    /// body, without copying.
    pub(crate) fn nullable_bytes(&mut self, field: &'static str) -> Wire<Option<Bytes>> {
        let len = self.i32(field)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| WireError::NegativeLength { field, len })?;
        self.take(field, len).map(Some)
    }

    /// The unread rest of the body, for a codec that continues from here.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// A nullable array (-1 = null); see [`Reader::array`].
    pub(crate) fn nullable_array<T>(
        &mut self,
        field: &'static str,
        min_size: usize,
        element: impl FnMut(&mut Self) -> Wire<T>,
    ) -> Wire<Option<Vec<T>>> {
        if self.buf.remaining() >= 4 && self.buf[..4] == [0xff; 4] {
            self.buf.advance(4);
            return Ok(None);
        }
        self.array(field, min_size, element).map(Some)
    }

    /// An array whose elements each take at least `min_size` bytes (at least 1).
    /// The count is checked against the bytes left before the vector is sized.
    pub(crate) fn array<T>(&mut self, field: &'static str, min_size: usize, mut element: impl FnMut(&mut Self) -> Wire<T>) -> Wire<Vec<T>> {
        let count = self.i32(field)?;
        if count == -1 {
            return Err(WireError::Null { field });
        }
        let n = usize::try_from(count).map_err(|_| WireError::NegativeLength { field, len: count })?;
        let left = self.buf.remaining();
        if n > left / min_size.max(1) {
            return Err(WireError::CountTooLarge { field, count, left });
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(element(self)?);
        }
        Ok(out)
    }
}

pub(crate) fn put_string(out: &mut BytesMut, field: &'static str, s: &str) -> Wire<()> {
    let len = i16::try_from(s.len()).map_err(|_| WireError::TooLong { field, len: s.len() })?;
    out.put_i16(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

pub(crate) fn put_nullable_string(out: &mut BytesMut, field: &'static str, s: Option<&str>) -> Wire<()> {
    match s {
        Some(s) => put_string(out, field, s),
        None => {
            out.put_i16(-1);
            Ok(())
        }
    }
}

pub(crate) fn put_nullable_bytes(out: &mut BytesMut, field: &'static str, b: Option<&[u8]>) -> Wire<()> {
    match b {
        Some(b) => {
            let len = i32::try_from(b.len()).map_err(|_| WireError::TooLong { field, len: b.len() })?;
            out.put_i32(len);
            out.put_slice(b);
        }
        None => out.put_i32(-1),
    }
    Ok(())
}

/// An array: its count, then each element as `element` writes it.
pub(crate) fn put_array<T>(
    out: &mut BytesMut,
    field: &'static str,
    items: &[T],
    mut element: impl FnMut(&mut BytesMut, &T) -> Wire<()>,
) -> Wire<()> {
    let count = i32::try_from(items.len()).map_err(|_| WireError::TooLong { field, len: items.len() })?;
    out.put_i32(count);
    items.iter().try_for_each(|item| element(out, item))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_beyond_the_bytes_left_is_refused_before_allocating() {
        // i32::MAX elements of 4 bytes declared, 8 bytes present.
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 2]));
        let e = r.array("xs", 4, |r| r.i32("x")).expect_err("refused");
        assert_eq!(e, WireError::CountTooLarge { field: "xs", count: i32::MAX, left: 8 });
        // Exactly as many as fit is fine.
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]));
        assert_eq!(r.array("xs", 4, |r| r.i32("x")), Ok(vec![1, 2]));
    }

    #[test]
    fn null_and_negative_lengths() {
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]));
        assert_eq!(r.array("xs", 1, |r| r.i8("x")), Err(WireError::Null { field: "xs" }));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xfe]));
        assert_eq!(r.nullable_string("s"), Err(WireError::NegativeLength { field: "s", len: -2 }));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff]));
        assert_eq!(r.string("s"), Err(WireError::Null { field: "s" }));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]));
        assert_eq!(r.nullable_bytes("b"), Err(WireError::NegativeLength { field: "b", len: -2 }));
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 1]));
        assert!(matches!(r.nullable_bytes("b"), Err(WireError::Truncated { .. })));
        let mut r = Reader::new(Bytes::from_static(&[0, 2, 0xc3, 0x28]));
        assert_eq!(r.string("s"), Err(WireError::Utf8 { field: "s" }));
    }

    #[test]
    fn over_long_values_are_refused_on_write() {
        let mut out = BytesMut::new();
        let long = "x".repeat(i16::MAX as usize + 1);
        assert!(matches!(put_string(&mut out, "s", &long), Err(WireError::TooLong { .. })));
        put_string(&mut out, "s", &long[..i16::MAX as usize]).expect("fits");
        assert_eq!(&out[..2], &i16::MAX.to_be_bytes());
    }
}
