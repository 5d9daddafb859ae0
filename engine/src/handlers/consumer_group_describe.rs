//! ConsumerGroupDescribe (key 69): members, epochs, and current and target assignments of
//! KIP-848 consumer groups.

use std::rc::Rc;

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId};
use shardlog_protocol::error_code::COORDINATOR_NOT_AVAILABLE;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::groups_common::group_call;
use super::{respond, Response};
use crate::groups::{GroupCall, GroupReply};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: ConsumerGroupDescribeRequest) -> Response {
    let mut r = ConsumerGroupDescribeResponse::default();
    for group in &request.group_ids {
        let name = group.0.to_string();
        match group_call(shard, &name, GroupCall::ConsumerDescribe { group: name.clone() }).await {
            Ok(GroupReply::ConsumerDescribe(d)) => r.groups.push(*d),
            _ => {
                let mut d = DescribedGroup::default();
                d.group_id = GroupId(group.0.clone());
                d.error_code = COORDINATOR_NOT_AVAILABLE;
                r.groups.push(d);
            }
        }
    }
    respond(header, &r)
}
