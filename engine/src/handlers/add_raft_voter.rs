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
    let listeners: Vec<(&str, &str, u16)> = request.listeners.iter().map(|l| (l.name.as_str(), l.host.as_str(), l.port)).collect();
    let address = match controller_address(ctx, &listeners) {
        Ok(address) => address,
        Err(message) => {
            r.error_code = ec::INVALID_REQUEST;
            r.error_message = Some(str_bytes(&message));
            return respond(header, &r);
        }
    };
    if request.voter_id < 0 {
        r.error_code = ec::INVALID_REQUEST;
        r.error_message = Some(str_bytes(&format!("{} is not a node id", request.voter_id)));
        return respond(header, &r);
    }
    let call = ChangeVoters {
        cluster_id: request.cluster_id.as_ref().map(|id| id.as_str().to_string()),
        change: VoterCall::Add {
            node_id: request.voter_id,
            address,
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

/// The voter's quorum address from the listeners a request names (name, host, port): the
/// controller listener (the one named for it, else the first, as Kafka takes the listener its
/// own quorum uses), checked, since it goes into the metadata log for good and into every
/// quorum hello. Err: why it is no address.
pub(super) fn controller_address(ctx: &Context<'_>, listeners: &[(&str, &str, u16)]) -> Result<String, String> {
    let names = &ctx.config().quorum.controller_listener_names;
    let listener = listeners.iter().find(|(name, _, _)| names.iter().any(|n| n == name)).or_else(|| listeners.first());
    let Some((_, host, port)) = listener else {
        return Err(String::from("the voter names no listener: its controller listener is needed to reach it"));
    };
    if host.is_empty() || host.len() > VOTER_HOST_BYTES_MAX || *port == 0 {
        return Err(format!(
            "the voter's listener {}:{port} is no address (a host of 1 to {VOTER_HOST_BYTES_MAX} bytes and a port)",
            host.chars().take(64).collect::<String>()
        ));
    }
    Ok(format!("{host}:{port}"))
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
