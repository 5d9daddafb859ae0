//! SyncGroup (key 14): the leader hands in the assignment; every member gets its share.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::groups::{SyncGroup, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: SyncGroupRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let group = request.group_id.0.to_string();
    let r = match ctx.coordinator_call(COORDINATOR, &group, SyncGroup { request, version: header.api_version }).await {
        Ok(r) => r,
        Err(code) => {
            let mut r = SyncGroupResponse::default();
            r.error_code = code;
            r
        }
    };
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &SyncGroupRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED as GROUP_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if !authz.group(Read, &r.group_id) {
        return deny!(header, m::SyncGroupResponse, GROUP_DENIED);
    }
    None
}
