//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT single configs of a topic
//! or of the broker, through the controller.

use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, str_bytes, Response};
use crate::controller::ConfigAlteration;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: IncrementalAlterConfigsRequest) -> Response {
    let resources: Vec<ConfigAlteration> = request
        .resources
        .iter()
        .map(|r| ConfigAlteration {
            resource_type: r.resource_type,
            resource_name: r.resource_name.to_string(),
            incremental: true,
            ops: r.configs.iter().map(|c| (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string()))).collect(),
        })
        .collect();
    let results = super::alter_configs::alter(shard, resources, request.validate_only).await;
    let mut response = IncrementalAlterConfigsResponse::default();
    for (r, (code, message)) in request.resources.iter().zip(results) {
        let mut out = AlterConfigsResourceResponse::default();
        out.resource_type = r.resource_type;
        out.resource_name = r.resource_name.clone();
        out.error_code = code;
        out.error_message = message.as_deref().map(str_bytes);
        response.responses.push(out);
    }
    respond(header, &response)
}
