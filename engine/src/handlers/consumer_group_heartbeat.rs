//! ConsumerGroupHeartbeat (key 68): the KIP-848 consumer group protocol, with the assignment
//! computed by the coordinator.

use std::net::SocketAddr;
use std::rc::Rc;

use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use shardlog_protocol::error_code::COORDINATOR_NOT_AVAILABLE;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::groups_common::group_call;
use super::{respond, Response};
use crate::groups::{GroupCall, GroupReply};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: ConsumerGroupHeartbeatRequest, peer: SocketAddr) -> Response {
    let group = request.group_id.0.to_string();
    let call = GroupCall::ConsumerHeartbeat { request, client_id: header.client_id_lossy(), client_host: format!("/{}", peer.ip()) };
    let r = match group_call(shard, &group, call).await {
        Ok(GroupReply::ConsumerHeartbeat(r)) => *r,
        _ => {
            let mut r = ConsumerGroupHeartbeatResponse::default();
            r.error_code = COORDINATOR_NOT_AVAILABLE;
            r.member_epoch = -1;
            r
        }
    };
    respond(header, &r)
}
