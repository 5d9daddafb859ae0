//! DescribeConfigs (key 32): topic, broker and group configs with their values, sources and (when
//! asked) synonyms, answered from this shard's copy of the metadata.

use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::metadata::validate_topic_name;
use crate::topic_config::{self as tc, ConfigSource, DescribedConfig, RESOURCE_BROKER, RESOURCE_GROUP, RESOURCE_TOPIC};

pub fn handle(ctx: &Context<'_>, request: DescribeConfigsRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let version = header.api_version;
    let meta = ctx.metadata();
    let mut response = DescribeConfigsResponse::default();
    for resource in &request.resources {
        let name = resource.resource_name.to_string();
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let described = match resource.resource_type {
            RESOURCE_TOPIC => match (validate_topic_name(&name), meta.topics.get(&name)) {
                (Err(why), _) => Err((ec::INVALID_TOPIC_EXCEPTION, why)),
                (Ok(()), None) => Err((ec::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic {name} does not exist."))),
                (Ok(()), Some(topic)) => Ok(tc::describe_topic(ctx.config(), &meta, &topic.configs)),
            },
            RESOURCE_BROKER if name.is_empty() => Ok(meta
                .broker_default_configs
                .iter()
                .map(|(k, v)| DescribedConfig {
                    name: k.clone(),
                    value: Some(v.clone()),
                    source: ConfigSource::DynamicDefaultBroker,
                    read_only: false,
                    config_type: tc::ConfigType::String,
                    doc: "",
                    synonyms: vec![(k.clone(), v.clone(), ConfigSource::DynamicDefaultBroker)],
                })
                .collect()),
            RESOURCE_BROKER if name == ctx.config().node_id.to_string() => Ok(tc::describe_broker(ctx.config(), &meta)),
            RESOURCE_BROKER => {
                Err((ec::INVALID_REQUEST, format!("Unexpected broker id, expected {} or empty string, but received {name}", ctx.config().node_id)))
            }
            RESOURCE_GROUP if name.is_empty() => Err((ec::INVALID_REQUEST, String::from("Group name must not be empty"))),
            RESOURCE_GROUP => Ok(crate::groups::configs::describe(&ctx.config().groups, &ctx.config().properties, meta.group_configs.get(&name))),
            other => {
                Err((ec::INVALID_REQUEST, format!("Describing configs of resource type {other} is not supported; use TOPIC (2), BROKER (4) or GROUP (32).")))
            }
        };
        match described {
            Ok(configs) => {
                let wanted = resource.configuration_keys.as_ref();
                for c in configs.into_iter().filter(|c| wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == c.name))) {
                    result.configs.push(entry(c, version, request.include_synonyms, request.include_documentation));
                }
            }
            Err((code, message)) => {
                tracing::debug!(resource_type = resource.resource_type, resource = %name, error = %message, "DescribeConfigs error");
                result.error_code = code;
                result.error_message = Some(str_bytes(&message));
            }
        }
        response.results.push(result);
    }
    respond(header, &response)
}

fn entry(c: DescribedConfig, version: i16, include_synonyms: bool, include_documentation: bool) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(&c.name);
    e.value = c.value.as_deref().map(str_bytes);
    e.read_only = c.read_only;
    e.is_sensitive = false;
    e.config_source = c.source as i8;
    if include_synonyms {
        for (name, value, source) in &c.synonyms {
            let mut s = DescribeConfigsSynonym::default();
            s.name = str_bytes(name);
            s.value = Some(str_bytes(value));
            s.source = *source as i8;
            e.synonyms.push(s);
        }
    }
    if version >= 3 {
        e.config_type = c.config_type as i8;
        if include_documentation && !c.doc.is_empty() {
            e.documentation = Some(str_bytes(c.doc));
        }
    }
    e
}

/// DESCRIBE_CONFIGS on each topic or group, or on the cluster for the broker (resource type 4):
/// a request with any resource denied is refused whole, as Kafka does.
fn denial(ctx: &Context<'_>, request: &DescribeConfigsRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if r.resources.iter().any(|res| !super::config_allowed(authz, DescribeConfigs, res.resource_type, &res.resource_name)) {
        return deny_configs!(header, r, m::DescribeConfigsResponse, m::describe_configs_response::DescribeConfigsResult, results);
    }
    None
}
