//! One module per Kafka API; `dispatch` routes a decoded request to it.

mod acls;
mod admin;
mod alter_configs;
pub(crate) mod api_versions;
mod authorized;
mod client_quotas;
mod consumer_groups;
mod describe;
mod describe_producers;
mod elect_leaders;
mod fetch;
mod groups;
mod leader_epoch;
mod leader_hint;
mod list_offsets;
mod log_dirs;
mod metadata;
mod produce;
mod producer_id;
mod reassign;
pub(crate) mod scram_credentials;
mod share;
mod share_state;
#[cfg(test)]
mod tests;
mod topic_partitions;
pub(crate) mod txn;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use karst_protocol::codec::{encode_response, Request};
use karst_protocol::fetch_frames::encode_fetch_frames;
use tracing::{debug_span, error, Instrument};

use crate::broker::Broker;
use crate::quotas::{Kind, Throttles};
use crate::security::authz;
pub(crate) use metadata::endpoint;

/// What a request turned into: a response now, or one to await. Responses on a
/// connection are written in request order either way.
pub(crate) enum Reply {
    /// `None`: no response is due (Produce with acks=0).
    Now(Option<Frames>),
    Later(ReplyFuture),
    /// A metadata change (or a read that may make one, like Metadata with
    /// auto-creation): no further request of the connection is handled until it
    /// is answered, so later requests see the change, as with Kafka's
    /// one-request-at-a-time connections.
    Exclusive(ReplyFuture),
    /// As `Exclusive` until the receiver resolves (its sender sends or is
    /// dropped), then as `Later`: a transactions v2 Produce holds later requests
    /// back while its partitions are added and its batches appended, not while
    /// they are replicated.
    ExclusiveUntil(ReplyFuture, tokio::sync::oneshot::Receiver<()>),
}

/// A response still to come.
pub(crate) type ReplyFuture = Pin<Box<dyn Future<Output = Result<Option<Frames>, String>> + Send>>;

/// A response frame as buffers to write in order (record batches stay in the log's maps).
pub(crate) type Frames = Vec<Bytes>;

fn encode(correlation_id: i32, api_key: ApiKey, version: i16, r: &ResponseKind) -> Result<Option<Frames>, String> {
    crate::metrics::count_errors(api_key, r);
    let encoded = match r {
        ResponseKind::Fetch(f) => encode_fetch_frames(correlation_id, version, f),
        other => encode_response(correlation_id, api_key, version, other).map(|b| vec![b]),
    };
    encoded.map(Some).map_err(|e| {
        error!(?api_key, version, "cannot encode response: {e}");
        format!("cannot encode {api_key:?} v{version} response: {e}")
    })
}

/// Handles one request, counted and timed by the metrics.
pub(crate) fn dispatch(b: &Arc<Broker>, req: Request, peer: SocketAddr) -> Result<Reply, String> {
    let (api_key, started) = (req.api_key, std::time::Instant::now());
    if karst_protocol::legacy::handles(api_key, req.version) {
        crate::metrics::legacy_request(api_key, req.version);
    }
    crate::metrics::track_request(api_key, dispatch_request(b, req, peer), started)
}

