//! Process limits a broker with many partitions needs.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft open-file limit to the hard one, as Kafka's start scripts
/// advise doing by hand: each partition keeps its active segment open, and the
/// usual soft default of 1,024 would stop a broker at a few hundred partitions.
/// Returns the soft limit in force afterwards (None when unlimited).
pub fn raise_open_file_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            return limit.current;
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    #[test]
    fn soft_limit_is_raised_and_reported() {
        use rustix::process::{getrlimit, Resource};
        let before = getrlimit(Resource::Nofile);
        let after = super::raise_open_file_limit();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(after, now.current, "reports the limit in force");
        assert!(now.current.unwrap_or(u64::MAX) >= before.current.unwrap_or(u64::MAX), "never lowered");
        if before.maximum.is_some() {
            assert_eq!(now.current, now.maximum, "a finite hard limit is reached");
        }
    }
}
