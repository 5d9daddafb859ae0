//! LeaveGroup (key 13): members leave (v3+: several at once, static members by instance id).

use std::rc::Rc;

use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use shardlog_protocol::error_code::COORDINATOR_NOT_AVAILABLE;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::groups_common::group_call;
use super::{respond, Response};
use crate::groups::{GroupCall, GroupReply};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: LeaveGroupRequest) -> Response {
    let group = request.group_id.0.to_string();
    let mut r = match group_call(shard, &group, GroupCall::Leave { request, version: header.api_version }).await {
        Ok(GroupReply::Leave(r)) => r,
        _ => {
            let mut r = LeaveGroupResponse::default();
            r.error_code = COORDINATOR_NOT_AVAILABLE;
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
