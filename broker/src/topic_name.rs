//! Kafka's topic-name rules.

/// Longest topic name Kafka accepts.
pub(crate) const MAX_LEN: usize = 249;

/// Kafka's internal topics (`Topic.isInternal`), as Metadata and
/// DescribeTopicPartitions flag them.
pub(crate) fn is_internal(name: &str) -> bool {
    matches!(name, "__consumer_offsets" | "__transaction_state" | "__share_group_state")
}

/// Why `name` is not a legal topic name, if it is not.
pub(crate) fn invalid_reason(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Some(format!("topic name cannot be `{name}`"));
    }
    if name.len() > MAX_LEN {
        return Some(format!("topic name is {} characters, longer than {MAX_LEN}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Some(format!("topic name `{name}` contains `{c}`; legal characters are ASCII alphanumerics, '.', '_' and '-'"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rules() {
        for bad in ["", ".", "..", "a/b", "has space", "ü", &"x".repeat(250)] {
            assert!(invalid_reason(bad).is_some(), "{bad:?}");
        }
        for good in ["a", "a.b_c-d", "__consumer_offsets", &"x".repeat(249)] {
            assert!(invalid_reason(good).is_none(), "{good:?}");
        }
    }
}
