//! JoinGroup (key 11), answered by the group's coordinator shard once the rebalance's join
//! phase completes.

use std::net::SocketAddr;
use std::rc::Rc;

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::groups_common::group_call;
use super::{respond, Response};
use crate::groups::{GroupCall, GroupReply};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: JoinGroupRequest, peer: SocketAddr) -> Response {
    let group = request.group_id.0.to_string();
    let member_id = request.member_id.clone();
    let call = GroupCall::Join { request, version: header.api_version, client_id: header.client_id_lossy(), client_host: format!("/{}", peer.ip()) };
    let r = match group_call(shard, &group, call).await {
        Ok(GroupReply::Join(r)) => r,
        Ok(_) | Err(_) => {
            let mut r = JoinGroupResponse::default();
            r.error_code = shardlog_protocol::error_code::COORDINATOR_NOT_AVAILABLE;
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