/// The APIs whose handlers check ACLs (or need none); with an authorizer on, the
/// others are open to super users only until they check ACLs too. Follower fetches
/// and WriteTxnMarkers come from brokers over the PLAINTEXT inter-broker listener,
/// trusted by their registered epochs.
fn checks_acls(body: &RequestKind) -> bool {
    matches!(
        body,
        RequestKind::ApiVersions(_)
            | RequestKind::Metadata(_)
            | RequestKind::Produce(_)
            | RequestKind::Fetch(_)
            | RequestKind::ListOffsets(_)
            | RequestKind::OffsetForLeaderEpoch(_)
            | RequestKind::InitProducerId(_)
            | RequestKind::FindCoordinator(_)
            | RequestKind::JoinGroup(_)
            | RequestKind::SyncGroup(_)
            | RequestKind::Heartbeat(_)
            | RequestKind::LeaveGroup(_)
            | RequestKind::OffsetCommit(_)
            | RequestKind::OffsetFetch(_)
            | RequestKind::ListGroups(_)
            | RequestKind::DescribeGroups(_)
            | RequestKind::DeleteGroups(_)
            | RequestKind::OffsetDelete(_)
            | RequestKind::ConsumerGroupHeartbeat(_)
            | RequestKind::ConsumerGroupDescribe(_)
            | RequestKind::CreateTopics(_)
            | RequestKind::DeleteTopics(_)
            | RequestKind::DescribeConfigs(_)
            | RequestKind::AlterConfigs(_)
            | RequestKind::IncrementalAlterConfigs(_)
            | RequestKind::DescribeCluster(_)
            | RequestKind::CreateAcls(_)
            | RequestKind::DescribeAcls(_)
            | RequestKind::DescribeClientQuotas(_)
            | RequestKind::AlterClientQuotas(_)
            | RequestKind::DeleteAcls(_)
            | RequestKind::DescribeUserScramCredentials(_)
            | RequestKind::AlterUserScramCredentials(_)
            | RequestKind::SaslHandshake(_)
            | RequestKind::SaslAuthenticate(_)
            | RequestKind::WriteTxnMarkers(_)
            | RequestKind::ShareGroupHeartbeat(_)
            | RequestKind::ShareGroupDescribe(_)
            | RequestKind::ShareFetch(_)
            | RequestKind::ShareAcknowledge(_)
            | RequestKind::DescribeShareGroupOffsets(_)
            | RequestKind::AlterShareGroupOffsets(_)
            | RequestKind::DeleteShareGroupOffsets(_)
            | RequestKind::ReadShareGroupState(_)
            | RequestKind::WriteShareGroupState(_)
    )
}

/// The group APIs: they need `__consumer_offsets`, created on first use.
fn needs_offsets_topic(body: &RequestKind) -> bool {
    matches!(
        body,
        RequestKind::FindCoordinator(r) if r.key_type == 0
    ) || matches!(
        body,
        RequestKind::JoinGroup(_)
            | RequestKind::SyncGroup(_)
            | RequestKind::Heartbeat(_)
            | RequestKind::LeaveGroup(_)
            | RequestKind::OffsetCommit(_)
            | RequestKind::OffsetFetch(_)
            | RequestKind::DescribeGroups(_)
            | RequestKind::DeleteGroups(_)
            | RequestKind::OffsetDelete(_)
            | RequestKind::ConsumerGroupHeartbeat(_)
            | RequestKind::ConsumerGroupDescribe(_)
            | RequestKind::ShareGroupHeartbeat(_)
            | RequestKind::ShareGroupDescribe(_)
            | RequestKind::ShareFetch(_)
            | RequestKind::ShareAcknowledge(_)
            | RequestKind::DescribeShareGroupOffsets(_)
            | RequestKind::AlterShareGroupOffsets(_)
            | RequestKind::DeleteShareGroupOffsets(_)
    )
}

/// A handler that awaits a controller commit, as a `Later` reply: the commit
/// holds this request only, never the runtime worker or the connection's reads.
macro_rules! later {
    ($span:expr, $correlation_id:expr, $api_key:expr, $version:expr, $kind:ident, $fut:expr) => {{
        let pending = $fut;
        let fut = async move { encode($correlation_id, $api_key, $version, &ResponseKind::$kind(pending.await)) };
        return Ok(Reply::Exclusive(Box::pin(fut.instrument($span.clone()))));
    }};
}

