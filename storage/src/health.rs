//! Whether a log may still be written and reported durable.
//!
//! After a failed fsync the kernel may already have dropped the dirty pages it could
//! not write, and a later fsync of the same file can report success for data that is
//! not on disk (PostgreSQL's "fsyncgate"). So the first failed write or fsync marks
//! the log failed for good, as Kafka takes a log directory offline: nothing after it
//! is appended, synced or acknowledged, and the next open recovers from what the disk
//! really holds.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::faults::{self, Point};
use crate::{StorageError, StorageResult};

#[derive(Debug, Default)]
pub(crate) struct Health {
    failed: OnceLock<String>,
    /// Held across each fsync and the failure check before it, so no fsync starts
    /// on a log whose earlier fsync failed (a second one could report success).
    sync: Mutex<()>,
}

impl Health {
    /// Records the first failure; later ones keep the first reason.
    pub(crate) fn fail(&self, why: impl std::fmt::Display) {
        if self.failed.set(why.to_string()).is_ok() {
            tracing::error!(reason = %why, "log failed: it takes no more writes until the broker restarts");
        }
    }

    pub(crate) fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// `Err(Failed)` once the log has failed.
    pub(crate) fn check(&self) -> StorageResult<()> {
        match self.failure() {
            Some(why) => Err(StorageError::Failed(why.to_string())),
            None => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.sync.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a group-commit flusher syncs outside the log's lock.
#[derive(Debug, Clone)]
pub struct FlushTarget {
    /// The active segment file.
    pub file: Arc<File>,
    /// Log end offset at the moment the target was taken: once `file` is synced,
    /// every offset below this is durable.
    pub log_end_offset: i64,
    pub(crate) path: PathBuf,
    pub(crate) health: Arc<Health>,
}

impl FlushTarget {
    /// fdatasync of the active segment. A failure fails the log for good.
    pub fn sync(&self) -> io::Result<()> {
        sync_together(&[self], |f| f.sync_data())
    }

    /// Why the log this target belongs to failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.health.failure().map(str::to_string)
    }
}

/// Makes every target durable with the one call `sync` (given the first target's
/// file: e.g. syncfs(2) of the file system they share). Refused without syncing when
/// one of their logs has already failed; when `sync` fails, every one of their logs
/// fails, since any of them may have lost pages.
pub fn sync_together(targets: &[&FlushTarget], sync: impl FnOnce(&File) -> io::Result<()>) -> io::Result<()> {
    let Some(first) = targets.first() else { return Ok(()) };
    let mut healths: Vec<&Arc<Health>> = targets.iter().map(|t| &t.health).collect();
    // One lock order for every caller: by address.
    healths.sort_by_key(|h| Arc::as_ptr(h) as usize);
    healths.dedup_by_key(|h| Arc::as_ptr(h) as usize);
    let _guards: Vec<MutexGuard<'_, ()>> = healths.iter().map(|h| h.lock()).collect();
    if let Some(why) = healths.iter().find_map(|h| h.failure()) {
        return Err(io::Error::other(format!("not synced: a log of this group failed earlier ({why})")));
    }
    let synced = targets.iter().try_for_each(|t| faults::check(Point::Fsync, &t.path)).and_then(|()| sync(&first.file));
    if let Err(e) = &synced {
        for h in &healths {
            h.fail(format_args!("fsync failed: {e}"));
        }
    }
    synced
}
