//! openraft state machine over [`ClusterMetadata`], with snapshots on disk.
//!
//! The image itself lives in memory and is published through a `watch` channel
//! after every applied batch. Durability comes from snapshots: `snapshot.bin` in
//! the data dir (`u32 LE meta length | meta JSON | image JSON | u32 LE CRC-32 of
//! everything before`), replaced atomically. On start the image is loaded from the
//! snapshot and openraft re-applies the committed log after it.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::commands::{CommandOutcome, CommandResult};
use crate::fsutil::write_atomic;
use crate::log_store::Entry;
use crate::metadata::ClusterMetadata;
use crate::{NodeId, TypeConfig};

const SNAPSHOT_FILE: &str = "snapshot.bin";

type Meta = SnapshotMeta<NodeId, BasicNode>;

pub(crate) struct StateMachineStore {
    dir: PathBuf,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    metadata: ClusterMetadata,
    image_tx: watch::Sender<Arc<ClusterMetadata>>,
    /// Serializes snapshot file writes; holds the last log id persisted there.
    persisted: Arc<Mutex<Option<LogId<NodeId>>>>,
}

pub(crate) struct SnapshotBuilder {
    dir: PathBuf,
    meta: Meta,
    metadata: ClusterMetadata,
    persisted: Arc<Mutex<Option<LogId<NodeId>>>>,
}

fn snapshot_err(e: &io::Error) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::new(e)).into()
}

impl StateMachineStore {
    /// Load the last snapshot from `dir` (if any) and publish it on `image_tx`.
    pub(crate) fn open(dir: &Path, image_tx: watch::Sender<Arc<ClusterMetadata>>) -> io::Result<StateMachineStore> {
        let mut sm = StateMachineStore {
            dir: dir.to_path_buf(),
            last_applied: None,
            last_membership: StoredMembership::default(),
            metadata: ClusterMetadata::default(),
            image_tx,
            persisted: Arc::new(Mutex::new(None)),
        };
        if let Some((meta, data)) = read_snapshot(dir)? {
            sm.metadata = decode_image(&data).map_err(|e| corrupt(dir, e))?;
            sm.last_applied = meta.last_log_id;
            sm.last_membership = meta.last_membership;
            *sm.persisted.lock() = meta.last_log_id;
        }
        sm.image_tx.send_replace(Arc::new(sm.metadata.clone()));
        Ok(sm)
    }
}

fn corrupt(dir: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", dir.join(SNAPSHOT_FILE).display()))
}

fn decode_image(data: &[u8]) -> Result<ClusterMetadata, serde_json::Error> {
    serde_json::from_slice(data)
}

