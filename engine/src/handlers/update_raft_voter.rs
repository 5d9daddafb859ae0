//! UpdateRaftVoter (key 82): a voter of a dynamic quorum says where its controller listener is
//! now (KIP-853). Kafka's voters send it to the leader when their listener moved; a shardlog
//! voter does so by itself at start (see the controller), and this handler takes it from any
//! other sender on the Kafka wire, through the active controller as AddRaftVoter does.

use kafka_protocol::messages::{UpdateRaftVoterRequest, UpdateRaftVoterResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::add_raft_voter::{change_voters, controller_address, directory_id};
use super::{respond, Context, Response};
use crate::controller::{ChangeVoters, VoterCall};

pub async fn handle(ctx: &Context<'_>, request: UpdateRaftVoterRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let mut r = UpdateRaftVoterResponse::default();
    let listeners: Vec<(&str, &str, u16)> = request.listeners.iter().map(|l| (l.name.as_str(), l.host.as_str(), l.port)).collect();
    let address = match controller_address(ctx, &listeners) {
        Ok(address) => address,
        Err(message) => {
            // The response has no message field: the reason goes to the log.
            tracing::info!(voter = request.voter_id, "UpdateRaftVoter refused: {message}");
            r.error_code = ec::INVALID_REQUEST;
            return respond(header, &r);
        }
    };
    let call = ChangeVoters {
        cluster_id: request.cluster_id.as_ref().map(|id| id.as_str().to_string()),
        change: VoterCall::Update { node_id: request.voter_id, directory_id: directory_id(request.voter_directory_id), address },
    };
    if let Err((code, message)) = change_voters(ctx, call).await {
        tracing::info!(voter = request.voter_id, code, "UpdateRaftVoter refused: {message}");
        r.error_code = code;
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs:
/// Kafka takes it from controllers only (CLUSTER_ACTION).
fn denial(ctx: &Context<'_>, request: &UpdateRaftVoterRequest) -> Option<Response> {
    let (authz, header, _r) = (&ctx.authz, ctx.header, request);
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    if !authz.cluster(ClusterAction) {
        return deny!(header, m::UpdateRaftVoterResponse, CLUSTER_DENIED);
    }
    None
}
