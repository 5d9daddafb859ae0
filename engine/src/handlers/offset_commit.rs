//! OffsetCommit (key 8): appended to `__consumer_offsets` and acknowledged after its fdatasync.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use shardlog_protocol::error_code::{COORDINATOR_NOT_AVAILABLE, GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;

use super::groups_common::group_call;
use super::{respond, Context, Response};
use crate::authorizer::Operation;
use crate::groups::{CommitEntry, GroupCall, GroupReply};

pub async fn handle(ctx: &Context<'_>, request: OffsetCommitRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let group = request.group_id.0.to_string();
    let mut entries = Vec::new();
    for t in &request.topics {
        for p in &t.partitions {
            entries.push(CommitEntry {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    // READ on the group for all, READ on each topic for its partitions; denied ones are not sent.
    let group_ok = authz.group(Operation::Read, &group);
    let denied: Vec<Option<i16>> = entries
        .iter()
        .map(|e| {
            if !group_ok {
                Some(GROUP_AUTHORIZATION_FAILED)
            } else if !authz.topic(Operation::Read, &e.topic) {
                Some(TOPIC_AUTHORIZATION_FAILED)
            } else {
                None
            }
        })
        .collect();
    let all_entries = entries;
    let entries: Vec<CommitEntry> = all_entries.iter().zip(&denied).filter(|(_, d)| d.is_none()).map(|(e, _)| e.clone()).collect();
    let call = GroupCall::Commit {
        group: group.clone(),
        generation: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        offsets: entries.clone(),
    };
    let sent_codes = if entries.is_empty() {
        Vec::new()
    } else {
        match group_call(ctx, &group, call).await {
            Ok(GroupReply::Commit(codes)) => codes,
            _ => vec![COORDINATOR_NOT_AVAILABLE; entries.len()],
        }
    };
    let mut sent = sent_codes.into_iter();
    let codes: Vec<i16> = denied.iter().map(|d| d.unwrap_or_else(|| sent.next().unwrap_or(COORDINATOR_NOT_AVAILABLE))).collect();
    let mut r = OffsetCommitResponse::default();
    let mut i = 0;
    for t in &request.topics {
        let mut rt = OffsetCommitResponseTopic::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = OffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = codes.get(i).copied().unwrap_or(COORDINATOR_NOT_AVAILABLE);
            i += 1;
            rt.partitions.push(rp);
        }
        r.topics.push(rt);
    }
    respond(header, &r)
}
