//! DeleteGroups (key 42): deletes empty groups and their committed offsets.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};
use shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED;
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::authorizer::Operation;
use crate::groups::{DeleteGroup, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: DeleteGroupsRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let mut r = DeleteGroupsResponse::default();
    for group in &request.groups_names {
        let name = group.0.to_string();
        let mut result = DeletableGroupResult::default();
        result.group_id = GroupId(group.0.clone());
        result.error_code = if !authz.group(Operation::Delete, &name) {
            GROUP_AUTHORIZATION_FAILED
        } else {
            match ctx.coordinator_call(COORDINATOR, &name, DeleteGroup { group: name.clone() }).await {
                Ok(code) | Err(code) => code,
            }
        };
        r.results.push(result);
    }
    respond(header, &r)
}
