//! Every advertised version of every response encodes, with the fields the
//! handlers fill in. A field set beyond its version would make kafka-protocol
//! refuse to encode, and the client would see a closed connection instead.

use kafka_protocol::messages::*;
use karst_protocol::api_versions::SUPPORTED;
use karst_protocol::codec::encode_response;

#[test]
fn empty_responses_encode_at_every_advertised_version() {
    for s in SUPPORTED {
        for v in s.min..=s.max {
            let body = match s.key {
                ApiKey::Produce => ResponseKind::Produce(ProduceResponse::default()),
                ApiKey::Fetch => ResponseKind::Fetch(FetchResponse::default()),
                ApiKey::ListOffsets => ResponseKind::ListOffsets(ListOffsetsResponse::default()),
                ApiKey::OffsetForLeaderEpoch => ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default()),
                ApiKey::Metadata => ResponseKind::Metadata(MetadataResponse::default()),
                ApiKey::ApiVersions => ResponseKind::ApiVersions(ApiVersionsResponse::default()),
                ApiKey::CreateTopics => ResponseKind::CreateTopics(CreateTopicsResponse::default()),
                ApiKey::DeleteTopics => ResponseKind::DeleteTopics(DeleteTopicsResponse::default()),
                ApiKey::DeleteRecords => ResponseKind::DeleteRecords(DeleteRecordsResponse::default()),
                ApiKey::InitProducerId => ResponseKind::InitProducerId(InitProducerIdResponse::default()),
                ApiKey::DescribeConfigs => ResponseKind::DescribeConfigs(DescribeConfigsResponse::default()),
                ApiKey::CreatePartitions => ResponseKind::CreatePartitions(CreatePartitionsResponse::default()),
                ApiKey::DescribeCluster => ResponseKind::DescribeCluster(DescribeClusterResponse::default()),
                ApiKey::FindCoordinator => ResponseKind::FindCoordinator(FindCoordinatorResponse::default()),
                ApiKey::JoinGroup => ResponseKind::JoinGroup(JoinGroupResponse::default()),
                ApiKey::SyncGroup => ResponseKind::SyncGroup(SyncGroupResponse::default()),
                ApiKey::Heartbeat => ResponseKind::Heartbeat(HeartbeatResponse::default()),
                ApiKey::LeaveGroup => ResponseKind::LeaveGroup(LeaveGroupResponse::default()),
                ApiKey::OffsetCommit => ResponseKind::OffsetCommit(OffsetCommitResponse::default()),
                ApiKey::OffsetFetch => ResponseKind::OffsetFetch(OffsetFetchResponse::default()),
                ApiKey::ListGroups => ResponseKind::ListGroups(ListGroupsResponse::default()),
                ApiKey::DescribeGroups => ResponseKind::DescribeGroups(DescribeGroupsResponse::default()),
                ApiKey::DeleteGroups => ResponseKind::DeleteGroups(DeleteGroupsResponse::default()),
                ApiKey::OffsetDelete => ResponseKind::OffsetDelete(OffsetDeleteResponse::default()),
                ApiKey::ConsumerGroupHeartbeat => ResponseKind::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse::default()),
                ApiKey::ConsumerGroupDescribe => ResponseKind::ConsumerGroupDescribe(ConsumerGroupDescribeResponse::default()),
                ApiKey::AlterConfigs => ResponseKind::AlterConfigs(AlterConfigsResponse::default()),
                ApiKey::IncrementalAlterConfigs => ResponseKind::IncrementalAlterConfigs(IncrementalAlterConfigsResponse::default()),
                ApiKey::AlterPartitionReassignments => {
                    ResponseKind::AlterPartitionReassignments(AlterPartitionReassignmentsResponse::default())
                }
                ApiKey::ListPartitionReassignments => {
                    ResponseKind::ListPartitionReassignments(ListPartitionReassignmentsResponse::default())
                }
                ApiKey::DescribeLogDirs => ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default()),
                ApiKey::DescribeTopicPartitions => ResponseKind::DescribeTopicPartitions(DescribeTopicPartitionsResponse::default()),
                ApiKey::ElectLeaders => ResponseKind::ElectLeaders(ElectLeadersResponse::default()),
                ApiKey::DescribeProducers => ResponseKind::DescribeProducers(DescribeProducersResponse::default()),
                ApiKey::AddPartitionsToTxn => ResponseKind::AddPartitionsToTxn(AddPartitionsToTxnResponse::default()),
                ApiKey::AddOffsetsToTxn => ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default()),
                ApiKey::EndTxn => ResponseKind::EndTxn(EndTxnResponse::default()),
                ApiKey::WriteTxnMarkers => ResponseKind::WriteTxnMarkers(WriteTxnMarkersResponse::default()),
                ApiKey::TxnOffsetCommit => ResponseKind::TxnOffsetCommit(TxnOffsetCommitResponse::default()),
                ApiKey::DescribeTransactions => ResponseKind::DescribeTransactions(DescribeTransactionsResponse::default()),
                ApiKey::ListTransactions => ResponseKind::ListTransactions(ListTransactionsResponse::default()),
                ApiKey::DescribeAcls => ResponseKind::DescribeAcls(DescribeAclsResponse::default()),
                ApiKey::CreateAcls => ResponseKind::CreateAcls(CreateAclsResponse::default()),
                ApiKey::DeleteAcls => ResponseKind::DeleteAcls(DeleteAclsResponse::default()),
                ApiKey::SaslHandshake => ResponseKind::SaslHandshake(SaslHandshakeResponse::default()),
                ApiKey::SaslAuthenticate => ResponseKind::SaslAuthenticate(SaslAuthenticateResponse::default()),
                ApiKey::DescribeUserScramCredentials => {
                    ResponseKind::DescribeUserScramCredentials(DescribeUserScramCredentialsResponse::default())
                }
                ApiKey::AlterUserScramCredentials => ResponseKind::AlterUserScramCredentials(AlterUserScramCredentialsResponse::default()),
                ApiKey::DescribeClientQuotas => ResponseKind::DescribeClientQuotas(DescribeClientQuotasResponse::default()),
                ApiKey::AlterClientQuotas => ResponseKind::AlterClientQuotas(AlterClientQuotasResponse::default()),
                ApiKey::ShareGroupHeartbeat => ResponseKind::ShareGroupHeartbeat(ShareGroupHeartbeatResponse::default()),
                ApiKey::ShareGroupDescribe => ResponseKind::ShareGroupDescribe(ShareGroupDescribeResponse::default()),
                ApiKey::ShareFetch => ResponseKind::ShareFetch(ShareFetchResponse::default()),
                ApiKey::ShareAcknowledge => ResponseKind::ShareAcknowledge(ShareAcknowledgeResponse::default()),
                ApiKey::DescribeShareGroupOffsets => ResponseKind::DescribeShareGroupOffsets(DescribeShareGroupOffsetsResponse::default()),
                ApiKey::AlterShareGroupOffsets => ResponseKind::AlterShareGroupOffsets(AlterShareGroupOffsetsResponse::default()),
                ApiKey::DeleteShareGroupOffsets => ResponseKind::DeleteShareGroupOffsets(DeleteShareGroupOffsetsResponse::default()),
                ApiKey::ReadShareGroupState => ResponseKind::ReadShareGroupState(ReadShareGroupStateResponse::default()),
                ApiKey::WriteShareGroupState => ResponseKind::WriteShareGroupState(WriteShareGroupStateResponse::default()),
                other => panic!("add {other:?} to this test"),
            };
            encode_response(1, s.key, v, &body).unwrap_or_else(|e| panic!("{:?} v{v}: {e}", s.key));
        }
    }
}
