//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT single configs of a topic
//! or of the broker, through the controller.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::controller::ConfigAlteration;

pub async fn handle(ctx: &Context<'_>, request: IncrementalAlterConfigsRequest) -> Response {
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
            incremental: true,
            ops: r.configs.iter().map(|c| (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string()))).collect(),
        })
        .collect();
    let results = super::alter_configs::alter(ctx, resources, request.validate_only).await;
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

/// DESCRIBE_CONFIGS / ALTER_CONFIGS on each topic, or on the cluster for the broker (resource
/// type 4): a request with any resource denied is refused whole, as Kafka does.
fn denial(ctx: &Context<'_>, request: &IncrementalAlterConfigsRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if r.resources.iter().any(|res| !super::config_allowed(authz, AlterConfigs, res.resource_type, &res.resource_name)) {
        return deny_configs!(header, r, m::IncrementalAlterConfigsResponse, m::incremental_alter_configs_response::AlterConfigsResourceResponse, responses);
    }
    None
}
