//! CreateTopics v0–v1 and DeleteTopics v0 (Kafka 0.10.1–0.11), which
//! kafka-protocol no longer speaks.
//!
//! CreateTopics request: `[name string, num_partitions i32, replication_factor
//! i16, assignments [partition_index i32, broker_ids [i32]], configs [name string,
//! value nullable string]], timeout_ms i32, validate_only bool (v1+)`.
//! CreateTopics response: `[name string, error_code i16, error_message nullable
//! string (v1+)]` (no throttle time).
//!
//! DeleteTopics request: `topic_names [string], timeout_ms i32` (v1's layout).
//! DeleteTopics response: `[name string, error_code i16]` (no throttle time).

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::wire::{put_array, put_nullable_string, put_string, Reader, Wire, WireError};

pub(super) fn decode_create_request(r: &mut Reader, version: i16) -> Wire<CreateTopicsRequest> {
    // name 2, num_partitions 4, replication_factor 2, two array counts 8
    let topics = r.array("topics", 16, |r| {
        let name = TopicName(r.string("topics.name")?);
        let num_partitions = r.i32("num_partitions")?;
        let replication_factor = r.i16("replication_factor")?;
        let assignments = r.array("assignments", 8, |r| {
            let partition_index = r.i32("assignments.partition_index")?;
            let broker_ids = r.array("broker_ids", 4, |r| r.i32("broker_ids").map(BrokerId))?;
            Ok(CreatableReplicaAssignment::default().with_partition_index(partition_index).with_broker_ids(broker_ids))
        })?;
        let configs = r.array("configs", 4, |r| {
            let name = r.string("configs.name")?;
            let value = r.nullable_string("configs.value")?;
            Ok(CreatableTopicConfig::default().with_name(name).with_value(value))
        })?;
        Ok(CreatableTopic::default()
            .with_name(name)
            .with_num_partitions(num_partitions)
            .with_replication_factor(replication_factor)
            .with_assignments(assignments)
            .with_configs(configs))
    })?;
    let timeout_ms = r.i32("timeout_ms")?;
    let validate_only = if version >= 1 { r.bool("validate_only")? } else { false };
    Ok(CreateTopicsRequest::default().with_topics(topics).with_timeout_ms(timeout_ms).with_validate_only(validate_only))
}

pub(super) fn encode_create_request(out: &mut BytesMut, version: i16, req: &CreateTopicsRequest) -> Wire<()> {
    // Kafka's schema marks validate_only not ignorable: a v0 request would create
    // what was only to be checked.
    if version < 1 && req.validate_only {
        return Err(WireError::NotInVersion { field: "validate_only", version });
    }
    put_array(out, "topics", &req.topics, |out, t| {
        put_string(out, "topics.name", &t.name)?;
        out.put_i32(t.num_partitions);
        out.put_i16(t.replication_factor);
        put_array(out, "assignments", &t.assignments, |out, a| {
            out.put_i32(a.partition_index);
            put_array(out, "broker_ids", &a.broker_ids, |out, b| {
                out.put_i32(b.0);
                Ok(())
            })
        })?;
        put_array(out, "configs", &t.configs, |out, c| {
            put_string(out, "configs.name", &c.name)?;
            put_nullable_string(out, "configs.value", c.value.as_deref())
        })
    })?;
    out.put_i32(req.timeout_ms);
    if version >= 1 {
        out.put_u8(u8::from(req.validate_only));
    }
    Ok(())
}

pub(super) fn encode_create_response(out: &mut BytesMut, version: i16, resp: &CreateTopicsResponse) -> Wire<()> {
    put_array(out, "topics", &resp.topics, |out, t| {
        put_string(out, "topics.name", &t.name)?;
        out.put_i16(t.error_code);
        if version >= 1 {
            put_nullable_string(out, "error_message", t.error_message.as_deref())?;
        }
        Ok(())
    })
}

pub(super) fn decode_create_response(r: &mut Reader, version: i16) -> Wire<CreateTopicsResponse> {
    let topics = r.array("topics", if version >= 1 { 6 } else { 4 }, |r| {
        let name = TopicName(r.string("topics.name")?);
        let error_code = r.i16("error_code")?;
        let error_message = if version >= 1 { r.nullable_string("error_message")? } else { None };
        // Partition count, replication factor and configs are not reported before v5.
        Ok(CreatableTopicResult::default().with_name(name).with_error_code(error_code).with_error_message(error_message).with_configs(None))
    })?;
    Ok(CreateTopicsResponse::default().with_throttle_time_ms(0).with_topics(topics))
}

