//! AlterConfigs (key 33): replaces every config of a topic, the broker or a group, through the
//! controller, which validates, persists and broadcasts the change.

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, Context, Response};
use crate::controller::{ConfigAlteration, ControllerRequest};
use crate::topic_config::OP_SET;

pub async fn handle(ctx: &Context<'_>, request: AlterConfigsRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let resources: Vec<ConfigAlteration> = request
        .resources
        .iter()
        .map(|r| ConfigAlteration {
            resource_type: r.resource_type,
            resource_name: r.resource_name.to_string(),
            incremental: false,
            ops: r.configs.iter().map(|c| (c.name.to_string(), OP_SET, c.value.as_ref().map(|v| v.to_string()))).collect(),
        })
        .collect();
    let results = alter(ctx, resources, request.validate_only).await;
    let mut response = AlterConfigsResponse::default();
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

/// Sends the changes to the controller; one (error code, message) per resource, in order.
pub async fn alter(ctx: &Context<'_>, resources: Vec<ConfigAlteration>, validate_only: bool) -> Vec<(i16, Option<String>)> {
    let count = resources.len();
    if count == 0 {
        return Vec::new();
    }
    let results = call_controller(ctx, ControllerRequest::AlterConfigs { resources, validate_only }).await;
    if results.len() != count {
        let why = results.first().and_then(|r| r.2.clone()).unwrap_or_else(|| String::from("the controller did not answer"));
        return vec![(ec::UNKNOWN_SERVER_ERROR, Some(why)); count];
    }
    results.into_iter().map(|(_, code, message)| (code, message)).collect()
}

/// ALTER_CONFIGS on each topic or group, or on the cluster for the broker (resource type 4): a
/// request with any resource denied is refused whole, as Kafka does.
fn denial(ctx: &Context<'_>, request: &AlterConfigsRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if r.resources.iter().any(|res| !super::config_allowed(authz, AlterConfigs, res.resource_type, &res.resource_name)) {
        return deny_configs!(header, r, m::AlterConfigsResponse, m::alter_configs_response::AlterConfigsResourceResponse, responses);
    }
    None
}
