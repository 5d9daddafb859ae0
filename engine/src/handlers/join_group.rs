//! JoinGroup (key 11), answered by the group's coordinator shard once the rebalance's join
//! phase completes.

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::groups::{JoinGroup, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: JoinGroupRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let peer = ctx.session.peer;
    let group = request.group_id.0.to_string();
    let member_id = request.member_id.clone();
    let call = JoinGroup { request, version: header.api_version, client_id: header.client_id_lossy(), client_host: format!("/{}", peer.ip()) };
    let r = match ctx.coordinator_call(COORDINATOR, &group, call).await {
        Ok(r) => r,
        Err(code) => {
            let mut r = JoinGroupResponse::default();
            r.error_code = code;
            r.generation_id = -1;
            r.member_id = member_id;
            r
        }
    };
    let mut r = r;
    if header.api_version < 7 {
        r.protocol_type = None;
    }
    if header.api_version < 5 {
        for m in &mut r.members {
            m.group_instance_id = None;
        }
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &JoinGroupRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED as GROUP_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if !authz.group(Read, &r.group_id) {
        return deny!(header, m::JoinGroupResponse, GROUP_DENIED, generation_id = -1);
    }
    None
}
