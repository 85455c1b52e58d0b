//! KIP-430 authorized operations. Without an authorizer, as Kafka answers: every
//! operation Kafka supports on the resource type. With one, those the principal's
//! ACLs allow.
//!
//! Bits are Kafka's `AclOperation` codes.

use crate::broker::Broker;
use crate::security::{acl, authz};

/// The operations of `all` (a resource type's bits) the request's principal may do on
/// `resource_type` `name`.
pub(crate) fn of(b: &Broker, resource_type: i8, name: &str, all: i32) -> i32 {
    if b.authorizer().is_none() {
        return all;
    }
    (0..32).filter(|op| all & (1 << op) != 0).filter(|op| authz::may(b, resource_type, name, *op as i8)).fold(0, |acc, op| acc | (1 << op))
}

/// [`of`] for the cluster resource.
pub(crate) fn cluster(b: &Broker) -> i32 {
    of(b, acl::CLUSTER, acl::CLUSTER_NAME, CLUSTER)
}

const READ: i32 = 3;
const WRITE: i32 = 4;
const CREATE: i32 = 5;
const DELETE: i32 = 6;
const ALTER: i32 = 7;
const DESCRIBE: i32 = 8;
const CLUSTER_ACTION: i32 = 9;
const DESCRIBE_CONFIGS: i32 = 10;
const ALTER_CONFIGS: i32 = 11;
const IDEMPOTENT_WRITE: i32 = 12;

const fn bits(ops: &[i32]) -> i32 {
    let mut out = 0;
    let mut i = 0;
    while i < ops.len() {
        out |= 1 << ops[i];
        i += 1;
    }
    out
}

pub(crate) const TOPIC: i32 = bits(&[READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);
/// Groups have configs since KIP-848.
pub(crate) const GROUP: i32 = bits(&[READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);
/// Without the token operations, which Kafka grants only with an authorizer.
pub(crate) const CLUSTER: i32 = bits(&[CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER, DESCRIBE]);

#[cfg(test)]
mod tests {
    #[test]
    fn operations_are_kafkas_values_without_an_authorizer() {
        // Kafka 4.4's answers (Metadata, DescribeGroups, DescribeCluster).
        assert_eq!((super::TOPIC, super::GROUP, super::CLUSTER), (3576, 3400, 8096));
    }
}
