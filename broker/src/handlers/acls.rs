//! CreateAcls, DescribeAcls and DeleteAcls: ACLs kept in the controller quorum.
//! Without an authorizer (`authorizer.class.name` unset) they answer
//! SECURITY_DISABLED, as Kafka does. Asking needs ALTER (create, delete) or DESCRIBE
//! on the cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
};
use karst_controller::{AclBinding, MetadataCommand};
use karst_protocol::error_codes as ec;
use tracing::info;

use super::str_bytes;
use crate::broker::Broker;
use crate::security::acl::{self, AclFilter};
use crate::security::authz;

const SECURITY_DISABLED: i16 = 54;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const NO_AUTHORIZER: &str = "No Authorizer is configured.";

fn refusal(b: &Broker, operation: i8) -> Option<(i16, &'static str)> {
    if !b.authorizer_enabled() {
        return Some((SECURITY_DISABLED, NO_AUTHORIZER));
    }
    (!authz::allowed(b, acl::CLUSTER, acl::CLUSTER_NAME, operation))
        .then_some((CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."))
}

async fn commit(b: &Broker, add: Vec<AclBinding>, remove: Vec<AclBinding>) -> Result<(), (i16, String)> {
    b.metadata.propose(MetadataCommand::AlterAcls { add, remove }).await.map(drop).map_err(|e| match e {
        crate::errors::BrokerError::Metadata { code, message } => (code, message),
        other => (ec::UNKNOWN_SERVER_ERROR, other.to_string()),
    })
}

pub(crate) async fn create(b: Arc<Broker>, req: CreateAclsRequest) -> CreateAclsResponse {
    let refused = refusal(&b, acl::ALTER);
    let mut add = Vec::new();
    let mut results: Vec<Result<(), (i16, String)>> = req
        .creations
        .iter()
        .map(|c| {
            if let Some((code, msg)) = refused {
                return Err((code, msg.to_string()));
            }
            let binding = AclBinding {
                resource_type: c.resource_type,
                resource_name: c.resource_name.to_string(),
                pattern_type: c.resource_pattern_type,
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: c.operation,
                permission_type: c.permission_type,
            };
            acl::validate(&binding).map_err(|e| (ec::INVALID_REQUEST, e))?;
            add.push(binding);
            Ok(())
        })
        .collect();
    if !add.is_empty() {
        let count = add.len();
        if let Err(e) = commit(&b, add, Vec::new()).await {
            results.iter_mut().filter(|r| r.is_ok()).for_each(|r| *r = Err(e.clone()));
        } else {
            info!(count, "created ACLs");
        }
    }
    let results = results
        .into_iter()
        .map(|r| match r {
            Ok(()) => AclCreationResult::default(),
            Err((code, msg)) => AclCreationResult::default().with_error_code(code).with_error_message(Some(str_bytes(msg))),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// The filter of a DescribeAcls request or a DeleteAcls filter: two messages with the
/// same fields.
macro_rules! acl_filter {
    ($x:expr) => {
        AclFilter {
            resource_type: $x.resource_type_filter,
            resource_name: $x.resource_name_filter.as_deref().map(String::from),
            pattern_type: $x.pattern_type_filter,
            principal: $x.principal_filter.as_deref().map(String::from),
            host: $x.host_filter.as_deref().map(String::from),
            operation: $x.operation,
            permission_type: $x.permission_type,
        }
    };
}

pub(crate) fn describe(b: &Arc<Broker>, req: DescribeAclsRequest) -> DescribeAclsResponse {
    if let Some((code, msg)) = refusal(b, acl::DESCRIBE) {
        return DescribeAclsResponse::default().with_error_code(code).with_error_message(Some(str_bytes(msg)));
    }
    let f = acl_filter!(req);
    let image = b.metadata.image();
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for a in image.cluster.acls.iter().filter(|a| f.matches(a)) {
        by_resource.entry((a.resource_type, a.resource_name.clone(), a.pattern_type)).or_default().push(
            AclDescription::default()
                .with_principal(str_bytes(a.principal.clone()))
                .with_host(str_bytes(a.host.clone()))
                .with_operation(a.operation)
                .with_permission_type(a.permission_type),
        );
    }
    let resources = by_resource
        .into_iter()
        .map(|((t, name, p), acls)| {
            DescribeAclsResource::default().with_resource_type(t).with_resource_name(str_bytes(name)).with_pattern_type(p).with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

pub(crate) async fn delete(b: Arc<Broker>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    if let Some((code, msg)) = refusal(&b, acl::ALTER) {
        let results = req
            .filters
            .iter()
            .map(|_| DeleteAclsFilterResult::default().with_error_code(code).with_error_message(Some(str_bytes(msg))))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let image = b.metadata.image();
    let mut remove: Vec<AclBinding> = Vec::new();
    let matched: Vec<Vec<AclBinding>> = req
        .filters
        .iter()
        .map(|x| {
            let f = acl_filter!(x);
            let hits: Vec<AclBinding> = image.cluster.acls.iter().filter(|a| f.matches(a)).cloned().collect();
            for h in &hits {
                if !remove.contains(h) {
                    remove.push(h.clone());
                }
            }
            hits
        })
        .collect();
    let failed = if remove.is_empty() { None } else { commit(&b, Vec::new(), remove).await.err() };
    let results = matched
        .into_iter()
        .map(|hits| {
            if let Some((code, msg)) = &failed {
                return DeleteAclsFilterResult::default().with_error_code(*code).with_error_message(Some(str_bytes(msg.clone())));
            }
            let acls = hits
                .into_iter()
                .map(|a| {
                    DeleteAclsMatchingAcl::default()
                        .with_resource_type(a.resource_type)
                        .with_resource_name(str_bytes(a.resource_name))
                        .with_pattern_type(a.pattern_type)
                        .with_principal(str_bytes(a.principal))
                        .with_host(str_bytes(a.host))
                        .with_operation(a.operation)
                        .with_permission_type(a.permission_type)
                        .with_error_message(None)
                })
                .collect();
            // Kafka's success carries a null message.
            DeleteAclsFilterResult::default().with_matching_acls(acls).with_error_message(None)
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
