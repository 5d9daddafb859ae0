//! RemoveRaftVoter (key 81): removes a controller from a dynamic quorum's voters (KIP-853,
//! `kafka-metadata-quorum.sh remove-controller`), through the active controller as
//! AddRaftVoter is. A leader removed hands leadership to another voter.

use kafka_protocol::messages::{RemoveRaftVoterRequest, RemoveRaftVoterResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::controller::{ChangeVoters, VoterCall};

pub async fn handle(ctx: &Context<'_>, request: RemoveRaftVoterRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let mut r = RemoveRaftVoterResponse::default();
    let change = VoterCall::Remove { node_id: request.voter_id, directory_id: super::add_raft_voter::directory_id(request.voter_directory_id) };
    let call = ChangeVoters { cluster_id: request.cluster_id.as_ref().map(|id| id.as_str().to_string()), change };
    if let Err((code, msg)) = super::add_raft_voter::change_voters(ctx, call).await {
        r.error_code = code;
        r.error_message = Some(str_bytes(&msg));
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &RemoveRaftVoterRequest) -> Option<Response> {
    let (authz, header, _r) = (&ctx.authz, ctx.header, request);
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    if !authz.cluster(Alter) {
        return deny!(header, m::RemoveRaftVoterResponse, CLUSTER_DENIED);
    }
    None
}
