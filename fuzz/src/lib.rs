//! Helpers shared by the fuzz targets and the seed-corpus generator.
//!
//! Inputs are cut into pieces with [`Pieces`] (u16 length prefixes), so one fuzz
//! input can describe several files or several fields. Record batches carry a
//! CRC-32C that random mutation almost never gets right; [`fix_crcs`] recomputes
//! them so that mutated batches also reach the code behind the CRC check.

/// Splits an input into length-prefixed pieces; short input yields short pieces.
pub struct Pieces<'a>(pub &'a [u8]);

impl<'a> Pieces<'a> {
    /// One byte (0 once the input is exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// A piece of up to 65535 bytes, preceded by its big-endian u16 length.
    pub fn piece(&mut self) -> &'a [u8] {
        let len = (usize::from(self.byte()) << 8) | usize::from(self.byte());
        let len = len.min(self.0.len());
        let (piece, rest) = self.0.split_at(len);
        self.0 = rest;
        piece
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// Appends `piece` to `out` in the form [`Pieces::piece`] reads.
pub fn put_piece(out: &mut Vec<u8>, piece: &[u8]) {
    let len = u16::try_from(piece.len()).expect("seed pieces are small");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(piece);
}

/// Recomputes the CRC of every whole v2 batch laid end to end in `buf`, stopping
/// at the first length that does not fit.
pub fn fix_crcs(buf: &mut [u8]) {
    let mut pos = 0usize;
    while let Some(len) = buf.get(pos + 8..pos + 12) {
        let Ok(len) = usize::try_from(i32::from_be_bytes([len[0], len[1], len[2], len[3]])) else {
            return;
        };
        let end = pos + 12 + len;
        if len < 9 || end > buf.len() {
            return;
        }
        let crc = crc32c::crc32c(&buf[pos + 21..end]);
        buf[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

/// A temp directory on a memory file system where there is one: the storage
/// targets create, fsync and delete files for every input.
pub fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let made = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
    made.expect("a temp dir for the fuzz input")
}
