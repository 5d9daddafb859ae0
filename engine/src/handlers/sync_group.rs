//! SyncGroup (key 14): the leader hands in the assignment; every member gets its share.

use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use shardlog_protocol::error_code::COORDINATOR_NOT_AVAILABLE;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::groups_common::group_call;
use super::{respond, Response};
use crate::groups::{GroupCall, GroupReply};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: SyncGroupRequest) -> Response {
    let group = request.group_id.0.to_string();
    let r = match group_call(shard, &group, GroupCall::Sync { request, version: header.api_version }).await {
        Ok(GroupReply::Sync(r)) => r,
        _ => {
            let mut r = SyncGroupResponse::default();
            r.error_code = COORDINATOR_NOT_AVAILABLE;
            r
        }
    };
    respond(header, &r)
}
