//! ConsumerGroupDescribe (key 69): members, epochs, and current and target assignments of
//! KIP-848 consumer groups.

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId};
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::groups::{ConsumerGroupDescribe, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: ConsumerGroupDescribeRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let mut r = ConsumerGroupDescribeResponse::default();
    for group in &request.group_ids {
        let name = group.0.to_string();
        match ctx.coordinator_call(COORDINATOR, &name, ConsumerGroupDescribe { group: name.clone() }).await {
            Ok(mut d) => {
                d.authorized_operations = if request.include_authorized_operations {
                    ctx.authz.authorized_operations(crate::authorizer::ResourceType::Group, &name)
                } else {
                    i32::MIN
                };
                r.groups.push(d);
            }
            Err(code) => {
                let mut d = DescribedGroup::default();
                d.group_id = GroupId(group.0.clone());
                d.error_code = code;
                r.groups.push(d);
            }
        }
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &ConsumerGroupDescribeRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED as GROUP_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if r.group_ids.iter().any(|g| !authz.group(Describe, g)) {
        let mut response = m::ConsumerGroupDescribeResponse::default();
        for g in &r.group_ids {
            let mut d = m::consumer_group_describe_response::DescribedGroup::default();
            d.group_id = g.clone();
            d.error_code = if authz.may_see(Describe, crate::authorizer::ResourceType::Group, g) {
                shardlog_protocol::error_code::OPERATION_NOT_ATTEMPTED
            } else {
                GROUP_DENIED
            };
            d.error_message = None;
            response.groups.push(d);
        }
        return Some(respond(header, &response));
    }
    None
}