/// Handles one request. Everything that must happen in request order (appends)
/// happens before this returns; waiting (fsync, long poll, a controller commit)
/// is left in `Later`. `Err` means the connection must close.
fn dispatch_request(b: &Arc<Broker>, req: Request, peer: SocketAddr) -> Result<Reply, String> {
    if b.authorizer_enabled() && !checks_acls(&req.body) && !crate::security::authz::is_super(b) {
        // Refused without an answer of its own: the connection closes, logged.
        return Err(format!("{:?} is allowed to super.users only while ACLs are on (Karst does not check ACLs for it yet)", req.api_key));
    }
    if needs_offsets_topic(&req.body) && (!b.groups.has_topic(b) || !b.groups.serves_all_it_leads(b)) {
        // First use of groups: create the offsets topic, then handle the request; or a
        // leadership just taken over: its groups are read back first.
        let b = b.clone();
        let fut = async move {
            if let Err(e) = b.groups.ensure_topic(&b).await {
                tracing::warn!("creating {} failed: {e}", crate::group::OFFSETS_TOPIC);
            }
            b.groups.wait_until_served(&b, std::time::Duration::from_secs(5)).await;
            match handle_request(&b, req, peer)? {
                Reply::Now(r) => Ok(r),
                Reply::Later(f) | Reply::Exclusive(f) | Reply::ExclusiveUntil(f, _) => f.await,
            }
        };
        return Ok(Reply::Exclusive(Box::pin(fut)));
    }
    if matches!(&req.body, RequestKind::FindCoordinator(r) if r.key_type == 1)
        && !b.metadata.image().topics.contains_key(crate::txn::TXN_TOPIC)
    {
        // First use of transactions: create the transaction state topic first.
        let b = b.clone();
        let fut = async move {
            if let Err(e) = b.txns.ensure_topic(&b).await {
                tracing::warn!("creating {} failed: {e}", crate::txn::TXN_TOPIC);
            }
            match handle_request(&b, req, peer)? {
                Reply::Now(r) => Ok(r),
                Reply::Later(f) | Reply::Exclusive(f) | Reply::ExclusiveUntil(f, _) => f.await,
            }
        };
        return Ok(Reply::Exclusive(Box::pin(fut)));
    }
    handle_request(b, req, peer)
}

/// Counts `bytes` of a request of the connection of `session` against its `kind`
/// quota: the throttle time (ms) to answer with, the connection muted for as long.
fn quota_throttle(b: &Broker, session: &authz::Session, kind: Kind, client_id: &str, bytes: usize) -> i32 {
    let image = b.metadata.image();
    // Most brokers have no quota at all: no principal copied, no lock taken.
    if image.quotas.is_empty() {
        return 0;
    }
    let user = session.principal().name;
    let ms = b.throttles.record(&image.quotas, kind, &user, client_id, bytes, std::time::Instant::now());
    if ms > 0 {
        session.mute_for(ms);
        crate::metrics::throttled(kind, ms);
    }
    i32::try_from(ms).unwrap_or(i32::MAX)
}

/// KIP-599 for the request being handled: takes `partitions` controller mutations
/// from its client's quota, `strict` in the versions that know the error. A refusal
/// is THROTTLING_QUOTA_EXCEEDED; `throttle` keeps the longest throttle time.
pub(crate) fn take_mutations(b: &Broker, client_id: &str, partitions: i32, strict: bool, throttle: &mut i32) -> Result<(), (i16, String)> {
    let Some(session) = authz::session() else { return Ok(()) };
    let image = b.metadata.image();
    let user = session.principal().name;
    let now = std::time::Instant::now();
    let (ms, refused) = match b.throttles.mutate(&image.quotas, &user, client_id, f64::from(partitions.max(0)), strict, now) {
        crate::quotas::Mutations::Taken(ms) => (ms, false),
        crate::quotas::Mutations::Refused(ms) => (ms, true),
    };
    *throttle = (*throttle).max(i32::try_from(ms).unwrap_or(i32::MAX));
    if refused {
        Err((THROTTLING_QUOTA_EXCEEDED, "The throttling quota has been exceeded.".into()))
    } else {
        Ok(())
    }
}

/// After a request that took controller mutations: its connection muted for the throttle.
pub(crate) fn mutations_throttled(throttle: i32) {
    if throttle > 0 {
        if let Some(s) = authz::session() {
            s.mute_for(throttle as u64);
        }
        crate::metrics::throttled(Kind::Mutation, throttle as u64);
    }
}

const THROTTLING_QUOTA_EXCEEDED: i16 = 89;