pub(super) fn decode_delete_request(r: &mut Reader, _version: i16) -> Wire<DeleteTopicsRequest> {
    let topic_names = r.array("topic_names", 2, |r| r.string("topic_names").map(TopicName))?;
    let timeout_ms = r.i32("timeout_ms")?;
    Ok(DeleteTopicsRequest::default().with_topic_names(topic_names).with_timeout_ms(timeout_ms))
}

pub(super) fn encode_delete_request(out: &mut BytesMut, version: i16, req: &DeleteTopicsRequest) -> Wire<()> {
    // Deletion by topic id (v6+) cannot be said here.
    if !req.topics.is_empty() {
        return Err(WireError::NotInVersion { field: "topics", version });
    }
    put_array(out, "topic_names", &req.topic_names, |out, n| put_string(out, "topic_names", n))?;
    out.put_i32(req.timeout_ms);
    Ok(())
}

pub(super) fn encode_delete_response(out: &mut BytesMut, _version: i16, resp: &DeleteTopicsResponse) -> Wire<()> {
    put_array(out, "responses", &resp.responses, |out, t| {
        let name = t.name.as_ref().ok_or(WireError::Null { field: "responses.name" })?;
        put_string(out, "responses.name", name)?;
        out.put_i16(t.error_code);
        Ok(())
    })
}

pub(super) fn decode_delete_response(r: &mut Reader, _version: i16) -> Wire<DeleteTopicsResponse> {
    let responses = r.array("responses", 4, |r| {
        let name = TopicName(r.string("responses.name")?);
        let error_code = r.i16("error_code")?;
        Ok(DeletableTopicResult::default().with_name(Some(name)).with_error_code(error_code).with_error_message(None))
    })?;
    Ok(DeleteTopicsResponse::default().with_throttle_time_ms(0).with_responses(responses))
}

#[cfg(test)]
pub(super) mod goldens {
    use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::legacy::tests::Golden;

    fn s(text: &'static str) -> StrBytes {
        StrBytes::from_static_str(text)
    }

