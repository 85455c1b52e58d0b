//! DescribeConfigs v0, which kafka-protocol no longer speaks (sarama 1.22's
//! ClusterAdmin.ListTopics and DescribeConfig send it).
//!
//! Request: `[resource_type i8, resource_name string, configuration_keys nullable
//! [string]]` — v1 without `include_synonyms`, which decodes as false.
//!
//! Response: `throttle_time_ms i32, [error_code i16, error_message nullable string,
//! resource_type i8, resource_name string, [name string, value nullable string,
//! read_only bool, is_default bool, is_sensitive bool]]`. v0's `is_default` is
//! written as `config_source == DEFAULT_CONFIG`; reading it back, the source is
//! derived as Kafka's client does (`DescribeConfigsResponse`'s v0 constructor):
//! DEFAULT_CONFIG if default, else STATIC_BROKER_CONFIG for a broker, TOPIC_CONFIG
//! for a topic, UNKNOWN otherwise.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::wire::{put_array, put_nullable_string, put_string, Reader, Wire};

/// Config sources (DescribeConfigs v1+).
const SOURCE_UNKNOWN: i8 = 0;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
pub(super) const SOURCE_DEFAULT: i8 = 5;

/// Resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub(super) fn decode_request(r: &mut Reader, _version: i16) -> Wire<DescribeConfigsRequest> {
    // type 1, name 2, keys count 4
    let resources = r.array("resources", 7, |r| {
        let resource_type = r.i8("resource_type")?;
        let resource_name = r.string("resource_name")?;
        let configuration_keys = r.nullable_array("configuration_keys", 2, |r| r.string("configuration_keys"))?;
        Ok(DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(resource_name)
            .with_configuration_keys(configuration_keys))
    })?;
    Ok(DescribeConfigsRequest::default().with_resources(resources).with_include_synonyms(false).with_include_documentation(false))
}

pub(super) fn encode_request(out: &mut BytesMut, _version: i16, req: &DescribeConfigsRequest) -> Wire<()> {
    put_array(out, "resources", &req.resources, |out, res| {
        out.put_i8(res.resource_type);
        put_string(out, "resource_name", &res.resource_name)?;
        match &res.configuration_keys {
            Some(keys) => put_array(out, "configuration_keys", keys, |out, k| put_string(out, "configuration_keys", k)),
            None => {
                out.put_i32(-1);
                Ok(())
            }
        }
    })
}

pub(super) fn encode_response(out: &mut BytesMut, _version: i16, resp: &DescribeConfigsResponse) -> Wire<()> {
    out.put_i32(resp.throttle_time_ms);
    put_array(out, "results", &resp.results, |out, res| {
        out.put_i16(res.error_code);
        put_nullable_string(out, "error_message", res.error_message.as_deref())?;
        out.put_i8(res.resource_type);
        put_string(out, "resource_name", &res.resource_name)?;
        put_array(out, "configs", &res.configs, |out, c| {
            put_string(out, "configs.name", &c.name)?;
            put_nullable_string(out, "configs.value", c.value.as_deref())?;
            out.put_u8(u8::from(c.read_only));
            out.put_u8(u8::from(c.config_source == SOURCE_DEFAULT));
            out.put_u8(u8::from(c.is_sensitive));
            Ok(())
        })
    })
}

