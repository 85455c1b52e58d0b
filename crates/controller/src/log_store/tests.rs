use std::collections::BTreeMap;

use openraft::{CommittedLeaderId, EntryPayload};

use super::*;
use crate::commands::MetadataCommand;

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(MetadataCommand::DeleteTopic { name: format!("t{index}") }),
    }
}

fn entries(term: u64, range: std::ops::Range<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

fn indexes(cache: &BTreeMap<u64, Entry>) -> Vec<u64> {
    cache.keys().copied().collect()
}

fn last_segment_path(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join(LOG_DIR)).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.pop().unwrap()
}

#[test]
fn append_reopen_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut d, cache) = LogDisk::open(dir.path(), 1 << 20).unwrap();
        assert!(cache.is_empty());
        d.append(&entries(1, 0..3)).unwrap();
        d.append(&entries(2, 3..5)).unwrap();
        d.save_vote(Vote::new(2, 1)).unwrap();
        d.save_committed(Some(LogId::new(CommittedLeaderId::new(2, 1), 4))).unwrap();
    }
    let (d, cache) = LogDisk::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(indexes(&cache), vec![0, 1, 2, 3, 4]);
    assert_eq!(cache[&4], entry(2, 4));
    assert_eq!(d.vote, Some(Vote::new(2, 1)));
    assert_eq!(d.committed.map(|c| c.index), Some(4));
}

#[test]
fn refuses_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, _) = LogDisk::open(dir.path(), 1 << 20).unwrap();
    d.append(&entries(1, 0..2)).unwrap();
    assert!(d.append(&entries(1, 3..4)).is_err());
}

#[test]
fn torn_tail_is_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut d, _) = LogDisk::open(dir.path(), 1 << 20).unwrap();
        d.append(&entries(1, 0..5)).unwrap();
    }
    let seg = last_segment_path(dir.path());
    let good_len = fs::metadata(&seg).unwrap().len();
    // A crash mid-append: a frame header promising more bytes than were written.
    let mut frame = Vec::new();
    encode(&entry(1, 5), &mut frame).unwrap();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&frame[..frame.len() / 2]).unwrap();
    drop(f);

    let (mut d, cache) = LogDisk::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(indexes(&cache), vec![0, 1, 2, 3, 4]);
    assert_eq!(fs::metadata(&seg).unwrap().len(), good_len, "torn bytes are cut off");
    d.append(&entries(1, 5..7)).unwrap();
    drop(d);
    let (_, cache) = LogDisk::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(indexes(&cache), (0..7).collect::<Vec<_>>());
}

#[test]
fn corrupt_last_frame_is_truncated_but_corrupt_older_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut d, _) = LogDisk::open(dir.path(), 1).unwrap(); // one entry per segment
        d.append(&entries(1, 0..4)).unwrap();
        assert_eq!(d.segment_bases(), vec![0, 1, 2, 3]);
    }
    // Flip a payload byte of the last segment's only frame: CRC mismatch -> dropped.
    let seg = last_segment_path(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0xff;
    fs::write(&seg, &bytes).unwrap();
    let (_, cache) = LogDisk::open(dir.path(), 1).unwrap();
    assert_eq!(indexes(&cache), vec![0, 1, 2]);

    // Damage in a segment that is not the last cannot be a torn write.
    let first = segment_path(&dir.path().join(LOG_DIR), 0);
    let mut bytes = fs::read(&first).unwrap();
    bytes[10] ^= 0xff;
    fs::write(&first, &bytes).unwrap();
    let err = LogDisk::open(dir.path(), 1).err().expect("corruption must be refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn truncate_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut d, _) = LogDisk::open(dir.path(), 200).unwrap();
        d.append(&entries(1, 0..20)).unwrap();
        assert!(d.segment_bases().len() > 3, "{:?}", d.segment_bases());
        d.truncate(7).unwrap();
        d.append(&entries(3, 7..9)).unwrap();
    }
    let (d, cache) = LogDisk::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&cache), (0..9).collect::<Vec<_>>());
    assert_eq!(cache[&8].log_id.leader_id.term, 3);
    assert_eq!(cache[&6].log_id.leader_id.term, 1);
    assert!(d.segment_bases().iter().all(|b| *b <= 8));
    drop(d);
    // Truncate everything.
    let (mut d, _) = LogDisk::open(dir.path(), 200).unwrap();
    d.truncate(0).unwrap();
    d.append(&entries(4, 0..1)).unwrap();
    drop(d);
    let (_, cache) = LogDisk::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&cache), vec![0]);
}

#[test]
fn purge_deletes_old_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut d, _) = LogDisk::open(dir.path(), 200).unwrap();
        d.append(&entries(1, 0..30)).unwrap();
        let before = d.segment_bases();
        d.purge(LogId::new(CommittedLeaderId::new(1, 1), 20)).unwrap();
        let after = d.segment_bases();
        assert!(after.len() < before.len(), "{before:?} -> {after:?}");
        assert!(after[0] <= 21);
    }
    let (mut d, cache) = LogDisk::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&cache), (21..30).collect::<Vec<_>>());
    assert_eq!(d.purged.map(|p| p.index), Some(20));
    // Purge past the end (a snapshot was installed), then continue after it.
    d.purge(LogId::new(CommittedLeaderId::new(2, 1), 100)).unwrap();
    assert!(d.segment_bases().is_empty());
    d.append(&entries(2, 101..103)).unwrap();
    drop(d);
    let (_, cache) = LogDisk::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&cache), vec![101, 102]);
}

#[test]
fn committed_beyond_the_log_is_clamped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut d, _) = LogDisk::open(dir.path(), 1 << 20).unwrap();
        d.append(&entries(1, 0..3)).unwrap();
        d.save_committed(Some(LogId::new(CommittedLeaderId::new(1, 1), 9))).unwrap();
    }
    let (d, _) = LogDisk::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(d.committed.map(|c| c.index), Some(2));
}

#[tokio::test]
async fn store_state_and_reader_follow_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut d, _) = LogDisk::open(dir.path(), 1 << 20).unwrap();
        d.append(&entries(1, 0..6)).unwrap();
    }
    let mut store = LogStore::open(dir.path(), 1 << 20).unwrap();
    let st = store.get_log_state().await.unwrap();
    assert_eq!(st.last_log_id.map(|l| l.index), Some(5));
    assert_eq!(st.last_purged_log_id, None);
    store.truncate(LogId::new(CommittedLeaderId::new(1, 1), 4)).await.unwrap();
    store.purge(LogId::new(CommittedLeaderId::new(1, 1), 1)).await.unwrap();
    let mut reader = store.get_log_reader().await;
    let got: Vec<u64> = reader.try_get_log_entries(0..10).await.unwrap().iter().map(|e| e.log_id.index).collect();
    assert_eq!(got, vec![2, 3]);
    let st = store.get_log_state().await.unwrap();
    assert_eq!((st.last_purged_log_id.map(|l| l.index), st.last_log_id.map(|l| l.index)), (Some(1), Some(3)));
    assert!(!store.disk().segment_bases().is_empty());
}
