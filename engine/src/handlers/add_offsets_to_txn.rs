//! AddOffsetsToTxn (key 25): the producer will commit a group's offsets in its transaction,
//! so the group's `__consumer_offsets` partition joins the transaction.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::groups::{self, offsets::OFFSETS_TOPIC};
use crate::txn::{self, AddPartitions};

pub async fn handle(ctx: &Context<'_>, request: AddOffsetsToTxnRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let mut r = AddOffsetsToTxnResponse::default();
    // The group's offsets partition must exist before the transaction can name it: a producer
    // may send offsets for a group no consumer has looked up yet.
    let exists = ctx.ensure_state_topic(groups::COORDINATOR).await;
    let Some(partition) = groups::COORDINATOR.partition(&ctx.metadata(), &request.group_id.0).filter(|_| exists) else {
        r.error_code = ec::COORDINATOR_NOT_AVAILABLE;
        return respond(header, &r);
    };
    let id = request.transactional_id.0.to_string();
    let call = AddPartitions {
        transactional_id: id.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        partitions: vec![(OFFSETS_TOPIC.to_string(), partition)],
        client_transaction_version: 0,
    };
    r.error_code = match ctx.coordinator_call(txn::COORDINATOR, &id, call).await {
        Ok(codes) => {
            assert_eq!(codes.len(), 1, "one code per partition");
            codes[0]
        }
        Err(code) => code,
    };
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &AddOffsetsToTxnRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED as GROUP_DENIED;
    use shardlog_protocol::error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED as TXN_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if !authz.transactional_id(Write, &r.transactional_id) {
        return deny!(header, m::AddOffsetsToTxnResponse, TXN_DENIED);
    }
    if !authz.group(Read, &r.group_id) {
        return deny!(header, m::AddOffsetsToTxnResponse, GROUP_DENIED);
    }
    None
}
