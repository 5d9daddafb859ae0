//! OffsetFetch (key 9): committed offsets of one group (v1-7) or several (v8+).

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};
use shardlog_protocol::error_code::{GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, topic_name, Context, Response};
use crate::authorizer::{Operation, ResourceType};
use crate::groups::{FetchedOffset, OffsetFetch, COORDINATOR};
use crate::handlers::authz::Authz;

async fn fetch(ctx: &Context<'_>, group: &str, topics: Option<Vec<(String, Vec<i32>)>>, require_stable: bool) -> (i16, Vec<FetchedOffset>) {
    let call = OffsetFetch { group: group.to_string(), topics, require_stable };
    ctx.coordinator_call(COORDINATOR, group, call).await.unwrap_or_else(|code| (code, Vec::new()))
}

/// Committed offsets of topics the principal may not describe are not shown.
fn hide_topics(authz: &Authz<'_>, list: Vec<FetchedOffset>) -> Vec<FetchedOffset> {
    list.into_iter()
        .map(|mut f| {
            if !authz.may_see(Operation::Describe, ResourceType::Topic, &f.topic) {
                f.offset = -1;
                f.metadata = None;
                f.error_code = TOPIC_AUTHORIZATION_FAILED;
            }
            f
        })
        .collect()
}

pub async fn handle(ctx: &Context<'_>, request: OffsetFetchRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let version = header.api_version;
    let mut r = OffsetFetchResponse::default();
    if version >= 8 {
        for g in &request.groups {
            let topics = g.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect());
            let (code, list) = if authz.group(Operation::Describe, &g.group_id) {
                fetch(ctx, &g.group_id.0, topics, request.require_stable).await
            } else {
                (GROUP_AUTHORIZATION_FAILED, Vec::new())
            };
            let list = hide_topics(authz, list);
            let mut rg = OffsetFetchResponseGroup::default();
            rg.group_id = GroupId(g.group_id.0.clone());
            rg.error_code = code;
            for f in list {
                let mut p = OffsetFetchResponsePartitions::default();
                p.partition_index = f.partition;
                p.committed_offset = f.offset;
                p.committed_leader_epoch = f.leader_epoch;
                p.metadata = f.metadata.as_deref().map(str_bytes);
                p.error_code = f.error_code;
                match rg.topics.iter_mut().find(|t| t.name.0.as_str() == f.topic) {
                    Some(t) => t.partitions.push(p),
                    None => {
                        let mut t = OffsetFetchResponseTopics::default();
                        t.name = topic_name(&f.topic);
                        t.partitions.push(p);
                        rg.topics.push(t);
                    }
                }
            }
            r.groups.push(rg);
        }
        return respond(header, &r);
    }
    let topics = request.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect());
    let (code, list) = if authz.group(Operation::Describe, &request.group_id) {
        fetch(ctx, &request.group_id.0, topics, version >= 7 && request.require_stable).await
    } else {
        (GROUP_AUTHORIZATION_FAILED, Vec::new())
    };
    let list = hide_topics(authz, list);
    if version >= 2 {
        r.error_code = code;
    }
    for f in list {
        let mut p = OffsetFetchResponsePartition::default();
        p.partition_index = f.partition;
        p.committed_offset = f.offset;
        if version >= 5 {
            p.committed_leader_epoch = f.leader_epoch;
        }
        p.metadata = f.metadata.as_deref().map(str_bytes);
        p.error_code = if version < 2 && code != 0 { code } else { f.error_code };
        match r.topics.iter_mut().find(|t| t.name.0.as_str() == f.topic) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = OffsetFetchResponseTopic::default();
                t.name = topic_name(&f.topic);
                t.partitions.push(p);
                r.topics.push(t);
            }
        }
    }
    respond(header, &r)
}
