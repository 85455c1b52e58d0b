//! The static voter list: `controller.quorum.voters`-style `1@host:port,2@host:port`.

use std::collections::BTreeSet;
use std::fmt;

use crate::errors::VotersError;

/// One controller voter: its Raft node id and `host:port` of its controller listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Voter {
    pub id: u64,
    pub addr: String,
}

impl fmt::Display for Voter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr)
    }
}

/// Parse `1@127.0.0.1:19093,2@host-b:19093,3@[::1]:19093`. Whitespace around entries
/// is ignored; ids and addresses must be unique.
pub fn parse_voters(s: &str) -> Result<Vec<Voter>, VotersError> {
    if s.trim().is_empty() {
        return Err(VotersError::Empty);
    }
    let mut out = Vec::new();
    let mut ids = BTreeSet::new();
    let mut addrs = BTreeSet::new();
    for raw in s.split(',') {
        let entry = raw.trim();
        let bad = |reason: &str| VotersError::BadEntry { entry: entry.to_string(), reason: reason.to_string() };
        if entry.is_empty() {
            return Err(bad("empty entry"));
        }
        let (id, addr) = entry.split_once('@').ok_or_else(|| bad("missing `@`"))?;
        let id: u64 = id.trim().parse().map_err(|_| bad("node id is not a non-negative integer"))?;
        let addr = addr.trim();
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("missing `:port`"))?;
        if host.is_empty() || host == "[]" {
            return Err(bad("empty host"));
        }
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(bad("IPv6 host must be in brackets"));
        }
        if host.chars().any(char::is_whitespace) {
            return Err(bad("host contains whitespace"));
        }
        let port: u16 = port.parse().map_err(|_| bad("port is not a number in 1..=65535"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        if !ids.insert(id) {
            return Err(VotersError::DuplicateId(id));
        }
        let addr = format!("{host}:{port}");
        if !addrs.insert(addr.clone()) {
            return Err(VotersError::DuplicateAddr(addr));
        }
        out.push(Voter { id, addr });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_lists() {
        let v = parse_voters("1@127.0.0.1:19093, 2@localhost:19094 ,3@[::1]:19095").unwrap();
        assert_eq!(
            v,
            vec![
                Voter { id: 1, addr: "127.0.0.1:19093".into() },
                Voter { id: 2, addr: "localhost:19094".into() },
                Voter { id: 3, addr: "[::1]:19095".into() },
            ]
        );
        assert_eq!(v[0].to_string(), "1@127.0.0.1:19093");
        assert_eq!(parse_voters("7@h:1").unwrap().len(), 1);
    }

    #[test]
    fn rejects_bad_lists() {
        assert_eq!(parse_voters("  "), Err(VotersError::Empty));
        for bad in ["1@h:1,", "h:1", "x@h:1", "-1@h:1", "1@h", "1@:9", "1@h:0", "1@h:70000", "1@h:port", "1@::1:9", "1@a b:9"] {
            assert!(matches!(parse_voters(bad), Err(VotersError::BadEntry { .. })), "{bad}");
        }
        assert_eq!(parse_voters("1@a:1,1@b:2"), Err(VotersError::DuplicateId(1)));
        assert_eq!(parse_voters("1@a:1,2@a:1"), Err(VotersError::DuplicateAddr("a:1".into())));
    }
}
