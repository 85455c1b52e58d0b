//! Share sessions (KIP-932), as Kafka's `ShareSessionCache`: one per (group, member),
//! remembering the partitions the member fetches so later ShareFetch requests name
//! only changes. Epoch 0 opens a session (replacing any), -1 closes it; every other
//! request must carry the session's current epoch.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

pub(crate) const SHARE_SESSION_NOT_FOUND: i16 = 122;
pub(crate) const INVALID_SHARE_SESSION_EPOCH: i16 = 123;
pub(crate) const INITIAL_EPOCH: i32 = 0;
pub(crate) const FINAL_EPOCH: i32 = -1;

/// A share-partition as a session names it.
pub(crate) type SessionPartition = (Uuid, i32);

#[derive(Debug)]
struct Session {
    epoch: i32,
    partitions: BTreeSet<SessionPartition>,
    last_used: i64,
}

#[derive(Debug)]
pub(crate) struct ShareSessions {
    sessions: HashMap<(String, String), Session>,
    max: usize,
    eviction_ms: i64,
}

/// What a ShareFetch may do under its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchContext {
    /// Fetch these partitions (the session's, after the request's changes).
    Fetch(Vec<SessionPartition>),
    /// Epoch -1: acknowledge only, then close the session.
    Final,
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl ShareSessions {
    pub(crate) fn new(max: usize, eviction_ms: i64) -> ShareSessions {
        ShareSessions { sessions: HashMap::new(), max, eviction_ms }
    }

    /// Settles a ShareFetch's session: INVALID_REQUEST for acknowledgements in an
    /// opening request or partitions to fetch in a closing one, SHARE_SESSION_NOT_FOUND,
    /// INVALID_SHARE_SESSION_EPOCH.
    pub(crate) fn fetch(
        &mut self,
        (group, member): (&str, &str),
        epoch: i32,
        add: &[SessionPartition],
        forget: &[SessionPartition],
        has_acks: bool,
        now: i64,
    ) -> Result<FetchContext, i16> {
        let key = (group.to_string(), member.to_string());
        match epoch {
            FINAL_EPOCH => {
                if !add.is_empty() {
                    return Err(karst_protocol::error_codes::INVALID_REQUEST);
                }
                if !self.sessions.contains_key(&key) {
                    return Err(SHARE_SESSION_NOT_FOUND);
                }
                Ok(FetchContext::Final)
            }
            INITIAL_EPOCH => {
                if has_acks {
                    return Err(karst_protocol::error_codes::INVALID_REQUEST);
                }
                self.sessions.remove(&key);
                if self.sessions.len() >= self.max && !self.evict_one(now) {
                    return Err(SHARE_SESSION_NOT_FOUND);
                }
                let partitions: BTreeSet<SessionPartition> = add.iter().copied().collect();
                let list = partitions.iter().copied().collect();
                self.sessions.insert(key, Session { epoch: next_epoch(INITIAL_EPOCH), partitions, last_used: now });
                Ok(FetchContext::Fetch(list))
            }
            e if e < FINAL_EPOCH => Err(INVALID_SHARE_SESSION_EPOCH),
            e => {
                let s = self.sessions.get_mut(&key).ok_or(SHARE_SESSION_NOT_FOUND)?;
                if s.epoch != e {
                    return Err(INVALID_SHARE_SESSION_EPOCH);
                }
                s.partitions.extend(add.iter().copied());
                for f in forget {
                    s.partitions.remove(f);
                }
                s.epoch = next_epoch(s.epoch);
                s.last_used = now;
                Ok(FetchContext::Fetch(s.partitions.iter().copied().collect()))
            }
        }
    }

    /// Settles a ShareAcknowledge's session: Ok(true) when it closes the session.
    pub(crate) fn acknowledge(&mut self, group: &str, member: &str, epoch: i32, now: i64) -> Result<bool, i16> {
        if epoch == INITIAL_EPOCH || epoch < FINAL_EPOCH {
            return Err(INVALID_SHARE_SESSION_EPOCH);
        }
        let s = self.sessions.get_mut(&(group.to_string(), member.to_string())).ok_or(SHARE_SESSION_NOT_FOUND)?;
        if epoch == FINAL_EPOCH {
            return Ok(true);
        }
        if s.epoch != epoch {
            return Err(INVALID_SHARE_SESSION_EPOCH);
        }
        s.epoch = next_epoch(s.epoch);
        s.last_used = now;
        Ok(false)
    }

    /// Closes a session; returns its partitions.
    pub(crate) fn remove(&mut self, group: &str, member: &str) -> Vec<SessionPartition> {
        self.sessions.remove(&(group.to_string(), member.to_string())).map(|s| s.partitions.into_iter().collect()).unwrap_or_default()
    }

    /// Makes room by closing the least recently used session, if it has been idle
    /// longer than the eviction time.
    fn evict_one(&mut self, now: i64) -> bool {
        let oldest = self.sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(k, s)| (k.clone(), s.last_used));
        match oldest {
            Some((k, used)) if now - used > self.eviction_ms => {
                self.sessions.remove(&k);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_follow_kafkas_share_session_cache() {
        let mut s = ShareSessions::new(2, 1000);
        let p = (Uuid::from_u128(1), 0);
        let q = (Uuid::from_u128(1), 1);
        assert_eq!(s.fetch(("g", "m"), 3, &[], &[], false, 0), Err(SHARE_SESSION_NOT_FOUND));
        assert_eq!(s.fetch(("g", "m"), -1, &[], &[], false, 0), Err(SHARE_SESSION_NOT_FOUND));
        assert_eq!(s.fetch(("g", "m"), 0, &[p], &[], true, 0), Err(karst_protocol::error_codes::INVALID_REQUEST));
        assert_eq!(s.fetch(("g", "m"), 0, &[p], &[], false, 0), Ok(FetchContext::Fetch(vec![p])));
        assert_eq!(s.fetch(("g", "m"), 2, &[], &[], false, 0), Err(INVALID_SHARE_SESSION_EPOCH));
        assert_eq!(s.fetch(("g", "m"), 1, &[q], &[p], true, 0), Ok(FetchContext::Fetch(vec![q])));
        assert_eq!(s.acknowledge("g", "m", 0, 0), Err(INVALID_SHARE_SESSION_EPOCH));
        assert_eq!(s.acknowledge("g", "m", 2, 0), Ok(false));
        assert_eq!(s.fetch(("g", "m"), -1, &[p], &[], false, 0), Err(karst_protocol::error_codes::INVALID_REQUEST));
        assert_eq!(s.fetch(("g", "m"), -1, &[], &[], false, 0), Ok(FetchContext::Final));
        assert_eq!(s.remove("g", "m"), vec![q]);
        // Full: a new session only by evicting one idle past the eviction time.
        s.fetch(("g", "a"), 0, &[], &[], false, 0).expect("a");
        s.fetch(("g", "b"), 0, &[], &[], false, 10).expect("b");
        assert_eq!(s.fetch(("g", "c"), 0, &[], &[], false, 500), Err(SHARE_SESSION_NOT_FOUND));
        assert!(s.fetch(("g", "c"), 0, &[], &[], false, 1001).is_ok());
    }
}
