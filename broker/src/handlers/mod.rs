//! One module per Kafka API; `dispatch` routes a decoded request to it.

mod admin;
mod api_versions;
mod describe;
mod fetch;
mod list_offsets;
mod metadata;
mod produce;
mod producer_id;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use karst_protocol::codec::{encode_response, Request};
use tracing::{debug_span, error, Instrument};

use crate::broker::Broker;

/// Handles one request; `Ok(None)` means no response is due (Produce with acks=0),
/// `Err` that the connection must close.
pub(crate) async fn dispatch(b: &Arc<Broker>, req: Request) -> Result<Option<Bytes>, String> {
    let Request {
        api_key,
        version,
        correlation_id,
        body,
        ..
    } = req;
    let span = debug_span!("request", api = ?api_key, version, correlation_id);
    let response = async {
        Ok(Some(match body {
            RequestKind::ApiVersions(r) => {
                ResponseKind::ApiVersions(api_versions::handle(r, version))
            }
            RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(b, r, version)),
            RequestKind::Produce(r) => match produce::handle(b, r, version).await {
                Some(resp) => ResponseKind::Produce(resp),
                None => return Ok(None),
            },
            RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(b, r, version).await),
            RequestKind::ListOffsets(r) => {
                ResponseKind::ListOffsets(list_offsets::handle(b, r, version))
            }
            RequestKind::CreateTopics(r) => {
                ResponseKind::CreateTopics(admin::create_topics(b, r, version))
            }
            RequestKind::DeleteTopics(r) => {
                ResponseKind::DeleteTopics(admin::delete_topics(b, r, version))
            }
            RequestKind::CreatePartitions(r) => {
                ResponseKind::CreatePartitions(admin::create_partitions(b, r))
            }
            RequestKind::DeleteRecords(r) => {
                ResponseKind::DeleteRecords(admin::delete_records(b, r))
            }
            RequestKind::DescribeConfigs(r) => {
                ResponseKind::DescribeConfigs(describe::describe_configs(b, r, version))
            }
            RequestKind::DescribeCluster(r) => {
                ResponseKind::DescribeCluster(describe::describe_cluster(b, r))
            }
            RequestKind::InitProducerId(r) => {
                ResponseKind::InitProducerId(producer_id::handle(b, r))
            }
            other => return Err(format!("no handler for {other:?}")),
        }))
    }
    .instrument(span)
    .await?;
    match response {
        None => Ok(None),
        Some(r) => encode_response(correlation_id, api_key, version, &r)
            .map(Some)
            .map_err(|e| {
                error!(?api_key, version, "cannot encode response: {e}");
                format!("cannot encode {api_key:?} v{version} response: {e}")
            }),
    }
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
