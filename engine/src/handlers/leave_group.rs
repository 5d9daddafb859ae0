//! LeaveGroup (key 13): members leave (v3+: several at once, static members by instance id).

use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::groups::{LeaveGroup, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: LeaveGroupRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let group = request.group_id.0.to_string();
    let mut r = match ctx.coordinator_call(COORDINATOR, &group, LeaveGroup { request, version: header.api_version }).await {
        Ok(r) => r,
        Err(code) => {
            let mut r = LeaveGroupResponse::default();
            r.error_code = code;
            r
        }
    };
    if header.api_version < 4 {
        for m in &mut r.members {
            m.group_instance_id = None;
        }
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &LeaveGroupRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED as GROUP_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if !authz.group(Read, &r.group_id) {
        return deny!(header, m::LeaveGroupResponse, GROUP_DENIED);
    }
    None
}
