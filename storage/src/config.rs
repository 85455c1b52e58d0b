/// Per-log settings, named after Kafka's topic configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment once it would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first batch is this old.
    pub segment_ms: Option<u64>,
    /// `index.interval.bytes`: bytes of log between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: preallocated size of each offset/time index file.
    pub segment_index_bytes: u32,
    /// `retention.ms`: delete closed segments whose newest record is older; None keeps forever.
    /// Applies only when `cleanup_policy` includes delete.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: delete oldest closed segments while the log is larger; None = no limit.
    /// Applies only when `cleanup_policy` includes delete.
    pub retention_bytes: Option<u64>,
    /// `cleanup.policy`: delete old segments (retention), compact (the log cleaner), or both.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long the cleaner keeps a tombstone (and the marker of
    /// a transaction it removed the data of) after it first cleaned it (KIP-534).
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment whose newest record is younger is not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a log whose oldest uncleaned record is older must be
    /// cleaned whatever its dirty ratio; for a compacted log it also bounds `segment.ms`.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean once the uncleaned share of the log exceeds it.
    pub min_cleanable_dirty_ratio: DirtyRatio,
    /// `message.timestamp.type`: with LogAppendTime, a leader's append stamps every
    /// batch with its own clock.
    pub timestamp_type: TimestampType,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::DELETE,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: DirtyRatio::HALF,
            timestamp_type: TimestampType::CreateTime,
        }
    }
}

impl LogConfig {
    /// How old the active segment may get before it rolls: `segment.ms`, and for a
    /// compacted log at most `max.compaction.lag.ms` (Kafka's `maxSegmentMs`), since
    /// the cleaner never touches the active segment.
    pub fn roll_ms(&self) -> Option<u64> {
        let lag = u64::try_from(self.max_compaction_lag_ms).ok().filter(|ms| self.cleanup_policy.compact && *ms > 0);
        match (self.segment_ms, lag) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `cleanup.policy`: a list of `delete` and `compact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Retention (`retention.ms`, `retention.bytes`) deletes old segments.
    pub delete: bool,
    /// The log cleaner keeps the latest record of each key.
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy { delete: true, compact: false };
    pub const COMPACT: CleanupPolicy = CleanupPolicy { delete: false, compact: true };
    pub const COMPACT_DELETE: CleanupPolicy = CleanupPolicy { delete: true, compact: true };

    /// Parses Kafka's list value (`delete`, `compact`, `compact,delete`, in any order,
    /// spaces allowed); `None` for anything else, including an empty list.
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let mut policy = CleanupPolicy { delete: false, compact: false };
        for item in value.split(',').map(str::trim) {
            match item {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => return None,
            }
        }
        Some(policy)
    }

    /// The value as Kafka prints it.
    pub fn as_str(&self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            (false, true) => "delete",
            (false, false) => "",
        }
    }
}

/// `message.timestamp.type`: whose clock a batch's timestamps are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's: batches are stored with the timestamps they were sent with.
    #[default]
    CreateTime,
    /// The leader's: each batch's max timestamp is the time it was appended, and
    /// its attributes say so.
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's names, which it compares case-sensitively.
    pub fn parse(value: &str) -> Option<TimestampType> {
        match value.trim() {
            "CreateTime" => Some(TimestampType::CreateTime),
            "LogAppendTime" => Some(TimestampType::LogAppendTime),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

/// `min.cleanable.dirty.ratio`: a number in [0, 1] (never NaN, so it is `Eq`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct DirtyRatio(f64);

impl Eq for DirtyRatio {}

impl DirtyRatio {
    /// Kafka's default, 0.5.
    pub const HALF: DirtyRatio = DirtyRatio(0.5);

    /// `None` outside [0, 1] (and for NaN).
    pub fn new(ratio: f64) -> Option<DirtyRatio> {
        (0.0..=1.0).contains(&ratio).then_some(DirtyRatio(ratio))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_policies_parse_as_kafka_lists() {
        assert_eq!(CleanupPolicy::parse("delete"), Some(CleanupPolicy::DELETE));
        assert_eq!(CleanupPolicy::parse("compact"), Some(CleanupPolicy::COMPACT));
        assert_eq!(CleanupPolicy::parse("compact,delete"), Some(CleanupPolicy::COMPACT_DELETE));
        assert_eq!(CleanupPolicy::parse(" delete , compact "), Some(CleanupPolicy::COMPACT_DELETE));
        for bad in ["", "Compact", "compact;delete", "delete,", "none"] {
            assert_eq!(CleanupPolicy::parse(bad), None, "{bad:?}");
        }
        for p in [CleanupPolicy::DELETE, CleanupPolicy::COMPACT, CleanupPolicy::COMPACT_DELETE] {
            assert_eq!(CleanupPolicy::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn timestamp_types_have_kafkas_names() {
        for t in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
            assert_eq!(TimestampType::parse(t.as_str()), Some(t));
        }
        assert_eq!(TimestampType::parse("logappendtime"), None, "Kafka's ValidString is case-sensitive");
        assert_eq!(TimestampType::default(), TimestampType::CreateTime);
    }

    #[test]
    fn dirty_ratios_are_fractions() {
        assert_eq!(DirtyRatio::new(0.0).map(DirtyRatio::get), Some(0.0));
        assert_eq!(DirtyRatio::new(1.0).map(DirtyRatio::get), Some(1.0));
        assert_eq!(DirtyRatio::new(1.01), None);
        assert_eq!(DirtyRatio::new(-0.1), None);
        assert_eq!(DirtyRatio::new(f64::NAN), None);
    }

    #[test]
    fn a_compacted_log_rolls_within_its_max_compaction_lag() {
        let day = 24 * 3600 * 1000;
        let c = LogConfig { segment_ms: Some(7 * day), max_compaction_lag_ms: day as i64, ..LogConfig::default() };
        assert_eq!(c.roll_ms(), Some(7 * day), "not compacted: segment.ms alone");
        let c = LogConfig { cleanup_policy: CleanupPolicy::COMPACT, ..c };
        assert_eq!(c.roll_ms(), Some(day));
        assert_eq!(LogConfig { segment_ms: None, ..c.clone() }.roll_ms(), Some(day));
        assert_eq!(LogConfig { max_compaction_lag_ms: i64::MAX, ..c.clone() }.roll_ms(), Some(7 * day));
        assert_eq!(LogConfig { segment_ms: None, max_compaction_lag_ms: 0, ..c }.roll_ms(), None);
    }
}
