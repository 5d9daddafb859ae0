//! SyncGroup (key 14): the leader hands in the assignment; every member gets its share.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use shardlog_protocol::error_code::COORDINATOR_NOT_AVAILABLE;
use shardlog_protocol::kafka_protocol;

use super::groups_common::group_call;
use super::{respond, Context, Response};
use crate::groups::{GroupCall, GroupReply};

pub async fn handle(ctx: &Context<'_>, request: SyncGroupRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let group = request.group_id.0.to_string();
    let r = match group_call(ctx, &group, GroupCall::Sync { request, version: header.api_version }).await {
        Ok(GroupReply::Sync(r)) => r,
        _ => {
            let mut r = SyncGroupResponse::default();
            r.error_code = COORDINATOR_NOT_AVAILABLE;
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
