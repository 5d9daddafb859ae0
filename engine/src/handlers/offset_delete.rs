//! OffsetDelete (key 47): deletes a group's committed offsets for partitions it no longer
//! subscribes to.

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, Context, Response};
use crate::groups::{OffsetDelete, COORDINATOR};

pub async fn handle(ctx: &Context<'_>, request: OffsetDeleteRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let group = request.group_id.0.to_string();
    let partitions: Vec<(String, i32)> =
        request.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index))).collect();
    let count = partitions.len();
    let (code, codes) = match ctx.coordinator_call(COORDINATOR, &group, OffsetDelete { group: group.clone(), partitions }).await {
        Ok(reply) => reply,
        Err(code) => (code, vec![code; count]),
    };
    assert_eq!(codes.len(), count, "the coordinator answers one code per partition");
    let mut r = OffsetDeleteResponse::default();
    r.error_code = code;
    let mut codes = codes.into_iter();
    for t in &request.topics {
        let mut rt = OffsetDeleteResponseTopic::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = OffsetDeleteResponsePartition::default();
            rp.partition_index = p.partition_index;
            let partition_code = codes.next().expect("one code per partition of the request");
            rp.error_code = if code != 0 { code } else { partition_code };
            rt.partitions.push(rp);
        }
        r.topics.push(rt);
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &OffsetDeleteRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::GROUP_AUTHORIZATION_FAILED as GROUP_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if !authz.group(Delete, &r.group_id) {
        return deny!(header, m::OffsetDeleteResponse, GROUP_DENIED);
    }
    if r.topics.iter().any(|t| !authz.topic(Read, &t.name)) {
        return deny!(header, m::OffsetDeleteResponse, shardlog_protocol::error_code::TOPIC_AUTHORIZATION_FAILED);
    }
    None
}