pub(super) fn decode_response(r: &mut Reader, _version: i16) -> Wire<DescribeConfigsResponse> {
    let throttle_time_ms = r.i32("throttle_time_ms")?;
    // error 2, message 2, type 1, name 2, configs count 4
    let results = r.array("results", 11, |r| {
        let error_code = r.i16("error_code")?;
        let error_message = r.nullable_string("error_message")?;
        let resource_type = r.i8("resource_type")?;
        let resource_name = r.string("resource_name")?;
        // name 2, value 2, three booleans
        let configs = r.array("configs", 7, |r| {
            let name = r.string("configs.name")?;
            let value = r.nullable_string("configs.value")?;
            let read_only = r.bool("read_only")?;
            let is_default = r.bool("is_default")?;
            let is_sensitive = r.bool("is_sensitive")?;
            let config_source = match (is_default, resource_type) {
                (true, _) => SOURCE_DEFAULT,
                (false, RESOURCE_BROKER) => SOURCE_STATIC_BROKER,
                (false, RESOURCE_TOPIC) => SOURCE_TOPIC,
                (false, _) => SOURCE_UNKNOWN,
            };
            Ok(DescribeConfigsResourceResult::default()
                .with_name(name)
                .with_value(value)
                .with_read_only(read_only)
                .with_config_source(config_source)
                .with_is_sensitive(is_sensitive))
        })?;
        Ok(DescribeConfigsResult::default()
            .with_error_code(error_code)
            .with_error_message(error_message)
            .with_resource_type(resource_type)
            .with_resource_name(resource_name)
            .with_configs(configs))
    })?;
    Ok(DescribeConfigsResponse::default().with_throttle_time_ms(throttle_time_ms).with_results(results))
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

    #[rustfmt::skip]
    fn request_bytes() -> Vec<u8> {
        [
            &[0, 0, 0, 2][..],              // resources: 2
            &[2],                           //   resource_type: TOPIC
            &[0, 6], b"events",             //   resource_name: "events"
            &[0xff, 0xff, 0xff, 0xff],      //   configuration_keys: null (all)
            &[4],                           //   resource_type: BROKER
            &[0, 1], b"1",                  //   resource_name: "1"
            &[0, 0, 0, 1],                  //   configuration_keys: 1
            &[0, 16], b"log.retention.ms",  //     "log.retention.ms"
        ]
        .concat()
    }

    #[rustfmt::skip]
    fn response_bytes() -> Vec<u8> {
        [
            &[0, 0, 0, 0][..],              // throttle_time_ms: 0
            &[0, 0, 0, 2],                  // results: 2
            &[0, 0],                        //   error_code: NONE
            &[0xff, 0xff],                  //   error_message: null
            &[2],                           //   resource_type: TOPIC
            &[0, 6], b"events",             //   resource_name: "events"
            &[0, 0, 0, 2],                  //   configs: 2
            &[0, 14], b"cleanup.policy",    //     name
            &[0, 7], b"compact",            //     value
            &[0, 0, 0],                     //     read_only, is_default, is_sensitive: false
            &[0, 12], b"retention.ms",      //     name
            &[0, 9], b"604800000",          //     value
            &[0, 1, 0],                     //     read_only: false, is_default: true, is_sensitive: false
            &[0, 0],                        //   error_code: NONE
            &[0xff, 0xff],                  //   error_message: null
            &[4],                           //   resource_type: BROKER
            &[0, 1], b"1",                  //   resource_name: "1"
            &[0, 0, 0, 1],                  //   configs: 1
            &[0, 16], b"log.retention.ms",  //     name
            &[0xff, 0xff],                  //     value: null
            &[1, 0, 0],                     //     read_only: true, is_default: false, is_sensitive: false
        ]
        .concat()
    }

    pub(crate) fn all() -> Vec<Golden> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(s("events"))
                .with_configuration_keys(None),
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name(s("1"))
                .with_configuration_keys(Some(vec![s("log.retention.ms")])),
        ]);
        let config = |name, value, read_only, source| {
            DescribeConfigsResourceResult::default()
                .with_name(s(name))
                .with_value(value)
                .with_read_only(read_only)
                .with_config_source(source)
                .with_is_sensitive(false)
        };
        let response = DescribeConfigsResponse::default().with_throttle_time_ms(0).with_results(vec![
            DescribeConfigsResult::default()
                .with_error_message(None)
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(s("events"))
                .with_configs(vec![
                    config("cleanup.policy", Some(s("compact")), false, SOURCE_TOPIC),
                    config("retention.ms", Some(s("604800000")), false, SOURCE_DEFAULT),
                ]),
            DescribeConfigsResult::default()
                .with_error_message(None)
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name(s("1"))
                .with_configs(vec![config("log.retention.ms", None, true, SOURCE_STATIC_BROKER)]),
        ]);
        vec![Golden {
            key: ApiKey::DescribeConfigs,
            version: 0,
            request: request_bytes(),
            decoded_request: RequestKind::DescribeConfigs(request),
            response: response_bytes(),
            decoded_response: ResponseKind::DescribeConfigs(response),
        }]
    }
}
