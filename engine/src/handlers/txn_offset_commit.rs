//! TxnOffsetCommit (key 28): offsets committed inside a transaction. They are written to
//! `__consumer_offsets` as the producer's transactional records and count only once the
//! transaction commits. v5 with transaction.version 2 finalized is transactions v2 (KIP-890
//! part 2): the client sent no AddOffsetsToTxn, so the group's offsets partition is added to
//! the transaction here, through its coordinator, before the offsets are written.

use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::groups::{offsets::OFFSETS_TOPIC, CommitEntry, TxnOffsetCommit, COORDINATOR};
use crate::shard::TxnVerification;

/// The first TxnOffsetCommit version a transactions-v2 client sends.
const TRANSACTIONS_V2_FROM_VERSION: i16 = 5;

pub async fn handle(ctx: &Context<'_>, request: TxnOffsetCommitRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
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
    let count = entries.len();
    let call = TxnOffsetCommit {
        group: group.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        generation: if header.api_version >= 3 { request.generation_id } else { -1 },
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        offsets: entries,
    };
    let added = if crate::txn::client_transaction_version(ctx.shard, header.api_version, TRANSACTIONS_V2_FROM_VERSION) > 0 {
        add_offsets_partition(ctx, &request).await
    } else {
        ec::NONE
    };
    let mut codes = if added != ec::NONE {
        vec![added; count]
    } else {
        match ctx.coordinator_call(COORDINATOR, &group, call).await {
            Ok(codes) => codes,
            Err(code) => vec![code; count],
        }
    };
    assert_eq!(codes.len(), count, "the coordinator answers one code per offset");
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
            rp.error_code = codes.next().expect("one code per partition of the request");
            rt.partitions.push(rp);
        }
        r.topics.push(rt);
    }
    respond(header, &r)
}

/// Transactions v2: adds the group's `__consumer_offsets` partition to the producer's
/// transaction (what AddOffsetsToTxn did), through the producer's coordinator wherever it is.
/// An error code; a fenced producer is INVALID_PRODUCER_EPOCH, as Kafka's partition leaders
/// answer a failed add.
async fn add_offsets_partition(ctx: &Context<'_>, request: &TxnOffsetCommitRequest) -> i16 {
    // The offsets partition must exist before the transaction can name it (as in AddOffsetsToTxn).
    let exists = ctx.ensure_state_topic(COORDINATOR).await;
    let Some(partition) = COORDINATOR.partition(&ctx.metadata(), &request.group_id.0).filter(|_| exists) else { return ec::COORDINATOR_NOT_AVAILABLE };
    let Some(verifier) = ctx.shard.txn_verifier.get() else { return ec::COORDINATOR_NOT_AVAILABLE };
    let add = TxnVerification {
        transactional_id: request.transactional_id.0.to_string(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        partitions: vec![(OFFSETS_TOPIC.to_string(), partition)],
        add: true,
    };
    match verifier(add).await.first().copied().unwrap_or(ec::UNKNOWN_SERVER_ERROR) {
        ec::PRODUCER_FENCED => ec::INVALID_PRODUCER_EPOCH,
        code => code,
    }
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &TxnOffsetCommitRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED as GROUP_DENIED;
    use shardlog_protocol::error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED as TXN_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    let code = if !authz.transactional_id(Write, &r.transactional_id) {
        TXN_DENIED
    } else if !authz.group(Read, &r.group_id) {
        GROUP_DENIED
    } else if r.topics.iter().any(|t| !authz.topic(Read, &t.name)) {
        shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED
    } else {
        return None;
    };
    let mut response = m::TxnOffsetCommitResponse::default();
    for t in &r.topics {
        let mut topic = m::txn_offset_commit_response::TxnOffsetCommitResponseTopic::default();
        topic.name = t.name.clone();
        for p in &t.partitions {
            let mut result = m::txn_offset_commit_response::TxnOffsetCommitResponsePartition::default();
            result.partition_index = p.partition_index;
            result.error_code = code;
            topic.partitions.push(result);
        }
        response.topics.push(topic);
    }
    Some(respond(header, &response))
}
