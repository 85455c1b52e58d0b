//! The one module that memory-maps files; the only `unsafe` in the crate.
//!
//! Two kinds of mapping exist:
//! - a writable mapping of an active segment's preallocated index file, and
//! - read-only mappings of index files and of `.log` files (for zero-copy reads).
//!
//! # Soundness
//!
//! A mapping is sound while no one changes the mapped bytes behind Rust's back and
//! the file is not shortened below the mapped length (touching a page past the end of
//! the file raises SIGBUS). This crate keeps both promises:
//! - every file in a partition directory is owned by this process (one `Log` per
//!   directory); other processes are not expected to write or truncate them;
//! - bytes of a `.log` file are never rewritten once written: appends go past the
//!   end, and mappings cover only bytes already written;
//! - a `.log` file that may be mapped is never shortened or rewritten in place:
//!   follower truncation and the recovery of a torn tail copy the kept prefix to a
//!   new file and rename it over the old one (`files::replace_with_prefix`), and a
//!   new segment unlinks a stale file of its name, so every mapping (including
//!   those owned by `Bytes` handed out earlier) keeps the old inode unchanged;
//! - the only in-place truncations are index trimming on roll/close, while no
//!   mapping of that index exists (the writable mapping is dropped first), and
//!   undoing a failed append, which cuts back to the logical size, never below a
//!   mapped length;
//! - a mapped file may be unlinked (retention, `delete`): the mapping keeps the inode
//!   alive, so `Bytes` handed to readers stay valid.
//!
//! Whoever adds another way to shrink or rewrite a segment file (e.g. compaction)
//! must keep to this: write the new contents to a new file and rename it over the
//! old one, or delete whole segments.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{Advice, Mmap, MmapMut, MmapOptions};

fn check_len(file: &File, len: usize) -> io::Result<()> {
    let file_len = file.metadata()?.len();
    if (len as u64) > file_len {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("refusing to map {len} bytes of a {file_len}-byte file")));
    }
    Ok(())
}

/// Maps the first `len` bytes of `file` read-only (`len` must not exceed the file).
pub(crate) fn map_read(file: &File, len: usize) -> io::Result<Mmap> {
    check_len(file, len)?;
    // SAFETY: the mapping covers only bytes that exist in the file (checked above),
    // the file belongs to this process's log directory and its mapped bytes are never
    // modified or truncated while the mapping lives (see the module documentation).
    unsafe { MmapOptions::new().len(len).map(file) }
}

/// Maps the first `len` bytes of `file` read-write (`len` must not exceed the file).
pub(crate) fn map_write(file: &File, len: usize) -> io::Result<MmapMut> {
    check_len(file, len)?;
    // SAFETY: used only for an active segment's index file, which this process owns
    // and writes only through this mapping; the file is trimmed only after the
    // mapping has been flushed and dropped (see `IndexFile::freeze`).
    let map = unsafe { MmapOptions::new().len(len).map_mut(file)? };
    // Index entries are written one page at a time, far apart in thousands of
    // files: without this each first touch of a page reads ahead (allocates and
    // zeroes) a window of the preallocated file's holes, which made closing
    // 10,000 partitions take 13 s of kernel time.
    map.advise(Advice::Random)?;
    Ok(map)
}