    fn create_request(version: i16) -> CreateTopicsRequest {
        CreateTopicsRequest::default().with_timeout_ms(30_000).with_validate_only(version >= 1).with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(s("new")))
                .with_num_partitions(3)
                .with_replication_factor(1)
                .with_configs(vec![CreatableTopicConfig::default().with_name(s("cleanup.policy")).with_value(Some(s("compact")))]),
            CreatableTopic::default()
                .with_name(TopicName(s("manual")))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(vec![CreatableReplicaAssignment::default()
                    .with_partition_index(0)
                    .with_broker_ids(vec![BrokerId(1), BrokerId(2)])])
                .with_configs(vec![CreatableTopicConfig::default().with_name(s("retention.ms")).with_value(None)]),
        ])
    }

    #[rustfmt::skip]
    fn create_request_bytes(version: i16) -> Vec<u8> {
        let mut b = [
            &[0, 0, 0, 2][..],                      // topics: 2
            &[0, 3], b"new",                        // name: "new"
            &[0, 0, 0, 3],                          // num_partitions: 3
            &[0, 1],                                // replication_factor: 1
            &[0, 0, 0, 0],                          // assignments: none
            &[0, 0, 0, 1],                          // configs: 1
            &[0, 14], b"cleanup.policy",            //   name
            &[0, 7], b"compact",                    //   value
            &[0, 6], b"manual",                     // name: "manual"
            &[0xff, 0xff, 0xff, 0xff],              // num_partitions: -1 (given by the assignment)
            &[0xff, 0xff],                          // replication_factor: -1
            &[0, 0, 0, 1],                          // assignments: 1
            &[0, 0, 0, 0],                          //   partition_index: 0
            &[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2],  //   broker_ids: [1, 2]
            &[0, 0, 0, 1],                          // configs: 1
            &[0, 12], b"retention.ms",              //   name
            &[0xff, 0xff],                          //   value: null
            &[0, 0, 0x75, 0x30],                    // timeout_ms: 30000
        ]
        .concat();
        if version >= 1 {
            b.push(1); // validate_only: true
        }
        b
    }

    #[rustfmt::skip]
    fn delete_request_bytes() -> Vec<u8> {
        [
            &[0, 0, 0, 2][..],      // topic_names: 2
            &[0, 3], b"old",        //   "old"
            &[0, 4], b"gone",       //   "gone"
            &[0, 0, 0x75, 0x30],    // timeout_ms: 30000
        ]
        .concat()
    }

    #[rustfmt::skip]
    fn delete_response_bytes() -> Vec<u8> {
        [
            &[0, 0, 0, 2][..],      // responses: 2
            &[0, 3], b"old",        //   name: "old"
            &[0, 0],                //   error_code: NONE
            &[0, 4], b"gone",       //   name: "gone"
            &[0, 3],                //   error_code: UNKNOWN_TOPIC_OR_PARTITION
        ]
        .concat()
    }

    fn create_response(version: i16) -> CreateTopicsResponse {
        let result = |name, error, message| {
            CreatableTopicResult::default()
                .with_name(TopicName(s(name)))
                .with_error_code(error)
                .with_error_message(if version >= 1 { message } else { None })
                .with_configs(None)
        };
        CreateTopicsResponse::default()
            .with_topics(vec![result("new", 0, None), result("manual", 36, Some(s("Topic 'manual' already exists.")))])
    }

    fn create_response_bytes(version: i16) -> Vec<u8> {
        let mut b = vec![0, 0, 0, 2]; // topics: 2
        b.extend_from_slice(&[0, 3]);
        b.extend_from_slice(b"new"); // name: "new"
        b.extend_from_slice(&[0, 0]); // error_code: NONE
        if version >= 1 {
            b.extend_from_slice(&[0xff, 0xff]); // error_message: null
        }
        b.extend_from_slice(&[0, 6]);
        b.extend_from_slice(b"manual"); // name: "manual"
        b.extend_from_slice(&[0, 36]); // error_code: TOPIC_ALREADY_EXISTS
        if version >= 1 {
            b.extend_from_slice(&[0, 30]);
            b.extend_from_slice(b"Topic 'manual' already exists."); // error_message
        }
        b
    }

    pub(crate) fn all() -> Vec<Golden> {
        let mut all: Vec<Golden> = (0..=1)
            .map(|version| Golden {
                key: ApiKey::CreateTopics,
                version,
                request: create_request_bytes(version),
                decoded_request: RequestKind::CreateTopics(create_request(version)),
                response: create_response_bytes(version),
                decoded_response: ResponseKind::CreateTopics(create_response(version)),
            })
            .collect();
        let delete_result = |name, error| {
            DeletableTopicResult::default().with_name(Some(TopicName(s(name)))).with_error_code(error).with_error_message(None)
        };
        all.push(Golden {
            key: ApiKey::DeleteTopics,
            version: 0,
            request: delete_request_bytes(),
            decoded_request: RequestKind::DeleteTopics(
                DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("old")), TopicName(s("gone"))]).with_timeout_ms(30_000),
            ),
            response: delete_response_bytes(),
            decoded_response: ResponseKind::DeleteTopics(
                DeleteTopicsResponse::default().with_responses(vec![delete_result("old", 0), delete_result("gone", 3)]),
            ),
        });
        all
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;

    use super::*;

    #[test]
    fn validate_only_cannot_be_said_in_v0() {
        let req = CreateTopicsRequest::default().with_validate_only(true);
        assert_eq!(
            encode_create_request(&mut BytesMut::new(), 0, &req),
            Err(WireError::NotInVersion { field: "validate_only", version: 0 })
        );
        encode_create_request(&mut BytesMut::new(), 1, &req).expect("v1 carries it");
    }

    #[test]
    fn deletion_by_topic_id_cannot_be_said_in_v0() {
        let req = DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default()]);
        assert!(encode_delete_request(&mut BytesMut::new(), 0, &req).is_err());
    }

    #[test]
    fn a_nameless_delete_result_cannot_go_out_in_v0() {
        let resp = DeleteTopicsResponse::default().with_responses(vec![DeletableTopicResult::default().with_name(None)]);
        assert_eq!(encode_delete_response(&mut BytesMut::new(), 0, &resp), Err(WireError::Null { field: "responses.name" }));
    }
}
