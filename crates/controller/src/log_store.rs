//! The Raft log and vote on disk.
//!
//! Layout under the controller data dir:
//! - `log/<first index, 20 digits>.log`: segments of frames
//!   `len: u32 LE | crc32: u32 LE (of payload) | payload (JSON of one entry)`;
//!   a new segment starts when the active one passes `segment_bytes`.
//! - `vote.json`, `committed.json`, `purged.json`: replaced atomically (temp file,
//!   fsync, rename, fsync dir).
//!
//! Every write is durable before the storage call returns (openraft's rule: a vote
//! or an appended entry that is acknowledged must survive a crash). On open a torn
//! or corrupt tail of the last segment (a crash mid-append) is truncated; damage
//! anywhere else is an error. Entries are also kept in memory — the log is purged
//! after each snapshot, so it stays small.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogId, LogState, RaftLogId, RaftLogReader, StorageError, StorageIOError, Vote};
use parking_lot::{Mutex, RwLock};

use crate::fsutil::{read_json, sync_dir, write_json_atomic};
use crate::{NodeId, TypeConfig};

pub(crate) type Entry = openraft::Entry<TypeConfig>;

const FRAME_HEADER: usize = 8;
/// Refuse frames larger than this on read (a corrupt length must not allocate wildly).
const MAX_FRAME: usize = 256 << 20;
const LOG_DIR: &str = "log";
const VOTE_FILE: &str = "vote.json";
const COMMITTED_FILE: &str = "committed.json";
const PURGED_FILE: &str = "purged.json";

/// openraft's log storage over [`LogDisk`], with an in-memory copy for readers.
#[derive(Clone)]
pub(crate) struct LogStore {
    disk: Arc<Mutex<LogDisk>>,
    cache: Arc<RwLock<BTreeMap<u64, Entry>>>,
}

/// Reader handed to replication tasks; sees only the in-memory copy.
#[derive(Clone)]
pub(crate) struct LogReader {
    cache: Arc<RwLock<BTreeMap<u64, Entry>>>,
}

impl LogStore {
    /// Open (or create) the log under `data_dir`, recovering from a torn tail.
    pub(crate) fn open(data_dir: &Path, segment_bytes: u64) -> io::Result<LogStore> {
        let (disk, entries) = LogDisk::open(data_dir, segment_bytes)?;
        Ok(LogStore { disk: Arc::new(Mutex::new(disk)), cache: Arc::new(RwLock::new(entries)) })
    }

    /// Run blocking disk work off the async runtime; callers are serialized by openraft.
    async fn with_disk<T: Send + 'static>(&self, f: impl FnOnce(&mut LogDisk) -> io::Result<T> + Send + 'static) -> io::Result<T> {
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || f(&mut disk.lock())).await.map_err(io::Error::other)?
    }

    #[cfg(test)]
    pub(crate) fn disk(&self) -> parking_lot::MutexGuard<'_, LogDisk> {
        self.disk.lock()
    }
}

