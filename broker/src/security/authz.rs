//! Authorization of the request being handled: who sent it (the connection's
//! principal and address, task-local to the connection) against the ACLs in the
//! committed metadata. Without an authorizer (`authorizer.class.name` unset) every
//! request is allowed, as in Kafka; work the broker does on its own (outside any
//! connection) is never checked.

use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;

use super::acl::{self, Action};
use super::Principal;
use crate::broker::Broker;

/// Who a connection acts as, and until when it is muted (a quota's throttle).
#[derive(Debug)]
pub struct Session {
    principal: Mutex<Principal>,
    host: String,
    muted_until: Mutex<Option<std::time::Instant>>,
}

impl Session {
    pub fn new(principal: Principal, host: String) -> Arc<Session> {
        Arc::new(Session { principal: Mutex::new(principal), host, muted_until: Mutex::new(None) })
    }

    pub fn principal(&self) -> Principal {
        self.principal.lock().clone()
    }

    /// KIP-219: the connection reads no request for `ms` from now.
    pub fn mute_for(&self, ms: u64) {
        if ms == 0 {
            return;
        }
        let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        let mut m = self.muted_until.lock();
        *m = Some(m.map_or(until, |t| t.max(until)));
    }

    /// When the connection may read again, if it is muted now.
    pub fn muted_until(&self) -> Option<std::time::Instant> {
        let mut m = self.muted_until.lock();
        if m.is_some_and(|t| t <= std::time::Instant::now()) {
            *m = None;
        }
        *m
    }

    /// After a SASL authentication.
    pub fn set_principal(&self, p: Principal) {
        *self.principal.lock() = p;
    }
}

tokio::task_local! {
    static SESSION: Arc<Session>;
}

/// Runs a connection with its session visible to the requests it handles.
pub fn scope<F: Future>(session: Arc<Session>, f: F) -> impl Future<Output = F::Output> {
    SESSION.scope(session, f)
}

/// The session of the request being handled, if on a connection.
pub fn session() -> Option<Arc<Session>> {
    SESSION.try_with(Arc::clone).ok()
}

/// The principal of the request being handled, if on a connection.
pub fn current() -> Option<(Principal, String)> {
    SESSION.try_with(|s| (s.principal.lock().clone(), s.host.clone())).ok()
}

/// Whether the request being handled may do `operation` on the resource; a refusal is
/// counted (`karst_authorization_denied_total`).
pub fn allowed(b: &Broker, resource_type: i8, name: &str, operation: i8) -> bool {
    let ok = may(b, resource_type, name, operation);
    if !ok {
        crate::metrics::authorization_denied(resource_type);
    }
    ok
}

/// [`allowed`] without counting: what KIP-430's authorized operations report.
pub fn may(b: &Broker, resource_type: i8, name: &str, operation: i8) -> bool {
    let Some(settings) = b.authorizer() else { return true };
    let Some((principal, host)) = current() else { return true };
    let image = b.metadata.image();
    acl::authorize(&image.cluster.acls, settings, &principal, &host, &Action { resource_type, name, operation })
}

/// Whether the request being handled comes from a super user (or no authorizer is on).
pub fn is_super(b: &Broker) -> bool {
    let Some(settings) = b.authorizer() else { return true };
    current().is_none_or(|(p, _)| settings.super_users.contains(&p))
}

/// Whether `operation` on `topic` is allowed, or CREATE on the cluster (CreateTopics,
/// auto-creation): Kafka accepts either.
pub fn may_create_topic(b: &Broker, topic: &str) -> bool {
    allowed(b, acl::CLUSTER, acl::CLUSTER_NAME, acl::CREATE) || allowed(b, acl::TOPIC, topic, acl::CREATE)
}

/// An idempotent producer's InitProducerId: IDEMPOTENT_WRITE on the cluster, or WRITE
/// on any topic (Kafka since 2.8).
pub fn may_write_idempotently(b: &Broker) -> bool {
    if allowed(b, acl::CLUSTER, acl::CLUSTER_NAME, acl::IDEMPOTENT_WRITE) {
        return true;
    }
    let Some(settings) = b.authorizer() else { return true };
    let Some((principal, host)) = current() else { return true };
    settings.super_users.contains(&principal)
        || acl::allows_any(&b.metadata.image().cluster.acls, &principal, &host, acl::TOPIC, acl::WRITE)
}