fn handle_request(b: &Arc<Broker>, req: Request, peer: SocketAddr) -> Result<Reply, String> {
    let Request { api_key, version, correlation_id, body, client_id } = req;
    let client_id = client_id.map(|c| c.to_string()).unwrap_or_default();
    let span = debug_span!("request", api = ?api_key, version, correlation_id);
    let _enter = span.enter();
    let response = match body {
        RequestKind::ApiVersions(r) => {
            ResponseKind::ApiVersions(api_versions::handle(r, version, &b.cluster_id, b.node_id, b.config.transaction_version))
        }
        RequestKind::Metadata(r) => later!(span, correlation_id, api_key, version, Metadata, metadata::handle(b.clone(), r, version)),
        RequestKind::Produce(r) => {
            let bytes: usize = r.topic_data.iter().flat_map(|t| &t.partition_data).map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum();
            let throttle = authz::session().map_or(0, |s| quota_throttle(b, &s, Kind::Produce, &client_id, bytes));
            let additions = produce::txn_additions(b, &r, version);
            if !additions.is_empty() {
                // Transactions v2: the partitions are added to the transaction before
                // the appends, and no later request of the connection is looked at
                // meanwhile (its batches follow these).
                let b = b.clone();
                let id = r.transactional_id.as_ref().map(|t| t.to_string()).unwrap_or_default();
                let (appended, release) = tokio::sync::oneshot::channel();
                let fut = async move {
                    let adds = produce::add_to_txn(&b, &id, additions).await;
                    let inflight = produce::start(&b, r, version, adds);
                    let _ = appended.send(());
                    if !inflight.wants_response() {
                        return Ok(None);
                    }
                    let response = inflight.finish().await.with_throttle_time_ms(throttle);
                    encode(correlation_id, api_key, version, &ResponseKind::Produce(response))
                };
                return Ok(Reply::ExclusiveUntil(Box::pin(fut.instrument(span.clone())), release));
            }
            let inflight = produce::start(b, r, version, Default::default());
            if !inflight.wants_response() {
                return Ok(Reply::Now(None));
            }
            let fut = async move {
                let response = inflight.finish().await.with_throttle_time_ms(throttle);
                encode(correlation_id, api_key, version, &ResponseKind::Produce(response))
            };
            return Ok(Reply::Later(Box::pin(fut.instrument(span.clone()))));
        }
        RequestKind::Fetch(mut r) => {
            let follower = if version >= 15 { r.replica_state.replica_id.0 >= 0 } else { r.replica_id.0 >= 0 };
            // A consumer under a quota gets at most what the quota allows over its
            // window in one response, as Kafka; what it got is counted after.
            let session = authz::session().filter(|_| !follower);
            if let Some(s) = session.as_ref().filter(|_| !b.metadata.image().quotas.is_empty()) {
                let image = b.metadata.image();
                if let Some(cap) = Throttles::window_bytes(&image.quotas, Kind::Fetch, &s.principal().name, &client_id) {
                    r.max_bytes = r.max_bytes.min(i32::try_from(cap.max(1)).unwrap_or(i32::MAX));
                }
            }
            // The fetch session is settled now, in request order; the reading waits.
            let pending = fetch::start(b, r, version);
            let b = b.clone();
            let fut = async move {
                let mut response = pending.await;
                if let Some(s) = session {
                    let bytes: usize =
                        response.responses.iter().flat_map(|t| &t.partitions).map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum();
                    let throttle = quota_throttle(&b, &s, Kind::Fetch, &client_id, bytes);
                    response.throttle_time_ms = response.throttle_time_ms.max(throttle);
                }
                encode(correlation_id, api_key, version, &ResponseKind::Fetch(response))
            };
            return Ok(Reply::Later(Box::pin(fut.instrument(span.clone()))));
        }
        RequestKind::JoinGroup(r) => {
            let b = b.clone();
            let fut = async move {
                encode(correlation_id, api_key, version, &ResponseKind::JoinGroup(groups::join_group(b, r, version, client_id, peer).await))
            };
            return Ok(Reply::Later(Box::pin(fut.instrument(span.clone()))));
        }
        RequestKind::SyncGroup(r) => {
            let b = b.clone();
            let fut =
                async move { encode(correlation_id, api_key, version, &ResponseKind::SyncGroup(groups::sync_group(b, r, version).await)) };
            return Ok(Reply::Later(Box::pin(fut.instrument(span.clone()))));
        }
        RequestKind::OffsetCommit(r) => {
            let b = b.clone();
            let fut = async move {
                encode(correlation_id, api_key, version, &ResponseKind::OffsetCommit(groups::offset_commit(b, r, version).await))
            };
            return Ok(Reply::Later(Box::pin(fut.instrument(span.clone()))));
        }
        RequestKind::DeleteGroups(r) => {
            let b = b.clone();
            let fut =
                async move { encode(correlation_id, api_key, version, &ResponseKind::DeleteGroups(groups::delete_groups(b, r).await)) };
            return Ok(Reply::Later(Box::pin(fut.instrument(span.clone()))));
        }
        RequestKind::OffsetDelete(r) => {
            let b = b.clone();
            let fut =
                async move { encode(correlation_id, api_key, version, &ResponseKind::OffsetDelete(groups::offset_delete(b, r).await)) };
            return Ok(Reply::Later(Box::pin(fut.instrument(span.clone()))));
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let fut = consumer_groups::heartbeat(b.clone(), r, version, client_id, peer);
            later!(span, correlation_id, api_key, version, ConsumerGroupHeartbeat, fut)
        }
        RequestKind::ConsumerGroupDescribe(r) => ResponseKind::ConsumerGroupDescribe(consumer_groups::describe(b, r, version)),
        RequestKind::ShareGroupHeartbeat(r) => {
            let b = b.clone();
            let fut = async move {
                let response = share::heartbeat(b, r, client_id, peer).await;
                encode(correlation_id, api_key, version, &ResponseKind::ShareGroupHeartbeat(response))
            };
            return Ok(Reply::Later(Box::pin(fut.instrument(span.clone()))));
        }
        RequestKind::ShareGroupDescribe(r) => ResponseKind::ShareGroupDescribe(share::describe(b, r)),
        RequestKind::ShareFetch(r) => {
            // The share session is settled now, in request order; the reading waits.
            let pending = share::share_fetch(b, r);
            let fut = async move { encode(correlation_id, api_key, version, &ResponseKind::ShareFetch(pending.await)) };
            return Ok(Reply::Later(Box::pin(fut.instrument(span.clone()))));
        }
        RequestKind::ShareAcknowledge(r) => {
            let pending = share::share_acknowledge(b, r);
            let fut = async move { encode(correlation_id, api_key, version, &ResponseKind::ShareAcknowledge(pending.await)) };
            return Ok(Reply::Later(Box::pin(fut.instrument(span.clone()))));
        }
        RequestKind::DescribeShareGroupOffsets(r) => ResponseKind::DescribeShareGroupOffsets(share::describe_offsets(b, r)),
        RequestKind::AlterShareGroupOffsets(r) => {
            later!(span, correlation_id, api_key, version, AlterShareGroupOffsets, share::alter_offsets(b.clone(), r))
        }
        RequestKind::DeleteShareGroupOffsets(r) => {
            later!(span, correlation_id, api_key, version, DeleteShareGroupOffsets, share::delete_offsets(b.clone(), r))
        }
        RequestKind::ReadShareGroupState(r) => {
            later!(span, correlation_id, api_key, version, ReadShareGroupState, share_state::read(b.clone(), r))
        }
        RequestKind::WriteShareGroupState(r) => {
            later!(span, correlation_id, api_key, version, WriteShareGroupState, share_state::write(b.clone(), r))
        }
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(groups::find_coordinator(b, r, version)),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(b, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave_group(b, r, version)),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(groups::offset_fetch(b, r, version)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list_groups(b, r, version)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(groups::describe_groups(b, r, version)),
        RequestKind::AlterConfigs(r) => later!(span, correlation_id, api_key, version, AlterConfigs, alter_configs::replace(b.clone(), r)),
        RequestKind::IncrementalAlterConfigs(r) => {
            later!(span, correlation_id, api_key, version, IncrementalAlterConfigs, alter_configs::incremental(b.clone(), r))
        }
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(b, r, version)),
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(leader_epoch::handle(b, r)),
        RequestKind::CreateTopics(r) => {
            later!(span, correlation_id, api_key, version, CreateTopics, admin::create_topics(b.clone(), r, version, client_id))
        }
        RequestKind::DeleteTopics(r) => {
            later!(span, correlation_id, api_key, version, DeleteTopics, admin::delete_topics(b.clone(), r, version, client_id))
        }
        RequestKind::CreatePartitions(r) => {
            later!(span, correlation_id, api_key, version, CreatePartitions, admin::create_partitions(b.clone(), r, version, client_id))
        }
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(admin::delete_records(b, r)),
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(describe::describe_configs(b, r, version)),
        RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(describe::describe_cluster(b, r, version)),
        RequestKind::AlterPartitionReassignments(r) => {
            later!(span, correlation_id, api_key, version, AlterPartitionReassignments, reassign::alter(b.clone(), r))
        }
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(reassign::list(b, r)),
        RequestKind::DescribeLogDirs(r) => ResponseKind::DescribeLogDirs(log_dirs::handle(b, r)),
        RequestKind::DescribeTopicPartitions(r) => ResponseKind::DescribeTopicPartitions(topic_partitions::handle(b, r)),
        RequestKind::ElectLeaders(r) => {
            later!(span, correlation_id, api_key, version, ElectLeaders, elect_leaders::handle(b.clone(), r, version))
        }
        RequestKind::DescribeProducers(r) => ResponseKind::DescribeProducers(describe_producers::handle(b, r)),
        RequestKind::InitProducerId(r) => {
            later!(span, correlation_id, api_key, version, InitProducerId, producer_id::handle(b.clone(), r, version))
        }
        RequestKind::AddPartitionsToTxn(r) => {
            later!(span, correlation_id, api_key, version, AddPartitionsToTxn, txn::add_partitions(b.clone(), r, version))
        }
        RequestKind::AddOffsetsToTxn(r) => {
            later!(span, correlation_id, api_key, version, AddOffsetsToTxn, txn::add_offsets(b.clone(), r, version))
        }
        RequestKind::EndTxn(r) => later!(span, correlation_id, api_key, version, EndTxn, txn::end_txn(b.clone(), r, version)),
        RequestKind::TxnOffsetCommit(r) => {
            later!(span, correlation_id, api_key, version, TxnOffsetCommit, txn::txn_offset_commit(b.clone(), r, version))
        }
        RequestKind::WriteTxnMarkers(r) => {
            later!(span, correlation_id, api_key, version, WriteTxnMarkers, txn::write_markers(b.clone(), r))
        }
        RequestKind::DescribeTransactions(r) => ResponseKind::DescribeTransactions(txn::describe(b, r)),
        RequestKind::ListTransactions(r) => ResponseKind::ListTransactions(txn::list(b, r, version)),
        RequestKind::CreateAcls(r) => later!(span, correlation_id, api_key, version, CreateAcls, acls::create(b.clone(), r)),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(b, r)),
        RequestKind::DescribeClientQuotas(r) => ResponseKind::DescribeClientQuotas(client_quotas::describe(b, r)),
        RequestKind::AlterClientQuotas(r) => {
            later!(span, correlation_id, api_key, version, AlterClientQuotas, client_quotas::alter(b.clone(), r))
        }
        RequestKind::DeleteAcls(r) => later!(span, correlation_id, api_key, version, DeleteAcls, acls::delete(b.clone(), r)),
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(b, r)),
        RequestKind::AlterUserScramCredentials(r) => {
            later!(span, correlation_id, api_key, version, AlterUserScramCredentials, scram_credentials::alter(b.clone(), r))
        }
        // On a listener without SASL (SASL listeners handle these before dispatch), as
        // Kafka answers them.
        RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(
            kafka_protocol::messages::SaslHandshakeResponse::default().with_error_code(crate::security::sasl::ILLEGAL_SASL_STATE),
        ),
        RequestKind::SaslAuthenticate(_) => ResponseKind::SaslAuthenticate(
            kafka_protocol::messages::SaslAuthenticateResponse::default()
                .with_error_code(crate::security::sasl::ILLEGAL_SASL_STATE)
                .with_error_message(Some(str_bytes("Unexpected SASL request on a listener without SASL"))),
        ),
        other => return Err(format!("no handler for {other:?}")),
    };
    encode(correlation_id, api_key, version, &response).map(Reply::Now)
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
