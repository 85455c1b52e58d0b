use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use karst_protocol::error_codes as ec;
use tracing::warn;

use crate::broker::Broker;

/// Idempotent producers get a fresh id at epoch 0; a transactional id goes to the
/// transaction coordinator.
pub(crate) async fn handle(b: Arc<Broker>, req: InitProducerIdRequest, version: i16) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if let Some(id) = &req.transactional_id {
        if !crate::security::authz::allowed(&b, crate::security::acl::TRANSACTIONAL_ID, id.as_str(), crate::security::acl::WRITE) {
            return resp.with_error_code(53); // TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        }
        return super::txn::init_producer_id(b, req, version).await;
    }
    if !crate::security::authz::may_write_idempotently(&b) {
        return resp.with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED);
    }
    match b.next_producer_id().await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            warn!("allocating a producer id failed: {e}");
            resp.with_error_code(ec::COORDINATOR_NOT_AVAILABLE)
        }
    }
}
