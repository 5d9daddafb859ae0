//! ListGroups (key 16): groups from every shard's coordinator, filtered by state (v4+) and by
//! type (v5+: `classic` or `consumer`, as `kafka-consumer-groups.sh --list --type` asks).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::authorizer::{Operation, ResourceType};
use crate::groups::ListGroups;
use crate::handlers::authz::CLUSTER;

pub async fn handle(ctx: &Context<'_>, request: ListGroupsRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let states: Vec<String> = request.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = if header.api_version >= 5 { request.types_filter.iter().map(|s| s.to_lowercase()).collect() } else { Vec::new() };
    let mut r = ListGroupsResponse::default();
    let see_all = authz.may_see(Operation::Describe, ResourceType::Cluster, CLUSTER);
    for groups in ctx.call_every_shard(|| ListGroups).await {
        for g in groups {
            if !states.is_empty() && !states.contains(&g.state.to_lowercase()) {
                continue;
            }
            if !types.is_empty() && !types.iter().any(|t| t == g.group_type) {
                continue;
            }
            // Only the groups the principal may describe (DESCRIBE on the cluster sees all).
            if !see_all && !authz.may_see(Operation::Describe, ResourceType::Group, &g.group_id) {
                continue;
            }
            let mut lg = ListedGroup::default();
            lg.group_id = GroupId(str_bytes(&g.group_id));
            lg.protocol_type = str_bytes(&g.protocol_type);
            if header.api_version >= 4 {
                lg.group_state = str_bytes(&g.state);
            }
            if header.api_version >= 5 {
                lg.group_type = str_bytes(g.group_type);
            }
            r.groups.push(lg);
        }
    }
    respond(header, &r)
}
