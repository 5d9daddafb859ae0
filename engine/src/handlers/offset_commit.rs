//! OffsetCommit (key 8): appended to `__consumer_offsets` and acknowledged after its fdatasync.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use shardlog_protocol::error_code::{GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::authorizer::Operation;
use crate::groups::{CommitEntry, OffsetCommit, COORDINATOR};

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
    let entries: Vec<CommitEntry> = entries.into_iter().zip(&denied).filter(|(_, d)| d.is_none()).map(|(e, _)| e).collect();
    let sent_count = entries.len();
    let call = OffsetCommit {
        group: group.clone(),
        generation: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        offsets: entries,
    };
    let sent_codes = if sent_count == 0 {
        Vec::new()
    } else {
        match ctx.coordinator_call(COORDINATOR, &group, call).await {
            Ok(codes) => codes,
            Err(code) => vec![code; sent_count],
        }
    };
    assert_eq!(sent_codes.len(), sent_count, "the coordinator answers one code per offset sent");
    let mut sent = sent_codes.into_iter();
    let mut codes = denied.into_iter().map(|d| d.unwrap_or_else(|| sent.next().expect("one code per offset sent")));
    let mut r = OffsetCommitResponse::default();
    for t in &request.topics {
        let mut rt = OffsetCommitResponseTopic::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = OffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = codes.next().expect("one code per partition of the request");
            rt.partitions.push(rp);
        }
        r.topics.push(rt);
    }
    respond(header, &r)
}
