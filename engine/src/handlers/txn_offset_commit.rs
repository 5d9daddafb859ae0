//! TxnOffsetCommit (key 28): offsets committed inside a transaction. They are written to
//! `__consumer_offsets` as the producer's transactional records and count only once the
//! transaction commits.

use std::rc::Rc;

use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::groups_common::group_call;
use super::{respond, Response};
use crate::groups::{CommitEntry, GroupCall, GroupReply};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: TxnOffsetCommitRequest) -> Response {
    let group = request.group_id.0.to_string();
    let entries: Vec<CommitEntry> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| CommitEntry {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let call = GroupCall::TxnCommit {
        group: group.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        generation: if header.api_version >= 3 { request.generation_id } else { -1 },
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        offsets: entries.clone(),
    };
    let mut codes = match group_call(shard, &group, call).await {
        Ok(GroupReply::Commit(codes)) => codes,
        _ => vec![ec::COORDINATOR_NOT_AVAILABLE; entries.len()],
    };
    if header.api_version < 2 {
        for code in codes.iter_mut().filter(|c| **c == ec::PRODUCER_FENCED) {
            *code = ec::INVALID_PRODUCER_EPOCH;
        }
    }
    let mut r = TxnOffsetCommitResponse::default();
    let mut codes = codes.into_iter();
    for t in &request.topics {
        let mut rt = TxnOffsetCommitResponseTopic::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = TxnOffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = codes.next().unwrap_or(ec::COORDINATOR_NOT_AVAILABLE);
            rt.partitions.push(rp);
        }
        r.topics.push(rt);
    }
    respond(header, &r)
}