fn encode_snapshot(meta: &Meta, data: &[u8]) -> io::Result<Vec<u8>> {
    let meta_json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let meta_len = u32::try_from(meta_json.len()).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(8 + meta_json.len() + data.len());
    out.extend_from_slice(&meta_len.to_le_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// `(meta, image bytes)` of the persisted snapshot, if there is one.
fn read_snapshot(dir: &Path) -> io::Result<Option<(Meta, Vec<u8>)>> {
    let bytes = match std::fs::read(dir.join(SNAPSHOT_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() < 8 {
        return Err(corrupt(dir, "too short"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(corrupt(dir, "CRC mismatch"));
    }
    let meta_len = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
    let Some(meta_json) = body.get(4..4 + meta_len) else { return Err(corrupt(dir, "bad meta length")) };
    let meta: Meta = serde_json::from_slice(meta_json).map_err(|e| corrupt(dir, e))?;
    Ok(Some((meta, body[4 + meta_len..].to_vec())))
}

/// Persist unless a snapshot at least as new is already on disk.
fn persist_snapshot(dir: &Path, persisted: &Mutex<Option<LogId<NodeId>>>, meta: &Meta, data: &[u8]) -> io::Result<()> {
    let mut guard = persisted.lock();
    if guard.is_some() && *guard >= meta.last_log_id {
        return Ok(());
    }
    write_atomic(&dir.join(SNAPSHOT_FILE), &encode_snapshot(meta, data)?)?;
    *guard = meta.last_log_id;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let data = serde_json::to_vec(&self.metadata).map_err(|e| snapshot_err(&io::Error::other(e)))?;
        let (dir, persisted, meta) = (self.dir.clone(), self.persisted.clone(), self.meta.clone());
        let data = tokio::task::spawn_blocking(move || persist_snapshot(&dir, &persisted, &meta, &data).map(|()| data))
            .await
            .map_err(|e| snapshot_err(&io::Error::other(e)))?
            .map_err(|e| snapshot_err(&e))?;
        tracing::info!(last_log_id = ?self.meta.last_log_id, bytes = data.len(), "controller snapshot built");
        Ok(Snapshot { meta: self.meta.clone(), snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let r = match entry.payload {
                EntryPayload::Blank => Ok(CommandOutcome::Noop),
                EntryPayload::Normal(cmd) => {
                    let r = self.metadata.apply(&cmd);
                    if let Err(e) = &r {
                        tracing::debug!(log_id = %entry.log_id, error = %e, "metadata command rejected");
                    }
                    r
                }
                EntryPayload::Membership(m) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    Ok(CommandOutcome::Noop)
                }
            };
            results.push(r);
        }
        self.image_tx.send_replace(Arc::new(self.metadata.clone()));
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{nanos}", l.leader_id, l.index),
            None => format!("empty-{nanos}"),
        };
        SnapshotBuilder {
            dir: self.dir.clone(),
            meta: SnapshotMeta { last_log_id: self.last_applied, last_membership: self.last_membership.clone(), snapshot_id },
            metadata: self.metadata.clone(),
            persisted: self.persisted.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let metadata = decode_image(&data)
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))))?;
        let (dir, persisted, m) = (self.dir.clone(), self.persisted.clone(), meta.clone());
        tokio::task::spawn_blocking(move || persist_snapshot(&dir, &persisted, &m, &data))
            .await
            .map_err(|e| snapshot_err(&io::Error::other(e)))?
            .map_err(|e| snapshot_err(&e))?;
        tracing::info!(last_log_id = ?meta.last_log_id, "controller snapshot installed");
        self.metadata = metadata;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.image_tx.send_replace(Arc::new(self.metadata.clone()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let dir = self.dir.clone();
        let snap = tokio::task::spawn_blocking(move || read_snapshot(&dir))
            .await
            .map_err(|e| snapshot_err(&io::Error::other(e)))?
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(None, AnyError::new(&e))))?;
        Ok(snap.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Membership};

    use super::*;
    use crate::commands::MetadataCommand;

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload }
    }

    #[tokio::test]
    async fn apply_snapshot_reopen_install() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = watch::channel(Arc::new(ClusterMetadata::default()));
        let mut sm = StateMachineStore::open(dir.path(), tx).unwrap();
        let nodes: std::collections::BTreeMap<NodeId, BasicNode> = [(1u64, BasicNode { addr: "a:1".into() })].into();
        let membership = Membership::new(vec![[1u64].into()], nodes);
        let reg = MetadataCommand::RegisterBroker { broker_id: 1, incarnation_id: uuid::Uuid::from_u128(1), listeners: vec![], rack: None };
        let results = sm
            .apply(vec![
                entry(0, EntryPayload::Membership(membership)),
                entry(1, EntryPayload::Blank),
                entry(2, EntryPayload::Normal(reg.clone())),
                entry(3, EntryPayload::Normal(MetadataCommand::DeleteTopic { name: "x".into() })),
            ])
            .await
            .unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results[2], Ok(CommandOutcome::BrokerRegistered { broker_epoch: 0 }));
        assert!(results[3].is_err());
        assert!(rx.has_changed().unwrap());
        assert!(rx.borrow_and_update().broker(1).is_some());
        assert!(sm.get_current_snapshot().await.unwrap().is_none());

        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(3));
        let image = sm.metadata.clone();

        // Reopen: the image and applied state come back from the snapshot.
        let (tx2, rx2) = watch::channel(Arc::new(ClusterMetadata::default()));
        let mut sm2 = StateMachineStore::open(dir.path(), tx2).unwrap();
        assert_eq!(*rx2.borrow().clone(), image);
        let (applied, membership) = sm2.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(3));
        assert_eq!(membership.log_id().map(|l| l.index), Some(0));
        let current = sm2.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id, snap.meta.last_log_id);

        // Install that snapshot on a fresh machine.
        let other = tempfile::tempdir().unwrap();
        let (tx3, rx3) = watch::channel(Arc::new(ClusterMetadata::default()));
        let mut sm3 = StateMachineStore::open(other.path(), tx3).unwrap();
        let mut buf = sm3.begin_receiving_snapshot().await.unwrap();
        buf.get_mut().extend_from_slice(current.snapshot.get_ref());
        sm3.install_snapshot(&current.meta, buf).await.unwrap();
        assert_eq!(*rx3.borrow().clone(), image);
        assert_eq!(sm3.applied_state().await.unwrap().0.map(|l| l.index), Some(3));
        assert!(other.path().join(SNAPSHOT_FILE).exists());
    }

    #[test]
    fn corrupt_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SNAPSHOT_FILE), b"garbage-garbage").unwrap();
        let (tx, _rx) = watch::channel(Arc::new(ClusterMetadata::default()));
        assert!(StateMachineStore::open(dir.path(), tx).is_err());
    }
}
