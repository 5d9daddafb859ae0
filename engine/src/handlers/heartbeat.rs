//! Heartbeat (key 12): keeps a member's session alive and tells it when to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::groups::{Heartbeat, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: HeartbeatRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let group = request.group_id.0.to_string();
    let mut r = HeartbeatResponse::default();
    r.error_code = match ctx.coordinator_call(COORDINATOR, &group, Heartbeat { request }).await {
        Ok(code) | Err(code) => code,
    };
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &HeartbeatRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED as GROUP_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if !authz.group(Read, &r.group_id) {
        return deny!(header, m::HeartbeatResponse, GROUP_DENIED);
    }
    None
}
