//! One partition replica: its log behind a lock, its high watermark, and the
//! notification that wakes long-polling fetches and waiting producers.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use karst_storage::{AppendInfo, FlushTarget, Log, ReadSlice, StorageError};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::topic_config::TopicConfig;

/// A partition hosted by this broker.
#[derive(Debug)]
pub struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    pub dir: PathBuf,
    log: RwLock<Option<Log>>,
    config: Mutex<TopicConfig>,
    /// Offsets below the high watermark are visible to consumers and acknowledged
    /// to producers. With fsync-before-ack it trails the log end until fsynced.
    hw: watch::Sender<i64>,
    log_end: AtomicI64,
    log_start: AtomicI64,
    /// Set while the partition sits in the flusher's queue.
    pub(crate) flush_queued: AtomicBool,
    pub(crate) flushed: AtomicI64,
    /// File system (st_dev) of the partition directory: the flusher syncs partitions
    /// that share one together.
    pub(crate) device: u64,
}

/// Why a partition operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("partition is closed")]
    Closed,
}

impl Partition {
    pub(crate) fn open(topic: Arc<str>, index: i32, dir: PathBuf, config: TopicConfig) -> Result<Arc<Partition>, StorageError> {
        let log = Log::open(&dir, config.log.clone())?;
        let end = log.log_end_offset();
        let start = log.log_start_offset();
        let (hw, _) = watch::channel(end);
        let device = std::fs::metadata(&dir).map(|m| m.dev())?;
        Ok(Arc::new(Partition {
            topic,
            index,
            dir,
            log: RwLock::new(Some(log)),
            config: Mutex::new(config),
            hw,
            log_end: AtomicI64::new(end),
            log_start: AtomicI64::new(start),
            flush_queued: AtomicBool::new(false),
            flushed: AtomicI64::new(end),
            device,
        }))
    }

    pub fn config(&self) -> TopicConfig {
        self.config.lock().clone()
    }

    pub(crate) fn set_config(&self, config: TopicConfig) {
        if let Some(log) = self.log.write().as_mut() {
            log.set_config(config.log.clone());
        }
        *self.config.lock() = config;
    }

    pub fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log_end.load(Ordering::Acquire)
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// A receiver that sees every high-watermark advance (for long polls and acks).
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Raises the high watermark, never lowering it.
    pub(crate) fn advance_hw(&self, to: i64) {
        self.hw.send_if_modified(|hw| {
            if to > *hw {
                *hw = to;
                true
            } else {
                false
            }
        });
    }

    /// Appends validated batches; offsets are assigned in place.
    pub fn append(&self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, PartitionError> {
        let mut guard = self.log.write();
        let log = guard.as_mut().ok_or(PartitionError::Closed)?;
        let info = log.append(batches, 0, now_ms)?;
        self.log_end.store(log.log_end_offset(), Ordering::Release);
        self.log_start.store(log.log_start_offset(), Ordering::Release);
        Ok(info)
    }

    /// Reads whole batches visible below the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<ReadSlice, PartitionError> {
        let hw = self.high_watermark();
        let guard = self.log.read();
        let log = guard.as_ref().ok_or(PartitionError::Closed)?;
        if offset == hw {
            // Nothing visible yet; avoid touching the files.
            return Ok(ReadSlice { bytes: Bytes::new(), first_offset: offset });
        }
        if offset > hw && offset <= log.log_end_offset() {
            // Written but not yet durable: not an error, just nothing to see.
            return Ok(ReadSlice { bytes: Bytes::new(), first_offset: offset });
        }
        Ok(log.read(offset, max_bytes, hw, min_one)?)
    }

    pub fn find_batch_by_timestamp(&self, timestamp: i64) -> Result<Option<Bytes>, PartitionError> {
        let guard = self.log.read();
        let log = guard.as_ref().ok_or(PartitionError::Closed)?;
        Ok(log.find_batch_by_timestamp(timestamp)?)
    }

    pub fn delete_records(&self, before: i64) -> Result<i64, PartitionError> {
        let mut guard = self.log.write();
        let log = guard.as_mut().ok_or(PartitionError::Closed)?;
        let start = log.delete_records(before)?;
        self.log_start.store(start, Ordering::Release);
        Ok(start)
    }

    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, PartitionError> {
        let mut guard = self.log.write();
        let log = guard.as_mut().ok_or(PartitionError::Closed)?;
        let n = log.enforce_retention(now_ms)?;
        self.log_start.store(log.log_start_offset(), Ordering::Release);
        Ok(n)
    }

    pub fn size_bytes(&self) -> u64 {
        self.log.read().as_ref().map_or(0, |l| l.size_bytes())
    }

    /// What the flusher syncs outside the lock (None once the log is closed).
    pub(crate) fn flush_target(&self) -> Option<FlushTarget> {
        let guard = self.log.read();
        match guard.as_ref()?.flush_target() {
            Ok(target) => Some(target),
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "no file to flush");
                None
            }
        }
    }

    /// Closes the log cleanly (final fsync, clean-shutdown marker).
    pub fn close(&self) -> Result<(), PartitionError> {
        if let Some(log) = self.log.write().take() {
            log.close()?;
        }
        Ok(())
    }

    /// Closes and removes the partition's files.
    pub fn delete(&self) -> Result<(), PartitionError> {
        if let Some(log) = self.log.write().take() {
            log.delete()?;
        }
        Ok(())
    }
}