fn write_err(e: io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        Ok(self.cache.read().range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        Ok(self.cache.read().range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id = self.disk.lock().purged;
        let last = self.cache.read().last_key_value().map(|(_, e)| *e.get_log_id());
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader { cache: self.cache.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.with_disk(move |d| d.save_vote(vote)).await.map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.disk.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        self.with_disk(move |d| d.save_committed(committed)).await.map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.disk.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let res = self.with_disk(move |d| d.append(&entries).map(|()| entries)).await;
        match res {
            Ok(entries) => {
                let mut cache = self.cache.write();
                for e in entries {
                    cache.insert(e.get_log_id().index, e);
                }
                drop(cache);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let index = log_id.index;
        self.with_disk(move |d| d.truncate(index)).await.map_err(write_err)?;
        self.cache.write().split_off(&index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.with_disk(move |d| d.purge(log_id)).await.map_err(write_err)?;
        let mut cache = self.cache.write();
        let keep = cache.split_off(&(log_id.index + 1));
        *cache = keep;
        Ok(())
    }
}

/// One segment file; entries `base..=last`.
#[derive(Debug)]
struct Segment {
    base: u64,
    last: Option<u64>,
    len: u64,
}

/// The files; methods are blocking and each is durable when it returns.
pub(crate) struct LogDisk {
    dir: PathBuf,
    log_dir: PathBuf,
    segments: Vec<Segment>,
    /// The last segment, open for appending.
    active: Option<File>,
    /// index -> (segment base, byte position of its frame), for truncation.
    positions: BTreeMap<u64, (u64, u64)>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    purged: Option<LogId<NodeId>>,
    segment_bytes: u64,
}

fn segment_path(log_dir: &Path, base: u64) -> PathBuf {
    log_dir.join(format!("{base:020}.log"))
}

fn corrupt(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", path.display()))
}

/// Encode one entry as a frame.
fn encode(entry: &Entry, out: &mut Vec<u8>) -> io::Result<()> {
    let payload = serde_json::to_vec(entry).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("log entry larger than 4 GiB"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Result of decoding frames from a segment's bytes.
struct Scan {
    entries: Vec<(u64, Entry)>,
    /// Length of the valid prefix.
    valid_len: u64,
    /// Why the rest (if any) is invalid.
    tail_error: Option<String>,
}

fn scan(bytes: &[u8]) -> Scan {
    let mut pos = 0usize;
    let mut entries = Vec::new();
    let tail_error = loop {
        let rest = &bytes[pos..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < FRAME_HEADER {
            break Some(format!("incomplete frame header at byte {pos}"));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_FRAME {
            break Some(format!("frame length {len} at byte {pos} is implausible"));
        }
        if rest.len() < FRAME_HEADER + len {
            break Some(format!("incomplete frame at byte {pos}"));
        }
        let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
        if crc32fast::hash(payload) != crc {
            break Some(format!("CRC mismatch in frame at byte {pos}"));
        }
        match serde_json::from_slice::<Entry>(payload) {
            Ok(e) => entries.push((pos as u64, e)),
            Err(e) => break Some(format!("undecodable entry at byte {pos}: {e}")),
        }
        pos += FRAME_HEADER + len;
    };
    Scan { entries, valid_len: pos as u64, tail_error }
}

impl LogDisk {
    fn open(data_dir: &Path, segment_bytes: u64) -> io::Result<(LogDisk, BTreeMap<u64, Entry>)> {
        let log_dir = data_dir.join(LOG_DIR);
        fs::create_dir_all(&log_dir)?;
        let vote = read_json(&data_dir.join(VOTE_FILE))?;
        let mut committed: Option<LogId<NodeId>> = read_json(&data_dir.join(COMMITTED_FILE))?;
        let purged: Option<LogId<NodeId>> = read_json(&data_dir.join(PURGED_FILE))?;

        let mut bases = Vec::new();
        for de in fs::read_dir(&log_dir)? {
            let name = de?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".log") {
                if stem.len() == 20 {
                    if let Ok(base) = stem.parse::<u64>() {
                        bases.push(base);
                    }
                }
            }
        }
        bases.sort_unstable();

        let mut segments = Vec::new();
        let mut positions = BTreeMap::new();
        let mut cache = BTreeMap::new();
        let mut prev_last: Option<u64> = None;
        let count = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let path = segment_path(&log_dir, base);
            let bytes = fs::read(&path)?;
            let s = scan(&bytes);
            if let Some(why) = &s.tail_error {
                if i + 1 < count {
                    return Err(corrupt(&path, why));
                }
                tracing::warn!(segment = %path.display(), reason = %why, keep_bytes = s.valid_len, "truncating torn controller log tail");
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(s.valid_len)?;
                f.sync_all()?;
            }
            if let Some(p) = prev_last {
                if base != p + 1 {
                    return Err(corrupt(&path, format!("segment starts at {base}, previous ended at {p}")));
                }
            }
            let mut expected = base;
            for (pos, e) in s.entries {
                let index = e.get_log_id().index;
                if index != expected {
                    return Err(corrupt(&path, format!("entry at byte {pos} has index {index}, expected {expected}")));
                }
                expected += 1;
                if purged.is_some_and(|p: LogId<NodeId>| index <= p.index) {
                    continue;
                }
                positions.insert(index, (base, pos));
                cache.insert(index, e);
            }
            let last = expected.checked_sub(1).filter(|l| *l >= base);
            if last.is_some() {
                prev_last = last;
            }
            segments.push(Segment { base, last, len: s.valid_len });
        }

        // A committed id beyond the recovered log would ask openraft to apply
        // entries that are gone; only what is on disk can be re-applied.
        let last_log_id = cache.values().next_back().map(|e: &Entry| *e.get_log_id()).or(purged);
        if committed.is_some() && committed.map(|c| c.index) > last_log_id.map(|l| l.index) {
            tracing::warn!(?committed, ?last_log_id, "committed index beyond the recovered log; clamping");
            committed = last_log_id;
        }

        let active = match segments.last() {
            Some(s) => Some(OpenOptions::new().append(true).open(segment_path(&log_dir, s.base))?),
            None => None,
        };
        let mut disk = LogDisk {
            dir: data_dir.to_path_buf(),
            log_dir,
            segments,
            active,
            positions,
            vote,
            committed,
            purged,
            segment_bytes: segment_bytes.max(1),
        };
        // A crash between recording a purge point and deleting files leaves
        // segments that hold only purged entries.
        if let Some(p) = purged {
            disk.drop_segments_upto(p.index)?;
        }
        Ok((disk, cache))
    }

    fn save_vote(&mut self, vote: Vote<NodeId>) -> io::Result<()> {
        write_json_atomic(&self.dir.join(VOTE_FILE), &vote)?;
        self.vote = Some(vote);
        Ok(())
    }

    fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> io::Result<()> {
        write_json_atomic(&self.dir.join(COMMITTED_FILE), &committed)?;
        self.committed = committed;
        Ok(())
    }

    fn next_index(&self) -> Option<u64> {
        self.segments.last().map(|s| s.last.map_or(s.base, |l| l + 1))
    }

    /// Append and fsync; rolls to a new segment when the active one is full.
    fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut pending: Vec<(u64, u64)> = Vec::new(); // (index, position)
        for e in entries {
            let index = e.get_log_id().index;
            if let Some(next) = self.next_index() {
                if index != next {
                    return Err(io::Error::other(format!("log append at index {index}, expected {next}")));
                }
            }
            let full = self.segments.last().is_some_and(|s| s.len > 0 && s.len >= self.segment_bytes);
            if self.active.is_none() || full {
                self.flush_pending(&mut buf, &mut pending)?;
                self.roll(index)?;
            }
            let Some(seg) = self.segments.last_mut() else { return Err(io::Error::other("no active segment")) };
            let pos = seg.len;
            let before = buf.len();
            encode(e, &mut buf)?;
            seg.len += (buf.len() - before) as u64;
            seg.last = Some(index);
            pending.push((index, pos));
        }
        self.flush_pending(&mut buf, &mut pending)
    }

    /// Write `buf` to the active segment and fsync it, then record positions.
    fn flush_pending(&mut self, buf: &mut Vec<u8>, pending: &mut Vec<(u64, u64)>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let (Some(f), Some(seg)) = (self.active.as_mut(), self.segments.last()) else {
            return Err(io::Error::other("no active segment"));
        };
        f.write_all(buf)?;
        f.sync_data()?;
        for (index, pos) in pending.drain(..) {
            self.positions.insert(index, (seg.base, pos));
        }
        buf.clear();
        Ok(())
    }

    fn roll(&mut self, base: u64) -> io::Result<()> {
        let path = segment_path(&self.log_dir, base);
        let f = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
        f.sync_all()?;
        sync_dir(&self.log_dir)?;
        drop(f);
        self.active = Some(OpenOptions::new().append(true).open(&path)?);
        self.segments.push(Segment { base, last: None, len: 0 });
        Ok(())
    }

    /// Remove entries `index..`.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let mut deleted = false;
        while self.segments.last().is_some_and(|s| s.base >= index) {
            if let Some(s) = self.segments.pop() {
                self.active = None;
                fs::remove_file(segment_path(&self.log_dir, s.base))?;
                deleted = true;
            }
        }
        if let Some(&(base, pos)) = self.positions.get(&index) {
            if let Some(seg) = self.segments.iter_mut().find(|s| s.base == base) {
                let f = OpenOptions::new().write(true).open(segment_path(&self.log_dir, base))?;
                f.set_len(pos)?;
                f.sync_all()?;
                seg.len = pos;
                seg.last = index.checked_sub(1).filter(|l| *l >= base);
            }
        }
        if deleted {
            sync_dir(&self.log_dir)?;
        }
        self.positions.split_off(&index);
        if self.active.is_none() {
            if let Some(s) = self.segments.last() {
                self.active = Some(OpenOptions::new().append(true).open(segment_path(&self.log_dir, s.base))?);
            }
        }
        Ok(())
    }

    /// Forget entries `..=log_id.index`: record the purge point durably, then
    /// delete segments that hold nothing newer.
    fn purge(&mut self, log_id: LogId<NodeId>) -> io::Result<()> {
        write_json_atomic(&self.dir.join(PURGED_FILE), &log_id)?;
        self.purged = Some(log_id);
        let keep = self.positions.split_off(&(log_id.index + 1));
        self.positions = keep;
        self.drop_segments_upto(log_id.index)
    }

    /// Delete the leading segments whose entries are all `<= index` (all of them
    /// when the purge point is past the end, e.g. after installing a snapshot).
    fn drop_segments_upto(&mut self, index: u64) -> io::Result<()> {
        let mut deleted = false;
        while self.segments.first().is_some_and(|s| s.last.map_or(s.base <= index, |l| l <= index)) {
            let s = self.segments.remove(0);
            if self.segments.is_empty() {
                self.active = None;
            }
            fs::remove_file(segment_path(&self.log_dir, s.base))?;
            deleted = true;
        }
        if deleted {
            sync_dir(&self.log_dir)?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn segment_bases(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.base).collect()
    }
}

#[cfg(test)]
mod tests;
