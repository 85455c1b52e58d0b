//! The leader epoch cache: which leader epoch began at which offset, in Kafka's
//! `leader-epoch-checkpoint` file format. A follower asks its leader, with
//! OffsetForLeaderEpoch, where its own latest epoch ended on the leader, and
//! truncates exactly there rather than at its high watermark.
//!
//! ```text
//! 0            format version
//! 2            number of entries
//! 0 0          epoch, start offset
//! 3 120
//! ```
use std::io;
use std::path::Path;

use crate::files::write_atomic;

pub(crate) const FILE: &str = "leader-epoch-checkpoint";

/// `(epoch, start offset)` entries, both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    entries: Vec<(i32, i64)>,
}

/// Kafka's answer for an epoch older than any known: UNDEFINED_EPOCH / UNDEFINED_OFFSET.
pub const UNDEFINED_EPOCH_END: (i32, i64) = (-1, -1);

impl LeaderEpochs {
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `start`. Older or equal epochs are ignored;
    /// entries starting at or after `start` (left by an unclean history) give way.
    /// Returns true when the cache changed.
    pub fn assign(&mut self, epoch: i32, start: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|e| e >= epoch) {
            return false;
        }
        self.entries.retain(|(_, s)| *s < start);
        self.entries.push((epoch, start));
        true
    }

    /// OffsetForLeaderEpoch: the largest known epoch <= `epoch` and the offset where
    /// it ended (the start of the next epoch, or `log_end` for the latest).
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> (i32, i64) {
        match self.entries.iter().rposition(|(e, _)| *e <= epoch) {
            None => UNDEFINED_EPOCH_END,
            Some(i) => match self.entries.get(i + 1) {
                Some((_, next_start)) => (self.entries[i].0, *next_start),
                None => (self.entries[i].0, log_end),
            },
        }
    }

    /// After the log was truncated to end at `end`: epochs starting there or later go.
    pub fn truncate_from_end(&mut self, end: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(_, s)| *s < end);
        before != self.entries.len()
    }

    /// After the log start moved to `start`: the epoch in force there starts there.
    pub fn truncate_from_start(&mut self, start: i64) -> bool {
        let keep_from = self.entries.iter().rposition(|(_, s)| *s <= start).unwrap_or(0);
        let mut changed = keep_from > 0;
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut() {
            if first.1 < start {
                first.1 = start;
                changed = true;
            }
        }
        changed
    }

    pub fn encode(&self) -> String {
        let mut out = format!("0\n{}\n", self.entries.len());
        for (e, s) in &self.entries {
            out.push_str(&format!("{e} {s}\n"));
        }
        out
    }

    /// Parses the file; any deviation (version, count, ordering, numbers) is an error.
    pub fn decode(text: &str) -> Result<LeaderEpochs, String> {
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some("0") {
            return Err("unknown leader-epoch-checkpoint version".into());
        }
        let count: usize = lines.next().and_then(|l| l.trim().parse().ok()).ok_or("missing entry count")?;
        let mut entries: Vec<(i32, i64)> = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let line = lines.next().ok_or("fewer entries than the count")?;
            let mut parts = line.split_whitespace();
            let epoch: i32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| format!("bad entry `{line}`"))?;
            let start: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(|| format!("bad entry `{line}`"))?;
            if parts.next().is_some() || epoch < 0 || start < 0 {
                return Err(format!("bad entry `{line}`"));
            }
            if entries.last().is_some_and(|(e, s)| *e >= epoch || *s > start) {
                return Err(format!("entry `{line}` is out of order"));
            }
            entries.push((epoch, start));
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return Err("more entries than the count".into());
        }
        Ok(LeaderEpochs { entries })
    }

    /// Ok(None) when the file is missing or unreadable (the caller rebuilds it).
    pub(crate) fn read(dir: &Path) -> io::Result<Option<LeaderEpochs>> {
        let text = match std::fs::read_to_string(dir.join(FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(None),
            Err(e) => return Err(e),
        };
        match Self::decode(&text) {
            Ok(c) => Ok(Some(c)),
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), %reason, "leader-epoch-checkpoint unreadable; rebuilding it from the log");
                Ok(None)
            }
        }
    }

    pub(crate) fn write(&self, dir: &Path) -> io::Result<()> {
        write_atomic(dir, FILE, self.encode().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochs {
        let mut c = LeaderEpochs::default();
        for (e, s) in entries {
            assert!(c.assign(*e, *s));
        }
        c
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let c = cache(&[(1, 0), (3, 100), (4, 250)]);
        assert_eq!(c.end_offset_for(0, 300), UNDEFINED_EPOCH_END);
        assert_eq!(c.end_offset_for(1, 300), (1, 100));
        assert_eq!(c.end_offset_for(2, 300), (1, 100), "an unknown epoch maps to the last one before it");
        assert_eq!(c.end_offset_for(3, 300), (3, 250));
        assert_eq!(c.end_offset_for(4, 300), (4, 300), "the latest epoch ends at the log end");
        assert_eq!(c.end_offset_for(9, 300), (4, 300));
        assert_eq!(LeaderEpochs::default().end_offset_for(5, 0), UNDEFINED_EPOCH_END);
    }

    #[test]
    fn assign_ignores_old_epochs_and_replaces_overlaps() {
        let mut c = cache(&[(1, 0), (2, 50)]);
        assert!(!c.assign(2, 80), "same epoch again");
        assert!(!c.assign(1, 90), "older epoch");
        assert!(c.assign(5, 40), "a newer epoch starting below an entry replaces it");
        assert_eq!(c.entries(), &[(1, 0), (5, 40)]);
        assert!(!c.assign(-1, 100));
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(1, 0), (3, 100), (4, 250)]);
        assert!(c.truncate_from_end(250));
        assert_eq!(c.entries(), &[(1, 0), (3, 100)]);
        assert!(!c.truncate_from_end(400));
        assert!(c.truncate_from_start(150));
        assert_eq!(c.entries(), &[(3, 150)]);
        assert!(!c.truncate_from_start(150));
        let mut c = cache(&[(1, 0), (3, 100)]);
        assert!(c.truncate_from_start(100));
        assert_eq!(c.entries(), &[(3, 100)]);
    }

    #[test]
    fn file_round_trip_and_corrupt_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(LeaderEpochs::read(dir.path()).expect("read"), None);
        let c = cache(&[(0, 0), (2, 17), (7, 4000)]);
        c.write(dir.path()).expect("write");
        assert_eq!(std::fs::read_to_string(dir.path().join(FILE)).expect("file"), "0\n3\n0 0\n2 17\n7 4000\n");
        assert_eq!(LeaderEpochs::read(dir.path()).expect("read"), Some(c));
        for bad in ["", "1\n0\n", "0\n2\n0 0\n", "0\n1\n0 0\n1 5\n", "0\n2\n3 10\n2 20\n", "0\n1\nx y\n", "0\n1\n0 -4\n", "\u{0}\u{ff}"] {
            std::fs::write(dir.path().join(FILE), bad).expect("write");
            assert_eq!(LeaderEpochs::read(dir.path()).expect("read"), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(text in ".{0,200}", entries in proptest::collection::vec((0i32..50, 0i64..10_000), 0..10)) {
            let _ = LeaderEpochs::decode(&text);
            let mut c = LeaderEpochs::default();
            for (e, s) in entries {
                c.assign(e, s);
            }
            prop_assert_eq!(LeaderEpochs::decode(&c.encode()), Ok(c));
        }
    }
}
