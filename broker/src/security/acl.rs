//! Kafka's ACL authorizer (`StandardAuthorizer`): ACLs bind a principal and a host to
//! an operation on a resource (literal or prefixed name), allowed or denied. Deny
//! wins; `super.users` may do anything; a resource no ACL names is allowed only with
//! `allow.everyone.if.no.acl.found`; some operations imply others (READ, WRITE,
//! DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS).

use karst_controller::AclBinding;

use super::Principal;

/// Resource types (Kafka's `ResourceType` codes).
pub const ANY_RESOURCE: i8 = 1;
pub const TOPIC: i8 = 2;
pub const GROUP: i8 = 3;
pub const CLUSTER: i8 = 4;
pub const TRANSACTIONAL_ID: i8 = 5;
pub const DELEGATION_TOKEN: i8 = 6;
pub const USER: i8 = 7;

/// Pattern types (`PatternType`).
pub const PATTERN_ANY: i8 = 1;
pub const PATTERN_MATCH: i8 = 2;
pub const LITERAL: i8 = 3;
pub const PREFIXED: i8 = 4;

/// Operations (`AclOperation`).
pub const OP_ANY: i8 = 1;
pub const ALL: i8 = 2;
pub const READ: i8 = 3;
pub const WRITE: i8 = 4;
pub const CREATE: i8 = 5;
pub const DELETE: i8 = 6;
pub const ALTER: i8 = 7;
pub const DESCRIBE: i8 = 8;
pub const CLUSTER_ACTION: i8 = 9;
pub const DESCRIBE_CONFIGS: i8 = 10;
pub const ALTER_CONFIGS: i8 = 11;
pub const IDEMPOTENT_WRITE: i8 = 12;
pub const CREATE_TOKENS: i8 = 13;
pub const DESCRIBE_TOKENS: i8 = 14;
pub const TWO_PHASE_COMMIT: i8 = 15;

/// Permission types (`AclPermissionType`).
pub const PERMISSION_ANY: i8 = 1;
pub const DENY: i8 = 2;
pub const ALLOW: i8 = 3;

/// The one name of the cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
pub const WILDCARD: &str = "*";

/// What a request asks: `operation` on `resource_type` `name`, by `principal` from `host`.
pub struct Action<'a> {
    pub resource_type: i8,
    pub name: &'a str,
    pub operation: i8,
}

/// The authorizer's settings (`super.users`, `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerSettings {
    pub super_users: Vec<Principal>,
    pub allow_if_no_acl: bool,
}

impl AuthorizerSettings {
    /// `super.users`: principals separated by `;`, as Kafka.
    pub fn parse_super_users(text: &str) -> Result<Vec<Principal>, String> {
        text.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Principal::parse(s).ok_or_else(|| format!("`{s}` is not a principal (Type:name)")))
            .collect()
    }
}

/// Whether the ACL's resource pattern covers resource `name`.
fn covers(acl: &AclBinding, resource_type: i8, name: &str) -> bool {
    acl.resource_type == resource_type
        && match acl.pattern_type {
            LITERAL => acl.resource_name == name || acl.resource_name == WILDCARD,
            PREFIXED => name.starts_with(&acl.resource_name),
            _ => false,
        }
}

/// Whether some ALLOW ACL gives `principal` at `host` `operation` (or ALL) on any
/// resource of `resource_type` (Kafka's "WRITE on any topic" for idempotent producers).
pub fn allows_any(acls: &[AclBinding], principal: &Principal, host: &str, resource_type: i8, operation: i8) -> bool {
    acls.iter().any(|a| {
        a.resource_type == resource_type
            && a.permission_type == ALLOW
            && (a.operation == operation || a.operation == ALL)
            && principal_matches(a, principal)
            && host_matches(a, host)
    })
}

fn principal_matches(acl: &AclBinding, principal: &Principal) -> bool {
    acl.principal == "User:*" || acl.principal == principal.to_string()
}

fn host_matches(acl: &AclBinding, host: &str) -> bool {
    acl.host == WILDCARD || acl.host == host
}

