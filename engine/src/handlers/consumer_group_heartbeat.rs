//! ConsumerGroupHeartbeat (key 68): the KIP-848 consumer group protocol, with the assignment
//! computed by the coordinator.

use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::groups::{ConsumerGroupHeartbeat, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: ConsumerGroupHeartbeatRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let peer = ctx.session.peer;
    let group = request.group_id.0.to_string();
    let call = ConsumerGroupHeartbeat { request, client_id: header.client_id_lossy(), client_host: format!("/{}", peer.ip()) };
    let r = match ctx.coordinator_call(COORDINATOR, &group, call).await {
        Ok(r) => r,
        Err(code) => {
            let mut r = ConsumerGroupHeartbeatResponse::default();
            r.error_code = code;
            r.member_epoch = -1;
            r
        }
    };
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &ConsumerGroupHeartbeatRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED as GROUP_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if !authz.group(Read, &r.group_id) {
        return deny!(header, m::ConsumerGroupHeartbeatResponse, GROUP_DENIED);
    }
    None
}
