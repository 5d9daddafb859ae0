//! Heartbeat (key 12): keeps a member's session alive and tells it when to rejoin.

use std::rc::Rc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use shardlog_protocol::error_code::COORDINATOR_NOT_AVAILABLE;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::groups_common::group_call;
use super::{respond, Response};
use crate::groups::{GroupCall, GroupReply};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: HeartbeatRequest) -> Response {
    let group = request.group_id.0.to_string();
    let mut r = HeartbeatResponse::default();
    r.error_code = match group_call(shard, &group, GroupCall::Heartbeat { request }).await {
        Ok(GroupReply::Heartbeat(code)) => code,
        _ => COORDINATOR_NOT_AVAILABLE,
    };
    respond(header, &r)
}
