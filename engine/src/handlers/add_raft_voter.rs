//! AddRaftVoter (key 80): adds a controller to a dynamic quorum's voters (KIP-853,
//! `kafka-metadata-quorum.sh add-controller`). Any broker or controller takes it and asks the
//! active controller, which checks it as Kafka's AddVoterHandler does (see
//! [`crate::controller::Controller`]'s voter changes) and changes the set through raft.

use kafka_protocol::messages::{AddRaftVoterRequest, AddRaftVoterResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::controller::{ChangeVoters, VoterCall, CONTROLLER_SHARD};

/// The longest host name a voter's listener may have: DNS's bound.
const VOTER_HOST_BYTES_MAX: usize = 255;

pub async fn handle(ctx: &Context<'_>, request: AddRaftVoterRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let mut r = AddRaftVoterResponse::default();
    // The quorum's link is the controller listener: the one named for it, else the first the
    // new voter lists (Kafka takes the listener its own quorum uses).
    let names = &ctx.config().quorum.controller_listener_names;
    let listener = request.listeners.iter().find(|l| names.iter().any(|n| n.as_str() == l.name.as_str())).or_else(|| request.listeners.first());
    let Some(listener) = listener else {
        r.error_code = ec::INVALID_REQUEST;
        r.error_message = Some(str_bytes("the new voter names no listener: its controller listener is needed to reach it"));
        return respond(header, &r);
    };
    // The address goes into the metadata log for good, and into every quorum hello.
    let host = listener.host.as_str();
    if host.is_empty() || host.len() > VOTER_HOST_BYTES_MAX || listener.port == 0 {
        r.error_code = ec::INVALID_REQUEST;
        r.error_message = Some(str_bytes(&format!(
            "the new voter's listener {}:{} is no address (a host of 1 to {VOTER_HOST_BYTES_MAX} bytes and a port)",
            host.chars().take(64).collect::<String>(),
            listener.port
        )));
        return respond(header, &r);
    }
    if request.voter_id < 0 {
        r.error_code = ec::INVALID_REQUEST;
        r.error_message = Some(str_bytes(&format!("{} is not a node id", request.voter_id)));
        return respond(header, &r);
    }
    let call = ChangeVoters {
        cluster_id: request.cluster_id.as_ref().map(|id| id.as_str().to_string()),
        change: VoterCall::Add {
            node_id: request.voter_id,
            address: format!("{}:{}", listener.host.as_str(), listener.port),
            timeout_ms: u64::try_from(request.timeout_ms).unwrap_or(0),
            directory_id: directory_id(request.voter_directory_id),
        },
    };
    if let Err((code, msg)) = change_voters(ctx, call).await {
        r.error_code = code;
        r.error_message = Some(str_bytes(&msg));
    }
    respond(header, &r)
}

/// A voter's directory id as Kafka sends it: the zero Uuid names none.
pub(super) fn directory_id(id: uuid::Uuid) -> Option<uuid::Uuid> {
    (!id.is_nil()).then_some(id)
}

/// Asks the active controller (through this node's controller shard) for a voter change:
/// Kafka's error and why, where it was not made. RemoveRaftVoter asks the same way.
pub(super) async fn change_voters(ctx: &Context<'_>, call: ChangeVoters) -> Result<(), (i16, String)> {
    match ctx.call(CONTROLLER_SHARD, call).await {
        Ok(outcome) => outcome,
        Err(e) => Err((ec::NOT_CONTROLLER, format!("the controller shard did not answer: {e}"))),
    }
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &AddRaftVoterRequest) -> Option<Response> {
    let (authz, header, _r) = (&ctx.authz, ctx.header, request);
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    if !authz.cluster(Alter) {
        return deny!(header, m::AddRaftVoterResponse, CLUSTER_DENIED);
    }
    None
}