/// The operations an ACL for `op` allows besides itself.
fn implied_by(op: i8) -> &'static [i8] {
    match op {
        DESCRIBE => &[DESCRIBE, READ, WRITE, DELETE, ALTER],
        DESCRIBE_CONFIGS => &[DESCRIBE_CONFIGS, ALTER_CONFIGS],
        _ => &[],
    }
}

/// Whether `principal` at `host` may do `action`, given every ACL.
pub fn authorize(acls: &[AclBinding], settings: &AuthorizerSettings, principal: &Principal, host: &str, action: &Action<'_>) -> bool {
    if settings.super_users.contains(principal) {
        return true;
    }
    let mut any_for_resource = false;
    let mut allowed = false;
    for acl in acls.iter().filter(|a| covers(a, action.resource_type, action.name)) {
        any_for_resource = true;
        if !principal_matches(acl, principal) || !host_matches(acl, host) {
            continue;
        }
        let op_matches = acl.operation == ALL || acl.operation == action.operation;
        match acl.permission_type {
            // A DENY names exactly the operation (or ALL): it implies nothing.
            DENY if op_matches => return false,
            ALLOW if op_matches || implied_by(action.operation).contains(&acl.operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!any_for_resource && settings.allow_if_no_acl)
}

/// A DescribeAcls/DeleteAcls filter (Kafka's `AclBindingFilter`): ANY matches
/// everything, MATCH a pattern type matches the ACLs that would apply to the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclFilter {
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let type_ok = self.resource_type == ANY_RESOURCE || self.resource_type == acl.resource_type;
        let name_ok = match (self.pattern_type, &self.resource_name) {
            (PATTERN_MATCH, Some(name)) => match acl.pattern_type {
                LITERAL => acl.resource_name == *name || acl.resource_name == WILDCARD,
                PREFIXED => name.starts_with(&acl.resource_name),
                _ => false,
            },
            (PATTERN_MATCH, None) | (PATTERN_ANY, None) => true,
            (PATTERN_ANY, Some(name)) => acl.resource_name == *name,
            (p, name) => p == acl.pattern_type && name.as_ref().is_none_or(|n| *n == acl.resource_name),
        };
        type_ok
            && name_ok
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == OP_ANY || self.operation == acl.operation)
            && (self.permission_type == PERMISSION_ANY || self.permission_type == acl.permission_type)
    }
}

