//! DescribeGroups (key 15): state, protocol, members and assignments of each group.

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED;
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::authorizer::{Operation, ResourceType};
use crate::groups::{DescribeGroup, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: DescribeGroupsRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let mut r = DescribeGroupsResponse::default();
    for group in &request.groups {
        let name = group.0.to_string();
        if !authz.group(Operation::Describe, &name) {
            let mut g = DescribedGroup::default();
            g.group_id = GroupId(group.0.clone());
            g.error_code = GROUP_AUTHORIZATION_FAILED;
            g.authorized_operations = i32::MIN;
            r.groups.push(g);
            continue;
        }
        match ctx.coordinator_call(COORDINATOR, &name, DescribeGroup { group: name.clone() }).await {
            Ok(d) => {
                for mut g in d.groups {
                    if header.api_version < 4 {
                        for m in &mut g.members {
                            m.group_instance_id = None;
                        }
                    }
                    g.authorized_operations = if header.api_version >= 3 && request.include_authorized_operations {
                        authz.authorized_operations(ResourceType::Group, &name)
                    } else {
                        i32::MIN
                    };
                    r.groups.push(g);
                }
            }
            Err(code) => {
                let mut g = DescribedGroup::default();
                g.group_id = GroupId(group.0.clone());
                g.error_code = code;
                r.groups.push(g);
            }
        }
    }
    respond(header, &r)
}