/// Checks an ACL to create, with Kafka's messages (INVALID_REQUEST otherwise).
pub fn validate(acl: &AclBinding) -> Result<(), String> {
    if ![TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, DELEGATION_TOKEN, USER].contains(&acl.resource_type) {
        return Err("Invalid resource type".into());
    }
    if ![LITERAL, PREFIXED].contains(&acl.pattern_type) {
        return Err("Invalid pattern type".into());
    }
    if !(ALL..=TWO_PHASE_COMMIT).contains(&acl.operation) {
        return Err("Invalid operation".into());
    }
    if ![DENY, ALLOW].contains(&acl.permission_type) {
        return Err("Invalid permission type".into());
    }
    if acl.resource_name.is_empty() {
        return Err("Resource name should not be empty".into());
    }
    if acl.resource_type == CLUSTER && acl.resource_name != CLUSTER_NAME {
        return Err("The only valid name for the CLUSTER resource is kafka-cluster".into());
    }
    if Principal::parse(&acl.principal).is_none() {
        return Err(format!(
            "Could not parse principal from `{}` (no colon is present separating the principal type from name)",
            acl.principal
        ));
    }
    if acl.pattern_type == PREFIXED && acl.resource_name == WILDCARD {
        // Kafka refuses a prefixed wildcard: a literal `*` already means every name.
        return Err("A prefixed pattern may not be `*`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: i8, name: &str, pattern: i8, principal: &str, host: &str, op: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: host.into(),
            operation: op,
            permission_type: perm,
        }
    }

    fn can(acls: &[AclBinding], who: &str, host: &str, rt: i8, name: &str, op: i8) -> bool {
        authorize(acls, &AuthorizerSettings::default(), &Principal::user(who), host, &Action { resource_type: rt, name, operation: op })
    }

    #[test]
    fn literal_prefixed_and_wildcard_acls_allow_and_deny_wins() {
        let acls = vec![
            acl(TOPIC, "orders", LITERAL, "User:alice", "*", WRITE, ALLOW),
            acl(TOPIC, "logs-", PREFIXED, "User:alice", "*", READ, ALLOW),
            acl(TOPIC, "*", LITERAL, "User:*", "*", DESCRIBE, ALLOW),
            acl(TOPIC, "logs-secret", LITERAL, "User:alice", "*", READ, DENY),
            acl(GROUP, "g", LITERAL, "User:bob", "10.0.0.1", READ, ALLOW),
        ];
        assert!(can(&acls, "alice", "127.0.0.1", TOPIC, "orders", WRITE));
        assert!(!can(&acls, "alice", "127.0.0.1", TOPIC, "orders", READ), "only what is allowed");
        assert!(can(&acls, "alice", "127.0.0.1", TOPIC, "orders", DESCRIBE), "WRITE implies DESCRIBE");
        assert!(can(&acls, "alice", "127.0.0.1", TOPIC, "logs-app", READ), "prefixed");
        assert!(!can(&acls, "alice", "127.0.0.1", TOPIC, "logs-secret", READ), "deny wins over the prefixed allow");
        assert!(can(&acls, "carol", "127.0.0.1", TOPIC, "anything", DESCRIBE), "a wildcard name and principal");
        assert!(!can(&acls, "carol", "127.0.0.1", TOPIC, "anything", READ));
        assert!(can(&acls, "bob", "10.0.0.1", GROUP, "g", READ));
        assert!(!can(&acls, "bob", "10.0.0.2", GROUP, "g", READ), "another host");
        assert!(!can(&acls, "bob", "10.0.0.1", GROUP, "h", READ), "a resource no ACL names: denied by default");
    }

    #[test]
    fn super_users_and_allow_everyone_if_no_acl_found() {
        let acls = vec![acl(TOPIC, "t", LITERAL, "User:alice", "*", READ, ALLOW)];
        let settings = AuthorizerSettings { super_users: vec![Principal::user("admin")], allow_if_no_acl: true };
        let a = |who: &str, name: &str| {
            authorize(&acls, &settings, &Principal::user(who), "h", &Action { resource_type: TOPIC, name, operation: WRITE })
        };
        assert!(a("admin", "t"), "a super user");
        assert!(a("bob", "untouched"), "no ACL names it, and the setting allows");
        assert!(!a("bob", "t"), "ACLs name it: the setting does not apply");
    }

    #[test]
    fn acls_are_validated_and_filters_match_as_kafka() {
        assert!(validate(&acl(TOPIC, "t", LITERAL, "User:a", "*", READ, ALLOW)).is_ok());
        for bad in [
            acl(CLUSTER, "other", LITERAL, "User:a", "*", ALTER, ALLOW),
            acl(TOPIC, "t", PATTERN_MATCH, "User:a", "*", READ, ALLOW),
            acl(TOPIC, "t", LITERAL, "alice", "*", READ, ALLOW),
            acl(TOPIC, "", LITERAL, "User:a", "*", READ, ALLOW),
            acl(TOPIC, "t", LITERAL, "User:a", "*", OP_ANY, ALLOW),
            acl(9, "t", LITERAL, "User:a", "*", READ, ALLOW),
        ] {
            assert!(validate(&bad).is_err(), "{bad:?}");
        }
        let a = acl(TOPIC, "logs-", PREFIXED, "User:a", "*", READ, ALLOW);
        let f = |rt, name: Option<&str>, pattern| AclFilter {
            resource_type: rt,
            resource_name: name.map(String::from),
            pattern_type: pattern,
            principal: None,
            host: None,
            operation: OP_ANY,
            permission_type: PERMISSION_ANY,
        };
        assert!(f(ANY_RESOURCE, None, PATTERN_ANY).matches(&a));
        assert!(f(TOPIC, Some("logs-app"), PATTERN_MATCH).matches(&a), "MATCH: the ACLs that apply to the name");
        assert!(!f(TOPIC, Some("logs-app"), PATTERN_ANY).matches(&a), "ANY: the exact name");
        assert!(f(TOPIC, Some("logs-"), PREFIXED).matches(&a));
        assert!(!f(TOPIC, Some("logs-"), LITERAL).matches(&a));
        assert!(!f(GROUP, None, PATTERN_ANY).matches(&a));
    }
}
